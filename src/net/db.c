/*
 * db.c - the allocation database, <state_dir>/net.db: which VM holds which
 * TAP name, MAC, address and forwarded host port.
 *
 * Why a database file of its own and not a table in the VM store (chcp.db):
 * an allocation is a read-modify-write decision (find a free slot, take it)
 * that must be atomic and durable before the address is used, while the VM
 * store is an asynchronous, write-only queue of whole VM rows. Keeping the
 * file separate keeps both schemas and their migrations independent; the VM
 * store stays the truth about which VMs exist, and net_reconcile removes the
 * rows of VMs it does not know. The durability rules are the store's: WAL,
 * synchronous=NORMAL (a committed allocation survives any crash of the
 * daemon; a power loss can lose the last ones together with the VMs that used
 * them), file mode 0600.
 *
 * Uniqueness is enforced by the schema itself (primary keys on pool+slot and
 * proto+port, unique TAP names and MACs), so even a bug here cannot hand one
 * address to two VMs. Every function takes the connection's mutex: callers
 * run on libuv's thread pool.
 */
#include "net/net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define NET_DB_SCHEMA_VERSION 1
#define NAME_ATTEMPTS 64

struct net_db {
    sqlite3 *db;
    char *path;
    pthread_mutex_t mu;
};

static const char *const schema_v1[] = {
    "CREATE TABLE nics ("
    " vm_id TEXT NOT NULL,"
    " nic INTEGER NOT NULL,"
    " tap TEXT NOT NULL UNIQUE,"
    " mac TEXT NOT NULL UNIQUE,"
    " PRIMARY KEY (vm_id, nic)"
    ") STRICT",
    "CREATE TABLE addresses ("
    " pool TEXT NOT NULL,"    /* "bridge 10.97.0.0/16" */
    " slot INTEGER NOT NULL," /* see net_pool */
    " vm_id TEXT NOT NULL,"
    " nic INTEGER NOT NULL,"
    " family INTEGER NOT NULL," /* 4 or 6 */
    " address TEXT NOT NULL,"   /* the guest's address, for people reading the file */
    " PRIMARY KEY (pool, slot),"
    " UNIQUE (vm_id, nic, family)"
    ") STRICT",
    "CREATE TABLE forwards ("
    " proto TEXT NOT NULL,"
    " host_port INTEGER NOT NULL,"
    " vm_id TEXT NOT NULL,"
    " guest_port INTEGER NOT NULL,"
    " PRIMARY KEY (proto, host_port)"
    ") STRICT",
    "CREATE INDEX forwards_vm ON forwards (vm_id)",
    NULL,
};

static const char *const *const migrations[] = {schema_v1};

/* ---- small helpers ---------------------------------------------------------------------- */

static int db_fail(net_db *d, chcp_error **err, const char *what)
{
    return error_set(err, CHCP_UNAVAILABLE, "%s: %s: %s", d->path, what, sqlite3_errmsg(d->db));
}

static int exec_sql(net_db *d, const char *sql, chcp_error **err)
{
    if (sqlite3_exec(d->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(d, err, sql);
    return 0;
}

/* Bind "t" (text) and "i" (int64_t) arguments in order. */
static void bind_args(sqlite3_stmt *st, const char *types, va_list ap)
{
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't')
            sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
    }
}

static sqlite3_stmt *prep(net_db *d, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    va_list ap;
    va_start(ap, types);
    bind_args(st, types, ap);
    va_end(ap);
    return st;
}

/* Run a statement that returns no rows. */
static int run(net_db *d, chcp_error **err, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(d, err, "prepare");
    va_list ap;
    va_start(ap, types);
    bind_args(st, types, ap);
    va_end(ap);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(d, err, "write");
    return 0;
}

/* The VM a query for one unique value names ("" when it is free); the query
 * takes a text argument `t` and, when types is "ti", an integer `a`. */
