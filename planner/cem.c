/*
 * cem.c: libplanner's CEM loop: configuration, workspace, warm start, deadline handling.
 *
 * One iteration: every team member takes blocks of candidates (an atomic counter hands
 * them out), samples their action sequences around the current Gaussian, imagines them
 * through the RSSM prior with librssm's batched sgemm calls and sums the predicted
 * rewards; then the calling thread refits the Gaussian (top K or MPPI weights). Random
 * numbers are counter-based per (seed, iteration, step, candidate), so the plan does not
 * depend on which thread ran which block.
 *
 * The deadline: the cost of an iteration per candidate is an EWMA kept across plans
 * (calibrated in cem_create) times a decaying slow-spell factor; an iteration starts only
 * if its predicted cost ends before `deadline - margin`. As a second line of defence no
 * librssm call starts that would, at the duration of its previous call, still run at
 * `deadline - margin / 2`: the iteration is then abandoned and the last completed
 * iteration's plan returned, without waiting for a preempted helper. A stale estimate is
 * re-measured by a probe iteration (see cem_plan). Every buffer is allocated in cem_create.
 */
#include "planner.h"

#include <assert.h>
#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cem_noise.h"
#include "cem_rng.h"
#include "cem_select.h"
#include "cem_team.h"
#include "errbuf.h"
#include "mono.h"

#define ALIGN 64
/* Rows per block: as many as keep one block's activations around this size. With librssm's
 * packed-weight kernel the best block stays in a core's L2 (512 KiB here; 50 PlaNet-size
 * rows measured 25% faster than 500). OpenBLAS repacks the weights on every call and
 * prefers bigger blocks: 4 MiB. */
#define BLOCK_BYTES_KERNEL (384 << 10)
#define BLOCK_BYTES_BLAS   (4 << 20)
#define MIN_BLOCK          16
/* After this many plans in a row without a first iteration, one is tried anyway. */
#define PROBE_EVERY 4

typedef struct cem_worker {
    float *h[2];  /* [B, D] current and next deterministic state */
    float *z;     /* [B, S] latent */
    float *pm;    /* [B, S] prior mean */
    float *ps;    /* [B, S] prior std */
    float *r;     /* [B] reward of one step */
    float *noise; /* [B, A, H] white noise, then colored */
    float *ws;    /* librssm batch workspace for B rows */
    void *mem;
} cem_worker_t;

struct cem_planner {
    const rssm_model_t *m;
    cem_config_t cfg;
    int D, S, A, H;
    int cap;       /* most candidates in one iteration: J + kept elites */
    int nkeep;     /* elites carried into the next iteration (iCEM) */
    int max_block; /* rows per block, at most */
    bool use_value;
    float discount_h;      /* discount^H for the terminal value */
    float *act;            /* [H, cap, A] candidate actions, time-major */
    float *ret;            /* [cap] predicted returns */
    float *w;              /* [cap] MPPI weights */
    int *idx;              /* [max(K, nkeep)] elites, best first */
    float *mean;           /* [H, A] */
    float *std;            /* [H, A] */
    float *elite;          /* [nkeep, H, A] actions of the kept elites */
    float *color;          /* [H, H] colored-noise filter (NULL: white noise) */
    float *lo, *hi, *half; /* [A] bounds, half range */
    float *h0, *z0;        /* [D], [S] the belief being planned from */
    cem_worker_t *workers; /* [threads] */
    cem_team_t *team;
    void *mem;

    /* the iteration being run by the team */
    struct {
        uint64_t seed;
        int iter;  /* index inside this plan (for the random streams) */
        int n;     /* candidates */
        int kept;  /* of which the first `kept` are carried-over elites */
        int block; /* rows per block */
        int nblocks;
        bool has_stop;
        double stop;     /* CLOCK_MONOTONIC seconds: no call may still run then */
        double step_est; /* first guess of one librssm call on a block (0: just try) */
        atomic_int next;
        atomic_bool abort;
        atomic_llong rows_done; /* candidate-steps completed, also when abandoned */
    } job;

    double cand_cost_s; /* EWMA of one iteration's time per candidate */
    double slow;        /* recent worst ratio of measured to EWMA cost, decaying to 1 */
    double fixed_s;     /* EWMA of the refit after an iteration (independent of n) */
    int skips;          /* consecutive plans whose first iteration was predicted not to fit */
    cem_continue_fn keep_going; /* the caller's scheduler (NULL: only the deadline stops) */
    void *keep_going_ctx;
    cem_stats_t stats;
};

