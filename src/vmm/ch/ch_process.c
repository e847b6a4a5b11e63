/*
 * ch_process.c - starting a cloud-hypervisor process and the low-level
 * process facts the supervisor needs (reaping, start time, signalling).
 *
 * The VMM must be able to outlive the daemon, so it gets nothing that ties it
 * to us: its own session (setsid), default signal dispositions and an empty
 * mask, stdin from /dev/null, stdout/stderr into files, a clean environment,
 * and no descriptors except the two it is told about. chcp binds and listens
 * on the API socket itself (`--api-socket fd=3`), so the socket exists before
 * the VMM runs and readiness is a single vmm.ping instead of polling for a
 * file. Events go to a regular file (`--event-monitor fd=4`) opened O_APPEND,
 * which a restarted daemon can re-read from a saved offset.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "vmm/ch/ch_priv.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Descriptors handed to the child are first moved to >= this number, so that
 * the dup2()s onto 0..4 in the child cannot clobber one another. */
#define CH_CHILD_FD_BASE 10
#define CH_MAX_ARGS 64
#define CH_TAIL_BYTES 1024

char *ch_path_join(const char *dir, const char *name, chcp_error **err)
{
    char *p = xasprintf("%s/%s", dir, name);
    if (strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path) &&
        strcmp(name, CH_API_SOCKET_NAME) == 0) {
        error_set(err, CHCP_INVALID_ARGUMENT, "VM directory path too long for a socket: %s", p);
        free(p);
        return NULL;
    }
    return p;
}

int ch_proc_start_time(pid_t pid, uint64_t *out, chcp_error **err)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, CHCP_NOT_FOUND, errno, "process %d", (int)pid);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return error_set(err, CHCP_NOT_FOUND, "process %d: cannot read stat", (int)pid);
    buf[n] = 0;
    /* comm (field 2) may contain spaces and parentheses: skip past the last
     * ')'. Field 3 follows; the start time is field 22. */
    char *p = strrchr(buf, ')');
    if (!p)
        return error_set(err, CHCP_INTERNAL, "process %d: malformed stat", (int)pid);
    p++;
    for (int field = 3; field <= 22; field++) {
        while (*p == ' ')
            p++;
        char *end = p;
        while (*end && *end != ' ')
            end++;
        if (end == p)
            break;
        if (field == 22) {
            char tmp[32];
            size_t len = (size_t)(end - p);
            if (len >= sizeof(tmp))
                break;
            memcpy(tmp, p, len);
            tmp[len] = 0;
            if (!str_to_u64(tmp, UINT64_MAX, out))
                break;
            return 0;
        }
        p = end;
    }
    return error_set(err, CHCP_INTERNAL, "process %d: malformed stat", (int)pid);
}

static int open_at_high(const char *path, int flags, mode_t mode, chcp_error **err)
{
    int fd = open(path, flags | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "opening %s", path);
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, CH_CHILD_FD_BASE);
    int e = errno;
    close(fd);
    if (hi < 0)
        return error_set_errno(err, CHCP_INTERNAL, e, "fcntl");
    return hi;
}

static int listen_at(const char *path, chcp_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(sa.sun_path))
        return error_set(err, CHCP_INVALID_ARGUMENT, "socket path too long: %s", path);
    memcpy(sa.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "socket");
    /* A leftover from an earlier VMM of this VM; the directory is ours. */
    if (unlink(path) < 0 && errno != ENOENT) {
        close(fd);
        return error_set_errno(err, CHCP_INTERNAL, errno, "removing stale %s", path);
    }
    mode_t old = umask(0077);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (r < 0 || listen(fd, 16) < 0) {
        e = r < 0 ? e : errno;
        close(fd);
        return error_set_errno(err, CHCP_INTERNAL, e, "binding API socket %s", path);
    }
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, CH_CHILD_FD_BASE);
    e = errno;
    close(fd);
    if (hi < 0)
        return error_set_errno(err, CHCP_INTERNAL, e, "fcntl");
    return hi;
}

