/*
 * test_guard.c: daemon/guard.c: constant-time token comparison (results only; timing is
 * not measured), the per-peer table (one record per key, connection counts, records
 * forgotten when nothing is left to remember, penalties kept across reconnects), the
 * failed-Hello backoff (doubling from GUARD_BACKOFF_BASE_S, capped, cleared by a success
 * or by GUARD_FAILURE_MEMORY_S without failures) and the cap on the table's size.
 * Times are passed in explicitly, so nothing sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "guard.h"

#define EPS 1e-9

static void assert_near(double got, double want)
{
    if (got < want - EPS || got > want + EPS)
        fail_msg("got %.12g, want %.12g", got, want);
}

static guard_t *new_guard(void)
{
    guard_t *g = NULL;
    assert_int_equal(guard_create(&g), 0);
    assert_non_null(g);
    assert_int_equal(guard_peer_count(g), 0);
    return g;
}

/* --- guard_token_eq --- */

static void test_token_eq(void **state)
{
    (void)state;
    assert_true(guard_token_eq("s3cret-token", "s3cret-token"));
    assert_true(guard_token_eq("", ""));

    /* same length, different content: first, middle and last byte */
    assert_false(guard_token_eq("x3cret-token", "s3cret-token"));
    assert_false(guard_token_eq("s3cretXtoken", "s3cret-token"));
    assert_false(guard_token_eq("s3cret-tokeN", "s3cret-token"));

    /* prefixes and extensions either way */
    assert_false(guard_token_eq("s3cret", "s3cret-token"));
    assert_false(guard_token_eq("s3cret-token-and-more", "s3cret-token"));
    assert_false(guard_token_eq("s3cret-token\n", "s3cret-token"));
    assert_false(guard_token_eq("", "s3cret-token"));
    assert_false(guard_token_eq("s3cret-token", ""));

    /* NULL given counts as "" */
    assert_true(guard_token_eq(NULL, ""));
    assert_false(guard_token_eq(NULL, "s3cret-token"));
}

/* The whole secret is read: a long secret that differs from the input only in its last
 * byte (or only past a NUL the input stops at) is not equal. */
static void test_token_eq_reads_whole_secret(void **state)
{
    (void)state;
    char secret[1024], given[1024];
    memset(secret, 'a', sizeof secret - 1);
    secret[sizeof secret - 1] = 0;
    memcpy(given, secret, sizeof given);
    assert_true(guard_token_eq(given, secret));
    given[sizeof given - 2] = 'b';
    assert_false(guard_token_eq(given, secret));
    given[sizeof given - 2] = 'a';
    given[sizeof given - 2] = 0; /* one byte shorter */
    assert_false(guard_token_eq(given, secret));
    /* high bytes compare as bytes, not as signed chars that might cancel out */
    assert_false(guard_token_eq("\xff", "\x7f"));
    assert_true(guard_token_eq("\xc3\xa9", "\xc3\xa9"));
}

/* --- peers --- */

