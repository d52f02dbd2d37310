/*
 * dispatch.c: the protocol's side of a client: its requests served in order (Hello with
 * roles and admission, Step, Reset, Status, Reload), its steps sent to the workers in
 * earliest-deadline order and their replies written back, steps that waited too long
 * answered by the loop (fallback, never late), the fair share of iterations, and the
 * warm-up expectations for paced sessions. See dispatch.h and daemon/README.md.
 *
 * The loop thread owns sockets, sessions and the current model pointer; a worker owns a
 * session only while that session's single step is in flight, so session state needs no
 * locks. Nothing here blocks.
 */
#include "dispatch.h"

#include "snapshot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errbuf.h"
#include "log.h"
#include "mono.h"
#include "wire.h"

static void send_action(server_t *s, conn_t *c);
static void on_ready(uv_idle_t *h);
static void on_expiry(uv_timer_t *t);

/* Steps per second a Hello may declare. */
#define MAX_RATE_HZ 1000.0
/* How long before a waiting step's last moment the loop answers it itself: the loop
 * timer's resolution (1 ms) plus its own latency. */
#define EXPIRY_SLACK_S 0.002
/* The scheduler reserves this much more than the measured cost of an iteration: the
 * planner starts one only when its own estimate fits, and that one counts a recent slow
 * spell (up to 2x); without the factor 3% of 8 bunched robots' plans found no iteration
 * fitting when their turn came. */
#define SCHED_COST_FACTOR 1.5

static void send_action(server_t *s, conn_t *c);
static void on_ready(uv_idle_t *h);
static void on_expiry(uv_timer_t *t);

/* The planners' fair share of iterations follows the admitted load (workq_set_fair). */
static void update_fair(server_t *s)
{
    workq_set_fair(&s->workq, admission_fair_iterations(&s->admission));
}

void dispatch_changed(server_t *s, conn_t *c)
{
    s->state_gen++;
    if (c)
        c->changed_gen = s->state_gen;
}

/* ---- replies ---- */

/* The steps a client keeps for resume (Welcome.history_steps): the session's history, or
 * for a pixel model as many as a resuming Hello can carry within max-frame (an entry is
 * its image, its action and a few bytes of framing; 1 KiB for the rest of the Hello). */
static uint32_t resume_steps(const session_t *se, const rssm_info_t *info, int64_t max_frame)
{
    size_t image = registry_image_bytes(info);
    if (!image)
        return (uint32_t)se->opts.history;
    int64_t entry = (int64_t)image + 4 * info->dims.action + 16;
    int64_t fit = max_frame > 1024 ? (max_frame - 1024) / entry : 0;
    return (uint32_t)(fit < se->opts.history ? fit : se->opts.history);
}

static void send_welcome(conn_t *c, uint64_t id, const registry_model_t *m, double deadline_ms,
                         int min_iterations, int64_t max_frame)
{
    const rssm_info_t *info = m->info;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    Mpc__V1__Welcome w = MPC__V1__WELCOME__INIT;
    w.session_id = c->session->id;
    w.model_name = (char *)(info->task ? info->task : "");
    w.model_version = m->version;
    w.observation_size = (uint32_t)registry_obs_values(info);
    if (registry_image_bytes(info)) {
        w.image_height = (uint32_t)info->image_height;
        w.image_width = (uint32_t)info->image_width;
        w.image_channels = (uint32_t)info->image_channels;
    }
    w.action_size = (uint32_t)info->dims.action;
    w.n_action_low = w.n_action_high = (size_t)info->dims.action;
    w.action_low = (float *)info->action_low;
    w.action_high = (float *)info->action_high;
    w.control_period_s = info->control_period_s;
    w.default_deadline_us = (uint32_t)llround(deadline_ms * 1000.0);
    w.rate_hz = c->session->rate_hz;
    w.min_iterations = (uint32_t)min_iterations;
    w.history_steps = resume_steps(c->session, info, max_frame);
    w.resumed_steps = (uint32_t)c->session->hist_len;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_WELCOME;
    rep.welcome = &w;
    conn_send(c, &rep);
}

static void send_ack(conn_t *c, uint64_t id)
{
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    Mpc__V1__Ack ack = MPC__V1__ACK__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_ACK;
    rep.ack = &ack;
    conn_send(c, &rep);
}

/* ---- requests ---- */

void dispatch_count(server_t *s, mpcd_req_type_t t, mpcd_outcome_t o)
{
    mpcd_metrics_request(s->metrics, t, o);
    if (t != MPCD_REQ_STATUS) /* asking does not change what the answer shows */
        dispatch_changed(s, NULL);
}

/* The role a Hello's token gives, GUARD_ROLE_NONE for a wrong one. Without auth-token
 * every client has the control role; a token that matches nothing configured is wrong. */
