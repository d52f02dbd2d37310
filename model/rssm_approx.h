/*
 * rssm_approx.h: exp, log, sigmoid, tanh and softplus for librssm's elementwise loops.
 *
 * Plain C with no libm calls and no branches the compiler cannot if-convert, so loops that
 * call these vectorise (librssm is built with -O3 -fno-trapping-math). Accuracy is far
 * inside the 1e-4 parity budget with PyTorch: tests/model/test_rssm_math.c sweeps them
 * against double-precision libm.
 */
#ifndef MPC_RSSM_APPROX_H
#define MPC_RSSM_APPROX_H

#include <stdint.h>
#include <string.h>

/* e^x = 2^k e^r with x = k ln2 + r, |r| <= ln2 / 2 (adding 1.5 * 2^23 rounds to the integer
 * k without a branch; ln2 in two parts so r is nearly exact). e^r = 1 + r + r^2 (C2 + C3 r +
 * (C4 + C5 r) r^2), a degree-5 fit to e^r on that interval (fit error 1.1e-7, about 2e-7
 * relative in float), evaluated in pairs so its dependency chain is three multiply-adds
 * long, not six.
 * x is clamped to [-87, 88] so 2^k stays a normal float. */
#define RSSM_EXP_SHIFT  12582912.0f /* 1.5 * 2^23, bits 0x4B400000 */
#define RSSM_EXP_MIN    (-87.0f)
#define RSSM_EXP_MAX    88.0f
#define RSSM_EXP_LOG2E  1.44269504088896341f
#define RSSM_EXP_LN2_HI 0.693359375f
#define RSSM_EXP_LN2_LO (-2.12194440e-4f)
#define RSSM_EXP_C2     0.499992311f
#define RSSM_EXP_C3     0.166671142f
#define RSSM_EXP_C4     0.0418901145f
#define RSSM_EXP_C5     0.00831252523f

static inline float exp_approx(float x)
{
    x = x < RSSM_EXP_MIN ? RSSM_EXP_MIN : x;
    x = x > RSSM_EXP_MAX ? RSSM_EXP_MAX : x;
    float kf = x * RSSM_EXP_LOG2E + RSSM_EXP_SHIFT;
    uint32_t k; /* unsigned: a NaN input (from inf - inf upstream) must not be UB here */
    memcpy(&k, &kf, sizeof k);
    k -= 0x4B400000u;
    kf -= RSSM_EXP_SHIFT;
    float r = x - kf * RSSM_EXP_LN2_HI - kf * RSSM_EXP_LN2_LO;
    float r2 = r * r;
    float p = (RSSM_EXP_C2 + RSSM_EXP_C3 * r) + (RSSM_EXP_C4 + RSSM_EXP_C5 * r) * r2;
    p = p * r2 + (r + 1.0f);
    uint32_t bits = (k + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid_approx(float x)
{
    return 1.0f / (1.0f + exp_approx(-x));
}

/* tanh(x) = 1 - 2 / (1 + e^2x): absolute error ~1e-7 (relative error grows near 0, which
 * the 1e-4 absolute parity budget does not care about). */
static inline float tanh_approx(float x)
{
    return 1.0f - 2.0f / (1.0f + exp_approx(2.0f * x));
}

/* ln(v) for finite v >= 2^-126 (Cephes logf): v = 2^e * m with m in [sqrt(1/2), sqrt(2)),
 * then a polynomial in m - 1. Relative error about 1e-7. */
static inline float log_approx(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    float e = (float)(int32_t)((bits >> 23) & 0xffu) - 127.0f;
    bits = (bits & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    float m;
    memcpy(&m, &bits, sizeof m);
    float big = m > 1.41421356f ? 1.0f : 0.0f; /* halve m, bump e: m in [0.707, 1.414) */
    m = m * (1.0f - 0.5f * big);
    e += big;
    float x = m - 1.0f, z = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = y * x * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return x + y + 0.693359375f * e;
}

/* softplus(x) = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): never overflows, and equals
 * torch's softplus (which returns x above 20) to float precision. */
static inline float softplus_approx(float x)
{
    float ax = x < 0.0f ? -x : x;
    float pos = x > 0.0f ? x : 0.0f;
    return pos + log_approx(1.0f + exp_approx(-ax));
}

#endif
