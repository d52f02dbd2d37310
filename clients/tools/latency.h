/*
 * latency.h: a growable set of latency samples and its summary (min, mean, percentiles).
 * Percentiles use the nearest-rank definition on the sorted samples.
 */
#ifndef MPC_TOOL_LATENCY_H
#define MPC_TOOL_LATENCY_H

#include <stddef.h>

typedef struct {
    double *v;      /* samples, in the caller's unit */
    size_t n, cap;
} latency_samples_t;

typedef struct {
    size_t count;
    double min, mean, p50, p90, p99, max;
} latency_summary_t;

/* Appends one sample; returns 0 or -1 when out of memory. */
int latency_add(latency_samples_t *s, double value);
/* Appends every sample of src to dst. */
int latency_merge(latency_samples_t *dst, const latency_samples_t *src);
/* Sorts the samples in place and summarises them (all zeros when empty). */
void latency_summarize(latency_samples_t *s, latency_summary_t *out);
/* Nearest-rank percentile (p in [0, 100]) of sorted samples; 0 when empty. */
double latency_percentile(const double *sorted, size_t n, double p);
void latency_free(latency_samples_t *s);

#endif
