/*
 * test_mpcclient.c: libmpcclient against a fake daemon (clients/lib/mpcclient.c): the
 * blocking calls, delay compensation and plans, and asynchronous steps.
 *
 * Each test connects the client to one end of a socketpair (or to a loopback/Unix
 * listener); a server thread on the other end runs a short script: read requests, answer
 * with canned Reply frames, raw garbage, half a frame, or nothing at all. Requests the
 * server reads are kept and checked by the test after the thread is joined, so cmocka's
 * assertions only ever run on the main thread.
 *
 * The counting allocator (tests/common/alloc_count.h) counts the allocations libmpcclient
 * and proto/ make outside the fake daemon's thread: steps after the first must make none.
 * protobuf-c's own unpacking lives in its shared library, which the wrap does not see, as
 * intended.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "mpcclient.h"
#include "wire.h"

/* --- the fake daemon --- */

#define MAX_SEEN 32

typedef struct fake fake_t;
typedef void (*script_fn)(fake_t *f);

struct fake {
    int fd;
    pthread_t thread;
    script_fn script;
    int listen_fd; /* >= 0: accept one connection first */
    frame_decoder_t *decoder;
    Mpc__V1__Request *seen[MAX_SEEN];
    size_t n_seen;
};

static int keep_request(void *ctx, const uint8_t *payload, size_t len)
{
    fake_t *f = ctx;
    Mpc__V1__Request *req = wire_unpack_request(payload, len);
    if (req == NULL || f->n_seen == MAX_SEEN) {
        wire_free_request(req);
        return -1;
    }
    f->seen[f->n_seen++] = req;
    return 0;
}

/* Reads the next request byte by byte; NULL at end of stream or on a bad frame. */
static Mpc__V1__Request *fake_read(fake_t *f)
{
    size_t before = f->n_seen;
    while (f->n_seen == before) {
        uint8_t byte;
        if (read(f->fd, &byte, 1) != 1)
            return NULL;
        if (frame_decoder_feed(f->decoder, &byte, 1, keep_request, f) != FRAME_OK)
            return NULL;
    }
    return f->seen[before];
}

