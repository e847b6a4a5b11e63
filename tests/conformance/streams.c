/*
 * streams.c - the conformance server's ServerStream, ClientStream and
 * BidiStream handlers, on chcp's streaming rpc API, following the suite's
 * handler contract (connectrpc.conformance.v1 service.proto) the way its
 * reference server does: response headers go out at once when there is data
 * to send (full-duplex bidi: after the first request; half-duplex: once the
 * upload is complete), delays are uv_timers (never sleeps: other calls go on
 * meanwhile), full-duplex bidi answers one request with one response and
 * stops reading while it waits, and an error defined in the request ends the
 * stream after the responses, with a RequestInfo detail when nothing was
 * sent.
 */
#include <string.h>

#include "conformance.h"

typedef Connectrpc__Conformance__V1__ServerStreamRequest ServerStreamRequest;
typedef Connectrpc__Conformance__V1__ClientStreamRequest ClientStreamRequest;
typedef Connectrpc__Conformance__V1__BidiStreamRequest BidiStreamRequest;

typedef struct stream_state stream_state;
typedef void (*step_fn)(stream_state *st);

struct stream_state {
    rpc_call *call;
    arena keep;                   /* recorded requests (Anys) */
    Google__Protobuf__Any **reqs; /* received since the last full-duplex response */
    size_t n_reqs, cap_reqs;
    ProtobufCMessage *first; /* copy of the first request (client, bidi) */
    const StreamDefinition *sdef;
    const ResponseDefinition *udef;
    bool full_duplex;
    size_t resp_num;
    uv_timer_t timer;
    bool timer_init;
    step_fn after_delay;
};

static void state_closed(uv_handle_t *h)
{
    free(h->data);
}

static void state_free(stream_state *st)
{
    if (st->first)
        protobuf_c_message_free_unpacked(st->first, NULL);
    arena_free(&st->keep);
    free(st->reqs);
    if (st->timer_init)
        uv_close((uv_handle_t *)&st->timer, state_closed);
    else
        free(st);
}

static void on_cancel(rpc_call *call, void *ud)
{
    stream_state *st = ud;
    if (st->timer_init)
        uv_timer_stop(&st->timer);
    rpc_call_fail(call, CHCP_CANCELED, "canceled");
    state_free(st);
}

static stream_state *state_new(rpc_call *call)
{
    stream_state *st = xcalloc(1, sizeof(*st));
    st->call = call;
    rpc_call_on_cancel(call, on_cancel, st);
    return st;
}

static void record(stream_state *st, const ProtobufCMessage *msg)
{
    if (st->n_reqs == st->cap_reqs) {
        st->cap_reqs = st->cap_reqs ? st->cap_reqs * 2 : 8;
        st->reqs = xrealloc(st->reqs, st->cap_reqs * sizeof(*st->reqs));
    }
    st->reqs[st->n_reqs++] = pack_any(&st->keep, msg);
}

/* The first request, kept beyond its callback: decoded again from its Any. */
static const ProtobufCMessage *keep_first(stream_state *st, const ProtobufCMessage *msg)
{
    const Google__Protobuf__Any *any = st->reqs[st->n_reqs - 1];
    st->first = protobuf_c_message_unpack(msg->descriptor, NULL, any->value.len, any->value.data);
    return st->first;
}

static void on_timer(uv_timer_t *t)
{
    stream_state *st = t->data;
    st->after_delay(st);
}

/* Run fn after ms (at once for 0). */
static void delay(stream_state *st, uint32_t ms, step_fn fn)
{
    if (ms == 0) {
        fn(st);
        return;
    }
    if (!st->timer_init) {
        uv_timer_init(uv_default_loop(), &st->timer);
        st->timer.data = st;
        st->timer_init = true;
    }
    st->after_delay = fn;
    uv_timer_start(&st->timer, on_timer, ms, 0);
}

static size_t n_data(const stream_state *st)
{
    return st->sdef ? st->sdef->n_response_data : 0;
}

/* End a server or bidi stream: the defined error (with a RequestInfo detail
 * if no response went out) or OK. */
