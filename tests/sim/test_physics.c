/*
 * test_physics.c: physics sanity of every task (clients/sim/env.c, task_*.c): sizes and
 * control periods, reward exactly 1 in each goal state, rewards bounded, energy that
 * damping can only remove, joint limits that hold under full force, deterministic
 * episodes per seed, random-policy returns in the expected low range, no allocation
 * by reset, step or the random policy (tests/common/alloc_count.h counts), and golden
 * checksums of a seeded random episode per task: the dynamics stay bit for bit what they
 * were (visual-only edits of the MJCF, such as the rendering's materials, must not move them).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "env.h"
#include "policy.h"

#define MAX_OBS 32

static sim_env_t *make_env(const char *name)
{
    const sim_task_t *t = sim_task_find(name);
    assert_non_null(t);
    sim_env_t *e;
    char err[512];
    int rc = sim_env_create(t, &e, err, (int)sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", name, err);
    return e;
}

/* qpos / qvel of a named joint. */
static mjtNum *qpos(sim_env_t *e, const char *joint)
{
    sim_world_t *w = sim_env_world(e);
    int j = mj_name2id(w->m, mjOBJ_JOINT, joint);
    assert_true(j >= 0);
    return w->d->qpos + w->m->jnt_qposadr[j];
}

static mjtNum *qvel(sim_env_t *e, const char *joint)
{
    sim_world_t *w = sim_env_world(e);
    int j = mj_name2id(w->m, mjOBJ_JOINT, joint);
    assert_true(j >= 0);
    return w->d->qvel + w->m->jnt_dofadr[j];
}

static double reward_now(sim_env_t *e)
{
    sim_env_forward(e, NULL);
    return sim_env_task(e)->reward(sim_env_world(e));
}

static void test_sizes_and_periods(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int obs, act, repeat, steps;
        double period;
    } want[] = {
        /* Periods and repeats as in model/train/mpc_rssm/tasks.py (cheetah: PlaNet's). */
        {"cartpole-swingup", 5, 1, 8, 125, 0.08}, {"cartpole-balance", 5, 1, 8, 125, 0.08},
        {"pendulum-swingup", 3, 1, 2, 500, 0.04}, {"reacher-easy", 6, 2, 4, 250, 0.08},
        {"cheetah-run", 17, 6, 4, 250, 0.04},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++, n++) {
        sim_env_t *e = make_env(want[i].name);
        const sim_task_t *t = sim_env_task(e);
        assert_int_equal(t->obs_dim, want[i].obs);
        assert_int_equal(t->act_dim, want[i].act);
        assert_int_equal(t->action_repeat, want[i].repeat);
        assert_int_equal(sim_env_episode_steps(e), want[i].steps);
        assert_float_equal(sim_env_control_period(e), want[i].period, 1e-12);
        for (int k = 0; k < t->act_dim; k++) {
            double lo, hi;
            sim_env_action_bounds(e, k, &lo, &hi);
            assert_true(lo == -1.0 && hi == 1.0);
        }
        /* Observations fill exactly obs_dim values, all finite. */
        float obs[MAX_OBS + 1];
        for (int k = 0; k <= MAX_OBS; k++)
            obs[k] = 12345.0f;
        sim_rng_t rng;
        sim_rng_seed(&rng, 3, 1);
        sim_env_reset(e, &rng, obs);
        float act[6] = {0.3f, -0.3f, 1, -1, 0.5f, 0};
        sim_env_step(e, act, obs);
        for (int k = 0; k < t->obs_dim; k++)
            assert_true(isfinite(obs[k]) && obs[k] != 12345.0f);
        assert_true(obs[t->obs_dim] == 12345.0f);
        sim_env_destroy(e);
    }
    int listed = 0;
    while (sim_tasks[listed])
        listed++;
    assert_int_equal(listed, n);
    assert_null(sim_task_find("no-such-task"));
}

