/*
 * store.c - SQLite-backed VM registry with a group-committing writer thread.
 *
 * Why a thread: SQLite calls block (file I/O, checkpoints' fsync), and the
 * event loop must never block. Why group commit: the writer takes everything
 * queued since its last commit and writes it in one transaction.
 *
 * Durability: WAL with synchronous=NORMAL. A committed transaction is in the
 * WAL in the kernel's page cache before the write is acknowledged, so it
 * survives any crash or kill of the daemon - the failure chcp exists to
 * survive. Only a power loss or kernel crash can lose the last transactions,
 * and those take every VM down with them anyway; the next start then
 * reclaims the VMM directories no record owns. synchronous=FULL would add an
 * fsync (3-4 ms measured here) to every CreateVm, BootVm, ... for that case.
 */
#include "vm/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_WAIT_MS 2000 /* start-up only */

typedef struct store_op {
    struct store_op *next;
    bool is_delete;
    vm_store_row row; /* owned copies */
    char *error;      /* set by the writer on failure */
    vm_store_done_fn done;
    void *ud;
} store_op;

struct vm_store {
    uv_loop_t *loop;
    sqlite3 *db;
    char *path;
    int lock_fd;
    pthread_t writer;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* writer waits for work; flush waits for idle */
    store_op *queue_head, *queue_tail;
    store_op *done_head, *done_tail;
    size_t pending; /* queued + being written */
    bool stop;
    uv_async_t async;
};

static const char *const schema_v1[] = {
    "CREATE TABLE vms ("
    " id TEXT PRIMARY KEY,"
    " config BLOB NOT NULL,"
    " labels BLOB,"
    " desired_state INTEGER NOT NULL,"
    " state INTEGER NOT NULL,"
    " state_reason TEXT,"
    " vmm_pid INTEGER NOT NULL DEFAULT 0,"
    " vmm_start_time INTEGER NOT NULL DEFAULT 0,"
    " api_socket TEXT,"
    " event_file TEXT,"
    " event_offset INTEGER NOT NULL DEFAULT 0,"
    " exit_code INTEGER NOT NULL DEFAULT 0,"
    " exit_signal INTEGER NOT NULL DEFAULT 0,"
    " exited_at_ns INTEGER NOT NULL DEFAULT 0,"
    " created_at_ns INTEGER NOT NULL,"
    " updated_at_ns INTEGER NOT NULL,"
    " state_changed_at_ns INTEGER NOT NULL,"
    " generation INTEGER NOT NULL"
    ") STRICT",
    NULL,
};

/* Migration i brings the schema from version i to i+1. */
static const char *const *const migrations[] = {schema_v1};

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void *dup_bytes(const void *p, size_t n)
{
    if (!p || !n)
        return NULL;
    void *q = xmalloc(n);
    memcpy(q, p, n);
    return q;
}

static void op_free(store_op *op)
{
    free((char *)op->row.id);
    free((void *)op->row.config);
    free((void *)op->row.labels);
    free((char *)op->row.state_reason);
    free((char *)op->row.api_socket);
    free((char *)op->row.event_file);
    free(op->error);
    free(op);
}

/* ---- schema --------------------------------------------------------------- */