static void fake_raw(fake_t *f, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(f->fd, p, len);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/* Room for the largest canned reply (a plan longer than MPC_CLIENT_MAX_PLAN) and a few
 * small ones written together. */
#define FRAMES_MAX 16384

/* Packs rep as a frame at buf + *len when it fits in FRAMES_MAX; advances *len. */
static void frame_add(uint8_t *buf, size_t *len, const Mpc__V1__Reply *rep)
{
    if (*len + wire_reply_frame_size(rep) <= FRAMES_MAX)
        *len += wire_pack_reply(rep, buf + *len);
}

static void fake_reply(fake_t *f, Mpc__V1__Reply *rep)
{
    uint8_t buf[FRAMES_MAX];
    size_t len = 0;
    frame_add(buf, &len, rep);
    fake_raw(f, buf, len);
}

static void fake_close(fake_t *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    alloc_count_ignore_thread(); /* the fake daemon's allocations are not the client's */
    if (f->listen_fd >= 0)
        f->fd = accept(f->listen_fd, NULL, NULL);
    if (f->fd >= 0)
        f->script(f);
    fake_close(f);
    return NULL;
}

static void fake_launch(fake_t *f, script_fn script)
{
    f->script = script;
    assert_int_equal(frame_decoder_create(0, &f->decoder), FRAME_OK);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

/* Starts a script on a socketpair and attaches the client to the other end. */
static void fake_start(fake_t *f, script_fn script, mpc_client_t **client)
{
    memset(f, 0, sizeof(*f));
    f->listen_fd = -1;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->fd = sv[1];
    assert_int_equal(mpc_client_create(client), 0);
    assert_int_equal(mpc_client_attach_fd(*client, sv[0]), 0);
    fake_launch(f, script);
}

/* Joins the script's thread; the requests it read stay in f->seen until fake_free. */
static void fake_join(fake_t *f)
{
    pthread_join(f->thread, NULL);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
}

static void fake_free(fake_t *f)
{
    for (size_t i = 0; i < f->n_seen; i++)
        wire_free_request(f->seen[i]);
    frame_decoder_destroy(f->decoder);
}

/* --- canned replies --- */

/* A Welcome admitting the session for rate_hz with min_iterations reserved per plan. */
static void send_welcome_rated(fake_t *f, uint64_t id, uint32_t obs, uint32_t act,
                               double rate_hz, uint32_t min_iterations)
{
    float low[MPC_CLIENT_MAX_ACTION + 1], high[MPC_CLIENT_MAX_ACTION + 1];
    for (uint32_t i = 0; i < act && i <= MPC_CLIENT_MAX_ACTION; i++) {
        low[i] = -1.0f - (float)i;
        high[i] = 1.0f + (float)i;
    }
    Mpc__V1__Welcome w = MPC__V1__WELCOME__INIT;
    w.session_id = 42;
    w.model_name = "cartpole-swingup";
    w.model_version = 3;
    w.observation_size = obs;
    w.action_size = act;
    w.n_action_low = w.n_action_high = act;
    w.action_low = low;
    w.action_high = high;
    w.control_period_s = 0.08;
    w.default_deadline_us = 20000;
    w.rate_hz = rate_hz;
    w.min_iterations = min_iterations;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_WELCOME;
    rep.welcome = &w;
    fake_reply(f, &rep);
}

/* The answer to a Hello without a rate: one step per control period (0.08 s). */
static void send_welcome(fake_t *f, uint64_t id, uint32_t obs, uint32_t act)
{
    send_welcome_rated(f, id, obs, act, 12.5, 4);
}

/* Plans of the canned Actions: row k, column j holds 0.25 (j + 1) + k (row 0 = action). */
#define PLAN_STEP_S 0.08
#define PLAN_MAX    1200

static float plan_value(size_t k, size_t j)
{
    return 0.25f * (float)(j + 1) + (float)k;
}

/* Adds an Action for seq with n floats and a plan of n_plan floats (rows of n, or not). */
static void action_add(uint8_t *buf, size_t *len, uint64_t id, uint64_t seq, size_t n,
                       size_t n_plan)
{
    float action[MPC_CLIENT_MAX_ACTION + 1], plan[PLAN_MAX];
    for (size_t i = 0; i < n && i <= MPC_CLIENT_MAX_ACTION; i++)
        action[i] = plan_value(0, i);
    for (size_t i = 0; i < n_plan && i < PLAN_MAX; i++)
        plan[i] = plan_value(i / n, i % n);
    Mpc__V1__Action a = MPC__V1__ACTION__INIT;
    a.n_plan = n_plan < PLAN_MAX ? n_plan : PLAN_MAX;
    a.plan = plan;
    a.plan_step_s = n_plan > 0 ? PLAN_STEP_S : 0.0;
    a.seq = seq;
    a.n_action = n;
    a.action = action;
    a.predicted_return = 12.5f;
    a.iterations = 7;
    a.candidates = 7000;
    a.belief_us = 11;
    a.plan_us = 9000;
    a.queue_us = 13;
    a.model_version = 3;
    a.deadline_cut = true;
    a.fallback = false;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_ACTION;
    rep.action = &a;
    frame_add(buf, len, &rep);
}

static void send_action_plan(fake_t *f, uint64_t id, uint64_t seq, size_t n, size_t n_plan)
{
    uint8_t buf[FRAMES_MAX];
    size_t len = 0;
    action_add(buf, &len, id, seq, n, n_plan);
    fake_raw(f, buf, len);
}

static void send_action(fake_t *f, uint64_t id, uint64_t seq, size_t n)
{
    send_action_plan(f, id, seq, n, 0);
}

static void error_add(uint8_t *buf, size_t *len, uint64_t id, Mpc__V1__Error__Code code,
                      const char *msg, uint32_t retry_after_ms)
{
    Mpc__V1__Error e = MPC__V1__ERROR__INIT;
    e.code = code;
    e.message = (char *)msg;
    e.retry_after_ms = retry_after_ms;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_ERROR;
    rep.error = &e;
    frame_add(buf, len, &rep);
}

static void send_error_retry(fake_t *f, uint64_t id, Mpc__V1__Error__Code code, const char *msg,
                             uint32_t retry_after_ms)
{
    uint8_t buf[FRAMES_MAX];
    size_t len = 0;
    error_add(buf, &len, id, code, msg, retry_after_ms);
    fake_raw(f, buf, len);
}

static void send_error(fake_t *f, uint64_t id, Mpc__V1__Error__Code code, const char *msg)
{
    send_error_retry(f, id, code, msg, 0);
}

static void send_ack(fake_t *f, uint64_t id)
{
    Mpc__V1__Ack ack = MPC__V1__ACK__INIT;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_ACK;
    rep.ack = &ack;
    fake_reply(f, &rep);
}

static void send_status(fake_t *f, uint64_t id)
{
    Mpc__V1__LatencySummary total = MPC__V1__LATENCY_SUMMARY__INIT;
    total.count = 100;
    total.p50_us = 5000;
    total.p90_us = 9000;
    total.p99_us = 9900;
    total.max_us = 12000;
    Mpc__V1__SessionSummary s0 = MPC__V1__SESSION_SUMMARY__INIT, s1 = s0;
    s0.session_id = 1;
    s0.client_name = "mpc-sim/cartpole";
    s0.steps = 500;
    s0.episodes = 2;
    s1.session_id = 2;
    s1.client_name = "mpc-bench";
    Mpc__V1__SessionSummary *sessions[] = {&s0, &s1};
    Mpc__V1__StatusReply st = MPC__V1__STATUS_REPLY__INIT;
    st.version = "0.1.0";
    st.uptime_s = 12.5;
    st.ready = true;
    st.model_name = "cartpole-swingup";
    st.model_version = 3;
    st.model_path = "/var/lib/mpcd/model.safetensors";
    st.sessions = 2;
    st.requests = 1000;
    st.overruns = 4;
    st.total = &total;
    st.n_session = 2;
    st.session = sessions;
    st.json = "{\"ready\":true}";
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_STATUS;
    rep.status = &st;
    fake_reply(f, &rep);
}

static void send_reload(fake_t *f, uint64_t id, bool ok, const char *msg)
{
    Mpc__V1__ReloadReply r = MPC__V1__RELOAD_REPLY__INIT;
    r.ok = ok;
    r.model_version = ok ? 4 : 3;
    r.message = (char *)msg;
    r.load_s = 0.5;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_RELOAD;
    rep.reload = &r;
    fake_reply(f, &rep);
}

/* --- scripts --- */

#define OBS   5
#define ACT   2
#define STEPS 20

static void script_session(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f);
    if (req == NULL)
        return;
    send_welcome(f, req->id, OBS, ACT);
    for (int i = 0; i < STEPS; i++) {
        req = fake_read(f);
        if (req == NULL || req->body_case != MPC__V1__REQUEST__BODY_STEP)
            return;
        send_action(f, req->id, req->step->seq, ACT);
    }
    if ((req = fake_read(f)) != NULL)
        send_ack(f, req->id);
}

static void test_hello_step_reset(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script_session, &c);

    mpc_client_welcome_t w;
    assert_int_equal(mpc_client_hello(c, "test/session", "secret", OBS, 0, &w), 0);
    assert_int_equal(w.session_id, 42);
    assert_string_equal(w.model_name, "cartpole-swingup");
    assert_int_equal(w.model_version, 3);
    assert_int_equal(w.observation_size, OBS);
    assert_int_equal(w.action_size, ACT);
    assert_true(w.action_low[1] == -2.0f && w.action_high[1] == 2.0f);
    assert_true(w.control_period_s == 0.08);
    assert_int_equal(w.default_deadline_us, 20000);
    assert_true(w.rate_hz == 12.5);
    assert_int_equal(w.min_iterations, 4);

    /* Wrong observation size: refused before anything is sent. */
    float obs[OBS] = {0.5f, -1.0f, 2.0f, 0.0f, 3.25f};
    mpc_client_step_t step = {.seq = 0, .observation = obs, .observation_size = OBS - 1};
    mpc_client_action_t act;
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);
    assert_non_null(strstr(mpc_client_errmsg(c), "expects 5"));

    step = (mpc_client_step_t){.observation = obs,
                               .observation_size = OBS,
                               .reward = 0.75f,
                               .reset = true,
                               .deadline_us = 15000,
                               .exploration_noise = 0.3f};
    for (int i = 0; i < STEPS; i++) {
        step.seq = 100 + (uint64_t)i;
        if (i == 1)
            alloc_count_start(); /* the first step may size buffers */
        assert_int_equal(mpc_client_step(c, &step, &act), 0);
        step.reset = false;
    }
    assert_int_equal(alloc_count_stop(), 0);
    assert_int_equal(act.seq, 100 + STEPS - 1);
    assert_int_equal(act.action_size, ACT);
    assert_true(act.action[0] == 0.25f && act.action[1] == 0.5f);
    assert_true(act.predicted_return == 12.5f);
    assert_int_equal(act.iterations, 7);
    assert_int_equal(act.candidates, 7000);
    assert_int_equal(act.belief_us, 11);
    assert_int_equal(act.plan_us, 9000);
    assert_int_equal(act.queue_us, 13);
    assert_int_equal(act.model_version, 3);
    assert_true(act.deadline_cut);
    assert_false(act.fallback);
    assert_int_equal(mpc_client_reset(c), 0);
    fake_join(&f);

    /* What the daemon saw. */
    assert_int_equal(f.n_seen, STEPS + 2);
    const Mpc__V1__Hello *h = f.seen[0]->hello;
    assert_int_equal(f.seen[0]->body_case, MPC__V1__REQUEST__BODY_HELLO);
    assert_string_equal(h->client_name, "test/session");
    assert_string_equal(h->auth_token, "secret");
    assert_int_equal(h->observation_size, OBS);
    assert_int_equal(h->action_size, 0);
    assert_true(h->rate_hz == 0.0); /* mpc_client_hello declares no rate */
    const Mpc__V1__Step *s = f.seen[1]->step;
    assert_int_equal(s->seq, 100);
    assert_int_equal(s->n_observation, OBS);
    assert_memory_equal(s->observation, obs, sizeof(obs));
    assert_true(s->reward == 0.75f && s->reset && s->exploration_noise == 0.3f);
    assert_int_equal(s->deadline_us, 15000);
    assert_false(f.seen[2]->step->reset);
    for (size_t i = 1; i < f.n_seen; i++)
        assert_true(f.seen[i]->id > f.seen[i - 1]->id);
    assert_int_equal(f.seen[STEPS + 1]->body_case, MPC__V1__REQUEST__BODY_RESET);
    mpc_client_destroy(c);
    fake_free(&f);
}

