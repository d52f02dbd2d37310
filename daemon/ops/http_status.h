/*
 * http_status.h: the HTTP/1.1 status server on the daemon's libuv loop (libhttp-parser).
 *
 *   GET /metrics  200 text/plain; version=0.0.4   (mpcd_status_prometheus)
 *   GET /status   200 application/json            (mpcd_status_json)
 *   GET /healthz  200 "ok"                        (the loop is alive)
 *   GET /readyz   200 "ready" / 503 "not ready"   (st.ready)
 * HEAD works on each; other methods 405, unknown paths 404, malformed or oversized requests
 * 400 / 431 (then the connection is closed). Keep-alive and pipelining follow HTTP/1.1;
 * idle connections are closed after a timeout and connections are capped.
 * Everything runs on the loop thread; the snapshot callback is called there too.
 */
#ifndef MPCD_OPS_HTTP_STATUS_H
#define MPCD_OPS_HTTP_STATUS_H

#include <stddef.h>
#include <uv.h>

#include "metrics.h"
#include "status.h"

/* Fills *out for one response; what it points to must stay valid until the next call. */
typedef void (*mpcd_status_snapshot_cb)(void *ctx, mpcd_status_t *out);

typedef struct mpcd_http mpcd_http_t;

/* listen: "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:0" (port 0 = ephemeral): an IP literal
 * or "localhost" (address.h, ADDRESS_STATUS). Returns 0 or a negative errno and a message
 * in err (bad address, bind failure...). */
int mpcd_http_start(uv_loop_t *loop, const char *listen, mpcd_metrics_t *m,
                    mpcd_status_snapshot_cb cb, void *ctx, mpcd_http_t **out, char *err,
                    size_t errlen);

/* The endpoint keeps answering but no longer keeps the loop alive (a draining daemon
 * ends when its last client is answered, not when the last status reader leaves).
 * Accepts NULL. */
void mpcd_http_unref(mpcd_http_t *h);

/* Loop thread; closes the listener and every connection asynchronously and frees h once
 * the last handle is closed (uv_run to completion afterwards). Accepts NULL. */
void mpcd_http_stop(mpcd_http_t *h);

/* The daemon's state generation (see MPCD_STATUS_MIN_AGE_S): cached bodies are rebuilt
 * when it moves. Without it, they are rebuilt once they are MPCD_STATUS_MAX_AGE_S old. */
void mpcd_http_watch_generation(mpcd_http_t *h, const uint64_t *generation);

/* The bound port (useful with port 0), and the address as "host:port" for logs. */
int mpcd_http_port(const mpcd_http_t *h);
const char *mpcd_http_address(const mpcd_http_t *h);

#endif
