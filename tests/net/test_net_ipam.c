/*
 * test_net_ipam.c - the allocation database (src/net/db.c): addresses, TAP
 * names, MACs and host ports handed out once, kept across calls and across
 * reopening the file, honoured when asked for, refused when taken, freed on
 * release and by reconcile; exhaustion; the schema's version guard.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "net/net_internal.h"

typedef struct ctx {
    char dir[64];
    net_db *db;
    net_pool p4, p6;
} ctx;

static void pool(net_pool *p, net_mode mode, const char *text)
{
    net_prefix pre;
    assert_int_equal(net_prefix_parse(text, &pre, NULL), 0);
    assert_int_equal(net_pool_init(p, mode, &pre, NULL), 0);
}

static int setup(void **state)
{
    ctx *c = xcalloc(1, sizeof(*c));
    strcpy(c->dir, "/tmp/chcp-net-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    c->db = net_db_open(c->dir, NULL);
    assert_non_null(c->db);
    pool(&c->p4, NET_MODE_BRIDGE, "10.97.0.0/24");
    pool(&c->p6, NET_MODE_BRIDGE, "fd00:97::/64");
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    net_db_close(c->db);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
    assert_int_equal(system(cmd), 0);
    free(c);
    return 0;
}

/* Allocate n NICs for vm with optional requests; returns the rc, fills out. */
static int alloc(ctx *c, const char *vm, size_t n, const net_nic_request *req, bool v6,
                 net_db_nic *out, chcp_error **err)
{
    net_nic_request none[NET_MAX_NICS] = {{0}};
    net_db_alloc_request r = {.vm_id = vm,
                              .tap_prefix = "chcp",
                              .nics = req ? req : none,
                              .n_nics = n,
                              .pool4 = &c->p4,
                              .pool6 = v6 ? &c->p6 : NULL};
    return net_db_allocate(c->db, &r, out, err);
}

static void text4(const net_pool *p, int64_t slot, char *out)
{
    uint8_t g[16], h[16];
    unsigned len;
    net_pool_slot(p, slot, g, h, &len);
    net_addr_format(p->prefix.family, g, out, NET_ADDR_LEN);
}

