/*
 * reload.c: hot-swap. Reload requests (protocol, SIGHUP, file watch) wait in a FIFO and
 * run one at a time: load + validate + smoke test + per-worker planners on libuv's thread
 * pool (registry_model_load), then an atomic swap on the loop. Steps keep flowing the
 * whole time; a step already in flight finishes on the model it started with (its
 * reference keeps it alive), and every session re-syncs its belief on its next step.
 * A refused file leaves the old model serving and is reported in the reply, the log,
 * /status (last_reload_error) and the reload metrics.
 *
 * Loads read files through model_file_open: a client's path is confined beneath model-dir
 * (the configured one, else the directory of --model); SIGHUP, --watch and the startup
 * model are the operator's paths. A load still running after reload-timeout-s is
 * abandoned: its requester hears so at once, the next load may start, and whatever the
 * stuck thread eventually returns is discarded (while one is stuck, new loads are
 * refused, so stuck loads cannot eat libuv's thread pool).
 *
 * The file watch follows the atomic-rename pattern: it watches the model's directory and
 * reloads (after a short debounce) when an entry with the model's file name changes, so
 * `mv new.safetensors model.safetensors` triggers exactly one reload of a complete file.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mono.h"
#include "notify.h"
#include "server_priv.h"

#define WATCH_DEBOUNCE_MS 200

static void start_next(server_t *s);
static void free_req(reload_req_t *r);

static void watch_start(server_t *s);

int reload_init(server_t *s, char *err, size_t errlen)
{
    uv_timer_init(s->loop, &s->reload.debounce);
    s->reload.debounce.data = s;
    uv_timer_init(s->loop, &s->reload.timeout);
    s->reload.timeout.data = s;
    /* Clients' Reload paths stay beneath model-dir: the configured one, else --model's. */
    const char *dir = s->cfg->model_dir;
    char buf[4096];
    if (!dir && s->cfg->model) {
        snprintf(buf, sizeof buf, "%s", s->cfg->model);
        dir = dirname(buf);
    }
    if (dir && !(s->model_dir = strdup(dir))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

void reload_destroy(server_t *s)
{
    reload_req_t *r = s->reload.head;
    while (r) {
        reload_req_t *next = r->next;
        free_req(r);
        r = next;
    }
    s->reload.head = s->reload.tail = NULL;
    free(s->reload.path);
    s->reload.path = NULL;
    free(s->model_dir);
    s->model_dir = NULL;
}

static void set_path(server_t *s, const char *path)
{
    char *p = strdup(path);
    if (p) {
        free(s->reload.path);
        s->reload.path = p;
    }
}

int reload_initial(server_t *s, const char *path, char *err, size_t errlen)
{
    registry_model_t *m;
    registry_source_t src = {path, NULL, (size_t)s->cfg->max_model_mb << 20};
    int rc = registry_model_load(&src, &s->cfg->planner, s->nworkers, NULL, &m, err, errlen);
    mpcd_metrics_reload(s->metrics, rc == 0, rc ? 0 : m->load_s);
    if (rc)
        return rc;
    registry_swap(&s->registry, m);
    set_path(s, path);
    const rssm_dims_t *d = &m->info->dims;
    mpcd_log(MPCD_LOG_NOTICE,
             "model version %llu: %s (%s; obs %d, action %d, deter %d, stoch %d; "
             "loaded in %.1f ms)",
             (unsigned long long)m->version, path, m->info->name, d->obs, d->action, d->deter,
             d->stoch, m->load_s * 1e3);
    if (s->cfg->watch)
        watch_start(s);
    return 0;
}

bool reload_request(server_t *s, conn_t *c, uint64_t id, const char *path, bool confined)
{
    reload_req_t *r = calloc(1, sizeof *r);
    if (!r || (path && *path && !(r->path = strdup(path)))) {
        free(r);
        if (c)
            conn_send_error(c, id, MPC__V1__ERROR__CODE__INTERNAL, "out of memory");
        return false;
    }
    r->confined = confined && r->path;
    r->conn = c;
    r->id = id;
    r->s = s;
    snprintf(r->origin, sizeof r->origin, "%s", c ? c->peer.name : "signal");
    if (s->reload.tail)
        s->reload.tail->next = r;
    else
        s->reload.head = r;
    s->reload.tail = r;
    if (c) {
        c->reload = r;
        c->busy = true;
    }
    start_next(s); /* (a refusal is answered at once; c is served again from the loop) */
    return c != NULL && c->busy;
}

static void load_work(uv_work_t *w)
{
    reload_req_t *r = w->data;
    server_t *s = r->s;
    registry_source_t src = {r->path, r->confined ? s->model_dir : NULL,
                             (size_t)s->cfg->max_model_mb << 20};
    r->rc = registry_model_load(&src, &s->cfg->planner, s->nworkers, r->like, &r->result,
                                r->err, sizeof r->err);
}

static void reply(server_t *s, reload_req_t *r, bool ok, double load_s, const char *msg)
{
    conn_t *c = r->conn;
    if (!c)
        return;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    Mpc__V1__ReloadReply rr = MPC__V1__RELOAD_REPLY__INIT;
    rr.ok = ok;
    rr.model_version = s->registry.version;
    rr.message = (char *)msg;
    rr.load_s = load_s;
    rep.id = r->id;
    rep.body_case = MPC__V1__REPLY__BODY_RELOAD;
    rep.reload = &rr;
    conn_send(c, &rep);
    mpcd_metrics_request(s->metrics, MPCD_REQ_RELOAD,
                         ok ? MPCD_OUTCOME_OK : MPCD_OUTCOME_ERROR);
    r->conn = NULL;
    c->reload = NULL;
    c->busy = false;
    server_changed(s, c); /* its next Status shows the outcome */
    server_conn_ready(s, c);
}

static void notify_ready(server_t *s)
{
    char st[256];
    server_status_line(s, st, sizeof st);
    mpcd_notify("READY=1");
    mpcd_notifyf("STATUS=%s", st);
}

static void free_req(reload_req_t *r)
{
    registry_release(r->like);
    registry_model_free(r->result);
    free(r->path);
    free(r);
}

/* Refuses r: the reason goes to its client, the log, /status and the metrics. */
static void refuse(server_t *s, reload_req_t *r, int rc, const char *msg)
{
    server_changed(s, NULL);
    snprintf(s->reload.last_error, sizeof s->reload.last_error, "%s", msg);
    mpcd_metrics_reload(s->metrics, false, 0);
    if (rc == -EPERM)
        mpcd_metrics_guard(s->metrics, MPCD_GUARD_RELOAD_REFUSED_PATH);
    mpcd_log(MPCD_LOG_ERR, "reload refused (from %s), still serving model version %llu: %s",
             r->origin, (unsigned long long)s->registry.version, msg);
    reply(s, r, false, 0, msg);
}

/* The current load ended (or was abandoned): the next one may start. */
static void finish_current(server_t *s)
{
    uv_timer_stop(&s->reload.timeout);
    s->reload.cur = NULL;
    notify_ready(s);
    start_next(s);
    server_maybe_finish(s);
}

static void load_done(uv_work_t *w, int status)
{
    reload_req_t *r = w->data;
    server_t *s = r->s;
    if (r->abandoned) {
        /* It outlived reload-timeout-s and was answered then; only its memory is left. */
        s->reload.stuck--;
        mpcd_log(MPCD_LOG_WARNING, "abandoned load of %s finished after all; discarded",
                 r->path);
        free_req(r);
        start_next(s);
        server_maybe_finish(s);
        return;
    }
    if (status == 0 && r->rc == 0) {
        registry_model_t *m = r->result;
        r->result = NULL;
        registry_swap(&s->registry, m);
        admission_set_model(&s->admission, m->iteration_s);
        server_changed(s, NULL);
        bool moved = !s->reload.path || strcmp(s->reload.path, m->path);
        set_path(s, m->path);
        if (moved && s->cfg->watch && !s->stopping)
            watch_start(s); /* follow the file that now serves */
        s->reload.last_error[0] = 0;
        mpcd_metrics_reload(s->metrics, true, m->load_s);
        mpcd_log(MPCD_LOG_NOTICE, "model version %llu: %s (%s; loaded in %.1f ms; from %s)",
                 (unsigned long long)m->version, m->path, m->info->name, m->load_s * 1e3,
                 r->origin);
        reply(s, r, true, m->load_s, "");
    } else {
        refuse(s, r, r->rc, status ? "reload cancelled" : r->err);
    }
    free_req(r);
    finish_current(s);
}

static void on_load_timeout(uv_timer_t *t)
{
    server_t *s = t->data;
    reload_req_t *r = s->reload.cur;
    if (!r)
        return;
    char msg[256];
    snprintf(msg, sizeof msg,
             "%s: the load did not finish within reload-timeout-s (%g s); "
             "abandoned",
             r->path, s->cfg->reload_timeout_s);
    r->abandoned = true;
    s->reload.stuck++;
    refuse(s, r, -ETIMEDOUT, msg);
    finish_current(s);
}

static void start_next(server_t *s)
{
    while (!s->reload.cur && s->reload.head) {
        reload_req_t *r = s->reload.head;
        s->reload.head = r->next;
        if (!s->reload.head)
            s->reload.tail = NULL;
        const char *why = NULL;
        if (s->reload.stuck)
            why = "an abandoned load is still stuck in the file system; refusing loads "
                  "until it ends";
        else if (r->confined && !s->model_dir)
            why = "clients cannot name a model file: no model-dir is set (and no --model)";
        else if (!r->path && !s->reload.path)
            why = "no model path to reload (give one)";
        else if (!r->path && !(r->path = strdup(s->reload.path)))
            why = "out of memory";
        if (why) {
            refuse(s, r, r->confined && !s->model_dir ? -EPERM : -EINVAL, why);
            free_req(r);
            continue;
        }
        s->reload.cur = r;
        r->like = registry_acquire(&s->registry);
        r->work.data = r;
        /* MONOTONIC_USEC lets Type=notify-reload (systemd 253+) match this reload. */
        mpcd_notifyf("RELOADING=1\nMONOTONIC_USEC=%llu",
                     (unsigned long long)llround(mono_now() * 1e6));
        mpcd_log(MPCD_LOG_INFO, "reloading %s (from %s)", r->path, r->origin);
        int rc = uv_queue_work(s->loop, &r->work, load_work, load_done);
        if (rc) {
            s->reload.cur = NULL;
            refuse(s, r, rc, uv_strerror(rc));
            free_req(r);
            continue;
        }
        uv_timer_start(&s->reload.timeout, on_load_timeout,
                       (uint64_t)(s->cfg->reload_timeout_s * 1000) + 1, 0);
    }
}

/* ---- model reaping: joining planner threads and unmapping is not loop work ---- */

static void reap_work(uv_work_t *w)
{
    server_t *s = w->data;
    registry_reap(&s->registry);
}

static void reap_done(uv_work_t *w, int status)
{
    server_t *s = w->data;
    (void)status;
    s->reaping = false;
    if (registry_dead_count(&s->registry))
        reload_reap(s);
    server_maybe_finish(s);
}

void reload_reap(server_t *s)
{
    if (s->reaping)
        return;
    s->reaping = true;
    s->reap_work.data = s;
    if (uv_queue_work(s->loop, &s->reap_work, reap_work, reap_done)) {
        s->reaping = false;
        registry_reap(&s->registry);
    }
}

/* ---- file watch ---- */

static void on_debounced(uv_timer_t *t)
{
    server_t *s = t->data;
    mpcd_log(MPCD_LOG_NOTICE, "model file changed: reloading %s", s->reload.path);
    reload_request(s, NULL, 0, NULL, false);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    server_t *s = h->data;
    (void)events;
    if (status < 0 || !filename || !s->reload.path || s->stopping)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", s->reload.path);
    if (strcmp(filename, basename(tmp)))
        return;
    /* A rename shows up as several events; one reload after they settle. */
    uv_timer_start(&s->reload.debounce, on_debounced, WATCH_DEBOUNCE_MS, 0);
}

static void watch_start(server_t *s)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", s->reload.path);
    char *d = dirname(dir);
    if (!s->reload.watch_inited) {
        uv_fs_event_init(s->loop, &s->reload.watch);
        s->reload.watch.data = s;
        s->reload.watch_inited = true;
    } else if (s->reload.watching) {
        uv_fs_event_stop(&s->reload.watch);
        s->reload.watching = false;
    }
    int rc = uv_fs_event_start(&s->reload.watch, on_fs_event, d, 0);
    if (rc) {
        mpcd_log(MPCD_LOG_WARNING, "cannot watch %s: %s", d, uv_strerror(rc));
        return;
    }
    s->reload.watching = true;
    mpcd_log(MPCD_LOG_INFO, "watching %s for a new %s", d, s->reload.path);
}

static void on_closed_quiet(uv_handle_t *h)
{
    (void)h;
}

void reload_stop_watch(server_t *s)
{
    if (s->reload.watch_inited && !uv_is_closing((uv_handle_t *)&s->reload.watch))
        uv_close((uv_handle_t *)&s->reload.watch, on_closed_quiet);
    if (!uv_is_closing((uv_handle_t *)&s->reload.debounce))
        uv_close((uv_handle_t *)&s->reload.debounce, on_closed_quiet);
    if (!uv_is_closing((uv_handle_t *)&s->reload.timeout))
        uv_close((uv_handle_t *)&s->reload.timeout, on_closed_quiet);
}