/* ---- configuration ---- */

void cem_config_default(cem_config_t *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    memset(cfg, 0, sizeof *cfg);
    cfg->candidates = 1000;
    cfg->top_k = 100;
    cfg->iterations = 10;
    cfg->horizon = 12;
    cfg->threads = cpus < 1 ? 1 : cpus > 4 ? 4 : (int)cpus;
    /* 1 ms: with a 2-thread team on 2 busy vCPUs, 0.5 ms let 0.03-0.27 % of 20 ms plans
     * end late (wake-up and preemption delays of the calling thread); 1 ms, 0.03 %
     * (planner/README.md) */
    cfg->margin_s = 0.001;
    cfg->sample_latent = true;
    cfg->use_value = false;
    cfg->population_decay = 1.0; /* plain CEM; cem_config_icem() turns iCEM on */
    cfg->keep_elites = 0.0;
    cfg->noise_beta = 0.0;
    cfg->mppi = false;
    cfg->mppi_temperature = 1.0;
    cfg->min_std = 0.0f;
    cfg->init_std = 1.0f;
}

void cem_config_icem(cem_config_t *cfg)
{
    /* better predicted returns per millisecond in tests/bench/bench_plan.py at 20 and 50 ms;
     * not the default: the shipped cartpole model scores no better with them in closed
     * loop (see planner/README.md) */
    cfg->population_decay = 0.7;
    cfg->keep_elites = 0.3;
    cfg->noise_beta = 2.0;
}

int cem_config_validate(const cem_config_t *c, char *err, size_t errlen)
{
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            errbuf_set(err, errlen, __VA_ARGS__);                                              \
            return -EINVAL;                                                                    \
        }                                                                                      \
    } while (0)
    CHECK(c, "no configuration");
    CHECK(c->candidates >= 1 && c->candidates <= 1000000,
          "candidates must be in 1..1000000 (got %d)", c->candidates);
    CHECK(c->top_k >= 1 && c->top_k <= c->candidates,
          "top_k must be in 1..candidates (%d) (got %d)", c->candidates, c->top_k);
    CHECK(c->iterations >= 1 && c->iterations <= 10000,
          "iterations must be in 1..10000 (got %d)", c->iterations);
    CHECK(c->horizon >= 1 && c->horizon <= 1000, "horizon must be in 1..1000 (got %d)",
          c->horizon);
    CHECK((int64_t)c->candidates * c->horizon <= 50000000,
          "candidates * horizon must be at most 5e7 (got %lld)",
          (long long)c->candidates * c->horizon);
    CHECK(c->threads >= 1 && c->threads <= 256, "threads must be in 1..256 (got %d)",
          c->threads);
    CHECK(isfinite(c->margin_s) && c->margin_s >= 0.0 && c->margin_s <= 10.0,
          "margin_s must be in [0, 10] seconds (got %g)", c->margin_s);
    CHECK(isfinite(c->population_decay) && c->population_decay > 0.0 &&
              c->population_decay <= 1.0,
          "population_decay must be in (0, 1] (got %g)", c->population_decay);
    CHECK(isfinite(c->keep_elites) && c->keep_elites >= 0.0 && c->keep_elites <= 1.0,
          "keep_elites must be in [0, 1] (got %g)", c->keep_elites);
    CHECK(isfinite(c->noise_beta) && c->noise_beta >= 0.0 && c->noise_beta <= 4.0,
          "noise_beta must be in [0, 4] (got %g)", c->noise_beta);
    CHECK(!c->mppi || (isfinite(c->mppi_temperature) && c->mppi_temperature > 0.0),
          "mppi_temperature must be > 0 (got %g)", c->mppi_temperature);
    CHECK(isfinite(c->min_std) && c->min_std >= 0.0f && c->min_std <= 1.0f,
          "min_std must be in [0, 1] (got %g)", (double)c->min_std);
    CHECK(c->nice >= 0 && c->nice <= 19, "nice must be in 0..19 (got %d)", c->nice);
    CHECK(c->block_rows >= 0 && c->block_rows <= 1000000,
          "block_rows must be in 0..1000000 (got %d)", c->block_rows);
    CHECK(isfinite(c->init_std) && c->init_std > 0.0f && c->init_std <= 10.0f,
          "init_std must be in (0, 10] (got %g)", (double)c->init_std);
#undef CHECK
    return 0;
}

