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

#ifdef MPCD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

int listen_parse(const char *text, listen_addr_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!strncmp(text, "unix:", 5)) {
        const char *p = text + 5;
        if (!strncmp(p, "//", 2))
            p += 2;
        if (!*p) {
            snprintf(err, errlen, "%s: empty socket path", text);
            return -EINVAL;
        }
        if (strlen(p) >= sizeof out->path) {
            snprintf(err, errlen, "%s: socket path longer than %zu bytes", text,
                     sizeof out->path - 1);
            return -EINVAL;
        }
        out->kind = LISTEN_UNIX;
        strcpy(out->path, p);
        return 0;
    }
    if (strncmp(text, "tcp://", 6)) {
        snprintf(err, errlen, "%s: unknown scheme (expected tcp://HOST:PORT or unix:PATH)",
                 text);
        return -EINVAL;
    }
    const char *h = text + 6, *colon;
    size_t hl;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "%s: expected tcp://[IPV6]:PORT", text);
            return -EINVAL;
        }
        h++;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon) {
            snprintf(err, errlen, "%s: missing ':PORT'", text);
            return -EINVAL;
        }
        if (memchr(h, ':', (size_t)(colon - h))) {
            snprintf(err, errlen, "%s: IPv6 addresses need brackets: tcp://[::1]:PORT", text);
            return -EINVAL;
        }
        hl = (size_t)(colon - h);
    }
    if (hl == 0 || hl >= sizeof out->host) {
        snprintf(err, errlen, "%s: missing or too long host", text);
        return -EINVAL;
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || port < 0 || port > 65535) {
        snprintf(err, errlen, "%s: port must be 0..65535", text);
        return -EINVAL;
    }
    out->kind = LISTEN_TCP;
    memcpy(out->host, h, hl);
    out->host[hl] = 0;
    out->port = (int)port;
    return 0;
}

static int open_tcp(uv_loop_t *loop, listener_t *l, const listen_addr_t *a, char *err,
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
        snprintf(err, errlen, "tcp://%s:%d: %s", a->host, a->port, gai_strerror(rc));
        return -EINVAL;
    }
    uv_tcp_init(loop, &l->h.tcp);
    l->inited = true;
    rc = uv_tcp_bind(&l->h.tcp, res->ai_addr, res->ai_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    freeaddrinfo(res);
    if (rc)
        snprintf(err, errlen, "%s: bind: %s", l->name, uv_strerror(rc));
    return rc;
}

static int open_unix(uv_loop_t *loop, listener_t *l, const listen_addr_t *a, int mode,
                     char *err, size_t errlen)
{
    struct stat st;
    if (lstat(a->path, &st) == 0) {
        /* A socket file is what a previous daemon left; anything else is not ours. */
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s: exists and is not a socket", l->name);
            return -EEXIST;
        }
        unlink(a->path);
    }
    uv_pipe_init(loop, &l->h.pipe, 0);
    l->inited = true;
    int rc = uv_pipe_bind(&l->h.pipe, a->path);
    if (rc) {
        snprintf(err, errlen, "%s: bind: %s", l->name, uv_strerror(rc));
        return rc;
    }
    l->unlink_path = true;
    snprintf(l->path, sizeof l->path, "%s", a->path);
    if (chmod(a->path, (mode_t)mode)) {
        rc = -errno;
        snprintf(err, errlen, "%s: chmod %o: %s", l->name, (unsigned)mode, strerror(errno));
    }
    return rc;
}

void listen_format_addr(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)ss, host, sizeof host);
        snprintf(out, outlen, "[%s]:%d", host,
                 ntohs(((const struct sockaddr_in6 *)ss)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)ss, host, sizeof host);
        snprintf(out, outlen, "%s:%d", host, ntohs(((const struct sockaddr_in *)ss)->sin_port));
    }
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
    listen_format_addr(&ss, out->name, sizeof out->name);
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
    listen_format_addr(&ss, addr, sizeof addr);
    snprintf(l->name, sizeof l->name, "tcp://%s", addr);
}

int listen_open(uv_loop_t *loop, listener_t *l, const listen_addr_t *a, int unix_mode,
                uv_connection_cb cb, char *err, size_t errlen)
{
    l->kind = a->kind;
    if (a->kind == LISTEN_TCP)
        snprintf(l->name, sizeof l->name,
                 strchr(a->host, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d", a->host, a->port);
    else
        snprintf(l->name, sizeof l->name, "unix:%s", a->path);
    int rc = a->kind == LISTEN_TCP ? open_tcp(loop, l, a, err, errlen)
                                   : open_unix(loop, l, a, unix_mode, err, errlen);
    if (rc)
        return rc;
    if (a->kind == LISTEN_TCP && a->port == 0)
        name_bound_tcp(l); /* name the port the kernel picked */
    if ((rc = uv_listen(&l->h.stream, 128, cb)))
        snprintf(err, errlen, "%s: listen: %s", l->name, uv_strerror(rc));
    return rc;
}

int listen_open_fd(uv_loop_t *loop, listener_t *l, int fd, uv_connection_cb cb, char *err,
                   size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc;
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) {
        snprintf(err, errlen, "activated fd %d: getsockname: %s", fd, strerror(errno));
        return -errno;
    }
    if (ss.ss_family == AF_UNIX) {
        l->kind = LISTEN_UNIX;
        snprintf(l->name, sizeof l->name, "unix:%s", ((struct sockaddr_un *)&ss)->sun_path);
        uv_pipe_init(loop, &l->h.pipe, 0);
        l->inited = true;
        rc = uv_pipe_open(&l->h.pipe, fd);
    } else {
        l->kind = LISTEN_TCP;
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
        snprintf(err, errlen, "%s: %s", l->name, uv_strerror(rc));
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
