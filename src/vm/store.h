/*
 * store.h - the durable VM registry (internal to the vm module; the manager
 * is its only user): one SQLite row per VM in <state_dir>/chcp.db, and a
 * small per-VM record file, <state_dir>/vms/<id>/vm.json, from which the rows
 * can be rebuilt when the database is lost (docs/durability.md).
 *
 * Writes never run on the event loop: they go to one writer thread, which
 * commits whatever has queued up in a single transaction (group commit; WAL
 * with synchronous=NORMAL, so an acknowledged write survives any crash of the
 * daemon - see store.c) and reports each write's outcome back on the loop.
 * Record files and VM directory removals go through the same thread, in the
 * same order: a record file is written (tmp + rename) before the row of the
 * same write is committed, and nothing can write a VM's record file
 * after its directory was removed. Reads happen once, at start, before the
 * API is served.
 */
#ifndef CHCP_VM_STORE_H
#define CHCP_VM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

/* 1: the vms table; 2: which backend owns each VM. */
#define VM_STORE_SCHEMA_VERSION 2
/* What every VM stored before schema 2 ran on. */
#define VM_STORE_DEFAULT_BACKEND "cloud-hypervisor"

/* One VM as stored. Strings may be NULL (stored as NULL/empty). */
typedef struct vm_store_row {
    const char *id;
    const char *backend;   /* NULL = VM_STORE_DEFAULT_BACKEND */
    const uint8_t *config; /* serialized cloudhypervisor.v1.VmConfig */
    size_t config_len;
    const uint8_t *labels; /* serialized labels (opaque to the store) */
    size_t labels_len;
    int desired_state;
    int state; /* last state observed and confirmed */
    const char *state_reason;
    int64_t vmm_pid;         /* 0 = none */
    uint64_t vmm_start_time; /* /proc/<pid>/stat field 22, defeats pid reuse */
    const char *api_socket;
    const char *event_file;
    uint64_t event_offset;
    int32_t exit_code;
    int32_t exit_signal;
    uint64_t exited_at_ns;
    uint64_t created_at_ns;
    uint64_t updated_at_ns;
    uint64_t state_changed_at_ns;
    uint64_t generation; /* bumped by every write of this VM */
} vm_store_row;

typedef struct vm_store vm_store;

/* What vm_store_open() found. */
typedef struct vm_store_info {
    bool created;      /* chcp.db did not exist, or was empty (0 bytes) */
    int found_version; /* schema version before migration (0 = new) */
    bool fixed_modes;  /* chcp.db, -wal or -shm had a mode other than 0600 */
} vm_store_info;

/*
 * Open (creating if needed) `<dir>/chcp.db` (mode 0600, and so are its -wal
 * and -shm), migrate it to the current schema, and start the writer thread.
 * Refuses, with a message naming the file: a corrupt database
 * (CHCP_DATA_LOSS), one from a newer schema (CHCP_FAILED_PRECONDITION),
 * one locked by another chcp-api (CHCP_UNAVAILABLE), a state directory
 * others can write to or that is not writable (CHCP_PERMISSION_DENIED).
 * `info` (optional) tells what was found.
 */
vm_store *vm_store_open(uv_loop_t *loop, const char *dir, vm_store_info *info, chcp_error **err);

/* Called on the loop once the write is durable (err NULL) or failed. */
typedef void (*vm_store_done_fn)(const chcp_error *err, void *ud);

/* Insert or replace a row (copied). When `record_dir` is set, `record`
 * (the text of vm.json) is first written atomically into that directory;
 * if that fails, the row is not written either and the write fails. */
void vm_store_put(vm_store *s, const vm_store_row *row, const char *record_dir, const char *record,
                  vm_store_done_fn done, void *ud);
/* Remove the VM directory `dir` (NULL: none) and then the row (when
 * `delete_row`). A directory that cannot be removed is logged, the row is
 * deleted anyway (its record file says why it is there, see recovery.c). */
void vm_store_delete(vm_store *s, const char *id, const char *dir, bool delete_row,
                     vm_store_done_fn done, void *ud);

