/*
 * test_mpcclient_live.c: libmpcclient's delay fields, plans and asynchronous steps against
 * the real mpcd (started on a free loopback port by mpcd_harness.py, whose address is the
 * first argument).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mpcclient.h"

static const char *address;

static mpc_client_t *open_session(mpc_client_welcome_t *w)
{
    mpc_client_t *c;
    assert_int_equal(mpc_client_create(&c), 0);
    if (mpc_client_connect(c, address, 5000) != 0 ||
        mpc_client_hello(c, "test_mpcclient_live", NULL, 0, 0, w) != 0)
        fail_msg("%s: %s", address, mpc_client_errmsg(c));
    assert_true(w->observation_size <= 64 && w->action_size <= 8);
    return c;
}

/* A blocking step with delay_steps and applied_actions: the reply carries a plan whose
 * row 0 is the action, one row per control period. */
static void test_delay_and_plan(void **state)
{
    (void)state;
    mpc_client_welcome_t w;
    mpc_client_t *c = open_session(&w);
    float obs[64] = {0.1f}, applied[2 * 8] = {0};
    mpc_client_step_t step = {.seq = 7,
                              .observation = obs,
                              .observation_size = w.observation_size,
                              .reset = true,
                              .delay_steps = 2,
                              .applied_actions = applied,
                              .applied_actions_size = 2 * w.action_size};
    mpc_client_action_t a;
    if (mpc_client_step(c, &step, &a) != 0)
        fail_msg("step: %s", mpc_client_errmsg(c));
    assert_int_equal(a.seq, 7);
    assert_int_equal(a.action_size, w.action_size);
    assert_true(a.plan_rows >= 2);
    assert_true(a.plan_step_s == w.control_period_s);
    assert_memory_equal(a.plan, a.action, w.action_size * sizeof(float));
    for (size_t i = 0; i < a.plan_rows * a.action_size; i++) {
        size_t j = i % a.action_size;
        assert_true(a.plan[i] >= w.action_low[j] && a.plan[i] <= w.action_high[j]);
    }
    /* A delay beyond the horizon is the daemon's INVALID_VALUE; the session goes on. */
    step.delay_steps = (uint32_t)a.plan_rows + 1;
    step.applied_actions_size = 0;
    assert_int_equal(mpc_client_step(c, &step, &a), MPC_CLIENT_EDAEMON);
    assert_int_equal(mpc_client_daemon_code(c), MPC_CLIENT_DAEMON_INVALID_VALUE);
    step.delay_steps = 1;
    assert_int_equal(mpc_client_step(c, &step, &a), 0);
    mpc_client_destroy(c);
}

/* Asynchronous steps: several in flight, the newest kept; an Error through poll; a
 * blocking call after sends. */
static void test_async(void **state)
{
    (void)state;
    mpc_client_welcome_t w;
    mpc_client_t *c = open_session(&w);
    float obs[64] = {0};
    mpc_client_step_t step = {.observation = obs, .observation_size = w.observation_size};
    for (step.seq = 1; step.seq <= 3; step.seq++)
        assert_int_equal(mpc_client_step_send(c, &step), 0);
    assert_int_equal(mpc_client_steps_in_flight(c), 3);
    mpc_client_action_t a = {0};
    unsigned dropped, got = 0;
    while (mpc_client_steps_in_flight(c) > 0) {
        int rc = mpc_client_step_poll(c, -1, &a, &dropped);
        if (rc != 0)
            fail_msg("poll: %s", mpc_client_errmsg(c));
        got += 1 + dropped;
    }
    assert_int_equal(got, 3);
    assert_int_equal(a.seq, 3);
    assert_true(a.plan_rows > 0);

    step.seq = 4;
    step.delay_steps = 100000; /* beyond any horizon */
    assert_int_equal(mpc_client_step_send(c, &step), 0);
    assert_int_equal(mpc_client_step_poll(c, -1, &a, NULL), MPC_CLIENT_EDAEMON);
    assert_int_equal(mpc_client_daemon_code(c), MPC_CLIENT_DAEMON_INVALID_VALUE);
    assert_int_equal(mpc_client_step_poll(c, 0, &a, NULL), MPC_CLIENT_EAGAIN);

    step.delay_steps = 0;
    for (step.seq = 5; step.seq <= 6; step.seq++)
        assert_int_equal(mpc_client_step_send(c, &step), 0);
    step.seq = 7;
    assert_int_equal(mpc_client_step(c, &step, &a), 0);
    assert_int_equal(a.seq, 7);
    assert_int_equal(mpc_client_steps_in_flight(c), 0);
    assert_int_equal(mpc_client_reset(c), 0);
    mpc_client_destroy(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS (run through mpcd_harness.py)\n", argv[0]);
        return 2;
    }
    address = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_and_plan),
        cmocka_unit_test(test_async),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
