/*
 * rpc.h - Connect, gRPC and gRPC-Web RPCs (unary, client, server and bidi
 * streams) over the transport's requests, exactly as connect-go serves them.
 *
 * The rpc server routes `/pkg.Service/Method` as soon as a request's headers
 * arrive (unknown path 404, wrong verb 405, wrong content type 415, bidi over
 * HTTP/1.1 505: at once, before any body), picks the protocol from the
 * Content-Type, decodes request messages (binary protobuf via protobuf-c, or
 * the proto3 JSON mapping), applies compression, limits and deadlines, and
 * calls the registered handler. Handlers run on the loop thread and must
 * never block: blocking work goes to the libuv thread pool and completes back
 * on the loop.
 *
 * One handler signature serves every method type:
 *   unary, server stream  called once the single request message arrived;
 *   client stream, bidi   called when the headers arrived (request NULL); the
 *                         handler asks for messages with rpc_call_recv().
 * A call ends exactly once: rpc_call_succeed(call, response) (for server and
 * bidi streams the response may be NULL: "end with OK") or rpc_call_fail*.
 * Streams send messages with rpc_call_send() before that; custom trailers go
 * with the end.
 *
 * Backpressure: a stream's outgoing queue is bounded by a high-water mark the
 * handler respects (rpc_call_send_ready, rpc_call_on_writable): the bytes
 * leave only as fast as the client reads (HTTP/2 flow control, socket
 * writability). Incoming messages are delivered as they arrive unless the
 * handler pauses them (rpc_call_recv_pause); unread bytes stay in the
 * client's flow-control window, never in an unbounded buffer.
 *
 * Deadlines (Connect-Timeout-Ms, grpc-timeout) are enforced here: when one
 * passes, the client gets deadline_exceeded at once, the call is marked
 * cancelled (rpc_call_canceled() turns true, the cancel hook fires) and the
 * handler's eventual answer is dropped. A client that goes away (reset,
 * disconnect) and a malformed incoming message cancel the same way.
 */
#ifndef CHCP_RPC_H
#define CHCP_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"
#include "transport/transport.h"

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

/* The handler owns nothing: `request` lives until the call is finished. It
 * is NULL for client and bidi streams (messages come through rpc_call_recv). */
typedef void (*rpc_handler_fn)(rpc_call *call, const ProtobufCMessage *request, void *service_data);
typedef rpc_handler_fn rpc_unary_fn;

typedef struct rpc_method_impl {
    const char *name;       /* method name as in the .proto, e.g. "CreateVm" */
    rpc_handler_fn handler; /* NULL: answered "unimplemented" */
} rpc_method_impl;

typedef enum rpc_stream_type {
    RPC_STREAM_UNARY,
    RPC_STREAM_CLIENT,
    RPC_STREAM_SERVER,
    RPC_STREAM_BIDI,
} rpc_stream_type;

typedef struct rpc_limits {
    /* Largest request message, on the wire and after decompression; 0 means
     * 4 MiB (the transport's default body limit). Larger messages get
     * resource_exhausted. */
    size_t max_message_bytes;
    /* Most elements (field occurrences, list and map entries) in a request
     * message; 0 means 16384. Checked on the raw bytes before decoding, so
     * a small body that would decode into millions of tiny allocations is
     * refused (resource_exhausted) without allocating. */
    size_t max_message_elements;
    /* Responses smaller than this are not compressed even when the client
     * accepts gzip (connect-go's default is 1 KiB). */
    size_t compress_min_bytes;
    /* A stream's queued response bytes at which rpc_call_send_ready() turns
     * false; 0 means 64 KiB. One message may overshoot it. */
    size_t stream_high_water;
} rpc_limits;

typedef enum rpc_protocol {
    RPC_PROTOCOL_CONNECT,
    RPC_PROTOCOL_GRPC,
    RPC_PROTOCOL_GRPC_WEB,
} rpc_protocol;

/* Observer hooks for telemetry, all optional. `on_start` runs once the call
 * is routed (before decoding and the handler); `on_finish` runs as the answer
 * is handed to the transport (the request is still readable then), with the
 * code sent. Calls answered before routing (404/405/415) are not observed. */
