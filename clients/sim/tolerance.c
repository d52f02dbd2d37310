/*
 * tolerance.c: dm_control's rewards.tolerance() for the sigmoids the tasks use.
 */
#include "tolerance.h"

#include <math.h>

double sim_tolerance(double x, double lo, double hi, double margin, sim_sigmoid_t sigmoid,
                     double value_at_margin)
{
    if (x >= lo && x <= hi)
        return 1.0;
    if (margin <= 0.0 || isnan(x))
        return 0.0;
    double d = (x < lo ? lo - x : x - hi) / margin;
    double s;
    switch (sigmoid) {
    case SIM_SIGMOID_LINEAR:
        s = d * (1.0 - value_at_margin);
        return s < 1.0 ? 1.0 - s : 0.0;
    case SIM_SIGMOID_QUADRATIC:
        s = d * sqrt(1.0 - value_at_margin);
        return s < 1.0 ? 1.0 - s * s : 0.0;
    case SIM_SIGMOID_GAUSSIAN:
    default:
        s = d * sqrt(-2.0 * log(value_at_margin));
        return exp(-0.5 * s * s);
    }
}
