/*
 * main.c - command line, start-up and exit of the Firecracker stand-in
 * (src/firecracker/src/main.rs, api_server_adapter.rs, utils/arg_parser.rs).
 *
 * Arguments: "--name value" or "--name" flags only (no "=" forms, no short
 * options but -h); a value may not start with "--"; everything after a bare
 * "--" is ignored. --help/-h and --version anywhere win over everything
 * else. Parse errors (unknown or repeated argument, missing value,
 * --no-api without --config-file, --no-seccomp with --seccomp-filter) exit
 * 153 (FcExitCode::ArgParsing); a bad --level exits 152
 * (BadConfiguration); other start-up errors exit 1 (GenericError). Errors
 * print Firecracker's "Error: <Debug of MainError>" on stderr and are
 * logged. Rust panics (an invalid --id, an unreadable --config-file,
 * numeric arguments that do not parse) abort: the process dies by SIGABRT.
 *
 * Start-up order: logger (--log-path, --level, ...), signal handlers,
 * --metrics-path, seccomp (--seccomp-filter must open; the stand-in
 * installs no filter), --config-file read, then either the API socket
 * (bind fails if the path exists: Firecracker never unlinks it, neither at
 * start nor at exit) and the API thread, or --no-api. A --config-file
 * microVM is built and started at once; an error there exits 1.
 *
 * Signals: SIGTERM and SIGINT keep their default action (Firecracker does
 * not handle them: the process dies, the socket stays). SIGHUP, SIGBUS,
 * SIGSEGV, SIGILL, SIGSYS, SIGXFSZ, SIGXCPU run Firecracker's handler:
 * log, write metrics, exit with 156, 149, 150, 157, 148, 151, 154.
 * SIGPIPE is ignored (Firecracker's handler only counts it).
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

fsi_opts g_opts;
fsi_faults g_start_faults;

/* The ArgParser's arguments, in its BTreeMap (alphabetical) order. */
static fsi_arg arg_table[] = {
    {.name = "api-sock",
     .takes_value = true,
     .help = "Path to unix domain socket used by the API.",
     .def = FSI_DEFAULT_API_SOCK},
    {.name = "boot-timer",
     .takes_value = false,
     .help =
         "Whether or not to load boot timer device for logging elapsed time since InstanceStart "
         "command."},
    {.name = "config-file",
     .takes_value = true,
     .help = "Path to a file that contains the microVM configuration in JSON format."},
    {.name = "describe-snapshot",
     .takes_value = true,
     .help = "Print the data format version of the provided snapshot state file."},
    {.name = "enable-pci", .takes_value = false, .help = "Enables PCIe support."},
    {.name = "http-api-max-payload-size",
     .takes_value = true,
     .help = "Http API request payload max size, in bytes.",
     .def = "51200"},
    {.name = "id",
     .takes_value = true,
     .help = "MicroVM unique identifier.",
     .def = FSI_DEFAULT_ID},
    {.name = "level", .takes_value = true, .help = "Set the logger level."},
    {.name = "log-path",
     .takes_value = true,
     .help = "Path to a fifo or a file used for configuring the logger on startup."},
    {.name = "metadata",
     .takes_value = true,
     .help = "Path to a file that contains metadata in JSON format to add to the mmds."},
    {.name = "metrics-path",
     .takes_value = true,
     .help = "Path to a fifo or a file used for configuring the metrics on startup."},
    {.name = "mmds-size-limit", .takes_value = true, .help = "Mmds data store limit, in bytes."},
    {.name = "module", .takes_value = true, .help = "Set the logger module filter."},
    {.name = "no-api",
     .takes_value = false,
     .requires = "config-file",
     .help = "Optional parameter which allows starting and using a microVM without an active API "
             "socket."},
    {.name = "no-seccomp",
     .takes_value = false,
     .forbids = "seccomp-filter",
     .help =
         "Optional parameter which allows starting and using a microVM without seccomp filtering. "
         "Not recommended."},
    {.name = "parent-cpu-time-us",
     .takes_value = true,
     .help = "Parent process CPU time (wall clock, microseconds). This parameter is optional."},
    {.name = "seccomp-filter",
     .takes_value = true,
     .forbids = "no-seccomp",
     .help = "Optional parameter which allows specifying the path to a custom seccomp filter. For "
             "advanced users."},
    {.name = "show-level",
     .takes_value = false,
     .help = "Whether or not to output the level in the logs."},
    {.name = "show-log-origin",
     .takes_value = false,
     .help = "Whether or not to include the file path and line number of the log's origin."},
    {.name = "snapshot-version",
     .takes_value = false,
     .help = "Print the supported data format version."},
    {.name = "start-time-cpu-us",
     .takes_value = true,
     .help = "Process start CPU time (wall clock, microseconds). This parameter is optional."},
    {.name = "start-time-us",
     .takes_value = true,
     .help = "Process start time (wall clock, microseconds). This parameter is optional."},
    {.name = "version", .takes_value = false, .help = "Print the binary version number."},
};
static fsi_args args = {arg_table, sizeof(arg_table) / sizeof(arg_table[0]), 0};

