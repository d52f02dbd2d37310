/*
 * test_framing.c: the varint codec and the incremental frame decoder (proto/framing.c).
 *
 * Covers split frames (down to one byte per feed), several frames per chunk, zero-length
 * frames, 10-byte varints, oversize refusal before buffering, malformed varints, sticky
 * errors, callback refusal, re-entrancy, and a long stream of random frames cut into
 * random chunks. Run under ASan/UBSan in CI, which checks for leaks and overreads.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framing.h"

/*
 * The test links with -Wl,--wrap=realloc, so framing.c's buffer growth lands here: the
 * largest size ever requested shows the buffer never grows past what the frames need or
 * past the maximum frame size. The collector below uses malloc so only the decoder counts.
 */
void *__real_realloc(void *ptr, size_t size);
void *__wrap_realloc(void *ptr, size_t size);
static size_t realloc_calls, realloc_max;

void *__wrap_realloc(void *ptr, size_t size)
{
    realloc_calls++;
    if (size > realloc_max)
        realloc_max = size;
    return __real_realloc(ptr, size);
}

static void realloc_reset(void)
{
    realloc_calls = 0;
    realloc_max = 0;
}

/* malloc-based growth of an array of n elements to cap elements. */
static void *grow(void *old, size_t n, size_t cap, size_t elem)
{
    void *p = malloc(cap * elem);
    assert_non_null(p);
    if (n)
        memcpy(p, old, n * elem);
    free(old);
    return p;
}

/* Collects copies of every delivered payload. */
typedef struct {
    size_t count;
    size_t cap;
    uint8_t **payloads;
    size_t *lens;
    size_t refuse_at;         /* 1-based frame index the callback refuses; 0 = never */
    frame_decoder_t *reenter; /* when set, the callback feeds this decoder */
    int reenter_rc;
} collector_t;

static int collect(void *ctx, const uint8_t *payload, size_t len)
{
    collector_t *c = ctx;
    assert_non_null(payload);
    if (c->reenter != NULL) {
        static const uint8_t one = 0;
        c->reenter_rc = frame_decoder_feed(c->reenter, &one, 1, collect, c);
    }
    if (c->count == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->payloads = grow(c->payloads, c->count, c->cap, sizeof(*c->payloads));
        c->lens = grow(c->lens, c->count, c->cap, sizeof(*c->lens));
    }
    c->payloads[c->count] = malloc(len ? len : 1);
    assert_non_null(c->payloads[c->count]);
    memcpy(c->payloads[c->count], payload, len);
    c->lens[c->count] = len;
    c->count++;
    return c->refuse_at != 0 && c->count == c->refuse_at;
}

static void collector_free(collector_t *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->payloads[i]);
    free(c->payloads);
    free(c->lens);
    memset(c, 0, sizeof(*c));
}

/* Appends one frame (varint + payload) to out; returns the new length. */
static size_t put_frame(uint8_t *out, size_t at, const uint8_t *payload, size_t len)
{
    at += frame_varint_encode(len, out + at);
    memcpy(out + at, payload, len);
    return at + len;
}

/* Payload byte i of frame k: distinct per frame so mix-ups are caught. */
static uint8_t pattern(size_t k, size_t i)
{
    return (uint8_t)(k * 31u + i * 7u + 1u);
}

static void assert_frame(const collector_t *c, size_t idx, size_t k, size_t len)
{
    assert_true(idx < c->count);
    assert_int_equal(c->lens[idx], len);
    size_t wrong = 0;
    for (size_t i = 0; i < len; i++)
        wrong += c->payloads[idx][i] != pattern(k, i);
    assert_int_equal(wrong, 0);
}

static size_t put_pattern_frame(uint8_t *out, size_t at, size_t k, size_t len)
{
    at += frame_varint_encode(len, out + at);
    for (size_t i = 0; i < len; i++)
        out[at + i] = pattern(k, i);
    return at + len;
}

/* --- varint codec --- */

