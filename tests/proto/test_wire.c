/*
 * test_wire.c: mpc.v1 envelopes through pack -> frame decoder -> unpack (proto/wire.c).
 *
 * The round trip is driven by the protoc-c descriptors: every field of every message
 * reachable from Request and Reply gets a distinct non-default value, one envelope is built
 * per oneof body, and the unpacked copy is compared field by field. A coverage table then
 * checks that no field of mpc.proto was left out, so a field added to the protocol later is
 * tested without touching this file. A few hand-written cases keep the intent readable, and
 * the negative cases check that undecodable or body-less payloads unpack to NULL, and that
 * wire_peek_request_id still finds the id of such a payload when it leads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

/* --- which fields the generic round trip has exercised --- */

#define MAX_MESSAGES 64
#define MAX_FIELDS   64

static struct {
    const ProtobufCMessageDescriptor *desc[MAX_MESSAGES];
    bool filled[MAX_MESSAGES][MAX_FIELDS];
    size_t n;
} coverage;

static bool *coverage_slot(const ProtobufCMessageDescriptor *desc, size_t field)
{
    assert_true(field < MAX_FIELDS);
    for (size_t i = 0; i < coverage.n; i++)
        if (coverage.desc[i] == desc)
            return &coverage.filled[i][field];
    assert_true(coverage.n < MAX_MESSAGES);
    coverage.desc[coverage.n] = desc;
    return &coverage.filled[coverage.n++][field];
}

/* --- descriptor-driven filling --- */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    assert_non_null(p);
    return p;
}

static ProtobufCMessage *new_filled(const ProtobufCMessageDescriptor *desc, unsigned *seed,
                                    int oneof_pick);

/* Stores one distinct non-default value of the field's type at dst. */
static void fill_value(const ProtobufCFieldDescriptor *f, void *dst, unsigned *seed)
{
    unsigned s = ++*seed;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *(int32_t *)dst = -(int32_t)s;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)dst = 4000000000u - s; /* needs the full 32 bits */
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *(int64_t *)dst = -(int64_t)s * 1000000000000ll;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)dst = UINT64_MAX - s; /* 10-byte varint on the wire */
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)dst = (float)s + 0.25f;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)dst = (double)s + 1e-9;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)dst = 1;
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        assert_true(e->n_values > 1);
        /* any value but the first (the proto3 default) */
        *(int *)dst = e->values[1 + s % (e->n_values - 1)].value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        char *str = xcalloc(32, 1);
        snprintf(str, 32, "%s-%u-\xc3\xa9", f->name, s); /* ends in a 2-byte UTF-8 char */
        *(char **)dst = str;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = dst;
        b->len = 3;
        b->data = xcalloc(3, 1);
        b->data[0] = (uint8_t)s;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)dst = new_filled(f->descriptor, seed, -1);
        break;
    default:
        fail_msg("field %s has a type this test does not know", f->name);
    }
}

static size_t value_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

/*
 * A message with every field set. oneof_pick selects the oneof member to set by field
 * index (-1: the first member of each oneof), so callers can walk every body.
 */
static ProtobufCMessage *new_filled(const ProtobufCMessageDescriptor *desc, unsigned *seed,
                                    int oneof_pick)
{
    ProtobufCMessage *msg = xcalloc(1, desc->sizeof_message);
    desc->message_init(msg);
    uint8_t *base = (uint8_t *)msg;
    bool oneof_done = false;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            /* mpc.proto has at most one oneof per message */
            bool pick = oneof_pick < 0 ? !oneof_done : (int)i == oneof_pick;
            if (!pick)
                continue;
            oneof_done = true;
            *(uint32_t *)(base + f->quantifier_offset) = f->id;
            fill_value(f, base + f->offset, seed);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = 3;
            uint8_t *arr = xcalloc(n, value_size(f));
            for (size_t k = 0; k < n; k++)
                fill_value(f, arr + k * value_size(f), seed);
            *(size_t *)(base + f->quantifier_offset) = n;
            *(void **)(base + f->offset) = arr;
        } else {
            fill_value(f, base + f->offset, seed);
        }
        *coverage_slot(desc, i) = true;
    }
    return msg;
}

/* --- descriptor-driven comparison --- */

static void assert_messages_equal(const ProtobufCMessage *a, const ProtobufCMessage *b);

static void assert_values_equal(const ProtobufCFieldDescriptor *f, const void *a, const void *b)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        assert_string_equal(*(char *const *)a, *(char *const *)b);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *x = a, *y = b;
        assert_int_equal(x->len, y->len);
        assert_memory_equal(x->data, y->data, x->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        assert_messages_equal(*(ProtobufCMessage *const *)a, *(ProtobufCMessage *const *)b);
        break;
    default:
        /* scalars: bitwise equality, so float round trips must be exact */
        if (memcmp(a, b, value_size(f)) != 0)
            fail_msg("field %s differs after the round trip", f->name);
    }
}

