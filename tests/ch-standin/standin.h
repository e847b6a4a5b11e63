/*
 * standin.h - shared types of the Cloud Hypervisor stand-in (test-only).
 *
 * The stand-in is a small C program that behaves like `cloud-hypervisor`
 * (v54 development line by default, v53/v50 error mapping on request) over
 * its REST API, event monitor, command line and process lifetime, so chcp's
 * lifecycle tests can run where real CH cannot (no hardware KVM). It runs no
 * guest: a "guest" is a handful of timers driven by fault directives and
 * signals (see README.md).
 *
 * Threads, as in CH: the HTTP thread (http.c) parses requests and blocks on
 * the answer of the single VMM control-loop thread (main thread, vmm.c), so
 * the API is strictly serialised. Events (events.c) are written from the
 * VMM thread in the order they happen.
 *
 * It is self-contained on purpose (jansson + libc only): it models an
 * external program and must not share code, or bugs, with the daemon.
 */
#ifndef STANDIN_H
#define STANDIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define SI_BUILD_VERSION "v54.0.0"
#define SI_PKG_VERSION "54.0.0"
#define SI_MAX_CONNECTIONS 10
#define SI_PAYLOAD_MAX (4u << 20)
#define SI_MAX_FDS 253

/* ---- small helpers (util.c) -------------------------------------------- */

void *si_xmalloc(size_t n);
void *si_xrealloc(void *p, size_t n);
char *si_xstrdup(const char *s);
char *si_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t si_now_ns(void); /* CLOCK_MONOTONIC */
void si_sleep_ms(long ms);
/* Rust's io::Error Display: "No such file or directory (os error 2)". */
char *si_os_error(int errnum);

