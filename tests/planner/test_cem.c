/*
 * test_cem.c: libplanner's CEM against a model with a known optimum, and its contracts.
 *
 * Usage: test_cem LQ.safetensors RANDOM.safetensors
 *   LQ      written by make_lq_model.py: p' = tanh(alpha p + beta a), r = -|p - target|,
 *           v = -scale |p - value_target|; the constants come from its lq_* metadata.
 *   RANDOM  a random RSSM (make_model.py) with asymmetric action bounds and a value head.
 * Covers: convergence to the optimum (plain CEM, MPPI, iCEM options), actions within
 * bounds, determinism per seed and thread count, deadline (cut, fallback, overrun counted,
 * never asserted by wall time), warm-start shift, terminal value, bad configuration and
 * input, and zero allocation per plan (tests/common/alloc_count.h).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "mono.h"
#include "planner.h"

static const char *lq_path, *rand_path;
static rssm_model_t *lq, *rnd;
static double alpha, beta, target, value_target;

static double meta_num(const rssm_model_t *m, const char *key)
{
    const char *v = rssm_metadata(m, key);
    assert_non_null(v);
    return strtod(v, NULL);
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    if (rssm_load(lq_path, &lq, err, sizeof err) ||
        rssm_load(rand_path, &rnd, err, sizeof err)) {
        fprintf(stderr, "test_cem: %s\n", err);
        return -1;
    }
    alpha = meta_num(lq, "lq_alpha");
    beta = meta_num(lq, "lq_beta");
    target = meta_num(lq, "lq_target");
    value_target = meta_num(lq, "lq_value_target");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rssm_destroy(lq);
    rssm_destroy(rnd);
    return 0;
}

/* PlaNet's plain CEM, smaller than the defaults. */
static cem_config_t small_config(int threads)
{
    cem_config_t c;
    cem_config_default(&c);
    c.candidates = 300;
    c.top_k = 30;
    c.iterations = 8;
    c.horizon = 6;
    c.threads = threads;
    c.population_decay = 1.0;
    c.keep_elites = 0.0;
    c.noise_beta = 0.0;
    return c;
}