/* Error for the first request, then a normal answer: the session stays usable. */
static void script_daemon_error(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f);
    if (req != NULL)
        send_error(f, req->id, MPC__V1__ERROR__CODE__SIZE_MISMATCH,
                   "observation size 3 differs from the model's 5");
    if ((req = fake_read(f)) != NULL)
        send_error(f, 0, MPC__V1__ERROR__CODE__MALFORMED, "undecodable request");
    if ((req = fake_read(f)) != NULL)
        send_ack(f, req->id);
}

static void test_daemon_error(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script_daemon_error, &c);
    assert_int_equal(mpc_client_daemon_code(c), -1);
    assert_int_equal(mpc_client_hello(c, "x", NULL, 3, 0, NULL), MPC_CLIENT_EDAEMON);
    assert_int_equal(mpc_client_daemon_code(c), MPC__V1__ERROR__CODE__SIZE_MISMATCH);
    assert_int_equal(mpc_client_retry_after_ms(c), 0);
    assert_non_null(strstr(mpc_client_errmsg(c), "SIZE_MISMATCH"));
    assert_non_null(strstr(mpc_client_errmsg(c), "differs from the model's 5"));
    /* An Error with id 0 answers the request in flight. */
    assert_int_equal(mpc_client_reset(c), MPC_CLIENT_EDAEMON);
    assert_int_equal(mpc_client_daemon_code(c), MPC__V1__ERROR__CODE__MALFORMED);
    assert_true(mpc_client_connected(c));
    assert_int_equal(mpc_client_reset(c), 0);
    fake_join(&f);
    mpc_client_destroy(c);
    fake_free(&f);
}

/* Admission control: the first Hello is refused with OVERLOADED and a retry hint, the
 * second (on the same connection) admitted for the declared rate. */
static void script_overloaded_hello(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f);
    if (req == NULL)
        return;
    send_error_retry(f, req->id, MPC__V1__ERROR__CODE__OVERLOADED,
                     "admitting 50 Hz would leave the sessions at 3 of 4 iterations", 250);
    if ((req = fake_read(f)) == NULL)
        return;
    send_welcome_rated(f, req->id, OBS, ACT, req->hello->rate_hz, 4);
    if ((req = fake_read(f)) != NULL)
        send_ack(f, req->id);
}

static void test_hello_overloaded_then_admitted(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script_overloaded_hello, &c);
    assert_int_equal(mpc_client_retry_after_ms(c), 0);
    assert_int_equal(mpc_client_hello_with(c, NULL, NULL), MPC_CLIENT_EINVAL);

    mpc_client_hello_t hello = {.client_name = "arm-3",
                                .auth_token = "secret",
                                .observation_size = OBS,
                                .rate_hz = 50.0};
    mpc_client_welcome_t w;
    assert_int_equal(mpc_client_hello_with(c, &hello, &w), MPC_CLIENT_EDAEMON);
    assert_int_equal(mpc_client_daemon_code(c), MPC_CLIENT_DAEMON_OVERLOADED);
    assert_int_equal(mpc_client_retry_after_ms(c), 250);
    assert_non_null(strstr(mpc_client_errmsg(c), "OVERLOADED"));
    assert_non_null(strstr(mpc_client_errmsg(c), "3 of 4 iterations"));
    assert_true(mpc_client_connected(c)); /* a refused Hello leaves the connection open */

    assert_int_equal(mpc_client_hello_with(c, &hello, &w), 0);
    assert_int_equal(w.session_id, 42);
    assert_true(w.rate_hz == 50.0);
    assert_int_equal(w.min_iterations, 4);
    assert_int_equal(w.observation_size, OBS);
    assert_int_equal(mpc_client_reset(c), 0);
    fake_join(&f);

    assert_int_equal(f.n_seen, 3);
    for (size_t i = 0; i < 2; i++) {
        const Mpc__V1__Hello *h = f.seen[i]->hello;
        assert_int_equal(f.seen[i]->body_case, MPC__V1__REQUEST__BODY_HELLO);
        assert_string_equal(h->client_name, "arm-3");
        assert_string_equal(h->auth_token, "secret");
        assert_int_equal(h->observation_size, OBS);
        assert_int_equal(h->action_size, 0);
        assert_true(h->rate_hz == 50.0);
    }
    mpc_client_destroy(c);
    fake_free(&f);
}

/* Reads two requests before answering either: the client gave up on the first. */
static void script_late_reply(fake_t *f)
{
    Mpc__V1__Request *first = fake_read(f);
    Mpc__V1__Request *second = fake_read(f);
    if (first == NULL || second == NULL)
        return;
    send_ack(f, first->id);
    send_status(f, second->id);
}

static void test_timeout_then_late_reply_skipped(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script_late_reply, &c);
    assert_int_equal(mpc_client_set_timeout(c, 0), MPC_CLIENT_EINVAL);
    assert_int_equal(mpc_client_set_timeout(c, 50), 0);
    assert_int_equal(mpc_client_reset(c), MPC_CLIENT_ETIMEDOUT);
    assert_non_null(strstr(mpc_client_errmsg(c), "timed out after 50 ms"));
    assert_true(mpc_client_connected(c));

    assert_int_equal(mpc_client_set_timeout(c, 10000), 0);
    mpc_client_status_t st;
    assert_int_equal(mpc_client_status(c, &st), 0);
    assert_string_equal(st.version, "0.1.0");
    assert_true(st.ready);
    assert_string_equal(st.model_path, "/var/lib/mpcd/model.safetensors");
    assert_string_equal(st.last_reload_error, "");
    assert_int_equal(st.requests, 1000);
    assert_int_equal(st.overruns, 4);
    assert_int_equal(st.total.count, 100);
    assert_true(st.total.p99_us == 9900 && st.total.max_us == 12000);
    assert_int_equal(st.plan.count, 0);
    assert_int_equal(st.n_session, 2);
    assert_string_equal(st.session[0].client_name, "mpc-sim/cartpole");
    assert_int_equal(st.session[0].steps, 500);
    assert_string_equal(st.session[1].client_name, "mpc-bench");
    assert_string_equal(st.json, "{\"ready\":true}");
    mpc_client_status_free(&st);
    assert_null(st.json);
    mpc_client_status_free(NULL);
    fake_join(&f);
    mpc_client_destroy(c);
    fake_free(&f);
}

