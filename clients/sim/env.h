/*
 * env.h: one simulated task as an environment: reset, step with an action, observe.
 *
 * env_step clips the action to the actuators' ctrlrange, applies it for the task's action
 * repeat and returns the summed reward. After every physics step mjData is brought in
 * sync with the new positions and velocities (as dm_control does) so that rewards and
 * observations see the state the step produced. Nothing is allocated after env_create.
 */
#ifndef MPC_SIM_ENV_H
#define MPC_SIM_ENV_H

#include <stddef.h>

#include "rng.h"
#include "task.h"

typedef struct sim_env sim_env_t;

/* Compiles the task's MJCF; returns 0, or -1 with MuJoCo's message in err. */
int sim_env_create(const sim_task_t *task, sim_env_t **out, char *err, int errlen);
void sim_env_destroy(sim_env_t *e);

const sim_task_t *sim_env_task(const sim_env_t *e);
/* The model and data, for tests and diagnostics. */
sim_world_t *sim_env_world(sim_env_t *e);
/* Physics timestep and control period (timestep * action repeat), in seconds. */
double sim_env_timestep(const sim_env_t *e);
double sim_env_control_period(const sim_env_t *e);
/* Control steps in a full episode (1000 physics steps / action repeat). */
int sim_env_episode_steps(const sim_env_t *e);
/* Bounds of action i. */
void sim_env_action_bounds(const sim_env_t *e, int i, double *lo, double *hi);

/* Starts an episode with a random initial state and writes the first observation. */
void sim_env_reset(sim_env_t *e, sim_rng_t *rng, float *obs);
/* Applies action (act_dim values, clipped; non-finite values become 0) for the action
 * repeat; writes the next observation and returns the summed reward. */
double sim_env_step(sim_env_t *e, const float *action, float *obs);
/* One physics step of a control step (the robot's physics runs on between replies):
 * applies action (clipped as sim_env_step does) for one timestep and returns its reward.
 * sim_env_step is action_repeat of these, then sim_env_observe. */
double sim_env_substep(sim_env_t *e, const float *action);
void sim_env_observe(sim_env_t *e, float *obs);
/* Re-synchronises mjData after a test edited qpos/qvel, and observes. */
void sim_env_forward(sim_env_t *e, float *obs);

/* MuJoCo warnings (instability, resets) since the process started. */
unsigned long sim_env_warnings(void);

#endif
