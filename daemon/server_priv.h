/*
 * server_priv.h: the server's state, shared by the three files that make the server:
 * server.c (setup, accepting connections, completions, signals, shutdown), dispatch.c
 * (a client's requests and steps) and snapshot.c (its status, read only). Calls go one
 * way: server.c -> dispatch.c -> snapshot.c. Hot-swap (reload.h) and recording
 * (record.h) get narrow inputs and do not see this struct. Private to daemon/.
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
    uv_timer_t expiry_timer; /* answers steps that waited too long (server.c on_expiry) */
    conn_t *ready; /* connections to serve again from the loop (dispatch_conn_ready) */
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
    uv_timer_t watchdog, stop_timer;
    bool stopping;
    /* draining (dispatch_drain): no new sessions; after drain-grace-s (grace_timer) each
     * session closes after its next reply, then `drained` stops the server */
    bool draining, drain_closing;
    double drain_closing_at; /* when the grace ended (mono.h) */
    uv_timer_t grace_timer;
    void (*drained)(struct server *s);
    uint64_t wd_completed; /* watchdog: worker progress at the last tick */
    int wd_stalled;        /* ticks without progress while steps were pending */
    guard_t *guard;        /* per-peer connection counts and Hello backoff */
    reloader_t *reloader;  /* hot-swap (reload.h) */
    /* status snapshot buffers and the cached StatusReply (snapshot.c) */
    mpcd_session_info_t *snap_sessions;
    int snap_cap;
    struct status_cache *status_cache;
    uint64_t state_gen; /* moves on every change a status shows (dispatch_changed) */
    /* episode recording (record.c) */
    recorder_t *recorder;
};

#endif
