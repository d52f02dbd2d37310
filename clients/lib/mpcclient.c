/*
 * mpcclient.c: libmpcclient's connection, its blocking request/reply calls and its
 * asynchronous steps.
 *
 * Each call packs one Request (proto/wire.h) into a send buffer that only ever grows,
 * writes it with poll() against the call's deadline, then feeds received bytes to the
 * proto/framing.h decoder until the Reply with the request's id arrives. Replies with an
 * older id are answers to calls that timed out earlier; they are dropped, which keeps the
 * connection usable after a timeout. Anything the stream cannot recover from (the daemon
 * closing, a frame that does not decode, a partial write) marks the connection broken.
 *
 * Asynchronous steps take ids from the same counter and are answered in order, so the
 * steps in flight are always the ids [next_id - in_flight, next_id): a blocking call drops
 * them all (their replies have ids below its own). mpc_client_step_poll reads into a
 * client-owned slot (`pending`) where a newer Action replaces an older one, and keeps an
 * Error to report first when one arrives among them; the Action then waits for the next
 * poll.
 */
#include "mpcclient.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "deadline.h"
#include "dial.h"
#include "errbuf.h"
#include "history.h"
#include "status_copy.h"
#include "wire.h"

/* The largest image side a Welcome may announce (model files allow 512; anything far
 * beyond is not a daemon of ours, and would make the resume history huge). */
#define MAX_IMAGE_SIDE 1024

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

    /* Asynchronous steps (replies are taken by the frame callback while `polling`). */
    bool polling;
    unsigned in_flight;     /* steps sent with mpc_client_step_send, not answered yet */
    bool have_pending;      /* `pending` holds the newest Action not yet returned */
    int pending_err;        /* an error to return from the next poll, with errmsg set */
    unsigned pending_drops; /* Actions superseded during the poll in progress */
    mpc_client_action_t pending;

    /* Resume: where and how the session was opened, and its recent steps. */
    mpc_client_resume_t resume;
    char *address; /* of the last mpc_client_connect (NULL: attached fd, no resume) */
    char *hello_name, *hello_token;
    mpc_client_hello_t hello; /* its strings point at the copies above */
    mpc_history_t history;
    bool draining;       /* the daemon said DRAINING: the connection is ending */
    unsigned resumes;    /* sessions resumed */
    bool have_hello;     /* a Hello succeeded: c->hello can be said again */
    float *last_obs;     /* the newest async step's observation, for the history */
    uint8_t *last_img;   /* ...its image (pixel sessions), */
    uint64_t last_seq;   /* ...its seq, */
    float last_reward;   /* reward (NAN: a reset) and */
    uint32_t last_delay; /* delay_steps */

    bool have_session;
    uint32_t observation_size;
    uint32_t action_size;
    uint32_t image_height, image_width, image_channels; /* the session's image, or 0 */
    size_t image_bytes;                                 /* their product */
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

/* Records the daemon's Error reply (code, retry hint, message); returns MPC_CLIENT_EDAEMON. */
static int daemon_error(mpc_client_t *c, const Mpc__V1__Error *e)
{
    c->daemon_code = (int)e->code;
    c->retry_after_ms = e->retry_after_ms;
    return fail(c, MPC_CLIENT_EDAEMON, "daemon error %s: %s",
                mpc_client_daemon_code_name((int)e->code), e->message);
}

/* Forgets the asynchronous steps: their replies, when they come, are dropped by id. */
static void drop_async(mpc_client_t *c)
{
    c->in_flight = 0;
    c->have_pending = false;
    c->pending_err = 0;
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
    mpc_client_set_resume(c, NULL);
    *out = c;
    return 0;
}

int mpc_client_set_resume(mpc_client_t *c, const mpc_client_resume_t *r)
{
    static const mpc_client_resume_t defaults = {
        .enabled = true, .attempts = 8, .backoff_ms = 50, .backoff_max_ms = 2000};
    if (r != NULL && (r->attempts < 1 || r->backoff_ms < 0 || r->backoff_max_ms < 0))
        return MPC_CLIENT_EINVAL;
    c->resume = r != NULL ? *r : defaults;
    return 0;
}

