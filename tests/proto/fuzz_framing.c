/*
 * fuzz_framing.c: libFuzzer target for the frame decoder and the wire unpackers.
 *
 * The input is treated as a byte stream from an untrusted peer. Its last byte also picks the
 * decoder's maximum frame size and seeds how the stream is cut into feeds, so the fuzzer
 * explores split varints and split payloads as well as the content. Every frame is unpacked
 * as a Request and as a Reply; whatever unpacks is packed again and must decode to the same
 * bytes (pack/unpack agree). Besides sanitizer findings, it aborts when the decoder breaks
 * its own contract: a frame over the maximum, a failure that does not stick, or more
 * payload delivered than was fed.
 *
 * Build: CC=clang meson setup build-fuzz -Dfuzzing=true; run via `meson test --suite fuzz`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* Aborts with the failed condition (libFuzzer saves the input as a crash artifact). */
#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond))                                                                           \
            __builtin_trap();                                                                  \
    } while (0)

typedef struct {
    size_t max_frame;
    size_t delivered; /* payload bytes handed to the callback */
} fuzz_ctx_t;

/* Re-packs an unpacked request and checks it unpacks again to the same serialisation. */
static void check_request_repack(Mpc__V1__Request *req)
{
    size_t size = wire_request_frame_size(req);
    uint8_t *frame = malloc(size);
    CHECK(frame != NULL);
    CHECK(wire_pack_request(req, frame) == size);
    uint64_t len = 0;
    int hdr = frame_varint_decode(frame, size, &len);
    CHECK(hdr > 0 && (size_t)hdr + len == size);
    Mpc__V1__Request *again = wire_unpack_request(frame + hdr, (size_t)len);
    CHECK(again != NULL);
    CHECK(again->body_case == req->body_case && again->id == req->id);
    CHECK(wire_request_frame_size(again) == size);
    wire_free_request(again);
    free(frame);
}

static void check_reply_repack(Mpc__V1__Reply *rep)
{
    size_t size = wire_reply_frame_size(rep);
    uint8_t *frame = malloc(size);
    CHECK(frame != NULL);
    CHECK(wire_pack_reply(rep, frame) == size);
    uint64_t len = 0;
    int hdr = frame_varint_decode(frame, size, &len);
    CHECK(hdr > 0 && (size_t)hdr + len == size);
    Mpc__V1__Reply *again = wire_unpack_reply(frame + hdr, (size_t)len);
    CHECK(again != NULL);
    CHECK(again->body_case == rep->body_case && again->id == rep->id);
    CHECK(wire_reply_frame_size(again) == size);
    wire_free_reply(again);
    free(frame);
}

static int on_frame(void *ctx, const uint8_t *payload, size_t len)
{
    fuzz_ctx_t *c = ctx;
    CHECK(payload != NULL);
    CHECK(len <= c->max_frame);
    c->delivered += len;

    Mpc__V1__Request *req = wire_unpack_request(payload, len);
    if (req != NULL) {
        CHECK(req->body_case != MPC__V1__REQUEST__BODY__NOT_SET);
        check_request_repack(req);
        wire_free_request(req);
    }
    Mpc__V1__Reply *rep = wire_unpack_reply(payload, len);
    if (rep != NULL) {
        CHECK(rep->body_case != MPC__V1__REPLY__BODY__NOT_SET);
        check_reply_repack(rep);
        wire_free_reply(rep);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The varint codec on its own: whatever decodes must re-encode canonically. */
    uint64_t value = 0;
    int used = frame_varint_decode(data, size, &value);
    CHECK(used == 0 || used == FRAME_EBAD_VARINT || (used > 0 && used <= FRAME_VARINT_MAX));
    if (used > 0) {
        uint8_t enc[FRAME_VARINT_MAX];
        size_t n = frame_varint_encode(value, enc);
        uint64_t back = 0;
        CHECK(n <= (size_t)used && frame_varint_decode(enc, n, &back) == (int)n);
        CHECK(back == value);
    }

    uint8_t config = size ? data[size - 1] : 0;
    static const size_t max_frames[] = {0, 1, 7, 64, 300, 4096, 65536, 1 << 20};
    fuzz_ctx_t ctx = {.max_frame = max_frames[config & 7]};
    frame_decoder_t *d = NULL;
    CHECK(frame_decoder_create(ctx.max_frame, &d) == FRAME_OK);
    if (ctx.max_frame == 0)
        ctx.max_frame = FRAME_DEFAULT_MAX;

    uint32_t rng = 0x9e3779b9u ^ config;
    int rc = FRAME_OK;
    size_t off = 0;
    while (off < size) {
        /* chunk sizes from 1 byte up to everything left */
        rng = rng * 1664525u + 1013904223u;
        size_t chunk = (config & 0x80) ? size - off : 1 + (rng >> 16) % 17;
        if (chunk > size - off)
            chunk = size - off;
        int r = frame_decoder_feed(d, data + off, chunk, on_frame, &ctx);
        if (rc != FRAME_OK)
            CHECK(r == rc); /* failures stick */
        rc = r;
        CHECK(rc == FRAME_OK || rc == FRAME_EBAD_VARINT || rc == FRAME_ETOO_LARGE);
        CHECK(frame_decoder_pending(d) <= ctx.max_frame + FRAME_VARINT_MAX);
        off += chunk;
    }
    CHECK(ctx.delivered <= size);
    frame_decoder_destroy(d);
    return 0;
}
