/*
 * observe.c - observability glue: telemetry hooked into the rpc server and
 * the VM manager, plus the /metrics and /_/health endpoints.
 *
 * The modules being observed know nothing about OpenTelemetry: the rpc server
 * and the VM manager expose observer hooks, and this file turns those into
 * spans (a SERVER span per RPC, INTERNAL spans per VM operation, CLIENT spans
 * per Cloud Hypervisor API call) and metrics (RED metrics per method, VM
 * states and transitions, operation and VMM call durations, VMM exits).
 * Metrics are always kept (they are cheap and /metrics works with telemetry
 * off); spans only exist when telemetry is enabled.
 */
#include "daemon/observe.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "telemetry/telemetry.h"

struct observe {
    uv_loop_t *loop;
    const chcp_config *cfg;
    rpc_server *rpc;
    vm_manager *vms;
    tm_telemetry *tm;
    tm_tracer *tracer;
    tm_registry *reg;
    tm_metric *rpc_requests, *rpc_duration, *rpc_active;
    tm_metric *vms_by_state, *vm_transitions, *vm_op_duration, *vmm_call_duration, *vmm_exits;
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

/* For log lines: the process has one daemon, so one observer. */
static observe *log_observer;

static const char *const state_names[] = {"CREATING", "CREATED",       "BOOTING",  "RUNNING",
                                          "PAUSED",   "SHUTTING_DOWN", "SHUTDOWN", "DELETING",
                                          "FAILED",   "CRASHED"};

/* ---- RPC: one server span and RED metrics per call ------------------------ */

static const char *rpc_system(rpc_protocol p)
{
    return p == RPC_PROTOCOL_GRPC       ? "grpc"
           : p == RPC_PROTOCOL_GRPC_WEB ? "grpc_web"
                                        : "connect_rpc";
}

/* Codes that are the server's fault mark the span as an error; codes that
 * are the client's (invalid_argument, not_found, ...) do not (semconv, and
 * what otelconnect does). */
static bool server_fault(chcp_code code)
{
    return code == CHCP_UNKNOWN || code == CHCP_DEADLINE_EXCEEDED || code == CHCP_UNIMPLEMENTED ||
           code == CHCP_INTERNAL || code == CHCP_UNAVAILABLE || code == CHCP_DATA_LOSS;
}

static void rpc_started(rpc_call *call, void *ud)
{
    observe *o = ud;
    const char *service = rpc_call_service(call), *method = rpc_call_method(call);
    const char *labels[] = {service, method, NULL};
    tm_add(o->rpc_active, labels, 1);
    if (!o->tracer)
        return;
    const http_request *req = rpc_call_http(call);
    tm_span_context parent;
    bool has_parent = req && tm_traceparent_parse(http_request_header(req, "traceparent"),
                                                  http_request_header(req, "tracestate"), &parent);
    char name[256];
    snprintf(name, sizeof(name), "%s/%s", service, method);
    tm_span *span = tm_span_start(o->tracer, name, TM_SPAN_SERVER, has_parent ? &parent : NULL);
    /* Literals and the service descriptor's names live as long as the span. */
    tm_span_set_static_str(span, "rpc.system", rpc_system(rpc_call_protocol(call)));
    tm_span_set_static_str(span, "rpc.service", service);
    tm_span_set_static_str(span, "rpc.method", method);
    if (req) {
        tm_span_set_static_str(span, "network.protocol.name", "http");
        tm_span_set_static_str(span, "network.protocol.version",
                               req->http_major == 2 ? "2" : "1.1");
        if (req->peer)
            tm_span_set_str(span, "network.peer.address", req->peer);
    }
    rpc_call_set_trace(call, span);
}

static void rpc_finished(rpc_call *call, chcp_code code, void *ud)
{
    observe *o = ud;
    const char *service = rpc_call_service(call), *method = rpc_call_method(call);
    const char *active_labels[] = {service, method, NULL};
    const char *labels[] = {service, method, code_name(code), NULL};
    tm_add(o->rpc_active, active_labels, -1);
    tm_add(o->rpc_requests, labels, 1);
    const http_request *req = rpc_call_http(call);
    if (req)
        tm_observe(o->rpc_duration, labels, (double)(time_mono_ns() - req->received_ns) / 1e9);

    tm_span *span = rpc_call_trace(call);
    if (!span)
        return;
    rpc_call_set_trace(call, NULL);
    tm_span_set_int(span, "rpc.grpc.status_code", (int64_t)code);
    if (code != CHCP_OK && rpc_call_protocol(call) == RPC_PROTOCOL_CONNECT)
        tm_span_set_static_str(span, "rpc.connect_rpc.error_code", code_name(code));
    if (server_fault(code))
        tm_span_set_status(span, TM_STATUS_ERROR, code_name(code));
    tm_span_end(span);
}

/* ---- VM manager: operation and VMM call spans, VM metrics ----------------- */

static void *vm_op_started(void *ud, void *trace_ctx, const char *vm_id, vm_op_kind kind)
{
    (void)ud;
    char name[32];
    snprintf(name, sizeof(name), "vm.%s", vm_op_kind_name(kind));
    tm_span *span = tm_span_start_child(trace_ctx, name, TM_SPAN_INTERNAL);
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
    if (err)
        tm_span_set_status(span, TM_STATUS_ERROR, err->message);
    tm_span_end(span);
}

static void *vmm_call_started(void *ud, void *op_token, const char *vm_id, const char *what)
{
    (void)ud;
    bool spawn = strcmp(what, "spawn") == 0;
    char name[64];
    snprintf(name, sizeof(name), spawn ? "vm.spawn" : "cloud-hypervisor %s", what);
    tm_span *span = tm_span_start_child(op_token, name, spawn ? TM_SPAN_INTERNAL : TM_SPAN_CLIENT);
    if (!span)
        return NULL;
    tm_span_set_str(span, "chcp.vm_id", vm_id);
    if (!spawn) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/%s", what);
        bool get = strcmp(what, "vm.info") == 0 || strcmp(what, "vmm.ping") == 0;
        tm_span_set_str(span, "http.request.method", get ? "GET" : "PUT");
        tm_span_set_str(span, "url.path", path);
    }
    return span;
}

