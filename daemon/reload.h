/*
 * reload.h: hot-swap: the queue of model reloads (protocol, SIGHUP, file watch), their
 * loads off the loop, the swap, the file watch and the reaping of dead models (reload.c).
 *
 * The reloader knows nothing of the server: it is given the loop, the registry it swaps
 * models in, the settings it reads (model, model-dir, watch, max-model-mb,
 * reload-timeout-s, planner), the metrics it counts in, and events it reports through.
 * It answers a connection's Reload itself (conn_send) and then hands the connection back
 * (events->answered), never serving its next request from its own stack. Loop thread.
 */
#ifndef MPCD_RELOAD_H
#define MPCD_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "conn.h"
#include "metrics.h"
#include "registry.h"

typedef struct reloader reloader_t;

typedef struct reload_events {
    void (*swapped)(void *ctx, registry_model_t *m); /* m serves now */
    void (*changed)(void *ctx, conn_t *c);  /* what a status shows changed (c or NULL) */
    void (*answered)(void *ctx, conn_t *c); /* c's Reload was answered: serve it again */
    void (*status_line)(void *ctx, char *out, size_t outlen); /* for sd_notify STATUS= */
} reload_events_t;

typedef struct reload_opts {
    const mpcd_config_t *cfg;
    int nworkers; /* planners per model */
    registry_t *registry;
    mpcd_metrics_t *metrics;
    const reload_events_t *ev;
    void *ctx;
} reload_opts_t;

/* 0 or a negative errno with err. model-dir (where clients' Reload paths are resolved) is
 * cfg->model_dir, else the directory of cfg->model. */
int reloader_create(uv_loop_t *loop, const reload_opts_t *o, reloader_t **out, char *err,
                    size_t errlen);
/* Frees it; its handles must be closed (reload_stop_watch, then the loop ran). NULL ok. */
void reloader_destroy(reloader_t *rl);

/* Loads the first model synchronously at startup. */
int reload_initial(reloader_t *rl, const char *path, char *err, size_t errlen);
/* Queues a reload (path NULL or "": the current file; confined: a client's path, resolved
 * beneath model-dir). Returns true when c must wait for the reply (sent when it ends). */
bool reload_request(reloader_t *rl, conn_t *c, uint64_t id, const char *path, bool confined);
/* c closed: its pending Reload's reply has nowhere to go. */
void reload_forget_conn(reloader_t *rl, conn_t *c);
/* Frees dead models off the loop. */
void reload_reap(reloader_t *rl);
/* Shutdown: closes the watch and timers; no new watch starts. */
void reload_stop_watch(reloader_t *rl);

/* The serving model's file ("" before one), the last refusal ("" after a success), and
 * whether a load or a reap is still running. */
const char *reload_path(const reloader_t *rl);
const char *reload_last_error(const reloader_t *rl);
bool reload_busy(const reloader_t *rl);

#endif