typedef struct rpc_observer {
    void (*on_start)(rpc_call *call, void *ud);
    void (*on_finish)(rpc_call *call, chcp_code code, void *ud);
    void *ud;
} rpc_observer;

/* Access control, optional. The guard runs once a call is routed and its
 * protocol known, after on_start and before the request message is decoded:
 * -1 with *err answers the call with that error (unauthenticated,
 * permission_denied) in the call's protocol, and neither decoding nor the
 * handler happen. It may name the caller (rpc_call_set_principal) and leave
 * what the caller may touch for the handler (rpc_call_set_grant). */
typedef int (*rpc_guard_fn)(rpc_call *call, void *ud, chcp_error **err);

rpc_server *rpc_server_new(uv_loop_t *loop, const rpc_limits *limits);
/* Free the server. Calls hold a pointer to it: free it only once
 * rpc_server_active_calls() is 0 (after transport_close(), every call was
 * cancelled; wait for the handlers to finish them). */
void rpc_server_free(rpc_server *s);
void rpc_server_set_observer(rpc_server *s, const rpc_observer *obs);
void rpc_server_set_guard(rpc_server *s, rpc_guard_fn fn, void *ud);

/*
 * Register a service from its protobuf-c descriptor. Methods without an impl
 * entry answer unimplemented. Idempotency (for Connect GET) comes from the
 * generated protometa table, so it always matches the .proto.
 */
int rpc_server_register(rpc_server *s, const ProtobufCServiceDescriptor *service,
                        const rpc_method_impl *impls, size_t n_impls, void *service_data,
                        chcp_error **err);

/* Plug into transport_new() and transport_set_stream_hooks() (with
 * rpc_server_stream_hooks): hand every request to the rpc server. Paths it
 * does not route (e.g. "/health") go to `fallback` if set, else 404. The
 * fallback is called as soon as the headers arrive (the body is never read
 * for it: req->body is empty), must leave req->user alone, and its requests'
 * cancellations are not reported (it must still answer them). Without the
 * stream hooks only unary and server-stream calls work (routed once the body
 * is complete). */
typedef bool (*rpc_fallback_fn)(http_request *req, void *ud); /* true = handled */
void rpc_server_set_fallback(rpc_server *s, rpc_fallback_fn fn, void *ud);
void rpc_server_on_request(http_request *req, void *rpc_server_ptr);
void rpc_server_on_cancel(http_request *req, void *rpc_server_ptr);
void rpc_server_stream_hooks(rpc_server *s, http_stream_hooks *hooks);
/* Calls not yet freed: routed, and not both answered and finished. */
size_t rpc_server_active_calls(const rpc_server *s);
/* The registered services' full names, in registration order (at most
 * `max`); returns how many. */
size_t rpc_server_services(const rpc_server *s, const char **names, size_t max);
/* Serve gRPC server reflection (grpc.reflection.v1 and v1alpha) over the
 * descriptors embedded in the registered protometa tables. */
int rpc_server_enable_reflection(rpc_server *s, chcp_error **err);
/* End every stream still open with `code` (their handlers' cancel hooks
 * run): a server that stops must not wait for watches that never end. */
void rpc_server_cancel_streams(rpc_server *s, chcp_code code, const char *message);

/* ---- what a handler can see and do ------------------------------------ */

const char *rpc_call_service(const rpc_call *call); /* "cloudhypervisor.v1.VmService" */
const char *rpc_call_method(const rpc_call *call);  /* "CreateVm" */
rpc_protocol rpc_call_protocol(const rpc_call *call);
rpc_stream_type rpc_call_stream_type(const rpc_call *call);
/* The HTTP request, or NULL once the call was answered (after a deadline or
 * a client cancel the transport has already freed it). */
const http_request *rpc_call_http(const rpc_call *call);
/* Connect GET: the decoded query parameters, in order; 0 for other calls. */
size_t rpc_call_query(const rpc_call *call, const http_header **params);
/* Client deadline in ms as sent, or -1 without one. */
int64_t rpc_call_timeout_ms(const rpc_call *call);
/* Monotonic ns when the deadline passes, or 0 without one. */
uint64_t rpc_call_deadline_ns(const rpc_call *call);
bool rpc_call_canceled(const rpc_call *call);
/* Called once if the call is cancelled (deadline or client gone) before the
 * handler finished it; at once if that already happened. The handler must
 * still finish the call (its answer is dropped). */
