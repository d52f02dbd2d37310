/*
 * metrics.c: counters, cumulative histograms and 60-second sliding windows (see metrics.h).
 *
 * Counters are relaxed atomics. Each series (a latency stage, lateness, surprise, ...) has
 * its own mutex guarding its cumulative Prometheus buckets and its window, so a worker
 * recording a step holds any one lock for a few increments only, and a /status request
 * that sums a window blocks just that series.
 *
 * The window is a ring of 60 one-second slots, each a log-linear histogram: the value's
 * binary exponent picks an octave, the mantissa one of 8 linear sub-buckets (so a
 * percentile is off by at most half a sub-bucket, ~4 %), mirrored for negative values.
 * A slot whose second has passed out of the window is cleared when it is reused.
 */
#include "metrics.h"
#include "mono.h"
#include "metrics_internal.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WIN_SLOTS   60
#define WIN_SECONDS 60
#define LOG_SUB     8     /* linear sub-buckets per octave */
#define LOG_EMIN    (-23) /* |v| < 2^-24 counts as zero */
#define LOG_EMAX    16    /* |v| >= 2^16 lands in the top bucket */
#define LOG_NMAG    ((LOG_EMAX - LOG_EMIN) * LOG_SUB)
#define LOG_NB      (2 * LOG_NMAG + 1) /* negative magnitudes, zero, positive magnitudes */

typedef struct win_slot {
    int64_t second; /* which clock second this slot holds; INT64_MIN = never used */
    uint64_t count;
    double min, max;
    uint32_t bucket[LOG_NB];
} win_slot_t;

typedef struct series {
    pthread_mutex_t lock;
    /* cumulative Prometheus histogram */
    const double *bounds;
    int nbounds;
    uint64_t hist[MPCD_HIST_MAX_BOUNDS + 1]; /* per bucket (not cumulative); last = +Inf */
    double sum;
    uint64_t count;
    win_slot_t slot[WIN_SLOTS];
} series_t;

struct mpcd_metrics {
    atomic_uint_fast64_t requests[MPCD_REQ_COUNT][MPCD_OUTCOME_COUNT];
    atomic_uint_fast64_t steps, deadline_cuts, fallbacks, overruns, candidates;
    atomic_uint_fast64_t reloads_ok, reloads_failed;
    atomic_uint_fast64_t sessions_admitted, sessions_refused;
    atomic_uint_fast64_t guard[MPCD_GUARD_COUNT];
    _Atomic double last_load_s;
    mpcd_clock_fn now;
    void *now_ctx;
    series_t series[MPCD_SERIES_COUNT];
};

/* Prometheus buckets. Latencies: a 20 ms default deadline, so finer steps around it. */
static const double latency_bounds[] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175,
    0.02,    0.025,  0.03,    0.04,   0.05,  0.075,  0.1,   0.25,   0.5,  1.0,    2.5};
static const double lateness_bounds[] = {-0.05,   -0.02,  -0.015,  -0.01, -0.0075, -0.005,
                                         -0.0025, -0.001, -0.0005, 0.0,   0.0005,  0.001,
                                         0.0025,  0.005,  0.01,    0.025, 0.05,    0.1};
static const double surprise_bounds[] = {0.01, 0.03, 0.1, 0.3, 1,   2,  3,
                                         5,    10,   20,  30,  100, 300};
static const double reward_bounds[] = {0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100};
static const double iteration_bounds[] = {0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50, 100};

