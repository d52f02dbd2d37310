/*
 * task_cheetah.c: cheetah-run (dm_control's planar half-cheetah).
 *
 * Model: a 14 kg planar cheetah, torso on three root joints (rootx, rootz slides, rooty
 * hinge), two legs of three limited hinges each (bthigh, bshin, bfoot, fthigh, fshin,
 * ffoot) with springs; six motors (gears 120, 90, 60, 90, 60, 30), actions in [-1, 1].
 * Euler, timestep 0.01 s, contacts with the ground.
 *
 * Control period: action repeat 4 -> 0.04 s per control step, 250 control steps per
 * 1000-physics-step (10 s) episode.
 *
 * Observation (17): [rootz, rooty, bthigh, bshin, bfoot, fthigh, fshin, ffoot (positions:
 * qpos without rootx, for translation invariance), then the 9 velocities (qvel)].
 *
 * Reward per physics step: the torso subtree's forward speed v through a linear ramp:
 * min(max(v, 0) / 10, 1), i.e. 1 at 10 m/s or faster.
 *
 * Start: leg joints uniform in their ranges, then 200 physics steps with zero action to
 * let the body settle on the ground (not part of the episode).
 */
#include <math.h>
#include <stdio.h>

#include "errbuf.h"
#include "task.h"
#include "tolerance.h"

enum { ID_SPEED_SENSOR };

#define CHEETAH_RUN_SPEED 10.0

static const char cheetah_mjcf[] =
    "<mujoco model='cheetah'>\n" SIM_MJCF_DM_CONTROL_LOOK "  <compiler settotalmass='14'/>\n"
    "  <default>\n"
    "    <default class='cheetah'>\n"
    "      <joint limited='true' damping='0.01' armature='0.1' stiffness='8' type='hinge'\n"
    "             axis='0 1 0'/>\n"
    "      <geom contype='1' conaffinity='1' condim='3' friction='0.4 0.1 0.1'\n"
    "            material='self'/>\n"
    "    </default>\n"
    "    <default class='free'>\n"
    "      <joint limited='false' damping='0' armature='0' stiffness='0'/>\n"
    "    </default>\n"
    "    <motor ctrllimited='true' ctrlrange='-1 1'/>\n"
    "  </default>\n"
    "  <statistic center='0 0 0.7' extent='2'/>\n"
    "  <option timestep='0.01'/>\n"
    "  <worldbody>\n"
    "    <geom name='ground' type='plane' conaffinity='1' pos='98 0 0' size='100 0.8 0.5'\n"
    "          material='grid'/>\n"
    "    <body name='torso' pos='0 0 0.7' childclass='cheetah'>\n"
    "      <light name='light' pos='0 0 2' mode='trackcom'/>\n"
    "      <camera name='side' pos='0 -3 0' quat='0.707 0.707 0 0' mode='trackcom'/>\n"
    "      <camera name='back' pos='-1.8 -1.3 0.8' xyaxes='0.45 -0.9 0 0.3 0.15 0.94'\n"
    "              mode='trackcom'/>\n"
    "      <joint name='rootx' type='slide' axis='1 0 0' class='free'/>\n"
    "      <joint name='rootz' type='slide' axis='0 0 1' class='free'/>\n"
    "      <joint name='rooty' type='hinge' axis='0 1 0' class='free'/>\n"
    "      <geom name='torso' type='capsule' fromto='-0.5 0 0 0.5 0 0' size='0.046'/>\n"
    "      <geom name='head' type='capsule' pos='0.6 0 0.1' euler='0 50 0'\n"
    "            size='0.046 0.15'/>\n"
    "      <body name='bthigh' pos='-0.5 0 0'>\n"
    "        <joint name='bthigh' range='-30 60' stiffness='240' damping='6'/>\n"
    "        <geom name='bthigh' type='capsule' pos='0.1 0 -0.13' euler='0 -218 0'\n"
    "              size='0.046 0.145'/>\n"
    "        <body name='bshin' pos='0.16 0 -0.25'>\n"
    "          <joint name='bshin' range='-50 50' stiffness='180' damping='4.5'/>\n"
    "          <geom name='bshin' type='capsule' pos='-0.14 0 -0.07' euler='0 -116 0'\n"
    "                size='0.046 0.15'/>\n"
    "          <body name='bfoot' pos='-0.28 0 -0.14'>\n"
    "            <joint name='bfoot' range='-230 50' stiffness='120' damping='3'/>\n"
    "            <geom name='bfoot' type='capsule' pos='0.03 0 -0.097' euler='0 -15 0'\n"
    "                  size='0.046 0.094'/>\n"
    "          </body>\n"
    "        </body>\n"
    "      </body>\n"
    "      <body name='fthigh' pos='0.5 0 0'>\n"
    "        <joint name='fthigh' range='-57 0.40' stiffness='180' damping='4.5'/>\n"
    "        <geom name='fthigh' type='capsule' pos='-0.07 0 -0.12' euler='0 30 0'\n"
    "              size='0.046 0.133'/>\n"
    "        <body name='fshin' pos='-0.14 0 -0.24'>\n"
    "          <joint name='fshin' range='-70 50' stiffness='120' damping='3'/>\n"
    "          <geom name='fshin' type='capsule' pos='0.065 0 -0.09' euler='0 -34 0'\n"
    "                size='0.046 0.106'/>\n"
    "          <body name='ffoot' pos='0.13 0 -0.18'>\n"
    "            <joint name='ffoot' range='-28 28' stiffness='60' damping='1.5'/>\n"
    "            <geom name='ffoot' type='capsule' pos='0.045 0 -0.07' euler='0 -34 0'\n"
    "                  size='0.046 0.07'/>\n"
    "          </body>\n"
    "        </body>\n"
    "      </body>\n"
    "    </body>\n"
    "  </worldbody>\n"
    "  <sensor>\n"
    "    <subtreelinvel name='torso_subtreelinvel' body='torso'/>\n"
    "  </sensor>\n"
    "  <actuator>\n"
    "    <motor name='bthigh' joint='bthigh' gear='120'/>\n"
    "    <motor name='bshin' joint='bshin' gear='90'/>\n"
    "    <motor name='bfoot' joint='bfoot' gear='60'/>\n"
    "    <motor name='fthigh' joint='fthigh' gear='90'/>\n"
    "    <motor name='fshin' joint='fshin' gear='60'/>\n"
    "    <motor name='ffoot' joint='ffoot' gear='30'/>\n"
    "  </actuator>\n"
    "</mujoco>\n";

