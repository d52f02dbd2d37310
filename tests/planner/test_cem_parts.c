/*
 * test_cem_parts.c: libplanner's private modules on their own.
 *
 *   cem_rng     normals: moments and tails of N(0, 1), any sub-range of a stream equals
 *               the same numbers generated in one go, different keys differ
 *   cem_select  top-K against a brute-force sort (ties by index), elite and MPPI refit
 *               against direct formulas
 *   cem_noise   the colored filter: unit variance per step, neighbouring steps correlated
 *               for beta = 2, identity-like (uncorrelated) for beta = 0
 *   cem_team    every member runs every job exactly once, many jobs in a row; a helper
 *               that overruns the time limit is not waited for, and is waited for later
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cem_noise.h"
#include "cem_rng.h"
#include "cem_select.h"
#include "cem_team.h"

static void test_rng_moments(void **state)
{
    (void)state;
    const int n = 1 << 20;
    float *x = malloc(sizeof(float) * n);
    assert_non_null(x);
    cem_rng_normals(x, n, cem_rng_key(1, 2, CEM_RNG_ACTION, 3), 0);
    double s = 0, s2 = 0, s3 = 0, s4 = 0;
    int beyond2 = 0, beyond4 = 0;
    for (int i = 0; i < n; i++) {
        double v = x[i];
        assert_true(isfinite(v));
        s += v, s2 += v * v, s3 += v * v * v, s4 += v * v * v * v;
        beyond2 += fabs(v) > 2.0;
        beyond4 += fabs(v) > 4.0;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    assert_true(fabs(mean) < 0.005); /* 5 sigma for n = 2^20 */
    assert_true(fabs(var - 1.0) < 0.007);
    assert_true(fabs(s3 / n) < 0.02);
    assert_true(fabs(s4 / n - 3.0) < 0.05); /* kurtosis of a normal */
    /* P(|x| > 2) = 0.0455, P(|x| > 4) = 6.3e-5 */
    assert_true(fabs((double)beyond2 / n - 0.0455) < 0.001);
    assert_true(beyond4 > 20 && beyond4 < 130);
    /* consecutive numbers (the two halves of a Box-Muller pair) are uncorrelated */
    double c = 0;
    for (int i = 0; i + 1 < n; i += 2)
        c += (double)x[i] * x[i + 1];
    assert_true(fabs(c / (n / 2)) < 0.01);
    free(x);
}

static void test_rng_ranges(void **state)
{
    (void)state;
    const int n = 1000;
    float all[1000], part[1000], other[1000];
    uint64_t key = cem_rng_key(99, 0, CEM_RNG_LATENT, 11);
    cem_rng_normals(all, n, key, 5000);
    /* odd and even starts, lengths crossing the internal 128-number chunks */
    int cuts[] = {0, 1, 2, 127, 128, 129, 333, 334, 999, 1000};
    for (int k = 0; k + 1 < (int)(sizeof cuts / sizeof *cuts); k++)
        cem_rng_normals(part + cuts[k], cuts[k + 1] - cuts[k], key, 5000 + (uint64_t)cuts[k]);
    assert_memory_equal(all, part, sizeof all);
    cem_rng_normals(other, n, cem_rng_key(99, 0, CEM_RNG_LATENT, 12), 5000);
    int same = 0;
    for (int i = 0; i < n; i++)
        same += other[i] == all[i];
    assert_true(same < 5);
    assert_true(cem_rng_key(1, 0, CEM_RNG_ACTION, 0) != cem_rng_key(1, 0, CEM_RNG_LATENT, 0));
    assert_true(cem_rng_key(1, 0, CEM_RNG_ACTION, 0) != cem_rng_key(2, 0, CEM_RNG_ACTION, 0));
}

static const float *sort_ret;
static int by_rank(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_ret[i] != sort_ret[j])
        return sort_ret[i] > sort_ret[j] ? -1 : 1;
    return i - j;
}

