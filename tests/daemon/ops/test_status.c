/*
 * test_status.c: daemon/ops/status.c renders /status JSON and /metrics text from a
 * snapshot plus metrics: the JSON keys the clients and learn.py read (with and without a
 * model; every __metadata__ key), Prometheus structure (HELP/TYPE before samples, label
 * escaping, histogram buckets), and `promtool check metrics` when promtool is installed.
 *
 * usage: test_ops_status [MODEL_FILE]   (the model tests are skipped without one)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "status.h"

static const char *model_file;

typedef struct fixture {
    mpcd_metrics_t *m;
    rssm_model_t *model;
    cem_config_t cem;
    mpcd_session_info_t sessions[2];
    mpcd_status_t st;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (f == NULL || mpcd_metrics_create(&f->m) != 0)
        return -1;
    for (int i = 0; i < 3; i++)
        mpcd_metrics_request(f->m, MPCD_REQ_STEP, MPCD_OUTCOME_OK);
    mpcd_metrics_request(f->m, MPCD_REQ_HELLO, MPCD_OUTCOME_ERROR);
    mpcd_step_sample_t s = {.queue_s = 2e-5,
                            .belief_s = 3e-4,
                            .plan_s = 0.018,
                            .total_s = 0.0185,
                            .slack_s = 0.0015,
                            .iterations = 7,
                            .candidates = 7000,
                            .deadline_cut = true,
                            .kl_nats = 1.5,
                            .reward_error = -0.25};
    mpcd_metrics_step(f->m, &s);
    mpcd_metrics_reload(f->m, true, 0.05);

    cem_config_default(&f->cem);
    f->sessions[0] = (mpcd_session_info_t){.id = 7,
                                           .name = "sim \"cartpole\"",
                                           .peer = "unix",
                                           .steps = 120,
                                           .episodes = 2,
                                           .age_s = 3.5,
                                           .last_total_ms = 18.5,
                                           .last_plan_ms = 18.0,
                                           .mean_surprise = 1.25,
                                           .model_version = 1};
    f->sessions[1] =
        (mpcd_session_info_t){.id = 8, .name = "bench/0", .peer = "127.0.0.1:5000"};
    f->st = (mpcd_status_t){.version = "0.1.0",
                            .uptime_s = 12.5,
                            .ready = false,
                            .model_version = 0,
                            .last_reload_error = "",
                            .planner = &f->cem,
                            .default_deadline_ms = 20,
                            .workers = 2,
                            .sessions_count = 2,
                            .sessions = f->sessions};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    mpcd_metrics_destroy(f->m);
    rssm_destroy(f->model);
    free(f);
    return 0;
}

static void load_model(fixture_t *f)
{
    char err[256];
    if (rssm_load(model_file, &f->model, err, sizeof err) != 0)
        fail_msg("%s: %s", model_file, err);
    f->st.model = f->model;
    f->st.ready = true;
    f->st.model_version = 3;
    f->st.model_path = "/var/lib/mpcd/we\"ird\\model\n.safetensors";
    f->st.model_load_s = 0.125;
}

static cJSON *parse_json(const mpcd_status_t *st, mpcd_metrics_t *m)
{
    char *text = mpcd_status_json(st, m);
    assert_non_null(text);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    assert_non_null(doc);
    return doc;
}

static double num(const cJSON *o, const char *path)
{
    /* "a.b.c" */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        cur = cJSON_GetObjectItemCaseSensitive(cur, k);
        if (cur == NULL)
            fail_msg("missing key %s", path);
    }
    if (!cJSON_IsNumber(cur))
        fail_msg("%s is not a number", path);
    return cur->valuedouble;
}

