/*
 * access.c - access control wired into the daemon: the rpc server's guard
 * (who is calling, may they call this method) and VmService's per-VM checks
 * (may they touch a VM with these labels), both decided by src/auth.
 *
 * Every call is named, authentication or not: the principal ("uid:1000" on
 * the Unix socket, "anonymous" on an open loopback port, the SPIFFE ID or
 * token name otherwise) is set on the call for logs and spans. Denials are
 * logged at warn with the principal, the peer and the method; calls that
 * change a VM are logged at info with who asked (the audit trail).
 */
#include "daemon/access.h"

#include <string.h>

#include "auth/auth.h"
#include "cloudhypervisor/v1/vm.pb-c.h"

struct access_ctl {
    auth *auth;
    bool tcp_requires_auth;
    bool mutual_tls;
};

static void log_decision(log_level level, rpc_call *call, const char *vm_id, const char *principal,
                         const char *prefix, const char *text)
{
    const http_request *req = rpc_call_http(call);
    const char *kv[] = {
        "principal", principal ? principal : "", "peer", req && req->peer ? req->peer : "",
        "method",    rpc_call_method(call),      NULL};
    log_write(level, vm_id, kv, "%s%s", prefix, text);
}

static int guard(rpc_call *call, void *ud, chcp_error **err)
{
    access_ctl *a = ud;
    /* gRPC health is a probe, like /readyz: open to all (a Kubernetes gRPC
     * probe sends no credentials), and it tells nothing but readiness. */
    if (strcmp(rpc_call_service(call), "grpc.health.v1.Health") == 0)
        return 0;
    const http_request *req = rpc_call_http(call);
    auth_subject *s =
        auth_authenticate(a->auth, req->identity, http_request_header(req, "authorization"), err);
    if (!s) {
        log_decision(LOG_WARN, call, NULL, NULL, "call refused: ", (*err)->message);
        return -1;
    }
    rpc_call_set_principal(call, auth_subject_name(s));
    if (auth_authorize(s, rpc_call_method(call), err) < 0) {
        log_decision(LOG_WARN, call, NULL, auth_subject_name(s), "call refused: ", (*err)->message);
        auth_subject_free(s);
        return -1;
    }
    rpc_call_set_grant(call, s, (void (*)(void *))auth_subject_free);
    return 0;
}

/* vm_label and auth_label are both {key, value}; copy the pointers. */
static size_t to_auth_labels(const vm_label *labels, size_t n, auth_label *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (auth_label){labels[i].key, labels[i].value};
    return n;
}

static bool is_read(const char *method)
{
    return strcmp(method, "GetVmInfo") == 0 || strcmp(method, "ListVms") == 0;
}

static int check_vm(rpc_call *call, const char *vm_id, bool exists, const vm_label *labels,
                    size_t n, void *ud, chcp_error **err)
{
    const auth_subject *s = rpc_call_grant(call);
    const char *method = rpc_call_method(call);
    const char *who = s ? auth_subject_name(s) : "anonymous";
    auth_label al[VM_MAX_LABELS];
    if (n > VM_MAX_LABELS)
        n = VM_MAX_LABELS;
    /* An unknown VM is the manager's to answer (not_found); only the
     * request is recorded. */
    if (!s || !exists || auth_labels_allowed(s, al, to_auth_labels(labels, n, al))) {
        if (!is_read(method))
            log_decision(LOG_INFO, call, vm_id, who, method, " requested");
        return 0;
    }
    chcp_buf sel = CHCP_BUF_INIT;
    auth_describe_selectors(s, &sel);
    buf_append_byte(&sel, 0);
    bool create = strcmp(method, "CreateVm") == 0;
    error_set(err, CHCP_PERMISSION_DENIED,
              create ? "%s may not create VM '%s' with these labels: its policy allows %s only "
                       "for VMs labelled %s"
                     : "%s may not touch VM '%s': its policy allows %s only for VMs labelled %s",
              who, vm_id, method, (const char *)sel.data);
    buf_free(&sel);
    log_decision(LOG_WARN, call, vm_id, who, "call refused: ", (*err)->message);
    return -1;
}

static bool visible(rpc_call *call, const vm_label *labels, size_t n, void *ud)
{
    const auth_subject *s = rpc_call_grant(call);
    if (!s || auth_all_vms(s))
        return true;
    auth_label al[VM_MAX_LABELS];
    if (n > VM_MAX_LABELS)
        n = VM_MAX_LABELS;
    return auth_labels_allowed(s, al, to_auth_labels(labels, n, al));
}

access_ctl *access_start(const chcp_config *cfg, rpc_server *rpc, api_access *out, chcp_error **err)
{
    const ProtobufCServiceDescriptor *svc = &cloudhypervisor__v1__vm_service__descriptor;
    const char *methods[64];
    size_t n_methods = 0;
    for (unsigned i = 0; i < svc->n_methods && n_methods < ARRAY_SIZE(methods); i++)
        methods[n_methods++] = svc->methods[i].name;
    auth_config ac = {.tokens_file = cfg->auth_tokens_file,
                      .policy_file = cfg->auth_policy_file,
                      .tcp_requires_auth = config_tcp_requires_auth(cfg),
                      .unix_uids = cfg->unix_allowed_uids.ids,
                      .n_unix_uids = cfg->unix_allowed_uids.n,
                      .unix_gids = cfg->unix_allowed_gids.ids,
                      .n_unix_gids = cfg->unix_allowed_gids.n,
                      .methods = methods,
                      .n_methods = n_methods};
    auth *au = auth_new(&ac, err);
    if (!au)
        return NULL;
    access_ctl *a = xcalloc(1, sizeof(*a));
    a->auth = au;
    a->tcp_requires_auth = ac.tcp_requires_auth;
    a->mutual_tls = cfg->tls_client_ca != NULL;
    rpc_server_set_guard(rpc, guard, a);
    *out = (api_access){.check_vm = check_vm, .visible = visible, .ud = a};
    return a;
}

int access_reload(access_ctl *a, chcp_error **err)
{
    return auth_reload(a->auth, err);
}

bool access_http_allowed(access_ctl *a, const http_request *req, chcp_error **err)
{
    auth_subject *s =
        auth_authenticate(a->auth, req->identity, http_request_header(req, "authorization"), err);
    auth_subject_free(s);
    return s != NULL;
}

void access_describe(const access_ctl *a, char *buf, size_t size)
{
    size_t tokens = auth_token_count(a->auth);
    int n = snprintf(buf, size, "%s%s%zu token(s), ",
                     a->tcp_requires_auth ? "clients must authenticate: " : "open, ",
                     a->mutual_tls ? "mutual TLS, " : "", tokens);
    if (n < 0 || (size_t)n >= size)
        return;
    if (auth_has_policy(a->auth))
        snprintf(buf + n, size - (size_t)n, "policy with %zu rule(s)", auth_rule_count(a->auth));
    else
        snprintf(buf + n, size - (size_t)n, "no policy (every caller may do everything)");
}

void access_free(access_ctl *a)
{
    if (!a)
        return;
    auth_free(a->auth);
    free(a);
}
