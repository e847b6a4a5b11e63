/*
 * lifecycle.c - what each VM operation does to the VMM, and how VMM events
 * and process exits move a VM between states.
 *
 * Every function here runs on the loop thread and continues in a backend
 * completion; none blocks. Rules that hold throughout (docs/lifecycle.md has
 * the full state x operation table):
 *   - calls whose target state already holds are no-ops that succeed;
 *   - any other wrong state is failed_precondition naming the state;
 *   - a VMM that exits outside DeleteVm makes the VM CRASHED, whatever was
 *     going on; operations in flight then fail with unavailable;
 *   - DeleteVm interrupts anything: the VMM is stopped, in-flight requests
 *     fail, and the record and directory go once nothing refers to them.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "vm/vm_internal.h"

#define ATTACH_DELETE_TIMEOUT_MS 5000
#define DEFAULT_GRACE_MS 30000

static const vmb_callbacks backend_callbacks;

static const vm_backend_ops *ops_of(vm_entry *e)
{
    return e->m->ops;
}

static const char *action_name(vmb_action a)
{
    static const char *const names[] = {
        [VMB_PING] = "vmm.ping",        [VMB_CREATE] = "vm.create",
        [VMB_BOOT] = "vm.boot",         [VMB_SHUTDOWN] = "vm.shutdown",
        [VMB_REBOOT] = "vm.reboot",     [VMB_PAUSE] = "vm.pause",
        [VMB_RESUME] = "vm.resume",     [VMB_POWER_BUTTON] = "vm.power-button",
        [VMB_DELETE] = "vm.delete",     [VMB_INFO] = "vm.info",
        [VMB_COUNTERS] = "vm.counters",
    };
    return (unsigned)a < ARRAY_SIZE(names) && names[a] ? names[a] : "unknown";
}

static void request(vm_op *op, vmb_action a, const char *body, uint64_t timeout_ms, vmb_done_fn cb)
{
    vm_entry *e = op->vm;
    e->inflight++;
    vm_call_watch *w = vm_call_watch_start(e, op->obs_token, action_name(a), cb, op);
    ops_of(e)->request(e->vmm, a, body, timeout_ms, vm_call_watch_done, w);
}

/* Last step of every backend completion: a pending removal may now finish. */
static void after_backend(vm_entry *e)
{
    if (e->deleting)
        vm_lifecycle_try_remove(e);
}

static const char *exit_reason(vm_entry *e)
{
    return e->rec.state_reason[0] ? e->rec.state_reason : "the VMM process exited";
}

/*
 * Common checks at the start of a completion. Returns true when the
 * operation was finished here: the VM is being deleted or its VMM died.
 */
static bool op_interrupted(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->m->detached) {
        /* Durable shutdown let go of the VMM: its record stays as it was. */
        vm_op_finish_code(op, CHCP_UNAVAILABLE, "the daemon is shutting down");
        return true;
    }
    if (e->deleting) {
        vm_op_finish_code(op, CHCP_ABORTED, "VM %s was deleted during the operation", e->rec.id);
        return true;
    }
    if (e->rec.has_exit) {
        vm_op_finish_code(op, CHCP_UNAVAILABLE, "VM %s: %s", e->rec.id, exit_reason(e));
        return true;
    }
    return false;
}

static void fail_precondition(vm_op *op, const char *what)
{
    vm_op_complete_now(op, CHCP_FAILED_PRECONDITION, "VM %s is %s; %s", op->vm->rec.id,
                       vm_state_name(op->vm->rec.state), what);
}

/* After an operation left the VM running or paused, apply a guest poweroff
 * that happened meanwhile. */
static void apply_pending_shutdown(vm_entry *e)
{
    if (e->pending_guest_shutdown && (e->rec.state == VM_RUNNING || e->rec.state == VM_PAUSED)) {
        vm_set_state(e, VM_SHUTDOWN, "guest powered off");
    }
    e->pending_guest_shutdown = false;
}

static void finish_ok(vm_op *op)
{
    apply_pending_shutdown(op->vm);
    vm_op_finish(op, NULL);
}

