/*
 * test_notify.c: daemon/ops/notify.c sends sd_notify datagrams to a real AF_UNIX datagram
 * socket named by $NOTIFY_SOCKET (a path and the abstract "@" form), is a no-op without
 * it, reports unusable addresses, and reads $WATCHDOG_USEC / $WATCHDOG_PID like systemd.
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
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

/* Binds a datagram socket at name (a path, or "@x" for the abstract namespace). */
static int bind_dgram(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(sa.sun_path, name, len);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    else
        salen++;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, salen), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_path_socket(void **state)
{
    (void)state;
    char dir[] = "/tmp/mpcd-notify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/notify", dir);
    int fd = bind_dgram(path);
    setenv("NOTIFY_SOCKET", path, 1);

    assert_int_equal(mpcd_notify_send("READY=1"), 0);
    expect_datagram(fd, "READY=1");
    mpcd_notify("RELOADING=1");
    expect_datagram(fd, "RELOADING=1");
    mpcd_notifyf("STATUS=serving model v%d\nWATCHDOG=1", 3);
    expect_datagram(fd, "STATUS=serving model v3\nWATCHDOG=1");

    close(fd);
    unlink(path);
    rmdir(dir);
    /* nobody listens any more: an error, never a crash or a hang */
    assert_true(mpcd_notify_send("STOPPING=1") < 0);
    mpcd_notify("STOPPING=1");
    unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "@mpcd-test-notify-%d", (int)getpid());
    int fd = bind_dgram(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(mpcd_notify_send("READY=1\nSTATUS=up"), 0);
    expect_datagram(fd, "READY=1\nSTATUS=up");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_without_socket(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(mpcd_notify_send("READY=1"), 1);
    mpcd_notify("READY=1");
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(mpcd_notify_send("READY=1"), -EAFNOSUPPORT);
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    setenv("NOTIFY_SOCKET", longpath, 1);
    assert_int_equal(mpcd_notify_send("READY=1"), -ENAMETOOLONG);
    unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog(void **state)
{
    (void)state;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(mpcd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "20000000", 1);
    assert_int_equal(mpcd_notify_watchdog_usec(), 20000000);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(mpcd_notify_watchdog_usec(), 20000000);
    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1); /* meant for another process */
    assert_int_equal(mpcd_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "20s", 1);
    assert_int_equal(mpcd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "-5", 1);
    assert_int_equal(mpcd_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_without_socket),
        cmocka_unit_test(test_watchdog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
