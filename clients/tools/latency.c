/*
 * latency.c: latency sample sets and their summaries (see latency.h).
 */
#include "latency.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int reserve(latency_samples_t *s, size_t need)
{
    if (need <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < need)
        cap *= 2;
    double *v = realloc(s->v, cap * sizeof(*v));
    if (v == NULL)
        return -1;
    s->v = v;
    s->cap = cap;
    return 0;
}

int latency_add(latency_samples_t *s, double value)
{
    if (reserve(s, s->n + 1) < 0)
        return -1;
    s->v[s->n++] = value;
    return 0;
}

int latency_merge(latency_samples_t *dst, const latency_samples_t *src)
{
    if (src->n == 0)
        return 0;
    if (reserve(dst, dst->n + src->n) < 0)
        return -1;
    memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
    dst->n += src->n;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double latency_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0.0;
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

void latency_summarize(latency_samples_t *s, latency_summary_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s->n == 0)
        return;
    qsort(s->v, s->n, sizeof(*s->v), cmp_double);
    double sum = 0.0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    out->count = s->n;
    out->min = s->v[0];
    out->max = s->v[s->n - 1];
    out->mean = sum / (double)s->n;
    out->p50 = latency_percentile(s->v, s->n, 50);
    out->p90 = latency_percentile(s->v, s->n, 90);
    out->p99 = latency_percentile(s->v, s->n, 99);
}

void latency_free(latency_samples_t *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}
