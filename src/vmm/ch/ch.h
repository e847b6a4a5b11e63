/*
 * ch.h - the Cloud Hypervisor (CH) back end: one `cloud-hypervisor` process
 * per VM, driven over its HTTP/1.1 REST API on a Unix socket, observed through
 * its pidfd (exit) and its event-monitor file (lifecycle events).
 *
 * Everything runs on the caller's libuv loop and never blocks it. A `ch_vmm`
 * is one VMM, obtained in one of three ways:
 *   - ch_vmm_spawn:  start a new process (chcp binds the API socket itself);
 *   - ch_vmm_adopt:  take over a process started by an earlier daemon run;
 *   - ch_vmm_attach: talk to an existing API socket, no process supervision.
 *
 * API calls are queued per VMM and sent in order on one keep-alive connection
 * (CH serialises its API anyway). Each call ends exactly once in its callback:
 * success is "HTTP 2xx" and nothing else; the status code of a failure is only
 * a hint (it differs across CH versions). Errors carry the VMM's own error
 * chain ("Error from API: The VM info is not available: VM is not created").
 *
 * Lifetime rules: callbacks never run after ch_vmm_free() returns. Calls still
 * pending at ch_vmm_free() complete (synchronously, inside ch_vmm_free) with
 * CHCP_CANCELED so their user data can be released; such callbacks must not use
 * the vmm. ch_vmm_free() may be called from inside any callback of that vmm.
 * ch_vmm_free() does NOT kill the process (VMMs outlive the daemon); use
 * ch_vmm_stop() and wait for on_exit first when the VM is to go away.
 *
 * Own children are reaped with waitid(P_PIDFD); the daemon must therefore not
 * set SIGCHLD to SIG_IGN / SA_NOCLDWAIT.
 */
#ifndef CHCP_VMM_CH_H
#define CHCP_VMM_CH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/core.h"

struct json_t; /* jansson */

typedef struct ch_vmm ch_vmm;

/* Default per-call timeout when 0 is passed. Generous: CH serialises its API,
 * so a slow vm.boot delays everything queued behind it. */
#define CH_DEFAULT_TIMEOUT_MS 30000u
/* Default time to wait for vmm.ping to answer after spawn. */
#define CH_DEFAULT_READY_TIMEOUT_MS 10000u
/* Default grace period between the escalation steps of ch_vmm_stop(). */
#define CH_DEFAULT_STOP_GRACE_MS 5000u
/* File names inside the per-VM directory. */
#define CH_API_SOCKET_NAME "api.sock"
#define CH_EVENTS_FILE_NAME "events.json"
#define CH_LOG_FILE_NAME "vmm.log"
#define CH_STDOUT_FILE_NAME "stdout.log"
#define CH_STDERR_FILE_NAME "stderr.log"

/* ---- responses ----------------------------------------------------------- */

typedef struct ch_response {
    int status;       /* HTTP status (200, 204, 500, ...) */
    const char *body; /* NUL-terminated copy of the body ("" when none) */
    size_t body_len;
} ch_response;

/*
 * One call's outcome. `resp` is non-NULL whenever a complete HTTP response
 * arrived (also for non-2xx); `err` is non-NULL whenever the call failed:
 *   - non-2xx: CHCP_FAILED_PRECONDITION, message = the VMM's error chain;
 *   - timeout: CHCP_DEADLINE_EXCEEDED (the connection is discarded);
 *   - connection trouble, VMM exited: CHCP_UNAVAILABLE (with the exit reason);
 *   - ch_vmm_free() while pending: CHCP_CANCELED.
 * Both are borrowed for the duration of the callback only.
 */
typedef void (*ch_response_fn)(ch_vmm *vmm, const ch_response *resp, const chcp_error *err,
                               void *ud);

/* ---- events ----------------------------------------------------------------- */

/* One event of CH's --event-monitor stream. Pointers are valid during the
 * callback only. */
typedef struct ch_event {
    uint64_t secs; /* monotonic time since the VMM started, not wall clock */
    uint32_t nanos;
    const char *source;              /* "vmm", "vm", "guest", "virtio-device" */
    const char *event;               /* "starting", "booted", "shutdown", ... */
    const struct json_t *properties; /* NULL or a JSON object of strings */
    uint64_t end_offset;             /* file offset just past this event */
} ch_event;