/* Candidates in iteration i (without kept elites): J * decay^i, at least min(2K, J). */
static int population(const cem_config_t *c, int i)
{
    if (c->population_decay >= 1.0)
        return c->candidates;
    double n = c->candidates * pow(c->population_decay, i);
    int floor_n = 2 * c->top_k < c->candidates ? 2 * c->top_k : c->candidates;
    return n < floor_n ? floor_n : (int)n;
}

/* ---- plan state ---- */

int cem_plan_state_init(cem_plan_state_t *s, int horizon, int action_dim)
{
    if (!s || horizon < 1 || action_dim < 1 || horizon > 1000 || action_dim > 4096)
        return -EINVAL;
    memset(s, 0, sizeof *s);
    s->mean = calloc((size_t)horizon * action_dim, sizeof *s->mean);
    if (!s->mean)
        return -ENOMEM;
    s->horizon = horizon;
    s->action_dim = action_dim;
    return 0;
}

void cem_plan_state_free(cem_plan_state_t *s)
{
    if (!s)
        return;
    free(s->mean);
    memset(s, 0, sizeof *s);
}

void cem_plan_state_reset(cem_plan_state_t *s)
{
    if (s) {
        s->valid = false;
        s->stale_tail = 0;
    }
}

void cem_plan_state_shift(cem_plan_state_t *s)
{
    if (!s || !s->valid || !s->mean)
        return;
    size_t a = (size_t)s->action_dim;
    memmove(s->mean, s->mean + a, sizeof(float) * a * (size_t)(s->horizon - 1));
    /* The planner starts stale steps from the middle of the bounds, which the state does
     * not know; 0 is written for readers and is the middle of the usual [-1, 1]. */
    memset(s->mean + a * (size_t)(s->horizon - 1), 0, sizeof(float) * a);
    if (s->stale_tail < s->horizon)
        s->stale_tail++;
    if (s->stale_tail == s->horizon)
        s->valid = false;
}

/* ---- one block of candidates (runs on any team member) ---- */

static void sample_block(cem_planner_t *p, cem_worker_t *w, int j0, int j1)
{
    const int A = p->A, H = p->H, cap = p->cap;
    const int kept = p->job.kept;
    for (int j = j0; j < j1 && j < kept; j++)
        for (int t = 0; t < H; t++)
            memcpy(p->act + ((size_t)t * cap + j) * A, p->elite + ((size_t)j * H + t) * A,
                   sizeof(float) * A);
    int s0 = j0 > kept ? j0 : kept;
    if (s0 >= j1)
        return;
    const int64_t per = (int64_t)A * H;
    uint64_t key = cem_rng_key(p->job.seed, (uint64_t)p->job.iter, CEM_RNG_ACTION, 0);
    cem_rng_normals(w->noise, (int64_t)(j1 - s0) * per, key, (uint64_t)s0 * (uint64_t)per);
    if (p->color)
        cem_noise_color(w->noise, (int64_t)(j1 - s0) * A, H, p->color);
    for (int t = 0; t < H; t++) {
        const float *mu = p->mean + (size_t)t * A, *sd = p->std + (size_t)t * A;
        for (int j = s0; j < j1; j++) {
            const float *eps = w->noise + (size_t)(j - s0) * per + t;
            float *a = p->act + ((size_t)t * cap + j) * A;
            for (int d = 0; d < A; d++) {
                float v = mu[d] + sd[d] * eps[(size_t)d * H];
                v = v < p->lo[d] ? p->lo[d] : v;
                a[d] = v > p->hi[d] ? p->hi[d] : v;
            }
        }
    }
}

/* Whether a librssm call expected to take `est` seconds may start: not when another
 * member gave up, nor when it would still run at the stop time. Returns the time now
 * through *t (0 without a deadline). */
static bool may_start(cem_planner_t *p, double est, double *t)
{
    if (!p->job.has_stop) {
        *t = 0.0;
        return true;
    }
    *t = mono_now();
    return !atomic_load_explicit(&p->job.abort, memory_order_relaxed) &&
           *t + est <= p->job.stop;
}

/* Imagines rows [j0, j1) over the horizon and writes their returns. With a deadline,
 * every librssm call first checks that it can end before the stop time, judged by the
 * duration of the same call on the previous step; returns false when it cannot (the
 * iteration is abandoned). */
