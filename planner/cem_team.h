/*
 * cem_team.h: a fixed team of worker threads for the planner (private to libplanner).
 *
 * The team is created once (cem_create) and reused for every iteration of every plan, so
 * the control path neither creates threads nor allocates. cem_team_run() hands one job to
 * all members, runs member 0 on the calling thread, and returns when every member is done.
 * Workers spin briefly for the next job (iterations follow each other within microseconds)
 * and then sleep on a condition variable, so an idle planner costs no CPU.
 */
#ifndef MPC_CEM_TEAM_H
#define MPC_CEM_TEAM_H

#include <stdbool.h>

/* One member's share of a job: ith in [0, nth). */
typedef void (*cem_team_fn)(void *arg, int ith, int nth);

typedef struct cem_team cem_team_t;

/* Starts nth - 1 threads (nth >= 1). Each new thread first calls init(init_arg, ith) once
 * (e.g. to pin OpenBLAS to one thread); init may be NULL. Returns 0 or a negative errno. */
int cem_team_create(int nth, void (*init)(void *, int), void *init_arg, cem_team_t **out);

/* Stops and joins the threads; accepts NULL. */
void cem_team_destroy(cem_team_t *t);

int cem_team_size(const cem_team_t *t);

/* Runs fn(arg, ith, nth) on every member and waits for all of them. Not reentrant. */
void cem_team_run(cem_team_t *t, cem_team_fn fn, void *arg);

/* The same, but stops waiting at `until` (CLOCK_MONOTONIC seconds): returns false when
 * some member is still running its share then (preempted on a busy machine). The job's
 * memory must then stay valid until cem_team_wait() returns; no new job may start before. */
bool cem_team_run_until(cem_team_t *t, cem_team_fn fn, void *arg, double until);

/* Holds the team awake (on) or lets it sleep again (off). While held, members and the
 * caller spin between jobs instead of sleeping on the condition variables: a plan holds
 * its team from before the belief update to its end, so no wake-up latency falls inside
 * it. Costs a spinning CPU per member while held; call from the team's caller. */
void cem_team_hold(cem_team_t *t, bool on);

/* The same for a job whose members claim work from a shared counter (the planner's
 * blocks of candidates): once the caller's own share returns (nothing left to claim), a
 * helper that has not started yet is skipped for this job instead of waited for. After an
 * idle spell a helper's wake-up took 4-8 ms on a 2-vCPU VM, so waiting for it made the
 * first iteration of a paced robot's plan 3-5x slower than the others. */
bool cem_team_run_shared_until(cem_team_t *t, cem_team_fn fn, void *arg, double until);

/* Waits until no member runs a job (immediate when none does). */
void cem_team_wait(cem_team_t *t);

/* The same, giving up at `until` (CLOCK_MONOTONIC seconds); true when the team is idle. */
bool cem_team_wait_until(cem_team_t *t, double until);

#endif
