/*
 * manager.c - the VM registry and the per-VM operation queue.
 *
 * VMs live in an array sorted by id (binary search for lookups, in-order
 * walks for ListVms paging). Each VM runs at most one queued operation at a
 * time; later ones wait in FIFO order, each bounded by its caller's deadline.
 * DeleteVm and GetVmInfo do not queue: a delete must be able to interrupt a
 * stuck boot, and a read must not wait behind a 30-second graceful shutdown.
 * What each operation does to the VMM is in lifecycle.c (DeleteVm in
 * removal.c, events and refreshes in supervise.c); what the observer sees
 * is in observed.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "vm/vm_internal.h"

static const char *const state_names[] = {
    "UNSPECIFIED",   "CREATING", "CREATED",  "BOOTING", "RUNNING", "PAUSED",
    "SHUTTING_DOWN", "SHUTDOWN", "DELETING", "FAILED",  "CRASHED",
};

const char *vm_state_name(vm_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "UNKNOWN";
}

/* ---- registry --------------------------------------------------------------- */

/* Index of `id`, or of where it would go (with *found false). */
static size_t registry_search(const vm_manager *m, const char *id, bool *found)
{
    size_t lo = 0, hi = m->n_vms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->vms[mid]->rec.id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static vm_entry *registry_get(const vm_manager *m, const char *id)
{
    bool found;
    size_t i = registry_search(m, id, &found);
    return found ? m->vms[i] : NULL;
}

static void registry_insert(vm_manager *m, vm_entry *e)
{
    bool found;
    size_t i = registry_search(m, e->rec.id, &found);
    if (m->n_vms == m->cap_vms) {
        m->cap_vms = m->cap_vms ? m->cap_vms * 2 : 16;
        m->vms = xrealloc(m->vms, m->cap_vms * sizeof(*m->vms));
    }
    memmove(&m->vms[i + 1], &m->vms[i], (m->n_vms - i) * sizeof(*m->vms));
    m->vms[i] = e;
    m->n_vms++;
}

static void registry_remove(vm_manager *m, vm_entry *e)
{
    bool found;
    size_t i = registry_search(m, e->rec.id, &found);
    if (!found || m->vms[i] != e)
        return;
    memmove(&m->vms[i], &m->vms[i + 1], (m->n_vms - i - 1) * sizeof(*m->vms));
    m->n_vms--;
}

const Cloudhypervisor__V1__VmConfig *vm_record_config(const vm_record *r)
{
    /* A cache on a const record: the manager owns it and everything runs on
     * the loop thread. The bytes were packed from a validated message, so
     * unpacking fails only when memory is exhausted. */
    vm_record *w = (vm_record *)r;
    if (!w->config_msg)
        w->config_msg =
            cloudhypervisor__v1__vm_config__unpack(NULL, r->config_pb_len, r->config_pb);
    return w->config_msg;
}

size_t vm_manager_count(const vm_manager *m)
{
    return m->n_vms;
}

const vm_record *vm_manager_find(const vm_manager *m, const char *id)
{
    vm_entry *e = id ? registry_get(m, id) : NULL;
    return e ? &e->rec : NULL;
}

/* ---- record helpers ------------------------------------------------------------- */

void vm_touch(vm_entry *e)
{
    e->rec.updated_at_ns = time_real_ns();
    e->rec.generation++;
    vm_persist_mark(e); /* durable mode: queue the record's write */
}

void vm_set_state(vm_entry *e, vm_state s, const char *reason_fmt, ...)
{
    if (reason_fmt) {
        chcp_buf b = CHCP_BUF_INIT;
        va_list ap;
        va_start(ap, reason_fmt);
        buf_vprintf(&b, reason_fmt, ap);
        va_end(ap);
        free(e->rec.state_reason);
        e->rec.state_reason = buf_steal_str(&b);
        if (!e->rec.state_reason)
            e->rec.state_reason = xstrdup("");
    }
    if (e->rec.state != s) {
        log_vm(LOG_INFO, e->rec.id, "state %s -> %s%s%s", vm_state_name(e->rec.state),
               vm_state_name(s), e->rec.state_reason[0] ? ": " : "", e->rec.state_reason);
        vm_state from = e->rec.state;
        e->rec.state = s;
        e->rec.state_changed_at_ns = time_real_ns();
        if (e->m->obs.state)
            e->m->obs.state(e->m->obs.ud, &e->rec, from, s);
    }
    vm_touch(e);
}

static void entry_free(vm_entry *e)
{
    for (size_t i = 0; i < e->rec.n_labels; i++) {
        free(e->rec.labels[i].key);
        free(e->rec.labels[i].value);
    }
    free(e->rec.labels);
    free(e->rec.state_reason);
    free(e->rec.config_pb);
    if (e->rec.config_msg)
        cloudhypervisor__v1__vm_config__free_unpacked(e->rec.config_msg, NULL);
    free(e->rec.vmm_config_json);
    free(e->rec.dir);
    free(e->rec.vmm_state);
    error_free(e->removal_err);
    free(e);
}

void vm_entry_destroy(vm_entry *e)
{
    vm_manager *m = e->m;
    registry_remove(m, e);
    e->removed = true;
    if (e->refs == 0)
        entry_free(e);
    if (m->shutting_down && m->n_vms == 0 && m->shutdown_done) {
        void (*cb)(void *) = m->shutdown_done;
        m->shutdown_done = NULL;
        cb(m->shutdown_ud);
    }
}

void vm_registry_add(vm_manager *m, vm_entry *e)
{
    registry_insert(m, e);
}

void vm_entry_unref(vm_entry *e)
{
    if (--e->refs == 0 && e->removed)
        entry_free(e);
}

/* ---- operations: lifetime ------------------------------------------------------- */

static void op_closed(uv_handle_t *h)
{
    vm_op *op = h->data;
    vm_entry *e = op->vm;
    if (e && --e->refs == 0 && e->removed)
        entry_free(e);
    error_free(op->result);
    free(op);
}

static void op_release(vm_op *op)
{
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, op_closed);
}

