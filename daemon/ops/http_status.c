/*
 * http_status.c: a small HTTP/1.1 server for /metrics, /status, /healthz and /readyz on the
 * daemon's libuv loop, parsing with libhttp-parser (see http_status.h).
 *
 * Each connection is a parser on top of a stream (stream.h: the TCP handle, the idle
 * timer, a fixed read buffer, queued output and the close lifecycle). A request is
 * answered as soon as the parser completes it, so pipelined requests are answered in
 * order; reading pauses while too many response bytes wait for the peer (the stream's
 * budget). Limits (URL, header and body bytes, connections, idle time) keep a misbehaving
 * client from holding memory or the loop. A connection is freed once its stream has
 * closed (libuv's rule), and the server itself once its last handle has closed.
 */
#include "http_status.h"

#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "errbuf.h"
#include "stream.h"

#define HTTP_MAX_CONNS         64
#define HTTP_MAX_URL           1024
#define HTTP_MAX_HEADER_BYTES  8192
#define HTTP_MAX_BODY          4096
#define HTTP_IDLE_MS           30000
#define HTTP_MAX_PENDING_WRITE (1u << 20) /* the stream's budget: reading stops above it */
#define HTTP_READ_BUF          4096

typedef struct conn conn_t;

struct mpcd_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    mpcd_metrics_t *metrics;
    mpcd_status_snapshot_cb snapshot;
    void *ctx;
    conn_t *conns; /* doubly linked */
    int nconns;
    int open_handles; /* listener + 1 per connection's stream; h is freed at 0 */
    bool stopping;
    bool unreferenced; /* mpcd_http_unref: its handles do not keep the loop alive */
    int port;
    char address[80];
    /* Accepts and drops a connection when no conn_t can be allocated: libuv stops polling
     * the listener until the pending connection is accepted. */
    uv_tcp_t reject;
    bool reject_busy;
    /* /status and /metrics bodies, rebuilt at most every MPCD_STATUS_MAX_AGE_S */
    const uint64_t *generation; /* the daemon's state generation; NULL: none */
    struct {
        char *body;
        uint64_t built_ms;  /* uv_now when built */
        uint64_t built_gen; /* *generation then */
    } cache[2];
};

typedef enum { LIMIT_NONE, LIMIT_URL, LIMIT_HEADERS, LIMIT_BODY } limit_t;

struct conn {
    stream_t s;
    http_parser parser;
    mpcd_http_t *srv;
    conn_t *prev, *next;
    bool closing, close_after_write;
    limit_t limit_hit;
    size_t url_len, header_bytes, body_bytes;
    char url[HTTP_MAX_URL + 1];
    uint8_t readbuf[HTTP_READ_BUF];
};

/* ---- lifetime ---- */

static void server_handle_closed(mpcd_http_t *h)
{
    if (--h->open_handles == 0 && h->stopping) {
        free(h->cache[0].body);
        free(h->cache[1].body);
        free(h);
    }
}

static void conn_closed(void *owner)
{
    conn_t *c = owner;
    mpcd_http_t *h = c->srv;
    free(c);
    server_handle_closed(h);
}

/* Whichever path closed the stream (conn_close, a write error, the idle timer, a flushed
 * "Connection: close"): it no longer counts as a connection. */
static void conn_closing(void *owner)
{
    conn_t *c = owner;
    mpcd_http_t *h = c->srv;
    c->closing = true;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    h->nconns--;
}

static void conn_close(conn_t *c)
{
    stream_close(&c->s); /* conn_closing unlinks it */
}

/* ---- responses ---- */

static const char *reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* Queues one response; body may be NULL (empty). HEAD sends the headers only. */
static void respond(conn_t *c, int code, const char *ctype, const char *body, bool head,
                    const char *extra_headers)
{
    size_t blen = body != NULL ? strlen(body) : 0;
    char hdr[512];
    int n =
        snprintf(hdr, sizeof hdr,
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: %s\r\n"
                 "Content-Length: %zu\r\n"
                 "Cache-Control: no-store\r\n"
                 "Connection: %s\r\n"
                 "%s\r\n",
                 code, reason(code), ctype, blen, c->close_after_write ? "close" : "keep-alive",
                 extra_headers != NULL ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof hdr) {
        conn_close(c);
        return;
    }
    size_t len = (size_t)n + (head ? 0 : blen);
    uint8_t *p = stream_reserve(&c->s, len);
    if (p == NULL)
        return; /* closing, or out of memory (then closed) */
    memcpy(p, hdr, (size_t)n);
    if (!head && blen > 0)
        memcpy(p + n, body, blen);
    stream_commit(&c->s, len);
}

static void respond_text(conn_t *c, int code, const char *text, bool head)
{
    respond(c, code, "text/plain; charset=utf-8", text, head, NULL);
}

/* ---- routing ---- */