/* Everything between fork and exec: async-signal-safe calls only. */
static __attribute__((noreturn)) void child_exec(const char *binary, char *const argv[],
                                                 char *const envp[], const char *dir,
                                                 const int src[5])
{
    for (int i = 0; i < 5; i++)
        if (dup2(src[i], i) < 0)
            _exit(126);
    /* Everything else goes: we do not know what the daemon has open. */
    if (close_range(5u, ~0u, 0) < 0)
        for (int fd = 5; fd < 65536; fd++)
            close(fd);
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    /* glibc refuses its internal real-time signals (32, 33), which may have
     * been inherited as ignored: reset those with the raw system call (an
     * all-zero kernel sigaction is SIG_DFL whatever the architecture's
     * layout). */
    static const char zero_ksa[64];
    for (int s = 1; s < NSIG; s++)
        if (sigaction(s, &dfl, NULL) < 0 && s != SIGKILL && s != SIGSTOP)
            syscall(SYS_rt_sigaction, s, zero_ksa, NULL, (size_t)8);
    if (chdir(dir) < 0)
        _exit(126);
    execve(binary, argv, envp);
    int e = errno;
    static const char msg[] = "chcp: cannot execute the VMM binary: ";
    const char *es = strerrorname_np(e);
    ssize_t UNUSED w = write(2, msg, sizeof(msg) - 1);
    if (es)
        w = write(2, es, strlen(es));
    w = write(2, "\n", 1);
    _exit(127);
}

static void build_argv(const ch_spawn_opts *o, const char *log_path, const char *argv[], size_t max)
{
    size_t n = 0;
    argv[n++] = o->binary;
    argv[n++] = "--api-socket";
    argv[n++] = "fd=3";
    argv[n++] = "--event-monitor";
    argv[n++] = "fd=4";
    argv[n++] = "--log-file";
    argv[n++] = log_path;
    static const char *const vs[] = {"-v", "-vv", "-vvv"};
    int v = o->verbosity <= 0 ? 1 : o->verbosity > 3 ? 3 : o->verbosity;
    argv[n++] = vs[v - 1];
    if (o->no_shutdown)
        argv[n++] = "--no-shutdown";
    for (size_t i = 0; o->extra_args && o->extra_args[i] && n + 1 < max; i++)
        argv[n++] = o->extra_args[i];
    argv[n] = NULL;
}

static void close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