/*
 * Parse vm.info's "state" (and memory) into the record; returns the state.
 * *kept (optional) tells whether CH holds a Vm object (it reports a device
 * tree only then): "Created" without one means only the config is stored.
 */
static const char *absorb_info_kept(vm_entry *e, const vmb_reply *reply, bool *kept)
{
    if (kept)
        *kept = false;
    if (!reply || !reply->body)
        return NULL;
    json_t *root = json_loadb(reply->body, reply->body_len, 0, NULL);
    if (kept && root)
        *kept = json_is_object(json_object_get(root, "device_tree"));
    const char *st = root ? json_string_value(json_object_get(root, "state")) : NULL;
    if (st) {
        free(e->rec.vmm_state);
        e->rec.vmm_state = xstrdup(st);
    }
    json_t *mem = root ? json_object_get(root, "memory_actual_size") : NULL;
    if (json_is_integer(mem) && json_integer_value(mem) >= 0)
        e->rec.memory_actual_size = (uint64_t)json_integer_value(mem);
    json_decref(root);
    return st ? e->rec.vmm_state : NULL;
}

static const char *absorb_info(vm_entry *e, const vmb_reply *reply)
{
    return absorb_info_kept(e, reply, NULL);
}

/* ---- CreateVm ------------------------------------------------------------ */

static void create_fail(vm_op *op, const chcp_error *err);

/* The CreateVm record is durable (or could not be written: then CreateVm
 * fails like any other creation failure, and the VMM goes). */
static void create_durable(vm_entry *e, const chcp_error *err, void *ud)
{
    vm_op *op = ud;
    e->inflight--;
    if (e->m->detached) {
        vm_op_finish_code(op, CHCP_UNAVAILABLE, "the daemon is shutting down");
    } else if (e->deleting && !e->create_op) {
        vm_op_finish_code(op, CHCP_ABORTED, "VM %s was deleted during CreateVm", e->rec.id);
    } else if (err) {
        e->persisted = false;
        chcp_error *copy = NULL;
        error_set(&copy, CHCP_UNAVAILABLE, "recording the VM durably: %s", err->message);
        create_fail(op, copy);
        error_free(copy);
    } else {
        vm_op_finish(op, NULL);
    }
    after_backend(e);
}

static void create_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (e->m->detached) {
        /* No record was written: the next start reclaims this VMM. */
        vm_op_finish_code(op, CHCP_UNAVAILABLE, "the daemon is shutting down");
    } else if (e->deleting && !e->create_op) {
        vm_op_finish_code(op, CHCP_ABORTED, "VM %s was deleted during CreateVm", e->rec.id);
    } else if (err || e->rec.has_exit) {
        if (!err)
            error_set(&err, CHCP_UNAVAILABLE, "%s", exit_reason(e));
        else if (e->rec.has_exit)
            error_prefix(err, "%s", exit_reason(e));
        create_fail(op, err);
    } else {
        e->vmm_created = true;
        vm_set_state(e, VM_CREATED, "%s", "");
        free(e->rec.vmm_state);
        e->rec.vmm_state = xstrdup("Created");
        /* Durable mode: acknowledged only once the record is durable. */
        e->inflight++;
        vm_persist_now(e, create_durable, op);
    }
    error_free(err);
    after_backend(e);
}

static void create_started(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (e->m->detached) {
        vm_op_finish_code(op, CHCP_UNAVAILABLE, "the daemon is shutting down");
    } else if (e->deleting && !e->create_op) {
        vm_op_finish_code(op, CHCP_ABORTED, "VM %s was deleted during CreateVm", e->rec.id);
    } else if (err) {
        if (e->rec.has_exit && !strstr(err->message, exit_reason(e)))
            error_prefix(err, "%s", exit_reason(e));
        error_prefix(err, "starting the VMM");
        create_fail(op, err);
    } else {
        e->rec.vmm_pid = ops_of(e)->pid(e->vmm);
        e->rec.vmm_start_time = ops_of(e)->start_time(e->vmm);
        vm_touch(e);
        request(op, VMB_CREATE, e->rec.vmm_config_json, e->m->cfg.api_timeout_ms, create_done);
    }
    error_free(err);
    after_backend(e);
}

