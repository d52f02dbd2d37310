/*
 * batch_table.c: sequential against batched imagined rollouts for mpc-plan-bench.
 *
 * A pass imagines rows [first, first + n) of K * J global rows; row g belongs to session
 * g / J, which has its own belief (h0, z0) and its own action Gaussian. The sequential side
 * runs K passes of J rows, the batched side one pass of K * J rows. Each pass is split into
 * blocks exactly as planner/cem.c splits an iteration (at most max_block rows, a multiple
 * of the team size in number) and the blocks are handed out to the same team by an atomic
 * counter. Random numbers come from the planner's counter-based streams, indexed by the
 * global row, so both sides compute the same returns (checked after the warm-up).
 */
#include "batch_table.h"

#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cem_rng.h"
#include "errbuf.h"

#define ALIGN 64
/* planner/cem.c's block rule (private there): one block's activations around this size */
#define BLOCK_BYTES_KERNEL (384 << 10)
#define BLOCK_BYTES_BLAS   (4 << 20)
#define MIN_BLOCK          16
#define MIN_REPS           5
#define MIN_TIME_S         0.5
#define MAX_REPS           1000

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- a spinning team: member 0 is the caller ---- */

typedef void (*bt_fn)(void *arg, int ith);

typedef struct bt_team bt_team_t;

typedef struct {
    bt_team_t *team;
    int ith;
} bt_member_t;

