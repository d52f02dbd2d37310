/*
 * metrics.h: mpcd's counters and histograms, recorded from any thread.
 *
 * Two views of the same samples:
 *   - cumulative Prometheus histograms (fixed buckets, since start) for /metrics;
 *   - a sliding window over the last 60 s (one log-linear histogram per second, 61 of them
 *     in a ring) for the p50/p90/p99/max in /status and StatusReply.
 * Recording takes one short mutex, touches a few counters and allocates nothing, so it is
 * safe on the control path (workers and the loop thread).
 */
#ifndef MPCD_OPS_METRICS_H
#define MPCD_OPS_METRICS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    MPCD_REQ_HELLO,
    MPCD_REQ_STEP,
    MPCD_REQ_RESET,
    MPCD_REQ_STATUS,
    MPCD_REQ_RELOAD,
    MPCD_REQ_INVALID, /* undecodable frame or no body */
    MPCD_REQ_DRAIN,
    MPCD_REQ_COUNT
} mpcd_req_type_t;

typedef enum {
    MPCD_OUTCOME_OK,         /* answered normally */
    MPCD_OUTCOME_ERROR,      /* answered with an Error (bad input, no session, ...) */
    MPCD_OUTCOME_OVERLOADED, /* answered with Error{OVERLOADED} */
    MPCD_OUTCOME_SHED,       /* answered with a fallback action because of overload */
    MPCD_OUTCOME_COUNT
} mpcd_outcome_t;

typedef enum {
    MPCD_STAGE_QUEUE,  /* frame read -> worker takes the job */
    MPCD_STAGE_BELIEF, /* belief update */
    MPCD_STAGE_PLAN,   /* CEM */
    MPCD_STAGE_TOTAL,  /* frame read -> reply queued for write */
    MPCD_STAGE_COUNT
} mpcd_stage_t;

/* The other sliding-window series (for mpcd_metrics_window); stages come first. */
typedef enum {
    MPCD_SERIES_QUEUE = MPCD_STAGE_QUEUE,
    MPCD_SERIES_BELIEF = MPCD_STAGE_BELIEF,
    MPCD_SERIES_PLAN = MPCD_STAGE_PLAN,
    MPCD_SERIES_TOTAL = MPCD_STAGE_TOTAL,
    MPCD_SERIES_LATENESS = MPCD_STAGE_COUNT, /* reply time - deadline, s (negative: early) */
    MPCD_SERIES_SURPRISE,                    /* KL(posterior || prior), nats */
    MPCD_SERIES_REWARD_ERROR,                /* |reported - predicted reward| */
    MPCD_SERIES_ITERATIONS,                  /* CEM iterations per plan */
    MPCD_SERIES_OVERHEAD,                    /* total - plan: what is not planning, s */
    MPCD_SERIES_COUNT
} mpcd_series_t;

/* What the daemon refused or cut to protect itself and other clients (guard events). */
#define MPCD_GUARD_EVENTS(XX)                                                                  \
    XX(AUTH_FAILED, "auth_failed", "a Hello with a wrong token")                               \
    XX(AUTH_THROTTLED, "auth_throttled", "a Hello refused unchecked: its peer is backing off") \
    XX(PERMISSION_DENIED, "permission_denied", "an admin request without the admin role")      \
    XX(RELOAD_REFUSED_PATH, "reload_path_refused", "a Reload path outside model-dir")          \
    XX(HELLO_TIMEOUT, "hello_timeout", "a connection closed for not saying Hello in time")     \
    XX(EVICTED, "evicted", "a connection without Hello closed to make room for a new one")     \
    XX(PEER_LIMIT, "peer_limit", "a connection refused: its peer holds too many")              \
    XX(CONN_LIMIT, "connection_limit", "a connection refused: max-connections reached")        \
    XX(RECORD_QUOTA, "record_quota", "an episode not recorded: its session's quota was used")  \
    XX(BELIEF_RESET, "belief_reset", "a session's belief reset after non-finite values")

