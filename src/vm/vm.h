/*
 * vm.h - the VM manager: every VM of this host, its state machine, and the
 * per-VM operation queue that drives a VMM backend.
 *
 * The manager owns the VM records (id, validated configuration, labels,
 * observed state, VMM process identity, timestamps). Callers submit
 * operations (create, boot, pause, ...); each VM runs one operation at a time
 * in arrival order while different VMs proceed concurrently. Everything runs
 * on the libuv loop thread and nothing here blocks: the backend answers
 * asynchronously through callbacks.
 *
 * The VMM itself sits behind `vm_backend_ops`, an ops table the manager calls.
 * The daemon uses the Cloud Hypervisor backend (vm_backend_ch_new(), adapting
 * src/vmm/ch/ch.h); unit tests plug in a fake. The lifecycle semantics (state
 * x operation table) are documented in docs/lifecycle.md.
 */
#ifndef CHCP_VM_H
#define CHCP_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cloudhypervisor/v1/vm.pb-c.h"
#include "core/core.h"

/* Same numbers as cloudhypervisor.v1.VmState, so the API maps by value. */
typedef enum vm_state {
    VM_CREATING = 1,
    VM_CREATED = 2,
    VM_BOOTING = 3,
    VM_RUNNING = 4,
    VM_PAUSED = 5,
    VM_SHUTTING_DOWN = 6,
    VM_SHUTDOWN = 7,
    VM_DELETING = 8,
    VM_FAILED = 9,
    VM_CRASHED = 10,
} vm_state;

const char *vm_state_name(vm_state s); /* "RUNNING" */

#define VM_ID_MAX 63
#define VM_MAX_LABELS 64
#define VM_LABEL_KEY_MAX 63
#define VM_LABEL_VALUE_MAX 255

typedef struct vm_label {
    char *key;
    char *value;
} vm_label;

/*
 * One VM as the manager knows it. Read-only for everyone but the manager;
 * shaped so that a durable store can persist it field by field later.
 */
typedef struct vm_record {
    char id[VM_ID_MAX + 1];
    vm_state state;
    char *state_reason;  /* never NULL ("" when none) */
    uint64_t generation; /* bumped on every change */

    /* Configuration as the client sent it (packed cloudhypervisor.v1.VmConfig,
     * compared byte for byte on a repeated CreateVm) and as sent to the VMM. */
    uint8_t *config_pb;
    size_t config_pb_len;
    /* config_pb unpacked, made on first use by vm_record_config() (the
     * configuration never changes after CreateVm). */
    Cloudhypervisor__V1__VmConfig *config_msg;
    char *vmm_config_json;
    vm_label *labels; /* sorted by key */
    size_t n_labels;

    /* Private directory (0700) holding the console log and sockets. */
    char *dir;

    /* The VMM process (spawn mode) or endpoint (attach mode). */
    int vmm_pid;             /* 0 when none runs */
    uint64_t vmm_start_time; /* /proc start time (clock ticks) to guard pid reuse */
    uint64_t event_offset;   /* bytes of the event stream consumed */
    bool has_exit;           /* the VMM process ended */
    int exit_code;           /* when it exited */
    int exit_signal;         /* when killed by a signal */
    uint64_t exited_at_ns;   /* wall clock */
    char *vmm_state;         /* CH's vm.info state, "" when unknown */
    uint64_t memory_actual_size;

    uint64_t created_at_ns;       /* wall clock */
    uint64_t updated_at_ns;       /* wall clock */
    uint64_t state_changed_at_ns; /* wall clock */
} vm_record;

/* ---- the backend the manager drives ------------------------------------ */

typedef enum vmb_action {
    VMB_PING,
    VMB_CREATE, /* body: the VMM JSON configuration */
    VMB_BOOT,
    VMB_SHUTDOWN,
    VMB_REBOOT,
    VMB_PAUSE,
    VMB_RESUME,
    VMB_POWER_BUTTON,
    VMB_DELETE,
    VMB_INFO,     /* reply body: vm.info JSON */
    VMB_COUNTERS, /* reply body: vm.counters JSON {device: {counter: n}} */
} vmb_action;

typedef struct vmb_reply {
    int status; /* HTTP status, 0 when the request never got an answer */
    const char *body;
    size_t body_len;
} vmb_reply;

/*
 * Completion of an asynchronous backend call: `err` is NULL on success (2xx)
 * and is owned by the callee, which must error_free() it. `reply` may be NULL.
 * Completions never run inside the call that started them.
 */
typedef void (*vmb_done_fn)(void *ud, chcp_error *err, const vmb_reply *reply);

