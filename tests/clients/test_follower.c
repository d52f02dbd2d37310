/*
 * test_follower.c: libmpcclient's follower (clients/lib/follower.c, mpc_follower_*).
 *
 * Plans are built by hand as the client would copy them from Action replies: row k of a
 * plan holds the floats {10 * id + k, -(10 * id + k)}, so every lookup tells which plan
 * and which row answered. Times are seconds on an arbitrary clock.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "mpcclient.h"

#define ACT  2
#define STEP 0.1

/* A reply whose plan has rows rows (0: no plan, action only) of plan `id`. */
static mpc_client_action_t make_plan(int id, size_t rows)
{
    mpc_client_action_t a;
    memset(&a, 0, sizeof(a));
    a.action_size = ACT;
    a.action[0] = (float)(10 * id);
    a.action[1] = (float)(-10 * id);
    a.plan_rows = rows;
    a.plan_step_s = rows > 0 ? STEP : 0.0;
    for (size_t k = 0; k < rows; k++) {
        a.plan[k * ACT] = (float)(10 * id + (int)k);
        a.plan[k * ACT + 1] = (float)(-(10 * id + (int)k));
    }
    return a;
}

/* Asserts that the lookup at t gives state and the row `value` (10 * id + k). */
#define expect_at(f, t, want_state, value)                                                     \
    do {                                                                                       \
        float out_[ACT] = {-999.0f, -999.0f};                                                  \
        assert_int_equal(mpc_follower_action_at((f), (t), out_), (want_state));                \
        assert_float_equal(out_[0], (float)(value), 0.0f);                                     \
        assert_float_equal(out_[1], -(float)(value), 0.0f);                                    \
    } while (0)

static mpc_follower_t *follower(size_t max_plans)
{
    mpc_follower_t *f;
    assert_int_equal(mpc_follower_create(ACT, max_plans, NULL, &f), 0);
    return f;
}

static void update(mpc_follower_t *f, int id, size_t rows, double start)
{
    mpc_client_action_t a = make_plan(id, rows);
    assert_int_equal(mpc_follower_update(f, &a, start), 0);
}

/* Zero-order hold: a row holds for its whole step, the next starts at the boundary. */
static void test_hold(void **state)
{
    (void)state;
    mpc_follower_t *f = follower(4);
    update(f, 1, 3, 1.0);
    expect_at(f, 1.0, MPC_FOLLOW_PLAN, 10);
    expect_at(f, 1.05, MPC_FOLLOW_PLAN, 10);
    expect_at(f, 1.0 + STEP * 0.999, MPC_FOLLOW_PLAN, 10);
    expect_at(f, 1.1, MPC_FOLLOW_PLAN, 11);
    /* A time summed up from steps lands on the boundary through rounding: row 2, not 1. */
    double t = 1.0;
    for (int i = 0; i < 2; i++)
        t += STEP;
    expect_at(f, t, MPC_FOLLOW_PLAN, 12);
    expect_at(f, 1.29, MPC_FOLLOW_PLAN, 12);
    /* t is the caller's: going back is fine (a pure lookup). */
    expect_at(f, 1.15, MPC_FOLLOW_PLAN, 11);
    mpc_follower_destroy(f);
}

/* Past the last row: the last row holds and the state says so. */
static void test_run_out(void **state)
{
    (void)state;
    mpc_follower_t *f = follower(4);
    update(f, 1, 3, 1.0);
    expect_at(f, 1.3, MPC_FOLLOW_PAST_END, 12);
    expect_at(f, 1.35, MPC_FOLLOW_PAST_END, 12);
    expect_at(f, 1e9, MPC_FOLLOW_PAST_END, 12);
    expect_at(f, INFINITY, MPC_FOLLOW_PAST_END, 12);
    expect_at(f, 1.25, MPC_FOLLOW_PLAN, 12);
    mpc_follower_destroy(f);
}