static guard_role_t role_of(const mpcd_config_t *cfg, const char *token)
{
    bool given = token && *token;
    if (cfg->admin_token && guard_token_eq(token, cfg->admin_token))
        return GUARD_ROLE_ADMIN;
    if (cfg->auth_token)
        return guard_token_eq(token, cfg->auth_token) ? GUARD_ROLE_CONTROL : GUARD_ROLE_NONE;
    return given && cfg->admin_token ? GUARD_ROLE_NONE : GUARD_ROLE_CONTROL;
}

/* Checks a Hello's token, with the peer's backoff; true when c has a role now. */
static bool authenticate(server_t *s, conn_t *c, uint64_t id, const char *token)
{
    /* Only a Hello that tries a token is slowed down: one without a token guesses
     * nothing (it gets the control role when there is no auth-token, else a refusal). */
    bool given = token && *token;
    if (!given && s->cfg->auth_token) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__UNAUTHENTICATED,
                        "this daemon needs an auth_token in Hello");
        return false;
    }
    bool checked = given && (s->cfg->auth_token || s->cfg->admin_token);
    double now = mono_now();
    double wait = checked && c->gpeer ? guard_auth_wait_s(c->gpeer, now) : 0;
    if (wait > 0) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__UNAUTHENTICATED,
                        "too many failed Hellos from %s; retry in %.0f ms (token not checked)",
                        c->peer.key, ceil(wait * 1e3));
        mpcd_metrics_guard(s->metrics, MPCD_GUARD_AUTH_THROTTLED);
        return false;
    }
    guard_role_t role = role_of(s->cfg, token);
    if (role == GUARD_ROLE_NONE) {
        double next = c->gpeer ? guard_auth_failed(c->gpeer, now) : 0;
        conn_send_error(c, id, MPC__V1__ERROR__CODE__UNAUTHENTICATED,
                        "bad auth_token; the next Hello from %s is checked in %.0f ms",
                        c->peer.key, ceil(next * 1e3));
        mpcd_metrics_guard(s->metrics, MPCD_GUARD_AUTH_FAILED);
        mpcd_log(MPCD_LOG_WARNING, "connection %s: Hello with a wrong token", c->peer.name);
        return false;
    }
    if (checked && c->gpeer)
        guard_auth_ok(c->gpeer);
    if (role > c->role)
        c->role = role;
    conn_hello_done(c);
    return true;
}

/* Admin requests: a Hello with the admin token, or a Unix peer running as our uid. */
static bool is_admin(const conn_t *c)
{
    return c->role == GUARD_ROLE_ADMIN ||
           (c->peer.is_unix && c->peer.has_uid && c->peer.uid == (unsigned)geteuid());
}

/* A resuming Hello's history: each entry sized and valued like a Step's observation (or
 * image) and an applied action. 0, -EMSGSIZE or -EDOM with err naming the entry. */
static int check_history(const rssm_info_t *info, const Mpc__V1__Hello *h, char *err,
                         size_t errlen)
{
    const int A = info->dims.action;
    for (size_t k = 0; k < h->n_history; k++) {
        const Mpc__V1__HistoryStep *e = h->history[k];
        char why[240], what[32];
        snprintf(what, sizeof what, "history[%zu]", k);
        bool image = registry_image_bytes(info) > 0;
        if (!image && !e->image.len &&
            (e->n_observation != (size_t)info->dims.obs || e->n_action != (size_t)A)) {
            errbuf_set(err, errlen,
                       "history[%zu] has %zu observation and %zu action values; the model "
                       "takes %d and %d",
                       k, e->n_observation, e->n_action, info->dims.obs, A);
            return -EMSGSIZE;
        }
        if (session_check_kind(info, e->n_observation, e->image.len, what, why, sizeof why)) {
            errbuf_set(err, errlen, "%s", why);
            return -EMSGSIZE;
        }
        if (e->n_action != (size_t)A) {
            errbuf_set(err, errlen, "history[%zu] has %zu action values; the model takes %d", k,
                       e->n_action, A);
            return -EMSGSIZE;
        }
        if ((!image && session_check_observation(info, e->observation, why, sizeof why)) ||
            session_check_actions(info, "action", e->action, e->n_action, why, sizeof why)) {
            errbuf_set(err, errlen, "history[%zu]: %s", k, why);
            return -EDOM;
        }
        if (!(fabsf(e->reward) <= SESSION_MAX_REWARD)) {
            errbuf_set(err, errlen, "history[%zu]: reward is %g; at most +- %g", k,
                       (double)e->reward, SESSION_MAX_REWARD);
            return -EDOM;
        }
    }
    return 0;
}

/* The newest entries of a resuming Hello's history go into the new session's, to be
 * replayed into the belief by its first step (session_resume). */
