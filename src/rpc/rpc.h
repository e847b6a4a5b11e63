/*
 * rpc.h - Connect, gRPC and gRPC-Web unary RPCs over the transport's
 * http_request, exactly as connect-go serves them.
 *
 * The rpc server routes `/pkg.Service/Method`, picks the protocol from the
 * Content-Type, decodes the request message (binary protobuf via protobuf-c,
 * or the proto3 JSON mapping), applies compression, limits and deadlines, and
 * calls the registered handler with a decoded message. The handler answers
 * later, exactly once, with rpc_call_succeed() or rpc_call_fail(). Handlers
 * run on the loop thread and must never block: blocking work goes to the libuv
 * thread pool and completes back on the loop.
 *
 * Deadlines (Connect-Timeout-Ms, grpc-timeout) are enforced here: when one
 * passes, the client gets deadline_exceeded at once, the call is marked
 * cancelled (rpc_call_canceled() turns true, the cancel hook fires) and the
 * handler's eventual answer is dropped. A client that goes away cancels the
 * same way.
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

/* The handler owns nothing: `request` lives until the call is finished. */
typedef void (*rpc_unary_fn)(rpc_call *call, const ProtobufCMessage *request, void *service_data);

typedef struct rpc_method_impl {
    const char *name;     /* method name as in the .proto, e.g. "CreateVm" */
    rpc_unary_fn handler; /* NULL: answered "unimplemented" */
} rpc_method_impl;

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

/* Plug into transport_new(): hand every request to the rpc server. Paths it
 * does not route (e.g. "/health") go to `fallback` if set, else 404. The
 * fallback must leave req->user alone; its requests' cancellations are not
 * reported (it must still answer them). */
typedef bool (*rpc_fallback_fn)(http_request *req, void *ud); /* true = handled */
void rpc_server_set_fallback(rpc_server *s, rpc_fallback_fn fn, void *ud);
void rpc_server_on_request(http_request *req, void *rpc_server_ptr);
void rpc_server_on_cancel(http_request *req, void *rpc_server_ptr);
/* Calls not yet freed: routed, and not both answered and finished. */
size_t rpc_server_active_calls(const rpc_server *s);

/* ---- what a handler can see and do ------------------------------------ */

const char *rpc_call_service(const rpc_call *call); /* "cloudhypervisor.v1.VmService" */
const char *rpc_call_method(const rpc_call *call);  /* "CreateVm" */
rpc_protocol rpc_call_protocol(const rpc_call *call);
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

/* Finish successfully. The response is serialised before this returns; the
 * caller keeps ownership of it. */
void rpc_call_succeed(rpc_call *call, const ProtobufCMessage *response);
/* Finish with an error; `details` (may be NULL/0) become Connect error details,
 * grpc-status-details-bin entries. */
void rpc_call_fail(rpc_call *call, chcp_code code, const char *message);
void rpc_call_fail_details(rpc_call *call, chcp_code code, const char *message,
                           const ProtobufCMessage *const *details, size_t n_details);
void rpc_call_fail_error(rpc_call *call, const chcp_error *err);

#endif
