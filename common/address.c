/*
 * address.c: parse and format mpcd's socket addresses (address.h).
 *
 * IP literals are read with inet_pton (strict: dotted quads only, no "127.1") and an IPv6
 * zone with if_nametoindex, so nothing here resolves names or blocks.
 */
#include "address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

static const char *expected(unsigned flags)
{
    if ((flags & ADDRESS_URL) && (flags & ADDRESS_HOSTPORT))
        return "tcp://HOST:PORT, tcp://[IPV6]:PORT, unix:PATH, HOST:PORT or [IPV6]:PORT";
    if (flags & ADDRESS_URL)
        return "tcp://HOST:PORT, tcp://[IPV6]:PORT or unix:PATH";
    return "HOST:PORT or [IPV6]:PORT";
}

/* Fills err about text; returns -EINVAL. */
static int bad(const char *text, unsigned flags, const char *why, char *err, size_t errlen)
{
    errbuf_set(err, errlen, "bad address '%s': %s (expected %s)", text, why, expected(flags));
    return -EINVAL;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* An IPv4 literal into sa; the size used, or 0 when host is no dotted quad. */
static socklen_t ip4_literal(const char *host, int port, struct sockaddr_storage *sa)
{
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
        return 0;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    return sizeof *in;
}

/* An IPv6 literal, with an optional "%zone" (interface name or index), into sa; the size
 * used, or 0 when host is none. */
static socklen_t ip6_literal(const char *host, int port, struct sockaddr_storage *sa)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
    char addr[INET6_ADDRSTRLEN];
    const char *zone = strchr(host, '%');
    size_t n = zone ? (size_t)(zone - host) : strlen(host);
    if (n >= sizeof addr)
        return 0;
    memcpy(addr, host, n);
    addr[n] = '\0';
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) != 1)
        return 0;
    if (zone) {
        char *end;
        unsigned long id = strtoul(zone + 1, &end, 10);
        if (zone[1] == '\0' || *end != '\0')
            id = if_nametoindex(zone + 1);
        if (id == 0 || id > UINT32_MAX)
            return 0;
        in6->sin6_scope_id = (uint32_t)id;
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    return sizeof *in6;
}

/* PORT: decimal digits only (no sign, no spaces), min..65535. -1 when it is not. */
static int parse_port(const char *s, int min)
{
    long v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > 65535)
            return -1;
    }
    return v < min ? -1 : (int)v;
}

static int parse_unix(const char *text, unsigned flags, address_t *out, char *err,
                      size_t errlen)
{
    const char *path = text + strlen("unix:");
    if (starts(path, "//"))
        path += 2; /* the URL-ish spelling unix:///run/mpcd.sock */
    size_t n = strlen(path);
    if (n == 0)
        return bad(text, flags, "empty socket path", err, errlen);
    if (n >= sizeof out->path) {
        char why[64];
        snprintf(why, sizeof why, "socket path too long (over %zu bytes)",
                 sizeof out->path - 1);
        return bad(text, flags, why, err, errlen);
    }
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->sa;
    out->kind = ADDRESS_UNIX;
    memcpy(out->path, path, n + 1);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    out->salen = sizeof *sun;
    return 0;
}

/* hostport: text past any "tcp://". */
static int parse_tcp(const char *text, const char *hostport, unsigned flags, address_t *out,
                     char *err, size_t errlen)
{
    const char *host = hostport, *host_end, *colon;
    bool bracketed = host[0] == '[';
    if (bracketed) {
        host_end = strchr(host, ']');
        if (host_end == NULL)
            return bad(text, flags, "missing ']' after the IPv6 address", err, errlen);
        host++;
        colon = host_end + 1;
        if (*colon != ':')
            return bad(text, flags, "missing ':PORT' after ']'", err, errlen);
    } else {
        colon = strrchr(host, ':');
        if (colon == NULL)
            return bad(text, flags, "missing ':PORT'", err, errlen);
        host_end = colon;
        if (memchr(host, ':', (size_t)(host_end - host)) != NULL)
            return bad(text, flags, "IPv6 addresses need brackets", err, errlen);
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0)
        return bad(text, flags, "empty host", err, errlen);
    if (host_len >= sizeof out->host)
        return bad(text, flags, "host name too long", err, errlen);
    int min_port = (flags & ADDRESS_NONZERO_PORT) ? 1 : 0;
    int port = parse_port(colon + 1, min_port);
    if (port < 0) {
        char why[64];
        snprintf(why, sizeof why, "port must be a number from %d to 65535", min_port);
        return bad(text, flags, why, err, errlen);
    }
    out->kind = ADDRESS_TCP;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = port;

    const char *literal = out->host;
    if ((flags & ADDRESS_NUMERIC) && !bracketed && strcmp(literal, "localhost") == 0)
        literal = "127.0.0.1";
    out->salen =
        bracketed ? ip6_literal(literal, port, &out->sa) : ip4_literal(literal, port, &out->sa);
    if (out->salen == 0 && (flags & ADDRESS_NUMERIC)) {
        char why[sizeof out->host + 40];
        snprintf(why, sizeof why, "'%s' is not an %s address", out->host,
                 bracketed ? "IPv6" : "IPv4");
        return bad(text, flags, why, err, errlen);
    }
    return 0;
}

int address_parse(const char *text, unsigned flags, address_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (text == NULL || text[0] == '\0')
        return bad("", flags, "empty address", err, errlen);
    bool url = flags & ADDRESS_URL;
    bool unix_scheme = starts(text, "unix:"), tcp_scheme = starts(text, "tcp://");
    if (url && unix_scheme)
        return parse_unix(text, flags, out, err, errlen);
    if (url && tcp_scheme)
        return parse_tcp(text, text + strlen("tcp://"), flags, out, err, errlen);
    if ((flags & ADDRESS_HOSTPORT) && !unix_scheme && strstr(text, "://") == NULL)
        return parse_tcp(text, text, flags, out, err, errlen);
    return bad(text, flags, url ? "unknown scheme" : "no scheme is accepted here", err, errlen);
}

void address_format(const address_t *a, char *out, size_t outlen)
{
    if (a->kind == ADDRESS_UNIX)
        snprintf(out, outlen, "unix:%s", a->path);
    else if (strchr(a->host, ':') != NULL)
        snprintf(out, outlen, "tcp://[%s]:%d", a->host, a->port);
    else
        snprintf(out, outlen, "tcp://%s:%d", a->host, a->port);
}

void address_format_sockaddr(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%d", host, ntohs(in6->sin6_port));
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%d", host, ntohs(in->sin_port));
    } else {
        snprintf(out, outlen, "?");
    }
}
