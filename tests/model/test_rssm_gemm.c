/*
 * test_rssm_gemm.c: librssm's packed-weight kernel against a double-precision reference.
 *
 * Shapes cover every tile height (1-6 rows of 16 columns, 1-12 rows of a last panel of
 * at most 8 columns), partial panels (out not a multiple of 16, out = 1), two inputs and one,
 * rows that cross the 96-row chunk, a repeated first input (ldx 0) and the three activations.
 * Outputs are written into rows wider than `out`: the columns past it must keep their sentinel
 * (the masked stores of a partial panel). Skipped where the CPU has no AVX2 + FMA (librssm then
 * uses OpenBLAS only).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rssm_approx.h"
#include "rssm_gemm.h"

#define SENTINEL 12345.0f

static float uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

static float *random_floats(size_t n, uint64_t *seed)
{
    float *x = aligned_alloc(64, (n / 16 + 1) * 16 * sizeof(float)); /* size: 64-byte steps */
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = uniform(seed);
    return x;
}

static double activate(double v, rssm_gemm_act_t act)
{
    if (act == RSSM_GEMM_RELU)
        return v > 0 ? v : 0;
    if (act == RSSM_GEMM_ELU)
        return v > 0 ? v : exp(v) - 1;
    return v;
}

/* One case: y = act([x1, x2] W^T + b) with y rows ldy = out + 5 floats. */
static void check_case(int n, int out, int k1, int k2, int ldx1, rssm_gemm_act_t act,
                       uint64_t *seed)
{
    const int in = k1 + k2, ldy = out + 5;
    int x1_rows = ldx1 ? n : 1;
    float *x1 = random_floats((size_t)x1_rows * (ldx1 ? ldx1 : k1), seed);
    float *x2 = k2 ? random_floats((size_t)n * k2, seed) : NULL;
    float *w = random_floats((size_t)out * in, seed), *b = random_floats((size_t)out, seed);
    float *packed = aligned_alloc(64, rssm_gemm_packed_size(out, in) * sizeof(float));
    float *y = malloc((size_t)n * ldy * sizeof(float));
    assert_non_null(packed);
    assert_non_null(y);
    for (size_t i = 0; i < (size_t)n * ldy; i++)
        y[i] = SENTINEL;
    rssm_gemm_pack(packed, w, b, out, in);
    rssm_gemm(n, x1, ldx1, k1, x2, k2, k2, packed, out, act, y, ldy);
    for (int i = 0; i < n; i++) {
        const float *r1 = x1 + (size_t)i * ldx1;
        for (int o = 0; o < out; o++) {
            double v = b[o];
            for (int k = 0; k < k1; k++)
                v += (double)r1[k] * w[(size_t)o * in + k];
            for (int k = 0; k < k2; k++)
                v += (double)x2[(size_t)i * k2 + k] * w[(size_t)o * in + k1 + k];
            double want = activate(v, act), got = y[(size_t)i * ldy + o];
            if (fabs(got - want) > 1e-4 * (1 + fabs(want)))
                fail_msg("n=%d out=%d k1=%d k2=%d ldx1=%d act=%d: y[%d][%d] = %.7g, want %.7g",
                         n, out, k1, k2, ldx1, act, i, o, got, want);
        }
        for (int o = out; o < ldy; o++)
            if (y[(size_t)i * ldy + o] != SENTINEL)
                fail_msg("n=%d out=%d: y[%d][%d] past the output was overwritten", n, out, i,
                         o);
    }
    free(x1), free(x2), free(w), free(b), free(packed), free(y);
}

static void test_shapes(void **state)
{
    (void)state;
    if (!rssm_gemm_enabled())
        skip();
    uint64_t seed = 1;
    const int rows[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 50, 97, 200};
    const int outs[] = {1, 7, 8, 15, 16, 17, 33, 60};
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
        for (size_t o = 0; o < sizeof outs / sizeof *outs; o++)
            check_case(rows[r], outs[o], 9, 0, 9, RSSM_GEMM_LINEAR, &seed);
}

static void test_two_inputs_and_activations(void **state)
{
    (void)state;
    if (!rssm_gemm_enabled())
        skip();
    uint64_t seed = 2;
    const rssm_gemm_act_t acts[] = {RSSM_GEMM_LINEAR, RSSM_GEMM_RELU, RSSM_GEMM_ELU};
    for (int a = 0; a < 3; a++) {
        check_case(50, 200, 30, 1, 30, acts[a], &seed);
        check_case(13, 64, 64, 16, 64, acts[a], &seed);
        check_case(6, 40, 1, 3, 1, acts[a], &seed);
        /* partial panels: the activation runs before the masked stores (W 16 and 8) */
        check_case(13, 17, 9, 2, 9, acts[a], &seed);
        check_case(7, 15, 5, 0, 5, acts[a], &seed);
        check_case(12, 7, 5, 0, 5, acts[a], &seed);
    }
}

/* ldx1 = 0: every row reads the same x1 (the planner's shared first state). */
static void test_repeated_first_input(void **state)
{
    (void)state;
    if (!rssm_gemm_enabled())
        skip();
    uint64_t seed = 3;
    check_case(50, 200, 30, 1, 0, RSSM_GEMM_ELU, &seed);
    check_case(7, 17, 5, 0, 0, RSSM_GEMM_RELU, &seed);
}

/* Packing pads a partial panel with zero weights and bias, so the padded lanes add
 * nothing and read nothing past w and b. */
static void test_pack_layout(void **state)
{
    (void)state;
    const int out = 18, in = 3;
    float w[18 * 3], b[18];
    for (int i = 0; i < out * in; i++)
        w[i] = (float)(i + 1);
    for (int i = 0; i < out; i++)
        b[i] = (float)(-i - 1);
    size_t size = rssm_gemm_packed_size(out, in);
    assert_int_equal(size, 2 * 16 * (in + 1));
    float *p = aligned_alloc(64, size * sizeof(float));
    assert_non_null(p);
    rssm_gemm_pack(p, w, b, out, in);
    assert_true(p[0] == w[0] && p[1] == w[in] && p[16] == w[1]); /* [panel][k][col] */
    assert_true(p[16 * in + 0] == w[16 * in] && p[16 * in + 1] == w[17 * in]);
    assert_true(p[16 * in + 2] == 0.0f && p[2 * 16 * in - 1] == 0.0f);
    assert_true(p[2 * 16 * in] == b[0] && p[2 * 16 * in + 17] == b[17]);
    assert_true(p[2 * 16 * in + 18] == 0.0f && p[size - 1] == 0.0f);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_two_inputs_and_activations),
        cmocka_unit_test(test_repeated_first_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
