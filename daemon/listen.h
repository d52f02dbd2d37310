/*
 * listen.h: the daemon's protocol listeners: TCP/Unix binding on libuv and systemd socket
 * activation. Addresses are parsed by common/address.h (ADDRESS_LISTEN: tcp://HOST:PORT,
 * tcp://[IPV6]:PORT, unix:PATH; port 0 picks a free one).
 *
 * A stale Unix socket file left by a crashed daemon is replaced; any other file at that
 * path is an error.
 */
#ifndef MPCD_LISTEN_H
#define MPCD_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/un.h>
#include <uv.h>

#include "address.h"

/* A TCP or Unix stream handle, seen as whichever libuv type a call needs. */
typedef union listen_stream {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} listen_stream_t;

typedef struct listener {
    listen_stream_t h;
    address_kind_t kind;
    char name[300];   /* for logs: "tcp://127.0.0.1:7070", "unix:/run/mpcd.sock" */
    bool inited;      /* the handle was initialised (must be closed) */
    bool unlink_path; /* we created the socket file: remove it on close */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    void *data; /* the server's */
} listener_t;

/* Binds and listens (backlog 128); cb is libuv's connection callback. The listener's
 * handle is initialised on loop (close it with listen_close). 0 or a negative errno/uv
 * error with err filled. */
int listen_open(uv_loop_t *loop, listener_t *l, const address_t *a, int unix_mode,
                uv_connection_cb cb, char *err, size_t errlen);

/* Wraps an inherited listening descriptor (socket activation). */
int listen_open_fd(uv_loop_t *loop, listener_t *l, int fd, uv_connection_cb cb, char *err,
                   size_t errlen);

/* Descriptors passed by systemd (SD_LISTEN_FDS_START..), or 0 when none / not built with
 * libsystemd. Fills at most max. */
int listen_activation_fds(int *fds, int max);

/* Who is on the other end of an accepted connection. */
typedef struct listen_peer {
    char name[96]; /* for logs: "127.0.0.1:50122", "[::1]:50122", "unix(uid 1000, pid 42)" */
    char key[64];  /* the peer without its port, for per-peer limits: "127.0.0.1", "uid:1000" */
    bool is_unix;
    bool has_uid; /* Unix socket and SO_PEERCRED answered */
    unsigned uid;
} listen_peer_t;

/* Fills out for an accepted stream (never fails: unknown parts read "?"). */
void listen_peer_of(uv_stream_t *s, bool is_unix, listen_peer_t *out);

/* Closes the handle (asynchronously) and removes the socket file we created. */
void listen_close(listener_t *l, uv_close_cb cb);

#endif