static void start_removal(vm_entry *e);

/* CreateVm is atomic: on failure the VMM is stopped and the directory
 * removed before the client hears about it. */
static void create_fail(vm_op *op, const chcp_error *err)
{
    vm_entry *e = op->vm;
    log_vm(LOG_WARN, e->rec.id, "CreateVm failed: %s", err->message);
    e->removal_err = xcalloc(1, sizeof(chcp_error));
    e->removal_err->code = err->code;
    e->removal_err->message = xstrdup(err->message);
    e->current = NULL;
    e->create_op = op;
    e->deleting = true;
    vm_set_state(e, VM_DELETING, "CreateVm failed: %s", err->message);
    start_removal(e);
}

static void run_create(vm_op *op)
{
    vm_entry *e = op->vm;
    chcp_error *err = NULL;
    /* A directory left by an earlier daemon run for this id is stale: chcp
     * has no record of it (there is no durable store yet). */
    struct stat st;
    if (lstat(e->rec.dir, &st) == 0)
        vm_dir_remove(e->rec.dir, NULL);
    if (mkdir(e->rec.dir, 0700) < 0) {
        error_set_errno(&err, CHCP_INTERNAL, errno, "creating %s", e->rec.dir);
        create_fail(op, err);
        error_free(err);
        return;
    }
    vmb_start_params p = {.vm_id = e->rec.id, .dir = e->rec.dir};
    e->inflight++;
    vm_call_watch *w = vm_call_watch_start(e, op->obs_token, "spawn", create_started, op);
    e->vmm =
        ops_of(e)->start(e->m->backend, &p, &backend_callbacks, e, vm_call_watch_done, w, &err);
    if (!e->vmm) {
        vm_call_watch_abandon(w, err); /* nothing started: `done` never fires */
        e->inflight--;
        error_prefix(err, "starting the VMM");
        create_fail(op, err);
        error_free(err);
    }
}

/* ---- BootVm ---------------------------------------------------------------- */

static void boot_info_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    chcp_error *boot_err = steal_pointer(&op->result);
    if (!op_interrupted(op)) {
        bool kept = false;
        const char *st = err ? NULL : absorb_info_kept(e, reply, &kept);
        if (st && strcmp(st, "Created") == 0 && !kept) {
            /* Nothing was kept: the VM can be booted again. */
            vm_set_state(e, op->prev_state, NULL);
            vm_op_finish(op, boot_err);
        } else {
            vm_set_state(e, VM_FAILED, "boot failed: %s%s%s%s", boot_err->message,
                         st ? "; VMM state " : "", st ? st : "",
                         kept ? " (a half-booted VM is kept)" : "");
            vm_op_finish(op, boot_err);
        }
    }
    error_free(boot_err);
    error_free(err);
    after_backend(e);
}

static void boot_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (!op_interrupted(op)) {
        if (!err) {
            free(e->rec.vmm_state);
            e->rec.vmm_state = xstrdup("Running");
            vm_set_state(e, VM_RUNNING, "%s", "");
            finish_ok(op);
        } else {
            /* Did vm.boot leave anything behind? vm.info decides between
             * "back to where we were" and FAILED. */
            op->result = steal_pointer(&err);
            request(op, VMB_INFO, NULL, e->m->cfg.info_timeout_ms, boot_info_done);
        }
    }
    error_free(err);
    after_backend(e);
}

static void run_boot(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->rec.state == VM_RUNNING)
        return vm_op_complete_now(op, CHCP_OK, "already running");
    if (e->rec.state != VM_CREATED && e->rec.state != VM_SHUTDOWN)
        return fail_precondition(op, "BootVm needs CREATED or SHUTDOWN");
    op->prev_state = e->rec.state;
    e->pending_guest_shutdown = false;
    vm_set_state(e, VM_BOOTING, "%s", "");
    request(op, VMB_BOOT, NULL, e->m->cfg.boot_timeout_ms, boot_done);
}

/* ---- PauseVm, ResumeVm, RebootVm ----------------------------------------- */

