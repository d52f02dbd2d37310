/*
 * test_address.c: common/address.c, the one address parser: every accepted form under
 * each caller's flags (daemon listeners, status endpoint, clients), the socket address
 * built for IP literals and Unix paths, the canonical text form, and errors that quote
 * the input and name the problem.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "address.h"

/* Parses text under flags and checks the result and its canonical form. */
static void ok_tcp(const char *text, unsigned flags, const char *host, int port, int family,
                   const char *canonical)
{
    address_t a;
    char err[256] = "";
    if (address_parse(text, flags, &a, err, sizeof err) != 0)
        fail_msg("'%s' refused: %s", text, err);
    assert_int_equal(a.kind, ADDRESS_TCP);
    assert_string_equal(a.host, host);
    assert_int_equal(a.port, port);
    assert_int_equal(a.sa.ss_family, family); /* AF_UNSPEC (0): a name left to resolve */
    if (family == AF_INET) {
        assert_int_equal(a.salen, sizeof(struct sockaddr_in));
        assert_int_equal(ntohs(((struct sockaddr_in *)&a.sa)->sin_port), port);
    } else if (family == AF_INET6) {
        assert_int_equal(a.salen, sizeof(struct sockaddr_in6));
        assert_int_equal(ntohs(((struct sockaddr_in6 *)&a.sa)->sin6_port), port);
    } else {
        assert_int_equal(a.salen, 0);
    }
    char back[300];
    address_format(&a, back, sizeof back);
    assert_string_equal(back, canonical);
}

static void ok_unix(const char *text, unsigned flags, const char *path, const char *canonical)
{
    address_t a;
    char err[256] = "";
    if (address_parse(text, flags, &a, err, sizeof err) != 0)
        fail_msg("'%s' refused: %s", text, err);
    assert_int_equal(a.kind, ADDRESS_UNIX);
    assert_string_equal(a.path, path);
    assert_int_equal(a.sa.ss_family, AF_UNIX);
    assert_int_equal(a.salen, sizeof(struct sockaddr_un));
    assert_string_equal(((struct sockaddr_un *)&a.sa)->sun_path, path);
    char back[300];
    address_format(&a, back, sizeof back);
    assert_string_equal(back, canonical);
}

