/*
 * rssm_naive.h: slow, obviously-correct RSSM forward pass (plain loops, double
 * accumulation, explicit concatenation) that the BLAS path in model/rssm_math.c is tested
 * against. Test code only.
 */
#ifndef MPC_RSSM_NAIVE_H
#define MPC_RSSM_NAIVE_H

#include "rssm_private.h"

void naive_observe(const rssm_model_t *m, const float *h, const float *z, const float *a,
                   const float *obs, float *h_next, float *prior_mean, float *prior_std,
                   float *post_mean, float *post_std);
/* One row each (call per row for batches). */
void naive_imagine(const rssm_model_t *m, const float *h, const float *z, const float *a,
                   float *h_next, float *prior_mean, float *prior_std);
float naive_reward(const rssm_model_t *m, const float *h, const float *z);
float naive_value(const rssm_model_t *m, const float *h, const float *z);
void naive_decode(const rssm_model_t *m, const float *h, const float *z, float *obs);

#endif
