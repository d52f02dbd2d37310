/*
 * mpcclient.h: libmpcclient, the C client of the mpcd daemon.
 *
 * One client object holds one connection (TCP or a Unix socket) to mpcd and speaks the
 * mpc.v1 protocol (proto/mpc.proto) over it: Hello, Step, Reset, Status and Reload. Every
 * call blocks until the daemon's reply arrives or the client's timeout expires. Calls
 * return 0 or a negative mpc_client_err_t; the message of the last failure, including the
 * code and text of an Error the daemon sent, is available from mpc_client_errmsg().
 *
 * Asynchronous steps (mpc_client_step_send / mpc_client_step_poll) let a robot's control
 * loop stream observations and pick up replies without ever blocking on the network; with
 * the follower (mpc_follower_*, below) it reads the newest plan's action for any moment.
 *
 * Addresses are "tcp://HOST:PORT" (an IPv4 address, a host name or an IPv6 address in
 * brackets: tcp://[::1]:7070) or "unix:PATH". NULL or "" means MPC_CLIENT_DEFAULT_ADDRESS.
 *
 * The hot path (mpc_client_step) allocates nothing of its own after the first step; only
 * protobuf-c's unpacking of the reply allocates, and that memory is released before the
 * call returns. A client is not thread-safe: use one per thread.
 *
 * A call that timed out leaves the connection usable: the late reply is recognised by its
 * request id and skipped when it arrives. A connection the daemon closed, or one that
 * delivered a frame that does not decode, is unusable; later calls fail with
 * MPC_CLIENT_ECLOSED until mpc_client_connect() is called again.
 */
#ifndef MPC_CLIENT_H
#define MPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MPC_CLIENT_DEFAULT_ADDRESS    "tcp://127.0.0.1:7070"
#define MPC_CLIENT_DEFAULT_TIMEOUT_MS 5000
/* Largest action vector a reply may carry (fixed so that steps need no allocation). */
#define MPC_CLIENT_MAX_ACTION 64
/* Largest plan (rows x action size floats) a reply's copy keeps; longer plans are cut to
 * the whole rows that fit. */
#define MPC_CLIENT_MAX_PLAN 1024

/* Errors are negative; 0 is success. */
#define MPC_CLIENT_ERRNO_MAP(XX)                                                               \
    XX(INVAL, -1, "invalid argument")                                                          \
    XX(CONNECT, -2, "cannot connect to the daemon")                                            \
    XX(TIMEDOUT, -3, "timed out waiting for the daemon")                                       \
    XX(CLOSED, -4, "connection closed")                                                        \
    XX(IO, -5, "socket error")                                                                 \
    XX(PROTO, -6, "unexpected or malformed reply")                                             \
    XX(DAEMON, -7, "the daemon answered with an error")                                        \
    XX(NOMEM, -8, "out of memory")                                                             \
    XX(RELOAD, -9, "the daemon could not reload the model")                                    \
    XX(AGAIN, -10, "no reply yet")                                                             \
    XX(RESUME, -11, "could not resume the session")

typedef enum {
    MPC_CLIENT_OK = 0,
#define XX(name, val, msg) MPC_CLIENT_E##name = val,
    MPC_CLIENT_ERRNO_MAP(XX)
#undef XX
} mpc_client_err_t;

/* Codes of the daemon's Error replies (proto/mpc.proto Error.Code), as returned by
 * mpc_client_daemon_code(); mpcclient.c checks at build time that they match the proto. */
#define MPC_CLIENT_DAEMON_CODE_MAP(XX)                                                         \
    XX(UNKNOWN, 0)                                                                             \
    XX(MALFORMED, 1)                                                                           \
    XX(NO_SESSION, 2)                                                                          \
    XX(SIZE_MISMATCH, 3)                                                                       \
    XX(INVALID_VALUE, 4)                                                                       \
    XX(OVERLOADED, 5)                                                                          \
    XX(NOT_READY, 6)                                                                           \
    XX(UNAUTHENTICATED, 7)                                                                     \
    XX(RELOAD_FAILED, 8)                                                                       \
    XX(FRAME_TOO_LARGE, 9)                                                                     \
    XX(INTERNAL, 10)                                                                           \
    XX(SHUTTING_DOWN, 11)                                                                      \
    XX(PERMISSION_DENIED, 12)                                                                  \
    XX(DRAINING, 13)