static void test_varint_roundtrip(void **state)
{
    (void)state;
    const struct {
        uint64_t value;
        size_t size;
    } cases[] = {
        {0, 1},          {1, 1},           {127, 1},         {128, 2},
        {300, 2},        {16383, 2},       {16384, 3},       {UINT32_MAX, 5},
        {1ull << 56, 9}, {1ull << 63, 10}, {UINT64_MAX, 10},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[FRAME_VARINT_MAX];
        size_t n = frame_varint_encode(cases[i].value, buf);
        assert_int_equal(n, cases[i].size);
        uint64_t back = 0;
        assert_int_equal(frame_varint_decode(buf, n, &back), (int)n);
        assert_true(back == cases[i].value);
        /* Every proper prefix is incomplete, not an error. */
        for (size_t p = 0; p < n; p++)
            assert_int_equal(frame_varint_decode(buf, p, &back), 0);
    }
    /* protobuf's own encoding of 300 */
    const uint8_t wire300[] = {0xac, 0x02};
    uint64_t v = 0;
    assert_int_equal(frame_varint_decode(wire300, 2, &v), 2);
    assert_true(v == 300);
}

static void test_varint_malformed(void **state)
{
    (void)state;
    uint64_t v = 0;
    uint8_t eleven[11];
    memset(eleven, 0xff, sizeof(eleven));
    /* 10 continuation bytes: too long, even before the 11th arrives */
    eleven[9] = 0x80;
    assert_int_equal(frame_varint_decode(eleven, 10, &v), FRAME_EBAD_VARINT);
    assert_int_equal(frame_varint_decode(eleven, 11, &v), FRAME_EBAD_VARINT);
    /* 10th byte with bits above bit 63 overflows 64 bits */
    uint8_t over[10];
    memset(over, 0xff, 9);
    over[9] = 0x02;
    assert_int_equal(frame_varint_decode(over, 10, &v), FRAME_EBAD_VARINT);
    over[9] = 0x01;
    assert_int_equal(frame_varint_decode(over, 10, &v), 10);
    assert_true(v == UINT64_MAX);
}

/* --- decoder basics --- */

static void test_single_frame_whole_and_bytewise(void **state)
{
    (void)state;
    uint8_t stream[64];
    size_t n = put_pattern_frame(stream, 0, 0, 20);

    for (int bytewise = 0; bytewise < 2; bytewise++) {
        frame_decoder_t *d = NULL;
        collector_t c = {0};
        assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
        if (bytewise) {
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(c.count, 0);
                assert_int_equal(frame_decoder_pending(d), i);
                assert_int_equal(frame_decoder_feed(d, stream + i, 1, collect, &c), FRAME_OK);
            }
        } else {
            assert_int_equal(frame_decoder_feed(d, stream, n, collect, &c), FRAME_OK);
        }
        assert_int_equal(c.count, 1);
        assert_frame(&c, 0, 0, 20);
        assert_int_equal(frame_decoder_pending(d), 0);
        collector_free(&c);
        frame_decoder_destroy(d);
    }
}

static void test_several_frames_in_one_chunk(void **state)
{
    (void)state;
    uint8_t stream[4096];
    size_t n = 0;
    const size_t lens[] = {3, 0, 200, 1, 0, 0, 129, 7};
    const size_t nframes = sizeof(lens) / sizeof(lens[0]);
    for (size_t k = 0; k < nframes; k++)
        n = put_pattern_frame(stream, n, k, lens[k]);
    /* Leave half of a frame at the end: it must stay pending. */
    size_t tail_start = n;
    n = put_pattern_frame(stream, n, nframes, 50);
    size_t cut = tail_start + 20;

    frame_decoder_t *d = NULL;
    collector_t c = {0};
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, stream, cut, collect, &c), FRAME_OK);
    assert_int_equal(c.count, nframes);
    for (size_t k = 0; k < nframes; k++)
        assert_frame(&c, k, k, lens[k]);
    assert_int_equal(frame_decoder_pending(d), 20);
    assert_int_equal(frame_decoder_feed(d, stream + cut, n - cut, collect, &c), FRAME_OK);
    assert_int_equal(c.count, nframes + 1);
    assert_frame(&c, nframes, nframes, 50);
    assert_int_equal(frame_decoder_pending(d), 0);
    collector_free(&c);
    frame_decoder_destroy(d);
}

