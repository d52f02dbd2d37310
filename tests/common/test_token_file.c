/*
 * test_token_file.c: common/token_file.c: the token is the first line of the file with
 * surrounding whitespace removed (LF or CRLF endings, later lines ignored); empty or
 * whitespace-only first lines and missing files are errors that name the path; tokens
 * over TOKEN_FILE_MAX bytes or over the caller's buffer are refused; files readable by
 * group or others are reported as loose, not refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "token_file.h"

static char dir[64];
static int nfiles;

static int setup_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/mpc-token-file-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown_dir(void **state)
{
    (void)state;
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Writes len bytes of data to a new file in dir with mode; its path goes to path. */
static void write_token_file(char *path, const char *data, size_t len, mode_t mode)
{
    snprintf(path, PATH_MAX, "%s/token-%d", dir, nfiles++);
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

typedef struct {
    int rc;
    bool loose;
    char token[TOKEN_FILE_MAX + 1];
    char err[PATH_MAX + 128];
} result_t;

static result_t read_bytes(const char *data, size_t len, mode_t mode, char *path)
{
    char p[PATH_MAX];
    if (!path)
        path = p;
    write_token_file(path, data, len, mode);
    result_t r;
    memset(&r, 0, sizeof r);
    r.loose = true; /* must be written */
    r.rc = token_file_read(path, r.token, sizeof r.token, &r.loose, r.err, sizeof r.err);
    return r;
}

static result_t read_text(const char *text)
{
    return read_bytes(text, strlen(text), 0600, NULL);
}

static void expect_token(const char *text, const char *want)
{
    result_t r = read_text(text);
    if (r.rc != 0)
        fail_msg("'%s': %d (%s)", text, r.rc, r.err);
    assert_string_equal(r.token, want);
}

static void test_token_line_forms(void **state)
{
    (void)state;
    expect_token("s3cret\n", "s3cret");
    expect_token("s3cret", "s3cret"); /* no newline at all */
    expect_token("s3cret\r\n", "s3cret");
    expect_token("  \ts3cret \t\r\n", "s3cret");
    expect_token("first\nsecond\n", "first");
    expect_token("first\r\nsecond\r\n", "first");
    expect_token("in ner\n", "in ner"); /* inner whitespace is kept */
    expect_token("tok\n\n\n", "tok");
}

static void test_empty_and_blank(void **state)
{
    (void)state;
    const char *bad[] = {"", "\n", "\r\n", "   \t  \n", " \n token-on-line-two\n", "\n\nx\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[PATH_MAX];
        result_t r = read_bytes(bad[i], strlen(bad[i]), 0600, path);
        if (r.rc != -EINVAL)
            fail_msg("case %zu: %d (%s), want -EINVAL", i, r.rc, r.err);
        if (!strstr(r.err, path))
            fail_msg("case %zu: message '%s' does not name %s", i, r.err, path);
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    char path[PATH_MAX], token[TOKEN_FILE_MAX + 1], err[PATH_MAX + 128] = "";
    bool loose = true;
    snprintf(path, sizeof path, "%s/no-such-token", dir);
    assert_int_equal(token_file_read(path, token, sizeof token, &loose, err, sizeof err),
                     -ENOENT);
    assert_non_null(strstr(err, path));
    /* a directory is no token file either */
    assert_true(token_file_read(dir, token, sizeof token, NULL, err, sizeof err) < 0);
    assert_non_null(strstr(err, dir));
}

static void test_too_long(void **state)
{
    (void)state;
    static char buf[4 * TOKEN_FILE_MAX];
    /* exactly TOKEN_FILE_MAX: accepted, with or without a line ending */
    memset(buf, 'a', TOKEN_FILE_MAX);
    buf[TOKEN_FILE_MAX] = '\n';
    result_t r = read_bytes(buf, TOKEN_FILE_MAX + 1, 0600, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(strlen(r.token), TOKEN_FILE_MAX);
    buf[TOKEN_FILE_MAX] = '\r';
    buf[TOKEN_FILE_MAX + 1] = '\n';
    r = read_bytes(buf, TOKEN_FILE_MAX + 2, 0600, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(strlen(r.token), TOKEN_FILE_MAX);
    r = read_bytes(buf, TOKEN_FILE_MAX, 0600, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(strlen(r.token), TOKEN_FILE_MAX);

    /* one more, and much more */
    char path[PATH_MAX];
    memset(buf, 'b', TOKEN_FILE_MAX + 1);
    buf[TOKEN_FILE_MAX + 1] = '\n';
    r = read_bytes(buf, TOKEN_FILE_MAX + 2, 0600, path);
    assert_int_equal(r.rc, -E2BIG);
    assert_non_null(strstr(r.err, path));
    r = read_bytes(buf, TOKEN_FILE_MAX + 1, 0600, NULL); /* no newline */
    assert_int_equal(r.rc, -E2BIG);
    memset(buf, 'c', sizeof buf);
    buf[sizeof buf - 1] = '\n';
    r = read_bytes(buf, sizeof buf, 0600, NULL);
    assert_int_equal(r.rc, -E2BIG);
    /* whitespace around a token of TOKEN_FILE_MAX - 2 bytes does not count */
    memset(buf, 'd', TOKEN_FILE_MAX);
    buf[0] = ' ';
    buf[TOKEN_FILE_MAX - 1] = ' ';
    buf[TOKEN_FILE_MAX] = '\n';
    r = read_bytes(buf, TOKEN_FILE_MAX + 1, 0600, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(strlen(r.token), TOKEN_FILE_MAX - 2);
}

static void test_loose_modes(void **state)
{
    (void)state;
    const struct {
        mode_t mode;
        bool loose;
    } cases[] = {{0600, false}, {0400, false}, {0644, true}, {0640, true},
                 {0604, true},  {0660, true},  {0700, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result_t r = read_bytes("tok\n", 4, cases[i].mode, NULL);
        assert_int_equal(r.rc, 0);
        assert_string_equal(r.token, "tok");
        if (r.loose != cases[i].loose)
            fail_msg("mode %o: loose %d, want %d", (unsigned)cases[i].mode, r.loose,
                     cases[i].loose);
    }
    /* loose may be NULL */
    char path[PATH_MAX], token[TOKEN_FILE_MAX + 1], err[256];
    write_token_file(path, "tok\n", 4, 0644);
    assert_int_equal(token_file_read(path, token, sizeof token, NULL, err, sizeof err), 0);
    assert_string_equal(token, "tok");
}

static void test_small_buffer(void **state)
{
    (void)state;
    char path[PATH_MAX], err[PATH_MAX + 128] = "";
    write_token_file(path, "abcdef\n", 7, 0600);
    char small[8];
    memset(small, 'Z', sizeof small);
    /* outlen 6 cannot hold "abcdef" and its NUL */
    assert_true(token_file_read(path, small, 6, NULL, err, sizeof err) < 0);
    assert_non_null(strstr(err, path));
    for (size_t i = 6; i < sizeof small; i++)
        assert_int_equal(small[i], 'Z'); /* nothing written past outlen */
    assert_true(token_file_read(path, small, 1, NULL, err, sizeof err) < 0);
    /* exactly enough */
    assert_int_equal(token_file_read(path, small, 7, NULL, err, sizeof err), 0);
    assert_string_equal(small, "abcdef");
    assert_int_equal(small[7], 'Z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_line_forms), cmocka_unit_test(test_empty_and_blank),
        cmocka_unit_test(test_missing_file),     cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_loose_modes),      cmocka_unit_test(test_small_buffer),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
