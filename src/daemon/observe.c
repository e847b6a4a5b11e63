/*
 * observe.c - observability glue: telemetry hooked into the rpc server and
 * the VM manager.
 *
 * The modules being observed know nothing about OpenTelemetry: the rpc server
 * and the VM manager expose observer hooks, and this file turns those into
 * spans (a SERVER span per RPC, INTERNAL spans per VM operation, CLIENT spans
 * per Cloud Hypervisor API call) and metrics (RED metrics per method, VM
 * states and transitions, operation and VMM call durations, VMM exits).
 * Metrics are always kept (they are cheap and /metrics works with telemetry
 * off); spans only exist when telemetry is enabled. The endpoints live in
 * observe_http.c, per-VM metrics in observe_vm.c.
 *
 * Span status follows the RPC semantic conventions: ERROR only for codes that
 * are the server's fault; the INTERNAL operation span under it uses the same
 * rule, so the two never disagree. Which traces are exported whatever the
 * sampler said is a separate matter (UNKEY_CHCP_OTEL_CAPTURE_CODES: by
 * default every call that did not end OK).
 */
#include <stdio.h>
#include <string.h>

#include "daemon/observe_internal.h"

/* For log lines: the process has one daemon, so one observer. */
static observe *log_observer;

const char *const observe_state_names[10] = {"CREATING", "CREATED",       "BOOTING",  "RUNNING",
                                             "PAUSED",   "SHUTTING_DOWN", "SHUTDOWN", "DELETING",
                                             "FAILED",   "CRASHED"};

/* ---- RPC: one server span and RED metrics per call ------------------------ */

#define CAPTURE_SERVER_CODES                                                                       \
    ((1u << CHCP_UNKNOWN) | (1u << CHCP_DEADLINE_EXCEEDED) | (1u << CHCP_UNIMPLEMENTED) |          \
     (1u << CHCP_INTERNAL) | (1u << CHCP_UNAVAILABLE) | (1u << CHCP_DATA_LOSS))

/* Codes that are the server's fault mark the span as an error; codes that
 * are the client's (invalid_argument, not_found, ...) do not (semconv, and
 * what otelconnect does). */
static bool server_fault(chcp_code code)
{
    return (unsigned)code < 32 && (CAPTURE_SERVER_CODES & (1u << code));
}

/* A port number ("5555"): 1..65535, or 0 for anything else. */
static int parse_port(const char *p, size_t n)
{
    int v = 0;
    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    return v <= 65535 ? v : 0;
}

/*
 * network.peer.* from the transport's peer ("127.0.0.1:5555", "[::1]:5555",
 * "unix"): the address without its port, the port on its own.
 */
static void add_peer_attributes(tm_span *span, const char *peer)
{
    /* network.transport and network.type are in the route's block. */
    if (!peer || strcmp(peer, "unix") == 0)
        return;
    const char *colon = strrchr(peer, ':');
    if (!colon)
        return;
    bool v6 = peer[0] == '[';
    const char *addr = peer + v6;
    size_t len = (size_t)(colon - addr) - (v6 ? 1 : 0);
    tm_span_add_str(span, "network.peer.address", addr, len);
    int port = parse_port(colon + 1, strlen(colon + 1));
    if (port)
        tm_span_add_int(span, "network.peer.port", port);
}

/* server.* from the Host header (or HTTP/2 :authority): the name the client
 * addressed, and its port when it named one. */
static void add_server_attributes(tm_span *span, const char *host, size_t n)
{
    if (!host || n == 0)
        return;
    const char *end = host + n, *name = host, *port = NULL;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', n);
        if (!close)
            return;
        name = host + 1;
        port = close + 1 < end && close[1] == ':' ? close + 2 : NULL;
        end = close;
    } else {
        const char *colon = memrchr(host, ':', n);
        if (colon) {
            port = colon + 1;
            end = colon;
        }
    }
    if (end == name)
        return;
    tm_span_add_str(span, "server.address", name, (size_t)(end - name));
    int p = port ? parse_port(port, (size_t)(host + n - port)) : 0;
    if (p)
        tm_span_add_int(span, "server.port", p);
}