typedef struct vmb_callbacks {
    /* An event from the VMM's event monitor ("vm", "shutdown"). */
    void (*on_event)(void *ud, const char *source, const char *event);
    /* The VMM process ended (also during stop). `detail` is e.g. the stderr
     * tail; may be NULL. */
    void (*on_exit)(void *ud, int exit_code, int signal, const char *detail);
} vmb_callbacks;

typedef struct vmb_start_params {
    const char *vm_id;
    const char *dir; /* the VM's private directory */
} vmb_start_params;

typedef struct vmb_adopt_params {
    const char *vm_id;
    const char *dir;
    int pid;
    uint64_t start_time;
    uint64_t event_offset;
} vmb_adopt_params;

typedef struct vm_backend_ops {
    /* Stored with every VM ("cloud-hypervisor"); NULL means that. */
    const char *name;
    /* Start the VMM of one VM (spawn, or connect in attach mode) and wait for
     * it to answer a ping; `done` fires once. Returns the VMM handle, or NULL
     * with *err when nothing could be started (then `done` never fires). */
    void *(*start)(void *backend, const vmb_start_params *p, const vmb_callbacks *cb, void *cb_ud,
                   vmb_done_fn done, void *done_ud, chcp_error **err);
    /* One API request; `done` fires once, also when the VMM dies or stops. */
    void (*request)(void *vmm, vmb_action action, const char *body, uint64_t timeout_ms,
                    vmb_done_fn done, void *ud);
    /* Make the VMM go away: spawn mode stops the process (vmm.shutdown with a
     * short timeout, SIGTERM, SIGKILL to its group); attach mode sends
     * vm.delete and leaves the process. `done` fires once it is gone. */
    void (*stop)(void *vmm, vmb_done_fn done, void *ud);
    /* Free the handle: no callback fires afterwards (pending requests
     * complete, canceled, inside the call). Never stops the process: VMMs
     * outlive their handle (durable mode re-adopts them at the next start);
     * use `stop` first when the VM is to go away. */
    void (*release)(void *vmm);
    /* Process identity (0 when unknown / attach mode). */
    int (*pid)(void *vmm);
    uint64_t (*start_time)(void *vmm);
    /* Free the backend itself (all VMMs released first). */
    void (*free)(void *backend);
    /* Durable mode (optional, NULL = not supported): take over a VMM started
     * by an earlier daemon run (no `done`: it is ready or refused at once;
     * CHCP_NOT_FOUND when the process is gone or the pid is someone else's),
     * and the resume point in its event stream, saved with the record. */
    void *(*adopt)(void *backend, const vmb_adopt_params *p, const vmb_callbacks *cb, void *cb_ud,
                   chcp_error **err);
    uint64_t (*event_offset)(void *vmm);
} vm_backend_ops;

/* ---- the manager -------------------------------------------------------- */

typedef struct vm_manager vm_manager;

typedef struct vm_manager_config {
    const char *state_dir;         /* VMs live in <state_dir>/vms/<id>/ */
    const char *const *image_dirs; /* allowed roots for client paths */
    size_t n_image_dirs;
    uint32_t max_vcpus;             /* per VM */
    uint64_t max_memory_mib;        /* per VM */
    uint32_t max_concurrent_starts; /* CreateVm/BootVm in progress; 0 = unlimited */
    uint32_t max_vms;               /* 0 = 4096 */
    bool attach_mode;               /* one pre-started VMM, at most one VM */
    /* Timeouts in ms (0 = default): VMM API calls, vm.boot, the vm.info
     * refresh of GetVmInfo. */
    uint64_t api_timeout_ms;  /* default 10000 */
    uint64_t boot_timeout_ms; /* default 30000 */
    uint64_t info_timeout_ms; /* default 500 */
    uint32_t max_queue;       /* operations waiting per VM; 0 = 64 */
    /* Durable mode (docs/durability.md): records live in <state_dir>/chcp.db,
     * VMMs outlive the daemon and are re-adopted by vm_manager_recover(). */
    bool durable;
    bool orphan_keep; /* CHCP_ORPHAN_POLICY=keep: log unowned VMMs/dirs, leave them */
} vm_manager_config;

/* The manager takes ownership of `backend` (freed with ops->free). */
vm_manager *vm_manager_new(uv_loop_t *loop, const vm_manager_config *cfg, const vm_backend_ops *ops,
                           void *backend, chcp_error **err);
