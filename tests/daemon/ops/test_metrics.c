/*
 * test_metrics.c: daemon/ops/metrics.c under a fake clock: counters and totals, sliding
 * window percentiles against exact ones, expiry and slot reuse after 60 s, signed series
 * (lateness), NaN handling, cumulative Prometheus buckets, exact counts under concurrent
 * recording, and no allocation while recording (malloc family wrapped).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "metrics.h"
#include "metrics_internal.h"

/* ---- fake clock ---- */

static double fake_now;
static double fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static mpcd_metrics_t *new_metrics(double now)
{
    mpcd_metrics_t *m = NULL;
    assert_int_equal(mpcd_metrics_create(&m), 0);
    fake_now = now;
    mpcd_metrics_set_clock(m, fake_clock, NULL);
    return m;
}

static mpcd_step_sample_t sample_total(double total_s)
{
    mpcd_step_sample_t s = {.queue_s = NAN,
                            .belief_s = NAN,
                            .plan_s = NAN,
                            .total_s = total_s,
                            .slack_s = NAN,
                            .iterations = -1,
                            .kl_nats = NAN,
                            .reward_error = NAN};
    return s;
}

static void assert_near_rel(double got, double want, double rel)
{
    if (fabs(got - want) > rel * fabs(want))
        fail_msg("got %g, want %g (+-%g%%)", got, want, rel * 100);
}