typedef void (*ch_event_fn)(const ch_event *ev, void *ud);

/*
 * The event stream splitter, usable on its own (replaying a saved file): feed
 * raw bytes as they come; complete events (JSON objects terminated by a blank
 * line) are passed to `fn`; an incomplete tail is kept until more arrives.
 * Malformed events are skipped and counted. `offset` is the stream position of
 * the first byte not yet consumed as part of a complete event.
 */
typedef struct ch_event_parser {
    chcp_buf pending;
    uint64_t offset;    /* stream offset of pending.data[0] */
    uint64_t malformed; /* events that were not valid JSON / lacked fields */
} ch_event_parser;

void ch_event_parser_init(ch_event_parser *p, uint64_t start_offset);
/* Returns the number of events delivered. */
size_t ch_event_parser_feed(ch_event_parser *p, const void *data, size_t len, ch_event_fn fn,
                            void *ud);
void ch_event_parser_clear(ch_event_parser *p);

/* ---- process lifecycle -------------------------------------------------------- */

typedef struct ch_exit {
    int status;         /* exit code, or -1 when unknown (signal / not our child) */
    int signal;         /* terminating signal, or 0 */
    const char *reason; /* "exited with status 1", "killed by signal 9", ... */
} ch_exit;

typedef struct ch_vmm_callbacks {
    /* Spawned VMMs only: vmm.ping answered (err NULL, ping body in resp) or the
     * start failed (err set: exit before readiness, with the tail of
     * stderr.log / vmm.log in the message; or readiness timeout, in which case
     * the process is killed). Called exactly once. May be NULL. */
    void (*on_ready)(ch_vmm *vmm, const ch_response *resp, const chcp_error *err, void *ud);
    /* One event from the event monitor (spawned/adopted VMMs). May be NULL. */
    void (*on_event)(ch_vmm *vmm, const ch_event *ev, void *ud);
    /* The process is gone (called once, after any pending events were
     * delivered and pending calls failed). For attach mode: never. May be NULL. */
    void (*on_exit)(ch_vmm *vmm, const ch_exit *ex, void *ud);
} ch_vmm_callbacks;

typedef struct ch_spawn_opts {
    const char *binary;            /* path to cloud-hypervisor (from config), required */
    const char *dir;               /* per-VM private directory (exists, ideally 0700), required */
    const char *vm_id;             /* for log lines; may be NULL */
    bool no_shutdown;              /* pass --no-shutdown (guest poweroff keeps the VMM) */
    int verbosity;                 /* number of -v (0 → 1, the default "-v") */
    const char *const *extra_args; /* NULL-terminated extra argv, may be NULL */
    uint64_t ready_timeout_ms;     /* 0 → CH_DEFAULT_READY_TIMEOUT_MS */
} ch_spawn_opts;

/*
 * Start a VMM: binds <dir>/api.sock (passed as --api-socket fd=3), opens
 * <dir>/events.json O_APPEND (passed as --event-monitor fd=4), logs to
 * <dir>/vmm.log, stdout/stderr to <dir>/stdout.log|stderr.log, stdin
 * /dev/null, clean environment, no other fds, its own session. Then sends
 * vmm.ping; the result arrives in on_ready. Events are read from the end of
 * events.json as it was before the spawn.
 */
ch_vmm *ch_vmm_spawn(uv_loop_t *loop, const ch_spawn_opts *opts, const ch_vmm_callbacks *cbs,
                     void *ud, chcp_error **err);

typedef struct ch_adopt_opts {
    const char *dir;   /* the per-VM directory the VMM was spawned with */
    const char *vm_id; /* for log lines; may be NULL */
    pid_t pid;
    uint64_t start_time;   /* as returned by ch_vmm_start_time() earlier */
    uint64_t event_offset; /* as returned by ch_vmm_event_offset() earlier */
} ch_adopt_opts;

/* Take over a VMM spawned by an earlier daemon run. Fails with CHCP_NOT_FOUND
 * when the pid is gone or now belongs to another process (start time). The
 * exit of an adopted process (not our child) is read from its pidfd once
 * reaped (Linux >= 6.15) or from /proc while it is a zombie; when neither
 * knows, ch_exit.status is -1 and ch_exit.signal 0. */
