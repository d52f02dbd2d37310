/*
 * test_rssm_gates.c: the GRU gates (model/rssm_gates.c), both forms, against torch's
 * GRUCell arithmetic in double precision, and the eight-lane approximations against the
 * scalar ones they mirror.
 *
 * Widths cover the AVX2 form's scalar tails (D and 2D not multiples of 8), one row of h
 * shared by every row (ldh 0), gate inputs far into saturation, and NaN, which must come
 * out as NaN in its own element and nowhere else. The AVX2 cases skip where the CPU has no
 * AVX2 + FMA.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rssm_approx.h"
#include "rssm_gates.h"

static bool cpu_has_avx2_fma(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

static float uniform(uint64_t *s, float scale)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((float)((*s >> 40) / (double)(1 << 24)) * 2.0f - 1.0f) * scale;
}

static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

/* One case: n rows of width D, gate inputs uniform in +-scale, h in +-1. */
static void check_gates(int n, int D, int ldh, float scale, bool avx2, uint64_t *seed)
{
    const size_t g = (size_t)n * 3 * D, hrows = ldh ? (size_t)n : 1;
    float *gi = malloc(g * sizeof(float)), *gi0 = malloc(g * sizeof(float));
    float *gh = malloc(hrows * 3 * D * sizeof(float)), *h = malloc(hrows * D * sizeof(float));
    float *out = malloc((size_t)n * D * sizeof(float));
    assert_true(gi && gi0 && gh && h && out);
    for (size_t i = 0; i < g; i++)
        gi0[i] = gi[i] = uniform(seed, scale);
    for (size_t i = 0; i < hrows * 3 * D; i++)
        gh[i] = uniform(seed, scale);
    for (size_t i = 0; i < hrows * D; i++)
        h[i] = uniform(seed, 1.0f);
    rssm_gru_gates(n, D, gi, gh, h, ldh, out, avx2);
    for (int i = 0; i < n; i++) {
        const float *xi = gi0 + (size_t)i * 3 * D, *hh = gh + (size_t)i * ldh * 3 * D;
        const float *hp = h + (size_t)i * ldh * D;
        for (int j = 0; j < D; j++) {
            double r = sigmoid((double)xi[j] + hh[j]),
                   u = sigmoid((double)xi[D + j] + hh[D + j]);
            double c = tanh((double)xi[2 * D + j] + r * hh[2 * D + j]);
            double want = c + u * (hp[j] - c), got = out[(size_t)i * D + j];
            /* float rounds the candidate's input to ~1e-7 of its terms' size */
            double tol = 2e-6 + 2.5e-7 * (fabs(xi[2 * D + j]) + fabs(hh[2 * D + j]));
            if (!(fabs(got - want) < tol))
                fail_msg("%s n=%d D=%d ldh=%d scale=%g: h_next[%d][%d] = %.8g, want %.8g",
                         avx2 ? "avx2" : "c", n, D, ldh, scale, i, j, got, want);
        }
    }
    free(gi), free(gi0), free(gh), free(h), free(out);
}

static void check_widths(bool avx2)
{
    uint64_t seed = 7;
    const int widths[] = {1, 3, 4, 7, 8, 9, 30, 32, 64, 200, 203};
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++)
        for (int ldh = 0; ldh <= 1; ldh++) {
            check_gates(3, widths[w], ldh, 4.0f, avx2, &seed);
            check_gates(2, widths[w], ldh, 200.0f, avx2, &seed); /* saturated gates */
        }
}

static void test_c_form(void **state)
{
    (void)state;
    check_widths(false);
}

static void test_avx2_form(void **state)
{
    (void)state;
    if (!cpu_has_avx2_fma())
        skip();
    check_widths(true);
}

/* A NaN in a gate input, in h or in a shared gh row poisons its own element of h_next,
 * and only that one (in every row, for the shared row). */