static void test_zero_length_frames(void **state)
{
    (void)state;
    const uint8_t zeros[5] = {0};
    frame_decoder_t *d = NULL;
    collector_t c = {0};
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, zeros, 5, collect, &c), FRAME_OK);
    assert_int_equal(c.count, 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(c.lens[i], 0);
    /* An empty feed changes nothing. */
    assert_int_equal(frame_decoder_feed(d, zeros, 0, collect, &c), FRAME_OK);
    assert_int_equal(c.count, 5);
    assert_int_equal(frame_decoder_pending(d), 0);
    collector_free(&c);
    frame_decoder_destroy(d);
}

static void test_ten_byte_varint_length(void **state)
{
    (void)state;
    /* Non-canonical but valid: 5 padded out to 10 varint bytes. protobuf accepts these. */
    uint8_t stream[32] = {0x85, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    for (size_t i = 0; i < 5; i++)
        stream[10 + i] = pattern(0, i);
    for (size_t step = 1; step <= 15; step++) {
        frame_decoder_t *d = NULL;
        collector_t c = {0};
        assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
        for (size_t off = 0; off < 15; off += step) {
            size_t len = off + step > 15 ? 15 - off : step;
            assert_int_equal(frame_decoder_feed(d, stream + off, len, collect, &c), FRAME_OK);
        }
        assert_int_equal(c.count, 1);
        assert_frame(&c, 0, 0, 5);
        collector_free(&c);
        frame_decoder_destroy(d);
    }

    /* A canonical 10-byte varint is a length of at least 2^63: always too large. */
    uint8_t huge[FRAME_VARINT_MAX];
    assert_int_equal(frame_varint_encode(UINT64_MAX, huge), 10);
    frame_decoder_t *d = NULL;
    collector_t c = {0};
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    for (size_t i = 0; i < 9; i++)
        assert_int_equal(frame_decoder_feed(d, huge + i, 1, collect, &c), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, huge + 9, 1, collect, &c), FRAME_ETOO_LARGE);
    assert_int_equal(c.count, 0);
    frame_decoder_destroy(d);
}

static void test_oversize_refused_before_buffering(void **state)
{
    (void)state;
    enum { MAX = 100 };
    uint8_t stream[2 * MAX];
    frame_decoder_t *d = NULL;
    collector_t c = {0};

    /* Exactly max is fine, also when it arrives byte by byte (buffered path). */
    size_t n = put_pattern_frame(stream, 0, 1, MAX);
    assert_int_equal(frame_decoder_create(MAX, &d), FRAME_OK);
    realloc_reset();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(frame_decoder_feed(d, stream + i, 1, collect, &c), FRAME_OK);
    assert_int_equal(c.count, 1);
    assert_frame(&c, 0, 1, MAX);
    /* The buffer is capped at max even though the first growth step would be larger. */
    assert_int_equal(realloc_max, MAX);

    /* max + 1 is refused as soon as the varint completes, with no payload byte read. */
    n = put_pattern_frame(stream, 0, 2, MAX + 1);
    assert_int_equal(frame_decoder_feed(d, stream, 1, collect, &c), FRAME_ETOO_LARGE);
    assert_int_equal(frame_decoder_pending(d), 0);
    /* Sticky: the rest of the stream is not interpreted. */
    assert_int_equal(frame_decoder_feed(d, stream + 1, n - 1, collect, &c), FRAME_ETOO_LARGE);
    assert_int_equal(frame_decoder_feed(d, (const uint8_t *)"", 1, collect, &c),
                     FRAME_ETOO_LARGE);
    assert_int_equal(c.count, 1);
    collector_free(&c);
    frame_decoder_destroy(d);

    /* A length announcing 4 GiB fails without trying to allocate it. */
    uint8_t big[FRAME_VARINT_MAX];
    size_t bn = frame_varint_encode(1ull << 32, big);
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    realloc_reset();
    assert_int_equal(frame_decoder_feed(d, big, bn, collect, &c), FRAME_ETOO_LARGE);
    assert_int_equal(realloc_calls, 0);
    frame_decoder_destroy(d);
}

