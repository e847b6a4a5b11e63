/*
 * vm_internal.h - what the files of src/vm/ share among themselves (not part
 * of the module interface; other modules include only vm.h).
 */
#ifndef CHCP_VM_INTERNAL_H
#define CHCP_VM_INTERNAL_H

#include "vm/store.h"
#include "vm/vm.h"

/* Guard rails applied to a client configuration. */
typedef struct vm_limits {
    const char *const *image_dirs; /* canonical (realpath) roots */
    size_t n_image_dirs;
    uint32_t max_vcpus;
    uint64_t max_memory_mib;
} vm_limits;

/*
 * Validate a client configuration and turn it into the Cloud Hypervisor JSON
 * body of vm.create, with every client path canonicalised and chcp's own
 * paths (console log, sockets) placed in `vm_dir`. Returns a malloc'ed string
 * or NULL with an invalid_argument/permission_denied error naming the field.
 */
char *vm_config_build(const vm_limits *lim, const Cloudhypervisor__V1__VmConfig *c,
                      const char *vm_dir, chcp_error **err);

/* images.c: client image paths (docs/security.md, "Image paths") */
#define VM_MAX_DISKS 32
/* Open a client path beneath the image directory it lies in (openat2
 * RESOLVE_BENEATH: no symlink or '..' may leave it) and check its type;
 * an O_PATH descriptor, or -1 with an error naming the field. */
int vm_image_open(const vm_limits *lim, const char *field, const char *path, bool allow_blockdev,
                  chcp_error **err);
/* Where the VMM finds an image: <vm_dir>/images/<role> (malloc'ed). Roles:
 * "kernel", "initramfs", "firmware", "disk-<i>". */
char *vm_image_staged_path(const char *vm_dir, const char *role);
/* Open every client image of `c` as above and hard-link it to its staged
 * path, atomically replacing the previous link. Before every boot. */
int vm_images_stage(const vm_limits *lim, const Cloudhypervisor__V1__VmConfig *c,
                    const char *vm_dir, chcp_error **err);

/* Recursively remove a VM directory (only what chcp puts there: files,
 * sockets, a few levels of subdirectories); the record file vm.json goes
 * last, so an interrupted removal still says what the directory is. */
int vm_dir_remove(const char *dir, chcp_error **err);

/* ---- manager internals (manager.c: registry and queue; lifecycle.c: what
 * each operation does) ------------------------------------------------------ */

typedef struct vm_entry vm_entry;

struct vm_op {
    vm_manager *m;
    vm_entry *vm;
    vm_op_kind kind;
    vm_op_params p;
    vm_op_done_fn done;
    void *ud;
    vm_op *next;      /* queue / waiter list link */
    uv_timer_t timer; /* queue deadline, shutdown grace, deferred completion */
    bool running;
    bool queued;
    bool finished;
    bool counts_start;
    /* ShutdownVm: the grace timer runs and nothing is asked of the VMM
     * (waiting_grace), or a vm.info confirms a poweroff event (checking);
     * poweroff_hint: a vm/shutdown event came while a call was in flight;
     * grace_over: the grace period ended while checking. */
    bool waiting_grace;
    bool checking;
    bool poweroff_hint;
    bool grace_over;
    vm_state prev_state;
    chcp_error *result; /* deferred completion */
    void *obs_token;    /* the observer's handle for this operation */
    uint64_t started_ns;
};

struct vm_entry {
    vm_record rec;
    vm_manager *m;
    void *vmm;              /* backend handle, NULL when none */
    vm_op *current;         /* the running queued operation */
    vm_op *q_head, *q_tail; /* waiting operations */
    size_t q_len;
    vm_op *delete_ops; /* DeleteVm calls waiting for the removal */
    vm_op *create_op;  /* a failed CreateVm, answered after the removal */
    vm_op *info_ops;   /* GetVmInfo calls waiting for one vm.info */
    bool info_inflight;
    uint64_t info_epoch; /* epoch when the in-flight vm.info was sent */
    bool deleting;       /* removal started */
    bool removing_started;
    bool stop_done;
    int inflight;            /* backend completions outstanding */
    chcp_error *removal_err; /* why a failed CreateVm removed the VM */
    /* VMM events are not trusted on their own: a vm/shutdown event may be a
     * late one of an earlier boot (CH delivers events through a queue, after
     * the API reply). A poweroff is concluded only once vm.info confirms it,
     * from an answer sent in the current epoch (bumped whenever an operation
     * starts running), while no operation runs. */
    bool poweroff_check; /* a vm/shutdown event awaits confirmation */
    uint64_t epoch;
    int expect_reboot_events;
    bool unresponsive;
    bool vmm_created;         /* the VMM accepted vm.create */
    uv_timer_t *intent_retry; /* DeleteVm's intent could not be written: retry */
    int refs;                 /* operations pointing here (they may complete later) */
    bool removed;             /* out of the registry; freed when refs drops to 0 */
    /* Durable mode (persist.c, recovery.c). */
    bool persisted;            /* a record exists in the store (CreateVm acknowledged) */
    bool dirty;                /* the record changed since it was last queued */
    bool store_removing;       /* the record's deletion is being written */
    bool recovering;           /* adopted, waiting for vm.info: events are replays */
    bool deleting_on_recovery; /* stored as DELETING: finish the removal */
    uint64_t record_hash;      /* of the vm.json last queued; 0 = (re)write it */
    char backend[32];          /* the backend that owns the VMM ("cloud-hypervisor") */
    /* Recovery (recovery.c): */
    bool api_lost;      /* adopted after its directory was deleted: no API socket */
    bool reconcile_any; /* adopted a VMM the record did not name: vm.info decides the state */
    bool unadopted;     /* the VMM lives but could not be adopted: only DeleteVm works */
};

