/*
 * test_workq.c: the worker pool: every job runs exactly once on a valid worker index,
 * one worker runs jobs in FIFO order, finished jobs come back through the done list with
 * the wake callback called, and destroy drains what was queued.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "workq.h"

typedef struct job {
    workq_job_t base; /* first */
    int index;
    int worker;
    int runs;
} job_t;

static atomic_int order_pos;
static int order[64];
static atomic_int wakes;

static void run(workq_job_t *j, int worker)
{
    job_t *x = (job_t *)j;
    x->worker = worker;
    x->runs++;
    order[atomic_fetch_add(&order_pos, 1)] = x->index;
}

static void wake(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&wakes, 1);
}

static int drain(workq_t *q, int expect)
{
    int got = 0;
    while (got < expect) {
        workq_job_t *j = workq_take_done(q);
        while (j) {
            workq_job_t *next = j->next;
            assert_false(j->queued);
            got++;
            j = next;
        }
        if (got < expect)
            sched_yield();
    }
    return got;
}

static void test_fifo_one_worker(void **state)
{
    (void)state;
    workq_t q;
    job_t jobs[64];
    atomic_store(&order_pos, 0);
    atomic_store(&wakes, 0);
    assert_int_equal(workq_init(&q, 1, wake, NULL), 0);
    for (int i = 0; i < 64; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].base.fn = run;
        jobs[i].index = i;
        workq_submit(&q, &jobs[i].base);
    }
    assert_int_equal(drain(&q, 64), 64);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(order[i], i);
        assert_int_equal(jobs[i].runs, 1);
        assert_int_equal(jobs[i].worker, 0);
    }
    assert_int_equal(atomic_load(&wakes), 64);
    assert_int_equal(workq_waiting(&q), 0);
    workq_destroy(&q);
}

static void test_many_workers_resubmit(void **state)
{
    (void)state;
    workq_t q;
    job_t jobs[16];
    atomic_store(&order_pos, 0);
    assert_int_equal(workq_init(&q, 4, wake, NULL), 0);
    /* Like sessions: each job is resubmitted as soon as it comes back. */
    for (int round = 0; round < 3; round++) {
        atomic_store(&order_pos, 0);
        for (int i = 0; i < 16; i++) {
            if (round == 0)
                memset(&jobs[i], 0, sizeof jobs[i]);
            jobs[i].base.fn = run;
            jobs[i].index = i;
            workq_submit(&q, &jobs[i].base);
        }
        assert_int_equal(drain(&q, 16), 16);
    }
    for (int i = 0; i < 16; i++) {
        assert_int_equal(jobs[i].runs, 3);
        assert_true(jobs[i].worker >= 0 && jobs[i].worker < 4);
    }
    workq_destroy(&q);
}

static void test_destroy_drains(void **state)
{
    (void)state;
    workq_t q;
    job_t jobs[8];
    atomic_store(&order_pos, 0);
    assert_int_equal(workq_init(&q, 2, NULL, NULL), 0);
    for (int i = 0; i < 8; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].base.fn = run;
        workq_submit(&q, &jobs[i].base);
    }
    workq_destroy(&q); /* joins after the queue is empty */
    for (int i = 0; i < 8; i++)
        assert_int_equal(jobs[i].runs, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_one_worker),
        cmocka_unit_test(test_many_workers_resubmit),
        cmocka_unit_test(test_destroy_drains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
