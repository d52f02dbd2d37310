/*
 * cem_rng.c: counter-based normals for the planner (see cem_rng.h).
 *
 * Hash: two rounds of the "lowbias32" integer mixer (Wellons' hash-prospector) keyed by the
 * stream key; a third round gives the second uniform. Box-Muller needs ln and sin/cos:
 * ln comes from librssm's vectorisable log_approx, sin/cos from short Taylor polynomials on
 * [-pi/2, pi/2) followed by the double-angle formulas (error below 1e-6). The pairs are
 * produced 64 at a time into a stack buffer so the hot loop is branch-free.
 */
#include "cem_rng.h"

#include <math.h>
#include <string.h>

#include "rssm_approx.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CEM_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CEM_SIMD_CLONES
#endif

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t cem_rng_key(uint64_t seed, uint64_t iteration, uint64_t kind, uint64_t step)
{
    uint64_t k = splitmix64(seed);
    k = splitmix64(k ^ iteration);
    k = splitmix64(k ^ (kind << 56));
    return splitmix64(k ^ step);
}

static inline uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

#define PAIRS 64

/* out[2i], out[2i+1] = the two normals of pair p0 + i, for i in [0, PAIRS). */
CEM_SIMD_CLONES
static void pairs(float *restrict out, uint32_t p0, uint32_t k0, uint32_t k1, uint32_t k2)
{
    const float pi = 3.14159265358979f;
    for (int i = 0; i < PAIRS; i++) {
        uint32_t h1 = mix32(mix32((p0 + (uint32_t)i) ^ k0) + k1);
        uint32_t h2 = mix32(h1 ^ k2);
        float u1 = (float)((h1 >> 8) + 1u) * (1.0f / 16777216.0f); /* (0, 1] */
        float u2 = (float)(h2 >> 8) * (1.0f / 16777216.0f);        /* [0, 1) */
        float r = sqrtf(-2.0f * log_approx(u1));
        /* angle 2 pi u2 = 2y + pi with y in [-pi/2, pi/2) */
        float y = pi * (u2 - 0.5f), y2 = y * y;
        float s =
            y * (1.0f + y2 * (-1.0f / 6 +
                              y2 * (1.0f / 120 +
                                    y2 * (-1.0f / 5040 +
                                          y2 * (1.0f / 362880 + y2 * (-1.0f / 39916800))))));
        float c =
            1.0f +
            y2 * (-0.5f + y2 * (1.0f / 24 +
                                y2 * (-1.0f / 720 +
                                      y2 * (1.0f / 40320 + y2 * (-1.0f / 3628800 +
                                                                 y2 * (1.0f / 479001600))))));
        out[2 * i] = -r * (1.0f - 2.0f * s * s);
        out[2 * i + 1] = -r * (2.0f * s * c);
    }
}

void cem_rng_normals(float *out, int64_t n, uint64_t key, uint64_t first)
{
    const uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    const uint32_t k2 = mix32(k0 ^ 0x5bd1e995u) + k1;
    float buf[2 * PAIRS];
    while (n > 0) {
        uint64_t p0 = first / 2;
        int skip = (int)(first % 2);
        pairs(buf, (uint32_t)p0, k0, k1, k2);
        int64_t take = 2 * PAIRS - skip;
        if (take > n)
            take = n;
        memcpy(out, buf + skip, sizeof(float) * (size_t)take);
        out += take;
        n -= take;
        first += (uint64_t)take;
    }
}