static void test_cartpole_goal(void **state)
{
    (void)state;
    sim_env_t *e = make_env("cartpole-swingup");
    sim_rng_t rng;
    sim_rng_seed(&rng, 1, 1);
    float obs[5];
    sim_env_reset(e, &rng, obs);
    /* Start: hanging down, nothing earned. */
    assert_float_equal(obs[1], -1.0, 1e-3);
    assert_true(reward_now(e) < 1e-3);
    /* Upright, centred, still, unforced: exactly 1. */
    *qpos(e, "slider") = 0;
    *qpos(e, "hinge_1") = 0;
    *qvel(e, "slider") = 0;
    *qvel(e, "hinge_1") = 0;
    sim_env_world(e)->d->ctrl[0] = 0;
    assert_float_equal(reward_now(e), 1.0, 1e-12);
    sim_env_forward(e, obs);
    float want[5] = {0, 1, 0, 0, 0};
    for (int i = 0; i < 5; i++)
        assert_float_equal(obs[i], want[i], 1e-6);
    /* The upright pole barely moves in one control step: the step earns ~repeat. */
    float zero = 0;
    assert_float_equal(sim_env_step(e, &zero, obs), 8.0, 1e-3);
    /* Pushing costs: full force keeps at most 4/5 of the reward. */
    *qpos(e, "hinge_1") = 0;
    *qvel(e, "hinge_1") = 0;
    sim_env_world(e)->d->ctrl[0] = 1;
    assert_float_equal(reward_now(e), 0.8, 1e-9);
    /* sin / cos of a tilted pole. */
    *qpos(e, "hinge_1") = 0.5;
    sim_env_forward(e, obs);
    assert_float_equal(obs[1], cos(0.5), 1e-6);
    assert_float_equal(obs[2], sin(0.5), 1e-6);
    sim_env_destroy(e);
}

