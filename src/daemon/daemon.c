/*
 * daemon.c - wires chcp-api together and runs it: one libuv loop, the VM
 * manager on the Cloud Hypervisor backend, the rpc server with VmService on
 * top, the transport's TCP (and optional Unix) listeners, and graceful
 * shutdown on SIGTERM/SIGINT (the health endpoints are in observe_http.c).
 *
 * Shutdown is two-staged, as orchestrators expect: the first signal stops
 * accepting, lets in-flight requests finish for at most
 * CHCP_SHUTDOWN_TIMEOUT_MS, then closes everything and returns 0; a second
 * signal means "now" and exits at once with 128 + signal number. Readiness and
 * stopping are reported to systemd (sd_notify) when NOTIFY_SOCKET is set, and
 * when the unit has WatchdogSec= a loop timer pings it at half the interval:
 * the pings come from the loop itself, so a loop that hangs is restarted.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "api/api.h"
#include "daemon/access.h"
#include "daemon/observe.h"
#include "cloudhypervisor/v1/vm.pb-c.h"
#include "rpc/protojson.h"
#include "rpc/rpc.h"
#include "daemon/health.h"

/* Generated at build time into $(B)/gen/chcp_protometa.c. */
extern const protometa_table chcp_protometa;

/* While draining, how often to check whether in-flight requests are done. */
#define DRAIN_POLL_MS 10
/* The VMs are let go this long before the drain deadline, so operations
 * still waiting on a guest or a VMM are answered while their clients are
 * still connected. */
#define VM_RELEASE_MARGIN_MS 250
/* How long the last telemetry export may take at shutdown. */
#define OBSERVE_FLUSH_MS 3000

typedef struct sleep_req sleep_req;

typedef struct daemon_state {
    uv_loop_t loop;
    const chcp_config *cfg;
    rpc_server *rpc;
    vm_manager *vms;
    observe *obs;           /* telemetry, /metrics, /_/health */
    access_ctl *access;     /* authentication and authorization (access.c) */
    api_service svc;        /* VmService's manager and access hooks */
    health_service *health; /* grpc.health.v1.Health */
    transport *tp;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain_timer;
    uv_timer_t watchdog_timer; /* WATCHDOG=1 to systemd, when it asks for it */
    uint64_t drain_deadline_ns;
    uint64_t vm_release_ns; /* when the VM manager lets go (before the deadline) */
    bool vms_released;
    bool handles_open;    /* signals and timer initialised */
    bool unix_listening;  /* the Unix socket file is ours to remove */
    bool stopping;        /* first signal received: draining */
    bool closing;         /* transport_close() called */
    bool recovered;       /* durable state re-adopted: VmService serves */
    bool bad_config;      /* start-up failed on a TLS or access file: exit 2 */
    transport_limits lim; /* for the start-up log line */
    sleep_req *sleeping;  /* test hook requests waiting on their timer */
} daemon_state;

/* ---- services ----------------------------------------------------------- */

/*
 * The one place the API is plugged in: the VM manager (with the Cloud
 * Hypervisor backend, spawn or attach mode) and VmService on top of it.
 */
static int register_services(daemon_state *st, chcp_error **err)
{
    const chcp_config *c = st->cfg;
    vm_backend_ch_config bc = {.ch_binary = c->ch_binary, .attach_path = c->ch_endpoint_path};
    const vm_backend_ops *ops;
    void *backend;
    if (vm_backend_ch_new(&st->loop, &bc, &ops, &backend, err) < 0)
        return -1;
    vm_manager_config vc = {.state_dir = c->state_dir,
                            .image_dirs = (const char *const *)c->image_dirs,
                            .n_image_dirs = c->n_image_dirs,
                            .max_vcpus = c->max_vcpus,
                            .max_memory_mib = c->max_memory_mib,
                            .max_concurrent_starts = c->max_concurrent_starts,
                            .attach_mode = c->ch_endpoint_path != NULL,
                            /* Durable state (docs/durability.md): spawned VMMs
                             * outlive the daemon; an attached VMM is not ours. */
                            .durable = c->ch_endpoint_path == NULL,
                            .orphan_keep = c->orphan_keep};
    st->vms = vm_manager_new(&st->loop, &vc, ops, backend, err);
    if (!st->vms) {
        ops->free(backend); /* the manager takes it only when it exists */
        return -1;
    }
    st->access = access_start(c, st->rpc, &st->svc.access, err);
    if (!st->access) {
        st->bad_config = true;
        return -1;
    }
    st->svc.vms = st->vms;
    return api_register(st->rpc, &st->svc, err);
}

