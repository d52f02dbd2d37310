/*
 * test_http.c: daemon/ops/http_status.c over real sockets. The test thread runs the libuv
 * loop with the status server on ephemeral loopback ports (IPv4 and, when the host has it,
 * IPv6); a client thread speaks raw HTTP/1.x to it: every route, HEAD, 404, 405, keep-alive,
 * pipelining, Connection: close, HTTP/1.0, malformed and oversized requests, the
 * connection cap, a connection the server has no memory for. It then asks the loop (uv_async)
 * to stop the server; the loop must end with every handle closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_status.h"

/* --wrap=calloc: fail the next connection's allocation (the only calloc that large) */
static atomic_bool fail_big_calloc;
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size)
{
    if (n * size >= 4096 && atomic_exchange(&fail_big_calloc, false))
        return NULL;
    return __real_calloc(n, size);
}

typedef struct ctx {
    atomic_bool ready;
    atomic_int snapshots;
    mpcd_session_info_t session;
} ctx_t;

static void snapshot(void *arg, mpcd_status_t *out)
{
    ctx_t *c = arg;
    atomic_fetch_add(&c->snapshots, 1);
    out->version = "test";
    out->ready = atomic_load(&c->ready);
    out->uptime_s = 1;
    out->sessions_count = 1;
    out->sessions = &c->session;
}

/* ---- client side (runs on its own thread; records the first failure) ---- */

typedef struct client {
    int port4, port6; /* port6 0: no IPv6 */
    char failure[512];
    uv_async_t *done;
} client_t;

static void fail_at(client_t *cl, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(client_t *cl, int line, const char *fmt, ...)
{
    if (cl->failure[0] != '\0')
        return;
    int n = snprintf(cl->failure, sizeof cl->failure, "line %d: ", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cl->failure + n, sizeof cl->failure - (size_t)n, fmt, ap);
    va_end(ap);
}

#define CHECK(cl, cond, ...)                                                                   \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fail_at((cl), __LINE__, __VA_ARGS__);                                              \
            return;                                                                            \
        }                                                                                      \
    } while (0)

typedef struct conn {
    int fd;
    char buf[1 << 18];
    size_t len;
} conn_t;

typedef struct response {
    int status;
    char headers[2048];
    char *body; /* malloc'd */
    size_t body_len;
} response_t;

