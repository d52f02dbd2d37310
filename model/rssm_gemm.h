/*
 * rssm_gemm.h: librssm's own matrix kernel for its linear layers (AVX2 + FMA).
 *
 * Every layer computes Y[n, out] = act([X1, X2] W^T + b) on the same few weights millions of
 * times per second. OpenBLAS packs W on every call, writes Y and then the bias/activation
 * pass reads it again; for the planner's 50-500 row batches that costs a third of the time.
 * Here each weight is packed once when the model is loaded (panels of 16 outputs, k-major,
 * zero-padded, the bias after them), and 6x16 register tiles (12x8 for a last panel of at
 * most 8 outputs) add the bias and apply the activation before they store. Two inputs ([z, a],
 * [h, z], ...) are read in place, like the BLAS path, so nothing is concatenated.
 *
 * Without AVX2 and FMA (or with MPC_RSSM_GEMM=blas in the environment when a model is
 * loaded) librssm keeps its OpenBLAS path; both give the same results within float rounding.
 */
#ifndef MPC_RSSM_GEMM_H
#define MPC_RSSM_GEMM_H

#include <stdbool.h>
#include <stddef.h>

/* Activation applied to a layer's output (the model's ELU or ReLU, or none). */
typedef enum { RSSM_GEMM_LINEAR, RSSM_GEMM_RELU, RSSM_GEMM_ELU } rssm_gemm_act_t;

/* Whether this CPU runs the kernel and the environment did not ask for OpenBLAS
 * (MPC_RSSM_GEMM=blas); the loader asks once per model. */
bool rssm_gemm_enabled(void);

/* Floats that rssm_gemm_pack writes for an [out, in] layer (a multiple of 16). */
size_t rssm_gemm_packed_size(int out, int in);

/* Packs w [out, in] (row-major, rows `in` floats long) and b [out] into dst, which must be
 * 32-byte aligned and rssm_gemm_packed_size(out, in) floats long. */
void rssm_gemm_pack(float *dst, const float *w, const float *b, int out, int in);

/* y[n, out] (rows ldy floats apart) = act(x1[n, k1] W[:, :k1]^T + x2[n, k2] W[:, k1:]^T + b)
 * with W and b packed by rssm_gemm_pack for in = k1 + k2. x2 may be NULL when k2 is 0.
 * Only call it when rssm_gemm_enabled(). */
void rssm_gemm(int n, const float *x1, int ldx1, int k1, const float *x2, int ldx2, int k2,
               const float *packed, int out, rssm_gemm_act_t act, float *y, int ldy);

#endif
