/*
 * status_copy.c: deep copy of the daemon's StatusReply into libmpcclient's own struct, so
 * that callers never see protoc-c types. Missing strings become "" and missing latency
 * summaries zeros, which keeps printing code free of NULL checks.
 */
#include "status_copy.h"

#include <stdlib.h>
#include <string.h>

static char *dup_or_empty(const char *s, bool *nomem)
{
    char *d = strdup(s != NULL ? s : "");
    if (d == NULL)
        *nomem = true;
    return d;
}

static void copy_latency(const Mpc__V1__LatencySummary *in, mpc_client_latency_t *out)
{
    if (in == NULL)
        return;
    out->count = in->count;
    out->p50_us = in->p50_us;
    out->p90_us = in->p90_us;
    out->p99_us = in->p99_us;
    out->max_us = in->max_us;
}

int mpc_status_copy(const Mpc__V1__StatusReply *in, mpc_client_status_t *out)
{
    bool nomem = false;
    memset(out, 0, sizeof(*out));
    out->version = dup_or_empty(in->version, &nomem);
    out->uptime_s = in->uptime_s;
    out->ready = in->ready;
    out->model_name = dup_or_empty(in->model_name, &nomem);
    out->model_version = in->model_version;
    out->model_path = dup_or_empty(in->model_path, &nomem);
    out->sessions = in->sessions;
    out->requests = in->requests;
    out->errors = in->errors;
    out->deadline_cuts = in->deadline_cuts;
    out->fallbacks = in->fallbacks;
    out->overruns = in->overruns;
    out->reloads_ok = in->reloads_ok;
    out->reloads_failed = in->reloads_failed;
    out->last_reload_error = dup_or_empty(in->last_reload_error, &nomem);
    copy_latency(in->total, &out->total);
    copy_latency(in->plan, &out->plan);
    copy_latency(in->belief, &out->belief);
    copy_latency(in->queue, &out->queue);
    out->json = dup_or_empty(in->json, &nomem);
    if (in->n_session > 0) {
        out->session = calloc(in->n_session, sizeof(*out->session));
        if (out->session == NULL)
            nomem = true;
        else
            out->n_session = in->n_session;
    }
    for (size_t i = 0; i < out->n_session; i++) {
        const Mpc__V1__SessionSummary *s = in->session[i];
        mpc_client_session_t *d = &out->session[i];
        d->session_id = s->session_id;
        d->client_name = dup_or_empty(s->client_name, &nomem);
        d->steps = s->steps;
        d->episodes = s->episodes;
        d->last_plan_us = s->last_plan_us;
        d->mean_surprise = s->mean_surprise;
    }
    if (nomem) {
        mpc_client_status_free(out);
        return MPC_CLIENT_ENOMEM;
    }
    return 0;
}

void mpc_client_status_free(mpc_client_status_t *s)
{
    if (s == NULL)
        return;
    free(s->version);
    free(s->model_name);
    free(s->model_path);
    free(s->last_reload_error);
    free(s->json);
    for (size_t i = 0; i < s->n_session; i++)
        free(s->session[i].client_name);
    free(s->session);
    memset(s, 0, sizeof(*s));
}
