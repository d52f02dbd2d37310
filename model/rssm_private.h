/*
 * rssm_private.h: librssm internals shared by the loader, the math and the tests.
 *
 * A loaded model is its sizes plus shape-commented pointers into one aligned weight buffer
 * (MuJoCo's mjModel layout). RSSM_TENSOR_LIST is the single list of tensors: it drives
 * lookup, expected shapes and validation in the loader, and the FORMAT.md tensor table.
 */
#ifndef MPC_RSSM_PRIVATE_H
#define MPC_RSSM_PRIVATE_H

#include <stdarg.h>

#include "rssm.h"
#include "rssm_gemm.h"

#define RSSM_MAX_DIM      4096        /* largest accepted value of any metadata dimension */
#define RSSM_HEADER_CAP   (16u << 20) /* largest accepted safetensors JSON header (bytes) */
#define RSSM_MAX_TENSORS  1024        /* more entries than this is not an mpc-rssm file */
#define RSSM_FORMAT_MAJOR 1
#define RSSM_FORMAT_MINOR 1
#define RSSM_ALIGN_FLOATS 16 /* 64-byte alignment of every tensor and scratch buffer */

/* Image models (obs_type "image"): PlaNet's encoder, RSSM_CONV_LAYERS convolutions of
 * kernel RSSM_CONV_KERNEL and stride RSSM_CONV_STRIDE without padding. */
#define RSSM_CONV_LAYERS    4
#define RSSM_CONV_KERNEL    4
#define RSSM_CONV_STRIDE    2
#define RSSM_MAX_IMAGE_SIDE 512                /* image_height, image_width */
#define RSSM_MAX_IMAGE_OBS  (512 * 512 * 3)    /* obs_dim of an image model */
#define RSSM_MAX_CONV_DEPTH (RSSM_MAX_DIM / 8) /* the last convolution has 8d channels */

/* One torch.nn.Linear: w [out, in] row-major, b [out]; packed: both repacked for
 * rssm_gemm at load time, or NULL where librssm uses OpenBLAS (see rssm_gemm.h). */
typedef struct rssm_linear {
    const float *w;
    const float *b;
    const float *packed;
} rssm_linear_t;

/* Elementwise loops are cloned for AVX2 where the CPU has it (8 lanes instead of SSE2's 4);
 * the result is the same function either way. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RSSM_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RSSM_SIMD_CLONES
#endif

/* Which tensors a model has: the core ones always, the encoder of its obs_type, the heads
 * depending on metadata. */
enum {
    RSSM_GROUP_CORE = 0,
    RSSM_GROUP_VALUE = 1,
    RSSM_GROUP_DECODER = 2,
    RSSM_GROUP_VECTOR = 3, /* obs_type "vector": normalisation and MLP encoder */
    RSSM_GROUP_IMAGE = 4,  /* obs_type "image": conv encoder and encoder_out */
};

/*
 * X(name, slot, group, rows, cols, k): every tensor of an mpc-rssm file in file order.
 * cols == 0 means a vector of `rows` elements; k > 0 a convolution weight [rows, cols, k, k]
 * (a matrix [rows, cols * k * k] in memory). The sizes use O A D S H E from rssm_dims_t,
 * and for image models C (image_channels), K (conv_depth) and F (8K * h4 * w4: the last
 * convolution's output, flattened).
 */