static void check_nan(bool avx2)
{
    enum { N = 2, D = 20 };
    float gi[N * 3 * D], gh[3 * D], h[D], out[N * D];
    for (int j = 0; j < N * 3 * D; j++)
        gi[j] = 0.1f * (float)(j % 7);
    for (int j = 0; j < 3 * D; j++)
        gh[j] = -0.05f * (float)(j % 5);
    for (int j = 0; j < D; j++)
        h[j] = 0.5f;
    gi[3] = NAN;         /* row 0: r of element 3 (vector lanes) */
    gi[D + 5] = NAN;     /* row 0: u of element 5 (vector lanes) */
    gi[D + 17] = NAN;    /* row 0: u of element 17 (scalar tail) */
    gi[2 * D + 9] = NAN; /* row 0: candidate of element 9 */
    h[11] = NAN;         /* shared h: element 11 of every row */
    gh[2 * D + 1] = NAN; /* shared gh: candidate of element 1 of every row */
    rssm_gru_gates(N, D, gi, gh, h, 0, out, avx2);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) {
            bool poisoned =
                j == 11 || j == 1 || (i == 0 && (j == 3 || j == 5 || j == 17 || j == 9));
            if (poisoned != (bool)isnan(out[i * D + j]))
                fail_msg("%s: h_next[%d][%d] = %g", avx2 ? "avx2" : "c", i, j, out[i * D + j]);
        }
}

static void test_nan_stays_in_its_element(void **state)
{
    (void)state;
    check_nan(false);
    if (cpu_has_avx2_fma())
        check_nan(true);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include "rssm_approx_avx2.h"

static void note_error(double *worst, double err)
{
    if (!(err <= *worst)) /* a NaN error is the worst of all */
        *worst = isnan(err) ? INFINITY : err;
}

RSSM_AVX2_TARGET
static void compare8(const float x[8], double worst[4])
{
    float got[4][8];
    __m256 v = _mm256_loadu_ps(x);
    _mm256_storeu_ps(got[0], exp_approx8(v));
    _mm256_storeu_ps(got[1], elu_approx8(v));
    _mm256_storeu_ps(got[2], sigmoid_approx8(v));
    _mm256_storeu_ps(got[3], tanh_approx8(v));
    for (int l = 0; l < 8; l++) {
        float e = exp_approx(x[l]);
        float want[4] = {e, x[l] > 0 ? x[l] : e - 1.0f, sigmoid_approx(x[l]),
                         tanh_approx(x[l])};
        for (int f = 0; f < 4; f++) {
            if (got[f][l] == want[f]) /* also equal infinities */
                continue;
            double err = fabs(got[f][l] - want[f]);
            note_error(&worst[f], f == 0 ? err / want[f] : err);
        }
    }
}

/* Lane by lane, the eight-float functions agree with the scalar ones they mirror (FMAs
 * round once where the scalar code may round twice, hence a few ulps): densely over
 * [-100, 100], then at and past the clamps, at zeros and at infinities. */
static void compare_lanes(double worst[4])
{
    float x[8];
    for (float x0 = -100.0f; x0 < 100.0f; x0 += 8.0f / 1024) {
        for (int l = 0; l < 8; l++)
            x[l] = x0 + (float)l / 1024;
        compare8(x, worst);
    }
    static const float special[16] = {-1e30f,  -88.5f, -87.0f, -86.99f, -0.0f,     0.0f,
                                      87.99f,  88.0f,  88.5f,  1e30f,   -INFINITY, INFINITY,
                                      -1e-30f, 1e-30f, -20.0f, 20.0f};
    compare8(special, worst);
    compare8(special + 8, worst);
}

static void test_lanes_match_scalar(void **state)
{
    (void)state;
    if (!cpu_has_avx2_fma())
        skip();
    double worst[4] = {0};
    compare_lanes(worst);
    const char *names[4] = {"exp (rel)", "elu", "sigmoid", "tanh"};
    for (int f = 0; f < 4; f++)
        if (!(worst[f] < 5e-7))
            fail_msg("%s: eight-lane form differs from the scalar one by %g", names[f],
                     worst[f]);
}
#else
static void test_lanes_match_scalar(void **state)
{
    (void)state;
    skip();
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c_form),
        cmocka_unit_test(test_avx2_form),
        cmocka_unit_test(test_nan_stays_in_its_element),
        cmocka_unit_test(test_lanes_match_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
