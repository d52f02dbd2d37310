/*
 * status.c: the /status JSON document (cJSON) and the /metrics Prometheus text exposition
 * (format 0.0.4) from one mpcd_status_t snapshot plus the metrics (see status.h).
 *
 * Both run on the loop thread for an HTTP or protocol status request, never on the control
 * path, so they allocate freely. Every Prometheus family gets HELP and TYPE lines even when
 * it has no samples yet, so dashboards and alerts never see a family appear and vanish.
 */
#include "status.h"
#include "metrics_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON ---- */

static cJSON *summary_json(const mpcd_latency_summary_t *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)s->count);
    cJSON_AddNumberToObject(o, "p50", s->p50);
    cJSON_AddNumberToObject(o, "p90", s->p90);
    cJSON_AddNumberToObject(o, "p99", s->p99);
    cJSON_AddNumberToObject(o, "max", s->max);
    return o;
}

static cJSON *float_array(const float *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; v != NULL && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

static const char *str_or_empty(const char *s)
{
    return s != NULL ? s : "";
}

static cJSON *model_json(const mpcd_status_t *st)
{
    const rssm_info_t *in = rssm_info(st->model);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", (double)st->model_version);
    cJSON_AddStringToObject(o, "path", str_or_empty(st->model_path));
    cJSON_AddNumberToObject(o, "load_s", st->model_load_s);
    cJSON_AddStringToObject(o, "name", str_or_empty(in->name));
    cJSON_AddStringToObject(o, "task", str_or_empty(in->task));
    char fmt[32];
    snprintf(fmt, sizeof fmt, "%d.%d", in->format_major, in->format_minor);
    cJSON_AddStringToObject(o, "format_version", fmt);
    cJSON *d = cJSON_AddObjectToObject(o, "dims");
    cJSON_AddNumberToObject(d, "obs", in->dims.obs);
    cJSON_AddNumberToObject(d, "action", in->dims.action);
    cJSON_AddNumberToObject(d, "deter", in->dims.deter);
    cJSON_AddNumberToObject(d, "stoch", in->dims.stoch);
    cJSON_AddNumberToObject(d, "hidden", in->dims.hidden);
    cJSON_AddNumberToObject(d, "embed", in->dims.embed);
    /* A pixel model observes images (README "Camera robots"); null for a vector model. */
    cJSON_AddStringToObject(o, "obs_type", in->image_channels > 0 ? "image" : "vector");
    if (in->image_channels > 0) {
        cJSON *im = cJSON_AddObjectToObject(o, "image");
        cJSON_AddNumberToObject(im, "height", in->image_height);
        cJSON_AddNumberToObject(im, "width", in->image_width);
        cJSON_AddNumberToObject(im, "channels", in->image_channels);
        cJSON_AddNumberToObject(
            im, "bytes", (double)in->image_height * in->image_width * in->image_channels);
        cJSON_AddNumberToObject(im, "conv_depth", in->conv_depth);
    } else {
        cJSON_AddNullToObject(o, "image");
    }
    cJSON_AddStringToObject(o, "activation", in->activation == RSSM_ACT_ELU ? "elu" : "relu");
    cJSON_AddNumberToObject(o, "min_std", (double)in->min_std);
    cJSON_AddBoolToObject(o, "has_value", in->has_value);
    cJSON_AddBoolToObject(o, "has_decoder", in->has_decoder);
    cJSON_AddItemToObject(o, "action_low", float_array(in->action_low, in->dims.action));
    cJSON_AddItemToObject(o, "action_high", float_array(in->action_high, in->dims.action));
    cJSON_AddNumberToObject(o, "control_period_s", in->control_period_s);
    cJSON_AddNumberToObject(o, "discount", in->discount);
    cJSON_AddNumberToObject(o, "params", (double)rssm_param_count(st->model));
    cJSON_AddNumberToObject(o, "flops_per_imagine_step",
                            (double)rssm_flops_per_imagine_step(st->model));
    /* Raw strings as stored in __metadata__ (safetensors: str -> str; FORMAT.md). */
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    int n = rssm_metadata_count(st->model);
    for (int i = 0; i < n; i++) {
        const char *k = NULL, *v = NULL;
        rssm_metadata_at(st->model, i, &k, &v);
        if (k != NULL)
            cJSON_AddStringToObject(md, k, str_or_empty(v));
    }
    return o;
}

static cJSON *planner_json(const mpcd_status_t *st)
{
    cJSON *o = cJSON_CreateObject();
    const cem_config_t *c = st->planner;
    if (c != NULL) {
        cJSON_AddNumberToObject(o, "candidates", c->candidates);
        cJSON_AddNumberToObject(o, "top_k", c->top_k);
        cJSON_AddNumberToObject(o, "iterations", c->iterations);
        cJSON_AddNumberToObject(o, "horizon", c->horizon);
        cJSON_AddNumberToObject(o, "threads", c->threads);
        cJSON_AddNumberToObject(o, "margin_s", c->margin_s);
        cJSON_AddBoolToObject(o, "sample_latent", c->sample_latent);
        cJSON_AddBoolToObject(o, "use_value", c->use_value);
        cJSON_AddNumberToObject(o, "population_decay", c->population_decay);
        cJSON_AddNumberToObject(o, "keep_elites", c->keep_elites);
        cJSON_AddNumberToObject(o, "noise_beta", c->noise_beta);
        cJSON_AddBoolToObject(o, "mppi", c->mppi);
        cJSON_AddNumberToObject(o, "mppi_temperature", c->mppi_temperature);
        cJSON_AddNumberToObject(o, "min_std", (double)c->min_std);
    }
    cJSON_AddNumberToObject(o, "deadline_ms", st->default_deadline_ms);
    cJSON_AddNumberToObject(o, "workers", st->workers);
    return o;
}

static cJSON *session_json(const mpcd_session_info_t *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "session_id", (double)s->id);
    cJSON_AddStringToObject(o, "client_name", s->name);
    cJSON_AddStringToObject(o, "peer", s->peer);
    cJSON_AddNumberToObject(o, "steps", (double)s->steps);
    cJSON_AddNumberToObject(o, "episodes", (double)s->episodes);
    cJSON_AddNumberToObject(o, "age_s", s->age_s);
    cJSON_AddNumberToObject(o, "last_total_ms", s->last_total_ms);
    cJSON_AddNumberToObject(o, "last_plan_ms", s->last_plan_ms);
    cJSON_AddNumberToObject(o, "last_predicted_return", s->last_predicted_return);
    cJSON_AddNumberToObject(o, "mean_surprise", s->mean_surprise);
    cJSON_AddNumberToObject(o, "model_version", (double)s->model_version);
    return o;
}

