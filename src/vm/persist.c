/*
 * persist.c - keeping the VM records durable (durable mode only).
 *
 * The manager changes records on the loop; this file turns those changes into
 * store writes. Rules (docs/durability.md):
 *   - a VM has a record only once its CreateVm is confirmed by the VMM and the
 *     record is durable; only then is CreateVm acknowledged;
 *   - records are written when they change, coalesced per loop turn (the
 *     store's writer thread group-commits them), never while the VM is in a
 *     transient state (BOOTING, SHUTTING_DOWN): what is stored is always a
 *     state the VMM confirmed. DELETING is stored (it is an intent that a
 *     restart must finish);
 *   - DeleteVm is acknowledged once the record's deletion is durable;
 *   - at shutdown every record is written (with its event-file offset) and
 *     the VMMs are let go, still running;
 *   - each VM directory carries vm.json (vmfile.c): `creating` before the
 *     VMM is spawned, then rewritten (before the row, in the writer thread)
 *     whenever the phase, state, VMM identity or exit change; its directory is removed by
 *     the writer thread too, so no record write can land after it.
 */
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "vm/vm_internal.h"

#define RETRY_MS 1000 /* after a failed write (disk full): try again */

static bool transient(vm_state s)
{
    return s == VM_CREATING || s == VM_BOOTING || s == VM_SHUTTING_DOWN;
}

char *vm_labels_encode(const vm_record *r, size_t *len)
{
    json_t *o = json_object();
    for (size_t i = 0; i < r->n_labels; i++)
        json_object_set_new(o, r->labels[i].key, json_string(r->labels[i].value));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s)
        abort(); /* out of memory */
    *len = strlen(s);
    return s;
}

int vm_labels_decode(const uint8_t *data, size_t len, vm_record *r, chcp_error **err)
{
    r->labels = NULL;
    r->n_labels = 0;
    json_t *o = len ? json_loadb((const char *)data, len, 0, NULL) : json_object();
    if (!json_is_object(o) || json_object_size(o) > VM_MAX_LABELS) {
        json_decref(o);
        return error_set(err, CHCP_DATA_LOSS, "labels: not a JSON object of strings");
    }
    r->labels = xcalloc(json_object_size(o) + 1, sizeof(vm_label));
    /* json_object_foreach walks in insertion order: the stored object is
     * key-sorted (JSON_SORT_KEYS), which is the order the manager keeps. */
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!json_is_string(v))
            continue;
        r->labels[r->n_labels].key = xstrdup(k);
        r->labels[r->n_labels].value = xstrdup(json_string_value(v));
        r->n_labels++;
    }
    json_decref(o);
    return 0;
}

/* ---- one record ------------------------------------------------------------ */

typedef struct write_ctx {
    vm_entry *e;
    vm_persist_fn cb;
    void *ud;
} write_ctx;

static const char *backend_of(const vm_entry *e)
{
    if (e->backend[0])
        return e->backend;
    return e->m->ops && e->m->ops->name ? e->m->ops->name : VM_STORE_DEFAULT_BACKEND;
}

/* vm.json for the entry as it is now (borrowing from it). */
static char *render_record(vm_entry *e, vm_record_phase phase, const char *labels,
                           size_t labels_len, uint64_t *hash)
{
    const vm_record *r = &e->rec;
    vm_record_file f = {
        .id = r->id,
        .backend = backend_of(e),
        .phase = phase,
        .config = r->config_pb,
        .config_len = r->config_pb_len,
        .labels = (const uint8_t *)labels,
        .labels_len = labels_len,
        .state = r->state,
        .vmm_pid = r->vmm_pid,
        .vmm_start_time = r->vmm_start_time,
        .has_exit = r->has_exit,
        .exit_code = r->exit_code,
        .exit_signal = r->exit_signal,
        .exited_at_ns = r->has_exit ? r->exited_at_ns : 0,
        .created_at_ns = r->created_at_ns,
        .state_changed_at_ns = r->state_changed_at_ns,
        .generation = r->generation,
    };
    return vm_record_render(&f, hash);
}

