/*
 * statewatch.c - noticing the state directory deleted or replaced under a
 * running daemon, and repairing what can be repaired.
 *
 * Why: everything chcp promises across restarts lives in <state_dir>: the
 * store (chcp.db, its lock), each VM's directory with vm.json, API socket and
 * event file. A `rm -rf` of it, a replaced mount or a deleted chcp.db goes
 * unnoticed by the open descriptors - SQLite keeps writing into an unlinked
 * file - and the next start would find nothing. So once a second the
 * directory, vms/, the database, the lock and (a slice of) the VM directories
 * are compared with what was opened. On a difference:
 *   - it is logged at error level (again every minute while it lasts);
 *   - what the daemon holds in memory is written back: the directories are
 *     made again, the store is reopened (a new lock, a new chcp.db) and every
 *     row and vm.json is rewritten, so a restart finds every VM;
 *   - GET /health and /_/health answer 503 with the reason while the
 *     repair has not succeeded, and for good (until a restart) when VM
 *     directories were lost: their VMMs' API sockets went with them, those
 *     VMs can only be deleted (docs/durability.md).
 * A state directory replaced by one that holds its own chcp.db is not
 * written into: that is someone else's state.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "vm/vm_internal.h"

#define CHECK_EVERY_MS 1000
#define REPEAT_LOG_MS 60000
#define VM_DIRS_PER_CHECK 512

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

struct vm_statewatch {
    vm_manager *m;
    uv_timer_t timer;
    dir_id state, vms;
    size_t next_vm; /* round robin over the VM directories */
    char *problem;  /* what was found and done, NULL when never */
    bool unhealthy; /* not (or not fully) repaired */
    bool sticky;    /* VM directories were lost: stays until a restart */
    bool foreign;   /* replaced by another state: not written into */
    uint64_t since_ns, last_log_ns;
    size_t detections;
};

static bool identify(const char *path, dir_id *out)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return false;
    *out = (dir_id){.dev = sb.st_dev, .ino = sb.st_ino};
    return true;
}

/* NULL when `path` is still `want`; else "deleted" or "replaced". */
static const char *changed(const char *path, const dir_id *want)
{
    dir_id now;
    if (!identify(path, &now))
        return "deleted";
    return now.dev == want->dev && now.ino == want->ino ? NULL : "replaced";
}

static int mkdir_private(const char *path, chcp_error **err)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "making %s again", path);
    return 0;
}

/* VM directories that vanished: made again. Returns how many were gone
 * while their VMM ran (those VMMs lost their API socket). */
static size_t restore_vm_dirs(vm_manager *m, bool all, size_t *next)
{
    size_t lost = 0, n = m->n_vms;
    size_t count = all || n < VM_DIRS_PER_CHECK ? n : VM_DIRS_PER_CHECK;
    for (size_t k = 0; k < count && n; k++) {
        vm_entry *e = m->vms[(*next + k) % n];
        struct stat sb;
        if (e->store_removing || e->removed || stat(e->rec.dir, &sb) == 0)
            continue;
        if (mkdir(e->rec.dir, 0700) < 0 && errno != EEXIST)
            continue;
        e->record_hash = 0;
        vm_persist_mark(e);
        if (e->vmm && !e->rec.has_exit) {
            lost++;
            e->api_lost = true;
            vm_set_state(e, e->rec.state,
                         "its VM directory was deleted while the VMM ran: its API socket went "
                         "with it (a connection already open may still serve until chcp-api "
                         "restarts); the VMM keeps running and DeleteVm stops it");
        }
    }
    if (n)
        *next = (*next + count) % n;
    return lost;
}

/* Write back what the daemon holds. -1 when it could not (err set). */
static int repair(struct vm_statewatch *w, bool dir_gone, size_t *lost, chcp_error **err)
{
    vm_manager *m = w->m;
    if (mkdir_private(m->state_dir, err) < 0 || mkdir_private(m->vms_dir, err) < 0)
        return -1;
    char *store_problem = vm_store_check(m->store);
    bool reopened = store_problem != NULL;
    free(store_problem);
    if (reopened && vm_store_reopen(m->store, err) < 0)
        return -1;
    *lost = restore_vm_dirs(m, true, &w->next_vm);
    if (dir_gone || reopened)
        vm_persist_rewrite_all(m);
    identify(m->state_dir, &w->state);
    identify(m->vms_dir, &w->vms);
    return 0;
}