/* Key names carry the unit of each sliding-window series. */
static const char *const window_key[MPCD_SERIES_COUNT] = {
    [MPCD_SERIES_QUEUE] = "queue_s",
    [MPCD_SERIES_BELIEF] = "belief_s",
    [MPCD_SERIES_PLAN] = "plan_s",
    [MPCD_SERIES_TOTAL] = "total_s",
    [MPCD_SERIES_LATENESS] = "lateness_s",
    [MPCD_SERIES_SURPRISE] = "surprise_nats",
    [MPCD_SERIES_REWARD_ERROR] = "reward_error",
    [MPCD_SERIES_ITERATIONS] = "iterations",
    [MPCD_SERIES_OVERHEAD] = "overhead_s",
};

static void metrics_json(cJSON *root, mpcd_metrics_t *m)
{
    mpcd_totals_t t;
    mpcd_metrics_totals(m, &t);
    cJSON_AddNumberToObject(root, "requests", (double)t.requests);
    cJSON_AddNumberToObject(root, "errors", (double)t.errors);
    cJSON_AddNumberToObject(root, "steps", (double)t.steps);
    cJSON_AddNumberToObject(root, "deadline_cuts", (double)t.deadline_cuts);
    cJSON_AddNumberToObject(root, "fallbacks", (double)t.fallbacks);
    cJSON_AddNumberToObject(root, "overruns", (double)t.overruns);
    cJSON_AddNumberToObject(root, "reloads_ok", (double)t.reloads_ok);
    cJSON_AddNumberToObject(root, "reloads_failed", (double)t.reloads_failed);
    cJSON_AddNumberToObject(root, "sessions_admitted", (double)t.sessions_admitted);
    cJSON_AddNumberToObject(root, "sessions_refused", (double)t.sessions_refused);
    cJSON *guard = cJSON_AddObjectToObject(root, "guard_events");
    for (int e = 0; e < MPCD_GUARD_COUNT; e++)
        cJSON_AddNumberToObject(guard, mpcd_guard_event_name((mpcd_guard_event_t)e),
                                (double)mpcd_metrics_guard_count(m, (mpcd_guard_event_t)e));
    cJSON_AddNumberToObject(root, "candidates", (double)mpcd_metrics_candidates(m));

    cJSON *byt = cJSON_AddObjectToObject(root, "requests_by_type");
    for (int ty = 0; ty < MPCD_REQ_COUNT; ty++) {
        cJSON *o = cJSON_AddObjectToObject(byt, mpcd_req_type_name((mpcd_req_type_t)ty));
        for (int oc = 0; oc < MPCD_OUTCOME_COUNT; oc++)
            cJSON_AddNumberToObject(
                o, mpcd_outcome_name((mpcd_outcome_t)oc),
                (double)mpcd_metrics_requests(m, (mpcd_req_type_t)ty, (mpcd_outcome_t)oc));
    }

    cJSON *w = cJSON_AddObjectToObject(root, "last_minute");
    cJSON *c = cJSON_AddObjectToObject(root, "since_start");
    for (int s = 0; s < MPCD_SERIES_COUNT; s++) {
        mpcd_latency_summary_t sum;
        mpcd_metrics_window(m, (mpcd_series_t)s, &sum);
        cJSON_AddItemToObject(w, window_key[s], summary_json(&sum));
        mpcd_histogram_t h;
        mpcd_metrics_histogram(m, (mpcd_series_t)s, &h);
        cJSON *o = cJSON_AddObjectToObject(c, window_key[s]);
        cJSON_AddNumberToObject(o, "count", (double)h.count);
        cJSON_AddNumberToObject(o, "sum", h.sum);
        cJSON_AddNumberToObject(o, "mean", h.count > 0 ? h.sum / (double)h.count : 0.0);
    }
}