typedef enum {
#define XX(name, val) MPC_CLIENT_DAEMON_##name = val,
    MPC_CLIENT_DAEMON_CODE_MAP(XX)
#undef XX
} mpc_client_daemon_code_t;

/* Fixed description of an error code ("timed out waiting for the daemon"). */
const char *mpc_client_strerror(int err);
/* Symbolic name of an error code ("TIMEDOUT"). */
const char *mpc_client_err_name(int err);
/* Name of a daemon Error.Code ("SIZE_MISMATCH"); "UNKNOWN" for codes this build lacks. */
const char *mpc_client_daemon_code_name(int code);

typedef struct mpc_client mpc_client_t;

/* The daemon's answer to Hello, copied into memory the caller owns. */
typedef struct {
    uint64_t session_id;
    char model_name[128]; /* truncated if longer */
    uint64_t model_version;
    uint32_t observation_size;
    uint32_t action_size;                    /* at most MPC_CLIENT_MAX_ACTION */
    float action_low[MPC_CLIENT_MAX_ACTION]; /* action_size bounds */
    float action_high[MPC_CLIENT_MAX_ACTION];
    double control_period_s;
    uint32_t default_deadline_us;
    double rate_hz;          /* the step rate the session was admitted for */
    uint32_t min_iterations; /* CEM iterations the daemon reserved for each plan
                              * (0 from a daemon without admission control) */
    uint32_t history_steps;  /* recent steps the client keeps for resume */
    uint32_t resumed_steps;  /* steps the daemon replayed (a resumed session), else 0 */
    /* A pixel model's image (README "Camera robots"): every step sends image_height x
     * image_width x image_channels bytes (mpc_client_step_t.image) and observation_size
     * is 0. All 0 for a vector model. */
    uint32_t image_height, image_width, image_channels;
} mpc_client_welcome_t;

/* What a Hello declares. Zero-initialise and set what you need, e.g.
 * (mpc_client_hello_t){.client_name = "arm-3", .rate_hz = 50}. */
typedef struct {
    const char *client_name;   /* for logs and /status; NULL: none */
    const char *auth_token;    /* NULL: none */
    uint32_t observation_size; /* 0: accept the model's */
    uint32_t action_size;      /* 0: accept the model's */
    double rate_hz;            /* steps per second this client will send, for the daemon's
                                * admission control; 0: one per control period of the
                                * model. The daemon refuses values outside 0 .. 1000
                                * (INVALID_VALUE). */
    uint64_t seed;             /* the session's random draws (planner, exploration noise):
                                * the same seed, model and observations give the same
                                * actions; 0: the daemon picks one per session */
} mpc_client_hello_t;

/* One control step. observation points at observation_size floats owned by the caller;
 * for a pixel model (Welcome.image_channels > 0) there are none and image points at
 * image_size = image_height x image_width x image_channels bytes instead (uint8, HWC,
 * top row first), also owned by the caller. A step of the wrong size or kind is refused
 * with MPC_CLIENT_EINVAL before anything is sent. */
typedef struct {
    uint64_t seq;
    const float *observation;
    size_t observation_size;
    const uint8_t *image;
    size_t image_size;
    float reward;            /* reward of the previous action */
    bool reset;              /* first step of an episode */
    uint32_t deadline_us;    /* 0: the daemon's default */
    float exploration_noise; /* 0: none; PlaNet collection uses 0.3 */
    /* Delay compensation (proto Step.delay_steps): control steps between this observation
     * and the moment the returned action is applied; 0: now. At most the daemon's planner
     * horizon. */
    uint32_t delay_steps;
    /* The actions applied over those steps when they differ from what the daemon returned
     * for them: delay_steps x action_size floats (row-major), or NULL / 0 for the default. */
    const float *applied_actions;
    size_t applied_actions_size;
} mpc_client_step_t;