static int exec_sql(vm_store *s, const char *sql, chcp_error **err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        error_set(err, CHCP_INTERNAL, "%s: %s", s->path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int user_version(vm_store *s, int *out, chcp_error **err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return 0;
    }
    error_set(err, CHCP_INTERNAL, "%s: not a usable SQLite database: %s", s->path,
              sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return -1;
}

static int migrate(vm_store *s, chcp_error **err)
{
    int version;
    if (user_version(s, &version, err) < 0)
        return -1;
    if (version > VM_STORE_SCHEMA_VERSION)
        return error_set(err, CHCP_FAILED_PRECONDITION,
                         "%s: schema version %d is newer than this chcp-api supports (%d); "
                         "refusing to touch it",
                         s->path, version, VM_STORE_SCHEMA_VERSION);
    for (; version < VM_STORE_SCHEMA_VERSION; version++) {
        if (exec_sql(s, "BEGIN IMMEDIATE", err) < 0)
            return -1;
        for (const char *const *sql = migrations[version]; *sql; sql++) {
            if (exec_sql(s, *sql, err) < 0) {
                exec_sql(s, "ROLLBACK", NULL);
                return -1;
            }
        }
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", version + 1);
        if (exec_sql(s, bump, err) < 0 || exec_sql(s, "COMMIT", err) < 0) {
            exec_sql(s, "ROLLBACK", NULL);
            return -1;
        }
    }
    return 0;
}

static int check_integrity(vm_store *s, chcp_error **err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        error_set(err, CHCP_DATA_LOSS, "%s: cannot check the database: %s", s->path,
                  sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return -1;
    }
    const char *res = (const char *)sqlite3_column_text(st, 0);
    int rc = 0;
    if (!res || strcmp(res, "ok") != 0)
        rc =
            error_set(err, CHCP_DATA_LOSS, "%s: database is corrupt: %s", s->path, res ? res : "?");
    sqlite3_finalize(st);
    return rc;
}

/* ---- the writer thread ---------------------------------------------------- */

static int write_op(sqlite3 *db, store_op *op)
{
    static const char put_sql[] =
        "INSERT OR REPLACE INTO vms (id, config, labels, desired_state, state, state_reason,"
        " vmm_pid, vmm_start_time, api_socket, event_file, event_offset, exit_code, exit_signal,"
        " exited_at_ns, created_at_ns, updated_at_ns, state_changed_at_ns, generation)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = NULL;
    const vm_store_row *r = &op->row;
    int rc = sqlite3_prepare_v2(db, op->is_delete ? "DELETE FROM vms WHERE id = ?" : put_sql, -1,
                                &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    if (!op->is_delete) {
        sqlite3_bind_blob(st, 2, r->config ? (const void *)r->config : "", (int)r->config_len,
                          SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, r->labels, (int)r->labels_len, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, r->desired_state);
        sqlite3_bind_int(st, 5, r->state);
        sqlite3_bind_text(st, 6, r->state_reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, r->vmm_pid);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)r->vmm_start_time);
        sqlite3_bind_text(st, 9, r->api_socket, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, r->event_file, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 11, (sqlite3_int64)r->event_offset);
        sqlite3_bind_int(st, 12, r->exit_code);
        sqlite3_bind_int(st, 13, r->exit_signal);
        sqlite3_bind_int64(st, 14, (sqlite3_int64)r->exited_at_ns);
        sqlite3_bind_int64(st, 15, (sqlite3_int64)r->created_at_ns);
        sqlite3_bind_int64(st, 16, (sqlite3_int64)r->updated_at_ns);
        sqlite3_bind_int64(st, 17, (sqlite3_int64)r->state_changed_at_ns);
        sqlite3_bind_int64(st, 18, (sqlite3_int64)r->generation);
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Commit a batch in one transaction. On failure every op of the batch fails:
 * the transaction was rolled back, so none of them is durable. */
static void write_batch(vm_store *s, store_op *batch)
{
    const char *failure = NULL;
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (store_op *op = batch; rc == SQLITE_OK && op; op = op->next)
        rc = write_op(s->db, op);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        failure = sqlite3_errmsg(s->db);
        for (store_op *op = batch; op; op = op->next)
            op->error = xasprintf("%s: writing VM %s: %s", s->path, op->row.id, failure);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

static void *writer_main(void *arg)
{
    vm_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->queue_head && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->queue_head && s->stop)
            break;
        store_op *batch = s->queue_head;
        s->queue_head = s->queue_tail = NULL;
        pthread_mutex_unlock(&s->mu);

        write_batch(s, batch);

        pthread_mutex_lock(&s->mu);
        store_op *last = batch;
        while (last->next)
            last = last->next;
        if (s->done_tail)
            s->done_tail->next = batch;
        else
            s->done_head = batch;
        s->done_tail = last;
        pthread_cond_broadcast(&s->cv); /* a flush may be waiting */
        uv_async_send(&s->async);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* On the loop: report finished writes. */
static void on_writes_done(uv_async_t *async)
{
    vm_store *s = async->data;
    pthread_mutex_lock(&s->mu);
    store_op *op = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (op) {
        store_op *next = op->next;
        chcp_error e = {.code = CHCP_UNAVAILABLE, .message = op->error};
        if (op->done)
            op->done(op->error ? &e : NULL, op->ud);
        pthread_mutex_lock(&s->mu);
        s->pending--;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        op_free(op);
        op = next;
    }
}

static void enqueue(vm_store *s, store_op *op)
{
    pthread_mutex_lock(&s->mu);
    if (s->queue_tail)
        s->queue_tail->next = op;
    else
        s->queue_head = op;
    s->queue_tail = op;
    s->pending++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void vm_store_put(vm_store *s, const vm_store_row *row, vm_store_done_fn done, void *ud)
{
    store_op *op = xcalloc(1, sizeof(*op));
    op->row = *row;
    op->row.id = xstrdup(row->id);
    op->row.config = dup_bytes(row->config, row->config_len);
    op->row.labels = dup_bytes(row->labels, row->labels_len);
    op->row.state_reason = dup_or_null(row->state_reason);
    op->row.api_socket = dup_or_null(row->api_socket);
    op->row.event_file = dup_or_null(row->event_file);
    op->done = done;
    op->ud = ud;
    enqueue(s, op);
}

void vm_store_delete(vm_store *s, const char *id, vm_store_done_fn done, void *ud)
{
    store_op *op = xcalloc(1, sizeof(*op));
    op->is_delete = true;
    op->row.id = xstrdup(id);
    op->done = done;
    op->ud = ud;
    enqueue(s, op);
}

int vm_store_limit_pages(vm_store *s, int extra_pages)
{
    sqlite3_stmt *st = NULL;
    int pages = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA page_count", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        pages = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (pages < 0)
        return -1;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %d", pages + extra_pages);
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

size_t vm_store_pending(const vm_store *s)
{
    return s->pending;
}

/* ---- open / load / close -------------------------------------------------- */

static int lock_dir(vm_store *s, const char *dir, chcp_error **err)
{
    cleanup_free char *lock = xasprintf("%s/chcp.lock", dir);
    s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0)
        return error_set_errno(err, CHCP_PERMISSION_DENIED, errno, "cannot open %s", lock);
    /* A daemon killed mid-spawn leaves a forked child that holds the lock
     * until its exec closes it (O_CLOEXEC): give such a child a moment
     * before concluding that another chcp-api runs. */
    for (int i = 0; flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0; i++) {
        if (errno != EWOULDBLOCK || i >= LOCK_WAIT_MS / 10)
            return error_set(err, CHCP_FAILED_PRECONDITION,
                             "%s is locked: another chcp-api is using state directory %s", lock,
                             dir);
        usleep(10000);
    }
    return 0;
}

vm_store *vm_store_open(uv_loop_t *loop, const char *dir, chcp_error **err)
{
    vm_store *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->lock_fd = -1;
    s->path = xasprintf("%s/chcp.db", dir);
    /* The directory holds VMM sockets and the registry: anyone who can
     * write to it can redirect chcp to their own "VMM". */
    struct stat sb;
    if (stat(dir, &sb) < 0) {
        error_set_errno(err, CHCP_FAILED_PRECONDITION, errno, "state directory %s", dir);
        goto fail;
    }
    if (sb.st_uid != geteuid() || (sb.st_mode & 022)) {
        error_set(err, CHCP_PERMISSION_DENIED,
                  "state directory %s has owner uid %u and mode %04o: it must belong to uid %u "
                  "and not be writable by group or others (chmod 700)",
                  dir, (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 07777), (unsigned)geteuid());
        goto fail;
    }
    if (lock_dir(s, dir, err) < 0)
        goto fail;
    if (access(dir, W_OK) < 0) {
        error_set_errno(err, CHCP_PERMISSION_DENIED, errno, "state directory %s is not writable",
                        dir);
        goto fail;
    }
    int rc = sqlite3_open_v2(
        s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        error_set(err, CHCP_UNAVAILABLE, "%s: cannot open: %s", s->path,
                  s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 2000);
    if (exec_sql(s, "PRAGMA journal_mode=WAL", err) < 0 ||
        exec_sql(s, "PRAGMA synchronous=NORMAL", err) < 0 || check_integrity(s, err) < 0 ||
        migrate(s, err) < 0)
        goto fail;
    chmod(s->path, 0600);

    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    uv_async_init(loop, &s->async, on_writes_done);
    s->async.data = s;
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        error_set(err, CHCP_INTERNAL, "cannot start the store writer thread");
        uv_close((uv_handle_t *)&s->async, NULL);
        goto fail;
    }
    return s;

fail:
    if (s->db)
        sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->path);
    free(s);
    return NULL;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

int vm_store_load(vm_store *s, vm_store_row_fn fn, void *ud, chcp_error **err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            s->db,
            "SELECT id, config, labels, desired_state, state, state_reason, vmm_pid, "
            "vmm_start_time,"
            " api_socket, event_file, event_offset, exit_code, exit_signal, exited_at_ns,"
            " created_at_ns, updated_at_ns, state_changed_at_ns, generation FROM vms ORDER BY id",
            -1, &st, NULL) != SQLITE_OK)
        return error_set(err, CHCP_INTERNAL, "%s: %s", s->path, sqlite3_errmsg(s->db));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        vm_store_row r = {
            .id = col_text(st, 0),
            .config = sqlite3_column_blob(st, 1),
            .config_len = (size_t)sqlite3_column_bytes(st, 1),
            .labels = sqlite3_column_blob(st, 2),
            .labels_len = (size_t)sqlite3_column_bytes(st, 2),
            .desired_state = sqlite3_column_int(st, 3),
            .state = sqlite3_column_int(st, 4),
            .state_reason = col_text(st, 5),
            .vmm_pid = sqlite3_column_int64(st, 6),
            .vmm_start_time = (uint64_t)sqlite3_column_int64(st, 7),
            .api_socket = col_text(st, 8),
            .event_file = col_text(st, 9),
            .event_offset = (uint64_t)sqlite3_column_int64(st, 10),
            .exit_code = sqlite3_column_int(st, 11),
            .exit_signal = sqlite3_column_int(st, 12),
            .exited_at_ns = (uint64_t)sqlite3_column_int64(st, 13),
            .created_at_ns = (uint64_t)sqlite3_column_int64(st, 14),
            .updated_at_ns = (uint64_t)sqlite3_column_int64(st, 15),
            .state_changed_at_ns = (uint64_t)sqlite3_column_int64(st, 16),
            .generation = (uint64_t)sqlite3_column_int64(st, 17),
        };
        fn(&r, ud);
    }
    int result = 0;
    if (rc != SQLITE_DONE)
        result =
            error_set(err, CHCP_DATA_LOSS, "%s: reading VMs: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return result;
}

void vm_store_flush(vm_store *s)
{
    /* Completions are delivered on the loop; run it until they all are. */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        size_t pending = s->pending;
        bool done_ready = s->done_head != NULL;
        if (pending && !done_ready) {
            pthread_cond_wait(&s->cv, &s->mu);
            done_ready = s->done_head != NULL;
            pending = s->pending;
        }
        pthread_mutex_unlock(&s->mu);
        if (!pending)
            return;
        if (done_ready)
            on_writes_done(&s->async);
    }
}

static void on_async_closed(uv_handle_t *h)
{
    free(h->data);
}

void vm_store_close(vm_store *s)
{
    if (!s)
        return;
    vm_store_flush(s);
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->writer, NULL);
    sqlite3_close(s->db);
    close(s->lock_fd);
    free(s->path);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    /* The async handle lives inside s: free s when libuv has let go of it. */
    s->async.data = s;
    uv_close((uv_handle_t *)&s->async, on_async_closed);
}