static void test_requests_and_totals(void **state)
{
    (void)state;
    mpcd_metrics_t *m = new_metrics(10);
    mpcd_metrics_request(m, MPCD_REQ_STEP, MPCD_OUTCOME_OK);
    mpcd_metrics_request(m, MPCD_REQ_STEP, MPCD_OUTCOME_OK);
    mpcd_metrics_request(m, MPCD_REQ_STEP, MPCD_OUTCOME_OVERLOADED);
    mpcd_metrics_request(m, MPCD_REQ_STEP, MPCD_OUTCOME_SHED);
    mpcd_metrics_request(m, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
    mpcd_metrics_request(m, (mpcd_req_type_t)99, (mpcd_outcome_t)-1); /* counted, not trusted */
    mpcd_metrics_reload(m, true, 0.25);
    mpcd_metrics_reload(m, false, 0.01);
    mpcd_step_sample_t s = sample_total(0.004);
    s.deadline_cut = true;
    s.candidates = 700;
    mpcd_metrics_step(m, &s);
    s.deadline_cut = false;
    s.fallback = s.overrun = true;
    mpcd_metrics_step(m, &s);

    assert_int_equal(mpcd_metrics_requests(m, MPCD_REQ_STEP, MPCD_OUTCOME_OK), 2);
    assert_int_equal(mpcd_metrics_requests(m, MPCD_REQ_INVALID, MPCD_OUTCOME_ERROR), 1);
    assert_int_equal(mpcd_metrics_requests(m, (mpcd_req_type_t)99, MPCD_OUTCOME_OK), 0);
    mpcd_totals_t t;
    mpcd_metrics_totals(m, &t);
    assert_int_equal(t.requests, 6);
    assert_int_equal(t.errors, 3); /* overloaded + hello error + invalid */
    assert_int_equal(t.steps, 2);
    assert_int_equal(t.deadline_cuts, 1);
    assert_int_equal(t.fallbacks, 1);
    assert_int_equal(t.overruns, 1);
    assert_int_equal(t.reloads_ok, 1);
    assert_int_equal(t.reloads_failed, 1);
    assert_int_equal(mpcd_metrics_candidates(m), 1400);
    assert_true(mpcd_metrics_last_load_s(m) == 0.01);

    assert_string_equal(mpcd_req_type_name(MPCD_REQ_RELOAD), "reload");
    assert_string_equal(mpcd_outcome_name(MPCD_OUTCOME_SHED), "shed");
    assert_string_equal(mpcd_stage_name(MPCD_STAGE_BELIEF), "belief");
    assert_string_equal(mpcd_series_name(MPCD_SERIES_SURPRISE), "surprise");
    mpcd_metrics_destroy(m);
    mpcd_metrics_destroy(NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_window_percentiles(void **state)
{
    (void)state;
    mpcd_metrics_t *m = new_metrics(1000.25);
    /* a skewed distribution over 10 us .. 50 ms, spread over 30 s */
    enum { N = 3000 };
    static double v[N];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(x >> 11) / 9007199254740992.0;
        v[i] = 1e-5 * pow(5000.0, u * u);
        fake_now = 1000.25 + (double)(i % 30);
        mpcd_step_sample_t s = sample_total(v[i]);
        mpcd_metrics_step(m, &s);
    }
    fake_now = 1040.0;
    mpcd_latency_summary_t sum;
    mpcd_metrics_summary(m, MPCD_STAGE_TOTAL, &sum);
    qsort(v, N, sizeof v[0], cmp_double);
    assert_int_equal(sum.count, N);
    /* nearest rank: the ceil(q N)-th smallest */
    assert_near_rel(sum.p50, v[N / 2 - 1], 0.05);
    assert_near_rel(sum.p90, v[(int)ceil(0.9 * N) - 1], 0.05);
    assert_near_rel(sum.p99, v[(int)ceil(0.99 * N) - 1], 0.05);
    assert_true(sum.max == v[N - 1]);
    assert_true(sum.p50 <= sum.p90 && sum.p90 <= sum.p99 && sum.p99 <= sum.max);

    /* stages without samples are all zero */
    mpcd_metrics_summary(m, MPCD_STAGE_PLAN, &sum);
    assert_int_equal(sum.count, 0);
    assert_true(sum.p50 == 0 && sum.max == 0);
    mpcd_metrics_summary(m, (mpcd_stage_t)7, &sum);
    assert_int_equal(sum.count, 0);
    mpcd_metrics_destroy(m);
}

static void test_window_expiry_and_reuse(void **state)
{
    (void)state;
    mpcd_metrics_t *m = new_metrics(100.5);
    mpcd_step_sample_t a = sample_total(0.001), b = sample_total(0.002);
    mpcd_metrics_step(m, &a); /* second 100 */
    fake_now = 130.9;
    mpcd_metrics_step(m, &b); /* second 130 */
    mpcd_latency_summary_t s;

    fake_now = 159.99;
    mpcd_metrics_summary(m, MPCD_STAGE_TOTAL, &s);
    assert_int_equal(s.count, 2);
    fake_now = 160.0; /* second 100 is now 60 s old */
    mpcd_metrics_summary(m, MPCD_STAGE_TOTAL, &s);
    assert_int_equal(s.count, 1);
    assert_true(s.max == 0.002);
    fake_now = 195.0;
    mpcd_metrics_summary(m, MPCD_STAGE_TOTAL, &s);
    assert_int_equal(s.count, 0);

    /* second 220 reuses second 100's and 160's slot: old counts must not leak in */
    fake_now = 220.1;
    mpcd_step_sample_t c = sample_total(0.003);
    mpcd_metrics_step(m, &c);
    mpcd_metrics_summary(m, MPCD_STAGE_TOTAL, &s);
    assert_int_equal(s.count, 1);
    assert_true(s.p50 == 0.003 && s.max == 0.003); /* clamped to the exact min/max */

    /* the cumulative histogram keeps everything */
    mpcd_histogram_t h;
    mpcd_metrics_histogram(m, MPCD_SERIES_TOTAL, &h);
    assert_int_equal(h.count, 3);
    assert_near_rel(h.sum, 0.006, 1e-9);
    mpcd_metrics_destroy(m);
}

static void test_signed_and_health_series(void **state)
{
    (void)state;
    mpcd_metrics_t *m = new_metrics(5);
    for (int i = 1; i <= 100; i++) {
        mpcd_step_sample_t s = {.queue_s = 1e-4,
                                .belief_s = 2e-4,
                                .plan_s = 0.015,
                                .total_s = 0.016,
                                .slack_s = 0.00405 - 1e-4 * i,
                                .iterations = i % 11,
                                .candidates = 100,
                                .kl_nats = i == 50 ? NAN : 0.5,
                                .reward_error = i % 2 ? -0.2 : 0.2};
        mpcd_metrics_step(m, &s);
    }
    mpcd_latency_summary_t s;
    mpcd_metrics_window(m, MPCD_SERIES_LATENESS, &s); /* 1e-4 i - 0.00405: -0.00395 .. */
    assert_int_equal(s.count, 100);
    assert_near_rel(s.p50, 0.00095, 0.05);
    assert_true(s.p50 > 0);
    assert_near_rel(s.max, 0.00595, 1e-9);
    mpcd_metrics_window(m, MPCD_SERIES_SURPRISE, &s);
    assert_int_equal(s.count, 99); /* the NaN step is unknown, not zero */
    assert_near_rel(s.p90, 0.5, 1e-9);
    mpcd_metrics_window(m, MPCD_SERIES_REWARD_ERROR, &s);
    assert_int_equal(s.count, 100);
    assert_near_rel(s.max, 0.2, 1e-6);                /* magnitude of the error */
    mpcd_metrics_window(m, MPCD_SERIES_OVERHEAD, &s); /* 0.016 - 0.015 every step */
    assert_int_equal(s.count, 100);
    assert_near_rel(s.p50, 0.001, 0.05);
    assert_near_rel(s.max, 0.001, 1e-6);
    mpcd_metrics_window(m, MPCD_SERIES_ITERATIONS, &s);
    assert_true(s.max == 10);
    assert_true(s.p50 == 5); /* rank 50 of 0x9, 1x10, 2..10 x9; integers exact */
    assert_true(s.p90 == 9);

    mpcd_histogram_t h;
    mpcd_metrics_histogram(m, MPCD_SERIES_LATENESS, &h);
    assert_string_equal(h.name, "mpcd_step_lateness_seconds");
    assert_int_equal(h.count, 100);
    for (int i = 0; i < h.nbounds; i++) {
        if (h.bounds[i] == 0.0)
            assert_int_equal(h.cumulative[i], 40); /* in time for i <= 40 */
        if (h.bounds[i] == -0.0025)
            assert_int_equal(h.cumulative[i], 15);
        if (i > 0)
            assert_true(h.cumulative[i] >= h.cumulative[i - 1]);
    }
    assert_int_equal(h.cumulative[h.nbounds], 100);
    mpcd_metrics_destroy(m);
}

static void test_bucket_edges(void **state)
{
    (void)state;
    mpcd_metrics_t *m = new_metrics(1);
    mpcd_step_sample_t s = sample_total(0.02); /* exactly a bound: le="0.02" includes it */
    mpcd_metrics_step(m, &s);
    s.total_s = 1e9; /* beyond every bound */
    mpcd_metrics_step(m, &s);
    s.total_s = -1; /* a negative duration is a caller bug: ignored */
    mpcd_metrics_step(m, &s);
    mpcd_histogram_t h;
    mpcd_metrics_histogram(m, MPCD_SERIES_TOTAL, &h);
    assert_int_equal(h.count, 2);
    for (int i = 0; i < h.nbounds; i++)
        assert_int_equal(h.cumulative[i], h.bounds[i] >= 0.02 ? 1 : 0);
    assert_int_equal(h.cumulative[h.nbounds], 2);
    mpcd_latency_summary_t w;
    mpcd_metrics_summary(m, MPCD_STAGE_TOTAL, &w);
    assert_true(w.max == 1e9);
    mpcd_metrics_destroy(m);
}

/* ---- concurrency ---- */

#define THREADS    4
#define PER_THREAD 20000

static void *recorder(void *arg)
{
    mpcd_metrics_t *m = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        mpcd_step_sample_t s = {.queue_s = 1e-5,
                                .belief_s = 1e-4,
                                .plan_s = 0.01,
                                .total_s = 0.0102,
                                .slack_s = 0.01,
                                .iterations = 10,
                                .candidates = 1000,
                                .deadline_cut = (i % 10) == 0,
                                .kl_nats = 1.0,
                                .reward_error = 0.1};
        mpcd_metrics_step(m, &s);
        mpcd_metrics_request(m, MPCD_REQ_STEP, MPCD_OUTCOME_OK);
    }
    return NULL;
}

static void *reader(void *arg)
{
    mpcd_metrics_t *m = arg;
    for (int i = 0; i < 200; i++) {
        mpcd_latency_summary_t s;
        mpcd_metrics_summary(m, MPCD_STAGE_PLAN, &s);
        assert_true(s.count <= THREADS * PER_THREAD);
        mpcd_histogram_t h;
        mpcd_metrics_histogram(m, MPCD_SERIES_PLAN, &h);
        assert_true(h.cumulative[h.nbounds] == h.count);
    }
    return NULL;
}

static void test_concurrent_recording_no_alloc(void **state)
{
    (void)state;
    mpcd_metrics_t *m = new_metrics(50.5);
    /* Single-threaded first, then concurrently (thread start-up allocates inside libc,
     * which the wrap does not see). */
    alloc_count_start();
    mpcd_step_sample_t one = sample_total(0.001);
    mpcd_metrics_step(m, &one);
    mpcd_metrics_request(m, MPCD_REQ_STATUS, MPCD_OUTCOME_OK);
    mpcd_metrics_reload(m, true, 0.1);
    mpcd_latency_summary_t s;
    mpcd_metrics_summary(m, MPCD_STAGE_TOTAL, &s);
    assert_int_equal(alloc_count_stop(), 0);

    pthread_t t[THREADS + 1];
    alloc_count_start();
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, recorder, m), 0);
    assert_int_equal(pthread_create(&t[THREADS], NULL, reader, m), 0);
    for (int i = 0; i <= THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(alloc_count_stop(), 0);

    mpcd_totals_t tot;
    mpcd_metrics_totals(m, &tot);
    assert_int_equal(tot.steps, THREADS * PER_THREAD + 1);
    assert_int_equal(tot.requests, THREADS * PER_THREAD + 1);
    assert_int_equal(tot.deadline_cuts, THREADS * PER_THREAD / 10);
    mpcd_metrics_summary(m, MPCD_STAGE_PLAN, &s);
    assert_int_equal(s.count, THREADS * PER_THREAD);
    assert_near_rel(s.p99, 0.01, 0.05);
    mpcd_histogram_t h;
    mpcd_metrics_histogram(m, MPCD_SERIES_SURPRISE, &h);
    assert_int_equal(h.count, THREADS * PER_THREAD);
    assert_near_rel(h.sum, THREADS * PER_THREAD * 1.0, 1e-12);
    mpcd_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_and_totals),
        cmocka_unit_test(test_window_percentiles),
        cmocka_unit_test(test_window_expiry_and_reuse),
        cmocka_unit_test(test_signed_and_health_series),
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_concurrent_recording_no_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
