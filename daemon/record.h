/*
 * record.h: --record DIR: every session's transitions become episode files the trainer
 * reads (common/EPISODES.md). See record.c for the pairing of observations, actions and
 * rewards, the disk cap and the per-session quota.
 *
 * Loop thread only. The recorder knows nothing of the server: it is given the loop (for
 * its file writes on libuv's pool: a write in progress keeps the loop, and so a
 * shutting-down daemon, alive), its settings and the metrics it counts refusals in.
 */
#ifndef MPCD_RECORD_H
#define MPCD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "metrics.h"
#include "session.h"

typedef struct recorder recorder_t;
/* One session's episode being collected; NULL before its first recorded step. */
typedef struct record_episode record_episode_t;

typedef struct record_opts {
    const char *dir;         /* created if missing */
    int64_t max_mb;          /* stop recording once dir holds this much */
    int episodes_per_min;    /* per session; more are not recorded */
    mpcd_metrics_t *metrics; /* counts MPCD_GUARD_RECORD_QUOTA */
} record_opts_t;

/* 0, or a negative errno with the reason in err (nothing created). */
int recorder_create(uv_loop_t *loop, const record_opts_t *o, recorder_t **out, char *err,
                    size_t errlen);
/* Logs the totals and frees it (files still being written must be done); accepts NULL. */
void recorder_destroy(recorder_t *r);

/* After a step of se (its in and out): adds the transition to *ep (created on the first
 * call). A step that failed (se->out.rc) is not recorded. r may be NULL (not recording). */
void record_step(recorder_t *r, record_episode_t **ep, const session_t *se);
/* The session's episode is over (reset, new Hello, closed): its file is written and *ep
 * freed. r may be NULL (then *ep is only freed). */
void record_session_end(recorder_t *r, record_episode_t **ep);
/* Files still being written. */
bool record_busy(const recorder_t *r);

#endif
