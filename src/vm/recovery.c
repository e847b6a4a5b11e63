/*
 * recovery.c - start-up in durable mode: turn the stored records back into
 * live VMs, re-adopting the VMMs that kept running while chcp-api was down.
 *
 * Why it is careful: the daemon restarts far more often than VMs do, and a
 * wrong guess either loses a VM (a live VMM marked dead) or kills something
 * that is not ours (a reused pid). A VMM is ours only when all hold:
 *   - the pid exists and its start time (/proc/<pid>/stat field 22) is the
 *     stored one, and
 *   - the process holds the VM's event file (<state>/vms/<id>/events.json)
 *     open, i.e. it is the VMM spawned for that VM directory.
 * Anything else leaves the process alone and marks the VM CRASHED with the
 * reason. Processes that hold an event file of our state directory but that
 * no record owns (a crash between spawn and the durable CreateVm record) and
 * VM directories no record owns are orphans: reaped (SIGKILL through a pidfd
 * re-checked against the start time) or, with CHCP_ORPHAN_POLICY=keep, left
 * and logged.
 *
 * The synchronous part (load, /proc scan, decisions, reaping) runs before the
 * API is served; the vm.info round trips run on the loop, all VMs at once.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vm/vm_internal.h"

#define RECOVERY_INFO_TIMEOUT_MS 2000
#define REAP_WAIT_MS 2000

/* ---- /proc ----------------------------------------------------------------- */

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

/* Does `pid` hold `path` open (a /proc/<pid>/fd link naming it)? */
bool vm_proc_holds(int pid, const char *path)
{
    char dpath[64];
    snprintf(dpath, sizeof(dpath), "/proc/%d/fd", pid);
    DIR *d = opendir(dpath);
    if (!d)
        return false;
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        char lpath[384], target[PATH_MAX];
        if (de->d_name[0] == '.')
            continue;
        snprintf(lpath, sizeof(lpath), "%s/%s", dpath, de->d_name);
        ssize_t n = readlink(lpath, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        found = strcmp(target, path) == 0;
    }
    closedir(d);
    return found;
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

/* One process holding an event file under our VM directory. */
typedef struct vmm_proc {
    int pid;
    uint64_t start_time;
    char id[VM_ID_MAX + 1];
    bool owned; /* adopted for its record */
} vmm_proc;

typedef struct proc_scan {
    vmm_proc *v;
    size_t n, cap;
} proc_scan;

/* The VM id when `target` is <vms_real>/<id>/events.json. */
static bool events_link_id(const char *target, const char *vms_real, char id[VM_ID_MAX + 1])
{
    size_t l = strlen(vms_real);
    if (strncmp(target, vms_real, l) != 0 || target[l] != '/')
        return false;
    const char *name = target + l + 1;
    const char *slash = strchr(name, '/');
    if (!slash || strcmp(slash, "/events.json") != 0 || slash - name > VM_ID_MAX || slash == name)
        return false;
    memcpy(id, name, (size_t)(slash - name));
    id[slash - name] = '\0';
    return true;
}

static void scan_one(proc_scan *s, int pid, const char *vms_real)
{
    char dpath[64];
    snprintf(dpath, sizeof(dpath), "/proc/%d/fd", pid);
    DIR *d = opendir(dpath);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char lpath[384], target[PATH_MAX], id[VM_ID_MAX + 1];
        if (de->d_name[0] == '.')
            continue;
        snprintf(lpath, sizeof(lpath), "%s/%s", dpath, de->d_name);
        ssize_t n = readlink(lpath, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (!events_link_id(target, vms_real, id))
            continue;
        uint64_t st;
        if (vm_proc_start_time(pid, &st) < 0)
            break;
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
        }
        s->v[s->n] = (vmm_proc){.pid = pid, .start_time = st};
        memcpy(s->v[s->n].id, id, sizeof(id));
        s->n++;
        break;
    }
    closedir(d);
}

/* Every process (but us) holding an event file of one of our VM dirs. */
static void scan_processes(proc_scan *s, const char *vms_real)
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

/* SIGKILL through a pidfd, only while the pid is still the scanned process. */
static bool reap_process(const vmm_proc *p)
{
    int fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (fd < 0)
        return false;
    uint64_t st;
    if (vm_proc_start_time(p->pid, &st) < 0 || st != p->start_time) {
        close(fd);
        return false;
    }
    bool ok = syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (ok)
        poll(&pfd, 1, REAP_WAIT_MS);
    close(fd);
    return ok;
}

/* ---- records -> entries ------------------------------------------------------- */

/* Remove what a dead VMM leaves behind (its API socket); keep the logs. */
void vm_cleanup_leftovers(const vm_record *r)
{
    cleanup_free char *sock = xasprintf("%s/api.sock", r->dir);
    unlink(sock);
}

