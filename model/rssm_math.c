/*
 * rssm_math.c: the RSSM forward pass (belief update and batched imagination).
 *
 * Every linear layer computes Y[n, out] = act(X[n, in] W^T + b) with W stored [out, in]
 * like torch.nn.Linear, on one of two paths chosen when the model is loaded:
 *   - librssm's packed-weight kernel (rssm_gemm.h), where the CPU has AVX2 and FMA: bias
 *     and activation are applied in registers;
 *   - otherwise one row-major cblas_sgemm (CblasTrans on the weight), then a bias and
 *     activation loop over contiguous rows that the compiler can vectorise.
 * Concatenated inputs ([z, a], [h, e], [h, z]) are never copied: both paths read the two
 * parts in place (OpenBLAS: two calls on the weight's column blocks, the second with
 * beta = 1). Softplus runs in a plain vectorisable loop, the GRU gates in rssm_gates.c.
 * Scratch memory comes from the caller's workspace (see the *_workspace functions), so
 * nothing here allocates. An image model's encoder (convolutions) is in rssm_conv.c, on
 * the same layers.
 *
 * Speed: ELU and softplus use rssm_approx.h instead of libm, because libm calls cannot be
 * vectorised and made these loops cost as much as the GEMMs; meson builds this library
 * with -O3 so the loops vectorise.
 */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "rssm_approx.h"
#include "rssm_conv.h"
#include "rssm_gates.h"
#include "rssm_gemm.h"
#include "rssm_private.h"

static rssm_gemm_act_t model_act(const rssm_model_t *m)
{
    return m->info.activation == RSSM_ACT_ELU ? RSSM_GEMM_ELU : RSSM_GEMM_RELU;
}

/* y[n, out] (+)= x[n, in] . w[:, 0:in]^T, where w rows are ldw floats long. */
static void gemm_wt(int n, int out, int in, const float *x, int ldx, const float *w, int ldw,
                    float beta, float *y, int ldy)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, ldx, w, ldw, beta,
                y, ldy);
}

RSSM_SIMD_CLONES
static void bias_act(int n, int out, float *restrict y, const float *restrict b,
                     rssm_gemm_act_t act)
{
    for (int i = 0; i < n; i++) {
        float *restrict row = y + (size_t)i * out;
        for (int j = 0; j < out; j++)
            row[j] += b[j];
        if (act == RSSM_GEMM_RELU)
            for (int j = 0; j < out; j++)
                row[j] = row[j] > 0.0f ? row[j] : 0.0f;
        else if (act == RSSM_GEMM_ELU)
            for (int j = 0; j < out; j++)
                row[j] = row[j] > 0.0f ? row[j] : exp_approx(row[j]) - 1.0f;
    }
}

/* y[n, out] = act([x1, x2] W^T + b) without building [x1, x2]: W = [W1 | W2]. x1's rows
 * are ldx1 floats apart; 0 repeats one row. */
static void linear2(int n, int out, const rssm_linear_t *l, const float *x1, int ldx1, int in1,
                    const float *x2, int in2, float *y, rssm_gemm_act_t act)
{
    if (l->packed) {
        rssm_gemm(n, x1, ldx1, in1, x2, in2, in2, l->packed, out, act, y, out);
        return;
    }
    if (ldx1 == 0) { /* one row for all: OpenBLAS computes it once, then it is copied */
        gemm_wt(1, out, in1, x1, in1, l->w, in1 + in2, 0.0f, y, out);
        for (int i = 1; i < n; i++)
            memcpy(y + (size_t)i * out, y, sizeof(float) * (size_t)out);
    } else {
        gemm_wt(n, out, in1, x1, ldx1, l->w, in1 + in2, 0.0f, y, out);
    }
    if (in2 > 0)
        gemm_wt(n, out, in2, x2, in2, l->w + in1, in1 + in2, 1.0f, y, out);
    bias_act(n, out, y, l->b, act);
}

/* y[n, out] = act(x[n, in] W^T + b) for a layer whose whole input is x. */
static void linear(int n, int out, int in, const rssm_linear_t *l, const float *x, float *y,
                   rssm_gemm_act_t act)
{
    linear2(n, out, l, x, in, in, NULL, 0, y, act);
}

