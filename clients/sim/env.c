/*
 * env.c: a task's MuJoCo model and data stepped as an environment (see env.h).
 *
 * The MJCF text is handed to MuJoCo through a one-file virtual file system, so no data
 * files are needed next to the binary. MuJoCo's fatal errors (out of memory inside the
 * engine) cannot be recovered from: they print a message and exit with status 4; its
 * warnings (instability, automatic resets) are counted and the first few printed.
 */
#include "env.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

#define SIM_EXIT_MUJOCO      4
#define MAX_PRINTED_WARNINGS 5

struct sim_env {
    const sim_task_t *task;
    sim_world_t w;
};

static atomic_ulong n_warnings;

static void on_mujoco_error(const char *msg)
{
    fprintf(stderr, "mpc-sim: MuJoCo error: %s\n", msg);
    exit(SIM_EXIT_MUJOCO);
}

static void on_mujoco_warning(const char *msg)
{
    if (atomic_fetch_add(&n_warnings, 1) < MAX_PRINTED_WARNINGS)
        fprintf(stderr, "mpc-sim: MuJoCo warning: %s\n", msg);
}

unsigned long sim_env_warnings(void)
{
    return atomic_load(&n_warnings);
}

static mjModel *compile(const char *mjcf, char *err, int errlen)
{
    mjVFS *vfs = malloc(sizeof(*vfs)); /* about 2 MB of file name slots */
    if (vfs == NULL) {
        errbuf_set(err, (size_t)errlen, "out of memory");
        return NULL;
    }
    mj_defaultVFS(vfs);
    int len = (int)strlen(mjcf);
    mjModel *m = NULL;
    if (mj_makeEmptyFileVFS(vfs, "task.xml", len) != 0) {
        errbuf_set(err, (size_t)errlen, "MuJoCo VFS refused the model");
    } else {
        memcpy(vfs->filedata[mj_findFileVFS(vfs, "task.xml")], mjcf, (size_t)len);
        err[0] = '\0';
        m = mj_loadXML("task.xml", vfs, err, errlen);
    }
    mj_deleteVFS(vfs);
    free(vfs);
    return m;
}

int sim_env_create(const sim_task_t *task, sim_env_t **out, char *err, int errlen)
{
    *out = NULL;
    if (mju_user_error == NULL)
        mju_user_error = on_mujoco_error;
    if (mju_user_warning == NULL)
        mju_user_warning = on_mujoco_warning;
    sim_env_t *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        errbuf_set(err, (size_t)errlen, "out of memory");
        return -1;
    }
    e->task = task;
    char msg[512] = "";
    e->w.m = compile(task->mjcf, msg, (int)sizeof(msg));
    if (e->w.m == NULL) {
        errbuf_set(err, (size_t)errlen, "%s: cannot compile the model: %s", task->name, msg);
        goto fail;
    }
    if (e->w.m->nu != task->act_dim) {
        errbuf_set(err, (size_t)errlen, "%s: model has %d actuators, task expects %d",
                   task->name, e->w.m->nu, task->act_dim);
        goto fail;
    }
    e->w.d = mj_makeData(e->w.m);
    if (e->w.d == NULL) {
        errbuf_set(err, (size_t)errlen, "%s: out of memory", task->name);
        goto fail;
    }
    if (task->bind(&e->w, msg, (int)sizeof(msg)) < 0) {
        errbuf_set(err, (size_t)errlen, "%s: %s", task->name, msg);
        goto fail;
    }
    *out = e;
    return 0;
fail:
    sim_env_destroy(e);
    return -1;
}

void sim_env_destroy(sim_env_t *e)
{
    if (e == NULL)
        return;
    if (e->w.d)
        mj_deleteData(e->w.d);
    if (e->w.m)
        mj_deleteModel(e->w.m);
    free(e);
}

const sim_task_t *sim_env_task(const sim_env_t *e)
{
    return e->task;
}

sim_world_t *sim_env_world(sim_env_t *e)
{
    return &e->w;
}

double sim_env_timestep(const sim_env_t *e)
{
    return e->w.m->opt.timestep;
}

double sim_env_control_period(const sim_env_t *e)
{
    return e->w.m->opt.timestep * e->task->action_repeat;
}

int sim_env_episode_steps(const sim_env_t *e)
{
    return SIM_EPISODE_PHYSICS_STEPS / e->task->action_repeat;
}

void sim_env_action_bounds(const sim_env_t *e, int i, double *lo, double *hi)
{
    const mjModel *m = e->w.m;
    if (m->actuator_ctrllimited[i]) {
        *lo = m->actuator_ctrlrange[2 * i];
        *hi = m->actuator_ctrlrange[2 * i + 1];
    } else {
        *lo = -1.0;
        *hi = 1.0;
    }
}

void sim_env_forward(sim_env_t *e, float *obs)
{
    mj_forward(e->w.m, e->w.d);
    if (obs)
        e->task->observe(&e->w, obs);
}

/* One physics step that leaves mjData in sync with the new state (dm_control's
 * legacy step): mj_step computes forward quantities of the state before the step only. */
static void physics_step(sim_world_t *w)
{
    if (w->m->opt.integrator == mjINT_EULER) {
        mj_step2(w->m, w->d); /* mj_step1 has run on the current state */
    } else {
        mj_step(w->m, w->d);
    }
    mj_step1(w->m, w->d);
}

void sim_env_reset(sim_env_t *e, sim_rng_t *rng, float *obs)
{
    /* dm_control's order: Physics.reset() computes the default pose, the task sets its
     * start (and settles it, still on the default pose's quantities for the first step),
     * then after_reset() computes the start pose. */
    mj_resetData(e->w.m, e->w.d);
    mj_forward(e->w.m, e->w.d);
    e->task->reset(&e->w, rng);
    /* Let the body come to rest on the ground before the episode starts (cheetah). */
    for (int k = 0; k < e->task->settle_steps; k++)
        physics_step(&e->w);
    e->w.d->time = 0;
    mj_forward(e->w.m, e->w.d);
    e->task->observe(&e->w, obs);
}

double sim_env_substep(sim_env_t *e, const float *action)
{
    sim_world_t *w = &e->w;
    for (int i = 0; i < e->task->act_dim; i++) {
        double lo, hi, a = isfinite(action[i]) ? (double)action[i] : 0.0;
        sim_env_action_bounds(e, i, &lo, &hi);
        w->d->ctrl[i] = a < lo ? lo : a > hi ? hi : a;
    }
    physics_step(w);
    return e->task->reward(w);
}

void sim_env_observe(sim_env_t *e, float *obs)
{
    e->task->observe(&e->w, obs);
}

double sim_env_step(sim_env_t *e, const float *action, float *obs)
{
    double reward = 0.0;
    for (int k = 0; k < e->task->action_repeat; k++)
        reward += sim_env_substep(e, action);
    if (obs)
        sim_env_observe(e, obs);
    return reward;
}
