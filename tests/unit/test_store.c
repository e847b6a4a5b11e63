/*
 * test_store.c - the SQLite VM registry: round trips, group commit under a
 * burst, deletes, migrations (version stamped, data kept across reopen, a v1
 * database gains the backend column, a dropped table is made again), file
 * modes (0600, also for -wal/-shm and for older installations), refusing a
 * locked, corrupt or newer database or a state directory others can write
 * to, noticing chcp.db deleted under it and reopening it; and the per-VM
 * record file vm.json (round trip, hash, refusals, atomic write, written
 * before its row, directory removal ordered with the writes).
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
#include <unistd.h>

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
    vm_store *s = vm_store_open(&c->loop, c->dir, NULL, &err);
    assert_non_null(s);
    done_count = fail_count = 0;
    char id[16];
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "vm-%03d", i);
        vm_store_row r = row(id, i % 5);
        vm_store_put(s, &r, NULL, NULL, on_done, NULL);
    }
    vm_store_delete(s, "vm-007", NULL, true, on_done, NULL);
    vm_store_row upd = row("vm-001", 9);
    upd.state_reason = "changed";
    vm_store_put(s, &upd, NULL, NULL, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(done_count, 502);
    assert_int_equal(fail_count, 0);
    assert_int_equal(vm_store_pending(s), 0);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);

    /* Reopen: everything acknowledged is there. */
    s = vm_store_open(&c->loop, c->dir, NULL, &err);
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
    vm_store *s = vm_store_open(&c->loop, c->dir, NULL, &err);
    assert_non_null(s);
    vm_store *s2 = vm_store_open(&c->loop, c->dir, NULL, &err);
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
    assert_null(vm_store_open(&c->loop, c->dir, NULL, &err));
    assert_non_null(err);
    assert_non_null(strstr(err->message, path)); /* names the file */
    assert_int_equal(err->code, CHCP_DATA_LOSS); /* chcp-api exits 3 */
    assert_non_null(strstr(err->message, "database is corrupt"));
    assert_non_null(strstr(err->message, "move chcp.db")); /* how to recover */
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
    assert_null(vm_store_open(&c->loop, c->dir, NULL, &err));
    assert_non_null(strstr(err->message, "schema version 99 is newer"));
    error_free(err);
}

static void test_bad_permissions(void **state)
{
    ctx *c = *state;
    assert_int_equal(chmod(c->dir, 0777), 0);
    chcp_error *err = NULL;
    assert_null(vm_store_open(&c->loop, c->dir, NULL, &err));
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
    vm_store *s = vm_store_open(&c->loop, c->dir, NULL, &err);
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
    vm_store_put(s, &r, NULL, NULL, on_done, NULL);
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

    s = vm_store_open(&c->loop, c->dir, NULL, &err);
    assert_non_null(s);
    int n = 0;
    assert_int_equal(vm_store_load(s, count_row, &n, &err), 0);
    assert_int_equal(n, 1);
    vm_store_close(s);
}

static mode_t mode_of(const char *dir, const char *name)
{
    char p[160];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    assert_int_equal(stat(p, &sb), 0);
    return sb.st_mode & 07777;
}

/* chcp.db, -wal, -shm and the lock are 0600 whatever the umask, from the
 * first write on; an older installation's 0644 files are fixed at open. */