static void put_row(vm_entry *e, vm_store_done_fn done, void *ud)
{
    vm_manager *m = e->m;
    vm_record *r = &e->rec;
    if (e->vmm && m->ops->event_offset)
        r->event_offset = m->ops->event_offset(e->vmm);
    size_t labels_len;
    cleanup_free char *labels = vm_labels_encode(r, &labels_len);
    cleanup_free char *sock = xasprintf("%s/api.sock", r->dir);
    cleanup_free char *events = xasprintf("%s/events.json", r->dir);
    uint64_t hash;
    bool deleting = e->deleting || e->deleting_on_recovery;
    cleanup_free char *record =
        render_record(e, deleting ? VM_PHASE_DELETING : VM_PHASE_ACTIVE, labels, labels_len, &hash);
    bool write_record = hash != e->record_hash;
    e->record_hash = hash;
    vm_store_row row = {
        .id = r->id,
        .backend = backend_of(e),
        .config = r->config_pb,
        .config_len = r->config_pb_len,
        .labels = (const uint8_t *)labels,
        .labels_len = labels_len,
        .desired_state = deleting ? VM_DELETING : r->state,
        .state = r->state,
        .state_reason = r->state_reason,
        .vmm_pid = r->vmm_pid,
        .vmm_start_time = r->vmm_start_time,
        .api_socket = sock,
        .event_file = events,
        .event_offset = r->event_offset,
        .exit_code = r->exit_code,
        .exit_signal = r->exit_signal,
        .exited_at_ns = r->has_exit ? r->exited_at_ns : 0,
        .created_at_ns = r->created_at_ns,
        .updated_at_ns = r->updated_at_ns,
        .state_changed_at_ns = r->state_changed_at_ns,
        .generation = r->generation,
    };
    e->dirty = false;
    vm_store_put(m->store, &row, write_record ? r->dir : NULL, record, done, ud);
}

uint64_t vm_persist_record_hash(vm_entry *e)
{
    size_t labels_len;
    cleanup_free char *labels = vm_labels_encode(&e->rec, &labels_len);
    uint64_t hash;
    bool deleting = e->deleting || e->deleting_on_recovery;
    free(render_record(e, deleting ? VM_PHASE_DELETING : VM_PHASE_ACTIVE, labels, labels_len,
                       &hash));
    return hash;
}

int vm_persist_creating(vm_entry *e, chcp_error **err)
{
    if (!e->m->store)
        return 0;
    size_t labels_len;
    cleanup_free char *labels = vm_labels_encode(&e->rec, &labels_len);
    cleanup_free char *record = render_record(e, VM_PHASE_CREATING, labels, labels_len, NULL);
    return vm_record_write(e->rec.dir, record, err);
}

static void schedule(vm_manager *m, uint64_t delay_ms);

static void write_done(const chcp_error *err, void *ud)
{
    write_ctx *c = ud;
    vm_entry *e = c->e;
    if (err && !e->removed) {
        e->record_hash = 0; /* vm.json may not have been written either */
        log_vm(LOG_ERROR, e->rec.id, "store write failed (retrying in %d ms): %s", RETRY_MS,
               err->message);
        if (e->persisted && !e->m->detached) {
            e->dirty = true;
            schedule(e->m, RETRY_MS); /* not a busy loop on a full disk */
        }
    }
    if (c->cb)
        c->cb(e, err, c->ud);
    vm_entry_unref(e);
    free(c);
}

static void queue_write(vm_entry *e, vm_persist_fn cb, void *ud)
{
    write_ctx *c = xcalloc(1, sizeof(*c));
    c->e = e;
    c->cb = cb;
    c->ud = ud;
    e->refs++;
    put_row(e, write_done, c);
}

void vm_persist_now(vm_entry *e, vm_persist_fn cb, void *ud)
{
    if (!e->m->store || e->m->detached) {
        cb(e, NULL, ud);
        return;
    }
    e->persisted = true;
    queue_write(e, cb, ud);
}

static void delete_done(const chcp_error *err, void *ud)
{
    write_ctx *c = ud;
    if (err)
        log_vm(LOG_ERROR, c->e->rec.id, "deleting the record failed: %s", err->message);
    c->cb(c->e, err, c->ud);
    vm_entry_unref(c->e);
    free(c);
}

void vm_persist_delete(vm_entry *e, vm_persist_fn cb, void *ud)
{
    if (e->m->detached) { /* shut down: the next start finishes the removal */
        cb(e, NULL, ud);
        return;
    }
    if (!e->m->store) {
        chcp_error *err = NULL;
        if (vm_dir_remove(e->rec.dir, &err) < 0) {
            log_vm(LOG_WARN, e->rec.id, "%s", err->message);
            error_free(err);
        }
        cb(e, NULL, ud);
        return;
    }
    write_ctx *c = xcalloc(1, sizeof(*c));
    c->e = e;
    c->cb = cb;
    c->ud = ud;
    e->refs++;
    bool had_row = e->persisted;
    e->persisted = false;
    vm_store_delete(e->m->store, e->rec.id, e->rec.dir, had_row, delete_done, c);
}

