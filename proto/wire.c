/*
 * wire.c: mpc.v1 Request/Reply envelopes to and from delimited frames.
 *
 * Packing writes the length varint and then lets protoc-c serialise straight after it, so a
 * frame is built in the caller's buffer with no intermediate copy. Unpacking refuses any
 * envelope without a body: a Request or Reply with no oneof set (an empty payload, or a
 * body field this build does not know) carries nothing the peer can act on.
 */
#include "wire.h"

#include <stdint.h>

/* Varint + payload size; the payload size comes from protoc-c's get_packed_size. */
static size_t frame_size_for(size_t payload)
{
    uint8_t varint[FRAME_VARINT_MAX];
    return frame_varint_encode(payload, varint) + payload;
}

size_t wire_request_frame_size(const Mpc__V1__Request *req)
{
    return frame_size_for(mpc__v1__request__get_packed_size(req));
}

size_t wire_reply_frame_size(const Mpc__V1__Reply *rep)
{
    return frame_size_for(mpc__v1__reply__get_packed_size(rep));
}

size_t wire_pack_request(const Mpc__V1__Request *req, uint8_t *out)
{
    size_t n = frame_varint_encode(mpc__v1__request__get_packed_size(req), out);
    return n + mpc__v1__request__pack(req, out + n);
}

size_t wire_pack_reply(const Mpc__V1__Reply *rep, uint8_t *out)
{
    size_t n = frame_varint_encode(mpc__v1__reply__get_packed_size(rep), out);
    return n + mpc__v1__reply__pack(rep, out + n);
}

Mpc__V1__Request *wire_unpack_request(const uint8_t *payload, size_t len)
{
    Mpc__V1__Request *req = mpc__v1__request__unpack(NULL, len, payload);
    if (req != NULL && req->body_case == MPC__V1__REQUEST__BODY__NOT_SET) {
        mpc__v1__request__free_unpacked(req, NULL);
        return NULL;
    }
    return req;
}

Mpc__V1__Reply *wire_unpack_reply(const uint8_t *payload, size_t len)
{
    Mpc__V1__Reply *rep = mpc__v1__reply__unpack(NULL, len, payload);
    if (rep != NULL && rep->body_case == MPC__V1__REPLY__BODY__NOT_SET) {
        mpc__v1__reply__free_unpacked(rep, NULL);
        return NULL;
    }
    return rep;
}

void wire_free_request(Mpc__V1__Request *req)
{
    if (req != NULL)
        mpc__v1__request__free_unpacked(req, NULL);
}

void wire_free_reply(Mpc__V1__Reply *rep)
{
    if (rep != NULL)
        mpc__v1__reply__free_unpacked(rep, NULL);
}
