/*
 * planner.h: libplanner, deadline-bounded cross-entropy-method planning in latent space.
 *
 * From a belief (h, z) the planner searches action sequences of `horizon` steps by
 * imagining `candidates` of them through the RSSM prior (librssm's batched sgemm path),
 * refits a per-time-step diagonal Gaussian to the `top_k` best by predicted return, and
 * repeats for `iterations` or until the deadline, whichever comes first (PlaNet CEM, with
 * optional iCEM and MPPI variants). No I/O, no libuv: a robot can link it directly.
 *
 * A cem_planner_t owns a workspace sized for one model and configuration plus a fixed team
 * of threads; cem_plan() allocates nothing. One planner serves one plan at a time; the
 * daemon keeps one per worker. The warm-start plan (cem_plan_state_t) belongs to the
 * caller (the client's session), so sessions can move between planners.
 */
#ifndef MPC_PLANNER_H
#define MPC_PLANNER_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "rssm.h"

typedef struct cem_config {
    int candidates;     /* J, default 1000 */
    int top_k;          /* K, default 100 */
    int iterations;     /* I, default 10 */
    int horizon;        /* H, default 12 */
    int threads;        /* team size incl. the calling thread; default: online CPUs,
                           at most 4 (the daemon sets its own) */
    double margin_s;    /* stop this long before the deadline, default 0.001 */
    bool sample_latent; /* sample z ~ prior (PlaNet, default) or use the prior mean */
    bool use_value;     /* add discount^H * v(s_H) when the model has a value head */
    /* iCEM (Pinneri et al. 2020): off by default (PlaNet's plain CEM); cem_config_icem()
     * sets the values the benchmark found better */
    double population_decay; /* J_i = max(2K, J * decay^i); 1.0 = off */
    double keep_elites;      /* fraction of the top K carried into the next iteration */
    double noise_beta;       /* colored noise exponent (0 = white, 2 = iCEM's choice) */
    /* MPPI-style refit: exp(temperature * (R - max R)) weights over all candidates; the
     * temperature is in units of 1 / return (too hot collapses the std too early) */
    bool mppi;
    double mppi_temperature;
    float min_std;  /* floor on the per-step std, relative to half the range */
    float init_std; /* initial std relative to half the range, default 1 */
    int block_rows; /* candidates per librssm call, 0 = automatic (tuning knob) */
    int nice;       /* niceness (0..19) of the team's helper threads, default 0. A server
                       sets it above its I/O thread's (and runs the calling thread at the
                       same), so the thread that sends replies preempts a plan at once */
} cem_config_t;

void cem_config_default(cem_config_t *cfg);

/* Turns the iCEM options on (population_decay 0.7, keep_elites 0.3, noise_beta 2): better
 * plans per iteration and per millisecond on tests/bench's model and on the trained
 * cartpole model (planner/README.md). Leaves every other field as it is. */
void cem_config_icem(cem_config_t *cfg);

/* Checks ranges (top_k <= candidates, horizon >= 1, ...); fills err naming the field. */
int cem_config_validate(const cem_config_t *cfg, char *err, size_t errlen);

/* The warm start carried between steps of one episode: mean [horizon x A]. */
typedef struct cem_plan_state {
    int horizon;
    int action_dim;
    bool valid;     /* false: start from mean 0 (the middle of the bounds) */
    float *mean;    /* [horizon, action_dim], in action units */
    int stale_tail; /* last steps re-initialised by shifts (planned from the middle) */
} cem_plan_state_t;

/* Allocates mean (0, -EINVAL or -ENOMEM); the state starts invalid. */
int cem_plan_state_init(cem_plan_state_t *s, int horizon, int action_dim);
/* Frees mean; accepts NULL and a state freed before. */
void cem_plan_state_free(cem_plan_state_t *s);
/* New episode: the next plan starts from the middle of the bounds. */
void cem_plan_state_reset(cem_plan_state_t *s);
/* Shift by one step after an action was taken (last step re-initialised). */
void cem_plan_state_shift(cem_plan_state_t *s);
/* The plan's value for step t, action dimension d, as cem_plan starts from it (its warm
 * start) and as a robot should follow it: the mean where it is fresh, else the middle of
 * [lo, hi]; clipped to [lo, hi] (the action bounds, [action_dim] each). */
float cem_plan_state_at(const cem_plan_state_t *s, const float *lo, const float *hi, int t,
                        int d);
/* All of it: rows [horizon, action_dim] of cem_plan_state_at. */
void cem_plan_state_rows(const cem_plan_state_t *s, const float *lo, const float *hi,
                         float *rows);