typedef enum {
#define XX(id, name, help) MPCD_GUARD_##id,
    MPCD_GUARD_EVENTS(XX)
#undef XX
        MPCD_GUARD_COUNT
} mpcd_guard_event_t;

typedef struct mpcd_step_sample {
    double queue_s, belief_s, plan_s, total_s; /* total: frame read -> reply queued for write */
    double slack_s; /* deadline - reply time; negative = late (overrun) */
    int iterations, candidates;
    bool deadline_cut, fallback, overrun;
    double kl_nats;      /* KL(posterior || prior) of this step; NAN when unknown */
    double reward_error; /* reported reward - reward the model predicted; NAN unknown */
} mpcd_step_sample_t;

/* Seconds (or the series' unit), over the last 60 s; all 0 when count is 0. Percentiles
 * come from log-linear buckets (within ~4 %), max is exact. */
typedef struct mpcd_latency_summary {
    uint64_t count;
    double p50, p90, p99, max;
} mpcd_latency_summary_t;

/* Since start. errors = outcomes ERROR + OVERLOADED (requests answered with an Error). */
typedef struct mpcd_totals {
    uint64_t requests, errors, deadline_cuts, fallbacks, overruns, reloads_ok, reloads_failed,
        steps;
    uint64_t sessions_admitted, sessions_refused; /* Hellos admitted / refused OVERLOADED */
} mpcd_totals_t;

typedef struct mpcd_metrics mpcd_metrics_t;

/* Returns 0 or -ENOMEM. */
int mpcd_metrics_create(mpcd_metrics_t **out);
void mpcd_metrics_destroy(mpcd_metrics_t *m); /* accepts NULL */

/* Any thread; no allocation. Out-of-range enums are counted as MPCD_REQ_INVALID /
 * MPCD_OUTCOME_ERROR rather than trusted. */
void mpcd_metrics_request(mpcd_metrics_t *m, mpcd_req_type_t type, mpcd_outcome_t outcome);
/* One answered Step (with an action). NaN/negative durations are ignored per field. */
void mpcd_metrics_step(mpcd_metrics_t *m, const mpcd_step_sample_t *s);
/* One model load attempt (startup, Reload, SIGHUP or file watch). */
void mpcd_metrics_reload(mpcd_metrics_t *m, bool ok, double load_s);
/* One Hello admitted (true) or refused by admission control (false). */
void mpcd_metrics_session(mpcd_metrics_t *m, bool admitted);
/* One guard event (any thread). */
void mpcd_metrics_guard(mpcd_metrics_t *m, mpcd_guard_event_t e);
uint64_t mpcd_metrics_guard_count(mpcd_metrics_t *m, mpcd_guard_event_t e);
const char *mpcd_guard_event_name(mpcd_guard_event_t e); /* "auth_failed", ... */

void mpcd_metrics_summary(mpcd_metrics_t *m, mpcd_stage_t stage, mpcd_latency_summary_t *out);
void mpcd_metrics_window(mpcd_metrics_t *m, mpcd_series_t series, mpcd_latency_summary_t *out);
void mpcd_metrics_totals(mpcd_metrics_t *m, mpcd_totals_t *out);
uint64_t mpcd_metrics_requests(mpcd_metrics_t *m, mpcd_req_type_t type, mpcd_outcome_t outcome);

/* The clock the sliding window reads (default CLOCK_MONOTONIC in seconds); tests replace
 * it to move time without sleeping. NULL restores the default. */
typedef double (*mpcd_clock_fn)(void *ctx);
void mpcd_metrics_set_clock(mpcd_metrics_t *m, mpcd_clock_fn now, void *ctx);

const char *mpcd_req_type_name(mpcd_req_type_t t); /* "hello", "step", ... */
const char *mpcd_outcome_name(mpcd_outcome_t o);   /* "ok", "error", ... */
const char *mpcd_stage_name(mpcd_stage_t s);       /* "queue", "belief", "plan", "total" */
const char *mpcd_series_name(mpcd_series_t s);     /* stages, "lateness", "surprise", ... */

#endif