#define NBOUNDS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const struct series_desc {
    const char *name, *prom, *help;
    const double *bounds;
    int nbounds;
    bool integer; /* report a bucket's lower bound: exact for small counts */
} series_desc[MPCD_SERIES_COUNT] = {
    [MPCD_SERIES_QUEUE] = {"queue", "mpcd_step_queue_seconds",
                           "Time from reading a Step frame to a planner worker taking it.",
                           latency_bounds, NBOUNDS(latency_bounds), false},
    [MPCD_SERIES_BELIEF] = {"belief", "mpcd_step_belief_seconds",
                            "Time of the belief update (RSSM filtering step) per Step.",
                            latency_bounds, NBOUNDS(latency_bounds), false},
    [MPCD_SERIES_PLAN] = {"plan", "mpcd_step_plan_seconds",
                          "Time spent in CEM planning per Step.", latency_bounds,
                          NBOUNDS(latency_bounds), false},
    [MPCD_SERIES_TOTAL] =
        {"total", "mpcd_step_total_seconds",
         "Time from reading a Step frame to its reply being queued for write.", latency_bounds,
         NBOUNDS(latency_bounds), false},
    [MPCD_SERIES_LATENESS] = {"lateness", "mpcd_step_lateness_seconds",
                              "Reply time minus the Step's deadline (negative: in time).",
                              lateness_bounds, NBOUNDS(lateness_bounds), false},
    [MPCD_SERIES_SURPRISE] = {"surprise", "mpcd_model_surprise_nats",
                              "KL(posterior || prior) of each belief update: how much the "
                              "observation surprised the model.",
                              surprise_bounds, NBOUNDS(surprise_bounds), false},
    [MPCD_SERIES_REWARD_ERROR] = {"reward_error", "mpcd_model_reward_error",
                                  "Absolute error between the reward the model predicted for "
                                  "the last action and the reward the client reported.",
                                  reward_bounds, NBOUNDS(reward_bounds), false},
    [MPCD_SERIES_ITERATIONS] = {"iterations", "mpcd_plan_iterations",
                                "CEM iterations completed per plan.", iteration_bounds,
                                NBOUNDS(iteration_bounds), true},
    [MPCD_SERIES_OVERHEAD] = {"overhead", "mpcd_step_overhead_seconds",
                              "Total step time minus planning time: queueing, belief update, "
                              "decoding and I/O.",
                              latency_bounds, NBOUNDS(latency_bounds), false},
};

static double monotonic_now(void *ctx)
{
    (void)ctx;
    return mono_now();
}

int mpcd_metrics_create(mpcd_metrics_t **out)
{
    *out = NULL;
    mpcd_metrics_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    int s;
    for (s = 0; s < MPCD_SERIES_COUNT; s++) {
        series_t *se = &m->series[s];
        if (pthread_mutex_init(&se->lock, NULL) != 0)
            goto fail;
        se->bounds = series_desc[s].bounds;
        se->nbounds = series_desc[s].nbounds;
        for (int i = 0; i < WIN_SLOTS; i++)
            se->slot[i].second = INT64_MIN;
    }
    atomic_store(&m->last_load_s, NAN);
    m->now = monotonic_now;
    *out = m;
    return 0;
fail:
    while (--s >= 0)
        pthread_mutex_destroy(&m->series[s].lock);
    free(m);
    return -ENOMEM;
}

void mpcd_metrics_destroy(mpcd_metrics_t *m)
{
    if (m == NULL)
        return;
    for (int s = 0; s < MPCD_SERIES_COUNT; s++)
        pthread_mutex_destroy(&m->series[s].lock);
    free(m);
}

void mpcd_metrics_set_clock(mpcd_metrics_t *m, mpcd_clock_fn now, void *ctx)
{
    /* Set before recording starts (tests); not synchronised with recorders. */
    m->now = now != NULL ? now : monotonic_now;
    m->now_ctx = now != NULL ? ctx : NULL;
}

/* ---- log-linear buckets ---- */

static int log_bucket(double v)
{
    double a = fabs(v);
    int mag;
    if (a < ldexp(1.0, LOG_EMIN - 1)) {
        mag = 0;
    } else if (a >= ldexp(1.0, LOG_EMAX)) {
        mag = LOG_NMAG;
    } else {
        int e;
        double frac = frexp(a, &e); /* a = frac * 2^e, frac in [0.5, 1) */
        int sub = (int)((frac - 0.5) * 2.0 * LOG_SUB);
        if (sub >= LOG_SUB)
            sub = LOG_SUB - 1;
        mag = (e - LOG_EMIN) * LOG_SUB + sub + 1;
    }
    return v < 0 ? LOG_NMAG - mag : LOG_NMAG + mag;
}

