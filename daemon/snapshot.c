/*
 * snapshot.c: the daemon's state as one mpcd_status_t (for the HTTP endpoint's /status
 * and /metrics), and the protocol's StatusReply built from the same snapshot and metrics,
 * so `mpcctl status` and `curl /status` always agree.
 */
#include "snapshot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mono.h"

static void fill_sessions(server_t *s)
{
    if (s->snap_cap < s->nconns) {
        int cap = s->nconns * 2;
        mpcd_session_info_t *p = realloc(s->snap_sessions, sizeof *p * (size_t)cap);
        if (!p)
            return; /* keep the old capacity; fewer sessions are listed */
        s->snap_sessions = p;
        s->snap_cap = cap;
    }
}

void snapshot_fill(void *ctx, mpcd_status_t *out)
{
    server_t *s = ctx;
    const registry_model_t *m = s->registry.current;
    double now = mono_now();
    memset(out, 0, sizeof *out);
    out->version = MPCD_VERSION;
    out->uptime_s = now - s->t_start;
    out->ready = m != NULL && !s->stopping;
    out->draining = s->draining;
    out->model = m ? m->model : NULL;
    out->model_version = s->registry.version;
    out->model_path = reload_path(s->reloader);
    out->model_load_s = m ? m->load_s : 0;
    out->last_reload_error = reload_last_error(s->reloader);
    out->planner = &s->cfg->planner;
    out->default_deadline_ms = s->cfg->deadline_ms;
    out->workers = s->nworkers;
    const admission_t *a = &s->admission;
    double rate = m && m->info->control_period_s > 0 ? 1.0 / m->info->control_period_s
                                                     : 1e3 / s->cfg->deadline_ms;
    out->admission.full = admission_full(a, rate);
    out->admission.load = admission_load(a);
    out->admission.max_load = a->max_load;
    out->admission.min_iterations = a->min_iterations;
    out->admission.plan_cost_s = admission_plan_cost(a);
    out->admission.iteration_s = a->iteration_s;
    fill_sessions(s);
    int n = 0;
    for (conn_t *c = s->conns; c && n < s->snap_cap; c = c->next) {
        const session_t *se = c->session;
        if (!se)
            continue;
        mpcd_session_info_t *i = &s->snap_sessions[n++];
        memset(i, 0, sizeof *i);
        i->id = se->id;
        snprintf(i->name, sizeof i->name, "%s", se->name);
        snprintf(i->peer, sizeof i->peer, "%s", c->peer.name);
        /* pub: a session in flight belongs to a worker, so read the loop's copy. */
        i->steps = se->pub.steps;
        i->episodes = se->pub.episodes;
        i->age_s = now - c->t_open;
        i->last_total_ms = se->pub.last_total_s * 1e3;
        i->last_predicted_return = se->pub.last_predicted_return;
        i->last_plan_ms = se->pub.last_plan_s * 1e3;
        i->mean_surprise = isfinite(se->pub.surprise_mean) ? se->pub.surprise_mean : 0;
        i->model_version = se->pub.model_version;
    }
    out->sessions_count = n;
    out->sessions = s->snap_sessions;
}

static void latency(Mpc__V1__LatencySummary *l, mpcd_metrics_t *m, mpcd_stage_t stage)
{
    mpcd_latency_summary_t x;
    mpcd_metrics_summary(m, stage, &x);
    mpc__v1__latency_summary__init(l);
    l->count = x.count;
    l->p50_us = x.p50 * 1e6;
    l->p90_us = x.p90 * 1e6;
    l->p99_us = x.p99 * 1e6;
    l->max_us = x.max * 1e6;
}

/* A StatusReply that owns its memory (protobuf-c's own unpack of it), reused while fresh. */
struct status_cache {
    Mpc__V1__StatusReply *reply;
    uint64_t built_ms;  /* uv_now when built */
    uint64_t built_gen; /* s->state_gen then */
};

