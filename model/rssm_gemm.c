/*
 * rssm_gemm.c: the packed-weight layer kernel (see rssm_gemm.h).
 *
 * Loop order, outermost first: chunks of up to CHUNK_ROWS rows (their inputs stay in L2),
 * panels of 16 outputs (one panel, 16 x 200-400 floats for PlaNet sizes, stays in L1 while
 * every row block of the chunk passes over it), row blocks of 4-6 rows (the register tile:
 * 12 accumulators cover the 4-5-cycle FMA latency on both FMA ports; a last panel of at most 8
 * outputs uses 8-12 rows x 8 instead). A chunk is cut into nearly equal blocks, so 50 rows
 * run as 5 x 6 + 4 x 5 and never as 8 x 6 + 2.
 */
#include "rssm_gemm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
#include "rssm_approx_avx2.h"

#define KERNEL_TARGET RSSM_AVX2_TARGET
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Asked when a model is loaded (not cached: a test or a bench may change the environment
 * between loads). __builtin_cpu_supports reads what libgcc's constructor found. */
bool rssm_gemm_enabled(void)
{
    const char *env = getenv("MPC_RSSM_GEMM");
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           !(env && strcmp(env, "blas") == 0);
}

/* Lane masks for a partial panel of nc < 16 columns: lane j of half h is on iff
 * 8h + j < nc, read at MASKS + 16 - nc + 8h. */
static const int32_t MASKS[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                  -1, -1, -1, -1, -1, 0,  0,  0,  0,  0,  0,
                                  0,  0,  0,  0,  0,  0,  0,  0,  0,  0};

/* The accumulators are named variables, not an array: GCC keeps an array of __m256 in
 * memory and stores it on every k step. W (16 or 8 columns) and MR are constants after
 * inlining, so the second half and the rows past MR compile away. A tile has 12
 * accumulators either way: 6 rows x 16 or 12 rows x 8 (a panel's last 8 columns, where a
 * 16-wide tile would compute 8 zero columns). FOR_ROWS(X) expands X(0) ... X(11). */
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECLARE(r)  __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
#define ROW_PTR(r)  const float *x##r = x + (size_t)(r < MR ? r : 0) * ldx;
#define ROW_FMA(r)                                                                             \
    if (r < MR) {                                                                              \
        __m256 a = _mm256_broadcast_ss(x##r + k);                                              \
        c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                                             \
        if (W == 16)                                                                           \
            c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);                                         \
    }