static void test_file_modes(void **state)
{
    ctx *c = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/chcp.db", c->dir);
    /* As an older chcp-api left them: 0644 database, WAL and shm. */
    mode_t old = umask(022);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
                                  "INSERT INTO t VALUES (1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(mode_of(c->dir, "chcp.db-wal"), 0644);
    chcp_error *err = NULL;
    vm_store_info info;
    /* Opened while the old connection still holds -wal and -shm. */
    vm_store *s = vm_store_open(&c->loop, c->dir, &info, &err);
    assert_non_null(s);
    assert_true(info.fixed_modes);
    assert_false(info.created);
    sqlite3_close(db);
    vm_store_row r = row("m", 4);
    done_count = fail_count = 0;
    vm_store_put(s, &r, NULL, NULL, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(done_count, 1);
    assert_int_equal(mode_of(c->dir, "chcp.db"), 0600);
    assert_int_equal(mode_of(c->dir, "chcp.db-wal"), 0600);
    assert_int_equal(mode_of(c->dir, "chcp.db-shm"), 0600);
    assert_int_equal(mode_of(c->dir, "chcp.lock"), 0600);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);

    /* A new database under a permissive umask: 0600 from its creation. */
    char other[128];
    snprintf(other, sizeof(other), "%s/new", c->dir);
    assert_int_equal(mkdir(other, 0700), 0);
    s = vm_store_open(&c->loop, other, &info, &err);
    assert_non_null(s);
    assert_true(info.created);
    assert_false(info.fixed_modes);
    vm_store_put(s, &r, NULL, NULL, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(mode_of(other, "chcp.db"), 0600);
    assert_int_equal(mode_of(other, "chcp.db-wal"), 0600);
    assert_int_equal(mode_of(other, "chcp.db-shm"), 0600);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    umask(old);
}

static void backend_row(const vm_store_row *r, void *ud)
{
    assert_string_equal(r->backend, VM_STORE_DEFAULT_BACKEND);
    assert_string_equal(r->id, "old");
    (*(int *)ud)++;
}

/* A database of schema 1 (before the backend column) is migrated: its VMs
 * belong to cloud-hypervisor. */
static void test_migrate_from_v1(void **state)
{
    ctx *c = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/chcp.db", c->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE vms (id TEXT PRIMARY KEY, config BLOB NOT NULL, labels BLOB,"
                     " desired_state INTEGER NOT NULL, state INTEGER NOT NULL, state_reason TEXT,"
                     " vmm_pid INTEGER NOT NULL DEFAULT 0, vmm_start_time INTEGER NOT NULL "
                     "DEFAULT 0, api_socket TEXT, event_file TEXT, event_offset INTEGER NOT NULL "
                     "DEFAULT 0, exit_code INTEGER NOT NULL DEFAULT 0, exit_signal INTEGER NOT "
                     "NULL DEFAULT 0, exited_at_ns INTEGER NOT NULL DEFAULT 0, created_at_ns "
                     "INTEGER NOT NULL, updated_at_ns INTEGER NOT NULL, state_changed_at_ns "
                     "INTEGER NOT NULL, generation INTEGER NOT NULL) STRICT;"
                     "INSERT INTO vms (id, config, desired_state, state, created_at_ns, "
                     "updated_at_ns, state_changed_at_ns, generation) VALUES ('old', x'0a00', 4, "
                     "4, 1, 2, 3, 4);"
                     "PRAGMA user_version = 1",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    chcp_error *err = NULL;
    vm_store_info info;
    vm_store *s = vm_store_open(&c->loop, c->dir, &info, &err);
    assert_non_null(s);
    assert_int_equal(info.found_version, 1);
    int n = 0;
    assert_int_equal(vm_store_load(s, backend_row, &n, &err), 0);
    assert_int_equal(n, 1);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);
}

static void no_row(const vm_store_row *r, void *ud)
{
    (*(int *)ud)++;
}

/* A chcp.db truncated to zero is a new, empty database; one whose table was
 * dropped gets it back. Both then load no rows (recovery rebuilds them from
 * the record files). */
static void test_truncated_and_dropped(void **state)
{
    ctx *c = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/chcp.db", c->dir);
    chcp_error *err = NULL;
    vm_store_info info;
    vm_store *s = vm_store_open(&c->loop, c->dir, &info, &err);
    vm_store_row r = row("x", 4);
    vm_store_put(s, &r, NULL, NULL, on_done, NULL);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(truncate(path, 0), 0);
    char wal[140];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    s = vm_store_open(&c->loop, c->dir, &info, &err);
    assert_non_null(s);
    assert_true(info.created);
    int n = 0;
    assert_int_equal(vm_store_load(s, no_row, &n, &err), 0);
    assert_int_equal(n, 0);
    vm_store_put(s, &r, NULL, NULL, on_done, NULL);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE vms", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    s = vm_store_open(&c->loop, c->dir, &info, &err);
    assert_non_null(s);
    assert_int_equal(info.found_version, VM_STORE_SCHEMA_VERSION);
    n = 0;
    assert_int_equal(vm_store_load(s, no_row, &n, &err), 0);
    assert_int_equal(n, 0);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);
}

/* chcp.db deleted under an open store: noticed, and reopened (a new file
 * that takes writes again). The lock too. */
static void test_check_and_reopen(void **state)
{
    ctx *c = *state;
    chcp_error *err = NULL;
    vm_store *s = vm_store_open(&c->loop, c->dir, NULL, &err);
    assert_non_null(s);
    assert_null(vm_store_check(s));
    char path[128], lock[128], wal[140];
    snprintf(path, sizeof(path), "%s/chcp.db", c->dir);
    snprintf(lock, sizeof(lock), "%s/chcp.lock", c->dir);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(path);
    unlink(wal);
    char *p = vm_store_check(s);
    assert_non_null(p);
    assert_non_null(strstr(p, "chcp.db was deleted"));
    free(p);
    unlink(lock);
    assert_int_equal(vm_store_reopen(s, &err), 0);
    assert_null(err);
    assert_null(vm_store_check(s));
    assert_int_equal(mode_of(c->dir, "chcp.db"), 0600);
    /* The new lock is held: a second store is refused. */
    vm_store *s2 = vm_store_open(&c->loop, c->dir, NULL, &err);
    assert_null(s2);
    assert_int_equal(err->code, CHCP_UNAVAILABLE);
    error_free(err);
    err = NULL;
    done_count = fail_count = 0;
    vm_store_row r = row("again", 4);
    vm_store_put(s, &r, NULL, NULL, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(done_count, 1);
    int n = 0;
    assert_int_equal(vm_store_load(s, no_row, &n, &err), 0);
    assert_int_equal(n, 1);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);
}

