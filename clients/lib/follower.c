/*
 * follower.c: the follower (mpcclient.h, mpc_follower_*): which row of which plan a robot
 * applies at any moment between replies.
 *
 * Plans are kept in a ring of max_plans slots, oldest first, with starts that never
 * decrease (update refuses a plan that starts before the newest one). Every slot owns
 * MPC_CLIENT_MAX_PLAN floats of one buffer allocated at create, so update only copies.
 * A lookup walks from the newest plan back to the first that has started: with a delay of
 * d steps at most d + 1 plans wait ahead of the one in force, hence max_plans >= d + 2.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpcclient.h"

/* Rows are chosen at floor((t - start) / step + FOLLOW_EPS): a time that lands on a row
 * boundary through rounding (start + k * step summed up) gets row k, not k - 1. The same
 * slack, relative to the step, lets a plan start a hair early. The Python client's
 * Follower uses the same value. */
#define FOLLOW_EPS 1e-6

/* Plans held at most: bounds the buffer (max_plans x MPC_CLIENT_MAX_PLAN floats). */
#define FOLLOW_MAX_PLANS 4096

typedef struct {
    double start;  /* when row 0 takes effect, in the caller's seconds */
    double step_s; /* time between rows; INFINITY: one row held for ever */
    size_t rows;
    float *data; /* rows x action_size floats, into mpc_follower.data */
} plan_t;

struct mpc_follower {
    size_t action_size;
    size_t max_plans;
    size_t first; /* slot of the oldest plan held */
    size_t count; /* plans held */
    plan_t *plan; /* max_plans slots */
    float *data;  /* max_plans x MPC_CLIENT_MAX_PLAN floats */
    float initial[MPC_CLIENT_MAX_ACTION];
};

int mpc_follower_create(size_t action_size, size_t max_plans, const float *initial,
                        mpc_follower_t **out)
{
    if (out == NULL)
        return MPC_CLIENT_EINVAL;
    *out = NULL;
    if (action_size == 0 || action_size > MPC_CLIENT_MAX_ACTION || max_plans < 2 ||
        max_plans > FOLLOW_MAX_PLANS)
        return MPC_CLIENT_EINVAL;
    mpc_follower_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return MPC_CLIENT_ENOMEM;
    f->plan = calloc(max_plans, sizeof(*f->plan));
    f->data = calloc(max_plans * MPC_CLIENT_MAX_PLAN, sizeof(*f->data));
    if (f->plan == NULL || f->data == NULL) {
        mpc_follower_destroy(f);
        return MPC_CLIENT_ENOMEM;
    }
    f->action_size = action_size;
    f->max_plans = max_plans;
    for (size_t i = 0; i < max_plans; i++)
        f->plan[i].data = f->data + i * MPC_CLIENT_MAX_PLAN;
    if (initial != NULL)
        memcpy(f->initial, initial, action_size * sizeof(float));
    *out = f;
    return 0;
}

void mpc_follower_destroy(mpc_follower_t *f)
{
    if (f == NULL)
        return;
    free(f->plan);
    free(f->data);
    free(f);
}

/* The i-th plan held, 0 = the oldest. */
static plan_t *held(const mpc_follower_t *f, size_t i)
{
    return &f->plan[(f->first + i) % f->max_plans];
}

int mpc_follower_update(mpc_follower_t *f, const mpc_client_action_t *a, double start)
{
    if (f == NULL || a == NULL || a->action_size != f->action_size || !isfinite(start))
        return MPC_CLIENT_EINVAL;
    size_t rows = a->plan_rows;
    if (rows > 0 && (rows > MPC_CLIENT_MAX_PLAN / f->action_size || !isfinite(a->plan_step_s) ||
                     !(a->plan_step_s > 0)))
        return MPC_CLIENT_EINVAL;
    plan_t *p = NULL;
    if (f->count > 0) {
        plan_t *newest = held(f, f->count - 1);
        if (start < newest->start)
            return 1; /* its reply was overtaken by a newer one */
        if (start == newest->start)
            p = newest; /* the newer reply for the same moment replaces it */
    }
    if (p == NULL) {
        if (f->count == f->max_plans) {
            f->first = (f->first + 1) % f->max_plans;
            f->count--;
        }
        p = held(f, f->count++);
    }
    p->start = start;
    if (rows == 0) {
        /* A reply without a plan: its action holds until a newer plan starts. */
        p->rows = 1;
        p->step_s = INFINITY;
        memcpy(p->data, a->action, f->action_size * sizeof(float));
    } else {
        p->rows = rows;
        p->step_s = a->plan_step_s;
        memcpy(p->data, a->plan, rows * f->action_size * sizeof(float));
    }
    return 0;
}

mpc_follow_state_t mpc_follower_action_at(const mpc_follower_t *f, double t, float *out)
{
    assert(f != NULL && out != NULL);
    size_t n = f->action_size;
    for (size_t i = f->count; i-- > 0;) {
        const plan_t *p = held(f, i);
        bool forever = isinf(p->step_s);
        if (!(t >= p->start - (forever ? 0.0 : FOLLOW_EPS * p->step_s)))
            continue; /* not started by t (NaN never starts anything) */
        /* Compared as a double first: a huge t must not overflow the row index. */
        double row = forever ? 0.0 : floor((t - p->start) / p->step_s + FOLLOW_EPS);
        if (row < 0)
            row = 0;
        if (!(row < (double)p->rows)) {
            memcpy(out, p->data + (p->rows - 1) * n, n * sizeof(float));
            return MPC_FOLLOW_PAST_END;
        }
        memcpy(out, p->data + (size_t)row * n, n * sizeof(float));
        return MPC_FOLLOW_PLAN;
    }
    memcpy(out, f->initial, n * sizeof(float));
    return MPC_FOLLOW_NO_PLAN;
}

void mpc_follower_clear(mpc_follower_t *f)
{
    f->first = 0;
    f->count = 0;
}