/* The value a percentile reports for a bucket: its middle (at = 0.5), or its lower end
 * (at = 0, exact for integers below 2 * LOG_SUB, where a bucket is at most 1 wide). */
static double log_bucket_value(int idx, double at)
{
    int mag = idx - LOG_NMAG;
    double sign = mag < 0 ? -1.0 : 1.0;
    mag = abs(mag);
    if (mag == 0)
        return 0.0;
    int o = (mag - 1) / LOG_SUB, sub = (mag - 1) % LOG_SUB;
    double frac = 0.5 + (sub + at) / (2.0 * LOG_SUB);
    return sign * ldexp(frac, o + LOG_EMIN);
}

/* ---- recording ---- */

static void series_record(mpcd_metrics_t *m, mpcd_series_t s, double v, int64_t second)
{
    if (!isfinite(v))
        return;
    series_t *se = &m->series[s];
    int b = 0;
    while (b < se->nbounds && v > se->bounds[b])
        b++;
    int idx = log_bucket(v);
    win_slot_t *slot = &se->slot[(uint64_t)second % WIN_SLOTS];

    pthread_mutex_lock(&se->lock);
    se->hist[b]++;
    se->sum += v;
    se->count++;
    if (slot->second != second) {
        if (slot->second > second) {
            /* a recorder that read the clock just before a newer one: keep it in the window
             * it belongs to only if that slot is still its second; otherwise drop it */
            pthread_mutex_unlock(&se->lock);
            return;
        }
        memset(slot->bucket, 0, sizeof slot->bucket);
        slot->second = second;
        slot->count = 0;
    }
    if (slot->count == 0 || v < slot->min)
        slot->min = v;
    if (slot->count == 0 || v > slot->max)
        slot->max = v;
    slot->count++;
    slot->bucket[idx]++;
    pthread_mutex_unlock(&se->lock);
}

static int64_t now_second(mpcd_metrics_t *m)
{
    return (int64_t)floor(m->now(m->now_ctx));
}

static bool valid_duration(double v)
{
    return isfinite(v) && v >= 0;
}

void mpcd_metrics_request(mpcd_metrics_t *m, mpcd_req_type_t type, mpcd_outcome_t outcome)
{
    if ((unsigned)type >= MPCD_REQ_COUNT)
        type = MPCD_REQ_INVALID;
    if ((unsigned)outcome >= MPCD_OUTCOME_COUNT)
        outcome = MPCD_OUTCOME_ERROR;
    atomic_fetch_add_explicit(&m->requests[type][outcome], 1, memory_order_relaxed);
}

void mpcd_metrics_step(mpcd_metrics_t *m, const mpcd_step_sample_t *s)
{
    int64_t sec = now_second(m);
    atomic_fetch_add_explicit(&m->steps, 1, memory_order_relaxed);
    if (s->deadline_cut)
        atomic_fetch_add_explicit(&m->deadline_cuts, 1, memory_order_relaxed);
    if (s->fallback)
        atomic_fetch_add_explicit(&m->fallbacks, 1, memory_order_relaxed);
    if (s->overrun)
        atomic_fetch_add_explicit(&m->overruns, 1, memory_order_relaxed);
    if (s->candidates > 0)
        atomic_fetch_add_explicit(&m->candidates, (uint64_t)s->candidates,
                                  memory_order_relaxed);

    const double stage[MPCD_STAGE_COUNT] = {s->queue_s, s->belief_s, s->plan_s, s->total_s};
    for (int i = 0; i < MPCD_STAGE_COUNT; i++)
        if (valid_duration(stage[i]))
            series_record(m, (mpcd_series_t)i, stage[i], sec);
    series_record(m, MPCD_SERIES_LATENESS, -s->slack_s, sec);
    if (s->kl_nats >= 0)
        series_record(m, MPCD_SERIES_SURPRISE, s->kl_nats, sec);
    series_record(m, MPCD_SERIES_REWARD_ERROR, fabs(s->reward_error), sec);
    if (s->iterations >= 0)
        series_record(m, MPCD_SERIES_ITERATIONS, (double)s->iterations, sec);
    if (valid_duration(s->total_s) && valid_duration(s->plan_s) && s->total_s >= s->plan_s)
        series_record(m, MPCD_SERIES_OVERHEAD, s->total_s - s->plan_s, sec);
}

