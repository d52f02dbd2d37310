/*
 * rssm_gates.h: torch.nn.GRUCell's elementwise gates, the largest cost of an imagination
 * step after the matrix products.
 *
 * Given gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh, each [n, 3D] in the order r, z, n:
 *   r = sigmoid(gi_r + gh_r), u = sigmoid(gi_z + gh_z), c = tanh(gi_n + r * gh_n),
 *   h_next = c + u * (h - c).
 * Two forms of the same arithmetic (rssm_approx.h's exp), both taking a row in two passes
 * (see rssm_gates.c): plain C that the compiler vectorises, and AVX2 + FMA intrinsics for
 * the CPUs that run librssm's kernel. In the plain form GCC keeps the clamps as
 * compare-and-blend (NaN and signed-zero rules forbid vmin/vmax) and its AVX2 clone has no
 * FMA: 2.3 ns per element at PlaNet sizes, against 1.5 ns for the intrinsic form (and 2.3
 * for the one-pass plain form that came before), measured on one Zen 3 core.
 */
#ifndef MPC_RSSM_GATES_H
#define MPC_RSSM_GATES_H

#include <stdbool.h>

/* h_next[n, D] from gi [n, 3D], gh and h, whose rows are ldh * 3D (ldh * D) floats apart
 * (ldh 0 when every row starts from the same h). gi is scratch: its r and z thirds are
 * overwritten with the gate values. avx2: use the intrinsic form (only where the CPU has
 * AVX2 and FMA, which rssm_gemm_enabled() checked when the model loaded). */
void rssm_gru_gates(int n, int D, float *gi, const float *gh, const float *h, int ldh,
                    float *h_next, bool avx2);

#endif