static void vmm_call_ended(void *ud, void *token, const char *what, double seconds, int http_status,
                           const chcp_error *err)
{
    observe *o = ud;
    const char *outcome = !err                                  ? "ok"
                          : err->code == CHCP_DEADLINE_EXCEEDED ? "timeout"
                          : http_status                         ? "error"
                                                                : "unavailable";
    const char *labels[] = {what, outcome, NULL};
    tm_observe(o->vmm_call_duration, labels, seconds);
    tm_span *span = token;
    if (http_status)
        tm_span_set_int(span, "http.response.status_code", http_status);
    if (err)
        tm_span_set_status(span, TM_STATUS_ERROR, err->message);
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
    for (size_t i = 0; i < ARRAY_SIZE(state_names); i++) {
        const char *labels[] = {state_names[i], NULL};
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
    const char *rpc_labels[] = {"rpc.service", "rpc.method", "rpc.code", NULL};
    const char *active_labels[] = {"rpc.service", "rpc.method", NULL};
    o->rpc_requests = tm_metric_new(r, TM_COUNTER, "rpc.server.requests", "{request}",
                                    "RPCs served, by method and code.", rpc_labels, NULL, 0);
    o->rpc_duration =
        tm_metric_new(r, TM_HISTOGRAM, "rpc.server.request.duration", "s",
                      "Time from a request's arrival to its answer.", rpc_labels, NULL, 0);
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
                                      op, NULL, 0);
    o->vmm_call_duration =
        tm_metric_new(r, TM_HISTOGRAM, "chcp.vmm.api_call.duration", "s",
                      "Cloud Hypervisor API calls (and VMM spawns).", call, NULL, 0);
    o->vmm_exits = tm_metric_new(r, TM_COUNTER, "chcp.vmm.exits", "{exit}",
                                 "VMM processes that ended, by reason.", reason, NULL, 0);
    tm_registry_on_collect(r, collect_vms, o);
    tm_register_process_metrics(r);
}

/* ---- /metrics and /_/health ----------------------------------------------- */

static void respond(http_request *req, int status, const char *type, const char *body, size_t len)
{
    http_header h[1] = {{.name = "content-type", .value = type}};
    h[0].name_len = strlen(h[0].name);
    h[0].value_len = strlen(h[0].value);
    bool head = strcmp(req->method, "HEAD") == 0;
    http_response resp = {.status = status,
                          .headers = h,
                          .n_headers = 1,
                          .body = (const uint8_t *)body,
                          .body_len = head ? 0 : len};
    http_respond(req, &resp);
}

static void serve_metrics(observe *o, http_request *req)
{
    chcp_buf b = CHCP_BUF_INIT;
    tm_prometheus_render(o->reg, &b);
    respond(req, 200, TM_PROMETHEUS_CONTENT_TYPE, (const char *)b.data, b.len);
    buf_free(&b);
}