static bool rollout_block(cem_planner_t *p, cem_worker_t *w, int j0, int j1)
{
    const rssm_model_t *m = p->m;
    const int S = p->S, A = p->A, H = p->H, n = j1 - j0;
    float *h = w->h[0], *hn = w->h[1], *z = w->z;
    float *ret = p->ret + j0;
    memset(ret, 0, sizeof(float) * n);
    double est_img = p->job.step_est * n, est_rew = est_img, t0, t1;
    for (int t = 0; t < H; t++) {
        if (!may_start(p, est_img, &t0))
            return false;
        const float *a = p->act + ((size_t)t * p->cap + j0) * A;
        if (t == 0) /* every row starts from the belief: its share is computed once */
            rssm_imagine_batch_shared(m, n, p->h0, p->z0, a, hn, w->pm, w->ps, w->ws);
        else
            rssm_imagine_batch(m, n, h, z, a, hn, w->pm, w->ps, w->ws);
        if (p->cfg.sample_latent) {
            uint64_t key =
                cem_rng_key(p->job.seed, (uint64_t)p->job.iter, CEM_RNG_LATENT, (uint64_t)t);
            cem_rng_normals(z, (int64_t)n * S, key, (uint64_t)j0 * (uint64_t)S);
            for (size_t k = 0; k < (size_t)n * S; k++)
                z[k] = w->pm[k] + w->ps[k] * z[k];
        } else {
            memcpy(z, w->pm, sizeof(float) * (size_t)n * S);
        }
        if (!may_start(p, est_rew, &t1))
            return false;
        if (t > 0) /* the shared first step skips W_hh h: it would under-predict the rest */
            est_img = t1 - t0;
        rssm_reward_batch(m, n, hn, z, w->r, w->ws);
        for (int i = 0; i < n; i++)
            ret[i] += w->r[i];
        float *tmp = h;
        h = hn;
        hn = tmp;
        if (p->job.has_stop) {
            est_rew = mono_now() - t1;
            atomic_fetch_add_explicit(&p->job.rows_done, n, memory_order_relaxed);
        }
    }
    if (p->use_value) {
        rssm_value_batch(m, n, h, z, w->r, w->ws);
        for (int i = 0; i < n; i++)
            ret[i] += p->discount_h * w->r[i];
    }
    for (int i = 0; i < n; i++)
        if (!isfinite(ret[i]))
            ret[i] = isnan(ret[i]) || ret[i] < 0 ? -FLT_MAX : FLT_MAX;
    return true;
}

static void iteration_job(void *arg, int ith, int nth)
{
    (void)nth;
    cem_planner_t *p = arg;
    cem_worker_t *w = &p->workers[ith];
    for (;;) {
        int b = atomic_fetch_add_explicit(&p->job.next, 1, memory_order_relaxed);
        if (b >= p->job.nblocks || atomic_load_explicit(&p->job.abort, memory_order_relaxed))
            return;
        int j0 = b * p->job.block;
        int j1 = j0 + p->job.block < p->job.n ? j0 + p->job.block : p->job.n;
        sample_block(p, w, j0, j1);
        if (!rollout_block(p, w, j0, j1)) {
            atomic_store_explicit(&p->job.abort, true, memory_order_relaxed);
            return;
        }
    }
}

/* Splits n candidates into blocks: at most max_block rows each and a multiple of the team
 * size in number, so every member gets the same share. */
static void plan_blocks(cem_planner_t *p, int n)
{
    int nth = p->cfg.threads;
    int nb = (n + p->max_block - 1) / p->max_block;
    nb = (nb + nth - 1) / nth * nth;
    int block = (n + nb - 1) / nb;
    p->job.block = block;
    p->job.nblocks = (n + block - 1) / block;
}

/* Runs one iteration; returns false when it was abandoned at the stop time. */
static bool run_iteration(cem_planner_t *p, int iter, int n, int kept)
{
    p->job.iter = iter;
    p->job.n = n;
    p->job.kept = kept;
    plan_blocks(p, n);
    atomic_store_explicit(&p->job.next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->job.abort, false, memory_order_relaxed);
    atomic_store_explicit(&p->job.rows_done, 0, memory_order_relaxed);
    /* With a deadline, a member that was preempted mid-call is not waited for: the
     * iteration is abandoned, it finishes its call in the background (it only touches
     * this iteration's buffers), and the next plan waits for it first. */
    double until = p->job.has_stop ? p->job.stop : INFINITY;
    if (!cem_team_run_shared_until(p->team, iteration_job, p, until)) {
        atomic_store_explicit(&p->job.abort, true, memory_order_relaxed);
        p->stats.stragglers++;
        return false;
    }
    return !atomic_load_explicit(&p->job.abort, memory_order_relaxed);
}