/* A newer reply replaces the plan from its start on; before it, the older one goes on. */
static void test_replace(void **state)
{
    (void)state;
    mpc_follower_t *f = follower(4);
    update(f, 1, 12, 1.0);
    update(f, 2, 12, 1.2);
    expect_at(f, 1.15, MPC_FOLLOW_PLAN, 11);
    expect_at(f, 1.2, MPC_FOLLOW_PLAN, 20);
    expect_at(f, 1.45, MPC_FOLLOW_PLAN, 22);
    /* The same start: the later reply (newer in request order) replaces it. */
    update(f, 3, 12, 1.2);
    expect_at(f, 1.25, MPC_FOLLOW_PLAN, 30);
    expect_at(f, 1.15, MPC_FOLLOW_PLAN, 11);
    mpc_follower_destroy(f);
}

/* Delayed replies: plans starting in the future wait while the one in force goes on. With a
 * delay of d = 3 steps, d + 2 = 5 plans are enough to hold them all. */
static void test_future_plans_wait(void **state)
{
    (void)state;
    mpc_follower_t *f = follower(5);
    update(f, 1, 12, 1.0);
    update(f, 2, 12, 1.1);
    update(f, 3, 12, 1.2);
    update(f, 4, 12, 1.3);
    update(f, 5, 12, 1.4);
    expect_at(f, 0.99, MPC_FOLLOW_NO_PLAN, 0);
    expect_at(f, 1.05, MPC_FOLLOW_PLAN, 10);
    expect_at(f, 1.1, MPC_FOLLOW_PLAN, 20);
    expect_at(f, 1.25, MPC_FOLLOW_PLAN, 30);
    expect_at(f, 1.39, MPC_FOLLOW_PLAN, 40);
    expect_at(f, 1.55, MPC_FOLLOW_PLAN, 51);
    expect_at(f, 1.05, MPC_FOLLOW_PLAN, 10); /* nothing was forgotten by the lookups */

    /* Capacity: a sixth plan pushes out the oldest. */
    update(f, 6, 12, 1.5);
    expect_at(f, 1.05, MPC_FOLLOW_NO_PLAN, 0);
    expect_at(f, 1.15, MPC_FOLLOW_PLAN, 20);
    expect_at(f, 1.5, MPC_FOLLOW_PLAN, 60);
    mpc_follower_destroy(f);
}

/* A reply overtaken by a newer one (an earlier start) is ignored. */
static void test_stale_update_ignored(void **state)
{
    (void)state;
    mpc_follower_t *f = follower(4);
    update(f, 1, 12, 1.0);
    update(f, 2, 12, 1.2);
    mpc_client_action_t stale = make_plan(9, 12);
    assert_int_equal(mpc_follower_update(f, &stale, 1.1), 1);
    assert_int_equal(mpc_follower_update(f, &stale, 0.5), 1);
    expect_at(f, 1.15, MPC_FOLLOW_PLAN, 11);
    expect_at(f, 1.25, MPC_FOLLOW_PLAN, 20);
    mpc_follower_destroy(f);
}

/* Before any plan starts (none given, all in the future, or cleared): the initial action. */
static void test_no_plan_initial(void **state)
{
    (void)state;
    mpc_follower_t *f = follower(3);
    expect_at(f, 0.0, MPC_FOLLOW_NO_PLAN, 0);
    expect_at(f, NAN, MPC_FOLLOW_NO_PLAN, 0);
    mpc_follower_destroy(f);

    const float initial[ACT] = {7.0f, -7.0f};
    assert_int_equal(mpc_follower_create(ACT, 3, initial, &f), 0);
    expect_at(f, 5.0, MPC_FOLLOW_NO_PLAN, 7);
    update(f, 1, 4, 10.0);
    expect_at(f, 9.5, MPC_FOLLOW_NO_PLAN, 7);
    expect_at(f, -INFINITY, MPC_FOLLOW_NO_PLAN, 7);
    expect_at(f, 10.0, MPC_FOLLOW_PLAN, 10);
    mpc_follower_clear(f);
    expect_at(f, 10.0, MPC_FOLLOW_NO_PLAN, 7);
    /* After clear, an earlier start is not stale: a new episode starts afresh. */
    update(f, 2, 4, 0.0);
    expect_at(f, 0.0, MPC_FOLLOW_PLAN, 20);
    mpc_follower_destroy(f);
}

