/*
 * task.h: what a simulated task is: its MuJoCo model (MJCF text compiled into the
 * binary), its action repeat, how an episode starts, what the agent observes and how a
 * physics step is rewarded (dm_control style, in [0, 1]).
 *
 * One file per task family (task_cartpole.c, ...) documents its observation vector and
 * control period. Episodes last SIM_EPISODE_PHYSICS_STEPS physics steps, so a return is at
 * most 1000; a control step applies one action for action_repeat physics steps and earns
 * the sum of their rewards. Actions are bounded by the actuators' ctrlrange ([-1, 1]).
 */
#ifndef MPC_SIM_TASK_H
#define MPC_SIM_TASK_H

#include <mujoco/mujoco.h>

#include "rng.h"

#define SIM_EPISODE_PHYSICS_STEPS 1000
#define SIM_TASK_MAX_IDS          8

/* The look every task shares, as dm_control's suite/common/{visual,skybox,materials}.xml
 * define it (only the materials our tasks use): headlight, near clip plane and shadow map
 * size; a gradient skybox from blue to black with random white dots; a blue checker floor
 * ("grid", a little reflective); and the colours of the body ("self"), its tip
 * ("effector"), fixed parts ("decoration") and targets. Drawing only: none of it takes
 * part in the physics. */
#define SIM_MJCF_DM_CONTROL_LOOK                                                               \
    "  <visual>\n"                                                                             \
    "    <headlight ambient='0.4 0.4 0.4' diffuse='0.8 0.8 0.8' specular='0.1 0.1 0.1'/>\n"    \
    "    <map znear='0.01'/>\n"                                                                \
    "    <quality shadowsize='2048'/>\n"                                                       \
    "  </visual>\n"                                                                            \
    "  <asset>\n"                                                                              \
    "    <texture name='skybox' type='skybox' builtin='gradient' rgb1='0.4 0.6 0.8'\n"         \
    "             rgb2='0 0 0' width='800' height='800' mark='random' markrgb='1 1 1'/>\n"     \
    "    <texture name='grid' type='2d' builtin='checker' rgb1='0.1 0.2 0.3'\n"                \
    "             rgb2='0.2 0.3 0.4' width='300' height='300' mark='edge'\n"                   \
    "             markrgb='0.2 0.3 0.4'/>\n"                                                   \
    "    <material name='grid' texture='grid' texrepeat='1 1' texuniform='true'\n"             \
    "              reflectance='0.2'/>\n"                                                      \
    "    <material name='self' rgba='0.7 0.5 0.3 1'/>\n"                                       \
    "    <material name='effector' rgba='0.7 0.4 0.2 1'/>\n"                                   \
    "    <material name='decoration' rgba='0.3 0.5 0.7 1'/>\n"                                 \
    "    <material name='target' rgba='0.6 0.3 0.3 1'/>\n"                                     \
    "  </asset>\n"

/* A compiled model and its data, with the ids the task looked up once (bind). */
typedef struct {
    mjModel *m;
    mjData *d;
    int id[SIM_TASK_MAX_IDS];
} sim_world_t;

typedef struct {
    const char *name;    /* "cartpole-swingup" */
    const char *summary; /* one line for --list-tasks */
    const char *mjcf;    /* the model */
    const char *camera;  /* camera of pixel observations: dm_control's camera 0 */
    int action_repeat;   /* physics steps per control step */
    int obs_dim;         /* observation vector size */
    int act_dim;         /* actuators */
    const char *obs_doc; /* the observation vector, in words */
    int settle_steps;    /* physics steps with zero action after reset (not counted) */
    /* Looks up the names the task uses (into w->id); 0 or -1 with a message in err. */
    int (*bind)(sim_world_t *w, char *err, int errlen);
    /* Sets the initial state of an episode (after mj_resetData; may edit the model, e.g.
     * a target's position); the caller runs mj_forward afterwards. */
    void (*reset)(sim_world_t *w, sim_rng_t *rng);
    /* Writes obs_dim values describing the (forwarded) state. */
    void (*observe)(const sim_world_t *w, float *obs);
    /* Reward of the physics step that led to the current (forwarded) state, in [0, 1]. */
    double (*reward)(const sim_world_t *w);
} sim_task_t;

/* Every task, NULL-terminated. */
extern const sim_task_t *const sim_tasks[];
/* The task with this name, or NULL. */
const sim_task_t *sim_task_find(const char *name);

/* Helper for bind(): id of a named object, or -1 with "task: no TYPE 'NAME'" in err. */
int sim_task_lookup(sim_world_t *w, int slot, int type, const char *name, char *err,
                    int errlen);

#endif
