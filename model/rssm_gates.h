/*
 * rssm_gates.h: torch.nn.GRUCell's elementwise gates, the largest cost of an imagination
 * step after the matrix products.
 *
 * Given gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh, each [n, 3D] in the order r, z, n:
 *   r = sigmoid(gi_r + gh_r), u = sigmoid(gi_z + gh_z), c = tanh(gi_n + r * gh_n),
 *   h_next = c + u * (h - c).
 * Two forms of the same arithmetic (rssm_approx.h's exp): plain C that the compiler
 * vectorises, and AVX2 + FMA intrinsics for the CPUs that run librssm's kernel. The second
 * exists because the plain form is bound by the latency of one long chain per element
 * (three exps and three divisions in a row, 2.3 ns per element); the intrinsic form computes
 * r and u for the whole row first, then c, and keeps the clamps as vmin/vmax (the compiler
 * may not, because of NaN and signed-zero rules), which takes it to about 1.4 ns.
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