static const char *value(const char *name)
{
    return fsi_args_value(&args, name);
}

static bool flag(const char *name)
{
    return fsi_args_flag(&args, name);
}

/* Strings that live until exit: error paths exit() mid-function, and the
 * leak checker must still see them as reachable. */
static char *kept[32];
static size_t nkept;
static char *keep(char *s)
{
    if (nkept < sizeof(kept) / sizeof(kept[0]))
        kept[nkept++] = s;
    return s;
}

/* main(): log the Display, print "Error: <Debug>", exit with the code. Takes
 * ownership of both strings (freed before exit: the leak checker watches). */
static void __attribute__((noreturn)) fail(int code, char *display, char *debug)
{
    LOGE(M_MAIN, "%s", display);
    fprintf(stderr, "Error: %s\n", debug);
    LOGE(M_MAIN, "Firecracker exiting with error. exit_code=%d", code);
    free(display);
    free(debug);
    exit(code);
}

/* A Rust panic: the panic hook logs it, then panic = "abort". */
static void __attribute__((noreturn)) panic_at(int line, const char *msg)
{
    LOGE(M_MAIN, "Firecracker panicked at src/firecracker/src/main.rs:%d:%d:\n%s", line, 14, msg);
    fsi_metric_store("vmm", "panic_count", 1);
    fsi_metrics_write();
    signal(SIGABRT, SIG_DFL);
    abort();
}

static void parse_args(int argc, char **argv)
{
    char *debug = NULL, *display = NULL;
    int rc = fsi_args_parse(&args, argc, argv, &debug, &display);
    if (rc == FSI_ARGS_HELP) {
        printf("Firecracker v%s\n\n", FSI_VERSION);
        fsi_args_help(&args);
        exit(0);
    }
    if (rc == FSI_ARGS_VERSION) {
        printf("Firecracker v%s\n\n", FSI_VERSION);
        exit(0);
    }
    if (rc < 0) {
        char *disp = fsi_xasprintf(
            "Arguments parsing error: %s \n\nFor more information try --help.", display);
        char *dbg = fsi_xasprintf("ParseArguments(%s)", debug);
        free(debug);
        free(display);
        fail(FSI_EXIT_ARG_PARSING, disp, dbg);
    }
}

/* validate_instance_id(...).expect("Invalid instance ID"): a panic. */
static void check_id(const char *id)
{
    char *display = NULL, *debug = fsi_validate_id(id, &display);
    if (debug)
        panic_at(308, fsi_xasprintf("Invalid instance ID: %s", debug));
}

static size_t parse_usize(const char *name, const char *s, int line)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-' || s[0] == '+') {
        char *m = fsi_xasprintf("'%s' parameter expected to be of 'usize' type.: ParseIntError { "
                                "kind: %s }",
                                name, *s ? "InvalidDigit" : "Empty");
        panic_at(line, m);
    }
    return (size_t)v;
}

