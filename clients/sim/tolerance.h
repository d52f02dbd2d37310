/*
 * tolerance.h: dm_control's rewards.tolerance(), the shaping every task's reward uses.
 *
 * 1 when lo <= x <= hi; outside, a sigmoid of the distance d to the nearest bound in units
 * of margin, equal to value_at_margin at d = 1 (margin 0: 0 outside the bounds).
 */
#ifndef MPC_SIM_TOLERANCE_H
#define MPC_SIM_TOLERANCE_H

typedef enum {
    SIM_SIGMOID_GAUSSIAN,  /* exp(-(d s)^2 / 2), s = sqrt(-2 ln v) */
    SIM_SIGMOID_LINEAR,    /* 1 - d s where d s < 1, else 0, s = 1 - v */
    SIM_SIGMOID_QUADRATIC, /* 1 - (d s)^2 where d s < 1, else 0, s = sqrt(1 - v) */
} sim_sigmoid_t;

double sim_tolerance(double x, double lo, double hi, double margin, sim_sigmoid_t sigmoid,
                     double value_at_margin);

/* dm_control's defaults: gaussian with value 0.1 at the margin. */
static inline double sim_tolerance_gauss(double x, double lo, double hi, double margin)
{
    return sim_tolerance(x, lo, hi, margin, SIM_SIGMOID_GAUSSIAN, 0.1);
}

#endif
