/*
 * rssm_naive.c: the reference kernel for tests (see rssm_naive.h). Written straight from
 * the PyTorch module in model/train/mpc_rssm/rssm.py, one row at a time, no BLAS; the image
 * encoder as a direct convolution over NCHW like torch.nn.Conv2d.
 */
#include "rssm_naive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXV 8192 /* 2 * RSSM_MAX_DIM: the widest concatenated input */

static float act(const rssm_model_t *m, float x)
{
    if (m->info.activation == RSSM_ACT_ELU)
        return x > 0 ? x : (float)expm1(x);
    return x > 0 ? x : 0;
}

/* y = W x + b, optionally activated. */
static void dense(const rssm_model_t *m, const rssm_linear_t *l, int out, int in,
                  const float *x, float *y, int activate)
{
    for (int i = 0; i < out; i++) {
        double s = l->b[i];
        for (int j = 0; j < in; j++)
            s += (double)l->w[(size_t)i * in + j] * x[j];
        y[i] = activate ? act(m, (float)s) : (float)s;
    }
}

static void concat(float *dst, const float *a, int na, const float *b, int nb)
{
    memcpy(dst, a, sizeof(float) * (size_t)na);
    memcpy(dst + na, b, sizeof(float) * (size_t)nb);
}

static void dist(const rssm_model_t *m, const rssm_linear_t l[2], const float *x, int in,
                 float *mean, float *std)
{
    const int H = m->info.dims.hidden, S = m->info.dims.stoch;
    float hid[RSSM_MAX_DIM], raw[2 * RSSM_MAX_DIM];
    dense(m, &l[0], H, in, x, hid, 1);
    dense(m, &l[1], 2 * S, H, hid, raw, 0);
    for (int j = 0; j < S; j++) {
        mean[j] = raw[j];
        double r = raw[S + j];
        std[j] = (float)((r > 20 ? r : log1p(exp(r))) + m->info.min_std);
    }
}

