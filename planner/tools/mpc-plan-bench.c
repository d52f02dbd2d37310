/*
 * mpc-plan-bench: times libplanner's CEM on a model file or a random model, optionally
 * against OpenBLAS sgemm peak, and evaluates the quality of the returned plans. With
 * --batch-table it instead compares K sessions' rollouts run one after another with the
 * same rows stacked into one batched rollout (batch_table.c).
 *
 * tests/bench/bench_plan.py drives it (with the PyTorch CEM beside it); scripts depend on
 * the options and on the JSON keys documented in --help.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch_table.h"
#include "planner.h"
#include "random_model.h"

static const char usage_text[] =
    "NAME\n"
    "    mpc-plan-bench - benchmark libplanner's deadline-bounded CEM\n"
    "\n"
    "SYNOPSIS\n"
    "    mpc-plan-bench --model FILE [OPTIONS]\n"
    "    mpc-plan-bench [--deter N --stoch N --hidden N --action-dim N] [OPTIONS]\n"
    "    mpc-plan-bench [--model FILE | MODEL OPTIONS] --batch-table [--horizon H]\n"
    "                   [--threads T] [--json]\n"
    "\n"
    "DESCRIPTION\n"
    "    Runs --plans plans (after --warmup untimed ones) from a fixed set of random\n"
    "    beliefs and reports plan time percentiles, candidate-steps per second (one\n"
    "    candidate imagined one step: transition, prior, reward) and the GFLOP/s that\n"
    "    implies (librssm's FLOP count of one imagined step). Without --model a random\n"
    "    model is built in memory (PyTorch's default init scale, seeded by --seed).\n"
    "\n"
    "MODEL\n"
    "    --model FILE          an mpc-rssm model file (model/FORMAT.md)\n"
    "    --deter N             random model: GRU size (default 200)\n"
    "    --stoch N             random model: latent size (default 30)\n"
    "    --hidden N            random model: MLP width (default 200)\n"
    "    --action-dim N        random model: action size (default 1)\n"
    "    --obs-dim N           random model: observation size (default 5)\n"
    "    --value               random model: with a value head\n"
    "    --write-model FILE    also write the random model to FILE\n"
    "\n"
    "PLANNER (defaults are libplanner's)\n"
    "    --candidates J        candidates per iteration (1000)\n"
    "    --top K               elites (100)\n"
    "    --iterations I        iterations (10)\n"
    "    --horizon H           planning horizon (12)\n"
    "    --threads T           planner team size (online CPUs, at most 4)\n"
    "    --deadline-ms MS      deadline of each plan, from its start (default: none)\n"
    "    --gap-ms MS           idle time before each plan, as a paced robot leaves\n"
    "                          between its requests (default 0: back to back)\n"
    "    --margin-ms MS        stop this long before the deadline (1)\n"
    "    --seed S              seed of the plans and of the random model (1)\n"
    "    --mean-latent         imagine with the prior mean instead of sampling\n"
    "    --use-value           add discount^H v(s_H) (the model needs a value head)\n"
    "    --population-decay X  iCEM: J_i = max(2K, J X^i) (1 = off)\n"
    "    --keep-elites X       iCEM: fraction of the top K kept across iterations (0)\n"
    "    --noise-beta X        iCEM: colored noise exponent (0 = white)\n"
    "    --icem                the three iCEM options at cem_config_icem()'s values\n"
    "    --plain               the three iCEM options off (the default)\n"
    "    --mppi                MPPI weighting instead of the top-K refit\n"
    "    --mppi-temperature X  MPPI temperature (1)\n"
    "    --min-std X           std floor relative to half the action range (0)\n"
    "    --block-rows N        candidates per librssm call (0 = automatic)\n"
    "\n"
    "MEASUREMENT\n"
    "    --plans N             timed plans (20)\n"
    "    --warmup N            untimed plans first (2)\n"
    "    --evaluate N          score each returned plan by N sampled rollouts of its\n"
    "                          mean action sequence (same seeds for every config)\n"
    "    --sgemm               also time OpenBLAS sgemm (1024^3) with 1 and 2 threads\n"
    "    --batch-table         instead of plans, print whether batching sessions pays:\n"
    "                          for K = 1, 2, 4, 8, 16 sessions of J = 50, 100, 500\n"
    "                          candidates (each session its own belief and Gaussian), the\n"
    "                          candidate-steps/s of K rollouts of J rows one after another\n"
    "                          (sequential) and of one rollout of all K * J rows (batched),\n"
    "                          and their ratio. Both sides run the same code: the planner's\n"
    "                          action sampling, prior, latent sampling and reward over\n"
    "                          --horizon steps, split into the planner's blocks over a team\n"
    "                          of --threads (spinning between passes, as the planner's team\n"
    "                          does during a plan: keep it within the idle CPUs); best of\n"
    "                          >= 5 alternating repetitions (>= 0.5 s per side) after a\n"
    "                          warm-up. Uses --horizon, --threads, --block-rows and --seed;\n"
    "                          the other planner options are ignored\n"
    "    --json                print one JSON object instead of text\n"
    "    --help                this text\n"
    "\n"
    "OUTPUT (--json keys)\n"
    "    plans, candidate_steps_per_s, gflops, flops_per_candidate_step, plan_ms_p50,\n"
    "    plan_ms_p99, plan_ms_max, plan_ms_mean, plan_ms_min, iterations_mean,\n"
    "    deadline_cut_fraction, overrun_fraction, overruns, max_overrun_ms, fallbacks,\n"
    "    predicted_return_mean,\n"
    "    cpu_candidate_steps_per_s (per CPU-second of the whole process, spinning\n"
    "    included: steadier than wall time on a busy machine with --threads 1),\n"
    "    iteration_ms_estimate (the planner's prediction for one full iteration),\n"
    "    aborted_iterations, stragglers (cem_stats_t: see planner.h),\n"
    "    eval_return_mean (with --evaluate), sgemm_gflops_1t, sgemm_gflops_2t (with\n"
    "    --sgemm), and the configuration (model, deter, stoch, hidden, action_dim,\n"
    "    candidates, top, iterations, horizon, threads, deadline_ms, seed).\n"
    "    With --batch-table: model, deter, stoch, hidden, action_dim, horizon, threads,\n"
    "    statistic (\"best\"), elapsed_s and batch_table, an array of {K, J,\n"
    "    sequential_cand_steps_per_s, batched_cand_steps_per_s, ratio} (ratio = batched /\n"
    "    sequential).\n"
    "\n"
    "ENVIRONMENT\n"
    "    MPC_RSSM_GEMM=blas    librssm on OpenBLAS instead of its packed AVX2 kernel\n"
    "\n"
    "EXIT STATUS\n"
    "    0 done, 1 the model or planner could not be set up, 2 bad arguments.\n"
    "\n"
    "EXAMPLES\n"
    "    mpc-plan-bench --deter 200 --stoch 30 --hidden 200 --action-dim 6 --sgemm\n"
    "    mpc-plan-bench --model m.safetensors --deadline-ms 20 --plans 1000 --json\n"
    "    mpc-plan-bench --model m.safetensors --batch-table --threads 2\n";

typedef struct {
    const char *model, *write_model;
    random_model_spec_t spec;
    cem_config_t cfg;
    double deadline_ms, gap_ms;
    uint64_t seed;
    int plans, warmup, evaluate;
    bool sgemm, json, batch_table;
} opts_t;

static int fail_arg(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "mpc-plan-bench: %s %s: %s (see --help)\n", opt, val ? val : "", why);
    return 2;
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int parse(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    cem_config_default(&o->cfg);
    o->spec = (random_model_spec_t){
        .obs = 5, .action = 1, .deter = 200, .stoch = 30, .hidden = 200, .embed = 200};
    o->seed = 1;
    o->plans = 20;
    o->warmup = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            exit(0);
        }
        /* flags without a value */
        if (!strcmp(a, "--value")) {
            o->spec.has_value = 1;
            continue;
        }
        if (!strcmp(a, "--mean-latent")) {
            o->cfg.sample_latent = false;
            continue;
        }
        if (!strcmp(a, "--use-value")) {
            o->cfg.use_value = true;
            continue;
        }
        if (!strcmp(a, "--mppi")) {
            o->cfg.mppi = true;
            continue;
        }
        if (!strcmp(a, "--icem")) {
            cem_config_icem(&o->cfg);
            continue;
        }
        if (!strcmp(a, "--plain")) {
            o->cfg.population_decay = 1.0;
            o->cfg.keep_elites = 0.0;
            o->cfg.noise_beta = 0.0;
            continue;
        }
        if (!strcmp(a, "--sgemm")) {
            o->sgemm = true;
            continue;
        }
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (!strcmp(a, "--batch-table")) {
            o->batch_table = true;
            continue;
        }
        if (i + 1 >= argc)
            return fail_arg(a, NULL,
                            strncmp(a, "--", 2) ? "unknown argument"
                                                : "needs a value or is unknown");
        const char *v = argv[++i];
        long n;
        double x;