static void test_peer_same_key_same_record(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    guard_peer_t *a = guard_peer(g, "127.0.0.1", 0);
    guard_peer_t *b = guard_peer(g, "::1", 0);
    guard_peer_t *c = guard_peer(g, "uid:1000", 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_not_equal(b, c);
    assert_ptr_equal(guard_peer(g, "127.0.0.1", 1), a);
    assert_ptr_equal(guard_peer(g, "::1", 1), b);
    assert_ptr_equal(guard_peer(g, "uid:1000", 1), c);
    /* keys that are prefixes of each other are different peers */
    guard_peer_t *d = guard_peer(g, "127.0.0.10", 1);
    assert_ptr_not_equal(d, a);
    assert_ptr_not_equal(guard_peer(g, "uid:100", 1), c);
    assert_int_equal(guard_peer_count(g), 5);
    guard_destroy(g);
    guard_destroy(NULL); /* accepted */
}

static void test_hold_release_forgets_idle(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    guard_peer_t *keep = guard_peer(g, "10.0.0.1", 0);
    guard_hold(keep);
    guard_peer_t *p = guard_peer(g, "10.0.0.2", 0);
    assert_int_equal(guard_connections(p), 0);
    guard_hold(p);
    guard_hold(p);
    guard_hold(p);
    assert_int_equal(guard_connections(p), 3);
    assert_ptr_equal(guard_peer(g, "10.0.0.2", 1), p);
    guard_release(g, p, 2);
    assert_int_equal(guard_connections(p), 2);
    guard_release(g, p, 3);
    assert_int_equal(guard_connections(p), 1);
    assert_int_equal(guard_peer_count(g), 2);
    /* last connection, no failures: the record goes (p is not used after this) */
    guard_release(g, p, 4);
    assert_int_equal(guard_peer_count(g), 1);
    assert_int_equal(guard_connections(keep), 1);
    assert_ptr_equal(guard_peer(g, "10.0.0.1", 5), keep);

    /* a new record for the same key starts from nothing */
    p = guard_peer(g, "10.0.0.2", 6);
    assert_non_null(p);
    assert_int_equal(guard_connections(p), 0);
    assert_near(guard_auth_wait_s(p, 6), 0);
    assert_int_equal(guard_peer_count(g), 2);
    guard_destroy(g);
}

/* A peer that failed a Hello and disconnects keeps its record and its penalty: opening a
 * new connection does not reset the backoff. */
static void test_penalty_survives_reconnect(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    guard_peer_t *p = guard_peer(g, "192.0.2.7", 100);
    guard_hold(p);
    assert_near(guard_auth_failed(p, 100), GUARD_BACKOFF_BASE_S);
    guard_release(g, p, 100.01); /* penalty still running */
    assert_int_equal(guard_peer_count(g), 1);

    guard_peer_t *q = guard_peer(g, "192.0.2.7", 100.02);
    assert_ptr_equal(q, p);
    assert_int_equal(guard_connections(q), 0);
    assert_near(guard_auth_wait_s(q, 100.02), 100.0 + GUARD_BACKOFF_BASE_S - 100.02);
    guard_hold(q);
    /* the wait is over, but the failure is remembered: the next one doubles */
    assert_near(guard_auth_wait_s(q, 100.06), 0);
    assert_near(guard_auth_failed(q, 100.06), 2 * GUARD_BACKOFF_BASE_S);
    guard_release(g, q, 100.07);

    /* released after its wait ran out but within the failure memory: still kept */
    q = guard_peer(g, "192.0.2.7", 110);
    assert_ptr_equal(q, p);
    guard_hold(q);
    guard_release(g, q, 110);
    assert_int_equal(guard_peer_count(g), 1);
    q = guard_peer(g, "192.0.2.7", 110);
    guard_hold(q);
    assert_near(guard_auth_failed(q, 110), 4 * GUARD_BACKOFF_BASE_S);

    /* once the failures are forgotten, the last release drops the record */
    guard_release(g, q, 110 + GUARD_FAILURE_MEMORY_S);
    assert_int_equal(guard_peer_count(g), 0);
    guard_destroy(g);
}

/* --- backoff --- */

static void test_backoff_doubles_and_caps(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    guard_peer_t *p = guard_peer(g, "198.51.100.1", 0);
    guard_hold(p);
    double now = 1000, want = GUARD_BACKOFF_BASE_S;
    for (int k = 1; k <= 40; k++) {
        assert_near(guard_auth_wait_s(p, now), 0);
        double wait = guard_auth_failed(p, now);
        if (wait < want - EPS || wait > want + EPS)
            fail_msg("failure %d: wait %.12g, want %.12g", k, wait, want);
        assert_true(wait <= GUARD_BACKOFF_MAX_S);
        assert_near(guard_auth_wait_s(p, now), wait);
        now += wait; /* the next attempt comes exactly when allowed */
        want = want * 2 > GUARD_BACKOFF_MAX_S ? GUARD_BACKOFF_MAX_S : want * 2;
    }
    /* the documented sequence, spelled out */
    guard_auth_ok(p);
    const double seq[] = {0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10, 10};
    now = 5000;
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        double wait = guard_auth_failed(p, now);
        if (wait < seq[i] - EPS || wait > seq[i] + EPS)
            fail_msg("failure %zu: wait %.12g, want %.12g", i + 1, wait, seq[i]);
        now += 1;
    }
    assert_near(GUARD_BACKOFF_MAX_S, 10.0);
    guard_release(g, p, now);
    guard_destroy(g);
}

static void test_wait_before_and_after(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    guard_peer_t *p = guard_peer(g, "203.0.113.5", 10);
    guard_hold(p);
    assert_near(guard_auth_wait_s(p, 10), 0);
    assert_near(guard_auth_failed(p, 10), 0.05);
    assert_near(guard_auth_wait_s(p, 10), 0.05);
    assert_near(guard_auth_wait_s(p, 10.03), 0.02);
    assert_near(guard_auth_wait_s(p, 10.05), 0);
    assert_near(guard_auth_wait_s(p, 11), 0);
    assert_near(guard_auth_failed(p, 11), 0.1);
    assert_near(guard_auth_wait_s(p, 11), 0.1);
    assert_near(guard_auth_wait_s(p, 11.1), 0);
    guard_destroy(g);
}