rssm_gemm_act_t rssm__act(const rssm_model_t *m)
{
    return model_act(m);
}

void rssm__linear(int n, int out, int in, const rssm_linear_t *l, const float *x, float *y,
                  rssm_gemm_act_t act)
{
    linear(n, out, in, l, x, y, act);
}

/* torch softplus (beta 1, threshold 20) + min_std. */
RSSM_SIMD_CLONES
static void gaussian(int n, int s, const float *restrict raw, float min_std,
                     float *restrict mean, float *restrict std)
{
    for (int i = 0; i < n; i++) {
        const float *restrict r = raw + (size_t)i * 2 * s;
        memcpy(mean + (size_t)i * s, r, sizeof(float) * (size_t)s);
        memcpy(std + (size_t)i * s, r + s, sizeof(float) * (size_t)s);
    }
    /* one flat loop: per row, s = 30 would leave 6 of every 30 to the scalar tail */
    for (size_t k = 0; k < (size_t)n * s; k++)
        std[k] = softplus_approx(std[k]) + min_std;
}

/* h_next = GRUCell(act(W_in [z, a] + b), h). shared: h and z are one row for all n. */
static void transition(const rssm_model_t *m, int n, const float *h, const float *z,
                       const float *a, bool shared, float *restrict h_next, float *ws)
{
    const rssm_dims_t *d = &m->info.dims;
    const int D = d->deter, H = d->hidden, S = d->stoch;
    float *x = ws;                                   /* [n, H] */
    float *gi = x + rssm__align((size_t)n * H);      /* [n, 3D] */
    float *gh = gi + rssm__align((size_t)n * 3 * D); /* [n, 3D] */
    linear2(n, H, &m->img_in, z, shared ? 0 : S, S, a, d->action, x, model_act(m));
    linear(n, 3 * D, H, &m->gru_ih, x, gi, RSSM_GEMM_LINEAR);
    linear(shared ? 1 : n, 3 * D, D, &m->gru_hh, h, gh, RSSM_GEMM_LINEAR);
    rssm_gru_gates(n, D, gi, gh, h, shared ? 0 : 1, h_next, m->packed != NULL);
}

/* Two-layer Gaussian head: raw = W1 act(W0 [x1, x2] + b0) + b1 -> (mean, std). */
static void gaussian_head(const rssm_model_t *m, const rssm_linear_t l[2], int n,
                          const float *x1, int in1, const float *x2, int in2, float *mean,
                          float *std, float *ws)
{
    const int H = m->info.dims.hidden, S = m->info.dims.stoch;
    float *hid = ws;                               /* [n, H] */
    float *raw = hid + rssm__align((size_t)n * H); /* [n, 2S] */
    linear2(n, H, &l[0], x1, in1, in1, x2, in2, hid, model_act(m));
    linear(n, 2 * S, H, &l[1], hid, raw, RSSM_GEMM_LINEAR);
    gaussian(n, S, raw, m->info.min_std, mean, std);
}

/* Rows per pass on the kernel path: every layer of a step runs on these rows while their
 * activations stay in a core's L2 (a 1000-row batch taken layer by layer spills to L3
 * and ran 20 % slower). OpenBLAS gets the whole batch: it repacks weights per call. */
#define PASS_ROWS 64

static int pass_rows(const rssm_model_t *m, int n)
{
    return m->packed && n > PASS_ROWS ? PASS_ROWS : n;
}

/* Three-layer head on [h, z] (reward, value, decoder): out [n, nout]. */
static void hz_head(const rssm_model_t *m, const rssm_linear_t l[3], int nout, int n,
                    const float *h, const float *z, float *out, float *ws)
{
    const rssm_dims_t *d = &m->info.dims;
    const int H = d->hidden, D = d->deter, S = d->stoch, rows = pass_rows(m, n);
    float *h1 = ws, *h2 = ws + rssm__align((size_t)rows * H);
    for (int j = 0, k; j < n; j += k) {
        k = n - j < rows ? n - j : rows;
        linear2(k, H, &l[0], h + (size_t)j * D, D, D, z + (size_t)j * S, S, h1, model_act(m));
        linear(k, H, H, &l[1], h1, h2, model_act(m));
        linear(k, nout, H, &l[2], h2, out + (size_t)j * nout, RSSM_GEMM_LINEAR);
    }
}