/* Durable mode: write every record, let go of every VMM (they keep running)
 * and close the store; `done` fires before this returns. Otherwise: stop
 * every VMM and remove every VM directory; `done` fires when all are gone.
 * Calling it again does nothing. */
void vm_manager_shutdown(vm_manager *m, void (*done)(void *ud), void *ud);

/* ---- recovery (durable mode, src/vm/recovery.c) ---------------------------- */

typedef struct vm_recovery_status {
    bool running;       /* started, not yet complete: operations are refused */
    bool complete;      /* every stored VM is settled */
    size_t total;       /* records loaded */
    size_t settled;     /* of them, reconciled so far */
    size_t adopted;     /* VMMs taken over */
    size_t crashed;     /* VMMs found dead (marked CRASHED) */
    size_t orphans;     /* VMM processes no VM owns (reaped only with proof, see reaped) */
    size_t orphan_dirs; /* VM directories no VM owns (removed only with proof) */
    size_t reaped;      /* of the orphans: killed (CreateVm never acknowledged) */
    size_t rebuilt;     /* VMs the store had no row for, rebuilt from their vm.json */
    size_t unaccounted; /* VMs found with neither row nor vm.json (a live VMM or files) */
    size_t unadopted;   /* live VMMs that could not be adopted (only DeleteVm works) */
    bool store_created; /* chcp.db was missing or empty at start */
    uint64_t elapsed_ms;
} vm_recovery_status;

/*
 * Load every stored VM, check its VMM (pid + start time + holding the VM's
 * event file), adopt the live ones, mark dead ones CRASHED, reclaim what no
 * record owns, then reconcile each adopted VM with its vm.info. `done` fires
 * (never inside this call) when every VM is settled; until then operations
 * fail with `unavailable`. Returns -1 (err set) when the store cannot be read.
 */
int vm_manager_recover(vm_manager *m, void (*done)(void *ud), void *ud, chcp_error **err);
void vm_manager_recovery_status(const vm_manager *m, vm_recovery_status *out);

/*
 * The state directory under a running daemon (src/vm/statewatch.c): checked
 * every second; deleted or replaced (the directory, vms/, chcp.db or its
 * lock) is logged loudly, repaired from memory where possible, and reported.
 */
typedef struct vm_state_status {
    bool healthy;        /* false: serve 503 with `problem` */
    const char *problem; /* what happened and what was done ("" when none) */
    uint64_t since_ns;   /* wall clock of the first detection, 0 = never */
    size_t detections;   /* how many times something was found */
} vm_state_status;
void vm_manager_state_status(const vm_manager *m, vm_state_status *out);

/* File descriptors a supervised VMM costs the daemon (pidfd, event file,
 * API connection, one to spare while spawning) and those kept for
 * everything else (listeners, clients, the store, telemetry). CreateVm is
 * refused with resource_exhausted, and start-up with a message, before
 * RLIMIT_NOFILE would be exceeded. */
#define VM_FDS_PER_VM 4
#define VM_FDS_RESERVE 256
/* -1 with CHCP_RESOURCE_EXHAUSTED when `n_vms` VMs do not fit. */
int vm_fd_budget_check(size_t n_vms, chcp_error **err);
/* Free after vm_manager_shutdown() completed (or with no VMs). */
void vm_manager_free(vm_manager *m);

size_t vm_manager_count(const vm_manager *m);
/* The VM's configuration as a message, unpacked once and kept with the
 * record (read-only; valid as long as the record). */
const Cloudhypervisor__V1__VmConfig *vm_record_config(const vm_record *r);
const vm_record *vm_manager_find(const vm_manager *m, const char *id);

/* ---- operations ----------------------------------------------------------- */

typedef struct vm_op vm_op;

/*
 * An operation's end: err is NULL on success; vm is the record after the
 * change (NULL after a successful delete, or when the VM is gone). Both are
 * valid only during the callback. Fires exactly once, never before the
 * submitting call returned.
 */
typedef void (*vm_op_done_fn)(void *ud, const chcp_error *err, const vm_record *vm);

typedef enum vm_op_kind {
    VM_OP_CREATE,
    VM_OP_BOOT,
    VM_OP_SHUTDOWN,
    VM_OP_PAUSE,
    VM_OP_RESUME,
    VM_OP_REBOOT,
    VM_OP_DELETE,
    VM_OP_INFO,
    VM_OP_CREATE_JOIN, /* internal: a repeated identical CreateVm */
} vm_op_kind;