static int cheetah_bind(sim_world_t *w, char *err, int errlen)
{
    const char *sensor = "torso_subtreelinvel";
    if (sim_task_lookup(w, ID_SPEED_SENSOR, mjOBJ_SENSOR, sensor, err, errlen) < 0)
        return -1;
    if (w->m->nq != 9 || w->m->nv != 9) {
        errbuf_set(err, (size_t)errlen, "expected 9 joints, the model has nq %d", w->m->nq);
        return -1;
    }
    return 0;
}

static void cheetah_reset(sim_world_t *w, sim_rng_t *rng)
{
    const mjModel *m = w->m;
    for (int j = 0; j < m->njnt; j++)
        if (m->jnt_limited[j])
            w->d->qpos[m->jnt_qposadr[j]] =
                sim_rng_uniform(rng, m->jnt_range[2 * j], m->jnt_range[2 * j + 1]);
}

static void cheetah_observe(const sim_world_t *w, float *obs)
{
    for (int i = 1; i < 9; i++)
        obs[i - 1] = (float)w->d->qpos[i];
    for (int i = 0; i < 9; i++)
        obs[8 + i] = (float)w->d->qvel[i];
}

static double cheetah_reward(const sim_world_t *w)
{
    double speed = w->d->sensordata[w->m->sensor_adr[w->id[ID_SPEED_SENSOR]]];
    return sim_tolerance(speed, CHEETAH_RUN_SPEED, INFINITY, CHEETAH_RUN_SPEED,
                         SIM_SIGMOID_LINEAR, 0.0);
}

const sim_task_t sim_task_cheetah_run = {
    .name = "cheetah-run",
    .summary = "run forward as fast as possible, up to 10 m/s (dm_control)",
    .mjcf = cheetah_mjcf,
    .camera = "side",
    .action_repeat = 4,
    .obs_dim = 17,
    .act_dim = 6,
    .obs_doc = "rootz, rooty, 6 leg joint angles, then the 9 joint velocities",
    .settle_steps = 200,
    .bind = cheetah_bind,
    .reset = cheetah_reset,
    .observe = cheetah_observe,
    .reward = cheetah_reward,
};