static void test_pendulum_goal(void **state)
{
    (void)state;
    sim_env_t *e = make_env("pendulum-swingup");
    *qvel(e, "hinge") = 0;
    const struct {
        double deg, reward;
    } cases[] = {{0, 1}, {7.9, 1}, {-7.9, 1}, {8.1, 0}, {90, 0}, {180, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        *qpos(e, "hinge") = cases[i].deg * M_PI / 180;
        assert_float_equal(reward_now(e), cases[i].reward, 0);
    }
    sim_env_destroy(e);
}

static void test_reacher_goal(void **state)
{
    (void)state;
    sim_env_t *e = make_env("reacher-easy");
    sim_world_t *w = sim_env_world(e);
    sim_rng_t rng;
    sim_rng_seed(&rng, 5, 1);
    float obs[6];
    sim_env_reset(e, &rng, obs);
    int target = mj_name2id(w->m, mjOBJ_GEOM, "target");
    int finger = mj_name2id(w->m, mjOBJ_GEOM, "finger");
    /* Target on the finger: 1, and the observation's to_target is ~0. */
    w->m->geom_pos[3 * target] = w->d->geom_xpos[3 * finger];
    w->m->geom_pos[3 * target + 1] = w->d->geom_xpos[3 * finger + 1];
    assert_float_equal(reward_now(e), 1.0, 0);
    sim_env_forward(e, obs);
    assert_float_equal(obs[2], 0.0, 1e-6);
    assert_float_equal(obs[3], 0.0, 1e-6);
    /* 0.07 m away (beyond 0.05 + 0.01): 0. */
    w->m->geom_pos[3 * target] += 0.07;
    assert_float_equal(reward_now(e), 0.0, 0);
    sim_env_forward(e, obs);
    assert_float_equal(obs[2], 0.07, 1e-6);
    sim_env_destroy(e);
}

static void test_cheetah_goal(void **state)
{
    (void)state;
    sim_env_t *e = make_env("cheetah-run");
    const struct {
        double speed, reward;
    } cases[] = {{10, 1}, {12, 1}, {5, 0.5}, {0, 0}, {-3, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mj_resetData(sim_env_world(e)->m, sim_env_world(e)->d);
        *qvel(e, "rootx") = cases[i].speed; /* the whole body moves forward */
        assert_float_equal(reward_now(e), cases[i].reward, 1e-9);
    }
    sim_env_destroy(e);
}

/* Uniform random actions on one task, seeded. */
typedef struct {
    double low[6], high[6];
    sim_policy_t policy;
    sim_rng_t rng; /* initial states */
} random_agent_t;

static void random_agent_init(random_agent_t *a, sim_env_t *e, uint64_t seed)
{
    const sim_task_t *t = sim_env_task(e);
    for (int k = 0; k < t->act_dim; k++)
        sim_env_action_bounds(e, k, &a->low[k], &a->high[k]);
    a->policy = (sim_policy_t){
        .kind = SIM_POLICY_RANDOM, .act_dim = t->act_dim, .low = a->low, .high = a->high};
    sim_rng_seed(&a->policy.rng, seed, 2);
    sim_rng_seed(&a->rng, seed, 1);
}

/* One full episode; every control step's reward must be in [0, action repeat]. */
static double random_episode(sim_env_t *e, random_agent_t *a)
{
    const sim_task_t *t = sim_env_task(e);
    float obs[MAX_OBS], act[6];
    sim_decision_t dec;
    double ret = 0;
    sim_env_reset(e, &a->rng, obs);
    for (int s = 0; s < sim_env_episode_steps(e); s++) {
        sim_policy_act(&a->policy, obs, t->obs_dim, 0, s == 0, act, &dec);
        double r = sim_env_step(e, act, obs);
        assert_true(r >= 0.0 && r <= t->action_repeat + 1e-9);
        ret += r;
    }
    return ret;
}

static void test_rewards_bounded(void **state)
{
    (void)state;
    for (int i = 0; sim_tasks[i]; i++) {
        sim_env_t *e = make_env(sim_tasks[i]->name);
        random_agent_t a;
        random_agent_init(&a, e, 9);
        random_episode(e, &a);
        sim_env_destroy(e);
    }
}

static double energy(sim_env_t *e)
{
    const mjData *d = sim_env_world(e)->d;
    return d->energy[0] + d->energy[1];
}

/* Unforced, the cartpole keeps its energy (RK4, tiny damping) and the pendulum loses
 * energy to its damping, never gaining any. */
static void test_energy(void **state)
{
    (void)state;
    const struct {
        const char *task, *hinge;
        double max_loss; /* fraction of the energy range over the episode */
    } cases[] = {{"cartpole-swingup", "hinge_1", 0.01}, {"pendulum-swingup", "hinge", 1.0}};
    for (size_t c = 0; c < 2; c++) {
        sim_env_t *e = make_env(cases[c].task);
        sim_world_t *w = sim_env_world(e);
        mj_resetData(w->m, w->d);
        *qpos(e, cases[c].hinge) = M_PI / 2; /* horizontal, at rest */
        sim_env_forward(e, NULL);
        double e0 = energy(e);
        *qpos(e, cases[c].hinge) = M_PI; /* the bottom: the lowest energy there is */
        sim_env_forward(e, NULL);
        double bottom = energy(e);
        *qpos(e, cases[c].hinge) = M_PI / 2;
        sim_env_forward(e, NULL);
        double range = e0 - bottom, prev = e0, swing = 0;
        assert_true(range > 0.4); /* m g h: 0.1 kg 0.5 m (cartpole), 1 kg 0.5 m (pendulum) */
        float zero = 0, obs[MAX_OBS];
        for (int s = 0; s < sim_env_episode_steps(e); s++) {
            sim_env_step(e, &zero, obs);
            double now = energy(e);
            assert_true(now <= prev + 1e-6 * range);
            swing = fmax(swing, fabs(obs[cases[c].task[0] == 'c' ? 4 : 2]));
            prev = now;
        }
        assert_true(swing > 1.0); /* it did swing */
        assert_true(prev >= bottom - 1e-9);
        assert_true(e0 - prev <= cases[c].max_loss * range);
        if (cases[c].task[0] == 'p')
            assert_true(e0 - prev > 0.1 * range); /* damping 0.1 over 20 s is felt */
        sim_env_destroy(e);
    }
}

/* Full force one way for a whole episode: the joints stop at their limits (soft
 * constraints give way a little). */
static void test_limits(void **state)
{
    (void)state;
    sim_env_t *e = make_env("cartpole-swingup");
    sim_rng_t rng;
    sim_rng_seed(&rng, 2, 1);
    float obs[5], push = 1.0f, too_much = 100.0f;
    sim_env_reset(e, &rng, obs);
    double max_x = 0;
    for (int s = 0; s < sim_env_episode_steps(e); s++) {
        sim_env_step(e, s % 2 ? &push : &too_much, obs); /* out-of-range actions clip */
        assert_true(sim_env_world(e)->d->ctrl[0] <= 1.0);
        max_x = fmax(max_x, obs[0]);
    }
    /* dm_control's soft limit (solreflimit 0.08 s) gives way ~0.16 m under a steady 10 N;
     * without the limit the cart would be ~45 m away after 10 s. */
    assert_true(max_x > 1.7);
    assert_true(max_x < 1.8 + 0.2);
    assert_true(obs[0] > 1.7 && obs[0] < 1.8 + 0.2);
    sim_env_destroy(e);

    e = make_env("reacher-easy");
    float act[2] = {0.0f, 1.0f}, robs[6];
    sim_env_reset(e, &rng, robs);
    double max_wrist = 0;
    for (int s = 0; s < sim_env_episode_steps(e); s++) {
        sim_env_step(e, act, robs);
        max_wrist = fmax(max_wrist, robs[1]);
    }
    assert_true(max_wrist > 150 * M_PI / 180);
    assert_true(max_wrist < 170 * M_PI / 180); /* 160 deg + ~5 of soft-limit give */
    sim_env_destroy(e);
}

/* The same seed gives the same episode; another seed another one. NaN actions are 0. */
static void test_determinism(void **state)
{
    (void)state;
    float a[126 * 5], b[126 * 5], c[126 * 5];
    float *runs[3] = {a, b, c};
    uint64_t seeds[3] = {4, 4, 5};
    for (int r = 0; r < 3; r++) {
        sim_env_t *e = make_env("cartpole-swingup");
        sim_rng_t rng;
        sim_rng_seed(&rng, seeds[r], 1);
        sim_env_reset(e, &rng, runs[r]);
        for (int s = 0; s < 125; s++) {
            float act = (float)sin(0.3 * s);
            sim_env_step(e, &act, runs[r] + 5 * (s + 1));
        }
        sim_env_destroy(e);
    }
    assert_memory_equal(a, b, sizeof(a));
    assert_true(memcmp(a, c, sizeof(a)) != 0);

    sim_env_t *e = make_env("cartpole-swingup");
    float obs[5], nan_act = NAN;
    sim_rng_t rng;
    sim_rng_seed(&rng, 4, 1);
    sim_env_reset(e, &rng, obs);
    double r = sim_env_step(e, &nan_act, obs);
    assert_true(isfinite(r) && sim_env_world(e)->d->ctrl[0] == 0.0);
    sim_env_destroy(e);
}

static double mean_random_return(const char *task, int episodes, double *max_ret)
{
    sim_env_t *e = make_env(task);
    random_agent_t a;
    random_agent_init(&a, e, 11);
    double sum = 0;
    *max_ret = 0;
    for (int ep = 0; ep < episodes; ep++) {
        double ret = random_episode(e, &a);
        sum += ret;
        *max_ret = fmax(*max_ret, ret);
    }
    sim_env_destroy(e);
    return sum / episodes;
}

/* Random actions earn little: far below a solved task's ~800-1000. The bounds hold for
 * any seed (the means of 10 episodes vary by a few tens). */
static void test_random_returns_are_low(void **state)
{
    (void)state;
    const struct {
        const char *task;
        double min_mean, max_mean, max_episode;
    } cases[] = {
        {"cartpole-swingup", 30, 250, 450},
        {"pendulum-swingup", 0, 100, 300},
        {"reacher-easy", 0, 300, 1000},
        {"cheetah-run", 1, 60, 100},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double max_ret, mean = mean_random_return(cases[i].task, 10, &max_ret);
        print_message("%s: random mean return %.1f, best %.1f\n", cases[i].task, mean, max_ret);
        assert_true(mean >= cases[i].min_mean && mean <= cases[i].max_mean);
        assert_true(max_ret <= cases[i].max_episode);
    }
}

/* FNV-1a, 64 bits, over raw bytes. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* Two seeded random-policy episodes (seed 3, mpc-sim's streams): every control step's
 * float32 observation, double reward, and the double qpos, qvel and act of MuJoCo. */
static uint64_t golden_hash(const char *task)
{
    sim_env_t *e = make_env(task);
    const sim_task_t *t = sim_env_task(e);
    const mjModel *m = sim_env_world(e)->m;
    const mjData *d = sim_env_world(e)->d;
    random_agent_t a;
    random_agent_init(&a, e, 3);
    uint64_t h = 0xcbf29ce484222325ull;
    float obs[MAX_OBS], act[6];
    sim_decision_t dec;
    for (int ep = 0; ep < 2; ep++) {
        sim_env_reset(e, &a.rng, obs);
        h = fnv1a(h, obs, sizeof(float) * (size_t)t->obs_dim);
        for (int s = 0; s < sim_env_episode_steps(e); s++) {
            sim_policy_act(&a.policy, obs, t->obs_dim, 0, s == 0, act, &dec);
            double r = sim_env_step(e, act, obs);
            h = fnv1a(h, obs, sizeof(float) * (size_t)t->obs_dim);
            h = fnv1a(h, &r, sizeof(r));
            h = fnv1a(h, d->qpos, sizeof(mjtNum) * (size_t)m->nq);
            h = fnv1a(h, d->qvel, sizeof(mjtNum) * (size_t)m->nv);
            h = fnv1a(h, d->act, sizeof(mjtNum) * (size_t)m->na);
        }
    }
    sim_env_destroy(e);
    return h;
}

/* Computed before the rendering's visual elements (materials, textures, skybox, lights,
 * cameras) were added to the MJCF, with Debian 12's MuJoCo 2.2.2 on x86-64. A change here
 * means the dynamics changed: a model being trained on these tasks would see other
 * physics. (A MuJoCo upgrade changes them legitimately: then print and update them.) */
static void test_golden_episodes(void **state)
{
    (void)state;
    static const struct {
        const char *task;
        uint64_t hash;
    } golden[] = {
        {"cartpole-swingup", 0x4e3f96d602e0d04full},
        {"cartpole-balance", 0x2d8504f84a5d24e8ull},
        {"pendulum-swingup", 0x935f66af1ece3788ull},
        {"reacher-easy", 0x7c9964b52ba30a7bull},
        {"cheetah-run", 0xe14cea86a02d5d86ull},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(golden) / sizeof(golden[0]); i++) {
        uint64_t h = golden_hash(golden[i].task);
        if (h != golden[i].hash) {
            print_error("%s: episode checksum 0x%016llxull, golden 0x%016llxull\n",
                        golden[i].task, (unsigned long long)h,
                        (unsigned long long)golden[i].hash);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* Episodes (reset, random actions, steps) allocate nothing once the env exists. */
static void test_episodes_allocate_nothing(void **state)
{
    (void)state;
    for (int i = 0; sim_tasks[i]; i++) {
        sim_env_t *e = make_env(sim_tasks[i]->name);
        random_agent_t a;
        random_agent_init(&a, e, 1);
        alloc_count_start();
        random_episode(e, &a);
        random_episode(e, &a);
        assert_int_equal(alloc_count_stop(), 0);
        sim_env_destroy(e);
    }
    /* The counter works: creating an env allocates. */
    alloc_count_start();
    sim_env_t *e = make_env("cartpole-swingup");
    assert_true(alloc_count_stop() > 0);
    sim_env_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_periods),
        cmocka_unit_test(test_cartpole_goal),
        cmocka_unit_test(test_pendulum_goal),
        cmocka_unit_test(test_reacher_goal),
        cmocka_unit_test(test_cheetah_goal),
        cmocka_unit_test(test_rewards_bounded),
        cmocka_unit_test(test_energy),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_random_returns_are_low),
        cmocka_unit_test(test_episodes_allocate_nothing),
        cmocka_unit_test(test_golden_episodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