typedef struct load_ctx {
    vm_manager *m;
    vm_store_row *rows; /* pid, start time, offset, desired state per entry */
    vm_entry **entries;
    size_t n, cap;
    chcp_error *err;
} load_ctx;

static void load_row(const vm_store_row *row, void *ud)
{
    load_ctx *c = ud;
    vm_manager *m = c->m;
    chcp_error *err = NULL;
    if (!row->id || vm_validate_id(row->id, &err) < 0) {
        log_error("store: skipping a record with a bad id: %s", err ? err->message : "none");
        error_free(err);
        return;
    }
    vm_entry *e = xcalloc(1, sizeof(*e));
    e->m = m;
    e->persisted = true;
    vm_record *r = &e->rec;
    snprintf(r->id, sizeof(r->id), "%s", row->id);
    r->state = (vm_state)row->state;
    r->state_reason = xstrdup(row->state_reason ? row->state_reason : "");
    r->generation = row->generation;
    r->config_pb = xmalloc(row->config_len ? row->config_len : 1);
    if (row->config_len)
        memcpy(r->config_pb, row->config, row->config_len);
    r->config_pb_len = row->config_len;
    r->vmm_config_json = xstrdup(""); /* only CreateVm needs it */
    r->dir = xasprintf("%s/%s", m->vms_dir, row->id);
    r->vmm_pid = (int)row->vmm_pid;
    r->vmm_start_time = row->vmm_start_time;
    r->event_offset = row->event_offset;
    r->exit_code = row->exit_code;
    r->exit_signal = row->exit_signal;
    r->has_exit = row->exited_at_ns != 0;
    r->exited_at_ns = row->exited_at_ns;
    r->vmm_state = xstrdup("");
    r->created_at_ns = row->created_at_ns;
    r->updated_at_ns = row->updated_at_ns;
    r->state_changed_at_ns = row->state_changed_at_ns;
    if (vm_labels_decode(row->labels, row->labels_len, r, &err) < 0) {
        log_vm(LOG_ERROR, r->id, "store: %s (labels dropped)", err->message);
        error_free(err);
        err = NULL;
    }
    if (row->desired_state == VM_DELETING)
        e->deleting_on_recovery = true;
    vm_registry_add(m, e);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->entries = xrealloc(c->entries, c->cap * sizeof(*c->entries));
    }
    c->entries[c->n++] = e;
}

static void mark_dead(vm_entry *e, vm_recover_verdict v)
{
    vm_record *r = &e->rec;
    int pid = r->vmm_pid;
    r->vmm_pid = 0;
    r->has_exit = true;
    r->exit_code = -1;
    r->exit_signal = 0;
    r->exited_at_ns = time_real_ns();
    vm_cleanup_leftovers(r);
    if (e->deleting_on_recovery)
        return; /* its DeleteVm stopped it; recovery_finish() removes the rest */
    if (v == VM_RECOVER_PID_REUSED)
        vm_set_state(e, VM_CRASHED,
                     "VMM (pid %d) is gone: the pid now belongs to another process "
                     "(found at chcp-api start)",
                     pid);
    else if (v == VM_RECOVER_NOT_VMM)
        vm_set_state(e, VM_CRASHED,
                     "VMM (pid %d) no longer holds its event file (it was exiting at chcp-api "
                     "start); left alone",
                     pid);
    else if (v == VM_RECOVER_DEAD)
        vm_set_state(e, VM_CRASHED, "VMM (pid %d) exited while chcp-api was not running", pid);
    else
        vm_set_state(e, VM_CRASHED, "no VMM process recorded (found at chcp-api start)");
    e->m->recovery.crashed++;
}

/* ---- completion ----------------------------------------------------------------- */

static void deleted_on_recovery(void *ud, const chcp_error *err, const vm_record *vm)
{
    if (err)
        log_warn("finishing an interrupted DeleteVm: %s", err->message);
}

static void recovery_finish(vm_manager *m)
{
    m->recovery.running = false;
    m->recovery.complete = true;
    m->recovery.elapsed_ms = (time_mono_ns() - m->recovery_start_ns) / 1000000;
    log_info("recovery complete in %llu ms: %zu VM(s), %zu adopted, %zu crashed, %zu orphan "
             "process(es), %zu orphan dir(s)",
             (unsigned long long)m->recovery.elapsed_ms, m->recovery.total, m->recovery.adopted,
             m->recovery.crashed, m->recovery.orphans, m->recovery.orphan_dirs);
    /* DeleteVm calls a crash interrupted: finish them (their records say
     * DELETING; no client waits for them any more). */
    size_t n = m->n_vms;
    char(*ids)[VM_ID_MAX + 1] = xcalloc(n ? n : 1, sizeof(*ids));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (m->vms[i]->deleting_on_recovery)
            memcpy(ids[k++], m->vms[i]->rec.id, sizeof(ids[0]));
    for (size_t i = 0; i < k; i++)
        vm_op_submit(m, VM_OP_DELETE, ids[i], NULL, deleted_on_recovery, NULL, NULL);
    free(ids);
    void (*done)(void *) = steal_pointer(&m->recovery_done);
    if (done)
        done(m->recovery_ud);
}

