/*
 * observe_http.c - the daemon's own HTTP endpoints beside the API: /metrics
 * (also on the Prometheus port), liveness, readiness and the JSON health
 * report, plus the one-off `cloud-hypervisor --version` probe they show.
 *
 *   GET /livez     200 "ok" whenever the event loop answers (a probe that
 *                  fails means: restart me). Also while recovering, while
 *                  draining and without a usable VMM.
 *   GET /readyz    200 "ok" when VmService can do its job: stored VMs
 *                  re-adopted (recovery done), the VMM backend usable (spawn
 *                  mode: the VMM binary is an executable file, checked on
 *                  every probe; attach mode: the VMM's API socket exists),
 *                  the state directory intact (src/vm/statewatch.c) and
 *                  not shutting down. Otherwise 503 with the reason.
 *   GET /health    the same as /readyz (its historical name: 200 "ok", 503
 *                  "shutting down" while draining).
 *   GET /_/health  a JSON report: verdict, readiness, process, VMM, VMs,
 *                  recovery, telemetry exporter.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/observe_internal.h"

static void respond(http_request *req, int status, const char *type, const char *body, size_t len,
                    const char *allow)
{
    http_header h[2] = {{.name = "content-type", .value = type}};
    size_t n = 1;
    if (allow)
        h[n++] = (http_header){.name = "allow", .value = allow};
    for (size_t i = 0; i < n; i++) {
        h[i].name_len = strlen(h[i].name);
        h[i].value_len = strlen(h[i].value);
    }
    bool head = strcmp(req->method, "HEAD") == 0;
    http_response resp = {.status = status,
                          .headers = h,
                          .n_headers = n,
                          .body = (const uint8_t *)body,
                          .body_len = head ? 0 : len};
    http_respond(req, &resp);
}

static void respond_text(http_request *req, int status, const char *text)
{
    respond(req, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

static bool is_get(const http_request *req)
{
    return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

static void serve_metrics(observe *o, http_request *req)
{
    chcp_buf b = CHCP_BUF_INIT;
    tm_prometheus_render(o->reg, &b);
    respond(req, 200, TM_PROMETHEUS_CONTENT_TYPE, (const char *)b.data, b.len, NULL);
    buf_free(&b);
}

/* ---- readiness -------------------------------------------------------------- */

typedef struct readiness {
    bool ready;
    bool backend_ok;
    bool state_ok; /* the state directory is what the daemon opened */
    bool recovering;
    char reason[512]; /* "" when ready */
} readiness;

/* Is the VMM backend usable right now? Checked on every probe: a binary
 * removed or installed after start changes the answer. */
static bool backend_usable(const chcp_config *c, char *why, size_t len)
{
    struct stat st;
    if (c->ch_endpoint_path) {
        if (stat(c->ch_endpoint_path, &st) == 0 && S_ISSOCK(st.st_mode))
            return true;
        snprintf(why, len, "the attached VMM's API socket %s does not exist", c->ch_endpoint_path);
        return false;
    }
    const char *bin = c->ch_binary ? c->ch_binary : "cloud-hypervisor";
    if (c->ch_binary_found && bin[0] == '/' && stat(bin, &st) == 0 && S_ISREG(st.st_mode) &&
        access(bin, X_OK) == 0)
        return true;
    snprintf(why, len, "the VMM binary %s is missing or not executable (CHCP_CH_BINARY)", bin);
    return false;
}

static void check_readiness(observe *o, bool stopping, readiness *r)
{
    memset(r, 0, sizeof(*r));
    vm_recovery_status rs = {0};
    if (o->vms)
        vm_manager_recovery_status(o->vms, &rs);
    r->recovering = !o->cfg->ch_endpoint_path && !rs.complete;
    r->backend_ok = backend_usable(o->cfg, r->reason, sizeof(r->reason));
    vm_state_status ss = {.healthy = true};
    if (o->vms && !o->cfg->ch_endpoint_path)
        vm_manager_state_status(o->vms, &ss);
    r->state_ok = ss.healthy;
    if (!r->state_ok)
        snprintf(r->reason, sizeof(r->reason), "unhealthy: %s", ss.problem);
    if (stopping)
        snprintf(r->reason, sizeof(r->reason), "shutting down");
    else if (r->recovering)
        snprintf(r->reason, sizeof(r->reason), "recovering stored VMs (%zu of %zu settled)",
                 rs.settled, rs.total);
    r->ready = !stopping && !r->recovering && r->backend_ok && r->state_ok;
    if (r->ready)
        r->reason[0] = '\0';
}

