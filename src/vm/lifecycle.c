/*
 * lifecycle.c - what each queued VM operation (CreateVm, BootVm, PauseVm,
 * ResumeVm, RebootVm, ShutdownVm) does to the VMM. DeleteVm is in removal.c;
 * GetVmInfo refreshes, VMM events and process exits in supervise.c.
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

#define DEFAULT_GRACE_MS 30000

static const vm_backend_ops *ops_of(vm_entry *e)
{
    return e->m->ops;
}

const char *vm_action_name(vmb_action a)
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

/*
 * One VMM call on behalf of `op`; `cb` gets the op back. A VM without a VMM
 * handle (let go by a shutdown of the daemon) is never handed to the
 * backend: the operation ends with `unavailable` instead, on the loop.
 */
static void request(vm_op *op, vmb_action a, const char *body, uint64_t timeout_ms, vmb_done_fn cb)
{
    vm_entry *e = op->vm;
    if (!e->vmm) {
        vm_op_complete_now(op, CHCP_UNAVAILABLE, "VM %s: %s", e->rec.id,
                           e->m->detached ? "the daemon is shutting down" : "no VMM");
        return;
    }
    e->inflight++;
    vm_call_watch *w = vm_call_watch_start(e, op->obs_token, vm_action_name(a), cb, op);
    ops_of(e)->request(e->vmm, a, body, timeout_ms, vm_call_watch_done, w);
}

/* Last step of every backend completion: a pending removal may now finish. */
void vm_after_backend(vm_entry *e)
{
    if (e->deleting)
        vm_lifecycle_try_remove(e);
}

const char *vm_exit_reason(const vm_entry *e)
{
    return e->rec.state_reason[0] ? e->rec.state_reason : "the VMM process exited";
}

/*
 * Common checks at the start of a completion. Returns true when the
 * operation was finished here: the VM is being deleted or its VMM died.
 */
bool vm_op_interrupted(vm_op *op)
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
        vm_op_finish_code(op, CHCP_UNAVAILABLE, "VM %s: %s", e->rec.id, vm_exit_reason(e));
        return true;
    }
    return false;
}

static void fail_precondition(vm_op *op, const char *what)
{
    vm_op_complete_now(op, CHCP_FAILED_PRECONDITION, "VM %s is %s; %s", op->vm->rec.id,
                       vm_state_name(op->vm->rec.state), what);
}

/*
 * Parse vm.info's "state" (and memory) into the record; returns the state.
 * *kept (optional) tells whether CH holds a Vm object (it reports a device
 * tree only then): "Created" without one means only the config is stored.
 */
const char *vm_absorb_info(vm_entry *e, const vmb_reply *reply, bool *kept)
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
    vm_after_backend(e);
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
            error_set(&err, CHCP_UNAVAILABLE, "%s", vm_exit_reason(e));
        else if (e->rec.has_exit)
            error_prefix(err, "%s", vm_exit_reason(e));
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
    vm_after_backend(e);
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
        if (e->rec.has_exit && !strstr(err->message, vm_exit_reason(e)))
            error_prefix(err, "%s", vm_exit_reason(e));
        error_prefix(err, "starting the VMM");
        create_fail(op, err);
    } else {
        e->rec.vmm_pid = ops_of(e)->pid(e->vmm);
        e->rec.vmm_start_time = ops_of(e)->start_time(e->vmm);
        vm_touch(e);
        request(op, VMB_CREATE, e->rec.vmm_config_json, e->m->cfg.api_timeout_ms, create_done);
    }
    error_free(err);
    vm_after_backend(e);
}

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
    vm_removal_start(e);
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
    /* Durable mode: vm.json says `creating` before anything else is in the
     * directory, and before any VMM exists. */
    if (vm_persist_creating(e, &err) < 0) {
        create_fail(op, err);
        error_free(err);
        return;
    }
    if (vm_images_stage(&e->m->limits, vm_record_config(&e->rec), e->rec.dir, &err) < 0) {
        create_fail(op, err);
        error_free(err);
        return;
    }
    vmb_start_params p = {.vm_id = e->rec.id, .dir = e->rec.dir};
    e->inflight++;
    vm_call_watch *w = vm_call_watch_start(e, op->obs_token, "spawn", create_started, op);
    e->vmm = ops_of(e)->start(e->m->backend, &p, vm_lifecycle_callbacks(), e, vm_call_watch_done, w,
                              &err);
    if (!e->vmm) {
        vm_call_watch_abandon(w, err); /* nothing started: `done` never fires */
        e->inflight--;
        error_prefix(err, "starting the VMM");
        create_fail(op, err);
        error_free(err);
    }
}

/* ---- BootVm ---------------------------------------------------------------- */

/* Right before every boot and reboot: each client image path is checked
 * again and the file it names now is what the VMM's staged name links to
 * (images.c). On failure the operation ends with the error, nothing
 * changed. */
