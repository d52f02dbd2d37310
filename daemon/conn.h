/*
 * conn.h: one client connection on the event loop: reading and framing, the bounded
 * queue of requests waiting their turn, the reply buffers, the idle timer and the close
 * lifecycle. What a request means is the server's business (server.c); a connection only
 * moves bytes and keeps order.
 *
 * Requests are answered in the order they arrived, one at a time: the server takes the
 * head of the queue (conn_peek), and the next one only after the head was answered. A
 * request that finds the queue full is answered at once with Error OVERLOADED (it cannot
 * wait in line: that is the point), which is the only reply that may overtake others.
 *
 * Backpressure (the per-connection memory budget, `max-unsent-kb`): while more than the
 * budget of reply bytes wait for a client that does not read, the connection stops
 * reading, and the server stops serving its queued requests (conn_over_budget), so
 * neither a slow reader nor a burst of pipelined requests can grow the daemon's memory;
 * reading resumes below a quarter of the budget.
 *
 * Hello timeout: a connection that has not completed a Hello (conn_hello_done) within
 * `hello-timeout-s` of connecting is closed.
 *
 * Bytes move through a stream (ops/stream.h: the handle, the idle timer, reply buffers,
 * the budget and the close lifecycle); this file adds the protocol on top of it.
 *
 * Memory: payloads wait in one byte buffer, replies go out through the stream's two
 * buffers (one being written, one filling), and protobuf-c unpacks into a per-connection
 * arena; all grow to the largest message seen and are then reused, so a steady stream of
 * steps allocates nothing.
 */
#ifndef MPCD_CONN_H
#define MPCD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "framing.h"
#include "guard.h"
#include "listen.h"
#include "mpc.pb-c.h"
#include "session.h"
#include "stream.h"
#include "workq.h"

/* Requests a connection may hold back while its replies exceed its budget (one read
 * chunk of tiny frames at most; a bound all the same). */
#define CONN_MAX_PAUSED 16384

struct registry_model;
struct reload_req;
typedef struct conn conn_t;

/* What a connection tells its owner (the server), with the owner's context. Called from
 * the connection's libuv callbacks on the loop thread. */
typedef struct conn_events {
    void (*readable)(void *owner, conn_t *c);             /* requests were queued */
    void (*overflow)(void *owner, conn_t *c,              /* one answered OVERLOADED */
                     const Mpc__V1__Request *r);          /* NULL: undecodable */
    void (*fatal)(void *owner, conn_t *c, int frame_err); /* stream unusable */
    void (*closed)(void *owner, conn_t *c);               /* handles closed */
} conn_events_t;

typedef struct conn_entry {
    size_t off, len; /* payload bytes in qbuf */
    double t_read;   /* when its last bytes were read (common/mono.h) */
} conn_entry_t;

struct conn {
    stream_t s; /* the bytes: handle, idle timer, replies, budget */
    uv_timer_t hello_timer;
    const conn_events_t *ev;
    void *owner;
    struct conn *prev, *next; /* the server's list */
    listen_peer_t peer;
    guard_peer_t *gpeer;  /* per-peer record (the server's guard); NULL if none */
    guard_role_t role;    /* what its Hello's token allows */
    bool hello_done;      /* a Hello gave it a role */
    bool hello_timed_out; /* closed for not saying Hello in time */
    double t_open;
    frame_decoder_t *dec;
    /* waiting requests */
    uint8_t *qbuf;
    size_t qcap, qlen;  /* bytes; entries index into it */
    conn_entry_t *ents; /* ring of max_queued (more while the budget holds requests) */
    int ents_cap, nent, ent_head;
    int max_queued;
    /* protobuf-c arena */
    uint8_t *arena;
    size_t arena_cap, arena_used;
    ProtobufCAllocator alloc;
    /* lifecycle */
    int handles;             /* open: the stream (both its handles) + the Hello timer */
    bool closing;            /* the stream began closing */
    bool close_when_flushed; /* after a fatal protocol error */
    /* server state */
    bool busy; /* the head request is being served (step, reload) */
    session_t *session;
    struct {
        workq_job_t job; /* first: the worker finds the conn from it */
        struct conn *c;
        struct registry_model *model;
        uint64_t req_id;
    } step;
    struct reload_req *reload;  /* pending Reload of this connection */
    uint64_t changed_gen;       /* server state generation of its own last change */
    struct record_episode *rec; /* record.h's episode of its session (NULL: none) */
    conn_t *ready_next;         /* the server's list of connections to serve again */
    bool ready_queued;
};

/* Limits a connection is accepted with. */
typedef struct conn_limits {
    size_t max_frame;
    int max_queued;
    size_t max_unsent;      /* bytes */
    double idle_timeout_s;  /* 0: never */
    double hello_timeout_s; /* 0: never */
} conn_limits_t;

/* Called by the server with a listener's accept; ev and owner receive the connection's
 * events; the conn is linked into the server's list by the caller. 0 or a uv error (then
 * nothing is allocated). */
int conn_accept(const conn_events_t *ev, void *owner, uv_stream_t *listener, bool is_pipe,
                const conn_limits_t *lim, conn_t **out);

/* A Hello gave the connection a role: the Hello timeout no longer applies. */
void conn_hello_done(conn_t *c);

/* True while the replies waiting to be written exceed the connection's budget: the
 * server serves no further request of it until they drain (on_write calls
 * server_conn_readable again). */
bool conn_over_budget(const conn_t *c);

/* The head request's payload, or false when the queue is empty. */
bool conn_peek(conn_t *c, const uint8_t **payload, size_t *len, double *t_read);
/* Drops the head request (after it was answered or handed to a worker). */
void conn_pop(conn_t *c);
int conn_queued(const conn_t *c);

/* Unpacks a payload into the connection's arena (valid until the next unpack). NULL when
 * the bytes are not a Request (a Request without a body is returned: its body_case says
 * so). */
Mpc__V1__Request *conn_unpack(conn_t *c, const uint8_t *payload, size_t len);

/* Queues a reply for writing. 0 or -ENOMEM (then the connection is closed). */
int conn_send(conn_t *c, const Mpc__V1__Reply *rep);
int conn_send_error(conn_t *c, uint64_t id, Mpc__V1__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with Error.retry_after_ms (a refusal that says when to try again). */
int conn_send_refusal(conn_t *c, uint64_t id, Mpc__V1__Error__Code code,
                      uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Stops reading new requests (shutdown); queued ones are still served. */
void conn_stop_reading(conn_t *c);
/* True when nothing is queued, in flight or unwritten. */
bool conn_idle(const conn_t *c);
/* Closes the connection; memory is freed once every handle is closed and no step is in
 * flight (the server calls conn_maybe_free then). */
void conn_close(conn_t *c);
/* Frees c if it is closed, its handles are gone and nothing is in flight; true if freed. */
bool conn_maybe_free(conn_t *c);

#endif
