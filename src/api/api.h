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

/* Register VmService on `rpc`, served by `vms` (which must outlive the
 * server's calls). */
int api_register(rpc_server *rpc, vm_manager *vms, chcp_error **err);

#endif
