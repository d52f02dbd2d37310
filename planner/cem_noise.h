/*
 * cem_noise.h: time-correlated ("colored") action noise for iCEM (private to libplanner).
 *
 * iCEM (Pinneri et al. 2020) samples action sequences whose power spectrum falls as
 * 1/f^beta, so consecutive actions are correlated (beta = 0: white noise). Here the
 * coloring is a fixed linear map of white noise, built once per horizon: each row of the
 * [H, H] filter is a real Fourier synthesis with amplitudes f^(-beta/2) (the DC term gets the
 * lowest frequency's amplitude, as the `colorednoise` package does), scaled so every time
 * step has unit variance.
 */
#ifndef MPC_CEM_NOISE_H
#define MPC_CEM_NOISE_H

#include <stdint.h>

/* Fills filter [H, H] (row t maps H white normals to the colored value at step t). */
void cem_noise_filter(float *filter, int H, float beta);

/* Colors `rows` sequences of H white normals in place: x[r, :] = filter x[r, :]. H <= 1000. */
void cem_noise_color(float *x, int64_t rows, int H, const float *filter);

#endif