static void test_allocate_is_stable_and_distinct(void **state)
{
    ctx *c = *state;
    net_db_nic a[NET_MAX_NICS], a2[NET_MAX_NICS], b[NET_MAX_NICS];
    assert_int_equal(alloc(c, "vm-a", 2, NULL, true, a, NULL), 0);
    assert_true(a[0].has_v4 && a[0].has_v6 && a[1].has_v4);
    assert_true(a[0].slot4 >= 2 && a[0].slot4 <= 254);
    assert_int_not_equal(a[0].slot4, a[1].slot4);
    char name[NET_IFNAME_LEN], mac[NET_MAC_LEN];
    net_tap_name("chcp", "vm-a", 1, 0, name);
    assert_string_equal(a[1].tap, name);
    net_mac_generate("vm-a", 0, 0, mac);
    assert_string_equal(a[0].mac, mac);
    /* Again: the same everything. */
    assert_int_equal(alloc(c, "vm-a", 2, NULL, true, a2, NULL), 0);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(a[i].tap, a2[i].tap);
        assert_string_equal(a[i].mac, a2[i].mac);
        assert_int_equal(a[i].slot4, a2[i].slot4);
        assert_int_equal(a[i].slot6, a2[i].slot6);
    }
    assert_int_equal(alloc(c, "vm-b", 1, NULL, true, b, NULL), 0);
    assert_int_not_equal(b[0].slot4, a[0].slot4);
    assert_int_not_equal(b[0].slot4, a[1].slot4);
    assert_string_not_equal(b[0].tap, a[0].tap);
    /* Dropping a NIC frees its rows. */
    assert_int_equal(alloc(c, "vm-a", 1, NULL, true, a2, NULL), 0);
    size_t n;
    assert_int_equal(net_db_get(c->db, "vm-a", &c->p4, &c->p6, a2, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(a2[0].slot4, a[0].slot4);
    /* No IPv6 any more: its row goes, IPv4 stays. */
    assert_int_equal(alloc(c, "vm-a", 1, NULL, false, a2, NULL), 0);
    assert_int_equal(net_db_get(c->db, "vm-a", &c->p4, &c->p6, a2, &n, NULL), 0);
    assert_true(a2[0].has_v4);
    assert_false(a2[0].has_v6);
}

static void test_requests_and_conflicts(void **state)
{
    ctx *c = *state;
    net_db_nic a[NET_MAX_NICS], b[NET_MAX_NICS];
    net_nic_request ra = {.mac = "52:54:00:AA:BB:CC", .ipv4 = "10.97.0.42", .ipv6 = "fd00:97::42"};
    assert_int_equal(alloc(c, "vm-a", 1, &ra, true, a, NULL), 0);
    assert_string_equal(a[0].mac, "52:54:00:aa:bb:cc");
    assert_int_equal(a[0].slot4, 42);
    assert_int_equal(a[0].slot6, 0x42);
    /* Taken by vm-a. */
    const char *const taken[][2] = {
        {"mac", "52:54:00:aa:bb:cc"}, {"ipv4", "10.97.0.42"}, {"ipv6", "fd00:97::42"}};
    for (size_t i = 0; i < ARRAY_SIZE(taken); i++) {
        net_nic_request rb = {0};
        if (i == 0)
            rb.mac = taken[i][1];
        else if (i == 1)
            rb.ipv4 = taken[i][1];
        else
            rb.ipv6 = taken[i][1];
        chcp_error *err = NULL;
        assert_int_equal(alloc(c, "vm-b", 1, &rb, true, b, &err), -1);
        assert_int_equal(err->code, CHCP_ALREADY_EXISTS);
        if (!strstr(err->message, "belongs to VM vm-a"))
            fail_msg("%s", err->message);
        error_free(err);
    }
    /* A failed allocation leaves nothing behind. */
    size_t n;
    assert_int_equal(net_db_get(c->db, "vm-b", &c->p4, NULL, b, &n, NULL), 0);
    assert_int_equal(n, 0);
    /* Not a guest address of the pool. */
    const char *bad4[] = {"10.97.0.1", "10.97.0.0", "10.97.0.255",
                          "10.98.0.5", "fd00::1",   "nonsense"};
    for (size_t i = 0; i < ARRAY_SIZE(bad4); i++) {
        net_nic_request rb = {.ipv4 = bad4[i]};
        chcp_error *err = NULL;
        assert_int_equal(alloc(c, "vm-b", 1, &rb, false, b, &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        error_free(err);
    }
    /* An IPv6 address without an IPv6 pool. */
    net_nic_request r6 = {.ipv6 = "fd00:97::9"};
    chcp_error *err = NULL;
    assert_int_equal(alloc(c, "vm-b", 1, &r6, false, b, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    assert_non_null(strstr(err->message, "CHCP_NET_IPV6_CIDR"));
    error_free(err);
    /* vm-a moves to another address it asks for; the old one is free. */
    ra.ipv4 = "10.97.0.43";
    assert_int_equal(alloc(c, "vm-a", 1, &ra, true, a, NULL), 0);
    assert_int_equal(a[0].slot4, 43);
    net_nic_request rb = {.ipv4 = "10.97.0.42"};
    assert_int_equal(alloc(c, "vm-b", 1, &rb, false, b, NULL), 0);
    assert_int_equal(b[0].slot4, 42);
}

static void test_forwards(void **state)
{
    ctx *c = *state;
    net_db_nic out[NET_MAX_NICS];
    net_nic_request nic = {0};
    net_port_forward fa[] = {{NET_PROTO_TCP, 8080, 80}, {NET_PROTO_UDP, 8080, 53}};
    net_db_alloc_request r = {.vm_id = "vm-a",
                              .tap_prefix = "chcp",
                              .nics = &nic,
                              .n_nics = 1,
                              .pool4 = &c->p4,
                              .forwards = fa,
                              .n_forwards = 2};
    assert_int_equal(net_db_allocate(c->db, &r, out, NULL), 0);
    assert_int_equal(net_db_allocate(c->db, &r, out, NULL), 0); /* idempotent */
    net_port_forward fb[] = {{NET_PROTO_TCP, 8080, 8080}};
    r.vm_id = "vm-b";
    r.forwards = fb;
    r.n_forwards = 1;
    chcp_error *err = NULL;
    assert_int_equal(net_db_allocate(c->db, &r, out, &err), -1);
    assert_int_equal(err->code, CHCP_ALREADY_EXISTS);
    assert_string_equal(err->message, "host port tcp/8080 is forwarded to VM vm-a");
    error_free(err);
    /* vm-a gives tcp/8080 up; then vm-b may have it. */
    r.vm_id = "vm-a";
    r.forwards = fa + 1;
    assert_int_equal(net_db_allocate(c->db, &r, out, NULL), 0);
    r.vm_id = "vm-b";
    r.forwards = fb;
    assert_int_equal(net_db_allocate(c->db, &r, out, NULL), 0);
}

static void test_exhaustion_and_release(void **state)
{
    ctx *c = *state;
    pool(&c->p4, NET_MODE_BRIDGE, "10.97.0.0/29"); /* .2 - .6 */
    net_db_nic out[NET_MAX_NICS];
    char id[32];
    int64_t seen = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "vm-%d", i);
        assert_int_equal(alloc(c, id, 1, NULL, false, out, NULL), 0);
        assert_true(out[0].slot4 >= 2 && out[0].slot4 <= 6);
        assert_false(seen & (1 << out[0].slot4)); /* never twice */
        seen |= 1 << out[0].slot4;
    }
    chcp_error *err = NULL;
    assert_int_equal(alloc(c, "vm-5", 1, NULL, false, out, &err), -1);
    assert_int_equal(err->code, CHCP_RESOURCE_EXHAUSTED);
    assert_string_equal(err->message, "no free address left in 10.97.0.0/29 (5 in use): delete "
                                      "VMs or configure a larger prefix");
    error_free(err);
    /* The failed VM got nothing, not even a TAP name. */
    char taps[NET_MAX_NICS][NET_IFNAME_LEN];
    size_t n;
    assert_int_equal(net_db_taps(c->db, "vm-5", taps, &n, NULL), 0);
    assert_int_equal(n, 0);
    /* Release one: its address is the one vm-5 gets. */
    net_db_nic three[NET_MAX_NICS];
    assert_int_equal(net_db_get(c->db, "vm-3", &c->p4, NULL, three, &n, NULL), 0);
    assert_int_equal(net_db_release(c->db, "vm-3", NULL), 0);
    assert_int_equal(net_db_release(c->db, "vm-3", NULL), 0); /* idempotent */
    assert_int_equal(net_db_get(c->db, "vm-3", &c->p4, NULL, out, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(alloc(c, "vm-5", 1, NULL, false, out, NULL), 0);
    assert_int_equal(out[0].slot4, three[0].slot4);
}

static void test_durable_across_reopen(void **state)
{
    ctx *c = *state;
    net_db_nic a[NET_MAX_NICS], again[NET_MAX_NICS];
    assert_int_equal(alloc(c, "vm-a", 1, NULL, true, a, NULL), 0);
    net_db_close(c->db);
    struct stat st;
    char path[128];
    snprintf(path, sizeof(path), "%s/net.db", c->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    c->db = net_db_open(c->dir, NULL);
    assert_non_null(c->db);
    size_t n;
    assert_int_equal(net_db_get(c->db, "vm-a", &c->p4, &c->p6, again, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(again[0].tap, a[0].tap);
    assert_string_equal(again[0].mac, a[0].mac);
    assert_int_equal(again[0].slot4, a[0].slot4);
    assert_int_equal(again[0].slot6, a[0].slot6);
    /* Everyone after the reopen gets something else. */
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "other-%d", i);
        assert_int_equal(alloc(c, id, 1, NULL, true, again, NULL), 0);
        assert_int_not_equal(again[0].slot4, a[0].slot4);
        assert_int_not_equal(again[0].slot6, a[0].slot6);
    }
    /* The stored text says which address it is. */
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(raw,
                                        "SELECT address FROM addresses WHERE vm_id = 'vm-a' AND "
                                        "family = 4",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    char want[NET_ADDR_LEN];
    text4(&c->p4, a[0].slot4, want);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), want);
    sqlite3_finalize(q);
    sqlite3_close(raw);
}

static void test_name_collisions(void **state)
{
    ctx *c = *state;
    /* Another VM already holds the name and the MAC vm-y would get. */
    char tap[NET_IFNAME_LEN], mac[NET_MAC_LEN], path[128];
    net_tap_name("chcp", "vm-y", 0, 0, tap);
    net_mac_generate("vm-y", 0, 0, mac);
    snprintf(path, sizeof(path), "%s/net.db", c->dir);
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    char *sql = sqlite3_mprintf("INSERT INTO nics VALUES ('vm-z', 0, %Q, %Q)", tap, mac);
    assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_free(sql);
    sqlite3_close(raw);
    net_db_nic out[NET_MAX_NICS];
    assert_int_equal(alloc(c, "vm-y", 1, NULL, false, out, NULL), 0);
    char next_tap[NET_IFNAME_LEN], next_mac[NET_MAC_LEN];
    net_tap_name("chcp", "vm-y", 0, 1, next_tap);
    net_mac_generate("vm-y", 0, 1, next_mac);
    assert_string_equal(out[0].tap, next_tap);
    assert_string_equal(out[0].mac, next_mac);
}

static void test_reconcile(void **state)
{
    ctx *c = *state;
    net_db_nic out[NET_MAX_NICS];
    const char *ids[] = {"vm-a", "vm-b", "vm-c"};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(alloc(c, ids[i], 2, NULL, true, out, NULL), 0);
    const char *live[] = {"vm-b", "vm-unrelated"};
    size_t removed = 99;
    assert_int_equal(net_db_reconcile(c->db, live, 2, &removed, NULL), 0);
    assert_int_equal(removed, 2);
    size_t n;
    assert_int_equal(net_db_get(c->db, "vm-a", &c->p4, &c->p6, out, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(net_db_get(c->db, "vm-b", &c->p4, &c->p6, out, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(net_db_reconcile(c->db, live, 2, &removed, NULL), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(net_db_reconcile(c->db, NULL, 0, &removed, NULL), 0);
    assert_int_equal(removed, 1);
}

static void test_routed_pool(void **state)
{
    ctx *c = *state;
    pool(&c->p4, NET_MODE_ROUTED, "10.98.0.0/28"); /* 4 blocks */
    net_db_nic out[NET_MAX_NICS];
    int64_t seen = 0;
    for (int i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof(id), "vm-%d", i);
        assert_int_equal(alloc(c, id, 1, NULL, false, out, NULL), 0);
        assert_true(out[0].slot4 >= 0 && out[0].slot4 <= 3);
        assert_false(seen & (1 << out[0].slot4));
        seen |= 1 << out[0].slot4;
    }
    chcp_error *err = NULL;
    assert_int_equal(alloc(c, "vm-4", 1, NULL, false, out, &err), -1);
    assert_int_equal(err->code, CHCP_RESOURCE_EXHAUSTED);
    error_free(err);
    /* The same prefix in another mode is another pool. */
    pool(&c->p4, NET_MODE_BRIDGE, "10.98.0.0/28");
    assert_int_equal(alloc(c, "vm-4", 1, NULL, false, out, NULL), 0);
}

static void test_newer_schema_refused(void **state)
{
    ctx *c = *state;
    net_db_close(c->db);
    char path[128];
    snprintf(path, sizeof(path), "%s/net.db", c->dir);
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    chcp_error *err = NULL;
    c->db = net_db_open(c->dir, &err);
    assert_null(c->db);
    assert_int_equal(err->code, CHCP_FAILED_PRECONDITION);
    assert_non_null(strstr(err->message, "schema version 99 is newer"));
    error_free(err);
    /* Garbage is refused too, naming the file. */
    FILE *f = fopen(path, "w");
    fputs("this is not a database, just text that is long enough to be read", f);
    fclose(f);
    char wal[140];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    err = NULL;
    c->db = net_db_open(c->dir, &err);
    assert_null(c->db);
    assert_non_null(strstr(err->message, "net.db"));
    error_free(err);
    c->db = NULL;
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_allocate_is_stable_and_distinct),
        T(test_requests_and_conflicts),
        T(test_forwards),
        T(test_exhaustion_and_release),
        T(test_durable_across_reopen),
        T(test_name_collisions),
        T(test_reconcile),
        T(test_routed_pool),
        T(test_newer_schema_refused),
    };
    return cmocka_run_group_tests_name("net_ipam", tests, NULL, NULL);
}