static void test_json_without_model(void **state)
{
    fixture_t *f = *state;
    cJSON *doc = parse_json(&f->st, f->m);
    assert_string_equal(cJSON_GetObjectItem(doc, "version")->valuestring, "0.1.0");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(doc, "ready")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "model")));
    assert_true(num(doc, "uptime_s") == 12.5);
    assert_true(num(doc, "requests") == 4);
    assert_true(num(doc, "errors") == 1);
    assert_true(num(doc, "deadline_cuts") == 1);
    assert_true(num(doc, "reloads_ok") == 1);
    assert_true(num(doc, "requests_by_type.step.ok") == 3);
    assert_true(num(doc, "requests_by_type.hello.error") == 1);
    assert_true(num(doc, "last_minute.total_s.count") == 1);
    assert_true(fabs(num(doc, "last_minute.total_s.max") - 0.0185) < 1e-12);
    assert_true(fabs(num(doc, "last_minute.lateness_s.max") + 0.0015) < 1e-12);
    assert_true(num(doc, "last_minute.surprise_nats.p50") == 1.5);
    assert_true(num(doc, "last_minute.reward_error.max") == 0.25);
    assert_true(num(doc, "since_start.plan_s.count") == 1);
    assert_true(fabs(num(doc, "last_minute.overhead_s.max") - 0.0005) <
                1e-12); /* 18.5 - 18 ms */
    /* planner settings for learn.py's model card */
    assert_true(num(doc, "planner.candidates") == f->cem.candidates);
    assert_true(num(doc, "planner.horizon") == f->cem.horizon);
    assert_true(num(doc, "planner.deadline_ms") == 20);
    assert_true(num(doc, "planner.workers") == 2);
    const cJSON *ss = cJSON_GetObjectItem(doc, "session");
    assert_int_equal(cJSON_GetArraySize(ss), 2);
    const cJSON *s0 = cJSON_GetArrayItem(ss, 0);
    assert_string_equal(cJSON_GetObjectItem(s0, "client_name")->valuestring,
                        "sim \"cartpole\"");
    assert_true(num(s0, "steps") == 120 && num(s0, "mean_surprise") == 1.25);
    cJSON_Delete(doc);

    /* no metrics: still a valid document */
    doc = parse_json(&f->st, NULL);
    assert_null(cJSON_GetObjectItem(doc, "requests"));
    assert_true(num(doc, "sessions") == 2);
    cJSON_Delete(doc);
}

static void test_json_with_model(void **state)
{
    fixture_t *f = *state;
    if (model_file == NULL)
        skip();
    load_model(f);
    cJSON *doc = parse_json(&f->st, f->m);
    const rssm_info_t *in = rssm_info(f->model);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "ready")));
    assert_true(num(doc, "model_version") == 3);
    assert_string_equal(cJSON_GetObjectItem(doc, "model_name")->valuestring, in->task);
    const cJSON *model = cJSON_GetObjectItem(doc, "model");
    assert_string_equal(cJSON_GetObjectItem(model, "path")->valuestring, f->st.model_path);
    assert_true(num(model, "dims.obs") == in->dims.obs);
    assert_true(num(model, "dims.action") == in->dims.action);
    assert_true(num(model, "dims.deter") == in->dims.deter);
    assert_true(num(model, "load_s") == 0.125);
    assert_string_equal(cJSON_GetObjectItem(model, "task")->valuestring, in->task);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(model, "action_low")),
                     in->dims.action);
    const cJSON *md = cJSON_GetObjectItem(model, "metadata");
    int n = rssm_metadata_count(f->model);
    assert_true(n > 10);
    assert_int_equal(cJSON_GetArraySize(md), n);
    for (int i = 0; i < n; i++) {
        const char *k, *v;
        rssm_metadata_at(f->model, i, &k, &v);
        const cJSON *got = cJSON_GetObjectItemCaseSensitive(md, k);
        assert_non_null(got);
        assert_string_equal(got->valuestring, v);
    }
    assert_string_equal(cJSON_GetObjectItem(md, "format")->valuestring, "mpc-rssm");
    cJSON_Delete(doc);
}

/* ---- Prometheus ---- */

/* Checks the exposition structurally: every sample belongs to a family announced by HELP
 * and TYPE lines before it, histogram samples are _bucket/_sum/_count with an +Inf bucket
 * equal to _count, every value parses. Returns the number of samples. */
