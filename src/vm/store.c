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
 *
 * Files: chcp.db and its -wal and -shm are 0600. SQLite creates -wal and
 * -shm with the mode of chcp.db, so chcp.db is created 0600 before SQLite
 * opens it (and older installations' files are chmod'ed at open).
 *
 * The same thread writes the per-VM record files (vm.json, vmfile.c) and
 * removes VM directories, in queue order: a record file is in place before
 * the row of the same write is committed, and no record file write can land
 * in a VM directory after its removal.
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

#include "vm/vm_internal.h"

#define LOCK_WAIT_MS 2000 /* start-up only */

typedef struct store_op {
    struct store_op *next;
    bool is_delete;
    bool delete_row;  /* is_delete: the row goes too */
    vm_store_row row; /* owned copies */
    char *record_dir; /* put: write record into this directory first */
    char *record;     /* put: vm.json text */
    char *remove_dir; /* delete: remove this directory first */
    bool skip;        /* the writer failed it before the transaction */
    char *error;      /* set by the writer on failure */
    char *warning;    /* delete: the directory could not be removed */
    vm_store_done_fn done;
    void *ud;
} store_op;

/* Which file a path named when we opened it. */
typedef struct file_id {
    dev_t dev;
    ino_t ino;
} file_id;

struct vm_store {
    uv_loop_t *loop;
    sqlite3 *db;
    char *dir;
    char *path;
    char *lock_path;
    int lock_fd;
    file_id db_id, lock_id;
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

static const char *const schema_v2[] = {
    "ALTER TABLE vms ADD COLUMN backend TEXT NOT NULL DEFAULT '" VM_STORE_DEFAULT_BACKEND "'",
    NULL,
};

/* Migration i brings the schema from version i to i+1. */
static const char *const *const migrations[] = {schema_v1, schema_v2};

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
    free((char *)op->row.backend);
    free(op->record_dir);
    free(op->record);
    free(op->remove_dir);
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

static bool has_vms_table(vm_store *s)
{
    sqlite3_stmt *st = NULL;
    bool found = sqlite3_prepare_v2(s->db,
                                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                    "name = 'vms'",
                                    -1, &st, NULL) == SQLITE_OK &&
                 sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

static int migrate(vm_store *s, chcp_error **err)
{
    int version;
    if (user_version(s, &version, err) < 0)
        return -1;
    /* A dropped table is a database that lost every row: make it again
     * (recovery rebuilds the rows from the record files). */
    if (version > 0 && version <= VM_STORE_SCHEMA_VERSION && !has_vms_table(s))
        version = 0;
    if (version > VM_STORE_SCHEMA_VERSION)
        return error_set(err, CHCP_FAILED_PRECONDITION,
                         "%s: schema version %d is newer than this chcp-api supports (%d); "
                         "refusing to touch it. Nothing was changed and no VM was touched: run "
                         "the chcp-api that wrote it (docs/durability.md)",
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
        error_set(err, CHCP_DATA_LOSS, "cannot check it: %s", sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return -1;
    }
    const char *res = (const char *)sqlite3_column_text(st, 0);
    int rc = 0;
    if (!res || strcmp(res, "ok") != 0)
        rc = error_set(err, CHCP_DATA_LOSS, "quick_check says %s", res ? res : "?");
    sqlite3_finalize(st);
    return rc;
}

/* ---- the writer thread ---------------------------------------------------- */

static int write_op(sqlite3 *db, store_op *op)
{
    static const char put_sql[] =
        "INSERT OR REPLACE INTO vms (id, config, labels, desired_state, state, state_reason,"
        " vmm_pid, vmm_start_time, api_socket, event_file, event_offset, exit_code, exit_signal,"
        " exited_at_ns, created_at_ns, updated_at_ns, state_changed_at_ns, generation, backend)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
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
        sqlite3_bind_text(st, 19, r->backend ? r->backend : VM_STORE_DEFAULT_BACKEND, -1,
                          SQLITE_STATIC);
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Before the transaction: record files (durable before their rows) and
 * directory removals, in queue order. A put whose record file cannot be
 * written is failed and left out of the transaction. */
static void write_files(store_op *batch)
{
    for (store_op *op = batch; op; op = op->next) {
        chcp_error *err = NULL;
        if (!op->is_delete && op->record_dir &&
            vm_record_write(op->record_dir, op->record, &err) < 0) {
            op->skip = true;
            op->error = xasprintf("writing the record of VM %s: %s", op->row.id, err->message);
        } else if (op->is_delete && op->remove_dir && vm_dir_remove(op->remove_dir, &err) < 0) {
            op->warning = xstrdup(err->message);
        }
        error_free(err);
    }
}

/* Commit a batch in one transaction. On failure every op of the batch fails:
 * the transaction was rolled back, so none of them is durable. */
static void write_batch(vm_store *s, store_op *batch)
{
    write_files(batch);
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (store_op *op = batch; rc == SQLITE_OK && op; op = op->next)
        if (!op->skip && (!op->is_delete || op->delete_row))
            rc = write_op(s->db, op);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        const char *failure = sqlite3_errmsg(s->db);
        for (store_op *op = batch; op; op = op->next)
            if (!op->error)
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
        if (op->warning)
            log_vm(LOG_WARN, op->row.id, "%s", op->warning);
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

void vm_store_put(vm_store *s, const vm_store_row *row, const char *record_dir, const char *record,
                  vm_store_done_fn done, void *ud)
{
    store_op *op = xcalloc(1, sizeof(*op));
    op->row = *row;
    op->row.id = xstrdup(row->id);
    op->row.backend = dup_or_null(row->backend);
    op->row.config = dup_bytes(row->config, row->config_len);
    op->row.labels = dup_bytes(row->labels, row->labels_len);
    op->row.state_reason = dup_or_null(row->state_reason);
    op->row.api_socket = dup_or_null(row->api_socket);
    op->row.event_file = dup_or_null(row->event_file);
    if (record_dir && record) {
        op->record_dir = xstrdup(record_dir);
        op->record = xstrdup(record);
    }
    op->done = done;
    op->ud = ud;
    enqueue(s, op);
}

void vm_store_delete(vm_store *s, const char *id, const char *dir, bool delete_row,
                     vm_store_done_fn done, void *ud)
{
    store_op *op = xcalloc(1, sizeof(*op));
    op->is_delete = true;
    op->delete_row = delete_row;
    op->row.id = xstrdup(id);
    op->remove_dir = dup_or_null(dir);
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

static void identify_stat(int rc, const struct stat *sb, file_id *out)
{
    *out = rc == 0 ? (file_id){.dev = sb->st_dev, .ino = sb->st_ino} : (file_id){0};
}

static void identify_fd(int fd, file_id *out)
{
    struct stat sb;
    identify_stat(fstat(fd, &sb), &sb, out);
}

static void identify_path(const char *path, file_id *out)
{
    struct stat sb;
    identify_stat(stat(path, &sb), &sb, out);
}

static int lock_dir(vm_store *s, chcp_error **err)
{
    s->lock_fd = open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lock_fd < 0)
        return error_set_errno(err, CHCP_PERMISSION_DENIED, errno, "cannot open %s", s->lock_path);
    struct stat sb;
    if (fstat(s->lock_fd, &sb) == 0 && (sb.st_mode & 07777) != 0600)
        fchmod(s->lock_fd, 0600); /* an older installation's */
    /* A daemon killed mid-spawn leaves a forked child that holds the lock
     * until its exec closes it (O_CLOEXEC): give such a child a moment
     * before concluding that another chcp-api runs. */
    for (int i = 0; flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0; i++) {
        if (errno != EWOULDBLOCK || i >= LOCK_WAIT_MS / 10) {
            close(s->lock_fd);
            s->lock_fd = -1;
            return error_set(err, CHCP_UNAVAILABLE,
                             "%s is locked: another chcp-api is using state directory %s",
                             s->lock_path, s->dir);
        }
        usleep(10000);
    }
    identify_fd(s->lock_fd, &s->lock_id);
    return 0;
}

/* chcp.db and its companions are 0600; SQLite gives -wal and -shm the mode
 * of chcp.db, so chcp.db is made 0600 before SQLite touches it. */
static int private_files(vm_store *s, vm_store_info *info, chcp_error **err)
{
    int fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_set_errno(err, CHCP_PERMISSION_DENIED, errno, "%s: cannot open", s->path);
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return error_set(err, CHCP_FAILED_PRECONDITION, "%s is not a regular file", s->path);
    }
    info->created = sb.st_size == 0;
    if ((sb.st_mode & 07777) != 0600) {
        info->fixed_modes = true;
        fchmod(fd, 0600);
    }
    close(fd);
    static const char *const companions[] = {"-wal", "-shm", "-journal"};
    for (size_t i = 0; i < ARRAY_SIZE(companions); i++) {
        cleanup_free char *p = xasprintf("%s%s", s->path, companions[i]);
        if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 07777) != 0600) {
            info->fixed_modes = true;
            chmod(p, 0600);
        }
    }
    return 0;
}

/* A database SQLite cannot read at all is as corrupt as one failing
 * quick_check: say so, and how to recover. */
static int refuse_corrupt(vm_store *s, const char *detail, chcp_error **err)
{
    return error_set(err, CHCP_DATA_LOSS,
                     "%s: database is corrupt: %s. Nothing was changed and no VM was touched. "
                     "To recover, move chcp.db (and chcp.db-wal, chcp.db-shm) aside and start "
                     "chcp-api again: it rebuilds the records from %s/vms/*/" VM_RECORD_FILE
                     " and re-adopts the running VMMs (docs/durability.md)",
                     s->path, detail, s->dir);
}

/* Open, check and migrate <dir>/chcp.db into s->db (the lock is held). */
static int open_db(vm_store *s, vm_store_info *info, chcp_error **err)
{
    if (private_files(s, info, err) < 0)
        return -1;
    int rc = sqlite3_open_v2(s->path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX |
                                 SQLITE_OPEN_NOFOLLOW,
                             NULL);
    if (rc != SQLITE_OK)
        return error_set(err, CHCP_UNAVAILABLE, "%s: cannot open: %s", s->path,
                         s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sqlite3_busy_timeout(s->db, 2000);
    rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT)
        return refuse_corrupt(s, sqlite3_errmsg(s->db), err);
    if (rc != SQLITE_OK || exec_sql(s, "PRAGMA synchronous=NORMAL", err) < 0)
        return error_set(err, CHCP_UNAVAILABLE, "%s: %s", s->path, sqlite3_errmsg(s->db));
    chcp_error *e = NULL;
    if (check_integrity(s, &e) < 0) {
        refuse_corrupt(s, e->message, err);
        error_free(e);
        return -1;
    }
    if (user_version(s, &info->found_version, err) < 0 || migrate(s, err) < 0)
        return -1;
    identify_path(s->path, &s->db_id);
    return 0;
}

vm_store *vm_store_open(uv_loop_t *loop, const char *dir, vm_store_info *info_out, chcp_error **err)
{
    vm_store *s = xcalloc(1, sizeof(*s));
    vm_store_info info = {0};
    s->loop = loop;
    s->lock_fd = -1;
    s->dir = xstrdup(dir);
    s->path = xasprintf("%s/chcp.db", dir);
    s->lock_path = xasprintf("%s/chcp.lock", dir);
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
    if (lock_dir(s, err) < 0)
        goto fail;
    if (access(dir, W_OK) < 0) {
        error_set_errno(err, CHCP_PERMISSION_DENIED, errno, "state directory %s is not writable",
                        dir);
        goto fail;
    }
    if (open_db(s, &info, err) < 0)
        goto fail;

    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    uv_async_init(loop, &s->async, on_writes_done);
    s->async.data = s;
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        error_set(err, CHCP_INTERNAL, "cannot start the store writer thread");
        uv_close((uv_handle_t *)&s->async, NULL);
        goto fail;
    }
    if (info_out)
        *info_out = info;
    return s;

fail:
    if (s->db)
        sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->lock_path);
    free(s->path);
    free(s->dir);
    free(s);
    return NULL;
}

