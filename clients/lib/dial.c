/*
 * dial.c: connect to a daemon address with a timeout (dial.h).
 *
 * Connecting is non-blocking connect() + poll() + SO_ERROR, so an unreachable host costs
 * at most the caller's timeout. Host names are resolved with getaddrinfo() and every
 * result is tried in order (e.g. "localhost" resolving to ::1 then 127.0.0.1); IP literals
 * and Unix paths use the socket address the parser already built.
 */
#include "dial.h"

#include <errno.h>
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
#include "errbuf.h"
#include "mpcclient.h"

/* One non-blocking connect attempt; returns the fd, or a negative code with err filled. */
static int connect_one(int family, const struct sockaddr *sa, socklen_t salen, int64_t deadline,
                       char *err, size_t errlen)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        errbuf_set(err, errlen, "socket: %s", strerror(errno));
        return MPC_CLIENT_ECONNECT;
    }
    if (connect(fd, sa, salen) == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EAGAIN) {
        errbuf_set(err, errlen, "%s", strerror(errno));
        close(fd);
        return MPC_CLIENT_ECONNECT;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;
    do
        n = poll(&p, 1, mpc_deadline_left_ms(deadline));
    while (n < 0 && errno == EINTR);
    if (n == 0) {
        errbuf_set(err, errlen, "connection timed out");
        close(fd);
        return MPC_CLIENT_ETIMEDOUT;
    }
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr != 0) {
        errbuf_set(err, errlen, "%s", strerror(soerr));
        close(fd);
        return MPC_CLIENT_ECONNECT;
    }
    return fd;
}

/* A host name: every address it resolves to, in getaddrinfo's order. */
static int connect_name(const address_t *a, int64_t deadline, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", a->port);
    int gai = getaddrinfo(a->host, port, &hints, &res);
    if (gai != 0) {
        errbuf_set(why, whylen, "cannot resolve '%s': %s", a->host, gai_strerror(gai));
        return MPC_CLIENT_ECONNECT;
    }
    int fd = MPC_CLIENT_ECONNECT;
    errbuf_set(why, whylen, "no address");
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline, why, whylen);
        if (fd >= 0 || fd == MPC_CLIENT_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return fd;
}

int mpc_dial(const address_t *a, int timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = mpc_deadline_in(timeout_ms);
    char why[160];
    int fd = a->salen > 0 ? connect_one(a->sa.ss_family, (const struct sockaddr *)&a->sa,
                                        a->salen, deadline, why, sizeof(why))
                          : connect_name(a, deadline, why, sizeof(why));
    if (fd < 0) {
        char name[sizeof(a->host) + sizeof(a->path)];
        address_format(a, name, sizeof(name));
        errbuf_set(err, errlen, "cannot connect to %s: %s", name, why);
        return fd;
    }
    if (a->kind == ADDRESS_TCP) {
        /* Steps are small request/reply messages: never wait for Nagle. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}
