/*
 * mpcclient.c: libmpcclient's connection and its blocking request/reply calls.
 *
 * Each call packs one Request (proto/wire.h) into a send buffer that only ever grows,
 * writes it with poll() against the call's deadline, then feeds received bytes to the
 * proto/framing.h decoder until the Reply with the request's id arrives. Replies with an
 * older id are answers to calls that timed out earlier; they are dropped, which keeps the
 * connection usable after a timeout. Anything the stream cannot recover from (the daemon
 * closing, a frame that does not decode, a partial write) marks the connection broken.
 */
#include "mpcclient.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "address.h"
#include "deadline.h"
#include "dial.h"
#include "errbuf.h"
#include "status_copy.h"
#include "wire.h"

struct mpc_client {
    int fd;      /* -1 when not connected */
    bool broken; /* the stream can no longer be trusted */
    int timeout_ms;
    uint64_t next_id;
    frame_decoder_t *decoder;
    uint8_t *sendbuf; /* grows to the largest request sent, never shrinks */
    size_t sendcap;

    /* State of the call in progress, shared with the frame callback. */
    uint64_t want_id;
    Mpc__V1__Reply *reply;
    int callback_err;

    bool have_session;
    uint32_t observation_size;
    uint32_t action_size;
    int daemon_code;
    uint32_t retry_after_ms;
    char errmsg[1024];
    uint8_t recvbuf[16384];
};

