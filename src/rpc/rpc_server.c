/*
 * rpc_server.c - the rpc server: method registry, routing of an
 * http_request to a method and protocol, and the life of a call (handler,
 * deadline timer, cancellation, the single answer to the transport).
 *
 * Routing follows connect-go's Handler.ServeHTTP and happens as soon as the
 * headers arrive (rpc_server_stream_hooks): unknown path -> 404 (or the
 * fallback), HTTP method not allowed -> 405 + Allow, no protocol for the
 * Content-Type -> 415 + Accept-Post, GET with a body -> 415. Everything after
 * that is answered in the request's own protocol. Unary and server-stream
 * calls then wait for their whole (bounded) body; client and bidi streams
 * start their handler at once and receive their body as it arrives
 * (rpc_stream.c).
 *
 * A call is freed when all are true: it was answered (the transport has the
 * response and has freed the request), the handler finished it, and no
 * handler callback is running. A deadline, a client cancel or a malformed
 * incoming message answers first; the handler's later answer is dropped.
 */
#include "rpc/rpc_internal.h"

#include <string.h>

/* ---- registry (open addressing keyed by "/pkg.Service/Method") ---------- */

static uint64_t hash_path(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static rpc_method *lookup(const rpc_server *s, const char *path)
{
    if (!s->cap_methods || !path)
        return NULL;
    size_t mask = s->cap_methods - 1;
    for (size_t i = hash_path(path) & mask;; i = (i + 1) & mask) {
        rpc_method *m = &s->methods[i];
        if (!m->path)
            return NULL;
        if (strcmp(m->path, path) == 0)
            return m;
    }
}

static void grow(rpc_server *s)
{
    size_t cap = s->cap_methods ? s->cap_methods * 2 : 16;
    rpc_method *old = s->methods;
    size_t old_cap = s->cap_methods;
    s->methods = xcalloc(cap, sizeof(*s->methods));
    s->cap_methods = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].path)
            continue;
        size_t j = hash_path(old[i].path) & (cap - 1);
        while (s->methods[j].path)
            j = (j + 1) & (cap - 1);
        s->methods[j] = old[i];
    }
    free(old);
}

static rpc_method *insert_slot(rpc_server *s, const char *path)
{
    if ((s->n_methods + 1) * 2 > s->cap_methods)
        grow(s);
    size_t mask = s->cap_methods - 1;
    size_t i = hash_path(path) & mask;
    while (s->methods[i].path)
        i = (i + 1) & mask;
    s->n_methods++;
    return &s->methods[i];
}

rpc_server *rpc_server_new(uv_loop_t *loop, const rpc_limits *limits)
{
    rpc_server *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    if (limits)
        s->limits = *limits;
    else
        s->limits = (rpc_limits){.max_message_bytes = 0, .compress_min_bytes = 1024};
    /* Always bounded: gzip could otherwise inflate a body 1000-fold. */
    if (s->limits.max_message_bytes == 0)
        s->limits.max_message_bytes = RPC_DEFAULT_MAX_MESSAGE;
    if (s->limits.max_message_elements == 0)
        s->limits.max_message_elements = RPC_DEFAULT_MAX_ELEMENTS;
    s->respond = http_respond;
    s->budgets = true;
    return s;
}

void rpc_server_free(rpc_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cap_methods; i++)
        free(s->methods[i].path);
    free(s->services);
    free(s->methods);
    rpc_compressors_free(s);
    free(s);
}

void rpc_server_set_observer(rpc_server *s, const rpc_observer *obs)
{
    s->obs = obs ? *obs : (rpc_observer){0};
}

void rpc_server_set_guard(rpc_server *s, rpc_guard_fn fn, void *ud)
{
    s->guard = fn;
    s->guard_ud = ud;
}

void rpc_server_set_fallback(rpc_server *s, rpc_fallback_fn fn, void *ud)
{
    s->fallback = fn;
    s->fallback_ud = ud;
}

void rpc_server_set_responder(rpc_server *s, rpc_respond_fn fn)
{
    s->respond = fn ? fn : http_respond;
    s->budgets = !fn;
}