static void finish_stream(stream_state *st)
{
    const Connectrpc__Conformance__V1__Error *e = st->sdef ? st->sdef->error : NULL;
    if (!e) {
        rpc_call_succeed(st->call, NULL);
        state_free(st);
        return;
    }
    arena a = {0};
    size_t n = e->n_details + (st->resp_num == 0 ? 1 : 0);
    const ProtobufCMessage **details = arena_alloc(&a, (n ? n : 1) * sizeof(*details));
    for (size_t i = 0; i < e->n_details; i++)
        details[i] = &e->details[i]->base;
    if (st->resp_num == 0)
        details[n - 1] =
            &pack_any(&a, &request_info(&a, st->call, st->reqs, st->n_reqs)->base)->base;
    const char *msg =
        e->_message_case == CONNECTRPC__CONFORMANCE__V1__ERROR___MESSAGE_MESSAGE ? e->message : "";
    rpc_call_fail_details(st->call, (chcp_code)e->code, msg, details, n);
    arena_free(&a);
    state_free(st);
}

/* Send response number resp_num; the first carries the full RequestInfo,
 * later ones (full-duplex bidi) only the requests since the last one. */
static void send_response(stream_state *st, bool bidi, bool info_always)
{
    arena a = {0};
    Payload payload = CONNECTRPC__CONFORMANCE__V1__CONFORMANCE_PAYLOAD__INIT;
    payload.data = st->sdef->response_data[st->resp_num];
    if (st->resp_num == 0) {
        payload.request_info = request_info(&a, st->call, st->reqs, st->n_reqs);
    } else if (info_always) {
        RequestInfo *info = arena_alloc(&a, sizeof(*info));
        connectrpc__conformance__v1__conformance_payload__request_info__init(info);
        info->requests = st->reqs;
        info->n_requests = st->n_reqs;
        payload.request_info = info;
    }
    if (bidi) {
        Connectrpc__Conformance__V1__BidiStreamResponse r =
            CONNECTRPC__CONFORMANCE__V1__BIDI_STREAM_RESPONSE__INIT;
        r.payload = &payload;
        rpc_call_send(st->call, &r.base);
    } else {
        Connectrpc__Conformance__V1__ServerStreamResponse r =
            CONNECTRPC__CONFORMANCE__V1__SERVER_STREAM_RESPONSE__INIT;
        r.payload = &payload;
        rpc_call_send(st->call, &r.base);
    }
    st->resp_num++;
    arena_free(&a);
}

/* ---- ServerStream ------------------------------------------------------------ */

static void server_next(stream_state *st);

static void server_send(stream_state *st)
{
    send_response(st, false, false);
    server_next(st);
}

static void server_next(stream_state *st)
{
    if (st->resp_num < n_data(st))
        delay(st, st->sdef->response_delay_ms, server_send);
    else
        finish_stream(st);
}

void conformance_server_stream(rpc_call *call, const ProtobufCMessage *request, void *sd)
{
    stream_state *st = state_new(call);
    record(st, request);
    st->sdef = ((const ServerStreamRequest *)request)->response_definition;
    if (st->sdef) {
        add_metadata(call, st->sdef->response_headers, st->sdef->n_response_headers, false);
        add_metadata(call, st->sdef->response_trailers, st->sdef->n_response_trailers, true);
        if (n_data(st) > 0)
            rpc_call_send_headers(call);
    }
    server_next(st);
}

/* ---- ClientStream ------------------------------------------------------------ */

static void client_message(rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    stream_state *st = ud;
    record(st, msg);
    if (st->n_reqs == 1)
        st->udef = ((const ClientStreamRequest *)keep_first(st, msg))->response_definition;
}

static void client_respond(stream_state *st)
{
    arena a = {0};
    Payload payload = CONNECTRPC__CONFORMANCE__V1__CONFORMANCE_PAYLOAD__INIT;
    payload.request_info = request_info(&a, st->call, st->reqs, st->n_reqs);
    if (st->udef &&
        st->udef->response_case ==
            CONNECTRPC__CONFORMANCE__V1__UNARY_RESPONSE_DEFINITION__RESPONSE_RESPONSE_DATA)
        payload.data = st->udef->response_data;
    Connectrpc__Conformance__V1__ClientStreamResponse r =
        CONNECTRPC__CONFORMANCE__V1__CLIENT_STREAM_RESPONSE__INIT;
    r.payload = &payload;
    rpc_call_succeed(st->call, &r.base);
    arena_free(&a);
    state_free(st);
}

