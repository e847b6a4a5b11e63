/*
 * peers.c - who may connect: the TCP and Unix-socket pools, the per-peer
 * limit, and eviction when a pool is full.
 *
 * TCP and Unix-socket connections are two pools with their own caps
 * (max_connections, max_unix_connections), so a flood over TCP never locks
 * out an operator on the Unix socket. A TCP peer (one IP address) may hold
 * at most max_connections_per_peer connections.
 *
 * When a new connection would exceed a cap, the connection that has done
 * least for its client makes room: first the idle one (no request in
 * progress, nothing to send) whose last request ended longest ago, else the
 * one that has been receiving a request longest, else one whose answers wait
 * for a client that does not read them. A peer at its own cap can only
 * displace its own connections. Connections with a request being handled are
 * never evicted; when every one is such, the newcomer is refused.
 * PINGs and other control frames do not count as activity, so held-open
 * connections are exactly the ones that go first.
 */
#include "transport/internal.h"

#include <string.h>

static size_t hash_addr(const uint8_t a[16])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static peer_count **bucket(transport *t, const uint8_t addr[16])
{
    if (!t->peers) {
        size_t n = 64;
        while (n < 2 * (size_t)t->lim.max_connections && n < 65536)
            n *= 2;
        t->peers = xcalloc(n, sizeof(*t->peers));
        t->peer_buckets = n;
    }
    return &t->peers[hash_addr(addr) & (t->peer_buckets - 1)];
}

static peer_count *peer_get(transport *t, const uint8_t addr[16])
{
    peer_count **b = bucket(t, addr);
    for (peer_count *p = *b; p; p = p->next)
        if (memcmp(p->addr, addr, 16) == 0)
            return p;
    peer_count *p = xcalloc(1, sizeof(*p));
    memcpy(p->addr, addr, 16);
    p->next = *b;
    *b = p;
    return p;
}

static void peer_put(transport *t, peer_count *p)
{
    if (p->count > 0)
        return;
    for (peer_count **b = bucket(t, p->addr); *b; b = &(*b)->next) {
        if (*b == p) {
            *b = p->next;
            free(p);
            return;
        }
    }
}

/* Who goes first: 1 idle, 2 only receiving requests, 3 only waiting for the
 * client to read its answers; 0 the daemon is working for it (a handler
 * runs) or it is already going - never evicted. */
static int evict_class(const conn *c)
{
    if (c->closing || (c->draining && !c->lingering))
        return 0;
    if (c->lingering || conn_is_idle(c))
        return 1;
    if (c->n_inflight)
        return 0;
    bool answered = c->out.len || c->writing;
    for (const treq *r = c->reqs; r && !answered; r = r->next)
        answered = r->dispatched;
    return answered ? 3 : 2;
}

/* The oldest request start, or last progress, that ranks a candidate. */
static uint64_t evict_age(const conn *c, int cls)
{
    return cls == 2 && c->reqs ? c->reqs->start_ms : c->last_progress;
}

/* Close the best candidate in newcomer's pool (of `peer`, if given). */
static bool evict_one(transport *t, const conn *newcomer, const peer_count *peer)
{
    conn *best = NULL;
    int best_cls = 3;
    uint64_t best_age = UINT64_MAX;
    for (conn *c = t->conns; c; c = c->next) {
        if (c == newcomer || c->is_unix != newcomer->is_unix || (peer && c->peer_entry != peer))
            continue;
        int cls = evict_class(c);
        if (!cls)
            continue;
        /* Ties (same loop ms) go to the older connection: the list is
         * newest first. */
        uint64_t age = evict_age(c, cls);
        if (cls < best_cls || (cls == best_cls && age <= best_age)) {
            best = c;
            best_cls = cls;
            best_age = age;
        }
    }
    if (!best)
        return false;
    conn_evict(best);
    t->evicted++;
    return true;
}

bool peers_admit(transport *t, conn *c)
{
    const transport_limits *l = &t->lim;
    /* The counts include the newcomer (so an eviction never frees its
     * peer's entry); a refused newcomer is closed and forgotten. */
    if (!c->is_unix) {
        peer_count *p = peer_get(t, c->peer_addr);
        p->count++;
        c->peer_entry = p;
        if (p->count > l->max_connections_per_peer && !evict_one(t, c, p))
            return false;
    }
    size_t n = c->is_unix ? t->n_unix : t->n_tcp;
    size_t max = c->is_unix ? l->max_unix_connections : l->max_connections;
    if (n > max && !evict_one(t, c, NULL))
        return false;
    return true;
}

void peers_forget(transport *t, conn *c)
{
    peer_count *p = c->peer_entry;
    if (!p)
        return;
    c->peer_entry = NULL;
    p->count--;
    peer_put(t, p);
}

void peers_free(transport *t)
{
    for (size_t i = 0; i < t->peer_buckets; i++) {
        while (t->peers[i]) {
            peer_count *p = t->peers[i];
            t->peers[i] = p->next;
            free(p);
        }
    }
    free(t->peers);
    t->peers = NULL;
    t->peer_buckets = 0;
}
