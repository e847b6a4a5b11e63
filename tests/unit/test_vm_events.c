/*
 * test_vm_events.c - VMM events are hints, not facts (src/vm/supervise.c):
 * late events of an earlier boot never change state, a guest poweroff is
 * concluded only once vm.info confirms it, in the epoch it was asked in; and
 * the daemon's stop (durable mode) ends every wait at once: no timer, no
 * pending VMM call, no freed VMM handle survives vm_manager_shutdown().
 */
#include "test_vm_util.h"

static fake_vmm *vmm_of(tctx *t)
{
    assert_non_null(t->fb.last);
    return t->fb.last;
}

static void event(tctx *t, const char *source, const char *ev)
{
    fake_vmm *v = vmm_of(t);
    v->cb->on_event(v->cb_ud, source, ev);
}

static vm_op_params grace_ms(uint64_t ms)
{
    return (vm_op_params){.graceful_ms = ms, .graceful_ms_set = true};
}

/* Boot -> Shutdown{force} -> Boot, then the forced shutdown's vm/shutdown
 * arrives (CH queues events past the reply): the VM keeps running. */
static void test_late_event_after_next_boot(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_SHUTDOWN);
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_OK);
    int infos = t->fb.requests[VMB_INFO];
    event(t, "vm", "shutdown"); /* the late one; the VMM says Running */
    tv_spin(&t->loop, 10);
    assert_int_equal(state_of(t, "a"), VM_RUNNING);
    assert_int_equal(t->fb.requests[VMB_INFO], infos + 1); /* asked, not believed */
    assert_string_equal(vm_manager_find(t->m, "a")->state_reason, "");

    /* Shutdown{graceful}: a stale event during the grace wait is confirmed
     * and dismissed; the wait goes on until the guest really powers off. */
    op_result sd = {0};
    vm_op_params g = grace_ms(60000);
    assert_non_null(vm_op_submit(t->m, VM_OP_SHUTDOWN, "a", &g, op_result_cb, &sd, NULL));
    tv_spin(&t->loop, 10);
    assert_int_equal(state_of(t, "a"), VM_SHUTTING_DOWN);
    event(t, "vm", "shutdown");
    tv_spin(&t->loop, 10);
    assert_false(sd.done);
    assert_int_equal(state_of(t, "a"), VM_SHUTTING_DOWN);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 1); /* only the first, forced one */
    strcpy(vmm_of(t)->ch_state, "Created");            /* now the guest does */
    event(t, "vm", "shutdown");
    assert_true(tv_run_until(&t->loop, &sd.done, 1000));
    assert_int_equal(sd.code, CHCP_OK);
    assert_int_equal(sd.state, VM_SHUTDOWN);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 1); /* no forced vm.shutdown needed */
    /* and the next BootVm boots, it does not turn the VM FAILED */
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_OK);
    assert_int_equal(state_of(t, "a"), VM_RUNNING);
}

/* An event that arrives while an operation runs is confirmed after it. */
static void test_event_during_operation(void **state)
{
    tctx *t = *state;
    start_manager(t);
    /* during a boot: the late event of the last shutdown, the boot wins */
    reach(t, "a", VM_SHUTDOWN);
    t->fb.mode[VMB_BOOT] = FAKE_HANG;
    op_result boot = {0};
    vm_op_submit(t->m, VM_OP_BOOT, "a", NULL, op_result_cb, &boot, NULL);
    tv_spin(&t->loop, 5);
    event(t, "vm", "shutdown");
    t->fb.mode[VMB_BOOT] = FAKE_OK;
    fake_unhang(vmm_of(t));
    assert_true(tv_run_until(&t->loop, &boot.done, 1000));
    tv_spin(&t->loop, 10);
    assert_int_equal(boot.code, CHCP_OK);
    assert_int_equal(state_of(t, "a"), VM_RUNNING);

    /* during a PauseVm that then fails because the guest really powered
     * off: confirmed afterwards */
    t->fb.mode[VMB_PAUSE] = FAKE_HANG;
    op_result p = {0};
    vm_op_submit(t->m, VM_OP_PAUSE, "a", NULL, op_result_cb, &p, NULL);
    tv_spin(&t->loop, 5);
    strcpy(vmm_of(t)->ch_state, "Created");
    event(t, "vm", "shutdown");
    assert_int_equal(state_of(t, "a"), VM_RUNNING);
    t->fb.mode[VMB_PAUSE] = FAKE_FAIL;
    fake_req *r = steal_pointer(&vmm_of(t)->hung);
    fake_answer(r, FAKE_FAIL);
    uv_close((uv_handle_t *)&r->timer, fake_req_closed);
    assert_true(tv_run_until(&t->loop, &p.done, 1000));
    assert_int_equal(p.code, CHCP_INTERNAL);
    tv_spin(&t->loop, 10);
    assert_int_equal(state_of(t, "a"), VM_SHUTDOWN);
    assert_string_equal(vm_manager_find(t->m, "a")->state_reason, "guest powered off");
}

