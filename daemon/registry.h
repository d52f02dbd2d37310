/*
 * registry.h: reference-counted models and the one serving now.
 *
 * A registry_model_t is a loaded, validated model plus everything sized for it: one
 * planner and one scratch area per worker thread (so workers never share mutable state and
 * nothing is allocated per step). Loading happens off the event loop
 * (registry_model_load); registry_swap then makes the new model current on the loop thread.
 * Every session holds a reference to the model its belief belongs to, so in-flight plans
 * finish on the old model; the last registry_release (from any thread) queues the model
 * for destruction, which registry_reap performs off the control path.
 */
#ifndef MPCD_REGISTRY_H
#define MPCD_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "planner.h"
#include "rssm.h"

/* Per worker, per model: used by that worker only. */
typedef struct registry_slot {
    cem_planner_t *planner;
    float *h;          /* [D] rssm_observe output h' */
    float *prior_mean; /* [S] */
    float *prior_std;  /* [S] */
    float *post_mean;  /* [S] */
    float *post_std;   /* [S] */
    float *reward;     /* [1] */
    float *ws;         /* max(observe, batch(1)) workspace */
    float *buf;        /* the single allocation the arrays above point into */
} registry_slot_t;

typedef struct registry_model {
    rssm_model_t *model;
    const rssm_info_t *info;
    uint64_t version; /* set by registry_swap */
    char *path;
    double load_s;      /* load + validate + smoke test + planners */
    double iteration_s; /* one full CEM iteration, as the planners calibrated it */
    int nslots;
    registry_slot_t *slots; /* [nslots], one per worker */
    atomic_int refs;
    struct registry *owner;
    struct registry_model *next_dead;
} registry_model_t;

typedef void (*registry_wake_cb)(void *ctx);

typedef struct registry {
    registry_model_t *current; /* loop thread only; holds one reference */
    uint64_t version;          /* of current; 0 = none yet */
    pthread_mutex_t lock;      /* guards dead */
    registry_model_t *dead;    /* released models waiting for registry_reap */
    registry_wake_cb wake;     /* called (any thread) when a model died */
    void *wake_ctx;
} registry_t;

int registry_init(registry_t *r, registry_wake_cb wake, void *ctx);
/* Drops the current model and reaps; every other reference must be gone. */
void registry_destroy(registry_t *r);

/* Where a load reads from (opened by model_file_open). */
typedef struct registry_source {
    const char *path;
    const char *confine_dir; /* a client's path, resolved beneath it; NULL: an operator's */
    size_t max_bytes;        /* largest file accepted; 0: no cap */
} registry_source_t;

/* What a model observes: a pixel model (image_channels > 0) image_height x image_width x
 * image_channels uint8 bytes per step (registry_image_bytes) and no observation floats; a
 * vector model dims.obs floats (registry_obs_values) and no image. */
size_t registry_image_bytes(const rssm_info_t *info);
int registry_obs_values(const rssm_info_t *info);
/* The same for messages, e.g. "64x64x3 images (12288 bytes)" or "5 observation values";
 * returns buf. */
const char *registry_obs_shape(const rssm_info_t *info, char *buf, size_t len);

/* Loads src, validates it, runs a smoke forward pass (outputs must be finite; an image
 * model's from a zero image) and creates nslots planners with cfg. When like is not NULL
 * the new model must observe the same kind and shape (vector size, or image shape) and
 * have the same action size (and bounds count). m->path is the path as resolved.
 * Blocking: call it off the loop. Returns 0 or a negative errno/rssm_err_t with the reason
 * in err (for a confined source, never bytes of a file that is not a model); refs starts
 * at 1. */
int registry_model_load(const registry_source_t *src, const cem_config_t *cfg, int nslots,
                        const registry_model_t *like, registry_model_t **out, char *err,
                        size_t errlen);
/* Frees a model that was never published (refs must be 1 or it was never swapped in). */
void registry_model_free(registry_model_t *m);

/* Makes m current with version = previous + 1 (takes over the load's reference) and
 * releases the previous current. Loop thread. */
void registry_swap(registry_t *r, registry_model_t *m);

/* A new reference to the current model, or NULL when none is loaded. Loop thread. */
registry_model_t *registry_acquire(registry_t *r);
void registry_ref(registry_model_t *m);
/* Any thread; NULL is ignored. The last reference queues m for registry_reap. */
void registry_release(registry_model_t *m);

/* Destroys every dead model; returns how many. Blocking (joins planner threads): call it
 * off the control path. */
int registry_reap(registry_t *r);

/* Number of dead models waiting (for tests). */
int registry_dead_count(registry_t *r);

#endif
