/*
 * wire.c: mpc.v1 Request/Reply envelopes to and from delimited frames.
 *
 * Packing writes the length varint and then lets protoc-c serialise straight after it, so a
 * frame is built in the caller's buffer with no intermediate copy. Unpacking refuses any
 * envelope without a body: a Request or Reply with no oneof set (an empty payload, or a
 * body field this build does not know) carries nothing the peer can act on. The checks
 * walk the protoc-c descriptors, so they cover both envelopes and any field added later.
 */
#include "wire.h"

#include <stdbool.h>
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

/*
 * protoc-c accepts field number 0 when its tag is padded to several varint bytes, yet
 * refuses the one-byte form, and the protobuf spec (and Python's parser) refuse both. Refuse
 * it at any depth so every implementation agrees on which frames are valid.
 */
static bool has_field_zero(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    const uint8_t *base = (const uint8_t *)m;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        size_t n = 1;
        ProtobufCMessage *const *subs = (ProtobufCMessage *const *)(base + f->offset);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)(base + f->quantifier_offset);
            subs = *(ProtobufCMessage *const *const *)(base + f->offset);
        }
        for (size_t k = 0; k < n; k++)
            if (subs[k] != NULL && has_field_zero(subs[k]))
                return true;
    }
    return false;
}

/* Unpacks an envelope; NULL unless it parses, has no field 0 and its oneof body is set. */
static ProtobufCMessage *unpack_envelope(const ProtobufCMessageDescriptor *desc,
                                         const uint8_t *payload, size_t len)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, payload);
    if (m == NULL)
        return NULL;
    bool has_body = false;
    for (unsigned i = 0; i < desc->n_fields && !has_body; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        has_body = (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                   *(const uint32_t *)((const uint8_t *)m + f->quantifier_offset) == f->id;
    }
    if (!has_body || has_field_zero(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

Mpc__V1__Request *wire_unpack_request(const uint8_t *payload, size_t len)
{
    return (Mpc__V1__Request *)unpack_envelope(&mpc__v1__request__descriptor, payload, len);
}

Mpc__V1__Reply *wire_unpack_reply(const uint8_t *payload, size_t len)
{
    return (Mpc__V1__Reply *)unpack_envelope(&mpc__v1__reply__descriptor, payload, len);
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

bool wire_peek_request_id(const uint8_t *payload, size_t len, uint64_t *id)
{
    /* Tag 0x08: field 1, wire type 0 (varint). */
    if (!payload || len < 2 || payload[0] != 0x08)
        return false;
    uint64_t v;
    if (frame_varint_decode(payload + 1, len - 1, &v) <= 0)
        return false;
    *id = v;
    return true;
}

uint64_t wire_request_id(const Mpc__V1__Request *r, const uint8_t *payload, size_t len)
{
    uint64_t id = 0;
    if (r)
        return r->id;
    wire_peek_request_id(payload, len, &id);
    return id;
}