#define ROW_STORE(r)                                                                           \
    if (r < MR)                                                                                \
        store_row(W, c##r##0, c##r##1, bias0, bias1, act, nc, y + (size_t)(r)*ldy);

/* c += x[r][0:k] . panel for every row r of the tile; leaves b after the k steps. */
#define ACCUMULATE(x, ldx, kn)                                                                 \
    do {                                                                                       \
        FOR_ROWS(ROW_PTR)                                                                      \
        for (int k = 0; k < (kn); k++, b += PANEL) {                                           \
            __m256 b0 = _mm256_load_ps(b), b1 = W == 16 ? _mm256_load_ps(b + 8) : b0;          \
            FOR_ROWS(ROW_FMA)                                                                  \
        }                                                                                      \
    } while (0)

/* One output row of a tile: bias and activation in registers, a masked store for a
 * partial panel. */
static ALWAYS_INLINE KERNEL_TARGET void store_row(int W, __m256 v0, __m256 v1, __m256 bias0,
                                                  __m256 bias1, rssm_gemm_act_t act, int nc,
                                                  float *row)
{
    v0 = _mm256_add_ps(v0, bias0);
    v1 = _mm256_add_ps(v1, bias1);
    if (act == RSSM_GEMM_RELU) {
        v0 = _mm256_max_ps(v0, _mm256_setzero_ps());
        v1 = _mm256_max_ps(v1, _mm256_setzero_ps());
    } else if (act == RSSM_GEMM_ELU) {
        v0 = elu_approx8(v0);
        if (W == 16)
            v1 = elu_approx8(v1);
    }
    if (nc == W) {
        _mm256_storeu_ps(row, v0);
        if (W == 16)
            _mm256_storeu_ps(row + 8, v1);
    } else {
        _mm256_maskstore_ps(row, _mm256_loadu_si256((const __m256i *)(MASKS + 16 - nc)), v0);
        if (W == 16)
            _mm256_maskstore_ps(row + 8, _mm256_loadu_si256((const __m256i *)(MASKS + 24 - nc)),
                                v1);
    }
}

/* One MR x W tile of y (nc <= W columns of it are stored). */
static ALWAYS_INLINE KERNEL_TARGET void tile(int W, int MR, int nc, const float *x1, int ldx1,
                                             int k1, const float *x2, int ldx2, int k2,
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

#define TILE_CASE(W, MR)                                                                       \
    case MR:                                                                                   \
        tile(W, MR, nc, x1, ldx1, k1, x2, ldx2, k2, panel, bias, act, y, ldy);                 \
        break

/* mr rows (at most rows_per_tile(nc)) of one panel. */
static ALWAYS_INLINE KERNEL_TARGET void tile_rows(int mr, int nc, const float *x1, int ldx1,
                                                  int k1, const float *x2, int ldx2, int k2,
                                                  const float *panel, const float *bias,
                                                  rssm_gemm_act_t act, float *y, int ldy)
{
    if (nc > 8)
        switch (mr) {
            TILE_CASE(16, 1);
            TILE_CASE(16, 2);
            TILE_CASE(16, 3);
            TILE_CASE(16, 4);
            TILE_CASE(16, 5);
            TILE_CASE(16, 6);
        }
    else
        switch (mr) {
            TILE_CASE(8, 1);
            TILE_CASE(8, 2);
            TILE_CASE(8, 3);
            TILE_CASE(8, 4);
            TILE_CASE(8, 5);
            TILE_CASE(8, 6);
            TILE_CASE(8, 7);
            TILE_CASE(8, 8);
            TILE_CASE(8, 9);
            TILE_CASE(8, 10);
            TILE_CASE(8, 11);
            TILE_CASE(8, 12);
        }
}

static int rows_per_tile(int nc)
{
    return nc > 8 ? TILE_ROWS : 2 * TILE_ROWS;
}

/* Rows [r0, r0 + rows) of one panel, cut into nearly equal tiles (one call per panel, not
 * per tile: the call's dozen arguments cost 1 % of a plan). */
KERNEL_TARGET
static void panel_rows(int r0, int rows, int nc, const float *x1, int ldx1, int k1,
                       const float *x2, int ldx2, int k2, const float *panel, const float *bias,
                       rssm_gemm_act_t act, float *y, int ldy)
{
    int per = rows_per_tile(nc);
    int tiles = (rows + per - 1) / per;
    int base = rows / tiles, extra = rows % tiles;
    for (int t = 0; t < tiles; t++) {
        int mr = base + (t < extra);
        tile_rows(mr, nc, x1 + (size_t)r0 * ldx1, ldx1, k1, x2 ? x2 + (size_t)r0 * ldx2 : NULL,
                  ldx2, k2, panel, bias, act, y + (size_t)r0 * ldy, ldy);
        r0 += mr;
    }
}

void rssm_gemm(int n, const float *x1, int ldx1, int k1, const float *x2, int ldx2, int k2,
               const float *packed, int out, rssm_gemm_act_t act, float *y, int ldy)
{
    const int in = k1 + k2, panels = (out + PANEL - 1) / PANEL;
    const float *bias = packed + (size_t)panels * PANEL * in;
    for (int c0 = 0; c0 < n; c0 += CHUNK_ROWS) {
        int rows = n - c0 < CHUNK_ROWS ? n - c0 : CHUNK_ROWS;
        for (int p = 0; p < panels; p++) {
            int nc = out - p * PANEL < PANEL ? out - p * PANEL : PANEL;
            panel_rows(c0, rows, nc, x1, ldx1, k1, x2, ldx2, k2,
                       packed + (size_t)p * PANEL * in, bias + p * PANEL, act, y + p * PANEL,
                       ldy);
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