/* Half a reply, then the daemon goes away. */
static void script_close_mid_frame(fake_t *f)
{
    if (fake_read(f) == NULL)
        return;
    static const uint8_t partial[] = {100, 0x08, 0x01, 0x22, 0x00, 0x00};
    fake_raw(f, partial, sizeof(partial));
}

static void expect_broken_after(script_fn script, int code, const char *message)
{
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script, &c);
    assert_int_equal(mpc_client_reset(c), code);
    if (strstr(mpc_client_errmsg(c), message) == NULL)
        fail_msg("message '%s' lacks '%s'", mpc_client_errmsg(c), message);
    assert_false(mpc_client_connected(c));
    fake_join(&f);
    /* Later calls fail at once instead of reading a desynchronised stream. */
    assert_int_equal(mpc_client_reset(c), MPC_CLIENT_ECLOSED);
    assert_non_null(strstr(mpc_client_errmsg(c), "broken"));
    mpc_client_destroy(c);
    fake_free(&f);
}

static void test_closed_mid_frame(void **state)
{
    (void)state;
    expect_broken_after(script_close_mid_frame, MPC_CLIENT_ECLOSED,
                        "in the middle of a reply (6 bytes received)");
}

static void script_close_at_once(fake_t *f)
{
    (void)fake_read(f);
}

static void test_closed_before_reply(void **state)
{
    (void)state;
    expect_broken_after(script_close_at_once, MPC_CLIENT_ECLOSED,
                        "the daemon closed the connection;");
}

/* A well-delimited frame whose payload is not a Reply. */
static void script_garbage_payload(fake_t *f)
{
    if (fake_read(f) == NULL)
        return;
    static const uint8_t garbage[] = {4, 0xff, 0xff, 0xff, 0xff};
    fake_raw(f, garbage, sizeof(garbage));
}

static void test_garbage_payload(void **state)
{
    (void)state;
    expect_broken_after(script_garbage_payload, MPC_CLIENT_EPROTO, "not a valid mpc.v1 Reply");
}

/* A length varint that never ends. */
static void script_bad_varint(fake_t *f)
{
    if (fake_read(f) == NULL)
        return;
    uint8_t bad[12];
    memset(bad, 0xff, sizeof(bad));
    fake_raw(f, bad, sizeof(bad));
}

static void test_bad_varint(void **state)
{
    (void)state;
    expect_broken_after(script_bad_varint, MPC_CLIENT_EPROTO, "malformed length varint");
}

/* A reply whose id was never asked for. */
static void script_future_id(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f);
    if (req != NULL)
        send_ack(f, req->id + 5);
}

static void test_unexpected_id(void **state)
{
    (void)state;
    expect_broken_after(script_future_id, MPC_CLIENT_EPROTO, "unexpected reply id");
}

/* Answers of the wrong kind or shape are refused without breaking the stream. */
static void script_wrong_answers(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f);
    if (req == NULL)
        return;
    send_welcome(f, req->id, OBS, ACT);
    if ((req = fake_read(f)) != NULL)
        send_ack(f, req->id); /* Ack to a Step */
    if ((req = fake_read(f)) != NULL)
        send_action(f, req->id, req->step->seq, ACT + 1); /* wrong action size */
    if ((req = fake_read(f)) != NULL)
        send_action(f, req->id, req->step->seq + 1, ACT); /* wrong seq */
    if ((req = fake_read(f)) != NULL)
        send_welcome(f, req->id, OBS, MPC_CLIENT_MAX_ACTION + 1); /* too many actions */
}

static void test_wrong_answers(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script_wrong_answers, &c);
    assert_int_equal(mpc_client_hello(c, NULL, NULL, 0, 0, NULL), 0);
    float obs[OBS] = {0};
    mpc_client_step_t step = {.seq = 9, .observation = obs, .observation_size = OBS};
    mpc_client_action_t act;
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EPROTO);
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EPROTO);
    assert_non_null(strstr(mpc_client_errmsg(c), "has 3 floats"));
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EPROTO);
    assert_non_null(strstr(mpc_client_errmsg(c), "Action for seq 10"));
    assert_int_equal(mpc_client_hello(c, NULL, NULL, 0, 0, NULL), MPC_CLIENT_EPROTO);
    assert_non_null(strstr(mpc_client_errmsg(c), "at most 64"));
    assert_true(mpc_client_connected(c));
    fake_join(&f);
    mpc_client_destroy(c);
    fake_free(&f);
}

static void script_reloads(fake_t *f)
{
    Mpc__V1__Request *req;
    if ((req = fake_read(f)) != NULL)
        send_reload(f, req->id, true, "");
    if ((req = fake_read(f)) != NULL)
        send_reload(f, req->id, false, "tensor 'gru.weight_hh' has wrong shape");
    if ((req = fake_read(f)) != NULL)
        send_error(f, req->id, MPC__V1__ERROR__CODE__RELOAD_FAILED, "no such file");
}

static void test_reload(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script_reloads, &c);
    mpc_client_reload_t r;
    assert_int_equal(mpc_client_reload(c, "/models/new.safetensors", &r), 0);
    assert_true(r.ok);
    assert_int_equal(r.model_version, 4);
    assert_true(r.load_s == 0.5);
    assert_int_equal(mpc_client_reload(c, NULL, &r), MPC_CLIENT_ERELOAD);
    assert_false(r.ok);
    assert_int_equal(r.model_version, 3);
    assert_string_equal(r.message, "tensor 'gru.weight_hh' has wrong shape");
    assert_non_null(strstr(mpc_client_errmsg(c), "wrong shape"));
    assert_int_equal(mpc_client_reload(c, "/nope", NULL), MPC_CLIENT_ERELOAD);
    assert_non_null(strstr(mpc_client_errmsg(c), "no such file"));
    fake_join(&f);
    assert_string_equal(f.seen[0]->reload->path, "/models/new.safetensors");
    assert_string_equal(f.seen[1]->reload->path, "");
    mpc_client_destroy(c);
    fake_free(&f);
}

static void script_one_ack(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f);
    if (req != NULL)
        send_ack(f, req->id);
}

/* Runs script_one_ack behind a listener and connects to it by address. */
static void connect_and_reset(fake_t *f, int listen_fd, const char *address)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->listen_fd = listen_fd;
    assert_int_equal(listen(listen_fd, 1), 0);
    fake_launch(f, script_one_ack);
    mpc_client_t *c;
    assert_int_equal(mpc_client_create(&c), 0);
    int rc = mpc_client_connect(c, address, 5000);
    if (rc != 0)
        fail_msg("connect %s: %s", address, mpc_client_errmsg(c));
    assert_int_equal(mpc_client_reset(c), 0);
    mpc_client_destroy(c);
    fake_join(f);
    fake_free(f);
}

/* A TCP socket bound to a free loopback port; its port goes to *port. */
static int bind_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void test_connect_tcp_and_unix(void **state)
{
    (void)state;
    int port;
    int lfd = bind_loopback(&port);
    char address[128];
    snprintf(address, sizeof(address), "tcp://127.0.0.1:%d", port);
    fake_t f;
    connect_and_reset(&f, lfd, address);

    char path[64];
    snprintf(path, sizeof(path), "/tmp/test-mpcclient-%d.sock", (int)getpid());
    unlink(path);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    snprintf(address, sizeof(address), "unix:%s", path);
    connect_and_reset(&f, lfd, address);
    unlink(path);
}

