/*
 * admission.c: the capacity sum behind admission control (see admission.h).
 */
#include "admission.h"

#include <limits.h>
#include <stdio.h>

#include "errbuf.h"

/* EWMA weights: the per-step samples are noisy (preemption), the estimate must not be. */
#define COST_EWMA 0.02
#define OUTLIER   2.0
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
    a->samples = 0;
}

/* One sample into an EWMA, a spike clipped to OUTLIER times the estimate: one plan
 * preempted for 30 ms must not close the door on every robot (measured: a burst of 64
 * clients starting made one plan's iterations ~10x slower). */
static void ewma(double *est, double sample, uint64_t n)
{
    if (!(sample > 0))
        return;
    if (*est <= 0) {
        *est = sample;
        return;
    }
    if (sample > OUTLIER * *est)
        sample = OUTLIER * *est;
    /* a plain mean over the first samples: a calibration that was off is forgotten fast */
    double w = n < 1 / COST_EWMA ? 1.0 / (double)(n + 2) : COST_EWMA;
    *est += w * (sample - *est);
}

void admission_observe(admission_t *a, double fixed_s, double iteration_s)
{
    ewma(&a->fixed_s, fixed_s, a->samples);
    ewma(&a->iteration_s, iteration_s, a->samples);
    a->samples++;
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
