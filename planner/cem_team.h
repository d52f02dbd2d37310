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

#endif
