/*
 * framing.c: incremental decoder and varint codec for varint length-prefixed frames.
 *
 * The decoder is a two-state machine: it first collects the length varint byte by byte
 * (so a varint split across reads is fine), checks the length against the maximum frame
 * size before buffering anything, then either hands the payload straight out of the
 * caller's chunk (the common case: the whole frame arrived in one read, no copy) or
 * accumulates it in a buffer that grows only up to the announced length, which is itself
 * bounded by max_frame. Any error is sticky: a byte stream with a bad frame in it cannot be
 * resynchronised, so the connection must be dropped.
 */
#include "framing.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct frame_decoder {
    size_t max_frame;
    int err; /* FRAME_OK, or the sticky error that failed the decoder */
    bool in_callback;

    uint8_t varint[FRAME_VARINT_MAX]; /* length varint bytes collected so far */
    size_t varint_len;

    bool have_len;    /* varint complete: collecting the payload */
    size_t frame_len; /* announced payload length (<= max_frame) */

    uint8_t *buf; /* partial payload; capacity grows up to max_frame */
    size_t cap;
    size_t got;
};

const char *frame_strerror(int err)
{
    switch (err) {
    case FRAME_OK:
        return "success";
#define XX(name, val, msg)                                                                     \
    case FRAME_E##name:                                                                        \
        return msg;
        FRAME_ERRNO_MAP(XX)
#undef XX
    default:
        /* -1..-4095: a negative errno */
        return err < 0 && err > -4096 ? strerror(-err) : "unknown framing error";
    }
}

const char *frame_err_name(int err)
{
    switch (err) {
    case FRAME_OK:
        return "OK";
#define XX(name, val, msg)                                                                     \
    case FRAME_E##name:                                                                        \
        return #name;
        FRAME_ERRNO_MAP(XX)
#undef XX
    default:
        return "UNKNOWN";
    }
}

int frame_decoder_create(size_t max_frame, frame_decoder_t **out)
{
    frame_decoder_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return FRAME_ENOMEM;
    d->max_frame = max_frame ? max_frame : FRAME_DEFAULT_MAX;
    *out = d;
    return FRAME_OK;
}

void frame_decoder_destroy(frame_decoder_t *d)
{
    if (d == NULL)
        return;
    free(d->buf);
    free(d);
}

size_t frame_decoder_pending(const frame_decoder_t *d)
{
    return d->varint_len + d->got;
}

size_t frame_varint_encode(uint64_t len, uint8_t *out)
{
    size_t n = 0;
    while (len >= 0x80) {
        out[n++] = (uint8_t)(len | 0x80);
        len >>= 7;
    }
    out[n++] = (uint8_t)len;
    return n;
}

int frame_varint_decode(const uint8_t *buf, size_t len, uint64_t *value)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < FRAME_VARINT_MAX; i++) {
        uint8_t b = buf[i];
        /* The 10th byte holds bit 63 only; anything more overflows 64 bits. */
        if (i == FRAME_VARINT_MAX - 1 && b > 1)
            return FRAME_EBAD_VARINT;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *value = v;
            return (int)(i + 1);
        }
    }
    return len >= FRAME_VARINT_MAX ? FRAME_EBAD_VARINT : 0;
}

/* Fails the decoder for good and drops any partial frame. */
static int decoder_fail(frame_decoder_t *d, int err)
{
    d->err = err;
    d->varint_len = 0;
    d->got = 0;
    d->have_len = false;
    return err;
}

static int deliver(frame_decoder_t *d, const uint8_t *payload, size_t len, frame_cb cb,
                   void *ctx)
{
    /* Zero-length frames still get a valid pointer, never NULL. */
    static const uint8_t empty[1];
    d->in_callback = true;
    int rc = cb(ctx, len ? payload : empty, len);
    d->in_callback = false;
    d->have_len = false;
    d->varint_len = 0;
    d->got = 0;
    return rc ? decoder_fail(d, FRAME_ECALLBACK) : FRAME_OK;
}

/* Makes room for the whole announced payload; frame_len <= max_frame bounds the buffer. */
static int reserve(frame_decoder_t *d, size_t need)
{
    if (need <= d->cap)
        return FRAME_OK;
    size_t cap = d->cap ? d->cap : 256;
    if (cap > d->max_frame)
        cap = d->max_frame;
    while (cap < need) /* ends: need <= max_frame */
        cap = cap > d->max_frame / 2 ? d->max_frame : cap * 2;
    uint8_t *buf = realloc(d->buf, cap);
    if (buf == NULL)
        return FRAME_ENOMEM;
    d->buf = buf;
    d->cap = cap;
    return FRAME_OK;
}

/* Consumes length-varint bytes; returns bytes used (at most FRAME_VARINT_MAX, since it stops
 * once the varint is complete or invalid) or a negative error. */
static int feed_varint(frame_decoder_t *d, const uint8_t *data, size_t len)
{
    size_t used = 0;
    while (used < len && !d->have_len) {
        d->varint[d->varint_len++] = data[used++];
        uint64_t value;
        int n = frame_varint_decode(d->varint, d->varint_len, &value);
        if (n < 0)
            return n;
        if (n == 0)
            continue;
        /* Refuse before buffering a single payload byte. */
        if (value > d->max_frame)
            return FRAME_ETOO_LARGE;
        d->frame_len = (size_t)value;
        d->have_len = true;
    }
    return (int)used;
}

int frame_decoder_feed(frame_decoder_t *d, const uint8_t *data, size_t len, frame_cb cb,
                       void *ctx)
{
    if (d->in_callback)
        return FRAME_EFAILED; /* re-entrant feed from a frame callback */
    if (d->err)
        return d->err;

    size_t off = 0;
    while (off < len || (d->have_len && d->got == d->frame_len)) {
        if (!d->have_len) {
            int used = feed_varint(d, data + off, len - off);
            if (used < 0)
                return decoder_fail(d, used);
            off += (size_t)used;
            if (!d->have_len)
                continue;
        }

        size_t missing = d->frame_len - d->got;
        if (d->got == 0 && len - off >= missing) {
            /* Whole payload is in the caller's chunk: no copy. */
            int rc = deliver(d, data + off, missing, cb, ctx);
            off += missing;
            if (rc)
                return rc;
            continue;
        }

        int rc = reserve(d, d->frame_len);
        if (rc)
            return decoder_fail(d, rc);
        size_t take = len - off < missing ? len - off : missing;
        memcpy(d->buf + d->got, data + off, take);
        d->got += take;
        off += take;
        if (d->got == d->frame_len) {
            rc = deliver(d, d->buf, d->got, cb, ctx);
            if (rc)
                return rc;
        }
    }
    return FRAME_OK;
}
