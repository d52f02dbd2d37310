/*
 * server.h: the mpcd server: one libuv loop that owns the listeners, connections and
 * sessions, a worker pool that plans, the model registry, hot-swap, the status endpoint,
 * signals and systemd notifications.
 *
 * server_run blocks until SIGTERM/SIGINT (or server_stop) and a graceful drain, and
 * returns 0 on a clean shutdown.
 */
#ifndef MPCD_SERVER_H
#define MPCD_SERVER_H

#include <stddef.h>

#include "config.h"

typedef struct server server_t;

/* Loads the model (if configured), binds every listener and the status endpoint. On
 * failure returns a negative errno with the reason in err (nothing is left running). */
int server_create(const mpcd_config_t *cfg, server_t **out, char *err, size_t errlen);
/* Runs the loop until shutdown; 0 on a clean exit. */
int server_run(server_t *s);
void server_destroy(server_t *s);

#endif