size_t rpc_server_active_calls(const rpc_server *s)
{
    return s->active_calls;
}

size_t rpc_server_services(const rpc_server *s, const char **names, size_t max)
{
    size_t n = s->n_services < max ? s->n_services : max;
    for (size_t i = 0; i < n; i++)
        names[i] = s->services[i];
    return n;
}

static void streams_link(rpc_call *call)
{
    rpc_server *s = call->server;
    call->in_streams = true;
    call->stream_next = s->streams;
    if (s->streams)
        s->streams->stream_prev = call;
    s->streams = call;
}

static void streams_unlink(rpc_call *call)
{
    if (!call->in_streams)
        return;
    call->in_streams = false;
    if (call->stream_prev)
        call->stream_prev->stream_next = call->stream_next;
    else
        call->server->streams = call->stream_next;
    if (call->stream_next)
        call->stream_next->stream_prev = call->stream_prev;
    call->stream_next = call->stream_prev = NULL;
}

void rpc_server_cancel_streams(rpc_server *s, chcp_code code, const char *message)
{
    /* New streams would hold the drain up too: refused from now on. */
    s->streams_closed = true;
    rpc_call *c;
    while ((c = s->streams)) {
        /* Off the list first: the cancel may free it. */
        s->streams = c->stream_next;
        if (s->streams)
            s->streams->stream_prev = NULL;
        c->in_streams = false;
        c->stream_next = NULL;
        rpc_call_cancel(c, code, message);
    }
}

int rpc_server_register(rpc_server *s, const ProtobufCServiceDescriptor *service,
                        const rpc_method_impl *impls, size_t n_impls, void *service_data,
                        chcp_error **err)
{
    for (size_t i = 0; i < n_impls; i++) {
        bool found = false;
        for (unsigned j = 0; j < service->n_methods && !found; j++)
            found = strcmp(service->methods[j].name, impls[i].name) == 0;
        if (!found)
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s has no method %s", service->name,
                             impls[i].name);
    }
    s->services = xrealloc(s->services, (s->n_services + 1) * sizeof(*s->services));
    s->services[s->n_services++] = service->name;
    for (unsigned j = 0; j < service->n_methods; j++) {
        const ProtobufCMethodDescriptor *md = &service->methods[j];
        cleanup_free char *path = xasprintf("/%s/%s", service->name, md->name);
        if (lookup(s, path))
            return error_set(err, CHCP_ALREADY_EXISTS, "%s is already registered", path);
        rpc_handler_fn fn = NULL;
        for (size_t i = 0; i < n_impls; i++)
            if (strcmp(impls[i].name, md->name) == 0)
                fn = impls[i].handler;
        const protometa_method *pm = protometa_find_method(service->name, md->name);
        rpc_stream_type type = RPC_STREAM_UNARY;
        if (pm && pm->client_streaming)
            type = pm->server_streaming ? RPC_STREAM_BIDI : RPC_STREAM_CLIENT;
        else if (pm && pm->server_streaming)
            type = RPC_STREAM_SERVER;
        rpc_method *m = insert_slot(s, path);
        *m = (rpc_method){
            .path = steal_pointer(&path),
            .service_name = service->name,
            .method_name = md->name,
            .input = md->input,
            .output = md->output,
            .handler = fn,
            .service_data = service_data,
            .stream_type = type,
            .get_allowed =
                type == RPC_STREAM_UNARY &&
                protometa_method_idempotency(service->name, md->name) == PROTOMETA_NO_SIDE_EFFECTS,
        };
    }
    return 0;
}

/* ---- call lifecycle ------------------------------------------------------ */

static void call_free(rpc_call *call)
{
    if (call->request)
        protobuf_c_message_free_unpacked(call->request, NULL);
    http_charge_release(call->charge);
    rpc_query_free(call->query, call->n_query);
    rpc_hdrs_free(&call->headers);
    rpc_hdrs_free(&call->trailers);
    if (call->grant_free)
        call->grant_free(call->grant);
    free(call->principal);
    rpc_stream_free(call);
    free(call);
}

