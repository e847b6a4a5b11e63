/*
 * recovery.c - start-up in durable mode: turn what the state directory holds
 * back into live VMs, re-adopting the VMMs that kept running while chcp-api
 * was down.
 *
 * Why it is careful: the daemon restarts far more often than VMs do, and a
 * wrong guess either loses a VM (a live VMM marked dead, or killed) or kills
 * something that is not ours (a reused pid). Three sources are merged:
 *   - the store's rows (chcp.db), authoritative when present;
 *   - each VM directory's vm.json (vmfile.c), which rebuilds a row the store
 *     lost (a deleted, truncated or emptied chcp.db, deleted rows) and wins
 *     where it is newer than the row;
 *   - the processes themselves (procscan.c): a VMM is adopted for a VM when
 *     its pid and start time are the recorded ones and it holds the VM's
 *     event file for writing, or - when no record names it - when it carries
 *     every mark of a VMM chcp spawned for that directory.
 * Nothing is killed or deleted without proof that nobody wants it: a VMM
 * next to a vm.json saying `creating` (its CreateVm was never acknowledged),
 * a VM whose deletion was asked for (DELETING), an empty directory. Anything
 * else found without a record - a live VMM or a directory with files - is
 * registered as a VM with an unknown configuration, visible to ListVms and
 * removable with DeleteVm, and logged. docs/durability.md has the rules.
 *
 * The synchronous part (load, directory listing, /proc scan, decisions,
 * reaping) runs before the API is served; the vm.info round trips run on the
 * loop, all VMs at once.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/vm_internal.h"

#define RECOVERY_INFO_TIMEOUT_MS 2000

/* ---- limits ------------------------------------------------------------------- */

int vm_fd_budget_check(size_t n_vms, chcp_error **err)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    uint64_t need = (uint64_t)n_vms * VM_FDS_PER_VM + VM_FDS_RESERVE;
    if (need <= rl.rlim_cur)
        return 0;
    return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                     "%zu VMs need about %llu file descriptors, more than RLIMIT_NOFILE allows "
                     "(%llu, hard limit %llu): raise it (systemd: LimitNOFILE=)",
                     n_vms, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
                     rl.rlim_max == RLIM_INFINITY ? 0ull : (unsigned long long)rl.rlim_max);
}

/* ---- what the state directory holds ------------------------------------------------ */

/* Remove what a dead VMM leaves behind (its API socket); keep the logs. */
void vm_cleanup_leftovers(const vm_record *r)
{
    cleanup_free char *sock = xasprintf("%s/api.sock", r->dir);
    unlink(sock);
}

/* One directory under vms/. */
typedef struct found_dir {
    char *name;
    bool has_record;    /* vm.json read and valid */
    vm_record_file rec; /* when has_record */
    char *record_error; /* vm.json present but unusable */
    bool empty;         /* nothing in it but vm.json.tmp */
    bool claimed;       /* a VM owns it */
} found_dir;

typedef struct recovery {
    vm_manager *m;
    vm_entry **entries;
    size_t n, cap;
    found_dir *dirs;
    size_t n_dirs, cap_dirs;
    vm_proc_scan scan;
} recovery;

static found_dir *dir_find(recovery *c, const char *id)
{
    for (size_t i = 0; i < c->n_dirs; i++)
        if (strcmp(c->dirs[i].name, id) == 0)
            return &c->dirs[i];
    return NULL;
}

static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool empty = true;
    struct dirent *de;
    while (empty && (de = readdir(d)))
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                strcmp(de->d_name, VM_RECORD_FILE ".tmp") == 0;
    closedir(d);
    return empty;
}

