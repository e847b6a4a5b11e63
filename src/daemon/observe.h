/*
 * observe.h - the daemon's observability glue (internal to src/daemon):
 * connects the telemetry module to the rpc server (a span and RED metrics per
 * call) and to the VM manager (phase and VMM-call spans, VM metrics), and
 * serves /metrics, /_/health and the Prometheus port.
 */
#ifndef CHCP_DAEMON_OBSERVE_H
#define CHCP_DAEMON_OBSERVE_H

#include "daemon/daemon.h"
#include "rpc/rpc.h"
#include "vm/vm.h"

typedef struct observe observe;

/* Create the telemetry pipeline from cfg->otel and hook it into `rpc` and
 * `vms`; also starts the Prometheus listener when enabled. */
observe *observe_start(uv_loop_t *loop, const chcp_config *cfg, rpc_server *rpc, vm_manager *vms,
                       chcp_error **err);
/* Serve /metrics, /livez, /readyz, /health and /_/health on the API port
 * (observe_http.c says what each answers); false for other paths. */
bool observe_serve(observe *o, http_request *req, bool stopping);
/* Readiness as /readyz reports it (recovery done, VMM backend usable, state
 * directory healthy, not stopping); `reason` (may be NULL) says why not. */
bool observe_ready(observe *o, bool stopping, char *reason, size_t len);
/* Flush spans and metrics (bounded by deadline_ms) and close the handles;
 * `done` runs afterwards. Unhooks from rpc and vms first. */
void observe_shutdown(observe *o, uint64_t deadline_ms, void (*done)(void *ud), void *ud);
void observe_free(observe *o);

#endif