/* A vm.info that was asked before an operation started says nothing about
 * the state after it: the poweroff is asked about again. */
static void test_confirmation_from_an_older_epoch(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    t->fb.mode[VMB_INFO] = FAKE_HANG;
    strcpy(vmm_of(t)->ch_state, "Created");
    event(t, "vm", "shutdown"); /* vm.info sent, hangs */
    tv_spin(&t->loop, 5);
    op_result boot = {0};
    vm_op_submit(t->m, VM_OP_BOOT, "a", NULL, op_result_cb, &boot, NULL); /* no-op: RUNNING */
    assert_true(tv_run_until(&t->loop, &boot.done, 1000));
    int infos = t->fb.requests[VMB_INFO];
    t->fb.mode[VMB_INFO] = FAKE_OK;
    fake_unhang(vmm_of(t)); /* answers Created, but from before the BootVm */
    tv_spin(&t->loop, 10);
    assert_int_equal(t->fb.requests[VMB_INFO], infos + 1); /* asked again */
    assert_int_equal(state_of(t, "a"), VM_SHUTDOWN);       /* and then concluded */
}

/* The grace period ends while a poweroff event is being confirmed: the
 * forced vm.shutdown follows the (negative) answer, exactly once. */
static void test_grace_ends_while_confirming(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    op_result sd = {0};
    vm_op_params g = grace_ms(30);
    /* The event comes while the power button is pressed, so the check
     * starts together with the grace timer, whatever the machine's load. */
    t->fb.mode[VMB_POWER_BUTTON] = FAKE_HANG;
    vm_op_submit(t->m, VM_OP_SHUTDOWN, "a", &g, op_result_cb, &sd, NULL);
    tv_spin(&t->loop, 5);
    event(t, "vm", "shutdown");
    t->fb.mode[VMB_POWER_BUTTON] = FAKE_OK;
    t->fb.mode[VMB_INFO] = FAKE_HANG;
    fake_unhang(vmm_of(t)); /* the button answers: grace timer + vm.info (hangs) */
    tv_spin(&t->loop, 60);  /* the grace period passes */
    assert_false(sd.done);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 0);
    t->fb.mode[VMB_INFO] = FAKE_OK;
    fake_unhang(vmm_of(t)); /* Running: the event was not this guest's */
    assert_true(tv_run_until(&t->loop, &sd.done, 1000));
    assert_int_equal(sd.code, CHCP_OK);
    assert_int_equal(sd.state, VM_SHUTDOWN);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 1);

    /* A poweroff event during the power-button call itself: confirmed
     * once the call answers, no forced vm.shutdown. */
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_OK);
    t->fb.mode[VMB_POWER_BUTTON] = FAKE_HANG;
    op_result sd2 = {0};
    g = grace_ms(60000);
    vm_op_submit(t->m, VM_OP_SHUTDOWN, "a", &g, op_result_cb, &sd2, NULL);
    tv_spin(&t->loop, 5);
    strcpy(vmm_of(t)->ch_state, "Created");
    event(t, "vm", "shutdown");
    t->fb.mode[VMB_POWER_BUTTON] = FAKE_OK;
    fake_unhang(vmm_of(t));
    assert_true(tv_run_until(&t->loop, &sd2.done, 1000));
    assert_int_equal(sd2.state, VM_SHUTDOWN);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 1);
}

/* vm.boot fails, yet vm.info says the guest runs (chcp's view was behind):
 * BootVm's target holds; Paused is failed_precondition. Never FAILED. */
