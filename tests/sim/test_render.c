/*
 * test_render.c: headless rendering of the tasks (clients/sim/render.c): it works without
 * a display, frames have the promised size and layout (top row first, nothing written past
 * the end), the same state gives the same bytes, frames are not blank, each task's camera
 * is dm_control's camera 0 and looks at the right thing (cartpole: the cart at the
 * horizontal centre at x = 0, moving right with the cart, sky on top, floor at the
 * bottom; reacher from above with x to the right; pendulum; cheetah's camera follows the
 * body), rendering leaves the physics alone, several renderers live together, and frames
 * allocate nothing. Prints the time per 64x64 frame.
 *
 * Exits 77 (skipped) when no EGL display can be opened here, or when this build has no
 * rendering: nothing else makes it skip.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "env.h"
#include "policy.h"
#include "render.h"

#define N 64

typedef struct {
    sim_env_t *env;
    sim_render_t *render;
    int w, h;
} view_t;

static view_t open_view(const char *task, int w, int h)
{
    view_t v = {.w = w, .h = h};
    const sim_task_t *t = sim_task_find(task);
    assert_non_null(t);
    char err[512];
    if (sim_env_create(t, &v.env, err, (int)sizeof(err)) != 0)
        fail_msg("%s: %s", task, err);
    const mjModel *m = sim_env_world(v.env)->m;
    int rc = sim_render_create(m, mj_name2id(m, mjOBJ_CAMERA, t->camera), w, h, &v.render, err,
                               sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", task, err);
    return v;
}

static void close_view(view_t *v)
{
    sim_render_destroy(v->render);
    sim_env_destroy(v->env);
}

static mjModel *model(view_t *v)
{
    return sim_env_world(v->env)->m;
}

static mjData *data(view_t *v)
{
    return sim_env_world(v->env)->d;
}

static mjtNum *qpos(view_t *v, const char *joint)
{
    int j = mj_name2id(model(v), mjOBJ_JOINT, joint);
    assert_true(j >= 0);
    return data(v)->qpos + model(v)->jnt_qposadr[j];
}

static void draw(view_t *v, unsigned char *rgb)
{
    assert_int_equal(sim_render_frame(v->render, data(v), rgb), 0);
}

/* Resets with a seed and draws. */
static void reset_and_draw(view_t *v, uint64_t seed, unsigned char *rgb)
{
    sim_rng_t rng;
    sim_rng_seed(&rng, seed, 1);
    float obs[32];
    sim_env_reset(v->env, &rng, obs);
    draw(v, rgb);
}

static const unsigned char *px(const unsigned char *rgb, int w, int x, int y)
{
    return rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
}

/* Orange-brown: dm_control's "self" (0.7 0.5 0.3) and "effector" (0.7 0.4 0.2). */
static bool is_self(const unsigned char *p)
{
    return p[0] > 90 && p[0] > p[2] + 50;
}

/* Red: dm_control's "target" (0.6 0.3 0.3). */
static bool is_target(const unsigned char *p)
{
    return p[0] > 90 && p[0] > p[1] + 40 && p[0] > p[2] + 40 && p[1] < p[2] + 25;
}

/* Centroid of the pixels pred accepts; returns their number. */
static int centroid(const unsigned char *rgb, int w, int h, bool (*pred)(const unsigned char *),
                    double *cx, double *cy)
{
    int n = 0;
    double sx = 0, sy = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (pred(px(rgb, w, x, y))) {
                n++;
                sx += x;
                sy += y;
            }
    *cx = n ? sx / n : NAN;
    *cy = n ? sy / n : NAN;
    return n;
}

