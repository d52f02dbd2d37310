/*
 * stream.c: one byte stream on the loop: reads into the owner's buffer, two output
 * buffers with a budget, the idle timer and the close lifecycle (see stream.h).
 */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* ---- lifecycle ---- */

static void on_handle_closed(uv_handle_t *h)
{
    stream_t *s = h->data;
    if (--s->handles)
        return;
    free(s->out[0].buf);
    free(s->out[1].buf);
    memset(s->out, 0, sizeof s->out);
    if (s->ev->closed)
        s->ev->closed(s->owner);
}

void stream_init(stream_t *s, uv_loop_t *loop, bool is_pipe, const stream_events_t *ev,
                 void *owner, uint8_t *rbuf, size_t rbuf_len, size_t budget)
{
    memset(s, 0, sizeof *s);
    s->ev = ev;
    s->owner = owner;
    s->rbuf = rbuf;
    s->rbuf_len = rbuf_len;
    s->budget = budget;
    if (is_pipe)
        uv_pipe_init(loop, &s->h.pipe, 0);
    else
        uv_tcp_init(loop, &s->h.tcp);
    s->h.handle.data = s;
    uv_timer_init(loop, &s->idle);
    s->idle.data = s;
    s->handles = 2;
}

void stream_close(stream_t *s)
{
    if (s->closing)
        return;
    s->closing = true;
    s->reading = false;
    uv_close(&s->h.handle, on_handle_closed); /* cancels a pending write first */
    uv_close((uv_handle_t *)&s->idle, on_handle_closed);
    if (s->ev->closing)
        s->ev->closing(s->owner);
}

void stream_unref(stream_t *s)
{
    uv_unref(&s->h.handle);
    uv_unref((uv_handle_t *)&s->idle);
}

int stream_accept(stream_t *s, uv_stream_t *listener)
{
    int rc = uv_accept(listener, &s->h.stream);
    if (rc)
        return rc;
    if (s->h.handle.type == UV_TCP)
        uv_tcp_nodelay(&s->h.tcp, 1);
    return 0;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    stream_t *s = h->data;
    *buf = uv_buf_init((char *)s->rbuf, (unsigned)s->rbuf_len);
}

static void on_idle(uv_timer_t *t)
{
    stream_t *s = t->data;
    if (s->ev->idle)
        s->ev->idle(s->owner);
    else
        stream_close(s);
}

int stream_start(stream_t *s, uint64_t idle_ms)
{
    int rc = uv_read_start(&s->h.stream, on_alloc, on_read);
    if (rc)
        return rc;
    s->reading = true;
    if (idle_ms > 0)
        uv_timer_start(&s->idle, on_idle, idle_ms, idle_ms);
    return 0;
}

void stream_touch(stream_t *s)
{
    if (!s->closing && uv_timer_get_repeat(&s->idle))
        uv_timer_again(&s->idle);
}

void stream_stop_reading(stream_t *s)
{
    if (s->reading && !s->closing)
        uv_read_stop(&s->h.stream);
    s->reading = false;
    s->read_done = true;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    stream_t *s = st->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error: the owner decides whether queued output still goes out. */
        stream_stop_reading(s);
        if (s->ev->eof)
            s->ev->eof(s->owner, (int)nread);
        return;
    }
    stream_touch(s);
    s->ev->data(s->owner, (const uint8_t *)buf->base, (size_t)nread);
}

size_t stream_unsent(const stream_t *s)
{
    return s->out[0].len + s->out[1].len;
}

/* Reading follows the output backlog (see the budget in stream.h). */
static void apply_backpressure(stream_t *s)
{
    if (s->closing || s->read_done)
        return;
    size_t n = stream_unsent(s);
    if (s->reading && n > s->budget) {
        uv_read_stop(&s->h.stream);
        s->reading = false;
        s->read_paused = true;
        if (s->log_name)
            mpcd_log(MPCD_LOG_DEBUG, "connection %s: %zu reply bytes unsent; reading paused",
                     s->log_name, n);
    } else if (s->read_paused && n < s->budget / 4) {
        if (uv_read_start(&s->h.stream, on_alloc, on_read)) {
            stream_close(s);
            return;
        }
        s->reading = true;
        s->read_paused = false;
        if (s->log_name)
            mpcd_log(MPCD_LOG_DEBUG, "connection %s: reading resumed", s->log_name);
    }
}

/* ---- writing ---- */

static void kick_write(stream_t *s);

static void on_write(uv_write_t *req, int status)
{
    stream_t *s = req->data;
    s->writing = false;
    s->out[!s->filling].len = 0;
    if (status < 0) {
        stream_close(s);
        return;
    }
    kick_write(s);
    if (!s->writing && s->close_when_flushed) {
        stream_close(s);
        return;
    }
    apply_backpressure(s);
    if (!s->closing && s->ev->written)
        s->ev->written(s->owner);
}

static void kick_write(stream_t *s)
{
    if (s->writing || s->closing || !s->out[s->filling].len)
        return;
    stream_out_t *o = &s->out[s->filling];
    s->filling = !s->filling;
    uv_buf_t b = uv_buf_init((char *)o->buf, (unsigned)o->len);
    s->wreq.data = s;
    if (uv_write(&s->wreq, &s->h.stream, &b, 1, on_write)) {
        o->len = 0;
        stream_close(s);
        return;
    }
    s->writing = true;
}

uint8_t *stream_reserve(stream_t *s, size_t n)
{
    if (s->closing)
        return NULL;
    stream_out_t *o = &s->out[s->filling];
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->len + n)
            cap *= 2;
        uint8_t *b = realloc(o->buf, cap);
        if (!b) {
            stream_close(s);
            return NULL;
        }
        o->buf = b;
        o->cap = cap;
    }
    return o->buf + o->len;
}

void stream_commit(stream_t *s, size_t n)
{
    s->out[s->filling].len += n;
    kick_write(s);
    apply_backpressure(s);
}

int stream_write(stream_t *s, const void *buf, size_t len)
{
    if (s->closing)
        return 0;
    uint8_t *p = stream_reserve(s, len);
    if (!p)
        return -ENOMEM;
    memcpy(p, buf, len);
    stream_commit(s, len);
    return 0;
}

void stream_close_when_flushed(stream_t *s)
{
    stream_stop_reading(s);
    if (stream_flushed(s))
        stream_close(s);
    else
        s->close_when_flushed = true;
}
