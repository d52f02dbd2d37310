/*
 * bench_imagine.c: time one batched imagination step (prior + reward) with librssm.
 *
 * Usage: bench_imagine MODEL N REPEATS THREADS
 * Runs rssm_imagine_batch + rssm_reward_batch on N random candidates REPEATS times (after
 * a warm-up), the rows split into THREADS slices on as many threads (each with its own
 * workspace, OpenBLAS at one thread: how the planner calls librssm), and prints one line:
 * {"impl": "c", "n": N, "threads": T, "median_ms": .., "min_ms": .., "mean_ms": ..}.
 * bench_imagine.py runs it next to the PyTorch module on the same model file.
 */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rssm.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* One thread's slice of the batch: rows [j0, j1). */
typedef struct slice {
    const rssm_model_t *m;
    int j0, j1;
    const float *h, *z, *a;
    float *hn, *pm, *ps, *r, *ws;
} slice_t;

static void *run_slice(void *arg)
{
    const slice_t *s = arg;
    const rssm_dims_t *d = &rssm_info(s->m)->dims;
    size_t D = (size_t)d->deter, S = (size_t)d->stoch, A = (size_t)d->action, j = (size_t)s->j0;
    int n = s->j1 - s->j0;
    rssm_imagine_batch(s->m, n, s->h + j * D, s->z + j * S, s->a + j * A, s->hn + j * D,
                       s->pm + j * S, s->ps + j * S, s->ws);
    rssm_reward_batch(s->m, n, s->hn + j * D, s->pm + j * S, s->r + j, s->ws);
    return NULL;
}

/* One step of the whole batch: slices 1.. on new threads, slice 0 on this one. */
static void step(slice_t *sl, int threads)
{
    pthread_t tid[64];
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tid[i], NULL, run_slice, &sl[i]))
            abort();
    run_slice(&sl[0]);
    for (int i = 1; i < threads; i++)
        pthread_join(tid[i], NULL);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL N REPEATS THREADS\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[2]), reps = atoi(argv[3]), threads = atoi(argv[4]);
    if (n < 1 || reps < 1 || threads < 1 || threads > 64 || threads > n) {
        fprintf(stderr,
                "bench_imagine: N and REPEATS must be positive, THREADS in 1..min(N, 64)\n");
        return 2;
    }
    rssm_model_t *m;
    char err[512];
    if (rssm_load(argv[1], &m, err, sizeof err)) {
        fprintf(stderr, "bench_imagine: %s\n", err);
        return 1;
    }
    openblas_set_num_threads(1);
    const rssm_dims_t *d = &rssm_info(m)->dims;
    size_t D = (size_t)d->deter, S = (size_t)d->stoch, A = (size_t)d->action;
    float *h = malloc(sizeof(float) * n * D), *z = malloc(sizeof(float) * n * S);
    float *a = malloc(sizeof(float) * n * A), *hn = malloc(sizeof(float) * n * D);
    float *pm = malloc(sizeof(float) * n * S), *ps = malloc(sizeof(float) * n * S);
    float *r = malloc(sizeof(float) * n);
    double *t = malloc(sizeof(double) * reps);
    slice_t sl[64];
    for (int i = 0; i < threads; i++) {
        int j0 = (int)((long)n * i / threads), j1 = (int)((long)n * (i + 1) / threads);
        float *ws = malloc(sizeof(float) * rssm_batch_workspace(m, j1 - j0));
        if (!ws)
            return 1;
        sl[i] = (slice_t){m, j0, j1, h, z, a, hn, pm, ps, r, ws};
    }
    if (!h || !z || !a || !hn || !pm || !ps || !r || !t)
        return 1;
    srand(1);
    for (size_t i = 0; i < n * D; i++)
        h[i] = rand() / (float)RAND_MAX * 2 - 1;
    for (size_t i = 0; i < n * S; i++)
        z[i] = rand() / (float)RAND_MAX * 2 - 1;
    for (size_t i = 0; i < n * A; i++)
        a[i] = rand() / (float)RAND_MAX * 2 - 1;
    for (int i = 0; i < 5; i++)
        step(sl, threads);
    double sum = 0;
    for (int i = 0; i < reps; i++) {
        double t0 = now_ms();
        step(sl, threads);
        t[i] = now_ms() - t0;
        sum += t[i];
    }
    qsort(t, (size_t)reps, sizeof *t, by_value);
    printf(
        "{\"impl\": \"c\", \"n\": %d, \"threads\": %d, \"median_ms\": %.4f, \"min_ms\": %.4f, "
        "\"mean_ms\": %.4f, \"gflops\": %.2f}\n",
        n, threads, t[reps / 2], t[0], sum / reps,
        (double)rssm_flops_per_imagine_step(m) * n / (t[reps / 2] * 1e6));
    for (int i = 0; i < threads; i++)
        free(sl[i].ws);
    free(h), free(z), free(a), free(hn), free(pm), free(ps), free(r), free(t);
    rssm_destroy(m);
    return 0;
}
