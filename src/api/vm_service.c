/*
 * vm_service.c - the cloudhypervisor.v1.VmService handlers.
 *
 * Each mutation handler submits one VM manager operation and answers from its
 * completion with the VM as it is afterwards; GetVmInfo refreshes from the
 * VMM (bounded, see docs/lifecycle.md); ListVms reads the registry directly.
 * Input errors come back synchronously from the manager and are answered at
 * once with the field named.
 */
#include <string.h>

#include "api/api_internal.h"

typedef struct api_call {
    rpc_call *call;
    vm_op *op;
    vm_op_kind kind;
    char vm_id[VM_ID_MAX + 1];
} api_call;

/* Every response with a VmInfo has it as field 1 "vm"; build that shape. */
static void answer_vm(rpc_call *call, vm_op_kind kind, const vm_record *r)
{
    Cloudhypervisor__V1__VmInfo *info = api_vm_info_new(r);
    switch (kind) {
    case VM_OP_CREATE: {
        Cloudhypervisor__V1__CreateVmResponse m = CLOUDHYPERVISOR__V1__CREATE_VM_RESPONSE__INIT;
        m.vm = info;
        rpc_call_succeed(call, &m.base);
        break;
    }
    case VM_OP_BOOT: {
        Cloudhypervisor__V1__BootVmResponse m = CLOUDHYPERVISOR__V1__BOOT_VM_RESPONSE__INIT;
        m.vm = info;
        rpc_call_succeed(call, &m.base);
        break;
    }
    case VM_OP_SHUTDOWN: {
        Cloudhypervisor__V1__ShutdownVmResponse m = CLOUDHYPERVISOR__V1__SHUTDOWN_VM_RESPONSE__INIT;
        m.vm = info;
        rpc_call_succeed(call, &m.base);
        break;
    }
    case VM_OP_PAUSE: {
        Cloudhypervisor__V1__PauseVmResponse m = CLOUDHYPERVISOR__V1__PAUSE_VM_RESPONSE__INIT;
        m.vm = info;
        rpc_call_succeed(call, &m.base);
        break;
    }
    case VM_OP_RESUME: {
        Cloudhypervisor__V1__ResumeVmResponse m = CLOUDHYPERVISOR__V1__RESUME_VM_RESPONSE__INIT;
        m.vm = info;
        rpc_call_succeed(call, &m.base);
        break;
    }
    case VM_OP_REBOOT: {
        Cloudhypervisor__V1__RebootVmResponse m = CLOUDHYPERVISOR__V1__REBOOT_VM_RESPONSE__INIT;
        m.vm = info;
        rpc_call_succeed(call, &m.base);
        break;
    }
    default: {
        Cloudhypervisor__V1__GetVmInfoResponse m = CLOUDHYPERVISOR__V1__GET_VM_INFO_RESPONSE__INIT;
        m.vm = info;
        rpc_call_succeed(call, &m.base);
        break;
    }
    }
    api_vm_info_free(info);
}

static void op_done(void *ud, const chcp_error *err, const vm_record *vm)
{
    api_call *c = ud;
    if (err) {
        rpc_call_fail_error(c->call, err);
    } else if (c->kind == VM_OP_DELETE) {
        Cloudhypervisor__V1__DeleteVmResponse m = CLOUDHYPERVISOR__V1__DELETE_VM_RESPONSE__INIT;
        m.vm_id = c->vm_id;
        rpc_call_succeed(c->call, &m.base);
    } else if (!vm) {
        rpc_call_fail(c->call, CHCP_NOT_FOUND, "the VM was deleted");
    } else {
        answer_vm(c->call, c->kind, vm);
    }
    free(c);
}

static void on_cancel(rpc_call *call, void *ud)
{
    api_call *c = ud;
    vm_op_cancel(c->op);
}

static api_call *call_new(rpc_call *call, vm_op_kind kind, const char *id)
{
    api_call *c = xcalloc(1, sizeof(*c));
    c->call = call;
    c->kind = kind;
    if (id && strlen(id) <= VM_ID_MAX)
        strcpy(c->vm_id, id);
    return c;
}

/* Submitted: watch for cancellation. Refused: answer now. */
static void submitted(api_call *c, vm_op *op, chcp_error *err)
{
    if (!op) {
        rpc_call_fail_error(c->call, err);
        error_free(err);
        free(c);
        return;
    }
    c->op = op;
    rpc_call_on_cancel(c->call, on_cancel, c);
}

static vm_op_params params_of(rpc_call *call)
{
    /* The RPC's span (if telemetry is on) parents the operation's spans. */
    vm_op_params p = {.deadline_ns = rpc_call_deadline_ns(call), .trace_ctx = rpc_call_trace(call)};
    return p;
}

/* The access hook's verdict on a VM (its labels, or those CreateVm asks
 * for); false after answering the call. */
