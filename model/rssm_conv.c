/*
 * rssm_conv.c: the image encoder of obs_type "image" models (PlaNet's), on librssm's layers.
 *
 * x = image / 255 - 0.5, then 4 convolutions (kernel 4, stride 2, no padding; d, 2d, 4d and
 * 8d channels, the model's activation after each), then e = act(W_out flatten(x) + b).
 * Each convolution is im2col plus one layer call (rssm__linear: the packed kernel with bias
 * and activation fused, or OpenBLAS) per chunk of output positions, so the im2col rows of
 * a chunk stay in L2 rather than a whole layer's (961 rows for a 64x64 image's first).
 *
 * Layout: activations are HWC (position-major, channels innermost), which is what a GEMM
 * over positions writes. So the loader's copy of each convolution weight gets its columns
 * reordered from PyTorch's (ci, ky, kx) to (ky, kx, ci), which makes an im2col row 4
 * contiguous runs of 4 * cin floats (one per kernel row), and encoder_out's columns from
 * PyTorch's channel-major flatten (c, y, x) to (y, x, c). The file's tensors are kept as
 * they are (rssm_tensor_at, the tests' reference); the reordered copies live in image.buf,
 * only in packed form where the model runs on the packed kernel.
 */
#include "rssm_conv.h"

#include <stdlib.h>
#include <string.h>

#include "rssm_gemm.h"

/* Output positions per im2col chunk: the packed kernel's row chunk (rssm_gemm.c). */
#define CHUNK_POSITIONS 96
#define KK              (RSSM_CONV_KERNEL * RSSM_CONV_KERNEL)

/* Output side of one convolution; 0 when the input is smaller than the kernel. */
static int conv_out(int n)
{
    return n < RSSM_CONV_KERNEL ? 0 : (n - RSSM_CONV_KERNEL) / RSSM_CONV_STRIDE + 1;
}

int rssm__conv_size(int n)
{
    for (int i = 0; i < RSSM_CONV_LAYERS; i++)
        n = conv_out(n);
    return n;
}

int rssm__conv_min_side(void)
{
    int n = 1;
    for (int i = 0; i < RSSM_CONV_LAYERS; i++)
        n = (n - 1) * RSSM_CONV_STRIDE + RSSM_CONV_KERNEL;
    return n;
}

static void set_geometry(rssm_image_t *img, const rssm_info_t *info)
{
    int h = info->image_height, w = info->image_width, c = info->image_channels;
    img->height = h;
    img->width = w;
    img->channels = c;
    img->depth = info->conv_depth;
    for (int i = 0; i < RSSM_CONV_LAYERS; i++) {
        rssm_conv_layer_t *l = &img->conv[i];
        *l = (rssm_conv_layer_t){.cin = c, .cout = info->conv_depth << i, .h_in = h, .w_in = w};
        l->h_out = h = conv_out(h);
        l->w_out = w = conv_out(w);
        c = l->cout;
    }
}

/* Floats of the last convolution's output: encoder_out's input. */
static int flat_size(const rssm_image_t *img)
{
    const rssm_conv_layer_t *l = &img->conv[RSSM_CONV_LAYERS - 1];
    return l->cout * l->h_out * l->w_out;
}

/* dst [cout, ky, kx, cin] = w [cout, cin, ky, kx] */
static void reorder_conv(float *dst, const float *w, int cout, int cin)
{
    for (size_t co = 0; co < (size_t)cout; co++)
        for (size_t ci = 0; ci < (size_t)cin; ci++)
            for (size_t k = 0; k < KK; k++)
                dst[(co * KK + k) * cin + ci] = w[(co * cin + ci) * KK + k];
}

/* dst [rows, hw, c] = w [rows, c, hw]: encoder_out's columns from (c, y, x) to (y, x, c) */
static void reorder_flatten(float *dst, const float *w, int rows, int c, int hw)
{
    const size_t cols = (size_t)c * hw;
    for (size_t r = 0; r < (size_t)rows; r++)
        for (size_t ch = 0; ch < (size_t)c; ch++)
            for (size_t p = 0; p < (size_t)hw; p++)
                dst[r * cols + p * c + ch] = w[r * cols + ch * hw + p];
}

/* Floats one layer takes in image.buf: its reordered weight, or that packed. */
static size_t layer_floats(int out, int in, bool pack)
{
    return rssm__align(pack ? rssm_gemm_packed_size(out, in) : (size_t)out * in);
}

/* Places layer l (weight already reordered into w, bias b) at *dst: packed for the kernel,
 * or the reordered weight itself for OpenBLAS. */
static void place_layer(rssm_linear_t *l, float **dst, const float *w, const float *b, int out,
                        int in, bool pack)
{
    l->b = b;
    if (pack) {
        rssm_gemm_pack(*dst, w, b, out, in);
        l->packed = *dst;
    } else {
        if (w != *dst)
            memcpy(*dst, w, sizeof(float) * (size_t)out * in);
        l->w = *dst;
    }
    *dst += layer_floats(out, in, pack);
}

