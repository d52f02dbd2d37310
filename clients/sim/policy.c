/*
 * policy.c: random, zero and mpcd policies, and exploration noise (see policy.h): added
 * here for random/zero, requested from the daemon (Step.exploration_noise) for mpcd.
 */
#include "policy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/tool.h"

static const char *const names[] = {"random", "zero", "mpcd"};

int sim_policy_parse(const char *text, sim_policy_kind_t *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = (sim_policy_kind_t)i;
            return 0;
        }
    return -1;
}

const char *sim_policy_name(sim_policy_kind_t kind)
{
    return names[kind];
}

int sim_policy_hello(sim_policy_t *p, const char *client_name, int obs_dim, char *why,
                     size_t whylen)
{
    const bool pixels = p->image_side > 0;
    mpc_client_hello_t hello = {.client_name = client_name,
                                .observation_size = pixels ? 0 : (uint32_t)obs_dim,
                                .action_size = (uint32_t)p->act_dim,
                                .seed = p->session_seed};
    int rc = mpc_client_hello_with(p->client, &hello, &p->welcome);
    if (rc < 0)
        return rc;
    const mpc_client_welcome_t *w = &p->welcome;
    const uint32_t n = (uint32_t)p->image_side;
    if (pixels && w->image_channels == 0) {
        snprintf(why, whylen,
                 "model '%s' takes %u observation values and no image; --obs pixels needs a "
                 "pixel model (or use --obs state)",
                 w->model_name, w->observation_size);
        return SIM_POLICY_EBADACTION;
    }
    if (pixels && (w->image_height != n || w->image_width != n || w->image_channels != 3)) {
        snprintf(why, whylen,
                 "model '%s' takes %ux%ux%u images; this run renders %ux%ux3 (--image-size %u)",
                 w->model_name, w->image_height, w->image_width, w->image_channels, n, n, n);
        return SIM_POLICY_EBADACTION;
    }
    if (!pixels && w->image_channels > 0) {
        snprintf(why, whylen,
                 "model '%s' takes %ux%ux%u images; run with --obs pixels --image-size %u",
                 w->model_name, w->image_height, w->image_width, w->image_channels,
                 w->image_height);
        return SIM_POLICY_EBADACTION;
    }
    if (w->action_size != (uint32_t)p->act_dim ||
        (!pixels && w->observation_size != (uint32_t)obs_dim)) {
        snprintf(why, whylen,
                 "model '%s' takes %u observations and %u actions; the task has %d and %d",
                 w->model_name, w->observation_size, w->action_size, obs_dim, p->act_dim);
        return SIM_POLICY_EBADACTION;
    }
    return 0;
}

static int ask_mpcd(sim_policy_t *p, const float *obs, int obs_dim, float prev_reward,
                    bool reset, float *action, sim_decision_t *dec)
{
    const bool pixels = p->image_side > 0;
    mpc_client_step_t step = {.seq = p->seq++,
                              .observation = pixels ? NULL : obs,
                              .observation_size = pixels ? 0 : (size_t)obs_dim,
                              .image = pixels ? p->image : NULL,
                              .image_size =
                                  pixels ? (size_t)p->image_side * p->image_side * 3 : 0,
                              .reward = reset ? 0.0f : prev_reward,
                              .reset = reset,
                              .deadline_us = p->deadline_us,
                              .exploration_noise = (float)p->explore,
                              .delay_steps = p->delay_steps,
                              .applied_actions = p->applied,
                              .applied_actions_size = p->n_applied};
    mpc_client_action_t *a = &p->reply;
    double t0 = tool_now_s();
    int rc = mpc_client_step(p->client, &step, a);
    dec->latency_ms = (tool_now_s() - t0) * 1e3;
    if (rc < 0)
        return rc;
    if (a->action_size != (size_t)p->act_dim)
        return SIM_POLICY_EBADACTION;
    for (size_t i = 0; i < a->plan_rows * a->action_size; i++)
        if (!isfinite(a->plan[i]))
            return SIM_POLICY_EBADACTION;
    for (int i = 0; i < p->act_dim; i++) {
        if (!isfinite(a->action[i]))
            return SIM_POLICY_EBADACTION;
        action[i] = a->action[i];
    }
    dec->iterations = a->iterations;
    dec->predicted_return = a->predicted_return;
    dec->deadline_cut = a->deadline_cut;
    dec->fallback = a->fallback;
    dec->model_version = a->model_version;
    return 0;
}

int sim_policy_act(sim_policy_t *p, const float *obs, int obs_dim, float prev_reward,
                   bool reset, float *action, sim_decision_t *dec)
{
    memset(dec, 0, sizeof(*dec));
    switch (p->kind) {
    case SIM_POLICY_RANDOM:
        for (int i = 0; i < p->act_dim; i++)
            action[i] = (float)sim_rng_uniform(&p->rng, p->low[i], p->high[i]);
        break;
    case SIM_POLICY_ZERO:
        for (int i = 0; i < p->act_dim; i++)
            action[i] = 0.0f;
        break;
    case SIM_POLICY_MPCD: {
        int rc = ask_mpcd(p, obs, obs_dim, prev_reward, reset, action, dec);
        if (rc < 0)
            return rc;
        break;
    }
    }
    /* mpcd adds the exploration noise itself (Step.exploration_noise) so that its belief
     * update sees the action that was really applied; other policies get it here. */
    const bool local_noise = p->explore > 0 && p->kind != SIM_POLICY_MPCD;
    for (int i = 0; i < p->act_dim; i++) {
        double a = action[i];
        if (local_noise)
            a += p->explore * 0.5 * (p->high[i] - p->low[i]) * sim_rng_normal(&p->rng);
        action[i] = (float)(a < p->low[i] ? p->low[i] : a > p->high[i] ? p->high[i] : a);
    }
    return 0;
}
