/*
 * rpc_stream.c - the streaming half of a call: incoming envelopes of client
 * and bidi streams and their delivery to the handler, the outgoing queue of
 * server and bidi streams with its backpressure, and the end of a stream.
 *
 * Incoming: the transport hands over body bytes as they arrive; complete
 * envelopes are decoded and delivered in order to the handler's on_message,
 * and only then consumed (given back to the client's flow-control window).
 * Bytes of messages not yet delivered (handler paused, not yet receiving)
 * stay unconsumed, so the client stops once it has filled its window: the
 * buffer here never holds more than that window (one message of the
 * largest size and a frame). A message larger than the receive limit, a
 * truncated envelope or one that does not decode ends the call with that
 * error, as connect-go's Receive would.
 *
 * Outgoing: each message is framed (and compressed if negotiated and large
 * enough) and appended to the request's transport queue, which drains only
 * as fast as the client reads. Handlers pace themselves on
 * rpc_call_send_ready() (queue below the high-water mark) and
 * rpc_call_on_writable() (queue drained to a quarter of it).
 *
 * A call is never freed while one of its handler callbacks runs (`busy`).
 */
#include "rpc/rpc_internal.h"

#include <string.h>

static size_t high_water(const rpc_call *call)
{
    size_t hw = call->server->limits.stream_high_water;
    return hw ? hw : RPC_DEFAULT_STREAM_HIGH_WATER;
}

/* ---- outgoing --------------------------------------------------------------- */

static void begin_response(rpc_call *call)
{
    if (call->resp_started || call->answered)
        return;
    call->resp_started = true;
    rpc_hdrs h = {0};
    rpc_stream_headers(call, &h);
    http_response_begin(call->req, 200, h.v, h.n);
    rpc_hdrs_free(&h);
}

static bool sends_stream(const rpc_call *call)
{
    return call->method->stream_type != RPC_STREAM_UNARY;
}

void rpc_call_send_headers(rpc_call *call)
{
    if (!call->finished && sends_stream(call))
        begin_response(call);
}

/* Frame and queue one message; -1 (the call answered with the error) if it
 * cannot be encoded. */
static int send_message(rpc_call *call, const ProtobufCMessage *msg)
{
    chcp_buf b = CHCP_BUF_INIT;
    cleanup_error chcp_error *err = NULL;
    if (rpc_message_encode(call, msg, &b, 5, &err) < 0) {
        buf_free(&b);
        error_prefix(err, "marshal message");
        /* The caller learns it from the -1: no cancel hook. */
        call->canceled = true;
        rpc_stream_finish(call, CHCP_INTERNAL, err ? err->message : "marshal message", NULL, 0);
        return -1;
    }
    bool compressed = rpc_maybe_compress(call, &b, 5);
    rpc_envelope_prefix(b.data, compressed ? RPC_FLAG_COMPRESSED : 0, b.len - 5);
    begin_response(call);
    http_response_write(call->req, b.data, b.len);
    buf_free(&b);
    return 0;
}

int rpc_call_send(rpc_call *call, const ProtobufCMessage *msg)
{
    if (call->answered || call->finished || !sends_stream(call) ||
        call->method->stream_type == RPC_STREAM_CLIENT)
        return -1;
    return send_message(call, msg);
}

int rpc_stream_send_last(rpc_call *call, const ProtobufCMessage *msg)
{
    return send_message(call, msg);
}

size_t rpc_call_send_queued(const rpc_call *call)
{
    return call->req ? http_response_queued(call->req) : 0;
}

bool rpc_call_send_ready(const rpc_call *call)
{
    return !call->answered && rpc_call_send_queued(call) < high_water(call);
}

void rpc_call_on_writable(rpc_call *call, void (*fn)(rpc_call *call, void *ud), void *ud)
{
    call->writable_fn = fn;
    call->writable_ud = ud;
    if (!call->answered && call->req)
        http_response_want_drain(call->req, high_water(call) / 4);
}

void rpc_stream_on_drain(rpc_call *call)
{
    void (*fn)(rpc_call *, void *) = call->writable_fn;
    call->writable_fn = NULL;
    if (!fn || call->answered)
        return;
    call->busy++;
    fn(call, call->writable_ud);
    call->busy--;
    rpc_call_release(call);
}