static void queue_kick(vm_entry *e);

static void op_call_done(vm_op *op, const chcp_error *err)
{
    vm_entry *e = op->vm;
    op->finished = true;
    if (op->counts_start) {
        op->m->starts--;
        op->counts_start = false;
    }
    /* The record after the change; none after a successful delete or when
     * the VM is gone. */
    const vm_record *rec = e && !e->removed && !(op->kind == VM_OP_DELETE && !err) ? &e->rec : NULL;
    if (op->m->obs.op_end)
        op->m->obs.op_end(op->m->obs.ud, op->obs_token, op->kind,
                          (double)(time_mono_ns() - op->started_ns) / 1e9, err);
    op->obs_token = NULL;
    op->done(op->ud, err, rec);
    op_release(op);
}

static void op_deferred_cb(uv_timer_t *t)
{
    vm_op *op = t->data;
    vm_entry *e = op->vm;
    if (e && e->current == op) {
        /* A running operation decided without the VMM (a no-op): finish it
         * properly so the next one starts. */
        chcp_error *r = steal_pointer(&op->result);
        vm_op_finish(op, r);
        error_free(r);
        if (e->deleting)
            vm_lifecycle_try_remove(e);
        return;
    }
    op_call_done(op, op->result);
}

/* Complete later on the loop (results known at submit time, queue drains). */
static void op_complete_later(vm_op *op, chcp_error *err)
{
    op->finished = true;
    op->result = err;
    uv_timer_stop(&op->timer);
    uv_timer_start(&op->timer, op_deferred_cb, 0, 0);
}

void vm_op_finish(vm_op *op, const chcp_error *err)
{
    vm_entry *e = op->vm;
    bool was_current = e && e->current == op;
    if (was_current)
        e->current = NULL;
    op->running = false;
    uv_timer_stop(&op->timer);
    op_call_done(op, err);
    /* During a removal the caller runs vm_lifecycle_try_remove(). */
    if (was_current && !e->deleting) {
        queue_kick(e);
        if (!e->current)
            vm_lifecycle_after_op(e); /* e.g. confirm a poweroff event seen meanwhile */
    }
}

