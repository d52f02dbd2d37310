/*
 * status_copy.h: StatusReply (protoc-c) to mpc_client_status_t (plain C, caller-owned).
 * Private to libmpcclient.
 */
#ifndef MPC_CLIENT_STATUS_COPY_H
#define MPC_CLIENT_STATUS_COPY_H

#include "mpc.pb-c.h"
#include "mpcclient.h"

/* Fills *out (zeroed first); returns 0 or MPC_CLIENT_ENOMEM with *out freed. */
int mpc_status_copy(const Mpc__V1__StatusReply *in, mpc_client_status_t *out);

#endif
