/*
 * snapshot.h: the server's state as its status (snapshot.c): the snapshot the HTTP
 * endpoint renders, the protocol's StatusReply (cached) and the systemd STATUS= line.
 * A read-only view of the server; loop thread. Private to daemon/.
 */
#ifndef MPCD_SNAPSHOT_H
#define MPCD_SNAPSHOT_H

#include "server_priv.h"

/* Fills out (mpcd_http_start's snapshot callback; ctx is the server). */
void snapshot_fill(void *ctx, mpcd_status_t *out);
/* Answers Status from the cached StatusReply (MPCD_STATUS_MIN_AGE_S), rebuilt too when
 * the asking connection's own change is newer, so a client asking in a loop costs the
 * loop a copy, not a rebuild. */
void snapshot_send_status(server_t *s, conn_t *c, uint64_t id);
void snapshot_cache_free(server_t *s);
/* "serving TASK version N, K session(s)" for logs and sd_notify. */
void snapshot_status_line(server_t *s, char *out, size_t outlen);

#endif