static void simple_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (!op_interrupted(op)) {
        if (err) {
            if (op->kind == VM_OP_REBOOT)
                e->expect_reboot_events = 0;
            if (err->code == CHCP_UNAVAILABLE || err->code == CHCP_DEADLINE_EXCEEDED) {
                e->unresponsive = true;
                vm_set_state(e, e->rec.state, "VMM not responding: %s", err->message);
            }
            vm_op_finish(op, err);
        } else {
            vm_state to = op->kind == VM_OP_PAUSE ? VM_PAUSED : VM_RUNNING;
            free(e->rec.vmm_state);
            e->rec.vmm_state = xstrdup(to == VM_PAUSED ? "Paused" : "Running");
            vm_set_state(e, to, "%s", "");
            finish_ok(op);
        }
    }
    error_free(err);
    after_backend(e);
}

static void run_pause(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->rec.state == VM_PAUSED)
        return vm_op_complete_now(op, CHCP_OK, "already paused");
    if (e->rec.state != VM_RUNNING)
        return fail_precondition(op, "PauseVm needs RUNNING");
    request(op, VMB_PAUSE, NULL, e->m->cfg.api_timeout_ms, simple_done);
}

static void run_resume(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->rec.state == VM_RUNNING)
        return vm_op_complete_now(op, CHCP_OK, "already running");
    if (e->rec.state != VM_PAUSED)
        return fail_precondition(op, "ResumeVm needs PAUSED");
    request(op, VMB_RESUME, NULL, e->m->cfg.api_timeout_ms, simple_done);
}

static void run_reboot(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->rec.state != VM_RUNNING && e->rec.state != VM_PAUSED)
        return fail_precondition(op, "RebootVm needs RUNNING or PAUSED");
    e->expect_reboot_events = 1; /* our own reboot's events are not the guest's */
    request(op, VMB_REBOOT, NULL, e->m->cfg.boot_timeout_ms, simple_done);
}

/* ---- ShutdownVm ------------------------------------------------------------ */

static void shutdown_reached(vm_op *op)
{
    vm_entry *e = op->vm;
    free(e->rec.vmm_state);
    e->rec.vmm_state = xstrdup("Created");
    e->pending_guest_shutdown = false;
    vm_set_state(e, VM_SHUTDOWN, "%s", "");
    vm_op_finish(op, NULL);
}

static void shutdown_info_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    chcp_error *sd_err = steal_pointer(&op->result);
    if (!op_interrupted(op)) {
        const char *st = err ? NULL : absorb_info(e, reply);
        if (st && (strcmp(st, "Created") == 0 || strcmp(st, "Shutdown") == 0)) {
            shutdown_reached(op); /* the guest got there by itself meanwhile */
        } else if (st && (strcmp(st, "Running") == 0 || strcmp(st, "Paused") == 0)) {
            vm_set_state(e, st[0] == 'R' ? VM_RUNNING : VM_PAUSED, NULL);
            vm_op_finish(op, sd_err);
        } else {
            vm_set_state(e, VM_FAILED, "shutdown failed: %s", sd_err->message);
            vm_op_finish(op, sd_err);
        }
    }
    error_free(sd_err);
    error_free(err);
    after_backend(e);
}

static void forced_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (!op_interrupted(op)) {
        if (!err) {
            if (!e->shutdown_event)
                e->expect_shutdown_events++; /* its vm/shutdown event is still coming */
            shutdown_reached(op);
        } else {
            op->result = steal_pointer(&err);
            request(op, VMB_INFO, NULL, e->m->cfg.info_timeout_ms, shutdown_info_done);
        }
    }
    error_free(err);
    after_backend(e);
}

static void shutdown_forced(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->shutdown_event)
        return shutdown_reached(op);
    request(op, VMB_SHUTDOWN, NULL, e->m->cfg.api_timeout_ms, forced_done);
}

static void grace_timer_cb(uv_timer_t *t)
{
    vm_lifecycle_grace_expired(t->data);
}

void vm_lifecycle_grace_expired(vm_op *op)
{
    op->waiting_grace = false;
    log_vm(LOG_INFO, op->vm->rec.id, "guest did not power off in time; forcing vm.shutdown");
    shutdown_forced(op);
}