/* The headers the server span wants, in one pass (names are lower case). */
typedef struct span_headers {
    const http_header *traceparent, *tracestate, *host;
} span_headers;

static void find_headers(const http_request *req, span_headers *h)
{
    memset(h, 0, sizeof(*h));
    for (size_t i = 0; i < req->n_headers; i++) {
        const http_header *x = &req->headers[i];
        if (x->name_len == 4 && memcmp(x->name, "host", 4) == 0 && !h->host)
            h->host = x;
        else if (x->name_len == 11 && memcmp(x->name, "traceparent", 11) == 0 && !h->traceparent)
            h->traceparent = x;
        else if (x->name_len == 10 && memcmp(x->name, "tracestate", 10) == 0 && !h->tracestate)
            h->tracestate = x;
    }
}

static void rpc_started(rpc_call *call, void *ud)
{
    observe *o = ud;
    observe_route *route = observe_route_of(o, call);
    tm_series_add(route->active, 1);
    if (!o->tracer)
        return;
    const http_request *req = rpc_call_http(call);
    span_headers h = {0};
    if (req)
        find_headers(req, &h);
    tm_span_context parent;
    bool has_parent =
        h.traceparent && tm_traceparent_parse(h.traceparent->value,
                                              h.tracestate ? h.tracestate->value : NULL, &parent);
    /* The span starts when the request arrived (headers complete). */
    uint64_t start = tm_unix_ns_from_mono(req ? req->received_ns : time_mono_ns());
    tm_span *span = tm_span_start_at(o->tracer, route->span_name, TM_SPAN_SERVER,
                                     has_parent ? &parent : NULL, start);
    tm_span_add_block(span, route->attrs); /* rpc.*, network.transport/type/protocol.* */
    if (req) {
        if (h.host)
            add_server_attributes(span, h.host->value, h.host->value_len);
        add_peer_attributes(span, req->peer);
    }
    rpc_call_set_trace(call, span);
}

static void rpc_finished(rpc_call *call, chcp_code code, void *ud)
{
    observe *o = ud;
    observe_route *route = observe_route_of(o, call);
    tm_series_add(route->active, -1);
    const http_request *req = rpc_call_http(call);
    uint64_t now = time_mono_ns();
    observe_route_count(o, route, call, code, req ? (double)(now - req->received_ns) / 1e9 : -1);

    tm_span *span = rpc_call_trace(call);
    if (!span)
        return;
    rpc_call_set_trace(call, NULL);
    /* Who called, as the access guard named them (docs/security.md). */
    const char *who = rpc_call_principal(call);
    if (who)
        tm_span_add_str(span, "enduser.id", who, strlen(who));
    if (route->proto != RPC_PROTOCOL_CONNECT)
        tm_span_add_int(span, "rpc.grpc.status_code", (int64_t)code);
    else if (code != CHCP_OK)
        tm_span_add_static_str(span, "rpc.connect_rpc.error_code", code_name(code));
    if (code != CHCP_OK) {
        tm_span_add_static_str(span, "error.type", code_name(code));
        if (server_fault(code))
            tm_span_set_status(span, TM_STATUS_ERROR, code_name(code));
        if (o->capture_codes & (1u << code))
            tm_span_capture(span);
    }
    tm_span_end_at(span, tm_unix_ns_from_mono(now));
}

/* ---- VM manager: operation and VMM call spans, VM metrics ----------------- */

static void *vm_op_started(void *ud, void *trace_ctx, const char *vm_id, vm_op_kind kind)
{
    observe *o = ud;
    tm_span *span = tm_span_start_child(trace_ctx, observe_op_name(o, kind), TM_SPAN_INTERNAL);
    if (vm_id && vm_id[0])
        tm_span_set_str(span, "chcp.vm_id", vm_id);
    return span;
}