/* ---- vm.json ------------------------------------------------------------------------ */

static vm_record_file sample_record(void)
{
    static const uint8_t config[] = {0x0a, 0x03, 0x12, 0x01, 0x41};
    return (vm_record_file){.id = "web-1",
                            .backend = "cloud-hypervisor",
                            .phase = VM_PHASE_ACTIVE,
                            .config = config,
                            .config_len = sizeof(config),
                            .labels = (const uint8_t *)"{\"a\":\"b\",\"team\":\"x\"}",
                            .labels_len = 20,
                            .state = 4,
                            .vmm_pid = 4242,
                            .vmm_start_time = 777,
                            .has_exit = true,
                            .exit_code = -1,
                            .exit_signal = 9,
                            .exited_at_ns = 55,
                            .created_at_ns = 11,
                            .state_changed_at_ns = 22,
                            .generation = 33};
}

static void test_record_roundtrip(void **state)
{
    vm_record_file f = sample_record();
    uint64_t h1, h2, h3;
    char *text = vm_record_render(&f, &h1);
    vm_record_file back;
    chcp_error *err = NULL;
    assert_int_equal(vm_record_parse(text, strlen(text), &back, &err), 0);
    assert_string_equal(back.id, "web-1");
    assert_string_equal(back.backend, "cloud-hypervisor");
    assert_int_equal(back.phase, VM_PHASE_ACTIVE);
    assert_int_equal(back.config_len, f.config_len);
    assert_memory_equal(back.config, f.config, f.config_len);
    assert_int_equal(back.labels_len, f.labels_len);
    assert_memory_equal(back.labels, f.labels, f.labels_len);
    assert_int_equal(back.state, 4);
    assert_int_equal(back.vmm_pid, 4242);
    assert_int_equal(back.vmm_start_time, 777);
    assert_true(back.has_exit);
    assert_int_equal(back.exit_signal, 9);
    assert_int_equal(back.exited_at_ns, 55);
    assert_int_equal(back.created_at_ns, 11);
    assert_int_equal(back.state_changed_at_ns, 22);
    assert_int_equal(back.generation, 33);
    /* Rendering what was parsed gives the same hash; the generation is not
     * part of it, everything else is. */
    free(vm_record_render(&back, &h2));
    assert_true(h1 == h2);
    back.generation = 99;
    free(vm_record_render(&back, &h3));
    assert_true(h1 == h3);
    back.phase = VM_PHASE_DELETING;
    free(vm_record_render(&back, &h3));
    assert_true(h1 != h3);
    vm_record_file_clear(&back);
    free(text);
}

static void test_record_refusals(void **state)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"format\":2,\"id\":\"a\",\"backend\":\"b\",\"phase\":\"active\",\"config\":\"\","
        "\"state\":\"RUNNING\"}",
        "{\"format\":1,\"id\":\"../x\",\"backend\":\"b\",\"phase\":\"active\",\"config\":\"\","
        "\"state\":\"RUNNING\"}",
        "{\"format\":1,\"id\":\"a\",\"backend\":\"b\",\"phase\":\"gone\",\"config\":\"\","
        "\"state\":\"RUNNING\"}",
        "{\"format\":1,\"id\":\"a\",\"backend\":\"b\",\"phase\":\"active\",\"config\":\"!!\","
        "\"state\":\"RUNNING\"}",
        "{\"format\":1,\"id\":\"a\",\"backend\":\"b\",\"phase\":\"active\",\"config\":\"\","
        "\"state\":\"HAPPY\"}",
        "{\"format\":1,\"id\":\"a\",\"backend\":\"b\",\"phase\":\"active\",\"config\":\"\","
        "\"state\":\"RUNNING\",\"vmm\":{\"pid\":-3}}",
        "{\"format\":1,\"id\":\"a\",\"backend\":\"b\",\"phase\":\"active\",\"config\":\"\","
        "\"state\":\"RUNNING\",\"labels\":[]}",
        "{\"format\":1,\"id\":\"a\",\"id\":\"b\",\"backend\":\"b\",\"phase\":\"active\","
        "\"config\":\"\",\"state\":\"RUNNING\"}",
        "{\"format\":1,\"id\":\"a\",\"backend\":\"b\",\"phase\":\"active\",\"config\":\"\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vm_record_file f;
        chcp_error *err = NULL;
        assert_int_equal(vm_record_parse(bad[i], strlen(bad[i]), &f, &err), -1);
        assert_int_equal(err->code, CHCP_DATA_LOSS);
        error_free(err);
    }
    /* The smallest valid one. */
    const char *ok = "{\"format\":1,\"id\":\"a\",\"backend\":\"b\",\"phase\":\"creating\","
                     "\"config\":\"\",\"state\":\"CREATING\"}";
    vm_record_file f;
    assert_int_equal(vm_record_parse(ok, strlen(ok), &f, NULL), 0);
    assert_int_equal(f.phase, VM_PHASE_CREATING);
    assert_int_equal(f.vmm_pid, 0);
    assert_int_equal(f.config_len, 0);
    vm_record_file_clear(&f);
}

