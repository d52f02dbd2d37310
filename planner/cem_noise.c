/*
 * cem_noise.c: the colored-noise filter of iCEM (see cem_noise.h).
 *
 * Column c of the filter is one Fourier basis function: c = 0 the constant, then cos and
 * sin pairs of frequencies k = 1, 2, ... (k / H cycles per step, weighted sqrt(2) like the
 * two halves of a real DFT, so beta = 0 gives exactly white noise), and for even H the
 * Nyquist cosine. With unit-variance white inputs the variance of step t is the squared
 * norm of row t; it is the same for every t (cos^2 + sin^2 = 1, cos^2(pi t) = 1), and each
 * row is scaled to norm 1.
 */
#include "cem_noise.h"

#include <math.h>
#include <string.h>

void cem_noise_filter(float *filter, int H, float beta)
{
    const double two_pi = 6.283185307179586;
    /* amplitude of frequency k (k >= 1); the DC term borrows k = 1's */
    double a1 = pow(1.0 / H, -0.5 * beta);
    int col = 0;
    double amp[1000];
    int freq[1000], is_sin[1000];
    amp[col] = a1, freq[col] = 0, is_sin[col] = 0, col++;
    for (int k = 1; col < H; k++) {
        double a = pow((double)k / H, -0.5 * beta);
        if (2 * k == H) { /* Nyquist: a real term alone */
            amp[col] = a, freq[col] = k, is_sin[col] = 0, col++;
            break;
        }
        /* a cos/sin pair carries both halves of +k and -k: sqrt(2) makes beta = 0 white */
        amp[col] = a * sqrt(2.0), freq[col] = k, is_sin[col] = 0, col++;
        if (col < H)
            amp[col] = a * sqrt(2.0), freq[col] = k, is_sin[col] = 1, col++;
    }
    for (int t = 0; t < H; t++) {
        double row = 0.0;
        for (int c = 0; c < H; c++) {
            double ph = two_pi * freq[c] * t / H;
            double v = amp[c] * (is_sin[c] ? sin(ph) : cos(ph));
            filter[t * H + c] = (float)v;
            row += v * v;
        }
        double s = row > 0.0 ? 1.0 / sqrt(row) : 0.0;
        for (int c = 0; c < H; c++)
            filter[t * H + c] = (float)(filter[t * H + c] * s);
    }
}

void cem_noise_color(float *x, int64_t rows, int H, const float *filter)
{
    float tmp[1000];
    for (int64_t r = 0; r < rows; r++) {
        float *v = x + r * H;
        for (int t = 0; t < H; t++) {
            const float *f = filter + (size_t)t * H;
            float s = 0.0f;
            for (int c = 0; c < H; c++)
                s += f[c] * v[c];
            tmp[t] = s;
        }
        memcpy(v, tmp, sizeof(float) * (size_t)H);
    }
}