#define INT_OPT(name, lo, hi, field)                                                           \
    if (!strcmp(a, name)) {                                                                    \
        if (!parse_int(v, lo, hi, &n))                                                         \
            return fail_arg(a, v, "expected an integer in " #lo ".." #hi);                     \
        field = (int)n;                                                                        \
        continue;                                                                              \
    }
#define NUM_OPT(name, lo, hi, field)                                                           \
    if (!strcmp(a, name)) {                                                                    \
        if (!parse_num(v, lo, hi, &x))                                                         \
            return fail_arg(a, v, "expected a number in [" #lo ", " #hi "]");                  \
        field = x;                                                                             \
        continue;                                                                              \
    }
        if (!strcmp(a, "--model")) {
            o->model = v;
            continue;
        }
        if (!strcmp(a, "--write-model")) {
            o->write_model = v;
            continue;
        }
        if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || *v == '-')
                return fail_arg(a, v, "expected a non-negative integer");
            o->seed = s;
            continue;
        }
        INT_OPT("--deter", 1, 4096, o->spec.deter)
        INT_OPT("--stoch", 1, 4096, o->spec.stoch)
        INT_OPT("--hidden", 1, 4096, o->spec.hidden)
        INT_OPT("--action-dim", 1, 4096, o->spec.action)
        INT_OPT("--obs-dim", 1, 4096, o->spec.obs)
        INT_OPT("--candidates", 1, 1000000, o->cfg.candidates)
        INT_OPT("--top", 1, 1000000, o->cfg.top_k)
        INT_OPT("--iterations", 1, 10000, o->cfg.iterations)
        INT_OPT("--horizon", 1, 1000, o->cfg.horizon)
        INT_OPT("--threads", 1, 256, o->cfg.threads)
        INT_OPT("--plans", 1, 10000000, o->plans)
        INT_OPT("--block-rows", 0, 1000000, o->cfg.block_rows)
        INT_OPT("--warmup", 0, 1000000, o->warmup)
        INT_OPT("--evaluate", 1, 100000, o->evaluate)
        NUM_OPT("--deadline-ms", 0.0, 1e6, o->deadline_ms)
        NUM_OPT("--gap-ms", 0.0, 1e4, o->gap_ms)
        NUM_OPT("--population-decay", 0.0, 1.0, o->cfg.population_decay)
        NUM_OPT("--keep-elites", 0.0, 1.0, o->cfg.keep_elites)
        NUM_OPT("--noise-beta", 0.0, 4.0, o->cfg.noise_beta)
        NUM_OPT("--mppi-temperature", 0.0, 1e9, o->cfg.mppi_temperature)
        if (!strcmp(a, "--margin-ms")) {
            if (!parse_num(v, 0.0, 10000.0, &x))
                return fail_arg(a, v, "expected a number in [0, 10000]");
            o->cfg.margin_s = x * 1e-3;
            continue;
        }
        if (!strcmp(a, "--min-std")) {
            if (!parse_num(v, 0.0, 1.0, &x))
                return fail_arg(a, v, "expected a number in [0, 1]");
            o->cfg.min_std = (float)x;
            continue;
        }
