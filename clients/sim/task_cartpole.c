/*
 * task_cartpole.c: cartpole-swingup and cartpole-balance (dm_control's cartpole).
 *
 * Model: a cart on a rail (slide joint "slider", range [-1.8, 1.8] m, soft limits) with a
 * 1 m pole on a hinge ("hinge_1", angle 0 = upright); one motor on the slider, action in
 * [-1, 1] times gear 10 N. RK4, timestep 0.01 s, contacts off.
 *
 * Control period: action repeat 8 -> 0.08 s per control step, 125 control steps per
 * 1000-physics-step (10 s) episode.
 *
 * Observation (5): [cart position, cos(pole angle), sin(pole angle), cart velocity,
 * pole angular velocity]  (dm_control's position = cart, zz, xz of the pole; velocity).
 *
 * Reward per physics step, in [0, 1]:
 *   upright  = (cos + 1) / 2
 *   centered = (1 + tolerance(cart, margin 2)) / 2
 *   control  = (4 + tolerance(u, margin 1, quadratic, 0 at margin)) / 5
 *   velocity = (1 + tolerance(pole angular velocity, margin 5)) / 2
 *   reward   = upright * centered * control * velocity
 * so 1 exactly when upright, centered, still and unforced.
 *
 * Start: swingup: pole down (pi + 0.01 N(0,1)), cart 0.01 N(0,1); balance: pole and cart
 * uniform in +-0.034 rad and +-0.1 m; velocities 0.01 N(0,1).
 */
#include <math.h>

#include "task.h"
#include "tolerance.h"

enum { ID_POLE, ID_SLIDER, ID_HINGE };

static const char cartpole_mjcf[] =
    "<mujoco model='cartpole'>\n" SIM_MJCF_DM_CONTROL_LOOK
    "  <option timestep='0.01' integrator='RK4'>\n"
    "    <flag contact='disable' energy='enable'/>\n"
    "  </option>\n"
    "  <default>\n"
    "    <default class='pole'>\n"
    "      <joint type='hinge' axis='0 1 0' damping='2e-6'/>\n"
    "      <geom type='capsule' fromto='0 0 0 0 0 1' size='0.045' material='self'\n"
    "            mass='0.1'/>\n"
    "    </default>\n"
    "  </default>\n"
    "  <worldbody>\n"
    "    <light name='light' pos='0 0 6'/>\n"
    "    <camera name='fixed' pos='0 -4 1' zaxis='0 -1 0'/>\n"
    "    <camera name='lookatcart' mode='targetbody' target='cart' pos='0 -2 2'/>\n"
    "    <geom name='floor' pos='0 0 -0.05' size='4 4 0.2' type='plane' material='grid'/>\n"
    "    <geom name='rail1' type='capsule' pos='0 0.07 1' zaxis='1 0 0' size='0.02 2'\n"
    "          material='decoration'/>\n"
    "    <geom name='rail2' type='capsule' pos='0 -0.07 1' zaxis='1 0 0' size='0.02 2'\n"
    "          material='decoration'/>\n"
    "    <body name='cart' pos='0 0 1'>\n"
    "      <joint name='slider' type='slide' limited='true' axis='1 0 0' range='-1.8 1.8'\n"
    "             solreflimit='0.08 1' damping='5e-4'/>\n"
    "      <geom name='cart' type='box' size='0.2 0.15 0.1' material='self' mass='1'/>\n"
    "      <body name='pole_1' childclass='pole'>\n"
    "        <joint name='hinge_1'/>\n"
    "        <geom name='pole_1'/>\n"
    "      </body>\n"
    "    </body>\n"
    "  </worldbody>\n"
    "  <actuator>\n"
    "    <motor name='slide' joint='slider' gear='10' ctrllimited='true' ctrlrange='-1 1'/>\n"
    "  </actuator>\n"
    "</mujoco>\n";