static void power_button_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (!op_interrupted(op)) {
        uint64_t grace = op->p.graceful_ms_set ? op->p.graceful_ms : DEFAULT_GRACE_MS;
        if (err || e->shutdown_event || grace == 0) {
            shutdown_forced(op);
        } else {
            op->waiting_grace = true;
            uv_timer_start(&op->timer, grace_timer_cb, grace, 0);
        }
    }
    error_free(err);
    after_backend(e);
}

static void run_shutdown(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->rec.state == VM_SHUTDOWN || e->rec.state == VM_CREATED)
        return vm_op_complete_now(op, CHCP_OK, "already stopped");
    if (e->rec.state != VM_RUNNING && e->rec.state != VM_PAUSED)
        return fail_precondition(op, "ShutdownVm needs RUNNING or PAUSED");
    op->prev_state = e->rec.state;
    e->shutdown_event = false;
    vm_set_state(e, VM_SHUTTING_DOWN, "%s", "");
    /* A paused guest cannot react to the power button. */
    if (op->p.force || op->prev_state == VM_PAUSED)
        return shutdown_forced(op);
    request(op, VMB_POWER_BUTTON, NULL, e->m->cfg.api_timeout_ms, power_button_done);
}

/* ---- dispatch ------------------------------------------------------------- */

void vm_lifecycle_run(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->rec.has_exit && op->kind != VM_OP_CREATE_JOIN)
        return fail_precondition(op, "only DeleteVm is accepted");
    switch (op->kind) {
    case VM_OP_CREATE:
        return run_create(op);
    case VM_OP_CREATE_JOIN:
        return vm_op_complete_now(op, CHCP_OK, "exists");
    case VM_OP_BOOT:
        return run_boot(op);
    case VM_OP_SHUTDOWN:
        return run_shutdown(op);
    case VM_OP_PAUSE:
        return run_pause(op);
    case VM_OP_RESUME:
        return run_resume(op);
    case VM_OP_REBOOT:
        return run_reboot(op);
    default:
        return vm_op_complete_now(op, CHCP_INTERNAL, "unexpected operation %d", (int)op->kind);
    }
}

/* ---- DeleteVm ---------------------------------------------------------------- */

static void removal_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_entry *e = ud;
    e->inflight--;
    if (err)
        log_vm(LOG_WARN, e->rec.id, "stopping the VMM: %s", err->message);
    e->stop_done = true;
    error_free(err);
    vm_lifecycle_try_remove(e);
}

/* The operation a removal belongs to (for the observer): the DeleteVm, or
 * the CreateVm that failed. */
static void *removal_token(const vm_entry *e)
{
    if (e->delete_ops)
        return e->delete_ops->obs_token;
    return e->create_op ? e->create_op->obs_token : NULL;
}

static void start_removal(vm_entry *e)
{
    vm_queue_fail_all(e, e->removal_err ? e->removal_err->code : CHCP_ABORTED,
                      e->removal_err ? e->removal_err->message : "the VM is being deleted");
    if (e->removing_started)
        return;
    e->removing_started = true;
    vm_op *cur = e->current;
    if (cur && cur->waiting_grace) {
        cur->waiting_grace = false;
        vm_op_finish_code(cur, CHCP_ABORTED, "VM %s was deleted during ShutdownVm", e->rec.id);
    }
    if (!e->vmm || (e->m->cfg.attach_mode && (!e->vmm_created || e->rec.has_exit))) {
        /* No VMM, or (attach mode) nothing of ours is in it or it is gone:
         * just let go. */
        e->stop_done = true;
    } else if (e->m->cfg.attach_mode) {
        /* The VMM is not ours to stop: drop the VM from it. */
        e->inflight++;
        vm_call_watch *w = vm_call_watch_start(e, removal_token(e), "vm.delete", removal_done, e);
        ops_of(e)->request(e->vmm, VMB_DELETE, NULL, ATTACH_DELETE_TIMEOUT_MS, vm_call_watch_done,
                           w);
    } else {
        /* Watched like any VMM call, so the removal's vmm.shutdown is traced. */
        e->inflight++;
        vm_call_watch *w =
            vm_call_watch_start(e, removal_token(e), "vmm.shutdown", removal_done, e);
        ops_of(e)->stop(e->vmm, vm_call_watch_done, w);
    }
    vm_lifecycle_try_remove(e);
}

