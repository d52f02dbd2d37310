/*
 * workq.c: fixed worker pool over one mutex-protected, deadline-ordered list (see workq.h).
 *
 * The waiting list is kept sorted on insertion: the daemon has at most one job per
 * session, so it is short (tens to a few hundred), and the worker's take is O(1).
 */
#include "workq.h"

#include "mono.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct worker_arg {
    workq_t *q;
    int index;
    int nice;
} worker_arg_t;

static bool before(const workq_job_t *a, const workq_job_t *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->order < b->order);
}

static void unlink_job(workq_t *q, workq_job_t **link)
{
    workq_job_t *job = *link;
    *link = job->next;
    job->next = NULL;
    q->waiting--;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Waits (lock held) until a job waits or the pool stops. Inside the warm-up window around
 * the next expected job the worker keeps its CPU busy instead of sleeping, and has `warm`
 * keep its planner's team awake (see workq_set_warm). */
static void wait_for_job(workq_t *q, int worker, bool *warming)
{
    while (!q->head && !q->stop) {
        double now = mono_now(), from = q->expect - q->warm_s, until = q->expect + q->warm_s;
        bool warm = q->warm && q->warm_s > 0 && now >= from && now < until;
        if (warm != *warming) {
            *warming = warm;
            pthread_mutex_unlock(&q->lock);
            q->warm(q->warm_ctx, worker, warm);
            pthread_mutex_lock(&q->lock);
        } else if (warm) {
            pthread_mutex_unlock(&q->lock); /* spin without it: the loop submits */
            while (!atomic_load_explicit(&q->waiting, memory_order_relaxed) &&
                   mono_now() < until)
                cpu_relax();
            pthread_mutex_lock(&q->lock);
        } else if (q->warm && isfinite(from) && now < from) {
            struct timespec ts = mono_timespec(from);
            pthread_cond_timedwait(&q->cond, &q->lock, &ts);
        } else {
            pthread_cond_wait(&q->cond, &q->lock);
        }
    }
}

static void *worker_main(void *p)
{
    worker_arg_t a = *(worker_arg_t *)p;
    free(p);
    workq_t *q = a.q;
    if (a.nice > 0) /* Linux: niceness is per thread */
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), a.nice);
    bool warming = false;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        wait_for_job(q, a.index, &warming);
        if (!q->head)
            break; /* stopping and drained */
        workq_job_t *job = q->head;
        unlink_job(q, &q->head);
        job->running = true;
        q->running++;
        pthread_mutex_unlock(&q->lock);

        job->fn(job, a.index);
        if (warming) { /* (a plan ends its team's warm spell itself; a job may not plan) */
            warming = false;
            q->warm(q->warm_ctx, a.index, false);
        }

        pthread_mutex_lock(&q->lock);
        if (q->yielded[a.index]) { /* back: the job it stopped for is served or taken */
            q->yielded[a.index] = false;
            q->yielding--;
        }
        q->running--;
        q->completed++;
        job->running = false;
        job->next = NULL;
        if (q->done_tail)
            q->done_tail->next = job;
        else
            q->done_head = job;
        q->done_tail = job;
        /* The wake callback is async-signal-like (uv_async_send): safe under the lock, and
         * calling it here orders it after the job is visible on the done list. */
        if (q->wake)
            q->wake(q->wake_ctx);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int workq_init(workq_t *q, int nworkers, int nice, workq_wake_cb wake, void *ctx)
{
    memset(q, 0, sizeof *q);
    q->fair = INT_MAX;
    q->expect = INFINITY;
    q->wake = wake;
    q->wake_ctx = ctx;
    int rc = pthread_mutex_init(&q->lock, NULL);
    if (rc)
        return -rc;
    pthread_condattr_t ca; /* timed waits are on the one clock (mono.h) */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc) {
        pthread_mutex_destroy(&q->lock);
        return -rc;
    }
    q->threads = calloc((size_t)nworkers, sizeof *q->threads);
    q->yielded = calloc((size_t)nworkers, sizeof *q->yielded);
    if (!q->threads || !q->yielded) {
        workq_destroy(q);
        return -ENOMEM;
    }
    for (int i = 0; i < nworkers; i++) {
        worker_arg_t *a = malloc(sizeof *a);
        if (!a) {
            workq_destroy(q);
            return -ENOMEM;
        }
        a->q = q;
        a->index = i;
        a->nice = nice;
        if ((rc = pthread_create(&q->threads[i], NULL, worker_main, a))) {
            free(a);
            workq_destroy(q);
            return -rc;
        }
        q->nworkers++;
    }
    return 0;
}

