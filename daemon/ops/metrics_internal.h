/*
 * metrics_internal.h: what the renderers (status.c) read from metrics.c beyond the public
 * API: a consistent copy of one cumulative Prometheus histogram.
 */
#ifndef MPCD_OPS_METRICS_INTERNAL_H
#define MPCD_OPS_METRICS_INTERNAL_H

#include "metrics.h"

#define MPCD_HIST_MAX_BOUNDS 24

typedef struct mpcd_histogram {
    const char *name; /* Prometheus family, e.g. "mpcd_step_plan_seconds" */
    const char *help;
    int nbounds; /* finite upper bounds; +Inf is implicit */
    const double *bounds;
    uint64_t cumulative[MPCD_HIST_MAX_BOUNDS + 1]; /* le=bounds[i] ..., last = +Inf = count */
    double sum;
    uint64_t count;
} mpcd_histogram_t;

void mpcd_metrics_histogram(mpcd_metrics_t *m, mpcd_series_t series, mpcd_histogram_t *out);

/* Counters outside mpcd_totals_t. */
uint64_t mpcd_metrics_candidates(mpcd_metrics_t *m);
double mpcd_metrics_last_load_s(mpcd_metrics_t *m); /* NAN before the first attempt */

#endif