typedef struct cem_result {
    float *action;          /* caller-provided [A]: first action of the plan (the refitted
                               mean, as PlaNet), inside the action bounds */
    float predicted_return; /* best predicted return among the last iteration's candidates;
                               NaN on a fallback (nothing was predicted) */
    int iterations;         /* completed */
    int candidates;         /* evaluated in total */
    bool deadline_cut;      /* stopped before `iterations` because of the deadline */
    bool fallback;          /* not even one iteration fitted: warm-start first action */
    bool overrun;           /* returned after the deadline (rare, counted) */
    double plan_s;          /* wall time spent */
    double iteration_s;     /* measured cost of one iteration (EWMA), for callers */
} cem_result_t;

typedef struct cem_planner cem_planner_t;

/* Sizes the workspace for this model and config (cfg NULL = defaults), starts
 * cfg->threads - 1 helper threads and runs two calibration iterations (their time is the
 * first cost estimate for deadlines). Sets OpenBLAS to one thread, process-wide: the team
 * is the parallelism. The model must outlive the planner. Returns 0, -EINVAL (bad config,
 * use_value without a value head; err names the field) or -ENOMEM. */
int cem_create(const rssm_model_t *m, const cem_config_t *cfg, cem_planner_t **out, char *err,
               size_t errlen);
/* Joins the threads and frees everything; accepts NULL. */
void cem_destroy(cem_planner_t *p);

const cem_config_t *cem_get_config(const cem_planner_t *p);
const rssm_model_t *cem_model(const cem_planner_t *p);

/* Counters over the planner's lifetime (read by the caller's thread between plans). */
typedef struct cem_stats {
    uint64_t plans;
    uint64_t iterations;    /* completed */
    uint64_t candidates;    /* evaluated in completed iterations */
    uint64_t deadline_cuts; /* plans stopped early by the deadline */
    uint64_t aborted;       /* iterations abandoned mid-way at the deadline */
    uint64_t stragglers;    /* of which a helper thread was still busy (preempted) */
    uint64_t fallbacks;     /* plans that returned the warm start */
    uint64_t yields;        /* plans stopped early by the caller's cem_continue_fn */
    uint64_t overruns;      /* plans that returned after their deadline */
    double max_overrun_s;   /* worst lateness */
} cem_stats_t;

void cem_get_stats(const cem_planner_t *p, cem_stats_t *out);

/* The planner's current prediction of one full iteration's wall time, s (as
 * cem_result_t.iteration_s; after cem_create, the calibration's). Not during a plan. */
double cem_iteration_estimate(const cem_planner_t *p);

/* Asked before every iteration after the first: `done` iterations are complete and the
 * next one is predicted to end at `next_end_s` (CLOCK_MONOTONIC seconds). Returning false
 * ends the plan with what it has (counted in cem_stats_t.yields, not as a deadline cut).
 * The daemon's scheduler uses it to hand the worker to a request whose deadline comes
 * first. Called on the planning thread; must be quick. */
typedef bool (*cem_continue_fn)(void *ctx, int done, double next_end_s);

/* Installs (or, with fn NULL, removes) the scheduler's callback. Not during a plan. */
void cem_set_continue(cem_planner_t *p, cem_continue_fn fn, void *ctx);

/* on: a plan follows shortly: wakes the planner's team now and keeps it spinning, so the
 * wake-up of the helper threads overlaps the caller's belief update instead of delaying
 * the first iteration (cem_plan does it too, later). cem_plan lets the team sleep again
 * when it returns; a caller that turned it on and then does not plan turns it off. A
 * spinning CPU per helper meanwhile, so only right before a plan. */
void cem_keep_awake(cem_planner_t *p, bool on);

/* Plans from belief (h [D], z [S]) until `deadline` (CLOCK_MONOTONIC seconds, absolute:
 * common/mono.h's clock; INFINITY = no deadline). Reads the warm start from state and writes
 * the new plan mean back (not shifted: call cem_plan_state_shift before the next step).
 * Deterministic for a given seed, model, config and thread count, as long as the deadline does
 * not cut the plan.
 *
 * Deadline: an iteration starts only if its predicted cost (measured as the planner runs,
 * first in cem_create) ends before deadline - margin_s; inside an iteration no librssm call
 * starts that would still run at deadline - margin_s / 2 (the iteration is then dropped).
 * The plan of the last completed iteration is returned; with none, the warm start's first
 * action (res->fallback) and the state is left unchanged. Lateness is reported in
 * res->overrun and counted in cem_stats_t, never hidden.
 *
 * Returns 0, -EINVAL (NULL pointers, res->action NULL, state sized for another horizon or
 * action size, a NaN deadline) or -EDOM (non-finite h or z). Allocates nothing. */
int cem_plan(cem_planner_t *p, const float *h, const float *z, cem_plan_state_t *state,
             uint64_t seed, double deadline, cem_result_t *res);

#endif