struct vm_manager {
    uv_loop_t *loop;
    vm_manager_config cfg;
    char *state_dir;
    char *vms_dir;
    char **image_dirs;
    vm_limits limits;
    const vm_backend_ops *ops;
    void *backend;
    vm_entry **vms; /* sorted by id */
    size_t n_vms, cap_vms;
    uint32_t starts;
    bool shutting_down;
    void (*shutdown_done)(void *ud);
    void *shutdown_ud;
    /* Durable mode. */
    vm_store *store;
    uv_timer_t persist_timer; /* coalesces record writes (one per loop turn) */
    bool persist_timer_open, persist_scheduled;
    bool detached;  /* shut down in durable mode: VMMs let go, nothing written */
    char *vms_real; /* realpath of vms_dir (what /proc fd links show) */
    vm_recovery_status recovery;
    struct vm_statewatch *watch;  /* statewatch.c, NULL when not watching */
    vm_state_status state_status; /* its last report once stopped */
    char *last_state_problem;
    uint64_t recovery_start_ns;
    void (*recovery_done)(void *ud);
    void *recovery_ud;
    vm_observer obs; /* zeroed when none */
};

/* The observer token of the operation a VM is running (NULL if none). */
void *vm_current_token(const vm_entry *e);
/* Wrap a backend completion so the observer sees the VMM call (name and
 * duration); returns the (ud, fn) pair to pass to the backend. */
typedef struct vm_call_watch vm_call_watch;
vm_call_watch *vm_call_watch_start(vm_entry *e, void *op_token, const char *what, vmb_done_fn fn,
                                   void *ud);
void vm_call_watch_done(void *watch, chcp_error *err, const vmb_reply *reply);
/* The call never started: report it failed, free the watch, call nothing. */
void vm_call_watch_abandon(vm_call_watch *w, const chcp_error *err);