/* ---- plain HTTP endpoints (rpc fallback) ---------------------------------- */

static void respond_text(http_request *req, int status, const char *body, const char *allow)
{
    http_header h[2] = {{.name = "content-type", .value = "text/plain; charset=utf-8"}};
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
                          .body_len = head ? 0 : strlen(body)};
    http_respond(req, &resp);
}

/*
 * Test hook (CHCP_TEST_HOOKS=1 only): GET /_test/sleep?ms=N answers after N
 * milliseconds, so the integration tests can hold a request in flight and
 * check that graceful shutdown waits for it (and no longer than the timeout).
 */
struct sleep_req {
    sleep_req *next;
    daemon_state *st;
    http_request *req;
    uv_timer_t timer;
};

static void sleep_req_free(uv_handle_t *h)
{
    free(h->data);
}

/* Unlink, answer, and release one sleeping request. */
static void sleep_req_finish(sleep_req *s, int status, const char *body)
{
    for (sleep_req **pp = &s->st->sleeping; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    uv_timer_stop(&s->timer);
    respond_text(s->req, status, body, NULL);
    uv_close((uv_handle_t *)&s->timer, sleep_req_free);
}

static void on_sleep_done(uv_timer_t *t)
{
    sleep_req_finish(t->data, 200, "slept");
}

static void serve_sleep(daemon_state *st, http_request *req)
{
    uint64_t ms;
    if (strcmp(req->method, "GET") != 0) {
        respond_text(req, 405, "method not allowed\n", "GET");
        return;
    }
    if (!req->query || !str_has_prefix(req->query, "ms=") ||
        !str_to_u64(req->query + 3, 60000, &ms)) {
        respond_text(req, 400, "expected ?ms=0..60000\n", NULL);
        return;
    }
    log_debug("test hook: sleeping %llu ms", (unsigned long long)ms);
    sleep_req *s = xcalloc(1, sizeof(*s));
    s->st = st;
    s->req = req;
    s->timer.data = s;
    uv_timer_init(&st->loop, &s->timer);
    uv_timer_start(&s->timer, on_sleep_done, ms, 0);
    s->next = st->sleeping;
    st->sleeping = s;
}

/* Returns true when `req` was one of ours (and is now answered). */
static bool daemon_hooks_cancel(daemon_state *st, http_request *req)
{
    for (sleep_req *s = st->sleeping; s; s = s->next) {
        if (s->req == req) {
            sleep_req_finish(s, 499, "canceled");
            return true;
        }
    }
    return false;
}

static void daemon_hooks_cancel_all(daemon_state *st)
{
    while (st->sleeping)
        sleep_req_finish(st->sleeping, 503, "shutting down");
}

/* /metrics and /_/health say which VMs exist and how they fare: they need
 * what the API needs. The probes (/livez, /readyz, /health) stay open. */
static bool fallback_refused(daemon_state *st, http_request *req)
{
    if (!st->access || (strcmp(req->path, "/metrics") != 0 && strcmp(req->path, "/_/health") != 0))
        return false;
    cleanup_error chcp_error *err = NULL;
    if (access_http_allowed(st->access, req, &err))
        return false;
    log_write(LOG_WARN, NULL, (const char *[]){"peer", req->peer, NULL}, "%s refused: %s",
              req->path, err->message);
    respond_text(req, err->code == CHCP_UNAUTHENTICATED ? 401 : 403, err->message, NULL);
    return true;
}

static bool daemon_fallback(http_request *req, void *ud)
{
    daemon_state *st = ud;
    if (fallback_refused(st, req))
        return true;
    /* /health, /livez, /readyz, /_/health and /metrics (observe_http.c). */
    if (st->obs && observe_serve(st->obs, req, st->stopping))
        return true;
    if (st->cfg->test_hooks && strcmp(req->path, "/_test/sleep") == 0) {
        serve_sleep(st, req);
        return true;
    }
    return false;
}

/* ---- transport callbacks -------------------------------------------------- */

static void on_request(http_request *req, void *ud)
{
    daemon_state *st = ud;
    rpc_server_on_request(req, st->rpc);
}

static void on_cancel(http_request *req, void *ud)
{
    daemon_state *st = ud;
    /* Requests the daemon answers itself (test hooks) are cancelled here;
     * everything else belongs to the rpc server. */
    if (daemon_hooks_cancel(st, req))
        return;
    rpc_server_on_cancel(req, st->rpc);
}

/* ---- shutdown ------------------------------------------------------------- */

static void close_cb_noop(uv_handle_t *h)
{
}

static void transport_closed_noop(void *ud)
{
}

/*
 * Shortly before the deadline the VM manager lets go of the VMMs (durable
 * mode: records written, VMMs left running; attach mode: the VM dropped from
 * the VMM). Operations still waiting then -- a ShutdownVm waiting up to its
 * graceful timeout for the guest, a VMM call that has not answered -- end
 * with `unavailable`, their timers stopped and their calls cancelled, so the
 * answers reach the clients and nothing keeps the loop past the deadline.
 */
static void release_vms(daemon_state *st)
{
    if (st->vms_released || !st->vms)
        return;
    st->vms_released = true;
    vm_manager_shutdown(st->vms, NULL, NULL);
}

static void on_transport_closed(void *ud)
{
    daemon_state *st = ud;
    st->tp = NULL;
    /* Last spans and metrics out (bounded), then the telemetry handles go. */
    if (st->obs)
        observe_shutdown(st->obs, OBSERVE_FLUSH_MS, NULL, NULL);
    /* VMMs keep the loop alive until they are let go (see teardown). */
    release_vms(st);
    /* The signal handles stay open (unreferenced) until teardown, so a
     * second signal still cuts a slow VMM stop short. */
    uv_close((uv_handle_t *)&st->drain_timer, close_cb_noop);
}

static void finish_shutdown(daemon_state *st)
{
    if (st->closing)
        return;
    st->closing = true;
    uv_timer_stop(&st->drain_timer);
    size_t left = transport_active_requests(st->tp);
    if (left)
        log_warn("shutdown timeout (%llu ms) passed with %zu request(s) in flight; closing them",
                 (unsigned long long)st->cfg->shutdown_timeout_ms, left);
    daemon_hooks_cancel_all(st);
    transport_close(st->tp, on_transport_closed, st);
}

/* Drained once no request is in flight and every connection is gone: the
 * transport closes each one after its last response is written, so waiting
 * for the connections (not just the requests) keeps transport_close() from
 * discarding answers still queued for the socket. */
static void on_drain_tick(uv_timer_t *t)
{
    daemon_state *st = t->data;
    uint64_t now = time_mono_ns();
    if (now >= st->vm_release_ns)
        release_vms(st);
    bool drained =
        transport_active_requests(st->tp) == 0 && transport_connection_count(st->tp) == 0;
    if (drained || now >= st->drain_deadline_ns)
        finish_shutdown(st);
}

static void begin_shutdown(daemon_state *st, int signum)
{
    st->stopping = true;
    log_info("received %s: shutting down (finishing %zu in-flight request(s), up to %llu ms)",
             strsignal(signum), transport_active_requests(st->tp),
             (unsigned long long)st->cfg->shutdown_timeout_ms);
    sd_notify(0, "STOPPING=1");
    transport_stop_accepting(st->tp);
    /* Streams never end by themselves: health watchers hear NOT_SERVING,
     * every other stream ends with unavailable, so the drain is not held
     * up and clients know to come back (event watchers resume by revision). */
    health_service_stop(st->health);
    rpc_server_cancel_streams(st->rpc, CHCP_UNAVAILABLE, "the server is shutting down");
    uint64_t timeout_ms = st->cfg->shutdown_timeout_ms;
    uint64_t margin_ms =
        timeout_ms / 2 < VM_RELEASE_MARGIN_MS ? timeout_ms / 2 : VM_RELEASE_MARGIN_MS;
    st->drain_deadline_ns = time_mono_ns() + timeout_ms * 1000000ull;
    st->vm_release_ns = st->drain_deadline_ns - margin_ms * 1000000ull;
    on_drain_tick(&st->drain_timer);
    if (!st->closing)
        uv_timer_start(&st->drain_timer, on_drain_tick, DRAIN_POLL_MS, DRAIN_POLL_MS);
}

/* The TLS configuration of the listener, from the settings. */
static transport_tls_config tls_config(const chcp_config *c)
{
    return (transport_tls_config){.cert_file = c->tls_cert,
                                  .key_file = c->tls_key,
                                  .client_ca_file = c->tls_client_ca,
                                  .client_cert_optional = c->auth_tokens_file != NULL,
                                  .min_version = (int)c->tls_min_version};
}

/* SIGHUP: certificate, key, client CAs, tokens and policy are read again.
 * Each part that fails to load keeps what it had, and says so. */
static void reload(daemon_state *st)
{
    const chcp_config *c = st->cfg;
    bool ok = true;
    if (c->tls_cert && st->tp) {
        cleanup_error chcp_error *err = NULL;
        transport_tls_config tc = tls_config(c);
        if (transport_set_tls(st->tp, &tc, &err) < 0) {
            log_error("reload: keeping the previous TLS certificate: %s", err->message);
            ok = false;
        }
    }
    if (st->access) {
        cleanup_error chcp_error *err = NULL;
        if (access_reload(st->access, &err) < 0) {
            log_error("reload: keeping the previous tokens and policy: %s", err->message);
            ok = false;
        }
    }
    char desc[160] = "";
    if (st->access)
        access_describe(st->access, desc, sizeof(desc));
    log_write(ok ? LOG_INFO : LOG_WARN, NULL, (const char *[]){"access", desc, NULL},
              "reload on SIGHUP %s", ok ? "done" : "incomplete");
}

static void on_sighup(uv_signal_t *h, int signum)
{
    reload(h->data);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_state *st = h->data;
    if (!st->stopping) {
        begin_shutdown(st, signum);
        return;
    }
    /* The operator insists: no more waiting, no cleanup, no leak report. */
    log_warn("received %s again: exiting immediately", strsignal(signum));
    fflush(stdout);
    _exit(128 + signum);
}

/* ---- systemd watchdog ------------------------------------------------------ */

static void on_watchdog(uv_timer_t *t)
{
    sd_notify(0, "WATCHDOG=1");
}

/* WATCHDOG_USEC (and WATCHDOG_PID naming us) set by systemd: ping at half
 * the interval, from start-up (recovery included) to exit. */
static void start_watchdog(daemon_state *st)
{
    uint64_t usec = 0;
    uv_timer_init(&st->loop, &st->watchdog_timer);
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    uint64_t every_ms = usec / 2000 ? usec / 2000 : 1;
    uv_timer_start(&st->watchdog_timer, on_watchdog, every_ms, every_ms);
    uv_unref((uv_handle_t *)&st->watchdog_timer);
    log_debug("systemd watchdog: %llu ms, pinging every %llu ms", (unsigned long long)(usec / 1000),
              (unsigned long long)every_ms);
    sd_notify(0, "WATCHDOG=1");
}

/* ---- start-up ------------------------------------------------------------- */

static uint64_t fd_limit_at_start;

/* Each supervised VMM costs the daemon a few descriptors (VM_FDS_PER_VM):
 * the common soft limit of 1024 would stop it at a few hundred VMs. The
 * hard limit is what the operator allows; take it. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    fd_limit_at_start = rl.rlim_cur;
    if (rl.rlim_cur == rl.rlim_max)
        return;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY) {
        /* The kernel caps descriptors at fs.nr_open whatever the rlimit says. */
        char line[32] = "";
        FILE *f = fopen("/proc/sys/fs/nr_open", "re");
        if (f && !fgets(line, sizeof(line), f))
            line[0] = '\0';
        if (f)
            fclose(f);
        unsigned long long nr = strtoull(line, NULL, 10);
        want = (rlim_t)(nr ? nr : 1048576);
    }
    struct rlimit raised = {.rlim_cur = want, .rlim_max = rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) < 0)
        log_warn("RLIMIT_NOFILE: cannot raise the soft limit %llu to %llu: %s",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)want, strerror(errno));
    else
        log_info("RLIMIT_NOFILE: soft limit raised from %llu to %llu (the hard limit)",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

void daemon_fd_limits_get(daemon_fd_limits *out)
{
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    out->at_start = fd_limit_at_start;
    out->soft = rl.rlim_cur == RLIM_INFINITY ? 0 : rl.rlim_cur;
    out->hard = rl.rlim_max == RLIM_INFINITY ? 0 : rl.rlim_max;
}

/* mkdir -p with mode 0700 for the directories we create. */
static int ensure_dir(const char *path, chcp_error **err)
{
    cleanup_free char *p = xstrdup(path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return error_set_errno(err, CHCP_INTERNAL, errno, "creating %s", p);
        *s = c;
        if (!c)
            break;
    }
    struct stat sb;
    if (stat(path, &sb) < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "state directory %s", path);
    if (!S_ISDIR(sb.st_mode))
        return error_set(err, CHCP_INTERNAL, "state directory %s is not a directory", path);
    return 0;
}

static void log_startup(const daemon_state *st, const transport_limits *lim)
{
    const chcp_config *c = st->cfg;
    char port[8], body[24], conns[16], streams[16], drain_ms[24], vcpus[16], mem[24], starts[16];
    snprintf(port, sizeof(port), "%u", transport_tcp_port(st->tp));
    snprintf(body, sizeof(body), "%zu", lim->max_body_bytes);
    snprintf(conns, sizeof(conns), "%u", lim->max_connections);
    snprintf(streams, sizeof(streams), "%u", lim->h2_max_concurrent_streams);
    snprintf(drain_ms, sizeof(drain_ms), "%llu", (unsigned long long)c->shutdown_timeout_ms);
    snprintf(vcpus, sizeof(vcpus), "%u", c->max_vcpus);
    snprintf(mem, sizeof(mem), "%llu", (unsigned long long)c->max_memory_mib);
    snprintf(starts, sizeof(starts), "%u", c->max_concurrent_starts);
    char access[160] = "";
    if (st->access)
        access_describe(st->access, access, sizeof(access));
    // clang-format off
    const char *kv[] = {
        "version", CHCP_VERSION,
        "git_rev", CHCP_GIT_REV,
        "address", c->address,
        "port", port,
        "unix_socket", c->unix_socket ? c->unix_socket : "",
        "tls", c->tls_cert ? (c->tls_client_ca ? "mutual" : "on") : "off",
        "access", access,
        "backend", "cloud-hypervisor",
        "ch_mode", c->ch_endpoint ? "attach" : "spawn",
        "ch_endpoint", c->ch_endpoint ? c->ch_endpoint : "",
        "ch_binary", c->ch_binary,
        "state_dir", c->state_dir,
        "max_vcpus", vcpus,
        "max_memory_mib", mem,
        "max_concurrent_starts", starts,
        "max_body_bytes", body,
        "max_connections", conns,
        "h2_max_concurrent_streams", streams,
        "shutdown_timeout_ms", drain_ms,
        "otel_enabled", c->otel.enabled ? "true" : "false",
        NULL,
    };
    // clang-format on
    log_write(LOG_INFO, NULL, kv, "chcp-api %s listening", CHCP_VERSION);
    for (size_t i = 0; i < st->cfg->n_image_dirs; i++)
        log_debug("image directory: %s", st->cfg->image_dirs[i]);
    if (!c->ch_endpoint && !c->ch_binary_found)
        log_warn("%s not found on PATH: creating VMs will fail until it is installed "
                 "(set CHCP_CH_BINARY)",
                 c->ch_binary);
    if (c->test_hooks)
        log_warn("CHCP_TEST_HOOKS is on: test-only endpoints are served; never use in production");
    if (!config_address_is_loopback(c->address) && !config_tcp_requires_auth(c))
        log_warn("CHCP_ALLOW_UNAUTHENTICATED: %s is served without client authentication; "
                 "anyone who can reach it can create VMs on this host",
                 c->address);
    else if (!config_address_is_loopback(c->address) && !c->tls_cert)
        log_warn("CHCP_ALLOW_UNAUTHENTICATED: bearer tokens cross %s in clear text", c->address);
}

/* The "listening" line (which harnesses and operators wait for) and READY=1
 * come once recovery is complete, i.e. when VmService really serves. */
static void on_recovered(void *ud)
{
    daemon_state *st = ud;
    st->recovered = true;
    log_startup(st, &st->lim);
    /* STATUS= is what `systemctl status` shows under the unit's name. */
    sd_notifyf(0, "READY=1\nSTATUS=serving on %s port %u%s%s", st->cfg->address,
               transport_tcp_port(st->tp), st->cfg->unix_socket ? " and " : "",
               st->cfg->unix_socket ? st->cfg->unix_socket : "");
}

static int start(daemon_state *st, chcp_error **err)
{
    const chcp_config *c = st->cfg;
    if (ensure_dir(c->state_dir, err) < 0) {
        error_prefix(*err, "state directory (CHCP_STATE_DIR) %s", c->state_dir);
        return -1;
    }

    /* The message limit follows the body limit (CHCP_MAX_BODY_BYTES). */
    rpc_limits rl = {.max_message_bytes = c->limits.max_body_bytes,
                     .max_message_elements = c->max_message_elements,
                     .compress_min_bytes = 1024};
    st->rpc = rpc_server_new(&st->loop, &rl);
    if (register_services(st, err) < 0)
        return -1;
    rpc_server_set_fallback(st->rpc, daemon_fallback, st);
    st->obs = observe_start(&st->loop, c, st->rpc, st->vms, err);
    if (*err)
        return -1;
    /* gRPC health (readiness as /readyz has it) and server reflection. */
    st->health = health_service_start(&st->loop, st->rpc, st->obs, &st->stopping, err);
    if (!st->health || rpc_server_enable_reflection(st->rpc, err) < 0)
        return -1;

    transport_limits defaults, lim;
    transport_limits_default(&defaults);
    config_transport_limits(c, &defaults, &lim);
    st->tp = transport_new(&st->loop, &lim, on_request, on_cancel, st);
    if (c->tls_cert) {
        transport_tls_config tc = tls_config(c);
        if (transport_set_tls(st->tp, &tc, err) < 0) {
            st->bad_config = true;
            return -1;
        }
    }
    if (st->tp) {
        /* Requests are routed on their headers; streams get their bodies
         * as they arrive. */
        http_stream_hooks hooks;
        rpc_server_stream_hooks(st->rpc, &hooks);
        transport_set_stream_hooks(st->tp, &hooks);
    }
    if (transport_listen_tcp(st->tp, c->address, c->port, err) < 0) {
        error_prefix(*err, "listening on %s port %u", c->address, c->port);
        return -1;
    }
    if (c->unix_socket && transport_listen_unix(st->tp, c->unix_socket, err) < 0) {
        error_prefix(*err, "listening on %s", c->unix_socket);
        return -1;
    }
    st->unix_listening = c->unix_socket != NULL;
    /* Whoever can connect can run VMs: owner and group only, whatever the
     * umask (like docker.sock; grant access through the socket's group). */
    if (c->unix_socket && chmod(c->unix_socket, 0660) < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "chmod %s", c->unix_socket);

    uv_signal_init(&st->loop, &st->sigterm);
    uv_signal_init(&st->loop, &st->sigint);
    uv_signal_init(&st->loop, &st->sighup);
    st->sigterm.data = st->sigint.data = st->sighup.data = st;
    uv_signal_start(&st->sigterm, on_signal, SIGTERM);
    uv_signal_start(&st->sigint, on_signal, SIGINT);
    uv_signal_start(&st->sighup, on_sighup, SIGHUP);
    /* Signals alone must not keep the loop running once all else is done. */
    uv_unref((uv_handle_t *)&st->sigterm);
    uv_unref((uv_handle_t *)&st->sigint);
    uv_unref((uv_handle_t *)&st->sighup);
    uv_timer_init(&st->loop, &st->drain_timer);
    st->drain_timer.data = st;
    st->handles_open = true;
    start_watchdog(st);

    st->lim = lim;
    /* Durable state: the listeners are up (GET /_/health shows progress)
     * but VmService answers `unavailable` until every stored VM is
     * re-adopted; the "listening" line and READY=1 wait for that. */
    if (c->ch_endpoint_path) { /* attach mode: nothing stored */
        on_recovered(st);
        return 0;
    }
    return vm_manager_recover(st->vms, on_recovered, st, err);
}

/* ---- teardown ------------------------------------------------------------- */

static void close_any(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, close_cb_noop);
}

