/*
 * observe_internal.h - what the observability glue's files share
 * (observe.c: hooks and life cycle; observe_http.c: /metrics and the health
 * endpoints; observe_vm.c: per-VM metrics). Not an interface for anyone else.
 */
#ifndef CHCP_DAEMON_OBSERVE_INTERNAL_H
#define CHCP_DAEMON_OBSERVE_INTERNAL_H

#include "daemon/observe.h"
#include "telemetry/telemetry.h"

typedef struct observe_vm_metrics observe_vm_metrics;
typedef struct observe_caches observe_caches;

/* What one RPC route (method x protocol x HTTP version) needs per call. */
typedef struct observe_route {
    const char *method; /* the descriptor's name: the key, by address */
    rpc_protocol proto;
    int http_major;
    char peer;          /* '4' IPv4, '6' IPv6, 'u' Unix socket (network.* in the block) */
    const char *system; /* rpc.system */
    char *span_name;
    tm_attr_block *attrs; /* rpc.*, network.protocol.* */
    tm_series *active;
    tm_series *requests[CHCP_UNAUTHENTICATED + 1]; /* per code, made on first use */
    tm_series *duration[CHCP_UNAUTHENTICATED + 1];
} observe_route;

/* What one kind of VMM call needs: its span name and constant attributes. */
typedef struct observe_call {
    const char *what;
    bool spawn;
    const char *span_name;
    tm_attr_block *attrs; /* NULL for spawn */
} observe_call;

struct observe {
    uv_loop_t *loop;
    const chcp_config *cfg;
    rpc_server *rpc;
    vm_manager *vms;
    tm_telemetry *tm;
    tm_tracer *tracer;
    tm_registry *reg;
    uint32_t capture_codes; /* bit per chcp_code: capture the trace */
    tm_metric *rpc_requests, *rpc_duration, *rpc_active;
    tm_metric *vms_by_state, *vm_transitions, *vm_op_duration, *vmm_call_duration, *vmm_exits;
    observe_vm_metrics *vm_metrics; /* NULL unless UNKEY_CHCP_OTEL_VM_METRICS */
    observe_caches *caches;
    transport *prom;
    uint64_t started_ns;

    /* `cloud-hypervisor --version`, probed once at start. */
    uv_process_t probe;
    uv_pipe_t probe_out;
    chcp_buf probe_buf;
    char vmm_version[128];
    int probe_handles;

    void (*shutdown_done)(void *ud);
    void *shutdown_ud;
    int pending; /* things shutdown waits for */
};

extern const char *const observe_state_names[10]; /* VM states in numeric order */

/* A shutdown piece finished (observe.c counts them down). */
void observe_piece_done(void *ud);

/* observe_cache.c */
void observe_caches_init(observe *o);
void observe_caches_free(observe *o);
observe_route *observe_route_of(observe *o, rpc_call *call);
/* Count a finished call (seconds < 0: its duration is unknown). */
void observe_route_count(observe *o, observe_route *r, rpc_call *call, chcp_code code,
                         double seconds);
const observe_call *observe_call_of(observe *o, const char *what);
const char *observe_op_name(observe *o, vm_op_kind kind);

/* observe_http.c */
int observe_prometheus_listen(observe *o, chcp_error **err);
void observe_probe_vmm_version(observe *o);
void observe_probe_stop(observe *o); /* adds to o->pending while it runs */

/* observe_vm.c */
observe_vm_metrics *observe_vm_metrics_start(observe *o);
/* Stop polling; adds to o->pending until its handles are closed. */
void observe_vm_metrics_stop(observe_vm_metrics *vm);
void observe_vm_metrics_free(observe_vm_metrics *vm);

#endif