ch_vmm *ch_vmm_adopt(uv_loop_t *loop, const ch_adopt_opts *opts, const ch_vmm_callbacks *cbs,
                     void *ud, chcp_error **err);

/* Attach to an existing API socket ("unix:///run/ch.sock" or a plain path):
 * calls only, no process supervision, no events. */
ch_vmm *ch_vmm_attach(uv_loop_t *loop, const char *socket_uri, const ch_vmm_callbacks *cbs,
                      void *ud, chcp_error **err);

/*
 * Escalating stop: PUT vmm.shutdown (timeout grace_ms), then SIGTERM, then
 * SIGKILL to the process group, each after grace_ms and only while the process
 * is still the same one (pid + start time). The end is reported by on_exit.
 * grace_ms 0 → CH_DEFAULT_STOP_GRACE_MS. Attach mode: only vmm.shutdown.
 * Returns -1 (err set) when there is nothing to stop.
 */
int ch_vmm_stop(ch_vmm *vmm, uint64_t grace_ms, chcp_error **err);

/* Detach and release (see lifetime rules above). NULL is fine. */
void ch_vmm_free(ch_vmm *vmm);

pid_t ch_vmm_pid(const ch_vmm *vmm);             /* 0 for attach mode */
uint64_t ch_vmm_start_time(const ch_vmm *vmm);   /* /proc/<pid>/stat field 22 */
uint64_t ch_vmm_event_offset(const ch_vmm *vmm); /* resume point in events.json */
bool ch_vmm_alive(const ch_vmm *vmm);            /* process not yet seen exiting */
const char *ch_vmm_socket_path(const ch_vmm *vmm);
void *ch_vmm_userdata(const ch_vmm *vmm);

/* Read /proc/<pid>/stat field 22 (start time in clock ticks since boot).
 * Returns -1 with CHCP_NOT_FOUND when the process does not exist. */
int ch_proc_start_time(pid_t pid, uint64_t *out, chcp_error **err);

/* ---- API calls ------------------------------------------------------------------ */

/*
 * Queue one API call: GET for vmm.ping / vm.info / vm.counters, PUT for all
 * other endpoints. `endpoint` is the name after /api/v1/ ([a-z0-9.-]+).
 * `json_body` NULL sends no body (Content-Length: 0). `fds` (up to 16) are
 * duplicated at once (the caller keeps its own) and sent with SCM_RIGHTS on
 * the request's first sendmsg. timeout_ms 0 → CH_DEFAULT_TIMEOUT_MS, counted
 * from when the request reaches the head of the queue.
 * Returns 0, or -1 with *err (bad arguments, vmm gone) and then cb is NOT
 * called. cb is never called from inside ch_vmm_call.
 */
int ch_vmm_call(ch_vmm *vmm, const char *endpoint, const char *json_body, const int *fds,
                size_t nfds, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);

/* Typed conveniences (same contract as ch_vmm_call). */
int ch_vmm_ping(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);
int ch_vmm_info(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);
int ch_vmm_boot(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);
int ch_vmm_shutdown(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud,
                    chcp_error **err);
int ch_vmm_reboot(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);
int ch_vmm_pause(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);
int ch_vmm_resume(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);
int ch_vmm_power_button(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud,
                        chcp_error **err);
int ch_vmm_delete(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);
/* PUT vmm.shutdown: a 200 lost to EOF (the VMM exits) counts as success. */
int ch_vmm_vmm_shutdown(ch_vmm *vmm, uint64_t timeout_ms, ch_response_fn cb, void *ud,
                        chcp_error **err);

/* ---- VM configuration ------------------------------------------------------------- */

typedef enum ch_console_mode {
    CH_CONSOLE_DEFAULT = 0, /* leave CH's default (serial Null, console Tty) */
    CH_CONSOLE_OFF,
    CH_CONSOLE_PTY,
    CH_CONSOLE_TTY,
    CH_CONSOLE_FILE,   /* needs file */
    CH_CONSOLE_SOCKET, /* needs socket */
    CH_CONSOLE_NULL,
} ch_console_mode;

