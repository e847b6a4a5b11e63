/*
 * qemu.h - the QEMU back end's building blocks: a neutral description of one
 * VM turned into a qemu-system-x86_64 command line, the process started with
 * it (argv only, clean environment, closed descriptors, own session, pidfd),
 * and a non-blocking QMP client on the caller's libuv loop.
 *
 * These pieces do not depend on the backend contract of src/vm; the QEMU
 * backend maps the contract's VM spec onto `qemu_vm_desc` and its operations
 * onto QMP commands (see docs in the report of the qemu-prep branch):
 *   boot    -> spawn with -S, then `cont`      pause/resume -> `stop`/`cont`
 *   reboot  -> `system_reset`                  power button -> `system_powerdown`
 *   info    -> `query-status`                  force stop   -> `quit`, then signals
 * QEMU is always started with -no-shutdown: a guest that powers off leaves
 * the process up in status "shutdown" (SHUTDOWN event, guest=true).
 *
 * Errors are chcp_error objects; nothing here prints.
 */
#ifndef CHCP_VMM_QEMU_H
#define CHCP_VMM_QEMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/core.h"

struct json_t; /* jansson */

/* ---- the VM description --------------------------------------------------------- */

typedef enum qemu_machine {
    QEMU_MACHINE_MICROVM, /* virtio-mmio, ACPI, no PCI: the fastest boot */
    QEMU_MACHINE_Q35,     /* PCI (virtio-*-pci), for guests that need it */
} qemu_machine;

typedef enum qemu_accel {
    QEMU_ACCEL_TCG, /* emulation: always works, slower */
    QEMU_ACCEL_KVM, /* only where kvm_probe says the guest can run */
} qemu_accel;

typedef struct qemu_disk {
    const char *path; /* an image file chcp has validated */
    bool readonly;
    bool qcow2; /* format=qcow2 instead of raw */
} qemu_disk;

typedef struct qemu_nic {
    int tap_fd;      /* an open TAP queue (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR); lent */
    const char *mac; /* "52:54:00:12:34:56"; NULL lets QEMU pick one */
} qemu_nic;

#define QEMU_MAX_DISKS 8
#define QEMU_MAX_NICS 4

typedef struct qemu_vm_desc {
    qemu_machine machine;
    qemu_accel accel;
    const char *kernel;  /* required: ELF vmlinux (microvm) or bzImage */
    const char *initrd;  /* may be NULL */
    const char *cmdline; /* may be NULL; console=ttyS0 is added when absent */
    unsigned vcpus;      /* 1..255 */
    uint64_t memory_mib; /* >= 128 (Debian kernels panic with 64M) */
    const qemu_disk *disks;
    size_t ndisks;
    const qemu_nic *nics;
    size_t nnics;
    const char *console_path; /* serial console file, truncated at start; required */
    /* Host TSC frequency for microvm under TCG, which hangs in early boot
     * without tsc_early_khz=; 0 reads it from /proc/cpuinfo. */
    uint32_t tsc_khz;
    bool pvpanic; /* a pvpanic device: guest panics become GUEST_PANICKED */
} qemu_vm_desc;

/*
 * A rendered command line. `argv` is NULL-terminated and owns its strings.
 * The descriptors the child must receive are `child_fds[i]` (the caller's,
 * lent) at number QEMU_CHILD_FD_FIRST + i in the child; argv already refers
 * to them by those numbers. The QMP listening socket is always the first.
 */
#define QEMU_CHILD_FD_FIRST 3
typedef struct qemu_argv {
    char **argv;
    size_t argc;
    int child_fds[1 + QEMU_MAX_NICS];
    size_t nfds;
} qemu_argv;

/* Check the description and render argv for `binary` with the QMP server on
 * `qmp_listen_fd` (a bound, listening Unix socket). Paths containing ',' are
 * escaped the way QEMU's option parser expects (",,"). */
int qemu_argv_build(const qemu_vm_desc *desc, const char *binary, int qmp_listen_fd, qemu_argv *out,
                    chcp_error **err);
void qemu_argv_free(qemu_argv *a);

/* The host TSC frequency in kHz from /proc/cpuinfo ("cpu MHz"), or 0. */
uint32_t qemu_host_tsc_khz(void);

/* CHCP_QEMU_ACCEL: "auto" (kvm when kvm_probe proves the guest class can run,
 * see vmm/kvm_probe.h), "kvm" or "tcg". Returns -1 for anything else. */
typedef enum qemu_accel_mode {
    QEMU_ACCEL_MODE_AUTO,
    QEMU_ACCEL_MODE_KVM,
    QEMU_ACCEL_MODE_TCG
} qemu_accel_mode;
int qemu_accel_mode_parse(const char *s, qemu_accel_mode *out);
/* The accelerator for a Linux guest (true) or a bare tiny guest (false) under
 * `mode`, running the KVM probe when mode is auto (the verdict is cached per
 * process). `why` gets a one-line explanation. */
qemu_accel qemu_accel_choose(qemu_accel_mode mode, bool linux_guest, char *why, size_t why_len);

/* ---- the process ------------------------------------------------------------------ */

/* File names inside the per-VM directory. */
#define QEMU_QMP_SOCKET_NAME "qmp.sock"
#define QEMU_STDOUT_FILE_NAME "qemu.stdout"
#define QEMU_STDERR_FILE_NAME "qemu.stderr"

