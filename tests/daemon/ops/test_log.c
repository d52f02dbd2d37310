/*
 * test_log.c: daemon/ops/log.c writes "<N>message\n" records, filters by level, prefixes
 * every embedded line, truncates long messages inside one PIPE_BUF record, and records
 * from concurrent threads never interleave (read back through a real pipe).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

typedef struct pipe_capture {
    int rd, wr, old_fd, old_level;
    char buf[1 << 20];
    size_t len;
} capture_t;

static capture_t cap;

static int setup(void **state)
{
    (void)state;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    cap.rd = fds[0];
    cap.wr = fds[1];
    cap.len = 0;
    cap.old_fd = mpcd_log_set_fd(cap.wr);
    cap.old_level = mpcd_log_get_level();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mpcd_log_set_fd(cap.old_fd);
    mpcd_log_set_level(cap.old_level);
    close(cap.rd);
    if (cap.wr >= 0)
        close(cap.wr);
    return 0;
}

/* Closes the write end and reads everything written so far. */
static const char *drain(void)
{
    close(cap.wr);
    cap.wr = -1;
    ssize_t n;
    while ((n = read(cap.rd, cap.buf + cap.len, sizeof cap.buf - 1 - cap.len)) > 0)
        cap.len += (size_t)n;
    cap.buf[cap.len] = '\0';
    return cap.buf;
}

static void test_format_and_level(void **state)
{
    (void)state;
    mpcd_log_set_level(MPCD_LOG_INFO);
    mpcd_log(MPCD_LOG_ERR, "model %s refused: %d", "x.safetensors", -5);
    mpcd_log(MPCD_LOG_INFO, "serving");
    mpcd_log(MPCD_LOG_DEBUG, "dropped at level info");
    mpcd_log(MPCD_LOG_WARNING, "trailing newline is not doubled\n");
    mpcd_log(42, "out-of-range priority becomes err");
    assert_string_equal(drain(), "<3>model x.safetensors refused: -5\n"
                                 "<6>serving\n"
                                 "<4>trailing newline is not doubled\n"
                                 "<3>out-of-range priority becomes err\n");
}

static void test_multiline_prefix(void **state)
{
    (void)state;
    mpcd_log(MPCD_LOG_NOTICE, "first\nsecond\nthird");
    assert_string_equal(drain(), "<5>first\n<5>second\n<5>third\n");
}

static void test_truncation_fits_pipe_buf(void **state)
{
    (void)state;
    static char big[3 * PIPE_BUF];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    mpcd_log(MPCD_LOG_ERR, "%s", big);
    const char *out = drain();
    assert_true(cap.len <= PIPE_BUF);
    assert_true(cap.len > PIPE_BUF - 16);
    assert_memory_equal(out, "<3>xxx", 6);
    assert_memory_equal(out + cap.len - 4, "...\n", 4);
}

static void test_parse_level(void **state)
{
    (void)state;
    assert_int_equal(mpcd_log_parse_level("debug"), MPCD_LOG_DEBUG);
    assert_int_equal(mpcd_log_parse_level("WARNING"), MPCD_LOG_WARNING);
    assert_int_equal(mpcd_log_parse_level("err"), MPCD_LOG_ERR);
    assert_int_equal(mpcd_log_parse_level("5"), MPCD_LOG_NOTICE);
    assert_int_equal(mpcd_log_parse_level("8"), -EINVAL);
    assert_int_equal(mpcd_log_parse_level("loud"), -EINVAL);
    assert_int_equal(mpcd_log_parse_level(NULL), -EINVAL);
    (void)drain();
}

/* ---- concurrency: whole records only ---- */

#define THREADS 4
#define LINES   2000

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LINES; i++)
        mpcd_log(MPCD_LOG_INFO, "thread %d line %d %s", id, i,
                 "padding-padding-padding-padding-padding-padding-padding-padding");
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    ssize_t n;
    while ((n = read(cap.rd, cap.buf + cap.len, sizeof cap.buf - 1 - cap.len)) > 0)
        cap.len += (size_t)n;
    cap.buf[cap.len] = '\0';
    return NULL;
}

static void test_threads_never_interleave(void **state)
{
    (void)state;
    mpcd_log_set_level(MPCD_LOG_INFO);
    pthread_t r, w[THREADS];
    assert_int_equal(pthread_create(&r, NULL, reader, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&w[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(w[i], NULL);
    close(cap.wr);
    cap.wr = -1;
    pthread_join(r, NULL);

    int next[THREADS] = {0};
    int lines = 0;
    char *save = NULL;
    for (char *l = strtok_r(cap.buf, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        int id, i, used = 0;
        assert_int_equal(sscanf(l, "<6>thread %d line %d %n", &id, &i, &used), 2);
        assert_true(id >= 0 && id < THREADS);
        assert_int_equal(i, next[id]); /* each thread's lines arrive whole and in order */
        next[id]++;
        assert_string_equal(l + used,
                            "padding-padding-padding-padding-padding-padding-padding-padding");
        lines++;
    }
    assert_int_equal(lines, THREADS * LINES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format_and_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multiline_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_fits_pipe_buf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_never_interleave, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
