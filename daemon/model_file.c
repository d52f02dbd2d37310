/*
 * model_file.c: opening a model file for a load, confined beneath model-dir for clients'
 * paths (see model_file.h).
 */
#include "model_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errbuf.h"

#define FILE_FLAGS (O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)

/* What an open failure means, in words that name no contents. */
static int fail_errno(int e, const char *shown, char *err, size_t errlen)
{
    switch (e) {
    case ELOOP:
        errbuf_set(err, errlen,
                   "%s: is a symbolic link or leads through one out of model-dir; refused",
                   shown);
        return -EPERM;
    case EXDEV:
        errbuf_set(err, errlen, "%s: resolves outside model-dir; refused", shown);
        return -EPERM;
    default:
        errbuf_set(err, errlen, "%s: %s", shown, strerror(e));
        return -e;
    }
}

/* path without its model-dir prefix, when it has one; NULL otherwise. */
static const char *strip_dir(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (strncmp(path, dir, n))
        return NULL;
    if (n == 1 && dir[0] == '/')
        return path + 1;
    if (path[n] != '/')
        return NULL;
    return path + n + 1;
}

/* Lexical checks of a client's path; the relative part goes to rel. */
static int confine(const char *path, const char *dir, char *rel, size_t rellen, char *err,
                   size_t errlen)
{
    const char *r = path;
    if (path[0] == '/') {
        char real[PATH_MAX];
        r = strip_dir(path, dir);
        if (!r && realpath(dir, real))
            r = strip_dir(path, real);
        if (!r) {
            errbuf_set(err, errlen, "%s: outside model-dir %s; refused", path, dir);
            return -EPERM;
        }
    }
    while (*r == '/')
        r++;
    if (!*r) {
        errbuf_set(err, errlen, "%s: names no file in model-dir %s", path, dir);
        return -EINVAL;
    }
    for (const char *c = r; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            errbuf_set(err, errlen, "%s: '..' may not appear in a Reload path; refused", path);
            return -EPERM;
        }
        c += n;
        while (*c == '/')
            c++;
    }
    if (snprintf(rel, rellen, "%s", r) >= (int)rellen) {
        errbuf_set(err, errlen, "path too long");
        return -ENAMETOOLONG;
    }
    return 0;
}

/* Kernels before 5.6 (or seccomp filters) lack openat2: walk the components, each opened
 * with O_NOFOLLOW, so no symlink is followed at all. */
static int walk_beneath(int dirfd, char *rel)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return -errno;
    char *save = NULL;
    char *part = strtok_r(rel, "/", &save);
    while (part) {
        char *next = strtok_r(NULL, "/", &save);
        int flags = next ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC : FILE_FLAGS;
        int nfd = strcmp(part, ".") ? openat(fd, part, flags) : dup(fd);
        int e = errno;
        close(fd);
        if (nfd < 0)
            return -(e == ENOTDIR && next ? ELOOP : e);
        fd = nfd;
        part = next;
    }
    return fd;
}

static int open_beneath(int dirfd, char *rel)
{
    struct open_how how = {.flags = FILE_FLAGS,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
    if (fd >= 0)
        return (int)fd;
    if (errno == ENOSYS || errno == EPERM)
        return walk_beneath(dirfd, rel);
    return -errno;
}

int model_file_open(const char *path, const char *confine_dir, char *display, size_t displaylen,
                    char *err, size_t errlen)
{
    if (!confine_dir) {
        snprintf(display, displaylen, "%s", path);
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        return fd >= 0 ? fd : fail_errno(errno, path, err, errlen);
    }
    char rel[PATH_MAX];
    int rc = confine(path, confine_dir, rel, sizeof rel, err, errlen);
    if (rc)
        return rc;
    snprintf(display, displaylen, "%s%s%s", confine_dir,
             confine_dir[strlen(confine_dir) - 1] == '/' ? "" : "/", rel);
    int dirfd = open(confine_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        int e = errno;
        errbuf_set(err, errlen, "model-dir %s: %s", confine_dir, strerror(e));
        return -e;
    }
    int fd = open_beneath(dirfd, rel);
    close(dirfd);
    return fd >= 0 ? fd : fail_errno(-fd, path, err, errlen);
}
