/*
 * session.c: a client's episode state and the control step run on a worker (session.h).
 *
 * Step, PlaNet style: h' = GRU(h, f(z, a_prev)), z' from q(z | h', enc(obs)) (mean, or a
 * sample), then CEM from (h', z') until the deadline, then optional exploration noise.
 * With a delay of d steps, CEM starts instead from (h', z') carried d steps ahead by the
 * prior (mean z) through the actions applied meanwhile.
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
    float *h = calloc(3 * ((size_t)d + st), sizeof(float)); /* h, z, then pred */
    if (!h)
        return -ENOMEM;
    free(s->h);
    s->h = h;
    s->z = h + d;
    s->pred = h + d + st;
    s->deter = d;
    s->stoch = st;
    return 0;
}

int session_create(uint64_t id, const char *name, registry_model_t *model,
                   const session_opts_t *opts, session_t **out)
{
    const rssm_info_t *info = model->info;
    int O = registry_obs_values(info), A = info->dims.action, H = opts->history;
    size_t I = registry_image_bytes(info);
    session_t *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s)
        return -ENOMEM;
    s->id = id;
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    s->obs_dim = O;
    s->act_dim = A;
    s->img_bytes = I;
    s->opts = *opts;
    s->rng = opts->client_seed ? opts->client_seed : opts->seed ^ (id * 0xd1342543de82ef95ull);
    splitmix64(&s->rng);
    size_t plan_floats = (size_t)opts->horizon * A;
    if (alloc_belief(s, info) || !(s->a_prev = calloc((size_t)A, sizeof(float))) ||
        !(s->ahead = calloc(plan_floats, sizeof(float))) ||
        !(s->in.applied = calloc(plan_floats, sizeof(float))) ||
        !(s->out.plan = calloc(plan_floats, sizeof(float))) ||
        !(s->hist_obs = calloc((size_t)H * O + 1, sizeof(float))) ||
        !(s->hist_act = calloc((size_t)H * A, sizeof(float))) ||
        !(s->hist_img = calloc((size_t)H * I + 1, 1)) ||
        !(s->in.obs = calloc((size_t)O + 1, sizeof(float))) ||
        !(s->in.image = calloc(I + 1, 1)) ||
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
    free(s->ahead);
    free(s->in.applied);
    free(s->out.plan);
    free(s->hist_obs);
    free(s->hist_act);
    free(s->hist_img);
    free(s->in.obs);
    free(s->in.image);
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
    s->ahead_len = 0;
    cem_plan_state_reset(&s->plan);
    s->started = false;
    s->resume = false;
    s->hist_len = s->hist_next = 0;
}

/* delay_steps within the horizon; applied_actions empty or delay_steps x A, in bounds. */
static int check_delay(const session_t *s, const session_step_fields_t *f, char *err,
                       size_t errlen)
{
    const rssm_info_t *info = s->model->info;
    const int A = s->act_dim;
    if (f->delay_steps > (uint32_t)s->opts.horizon) {
        errbuf_set(err, errlen,
                   "delay_steps is %u; at most the planner's horizon, %d control steps",
                   f->delay_steps, s->opts.horizon);
        return -EDOM;
    }
    if (f->n_applied && f->n_applied != (size_t)f->delay_steps * A) {
        errbuf_set(err, errlen,
                   "applied_actions has %zu values; expected none or delay_steps x "
                   "action_size = %u x %d = %u",
                   f->n_applied, f->delay_steps, A, f->delay_steps * (uint32_t)A);
        return -EMSGSIZE;
    }
    return session_check_actions(info, "applied_actions", f->applied, f->n_applied, err,
                                 errlen);
}

int session_check_actions(const rssm_info_t *info, const char *what, const float *a, size_t n,
                          char *err, size_t errlen)
{
    const size_t A = (size_t)info->dims.action;
    for (size_t i = 0; i < n; i++) {
        float v = a[i], lo = info->action_low[i % A], hi = info->action_high[i % A];
        if (!(v >= lo && v <= hi)) {
            errbuf_set(err, errlen,
                       "%s[%zu] (step %zu, action %zu) is %g; it must lie in the action "
                       "bounds [%g, %g]",
                       what, i, i / A, i % A, (double)v, (double)lo, (double)hi);
            return -EDOM;
        }
    }
    return 0;
}

int session_check_observation(const rssm_info_t *info, const float *obs, char *err,
                              size_t errlen)
{
    for (int i = 0; i < info->dims.obs; i++) {
        if (!isfinite(obs[i])) {
            errbuf_set(err, errlen, "observation[%d] is %g; values must be finite", i,
                       (double)obs[i]);
            return -EDOM;
        }
        double mean = info->obs_mean[i], span = SESSION_MAX_OBS_STDS * (double)info->obs_std[i];
        if (fabs((double)obs[i] - mean) > span) {
            errbuf_set(err, errlen,
                       "observation[%d] is %g; the model's sane range is %g +- %g (%g of its "
                       "normalisation stds)",
                       i, (double)obs[i], mean, span, SESSION_MAX_OBS_STDS);
            return -EDOM;
        }
    }
    return 0;
}