char *mpcd_status_json(const mpcd_status_t *st, mpcd_metrics_t *m)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    const rssm_info_t *in = st->model != NULL ? rssm_info(st->model) : NULL;
    cJSON_AddStringToObject(root, "version", str_or_empty(st->version));
    cJSON_AddNumberToObject(root, "uptime_s", st->uptime_s);
    cJSON_AddBoolToObject(root, "ready", st->ready);
    cJSON_AddBoolToObject(root, "draining", st->draining);
    /* the task, as StatusReply.model_name and Welcome.model_name carry it */
    cJSON_AddStringToObject(root, "model_name", in != NULL ? str_or_empty(in->task) : "");
    cJSON_AddNumberToObject(root, "model_version", (double)st->model_version);
    cJSON_AddStringToObject(root, "model_path", str_or_empty(st->model_path));
    cJSON_AddNumberToObject(root, "model_load_s", st->model_load_s);
    cJSON_AddStringToObject(root, "last_reload_error", str_or_empty(st->last_reload_error));
    cJSON_AddNumberToObject(root, "default_deadline_ms", st->default_deadline_ms);
    cJSON_AddNumberToObject(root, "workers", st->workers);
    cJSON_AddNumberToObject(root, "sessions", st->sessions_count);
    cJSON *adm = cJSON_AddObjectToObject(root, "admission");
    cJSON_AddBoolToObject(adm, "full", st->admission.full);
    cJSON_AddNumberToObject(adm, "load", st->admission.load);
    cJSON_AddNumberToObject(adm, "max_load", st->admission.max_load);
    cJSON_AddNumberToObject(adm, "min_iterations", st->admission.min_iterations);
    cJSON_AddNumberToObject(adm, "plan_cost_ms", st->admission.plan_cost_s * 1e3);
    cJSON_AddNumberToObject(adm, "iteration_ms", st->admission.iteration_s * 1e3);
    if (m != NULL) {
        metrics_json(root, m);
        cJSON_AddNumberToObject(root, "window_s", 60);
    }
    if (st->model != NULL)
        cJSON_AddItemToObject(root, "model", model_json(st));
    else
        cJSON_AddNullToObject(root, "model");
    cJSON_AddItemToObject(root, "planner", planner_json(st));
    cJSON *ss = cJSON_AddArrayToObject(root, "session");
    for (int i = 0; st->sessions != NULL && i < st->sessions_count; i++)
        cJSON_AddItemToArray(ss, session_json(&st->sessions[i]));

    /* An allocation that failed above leaves its key out; NULL only if printing fails. */
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* ---- Prometheus text format 0.0.4 ---- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf_t;

