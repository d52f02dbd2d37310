/*
 * stream.h: one byte stream on the event loop, the engine under both of the daemon's
 * servers (the protocol connections of conn.c and the HTTP status connections of
 * http_status.c). A stream moves bytes and nothing else: what they mean is its owner's.
 *
 * It owns a libuv stream handle (TCP or Unix pipe) and an idle timer. Reads land in a
 * buffer the owner provides and are handed over through stream_events_t.data; the owner
 * must consume every byte before returning (the buffer is reused by the next read).
 *
 * Output is queued in two buffers, one being written and one filling, so a burst of
 * small replies becomes one write and at most one write is in flight. Both grow to the
 * largest burst seen and are then reused.
 *
 * Backpressure: while more than `budget` bytes wait to be written, the stream stops
 * reading; it resumes below a quarter of the budget. A stream stopped for good
 * (stream_stop_reading) stays stopped.
 *
 * Closing: stream_close closes both handles (and whichever path closes the stream, a
 * write error, stream_close_when_flushed or the idle timer, goes through it, so the
 * owner's `closing` event fires exactly once, synchronously). `closed` fires once both
 * handles are closed; the stream's own memory is released just before, and only then may
 * the owner free the memory that holds the stream (libuv's rule).
 *
 * Everything runs on the loop thread; events are called from libuv callbacks, except
 * `closing`, which runs inside whichever call closed the stream.
 */
#ifndef MPCD_OPS_STREAM_H
#define MPCD_OPS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* A TCP or Unix stream handle, seen as whichever libuv type a call needs. */
typedef union stream_handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} stream_handle_t;

/* What a stream tells its owner, with the owner's context. NULL members are skipped
 * (idle: NULL closes the stream). */
typedef struct stream_events {
    void (*data)(void *owner, const uint8_t *buf, size_t len); /* bytes were read */
    void (*eof)(void *owner, int status); /* UV_EOF or an error; reading has stopped */
    void (*idle)(void *owner);            /* the idle timer fired */
    void (*written)(void *owner);         /* a write finished and the stream is open */
    void (*closing)(void *owner);         /* the stream began closing */
    void (*closed)(void *owner);          /* both handles closed: the owner may free */
} stream_events_t;

typedef struct stream_out {
    uint8_t *buf;
    size_t len, cap;
} stream_out_t;

typedef struct stream {
    stream_handle_t h;
    uv_timer_t idle;
    uv_write_t wreq;
    const stream_events_t *ev;
    void *owner;
    const char *log_name; /* "connection %s: reading paused" at debug level; NULL: silent */
    uint8_t *rbuf;        /* the owner's read buffer */
    size_t rbuf_len;
    size_t budget; /* bytes unsent above which reading pauses */
    stream_out_t out[2];
    int filling; /* out[filling] collects, out[!filling] is being written */
    int handles; /* open libuv handles (stream + idle timer) */
    bool writing;
    bool closing;
    bool reading;     /* uv_read_start is in effect */
    bool read_done;   /* stream_stop_reading: never read again */
    bool read_paused; /* backpressure */
    bool close_when_flushed;
} stream_t;

/* Initialises both handles on loop (cannot fail: libuv's init of a TCP, pipe or timer
 * handle only fails for bad arguments). From here on the stream must be closed with
 * stream_close. rbuf (rbuf_len bytes) must outlive the stream. */
void stream_init(stream_t *s, uv_loop_t *loop, bool is_pipe, const stream_events_t *ev,
                 void *owner, uint8_t *rbuf, size_t rbuf_len, size_t budget);

/* Accepts a pending connection of listener into s (TCP_NODELAY on TCP: replies are small
 * and latency matters more than packet count). 0 or a uv error. */
int stream_accept(stream_t *s, uv_stream_t *listener);

/* Starts reading, and the idle timer when idle_ms > 0 (restarted by every read). 0 or a
 * uv error. */
int stream_start(stream_t *s, uint64_t idle_ms);

/* Restarts the idle timer (slow work is not idleness). */
void stream_touch(stream_t *s);

/* Room for n more bytes at the end of the output, or NULL when the stream is closing or
 * out of memory (then it was closed). stream_commit(s, n) queues them; nothing else may
 * touch the stream in between. */
uint8_t *stream_reserve(stream_t *s, size_t n);
void stream_commit(stream_t *s, size_t n);
/* reserve + copy + commit. 0 (dropped when closing) or -ENOMEM (then closed). */
int stream_write(stream_t *s, const void *buf, size_t len);

/* Stops reading for good; queued output is still written. */
void stream_stop_reading(stream_t *s);
/* Stops reading and closes once every queued byte is written (at once when none is). */
void stream_close_when_flushed(stream_t *s);
/* Closes both handles; idempotent. */
void stream_close(stream_t *s);
/* The handles no longer keep the loop alive. */
void stream_unref(stream_t *s);

size_t stream_unsent(const stream_t *s);
static inline bool stream_over_budget(const stream_t *s)
{
    return stream_unsent(s) > s->budget;
}
/* Nothing queued and nothing being written. */
static inline bool stream_flushed(const stream_t *s)
{
    return !s->writing && !s->out[s->filling].len;
}
static inline uv_stream_t *stream_uv(stream_t *s)
{
    return &s->h.stream;
}

#endif