int session_check_kind(const rssm_info_t *info, size_t n_obs, size_t n_image, const char *what,
                       char *err, size_t errlen)
{
    size_t I = registry_image_bytes(info);
    char shape[64];
    if (I > 0 && (n_obs != 0 || n_image != I)) {
        errbuf_set(err, errlen,
                   "the model takes %s and no observation vector; %s has an image of %zu "
                   "bytes and %zu observation values",
                   registry_obs_shape(info, shape, sizeof shape), what, n_image, n_obs);
        return -EMSGSIZE;
    }
    if (I == 0 && n_image != 0) {
        errbuf_set(err, errlen,
                   "the model takes %s and no image; %s has an image of %zu bytes and %zu "
                   "observation values",
                   registry_obs_shape(info, shape, sizeof shape), what, n_image, n_obs);
        return -EMSGSIZE;
    }
    if (I == 0 && n_obs != (size_t)info->dims.obs) {
        errbuf_set(err, errlen, "observation has %zu values; the model expects %d", n_obs,
                   info->dims.obs);
        return -EMSGSIZE;
    }
    return 0;
}

int session_check_step(const session_t *s, const session_step_fields_t *f, char *err,
                       size_t errlen)
{
    int rc = session_check_kind(s->model->info, f->n_obs, f->n_image, "the Step", err, errlen);
    if (rc)
        return rc;
    if (s->img_bytes == 0 &&
        (rc = session_check_observation(s->model->info, f->obs, err, errlen)))
        return rc;
    if (!f->reset && !(fabsf(f->reward) <= SESSION_MAX_REWARD)) {
        errbuf_set(err, errlen, "reward is %g; it must be finite and within +- %g",
                   (double)f->reward, SESSION_MAX_REWARD);
        return -EDOM;
    }
    if (f->deadline_us > SESSION_MAX_DEADLINE_US) {
        errbuf_set(err, errlen, "deadline_us is %u; at most %u", f->deadline_us,
                   SESSION_MAX_DEADLINE_US);
        return -EDOM;
    }
    if (!isfinite(f->noise) || f->noise < 0 || f->noise > 10) {
        errbuf_set(err, errlen, "exploration_noise is %g; expected 0 .. 10", (double)f->noise);
        return -EDOM;
    }
    return check_delay(s, f, err, errlen);
}