static void resume(session_t *se, const Mpc__V1__Hello *h)
{
    size_t first =
        h->n_history > (size_t)se->opts.history ? h->n_history - se->opts.history : 0;
    for (size_t k = first; k < h->n_history; k++)
        session_resume_push(se, h->history[k]->observation, h->history[k]->image.data,
                            h->history[k]->action);
}

static void do_hello(server_t *s, conn_t *c, uint64_t id, const Mpc__V1__Hello *h)
{
    if (!authenticate(s, c, id, h->auth_token)) {
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
        return;
    }
    if (s->draining && !is_admin(c)) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__DRAINING,
                        "this instance is draining and admits no new session; connect "
                        "again (through the balancer) to another instance");
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
        return;
    }
    registry_model_t *m = s->registry.current;
    if (!m) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__NOT_READY, "no model is loaded");
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
        return;
    }
    const rssm_dims_t *d = &m->info->dims;
    if (registry_image_bytes(m->info) && h->observation_size) {
        char shape[64];
        conn_send_error(c, id, MPC__V1__ERROR__CODE__SIZE_MISMATCH,
                        "client has observation_size %u; the model '%s' takes %s and no "
                        "observation vector (Hello.observation_size 0, Step.image)",
                        h->observation_size, m->info->name,
                        registry_obs_shape(m->info, shape, sizeof shape));
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
        return;
    }
    if ((h->observation_size && (int)h->observation_size != d->obs) ||
        (h->action_size && (int)h->action_size != d->action)) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__SIZE_MISMATCH,
                        "client has observation_size %u and action_size %u; the model "
                        "'%s' has observation_size %d and action_size %d",
                        h->observation_size, h->action_size, m->info->name,
                        registry_obs_values(m->info), d->action);
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
        return;
    }
    if (!isfinite(h->rate_hz) || h->rate_hz < 0 || h->rate_hz > MAX_RATE_HZ) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__INVALID_VALUE,
                        "rate_hz is %g; expected 0 (the model's control period) .. %g",
                        h->rate_hz, MAX_RATE_HZ);
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
        return;
    }
    char err[256];
    int rc = check_history(m->info, h, err, sizeof err);
    if (rc) {
        conn_send_error(c, id,
                        rc == -EMSGSIZE ? MPC__V1__ERROR__CODE__SIZE_MISMATCH
                                        : MPC__V1__ERROR__CODE__INVALID_VALUE,
                        "%s", err);
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
        return;
    }
    double rate = h->rate_hz > 0                  ? h->rate_hz
                  : m->info->control_period_s > 0 ? 1.0 / m->info->control_period_s
                                                  : 1e3 / s->cfg->deadline_ms;
    /* A second Hello replaces the connection's session: its place is freed first. An
     * operator (admin role) always gets in, uncounted: a full daemon must stay operable. */
    bool counted = !is_admin(c);
    double old_rate = c->session ? c->session->admitted_rate : 0;
    if (old_rate > 0)
        admission_leave(&s->admission, old_rate);
    char why[320];
    if (counted && !admission_admit(&s->admission, rate, why, sizeof why)) {
        if (old_rate > 0) /* it keeps its session and its place */
            admission_readmit(&s->admission, old_rate);
        conn_send_refusal(c, id, MPC__V1__ERROR__CODE__OVERLOADED,
                          (uint32_t)(ADMISSION_RETRY_AFTER_S * 1e3), "%s", why);
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_OVERLOADED);
        mpcd_metrics_session(s->metrics, false);
        dispatch_changed(s, NULL);
        mpcd_log(MPCD_LOG_NOTICE, "connection %s: Hello refused: %s", c->peer.name, why);
        return;
    }
    session_opts_t o = {.horizon = s->cfg->planner.horizon,
                        .history = s->cfg->history,
                        .posterior_sample = s->cfg->posterior_sample,
                        .seed = s->cfg->seed,
                        .client_seed = h->seed};
    session_t *ns;
    if (session_create(++s->next_session_id, h->client_name, m, &o, &ns)) {
        if (counted)
            admission_leave(&s->admission, rate);
        if (old_rate > 0)
            admission_readmit(&s->admission, old_rate);
        conn_send_error(c, id, MPC__V1__ERROR__CODE__INTERNAL, "out of memory");
        dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
        return;
    }
    if (c->session) {
        record_session_end(s->recorder, &c->rec);
        session_destroy(c->session);
    }
    c->session = ns;
    resume(ns, h);
    ns->rate_hz = rate;
    ns->admitted_rate = counted ? rate : 0;
    update_fair(s);
    if (counted)
        mpcd_metrics_session(s->metrics, true);
    dispatch_changed(s, c);
    mpcd_log(MPCD_LOG_INFO, "session %llu: hello from %s (%s%s)%s", (unsigned long long)ns->id,
             c->peer.name, ns->name[0] ? ns->name : "unnamed",
             c->role == GUARD_ROLE_ADMIN ? ", admin" : "",
             ns->hist_len ? ": resumed from its history" : "");
    send_welcome(c, id, m, s->cfg->deadline_ms, s->cfg->min_iterations, s->cfg->max_frame);
    dispatch_count(s, MPCD_REQ_HELLO, MPCD_OUTCOME_OK);
}

