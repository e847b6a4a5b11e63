/*
 * server.c - test-only ConnectRPC conformance server for chcp's transport and
 * rpc layers, driven by `connectconformance --mode server`.
 *
 * Protocol with the runner: read a size-delimited ServerCompatRequest (4-byte
 * big-endian length + protobuf) from stdin, listen on 127.0.0.1:0, write a
 * size-delimited ServerCompatResponse{host, port} to stdout, serve until
 * SIGTERM. Implements connectrpc.conformance.v1.ConformanceService (all but
 * Unimplemented, which must answer unimplemented) following the suite's
 * handler contract: echo request headers, timeout, the requests (as Any) and
 * GET query parameters in a RequestInfo, then obey the response definition
 * (headers, trailers, delays on uv_timers, data or an error with the
 * RequestInfo appended as a detail). The streaming methods live in
 * streams.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "conformance.h"
#include "connectrpc/conformance/v1/server_compat.pb-c.h"

extern const protometa_table conformance_protometa;

/* ---- stdin/stdout framing ------------------------------------------------ */

static int read_full(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static Connectrpc__Conformance__V1__ServerCompatRequest *read_request(void)
{
    uint8_t len_be[4];
    if (read_full(0, len_be, 4) < 0)
        return NULL;
    size_t len =
        (size_t)len_be[0] << 24 | (size_t)len_be[1] << 16 | (size_t)len_be[2] << 8 | len_be[3];
    if (len > 16u << 20)
        return NULL;
    cleanup_free uint8_t *data = xmalloc(len);
    if (read_full(0, data, len) < 0)
        return NULL;
    return connectrpc__conformance__v1__server_compat_request__unpack(NULL, len, data);
}

static int write_response(uint16_t port)
{
    Connectrpc__Conformance__V1__ServerCompatResponse resp =
        CONNECTRPC__CONFORMANCE__V1__SERVER_COMPAT_RESPONSE__INIT;
    resp.host = "127.0.0.1";
    resp.port = port;
    size_t len = protobuf_c_message_get_packed_size(&resp.base);
    cleanup_free uint8_t *out = xmalloc(len + 4);
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    protobuf_c_message_pack(&resp.base, out + 4);
    return write_full(1, out, len + 4);
}

/* ---- building RequestInfo ------------------------------------------------- */

void *arena_alloc(arena *a, size_t size)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->p = xrealloc(a->p, a->cap * sizeof(*a->p));
    }
    return a->p[a->n++] = xcalloc(1, size);
}

void arena_free(arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->p[i]);
    free(a->p);
}

/* Group name/value pairs into Header messages (repeated names -> one Header
 * with several values, in order). */
static size_t group_headers(arena *a, const http_header *in, size_t n, Header ***out)
{
    Header **groups = arena_alloc(a, (n ? n : 1) * sizeof(*groups));
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        Header *g = NULL;
        for (size_t j = 0; j < ng && !g; j++)
            if (strcasecmp(groups[j]->name, in[i].name) == 0)
                g = groups[j];
        if (!g) {
            g = arena_alloc(a, sizeof(*g));
            connectrpc__conformance__v1__header__init(g);
            g->name = (char *)in[i].name;
            g->value = arena_alloc(a, n * sizeof(char *));
            groups[ng++] = g;
        }
        g->value[g->n_value++] = (char *)in[i].value;
    }
    *out = groups;
    return ng;
}

Google__Protobuf__Any *pack_any(arena *a, const ProtobufCMessage *msg)
{
    Google__Protobuf__Any *any = arena_alloc(a, sizeof(*any));
    google__protobuf__any__init(any);
    size_t url_len = strlen(msg->descriptor->name) + 32;
    any->type_url = arena_alloc(a, url_len);
    snprintf(any->type_url, url_len, "type.googleapis.com/%s", msg->descriptor->name);
    any->value.len = protobuf_c_message_get_packed_size(msg);
    any->value.data = arena_alloc(a, any->value.len + 1);
    protobuf_c_message_pack(msg, any->value.data);
    return any;
}

