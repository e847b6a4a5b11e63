/*
 * observe_cache.c - what the telemetry hooks would otherwise rebuild on every
 * call, built once: per RPC route (method x protocol x HTTP version x kind of
 * peer) the span name, the constant span attributes as a pre-encoded block and
 * the metric series handles; per VMM call the span name and URL path; per operation
 * kind the span name.
 *
 * Span names and blocks are borrowed by spans until they are exported, so
 * everything here lives until observe_free() (after the telemetry pipeline
 * has shut down). Methods are keyed by the address of their descriptor's
 * name, which never changes.
 */
#include <stdio.h>
#include <string.h>

#include "daemon/observe_internal.h"

struct observe_caches {
    observe_route *last;    /* the route of the call before */
    observe_route **routes; /* open addressing, linear probing */
    size_t n_routes, cap_routes;
    observe_call *calls; /* a handful: linear */
    size_t n_calls, cap_calls;
    const char *op_names[VM_OP_CREATE_JOIN + 1];
};

static const char *rpc_system(rpc_protocol p)
{
    return p == RPC_PROTOCOL_GRPC       ? "grpc"
           : p == RPC_PROTOCOL_GRPC_WEB ? "grpc_web"
                                        : "connect_rpc";
}

/* The peer's kind, from the transport's peer text. */
static char peer_kind(const http_request *req)
{
    const char *p = req ? req->peer : NULL;
    return !p || p[0] == 'u' ? 'u' : p[0] == '[' ? '6' : '4';
}

static size_t route_hash(const char *method, rpc_protocol proto, int http_major, char peer)
{
    uintptr_t h = (uintptr_t)method ^ ((uintptr_t)proto << 3) ^ ((uintptr_t)http_major << 6) ^
                  ((uintptr_t)peer << 9);
    h ^= h >> 17;
    return (size_t)(h * 0x9E3779B97F4A7C15ull >> 7);
}

static observe_route *route_new(observe *o, rpc_call *call, const char *method, rpc_protocol proto,
                                int http_major, char peer)
{
    observe_route *r = xcalloc(1, sizeof(*r));
    r->method = method;
    r->proto = proto;
    r->http_major = http_major;
    r->peer = peer;
    const char *service = rpc_call_service(call);
    r->system = rpc_system(proto);
    r->span_name = xasprintf("%s/%s", service, method);
    const char *version = http_major == 2 ? "2" : http_major == 1 ? "1.1" : NULL;
    const char *kv[16];
    size_t n = 0;
#define PAIR(k, v) (kv[n++] = (k), kv[n++] = (v))
    PAIR("rpc.system", r->system);
    PAIR("rpc.service", service);
    PAIR("rpc.method", method);
    PAIR("network.transport", peer == 'u' ? "unix" : "tcp");
    if (peer != 'u')
        PAIR("network.type", peer == '6' ? "ipv6" : "ipv4");
    if (version) {
        PAIR("network.protocol.name", "http");
        PAIR("network.protocol.version", version);
    }
#undef PAIR
    kv[n] = NULL;
    r->attrs = tm_attr_block_new(kv);
    const char *active[] = {r->system, service, method, NULL};
    r->active = tm_series_get(o->rpc_active, active);
    return r; /* the per-code series come on first use (observe_route_count) */
}

static observe_route *route_lookup(observe *o, rpc_call *call, const char *method,
                                   rpc_protocol proto, int http_major, char peer);

static void routes_grow(observe_caches *c)
{
    size_t cap = c->cap_routes ? 2 * c->cap_routes : 64;
    observe_route **slots = xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < c->cap_routes; i++) {
        observe_route *r = c->routes[i];
        if (!r)
            continue;
        size_t k = route_hash(r->method, r->proto, r->http_major, r->peer) & (cap - 1);
        while (slots[k])
            k = (k + 1) & (cap - 1);
        slots[k] = r;
    }
    free(c->routes);
    c->routes = slots;
    c->cap_routes = cap;
}

observe_route *observe_route_of(observe *o, rpc_call *call)
{
    observe_caches *c = o->caches;
    const char *method = rpc_call_method(call);
    rpc_protocol proto = rpc_call_protocol(call);
    const http_request *req = rpc_call_http(call);
    int http_major = req ? req->http_major : 0;
    char peer = peer_kind(req);
    observe_route *last = c->last;
    if (last && last->method == method && last->proto == proto && last->http_major == http_major &&
        last->peer == peer)
        return last; /* the common case: the same route as the call before */
    return c->last = route_lookup(o, call, method, proto, http_major, peer);
}

