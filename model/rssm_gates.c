/*
 * rssm_gates.c: the GRU cell's gates in plain C and in AVX2 + FMA (see rssm_gates.h).
 *
 * Both forms take a row in two passes: first r and u for all 2D gate inputs (stored over
 * gi's first two thirds, which are scratch), then the candidate c and h_next. One pass per
 * element would chain sigmoid -> r * gh_n -> tanh, and the CPU could not keep enough of
 * those long chains in flight to fill its vector units.
 */
#include "rssm_gates.h"

#include <stddef.h>

#include "rssm_approx.h"
#include "rssm_private.h"

/* gi/gh row layout: r at [0, D), z at [D, 2D), n at [2D, 3D). */

static inline void sigmoids_from(int j, int end, float *restrict xi, const float *restrict hh)
{
    for (; j < end; j++)
        xi[j] = sigmoid_approx(xi[j] + hh[j]);
}

static inline void outputs_from(int j, int D, const float *restrict xi,
                                const float *restrict hh, const float *restrict hp,
                                float *restrict out)
{
    for (; j < D; j++) {
        float c = tanh_approx(xi[2 * D + j] + xi[j] * hh[2 * D + j]);
        out[j] = c + xi[D + j] * (hp[j] - c);
    }
}

RSSM_SIMD_CLONES
static void row_c(int D, float *restrict xi, const float *restrict hh, const float *restrict hp,
                  float *restrict out)
{
    sigmoids_from(0, 2 * D, xi, hh);
    outputs_from(0, D, xi, hh, hp, out);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include "rssm_approx_avx2.h"

RSSM_AVX2_TARGET
static void row_avx2(int D, float *restrict xi, const float *restrict hh,
                     const float *restrict hp, float *restrict out)
{
    int j = 0;
    for (; j + 8 <= 2 * D; j += 8) {
        __m256 x = _mm256_add_ps(_mm256_loadu_ps(xi + j), _mm256_loadu_ps(hh + j));
        _mm256_storeu_ps(xi + j, sigmoid_approx8(x));
    }
    sigmoids_from(j, 2 * D, xi, hh);
    for (j = 0; j + 8 <= D; j += 8) {
        __m256 r = _mm256_loadu_ps(xi + j), u = _mm256_loadu_ps(xi + D + j);
        __m256 x = _mm256_fmadd_ps(r, _mm256_loadu_ps(hh + 2 * D + j),
                                   _mm256_loadu_ps(xi + 2 * D + j));
        __m256 c = tanh_approx8(x);
        __m256 hn = _mm256_fmadd_ps(u, _mm256_sub_ps(_mm256_loadu_ps(hp + j), c), c);
        _mm256_storeu_ps(out + j, hn);
    }
    outputs_from(j, D, xi, hh, hp, out);
}
#endif

void rssm_gru_gates(int n, int D, float *gi, const float *gh, const float *h, int ldh,
                    float *h_next, bool avx2)
{
    for (int i = 0; i < n; i++) {
        float *xi = gi + (size_t)i * 3 * D, *out = h_next + (size_t)i * D;
        const float *hh = gh + (size_t)i * ldh * 3 * D, *hp = h + (size_t)i * ldh * D;
#if defined(__x86_64__) && defined(__GNUC__)
        if (avx2) {
            row_avx2(D, xi, hh, hp, out);
            continue;
        }
#endif
        row_c(D, xi, hh, hp, out);
    }
    (void)avx2;
}
