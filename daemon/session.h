/*
 * session.h: one client's control episode: belief, previous action, warm-start plan, RNG
 * stream and a short history, plus the control step itself.
 *
 * The loop thread creates a session at Hello and validates every Step before handing it
 * to a worker (session_check_step); while a step is in flight the worker owns the session
 * (the loop never touches its state), and session_step runs the belief update, the CEM
 * plan and the bookkeeping. No libuv and no protobuf here: the session is tested on its
 * own with a real model.
 *
 * After a model swap the session's belief belongs to the old model; the next step re-syncs
 * it by replaying the recent (observation, action) history through the new model from a
 * zero state, so control goes on without an episode reset.
 *
 * A pixel session (its model observes images: registry_image_bytes(info) > 0) has no
 * observation floats (obs_dim 0); each step carries one image of img_bytes bytes (HWC,
 * top row first), which goes through rssm_observe_image, and its history keeps the
 * images. Every buffer for them is sized when the session is created.
 *
 * Delay compensation (Step.delay_steps = d): the action returned for observation t is
 * applied at control step t + d. The session keeps the actions it returned for the steps
 * still to come (`ahead`); a step updates the belief with the observation and the action
 * applied just before it, predicts the belief d steps ahead with the model's prior
 * through the actions applied meanwhile (the client's, or those in `ahead`), and plans
 * from there. d = 0 is the plain PlaNet step.
 */
#ifndef MPCD_SESSION_H
#define MPCD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "planner.h"
#include "registry.h"

typedef struct session_opts {
    int horizon;           /* planner horizon (warm-start length) */
    int history;           /* pairs kept for re-sync */
    bool posterior_sample; /* z' ~ q instead of its mean */
    uint64_t seed;         /* base seed of the daemon, mixed with the session id */
    uint64_t client_seed;  /* Hello.seed: used as it is when not 0 */
} session_opts_t;

/* Input of one step, filled by the loop before submission. */
typedef struct session_step_in {
    uint64_t seq;
    float *obs;     /* [O], owned by the session (nothing for a pixel session) */
    uint8_t *image; /* [img_bytes], owned by the session (pixel sessions only) */
    float reward;   /* reward of the previous action */
    bool reset;
    float noise;      /* exploration std relative to half the range */
    double t_read;    /* when the frame was read (common/mono.h's clock) */
    double deadline;  /* absolute, same clock: fixed when the frame was read */
    double reply_s;   /* the loop's recent time from a finished step to its reply sent:
                         planning stops that much earlier */
    bool answered;    /* the loop already replied with session_shed's action (the step
                         waited too long): update the belief, record that action, no plan */
    int delay_steps;  /* control steps until the returned action is applied (0 .. horizon) */
    bool has_applied; /* applied [delay_steps, A] holds the client's actions for them */
    float *applied;   /* [horizon, A], owned by the session */
} session_step_in_t;

/* Result of one step, filled by the worker. */
typedef struct session_step_out {
    float *action; /* [A], owned by the session */
    float *plan;   /* [horizon, A], owned by the session: the plan action starts (row 0 =
                      action), inside the bounds */
    float predicted_return;
    int iterations, candidates;
    bool deadline_cut, fallback, overrun;
    bool shed;              /* deadline already passed when a worker took it: no plan */
    double iteration_s;     /* the planner's predicted cost of a full iteration (0: unknown) */
    double t_start, t_done; /* when the worker took and finished the step (mono.h) */
    bool resynced;          /* the belief was replayed into a new model first */
    double queue_s, belief_s, plan_s;
    double kl_nats;      /* KL(q || p) of this step */
    double reward_error; /* reported - predicted reward of the previous action; NAN */
    uint64_t model_version;
    int rc; /* 0, or a negative errno (the step was not taken; -EDOM: the model produced
             * non-finite values, and the belief was reset so the session goes on) */
} session_step_out_t;

typedef struct session {
    uint64_t id;
    char name[64];
    double rate_hz;       /* steps per second it declared (Hello.rate_hz or the model's) */
    double admitted_rate; /* its share in admission control (0: an operator, uncounted) */
    int obs_dim, act_dim; /* fixed for the session's life (swaps keep them); obs_dim is 0
                             for a pixel session */
    size_t img_bytes;     /* a pixel session's image, H x W x C bytes; 0 for a vector one */
    session_opts_t opts;
    registry_model_t *model; /* the belief's model; holds a reference */
    int deter, stoch;        /* sizes of h and z for that model */
    float *h, *z;            /* belief [D], [S] */
    float *pred;             /* [2, D + S]: the belief predicted delay_steps ahead */
    float *a_prev;           /* [A] the action applied since the last observation */
    float *ahead;            /* [horizon, A] actions returned for the steps after it */
    int ahead_len;
    bool started; /* a step happened in this episode */
    bool resume;  /* the history came with a resuming Hello: replay it first */
    cem_plan_state_t plan;
    uint64_t rng;
    int hist_len, hist_next; /* ring of (obs, action) in this episode */
    float *hist_obs;         /* [history, O] */
    float *hist_act;         /* [history, A] */
    uint8_t *hist_img;       /* [history, img_bytes] (pixel sessions) */
    uint64_t steps, episodes;
    double surprise_mean; /* EWMA of KL over recent steps */
    double last_plan_s;
    double last_total_s; /* frame read -> reply queued (set by the loop) */
    float last_predicted_return;
    session_step_in_t in;
    session_step_out_t out;
    /* Copies for status readers on the loop thread, refreshed by session_publish when no
     * step is in flight (the fields above belong to a worker while one is). */
    struct {
        uint64_t steps, episodes, model_version;
        double surprise_mean, last_plan_s, last_total_s;
        float last_predicted_return;
    } pub;
} session_t;