static int cartpole_bind(sim_world_t *w, char *err, int errlen)
{
    if (sim_task_lookup(w, ID_POLE, mjOBJ_BODY, "pole_1", err, errlen) < 0 ||
        sim_task_lookup(w, ID_SLIDER, mjOBJ_JOINT, "slider", err, errlen) < 0 ||
        sim_task_lookup(w, ID_HINGE, mjOBJ_JOINT, "hinge_1", err, errlen) < 0)
        return -1;
    return 0;
}

static void randomize_velocity(sim_world_t *w, sim_rng_t *rng)
{
    for (int i = 0; i < w->m->nv; i++)
        w->d->qvel[i] = 0.01 * sim_rng_normal(rng);
}

static void swingup_reset(sim_world_t *w, sim_rng_t *rng)
{
    mjtNum *qpos = w->d->qpos;
    qpos[w->m->jnt_qposadr[w->id[ID_SLIDER]]] = 0.01 * sim_rng_normal(rng);
    qpos[w->m->jnt_qposadr[w->id[ID_HINGE]]] = M_PI + 0.01 * sim_rng_normal(rng);
    randomize_velocity(w, rng);
}

static void balance_reset(sim_world_t *w, sim_rng_t *rng)
{
    mjtNum *qpos = w->d->qpos;
    qpos[w->m->jnt_qposadr[w->id[ID_SLIDER]]] = sim_rng_uniform(rng, -0.1, 0.1);
    qpos[w->m->jnt_qposadr[w->id[ID_HINGE]]] = sim_rng_uniform(rng, -0.034, 0.034);
    randomize_velocity(w, rng);
}

static void cartpole_observe(const sim_world_t *w, float *obs)
{
    const mjtNum *xmat = w->d->xmat + 9 * w->id[ID_POLE];
    int slider = w->m->jnt_dofadr[w->id[ID_SLIDER]], hinge = w->m->jnt_dofadr[w->id[ID_HINGE]];
    obs[0] = (float)w->d->qpos[w->m->jnt_qposadr[w->id[ID_SLIDER]]];
    obs[1] = (float)xmat[8]; /* zz: cos of the pole angle */
    obs[2] = (float)xmat[2]; /* xz: sin of the pole angle */
    obs[3] = (float)w->d->qvel[slider];
    obs[4] = (float)w->d->qvel[hinge];
}

static double cartpole_reward(const sim_world_t *w)
{
    double cosine = w->d->xmat[9 * w->id[ID_POLE] + 8];
    double cart = w->d->qpos[w->m->jnt_qposadr[w->id[ID_SLIDER]]];
    double angular_vel = w->d->qvel[w->m->jnt_dofadr[w->id[ID_HINGE]]];
    double upright = (cosine + 1.0) / 2.0;
    double centered = (1.0 + sim_tolerance_gauss(cart, 0, 0, 2.0)) / 2.0;
    double control =
        (4.0 + sim_tolerance(w->d->ctrl[0], 0, 0, 1.0, SIM_SIGMOID_QUADRATIC, 0.0)) / 5.0;
    double velocity = (1.0 + sim_tolerance_gauss(angular_vel, 0, 0, 5.0)) / 2.0;
    return upright * centered * control * velocity;
}

/* The two tasks differ only in name, summary and start. */
#define CARTPOLE_TASK(task_name, task_summary, reset_fn)                                       \
    {                                                                                          \
        .name = task_name, .summary = task_summary, .mjcf = cartpole_mjcf, .camera = "fixed",  \
        .action_repeat = 8, .obs_dim = 5, .act_dim = 1,                                        \
        .obs_doc = "cart position, cos(pole angle), sin(pole angle), cart velocity, "          \
                   "pole angular velocity",                                                    \
        .bind = cartpole_bind, .reset = reset_fn, .observe = cartpole_observe,                 \
        .reward = cartpole_reward,                                                             \
    }

const sim_task_t sim_task_cartpole_swingup = CARTPOLE_TASK(
    "cartpole-swingup", "swing the pole up from hanging down and balance it (dm_control)",
    swingup_reset);

const sim_task_t sim_task_cartpole_balance = CARTPOLE_TASK(
    "cartpole-balance", "keep the pole upright from a near-upright start (dm_control)",
    balance_reset);