static void test_top_k(void **state)
{
    (void)state;
    enum { N = 500 };
    float ret[N];
    int idx[N], ref[N];
    srand(3);
    for (int trial = 0; trial < 50; trial++) {
        int n = 1 + rand() % N, k = 1 + rand() % n;
        for (int i = 0; i < n; i++)
            ret[i] = (float)(rand() % 40) - 20.0f; /* many ties */
        for (int i = 0; i < n; i++)
            ref[i] = i;
        sort_ret = ret;
        qsort(ref, (size_t)n, sizeof *ref, by_rank);
        cem_top_k(ret, n, k, idx);
        assert_memory_equal(idx, ref, sizeof(int) * (size_t)k);
    }
}

static void test_refit(void **state)
{
    (void)state;
    enum { H = 3, A = 2, J = 7, LDJ = 9 };
    float act[H * LDJ * A], ret[J], mean[H * A], sd[H * A], w[J];
    for (int i = 0; i < H * LDJ * A; i++)
        act[i] = sinf((float)i * 1.7f);
    for (int j = 0; j < J; j++)
        ret[j] = (float)((j * 5) % J);
    int idx[3] = {4, 0, 2};
    cem_refit_elites(act, LDJ, H, A, idx, 3, mean, sd);
    for (int t = 0; t < H; t++)
        for (int a = 0; a < A; a++) {
            double v[3], mu = 0, var = 0;
            for (int e = 0; e < 3; e++)
                mu += (v[e] = act[(t * LDJ + idx[e]) * A + a]) / 3.0;
            for (int e = 0; e < 3; e++)
                var += (v[e] - mu) * (v[e] - mu) / 3.0;
            assert_float_equal(mean[t * A + a], mu, 1e-6);
            assert_float_equal(sd[t * A + a], sqrt(var), 1e-6);
        }
    float ess = cem_refit_weighted(act, LDJ, H, A, ret, J, 0.5f, w, mean, sd);
    double total = 0, wr[J], sq = 0;
    for (int j = 0; j < J; j++)
        total += wr[j] = exp(0.5 * (ret[j] - 6.0));
    for (int j = 0; j < J; j++) {
        assert_float_equal(w[j], wr[j] / total, 1e-6);
        sq += (wr[j] / total) * (wr[j] / total);
    }
    assert_float_equal(ess, 1.0 / sq, 1e-4);
    for (int t = 0; t < H; t++)
        for (int a = 0; a < A; a++) {
            double mu = 0, var = 0;
            for (int j = 0; j < J; j++)
                mu += wr[j] / total * act[(t * LDJ + j) * A + a];
            for (int j = 0; j < J; j++) {
                double d = act[(t * LDJ + j) * A + a] - mu;
                var += wr[j] / total * d * d;
            }
            assert_float_equal(mean[t * A + a], mu, 1e-5);
            assert_float_equal(sd[t * A + a], sqrt(var), 1e-5);
        }
}

/* Correlation of steps t and t + 1 of the colored noise, from the filter directly. */
static double neighbour_corr(const float *f, int H, int t)
{
    double c = 0;
    for (int k = 0; k < H; k++)
        c += (double)f[t * H + k] * f[(t + 1) * H + k];
    return c;
}

static void test_noise_filter(void **state)
{
    (void)state;
    for (int H = 1; H <= 30; H += 3) {
        float f[30 * 30];
        for (int b = 0; b <= 2; b += 2) {
            cem_noise_filter(f, H, (float)b);
            for (int t = 0; t < H; t++) {
                double norm = 0;
                for (int k = 0; k < H; k++)
                    norm += (double)f[t * H + k] * f[t * H + k];
                assert_float_equal(norm, 1.0, 1e-5); /* unit variance per step */
            }
            for (int t = 0; t + 1 < H; t++) {
                double c = neighbour_corr(f, H, t);
                if (b == 0)
                    assert_true(fabs(c) < 1e-5); /* white: independent steps */
                else /* 1/f^2: correlated steps (0.71 at H = 12, 0.23 at H = 4) */
                    assert_true(c > (H >= 8 ? 0.55 : 0.2));
            }
        }
    }
    /* applying the filter is the matrix product */
    const int H = 5;
    float f[25], x[10], y[10];
    cem_noise_filter(f, H, 2.0f);
    for (int i = 0; i < 10; i++)
        x[i] = y[i] = (float)i - 4.0f;
    cem_noise_color(y, 2, H, f);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < H; t++) {
            double s = 0;
            for (int k = 0; k < H; k++)
                s += (double)f[t * H + k] * x[r * H + k];
            assert_float_equal(y[r * H + t], s, 1e-5);
        }
}

