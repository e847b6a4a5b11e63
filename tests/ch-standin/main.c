/*
 * main.c - command line and start-up of the Cloud Hypervisor stand-in.
 *
 * Mirrors cloud-hypervisor/src/main.rs: umask 077, clap-style argument
 * errors (exit 2), --version, then start_vmm()'s order: log file, signals,
 * hypervisor check (the stand-in's no_kvm fault), event monitor + event
 * vmm/starting, API socket (lock "P.lock", unlink a stale socket, bind), the
 * control loop; the socket is removed on a clean exit, the .lock file is not.
 * Fatal start errors print CH's "Error: Cloud Hypervisor exited with the
 * following chain of errors:" block on stderr and exit 1.
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

si_opts g_opts = {.api_socket_fd = -1};
si_faults g_start_faults;

static const char *const value_opts[] = {"api-socket", "event-monitor", "log-file",
                                         "log-format", "seccomp",       NULL};
/* Real CH options the stand-in does not implement (VM config on the command line). */
static const char *const vm_opts[] = {"kernel",
                                      "firmware",
                                      "cmdline",
                                      "initramfs",
                                      "cpus",
                                      "memory",
                                      "memory-zone",
                                      "disk",
                                      "net",
                                      "rng",
                                      "serial",
                                      "console",
                                      "vsock",
                                      "pmem",
                                      "fs",
                                      "device",
                                      "user-device",
                                      "vdpa",
                                      "numa",
                                      "balloon",
                                      "platform",
                                      "tpm",
                                      "restore",
                                      "landlock-rules",
                                      "gdb",
                                      "igvm",
                                      "host-data",
                                      "debug-console",
                                      "pci-segment",
                                      "rate-limit-group",
                                      "generic-vhost-user",
                                      "fw-cfg-config",
                                      "dbus-service-name",
                                      "dbus-object-path",
                                      "watchdog",
                                      "pvpanic",
                                      "dbus-system-bus",
                                      NULL};

static bool in_list(const char *const *l, const char *s)
{
    for (; *l; l++)
        if (!strcmp(*l, s))
            return true;
    return false;
}

static void usage_error(char *msg)
{
    fprintf(stderr, "error: %s", msg);
    free(msg);
    fprintf(stderr, "\n\nUsage: cloud-hypervisor [OPTIONS]\n\nFor more information, try "
                    "'--help'.\n");
    exit(2);
}

static void print_help(void)
{
    printf("Launch a cloud-hypervisor VMM (test stand-in).\n\nUsage: cloud-hypervisor "
           "[OPTIONS]\n\nOptions:\n"
           "      --api-socket <api-socket>        HTTP API socket (UNIX domain socket): "
           "path=<path> or fd=<fd>.\n"
           "      --event-monitor <event-monitor>  Path to report events on: path=<path> or "
           "fd=<fd>\n"
           "      --log-file <log-file>            Log file. Standard error is used if not "
           "specified\n"
           "      --no-shutdown                    Do not exit the VMM when the guest shuts "
           "down\n"
           "      --seccomp <seccomp>              [default: true] [possible values: true, false, "
           "log, errno]\n"
           "  -v...                                Sets the level of debugging output\n"
           "      --version                        Print version\n"
           "  -h, --help                           Print help\n");
}

/* Fatal start error, printed like cli_print_error_chain(). */
static void die_chain(const char *e0, const char *e1, const char *e2)
{
    LOGE("Fatal error: %s", e0);
    fprintf(stderr, "Error: Cloud Hypervisor exited with the following %s\n",
            e1 ? "chain of errors:" : "error:");
    if (!e1) {
        fprintf(stderr, "  %s\n", e0);
    } else {
        fprintf(stderr, "  0: %s\n  1: %s\n", e0, e1);
        if (e2)
            fprintf(stderr, "  2: %s\n", e2);
    }
    _exit(1); /* like process::exit: no destructors, nothing to flush */
}

static const char *opt_log_format;
static const char *opt_seccomp;
static bool opt_version;