static int holder(net_db *d, const char *sql, const char *types, int64_t a, const char *t,
                  char out[NET_VM_ID_MAX + 1], chcp_error **err)
{
    out[0] = 0;
    sqlite3_stmt *st = strcmp(types, "ti") == 0 ? prep(d, sql, "ti", t, a) : prep(d, sql, "t", t);
    if (!st)
        return db_fail(d, err, "prepare");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(out, NET_VM_ID_MAX + 1, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(d, err, "read");
    return 0;
}

/* ---- open / close ------------------------------------------------------------------------ */

static int migrate(net_db *d, chcp_error **err)
{
    sqlite3_stmt *st = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0)
        return error_set(err, CHCP_DATA_LOSS, "%s: not a usable SQLite database: %s", d->path,
                         sqlite3_errmsg(d->db));
    if (version > NET_DB_SCHEMA_VERSION)
        return error_set(err, CHCP_FAILED_PRECONDITION,
                         "%s: schema version %d is newer than this chcp-api supports (%d); "
                         "refusing to touch it",
                         d->path, version, NET_DB_SCHEMA_VERSION);
    for (; version < NET_DB_SCHEMA_VERSION; version++) {
        if (exec_sql(d, "BEGIN IMMEDIATE", err) < 0)
            return -1;
        for (const char *const *sql = migrations[version]; *sql; sql++)
            if (exec_sql(d, *sql, err) < 0) {
                exec_sql(d, "ROLLBACK", NULL);
                return -1;
            }
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", version + 1);
        if (exec_sql(d, bump, err) < 0 || exec_sql(d, "COMMIT", err) < 0) {
            exec_sql(d, "ROLLBACK", NULL);
            return -1;
        }
    }
    return 0;
}

static int quick_check(net_db *d, chcp_error **err)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(d->db, "PRAGMA quick_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        rc = res && strcmp(res, "ok") == 0 ? 0 : -1;
    }
    sqlite3_finalize(st);
    if (rc < 0)
        error_set(err, CHCP_DATA_LOSS, "%s: database is corrupt or unreadable: %s", d->path,
                  sqlite3_errmsg(d->db));
    return rc;
}