/* text is refused under flags with -EINVAL and a message that quotes it and contains why. */
static void bad(const char *text, unsigned flags, const char *why)
{
    address_t a;
    char err[512] = "";
    assert_int_equal(address_parse(text, flags, &a, err, sizeof err), -EINVAL);
    if (strstr(err, why) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", text ? text : "(null)", err, why);
    if (text && strstr(err, text) == NULL)
        fail_msg("'%s': message '%s' does not quote it", text, err);
    if (strstr(err, "expected") == NULL)
        fail_msg("'%s': message '%s' lists no accepted form", text ? text : "(null)", err);
}

static void test_url_forms(void **state)
{
    (void)state;
    ok_tcp("tcp://127.0.0.1:7070", ADDRESS_LISTEN, "127.0.0.1", 7070, AF_INET,
           "tcp://127.0.0.1:7070");
    ok_tcp("tcp://10.1.2.3:1", ADDRESS_CONNECT, "10.1.2.3", 1, AF_INET, "tcp://10.1.2.3:1");
    ok_tcp("tcp://robot.local:65535", ADDRESS_CONNECT, "robot.local", 65535, AF_UNSPEC,
           "tcp://robot.local:65535");
    ok_tcp("tcp://localhost:0", ADDRESS_LISTEN, "localhost", 0, AF_UNSPEC, "tcp://localhost:0");
    ok_tcp("tcp://[::1]:80", ADDRESS_LISTEN, "::1", 80, AF_INET6, "tcp://[::1]:80");
    ok_tcp("tcp://[fe80::1%1]:80", ADDRESS_CONNECT, "fe80::1%1", 80, AF_INET6,
           "tcp://[fe80::1%1]:80");
    ok_tcp("tcp://h:007", ADDRESS_CONNECT, "h", 7, AF_UNSPEC, "tcp://h:7");
    ok_tcp("tcp://127.1:80", ADDRESS_LISTEN, "127.1", 80, AF_UNSPEC, "tcp://127.1:80");
    ok_unix("unix:/run/mpcd/mpcd.sock", ADDRESS_LISTEN, "/run/mpcd/mpcd.sock",
            "unix:/run/mpcd/mpcd.sock");
    ok_unix("unix:///tmp/x.sock", ADDRESS_CONNECT, "/tmp/x.sock", "unix:/tmp/x.sock");
    ok_unix("unix:relative.sock", ADDRESS_CONNECT, "relative.sock", "unix:relative.sock");

    address_t a;
    char err[256];
    assert_int_equal(address_parse("tcp://[fe80::1%1]:80", ADDRESS_LISTEN, &a, err, sizeof err),
                     0);
    assert_int_equal(((struct sockaddr_in6 *)&a.sa)->sin6_scope_id, 1);
    assert_int_equal(
        address_parse("tcp://[fe80::1%lo]:80", ADDRESS_LISTEN, &a, err, sizeof err), 0);
    assert_int_not_equal(((struct sockaddr_in6 *)&a.sa)->sin6_scope_id, 0);
}

static void test_hostport_forms(void **state)
{
    (void)state;
    ok_tcp("127.0.0.1:9464", ADDRESS_STATUS, "127.0.0.1", 9464, AF_INET,
           "tcp://127.0.0.1:9464");
    ok_tcp("0.0.0.0:0", ADDRESS_STATUS, "0.0.0.0", 0, AF_INET, "tcp://0.0.0.0:0");
    ok_tcp("[::]:9464", ADDRESS_STATUS, "::", 9464, AF_INET6, "tcp://[::]:9464");
    ok_tcp("[::1]:80", ADDRESS_STATUS, "::1", 80, AF_INET6, "tcp://[::1]:80");
    /* "localhost" is the one name the numeric form takes: the IPv4 loopback. */
    ok_tcp("localhost:80", ADDRESS_STATUS, "localhost", 80, AF_INET, "tcp://localhost:80");
    address_t a;
    char err[256];
    assert_int_equal(address_parse("localhost:80", ADDRESS_STATUS, &a, err, sizeof err), 0);
    assert_int_equal(ntohl(((struct sockaddr_in *)&a.sa)->sin_addr.s_addr), INADDR_LOOPBACK);
    /* Both forms at once. */
    ok_tcp("h:1", ADDRESS_URL | ADDRESS_HOSTPORT, "h", 1, AF_UNSPEC, "tcp://h:1");
    ok_tcp("tcp://h:1", ADDRESS_URL | ADDRESS_HOSTPORT, "h", 1, AF_UNSPEC, "tcp://h:1");
    ok_unix("unix:/x", ADDRESS_URL | ADDRESS_HOSTPORT, "/x", "unix:/x");
}

static void test_url_errors(void **state)
{
    (void)state;
    static const unsigned sets[] = {ADDRESS_LISTEN, ADDRESS_CONNECT};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        unsigned f = sets[i];
        bad("127.0.0.1:7070", f, "unknown scheme");
        bad("localhost:7070", f, "unknown scheme");
        bad("http://x:1", f, "unknown scheme");
        bad("tcp://host", f, "missing ':PORT'");
        bad("tcp://:7070", f, "empty host");
        bad("tcp://h:", f, "port must be");
        bad("tcp://h:70000", f, "port must be");
        bad("tcp://h:65536", f, "port must be");
        bad("tcp://h:12a", f, "port must be");
        bad("tcp://h:x", f, "port must be");
        bad("tcp://h:-1", f, "port must be");
        bad("tcp://h:+1", f, "port must be");
        bad("tcp://h: 1", f, "port must be");
        bad("tcp://h:123456", f, "port must be");
        bad("tcp://::1:7070", f, "brackets");
        bad("tcp://[::1:7070", f, "missing ']'");
        bad("tcp://[::1]7070", f, "missing ':PORT'");
        bad("tcp://[::1]7070", f, "[IPV6]"); /* the hint shows the bracketed form */
        bad("tcp://[]:7070", f, "empty host");
        bad("unix:", f, "empty socket path");
        bad("unix://", f, "empty socket path");
        bad("", f, "empty address");
        bad(NULL, f, "empty address");
    }
    /* Port 0 (pick a free one) is for listening only. */
    ok_tcp("tcp://h:0", ADDRESS_LISTEN, "h", 0, AF_UNSPEC, "tcp://h:0");
    bad("tcp://h:0", ADDRESS_CONNECT, "port must be a number from 1 to 65535");

    char long_path[200];
    memset(long_path, 'a', sizeof long_path);
    memcpy(long_path, "unix:", 5);
    long_path[sizeof long_path - 1] = '\0';
    bad(long_path, ADDRESS_LISTEN, "too long");
    char long_host[300];
    memset(long_host, 'h', sizeof long_host);
    memcpy(long_host, "tcp://", 6);
    snprintf(long_host + sizeof long_host - 4, 4, ":80");
    bad(long_host, ADDRESS_LISTEN, "host name too long");
}