static void test_buffer_grows_with_need_only(void **state)
{
    (void)state;
    enum { MAX = 5000 };
    uint8_t stream[MAX + FRAME_VARINT_MAX];
    frame_decoder_t *d = NULL;
    collector_t c = {0};
    assert_int_equal(frame_decoder_create(MAX, &d), FRAME_OK);
    realloc_reset();
    /* Whole frames in one chunk are handed out from the caller's bytes: no buffer. */
    size_t n = put_pattern_frame(stream, 0, 0, 3000);
    assert_int_equal(frame_decoder_feed(d, stream, n, collect, &c), FRAME_OK);
    assert_int_equal(realloc_calls, 0);
    /* A split 300-byte frame needs a buffer of at most 512 (doubling from 256). */
    n = put_pattern_frame(stream, 0, 1, 300);
    assert_int_equal(frame_decoder_feed(d, stream, 10, collect, &c), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, stream + 10, n - 10, collect, &c), FRAME_OK);
    assert_in_range(realloc_max, 300, 512);
    /* A split frame of max bytes grows it to max, and no further. */
    n = put_pattern_frame(stream, 0, 2, MAX);
    assert_int_equal(frame_decoder_feed(d, stream, 10, collect, &c), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, stream + 10, n - 10, collect, &c), FRAME_OK);
    assert_int_equal(realloc_max, MAX);
    /* Later smaller split frames reuse the buffer. */
    size_t calls = realloc_calls;
    n = put_pattern_frame(stream, 0, 3, 1000);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(frame_decoder_feed(d, stream + i, 1, collect, &c), FRAME_OK);
    assert_int_equal(realloc_calls, calls);
    assert_int_equal(c.count, 4);
    assert_frame(&c, 0, 0, 3000);
    assert_frame(&c, 1, 1, 300);
    assert_frame(&c, 2, 2, MAX);
    assert_frame(&c, 3, 3, 1000);
    collector_free(&c);
    frame_decoder_destroy(d);
}

static void test_default_max_is_one_mib(void **state)
{
    (void)state;
    size_t len = FRAME_DEFAULT_MAX;
    uint8_t *stream = malloc(len + FRAME_VARINT_MAX);
    assert_non_null(stream);
    size_t n = put_pattern_frame(stream, 0, 3, len);
    frame_decoder_t *d = NULL;
    collector_t c = {0};
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    /* Split in the middle so the 1 MiB payload is buffered. */
    assert_int_equal(frame_decoder_feed(d, stream, n / 2, collect, &c), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, stream + n / 2, n - n / 2, collect, &c), FRAME_OK);
    assert_int_equal(c.count, 1);
    assert_frame(&c, 0, 3, len);
    /* One byte more is refused. */
    n = frame_varint_encode(len + 1, stream);
    assert_int_equal(frame_decoder_feed(d, stream, n, collect, &c), FRAME_ETOO_LARGE);
    collector_free(&c);
    frame_decoder_destroy(d);
    free(stream);
}

