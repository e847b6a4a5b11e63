/*
 * qemu_process.c - starting qemu-system-x86_64 for one VM and the process
 * facts a supervisor needs (reap through the pidfd, signal only the process we
 * started, the stderr tail for error messages).
 *
 * Same hygiene as the Cloud Hypervisor spawn (src/vmm/ch/ch_process.c): argv
 * only, environment PATH only, every descriptor closed except those argv
 * names, default signal dispositions, its own session (the VMM outlives the
 * daemon), stdin /dev/null, stdout/stderr into files of the VM directory.
 * chcp binds the QMP socket itself and hands QEMU the listening descriptor,
 * so the socket exists before QEMU runs and a client may connect at once (the
 * connection waits in the backlog until QEMU accepts it).
 *
 * The generic parts (fd placement, child setup, reap, start time) duplicate
 * ch_process.c on purpose for now: that file is being reworked for the backend
 * contract; both should move to one src/vmm/ helper then.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "vmm/qemu/qemu.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Descriptors for the child are first moved at or above this number so the
 * dup2()s onto 0..N in the child cannot clobber one another. */
#define QEMU_FD_BASE 16
#define QEMU_MAX_CHILD_FDS (QEMU_CHILD_FD_FIRST + 1 + QEMU_MAX_NICS)
#define QEMU_TAIL_BYTES 1024

static int proc_start_time(pid_t pid, uint64_t *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    /* comm may hold spaces and ')': fields restart after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    /* fields 3.. follow, space separated; starttime is field 22 */
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(p + 1, &end, 10);
    if (errno || end == p + 1)
        return -1;
    *out = v;
    return 0;
}

static int dup_high(int fd, chcp_error **err)
{
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, QEMU_FD_BASE);
    if (hi < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "fcntl(F_DUPFD)");
    return hi;
}

static int open_high(const char *path, int flags, chcp_error **err)
{
    int fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "opening %s", path);
    int hi = dup_high(fd, err);
    close(fd);
    return hi;
}

static int listen_high(const char *path, chcp_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return error_set(err, CHCP_INVALID_ARGUMENT, "VM directory path too long for a socket: %s",
                         path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "socket");
    /* A leftover from an earlier QEMU of this VM; the directory is ours. */
    if (unlink(path) < 0 && errno != ENOENT) {
        close(fd);
        return error_set_errno(err, CHCP_INTERNAL, errno, "removing stale %s", path);
    }
    mode_t old = umask(0077);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (r < 0 || listen(fd, 4) < 0) {
        e = r < 0 ? e : errno;
        close(fd);
        return error_set_errno(err, CHCP_INTERNAL, e, "binding QMP socket %s", path);
    }
    int hi = dup_high(fd, err);
    close(fd);
    return hi;
}