/* manager.c */
void vm_set_state(vm_entry *e, vm_state s, const char *reason_fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vm_touch(vm_entry *e);
/* Finish an operation now (from a backend completion), start the next. */
void vm_op_finish(vm_op *op, const chcp_error *err);
void vm_op_finish_code(vm_op *op, chcp_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Drop the entry from the registry and free it (after removal). */
void vm_entry_destroy(vm_entry *e);
/* Fail every waiting operation (the VM is being removed). */
void vm_queue_fail_all(vm_entry *e, chcp_code code, const char *msg);
/* Complete an operation decided without the VMM (deferred to the loop). */
void vm_op_complete_now(vm_op *op, chcp_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* lifecycle.c: the queued operations */
void vm_lifecycle_run(vm_op *op);           /* a queued op reached the head */
void vm_lifecycle_grace_expired(vm_op *op); /* ShutdownVm grace timer */
/* A vm/shutdown event during ShutdownVm: confirmed with vm.info. */
void vm_lifecycle_poweroff_hint(vm_op *op);
/* The daemon stops: a ShutdownVm only waiting for its guest ends now. */
void vm_lifecycle_abandon_wait(vm_op *op, const char *why);
/* Helpers the files of the lifecycle share. */
const char *vm_action_name(vmb_action a);
/* A completion's first check: the op was finished here (VM deleted, VMM
 * dead, daemon letting go). */
bool vm_op_interrupted(vm_op *op);
/* Last step of every backend completion: a pending removal may finish
 * (and free the entry). */
void vm_after_backend(vm_entry *e);
const char *vm_exit_reason(const vm_entry *e);
/* vm.info's state (and memory) into the record; *kept (optional): the VMM
 * holds a VM object (a device tree), not only a configuration. */
const char *vm_absorb_info(vm_entry *e, const vmb_reply *reply, bool *kept);

/* removal.c: DeleteVm and the removal of a failed CreateVm */
void vm_lifecycle_delete(vm_op *op);       /* DeleteVm, outside the queue */
void vm_removal_start(vm_entry *e);        /* stop the VMM, then try_remove */
bool vm_lifecycle_try_remove(vm_entry *e); /* finish a removal when idle */
void vm_removal_cancel_retry(vm_entry *e); /* stop retrying a deletion intent */

/* supervise.c: events, exits, vm.info refreshes */
void vm_lifecycle_info(vm_op *op); /* GetVmInfo, outside the queue */
/* vm.counters between operations (per-VM metrics; not an operation). */
int vm_lifecycle_counters(vm_entry *e, vmb_done_fn done, void *ud, chcp_error **err);
void vm_lifecycle_after_op(vm_entry *e); /* an operation ended, none runs */
/* Recovery: an adopted VM's events and exits arrive through these. */
const vmb_callbacks *vm_lifecycle_callbacks(void);

/* manager.c, for recovery */
void vm_registry_add(vm_manager *m, vm_entry *e);
/* Drop a reference taken with e->refs++ (frees a removed entry). */
void vm_entry_unref(vm_entry *e);

/* recovery.c: the decisions, testable on their own (tests/unit/test_recovery.c) */
typedef enum vm_recover_verdict {
    VM_RECOVER_ADOPT,      /* pid alive, same start time, holds the VM's event file */
    VM_RECOVER_DEAD,       /* no such process */
    VM_RECOVER_PID_REUSED, /* alive, another start time: not ours, never touched */
    VM_RECOVER_NOT_VMM,    /* same process but without the VM's event file: never touched */
    VM_RECOVER_NO_PID,     /* no VMM was recorded */
} vm_recover_verdict;
vm_recover_verdict vm_recovery_check(int pid, uint64_t start_time, const char *events_path);
int vm_proc_start_time(int pid, uint64_t *out); /* /proc/<pid>/stat field 22 */
/* An fd of pid names path (" (deleted)" too) and is open for writing. */
bool vm_proc_holds(int pid, const char *path);
void vm_cleanup_leftovers(const vm_record *r); /* a dead VMM's socket */

/* procscan.c: VMM processes of the state directory, found in /proc. */
typedef struct vm_vmm_proc {
    int pid;
    uint64_t start_time;
    char id[VM_ID_MAX + 1];
    /* Its event file, or its whole VM directory (then its API socket is
     * gone too), was deleted while it ran: /proc shows "<path> (deleted)". */
    bool events_deleted;
    bool dir_deleted;
    /* Every mark of a VMM chcp spawned for that directory: the event file
     * open for writing, the VM directory as working directory, and a
     * session of its own. Needed before anything acts on a process no
     * record names. */
    bool vmm_marks;
    bool owned; /* adopted for a VM */
} vm_vmm_proc;
typedef struct vm_proc_scan {
    vm_vmm_proc *v;
    size_t n, cap;
} vm_proc_scan;
/* Every process (but us) holding an event file of <vms_real>/<id>/ open for
 * writing. Processes that only read one (tail -f) are not VMMs. */
void vm_proc_scan_run(vm_proc_scan *s, const char *vms_real);
vm_vmm_proc *vm_proc_scan_find(vm_proc_scan *s, const char *id, int pid);
void vm_proc_scan_free(vm_proc_scan *s);
/* SIGKILL through a pidfd, only while the pid is still the scanned process;
 * waits (up to 2 s) for it to go. */
bool vm_proc_reap(const vm_vmm_proc *p);
/* Stop a VMM that could not be adopted (pid + start time re-checked through
 * a pidfd): SIGKILL, `done` once it is gone (on the loop, never inside). */
void vm_proc_kill_async(uv_loop_t *loop, int pid, uint64_t start_time, vmb_done_fn done, void *ud);

/* statewatch.c: the state directory deleted or replaced under us. */
int vm_statewatch_start(vm_manager *m, chcp_error **err);
void vm_statewatch_stop(vm_manager *m);

/* persist.c (durable mode; every function is a no-op without a store) */
int vm_persist_open(vm_manager *m, chcp_error **err);
/* The record changed: queue its write (coalesced, written off the loop). */
void vm_persist_mark(vm_entry *e);
/* CreateVm, before the VMM is spawned: vm.json says `creating` (it proves
 * that a VMM found next to it was never acknowledged). */
int vm_persist_creating(vm_entry *e, chcp_error **err);
/* Write the record now; `cb` runs on the loop once it is durable (err NULL)
 * or failed. Without a store `cb` runs at once. */
typedef void (*vm_persist_fn)(vm_entry *e, const chcp_error *err, void *ud);
void vm_persist_now(vm_entry *e, vm_persist_fn cb, void *ud);
/* Remove the VM directory, then the record (through the writer thread, after
 * any write of this VM still queued); same callback rules. */
void vm_persist_delete(vm_entry *e, vm_persist_fn cb, void *ud);
/* The hash of the vm.json the entry would write now (vm_record_render). */
uint64_t vm_persist_record_hash(vm_entry *e);
/* Queue a write of every record and every vm.json (after the state
 * directory was restored, statewatch.c). */
void vm_persist_rewrite_all(vm_manager *m);
/* Shutdown: write every record, wait until durable, release every VMM. */
void vm_persist_detach(vm_manager *m);
void vm_persist_close(vm_manager *m);
/* Labels as stored (a JSON object), and back. */
char *vm_labels_encode(const vm_record *r, size_t *len);
int vm_labels_decode(const uint8_t *data, size_t len, vm_record *r, chcp_error **err);

#endif