static void settle_one(vm_manager *m)
{
    m->recovery.settled++;
    if (m->recovery.running && m->recovery.settled == m->recovery.total)
        recovery_finish(m);
}

static void finish_timer_cb(uv_timer_t *t)
{
    vm_manager *m = t->data;
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
    if (m->recovery.running && m->recovery.settled == m->recovery.total)
        recovery_finish(m);
}

/* vm.info of an adopted VMM: the truth about its state. */
static void reconcile_info(vm_entry *e, const vmb_reply *reply)
{
    json_t *root = reply && reply->body ? json_loadb(reply->body, reply->body_len, 0, NULL) : NULL;
    const char *st = json_string_value(json_object_get(root, "state"));
    json_t *mem = json_object_get(root, "memory_actual_size");
    if (json_is_integer(mem) && json_integer_value(mem) >= 0)
        e->rec.memory_actual_size = (uint64_t)json_integer_value(mem);
    if (st) {
        /* Not a change of the record: vmm_state is not stored. */
        free(e->rec.vmm_state);
        e->rec.vmm_state = xstrdup(st);
    }
    vm_state s = e->rec.state;
    if (!st || s == VM_FAILED || e->deleting_on_recovery) {
        /* nothing to reconcile */
    } else if (strcmp(st, "Running") == 0 && s != VM_RUNNING) {
        vm_set_state(e, VM_RUNNING, "reconciled at chcp-api start: the VMM reports Running");
    } else if (strcmp(st, "Paused") == 0 && s != VM_PAUSED) {
        vm_set_state(e, VM_PAUSED, "reconciled at chcp-api start: the VMM reports Paused");
    } else if ((strcmp(st, "Created") == 0 || strcmp(st, "Shutdown") == 0) &&
               (s == VM_RUNNING || s == VM_PAUSED)) {
        vm_set_state(e, VM_SHUTDOWN, "guest powered off while chcp-api was not running");
    }
    json_decref(root);
}

static void info_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_entry *e = ud;
    vm_manager *m = e->m;
    e->inflight--;
    e->recovering = false;
    if (!m->detached && !e->rec.has_exit) {
        if (err) {
            e->unresponsive = true;
            vm_set_state(e, e->rec.state, "VMM not responding at chcp-api start (%s)",
                         err->message);
        } else {
            reconcile_info(e, reply);
        }
    }
    error_free(err);
    vm_entry_unref(e);
    settle_one(m);
}

static void adopt_one(vm_manager *m, vm_entry *e)
{
    vmb_adopt_params p = {.vm_id = e->rec.id,
                          .dir = e->rec.dir,
                          .pid = e->rec.vmm_pid,
                          .start_time = e->rec.vmm_start_time,
                          .event_offset = e->rec.event_offset};
    chcp_error *err = NULL;
    e->recovering = true;
    e->vmm = m->ops->adopt(m->backend, &p, vm_lifecycle_callbacks(), e, &err);
    if (!e->vmm) {
        e->recovering = false;
        log_vm(LOG_WARN, e->rec.id, "cannot adopt the VMM: %s", err ? err->message : "?");
        error_free(err);
        mark_dead(e, VM_RECOVER_DEAD);
        settle_one(m);
        return;
    }
    m->recovery.adopted++;
    e->vmm_created = true;
    e->inflight++;
    e->refs++;
    vm_call_watch *w = vm_call_watch_start(e, NULL, "vm.info", info_done, e);
    m->ops->request(e->vmm, VMB_INFO, NULL, RECOVERY_INFO_TIMEOUT_MS, vm_call_watch_done, w);
}

static vmm_proc *scan_find(proc_scan *s, const char *id, int pid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].pid == pid && strcmp(s->v[i].id, id) == 0)
            return &s->v[i];
    return NULL;
}