/* The daemon's action and the statistics of the plan that produced it. */
typedef struct {
    uint64_t seq;
    size_t action_size;
    float action[MPC_CLIENT_MAX_ACTION];
    float predicted_return;
    uint32_t iterations;
    uint32_t candidates;
    uint32_t belief_us;
    uint32_t plan_us;
    uint32_t queue_us;
    uint64_t model_version;
    bool deadline_cut;
    bool fallback;
    /* The plan `action` starts (proto Action.plan): plan_rows rows of action_size floats,
     * row 0 = action, row k for k * plan_step_s later. plan_rows is 0 from a daemon that
     * sends no plan (then plan_step_s is 0 too). */
    size_t plan_rows;
    double plan_step_s;
    float plan[MPC_CLIENT_MAX_PLAN];
} mpc_client_action_t;

/* Latency summary of one daemon stage over the last minute, in microseconds. */
typedef struct {
    uint64_t count;
    double p50_us, p90_us, p99_us, max_us;
} mpc_client_latency_t;

typedef struct {
    uint64_t session_id;
    char *client_name;
    uint64_t steps;
    uint64_t episodes;
    double last_plan_us;
    double mean_surprise;
} mpc_client_session_t;

/* The daemon's StatusReply. Strings and arrays are allocated by mpc_client_status() and
 * released by mpc_client_status_free(); strings are never NULL after a successful call. */
typedef struct {
    char *version;
    double uptime_s;
    bool ready;
    char *model_name;
    uint64_t model_version;
    char *model_path;
    uint64_t sessions, requests, errors, deadline_cuts, fallbacks, overruns;
    uint64_t reloads_ok, reloads_failed;
    char *last_reload_error;
    mpc_client_latency_t total, plan, belief, queue;
    size_t n_session;
    mpc_client_session_t *session;
    char *json; /* the daemon's full /status JSON document */
} mpc_client_status_t;

typedef struct {
    bool ok;
    uint64_t model_version; /* the version now serving */
    char message[512];      /* why it failed, when it did (truncated) */
    double load_s;
} mpc_client_reload_t;

/* Allocates an unconnected client; timeout is MPC_CLIENT_DEFAULT_TIMEOUT_MS. */
int mpc_client_create(mpc_client_t **out);
/* Closes the connection and frees the client. Accepts NULL. */
void mpc_client_destroy(mpc_client_t *c);

/* Connects (closing any previous connection) within timeout_ms (<= 0: the client's
 * timeout). address may be NULL for the default. */
int mpc_client_connect(mpc_client_t *c, const char *address, int timeout_ms);
/* Uses an already connected stream socket (socket activation, socketpair); the client
 * owns fd from now on and closes it. */
int mpc_client_attach_fd(mpc_client_t *c, int fd);
/* Closes the connection; the client can connect again. */
void mpc_client_close(mpc_client_t *c);
bool mpc_client_connected(const mpc_client_t *c);

/* Timeout of every later call, in milliseconds (> 0). */
int mpc_client_set_timeout(mpc_client_t *c, int timeout_ms);
int mpc_client_timeout(const mpc_client_t *c);

/* Message describing the last failure (never NULL; "" before any failure). */
const char *mpc_client_errmsg(const mpc_client_t *c);
/* Error.Code of the daemon's last Error reply (valid after MPC_CLIENT_EDAEMON), else -1.
 * Compare it with mpc_client_daemon_code_t (MPC_CLIENT_DAEMON_OVERLOADED, ...). */
int mpc_client_daemon_code(const mpc_client_t *c);
/* Error.retry_after_ms of the daemon's last Error reply (valid after MPC_CLIENT_EDAEMON),
 * else 0: with MPC_CLIENT_DAEMON_OVERLOADED, how long to wait before trying again may
 * succeed; 0 means the daemon gave no hint. */
uint32_t mpc_client_retry_after_ms(const mpc_client_t *c);

/* Opens a session with what *hello declares. On success *welcome (may be NULL) receives
 * the daemon's Welcome, including the rate and minimum plan it admitted the session for.
 *
 * A daemon with admission control refuses a Hello it has no capacity for with
 * MPC_CLIENT_EDAEMON, mpc_client_daemon_code() == MPC_CLIENT_DAEMON_OVERLOADED and
 * mpc_client_retry_after_ms() as its hint; the connection stays open and the caller may
 * send Hello again later on it (or give up). */