unsigned mpc_client_resumes(const mpc_client_t *c)
{
    return c->resumes;
}

void mpc_client_close(mpc_client_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->broken = false;
    c->have_session = false;
    c->draining = false;
    drop_async(c);
    frame_decoder_destroy(c->decoder);
    c->decoder = NULL;
}

void mpc_client_destroy(mpc_client_t *c)
{
    if (c == NULL)
        return;
    mpc_client_close(c);
    free(c->sendbuf);
    free(c->address);
    free(c->hello_name);
    free(c->hello_token);
    free(c->last_obs);
    free(c->last_img);
    mpc_history_free(&c->history);
    free(c);
}

bool mpc_client_connected(const mpc_client_t *c)
{
    return c->fd >= 0 && !c->broken;
}

int mpc_client_fd(const mpc_client_t *c)
{
    return c->fd;
}

unsigned mpc_client_steps_in_flight(const mpc_client_t *c)
{
    return c->in_flight;
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

static int attach_stream(mpc_client_t *c, int fd)
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
    if (address != c->address) { /* remembered for resume */
        char *copy = strdup(address);
        if (copy == NULL) {
            close(fd);
            return fail(c, MPC_CLIENT_ENOMEM, "out of memory");
        }
        free(c->address);
        c->address = copy;
    }
    return attach_stream(c, fd);
}

