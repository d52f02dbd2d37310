/*
 * workq.h: the planner worker pool: a fixed team of threads, the waiting jobs in
 * earliest-deadline-first order, and a list of finished jobs handed back to the event loop.
 *
 * Jobs are intrusive (embedded in the caller's objects), so submitting allocates nothing.
 * A worker always takes the waiting job whose deadline comes first (ties: the one
 * submitted first). The daemon submits at most one job per session.
 *
 * Preemption at iteration boundaries: a job carries `cost`, the worker time of its minimum
 * plan, and `finish_by`, when that plan must be done. A worker that is planning asks
 * workq_should_yield before each further iteration; it is told to stop when, after that
 * iteration, the waiting jobs taken in deadline order could no longer all get their
 * minimum plans in time (and no other worker has already stopped for them), so a long
 * plan never makes a more urgent one late, even when many arrive at once.
 *
 * A job that waited too long (its `expire` passed: not even a fallback computed by a
 * worker would be on time) can be taken back by the loop with workq_cancel_expired and
 * answered there. A finished job goes onto the done list and the pool calls `wake`
 * (uv_async_send in the daemon); the loop then takes the finished jobs with
 * workq_take_done. No libuv here, so the pool is tested on its own.
 */
#ifndef MPCD_WORKQ_H
#define MPCD_WORKQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct workq_job workq_job_t;

/* Runs on worker `worker` (0 .. nworkers-1). */
typedef void (*workq_fn)(workq_job_t *job, int worker);

struct workq_job {
    workq_fn fn;
    workq_job_t *next;
    /* CLOCK_MONOTONIC seconds, set by the submitter (see above); INFINITY: none */
    double deadline;  /* the EDF key */
    double cost;      /* worker seconds of its minimum plan */
    double finish_by; /* its minimum plan must be done by then */
    double expire;    /* after this, only the loop can still answer it in time */
    uint64_t order;   /* submission order, for ties (set by workq_submit) */
    bool queued;      /* submitted and not yet taken back by workq_take_done */
    bool running;     /* a worker took it */
};

typedef void (*workq_wake_cb)(void *ctx);
/* Worker `worker` enters (on) or leaves (off) a warm-up spell; called on that worker. */
typedef void (*workq_warm_cb)(void *ctx, int worker, bool on);

typedef struct workq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    workq_job_t *head; /* waiting, earliest deadline first */
    workq_job_t *done_head, *done_tail;
    atomic_int waiting; /* jobs waiting for a worker (changed under lock; spinning
                           workers read it without) */
    int running;        /* jobs a worker is running */
    int yielding;       /* workers that stopped a plan for a waiting job, not yet back */
    int fair;           /* iterations a plan may take while others wait (workq_set_fair) */
    bool *yielded;      /* [nworkers] worker i counts in `yielding` */
    uint64_t submitted; /* jobs submitted since start */
    uint64_t completed; /* jobs finished since start */
    bool stop;
    int nworkers;
    pthread_t *threads;
    workq_wake_cb wake;
    void *wake_ctx;
    double expect; /* when the next job is expected (workq_expect); INFINITY: unknown */
    double warm_s; /* warm-up spell before and after it; 0: off */
    workq_warm_cb warm;
    void *warm_ctx;
} workq_t;

/* Starts nworkers threads at niceness `nice` (0: as the caller). Returns 0 or a negative
 * errno. */
int workq_init(workq_t *q, int nworkers, int nice, workq_wake_cb wake, void *ctx);
/* Finishes the jobs already queued, joins the threads; done jobs stay on the done list. */
void workq_destroy(workq_t *q);

/* Inserts job by its deadline (job->fn, deadline, cost, finish_by and expire must be set). Any
 * thread. */
void workq_submit(workq_t *q, workq_job_t *job);

/* Asked by worker `worker` between two iterations of its plan, `done` of them complete:
 * true when it should stop now for the waiting jobs, no other worker having stopped for
 * them yet, because they could not all get their minimum plans in time if this plan went
 * on until `next_end` (CLOCK_MONOTONIC seconds), or because this plan already has its
 * fair share of iterations (workq_set_fair) and somebody waits. The fair share
 * keeps replies early under load: a plan that ran to the last moment others could wait
 * would leave every reply at the edge of its deadline. */
bool workq_should_yield(workq_t *q, int worker, int done, double next_end);

/* Warm-up: idle workers keep their CPU busy from warm_s before the next expected job
 * (workq_expect) until it comes, or warm_s after that time, and call warm(ctx, worker,
 * on) when such a spell starts and ends (the daemon keeps the worker's planner team awake
 * with it). Measured on a 2-vCPU VM: after the ~60 ms a 12.5 Hz robot leaves between
 * steps, the first ~10 ms of a plan ran at a third of the speed (the idle vCPUs' wake-up),
 * so a paced robot got plans of 23-28 ms where back to back took 19-21 ms. warm_s 0 turns
 * it off (an idle daemon then costs no CPU). Any thread. */
void workq_set_warm(workq_t *q, double warm_s, workq_warm_cb warm, void *ctx);

/* The next job is expected at t (CLOCK_MONOTONIC seconds; INFINITY: unknown). Any thread. */
void workq_expect(workq_t *q, double t);

/* Sets the fair share of iterations (INT_MAX: none; the default). Any thread. */
void workq_set_fair(workq_t *q, int iterations);

/* Takes back up to max waiting jobs whose `expire` is at or before now (CLOCK_MONOTONIC
 * seconds), earliest deadline first, into out; returns how many. They stay `queued` for
 * the caller, who answers them and submits them again or finishes them itself. */
int workq_cancel_expired(workq_t *q, double now, workq_job_t **out, int max);

/* The earliest `expire` among waiting jobs; INFINITY when none waits. */
double workq_next_expiry(workq_t *q);

/* Detaches the finished jobs in completion order; returns the first (NULL when none). */
workq_job_t *workq_take_done(workq_t *q);

/* Jobs waiting for a worker (not running). */
int workq_waiting(workq_t *q);

/* Jobs waiting or running, and jobs finished since start (for a liveness check). */
void workq_progress(workq_t *q, int *pending, uint64_t *completed);

#endif
