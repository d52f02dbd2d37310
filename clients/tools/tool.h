/*
 * tool.h: what the command-line clients (mpcctl, mpc-bench) share: exit codes, strict
 * number parsing for options, connecting with a clear message, reporting failed calls.
 */
#ifndef MPC_TOOL_H
#define MPC_TOOL_H

#include "mpcclient.h"

/* Exit statuses, the same for every tool (listed in each --help). */
enum {
    TOOL_EXIT_OK = 0,
    TOOL_EXIT_REFUSED = 1,     /* the daemon answered with an error or refused */
    TOOL_EXIT_USAGE = 2,       /* bad command line */
    TOOL_EXIT_UNREACHABLE = 3, /* cannot connect, timed out, connection lost */
};

/* Strict decimal parsing of an option value into [min, max]; prints
 * "PROG: --OPT: ..." and returns -1 on bad input. */
int tool_parse_long(const char *prog, const char *opt, const char *text, long min, long max,
                    long *out);
int tool_parse_double(const char *prog, const char *opt, const char *text, double min,
                      double max, double *out);

/* Creates a client and connects it; on failure prints "PROG: cannot reach mpcd at ADDR:
 * WHY" and returns the exit status (*out is NULL then). */
int tool_connect(const char *prog, const char *address, int timeout_ms, mpc_client_t **out);

/* Prints "PROG: WHAT: <client's message>" for a failed call and returns the exit status
 * that fits the error code. */
int tool_call_failed(const char *prog, const char *what, const mpc_client_t *c, int rc);

/* Monotonic time in seconds. */
double tool_now_s(void);

#endif