RequestInfo *request_info(arena *a, rpc_call *call, Google__Protobuf__Any **reqs, size_t n_reqs)
{
    const http_request *req = rpc_call_http(call);
    RequestInfo *info = arena_alloc(a, sizeof(*info));
    connectrpc__conformance__v1__conformance_payload__request_info__init(info);
    info->n_request_headers =
        group_headers(a, req->headers, req->n_headers, &info->request_headers);
    if (rpc_call_timeout_ms(call) >= 0) {
        info->_timeout_ms_case =
            CONNECTRPC__CONFORMANCE__V1__CONFORMANCE_PAYLOAD__REQUEST_INFO___TIMEOUT_MS_TIMEOUT_MS;
        info->timeout_ms = rpc_call_timeout_ms(call);
    }
    info->requests = reqs;
    info->n_requests = n_reqs;
    const http_header *q;
    size_t nq = rpc_call_query(call, &q);
    if (nq) {
        ConnectGetInfo *g = arena_alloc(a, sizeof(*g));
        connectrpc__conformance__v1__conformance_payload__connect_get_info__init(g);
        g->n_query_params = group_headers(a, q, nq, &g->query_params);
        info->connect_get_info = g;
    }
    return info;
}

/* ---- the handler ---------------------------------------------------------------- */

typedef struct pending {
    rpc_call *call;
    const ProtobufCMessage *request;
    const ResponseDefinition *def;
    bool idempotent;
    uv_timer_t timer;
    bool timer_on;
} pending;

static void pending_closed(uv_handle_t *h)
{
    free(h->data);
}

static void pending_done(pending *p)
{
    if (p->timer_on)
        uv_close((uv_handle_t *)&p->timer, pending_closed);
    else
        free(p);
}

static void answer(pending *p)
{
    arena a = {0};
    rpc_call *call = p->call;
    Google__Protobuf__Any **one = arena_alloc(&a, sizeof(*one));
    one[0] = pack_any(&a, p->request);
    RequestInfo *info = request_info(&a, call, one, 1);
    const ResponseDefinition *def = p->def;
    if (def && def->response_case ==
                   CONNECTRPC__CONFORMANCE__V1__UNARY_RESPONSE_DEFINITION__RESPONSE_ERROR) {
        const Connectrpc__Conformance__V1__Error *e = def->error;
        size_t n = e->n_details + 1;
        const ProtobufCMessage **details = arena_alloc(&a, n * sizeof(*details));
        for (size_t i = 0; i < e->n_details; i++)
            details[i] = &e->details[i]->base;
        details[n - 1] = &pack_any(&a, &info->base)->base;
        const char *msg = e->_message_case == CONNECTRPC__CONFORMANCE__V1__ERROR___MESSAGE_MESSAGE
                              ? e->message
                              : "";
        rpc_call_fail_details(call, (chcp_code)e->code, msg, details, n);
    } else {
        Payload payload = CONNECTRPC__CONFORMANCE__V1__CONFORMANCE_PAYLOAD__INIT;
        payload.request_info = info;
        if (def &&
            def->response_case ==
                CONNECTRPC__CONFORMANCE__V1__UNARY_RESPONSE_DEFINITION__RESPONSE_RESPONSE_DATA)
            payload.data = def->response_data;
        if (p->idempotent) {
            Connectrpc__Conformance__V1__IdempotentUnaryResponse r =
                CONNECTRPC__CONFORMANCE__V1__IDEMPOTENT_UNARY_RESPONSE__INIT;
            r.payload = &payload;
            rpc_call_succeed(call, &r.base);
        } else {
            Connectrpc__Conformance__V1__UnaryResponse r =
                CONNECTRPC__CONFORMANCE__V1__UNARY_RESPONSE__INIT;
            r.payload = &payload;
            rpc_call_succeed(call, &r.base);
        }
    }
    arena_free(&a);
}

static void on_delay(uv_timer_t *t)
{
    pending *p = t->data;
    answer(p);
    pending_done(p);
}

/* Deadline passed or the client left: stop waiting and finish the call (the
 * rpc layer already answered; this answer is dropped). */
static void on_cancel(rpc_call *call, void *ud)
{
    pending *p = ud;
    uv_timer_stop(&p->timer);
    rpc_call_fail(call, CHCP_CANCELED, "canceled");
    pending_done(p);
}

void add_metadata(rpc_call *call, Header *const *h, size_t n, bool trailers)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < h[i]->n_value; j++) {
            const char *v = h[i]->value[j];
            if (trailers)
                rpc_call_add_trailer(call, h[i]->name, v, strlen(v));
            else
                rpc_call_add_header(call, h[i]->name, v, strlen(v));
        }
}

