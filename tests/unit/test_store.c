/*
 * test_store.c - the SQLite VM registry: round trips, group commit under a
 * burst, deletes, migrations (version stamped, data kept across reopen), and
 * refusing a locked, corrupt or newer database or a state directory others
 * can write to.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "vm/store.h"

typedef struct ctx {
    uv_loop_t loop;
    char dir[64];
} ctx;

static int setup(void **state)
{
    ctx *c = xcalloc(1, sizeof(*c));
    uv_loop_init(&c->loop);
    strcpy(c->dir, "/tmp/chcp-store-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
    assert_int_equal(system(cmd), 0);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    free(c);
    return 0;
}

static int done_count, fail_count;
static void on_done(const chcp_error *err, void *ud)
{
    (void)ud;
    if (err)
        fail_count++;
    else
        done_count++;
}

typedef struct loaded {
    int n;
    char ids[600][16];
    int states[600];
    char reason[64];
    uint64_t start_time;
    size_t config_len;
} loaded;

static void on_row(const vm_store_row *r, void *ud)
{
    loaded *l = ud;
    snprintf(l->ids[l->n], sizeof(l->ids[0]), "%s", r->id);
    l->states[l->n] = r->state;
    if (r->state_reason)
        snprintf(l->reason, sizeof(l->reason), "%s", r->state_reason);
    l->start_time = r->vmm_start_time;
    l->config_len = r->config_len;
    l->n++;
}

static vm_store_row row(const char *id, int state)
{
    static const uint8_t config[] = {0x0a, 0x02, 0x10, 0x01};
    vm_store_row r = {.id = id,
                      .config = config,
                      .config_len = sizeof(config),
                      .state = state,
                      .desired_state = state,
                      .state_reason = "guest powered off",
                      .vmm_pid = 1234,
                      .vmm_start_time = 987654321,
                      .created_at_ns = 1,
                      .updated_at_ns = 2,
                      .state_changed_at_ns = 3,
                      .generation = 7};
    return r;
}

static void test_roundtrip_and_burst(void **state)
{
    ctx *c = *state;
    chcp_error *err = NULL;
    vm_store *s = vm_store_open(&c->loop, c->dir, &err);
    assert_non_null(s);
    done_count = fail_count = 0;
    char id[16];
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "vm-%03d", i);
        vm_store_row r = row(id, i % 5);
        vm_store_put(s, &r, on_done, NULL);
    }
    vm_store_delete(s, "vm-007", on_done, NULL);
    vm_store_row upd = row("vm-001", 9);
    upd.state_reason = "changed";
    vm_store_put(s, &upd, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(done_count, 502);
    assert_int_equal(fail_count, 0);
    assert_int_equal(vm_store_pending(s), 0);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);

    /* Reopen: everything acknowledged is there. */
    s = vm_store_open(&c->loop, c->dir, &err);
    assert_non_null(s);
    loaded *l = xcalloc(1, sizeof(*l));
    assert_int_equal(vm_store_load(s, on_row, l, &err), 0);
    assert_int_equal(l->n, 499);
    assert_string_equal(l->ids[1], "vm-001");
    assert_int_equal(l->states[1], 9);
    assert_string_equal(l->ids[7], "vm-008"); /* vm-007 was deleted */
    assert_int_equal(l->start_time, 987654321);
    assert_int_equal(l->config_len, 4);
    free(l);
    vm_store_close(s);
}

static void test_locked(void **state)
{
    ctx *c = *state;
    chcp_error *err = NULL;
    vm_store *s = vm_store_open(&c->loop, c->dir, &err);
    assert_non_null(s);
    vm_store *s2 = vm_store_open(&c->loop, c->dir, &err);
    assert_null(s2);
    assert_non_null(err);
    assert_non_null(strstr(err->message, "chcp.lock is locked"));
    error_free(err);
    vm_store_close(s);
}

static void test_corrupt(void **state)
{
    ctx *c = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/chcp.db", c->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 512; i++)
        fputs("this is not a database ", f);
    fclose(f);
    chcp_error *err = NULL;
    assert_null(vm_store_open(&c->loop, c->dir, &err));
    assert_non_null(err);
    assert_non_null(strstr(err->message, path)); /* names the file */
    error_free(err);
}

static void test_newer_schema(void **state)
{
    ctx *c = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/chcp.db", c->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    chcp_error *err = NULL;
    assert_null(vm_store_open(&c->loop, c->dir, &err));
    assert_non_null(strstr(err->message, "schema version 99 is newer"));
    error_free(err);
}

static void test_bad_permissions(void **state)
{
    ctx *c = *state;
    assert_int_equal(chmod(c->dir, 0777), 0);
    chcp_error *err = NULL;
    assert_null(vm_store_open(&c->loop, c->dir, &err));
    assert_non_null(err);
    assert_int_equal(err->code, CHCP_PERMISSION_DENIED);
    assert_non_null(strstr(err->message, c->dir));
    assert_non_null(strstr(err->message, "0777"));
    error_free(err);
    assert_int_equal(chmod(c->dir, 0700), 0);
}

static void count_row(const vm_store_row *r, void *ud)
{
    int *n = ud;
    assert_string_equal(r->id, "kept");
    assert_int_equal(r->generation, 5);
    assert_int_equal(r->config_len, 3);
    assert_memory_equal(r->config, "abc", 3);
    (*n)++;
}

/* A migrated database is stamped with the schema version and is not
 * migrated again: rows survive a reopen. */
static void test_migration_stamped_and_kept(void **state)
{
    ctx *c = *state;
    chcp_error *err = NULL;
    vm_store *s = vm_store_open(&c->loop, c->dir, &err);
    assert_non_null(s);
    vm_store_row r = {.id = "kept",
                      .config = (const uint8_t *)"abc",
                      .config_len = 3,
                      .state = 4,
                      .generation = 5,
                      .created_at_ns = 1,
                      .updated_at_ns = 2,
                      .state_changed_at_ns = 3};
    done_count = fail_count = 0;
    vm_store_put(s, &r, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(done_count, 1);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);

    char path[128];
    snprintf(path, sizeof(path), "%s/chcp.db", c->dir);
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), VM_STORE_SCHEMA_VERSION);
    sqlite3_finalize(st);
    sqlite3_close(db);

    s = vm_store_open(&c->loop, c->dir, &err);
    assert_non_null(s);
    int n = 0;
    assert_int_equal(vm_store_load(s, count_row, &n, &err), 0);
    assert_int_equal(n, 1);
    vm_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_and_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_stamped_and_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