/* The planner asks before each further iteration: stop when a waiting step must start. */
static bool keep_planning(void *ctx, int done, double next_end)
{
    const server_worker_t *w = ctx;
    return done < w->s->cfg->min_iterations ||
           !workq_should_yield(&w->s->workq, w->index, done, next_end);
}

static void step_job_run(workq_job_t *job, int worker)
{
    conn_t *c = ((conn_t *)((char *)job - offsetof(conn_t, step.job)));
    server_worker_t *w = &((server_t *)c->owner)->workers[worker];
    registry_slot_t *slot = &c->step.model->slots[worker];
    if (w->model != c->step.model) { /* the planner warm-ups keep awake (warm_team) */
        registry_ref(c->step.model);
        registry_release(w->model);
        w->model = c->step.model;
    }
    cem_set_continue(slot->planner, keep_planning, w);
    session_step(c->session, c->step.model, slot);
}

/* A worker's warm-up spell before an expected step (workq_set_warm): the team of the
 * planner it used last spins too. Worker thread. */
void dispatch_warm_team(void *ctx, int worker, bool on)
{
    const server_worker_t *w = &((server_t *)ctx)->workers[worker];
    if (w->model)
        cem_keep_awake(w->model->slots[worker].planner, on);
}

/* Tells the workers when the next step of a paced session is due: the earliest of the
 * sessions' last frame + one period that is not already past the warm-up window. */
void dispatch_expect_next_step(server_t *s)
{
    double now = mono_now(), next = INFINITY, warm = s->cfg->warm_up_ms * 1e-3;
    if (warm <= 0)
        return;
    for (const conn_t *c = s->conns; c; c = c->next) {
        const session_t *se = c->session;
        if (!se || !se->started || c->busy || se->rate_hz <= 0)
            continue;
        double t = se->in.t_read + 1.0 / se->rate_hz;
        if (t + warm > now && t < next)
            next = t;
    }
    workq_expect(&s->workq, next);
}

/* The loop answers the steps that waited too long for a worker (see arm_expiry). */
static void arm_expiry(server_t *s)
{
    double t = workq_next_expiry(&s->workq);
    if (!isfinite(t)) {
        uv_timer_stop(&s->expiry_timer);
        return;
    }
    uv_update_time(s->loop);
    double ms = ceil((t - mono_now()) * 1e3);
    uv_timer_start(&s->expiry_timer, on_expiry, ms > 0 ? (uint64_t)ms : 0, 0);
}

/* Returns true when the step went to a worker (the connection is busy). */
static bool do_step(server_t *s, conn_t *c, uint64_t id, const Mpc__V1__Step *st, double t_read)
{
    char err[256];
    session_t *se = c->session;
    if (!se) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__NO_SESSION, "send Hello first");
        dispatch_count(s, MPCD_REQ_STEP, MPCD_OUTCOME_ERROR);
        return false;
    }
    session_step_fields_t f = {.obs = st->observation,
                               .n_obs = st->n_observation,
                               .image = st->image.data,
                               .n_image = st->image.len,
                               .reward = st->reward,
                               .reset = st->reset,
                               .noise = st->exploration_noise,
                               .deadline_us = st->deadline_us,
                               .delay_steps = st->delay_steps,
                               .applied = st->applied_actions,
                               .n_applied = st->n_applied_actions};
    int rc = session_check_step(se, &f, err, sizeof err);
    if (rc) {
        conn_send_error(c, id,
                        rc == -EMSGSIZE ? MPC__V1__ERROR__CODE__SIZE_MISMATCH
                                        : MPC__V1__ERROR__CODE__INVALID_VALUE,
                        "%s", err);
        dispatch_count(s, MPCD_REQ_STEP, MPCD_OUTCOME_ERROR);
        return false;
    }
    session_step_in_t *in = &se->in;
    if (st->n_observation) /* a pixel Step has none (and protobuf-c a NULL array) */
        memcpy(in->obs, st->observation, sizeof(float) * st->n_observation);
    if (st->image.len) /* exactly se->img_bytes: checked above */
        memcpy(in->image, st->image.data, st->image.len);
    in->seq = st->seq;
    in->reward = st->reward;
    in->reset = st->reset;
    in->noise = st->exploration_noise;
    in->t_read = t_read;
    in->deadline =
        t_read + (st->deadline_us ? st->deadline_us * 1e-6 : s->cfg->deadline_ms * 1e-3);
    in->answered = false;
    in->reply_s = s->reply_reserve_s;
    in->delay_steps = (int)st->delay_steps;
    in->has_applied = st->n_applied_actions > 0;
    if (in->has_applied)
        memcpy(in->applied, st->applied_actions, sizeof(float) * st->n_applied_actions);
    c->step.c = c;
    c->step.req_id = id;
    c->step.model = registry_acquire(&s->registry);
    /* What the scheduler works with (workq.h): the EDF key, the minimum plan's cost and
     * end (the worker is done by then, the reply sent by the deadline), and when only
     * the loop can still answer in time (a worker taking it later could not even update
     * the belief first). */
    const admission_t *a = &s->admission;
    workq_job_t *j = &c->step.job;
    j->fn = step_job_run;
    j->deadline = in->deadline;
    j->cost = a->fixed_s + SCHED_COST_FACTOR * a->min_iterations * a->iteration_s;
    j->finish_by = in->deadline - s->cfg->planner.margin_s - in->reply_s;
    j->expire = j->finish_by - a->fixed_s - EXPIRY_SLACK_S;
    c->busy = true;
    workq_submit(&s->workq, j);
    arm_expiry(s);
    return true;
}

