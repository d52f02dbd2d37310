/*
 * guard.c: constant-time token comparison and the per-peer table (connection counts,
 * failed-Hello backoff); see guard.h.
 */
#include "guard.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 509

struct guard_peer {
    guard_peer_t *next; /* bucket chain */
    char key[64];
    int conns;
    int fails;        /* consecutive failed Hellos */
    double last_fail; /* when the last one happened */
    double wait_until;
};

struct guard {
    guard_peer_t *buckets[NBUCKETS];
    int count;
};

bool guard_token_eq(const char *given, const char *secret)
{
    const unsigned char *g = (const unsigned char *)(given ? given : "");
    const unsigned char *s = (const unsigned char *)secret;
    size_t gn = strlen((const char *)g), sn = strlen((const char *)s);
    /* Walk the whole secret whatever the input; read the input only within its length. */
    unsigned diff = gn != sn;
    for (size_t i = 0; i < sn; i++)
        diff |= (unsigned)(s[i] ^ (i < gn ? g[i] : 0u));
    return diff == 0;
}

int guard_create(guard_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void guard_destroy(guard_t *g)
{
    if (!g)
        return;
    for (int b = 0; b < NBUCKETS; b++) {
        for (guard_peer_t *p = g->buckets[b], *next; p; p = next) {
            next = p->next;
            free(p);
        }
    }
    free(g);
}

static unsigned hash(const char *key)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % NBUCKETS;
}

/* Nothing to remember: no connection, no penalty running, failures forgotten. */
static bool forgettable(const guard_peer_t *p, double now)
{
    return p->conns == 0 && now >= p->wait_until &&
           (p->fails == 0 || now - p->last_fail >= GUARD_FAILURE_MEMORY_S);
}

/* Drops forgettable records; when still over the cap, every record without connections
 * (a flood of addresses must not grow the table without bound). */
static void sweep(guard_t *g, double now, bool hard)
{
    for (int b = 0; b < NBUCKETS; b++) {
        guard_peer_t **pp = &g->buckets[b];
        while (*pp) {
            guard_peer_t *p = *pp;
            if (forgettable(p, now) || (hard && p->conns == 0)) {
                *pp = p->next;
                free(p);
                g->count--;
            } else {
                pp = &p->next;
            }
        }
    }
}

guard_peer_t *guard_peer(guard_t *g, const char *key, double now_s)
{
    /* Look up the key as it is stored (cut to the record's size), so a long key hashes
     * to the bucket it was put in. */
    char k[sizeof((guard_peer_t *)0)->key];
    snprintf(k, sizeof k, "%s", key);
    key = k;
    unsigned b = hash(key);
    for (guard_peer_t *p = g->buckets[b]; p; p = p->next)
        if (!strcmp(p->key, key))
            return p;
    if (g->count >= GUARD_MAX_PEERS) {
        sweep(g, now_s, false);
        if (g->count >= GUARD_MAX_PEERS)
            sweep(g, now_s, true);
    }
    guard_peer_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->key, sizeof p->key, "%s", key);
    b = hash(p->key);
    p->next = g->buckets[b];
    g->buckets[b] = p;
    g->count++;
    return p;
}

void guard_hold(guard_peer_t *p)
{
    p->conns++;
}

void guard_release(guard_t *g, guard_peer_t *p, double now_s)
{
    if (p->conns > 0)
        p->conns--;
    if (!forgettable(p, now_s))
        return;
    for (guard_peer_t **pp = &g->buckets[hash(p->key)]; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            free(p);
            g->count--;
            return;
        }
    }
}

int guard_connections(const guard_peer_t *p)
{
    return p->conns;
}

double guard_auth_wait_s(const guard_peer_t *p, double now_s)
{
    return p->wait_until > now_s ? p->wait_until - now_s : 0;
}

double guard_auth_failed(guard_peer_t *p, double now_s)
{
    if (p->fails && now_s - p->last_fail >= GUARD_FAILURE_MEMORY_S)
        p->fails = 0;
    p->fails++;
    p->last_fail = now_s;
    double wait = GUARD_BACKOFF_BASE_S * ldexp(1.0, p->fails < 30 ? p->fails - 1 : 29);
    if (wait > GUARD_BACKOFF_MAX_S)
        wait = GUARD_BACKOFF_MAX_S;
    p->wait_until = now_s + wait;
    return wait;
}

void guard_auth_ok(guard_peer_t *p)
{
    p->fails = 0;
    p->wait_until = 0;
}

int guard_peer_count(const guard_t *g)
{
    return g->count;
}