static json_t *health_json(observe *o, bool stopping, int *status)
{
    const chcp_config *c = o->cfg;
    tm_process_stats ps;
    chcp_error *err = NULL;
    if (tm_process_stats_read(&ps, &err) < 0) {
        error_free(err);
        memset(&ps, 0, sizeof(ps));
    }
    bool vmm_ok = c->ch_endpoint_path || c->ch_binary_found;
    tm_status ts;
    tm_telemetry_status(o->tm, &ts);
    /* Durable state: until every stored VM is re-adopted VmService answers
     * `unavailable`, so the instance is not ready (docs/durability.md). */
    vm_recovery_status rs = {0};
    if (o->vms)
        vm_manager_recovery_status(o->vms, &rs);
    bool recovering = !c->ch_endpoint_path && !rs.complete;
    const char *verdict = stopping      ? "stopping"
                          : recovering  ? "recovering"
                          : !vmm_ok     ? "unhealthy"
                          : !ts.healthy ? "degraded"
                                        : "ok";
    *status = stopping || !vmm_ok || recovering ? 503 : 200;

    json_t *by_state = json_object();
    size_t total = 0;
    for (size_t i = 0; i < ARRAY_SIZE(state_names); i++) {
        size_t n = o->vms ? vm_manager_count_state(o->vms, (vm_state)(i + 1)) : 0;
        total += n;
        json_object_set_new(by_state, state_names[i], json_integer((json_int_t)n));
    }
    return json_pack(
        "{s:s, s:s, s:s, s:f, s:{s:f, s:f, s:I, s:I, s:i}, s:[f,f,f],"
        " s:{s:s, s:s, s:s, s:b}, s:{s:I, s:o},"
        " s:{s:b, s:b, s:I, s:I, s:I, s:I, s:s}}",
        "status", verdict, "version", CHCP_VERSION, "git_rev", CHCP_GIT_REV, "uptime_seconds",
        (double)(time_mono_ns() - o->started_ns) / 1e9, "process", "cpu_user_seconds",
        ps.cpu_user_seconds, "cpu_system_seconds", ps.cpu_system_seconds, "rss_bytes",
        (json_int_t)ps.rss_bytes, "virtual_bytes", (json_int_t)ps.virtual_bytes, "open_fds",
        (int)ps.open_fds, "load", ps.load1, ps.load5, ps.load15, "vmm", "mode",
        c->ch_endpoint_path ? "attach" : "spawn", "binary",
        c->ch_endpoint_path ? c->ch_endpoint : (c->ch_binary ? c->ch_binary : ""), "version",
        o->vmm_version, "available", vmm_ok, "vms", "total", (json_int_t)total, "by_state",
        by_state, "telemetry", "enabled", ts.enabled, "healthy", ts.healthy, "spans_exported",
        (json_int_t)ts.spans_exported, "spans_dropped", (json_int_t)ts.spans_dropped,
        "exports_failed", (json_int_t)ts.exports_failed, "queue", (json_int_t)ts.queue_len,
        "last_error", ts.last_error ? ts.last_error : "");
}

static void serve_health_json(observe *o, http_request *req, bool stopping)
{
    int status;
    json_t *j = health_json(o, stopping, &status);
    if (j && o->vms) {
        vm_recovery_status rs;
        vm_manager_recovery_status(o->vms, &rs);
        json_object_set_new(
            j, "recovery",
            json_pack("{s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "running", rs.running,
                      "complete", rs.complete, "total", (json_int_t)rs.total, "settled",
                      (json_int_t)rs.settled, "adopted", (json_int_t)rs.adopted, "crashed",
                      (json_int_t)rs.crashed, "orphans", (json_int_t)rs.orphans, "orphan_dirs",
                      (json_int_t)rs.orphan_dirs, "elapsed_ms", (json_int_t)rs.elapsed_ms));
    }
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    respond(req, j ? status : 500, "application/json", text ? text : "{}", text ? strlen(text) : 2);
    free(text);
    json_decref(j);
}

