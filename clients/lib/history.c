/*
 * history.c: the client's ring of recent steps for resume (history.h).
 */
#include "history.h"

#include <stdlib.h>
#include <string.h>

int mpc_history_init(mpc_history_t *h, size_t cap, size_t obs_dim, size_t act_dim,
                     size_t img_bytes)
{
    if (h->cap != cap || h->obs_dim != obs_dim || h->act_dim != act_dim ||
        h->img_bytes != img_bytes) {
        mpc_history_free(h);
        if (cap > 0) {
            h->obs = malloc(cap * obs_dim * sizeof(float) + 1);
            h->act = malloc(cap * act_dim * sizeof(float) + 1);
            h->ret = malloc(cap * act_dim * sizeof(float) + 1);
            h->rew = malloc(cap * sizeof(float));
            h->img = malloc(cap * img_bytes + 1);
            if (!h->obs || !h->act || !h->ret || !h->rew || !h->img) {
                mpc_history_free(h);
                return -1;
            }
        }
        h->cap = cap;
        h->obs_dim = obs_dim;
        h->act_dim = act_dim;
        h->img_bytes = img_bytes;
    }
    mpc_history_clear(h);
    return 0;
}

void mpc_history_free(mpc_history_t *h)
{
    free(h->obs);
    free(h->act);
    free(h->ret);
    free(h->rew);
    free(h->img);
    memset(h, 0, sizeof(*h));
}

void mpc_history_clear(mpc_history_t *h)
{
    h->len = h->next = 0;
}

void mpc_history_push(mpc_history_t *h, const float *obs, const unsigned char *img,
                      const float *act, const float *ret, float rew)
{
    if (h->cap == 0)
        return;
    size_t i = h->next;
    if (h->obs_dim) /* a camera robot's steps have no observation vector (obs may be NULL) */
        memcpy(h->obs + i * h->obs_dim, obs, h->obs_dim * sizeof(float));
    if (h->img_bytes)
        memcpy(h->img + i * h->img_bytes, img, h->img_bytes);
    memcpy(h->act + i * h->act_dim, act, h->act_dim * sizeof(float));
    memcpy(h->ret + i * h->act_dim, ret, h->act_dim * sizeof(float));
    h->rew[i] = rew;
    h->next = (i + 1) % h->cap;
    if (h->len < h->cap)
        h->len++;
}

size_t mpc_history_slot(const mpc_history_t *h, size_t i)
{
    return (h->next + h->cap - h->len + i) % h->cap;
}

const float *mpc_history_returned(const mpc_history_t *h, size_t k)
{
    if (k >= h->len)
        return NULL;
    return h->ret + mpc_history_slot(h, h->len - 1 - k) * h->act_dim;
}