void dispatch_step_done(server_t *s, conn_t *c)
{
    session_t *se = c->session;
    session_step_out_t *o = &se->out;
    registry_release(c->step.model);
    c->step.model = NULL;
    c->busy = false;
    session_publish(se);
    if (!o->rc)
        admission_observe(&s->admission, o->t_done - o->t_start - o->plan_s,
                          o->iterations > 0 ? o->plan_s / o->iterations : 0);
    update_fair(s);
    if (c->closing) {
        /* The client left, but the transition happened; its episode ends here. */
        record_step(s->recorder, &c->rec, c->session);
        record_session_end(s->recorder, &c->rec);
        return;
    }
    if (se->in.answered) { /* its reply went out when it expired (answer_expired) */
        if (o->rc)
            mpcd_log(MPCD_LOG_WARNING, "session %llu: belief update after a fallback: %s",
                     (unsigned long long)se->id, strerror(-o->rc));
        else
            record_step(s->recorder, &c->rec, c->session);
        dispatch_changed(s, c);
        return;
    }
    if (o->rc == -EDOM) {
        /* The model gave non-finite values for this input; the session reset its belief. */
        conn_send_error(c, c->step.req_id, MPC__V1__ERROR__CODE__INVALID_VALUE,
                        "the model produced non-finite values for this observation; the "
                        "session's belief was reset (the next step starts a new episode)");
        mpcd_metrics_guard(s->metrics, MPCD_GUARD_BELIEF_RESET);
        dispatch_count(s, MPCD_REQ_STEP, MPCD_OUTCOME_ERROR);
        return;
    }
    if (o->rc) {
        conn_send_error(c, c->step.req_id, MPC__V1__ERROR__CODE__INTERNAL, "step failed: %s",
                        strerror(-o->rc));
        dispatch_count(s, MPCD_REQ_STEP, MPCD_OUTCOME_ERROR);
        return;
    }
    send_action(s, c);
    if (o->resynced)
        mpcd_log(MPCD_LOG_DEBUG, "session %llu: belief re-synced into model version %llu",
                 (unsigned long long)se->id, (unsigned long long)o->model_version);
    record_step(s->recorder, &c->rec, c->session);
}

/* Planning stops this much before a step's deadline (on top of margin-ms): the worst
 * latency from a worker finishing to the reply being sent over the last REPLY_WINDOW
 * replies, at most a quarter of the budget. (A decaying estimate had forgotten a 2.3 ms
 * spell by the time the next one came: with 8 simulators on the same 2 cores, 2 replies
 * in 1000 were 0.1 ms late.) */
static void note_reply_latency(server_t *s, double latency_s, double budget_s)
{
    s->reply_latency[s->reply_next] = latency_s;
    s->reply_next = (s->reply_next + 1) % REPLY_WINDOW;
    double r = 0;
    for (int i = 0; i < REPLY_WINDOW; i++)
        r = s->reply_latency[i] > r ? s->reply_latency[i] : r;
    s->reply_reserve_s = r < 0.25 * budget_s ? r : 0.25 * budget_s;
}