static void test_not_connected_and_refused(void **state)
{
    (void)state;
    mpc_client_t *c;
    assert_int_equal(mpc_client_create(&c), 0);
    assert_string_equal(mpc_client_errmsg(c), "");
    assert_int_equal(mpc_client_reset(c), MPC_CLIENT_ECLOSED);
    assert_string_equal(mpc_client_errmsg(c), "not connected");
    assert_int_equal(mpc_client_connect(c, "tcp://localhost", 100), MPC_CLIENT_EINVAL);
    assert_non_null(strstr(mpc_client_errmsg(c), "missing ':PORT'"));

    /* A port that was just free: nothing listens, so the connection is refused. */
    int port;
    close(bind_loopback(&port));
    char address[128];
    snprintf(address, sizeof(address), "tcp://127.0.0.1:%d", port);
    assert_int_equal(mpc_client_connect(c, address, 2000), MPC_CLIENT_ECONNECT);
    assert_non_null(strstr(mpc_client_errmsg(c), address));
    assert_false(mpc_client_connected(c));
    mpc_client_destroy(c);
    mpc_client_destroy(NULL);
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(mpc_client_err_name(MPC_CLIENT_ETIMEDOUT), "TIMEDOUT");
    assert_string_equal(mpc_client_strerror(MPC_CLIENT_ECLOSED), "connection closed");
    assert_string_equal(mpc_client_strerror(0), "success");
    assert_string_equal(mpc_client_strerror(-999), "unknown error");
    assert_string_equal(mpc_client_daemon_code_name(MPC__V1__ERROR__CODE__NOT_READY),
                        "NOT_READY");
    assert_string_equal(mpc_client_daemon_code_name(999), "UNKNOWN");
    assert_string_equal(mpc_client_daemon_code_name(MPC_CLIENT_DAEMON_OVERLOADED),
                        "OVERLOADED");
    assert_string_equal(mpc_client_daemon_code_name(MPC_CLIENT_DAEMON_PERMISSION_DENIED),
                        "PERMISSION_DENIED");
}

/* --- delay compensation, plans and asynchronous steps --- */

/* Welcome, then answers three blocking steps with a plan of 3 rows, one of 600 rows (more
 * than a reply's copy keeps) and one that is not whole rows, then an asynchronous step. */
static void script_plans(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f);
    if (req == NULL)
        return;
    send_welcome(f, req->id, OBS, ACT);
    static const size_t n_plan[] = {3 * ACT, 600 * ACT, 3, 12 * ACT};
    for (size_t i = 0; i < sizeof(n_plan) / sizeof(n_plan[0]); i++) {
        if ((req = fake_read(f)) == NULL || req->body_case != MPC__V1__REQUEST__BODY_STEP)
            return;
        send_action_plan(f, req->id, req->step->seq, ACT, n_plan[i]);
    }
}

static void expect_plan(const mpc_client_action_t *a, size_t rows)
{
    assert_int_equal(a->plan_rows, rows);
    assert_true(a->plan_step_s == PLAN_STEP_S);
    for (size_t k = 0; k < rows; k++)
        for (size_t j = 0; j < ACT; j++)
            assert_true(a->plan[k * ACT + j] == plan_value(k, j));
    for (size_t j = 0; j < ACT; j++)
        assert_true(a->action[j] == a->plan[j]);
}

static void test_delay_and_plan_round_trip(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script_plans, &c);
    float obs[OBS] = {0.5f, -1.0f, 2.0f, 0.0f, 3.25f};
    float applied[2 * ACT] = {0.1f, -0.2f, 0.3f, -0.4f};
    mpc_client_action_t act;

    /* Checked before anything is sent: without a session, applied_actions must be whole
     * delay_steps rows; with one, delay_steps x action_size floats. */
    mpc_client_step_t step = {.seq = 1,
                              .observation = obs,
                              .observation_size = OBS,
                              .delay_steps = 2,
                              .applied_actions = applied,
                              .applied_actions_size = 3};
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);
    assert_non_null(strstr(mpc_client_errmsg(c), "not 2 (delay_steps) rows"));
    assert_int_equal(mpc_client_hello(c, NULL, NULL, OBS, 0, NULL), 0);
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);
    assert_non_null(strstr(mpc_client_errmsg(c), "has 3 floats; expected 0 or delay_steps x "
                                                 "action_size = 2 x 2"));
    assert_int_equal(mpc_client_step_send(c, &step), MPC_CLIENT_EINVAL);
    step.applied_actions = NULL;
    step.applied_actions_size = 2 * ACT;
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);
    assert_non_null(strstr(mpc_client_errmsg(c), "applied_actions is NULL"));
    step.applied_actions = applied;
    step.delay_steps = 0;
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);
    assert_int_equal(mpc_client_steps_in_flight(c), 0);

    /* The fields go out, the plan comes back. */
    step.delay_steps = 2;
    assert_int_equal(mpc_client_step(c, &step, &act), 0);
    expect_plan(&act, 3);
    /* 600 rows of 2: cut to the 512 whole rows that fit MPC_CLIENT_MAX_PLAN. */
    step.seq = 2;
    step.delay_steps = 0;
    step.applied_actions_size = 0;
    assert_int_equal(mpc_client_step(c, &step, &act), 0);
    expect_plan(&act, MPC_CLIENT_MAX_PLAN / ACT);
    /* 3 floats are not whole rows of 2: refused, the connection stays usable. */
    step.seq = 3;
    memset(&act, 0, sizeof(act));
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EPROTO);
    assert_non_null(strstr(mpc_client_errmsg(c), "a plan of 3 floats"));
    assert_int_equal(act.seq, 0); /* *out untouched */
    assert_true(mpc_client_connected(c));
    /* The same fields through the asynchronous path. */
    step.seq = 4;
    step.delay_steps = 1;
    step.applied_actions = applied + ACT;
    step.applied_actions_size = ACT;
    assert_int_equal(mpc_client_step_send(c, &step), 0);
    unsigned dropped = 99;
    assert_int_equal(mpc_client_step_poll(c, -1, &act, &dropped), 0);
    assert_int_equal(dropped, 0);
    assert_int_equal(act.seq, 4);
    expect_plan(&act, 12);
    fake_join(&f);

    /* What the daemon decoded. */
    assert_int_equal(f.n_seen, 5);
    const Mpc__V1__Step *s = f.seen[1]->step;
    assert_int_equal(s->delay_steps, 2);
    assert_int_equal(s->n_applied_actions, 2 * ACT);
    assert_memory_equal(s->applied_actions, applied, sizeof(applied));
    s = f.seen[2]->step;
    assert_int_equal(s->delay_steps, 0);
    assert_int_equal(s->n_applied_actions, 0);
    s = f.seen[4]->step;
    assert_int_equal(s->seq, 4);
    assert_int_equal(s->delay_steps, 1);
    assert_int_equal(s->n_applied_actions, ACT);
    assert_memory_equal(s->applied_actions, applied + ACT, ACT * sizeof(float));
    assert_int_equal(s->n_observation, OBS);
    mpc_client_destroy(c);
    fake_free(&f);
}

