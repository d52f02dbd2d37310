/*
 * test_rng.c: the simulator's random numbers: reproducible per (seed, stream), streams
 * independent, uniform and normal draws with the right range and moments.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rng.h"

static void test_reproducible_streams(void **state)
{
    (void)state;
    sim_rng_t a, b, c;
    sim_rng_seed(&a, 42, 1);
    sim_rng_seed(&b, 42, 1);
    sim_rng_seed(&c, 42, 2);
    int same_as_other_stream = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = sim_rng_next(&a), y = sim_rng_next(&b), z = sim_rng_next(&c);
        assert_true(x == y);
        same_as_other_stream += x == z;
    }
    assert_int_equal(same_as_other_stream, 0);
    sim_rng_seed(&a, 0, 0); /* seed 0 must not give a stuck all-zero state */
    assert_true(sim_rng_next(&a) != 0 || sim_rng_next(&a) != 0);
}

static void test_moments(void **state)
{
    (void)state;
    sim_rng_t r;
    sim_rng_seed(&r, 7, 3);
    const int n = 200000;
    double sum_u = 0, sum_n = 0, sum_n2 = 0, lo = 1, hi = 0;
    for (int i = 0; i < n; i++) {
        double u = sim_rng_unit(&r);
        assert_true(u >= 0.0 && u < 1.0);
        lo = fmin(lo, u);
        hi = fmax(hi, u);
        sum_u += u;
        double v = sim_rng_uniform(&r, -2.0, 3.0);
        assert_true(v >= -2.0 && v < 3.0);
        double g = sim_rng_normal(&r);
        assert_true(isfinite(g));
        sum_n += g;
        sum_n2 += g * g;
    }
    assert_true(lo < 1e-3 && hi > 1 - 1e-3);
    /* Tolerances are ~5 standard errors of the estimates for this many samples. */
    assert_float_equal(sum_u / n, 0.5, 0.005);
    assert_float_equal(sum_n / n, 0.0, 0.012);
    assert_float_equal(sum_n2 / n, 1.0, 0.02);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproducible_streams),
        cmocka_unit_test(test_moments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