static double sigm(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

void naive_imagine(const rssm_model_t *m, const float *h, const float *z, const float *a,
                   float *h_next, float *prior_mean, float *prior_std)
{
    const rssm_dims_t *d = &m->info.dims;
    const int D = d->deter, H = d->hidden;
    float za[MAXV], x[RSSM_MAX_DIM];
    concat(za, z, d->stoch, a, d->action);
    dense(m, &m->img_in, H, d->stoch + d->action, za, x, 1);
    for (int j = 0; j < D; j++) {
        double g[3], q[3];
        for (int k = 0; k < 3; k++) {
            size_t row = (size_t)k * D + j;
            g[k] = m->gru_ih.b[row];
            q[k] = m->gru_hh.b[row];
            for (int c = 0; c < H; c++)
                g[k] += (double)m->gru_ih.w[row * H + c] * x[c];
            for (int c = 0; c < D; c++)
                q[k] += (double)m->gru_hh.w[row * D + c] * h[c];
        }
        double r = sigm(g[0] + q[0]), u = sigm(g[1] + q[1]);
        double n = tanh(g[2] + r * q[2]);
        h_next[j] = (float)((1 - u) * n + u * h[j]);
    }
    dist(m, m->prior, h_next, D, prior_mean, prior_std);
}

/* The step after the encoder, from the embedding e [E]. */
static void observe_embedded(const rssm_model_t *m, const float *h, const float *z,
                             const float *a, const float *e, float *h_next, float *prior_mean,
                             float *prior_std, float *post_mean, float *post_std)
{
    const rssm_dims_t *d = &m->info.dims;
    float he[MAXV];
    naive_imagine(m, h, z, a, h_next, prior_mean, prior_std);
    concat(he, h_next, d->deter, e, d->embed);
    dist(m, m->post, he, d->deter + d->embed, post_mean, post_std);
}

void naive_observe(const rssm_model_t *m, const float *h, const float *z, const float *a,
                   const float *obs, float *h_next, float *prior_mean, float *prior_std,
                   float *post_mean, float *post_std)
{
    const rssm_dims_t *d = &m->info.dims;
    float on[RSSM_MAX_DIM], e0[RSSM_MAX_DIM], e[RSSM_MAX_DIM];
    for (int j = 0; j < d->obs; j++)
        on[j] = (obs[j] - m->obs_mean[j]) / m->obs_std[j];
    dense(m, &m->enc[0], d->hidden, d->obs, on, e0, 1);
    dense(m, &m->enc[1], d->embed, d->hidden, e0, e, 1);
    observe_embedded(m, h, z, a, e, h_next, prior_mean, prior_std, post_mean, post_std);
}

void naive_encode_image(const rssm_model_t *m, const uint8_t *image, float *embed)
{
    const rssm_info_t *info = &m->info;
    int H = info->image_height, W = info->image_width, C = info->image_channels;
    float *x = malloc(sizeof(float) * (size_t)C * H * W); /* [C, H, W] */
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W; i++)
                x[((size_t)c * H + y) * W + i] =
                    (float)image[((size_t)y * W + i) * C + c] / 255.0f - 0.5f;
    for (int l = 0; l < 4; l++) {
        const int cout = info->conv_depth << l, Ho = (H - 4) / 2 + 1, Wo = (W - 4) / 2 + 1;
        const float *w = m->conv[l].w; /* [cout, C, 4, 4] */
        float *out = malloc(sizeof(float) * (size_t)cout * Ho * Wo);
        for (int co = 0; co < cout; co++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double s = m->conv[l].b[co];
                    for (int ci = 0; ci < C; ci++)
                        for (int ky = 0; ky < 4; ky++)
                            for (int kx = 0; kx < 4; kx++)
                                s += (double)w[(((size_t)co * C + ci) * 4 + ky) * 4 + kx] *
                                     x[((size_t)ci * H + 2 * oy + ky) * W + 2 * ox + kx];
                    out[((size_t)co * Ho + oy) * Wo + ox] = act(m, (float)s);
                }
        free(x);
        x = out;
        C = cout, H = Ho, W = Wo;
    }
    dense(m, &m->enc_out, info->dims.embed, C * H * W, x, embed, 1); /* x: torch.flatten */
    free(x);
}

void naive_observe_image(const rssm_model_t *m, const float *h, const float *z, const float *a,
                         const uint8_t *image, float *h_next, float *prior_mean,
                         float *prior_std, float *post_mean, float *post_std)
{
    float e[RSSM_MAX_DIM];
    naive_encode_image(m, image, e);
    observe_embedded(m, h, z, a, e, h_next, prior_mean, prior_std, post_mean, post_std);
}

static void head(const rssm_model_t *m, const rssm_linear_t l[3], int nout, const float *h,
                 const float *z, float *out)
{
    const rssm_dims_t *d = &m->info.dims;
    float hz[MAXV], a[RSSM_MAX_DIM], b[RSSM_MAX_DIM];
    concat(hz, h, d->deter, z, d->stoch);
    dense(m, &l[0], d->hidden, d->deter + d->stoch, hz, a, 1);
    dense(m, &l[1], d->hidden, d->hidden, a, b, 1);
    dense(m, &l[2], nout, d->hidden, b, out, 0);
}

float naive_reward(const rssm_model_t *m, const float *h, const float *z)
{
    float r;
    head(m, m->reward, 1, h, z, &r);
    return r;
}

float naive_value(const rssm_model_t *m, const float *h, const float *z)
{
    float v;
    head(m, m->value, 1, h, z, &v);
    return v;
}

void naive_decode(const rssm_model_t *m, const float *h, const float *z, float *obs)
{
    head(m, m->dec, m->info.dims.obs, h, z, obs);
    for (int j = 0; j < m->info.dims.obs; j++)
        obs[j] = obs[j] * m->obs_std[j] + m->obs_mean[j];
}
