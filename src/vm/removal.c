/*
 * removal.c - DeleteVm, and the removal a failed CreateVm ends with.
 *
 * A removal can start in any state, also in the middle of another
 * operation: waiting operations fail, the running one is interrupted (its
 * VMM calls fail as the VMM goes away), the VMM is stopped, the directory
 * removed and the record dropped once nothing refers to the VM any more.
 *
 * Durable mode writes the intent (DELETING) before touching the VMM, so a
 * crash leaves either a record saying DELETING (the next start finishes the
 * removal) or the VM as it was -- never a stopped VMM behind a record that
 * says RUNNING. When the intent cannot be written (disk full), the VMM is
 * left alone, DeleteVm answers `unavailable`, and the intent is retried every
 * second; the removal proceeds once it is durable (a repeated DeleteVm waits
 * for that).
 */
#include <string.h>

#include "vm/vm_internal.h"

#define ATTACH_DELETE_TIMEOUT_MS 5000
#define INTENT_RETRY_MS 1000

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

/* A ShutdownVm that only waits for its guest ends at once. */
static void end_grace_wait(vm_entry *e)
{
    vm_op *cur = e->current;
    if (cur && cur->waiting_grace) {
        cur->waiting_grace = false;
        vm_op_finish_code(cur, CHCP_ABORTED, "VM %s was deleted during ShutdownVm", e->rec.id);
    }
}

void vm_removal_start(vm_entry *e)
{
    const vm_backend_ops *ops = e->m->ops;
    vm_queue_fail_all(e, e->removal_err ? e->removal_err->code : CHCP_ABORTED,
                      e->removal_err ? e->removal_err->message : "the VM is being deleted");
    if (e->removing_started)
        return;
    e->removing_started = true;
    end_grace_wait(e);
    if (e->unadopted && !e->rec.has_exit) {
        /* A VMM recovery could not take over (recovery.c): stopped by a
         * signal through a pidfd, its start time re-checked. */
        e->inflight++;
        vm_proc_kill_async(e->m->loop, e->rec.vmm_pid, e->rec.vmm_start_time, removal_done, e);
    } else if (!e->vmm || (e->m->cfg.attach_mode && (!e->vmm_created || e->rec.has_exit))) {
        /* No VMM, or (attach mode) nothing of ours is in it or it is gone:
         * just let go. */
        e->stop_done = true;
    } else if (e->m->cfg.attach_mode) {
        /* The VMM is not ours to stop: drop the VM from it. */
        e->inflight++;
        vm_call_watch *w = vm_call_watch_start(e, removal_token(e), "vm.delete", removal_done, e);
        ops->request(e->vmm, VMB_DELETE, NULL, ATTACH_DELETE_TIMEOUT_MS, vm_call_watch_done, w);
    } else {
        /* Watched like any VMM call, so the removal's vmm.shutdown is traced. */
        e->inflight++;
        vm_call_watch *w =
            vm_call_watch_start(e, removal_token(e), "vmm.shutdown", removal_done, e);
        ops->stop(e->vmm, vm_call_watch_done, w);
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
            e->m->ops->release(steal_pointer(&e->vmm));
        return false;
    }
    if (e->vmm)
        e->m->ops->release(steal_pointer(&e->vmm));
    /* The directory, then the record (durable mode: through the store's
     * writer, after any write of this VM still queued; DeleteVm is answered
     * once the record's deletion is durable). */
    e->store_removing = true;
    vm_persist_delete(e, removal_finish, NULL);
    return true;
}

/* Answer every DeleteVm waiting on `e` (success when err is NULL). */
static void answer_deletes(vm_entry *e, const chcp_error *err)
{
    vm_op *d = steal_pointer(&e->delete_ops);
    while (d) {
        vm_op *next = d->next;
        d->next = NULL;
        if (err)
            vm_op_complete_now(d, err->code, "%s", err->message);
        else
            vm_op_complete_now(d, CHCP_OK, "%s", "deleted");
        d = next;
    }
}

static void removal_finish(vm_entry *e, const chcp_error *store_err, void *ud)
{
    /* Answer everyone: a failed CreateVm with its error, DeleteVm calls with
     * success. The record is gone for all of them. */
    log_vm(LOG_INFO, e->rec.id, "removed");
    vm_op *c = steal_pointer(&e->create_op);
    chcp_error *removal_err = steal_pointer(&e->removal_err);
    e->store_removing = false;
    /* A record that could not be deleted is still DELETING in the store:
     * the next start finishes the removal. */
    answer_deletes(e, store_err);
    vm_entry_destroy(e); /* stays allocated while the ops above refer to it */
    /* Deferred: a removal can finish inside the CreateVm/DeleteVm call that
     * started it (nothing to stop), and callers are promised no completion
     * before their call returns. */
    if (c)
        vm_op_complete_now(c, removal_err ? removal_err->code : CHCP_INTERNAL, "%s",
                           removal_err ? removal_err->message : "CreateVm failed");
    error_free(removal_err);
}

/* ---- the intent ------------------------------------------------------------ */

static void write_intent(vm_entry *e);

static void intent_retry_closed(uv_handle_t *h)
{
    vm_entry *e = h->data;
    free(h);
    vm_entry_unref(e);
}

static void intent_retry_cb(uv_timer_t *t)
{
    vm_entry *e = t->data;
    e->intent_retry = NULL;
    uv_close((uv_handle_t *)t, intent_retry_closed);
    if (!e->removed && !e->m->detached && !e->removing_started)
        write_intent(e);
}

void vm_removal_cancel_retry(vm_entry *e)
{
    uv_timer_t *t = steal_pointer(&e->intent_retry);
    if (t)
        uv_close((uv_handle_t *)t, intent_retry_closed);
}

static void delete_intent_durable(vm_entry *e, const chcp_error *err, void *ud)
{
    e->inflight--;
    if (e->m->detached)
        return; /* shutting down: the next start deletes it (or finds it as it was) */
    if (!err) {
        vm_removal_start(e);
        return;
    }
    /* Stopping the VMM now would leave a record that says RUNNING behind a
     * dead VMM if the daemon went down before the record's deletion is
     * durable. Leave the VM alone until the intent is written. */
    log_vm(LOG_WARN, e->rec.id, "recording the deletion: %s (retrying in %d ms)", err->message,
           INTENT_RETRY_MS);
    chcp_error *answer = NULL;
    error_set(&answer, CHCP_UNAVAILABLE,
              "VM %s: recording the deletion failed (%s); the VM is left as it was and removed "
              "once its deletion can be recorded (retried every %d ms)",
              e->rec.id, err->message, INTENT_RETRY_MS);
    answer_deletes(e, answer);
    error_free(answer);
    if (!e->intent_retry) {
        e->intent_retry = xcalloc(1, sizeof(uv_timer_t));
        uv_timer_init(e->m->loop, e->intent_retry);
        e->intent_retry->data = e;
        e->refs++;
        uv_timer_start(e->intent_retry, intent_retry_cb, INTENT_RETRY_MS, 0);
    }
}

static void write_intent(vm_entry *e)
{
    e->inflight++;
    vm_persist_now(e, delete_intent_durable, NULL);
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
    end_grace_wait(e);
    if (e->persisted) {
        /* Durable mode: the intent first (see the top of this file). */
        write_intent(e);
        return;
    }
    vm_removal_start(e);
}