void vm_op_finish_code(vm_op *op, chcp_code code, const char *fmt, ...)
{
    chcp_buf b = CHCP_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    chcp_error err = {.code = code, .message = buf_steal_str(&b)};
    vm_op_finish(op, &err);
    free(err.message);
}

static vm_op *op_new(vm_manager *m, vm_entry *e, vm_op_kind kind, const vm_op_params *p,
                     vm_op_done_fn done, void *ud)
{
    vm_op *op = xcalloc(1, sizeof(*op));
    op->m = m;
    op->vm = e;
    op->kind = kind;
    if (p)
        op->p = *p;
    op->done = done;
    op->ud = ud;
    op->started_ns = time_mono_ns();
    if (m->obs.op_start)
        op->obs_token = m->obs.op_start(m->obs.ud, op->p.trace_ctx, e ? e->rec.id : "", kind);
    if (e)
        e->refs++;
    uv_timer_init(m->loop, &op->timer);
    op->timer.data = op;
    return op;
}

/* ---- the queue ----------------------------------------------------------- */

static void queue_unlink(vm_entry *e, vm_op *op)
{
    vm_op **pp = &e->q_head, *prev = NULL;
    while (*pp && *pp != op) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = op->next;
    if (e->q_tail == op)
        e->q_tail = prev;
    op->next = NULL;
    op->queued = false;
    e->q_len--;
}

static void op_deadline_cb(uv_timer_t *t)
{
    vm_op *op = t->data;
    queue_unlink(op->vm, op);
    chcp_error *err = NULL;
    error_set(&err, CHCP_DEADLINE_EXCEEDED,
              "deadline exceeded while waiting for an earlier operation on VM %s", op->vm->rec.id);
    op_complete_later(op, err);
}

static void queue_kick(vm_entry *e)
{
    if (e->m->shutting_down && e->m->cfg.durable) {
        /* Nothing new reaches a VMM the daemon is letting go of. */
        vm_queue_fail_all(e, CHCP_UNAVAILABLE, "the daemon is shutting down");
        return;
    }
    while (!e->current && e->q_head && !e->deleting) {
        vm_op *op = e->q_head;
        queue_unlink(e, op);
        uv_timer_stop(&op->timer);
        e->current = op;
        op->running = true;
        vm_lifecycle_run(op);
    }
}

static void queue_push(vm_entry *e, vm_op *op)
{
    op->queued = true;
    if (e->q_tail)
        e->q_tail->next = op;
    else
        e->q_head = op;
    e->q_tail = op;
    e->q_len++;
    if (e->current && op->p.deadline_ns) {
        uint64_t now = time_mono_ns();
        uint64_t ms = op->p.deadline_ns > now ? (op->p.deadline_ns - now) / 1000000 : 0;
        uv_timer_start(&op->timer, op_deadline_cb, ms, 0);
    }
    queue_kick(e);
}

void vm_queue_fail_all(vm_entry *e, chcp_code code, const char *msg)
{
    while (e->q_head) {
        vm_op *op = e->q_head;
        queue_unlink(e, op);
        chcp_error *err = NULL;
        error_set(&err, code, "%s", msg);
        op_complete_later(op, err);
    }
}

void vm_op_cancel(vm_op *op)
{
    if (!op || op->finished)
        return;
    if (op->queued) {
        queue_unlink(op->vm, op);
        chcp_error *err = NULL;
        error_set(&err, CHCP_CANCELED, "canceled while waiting for an earlier operation");
        op_complete_later(op, err);
    }
}

/* ---- submission ----------------------------------------------------------- */

static int admit_start(vm_manager *m, vm_op *op, chcp_error **err)
{
    if (m->cfg.max_concurrent_starts && m->starts >= m->cfg.max_concurrent_starts)
        return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                         "%u VM starts are already in progress (CHCP_MAX_CONCURRENT_STARTS); "
                         "retry later",
                         m->starts);
    m->starts++;
    op->counts_start = true;
    return 0;
}

static bool labels_equal(const vm_record *r, const vm_label *sorted, size_t n)
{
    if (r->n_labels != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(r->labels[i].key, sorted[i].key) != 0 ||
            strcmp(r->labels[i].value, sorted[i].value) != 0)
            return false;
    return true;
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const vm_label *)a)->key, ((const vm_label *)b)->key);
}

