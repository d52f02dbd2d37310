/*
 * timeline.c: the actions in force over simulated time (timeline.h), on libmpcclient's
 * follower. Without follow a reply enters as a plan of one row, which holds.
 */
#include "timeline.h"

#include <string.h>

/* Row boundaries are computed from sums of timesteps: a physics step that starts exactly
 * on one must see the new row. */
#define TIME_EPS 1e-9

int sim_timeline_init(sim_timeline_t *tl, int act_dim, int max_delay, bool follow)
{
    memset(tl, 0, sizeof(*tl));
    tl->follow = follow;
    return mpc_follower_create((size_t)act_dim, (size_t)max_delay + 3, NULL, &tl->follower);
}

void sim_timeline_free(sim_timeline_t *tl)
{
    mpc_follower_destroy(tl->follower);
    tl->follower = NULL;
}

void sim_timeline_reset(sim_timeline_t *tl)
{
    mpc_follower_clear(tl->follower);
    tl->pending = false;
    tl->step_s = 0.0;
}

static void deliver(sim_timeline_t *tl)
{
    if (!tl->follow)
        tl->reply.plan_rows = 0; /* the action alone: it holds */
    mpc_follower_update(tl->follower, &tl->reply, tl->start);
    tl->pending = false;
    tl->in_force = tl->start;
    tl->step_s = tl->reply.plan_rows > 0 ? tl->reply.plan_step_s : 0.0;
}

void sim_timeline_expect(sim_timeline_t *tl, const mpc_client_action_t *a, double arrival,
                         double start)
{
    if (tl->pending)
        deliver(tl);
    tl->reply = *a;
    tl->arrival = arrival;
    tl->start = start;
    tl->pending = true;
}

void sim_timeline_catch_up(sim_timeline_t *tl, double t)
{
    if (tl->pending && tl->arrival <= t + TIME_EPS)
        deliver(tl);
}

void sim_timeline_action(sim_timeline_t *tl, double t, float *out)
{
    sim_timeline_catch_up(tl, t);
    if (mpc_follower_action_at(tl->follower, t + TIME_EPS, out) == MPC_FOLLOW_PAST_END)
        tl->past_end++;
    else if (tl->step_s > 0 && t + TIME_EPS >= tl->in_force + tl->step_s)
        tl->later_rows++;
}

void sim_timeline_ahead(const sim_timeline_t *tl, double t0, double step, int n, int act_dim,
                        float *out)
{
    for (int j = 0; j < n; j++)
        mpc_follower_action_at(tl->follower, t0 + j * step + TIME_EPS,
                               out + (size_t)j * act_dim);
}
