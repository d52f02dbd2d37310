/*
 * workq.c: fixed worker pool over one mutex-protected FIFO (see workq.h).
 */
#include "workq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker_arg {
    workq_t *q;
    int index;
} worker_arg_t;

static void *worker_main(void *p)
{
    worker_arg_t a = *(worker_arg_t *)p;
    free(p);
    workq_t *q = a.q;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->cond, &q->lock);
        if (!q->head)
            break; /* stopping and drained */
        workq_job_t *job = q->head;
        q->head = job->next;
        if (!q->head)
            q->tail = NULL;
        q->waiting--;
        q->running++;
        pthread_mutex_unlock(&q->lock);

        job->fn(job, a.index);

        pthread_mutex_lock(&q->lock);
        q->running--;
        q->completed++;
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

int workq_init(workq_t *q, int nworkers, workq_wake_cb wake, void *ctx)
{
    memset(q, 0, sizeof *q);
    q->wake = wake;
    q->wake_ctx = ctx;
    int rc = pthread_mutex_init(&q->lock, NULL);
    if (rc)
        return -rc;
    if ((rc = pthread_cond_init(&q->cond, NULL))) {
        pthread_mutex_destroy(&q->lock);
        return -rc;
    }
    if (!(q->threads = calloc((size_t)nworkers, sizeof *q->threads))) {
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
    q->threads = NULL;
    q->nworkers = 0;
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
}

void workq_submit(workq_t *q, workq_job_t *job)
{
    job->next = NULL;
    job->queued = true;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    q->waiting++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
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