typedef struct {
    atomic_int calls[8];
    atomic_int nth_seen;
} team_job_t;

static void count_job(void *arg, int ith, int nth)
{
    team_job_t *j = arg;
    atomic_fetch_add(&j->calls[ith], 1);
    atomic_store(&j->nth_seen, nth);
}

static void test_team(void **state)
{
    (void)state;
    for (int nth = 1; nth <= 4; nth++) {
        cem_team_t *t = NULL;
        assert_int_equal(cem_team_create(nth, NULL, NULL, &t), 0);
        assert_int_equal(cem_team_size(t), nth);
        team_job_t job;
        memset(&job, 0, sizeof job);
        for (int r = 0; r < 2000; r++)
            cem_team_run(t, count_job, &job);
        for (int i = 0; i < 8; i++)
            assert_int_equal(atomic_load(&job.calls[i]), i < nth ? 2000 : 0);
        assert_int_equal(atomic_load(&job.nth_seen), nth);
        cem_team_destroy(t);
    }
    cem_team_destroy(NULL);
    cem_team_t *t = (cem_team_t *)&state;
    assert_int_equal(cem_team_create(0, NULL, NULL, &t), -EINVAL);
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Member 1 is held until the test releases it (a preempted helper); member 0 returns. */
typedef struct {
    atomic_int finished;
    atomic_bool release;
} held_job_t;

static void held_job(void *arg, int ith, int nth)
{
    (void)nth;
    held_job_t *j = arg;
    while (ith == 1 && !atomic_load(&j->release)) {
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
    atomic_fetch_add(&j->finished, 1);
}

static void test_team_until(void **state)
{
    (void)state;
    cem_team_t *t = NULL;
    assert_int_equal(cem_team_create(2, NULL, NULL, &t), 0);
    held_job_t held = {0};
    /* the helper cannot finish before it is released: not waited for */
    assert_false(cem_team_run_until(t, held_job, &held, mono_s() + 0.01));
    assert_false(cem_team_wait_until(t, mono_s() + 0.001));
    assert_int_equal(atomic_load(&held.finished), 1);
    atomic_store(&held.release, true);
    cem_team_wait(t);
    assert_int_equal(atomic_load(&held.finished), 2);
    assert_true(cem_team_wait_until(t, mono_s())); /* idle: true at once */
    /* a job that ends in time (no time limit in practice) */
    team_job_t job;
    memset(&job, 0, sizeof job);
    assert_true(cem_team_run_until(t, count_job, &job, mono_s() + 3600.0));
    assert_int_equal(atomic_load(&job.calls[0]) + atomic_load(&job.calls[1]), 2);
    /* destroy while a helper is still busy waits for it */
    atomic_store(&held.release, false);
    assert_false(cem_team_run_until(t, held_job, &held, mono_s() + 0.01));
    atomic_store(&held.release, true);
    cem_team_destroy(t);
    assert_int_equal(atomic_load(&held.finished), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_moments),  cmocka_unit_test(test_rng_ranges),
        cmocka_unit_test(test_top_k),        cmocka_unit_test(test_refit),
        cmocka_unit_test(test_noise_filter), cmocka_unit_test(test_team),
        cmocka_unit_test(test_team_until),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