void rpc_stream_finish(rpc_call *call, chcp_code code, const char *message,
                       const rpc_detail *details, size_t n_details)
{
    if (call->answered)
        return;
    bool connect = call->protocol == RPC_PROTOCOL_CONNECT;
    /* gRPC with nothing sent yet: the unary error shape is the same on the
     * wire (trailers-only when there are no custom headers). */
    if (!connect && !call->resp_started && code != CHCP_OK) {
        rpc_respond_grpc_error(call, code, message, details, n_details);
        return;
    }
    begin_response(call);
    chcp_buf body = CHCP_BUF_INIT;
    rpc_hdrs t = {0};
    rpc_stream_end_frame(call, code, message, details, n_details, &body, &t);
    http_request *req = rpc_call_mark_answered(call, code);
    if (body.len)
        http_response_write(req, body.data, body.len);
    http_response_end(req, t.v, t.n);
    rpc_hdrs_free(&t);
    buf_free(&body);
}

/* ---- incoming --------------------------------------------------------------- */

/* Give the delivered bytes back to the client and drop them here. */
static void consume(rpc_call *call, size_t n)
{
    call->in_off += n;
    if (call->req)
        http_request_consume(call->req, n);
    if (call->in_off == call->in.len) {
        call->in_off = 0;
        call->in.len = 0;
    }
}

/* One step of delivery: 1 delivered something (go on), 0 nothing to do now,
 * -1 the call ended (error answered). */
static int deliver_one(rpc_call *call)
{
    size_t avail = call->in.len - call->in_off;
    const uint8_t *p = call->in.data + call->in_off;
    cleanup_error chcp_error *err = NULL;
    if (avail < 5) {
        if (!call->in_end)
            return 0;
        if (avail > 0) {
            rpc_call_cancel(call, CHCP_INVALID_ARGUMENT,
                            "protocol error: incomplete envelope: unexpected EOF");
            return -1;
        }
        if (!call->end_delivered) {
            call->end_delivered = true;
            if (call->recv.on_end)
                call->recv.on_end(call, call->recv_ud);
        }
        return 0;
    }
    size_t size = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
    size_t max = call->server->limits.max_message_bytes;
    /* A message must fit the window the client may fill, or it never
     * completes: the limit is whichever is smaller. */
    size_t window = call->req ? http_request_window(call->req) : 0;
    if (window > 5 && window - 5 < max)
        max = window - 5;
    if (size > max) {
        char msg[128];
        snprintf(msg, sizeof(msg), "message size %zu is larger than configured max %zu", size, max);
        rpc_call_cancel(call, CHCP_RESOURCE_EXHAUSTED, msg);
        return -1;
    }
    if (avail - 5 < size) {
        if (!call->in_end)
            return 0;
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "protocol error: promised %zu bytes in enveloped message, got %zu bytes", size,
                 avail - 5);
        rpc_call_cancel(call, CHCP_INVALID_ARGUMENT, msg);
        return -1;
    }
    ProtobufCMessage *msg = NULL;
    if (rpc_envelope_check(call, p[0], &err) == 0)
        msg = rpc_message_decode(call, p + 5, size, p[0] & RPC_FLAG_COMPRESSED, &err);
    if (!msg) {
        rpc_call_cancel(call, err ? err->code : CHCP_INTERNAL,
                        err ? err->message : "unmarshal message");
        return -1;
    }
    consume(call, 5 + size);
    call->n_received++;
    if (call->recv.on_message)
        call->recv.on_message(call, msg, call->recv_ud);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 1;
}

/* Deliver what can be delivered. The call may be freed when this returns. */
static void deliver(rpc_call *call)
{
    if (call->delivering || !call->recv_started)
        return;
    call->delivering = true;
    call->busy++;
    while (!call->answered && !call->recv_paused && !call->end_delivered)
        if (deliver_one(call) <= 0)
            break;
    /* Keep the buffer from creeping: move what is left to the front. */
    if (call->in_off > 0 && call->in_off >= call->in.len / 2) {
        memmove(call->in.data, call->in.data + call->in_off, call->in.len - call->in_off);
        call->in.len -= call->in_off;
        call->in_off = 0;
    }
    call->delivering = false;
    call->busy--;
    rpc_call_release(call);
}

void rpc_stream_on_body(rpc_call *call, const uint8_t *data, size_t len, bool end)
{
    if (call->answered)
        return;
    if (len)
        buf_append(&call->in, data, len);
    if (end)
        call->in_end = true;
    deliver(call);
}

void rpc_call_recv(rpc_call *call, const rpc_recv_hooks *hooks, void *ud)
{
    if (!call->streamed_body || call->recv_started)
        return;
    call->recv = *hooks;
    call->recv_ud = ud;
    call->recv_started = true;
    deliver(call);
}

void rpc_call_recv_pause(rpc_call *call, bool paused)
{
    if (call->recv_paused == paused)
        return;
    call->recv_paused = paused;
    if (!paused)
        deliver(call);
}

size_t rpc_call_received(const rpc_call *call)
{
    return call->n_received;
}

void rpc_stream_free(rpc_call *call)
{
    buf_free(&call->in);
}
