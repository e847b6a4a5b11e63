/*
 * health.c - grpc.health.v1.Health: Check and Watch over the daemon's
 * readiness (observe_ready: stored VMs recovered, the VMM backend usable, the
 * state directory healthy, not shutting down), so gRPC probes agree with
 * /readyz.
 *
 *   ""  and cloudhypervisor.v1.VmService   SERVING when ready, else NOT_SERVING
 *   the health and reflection services     SERVING (they work whenever the
 *                                          loop runs), NOT_SERVING when stopping
 *   anything else                          Check: NOT_FOUND; Watch: SERVICE_UNKNOWN
 *
 * Readiness can change without an event (the VMM binary removed, the state
 * directory replaced), so watchers are served by one poll timer that runs
 * while anybody watches and sends a status only when it differs from the
 * last one sent to that watcher. A watcher whose client does not read keeps
 * at most the high-water mark queued: a change is sent on a later tick, when
 * the queue has room. When the daemon stops, every watcher gets NOT_SERVING
 * and its stream ends.
 */
#include "daemon/health.h"

#include "grpc/health/v1/health.pb-c.h"

#include <string.h>

/* How often watched readiness is re-evaluated. */
#define HEALTH_POLL_MS 1000

typedef Grpc__Health__V1__HealthCheckRequest CheckRequest;
typedef Grpc__Health__V1__HealthCheckResponse CheckResponse;
typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus ServingStatus;

typedef struct watcher watcher;
struct watcher {
    health_service *h;
    rpc_call *call;
    char *service;
    int sent; /* last status sent, -1 before the first */
    watcher *next, *prev;
};

struct health_service {
    observe *obs;
    const bool *stopping;
    bool stopped;
    uv_timer_t timer;
    bool timer_on;
    watcher *watchers;
};

static bool daemon_service(const char *name)
{
    return !*name || strcmp(name, "cloudhypervisor.v1.VmService") == 0;
}

static bool always_service(const char *name)
{
    return strcmp(name, "grpc.health.v1.Health") == 0 ||
           strcmp(name, "grpc.reflection.v1.ServerReflection") == 0 ||
           strcmp(name, "grpc.reflection.v1alpha.ServerReflection") == 0;
}

static ServingStatus status_of(health_service *h, const char *name)
{
    if (!daemon_service(name) && !always_service(name))
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    bool stopping = h->stopped || *h->stopping;
    bool up = always_service(name) ? !stopping : observe_ready(h->obs, stopping, NULL, 0);
    return up ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
              : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void check(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    health_service *h = sd;
    const CheckRequest *req = (const CheckRequest *)msg;
    ServingStatus st = status_of(h, req->service);
    if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
        cleanup_free char *why = xasprintf("unknown service \"%s\"", req->service);
        rpc_call_fail(call, CHCP_NOT_FOUND, why);
        return;
    }
    CheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st;
    rpc_call_succeed(call, &resp.base);
}

/* ---- Watch ----------------------------------------------------------------- */

static void watcher_unlink(watcher *w)
{
    health_service *h = w->h;
    if (w->prev)
        w->prev->next = w->next;
    else
        h->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (!h->watchers && h->timer_on) {
        uv_timer_stop(&h->timer);
        h->timer_on = false;
    }
    free(w->service);
    free(w);
}

/* Send the status if it changed and the client keeps up. */
static void watcher_update(watcher *w)
{
    ServingStatus st = status_of(w->h, w->service);
    if ((int)st == w->sent || !rpc_call_send_ready(w->call))
        return;
    CheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st;
    if (rpc_call_send(w->call, &resp.base) == 0)
        w->sent = (int)st;
}

static void on_poll(uv_timer_t *t)
{
    health_service *h = t->data;
    for (watcher *w = h->watchers; w; w = w->next)
        watcher_update(w);
}

static void watch_cancel(rpc_call *call, void *ud)
{
    watcher *w = ud;
    rpc_call_fail(call, CHCP_CANCELED, "canceled");
    watcher_unlink(w);
}

static void watch(rpc_call *call, const ProtobufCMessage *msg, void *sd)
{
    health_service *h = sd;
    const CheckRequest *req = (const CheckRequest *)msg;
    if (h->stopped) {
        rpc_call_fail(call, CHCP_UNAVAILABLE, "the server is shutting down");
        return;
    }
    watcher *w = xcalloc(1, sizeof(*w));
    w->h = h;
    w->call = call;
    w->service = xstrdup(req->service);
    w->sent = -1;
    w->next = h->watchers;
    if (h->watchers)
        h->watchers->prev = w;
    h->watchers = w;
    rpc_call_on_cancel(call, watch_cancel, w);
    watcher_update(w);
    if (!h->timer_on) {
        uv_timer_start(&h->timer, on_poll, HEALTH_POLL_MS, HEALTH_POLL_MS);
        h->timer_on = true;
    }
}

/* ---- life cycle -------------------------------------------------------------- */

void health_service_free(health_service *h);

health_service *health_service_start(uv_loop_t *loop, rpc_server *rpc, observe *obs,
                                     const bool *stopping, chcp_error **err)
{
    health_service *h = xcalloc(1, sizeof(*h));
    h->obs = obs;
    h->stopping = stopping;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    const rpc_method_impl impls[] = {{"Check", check}, {"Watch", watch}};
    if (rpc_server_register(rpc, &grpc__health__v1__health__descriptor, impls, ARRAY_SIZE(impls), h,
                            err) < 0) {
        health_service_free(h);
        return NULL;
    }
    return h;
}

void health_service_stop(health_service *h)
{
    if (!h || h->stopped)
        return;
    h->stopped = true;
    if (h->timer_on) {
        uv_timer_stop(&h->timer);
        h->timer_on = false;
    }
    watcher *w;
    while ((w = h->watchers)) {
        h->watchers = w->next;
        if (h->watchers)
            h->watchers->prev = NULL;
        rpc_call *call = w->call;
        /* NOT_SERVING, as the stream ends (if the client has room for it). */
        CheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = status_of(h, w->service);
        if ((int)resp.status != w->sent && rpc_call_send_ready(call))
            rpc_call_send(call, &resp.base);
        free(w->service);
        free(w);
        rpc_call_succeed(call, NULL);
    }
}

static void on_timer_closed(uv_handle_t *t)
{
    free(t->data);
}

void health_service_free(health_service *h)
{
    if (!h)
        return;
    health_service_stop(h);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}