typedef struct si_buf {
    char *data;
    size_t len, cap;
} si_buf;
void si_buf_append(si_buf *b, const void *p, size_t n);
void si_buf_printf(si_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void si_buf_consume(si_buf *b, size_t n);
void si_buf_free(si_buf *b);

/* ---- logging and events (events.c) --------------------------------------- */

enum si_level { SI_ERROR = 1, SI_WARN, SI_INFO, SI_DEBUG, SI_TRACE };

/* fd < 0 means stderr. level_max: 0 -v => Warn, -v Info, -vv Debug, -vvv Trace. */
void si_log_init(int fd, int level_max);
void si_log(enum si_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define LOGE(...) si_log(SI_ERROR, __VA_ARGS__)
#define LOGW(...) si_log(SI_WARN, __VA_ARGS__)
#define LOGI(...) si_log(SI_INFO, __VA_ARGS__)
#define LOGD(...) si_log(SI_DEBUG, __VA_ARGS__)

/* Starts the monitor clock; fd < 0 disables writing (events are still logged). */
void si_events_init(int fd);
/* properties: NULL or a "key", "value" list ending in NULL. */
void si_event(const char *source, const char *event, ...);
/* Write every queued event now (at exit). */
void si_events_flush(void);

/* ---- fault directives (faults.c) -------------------------------------------- */

enum si_compat { SI_COMPAT_V54 = 0, SI_COMPAT_V53, SI_COMPAT_V50 };

typedef struct si_faults {
    long boot_delay_ms;
    long api_delay_ms;
    long poweroff_after_ms; /* -1 = never */
    long reboot_after_ms;
    long panic_after_ms;
    long vcpu_error_after_ms; /* vCPU run error -> exit_evt -> VMM exits (even --no-shutdown) */
    long crash_after_ms;      /* the VMM process dies by crash_signal */
    long acpi_delay_ms;       /* power button -> guest poweroff */
    long activate_delay_ms;   /* boot -> virtio-device/activated */
    long event_delay_ms;      /* events reach the monitor this much later */
    int fail_boot;            /* 0 no, 1 in Vm::new (no Vm kept), 2 in Vm::boot (Vm kept) */
    long fail_boot_times;     /* -1 = every time, else only the first N attempts */
    bool ignore_power_button;
    int crash_signal;
    char crash_on[256]; /* comma list of action names */
    char hang_on[256];
    char fail_on[256];  /* these calls answer 500 without doing anything */
    char delay_on[256]; /* "action:ms" items: per-call extra latency */
    int compat;
    /* start-up only (faults file) */
    bool no_kvm;
    int exit_at_start; /* -1 = no */
    char exit_message[512];
    long start_delay_ms;
} si_faults;

void si_faults_defaults(si_faults *f);
/* Apply one "key=value" directive (key with or without "standin." prefix).
 * Returns 0, 1 if the key is not a stand-in directive, -1 on a bad value. */
int si_faults_set(si_faults *f, const char *key, const char *val);
/* Every standin.* word of a kernel command line. */
void si_faults_from_cmdline(si_faults *f, const char *cmdline);
/* Lines "key=value" (# comments); returns 0 if the file was read, -1 if absent. */
int si_faults_from_file(si_faults *f, const char *path);
/* Does the comma list contain this action ("vm.boot" matches "boot" and "vm.boot"). */
bool si_action_in(const char *list, const char *action);
/* The delay_on milliseconds for this action, 0 if none. */
long si_action_delay(const char *list, const char *action);

/* ---- VM configuration (config.c) ----------------------------------------------- */

/* serde-like type check of a body against CH's schema. Returns NULL if it
 * would deserialise, else the serde-style message (caller frees). kind is
 * "VmConfig", "NetConfig", "DiskConfig", "VmResize", "VmRemoveDevice" ... */
char *si_config_check(const char *kind, json_t *v);
/* The config as CH echoes it back in vm.info: unknown keys dropped, defaults
 * filled, None fields skipped. Returns a new reference. */
json_t *si_config_echo(json_t *cfg);
json_t *si_device_echo(const char *kind, json_t *dev);

/* ---- the API seen by the VMM thread (vmm.c) ------------------------------------- */

typedef struct si_call {
    const char *action; /* "vm.boot", "vmm.ping", ... */
    json_t *body;       /* parsed body or NULL */
    int *fds;           /* SCM_RIGHTS fds, ownership passes to the VMM */
    int nfds;
} si_call;

typedef struct si_reply {
    int status;
    char *body; /* NULL: no body (Content-Length: 0 unless 204) */
} si_reply;

/* Build an error reply: the chain is "Error from API", then the given
 * strings (NULL-terminated). kind selects the status per compat mode. */
enum si_err {
    SI_E_NOT_CREATED,       /* 404 since v53 */
    SI_E_MISSING_CONFIG,    /* 404 since v53 */
    SI_E_NO_DEVICE,         /* 404 since v54 (NoDeviceToRemove, UnknownDeviceId) */
    SI_E_VALIDATION,        /* 400 since v54 */
    SI_E_VALIDATION_UNIQUE, /* 409 since v54 */
    SI_E_OTHER,             /* 500 */
};
int si_err_status(enum si_err kind, int compat);
char *si_json_chain(const char *first, ...); /* JSON array of strings, NULL-terminated */

/* HTTP thread -> VMM thread: blocks until the VMM answered. */
void si_vmm_call(si_call *call, si_reply *reply);

/* ---- VMM state shared by vmm.c, api.c and guest.c --------------------------------- */

enum si_vmstate { SI_ST_CREATED, SI_ST_RUNNING, SI_ST_PAUSED };

/* A guest-side timer that stops while the VM is paused. */
typedef struct si_gtimer {
    int64_t deadline; /* monotonic ns; 0 = not armed or frozen */
    int64_t frozen;   /* remaining ns while paused, 0 = none */
} si_gtimer;

typedef struct si_vm {
    json_t *config; /* NULL = no config (vm.create not called) */
    bool exists;    /* a Vm object exists (booted, or kept after a late boot failure) */
    enum si_vmstate state;
    si_faults f; /* g_start_faults + payload.cmdline directives */
    long boot_attempts;
    int *lock_fds; /* disk images locked while a Vm exists */
    int nlock_fds;
    si_gtimer t_poweroff, t_reboot, t_panic, t_acpi, t_activate, t_vcpu_error;
    int64_t crash_at;   /* VMM crash deadline (host time, not frozen by pause) */
    bool acpi_pending;  /* power button pressed while paused */
    bool console_ready; /* CH's console_info is Some: console devices pre-created */
    bool exit_requested;
    int exit_code;
} si_vm;

extern si_vm g_vm;

/* api.c: run one API call on the VMM thread. */
void si_api_handle(si_call *call, si_reply *reply);
void si_reply_error(si_reply *r, enum si_err kind, const char *ctx, ...);
/* Close the SCM_RIGHTS fds a device config (or every device of a config) holds. */
void si_close_device_fds(json_t *dev);
void si_close_config_fds(json_t *cfg);

/* console.c: pre_create_console_devices() and where guest text goes. */
int si_console_create(si_reply *r, const char *ctx);
/* Drop the console devices; remove_socket: the booted VM's SerialManager
 * went away (it unlinks the serial socket; a never-booted config does not). */
void si_console_release(bool remove_socket);
void si_console_out(const char *text);
int si_console_listen_fd(void);
void si_console_accept(void);

/* vmm.c: add (on) or remove an fd from the control loop's epoll set. */
void si_vmm_watch_fd(int fd, bool on);

/* guest.c: Vm creation and the simulated guest. */
/* Vm::new + Vm::boot. On failure fills *r (chain after ctx) and returns -1;
 * g_vm.exists tells whether a Vm was kept. */
int si_guest_boot(si_reply *r, const char *ctx);
/* Stop the Vm (no event), release its resources. */
void si_guest_stop(void);
void si_guest_freeze(void);
void si_guest_thaw(void);
void si_guest_power_button(void);
/* validate.c: VmConfig::validate(); NULL if fine, else sets *kind and returns
 * the message list (NULL-terminated, caller frees each and the array). */
char **si_validate(json_t *cfg, enum si_err *kind);
/* Assign "_disk0"-style ids to devices without one (DeviceManager naming). */
char *si_next_device_name(json_t *cfg, const char *prefix);
json_t *si_device_tree(void);
/* Does every PCI segment have a free slot for each device (31 per bus)? */
bool si_pci_slots_ok(json_t *cfg);
/* ms until the next guest timer (-1 = none); fire those that are due. */
int si_guest_next_timeout(void);
void si_guest_fire_due(void);
/* Guest-initiated transitions (also used by signals). */
void si_guest_poweroff(const char *why);
void si_guest_reboot(const char *why);
void si_guest_panic(const char *why);
/* vmm_shutdown(): delete the VM, vmm/shutdown event, request exit. */
void si_vmm_shutdown(int code);
/* vm_delete() (idempotent). */
void si_vm_delete(void);
/* crash_on/hang_on checks at a named point. */
void si_fault_point(const char *action);
/* Die now by crash_signal (never returns). */
void si_fault_crash(const char *why) __attribute__((noreturn));

/* ---- process-wide settings (main.c) ----------------------------------------------- */

typedef struct si_opts {
    const char *api_socket_path; /* path mode */
    int api_socket_fd;           /* fd mode, else -1 */
    const char *event_monitor;
    const char *log_file;
    int verbosity;
    bool no_shutdown;
} si_opts;

extern si_opts g_opts;
extern si_faults g_start_faults; /* from the faults file */

/* http.c */
int si_http_start(int listen_fd); /* spawns the HTTP thread */
void si_http_stop(void);          /* graceful: flush pending writes, join */

/* vmm.c */
int si_vmm_init(void);
/* Runs the control loop; returns the process exit code. */
int si_vmm_run(void);

#endif
