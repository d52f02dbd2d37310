/*
 * history.h: the recent steps a client keeps for resume (proto Hello.history): a ring of
 * (observation, action applied after it, reward, action returned for it), and a pixel
 * session's image, allocated when a session opens, so that recording a step allocates
 * nothing.
 */
#ifndef MPC_CLIENT_HISTORY_H
#define MPC_CLIENT_HISTORY_H

#include <stddef.h>

typedef struct {
    size_t cap, len, next;              /* entries kept at most, held, next slot */
    size_t obs_dim, act_dim, img_bytes; /* img_bytes: 0 for a vector session */
    float *obs, *act, *ret, *rew;       /* [cap, obs_dim], [cap, act_dim] x 2, [cap] */
    unsigned char *img;                 /* [cap, img_bytes] */
} mpc_history_t;

/* Sizes the ring for cap entries (0: keep nothing) and empties it. 0 or -1 (no memory). */
int mpc_history_init(mpc_history_t *h, size_t cap, size_t obs_dim, size_t act_dim,
                     size_t img_bytes);
void mpc_history_free(mpc_history_t *h);
void mpc_history_clear(mpc_history_t *h);
/* Appends a step (the oldest goes when full); act: applied after obs, ret: returned; img:
 * img_bytes bytes (ignored when img_bytes is 0). */
void mpc_history_push(mpc_history_t *h, const float *obs, const unsigned char *img,
                      const float *act, const float *ret, float rew);
/* Entry i, 0 = the oldest held. */
size_t mpc_history_slot(const mpc_history_t *h, size_t i);
/* The action returned k steps before the newest entry (k = 0: the newest), or NULL. */
const float *mpc_history_returned(const mpc_history_t *h, size_t k);

#endif