int rssm__image_prepare(rssm_model_t *m, char *err, size_t errlen)
{
    const rssm_info_t *info = &m->info;
    rssm_image_t *img = &m->image;
    if (info->image_channels <= 0)
        return 0;
    set_geometry(img, info);
    /* the rest of the model runs on the kernel iff the loader packed it */
    const bool pack = m->packed != NULL;
    const int E = info->dims.embed, O = info->dims.obs, F = flat_size(img);
    const rssm_conv_layer_t *last = &img->conv[RSSM_CONV_LAYERS - 1];
    size_t total = 2 * rssm__align((size_t)O) + layer_floats(E, F, pack);
    size_t scratch = (size_t)E * F; /* one reordered weight before it is packed */
    for (int i = 0; i < RSSM_CONV_LAYERS; i++) {
        const rssm_conv_layer_t *c = &img->conv[i];
        total += layer_floats(c->cout, KK * c->cin, pack);
        if ((size_t)c->cout * KK * c->cin > scratch)
            scratch = (size_t)c->cout * KK * c->cin;
    }
    img->buf = aligned_alloc(RSSM_ALIGN_FLOATS * sizeof(float), total * sizeof(float));
    float *tmp = malloc(scratch * sizeof(float));
    if (!img->buf || !tmp) {
        free(tmp);
        return rssm__fail(err, errlen, RSSM_ENOMEM,
                          "out of memory for the image encoder's %zu weights", total);
    }
    float *dst = img->buf;
    for (int i = 0; i < RSSM_CONV_LAYERS; i++) {
        rssm_conv_layer_t *c = &img->conv[i];
        reorder_conv(tmp, m->conv[i].w, c->cout, c->cin);
        place_layer(&c->l, &dst, tmp, m->conv[i].b, c->cout, KK * c->cin, pack);
    }
    reorder_flatten(tmp, m->enc_out.w, E, last->cout, last->h_out * last->w_out);
    place_layer(&img->out, &dst, tmp, m->enc_out.b, E, F, pack);
    free(tmp);
    /* x / 255 - 0.5 == (x - 127.5) / 255: the vector models' form, for rssm_info readers */
    float *mean = dst, *std = dst + rssm__align((size_t)O);
    for (int j = 0; j < O; j++) {
        mean[j] = 127.5f;
        std[j] = 255.0f;
    }
    m->info.obs_mean = mean;
    m->info.obs_std = std;
    for (int v = 0; v < 256; v++)
        img->pixel[v] = (float)v / 255.0f - 0.5f; /* as PyTorch computes it */
    return 0;
}

/* Sizes of the scratch parts: two activation buffers (layer i reads part i % 2 and writes
 * the other; part 0 first holds the normalised image, so it is at least that big) and the
 * im2col chunk. */
static void scratch_parts(const rssm_image_t *img, size_t parts[3])
{
    parts[0] = (size_t)img->height * img->width * img->channels;
    parts[1] = parts[2] = 0;
    for (int i = 0; i < RSSM_CONV_LAYERS; i++) {
        const rssm_conv_layer_t *c = &img->conv[i];
        size_t positions = (size_t)c->h_out * c->w_out;
        size_t out = positions * c->cout, *dst = &parts[(i + 1) % 2];
        size_t chunk =
            (positions < CHUNK_POSITIONS ? positions : CHUNK_POSITIONS) * KK * c->cin;
        *dst = out > *dst ? out : *dst;
        parts[2] = chunk > parts[2] ? chunk : parts[2];
    }
}

size_t rssm__image_workspace(const rssm_model_t *m)
{
    size_t parts[3];
    scratch_parts(&m->image, parts);
    return rssm__align(parts[0]) + rssm__align(parts[1]) + rssm__align(parts[2]);
}

/* out [h_out, w_out, cout] = act(conv(in [h_in, w_in, cin])), CHUNK_POSITIONS outputs at a
 * time. */
static void conv_layer(const rssm_conv_layer_t *c, const float *in, float *out, float *cols,
                       rssm_gemm_act_t act)
{
    const size_t run = (size_t)RSSM_CONV_KERNEL * c->cin; /* a kernel row: contiguous in HWC */
    const size_t width = RSSM_CONV_KERNEL * run;          /* an im2col row */
    const size_t line = (size_t)c->w_in * c->cin;         /* an input row */
    const int positions = c->h_out * c->w_out;
    for (int p0 = 0; p0 < positions; p0 += CHUNK_POSITIONS) {
        int n = positions - p0 < CHUNK_POSITIONS ? positions - p0 : CHUNK_POSITIONS;
        for (int i = 0; i < n; i++) {
            size_t oy = (size_t)(p0 + i) / c->w_out, ox = (size_t)(p0 + i) % c->w_out;
            const float *src = in + RSSM_CONV_STRIDE * (oy * line + ox * c->cin);
            float *dst = cols + (size_t)i * width;
            for (int ky = 0; ky < RSSM_CONV_KERNEL; ky++)
                memcpy(dst + ky * run, src + ky * line, sizeof(float) * run);
        }
        rssm__linear(n, c->cout, (int)width, &c->l, cols, out + (size_t)p0 * c->cout, act);
    }
}

void rssm__image_encode(const rssm_model_t *m, const uint8_t *image, float *embed, float *ws)
{
    const rssm_image_t *img = &m->image;
    const rssm_gemm_act_t act = rssm__act(m);
    size_t parts[3];
    scratch_parts(img, parts);
    float *buf[2] = {ws, ws + rssm__align(parts[0])};
    float *cols = buf[1] + rssm__align(parts[1]);
    const size_t bytes = (size_t)img->height * img->width * img->channels;
    for (size_t i = 0; i < bytes; i++)
        buf[0][i] = img->pixel[image[i]];
    for (int i = 0; i < RSSM_CONV_LAYERS; i++)
        conv_layer(&img->conv[i], buf[i % 2], buf[(i + 1) % 2], cols, act);
    rssm__linear(1, m->info.dims.embed, flat_size(img), &img->out, buf[RSSM_CONV_LAYERS % 2],
                 embed, act);
}