int ch_process_spawn(const ch_spawn_opts *o, ch_child *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    out->pidfd = -1;
    if (!o || !o->binary || !o->dir || o->binary[0] != '/')
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "VMM binary (absolute path) and VM "
                         "directory are required");
    size_t nextra = 0;
    while (o->extra_args && o->extra_args[nextra])
        nextra++;
    if (nextra > CH_MAX_ARGS - 12)
        return error_set(err, CHCP_INVALID_ARGUMENT, "too many extra VMM arguments");
    if (access(o->binary, X_OK) < 0)
        return error_set_errno(err, CHCP_FAILED_PRECONDITION, errno, "VMM binary %s", o->binary);
    struct stat st;
    if (stat(o->dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return error_set(err, CHCP_FAILED_PRECONDITION, "VM directory %s does not exist", o->dir);

    cleanup_free char *sock = ch_path_join(o->dir, CH_API_SOCKET_NAME, err);
    if (!sock)
        return -1;
    cleanup_free char *events = ch_path_join(o->dir, CH_EVENTS_FILE_NAME, err);
    cleanup_free char *log = ch_path_join(o->dir, CH_LOG_FILE_NAME, err);
    cleanup_free char *outp = ch_path_join(o->dir, CH_STDOUT_FILE_NAME, err);
    cleanup_free char *errp = ch_path_join(o->dir, CH_STDERR_FILE_NAME, err);

    /* 0 stdin, 1 stdout, 2 stderr, 3 API socket, 4 event file */
    int fds[5] = {-1, -1, -1, -1, -1};
    fds[0] = open_at_high("/dev/null", O_RDONLY, 0, err);
    if (fds[0] >= 0)
        fds[1] = open_at_high(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600, err);
    if (fds[1] >= 0)
        fds[2] = open_at_high(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600, err);
    if (fds[2] >= 0)
        fds[4] = open_at_high(events, O_WRONLY | O_APPEND | O_CREAT, 0600, err);
    if (fds[4] >= 0)
        fds[3] = listen_at(sock, err);
    if (fds[3] < 0) {
        close_all(fds, 5);
        return -1;
    }
    if (fstat(fds[4], &st) < 0 || !S_ISREG(st.st_mode)) {
        close_all(fds, 5);
        return error_set(err, CHCP_FAILED_PRECONDITION, "%s is not a regular file", events);
    }
    out->event_offset = (uint64_t)st.st_size;

    const char *argv[CH_MAX_ARGS + 1];
    build_argv(o, log, argv, CH_MAX_ARGS);
    static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};

    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close_all(fds, 5);
        return error_set_errno(err, CHCP_RESOURCE_EXHAUSTED, e, "fork");
    }
    if (pid == 0)
        child_exec(o->binary, (char *const *)argv, envp, o->dir, fds);

    /* The VMM owns the listening socket and the files now. */
    close_all(fds, 5);
    out->pid = pid;
    /* The child cannot be reaped by anyone else, so the pid is still ours. */
    out->pidfd = pidfd_open(pid, 0);
    if (out->pidfd < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return error_set_errno(err, CHCP_INTERNAL, e, "pidfd_open");
    }
    if (ch_proc_start_time(pid, &out->start_time, err) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(out->pidfd);
        out->pidfd = -1;
        return -1;
    }
    out->socket_path = steal_pointer(&sock);
    out->events_path = steal_pointer(&events);
    return 0;
}

int ch_process_reap(int pidfd, int *status, int *sig, char *reason, size_t reason_len)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG) < 0) {
        *status = -1;
        *sig = 0;
        snprintf(reason, reason_len, "exited (status unavailable: %s)", strerror(errno));
        return -1;
    }
    if (si.si_pid == 0)
        return 1;
    if (si.si_code == CLD_EXITED) {
        *status = si.si_status;
        *sig = 0;
        snprintf(reason, reason_len, "exited with status %d", si.si_status);
    } else {
        *status = -1;
        *sig = si.si_status;
        snprintf(reason, reason_len, "killed by signal %d (%s)%s", si.si_status,
                 sigabbrev_np(si.si_status) ? sigabbrev_np(si.si_status) : "?",
                 si.si_code == CLD_DUMPED ? ", core dumped" : "");
    }
    return 0;
}

/* The exit status in waitpid(2) form, as a status, a signal and a reason. */
static void describe_wait_status(int ws, int *status, int *sig, char *reason, size_t reason_len,
                                 const char *suffix)
{
    if (WIFEXITED(ws)) {
        *status = WEXITSTATUS(ws);
        *sig = 0;
        snprintf(reason, reason_len, "exited with status %d%s", *status, suffix);
    } else {
        *status = -1;
        *sig = WTERMSIG(ws);
        snprintf(reason, reason_len, "killed by signal %d (%s)%s%s", *sig,
                 sigabbrev_np(*sig) ? sigabbrev_np(*sig) : "?",
                 WCOREDUMP(ws) ? ", core dumped" : "", suffix);
    }
}

/*
 * Linux >= 6.15 keeps a process's exit status for every pidfd holder, also
 * when it is not our child and has been reaped: ioctl(PIDFD_GET_INFO) with
 * PIDFD_INFO_EXIT. Debian 12's headers predate it, so the ABI (uapi
 * linux/pidfd.h, first published size 64 bytes) is spelled out here.
 */
struct ch_pidfd_info {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
};
#define CH_PIDFD_GET_INFO _IOWR(0xFF, 11, struct ch_pidfd_info)
#define CH_PIDFD_INFO_EXIT (1ull << 3)

