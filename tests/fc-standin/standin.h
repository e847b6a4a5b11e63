/*
 * standin.h - shared types of the Firecracker stand-in (test-only).
 *
 * The stand-in is a small C program that behaves like `firecracker`
 * (1.17.0-dev, commit 81b38b9 of firecracker-microvm/firecracker) over its
 * command line, its REST API on a Unix socket (micro_http's wire quirks
 * included), the pre-boot/post-boot rules and fault messages of
 * vmm/src/rpc_interface.rs, its logger and metrics, and process lifetime
 * (FcExitCode). It runs no guest: the "guest" is a few timers and a serial
 * text driven by directives in boot_args and by signals (see README.md).
 *
 * Threads, as in Firecracker: the API thread (http.c + routes.c) parses a
 * request into a VMM action and blocks until the VMM thread (the main
 * thread, vmm.c) answers it, so the API is strictly serialised. While the
 * microVM is paused the VMM thread serves API requests only: the guest and
 * the periodic metrics are frozen, as in ApiServerAdapter::handle_request.
 *
 * It is self-contained on purpose (jansson + libc only): it models an
 * external program and must not share code, or bugs, with the daemon.
 */
#ifndef FSI_STANDIN_H
#define FSI_STANDIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define FSI_VERSION "1.17.0-dev"
#define FSI_SNAPSHOT_VERSION "11.0.0"
#define FSI_DEFAULT_ID "anonymous-instance"
#define FSI_DEFAULT_API_SOCK "/run/firecracker.socket"
#define FSI_MAX_CONNECTIONS 10
#define FSI_HTTP_MAX_PAYLOAD 51200 /* HTTP_MAX_PAYLOAD_SIZE */
#define FSI_SCM_MAX_FD 253
#define FSI_METRICS_PERIOD_MS 60000 /* WRITE_METRICS_PERIOD_MS */

/* FcExitCode (src/vmm/src/lib.rs). */
enum fsi_exit {
    FSI_EXIT_OK = 0,
    FSI_EXIT_GENERIC = 1,
    FSI_EXIT_UNEXPECTED = 2,
    FSI_EXIT_BAD_SYSCALL = 148,
    FSI_EXIT_SIGBUS = 149,
    FSI_EXIT_SIGSEGV = 150,
    FSI_EXIT_SIGXFSZ = 151,
    FSI_EXIT_BAD_CONFIGURATION = 152,
    FSI_EXIT_ARG_PARSING = 153,
    FSI_EXIT_SIGXCPU = 154,
    FSI_EXIT_SIGPIPE = 155,
    FSI_EXIT_SIGHUP = 156,
    FSI_EXIT_SIGILL = 157,
};

/* ---- small helpers (util.c) ---------------------------------------------- */

void *fsi_xmalloc(size_t n);
void *fsi_xcalloc(size_t n, size_t size);
char *fsi_xstrdup(const char *s);
char *fsi_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *fsi_xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
int64_t fsi_now_ns(void);      /* CLOCK_MONOTONIC */
int64_t fsi_realtime_ms(void); /* CLOCK_REALTIME */
void fsi_sleep_ms(long ms);
/* Rust's io::Error Display: "No such file or directory (os error 2)". */
char *fsi_io_error(int errnum);
/* Rust's io::Error Debug: Os { code: 2, kind: NotFound, message: "No such file or directory" } */
char *fsi_io_error_debug(int errnum);
/* Rust's {:?} of a string: quotes and escapes. */
char *fsi_debug_str(const char *s);
/* Connect to a Unix stream socket and hang up: 0 or the errno. */
int fsi_unix_probe(const char *path);

