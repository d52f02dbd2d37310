/*
 * bench_encode.c: time librssm's image encoder (rssm_encode_image) and the whole belief
 * update of an image model (rssm_observe_image) on one thread.
 *
 * Usage: bench_encode MODEL REPEATS
 * Encodes one fixed pseudo-random image REPEATS times after a warm-up (OpenBLAS at one
 * thread, the calling thread only), then runs REPEATS observe steps, and prints one line:
 * {"impl": "c", "path": .., "median_ms": .., "min_ms": .., "mean_ms": ..,
 *  "observe_median_ms": ..}. bench_encode.py runs it next to PyTorch on the same file.
 */
#include <cblas.h>
#include <stdint.h>
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
    if (argc != 3 || atoi(argv[2]) < 1) {
        fprintf(stderr, "usage: %s MODEL REPEATS (an image model file)\n", argv[0]);
        return 2;
    }
    int reps = atoi(argv[2]);
    rssm_model_t *m;
    char err[512];
    if (rssm_load(argv[1], &m, err, sizeof err)) {
        fprintf(stderr, "bench_encode: %s\n", err);
        return 1;
    }
    const rssm_info_t *info = rssm_info(m);
    const rssm_dims_t *d = &info->dims;
    if (info->image_channels <= 0) {
        fprintf(stderr, "bench_encode: %s is not an image model\n", argv[1]);
        rssm_destroy(m);
        return 1;
    }
    openblas_set_num_threads(1);
    size_t D = (size_t)d->deter, S = (size_t)d->stoch;
    uint8_t *image = malloc((size_t)d->obs);
    float *ws = malloc(sizeof(float) * rssm_observe_workspace(m));
    float *e = malloc(sizeof(float) * (size_t)d->embed);
    float *state = calloc(2 * D + 6 * S + (size_t)d->action, sizeof(float));
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!image || !ws || !e || !state || !t)
        return 1;
    uint32_t s = 12345;
    for (int i = 0; i < d->obs; i++) {
        s = s * 1664525u + 1013904223u;
        image[i] = (uint8_t)(s >> 24);
    }
    float *h = state, *z = h + D, *a = z + S, *hn = a + d->action;
    rssm_observe_out_t out = {hn, hn + D, hn + D + S, hn + D + 2 * S, hn + D + 3 * S};
    for (int i = 0; i < 20; i++)
        rssm_encode_image(m, image, e, ws);
    double sum = 0;
    for (int i = 0; i < reps; i++) {
        double t0 = now_ms();
        rssm_encode_image(m, image, e, ws);
        t[i] = now_ms() - t0;
        sum += t[i];
    }
    qsort(t, (size_t)reps, sizeof *t, by_value);
    double median = t[reps / 2], min = t[0];
    for (int i = 0; i < reps; i++) {
        double t0 = now_ms();
        rssm_observe_image(m, h, z, a, image, &out, ws);
        t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, by_value);
    printf("{\"impl\": \"c\", \"path\": \"%s\", \"median_ms\": %.4f, \"min_ms\": %.4f, "
           "\"mean_ms\": %.4f, \"observe_median_ms\": %.4f}\n",
           rssm_uses_kernel(m) ? "packed kernel" : "OpenBLAS", median, min, sum / reps,
           t[reps / 2]);
    free(image), free(ws), free(e), free(state), free(t);
    rssm_destroy(m);
    return 0;
}
