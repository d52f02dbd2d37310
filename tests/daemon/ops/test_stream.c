/*
 * test_stream.c: daemon/ops/stream.c, the byte engine under both servers, over real
 * loopback TCP and Unix sockets. The client side is a plain blocking socket on the test's
 * own thread (connect completes from the listen backlog), and the loop is run in steps:
 * bytes read reach the owner, output goes out in order, the budget pauses reading and
 * resumes it below a quarter, a stream stopped for good stays stopped, EOF, the idle timer
 * (closing by default, or the owner's choice), close-when-flushed, and the close events
 * (closing once, synchronously; closed once, after both handles).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "stream.h"

typedef struct owner {
    stream_t s;
    uint8_t rbuf[256];
    uint8_t got[1 << 16]; /* every byte read */
    size_t ngot;
    int eofs, eof_status, idles, writtens, closings, closeds;
    bool echo;       /* write back what is read */
    bool touch_idle; /* the idle event keeps the stream open */
} owner_t;

static void on_data(void *o, const uint8_t *buf, size_t len)
{
    owner_t *w = o;
    assert_true(w->ngot + len <= sizeof w->got);
    memcpy(w->got + w->ngot, buf, len);
    w->ngot += len;
    if (w->echo)
        assert_int_equal(stream_write(&w->s, buf, len), 0);
}

static void on_eof(void *o, int status)
{
    owner_t *w = o;
    w->eofs++;
    w->eof_status = status;
}

static void on_idle(void *o)
{
    owner_t *w = o;
    w->idles++;
    if (w->touch_idle)
        stream_touch(&w->s);
    else
        stream_close(&w->s);
}

static void on_written(void *o)
{
    ((owner_t *)o)->writtens++;
}

static void on_closing(void *o)
{
    owner_t *w = o;
    w->closings++;
    assert_true(w->s.closing);
}

static void on_closed(void *o)
{
    owner_t *w = o;
    w->closeds++;
    assert_int_equal(w->s.handles, 0);
    assert_null(w->s.out[0].buf); /* the stream's memory is released before */
    assert_null(w->s.out[1].buf);
}

static const stream_events_t events = {on_data,    on_eof,     on_idle,
                                       on_written, on_closing, on_closed};
static const stream_events_t default_idle = {on_data,    on_eof,     NULL,
                                             on_written, on_closing, on_closed};

/* ---- a listener and a client ---- */

typedef struct fixture {
    uv_loop_t loop;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } l;
    bool is_pipe;
    int pending; /* connections waiting to be accepted */
    char path[108];
    int client;
} fixture_t;

static void on_connection(uv_stream_t *l, int status)
{
    assert_int_equal(status, 0);
    ((fixture_t *)l->data)->pending++;
}

static void run_until(fixture_t *f, const bool *cond)
{
    for (int i = 0; i < 2000 && !*cond; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT), usleep(1000);
    assert_true(*cond);
}

/* A listener (TCP on 127.0.0.1 or a Unix socket) and one connected client. */
static void fixture_open(fixture_t *f, bool is_pipe)
{
    memset(f, 0, sizeof *f);
    f->is_pipe = is_pipe;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    if (is_pipe) {
        snprintf(f->path, sizeof f->path, "/tmp/test_stream.%d.sock", (int)getpid());
        unlink(f->path);
        assert_int_equal(uv_pipe_init(&f->loop, &f->l.pipe, 0), 0);
        assert_int_equal(uv_pipe_bind(&f->l.pipe, f->path), 0);
    } else {
        struct sockaddr_in a;
        uv_ip4_addr("127.0.0.1", 0, &a);
        assert_int_equal(uv_tcp_init(&f->loop, &f->l.tcp), 0);
        assert_int_equal(uv_tcp_bind(&f->l.tcp, (struct sockaddr *)&a, 0), 0);
    }
    f->l.handle.data = f;
    assert_int_equal(uv_listen(&f->l.stream, 8, on_connection), 0);
    if (is_pipe) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->path);
        f->client = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(connect(f->client, (struct sockaddr *)&sa, sizeof sa), 0);
    } else {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        assert_int_equal(uv_tcp_getsockname(&f->l.tcp, (struct sockaddr *)&ss, &len), 0);
        f->client = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(f->client, (struct sockaddr *)&ss, (socklen_t)len), 0);
    }
    bool accepted = false;
    while (!accepted) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        accepted = f->pending > 0;
        if (!accepted)
            usleep(1000);
    }
}

/* Accepts the pending connection into w and starts it. */
static void owner_open(fixture_t *f, owner_t *w, const stream_events_t *ev, size_t budget,
                       uint64_t idle_ms)
{
    memset(w, 0, sizeof *w);
    stream_init(&w->s, &f->loop, f->is_pipe, ev, w, w->rbuf, sizeof w->rbuf, budget);
    assert_int_equal(stream_accept(&w->s, &f->l.stream), 0);
    f->pending--;
    assert_int_equal(stream_start(&w->s, idle_ms), 0);
    assert_true(w->s.reading);
}

