/*
 * observed.c - what the manager shows its observer (the telemetry glue in
 * src/daemon/observe.c): operation names, per-state counts, and the watch
 * wrapped around every VMM call so each one is seen with its duration and
 * outcome. The manager itself knows nothing about spans or metrics.
 */
#include <string.h>

#include "vm/vm_internal.h"

void vm_manager_set_observer(vm_manager *m, const vm_observer *obs)
{
    if (obs)
        m->obs = *obs;
    else
        memset(&m->obs, 0, sizeof(m->obs));
}

const char *vm_op_kind_name(vm_op_kind kind)
{
    static const char *const names[] = {
        [VM_OP_CREATE] = "create", [VM_OP_BOOT] = "boot",     [VM_OP_SHUTDOWN] = "shutdown",
        [VM_OP_PAUSE] = "pause",   [VM_OP_RESUME] = "resume", [VM_OP_REBOOT] = "reboot",
        [VM_OP_DELETE] = "delete", [VM_OP_INFO] = "info",     [VM_OP_CREATE_JOIN] = "create",
    };
    return (unsigned)kind < ARRAY_SIZE(names) && names[kind] ? names[kind] : "unknown";
}

size_t vm_manager_count_state(const vm_manager *m, vm_state s)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_vms; i++)
        n += !m->vms[i]->removed && m->vms[i]->rec.state == s;
    return n;
}

void *vm_current_token(const vm_entry *e)
{
    return e && e->current ? e->current->obs_token : NULL;
}

struct vm_call_watch {
    vm_manager *m;
    void *token;
    const char *what;
    uint64_t started_ns;
    vmb_done_fn fn;
    void *ud;
};

vm_call_watch *vm_call_watch_start(vm_entry *e, void *op_token, const char *what, vmb_done_fn fn,
                                   void *ud)
{
    vm_call_watch *w = xcalloc(1, sizeof(*w));
    w->m = e->m;
    w->what = what;
    w->fn = fn;
    w->ud = ud;
    w->started_ns = time_mono_ns();
    if (e->m->obs.call_start)
        w->token = e->m->obs.call_start(e->m->obs.ud, op_token, e->rec.id, what);
    return w;
}

void vm_call_watch_abandon(vm_call_watch *w, const chcp_error *err)
{
    if (w->m->obs.call_end)
        w->m->obs.call_end(w->m->obs.ud, w->token, w->what, 0, 0, err);
    free(w);
}

void vm_call_watch_done(void *watch, chcp_error *err, const vmb_reply *reply)
{
    vm_call_watch *w = watch;
    if (w->m->obs.call_end)
        w->m->obs.call_end(w->m->obs.ud, w->token, w->what,
                           (double)(time_mono_ns() - w->started_ns) / 1e9,
                           reply ? reply->status : 0, err);
    vmb_done_fn fn = w->fn;
    void *ud = w->ud;
    free(w);
    fn(ud, err, reply);
}
