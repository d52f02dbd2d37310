/*
 * server_priv.h: the server's state, shared by its parts: server.c (connections, requests,
 * steps, shutdown), reload.c (hot-swap), snapshot.c (status) and record.c (episode
 * recording). Private to daemon/.
 */
#ifndef MPCD_SERVER_PRIV_H
#define MPCD_SERVER_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "admission.h"
#include "config.h"
#include "guard.h"
#include "conn.h"
#include "http_status.h"
#include "listen.h"
#include "metrics.h"
#include "record.h"
#include "reload.h"
#include "registry.h"
#include "server.h"
#include "status.h"
#include "workq.h"

/* What a worker's planner needs to ask the scheduler (cem_set_continue's context). */
/* Replies whose worst worker-to-reply latency planning keeps clear of (dispatch.c). */
#define REPLY_WINDOW 256

typedef struct server_worker {
    struct server *s;
    int index;
    registry_model_t *model; /* of its last step (a reference): what warm_team wakes */
} server_worker_t;

struct server {
    const mpcd_config_t *cfg;
    uv_loop_t loop_storage, *loop;
    bool loop_ok, registry_ok, workq_ok;
    double t_start;
    int nworkers;
    mpcd_metrics_t *metrics;
    registry_t registry;
    workq_t workq;
    server_worker_t *workers; /* [nworkers] */
    admission_t admission;
    double reply_reserve_s;             /* planning stops this much earlier (dispatch.c) */
    double reply_latency[REPLY_WINDOW]; /* the last replies' worker-to-reply times */
    int reply_next;
    int fair;                /* the fair share last given to workq_set_fair */
    uv_timer_t expiry_timer; /* answers steps that waited too long (server.c on_expiry) */
    conn_t *ready;           /* connections to serve again from the loop (server_conn_ready) */
    uv_idle_t ready_idle;
    uv_async_t done_async; /* workers finished steps, or a model died */
    listener_t listeners[CONFIG_MAX_LISTEN];
    int nlisteners;
    conn_t *conns; /* open connections */
    int nconns;
    conn_t *zombies; /* closed, waiting for their in-flight step */
    uint64_t next_session_id;
    mpcd_http_t *http;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t watchdog, drain_timer;
    bool stopping;
    uint64_t wd_completed; /* watchdog: worker progress at the last tick */
    int wd_stalled;        /* ticks without progress while steps were pending */
    guard_t *guard;        /* per-peer connection counts and Hello backoff */
    reloader_t *reloader;  /* hot-swap (reload.h) */
    /* status snapshot buffers and the cached StatusReply (snapshot.c) */
    mpcd_session_info_t *snap_sessions;
    int snap_cap;
    struct status_cache *status_cache;
    uint64_t state_gen; /* moves on every change a status shows (server_changed) */
    /* episode recording (record.c) */
    recorder_t *recorder;
};

/* server.c: the state a status shows changed (c: the connection that changed it). */
void server_changed(server_t *s, conn_t *c);
/* server.c: c's request in progress was answered (a completion): its next requests are
 * served from the loop, never from the completion's stack. */
void server_conn_ready(server_t *s, conn_t *c);

/* snapshot.c */
void server_snapshot(void *ctx, mpcd_status_t *out);
/* Answers Status from the cached StatusReply (MPCD_STATUS_MIN_AGE_S), rebuilt too when
 * the asking connection's own change is newer, so a client asking in a loop costs the
 * loop a copy, not a rebuild. */
void server_send_status(server_t *s, conn_t *c, uint64_t id);
void server_status_cache_free(server_t *s);
void server_status_line(server_t *s, char *out, size_t outlen);

#endif
