/*
 * test_dial.c: connecting to daemon addresses (clients/lib/dial.c) and the client's
 * address rules (ADDRESS_CONNECT: port 0 refused; mpc_client_connect's messages). The
 * grammar itself is tested in tests/common/test_address.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "address.h"
#include "dial.h"
#include "mpcclient.h"

/* A listening socket on a (Unix path or 127.0.0.1 port 0); the bound port in *port. */
static int listen_on(const address_t *a, int *port)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (const struct sockaddr *)&a->sa, a->salen), 0);
    assert_int_equal(listen(fd, 4), 0);
    if (port) {
        struct sockaddr_in in;
        socklen_t len = sizeof in;
        assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
        *port = ntohs(in.sin_port);
    }
    return fd;
}

static void test_refused(void **state)
{
    (void)state;
    /* A Unix path nobody listens on fails at once with a message naming the address. */
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/mpcclient-none-%d.sock", (int)getpid());
    address_t a;
    char err[256];
    assert_int_equal(address_parse(path, ADDRESS_CONNECT, &a, err, sizeof(err)), 0);
    assert_int_equal(mpc_dial(&a, 1000, err, sizeof(err)), MPC_CLIENT_ECONNECT);
    assert_non_null(strstr(err, path));
}

static void test_connects(void **state)
{
    (void)state;
    char text[80], err[256];
    address_t a;

    snprintf(text, sizeof(text), "unix:/tmp/mpcclient-dial-%d.sock", (int)getpid());
    assert_int_equal(address_parse(text, ADDRESS_CONNECT, &a, err, sizeof(err)), 0);
    unlink(a.path);
    int lfd = listen_on(&a, NULL);
    int fd = mpc_dial(&a, 1000, err, sizeof(err));
    if (fd < 0)
        fail_msg("%s", err);
    close(fd);
    close(lfd);
    unlink(a.path);

    /* An IPv4 literal (the parser's socket address), then "localhost" (resolved: ::1 may
     * come first and be refused; the next address is tried). */
    int port;
    assert_int_equal(address_parse("127.0.0.1:0", ADDRESS_STATUS, &a, err, sizeof(err)), 0);
    lfd = listen_on(&a, &port);
    static const char *const hosts[] = {"127.0.0.1", "localhost"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        snprintf(text, sizeof(text), "tcp://%s:%d", hosts[i], port);
        assert_int_equal(address_parse(text, ADDRESS_CONNECT, &a, err, sizeof(err)), 0);
        fd = mpc_dial(&a, 1000, err, sizeof(err));
        if (fd < 0)
            fail_msg("%s: %s", text, err);
        close(fd);
    }
    close(lfd);
}

static void test_client_rules(void **state)
{
    (void)state;
    mpc_client_t *c;
    assert_int_equal(mpc_client_create(&c), 0);
    assert_int_equal(mpc_client_connect(c, "tcp://127.0.0.1:0", 100), MPC_CLIENT_EINVAL);
    assert_non_null(strstr(mpc_client_errmsg(c), "port must be a number from 1 to 65535"));
    assert_int_equal(mpc_client_connect(c, "127.0.0.1:7070", 100), MPC_CLIENT_EINVAL);
    assert_non_null(strstr(mpc_client_errmsg(c), "unknown scheme"));
    assert_non_null(strstr(mpc_client_errmsg(c), "127.0.0.1:7070"));
    mpc_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_connects),
        cmocka_unit_test(test_client_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