static bool allowed(rpc_call *call, const api_service *svc, const char *id, bool exists,
                    const vm_label *labels, size_t n)
{
    if (!svc->access.check_vm)
        return true;
    chcp_error *err = NULL;
    if (svc->access.check_vm(call, id, exists, labels, n, svc->access.ud, &err) == 0)
        return true;
    rpc_call_fail_error(call, err);
    error_free(err);
    return false;
}

/* An existing VM the caller may not touch is refused; an unknown one goes on
 * to be answered not_found by the manager. */
static bool allowed_vm(rpc_call *call, const api_service *svc, const char *id)
{
    const vm_record *r = vm_manager_find(svc->vms, id);
    return allowed(call, svc, id, r != NULL, r ? r->labels : NULL, r ? r->n_labels : 0);
}

static void submit_simple(rpc_call *call, api_service *svc, vm_op_kind kind, const char *id,
                          const vm_op_params *p)
{
    if (!allowed_vm(call, svc, id))
        return;
    vm_manager *vms = svc->vms;
    api_call *c = call_new(call, kind, id);
    chcp_error *err = NULL;
    vm_op *op = vm_op_submit(vms, kind, id, p, op_done, c, &err);
    submitted(c, op, err);
}

/* ---- handlers ------------------------------------------------------------------ */

static void handle_create(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    const Cloudhypervisor__V1__CreateVmRequest *req = (const void *)msg;
    vm_label labels[VM_MAX_LABELS];
    if (req->n_labels > VM_MAX_LABELS) {
        rpc_call_fail(call, CHCP_INVALID_ARGUMENT, "labels: at most 64 labels");
        return;
    }
    for (size_t i = 0; i < req->n_labels; i++) {
        labels[i].key = req->labels[i]->key;
        labels[i].value = req->labels[i]->value;
    }
    api_service *svc = sd;
    if (!allowed(call, svc, req->vm_id, true, labels, req->n_labels))
        return;
    api_call *c = call_new(call, VM_OP_CREATE, req->vm_id);
    vm_op_params p = params_of(call);
    chcp_error *err = NULL;
    vm_op *op = vm_op_create(svc->vms, req->vm_id, req->config, labels, req->n_labels, &p, op_done,
                             c, &err);
    submitted(c, op, err);
}

static void handle_delete(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    const Cloudhypervisor__V1__DeleteVmRequest *req = (const void *)msg;
    vm_op_params p = params_of(call);
    submit_simple(call, sd, VM_OP_DELETE, req->vm_id, &p);
}

static void handle_boot(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    const Cloudhypervisor__V1__BootVmRequest *req = (const void *)msg;
    vm_op_params p = params_of(call);
    submit_simple(call, sd, VM_OP_BOOT, req->vm_id, &p);
}

static void handle_shutdown(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    const Cloudhypervisor__V1__ShutdownVmRequest *req = (const void *)msg;
    vm_op_params p = params_of(call);
    p.force = req->force;
    if (req->graceful_timeout) {
        chcp_error *err = NULL;
        if (api_duration_ms(req->graceful_timeout, "graceful_timeout", &p.graceful_ms, &err) < 0) {
            rpc_call_fail_error(call, err);
            error_free(err);
            return;
        }
        p.graceful_ms_set = true;
    }
    submit_simple(call, sd, VM_OP_SHUTDOWN, req->vm_id, &p);
}

static void handle_pause(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    const Cloudhypervisor__V1__PauseVmRequest *req = (const void *)msg;
    vm_op_params p = params_of(call);
    submit_simple(call, sd, VM_OP_PAUSE, req->vm_id, &p);
}

static void handle_resume(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    const Cloudhypervisor__V1__ResumeVmRequest *req = (const void *)msg;
    vm_op_params p = params_of(call);
    submit_simple(call, sd, VM_OP_RESUME, req->vm_id, &p);
}

static void handle_reboot(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    const Cloudhypervisor__V1__RebootVmRequest *req = (const void *)msg;
    vm_op_params p = params_of(call);
    submit_simple(call, sd, VM_OP_REBOOT, req->vm_id, &p);
}

static void handle_get(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    const Cloudhypervisor__V1__GetVmInfoRequest *req = (const void *)msg;
    vm_op_params p = params_of(call);
    submit_simple(call, sd, VM_OP_INFO, req->vm_id, &p);
}