static void fixture_close(fixture_t *f)
{
    if (f->client >= 0)
        close(f->client);
    uv_close(&f->l.handle, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    if (f->is_pipe)
        unlink(f->path);
}

static void close_and_wait(fixture_t *f, owner_t *w)
{
    stream_close(&w->s);
    stream_close(&w->s); /* idempotent */
    bool closed = false;
    while (!closed) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        closed = w->closeds > 0;
    }
    assert_int_equal(w->closings, 1);
    assert_int_equal(w->closeds, 1);
}

/* Reads exactly n bytes from the client socket (10 s at most). */
static void client_read(fixture_t *f, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = f->client, .events = POLLIN};
        if (poll(&p, 1, 0) == 0) {
            uv_run(&f->loop, UV_RUN_NOWAIT);
            usleep(500);
            continue;
        }
        ssize_t r = read(f->client, buf + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

/* True once the client sees EOF (after reading whatever comes first into sink). */
static bool client_eof(fixture_t *f)
{
    uint8_t sink[4096];
    for (int i = 0; i < 5000; i++) {
        struct pollfd p = {.fd = f->client, .events = POLLIN};
        if (poll(&p, 1, 0) == 0) {
            uv_run(&f->loop, UV_RUN_NOWAIT);
            usleep(500);
            continue;
        }
        ssize_t r = read(f->client, sink, sizeof sink);
        if (r == 0)
            return true;
        if (r < 0)
            return errno == ECONNRESET;
    }
    return false;
}

/* ---- tests ---- */

static void echo(bool is_pipe)
{
    fixture_t f;
    owner_t *w = calloc(1, sizeof *w);
    fixture_open(&f, is_pipe);
    owner_open(&f, w, &events, 1 << 20, 0);
    w->echo = true;
    /* More than one read buffer: it arrives in pieces, in order. */
    uint8_t msg[1000], back[1000];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 7);
    assert_int_equal(write(f.client, msg, sizeof msg), (ssize_t)sizeof msg);
    client_read(&f, back, sizeof back);
    assert_memory_equal(back, msg, sizeof msg);
    assert_int_equal(w->ngot, sizeof msg);
    assert_memory_equal(w->got, msg, sizeof msg);
    assert_true(w->writtens >= 1);
    assert_true(stream_flushed(&w->s));
    close_and_wait(&f, w);
    fixture_close(&f);
    free(w);
}

static void test_echo_tcp(void **state)
{
    (void)state;
    echo(false);
}

static void test_echo_pipe(void **state)
{
    (void)state;
    echo(true);
}

/* Over the budget reading stops; it resumes once the backlog is under a quarter. */
static void test_budget(void **state)
{
    (void)state;
    fixture_t f;
    owner_t *w = calloc(1, sizeof *w);
    fixture_open(&f, false);
    owner_open(&f, w, &events, 1000, 0);
    uint8_t big[900] = {0};
    assert_int_equal(stream_write(&w->s, big, sizeof big), 0); /* 900: still reading */
    assert_true(w->s.reading);
    assert_false(stream_over_budget(&w->s));
    assert_int_equal(stream_write(&w->s, big, 200), 0); /* 1100 > 1000: paused */
    assert_true(stream_over_budget(&w->s));
    assert_false(w->s.reading);
    assert_true(w->s.read_paused);
    assert_int_equal(stream_unsent(&w->s), 1100);
    /* The kernel takes it all; the backlog drains to 0 < 250 and reading resumes. */
    uint8_t back[1100];
    client_read(&f, back, sizeof back);
    run_until(&f, &w->s.reading);
    assert_false(w->s.read_paused);
    assert_true(stream_flushed(&w->s));
    /* Reading works again. */
    assert_int_equal(write(f.client, "hi", 2), 2);
    bool got = false;
    for (int i = 0; i < 2000 && !got; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        got = w->ngot == 2;
        usleep(500);
    }
    assert_true(got);
    close_and_wait(&f, w);
    fixture_close(&f);
    free(w);
}

