/*
 * test_workq.c: the worker pool: every job runs exactly once on a valid worker index,
 * one worker runs waiting jobs earliest deadline first (ties in submission order), a
 * planning worker is told to yield only when the waiting jobs could no longer all get
 * their minimum plans in time, or when it has its fair share and somebody waits (and only
 * as many workers as are needed), expired jobs can be taken back,
 * finished jobs come back through the done list with the wake callback called, and
 * destroy drains what was queued.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "workq.h"

typedef struct job {
    workq_job_t base; /* first */
    int index;
    int worker;
    int runs;
} job_t;

static atomic_int order_pos;
static int order[128];
static atomic_int wakes;

static void run(workq_job_t *j, int worker)
{
    job_t *x = (job_t *)j;
    x->worker = worker;
    x->runs++;
    int pos = atomic_fetch_add(&order_pos, 1);
    if (pos < 128)
        order[pos] = x->index;
}

static void wake(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&wakes, 1);
}

/* A job that holds its worker until released: the others then wait in the queue. */
static atomic_bool gate_open, gate_entered;

static void run_gate(workq_job_t *j, int worker)
{
    (void)j;
    (void)worker;
    atomic_store(&gate_entered, true);
    while (!atomic_load(&gate_open))
        sched_yield();
}

static void block_worker(workq_t *q, job_t *gate)
{
    atomic_store(&gate_open, false);
    atomic_store(&gate_entered, false);
    memset(gate, 0, sizeof *gate);
    gate->base.fn = run_gate;
    gate->base.deadline = -INFINITY;
    workq_submit(q, &gate->base);
    while (!atomic_load(&gate_entered))
        sched_yield();
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

static void test_edf_one_worker(void **state)
{
    (void)state;
    workq_t q;
    job_t gate, jobs[64];
    atomic_store(&order_pos, 0);
    atomic_store(&wakes, 0);
    assert_int_equal(workq_init(&q, 1, 0, wake, NULL), 0);
    block_worker(&q, &gate);
    /* deadlines 0..15, four jobs each, submitted in a scrambled order */
    for (int k = 0; k < 64; k++) {
        int i = (k * 37) % 64;
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].base.fn = run;
        jobs[i].base.deadline = (double)(i % 16);
        jobs[i].base.finish_by = jobs[i].base.expire = INFINITY;
        jobs[i].index = i;
        workq_submit(&q, &jobs[i].base);
    }
    assert_int_equal(workq_waiting(&q), 64);
    atomic_store(&gate_open, true);
    assert_int_equal(drain(&q, 65), 65);
    for (int k = 1; k < 64; k++) {
        const job_t *a = &jobs[order[k - 1]], *b = &jobs[order[k]];
        assert_true(a->base.deadline <= b->base.deadline);
        if (a->base.deadline == b->base.deadline) /* ties: first submitted, first served */
            assert_true(a->base.order < b->base.order);
    }
    for (int i = 0; i < 64; i++) {
        assert_int_equal(jobs[i].runs, 1);
        assert_int_equal(jobs[i].worker, 0);
    }
    assert_int_equal(atomic_load(&wakes), 65);
    assert_int_equal(workq_waiting(&q), 0);
    workq_destroy(&q);
}

static void test_should_yield(void **state)
{
    (void)state;
    atomic_store(&order_pos, 0);
    workq_t q;
    job_t gate, urgent, later;
    assert_int_equal(workq_init(&q, 2, 0, NULL, NULL), 0);
    assert_false(workq_should_yield(&q, 0, 0, 1e9)); /* nobody waits */
    /* occupy both workers, then queue two jobs */
    job_t gate2;
    block_worker(&q, &gate);
    memset(&gate2, 0, sizeof gate2);
    gate2.base.fn = run_gate;
    atomic_store(&gate_entered, false);
    workq_submit(&q, &gate2.base);
    while (workq_waiting(&q))
        sched_yield();
    memset(&urgent, 0, sizeof urgent);
    memset(&later, 0, sizeof later);
    urgent.base.fn = later.base.fn = run;
    /* two workers: each waiting job adds cost / 2 to the time the queue needs */
    urgent.base.deadline = 20.0;
    urgent.base.cost = 4.0;
    urgent.base.finish_by = 14.0;
    later.base.deadline = 200.0;
    later.base.cost = 4.0;
    later.base.finish_by = 104.0;
    urgent.base.expire = later.base.expire = INFINITY;
    workq_submit(&q, &later.base);
    workq_submit(&q, &urgent.base);
    /* after an iteration ending at 9 the urgent job still fits (9 + 2 <= 14): go on */
    assert_false(workq_should_yield(&q, 0, 0, 9.0));
    /* ending at 12.5 it would not (14.5 > 14): worker 0 stops for it, worker 1 need not */
    assert_true(workq_should_yield(&q, 0, 0, 12.5));
    assert_false(workq_should_yield(&q, 1, 0, 12.5));
    assert_false(workq_should_yield(&q, 0, 0, 12.5)); /* asked again: already stopping */
    /* the later job squeezed behind the urgent one (12 + 2 <= 14, + 2 > 15.5): both are
     * owed a worker, so worker 1 stops too */
    later.base.finish_by = 15.5;
    assert_true(workq_should_yield(&q, 1, 0, 12.0));
    assert_int_equal(q.yielding, 2);
    atomic_store(&gate_open, true);
    drain(&q, 4);
    /* the workers took jobs: their yields are spent */
    assert_int_equal(q.yielding, 0);
    workq_destroy(&q);
}

