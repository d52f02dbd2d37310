/*
 * task_pendulum.c: pendulum-swingup (dm_control's pendulum).
 *
 * Model: a 1 kg point-like mass 0.5 m from a hinge ("hinge", axis y, damping 0.1), torque
 * motor with gear 1: action in [-1, 1] N m, too weak to lift the mass directly (the
 * gravity torque reaches 4.9 N m), so the policy has to pump energy in. Euler, timestep
 * 0.02 s, contacts off.
 *
 * Control period: action repeat 2 -> 0.04 s per control step, 500 control steps per
 * 1000-physics-step (20 s) episode.
 *
 * Observation (3): [cos(pole angle), sin(pole angle), angular velocity]
 * (dm_control's orientation = zz, xz of the pole frame; velocity).
 *
 * Reward per physics step: 1 while the pole is within 8 degrees of upright
 * (cos >= cos 8 deg), else 0 (sparse, as in dm_control).
 *
 * Start: angle uniform in [-pi, pi), at rest.
 */
#include <math.h>

#include "task.h"
#include "tolerance.h"

enum { ID_POLE, ID_HINGE };

#define PENDULUM_ANGLE_BOUND_DEG 8.0

static const char pendulum_mjcf[] =
    "<mujoco model='pendulum'>\n" SIM_MJCF_DM_CONTROL_LOOK "  <option timestep='0.02'>\n"
    "    <flag contact='disable' energy='enable'/>\n"
    "  </option>\n"
    "  <worldbody>\n"
    "    <light name='light' pos='0 0 2'/>\n"
    "    <geom name='floor' size='2 2 0.2' type='plane' material='grid'/>\n"
    "    <camera name='fixed' pos='0 -1.5 2' xyaxes='1 0 0 0 1 1'/>\n"
    "    <camera name='lookat' mode='targetbodycom' target='pole' pos='0 -2 1'/>\n"
    "    <body name='pole' pos='0 0 0.6'>\n"
    "      <joint name='hinge' type='hinge' axis='0 1 0' damping='0.1'/>\n"
    "      <geom name='base' type='cylinder' fromto='0 -0.03 0 0 0.03 0' size='0.021'\n"
    "            material='decoration' mass='0'/>\n"
    "      <geom name='pole' type='capsule' fromto='0 0 0 0 0 0.5' size='0.02'\n"
    "            material='self' mass='0'/>\n"
    "      <geom name='mass' type='sphere' pos='0 0 0.5' size='0.05' material='effector'\n"
    "            mass='1'/>\n"
    "    </body>\n"
    "  </worldbody>\n"
    "  <actuator>\n"
    "    <motor name='torque' joint='hinge' gear='1' ctrlrange='-1 1' ctrllimited='true'/>\n"
    "  </actuator>\n"
    "</mujoco>\n";

static int pendulum_bind(sim_world_t *w, char *err, int errlen)
{
    if (sim_task_lookup(w, ID_POLE, mjOBJ_BODY, "pole", err, errlen) < 0 ||
        sim_task_lookup(w, ID_HINGE, mjOBJ_JOINT, "hinge", err, errlen) < 0)
        return -1;
    return 0;
}

static void pendulum_reset(sim_world_t *w, sim_rng_t *rng)
{
    w->d->qpos[w->m->jnt_qposadr[w->id[ID_HINGE]]] = sim_rng_uniform(rng, -M_PI, M_PI);
}

static void pendulum_observe(const sim_world_t *w, float *obs)
{
    const mjtNum *xmat = w->d->xmat + 9 * w->id[ID_POLE];
    obs[0] = (float)xmat[8]; /* zz */
    obs[1] = (float)xmat[2]; /* xz */
    obs[2] = (float)w->d->qvel[w->m->jnt_dofadr[w->id[ID_HINGE]]];
}

static double pendulum_reward(const sim_world_t *w)
{
    double vertical = w->d->xmat[9 * w->id[ID_POLE] + 8];
    return sim_tolerance(vertical, cos(PENDULUM_ANGLE_BOUND_DEG * M_PI / 180.0), 1.0, 0.0,
                         SIM_SIGMOID_GAUSSIAN, 0.1);
}

const sim_task_t sim_task_pendulum_swingup = {
    .name = "pendulum-swingup",
    .summary = "swing a torque-limited pendulum up and hold it (dm_control, sparse)",
    .mjcf = pendulum_mjcf,
    .camera = "fixed",
    .action_repeat = 2,
    .obs_dim = 3,
    .act_dim = 1,
    .obs_doc = "cos(pole angle), sin(pole angle), angular velocity",
    .bind = pendulum_bind,
    .reset = pendulum_reset,
    .observe = pendulum_observe,
    .reward = pendulum_reward,
};