#define ASYNC_LOOP 10

/* Reads n step requests into reqs; false when the stream ended first. */
static bool read_steps(fake_t *f, Mpc__V1__Request **reqs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((reqs[i] = fake_read(f)) == NULL ||
            reqs[i]->body_case != MPC__V1__REQUEST__BODY_STEP)
            return false;
    return true;
}

/* Answers groups of asynchronous steps, each group's replies in one write, so that they
 * arrive together. */
static void script_async(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f), *r[3];
    if (req == NULL)
        return;
    send_welcome(f, req->id, OBS, ACT);
    uint8_t buf[FRAMES_MAX];
    size_t len = 0;
    /* Three in flight (the client polls in vain while the first waits): all answered. */
    if (!read_steps(f, r, 3))
        return;
    for (size_t i = 0; i < 3; i++)
        action_add(buf, &len, r[i]->id, r[i]->step->seq, ACT, 4 * ACT);
    fake_raw(f, buf, len);
    /* An Action, then an Error. */
    if (!read_steps(f, r, 2))
        return;
    len = 0;
    action_add(buf, &len, r[0]->id, r[0]->step->seq, ACT, 4 * ACT);
    error_add(buf, &len, r[1]->id, MPC__V1__ERROR__CODE__OVERLOADED, "queue full", 100);
    fake_raw(f, buf, len);
    /* An Error, then an Action. */
    if (!read_steps(f, r, 2))
        return;
    len = 0;
    error_add(buf, &len, r[0]->id, MPC__V1__ERROR__CODE__INVALID_VALUE, "observation 2", 0);
    action_add(buf, &len, r[1]->id, r[1]->step->seq, ACT, 4 * ACT);
    fake_raw(f, buf, len);
    /* Two asynchronous steps, then a blocking one: all three answered in order. */
    if (!read_steps(f, r, 3))
        return;
    for (size_t i = 0; i < 3; i++)
        send_action_plan(f, r[i]->id, r[i]->step->seq, ACT, 4 * ACT);
    /* The robot's loop: one step at a time. */
    for (int i = 0; i < ASYNC_LOOP; i++) {
        if (!read_steps(f, r, 1))
            return;
        send_action_plan(f, r[0]->id, r[0]->step->seq, ACT, 12 * ACT);
    }
    /* A wrong body (kept usable), then an id never sent (broken). */
    if (!read_steps(f, r, 1))
        return;
    send_ack(f, r[0]->id);
    if (!read_steps(f, r, 1))
        return;
    send_action(f, r[0]->id + 5, r[0]->step->seq, ACT);
}

static void test_async_steps(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    mpc_client_action_t act;
    unsigned dropped;
    assert_int_equal(mpc_client_create(&c), 0);
    assert_int_equal(mpc_client_fd(c), -1);
    assert_int_equal(mpc_client_step_poll(c, 0, &act, NULL), MPC_CLIENT_ECLOSED);
    mpc_client_destroy(c);

    fake_start(&f, script_async, &c);
    assert_true(mpc_client_fd(c) >= 0);
    assert_int_equal(mpc_client_hello(c, NULL, NULL, OBS, 0, NULL), 0);
    float obs[OBS] = {0};
    mpc_client_step_t step = {.seq = 1, .observation = obs, .observation_size = OBS};
    assert_int_equal(mpc_client_step_poll(c, 0, NULL, NULL), MPC_CLIENT_EINVAL);
    /* Nothing in flight: EAGAIN at once, even with a long timeout. */
    assert_int_equal(mpc_client_step_poll(c, 60000, &act, &dropped), MPC_CLIENT_EAGAIN);

    /* Several in flight: the newest kept, the others counted as dropped. */
    assert_int_equal(mpc_client_step_send(c, &step), 0);
    assert_int_equal(mpc_client_steps_in_flight(c), 1);
    assert_int_equal(mpc_client_step_poll(c, 0, &act, &dropped), MPC_CLIENT_EAGAIN);
    assert_non_null(strstr(mpc_client_errmsg(c), "no reply yet (1 steps in flight)"));
    assert_int_equal(mpc_client_step_poll(c, 20, &act, &dropped), MPC_CLIENT_EAGAIN);
    for (step.seq = 2; step.seq <= 3; step.seq++)
        assert_int_equal(mpc_client_step_send(c, &step), 0);
    assert_int_equal(mpc_client_steps_in_flight(c), 3);
    assert_int_equal(mpc_client_step_poll(c, -1, &act, &dropped), 0);
    assert_int_equal(act.seq, 3);
    assert_int_equal(dropped, 2);
    expect_plan(&act, 4);
    assert_int_equal(mpc_client_steps_in_flight(c), 0);
    assert_int_equal(mpc_client_step_poll(c, 0, &act, &dropped), MPC_CLIENT_EAGAIN);

    /* An Error after an Action: the Error first, then the Action, without waiting. */
    for (step.seq = 4; step.seq <= 5; step.seq++)
        assert_int_equal(mpc_client_step_send(c, &step), 0);
    memset(&act, 0, sizeof(act));
    assert_int_equal(mpc_client_step_poll(c, -1, &act, &dropped), MPC_CLIENT_EDAEMON);
    assert_int_equal(act.seq, 0); /* *out untouched */
    assert_int_equal(mpc_client_daemon_code(c), MPC_CLIENT_DAEMON_OVERLOADED);
    assert_int_equal(mpc_client_retry_after_ms(c), 100);
    assert_non_null(strstr(mpc_client_errmsg(c), "OVERLOADED: queue full"));
    assert_int_equal(mpc_client_steps_in_flight(c), 0);
    assert_true(mpc_client_connected(c));
    assert_int_equal(mpc_client_step_poll(c, 0, &act, &dropped), 0);
    assert_int_equal(act.seq, 4);
    assert_int_equal(dropped, 0);
    assert_int_equal(mpc_client_step_poll(c, 0, &act, &dropped), MPC_CLIENT_EAGAIN);

    /* An Error before an Action. */
    for (step.seq = 6; step.seq <= 7; step.seq++)
        assert_int_equal(mpc_client_step_send(c, &step), 0);
    assert_int_equal(mpc_client_step_poll(c, -1, &act, &dropped), MPC_CLIENT_EDAEMON);
    assert_int_equal(mpc_client_daemon_code(c), MPC_CLIENT_DAEMON_INVALID_VALUE);
    assert_int_equal(mpc_client_step_poll(c, 5000, &act, &dropped), 0);
    assert_int_equal(act.seq, 7);

    /* A blocking call while steps are in flight drops their replies. */
    for (step.seq = 8; step.seq <= 9; step.seq++)
        assert_int_equal(mpc_client_step_send(c, &step), 0);
    step.seq = 10;
    assert_int_equal(mpc_client_step(c, &step, &act), 0);
    assert_int_equal(act.seq, 10);
    assert_int_equal(mpc_client_steps_in_flight(c), 0);
    assert_int_equal(mpc_client_step_poll(c, 0, &act, &dropped), MPC_CLIENT_EAGAIN);

    /* The robot's loop allocates nothing after its first step. */
    for (int i = 0; i < ASYNC_LOOP; i++) {
        if (i == 1)
            alloc_count_start();
        step.seq = 100 + (uint64_t)i;
        assert_int_equal(mpc_client_step_send(c, &step), 0);
        assert_int_equal(mpc_client_step_poll(c, -1, &act, NULL), 0);
        assert_int_equal(act.seq, step.seq);
    }
    assert_int_equal(alloc_count_stop(), 0);
    expect_plan(&act, 12);

    /* A reply of the wrong kind is refused; an id never sent breaks the stream. */
    assert_int_equal(mpc_client_step_send(c, &step), 0);
    assert_int_equal(mpc_client_step_poll(c, -1, &act, NULL), MPC_CLIENT_EPROTO);
    assert_non_null(strstr(mpc_client_errmsg(c), "answered a step with reply body"));
    assert_true(mpc_client_connected(c));
    assert_int_equal(mpc_client_step_send(c, &step), 0);
    assert_int_equal(mpc_client_step_poll(c, -1, &act, NULL), MPC_CLIENT_EPROTO);
    assert_non_null(strstr(mpc_client_errmsg(c), "unexpected reply id"));
    assert_false(mpc_client_connected(c));
    assert_int_equal(mpc_client_step_poll(c, 0, &act, NULL), MPC_CLIENT_ECLOSED);
    assert_int_equal(mpc_client_step_send(c, &step), MPC_CLIENT_ECLOSED);
    fake_join(&f);

    for (size_t i = 1; i < f.n_seen; i++)
        assert_true(f.seen[i]->id == f.seen[i - 1]->id + 1); /* one counter, no gaps */
    mpc_client_destroy(c);
    fake_free(&f);
}