static void on_timer_closed(uv_handle_t *h)
{
    call_free(h->data);
}

void rpc_call_release(rpc_call *call)
{
    if (!call->answered || !call->finished || call->busy)
        return;
    call->server->active_calls--;
    if (call->timer_active) {
        call->timer_active = false;
        uv_close((uv_handle_t *)&call->timer, on_timer_closed);
    } else {
        call_free(call);
    }
}

http_request *rpc_call_mark_answered(rpc_call *call, chcp_code code)
{
    call->answered = true;
    streams_unlink(call);
    if (call->timer_active)
        uv_timer_stop(&call->timer);
    rpc_server *s = call->server;
    /* on_finish sees the request one last time, as the answer leaves. */
    if (call->started && s->obs.on_finish)
        s->obs.on_finish(call, code, s->obs.ud);
    http_request *req = call->req;
    call->req = NULL;
    req->user = NULL;
    return req;
}

void rpc_call_answer(rpc_call *call, const http_response *resp, chcp_code code)
{
    if (call->answered)
        return;
    http_request *req = rpc_call_mark_answered(call, code);
    call->server->respond(req, resp);
}

void rpc_call_cancel(rpc_call *call, chcp_code code, const char *why)
{
    if (call->answered)
        return;
    call->canceled = true;
    rpc_respond_error(call, code, why, NULL, 0);
    void (*fn)(rpc_call *, void *) = call->cancel_fn;
    call->cancel_fn = NULL;
    if (fn && !call->finished) {
        call->busy++;
        fn(call, call->cancel_ud);
        call->busy--;
    }
    rpc_call_release(call);
}

static void on_deadline(uv_timer_t *t)
{
    rpc_call_cancel(t->data, CHCP_DEADLINE_EXCEEDED, "deadline exceeded");
}

void rpc_server_on_cancel(http_request *req, void *rpc_server_ptr)
{
    rpc_server *s = rpc_server_ptr;
    if (req->user == &s->fallback_marker || !req->user)
        return; /* the fallback answers its own requests */
    rpc_call_cancel(req->user, CHCP_CANCELED, "client canceled the call");
}

/* ---- routing --------------------------------------------------------------- */

/* A GET must not carry a body; at header time a declared one counts. */
static bool get_has_body(const http_request *req)
{
    uint64_t n;
    const char *cl = http_request_header(req, "content-length");
    if (cl && (!str_to_u64(cl, UINT64_MAX, &n) || n > 0))
        return true;
    return http_request_header(req, "transfer-encoding") != NULL || req->body_len > 0;
}

/* The Content-Type decides the protocol; a Connect GET names it in the query.
 * Returns 0, or -1 after answering 415. */
static int pick_protocol(rpc_server *s, http_request *req, rpc_call *call)
{
    const char *canonical;
    bool streaming = call->method->stream_type != RPC_STREAM_UNARY;
    if (call->is_get) {
        rpc_query_parse(req->query, &call->query, &call->n_query, NULL);
        const http_header *enc = rpc_query_get(call->query, call->n_query, "encoding");
        char ct[80];
        bool ok =
            enc && enc->value_len < 32 &&
            snprintf(ct, sizeof(ct), "application/%s", enc->value) > 0 &&
            rpc_content_type_parse(ct, false, &call->protocol, &call->codec, &canonical) == 0 &&
            call->protocol == RPC_PROTOCOL_CONNECT;
        if (!ok) {
            rpc_respond_plain(s, req, 415, "accept-post", rpc_accept_post);
            return -1;
        }
        if (get_has_body(req)) {
            rpc_respond_plain(s, req, 415, NULL, NULL);
            return -1;
        }
    } else {
        const http_header *ct = rpc_header(req, "content-type");
        if (!ct || rpc_content_type_parse(ct->value, streaming, &call->protocol, &call->codec,
                                          &canonical) < 0) {
            rpc_respond_plain(s, req, 415, "accept-post",
                              streaming ? rpc_accept_post_stream : rpc_accept_post);
            return -1;
        }
    }
    call->content_type = canonical;
    return 0;
}

