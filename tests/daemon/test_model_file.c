/*
 * test_model_file.c: daemon/model_file.c: a client's Reload path is opened beneath
 * model-dir only (relative, absolute inside, absolute through model-dir's real path),
 * refused without a look-up when it leaves model-dir lexically ('..', another directory,
 * a sibling that shares model-dir's prefix), refused when a symlink is its last component
 * or leads out, and never blocks on a FIFO; an operator's path is opened as given.
 *
 * Every confined case runs twice: with openat2(RESOLVE_BENEATH), and again with openat2
 * made to fail with ENOSYS by a seccomp filter, so the component-by-component walk used
 * on older kernels answers the same. A temporary tree under /tmp holds the files:
 *
 *   T/models/              model-dir D
 *     m.safetensors        regular file
 *     sub/x.safetensors    regular file in a subdirectory
 *     link -> D/m.safetensors, out -> /etc/hostname, escape -> /etc   symlinks
 *     fifo                 a FIFO
 *   T/models2/m.safetensors   sibling sharing D's prefix
 *   T/outside.safetensors     outside D
 *   T/via -> T             so T/via/models names D through a symlink
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "model_file.h"

static char T[256];          /* the temporary tree */
static char D[256];          /* model-dir */
static char DVIA[256];       /* model-dir through the symlink T/via */
static char DREAL[PATH_MAX]; /* realpath(D) */
static const char *OUTSIDE_TARGET = "/etc/hostname";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* a + "/" + b into the array out (a macro, so the array's size comes along). */
static void path_join_n(char *out, size_t outlen, const char *a, const char *b)
{
    if (snprintf(out, outlen, "%s/%s", a, b) >= (int)outlen)
        fail_msg("path too long");
}
#define path_join(out, a, b) path_join_n(out, sizeof(out), a, b)

static int setup_tree(void **state)
{
    (void)state;
    char p[PATH_MAX], q[PATH_MAX];
    snprintf(T, sizeof T, "/tmp/mpcd-model-file-XXXXXX");
    if (!mkdtemp(T))
        return -1;
    path_join(D, T, "models");
    path_join(DVIA, T, "via/models");
    if (mkdir(D, 0755))
        return -1;
    path_join(p, D, "m.safetensors");
    write_file(p, "not really a model\n");
    path_join(p, D, "sub");
    if (mkdir(p, 0755))
        return -1;
    path_join(p, D, "sub/x.safetensors");
    write_file(p, "x\n");
    path_join(p, D, "link");
    path_join(q, D, "m.safetensors");
    if (symlink(q, p))
        return -1;
    if (access(OUTSIDE_TARGET, R_OK))
        OUTSIDE_TARGET = "/etc/passwd";
    path_join(p, D, "out");
    if (symlink(OUTSIDE_TARGET, p))
        return -1;
    path_join(p, D, "escape");
    if (symlink("/etc", p))
        return -1;
    path_join(p, D, "fifo");
    if (mkfifo(p, 0600))
        return -1;
    path_join(p, T, "models2");
    if (mkdir(p, 0755))
        return -1;
    path_join(p, T, "models2/m.safetensors");
    write_file(p, "sibling\n");
    path_join(p, T, "outside.safetensors");
    write_file(p, "outside\n");
    path_join(p, T, "via");
    if (symlink(T, p))
        return -1;
    if (!realpath(D, DREAL))
        return -1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown_tree(void **state)
{
    (void)state;
    if (T[0])
        nftw(T, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* --- helpers --- */

typedef struct {
    int rc;
    char display[PATH_MAX + 64];
    char err[PATH_MAX + 256];
} result_t;

static result_t open_it(const char *path, const char *dir)
{
    result_t r;
    memset(&r, 0, sizeof r);
    r.rc = model_file_open(path, dir, r.display, sizeof r.display, r.err, sizeof r.err);
    return r;
}

/* path opens beneath dir; the descriptor is a regular file and display is want_display. */
static void expect_open(const char *path, const char *dir, const char *want_display)
{
    result_t r = open_it(path, dir);
    if (r.rc < 0)
        fail_msg("'%s' in '%s': %d (%s)", path, dir ? dir : "(operator)", r.rc, r.err);
    struct stat st;
    assert_int_equal(fstat(r.rc, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    int fl = fcntl(r.rc, F_GETFD);
    assert_true(fl >= 0 && (fl & FD_CLOEXEC));
    assert_int_equal(close(r.rc), 0);
    if (want_display && strcmp(r.display, want_display))
        fail_msg("'%s': display '%s', want '%s'", path, r.display, want_display);
}

/* path is refused with -EPERM and a message containing want (and naming no errno text:
 * the lexical refusals must come before any look-up). */
static void expect_refused(const char *path, const char *dir, const char *want, bool lexical)
{
    result_t r = open_it(path, dir);
    if (r.rc >= 0) {
        close(r.rc);
        fail_msg("'%s' opened beneath '%s'", path, dir);
    }
    if (r.rc != -EPERM)
        fail_msg("'%s': %d (%s), want -EPERM", path, r.rc, r.err);
    if (!strstr(r.err, want))
        fail_msg("'%s': message '%s' lacks '%s'", path, r.err, want);
    if (!strstr(r.err, "refused"))
        fail_msg("'%s': message '%s' lacks 'refused'", path, r.err);
    if (lexical) {
        const char *errno_words[] = {"No such file", "Not a directory", "Permission denied",
                                     "Too many levels", "Invalid cross-device"};
        for (size_t i = 0; i < sizeof errno_words / sizeof errno_words[0]; i++)
            if (strstr(r.err, errno_words[i]))
                fail_msg("'%s': message '%s' comes from a look-up", path, r.err);
    }
}

static void expect_failed(const char *path, const char *dir)
{
    result_t r = open_it(path, dir);
    if (r.rc >= 0) {
        close(r.rc);
        fail_msg("'%s' opened beneath '%s'", path, dir);
    }
    if (!r.err[0])
        fail_msg("'%s': %d without a message", path, r.rc);
}

static void on_alarm(int sig)
{
    (void)sig;
}

/* In 5 s, interrupts a blocked open (EINTR: no SA_RESTART), so a regression fails the
 * test and the tree is still cleaned up, instead of hanging or killing the process. */
static void arm_alarm(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
    alarm(5);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --- the cases, run with openat2 and with the fallback walk --- */

static void inside_paths_open(void)
{
    char p[PATH_MAX], want[PATH_MAX], dslash[PATH_MAX];
    path_join(want, D, "m.safetensors");
    expect_open("m.safetensors", D, want);
    expect_open("./m.safetensors", D, NULL);
    {
        result_t r = open_it("./m.safetensors", D);
        assert_true(r.rc >= 0);
        close(r.rc);
        path_join(p, D, "./m.safetensors");
        assert_string_equal(r.display, p);
    }
    expect_open("sub/x.safetensors", D, NULL);
    path_join(p, D, "sub/x.safetensors");
    expect_open("sub/x.safetensors", D, p);
    expect_open("sub//x.safetensors", D, NULL);

    /* absolute, inside: made relative to D; display is D's form */
    path_join(p, D, "m.safetensors");
    expect_open(p, D, want);
    path_join(p, D, "sub/x.safetensors");
    expect_open(p, D, p);

    /* model-dir configured with a trailing slash: no doubled slash in display */
    snprintf(dslash, sizeof dslash, "%s/", D);
    expect_open("m.safetensors", dslash, want);
    path_join(p, D, "m.safetensors");
    expect_open(p, dslash, want);

    /* model-dir configured through a symlinked parent: its own form and its real path
     * are both accepted as the prefix */
    path_join(want, DVIA, "m.safetensors");
    expect_open("m.safetensors", DVIA, want);
    path_join(p, DVIA, "m.safetensors");
    expect_open(p, DVIA, want);
    path_join(p, DREAL, "m.safetensors");
    expect_open(p, DVIA, want);
}

static void outside_paths_refused(void)
{
    char p[PATH_MAX];
    expect_refused(OUTSIDE_TARGET, D, "outside model-dir", true);
    expect_refused("/etc/passwd", D, "outside model-dir", true);
    path_join(p, T, "outside.safetensors");
    expect_refused(p, D, "outside model-dir", true);
    /* a sibling directory whose name starts with D's */
    snprintf(p, sizeof p, "%s2/m.safetensors", D);
    expect_refused(p, D, "outside model-dir", true);
    /* D itself via symlink when D was configured by its real form */
    path_join(p, DVIA, "m.safetensors");
    expect_refused(p, DREAL, "outside model-dir", true);
    /* "//D/..." is not D's prefix either */
    snprintf(p, sizeof p, "/%s/m.safetensors", D);
    expect_refused(p, D, "outside model-dir", true);

    /* '..' anywhere, even when it would land back inside */
    expect_refused("../outside.safetensors", D, "'..'", true);
    expect_refused("sub/../m.safetensors", D, "'..'", true);
    expect_refused("..", D, "'..'", true);
    expect_refused("sub/..", D, "'..'", true);
    path_join(p, D, "../outside.safetensors");
    expect_refused(p, D, "'..'", true);
    path_join(p, D, "sub/../m.safetensors");
    expect_refused(p, D, "'..'", true);
    /* '..' refused before look-up: a name that does not exist says '..', not ENOENT */
    expect_refused("nonexistent/../../etc/passwd", D, "'..'", true);
    /* but names merely containing dots are looked up */
    result_t r = open_it("..m.safetensors", D);
    assert_int_equal(r.rc, -ENOENT);
}

static void symlinks_refused(void)
{
    char p[PATH_MAX];
    expect_refused("link", D, "symbolic link", false);
    expect_refused("out", D, "model-dir", false);
    expect_refused("escape/hostname", D, "model-dir", false);
    expect_refused("escape/passwd", D, "model-dir", false);
    path_join(p, D, "link");
    expect_refused(p, D, "symbolic link", false);
    path_join(p, D, "escape/passwd");
    expect_refused(p, D, "model-dir", false);
}

static void fifo_does_not_block(void)
{
    arm_alarm(); /* a regression that blocks fails here instead of hanging the run */
    double t0 = now_s();
    result_t r = open_it("fifo", D);
    double dt = now_s() - t0;
    alarm(0);
    if (r.rc < 0)
        fail_msg("fifo: %d (%s)", r.rc, r.err);
    assert_true(dt < 1.0);
    struct stat st;
    assert_int_equal(fstat(r.rc, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    int fl = fcntl(r.rc, F_GETFL);
    assert_true(fl >= 0 && (fl & O_NONBLOCK));
    assert_int_equal(close(r.rc), 0);
}

static void missing_and_empty(void)
{
    char p[PATH_MAX];
    result_t r = open_it("missing.safetensors", D);
    assert_int_equal(r.rc, -ENOENT);
    if (!strstr(r.err, "missing.safetensors"))
        fail_msg("message '%s' does not name the path", r.err);
    r = open_it("sub/missing.safetensors", D);
    assert_int_equal(r.rc, -ENOENT);
    assert_non_null(strstr(r.err, "sub/missing.safetensors"));
    r = open_it("nodir/x.safetensors", D);
    assert_int_equal(r.rc, -ENOENT);

    /* names no file */
    expect_failed("", D);
    expect_failed("/", D);
    expect_failed(D, D);
    snprintf(p, sizeof p, "%s/", D);
    expect_failed(p, D);
    snprintf(p, sizeof p, "%s//", D);
    expect_failed(p, D);
    snprintf(p, sizeof p, "/%s", D);
    expect_failed(p, D);

    /* model-dir itself missing */
    path_join(p, T, "no-such-dir");
    r = open_it("m.safetensors", p);
    assert_true(r.rc < 0);
    assert_non_null(strstr(r.err, "no-such-dir"));
}

static void all_confined_cases(void)
{
    inside_paths_open();
    outside_paths_refused();
    symlinks_refused();
    fifo_does_not_block();
    missing_and_empty();
}

/* --- tests --- */

static void test_confined_openat2(void **state)
{
    (void)state;
    all_confined_cases();
}

static void test_operator_path(void **state)
{
    (void)state;
    char p[PATH_MAX];
    /* opened as given, wherever it is; display is the path as given */
    expect_open(OUTSIDE_TARGET, NULL, OUTSIDE_TARGET);
    path_join(p, T, "outside.safetensors");
    expect_open(p, NULL, p);
    path_join(p, D, "sub/../m.safetensors");
    expect_open(p, NULL, p);

    path_join(p, T, "missing.safetensors");
    result_t r = open_it(p, NULL);
    assert_int_equal(r.rc, -ENOENT);
    assert_non_null(strstr(r.err, p));

    /* a FIFO does not block the operator's open either */
    arm_alarm();
    path_join(p, D, "fifo");
    double t0 = now_s();
    r = open_it(p, NULL);
    double dt = now_s() - t0;
    alarm(0);
    assert_true(r.rc >= 0);
    assert_true(dt < 1.0);
    close(r.rc);
}

/* Makes openat2 fail with ENOSYS in this process from now on (the last test). */
static bool block_openat2(void)
{
#if defined(__x86_64__)
    const unsigned arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const unsigned arch = AUDIT_ARCH_AARCH64;
#else
    const unsigned arch = 0;
#endif
#ifndef SYS_openat2
    return false;
#else
    if (!arch)
        return false;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return false;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
#endif
}

static void test_confined_fallback_walk(void **state)
{
    (void)state;
    if (!block_openat2()) {
        skip();
        return;
    }
#ifdef SYS_openat2
    /* the filter works: openat2 now answers ENOSYS */
    errno = 0;
    assert_int_equal(syscall(SYS_openat2, AT_FDCWD, ".", NULL, 0), -1);
    assert_int_equal(errno, ENOSYS);
#endif
    all_confined_cases();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_confined_openat2),
        cmocka_unit_test(test_operator_path),
        /* last: it filters openat2 for the rest of the process */
        cmocka_unit_test(test_confined_fallback_walk),
    };
    return cmocka_run_group_tests(tests, setup_tree, teardown_tree);
}