void vm_persist_rewrite_all(vm_manager *m)
{
    if (!m->store || m->detached)
        return;
    for (size_t i = 0; i < m->n_vms; i++) {
        vm_entry *e = m->vms[i];
        if (!e->persisted || e->store_removing)
            continue;
        e->record_hash = 0;
        if (!transient(e->rec.state))
            queue_write(e, NULL, NULL);
        else
            e->dirty = true; /* written once the operation settles */
    }
}

/* ---- coalesced writes ---------------------------------------------------------- */

static void flush_dirty(uv_timer_t *t)
{
    vm_manager *m = t->data;
    m->persist_scheduled = false;
    if (m->detached)
        return;
    for (size_t i = 0; i < m->n_vms; i++) {
        vm_entry *e = m->vms[i];
        if (e->dirty && e->persisted && !e->store_removing && !transient(e->rec.state))
            queue_write(e, NULL, NULL);
    }
}

static void schedule(vm_manager *m, uint64_t delay_ms)
{
    if (m->persist_scheduled)
        return;
    m->persist_scheduled = true;
    uv_timer_start(&m->persist_timer, flush_dirty, delay_ms, 0);
}

void vm_persist_mark(vm_entry *e)
{
    vm_manager *m = e->m;
    if (!m->store || m->detached || e->removed)
        return;
    e->dirty = true;
    /* 0 ms: after everything else of this loop turn, so a burst of changes
     * to one VM becomes one write. */
    if (e->persisted)
        schedule(m, 0);
}

/* ---- open / shutdown ------------------------------------------------------------- */

int vm_persist_open(vm_manager *m, chcp_error **err)
{
    vm_store_info info;
    m->store = vm_store_open(m->loop, m->state_dir, &info, err);
    if (!m->store)
        return -1;
    m->recovery.store_created = info.created;
    if (info.fixed_modes)
        log_warn("%s/chcp.db: its files were readable by others: now mode 0600", m->state_dir);
    if (info.found_version && info.found_version < VM_STORE_SCHEMA_VERSION)
        log_info("%s/chcp.db: migrated from schema %d to %d", m->state_dir, info.found_version,
                 VM_STORE_SCHEMA_VERSION);
    uv_timer_init(m->loop, &m->persist_timer);
    m->persist_timer.data = m;
    m->persist_timer_open = true;
    return 0;
}

void vm_persist_detach(vm_manager *m)
{
    if (!m->store || m->detached)
        return;
    /* Everything that is not transient, as it is now (with the current
     * event offsets). A VM mid-operation keeps its last confirmed record;
     * the next start reconciles it with vm.info. */
    for (size_t i = 0; i < m->n_vms; i++) {
        vm_entry *e = m->vms[i];
        if (e->persisted && !e->store_removing && !transient(e->rec.state) && (e->dirty || e->vmm))
            queue_write(e, NULL, NULL);
    }
    vm_store_flush(m->store);
    vm_statewatch_stop(m);
    m->detached = true;
    size_t n = 0;
    for (size_t i = 0; i < m->n_vms; i++) {
        vm_entry *e = m->vms[i];
        vm_queue_fail_all(e, CHCP_UNAVAILABLE, "the daemon is shutting down");
        /* A removal in progress stops here (its record says DELETING, or
         * there is none for a failed CreateVm): the next start finishes it.
         * Whoever waits for it gets an answer now. */
        for (vm_op *op = steal_pointer(&e->delete_ops), *next; op; op = next) {
            next = op->next;
            op->next = NULL;
            vm_op_complete_now(op, CHCP_UNAVAILABLE,
                               "the daemon is shutting down; VM %s is removed at its next start",
                               e->rec.id);
        }
        vm_op *c = steal_pointer(&e->create_op);
        if (c)
            vm_op_complete_now(c, e->removal_err ? e->removal_err->code : CHCP_UNAVAILABLE, "%s",
                               e->removal_err ? e->removal_err->message
                                              : "the daemon is shutting down");
        if (e->removing_started && !e->stop_done) {
            /* The VMM is being stopped for a DeleteVm: let that finish
             * (bounded by the stop escalation); its record says DELETING
             * and the next start removes the rest. */
            continue;
        }
        if (e->vmm) {
            void *vmm = steal_pointer(&e->vmm);
            /* Pending calls complete (canceled) inside release; the
             * lifecycle sees `detached` and touches nothing. */
            m->ops->release(vmm);
            n++;
        }
    }
    log_info("store flushed; %zu VMM(s) left running for the next start", n);
}

void vm_persist_close(vm_manager *m)
{
    vm_statewatch_stop(m);
    if (m->persist_timer_open) {
        uv_timer_stop(&m->persist_timer);
        uv_close((uv_handle_t *)&m->persist_timer, NULL);
        m->persist_timer_open = false;
    }
    if (m->store) {
        vm_store_close(m->store);
        m->store = NULL;
    }
}
