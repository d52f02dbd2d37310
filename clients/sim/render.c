/*
 * render.c: headless rendering of a task's camera with MuJoCo's renderer on EGL (render.h).
 *
 * The OpenGL context comes from EGL with no window and no X server:
 *   1. Mesa's surfaceless platform (EGL_MESA_platform_surfaceless): on a machine without a
 *      GPU it renders with llvmpipe, Mesa's software rasteriser (libgl1-mesa-dri).
 *   2. else the first EGL device that initialises (EGL_EXT_platform_device, as dm_control
 *      does): a GPU's driver where one is installed, or Mesa's software device.
 * MPC_SIM_EGL=surfaceless or MPC_SIM_EGL=device picks one of them only. The context is
 * desktop OpenGL (EGL_OPENGL_API, compatibility profile: MuJoCo 2.2's renderer uses fixed
 * function OpenGL 1.5 with framebuffer objects) and has no surface (EGL_NO_SURFACE):
 * MuJoCo draws into its own offscreen framebuffer (mjFB_OFFSCREEN), multisampled as the
 * model's visual/quality offsamples says (4 by default, as in dm_control).
 *
 * One EGL display serves every renderer of the process: it is opened with the first
 * renderer and stays open until the process exits (close_display says why).
 *
 * A frame is dm_control's Camera.render: mjv_updateScene with the default mjvOption, no
 * perturbation, the fixed camera and every category, then mjr_render on a viewport of the
 * image size, mjr_readPixels, and a vertical flip (OpenGL's first row is the bottom one).
 */
#include "render.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

#if SIM_HAVE_RENDER

#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <GL/gl.h>

/* dm_control's Physics.render: the scene holds at least 1000 geoms. */
#define SCENE_MAX_GEOM 1000

struct sim_render {
    EGLContext ctx;
    const mjModel *m;
    int width, height;
    mjrRect viewport;
    mjvScene scn;
    mjvOption opt;
    mjvCamera cam;
    mjvPerturb pert;
    mjrContext con;
    bool scene_made, context_made;
    unsigned char *bottom_up; /* height x width x 3, as OpenGL reads it */
    char describe[384];
};

/* The process's EGL display, shared by the renderers. */
static struct {
    EGLDisplay dpy;
    int refs;
    char how[96];
} egl = {EGL_NO_DISPLAY, 0, ""};

bool sim_render_available(void)
{
    return true;
}

static bool has_extension(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static EGLDisplay initialize(EGLDisplay dpy)
{
    if (dpy != EGL_NO_DISPLAY && eglInitialize(dpy, NULL, NULL) == EGL_TRUE)
        return dpy;
    return EGL_NO_DISPLAY;
}

/* The first device whose display initialises (dm_control's choice). */
static EGLDisplay open_device(PFNEGLGETPLATFORMDISPLAYEXTPROC get_display, int *index)
{
    PFNEGLQUERYDEVICESEXTPROC query_devices =
        (PFNEGLQUERYDEVICESEXTPROC)eglGetProcAddress("eglQueryDevicesEXT");
    EGLDeviceEXT devices[16];
    EGLint n = 0;
    if (query_devices == NULL || !query_devices(16, devices, &n))
        return EGL_NO_DISPLAY;
    for (EGLint i = 0; i < n; i++) {
        EGLDisplay dpy = initialize(get_display(EGL_PLATFORM_DEVICE_EXT, devices[i], NULL));
        if (dpy != EGL_NO_DISPLAY) {
            *index = (int)i;
            return dpy;
        }
    }
    return EGL_NO_DISPLAY;
}

static int open_display(char *err, size_t errlen)
{
    if (egl.dpy != EGL_NO_DISPLAY) { /* open already, or kept open (close_display) */
        egl.refs++;
        return 0;
    }
    const char *want = getenv("MPC_SIM_EGL");
    if (want && *want && strcmp(want, "surfaceless") != 0 && strcmp(want, "device") != 0) {
        errbuf_set(err, errlen, "MPC_SIM_EGL='%s': expected surfaceless or device", want);
        return -EINVAL;
    }
    const char *client = eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS);
    PFNEGLGETPLATFORMDISPLAYEXTPROC get_display =
        (PFNEGLGETPLATFORMDISPLAYEXTPROC)eglGetProcAddress("eglGetPlatformDisplayEXT");
    if (client == NULL || get_display == NULL) {
        errbuf_set(err, errlen, "EGL has no platform extensions (EGL_EXT_platform_base)");
        return -ENODEV;
    }
    EGLDisplay dpy = EGL_NO_DISPLAY;
    bool any = !want || !*want;
    const char *surfaceless = "not offered", *device = "not offered";
    if (!any && strcmp(want, "surfaceless") != 0) {
        surfaceless = "not tried";
    } else if (has_extension(client, "EGL_MESA_platform_surfaceless")) {
        dpy = initialize(get_display(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, NULL));
        surfaceless = "failed";
        snprintf(egl.how, sizeof(egl.how), "EGL surfaceless");
    }
    int index = -1;
    if (dpy != EGL_NO_DISPLAY) {
        /* found */
    } else if (!any && strcmp(want, "device") != 0) {
        device = "not tried";
    } else if (has_extension(client, "EGL_EXT_platform_device")) {
        dpy = open_device(get_display, &index);
        device = "none initialised";
        snprintf(egl.how, sizeof(egl.how), "EGL device %d", index);
    }
    if (dpy == EGL_NO_DISPLAY) {
        errbuf_set(err, errlen,
                   "no EGL display: Mesa's surfaceless platform %s, EGL devices %s%s%s "
                   "(install libegl1, libegl-mesa0 and libgl1-mesa-dri: tools/install-deps)",
                   surfaceless, device, any ? "" : "; MPC_SIM_EGL=", any ? "" : want);
        return -ENODEV;
    }
    const char *vendor = eglQueryString(dpy, EGL_VENDOR);
    size_t len = strlen(egl.how);
    snprintf(egl.how + len, sizeof(egl.how) - len, " (%s)", vendor ? vendor : "?");
    egl.dpy = dpy;
    egl.refs = 1;
    return 0;
}

