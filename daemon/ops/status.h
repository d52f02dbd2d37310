/*
 * status.h: renders one snapshot of the daemon's state plus its metrics as the /status JSON
 * document and as Prometheus text exposition format 0.0.4 (/metrics).
 *
 * The daemon fills an mpcd_status_t on the loop thread (pointers stay valid for the call);
 * rendering reads it and the thread-safe metrics and returns a malloc'd string.
 */
#ifndef MPCD_OPS_STATUS_H
#define MPCD_OPS_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"
#include "planner.h"
#include "rssm.h"

/* Status documents (HTTP /status and /metrics, the protocol's StatusReply) are cached:
 * rebuilt when the daemon's state generation moved (a Hello, a step, a reset, a reload, a
 * session closed) and the last build is at least MPCD_STATUS_MIN_AGE_S old, or when it is
 * MPCD_STATUS_MAX_AGE_S old (latency windows, uptime). A client asking in a loop gets
 * copies of one build, so it cannot hog the loop thread. */
#define MPCD_STATUS_MIN_AGE_S 0.001
#define MPCD_STATUS_MAX_AGE_S 1.0

/* True when a document built at built_ms for generation built_gen must be rebuilt. */
static inline bool mpcd_status_stale(uint64_t now_ms, uint64_t built_ms, uint64_t built_gen,
                                     uint64_t gen)
{
    uint64_t age = now_ms - built_ms;
    return age >= (uint64_t)(MPCD_STATUS_MAX_AGE_S * 1000) ||
           (gen != built_gen && age >= (uint64_t)(MPCD_STATUS_MIN_AGE_S * 1000));
}

typedef struct mpcd_session_info {
    uint64_t id;
    char name[64]; /* Hello.client_name */
    char peer[96]; /* "127.0.0.1:50312", "unix" */
    uint64_t steps, episodes;
    double age_s, last_total_ms, last_predicted_return;
    /* added by D2 (zero when the daemon does not fill them) */
    double last_plan_ms;    /* SessionSummary.last_plan_us / 1000 */
    double mean_surprise;   /* mean KL(posterior || prior) over recent steps, nats */
    uint64_t model_version; /* model the session's belief is synced to */
} mpcd_session_info_t;

typedef struct mpcd_status {
    const char *version; /* daemon version */
    double uptime_s;
    bool ready;                    /* a model is loaded and serving */
    bool draining;                 /* admits no new session, hands the open ones over */
    const rssm_model_t *model;     /* NULL when none; metadata via rssm_info / rssm_metadata */
    uint64_t model_version;        /* 1 for the first model, +1 per successful swap */
    const char *model_path;        /* NULL or "" when none */
    double model_load_s;           /* time the current model took to load and validate */
    const char *last_reload_error; /* "" (or NULL) when none */
    const cem_config_t *planner;   /* NULL when unknown */
    double default_deadline_ms;
    int workers;
    struct {
        bool full;          /* a session at the model's own rate would be refused now */
        double load;        /* fraction of the workers' time admitted minimum plans take */
        double max_load;    /* the limit (config max-load) */
        int min_iterations; /* config min-iterations */
        double plan_cost_s; /* one minimum plan: belief update + min_iterations iterations */
        double iteration_s; /* measured cost of one CEM iteration */
    } admission;
    int sessions_count;
    const mpcd_session_info_t *sessions; /* [sessions_count] */
} mpcd_status_t;

/* The /status document (see daemon/ops/README or the test for its keys). malloc'd; NULL on
 * OOM. m may be NULL (no metrics sections). */
char *mpcd_status_json(const mpcd_status_t *st, mpcd_metrics_t *m);

/* Prometheus text format 0.0.4, HELP and TYPE for every family. malloc'd; NULL on OOM. */
char *mpcd_status_prometheus(const mpcd_status_t *st, mpcd_metrics_t *m);

#endif
