/*
 * random_model.h: an in-memory random mpc-rssm model for mpc-plan-bench (no Python needed).
 *
 * The tensors follow model/FORMAT.md with PyTorch's default initialisation scale
 * (uniform in +-1/sqrt(fan_in), seeded); the container is built in memory, loaded through
 * rssm_load_buffer (so it passes the same validation as a file) and can be written out.
 */
#ifndef MPC_RANDOM_MODEL_H
#define MPC_RANDOM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "rssm.h"

typedef struct random_model_spec {
    int obs, action, deter, stoch, hidden, embed;
    int has_value;
    uint64_t seed;
} random_model_spec_t;

/* Builds, validates and loads the model; writes the file too when path is not NULL.
 * Returns 0 or a negative rssm_err_t with err filled. */
int random_model_create(const random_model_spec_t *spec, const char *path, rssm_model_t **out,
                        char *err, size_t errlen);

#endif