bool observe_ready(observe *o, bool stopping, char *reason, size_t len)
{
    readiness r;
    check_readiness(o, stopping, &r);
    if (reason && len)
        snprintf(reason, len, "%s", r.reason);
    return r.ready;
}

static void serve_ready(observe *o, http_request *req, bool stopping)
{
    readiness r;
    check_readiness(o, stopping, &r);
    if (r.ready) {
        respond_text(req, 200, "ok");
    } else if (stopping) {
        respond_text(req, 503, "shutting down"); /* the text /health always had */
    } else {
        char text[600];
        snprintf(text, sizeof(text), "not ready: %s", r.reason);
        respond_text(req, 503, text);
    }
}

/* ---- the JSON report ------------------------------------------------------- */

static json_t *recovery_json(observe *o)
{
    vm_recovery_status rs = {0};
    if (o->vms)
        vm_manager_recovery_status(o->vms, &rs);
    json_t *j = json_pack("{s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "running", rs.running,
                          "complete", rs.complete, "total", (json_int_t)rs.total, "settled",
                          (json_int_t)rs.settled, "adopted", (json_int_t)rs.adopted, "crashed",
                          (json_int_t)rs.crashed, "orphans", (json_int_t)rs.orphans, "orphan_dirs",
                          (json_int_t)rs.orphan_dirs, "elapsed_ms", (json_int_t)rs.elapsed_ms);
    /* What recovery did about a damaged or lost store (docs/durability.md). */
    json_object_update_new(
        j, json_pack("{s:I, s:I, s:I, s:I, s:b}", "reaped", (json_int_t)rs.reaped, "rebuilt",
                     (json_int_t)rs.rebuilt, "unaccounted", (json_int_t)rs.unaccounted, "unadopted",
                     (json_int_t)rs.unadopted, "store_created", rs.store_created));
    return j;
}

/* The state directory watch (src/vm/statewatch.c). */
static json_t *state_dir_json(observe *o)
{
    vm_state_status ss = {.healthy = true, .problem = ""};
    if (o->vms && !o->cfg->ch_endpoint_path)
        vm_manager_state_status(o->vms, &ss);
    return json_pack("{s:b, s:s, s:I, s:I}", "healthy", ss.healthy, "problem", ss.problem,
                     "detections", (json_int_t)ss.detections, "since_unix_ns",
                     (json_int_t)ss.since_ns);
}

static json_t *vms_json(observe *o)
{
    json_t *by_state = json_object();
    size_t total = 0;
    for (size_t i = 0; i < ARRAY_SIZE(observe_state_names); i++) {
        size_t n = o->vms ? vm_manager_count_state(o->vms, (vm_state)(i + 1)) : 0;
        total += n;
        json_object_set_new(by_state, observe_state_names[i], json_integer((json_int_t)n));
    }
    return json_pack("{s:I, s:o}", "total", (json_int_t)total, "by_state", by_state);
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
    readiness r;
    check_readiness(o, stopping, &r);
    tm_status ts;
    tm_telemetry_status(o->tm, &ts);
    const char *verdict = stopping                       ? "stopping"
                          : r.recovering                 ? "recovering"
                          : !r.backend_ok || !r.state_ok ? "unhealthy"
                          : !ts.healthy                  ? "degraded"
                                                         : "ok";
    *status = r.ready ? 200 : 503;
    daemon_fd_limits fl;
    daemon_fd_limits_get(&fl);
    return json_pack(
        "{s:s, s:b, s:b, s:s, s:s, s:s, s:f,"
        " s:{s:f, s:f, s:I, s:I, s:i, s:I, s:I, s:I}, s:[f,f,f],"
        " s:{s:s, s:s, s:s, s:b}, s:o, s:o, s:o,"
        " s:{s:b, s:b, s:I, s:I, s:I, s:I, s:s}}",
        "status", verdict, "ready", r.ready, "live", true, "reason", r.reason, "version",
        CHCP_VERSION, "git_rev", CHCP_GIT_REV, "uptime_seconds",
        (double)(time_mono_ns() - o->started_ns) / 1e9, "process", "cpu_user_seconds",
        ps.cpu_user_seconds, "cpu_system_seconds", ps.cpu_system_seconds, "rss_bytes",
        (json_int_t)ps.rss_bytes, "virtual_bytes", (json_int_t)ps.virtual_bytes, "open_fds",
        (int)ps.open_fds, "max_fds", (json_int_t)fl.soft, "max_fds_hard", (json_int_t)fl.hard,
        "max_fds_at_start", (json_int_t)fl.at_start, "load", ps.load1, ps.load5, ps.load15, "vmm",
        "mode", c->ch_endpoint_path ? "attach" : "spawn", "binary",
        c->ch_endpoint_path ? c->ch_endpoint : (c->ch_binary ? c->ch_binary : ""), "version",
        o->vmm_version, "available", r.backend_ok, "vms", vms_json(o), "recovery", recovery_json(o),
        "state_dir", state_dir_json(o), "telemetry", "enabled", ts.enabled, "healthy", ts.healthy,
        "spans_exported", (json_int_t)ts.spans_exported, "spans_dropped",
        (json_int_t)ts.spans_dropped, "exports_failed", (json_int_t)ts.exports_failed, "queue",
        (json_int_t)ts.queue_len, "last_error", ts.last_error);
}

