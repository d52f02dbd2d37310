/*
 * timeline.h: which action a simulated robot applies at each physics step when its
 * physics does not stop for the daemon (mpc-sim --no-wait, --delay-steps, --follow,
 * --drop).
 *
 * A reply becomes known at its arrival time (the observation's time plus the measured
 * reply latency with --no-wait, else at once) and takes effect at its start time (the
 * observation's time plus delay_steps control periods). Until then the actions already
 * in force go on. With follow, the reply's whole plan is followed (libmpcclient's
 * follower: row k for k control periods after the start, the last row held past the
 * end); without, its action holds until the next reply takes effect. A lost reply is
 * never delivered. Times are simulated seconds since the episode started.
 */
#ifndef MPC_SIM_TIMELINE_H
#define MPC_SIM_TIMELINE_H

#include <stdbool.h>

#include "mpcclient.h"

typedef struct {
    mpc_follower_t *follower;
    bool follow;
    bool pending; /* reply waits for its arrival */
    double arrival, start;
    mpc_client_action_t reply;
    double in_force;          /* start of the newest plan delivered */
    double step_s;            /* its plan_step_s (0: it holds) */
    unsigned long later_rows; /* physics steps on a plan's later rows (a reply late or lost) */
    unsigned long past_end;   /* physics steps that ran past the followed plan's end */
} sim_timeline_t;

/* For actions of act_dim floats and delays of up to max_delay steps. 0 or a libmpcclient
 * error. */
int sim_timeline_init(sim_timeline_t *tl, int act_dim, int max_delay, bool follow);
void sim_timeline_free(sim_timeline_t *tl);
/* A new episode: no reply known, the zero action in force. */
void sim_timeline_reset(sim_timeline_t *tl);

/* Reply a becomes known at arrival and takes effect at start (arrival may lie in the
 * future). A reply still pending is delivered first (it arrived before this one). */
void sim_timeline_expect(sim_timeline_t *tl, const mpc_client_action_t *a, double arrival,
                         double start);

/* Delivers the pending reply if it has arrived by t. */
void sim_timeline_catch_up(sim_timeline_t *tl, double t);

/* The action in force at time t (delivering the pending reply when it has arrived). */
void sim_timeline_action(sim_timeline_t *tl, double t, float *out);

/* The actions that will be in force at t0, t0 + step, ... (n of them, act_dim floats
 * each) as far as the replies delivered so far tell. */
void sim_timeline_ahead(const sim_timeline_t *tl, double t0, double step, int n, int act_dim,
                        float *out);

#endif
