/*
 * test_listen.c: listener addresses (tcp://HOST:PORT with IPv6 brackets, unix:PATH) and
 * binding on a real loop: an ephemeral TCP port, a Unix socket with the configured mode,
 * a stale socket file replaced, a regular file at the path refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listen.h"

static void test_parse(void **state)
{
    (void)state;
    address_t a;
    char err[256];
    assert_int_equal(address_parse("tcp://127.0.0.1:7070", ADDRESS_LISTEN, &a, err, sizeof err),
                     0);
    assert_int_equal(a.kind, ADDRESS_TCP);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 7070);
    assert_int_equal(address_parse("tcp://[::1]:80", ADDRESS_LISTEN, &a, err, sizeof err), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 80);
    assert_int_equal(address_parse("tcp://localhost:0", ADDRESS_LISTEN, &a, err, sizeof err),
                     0);
    assert_int_equal(
        address_parse("unix:/run/mpcd/mpcd.sock", ADDRESS_LISTEN, &a, err, sizeof err), 0);
    assert_int_equal(a.kind, ADDRESS_UNIX);
    assert_string_equal(a.path, "/run/mpcd/mpcd.sock");
    assert_int_equal(address_parse("unix:///tmp/x", ADDRESS_LISTEN, &a, err, sizeof err), 0);
    assert_string_equal(a.path, "/tmp/x");
    struct {
        const char *text, *needle;
    } bad[] = {
        {"127.0.0.1:7070", "unknown scheme"}, {"tcp://h", "missing ':PORT'"},
        {"tcp://h:70000", "port must be"},    {"tcp://h:x", "port must be"},
        {"tcp://::1:7", "brackets"},          {"tcp://[::1]7", "[IPV6]"},
        {"unix:", "empty socket path"},       {"tcp://:7", "host"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(address_parse(bad[i].text, ADDRESS_LISTEN, &a, err, sizeof err),
                         -EINVAL);
        if (!strstr(err, bad[i].needle))
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, err, bad[i].needle);
    }
    char longp[200];
    memset(longp, 'a', sizeof longp);
    memcpy(longp, "unix:", 5);
    longp[sizeof longp - 1] = 0;
    assert_int_equal(address_parse(longp, ADDRESS_LISTEN, &a, err, sizeof err), -EINVAL);
}

static void on_conn(uv_stream_t *s, int status)
{
    (void)s;
    (void)status;
}

static void test_bind(void **state)
{
    (void)state;
    uv_loop_t loop;
    listener_t tcp = {0}, ux = {0}, again = {0};
    address_t a;
    char err[256], path[] = "/tmp/test_listen_XXXXXX";
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(address_parse("tcp://127.0.0.1:0", ADDRESS_LISTEN, &a, err, sizeof err),
                     0);
    assert_int_equal(listen_open(&loop, &tcp, &a, 0, on_conn, err, sizeof err), 0);
    assert_non_null(strstr(tcp.name, "tcp://127.0.0.1:"));
    assert_null(strstr(tcp.name, ":0")); /* the kernel's port is named */

    int fd = mkstemp(path); /* a regular file at the socket path is not ours */
    close(fd);
    char text[300];
    snprintf(text, sizeof text, "unix:%s", path);
    assert_int_equal(address_parse(text, ADDRESS_LISTEN, &a, err, sizeof err), 0);
    assert_int_equal(listen_open(&loop, &ux, &a, 0600, on_conn, err, sizeof err), -EEXIST);
    assert_non_null(strstr(err, "not a socket"));
    unlink(path);
    listen_close(&ux, NULL);
    memset(&ux, 0, sizeof ux);
    assert_int_equal(listen_open(&loop, &ux, &a, 0600, on_conn, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A stale socket file (a crashed daemon's) is replaced. */
    ux.unlink_path = false;
    listen_close(&ux, NULL);
    assert_int_equal(listen_open(&loop, &again, &a, 0660, on_conn, err, sizeof err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    listen_close(&again, NULL);
    assert_int_not_equal(stat(path, &st), 0); /* removed on close */
    listen_close(&tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_bind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