static int dial(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static conn_t *conn_open(int family, int port)
{
    conn_t *c = malloc(sizeof *c); /* not calloc: that one is the server's (see the wrap) */
    c->len = 0;
    c->fd = dial(family, port);
    return c;
}

static void conn_free(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static bool send_str(conn_t *c, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

static bool fill(conn_t *c)
{
    if (c->len >= sizeof c->buf)
        return false;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n <= 0)
        return false;
    c->len += (size_t)n;
    return true;
}

/* Reads one response (Content-Length framed); false on EOF or a malformed response.
 * head: the request was HEAD (no body follows whatever Content-Length says). */
static bool read_response(conn_t *c, response_t *r, bool head)
{
    memset(r, 0, sizeof *r);
    char *end;
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
        if (!fill(c))
            return false;
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (hlen >= sizeof r->headers)
        return false;
    memcpy(r->headers, c->buf, hlen);
    if (sscanf(r->headers, "HTTP/1.1 %d ", &r->status) != 1)
        return false;
    const char *cl = strcasestr(r->headers, "\r\nContent-Length: ");
    if (cl == NULL)
        return false;
    size_t blen = head ? 0 : strtoul(cl + 18, NULL, 10);
    while (c->len < hlen + blen)
        if (!fill(c))
            return false;
    r->body = malloc(blen + 1);
    memcpy(r->body, c->buf + hlen, blen);
    r->body[blen] = '\0';
    r->body_len = blen;
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    return true;
}

static bool at_eof(conn_t *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* One request/response on c; returns the response (free r->body). */
static bool get(conn_t *c, const char *method, const char *path, response_t *r)
{
    char req[512];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n",
             method, path);
    return send_str(c, req) && read_response(c, r, strcmp(method, "HEAD") == 0);
}

static void check_routes(client_t *cl, ctx_t *ctx)
{
    conn_t *c = conn_open(AF_INET, cl->port4);
    CHECK(cl, c->fd >= 0, "connect");
    response_t r;

    CHECK(cl, get(c, "GET", "/healthz", &r), "healthz");
    CHECK(cl, r.status == 200 && strcmp(r.body, "ok\n") == 0, "healthz: %d %s", r.status,
          r.body);
    CHECK(cl, strstr(r.headers, "Connection: keep-alive") != NULL, "keep-alive: %s", r.headers);
    free(r.body);

    CHECK(cl, get(c, "GET", "/readyz", &r), "readyz");
    CHECK(cl, r.status == 503, "readyz before ready: %d", r.status);
    free(r.body);
    atomic_store(&ctx->ready, true);
    CHECK(cl, get(c, "GET", "/readyz?verbose=1", &r), "readyz");
    CHECK(cl, r.status == 200, "readyz after ready: %d", r.status);
    free(r.body);

    CHECK(cl, get(c, "GET", "/metrics", &r), "metrics");
    CHECK(cl, r.status == 200, "metrics: %d", r.status);
    CHECK(cl, strstr(r.headers, "Content-Type: text/plain; version=0.0.4") != NULL, "ctype: %s",
          r.headers);
    CHECK(cl, strstr(r.body, "\nmpcd_ready 1\n") != NULL, "metrics body");
    CHECK(cl, strstr(r.body, "# TYPE mpcd_requests_total counter\n") != NULL, "metrics body");
    free(r.body);

    CHECK(cl, get(c, "GET", "/status", &r), "status");
    CHECK(cl, r.status == 200, "status: %d", r.status);
    CHECK(cl, strstr(r.headers, "Content-Type: application/json") != NULL, "ctype: %s",
          r.headers);
    cJSON *doc = cJSON_Parse(r.body);
    bool ok = doc != NULL && cJSON_IsTrue(cJSON_GetObjectItem(doc, "ready")) &&
              cJSON_GetArraySize(cJSON_GetObjectItem(doc, "session")) == 1;
    cJSON_Delete(doc);
    free(r.body);
    CHECK(cl, ok, "status JSON");

    /* HEAD: headers with the GET's Content-Length, no body (the next response parses) */
    CHECK(cl, get(c, "HEAD", "/status", &r), "head");
    CHECK(cl, r.status == 200 && strstr(r.headers, "Content-Length: 0") == NULL, "head: %s",
          r.headers);
    free(r.body);

    CHECK(cl, get(c, "GET", "/nope", &r), "404");
    CHECK(cl, r.status == 404, "unknown path: %d", r.status);
    free(r.body);
    CHECK(cl, send_str(c, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"),
          "post");
    CHECK(cl, read_response(c, &r, false), "405");
    CHECK(cl, r.status == 405 && strstr(r.headers, "Allow: GET, HEAD") != NULL, "405: %s",
          r.headers);
    free(r.body);
    CHECK(cl, get(c, "DELETE", "/status", &r) && r.status == 405, "delete");
    free(r.body);

    /* still the same connection after all that */
    CHECK(cl, get(c, "GET", "/healthz", &r) && r.status == 200, "healthz again");
    free(r.body);
    conn_free(c);
}

static void check_pipelining_and_close(client_t *cl)
{
    response_t r;
    conn_t *c = conn_open(AF_INET, cl->port4);
    CHECK(cl, c->fd >= 0, "connect");
    CHECK(cl,
          send_str(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
          "send");
    const int want[] = {200, 404, 200};
    for (int i = 0; i < 3; i++) {
        CHECK(cl, read_response(c, &r, false), "pipelined response %d", i);
        CHECK(cl, r.status == want[i], "pipelined %d: %d", i, r.status);
        if (i == 2)
            CHECK(cl, strstr(r.headers, "Connection: close") != NULL, "close: %s", r.headers);
        free(r.body);
    }
    CHECK(cl, c->len == 0 && at_eof(c), "nothing after Connection: close");
    conn_free(c);

    /* HTTP/1.0 without keep-alive: one response, then EOF */
    c = conn_open(AF_INET, cl->port4);
    CHECK(cl, send_str(c, "GET /healthz HTTP/1.0\r\n\r\n"), "send");
    CHECK(cl, read_response(c, &r, false) && r.status == 200, "http/1.0");
    free(r.body);
    CHECK(cl, at_eof(c), "http/1.0 closes");
    conn_free(c);
}

static void check_bad_requests(client_t *cl)
{
    response_t r;
    static const struct {
        const char *what;
        int status;
    } cases[] = {
        {"garbage", 400}, {"header", 431}, {"url", 414}, {"body", 413}, {"version", 400},
    };
    static char big[16384];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        conn_t *c = conn_open(AF_INET, cl->port4);
        CHECK(cl, c->fd >= 0, "connect");
        const char *w = cases[i].what;
        if (strcmp(w, "garbage") == 0) {
            snprintf(big, sizeof big, "\x01\x02 NOT HTTP\r\n\r\n");
        } else if (strcmp(w, "header") == 0) {
            int n = snprintf(big, sizeof big, "GET /status HTTP/1.1\r\nX-Big: ");
            memset(big + n, 'a', 10000);
            strcpy(big + n + 10000, "\r\n\r\n");
        } else if (strcmp(w, "url") == 0) {
            int n = snprintf(big, sizeof big, "GET /");
            memset(big + n, 'u', 2000);
            strcpy(big + n + 2000, " HTTP/1.1\r\n\r\n");
        } else if (strcmp(w, "body") == 0) {
            int n = snprintf(big, sizeof big,
                             "GET /status HTTP/1.1\r\nContent-Length: 9000\r\n\r\n");
            memset(big + n, 'b', 9000);
            big[n + 9000] = '\0';
        } else {
            snprintf(big, sizeof big, "GET /healthz HTTP/7.x\r\n\r\n");
        }
        send_str(c, big); /* the server may close before reading it all */
        CHECK(cl, read_response(c, &r, false), "%s: no response", w);
        CHECK(cl, r.status == cases[i].status, "%s: status %d, want %d", w, r.status,
              cases[i].status);
        CHECK(cl, strstr(r.headers, "Connection: close") != NULL, "%s: %s", w, r.headers);
        free(r.body);
        CHECK(cl, at_eof(c), "%s: connection closed after the error", w);
        conn_free(c);
    }
}

static void check_connection_cap(client_t *cl)
{
    enum { N = 70 }; /* the server keeps at most 64 */
    conn_t *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = conn_open(AF_INET, cl->port4);
        CHECK(cl, c[i]->fd >= 0, "connect %d", i);
    }
    response_t r;
    /* the first ones are served; the last ones were closed at accept */
    CHECK(cl, get(c[0], "GET", "/healthz", &r) && r.status == 200, "first connection");
    free(r.body);
    int refused = 0;
    for (int i = 64; i < N; i++) {
        send_str(c[i], "GET /healthz HTTP/1.1\r\n\r\n");
        refused += !read_response(c[i], &r, false);
        if (r.body != NULL)
            free(r.body);
    }
    CHECK(cl, refused == N - 64, "%d of %d connections over the cap refused", refused, N - 64);
    for (int i = 0; i < N; i++)
        conn_free(c[i]);
}

/* Out of memory for a connection: it is dropped, and the listener keeps accepting. */
static void check_oom_connection(client_t *cl)
{
    atomic_store(&fail_big_calloc, true);
    conn_t *c = conn_open(AF_INET, cl->port4);
    CHECK(cl, c->fd >= 0, "connect");
    send_str(c, "GET /healthz HTTP/1.1\r\n\r\n");
    CHECK(cl, at_eof(c), "connection without memory is closed");
    conn_free(c);
    CHECK(cl, !atomic_load(&fail_big_calloc), "the connection was allocated with calloc");
    response_t r;
    c = conn_open(AF_INET, cl->port4);
    CHECK(cl, get(c, "GET", "/healthz", &r) && r.status == 200, "served after the failure");
    free(r.body);
    conn_free(c);
}

static void check_ipv6(client_t *cl)
{
    if (cl->port6 == 0)
        return;
    conn_t *c = conn_open(AF_INET6, cl->port6);
    CHECK(cl, c->fd >= 0, "connect [::1]");
    response_t r;
    CHECK(cl, get(c, "GET", "/metrics", &r) && r.status == 200, "ipv6 metrics");
    free(r.body);
    conn_free(c);
}

static ctx_t the_ctx;

static void *client_main(void *arg)
{
    client_t *cl = arg;
    check_routes(cl, &the_ctx);
    if (cl->failure[0] == '\0')
        check_pipelining_and_close(cl);
    if (cl->failure[0] == '\0')
        check_bad_requests(cl);
    if (cl->failure[0] == '\0')
        check_connection_cap(cl);
    if (cl->failure[0] == '\0')
        check_oom_connection(cl);
    if (cl->failure[0] == '\0')
        check_ipv6(cl);
    uv_async_send(cl->done);
    return NULL;
}

/* ---- loop side ---- */

static mpcd_http_t *srv4, *srv6;

static void on_done(uv_async_t *a)
{
    mpcd_http_stop(srv4);
    mpcd_http_stop(srv6);
    uv_close((uv_handle_t *)a, NULL);
}

static void test_server(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    mpcd_metrics_t *m;
    assert_int_equal(mpcd_metrics_create(&m), 0);
    mpcd_metrics_request(m, MPCD_REQ_STEP, MPCD_OUTCOME_OK);
    the_ctx.session = (mpcd_session_info_t){.id = 1, .name = "client", .peer = "unix"};
    char err[256];
    assert_int_equal(
        mpcd_http_start(&loop, "127.0.0.1:0", m, snapshot, &the_ctx, &srv4, err, sizeof err),
        0);
    client_t cl = {.port4 = mpcd_http_port(srv4)};
    assert_true(cl.port4 > 0);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", cl.port4);
    assert_string_equal(mpcd_http_address(srv4), want);

    /* the port is taken now: a second server must fail with a message */
    mpcd_http_t *dup = NULL;
    assert_int_equal(mpcd_http_start(&loop, want, m, snapshot, &the_ctx, &dup, err, sizeof err),
                     UV_EADDRINUSE);
    assert_null(dup);
    assert_non_null(strstr(err, want));

    if (mpcd_http_start(&loop, "[::1]:0", m, snapshot, &the_ctx, &srv6, err, sizeof err) == 0)
        cl.port6 = mpcd_http_port(srv6);
    else
        print_message("no IPv6 loopback here (%s); IPv6 part skipped\n", err);

    uv_async_t done;
    assert_int_equal(uv_async_init(&loop, &done, on_done), 0);
    cl.done = &done;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, &cl), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* returns once every handle closed */
    pthread_join(t, NULL);
    if (cl.failure[0] != '\0')
        fail_msg("%s", cl.failure);
    assert_true(atomic_load(&the_ctx.snapshots) >= 5);
    assert_int_equal(uv_loop_close(&loop), 0);
    mpcd_metrics_destroy(m);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    /* The grammar is common/address.c's (tests/common/test_address.c); here: the status
     * endpoint takes only HOST:PORT with an IP literal and refuses anything else before
     * it binds, with h reset to NULL. */
    static const char *const bad[] = {
        "",          "nonsense",        "127.0.0.1",    "127.0.0.1:",     ":80",
        "[::1]9464", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:80x",  "[::1:9464",
        "[zz]:80",   "999.1.1.1:80",    "localhost",    "robot.local:80", "tcp://127.0.0.1:80",
    };
    char err[256];
    uv_loop_t loop;
    uv_loop_init(&loop);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mpcd_http_t *h = (mpcd_http_t *)&loop; /* must be reset to NULL on failure */
        err[0] = '\0';
        if (mpcd_http_start(&loop, bad[i], NULL, NULL, NULL, &h, err, sizeof err) != -EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_null(h);
        assert_non_null(strstr(err, "bad address"));
    }
    mpcd_http_stop(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
