/*
 * supervise.c - what the VMM tells chcp without being asked for it: events,
 * process exits, and the vm.info refreshes that keep the record honest
 * (GetVmInfo, and the confirmation of a guest poweroff).
 *
 * Events are hints, not facts. CH hands events to a monitor thread, so one
 * may reach chcp after the API reply of the call that caused it -- even
 * after the next boot of the same VM (a forced vm.shutdown's vm/shutdown
 * arriving when the guest runs again). A poweroff is therefore concluded
 * only when vm.info confirms it, from an answer sent in the current epoch
 * (supervise.c's refresh and lifecycle.c's ShutdownVm both do so): stale
 * events never change state.
 */
#include <signal.h>
#include <string.h>

#include "vm/vm_internal.h"

#define NOT_RESPONDING "VMM not responding"

/* A VM is "settled" when no operation runs and the VMM's answer can be
 * trusted to reconcile our state with. */
static bool settled(const vm_entry *e)
{
    vm_state s = e->rec.state;
    return !e->current && !e->deleting && !e->rec.has_exit &&
           (s == VM_CREATED || s == VM_RUNNING || s == VM_PAUSED || s == VM_SHUTDOWN);
}

static void reconcile(vm_entry *e, const char *st)
{
    vm_state s = e->rec.state;
    if ((strcmp(st, "Created") == 0 || strcmp(st, "Shutdown") == 0) &&
        (s == VM_RUNNING || s == VM_PAUSED))
        vm_set_state(e, VM_SHUTDOWN, "guest powered off");
    else if (strcmp(st, "Running") == 0 && s == VM_PAUSED)
        vm_set_state(e, VM_RUNNING, NULL);
    else if (strcmp(st, "Paused") == 0 && s == VM_RUNNING)
        vm_set_state(e, VM_PAUSED, NULL);
}

/* Is a poweroff event still worth confirming? Only a running or paused
 * guest can power off; anything else settles it. */
static bool poweroff_pending(const vm_entry *e)
{
    return e->poweroff_check && (e->rec.state == VM_RUNNING || e->rec.state == VM_PAUSED);
}

static void refresh(vm_entry *e, void *op_token);

static void refresh_done(void *ud, chcp_error *err, const vmb_reply *reply)
{
    vm_entry *e = ud;
    e->inflight--;
    e->info_inflight = false;
    if (!e->deleting && !e->rec.has_exit && !e->m->detached) {
        /* The answer describes the VMM when it was asked: it is only about
         * now if no operation started since and none runs. */
        bool current = settled(e) && e->info_epoch == e->epoch;
        if (err) {
            e->unresponsive = true;
            e->poweroff_check = false; /* GetVmInfo's next refresh catches a lost poweroff */
            vm_set_state(e, e->rec.state, NOT_RESPONDING " (vm.info: %s)", err->message);
        } else {
            uint64_t mem = e->rec.memory_actual_size;
            cleanup_free char *was = xstrdup(e->rec.vmm_state);
            const char *st = vm_absorb_info(e, reply, NULL);
            if (e->unresponsive && str_has_prefix(e->rec.state_reason, NOT_RESPONDING))
                vm_set_state(e, e->rec.state, "%s", "");
            e->unresponsive = false;
            if (current && st) {
                reconcile(e, st);
                e->poweroff_check = false;
            }
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
    /* Still unconfirmed (an operation ran meanwhile): ask again. */
    if (settled(e) && poweroff_pending(e) && !e->m->detached)
        refresh(e, NULL);
    vm_after_backend(e); /* last: a removal may free the entry */
}

/* One vm.info, traced under `op_token` (the first waiting GetVmInfo; the
 * others share the answer) or under none (a poweroff confirmation). */
static void refresh(vm_entry *e, void *op_token)
{
    if (e->info_inflight || !e->vmm)
        return; /* one vm.info answers everyone waiting */
    e->info_inflight = true;
    e->info_epoch = e->epoch;
    e->inflight++;
    vm_call_watch *w = vm_call_watch_start(e, op_token, "vm.info", refresh_done, e);
    e->m->ops->request(e->vmm, VMB_INFO, NULL, e->m->cfg.info_timeout_ms, vm_call_watch_done, w);
}

void vm_lifecycle_info(vm_op *op)
{
    vm_entry *e = op->vm;
    /* Mid-operation the VMM is busy (its API is serialised): report what we
     * know instead of reporting a slow boot as a hang. */
    if (!settled(e) || !e->vmm || e->m->detached)
        return vm_op_complete_now(op, CHCP_OK, "info");
    op->next = e->info_ops;
    e->info_ops = op;
    refresh(e, op->obs_token);
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
    vm_after_backend(e);
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
    e->m->ops->request(e->vmm, VMB_COUNTERS, NULL, e->m->cfg.info_timeout_ms, vm_call_watch_done,
                       w);
    return 0;
}

void vm_lifecycle_after_op(vm_entry *e)
{
    if (e->m->shutting_down)
        return;
    if (settled(e) && poweroff_pending(e))
        refresh(e, NULL);
    else if (!poweroff_pending(e))
        e->poweroff_check = false;
}

/* ---- VMM events and exits ---------------------------------------------------- */

static void on_poweroff_event(vm_entry *e)
{
    vm_op *cur = e->current;
    if (cur && cur->kind == VM_OP_SHUTDOWN && e->rec.state == VM_SHUTTING_DOWN) {
        vm_lifecycle_poweroff_hint(cur); /* the ShutdownVm confirms it itself */
        return;
    }
    if (!cur && e->rec.state != VM_RUNNING && e->rec.state != VM_PAUSED)
        return; /* nothing it could change (e.g. a late event of a forced vm.shutdown) */
    e->poweroff_check = true;
    if (!cur)
        refresh(e, NULL); /* else after the operation (vm_lifecycle_after_op) */
}

static void on_event(void *ud, const char *source, const char *event)
{
    vm_entry *e = ud;
    if (e->m->obs.event)
        e->m->obs.event(e->m->obs.ud, vm_current_token(e), &e->rec, source, event);
    /* Adopted VMMs replay events since the saved offset; vm.info (recovery.c)
     * is the truth about those, so they are not applied again. (The saved
     * offset is the backend's byte offset, persist.c.) */
    if (e->deleting || e->recovering || e->m->detached)
        return;
    if (strcmp(source, "vm") == 0 && strcmp(event, "shutdown") == 0) {
        on_poweroff_event(e);
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
    e->poweroff_check = false;
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
    else if (exit_code >= 0)
        buf_printf(&b, "VMM exited with code %d", exit_code);
    else
        buf_printf(&b, "VMM exited (exit status unknown)");
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