static void test_fair_share_yield(void **state)
{
    (void)state;
    atomic_store(&order_pos, 0);
    workq_t q;
    job_t gate, waiting;
    assert_int_equal(workq_init(&q, 1, 0, NULL, NULL), 0);
    block_worker(&q, &gate);
    memset(&waiting, 0, sizeof waiting);
    waiting.base.fn = run;
    waiting.base.deadline = 100.0;
    waiting.base.cost = 1.0;
    waiting.base.finish_by = 90.0; /* not urgent at 1.0 */
    waiting.base.expire = INFINITY;
    workq_submit(&q, &waiting.base);
    assert_false(workq_should_yield(&q, 0, 7, 1.0)); /* no fair share set: plan on */
    workq_set_fair(&q, 3);
    assert_false(workq_should_yield(&q, 0, 2, 1.0)); /* below its share */
    assert_true(workq_should_yield(&q, 0, 3, 1.0));  /* has its share, someone waits */
    atomic_store(&gate_open, true);
    drain(&q, 2);
    workq_destroy(&q);
}

static void test_cancel_expired(void **state)
{
    (void)state;
    atomic_store(&order_pos, 0);
    workq_t q;
    job_t gate, jobs[4];
    assert_int_equal(workq_init(&q, 1, 0, NULL, NULL), 0);
    block_worker(&q, &gate);
    const double expire[4] = {3.0, 1.0, INFINITY, 2.0};
    for (int i = 0; i < 4; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].base.fn = run;
        jobs[i].base.deadline = expire[i] + 1.0;
        jobs[i].base.finish_by = INFINITY;
        jobs[i].base.expire = expire[i];
        jobs[i].index = i;
        workq_submit(&q, &jobs[i].base);
    }
    assert_true(workq_next_expiry(&q) == 1.0);
    workq_job_t *out[4];
    assert_int_equal(workq_cancel_expired(&q, 2.5, out, 4), 2);
    assert_ptr_equal(out[0], &jobs[1].base); /* earliest deadline first */
    assert_ptr_equal(out[1], &jobs[3].base);
    assert_true(out[0]->queued && out[1]->queued); /* the caller's to answer now */
    assert_int_equal(workq_waiting(&q), 2);
    assert_true(workq_next_expiry(&q) == 3.0);
    assert_int_equal(workq_cancel_expired(&q, 2.5, out, 4), 0);
    atomic_store(&gate_open, true);
    drain(&q, 3);
    assert_int_equal(jobs[1].runs + jobs[3].runs, 0); /* taken back: never run */
    assert_int_equal(jobs[0].runs + jobs[2].runs, 2);
    assert_true(isinf(workq_next_expiry(&q)));
    workq_destroy(&q);
}

static void test_many_workers_resubmit(void **state)
{
    (void)state;
    workq_t q;
    job_t jobs[16];
    atomic_store(&order_pos, 0);
    assert_int_equal(workq_init(&q, 4, 0, wake, NULL), 0);
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
    assert_int_equal(workq_init(&q, 2, 0, NULL, NULL), 0);
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
        cmocka_unit_test(test_edf_one_worker),        cmocka_unit_test(test_should_yield),
        cmocka_unit_test(test_fair_share_yield),      cmocka_unit_test(test_cancel_expired),
        cmocka_unit_test(test_many_workers_resubmit), cmocka_unit_test(test_destroy_drains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
