/*
 * log.h: mpcd's logging to stderr with syslog priority prefixes.
 *
 * Every line is written as "<N>message\n", the convention journald (and systemd's
 * StandardError=journal) understands: N is the syslog priority, so `journalctl -p warning`
 * filters mpcd's output without any syslog client. A line is formatted into a stack buffer
 * and written with one write(2), so lines from different threads never interleave. Embedded
 * newlines start a new line with the same prefix; over-long messages are truncated with "...".
 */
#ifndef MPCD_OPS_LOG_H
#define MPCD_OPS_LOG_H

#include <stdarg.h>

enum {
    MPCD_LOG_ERR = 3,
    MPCD_LOG_WARNING = 4,
    MPCD_LOG_NOTICE = 5,
    MPCD_LOG_INFO = 6,
    MPCD_LOG_DEBUG = 7,
};

/* Lines with a priority above max_priority are dropped (default MPCD_LOG_INFO). */
void mpcd_log_set_level(int max_priority);
int mpcd_log_get_level(void);

/* Parses "err", "warning", "notice", "info", "debug" (or the digits 3..7). Returns the
 * priority, or -EINVAL for anything else. */
int mpcd_log_parse_level(const char *name);

/* Thread-safe; one write(2) per call. */
void mpcd_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mpcd_vlog(int priority, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Redirects the output (default STDERR_FILENO); for tests. Returns the previous fd. */
int mpcd_log_set_fd(int fd);

#endif
