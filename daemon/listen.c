/*
 * listen.c: protocol listeners on TCP and Unix sockets, and socket activation (listen.h).
 */
#include "listen.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errbuf.h"

#ifdef MPCD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static int open_tcp(uv_loop_t *loop, listener_t *l, const address_t *a, char *err,
                    size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", a->port);
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc) {
        errbuf_set(err, errlen, "%s: %s", l->name, gai_strerror(rc));
        return -EINVAL;
    }
    uv_tcp_init(loop, &l->h.tcp);
    l->inited = true;
    rc = uv_tcp_bind(&l->h.tcp, res->ai_addr, res->ai_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    freeaddrinfo(res);
    if (rc)
        errbuf_set(err, errlen, "%s: bind: %s", l->name, uv_strerror(rc));
    return rc;
}

static int open_unix(uv_loop_t *loop, listener_t *l, const address_t *a, int mode, char *err,
                     size_t errlen)
{
    struct stat st;
    if (lstat(a->path, &st) == 0) {
        /* A socket file is what a previous daemon left; anything else is not ours. */
        if (!S_ISSOCK(st.st_mode)) {
            errbuf_set(err, errlen, "%s: exists and is not a socket", l->name);
            return -EEXIST;
        }
        unlink(a->path);
    }
    uv_pipe_init(loop, &l->h.pipe, 0);
    l->inited = true;
    int rc = uv_pipe_bind(&l->h.pipe, a->path);
    if (rc) {
        errbuf_set(err, errlen, "%s: bind: %s", l->name, uv_strerror(rc));
        return rc;
    }
    l->unlink_path = true;
    snprintf(l->path, sizeof l->path, "%s", a->path);
    if (chmod(a->path, (mode_t)mode)) {
        rc = -errno;
        errbuf_set(err, errlen, "%s: chmod %o: %s", l->name, (unsigned)mode, strerror(errno));
    }
    return rc;
}

void listen_peer_of(uv_stream_t *s, bool is_unix, listen_peer_t *out)
{
    memset(out, 0, sizeof *out);
    out->is_unix = is_unix;
    snprintf(out->name, sizeof out->name, "?");
    snprintf(out->key, sizeof out->key, "?");
    if (is_unix) {
        uv_os_fd_t fd;
        struct ucred cred;
        socklen_t len = sizeof cred;
        snprintf(out->name, sizeof out->name, "unix");
        snprintf(out->key, sizeof out->key, "unix");
        if (!uv_fileno((uv_handle_t *)s, &fd) &&
            !getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) && len == sizeof cred) {
            out->has_uid = true;
            out->uid = cred.uid;
            snprintf(out->name, sizeof out->name, "unix(uid %u, pid %d)", (unsigned)cred.uid,
                     (int)cred.pid);
            snprintf(out->key, sizeof out->key, "uid:%u", (unsigned)cred.uid);
        }
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername((uv_tcp_t *)s, (struct sockaddr *)&ss, &len))
        return;
    address_format_sockaddr(&ss, out->name, sizeof out->name);
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)&ss, out->key, sizeof out->key);
    else
        uv_ip4_name((const struct sockaddr_in *)&ss, out->key, sizeof out->key);
}

/* l->name from the bound address ("tcp://[::1]:7070"). */
static void name_bound_tcp(listener_t *l)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char addr[INET6_ADDRSTRLEN + 10];
    if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len))
        return;
    address_format_sockaddr(&ss, addr, sizeof addr);
    snprintf(l->name, sizeof l->name, "tcp://%s", addr);
}

int listen_open(uv_loop_t *loop, listener_t *l, const address_t *a, int unix_mode,
                uv_connection_cb cb, char *err, size_t errlen)
{
    l->kind = a->kind;
    address_format(a, l->name, sizeof l->name);
    int rc = a->kind == ADDRESS_TCP ? open_tcp(loop, l, a, err, errlen)
                                    : open_unix(loop, l, a, unix_mode, err, errlen);
    if (rc)
        return rc;
    if (a->kind == ADDRESS_TCP && a->port == 0)
        name_bound_tcp(l); /* name the port the kernel picked */
    if ((rc = uv_listen(&l->h.stream, 128, cb)))
        errbuf_set(err, errlen, "%s: listen: %s", l->name, uv_strerror(rc));
    return rc;
}

int listen_open_fd(uv_loop_t *loop, listener_t *l, int fd, uv_connection_cb cb, char *err,
                   size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc;
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) {
        int e = errno;
        errbuf_set(err, errlen, "activated fd %d: getsockname: %s", fd, strerror(e));
        return -e;
    }
    if (ss.ss_family == AF_UNIX) {
        l->kind = ADDRESS_UNIX;
        snprintf(l->name, sizeof l->name, "unix:%s", ((struct sockaddr_un *)&ss)->sun_path);
        uv_pipe_init(loop, &l->h.pipe, 0);
        l->inited = true;
        rc = uv_pipe_open(&l->h.pipe, fd);
    } else {
        l->kind = ADDRESS_TCP;
        snprintf(l->name, sizeof l->name, "tcp fd %d", fd);
        uv_tcp_init(loop, &l->h.tcp);
        l->inited = true;
        rc = uv_tcp_open(&l->h.tcp, fd);
        if (!rc)
            name_bound_tcp(l);
    }
    if (!rc)
        rc = uv_listen(&l->h.stream, 128, cb);
    if (rc)
        errbuf_set(err, errlen, "%s: %s", l->name, uv_strerror(rc));
    return rc;
}

int listen_activation_fds(int *fds, int max)
{
#ifdef MPCD_HAVE_SYSTEMD
    int n = sd_listen_fds(1);
    if (n <= 0)
        return 0;
    if (n > max)
        n = max;
    for (int i = 0; i < n; i++)
        fds[i] = SD_LISTEN_FDS_START + i;
    return n;
#else
    (void)fds;
    (void)max;
    return 0;
#endif
}

void listen_close(listener_t *l, uv_close_cb cb)
{
    if (l->unlink_path) {
        unlink(l->path);
        l->unlink_path = false;
    }
    if (l->inited && !uv_is_closing(&l->h.handle))
        uv_close(&l->h.handle, cb);
}
