/*
 * rssm_conv.h: librssm internals for the image encoder of obs_type "image" models
 * (rssm_conv.c): sizes for the loader, preparation at load time, the encoder itself.
 */
#ifndef MPC_RSSM_CONV_H
#define MPC_RSSM_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "rssm_private.h"

/* Side of the encoder's output for an input side n (after all RSSM_CONV_LAYERS
 * convolutions); 0 when n is below rssm__conv_min_side(). */
int rssm__conv_size(int n);
int rssm__conv_min_side(void);

/* Prepares m->image from the loaded and validated tensors: layer geometry, weights
 * reordered for im2col (packed where m runs on the packed kernel), and info.obs_mean /
 * obs_std (127.5 and 255: the fixed normalisation). Nothing for vector models. Returns 0
 * or RSSM_ENOMEM with a message. */
int rssm__image_prepare(rssm_model_t *m, char *err, size_t errlen);

/* Floats of scratch rssm__image_encode needs. */
size_t rssm__image_workspace(const rssm_model_t *m);

/* embed [E] = act(W_out flatten(conv(image / 255 - 0.5)) + b) for image [H * W * C] uint8
 * (HWC, top row first); ws: rssm__image_workspace(m) floats. Allocates nothing. */
void rssm__image_encode(const rssm_model_t *m, const uint8_t *image, float *embed, float *ws);

#endif