static void test_hostport_errors(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "",          "nonsense",        "127.0.0.1",     "127.0.0.1:",
        ":80",       "127.0.0.1:99999", "127.0.0.1:-1",  "127.0.0.1:80x",
        "[::1]9464", "[::1:9464",       "999.1.1.1:80",  "[zz]:80",
        "127.1:80",  "robot.local:80",  "[127.0.0.1]:80"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        address_t a;
        char err[256] = "";
        if (address_parse(refused[i], ADDRESS_STATUS, &a, err, sizeof err) != -EINVAL)
            fail_msg("'%s' accepted", refused[i]);
        assert_non_null(strstr(err, "expected HOST:PORT or [IPV6]:PORT"));
    }
    bad("robot.local:80", ADDRESS_STATUS, "'robot.local' is not an IPv4 address");
    bad("[zz]:80", ADDRESS_STATUS, "'zz' is not an IPv6 address");
    bad("127.0.0.1:99999", ADDRESS_STATUS, "port must be a number from 0 to 65535");
    bad("tcp://127.0.0.1:80", ADDRESS_STATUS, "no scheme is accepted here");
    bad("unix:/x", ADDRESS_STATUS, "no scheme is accepted here");
}

static void test_err_buffer(void **state)
{
    (void)state;
    address_t a;
    /* No buffer, or one too small: still refused, never overrun. */
    assert_int_equal(address_parse("tcp://h", ADDRESS_LISTEN, &a, NULL, 0), -EINVAL);
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(address_parse("tcp://h", ADDRESS_LISTEN, &a, small, 4), -EINVAL);
    assert_int_equal(small[3], '\0');
    assert_int_equal(small[4], 'x');
    char err[256];
    assert_int_equal(address_parse("tcp://h", ADDRESS_LISTEN, &a, err, sizeof err), -EINVAL);
    assert_string_equal(err, "bad address 'tcp://h': missing ':PORT' (expected "
                             "tcp://HOST:PORT, tcp://[IPV6]:PORT or unix:PATH)");
}

static void test_format_sockaddr(void **state)
{
    (void)state;
    address_t a;
    char err[256], out[80];
    assert_int_equal(address_parse("10.0.0.7:9464", ADDRESS_STATUS, &a, err, sizeof err), 0);
    address_format_sockaddr(&a.sa, out, sizeof out);
    assert_string_equal(out, "10.0.0.7:9464");
    assert_int_equal(address_parse("[::1]:0", ADDRESS_STATUS, &a, err, sizeof err), 0);
    address_format_sockaddr(&a.sa, out, sizeof out);
    assert_string_equal(out, "[::1]:0");
    assert_int_equal(address_parse("unix:/x", ADDRESS_LISTEN, &a, err, sizeof err), 0);
    address_format_sockaddr(&a.sa, out, sizeof out);
    assert_string_equal(out, "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),  cmocka_unit_test(test_hostport_forms),
        cmocka_unit_test(test_url_errors), cmocka_unit_test(test_hostport_errors),
        cmocka_unit_test(test_err_buffer), cmocka_unit_test(test_format_sockaddr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