static void test_malformed_varint_in_stream(void **state)
{
    (void)state;
    uint8_t stream[32];
    size_t n = put_pattern_frame(stream, 0, 0, 4);
    /* then eleven continuation bytes */
    memset(stream + n, 0x80, 11);

    for (int bytewise = 0; bytewise < 2; bytewise++) {
        frame_decoder_t *d = NULL;
        collector_t c = {0};
        assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
        int rc = FRAME_OK;
        if (bytewise) {
            for (size_t i = 0; i < n + 11 && rc == FRAME_OK; i++)
                rc = frame_decoder_feed(d, stream + i, 1, collect, &c);
        } else {
            rc = frame_decoder_feed(d, stream, n + 11, collect, &c);
        }
        assert_int_equal(rc, FRAME_EBAD_VARINT);
        /* The good frame before the bad varint was delivered. */
        assert_int_equal(c.count, 1);
        assert_frame(&c, 0, 0, 4);
        assert_int_equal(frame_decoder_feed(d, stream, n, collect, &c), FRAME_EBAD_VARINT);
        assert_int_equal(c.count, 1);
        collector_free(&c);
        frame_decoder_destroy(d);
    }

    /* Overflowing 10th byte. */
    uint8_t over[10];
    memset(over, 0xff, 9);
    over[9] = 0x7f;
    frame_decoder_t *d = NULL;
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    collector_t c = {0};
    assert_int_equal(frame_decoder_feed(d, over, 10, collect, &c), FRAME_EBAD_VARINT);
    assert_int_equal(c.count, 0);
    frame_decoder_destroy(d);
}

static void test_callback_refusal_is_sticky(void **state)
{
    (void)state;
    uint8_t stream[64];
    size_t n = 0;
    for (size_t k = 0; k < 4; k++)
        n = put_pattern_frame(stream, n, k, 5);
    frame_decoder_t *d = NULL;
    collector_t c = {.refuse_at = 2};
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, stream, n, collect, &c), FRAME_ECALLBACK);
    assert_int_equal(c.count, 2); /* frames 3 and 4 are never delivered */
    assert_int_equal(frame_decoder_feed(d, stream, n, collect, &c), FRAME_ECALLBACK);
    assert_int_equal(c.count, 2);
    collector_free(&c);
    frame_decoder_destroy(d);

    /* Refusing a buffered (split) frame behaves the same. */
    c = (collector_t){.refuse_at = 1};
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, stream, 3, collect, &c), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, stream + 3, n - 3, collect, &c), FRAME_ECALLBACK);
    assert_int_equal(c.count, 1);
    assert_int_equal(frame_decoder_pending(d), 0);
    collector_free(&c);
    frame_decoder_destroy(d);
}

static void test_reentrant_feed_refused(void **state)
{
    (void)state;
    uint8_t stream[16];
    size_t n = put_pattern_frame(stream, 0, 0, 3);
    n = put_pattern_frame(stream, n, 1, 2);
    frame_decoder_t *d = NULL;
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    collector_t c = {.reenter = d};
    assert_int_equal(frame_decoder_feed(d, stream, n, collect, &c), FRAME_OK);
    assert_int_equal(c.reenter_rc, FRAME_EFAILED);
    /* Both frames arrived intact: the refused inner feed changed nothing. */
    assert_int_equal(c.count, 2);
    assert_frame(&c, 0, 0, 3);
    assert_frame(&c, 1, 1, 2);
    collector_free(&c);
    frame_decoder_destroy(d);
}

static void test_error_strings_distinct(void **state)
{
    (void)state;
    const int errs[] = {FRAME_OK,     FRAME_EBAD_VARINT, FRAME_ETOO_LARGE, FRAME_EUNDECODABLE,
                        FRAME_ENOMEM, FRAME_EFAILED,     FRAME_ECALLBACK};
    const size_t n = sizeof(errs) / sizeof(errs[0]);
    for (size_t i = 0; i < n; i++) {
        assert_true(errs[i] <= 0);
        /* framing's own range, apart from errno, libuv and librssm (framing.h) */
        assert_true(errs[i] == FRAME_OK || (errs[i] <= -5101 && errs[i] >= -5199));
        for (size_t j = i + 1; j < n; j++) {
            assert_int_not_equal(errs[i], errs[j]);
            assert_string_not_equal(frame_strerror(errs[i]), frame_strerror(errs[j]));
            assert_string_not_equal(frame_err_name(errs[i]), frame_err_name(errs[j]));
        }
    }
    assert_string_equal(frame_err_name(FRAME_ETOO_LARGE), "TOO_LARGE");
    assert_string_equal(frame_strerror(-5199), "unknown framing error");
    assert_string_equal(frame_strerror(-ENOMEM), strerror(ENOMEM)); /* a plain -errno */
    frame_decoder_destroy(NULL); /* accepted, like free(NULL) */
}

