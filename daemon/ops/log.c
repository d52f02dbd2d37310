/*
 * log.c: "<N>message\n" lines on stderr, one write(2) each (see log.h).
 *
 * The level and fd are atomics so any thread may log while another changes them; a line
 * is built in a stack buffer, never allocated, so logging is safe on the control path.
 */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <limits.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static atomic_int log_level = MPCD_LOG_INFO;
static atomic_int log_fd = STDERR_FILENO;

void mpcd_log_set_level(int max_priority)
{
    if (max_priority < 0)
        max_priority = 0;
    if (max_priority > MPCD_LOG_DEBUG)
        max_priority = MPCD_LOG_DEBUG;
    atomic_store(&log_level, max_priority);
}

int mpcd_log_get_level(void)
{
    return atomic_load(&log_level);
}

int mpcd_log_set_fd(int fd)
{
    return atomic_exchange(&log_fd, fd);
}

int mpcd_log_parse_level(const char *name)
{
    static const struct {
        const char *name;
        int prio;
    } names[] = {
        {"err", MPCD_LOG_ERR},      {"error", MPCD_LOG_ERR},     {"warning", MPCD_LOG_WARNING},
        {"warn", MPCD_LOG_WARNING}, {"notice", MPCD_LOG_NOTICE}, {"info", MPCD_LOG_INFO},
        {"debug", MPCD_LOG_DEBUG},
    };
    if (name == NULL)
        return -EINVAL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i].name) == 0)
            return names[i].prio;
    if (name[0] >= '3' && name[0] <= '7' && name[1] == '\0')
        return name[0] - '0';
    return -EINVAL;
}

/* Appends the "<N>" prefix; returns its length (always 3: priorities are one digit). */
static size_t put_prefix(char *p, int priority)
{
    p[0] = '<';
    p[1] = (char)('0' + priority);
    p[2] = '>';
    return 3;
}

void mpcd_vlog(int priority, const char *fmt, va_list ap)
{
    if (priority < 0 || priority > MPCD_LOG_DEBUG)
        priority = MPCD_LOG_ERR;
    if (priority > atomic_load(&log_level))
        return;

    char msg[LOG_LINE_MAX];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        return;
    bool truncated = (size_t)n >= sizeof msg;
    size_t len = truncated ? sizeof msg - 1 : (size_t)n;
    while (len > 0 && msg[len - 1] == '\n')
        len--;

    /* Every embedded line gets its own prefix, so journald keeps the priority on each.
     * The whole record fits PIPE_BUF, so even a pipe takes it in one piece. */
    char line[PIPE_BUF];
    size_t cap = sizeof line - 4; /* room for "...\n" */
    size_t o = put_prefix(line, priority);
    size_t i = 0;
    for (; i < len && o < cap; i++) {
        if (msg[i] == '\n') {
            if (o + 4 > cap)
                break;
            line[o++] = '\n';
            o += put_prefix(line + o, priority);
        } else {
            line[o++] = msg[i];
        }
    }
    if (truncated || i < len) {
        memcpy(line + o, "...", 3);
        o += 3;
    }
    line[o++] = '\n';

    int fd = atomic_load(&log_fd);
    const char *p = line;
    while (o > 0) {
        ssize_t w = write(fd, p, o);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report a failing stderr */
        p += w;
        o -= (size_t)w;
    }
}

void mpcd_log(int priority, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mpcd_vlog(priority, fmt, ap);
    va_end(ap);
}