static observe_route *route_lookup(observe *o, rpc_call *call, const char *method,
                                   rpc_protocol proto, int http_major, char peer)
{
    observe_caches *c = o->caches;
    if (c->n_routes * 2 >= c->cap_routes)
        routes_grow(c);
    size_t mask = c->cap_routes - 1;
    for (size_t k = route_hash(method, proto, http_major, peer) & mask;; k = (k + 1) & mask) {
        observe_route *r = c->routes[k];
        if (!r) {
            c->routes[k] = r = route_new(o, call, method, proto, http_major, peer);
            c->n_routes++;
            return r;
        }
        if (r->method == method && r->proto == proto && r->http_major == http_major &&
            r->peer == peer)
            return r;
    }
}

/* The code's series of a route: made on its first use. */
void observe_route_count(observe *o, observe_route *r, rpc_call *call, chcp_code code,
                         double seconds)
{
    int c = (unsigned)code <= CHCP_UNAUTHENTICATED ? (int)code : CHCP_UNKNOWN;
    if (!r->requests[c]) {
        const char *labels[] = {r->system, rpc_call_service(call), r->method, code_name(code),
                                NULL};
        r->requests[c] = tm_series_get(o->rpc_requests, labels);
        r->duration[c] = tm_series_get(o->rpc_duration, labels);
    }
    tm_series_add(r->requests[c], 1);
    if (seconds >= 0)
        tm_series_observe(r->duration[c], seconds);
}

const observe_call *observe_call_of(observe *o, const char *what)
{
    observe_caches *c = o->caches;
    for (size_t i = 0; i < c->n_calls; i++)
        if (c->calls[i].what == what || strcmp(c->calls[i].what, what) == 0)
            return &c->calls[i];
    if (c->n_calls == c->cap_calls) {
        c->cap_calls = c->cap_calls ? 2 * c->cap_calls : 16;
        c->calls = xrealloc(c->calls, c->cap_calls * sizeof(*c->calls));
    }
    observe_call *call = &c->calls[c->n_calls++];
    bool spawn = strcmp(what, "spawn") == 0;
    bool get = strcmp(what, "vm.info") == 0 || strcmp(what, "vmm.ping") == 0 ||
               strcmp(what, "vm.counters") == 0;
    call->what = xstrdup(what);
    call->spawn = spawn;
    call->span_name = spawn ? xstrdup("vm.spawn") : xasprintf("cloud-hypervisor %s", what);
    const char *path = spawn ? NULL : xasprintf("/api/v1/%s", what);
    const char *kv[] = {"http.request.method",
                        get ? "GET" : "PUT",
                        "url.path",
                        path,
                        "network.transport",
                        "unix",
                        NULL};
    call->attrs = spawn ? NULL : tm_attr_block_new(kv);
    free((char *)path);
    return call;
}

const char *observe_op_name(observe *o, vm_op_kind kind)
{
    observe_caches *c = o->caches;
    if ((unsigned)kind >= ARRAY_SIZE(c->op_names))
        return "vm.unknown";
    if (!c->op_names[kind])
        c->op_names[kind] = xasprintf("vm.%s", vm_op_kind_name(kind));
    return c->op_names[kind];
}

void observe_caches_init(observe *o)
{
    o->caches = xcalloc(1, sizeof(observe_caches));
}

void observe_caches_free(observe *o)
{
    observe_caches *c = o->caches;
    if (!c)
        return;
    for (size_t i = 0; i < c->cap_routes; i++) {
        observe_route *r = c->routes[i];
        if (!r)
            continue;
        free(r->span_name);
        tm_attr_block_free(r->attrs);
        free(r);
    }
    free(c->routes);
    for (size_t i = 0; i < c->n_calls; i++) {
        free((char *)c->calls[i].what);
        free((char *)c->calls[i].span_name);
        tm_attr_block_free(c->calls[i].attrs);
    }
    free(c->calls);
    for (size_t i = 0; i < ARRAY_SIZE(c->op_names); i++)
        free((char *)c->op_names[i]);
    free(c);
    o->caches = NULL;
}