static void recover_entry(vm_manager *m, vm_entry *e, proc_scan *scan)
{
    vm_record *r = &e->rec;
    if (r->vmm_pid <= 0) {
        /* Dead before the last stop (CRASHED with its reason) or never had
         * one: nothing to adopt. */
        if (r->state != VM_CRASHED && r->state != VM_FAILED && !e->deleting_on_recovery)
            mark_dead(e, VM_RECOVER_NO_PID);
        settle_one(m);
        return;
    }
    /* The scan already saw this pid holding this VM's event file, with its
     * start time: that is the whole ownership proof (ch_vmm_adopt re-checks
     * the start time through a pidfd). Otherwise find out why not. */
    vmm_proc *p = scan_find(scan, r->id, r->vmm_pid);
    vm_recover_verdict v = VM_RECOVER_ADOPT;
    if (!p || p->start_time != r->vmm_start_time) {
        cleanup_free char *events = xasprintf("%s/%s/events.json", m->vms_real, r->id);
        v = vm_recovery_check(r->vmm_pid, r->vmm_start_time, events);
    }
    if (v == VM_RECOVER_ADOPT && p && p->start_time == r->vmm_start_time && m->ops->adopt) {
        p->owned = true;
        adopt_one(m, e);
        return;
    }
    if (v == VM_RECOVER_PID_REUSED || v == VM_RECOVER_NOT_VMM)
        log_vm(LOG_WARN, r->id,
               "pid %d is alive but is not this VM's VMM (start time or event file differ): "
               "left alone",
               r->vmm_pid);
    mark_dead(e, v == VM_RECOVER_ADOPT ? VM_RECOVER_DEAD : v);
    settle_one(m);
}

/* Processes and directories that no record owns. */
static void reclaim_orphans(vm_manager *m, proc_scan *scan)
{
    for (size_t i = 0; i < scan->n; i++) {
        vmm_proc *p = &scan->v[i];
        if (p->owned)
            continue;
        m->recovery.orphans++;
        if (m->cfg.orphan_keep) {
            log_warn("orphan VMM pid %d (VM directory %s/%s, no record): kept "
                     "(CHCP_ORPHAN_POLICY=keep)",
                     p->pid, m->vms_dir, p->id);
        } else {
            bool ok = reap_process(p);
            log_warn("orphan VMM pid %d (VM directory %s/%s, no record): %s", p->pid, m->vms_dir,
                     p->id, ok ? "killed" : "already gone");
        }
    }
    DIR *d = opendir(m->vms_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || vm_manager_find(m, de->d_name))
            continue;
        m->recovery.orphan_dirs++;
        cleanup_free char *path = xasprintf("%s/%s", m->vms_dir, de->d_name);
        if (m->cfg.orphan_keep) {
            log_warn("orphan VM directory %s (no record): kept (CHCP_ORPHAN_POLICY=keep)", path);
            continue;
        }
        chcp_error *err = NULL;
        if (vm_dir_remove(path, &err) < 0) {
            log_warn("orphan VM directory %s: %s", path, err->message);
            error_free(err);
        } else {
            log_warn("orphan VM directory %s (no record): removed", path);
        }
    }
    closedir(d);
}

int vm_manager_recover(vm_manager *m, void (*done)(void *ud), void *ud, chcp_error **err)
{
    if (!m->store)
        return error_set(err, CHCP_INTERNAL, "recovery needs durable mode");
    m->recovery_start_ns = time_mono_ns();
    m->recovery.running = true;
    m->recovery_done = done;
    m->recovery_ud = ud;
    free(m->vms_real);
    m->vms_real = realpath(m->vms_dir, NULL);
    if (!m->vms_real)
        return error_set_errno(err, CHCP_INTERNAL, errno, "%s", m->vms_dir);

    load_ctx c = {.m = m};
    if (vm_store_load(m->store, load_row, &c, err) < 0) {
        free(c.entries);
        m->recovery.running = false;
        return -1;
    }
    m->recovery.total = c.n;
    proc_scan scan = {0};
    scan_processes(&scan, m->vms_real);
    log_info("recovering %zu stored VM(s); %zu VMM process(es) under %s", c.n, scan.n, m->vms_dir);
    /* settle_one() must not finish recovery before every entry was looked
     * at: count from a held-back total. */
    m->recovery.total = c.n + 1;
    uint64_t scanned_ns = time_mono_ns();
    for (size_t i = 0; i < c.n; i++)
        recover_entry(m, c.entries[i], &scan);
    reclaim_orphans(m, &scan);
    log_debug("recovery: load + /proc scan %llu ms, adoption %llu ms",
              (unsigned long long)(scanned_ns - m->recovery_start_ns) / 1000000,
              (unsigned long long)(time_mono_ns() - scanned_ns) / 1000000);
    m->recovery.total = c.n;
    free(c.entries);
    free(scan.v);
    /* Finish on the loop (also when nothing was adopted), never in here. */
    uv_timer_t *t = xcalloc(1, sizeof(*t));
    uv_timer_init(m->loop, t);
    t->data = m;
    uv_timer_start(t, finish_timer_cb, 0, 0);
    return 0;
}

void vm_manager_recovery_status(const vm_manager *m, vm_recovery_status *out)
{
    *out = m->recovery;
    if (m->recovery.running)
        out->elapsed_ms = (time_mono_ns() - m->recovery_start_ns) / 1000000;
}
