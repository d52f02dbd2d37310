/*
 * cem_team.c: the planner's fixed worker team (see cem_team.h).
 *
 * A job is published by bumping a generation counter; each worker runs its share and
 * decrements `pending`, the last one wakes the caller. Both sides spin for a short while
 * before sleeping: within a plan the next iteration starts a few microseconds after the
 * previous one ends, and a futex round trip would cost more than the work on small models.
 *
 * While the team is held (cem_team_hold, for the length of a plan) nobody sleeps at all.
 * Measured on a 2-vCPU VM: after an idle gap of a paced robot (60 ms), every sleep inside
 * a plan cost a wake-up of ~1 ms (the hypervisor had descheduled the idle vCPU), so the
 * helper missed most of each iteration and a 2-thread plan ran at 1-thread speed (30 ms
 * against 17 ms back to back).
 */
#include "cem_team.h"

#include "mono.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#define SPIN_ITERS 2000

typedef struct member {
    struct cem_team *team;
    int ith;
    atomic_uint taken; /* the last generation it ran, or that the caller skipped it for */
} member_t;

struct cem_team {
    int nth;
    int started;        /* threads actually running (for a partial create) */
    pthread_t *threads; /* [nth - 1] */
    member_t *members;  /* [nth - 1] */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers wait here for a new generation */
    pthread_cond_t done; /* the caller waits here for pending == 0 */
    atomic_uint gen;
    atomic_int pending;
    atomic_bool stop;
    atomic_bool hold; /* a plan is running: spin, do not sleep */
    cem_team_fn fn;
    void *arg;
    void (*init)(void *, int);
    void *init_arg;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static bool held(struct cem_team *t)
{
    return atomic_load_explicit(&t->hold, memory_order_acquire);
}

static unsigned wait_generation(struct cem_team *t, unsigned seen)
{
    unsigned g;
    for (;;) {
        for (int i = 0; i < SPIN_ITERS; i++) {
            g = atomic_load_explicit(&t->gen, memory_order_acquire);
            if (g != seen)
                return g;
            cpu_relax();
        }
        if (held(t))
            continue;
        /* cem_team_hold sets `hold` before it broadcasts under mu: checked under mu, no
         * wake-up is lost */
        pthread_mutex_lock(&t->mu);
        while ((g = atomic_load_explicit(&t->gen, memory_order_acquire)) == seen && !held(t))
            pthread_cond_wait(&t->wake, &t->mu);
        pthread_mutex_unlock(&t->mu);
        if (g != seen)
            return g;
    }
}

static void *worker(void *p)
{
    member_t *me = p;
    struct cem_team *t = me->team;
    if (t->init)
        t->init(t->init_arg, me->ith);
    unsigned seen = 0;
    for (;;) {
        seen = wait_generation(t, seen);
        if (atomic_load_explicit(&t->stop, memory_order_acquire))
            break;
        /* Every earlier generation is settled when one is published, so `taken` is
         * seen - 1 here unless the caller already skipped this member for `seen`. */
        unsigned prev = seen - 1;
        if (!atomic_compare_exchange_strong_explicit(
                &me->taken, &prev, seen, memory_order_acq_rel, memory_order_acquire))
            continue;
        t->fn(t->arg, me->ith, t->nth);
        if (atomic_fetch_sub_explicit(&t->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&t->mu);
            pthread_cond_signal(&t->done);
            pthread_mutex_unlock(&t->mu);
        }
    }
    return NULL;
}

static unsigned publish(struct cem_team *t)
{
    pthread_mutex_lock(&t->mu);
    unsigned g = atomic_fetch_add_explicit(&t->gen, 1, memory_order_release) + 1;
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->mu);
    return g;
}

