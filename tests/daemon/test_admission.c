/*
 * test_admission.c: admission control's capacity sum: sessions are admitted while their
 * minimum plans fit max-load of the workers, refused with a reason past it, and their
 * places come back when they leave; the cost estimates start from the calibration, follow
 * the served steps (the median of the last ADMISSION_WINDOW) and shrug off spikes; the fair
 * share of iterations follows the load; min-iterations 0 admits all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <string.h>

#include "admission.h"

static void test_admit_until_full(void **state)
{
    (void)state;
    admission_t a;
    char why[320];
    admission_init(&a, 1, 0.5, 2);
    admission_set_model(&a, 0.002);
    a.fixed_s = 0.001; /* a plan: 1 ms + 2 x 2 ms = 5 ms */
    assert_true(fabs(admission_plan_cost(&a) - 0.005) < 1e-12);
    /* 10 Hz x 5 ms = 5 % each: ten fit in 50 %, the eleventh does not */
    for (int i = 0; i < 10; i++)
        assert_true(admission_admit(&a, 10.0, why, sizeof why));
    assert_true(fabs(admission_load(&a) - 0.5) < 1e-9);
    assert_true(admission_full(&a, 10.0));
    assert_false(admission_admit(&a, 10.0, why, sizeof why));
    assert_non_null(strstr(why, "full: the 10 admitted session(s) take 50%"));
    assert_non_null(strstr(why, "max-load 50%"));
    assert_int_equal(a.admitted, 10);
    assert_int_equal(a.refused, 1);
    /* one leaves: its place is free again */
    admission_leave(&a, 10.0);
    assert_false(admission_full(&a, 10.0));
    assert_true(admission_admit(&a, 10.0, why, sizeof why));
    /* a second Hello that is refused keeps the place it had (readmit) */
    admission_leave(&a, 10.0);
    assert_false(admission_admit(&a, 30.0, why, sizeof why));
    admission_readmit(&a, 10.0);
    assert_int_equal(a.sessions, 10);
    assert_int_equal(a.admitted, 11);
    /* everyone leaves: nothing drifts */
    for (int i = 0; i < 10; i++)
        admission_leave(&a, 10.0);
    assert_int_equal(a.sessions, 0);
    assert_true(a.rate_sum == 0.0);
    admission_leave(&a, 10.0); /* one too many is ignored */
    assert_int_equal(a.sessions, 0);
}

static void test_admission_off(void **state)
{
    (void)state;
    admission_t a;
    admission_init(&a, 1, 0.1, 0);
    admission_set_model(&a, 1.0); /* absurdly slow: would refuse anything */
    for (int i = 0; i < 100; i++)
        assert_true(admission_admit(&a, 1000.0, NULL, 0));
    assert_false(admission_full(&a, 1000.0));
}

static void test_costs_follow_the_steps(void **state)
{
    (void)state;
    admission_t a;
    admission_init(&a, 2, 0.65, 1);
    admission_set_model(&a, 0.010);                     /* a calibration that was off by 5x */
    for (int i = 0; i < ADMISSION_MIN_SAMPLES - 1; i++) /* a start's first steps: kept out */
        admission_observe(&a, 0.0001, 0.002);
    assert_true(a.iteration_s == 0.010);
    admission_observe(&a, 0.0001, 0.002);
    assert_true(a.iteration_s == 0.002); /* then the served steps replace it */
    for (int i = 0; i < 20; i++)
        admission_observe(&a, 0.0001, 0.002 + 1e-5 * (i % 3));
    assert_true(fabs(a.iteration_s - 0.002) < 2e-5);
    assert_true(fabs(a.fixed_s - 0.0001) < 1e-12);
    double settled = a.iteration_s;
    for (int i = 0; i < 5; i++)
        admission_observe(&a, 0.0001, 1.0); /* plans preempted for a second */
    assert_true(a.iteration_s < 1.01 * settled);
    admission_observe(&a, 0.0001, 0); /* a step without a plan: no iteration sample */
    assert_true(a.iteration_s < 1.01 * settled);
    /* the machine really got slower: the estimate follows within half a window */
    for (int i = 0; i < ADMISSION_WINDOW / 2 + 1; i++)
        admission_observe(&a, 0.0001, 0.004);
    assert_true(a.iteration_s == 0.004);
    /* a new model: its calibration, until its own steps are served */
    admission_set_model(&a, 0.003);
    assert_true(a.iteration_s == 0.003 && a.iterations.n == 0);
}

static void test_fair_share(void **state)
{
    (void)state;
    admission_t a;
    char why[320];
    admission_init(&a, 1, 1.0, 1);
    admission_set_model(&a, 0.002);
    a.fixed_s = 0.0;
    assert_int_equal(admission_fair_iterations(&a), INT_MAX); /* nobody admitted */
    assert_true(admission_admit(&a, 50.0, why, sizeof why));  /* 20 ms per plan */
    assert_int_equal(admission_fair_iterations(&a), 10);
    for (int i = 0; i < 9; i++)
        assert_true(admission_admit(&a, 50.0, why, sizeof why)); /* 2 ms per plan */
    assert_int_equal(admission_fair_iterations(&a), 1);
    admission_init(&a, 1, 1.0, 3); /* never below min-iterations */
    admission_set_model(&a, 0.002);
    a.rate_sum = 1000.0; /* (more than admission would let in) */
    assert_int_equal(admission_fair_iterations(&a), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit_until_full),
        cmocka_unit_test(test_admission_off),
        cmocka_unit_test(test_costs_follow_the_steps),
        cmocka_unit_test(test_fair_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
