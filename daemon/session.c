/*
 * session.c: a client's episode state and the control step run on a worker (session.h).
 *
 * Step, PlaNet style: h' = GRU(h, f(z, a_prev)), z' from q(z | h', enc(obs)) (mean, or a
 * sample), then CEM from (h', z') until the deadline, then optional exploration noise.
 * Model health comes for free from the same pass: KL(q || p) is how surprised the prior
 * was by the observation, and reward(h', prior mean) is what the model expected the
 * previous action to earn, compared with what the client reports.
 */
#include "session.h"

#include "errbuf.h"
#include "mono.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SURPRISE_EWMA 0.05 /* ~ mean over the last 20 steps */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Standard normal from the session's stream (Box-Muller, one of the pair). */
static float normal(uint64_t *rng)
{
    double u1 = ((splitmix64(rng) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
    double u2 = (splitmix64(rng) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

static int alloc_belief(session_t *s, const rssm_info_t *info)
{
    int d = info->dims.deter, st = info->dims.stoch;
    if (s->h && d == s->deter && st == s->stoch)
        return 0;
    float *h = calloc((size_t)d + st, sizeof(float));
    if (!h)
        return -ENOMEM;
    free(s->h);
    s->h = h;
    s->z = h + d;
    s->deter = d;
    s->stoch = st;
    return 0;
}

int session_create(uint64_t id, const char *name, registry_model_t *model,
                   const session_opts_t *opts, session_t **out)
{
    const rssm_info_t *info = model->info;
    int O = info->dims.obs, A = info->dims.action, H = opts->history;
    session_t *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s)
        return -ENOMEM;
    s->id = id;
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    s->obs_dim = O;
    s->act_dim = A;
    s->opts = *opts;
    s->rng = opts->seed ^ (id * 0xd1342543de82ef95ull);
    splitmix64(&s->rng);
    if (alloc_belief(s, info) || !(s->a_prev = calloc((size_t)A, sizeof(float))) ||
        !(s->hist_obs = calloc((size_t)H * O, sizeof(float))) ||
        !(s->hist_act = calloc((size_t)H * A, sizeof(float))) ||
        !(s->in.obs = calloc((size_t)O, sizeof(float))) ||
        !(s->out.action = calloc((size_t)A, sizeof(float))) ||
        cem_plan_state_init(&s->plan, opts->horizon, A)) {
        session_destroy(s);
        return -ENOMEM;
    }
    registry_ref(model);
    s->model = model;
    session_publish(s);
    *out = s;
    return 0;
}

void session_destroy(session_t *s)
{
    if (!s)
        return;
    registry_release(s->model);
    free(s->h);
    free(s->a_prev);
    free(s->hist_obs);
    free(s->hist_act);
    free(s->in.obs);
    free(s->out.action);
    cem_plan_state_free(&s->plan);
    free(s);
}

void session_publish(session_t *s)
{
    s->pub.steps = s->steps;
    s->pub.episodes = s->episodes;
    s->pub.model_version = s->model ? s->model->version : 0;
    s->pub.surprise_mean = s->surprise_mean;
    s->pub.last_plan_s = s->last_plan_s;
    s->pub.last_total_s = s->last_total_s;
    s->pub.last_predicted_return = s->last_predicted_return;
}

void session_reset(session_t *s)
{
    memset(s->h, 0, sizeof(float) * (size_t)(s->deter + s->stoch));
    memset(s->a_prev, 0, sizeof(float) * (size_t)s->act_dim);
    cem_plan_state_reset(&s->plan);
    s->started = false;
    s->hist_len = s->hist_next = 0;
}

int session_check_step(const session_t *s, const float *obs, size_t n, float reward, bool reset,
                       float noise, uint32_t deadline_us, char *err, size_t errlen)
{
    if (n != (size_t)s->obs_dim) {
        errbuf_set(err, errlen, "observation has %zu values; the model expects %d", n,
                   s->obs_dim);
        return -EMSGSIZE;
    }
    const rssm_info_t *info = s->model->info;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(obs[i])) {
            errbuf_set(err, errlen, "observation[%zu] is %g; values must be finite", i,
                       (double)obs[i]);
            return -EDOM;
        }
        double mean = info->obs_mean[i], span = SESSION_MAX_OBS_STDS * (double)info->obs_std[i];
        if (fabs((double)obs[i] - mean) > span) {
            errbuf_set(err, errlen,
                       "observation[%zu] is %g; the model's sane range is %g +- %g (%g of its "
                       "normalisation stds)",
                       i, (double)obs[i], mean, span, SESSION_MAX_OBS_STDS);
            return -EDOM;
        }
    }
    if (!reset && !(fabsf(reward) <= SESSION_MAX_REWARD)) {
        errbuf_set(err, errlen, "reward is %g; it must be finite and within +- %g",
                   (double)reward, SESSION_MAX_REWARD);
        return -EDOM;
    }
    if (deadline_us > SESSION_MAX_DEADLINE_US) {
        errbuf_set(err, errlen, "deadline_us is %u; at most %u", deadline_us,
                   SESSION_MAX_DEADLINE_US);
        return -EDOM;
    }
    if (!isfinite(noise) || noise < 0 || noise > 10) {
        errbuf_set(err, errlen, "exploration_noise is %g; expected 0 .. 10", (double)noise);
        return -EDOM;
    }
    return 0;
}

static bool all_finite(const float *x, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

/* One filtering step into slot, then (h, z) <- (h', z'). */
static void observe(session_t *s, const registry_model_t *m, registry_slot_t *slot,
                    const float *obs)
{
    rssm_observe_out_t o = {slot->h, slot->prior_mean, slot->prior_std, slot->post_mean,
                            slot->post_std};
    /* Sizes were checked at Hello and on load, so observe cannot fail on them. */
    rssm_observe(m->model, s->h, s->z, s->a_prev, obs, &o, slot->ws);
}

static void take_posterior(session_t *s, const registry_slot_t *slot, bool sample)
{
    memcpy(s->h, slot->h, sizeof(float) * (size_t)s->deter);
    for (int i = 0; i < s->stoch; i++)
        s->z[i] = slot->post_mean[i] + (sample ? slot->post_std[i] * normal(&s->rng) : 0.0f);
}

static void history_push(session_t *s, const float *obs, const float *act)
{
    int cap = s->opts.history;
    memcpy(s->hist_obs + (size_t)s->hist_next * s->obs_dim, obs,
           sizeof(float) * (size_t)s->obs_dim);
    memcpy(s->hist_act + (size_t)s->hist_next * s->act_dim, act,
           sizeof(float) * (size_t)s->act_dim);
    s->hist_next = (s->hist_next + 1) % cap;
    if (s->hist_len < cap)
        s->hist_len++;
}

int session_resync(session_t *s, registry_model_t *model, registry_slot_t *slot)
{
    if (alloc_belief(s, model->info))
        return -ENOMEM;
    memset(s->h, 0, sizeof(float) * (size_t)(s->deter + s->stoch));
    memset(s->a_prev, 0, sizeof(float) * (size_t)s->act_dim);
    int cap = s->opts.history;
    int first = (s->hist_next - s->hist_len + cap) % cap;
    for (int k = 0; k < s->hist_len; k++) {
        int i = (first + k) % cap;
        observe(s, model, slot, s->hist_obs + (size_t)i * s->obs_dim);
        take_posterior(s, slot, false);
        memcpy(s->a_prev, s->hist_act + (size_t)i * s->act_dim,
               sizeof(float) * (size_t)s->act_dim);
    }
    if (model != s->model) {
        registry_ref(model);
        registry_release(s->model);
        s->model = model;
    }
    return 0;
}

static void clip_action(float *a, const rssm_info_t *info, int n)
{
    for (int i = 0; i < n; i++) {
        if (a[i] < info->action_low[i])
            a[i] = info->action_low[i];
        if (a[i] > info->action_high[i])
            a[i] = info->action_high[i];
    }
}

void session_shed(session_t *s, const rssm_info_t *info)
{
    session_step_out_t *out = &s->out;
    bool warm = s->plan.valid && s->started && !s->in.reset;
    for (int i = 0; i < s->act_dim; i++)
        out->action[i] =
            warm ? s->plan.mean[i] : 0.5f * (info->action_low[i] + info->action_high[i]);
    out->predicted_return = s->last_predicted_return;
    out->iterations = out->candidates = 0;
    out->deadline_cut = out->fallback = out->shed = true;
    out->overrun = false;
    out->plan_s = 0;
}

void session_step(session_t *s, registry_model_t *model, registry_slot_t *slot)
{
    session_step_in_t *in = &s->in;
    session_step_out_t *out = &s->out;
    const rssm_info_t *info = model->info;
    float *action = out->action;
    double t0 = mono_now();
    out->t_start = t0;

    if (!in->answered) /* the team wakes while the belief is updated */
        cem_keep_awake(slot->planner, true);
    out->queue_s = t0 - in->t_read;
    out->resynced = false;
    out->kl_nats = out->reward_error = NAN;
    out->rc = 0;
    if (in->reset || !s->started) {
        session_reset(s);
        s->episodes++;
    }
    if (model != s->model || s->deter != info->dims.deter || s->stoch != info->dims.stoch) {
        if ((out->rc = session_resync(s, model, slot)))
            goto fail;
        out->resynced = true;
    }

    observe(s, model, slot, in->obs);
    out->kl_nats = rssm_kl_diag(slot->post_mean, slot->post_std, slot->prior_mean,
                                slot->prior_std, s->stoch);
    if (s->started) {
        /* What the prior expected a_prev to earn, before seeing the new observation. */
        rssm_reward_batch(model->model, 1, slot->h, slot->prior_mean, slot->reward, slot->ws);
        out->reward_error = (double)in->reward - (double)slot->reward[0];
    }
    take_posterior(s, slot, s->opts.posterior_sample);
    double t1 = mono_now();
    out->belief_s = t1 - t0;
    if (!all_finite(s->h, s->deter + s->stoch)) {
        /* An input the model cannot digest: start over rather than carry NaN forever. */
        session_reset(s);
        out->rc = -EDOM;
        goto fail;
    }

    if (in->answered) {
        /* The loop already sent the fallback in out->action: only the belief moved on. */
        out->plan_s = 0;
        out->shed = false;
    } else if (t1 >= in->deadline - in->reply_s) {
        /* Too late to plan (the loop answers what waits too long; this is a backstop). */
        cem_keep_awake(slot->planner, false);
        session_shed(s, info);
    } else {
        cem_result_t res = {.action = action};
        int rc = cem_plan(slot->planner, s->h, s->z, &s->plan, splitmix64(&s->rng),
                          in->deadline - in->reply_s, &res);
        if (rc) {
            session_reset(s); /* the plan state may hold garbage: start over */
            out->rc = rc;
            goto fail;
        }
        out->predicted_return = res.predicted_return;
        out->iterations = res.iterations;
        out->candidates = res.candidates;
        out->deadline_cut = res.deadline_cut;
        out->fallback = res.fallback;
        out->overrun = res.overrun;
        out->shed = false;
        out->iteration_s = cem_iteration_estimate(slot->planner);
        out->plan_s = mono_now() - t1;
    }
    if (in->noise > 0 && !in->answered) {
        for (int i = 0; i < s->act_dim; i++)
            action[i] += in->noise * 0.5f * (info->action_high[i] - info->action_low[i]) *
                         normal(&s->rng);
    }
    clip_action(action, info, s->act_dim);

    memcpy(s->a_prev, action, sizeof(float) * (size_t)s->act_dim);
    history_push(s, in->obs, action);
    cem_plan_state_shift(&s->plan);
    s->started = true;
    s->steps++;
    s->surprise_mean += SURPRISE_EWMA * (out->kl_nats - s->surprise_mean);
    if (s->steps == 1)
        s->surprise_mean = out->kl_nats;
    s->last_plan_s = out->plan_s;
    s->last_predicted_return = out->predicted_return;
    out->model_version = model->version;
    out->t_done = mono_now();
    return;
fail:
    if (!in->answered)
        cem_keep_awake(slot->planner, false);
}