struct bt_team {
    int nth;
    int started; /* helpers running: members 1..started */
    pthread_t *tid;
    bt_member_t *members;
    bt_fn fn;
    void *arg;
    atomic_uint gen; /* bumped once per job */
    atomic_int done; /* helpers finished with the current job */
    atomic_bool stop;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Helpers spin between jobs (the planner holds its team awake the same way during a plan),
 * so dispatching a pass costs the same on both sides and no wake-up latency is timed. */
static void *bt_helper(void *arg)
{
    bt_member_t *me = arg;
    bt_team_t *t = me->team;
    unsigned seen = 0;
    openblas_set_num_threads(1);
    for (;;) {
        unsigned g;
        while ((g = atomic_load_explicit(&t->gen, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&t->stop, memory_order_relaxed))
            cpu_relax();
        if (atomic_load_explicit(&t->stop, memory_order_relaxed))
            return NULL;
        seen = g;
        t->fn(t->arg, me->ith);
        atomic_fetch_add_explicit(&t->done, 1, memory_order_release);
    }
}

static void bt_team_destroy(bt_team_t *t)
{
    if (!t)
        return;
    atomic_store(&t->stop, true);
    for (int i = 1; i <= t->started; i++)
        pthread_join(t->tid[i], NULL);
    free(t->tid);
    free(t->members);
    free(t);
}

static int bt_team_create(int nth, bt_team_t **out)
{
    bt_team_t *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->nth = nth;
    t->tid = calloc((size_t)nth, sizeof *t->tid);
    t->members = calloc((size_t)nth, sizeof *t->members);
    if (!t->tid || !t->members) {
        bt_team_destroy(t);
        return -ENOMEM;
    }
    for (int i = 1; i < nth; i++) {
        t->members[i] = (bt_member_t){.team = t, .ith = i};
        int rc = pthread_create(&t->tid[i], NULL, bt_helper, &t->members[i]);
        if (rc) {
            bt_team_destroy(t);
            return -rc;
        }
        t->started = i;
    }
    *out = t;
    return 0;
}

static void bt_team_run(bt_team_t *t, bt_fn fn, void *arg)
{
    t->fn = fn;
    t->arg = arg;
    atomic_store_explicit(&t->done, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
    fn(arg, 0);
    while (atomic_load_explicit(&t->done, memory_order_acquire) < t->nth - 1)
        cpu_relax();
}

/* ---- the rollout ---- */

typedef struct {
    float *h[2];  /* [B, D] current and next deterministic state */
    float *z;     /* [B, S] latent */
    float *pm;    /* [B, S] prior mean */
    float *ps;    /* [B, S] prior std */
    float *r;     /* [B] reward of one step */
    float *act;   /* [H, B, A] the block's actions, time-major */
    float *noise; /* [B, A, H] action noise */
    float *ws;    /* librssm batch workspace for B rows */
    void *mem;
} bt_worker_t;

typedef struct {
    const rssm_model_t *m;
    int D, S, A, H, J;
    int max_block;
    const float *h0, *z0; /* [K, D], [K, S] session beliefs */
    const float *mu, *sd; /* [K, H, A] session action Gaussians */
    const float *lo, *hi; /* [A] action bounds */
    uint64_t seed;
    bt_worker_t *workers; /* [threads] */
    float *ret;           /* [K * J] returns, by global row */
    /* the pass being run */
    int first, n, block, nblocks;
    atomic_int next;
} bt_job_t;

/* Samples the actions of global rows [g0, g1) into w->act (the planner's sample_block:
 * clipped mean + std * noise, the noise indexed by global row). */
static void sample_block(bt_job_t *j, bt_worker_t *w, int g0, int g1)
{
    const int A = j->A, H = j->H, n = g1 - g0;
    const int64_t per = (int64_t)A * H;
    uint64_t key = cem_rng_key(j->seed, 0, CEM_RNG_ACTION, 0);
    cem_rng_normals(w->noise, (int64_t)n * per, key, (uint64_t)g0 * (uint64_t)per);
    for (int t = 0; t < H; t++)
        for (int i = 0; i < n; i++) {
            int s = (g0 + i) / j->J;
            const float *mu = j->mu + ((size_t)s * H + t) * A,
                        *sd = j->sd + ((size_t)s * H + t) * A;
            const float *eps = w->noise + (size_t)i * per + t;
            float *a = w->act + ((size_t)t * n + i) * A;
            for (int d = 0; d < A; d++) {
                float v = mu[d] + sd[d] * eps[(size_t)d * H];
                v = v < j->lo[d] ? j->lo[d] : v;
                a[d] = v > j->hi[d] ? j->hi[d] : v;
            }
        }
}

/* Imagines global rows [g0, g1) over the horizon into j->ret (the planner's rollout_block
 * without the deadline checks). */
static void rollout_block(bt_job_t *j, bt_worker_t *w, int g0, int g1)
{
    const rssm_model_t *m = j->m;
    const int D = j->D, S = j->S, A = j->A, H = j->H, n = g1 - g0;
    float *h = w->h[0], *hn = w->h[1], *z = w->z;
    float *ret = j->ret + g0;
    memset(ret, 0, sizeof(float) * n);
    for (int t = 0; t < H; t++) {
        const float *a = w->act + (size_t)t * n * A;
        if (t == 0) {
            /* Every row of one session starts from that session's belief: one shared call
             * per session slice of the block. A sequential block lies inside one session
             * (one call, as in the planner); a batched block may span sessions and then
             * makes one call per slice. Chosen over one rssm_imagine_batch on per-row
             * copies of the beliefs, which pays W_hh h0 on every row (a third of the GRU,
             * on one step of H): per-row measured ~2% slower (up to ~10% on some cells,
             * noisy, 2 busy vCPUs), with bit-identical returns. */
            for (int i0 = 0; i0 < n;) {
                int s = (g0 + i0) / j->J, i1 = (s + 1) * j->J - g0;
                i1 = i1 < n ? i1 : n;
                rssm_imagine_batch_shared(m, i1 - i0, j->h0 + (size_t)s * D,
                                          j->z0 + (size_t)s * S, a + (size_t)i0 * A,
                                          hn + (size_t)i0 * D, w->pm + (size_t)i0 * S,
                                          w->ps + (size_t)i0 * S, w->ws);
                i0 = i1;
            }
        } else {
            rssm_imagine_batch(m, n, h, z, a, hn, w->pm, w->ps, w->ws);
        }
        uint64_t key = cem_rng_key(j->seed, 0, CEM_RNG_LATENT, (uint64_t)t);
        cem_rng_normals(z, (int64_t)n * S, key, (uint64_t)g0 * (uint64_t)S);
        for (size_t k = 0; k < (size_t)n * S; k++)
            z[k] = w->pm[k] + w->ps[k] * z[k];
        rssm_reward_batch(m, n, hn, z, w->r, w->ws);
        for (int i = 0; i < n; i++)
            ret[i] += w->r[i];
        float *tmp = h;
        h = hn;
        hn = tmp;
    }
}

static void pass_job(void *arg, int ith)
{
    bt_job_t *j = arg;
    bt_worker_t *w = &j->workers[ith];
    for (;;) {
        int b = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (b >= j->nblocks)
            return;
        int g0 = j->first + b * j->block;
        int g1 = g0 + j->block < j->first + j->n ? g0 + j->block : j->first + j->n;
        sample_block(j, w, g0, g1);
        rollout_block(j, w, g0, g1);
    }
}

/* One pass over global rows [first, first + n): planner/cem.c's plan_blocks, then the team. */
static void run_pass(bt_team_t *team, bt_job_t *j, int first, int n)
{
    int nth = team->nth;
    int nb = (n + j->max_block - 1) / j->max_block;
    nb = (nb + nth - 1) / nth * nth;
    j->first = first;
    j->n = n;
    j->block = (n + nb - 1) / nb;
    j->nblocks = (n + j->block - 1) / j->block;
    atomic_store_explicit(&j->next, 0, memory_order_relaxed);
    bt_team_run(team, pass_job, j);
}

/* The sequential side: K passes of J rows; the batched side: one pass of K * J rows. */
static double time_side(bt_team_t *team, bt_job_t *j, int K, bool batched)
{
    double t0 = now_s();
    if (batched)
        run_pass(team, j, 0, K * j->J);
    else
        for (int s = 0; s < K; s++)
            run_pass(team, j, s * j->J, j->J);
    return now_s() - t0;
}

/* ---- setup ---- */

static size_t up(size_t floats)
{
    const size_t q = ALIGN / sizeof(float);
    return (floats + q - 1) / q * q;
}

static float *take(float **cur, size_t n)
{
    float *r = *cur;
    *cur += up(n);
    return r;
}

static int worker_init(bt_worker_t *w, const rssm_model_t *m, int rows, int H)
{
    const rssm_dims_t *d = &rssm_info(m)->dims;
    const size_t B = (size_t)rows, D = (size_t)d->deter, S = (size_t)d->stoch,
                 A = (size_t)d->action;
    size_t wsn = rssm_batch_workspace(m, rows);
    size_t total = 2 * up(B * D) + 3 * up(B * S) + up(B) + 2 * up(B * A * H) + up(wsn);
    w->mem = aligned_alloc(ALIGN, total * sizeof(float));
    if (!w->mem)
        return -ENOMEM;
    memset(w->mem, 0, total * sizeof(float));
    float *cur = w->mem;
    w->h[0] = take(&cur, B * D);
    w->h[1] = take(&cur, B * D);
    w->z = take(&cur, B * S);
    w->pm = take(&cur, B * S);
    w->ps = take(&cur, B * S);
    w->r = take(&cur, B);
    w->act = take(&cur, B * A * H);
    w->noise = take(&cur, B * A * H);
    w->ws = take(&cur, wsn);
    return 0;
}

/* Standard normal from a 64-bit LCG state (Box-Muller), for the session set-up only. */
static double lcg_normal(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double u1 = ((double)(*s >> 11) + 1.0) / 9007199254740993.0;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double u2 = (double)(*s >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int batch_table_run(const rssm_model_t *m, const batch_table_config_t *cfg, const int *ks,
                    int nk, const int *js, int nj, batch_table_row_t *rows, char *err,
                    size_t errlen)
{
    if (!m || !cfg || !ks || !js || !rows || nk < 1 || nj < 1 || cfg->horizon < 1 ||
        cfg->threads < 1 || cfg->block_rows < 0) {
        errbuf_set(err, errlen, "invalid batch table arguments");
        return -EINVAL;
    }
    if (err && errlen)
        err[0] = '\0';
    const rssm_info_t *info = rssm_info(m);
    const int D = info->dims.deter, S = info->dims.stoch, A = info->dims.action;
    const int H = cfg->horizon, T = cfg->threads;
    int maxk = 0, maxj = 0;
    for (int i = 0; i < nk; i++)
        maxk = ks[i] > maxk ? ks[i] : maxk;
    for (int i = 0; i < nj; i++)
        maxj = js[i] > maxj ? js[i] : maxj;
    if (maxk < 1 || maxj < 1 || (int64_t)maxk * maxj > 10000000) {
        errbuf_set(err, errlen, "sessions and candidates must be >= 1, at most 1e7 rows");
        return -EINVAL;
    }
    const int maxn = maxk * maxj;

    /* rows per block and workspace rows per worker, as cem_create sizes them */
    size_t row = (size_t)info->dims.hidden + 8 * (size_t)D + 3 * (size_t)S + (size_t)A * H;
    size_t block_bytes = rssm_uses_kernel(m) ? BLOCK_BYTES_KERNEL : BLOCK_BYTES_BLAS;
    int mb = cfg->block_rows ? cfg->block_rows : (int)(block_bytes / (row * sizeof(float)));
    mb = mb < MIN_BLOCK ? MIN_BLOCK : mb;
    int per_member = (maxn + T - 1) / T;
    int wrows = per_member < mb ? per_member : mb;

    int rc = -ENOMEM;
    bt_team_t *team = NULL;
    bt_job_t j = {.m = m,
                  .D = D,
                  .S = S,
                  .A = A,
                  .H = H,
                  .max_block = mb,
                  .seed = cfg->seed,
                  .lo = info->action_low,
                  .hi = info->action_high};
    float *h0 = malloc(sizeof(float) * (size_t)maxk * D);
    float *z0 = malloc(sizeof(float) * (size_t)maxk * S);
    float *mu = malloc(sizeof(float) * (size_t)maxk * H * A);
    float *sd = malloc(sizeof(float) * (size_t)maxk * H * A);
    float *ret_seq = malloc(sizeof(float) * (size_t)maxn);
    float *ret_bat = malloc(sizeof(float) * (size_t)maxn);
    j.workers = calloc((size_t)T, sizeof *j.workers);
    if (!h0 || !z0 || !mu || !sd || !ret_seq || !ret_bat || !j.workers)
        goto fail;
    for (int i = 0; i < T; i++)
        if ((rc = worker_init(&j.workers[i], m, wrows, H)))
            goto fail;
    /* each session its own belief (h in (-1, 1) like a GRU state, z ~ N(0, 1)) and its own
     * Gaussian (a mean inside the bounds, std a fraction of the half range) */
    uint64_t st = cfg->seed ^ 0x6a09e667f3bcc908ull;
    for (size_t i = 0; i < (size_t)maxk * D; i++)
        h0[i] = (float)tanh(0.5 * lcg_normal(&st));
    for (size_t i = 0; i < (size_t)maxk * S; i++)
        z0[i] = (float)lcg_normal(&st);
    for (size_t i = 0; i < (size_t)maxk * H * A; i++) {
        int d = (int)(i % (size_t)A);
        float mid = 0.5f * (j.lo[d] + j.hi[d]), half = 0.5f * (j.hi[d] - j.lo[d]);
        mu[i] = mid + 0.5f * half * (float)tanh(lcg_normal(&st));
        sd[i] = half * (0.3f + 0.7f * (float)fabs(tanh(lcg_normal(&st))));
    }
    j.h0 = h0, j.z0 = z0, j.mu = mu, j.sd = sd;
    openblas_set_num_threads(1); /* parallelism comes from the team, as in the planner */
    if ((rc = bt_team_create(T, &team))) {
        errbuf_set(err, errlen, "cannot start the batch table's threads");
        goto fail;
    }

    for (int ki = 0; ki < nk; ki++)
        for (int ji = 0; ji < nj; ji++) {
            const int K = ks[ki], J = js[ji];
            batch_table_row_t *out = &rows[ki * nj + ji];
            j.J = J;
            /* warm-up of each side, and the check that both compute the same returns */
            j.ret = ret_seq;
            time_side(team, &j, K, false);
            j.ret = ret_bat;
            time_side(team, &j, K, true);
            double diff = 0.0;
            for (int i = 0; i < K * J; i++) {
                double e = fabs((double)ret_seq[i] - (double)ret_bat[i]);
                diff = e > diff || isnan(e) ? e : diff;
            }
            double best[2] = {INFINITY, INFINITY}, sum[2] = {0.0, 0.0};
            int reps = 0;
            while (reps < MAX_REPS &&
                   (reps < MIN_REPS || sum[0] < MIN_TIME_S || sum[1] < MIN_TIME_S)) {
                /* alternate the sides so that a busy spell of the machine hits both */
                for (int b = 0; b < 2; b++) {
                    double el = time_side(team, &j, K, b);
                    sum[b] += el;
                    best[b] = el < best[b] ? el : best[b];
                }
                reps++;
            }
            const double cs = (double)K * J * H;
            out->sessions = K;
            out->candidates = J;
            out->reps = reps;
            out->sequential_cps = cs / best[0];
            out->batched_cps = cs / best[1];
            out->ratio = best[0] / best[1];
            out->max_return_diff = diff;
        }
    rc = 0;
fail:
    if (rc && err && errlen && !err[0])
        errbuf_set(err, errlen, "out of memory");
    bt_team_destroy(team);
    if (j.workers)
        for (int i = 0; i < T; i++)
            free(j.workers[i].mem);
    free(j.workers);
    free(ret_bat);
    free(ret_seq);
    free(sd);
    free(mu);
    free(z0);
    free(h0);
    return rc;
}