/* Builds the reply from a fresh snapshot; NULL when out of memory. */
static Mpc__V1__StatusReply *build_status(server_t *s)
{
    mpcd_status_t st;
    mpcd_totals_t t;
    snapshot_fill(s, &st);
    mpcd_metrics_totals(s->metrics, &t);
    Mpc__V1__StatusReply r = MPC__V1__STATUS_REPLY__INIT;
    Mpc__V1__LatencySummary lat[MPCD_STAGE_COUNT];
    const registry_model_t *m = s->registry.current;
    r.version = (char *)MPCD_VERSION;
    r.uptime_s = st.uptime_s;
    r.ready = st.ready;
    r.model_name = (char *)(m && m->info->task ? m->info->task : "");
    r.model_version = st.model_version;
    r.model_path = (char *)st.model_path;
    r.sessions = (uint64_t)st.sessions_count;
    r.requests = t.requests;
    r.errors = t.errors;
    r.deadline_cuts = t.deadline_cuts;
    r.fallbacks = t.fallbacks;
    r.overruns = t.overruns;
    r.reloads_ok = t.reloads_ok;
    r.reloads_failed = t.reloads_failed;
    r.last_reload_error = (char *)st.last_reload_error;
    for (int i = 0; i < MPCD_STAGE_COUNT; i++)
        latency(&lat[i], s->metrics, (mpcd_stage_t)i);
    r.total = &lat[MPCD_STAGE_TOTAL];
    r.plan = &lat[MPCD_STAGE_PLAN];
    r.belief = &lat[MPCD_STAGE_BELIEF];
    r.queue = &lat[MPCD_STAGE_QUEUE];
    Mpc__V1__SessionSummary *sum = calloc((size_t)st.sessions_count + 1, sizeof *sum);
    Mpc__V1__SessionSummary **ptrs = calloc((size_t)st.sessions_count + 1, sizeof *ptrs);
    char *json = mpcd_status_json(&st, s->metrics);
    Mpc__V1__StatusReply *own = NULL;
    uint8_t *packed = NULL;
    if (!sum || !ptrs || !json)
        goto out;
    for (int i = 0; i < st.sessions_count; i++) {
        const mpcd_session_info_t *in = &st.sessions[i];
        mpc__v1__session_summary__init(&sum[i]);
        sum[i].session_id = in->id;
        sum[i].client_name = (char *)in->name;
        sum[i].steps = in->steps;
        sum[i].episodes = in->episodes;
        sum[i].last_plan_us = in->last_plan_ms * 1e3;
        sum[i].mean_surprise = in->mean_surprise;
        ptrs[i] = &sum[i];
    }
    r.n_session = (size_t)st.sessions_count;
    r.session = ptrs;
    r.json = json;
    size_t n = mpc__v1__status_reply__get_packed_size(&r);
    if (!(packed = malloc(n ? n : 1)))
        goto out;
    mpc__v1__status_reply__pack(&r, packed);
    own = mpc__v1__status_reply__unpack(NULL, n, packed);
out:
    free(packed);
    free(json);
    free(sum);
    free(ptrs);
    return own;
}

void snapshot_send_status(server_t *s, conn_t *c, uint64_t id)
{
    struct status_cache *sc = s->status_cache;
    if (!sc && !(sc = s->status_cache = calloc(1, sizeof *sc))) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__INTERNAL, "out of memory");
        return;
    }
    /* Rebuilt when stale, and always when this client's own change is newer than the
     * build (it reads its own steps). A client asking in a loop gets copies of one build. */
    uint64_t now = uv_now(s->loop);
    if (!sc->reply || mpcd_status_stale(now, sc->built_ms, sc->built_gen, s->state_gen) ||
        c->changed_gen > sc->built_gen) {
        Mpc__V1__StatusReply *r = build_status(s);
        if (r) {
            mpc__v1__status_reply__free_unpacked(sc->reply, NULL);
            sc->reply = r;
            sc->built_ms = now;
            sc->built_gen = s->state_gen;
        }
    }
    if (!sc->reply) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__INTERNAL, "out of memory");
        return;
    }
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_STATUS;
    rep.status = sc->reply;
    conn_send(c, &rep);
}

void snapshot_cache_free(server_t *s)
{
    if (!s->status_cache)
        return;
    if (s->status_cache->reply)
        mpc__v1__status_reply__free_unpacked(s->status_cache->reply, NULL);
    free(s->status_cache);
    s->status_cache = NULL;
}

void snapshot_status_line(server_t *s, char *out, size_t outlen)
{
    const registry_model_t *m = s->registry.current;
    if (m)
        snprintf(out, outlen, "serving %s version %llu, %d session(s)", m->info->name,
                 (unsigned long long)m->version, s->nconns);
    else
        snprintf(out, outlen, "no model loaded (waiting for a Reload)");
}