typedef struct ch_console_config {
    ch_console_mode mode;
    const char *file;
    const char *socket;
} ch_console_config;

typedef struct ch_disk_config {
    const char *path; /* required */
    bool readonly;
    bool direct;
    const char *id;         /* may be NULL */
    const char *serial;     /* may be NULL */
    const char *image_type; /* "Raw", "Qcow2", "FixedVhd", "Vhdx", "Unknown" or NULL */
} ch_disk_config;

typedef struct ch_net_config {
    const char *tap;     /* TAP name, or NULL (then fds via ch_vmm_add_net or CH creates one) */
    const char *mac;     /* "12:34:56:78:90:ab" or NULL */
    const char *ip;      /* IPv4 dotted, or NULL */
    const char *mask;    /* IPv4 dotted, or NULL */
    uint32_t mtu;        /* 0 = default */
    uint32_t num_queues; /* 0 = default */
    uint32_t queue_size; /* 0 = default */
    const char *id;      /* may be NULL */
} ch_net_config;

typedef struct ch_vm_config {
    struct {
        const char *kernel; /* exactly one of kernel / firmware */
        const char *firmware;
        const char *cmdline;   /* may be NULL */
        const char *initramfs; /* may be NULL */
    } payload;
    struct {
        uint32_t boot_vcpus; /* 0 → CH default (1/1); max 0 → boot */
        uint32_t max_vcpus;
    } cpus;
    struct {
        uint64_t size; /* bytes; 0 → CH default (512 MiB) */
        bool shared;
        bool hugepages;
    } memory;
    const ch_disk_config *disks;
    size_t n_disks;
    const ch_net_config *net;
    size_t n_net;
    const char *rng_src; /* NULL → CH default /dev/urandom */
    ch_console_config serial;
    ch_console_config console;
    struct {
        uint32_t cid; /* 0 = no vsock; else >= 3 */
        const char *socket;
    } vsock;
    struct {
        uint32_t num_pci_segments; /* 0 = default */
        const char *serial_number; /* may be NULL */
        const char *uuid;          /* may be NULL */
    } platform;
} ch_vm_config;

/* Validate and render a VmConfig JSON document (caller frees). NULL with
 * CHCP_INVALID_ARGUMENT and a precise message on bad input. */
char *ch_vm_config_to_json(const ch_vm_config *cfg, chcp_error **err);
/* Render one NetConfig (for vm.add-net); same rules. */
char *ch_net_config_to_json(const ch_net_config *net, chcp_error **err);

/* PUT vm.create with the rendered config. */
int ch_vmm_create(ch_vmm *vmm, const ch_vm_config *cfg, uint64_t timeout_ms, ch_response_fn cb,
                  void *ud, chcp_error **err);
/* PUT vm.add-net, optionally with TAP fds sent by SCM_RIGHTS. */
int ch_vmm_add_net(ch_vmm *vmm, const ch_net_config *net, const int *tap_fds, size_t n_fds,
                   uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);

/* ---- parsing answers ---------------------------------------------------------------- */

typedef enum ch_vm_state {
    CH_VM_STATE_UNKNOWN = 0,
    CH_VM_STATE_CREATED,
    CH_VM_STATE_RUNNING,
    CH_VM_STATE_PAUSED,
    CH_VM_STATE_SHUTDOWN,
} ch_vm_state;

const char *ch_vm_state_name(ch_vm_state s); /* "Created", ... "Unknown" */

typedef struct ch_vm_info {
    ch_vm_state state;
    bool has_memory_actual_size;
    uint64_t memory_actual_size;
} ch_vm_info;

typedef struct ch_ping_info {
    char version[64];
    char build_version[128];
    int64_t pid; /* -1 when absent */
} ch_ping_info;

/* Parse vm.info / vmm.ping bodies; -1 with CHCP_INTERNAL on malformed JSON. */
int ch_parse_vm_info(const char *body, size_t len, ch_vm_info *out, chcp_error **err);
int ch_parse_ping(const char *body, size_t len, ch_ping_info *out, chcp_error **err);
/* Turn a CH error body (JSON array of strings) into one message "a: b: c";
 * other bodies are used verbatim (trimmed, bounded); empty → "HTTP <status>". */
char *ch_error_chain(int status, const char *body, size_t len);

#endif
