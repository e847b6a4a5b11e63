/*
 * run.c - run a helper tool (genisoimage, qemu-img) and wait for it: argv
 * only (no shell), a clean environment, stdin and stdout on /dev/null, no
 * inherited descriptor but stderr, which is read back for the error message,
 * default signal handling, and a deadline after which the tool is killed.
 *
 * The daemon is multi-threaded (libuv's pool), so the child does nothing but
 * async-signal-safe calls between fork and exec; argv, environment and the
 * tool's path are prepared before the fork.
 */
#include "net/net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define SYSTEM_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define STDERR_KEEP 1024

char *net_find_tool(const char *name)
{
    if (name[0] == '/')
        return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
    for (const char *p = SYSTEM_PATH; *p;) {
        const char *end = strchrnul(p, ':');
        cleanup_free char *cand = xasprintf("%.*s/%s", (int)(end - p), p, name);
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
            return steal_pointer(&cand);
        p = *end ? end + 1 : end;
    }
    return NULL;
}

static void child_exec(const char *path, const char *const argv[], int devnull, int err_fd)
{
    static char *const env[] = {"PATH=" SYSTEM_PATH, "LC_ALL=C", NULL};
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(SIGPIPE, &dfl, NULL); /* the daemon ignores it; the tool should not */
    if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(126);
    syscall(SYS_close_range, 3U, ~0U, 0U);
    execve(path, (char *const *)argv, env);
    _exit(127);
}

/* Read the child's stderr until EOF or the deadline, keeping the tail. */
static bool read_stderr(int fd, uint64_t deadline_ns, chcp_buf *tail)
{
    char chunk[512];
    for (;;) {
        uint64_t now = time_mono_ns();
        if (now >= deadline_ns)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)((deadline_ns - now) / 1000000 + 1));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return true;
        buf_append(tail, chunk, (size_t)n);
        if (tail->len > STDERR_KEEP)
            buf_consume(tail, tail->len - STDERR_KEEP);
    }
}

static char *one_line(chcp_buf *b)
{
    buf_append_byte(b, 0);
    char *s = buf_steal_str(b);
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = 0;
    for (char *p = s; *p; p++)
        if (*p == '\n' || (unsigned char)*p < 0x20)
            *p = ' ';
    return s;
}

int net_run(const char *const argv[], uint64_t timeout_ms, chcp_error **err)
{
    cleanup_free char *path = net_find_tool(argv[0]);
    if (!path)
        return error_set(err, CHCP_FAILED_PRECONDITION, "%s is not installed", argv[0]);
    cleanup_close int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int pipefd[2];
    if (devnull < 0 || pipe2(pipefd, O_CLOEXEC) < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "running %s", argv[0]);
    pid_t pid = fork();
    if (pid == 0)
        child_exec(path, argv, devnull, pipefd[1]);
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "running %s: fork", argv[0]);
    }
    chcp_buf tail = CHCP_BUF_INIT;
    bool finished = read_stderr(pipefd[0], time_mono_ns() + timeout_ms * 1000000, &tail);
    close(pipefd[0]);
    if (!finished)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    cleanup_free char *msg = one_line(&tail);
    if (!finished)
        return error_set(err, CHCP_DEADLINE_EXCEEDED, "%s did not finish within %llu ms", argv[0],
                         (unsigned long long)timeout_ms);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return error_set(err, CHCP_INTERNAL, "%s failed (exit %d): %s", argv[0],
                         WEXITSTATUS(status), *msg ? msg : "no message");
    return error_set(err, CHCP_INTERNAL, "%s was killed by signal %d", argv[0],
                     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