static void list_dirs(recovery *c)
{
    vm_manager *m = c->m;
    DIR *d = opendir(m->vms_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        cleanup_free char *path = xasprintf("%s/%s", m->vms_dir, de->d_name);
        struct stat sb;
        if (lstat(path, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
            log_warn("%s: not a VM directory: left alone", path);
            continue;
        }
        if (c->n_dirs == c->cap_dirs) {
            c->cap_dirs = c->cap_dirs ? c->cap_dirs * 2 : 64;
            c->dirs = xrealloc(c->dirs, c->cap_dirs * sizeof(*c->dirs));
        }
        found_dir *f = &c->dirs[c->n_dirs++];
        memset(f, 0, sizeof(*f));
        f->name = xstrdup(de->d_name);
        chcp_error *err = NULL;
        if (vm_record_read(path, &f->rec, &err) == 0) {
            if (strcmp(f->rec.id, f->name) == 0) {
                f->has_record = true;
            } else {
                f->record_error = xasprintf("%s/%s names VM %s", path, VM_RECORD_FILE, f->rec.id);
                vm_record_file_clear(&f->rec);
            }
        } else if (err->code != CHCP_NOT_FOUND) {
            f->record_error = xstrdup(err->message);
        }
        error_free(err);
        f->empty = !f->has_record && !f->record_error && dir_is_empty(path);
    }
    closedir(d);
}

static void free_dirs(recovery *c)
{
    for (size_t i = 0; i < c->n_dirs; i++) {
        free(c->dirs[i].name);
        free(c->dirs[i].record_error);
        vm_record_file_clear(&c->dirs[i].rec);
    }
    free(c->dirs);
}

/* ---- records -> entries ------------------------------------------------------------ */

static void add_entry(recovery *c, vm_entry *e)
{
    vm_registry_add(c->m, e);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->entries = xrealloc(c->entries, c->cap * sizeof(*c->entries));
    }
    c->entries[c->n++] = e;
}

static vm_entry *entry_from_row(recovery *c, const vm_store_row *row)
{
    vm_manager *m = c->m;
    chcp_error *err = NULL;
    if (!row->id || vm_validate_id(row->id, &err) < 0) {
        log_error("store: skipping a record with a bad id: %s", err ? err->message : "none");
        error_free(err);
        return NULL;
    }
    if (vm_manager_find(m, row->id)) {
        log_error("store: VM %s is recorded twice: the first record is kept", row->id);
        return NULL;
    }
    vm_entry *e = xcalloc(1, sizeof(*e));
    e->m = m;
    e->persisted = true;
    vm_record *r = &e->rec;
    snprintf(r->id, sizeof(r->id), "%s", row->id);
    snprintf(e->backend, sizeof(e->backend), "%s",
             row->backend && row->backend[0] ? row->backend : VM_STORE_DEFAULT_BACKEND);
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
    }
    if (row->desired_state == VM_DELETING)
        e->deleting_on_recovery = true;
    add_entry(c, e);
    return e;
}

static void load_row(const vm_store_row *row, void *ud)
{
    entry_from_row(ud, row);
}

/* A row as vm.json describes it. */
static vm_store_row row_of_record(const vm_record_file *f, const char *reason)
{
    return (vm_store_row){
        .id = f->id,
        .backend = f->backend,
        .config = f->config,
        .config_len = f->config_len,
        .labels = f->labels,
        .labels_len = f->labels_len,
        .desired_state = f->phase == VM_PHASE_DELETING ? VM_DELETING : f->state,
        .state = f->state,
        .state_reason = reason,
        .vmm_pid = f->vmm_pid,
        .vmm_start_time = f->vmm_start_time,
        .exit_code = f->exit_code,
        .exit_signal = f->exit_signal,
        .exited_at_ns = f->has_exit ? (f->exited_at_ns ? f->exited_at_ns : 1) : 0,
        .created_at_ns = f->created_at_ns,
        .updated_at_ns = time_real_ns(),
        .state_changed_at_ns = f->state_changed_at_ns,
        .generation = f->generation,
    };
}

/* Row and vm.json of one VM: the row wins, except where vm.json is newer
 * (written first, its row's commit lost) or says a deletion began. */
