/*
 * conn.c: one client connection: the protocol on top of a stream (ops/stream.h): bytes
 * read -> frame decoder -> request queue, replies packed into the stream, the Hello timer
 * (see conn.h).
 */
#include "conn.h"
#include "mono.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listen.h"
#include "log.h"
#include "wire.h"

#define READ_CHUNK 16384
#define ARENA_MIN  16384

/* The stream reads into one buffer per connection: the decoder consumes every byte before
 * the next read. */
typedef struct conn_with_rbuf {
    conn_t c;
    uint8_t rbuf[READ_CHUNK];
} conn_with_rbuf_t;

/* ---- protobuf-c arena ---- */

static void *arena_alloc(void *data, size_t size)
{
    conn_t *c = data;
    size_t at = (c->arena_used + 15) & ~(size_t)15;
    if (at + size > c->arena_cap) {
        c->arena_used = SIZE_MAX; /* marks exhaustion for conn_unpack */
        return NULL;
    }
    c->arena_used = at + size;
    return c->arena + at;
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p; /* reset wholesale before the next unpack */
}

Mpc__V1__Request *conn_unpack(conn_t *c, const uint8_t *payload, size_t len)
{
    for (;;) {
        c->arena_used = 0;
        Mpc__V1__Request *r = mpc__v1__request__unpack(&c->alloc, len, payload);
        if (r)
            return r;
        if (c->arena_used != SIZE_MAX)
            return NULL; /* the bytes are bad, not the arena small */
        /* Unpacked messages are at most a few times their wire size; grow and retry. */
        size_t cap = c->arena_cap * 2;
        if (cap > 8 * len + (1u << 20))
            return NULL;
        uint8_t *a = realloc(c->arena, cap);
        if (!a)
            return NULL;
        c->arena = a;
        c->arena_cap = cap;
    }
}

/* ---- queue ---- */

/* Doubles the request ring (entries stay in order from index 0). */
static int grow_ring(conn_t *c)
{
    int cap = c->ents_cap * 2;
    if (cap > CONN_MAX_PAUSED)
        return -1;
    conn_entry_t *e = malloc(sizeof *e * (size_t)cap);
    if (!e)
        return -1;
    for (int i = 0; i < c->nent; i++)
        e[i] = c->ents[(c->ent_head + i) % c->ents_cap];
    free(c->ents);
    c->ents = e;
    c->ents_cap = cap;
    c->ent_head = 0;
    return 0;
}

static int on_frame(void *ctx, const uint8_t *payload, size_t len)
{
    conn_t *c = ctx;
    /* Only requests waiting behind work in progress count against max-queued; ones held
     * back by the client's own unread replies (the budget) wait until it reads. Reading
     * stops over the budget, so at most one read chunk of them piles up. */
    if (c->nent == c->ents_cap && (c->busy || !conn_over_budget(c) || grow_ring(c))) {
        c->arena_used = 0;
        /* Answered right away; the unpack only finds the id to echo. */
        Mpc__V1__Request *r = mpc__v1__request__unpack(&c->alloc, len, payload);
        conn_send_error(c, wire_request_id(r, payload, len), MPC__V1__ERROR__CODE__OVERLOADED,
                        "more than %d requests queued on this connection", c->max_queued);
        c->ev->overflow(c->owner, c, r);
        return 0;
    }
    if (c->qlen + len > c->qcap) {
        size_t cap = c->qcap ? c->qcap : 4096;
        while (cap < c->qlen + len)
            cap *= 2;
        uint8_t *q = realloc(c->qbuf, cap);
        if (!q)
            return -1;
        c->qbuf = q;
        c->qcap = cap;
    }
    memcpy(c->qbuf + c->qlen, payload, len);
    conn_entry_t *e = &c->ents[(c->ent_head + c->nent) % c->ents_cap];
    e->off = c->qlen;
    e->len = len;
    e->t_read = mono_now();
    c->qlen += len;
    c->nent++;
    /* Serve it now if nothing is ahead of it: only requests that really wait (behind a
     * step or a reload) count against max-queued, not a burst read in one chunk. */
    if (!c->busy)
        c->ev->readable(c->owner, c);
    return 0;
}