/* The display stays initialised until the process exits: eglTerminate would unload
 * Mesa's driver, whose own allocations LeakSanitizer then reports from an unknown module
 * (nothing of ours), and the next renderer would only open it again. */
static void close_display(void)
{
    if (egl.refs > 0 && --egl.refs == 0)
        eglReleaseThread();
}

/* An OpenGL context with no surface, made current. */
static int make_context(sim_render_t *r, char *err, size_t errlen)
{
    static const EGLint attribs[] = {
        EGL_RED_SIZE,
        8,
        EGL_GREEN_SIZE,
        8,
        EGL_BLUE_SIZE,
        8,
        EGL_ALPHA_SIZE,
        8,
        EGL_DEPTH_SIZE,
        24,
        EGL_STENCIL_SIZE,
        8,
        EGL_COLOR_BUFFER_TYPE,
        EGL_RGB_BUFFER,
        EGL_SURFACE_TYPE,
        EGL_PBUFFER_BIT,
        EGL_RENDERABLE_TYPE,
        EGL_OPENGL_BIT,
        EGL_NONE,
    };
    EGLConfig config;
    EGLint n = 0;
    if (!eglChooseConfig(egl.dpy, attribs, &config, 1, &n) || n < 1) {
        errbuf_set(err, errlen, "%s: no EGL config with 8-bit RGBA, 24-bit depth and OpenGL",
                   egl.how);
        return -ENODEV;
    }
    if (!eglBindAPI(EGL_OPENGL_API)) {
        errbuf_set(err, errlen, "%s: desktop OpenGL is not offered (eglBindAPI)", egl.how);
        return -ENODEV;
    }
    r->ctx = eglCreateContext(egl.dpy, config, EGL_NO_CONTEXT, NULL);
    if (r->ctx == EGL_NO_CONTEXT) {
        errbuf_set(err, errlen, "%s: eglCreateContext failed (EGL error 0x%x)", egl.how,
                   (unsigned)eglGetError());
        return -ENODEV;
    }
    if (!eglMakeCurrent(egl.dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, r->ctx)) {
        errbuf_set(err, errlen, "%s: eglMakeCurrent without a surface failed (EGL error 0x%x)",
                   egl.how, (unsigned)eglGetError());
        return -ENODEV;
    }
    /* MuJoCo aborts the process when the context lacks what it needs: check first. */
    const char *version = (const char *)glGetString(GL_VERSION);
    const char *renderer = (const char *)glGetString(GL_RENDERER);
    int major = 0, minor = 0;
    if (version == NULL || sscanf(version, "%d.%d", &major, &minor) != 2 ||
        major * 10 + minor < 15) {
        errbuf_set(err, errlen, "%s: OpenGL %s; MuJoCo needs 1.5 or newer", egl.how,
                   version ? version : "(no version)");
        return -ENODEV;
    }
    snprintf(r->describe, sizeof(r->describe), "%s, OpenGL %s, %s", egl.how, version,
             renderer ? renderer : "?");
    return 0;
}

static int make_current(const sim_render_t *r)
{
    if (eglGetCurrentContext() == r->ctx)
        return 0;
    return eglMakeCurrent(egl.dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, r->ctx) ? 0 : -EIO;
}