static void assert_messages_equal(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_equal(a->descriptor, b->descriptor);
    const ProtobufCMessageDescriptor *desc = a->descriptor;
    const uint8_t *pa = (const uint8_t *)a, *pb = (const uint8_t *)b;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t ca = *(const uint32_t *)(pa + f->quantifier_offset);
            uint32_t cb = *(const uint32_t *)(pb + f->quantifier_offset);
            assert_int_equal(ca, cb);
            if (ca == f->id)
                assert_values_equal(f, pa + f->offset, pb + f->offset);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t na = *(const size_t *)(pa + f->quantifier_offset);
            size_t nb = *(const size_t *)(pb + f->quantifier_offset);
            assert_int_equal(na, nb);
            const uint8_t *xa = *(void *const *)(pa + f->offset);
            const uint8_t *xb = *(void *const *)(pb + f->offset);
            for (size_t k = 0; k < na; k++)
                assert_values_equal(f, xa + k * value_size(f), xb + k * value_size(f));
        } else {
            assert_values_equal(f, pa + f->offset, pb + f->offset);
        }
    }
}

/* --- frames through the real decoder --- */

typedef struct {
    bool is_request;
    ProtobufCMessage *got[4];
    size_t n;
} unpacked_t;

static int unpack_cb(void *ctx, const uint8_t *payload, size_t len)
{
    unpacked_t *u = ctx;
    assert_true(u->n < 4);
    u->got[u->n++] = u->is_request ? (ProtobufCMessage *)wire_unpack_request(payload, len)
                                   : (ProtobufCMessage *)wire_unpack_reply(payload, len);
    return 0;
}

static void free_unpacked(unpacked_t *u)
{
    for (size_t i = 0; i < u->n; i++) {
        if (u->is_request)
            wire_free_request((Mpc__V1__Request *)u->got[i]);
        else
            wire_free_reply((Mpc__V1__Reply *)u->got[i]);
    }
    u->n = 0;
}

