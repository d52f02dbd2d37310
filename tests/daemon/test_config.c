/*
 * test_config.c: mpcd's settings table: defaults, INI files, command-line precedence,
 * error messages that name the key (and line), --help covering every setting, and the
 * --check-config output reading back as the same configuration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int parse(mpcd_config_t *c, config_action_t *act, char *err, int argc, ...)
{
    char *argv[32] = {"mpcd"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    err[0] = 0;
    return config_parse_args(c, argc + 1, argv, act, err, 512);
}

static void test_defaults(void **state)
{
    (void)state;
    mpcd_config_t c;
    char err[512];
    assert_int_equal(config_defaults(&c), 0);
    assert_null(c.model);
    assert_int_equal(c.nlisten, 1);
    assert_string_equal(c.listen[0], "tcp://127.0.0.1:7070");
    assert_string_equal(c.status_listen, "127.0.0.1:9464");
    assert_true(c.deadline_ms == 20.0);
    assert_int_equal(c.planner.candidates, 1000);
    assert_int_equal(c.planner.top_k, 100);
    assert_int_equal(c.planner.horizon, 12);
    assert_int_equal(c.unix_mode, 0660);
    assert_int_equal(c.log_level, 6);
    assert_true(c.planner.margin_s == 0.001);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    config_free(&c);
}

static void test_cli(void **state)
{
    (void)state;
    mpcd_config_t c;
    config_action_t act;
    char err[512];
    assert_int_equal(parse(&c, &act, err, 12, "--model", "/m.st", "--listen",
                           "tcp://[::1]:7000", "--listen=unix:/run/x.sock", "--deadline-ms",
                           "40.0", "--watch", "--no-sample-latent", "--unix-mode", "0600",
                           "--log-level=debug"),
                     0);
    assert_int_equal(act, CONFIG_RUN);
    assert_string_equal(c.model, "/m.st");
    assert_int_equal(c.nlisten, 2); /* the command line replaced the default */
    assert_string_equal(c.listen[0], "tcp://[::1]:7000");
    assert_string_equal(c.listen[1], "unix:/run/x.sock");
    assert_true(c.deadline_ms == 40.0);
    assert_true(c.watch);
    assert_false(c.planner.sample_latent);
    assert_int_equal(c.unix_mode, 0600);
    assert_int_equal(c.log_level, 7);
    config_free(&c);

    assert_int_equal(parse(&c, &act, err, 2, "--no-status-listen", "--check-config"), 0);
    assert_null(c.status_listen);
    assert_int_equal(act, CONFIG_CHECK);
    config_free(&c);

    assert_int_equal(parse(&c, &act, err, 2, "--status-listen", "none"), 0);
    assert_null(c.status_listen);
    config_free(&c);

    assert_int_equal(parse(&c, &act, err, 1, "--help"), 0);
    assert_int_equal(act, CONFIG_HELP);
    config_free(&c);
}

static void test_cli_errors(void **state)
{
    (void)state;
    mpcd_config_t c;
    config_action_t act;
    char err[512];
    assert_int_equal(parse(&c, &act, err, 1, "--frobnicate"), -EINVAL);
    assert_non_null(strstr(err, "--frobnicate"));
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 2, "--workers", "many"), -EINVAL);
    assert_non_null(strstr(err, "workers"));
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 2, "--candidates", "2.5"), -EINVAL);
    assert_non_null(strstr(err, "integer"));
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 2, "--deadline-ms", "0"), -EINVAL);
    assert_non_null(strstr(err, "out of range"));
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 1, "--model"), -EINVAL);
    assert_non_null(strstr(err, "missing"));
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 1, "--no-model"), -EINVAL); /* not a boolean */
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 1, "--watch=perhaps"), -EINVAL);
    assert_non_null(strstr(err, "true or false"));
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 1, "stray"), -EINVAL);
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 2, "--unix-mode", "999"), -EINVAL);
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 2, "--log-level", "loud"), -EINVAL);
    config_free(&c);
}

static void test_validate(void **state)
{
    (void)state;
    mpcd_config_t c;
    config_action_t act;
    char err[512];
    assert_int_equal(parse(&c, &act, err, 4, "--candidates", "10", "--top", "20"), 0);
    assert_int_equal(config_validate(&c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "planner"));
    config_free(&c);
    assert_int_equal(parse(&c, &act, err, 4, "--deadline-ms", "1", "--margin-ms", "2"), 0);
    assert_int_equal(config_validate(&c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "margin-ms"));
    config_free(&c);
}