net_db *net_db_open(const char *state_dir, chcp_error **err)
{
    net_db *d = xcalloc(1, sizeof(*d));
    d->path = xasprintf("%s/net.db", state_dir);
    pthread_mutex_init(&d->mu, NULL);
    /* Created 0600 before SQLite opens it: its -wal and -shm files take the
     * main file's mode. */
    int fd = open(d->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        error_set_errno(err, CHCP_FAILED_PRECONDITION, errno, "cannot open %s", d->path);
        goto fail;
    }
    fchmod(fd, 0600);
    close(fd);
    int rc =
        sqlite3_open_v2(d->path, &d->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        error_set(err, CHCP_UNAVAILABLE, "%s: cannot open: %s", d->path,
                  d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(d->db, 2000);
    if (exec_sql(d, "PRAGMA journal_mode=WAL", err) < 0 ||
        exec_sql(d, "PRAGMA synchronous=NORMAL", err) < 0 || quick_check(d, err) < 0 ||
        migrate(d, err) < 0)
        goto fail;
    return d;
fail:
    net_db_close(d);
    return NULL;
}

void net_db_close(net_db *d)
{
    if (!d)
        return;
    if (d->db)
        sqlite3_close(d->db);
    pthread_mutex_destroy(&d->mu);
    free(d->path);
    free(d);
}

/* ---- allocation ------------------------------------------------------------------------- */

static int64_t preferred_slot(const net_pool *p, const char *vm_id, unsigned nic)
{
    char n[16];
    snprintf(n, sizeof(n), "%u", nic);
    const char *parts[] = {"addr", p->key, vm_id, n};
    uint64_t span = (uint64_t)(p->last - p->first) + 1;
    return p->first + (int64_t)(net_hash(parts, ARRAY_SIZE(parts)) % span);
}

/* The first free slot in [from, to], or -1. One ordered index scan: walk the
 * taken slots from `from` until a gap. */
static int free_slot_in(net_db *d, const net_pool *p, int64_t from, int64_t to, int64_t *out,
                        chcp_error **err)
{
    sqlite3_stmt *st = prep(d,
                            "SELECT slot FROM addresses WHERE pool = ? AND slot >= ? AND "
                            "slot <= ? ORDER BY slot",
                            "tii", p->key, from, to);
    if (!st)
        return db_fail(d, err, "prepare");
    int64_t cand = from;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t s = sqlite3_column_int64(st, 0);
        if (s != cand)
            break;
        cand++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(d, err, "read");
    *out = cand <= to ? cand : -1;
    return 0;
}

static int64_t count_pool(net_db *d, const net_pool *p)
{
    sqlite3_stmt *st = prep(d, "SELECT count(*) FROM addresses WHERE pool = ?", "t", p->key);
    int64_t n = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int find_free_slot(net_db *d, const net_pool *p, const char *vm_id, unsigned nic,
                          int64_t *out, chcp_error **err)
{
    int64_t pref = preferred_slot(p, vm_id, nic);
    if (free_slot_in(d, p, pref, p->last, out, err) < 0)
        return -1;
    if (*out < 0 && pref > p->first && free_slot_in(d, p, p->first, pref - 1, out, err) < 0)
        return -1;
    if (*out < 0) {
        char text[64];
        net_prefix_format(&p->prefix, text, sizeof(text));
        return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                         "no free address left in %s (%lld in use): delete VMs or configure a "
                         "larger prefix",
                         text, (long long)count_pool(d, p));
    }
    return 0;
}

/* Keep, move or make the VM's address of one family on one NIC. */
static int allocate_address(net_db *d, const char *vm_id, unsigned nic, const net_pool *p,
                            const char *requested, int64_t *slot_out, chcp_error **err)
{
    int fam = p->prefix.family == AF_INET ? 4 : 6;
    int64_t want = -1;
    if (requested) {
        uint8_t a[16];
        int f;
        char text[64];
        net_prefix_format(&p->prefix, text, sizeof(text));
        if (net_addr_parse(requested, p->prefix.family, &f, a) < 0)
            return error_set(err, CHCP_INVALID_ARGUMENT, "nic %u: '%s' is not an IPv%d address",
                             nic, requested, fam);
        want = net_pool_slot_of(p, a);
        if (want < 0)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "nic %u: %s is not a guest address chcp hands out in %s (%s mode)",
                             nic, requested, text, net_mode_name(p->mode));
    }
    /* What the VM holds now, in this pool. */
    sqlite3_stmt *st = prep(d,
                            "SELECT pool, slot FROM addresses WHERE vm_id = ? AND nic = ? AND "
                            "family = ?",
                            "tii", vm_id, (int64_t)nic, (int64_t)fam);
    if (!st)
        return db_fail(d, err, "prepare");
    int64_t have = -1;
    bool other_pool = false;
    if (sqlite3_step(st) == SQLITE_ROW) {
        if (strcmp((const char *)sqlite3_column_text(st, 0), p->key) == 0)
            have = sqlite3_column_int64(st, 1);
        else
            other_pool = true;
    }
    sqlite3_finalize(st);
    if (have >= 0 && (want < 0 || want == have)) {
        *slot_out = have;
        return 0;
    }
    if (want >= 0) {
        char who[NET_VM_ID_MAX + 1];
        if (holder(d, "SELECT vm_id FROM addresses WHERE pool = ? AND slot = ?", "ti", want, p->key,
                   who, err) < 0)
            return -1;
        if (who[0] && strcmp(who, vm_id) != 0)
            return error_set(err, CHCP_ALREADY_EXISTS, "nic %u: address %s belongs to VM %s", nic,
                             requested, who);
    } else if (find_free_slot(d, p, vm_id, nic, &want, err) < 0) {
        return -1;
    }
    if ((have >= 0 || other_pool) &&
        run(d, err, "DELETE FROM addresses WHERE vm_id = ? AND nic = ? AND family = ?", "tii",
            vm_id, (int64_t)nic, (int64_t)fam) < 0)
        return -1;
    uint8_t guest[16], host[16];
    unsigned plen;
    char text[NET_ADDR_LEN];
    net_pool_slot(p, want, guest, host, &plen);
    net_addr_format(p->prefix.family, guest, text, sizeof(text));
    if (run(d, err,
            "INSERT INTO addresses (pool, slot, vm_id, nic, family, address) VALUES (?,?,?,?,?,?)",
            "titiit", p->key, want, vm_id, (int64_t)nic, (int64_t)fam, text) < 0)
        return -1;
    *slot_out = want;
    return 0;
}

/* The NIC row: TAP name and MAC, kept once made. */
static int allocate_nic(net_db *d, const net_db_alloc_request *req, unsigned nic, net_db_nic *out,
                        chcp_error **err)
{
    const net_nic_request *r = &req->nics[nic];
    char mac[NET_MAC_LEN] = "";
    if (r->mac && net_mac_parse(r->mac, mac, err) < 0) {
        if (err)
            error_prefix(*err, "nic %u", nic);
        return -1;
    }
    char who[NET_VM_ID_MAX + 1];
    if (mac[0]) {
        if (holder(d, "SELECT vm_id FROM nics WHERE mac = ?", "t", 0, mac, who, err) < 0)
            return -1;
        if (who[0] && strcmp(who, req->vm_id) != 0)
            return error_set(err, CHCP_ALREADY_EXISTS, "nic %u: MAC %s belongs to VM %s", nic, mac,
                             who);
    }
    sqlite3_stmt *st = prep(d, "SELECT tap, mac FROM nics WHERE vm_id = ? AND nic = ?", "ti",
                            req->vm_id, (int64_t)nic);
    if (!st)
        return db_fail(d, err, "prepare");
    bool exists = sqlite3_step(st) == SQLITE_ROW;
    if (exists) {
        snprintf(out->tap, sizeof(out->tap), "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(out->mac, sizeof(out->mac), "%s", (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    if (exists) {
        if (!mac[0] || strcmp(mac, out->mac) == 0)
            return 0;
        snprintf(out->mac, sizeof(out->mac), "%s", mac);
        return run(d, err, "UPDATE nics SET mac = ? WHERE vm_id = ? AND nic = ?", "tti", mac,
                   req->vm_id, (int64_t)nic);
    }
    /* New: the hash-derived name and MAC, unless another VM has them. */
    for (unsigned attempt = 0; !out->tap[0]; attempt++) {
        if (attempt == NAME_ATTEMPTS)
            return error_set(err, CHCP_INTERNAL, "nic %u: no free TAP name after %u attempts", nic,
                             attempt);
        char name[NET_IFNAME_LEN];
        net_tap_name(req->tap_prefix, req->vm_id, nic, attempt, name);
        if (holder(d, "SELECT vm_id FROM nics WHERE tap = ?", "t", 0, name, who, err) < 0)
            return -1;
        if (!who[0])
            snprintf(out->tap, sizeof(out->tap), "%s", name);
    }
    for (unsigned attempt = 0; !mac[0]; attempt++) {
        if (attempt == NAME_ATTEMPTS)
            return error_set(err, CHCP_INTERNAL, "nic %u: no free MAC after %u attempts", nic,
                             attempt);
        char cand[NET_MAC_LEN];
        net_mac_generate(req->vm_id, nic, attempt, cand);
        if (holder(d, "SELECT vm_id FROM nics WHERE mac = ?", "t", 0, cand, who, err) < 0)
            return -1;
        if (!who[0])
            snprintf(mac, sizeof(mac), "%s", cand);
    }
    snprintf(out->mac, sizeof(out->mac), "%s", mac);
    return run(d, err, "INSERT INTO nics (vm_id, nic, tap, mac) VALUES (?,?,?,?)", "titt",
               req->vm_id, (int64_t)nic, out->tap, out->mac);
}

static const char *proto_name(net_proto p)
{
    return p == NET_PROTO_UDP ? "udp" : "tcp";
}

static int allocate_forwards(net_db *d, const net_db_alloc_request *req, chcp_error **err)
{
    if (run(d, err, "DELETE FROM forwards WHERE vm_id = ?", "t", req->vm_id) < 0)
        return -1;
    for (size_t i = 0; i < req->n_forwards; i++) {
        const net_port_forward *f = &req->forwards[i];
        char who[NET_VM_ID_MAX + 1];
        if (holder(d, "SELECT vm_id FROM forwards WHERE proto = ? AND host_port = ?", "ti",
                   f->host_port, proto_name(f->proto), who, err) < 0)
            return -1;
        if (who[0])
            return error_set(err, CHCP_ALREADY_EXISTS, "host port %s/%u is forwarded to VM %s",
                             proto_name(f->proto), f->host_port,
                             strcmp(who, req->vm_id) == 0 ? "this VM twice" : who);
        if (run(d, err,
                "INSERT INTO forwards (proto, host_port, vm_id, guest_port) VALUES (?,?,?,?)",
                "titi", proto_name(f->proto), (int64_t)f->host_port, req->vm_id,
                (int64_t)f->guest_port) < 0)
            return -1;
    }
    return 0;
}

static int allocate_locked(net_db *d, const net_db_alloc_request *req, net_db_nic *out,
                           chcp_error **err)
{
    for (unsigned i = 0; i < req->n_nics; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        out[i].nic = i;
        if (allocate_nic(d, req, i, &out[i], err) < 0)
            return -1;
        const char *want4 = req->nics[i].ipv4, *want6 = req->nics[i].ipv6;
        if ((want4 && !req->pool4) || (want6 && !req->pool6))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "nic %u: an IPv%d address was asked for but no IPv%d prefix is "
                             "configured (CHCP_NET_IPV%d_CIDR)",
                             i, want4 && !req->pool4 ? 4 : 6, want4 && !req->pool4 ? 4 : 6,
                             want4 && !req->pool4 ? 4 : 6);
        if (req->pool4) {
            if (allocate_address(d, req->vm_id, i, req->pool4, want4, &out[i].slot4, err) < 0)
                return -1;
            out[i].has_v4 = true;
        }
        if (req->pool6) {
            if (allocate_address(d, req->vm_id, i, req->pool6, want6, &out[i].slot6, err) < 0)
                return -1;
            out[i].has_v6 = true;
        }
    }
    /* NICs the VM no longer has, and families no longer configured. */
    if (run(d, err, "DELETE FROM nics WHERE vm_id = ? AND nic >= ?", "ti", req->vm_id,
            (int64_t)req->n_nics) < 0 ||
        run(d, err, "DELETE FROM addresses WHERE vm_id = ? AND nic >= ?", "ti", req->vm_id,
            (int64_t)req->n_nics) < 0)
        return -1;
    for (int fam = 4; fam <= 6; fam += 2) {
        const net_pool *p = fam == 4 ? req->pool4 : req->pool6;
        if (!p && run(d, err, "DELETE FROM addresses WHERE vm_id = ? AND family = ?", "ti",
                      req->vm_id, (int64_t)fam) < 0)
            return -1;
    }
    return allocate_forwards(d, req, err);
}

int net_db_allocate(net_db *d, const net_db_alloc_request *req, net_db_nic *out, chcp_error **err)
{
    pthread_mutex_lock(&d->mu);
    int rc = exec_sql(d, "BEGIN IMMEDIATE", err);
    if (rc == 0) {
        rc = allocate_locked(d, req, out, err);
        if (rc == 0)
            rc = exec_sql(d, "COMMIT", err);
        if (rc < 0)
            exec_sql(d, "ROLLBACK", NULL);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* ---- reading ---------------------------------------------------------------------------- */

static int get_locked(net_db *d, const char *vm_id, const net_pool *pool4, const net_pool *pool6,
                      net_db_nic *out, size_t *n_out, chcp_error **err)
{
    *n_out = 0;
    sqlite3_stmt *st =
        prep(d, "SELECT nic, tap, mac FROM nics WHERE vm_id = ? ORDER BY nic", "t", vm_id);
    if (!st)
        return db_fail(d, err, "prepare");
    while (*n_out < NET_MAX_NICS && sqlite3_step(st) == SQLITE_ROW) {
        net_db_nic *n = &out[(*n_out)++];
        memset(n, 0, sizeof(*n));
        n->nic = (unsigned)sqlite3_column_int(st, 0);
        snprintf(n->tap, sizeof(n->tap), "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(n->mac, sizeof(n->mac), "%s", (const char *)sqlite3_column_text(st, 2));
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < *n_out; i++) {
        const net_pool *pools[] = {pool4, pool6};
        for (int k = 0; k < 2; k++) {
            if (!pools[k])
                continue;
            st = prep(d, "SELECT slot FROM addresses WHERE vm_id = ? AND nic = ? AND pool = ?",
                      "tit", vm_id, (int64_t)out[i].nic, pools[k]->key);
            if (!st)
                return db_fail(d, err, "prepare");
            if (sqlite3_step(st) == SQLITE_ROW) {
                *(k ? &out[i].slot6 : &out[i].slot4) = sqlite3_column_int64(st, 0);
                *(k ? &out[i].has_v6 : &out[i].has_v4) = true;
            }
            sqlite3_finalize(st);
        }
    }
    return 0;
}

int net_db_get(net_db *d, const char *vm_id, const net_pool *pool4, const net_pool *pool6,
               net_db_nic out[NET_MAX_NICS], size_t *n_out, chcp_error **err)
{
    pthread_mutex_lock(&d->mu);
    int rc = get_locked(d, vm_id, pool4, pool6, out, n_out, err);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int net_db_taps(net_db *d, const char *vm_id, char taps[NET_MAX_NICS][NET_IFNAME_LEN],
                size_t *n_out, chcp_error **err)
{
    net_db_nic nics[NET_MAX_NICS];
    if (net_db_get(d, vm_id, NULL, NULL, nics, n_out, err) < 0)
        return -1;
    for (size_t i = 0; i < *n_out; i++)
        memcpy(taps[i], nics[i].tap, NET_IFNAME_LEN);
    return 0;
}

/* ---- release ---------------------------------------------------------------------------- */

static int release_locked(net_db *d, const char *vm_id, chcp_error **err)
{
    static const char *const sql[] = {
        "DELETE FROM forwards WHERE vm_id = ?",
        "DELETE FROM addresses WHERE vm_id = ?",
        "DELETE FROM nics WHERE vm_id = ?",
    };
    for (size_t i = 0; i < ARRAY_SIZE(sql); i++)
        if (run(d, err, sql[i], "t", vm_id) < 0)
            return -1;
    return 0;
}

int net_db_release(net_db *d, const char *vm_id, chcp_error **err)
{
    pthread_mutex_lock(&d->mu);
    int rc = exec_sql(d, "BEGIN IMMEDIATE", err);
    if (rc == 0) {
        rc = release_locked(d, vm_id, err);
        if (rc == 0)
            rc = exec_sql(d, "COMMIT", err);
        if (rc < 0)
            exec_sql(d, "ROLLBACK", NULL);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

static bool is_live(const char *id, const char *const *live, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(live[i], id) == 0)
            return true;
    return false;
}

static int reconcile_locked(net_db *d, const char *const *live, size_t n_live, size_t *removed,
                            chcp_error **err)
{
    sqlite3_stmt *st = prep(d,
                            "SELECT vm_id FROM nics UNION SELECT vm_id FROM addresses "
                            "UNION SELECT vm_id FROM forwards",
                            "");
    if (!st)
        return db_fail(d, err, "prepare");
    char **dead = NULL;
    size_t n_dead = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!is_live(id, live, n_live)) {
            dead = xrealloc(dead, (n_dead + 1) * sizeof(*dead));
            dead[n_dead++] = xstrdup(id);
        }
    }
    sqlite3_finalize(st);
    int result = rc == SQLITE_DONE ? 0 : db_fail(d, err, "read");
    for (size_t i = 0; i < n_dead; i++) {
        if (result == 0 && release_locked(d, dead[i], err) < 0)
            result = -1;
        free(dead[i]);
    }
    free(dead);
    if (result == 0)
        *removed = n_dead;
    return result;
}

int net_db_reconcile(net_db *d, const char *const *live_ids, size_t n_live, size_t *removed,
                     chcp_error **err)
{
    pthread_mutex_lock(&d->mu);
    *removed = 0;
    int rc = exec_sql(d, "BEGIN IMMEDIATE", err);
    if (rc == 0) {
        rc = reconcile_locked(d, live_ids, n_live, removed, err);
        if (rc == 0)
            rc = exec_sql(d, "COMMIT", err);
        if (rc < 0) {
            exec_sql(d, "ROLLBACK", NULL);
            *removed = 0;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}
