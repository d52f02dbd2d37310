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
#include "reload.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errbuf.h"
#include "log.h"
#include "mono.h"
#include "notify.h"

#define WATCH_DEBOUNCE_MS 200

/* One queued model reload: from a connection (answered when done), SIGHUP or the watch.
 * It owns its load on libuv's pool, so an abandoned load can finish after the next began. */
typedef struct reload_req {
    struct reload_req *next;
    char *path;    /* NULL: the current model's path */
    bool confined; /* a client's path: resolved beneath model_dir */
    conn_t *conn;  /* NULL when nobody waits for a reply (or it left) */
    uint64_t id;   /* the Request id to echo */
    char origin[96];
    reloader_t *rl;
    uv_work_t work;
    registry_model_t *like;   /* the model serving when the load started */
    registry_model_t *result; /* the load's model, when it succeeded */
    int rc;
    char err[768];
    bool abandoned; /* ran past reload-timeout-s: answered already, result discarded */
} reload_req_t;

struct reloader {
    uv_loop_t *loop;
    reload_opts_t o;
    reload_req_t *head, *tail;
    reload_req_t *cur;    /* loading now */
    int stuck;            /* abandoned loads still running */
    uv_timer_t timeout;   /* reload-timeout-s of cur */
    char last_error[768]; /* "" when the last attempt succeeded */
    char *path;           /* current model's file */
    char *model_dir; /* clients' Reload paths stay beneath it; NULL: they cannot name one */
    uv_fs_event_t watch;
    uv_timer_t debounce;
    bool watching, watch_inited, stopped;
    bool reaping;
    uv_work_t reap_work;
};

static void start_next(reloader_t *rl);
static void free_req(reload_req_t *r);
static void watch_start(reloader_t *rl);

