/*
 * server.c: the mpcd server: setup and teardown, listeners and accepting connections
 * (with their limits), handing finished worker steps back to dispatch.c (which serves the
 * requests), and tying in hot-swap (reload.c), recording (record.c), the HTTP status
 * endpoint, signals, the systemd watchdog and graceful shutdown.
 *
 * The loop thread owns sockets, sessions and the current model pointer; a worker owns a
 * session only while that session's single step is in flight, so session state needs no
 * locks. The loop does I/O, validation and bookkeeping only; nothing here blocks.
 */
#include "server_priv.h"
#include "dispatch.h"
#include "snapshot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "errbuf.h"
#include "mono.h"
#include "sched_slice.h"
#include "notify.h"
#include "wire.h"

/* The loop thread's scheduler slice (sched_slice.h): the kernel's minimum. */
#define LOOP_SLICE_S 0.0001

static void unlink_conn(server_t *s, conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    else
        return; /* never linked (accept failed) */
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->nconns--;
}

static void on_conn_closed(void *owner, conn_t *c)
{
    server_t *s = owner;
    unlink_conn(s, c);
    if (c->gpeer)
        guard_release(s->guard, c->gpeer, mono_now());
    c->gpeer = NULL;
    if (c->hello_timed_out)
        mpcd_metrics_guard(s->metrics, MPCD_GUARD_HELLO_TIMEOUT);
    dispatch_closed(s, c);
    if (!conn_maybe_free(c)) {
        /* A step is still in flight: dispatch_step_done frees it. Keep it as a zombie. */
        c->next = s->zombies;
        s->zombies = c;
    }
}

/* The oldest open connection without a Hello (of peer p, when p is not NULL) that has
 * nothing in flight: the one a new connection may replace at a limit. */
static conn_t *eviction_victim(server_t *s, const conn_t *newc, const guard_peer_t *p)
{
    conn_t *victim = NULL;
    for (conn_t *x = s->conns; x; x = x->next) /* newest first: the last match is oldest */
        if (x != newc && !x->closing && !x->hello_done && !x->busy && !x->reload &&
            (!p || x->gpeer == p))
            victim = x;
    return victim;
}

/* A limit is reached: the oldest connection without a Hello (of peer p, when not NULL)
 * makes room for c; when there is none, c is refused (one Error, then closed). */
static bool make_room(server_t *s, conn_t *c, const guard_peer_t *p, mpcd_guard_event_t why,
                      const char *fmt, int limit)
{
    conn_t *v = eviction_victim(s, c, p);
    if (v) {
        mpcd_log(MPCD_LOG_INFO, "connection %s closed (no Hello) to make room for %s",
                 v->peer.name, c->peer.name);
        mpcd_metrics_guard(s->metrics, MPCD_GUARD_EVICTED);
        conn_close(v);
        return true;
    }
    conn_send_error(c, 0, MPC__V1__ERROR__CODE__OVERLOADED, fmt, limit);
    dispatch_count(s, MPCD_REQ_INVALID, MPCD_OUTCOME_OVERLOADED);
    mpcd_metrics_guard(s->metrics, why);
    conn_stop_reading(c);
    c->close_when_flushed = true;
    mpcd_log(MPCD_LOG_WARNING, "refused connection from %s: %s", c->peer.name,
             why == MPCD_GUARD_PEER_LIMIT ? "max-connections-per-peer" : "max-connections");
    return false;
}

/* Per peer, then in all: at a limit a connection without Hello makes room, else c goes. */
static bool admit_conn(server_t *s, conn_t *c)
{
    int per_peer = s->cfg->max_connections_per_peer;
    if (c->gpeer && guard_connections(c->gpeer) > per_peer &&
        !make_room(s, c, c->gpeer, MPCD_GUARD_PEER_LIMIT,
                   "too many connections from this peer (max-connections-per-peer %d)",
                   per_peer))
        return false;
    /* Count the connections still open: one being closed (its fd already shut, its
     * handles not yet released) no longer takes a place. */
    int open = 0;
    for (conn_t *x = s->conns; x; x = x->next)
        open += !x->closing;
    return open <= s->cfg->max_connections ||
           make_room(s, c, NULL, MPCD_GUARD_CONN_LIMIT,
                     "too many connections (max-connections %d)", s->cfg->max_connections);
}