static bool all_finite(const float *x, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

/* One filtering step into slot (obs for a vector session, image for a pixel one). 0, or
 * -EINVAL when librssm refused (sizes and kinds were checked at Hello and on load, so it
 * should not). */
static int observe(session_t *s, const registry_model_t *m, registry_slot_t *slot,
                   const float *obs, const uint8_t *image)
{
    rssm_observe_out_t o = {slot->h, slot->prior_mean, slot->prior_std, slot->post_mean,
                            slot->post_std};
    int rc = s->img_bytes
                 ? rssm_observe_image(m->model, s->h, s->z, s->a_prev, image, &o, slot->ws)
                 : rssm_observe(m->model, s->h, s->z, s->a_prev, obs, &o, slot->ws);
    return rc ? -EINVAL : 0;
}

static void take_posterior(session_t *s, const registry_slot_t *slot, bool sample)
{
    memcpy(s->h, slot->h, sizeof(float) * (size_t)s->deter);
    for (int i = 0; i < s->stoch; i++)
        s->z[i] = slot->post_mean[i] + (sample ? slot->post_std[i] * normal(&s->rng) : 0.0f);
}

static void history_push(session_t *s, const float *obs, const uint8_t *image, const float *act)
{
    int cap = s->opts.history;
    if (s->obs_dim) /* a pixel session has no observation vector (obs may be NULL) */
        memcpy(s->hist_obs + (size_t)s->hist_next * s->obs_dim, obs,
               sizeof(float) * (size_t)s->obs_dim);
    if (s->img_bytes)
        memcpy(s->hist_img + (size_t)s->hist_next * s->img_bytes, image, s->img_bytes);
    memcpy(s->hist_act + (size_t)s->hist_next * s->act_dim, act,
           sizeof(float) * (size_t)s->act_dim);
    s->hist_next = (s->hist_next + 1) % cap;
    if (s->hist_len < cap)
        s->hist_len++;
}

void session_resume_push(session_t *s, const float *obs, const uint8_t *image, const float *act)
{
    history_push(s, obs, image, act);
    s->started = true; /* the next step continues the episode... */
    s->resume = true;  /* ...once the history is replayed into the belief */
    s->episodes = s->episodes ? s->episodes : 1;
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
        if (observe(s, model, slot, s->hist_obs + (size_t)i * s->obs_dim,
                    s->hist_img + (size_t)i * s->img_bytes))
            return -EINVAL;
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
    const float *lo = info->action_low, *hi = info->action_high;
    const int A = s->act_dim;
    bool warm = s->plan.valid && s->started && !s->in.reset;
    for (int t = 0; t < s->plan.horizon; t++)
        for (int d = 0; d < A; d++)
            out->plan[t * A + d] =
                warm ? cem_plan_state_at(&s->plan, lo, hi, t, d) : 0.5f * (lo[d] + hi[d]);
    memcpy(out->action, out->plan, sizeof(float) * (size_t)A);
    out->predicted_return = s->last_predicted_return;
    out->iterations = out->candidates = 0;
    out->deadline_cut = out->fallback = out->shed = true;
    out->overrun = false;
    out->plan_s = 0;
}

/* The actions applied over the next d control steps into in->applied [d, A]: the
 * client's, else those returned for them, the newest holding where none was returned. */
static void delay_actions(session_t *s)
{
    session_step_in_t *in = &s->in;
    const size_t row = sizeof(float) * (size_t)s->act_dim;
    if (in->has_applied)
        return;
    const float *last = s->a_prev;
    for (int k = 0; k < in->delay_steps; k++) {
        if (k < s->ahead_len)
            last = s->ahead + (size_t)k * s->act_dim;
        memcpy(in->applied + (size_t)k * s->act_dim, last, row);
    }
}

void session_predict(session_t *s, const registry_model_t *m, registry_slot_t *slot,
                     const float **h, const float **z)
{
    const float *hi = s->h, *zi = s->z, *acts = s->in.applied;
    delay_actions(s);
    for (int k = 0; k < s->in.delay_steps; k++) {
        float *ho = s->pred + (size_t)(k & 1) * (s->deter + s->stoch), *zo = ho + s->deter;
        rssm_imagine_batch(m->model, 1, hi, zi, acts + (size_t)k * s->act_dim, ho, zo,
                           slot->prior_std, slot->ws);
        hi = ho;
        zi = zo;
    }
    *h = hi;
    *z = zi;
}

/* After the step: the action applied from this observation on becomes a_prev (and goes
 * into the history), and the returned one joins the queue of actions to come. */
static void advance_actions(session_t *s, const float *action)
{
    const session_step_in_t *in = &s->in;
    const size_t row = sizeof(float) * (size_t)s->act_dim;
    const int d = in->delay_steps;
    const float *now = d > 0 ? in->applied : action;
    memcpy(s->a_prev, now, row);
    history_push(s, in->obs, in->image, now);
    if (d > 0) {
        memcpy(s->ahead, in->applied + (size_t)s->act_dim, row * (size_t)(d - 1));
        memcpy(s->ahead + (size_t)(d - 1) * s->act_dim, action, row);
    }
    s->ahead_len = d;
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
    if (s->resume || model != s->model || s->deter != info->dims.deter ||
        s->stoch != info->dims.stoch) {
        if ((out->rc = session_resync(s, model, slot)))
            goto fail;
        out->resynced = true;
        s->resume = false;
    }

    if ((out->rc = observe(s, model, slot, in->obs, in->image))) {
        session_reset(s);
        goto fail;
    }
    out->kl_nats = rssm_kl_diag(slot->post_mean, slot->post_std, slot->prior_mean,
                                slot->prior_std, s->stoch);
    if (s->started) {
        /* What the prior expected a_prev to earn, before seeing the new observation. */
        rssm_reward_batch(model->model, 1, slot->h, slot->prior_mean, slot->reward, slot->ws);
        out->reward_error = (double)in->reward - (double)slot->reward[0];
    }
    take_posterior(s, slot, s->opts.posterior_sample);
    if (!all_finite(s->h, s->deter + s->stoch)) {
        /* An input the model cannot digest: start over rather than carry NaN forever. */
        session_reset(s);
        out->rc = -EDOM;
        goto fail;
    }
    const float *plan_h = s->h, *plan_z = s->z;
    if (in->answered)
        delay_actions(s); /* for the bookkeeping only: no plan */
    else
        session_predict(s, model, slot, &plan_h, &plan_z);
    double t1 = mono_now();
    out->belief_s = t1 - t0;

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
        int rc = cem_plan(slot->planner, plan_h, plan_z, &s->plan, splitmix64(&s->rng),
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
        cem_plan_state_rows(&s->plan, info->action_low, info->action_high, out->plan);
    }
    if (in->noise > 0 && !in->answered) {
        for (int i = 0; i < s->act_dim; i++)
            action[i] += in->noise * 0.5f * (info->action_high[i] - info->action_low[i]) *
                         normal(&s->rng);
    }
    clip_action(action, info, s->act_dim);
    memcpy(out->plan, action, sizeof(float) * (size_t)s->act_dim); /* row 0 is the action */

    advance_actions(s, action);
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
