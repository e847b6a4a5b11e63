/*
 * api.h - cloudhypervisor.v1.VmService: the RPC handlers that turn decoded
 * requests into VM manager operations and VM records into responses.
 *
 * Handlers never block: each submits an operation to the VM manager and
 * finishes its rpc_call from the operation's completion. A client deadline
 * bounds how long an operation may wait behind others on the same VM; a
 * cancelled call (deadline passed, client gone) withdraws a waiting
 * operation, while one already talking to the VMM runs to its end.
 */
#ifndef CHCP_API_H
#define CHCP_API_H

#include "core/core.h"
#include "rpc/rpc.h"
#include "vm/vm.h"

/*
 * Per-VM access control, optional (the daemon wires it to the policy). Before
 * a call touches a VM the handler asks `check_vm` with the VM's labels (for
 * CreateVm, the labels asked for; `exists` false: no such VM, the manager will
 * answer not_found); -1 with an error (permission_denied) is the call's
 * answer. ListVms leaves out the VMs it refuses. The check and
 * the operation's submission happen in one loop callback and operations on
 * one VM run in arrival order, so the VM checked is the VM operated on.
 */
typedef struct api_access {
    int (*check_vm)(rpc_call *call, const char *vm_id, bool exists, const vm_label *labels,
                    size_t n_labels, void *ud, chcp_error **err);
    /* ListVms: may the call see a VM with these labels (quietly: no error,
     * nothing logged)? NULL: every VM. */
    bool (*visible)(rpc_call *call, const vm_label *labels, size_t n_labels, void *ud);
    void *ud;
} api_access;

typedef struct api_service {
    vm_manager *vms;
    api_access access; /* check_vm NULL: every caller may touch every VM */
} api_service;

/* Register VmService on `rpc`, served by svc->vms. `svc` (and the manager)
 * must outlive the server's calls; the caller owns it. */
int api_register(rpc_server *rpc, api_service *svc, chcp_error **err);

#endif