/* A stream stopped for good is not restarted by the budget. */
static void test_stop_reading_stays(void **state)
{
    (void)state;
    fixture_t f;
    owner_t *w = calloc(1, sizeof *w);
    fixture_open(&f, false);
    owner_open(&f, w, &events, 100, 0);
    uint8_t big[500] = {0};
    assert_int_equal(stream_write(&w->s, big, sizeof big), 0);
    assert_true(w->s.read_paused);
    stream_stop_reading(&w->s);
    uint8_t back[500];
    client_read(&f, back, sizeof back);
    for (int i = 0; i < 50; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_true(stream_flushed(&w->s));
    assert_false(w->s.reading);
    assert_int_equal(write(f.client, "x", 1), 1);
    for (int i = 0; i < 50; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(200);
    assert_int_equal(w->ngot, 0);
    close_and_wait(&f, w);
    fixture_close(&f);
    free(w);
}

/* EOF reaches the owner once, with reading stopped; the stream stays open until closed. */
static void test_eof(void **state)
{
    (void)state;
    fixture_t f;
    owner_t *w = calloc(1, sizeof *w);
    fixture_open(&f, true);
    owner_open(&f, w, &events, 1 << 20, 0);
    assert_int_equal(write(f.client, "abc", 3), 3);
    shutdown(f.client, SHUT_WR);
    bool done = false;
    for (int i = 0; i < 5000 && !done; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        done = w->eofs > 0;
        usleep(200);
    }
    assert_int_equal(w->eofs, 1);
    assert_int_equal(w->eof_status, UV_EOF);
    assert_int_equal(w->ngot, 3);
    assert_false(w->s.reading);
    assert_true(w->s.read_done);
    assert_int_equal(w->closings, 0);
    /* A half-closed peer still gets its bytes. */
    assert_int_equal(stream_write(&w->s, "bye", 3), 0);
    uint8_t back[3];
    client_read(&f, back, 3);
    assert_memory_equal(back, "bye", 3);
    close_and_wait(&f, w);
    fixture_close(&f);
    free(w);
}

/* close_when_flushed: every queued byte goes out, then the stream closes. */
static void test_close_when_flushed(void **state)
{
    (void)state;
    fixture_t f;
    owner_t *w = calloc(1, sizeof *w);
    fixture_open(&f, false);
    owner_open(&f, w, &events, 1 << 20, 0);
    static uint8_t big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)i;
    assert_int_equal(stream_write(&w->s, big, sizeof big), 0);
    stream_close_when_flushed(&w->s);
    assert_int_equal(w->closings, 0); /* bytes are waiting */
    assert_false(w->s.reading);
    static uint8_t back[sizeof big];
    client_read(&f, back, sizeof back);
    assert_memory_equal(back, big, sizeof big);
    assert_true(client_eof(&f));
    run_until(&f, (bool *)&w->s.closing);
    while (!w->closeds)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(w->closings, 1);
    /* Writes after closing are dropped. */
    assert_int_equal(stream_write(&w->s, "x", 1), 0);
    assert_null(stream_reserve(&w->s, 1));
    fixture_close(&f);
    free(w);
}

/* With nothing queued, close_when_flushed closes at once. */
static void test_close_when_flushed_empty(void **state)
{
    (void)state;
    fixture_t f;
    owner_t *w = calloc(1, sizeof *w);
    fixture_open(&f, true);
    owner_open(&f, w, &events, 1 << 20, 0);
    stream_close_when_flushed(&w->s);
    assert_int_equal(w->closings, 1);
    assert_true(client_eof(&f));
    while (!w->closeds)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    fixture_close(&f);
    free(w);
}

/* Idle: by default the stream closes; an owner may keep it (and reads restart it). */
static void test_idle(void **state)
{
    (void)state;
    fixture_t f;
    owner_t *w = calloc(1, sizeof *w);
    fixture_open(&f, false);
    owner_open(&f, w, &default_idle, 1 << 20, 20);
    assert_true(client_eof(&f));
    while (!w->closeds)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(w->idles, 0); /* no idle event: closed by the stream */
    assert_int_equal(w->closings, 1);
    fixture_close(&f);

    fixture_open(&f, false);
    owner_open(&f, w, &events, 1 << 20, 20);
    w->touch_idle = true;
    for (int i = 0; i < 200; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(1000);
    assert_true(w->idles >= 2);
    assert_int_equal(w->closings, 0);
    w->touch_idle = false;
    while (!w->closeds)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(w->closings, 1);
    fixture_close(&f);
    free(w);
}

/* Closing with output still queued: the write is cancelled, memory released, closed once;
 * an unreferenced stream does not keep the loop alive. */
static void test_close_pending_and_unref(void **state)
{
    (void)state;
    fixture_t f;
    owner_t *w = calloc(1, sizeof *w);
    fixture_open(&f, false);
    owner_open(&f, w, &events, 1 << 10, 60000);
    static uint8_t big[8 << 20];
    assert_int_equal(stream_write(&w->s, big, sizeof big), 0); /* more than the kernel takes */
    assert_int_equal(stream_write(&w->s, big, 1000), 0);
    assert_true(w->s.writing);
    close_and_wait(&f, w);
    fixture_close(&f);

    fixture_open(&f, false);
    owner_open(&f, w, &events, 1 << 10, 60000);
    stream_unref(&w->s);
    uv_unref(&f.l.handle);
    assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0); /* returns: nothing referenced */
    assert_int_equal(w->closeds, 0);
    close_and_wait(&f, w);
    fixture_close(&f);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_tcp),
        cmocka_unit_test(test_echo_pipe),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_stop_reading_stays),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_close_when_flushed),
        cmocka_unit_test(test_close_when_flushed_empty),
        cmocka_unit_test(test_idle),
        cmocka_unit_test(test_close_pending_and_unref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