static void test_ini_and_precedence(void **state)
{
    (void)state;
    char *path = write_tmp("; mpcd settings\n"
                           "deadline_ms = 30\n"
                           "[server]\n"
                           "listen = tcp://127.0.0.1:1\n"
                           "listen = unix:/tmp/a.sock\n"
                           "max-queued = 4\n"
                           "[planner]\n"
                           "candidates = 200\n"
                           "top = 20\n"
                           "[control]\n"
                           "workers = 3\n");
    mpcd_config_t c;
    config_action_t act;
    char err[512];
    /* --workers after --config and before it: both override the file. */
    assert_int_equal(parse(&c, &act, err, 4, "--workers", "2", "--config", path), 0);
    assert_true(c.deadline_ms == 30);
    assert_int_equal(c.nlisten, 2);
    assert_string_equal(c.listen[1], "unix:/tmp/a.sock");
    assert_int_equal(c.max_queued, 4);
    assert_int_equal(c.planner.candidates, 200);
    assert_int_equal(c.planner.top_k, 20);
    assert_int_equal(c.workers, 2);
    config_free(&c);

    assert_int_equal(parse(&c, &act, err, 4, "--config", path, "--listen", "tcp://h:9"), 0);
    assert_int_equal(c.nlisten, 1);
    assert_string_equal(c.listen[0], "tcp://h:9");
    config_free(&c);
    unlink(path);
    free(path);
}

static void test_ini_errors(void **state)
{
    (void)state;
    struct {
        const char *text, *needle;
    } cases[] = {
        {"[planner]\ncandidates = 10\nbogus = 1\n", ":3: unknown setting 'bogus'"},
        {"[planner]\nlisten = tcp://a:1\n", ":2: 'listen' belongs in section [server]"},
        {"horizon = -4\n", ":1: horizon: -4 is out of range"},
        {"this line is not ini\n", ":1:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_tmp(cases[i].text);
        mpcd_config_t c;
        char err[512];
        config_defaults(&c);
        assert_int_equal(config_load_file(&c, path, err, sizeof err), -EINVAL);
        if (!strstr(err, cases[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].needle);
        config_free(&c);
        unlink(path);
        free(path);
    }
    mpcd_config_t c;
    config_action_t act;
    char err[512];
    assert_int_equal(parse(&c, &act, err, 2, "--config", "/nonexistent/mpcd.conf"), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/mpcd.conf"));
    config_free(&c);
}

/* --help lists every setting; the printed configuration reads back identically. */
static void test_help_and_roundtrip(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_help(f, "mpcd");
    fclose(f);
    mpcd_config_t c;
    config_action_t act;
    char err[512];
    assert_int_equal(parse(&c, &act, err, 6, "--model", "/x.st", "--listen", "unix:/s",
                           "--candidates", "321"),
                     0);
    char *ini = NULL;
    size_t ilen = 0;
    f = open_memstream(&ini, &ilen);
    config_print(f, &c);
    fclose(f);
    for (const char *sections[] = {"NAME", "SYNOPSIS", "OPTIONS", "EXIT STATUS", "SIGNALS"},
                    **s = sections;
         s < sections + 5; s++)
        assert_non_null(strstr(buf, *s));
    /* Every key of the effective config is documented as an option. */
    for (char *line = strtok(ini, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '[' || line[0] == '#')
            continue;
        char key[64], opt[80];
        assert_int_equal(sscanf(line, "%63s", key), 1);
        snprintf(opt, sizeof opt, "--%s", key);
        if (!strstr(buf, opt))
            fail_msg("--help lacks %s", opt);
    }
    free(ini);
    ini = NULL;
    f = open_memstream(&ini, &ilen);
    config_print(f, &c);
    fclose(f);
    char *path = write_tmp(ini);
    mpcd_config_t d;
    config_defaults(&d);
    assert_int_equal(config_load_file(&d, path, err, sizeof err), 0);
    assert_string_equal(d.model, "/x.st");
    assert_int_equal(d.nlisten, 1);
    assert_string_equal(d.listen[0], "unix:/s");
    assert_int_equal(d.planner.candidates, 321);
    assert_true(d.planner.margin_s == c.planner.margin_s);
    assert_int_equal(d.unix_mode, c.unix_mode);
    config_free(&d);
    config_free(&c);
    unlink(path);
    free(path);
    free(ini);
    free(buf);

    /* A secret is not printed back. */
    assert_int_equal(parse(&c, &act, err, 2, "--auth-token", "hunter2"), 0);
    f = open_memstream(&ini, &ilen);
    config_print(f, &c);
    fclose(f);
    assert_null(strstr(ini, "hunter2"));
    assert_non_null(strstr(ini, "# auth-token = (set, not shown)"));
    free(ini);
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),           cmocka_unit_test(test_cli),
        cmocka_unit_test(test_cli_errors),         cmocka_unit_test(test_validate),
        cmocka_unit_test(test_ini_and_precedence), cmocka_unit_test(test_ini_errors),
        cmocka_unit_test(test_help_and_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
