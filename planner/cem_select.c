/*
 * cem_select.c: top-K selection (a bounded min-heap, O(n log k), no allocation) and the
 * per-time-step diagonal Gaussian refit of CEM, plain or exponentially weighted (MPPI).
 * Sums are accumulated in double: K may be large and the refit is cheap next to imagination.
 */
#include "cem_select.h"

#include <math.h>

#include "rssm_approx.h"

/* Candidate i ranks before j. Returns are sanitised by the caller (finite). */
static inline int better(const float *ret, int i, int j)
{
    return ret[i] > ret[j] || (ret[i] == ret[j] && i < j);
}

/* Min-heap on rank: idx[0] is the worst kept candidate. */
static void sift_down(const float *ret, int *idx, int size, int pos)
{
    for (;;) {
        int l = 2 * pos + 1, r = l + 1, w = pos;
        if (l < size && better(ret, idx[w], idx[l]))
            w = l;
        if (r < size && better(ret, idx[w], idx[r]))
            w = r;
        if (w == pos)
            return;
        int tmp = idx[pos];
        idx[pos] = idx[w];
        idx[w] = tmp;
        pos = w;
    }
}

void cem_top_k(const float *ret, int n, int k, int *idx)
{
    for (int i = 0; i < k; i++)
        idx[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(ret, idx, k, i);
    for (int i = k; i < n; i++) {
        if (better(ret, i, idx[0])) {
            idx[0] = i;
            sift_down(ret, idx, k, 0);
        }
    }
    /* heap sort: move the worst to the end repeatedly, leaving idx best first */
    for (int size = k; size > 1; size--) {
        int tmp = idx[0];
        idx[0] = idx[size - 1];
        idx[size - 1] = tmp;
        sift_down(ret, idx, size - 1, 0);
    }
}

void cem_refit_elites(const float *act, int ldj, int H, int A, const int *idx, int k,
                      float *mean, float *std)
{
    for (int t = 0; t < H; t++) {
        const float *step = act + (size_t)t * ldj * A;
        for (int a = 0; a < A; a++) {
            double s = 0.0, s2 = 0.0;
            for (int e = 0; e < k; e++)
                s += step[(size_t)idx[e] * A + a];
            double mu = s / k;
            for (int e = 0; e < k; e++) {
                double d = step[(size_t)idx[e] * A + a] - mu;
                s2 += d * d;
            }
            mean[t * A + a] = (float)mu;
            std[t * A + a] = (float)sqrt(s2 / k);
        }
    }
}

float cem_refit_weighted(const float *act, int ldj, int H, int A, const float *ret, int n,
                         float temperature, float *w, float *mean, float *std)
{
    float best = ret[0];
    for (int j = 1; j < n; j++)
        best = ret[j] > best ? ret[j] : best;
    double total = 0.0;
    for (int j = 0; j < n; j++) {
        w[j] = exp_approx(temperature * (ret[j] - best)); /* <= 1, the best gets 1 */
        total += w[j];
    }
    double sq = 0.0;
    for (int j = 0; j < n; j++) {
        w[j] = (float)(w[j] / total);
        sq += (double)w[j] * w[j];
    }
    for (int t = 0; t < H; t++) {
        const float *step = act + (size_t)t * ldj * A;
        for (int a = 0; a < A; a++) {
            double mu = 0.0, var = 0.0;
            for (int j = 0; j < n; j++)
                mu += (double)w[j] * step[(size_t)j * A + a];
            for (int j = 0; j < n; j++) {
                double d = step[(size_t)j * A + a] - mu;
                var += (double)w[j] * d * d;
            }
            mean[t * A + a] = (float)mu;
            std[t * A + a] = (float)sqrt(var);
        }
    }
    return (float)(1.0 / sq);
}