static void start_deadline(rpc_call *call)
{
    uint64_t now = time_mono_ns();
    uint64_t left = call->deadline_ns > now ? call->deadline_ns - now : 0;
    uv_timer_init(call->server->loop, &call->timer);
    call->timer.data = call;
    call->timer_active = true;
    uv_timer_start(&call->timer, on_deadline, (left + 999999) / 1000000, 0);
}

/* Route by path, HTTP method and content type. NULL when answered (404,
 * 405, 415) or handed to the fallback; else the call, attached to req. */
static rpc_call *route(rpc_server *s, http_request *req)
{
    const rpc_method *m = lookup(s, req->path);
    if (!m) {
        if (s->fallback) {
            req->user = &s->fallback_marker;
            if (s->fallback(req, s->fallback_ud))
                return NULL;
            req->user = NULL;
        }
        rpc_respond_plain(s, req, 404, NULL, NULL);
        return NULL;
    }
    bool is_get = strcmp(req->method, "GET") == 0;
    if (strcmp(req->method, "POST") != 0 && !(is_get && m->get_allowed)) {
        rpc_respond_plain(s, req, 405, "allow", m->get_allowed ? "GET, POST" : "POST");
        return NULL;
    }
    rpc_call *call = xcalloc(1, sizeof(*call));
    call->server = s;
    call->req = req;
    call->method = m;
    call->is_get = is_get;
    call->timeout_ms = -1;
    if (pick_protocol(s, req, call) < 0) {
        call_free(call);
        return NULL;
    }
    req->user = call;
    s->active_calls++;
    if (s->obs.on_start) {
        call->started = true;
        s->obs.on_start(call, s->obs.ud);
    }
    return call;
}

/* Decode (if `decode`), check and run the handler; or answer the error.
 * `whole_body`: a streamed call's body is already complete (no stream
 * hooks): it is delivered right after the handler starts. */
static void run(rpc_call *call, bool decode, bool whole_body)
{
    const rpc_method *m = call->method;
    cleanup_error chcp_error *err = NULL;
    call->finished = true; /* until the handler owns it */
    rpc_server *s = call->server;
    if (s->guard && s->guard(call, s->guard_ud, &err) < 0) {
        rpc_respond_error(call, err ? err->code : CHCP_PERMISSION_DENIED,
                          err ? err->message : "permission denied", NULL, 0);
    } else if ((decode ? rpc_request_decode(call, &err) : rpc_request_stream_headers(call, &err)) <
               0) {
        rpc_respond_error(call, err ? err->code : CHCP_INTERNAL, err ? err->message : "bad request",
                          NULL, 0);
    } else if (!m->handler) {
        cleanup_free char *msg = xasprintf("%s is not implemented", m->path + 1);
        rpc_respond_error(call, CHCP_UNIMPLEMENTED, msg, NULL, 0);
    } else if (call->deadline_ns && time_mono_ns() >= call->deadline_ns) {
        rpc_respond_error(call, CHCP_DEADLINE_EXCEEDED, "deadline exceeded", NULL, 0);
    } else if (m->stream_type != RPC_STREAM_UNARY && call->server->streams_closed) {
        rpc_respond_error(call, CHCP_UNAVAILABLE, "the server is shutting down", NULL, 0);
    } else {
        call->finished = false;
        if (call->deadline_ns)
            start_deadline(call);
        if (m->stream_type != RPC_STREAM_UNARY)
            streams_link(call);
        call->busy++;
        m->handler(call, call->request, m->service_data);
        /* Without stream hooks a client or bidi stream's whole body came
         * in one piece: deliver it now that the handler is set up. */
        if (whole_body && !call->answered)
            rpc_stream_on_body(call, call->req->body, call->req->body_len, true);
        call->busy--;
    }
    rpc_call_release(call);
}

static bool streamed(const rpc_method *m)
{
    return m && (m->stream_type == RPC_STREAM_CLIENT || m->stream_type == RPC_STREAM_BIDI);
}

/* Would route() refuse this request (404, 405, 415)? Checked without
 * allocating, so a request that never completes leaves nothing behind. */