static bool pidfd_exit_status(int pidfd, int *ws)
{
    struct ch_pidfd_info info = {.mask = CH_PIDFD_INFO_EXIT};
    if (ioctl(pidfd, CH_PIDFD_GET_INFO, &info) < 0 || !(info.mask & CH_PIDFD_INFO_EXIT))
        return false;
    *ws = info.exit_code;
    return true;
}

/* A zombie's exit status: /proc/<pid>/stat field 52 (Linux >= 3.5), while
 * its parent has not reaped it, and only if it is still our process. */
static bool zombie_exit_status(pid_t pid, uint64_t start_time, int *ws)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || p[2] != 'Z')
        return false;
    /* Fields 3 (state) to 52, space separated after the comm's ')'. */
    unsigned long long start = 0;
    long long code = 0;
    char *save = NULL;
    int field = 3;
    for (char *tok = strtok_r(p + 2, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        if (field == 22)
            start = strtoull(tok, NULL, 10);
        if (field == 52) {
            code = strtoll(tok, NULL, 10);
            if (start != start_time)
                return false;
            *ws = (int)code;
            return true;
        }
        field++;
    }
    return false;
}

int ch_process_foreign_exit(pid_t pid, int pidfd, uint64_t start_time, int *status, int *sig,
                            char *reason, size_t reason_len)
{
    int ws;
    /* Reaped: the pidfd knows (new kernels). Not yet reaped: /proc does.
     * Reaped between the two looks: ask the pidfd again. */
    if (pidfd_exit_status(pidfd, &ws) || zombie_exit_status(pid, start_time, &ws) ||
        pidfd_exit_status(pidfd, &ws)) {
        describe_wait_status(ws, status, sig, reason, reason_len, " (adopted process)");
        return 0;
    }
    *status = -1;
    *sig = 0;
    snprintf(reason, reason_len,
             "exited (adopted process: status unknown; Linux >= 6.15 reports it)");
    return -1;
}

/* The last lines of a log file, on one line, for an error message. */
static void append_tail(chcp_buf *b, const char *dir, const char *name)
{
    cleanup_free char *path = xasprintf("%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return;
    struct stat st;
    char buf[CH_TAIL_BYTES + 1];
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t from = st.st_size > CH_TAIL_BYTES ? st.st_size - CH_TAIL_BYTES : 0;
        n = pread(fd, buf, CH_TAIL_BYTES, from);
    }
    close(fd);
    if (n <= 0)
        return;
    /* Trim and flatten: one line, printable ASCII only. */
    size_t s = 0, e = (size_t)n;
    while (s < e && (buf[s] == '\n' || buf[s] == ' '))
        s++;
    while (e > s && (buf[e - 1] == '\n' || buf[e - 1] == ' ' || buf[e - 1] == '\r'))
        e--;
    if (s == e)
        return;
    buf_printf(b, "; %s: ", name);
    for (size_t i = s; i < e; i++) {
        unsigned char c = (unsigned char)buf[i];
        buf_append_byte(b, c == '\n' ? '|' : (c < 0x20 || c > 0x7e) ? '?' : c);
    }
}

void ch_process_log_tails(const char *dir, chcp_buf *b)
{
    append_tail(b, dir, CH_STDERR_FILE_NAME);
    append_tail(b, dir, CH_LOG_FILE_NAME);
}

int ch_process_signal(pid_t pid, int pidfd, uint64_t start_time, int sig, bool group)
{
    /* The pidfd names exactly our process, whatever happened to the pid. */
    if (pidfd >= 0 && pidfd_send_signal(pidfd, sig, NULL, 0) < 0)
        return -1;
    if (!group)
        return 0;
    /* The group id is the leader's pid (setsid); only use it while the leader
     * is verifiably the process we started. */
    uint64_t now = 0;
    if (ch_proc_start_time(pid, &now, NULL) < 0 || now != start_time)
        return 0;
    kill(-pid, sig);
    return 0;
}