static void setup_logger(void)
{
    const char *lvl = value("level");
    int level = -1;
    if (lvl && (level = fsi_level_parse(lvl)) < 0) {
        char *q = keep(fsi_debug_str(lvl));
        fail(FSI_EXIT_BAD_CONFIGURATION,
             fsi_xasprintf("Invalid value for logger level: Failed to parse string to level "
                           "filter: %s.Possible values: [Error, Warning, Info, Debug]",
                           lvl),
             fsi_xasprintf("InvalidLogLevel(LevelFilterFromStrError(%s))", q));
    }
    int rc = fsi_log_update(value("log-path"), level, flag("show-level") ? 1 : -1,
                            flag("show-log-origin") ? 1 : -1, value("module"));
    if (rc) {
        char *e = keep(fsi_io_error(rc)), *d = keep(fsi_io_error_debug(rc));
        fail(FSI_EXIT_GENERIC,
             fsi_xasprintf("Could not initialize logger: Failed to open target file: %s", e),
             fsi_xasprintf("LoggerInitialization(LoggerUpdateError(%s))", d));
    }
    LOGI(M_MAIN, "Running Firecracker v%s", FSI_VERSION);
}

/* vmm::signal_handler: log, write the metrics, _exit with FcExitCode. */
static void fatal_signal(int sig, siginfo_t *info, void *uc)
{
    (void)uc;
    fsi_in_signal = 1;
    static const struct {
        int sig;
        int code;
        const char *metric;
    } map[] = {{SIGSYS, FSI_EXIT_BAD_SYSCALL, NULL},   {SIGBUS, FSI_EXIT_SIGBUS, "sigbus"},
               {SIGSEGV, FSI_EXIT_SIGSEGV, "sigsegv"}, {SIGXFSZ, FSI_EXIT_SIGXFSZ, "sigxfsz"},
               {SIGXCPU, FSI_EXIT_SIGXCPU, "sigxcpu"}, {SIGHUP, FSI_EXIT_SIGHUP, "sighup"},
               {SIGILL, FSI_EXIT_SIGILL, "sigill"}};
    int code = FSI_EXIT_UNEXPECTED;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (map[i].sig != sig)
            continue;
        code = map[i].code;
        if (map[i].metric)
            fsi_metric_store("signals", map[i].metric, 1);
    }
    LOGE(M_SIGNAL, "Shutting down VM after intercepting signal %d, code %d.", sig,
         info ? info->si_code : 0);
    fsi_metrics_write();
    _exit(code);
}

static void setup_signals(void)
{
    struct sigaction sa = {.sa_sigaction = fatal_signal, .sa_flags = SA_SIGINFO};
    sigfillset(&sa.sa_mask);
    int sigs[] = {SIGSYS, SIGBUS, SIGSEGV, SIGXFSZ, SIGXCPU, SIGHUP, SIGILL};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The stand-in's guest signals are read by the VMM thread (signalfd). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void load_faults_file(void)
{
    fsi_faults_defaults(&g_start_faults);
    const char *anchors[] = {g_opts.no_api ? NULL : g_opts.api_sock, value("log-path"),
                             g_opts.config_file};
    for (size_t i = 0; i < 3; i++) {
        if (!anchors[i])
            continue;
        char *copy = fsi_xstrdup(anchors[i]);
        char *path = fsi_xasprintf("%s/standin-faults", dirname(copy));
        int rc = fsi_faults_from_file(&g_start_faults, path);
        if (rc == 0)
            LOGI(M_STANDIN, "standin: read faults from %s", path);
        free(path);
        free(copy);
        if (rc == 0)
            break;
    }
    fsi_faults *f = &g_start_faults;
    if (f->exit_at_start >= 0) {
        if (f->exit_message[0])
            fprintf(stderr, "%s\n", f->exit_message);
        exit(f->exit_at_start);
    }
    fsi_sleep_ms(f->start_delay_ms);
    fsi_fault_point(f, (const char *const[]){"start", NULL});
}

static char *read_file_or_panic(const char *path, const char *what, int line)
{
    FILE *fp = fopen(path, "re");
    if (!fp) {
        char *d = keep(fsi_io_error_debug(errno));
        panic_at(line, fsi_xasprintf("Unable to open or read from the %s: %s", what, d));
    }
    fsi_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        fsi_buf_append(&b, chunk, n);
    fclose(fp);
    return b.data ? b.data : fsi_xstrdup("");
}

static int bind_api_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = 0;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        err = EINVAL;
    } else {
        strcpy(sa.sun_path, path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0)
            err = errno;
    }
    if (!err)
        return fd;
    close(fd);
    char *q = keep(fsi_debug_str(path));
    if (err == EADDRINUSE)
        fail(FSI_EXIT_GENERIC,
             fsi_xasprintf("RunWithApiError error: Failed to open the API socket at: %s. Check "
                           "that it is not already used.",
                           path),
             fsi_xasprintf("RunWithApi(FailedToBindSocket(%s))", q));
    char *e = keep(fsi_io_error(err)), *d = keep(fsi_io_error_debug(err));
    fail(FSI_EXIT_GENERIC,
         fsi_xasprintf("RunWithApiError error: Failed to bind and run the HTTP server: IO error: "
                       "%s",
                       e),
         fsi_xasprintf("RunWithApi(FailedToBindAndRunHttpServer(IOError(%s)))", d));
}