/* Sends the Action of c's step (se->out) and records its timings. */
static void send_action(server_t *s, conn_t *c)
{
    session_t *se = c->session;
    const session_step_out_t *o = &se->out;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    Mpc__V1__Action a = MPC__V1__ACTION__INIT;
    a.seq = se->in.seq;
    a.n_action = (size_t)se->act_dim;
    a.action = o->action;
    a.predicted_return = o->predicted_return;
    a.iterations = (uint32_t)o->iterations;
    a.candidates = (uint32_t)o->candidates;
    a.belief_us = (uint32_t)llround(o->belief_s * 1e6);
    a.plan_us = (uint32_t)llround(o->plan_s * 1e6);
    a.queue_us = (uint32_t)llround(o->queue_s * 1e6);
    a.model_version = o->model_version;
    a.deadline_cut = o->deadline_cut;
    a.fallback = o->fallback;
    a.n_plan = (size_t)se->plan.horizon * se->act_dim;
    a.plan = o->plan;
    a.plan_step_s = se->model->info->control_period_s;
    rep.id = c->step.req_id;
    rep.body_case = MPC__V1__REPLY__BODY_ACTION;
    rep.action = &a;
    conn_send(c, &rep);
    double t_reply = mono_now();
    if (o->t_done > 0) /* planned on a worker: how long its reply took to go out */
        note_reply_latency(s, t_reply - o->t_done, se->in.deadline - se->in.t_read);

    mpcd_step_sample_t smp = {.queue_s = o->queue_s,
                              .belief_s = o->belief_s,
                              .plan_s = o->plan_s,
                              .total_s = t_reply - se->in.t_read,
                              .slack_s = se->in.deadline - t_reply,
                              .iterations = o->iterations,
                              .candidates = o->candidates,
                              .deadline_cut = o->deadline_cut,
                              .fallback = o->fallback,
                              .kl_nats = o->kl_nats,
                              .reward_error = o->reward_error};
    smp.overrun = smp.slack_s < 0;
    if (smp.overrun) /* should not happen on an admitted load: say where the time went */
        mpcd_log(MPCD_LOG_WARNING,
                 "session %llu: reply %.2f ms after its deadline (queue %.2f, belief %.2f, "
                 "plan %.2f ms, %d iteration(s)%s; worker to reply %.2f ms)",
                 (unsigned long long)se->id, -smp.slack_s * 1e3, o->queue_s * 1e3,
                 o->belief_s * 1e3, o->plan_s * 1e3, o->iterations,
                 o->fallback ? ", fallback" : "",
                 o->t_done > 0 ? (t_reply - o->t_done) * 1e3 : 0);
    mpcd_metrics_step(s->metrics, &smp);
    dispatch_count(s, MPCD_REQ_STEP, o->shed ? MPCD_OUTCOME_SHED : MPCD_OUTCOME_OK);
    se->last_total_s = smp.total_s;
    session_publish(se);
    dispatch_changed(s, c);
}

/* Steps that waited for a worker until only the loop could still answer them in time:
 * the warm start's action goes out now (flagged fallback), and the step goes back to the
 * workers, first in line, to update the belief with its observation. */
static void on_expiry(uv_timer_t *t)
{
    server_t *s = t->data;
    workq_job_t *jobs[64];
    int n = workq_cancel_expired(&s->workq, mono_now() + EXPIRY_SLACK_S / 2, jobs, 64);
    for (int i = 0; i < n; i++) {
        conn_t *c = ((conn_t *)((char *)jobs[i] - offsetof(conn_t, step.job)));
        session_t *se = c->session;
        session_step_out_t *o = &se->out;
        session_shed(se, c->step.model->info); /* counted as shed: overload cost its plan */
        o->resynced = false;
        o->queue_s = mono_now() - se->in.t_read;
        o->belief_s = 0;
        o->t_start = o->t_done = 0;
        o->model_version = c->step.model->version;
        if (!c->closing)
            send_action(s, c);
        se->in.answered = true;
        jobs[i]->deadline = -INFINITY; /* before every waiting step: it is short */
        jobs[i]->cost = 0;
        jobs[i]->finish_by = jobs[i]->expire = INFINITY;
        workq_submit(&s->workq, jobs[i]);
    }
    arm_expiry(s);
}

/* ---- draining ---- */

/* After the grace period a session's connection closes as soon as nothing of it is in
 * flight (its reply sent, no request queued), with a last Error DRAINING: its client
 * resumes on another instance at once. */
/* A session admission counts (an operator's is not handed over: it stops with the rest). */
static bool robot_session(const conn_t *c)
{
    return c->session && c->session->admitted_rate > 0;
}

static void hand_over(server_t *s, conn_t *c)
{
    if (!s->drain_closing || !robot_session(c) || c->busy || c->nent || c->reload ||
        c->closing || c->close_when_flushed)
        return;
    conn_send_error(c, 0, MPC__V1__ERROR__CODE__DRAINING,
                    "this instance is draining: connect again and resume the session "
                    "(nothing in flight was lost)");
    c->close_when_flushed = true;
    conn_stop_reading(c); /* a request read now could not be answered */
    mpcd_log(MPCD_LOG_INFO, "session %llu: handed over (draining) after %llu steps",
             (unsigned long long)c->session->id, (unsigned long long)c->session->steps);
}

static int sessions_left(const server_t *s)
{
    int n = 0;
    for (const conn_t *c = s->conns; c; c = c->next)
        n += robot_session(c) && !c->closing && !c->close_when_flushed;
    return n;
}