/* A late reply to a blocking call that timed out, then asynchronous steps: the late reply
 * is skipped by id, the steps' replies are taken. */
static void script_late_then_async(fake_t *f)
{
    Mpc__V1__Request *reset = fake_read(f), *r[2];
    if (reset == NULL || !read_steps(f, r, 2))
        return;
    uint8_t buf[FRAMES_MAX];
    size_t len = 0;
    Mpc__V1__Ack ack = MPC__V1__ACK__INIT;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = reset->id;
    rep.body_case = MPC__V1__REPLY__BODY_ACK;
    rep.ack = &ack;
    frame_add(buf, &len, &rep);
    for (size_t i = 0; i < 2; i++)
        action_add(buf, &len, r[i]->id, r[i]->step->seq, ACT, 0);
    fake_raw(f, buf, len);
}

static void test_async_after_timeout(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    fake_start(&f, script_late_then_async, &c);
    assert_int_equal(mpc_client_set_timeout(c, 30), 0);
    assert_int_equal(mpc_client_reset(c), MPC_CLIENT_ETIMEDOUT);
    assert_int_equal(mpc_client_set_timeout(c, 5000), 0);
    float obs[OBS] = {0};
    mpc_client_step_t step = {.seq = 1, .observation = obs, .observation_size = OBS};
    assert_int_equal(mpc_client_step_send(c, &step), 0);
    step.seq = 2;
    assert_int_equal(mpc_client_step_send(c, &step), 0);
    mpc_client_action_t act;
    unsigned dropped;
    assert_int_equal(mpc_client_step_poll(c, -1, &act, &dropped), 0);
    assert_int_equal(act.seq, 2);
    assert_int_equal(dropped, 1);
    assert_int_equal(act.plan_rows, 0); /* a daemon without plans */
    assert_true(act.plan_step_s == 0.0);
    assert_int_equal(mpc_client_steps_in_flight(c), 0);
    assert_true(mpc_client_connected(c));
    fake_join(&f);
    mpc_client_destroy(c);
    fake_free(&f);
}

/* A full socket: the fake daemon reads nothing until the test writes how many steps it
 * sent through `go`, then answers them all and one Reset. */
static int go[2];

static void script_full_socket(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f), *r[MAX_SEEN];
    if (req == NULL)
        return;
    send_welcome(f, req->id, OBS, ACT);
    uint8_t n;
    if (read(go[0], &n, 1) != 1 || n >= MAX_SEEN - 2 || !read_steps(f, r, n))
        return;
    for (size_t i = 0; i < n; i++)
        send_action(f, r[i]->id, r[i]->step->seq, ACT);
    if ((req = fake_read(f)) != NULL)
        send_ack(f, req->id);
}

/* A step whose write times out before a byte of it is sent leaves the connection usable and
 * the steps in flight accounted for (small frames go whole into a Unix socket or not at
 * all). */
static void test_async_send_timeout(void **state)
{
    (void)state;
    fake_t f;
    mpc_client_t *c;
    assert_int_equal(pipe(go), 0);
    fake_start(&f, script_full_socket, &c);
    assert_int_equal(mpc_client_hello(c, NULL, NULL, OBS, 0, NULL), 0);
    int small = 1; /* the kernel's minimum */
    assert_int_equal(setsockopt(mpc_client_fd(c), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)),
                     0);
    assert_int_equal(mpc_client_set_timeout(c, 20), 0);
    float obs[OBS] = {0};
    mpc_client_step_t step = {.observation = obs, .observation_size = OBS};
    int rc = 0;
    uint8_t sent = 0;
    while (sent < MAX_SEEN - 3 && (rc = mpc_client_step_send(c, &step)) == 0) {
        sent++;
        step.seq++;
    }
    assert_int_equal(rc, MPC_CLIENT_ETIMEDOUT);
    assert_true(mpc_client_connected(c));
    assert_int_equal(mpc_client_steps_in_flight(c), sent);
    assert_int_equal(write(go[1], &sent, 1), 1);
    assert_int_equal(mpc_client_set_timeout(c, 5000), 0);
    mpc_client_action_t act;
    unsigned dropped, total = 0;
    while (mpc_client_steps_in_flight(c) > 0) {
        assert_int_equal(mpc_client_step_poll(c, -1, &act, &dropped), 0);
        total += dropped + 1;
    }
    assert_int_equal(total, sent);
    assert_int_equal(act.seq, sent - 1);
    assert_int_equal(mpc_client_reset(c), 0);
    fake_join(&f);
    assert_int_equal(f.n_seen, sent + 2);
    for (size_t i = 1; i < f.n_seen; i++)
        assert_true(f.seen[i]->id == f.seen[i - 1]->id + 1);
    close(go[0]);
    close(go[1]);
    mpc_client_destroy(c);
    fake_free(&f);
}

/* --- pixel sessions (README "Camera robots") --- */

#define PIX_H     8
#define PIX_W     8
#define PIX_C     3
#define PIX_BYTES (PIX_H * PIX_W * PIX_C)

static void pixel_image(uint8_t *img, int t)
{
    for (int i = 0; i < PIX_BYTES; i++)
        img[i] = (uint8_t)(i * 7 + t * 31);
}

