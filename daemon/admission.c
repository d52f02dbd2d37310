/*
 * admission.c: the capacity sum behind admission control (see admission.h).
 */
#include "admission.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

/* Before the first step: small next to an iteration (shipped model: belief update
 * 0.01-0.03 ms; PlaNet size ~0.1 ms). */
#define FIXED_FIRST_GUESS_S 0.0001

void admission_init(admission_t *a, int workers, double max_load, int min_iterations)
{
    *a = (admission_t){.workers = workers > 0 ? workers : 1,
                       .max_load = max_load,
                       .min_iterations = min_iterations,
                       .fixed_s = FIXED_FIRST_GUESS_S};
}

void admission_set_model(admission_t *a, double iteration_s)
{
    if (iteration_s > 0)
        a->iteration_s = iteration_s;
    a->iterations.n = a->iterations.next = 0; /* the old model's samples say nothing now */
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Adds a sample to w and returns the median of the window: robust to the spells when a
 * plan is preempted for tens of ms (measured: a burst of 64 clients starting made some
 * plans' iterations ~10x slower), where a mean would close the door on every robot. */
static double window_add(admission_window_t *w, double sample)
{
    w->v[w->next] = sample;
    w->next = (w->next + 1) % ADMISSION_WINDOW;
    if (w->n < ADMISSION_WINDOW)
        w->n++;
    double tmp[ADMISSION_WINDOW];
    memcpy(tmp, w->v, sizeof(double) * (size_t)w->n);
    qsort(tmp, (size_t)w->n, sizeof *tmp, cmp_double);
    return w->n % 2 ? tmp[w->n / 2] : 0.5 * (tmp[w->n / 2 - 1] + tmp[w->n / 2]);
}

void admission_observe(admission_t *a, double fixed_s, double iteration_s)
{
    /* The first steps after a start or a swap run beside whatever starts with them (eight
     * simulators loading their models made the first plans 3x slower): the estimates
     * move only once the window holds ADMISSION_MIN_SAMPLES. */
    double m;
    if (fixed_s > 0 && (m = window_add(&a->fixed, fixed_s)) &&
        a->fixed.n >= ADMISSION_MIN_SAMPLES)
        a->fixed_s = m;
    if (iteration_s > 0 && (m = window_add(&a->iterations, iteration_s)) &&
        a->iterations.n >= ADMISSION_MIN_SAMPLES)
        a->iteration_s = m;
}

double admission_plan_cost(const admission_t *a)
{
    return a->fixed_s + a->min_iterations * a->iteration_s;
}

double admission_load(const admission_t *a)
{
    return a->rate_sum * admission_plan_cost(a) / a->workers;
}

static double load_with(const admission_t *a, double rate_hz)
{
    return (a->rate_sum + rate_hz) * admission_plan_cost(a) / a->workers;
}

int admission_fair_iterations(const admission_t *a)
{
    int floor_it = a->min_iterations > 0 ? a->min_iterations : 1;
    if (a->rate_sum <= 0 || a->iteration_s <= 0)
        return INT_MAX;
    double per_plan = a->workers / a->rate_sum - a->fixed_s;
    double it = per_plan / a->iteration_s;
    return it >= INT_MAX ? INT_MAX : it < floor_it ? floor_it : (int)it;
}

bool admission_full(const admission_t *a, double rate_hz)
{
    return a->min_iterations > 0 && load_with(a, rate_hz) > a->max_load;
}

bool admission_admit(admission_t *a, double rate_hz, char *why, size_t whylen)
{
    if (admission_full(a, rate_hz)) {
        double cost = admission_plan_cost(a);
        errbuf_set(why, whylen,
                   "full: the %d admitted session(s) take %.0f%% of %d planner worker(s) at "
                   "%d CEM iteration(s) per plan (%.2f ms each); one more at %.3g Hz would "
                   "take %.0f%%, above max-load %.0f%%",
                   a->sessions, 100.0 * admission_load(a), a->workers, a->min_iterations,
                   cost * 1e3, rate_hz, 100.0 * load_with(a, rate_hz), 100.0 * a->max_load);
        a->refused++;
        return false;
    }
    a->rate_sum += rate_hz;
    a->sessions++;
    a->admitted++;
    return true;
}

void admission_readmit(admission_t *a, double rate_hz)
{
    a->rate_sum += rate_hz;
    a->sessions++;
}

void admission_leave(admission_t *a, double rate_hz)
{
    if (a->sessions <= 0)
        return;
    a->rate_sum -= rate_hz;
    if (--a->sessions == 0 || a->rate_sum < 0)
        a->rate_sum = 0; /* no drift left behind */
}
