/*
 * task_reacher.c: reacher-easy (dm_control's two-link planar reacher, big target).
 *
 * Model: a planar arm of two links (0.12 m, 0.1 m) on hinges "shoulder" (free) and
 * "wrist" (+-160 deg), a finger sphere (r 0.01) at the tip and a target sphere (r 0.05)
 * in the plane; two motors with gear 0.05, actions in [-1, 1]. Euler, timestep 0.02 s,
 * contacts off.
 *
 * Control period: action repeat 4 -> 0.08 s per control step, 250 control steps per
 * 1000-physics-step (20 s) episode.
 *
 * Observation (6): [shoulder angle, wrist angle, target x - finger x, target y - finger y,
 * shoulder velocity, wrist velocity]  (dm_control's position, to_target, velocity).
 *
 * Reward per physics step: 1 while the finger's centre is within 0.06 m (target radius +
 * finger radius) of the target's centre, else 0.
 *
 * Start: shoulder uniform in [-pi, pi), wrist uniform in its range, at rest; the target at
 * a uniform angle and a radius uniform in [0.05, 0.2] m.
 */
#include <math.h>

#include "task.h"
#include "tolerance.h"

enum { ID_SHOULDER, ID_WRIST, ID_TARGET, ID_FINGER };

static const char reacher_mjcf[] =
    "<mujoco model='two-link planar reacher'>\n" SIM_MJCF_DM_CONTROL_LOOK
    "  <option timestep='0.02'>\n"
    "    <flag contact='disable'/>\n"
    "  </option>\n"
    "  <default>\n"
    "    <joint type='hinge' axis='0 0 1' damping='0.01'/>\n"
    "    <motor gear='0.05' ctrlrange='-1 1' ctrllimited='true'/>\n"
    "  </default>\n"
    "  <worldbody>\n"
    "    <light name='light' pos='0 0 1'/>\n"
    "    <camera name='fixed' pos='0 0 0.75' quat='1 0 0 0'/>\n"
    "    <geom name='ground' type='plane' pos='0 0 0' size='0.3 0.3 10' material='grid'/>\n"
    "    <geom name='wall_x' type='plane' pos='-0.3 0 0.02' zaxis='1 0 0'\n"
    "          size='0.02 0.3 0.02' material='decoration'/>\n"
    "    <geom name='wall_y' type='plane' pos='0 -0.3 0.02' zaxis='0 1 0'\n"
    "          size='0.3 0.02 0.02' material='decoration'/>\n"
    "    <geom name='wall_neg_x' type='plane' pos='0.3 0 0.02' zaxis='-1 0 0'\n"
    "          size='0.02 0.3 0.02' material='decoration'/>\n"
    "    <geom name='wall_neg_y' type='plane' pos='0 0.3 0.02' zaxis='0 -1 0'\n"
    "          size='0.3 0.02 0.02' material='decoration'/>\n"
    "    <geom name='root' type='cylinder' fromto='0 0 0 0 0 0.02' size='0.011'\n"
    "          material='decoration'/>\n"
    "    <body name='arm' pos='0 0 0.01'>\n"
    "      <geom name='arm' type='capsule' fromto='0 0 0 0.12 0 0' size='0.01'\n"
    "            material='self'/>\n"
    "      <joint name='shoulder'/>\n"
    "      <body name='hand' pos='0.12 0 0'>\n"
    "        <geom name='hand' type='capsule' fromto='0 0 0 0.1 0 0' size='0.01'\n"
    "              material='self'/>\n"
    "        <joint name='wrist' limited='true' range='-160 160'/>\n"
    "        <body name='finger' pos='0.12 0 0'>\n"
    "          <camera name='hand' pos='0 0 0.2' mode='track'/>\n"
    "          <geom name='finger' type='sphere' size='0.01' material='effector'/>\n"
    "        </body>\n"
    "      </body>\n"
    "    </body>\n"
    "    <geom name='target' pos='0 0 0.01' type='sphere' size='0.05' material='target'/>\n"
    "  </worldbody>\n"
    "  <actuator>\n"
    "    <motor name='shoulder' joint='shoulder'/>\n"
    "    <motor name='wrist' joint='wrist'/>\n"
    "  </actuator>\n"
    "</mujoco>\n";