void workq_destroy(workq_t *q)
{
    pthread_mutex_lock(&q->lock);
    q->stop = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < q->nworkers; i++)
        pthread_join(q->threads[i], NULL);
    free(q->threads);
    free(q->yielded);
    q->threads = NULL;
    q->yielded = NULL;
    q->nworkers = 0;
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
}

void workq_submit(workq_t *q, workq_job_t *job)
{
    job->queued = true;
    job->running = false;
    pthread_mutex_lock(&q->lock);
    job->order = q->submitted++;
    workq_job_t **link = &q->head;
    while (*link && !before(job, *link))
        link = &(*link)->next;
    job->next = *link;
    *link = job;
    q->waiting++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

void workq_set_warm(workq_t *q, double warm_s, workq_warm_cb warm, void *ctx)
{
    pthread_mutex_lock(&q->lock);
    q->warm_s = warm_s;
    q->warm = warm;
    q->warm_ctx = ctx;
    pthread_mutex_unlock(&q->lock);
}

void workq_expect(workq_t *q, double t)
{
    pthread_mutex_lock(&q->lock);
    if (t != q->expect) {
        q->expect = t;
        if (q->warm)
            pthread_cond_broadcast(&q->cond); /* sleepers recompute their wake-up */
    }
    pthread_mutex_unlock(&q->lock);
}

void workq_set_fair(workq_t *q, int iterations)
{
    pthread_mutex_lock(&q->lock);
    q->fair = iterations;
    pthread_mutex_unlock(&q->lock);
}

bool workq_should_yield(workq_t *q, int worker, int done, double next_end)
{
    bool yield = false;
    pthread_mutex_lock(&q->lock);
    if (q->head && !q->yielded[worker]) {
        /* Would the waiting jobs, served in deadline order by every worker from next_end
         * on, still get their minimum plans in time? (Workers already coming count as
         * free at next_end too: the check is the same for all.) */
        int owed = 0, k = 0;
        double t = next_end;
        for (const workq_job_t *j = q->head; j; j = j->next) {
            k++;
            t += j->cost / q->nworkers;
            if (t > j->finish_by) {
                owed = k; /* it and the ones before it need workers now */
                break;
            }
        }
        if (done >= q->fair)
            owed = q->waiting;
        if (owed > q->yielding) {
            q->yielded[worker] = true;
            q->yielding++;
            yield = true;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return yield;
}

int workq_cancel_expired(workq_t *q, double now, workq_job_t **out, int max)
{
    int n = 0;
    pthread_mutex_lock(&q->lock);
    for (workq_job_t **link = &q->head; *link && n < max;) {
        if ((*link)->expire <= now) {
            out[n++] = *link;
            unlink_job(q, link);
        } else {
            link = &(*link)->next;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

double workq_next_expiry(workq_t *q)
{
    double t = INFINITY;
    pthread_mutex_lock(&q->lock);
    for (const workq_job_t *j = q->head; j; j = j->next)
        t = j->expire < t ? j->expire : t;
    pthread_mutex_unlock(&q->lock);
    return t;
}

workq_job_t *workq_take_done(workq_t *q)
{
    pthread_mutex_lock(&q->lock);
    workq_job_t *list = q->done_head;
    q->done_head = q->done_tail = NULL;
    pthread_mutex_unlock(&q->lock);
    for (workq_job_t *j = list; j; j = j->next)
        j->queued = false;
    return list;
}

int workq_waiting(workq_t *q)
{
    pthread_mutex_lock(&q->lock);
    int n = q->waiting;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void workq_progress(workq_t *q, int *pending, uint64_t *completed)
{
    pthread_mutex_lock(&q->lock);
    *pending = q->waiting + q->running;
    *completed = q->completed;
    pthread_mutex_unlock(&q->lock);
}