static void removal_finish(vm_entry *e, const chcp_error *store_err, void *ud);

bool vm_lifecycle_try_remove(vm_entry *e)
{
    if (!e->removing_started || !e->stop_done || e->inflight || e->current || e->info_inflight ||
        e->store_removing)
        return false;
    if (e->m->detached) {
        /* Durable shutdown: the VMM is stopped, the record says DELETING;
         * the next start removes the rest. Let go so the loop can end. */
        if (e->vmm)
            ops_of(e)->release(steal_pointer(&e->vmm));
        return false;
    }
    if (e->vmm) {
        ops_of(e)->release(e->vmm);
        e->vmm = NULL;
    }
    chcp_error *err = NULL;
    if (vm_dir_remove(e->rec.dir, &err) < 0) {
        log_vm(LOG_WARN, e->rec.id, "%s", err->message);
        error_free(err);
    }
    /* Durable mode: DeleteVm is answered once the record's deletion is. */
    e->store_removing = true;
    vm_persist_delete(e, removal_finish, NULL);
    return true;
}

static void removal_finish(vm_entry *e, const chcp_error *store_err, void *ud)
{
    /* Answer everyone: a failed CreateVm with its error, DeleteVm calls with
     * success. The record is gone for all of them. */
    log_vm(LOG_INFO, e->rec.id, "removed");
    vm_op *c = steal_pointer(&e->create_op);
    vm_op *d = steal_pointer(&e->delete_ops);
    chcp_error *removal_err = steal_pointer(&e->removal_err);
    e->store_removing = false;
    vm_entry_destroy(e); /* stays allocated while the ops below refer to it */
    /* Deferred: a removal can finish inside the CreateVm/DeleteVm call that
     * started it (nothing to stop), and callers are promised no completion
     * before their call returns. */
    if (c)
        vm_op_complete_now(c, removal_err ? removal_err->code : CHCP_INTERNAL, "%s",
                           removal_err ? removal_err->message : "CreateVm failed");
    while (d) {
        vm_op *next = d->next;
        d->next = NULL;
        /* A record that could not be deleted is still DELETING in the
         * store: the next start finishes the removal. */
        if (store_err)
            vm_op_complete_now(d, store_err->code, "%s", store_err->message);
        else
            vm_op_complete_now(d, CHCP_OK, "%s", "deleted");
        d = next;
    }
    error_free(removal_err);
}

static void delete_intent_durable(vm_entry *e, const chcp_error *err, void *ud)
{
    e->inflight--;
    if (err)
        log_vm(LOG_WARN, e->rec.id, "recording the deletion: %s (deleting anyway)", err->message);
    if (e->m->detached)
        return; /* shutting down: the next start deletes it */
    start_removal(e);
}

void vm_lifecycle_delete(vm_op *op)
{
    vm_entry *e = op->vm;
    op->next = e->delete_ops;
    e->delete_ops = op;
    if (e->deleting)
        return; /* a second DeleteVm waits for the same result */
    e->deleting = true;
    vm_set_state(e, VM_DELETING, NULL);
    if (e->persisted) {
        /* Durable mode: the intent first, so a crash from here on leaves a
         * record saying DELETING (the next start finishes it), never a
         * stopped VMM behind a record that says RUNNING. */
        e->inflight++;
        vm_persist_now(e, delete_intent_durable, NULL);
        return;
    }
    start_removal(e);
}

/* ---- GetVmInfo --------------------------------------------------------------- */

/* A VM is "settled" when no operation runs and CH's answer can be trusted to
 * reconcile our state with. */
static bool settled(vm_entry *e)
{
    vm_state s = e->rec.state;
    return !e->current && !e->deleting && !e->rec.has_exit &&
           (s == VM_CREATED || s == VM_RUNNING || s == VM_PAUSED || s == VM_SHUTDOWN);
}