int mpc_client_hello_with(mpc_client_t *c, const mpc_client_hello_t *hello,
                          mpc_client_welcome_t *welcome);

/* mpc_client_hello_with() without a declared rate (rate_hz 0). client_name and
 * auth_token may be NULL; sizes of 0 accept the model's. */
int mpc_client_hello(mpc_client_t *c, const char *client_name, const char *auth_token,
                     uint32_t observation_size, uint32_t action_size,
                     mpc_client_welcome_t *welcome);

/* Sends one observation and waits for the action. When a session is open the observation
 * size is checked against the Welcome before anything is sent, and so is
 * applied_actions_size (0 or delay_steps x action_size; without a session, delay_steps
 * whole rows): MPC_CLIENT_EINVAL. A reply whose plan is not whole rows of the action size
 * (or has no positive plan_step_s) is MPC_CLIENT_EPROTO; a plan longer than
 * MPC_CLIENT_MAX_PLAN floats is cut to the whole rows that fit. */
int mpc_client_step(mpc_client_t *c, const mpc_client_step_t *step, mpc_client_action_t *out);

/* Asynchronous steps: sends the Step and returns without waiting (the write itself is
 * bounded by the client's timeout; a robot's small frames fit the socket buffer). Several
 * may be in flight; the daemon answers them in order. The step is checked as by
 * mpc_client_step; request ids come from the same counter. */
int mpc_client_step_send(mpc_client_t *c, const mpc_client_step_t *step);

/* Reads what has arrived, waiting at most timeout_ms (0: not at all, < 0: the client's
 * timeout) for the first reply and then taking, without waiting, whatever else is already
 * there. Returns 0 with *out holding the newest Action among the replies read (older
 * ones, superseded, are dropped and counted in *dropped when dropped is not NULL),
 * MPC_CLIENT_EAGAIN when no reply arrived in time (nothing in flight: at once), or an
 * error as mpc_client_step (an Error reply to a step: MPC_CLIENT_EDAEMON with
 * mpc_client_daemon_code() and the message; an Action that is not well formed:
 * MPC_CLIENT_EPROTO). An error read together with Actions is returned first; the newest
 * Action then waits for the next call, which returns it without waiting. Of several
 * errors read at once, the newest is reported. *out is written only when 0 is returned.
 * The connection stays usable except after the errors that break it, as for every call.
 * Allocates nothing of its own. */
int mpc_client_step_poll(mpc_client_t *c, int timeout_ms, mpc_client_action_t *out,
                         unsigned *dropped);

/* Steps sent with mpc_client_step_send whose replies have not been read yet. A blocking
 * call (mpc_client_step, _status, ...) drops those replies when they arrive. */
unsigned mpc_client_steps_in_flight(const mpc_client_t *c);

/* The connection's socket, for poll()/select() in the caller's own loop (-1 when not
 * connected). Only wait on it for POLLIN; read through mpc_client_step_poll. */
int mpc_client_fd(const mpc_client_t *c);

/* Starts a new episode (belief and warm start cleared). */
int mpc_client_reset(mpc_client_t *c);

/* Asks the daemon to drain (admin role; as SIGTERM does): it admits no new session, hands
 * the open ones over after drain-grace-s and exits once none is left. */
int mpc_client_drain(mpc_client_t *c);

/*
 * Resume (README "A fleet of daemons"). A client connected with mpc_client_connect keeps
 * its session's newest Welcome.history_steps steps (observation, action applied after
 * it, reward). When a step finds the connection gone (the instance was killed or
 * restarted: MPC_CLIENT_ECLOSED or _EIO) or the daemon hands the session over (Error
 * DRAINING, SHUTTING_DOWN), the client connects again to the same address (through a
 * balancer: another instance), says Hello with the same fields and the history, which
 * the daemon replays into the belief, and sends the step again: the caller gets its
 * action, later. Attempts are spaced by an exponential backoff (the first at once); a
 * Hello refused with DRAINING, OVERLOADED (its retry_after_ms, capped), SHUTTING_DOWN or
 * NOT_READY is tried again. After `attempts`, the call fails with MPC_CLIENT_ERESUME and
 * the reason. Asynchronous steps resume too (mpc_client_step_poll returns
 * MPC_CLIENT_EAGAIN after it; the steps that were in flight count as dropped), but only
 * answered steps whose Action was the newest polled go into the history.
 */
