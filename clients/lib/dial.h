/*
 * dial.h: connecting to a daemon address (common/address.h, parsed with ADDRESS_CONNECT)
 * within a timeout. Private to libmpcclient (its tests include it).
 */
#ifndef MPC_CLIENT_DIAL_H
#define MPC_CLIENT_DIAL_H

#include <stddef.h>

#include "address.h"

/* Connects a non-blocking, close-on-exec stream socket to a, trying every resolved address
 * of a host name in turn until timeout_ms has passed. Returns the descriptor, or
 * MPC_CLIENT_ECONNECT / MPC_CLIENT_ETIMEDOUT with a message in err that names the
 * address. */
int mpc_dial(const address_t *a, int timeout_ms, char *err, size_t errlen);

#endif