static int check_exposition(const char *text)
{
    char *copy = strdup(text);
    char family[128] = "", type[32] = "";
    bool have_help = false, have_type = false;
    int samples = 0;
    double inf_bucket = -1;
    char *save = NULL;
    assert_true(text[strlen(text) - 1] == '\n');
    for (char *l = strtok_r(copy, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(l + 7, "%127s", family), 1);
            have_help = true;
            have_type = false;
            continue;
        }
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char name[128];
            assert_int_equal(sscanf(l + 7, "%127s %31s", name, type), 2);
            assert_string_equal(name, family);
            assert_true(have_help);
            have_type = true;
            continue;
        }
        assert_true(have_help && have_type);
        size_t fl = strlen(family);
        assert_memory_equal(l, family, fl);
        const char *rest = l + fl;
        if (strcmp(type, "histogram") == 0) {
            bool bucket = strncmp(rest, "_bucket{le=\"", 12) == 0;
            bool count = strncmp(rest, "_count ", 7) == 0;
            assert_true(bucket || count || strncmp(rest, "_sum ", 5) == 0);
            if (bucket && strstr(rest, "le=\"+Inf\"") != NULL)
                inf_bucket = strtod(strrchr(rest, ' ') + 1, NULL);
            if (count)
                assert_true(strtod(rest + 7, NULL) == inf_bucket);
        } else {
            assert_true(*rest == ' ' || *rest == '{');
        }
        const char *val = strrchr(l, ' ') + 1;
        char *end;
        double v = strtod(val, &end);
        assert_true(*end == '\0');
        (void)v;
        samples++;
    }
    free(copy);
    return samples;
}

static void test_prometheus_structure(void **state)
{
    fixture_t *f = *state;
    if (model_file != NULL)
        load_model(f);
    char *text = mpcd_status_prometheus(&f->st, f->m);
    assert_non_null(text);
    assert_true(check_exposition(text) > 100);
    assert_non_null(strstr(text, "\nmpcd_requests_total{type=\"step\",outcome=\"ok\"} 3\n"));
    assert_non_null(
        strstr(text, "\nmpcd_requests_total{type=\"hello\",outcome=\"error\"} 1\n"));
    assert_non_null(strstr(text, "\nmpcd_deadline_cuts_total 1\n"));
    assert_non_null(strstr(text, "\nmpcd_reloads_total{result=\"ok\"} 1\n"));
    assert_non_null(strstr(text, "\nmpcd_step_plan_seconds_bucket{le=\"0.02\"} 1\n"));
    assert_non_null(strstr(text, "\nmpcd_step_plan_seconds_bucket{le=\"0.015\"} 0\n"));
    assert_non_null(strstr(text, "\nmpcd_step_plan_seconds_count 1\n"));
    assert_non_null(strstr(text, "\nmpcd_plan_iterations_bucket{le=\"8\"} 1\n"));
    assert_non_null(strstr(text, "\nmpcd_step_overhead_seconds_bucket{le=\"0.001\"} 1\n"));
    assert_non_null(strstr(text, "\nmpcd_model_surprise_nats_sum 1.5\n"));
    assert_non_null(strstr(text, "\nmpcd_model_reward_error_sum 0.25\n"));
    assert_non_null(strstr(text, "\nmpcd_sessions 2\n"));
    assert_non_null(strstr(text, "\nmpcd_uptime_seconds 12.5\n"));
    if (model_file != NULL) {
        assert_non_null(strstr(text, "\nmpcd_model_version 3\n"));
        /* quote, backslash and newline escaped in the label value */
        assert_non_null(
            strstr(text, "path=\"/var/lib/mpcd/we\\\"ird\\\\model\\n.safetensors\""));
    }
    free(text);
}

static bool have_program(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

static void test_promtool(void **state)
{
    fixture_t *f = *state;
    if (!have_program("promtool"))
        skip(); /* Debian's prometheus package provides it */
    if (model_file != NULL)
        load_model(f);
    char *text = mpcd_status_prometheus(&f->st, f->m);
    assert_non_null(text);
    char path[] = "/tmp/mpcd-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    free(text);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    unlink(path);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n > 0)
        fail_msg("promtool check metrics: status %d:\n%s", status, out);
}

int main(int argc, char **argv)
{
    model_file = argc > 1 ? argv[1] : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_without_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_with_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_structure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_promtool, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