/* Creates a session on model (takes a new reference). 0 or -ENOMEM. */
int session_create(uint64_t id, const char *name, registry_model_t *model,
                   const session_opts_t *opts, session_t **out);
/* Frees it and releases its model; accepts NULL. Not while a step is in flight. */
void session_destroy(session_t *s);

/* Starts a new episode: zero belief, no previous action, warm start and history cleared. */
void session_reset(session_t *s);

/* A Step's fields as they came off the wire. */
typedef struct session_step_fields {
    const float *obs;
    size_t n_obs;
    const uint8_t *image; /* [n_image] */
    size_t n_image;
    float reward;
    bool reset;
    float noise;
    uint32_t deadline_us;
    uint32_t delay_steps;
    const float *applied; /* [n_applied]: empty, or delay_steps x action size */
    size_t n_applied;
} session_step_fields_t;

/* Validates a Step's fields on the loop thread. Returns 0, -EMSGSIZE (wrong observation,
 * image or applied_actions size, or an observation of the wrong kind) or -EDOM (NaN/Inf or
 * out of the sane range below), with a message naming the field in err. The session is
 * not modified. */
int session_check_step(const session_t *s, const session_step_fields_t *f, char *err,
                       size_t errlen);

/* An observation [info->dims.obs] finite and within SESSION_MAX_OBS_STDS of the model's
 * mean; n action floats (rows of info->dims.action) inside the bounds, named `what` in
 * the message. 0 or -EDOM with err naming the value. */
int session_check_observation(const rssm_info_t *info, const float *obs, char *err,
                              size_t errlen);
int session_check_actions(const rssm_info_t *info, const char *what, const float *a, size_t n,
                          char *err, size_t errlen);

/* The observation a step must carry, as a message names it (registry_obs_shape), e.g.
 * "64x64x3 images (12288 bytes) and no observation vector" or "5 observation values and
 * no image", and as a Step carried it: "an image of 100 bytes and 0 observation values". */
int session_check_kind(const rssm_info_t *info, size_t n_obs, size_t n_image, const char *what,
                       char *err, size_t errlen);

/* Resume (a Hello with the history of a session that lost its connection): appends one
 * (observation, action applied after it) to the history; the next step replays the
 * history into the belief and continues the episode. obs: [obs_dim] floats (vector
 * sessions), image: [img_bytes] (pixel sessions; else NULL). Loop thread, before any
 * step. */
void session_resume_push(session_t *s, const float *obs, const uint8_t *image,
                         const float *act);

/* Longest per-request deadline accepted (a real-time step, not a batch job). */
#define SESSION_MAX_DEADLINE_US 60000000u
/* Sane inputs: an observation within this many of the model's normalisation stds of its
 * mean (a sensor that far out is broken, and the model's arithmetic would overflow), and
 * a reward within +- SESSION_MAX_REWARD. */
#define SESSION_MAX_OBS_STDS 1e4
#define SESSION_MAX_REWARD   1e6

/* Runs s->in through model (which may differ from s->model: then the belief is re-synced
 * first) on one worker's slot, writing s->out. Worker thread. */
void session_step(session_t *s, registry_model_t *model, registry_slot_t *slot);

/* Replays the history through model into a fresh belief (used by session_step after a
 * swap; exposed for tests). 0, -ENOMEM, or -EINVAL when the model refused an entry. */
int session_resync(session_t *s, registry_model_t *model, registry_slot_t *slot);

/* Where a step's plan starts (used by session_step; exposed for tests): the belief
 * carried s->in.delay_steps steps ahead by the model's prior (mean z) through the actions
 * applied meanwhile, which it first puts in s->in.applied when the client sent none (those
 * returned for the steps, the newest holding). *h and *z point at the session's belief
 * itself when the delay is 0, else into s->pred. Worker thread. */
void session_predict(session_t *s, const registry_model_t *model, registry_slot_t *slot,
                     const float **h, const float **z);

/* Copies the counters into s->pub (loop thread, no step in flight). */
void session_publish(session_t *s);

/* Fills s->out for a step that gets no plan (shed): the warm start's plan (action = its
 * first row), or the middle of the bounds at the start of an episode (also when s->in asks
 * for a reset), flagged fallback and deadline_cut, 0 iterations. Leaves the timings alone.
 * The loop thread may call it only while no step of s is running. */
void session_shed(session_t *s, const rssm_info_t *info);

#endif