static void client_end(rpc_call *call, void *ud)
{
    stream_state *st = ud;
    const ResponseDefinition *d = st->udef;
    if (d) {
        add_metadata(call, d->response_headers, d->n_response_headers, false);
        add_metadata(call, d->response_trailers, d->n_response_trailers, true);
    }
    if (d && d->response_case ==
                 CONNECTRPC__CONFORMANCE__V1__UNARY_RESPONSE_DEFINITION__RESPONSE_ERROR) {
        const Connectrpc__Conformance__V1__Error *e = d->error;
        arena a = {0};
        size_t n = e->n_details + 1;
        const ProtobufCMessage **details = arena_alloc(&a, n * sizeof(*details));
        for (size_t i = 0; i < e->n_details; i++)
            details[i] = &e->details[i]->base;
        details[n - 1] = &pack_any(&a, &request_info(&a, call, st->reqs, st->n_reqs)->base)->base;
        const char *msg = e->_message_case == CONNECTRPC__CONFORMANCE__V1__ERROR___MESSAGE_MESSAGE
                              ? e->message
                              : "";
        rpc_call_fail_details(call, (chcp_code)e->code, msg, details, n);
        arena_free(&a);
        state_free(st);
        return;
    }
    delay(st, d ? d->response_delay_ms : 0, client_respond);
}

void conformance_client_stream(rpc_call *call, const ProtobufCMessage *request, void *sd)
{
    static const rpc_recv_hooks hooks = {client_message, client_end};
    rpc_call_recv(call, &hooks, state_new(call));
}

/* ---- BidiStream --------------------------------------------------------------- */

static void bidi_rest(stream_state *st);

static void bidi_rest_send(stream_state *st)
{
    send_response(st, true, false);
    bidi_rest(st);
}

/* After the upload: the responses not sent yet, then the end. */
static void bidi_rest(stream_state *st)
{
    if (st->resp_num < n_data(st))
        delay(st, st->sdef->response_delay_ms, bidi_rest_send);
    else
        finish_stream(st);
}

/* Full duplex: one response per request, then read on. */
static void bidi_duplex_send(stream_state *st)
{
    send_response(st, true, true);
    st->n_reqs = 0;
    /* May deliver the next request (and end the call) right away: last. */
    rpc_call_recv_pause(st->call, false);
}

static void bidi_message(rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    stream_state *st = ud;
    record(st, msg);
    if (!st->first) {
        const BidiStreamRequest *first = (const BidiStreamRequest *)keep_first(st, msg);
        st->sdef = first->response_definition;
        st->full_duplex = first->full_duplex;
        if (st->sdef) {
            add_metadata(call, st->sdef->response_headers, st->sdef->n_response_headers, false);
            add_metadata(call, st->sdef->response_trailers, st->sdef->n_response_trailers, true);
            if (st->full_duplex && n_data(st) > 0)
                rpc_call_send_headers(call);
        }
    }
    if (!st->full_duplex)
        return;
    /* Nothing more to answer with: stop reading and end. */
    rpc_call_recv_pause(call, true);
    if (st->resp_num >= n_data(st)) {
        finish_stream(st);
        return;
    }
    delay(st, st->sdef->response_delay_ms, bidi_duplex_send);
}

static void bidi_end(rpc_call *call, void *ud)
{
    stream_state *st = ud;
    if (!st->full_duplex && n_data(st) > 0)
        rpc_call_send_headers(call);
    bidi_rest(st);
}

void conformance_bidi_stream(rpc_call *call, const ProtobufCMessage *request, void *sd)
{
    static const rpc_recv_hooks hooks = {bidi_message, bidi_end};
    rpc_call_recv(call, &hooks, state_new(call));
}