static void set_value(const char *name, const char *val)
{
    const char **slot = !strcmp(name, "api-socket")      ? &g_opts.api_socket_path
                        : !strcmp(name, "event-monitor") ? &g_opts.event_monitor
                        : !strcmp(name, "log-file")      ? &g_opts.log_file
                        : !strcmp(name, "log-format")    ? &opt_log_format
                                                         : &opt_seccomp;
    if (*slot) {
        usage_error(
            si_xasprintf("the argument '--%s <%s>' cannot be used multiple times", name, name));
    }
    *slot = val;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] != '-' && a[1]) {
            for (const char *p = a + 1; *p; p++) {
                if (*p == 'v')
                    g_opts.verbosity++;
                else if (*p == 'h') {
                    print_help();
                    exit(0);
                } else {
                    usage_error(si_xasprintf("unexpected argument '-%c' found", *p));
                }
            }
            continue;
        }
        if (strncmp(a, "--", 2) || !a[2])
            usage_error(si_xasprintf("unexpected argument '%s' found", a));
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof(name))
            usage_error(si_xasprintf("unexpected argument '%s' found", a));
        memcpy(name, a + 2, n);
        name[n] = '\0';
        if (in_list(value_opts, name)) {
            const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val) {
                usage_error(si_xasprintf("a value is required for '--%s <%s>' but none was "
                                         "supplied",
                                         name, name));
            }
            set_value(name, val);
        } else if (!strcmp(name, "no-shutdown") && !eq) {
            g_opts.no_shutdown = true;
        } else if (!strcmp(name, "landlock") && !eq) {
            /* accepted, nothing to restrict in a stand-in */
        } else if (!strcmp(name, "version") && !eq) {
            opt_version = true;
        } else if (!strcmp(name, "help") && !eq) {
            print_help();
            exit(0);
        } else if (in_list(vm_opts, name)) {
            fprintf(stderr,
                    "cloud-hypervisor stand-in: --%s is not supported; configure the VM "
                    "through the API\n",
                    name);
            exit(1);
        } else {
            usage_error(si_xasprintf("unexpected argument '%s' found", a));
        }
    }
    if (opt_seccomp && strcmp(opt_seccomp, "true") && strcmp(opt_seccomp, "false") &&
        strcmp(opt_seccomp, "log") && strcmp(opt_seccomp, "errno")) {
        fprintf(stderr,
                "error: invalid value '%s' for '--seccomp <seccomp>'\n  [possible "
                "values: true, false, log, errno]\n\nFor more information, try "
                "'--help'.\n",
                opt_seccomp);
        exit(2);
    }
}

/* OptionParser: "k=v,k2=v2"; returns the value of key or NULL. */
static char *option_get(const char *spec, const char *key, bool *ok)
{
    char *copy = si_xstrdup(spec), *save = NULL, *res = NULL;
    *ok = true;
    for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            *ok = false;
            continue;
        }
        *eq = '\0';
        if (strcmp(kv, "path") && strcmp(kv, "fd"))
            *ok = false;
        if (!strcmp(kv, key))
            res = si_xstrdup(eq + 1);
    }
    free(copy);
    return res;
}

static int parse_fd(const char *s)
{
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno || end == s || *end || n < 0 || n > 0x7fffffff)
        return -1;
    return (int)n;
}

static void load_faults_file(void)
{
    si_faults_defaults(&g_start_faults);
    char *sock = NULL;
    if (g_opts.api_socket_path) {
        bool ok;
        sock = option_get(g_opts.api_socket_path, "path", &ok);
        if (!sock && !strchr(g_opts.api_socket_path, '='))
            sock = si_xstrdup(g_opts.api_socket_path);
    }
    const char *anchors[] = {g_opts.log_file, sock};
    for (int i = 0; i < 2; i++) {
        if (!anchors[i])
            continue;
        char *copy = si_xstrdup(anchors[i]);
        char *path = si_xasprintf("%s/standin-faults", dirname(copy));
        int rc = si_faults_from_file(&g_start_faults, path);
        if (rc == 0)
            LOGI("standin: read faults from %s", path);
        free(path);
        free(copy);
        if (rc == 0)
            break;
    }
    free(sock);
}

static void start_faults(void)
{
    si_faults *f = &g_start_faults;
    if (f->exit_at_start >= 0) {
        if (f->exit_message[0])
            fprintf(stderr, "%s\n", f->exit_message);
        exit(f->exit_at_start);
    }
    si_sleep_ms(f->start_delay_ms);
    g_vm.f = *f;
    si_fault_point("start");
    if (f->no_kvm) /* hypervisor::new() without /dev/kvm */
        die_chain("Failed to open hypervisor interface (is hypervisor interface available?)",
                  "Failed to create the hypervisor", "no supported hypervisor");
}