int cem_team_create(int nth, void (*init)(void *, int), void *init_arg, cem_team_t **out)
{
    if (!out || nth < 1)
        return -EINVAL;
    *out = NULL;
    struct cem_team *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->nth = nth;
    t->init = init;
    t->init_arg = init_arg;
    atomic_init(&t->gen, 0);
    atomic_init(&t->pending, 0);
    atomic_init(&t->stop, false);
    atomic_init(&t->hold, false);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->wake, NULL);
    pthread_condattr_t ca; /* `done` is waited on with CLOCK_MONOTONIC deadlines */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->done, &ca);
    pthread_condattr_destroy(&ca);
    int rc = 0;
    if (nth > 1) {
        t->threads = calloc((size_t)nth - 1, sizeof *t->threads);
        t->members = calloc((size_t)nth - 1, sizeof *t->members);
        if (!t->threads || !t->members) {
            rc = -ENOMEM;
            goto fail;
        }
        for (int i = 0; i < nth - 1; i++) {
            t->members[i].team = t;
            t->members[i].ith = i + 1;
            atomic_init(&t->members[i].taken, 0);
            int e = pthread_create(&t->threads[i], NULL, worker, &t->members[i]);
            if (e) {
                rc = -e;
                goto fail;
            }
            t->started++;
        }
    }
    *out = t;
    return 0;
fail:
    cem_team_destroy(t);
    return rc;
}

void cem_team_destroy(cem_team_t *t)
{
    if (!t)
        return;
    cem_team_wait(t);
    atomic_store_explicit(&t->stop, true, memory_order_release);
    publish(t);
    for (int i = 0; i < t->started; i++)
        pthread_join(t->threads[i], NULL);
    pthread_cond_destroy(&t->done);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->mu);
    free(t->members);
    free(t->threads);
    free(t);
}

int cem_team_size(const cem_team_t *t)
{
    return t->nth;
}

static bool pending_zero(struct cem_team *t)
{
    return atomic_load_explicit(&t->pending, memory_order_acquire) == 0;
}

/* Waits for pending == 0 until `until` (CLOCK_MONOTONIC seconds, INFINITY: forever). */
static bool wait_idle(struct cem_team *t, double until)
{
    for (int i = 0; i < SPIN_ITERS || held(t); i++) {
        if (pending_zero(t))
            return true;
        cpu_relax();
        if (i % 256 == 255 && held(t) && mono_now() >= until)
            return false;
    }
    bool timed = isfinite(until);
    struct timespec ts = timed ? mono_timespec(until) : (struct timespec){0};
    bool idle = true;
    pthread_mutex_lock(&t->mu);
    while (!pending_zero(t)) {
        if (!timed) {
            pthread_cond_wait(&t->done, &t->mu);
        } else if (pthread_cond_timedwait(&t->done, &t->mu, &ts) == ETIMEDOUT) {
            idle = pending_zero(t);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return idle;
}

static bool run(cem_team_t *t, cem_team_fn fn, void *arg, double until, bool skip_late)
{
    if (t->nth == 1) {
        fn(arg, 0, 1);
        return true;
    }
    t->fn = fn;
    t->arg = arg;
    atomic_store_explicit(&t->pending, t->nth - 1, memory_order_relaxed);
    unsigned g = publish(t);
    fn(arg, 0, t->nth);
    if (skip_late) {
        /* The work is claimed from a shared counter and member 0 found none left: a
         * helper that has not started yet (still waking up) has nothing to do. */
        for (int i = 0; i < t->nth - 1; i++) {
            unsigned prev = g - 1;
            if (atomic_compare_exchange_strong_explicit(
                    &t->members[i].taken, &prev, g, memory_order_acq_rel, memory_order_acquire))
                atomic_fetch_sub_explicit(&t->pending, 1, memory_order_acq_rel);
        }
    }
    return wait_idle(t, until);
}

bool cem_team_run_until(cem_team_t *t, cem_team_fn fn, void *arg, double until)
{
    return run(t, fn, arg, until, false);
}

bool cem_team_run_shared_until(cem_team_t *t, cem_team_fn fn, void *arg, double until)
{
    return run(t, fn, arg, until, true);
}

void cem_team_run(cem_team_t *t, cem_team_fn fn, void *arg)
{
    cem_team_run_until(t, fn, arg, INFINITY);
}

void cem_team_hold(cem_team_t *t, bool on)
{
    if (t->nth == 1 || held(t) == on)
        return;
    atomic_store_explicit(&t->hold, on, memory_order_release);
    if (on) {
        pthread_mutex_lock(&t->mu);
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->mu);
    }
}

void cem_team_wait(cem_team_t *t)
{
    wait_idle(t, INFINITY);
}

bool cem_team_wait_until(cem_team_t *t, double until)
{
    return wait_idle(t, until);
}
