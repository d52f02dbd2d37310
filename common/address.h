/*
 * address.h: the one parser of mpcd's socket addresses, for the daemon's listeners, its
 * status endpoint and the clients.
 *
 * The grammar (which forms a caller accepts is chosen with the ADDRESS_* flags):
 *   tcp://HOST:PORT         HOST: an IPv4 literal or a host name
 *   tcp://[IPV6]:PORT       an IPv6 literal in brackets, a zone allowed: [fe80::1%eth0]
 *   unix:PATH               a Unix socket path; unix://PATH is the same
 *   HOST:PORT, [IPV6]:PORT  the TCP forms without a scheme (ADDRESS_HOSTPORT)
 * PORT is decimal, 0..65535; 0 lets the kernel pick a free port when listening.
 *
 * Parsing never touches the network: a host that is an IP literal is converted into sa,
 * a host name is left to the caller to resolve (getaddrinfo). Plain C: no libuv here,
 * the clients link it too.
 */
#ifndef MPC_ADDRESS_H
#define MPC_ADDRESS_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef enum { ADDRESS_TCP, ADDRESS_UNIX } address_kind_t;

typedef struct address {
    address_kind_t kind;
    char host[256]; /* TCP: as written, without brackets */
    int port;       /* TCP: 0..65535 */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* Unix: the socket path */
    struct sockaddr_storage sa; /* Unix: always; TCP: when host is an IP literal */
    socklen_t salen;            /* bytes of sa in use; 0 when host is a name to resolve */
} address_t;

/* Flags of address_parse: the forms and values a caller accepts. */
enum {
    ADDRESS_URL = 1u << 0,          /* tcp://HOST:PORT, tcp://[IPV6]:PORT, unix:PATH */
    ADDRESS_HOSTPORT = 1u << 1,     /* HOST:PORT, [IPV6]:PORT (TCP without a scheme) */
    ADDRESS_NUMERIC = 1u << 2,      /* HOST must be an IP literal ("localhost": 127.0.0.1) */
    ADDRESS_NONZERO_PORT = 1u << 3, /* port 0 refused: the address is connected to */
};

/* The sets mpcd's callers use. */
#define ADDRESS_LISTEN  ADDRESS_URL                          /* mpcd --listen */
#define ADDRESS_CONNECT (ADDRESS_URL | ADDRESS_NONZERO_PORT) /* clients */
#define ADDRESS_STATUS  (ADDRESS_HOSTPORT | ADDRESS_NUMERIC) /* mpcd --status-listen */

/* Parses text into *out (zeroed first). Returns 0, or -EINVAL with a message in err that
 * quotes text, names the problem and lists the accepted forms, e.g.
 * "bad address 'tcp://h': missing ':PORT' (expected tcp://HOST:PORT, ...)". */
int address_parse(const char *text, unsigned flags, address_t *out, char *err, size_t errlen);

/* The address in its canonical text form: "tcp://HOST:PORT", "tcp://[IPV6]:PORT" or
 * "unix:PATH". */
void address_format(const address_t *a, char *out, size_t outlen);

/* An IPv4 or IPv6 socket address as "HOST:PORT" or "[HOST]:PORT", numerically (for logs
 * and for the port the kernel picked); "?" for any other family. */
void address_format_sockaddr(const struct sockaddr_storage *ss, char *out, size_t outlen);

#endif
