/*
 * rssm_naive.h: slow, obviously-correct RSSM forward pass (plain loops, double
 * accumulation, explicit concatenation) that the BLAS path in model/rssm_math.c is tested
 * against. Test code only.
 */
#ifndef MPC_RSSM_NAIVE_H
#define MPC_RSSM_NAIVE_H

#include <stdint.h>

#include "rssm_private.h"

void naive_observe(const rssm_model_t *m, const float *h, const float *z, const float *a,
                   const float *obs, float *h_next, float *prior_mean, float *prior_std,
                   float *post_mean, float *post_std);
/* Image models: the same step from an image [H * W * C] uint8 (HWC), and the encoder alone
 * (direct convolution on PyTorch's layouts, straight from the file's tensors). */
void naive_observe_image(const rssm_model_t *m, const float *h, const float *z, const float *a,
                         const uint8_t *image, float *h_next, float *prior_mean,
                         float *prior_std, float *post_mean, float *post_std);
void naive_encode_image(const rssm_model_t *m, const uint8_t *image, float *embed);
/* One row each (call per row for batches). */
void naive_imagine(const rssm_model_t *m, const float *h, const float *z, const float *a,
                   float *h_next, float *prior_mean, float *prior_std);
float naive_reward(const rssm_model_t *m, const float *h, const float *z);
float naive_value(const rssm_model_t *m, const float *h, const float *z);
void naive_decode(const rssm_model_t *m, const float *h, const float *z, float *obs);

#endif