typedef struct qemu_child {
    pid_t pid;
    int pidfd;
    uint64_t start_time; /* /proc/<pid>/stat field 22, to recognise it later */
    char *qmp_path;      /* <dir>/qmp.sock, bound by us before QEMU ran */
} qemu_child;

/*
 * Start `binary` (absolute path) for `desc` in `dir` (an existing private
 * directory): binds <dir>/qmp.sock and hands it over as the QMP server, stdin
 * /dev/null, stdout/stderr into <dir>/qemu.stdout|stderr, no descriptor but
 * those argv names, environment PATH only, its own session. The guest does not
 * run until `cont` (-S).
 */
int qemu_process_spawn(const char *binary, const char *dir, const qemu_vm_desc *desc,
                       qemu_child *out, chcp_error **err);
void qemu_child_clear(qemu_child *c); /* closes the pidfd, frees the path */
/* Reap through the pidfd without blocking: 0 reaped (reason filled), 1 still
 * running, -1 error. */
int qemu_process_reap(int pidfd, int *status, int *sig, char *reason, size_t reason_len);
/* Signal the process only while pid + start time still name it; SIGKILL also
 * goes to its process group. 0 when sent, -1 when it is gone. */
int qemu_process_signal(const qemu_child *c, int sig);
/* The tail of <dir>/qemu.stderr on one line (QEMU explains failures there);
 * "" when empty. Caller frees. */
char *qemu_process_stderr_tail(const char *dir);

/* ---- QMP ------------------------------------------------------------------------- */

typedef struct qmp_client qmp_client;

/* Default per-command timeout when 0 is passed. */
#define QMP_DEFAULT_TIMEOUT_MS 10000u
/* A line longer than this is not QMP talking: the connection is dropped. */
#define QMP_MAX_LINE (1u << 20)

/* Events the backend acts on; anything else is QMP_EVENT_OTHER (name kept). */
typedef enum qmp_event_kind {
    QMP_EVENT_OTHER,
    QMP_EVENT_SHUTDOWN,
    QMP_EVENT_RESET,
    QMP_EVENT_STOP,
    QMP_EVENT_RESUME,
    QMP_EVENT_POWERDOWN,
    QMP_EVENT_GUEST_PANICKED,
} qmp_event_kind;

typedef struct qmp_event {
    qmp_event_kind kind;
    const char *name;          /* "SHUTDOWN", ... */
    const struct json_t *data; /* the "data" object, or NULL */
    bool guest;                /* data.guest (SHUTDOWN, RESET) */
    const char *reason;        /* data.reason (SHUTDOWN, RESET), or NULL */
    uint64_t timestamp_us;     /* QEMU's wall-clock timestamp */
} qmp_event;

typedef struct qmp_callbacks {
    /* Greeting read and qmp_capabilities accepted (err NULL, `version` is
     * QMP.version), or the handshake failed (err set: refused, timed out or
     * the connection ended first; on_closed does not follow then). At most
     * once. */
    void (*on_ready)(qmp_client *q, const struct json_t *version, const chcp_error *err, void *ud);
    /* One asynchronous event, in arrival order relative to replies. */
    void (*on_event)(qmp_client *q, const qmp_event *ev, void *ud);
    /* The connection ended (EOF or error, err says which); pending commands
     * have been failed with CHCP_UNAVAILABLE before this. Not called after
     * qmp_client_free(). */
    void (*on_closed)(qmp_client *q, const chcp_error *err, void *ud);
} qmp_callbacks;

/* A command's outcome: `ret` is the "return" value on success; on failure
 * `err` is the error QEMU answered, "<class>: <desc>", as CHCP_UNIMPLEMENTED
 * (CommandNotFound), CHCP_NOT_FOUND (DeviceNotFound) or
 * CHCP_FAILED_PRECONDITION (anything else); or CHCP_DEADLINE_EXCEEDED,
 * CHCP_UNAVAILABLE (connection gone) or CHCP_CANCELED (qmp_client_free).
 * Both borrowed for the callback only. */
typedef void (*qmp_reply_fn)(qmp_client *q, const struct json_t *ret, const chcp_error *err,
                             void *ud);

/* Connect to a QMP Unix socket (non-blocking; the greeting and the
 * capabilities negotiation follow on the loop). */
qmp_client *qmp_client_connect(uv_loop_t *loop, const char *path, const qmp_callbacks *cbs,
                               void *ud, chcp_error **err);
/* Same over an already connected stream socket, which the client takes. */
qmp_client *qmp_client_open_fd(uv_loop_t *loop, int fd, const qmp_callbacks *cbs, void *ud,
                               chcp_error **err);
/*
 * Queue `command` with `args` (a JSON object or NULL; borrowed, not stolen).
 * Commands issued before the handshake completes wait for it. Replies are
 * matched by id; a reply that comes after its timeout is dropped. The callback
 * runs exactly once, always from the loop (never inside this call).
 * `fds` (up to 4) travel with the command by SCM_RIGHTS, for `getfd`/`add-fd`.
 */
int qmp_execute(qmp_client *q, const char *command, const struct json_t *args, uint64_t timeout_ms,
                const int *fds, size_t nfds, qmp_reply_fn cb, void *ud, chcp_error **err);
/* Close; pending commands complete with CHCP_CANCELED inside this call. Safe
 * from inside any callback of this client. NULL is fine. */
void qmp_client_free(qmp_client *q);
bool qmp_client_ready(const qmp_client *q);
void *qmp_client_userdata(const qmp_client *q);

qmp_event_kind qmp_event_kind_from_name(const char *name);

#endif
