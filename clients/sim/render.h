/*
 * render.h: headless camera images of a task (pixel observations, as PlaNet renders them).
 *
 * A renderer owns an OpenGL context made through EGL without a window (Mesa's surfaceless
 * platform, else the first EGL device that initialises; render.c says how) and MuJoCo's
 * scene and render context for one model. Each frame draws the model's state from one of
 * its cameras into MuJoCo's offscreen buffer and reads it back as height x width x 3 bytes
 * (RGB), row-major with the TOP row first, as dm_control's Physics.render returns them.
 *
 * Threads: the context is made current on the calling thread at each frame; use a
 * renderer from one thread at a time, and create and destroy renderers from one thread
 * (they share the process's EGL display). Several renderers may live in one process.
 * A frame allocates nothing in this module (tests/sim/test_render.c counts); MuJoCo's
 * renderer and the OpenGL driver manage their own memory.
 *
 * Functions return 0 or a negative errno and fill err with a message on failure.
 */
#ifndef MPC_SIM_RENDER_H
#define MPC_SIM_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include <mujoco/mujoco.h>

/* Largest image side accepted. */
#define SIM_RENDER_MAX_SIZE 1024

typedef struct sim_render sim_render_t;

/* Whether this build can render: EGL and OpenGL were found when it was configured. */
bool sim_render_available(void);

/* Makes a renderer of width x height images of model m seen from its camera camera_id
 * (0 <= camera_id < m->ncam). m must outlive the renderer and is not written; the
 * offscreen buffer is the image's size (the model's visual/global offwidth and offheight
 * are not used).
 * Returns -ENOTSUP when built without rendering, -ENODEV when no EGL display can be opened
 * (nothing to render with on this machine), -EINVAL for a bad size or camera. */
int sim_render_create(const mjModel *m, int camera_id, int width, int height,
                      sim_render_t **out, char *err, size_t errlen);
void sim_render_destroy(sim_render_t *r);

/* Draws d's current state into rgb (height * width * 3 bytes, top row first). d must be
 * forwarded (mj_forward, or mj_step1 after a step: sim_env does both), so that bodies,
 * cameras and lights are where its qpos puts them; d is not changed. Returns 0, or -EIO
 * when the context cannot be made current or OpenGL reported an error. */
int sim_render_frame(sim_render_t *r, mjData *d, unsigned char *rgb);

/* How frames are drawn, e.g. "EGL surfaceless (Mesa), OpenGL 4.5 (Compatibility Profile)
 * Mesa 22.3.6, llvmpipe (LLVM 15.0.6, 256 bits)". */
const char *sim_render_describe(const sim_render_t *r);

#endif
