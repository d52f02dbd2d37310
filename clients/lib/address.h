/*
 * address.h: the daemon addresses clients accept, parsed and connected with a timeout.
 *
 * "tcp://HOST:PORT" (IPv4 literal, host name, or IPv6 literal in brackets) and
 * "unix:PATH". Private to libmpcclient (the tools and tests include it for parsing).
 */
#ifndef MPC_CLIENT_ADDRESS_H
#define MPC_CLIENT_ADDRESS_H

#include <stddef.h>
#include <sys/un.h>

typedef enum { MPC_ADDRESS_TCP, MPC_ADDRESS_UNIX } mpc_address_kind_t;

typedef struct {
    mpc_address_kind_t kind;
    char host[256];                                  /* TCP: without brackets */
    char port[6];                                    /* TCP: decimal 1..65535 */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* Unix: socket path */
} mpc_address_t;

/* Parses text (NULL or "" = MPC_CLIENT_DEFAULT_ADDRESS). Returns 0 or MPC_CLIENT_EINVAL
 * with a message naming the problem in err. */
int mpc_address_parse(const char *text, mpc_address_t *out, char *err, size_t errlen);

/* Connects a non-blocking, close-on-exec stream socket to the address, trying every
 * resolved address in turn until timeout_ms has passed. Returns the descriptor, or
 * MPC_CLIENT_ECONNECT / MPC_CLIENT_ETIMEDOUT with a message in err. */
int mpc_address_connect(const mpc_address_t *a, int timeout_ms, char *err, size_t errlen);

/* Writes the address back in its canonical text form. */
void mpc_address_format(const mpc_address_t *a, char *out, size_t outlen);

#endif