/* Refit after a completed iteration of n candidates; fills p->idx (best first). */
static void refit(cem_planner_t *p, int n)
{
    const int H = p->H, A = p->A, K = p->cfg.top_k;
    int nsel = K > p->nkeep ? K : p->nkeep;
    cem_top_k(p->ret, n, nsel, p->idx);
    if (p->cfg.mppi)
        cem_refit_weighted(p->act, p->cap, H, A, p->ret, n, (float)p->cfg.mppi_temperature,
                           p->w, p->mean, p->std);
    else
        cem_refit_elites(p->act, p->cap, H, A, p->idx, K, p->mean, p->std);
    for (int t = 0; t < H; t++)
        for (int d = 0; d < A; d++) {
            float floor_sd = p->cfg.min_std * p->half[d];
            float *sd = &p->std[t * A + d];
            *sd = *sd < floor_sd ? floor_sd : *sd;
        }
    for (int e = 0; e < p->nkeep; e++)
        for (int t = 0; t < H; t++)
            memcpy(p->elite + ((size_t)e * H + t) * A,
                   p->act + ((size_t)t * p->cap + p->idx[e]) * A, sizeof(float) * A);
}

static void update_cost(cem_planner_t *p, double elapsed, double n)
{
    double c = elapsed / n;
    if (p->cand_cost_s <= 0.0) {
        p->cand_cost_s = c;
        return;
    }
    /* Remember how much slower than expected iterations recently were (preemption, cold
     * caches): the next prediction is scaled by it, so one hiccup makes the planner more
     * careful for a while rather than overrunning again. */
    double r = c / p->cand_cost_s, decayed = 1.0 + (p->slow - 1.0) * 0.8;
    p->slow = r > decayed ? r : decayed;
    p->slow = p->slow < 2.0 ? p->slow : 2.0; /* beyond that the per-call check stops it */
    if (c > p->cand_cost_s)                  /* react faster to slow-downs than to speed-ups */
        p->cand_cost_s = 0.7 * p->cand_cost_s + 0.3 * c;
    else
        p->cand_cost_s = 0.9 * p->cand_cost_s + 0.1 * c;
}

/* Predicted wall time of an iteration of n candidates plus its refit. */
static double predict_cost(const cem_planner_t *p, int n)
{
    double f = p->slow > 1.1 ? p->slow : 1.1;
    return f * p->cand_cost_s * n + p->fixed_s;
}

float cem_plan_state_at(const cem_plan_state_t *s, const float *lo, const float *hi, int t,
                        int d)
{
    int fresh = s->valid ? s->horizon - s->stale_tail : 0;
    float mid = 0.5f * (lo[d] + hi[d]);
    float v = t < fresh ? s->mean[t * s->action_dim + d] : mid;
    v = isfinite(v) ? v : mid;
    return v < lo[d] ? lo[d] : v > hi[d] ? hi[d] : v;
}

void cem_plan_state_rows(const cem_plan_state_t *s, const float *lo, const float *hi,
                         float *rows)
{
    for (int t = 0; t < s->horizon; t++)
        for (int d = 0; d < s->action_dim; d++)
            rows[t * s->action_dim + d] = cem_plan_state_at(s, lo, hi, t, d);
}

/* The warm start for step t, dimension d (the state was checked against the planner). */
static float warm_value(const cem_planner_t *p, const cem_plan_state_t *s, int t, int d)
{
    return cem_plan_state_at(s, p->lo, p->hi, t, d);
}

/* Warm start into p->mean; std = init_std * half range. */
static void init_distribution(cem_planner_t *p, const cem_plan_state_t *s)
{
    for (int t = 0; t < p->H; t++)
        for (int d = 0; d < p->A; d++) {
            p->mean[t * p->A + d] = warm_value(p, s, t, d);
            p->std[t * p->A + d] = p->cfg.init_std * p->half[d];
        }
}