static void test_boot_failure_but_running(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_SHUTDOWN);
    t->fb.mode[VMB_BOOT] = FAKE_FAIL;
    t->fb.info_state_override = "Running";
    op_result r = run_op(t, VM_OP_BOOT, "a", NULL);
    assert_int_equal(r.code, CHCP_OK);
    assert_int_equal(r.state, VM_RUNNING);
    reach(t, "b", VM_SHUTDOWN);
    t->fb.info_state_override = "Paused";
    r = run_op(t, VM_OP_BOOT, "b", NULL);
    assert_int_equal(r.code, CHCP_FAILED_PRECONDITION);
    assert_non_null(strstr(r.msg, "PAUSED"));
    assert_int_equal(state_of(t, "b"), VM_PAUSED);
    t->fb.info_state_override = NULL;
}

/* ---- the daemon stops (durable mode) --------------------------------------------- */

/* SIGTERM while a graceful ShutdownVm waits for its guest: the wait ends
 * at once with `unavailable` (not after the 60 s grace), the VM keeps its
 * state, the VMM keeps running (released, not stopped), and the grace timer
 * is gone (teardown closes the loop: an active timer would fail it). */
static void test_stop_during_grace_wait(void **state)
{
    tctx *t = *state;
    t->durable = true;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    op_result sd = {0};
    vm_op_params g = grace_ms(60000);
    vm_op_submit(t->m, VM_OP_SHUTDOWN, "a", &g, op_result_cb, &sd, NULL);
    tv_spin(&t->loop, 10);
    assert_int_equal(state_of(t, "a"), VM_SHUTTING_DOWN);
    /* plus a queued op, and a VM whose VMM call hangs */
    op_result queued = {0};
    vm_op_submit(t->m, VM_OP_PAUSE, "a", NULL, op_result_cb, &queued, NULL);
    reach(t, "b", VM_RUNNING);
    t->fb.mode[VMB_PAUSE] = FAKE_HANG;
    op_result hung = {0};
    vm_op_submit(t->m, VM_OP_PAUSE, "b", NULL, op_result_cb, &hung, NULL);
    tv_spin(&t->loop, 5);
    int stops = t->fb.stops;
    uint64_t t0 = uv_now(&t->loop);
    vm_manager_shutdown(t->m, NULL, NULL);
    assert_true(tv_run_until(&t->loop, &hung.done, 1000));
    assert_true(sd.done && queued.done);
    assert_true(uv_now(&t->loop) - t0 < 1000);
    assert_int_equal(sd.code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(sd.msg, "power off"));
    assert_int_equal(queued.code, CHCP_UNAVAILABLE);
    assert_int_equal(hung.code, CHCP_UNAVAILABLE);
    assert_int_equal(t->fb.cancelled, 1); /* the hung vm.pause */
    assert_int_equal(t->fb.stops, stops); /* nothing stopped */
    assert_int_equal(t->fb.live, 0);      /* every VMM let go */
    assert_int_equal(state_of(t, "a"), VM_RUNNING);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 0); /* never forced */
    /* nothing more happens: the grace timer is gone */
    tv_spin(&t->loop, 20);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 0);
    op_result late = run_op(t, VM_OP_BOOT, "a", NULL);
    assert_int_equal(late.code, CHCP_UNAVAILABLE);
}

/* SIGTERM while a DeleteVm waits for a VMM that will not stop: the stop is
 * let go (the record says DELETING; the next start finishes the removal),
 * the DeleteVm answered, nothing left on the loop past the shutdown. */
static void test_stop_during_stuck_delete(void **state)
{
    tctx *t = *state;
    t->durable = true;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    t->fb.stop_hangs = true;
    op_result d = {0};
    vm_op_submit(t->m, VM_OP_DELETE, "a", NULL, op_result_cb, &d, NULL);
    tv_spin(&t->loop, 20);
    assert_false(d.done);
    assert_int_equal(t->fb.stops, 1);
    vm_manager_shutdown(t->m, NULL, NULL);
    assert_true(tv_run_until(&t->loop, &d.done, 1000));
    assert_int_equal(d.code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(d.msg, "removed at its next start"));
    assert_int_equal(t->fb.live, 0); /* released, not waited for */
    assert_int_equal(state_of(t, "a"), VM_DELETING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_late_event_after_next_boot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_during_operation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confirmation_from_an_older_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grace_ends_while_confirming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_boot_failure_but_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_during_grace_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_during_stuck_delete, setup, teardown),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
