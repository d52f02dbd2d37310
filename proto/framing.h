/*
 * framing.h: varint length-prefixed frames (protobuf's delimited-message convention).
 *
 * A frame is a base-128 varint holding the payload length, followed by that many bytes.
 * The decoder is incremental: feed it bytes in chunks of any size (one byte at a time
 * works) and it calls back once per complete frame. It never allocates more than the
 * configured maximum frame size and reports malformed varints and oversized frames as
 * distinct errors; after an error the stream is unusable and the decoder stays failed.
 */
#ifndef MPC_FRAMING_H
#define MPC_FRAMING_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_DEFAULT_MAX (1u << 20)
#define FRAME_VARINT_MAX  10

/* Errors are negative; FRAME_OK is 0.
 *
 * The framing codes have a range of their own, -5101..-5199, below every negative errno and
 * every libuv error (-1..-4095) and apart from librssm's -5001..-5099 (model/rssm.h), so a
 * code passed on next to an errno or a uv error never means two things. */
#define FRAME_ERRNO_MAP(XX)                                                                    \
    XX(BAD_VARINT, -5101, "malformed length varint")                                           \
    XX(TOO_LARGE, -5102, "frame larger than the maximum frame size")                           \
    XX(UNDECODABLE, -5103, "frame payload is not a valid message")                             \
    XX(NOMEM, -5104, "out of memory")                                                          \
    XX(FAILED, -5105, "decoder fed from inside its own frame callback")                        \
    XX(CALLBACK, -5106, "frame callback refused the frame")

typedef enum {
    FRAME_OK = 0,
#define XX(name, val, msg) FRAME_E##name = val,
    FRAME_ERRNO_MAP(XX)
#undef XX
} frame_err_t;

/* The message of a frame_err_t, of a negative errno (strerror), or "unknown framing
 * error". */
const char *frame_strerror(int err);
/* Symbolic name of an error ("TOO_LARGE"), for logs and metrics labels. */
const char *frame_err_name(int err);

/* Called with each complete payload; the bytes are valid only during the call.
 * A non-zero return stops decoding and fails the decoder with FRAME_ECALLBACK. */
typedef int (*frame_cb)(void *ctx, const uint8_t *payload, size_t len);

typedef struct frame_decoder frame_decoder_t;

/* max_frame 0 means FRAME_DEFAULT_MAX. */
int frame_decoder_create(size_t max_frame, frame_decoder_t **out);
void frame_decoder_destroy(frame_decoder_t *d);

/* Feeds len bytes. Returns FRAME_OK when all bytes were consumed (a partial frame may be
 * buffered), or a negative frame_err_t; once failed, every later call returns the same.
 * Payloads that arrive whole in one chunk are passed to cb straight from data (no copy).
 * Calling feed from inside cb on the same decoder returns FRAME_EFAILED and changes nothing;
 * cb must not destroy the decoder. */
int frame_decoder_feed(frame_decoder_t *d, const uint8_t *data, size_t len, frame_cb cb,
                       void *ctx);

/* Bytes of a partial frame currently buffered (0 between frames). */
size_t frame_decoder_pending(const frame_decoder_t *d);

/* Writes the varint for len into out (at least FRAME_VARINT_MAX bytes); returns its size. */
size_t frame_varint_encode(uint64_t len, uint8_t *out);

/* Decodes a varint from buf; returns bytes used, 0 if incomplete, FRAME_EBAD_VARINT if
 * longer than 10 bytes or overflowing 64 bits. */
int frame_varint_decode(const uint8_t *buf, size_t len, uint64_t *value);

#endif