static bool finite_all(const float *x, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

int cem_plan(cem_planner_t *p, const float *h, const float *z, cem_plan_state_t *state,
             uint64_t seed, double deadline, cem_result_t *res)
{
    if (!p || !h || !z || !state || !state->mean || !res || !res->action)
        return -EINVAL;
    if (state->horizon != p->H || state->action_dim != p->A)
        return -EINVAL;
    if (!finite_all(h, p->D) || !finite_all(z, p->S))
        return -EDOM;
    if (isnan(deadline))
        return -EINVAL;
    const cem_config_t *c = &p->cfg;
    const double start = mono_now();
    const bool timed = isfinite(deadline);
    const double dl = deadline;
    cem_team_hold(p->team, true); /* (cem_keep_awake may have done it already) */
    const double soft = dl - c->margin_s;
    /* a straggler of the previous plan (see run_iteration) must finish first */
    bool team_idle = cem_team_wait_until(p->team, soft);
    /* a slow spell is forgotten plan by plan too, not only when iterations run: a plan
     * that starts an iteration which then runs slow is still cut by the per-call check */
    p->slow = 1.0 + (p->slow - 1.0) * 0.7;
    if (team_idle) { /* else a straggler still reads these: leave them alone */
        memcpy(p->h0, h, sizeof(float) * p->D);
        memcpy(p->z0, z, sizeof(float) * p->S);
        init_distribution(p, state);
        p->job.seed = seed;
        p->job.has_stop = timed;
        p->job.stop = dl - 0.5 * c->margin_s;
    }

    int done = 0, total = 0;
    bool cut = false;
    float best = -FLT_MAX;
    for (int i = 0; i < c->iterations && team_idle; i++) {
        int kept = i > 0 ? p->nkeep : 0;
        int n = population(c, i) + kept;
        double t0 = mono_now();
        /* one librssm call on a block of rows: this member's share of a step */
        p->job.step_est = p->cand_cost_s * c->threads / (2.0 * p->H);
        if (i > 0 && p->keep_going &&
            !p->keep_going(p->keep_going_ctx, i, t0 + predict_cost(p, n))) {
            p->stats.yields++;
            break;
        }
        if (timed && t0 + predict_cost(p, n) > soft) {
            if (i > 0 || ++p->skips < PROBE_EVERY) {
                cut = true;
                break;
            }
            /* The estimate may be stale (one slow calibration or a busy spell): without
             * a probe it would never be measured again. Try anyway, with the stop moved
             * to half the remaining time, and learn the cost from what got done. */
            p->skips = 0;
            p->job.step_est = 0.0;
            p->job.stop = t0 + 0.5 * (soft - t0);
        } else if (i == 0) {
            p->skips = 0;
        }
        if (!run_iteration(p, i, n, kept)) { /* (a straggler may still read p->job) */
            /* Learn from the part that got done, once it is large enough for the steps
             * still in flight (not counted) not to dominate: a quarter of the iteration. A
             * probe that cannot do that in half the budget is rightly not repeated soon. */
            long long rows = atomic_load_explicit(&p->job.rows_done, memory_order_relaxed);
            if (rows * 4 >= (long long)n * p->H)
                update_cost(p, mono_now() - t0, (double)rows / p->H);
            cut = true;
            p->stats.aborted++;
            break;
        }
        p->job.stop = dl - 0.5 * c->margin_s; /* after a probe */
        double t1 = mono_now();
        update_cost(p, t1 - t0, n);
        refit(p, n);
        p->fixed_s = 0.9 * p->fixed_s + 0.1 * (mono_now() - t1);
        best = p->ret[p->idx[0]];
        done++;
        total += n;
    }

    const int A = p->A;
    res->iterations = done;
    res->candidates = total;
    res->deadline_cut = cut || !team_idle;
    res->fallback = done == 0;
    if (done == 0) {
        /* the warm start's first action, or the middle of the bounds; the caller's state
         * is left as it was */
        for (int d = 0; d < A; d++)
            res->action[d] = warm_value(p, state, 0, d);
        res->predicted_return = NAN;
    } else {
        for (int d = 0; d < A; d++) {
            float v = p->mean[d];
            res->action[d] = v < p->lo[d] ? p->lo[d] : v > p->hi[d] ? p->hi[d] : v;
        }
        res->predicted_return = best;
        memcpy(state->mean, p->mean, sizeof(float) * (size_t)p->H * A);
        state->valid = true;
        state->stale_tail = 0;
    }
    cem_team_hold(p->team, false);
    double end = mono_now();
    res->plan_s = end - start;
    res->iteration_s = predict_cost(p, c->candidates);
    res->overrun = end > dl;
    p->stats.plans++;
    p->stats.iterations += (uint64_t)done;
    p->stats.candidates += (uint64_t)total;
    p->stats.deadline_cuts += res->deadline_cut;
    p->stats.fallbacks += done == 0;
    if (res->overrun) {
        p->stats.overruns++;
        if (end - dl > p->stats.max_overrun_s)
            p->stats.max_overrun_s = end - dl;
    }
    return 0;
}

double cem_iteration_estimate(const cem_planner_t *p)
{
    return predict_cost(p, p->cfg.candidates);
}

void cem_keep_awake(cem_planner_t *p, bool on)
{
    if (p)
        cem_team_hold(p->team, on);
}

void cem_set_continue(cem_planner_t *p, cem_continue_fn fn, void *ctx)
{
    p->keep_going = fn;
    p->keep_going_ctx = ctx;
}

/* ---- create / destroy ---- */

/* Each helper thread, once: its niceness (Linux: per thread). */
static void helper_init(void *arg, int ith)
{
    (void)ith;
    const cem_config_t *c = arg;
    if (c->nice > 0)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), c->nice);
}

