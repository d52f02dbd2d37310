/*
 * test_session.c: the model registry and the session's control step on real model files
 * (written at build time by model/train/make_model.py):
 *   argv[1] A: obs 3, action 1 in [-2, 2], deter 32, stoch 8
 *   argv[2] B: same sizes for obs/action, deter 16, stoch 4 (a "retrained" model)
 *   argv[3] C: obs 4 (must be refused as a replacement for A)
 *   argv[4] P (optional): an image model of 48x48x3 images, action 1, deter 32, stoch 8
 * Covers load/validate/refuse, versions and reference counting across a swap, step input
 * validation, the step itself (bounds, statistics, KL, reward error), reset, shedding a
 * step whose deadline passed, belief re-sync by history replay (exact when the history
 * covers the episode), delay compensation (checks, the prediction through applied actions
 * against the naive reference, the queue of returned actions), that a steady-state
 * step allocates nothing, and pixel sessions (image steps, their checks and replay).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc_count.h"
#include "registry.h"
#include "mono.h"
#include "rssm_naive.h"
#include "session.h"

static const char *path_a, *path_b, *path_c, *path_p; /* path_p: optional */

static int wakes;
static void wake(void *ctx)
{
    (void)ctx;
    wakes++;
}

static cem_config_t small_cfg(void)
{
    cem_config_t c;
    cem_config_default(&c);
    c.candidates = 64;
    c.top_k = 8;
    c.iterations = 3;
    c.horizon = 5;
    return c;
}

static registry_model_t *load(const char *path)
{
    cem_config_t cfg = small_cfg();
    registry_model_t *m;
    char err[512];
    int rc = registry_model_load(&(registry_source_t){path, NULL, 0}, &cfg, 2, NULL, &m, err,
                                 sizeof err);
    if (rc)
        fail_msg("load %s: %s", path, err);
    return m;
}

static void far_deadline(session_t *s)
{
    s->in.t_read = mono_now();
    s->in.deadline = s->in.t_read + 60.0; /* iterations, not time, end these plans */
}

static void set_obs(session_t *s, int t)
{
    for (int i = 0; i < s->obs_dim; i++)
        s->in.obs[i] = (float)sin(0.3 * t + i);
}