static void on_connection(uv_stream_t *ls, int status)
{
    listener_t *l = ls->data;
    server_t *s = l->data;
    if (status < 0) {
        mpcd_log(MPCD_LOG_WARNING, "%s: accept: %s", l->name, uv_strerror(status));
        return;
    }
    const mpcd_config_t *cfg = s->cfg;
    conn_limits_t lim = {.max_frame = (size_t)cfg->max_frame,
                         .max_queued = cfg->max_queued,
                         .max_unsent = (size_t)cfg->max_unsent_kb << 10,
                         .idle_timeout_s = cfg->idle_timeout_s,
                         .hello_timeout_s = cfg->hello_timeout_s};
    conn_t *c;
    static const conn_events_t events = {dispatch_readable, dispatch_overflow, dispatch_fatal,
                                         on_conn_closed};
    int rc = conn_accept(&events, s, ls, l->kind == ADDRESS_UNIX, &lim, &c);
    if (rc) {
        mpcd_log(MPCD_LOG_WARNING, "%s: accept: %s", l->name, uv_strerror(rc));
        return;
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if ((c->gpeer = guard_peer(s->guard, c->peer.key, mono_now())))
        guard_hold(c->gpeer);
    if (!admit_conn(s, c))
        return;
    mpcd_log(MPCD_LOG_DEBUG, "%s: connection from %s", l->name, c->peer.name);
}

/* While stopping, the loop runs as long as something still needs it: open connections,
 * loads, reaps and file writes on libuv's pool, and steps in flight on the workers (the
 * completion handle is referenced exactly while there are some). Everything else was
 * unreferenced by begin_shutdown, so uv_run returns when the last of those ends. */
static void update_liveness(server_t *s)
{
    int pending;
    uint64_t done;
    if (!s->stopping)
        return;
    workq_progress(&s->workq, &pending, &done);
    if (pending > 0)
        uv_ref((uv_handle_t *)&s->done_async);
    else
        uv_unref((uv_handle_t *)&s->done_async);
}

/* ---- worker results ---- */

static void on_done(uv_async_t *a)
{
    server_t *s = a->data;

    workq_job_t *j = workq_take_done(&s->workq);
    while (j) {
        workq_job_t *next = j->next;
        conn_t *c = ((conn_t *)((char *)j - offsetof(conn_t, step.job)));
        dispatch_step_done(s, c);
        if (c->closing) {
            /* a zombie: its handles may be closed already */
            conn_t **p = &s->zombies;
            while (*p && *p != c)
                p = &(*p)->next;
            conn_t *after = c->next;
            if (*p && conn_maybe_free(c))
                *p = after;
        } else {
            dispatch_pump(s, c);
        }
        j = next;
    }
    dispatch_expect_next_step(s);
    if (registry_dead_count(&s->registry))
        reload_reap(s->reloader);
    update_liveness(s);
}

static void wake_loop(void *ctx)
{
    uv_async_send(ctx);
}

/* ---- shutdown ---- */

static void on_closed_quiet(uv_handle_t *h)
{
    (void)h;
}

/* ---- what the reloader reports ---- */

static void model_swapped(void *ctx, registry_model_t *m)
{
    server_t *s = ctx;
    admission_set_model(&s->admission, m->iteration_s);
}

static void reload_changed(void *ctx, conn_t *c)
{
    dispatch_changed(ctx, c);
}

static void reload_answered(void *ctx, conn_t *c)
{
    dispatch_conn_ready(ctx, c);
}

static void reload_status_line(void *ctx, char *out, size_t outlen)
{
    snapshot_status_line(ctx, out, outlen);
}

static const reload_events_t reload_events = {model_swapped, reload_changed, reload_answered,
                                              reload_status_line};

static void on_stop_timeout(uv_timer_t *t)
{
    server_t *s = t->data;
    mpcd_log(MPCD_LOG_WARNING, "shutdown: %d connection(s) still busy after %g s; closing",
             s->nconns, s->cfg->shutdown_timeout_s);
    for (conn_t *c = s->conns; c; c = c->next)
        conn_close(c);
}

static void begin_shutdown(server_t *s, const char *why)
{
    if (s->stopping)
        return;
    s->stopping = true;
    mpcd_log(MPCD_LOG_NOTICE, "%s: stopping (answering %d connection(s) in flight)", why,
             s->nconns);
    mpcd_notify("STOPPING=1");
    for (int i = 0; i < s->nlisteners; i++)
        listen_close(&s->listeners[i], on_closed_quiet);
    reload_stop_watch(s->reloader);
    mpcd_http_unref(s->http); /* /readyz keeps saying 503 while the drain lasts */
    uv_unref((uv_handle_t *)&s->sig_term);
    uv_unref((uv_handle_t *)&s->sig_int);
    uv_unref((uv_handle_t *)&s->sig_hup);
    uv_unref((uv_handle_t *)&s->watchdog);
    uv_unref((uv_handle_t *)&s->expiry_timer);
    uv_timer_stop(&s->grace_timer);
    uv_unref((uv_handle_t *)&s->grace_timer);
    uv_timer_start(&s->stop_timer, on_stop_timeout,
                   (uint64_t)(s->cfg->shutdown_timeout_s * 1000) + 1, 0);
    uv_unref((uv_handle_t *)&s->stop_timer); /* fires only if clients still hold the loop */
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_stop_reading(c);
        dispatch_pump(s, c);
    }
    update_liveness(s);
}