void mpcd_metrics_reload(mpcd_metrics_t *m, bool ok, double load_s)
{
    atomic_fetch_add_explicit(ok ? &m->reloads_ok : &m->reloads_failed, 1,
                              memory_order_relaxed);
    atomic_store(&m->last_load_s, load_s);
}

void mpcd_metrics_session(mpcd_metrics_t *m, bool admitted)
{
    atomic_fetch_add_explicit(admitted ? &m->sessions_admitted : &m->sessions_refused, 1,
                              memory_order_relaxed);
}

void mpcd_metrics_guard(mpcd_metrics_t *m, mpcd_guard_event_t e)
{
    if ((unsigned)e < MPCD_GUARD_COUNT)
        atomic_fetch_add_explicit(&m->guard[e], 1, memory_order_relaxed);
}

/* ---- reading ---- */

static uint64_t ld(atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

uint64_t mpcd_metrics_requests(mpcd_metrics_t *m, mpcd_req_type_t type, mpcd_outcome_t outcome)
{
    if ((unsigned)type >= MPCD_REQ_COUNT || (unsigned)outcome >= MPCD_OUTCOME_COUNT)
        return 0;
    return ld(&m->requests[type][outcome]);
}

void mpcd_metrics_totals(mpcd_metrics_t *m, mpcd_totals_t *out)
{
    memset(out, 0, sizeof *out);
    for (int t = 0; t < MPCD_REQ_COUNT; t++)
        for (int o = 0; o < MPCD_OUTCOME_COUNT; o++) {
            uint64_t n = ld(&m->requests[t][o]);
            out->requests += n;
            if (o == MPCD_OUTCOME_ERROR || o == MPCD_OUTCOME_OVERLOADED)
                out->errors += n;
        }
    out->steps = ld(&m->steps);
    out->deadline_cuts = ld(&m->deadline_cuts);
    out->fallbacks = ld(&m->fallbacks);
    out->overruns = ld(&m->overruns);
    out->reloads_ok = ld(&m->reloads_ok);
    out->reloads_failed = ld(&m->reloads_failed);
    out->sessions_admitted = ld(&m->sessions_admitted);
    out->sessions_refused = ld(&m->sessions_refused);
}

uint64_t mpcd_metrics_candidates(mpcd_metrics_t *m)
{
    return ld(&m->candidates);
}

double mpcd_metrics_last_load_s(mpcd_metrics_t *m)
{
    return atomic_load(&m->last_load_s);
}

void mpcd_metrics_window(mpcd_metrics_t *m, mpcd_series_t s, mpcd_latency_summary_t *out)
{
    memset(out, 0, sizeof *out);
    if ((unsigned)s >= MPCD_SERIES_COUNT)
        return;
    int64_t now = now_second(m);
    series_t *se = &m->series[s];
    uint64_t agg[LOG_NB]; /* 5 KiB on the stack: status requests only, never a worker */
    memset(agg, 0, sizeof agg);
    double mn = 0, mx = 0;

    pthread_mutex_lock(&se->lock);
    for (int i = 0; i < WIN_SLOTS; i++) {
        const win_slot_t *sl = &se->slot[i];
        if (sl->count == 0 || sl->second <= now - WIN_SECONDS || sl->second > now)
            continue;
        if (out->count == 0 || sl->min < mn)
            mn = sl->min;
        if (out->count == 0 || sl->max > mx)
            mx = sl->max;
        out->count += sl->count;
        for (int b = 0; b < LOG_NB; b++)
            agg[b] += sl->bucket[b];
    }
    pthread_mutex_unlock(&se->lock);
    if (out->count == 0)
        return;

    const double q[3] = {0.50, 0.90, 0.99};
    double *res[3] = {&out->p50, &out->p90, &out->p99};
    uint64_t seen = 0;
    int k = 0;
    for (int b = 0; b < LOG_NB && k < 3; b++) {
        seen += agg[b];
        while (k < 3) {
            /* the nearest-rank percentile: the smallest value with >= q of samples at or
             * below it */
            uint64_t rank = (uint64_t)ceil(q[k] * (double)out->count);
            if (rank < 1)
                rank = 1;
            if (seen < rank)
                break;
            double v = log_bucket_value(b, series_desc[s].integer ? 0.0 : 0.5);
            *res[k++] = v < mn ? mn : v > mx ? mx : v;
        }
    }
    out->max = mx;
}

void mpcd_metrics_summary(mpcd_metrics_t *m, mpcd_stage_t stage, mpcd_latency_summary_t *out)
{
    if ((unsigned)stage >= MPCD_STAGE_COUNT) {
        memset(out, 0, sizeof *out);
        return;
    }
    mpcd_metrics_window(m, (mpcd_series_t)stage, out);
}

void mpcd_metrics_histogram(mpcd_metrics_t *m, mpcd_series_t s, mpcd_histogram_t *out)
{
    memset(out, 0, sizeof *out);
    if ((unsigned)s >= MPCD_SERIES_COUNT)
        return;
    series_t *se = &m->series[s];
    out->name = series_desc[s].prom;
    out->help = series_desc[s].help;
    out->bounds = se->bounds;
    out->nbounds = se->nbounds;
    pthread_mutex_lock(&se->lock);
    uint64_t acc = 0;
    for (int b = 0; b <= se->nbounds; b++) {
        acc += se->hist[b];
        out->cumulative[b] = acc;
    }
    out->sum = se->sum;
    out->count = se->count;
    pthread_mutex_unlock(&se->lock);
}

/* ---- names ---- */

const char *mpcd_req_type_name(mpcd_req_type_t t)
{
    static const char *const names[MPCD_REQ_COUNT] = {"hello",  "step",    "reset", "status",
                                                      "reload", "invalid", "drain"};
    return (unsigned)t < MPCD_REQ_COUNT ? names[t] : "invalid";
}

uint64_t mpcd_metrics_guard_count(mpcd_metrics_t *m, mpcd_guard_event_t e)
{
    return (unsigned)e < MPCD_GUARD_COUNT ? ld(&m->guard[e]) : 0;
}

static const char *const guard_names[MPCD_GUARD_COUNT] = {
#define XX(id, name, help) name,
    MPCD_GUARD_EVENTS(XX)
#undef XX
};

const char *mpcd_guard_event_name(mpcd_guard_event_t e)
{
    return (unsigned)e < MPCD_GUARD_COUNT ? guard_names[e] : "unknown";
}

const char *mpcd_outcome_name(mpcd_outcome_t o)
{
    static const char *const names[MPCD_OUTCOME_COUNT] = {"ok", "error", "overloaded", "shed"};
    return (unsigned)o < MPCD_OUTCOME_COUNT ? names[o] : "error";
}

const char *mpcd_series_name(mpcd_series_t s)
{
    return (unsigned)s < MPCD_SERIES_COUNT ? series_desc[s].name : "unknown";
}

const char *mpcd_stage_name(mpcd_stage_t s)
{
    return (unsigned)s < MPCD_STAGE_COUNT ? series_desc[s].name : "unknown";
}
