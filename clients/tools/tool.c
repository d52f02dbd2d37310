/*
 * tool.c: shared helpers of the command-line clients (see tool.h).
 */
#include "tool.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int tool_parse_long(const char *prog, const char *opt, const char *text, long min, long max,
                    long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "%s: %s: expected an integer from %ld to %ld, got '%s'\n", prog, opt,
                min, max, text);
        return -1;
    }
    *out = v;
    return 0;
}

int tool_parse_double(const char *prog, const char *opt, const char *text, double min,
                      double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "%s: %s: expected a number from %g to %g, got '%s'\n", prog, opt, min,
                max, text);
        return -1;
    }
    *out = v;
    return 0;
}

int tool_connect(const char *prog, const char *address, int timeout_ms, mpc_client_t **out)
{
    mpc_client_t *c;
    *out = NULL;
    if (mpc_client_create(&c) < 0) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return TOOL_EXIT_UNREACHABLE;
    }
    int rc = mpc_client_set_timeout(c, timeout_ms);
    if (rc == 0)
        rc = mpc_client_connect(c, address, timeout_ms);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot reach mpcd: %s\n", prog, mpc_client_errmsg(c));
        mpc_client_destroy(c);
        return rc == MPC_CLIENT_EINVAL ? TOOL_EXIT_USAGE : TOOL_EXIT_UNREACHABLE;
    }
    *out = c;
    return TOOL_EXIT_OK;
}

int tool_call_failed(const char *prog, const char *what, const mpc_client_t *c, int rc)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, mpc_client_errmsg(c));
    switch (rc) {
    case MPC_CLIENT_EDAEMON:
    case MPC_CLIENT_ERELOAD:
        return TOOL_EXIT_REFUSED;
    case MPC_CLIENT_EINVAL:
        return TOOL_EXIT_USAGE;
    default:
        return TOOL_EXIT_UNREACHABLE;
    }
}

double tool_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