static void generate_id(vm_manager *m, char out[VM_ID_MAX + 1])
{
    for (;;) {
        uint8_t r[6];
        if (getrandom(r, sizeof(r), 0) != sizeof(r)) {
            uint64_t t = time_mono_ns() ^ (uint64_t)getpid() << 32;
            memcpy(r, &t, sizeof(r));
        }
        snprintf(out, VM_ID_MAX + 1, "vm-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4],
                 r[5]);
        if (!registry_get(m, out))
            return;
    }
}

static vm_op *create_existing(vm_manager *m, vm_entry *e, const uint8_t *pb, size_t pb_len,
                              const vm_label *sorted, size_t n, const vm_op_params *p,
                              vm_op_done_fn done, void *ud, chcp_error **err)
{
    if (e->deleting) {
        error_set(err, CHCP_ABORTED, "VM %s is being deleted; retry when it is gone", e->rec.id);
        return NULL;
    }
    if (e->rec.config_pb_len != pb_len || memcmp(e->rec.config_pb, pb, pb_len) != 0 ||
        !labels_equal(&e->rec, sorted, n)) {
        error_set(err, CHCP_ALREADY_EXISTS,
                  "VM %s already exists with a different configuration or labels", e->rec.id);
        return NULL;
    }
    if (e->q_len >= m->cfg.max_queue) {
        error_set(err, CHCP_RESOURCE_EXHAUSTED, "too many operations waiting on VM %s", e->rec.id);
        return NULL;
    }
    vm_op *op = op_new(m, e, VM_OP_CREATE_JOIN, p, done, ud);
    queue_push(e, op); /* answers after an in-progress creation */
    return op;
}

vm_op *vm_op_create(vm_manager *m, const char *id, const Cloudhypervisor__V1__VmConfig *config,
                    const vm_label *labels, size_t n_labels, const vm_op_params *p,
                    vm_op_done_fn done, void *ud, chcp_error **err)
{
    if (m->shutting_down) {
        error_set(err, CHCP_UNAVAILABLE, "the daemon is shutting down");
        return NULL;
    }
    if (m->recovery.running) {
        error_set(err, CHCP_UNAVAILABLE, "recovering VMs after a restart (%zu of %zu done)",
                  m->recovery.settled, m->recovery.total);
        return NULL;
    }
    if (id && id[0] && vm_validate_id(id, err) < 0)
        return NULL;
    if (vm_validate_labels(labels, n_labels, "labels", err) < 0)
        return NULL;
    if (!config) {
        error_set(err, CHCP_INVALID_ARGUMENT, "config: required");
        return NULL;
    }
    vm_label *sorted = xcalloc(n_labels ? n_labels : 1, sizeof(*sorted));
    if (n_labels)
        memcpy(sorted, labels, n_labels * sizeof(*sorted));
    qsort(sorted, n_labels, sizeof(*sorted), label_cmp);
    for (size_t i = 1; i < n_labels; i++)
        if (strcmp(sorted[i - 1].key, sorted[i].key) == 0) {
            error_set(err, CHCP_INVALID_ARGUMENT, "labels: duplicate key %s", sorted[i].key);
            free(sorted);
            return NULL;
        }
    size_t pb_len = protobuf_c_message_get_packed_size(&config->base);
    uint8_t *pb = xmalloc(pb_len ? pb_len : 1);
    protobuf_c_message_pack(&config->base, pb);

    vm_op *op = NULL;
    cleanup_free char *dir = NULL;
    char gen[VM_ID_MAX + 1];
    vm_entry *existing = id && id[0] ? registry_get(m, id) : NULL;
    if (existing) {
        op = create_existing(m, existing, pb, pb_len, sorted, n_labels, p, done, ud, err);
        goto out;
    }
    if (m->cfg.attach_mode && m->n_vms >= 1) {
        error_set(err, CHCP_RESOURCE_EXHAUSTED,
                  "attach mode: the VMM at CHCP_CH_ENDPOINT hosts exactly one VM (%s exists)",
                  m->vms[0]->rec.id);
        goto out;
    }
    if (m->n_vms >= m->cfg.max_vms) {
        error_set(err, CHCP_RESOURCE_EXHAUSTED, "this host already has %zu VMs (the limit)",
                  m->n_vms);
        goto out;
    }
    /* Refused cleanly before a VMM could be left without a descriptor. */
    if (vm_fd_budget_check(m->n_vms + 1, err) < 0)
        goto out;
    if (!id || !id[0]) {
        generate_id(m, gen);
        id = gen;
    }
    dir = xasprintf("%s/%s", m->vms_dir, id);
    char *json = vm_config_build(&m->limits, config, dir, err);
    if (!json)
        goto out;

    vm_entry *e = xcalloc(1, sizeof(*e));
    e->m = m;
    snprintf(e->rec.id, sizeof(e->rec.id), "%s", id);
    e->rec.state = VM_CREATING;
    e->rec.state_reason = xstrdup("");
    e->rec.vmm_state = xstrdup("");
    e->rec.config_pb = steal_pointer(&pb);
    e->rec.config_pb_len = pb_len;
    e->rec.vmm_config_json = json;
    e->rec.dir = steal_pointer(&dir);
    e->rec.labels = xcalloc(n_labels ? n_labels : 1, sizeof(vm_label));
    for (size_t i = 0; i < n_labels; i++) {
        e->rec.labels[i].key = xstrdup(sorted[i].key);
        e->rec.labels[i].value = xstrdup(sorted[i].value);
    }
    e->rec.n_labels = n_labels;
    e->rec.created_at_ns = e->rec.updated_at_ns = e->rec.state_changed_at_ns = time_real_ns();

    op = op_new(m, e, VM_OP_CREATE, p, done, ud);
    if (admit_start(m, op, err) < 0) {
        op->vm = NULL; /* never registered: freed right here */
        op_release(op);
        entry_free(e);
        op = NULL;
        goto out;
    }
    registry_insert(m, e);
    queue_push(e, op);
out:
    free(sorted);
    free(pb);
    return op;
}