/* Between fork and exec: async-signal-safe calls only. `src[i]` becomes fd i. */
static __attribute__((noreturn)) void child_exec(char *const argv[], const char *dir,
                                                 const int *src, int nsrc)
{
    static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    for (int i = 0; i < nsrc; i++)
        if (dup2(src[i], i) < 0)
            _exit(126);
    if (close_range((unsigned)nsrc, ~0u, 0) < 0)
        for (int fd = nsrc; fd < 65536; fd++)
            close(fd);
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    static const char zero_ksa[64];
    for (int s = 1; s < NSIG; s++)
        if (sigaction(s, &dfl, NULL) < 0 && s != SIGKILL && s != SIGSTOP)
            syscall(SYS_rt_sigaction, s, zero_ksa, NULL, (size_t)8);
    if (chdir(dir) < 0)
        _exit(126);
    execve(argv[0], argv, envp);
    static const char msg[] = "chcp: cannot execute QEMU: ";
    const char *es = strerrorname_np(errno);
    ssize_t UNUSED w = write(2, msg, sizeof(msg) - 1);
    if (es)
        w = write(2, es, strlen(es));
    w = write(2, "\n", 1);
    _exit(127);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

int qemu_process_spawn(const char *binary, const char *dir, const qemu_vm_desc *desc,
                       qemu_child *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    out->pidfd = -1;
    struct stat st;
    if (!dir || dir[0] != '/' || stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return error_set(err, CHCP_FAILED_PRECONDITION, "VM directory %s does not exist",
                         dir ? dir : "(none)");
    if (!binary || binary[0] != '/' || access(binary, X_OK) < 0)
        return error_set_errno(err, CHCP_FAILED_PRECONDITION, binary ? errno : EINVAL,
                               "QEMU binary %s", binary ? binary : "(none)");

    cleanup_free char *qmp = xasprintf("%s/%s", dir, QEMU_QMP_SOCKET_NAME);
    cleanup_free char *outp = xasprintf("%s/%s", dir, QEMU_STDOUT_FILE_NAME);
    cleanup_free char *errp = xasprintf("%s/%s", dir, QEMU_STDERR_FILE_NAME);
    int fds[QEMU_MAX_CHILD_FDS];
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        fds[i] = -1;
    int nfds = QEMU_CHILD_FD_FIRST;
    fds[0] = open_high("/dev/null", O_RDONLY, err);
    if (fds[0] >= 0)
        fds[1] = open_high(outp, O_WRONLY | O_CREAT | O_TRUNC, err);
    if (fds[1] >= 0)
        fds[2] = open_high(errp, O_WRONLY | O_CREAT | O_TRUNC, err);
    int qmp_fd = fds[2] >= 0 ? listen_high(qmp, err) : -1;
    if (qmp_fd < 0) {
        close_fds(fds, nfds);
        return -1;
    }
    qemu_argv a;
    if (qemu_argv_build(desc, binary, qmp_fd, &a, err) < 0) {
        close(qmp_fd);
        close_fds(fds, nfds);
        unlink(qmp);
        return -1;
    }
    /* The argv's descriptors, moved high; the caller keeps its own. */
    for (size_t i = 0; i < a.nfds; i++) {
        int fd = a.child_fds[i] == qmp_fd ? qmp_fd : dup_high(a.child_fds[i], err);
        if (fd < 0) { /* never the QMP socket: it is already in fds */
            close_fds(fds, nfds);
            qemu_argv_free(&a);
            unlink(qmp);
            return -1;
        }
        fds[nfds++] = fd;
    }

    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close_fds(fds, nfds);
        qemu_argv_free(&a);
        unlink(qmp);
        return error_set_errno(err, CHCP_RESOURCE_EXHAUSTED, e, "fork");
    }
    if (pid == 0)
        child_exec(a.argv, dir, fds, nfds);
    close_fds(fds, nfds);
    qemu_argv_free(&a);
    out->pid = pid;
    out->pidfd = pidfd_open(pid, 0);
    if (out->pidfd < 0 || proc_start_time(pid, &out->start_time) < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (out->pidfd >= 0)
            close(out->pidfd);
        out->pidfd = -1;
        unlink(qmp);
        return error_set_errno(err, CHCP_INTERNAL, e, "watching the QEMU process");
    }
    out->qmp_path = steal_pointer(&qmp);
    return 0;
}

void qemu_child_clear(qemu_child *c)
{
    if (!c)
        return;
    if (c->pidfd >= 0)
        close(c->pidfd);
    c->pidfd = -1;
    free(c->qmp_path);
    c->qmp_path = NULL;
}

int qemu_process_reap(int pidfd, int *status, int *sig, char *reason, size_t reason_len)
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
        snprintf(reason, reason_len, "killed by signal %d (%s)", si.si_status,
                 sigabbrev_np(si.si_status) ? sigabbrev_np(si.si_status) : "?");
    }
    return 0;
}

int qemu_process_signal(const qemu_child *c, int sig)
{
    if (c->pidfd < 0 || pidfd_send_signal(c->pidfd, sig, NULL, 0) < 0)
        return -1;
    uint64_t now = 0;
    /* The group id is QEMU's pid (setsid): use it only while it is still ours. */
    if (sig == SIGKILL && proc_start_time(c->pid, &now) == 0 && now == c->start_time)
        kill(-c->pid, sig);
    return 0;
}

char *qemu_process_stderr_tail(const char *dir)
{
    cleanup_free char *path = xasprintf("%s/%s", dir, QEMU_STDERR_FILE_NAME);
    char buf[QEMU_TAIL_BYTES + 1];
    ssize_t n = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            n = pread(fd, buf, QEMU_TAIL_BYTES,
                      st.st_size > QEMU_TAIL_BYTES ? st.st_size - QEMU_TAIL_BYTES : 0);
        close(fd);
    }
    chcp_buf b = CHCP_BUF_INIT;
    for (ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n' && (b.len == 0 || i == n - 1))
            continue;
        buf_append_byte(&b, c == '\n' ? '|' : (c < 0x20 || c > 0x7e) ? '?' : c);
    }
    buf_append_byte(&b, 0);
    return (char *)b.data;
}