static int open_event_monitor(void)
{
    if (!g_opts.event_monitor)
        return -1;
    bool ok;
    char *fd_s = option_get(g_opts.event_monitor, "fd", &ok);
    char *path = option_get(g_opts.event_monitor, "path", &ok);
    if (!ok) {
        free(fd_s);
        free(path);
        die_chain("Error parsing --event-monitor", "unknown option", NULL);
    }
    int fd = -1;
    if (fd_s) {
        fd = parse_fd(fd_s);
        if (fd < 0)
            die_chain("Error parsing --event-monitor", "invalid digit found in string", NULL);
    } else if (path) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (fd < 0)
            die_chain("Error doing event monitor I/O", si_os_error(errno), NULL);
    } else {
        die_chain("Error parsing --event-monitor: path or fd required", NULL, NULL);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die_chain("Error doing event monitor I/O", si_os_error(errno), NULL);
    free(fd_s);
    free(path);
    return fd;
}

static char *sock_path;

static int bind_api_socket(const char *path)
{
    char *lock = si_xasprintf("%s.lock", path);
    int lfd = open(lock, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (lfd < 0)
        die_chain("Failed to start the VMM thread", "Error creation API server's socket",
                  si_os_error(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(lfd, F_OFD_SETLK, &fl) < 0) {
        char *m =
            si_xasprintf("API socket \"%s\" is already in use by another running instance", path);
        die_chain("Failed to start the VMM thread", m, NULL);
    }
    free(lock); /* lfd stays open: the lock lives as long as the process */
    unlink(path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        fd = -1;
    }
    if (fd >= 0) {
        strcpy(sa.sun_path, path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0)
            fd = -1;
    }
    if (fd < 0)
        die_chain("Failed to start the VMM thread", "Error creation API server's socket",
                  si_os_error(errno));
    sock_path = si_xstrdup(path);
    return fd;
}

static int open_api_socket(void)
{
    if (!g_opts.api_socket_path)
        return -1;
    bool ok;
    char *fd_s = option_get(g_opts.api_socket_path, "fd", &ok);
    char *path = option_get(g_opts.api_socket_path, "path", &ok);
    int fd;
    if (fd_s) {
        fd = parse_fd(fd_s);
        if (fd < 0)
            die_chain("Error parsing --api-socket", "invalid digit found in string", NULL);
        int type = 0;
        socklen_t len = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
            char *m = si_xasprintf("Error creating API server: IO error: %s", si_os_error(errno));
            die_chain("Failed to start the VMM thread", m, NULL);
        }
        g_opts.api_socket_fd = fd;
        g_opts.api_socket_path = NULL;
    } else {
        fd = bind_api_socket(path ? path : g_opts.api_socket_path);
        g_opts.api_socket_path = sock_path;
    }
    free(fd_s);
    free(path);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    return fd;
}

int main(int argc, char **argv)
{
    umask(077);
    parse_args(argc, argv);
    if (opt_version) {
        printf("cloud-hypervisor %s\nMigration Protocol Versions: 1.0\n", SI_BUILD_VERSION);
        if (g_opts.verbosity)
            printf("Enabled features: [\"io_uring\", \"kvm\"]\n");
        return 0;
    }
    int log_fd = -1;
    if (g_opts.log_file) {
        log_fd = open(g_opts.log_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (log_fd < 0)
            die_chain("Error creating log file", si_os_error(errno), NULL);
    }
    static const int levels[] = {SI_WARN, SI_INFO, SI_DEBUG, SI_TRACE};
    si_log_init(log_fd, levels[g_opts.verbosity > 3 ? 3 : g_opts.verbosity]);
    pthread_setname_np(pthread_self(), "cloud-hypervis");
    load_faults_file();

    signal(SIGPIPE, SIG_IGN); /* Rust programs see EPIPE, not SIGPIPE */
    signal(SIGCHLD, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    int blocked[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGRTMIN};
    for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++)
        sigaddset(&set, blocked[i]);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    LOGI("%s starting", SI_BUILD_VERSION);
    start_faults();
    si_events_init(open_event_monitor());
    si_event("vmm", "starting", NULL);
    if (si_vmm_init() < 0)
        die_chain("Failed to start the VMM thread", si_os_error(errno), NULL);
    int lfd = open_api_socket();
    if (lfd >= 0 && si_http_start(lfd) < 0)
        die_chain("Failed to start the VMM thread", "Failed to spawn the HTTP thread", NULL);

    int code = si_vmm_run();
    si_http_stop();
    si_events_flush();
    if (sock_path && code == 0) /* main.rs removes it only when the VMM ran Ok */
        unlink(sock_path);
    LOGI("Cloud Hypervisor exited %s", code ? "with an error" : "successfully");
    json_decref(g_vm.config);
    exit(code);
}