static void test_camera_is_dm_controls_camera_0(void **state)
{
    (void)state;
    static const struct {
        const char *task, *camera;
        int ncam;
    } want[] = {
        {"cartpole-swingup", "fixed", 2}, {"cartpole-balance", "fixed", 2},
        {"pendulum-swingup", "fixed", 2}, {"reacher-easy", "fixed", 2},
        {"cheetah-run", "side", 2},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const sim_task_t *t = sim_task_find(want[i].task);
        sim_env_t *e;
        char err[512];
        assert_int_equal(sim_env_create(t, &e, err, (int)sizeof(err)), 0);
        const mjModel *m = sim_env_world(e)->m;
        assert_string_equal(t->camera, want[i].camera);
        assert_int_equal(mj_name2id(m, mjOBJ_CAMERA, t->camera), 0);
        assert_int_equal(m->ncam, want[i].ncam);   /* as many as dm_control's XML has */
        assert_true(m->ntex == 2 && m->nmat >= 5); /* skybox, grid; the materials */
        sim_env_destroy(e);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    view_t v = open_view("cartpole-swingup", 8, 8);
    sim_render_t *r = NULL;
    char err[512];
    const mjModel *m = model(&v);
    assert_int_equal(sim_render_create(m, -1, N, N, &r, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "camera"));
    assert_int_equal(sim_render_create(m, m->ncam, N, N, &r, err, sizeof(err)), -EINVAL);
    assert_int_equal(sim_render_create(m, 0, 0, N, &r, err, sizeof(err)), -EINVAL);
    assert_int_equal(sim_render_create(m, 0, N, SIM_RENDER_MAX_SIZE + 1, &r, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "size"));
    assert_null(r);
    sim_render_destroy(NULL);
    close_view(&v);
}

/* height x width x 3, nothing written past the end; width and height not swapped. */
static void test_size_and_layout(void **state)
{
    (void)state;
    const int w = 48, h = 32;
    view_t v = open_view("cartpole-swingup", w, h);
    size_t n = (size_t)w * h * 3;
    unsigned char *rgb = malloc(n + 64);
    memset(rgb, 0xA5, n + 64);
    reset_and_draw(&v, 1, rgb);
    for (size_t i = n; i < n + 64; i++)
        assert_int_equal(rgb[i], 0xA5);
    /* The whole frame was written: no row keeps the fill pattern. */
    for (int y = 0; y < h; y++) {
        int same = 0;
        for (int x = 0; x < w * 3; x++)
            same += rgb[(size_t)y * w * 3 + x] == 0xA5;
        assert_true(same < w * 3);
    }
    /* The cart (wider than high, at mid-height) in a wide frame: centred at x = 0. */
    *qpos(&v, "slider") = 0;
    *qpos(&v, "hinge_1") = 0;
    mj_forward(model(&v), data(&v));
    draw(&v, rgb);
    double cx, cy;
    assert_true(centroid(rgb, w, h, is_self, &cx, &cy) > 5);
    assert_true(fabs(cx - (w - 1) / 2.0) < 1.5);
    free(rgb);
    close_view(&v);
}

static void test_deterministic(void **state)
{
    (void)state;
    static unsigned char a[N * N * 3], b[N * N * 3], c[N * N * 3];
    for (int i = 0; sim_tasks[i]; i++) {
        view_t v = open_view(sim_tasks[i]->name, N, N);
        reset_and_draw(&v, 7, a);
        draw(&v, b);
        assert_memory_equal(a, b, sizeof(a));
        /* Another state in between, then the same state again: the same bytes. */
        reset_and_draw(&v, 8, c);
        assert_true(memcmp(a, c, sizeof(a)) != 0);
        reset_and_draw(&v, 7, b);
        assert_memory_equal(a, b, sizeof(a));
        /* A second renderer of a second env in the same state: the same bytes. */
        view_t u = open_view(sim_tasks[i]->name, N, N);
        reset_and_draw(&u, 7, c);
        assert_memory_equal(a, c, sizeof(a));
        close_view(&u);
        close_view(&v);
    }
}

/* Every task's frame has structure: many distinct colours, some spread in brightness,
 * and some of the body's colour. */
static void test_not_blank(void **state)
{
    (void)state;
    static unsigned char rgb[N * N * 3];
    static unsigned char seen[1 << 15];
    for (int i = 0; sim_tasks[i]; i++) {
        view_t v = open_view(sim_tasks[i]->name, N, N);
        reset_and_draw(&v, 3, rgb);
        memset(seen, 0, sizeof(seen));
        int distinct = 0, lo = 255, hi = 0;
        for (int k = 0; k < N * N; k++) {
            const unsigned char *p = rgb + 3 * k;
            int key = (p[0] >> 3) << 10 | (p[1] >> 3) << 5 | p[2] >> 3;
            distinct += !seen[key];
            seen[key] = 1;
            int y = (p[0] + p[1] + p[2]) / 3;
            lo = y < lo ? y : lo;
            hi = y > hi ? y : hi;
        }
        double cx, cy;
        int body = centroid(rgb, N, N, is_self, &cx, &cy);
        print_message("%s: %d distinct colours, brightness %d..%d, %d body pixels\n",
                      sim_tasks[i]->name, distinct, lo, hi, body);
        assert_true(distinct > 40);
        assert_true(hi - lo > 60);
        assert_true(body >= 4);
        close_view(&v);
    }
}

/* Cartpole's 'fixed' camera looks at the cart from the front: x = 0 at the horizontal
 * centre, +x to the right (about 19 px per metre at 4 m with a 45 degree field of view),
 * the sky in the top row, the floor in the bottom rows. */
static void test_cartpole_view(void **state)
{
    (void)state;
    static unsigned char a[N * N * 3], b[N * N * 3], c[N * N * 3];
    view_t v = open_view("cartpole-swingup", N, N);
    mjModel *m = model(&v);
    reset_and_draw(&v, 1, a);
    *qpos(&v, "slider") = 0;
    *qpos(&v, "hinge_1") = M_PI; /* hanging down */
    mj_forward(m, data(&v));
    draw(&v, a);
    double x0, y0, x1, y1;
    assert_true(centroid(a, N, N, is_self, &x0, &y0) > 20);
    assert_true(fabs(x0 - (N - 1) / 2.0) < 1.0);
    *qpos(&v, "slider") = 1.0;
    mj_forward(m, data(&v));
    draw(&v, b);
    assert_true(centroid(b, N, N, is_self, &x1, &y1) > 20);
    print_message("cart at x = 0: column %.1f; at x = 1 m: column %.1f\n", x0, x1);
    assert_true(x1 - x0 > 15 && x1 - x0 < 24);
    assert_true(fabs(y1 - y0) < 3.0); /* the pole's reflection on the floor moves too */
    /* The top row shows the sky: blue, and the same whatever the floor does. */
    for (int x = 0; x < N; x++) {
        const unsigned char *p = px(a, N, x, 0);
        assert_true(p[2] > p[0] + 30);
    }
    int floor = mj_name2id(m, mjOBJ_GEOM, "floor");
    int matid = m->geom_matid[floor];
    m->geom_matid[floor] = -1; /* drawing only: hide the floor */
    m->geom_rgba[4 * floor + 3] = 0;
    *qpos(&v, "slider") = 0;
    mj_forward(m, data(&v));
    draw(&v, c);
    m->geom_matid[floor] = matid;
    m->geom_rgba[4 * floor + 3] = 1;
    assert_memory_equal(a, c, N * 3); /* top row */
    /* The bottom rows show the floor: they change when it is hidden. */
    long changed = 0;
    for (int y = N - 8; y < N; y++)
        for (int x = 0; x < N * 3; x++)
            changed += abs((int)px(a, N, 0, y)[x] - (int)px(c, N, 0, y)[x]) > 8;
    assert_true(changed > N * 3 * 8 / 2);
    close_view(&v);
}

/* Reacher's camera looks straight down: world +x to the right, +y up the image. */
static void test_reacher_view(void **state)
{
    (void)state;
    static unsigned char rgb[N * N * 3];
    view_t v = open_view("reacher-easy", N, N);
    mjModel *m = model(&v);
    int target = mj_name2id(m, mjOBJ_GEOM, "target");
    reset_and_draw(&v, 1, rgb);
    const double where[3][2] = {{0.15, 0}, {0, 0.15}, {-0.15, -0.15}};
    double cx[3], cy[3];
    for (int k = 0; k < 3; k++) {
        m->geom_pos[3 * target] = where[k][0];
        m->geom_pos[3 * target + 1] = where[k][1];
        mj_forward(m, data(&v));
        draw(&v, rgb);
        assert_true(centroid(rgb, N, N, is_target, &cx[k], &cy[k]) > 20);
    }
    /* 0.15 m, 0.74 m below the camera, with 45 degrees: about 16 px from the centre. */
    assert_true(cx[0] - 31.5 > 13 && cx[0] - 31.5 < 19 && fabs(cy[0] - 31.5) < 1.5);
    assert_true(31.5 - cy[1] > 13 && 31.5 - cy[1] < 19 && fabs(cx[1] - 31.5) < 1.5);
    assert_true(cx[2] < 31.5 - 13 && cy[2] > 31.5 + 13);
    close_view(&v);
}

/* Pendulum: the mass swings to the right of the image for a positive hinge angle. */
static void test_pendulum_view(void **state)
{
    (void)state;
    static unsigned char rgb[N * N * 3];
    view_t v = open_view("pendulum-swingup", N, N);
    double cx[2], cy[2];
    const double angle[2] = {M_PI / 2, -M_PI / 2};
    for (int k = 0; k < 2; k++) {
        *qpos(&v, "hinge") = angle[k];
        mj_forward(model(&v), data(&v));
        draw(&v, rgb);
        assert_true(centroid(rgb, N, N, is_self, &cx[k], &cy[k]) > 4);
    }
    assert_true(cx[0] > 31.5 + 3 && cx[1] < 31.5 - 3);
    close_view(&v);
}

/* Cheetah's 'side' camera tracks the body's centre of mass: 5 m further on, the body is
 * drawn where it was. */
static void test_cheetah_camera_follows(void **state)
{
    (void)state;
    static unsigned char rgb[N * N * 3];
    view_t v = open_view("cheetah-run", N, N);
    double cx[2], cy[2];
    for (int k = 0; k < 2; k++) {
        mj_resetData(model(&v), data(&v));
        *qpos(&v, "rootx") = 5.0 * k;
        mj_forward(model(&v), data(&v));
        draw(&v, rgb);
        assert_true(centroid(rgb, N, N, is_self, &cx[k], &cy[k]) > 50);
    }
    assert_true(fabs(cx[0] - 31.5) < 3);
    assert_true(fabs(cx[1] - cx[0]) < 0.5 && fabs(cy[1] - cy[0]) < 0.5);
    close_view(&v);
}

/* Drawing reads mjData only: an episode drawn at every step is bit for bit the episode
 * not drawn. */
static void test_rendering_leaves_physics_alone(void **state)
{
    (void)state;
    static unsigned char rgb[N * N * 3];
    for (int i = 0; sim_tasks[i]; i++) {
        view_t v = open_view(sim_tasks[i]->name, N, N);
        sim_env_t *plain;
        char err[512];
        assert_int_equal(sim_env_create(sim_tasks[i], &plain, err, (int)sizeof(err)), 0);
        sim_env_t *envs[2] = {v.env, plain};
        float obs[2][32], act[6];
        double lo[6], hi[6];
        sim_policy_t pol[2];
        sim_rng_t rng[2];
        const sim_task_t *t = sim_tasks[i];
        for (int k = 0; k < t->act_dim; k++)
            sim_env_action_bounds(plain, k, &lo[k], &hi[k]);
        for (int e = 0; e < 2; e++) {
            pol[e] = (sim_policy_t){
                .kind = SIM_POLICY_RANDOM, .act_dim = t->act_dim, .low = lo, .high = hi};
            sim_rng_seed(&pol[e].rng, 5, 2);
            sim_rng_seed(&rng[e], 5, 1);
            sim_env_reset(envs[e], &rng[e], obs[e]);
        }
        draw(&v, rgb);
        for (int s = 0; s < 40; s++) {
            double r[2];
            for (int e = 0; e < 2; e++) {
                sim_decision_t dec;
                sim_policy_act(&pol[e], obs[e], t->obs_dim, 0, s == 0, act, &dec);
                r[e] = sim_env_step(envs[e], act, obs[e]);
            }
            draw(&v, rgb);
            assert_memory_equal(obs[0], obs[1], sizeof(float) * (size_t)t->obs_dim);
            assert_memory_equal(&r[0], &r[1], sizeof(double));
            const mjData *d0 = data(&v), *d1 = sim_env_world(plain)->d;
            assert_memory_equal(d0->qpos, d1->qpos, sizeof(mjtNum) * (size_t)model(&v)->nq);
            assert_memory_equal(d0->qvel, d1->qvel, sizeof(mjtNum) * (size_t)model(&v)->nv);
        }
        sim_env_destroy(plain);
        close_view(&v);
    }
}

/* Renderers of several tasks live together and draw in turn; closing one (the first
 * made, which opened the EGL display) leaves the others working. */
static void test_renderers_together(void **state)
{
    (void)state;
    static unsigned char a[N * N * 3], b[N * N * 3], c[N * N * 3];
    view_t first = open_view("cartpole-swingup", N, N);
    view_t second = open_view("cheetah-run", N, N);
    reset_and_draw(&second, 2, a);
    reset_and_draw(&first, 2, c);
    draw(&second, b);
    assert_memory_equal(a, b, sizeof(a));
    close_view(&first);
    draw(&second, b);
    assert_memory_equal(a, b, sizeof(a));
    close_view(&second);
    /* And a new one after all were closed (the display is opened again). */
    view_t third = open_view("cheetah-run", N, N);
    reset_and_draw(&third, 2, b);
    assert_memory_equal(a, b, sizeof(a));
    close_view(&third);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Frames allocate nothing in this module (MuJoCo and the OpenGL driver are shared
 * libraries: their own memory is not counted). Prints the time per frame. */
static void test_frames_allocate_nothing(void **state)
{
    (void)state;
    static unsigned char rgb[N * N * 3];
    for (int i = 0; sim_tasks[i]; i++) {
        view_t v = open_view(sim_tasks[i]->name, N, N);
        reset_and_draw(&v, 4, rgb); /* the first frame compiles the driver's shaders */
        float act[6] = {0.5f, -0.5f, 0.3f, 0.2f, -1, 1}, obs[32];
        const int frames = 30;
        double spent = 0;
        alloc_count_start();
        for (int k = 0; k < frames; k++) {
            sim_env_step(v.env, act, obs);
            double t0 = now_s();
            draw(&v, rgb);
            spent += now_s() - t0;
        }
        assert_int_equal(alloc_count_stop(), 0);
        print_message("%s: %.2f ms per %dx%d frame (%s)\n", sim_tasks[i]->name,
                      spent * 1e3 / frames, N, N, sim_render_describe(v.render));
        close_view(&v);
    }
}

int main(void)
{
    /* Skip (77) only when nothing here can render. */
    sim_env_t *e;
    sim_render_t *r;
    char err[512];
    if (sim_env_create(sim_task_find("cartpole-swingup"), &e, err, (int)sizeof(err)) != 0) {
        fprintf(stderr, "test_render: %s\n", err);
        return 1;
    }
    int rc = sim_render_create(sim_env_world(e)->m, 0, N, N, &r, err, sizeof(err));
    sim_env_destroy(e);
    if (rc == -ENODEV || rc == -ENOTSUP) {
        fprintf(stderr, "test_render: SKIP: cannot render here: %s\n", err);
        return 77;
    }
    if (rc != 0) {
        fprintf(stderr, "test_render: %s\n", err);
        return 1;
    }
    sim_render_destroy(r);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_camera_is_dm_controls_camera_0),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_size_and_layout),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_not_blank),
        cmocka_unit_test(test_cartpole_view),
        cmocka_unit_test(test_reacher_view),
        cmocka_unit_test(test_pendulum_view),
        cmocka_unit_test(test_cheetah_camera_follows),
        cmocka_unit_test(test_rendering_leaves_physics_alone),
        cmocka_unit_test(test_renderers_together),
        cmocka_unit_test(test_frames_allocate_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
