/*
 * bench_imagine.c: time one batched imagination step (prior + reward) with librssm.
 *
 * Usage: bench_imagine MODEL N REPEATS THREADS
 * Runs rssm_imagine_batch + rssm_reward_batch on N random candidates REPEATS times (after
 * a warm-up) with OpenBLAS limited to THREADS threads, and prints one JSON line:
 * {"impl": "c", "n": N, "threads": T, "median_ms": .., "min_ms": .., "mean_ms": ..}.
 * bench_imagine.py runs it next to the PyTorch module on the same model file.
 */
#include <cblas.h>
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
    if (n < 1 || reps < 1 || threads < 1) {
        fprintf(stderr, "bench_imagine: N, REPEATS and THREADS must be positive\n");
        return 2;
    }
    rssm_model_t *m;
    char err[512];
    if (rssm_load(argv[1], &m, err, sizeof err)) {
        fprintf(stderr, "bench_imagine: %s\n", err);
        return 1;
    }
    openblas_set_num_threads(threads);
    const rssm_dims_t *d = &rssm_info(m)->dims;
    size_t D = (size_t)d->deter, S = (size_t)d->stoch, A = (size_t)d->action;
    float *h = malloc(sizeof(float) * n * D), *z = malloc(sizeof(float) * n * S);
    float *a = malloc(sizeof(float) * n * A), *hn = malloc(sizeof(float) * n * D);
    float *pm = malloc(sizeof(float) * n * S), *ps = malloc(sizeof(float) * n * S);
    float *r = malloc(sizeof(float) * n);
    float *ws = malloc(sizeof(float) * rssm_batch_workspace(m, n));
    double *t = malloc(sizeof(double) * reps);
    if (!h || !z || !a || !hn || !pm || !ps || !r || !ws || !t)
        return 1;
    srand(1);
    for (size_t i = 0; i < n * D; i++)
        h[i] = rand() / (float)RAND_MAX * 2 - 1;
    for (size_t i = 0; i < n * S; i++)
        z[i] = rand() / (float)RAND_MAX * 2 - 1;
    for (size_t i = 0; i < n * A; i++)
        a[i] = rand() / (float)RAND_MAX * 2 - 1;
    for (int i = 0; i < 5; i++) {
        rssm_imagine_batch(m, n, h, z, a, hn, pm, ps, ws);
        rssm_reward_batch(m, n, hn, pm, r, ws);
    }
    double sum = 0;
    for (int i = 0; i < reps; i++) {
        double t0 = now_ms();
        rssm_imagine_batch(m, n, h, z, a, hn, pm, ps, ws);
        rssm_reward_batch(m, n, hn, pm, r, ws);
        t[i] = now_ms() - t0;
        sum += t[i];
    }
    qsort(t, (size_t)reps, sizeof *t, by_value);
    printf("{\"impl\": \"c\", \"n\": %d, \"threads\": %d, \"median_ms\": %.4f, \"min_ms\": %.4f, "
           "\"mean_ms\": %.4f, \"gflops\": %.2f}\n",
           n, threads, t[reps / 2], t[0], sum / reps,
           (double)rssm_flops_per_imagine_step(m) * n / (t[reps / 2] * 1e6));
    free(h), free(z), free(a), free(hn), free(pm), free(ps), free(r), free(ws), free(t);
    rssm_destroy(m);
    return 0;
}