static void vm_op_ended(void *ud, void *token, vm_op_kind kind, double seconds,
                        const chcp_error *err)
{
    observe *o = ud;
    const char *labels[] = {vm_op_kind_name(kind), err ? "error" : "ok", NULL};
    tm_observe(o->vm_op_duration, labels, seconds);
    tm_span *span = token;
    if (err) {
        tm_span_set_static_str(span, "error.type", code_name(err->code));
        /* The operation is what the RPC did: the same rule as its span. */
        if (server_fault(err->code))
            tm_span_set_status(span, TM_STATUS_ERROR, err->message);
    }
    tm_span_end(span);
}

static void *vmm_call_started(void *ud, void *op_token, const char *vm_id, const char *what)
{
    observe *o = ud;
    if (!op_token)
        return NULL; /* no operation, no trace (the metric is still kept) */
    const observe_call *c = observe_call_of(o, what);
    tm_span *span =
        tm_span_start_child(op_token, c->span_name, c->spawn ? TM_SPAN_INTERNAL : TM_SPAN_CLIENT);
    tm_span_set_str(span, "chcp.vm_id", vm_id);
    tm_span_add_block(span, c->attrs); /* http.request.method, url.path, ... */
    return span;
}

static void vmm_call_ended(void *ud, void *token, const char *what, double seconds, int http_status,
                           const chcp_error *err)
{
    observe *o = ud;
    bool spawn = strcmp(what, "spawn") == 0;
    const char *outcome = !err                                  ? "ok"
                          : err->code == CHCP_DEADLINE_EXCEEDED ? "timeout"
                          : http_status && !spawn               ? "error"
                                                                : "unavailable";
    const char *labels[] = {what, outcome, NULL};
    tm_observe(o->vmm_call_duration, labels, seconds);
    tm_span *span = token;
    /* Starting a VMM is not an HTTP call: its ping's status is not its own. */
    if (http_status && !spawn)
        tm_span_set_int(span, "http.response.status_code", http_status);
    if (err) {
        tm_span_set_static_str(span, "error.type", code_name(err->code));
        tm_span_set_status(span, TM_STATUS_ERROR, err->message);
    }
    tm_span_end(span);
}

static void vm_state_changed(void *ud, const vm_record *vm, vm_state from, vm_state to)
{
    observe *o = ud;
    const char *labels[] = {vm_state_name(from), vm_state_name(to), NULL};
    tm_add(o->vm_transitions, labels, 1);
}

static void vmm_event(void *ud, void *op_token, const vm_record *vm, const char *source,
                      const char *event)
{
    (void)ud;
    const char *kv[] = {
        "chcp.vmm.event.source", source, "chcp.vmm.event.name", event, "chcp.vm_id", vm->id, NULL};
    tm_span_add_event(op_token, "vmm.event", kv);
}

static void vmm_exited(void *ud, const vm_record *vm, bool expected)
{
    observe *o = ud;
    const char *reason = expected             ? "stopped"
                         : vm->exit_signal    ? "killed"
                         : vm->exit_code == 0 ? "exited"
                                              : "failed";
    const char *labels[] = {reason, NULL};
    tm_add(o->vmm_exits, labels, 1);
}

/* Gauges computed when scraped or pushed. */
static void collect_vms(tm_registry *r, void *ud)
{
    observe *o = ud;
    for (size_t i = 0; i < ARRAY_SIZE(observe_state_names); i++) {
        const char *labels[] = {observe_state_names[i], NULL};
        tm_set(o->vms_by_state, labels,
               o->vms ? (double)vm_manager_count_state(o->vms, (vm_state)(i + 1)) : 0);
    }
}

/* Log lines about a VM carry the trace of the operation it is running. */
static bool log_context(const char *vm_id, char trace_id[33], char span_id[17])
{
    if (!log_observer || !log_observer->vms || !vm_id)
        return false;
    const tm_span_context *ctx = tm_span_context_get(vm_manager_op_token(log_observer->vms, vm_id));
    if (!ctx)
        return false;
    tm_hex(ctx->trace_id, 16, trace_id);
    tm_hex(ctx->span_id, 8, span_id);
    return true;
}