static void test_record_files(void **state)
{
    ctx *c = *state;
    vm_record_file f = sample_record();
    char *text = vm_record_render(&f, NULL);
    chcp_error *err = NULL;
    vm_record_file back;
    assert_int_equal(vm_record_read(c->dir, &back, &err), -1);
    assert_int_equal(err->code, CHCP_NOT_FOUND);
    error_free(err);
    err = NULL;
    mode_t old = umask(0);
    assert_int_equal(vm_record_write(c->dir, text, &err), 0);
    umask(old);
    assert_int_equal(mode_of(c->dir, VM_RECORD_FILE), 0600);
    assert_int_equal(vm_record_read(c->dir, &back, &err), 0);
    assert_string_equal(back.id, "web-1");
    vm_record_file_clear(&back);
    /* A symlink is never followed. */
    char link[128], target[128];
    snprintf(link, sizeof(link), "%s/" VM_RECORD_FILE, c->dir);
    snprintf(target, sizeof(target), "%s/elsewhere", c->dir);
    rename(link, target);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(vm_record_read(c->dir, &back, &err), -1);
    assert_int_equal(err->code, CHCP_DATA_LOSS);
    error_free(err);
    err = NULL;
    /* Writing replaces the link itself (rename), leaving the target alone. */
    assert_int_equal(vm_record_write(c->dir, "{}", &err), 0);
    struct stat sb;
    assert_int_equal(lstat(link, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    free(text);
}

/* Through the writer: the record lands before its row is committed, a put
 * whose record cannot be written is not committed either, and removing a
 * directory is ordered with the writes queued before it. */
static void test_put_with_record(void **state)
{
    ctx *c = *state;
    chcp_error *err = NULL;
    vm_store *s = vm_store_open(&c->loop, c->dir, NULL, &err);
    char vmdir[128], gone[128];
    snprintf(vmdir, sizeof(vmdir), "%s/vm-a", c->dir);
    snprintf(gone, sizeof(gone), "%s/no-such-dir", c->dir);
    assert_int_equal(mkdir(vmdir, 0700), 0);
    vm_record_file f = sample_record();
    char *text = vm_record_render(&f, NULL);
    done_count = fail_count = 0;
    vm_store_row a = row("vm-a", 4), b = row("vm-b", 4);
    vm_store_put(s, &a, vmdir, text, on_done, NULL);
    vm_store_put(s, &b, gone, text, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(done_count, 1);
    assert_int_equal(fail_count, 1);
    vm_record_file back;
    assert_int_equal(vm_record_read(vmdir, &back, &err), 0);
    vm_record_file_clear(&back);
    int n = 0;
    assert_int_equal(vm_store_load(s, no_row, &n, &err), 0);
    assert_int_equal(n, 1); /* vm-b's row was not written */
    /* Two writes of one VM's record in one batch (they share vm.json.tmp):
     * both land, the later wins. */
    vm_record_file g = sample_record();
    g.state = 5;
    char *text2 = vm_record_render(&g, NULL);
    int done_before = done_count;
    vm_store_put(s, &a, vmdir, text, on_done, NULL);
    vm_store_put(s, &a, vmdir, text2, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(done_count, done_before + 2);
    assert_int_equal(fail_count, 1);
    assert_int_equal(vm_record_read(vmdir, &back, &err), 0);
    assert_int_equal(back.state, 5);
    vm_record_file_clear(&back);
    free(text2);
    /* A put queued before the removal is written, then the directory goes
     * (with the record), then the row. */
    vm_store_put(s, &a, vmdir, text, on_done, NULL);
    vm_store_delete(s, "vm-a", vmdir, true, on_done, NULL);
    vm_store_flush(s);
    assert_int_equal(fail_count, 1);
    assert_int_equal(access(vmdir, F_OK), -1);
    n = 0;
    assert_int_equal(vm_store_load(s, no_row, &n, &err), 0);
    assert_int_equal(n, 0);
    vm_store_close(s);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    free(text);
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
        cmocka_unit_test_setup_teardown(test_file_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_and_reopen, setup, teardown),
        cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_record_refusals),
        cmocka_unit_test_setup_teardown(test_record_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_with_record, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