/* Packs msg with wire.c, decodes the frame whole and byte by byte, checks both copies. */
static void roundtrip(const ProtobufCMessage *msg)
{
    bool is_request = msg->descriptor == &mpc__v1__request__descriptor;
    const Mpc__V1__Request *req = (const Mpc__V1__Request *)msg;
    const Mpc__V1__Reply *rep = (const Mpc__V1__Reply *)msg;
    size_t size = is_request ? wire_request_frame_size(req) : wire_reply_frame_size(rep);
    uint8_t *frame = xcalloc(size, 1);
    size_t n = is_request ? wire_pack_request(req, frame) : wire_pack_reply(rep, frame);
    assert_int_equal(n, size);

    frame_decoder_t *d = NULL;
    assert_int_equal(frame_decoder_create(0, &d), FRAME_OK);
    unpacked_t u = {.is_request = is_request};
    assert_int_equal(frame_decoder_feed(d, frame, n, unpack_cb, &u), FRAME_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(frame_decoder_feed(d, frame + i, 1, unpack_cb, &u), FRAME_OK);
    assert_int_equal(u.n, 2);
    for (size_t i = 0; i < u.n; i++)
        assert_messages_equal(msg, u.got[i]);
    free_unpacked(&u);
    frame_decoder_destroy(d);
    free(frame);
}

/* Round-trips one envelope per oneof body with every field set. */
static void roundtrip_every_body(const ProtobufCMessageDescriptor *envelope)
{
    size_t bodies = 0;
    for (unsigned i = 0; i < envelope->n_fields; i++) {
        if (!(envelope->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        unsigned seed = i * 1000;
        ProtobufCMessage *msg = new_filled(envelope, &seed, (int)i);
        roundtrip(msg);
        protobuf_c_message_free_unpacked(msg, NULL);
        bodies++;
    }
    assert_true(bodies >= 5);
}

static void test_every_request_body_roundtrips(void **state)
{
    (void)state;
    roundtrip_every_body(&mpc__v1__request__descriptor);
}

static void test_every_reply_body_roundtrips(void **state)
{
    (void)state;
    roundtrip_every_body(&mpc__v1__reply__descriptor);
}

/* Every field of every message reachable from the envelopes was filled at least once. */
static void assert_covered(const ProtobufCMessageDescriptor *desc, int depth)
{
    assert_true(depth < 8);
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (!*coverage_slot(desc, i))
            fail_msg("field %s.%s was never exercised", desc->name, f->name);
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            assert_covered(f->descriptor, depth + 1);
    }
}

static void test_every_field_covered(void **state)
{
    (void)state;
    /* Runs after the two round-trip tests (cmocka runs tests in order). */
    assert_covered(&mpc__v1__request__descriptor, 0);
    assert_covered(&mpc__v1__reply__descriptor, 0);
    /* Sanity: the table saw the nested messages, not just the roots (mpc.proto has 15
     * messages; Reset, Status and Ack have no fields and so no slot). */
    assert_true(coverage.n >= 12);
}

/* --- readable, hand-written cases --- */

static void test_step_and_action_by_hand(void **state)
{
    (void)state;
    float obs[4] = {0.5f, -1.25f, 3.0f, 1e-30f};
    Mpc__V1__Step step = MPC__V1__STEP__INIT;
    step.seq = 42;
    step.observation = obs;
    step.n_observation = 4;
    step.reward = -0.75f;
    step.reset = 1;
    step.deadline_us = 20000;
    step.exploration_noise = 0.3f;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.id = 7;
    req.body_case = MPC__V1__REQUEST__BODY_STEP;
    req.step = &step;
    roundtrip(&req.base);

    float act[2] = {-1.0f, 0.999f};
    Mpc__V1__Action action = MPC__V1__ACTION__INIT;
    action.seq = 42;
    action.action = act;
    action.n_action = 2;
    action.iterations = 10;
    action.candidates = 10000;
    action.deadline_cut = 1;
    action.model_version = 3;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = 7;
    rep.body_case = MPC__V1__REPLY__BODY_ACTION;
    rep.action = &action;
    roundtrip(&rep.base);
}

static void test_empty_bodies_roundtrip(void **state)
{
    (void)state;
    /* Reset, Status and Ack have no fields: the body is still present on the wire. */
    Mpc__V1__Reset reset = MPC__V1__RESET__INIT;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_RESET;
    req.reset = &reset;
    uint8_t frame[16];
    size_t n = wire_pack_request(&req, frame);
    assert_int_equal(n, wire_request_frame_size(&req));
    Mpc__V1__Request *back = wire_unpack_request(frame + 1, n - 1);
    assert_non_null(back);
    assert_int_equal(back->id, 0);
    assert_int_equal(back->body_case, MPC__V1__REQUEST__BODY_RESET);
    assert_non_null(back->reset);
    wire_free_request(back);

    Mpc__V1__Ack ack = MPC__V1__ACK__INIT;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = UINT64_MAX;
    rep.body_case = MPC__V1__REPLY__BODY_ACK;
    rep.ack = &ack;
    roundtrip(&rep.base);
}

/* --- payloads that must not unpack --- */

static void test_undecodable_payloads(void **state)
{
    (void)state;
    const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    } bad[] = {
        {"empty payload: no body", {0}, 0},
        {"id only: no body", {0x08, 0x05}, 2},
        {"unknown field only: no body", {0x78, 0x01}, 2},
        {"truncated varint", {0x08, 0xff}, 2},
        {"body length past the end", {0x1a, 0x10, 0x08}, 3},
        {"wire type 7 does not exist", {0x0f}, 1},
        {"field number 0 is invalid", {0x00, 0x01}, 2},
        {"body field with the wrong wire type", {0x18, 0x01}, 2},
        {"field 0 with a padded tag", {0x80, 0x80, 0x80, 0x80, 0x00, 0x05, 0x22, 0x00}, 8},
        {"field 0 padded inside the body", {0x22, 0x06, 0x80, 0x80, 0x80, 0x80, 0x00, 0x05}, 8},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        Mpc__V1__Request *req = wire_unpack_request(bad[i].bytes, bad[i].len);
        Mpc__V1__Reply *rep = wire_unpack_reply(bad[i].bytes, bad[i].len);
        if (req != NULL || rep != NULL)
            fail_msg("case '%s' unpacked", bad[i].what);
    }
    wire_free_request(NULL); /* accepted, like free(NULL) */
    wire_free_reply(NULL);

    /* Every strict prefix of a valid Step request is refused or loses its body. */
    float obs[2] = {1, 2};
    Mpc__V1__Step step = MPC__V1__STEP__INIT;
    step.observation = obs;
    step.n_observation = 2;
    step.seq = 9;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.id = 300;
    req.body_case = MPC__V1__REQUEST__BODY_STEP;
    req.step = &step;
    uint8_t frame[64];
    size_t n = wire_pack_request(&req, frame);
    size_t hdr = frame_varint_decode(frame, n, &(uint64_t){0});
    for (size_t cut = 0; cut < n - hdr; cut++) {
        Mpc__V1__Request *got = wire_unpack_request(frame + hdr, cut);
        if (got != NULL)
            fail_msg("prefix of %zu of %zu bytes unpacked", cut, n - hdr);
    }
    Mpc__V1__Request *whole = wire_unpack_request(frame + hdr, n - hdr);
    assert_non_null(whole);
    assert_int_equal(whole->step->n_observation, 2);
    wire_free_request(whole);
}

/* --- the id of a payload that does not unpack --- */

static void test_peek_request_id(void **state)
{
    (void)state;
    uint8_t buf[64];
    uint64_t id = 777;

    /* id 42 and no body: the payload does not unpack, the id is still there */
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.id = 42;
    size_t n = mpc__v1__request__pack(&req, buf);
    assert_int_equal(n, 2);
    assert_null(wire_unpack_request(buf, n));
    assert_true(wire_peek_request_id(buf, n, &id));
    assert_int_equal(id, 42);

    /* with a body, and an id that takes all ten varint bytes */
    Mpc__V1__Reset reset = MPC__V1__RESET__INIT;
    req.id = UINT64_MAX;
    req.body_case = MPC__V1__REQUEST__BODY_RESET;
    req.reset = &reset;
    n = mpc__v1__request__pack(&req, buf);
    id = 0;
    assert_true(wire_peek_request_id(buf, n, &id));
    assert_true(id == UINT64_MAX);
    /* the id's varint alone suffices; cut inside it, it does not */
    assert_true(wire_peek_request_id(buf, 11, &id));
    for (size_t cut = 0; cut < 11; cut++) {
        id = 777;
        if (wire_peek_request_id(buf, cut, &id))
            fail_msg("id read from %zu bytes of an 11-byte field", cut);
        assert_int_equal(id, 777); /* left alone when false */
    }

    /* id 0: proto3 leaves the field out, so the payload starts with the body */
    req.id = 0;
    n = mpc__v1__request__pack(&req, buf);
    assert_true(n > 0 && buf[0] != 0x08);
    id = 777;
    assert_false(wire_peek_request_id(buf, n, &id));
    assert_int_equal(id, 777);
    req.body_case = MPC__V1__REQUEST__BODY__NOT_SET;
    req.reset = NULL;
    assert_int_equal(mpc__v1__request__pack(&req, buf), 0);
    assert_false(wire_peek_request_id(buf, 0, &id));
    assert_false(wire_peek_request_id(NULL, 0, &id));

    const struct {
        const char *what;
        uint8_t bytes[12];
        size_t len;
    } bad[] = {
        {"another tag first", {0x78, 0x01}, 2},
        {"field 1 with wire type 2", {0x0a, 0x01, 0x00}, 3},
        {"field 2 varint", {0x10, 0x2a}, 2},
        {"tag only", {0x08}, 1},
        {"truncated varint", {0x08, 0xff}, 2},
        {"truncated long varint", {0x08, 0x80, 0x80, 0x80}, 4},
        {"varint over 64 bits",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
         11},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        id = 777;
        if (wire_peek_request_id(bad[i].bytes, bad[i].len, &id))
            fail_msg("case '%s' gave id %llu", bad[i].what, (unsigned long long)id);
        assert_int_equal(id, 777);
    }
    /* a minimal id after which anything may follow */
    const uint8_t junk[] = {0x08, 0x2a, 0xff, 0xff};
    assert_true(wire_peek_request_id(junk, sizeof junk, &id));
    assert_int_equal(id, 42);
}

/* The id an Error echoes: the unpacked request's, else the one the payload leads with. */
static void test_request_id_for_errors(void **state)
{
    (void)state;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.id = 9;
    const uint8_t lead42[] = {0x08, 0x2a};
    const uint8_t other[] = {0x78, 0x01};
    assert_int_equal(wire_request_id(&req, lead42, sizeof lead42), 9);
    assert_int_equal(wire_request_id(&req, NULL, 0), 9);
    req.id = 0;
    assert_int_equal(wire_request_id(&req, lead42, sizeof lead42), 0);
    assert_int_equal(wire_request_id(NULL, lead42, sizeof lead42), 42);
    assert_int_equal(wire_request_id(NULL, other, sizeof other), 0);
    assert_int_equal(wire_request_id(NULL, lead42, 1), 0);
    assert_int_equal(wire_request_id(NULL, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_request_body_roundtrips),
        cmocka_unit_test(test_every_reply_body_roundtrips),
        cmocka_unit_test(test_every_field_covered),
        cmocka_unit_test(test_step_and_action_by_hand),
        cmocka_unit_test(test_empty_bodies_roundtrip),
        cmocka_unit_test(test_undecodable_payloads),
        cmocka_unit_test(test_peek_request_id),
        cmocka_unit_test(test_request_id_for_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