static int reacher_bind(sim_world_t *w, char *err, int errlen)
{
    if (sim_task_lookup(w, ID_SHOULDER, mjOBJ_JOINT, "shoulder", err, errlen) < 0 ||
        sim_task_lookup(w, ID_WRIST, mjOBJ_JOINT, "wrist", err, errlen) < 0 ||
        sim_task_lookup(w, ID_TARGET, mjOBJ_GEOM, "target", err, errlen) < 0 ||
        sim_task_lookup(w, ID_FINGER, mjOBJ_GEOM, "finger", err, errlen) < 0)
        return -1;
    return 0;
}

static void reacher_reset(sim_world_t *w, sim_rng_t *rng)
{
    const mjModel *m = w->m;
    int wrist = w->id[ID_WRIST];
    w->d->qpos[m->jnt_qposadr[w->id[ID_SHOULDER]]] = sim_rng_uniform(rng, -M_PI, M_PI);
    w->d->qpos[m->jnt_qposadr[wrist]] =
        sim_rng_uniform(rng, m->jnt_range[2 * wrist], m->jnt_range[2 * wrist + 1]);
    double angle = sim_rng_uniform(rng, 0, 2 * M_PI), radius = sim_rng_uniform(rng, 0.05, 0.2);
    w->m->geom_pos[3 * w->id[ID_TARGET]] = radius * sin(angle);
    w->m->geom_pos[3 * w->id[ID_TARGET] + 1] = radius * cos(angle);
}

static void reacher_observe(const sim_world_t *w, float *obs)
{
    const mjModel *m = w->m;
    const mjtNum *target = w->d->geom_xpos + 3 * w->id[ID_TARGET];
    const mjtNum *finger = w->d->geom_xpos + 3 * w->id[ID_FINGER];
    obs[0] = (float)w->d->qpos[m->jnt_qposadr[w->id[ID_SHOULDER]]];
    obs[1] = (float)w->d->qpos[m->jnt_qposadr[w->id[ID_WRIST]]];
    obs[2] = (float)(target[0] - finger[0]);
    obs[3] = (float)(target[1] - finger[1]);
    obs[4] = (float)w->d->qvel[m->jnt_dofadr[w->id[ID_SHOULDER]]];
    obs[5] = (float)w->d->qvel[m->jnt_dofadr[w->id[ID_WRIST]]];
}

static double reacher_reward(const sim_world_t *w)
{
    const mjtNum *target = w->d->geom_xpos + 3 * w->id[ID_TARGET];
    const mjtNum *finger = w->d->geom_xpos + 3 * w->id[ID_FINGER];
    double dx = target[0] - finger[0], dy = target[1] - finger[1], dz = target[2] - finger[2];
    double radii =
        w->m->geom_size[3 * w->id[ID_TARGET]] + w->m->geom_size[3 * w->id[ID_FINGER]];
    return sim_tolerance(sqrt(dx * dx + dy * dy + dz * dz), 0.0, radii, 0.0,
                         SIM_SIGMOID_GAUSSIAN, 0.1);
}

const sim_task_t sim_task_reacher_easy = {
    .name = "reacher-easy",
    .summary = "move a two-link arm's finger onto a random target (dm_control, sparse)",
    .mjcf = reacher_mjcf,
    .camera = "fixed",
    .action_repeat = 4,
    .obs_dim = 6,
    .act_dim = 2,
    .obs_doc = "shoulder angle, wrist angle, target-finger x, y, shoulder velocity, "
               "wrist velocity",
    .bind = reacher_bind,
    .reset = reacher_reset,
    .observe = reacher_observe,
    .reward = reacher_reward,
};