typedef struct {
    bool enabled;       /* default true */
    int attempts;       /* connections tried, default 8 */
    int backoff_ms;     /* wait before the second attempt, doubling; default 50 */
    int backoff_max_ms; /* at most, default 2000 */
} mpc_client_resume_t;

/* Replaces the resume settings (NULL: the defaults). */
int mpc_client_set_resume(mpc_client_t *c, const mpc_client_resume_t *r);
/* Sessions resumed so far. */
unsigned mpc_client_resumes(const mpc_client_t *c);

/* Asks for the daemon's status; on success free *out with mpc_client_status_free(). */
int mpc_client_status(mpc_client_t *c, mpc_client_status_t *out);
/* Frees what mpc_client_status() allocated and zeroes *s. Accepts NULL. */
void mpc_client_status_free(mpc_client_status_t *s);

/* Asks the daemon to hot-swap its model from path (NULL or "": reload the current file).
 * Returns MPC_CLIENT_ERELOAD when the daemon kept the old model; *out (may be NULL) then
 * holds its answer and mpc_client_errmsg() its reason. */
int mpc_client_reload(mpc_client_t *c, const char *path, mpc_client_reload_t *out);

/*
 * The follower: what a robot applies between replies. It keeps the newest plans with the
 * time their first row takes effect (for a Step sent with delay_steps d, the
 * observation's time + d * plan_step_s, or the reply's arrival when that is later: a plan
 * cannot act before it is known, and its rows are timed from when it does) and answers, for any
 * time t, the action of the newest plan that has started by t: row floor((t - start) /
 * plan_step_s), zero-order hold per control step. When t runs past that plan's last row, the
 * last row holds and the call says so. A plan whose start lies in the future (a delayed reply)
 * waits while the older one goes on. Times are the caller's (any clock, in seconds, used
 * consistently). Nothing is allocated after mpc_follower_create.
 */
typedef struct mpc_follower mpc_follower_t;

typedef enum {
    MPC_FOLLOW_PLAN = 0,     /* a row of a plan that covers t */
    MPC_FOLLOW_PAST_END = 1, /* t is past the newest started plan's last row: it holds */
    MPC_FOLLOW_NO_PLAN = 2   /* no plan has started by t: the initial action */
} mpc_follow_state_t;

/* A follower for actions of action_size floats (<= MPC_CLIENT_MAX_ACTION) that keeps up
 * to max_plans plans (>= 2; a delay of d steps needs d + 2). initial (action_size floats,
 * NULL: zeros) is the action before any plan starts. 0 or MPC_CLIENT_EINVAL/ENOMEM. */
int mpc_follower_create(size_t action_size, size_t max_plans, const float *initial,
                        mpc_follower_t **out);
void mpc_follower_destroy(mpc_follower_t *f);

/* Takes the plan of reply a, whose row 0 takes effect at start. A reply without a plan
 * (plan_rows 0) counts as a one-row plan that holds until a newer plan starts (never
 * MPC_FOLLOW_PAST_END). A plan that starts before the newest plan held is stale (its
 * reply overtaken) and ignored: returns 1; one that starts at the same time replaces it
 * (replies come in request order: it is newer). Else 0, or MPC_CLIENT_EINVAL (f or a
 * NULL, wrong action size, non-finite start, plan rows without a positive finite
 * plan_step_s). When max_plans are held, the oldest goes. */
int mpc_follower_update(mpc_follower_t *f, const mpc_client_action_t *a, double start);

/* The action for time t into out (action_size floats); returns its mpc_follow_state_t.
 * A pure lookup: t may go back and forth (a robot may ask for the steps ahead, e.g. to
 * send them as applied_actions); plans leave only when max_plans are held. A plan counts
 * as started, and a row as reached, up to 1e-6 of a step early, so that a t summed up
 * from steps picks the row it lands on. */
mpc_follow_state_t mpc_follower_action_at(const mpc_follower_t *f, double t, float *out);

/* Forgets every plan (a new episode): the initial action holds again. */
void mpc_follower_clear(mpc_follower_t *f);

#endif
