/*
 * workq.h: the planner worker pool: a fixed team of threads, a FIFO of jobs, and a list of
 * finished jobs handed back to the event loop.
 *
 * Jobs are intrusive (embedded in the caller's objects), so submitting allocates nothing.
 * The daemon submits at most one job per session, which makes the FIFO fair across
 * sessions: nobody gets a second plan before everyone queued ahead has had one. A finished
 * job goes onto the done list and the pool calls `wake` (uv_async_send in the daemon); the
 * loop then takes the finished jobs with workq_take_done. No libuv here, so the pool is
 * tested on its own.
 */
#ifndef MPCD_WORKQ_H
#define MPCD_WORKQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct workq_job workq_job_t;

/* Runs on worker `worker` (0 .. nworkers-1). */
typedef void (*workq_fn)(workq_job_t *job, int worker);

struct workq_job {
    workq_fn fn;
    workq_job_t *next;
    bool queued; /* submitted and not yet taken back by workq_take_done */
};

typedef void (*workq_wake_cb)(void *ctx);

typedef struct workq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    workq_job_t *head, *tail; /* waiting */
    workq_job_t *done_head, *done_tail;
    int waiting;        /* jobs in the FIFO */
    int running;        /* jobs a worker is running */
    uint64_t completed; /* jobs finished since start */
    bool stop;
    int nworkers;
    pthread_t *threads;
    workq_wake_cb wake;
    void *wake_ctx;
} workq_t;

/* Starts nworkers threads. Returns 0 or a negative errno. */
int workq_init(workq_t *q, int nworkers, workq_wake_cb wake, void *ctx);
/* Finishes the jobs already queued, joins the threads; done jobs stay on the done list. */
void workq_destroy(workq_t *q);

/* Appends job to the FIFO (job->fn must be set). Any thread. */
void workq_submit(workq_t *q, workq_job_t *job);

/* Detaches the finished jobs in completion order; returns the first (NULL when none). */
workq_job_t *workq_take_done(workq_t *q);

/* Jobs waiting for a worker (not running). */
int workq_waiting(workq_t *q);

/* Jobs waiting or running, and jobs finished since start (for a liveness check). */
void workq_progress(workq_t *q, int *pending, uint64_t *completed);

#endif