static void drained(server_t *s)
{
    begin_shutdown(s, "drained");
}

/* SIGTERM drains (the sessions move to other instances first); a second one, or SIGINT,
 * stops at once (still answering what is in flight). */
static void on_signal(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (signum == SIGHUP) {
        mpcd_log(MPCD_LOG_NOTICE, "SIGHUP: reloading the model");
        reload_request(s->reloader, NULL, 0, NULL, false);
        return;
    }
    if (signum == SIGTERM && !s->draining) {
        mpcd_notify("STATUS=draining");
        dispatch_drain(s, "SIGTERM");
        return;
    }
    uv_timer_stop(&s->grace_timer);
    begin_shutdown(s, signum == SIGTERM ? "second SIGTERM" : "SIGINT");
}

/* Pings systemd only while the daemon works: the loop runs (or we would not be here) and
 * the workers make progress (a stuck planner stops the pings, and systemd restarts us). */
static void on_watchdog(uv_timer_t *t)
{
    server_t *s = t->data;
    int pending;
    uint64_t done;
    workq_progress(&s->workq, &pending, &done);
    if (pending > 0 && done == s->wd_completed) {
        if (++s->wd_stalled >= 2) {
            mpcd_log(MPCD_LOG_ERR,
                     "watchdog: %d step(s) pending and none finished for %d "
                     "periods; not pinging systemd",
                     pending, s->wd_stalled);
            return;
        }
    } else {
        s->wd_stalled = 0;
    }
    s->wd_completed = done;
    mpcd_notify("WATCHDOG=1");
}

/* ---- setup ---- */

