/*
 * store.h - the durable VM registry: one SQLite row per VM (internal to the
 * vm module; the manager is its only user).
 *
 * Writes never run on the event loop: they go to one writer thread, which
 * commits whatever has queued up in a single transaction (group commit; WAL
 * with synchronous=NORMAL, so an acknowledged write survives any crash of the
 * daemon - see store.c) and reports each write's outcome back on the loop. Reads happen once, at
 * start, before the API is served.
 */
#ifndef CHCP_VM_STORE_H
#define CHCP_VM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

#define VM_STORE_SCHEMA_VERSION 1

/* One VM as stored. Strings may be NULL (stored as NULL/empty). */
typedef struct vm_store_row {
    const char *id;
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

/*
 * Open (creating if needed) `<dir>/chcp.db`, migrate it to the current
 * schema, and start the writer thread. Refuses, with a message naming the
 * file, a database that is corrupt, locked by another process, from a newer
 * schema, or not writable.
 */
vm_store *vm_store_open(uv_loop_t *loop, const char *dir, chcp_error **err);

/* Called on the loop once the write is durable (err NULL) or failed. */
typedef void (*vm_store_done_fn)(const chcp_error *err, void *ud);

/* Insert or replace a row (copied). */
void vm_store_put(vm_store *s, const vm_store_row *row, vm_store_done_fn done, void *ud);
void vm_store_delete(vm_store *s, const char *id, vm_store_done_fn done, void *ud);

/* Synchronous read of every row, for start-up recovery only (the writer
 * must be idle). `fn` gets rows whose memory lives until it returns. */
typedef void (*vm_store_row_fn)(const vm_store_row *row, void *ud);
int vm_store_load(vm_store *s, vm_store_row_fn fn, void *ud, chcp_error **err);

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

#endif