/* A reply without a plan is one row held for ever, until a newer plan starts. */
static void test_plan_rows_zero(void **state)
{
    (void)state;
    mpc_follower_t *f = follower(3);
    update(f, 1, 0, 2.0);
    expect_at(f, 1.99, MPC_FOLLOW_NO_PLAN, 0);
    expect_at(f, 2.0, MPC_FOLLOW_PLAN, 10);
    expect_at(f, 1e12, MPC_FOLLOW_PLAN, 10);
    expect_at(f, INFINITY, MPC_FOLLOW_PLAN, 10);
    update(f, 2, 2, 3.0);
    expect_at(f, 2.5, MPC_FOLLOW_PLAN, 10);
    expect_at(f, 3.15, MPC_FOLLOW_PLAN, 21);
    expect_at(f, 3.5, MPC_FOLLOW_PAST_END, 21);
    update(f, 3, 0, 4.0);
    expect_at(f, 4.0, MPC_FOLLOW_PLAN, 30);
    mpc_follower_destroy(f);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    mpc_follower_t *f = (mpc_follower_t *)&f;
    assert_int_equal(mpc_follower_create(0, 4, NULL, &f), MPC_CLIENT_EINVAL);
    assert_null(f);
    assert_int_equal(mpc_follower_create(MPC_CLIENT_MAX_ACTION + 1, 4, NULL, &f),
                     MPC_CLIENT_EINVAL);
    assert_int_equal(mpc_follower_create(ACT, 1, NULL, &f), MPC_CLIENT_EINVAL);
    assert_int_equal(mpc_follower_create(ACT, 4, NULL, NULL), MPC_CLIENT_EINVAL);
    mpc_follower_destroy(NULL);

    f = follower(4);
    mpc_client_action_t a = make_plan(1, 3);
    assert_int_equal(mpc_follower_update(NULL, &a, 1.0), MPC_CLIENT_EINVAL);
    assert_int_equal(mpc_follower_update(f, NULL, 1.0), MPC_CLIENT_EINVAL);
    assert_int_equal(mpc_follower_update(f, &a, NAN), MPC_CLIENT_EINVAL);
    assert_int_equal(mpc_follower_update(f, &a, INFINITY), MPC_CLIENT_EINVAL);
    a.action_size = ACT + 1;
    assert_int_equal(mpc_follower_update(f, &a, 1.0), MPC_CLIENT_EINVAL);
    a = make_plan(1, 3);
    a.plan_step_s = 0.0;
    assert_int_equal(mpc_follower_update(f, &a, 1.0), MPC_CLIENT_EINVAL);
    a.plan_step_s = NAN;
    assert_int_equal(mpc_follower_update(f, &a, 1.0), MPC_CLIENT_EINVAL);
    a.plan_step_s = -STEP;
    assert_int_equal(mpc_follower_update(f, &a, 1.0), MPC_CLIENT_EINVAL);
    a = make_plan(1, 3);
    a.plan_rows = MPC_CLIENT_MAX_PLAN / ACT + 1; /* more than the struct can hold */
    assert_int_equal(mpc_follower_update(f, &a, 1.0), MPC_CLIENT_EINVAL);
    expect_at(f, 1.0, MPC_FOLLOW_NO_PLAN, 0); /* nothing refused was taken */
    mpc_follower_destroy(f);
}

/* The robot's loop: update and lookups allocate nothing, even as plans leave by capacity;
 * the largest plan the client keeps fits. */
static void test_no_allocation(void **state)
{
    (void)state;
    mpc_follower_t *f = follower(3);
    mpc_client_action_t a = make_plan(1, MPC_CLIENT_MAX_PLAN / ACT);
    float out[ACT];
    alloc_count_start();
    for (int i = 0; i < 100; i++) {
        assert_int_equal(mpc_follower_update(f, &a, 0.1 * i), 0);
        mpc_follower_action_at(f, 0.1 * i + 0.05, out);
    }
    assert_int_equal(alloc_count_stop(), 0);
    expect_at(f, 9.9 + STEP * (MPC_CLIENT_MAX_PLAN / ACT - 1), MPC_FOLLOW_PLAN,
              10 + MPC_CLIENT_MAX_PLAN / ACT - 1);
    mpc_follower_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold),
        cmocka_unit_test(test_run_out),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_future_plans_wait),
        cmocka_unit_test(test_stale_update_ignored),
        cmocka_unit_test(test_no_plan_initial),
        cmocka_unit_test(test_plan_rows_zero),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_no_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