static bool is_get(const http_request *req)
{
    return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

bool observe_serve(observe *o, http_request *req, bool stopping)
{
    if (strcmp(req->path, "/metrics") == 0 && is_get(req)) {
        serve_metrics(o, req);
        return true;
    }
    if (strcmp(req->path, "/_/health") == 0 && is_get(req)) {
        serve_health_json(o, req, stopping);
        return true;
    }
    return false;
}

/* The Prometheus port serves /metrics only. */
static void prom_request(http_request *req, void *ud)
{
    observe *o = ud;
    if (strcmp(req->path, "/metrics") == 0 && is_get(req))
        serve_metrics(o, req);
    else
        respond(req, 404, "text/plain; charset=utf-8", "not found\n", 10);
}

static void prom_cancel(http_request *req, void *ud)
{
    (void)req;
    (void)ud; /* answers are immediate: nothing is ever outstanding */
}

/* ---- VMM version probe ---------------------------------------------------- */

static void probe_closed(uv_handle_t *h)
{
    observe *o = h->data;
    if (--o->probe_handles == 0 && o->pending && --o->pending == 0 && o->shutdown_done)
        o->shutdown_done(o->shutdown_ud);
}

static void probe_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char scratch[256];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    observe *o = s->data;
    if (n > 0 && o->probe_buf.len < 1024)
        buf_append(&o->probe_buf, buf->base, (size_t)n);
    if (n < 0) {
        uv_read_stop(s);
        char *text = buf_steal_str(&o->probe_buf);
        text[strcspn(text, "\n")] = '\0';
        snprintf(o->vmm_version, sizeof(o->vmm_version), "%s", text);
        free(text);
        uv_close((uv_handle_t *)s, probe_closed);
    }
}

static void probe_exit(uv_process_t *p, int64_t status, int sig)
{
    (void)status;
    (void)sig;
    uv_close((uv_handle_t *)p, probe_closed);
}

/* `cloud-hypervisor --version`, asynchronously (argv, clean environment). */
static void probe_vmm_version(observe *o)
{
    const chcp_config *c = o->cfg;
    if (c->ch_endpoint_path || !c->ch_binary_found || !c->ch_binary)
        return;
    uv_pipe_init(o->loop, &o->probe_out, 0);
    o->probe_out.data = o->probe.data = o;
    char *args[] = {c->ch_binary, "--version", NULL};
    char *env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&o->probe_out},
        {.flags = UV_IGNORE},
    };
    uv_process_options_t opts = {.file = c->ch_binary,
                                 .args = args,
                                 .env = env,
                                 .stdio = stdio,
                                 .stdio_count = 3,
                                 .exit_cb = probe_exit};
    if (uv_spawn(o->loop, &o->probe, &opts) < 0) {
        uv_close((uv_handle_t *)&o->probe_out, NULL);
        return;
    }
    o->probe_handles = 2;
    uv_read_start((uv_stream_t *)&o->probe_out, probe_alloc, probe_read);
}

/* ---- life cycle ----------------------------------------------------------- */

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
    tm_config tc = {.enabled = oc->enabled,
                    .endpoint = oc->endpoint,
                    .sampling_rate = oc->sampling_rate,
                    .service_name = oc->service_name,
                    .service_version = oc->service_version,
                    .batch_delay_ms = oc->batch_delay_ms,
                    .metric_interval_ms = oc->metric_interval_ms};
    o->tm = tm_telemetry_new(loop, &tc);
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
    }
    log_observer = o;
    log_set_context_fn(log_context);

    if (oc->prometheus_enabled) {
        transport_limits lim;
        transport_limits_default(&lim);
        lim.max_connections = 64;
        o->prom = transport_new(loop, &lim, prom_request, prom_cancel, o);
        if (transport_listen_tcp(o->prom, cfg->address, oc->prometheus_port, err) < 0) {
            error_prefix(*err,
                         "Prometheus listener on %s port %u (UNKEY_CHCP_OTEL_PROMETHEUS_PORT)",
                         cfg->address, oc->prometheus_port);
            return o; /* the caller frees through observe_shutdown/observe_free */
        }
        log_info("Prometheus metrics on %s port %u", cfg->address, transport_tcp_port(o->prom));
    }
    if (oc->enabled)
        log_info("telemetry on: OTLP/HTTP to %s, sampling rate %g", oc->endpoint,
                 oc->sampling_rate);
    probe_vmm_version(o);
    return o;
}

static void piece_done(void *ud)
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
    if (o->probe_handles) {
        o->pending++;
        uv_process_kill(&o->probe, SIGKILL);
    }
    if (o->prom) {
        o->pending++;
        transport_close(o->prom, piece_done, o);
        o->prom = NULL;
    }
    o->pending++;
    tm_telemetry_shutdown(o->tm, deadline_ms, piece_done, o);
    piece_done(o);
}

void observe_free(observe *o)
{
    if (!o)
        return;
    buf_free(&o->probe_buf);
    tm_telemetry_free(o->tm);
    free(o);
}