int reloader_create(uv_loop_t *loop, const reload_opts_t *o, reloader_t **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    reloader_t *rl = calloc(1, sizeof *rl);
    if (!rl) {
        errbuf_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rl->loop = loop;
    rl->o = *o;
    uv_timer_init(rl->loop, &rl->debounce);
    rl->debounce.data = rl;
    uv_timer_init(rl->loop, &rl->timeout);
    rl->timeout.data = rl;
    *out = rl; /* from here on freed by reloader_destroy, after its timers closed */
    /* Clients' Reload paths stay beneath model-dir: the configured one, else --model's. */
    const char *dir = rl->o.cfg->model_dir;
    char buf[4096];
    if (!dir && rl->o.cfg->model) {
        snprintf(buf, sizeof buf, "%s", rl->o.cfg->model);
        dir = dirname(buf);
    }
    if (dir && !(rl->model_dir = strdup(dir))) {
        errbuf_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

void reloader_destroy(reloader_t *rl)
{
    if (!rl)
        return;
    reload_req_t *r = rl->head;
    while (r) {
        reload_req_t *next = r->next;
        free_req(r);
        r = next;
    }
    free(rl->path);
    free(rl->model_dir);
    free(rl);
}

const char *reload_path(const reloader_t *rl)
{
    return rl->path ? rl->path : "";
}

const char *reload_last_error(const reloader_t *rl)
{
    return rl->last_error;
}

bool reload_busy(const reloader_t *rl)
{
    return rl->cur || rl->reaping;
}

void reload_forget_conn(reloader_t *rl, conn_t *c)
{
    (void)rl;
    if (c->reload)
        c->reload->conn = NULL;
    c->reload = NULL;
}

/* A pixel model whose image (plus a Step's other fields) does not fit max-frame could
 * never be sent a Step: say so once, when it starts serving. */
static void check_frame(const reloader_t *rl, const registry_model_t *m)
{
    size_t need = registry_image_bytes(m->info) + 1024;
    if (registry_image_bytes(m->info) && (int64_t)need > rl->o.cfg->max_frame) {
        char shape[64];
        mpcd_log(MPCD_LOG_WARNING,
                 "the model takes %s, but max-frame is %lld bytes: every Step would be "
                 "refused (FRAME_TOO_LARGE); raise max-frame to at least %zu",
                 registry_obs_shape(m->info, shape, sizeof shape),
                 (long long)rl->o.cfg->max_frame, need);
    }
}

static void set_path(reloader_t *rl, const char *path)
{
    char *p = strdup(path);
    if (p) {
        free(rl->path);
        rl->path = p;
    }
}

int reload_initial(reloader_t *rl, const char *path, char *err, size_t errlen)
{
    registry_model_t *m;
    registry_source_t src = {path, NULL, (size_t)rl->o.cfg->max_model_mb << 20};
    int rc =
        registry_model_load(&src, &rl->o.cfg->planner, rl->o.nworkers, NULL, &m, err, errlen);
    mpcd_metrics_reload(rl->o.metrics, rc == 0, rc ? 0 : m->load_s);
    if (rc)
        return rc;
    registry_swap(rl->o.registry, m);
    check_frame(rl, m);
    set_path(rl, path);
    const rssm_dims_t *d = &m->info->dims;
    char shape[64];
    mpcd_log(MPCD_LOG_NOTICE,
             "model version %llu: %s (%s; %s, action %d, deter %d, stoch %d; loaded in %.1f "
             "ms)",
             (unsigned long long)m->version, path, m->info->name,
             registry_obs_shape(m->info, shape, sizeof shape), d->action, d->deter, d->stoch,
             m->load_s * 1e3);
    if (rl->o.cfg->watch)
        watch_start(rl);
    return 0;
}

bool reload_request(reloader_t *rl, conn_t *c, uint64_t id, const char *path, bool confined)
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
    r->rl = rl;
    snprintf(r->origin, sizeof r->origin, "%s", c ? c->peer.name : "signal");
    if (rl->tail)
        rl->tail->next = r;
    else
        rl->head = r;
    rl->tail = r;
    if (c) {
        c->reload = r;
        c->busy = true;
    }
    start_next(rl); /* (a refusal is answered at once; c is served again from the loop) */
    return c != NULL && c->busy;
}

static void load_work(uv_work_t *w)
{
    reload_req_t *r = w->data;
    reloader_t *rl = r->rl;
    registry_source_t src = {r->path, r->confined ? rl->model_dir : NULL,
                             (size_t)rl->o.cfg->max_model_mb << 20};
    r->rc = registry_model_load(&src, &rl->o.cfg->planner, rl->o.nworkers, r->like, &r->result,
                                r->err, sizeof r->err);
}

static void reply(reloader_t *rl, reload_req_t *r, bool ok, double load_s, const char *msg)
{
    conn_t *c = r->conn;
    if (!c)
        return;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    Mpc__V1__ReloadReply rr = MPC__V1__RELOAD_REPLY__INIT;
    rr.ok = ok;
    rr.model_version = rl->o.registry->version;
    rr.message = (char *)msg;
    rr.load_s = load_s;
    rep.id = r->id;
    rep.body_case = MPC__V1__REPLY__BODY_RELOAD;
    rep.reload = &rr;
    conn_send(c, &rep);
    mpcd_metrics_request(rl->o.metrics, MPCD_REQ_RELOAD,
                         ok ? MPCD_OUTCOME_OK : MPCD_OUTCOME_ERROR);
    r->conn = NULL;
    c->reload = NULL;
    c->busy = false;
    rl->o.ev->changed(rl->o.ctx, c); /* its next Status shows the outcome */
    rl->o.ev->answered(rl->o.ctx, c);
}

static void notify_ready(reloader_t *rl)
{
    char st[256];
    rl->o.ev->status_line(rl->o.ctx, st, sizeof st);
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
static void refuse(reloader_t *rl, reload_req_t *r, int rc, const char *msg)
{
    rl->o.ev->changed(rl->o.ctx, NULL);
    snprintf(rl->last_error, sizeof rl->last_error, "%s", msg);
    mpcd_metrics_reload(rl->o.metrics, false, 0);
    if (rc == -EPERM)
        mpcd_metrics_guard(rl->o.metrics, MPCD_GUARD_RELOAD_REFUSED_PATH);
    mpcd_log(MPCD_LOG_ERR, "reload refused (from %s), still serving model version %llu: %s",
             r->origin, (unsigned long long)rl->o.registry->version, msg);
    reply(rl, r, false, 0, msg);
}

/* The current load ended (or was abandoned): the next one may start. */
static void finish_current(reloader_t *rl)
{
    uv_timer_stop(&rl->timeout);
    rl->cur = NULL;
    notify_ready(rl);
    start_next(rl);
}

static void load_done(uv_work_t *w, int status)
{
    reload_req_t *r = w->data;
    reloader_t *rl = r->rl;
    if (r->abandoned) {
        /* It outlived reload-timeout-s and was answered then; only its memory is left. */
        rl->stuck--;
        mpcd_log(MPCD_LOG_WARNING, "abandoned load of %s finished after all; discarded",
                 r->path);
        free_req(r);
        start_next(rl);
        return;
    }
    if (status == 0 && r->rc == 0) {
        registry_model_t *m = r->result;
        r->result = NULL;
        registry_swap(rl->o.registry, m);
        check_frame(rl, m);
        rl->o.ev->swapped(rl->o.ctx, m);
        rl->o.ev->changed(rl->o.ctx, NULL);
        bool moved = !rl->path || strcmp(rl->path, m->path);
        set_path(rl, m->path);
        if (moved && rl->o.cfg->watch && !rl->stopped)
            watch_start(rl); /* follow the file that now serves */
        rl->last_error[0] = 0;
        mpcd_metrics_reload(rl->o.metrics, true, m->load_s);
        mpcd_log(MPCD_LOG_NOTICE, "model version %llu: %s (%s; loaded in %.1f ms; from %s)",
                 (unsigned long long)m->version, m->path, m->info->name, m->load_s * 1e3,
                 r->origin);
        reply(rl, r, true, m->load_s, "");
    } else {
        refuse(rl, r, r->rc, status ? "reload cancelled" : r->err);
    }
    free_req(r);
    finish_current(rl);
}

static void on_load_timeout(uv_timer_t *t)
{
    reloader_t *rl = t->data;
    reload_req_t *r = rl->cur;
    if (!r)
        return;
    char msg[256];
    snprintf(msg, sizeof msg,
             "%s: the load did not finish within reload-timeout-s (%g s); "
             "abandoned",
             r->path, rl->o.cfg->reload_timeout_s);
    r->abandoned = true;
    rl->stuck++;
    refuse(rl, r, -ETIMEDOUT, msg);
    finish_current(rl);
}

static void start_next(reloader_t *rl)
{
    while (!rl->cur && rl->head) {
        reload_req_t *r = rl->head;
        rl->head = r->next;
        if (!rl->head)
            rl->tail = NULL;
        const char *why = NULL;
        if (rl->stuck)
            why = "an abandoned load is still stuck in the file system; refusing loads "
                  "until it ends";
        else if (r->confined && !rl->model_dir)
            why = "clients cannot name a model file: no model-dir is set (and no --model)";
        else if (!r->path && !rl->path)
            why = "no model path to reload (give one)";
        else if (!r->path && !(r->path = strdup(rl->path)))
            why = "out of memory";
        if (why) {
            refuse(rl, r, r->confined && !rl->model_dir ? -EPERM : -EINVAL, why);
            free_req(r);
            continue;
        }
        rl->cur = r;
        r->like = registry_acquire(rl->o.registry);
        r->work.data = r;
        /* MONOTONIC_USEC lets Type=notify-reload (systemd 253+) match this reload. */
        mpcd_notifyf("RELOADING=1\nMONOTONIC_USEC=%llu",
                     (unsigned long long)llround(mono_now() * 1e6));
        mpcd_log(MPCD_LOG_INFO, "reloading %s (from %s)", r->path, r->origin);
        int rc = uv_queue_work(rl->loop, &r->work, load_work, load_done);
        if (rc) {
            rl->cur = NULL;
            refuse(rl, r, rc, uv_strerror(rc));
            free_req(r);
            continue;
        }
        uv_timer_start(&rl->timeout, on_load_timeout,
                       (uint64_t)(rl->o.cfg->reload_timeout_s * 1000) + 1, 0);
    }
}

/* ---- model reaping: joining planner threads and unmapping is not loop work ---- */

static void reap_work(uv_work_t *w)
{
    reloader_t *rl = w->data;
    registry_reap(rl->o.registry);
}

static void reap_done(uv_work_t *w, int status)
{
    reloader_t *rl = w->data;
    (void)status;
    rl->reaping = false;
    if (registry_dead_count(rl->o.registry))
        reload_reap(rl);
}

void reload_reap(reloader_t *rl)
{
    if (rl->reaping)
        return;
    rl->reaping = true;
    rl->reap_work.data = rl;
    if (uv_queue_work(rl->loop, &rl->reap_work, reap_work, reap_done)) {
        rl->reaping = false;
        registry_reap(rl->o.registry);
    }
}

/* ---- file watch ---- */

static void on_debounced(uv_timer_t *t)
{
    reloader_t *rl = t->data;
    mpcd_log(MPCD_LOG_NOTICE, "model file changed: reloading %s", rl->path);
    reload_request(rl, NULL, 0, NULL, false);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    reloader_t *rl = h->data;
    (void)events;
    if (status < 0 || !filename || !rl->path || rl->stopped)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", rl->path);
    if (strcmp(filename, basename(tmp)))
        return;
    /* A rename shows up as several events; one reload after they settle. */
    uv_timer_start(&rl->debounce, on_debounced, WATCH_DEBOUNCE_MS, 0);
}

static void watch_start(reloader_t *rl)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", rl->path);
    char *d = dirname(dir);
    if (!rl->watch_inited) {
        uv_fs_event_init(rl->loop, &rl->watch);
        rl->watch.data = rl;
        rl->watch_inited = true;
    } else if (rl->watching) {
        uv_fs_event_stop(&rl->watch);
        rl->watching = false;
    }
    int rc = uv_fs_event_start(&rl->watch, on_fs_event, d, 0);
    if (rc) {
        mpcd_log(MPCD_LOG_WARNING, "cannot watch %s: %s", d, uv_strerror(rc));
        return;
    }
    rl->watching = true;
    mpcd_log(MPCD_LOG_INFO, "watching %s for a new %s", d, rl->path);
}

static void on_closed_quiet(uv_handle_t *h)
{
    (void)h;
}

void reload_stop_watch(reloader_t *rl)
{
    rl->stopped = true;
    if (rl->watch_inited && !uv_is_closing((uv_handle_t *)&rl->watch))
        uv_close((uv_handle_t *)&rl->watch, on_closed_quiet);
    if (!uv_is_closing((uv_handle_t *)&rl->debounce))
        uv_close((uv_handle_t *)&rl->debounce, on_closed_quiet);
    if (!uv_is_closing((uv_handle_t *)&rl->timeout))
        uv_close((uv_handle_t *)&rl->timeout, on_closed_quiet);
}