/* Release everything on the loop, whichever stage start() reached. */
static void teardown(daemon_state *st)
{
    if (st->obs && !st->handles_open) /* start() failed before serving */
        observe_shutdown(st->obs, 0, NULL, NULL);
    if (st->tp) {
        if (!st->handles_open) {
            /* Start-up failed: the VM manager's handles would keep this loop
             * running, so its uv_run waits until it is shut down below. */
            transport_close(st->tp, transport_closed_noop, NULL);
            st->tp = NULL;
        } else {
            finish_shutdown(st);
            uv_run(&st->loop, UV_RUN_DEFAULT);
        }
    }
    if (st->vms) {
        /* Durable mode (spawned VMMs): write every record and let go of the
         * VMMs, which keep running for the next start. Attach mode: drop
         * the VM from the VMM. Either way calls still waiting on a VMM are
         * answered before the rpc server goes. */
        vm_manager_shutdown(st->vms, NULL, NULL);
        uv_run(&st->loop, UV_RUN_DEFAULT);
        vm_manager_free(st->vms);
        st->vms = NULL;
    }
    health_service_free(st->health);
    st->health = NULL;
    uv_run(&st->loop, UV_RUN_DEFAULT);
    observe_free(st->obs);
    st->obs = NULL;
    /* Every call was cancelled by transport_close() and the loop ran until
     * their handlers finished; a call still open here would point into a
     * freed server, so keep it (a leak the sanitizers report) instead. */
    if (st->rpc && rpc_server_active_calls(st->rpc) == 0)
        rpc_server_free(st->rpc);
    else if (st->rpc)
        log_error("%zu rpc call(s) still open at exit", rpc_server_active_calls(st->rpc));
    st->rpc = NULL;
    access_free(st->access);
    st->access = NULL;
    uv_walk(&st->loop, close_any, NULL);
    uv_run(&st->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&st->loop) != 0)
        log_warn("event loop still had active handles at exit");
    /* Do not leave a dead socket file behind (the transport removes it when
     * it closes its listener; this covers any other way out). Only ours: a
     * start that failed because another server owns the path keeps off it. */
    struct stat sb;
    if (st->unix_listening && lstat(st->cfg->unix_socket, &sb) == 0 && S_ISSOCK(sb.st_mode))
        unlink(st->cfg->unix_socket);
}

int daemon_run(const chcp_config *cfg, chcp_error **err)
{
    /* A client that disconnects mid-write must not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    protometa_register(&chcp_protometa);

    raise_fd_limit();
    daemon_state st = {.cfg = cfg};
    int rc = uv_loop_init(&st.loop);
    if (rc < 0)
        return error_set(err, CHCP_INTERNAL, "uv_loop_init: %s", uv_strerror(rc)),
               CHCP_EXIT_FAILURE;
    if (start(&st, err) < 0) {
        teardown(&st);
        if (st.bad_config)
            return CHCP_EXIT_CONFIG;
        /* The state needs an operator (docs/durability.md): its own code. */
        if (*err && ((*err)->code == CHCP_DATA_LOSS || (*err)->code == CHCP_FAILED_PRECONDITION))
            return CHCP_EXIT_STATE;
        return CHCP_EXIT_FAILURE;
    }
    uv_run(&st.loop, UV_RUN_DEFAULT);
    teardown(&st);
    log_info("chcp-api stopped");
    return CHCP_EXIT_OK;
}