/* Grace over, then every 50 ms: hand the sessions over; stop when none is left, or when
 * one still has requests queued after shutdown-timeout-s (a client that never waits for
 * its replies, or stopped reading them): stopping answers what is in flight. */
static void on_grace(uv_timer_t *t)
{
    server_t *s = t->data;
    if (!s->drain_closing) {
        s->drain_closing = true;
        s->drain_closing_at = mono_now();
        mpcd_log(MPCD_LOG_NOTICE, "draining: grace over; handing %d session(s) over",
                 sessions_left(s));
        for (conn_t *c = s->conns; c; c = c->next)
            hand_over(s, c);
    }
    int left = sessions_left(s);
    if (left == 0 || mono_now() - s->drain_closing_at > s->cfg->shutdown_timeout_s) {
        if (left > 0)
            mpcd_log(MPCD_LOG_WARNING,
                     "draining: %d session(s) still busy after %g s; stopping anyway", left,
                     s->cfg->shutdown_timeout_s);
        uv_timer_stop(t);
        s->drained(s);
    }
}

void dispatch_drain(server_t *s, const char *why)
{
    if (s->draining || s->stopping)
        return;
    s->draining = true;
    mpcd_log(MPCD_LOG_NOTICE,
             "%s: draining: no new sessions; %d open session(s) served for %g s more, then "
             "handed over",
             why, sessions_left(s), s->cfg->drain_grace_s);
    dispatch_changed(s, NULL);
    uv_timer_start(&s->grace_timer, on_grace, (uint64_t)llround(s->cfg->drain_grace_s * 1e3),
                   50);
}

static void do_drain(server_t *s, conn_t *c, uint64_t id)
{
    if (!is_admin(c)) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__PERMISSION_DENIED,
                        "Drain needs the admin role: a Hello carrying admin-token, or the "
                        "Unix socket as the daemon's user; nothing was changed");
        dispatch_count(s, MPCD_REQ_DRAIN, MPCD_OUTCOME_ERROR);
        mpcd_metrics_guard(s->metrics, MPCD_GUARD_PERMISSION_DENIED);
        return;
    }
    send_ack(c, id);
    dispatch_count(s, MPCD_REQ_DRAIN, MPCD_OUTCOME_OK);
    dispatch_drain(s, "Drain request");
}

static void do_reload(server_t *s, conn_t *c, uint64_t id, const Mpc__V1__Reload *rl,
                      bool *waiting)
{
    if (!is_admin(c)) {
        conn_send_error(c, id, MPC__V1__ERROR__CODE__PERMISSION_DENIED,
                        "Reload needs the admin role: a Hello carrying admin-token, or the "
                        "Unix socket as the daemon's user; nothing was changed");
        dispatch_count(s, MPCD_REQ_RELOAD, MPCD_OUTCOME_ERROR);
        mpcd_metrics_guard(s->metrics, MPCD_GUARD_PERMISSION_DENIED);
        mpcd_log(MPCD_LOG_WARNING, "connection %s: Reload refused (no admin role)",
                 c->peer.name);
        return;
    }
    *waiting = reload_request(s->reloader, c, id, rl->path, true);
}

/* Serves the connection's queued requests in order until one has to wait, or until its
 * unsent replies exceed its budget (the write callback resumes it). */
void dispatch_pump(server_t *s, conn_t *c)
{
    const uint8_t *payload;
    size_t len;
    double t_read;
    while (!c->busy && !c->closing && !conn_over_budget(c) &&
           conn_peek(c, &payload, &len, &t_read)) {
        Mpc__V1__Request *r = conn_unpack(c, payload, len);
        bool waiting = false;
        if (!r || r->body_case == MPC__V1__REQUEST__BODY__NOT_SET) {
            conn_send_error(c, wire_request_id(r, payload, len),
                            MPC__V1__ERROR__CODE__MALFORMED,
                            "frame of %zu bytes is not an mpc.v1.Request with a body", len);
            dispatch_count(s, MPCD_REQ_INVALID, MPCD_OUTCOME_ERROR);
            conn_pop(c);
            continue;
        }
        switch (r->body_case) {
        case MPC__V1__REQUEST__BODY_HELLO:
            do_hello(s, c, r->id, r->hello);
            break;
        case MPC__V1__REQUEST__BODY_STEP:
            waiting = do_step(s, c, r->id, r->step, t_read);
            break;
        case MPC__V1__REQUEST__BODY_RESET:
            if (!c->session) {
                conn_send_error(c, r->id, MPC__V1__ERROR__CODE__NO_SESSION, "send Hello first");
                dispatch_count(s, MPCD_REQ_RESET, MPCD_OUTCOME_ERROR);
                break;
            }
            record_session_end(s->recorder, &c->rec);
            session_reset(c->session);
            session_publish(c->session);
            dispatch_changed(s, c);
            send_ack(c, r->id);
            dispatch_count(s, MPCD_REQ_RESET, MPCD_OUTCOME_OK);
            break;
        case MPC__V1__REQUEST__BODY_STATUS:
            if (s->cfg->auth_token && c->role == GUARD_ROLE_NONE) {
                conn_send_error(c, r->id, MPC__V1__ERROR__CODE__UNAUTHENTICATED,
                                "send Hello with the auth_token first");
                dispatch_count(s, MPCD_REQ_STATUS, MPCD_OUTCOME_ERROR);
                break;
            }
            snapshot_send_status(s, c, r->id);
            dispatch_count(s, MPCD_REQ_STATUS, MPCD_OUTCOME_OK);
            break;
        case MPC__V1__REQUEST__BODY_RELOAD:
            do_reload(s, c, r->id, r->reload, &waiting);
            break;
        case MPC__V1__REQUEST__BODY_DRAIN:
            do_drain(s, c, r->id);
            break;
        default:
            break;
        }
        conn_pop(c);
        if (waiting)
            break;
    }
    hand_over(s, c);
    if (s->stopping && conn_idle(c) && !c->closing)
        conn_close(c);
}

