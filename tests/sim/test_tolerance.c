/*
 * test_tolerance.c: dm_control's rewards.tolerance() as the tasks use it: 1 inside the
 * bounds, value_at_margin at one margin outside, the shape of each sigmoid in between.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tolerance.h"

static void test_inside_bounds(void **state)
{
    (void)state;
    assert_true(sim_tolerance_gauss(0.0, 0, 0, 2.0) == 1.0);
    assert_true(sim_tolerance(0.3, 0.2, 0.4, 0.0, SIM_SIGMOID_GAUSSIAN, 0.1) == 1.0);
    assert_true(sim_tolerance(11.0, 10.0, INFINITY, 10.0, SIM_SIGMOID_LINEAR, 0.0) == 1.0);
}

static void test_margin_zero_is_an_indicator(void **state)
{
    (void)state;
    assert_true(sim_tolerance(0.5, 0.0, 0.06, 0.0, SIM_SIGMOID_GAUSSIAN, 0.1) == 0.0);
    assert_true(sim_tolerance(0.06, 0.0, 0.06, 0.0, SIM_SIGMOID_GAUSSIAN, 0.1) == 1.0);
    assert_true(sim_tolerance(NAN, 0.0, 1.0, 1.0, SIM_SIGMOID_GAUSSIAN, 0.1) == 0.0);
}

static void test_sigmoids(void **state)
{
    (void)state;
    /* Gaussian: 0.1 at one margin on either side, 0.1^(1/4) at half a margin. */
    assert_float_equal(sim_tolerance_gauss(2.0, 0, 0, 2.0), 0.1, 1e-12);
    assert_float_equal(sim_tolerance_gauss(-2.0, 0, 0, 2.0), 0.1, 1e-12);
    assert_float_equal(sim_tolerance_gauss(1.0, 0, 0, 2.0), pow(0.1, 0.25), 1e-12);
    /* Quadratic with 0 at the margin: 1 - x^2, 0 beyond. */
    assert_float_equal(sim_tolerance(0.5, 0, 0, 1.0, SIM_SIGMOID_QUADRATIC, 0.0), 0.75, 1e-12);
    assert_float_equal(sim_tolerance(-1.0, 0, 0, 1.0, SIM_SIGMOID_QUADRATIC, 0.0), 0.0, 1e-12);
    assert_float_equal(sim_tolerance(3.0, 0, 0, 1.0, SIM_SIGMOID_QUADRATIC, 0.0), 0.0, 1e-12);
    /* Linear ramp of the cheetah: speed / 10 below 10 m/s, 0 when not moving forward. */
    assert_float_equal(sim_tolerance(4.0, 10, INFINITY, 10, SIM_SIGMOID_LINEAR, 0.0), 0.4,
                       1e-12);
    assert_float_equal(sim_tolerance(0.0, 10, INFINITY, 10, SIM_SIGMOID_LINEAR, 0.0), 0.0,
                       1e-12);
    assert_float_equal(sim_tolerance(-3.0, 10, INFINITY, 10, SIM_SIGMOID_LINEAR, 0.0), 0.0,
                       1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inside_bounds),
        cmocka_unit_test(test_margin_zero_is_an_indicator),
        cmocka_unit_test(test_sigmoids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