int mpc_client_attach_fd(mpc_client_t *c, int fd)
{
    free(c->address); /* nowhere to connect again: no resume */
    c->address = NULL;
    return attach_stream(c, fd);
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

static void take_async_reply(mpc_client_t *c, const Mpc__V1__Reply *rep);

/* Frame callback: keeps the reply the call waits for, drops late replies to earlier calls.
 * While polling, replies go to take_async_reply instead. */
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
    if (rep->body_case == MPC__V1__REPLY__BODY_ERROR && rep->id == 0 &&
        rep->error->code == MPC__V1__ERROR__CODE__DRAINING) {
        /* The session is handed over after the reply just read: resume before the next
         * request (or fail it, when resume is off). */
        c->draining = true;
        wire_free_reply(rep);
        return 0;
    }
    if (c->polling) {
        take_async_reply(c, rep);
        wire_free_reply(rep);
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

/* One recv() fed to the decoder: 1 when bytes came, 0 when none were ready, or an error
 * (the frame callback's first). */
static int read_some(mpc_client_t *c)
{
    ssize_t n = recv(c->fd, c->recvbuf, sizeof(c->recvbuf), 0);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
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
    int rc = frame_decoder_feed(c->decoder, c->recvbuf, (size_t)n, on_frame, c);
    if (c->callback_err < 0)
        return c->callback_err;
    if (rc != FRAME_OK)
        return fail_broken(c, MPC_CLIENT_EPROTO, "bad frame from the daemon: %s",
                           frame_strerror(rc));
    return 1;
}

static int receive_reply(mpc_client_t *c, int64_t deadline)
{
    while (c->reply == NULL) {
        int rc = wait_ready(c, POLLIN, deadline, "waiting for the daemon's reply");
        if (rc >= 0)
            rc = read_some(c);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* 0 when the connection can carry requests, else MPC_CLIENT_ECLOSED with the reason. */
static int check_usable(mpc_client_t *c)
{
    if (c->fd < 0)
        return fail(c, MPC_CLIENT_ECLOSED, "not connected");
    if (c->broken)
        return fail(c, MPC_CLIENT_ECLOSED,
                    "the connection is broken after an earlier error; "
                    "connect again");
    return 0;
}

/* Checks the connection, gives req the next id and writes it (within the client's
 * timeout); *deadline (may be NULL) receives the deadline the write ran against. */
static int send_request(mpc_client_t *c, Mpc__V1__Request *req, int64_t *deadline)
{
    int rc = check_usable(c);
    if (rc < 0)
        return rc;
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
    int64_t end = mpc_deadline_in(c->timeout_ms);
    if (deadline != NULL)
        *deadline = end;
    rc = send_all(c, c->sendbuf, len, end);
    /* Nothing reached the wire unless the stream broke: the id is free again, which keeps
     * the ids of the steps in flight contiguous. */
    if (rc < 0 && !c->broken)
        c->next_id--;
    return rc;
}

/*
 * Sends req and waits for its reply. On success *out holds a reply of the wanted body
 * (free it with wire_free_reply). A daemon Error becomes MPC_CLIENT_EDAEMON with the
 * daemon's code and message recorded. Asynchronous steps still in flight are dropped.
 */
static int call(mpc_client_t *c, Mpc__V1__Request *req, Mpc__V1__Reply__BodyCase want,
                Mpc__V1__Reply **out)
{
    *out = NULL;
    int64_t deadline;
    int rc = send_request(c, req, &deadline);
    if (rc < 0)
        return rc;
    drop_async(c);
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
        rc = daemon_error(c, rep->error);
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

/* The history as Hello.history (allocated: resume is not the hot path). NULL: no memory. */
static Mpc__V1__HistoryStep **history_pack(mpc_client_t *c, Mpc__V1__HistoryStep **steps)
{
    const mpc_history_t *h = &c->history;
    Mpc__V1__HistoryStep **p = malloc((h->len + 1) * sizeof(*p));
    *steps = malloc((h->len + 1) * sizeof(**steps));
    if (p == NULL || *steps == NULL) {
        free(p);
        free(*steps);
        return NULL;
    }
    for (size_t i = 0; i < h->len; i++) {
        size_t k = mpc_history_slot(h, i);
        Mpc__V1__HistoryStep *e = &(*steps)[i];
        mpc__v1__history_step__init(e);
        e->n_observation = h->obs_dim;
        e->observation = h->obs + k * h->obs_dim;
        e->image.len = h->img_bytes;
        e->image.data = h->img + k * h->img_bytes;
        e->n_action = h->act_dim;
        e->action = h->act + k * h->act_dim;
        e->reward = h->rew[k];
        p[i] = e;
    }
    return p;
}

/* The Welcome's sizes are ones this client can hold, and on resume the session's own. */
static int check_welcome(mpc_client_t *c, const Mpc__V1__Welcome *w, bool resuming)
{
    if (w->action_size > MPC_CLIENT_MAX_ACTION || w->n_action_low != w->action_size ||
        w->n_action_high != w->action_size) {
        return fail(c, MPC_CLIENT_EPROTO,
                    "Welcome has action_size %u with %zu/%zu bounds (this client supports at "
                    "most %d)",
                    w->action_size, w->n_action_low, w->n_action_high, MPC_CLIENT_MAX_ACTION);
    }
    bool no_image = !w->image_height && !w->image_width && !w->image_channels;
    if (!no_image && (w->image_height < 1 || w->image_height > MAX_IMAGE_SIDE ||
                      w->image_width < 1 || w->image_width > MAX_IMAGE_SIDE ||
                      (w->image_channels != 1 && w->image_channels != 3))) {
        return fail(c, MPC_CLIENT_EPROTO,
                    "Welcome has an image of %ux%ux%u (this client takes sides 1..%d and 1 or "
                    "3 channels)",
                    w->image_height, w->image_width, w->image_channels, MAX_IMAGE_SIDE);
    }
    if (resuming &&
        (w->observation_size != c->history.obs_dim || w->action_size != c->history.act_dim ||
         w->image_height != c->image_height || w->image_width != c->image_width ||
         w->image_channels != c->image_channels)) {
        return fail(
            c, MPC_CLIENT_ERESUME,
            "the instance reached serves a model of observation_size %u, image %ux%ux%u "
            "and action_size %u; the session had %zu, %ux%ux%u and %zu",
            w->observation_size, w->image_height, w->image_width, w->image_channels,
            w->action_size, c->history.obs_dim, c->image_height, c->image_width,
            c->image_channels, c->history.act_dim);
    }
    return 0;
}

/* Says Hello with h, and with the history when resuming. */
static int hello_send(mpc_client_t *c, const mpc_client_hello_t *h, bool resuming,
                      mpc_client_welcome_t *welcome)
{
    Mpc__V1__Hello hello = MPC__V1__HELLO__INIT;
    Mpc__V1__HistoryStep *steps = NULL;
    if (resuming && c->history.len > 0) {
        if ((hello.history = history_pack(c, &steps)) == NULL)
            return fail(c, MPC_CLIENT_ENOMEM, "out of memory for the history");
        hello.n_history = c->history.len;
    }
    /* protoc-c wants char *, and never writes through it when packing. */
    hello.client_name = (char *)(h->client_name != NULL ? h->client_name : "");
    hello.auth_token = (char *)(h->auth_token != NULL ? h->auth_token : "");
    hello.observation_size = h->observation_size;
    hello.action_size = h->action_size;
    hello.rate_hz = h->rate_hz;
    hello.seed = h->seed;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_HELLO;
    req.hello = &hello;

    Mpc__V1__Reply *rep;
    int rc = call(c, &req, MPC__V1__REPLY__BODY_WELCOME, &rep);
    free(hello.history);
    free(steps);
    if (rc < 0)
        return rc;
    const Mpc__V1__Welcome *w = rep->welcome;
    if ((rc = check_welcome(c, w, resuming)) < 0) {
        wire_free_reply(rep);
        return rc;
    }
    size_t img_bytes = (size_t)w->image_height * w->image_width * w->image_channels;
    size_t keep = w->history_steps < 1024 ? w->history_steps : 1024;
    float *obs = realloc(c->last_obs, (w->observation_size + 1) * sizeof(float));
    if (obs != NULL)
        c->last_obs = obs;
    uint8_t *img = realloc(c->last_img, img_bytes + 1);
    if (img != NULL)
        c->last_img = img;
    if (obs == NULL || img == NULL ||
        (!resuming &&
         mpc_history_init(&c->history, keep, w->observation_size, w->action_size, img_bytes))) {
        wire_free_reply(rep);
        return fail(c, MPC_CLIENT_ENOMEM, "out of memory for the history");
    }
    c->have_session = true;
    c->observation_size = w->observation_size;
    c->action_size = w->action_size;
    c->image_height = w->image_height;
    c->image_width = w->image_width;
    c->image_channels = w->image_channels;
    c->image_bytes = img_bytes;
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
        welcome->history_steps = w->history_steps;
        welcome->resumed_steps = w->resumed_steps;
        welcome->image_height = w->image_height;
        welcome->image_width = w->image_width;
        welcome->image_channels = w->image_channels;
    }
    wire_free_reply(rep);
    return 0;
}

/* Copies src into *dst (NULL stays NULL); 0 or -1. */
static int keep_string(char **dst, const char *src)
{
    char *copy = src != NULL ? strdup(src) : NULL;
    if (src != NULL && copy == NULL)
        return -1;
    free(*dst);
    *dst = copy;
    return 0;
}

int mpc_client_hello_with(mpc_client_t *c, const mpc_client_hello_t *h,
                          mpc_client_welcome_t *welcome)
{
    if (h == NULL)
        return fail(c, MPC_CLIENT_EINVAL, "hello: missing options");
    if (keep_string(&c->hello_name, h->client_name) ||
        keep_string(&c->hello_token, h->auth_token))
        return fail(c, MPC_CLIENT_ENOMEM, "out of memory");
    c->hello = *h;
    c->hello.client_name = c->hello_name;
    c->hello.auth_token = c->hello_token;
    int rc = hello_send(c, &c->hello, false, welcome);
    c->have_hello = rc == 0;
    return rc;
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

/* Checks a step against the session and fills s (which then points into *step). */
static int step_pack(mpc_client_t *c, const mpc_client_step_t *step, Mpc__V1__Step *s)
{
    if (step == NULL || (step->observation == NULL && step->observation_size))
        return fail(c, MPC_CLIENT_EINVAL, "step: missing step or observation");
    if (c->have_session && step->observation_size != c->observation_size)
        return fail(c, MPC_CLIENT_EINVAL,
                    "step: observation has %zu floats, the session "
                    "expects %u",
                    step->observation_size, c->observation_size);
    if (step->image == NULL && step->image_size)
        return fail(c, MPC_CLIENT_EINVAL, "step: image_size is %zu but image is NULL",
                    step->image_size);
    if (c->have_session && step->image_size != c->image_bytes) {
        if (c->image_bytes == 0)
            return fail(c, MPC_CLIENT_EINVAL,
                        "step: an image of %zu bytes; the session's model takes %u "
                        "observation values and no image",
                        step->image_size, c->observation_size);
        return fail(c, MPC_CLIENT_EINVAL,
                    "step: an image of %zu bytes; the session's model takes %ux%ux%u images "
                    "(%zu bytes)",
                    step->image_size, c->image_height, c->image_width, c->image_channels,
                    c->image_bytes);
    }
    size_t applied = step->applied_actions_size;
    if (applied > 0) {
        size_t rows = step->delay_steps;
        if (step->applied_actions == NULL)
            return fail(c, MPC_CLIENT_EINVAL,
                        "step: applied_actions_size is %zu but applied_actions is NULL",
                        applied);
        if (c->have_session && applied != rows * c->action_size)
            return fail(c, MPC_CLIENT_EINVAL,
                        "step: applied_actions has %zu floats; expected 0 or delay_steps x "
                        "action_size = %zu x %u",
                        applied, rows, c->action_size);
        if (rows == 0 || applied % rows != 0)
            return fail(c, MPC_CLIENT_EINVAL,
                        "step: applied_actions has %zu floats, not %zu (delay_steps) rows",
                        applied, rows);
    }
    s->seq = step->seq;
    s->n_observation = step->observation_size;
    s->observation = (float *)step->observation; /* packing only reads it */
    s->image.len = step->image_size;
    s->image.data = (uint8_t *)step->image;
    s->reward = step->reward;
    s->reset = step->reset;
    s->deadline_us = step->deadline_us;
    s->exploration_noise = step->exploration_noise;
    s->delay_steps = step->delay_steps;
    s->n_applied_actions = applied;
    s->applied_actions = (float *)step->applied_actions;
    return 0;
}

/* Checks an Action (its seq too when want_seq is not NULL) and copies it into *out; *out
 * is left alone when the Action is refused. */
static int action_copy(mpc_client_t *c, const Mpc__V1__Action *a, const uint64_t *want_seq,
                       mpc_client_action_t *out)
{
    size_t n = a->n_action;
    if (n > MPC_CLIENT_MAX_ACTION || (c->have_session && n != c->action_size))
        return fail(c, MPC_CLIENT_EPROTO, "Action for seq %llu has %zu floats; expected %u",
                    (unsigned long long)a->seq, n, c->action_size);
    if (want_seq != NULL && a->seq != *want_seq)
        return fail(c, MPC_CLIENT_EPROTO, "Action for seq %llu; expected seq %llu",
                    (unsigned long long)a->seq, (unsigned long long)*want_seq);
    if (a->n_plan > 0 &&
        (n == 0 || a->n_plan % n != 0 || !isfinite(a->plan_step_s) || !(a->plan_step_s > 0))) {
        return fail(c, MPC_CLIENT_EPROTO,
                    "Action for seq %llu has a plan of %zu floats with plan_step_s %g; "
                    "expected whole rows of %zu and a positive step",
                    (unsigned long long)a->seq, a->n_plan, a->plan_step_s, n);
    }
    size_t rows = 0;
    if (n > 0) {
        rows = a->n_plan / n;
        if (rows > MPC_CLIENT_MAX_PLAN / n)
            rows = MPC_CLIENT_MAX_PLAN / n; /* the whole rows that fit */
    }
    out->seq = a->seq;
    out->action_size = n;
    if (n > 0)
        memcpy(out->action, a->action, n * sizeof(float));
    out->predicted_return = a->predicted_return;
    out->iterations = a->iterations;
    out->candidates = a->candidates;
    out->belief_us = a->belief_us;
    out->plan_us = a->plan_us;
    out->queue_us = a->queue_us;
    out->model_version = a->model_version;
    out->deadline_cut = a->deadline_cut;
    out->fallback = a->fallback;
    out->plan_rows = rows;
    out->plan_step_s = a->plan_step_s;
    if (rows > 0) /* protobuf-c leaves an empty field NULL, which memcpy may not take */
        memcpy(out->plan, a->plan, rows * n * sizeof(float));
    return 0;
}

/* ---- resume ---- */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Whether a failure means the session should move: the stream is gone, or the daemon
 * hands it over. */
/* Whether there is a session to resume, and a way back to it. */
static bool can_resume(const mpc_client_t *c)
{
    return c->resume.enabled && c->address != NULL && c->have_hello;
}

static bool lost_session(const mpc_client_t *c, int rc)
{
    if (!can_resume(c))
        return false;
    if (rc == MPC_CLIENT_ECLOSED || rc == MPC_CLIENT_EIO ||
        (rc == MPC_CLIENT_EPROTO && c->broken))
        return true;
    return rc == MPC_CLIENT_EDAEMON && (c->daemon_code == MPC_CLIENT_DAEMON_DRAINING ||
                                        c->daemon_code == MPC_CLIENT_DAEMON_SHUTTING_DOWN);
}

/* A refusal at Hello that another try (or another instance) may not repeat. */
static bool retryable_hello(const mpc_client_t *c, int rc)
{
    if (rc != MPC_CLIENT_EDAEMON)
        return rc != MPC_CLIENT_EINVAL && rc != MPC_CLIENT_ENOMEM;
    switch (c->daemon_code) {
    case MPC_CLIENT_DAEMON_DRAINING:
    case MPC_CLIENT_DAEMON_OVERLOADED:
    case MPC_CLIENT_DAEMON_SHUTTING_DOWN:
    case MPC_CLIENT_DAEMON_NOT_READY:
        return true;
    default:
        return false;
    }
}

/* Connects again and resumes the session with its history (see mpcclient.h). */
static int resume_session(mpc_client_t *c)
{
    char why[512];
    errbuf_set(why, sizeof why, "%s", c->errmsg);
    int wait = 0, rc = MPC_CLIENT_ECLOSED;
    for (int k = 0; k < c->resume.attempts; k++) {
        if (wait > 0)
            sleep_ms(wait);
        rc = mpc_client_connect(c, c->address, 0);
        if (rc == 0)
            rc = hello_send(c, &c->hello, true, NULL);
        if (rc == 0) {
            c->resumes++;
            return 0;
        }
        if (!retryable_hello(c, rc))
            break;
        wait = wait > 0 ? 2 * wait : c->resume.backoff_ms;
        if (rc == MPC_CLIENT_EDAEMON && c->daemon_code == MPC_CLIENT_DAEMON_OVERLOADED &&
            (int)c->retry_after_ms > wait)
            wait = (int)c->retry_after_ms;
        if (wait > c->resume.backoff_max_ms)
            wait = c->resume.backoff_max_ms;
    }
    char last[512];
    errbuf_set(last, sizeof last, "%s", c->errmsg);
    return fail(c, MPC_CLIENT_ERESUME, "the session was lost (%s) and could not be resumed: %s",
                why, last);
}

/* Before a request: a session the daemon is handing over moves first. */
static int resume_if_draining(mpc_client_t *c)
{
    if (!c->draining || !can_resume(c))
        return 0;
    errbuf_set(c->errmsg, sizeof(c->errmsg), "the daemon is draining");
    return resume_session(c);
}

/* Records an answered step for resume: the action applied after its observation is the
 * returned one, or with a delay the one applied meanwhile (the step's applied_actions,
 * else what was returned delay_steps earlier, else nothing yet: zeros). */
static void remember(mpc_client_t *c, const float *obs, const uint8_t *img, float reward,
                     bool reset, uint32_t delay, const float *applied, const float *returned)
{
    static const float zeros[MPC_CLIENT_MAX_ACTION];
    mpc_history_t *h = &c->history;
    if (reset)
        mpc_history_clear(h);
    const float *now = returned;
    if (delay > 0) {
        const float *old = mpc_history_returned(h, delay - 1);
        now = applied != NULL ? applied : old != NULL ? old : zeros;
    }
    mpc_history_push(h, obs, img, now, returned, reward);
}

static int step_once(mpc_client_t *c, Mpc__V1__Request *req, const mpc_client_step_t *step,
                     mpc_client_action_t *out)
{
    Mpc__V1__Reply *rep;
    int rc = call(c, req, MPC__V1__REPLY__BODY_ACTION, &rep);
    if (rc < 0)
        return rc;
    rc = action_copy(c, rep->action, &step->seq, out);
    wire_free_reply(rep);
    return rc;
}

/* The Step request of both paths (req points at s), after moving a session the daemon is
 * handing over. */
static int step_request(mpc_client_t *c, const mpc_client_step_t *step, Mpc__V1__Step *s,
                        Mpc__V1__Request *req)
{
    int rc = step_pack(c, step, s);
    if (rc < 0)
        return rc;
    req->body_case = MPC__V1__REQUEST__BODY_STEP;
    req->step = s;
    return resume_if_draining(c);
}

int mpc_client_step(mpc_client_t *c, const mpc_client_step_t *step, mpc_client_action_t *out)
{
    Mpc__V1__Step s = MPC__V1__STEP__INIT;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    if (out == NULL)
        return fail(c, MPC_CLIENT_EINVAL, "step: missing output");
    int rc = step_request(c, step, &s, &req);
    if (rc < 0)
        return rc;
    rc = step_once(c, &req, step, out);
    /* The session moved: once more on the new connection (the step may have been read by
     * the old instance, but its belief went with it). */
    for (int tries = 0; rc < 0 && tries < 2 && lost_session(c, rc); tries++) {
        if ((rc = resume_session(c)) < 0)
            return rc;
        rc = step_once(c, &req, step, out);
    }
    if (rc == 0)
        remember(c, step->observation, step->image, step->reset ? 0.0f : step->reward,
                 step->reset, step->delay_steps,
                 step->applied_actions_size ? step->applied_actions : NULL, out->action);
    return rc;
}

int mpc_client_step_send(mpc_client_t *c, const mpc_client_step_t *step)
{
    Mpc__V1__Step s = MPC__V1__STEP__INIT;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    int rc = step_request(c, step, &s, &req);
    if (rc < 0)
        return rc;
    rc = send_request(c, &req, NULL);
    if (rc < 0 && lost_session(c, rc)) {
        if ((rc = resume_session(c)) < 0)
            return rc;
        rc = send_request(c, &req, NULL);
    }
    if (rc < 0)
        return rc;
    c->in_flight++;
    if (c->last_obs != NULL) {   /* for the history, when its reply is the newest polled */
        if (c->observation_size) /* a pixel Step may have no observation array */
            memcpy(c->last_obs, step->observation, c->observation_size * sizeof(float));
        if (c->image_bytes && c->last_img != NULL)
            memcpy(c->last_img, step->image, c->image_bytes);
        c->last_seq = step->seq;
        c->last_reward = step->reset ? NAN : step->reward;
        c->last_delay = step->delay_steps;
    }
    return 0;
}

/* Frame callback while polling: a reply to a step in flight goes to `pending` (a newer
 * Action replaces an older one) or, when it is an Error or malformed, to pending_err. */
static void take_async_reply(mpc_client_t *c, const Mpc__V1__Reply *rep)
{
    uint64_t first = c->next_id - c->in_flight; /* the oldest step in flight */
    uint64_t id = rep->id;
    /* Error id 0: the daemon could not decode a request; in order, the oldest one. */
    if (rep->body_case == MPC__V1__REPLY__BODY_ERROR && id == 0 && c->in_flight > 0)
        id = first;
    if (id < first)
        return; /* a late reply to a call that timed out */
    if (id >= c->next_id) {
        c->callback_err = fail_broken(
            c, MPC_CLIENT_EPROTO, "unexpected reply id %llu; steps in flight end at %llu",
            (unsigned long long)id, (unsigned long long)(c->next_id - 1));
        return;
    }
    c->in_flight = (unsigned)(c->next_id - id - 1);
    if (rep->body_case == MPC__V1__REPLY__BODY_ERROR) {
        c->pending_err = daemon_error(c, rep->error);
    } else if (rep->body_case != MPC__V1__REPLY__BODY_ACTION) {
        c->pending_err = fail(c, MPC_CLIENT_EPROTO,
                              "the daemon answered a step with reply body %d, expected %d",
                              (int)rep->body_case, (int)MPC__V1__REPLY__BODY_ACTION);
    } else {
        bool had = c->have_pending;
        int rc = action_copy(c, rep->action, NULL, &c->pending);
        if (rc < 0) {
            c->pending_err = rc;
            return;
        }
        c->have_pending = true;
        c->pending_drops += had;
    }
}

/* Reads replies to the steps in flight until one is known, waiting until deadline; then
 * takes whatever else has already arrived without waiting. 0, or a broken stream's error
 * (a quiet deadline is not an error here). */
static int poll_replies(mpc_client_t *c, int64_t deadline)
{
    for (;;) {
        int rc = read_some(c);
        if (rc < 0)
            return rc;
        if (rc > 0 && c->in_flight > 0)
            continue; /* more may be ready */
        int left_ms = mpc_deadline_left_ms(deadline);
        if (c->have_pending || c->pending_err < 0 || c->in_flight == 0 || left_ms == 0)
            return 0;
        rc = wait_ready(c, POLLIN, deadline, "polling for replies");
        if (rc == MPC_CLIENT_ETIMEDOUT)
            return 0;
        if (rc < 0)
            return rc;
    }
}

int mpc_client_step_poll(mpc_client_t *c, int timeout_ms, mpc_client_action_t *out,
                         unsigned *dropped)
{
    if (dropped != NULL)
        *dropped = 0;
    if (out == NULL)
        return fail(c, MPC_CLIENT_EINVAL, "step_poll: missing output");
    int rc = check_usable(c);
    if (rc < 0)
        return rc;
    c->pending_drops = 0;
    /* An Action kept behind an Error is returned without waiting; what has arrived
     * meanwhile is still read, so that it is the newest. */
    if (c->in_flight > 0) {
        int wait_ms = timeout_ms < 0 ? c->timeout_ms : timeout_ms;
        if (c->have_pending)
            wait_ms = 0;
        c->polling = true;
        rc = poll_replies(c, mpc_deadline_in(wait_ms));
        c->polling = false;
    }
    if (dropped != NULL)
        *dropped = c->pending_drops;
    if (rc < 0 && lost_session(c, rc) && !c->have_pending) {
        /* The steps in flight are lost with the connection; the session moves. (With an
         * Action in hand it goes out first: the next step_send resumes.) */
        if (dropped != NULL)
            *dropped += c->in_flight;
        if ((rc = resume_session(c)) < 0)
            return rc;
        return fail(c, MPC_CLIENT_EAGAIN, "no reply yet: the session was resumed");
    }
    if (rc < 0 && !(c->have_pending && lost_session(c, rc)))
        return rc;
    if (c->pending_err < 0) {
        rc = c->pending_err;
        c->pending_err = 0;
        return rc;
    }
    if (!c->have_pending)
        return fail(c, MPC_CLIENT_EAGAIN, "no reply yet (%u steps in flight)", c->in_flight);
    *out = c->pending;
    c->have_pending = false;
    if (c->last_obs != NULL && out->seq == c->last_seq) {
        bool reset = isnan(c->last_reward);
        remember(c, c->last_obs, c->last_img, reset ? 0.0f : c->last_reward, reset,
                 c->last_delay, NULL, out->action);
    }
    return 0;
}

/* A request answered by an Ack. */
static int call_ack(mpc_client_t *c, Mpc__V1__Request *req)
{
    Mpc__V1__Reply *rep;
    int rc = call(c, req, MPC__V1__REPLY__BODY_ACK, &rep);
    wire_free_reply(rep);
    return rc;
}

int mpc_client_reset(mpc_client_t *c)
{
    Mpc__V1__Reset reset = MPC__V1__RESET__INIT;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_RESET;
    req.reset = &reset;
    return call_ack(c, &req);
}

int mpc_client_drain(mpc_client_t *c)
{
    Mpc__V1__Drain drain = MPC__V1__DRAIN__INIT;
    Mpc__V1__Request req = MPC__V1__REQUEST__INIT;
    req.body_case = MPC__V1__REQUEST__BODY_DRAIN;
    req.drain = &drain;
    return call_ack(c, &req);
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