static int list_filter(const Cloudhypervisor__V1__ListVmsRequest *req, vm_state *states,
                       vm_label *labels, vm_list_filter *f, chcp_error **err)
{
    if (req->n_states > 16)
        return error_set(err, CHCP_INVALID_ARGUMENT, "states: at most 16 entries");
    for (size_t i = 0; i < req->n_states; i++) {
        int s = (int)req->states[i];
        if (s < VM_CREATING || s > VM_CRASHED)
            return error_set(err, CHCP_INVALID_ARGUMENT, "states[%zu]: unknown state %d", i, s);
        states[i] = (vm_state)s;
    }
    if (req->n_labels > VM_MAX_LABELS)
        return error_set(err, CHCP_INVALID_ARGUMENT, "labels: at most %d entries", VM_MAX_LABELS);
    for (size_t i = 0; i < req->n_labels; i++) {
        labels[i].key = req->labels[i]->key;
        labels[i].value = req->labels[i]->value;
    }
    if (vm_validate_labels(labels, req->n_labels, "labels", err) < 0)
        return -1;
    f->states = states;
    f->n_states = req->n_states;
    f->labels = labels;
    f->n_labels = req->n_labels;
    return 0;
}

/* vm_manager_list, leaving out what the caller may not see: pages are
 * filled from further on, and *more says whether a visible VM follows. */
static size_t list_visible(const api_service *svc, rpc_call *call, const vm_list_filter *f,
                           const char *after, size_t limit, const vm_record **out, bool *more)
{
    if (!svc->access.visible)
        return vm_manager_list(svc->vms, f, after, limit, out, more);
    char cursor[VM_ID_MAX + 1];
    snprintf(cursor, sizeof(cursor), "%s", after ? after : "");
    const vm_record **batch = xcalloc(limit, sizeof(*batch));
    size_t n = 0;
    bool batch_more = true;
    *more = false;
    while (batch_more && !*more) {
        size_t got = vm_manager_list(svc->vms, f, cursor, limit, batch, &batch_more);
        for (size_t i = 0; i < got && !*more; i++) {
            if (!svc->access.visible(call, batch[i]->labels, batch[i]->n_labels, svc->access.ud))
                continue;
            if (n == limit)
                *more = true;
            else
                out[n++] = batch[i];
        }
        if (got == 0)
            break;
        snprintf(cursor, sizeof(cursor), "%s", batch[got - 1]->id);
    }
    free(batch);
    return n;
}

static void handle_list(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    api_service *svc = sd;
    const Cloudhypervisor__V1__ListVmsRequest *req = (const void *)msg;
    vm_state states[16];
    vm_label labels[VM_MAX_LABELS];
    vm_list_filter f = {0};
    char after[VM_ID_MAX + 1] = "";
    chcp_error *err = NULL;
    /* Durable state: like every other call, nothing is listed before the
     * stored VMs are re-adopted (docs/durability.md). */
    vm_recovery_status rs;
    vm_manager_recovery_status(svc->vms, &rs);
    if (rs.running) {
        error_set(&err, CHCP_UNAVAILABLE, "recovering VMs after a restart (%zu of %zu done)",
                  rs.settled, rs.total);
        rpc_call_fail_error(call, err);
        error_free(err);
        return;
    }
    if (list_filter(req, states, labels, &f, &err) < 0 ||
        (req->page_token[0] && api_page_token_decode(req->page_token, after, &err) < 0)) {
        rpc_call_fail_error(call, err);
        error_free(err);
        return;
    }
    size_t limit = req->page_size ? req->page_size : API_LIST_DEFAULT_PAGE;
    if (limit > API_LIST_MAX_PAGE)
        limit = API_LIST_MAX_PAGE;
    const vm_record **recs = xcalloc(limit, sizeof(*recs));
    bool more = false;
    size_t n = list_visible(svc, call, &f, after, limit, recs, &more);
    Cloudhypervisor__V1__ListVmsResponse resp = CLOUDHYPERVISOR__V1__LIST_VMS_RESPONSE__INIT;
    resp.vms = xcalloc(n ? n : 1, sizeof(*resp.vms));
    for (size_t i = 0; i < n; i++)
        resp.vms[i] = api_vm_info_new(recs[i]);
    resp.n_vms = n;
    char *token = more && n ? api_page_token_encode(recs[n - 1]->id) : NULL;
    if (token)
        resp.next_page_token = token;
    rpc_call_succeed(call, &resp.base);
    for (size_t i = 0; i < n; i++)
        api_vm_info_free(resp.vms[i]);
    free(resp.vms);
    free(token);
    free(recs);
}

int api_register(rpc_server *rpc, api_service *svc, chcp_error **err)
{
    static const rpc_method_impl impls[] = {
        {"CreateVm", handle_create},     {"DeleteVm", handle_delete}, {"BootVm", handle_boot},
        {"ShutdownVm", handle_shutdown}, {"PauseVm", handle_pause},   {"ResumeVm", handle_resume},
        {"RebootVm", handle_reboot},     {"GetVmInfo", handle_get},   {"ListVms", handle_list},
    };
    return rpc_server_register(rpc, &cloudhypervisor__v1__vm_service__descriptor, impls,
                               ARRAY_SIZE(impls), svc, err);
}