/* One prior step for n rows (shared: h and z are one row for all). */
static void prior_step(const rssm_model_t *m, int n, const float *h, const float *z,
                       const float *a, bool shared, float *h_next, float *prior_mean,
                       float *prior_std, float *ws)
{
    const rssm_dims_t *d = &m->info.dims;
    const size_t D = (size_t)d->deter, S = (size_t)d->stoch, A = (size_t)d->action;
    const int rows = pass_rows(m, n);
    for (int j = 0, k; j < n; j += k) {
        k = n - j < rows ? n - j : rows;
        size_t hj = shared ? 0 : (size_t)j * D, zj = shared ? 0 : (size_t)j * S;
        transition(m, k, h + hj, z + zj, a + (size_t)j * A, shared, h_next + (size_t)j * D, ws);
        gaussian_head(m, m->prior, k, h_next + (size_t)j * D, (int)D, NULL, 0,
                      prior_mean + (size_t)j * S, prior_std + (size_t)j * S, ws);
    }
}

size_t rssm_batch_workspace(const rssm_model_t *m, int max_batch)
{
    const rssm_dims_t *d = &m->info.dims;
    size_t n = max_batch > 0 ? (size_t)max_batch : 1;
    size_t hid = rssm__align(n * (size_t)d->hidden);
    size_t trans = hid + 2 * rssm__align(n * 3 * (size_t)d->deter);
    size_t prior = hid + rssm__align(n * 2 * (size_t)d->stoch);
    size_t head = 2 * hid;
    size_t ws = trans > prior ? trans : prior;
    return ws > head ? ws : head;
}

void rssm_imagine_batch(const rssm_model_t *m, int n, const float *h, const float *z,
                        const float *a, float *h_next, float *prior_mean, float *prior_std,
                        float *ws)
{
    assert(m && ws);
    if (n <= 0)
        return;
    prior_step(m, n, h, z, a, false, h_next, prior_mean, prior_std, ws);
}

void rssm_imagine_batch_shared(const rssm_model_t *m, int n, const float *h0, const float *z0,
                               const float *a, float *h_next, float *prior_mean,
                               float *prior_std, float *ws)
{
    assert(m && ws);
    if (n <= 0)
        return;
    prior_step(m, n, h0, z0, a, true, h_next, prior_mean, prior_std, ws);
}

void rssm_reward_batch(const rssm_model_t *m, int n, const float *h, const float *z,
                       float *reward, float *ws)
{
    assert(m && ws);
    if (n > 0)
        hz_head(m, m->reward, 1, n, h, z, reward, ws);
}

void rssm_value_batch(const rssm_model_t *m, int n, const float *h, const float *z,
                      float *value, float *ws)
{
    assert(m && ws && m->info.has_value); /* calling it without a value head is a bug */
    if (n <= 0)
        return;
    if (!m->info.has_value) {
        memset(value, 0, sizeof(float) * (size_t)n);
        return;
    }
    hz_head(m, m->value, 1, n, h, z, value, ws);
}

void rssm_decode_batch(const rssm_model_t *m, int n, const float *h, const float *z, float *obs,
                       float *ws)
{
    const int O = m->info.dims.obs;
    assert(m && ws && m->info.has_decoder);
    if (n <= 0)
        return;
    if (!m->info.has_decoder) {
        memset(obs, 0, sizeof(float) * (size_t)n * O);
        return;
    }
    hz_head(m, m->dec, O, n, h, z, obs, ws);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < O; j++)
            obs[(size_t)i * O + j] = obs[(size_t)i * O + j] * m->obs_std[j] + m->obs_mean[j];
}

/* ---- belief update ---- */

static bool is_image(const rssm_model_t *m)
{
    return m->info.image_channels > 0;
}