vm_op *vm_op_submit(vm_manager *m, vm_op_kind kind, const char *id, const vm_op_params *p,
                    vm_op_done_fn done, void *ud, chcp_error **err)
{
    if (kind == VM_OP_CREATE || kind == VM_OP_CREATE_JOIN) {
        error_set(err, CHCP_INTERNAL, "use vm_op_create for CreateVm");
        return NULL;
    }
    if (vm_validate_id(id, err) < 0)
        return NULL;
    if (m->recovery.running) {
        error_set(err, CHCP_UNAVAILABLE, "recovering VMs after a restart (%zu of %zu done)",
                  m->recovery.settled, m->recovery.total);
        return NULL;
    }
    if (m->detached) { /* durable shutdown let go of the VMMs */
        error_set(err, CHCP_UNAVAILABLE, "the daemon is shutting down");
        return NULL;
    }
    vm_entry *e = registry_get(m, id);
    if (!e) {
        error_set(err, CHCP_NOT_FOUND, "VM %s not found", id);
        return NULL;
    }
    if (m->shutting_down && kind != VM_OP_INFO && kind != VM_OP_DELETE) {
        error_set(err, CHCP_UNAVAILABLE, "the daemon is shutting down");
        return NULL;
    }
    if (kind != VM_OP_DELETE && kind != VM_OP_INFO && e->deleting) {
        error_set(err, CHCP_FAILED_PRECONDITION, "VM %s is DELETING", id);
        return NULL;
    }
    if (kind != VM_OP_DELETE && kind != VM_OP_INFO && e->q_len >= m->cfg.max_queue) {
        error_set(err, CHCP_RESOURCE_EXHAUSTED, "too many operations waiting on VM %s", id);
        return NULL;
    }
    vm_op *op = op_new(m, e, kind, p, done, ud);
    if (kind == VM_OP_BOOT && admit_start(m, op, err) < 0) {
        op_release(op);
        return NULL;
    }
    if (kind == VM_OP_DELETE)
        vm_lifecycle_delete(op);
    else if (kind == VM_OP_INFO)
        vm_lifecycle_info(op);
    else
        queue_push(e, op);
    return op;
}

