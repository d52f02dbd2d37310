/*
 * notify.h: the systemd service notification protocol (sd_notify) without a hard
 * dependency on libsystemd.
 *
 * A datagram with "KEY=VALUE" lines goes to the AF_UNIX socket named by $NOTIFY_SOCKET
 * (a path, or "@name" for the abstract namespace). Without $NOTIFY_SOCKET every call is a
 * no-op, so the daemon behaves the same outside systemd.
 */
#ifndef MPCD_OPS_NOTIFY_H
#define MPCD_OPS_NOTIFY_H

#include <stdint.h>

/* Sends state, e.g. "READY=1", "RELOADING=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...";
 * several assignments may be joined with '\n'. Failures are logged once, never fatal. */
void mpcd_notify(const char *state);

/* printf-style convenience: mpcd_notifyf("STATUS=serving model v%llu", v). */
void mpcd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Same as mpcd_notify but returns 0, 1 when $NOTIFY_SOCKET is unset (nothing sent), or a
 * negative errno; for callers and tests that care. */
int mpcd_notify_send(const char *state);

/* The watchdog interval systemd asked for ($WATCHDOG_USEC, honouring $WATCHDOG_PID), or 0
 * when none. Send "WATCHDOG=1" at least every half of it. */
uint64_t mpcd_notify_watchdog_usec(void);

#endif
