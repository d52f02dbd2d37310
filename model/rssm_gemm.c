/*
 * rssm_gemm.c: the packed-weight layer kernel (see rssm_gemm.h).
 *
 * Loop order, outermost first: chunks of up to CHUNK_ROWS rows (their inputs stay in L2),
 * panels of 16 outputs (one panel, at most 16 x 400 floats, stays in L1 while every row
 * block of the chunk passes over it), row blocks of 4-6 rows (the register tile: 12
 * accumulators cover the 5-cycle FMA latency on both FMA ports). A chunk is cut into
 * nearly equal blocks, so 50 rows run as 5 x 6 + 4 x 5 and never as 8 x 6 + 2.
 */
#include "rssm_gemm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rssm_approx.h"

#define PANEL      16
#define TILE_ROWS  6
#define CHUNK_ROWS 96

size_t rssm_gemm_packed_size(int out, int in)
{
    size_t panels = ((size_t)out + PANEL - 1) / PANEL;
    return panels * PANEL * ((size_t)in + 1);
}

/* Layout: panel p holds W[p*16 + c][k] at [p][k][c] for k < in, then the bias panel of
 * every output after all weight panels; outputs past `out` are zero. */
void rssm_gemm_pack(float *dst, const float *w, const float *b, int out, int in)
{
    int panels = (out + PANEL - 1) / PANEL;
    float *bias = dst + (size_t)panels * PANEL * in;
    for (int p = 0; p < panels; p++) {
        float *panel = dst + (size_t)p * PANEL * in;
        for (int k = 0; k < in; k++)
            for (int c = 0; c < PANEL; c++) {
                int row = p * PANEL + c;
                panel[(size_t)k * PANEL + c] = row < out ? w[(size_t)row * in + k] : 0.0f;
            }
    }
    for (int c = 0; c < panels * PANEL; c++)
        bias[c] = c < out ? b[c] : 0.0f;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define KERNEL_TARGET __attribute__((target("avx2,fma")))
#define ALWAYS_INLINE inline __attribute__((always_inline))

bool rssm_gemm_enabled(void)
{
    static int enabled = -1; /* racy first use is harmless: every thread computes the same */
    if (enabled < 0) {
        const char *env = getenv("MPC_RSSM_GEMM");
        __builtin_cpu_init();
        enabled = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                  !(env && strcmp(env, "blas") == 0);
    }
    return enabled;
}

/* Lane masks for a partial panel of nc < 16 columns: lane j of half h is on iff
 * 8h + j < nc, read at MASKS + 16 - nc + 8h. */
static const int32_t MASKS[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                  -1, -1, -1, -1, -1, 0,  0,  0,  0,  0,  0,
                                  0,  0,  0,  0,  0,  0,  0,  0,  0,  0};

/* The accumulators are named variables, not an array: GCC keeps an array of __m256 in
 * memory and stores it on every k step. MR is a constant after inlining, so the rows past
 * it compile away. FOR_ROWS(X) expands X(0) ... X(5). */
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECLARE(r)  __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
#define ROW_PTR(r)  const float *x##r = x + (size_t)(r < MR ? r : 0) * ldx;
#define ROW_FMA(r)                                                                             \
    if (r < MR) {                                                                              \
        __m256 a = _mm256_broadcast_ss(x##r + k);                                              \
        c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                                             \
        c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);                                             \
    }
#define ROW_STORE(r)                                                                           \
    if (r < MR)                                                                                \
        store_row(c##r##0, c##r##1, bias0, bias1, act, nc, y + (size_t)(r)*ldy);

/* c += x[r][0:k] . panel for every row r of the tile; returns the panel after k steps. */
#define ACCUMULATE(x, ldx, kn)                                                                 \
    do {                                                                                       \
        FOR_ROWS(ROW_PTR)                                                                      \
        for (int k = 0; k < (kn); k++, b += PANEL) {                                           \
            __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);                         \
            FOR_ROWS(ROW_FMA)                                                                  \
        }                                                                                      \
    } while (0)

/* One output row of a tile: bias, ReLU in registers, a masked store for a partial panel,
 * ELU on the stored row (still in L1). */
static ALWAYS_INLINE KERNEL_TARGET void store_row(__m256 v0, __m256 v1, __m256 bias0,
                                                  __m256 bias1, rssm_gemm_act_t act, int nc,
                                                  float *row)
{
    v0 = _mm256_add_ps(v0, bias0);
    v1 = _mm256_add_ps(v1, bias1);
    if (act == RSSM_GEMM_RELU) {
        v0 = _mm256_max_ps(v0, _mm256_setzero_ps());
        v1 = _mm256_max_ps(v1, _mm256_setzero_ps());
    }
    if (nc == PANEL) {
        _mm256_storeu_ps(row, v0);
        _mm256_storeu_ps(row + 8, v1);
    } else {
        _mm256_maskstore_ps(row, _mm256_loadu_si256((const __m256i *)(MASKS + 16 - nc)), v0);
        _mm256_maskstore_ps(row + 8, _mm256_loadu_si256((const __m256i *)(MASKS + 24 - nc)),
                            v1);
    }
    if (act == RSSM_GEMM_ELU)
        for (int c = 0; c < nc; c++)
            row[c] = row[c] > 0.0f ? row[c] : exp_approx(row[c]) - 1.0f;
}

/* One MR x 16 tile of y. */
static ALWAYS_INLINE KERNEL_TARGET void tile(int MR, int nc, const float *x1, int ldx1, int k1,
                                             const float *x2, int ldx2, int k2,
                                             const float *panel, const float *bias,
                                             rssm_gemm_act_t act, float *y, int ldy)
{
    FOR_ROWS(DECLARE)
    const float *b = panel;
    {
        const float *x = x1;
        int ldx = ldx1;
        ACCUMULATE(x, ldx, k1);
    }
    if (k2 > 0) {
        const float *x = x2;
        int ldx = ldx2;
        ACCUMULATE(x, ldx, k2);
    }
    __m256 bias0 = _mm256_load_ps(bias), bias1 = _mm256_load_ps(bias + 8);
    FOR_ROWS(ROW_STORE)
}

#define TILE_CASE(MR)                                                                          \
    case MR:                                                                                   \
        tile(MR, nc, x1, ldx1, k1, x2, ldx2, k2, panel, bias, act, y, ldy);                    \
        break

KERNEL_TARGET
static void tile_rows(int mr, int nc, const float *x1, int ldx1, int k1, const float *x2,
                      int ldx2, int k2, const float *panel, const float *bias,
                      rssm_gemm_act_t act, float *y, int ldy)
{
    switch (mr) {
        TILE_CASE(1);
        TILE_CASE(2);
        TILE_CASE(3);
        TILE_CASE(4);
        TILE_CASE(5);
        TILE_CASE(6);
    }
}

void rssm_gemm(int n, const float *x1, int ldx1, int k1, const float *x2, int ldx2, int k2,
               const float *packed, int out, rssm_gemm_act_t act, float *y, int ldy)
{
    const int in = k1 + k2, panels = (out + PANEL - 1) / PANEL;
    const float *bias = packed + (size_t)panels * PANEL * in;
    for (int c0 = 0; c0 < n; c0 += CHUNK_ROWS) {
        int rows = n - c0 < CHUNK_ROWS ? n - c0 : CHUNK_ROWS;
        int blocks = (rows + TILE_ROWS - 1) / TILE_ROWS;
        int base = rows / blocks, extra = rows % blocks;
        for (int p = 0; p < panels; p++) {
            int nc = out - p * PANEL < PANEL ? out - p * PANEL : PANEL;
            const float *panel = packed + (size_t)p * PANEL * in;
            int r0 = c0;
            for (int blk = 0; blk < blocks; blk++) {
                int mr = base + (blk < extra);
                tile_rows(mr, nc, x1 + (size_t)r0 * ldx1, ldx1, k1,
                          x2 ? x2 + (size_t)r0 * ldx2 : NULL, ldx2, k2, panel, bias + p * PANEL,
                          act, y + (size_t)r0 * ldy + p * PANEL, ldy);
                r0 += mr;
            }
        }
    }
}

#else /* no x86-64 kernel: librssm uses OpenBLAS */

bool rssm_gemm_enabled(void)
{
    return false;
}

void rssm_gemm(int n, const float *x1, int ldx1, int k1, const float *x2, int ldx2, int k2,
               const float *packed, int out, rssm_gemm_act_t act, float *y, int ldy)
{
    (void)n, (void)x1, (void)ldx1, (void)k1, (void)x2, (void)ldx2, (void)k2;
    (void)packed, (void)out, (void)act, (void)y, (void)ldy;
    abort(); /* callers check rssm_gemm_enabled() first */
}

#endif