void rpc_call_on_cancel(rpc_call *call, void (*fn)(rpc_call *call, void *ud), void *ud);
/* Per-call slot for the handler/telemetry. */
void rpc_call_set_user(rpc_call *call, void *user);
void *rpc_call_user(const rpc_call *call);
/* Per-call slot for the observer (telemetry: the call's server span), so
 * handlers can hand it down as the parent of the work they start. */
void rpc_call_set_trace(rpc_call *call, void *trace);
void *rpc_call_trace(const rpc_call *call);

/* Who is calling, as the guard established it ("spiffe://...", "token:ci",
 * "uid:1000"...), for handlers, logs and spans; NULL without a guard. The
 * name is copied. */
void rpc_call_set_principal(rpc_call *call, const char *name);
const char *rpc_call_principal(const rpc_call *call);
/* The guard's verdict for the handler (what the caller may touch), freed
 * with `free_fn` when the call is. */
void rpc_call_set_grant(rpc_call *call, void *grant, void (*free_fn)(void *grant));
void *rpc_call_grant(const rpc_call *call);

/* Custom response metadata. Binary values go under keys ending "-bin"; pass
 * raw bytes, the protocol layer base64-encodes them. */
void rpc_call_add_header(rpc_call *call, const char *name, const char *value, size_t value_len);
void rpc_call_add_trailer(rpc_call *call, const char *name, const char *value, size_t value_len);

/* ---- streams ------------------------------------------------------------- */

/* Client and bidi streams: deliver request messages, in order, to
 * on_message (the message lives only during the call); on_end once the
 * client finished sending. Messages that arrived before this call are
 * delivered first. A malformed or oversized message ends the call with its
 * error (the cancel hook fires). */
typedef struct rpc_recv_hooks {
    void (*on_message)(rpc_call *call, const ProtobufCMessage *msg, void *ud);
    void (*on_end)(rpc_call *call, void *ud);
} rpc_recv_hooks;
void rpc_call_recv(rpc_call *call, const rpc_recv_hooks *hooks, void *ud);
/* Stop (true) or restart (false) delivering messages; while paused the
 * client's window fills and it stops sending. */
void rpc_call_recv_pause(rpc_call *call, bool paused);
/* Messages delivered so far. */
size_t rpc_call_received(const rpc_call *call);

/* Server and bidi streams: send the response headers now (otherwise they go
 * with the first message or the end), so the client sees the stream open. */
void rpc_call_send_headers(rpc_call *call);
/* Queue one response message. 0, or -1 when the call is already answered
 * (cancelled, deadline passed): stop producing. Never blocks or drops; pace
 * with rpc_call_send_ready(). */
int rpc_call_send(rpc_call *call, const ProtobufCMessage *msg);
/* The queue is below its high-water mark. */
bool rpc_call_send_ready(const rpc_call *call);
/* Run fn once when a queue that was full has drained (low-water mark). */
void rpc_call_on_writable(rpc_call *call, void (*fn)(rpc_call *call, void *ud), void *ud);
/* Response bytes queued for this call and not yet handed to the socket. */
size_t rpc_call_send_queued(const rpc_call *call);

/* Finish successfully. The response is serialised before this returns; the
 * caller keeps ownership of it. Server and bidi streams: `response` (may be
 * NULL) is sent as a last message, then the stream ends with OK. */
void rpc_call_succeed(rpc_call *call, const ProtobufCMessage *response);
/* Finish with an error; `details` (may be NULL/0) become Connect error details,
 * grpc-status-details-bin entries. */
void rpc_call_fail(rpc_call *call, chcp_code code, const char *message);
void rpc_call_fail_details(rpc_call *call, chcp_code code, const char *message,
                           const ProtobufCMessage *const *details, size_t n_details);
void rpc_call_fail_error(rpc_call *call, const chcp_error *err);

#endif