#define RSSM_TENSOR_LIST(X, O, A, D, S, H, E, C, K, F)                                         \
    X("obs_mean", obs_mean, VECTOR, O, 0, 0) /* [O] */                                         \
    X("obs_std", obs_std, VECTOR, O, 0, 0)   /* [O], > 0 */                                    \
    X("encoder.0.weight", enc[0].w, VECTOR, H, O, 0)                                           \
    X("encoder.0.bias", enc[0].b, VECTOR, H, 0, 0)                                             \
    X("encoder.1.weight", enc[1].w, VECTOR, E, H, 0)                                           \
    X("encoder.1.bias", enc[1].b, VECTOR, E, 0, 0)                                             \
    X("conv_encoder.0.weight", conv[0].w, IMAGE, K, C, 4) /* [K, C, 4, 4] */                   \
    X("conv_encoder.0.bias", conv[0].b, IMAGE, K, 0, 0)                                        \
    X("conv_encoder.1.weight", conv[1].w, IMAGE, 2 * (K), K, 4)                                \
    X("conv_encoder.1.bias", conv[1].b, IMAGE, 2 * (K), 0, 0)                                  \
    X("conv_encoder.2.weight", conv[2].w, IMAGE, 4 * (K), 2 * (K), 4)                          \
    X("conv_encoder.2.bias", conv[2].b, IMAGE, 4 * (K), 0, 0)                                  \
    X("conv_encoder.3.weight", conv[3].w, IMAGE, 8 * (K), 4 * (K), 4)                          \
    X("conv_encoder.3.bias", conv[3].b, IMAGE, 8 * (K), 0, 0)                                  \
    X("encoder_out.weight", enc_out.w, IMAGE, E, F, 0) /* columns: [8K, h4, w4] */             \
    X("encoder_out.bias", enc_out.b, IMAGE, E, 0, 0)                                           \
    X("img_in.weight", img_in.w, CORE, H, (S) + (A), 0) /* columns: [z, a] */                  \
    X("img_in.bias", img_in.b, CORE, H, 0, 0)                                                  \
    X("gru.weight_ih", gru_ih.w, CORE, 3 * (D), H, 0) /* rows: r, z, n gates */                \
    X("gru.weight_hh", gru_hh.w, CORE, 3 * (D), D, 0)                                          \
    X("gru.bias_ih", gru_ih.b, CORE, 3 * (D), 0, 0)                                            \
    X("gru.bias_hh", gru_hh.b, CORE, 3 * (D), 0, 0)                                            \
    X("prior.0.weight", prior[0].w, CORE, H, D, 0)                                             \
    X("prior.0.bias", prior[0].b, CORE, H, 0, 0)                                               \
    X("prior.1.weight", prior[1].w, CORE, 2 * (S), H, 0) /* rows: mean, raw std */             \
    X("prior.1.bias", prior[1].b, CORE, 2 * (S), 0, 0)                                         \
    X("posterior.0.weight", post[0].w, CORE, H, (D) + (E), 0) /* columns: [h, e] */            \
    X("posterior.0.bias", post[0].b, CORE, H, 0, 0)                                            \
    X("posterior.1.weight", post[1].w, CORE, 2 * (S), H, 0)                                    \
    X("posterior.1.bias", post[1].b, CORE, 2 * (S), 0, 0)                                      \
    X("reward.0.weight", reward[0].w, CORE, H, (D) + (S), 0) /* columns: [h, z] */             \
    X("reward.0.bias", reward[0].b, CORE, H, 0, 0)                                             \
    X("reward.1.weight", reward[1].w, CORE, H, H, 0)                                           \
    X("reward.1.bias", reward[1].b, CORE, H, 0, 0)                                             \
    X("reward.2.weight", reward[2].w, CORE, 1, H, 0)                                           \
    X("reward.2.bias", reward[2].b, CORE, 1, 0, 0)                                             \
    X("value.0.weight", value[0].w, VALUE, H, (D) + (S), 0)                                    \
    X("value.0.bias", value[0].b, VALUE, H, 0, 0)                                              \
    X("value.1.weight", value[1].w, VALUE, H, H, 0)                                            \
    X("value.1.bias", value[1].b, VALUE, H, 0, 0)                                              \
    X("value.2.weight", value[2].w, VALUE, 1, H, 0)                                            \
    X("value.2.bias", value[2].b, VALUE, 1, 0, 0)                                              \
    X("decoder.0.weight", dec[0].w, DECODER, H, (D) + (S), 0)                                  \
    X("decoder.0.bias", dec[0].b, DECODER, H, 0, 0)                                            \
    X("decoder.1.weight", dec[1].w, DECODER, H, H, 0)                                          \
    X("decoder.1.bias", dec[1].b, DECODER, H, 0, 0)                                            \
    X("decoder.2.weight", dec[2].w, DECODER, O, H, 0)                                          \
    X("decoder.2.bias", dec[2].b, DECODER, O, 0, 0)

/* One convolution of the image encoder, prepared for im2col (rssm_conv.c): input
 * [h_in, w_in, cin] -> output [h_out, w_out, cout], both HWC. l.w [cout, 4, 4, cin] is the
 * file's [cout, cin, 4, 4] with its columns in im2col order (ky, kx, ci); l.b the file's
 * bias; l.packed the two packed for rssm_gemm (then l.w is NULL). */