static void register_metrics(observe *o)
{
    tm_registry *r = o->reg;
    const chcp_otel_config *oc = &o->cfg->otel;
    const double *bounds = oc->n_duration_buckets ? oc->duration_buckets : NULL;
    size_t n_bounds = oc->n_duration_buckets;
    const char *rpc_labels[] = {"rpc.system", "rpc.service", "rpc.method", "rpc.code", NULL};
    const char *active_labels[] = {"rpc.system", "rpc.service", "rpc.method", NULL};
    o->rpc_requests = tm_metric_new(r, TM_COUNTER, "rpc.server.requests", "{request}",
                                    "RPCs served, by method and code.", rpc_labels, NULL, 0);
    o->rpc_duration =
        tm_metric_new(r, TM_HISTOGRAM, "rpc.server.request.duration", "s",
                      "Time from a request's arrival to its answer.", rpc_labels, bounds, n_bounds);
    o->rpc_active = tm_metric_new(r, TM_UPDOWN, "rpc.server.active_requests", "{request}",
                                  "RPCs in progress.", active_labels, NULL, 0);
    const char *state[] = {"state", NULL};
    const char *from_to[] = {"from", "to", NULL};
    const char *op[] = {"operation", "outcome", NULL};
    const char *call[] = {"endpoint", "outcome", NULL};
    const char *reason[] = {"reason", NULL};
    o->vms_by_state =
        tm_metric_new(r, TM_GAUGE, "chcp.vms", "{vm}", "VMs by state.", state, NULL, 0);
    o->vm_transitions = tm_metric_new(r, TM_COUNTER, "chcp.vm.state_transitions", "{transition}",
                                      "VM state changes.", from_to, NULL, 0);
    o->vm_op_duration = tm_metric_new(r, TM_HISTOGRAM, "chcp.vm.operation.duration", "s",
                                      "VM operations (create, boot, shutdown, ...), queueing "
                                      "included.",
                                      op, bounds, n_bounds);
    o->vmm_call_duration =
        tm_metric_new(r, TM_HISTOGRAM, "chcp.vmm.api_call.duration", "s",
                      "Cloud Hypervisor API calls (and VMM spawns).", call, bounds, n_bounds);
    o->vmm_exits = tm_metric_new(r, TM_COUNTER, "chcp.vmm.exits", "{exit}",
                                 "VMM processes that ended, by reason.", reason, NULL, 0);
    tm_registry_on_collect(r, collect_vms, o);
    tm_register_process_metrics(r);
}

/* ---- life cycle ----------------------------------------------------------- */

/* chcp_otel_kv[] -> NULL-terminated key/value pointers (borrowed). */
static const char **kv_pairs(const chcp_otel_kv *kv, size_t n, const char **out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = kv[i].key;
        out[2 * i + 1] = kv[i].value;
    }
    out[2 * n] = NULL;
    return out;
}

static void target_from(tm_export_target *t, const chcp_otel_signal *s, const char **headers)
{
    t->url = s->url;
    t->headers = kv_pairs(s->headers, s->n_headers, headers);
    t->gzip = s->gzip;
    t->timeout_ms = s->timeout_ms;
}