static bool stage_images(vm_op *op)
{
    vm_entry *e = op->vm;
    chcp_error *err = NULL;
    if (vm_images_stage(&e->m->limits, vm_record_config(&e->rec), e->rec.dir, &err) == 0)
        return true;
    log_vm(LOG_WARN, e->rec.id, "%s refused: %s", op->kind == VM_OP_BOOT ? "BootVm" : "RebootVm",
           err->message);
    vm_op_complete_now(op, err->code, "%s", err->message);
    error_free(err);
    return false;
}

static void boot_info_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    chcp_error *boot_err = steal_pointer(&op->result);
    if (!vm_op_interrupted(op)) {
        bool kept = false;
        const char *st = err ? NULL : vm_absorb_info(e, reply, &kept);
        if (st && strcmp(st, "Created") == 0 && !kept) {
            /* Nothing was kept: the VM can be booted again. */
            vm_set_state(e, op->prev_state, NULL);
            vm_op_finish(op, boot_err);
        } else if (st && strcmp(st, "Running") == 0) {
            /* The guest runs (chcp's view was behind the VMM's, e.g. a
             * poweroff taken for real that was not): BootVm's target
             * holds. */
            vm_set_state(e, VM_RUNNING, "%s", "");
            vm_op_finish(op, NULL);
        } else if (st && strcmp(st, "Paused") == 0) {
            vm_set_state(e, VM_PAUSED, "%s", "");
            vm_op_finish_code(op, CHCP_FAILED_PRECONDITION,
                              "VM %s is PAUSED (the VMM reports Paused); BootVm needs CREATED or "
                              "SHUTDOWN",
                              e->rec.id);
        } else {
            vm_set_state(e, VM_FAILED, "boot failed: %s%s%s%s", boot_err->message,
                         st ? "; VMM state " : "", st ? st : "",
                         kept ? " (a half-booted VM is kept)" : "");
            vm_op_finish(op, boot_err);
        }
    }
    error_free(boot_err);
    error_free(err);
    vm_after_backend(e);
}

static void boot_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (!vm_op_interrupted(op)) {
        if (!err) {
            free(e->rec.vmm_state);
            e->rec.vmm_state = xstrdup("Running");
            vm_set_state(e, VM_RUNNING, "%s", "");
            vm_op_finish(op, NULL);
        } else {
            /* Did vm.boot leave anything behind? vm.info decides between
             * "back to where we were" and FAILED. */
            op->result = steal_pointer(&err);
            request(op, VMB_INFO, NULL, e->m->cfg.info_timeout_ms, boot_info_done);
        }
    }
    error_free(err);
    vm_after_backend(e);
}

static void run_boot(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->rec.state == VM_RUNNING)
        return vm_op_complete_now(op, CHCP_OK, "already running");
    if (e->rec.state != VM_CREATED && e->rec.state != VM_SHUTDOWN)
        return fail_precondition(op, "BootVm needs CREATED or SHUTDOWN");
    if (!stage_images(op))
        return;
    op->prev_state = e->rec.state;
    /* Whatever poweroff was still to be confirmed is history now. */
    e->poweroff_check = false;
    vm_set_state(e, VM_BOOTING, "%s", "");
    request(op, VMB_BOOT, NULL, e->m->cfg.boot_timeout_ms, boot_done);
}

/* ---- PauseVm, ResumeVm, RebootVm ----------------------------------------- */

static void simple_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (!vm_op_interrupted(op)) {
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
            vm_op_finish(op, NULL);
        }
    }
    error_free(err);
    vm_after_backend(e);
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
    if (!stage_images(op))
        return;
    e->expect_reboot_events = 1; /* our own reboot's events are not the guest's */
    request(op, VMB_REBOOT, NULL, e->m->cfg.boot_timeout_ms, simple_done);
}

/* ---- ShutdownVm ------------------------------------------------------------ */

/*
 * A graceful ShutdownVm presses the power button, then waits for the guest up
 * to the grace period. A vm/shutdown event may end the wait early, but only
 * once vm.info confirms it: the event may be a late one of an earlier boot.
 */

static void shutdown_reached(vm_op *op)
{
    vm_entry *e = op->vm;
    free(e->rec.vmm_state);
    e->rec.vmm_state = xstrdup("Created");
    e->poweroff_check = false;
    vm_set_state(e, VM_SHUTDOWN, "%s", "");
    vm_op_finish(op, NULL);
}

static bool powered_off(const char *vmm_state)
{
    return vmm_state && (strcmp(vmm_state, "Created") == 0 || strcmp(vmm_state, "Shutdown") == 0);
}

static void shutdown_info_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    chcp_error *sd_err = steal_pointer(&op->result);
    if (!vm_op_interrupted(op)) {
        const char *st = err ? NULL : vm_absorb_info(e, reply, NULL);
        if (powered_off(st)) {
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
    vm_after_backend(e);
}

static void forced_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (!vm_op_interrupted(op)) {
        if (!err) {
            /* Its vm/shutdown event may come later (also after a next
             * boot): supervise.c confirms such events with vm.info. */
            shutdown_reached(op);
        } else {
            op->result = steal_pointer(&err);
            request(op, VMB_INFO, NULL, e->m->cfg.info_timeout_ms, shutdown_info_done);
        }
    }
    error_free(err);
    vm_after_backend(e);
}