/* --- long random stream --- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: deterministic, so a failure reproduces from the seed */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void test_random_chunking(void **state)
{
    (void)state;
    enum { FRAMES = 2000 };
    size_t lens[FRAMES];
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    size_t total = 0;
    for (size_t k = 0; k < FRAMES; k++) {
        uint64_t r = rng_next(&rng);
        /* mostly small, some zero, a few past the 2- and 3-byte varint boundaries */
        switch (r % 40) {
        case 0:
        case 1:
        case 2:
        case 3:
            lens[k] = 0;
            break;
        case 4:
            lens[k] = 16384 + (r >> 8) % 20000;
            break;
        case 5:
        case 6:
        case 7:
        case 8:
            lens[k] = 100 + (r >> 8) % 300;
            break;
        default:
            lens[k] = (r >> 8) % 100;
        }
        total += lens[k] + FRAME_VARINT_MAX;
    }
    uint8_t *stream = malloc(total);
    assert_non_null(stream);
    size_t n = 0;
    for (size_t k = 0; k < FRAMES; k++)
        n = put_pattern_frame(stream, n, k, lens[k]);

    const size_t max_chunks[] = {1, 3, 17, 256, 5000, 70000};
    for (size_t m = 0; m < sizeof(max_chunks) / sizeof(max_chunks[0]); m++) {
        frame_decoder_t *d = NULL;
        collector_t c = {0};
        assert_int_equal(frame_decoder_create(40000, &d), FRAME_OK);
        for (size_t off = 0; off < n;) {
            size_t chunk = 1 + rng_next(&rng) % max_chunks[m];
            if (chunk > n - off)
                chunk = n - off;
            assert_int_equal(frame_decoder_feed(d, stream + off, chunk, collect, &c), FRAME_OK);
            off += chunk;
        }
        assert_int_equal(c.count, FRAMES);
        for (size_t k = 0; k < FRAMES; k++)
            assert_frame(&c, k, k, lens[k]);
        assert_int_equal(frame_decoder_pending(d), 0);
        collector_free(&c);
        frame_decoder_destroy(d);
    }
    free(stream);
}

/* The encoder side matches protobuf's delimited convention byte for byte. */
static void test_put_frame_matches_protobuf_delimited(void **state)
{
    (void)state;
    /* Python: _VarintBytes(3) + b"abc" */
    uint8_t out[8];
    size_t n = put_frame(out, 0, (const uint8_t *)"abc", 3);
    const uint8_t expect[] = {0x03, 'a', 'b', 'c'};
    assert_int_equal(n, sizeof(expect));
    assert_memory_equal(out, expect, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_roundtrip),
        cmocka_unit_test(test_varint_malformed),
        cmocka_unit_test(test_single_frame_whole_and_bytewise),
        cmocka_unit_test(test_several_frames_in_one_chunk),
        cmocka_unit_test(test_zero_length_frames),
        cmocka_unit_test(test_ten_byte_varint_length),
        cmocka_unit_test(test_oversize_refused_before_buffering),
        cmocka_unit_test(test_buffer_grows_with_need_only),
        cmocka_unit_test(test_default_max_is_one_mib),
        cmocka_unit_test(test_malformed_varint_in_stream),
        cmocka_unit_test(test_callback_refusal_is_sticky),
        cmocka_unit_test(test_reentrant_feed_refused),
        cmocka_unit_test(test_error_strings_distinct),
        cmocka_unit_test(test_random_chunking),
        cmocka_unit_test(test_put_frame_matches_protobuf_delimited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