typedef struct vm_op_params {
    uint64_t deadline_ns; /* monotonic; 0 = none. Bounds the wait in the queue */
    bool force;           /* ShutdownVm */
    uint64_t graceful_ms; /* ShutdownVm; 0 = default 30 s */
    bool graceful_ms_set; /* graceful_ms given (0 allowed) */
    void *trace_ctx;      /* opaque, handed to the observer (the RPC's span) */
} vm_op_params;

/* CreateVm: validates synchronously (returns NULL with *err on bad input),
 * then runs asynchronously. `id` may be NULL/"" for a generated one. */
vm_op *vm_op_create(vm_manager *m, const char *id, const Cloudhypervisor__V1__VmConfig *config,
                    const vm_label *labels, size_t n_labels, const vm_op_params *p,
                    vm_op_done_fn done, void *ud, chcp_error **err);
/* Every other operation on an existing VM (VM_OP_CREATE not allowed). */
vm_op *vm_op_submit(vm_manager *m, vm_op_kind kind, const char *id, const vm_op_params *p,
                    vm_op_done_fn done, void *ud, chcp_error **err);
/* The caller lost interest (deadline, client gone): an operation still
 * waiting in the queue completes at once with `canceled`; a running one
 * finishes normally. `done` still fires exactly once. */
void vm_op_cancel(vm_op *op);

/* ---- observation (telemetry) --------------------------------------------- */

/*
 * Optional hooks the daemon uses for traces and metrics; the manager knows
 * nothing about telemetry. Tokens returned by the *_start hooks are opaque
 * (spans) and handed back to the matching *_end hook exactly once.
 */
typedef struct vm_observer {
    /* An operation was submitted (trace_ctx from its params). */
    void *(*op_start)(void *ud, void *trace_ctx, const char *vm_id, vm_op_kind kind);
    /* It ended; `err` NULL on success. `seconds` includes queueing. */
    void (*op_end)(void *ud, void *token, vm_op_kind kind, double seconds, const chcp_error *err);
    /* A VMM call ("vm.boot", ... or "spawn" for starting the VMM), under the
     * operation's token (NULL for calls no operation made). */
    void *(*call_start)(void *ud, void *op_token, const char *vm_id, const char *what);
    void (*call_end)(void *ud, void *token, const char *what, double seconds, int http_status,
                     const chcp_error *err);
    /* State changes, VMM events and VMM process exits. */
    void (*state)(void *ud, const vm_record *vm, vm_state from, vm_state to);
    void (*event)(void *ud, void *op_token, const vm_record *vm, const char *source,
                  const char *event);
    void (*vmm_exit)(void *ud, const vm_record *vm, bool expected);
    void *ud;
} vm_observer;

void vm_manager_set_observer(vm_manager *m, const vm_observer *obs);
/* Read a running or paused VM's VMM counters (GET vm.counters, for per-VM
 * metrics): not an operation, only between operations (else -1 with
 * failed_precondition; not_found for an unknown id). `done` fires once,
 * never inside this call, and must error_free() its error. */
int vm_manager_vmm_counters(vm_manager *m, const char *id, vmb_done_fn done, void *ud,
                            chcp_error **err);
/* The observer token of the operation VM `id` is running now (NULL if none). */
void *vm_manager_op_token(const vm_manager *m, const char *id);
const char *vm_op_kind_name(vm_op_kind kind); /* "create", "boot", ... */
/* States in numeric order, for per-state gauges. */
size_t vm_manager_count_state(const vm_manager *m, vm_state s);

/* ---- listing -------------------------------------------------------------- */

typedef struct vm_list_filter {
    const vm_state *states; /* any of these; none = all */
    size_t n_states;
    const vm_label *labels; /* all of these must match */
    size_t n_labels;
} vm_list_filter;

/* Up to `limit` records with id > after (NULL/"" = from the start), ordered
 * by id. *more is true when records beyond the page match. */
size_t vm_manager_list(const vm_manager *m, const vm_list_filter *f, const char *after,
                       size_t limit, const vm_record **out, bool *more);

/* ---- validation (also used by the API layer for early, precise errors) -- */

int vm_validate_id(const char *id, chcp_error **err);
int vm_validate_labels(const vm_label *labels, size_t n, const char *field, chcp_error **err);

/* ---- the Cloud Hypervisor backend (src/vm/backend_ch.c) ------------------ */

typedef struct vm_backend_ch_config {
    const char *ch_binary;   /* spawn mode */
    const char *attach_path; /* attach mode: the CH API socket; NULL = spawn */
} vm_backend_ch_config;

int vm_backend_ch_new(uv_loop_t *loop, const vm_backend_ch_config *cfg, const vm_backend_ops **ops,
                      void **backend, chcp_error **err);

#endif