static cem_planner_t *make(const rssm_model_t *m, const cem_config_t *c)
{
    cem_planner_t *p = NULL;
    char err[256] = "";
    int rc = cem_create(m, c, &p, err, sizeof err);
    if (rc)
        fprintf(stderr, "cem_create: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(p);
    return p;
}

static double in_ms(double ms)
{
    return mono_now() + ms * 1e-3;
}

/* The LQ belief: p = h[0] = p0, everything else 0. */
static void lq_belief(float *h, float *z, float p0)
{
    int D = rssm_info(lq)->dims.deter, S = rssm_info(lq)->dims.stoch;
    memset(h, 0, sizeof(float) * D);
    memset(z, 0, sizeof(float) * S);
    h[0] = p0;
}

/* Return of an action sequence under the exact LQ dynamics (the optimum is 0). */
static double lq_return(const float *a, int H, double p0, double *p_end)
{
    double p = p0, r = 0.0;
    for (int t = 0; t < H; t++) {
        p = tanh(alpha * p + beta * a[t]);
        r -= fabs(p - target);
    }
    if (p_end)
        *p_end = p;
    return r;
}

/* Plans from p0 and checks the plan against the analytic optimum. */
static void check_converges(const cem_config_t *c, double tol_a0, double tol_ret)
{
    cem_planner_t *p = make(lq, c);
    cem_plan_state_t st;
    assert_int_equal(cem_plan_state_init(&st, c->horizon, 1), 0);
    float h[64], z[64], action[1];
    const float p0 = -0.5f;
    lq_belief(h, z, p0);
    cem_result_t res = {.action = action};
    assert_int_equal(cem_plan(p, h, z, &st, 42, INFINITY, &res), 0);
    double a0 = (atanh(target) - alpha * p0) / beta;
    double opt_ret = lq_return(st.mean, c->horizon, p0, NULL);
    if (fabs(action[0] - a0) > tol_a0 || opt_ret < -tol_ret)
        fprintf(stderr, "a0 %.4f (optimum %.4f), return of the mean %.4f, predicted %.4f\n",
                action[0], a0, opt_ret, res.predicted_return);
    assert_true(fabs(action[0] - a0) <= tol_a0);
    assert_true(opt_ret >= -tol_ret);
    assert_int_equal(res.iterations, c->iterations);
    assert_false(res.fallback);
    assert_false(res.deadline_cut);
    /* the planner's own estimate agrees with the exact model */
    assert_true(res.predicted_return <= 1e-4f && res.predicted_return >= -tol_ret);
    cem_plan_state_free(&st);
    cem_destroy(p);
}

static void test_converges_plain(void **state)
{
    (void)state;
    cem_config_t c = small_config(1);
    check_converges(&c, 0.05, 0.1);
    c.threads = 2;
    c.sample_latent = false;
    check_converges(&c, 0.05, 0.1);
}

static void test_converges_mppi(void **state)
{
    (void)state;
    cem_config_t c = small_config(2);
    c.mppi = true;
    c.mppi_temperature = 10.0; /* returns span a few units here; hotter collapses the std */
    c.iterations = 10;
    check_converges(&c, 0.05, 0.1);
}

static void test_converges_icem(void **state)
{
    (void)state;
    cem_config_t c = small_config(2);
    c.population_decay = 0.7;
    c.keep_elites = 0.3;
    c.iterations = 10;
    check_converges(&c, 0.02, 0.05);
    /* The optimum here steps from 0.8 to 0.3 after the first action, which time-correlated
     * noise samples poorly: it converges, more slowly. These are cem_config_icem()'s. */
    cem_config_icem(&c);
    assert_true(c.noise_beta > 0.0 && c.keep_elites > 0.0 && c.population_decay < 1.0);
    c.iterations = 15;
    check_converges(&c, 0.08, 0.25);
}

static void test_bounds(void **state)
{
    (void)state;
    const rssm_info_t *info = rssm_info(rnd);
    const int A = info->dims.action, D = info->dims.deter, S = info->dims.stoch;
    cem_config_t c = small_config(2);
    c.init_std = 10.0f; /* most samples land outside the box and are clipped */
    cem_planner_t *p = make(rnd, &c);
    cem_plan_state_t st;
    assert_int_equal(cem_plan_state_init(&st, c.horizon, A), 0);
    float h[256], z[256], action[16];
    for (int i = 0; i < D; i++)
        h[i] = 0.3f * sinf((float)i);
    for (int i = 0; i < S; i++)
        z[i] = cosf((float)i);
    for (int step = 0; step < 4; step++) {
        cem_result_t res = {.action = action};
        assert_int_equal(cem_plan(p, h, z, &st, (uint64_t)step, INFINITY, &res), 0);
        for (int d = 0; d < A; d++) {
            assert_true(action[d] >= info->action_low[d] && action[d] <= info->action_high[d]);
            for (int t = 0; t < c.horizon; t++) {
                float v = st.mean[t * A + d];
                assert_true(v >= info->action_low[d] && v <= info->action_high[d]);
            }
        }
        cem_plan_state_shift(&st);
    }
    cem_plan_state_free(&st);
    cem_destroy(p);
}

/* Same seed and thread count: bit-identical; another seed: a different plan. */
static void test_determinism(void **state)
{
    (void)state;
    const int A = rssm_info(rnd)->dims.action;
    for (int threads = 1; threads <= 3; threads++) {
        cem_config_t c = small_config(threads);
        c.keep_elites = threads == 3 ? 0.2 : 0.0;
        cem_planner_t *p = make(rnd, &c);
        float h[256] = {0.1f, -0.2f}, z[256] = {0.5f};
        float first[16 * 12], again[16 * 12], other[16 * 12], action[16];
        uint64_t seeds[3] = {7, 7, 8};
        float *out[3] = {first, again, other};
        for (int k = 0; k < 3; k++) {
            cem_plan_state_t st;
            assert_int_equal(cem_plan_state_init(&st, c.horizon, A), 0);
            cem_result_t res = {.action = action};
            assert_int_equal(cem_plan(p, h, z, &st, seeds[k], INFINITY, &res), 0);
            memcpy(out[k], st.mean, sizeof(float) * (size_t)c.horizon * A);
            cem_plan_state_free(&st);
        }
        size_t bytes = sizeof(float) * (size_t)c.horizon * A;
        assert_memory_equal(first, again, bytes);
        assert_memory_not_equal(first, other, bytes);
        cem_destroy(p);
    }
}

/* A deadline already (nearly) passed: no iteration fits; the warm start's first action
 * comes back, marked, and the caller's state is untouched. */
static void test_fallback(void **state)
{
    (void)state;
    cem_config_t c = small_config(2);
    cem_planner_t *p = make(lq, &c);
    cem_plan_state_t st;
    assert_int_equal(cem_plan_state_init(&st, c.horizon, 1), 0);
    float h[64], z[64], action[1];
    lq_belief(h, z, 0.0f);
    double dl = in_ms(0.0);
    cem_result_t res = {.action = action};
    /* no warm start: the middle of the bounds */
    assert_int_equal(cem_plan(p, h, z, &st, 1, dl, &res), 0);
    assert_true(res.fallback);
    assert_true(res.deadline_cut);
    assert_int_equal(res.iterations, 0);
    assert_float_equal(action[0], 0.0f, 0.0f);
    assert_false(st.valid);
    /* with a warm start: its first action, clipped to the bounds */
    for (int t = 0; t < c.horizon; t++)
        st.mean[t] = 0.25f + 0.1f * t;
    st.valid = true;
    dl = in_ms(-5.0);
    assert_int_equal(cem_plan(p, h, z, &st, 1, dl, &res), 0);
    assert_true(res.fallback);
    assert_float_equal(action[0], 0.25f, 0.0f);
    assert_float_equal(st.mean[1], 0.35f, 0.0f);
    st.mean[0] = 7.0f; /* out of the bounds */
    assert_int_equal(cem_plan(p, h, z, &st, 1, dl, &res), 0);
    assert_float_equal(action[0], 1.0f, 0.0f);
    assert_true(res.overrun); /* returned after a deadline in the past */
    cem_stats_t stats;
    cem_get_stats(p, &stats);
    assert_int_equal(stats.fallbacks, 3);
    assert_int_equal(stats.plans, 3);
    assert_true(stats.overruns >= 2);
    cem_plan_state_free(&st);
    cem_destroy(p);
}

/* Far more iterations than fit in 30 ms: the deadline must cut the plan, with a usable
 * plan; whether it returned late is reported and counted, never asserted. */
static void test_deadline(void **state)
{
    (void)state;
    cem_config_t c = small_config(2);
    c.candidates = 1000;
    c.top_k = 100;
    c.iterations = 10000;
    c.horizon = 12;
    cem_planner_t *p = make(rnd, &c);
    const int A = rssm_info(rnd)->dims.action;
    cem_plan_state_t st;
    assert_int_equal(cem_plan_state_init(&st, c.horizon, A), 0);
    float h[256] = {0}, z[256] = {0}, action[16];
    int overruns = 0, plans = 6;
    for (int k = 0; k < plans; k++) {
        double dl = in_ms(30.0);
        cem_result_t res = {.action = action};
        assert_int_equal(cem_plan(p, h, z, &st, (uint64_t)k, dl, &res), 0);
        bool before = mono_now() <= dl;
        if (before)
            assert_false(res.overrun); /* the flag never lies in this direction */
        assert_true(res.deadline_cut);
        assert_true(res.iterations < c.iterations);
        assert_true(res.iteration_s > 0.0);
        overruns += res.overrun;
        cem_plan_state_shift(&st);
    }
    cem_stats_t stats;
    cem_get_stats(p, &stats);
    assert_int_equal(stats.plans, (uint64_t)plans);
    assert_int_equal(stats.overruns, (uint64_t)overruns);
    assert_int_equal(stats.deadline_cuts, (uint64_t)plans);
    if (overruns)
        fprintf(stderr, "note: %d of %d plans overran (max %.3f ms)\n", overruns, plans,
                stats.max_overrun_s * 1e3);
    cem_plan_state_free(&st);
    cem_destroy(p);
}

static void test_warm_start_shift(void **state)
{
    (void)state;
    cem_plan_state_t st;
    assert_int_equal(cem_plan_state_init(&st, 4, 2), 0);
    assert_false(st.valid);
    for (int i = 0; i < 8; i++)
        st.mean[i] = (float)i;
    cem_plan_state_shift(&st); /* not valid: nothing to shift */
    assert_float_equal(st.mean[0], 0.0f, 0.0f);
    st.valid = true;
    cem_plan_state_shift(&st);
    const float want[8] = {2, 3, 4, 5, 6, 7, 0, 0};
    assert_memory_equal(st.mean, want, sizeof want);
    assert_int_equal(st.stale_tail, 1);
    assert_true(st.valid);
    cem_plan_state_shift(&st);
    cem_plan_state_shift(&st);
    cem_plan_state_shift(&st);
    assert_false(st.valid); /* everything was shifted out */
    cem_plan_state_reset(&st);
    assert_int_equal(st.stale_tail, 0);
    cem_plan_state_free(&st);
    cem_plan_state_free(&st); /* idempotent */
    assert_int_equal(cem_plan_state_init(&st, 0, 1), -EINVAL);

    /* the planner starts from the shifted mean: with a tiny init_std and one iteration the
     * plan is the warm start, and the stale last step starts from the middle (0) */
    cem_config_t c = small_config(1);
    c.iterations = 1;
    c.init_std = 1e-4f;
    cem_planner_t *p = make(lq, &c);
    assert_int_equal(cem_plan_state_init(&st, c.horizon, 1), 0);
    for (int t = 0; t < c.horizon; t++)
        st.mean[t] = -0.8f + 0.1f * t;
    st.valid = true;
    cem_plan_state_shift(&st);
    st.mean[c.horizon - 1] = 0.9f; /* ignored: the step is stale */
    float h[64], z[64], action[1];
    lq_belief(h, z, 0.0f);
    cem_result_t res = {.action = action};
    assert_int_equal(cem_plan(p, h, z, &st, 3, INFINITY, &res), 0);
    assert_float_equal(action[0], -0.7f, 1e-3f);
    for (int t = 0; t < c.horizon - 1; t++)
        assert_float_equal(st.mean[t], -0.7f + 0.1f * t, 1e-3f);
    assert_float_equal(st.mean[c.horizon - 1], 0.0f, 1e-3f);
    assert_int_equal(st.stale_tail, 0);
    cem_plan_state_free(&st);
    cem_destroy(p);
}

/* With a heavy terminal value pulling towards value_target, the planned final state moves
 * there; without it, it stays at the reward's target. */
static void test_terminal_value(void **state)
{
    (void)state;
    cem_config_t c = small_config(2);
    c.iterations = 10;
    double p_end[2];
    for (int v = 0; v < 2; v++) {
        c.use_value = v == 1;
        cem_planner_t *p = make(lq, &c);
        cem_plan_state_t st;
        assert_int_equal(cem_plan_state_init(&st, c.horizon, 1), 0);
        float h[64], z[64], action[1];
        lq_belief(h, z, 0.0f);
        cem_result_t res = {.action = action};
        assert_int_equal(cem_plan(p, h, z, &st, 5, INFINITY, &res), 0);
        lq_return(st.mean, c.horizon, 0.0, &p_end[v]);
        cem_plan_state_free(&st);
        cem_destroy(p);
    }
    assert_true(fabs(p_end[0] - target) < 0.1);
    assert_true(fabs(p_end[1] - value_target) < 0.1);
}

static void test_bad_config(void **state)
{
    (void)state;
    char err[256];
    cem_config_t c;
    cem_config_default(&c);
    assert_int_equal(cem_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(c.candidates, 1000);
    assert_int_equal(c.top_k, 100);
    assert_int_equal(c.iterations, 10);
    assert_int_equal(c.horizon, 12);
    assert_true(c.threads >= 1);
    assert_true(c.sample_latent && !c.mppi && !c.use_value);
    assert_true(c.population_decay == 1.0 && c.keep_elites == 0.0 && c.noise_beta == 0.0);
    c.top_k = 2000;
    assert_int_equal(cem_config_validate(&c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "top_k"));
    cem_config_default(&c);
    c.population_decay = 0.0;
    assert_int_equal(cem_config_validate(&c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "population_decay"));
    cem_config_default(&c);
    c.margin_s = NAN;
    assert_int_equal(cem_config_validate(&c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "margin_s"));
    cem_config_default(&c);
    c.horizon = 0;
    cem_planner_t *p = (cem_planner_t *)&c;
    assert_int_equal(cem_create(lq, &c, &p, err, sizeof err), -EINVAL);
    assert_null(p);
    assert_non_null(strstr(err, "horizon"));
    cem_config_default(&c);
    c.use_value = true;
    assert_int_equal(cem_create(rnd, &c, &p, err, sizeof err),
                     rssm_info(rnd)->has_value ? 0 : -EINVAL);
    cem_destroy(p);
    cem_destroy(NULL);
}

static void test_bad_input(void **state)
{
    (void)state;
    cem_config_t c = small_config(1);
    cem_planner_t *p = make(lq, &c);
    cem_plan_state_t st, wrong;
    assert_int_equal(cem_plan_state_init(&st, c.horizon, 1), 0);
    assert_int_equal(cem_plan_state_init(&wrong, c.horizon + 1, 1), 0);
    float h[64], z[64], action[1];
    lq_belief(h, z, 0.0f);
    cem_result_t res = {.action = action};
    assert_int_equal(cem_plan(p, h, z, &wrong, 1, INFINITY, &res), -EINVAL);
    h[3] = NAN;
    assert_int_equal(cem_plan(p, h, z, &st, 1, INFINITY, &res), -EDOM);
    h[3] = 0.0f;
    assert_int_equal(cem_plan(p, h, z, &st, 1, NAN, &res), -EINVAL);
    cem_result_t no_action = {0};
    assert_int_equal(cem_plan(p, h, z, &st, 1, INFINITY, &no_action), -EINVAL);
    assert_int_equal(cem_plan(p, h, z, &st, 1, INFINITY, &res), 0);
    cem_plan_state_free(&wrong);
    cem_plan_state_free(&st);
    cem_destroy(p);
}

/* Planning allocates nothing: with and without deadline, every option, several threads. */
static void test_no_allocation(void **state)
{
    (void)state;
    const int A = rssm_info(rnd)->dims.action;
    for (int variant = 0; variant < 3; variant++) {
        cem_config_t c = small_config(variant + 1);
        if (variant == 1) {
            c.mppi = true;
        } else if (variant == 2) {
            c.population_decay = 0.8;
            c.keep_elites = 0.3;
            c.noise_beta = 2.0;
            c.sample_latent = false;
        }
        cem_planner_t *p = make(rnd, &c);
        cem_plan_state_t st;
        assert_int_equal(cem_plan_state_init(&st, c.horizon, A), 0);
        float h[256] = {0}, z[256] = {0}, action[16];
        cem_result_t res = {.action = action};
        alloc_count_start();
        for (int k = 0; k < 4; k++) {
            double dl = in_ms(k == 3 ? 0.0 : 50.0);
            assert_int_equal(cem_plan(p, h, z, &st, (uint64_t)k, k ? dl : INFINITY, &res), 0);
            cem_plan_state_shift(&st);
        }
        assert_int_equal(alloc_count_stop(), 0);
        cem_plan_state_free(&st);
        cem_destroy(p);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s LQ.safetensors RANDOM.safetensors\n", argv[0]);
        return 2;
    }
    lq_path = argv[1];
    rand_path = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),       cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_warm_start_shift), cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_converges_plain),  cmocka_unit_test(test_converges_mppi),
        cmocka_unit_test(test_converges_icem),   cmocka_unit_test(test_terminal_value),
        cmocka_unit_test(test_bounds),           cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_deadline),         cmocka_unit_test(test_no_allocation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