static size_t up(size_t floats)
{
    return (floats + ALIGN / sizeof(float) - 1) / (ALIGN / sizeof(float)) *
           (ALIGN / sizeof(float));
}

/* Carves n floats out of *cur (one aligned allocation for many arrays). */
static float *take(float **cur, size_t n)
{
    float *r = *cur;
    *cur += up(n);
    return r;
}

static int worker_init(cem_worker_t *w, const cem_planner_t *p, int rows)
{
    const size_t B = (size_t)rows;
    size_t total = 2 * up(B * p->D) + 3 * up(B * p->S) + up(B) + up(B * p->A * p->H) +
                   up(rssm_batch_workspace(p->m, rows));
    w->mem = aligned_alloc(ALIGN, total * sizeof(float));
    if (!w->mem)
        return -ENOMEM;
    memset(w->mem, 0, total * sizeof(float));
    float *cur = w->mem;
    w->h[0] = take(&cur, B * p->D);
    w->h[1] = take(&cur, B * p->D);
    w->z = take(&cur, B * p->S);
    w->pm = take(&cur, B * p->S);
    w->ps = take(&cur, B * p->S);
    w->r = take(&cur, B);
    w->noise = take(&cur, B * p->A * p->H);
    w->ws = take(&cur, rssm_batch_workspace(p->m, rows));
    return 0;
}

/* Runs two undisturbed iterations from a zero belief: measures the cost per candidate for
 * the first deadline decision and makes OpenBLAS set up its per-thread buffers now. */
#define CALIBRATE_S    0.15
#define CALIBRATE_RUNS 64

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void calibrate(cem_planner_t *p)
{
    memset(p->h0, 0, sizeof(float) * p->D);
    memset(p->z0, 0, sizeof(float) * p->S);
    cem_plan_state_t none = {.horizon = p->H, .action_dim = p->A, .valid = false};
    init_distribution(p, &none);
    p->job.seed = 0;
    p->job.has_stop = false;
    /* The team is held awake as in a plan; the first run is cold, the median of the
     * others is kept. A server's capacity starts from this number, so the runs span
     * CALIBRATE_S: one stall of the machine (measured: 30-90 ms at times, right after
     * another process exited) must not be all it sees, and the fastest run alone was
     * ~1.4x below what a busy server then measured. */
    cem_team_hold(p->team, true);
    double t[CALIBRATE_RUNS], start = mono_now();
    int n = 0;
    for (int i = 0; i < 4 || (mono_now() - start < CALIBRATE_S && n < CALIBRATE_RUNS); i++) {
        double t0 = mono_now();
        run_iteration(p, 0, p->cfg.candidates, 0);
        if (i > 0)
            t[n++] = mono_now() - t0;
    }
    cem_team_hold(p->team, false);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    p->cand_cost_s = t[n / 2] / p->cfg.candidates;
    p->slow = 1.0;
}

