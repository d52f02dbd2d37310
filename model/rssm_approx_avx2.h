/*
 * rssm_approx_avx2.h: rssm_approx.h's exp, ELU, sigmoid and tanh on eight floats at once, for
 * librssm's AVX2 + FMA code (rssm_gemm.c's ELU, rssm_gates.c). The same constants and steps
 * as the scalar functions, so both agree to float rounding (the FMAs round once where the
 * scalar code may round twice); tests/model/test_rssm_gates.c checks them lane by lane.
 * Include only from x86-64 code built by GCC or clang.
 */
#ifndef MPC_RSSM_APPROX_AVX2_H
#define MPC_RSSM_APPROX_AVX2_H

#include <immintrin.h>

#include "rssm_approx.h"

#define RSSM_AVX2_TARGET __attribute__((target("avx2,fma")))
#define RSSM_AVX2_INLINE static inline __attribute__((always_inline)) RSSM_AVX2_TARGET

RSSM_AVX2_INLINE __m256 exp_approx8(__m256 x)
{
    const __m256 shift = _mm256_set1_ps(RSSM_EXP_SHIFT);
    /* the bound first: vmaxps/vminps return their second operand for a NaN, which keeps a
     * NaN a NaN, as the scalar clamp does */
    x = _mm256_max_ps(_mm256_set1_ps(RSSM_EXP_MIN), x);
    x = _mm256_min_ps(_mm256_set1_ps(RSSM_EXP_MAX), x);
    __m256 kf = _mm256_fmadd_ps(x, _mm256_set1_ps(RSSM_EXP_LOG2E), shift);
    /* kf's bits are 0x4B400000 + k: shifted left by 23 only k is left, in the exponent */
    __m256i k = _mm256_slli_epi32(_mm256_castps_si256(kf), 23);
    kf = _mm256_sub_ps(kf, shift);
    __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(RSSM_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(RSSM_EXP_LN2_LO), r);
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 lo = _mm256_fmadd_ps(_mm256_set1_ps(RSSM_EXP_C3), r, _mm256_set1_ps(RSSM_EXP_C2));
    __m256 hi = _mm256_fmadd_ps(_mm256_set1_ps(RSSM_EXP_C5), r, _mm256_set1_ps(RSSM_EXP_C4));
    __m256 p = _mm256_fmadd_ps(hi, r2, lo);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i scale = _mm256_add_epi32(k, _mm256_set1_epi32(127 << 23));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

/* x > 0 ? x : e^x - 1 */
RSSM_AVX2_INLINE __m256 elu_approx8(__m256 x)
{
    __m256 neg = _mm256_sub_ps(exp_approx8(x), _mm256_set1_ps(1.0f));
    return _mm256_blendv_ps(neg, x, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
}

RSSM_AVX2_INLINE __m256 sigmoid_approx8(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp_approx8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

RSSM_AVX2_INLINE __m256 tanh_approx8(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp_approx8(_mm256_add_ps(x, x));
    return _mm256_fnmadd_ps(_mm256_set1_ps(2.0f), _mm256_div_ps(one, _mm256_add_ps(one, e)),
                            one);
}

#endif
