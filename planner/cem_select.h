/*
 * cem_select.h: elite selection and the Gaussian refit of CEM (private to libplanner).
 *
 * Candidate actions are stored time-major: act[(t * ldj + j) * A + a] for step t,
 * candidate j and action dimension a, so each imagination step reads one contiguous block.
 */
#ifndef MPC_CEM_SELECT_H
#define MPC_CEM_SELECT_H

/* Indices of the k best of ret[0..n) into idx[0..k), best first. Ties go to the lower
 * index, so the choice is deterministic. Requires 1 <= k <= n; allocates nothing. */
void cem_top_k(const float *ret, int n, int k, int *idx);

/* mean/std [H, A] of the candidates idx[0..k) (population std, as PlaNet). */
void cem_refit_elites(const float *act, int ldj, int H, int A, const int *idx, int k,
                      float *mean, float *std);

/* MPPI-style refit over all n candidates with weights exp(temperature * (ret - max ret)),
 * normalised; w [n] is scratch. Returns the effective sample size 1 / sum(w^2). */
float cem_refit_weighted(const float *act, int ldj, int H, int A, const float *ret, int n,
                         float temperature, float *w, float *mean, float *std);

#endif
