/*
 * wire.h: packing and unpacking of mpc.v1 Request/Reply messages as delimited frames.
 *
 * Thin helpers over the protoc-c generated code so the daemon and the clients encode and
 * decode envelopes in exactly one place.
 */
#ifndef MPC_WIRE_H
#define MPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "framing.h"
#include "mpc.pb-c.h"

/* Size of the whole frame (varint + payload) for a message. */
size_t wire_request_frame_size(const Mpc__V1__Request *req);
size_t wire_reply_frame_size(const Mpc__V1__Reply *rep);

/* Writes varint + payload into out (at least *_frame_size bytes); returns bytes written. */
size_t wire_pack_request(const Mpc__V1__Request *req, uint8_t *out);
size_t wire_pack_reply(const Mpc__V1__Reply *rep, uint8_t *out);

/* Unpacks one payload (without its varint). Returns NULL when the bytes are not a valid
 * message or the oneof body is missing; free with the matching free function. */
Mpc__V1__Request *wire_unpack_request(const uint8_t *payload, size_t len);
Mpc__V1__Reply *wire_unpack_reply(const uint8_t *payload, size_t len);
void wire_free_request(Mpc__V1__Request *req);

/* The id of a payload that does not unpack as a whole: true and *id when the payload
 * starts with field 1 (Request.id, a varint) as every encoder writes it, so an Error
 * about a broken request can still echo its id. */
bool wire_peek_request_id(const uint8_t *payload, size_t len, uint64_t *id);
/* The id an Error about payload echoes: r's when it unpacked (r may be NULL), else the one
 * the payload starts with, else 0. */
uint64_t wire_request_id(const Mpc__V1__Request *r, const uint8_t *payload, size_t len);
void wire_free_reply(Mpc__V1__Reply *rep);

#endif