static void reconcile(vm_entry *e, const char *st)
{
    if (!settled(e) || !st)
        return;
    vm_state s = e->rec.state;
    if ((strcmp(st, "Created") == 0 || strcmp(st, "Shutdown") == 0) &&
        (s == VM_RUNNING || s == VM_PAUSED))
        vm_set_state(e, VM_SHUTDOWN, "guest powered off");
    else if (strcmp(st, "Running") == 0 && s == VM_PAUSED)
        vm_set_state(e, VM_RUNNING, NULL);
    else if (strcmp(st, "Paused") == 0 && s == VM_RUNNING)
        vm_set_state(e, VM_PAUSED, NULL);
}

#define NOT_RESPONDING "VMM not responding"

static void info_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_entry *e = ud;
    e->inflight--;
    e->info_inflight = false;
    if (!e->deleting && !e->rec.has_exit) {
        if (err) {
            e->unresponsive = true;
            vm_set_state(e, e->rec.state, NOT_RESPONDING " (vm.info: %s)", err->message);
        } else {
            uint64_t mem = e->rec.memory_actual_size;
            cleanup_free char *was = xstrdup(e->rec.vmm_state);
            const char *st = absorb_info(e, reply);
            if (e->unresponsive && str_has_prefix(e->rec.state_reason, NOT_RESPONDING))
                vm_set_state(e, e->rec.state, "%s", "");
            e->unresponsive = false;
            reconcile(e, st);
            /* A read that changed nothing leaves updated_at and generation
             * alone (a restart must not look like a change either). */
            if (mem != e->rec.memory_actual_size || strcmp(was, e->rec.vmm_state) != 0)
                vm_touch(e);
        }
    }
    /* Reads succeed with whatever is known, also when the VMM is stuck. */
    vm_op *op = steal_pointer(&e->info_ops);
    while (op) {
        vm_op *next = op->next;
        vm_op_complete_now(op, CHCP_OK, "info");
        op = next;
    }
    error_free(err);
    after_backend(e);
}

void vm_lifecycle_info(vm_op *op)
{
    vm_entry *e = op->vm;
    /* Mid-operation the VMM is busy (its API is serialised): report what we
     * know instead of reporting a slow boot as a hang. */
    if (!settled(e) || !e->vmm)
        return vm_op_complete_now(op, CHCP_OK, "info");
    op->next = e->info_ops;
    e->info_ops = op;
    if (e->info_inflight)
        return; /* one vm.info answers every waiting GetVmInfo */
    e->info_inflight = true;
    e->inflight++;
    /* Traced under the first waiting GetVmInfo (the others share the answer). */
    vm_call_watch *w = vm_call_watch_start(e, op->obs_token, "vm.info", info_done, e);
    ops_of(e)->request(e->vmm, VMB_INFO, NULL, e->m->cfg.info_timeout_ms, vm_call_watch_done, w);
}

/* ---- vm.counters (per-VM metrics; not an operation) ---------------------------- */

typedef struct counters_call {
    vm_entry *e;
    vmb_done_fn done;
    void *ud;
} counters_call;

static void counters_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    counters_call *c = ud;
    vm_entry *e = c->e;
    e->inflight--;
    c->done(c->ud, err, reply);
    free(c);
    after_backend(e);
}

int vm_lifecycle_counters(vm_entry *e, vmb_done_fn done, void *ud, chcp_error **err)
{
    /* Only between operations, like vm.info: the VMM's API is serialised. */
    if (!settled(e) || !e->vmm || (e->rec.state != VM_RUNNING && e->rec.state != VM_PAUSED))
        return error_set(err, CHCP_FAILED_PRECONDITION, "VM %s is %s%s", e->rec.id,
                         vm_state_name(e->rec.state), e->current ? " and busy" : "");
    counters_call *c = xcalloc(1, sizeof(*c));
    c->e = e;
    c->done = done;
    c->ud = ud;
    e->inflight++;
    vm_call_watch *w = vm_call_watch_start(e, NULL, "vm.counters", counters_done, c);
    ops_of(e)->request(e->vmm, VMB_COUNTERS, NULL, e->m->cfg.info_timeout_ms, vm_call_watch_done,
                       w);
    return 0;
}