bool conn_peek(conn_t *c, const uint8_t **payload, size_t *len, double *t_read)
{
    if (!c->nent)
        return false;
    const conn_entry_t *e = &c->ents[c->ent_head];
    *payload = c->qbuf + e->off;
    *len = e->len;
    *t_read = e->t_read;
    return true;
}

void conn_pop(conn_t *c)
{
    if (!c->nent)
        return;
    c->ent_head = (c->ent_head + 1) % c->ents_cap;
    c->nent--;
    if (!c->nent) {
        c->qlen = 0;
        if (c->ents_cap > c->max_queued) { /* a burst grew the ring: give it back */
            conn_entry_t *e = realloc(c->ents, sizeof *e * (size_t)c->max_queued);
            if (e) {
                c->ents = e;
                c->ents_cap = c->max_queued;
                c->ent_head = 0;
            }
        }
        return;
    }
    /* Pipelining clients may never let the queue run empty: slide the bytes down once
     * the consumed prefix is at least half of the buffer, so it cannot grow forever. */
    size_t off = c->ents[c->ent_head].off;
    if (off * 2 < c->qlen)
        return;
    memmove(c->qbuf, c->qbuf + off, c->qlen - off);
    c->qlen -= off;
    for (int i = 0; i < c->nent; i++)
        c->ents[(c->ent_head + i) % c->ents_cap].off -= off;
}

int conn_queued(const conn_t *c)
{
    return c->nent;
}

/* ---- writing ---- */

int conn_send(conn_t *c, const Mpc__V1__Reply *rep)
{
    if (c->closing)
        return 0;
    size_t n = wire_reply_frame_size(rep);
    uint8_t *p = stream_reserve(&c->s, n);
    if (!p)
        return -ENOMEM; /* the stream closed */
    stream_commit(&c->s, wire_pack_reply(rep, p));
    return 0;
}

static int send_errorv(conn_t *c, uint64_t id, Mpc__V1__Error__Code code,
                       uint32_t retry_after_ms, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    Mpc__V1__Error e = MPC__V1__ERROR__INIT;
    e.code = code;
    e.message = msg;
    e.retry_after_ms = retry_after_ms;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_ERROR;
    rep.error = &e;
    return conn_send(c, &rep);
}

int conn_send_error(conn_t *c, uint64_t id, Mpc__V1__Error__Code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = send_errorv(c, id, code, 0, fmt, ap);
    va_end(ap);
    return rc;
}

int conn_send_refusal(conn_t *c, uint64_t id, Mpc__V1__Error__Code code,
                      uint32_t retry_after_ms, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = send_errorv(c, id, code, retry_after_ms, fmt, ap);
    va_end(ap);
    return rc;
}

bool conn_over_budget(const conn_t *c)
{
    return stream_over_budget(&c->s);
}

void conn_stop_reading(conn_t *c)
{
    stream_stop_reading(&c->s);
}

/* ---- stream events ---- */

static void on_data(void *owner, const uint8_t *buf, size_t len)
{
    conn_t *c = owner;
    int rc = frame_decoder_feed(c->dec, buf, len, on_frame, c);
    if (rc) {
        conn_stop_reading(c);
        c->ev->fatal(c->owner, c, rc);
    }
    c->ev->readable(c->owner, c);
}

static void on_eof(void *owner, int status)
{
    (void)status;
    /* EOF or error: the client is gone; an in-flight step finishes and is dropped. */
    conn_close(owner);
}

static void on_written(void *owner)
{
    conn_t *c = owner;
    if (!c->s.writing && c->close_when_flushed) {
        conn_close(c);
        return;
    }
    c->ev->readable(c->owner, c);
}

