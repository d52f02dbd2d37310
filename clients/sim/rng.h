/*
 * rng.h: the simulator's seeded random numbers (xoshiro256** with splitmix64 seeding).
 *
 * Independent streams come from one seed and a stream number, so initial states do not
 * depend on how many random numbers the policy drew. Deterministic across platforms.
 */
#ifndef MPC_SIM_RNG_H
#define MPC_SIM_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} sim_rng_t;

void sim_rng_seed(sim_rng_t *r, uint64_t seed, uint64_t stream);
uint64_t sim_rng_next(sim_rng_t *r);
/* Uniform in [0, 1). */
double sim_rng_unit(sim_rng_t *r);
/* Uniform in [lo, hi). */
double sim_rng_uniform(sim_rng_t *r, double lo, double hi);
/* Standard normal (Box-Muller). */
double sim_rng_normal(sim_rng_t *r);

#endif