/* ---- connection events ---- */

void dispatch_readable(void *owner, conn_t *c)
{
    dispatch_pump(owner, c);
}

/* Completions (a reload's answer) do not serve the connection's next request from their
 * own stack: the connection is queued and served from the loop (on_ready). */
void dispatch_conn_ready(server_t *s, conn_t *c)
{
    if (c->ready_queued || c->closing)
        return;
    c->ready_queued = true;
    c->ready_next = s->ready;
    s->ready = c;
    uv_idle_start(&s->ready_idle, on_ready);
}

static void forget_ready(server_t *s, conn_t *c)
{
    for (conn_t **p = &s->ready; c->ready_queued && *p; p = &(*p)->ready_next)
        if (*p == c) {
            *p = c->ready_next;
            c->ready_queued = false;
        }
}

static void on_ready(uv_idle_t *h)
{
    server_t *s = h->data;
    uv_idle_stop(h);
    while (s->ready) {
        conn_t *c = s->ready;
        s->ready = c->ready_next;
        c->ready_queued = false;
        dispatch_pump(s, c);
    }
}

void dispatch_overflow(void *owner, conn_t *c, const Mpc__V1__Request *r)
{
    server_t *s = owner;
    static const mpcd_req_type_t type_of[] = {
        [MPC__V1__REQUEST__BODY_HELLO] = MPCD_REQ_HELLO,
        [MPC__V1__REQUEST__BODY_STEP] = MPCD_REQ_STEP,
        [MPC__V1__REQUEST__BODY_RESET] = MPCD_REQ_RESET,
        [MPC__V1__REQUEST__BODY_STATUS] = MPCD_REQ_STATUS,
        [MPC__V1__REQUEST__BODY_RELOAD] = MPCD_REQ_RELOAD,
        [MPC__V1__REQUEST__BODY_DRAIN] = MPCD_REQ_DRAIN,
    };
    (void)c;
    bool known =
        r && r->body_case > 0 && (size_t)r->body_case < sizeof type_of / sizeof *type_of;
    dispatch_count(s, known ? type_of[r->body_case] : MPCD_REQ_INVALID,
                   MPCD_OUTCOME_OVERLOADED);
}

void dispatch_fatal(void *owner, conn_t *c, int frame_err)
{
    server_t *s = owner;
    if (frame_err == FRAME_ETOO_LARGE) {
        conn_send_error(c, 0, MPC__V1__ERROR__CODE__FRAME_TOO_LARGE,
                        "frame larger than max-frame (%lld bytes); closing the connection",
                        (long long)s->cfg->max_frame);
    } else {
        conn_send_error(c, 0, MPC__V1__ERROR__CODE__MALFORMED, "%s; closing the connection",
                        frame_strerror(frame_err));
    }
    dispatch_count(s, MPCD_REQ_INVALID, MPCD_OUTCOME_ERROR);
    mpcd_log(MPCD_LOG_WARNING, "connection %s: %s", c->peer.name, frame_strerror(frame_err));
    c->close_when_flushed = true;
}

/* The connection closed: its session leaves (admission, recording), its pending Reload
 * reply has nowhere to go. */
void dispatch_closed(server_t *s, conn_t *c)
{
    forget_ready(s, c);
    if (c->session) {
        if (c->session->admitted_rate > 0)
            admission_leave(&s->admission, c->session->admitted_rate);
        update_fair(s);
        dispatch_changed(s, NULL);
    }
    if (c->session && !c->step.job.queued) { /* else dispatch_step_done ends it */
        record_session_end(s->recorder, &c->rec);
        mpcd_log(MPCD_LOG_INFO, "session %llu: closed after %llu steps",
                 (unsigned long long)c->session->id, (unsigned long long)c->session->steps);
    }
    reload_forget_conn(s->reloader, c);
}
