/*
 * admission.c: the capacity sum behind admission control (see admission.h).
 */
#include "admission.h"

#include <stdio.h>

#include "errbuf.h"

/* EWMA weights: the per-step samples are noisy (preemption), the estimate must not be. */
#define COST_EWMA 0.02
/* Before the first step: a belief update is small next to an iteration. */
#define BELIEF_FIRST_GUESS_S 0.0005

void admission_init(admission_t *a, int workers, double max_load, int min_iterations)
{
    *a = (admission_t){.workers = workers > 0 ? workers : 1,
                       .max_load = max_load,
                       .min_iterations = min_iterations,
                       .belief_s = BELIEF_FIRST_GUESS_S};
}

void admission_set_model(admission_t *a, double iteration_s)
{
    if (iteration_s > 0)
        a->iteration_s = iteration_s;
}

void admission_observe(admission_t *a, double belief_s, double iteration_s)
{
    if (belief_s > 0)
        a->belief_s += COST_EWMA * (belief_s - a->belief_s);
    if (iteration_s > 0)
        a->iteration_s = a->iteration_s > 0
                             ? a->iteration_s + COST_EWMA * (iteration_s - a->iteration_s)
                             : iteration_s;
}

double admission_plan_cost(const admission_t *a)
{
    return a->belief_s + a->min_iterations * a->iteration_s;
}

double admission_load(const admission_t *a)
{
    return a->rate_sum * admission_plan_cost(a) / a->workers;
}

static double load_with(const admission_t *a, double rate_hz)
{
    return (a->rate_sum + rate_hz) * admission_plan_cost(a) / a->workers;
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