static void report(struct vm_statewatch *w, const char *what, const chcp_error *err, size_t lost)
{
    vm_manager *m = w->m;
    free(w->problem);
    if (w->foreign)
        w->problem = xasprintf("%s; it now holds another chcp.db: chcp-api does not write into "
                               "it. Restart chcp-api to use that state (the %zu VMs of this run "
                               "keep running)",
                               what, m->n_vms);
    else if (err)
        w->problem =
            xasprintf("%s; restoring it failed: %s (retrying every second)", what, err->message);
    else if (lost)
        w->problem = xasprintf("%s; restored from memory (%zu VMs written back), but %zu VMM(s) "
                               "lost their API socket with their VM directory: they keep "
                               "running and can be deleted, but not driven once chcp-api "
                               "restarts",
                               what, m->n_vms, lost);
    else
        w->problem = xasprintf("%s; restored from memory (%zu VMs written back)", what, m->n_vms);
    w->sticky = w->sticky || lost;
    w->unhealthy = w->foreign || err || w->sticky;
    w->last_log_ns = time_mono_ns();
    log_error("STATE DIRECTORY PROBLEM: %s", w->problem);
}

static void check(uv_timer_t *t)
{
    struct vm_statewatch *w = t->data;
    vm_manager *m = w->m;
    if (m->detached || !m->store)
        return;
    cleanup_free char *what = NULL;
    const char *how = changed(m->state_dir, &w->state);
    bool dir_gone = how != NULL;
    if (how) {
        what = xasprintf("state directory %s was %s under the running chcp-api", m->state_dir, how);
        /* Ours was in the directory that went away: a chcp.db in the new
         * one belongs to someone else. */
        cleanup_free char *db = xasprintf("%s/chcp.db", m->state_dir);
        struct stat sb;
        w->foreign = w->foreign || (strcmp(how, "replaced") == 0 && stat(db, &sb) == 0);
    } else if ((how = changed(m->vms_dir, &w->vms))) {
        dir_gone = true;
        what = xasprintf("%s was %s under the running chcp-api", m->vms_dir, how);
    } else {
        what = vm_store_check(m->store);
    }
    size_t lost = 0;
    if (!what) {
        /* A VM directory deleted on its own (a slice per second). */
        lost = restore_vm_dirs(m, false, &w->next_vm);
        if (!lost) {
            if (w->unhealthy && time_mono_ns() - w->last_log_ns > REPEAT_LOG_MS * 1000000ull) {
                w->last_log_ns = time_mono_ns();
                log_error("STATE DIRECTORY PROBLEM (still): %s", w->problem);
            }
            return;
        }
        what = xasprintf("%zu VM director%s under %s deleted under the running chcp-api", lost,
                         lost == 1 ? "y was" : "ies were", m->vms_dir);
    }
    w->detections++;
    if (!w->since_ns)
        w->since_ns = time_real_ns();
    chcp_error *err = NULL;
    size_t more = 0;
    if (!w->foreign)
        repair(w, dir_gone, &more, &err);
    report(w, what, err, lost + more);
    error_free(err);
}

int vm_statewatch_start(vm_manager *m, chcp_error **err)
{
    if (m->watch || !m->store)
        return 0;
    struct vm_statewatch *w = xcalloc(1, sizeof(*w));
    w->m = m;
    if (!identify(m->state_dir, &w->state) || !identify(m->vms_dir, &w->vms)) {
        free(w);
        return error_set_errno(err, CHCP_INTERNAL, errno, "state directory %s", m->state_dir);
    }
    uv_timer_init(m->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, check, CHECK_EVERY_MS, CHECK_EVERY_MS);
    /* A check must never be what keeps the loop running. */
    uv_unref((uv_handle_t *)&w->timer);
    m->watch = w;
    return 0;
}

static void watch_closed(uv_handle_t *h)
{
    struct vm_statewatch *w = h->data;
    free(w->problem);
    free(w);
}

void vm_statewatch_stop(vm_manager *m)
{
    struct vm_statewatch *w = steal_pointer(&m->watch);
    if (!w)
        return;
    /* The last report stays readable (health during shutdown). */
    m->state_status.healthy = !w->unhealthy;
    m->state_status.detections = w->detections;
    m->state_status.since_ns = w->since_ns;
    free(m->last_state_problem);
    m->last_state_problem = w->problem ? xstrdup(w->problem) : NULL;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, watch_closed);
}

void vm_manager_state_status(const vm_manager *m, vm_state_status *out)
{
    const struct vm_statewatch *w = m->watch;
    if (!w) {
        *out = m->state_status;
        out->healthy = out->healthy || !out->detections;
        out->problem = m->last_state_problem ? m->last_state_problem : "";
        return;
    }
    *out = (vm_state_status){.healthy = !w->unhealthy,
                             .problem = w->problem ? w->problem : "",
                             .since_ns = w->since_ns,
                             .detections = w->detections};
}