static int open_listeners(server_t *s, char *err, size_t errlen)
{
    int fds[CONFIG_MAX_LISTEN];
    int n = listen_activation_fds(fds, CONFIG_MAX_LISTEN);
    int rc;
    if (n > 0) {
        for (int i = 0; i < n; i++) {
            listener_t *l = &s->listeners[s->nlisteners];
            l->data = s;
            l->h.handle.data = l;
            if ((rc = listen_open_fd(s->loop, l, fds[i], on_connection, err, errlen)))
                return rc;
            l->h.handle.data = l;
            s->nlisteners++;
            mpcd_log(MPCD_LOG_INFO, "listening on %s (socket activation)", l->name);
        }
        return 0;
    }
    for (int i = 0; i < s->cfg->nlisten; i++) {
        address_t a;
        listener_t *l = &s->listeners[s->nlisteners];
        if ((rc = address_parse(s->cfg->listen[i], ADDRESS_LISTEN, &a, err, errlen)))
            return rc;
        l->data = s;
        rc = listen_open(s->loop, l, &a, s->cfg->unix_mode, on_connection, err, errlen);
        l->h.handle.data = l;
        s->nlisteners++; /* initialised: closed on failure */
        if (rc)
            return rc;
        mpcd_log(MPCD_LOG_INFO, "listening on %s", l->name);
    }
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int server_create(const mpcd_config_t *cfg, server_t **out, char *err, size_t errlen)
{
    server_t *s = calloc(1, sizeof *s);
    int rc = -ENOMEM;
    *out = NULL;
    if (!s) {
        errbuf_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->cfg = cfg;
    s->t_start = mono_now();
    s->nworkers = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->nworkers < 1)
        s->nworkers = 1;
    s->loop = &s->loop_storage;
    if ((rc = uv_loop_init(s->loop))) {
        errbuf_set(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        free(s);
        return rc;
    }
    s->loop_ok = true;
    uv_async_init(s->loop, &s->done_async, on_done);
    s->done_async.data = s;
    if ((rc = mpcd_metrics_create(&s->metrics)) || (rc = guard_create(&s->guard))) {
        errbuf_set(err, errlen, "out of memory");
        goto fail;
    }
    if ((rc = registry_init(&s->registry, wake_loop, &s->done_async))) {
        errbuf_set(err, errlen, "registry: %s", strerror(-rc));
        goto fail;
    }
    s->registry_ok = true;
    reload_opts_t rlo = {.cfg = cfg,
                         .nworkers = s->nworkers,
                         .registry = &s->registry,
                         .metrics = s->metrics,
                         .ev = &reload_events,
                         .ctx = s};
    if ((rc = reloader_create(s->loop, &rlo, &s->reloader, err, errlen)))
        goto fail;
    if (cfg->record) {
        record_opts_t ro = {.dir = cfg->record,
                            .max_mb = cfg->record_max_mb,
                            .episodes_per_min = cfg->record_episodes_per_min,
                            .metrics = s->metrics};
        if ((rc = recorder_create(s->loop, &ro, &s->recorder, err, errlen)))
            goto fail;
    }
    if (cfg->model && (rc = reload_initial(s->reloader, cfg->model, err, errlen)))
        goto fail;
    admission_init(&s->admission, s->nworkers, cfg->max_load, cfg->min_iterations);
    if (s->registry.current)
        admission_set_model(&s->admission, s->registry.current->iteration_s);
    if (!(s->workers = calloc((size_t)s->nworkers, sizeof *s->workers))) {
        errbuf_set(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < s->nworkers; i++)
        s->workers[i] = (server_worker_t){.s = s, .index = i};
    if ((rc = workq_init(&s->workq, s->nworkers, cfg->planner.nice, wake_loop,
                         &s->done_async))) {
        errbuf_set(err, errlen, "cannot start %d workers: %s", s->nworkers, strerror(-rc));
        goto fail;
    }
    s->workq_ok = true;
    workq_set_warm(&s->workq, cfg->warm_up_ms * 1e-3, dispatch_warm_team, s);
    if ((rc = open_listeners(s, err, errlen)))
        goto fail;
    if (cfg->status_listen) {
        char msg[256];
        if ((rc = mpcd_http_start(s->loop, cfg->status_listen, s->metrics, snapshot_fill, s,
                                  &s->http, msg, sizeof msg))) {
            errbuf_set(err, errlen, "status endpoint %s: %s", cfg->status_listen, msg);
            goto fail;
        }
        mpcd_http_watch_generation(s->http, &s->state_gen);
        mpcd_log(MPCD_LOG_INFO, "status endpoint on http://%s", mpcd_http_address(s->http));
    }
    uv_signal_init(s->loop, &s->sig_term);
    uv_signal_init(s->loop, &s->sig_int);
    uv_signal_init(s->loop, &s->sig_hup);
    s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_hup, on_signal, SIGHUP);
    uv_timer_init(s->loop, &s->watchdog);
    s->watchdog.data = s;
    uv_timer_init(s->loop, &s->stop_timer);
    s->stop_timer.data = s;
    uv_timer_init(s->loop, &s->grace_timer);
    s->grace_timer.data = s;
    s->drained = drained;
    uv_timer_init(s->loop, &s->expiry_timer);
    s->expiry_timer.data = s;
    uv_idle_init(s->loop, &s->ready_idle);
    s->ready_idle.data = s;
    uint64_t wd = mpcd_notify_watchdog_usec();
    if (wd) {
        uint64_t ms = wd / 2000 ? wd / 2000 : 1; /* twice per period, systemd's advice */
        uv_timer_start(&s->watchdog, on_watchdog, ms, ms);
    }
    *out = s;
    return 0;
fail:
    server_destroy(s);
    return rc < 0 ? rc : -EINVAL;
}

int server_run(server_t *s)
{
    /* This thread runs the loop: on wake-up it preempts the planner instead of waiting
     * for the planner's slice to end (replies were up to 3.5 ms late on 2 busy CPUs). */
    int src = sched_slice_request(LOOP_SLICE_S);
    if (src)
        mpcd_log(MPCD_LOG_INFO,
                 "event loop: no short scheduler slice (%s); replies may wait "
                 "for the planner's time slice",
                 strerror(-src));
    char st[256];
    snapshot_status_line(s, st, sizeof st);
    mpcd_notify("READY=1");
    mpcd_notifyf("STATUS=%s", st);
    mpcd_log(MPCD_LOG_NOTICE, "ready: %s", st);
    uv_run(s->loop, UV_RUN_DEFAULT);
    mpcd_log(MPCD_LOG_NOTICE, "stopped");
    return 0;
}

void server_destroy(server_t *s)
{
    if (!s)
        return;
    if (s->workq_ok)
        workq_destroy(&s->workq);
    for (int i = 0; s->workers && i < s->nworkers; i++)
        registry_release(s->workers[i].model);
    /* Startup failures leave handles open: close them and let the loop finish. */
    if (s->loop_ok) {
        for (int i = 0; i < s->nlisteners; i++)
            listen_close(&s->listeners[i], NULL);
        if (s->http)
            mpcd_http_stop(s->http);
        uv_walk(s->loop, close_walk, NULL);
        uv_run(s->loop, UV_RUN_DEFAULT);
        uv_loop_close(s->loop);
    }
    recorder_destroy(s->recorder);
    reloader_destroy(s->reloader);
    if (s->registry_ok) {
        s->registry.wake = NULL; /* the async handle is closed by now */
        registry_destroy(&s->registry);
    }
    mpcd_metrics_destroy(s->metrics);
    guard_destroy(s->guard);
    snapshot_cache_free(s);
    free(s->snap_sessions);
    free(s->workers);
    free(s);
}
