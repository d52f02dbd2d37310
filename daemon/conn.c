/*
 * conn.c: one client connection: read -> frame decoder -> request queue, reply buffers,
 * idle timeout, close lifecycle (see conn.h).
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

/* libuv asks for a read buffer per read; one per connection is enough because the
 * decoder consumes every byte before the next read. */
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

static void kick_write(conn_t *c);
static void apply_backpressure(conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    c->writing = false;
    c->out[!c->filling].len = 0;
    if (status < 0) {
        conn_close(c);
        return;
    }
    kick_write(c);
    if (!c->writing && c->close_when_flushed) {
        conn_close(c);
        return;
    }
    apply_backpressure(c);
    c->ev->readable(c->owner, c);
}

static void kick_write(conn_t *c)
{
    if (c->writing || c->closing || !c->out[c->filling].len)
        return;
    conn_out_t *o = &c->out[c->filling];
    c->filling = !c->filling;
    uv_buf_t b = uv_buf_init((char *)o->buf, (unsigned)o->len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, &c->h.stream, &b, 1, on_write);
    if (rc) {
        o->len = 0;
        conn_close(c);
        return;
    }
    c->writing = true;
}

int conn_send(conn_t *c, const Mpc__V1__Reply *rep)
{
    if (c->closing)
        return 0;
    conn_out_t *o = &c->out[c->filling];
    size_t n = wire_reply_frame_size(rep);
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->len + n)
            cap *= 2;
        uint8_t *b = realloc(o->buf, cap);
        if (!b) {
            conn_close(c);
            return -ENOMEM;
        }
        o->buf = b;
        o->cap = cap;
    }
    o->len += wire_pack_reply(rep, o->buf + o->len);
    kick_write(c);
    apply_backpressure(c);
    return 0;
}

int conn_send_error(conn_t *c, uint64_t id, Mpc__V1__Error__Code code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    Mpc__V1__Error e = MPC__V1__ERROR__INIT;
    e.code = code;
    e.message = msg;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_ERROR;
    rep.error = &e;
    return conn_send(c, &rep);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn_with_rbuf_t *cw = h->data;
    *buf = uv_buf_init((char *)cw->rbuf, READ_CHUNK);
}

static void restart_idle(conn_t *c)
{
    if (!c->closing && uv_timer_get_repeat(&c->idle))
        uv_timer_again(&c->idle);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = stream->data;
    (void)buf;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error: the client is gone; an in-flight step finishes and is dropped. */
        conn_close(c);
        return;
    }
    restart_idle(c);
    int rc = frame_decoder_feed(c->dec, (const uint8_t *)buf->base, (size_t)nread, on_frame, c);
    if (rc) {
        conn_stop_reading(c);
        c->ev->fatal(c->owner, c, rc);
    }
    c->ev->readable(c->owner, c);
}

void conn_stop_reading(conn_t *c)
{
    if (c->reading && !c->closing)
        uv_read_stop(&c->h.stream);
    c->reading = false;
    c->read_done = true;
}

static size_t unsent(const conn_t *c)
{
    return c->out[0].len + c->out[1].len;
}

bool conn_over_budget(const conn_t *c)
{
    return unsent(c) > c->max_unsent;
}

/* Reading follows the reply backlog (see the budget in conn.h). */
static void apply_backpressure(conn_t *c)
{
    if (c->closing || c->read_done)
        return;
    size_t n = unsent(c);
    if (c->reading && n > c->max_unsent) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
        c->read_paused = true;
        mpcd_log(MPCD_LOG_DEBUG, "connection %s: %zu reply bytes unsent; reading paused",
                 c->peer.name, n);
    } else if (c->read_paused && n < c->max_unsent / 4) {
        if (uv_read_start(&c->h.stream, on_alloc, on_read)) {
            conn_close(c);
            return;
        }
        c->reading = true;
        c->read_paused = false;
        mpcd_log(MPCD_LOG_DEBUG, "connection %s: reading resumed", c->peer.name);
    }
}

static void on_idle(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->busy || c->nent || c->writing) {
        restart_idle(c); /* slow work is not idleness */
        return;
    }
    conn_close(c);
}

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

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles == 0)
        c->ev->closed(c->owner, c);
}

static void free_conn(conn_t *c)
{
    frame_decoder_destroy(c->dec);
    session_destroy(c->session);
    free(c->qbuf);
    free(c->ents);
    free(c->out[0].buf);
    free(c->out[1].buf);
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
    c->max_unsent = lim->max_unsent;
    c->arena_cap = ARENA_MIN;
    c->alloc = (ProtobufCAllocator){arena_alloc, arena_free, c};
    if (!(c->ents = calloc((size_t)lim->max_queued, sizeof *c->ents)) ||
        !(c->arena = malloc(c->arena_cap)) || frame_decoder_create(lim->max_frame, &c->dec)) {
        free_conn(c);
        return UV_ENOMEM;
    }
    if (is_pipe)
        uv_pipe_init(listener->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(listener->loop, &c->h.tcp);
    c->h.handle.data = cw;
    c->handles = 1;
    uv_timer_init(listener->loop, &c->idle);
    c->idle.data = c;
    c->handles++;
    uv_timer_init(listener->loop, &c->hello_timer);
    c->hello_timer.data = c;
    c->handles++;
    c->t_open = mono_now();
    if ((rc = uv_accept(listener, &c->h.stream))) {
        conn_close(c);
        return rc;
    }
    /* Replies are small and latency matters more than packet count. */
    if (!is_pipe)
        uv_tcp_nodelay(&c->h.tcp, 1);
    listen_peer_of(&c->h.stream, is_pipe, &c->peer);
    /* The stream's data points at the wrapper (for on_alloc); on_read needs the conn,
     * which is the wrapper's first member. */
    if ((rc = uv_read_start(&c->h.stream, on_alloc, on_read))) {
        conn_close(c);
        return rc;
    }
    c->reading = true;
    if (lim->idle_timeout_s > 0) {
        uint64_t ms = (uint64_t)(lim->idle_timeout_s * 1000);
        uv_timer_start(&c->idle, on_idle, ms, ms);
    }
    if (lim->hello_timeout_s > 0)
        uv_timer_start(&c->hello_timer, on_hello_timeout,
                       (uint64_t)(lim->hello_timeout_s * 1000) + 1, 0);
    *out = c;
    return 0;
}

bool conn_idle(const conn_t *c)
{
    return !c->busy && !c->nent && !c->writing && !c->out[c->filling].len;
}

void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_close(&c->h.handle, on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
    uv_close((uv_handle_t *)&c->hello_timer, on_handle_closed);
}

bool conn_maybe_free(conn_t *c)
{
    if (!c->closing || c->handles || c->step.job.queued || c->reload)
        return false;
    free_conn(c);
    return true;
}