/* The header's copy of Error.Code must follow the proto. */
#define XX(name, val)                                                                          \
    _Static_assert((int)MPC_CLIENT_DAEMON_##name == (int)MPC__V1__ERROR__CODE__##name,         \
                   "MPC_CLIENT_DAEMON_" #name " differs from proto/mpc.proto");
MPC_CLIENT_DAEMON_CODE_MAP(XX)
#undef XX

const char *mpc_client_strerror(int err)
{
    switch (err) {
    case MPC_CLIENT_OK:
        return "success";
#define XX(name, val, msg)                                                                     \
    case val:                                                                                  \
        return msg;
        MPC_CLIENT_ERRNO_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *mpc_client_err_name(int err)
{
    switch (err) {
    case MPC_CLIENT_OK:
        return "OK";
#define XX(name, val, msg)                                                                     \
    case val:                                                                                  \
        return #name;
        MPC_CLIENT_ERRNO_MAP(XX)
#undef XX
    }
    return "UNKNOWN";
}

const char *mpc_client_daemon_code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&mpc__v1__error__code__descriptor, code);
    return v != NULL ? v->name : "UNKNOWN";
}

/* Records the message of a failure and returns its code, so callers can `return fail(...)`. */
static int fail(mpc_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(mpc_client_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errbuf_vset(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

/* A failure after which the stream is unusable (said at the end of the message). */
static int fail_broken(mpc_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_broken(mpc_client_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errbuf_vset(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
    size_t n = strlen(c->errmsg);
    errbuf_set(c->errmsg + n, sizeof(c->errmsg) - n, "; the connection is no longer usable");
    c->broken = true;
    return code;
}

int mpc_client_create(mpc_client_t **out)
{
    mpc_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return MPC_CLIENT_ENOMEM;
    c->fd = -1;
    c->timeout_ms = MPC_CLIENT_DEFAULT_TIMEOUT_MS;
    c->daemon_code = -1;
    c->next_id = 1;
    *out = c;
    return 0;
}

void mpc_client_close(mpc_client_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->broken = false;
    c->have_session = false;
    frame_decoder_destroy(c->decoder);
    c->decoder = NULL;
}

void mpc_client_destroy(mpc_client_t *c)
{
    if (c == NULL)
        return;
    mpc_client_close(c);
    free(c->sendbuf);
    free(c);
}

bool mpc_client_connected(const mpc_client_t *c)
{
    return c->fd >= 0 && !c->broken;
}

int mpc_client_set_timeout(mpc_client_t *c, int timeout_ms)
{
    if (timeout_ms <= 0)
        return fail(c, MPC_CLIENT_EINVAL, "timeout must be positive, got %d ms", timeout_ms);
    c->timeout_ms = timeout_ms;
    return 0;
}

int mpc_client_timeout(const mpc_client_t *c)
{
    return c->timeout_ms;
}

const char *mpc_client_errmsg(const mpc_client_t *c)
{
    return c->errmsg;
}

int mpc_client_daemon_code(const mpc_client_t *c)
{
    return c->daemon_code;
}

uint32_t mpc_client_retry_after_ms(const mpc_client_t *c)
{
    return c->retry_after_ms;
}

int mpc_client_attach_fd(mpc_client_t *c, int fd)
{
    mpc_client_close(c);
    if (fd < 0)
        return fail(c, MPC_CLIENT_EINVAL, "invalid file descriptor %d", fd);
    /* Every wait goes through poll(); a blocking send could overrun the call's deadline. */
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return fail(c, MPC_CLIENT_EINVAL, "file descriptor %d: %s", fd, strerror(e));
    }
    int rc = frame_decoder_create(0, &c->decoder);
    if (rc != FRAME_OK) {
        close(fd);
        return fail(c, MPC_CLIENT_ENOMEM, "frame decoder: %s", frame_strerror(rc));
    }
    c->fd = fd;
    return 0;
}

int mpc_client_connect(mpc_client_t *c, const char *address, int timeout_ms)
{
    address_t addr;
    if (address == NULL || address[0] == '\0')
        address = MPC_CLIENT_DEFAULT_ADDRESS;
    if (address_parse(address, ADDRESS_CONNECT, &addr, c->errmsg, sizeof(c->errmsg)) < 0)
        return MPC_CLIENT_EINVAL;
    mpc_client_close(c);
    int fd = mpc_dial(&addr, timeout_ms > 0 ? timeout_ms : c->timeout_ms, c->errmsg,
                      sizeof(c->errmsg));
    if (fd < 0)
        return fd;
    return mpc_client_attach_fd(c, fd);
}

/* Waits for the socket to become ready for events before the deadline. */
static int wait_ready(mpc_client_t *c, short events, int64_t deadline, const char *doing)
{
    struct pollfd p = {.fd = c->fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, mpc_deadline_left_ms(deadline));
        if (n > 0)
            return 0;
        if (n == 0)
            return fail(c, MPC_CLIENT_ETIMEDOUT, "timed out after %d ms %s", c->timeout_ms,
                        doing);
        if (errno != EINTR)
            return fail_broken(c, MPC_CLIENT_EIO, "%s", strerror(errno));
    }
}

static int send_all(mpc_client_t *c, const uint8_t *buf, size_t len, int64_t deadline)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(c->fd, buf + done, len - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            return fail_broken(
                c, errno == EPIPE || errno == ECONNRESET ? MPC_CLIENT_ECLOSED : MPC_CLIENT_EIO,
                "sending to the daemon failed: %s", strerror(errno));
        }
        int rc = wait_ready(c, POLLOUT, deadline, "sending a request");
        if (rc < 0) {
            /* Half a frame on the wire would desynchronise the daemon's decoder. */
            if (done > 0)
                c->broken = true;
            return rc;
        }
    }
    return 0;
}

/* Frame callback: keeps the reply the call waits for, drops late replies to earlier calls. */
static int on_frame(void *ctx, const uint8_t *payload, size_t len)
{
    mpc_client_t *c = ctx;
    if (c->callback_err < 0)
        return 0;
    Mpc__V1__Reply *rep = wire_unpack_reply(payload, len);
    if (rep == NULL) {
        c->callback_err = fail_broken(c, MPC_CLIENT_EPROTO,
                                      "the daemon sent a frame that is "
                                      "not a valid mpc.v1 Reply");
        return 0;
    }
    /* Error id 0: the daemon could not decode our request, so it is the current call's. */
    bool undecodable = rep->body_case == MPC__V1__REPLY__BODY_ERROR && rep->id == 0;
    if (rep->id < c->want_id && !undecodable) {
        wire_free_reply(rep);
        return 0;
    }
    if (c->reply != NULL || rep->id > c->want_id) {
        unsigned long long id = rep->id;
        wire_free_reply(rep);
        c->callback_err =
            fail_broken(c, MPC_CLIENT_EPROTO, "unexpected reply id %llu while waiting for %llu",
                        id, (unsigned long long)c->want_id);
        return 0;
    }
    c->reply = rep;
    return 0;
}

static int receive_reply(mpc_client_t *c, int64_t deadline)
{
    while (c->reply == NULL) {
        int rc = wait_ready(c, POLLIN, deadline, "waiting for the daemon's reply");
        if (rc < 0)
            return rc;
        ssize_t n = recv(c->fd, c->recvbuf, sizeof(c->recvbuf), 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return fail_broken(c, errno == ECONNRESET ? MPC_CLIENT_ECLOSED : MPC_CLIENT_EIO,
                               "receiving from the daemon failed: %s", strerror(errno));
        }
        if (n == 0) {
            size_t pending = frame_decoder_pending(c->decoder);
            if (pending > 0)
                return fail_broken(c, MPC_CLIENT_ECLOSED,
                                   "the daemon closed the connection in the middle of a "
                                   "reply (%zu bytes received)",
                                   pending);
            return fail_broken(c, MPC_CLIENT_ECLOSED, "the daemon closed the connection");
        }
        c->callback_err = 0;
        rc = frame_decoder_feed(c->decoder, c->recvbuf, (size_t)n, on_frame, c);
        if (c->callback_err < 0)
            return c->callback_err;
        if (rc != FRAME_OK) {
            return fail_broken(c, MPC_CLIENT_EPROTO, "bad frame from the daemon: %s",
                               frame_strerror(rc));
        }
    }
    return 0;
}

/*
 * Sends req and waits for its reply. On success *out holds a reply of the wanted body
 * (free it with wire_free_reply). A daemon Error becomes MPC_CLIENT_EDAEMON with the
 * daemon's code and message recorded.
 */
static int call(mpc_client_t *c, Mpc__V1__Request *req, Mpc__V1__Reply__BodyCase want,
                Mpc__V1__Reply **out)
{
    *out = NULL;
    if (c->fd < 0)
        return fail(c, MPC_CLIENT_ECLOSED, "not connected");
    if (c->broken)
        return fail(c, MPC_CLIENT_ECLOSED,
                    "the connection is broken after an earlier error; "
                    "connect again");
    req->id = c->next_id++;
    size_t need = wire_request_frame_size(req);
    if (need > c->sendcap) {
        uint8_t *grown = realloc(c->sendbuf, need);
        if (grown == NULL)
            return fail(c, MPC_CLIENT_ENOMEM, "out of memory for a %zu byte request", need);
        c->sendbuf = grown;
        c->sendcap = need;
    }
    size_t len = wire_pack_request(req, c->sendbuf);

    int64_t deadline = mpc_deadline_in(c->timeout_ms);
    int rc = send_all(c, c->sendbuf, len, deadline);
    if (rc < 0)
        return rc;
    c->want_id = req->id;
    c->reply = NULL;
    rc = receive_reply(c, deadline);
    Mpc__V1__Reply *rep = c->reply;
    c->reply = NULL;
    if (rc < 0) {
        wire_free_reply(rep);
        return rc;
    }
    if (rep->body_case == MPC__V1__REPLY__BODY_ERROR) {
        const Mpc__V1__Error *e = rep->error;
        c->daemon_code = (int)e->code;
        c->retry_after_ms = e->retry_after_ms;
        rc = fail(c, MPC_CLIENT_EDAEMON, "daemon error %s: %s",
                  mpc_client_daemon_code_name((int)e->code), e->message);
        wire_free_reply(rep);
        return rc;
    }
    if (rep->body_case != want) {
        rc = fail(c, MPC_CLIENT_EPROTO, "the daemon answered with reply body %d, expected %d",
                  (int)rep->body_case, (int)want);
        wire_free_reply(rep);
        return rc;
    }
    *out = rep;
    return 0;
}

/* Copies src into dst[cap], truncating; src may be NULL. */
static void copy_string(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
}

int mpc_client_hello_with(mpc_client_t *c, const mpc_client_hello_t *h,
                          mpc_client_welcome_t *welcome)
{
    if (h == NULL)
        return fail(c, MPC_CLIENT_EINVAL, "hello: missing options");
    Mpc__V1__Hello hello = MPC__V1__HELLO__INIT;
    /* protoc-c wants char *, and never writes through it when packing. */
    hello.client_name = (char *)(h->client_name != NULL ? h->client_name : "");
    hello.auth_token = (char *)(h->auth_token != NULL ? h->auth_token : "");
    hello.observation_size = h->observation_size;
    hello.action_size = h->action_size;
    hello.rate_hz = h->rate_hz;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_HELLO;
    req.hello = &hello;

    Mpc__V1__Reply *rep;
    int rc = call(c, &req, MPC__V1__REPLY__BODY_WELCOME, &rep);
    if (rc < 0)
        return rc;
    const Mpc__V1__Welcome *w = rep->welcome;
    if (w->action_size > MPC_CLIENT_MAX_ACTION || w->n_action_low != w->action_size ||
        w->n_action_high != w->action_size) {
        rc = fail(c, MPC_CLIENT_EPROTO,
                  "Welcome has action_size %u with %zu/%zu bounds (this client supports at "
                  "most %d)",
                  w->action_size, w->n_action_low, w->n_action_high, MPC_CLIENT_MAX_ACTION);
        wire_free_reply(rep);
        return rc;
    }
    c->have_session = true;
    c->observation_size = w->observation_size;
    c->action_size = w->action_size;
    if (welcome != NULL) {
        memset(welcome, 0, sizeof(*welcome));
        welcome->session_id = w->session_id;
        copy_string(welcome->model_name, sizeof(welcome->model_name), w->model_name);
        welcome->model_version = w->model_version;
        welcome->observation_size = w->observation_size;
        welcome->action_size = w->action_size;
        memcpy(welcome->action_low, w->action_low, w->action_size * sizeof(float));
        memcpy(welcome->action_high, w->action_high, w->action_size * sizeof(float));
        welcome->control_period_s = w->control_period_s;
        welcome->default_deadline_us = w->default_deadline_us;
        welcome->rate_hz = w->rate_hz;
        welcome->min_iterations = w->min_iterations;
    }
    wire_free_reply(rep);
    return 0;
}

int mpc_client_hello(mpc_client_t *c, const char *client_name, const char *auth_token,
                     uint32_t observation_size, uint32_t action_size,
                     mpc_client_welcome_t *welcome)
{
    mpc_client_hello_t h = {.client_name = client_name,
                            .auth_token = auth_token,
                            .observation_size = observation_size,
                            .action_size = action_size};
    return mpc_client_hello_with(c, &h, welcome);
}

int mpc_client_step(mpc_client_t *c, const mpc_client_step_t *step, mpc_client_action_t *out)
{
    if (step == NULL || out == NULL || (step->observation == NULL && step->observation_size))
        return fail(c, MPC_CLIENT_EINVAL, "step: missing step, observation or output");
    if (c->have_session && step->observation_size != c->observation_size)
        return fail(c, MPC_CLIENT_EINVAL,
                    "step: observation has %zu floats, the session "
                    "expects %u",
                    step->observation_size, c->observation_size);
    Mpc__V1__Step s = MPC__V1__STEP__INIT;
    s.seq = step->seq;
    s.n_observation = step->observation_size;
    s.observation = (float *)step->observation; /* packing only reads it */
    s.reward = step->reward;
    s.reset = step->reset;
    s.deadline_us = step->deadline_us;
    s.exploration_noise = step->exploration_noise;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_STEP;
    req.step = &s;

    Mpc__V1__Reply *rep;
    int rc = call(c, &req, MPC__V1__REPLY__BODY_ACTION, &rep);
    if (rc < 0)
        return rc;
    const Mpc__V1__Action *a = rep->action;
    if (a->n_action > MPC_CLIENT_MAX_ACTION ||
        (c->have_session && a->n_action != c->action_size) || a->seq != step->seq) {
        rc = fail(c, MPC_CLIENT_EPROTO,
                  "Action for seq %llu has %zu floats; expected seq "
                  "%llu and %u floats",
                  (unsigned long long)a->seq, a->n_action, (unsigned long long)step->seq,
                  c->action_size);
        wire_free_reply(rep);
        return rc;
    }
    out->seq = a->seq;
    out->action_size = a->n_action;
    memcpy(out->action, a->action, a->n_action * sizeof(float));
    out->predicted_return = a->predicted_return;
    out->iterations = a->iterations;
    out->candidates = a->candidates;
    out->belief_us = a->belief_us;
    out->plan_us = a->plan_us;
    out->queue_us = a->queue_us;
    out->model_version = a->model_version;
    out->deadline_cut = a->deadline_cut;
    out->fallback = a->fallback;
    wire_free_reply(rep);
    return 0;
}

int mpc_client_reset(mpc_client_t *c)
{
    Mpc__V1__Reset reset = MPC__V1__RESET__INIT;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_RESET;
    req.reset = &reset;
    Mpc__V1__Reply *rep;
    int rc = call(c, &req, MPC__V1__REPLY__BODY_ACK, &rep);
    wire_free_reply(rep);
    return rc;
}

int mpc_client_status(mpc_client_t *c, mpc_client_status_t *out)
{
    memset(out, 0, sizeof(*out));
    Mpc__V1__Status status = MPC__V1__STATUS__INIT;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_STATUS;
    req.status = &status;
    Mpc__V1__Reply *rep;
    int rc = call(c, &req, MPC__V1__REPLY__BODY_STATUS, &rep);
    if (rc < 0)
        return rc;
    rc = mpc_status_copy(rep->status, out);
    wire_free_reply(rep);
    if (rc < 0)
        return fail(c, rc, "out of memory copying the status");
    return 0;
}

int mpc_client_reload(mpc_client_t *c, const char *path, mpc_client_reload_t *out)
{
    Mpc__V1__Reload reload = MPC__V1__RELOAD__INIT;
    reload.path = (char *)(path != NULL ? path : "");
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_RELOAD;
    req.reload = &reload;
    if (out != NULL)
        memset(out, 0, sizeof(*out));

    Mpc__V1__Reply *rep;
    int rc = call(c, &req, MPC__V1__REPLY__BODY_RELOAD, &rep);
    if (rc == MPC_CLIENT_EDAEMON && c->daemon_code == MPC__V1__ERROR__CODE__RELOAD_FAILED) {
        if (out != NULL)
            copy_string(out->message, sizeof(out->message), c->errmsg);
        return MPC_CLIENT_ERELOAD;
    }
    if (rc < 0)
        return rc;
    const Mpc__V1__ReloadReply *r = rep->reload;
    if (out != NULL) {
        out->ok = r->ok;
        out->model_version = r->model_version;
        copy_string(out->message, sizeof(out->message), r->message);
        out->load_s = r->load_s;
    }
    rc = r->ok ? 0
               : fail(c, MPC_CLIENT_ERELOAD,
                      "reload refused, still serving model version "
                      "%llu: %s",
                      (unsigned long long)r->model_version, r->message);
    wire_free_reply(rep);
    return rc;
}