static bool refused(rpc_server *s, http_request *req, const rpc_method *m)
{
    if (!m)
        return true;
    bool is_get = strcmp(req->method, "GET") == 0;
    if (strcmp(req->method, "POST") != 0 && !(is_get && m->get_allowed))
        return true;
    rpc_protocol p;
    rpc_codec c;
    const char *canon;
    const http_header *ct = rpc_header(req, "content-type");
    return !is_get && (!ct || rpc_content_type_parse(ct->value, m->stream_type != RPC_STREAM_UNARY,
                                                     &p, &c, &canon) < 0);
}

/*
 * Headers-first routing. HTTP/2, and HTTP/1.1 requests without a body:
 * wrong routes are answered now (route() answers them); unary and
 * server-stream calls are routed again once their body is in. HTTP/1.1 with
 * a body: only a well-routed client or bidi stream starts now; everything
 * else waits for its whole body, so a malformed body is refused as a whole
 * (400) and the connection stays in step with its client.
 */
static http_body_mode on_headers(http_request *req, void *rpc_server_ptr)
{
    rpc_server *s = rpc_server_ptr;
    const rpc_method *m = lookup(s, req->path);
    bool early = req->http_major >= 2 || http_request_complete(req);
    if (!early && (!streamed(m) || refused(s, req, m)))
        return HTTP_BODY_BUFFER;
    if (!streamed(m) && !refused(s, req, m))
        return HTTP_BODY_BUFFER; /* one message: routed once the body is complete */
    rpc_call *call = route(s, req);
    if (!call)
        return HTTP_BODY_DISCARD;
    call->streamed_body = true;
    run(call, false, false);
    return HTTP_BODY_STREAM;
}

static void on_body(http_request *req, const uint8_t *data, size_t len, bool end, void *ud)
{
    rpc_server *s = ud;
    if (req->user && req->user != &s->fallback_marker)
        rpc_stream_on_body(req->user, data, len, end);
}

static void on_drain(http_request *req, void *ud)
{
    rpc_server *s = ud;
    if (req->user && req->user != &s->fallback_marker)
        rpc_stream_on_drain(req->user);
}

void rpc_server_stream_hooks(rpc_server *s, http_stream_hooks *hooks)
{
    *hooks = (http_stream_hooks){
        .on_headers = on_headers, .on_body = on_body, .on_drain = on_drain, .ud = s};
}

void rpc_server_on_request(http_request *req, void *rpc_server_ptr)
{
    rpc_server *s = rpc_server_ptr;
    /* Routed when its headers arrived, or (without stream hooks) now. */
    rpc_call *call = req->user;
    if (!call && !(call = route(s, req)))
        return;
    if (call->method->stream_type == RPC_STREAM_CLIENT ||
        call->method->stream_type == RPC_STREAM_BIDI) {
        call->streamed_body = true;
        run(call, false, true);
        return;
    }
    if (call->is_get && req->body_len > 0) {
        http_response resp = {.status = 415};
        rpc_call_answer(call, &resp, CHCP_INVALID_ARGUMENT);
        call->finished = true;
        rpc_call_release(call);
        return;
    }
    run(call, true, false);
}

/* ---- the handler's view ------------------------------------------------------ */

const char *rpc_call_service(const rpc_call *call)
{
    return call->method->service_name;
}

const char *rpc_call_method(const rpc_call *call)
{
    return call->method->method_name;
}

rpc_protocol rpc_call_protocol(const rpc_call *call)
{
    return call->protocol;
}

rpc_stream_type rpc_call_stream_type(const rpc_call *call)
{
    return call->method->stream_type;
}

const http_request *rpc_call_http(const rpc_call *call)
{
    return call->req;
}

int64_t rpc_call_timeout_ms(const rpc_call *call)
{
    return call->timeout_ms;
}

uint64_t rpc_call_deadline_ns(const rpc_call *call)
{
    return call->deadline_ns;
}

bool rpc_call_canceled(const rpc_call *call)
{
    return call->canceled;
}