static void merge_record(vm_entry *e, const vm_record_file *f)
{
    vm_record *r = &e->rec;
    if (f->phase == VM_PHASE_DELETING && !e->deleting_on_recovery) {
        log_vm(LOG_WARN, r->id,
               "vm.json says its deletion began, the store does not: finishing the deletion");
        e->deleting_on_recovery = true;
    }
    if (f->generation > r->generation &&
        (f->vmm_pid != r->vmm_pid || f->vmm_start_time != r->vmm_start_time ||
         f->state != (int)r->state)) {
        log_vm(LOG_WARN, r->id,
               "vm.json (generation %llu) is newer than the store's row (%llu): VMM pid %lld "
               "and state %s taken from it",
               (unsigned long long)f->generation, (unsigned long long)r->generation,
               (long long)f->vmm_pid, vm_state_name((vm_state)f->state));
        r->vmm_pid = (int)f->vmm_pid;
        r->vmm_start_time = f->vmm_start_time;
        r->state = (vm_state)f->state;
        r->state_changed_at_ns = f->state_changed_at_ns;
        r->has_exit = f->has_exit;
        r->exit_code = f->exit_code;
        r->exit_signal = f->exit_signal;
        r->exited_at_ns = f->exited_at_ns;
        r->generation = f->generation;
        e->dirty = true;
    }
}

/* The entry's vm.json is written after recovery unless it already says
 * what the entry does. */
static void check_record_file(vm_entry *e, const found_dir *d)
{
    /* A VM whose directory is gone gets one back: its record lives there
     * (DeleteVm removes both). */
    if (!d && mkdir(e->rec.dir, 0700) == 0)
        log_vm(LOG_WARN, e->rec.id, "its VM directory %s was missing: made again", e->rec.dir);
    uint64_t want = vm_persist_record_hash(e), have = 0;
    if (d && d->has_record) {
        char *text = vm_record_render(&d->rec, &have);
        free(text);
    }
    e->record_hash = have == want ? want : 0;
    if (!e->record_hash || e->dirty)
        vm_persist_mark(e);
}

/* A VM the store has no row for, from its vm.json. */
static vm_entry *rebuild(recovery *c, found_dir *d)
{
    vm_store_row row = row_of_record(&d->rec, "rebuilt from vm.json at chcp-api start (the "
                                              "store had no record of it)");
    vm_entry *e = entry_from_row(c, &row);
    if (!e)
        return NULL;
    c->m->recovery.rebuilt++;
    log_vm(LOG_WARN, e->rec.id,
           "the store has no record of VM %s: rebuilt from %s/%s (phase %s, VMM pid %lld)",
           e->rec.id, e->rec.dir, VM_RECORD_FILE, vm_record_phase_name(d->rec.phase),
           (long long)d->rec.vmm_pid);
    e->dirty = true; /* its row is written */
    return e;
}

/* A VM found with neither row nor vm.json: a live VMM or a directory with
 * files. Its configuration is unknown; it is kept, visible and deletable. */
static vm_entry *unaccounted(recovery *c, const char *id, const vm_vmm_proc *p)
{
    uint64_t now = time_real_ns();
    vm_store_row row = {
        .id = id,
        .labels = (const uint8_t *)"{}",
        .labels_len = 2,
        .state = p ? VM_CREATED : VM_CRASHED,
        .desired_state = p ? VM_CREATED : VM_CRASHED,
        .state_reason = p ? "found at chcp-api start without any record (no store row, no "
                            "vm.json): VMM adopted, configuration unknown"
                          : "found at chcp-api start without any record (no store row, no "
                            "vm.json) and without a VMM: configuration unknown; DeleteVm "
                            "removes its directory",
        .vmm_pid = p ? p->pid : 0,
        .vmm_start_time = p ? p->start_time : 0,
        .created_at_ns = now,
        .updated_at_ns = now,
        .state_changed_at_ns = now,
        .generation = 1,
    };
    vm_entry *e = entry_from_row(c, &row);
    if (!e)
        return NULL;
    c->m->recovery.unaccounted++;
    e->reconcile_any = p != NULL;
    vm_persist_mark(e); /* its row and vm.json */
    log_vm(LOG_WARN, id, "%s/%s: %s", c->m->vms_dir, id, row.state_reason);
    return e;
}

/* ---- verdicts ------------------------------------------------------------------------ */

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

/* The VMM lives but cannot be driven by this chcp-api: keep the VM with its
 * pid (a later start tries again), refuse operations, DeleteVm kills it. */
