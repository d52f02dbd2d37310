/*
 * deadline.h: absolute deadlines on the monotonic clock, turned into poll() timeouts.
 * Private to libmpcclient.
 */
#ifndef MPC_CLIENT_DEADLINE_H
#define MPC_CLIENT_DEADLINE_H

#include <stdint.h>
#include <time.h>

static inline int64_t mpc_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t mpc_deadline_in(int timeout_ms)
{
    return mpc_monotonic_us() + (int64_t)timeout_ms * 1000;
}

/* Milliseconds left for poll(), rounded up so a poll never returns just before the
 * deadline; 0 once it has passed. */
static inline int mpc_deadline_left_ms(int64_t deadline_us)
{
    int64_t left = deadline_us - mpc_monotonic_us();
    if (left <= 0)
        return 0;
    return (int)((left + 999) / 1000);
}

#endif