size_t rpc_call_query(const rpc_call *call, const http_header **params)
{
    *params = call->query;
    return call->n_query;
}

void rpc_call_on_cancel(rpc_call *call, void (*fn)(rpc_call *call, void *ud), void *ud)
{
    if (call->canceled && !call->finished) {
        fn(call, ud); /* cancelled before the hook was set: tell it now */
        return;
    }
    call->cancel_fn = fn;
    call->cancel_ud = ud;
}

void rpc_call_set_user(rpc_call *call, void *user)
{
    call->user = user;
}

void *rpc_call_user(const rpc_call *call)
{
    return call->user;
}

void rpc_call_set_trace(rpc_call *call, void *trace)
{
    call->trace = trace;
}

void *rpc_call_trace(const rpc_call *call)
{
    return call->trace;
}

void rpc_call_set_principal(rpc_call *call, const char *name)
{
    free(call->principal);
    call->principal = name ? xstrdup(name) : NULL;
}

const char *rpc_call_principal(const rpc_call *call)
{
    return call->principal;
}

void rpc_call_set_grant(rpc_call *call, void *grant, void (*free_fn)(void *grant))
{
    if (call->grant_free)
        call->grant_free(call->grant);
    call->grant = grant;
    call->grant_free = free_fn;
}

void *rpc_call_grant(const rpc_call *call)
{
    return call->grant;
}

static bool is_bin_key(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, "-bin") == 0;
}

static void add_md(rpc_hdrs *h, const char *name, const char *value, size_t value_len)
{
    if (is_bin_key(name))
        rpc_hdrs_add_bin(h, name, (const uint8_t *)value, value_len);
    else
        rpc_hdrs_add_copy(h, name, strlen(name), value, value_len);
}

void rpc_call_add_header(rpc_call *call, const char *name, const char *value, size_t value_len)
{
    if (!call->answered)
        add_md(&call->headers, name, value, value_len);
}

void rpc_call_add_trailer(rpc_call *call, const char *name, const char *value, size_t value_len)
{
    if (!call->answered)
        add_md(&call->trailers, name, value, value_len);
}

void rpc_call_succeed(rpc_call *call, const ProtobufCMessage *response)
{
    if (call->finished)
        return;
    rpc_stream_type t = call->method->stream_type;
    if (t != RPC_STREAM_UNARY && !call->answered) {
        /* A stream's last (or, client streams, only) message, then OK. */
        if (response && rpc_stream_send_last(call, response) < 0) {
            call->finished = true;
            rpc_call_release(call);
            return;
        }
        if (!response && t == RPC_STREAM_CLIENT) {
            call->finished = true;
            rpc_respond_error(call, CHCP_INTERNAL, "a client stream must answer with a message",
                              NULL, 0);
            rpc_call_release(call);
            return;
        }
        call->finished = true;
        rpc_stream_finish(call, CHCP_OK, NULL, NULL, 0);
        rpc_call_release(call);
        return;
    }
    call->finished = true;
    if (!call->answered)
        rpc_respond_success(call, response);
    rpc_call_release(call);
}

void rpc_call_fail_details(rpc_call *call, chcp_code code, const char *message,
                           const ProtobufCMessage *const *details, size_t n_details)
{
    if (call->finished)
        return;
    call->finished = true;
    if (!call->answered) {
        cleanup_free rpc_detail *d = xcalloc(n_details, sizeof(*d));
        cleanup_free chcp_buf *store = xcalloc(n_details, sizeof(*store));
        rpc_details_from_messages(details, n_details, d, store);
        rpc_respond_error(call, code, message, d, n_details);
        for (size_t i = 0; i < n_details; i++)
            buf_free(&store[i]);
    }
    rpc_call_release(call);
}

void rpc_call_fail(rpc_call *call, chcp_code code, const char *message)
{
    rpc_call_fail_details(call, code, message, NULL, 0);
}

void rpc_call_fail_error(rpc_call *call, const chcp_error *err)
{
    rpc_call_fail_details(call, err ? err->code : CHCP_UNKNOWN,
                          err ? err->message : "unknown error", NULL, 0);
}
