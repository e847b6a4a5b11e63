/*
 * procscan.c - finding the VMM processes of our state directory in /proc,
 * and the few process facts recovery decides on.
 *
 * Why /proc and not just the stored pids: the store can be lost or stale,
 * and a pid can be reused. What a process says about itself is the ground
 * truth. chcp spawns every VMM (src/vmm/ch/ch_process.c) with:
 *   - its event file <state>/vms/<id>/events.json open for writing
 *     (O_WRONLY|O_APPEND, at fd 4),
 *   - the VM directory as its working directory,
 *   - a session of its own (setsid).
 * A process holding an event file only for reading (an operator's tail -f)
 * is not a VMM and is never considered. One that holds it for writing but
 * lacks another mark is reported, never signalled: only a process with all
 * the marks can be acted upon without a record naming it, and even then
 * only with proof (recovery.c). /proc shows "<path> (deleted)" for a file
 * or directory removed while the process runs: such a VMM lost its VM
 * directory (docs/durability.md) and is still found.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vm/vm_internal.h"

#define REAP_WAIT_MS 2000
#define DELETED_SUFFIX " (deleted)"

/* /proc/<pid>/stat: field 3 (state) and field 22 (start time). */
static int proc_stat(int pid, char *state, uint64_t *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* comm (field 2) may hold spaces and parentheses: count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || !p[1] || !p[2])
        return -1;
    p++;
    if (state)
        *state = p[1];
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p + 1, &end, 10);
    if (errno || end == p + 1)
        return -1;
    *out = v;
    return 0;
}

int vm_proc_start_time(int pid, uint64_t *out)
{
    return proc_stat(pid, NULL, out);
}

/* Is fd `fd` of `pid` open for writing (/proc/<pid>/fdinfo "flags:", octal)? */
static bool fd_writable(int pid, const char *fd)
{
    char path[512], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", pid, fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return false;
    ssize_t n = read(f, buf, sizeof(buf) - 1);
    close(f);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *p = strstr(buf, "flags:");
    if (!p)
        return false;
    unsigned long flags = strtoul(p + 6, NULL, 8);
    return (flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR;
}

/* readlink /proc/<pid>/<name> into out; false when none. */
static bool proc_link(int pid, const char *name, char out[PATH_MAX])
{
    char path[512];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
    ssize_t n = readlink(path, out, PATH_MAX - 1);
    if (n <= 0)
        return false;
    out[n] = '\0';
    return true;
}

/* `link` names `path`, or `path` deleted. */
static bool names(const char *link, const char *path, bool *deleted)
{
    size_t l = strlen(path);
    if (strncmp(link, path, l) != 0)
        return false;
    *deleted = strcmp(link + l, DELETED_SUFFIX) == 0;
    return link[l] == '\0' || *deleted;
}

/* Does an fd of `pid`, open for writing, have a target `match` accepts?
 * fd 4 (where chcp puts a VMM's event file) is tried first. */
typedef bool (*fd_target_fn)(const char *target, void *ud);

static bool writable_fd_matching(int pid, fd_target_fn match, void *ud)
{
    char target[PATH_MAX];
    if (proc_link(pid, "fd/4", target) && match(target, ud))
        return fd_writable(pid, "4");
    char dpath[64];
    snprintf(dpath, sizeof(dpath), "/proc/%d/fd", pid);
    DIR *d = opendir(dpath);
    if (!d)
        return false;
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        char lname[300];
        if (de->d_name[0] == '.')
            continue;
        snprintf(lname, sizeof(lname), "fd/%s", de->d_name);
        found = proc_link(pid, lname, target) && match(target, ud) && fd_writable(pid, de->d_name);
    }
    closedir(d);
    return found;
}

static bool target_is(const char *target, void *path)
{
    bool deleted;
    return names(target, path, &deleted);
}

bool vm_proc_holds(int pid, const char *path)
{
    return writable_fd_matching(pid, target_is, (void *)path);
}

vm_recover_verdict vm_recovery_check(int pid, uint64_t start_time, const char *events_path)
{
    uint64_t now;
    char state = 0;
    if (pid <= 0)
        return VM_RECOVER_NO_PID;
    if (proc_stat(pid, &state, &now) < 0 || state == 'Z' || state == 'X')
        return VM_RECOVER_DEAD; /* gone, or a zombie waiting to be reaped */
    if (now != start_time)
        return VM_RECOVER_PID_REUSED;
    if (!vm_proc_holds(pid, events_path))
        return VM_RECOVER_NOT_VMM;
    return VM_RECOVER_ADOPT;
}

/* ---- the scan ------------------------------------------------------------------ */

/* The VM id when `target` is <vms_real>/<id>/events.json (maybe deleted). */
static bool events_link_id(const char *target, const char *vms_real, char id[VM_ID_MAX + 1],
                           bool *deleted)
{
    size_t l = strlen(vms_real);
    if (strncmp(target, vms_real, l) != 0 || target[l] != '/')
        return false;
    const char *name = target + l + 1;
    const char *slash = strchr(name, '/');
    if (!slash || slash - name > VM_ID_MAX || slash == name)
        return false;
    *deleted = strcmp(slash, "/events.json" DELETED_SUFFIX) == 0;
    if (strcmp(slash, "/events.json") != 0 && !*deleted)
        return false;
    memcpy(id, name, (size_t)(slash - name));
    id[slash - name] = '\0';
    return true;
}