/* build_microvm_from_json: parse, apply, start. NULL or "<Debug>\t<Display>". */
static void build_from_json(const char *json, const char *outer)
{
    json_error_t je;
    json_t *cfg = json_loads(json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    char *msg = cfg ? keep(fsi_schema_check("VmmConfig", cfg))
                    : keep(fsi_json_syntax_msg(&je, json, strlen(json)));
    char *display = NULL, *debug = NULL;
    if (msg) {
        display = fsi_xasprintf("Configuration for VMM from one single json failed: Invalid JSON: "
                                "%s",
                                msg);
        char *q = keep(fsi_debug_str(msg));
        debug = fsi_xasprintf("ParseFromJson(InvalidJson(Error(%s)))", q);
    } else if ((msg = keep(fsi_res_from_json(&g_vm.res, cfg)))) {
        display = fsi_xasprintf("Configuration for VMM from one single json failed: %s", msg);
        char *q = keep(fsi_debug_str(msg));
        debug = fsi_xasprintf("ParseFromJson(%s)", q);
    } else {
        const char *boot_args =
            json_string_value(json_object_get(json_object_get(cfg, "boot-source"), "boot_args"));
        g_vm.f = g_start_faults;
        fsi_faults_from_cmdline(&g_vm.f, boot_args ? boot_args : "");
        if ((msg = keep(fsi_start_microvm()))) {
            display = fsi_xasprintf("Could not Start MicroVM from one single json: %s", msg);
            char *q = keep(fsi_debug_str(msg));
            debug = fsi_xasprintf("StartMicroVM(%s)", q);
        } else {
            LOGI(M_MAIN, "Successfully started microvm that was configured from one single json");
        }
    }
    json_decref(cfg);
    keep(display);
    keep(debug);
    if (msg)
        fail(FSI_EXIT_GENERIC,
             fsi_xasprintf("%s error: Failed to build MicroVM from Json: %s",
                           !strcmp(outer, "RunWithApi") ? "RunWithApiError" : "RunWithoutApiError",
                           display),
             fsi_xasprintf("%s(%s(%s))", outer,
                           !strcmp(outer, "RunWithApi") ? "BuildFromJson" : "BuildMicroVMFromJson",
                           debug));
}

static void early_commands(void)
{
    if (flag("snapshot-version")) {
        printf("v%s\n", FSI_SNAPSHOT_VERSION);
        exit(0);
    }
    const char *snap = value("describe-snapshot");
    if (snap) {
        int fd = open(snap, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            char *e = keep(fsi_io_error(errno)), *d = keep(fsi_io_error_debug(errno));
            fail(FSI_EXIT_GENERIC,
                 fsi_xasprintf("When printing Snapshot Data format: Unable to open snapshot state "
                               "file: %s",
                               e),
                 fsi_xasprintf("PrintSnapshotDataFormat(OpenSnapshot(%s))", d));
        }
        close(fd);
        printf("v%s\n", FSI_SNAPSHOT_VERSION);
        exit(0);
    }
}

int main(int argc, char **argv)
{
    fsi_log_init(FSI_DEFAULT_ID);
    parse_args(argc, argv);
    early_commands();
    g_opts.id = value("id");
    check_id(g_opts.id);
    fsi_log_init(g_opts.id);
    setup_logger();
    setup_signals();
    g_opts.api_sock = value("api-sock");
    g_opts.config_file = value("config-file");
    g_opts.no_api = flag("no-api");
    if (value("metrics-path")) {
        char *e = keep(fsi_metrics_init(value("metrics-path"), false, NULL));
        if (e) {
            char *q = keep(fsi_debug_str(e));
            fail(FSI_EXIT_GENERIC,
                 fsi_xasprintf("Could not initialize metrics: Cannot initialize the metrics "
                               "system due to bad user input: %s",
                               e),
                 fsi_xasprintf("MetricsInitialization(InitializationFailure(%s))", q));
        }
    }
    if (value("seccomp-filter")) {
        int fd = open(value("seccomp-filter"), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            char *e = keep(fsi_io_error(errno)), *d = keep(fsi_io_error_debug(errno));
            fail(FSI_EXIT_GENERIC, fsi_xasprintf("Seccomp error: Filter file open error: %s", e),
                 fsi_xasprintf("SeccompFilter(FileOpen(%s))", d));
        }
        close(fd);
    }
    char *config = g_opts.config_file
                       ? keep(read_file_or_panic(g_opts.config_file, "configuration file", 376))
                       : NULL;
    char *metadata =
        value("metadata") ? read_file_or_panic(value("metadata"), "mmds content file", 381) : NULL;
    g_opts.payload_limit =
        parse_usize("http-api-max-payload-size", value("http-api-max-payload-size"), 389);
    size_t mmds_limit = value("mmds-size-limit")
                            ? parse_usize("mmds-size-limit", value("mmds-size-limit"), 400)
                            : g_opts.payload_limit;
    load_faults_file();
    if (fsi_vmm_init() < 0)
        fail(FSI_EXIT_GENERIC, fsi_xstrdup("standin: cannot set up the VMM thread"),
             fsi_xstrdup("standin: cannot set up the VMM thread"));
    g_vm.res.mmds_limit = mmds_limit;
    g_vm.res.pci = flag("enable-pci");
    g_vm.res.boot_timer = flag("boot-timer");
    if (metadata) {
        json_error_t je;
        json_t *v = json_loads(metadata, JSON_DECODE_ANY, &je);
        if (!v)
            panic_at(390, fsi_xasprintf("MMDS error: metadata provided not valid json: Error(%s)",
                                        je.text));
        char *msg = NULL;
        if (fsi_res_mmds_store(&g_vm.res, v, false, &msg))
            fail(FSI_EXIT_GENERIC, msg, fsi_xstrdup(msg));
        json_decref(v);
        LOGI(M_RPC, "Successfully added metadata to mmds from file");
    }
    if (!g_opts.no_api) {
        int lfd = bind_api_socket(g_opts.api_sock);
        char *q = fsi_debug_str(g_opts.api_sock);
        LOGI(M_MAIN, "Listening on API socket (%s).", q);
        free(q);
        if (fsi_http_start(lfd) < 0)
            fail(FSI_EXIT_GENERIC, fsi_xstrdup("standin: cannot start the API thread"),
                 fsi_xstrdup("standin: cannot start the API thread"));
    }
    if (config)
        build_from_json(config, g_opts.no_api ? "RunWithoutApiError" : "RunWithApi");
    free(config);
    free(metadata);
    int code = fsi_vmm_run();
    fsi_http_stop();
    if (g_vm.state != FSI_NOT_STARTED) { /* Drop for Vmm: "Killing vCPU threads", metrics */
        LOGI(M_VMM, "Killing vCPU threads");
        fsi_metrics_write();
    }
    if (g_vm.fatal)
        fail(FSI_EXIT_GENERIC,
             fsi_xstrdup("RunWithApiError error: Failed to build MicroVM: Loading snapshot "
                         "failed.."),
             fsi_xstrdup("RunWithApi(BuildMicroVmError(Restore))"));
    if (code != FSI_EXIT_OK) {
        static const char *const names[] = {[1] = "GenericError", [2] = "UnexpectedError"};
        const char *n = code < 3 ? names[code] : "GenericError";
        const char *outer = g_opts.no_api ? "RunWithoutApiError" : "RunWithApi";
        fail(code,
             fsi_xasprintf("%s error: MicroVM stopped with an error: %s",
                           g_opts.no_api ? "RunWithoutApiError" : "RunWithApiError", n),
             fsi_xasprintf("%s(%s(%s))", outer,
                           g_opts.no_api ? "Shutdown" : "MicroVMStoppedWithError", n));
    }
    LOGI(M_MAIN, "Firecracker exiting successfully. exit_code=0");
    return 0;
}
