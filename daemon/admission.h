/*
 * admission.h: admission control: which sessions the planner workers can serve.
 *
 * A session costs its step rate times the cost of its minimum plan (the step's worker time
 * outside CEM plus `min-iterations` CEM iterations), as a fraction of one worker's time. A
 * Hello is admitted while the admitted sessions' sum, with the newcomer's, stays within
 * `max-load` of the workers; otherwise it is refused (OVERLOADED), so one robot too many
 * never makes every robot worse. The costs are measured: the planners' calibration at
 * model load, then the median over the last steps served, so the capacity follows the machine
 * (another process taking a core, a slower model after a swap).
 *
 * Loop thread only; no libuv, no protobuf: tested on its own.
 */
#ifndef MPCD_ADMISSION_H
#define MPCD_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seconds a refused client is told to wait before trying again. */
#define ADMISSION_RETRY_AFTER_S 2.0

/* Served steps the cost estimates are the median of, and how many must be in before
 * they replace the model's calibration. */
#define ADMISSION_WINDOW      64
#define ADMISSION_MIN_SAMPLES 16

typedef struct admission_window {
    double v[ADMISSION_WINDOW];
    int n, next;
} admission_window_t;

typedef struct admission {
    int workers;
    double max_load;    /* fraction of the workers' time minimum plans may take */
    int min_iterations; /* CEM iterations each admitted plan must get; 0: admit all */
    double iteration_s; /* one full CEM iteration: the median of the recent steps' (the
                           model's calibration before any; 0: no model yet) */
    double fixed_s;     /* a step's worker time outside its CEM iterations (belief update,
                           waking the team, hand-off): the median of the recent steps' */
    admission_window_t fixed, iterations; /* the last ADMISSION_WINDOW samples */
    double rate_sum;                      /* steps per second of the admitted sessions */
    int sessions;                         /* admitted and still open */
    uint64_t admitted, refused;           /* since start */
} admission_t;

void admission_init(admission_t *a, int workers, double max_load, int min_iterations);

/* A model was loaded: its planners' calibrated iteration cost replaces the estimate. */
void admission_set_model(admission_t *a, double iteration_s);

/* One step was served: its worker time outside the CEM iterations and its measured time
 * per iteration (0 when it did not plan) join the windows the estimates are medians of. */
void admission_observe(admission_t *a, double fixed_s, double iteration_s);

/* Seconds of worker time one minimum plan takes. */
double admission_plan_cost(const admission_t *a);

/* Fraction of the workers' time the admitted sessions' minimum plans take now. */
double admission_load(const admission_t *a);

/* Admits a session stepping at rate_hz (> 0): true and counted, or false with the reason
 * in why (counted as refused). */
bool admission_admit(admission_t *a, double rate_hz, char *why, size_t whylen);

/* Puts back a session that admission_leave took out (its second Hello was refused, so
 * it keeps its place); not counted as a new admission. */
void admission_readmit(admission_t *a, double rate_hz);

/* A session admitted at rate_hz ended. */
void admission_leave(admission_t *a, double rate_hz);

/* The iterations a plan may take while other steps wait: the admitted sessions' share of
 * the workers' time, at least min_iterations (1 when admission is off); INT_MAX while no
 * session is admitted. */
int admission_fair_iterations(const admission_t *a);

/* True when a session at rate_hz would be refused now (/readyz says "full"). */
bool admission_full(const admission_t *a, double rate_hz);

#endif