typedef struct event_target {
    const char *vms_real;
    char *id;
    bool *deleted;
} event_target;

static bool target_is_event_file(const char *target, void *ud)
{
    event_target *t = ud;
    return events_link_id(target, t->vms_real, t->id, t->deleted);
}

/* An fd holding a VM's event file for writing: its id, and whether the
 * file was deleted. */
static bool find_event_fd(int pid, const char *vms_real, char id[VM_ID_MAX + 1], bool *deleted)
{
    event_target t = {.vms_real = vms_real, .id = id, .deleted = deleted};
    return writable_fd_matching(pid, target_is_event_file, &t);
}

static void scan_one(vm_proc_scan *s, int pid, const char *vms_real)
{
    char id[VM_ID_MAX + 1];
    bool events_deleted = false;
    uint64_t st;
    if (!find_event_fd(pid, vms_real, id, &events_deleted) || vm_proc_start_time(pid, &st) < 0)
        return;
    char cwd[PATH_MAX];
    cleanup_free char *dir = xasprintf("%s/%s", vms_real, id);
    bool dir_deleted = false;
    bool marks = proc_link(pid, "cwd", cwd) && names(cwd, dir, &dir_deleted) && getsid(pid) == pid;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n] = (vm_vmm_proc){.pid = pid,
                               .start_time = st,
                               .events_deleted = events_deleted,
                               .dir_deleted = marks && dir_deleted,
                               .vmm_marks = marks};
    memcpy(s->v[s->n].id, id, sizeof(id));
    s->n++;
}

void vm_proc_scan_run(vm_proc_scan *s, const char *vms_real)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *de;
    int self = getpid();
    while ((de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        scan_one(s, (int)pid, vms_real);
    }
    closedir(d);
}

vm_vmm_proc *vm_proc_scan_find(vm_proc_scan *s, const char *id, int pid)
{
    for (size_t i = 0; i < s->n; i++)
        if ((pid == 0 || s->v[i].pid == pid) && strcmp(s->v[i].id, id) == 0)
            return &s->v[i];
    return NULL;
}

void vm_proc_scan_free(vm_proc_scan *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* A pidfd for `pid` while it is still the process started at `start_time`. */
static int pidfd_checked(int pid, uint64_t start_time)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return -1;
    uint64_t st;
    if (vm_proc_start_time(pid, &st) < 0 || st != start_time) {
        close(fd);
        return -1;
    }
    return fd;
}

bool vm_proc_reap(const vm_vmm_proc *p)
{
    int fd = pidfd_checked(p->pid, p->start_time);
    if (fd < 0)
        return false;
    bool ok = syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (ok)
        poll(&pfd, 1, REAP_WAIT_MS);
    close(fd);
    return ok;
}

/* ---- stopping a VMM nobody adopted ------------------------------------------------ */

typedef struct proc_kill {
    uv_poll_t poll;
    uv_timer_t timer; /* completion when there was nothing to wait for */
    int fd;
    vmb_done_fn done;
    void *ud;
    int open_handles;
} proc_kill;

static void kill_closed(uv_handle_t *h)
{
    proc_kill *k = h->data;
    if (--k->open_handles == 0) {
        if (k->fd >= 0)
            close(k->fd);
        free(k);
    }
}

static void kill_finish(proc_kill *k)
{
    vmb_done_fn done = steal_pointer(&k->done);
    if (!done)
        return;
    uv_close((uv_handle_t *)&k->timer, kill_closed);
    if (k->fd >= 0)
        uv_close((uv_handle_t *)&k->poll, kill_closed);
    done(k->ud, NULL, NULL);
}

static void kill_gone(uv_poll_t *h, int status, int events)
{
    kill_finish(h->data);
}

static void kill_now(uv_timer_t *t)
{
    kill_finish(t->data);
}

void vm_proc_kill_async(uv_loop_t *loop, int pid, uint64_t start_time, vmb_done_fn done, void *ud)
{
    proc_kill *k = xcalloc(1, sizeof(*k));
    k->done = done;
    k->ud = ud;
    k->fd = pidfd_checked(pid, start_time);
    uv_timer_init(loop, &k->timer);
    k->timer.data = k;
    k->open_handles = 1;
    if (k->fd >= 0 && syscall(SYS_pidfd_send_signal, k->fd, SIGKILL, NULL, 0) == 0 &&
        uv_poll_init(loop, &k->poll, k->fd) == 0) {
        k->poll.data = k;
        k->open_handles++;
        uv_poll_start(&k->poll, UV_READABLE, kill_gone);
        return;
    }
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
    uv_timer_start(&k->timer, kill_now, 0, 0); /* gone already, or not ours */
}