int sim_render_create(const mjModel *m, int camera_id, int width, int height,
                      sim_render_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (width < 1 || height < 1 || width > SIM_RENDER_MAX_SIZE ||
        height > SIM_RENDER_MAX_SIZE) {
        errbuf_set(err, errlen, "image size %dx%d outside 1..%d", width, height,
                   SIM_RENDER_MAX_SIZE);
        return -EINVAL;
    }
    if (camera_id < 0 || camera_id >= m->ncam) {
        errbuf_set(err, errlen, "camera %d: the model has %d camera%s", camera_id, m->ncam,
                   m->ncam == 1 ? "" : "s");
        return -EINVAL;
    }
    sim_render_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->bottom_up = malloc((size_t)width * (size_t)height * 3)) == NULL) {
        free(r);
        errbuf_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->ctx = EGL_NO_CONTEXT;
    r->m = m;
    r->width = width;
    r->height = height;
    r->viewport = (mjrRect){0, 0, width, height};
    int rc = open_display(err, errlen);
    if (rc < 0) {
        free(r->bottom_up);
        free(r);
        return rc;
    }
    if ((rc = make_context(r, err, errlen)) < 0)
        goto fail;

    mjv_defaultScene(&r->scn);
    mjv_makeScene(m, &r->scn, SCENE_MAX_GEOM);
    r->scene_made = true;
    mjv_defaultOption(&r->opt);
    mjv_defaultPerturb(&r->pert);
    mjv_defaultCamera(&r->cam);
    r->cam.type = mjCAMERA_FIXED;
    r->cam.fixedcamid = camera_id;

    /* The offscreen buffer is the image's size (dm_control draws into the model's 640x480
     * buffer on a viewport of the image's size at its bottom left: the same bytes, as
     * compared on all four tasks when this was written, with more memory to clear and
     * resolve). A shallow copy of the model carries the size, so the caller's model is
     * never written. */
    mjModel sized = *m;
    sized.vis.global.offwidth = width;
    sized.vis.global.offheight = height;
    mjr_defaultContext(&r->con);
    mjr_makeContext(&sized, &r->con, mjFONTSCALE_150);
    r->context_made = true;
    mjr_setBuffer(mjFB_OFFSCREEN, &r->con);
    if (r->con.currentBuffer != mjFB_OFFSCREEN || r->con.offWidth < width ||
        r->con.offHeight < height) {
        errbuf_set(err, errlen, "%s: no %dx%d offscreen framebuffer", r->describe, width,
                   height);
        rc = -ENODEV;
        goto fail;
    }
    GLenum gl_err = glGetError();
    if (gl_err != GL_NO_ERROR) {
        errbuf_set(err, errlen, "%s: OpenGL error 0x%x while setting up", r->describe,
                   (unsigned)gl_err);
        rc = -EIO;
        goto fail;
    }
    *out = r;
    return 0;
fail:
    sim_render_destroy(r);
    return rc;
}

void sim_render_destroy(sim_render_t *r)
{
    if (r == NULL)
        return;
    if (r->ctx != EGL_NO_CONTEXT) {
        /* MuJoCo frees its OpenGL objects in this context. */
        if (make_current(r) == 0 && r->context_made)
            mjr_freeContext(&r->con);
        eglMakeCurrent(egl.dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
        eglDestroyContext(egl.dpy, r->ctx);
    }
    if (r->scene_made)
        mjv_freeScene(&r->scn);
    if (r->bottom_up)
        close_display(); /* opened after the buffer was allocated */
    free(r->bottom_up);
    free(r);
}

int sim_render_frame(sim_render_t *r, mjData *d, unsigned char *rgb)
{
    if (make_current(r) < 0)
        return -EIO;
    mjv_updateScene(r->m, d, &r->opt, &r->pert, &r->cam, mjCAT_ALL, &r->scn);
    mjr_setBuffer(mjFB_OFFSCREEN, &r->con);
    mjr_render(r->viewport, &r->scn, &r->con);
    mjr_readPixels(r->bottom_up, NULL, r->viewport, &r->con);
    size_t row = (size_t)r->width * 3;
    for (int y = 0; y < r->height; y++)
        memcpy(rgb + (size_t)y * row, r->bottom_up + (size_t)(r->height - 1 - y) * row, row);
    return glGetError() == GL_NO_ERROR ? 0 : -EIO;
}

const char *sim_render_describe(const sim_render_t *r)
{
    return r->describe;
}

#else /* !SIM_HAVE_RENDER: built without EGL or OpenGL */

bool sim_render_available(void)
{
    return false;
}

int sim_render_create(const mjModel *m, int camera_id, int width, int height,
                      sim_render_t **out, char *err, size_t errlen)
{
    (void)m, (void)camera_id, (void)width, (void)height;
    *out = NULL;
    errbuf_set(
        err, errlen,
        "this mpc-sim was built without rendering: EGL and OpenGL were not found when "
        "it was configured (install libegl-dev, libgl-dev, libopengl-dev and libgl1-mesa-dri, "
        "e.g. with tools/install-deps, then reconfigure: meson setup --reconfigure)");
    return -ENOTSUP;
}

void sim_render_destroy(sim_render_t *r)
{
    (void)r;
}

int sim_render_frame(sim_render_t *r, mjData *d, unsigned char *rgb)
{
    (void)r, (void)d, (void)rgb;
    return -ENOTSUP;
}

const char *sim_render_describe(const sim_render_t *r)
{
    (void)r;
    return "no rendering in this build";
}

#endif
