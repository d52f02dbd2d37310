/*
 * cem_rng.h: the planner's counter-based normal generator (private to libplanner).
 *
 * Normal number q of a stream is a pure function of (key, q): a 32-bit integer hash of the
 * pair counter q / 2 gives two uniforms, Box-Muller turns them into two normals (component
 * q % 2). Because nothing is carried from one number to the next, any range of a stream
 * can be produced by any thread in any order and the plan stays reproducible for a seed;
 * the inner loop has no branches and no libm calls, so it vectorises (AVX2 clone).
 */
#ifndef MPC_CEM_RNG_H
#define MPC_CEM_RNG_H

#include <stdint.h>

/* Stream kinds, mixed into the key so action and latent noise never share numbers. */
enum { CEM_RNG_ACTION = 1, CEM_RNG_LATENT = 2 };

/* 64-bit key of the stream (seed, iteration, kind, step): splitmix64 of each part. */
uint64_t cem_rng_key(uint64_t seed, uint64_t iteration, uint64_t kind, uint64_t step);

/* out[i] = normal number first + i of stream key, for i in [0, n). */
void cem_rng_normals(float *out, int64_t n, uint64_t key, uint64_t first);

#endif