static void test_auth_ok_clears(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    guard_peer_t *p = guard_peer(g, "203.0.113.6", 0);
    guard_hold(p);
    for (int k = 0; k < 5; k++)
        guard_auth_failed(p, k);
    assert_true(guard_auth_wait_s(p, 4) > 0);
    guard_auth_ok(p);
    assert_near(guard_auth_wait_s(p, 4), 0);
    assert_near(guard_auth_failed(p, 5), GUARD_BACKOFF_BASE_S);
    guard_auth_ok(p);
    /* nothing left to remember: the last release drops the record */
    guard_release(g, p, 5);
    assert_int_equal(guard_peer_count(g), 0);
    guard_destroy(g);
}

static void test_failures_forgotten_after_quiet_minute(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    guard_peer_t *p = guard_peer(g, "203.0.113.7", 0);
    guard_hold(p);
    assert_near(guard_auth_failed(p, 0), 0.05);
    assert_near(guard_auth_failed(p, 1), 0.1);
    assert_near(guard_auth_failed(p, 2), 0.2);
    /* just inside the memory: keeps doubling */
    assert_near(guard_auth_failed(p, 2 + GUARD_FAILURE_MEMORY_S - 0.5), 0.4);
    /* a quiet GUARD_FAILURE_MEMORY_S since the last failure: starts at the base again */
    double t = 2 + GUARD_FAILURE_MEMORY_S - 0.5 + GUARD_FAILURE_MEMORY_S;
    assert_near(guard_auth_failed(p, t), GUARD_BACKOFF_BASE_S);
    assert_near(guard_auth_failed(p, t + 1), 2 * GUARD_BACKOFF_BASE_S);
    guard_destroy(g);
}

/* --- the table's cap --- */

static void test_table_capped_idle(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    char key[64];
    for (int i = 0; i < GUARD_MAX_PEERS + 100; i++) {
        snprintf(key, sizeof key, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_non_null(guard_peer(g, key, i * 0.001));
        if (guard_peer_count(g) > GUARD_MAX_PEERS)
            fail_msg("%d records after %d keys", guard_peer_count(g), i + 1);
    }
    /* idle records with penalties are idle too: the cap still holds */
    for (int i = 0; i < GUARD_MAX_PEERS + 100; i++) {
        snprintf(key, sizeof key, "fd00::%x", i);
        guard_peer_t *p = guard_peer(g, key, 10);
        assert_non_null(p);
        guard_auth_failed(p, 10);
        if (guard_peer_count(g) > GUARD_MAX_PEERS)
            fail_msg("%d records after %d penalised keys", guard_peer_count(g), i + 1);
    }
    guard_destroy(g);
}

static void test_table_cap_keeps_held(void **state)
{
    (void)state;
    guard_t *g = new_guard();
    enum { HELD = 5 };
    guard_peer_t *held[HELD];
    char key[64];
    for (int i = 0; i < HELD; i++) {
        snprintf(key, sizeof key, "held-%d", i);
        held[i] = guard_peer(g, key, 0);
        assert_non_null(held[i]);
        for (int k = 0; k <= i; k++)
            guard_hold(held[i]);
    }
    guard_auth_failed(held[0], 0);
    for (int i = 0; i < GUARD_MAX_PEERS + 100; i++) {
        snprintf(key, sizeof key, "uid:%d", 100000 + i);
        /* penalised, so that only the last resort (dropping every record without a
         * connection) keeps the table under its cap */
        guard_peer_t *p = guard_peer(g, key, 1 + i * 0.001);
        assert_non_null(p);
        guard_auth_failed(p, 1 + i * 0.001);
        assert_true(guard_peer_count(g) <= GUARD_MAX_PEERS);
    }
    /* the held records survived the sweeps: looked up by key (not through the old
     * pointer, which malloc might have handed out again), each still has its count, and
     * the penalty is still there */
    for (int i = 0; i < HELD; i++) {
        snprintf(key, sizeof key, "held-%d", i);
        guard_peer_t *p = guard_peer(g, key, 10);
        assert_non_null(p);
        if (guard_connections(p) != i + 1)
            fail_msg("%s: %d connections, want %d", key, guard_connections(p), i + 1);
        assert_ptr_equal(p, held[i]);
    }
    assert_near(guard_auth_wait_s(held[0], 0.01), GUARD_BACKOFF_BASE_S - 0.01);
    assert_near(guard_auth_failed(held[0], 10), 2 * GUARD_BACKOFF_BASE_S);
    guard_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_eq),
        cmocka_unit_test(test_token_eq_reads_whole_secret),
        cmocka_unit_test(test_peer_same_key_same_record),
        cmocka_unit_test(test_hold_release_forgets_idle),
        cmocka_unit_test(test_penalty_survives_reconnect),
        cmocka_unit_test(test_backoff_doubles_and_caps),
        cmocka_unit_test(test_wait_before_and_after),
        cmocka_unit_test(test_auth_ok_clears),
        cmocka_unit_test(test_failures_forgotten_after_quiet_minute),
        cmocka_unit_test(test_table_capped_idle),
        cmocka_unit_test(test_table_cap_keeps_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
