/*
 * dispatch.h: the protocol's per-client side of the server (dispatch.c), as server.c
 * uses it. Private to daemon/; loop thread unless said otherwise.
 */
#ifndef MPCD_DISPATCH_H
#define MPCD_DISPATCH_H

#include <stdbool.h>

#include "server_priv.h"

/* conn_events_t's: requests were queued / one was answered OVERLOADED / the stream
 * failed (owner: the server). */
void dispatch_readable(void *owner, conn_t *c);
void dispatch_overflow(void *owner, conn_t *c, const Mpc__V1__Request *r);
void dispatch_fatal(void *owner, conn_t *c, int frame_err);
/* c closed (its handles are gone): its session leaves. */
void dispatch_closed(server_t *s, conn_t *c);

/* Serves c's queued requests in order until one has to wait. */
void dispatch_pump(server_t *s, conn_t *c);
/* A worker finished c's step: its reply, metrics and recording. */
void dispatch_step_done(server_t *s, conn_t *c);
/* Tells the workers when the next paced step is due (warm-up). */
void dispatch_expect_next_step(server_t *s);
/* workq_set_warm's callback: keeps worker `worker`'s planner team awake. Worker thread. */
void dispatch_warm_team(void *ctx, int worker, bool on);
/* The state a status shows changed (c: the connection that changed it, or NULL). */
void dispatch_changed(server_t *s, conn_t *c);
/* c's request in progress was answered by a completion (a reload): its next requests are
 * served from the loop, never from the completion's stack. */
void dispatch_conn_ready(server_t *s, conn_t *c);
/* One request answered with outcome o (metrics; the state generation for non-Status). */
void dispatch_count(server_t *s, mpcd_req_type_t t, mpcd_outcome_t o);
/* Starts draining (SIGTERM, a Drain request): no new sessions; after drain-grace-s each
 * session's connection closes once nothing of it is in flight, with Error DRAINING; when
 * none is left, s->drained(s). Idempotent. */
void dispatch_drain(server_t *s, const char *why);

#endif
