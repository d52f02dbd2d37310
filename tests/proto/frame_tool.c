/*
 * frame_tool.c: writes and checks sample mpc.v1 frames for the interoperability tests.
 *
 * The C side of two tests: protoc --decode must read the frames this tool writes (the wire
 * format matches the .proto), and the Python bindings must read them and write frames this
 * tool accepts (the delimited convention matches Python's). The samples are fixed; the
 * test scripts hold the same values and compare field by field.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static const char usage[] =
    "Usage: frame_tool COMMAND FILE\n"
    "\n"
    "Writes or checks the fixed sample frames used by the proto interop tests.\n"
    "\n"
    "Commands:\n"
    "  write-requests FILE  write two delimited Request frames (Hello, then Step) to FILE\n"
    "  write-replies FILE   write two delimited Reply frames (Welcome, then Action) to FILE\n"
    "  check-requests FILE  read FILE as delimited Request frames and exit 0 only if they are\n"
    "                       exactly the two samples write-requests writes\n"
    "  --help               show this text\n"
    "\n"
    "Exit status: 0 on success, 1 on a mismatch or an I/O or decoding error, 2 on bad usage.\n";

/* --- the samples (tests/proto/check_*.py hold the same values) --- */

static float step_obs[] = {0.5f, -1.25f, 3.0f};
static float welcome_low[] = {-1.0f, -2.0f};
static float welcome_high[] = {1.0f, 2.0f};
static float action_values[] = {0.25f, -0.5f};

static Mpc__V1__Hello hello = {
    .base = PROTOBUF_C_MESSAGE_INIT(&mpc__v1__hello__descriptor),
    .client_name = "mpc-sim/cartpole-swingup",
    .auth_token = "s3cret",
    .observation_size = 3,
    .action_size = 2,
};
static Mpc__V1__Step step = {
    .base = PROTOBUF_C_MESSAGE_INIT(&mpc__v1__step__descriptor),
    .seq = 7,
    .n_observation = 3,
    .observation = step_obs,
    .reward = 0.75f,
    .reset = 1,
    .deadline_us = 20000,
    .exploration_noise = 0.5f,
};
static Mpc__V1__Welcome welcome = {
    .base = PROTOBUF_C_MESSAGE_INIT(&mpc__v1__welcome__descriptor),
    .session_id = 99,
    .model_name = "cartpole-swingup",
    .model_version = 1,
    .observation_size = 3,
    .action_size = 2,
    .n_action_low = 2,
    .action_low = welcome_low,
    .n_action_high = 2,
    .action_high = welcome_high,
    .control_period_s = 0.04,
    .default_deadline_us = 25000,
};
static Mpc__V1__Action action = {
    .base = PROTOBUF_C_MESSAGE_INIT(&mpc__v1__action__descriptor),
    .seq = 7,
    .n_action = 2,
    .action = action_values,
    .predicted_return = 12.5f,
    .iterations = 10,
    .candidates = 10000,
    .belief_us = 150,
    .plan_us = 18000,
    .queue_us = 3,
    .model_version = 1,
    .deadline_cut = 1,
    .fallback = 0,
};

static void sample_requests(Mpc__V1__Request out[2])
{
    mpc__v1__request__init(&out[0]);
    out[0].id = 1;
    out[0].body_case = MPC__V1__REQUEST__BODY_HELLO;
    out[0].hello = &hello;
    mpc__v1__request__init(&out[1]);
    out[1].id = 2;
    out[1].body_case = MPC__V1__REQUEST__BODY_STEP;
    out[1].step = &step;
}

static void sample_replies(Mpc__V1__Reply out[2])
{
    mpc__v1__reply__init(&out[0]);
    out[0].id = 1;
    out[0].body_case = MPC__V1__REPLY__BODY_WELCOME;
    out[0].welcome = &welcome;
    mpc__v1__reply__init(&out[1]);
    out[1].id = 2;
    out[1].body_case = MPC__V1__REPLY__BODY_ACTION;
    out[1].action = &action;
}

/* --- writing --- */

static int write_all(FILE *f, const uint8_t *buf, size_t len, const char *path)
{
    if (fwrite(buf, 1, len, f) != len) {
        fprintf(stderr, "frame_tool: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_frames(const char *path, int replies)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "frame_tool: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    Mpc__V1__Request reqs[2];
    Mpc__V1__Reply reps[2];
    sample_requests(reqs);
    sample_replies(reps);
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        size_t size =
            replies ? wire_reply_frame_size(&reps[i]) : wire_request_frame_size(&reqs[i]);
        uint8_t *buf = malloc(size);
        if (buf == NULL) {
            rc = -1;
            break;
        }
        size_t n = replies ? wire_pack_reply(&reps[i], buf) : wire_pack_request(&reqs[i], buf);
        rc = write_all(f, buf, n, path);
        free(buf);
    }
    if (fclose(f) != 0)
        rc = -1;
    return rc == 0 ? 0 : 1;
}

/* --- checking --- */

typedef struct {
    Mpc__V1__Request expected[2];
    size_t seen;
    int mismatch;
} check_t;

/* Equal when protoc-c serialises both to the same bytes: same fields, same values. */
static int same_request(const Mpc__V1__Request *a, const Mpc__V1__Request *b)
{
    size_t na = mpc__v1__request__get_packed_size(a);
    size_t nb = mpc__v1__request__get_packed_size(b);
    if (na != nb)
        return 0;
    uint8_t *pa = malloc(na ? na : 1), *pb = malloc(nb ? nb : 1);
    int same = pa && pb && mpc__v1__request__pack(a, pa) == na &&
               mpc__v1__request__pack(b, pb) == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

static int check_frame(void *ctx, const uint8_t *payload, size_t len)
{
    check_t *c = ctx;
    Mpc__V1__Request *req = wire_unpack_request(payload, len);
    if (req == NULL) {
        fprintf(stderr, "frame_tool: frame %zu is not a valid Request\n", c->seen + 1);
        c->mismatch = 1;
    } else if (c->seen >= 2 || !same_request(req, &c->expected[c->seen])) {
        fprintf(stderr, "frame_tool: frame %zu differs from the sample\n", c->seen + 1);
        c->mismatch = 1;
    }
    wire_free_request(req);
    c->seen++;
    return 0;
}

static int check_requests(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "frame_tool: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    check_t c = {.seen = 0};
    sample_requests(c.expected);
    frame_decoder_t *d = NULL;
    int rc = frame_decoder_create(0, &d);
    uint8_t buf[7]; /* small on purpose: frames arrive split across reads */
    size_t n;
    while (rc == FRAME_OK && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        rc = frame_decoder_feed(d, buf, n, check_frame, &c);
    if (rc == FRAME_OK && frame_decoder_pending(d) != 0) {
        fprintf(stderr, "frame_tool: %s ends inside a frame\n", path);
        c.mismatch = 1;
    }
    if (rc != FRAME_OK)
        fprintf(stderr, "frame_tool: %s: %s\n", path, frame_strerror(rc));
    frame_decoder_destroy(d);
    fclose(f);
    if (rc == FRAME_OK && c.seen != 2) {
        fprintf(stderr, "frame_tool: expected 2 frames, read %zu\n", c.seen);
        c.mismatch = 1;
    }
    return rc != FRAME_OK || c.mismatch;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc != 3) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "write-requests") == 0)
        return write_frames(argv[2], 0);
    if (strcmp(argv[1], "write-replies") == 0)
        return write_frames(argv[2], 1);
    if (strcmp(argv[1], "check-requests") == 0)
        return check_requests(argv[2]);
    fprintf(stderr, "frame_tool: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
