/*
 * notify.c: sd_notify(3)'s protocol, implemented directly (see notify.h).
 *
 * The protocol is one datagram to the AF_UNIX socket in $NOTIFY_SOCKET; implementing it
 * here (30 lines) keeps libsystemd optional. "@name" means the abstract namespace.
 * MSG_NOSIGNAL and a fresh non-blocking socket per call keep it safe from any thread.
 */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

int mpcd_notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 1;
    if (state == NULL)
        return -EINVAL;
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT; /* vsock and other forms: not used by mpcd's deployments */

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen = strlen(path);
    if (plen >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, plen);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
    else
        salen++;

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    ssize_t n;
    do
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    while (n < 0 && errno == EINTR);
    int rc = n < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void mpcd_notify(const char *state)
{
    static atomic_bool warned;
    int rc = mpcd_notify_send(state);
    if (rc < 0 && !atomic_exchange(&warned, true))
        mpcd_log(MPCD_LOG_WARNING, "sd_notify to $NOTIFY_SOCKET failed: %s (reported once)",
                 strerror(-rc));
}

void mpcd_notifyf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mpcd_notify(buf);
}

uint64_t mpcd_notify_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    if (usec == NULL || usec[0] == '\0')
        return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid != NULL && pid[0] != '\0') {
        char *end;
        errno = 0;
        unsigned long long p = strtoull(pid, &end, 10);
        if (errno != 0 || *end != '\0' || p != (unsigned long long)getpid())
            return 0; /* meant for another process (e.g. our parent) */
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(usec, &end, 10);
    if (errno != 0 || *end != '\0' || usec[0] == '-')
        return 0;
    return (uint64_t)v;
}
