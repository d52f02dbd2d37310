/*
 * test_policy.c: the random and zero policies and exploration noise (clients/sim/policy.c):
 * actions inside the bounds, noise of the requested size, clipped. The mpcd policy is
 * tested against a fake and the real daemon by test_sim_cli.py and test_sim_mpcd.py.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "policy.h"

static const double low[2] = {-1.0, 0.0}, high[2] = {1.0, 4.0};

static sim_policy_t make(sim_policy_kind_t kind, double explore)
{
    sim_policy_t p = {.kind = kind, .act_dim = 2, .low = low, .high = high, .explore = explore};
    sim_rng_seed(&p.rng, 1, 2);
    return p;
}

static void test_parse(void **state)
{
    (void)state;
    sim_policy_kind_t k;
    assert_int_equal(sim_policy_parse("random", &k), 0);
    assert_int_equal(k, SIM_POLICY_RANDOM);
    assert_int_equal(sim_policy_parse("zero", &k), 0);
    assert_int_equal(k, SIM_POLICY_ZERO);
    assert_int_equal(sim_policy_parse("mpcd", &k), 0);
    assert_int_equal(k, SIM_POLICY_MPCD);
    assert_string_equal(sim_policy_name(k), "mpcd");
    assert_int_equal(sim_policy_parse("Random", &k), -1);
    assert_int_equal(sim_policy_parse("", &k), -1);
}

static void test_random_fills_the_bounds(void **state)
{
    (void)state;
    sim_policy_t p = make(SIM_POLICY_RANDOM, 0);
    float a[2], obs[1] = {0};
    sim_decision_t dec;
    double mean[2] = {0, 0};
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        assert_int_equal(sim_policy_act(&p, obs, 1, 0, i == 0, a, &dec), 0);
        for (int k = 0; k < 2; k++) {
            assert_true(a[k] >= low[k] && a[k] <= high[k]);
            mean[k] += a[k] / n;
        }
    }
    assert_float_equal(mean[0], 0.0, 0.03);
    assert_float_equal(mean[1], 2.0, 0.06);
    assert_true(dec.latency_ms == 0.0 && dec.iterations == 0);
}

static void test_zero_and_noise(void **state)
{
    (void)state;
    sim_policy_t p = make(SIM_POLICY_ZERO, 0);
    float a[2], obs[1] = {0};
    sim_decision_t dec;
    assert_int_equal(sim_policy_act(&p, obs, 1, 0, true, a, &dec), 0);
    assert_true(a[0] == 0.0f && a[1] == 0.0f);

    /* Noise std is scale * half the range: 0.1 for [-1, 1]; around 0 in [0, 4] half the
     * draws fall below the bound and are clipped to it. */
    p = make(SIM_POLICY_ZERO, 0.1);
    const int n = 20000;
    double sum2 = 0;
    int clipped = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(sim_policy_act(&p, obs, 1, 0, false, a, &dec), 0);
        assert_true(a[0] >= -1.0f && a[0] <= 1.0f && a[1] >= 0.0f && a[1] <= 4.0f);
        sum2 += (double)a[0] * a[0];
        clipped += a[1] == 0.0f;
    }
    assert_float_equal(sqrt(sum2 / n), 0.1, 0.005);
    assert_in_range(clipped, n * 45 / 100, n * 55 / 100);

    /* A huge scale saturates at the bounds without leaving them. */
    p = make(SIM_POLICY_RANDOM, 50);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(sim_policy_act(&p, obs, 1, 0, false, a, &dec), 0);
        assert_true(a[0] >= -1.0f && a[0] <= 1.0f && a[1] >= 0.0f && a[1] <= 4.0f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_random_fills_the_bounds),
        cmocka_unit_test(test_zero_and_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