typedef struct fsi_buf {
    char *data;
    size_t len, cap;
} fsi_buf;
void fsi_buf_append(fsi_buf *b, const void *p, size_t n);
void fsi_buf_printf(fsi_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fsi_buf_consume(fsi_buf *b, size_t n);
void fsi_buf_free(fsi_buf *b);

/* ---- the command-line parser (argparse.c): utils/src/arg_parser.rs ------------ */

#define FSI_ARGS_HELP 1
#define FSI_ARGS_VERSION 2
#define FSI_ARGS_MAX_VALUES 32

typedef struct fsi_arg {
    const char *name;
    bool takes_value;
    bool required;
    bool multiple; /* allow_multiple: every value is kept in values */
    const char *requires;
    const char *forbids;
    const char *help;
    const char *def;
    const char *value; /* the user's (last) value, "" for a flag, NULL if absent */
    const char **values;
    size_t nvalues;
} fsi_arg;

typedef struct fsi_args {
    fsi_arg *args; /* in alphabetical order, like the parser's BTreeMap */
    size_t n;
    int extra; /* argv index of the first argument after "--" (argc if none) */
} fsi_args;

/* 0, FSI_ARGS_HELP, FSI_ARGS_VERSION, or -1 with the UtilsArgParserError's
 * Debug and Display forms (caller frees both). */
int fsi_args_parse(fsi_args *p, int argc, char **argv, char **debug, char **display);
fsi_arg *fsi_args_get(fsi_args *p, const char *name);
const char *fsi_args_value(fsi_args *p, const char *name); /* user value, else default */
bool fsi_args_flag(fsi_args *p, const char *name);
void fsi_args_help(const fsi_args *p); /* formatted_help() on stdout */
/* validate_instance_id: NULL, or the ValidatorError's Debug (display: its Display). */
char *fsi_validate_id(const char *id, char **display);

/* ---- logger (log.c): vmm/src/logger/logging.rs ------------------------------ */

enum fsi_level { FSI_OFF = 0, FSI_ERROR, FSI_WARN, FSI_INFO, FSI_DEBUG, FSI_TRACE };

void fsi_log_init(const char *instance_id);
/* Set by the fatal-signal handler: the logger and metrics then only try
 * their locks, so a signal that interrupts a holder cannot deadlock. */
extern volatile int fsi_in_signal;
/* Lock mu, or only try to when running inside a signal handler. */
int fsi_lock(void *mu);
/* The thread name in log lines ("main", "fc_api"). */
void fsi_log_set_thread(const char *name);
/* "off", "error", "warn"/"warning", "info", "debug", "trace" (any case); -1 if none. */
int fsi_level_parse(const char *s);
/* LOGGER.update(): path NULL keeps the target, level < 0 resets to Info,
 * show_* < 0 keep, module NULL keeps. Returns 0 or the open() errno. */
int fsi_log_update(const char *path, int level, int show_level, int show_origin,
                   const char *module);
void fsi_log_at(enum fsi_level lvl, const char *module, const char *file, int line, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
#define FSI_LOG(lvl, mod, ...) fsi_log_at(lvl, mod, __FILE__, __LINE__, __VA_ARGS__)
#define LOGE(mod, ...) FSI_LOG(FSI_ERROR, mod, __VA_ARGS__)
#define LOGW(mod, ...) FSI_LOG(FSI_WARN, mod, __VA_ARGS__)
#define LOGI(mod, ...) FSI_LOG(FSI_INFO, mod, __VA_ARGS__)
#define LOGD(mod, ...) FSI_LOG(FSI_DEBUG, mod, __VA_ARGS__)
/* Module paths as Firecracker's records carry them (for the "module" filter). */
#define M_MAIN "firecracker"
#define M_API "firecracker::api_server"
#define M_RPC "vmm::rpc_interface"
#define M_VMM "vmm"
#define M_BUILDER "vmm::builder"
#define M_VCPU "vmm::vstate::vcpu"
#define M_SIGNAL "vmm::signal_handler"
#define M_BOOT_TIMER "vmm::devices::pseudo::boot_timer"
#define M_STANDIN "vmm::standin"

/* ---- metrics (metrics.c): vmm/src/logger/metrics.rs ------------------------- */

/* init_metrics(): 0 or an error message (caller frees) for
 * "Cannot initialize the metrics system due to bad user input: <msg>". */
char *fsi_metrics_init(const char *path, bool emit_id, json_t *properties);
/* METRICS.write(): 1 written, 0 not initialised, -1 write failed (errno set). */
int fsi_metrics_write(void);
/* SharedIncMetric (reset at every write) and SharedStoreMetric. */
void fsi_metric_inc(const char *group, const char *name);
void fsi_metric_store(const char *group, const char *name, uint64_t value);

/* ---- fault directives (faults.c) --------------------------------------------- */

typedef struct fsi_faults {
    long boot_delay_ms;       /* InstanceStart takes this long (API blocked) */
    long api_delay_ms;        /* every call that reaches the VMM answers this much later */
    long guest_boot_ms;       /* InstanceStart -> init runs (boot marker, i8042 driver up) */
    long poweroff_after_ms;   /* guest halts (x86: no ACPI PM, the process stays); -1 never */
    long reboot_after_ms;     /* guest reboots: i8042 reset -> the process exits 0 */
    long panic_after_ms;      /* guest panics; panic=N in boot_args decides what follows */
    long vcpu_error_after_ms; /* a KVM_RUN error: the process exits 1 */
    long crash_after_ms;      /* the process dies by crash_signal (host time) */
    long cad_delay_ms;        /* Ctrl+Alt+Del read by the guest -> reset */
    bool ignore_cad;          /* the guest reads Ctrl+Alt+Del and ignores it */
    bool no_kbd;              /* no AT keyboard driver: the keys are never read */
    int fail_boot;            /* InstanceStart fails (retry possible) */
    long fail_boot_times;     /* -1 = every attempt, else only the first N */
    int crash_signal;
    char crash_on[256]; /* comma lists of action names (faults.c) */
    char hang_on[256];
    char fail_on[256];
    char delay_on[256];
    /* start-up only (faults file) */
    bool no_kvm;       /* /dev/kvm missing: InstanceStart fails with FC's KVM error */
    int exit_at_start; /* -1 = no */
    char exit_message[512];
    long start_delay_ms;
} fsi_faults;

void fsi_faults_defaults(fsi_faults *f);
/* 0 applied, 1 not a stand-in key, -1 bad value. "standin." prefix optional. */
int fsi_faults_set(fsi_faults *f, const char *key, const char *val);
void fsi_faults_from_cmdline(fsi_faults *f, const char *cmdline);
int fsi_faults_from_file(fsi_faults *f, const char *path); /* 0 read, -1 absent */
/* Does the comma/| list name one of the names (NULL-terminated)? */
bool fsi_list_has(const char *list, const char *const *names);
long fsi_list_delay(const char *list, const char *const *names);

/* ---- serde-like body checks (schema.c) -------------------------------------------- */

/* Checks a parsed body against a Firecracker struct ("BootSourceConfig",
 * "MachineConfig", ...). NULL if serde would accept it, else serde's message
 * without the " at line L column C" suffix (caller frees). */
char *fsi_schema_check(const char *type, json_t *v);
/* serde_json syntax error text for a body jansson refused. */
char *fsi_json_syntax_msg(const json_error_t *e, const char *body, size_t len);

/* ---- VMM actions (rpc_interface.rs VmmAction) ----------------------------------------- */

typedef enum fsi_act {
    A_CONFIGURE_BOOT_SOURCE,
    A_CONFIGURE_LOGGER,
    A_CONFIGURE_METRICS,
    A_CONFIGURE_SERIAL,
    A_CREATE_SNAPSHOT,
    A_GET_BALLOON_CONFIG,
    A_GET_BALLOON_STATS,
    A_GET_FULL_VM_CONFIG,
    A_GET_MMDS,
    A_GET_MACHINE_CONFIG,
    A_GET_INSTANCE_INFO,
    A_GET_VERSION,
    A_FLUSH_METRICS,
    A_INSERT_BLOCK,
    A_INSERT_PMEM,
    A_UPDATE_PMEM,
    A_INSERT_NET,
    A_LOAD_SNAPSHOT,
    A_PATCH_MMDS,
    A_PAUSE,
    A_PUT_MMDS,
    A_PUT_CPU_CONFIG,
    A_RESUME,
    A_SET_BALLOON,
    A_SET_MMDS_CONFIG,
    A_SET_VSOCK,
    A_SET_ENTROPY,
    A_GET_MEMORY_HOTPLUG,
    A_SET_MEMORY_HOTPLUG,
    A_UPDATE_MEMORY_HOTPLUG,
    A_START,
    A_CTRL_ALT_DEL,
    A_UPDATE_BALLOON,
    A_UPDATE_BALLOON_STATS,
    A_START_HINTING,
    A_GET_HINTING,
    A_STOP_HINTING,
    A_UPDATE_BLOCK,
    A_UPDATE_NET,
    A_UPDATE_MACHINE_CONFIG,
    A_HOT_UNPLUG,
    A_COUNT
} fsi_act;

typedef struct fsi_action {
    fsi_act kind;
    json_t *body;            /* parsed body (owned), NULL if none */
    char *unplug_id;         /* A_HOT_UNPLUG: device id */
    const char *unplug_kind; /* "drives", "network-interfaces", "pmem" */
    bool patch;              /* machine-config: PATCH (only what is named changes) */
} fsi_action;

/* VmmData or VmmActionError. */
typedef struct fsi_outcome {
    int status;   /* 200, 204, 400 (413 for the MMDS limit) */
    json_t *data; /* 200 body (owned) */
    char *fault;  /* VmmActionError Display (owned) */
} fsi_outcome;

/* Names a fault directive may use for an action (NULL-terminated). */
const char *const *fsi_action_names(fsi_act kind);
/* The error context FC prefixes for this action, for fail_on ("Start microvm error"). */
const char *fsi_action_context(fsi_act kind);
void fsi_outcome_fault(fsi_outcome *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fsi_outcome_data(fsi_outcome *o, json_t *data); /* NULL: 204 */

/* API thread -> VMM thread; blocks until answered (or the VMM is gone). */
void fsi_vmm_call(fsi_action *a, fsi_outcome *o);

/* ---- the microVM resources (resources.c: VmResources) ---------------------------------- */

typedef struct fsi_resources {
    json_t *machine;     /* MachineConfig */
    json_t *boot_source; /* BootSourceConfig; NULL until configured */
    json_t *drives;      /* [BlockDeviceConfig], root first */
    json_t *nets;        /* [NetworkInterfaceConfig] */
    json_t *pmem;        /* [PmemConfig] */
    json_t *vsock;       /* VsockDeviceConfig or NULL */
    int vsock_fd;        /* the bound uds_path listener */
    json_t *balloon;     /* BalloonDeviceConfig or NULL */
    json_t *entropy;     /* EntropyDeviceConfig or NULL */
    json_t *hotplug;     /* MemoryHotplugConfig or NULL */
    json_t *mmds;        /* data store (NULL until used) */
    json_t *mmds_config; /* {version, imds_compat, ipv4_address, network_interfaces} */
    char *serial_out_path;
    bool custom_cpu_template;
    bool boot_path; /* a boot resource was configured: snapshot load refused */
    size_t mmds_limit;
    bool pci;        /* --enable-pci */
    bool boot_timer; /* --boot-timer */
} fsi_resources;

void fsi_resources_init(fsi_resources *r);
/* The setters return NULL or the VmmActionError text (caller frees). */
char *fsi_res_boot_source(fsi_resources *r, json_t *cfg);
char *fsi_res_machine(fsi_resources *r, json_t *update, bool patch);
char *fsi_res_drive(fsi_resources *r, json_t *cfg);
char *fsi_res_net(fsi_resources *r, json_t *cfg);
char *fsi_res_pmem(fsi_resources *r, json_t *cfg);
char *fsi_res_vsock(fsi_resources *r, json_t *cfg);
char *fsi_res_balloon(fsi_resources *r, json_t *cfg);
char *fsi_res_entropy(fsi_resources *r, json_t *cfg);
char *fsi_res_hotplug(fsi_resources *r, json_t *cfg);
char *fsi_res_mmds_config(fsi_resources *r, json_t *cfg);
/* LOGGER.update() from a LoggerConfig body. */
char *fsi_res_logger(json_t *cfg);
/* MMDS put/patch: 0 ok, 413 limit, else 400 with *msg. */
int fsi_res_mmds_store(fsi_resources *r, json_t *value, bool patch, char **msg);
/* GET /vm/config (VmmConfig, kebab-case, nulls kept). */
json_t *fsi_res_full_config(const fsi_resources *r);
/* Echo forms used by several modules. */
json_t *fsi_drive_echo(json_t *cfg);
json_t *fsi_net_echo(json_t *cfg);
json_t *fsi_rate_limiter_echo(json_t *rl); /* NULL if no bucket is active */
/* Validate a block device (file opens / socket connects); NULL or message. */
char *fsi_block_open_check(json_t *cfg);
char *fsi_net_create_check(json_t *cfg);
/* Apply a --config-file VmmConfig; NULL or the Display of the ResourcesError. */
char *fsi_res_from_json(fsi_resources *r, json_t *cfg);

/* ---- the VMM (vmm.c, controller.c, guest.c, snapshot.c) ------------------------------------ */

enum fsi_vmstate { FSI_NOT_STARTED, FSI_RUNNING, FSI_PAUSED };

/* A guest timer: guest time, frozen while paused. */
typedef struct fsi_gtimer {
    int64_t deadline; /* monotonic ns; 0 = off */
    int64_t left;     /* remaining ns while frozen */
} fsi_gtimer;

typedef struct fsi_vm {
    fsi_resources res;
    enum fsi_vmstate state;
    fsi_faults f; /* start faults + boot_args directives */
    long boot_attempts;
    bool halted;       /* the guest powered off (x86: vCPUs halt, FC stays) */
    bool driver_ready; /* the guest's i8042/atkbd driver is up */
    bool cad_pending;  /* the guest is handling Ctrl+Alt+Del */
    int kbd_bytes;     /* bytes in the i8042 buffer (16 max) */
    bool balloon_hinting;
    uint32_t balloon_actual_mib;
    uint32_t hotplug_plugged_mib;
    uint32_t hotplug_requested_mib;
    char *cmdline; /* the kernel command line the guest got */
    int serial_fd; /* -1: stdout */
    fsi_gtimer t_boot, t_poweroff, t_reboot, t_panic, t_panic_reboot, t_cad, t_vcpu_error;
    int64_t crash_at;   /* host time */
    int64_t metrics_at; /* next periodic metrics write (host time, frozen while paused) */
    int64_t metrics_left;
    int64_t start_ns; /* InstanceStart */
    bool restored;    /* built from a snapshot */
    bool exit_requested;
    int exit_code;
    bool fatal; /* a pre-boot error FC treats as fatal (snapshot load) */
} fsi_vm;

extern fsi_vm g_vm;

/* controller.c: PrebootApiController (and the fault directives of every call). */
void fsi_handle_action(fsi_action *a, fsi_outcome *o);
/* Success (inner NULL: 204) or 400 "<ctx>: <inner>"; frees inner. */
void fsi_outcome_result(fsi_outcome *o, const char *ctx, char *inner);
json_t *fsi_instance_info(void); /* GET / */
void fsi_mmds_action(json_t *body, bool patch, fsi_outcome *o);
/* runtime.c: RuntimeApiController. */
void fsi_runtime_action(fsi_action *a, fsi_outcome *o);
/* InstanceStart (also used by --config-file). NULL or the StartMicrovmError text. */
char *fsi_start_microvm(void);

/* guest.c */
void fsi_guest_boot(void);            /* vCPUs run: the kernel starts */
void fsi_guest_restored(bool resume); /* built from a snapshot: paused, or resumed */
void fsi_guest_freeze(void);
void fsi_guest_thaw(void);
int fsi_guest_next_timeout(void); /* ms until the next timer, -1 none */
void fsi_guest_fire_due(void);
void fsi_guest_poweroff(const char *why);
void fsi_guest_reboot(const char *why);
void fsi_guest_panic(const char *why);
/* SendCtrlAltDel: NULL or the I8042 error text. */
char *fsi_guest_ctrl_alt_del(void);
void fsi_serial_out(const char *text);

/* snapshot.c */
char *fsi_snapshot_create(json_t *params);
char *fsi_snapshot_load(json_t *params, bool *fatal);

/* vmm.c */
int fsi_vmm_init(void);
int fsi_vmm_run(void); /* returns the FcExitCode */
/* Vmm::stop(): leave the event loop with this exit code. */
void fsi_vmm_stop(int code);
void fsi_fault_point(const fsi_faults *f, const char *const *names);
void fsi_fault_crash(int sig, const char *why) __attribute__((noreturn));

/* ---- process-wide settings (main.c) ------------------------------------------------------ */

typedef struct fsi_opts {
    const char *api_sock;
    const char *id;
    const char *config_file;
    bool no_api;
    size_t payload_limit;
} fsi_opts;

extern fsi_opts g_opts;
extern fsi_faults g_start_faults;

/* http.c */
int fsi_http_start(int listen_fd);
void fsi_http_stop(void); /* kill switch: flush pending writes, join */

/* routes.c: ParsedRequest::try_from + convert_to_response. */
typedef struct fsi_http_response {
    int status;
    char *body; /* NULL: no body */
    bool deprecation;
} fsi_http_response;
void fsi_route(const char *method, const char *path, const char *body, size_t body_len,
               bool has_body, fsi_http_response *resp);

#endif
