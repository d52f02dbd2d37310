/*
 * test_server.c: the whole server in-process (server_create / server_run on a thread),
 * driven by libmpcclient over a Unix socket:
 *   - a steady stream of steps allocates nothing on the daemon's threads (event loop,
 *     workers): malloc & co. are wrapped and counted on every thread but the client's;
 *   - a hot-swap in the middle of the stream (Reload of model B) keeps every step answered,
 *     and after it the steps are again allocation-free;
 *   - SIGTERM ends server_run with 0 and server_destroy leaves nothing behind (ASan).
 * argv[1], argv[2]: models A and B (same observation/action sizes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc_count.h"
#include "config.h"
#include "mpcclient.h"
#include "server.h"

static const char *path_a, *path_b;

typedef struct {
    server_t *s;
    int rc;
} run_arg_t;

static void *run(void *p)
{
    run_arg_t *a = p;
    a->rc = server_run(a->s);
    return NULL;
}

static void steps(mpc_client_t *c, int from, int n)
{
    float obs[3];
    for (int t = from; t < from + n; t++) {
        for (int i = 0; i < 3; i++)
            obs[i] = (float)sin(0.2 * t + i);
        mpc_client_step_t st = {.seq = (uint64_t)t,
                                .observation = obs,
                                .observation_size = 3,
                                .reward = 0.25f,
                                .reset = t == 0,
                                .exploration_noise = 0.1f};
        mpc_client_action_t a;
        int rc = mpc_client_step(c, &st, &a);
        if (rc)
            fail_msg("step %d: %s", t, mpc_client_errmsg(c));
        assert_int_equal(a.seq, (uint64_t)t);
        assert_true(a.action[0] >= -2 && a.action[0] <= 2);
    }
}

static void test_server_steady_state(void **state)
{
    (void)state;
    char sock[64], listen[80], err[512];
    snprintf(sock, sizeof sock, "/tmp/test_server_%d.sock", (int)getpid());
    snprintf(listen, sizeof listen, "unix:%s", sock);
    char *argv[] = {"mpcd",          "--model",
                    (char *)path_a,  "--listen",
                    listen,          "--no-status-listen",
                    "--workers",     "2",
                    "--candidates",  "64",
                    "--top",         "8",
                    "--iterations",  "3",
                    "--horizon",     "6",
                    "--deadline-ms", "1000",
                    "--log-level",   "warning"};
    int argc = (int)(sizeof argv / sizeof argv[0]);
    mpcd_config_t cfg;
    config_action_t act;
    assert_int_equal(config_parse_args(&cfg, argc, argv, &act, err, sizeof err), 0);
    assert_int_equal(config_validate(&cfg, err, sizeof err), 0);
    server_t *s;
    if (server_create(&cfg, &s, err, sizeof err))
        fail_msg("server_create: %s", err);
    run_arg_t ra = {.s = s, .rc = -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run, &ra), 0);

    alloc_count_ignore_thread(); /* the client's own allocations are not the daemon's */
    mpc_client_t *c;
    assert_int_equal(mpc_client_create(&c), 0);
    assert_int_equal(mpc_client_connect(c, listen, 5000), 0);
    mpc_client_welcome_t w;
    assert_int_equal(mpc_client_hello(c, "test_server", NULL, 3, 1, &w), 0);
    assert_int_equal(w.model_version, 1);
    steps(c, 0, 20); /* warm up: buffers grow to their steady size */

    alloc_count_start();
    steps(c, 20, 200);
    assert_int_equal(alloc_count_stop(), 0);

    /* Hot-swap through a second connection while the first keeps stepping. */
    mpc_client_t *ctl;
    assert_int_equal(mpc_client_create(&ctl), 0);
    assert_int_equal(mpc_client_connect(ctl, listen, 5000), 0);
    mpc_client_reload_t rr;
    if (mpc_client_reload(ctl, path_b, &rr))
        fail_msg("reload: %s", mpc_client_errmsg(ctl));
    assert_true(rr.ok);
    assert_int_equal(rr.model_version, 2);
    steps(c, 220, 20); /* re-sync happens here (allocation allowed: sizes may change) */
    alloc_count_start();
    steps(c, 240, 100);
    assert_int_equal(alloc_count_stop(), 0);

    mpc_client_destroy(ctl);
    mpc_client_destroy(c);
    kill(getpid(), SIGTERM); /* libuv's handler forwards it to the loop, whichever thread */
    pthread_join(th, NULL);
    assert_int_equal(ra.rc, 0);
    server_destroy(s);
    config_free(&cfg);
    assert_int_not_equal(access(sock, F_OK), 0); /* the socket file is gone */
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_A MODEL_B\n", argv[0]);
        return 2;
    }
    /* Clients' Reload paths are resolved beneath model-dir (here A's directory): absolute. */
    static char abs_a[PATH_MAX], abs_b[PATH_MAX];
    if (!realpath(argv[1], abs_a) || !realpath(argv[2], abs_b)) {
        perror("realpath");
        return 1;
    }
    path_a = abs_a;
    path_b = abs_b;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_steady_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