static bool same_file(const char *path, const file_id *id, bool *missing)
{
    struct stat sb;
    *missing = stat(path, &sb) < 0 && errno == ENOENT;
    return !*missing && sb.st_dev == id->dev && sb.st_ino == id->ino;
}

char *vm_store_check(vm_store *s)
{
    bool missing;
    if (!same_file(s->path, &s->db_id, &missing))
        return xasprintf("%s was %s under the running chcp-api", s->path,
                         missing ? "deleted" : "replaced");
    if (!same_file(s->lock_path, &s->lock_id, &missing))
        return xasprintf("%s was %s under the running chcp-api", s->lock_path,
                         missing ? "deleted" : "replaced");
    return NULL;
}

int vm_store_reopen(vm_store *s, chcp_error **err)
{
    /* The writer is idle once the queue is empty, and only the loop (this
     * thread) queues: the database handle can be swapped. */
    vm_store_flush(s);
    bool missing;
    if (!same_file(s->lock_path, &s->lock_id, &missing)) {
        int old = s->lock_fd;
        if (lock_dir(s, err) < 0) {
            s->lock_fd = old;
            return -1;
        }
        close(old);
    }
    sqlite3 *old_db = s->db;
    s->db = NULL;
    vm_store_info info = {0};
    if (open_db(s, &info, err) < 0) {
        if (s->db)
            sqlite3_close(s->db);
        s->db = old_db;
        return -1;
    }
    sqlite3_close(old_db);
    return 0;
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
            " created_at_ns, updated_at_ns, state_changed_at_ns, generation, backend FROM vms"
            " ORDER BY id",
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
            .backend = col_text(st, 18),
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
    free(s->lock_path);
    free(s->dir);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    /* The async handle lives inside s: free s when libuv has let go of it. */
    s->async.data = s;
    uv_close((uv_handle_t *)&s->async, on_async_closed);
}
