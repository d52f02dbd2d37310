/*
 * address.c: parse "tcp://HOST:PORT" / "unix:PATH" and connect to it with a timeout.
 *
 * Connecting is non-blocking connect() + poll() + SO_ERROR, so an unreachable host costs
 * at most the caller's timeout. Host names are resolved with getaddrinfo() and every
 * result is tried in order (e.g. "localhost" resolving to ::1 then 127.0.0.1).
 */
#include "address.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deadline.h"
#include "mpcclient.h"

static int parse_fail(char *err, size_t errlen, const char *text, const char *why)
{
    snprintf(err, errlen, "bad address '%s': %s (expected tcp://HOST:PORT or unix:PATH)",
             text, why);
    return MPC_CLIENT_EINVAL;
}

static int parse_unix(const char *text, const char *path, mpc_address_t *out, char *err,
                      size_t errlen)
{
    /* Accept the URL-ish spelling unix:///run/mpcd.sock as well. */
    if (strncmp(path, "//", 2) == 0)
        path += 2;
    if (path[0] == '\0')
        return parse_fail(err, errlen, text, "empty socket path");
    if (strlen(path) >= sizeof(out->path))
        return parse_fail(err, errlen, text, "socket path too long");
    out->kind = MPC_ADDRESS_UNIX;
    strcpy(out->path, path);
    return 0;
}

static int parse_tcp(const char *text, const char *hostport, mpc_address_t *out, char *err,
                     size_t errlen)
{
    const char *host = hostport, *host_end, *colon;
    if (host[0] == '[') {
        host_end = strchr(host, ']');
        if (host_end == NULL)
            return parse_fail(err, errlen, text, "missing ']' after IPv6 address");
        host++;
        colon = host_end + 1;
        if (*colon != ':')
            return parse_fail(err, errlen, text, "missing ':PORT' after ']'");
    } else {
        colon = strrchr(host, ':');
        if (colon == NULL)
            return parse_fail(err, errlen, text, "missing ':PORT'");
        host_end = colon;
        if (memchr(host, ':', (size_t)(host_end - host)) != NULL)
            return parse_fail(err, errlen, text, "IPv6 addresses need brackets: tcp://[::1]:7070");
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0)
        return parse_fail(err, errlen, text, "empty host");
    if (host_len >= sizeof(out->host))
        return parse_fail(err, errlen, text, "host name too long");

    const char *port = colon + 1;
    size_t port_len = strlen(port);
    if (port_len == 0 || port_len > 5 || strspn(port, "0123456789") != port_len)
        return parse_fail(err, errlen, text, "port must be a number from 1 to 65535");
    long port_num = strtol(port, NULL, 10);
    if (port_num < 1 || port_num > 65535)
        return parse_fail(err, errlen, text, "port must be a number from 1 to 65535");

    out->kind = MPC_ADDRESS_TCP;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    snprintf(out->port, sizeof(out->port), "%ld", port_num);
    return 0;
}

int mpc_address_parse(const char *text, mpc_address_t *out, char *err, size_t errlen)
{
    if (text == NULL || text[0] == '\0')
        text = MPC_CLIENT_DEFAULT_ADDRESS;
    memset(out, 0, sizeof(*out));
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text, text + 5, out, err, errlen);
    if (strncmp(text, "tcp://", 6) == 0)
        return parse_tcp(text, text + 6, out, err, errlen);
    return parse_fail(err, errlen, text, "unknown scheme");
}

void mpc_address_format(const mpc_address_t *a, char *out, size_t outlen)
{
    if (a->kind == MPC_ADDRESS_UNIX)
        snprintf(out, outlen, "unix:%s", a->path);
    else if (strchr(a->host, ':') != NULL)
        snprintf(out, outlen, "tcp://[%s]:%s", a->host, a->port);
    else
        snprintf(out, outlen, "tcp://%s:%s", a->host, a->port);
}

/* One non-blocking connect attempt; returns the fd, or a negative code with err filled. */
static int connect_one(int family, const struct sockaddr *sa, socklen_t salen,
                       int64_t deadline, char *err, size_t errlen)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return MPC_CLIENT_ECONNECT;
    }
    if (connect(fd, sa, salen) == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EAGAIN) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return MPC_CLIENT_ECONNECT;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;
    do
        n = poll(&p, 1, mpc_deadline_left_ms(deadline));
    while (n < 0 && errno == EINTR);
    if (n == 0) {
        snprintf(err, errlen, "connection timed out");
        close(fd);
        return MPC_CLIENT_ETIMEDOUT;
    }
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr != 0) {
        snprintf(err, errlen, "%s", strerror(soerr));
        close(fd);
        return MPC_CLIENT_ECONNECT;
    }
    return fd;
}

static int connect_tcp(const mpc_address_t *a, int64_t deadline, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(a->host, a->port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", a->host, gai_strerror(gai));
        return MPC_CLIENT_ECONNECT;
    }
    int fd = MPC_CLIENT_ECONNECT;
    char why[160] = "no address";
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline, why,
                         sizeof(why));
        if (fd >= 0 || fd == MPC_CLIENT_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        /* Steps are small request/reply messages: never wait for Nagle. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    } else {
        char name[300];
        mpc_address_format(a, name, sizeof(name));
        snprintf(err, errlen, "cannot connect to %s: %s", name, why);
    }
    return fd;
}

int mpc_address_connect(const mpc_address_t *a, int timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = mpc_deadline_in(timeout_ms);
    if (a->kind == MPC_ADDRESS_TCP)
        return connect_tcp(a, deadline, err, errlen);

    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, a->path, sizeof(sun.sun_path));
    char why[160];
    int fd = connect_one(AF_UNIX, (const struct sockaddr *)&sun, sizeof(sun), deadline, why,
                         sizeof(why));
    if (fd < 0) {
        char name[sizeof(a->path) + 8];
        mpc_address_format(a, name, sizeof(name));
        snprintf(err, errlen, "cannot connect to %s: %s", name, why);
    }
    return fd;
}