/* A pixel model's Welcome: observation_size 0, an 8x8x3 image, 4 steps of history. */
static void send_pixel_welcome(fake_t *f, uint64_t id, uint32_t resumed)
{
    float low[ACT] = {-1.0f, -2.0f}, high[ACT] = {1.0f, 2.0f};
    Mpc__V1__Welcome w = MPC__V1__WELCOME__INIT;
    w.session_id = 43;
    w.model_name = "camera";
    w.model_version = 1;
    w.action_size = ACT;
    w.n_action_low = w.n_action_high = ACT;
    w.action_low = low;
    w.action_high = high;
    w.control_period_s = 0.08;
    w.history_steps = 4;
    w.resumed_steps = resumed;
    w.image_height = PIX_H;
    w.image_width = PIX_W;
    w.image_channels = PIX_C;
    Mpc__V1__Reply rep = MPC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = MPC__V1__REPLY__BODY_WELCOME;
    rep.welcome = &w;
    fake_reply(f, &rep);
}

/* Hello, 3 steps and an async one, then the connection drops; the client comes back with
 * a resuming Hello and sends its step again. */
static void script_pixels(fake_t *f)
{
    Mpc__V1__Request *req = fake_read(f);
    if (req == NULL)
        return;
    send_pixel_welcome(f, req->id, 0);
    for (int i = 0; i < 4; i++) {
        if ((req = fake_read(f)) == NULL || req->body_case != MPC__V1__REQUEST__BODY_STEP)
            return;
        send_action(f, req->id, req->step->seq, ACT);
    }
    fake_close(f);
    if ((f->fd = accept(f->listen_fd, NULL, NULL)) < 0 || (req = fake_read(f)) == NULL ||
        req->body_case != MPC__V1__REQUEST__BODY_HELLO)
        return;
    send_pixel_welcome(f, req->id, (uint32_t)req->hello->n_history);
    if ((req = fake_read(f)) != NULL && req->body_case == MPC__V1__REQUEST__BODY_STEP)
        send_action(f, req->id, req->step->seq, ACT);
}

static void test_pixel_steps_and_resume(void **state)
{
    (void)state;
    int port;
    char address[128];
    fake_t f;
    memset(&f, 0, sizeof(f));
    f.fd = -1;
    f.listen_fd = bind_loopback(&port);
    assert_int_equal(listen(f.listen_fd, 2), 0);
    snprintf(address, sizeof(address), "tcp://127.0.0.1:%d", port);
    fake_launch(&f, script_pixels);
    mpc_client_t *c;
    assert_int_equal(mpc_client_create(&c), 0);
    assert_int_equal(mpc_client_connect(c, address, 5000), 0);

    mpc_client_welcome_t w;
    assert_int_equal(mpc_client_hello(c, "camera-robot", NULL, 0, 0, &w), 0);
    assert_int_equal(w.observation_size, 0);
    assert_int_equal(w.image_height, PIX_H);
    assert_int_equal(w.image_width, PIX_W);
    assert_int_equal(w.image_channels, PIX_C);

    /* Wrong kinds and sizes: refused before anything is sent. */
    uint8_t img[5][PIX_BYTES];
    for (int t = 0; t < 5; t++)
        pixel_image(img[t], t);
    float obs[OBS] = {0};
    mpc_client_action_t act;
    mpc_client_step_t step = {.observation = obs, .observation_size = OBS};
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);
    step = (mpc_client_step_t){.image = img[0], .image_size = 10};
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);
    assert_non_null(strstr(mpc_client_errmsg(c), "8x8x3 images (192 bytes)"));
    step = (mpc_client_step_t){.image_size = PIX_BYTES};
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);
    step = (mpc_client_step_t){.image = img[0]};
    assert_int_equal(mpc_client_step(c, &step, &act), MPC_CLIENT_EINVAL);

    for (int t = 0; t < 3; t++) {
        step = (mpc_client_step_t){.seq = (uint64_t)t,
                                   .image = img[t],
                                   .image_size = PIX_BYTES,
                                   .reward = 0.5f,
                                   .reset = t == 0};
        if (t == 1)
            alloc_count_start(); /* the first step may size buffers */
        assert_int_equal(mpc_client_step(c, &step, &act), 0);
        assert_int_equal(act.seq, t);
    }
    step = (mpc_client_step_t){.seq = 3, .image = img[3], .image_size = PIX_BYTES};
    assert_int_equal(mpc_client_step_send(c, &step), 0);
    assert_int_equal(mpc_client_step_poll(c, -1, &act, NULL), 0);
    assert_int_equal(alloc_count_stop(), 0);
    assert_int_equal(act.seq, 3);

    /* The connection drops: the client resumes with the 4 images and sends step 4 again. */
    step = (mpc_client_step_t){.seq = 4, .image = img[4], .image_size = PIX_BYTES};
    int rc = mpc_client_step(c, &step, &act);
    if (rc != 0)
        fail_msg("step after the drop: %s", mpc_client_errmsg(c));
    assert_int_equal(act.seq, 4);
    assert_int_equal(mpc_client_resumes(c), 1);
    mpc_client_destroy(c);
    fake_join(&f);

    /* What the fake daemon saw: images on every step, none with floats; the resuming
     * Hello carried the 4 answered steps' images, oldest first. */
    assert_int_equal(f.n_seen, 7);
    assert_int_equal(f.seen[0]->hello->observation_size, 0);
    for (int t = 0; t < 4; t++) {
        const Mpc__V1__Step *s = f.seen[1 + t]->step;
        assert_int_equal(s->n_observation, 0);
        assert_int_equal(s->image.len, PIX_BYTES);
        assert_memory_equal(s->image.data, img[t], PIX_BYTES);
    }
    const Mpc__V1__Hello *h = f.seen[5]->hello;
    assert_int_equal(f.seen[5]->body_case, MPC__V1__REQUEST__BODY_HELLO);
    assert_int_equal(h->n_history, 4);
    for (int t = 0; t < 4; t++) {
        assert_int_equal(h->history[t]->n_observation, 0);
        assert_int_equal(h->history[t]->image.len, PIX_BYTES);
        assert_memory_equal(h->history[t]->image.data, img[t], PIX_BYTES);
    }
    assert_memory_equal(f.seen[6]->step->image.data, img[4], PIX_BYTES);
    fake_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_step_reset),
        cmocka_unit_test(test_daemon_error),
        cmocka_unit_test(test_hello_overloaded_then_admitted),
        cmocka_unit_test(test_timeout_then_late_reply_skipped),
        cmocka_unit_test(test_closed_mid_frame),
        cmocka_unit_test(test_closed_before_reply),
        cmocka_unit_test(test_garbage_payload),
        cmocka_unit_test(test_bad_varint),
        cmocka_unit_test(test_unexpected_id),
        cmocka_unit_test(test_wrong_answers),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_connect_tcp_and_unix),
        cmocka_unit_test(test_not_connected_and_refused),
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_delay_and_plan_round_trip),
        cmocka_unit_test(test_async_steps),
        cmocka_unit_test(test_async_after_timeout),
        cmocka_unit_test(test_async_send_timeout),
        cmocka_unit_test(test_pixel_steps_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