static void mark_unadopted(vm_entry *e, const char *why)
{
    e->unadopted = true;
    e->m->recovery.unadopted++;
    vm_set_state(e, e->rec.state,
                 "VMM (pid %d) is alive but was not adopted: %s; only DeleteVm works until "
                 "chcp-api is restarted with that fixed",
                 e->rec.vmm_pid, why);
    log_vm(LOG_ERROR, e->rec.id, "%s", e->rec.state_reason);
}

/* ---- completion ------------------------------------------------------------------------ */

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
    vm_recovery_status *s = &m->recovery;
    log_info("recovery complete in %llu ms: %zu VM(s), %zu adopted, %zu crashed, %zu rebuilt "
             "from vm.json, %zu without any record, %zu not adopted, %zu orphan process(es) "
             "(%zu reaped), %zu orphan dir(s)",
             (unsigned long long)s->elapsed_ms, s->total, s->adopted, s->crashed, s->rebuilt,
             s->unaccounted, s->unadopted, s->orphans, s->reaped, s->orphan_dirs);
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

static const struct {
    const char *ch;
    vm_state state;
} ch_states[] = {
    {"Running", VM_RUNNING},
    {"Paused", VM_PAUSED},
    {"Created", VM_CREATED},
    {"Shutdown", VM_SHUTDOWN},
};

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
    if (!st || e->deleting_on_recovery || (s == VM_FAILED && !e->reconcile_any)) {
        /* nothing to reconcile (a half-booted VM stays FAILED) */
    } else if (e->reconcile_any || s == VM_CRASHED) {
        /* A VMM no record named, or a stale row that said CRASHED while
         * its VMM answers: whatever it says is the state. */
        for (size_t i = 0; i < ARRAY_SIZE(ch_states); i++) {
            if (strcmp(st, ch_states[i].ch) != 0 || s == ch_states[i].state)
                continue;
            if (e->reconcile_any) /* keeps the reason saying how it was found */
                vm_set_state(e, ch_states[i].state, NULL);
            else
                vm_set_state(e, ch_states[i].state,
                             "reconciled at chcp-api start: the VMM reports %s", st);
        }
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
        if (err && e->api_lost) {
            e->unresponsive = true;
            vm_set_state(e, e->rec.state,
                         "its VM directory was deleted while the VMM ran, and its API socket "
                         "with it: the VMM cannot be driven; DeleteVm stops it (%s)",
                         err->message);
        } else if (err) {
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

/* A VMM whose event file (or whole directory) was deleted while it ran:
 * give the directory an empty event file so the backend can follow it (the
 * VMM writes into the deleted one; nothing arrives, which is the truth). */
static void prepare_lost_dir(vm_entry *e, const vm_vmm_proc *p)
{
    if (!p->events_deleted && !p->dir_deleted)
        return;
    e->api_lost = p->dir_deleted;
    e->rec.event_offset = 0;
    if (mkdir(e->rec.dir, 0700) < 0 && errno != EEXIST)
        log_vm(LOG_WARN, e->rec.id, "recreating %s: %s", e->rec.dir, strerror(errno));
    cleanup_free char *events = xasprintf("%s/events.json", e->rec.dir);
    int fd = open(events, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0)
        close(fd);
    log_vm(LOG_ERROR, e->rec.id,
           "VMM pid %d runs in a VM directory that was deleted while it ran (%s): adopted "
           "without its API socket; DeleteVm stops it",
           p->pid, p->dir_deleted ? "directory" : "event file");
}

static void adopt_one(vm_manager *m, vm_entry *e, vm_vmm_proc *p)
{
    p->owned = true;
    const char *ours = m->ops->name ? m->ops->name : VM_STORE_DEFAULT_BACKEND;
    if (strcmp(e->backend, ours) != 0 || !m->ops->adopt) {
        cleanup_free char *why = xasprintf("it belongs to backend %s, not %s", e->backend, ours);
        mark_unadopted(e, why);
        settle_one(m);
        return;
    }
    prepare_lost_dir(e, p);
    vmb_adopt_params ap = {.vm_id = e->rec.id,
                           .dir = e->rec.dir,
                           .pid = e->rec.vmm_pid,
                           .start_time = e->rec.vmm_start_time,
                           .event_offset = e->rec.event_offset};
    chcp_error *err = NULL;
    e->recovering = true;
    e->vmm = m->ops->adopt(m->backend, &ap, vm_lifecycle_callbacks(), e, &err);
    if (!e->vmm) {
        e->recovering = false;
        /* Only a VMM that is verifiably gone is dead; failing to adopt a
         * live one (out of file descriptors, inotify watches, ...) is not
         * a reason to lose it. */
        uint64_t st;
        bool alive = vm_proc_start_time(e->rec.vmm_pid, &st) == 0 && st == e->rec.vmm_start_time;
        log_vm(LOG_WARN, e->rec.id, "cannot adopt the VMM: %s", err ? err->message : "?");
        if (alive)
            mark_unadopted(e, err ? err->message : "adoption failed");
        else
            mark_dead(e, VM_RECOVER_DEAD);
        error_free(err);
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

/* An unowned VMM with every mark of this VM directory, for a VM whose
 * recorded VMM is gone. */
static vm_vmm_proc *dir_vmm(recovery *c, const char *id)
{
    for (size_t i = 0; i < c->scan.n; i++) {
        vm_vmm_proc *p = &c->scan.v[i];
        if (!p->owned && p->vmm_marks && strcmp(p->id, id) == 0)
            return p;
    }
    return NULL;
}

static void recover_entry(recovery *c, vm_entry *e)
{
    vm_manager *m = c->m;
    vm_record *r = &e->rec;
    /* The scan already saw this pid holding this VM's event file, with its
     * start time: that is the whole ownership proof (the backend re-checks
     * the start time through a pidfd). Otherwise find out why not. */
    vm_vmm_proc *p = r->vmm_pid > 0 ? vm_proc_scan_find(&c->scan, r->id, r->vmm_pid) : NULL;
    if (p && !p->owned && p->start_time == r->vmm_start_time) {
        adopt_one(m, e, p);
        return;
    }
    vm_recover_verdict v = VM_RECOVER_NO_PID;
    if (r->vmm_pid > 0) {
        cleanup_free char *events = xasprintf("%s/%s/events.json", m->vms_real, r->id);
        v = vm_recovery_check(r->vmm_pid, r->vmm_start_time, events);
        if (v == VM_RECOVER_ADOPT)
            v = VM_RECOVER_DEAD; /* it let go of the file since the scan: exiting */
    }
    /* The recorded VMM is gone, but a VMM of this directory lives: a record
     * that lost an update (a restored or stale chcp.db). It is this VM's. */
    vm_vmm_proc *other = e->deleting_on_recovery ? NULL : dir_vmm(c, r->id);
    if (other && v != VM_RECOVER_NOT_VMM) {
        log_vm(LOG_WARN, r->id,
               "the record names VMM pid %d (%s), but pid %d is this VM directory's VMM: "
               "adopting it",
               r->vmm_pid, r->vmm_pid > 0 ? "gone" : "none", other->pid);
        r->vmm_pid = other->pid;
        r->vmm_start_time = other->start_time;
        r->has_exit = false;
        e->reconcile_any = true;
        vm_touch(e);
        adopt_one(m, e, other);
        return;
    }
    if (r->vmm_pid <= 0) {
        /* Dead before the last stop (CRASHED with its reason) or never had
         * one: nothing to adopt. */
        if (r->state != VM_CRASHED && r->state != VM_FAILED && !e->deleting_on_recovery)
            mark_dead(e, VM_RECOVER_NO_PID);
        settle_one(m);
        return;
    }
    if (v == VM_RECOVER_PID_REUSED || v == VM_RECOVER_NOT_VMM)
        log_vm(LOG_WARN, r->id,
               "pid %d is alive but is not this VM's VMM (start time or event file differ): "
               "left alone",
               r->vmm_pid);
    mark_dead(e, v);
    settle_one(m);
}

/* ---- what no VM owns ------------------------------------------------------------------- */

/* VMM processes no VM adopted. Killed only with proof: their directory's
 * vm.json says `creating` (CreateVm never acknowledged) and the process has
 * every VMM mark. One with every mark and no record at all becomes a VM. */
static void orphan_processes(recovery *c)
{
    vm_manager *m = c->m;
    for (size_t i = 0; i < c->scan.n; i++) {
        vm_vmm_proc *p = &c->scan.v[i];
        if (p->owned)
            continue;
        found_dir *d = dir_find(c, p->id);
        bool has_vm = vm_manager_find(m, p->id) != NULL;
        bool creating = !has_vm && d && d->has_record && d->rec.phase == VM_PHASE_CREATING;
        if (!has_vm && !creating && p->vmm_marks && !(d && d->record_error) &&
            vm_validate_id(p->id, NULL) == 0) {
            vm_entry *e = unaccounted(c, p->id, p);
            if (e) {
                if (d)
                    d->claimed = true;
                adopt_one(m, e, p);
                continue;
            }
        }
        m->recovery.orphans++;
        if (creating && p->vmm_marks && !m->cfg.orphan_keep) {
            bool ok = vm_proc_reap(p);
            m->recovery.reaped += ok;
            log_warn("VMM pid %d of VM directory %s/%s: its CreateVm was never acknowledged "
                     "(vm.json says creating): %s",
                     p->pid, m->vms_dir, p->id, ok ? "killed" : "already gone");
        } else {
            log_warn("VMM process pid %d holds the event file of %s/%s but no VM owns it "
                     "(%s): left alone%s",
                     p->pid, m->vms_dir, p->id,
                     has_vm          ? "its VM has another VMM"
                     : creating      ? "CreateVm never acknowledged"
                     : !p->vmm_marks ? "it lacks the marks of a VMM chcp spawned"
                                     : "its vm.json is unreadable",
                     creating && m->cfg.orphan_keep ? " (CHCP_ORPHAN_POLICY=keep)" : "");
        }
    }
}

/* Directories no VM owns: removed when empty or when their vm.json says
 * their CreateVm was never acknowledged and no VMM of theirs was left
 * running; registered as VMs when they hold files but no record. */
static void orphan_dirs(recovery *c)
{
    vm_manager *m = c->m;
    for (size_t i = 0; i < c->n_dirs; i++) {
        found_dir *d = &c->dirs[i];
        if (d->claimed || vm_manager_find(m, d->name))
            continue;
        cleanup_free char *path = xasprintf("%s/%s", m->vms_dir, d->name);
        bool creating = d->has_record && d->rec.phase == VM_PHASE_CREATING;
        bool kept_vmm = false;
        for (size_t k = 0; k < c->scan.n && !kept_vmm; k++) {
            vm_vmm_proc *p = &c->scan.v[k];
            kept_vmm = strcmp(p->id, d->name) == 0 &&
                       (!creating || m->cfg.orphan_keep || !p->vmm_marks || !vm_proc_reap(p));
        }
        if ((d->empty || creating) && !kept_vmm) {
            m->recovery.orphan_dirs++;
            if (m->cfg.orphan_keep && !d->empty) {
                log_warn("orphan VM directory %s (CreateVm never acknowledged): kept "
                         "(CHCP_ORPHAN_POLICY=keep)",
                         path);
                continue;
            }
            chcp_error *err = NULL;
            if (vm_dir_remove(path, &err) < 0) {
                log_warn("orphan VM directory %s: %s", path, err->message);
                error_free(err);
            } else {
                log_warn("orphan VM directory %s (%s): removed", path,
                         d->empty ? "empty" : "CreateVm never acknowledged");
            }
            continue;
        }
        if (d->record_error || kept_vmm || vm_validate_id(d->name, NULL) < 0) {
            m->recovery.orphan_dirs++;
            log_warn("VM directory %s: no VM owns it (%s): left alone", path,
                     d->record_error ? d->record_error
                     : kept_vmm      ? "a process no VM owns uses it"
                                     : "not a VM id");
            continue;
        }
        if (unaccounted(c, d->name, NULL))
            settle_one(m); /* nothing to adopt */
    }
}

/* ---- the whole -------------------------------------------------------------------------- */

/* Rows, then the directories: vm.json merged into its row, or rebuilding
 * the row the store lost. */
static void merge_dirs(recovery *c)
{
    size_t rows = c->n;
    for (size_t i = 0; i < c->n_dirs; i++) {
        found_dir *d = &c->dirs[i];
        if (!d->has_record)
            continue;
        vm_entry *e = NULL;
        for (size_t k = 0; k < rows && !e; k++)
            if (strcmp(c->entries[k]->rec.id, d->name) == 0)
                e = c->entries[k];
        if (e)
            merge_record(e, &d->rec);
        else if (d->rec.phase != VM_PHASE_CREATING)
            e = rebuild(c, d);
        d->claimed = e != NULL;
    }
    for (size_t k = 0; k < c->n; k++)
        check_record_file(c->entries[k], dir_find(c, c->entries[k]->rec.id));
}

static size_t dirs_without_row(recovery *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_dirs; i++)
        n += !vm_manager_find(c->m, c->dirs[i].name) && !c->dirs[i].empty;
    return n;
}

int vm_manager_recover(vm_manager *m, void (*done)(void *ud), void *ud, chcp_error **err)
{
    if (!m->store)
        return error_set(err, CHCP_INTERNAL, "recovery needs durable mode");
    m->recovery_start_ns = time_mono_ns();
    free(m->vms_real);
    m->vms_real = realpath(m->vms_dir, NULL);
    if (!m->vms_real)
        return error_set_errno(err, CHCP_INTERNAL, errno, "%s", m->vms_dir);

    recovery c = {.m = m};
    int rc = -1;
    if (vm_store_load(m->store, load_row, &c, err) < 0)
        goto out;
    list_dirs(&c);
    /* Before anything is decided: a VMM we could not hold a descriptor for
     * would be lost to this run. Refuse, touching nothing. */
    chcp_error *budget = NULL;
    if (vm_fd_budget_check(c.n + dirs_without_row(&c), &budget) < 0) {
        error_set(err, CHCP_FAILED_PRECONDITION,
                  "%s. Nothing was changed and every VMM keeps running; "
                  "start chcp-api again once the limit is raised",
                  budget->message);
        error_free(budget);
        goto out;
    }
    if (m->recovery.store_created && c.n_dirs)
        log_error("%s/chcp.db was missing or empty while %s holds %zu VM director%s: "
                  "rebuilding the records from their vm.json; nothing is killed or removed "
                  "without proof",
                  m->state_dir, m->vms_dir, c.n_dirs, c.n_dirs == 1 ? "y" : "ies");
    m->recovery.running = true;
    m->recovery_done = done;
    m->recovery_ud = ud;
    /* settle_one() must not finish recovery before every VM was looked at:
     * the total is known at the end of the synchronous part. */
    m->recovery.total = SIZE_MAX;
    merge_dirs(&c);
    vm_proc_scan_run(&c.scan, m->vms_real);
    log_info("recovering %zu stored VM(s); %zu VM director%s, %zu VMM process(es) under %s", c.n,
             c.n_dirs, c.n_dirs == 1 ? "y" : "ies", c.scan.n, m->vms_dir);
    uint64_t scanned_ns = time_mono_ns();
    size_t known = c.n;
    for (size_t i = 0; i < known; i++)
        recover_entry(&c, c.entries[i]);
    orphan_processes(&c);
    orphan_dirs(&c);
    log_debug("recovery: load + /proc scan %llu ms, adoption %llu ms",
              (unsigned long long)(scanned_ns - m->recovery_start_ns) / 1000000,
              (unsigned long long)(time_mono_ns() - scanned_ns) / 1000000);
    m->recovery.total = c.n;
    vm_statewatch_start(m, NULL);
    /* Finish on the loop (also when nothing was adopted), never in here. */
    uv_timer_t *t = xcalloc(1, sizeof(*t));
    uv_timer_init(m->loop, t);
    t->data = m;
    uv_timer_start(t, finish_timer_cb, 0, 0);
    rc = 0;
out:
    free(c.entries);
    free_dirs(&c);
    vm_proc_scan_free(&c.scan);
    return rc;
}

void vm_manager_recovery_status(const vm_manager *m, vm_recovery_status *out)
{
    *out = m->recovery;
    if (m->recovery.running)
        out->elapsed_ms = (time_mono_ns() - m->recovery_start_ns) / 1000000;
}