static void test_registry_load_and_refuse(void **state)
{
    (void)state;
    registry_t r;
    wakes = 0;
    assert_int_equal(registry_init(&r, wake, NULL), 0);
    registry_model_t *a = load(path_a);
    assert_int_equal(a->info->dims.obs, 3);
    assert_int_equal(a->nslots, 2);
    assert_true(a->load_s > 0);
    registry_swap(&r, a);
    assert_int_equal(a->version, 1);
    assert_ptr_equal(r.current, a);

    cem_config_t cfg = small_cfg();
    registry_model_t *m;
    char err[512];
    assert_int_not_equal(registry_model_load(&(registry_source_t){path_c, NULL, 0}, &cfg, 1, a,
                                             &m, err, sizeof err),
                         0);
    assert_null(m);
    assert_non_null(strstr(err, "4/1"));
    assert_non_null(strstr(err, "3/1"));
    assert_int_not_equal(
        registry_model_load(&(registry_source_t){"/nonexistent.safetensors", NULL, 0}, &cfg, 1,
                            a, &m, err, sizeof err),
        0);
    assert_non_null(strstr(err, "/nonexistent.safetensors"));

    /* A corrupt copy of A: truncated in the middle of its tensors. */
    char bad[] = "/tmp/test_session_bad_XXXXXX";
    int fd = mkstemp(bad);
    FILE *f = fopen(path_a, "rb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n > 1000);
    assert_int_equal(write(fd, buf, n / 2), (ssize_t)(n / 2));
    close(fd);
    assert_int_not_equal(registry_model_load(&(registry_source_t){bad, NULL, 0}, &cfg, 1, a, &m,
                                             err, sizeof err),
                         0);
    unlink(bad);

    /* Swap in B while a "session" still holds A: A dies only with the last reference. */
    registry_model_t *held = registry_acquire(&r);
    assert_ptr_equal(held, a);
    registry_model_t *b = load(path_b);
    registry_swap(&r, b);
    assert_int_equal(b->version, 2);
    assert_int_equal(registry_dead_count(&r), 0);
    assert_int_equal(wakes, 0);
    registry_release(held);
    assert_int_equal(registry_dead_count(&r), 1);
    assert_int_equal(wakes, 1);
    assert_int_equal(registry_reap(&r), 1);
    registry_destroy(&r); /* releases B */
}

/* session_check_step with the fields of a Step without delay. */
static int check(const session_t *s, const float *obs, size_t n, float reward, bool reset,
                 float noise, uint32_t deadline_us, char *err, size_t errlen)
{
    session_step_fields_t f = {.obs = obs,
                               .n_obs = n,
                               .reward = reward,
                               .reset = reset,
                               .noise = noise,
                               .deadline_us = deadline_us};
    return session_check_step(s, &f, err, errlen);
}

static void test_check_step(void **state)
{
    (void)state;
    registry_model_t *a = load(path_a);
    session_opts_t o = {.horizon = 5, .history = 8, .seed = 1};
    session_t *s;
    char err[256];
    assert_int_equal(session_create(7, "pytest", a, &o, &s), 0);
    float obs[4] = {0, 0, 0, 0};
    assert_int_equal(check(s, obs, 3, 0, false, 0, 0, err, sizeof err), 0);
    assert_int_equal(check(s, obs, 4, 0, false, 0, 0, err, sizeof err), -EMSGSIZE);
    assert_non_null(strstr(err, "4 values"));
    assert_non_null(strstr(err, "expects 3"));
    obs[1] = NAN;
    assert_int_equal(check(s, obs, 3, 0, false, 0, 0, err, sizeof err), -EDOM);
    assert_non_null(strstr(err, "observation[1]"));
    obs[1] = INFINITY;
    assert_int_equal(check(s, obs, 3, 0, false, 0, 0, err, sizeof err), -EDOM);
    obs[1] = 0;
    assert_int_equal(check(s, obs, 3, NAN, false, 0, 0, err, sizeof err), -EDOM);
    assert_int_equal(check(s, obs, 3, NAN, true, 0, 0, err, sizeof err), 0);
    assert_int_equal(check(s, obs, 3, 0, false, -1, 0, err, sizeof err), -EDOM);
    assert_int_equal(check(s, obs, 3, 0, false, 0, 60000001u, err, sizeof err), -EDOM);
    assert_non_null(strstr(err, "deadline_us"));
    assert_int_equal(check(s, obs, 3, 0, false, 0, 60000000u, err, sizeof err), 0);
    /* Finite but absurd: beyond SESSION_MAX_OBS_STDS normalisation stds, or the reward cap. */
    obs[2] = 3.4e38f;
    assert_int_equal(check(s, obs, 3, 0, false, 0, 0, err, sizeof err), -EDOM);
    assert_non_null(strstr(err, "observation[2]"));
    assert_non_null(strstr(err, "sane range"));
    obs[2] = a->info->obs_mean[2] + 0.5f * (float)SESSION_MAX_OBS_STDS * a->info->obs_std[2];
    assert_int_equal(check(s, obs, 3, 0, false, 0, 0, err, sizeof err), 0);
    obs[2] = 0;
    assert_int_equal(check(s, obs, 3, 2e6f, false, 0, 0, err, sizeof err), -EDOM);
    assert_non_null(strstr(err, "reward"));
    assert_int_equal(check(s, obs, 3, -1e6f, false, 0, 0, err, sizeof err), 0);
    session_destroy(s);
    registry_model_free(a); /* never published: refs back to 1 after the session */
}

static void test_steps_reset_and_shed(void **state)
{
    (void)state;
    registry_model_t *a = load(path_a);
    session_opts_t o = {.horizon = 5, .history = 8, .seed = 1};
    session_t *s;
    assert_int_equal(session_create(1, "t", a, &o, &s), 0);
    for (int t = 0; t < 5; t++) {
        set_obs(s, t);
        s->in.reset = t == 0;
        s->in.reward = 0.5f;
        s->in.noise = 0;
        far_deadline(s);
        session_step(s, a, &a->slots[t % 2]);
        session_step_out_t *out = &s->out;
        assert_int_equal(out->rc, 0);
        assert_true(out->action[0] >= -2 && out->action[0] <= 2);
        assert_int_equal(out->iterations, 3);
        assert_int_equal(out->candidates, 3 * 64);
        assert_false(out->fallback);
        assert_false(out->shed);
        assert_true(isfinite(out->kl_nats) && out->kl_nats >= 0);
        /* The first step of an episode has no previous action to judge. */
        assert_true(t == 0 ? isnan(out->reward_error) : isfinite(out->reward_error));
        assert_true(out->belief_s >= 0 && out->plan_s > 0 && out->queue_s >= 0);
    }
    assert_int_equal(s->steps, 5);
    assert_int_equal(s->episodes, 1);
    assert_int_equal(s->hist_len, 5);

    /* Deadline already gone: no plan, the warm start's first action, flagged. */
    set_obs(s, 5);
    s->in.reset = false;
    s->in.t_read = mono_now();
    s->in.deadline = s->in.t_read - 0.001;
    float warm = s->plan.mean[0];
    session_step(s, a, &a->slots[0]);
    assert_true(s->out.shed && s->out.fallback && s->out.deadline_cut);
    assert_int_equal(s->out.iterations, 0);
    assert_true(s->out.action[0] == warm);

    /* Answered by the loop (it waited too long for a worker): session_shed gave the warm
     * start's action, which went out; the worker only moves the belief on with the
     * observation and records that action, without planning. */
    set_obs(s, 6);
    far_deadline(s);
    uint64_t steps = s->steps;
    float expect[1];
    const float before_h0 = s->h[0];
    session_shed(s, a->info);
    expect[0] = s->out.action[0];
    assert_true(expect[0] == s->plan.mean[0]);
    s->in.answered = true;
    session_step(s, a, &a->slots[0]);
    s->in.answered = false;
    assert_int_equal(s->out.rc, 0);
    assert_int_equal(s->steps, steps + 1);
    assert_true(s->a_prev[0] == expect[0]);
    assert_true(s->h[0] != before_h0); /* the observation went into the belief */
    assert_true(s->out.plan_s == 0 && s->out.t_done >= s->out.t_start);

    /* Reset flag: new episode, history restarts. */
    set_obs(s, 0);
    s->in.reset = true;
    far_deadline(s);
    session_step(s, a, &a->slots[0]);
    assert_int_equal(s->episodes, 2);
    assert_int_equal(s->hist_len, 1);
    session_reset(s);
    assert_int_equal(s->hist_len, 0);
    assert_false(s->plan.valid);

    /* A belief gone non-finite (what an input past session_check_step's guard does to a
     * model with extreme weights): the step fails with -EDOM, the belief is reset, and the
     * next step works from a new episode instead of failing forever. */
    set_obs(s, 1);
    s->in.reset = false;
    far_deadline(s);
    session_step(s, a, &a->slots[0]);
    assert_int_equal(s->out.rc, 0);
    s->h[0] = NAN;
    far_deadline(s);
    session_step(s, a, &a->slots[0]);
    assert_int_equal(s->out.rc, -EDOM);
    assert_false(s->started);
    uint64_t episodes = s->episodes;
    set_obs(s, 2);
    far_deadline(s);
    session_step(s, a, &a->slots[0]);
    assert_int_equal(s->out.rc, 0);
    assert_true(isfinite(s->out.action[0]));
    assert_int_equal(s->episodes, episodes + 1);

    /* Exploration noise stays inside the bounds. */
    for (int t = 0; t < 20; t++) {
        set_obs(s, t);
        s->in.reset = false;
        s->in.noise = 5.0f;
        far_deadline(s);
        session_step(s, a, &a->slots[0]);
        assert_true(s->out.action[0] >= -2 && s->out.action[0] <= 2);
    }
    session_destroy(s);
    registry_model_free(a);
}

/* Replaying a history that covers the whole episode reproduces the live belief. */
static void test_resync(void **state)
{
    (void)state;
    registry_t r;
    assert_int_equal(registry_init(&r, NULL, NULL), 0);
    registry_swap(&r, load(path_a));
    registry_model_t *a = r.current;
    session_opts_t o = {.horizon = 5, .history = 16, .seed = 3};
    session_t *s;
    assert_int_equal(session_create(1, "t", a, &o, &s), 0);
    for (int t = 0; t < 10; t++) {
        set_obs(s, t);
        s->in.reset = t == 0;
        far_deadline(s);
        session_step(s, a, &a->slots[0]);
    }
    float h[32], z[8], ap[1];
    memcpy(h, s->h, sizeof h);
    memcpy(z, s->z, sizeof z);
    memcpy(ap, s->a_prev, sizeof ap);
    /* Scramble, then replay through the same model. */
    memset(s->h, 0, sizeof h);
    assert_int_equal(session_resync(s, a, &a->slots[1]), 0);
    for (int i = 0; i < 32; i++)
        assert_float_equal(s->h[i], h[i], 1e-6);
    for (int i = 0; i < 8; i++)
        assert_float_equal(s->z[i], z[i], 1e-6);
    assert_true(s->a_prev[0] == ap[0]);

    /* Into B (smaller latent): the session adopts B's sizes and keeps planning. */
    registry_swap(&r, load(path_b));
    registry_model_t *b = r.current;
    set_obs(s, 10);
    s->in.reset = false;
    far_deadline(s);
    session_step(s, b, &b->slots[0]);
    assert_int_equal(s->out.rc, 0);
    assert_true(s->out.resynced);
    assert_ptr_equal(s->model, b);
    assert_int_equal(s->deter, 16);
    assert_int_equal(s->stoch, 4);
    assert_int_equal(s->out.model_version, 2);
    assert_true(s->out.action[0] >= -2 && s->out.action[0] <= 2);
    /* A is dead now that the session moved on (nobody else held it). */
    assert_int_equal(registry_dead_count(&r), 1);
    session_destroy(s);
    registry_destroy(&r);
}

static void test_delay_checks(void **state)
{
    (void)state;
    registry_model_t *a = load(path_a);
    session_opts_t o = {.horizon = 5, .history = 8, .seed = 1};
    session_t *s;
    char err[256];
    assert_int_equal(session_create(3, "t", a, &o, &s), 0);
    float obs[3] = {0, 0, 0}, applied[6] = {0.5f, -1, 2, -2, 0, 0};
    session_step_fields_t f = {.obs = obs, .n_obs = 3, .delay_steps = 5};
    assert_int_equal(session_check_step(s, &f, err, sizeof err), 0);
    f.delay_steps = 6;
    assert_int_equal(session_check_step(s, &f, err, sizeof err), -EDOM);
    assert_non_null(strstr(err, "horizon, 5"));
    f.delay_steps = 4;
    f.applied = applied;
    f.n_applied = 4;
    assert_int_equal(session_check_step(s, &f, err, sizeof err), 0);
    f.n_applied = 3;
    assert_int_equal(session_check_step(s, &f, err, sizeof err), -EMSGSIZE);
    assert_non_null(strstr(err, "4 x 1 = 4"));
    f.n_applied = 5;
    applied[4] = 2.5f; /* outside [-2, 2] */
    f.delay_steps = 5;
    assert_int_equal(session_check_step(s, &f, err, sizeof err), -EDOM);
    assert_non_null(strstr(err, "applied_actions[4]"));
    applied[4] = NAN;
    assert_int_equal(session_check_step(s, &f, err, sizeof err), -EDOM);
    session_destroy(s);
    registry_model_free(a);
}

/* Relative difference, with an absolute floor for values near 0. */
static void assert_close(const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (fabsf(got[i] - want[i]) > 1e-4f * fmaxf(1.0f, fabsf(want[i])))
            fail_msg("[%d]: %g, reference %g", i, (double)got[i], (double)want[i]);
}

static void delayed_step(session_t *s, registry_model_t *m, int t, int delay)
{
    set_obs(s, t);
    s->in.reset = t == 0;
    s->in.noise = 0;
    s->in.delay_steps = delay;
    s->in.has_applied = false;
    far_deadline(s);
    session_step(s, m, &m->slots[0]);
    assert_int_equal(s->out.rc, 0);
}

static void test_delay_prediction(void **state)
{
    (void)state;
    registry_model_t *a = load(path_a);
    session_opts_t o = {.horizon = 5, .history = 8, .seed = 1};
    session_t *s;
    assert_int_equal(session_create(4, "t", a, &o, &s), 0);
    const int D = s->deter, S = s->stoch;
    delayed_step(s, a, 0, 0);
    delayed_step(s, a, 1, 0);

    /* No delay: the plan starts from the belief itself. */
    const float *h, *z;
    s->in.delay_steps = 0;
    session_predict(s, a, &a->slots[1], &h, &z);
    assert_ptr_equal(h, s->h);
    assert_ptr_equal(z, s->z);

    /* Three steps through the client's actions, against the naive prior step by step. */
    const float acts[3] = {0.5f, -1.5f, 2.0f};
    s->in.delay_steps = 3;
    s->in.has_applied = true;
    memcpy(s->in.applied, acts, sizeof acts);
    session_predict(s, a, &a->slots[1], &h, &z);
    float rh[2][64], rz[2][16], std[16];
    memcpy(rh[0], s->h, sizeof(float) * D);
    memcpy(rz[0], s->z, sizeof(float) * S);
    for (int k = 0; k < 3; k++)
        naive_imagine(a->model, rh[k & 1], rz[k & 1], &acts[k], rh[(k + 1) & 1],
                      rz[(k + 1) & 1], std);
    assert_close(h, rh[1], D);
    assert_close(z, rz[1], S);
    s->in.has_applied = false;
    session_destroy(s);
    registry_model_free(a);
}

/* The returned actions queue up for the steps they are applied at (delay 2, defaults). */
static void test_delay_queue(void **state)
{
    (void)state;
    registry_model_t *a = load(path_a);
    session_opts_t o = {.horizon = 5, .history = 8, .seed = 1};
    session_t *s;
    assert_int_equal(session_create(5, "t", a, &o, &s), 0);
    float r[4];
    for (int t = 0; t < 4; t++) {
        delayed_step(s, a, t, 2);
        r[t] = s->out.action[0];
        assert_true(s->out.plan[0] == r[t]);
        assert_int_equal(s->ahead_len, 2);
        /* what was applied meanwhile: nothing returned yet for steps 0 and 1 (zeros) */
        float want0 = t >= 2 ? r[t - 2] : 0.0f, want1 = t >= 1 ? r[t - 1] : 0.0f;
        assert_true(s->in.applied[0] == want0 && s->in.applied[1] == want1);
        /* applied since this observation (the belief update's next a_prev), then queued */
        assert_true(s->a_prev[0] == want0);
        assert_true(s->ahead[0] == want1 && s->ahead[1] == r[t]);
        assert_true(s->hist_act[t] == want0);
    }
    /* A shorter delay drops the queued actions the new plan replaces. */
    delayed_step(s, a, 4, 1);
    assert_true(s->in.applied[0] == r[2]);
    assert_int_equal(s->ahead_len, 1);
    assert_true(s->ahead[0] == s->out.action[0]);
    /* Back to 0: the returned action is applied at once. */
    delayed_step(s, a, 5, 0);
    assert_int_equal(s->ahead_len, 0);
    assert_true(s->a_prev[0] == s->out.action[0]);
    session_destroy(s);
    registry_model_free(a);
}

static void test_step_allocates_nothing(void **state)
{
    (void)state;
    registry_model_t *a = load(path_a);
    session_opts_t o = {.horizon = 5, .history = 4, .seed = 1};
    session_t *s;
    assert_int_equal(session_create(1, "t", a, &o, &s), 0);
    for (int t = 0; t < 3; t++) { /* warm up */
        set_obs(s, t);
        s->in.reset = t == 0;
        far_deadline(s);
        session_step(s, a, &a->slots[0]);
    }
    alloc_count_start();
    for (int t = 3; t < 20; t++) {
        set_obs(s, t);
        s->in.reset = t == 10;
        s->in.noise = 0.3f;
        far_deadline(s);
        session_step(s, a, &a->slots[t % 2]);
    }
    assert_int_equal(alloc_count_stop(), 0);
    session_destroy(s);
    registry_model_free(a);
}

/* A pixel session (argv[4], an image model of 48x48x3): no observation floats, image
 * Steps checked for size and kind, the belief updated from images with no allocation
 * per step, the history's images replayed exactly, and a vector model refused as its
 * replacement (and the other way round), naming both shapes. */
static void set_image(session_t *s, int t)
{
    for (size_t i = 0; i < s->img_bytes; i++)
        s->in.image[i] = (uint8_t)(i * 13 + (size_t)t * 29);
}

static void test_pixel_session(void **state)
{
    (void)state;
    if (!path_p)
        skip();
    registry_model_t *p = load(path_p), *a = load(path_a), *m;
    assert_int_equal(registry_image_bytes(p->info), 48 * 48 * 3);
    assert_int_equal(registry_obs_values(p->info), 0);
    assert_int_equal(registry_image_bytes(a->info), 0);
    char err[512];
    cem_config_t cfg = small_cfg();
    assert_int_not_equal(registry_model_load(&(registry_source_t){path_a, NULL, 0}, &cfg, 1, p,
                                             &m, err, sizeof err),
                         0);
    assert_non_null(strstr(err, "observes 3 observation values; the serving model observes "
                                "48x48x3 images (6912 bytes)"));
    assert_int_not_equal(registry_model_load(&(registry_source_t){path_p, NULL, 0}, &cfg, 1, a,
                                             &m, err, sizeof err),
                         0);
    assert_non_null(strstr(err, "observes 48x48x3 images (6912 bytes); the serving model "
                                "observes 3 observation values"));

    session_opts_t o = {.horizon = 5, .history = 16, .seed = 3};
    session_t *s;
    assert_int_equal(session_create(1, "camera", p, &o, &s), 0);
    assert_int_equal(s->obs_dim, 0);
    assert_int_equal(s->img_bytes, 6912);
    static uint8_t img[6912];
    float obs[3] = {0};
    session_step_fields_t f = {.image = img, .n_image = sizeof img};
    assert_int_equal(session_check_step(s, &f, err, sizeof err), 0);
    f.n_image = 100;
    assert_int_equal(session_check_step(s, &f, err, sizeof err), -EMSGSIZE);
    assert_string_equal(err, "the model takes 48x48x3 images (6912 bytes) and no observation "
                             "vector; the Step has an image of 100 bytes and 0 observation "
                             "values");
    f = (session_step_fields_t){.obs = obs, .n_obs = 3};
    assert_int_equal(session_check_step(s, &f, err, sizeof err), -EMSGSIZE);
    f = (session_step_fields_t){.obs = obs, .n_obs = 3, .image = img, .n_image = sizeof img};
    assert_int_equal(session_check_step(s, &f, err, sizeof err), -EMSGSIZE);

    for (int t = 0; t < 12; t++) {
        set_image(s, t);
        s->in.reset = t == 0;
        far_deadline(s);
        if (t == 3)
            alloc_count_start();
        session_step(s, p, &p->slots[t % 2]);
        assert_int_equal(s->out.rc, 0);
        assert_true(s->out.iterations > 0);
        assert_true(s->out.action[0] >= -1 && s->out.action[0] <= 1);
    }
    assert_int_equal(alloc_count_stop(), 0);
    float h[32], z[8];
    memcpy(h, s->h, sizeof h);
    memcpy(z, s->z, sizeof z);
    memset(s->h, 0, sizeof h);
    assert_int_equal(session_resync(s, p, &p->slots[1]), 0);
    for (int i = 0; i < 32; i++)
        assert_float_equal(s->h[i], h[i], 1e-6);
    for (int i = 0; i < 8; i++)
        assert_float_equal(s->z[i], z[i], 1e-6);
    session_destroy(s);

    /* A vector session refuses images. */
    assert_int_equal(session_create(2, "robot", a, &o, &s), 0);
    f = (session_step_fields_t){.obs = obs, .n_obs = 3, .image = img, .n_image = 12};
    assert_int_equal(session_check_step(s, &f, err, sizeof err), -EMSGSIZE);
    assert_string_equal(err, "the model takes 3 observation values and no image; the Step has "
                             "an image of 12 bytes and 3 observation values");
    session_destroy(s);
    registry_model_free(p);
    registry_model_free(a);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_A MODEL_B MODEL_C\n", argv[0]);
        return 2;
    }
    path_a = argv[1];
    path_b = argv[2];
    path_c = argv[3];
    path_p = argc > 4 ? argv[4] : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_load_and_refuse),
        cmocka_unit_test(test_check_step),
        cmocka_unit_test(test_steps_reset_and_shed),
        cmocka_unit_test(test_resync),
        cmocka_unit_test(test_delay_checks),
        cmocka_unit_test(test_delay_prediction),
        cmocka_unit_test(test_delay_queue),
        cmocka_unit_test(test_step_allocates_nothing),
        cmocka_unit_test(test_pixel_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
