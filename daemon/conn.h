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
 * Backpressure: while more than CONN_OUT_HIGH reply bytes wait for a client that does not
 * read, the connection stops reading its requests (the client's sends block in the
 * kernel) and resumes below CONN_OUT_LOW, so a slow reader cannot grow the daemon's memory.
 *
 * Memory: payloads wait in one byte buffer, replies go out through two buffers (one being
 * written, one filling), and protobuf-c unpacks into a per-connection arena; all grow to
 * the largest message seen and are then reused, so a steady stream of steps allocates
 * nothing.
 */
#ifndef MPCD_CONN_H
#define MPCD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "framing.h"
#include "listen.h"
#include "mpc.pb-c.h"
#include "session.h"
#include "workq.h"

#define CONN_OUT_HIGH (1u << 20)
#define CONN_OUT_LOW  (256u << 10)

struct server;
struct registry_model;
struct reload_req;

typedef struct conn_entry {
    size_t off, len;        /* payload bytes in qbuf */
    struct timespec t_read; /* when its last bytes were read */
} conn_entry_t;

typedef struct conn_out {
    uint8_t *buf;
    size_t len, cap;
} conn_out_t;

typedef struct conn {
    listen_stream_t h;
    uv_timer_t idle;
    uv_write_t wreq;
    struct server *srv;
    struct conn *prev, *next; /* the server's list */
    char peer[96];
    struct timespec t_open;
    frame_decoder_t *dec;
    /* waiting requests */
    uint8_t *qbuf;
    size_t qcap, qlen;  /* bytes; entries index into it */
    conn_entry_t *ents; /* ring of max_queued */
    int ents_cap, nent, ent_head;
    /* replies */
    conn_out_t out[2];
    int filling; /* out[filling] collects, out[!filling] is being written */
    bool writing;
    /* protobuf-c arena */
    uint8_t *arena;
    size_t arena_cap, arena_used;
    ProtobufCAllocator alloc;
    /* lifecycle */
    int handles;             /* open libuv handles (stream + timer) */
    bool closing;            /* conn_close called */
    bool reading;            /* uv_read_start is in effect */
    bool read_done;          /* conn_stop_reading: never read again */
    bool read_paused;        /* backpressure: too many reply bytes unsent */
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
    struct reload_req *reload; /* pending Reload of this connection */
    void *rec;                 /* record.c's episode buffer (NULL: not recording) */
} conn_t;

/* Provided by the server (server.c). */
void server_conn_readable(struct server *srv, conn_t *c); /* requests were queued */
void server_conn_overflow(struct server *srv, conn_t *c,  /* one answered OVERLOADED */
                          const Mpc__V1__Request *r);     /* NULL: undecodable */
void server_conn_fatal(struct server *srv, conn_t *c, int frame_err); /* stream unusable */
void server_conn_closed(struct server *srv, conn_t *c);               /* handles closed */
double server_idle_timeout_s(const struct server *srv);

/* Called by the server with a listener's accept; the conn is linked into the server's
 * list by the caller. 0 or a uv error (then nothing is allocated). */
int conn_accept(struct server *srv, uv_stream_t *listener, bool is_pipe, size_t max_frame,
                int max_queued, conn_t **out);

/* The head request's payload, or false when the queue is empty. */
bool conn_peek(conn_t *c, const uint8_t **payload, size_t *len, struct timespec *t_read);
/* Drops the head request (after it was answered or handed to a worker). */
void conn_pop(conn_t *c);
int conn_queued(const conn_t *c);

/* Unpacks a payload into the connection's arena (valid until the next unpack). NULL when
 * the bytes are not a Request or the body is missing. */
Mpc__V1__Request *conn_unpack(conn_t *c, const uint8_t *payload, size_t len);

/* Queues a reply for writing. 0 or -ENOMEM (then the connection is closed). */
int conn_send(conn_t *c, const Mpc__V1__Reply *rep);
int conn_send_error(conn_t *c, uint64_t id, Mpc__V1__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

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