size_t rssm_observe_workspace(const rssm_model_t *m)
{
    const rssm_dims_t *d = &m->info.dims;
    size_t batch = rssm_batch_workspace(m, 1);
    if (is_image(m)) { /* [E] embedding, then the encoder's scratch or the step's */
        size_t enc = rssm__image_workspace(m);
        return rssm__align((size_t)d->embed) + (enc > batch ? enc : batch);
    }
    size_t enc = rssm__align((size_t)d->obs) + rssm__align((size_t)d->hidden) +
                 rssm__align((size_t)d->embed);
    return enc + batch;
}

static bool observe_args_ok(const rssm_model_t *m, const float *h, const float *z,
                            const float *a_prev, const void *obs, const rssm_observe_out_t *out,
                            const float *ws)
{
    return m && h && z && a_prev && obs && out && ws && out->h && out->prior_mean &&
           out->prior_std && out->post_mean && out->post_std;
}

/* The step after the encoder: h' from (h, z, a_prev), the prior at h', the posterior at
 * [h', e]. */
static void observe_embedded(const rssm_model_t *m, const float *h, const float *z,
                             const float *a_prev, const float *e, rssm_observe_out_t *out,
                             float *scratch)
{
    const rssm_dims_t *d = &m->info.dims;
    transition(m, 1, h, z, a_prev, false, out->h, scratch);
    gaussian_head(m, m->prior, 1, out->h, d->deter, NULL, 0, out->prior_mean, out->prior_std,
                  scratch);
    gaussian_head(m, m->post, 1, out->h, d->deter, e, d->embed, out->post_mean, out->post_std,
                  scratch);
}

int rssm_observe(const rssm_model_t *m, const float *h, const float *z, const float *a_prev,
                 const float *obs, rssm_observe_out_t *out, float *ws)
{
    if (!observe_args_ok(m, h, z, a_prev, obs, out, ws) || is_image(m))
        return RSSM_EINVALID;
    const rssm_dims_t *d = &m->info.dims;
    const int O = d->obs, H = d->hidden, E = d->embed;
    float *on = ws;                          /* [O] normalised observation */
    float *e0 = on + rssm__align((size_t)O); /* [H] */
    float *e = e0 + rssm__align((size_t)H);  /* [E] embedding */
    float *scratch = e + rssm__align((size_t)E);
    for (int j = 0; j < O; j++)
        on[j] = (obs[j] - m->obs_mean[j]) / m->obs_std[j];
    linear(1, H, O, &m->enc[0], on, e0, model_act(m));
    linear(1, E, H, &m->enc[1], e0, e, model_act(m));
    observe_embedded(m, h, z, a_prev, e, out, scratch);
    return 0;
}

int rssm_observe_image(const rssm_model_t *m, const float *h, const float *z,
                       const float *a_prev, const uint8_t *image, rssm_observe_out_t *out,
                       float *ws)
{
    if (!observe_args_ok(m, h, z, a_prev, image, out, ws) || !is_image(m))
        return RSSM_EINVALID;
    float *e = ws; /* [E] embedding */
    float *scratch = e + rssm__align((size_t)m->info.dims.embed);
    rssm__image_encode(m, image, e, scratch);
    observe_embedded(m, h, z, a_prev, e, out, scratch);
    return 0;
}

int rssm_encode_image(const rssm_model_t *m, const uint8_t *image, float *embed, float *ws)
{
    if (!m || !image || !embed || !ws || !is_image(m))
        return RSSM_EINVALID;
    rssm__image_encode(m, image, embed, ws);
    return 0;
}

float rssm_kl_diag(const float *q_mean, const float *q_std, const float *p_mean,
                   const float *p_std, int s)
{
    double kl = 0.0;
    for (int i = 0; i < s; i++) {
        double vq = (double)q_std[i] * q_std[i], vp = (double)p_std[i] * p_std[i];
        double dm = (double)q_mean[i] - p_mean[i];
        kl += log((double)p_std[i] / q_std[i]) + (vq + dm * dm) / (2.0 * vp) - 0.5;
    }
    return (float)kl;
}