static void grace_check(vm_op *op);

static void shutdown_forced(vm_op *op)
{
    if (op->poweroff_hint) {
        /* A poweroff event came meanwhile: confirm it; force if it was not
         * this guest's. */
        op->grace_over = true;
        return grace_check(op);
    }
    request(op, VMB_SHUTDOWN, NULL, op->vm->m->cfg.api_timeout_ms, forced_done);
}

static void grace_info_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    op->checking = false;
    if (!vm_op_interrupted(op)) {
        const char *st = err ? NULL : vm_absorb_info(e, reply, NULL);
        if (powered_off(st))
            shutdown_reached(op);
        else if (op->poweroff_hint) /* another event came while we asked */
            grace_check(op);
        else if (op->grace_over)
            shutdown_forced(op);
        else
            op->waiting_grace = true; /* a stale event: keep waiting */
    }
    error_free(err);
    vm_after_backend(e);
}

static void grace_check(vm_op *op)
{
    op->poweroff_hint = false;
    op->waiting_grace = false;
    op->checking = true;
    request(op, VMB_INFO, NULL, op->vm->m->cfg.info_timeout_ms, grace_info_done);
}

static void grace_timer_cb(uv_timer_t *t)
{
    vm_lifecycle_grace_expired(t->data);
}

void vm_lifecycle_grace_expired(vm_op *op)
{
    if (op->checking) {
        op->grace_over = true; /* grace_info_done forces unless confirmed */
        return;
    }
    if (!op->waiting_grace)
        return;
    op->waiting_grace = false;
    log_vm(LOG_INFO, op->vm->rec.id, "guest did not power off in time; forcing vm.shutdown");
    shutdown_forced(op);
}

void vm_lifecycle_poweroff_hint(vm_op *op)
{
    if (op->waiting_grace)
        grace_check(op);
    else
        op->poweroff_hint = true; /* looked at once the call in flight ends */
}

static void power_button_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_op *op = ud;
    vm_entry *e = op->vm;
    e->inflight--;
    if (!vm_op_interrupted(op)) {
        uint64_t grace = op->p.graceful_ms_set ? op->p.graceful_ms : DEFAULT_GRACE_MS;
        if (err || grace == 0) {
            shutdown_forced(op);
        } else {
            uv_timer_start(&op->timer, grace_timer_cb, grace, 0);
            if (op->poweroff_hint)
                grace_check(op);
            else
                op->waiting_grace = true;
        }
    }
    error_free(err);
    vm_after_backend(e);
}

static void run_shutdown(vm_op *op)
{
    vm_entry *e = op->vm;
    if (e->rec.state == VM_SHUTDOWN || e->rec.state == VM_CREATED)
        return vm_op_complete_now(op, CHCP_OK, "already stopped");
    if (e->rec.state != VM_RUNNING && e->rec.state != VM_PAUSED)
        return fail_precondition(op, "ShutdownVm needs RUNNING or PAUSED");
    op->prev_state = e->rec.state;
    vm_set_state(e, VM_SHUTTING_DOWN, "%s", "");
    /* A paused guest cannot react to the power button. */
    if (op->p.force || op->prev_state == VM_PAUSED)
        return shutdown_forced(op);
    request(op, VMB_POWER_BUTTON, NULL, e->m->cfg.api_timeout_ms, power_button_done);
}

/* The daemon stops: a ShutdownVm that only waits for its guest ends now,
 * with the VM as it was (the guest may still power off; the next start
 * reconciles with vm.info). */
void vm_lifecycle_abandon_wait(vm_op *op, const char *why)
{
    vm_entry *e = op->vm;
    if (!op->waiting_grace)
        return;
    op->waiting_grace = false;
    vm_set_state(e, op->prev_state, "ShutdownVm interrupted (%s); the guest was asked to power off",
                 why);
    vm_op_finish_code(op, CHCP_UNAVAILABLE,
                      "VM %s: %s while waiting for the guest to power off (ACPI power button "
                      "pressed); retry ShutdownVm",
                      e->rec.id, why);
}

/* ---- dispatch ------------------------------------------------------------- */

void vm_lifecycle_run(vm_op *op)
{
    vm_entry *e = op->vm;
    e->epoch++; /* answers to vm.info sent before this op are not about after it */
    if (e->rec.has_exit && op->kind != VM_OP_CREATE_JOIN)
        return fail_precondition(op, "only DeleteVm is accepted");
    if (e->unadopted && op->kind != VM_OP_CREATE_JOIN) /* recovery.c */
        return vm_op_complete_now(op, CHCP_UNAVAILABLE, "VM %s: %s", e->rec.id,
                                  e->rec.state_reason);
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