static void handle(rpc_call *call, const ProtobufCMessage *request, bool idempotent)
{
    pending *p = xcalloc(1, sizeof(*p));
    p->call = call;
    p->request = request;
    p->idempotent = idempotent;
    p->def =
        idempotent
            ? ((const Connectrpc__Conformance__V1__IdempotentUnaryRequest *)request)
                  ->response_definition
            : ((const Connectrpc__Conformance__V1__UnaryRequest *)request)->response_definition;
    if (p->def) {
        add_metadata(call, p->def->response_headers, p->def->n_response_headers, false);
        add_metadata(call, p->def->response_trailers, p->def->n_response_trailers, true);
    }
    if (!p->def || p->def->response_delay_ms == 0) {
        answer(p);
        pending_done(p);
        return;
    }
    uv_timer_init(uv_default_loop(), &p->timer);
    p->timer.data = p;
    p->timer_on = true;
    rpc_call_on_cancel(call, on_cancel, p);
    uv_timer_start(&p->timer, on_delay, p->def->response_delay_ms, 0);
}

static void unary(rpc_call *call, const ProtobufCMessage *request, void *sd)
{
    handle(call, request, false);
}

static void idempotent_unary(rpc_call *call, const ProtobufCMessage *request, void *sd)
{
    handle(call, request, true);
}

/* ---- main ----------------------------------------------------------------------- */

static transport *tp;

static void on_closed(void *ud)
{
    uv_stop(uv_default_loop());
}

static void on_sigterm(uv_signal_t *sig, int signum)
{
    uv_signal_stop(sig);
    uv_close((uv_handle_t *)sig, NULL);
    transport_close(tp, on_closed, NULL);
}

int main(void)
{
    Connectrpc__Conformance__V1__ServerCompatRequest *req = read_request();
    if (!req) {
        fprintf(stderr, "conformance server: cannot read ServerCompatRequest from stdin\n");
        return 1;
    }
    if (req->use_tls) {
        fprintf(stderr, "conformance server: TLS is not supported\n");
        return 1;
    }
    protometa_register(&conformance_protometa);
    uv_loop_t *loop = uv_default_loop();
    rpc_limits lim = {.max_message_bytes = req->message_receive_limit, .compress_min_bytes = 1024};
    protobuf_c_message_free_unpacked(&req->base, NULL);
    rpc_server *rpc = rpc_server_new(loop, &lim);
    static const rpc_method_impl impls[] = {
        {"Unary", unary},
        {"IdempotentUnary", idempotent_unary},
        {"ServerStream", conformance_server_stream},
        {"ClientStream", conformance_client_stream},
        {"BidiStream", conformance_bidi_stream},
    };
    chcp_error *err = NULL;
    if (rpc_server_register(rpc, &connectrpc__conformance__v1__conformance_service__descriptor,
                            impls, ARRAY_SIZE(impls), NULL, &err) < 0) {
        fprintf(stderr, "conformance server: %s\n", err->message);
        return 1;
    }
    transport_limits tl;
    transport_limits_default(&tl);
    tp = transport_new(loop, &tl, rpc_server_on_request, rpc_server_on_cancel, rpc);
    http_stream_hooks hooks;
    rpc_server_stream_hooks(rpc, &hooks);
    transport_set_stream_hooks(tp, &hooks);
    if (transport_listen_tcp(tp, "127.0.0.1", 0, &err) < 0) {
        fprintf(stderr, "conformance server: %s\n", err->message);
        return 1;
    }
    if (write_response(transport_tcp_port(tp)) < 0)
        return 1;
    /* Keep stdout for the runner's protocol only: logs go to stderr. */
    dup2(2, 1);
    uv_signal_t sig;
    uv_signal_init(loop, &sig);
    uv_signal_start(&sig, on_sigterm, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    uv_run(loop, UV_RUN_DEFAULT);
    /* Let closing handles run their callbacks, then free. */
    uv_run(loop, UV_RUN_NOWAIT);
    if (rpc_server_active_calls(rpc) != 0) {
        fprintf(stderr, "conformance server: %zu calls still active at exit\n",
                rpc_server_active_calls(rpc));
        return 1;
    }
    rpc_server_free(rpc);
    uv_loop_close(loop);
    return 0;
}