static void serve_health_json(observe *o, http_request *req, bool stopping)
{
    int status;
    json_t *j = health_json(o, stopping, &status);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    respond(req, j ? status : 500, "application/json", text ? text : "{}", text ? strlen(text) : 2,
            NULL);
    free(text);
    json_decref(j);
}

bool observe_serve(observe *o, http_request *req, bool stopping)
{
    typedef enum { METRICS, LIVE, READY, HEALTH_JSON } endpoint;
    static const struct {
        const char *path;
        endpoint what;
    } routes[] = {
        {"/metrics", METRICS}, {"/livez", LIVE},           {"/readyz", READY},
        {"/health", READY},    {"/_/health", HEALTH_JSON},
    };
    for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
        if (strcmp(req->path, routes[i].path) != 0)
            continue;
        if (!is_get(req)) {
            respond(req, 405, "text/plain; charset=utf-8", "method not allowed\n", 19, "GET, HEAD");
            return true;
        }
        switch (routes[i].what) {
        case METRICS:
            serve_metrics(o, req);
            break;
        case LIVE:
            respond_text(req, 200, "ok");
            break;
        case READY:
            serve_ready(o, req, stopping);
            break;
        case HEALTH_JSON:
            serve_health_json(o, req, stopping);
            break;
        }
        return true;
    }
    return false;
}

/* ---- the Prometheus port: /metrics only ------------------------------------- */

static void prom_request(http_request *req, void *ud)
{
    observe *o = ud;
    if (strcmp(req->path, "/metrics") == 0 && is_get(req))
        serve_metrics(o, req);
    else
        respond_text(req, 404, "not found\n");
}

static void prom_cancel(http_request *req, void *ud)
{
    (void)req;
    (void)ud; /* answers are immediate: nothing is ever outstanding */
}

int observe_prometheus_listen(observe *o, chcp_error **err)
{
    const chcp_config *cfg = o->cfg;
    transport_limits lim;
    transport_limits_default(&lim);
    lim.max_connections = 64;
    o->prom = transport_new(o->loop, &lim, prom_request, prom_cancel, o);
    if (transport_listen_tcp(o->prom, cfg->address, cfg->otel.prometheus_port, err) < 0) {
        error_prefix(*err, "Prometheus listener on %s port %u (UNKEY_CHCP_OTEL_PROMETHEUS_PORT)",
                     cfg->address, cfg->otel.prometheus_port);
        return -1;
    }
    log_info("Prometheus metrics on %s port %u", cfg->address, transport_tcp_port(o->prom));
    return 0;
}

/* ---- VMM version probe ---------------------------------------------------- */

static void probe_closed(uv_handle_t *h)
{
    observe *o = h->data;
    if (--o->probe_handles == 0 && o->pending)
        observe_piece_done(o);
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
void observe_probe_vmm_version(observe *o)
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

void observe_probe_stop(observe *o)
{
    if (o->probe_handles) {
        o->pending++;
        uv_process_kill(&o->probe, SIGKILL);
    }
}