/* The /status (json) or /metrics body, from the cache while it is fresh. */
static void snapshot(mpcd_http_t *h, mpcd_status_t *st)
{
    memset(st, 0, sizeof *st);
    if (h->snapshot != NULL)
        h->snapshot(h->ctx, st);
}

static const char *cached_body(mpcd_http_t *h, bool json)
{
    uint64_t now = uv_now(h->loop), gen = h->generation ? *h->generation : 0;
    if (h->cache[json].body &&
        !mpcd_status_stale(now, h->cache[json].built_ms, h->cache[json].built_gen, gen))
        return h->cache[json].body;
    mpcd_status_t st;
    snapshot(h, &st);
    char *body =
        json ? mpcd_status_json(&st, h->metrics) : mpcd_status_prometheus(&st, h->metrics);
    if (body == NULL)
        return NULL;
    if (json) {
        /* a trailing newline keeps `curl .../status` readable in a terminal */
        size_t n = strlen(body);
        char *nl = realloc(body, n + 2);
        if (nl != NULL) {
            body = nl;
            memcpy(body + n, "\n", 2);
        }
    }
    free(h->cache[json].body);
    h->cache[json].body = body;
    h->cache[json].built_ms = now;
    h->cache[json].built_gen = gen;
    return body;
}

static void route(conn_t *c)
{
    mpcd_http_t *h = c->srv;
    unsigned method = c->parser.method;
    bool head = method == HTTP_HEAD;
    c->url[c->url_len] = '\0';
    char *q = strchr(c->url, '?'); /* queries are accepted and ignored */
    if (q != NULL)
        *q = '\0';
    const char *path = c->url;

    static const char *const known[] = {"/metrics", "/status", "/healthz", "/readyz"};
    bool found = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        found = found || strcmp(path, known[i]) == 0;
    if (!found) {
        respond_text(c, 404, "not found: try /metrics, /status, /healthz, /readyz\n", head);
        return;
    }
    if (method != HTTP_GET && !head) {
        respond(c, 405, "text/plain; charset=utf-8", "method not allowed\n", false,
                "Allow: GET, HEAD\r\n");
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        respond_text(c, 200, "ok\n", head);
        return;
    }

    if (strcmp(path, "/readyz") == 0) {
        mpcd_status_t st;
        snapshot(h, &st);
        if (st.draining)
            respond_text(c, 503,
                         "draining: no new sessions; the open ones are being handed over\n",
                         head);
        else if (!st.ready)
            respond_text(c, 503, "not ready: no model is serving\n", head);
        else if (st.admission.full)
            respond_text(c, 503,
                         "full: a new session would be refused (admission control: "
                         "max-load reached at min-iterations)\n",
                         head);
        else
            respond_text(c, 200, "ready\n", head);
        return;
    }
    bool json = strcmp(path, "/status") == 0;
    const char *body = cached_body(h, json);
    if (body == NULL) {
        respond_text(c, 500, "out of memory\n", head);
        return;
    }
    respond(c, 200, json ? "application/json" : "text/plain; version=0.0.4; charset=utf-8",
            body, head, NULL);
}

/* ---- parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
    conn_t *c = p->data;
    c->url_len = 0;
    c->header_bytes = 0;
    c->body_bytes = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (c->url_len + len > HTTP_MAX_URL) {
        c->limit_hit = LIMIT_URL;
        return -1;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

/* Adds len to one of the request's byte counters; -1 (the parser stops) past its limit. */
static int count_bytes(conn_t *c, size_t *counter, size_t len, size_t limit, limit_t what)
{
    *counter += len;
    if (*counter > limit) {
        c->limit_hit = what;
        return -1;
    }
    return 0;
}

static int on_header_data(http_parser *p, const char *at, size_t len)
{
    (void)at;
    conn_t *c = p->data;
    return count_bytes(c, &c->header_bytes, len, HTTP_MAX_HEADER_BYTES, LIMIT_HEADERS);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    (void)at;
    conn_t *c = p->data;
    return count_bytes(c, &c->body_bytes, len, HTTP_MAX_BODY, LIMIT_BODY);
}