static void on_idle(void *owner)
{
    conn_t *c = owner;
    if (c->busy || c->nent || c->s.writing) {
        stream_touch(&c->s); /* slow work is not idleness */
        return;
    }
    conn_close(c);
}

static void handle_gone(conn_t *c)
{
    if (--c->handles == 0)
        c->ev->closed(c->owner, c);
}

static void on_hello_timer_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

static void on_stream_closed(void *owner)
{
    handle_gone(owner);
}

/* Whichever path closed the stream (conn_close, a write error, the idle timer). */
static void on_closing(void *owner)
{
    conn_t *c = owner;
    c->closing = true;
    uv_close((uv_handle_t *)&c->hello_timer, on_hello_timer_closed);
}

static const stream_events_t stream_events = {
    .data = on_data,
    .eof = on_eof,
    .idle = on_idle,
    .written = on_written,
    .closing = on_closing,
    .closed = on_stream_closed,
};

/* ---- Hello ---- */

static void on_hello_timeout(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->hello_done)
        return;
    mpcd_log(MPCD_LOG_INFO, "connection %s: no Hello in time; closing", c->peer.name);
    c->hello_timed_out = true;
    conn_close(c);
}

void conn_hello_done(conn_t *c)
{
    c->hello_done = true;
    if (!c->closing)
        uv_timer_stop(&c->hello_timer);
}

/* ---- lifecycle ---- */

static void free_conn(conn_t *c)
{
    frame_decoder_destroy(c->dec);
    session_destroy(c->session);
    free(c->qbuf);
    free(c->ents);
    free(c->arena);
    free((conn_with_rbuf_t *)c);
}

int conn_accept(const conn_events_t *ev, void *owner, uv_stream_t *listener, bool is_pipe,
                const conn_limits_t *lim, conn_t **out)
{
    conn_with_rbuf_t *cw = calloc(1, sizeof *cw);
    int rc;
    *out = NULL;
    if (!cw)
        return UV_ENOMEM;
    conn_t *c = &cw->c;
    c->ev = ev;
    c->owner = owner;
    c->ents_cap = c->max_queued = lim->max_queued;
    c->arena_cap = ARENA_MIN;
    c->alloc = (ProtobufCAllocator){arena_alloc, arena_free, c};
    if (!(c->ents = calloc((size_t)lim->max_queued, sizeof *c->ents)) ||
        !(c->arena = malloc(c->arena_cap)) || frame_decoder_create(lim->max_frame, &c->dec)) {
        free_conn(c);
        return UV_ENOMEM;
    }
    stream_init(&c->s, listener->loop, is_pipe, &stream_events, c, cw->rbuf, READ_CHUNK,
                lim->max_unsent);
    uv_timer_init(listener->loop, &c->hello_timer);
    c->hello_timer.data = c;
    c->handles = 2; /* the stream, the Hello timer */
    c->t_open = mono_now();
    if ((rc = stream_accept(&c->s, listener))) {
        conn_close(c);
        return rc;
    }
    listen_peer_of(stream_uv(&c->s), is_pipe, &c->peer);
    c->s.log_name = c->peer.name;
    uint64_t idle_ms = lim->idle_timeout_s > 0 ? (uint64_t)(lim->idle_timeout_s * 1000) : 0;
    if ((rc = stream_start(&c->s, idle_ms))) {
        conn_close(c);
        return rc;
    }
    if (lim->hello_timeout_s > 0)
        uv_timer_start(&c->hello_timer, on_hello_timeout,
                       (uint64_t)(lim->hello_timeout_s * 1000) + 1, 0);
    *out = c;
    return 0;
}

bool conn_idle(const conn_t *c)
{
    return !c->busy && !c->nent && stream_flushed(&c->s);
}

void conn_close(conn_t *c)
{
    stream_close(&c->s); /* on_closing closes the Hello timer */
}

bool conn_maybe_free(conn_t *c)
{
    if (!c->closing || c->handles || c->step.job.queued || c->reload)
        return false;
    free_conn(c);
    return true;
}