/* ---- VMM events and exits ---------------------------------------------------- */

static void on_event(void *ud, const char *source, const char *event)
{
    vm_entry *e = ud;
    if (e->m->obs.event)
        e->m->obs.event(e->m->obs.ud, vm_current_token(e), &e->rec, source, event);
    /* Adopted VMMs replay events since the saved offset; vm.info (recovery.c)
     * is the truth about those, so they are not applied again. (The saved
     * offset is the backend's byte offset, persist.c.) */
    if (e->deleting || e->recovering)
        return;
    vm_op *cur = e->current;
    if (strcmp(source, "vm") == 0 && strcmp(event, "shutdown") == 0) {
        if (cur && cur->kind == VM_OP_SHUTDOWN) {
            e->shutdown_event = true;
            if (cur->waiting_grace) {
                cur->waiting_grace = false;
                uv_timer_stop(&cur->timer);
                shutdown_reached(cur);
            }
        } else if (e->expect_shutdown_events > 0) {
            e->expect_shutdown_events--; /* late event of our own vm.shutdown */
        } else if (cur) {
            e->pending_guest_shutdown = true;
        } else if (e->rec.state == VM_RUNNING || e->rec.state == VM_PAUSED) {
            free(e->rec.vmm_state);
            e->rec.vmm_state = xstrdup("Created");
            vm_set_state(e, VM_SHUTDOWN, "guest powered off");
        }
    } else if (strcmp(source, "vm") == 0 && strcmp(event, "rebooted") == 0) {
        if (e->expect_reboot_events > 0)
            e->expect_reboot_events--;
        else if (e->rec.state == VM_RUNNING)
            vm_set_state(e, VM_RUNNING, "guest rebooted");
    } else if (strcmp(source, "guest") == 0 && strcmp(event, "panic") == 0) {
        /* The guest decides what follows a panic (panic=N reboots it); the
         * VMM keeps running, so the state stays and the reason tells. */
        vm_set_state(e, e->rec.state, "guest panicked");
    }
}

static void on_vmm_exit(void *ud, int exit_code, int sig, const char *detail)
{
    vm_entry *e = ud;
    e->rec.has_exit = true;
    e->rec.exit_code = exit_code;
    e->rec.exit_signal = sig;
    e->rec.exited_at_ns = time_real_ns();
    e->rec.vmm_pid = 0;
    free(e->rec.vmm_state);
    e->rec.vmm_state = xstrdup("");
    vm_cleanup_leftovers(&e->rec); /* a crashed VMM leaves its API socket */
    if (e->m->obs.vmm_exit)
        e->m->obs.vmm_exit(e->m->obs.ud, &e->rec, e->deleting);
    if (e->deleting) {
        vm_touch(e);
        return;
    }
    chcp_buf b = CHCP_BUF_INIT;
    if (sig)
        buf_printf(&b, "VMM killed by signal %d (%s)", sig,
                   sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    else
        buf_printf(&b, "VMM exited with code %d", exit_code);
    if (detail && detail[0])
        buf_printf(&b, ": %s", detail);
    char *reason = buf_steal_str(&b);
    vm_state was = e->rec.state;
    if (was == VM_CREATING) {
        /* CreateVm's own completion turns this into its (atomic) failure. */
        free(e->rec.state_reason);
        e->rec.state_reason = reason;
        vm_touch(e);
        return;
    }
    vm_set_state(e, VM_CRASHED, "%s", reason);
    free(reason);
    vm_op *cur = e->current;
    if (cur && cur->waiting_grace) {
        cur->waiting_grace = false;
        vm_op_finish_code(cur, CHCP_UNAVAILABLE, "VM %s: %s", e->rec.id, e->rec.state_reason);
    }
}

static const vmb_callbacks backend_callbacks = {.on_event = on_event, .on_exit = on_vmm_exit};

const vmb_callbacks *vm_lifecycle_callbacks(void)
{
    return &backend_callbacks;
}