/* Synchronous read of every row, for start-up recovery only (the writer
 * must be idle). `fn` gets rows whose memory lives until it returns. */
typedef void (*vm_store_row_fn)(const vm_store_row *row, void *ud);
int vm_store_load(vm_store *s, vm_store_row_fn fn, void *ud, chcp_error **err);

/*
 * Is the database still the file at <dir>/chcp.db, and the lock still the
 * file at <dir>/chcp.lock? NULL when so, else a sentence saying what
 * happened (malloc'ed). For the state directory watch (statewatch.c).
 */
char *vm_store_check(vm_store *s);
/* Open <dir>/chcp.db (and the lock) again, creating them if needed, after
 * they were deleted or replaced under the running daemon. Blocks until
 * every queued write is done first (the writer stays idle meanwhile). */
int vm_store_reopen(vm_store *s, chcp_error **err);

/* Tests only: cap the database at its current size plus `extra_pages`
 * (PRAGMA max_page_count), so writes that need room fail with SQLITE_FULL
 * exactly as on a full disk. */
int vm_store_limit_pages(vm_store *s, int extra_pages);

/* Writes queued or running. */
size_t vm_store_pending(const vm_store *s);
/* Wait (blocking, for shutdown only) until every queued write is done. */
void vm_store_flush(vm_store *s);
/* Flush, stop the writer, close the database. Pending callbacks still run
 * if the loop runs after this; callers normally flush first. */
void vm_store_close(vm_store *s);

/* ---- per-VM record files (vmfile.c) ------------------------------------------ */

#define VM_RECORD_FILE "vm.json"
#define VM_RECORD_FORMAT 1

typedef enum vm_record_phase {
    VM_PHASE_CREATING, /* CreateVm began; never acknowledged while it says so */
    VM_PHASE_ACTIVE,   /* CreateVm acknowledged (or about to be, see durability.md) */
    VM_PHASE_DELETING, /* DeleteVm (or a failed CreateVm) began: finish the removal */
} vm_record_phase;

/*
 * The content of vm.json. Rendering borrows every pointer; vm_record_parse
 * allocates them (vm_record_file_clear frees).
 */
typedef struct vm_record_file {
    const char *id;
    const char *backend;
    vm_record_phase phase;
    const uint8_t *config; /* packed cloudhypervisor.v1.VmConfig */
    size_t config_len;
    const uint8_t *labels; /* the labels as the store keeps them (JSON object) */
    size_t labels_len;
    int state;               /* vm_state */
    int64_t vmm_pid;         /* 0 = none */
    uint64_t vmm_start_time; /* with the pid: the process identity */
    bool has_exit;
    int32_t exit_code;
    int32_t exit_signal;
    uint64_t exited_at_ns;
    uint64_t created_at_ns;
    uint64_t state_changed_at_ns;
    uint64_t generation; /* of the row when this was written (not hashed) */
} vm_record_file;

/* The JSON text (malloc'ed, one line) and a hash of everything but the
 * generation, so an unchanged record is not written again. */
char *vm_record_render(const vm_record_file *f, uint64_t *hash);
/* Parse vm.json's text; -1 with CHCP_DATA_LOSS naming what is wrong. */
int vm_record_parse(const char *text, size_t len, vm_record_file *out, chcp_error **err);
/* Read <dir>/vm.json: 0, or -1 with CHCP_NOT_FOUND when there is none and
 * CHCP_DATA_LOSS when it cannot be read or parsed. */
int vm_record_read(const char *dir, vm_record_file *out, chcp_error **err);
void vm_record_file_clear(vm_record_file *f);
/* Write <dir>/vm.json atomically: <dir>/vm.json.tmp, then rename. Mode 0600,
 * never following a symlink. Not fsync'ed, like the store's rows
 * (synchronous=NORMAL): it survives any crash of the daemon; see
 * docs/durability.md for a power loss. */
int vm_record_write(const char *dir, const char *text, chcp_error **err);
const char *vm_record_phase_name(vm_record_phase p);

#endif
