/*
 * mono.h: the one clock of mpcd: CLOCK_MONOTONIC, in seconds, as a double.
 *
 * Every time inside the daemon, the planner and the tools is a point on this clock or a
 * difference of two (a double has nanosecond resolution for centuries of uptime). A
 * request's deadline is fixed as mono_now() + its budget when its frame is read and goes
 * to the planner as that one number; INFINITY means "no deadline".
 */
#ifndef MPC_MONO_H
#define MPC_MONO_H

#include <math.h>
#include <time.h>

static inline double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* For the clock's consumers that need a timespec (pthread_cond_timedwait). */
static inline struct timespec mono_timespec(double t)
{
    double s = floor(t);
    long ns = (long)((t - s) * 1e9);
    return (struct timespec){(time_t)s, ns > 999999999L ? 999999999L : ns};
}

#endif