static int on_message_complete(http_parser *p)
{
    conn_t *c = p->data;
    if (!http_should_keep_alive(p) || c->srv->stopping)
        c->close_after_write = true;
    route(c);
    if (c->close_after_write)
        http_parser_pause(p, 1); /* nothing after this request is read */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_data,
    .on_header_value = on_header_data,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- reading ---- */

static void fail_request(conn_t *c)
{
    static const int code[] = {
        [LIMIT_NONE] = 400, [LIMIT_URL] = 414, [LIMIT_HEADERS] = 431, [LIMIT_BODY] = 413};
    char msg[160];
    if (c->limit_hit == LIMIT_NONE)
        snprintf(msg, sizeof msg, "malformed request: %s\n",
                 http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
    else
        snprintf(msg, sizeof msg, "request too large\n");
    c->close_after_write = true;
    respond_text(c, code[c->limit_hit], msg, false);
}

static void on_data(void *owner, const uint8_t *buf, size_t len)
{
    conn_t *c = owner;
    if (c->close_after_write)
        return;
    size_t done = http_parser_execute(&c->parser, &parser_settings, (const char *)buf, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (c->closing)
        return;
    if (err == HPE_PAUSED || c->close_after_write) {
        /* answered a "Connection: close" request: the rest is ignored */
        stream_close_when_flushed(&c->s);
        return;
    }
    if (err != HPE_OK || c->parser.upgrade || done != len) {
        stream_stop_reading(&c->s);
        fail_request(c);
        stream_close_when_flushed(&c->s);
    }
    /* Too many responses unsent: the stream stopped reading and resumes as they drain. */
}

static void on_eof(void *owner, int status)
{
    (void)status;
    /* EOF or error. Responses already queued still go out if the peer only half-closed;
     * then the stream closes. */
    stream_close_when_flushed(&((conn_t *)owner)->s);
}

static const stream_events_t conn_events = {
    .data = on_data,
    .eof = on_eof,
    .idle = NULL, /* closes */
    .closing = conn_closing,
    .closed = conn_closed,
};

static void reject_closed(uv_handle_t *handle)
{
    mpcd_http_t *h = handle->data;
    h->reject_busy = false;
    server_handle_closed(h);
}

static void reject(mpcd_http_t *h, uv_stream_t *server)
{
    if (h->reject_busy || uv_tcp_init(h->loop, &h->reject) < 0)
        return; /* still pending: retried with the next connection */
    h->reject.data = h;
    h->reject_busy = true;
    h->open_handles++;
    uv_accept(server, (uv_stream_t *)&h->reject);
    uv_close((uv_handle_t *)&h->reject, reject_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    mpcd_http_t *h = server->data;
    if (status < 0 || h->stopping)
        return;
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        reject(h, server);
        return;
    }
    c->srv = h;
    stream_init(&c->s, h->loop, false, &conn_events, c, c->readbuf, sizeof c->readbuf,
                HTTP_MAX_PENDING_WRITE);
    if (h->unreferenced)
        stream_unref(&c->s);
    h->open_handles++;
    c->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    if (stream_accept(&c->s, server) < 0 || h->nconns > HTTP_MAX_CONNS) {
        conn_close(c); /* over the cap: closed at once, the client sees a reset/EOF */
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (stream_start(&c->s, HTTP_IDLE_MS) < 0)
        conn_close(c);
}

/* ---- start / stop ---- */

static void listener_closed(uv_handle_t *handle)
{
    server_handle_closed(handle->data);
}

int mpcd_http_start(uv_loop_t *loop, const char *listen, mpcd_metrics_t *m,
                    mpcd_status_snapshot_cb cb, void *ctx, mpcd_http_t **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    address_t a;
    int rc = address_parse(listen, ADDRESS_STATUS, &a, err, errlen);
    if (rc < 0)
        return rc;
    mpcd_http_t *h = calloc(1, sizeof *h);
    if (h == NULL) {
        errbuf_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h->loop = loop;
    h->metrics = m;
    h->snapshot = cb;
    h->ctx = ctx;
    rc = uv_tcp_init(loop, &h->listener);
    if (rc < 0) {
        errbuf_set(err, errlen, "status listener: %s", uv_strerror(rc));
        free(h);
        return rc;
    }
    h->listener.data = h;
    h->open_handles = 1;
    /* IPV6ONLY: "[::]:P" and "0.0.0.0:P" can then be listened on side by side */
    rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&a.sa,
                     a.sa.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
    if (rc < 0) {
        errbuf_set(err, errlen, "status listener on %s: %s", listen, uv_strerror(rc));
        goto fail;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &blen);
    if (rc < 0) {
        errbuf_set(err, errlen, "status listener on %s: %s", listen, uv_strerror(rc));
        goto fail;
    }
    address_format_sockaddr(&bound, h->address, sizeof h->address);
    h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    *out = h;
    return 0;
fail:
    h->stopping = true;
    uv_close((uv_handle_t *)&h->listener, listener_closed); /* frees h */
    return rc;
}

void mpcd_http_stop(mpcd_http_t *h)
{
    if (h == NULL || h->stopping)
        return;
    h->stopping = true;
    while (h->conns != NULL)
        conn_close(h->conns);
    uv_close((uv_handle_t *)&h->listener, listener_closed);
}

void mpcd_http_unref(mpcd_http_t *h)
{
    if (h == NULL || h->unreferenced)
        return;
    h->unreferenced = true;
    uv_unref((uv_handle_t *)&h->listener);
    for (conn_t *c = h->conns; c != NULL; c = c->next)
        stream_unref(&c->s);
}

void mpcd_http_watch_generation(mpcd_http_t *h, const uint64_t *generation)
{
    h->generation = generation;
}

int mpcd_http_port(const mpcd_http_t *h)
{
    return h->port;
}

const char *mpcd_http_address(const mpcd_http_t *h)
{
    return h->address;
}