static tm_telemetry *start_telemetry(uv_loop_t *loop, const chcp_otel_config *oc)
{
    /* The pipeline copies what it keeps: these arrays only live for the call. */
    const char *trace_headers[2 * oc->traces.n_headers + 1];
    const char *metric_headers[2 * oc->metrics.n_headers + 1];
    const char *resource[2 * oc->n_resource + 1];
    tm_config tc = {.enabled = oc->enabled,
                    .sampling_rate = oc->sampling_rate,
                    /* Spans ending in ERROR (a failed VMM call under an RPC
                     * that still answered OK) capture their trace when every
                     * server-side code is captured (all, server). */
                    .capture_errors =
                        (oc->capture_codes & CAPTURE_SERVER_CODES) == CAPTURE_SERVER_CODES,
                    .service_name = oc->service_name,
                    .service_version = oc->service_version,
                    .resource = kv_pairs(oc->resource, oc->n_resource, resource),
                    .batch_delay_ms = oc->batch_delay_ms,
                    .metric_interval_ms = oc->metric_interval_ms,
                    .export_timeout_ms = oc->export_timeout_ms,
                    .max_queue = oc->max_queue,
                    .max_batch = oc->max_batch};
    target_from(&tc.traces, &oc->traces, trace_headers);
    target_from(&tc.metrics, &oc->metrics, metric_headers);
    return tm_telemetry_new(loop, &tc);
}

observe *observe_start(uv_loop_t *loop, const chcp_config *cfg, rpc_server *rpc, vm_manager *vms,
                       chcp_error **err)
{
    observe *o = xcalloc(1, sizeof(*o));
    o->loop = loop;
    o->cfg = cfg;
    o->rpc = rpc;
    o->vms = vms;
    o->started_ns = time_mono_ns();
    const chcp_otel_config *oc = &cfg->otel;
    o->capture_codes = oc->capture_codes;
    observe_caches_init(o);
    o->tm = start_telemetry(loop, oc);
    o->tracer = tm_telemetry_tracer(o->tm);
    o->reg = tm_telemetry_registry(o->tm);
    register_metrics(o);

    rpc_observer ro = {.on_start = rpc_started, .on_finish = rpc_finished, .ud = o};
    rpc_server_set_observer(rpc, &ro);
    if (vms) {
        vm_observer vo = {.op_start = vm_op_started,
                          .op_end = vm_op_ended,
                          .call_start = vmm_call_started,
                          .call_end = vmm_call_ended,
                          .state = vm_state_changed,
                          .event = vmm_event,
                          .vmm_exit = vmm_exited,
                          .ud = o};
        vm_manager_set_observer(vms, &vo);
        if (oc->vm_metrics)
            o->vm_metrics = observe_vm_metrics_start(o);
    }
    log_observer = o;
    log_set_context_fn(log_context);

    if (oc->prometheus_enabled && observe_prometheus_listen(o, err) < 0)
        return o; /* the caller frees through observe_shutdown/observe_free */
    if (oc->enabled)
        log_info("telemetry on: OTLP/HTTP spans to %s, metrics to %s, sampling rate %g",
                 oc->traces.url, oc->metrics.url, oc->sampling_rate);
    observe_probe_vmm_version(o);
    return o;
}

void observe_piece_done(void *ud)
{
    observe *o = ud;
    if (--o->pending == 0 && o->shutdown_done)
        o->shutdown_done(o->shutdown_ud);
}

void observe_shutdown(observe *o, uint64_t deadline_ms, void (*done)(void *ud), void *ud)
{
    rpc_server_set_observer(o->rpc, NULL);
    if (o->vms)
        vm_manager_set_observer(o->vms, NULL);
    log_set_context_fn(NULL);
    log_observer = NULL;
    o->shutdown_done = done;
    o->shutdown_ud = ud;
    o->pending = 1; /* this function's own guard */
    observe_probe_stop(o);
    if (o->vm_metrics)
        observe_vm_metrics_stop(o->vm_metrics);
    if (o->prom) {
        o->pending++;
        transport_close(o->prom, observe_piece_done, o);
        o->prom = NULL;
    }
    o->pending++;
    tm_telemetry_shutdown(o->tm, deadline_ms, observe_piece_done, o);
    observe_piece_done(o);
}

void observe_free(observe *o)
{
    if (!o)
        return;
    observe_vm_metrics_free(o->vm_metrics);
    buf_free(&o->probe_buf);
    tm_telemetry_free(o->tm); /* spans borrow the caches' names and blocks: first */
    observe_caches_free(o);
    free(o);
}