void vm_op_complete_now(vm_op *op, chcp_code code, const char *fmt, ...)
{
    chcp_error *err = NULL;
    if (code != CHCP_OK) {
        chcp_buf b = CHCP_BUF_INIT;
        va_list ap;
        va_start(ap, fmt);
        buf_vprintf(&b, fmt, ap);
        va_end(ap);
        err = xcalloc(1, sizeof(*err));
        err->code = code;
        err->message = buf_steal_str(&b);
    }
    op_complete_later(op, err);
}

/* ---- listing ---------------------------------------------------------------- */

static bool list_match(const vm_record *r, const vm_list_filter *f)
{
    if (!f)
        return true;
    if (f->n_states) {
        bool ok = false;
        for (size_t i = 0; i < f->n_states && !ok; i++)
            ok = f->states[i] == r->state;
        if (!ok)
            return false;
    }
    for (size_t i = 0; i < f->n_labels; i++) {
        bool ok = false;
        for (size_t k = 0; k < r->n_labels && !ok; k++)
            ok = strcmp(r->labels[k].key, f->labels[i].key) == 0 &&
                 strcmp(r->labels[k].value, f->labels[i].value) == 0;
        if (!ok)
            return false;
    }
    return true;
}

size_t vm_manager_list(const vm_manager *m, const vm_list_filter *f, const char *after,
                       size_t limit, const vm_record **out, bool *more)
{
    size_t i = 0, n = 0;
    *more = false;
    if (after && after[0]) {
        bool found;
        i = registry_search(m, after, &found);
        if (found)
            i++;
    }
    for (; i < m->n_vms; i++) {
        const vm_record *r = &m->vms[i]->rec;
        if (!list_match(r, f))
            continue;
        if (n == limit) {
            *more = true;
            break;
        }
        out[n++] = r;
    }
    return n;
}

/* ---- lifetime of the manager -------------------------------------------------- */

static int mkdir_private(const char *path, chcp_error **err)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, CHCP_INTERNAL, errno, "creating %s", path);
    return 0;
}

vm_manager *vm_manager_new(uv_loop_t *loop, const vm_manager_config *cfg, const vm_backend_ops *ops,
                           void *backend, chcp_error **err)
{
    vm_manager *m = xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->cfg = *cfg;
    m->ops = ops;
    m->backend = backend;
    if (!m->cfg.max_vms)
        m->cfg.max_vms = 4096;
    if (!m->cfg.api_timeout_ms)
        m->cfg.api_timeout_ms = 10000;
    if (!m->cfg.boot_timeout_ms)
        m->cfg.boot_timeout_ms = 30000;
    if (!m->cfg.info_timeout_ms)
        m->cfg.info_timeout_ms = 500;
    if (!m->cfg.max_queue)
        m->cfg.max_queue = 64;
    if (!m->cfg.max_vcpus)
        m->cfg.max_vcpus = 1;
    if (!m->cfg.max_memory_mib)
        m->cfg.max_memory_mib = 512;
    m->state_dir = xstrdup(cfg->state_dir ? cfg->state_dir : "/var/lib/chcp");
    m->vms_dir = xasprintf("%s/vms", m->state_dir);
    m->image_dirs = xcalloc(cfg->n_image_dirs + 1, sizeof(char *));
    for (size_t i = 0; i < cfg->n_image_dirs; i++) {
        /* Canonical roots, so symlinked image dirs still compare correctly. */
        char *real = realpath(cfg->image_dirs[i], NULL);
        if (!real) {
            error_set_errno(err, CHCP_INVALID_ARGUMENT, errno, "CHCP_IMAGE_DIRS: %s",
                            cfg->image_dirs[i]);
            goto fail;
        }
        m->image_dirs[m->limits.n_image_dirs++] = real;
    }
    m->limits.image_dirs = (const char *const *)m->image_dirs;
    m->limits.max_vcpus = m->cfg.max_vcpus;
    m->limits.max_memory_mib = m->cfg.max_memory_mib;
    m->cfg.state_dir = m->state_dir;
    m->cfg.image_dirs = NULL;
    if (mkdir_private(m->state_dir, err) < 0 || mkdir_private(m->vms_dir, err) < 0)
        goto fail;
    if (m->cfg.durable && vm_persist_open(m, err) < 0)
        goto fail;
    return m;
fail:
    m->backend = NULL;
    vm_manager_free(m);
    return NULL;
}