static void sb_printf(strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* Prometheus floats: Go's ParseFloat syntax, with +Inf / -Inf / NaN spelled its way. */
static const char *prom_float(char buf[static 40], double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    /* the shortest of %.15g..%.17g that reads back exactly: le="0.015", not 0.01499.. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, 40, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

/* Label values escape backslash, double quote and newline. */
static void sb_label_value(strbuf_t *b, const char *s)
{
    for (; s != NULL && *s; s++) {
        if (*s == '\\')
            sb_printf(b, "\\\\");
        else if (*s == '"')
            sb_printf(b, "\\\"");
        else if (*s == '\n')
            sb_printf(b, "\\n");
        else
            sb_printf(b, "%c", *s);
    }
}

static void family(strbuf_t *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(strbuf_t *b, const char *name, const char *type, const char *help, double v)
{
    char f[40];
    family(b, name, type, help);
    sb_printf(b, "%s %s\n", name, prom_float(f, v));
}

static void histogram(strbuf_t *b, const mpcd_histogram_t *h)
{
    char f[40];
    family(b, h->name, "histogram", h->help);
    for (int i = 0; i < h->nbounds; i++)
        sb_printf(b, "%s_bucket{le=\"%s\"} %llu\n", h->name, prom_float(f, h->bounds[i]),
                  (unsigned long long)h->cumulative[i]);
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", h->name,
              (unsigned long long)h->cumulative[h->nbounds]);
    sb_printf(b, "%s_sum %s\n", h->name, prom_float(f, h->sum));
    sb_printf(b, "%s_count %llu\n", h->name, (unsigned long long)h->count);
}

static void metrics_prometheus(strbuf_t *b, mpcd_metrics_t *m)
{
    family(b, "mpcd_requests_total", "counter",
           "Requests answered, by request type and outcome (ok, error, overloaded, shed).");
    for (int t = 0; t < MPCD_REQ_COUNT; t++)
        for (int o = 0; o < MPCD_OUTCOME_COUNT; o++)
            sb_printf(b, "mpcd_requests_total{type=\"%s\",outcome=\"%s\"} %llu\n",
                      mpcd_req_type_name((mpcd_req_type_t)t),
                      mpcd_outcome_name((mpcd_outcome_t)o),
                      (unsigned long long)mpcd_metrics_requests(m, (mpcd_req_type_t)t,
                                                                (mpcd_outcome_t)o));
    mpcd_totals_t t;
    mpcd_metrics_totals(m, &t);
    sample(b, "mpcd_steps_total", "counter", "Steps answered with an action.", (double)t.steps);
    sample(b, "mpcd_deadline_cuts_total", "counter",
           "Plans stopped before their configured iterations because of the deadline.",
           (double)t.deadline_cuts);
    sample(b, "mpcd_fallbacks_total", "counter",
           "Steps answered with the warm-start plan because no CEM iteration fitted.",
           (double)t.fallbacks);
    sample(b, "mpcd_overruns_total", "counter", "Replies sent after their deadline.",
           (double)t.overruns);
    sample(b, "mpcd_plan_candidates_total", "counter",
           "Candidate action sequences evaluated by the planner.",
           (double)mpcd_metrics_candidates(m));
    family(b, "mpcd_sessions_total", "counter",
           "Hellos by admission result: admitted, or refused OVERLOADED because the admitted "
           "sessions' minimum plans would no longer fit.");
    sb_printf(b, "mpcd_sessions_total{result=\"admitted\"} %llu\n",
              (unsigned long long)t.sessions_admitted);
    sb_printf(b, "mpcd_sessions_total{result=\"refused\"} %llu\n",
              (unsigned long long)t.sessions_refused);
    family(b, "mpcd_reloads_total", "counter",
           "Model load attempts (startup, Reload request, SIGHUP, file watch) by result.");
    sb_printf(b, "mpcd_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)t.reloads_ok);
    sb_printf(b, "mpcd_reloads_total{result=\"failed\"} %llu\n",
              (unsigned long long)t.reloads_failed);
    family(b, "mpcd_guard_events_total", "counter",
           "Requests and connections refused or cut to protect the daemon and its clients, "
           "by event.");
    for (int e = 0; e < MPCD_GUARD_COUNT; e++)
        sb_printf(b, "mpcd_guard_events_total{event=\"%s\"} %llu\n",
                  mpcd_guard_event_name((mpcd_guard_event_t)e),
                  (unsigned long long)mpcd_metrics_guard_count(m, (mpcd_guard_event_t)e));
    for (int s = 0; s < MPCD_SERIES_COUNT; s++) {
        mpcd_histogram_t h;
        mpcd_metrics_histogram(m, (mpcd_series_t)s, &h);
        histogram(b, &h);
    }
}

char *mpcd_status_prometheus(const mpcd_status_t *st, mpcd_metrics_t *m)
{
    strbuf_t b = {.cap = 16384};
    b.p = malloc(b.cap);
    if (b.p == NULL)
        return NULL;
    b.p[0] = '\0';

    const rssm_info_t *in = st->model != NULL ? rssm_info(st->model) : NULL;
    family(&b, "mpcd_build_info", "gauge", "Always 1; the daemon version as a label.");
    sb_printf(&b, "mpcd_build_info{version=\"");
    sb_label_value(&b, st->version);
    sb_printf(&b, "\"} 1\n");
    sample(&b, "mpcd_uptime_seconds", "gauge", "Seconds since the daemon started.",
           st->uptime_s);
    sample(&b, "mpcd_ready", "gauge", "1 when a model is loaded and steps are served.",
           st->ready ? 1 : 0);
    sample(&b, "mpcd_draining", "gauge",
           "1 while the instance drains (SIGTERM, mpcctl drain): no new sessions.",
           st->draining ? 1 : 0);
    sample(&b, "mpcd_sessions", "gauge", "Open client sessions.", st->sessions_count);
    sample(&b, "mpcd_workers", "gauge", "Planner worker threads.", st->workers);
    sample(&b, "mpcd_admission_load", "gauge",
           "Fraction of the workers' time the admitted sessions' minimum plans take.",
           st->admission.load);
    sample(&b, "mpcd_admission_full", "gauge",
           "1 while a new session would be refused OVERLOADED (/readyz answers 503).",
           st->admission.full ? 1 : 0);
    sample(&b, "mpcd_default_deadline_seconds", "gauge",
           "Deadline of a Step that does not carry its own.", st->default_deadline_ms / 1000.0);
    sample(&b, "mpcd_model_version", "gauge",
           "Version of the serving model (1 for the first, +1 per successful hot-swap).",
           (double)st->model_version);
    sample(&b, "mpcd_model_load_seconds", "gauge",
           "Time the serving model took to load, validate and smoke-test.", st->model_load_s);
    family(&b, "mpcd_model_info", "gauge", "Always 1 while a model serves; what it is.");
    if (in != NULL) {
        sb_printf(&b, "mpcd_model_info{name=\"");
        sb_label_value(&b, in->name);
        sb_printf(&b, "\",task=\"");
        sb_label_value(&b, in->task);
        sb_printf(&b, "\",path=\"");
        sb_label_value(&b, st->model_path);
        sb_printf(&b, "\",version=\"%llu\"} 1\n", (unsigned long long)st->model_version);
    }
    sample(&b, "mpcd_last_reload_failed", "gauge",
           "1 when the most recent reload attempt failed (the old model keeps serving).",
           st->last_reload_error != NULL && st->last_reload_error[0] != '\0' ? 1 : 0);
    if (m != NULL)
        metrics_prometheus(&b, m);

    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
