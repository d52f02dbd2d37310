/*
 * test_address.c: daemon address parsing and connecting (clients/lib/address.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "address.h"
#include "mpcclient.h"

static void parse_ok(const char *text, mpc_address_kind_t kind, const char *host_or_path,
                     const char *port, const char *canonical)
{
    mpc_address_t a;
    char err[256] = "";
    assert_int_equal(mpc_address_parse(text, &a, err, sizeof(err)), 0);
    assert_int_equal(a.kind, kind);
    if (kind == MPC_ADDRESS_TCP) {
        assert_string_equal(a.host, host_or_path);
        assert_string_equal(a.port, port);
    } else {
        assert_string_equal(a.path, host_or_path);
    }
    char back[300];
    mpc_address_format(&a, back, sizeof(back));
    assert_string_equal(back, canonical);
}

static void test_parse_valid(void **state)
{
    (void)state;
    parse_ok(NULL, MPC_ADDRESS_TCP, "127.0.0.1", "7070", "tcp://127.0.0.1:7070");
    parse_ok("", MPC_ADDRESS_TCP, "127.0.0.1", "7070", "tcp://127.0.0.1:7070");
    parse_ok("tcp://10.1.2.3:1", MPC_ADDRESS_TCP, "10.1.2.3", "1", "tcp://10.1.2.3:1");
    parse_ok("tcp://robot.local:65535", MPC_ADDRESS_TCP, "robot.local", "65535",
             "tcp://robot.local:65535");
    parse_ok("tcp://[::1]:7070", MPC_ADDRESS_TCP, "::1", "7070", "tcp://[::1]:7070");
    parse_ok("tcp://[fe80::1%lo]:80", MPC_ADDRESS_TCP, "fe80::1%lo", "80",
             "tcp://[fe80::1%lo]:80");
    parse_ok("tcp://h:007", MPC_ADDRESS_TCP, "h", "7", "tcp://h:7");
    parse_ok("unix:/run/mpcd/mpcd.sock", MPC_ADDRESS_UNIX, "/run/mpcd/mpcd.sock", NULL,
             "unix:/run/mpcd/mpcd.sock");
    parse_ok("unix:///tmp/x.sock", MPC_ADDRESS_UNIX, "/tmp/x.sock", NULL, "unix:/tmp/x.sock");
    parse_ok("unix:relative.sock", MPC_ADDRESS_UNIX, "relative.sock", NULL,
             "unix:relative.sock");
}

static void parse_bad(const char *text, const char *why)
{
    mpc_address_t a;
    char err[256] = "";
    assert_int_equal(mpc_address_parse(text, &a, err, sizeof(err)), MPC_CLIENT_EINVAL);
    if (strstr(err, why) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", text, err, why);
    assert_non_null(strstr(err, text));
}

static void test_parse_invalid(void **state)
{
    (void)state;
    parse_bad("127.0.0.1:7070", "unknown scheme");
    parse_bad("http://x:1", "unknown scheme");
    parse_bad("tcp://host", "missing ':PORT'");
    parse_bad("tcp://:7070", "empty host");
    parse_bad("tcp://h:", "port must be");
    parse_bad("tcp://h:0", "port must be");
    parse_bad("tcp://h:65536", "port must be");
    parse_bad("tcp://h:12a", "port must be");
    parse_bad("tcp://h:-1", "port must be");
    parse_bad("tcp://h:123456", "port must be");
    parse_bad("tcp://::1:7070", "brackets");
    parse_bad("tcp://[::1:7070", "missing ']'");
    parse_bad("tcp://[::1]7070", "missing ':PORT'");
    parse_bad("tcp://[]:7070", "empty host");
    parse_bad("unix:", "empty socket path");
    parse_bad("unix://", "empty socket path");
    char long_path[200];
    memset(long_path, 'a', sizeof(long_path));
    memcpy(long_path, "unix:", 5);
    long_path[sizeof(long_path) - 1] = '\0';
    parse_bad(long_path, "too long");
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* A Unix path nobody listens on fails at once with a message naming the address. */
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/mpcclient-none-%d.sock", (int)getpid());
    mpc_address_t a;
    char err[256];
    assert_int_equal(mpc_address_parse(path, &a, err, sizeof(err)), 0);
    assert_int_equal(mpc_address_connect(&a, 1000, err, sizeof(err)), MPC_CLIENT_ECONNECT);
    assert_non_null(strstr(err, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_connect_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