#undef INT_OPT
#undef NUM_OPT
        return fail_arg(a, NULL, "unknown option");
    }
    o->spec.embed = o->spec.hidden;
    o->spec.seed = o->seed;
    char err[256];
    if (cem_config_validate(&o->cfg, err, sizeof err))
        return fail_arg("planner configuration:", NULL, err);
    return 0;
}

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* Best GFLOP/s of C = A B (n x n) with OpenBLAS on `threads` threads, over ~0.5 s. */
static double sgemm_gflops(int threads)
{
    const int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    double best = 0.0;
    if (a && b && c) {
        for (int i = 0; i < n * n; i++)
            a[i] = b[i] = (float)((i % 17) - 8) * 0.01f;
        openblas_set_num_threads(threads);
        double end = now_s() + 0.5;
        for (int r = 0; r < 3 || now_s() < end; r++) {
            double t0 = now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n,
                        0.0f, c, n);
            double g = 2.0 * n * n * (double)n / (now_s() - t0) * 1e-9;
            best = g > best ? g : best;
        }
        openblas_set_num_threads(1);
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* Mean return of `rows` rollouts of the action sequence plan [H, A] from (h, z), with
 * sampled latents from a fixed generator (the same for every configuration). */
typedef struct {
    int rows;
    float *h, *hn, *z, *pm, *ps, *r, *a, *ws;
} evaluator_t;

static int evaluator_init(evaluator_t *e, const rssm_model_t *m, int rows)
{
    const rssm_dims_t *d = &rssm_info(m)->dims;
    size_t n = (size_t)rows;
    e->rows = rows;
    e->h = malloc(sizeof(float) * n * d->deter);
    e->hn = malloc(sizeof(float) * n * d->deter);
    e->z = malloc(sizeof(float) * n * d->stoch);
    e->pm = malloc(sizeof(float) * n * d->stoch);
    e->ps = malloc(sizeof(float) * n * d->stoch);
    e->r = malloc(sizeof(float) * n);
    e->a = malloc(sizeof(float) * n * d->action);
    e->ws = malloc(sizeof(float) * rssm_batch_workspace(m, rows));
    return e->h && e->hn && e->z && e->pm && e->ps && e->r && e->a && e->ws ? 0 : -ENOMEM;
}

static void evaluator_free(evaluator_t *e)
{
    free(e->h), free(e->hn), free(e->z), free(e->pm), free(e->ps), free(e->r), free(e->a);
    free(e->ws);
}

/* Standard normal from a 64-bit LCG state (Box-Muller; quality is plenty here). */
static double lcg_normal(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double u1 = ((double)(*s >> 11) + 1.0) / 9007199254740993.0;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double u2 = (double)(*s >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double evaluate(evaluator_t *e, const rssm_model_t *m, const float *h0, const float *z0,
                       const float *plan, int H, bool use_value, uint64_t seed)
{
    const rssm_info_t *info = rssm_info(m);
    const int D = info->dims.deter, S = info->dims.stoch, A = info->dims.action, n = e->rows;
    for (int i = 0; i < n; i++) {
        memcpy(e->h + (size_t)i * D, h0, sizeof(float) * D);
        memcpy(e->z + (size_t)i * S, z0, sizeof(float) * S);
    }
    double total = 0.0;
    uint64_t st = seed * 0x9e3779b97f4a7c15ull + 12345;
    for (int t = 0; t < H; t++) {
        for (int i = 0; i < n; i++)
            memcpy(e->a + (size_t)i * A, plan + (size_t)t * A, sizeof(float) * A);
        rssm_imagine_batch(m, n, e->h, e->z, e->a, e->hn, e->pm, e->ps, e->ws);
        for (size_t k = 0; k < (size_t)n * S; k++)
            e->z[k] = e->pm[k] + e->ps[k] * (float)lcg_normal(&st);
        rssm_reward_batch(m, n, e->hn, e->z, e->r, e->ws);
        for (int i = 0; i < n; i++)
            total += e->r[i];
        float *tmp = e->h;
        e->h = e->hn;
        e->hn = tmp;
    }
    if (use_value) {
        rssm_value_batch(m, n, e->h, e->z, e->r, e->ws);
        double g = pow(info->discount, H);
        for (int i = 0; i < n; i++)
            total += g * e->r[i];
    }
    return total / n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p)
{
    int k = (int)ceil(p / 100.0 * n) - 1;
    return sorted[k < 0 ? 0 : k >= n ? n - 1 : k];
}

#define NBELIEFS 16

/* --batch-table: the table, as text or JSON. Returns the exit status. */
static int batch_table(const opts_t *o, const rssm_model_t *m)
{
    static const int ks[] = {1, 2, 4, 8, 16}, js[] = {50, 100, 500};
    enum { NK = sizeof ks / sizeof *ks, NJ = sizeof js / sizeof *js };
    const rssm_info_t *info = rssm_info(m);
    const rssm_dims_t *d = &info->dims;
    batch_table_config_t c = {.horizon = o->cfg.horizon,
                              .threads = o->cfg.threads,
                              .block_rows = o->cfg.block_rows,
                              .seed = o->seed};
    batch_table_row_t rows[NK * NJ];
    char err[256];
    double t0 = now_s();
    int rc = batch_table_run(m, &c, ks, NK, js, NJ, rows, err, sizeof err);
    if (rc) {
        fprintf(stderr, "mpc-plan-bench: batch table: %s\n", err);
        return 1;
    }
    double el = now_s() - t0, diff = 0.0;
    for (int i = 0; i < NK * NJ; i++)
        diff = rows[i].max_return_diff > diff ? rows[i].max_return_diff : diff;
    const char *name = o->model ? o->model : "random";
    if (o->json) {
        printf("{\"model\": \"%s\", \"deter\": %d, \"stoch\": %d, \"hidden\": %d, "
               "\"action_dim\": %d, \"horizon\": %d, \"threads\": %d, "
               "\"statistic\": \"best\", \"elapsed_s\": %.2f, \"batch_table\": [",
               name, d->deter, d->stoch, d->hidden, d->action, c.horizon, c.threads, el);
        for (int i = 0; i < NK * NJ; i++)
            printf("%s{\"K\": %d, \"J\": %d, \"sequential_cand_steps_per_s\": %.1f, "
                   "\"batched_cand_steps_per_s\": %.1f, \"ratio\": %.4f}",
                   i ? ", " : "", rows[i].sessions, rows[i].candidates, rows[i].sequential_cps,
                   rows[i].batched_cps, rows[i].ratio);
        printf("]}\n");
    } else {
        printf("model        %s (D=%d S=%d H=%d A=%d), %.0f FLOP per candidate-step\n", name,
               d->deter, d->stoch, d->hidden, d->action,
               (double)rssm_flops_per_imagine_step(m));
        printf("batch table  horizon %d, threads %d, best of >= 5 alternating repetitions "
               "per side (%.1f s); the sides' returns agree to %.2g\n",
               c.horizon, c.threads, el, diff);
        printf("%6s %6s %16s %16s %9s\n", "K", "J", "sequential/s", "batched/s", "ratio");
        for (int i = 0; i < NK * NJ; i++)
            printf("%6d %6d %16.0f %16.0f %9.3f\n", rows[i].sessions, rows[i].candidates,
                   rows[i].sequential_cps, rows[i].batched_cps, rows[i].ratio);
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    char err[512];
    rssm_model_t *m = NULL;
    if (o.model)
        rc = rssm_load(o.model, &m, err, sizeof err);
    else
        rc = random_model_create(&o.spec, o.write_model, &m, err, sizeof err);
    if (rc) {
        fprintf(stderr, "mpc-plan-bench: %s: %s\n", o.model ? o.model : "random model", err);
        return 1;
    }
    if (o.batch_table) {
        rc = batch_table(&o, m);
        rssm_destroy(m);
        return rc;
    }
    const rssm_info_t *info = rssm_info(m);
    const int D = info->dims.deter, S = info->dims.stoch, A = info->dims.action;
    const int H = o.cfg.horizon;

    /* sgemm first: cem_create pins OpenBLAS to one thread afterwards */
    double g1 = 0.0, g2 = 0.0;
    if (o.sgemm) {
        g1 = sgemm_gflops(1);
        g2 = sgemm_gflops(2);
    }
    cem_planner_t *p = NULL;
    if ((rc = cem_create(m, &o.cfg, &p, err, sizeof err))) {
        fprintf(stderr, "mpc-plan-bench: planner: %s\n", err);
        rssm_destroy(m);
        return 1;
    }
    /* a fixed set of beliefs: h in (-1, 1) like a GRU state, z ~ N(0, 1) */
    float *hs = malloc(sizeof(float) * NBELIEFS * D),
          *zs = malloc(sizeof(float) * NBELIEFS * S);
    float *action = malloc(sizeof(float) * A);
    float *mid = malloc(sizeof(float) * (size_t)H * A); /* what a fallback plays */
    double *ms = malloc(sizeof(double) * (size_t)o.plans);
    cem_plan_state_t st;
    evaluator_t ev = {0};
    if (!hs || !zs || !action || !mid || !ms || cem_plan_state_init(&st, H, A) ||
        (o.evaluate && evaluator_init(&ev, m, o.evaluate))) {
        fprintf(stderr, "mpc-plan-bench: out of memory\n");
        return 1;
    }
    for (int i = 0; i < H * A; i++)
        mid[i] = 0.5f * (info->action_low[i % A] + info->action_high[i % A]);
    uint64_t bs = o.seed ^ 0xb5ad4eceda1ce2a9ull;
    for (int i = 0; i < NBELIEFS * D; i++)
        hs[i] = (float)tanh(0.5 * lcg_normal(&bs));
    for (int i = 0; i < NBELIEFS * S; i++)
        zs[i] = (float)lcg_normal(&bs);

    double iter_est = 0.0, busy = 0.0, cpu = 0.0, eval_sum = 0.0, pred_sum = 0.0,
           max_over = 0.0;
    long long cand_steps = 0, iters = 0;
    int cuts = 0, overruns = 0, fallbacks = 0, pred_n = 0;
    for (int k = -o.warmup; k < o.plans; k++) {
        int b = (k + o.warmup) % NBELIEFS;
        const float *h = hs + (size_t)b * D, *z = zs + (size_t)b * S;
        cem_plan_state_reset(&st); /* every plan from scratch: comparable across configs */
        if (o.gap_ms > 0)          /* idle like a paced robot's daemon between two requests */
            nanosleep(
                &(struct timespec){(time_t)(o.gap_ms / 1e3), (long)(fmod(o.gap_ms, 1e3) * 1e6)},
                NULL);
        cem_result_t res = {.action = action};
        double t0 = now_s(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        /* an absolute CLOCK_MONOTONIC time in seconds (now_s's clock); INFINITY: none */
        double dl = o.deadline_ms > 0 ? t0 + o.deadline_ms * 1e-3 : INFINITY;
        rc = cem_plan(p, h, z, &st, o.seed + (uint64_t)(k + o.warmup), dl, &res);
        double el = now_s() - t0, cpu_el = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (rc) {
            fprintf(stderr, "mpc-plan-bench: cem_plan: %s\n", strerror(-rc));
            return 1;
        }
        if (k < 0)
            continue;
        ms[k] = el * 1e3;
        busy += el;
        cpu += cpu_el;
        cand_steps += (long long)res.candidates * H;
        iters += res.iterations;
        iter_est = res.iteration_s;
        cuts += res.deadline_cut;
        fallbacks += res.fallback;
        if (res.overrun) {
            overruns++;
            double late = el - o.deadline_ms * 1e-3;
            max_over = late > max_over ? late : max_over;
        }
        if (!res.fallback) {
            pred_sum += res.predicted_return;
            pred_n++;
        }
        if (o.evaluate)
            eval_sum += evaluate(&ev, m, h, z, res.fallback ? mid : st.mean, H, o.cfg.use_value,
                                 (uint64_t)b);
    }
    qsort(ms, (size_t)o.plans, sizeof *ms, cmp_double);
    cem_stats_t stats;
    cem_get_stats(p, &stats);
    const double flops = (double)rssm_flops_per_imagine_step(m);
    const double csps = cand_steps / busy;
    const double gflops = csps * flops * 1e-9;
    const double mean_ms = busy * 1e3 / o.plans;
    const int n = o.plans;
    if (o.json) {
        printf("{\"model\": \"%s\", \"deter\": %d, \"stoch\": %d, \"hidden\": %d, "
               "\"action_dim\": %d, \"candidates\": %d, \"top\": %d, \"iterations\": %d, "
               "\"horizon\": %d, \"threads\": %d, \"deadline_ms\": %g, \"seed\": %llu, "
               "\"population_decay\": %g, \"keep_elites\": %g, \"noise_beta\": %g, "
               "\"mppi\": %s, \"plans\": %d, \"candidate_steps_per_s\": %.1f, "
               "\"gflops\": %.3f, \"flops_per_candidate_step\": %.0f, \"plan_ms_p50\": %.4f, "
               "\"plan_ms_p99\": %.4f, \"plan_ms_max\": %.4f, \"plan_ms_mean\": %.4f, "
               "\"plan_ms_min\": %.4f, "
               "\"iterations_mean\": %.3f, \"deadline_cut_fraction\": %.5f, "
               "\"overrun_fraction\": %.5f, \"overruns\": %d, \"max_overrun_ms\": %.4f, "
               "\"fallbacks\": %d, \"predicted_return_mean\": %.6g, "
               "\"cpu_candidate_steps_per_s\": %.1f, \"iteration_ms_estimate\": %.4f, "
               "\"aborted_iterations\": %llu, \"stragglers\": %llu",
               o.model ? o.model : "random", D, S, info->dims.hidden, A, o.cfg.candidates,
               o.cfg.top_k, o.cfg.iterations, H, o.cfg.threads, o.deadline_ms,
               (unsigned long long)o.seed, o.cfg.population_decay, o.cfg.keep_elites,
               o.cfg.noise_beta, o.cfg.mppi ? "true" : "false", n, csps, gflops, flops,
               pct(ms, n, 50), pct(ms, n, 99), ms[n - 1], mean_ms, ms[0], (double)iters / n,
               (double)cuts / n, (double)overruns / n, overruns, max_over * 1e3, fallbacks,
               pred_n ? pred_sum / pred_n : 0.0, cand_steps / cpu, iter_est * 1e3,
               (unsigned long long)stats.aborted, (unsigned long long)stats.stragglers);
        if (o.evaluate)
            printf(", \"eval_return_mean\": %.6g", eval_sum / n);
        if (o.sgemm)
            printf(", \"sgemm_gflops_1t\": %.3f, \"sgemm_gflops_2t\": %.3f", g1, g2);
        printf("}\n");
    } else {
        printf("model        %s (D=%d S=%d H=%d A=%d), %.0f FLOP per candidate-step\n",
               o.model ? o.model : "random", D, S, info->dims.hidden, A, flops);
        printf("planner      J=%d K=%d I=%d H=%d threads=%d deadline=%g ms\n", o.cfg.candidates,
               o.cfg.top_k, o.cfg.iterations, H, o.cfg.threads, o.deadline_ms);
        printf("plans        %d: p50 %.3f ms, p99 %.3f ms, max %.3f ms, mean %.3f ms\n", n,
               pct(ms, n, 50), pct(ms, n, 99), ms[n - 1], mean_ms);
        printf("throughput   %.0f candidate-steps/s, %.2f GFLOP/s; %.0f candidate-steps per "
               "CPU-second (all threads, spinning included)\n",
               csps, gflops, cand_steps / cpu);
        printf("iterations   %.2f per plan (the planner expects %.3f ms for one); deadline cut "
               "%d, overruns %d (max %.3f ms), fallbacks %d\n",
               (double)iters / n, iter_est * 1e3, cuts, overruns, max_over * 1e3, fallbacks);
        printf("             %llu iterations abandoned at the deadline (%llu waiting for a "
               "preempted helper thread)\n",
               (unsigned long long)stats.aborted, (unsigned long long)stats.stragglers);
        if (o.evaluate)
            printf("quality      %.5g mean return of the plans (%d rollouts each)\n",
                   eval_sum / n, o.evaluate);
        if (o.sgemm)
            printf("sgemm        %.2f GFLOP/s 1 thread, %.2f GFLOP/s 2 threads (1024^3); "
                   "planner = %.0f%% of the 2-thread figure\n",
                   g1, g2, 100.0 * gflops / g2);
    }
    evaluator_free(&ev);
    cem_plan_state_free(&st);
    free(ms);
    free(mid);
    free(action);
    free(zs);
    free(hs);
    cem_destroy(p);
    rssm_destroy(m);
    return 0;
}
