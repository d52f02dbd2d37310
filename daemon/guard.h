/*
 * guard.h: who may do what, and how much of the daemon one peer may hold.
 *
 * - Roles: a connection starts with no role; a Hello whose token matches `auth-token`
 *   gives it the control role, one matching `admin-token` the admin role (which includes
 *   control). Tokens are compared in constant time (guard_token_eq).
 * - Peers: a peer is a client address without its port ("127.0.0.1", "::1") or, for Unix
 *   sockets, the peer's uid ("uid:1000"). Each peer has a count of open connections (for
 *   `max-connections-per-peer`) and a failed-Hello record: after k failures in a row its
 *   next attempt is not even checked before 50 ms * 2^(k-1) (at most 10 s) have passed,
 *   so guessing a token from one peer runs at a few tries per minute, whatever the number
 *   of connections it opens. A success clears the record; so does a minute without
 *   failures.
 *
 * Loop thread only; nothing here blocks. Peers with no connection and no penalty are
 * forgotten, and the table is capped at GUARD_MAX_PEERS: when it is full of idle records
 * with penalties, all records without connections are dropped (a flood of addresses can
 * clear idle penalties, never a connected peer's record). Keys longer than 63 bytes are
 * cut.
 */
#ifndef MPCD_GUARD_H
#define MPCD_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { GUARD_ROLE_NONE = 0, GUARD_ROLE_CONTROL = 1, GUARD_ROLE_ADMIN = 2 } guard_role_t;

/* First failure's wait, its cap, and the quiet time after which failures are forgotten. */
#define GUARD_BACKOFF_BASE_S   0.05
#define GUARD_BACKOFF_MAX_S    10.0
#define GUARD_FAILURE_MEMORY_S 60.0
/* Peer records kept at most (records with open connections are never dropped). */
#define GUARD_MAX_PEERS 4096

/* True when given equals secret. Runs in time that depends only on the lengths, never on
 * where the first difference is. NULL given counts as "". */
bool guard_token_eq(const char *given, const char *secret);

typedef struct guard_peer guard_peer_t;
typedef struct guard guard_t;

int guard_create(guard_t **out);
void guard_destroy(guard_t *g); /* accepts NULL */

/* The record of key, created when missing (NULL only when out of memory). Valid until the
 * peer's last connection is released and its penalty expired (guard_release). */
guard_peer_t *guard_peer(guard_t *g, const char *key, double now_s);

/* A connection of p opened / closed. */
void guard_hold(guard_peer_t *p);
void guard_release(guard_t *g, guard_peer_t *p, double now_s);
int guard_connections(const guard_peer_t *p);

/* Seconds p must still wait before its next Hello is checked (0: check it now). */
double guard_auth_wait_s(const guard_peer_t *p, double now_s);
/* Records a failed Hello; returns the wait now imposed on the next one. */
double guard_auth_failed(guard_peer_t *p, double now_s);
void guard_auth_ok(guard_peer_t *p);

/* Number of peer records (tests). */
int guard_peer_count(const guard_t *g);

#endif