typedef struct rssm_conv_layer {
    int cin, cout;
    int h_in, w_in, h_out, w_out;
    rssm_linear_t l;
} rssm_conv_layer_t;

/* An image model's encoder as rssm_conv.c runs it; zero for vector models. */
typedef struct rssm_image {
    int height, width, channels, depth; /* from metadata */
    rssm_conv_layer_t conv[RSSM_CONV_LAYERS];
    rssm_linear_t out; /* encoder_out [E, h4 * w4 * 8K]: columns in HWC order (y, x, c) */
    float pixel[256];  /* byte value v -> v / 255 - 0.5 */
    float *buf;        /* owns the reordered weights, their packed form, obs_mean/obs_std */
} rssm_image_t;

/* A tensor as listed in the file (for rssm_tensor_at). */
typedef struct rssm_tensor_entry {
    char *name;
    int rank;
    int shape[4];
} rssm_tensor_entry_t;

struct rssm_model {
    rssm_info_t info;   /* dims etc.; its pointers point into this model */
    float *weights;     /* one aligned buffer holding every tensor below */
    size_t weights_len; /* floats */
    float *packed;      /* the layers repacked for rssm_gemm, or NULL */

    const float *obs_mean;   /* [O]; vector models */
    const float *obs_std;    /* [O] */
    rssm_linear_t enc[2];    /* [H, O], [E, H]; vector models */
    rssm_linear_t conv[4];   /* [K, C, 4, 4] .. [8K, 4K, 4, 4] as in the file; image models */
    rssm_linear_t enc_out;   /* [E, 8K * h4 * w4] as in the file (columns channel-major) */
    rssm_image_t image;      /* the conv encoder prepared for im2col (rssm_conv.c) */
    rssm_linear_t img_in;    /* [H, S + A] */
    rssm_linear_t gru_ih;    /* [3D, H], [3D]: rows r, z, n */
    rssm_linear_t gru_hh;    /* [3D, D], [3D] */
    rssm_linear_t prior[2];  /* [H, D], [2S, H] */
    rssm_linear_t post[2];   /* [H, D + E], [2S, H] */
    rssm_linear_t reward[3]; /* [H, D + S], [H, H], [1, H] */
    rssm_linear_t value[3];  /* same as reward; NULL pointers unless has_value */
    rssm_linear_t dec[3];    /* [H, D + S], [H, H], [O, H]; NULL unless has_decoder */

    float *action_low, *action_high; /* [A] */
    char *task, *name;
    char **meta_keys, **meta_values;
    int nmeta;
    rssm_tensor_entry_t *tensors;
    int ntensors;
};

/* ---- safetensors container (safetensors.c) ---- */

typedef struct st_tensor {
    const char *name; /* points into the parsed JSON (valid until st_free) */
    int rank;
    int64_t shape[4];
    size_t begin, end; /* byte offsets relative to the data section */
} st_tensor_t;

typedef struct st_file {
    void *json;           /* cJSON root */
    st_tensor_t *tensors; /* sorted by offset (file order) */
    int ntensors;
    const void *metadata;      /* cJSON object "__metadata__" or NULL */
    const unsigned char *data; /* start of the data section */
    size_t data_size;
} st_file_t;

/* Parses and validates the container: header bounds, JSON, dtypes (F32 only), shapes,
 * offsets in bounds, sorted, contiguous, no gaps, no overlaps, nothing after the last
 * tensor. Returns 0 or a negative rssm_err_t with a message. */
int st_parse(const void *buf, size_t size, st_file_t *out, char *err, size_t errlen);
void st_free(st_file_t *f);

/* ---- layers (rssm_math.c), shared with the image encoder (rssm_conv.c) ---- */

/* The model's activation as a GEMM epilogue. */
rssm_gemm_act_t rssm__act(const rssm_model_t *m);

/* y[n, out] = act(x[n, in] W^T + b) on the layer's path (packed kernel or OpenBLAS). */
void rssm__linear(int n, int out, int in, const rssm_linear_t *l, const float *x, float *y,
                  rssm_gemm_act_t act);

/* Writes a formatted message into err (errbuf_vset: if any) and returns code. */
int rssm__fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static inline size_t rssm__align(size_t floats)
{
    return (floats + RSSM_ALIGN_FLOATS - 1) / RSSM_ALIGN_FLOATS * RSSM_ALIGN_FLOATS;
}

#endif