int cem_create(const rssm_model_t *m, const cem_config_t *cfg, cem_planner_t **out, char *err,
               size_t errlen)
{
    if (!out) {
        errbuf_set(err, errlen, "no output pointer");
        return -EINVAL;
    }
    *out = NULL;
    if (!m) {
        errbuf_set(err, errlen, "no model");
        return -EINVAL;
    }
    cem_config_t c;
    if (cfg)
        c = *cfg;
    else
        cem_config_default(&c);
    int rc = cem_config_validate(&c, err, errlen);
    if (rc)
        return rc;
    const rssm_info_t *info = rssm_info(m);
    if (c.use_value && !info->has_value) {
        errbuf_set(err, errlen, "use_value is set but the model has no value head");
        return -EINVAL;
    }
    cem_planner_t *p = calloc(1, sizeof *p);
    if (!p) {
        errbuf_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->m = m;
    p->cfg = c;
    p->D = info->dims.deter;
    p->S = info->dims.stoch;
    p->A = info->dims.action;
    p->H = c.horizon;
    p->nkeep = (int)lround(c.keep_elites * c.top_k);
    p->cap = c.candidates + p->nkeep;
    p->use_value = c.use_value;
    p->discount_h = (float)pow(info->discount, c.horizon);
    const int H = p->H, A = p->A;

    /* rows per block: activations of one row are about hidden + 8 deter + 3 stoch floats */
    size_t row =
        (size_t)info->dims.hidden + 8 * (size_t)p->D + 3 * (size_t)p->S + (size_t)A * H;
    size_t block_bytes = rssm_uses_kernel(m) ? BLOCK_BYTES_KERNEL : BLOCK_BYTES_BLAS;
    int mb = c.block_rows ? c.block_rows : (int)(block_bytes / (row * sizeof(float)));
    mb = mb < MIN_BLOCK ? MIN_BLOCK : mb;
    p->max_block = mb;
    int per_member = (p->cap + c.threads - 1) / c.threads;
    int rows = per_member < mb ? per_member : mb;

    int nsel = c.top_k > p->nkeep ? c.top_k : p->nkeep;
    size_t total = up((size_t)H * p->cap * A) + 2 * up((size_t)p->cap) + up((size_t)nsel) +
                   2 * up((size_t)H * A) + up((size_t)p->nkeep * H * A) +
                   (c.noise_beta > 0.0 ? up((size_t)H * H) : 0) + 3 * up((size_t)A) +
                   up((size_t)p->D) + up((size_t)p->S);
    p->mem = aligned_alloc(ALIGN, total * sizeof(float));
    p->workers = calloc((size_t)c.threads, sizeof *p->workers);
    if (!p->mem || !p->workers) {
        rc = -ENOMEM;
        errbuf_set(err, errlen, "out of memory");
        goto fail;
    }
    memset(p->mem, 0, total * sizeof(float));
    float *cur = p->mem;
    p->act = take(&cur, (size_t)H * p->cap * A);
    p->ret = take(&cur, (size_t)p->cap);
    p->w = take(&cur, (size_t)p->cap);
    p->idx = (int *)take(&cur, (size_t)nsel);
    p->mean = take(&cur, (size_t)H * A);
    p->std = take(&cur, (size_t)H * A);
    p->elite = take(&cur, (size_t)p->nkeep * H * A);
    if (c.noise_beta > 0.0) {
        p->color = take(&cur, (size_t)H * H);
        cem_noise_filter(p->color, H, (float)c.noise_beta);
    }
    p->lo = take(&cur, (size_t)A);
    p->hi = take(&cur, (size_t)A);
    p->half = take(&cur, (size_t)A);
    p->h0 = take(&cur, (size_t)p->D);
    p->z0 = take(&cur, (size_t)p->S);
    for (int d = 0; d < A; d++) {
        p->lo[d] = info->action_low[d];
        p->hi[d] = info->action_high[d];
        p->half[d] = 0.5f * (p->hi[d] - p->lo[d]);
    }
    for (int i = 0; i < c.threads; i++) {
        rc = worker_init(&p->workers[i], p, rows);
        if (rc) {
            errbuf_set(err, errlen, "out of memory");
            goto fail;
        }
    }
    /* Parallelism comes from the team: OpenBLAS must run each call on the calling thread,
     * otherwise its own pool would serialise the members' calls and oversubscribe. This
     * is a process-wide setting. */
    openblas_set_num_threads(1);
    rc = cem_team_create(c.threads, helper_init, &p->cfg, &p->team);
    if (rc) {
        errbuf_set(err, errlen, "cannot start %d planner threads: %s", c.threads - 1,
                   strerror(-rc));
        goto fail;
    }
    calibrate(p);
    *out = p;
    return 0;
fail:
    cem_destroy(p);
    return rc;
}

void cem_destroy(cem_planner_t *p)
{
    if (!p)
        return;
    cem_team_destroy(p->team);
    if (p->workers)
        for (int i = 0; i < p->cfg.threads; i++)
            free(p->workers[i].mem);
    free(p->workers);
    free(p->mem);
    free(p);
}

const cem_config_t *cem_get_config(const cem_planner_t *p)
{
    return &p->cfg;
}

const rssm_model_t *cem_model(const cem_planner_t *p)
{
    return p->m;
}

void cem_get_stats(const cem_planner_t *p, cem_stats_t *out)
{
    *out = p->stats;
}