static void shutdown_delete_done(void *ud, const chcp_error *err, const vm_record *vm)
{
    if (err)
        log_warn("removing VM at shutdown: %s", err->message);
}

void vm_manager_shutdown(vm_manager *m, void (*done)(void *ud), void *ud)
{
    if (m->cfg.durable) {
        /* VMs outlive the daemon: write, let go, keep them running. Nothing
         * may still be timed or pending afterwards: queued operations fail,
         * a ShutdownVm waiting for its guest ends (the VM keeps its state),
         * pending VMM calls are cancelled as the VMMs are released. */
        m->shutting_down = true;
        for (size_t i = 0; i < m->n_vms; i++) {
            vm_entry *e = m->vms[i];
            vm_queue_fail_all(e, CHCP_UNAVAILABLE, "the daemon is shutting down");
            vm_removal_cancel_retry(e);
            if (e->current)
                vm_lifecycle_abandon_wait(e->current, "chcp-api is shutting down");
        }
        vm_persist_detach(m);
        /* A DeleteVm still stopping its VMM (vmm.shutdown, SIGTERM, SIGKILL,
         * up to 4.5 s) is let go too: its record says DELETING and the next
         * start finishes the removal; the daemon's own timeout wins. */
        for (size_t i = 0; i < m->n_vms; i++)
            if (m->vms[i]->vmm)
                m->ops->release(steal_pointer(&m->vms[i]->vmm));
        vm_persist_close(m);
        if (done)
            done(ud);
        return;
    }
    m->shutting_down = true;
    m->shutdown_done = done;
    m->shutdown_ud = ud;
    if (m->n_vms == 0) {
        m->shutdown_done = NULL;
        if (done)
            done(ud);
        return;
    }
    /* Copy the ids: deletions may complete while we iterate. */
    size_t n = m->n_vms;
    char(*ids)[VM_ID_MAX + 1] = xcalloc(n, sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        memcpy(ids[i], m->vms[i]->rec.id, sizeof(ids[i]));
    for (size_t i = 0; i < n; i++) {
        vm_op *op = vm_op_submit(m, VM_OP_DELETE, ids[i], NULL, shutdown_delete_done, NULL, NULL);
        (void)op;
    }
    free(ids);
}

void vm_manager_free(vm_manager *m)
{
    if (!m)
        return;
    /* Normally empty (after vm_manager_shutdown); otherwise release what is
     * left so no VMM outlives us unnoticed. */
    for (size_t i = 0; i < m->n_vms; i++) {
        vm_entry *e = m->vms[i];
        if (e->vmm)
            m->ops->release(steal_pointer(&e->vmm)); /* completions may look at e->vmm */
        e->removed = true;
        if (e->refs == 0) /* otherwise the last operation's close frees it */
            entry_free(e);
    }
    free(m->vms);
    vm_persist_close(m);
    free(m->vms_real);
    free(m->last_state_problem);
    if (m->backend && m->ops && m->ops->free)
        m->ops->free(m->backend);
    for (size_t i = 0; i < m->limits.n_image_dirs; i++)
        free(m->image_dirs[i]);
    free(m->image_dirs);
    free(m->vms_dir);
    free(m->state_dir);
    free(m);
}

/* ---- lookups for the observation glue ------------------------------------- */

int vm_manager_vmm_counters(vm_manager *m, const char *id, vmb_done_fn done, void *ud,
                            chcp_error **err)
{
    vm_entry *e = registry_get(m, id);
    if (!e)
        return error_set(err, CHCP_NOT_FOUND, "VM %s not found", id);
    return vm_lifecycle_counters(e, done, ud, err);
}

void *vm_manager_op_token(const vm_manager *m, const char *id)
{
    return vm_current_token(registry_get(m, id));
}
