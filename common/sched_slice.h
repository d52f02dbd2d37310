/*
 * sched_slice.h: ask the kernel for a short time slice for the calling thread.
 *
 * Linux's EEVDF scheduler (6.6+) lets a waking thread preempt the running one only when
 * its virtual deadline comes first, and a deadline is one slice away (default ~3 ms on 2
 * CPUs). A thread that sleeps most of the time and must answer at once (the daemon's event
 * loop, a robot's client) asks for a short slice (Linux 6.12+: sched_attr.sched_runtime
 * for SCHED_OTHER), so it preempts long-running work (the planner) on wake-up instead of
 * waiting for that work's slice to end. Measured on 2 vCPUs with 16 robots: the loop
 * waited up to 3.5 ms for a CPU before; see daemon/README.md.
 *
 * Unprivileged; on older kernels the call fails with EINVAL and nothing changes.
 */
#ifndef MPC_SCHED_SLICE_H
#define MPC_SCHED_SLICE_H

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's struct sched_attr (uapi linux/sched/types.h), spelled out so no kernel
 * header is needed. */
struct mpc_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
    uint32_t sched_util_min, sched_util_max;
};

/* Sets the calling thread's slice (SCHED_OTHER, its niceness kept) to `seconds` (the
 * kernel accepts 0.1 .. 100 ms). 0 or a negative errno. */
static inline int sched_slice_request(double seconds)
{
#ifdef SYS_sched_setattr
    struct mpc_sched_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.sched_policy = SCHED_OTHER;
    a.sched_nice = 0;
    /* keep the niceness: read it back first */
    struct mpc_sched_attr cur;
    memset(&cur, 0, sizeof cur);
    if (syscall(SYS_sched_getattr, 0, &cur, (unsigned)sizeof cur, 0) == 0)
        a.sched_nice = cur.sched_nice;
    a.sched_runtime = (uint64_t)(seconds * 1e9);
    if (syscall(SYS_sched_setattr, 0, &a, 0) != 0)
        return -errno;
    return 0;
#else
    (void)seconds;
    return -ENOSYS;
#endif
}

#endif
