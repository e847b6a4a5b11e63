/*
 * rpc_request.c - turn a routed http_request into the call's decoded request
 * message, per protocol, with connect-go's checks and error codes:
 *
 *   Connect POST  bare (maybe gzip) body, content-encoding/accept-encoding,
 *                 connect-protocol-version, connect-timeout-ms
 *   Connect GET   ?message=&encoding=&base64=&compression=&connect=
 *   Connect stream  envelopes, connect-content-encoding,
 *                 connect-accept-encoding, connect-timeout-ms
 *   gRPC(-Web)    5-byte length-prefixed envelopes, grpc-encoding,
 *                 grpc-accept-encoding, grpc-timeout
 *
 * Unary and server-stream requests carry exactly one message. Client and
 * bidi streams only have their headers parsed here; their messages are
 * decoded one by one as they arrive (rpc_stream.c).
 *
 * The receive limit applies to the bytes on the wire and again to the
 * decompressed message.
 */
#include "rpc/rpc_internal.h"

#include <string.h>

static const char *hval(const http_request *req, const char *name)
{
    const http_header *h = rpc_header(req, name);
    return h ? h->value : NULL;
}

static int unknown_compression(const char *name, chcp_error **err)
{
    return error_set(err, CHCP_UNIMPLEMENTED,
                     "unknown compression \"%s\": supported encodings are " RPC_SUPPORTED_ENCODINGS,
                     name);
}

static ProtobufCMessage *unmarshal(rpc_call *call, const uint8_t *data, size_t len,
                                   chcp_error **err)
{
    const ProtobufCMessageDescriptor *desc = call->method->input;
    size_t max_elements = call->server->limits.max_message_elements;
    ProtobufCMessage *msg = NULL;
    if (call->codec == RPC_CODEC_PROTO) {
        if (rpc_check_binary(desc, data, len, max_elements, err) < 0)
            return NULL;
        msg = protobuf_c_message_unpack(desc, NULL, len, data);
        if (!msg)
            error_set(err, CHCP_INVALID_ARGUMENT, "unmarshal message: invalid %s", desc->name);
    } else if (len == 0) {
        error_set(err, CHCP_INVALID_ARGUMENT,
                  "unmarshal message: zero-length payload is not a valid JSON object");
    } else if (rpc_check_json((const char *)data, len, max_elements, err) == 0) {
        msg = protojson_decode(desc, (const char *)data, len, err);
        if (!msg && err && *err)
            error_prefix(*err, "unmarshal message");
    }
    return msg;
}

ProtobufCMessage *rpc_message_decode(rpc_call *call, const uint8_t *data, size_t len,
                                     bool compressed, chcp_error **err)
{
    size_t max = call->server->limits.max_message_bytes;
    chcp_buf plain = CHCP_BUF_INIT;
    if (len > 0 && compressed) {
        if (rpc_decompress(call->req_compression, data, len, max, &plain, err) < 0) {
            buf_free(&plain);
            return NULL;
        }
        data = plain.data ? plain.data : (const uint8_t *)"";
        len = plain.len;
    }
    ProtobufCMessage *msg = unmarshal(call, data, len, err);
    buf_free(&plain);
    return msg;
}

/* Decode the call's one request message; it is charged to the request's
 * memory budget. */
static int decode_message(rpc_call *call, const uint8_t *data, size_t len, bool compressed,
                          chcp_error **err)
{
    call->request = rpc_message_decode(call, data, len, compressed, err);
    /* Charged until the call is freed: a handler may hold the message long
     * after the answer (a deadline, a cancel). */
    if (call->request && call->server->budgets &&
        !(call->charge = http_request_charge(call->req, rpc_message_memory(call->request), err))) {
        protobuf_c_message_free_unpacked(call->request, NULL);
        call->request = NULL;
    }
    return call->request ? 0 : -1;
}

/* The transport refused the body: too large, or no memory budget left. */
static int body_refused(const http_request *req, chcp_error **err)
{
    if (req->body_too_large)
        return error_set(err, CHCP_RESOURCE_EXHAUSTED, "message is larger than the body limit");
    return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                     "request refused: the %s's memory budget for requests is spent; retry later",
                     req->budget_spent ? req->budget_spent : "server");
}

int rpc_envelope_check(rpc_call *call, uint8_t flags, chcp_error **err)
{
    if ((flags & RPC_FLAG_COMPRESSED) && call->req_compression == RPC_COMPRESSION_IDENTITY)
        return error_set(err, CHCP_INTERNAL,
                         "protocol error: sent compressed message without compression support");
    if (flags & ~RPC_FLAG_COMPRESSED)
        return error_set(err, CHCP_INTERNAL, "protocol error: invalid envelope flags %u", flags);
    return 0;
}

static int check_limit(rpc_call *call, size_t len, chcp_error **err)
{
    size_t max = call->server->limits.max_message_bytes;
    if (call->req->body_too_large || call->req->body_over_budget)
        return body_refused(call->req, err);
    if (max && len > max)
        return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                         "message size %zu is larger than configured max %zu", len, max);
    return 0;
}

/* ---- Connect ------------------------------------------------------------- */

static int connect_version(rpc_call *call, chcp_error **err)
{
    if (call->is_get) {
        const http_header *v = rpc_query_get(call->query, call->n_query, "connect");
        if (v && strcmp(v->value, "v1") != 0)
            return error_set(err, CHCP_INVALID_ARGUMENT, "connect must be \"v1\": got \"%s\"",
                             v->value);
        return 0;
    }
    const char *v = hval(call->req, "connect-protocol-version");
    if (v && strcmp(v, "1") != 0)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "connect-protocol-version must be \"1\": got \"%s\"", v);
    return 0;
}

static int connect_decode(rpc_call *call, chcp_error **err)
{
    http_request *req = call->req;
    const char *enc;
    if (call->is_get) {
        const http_header *c = rpc_query_get(call->query, call->n_query, "compression");
        enc = c ? c->value : NULL;
    } else {
        enc = hval(req, "content-encoding");
    }
    if (rpc_compression_parse(enc, &call->req_compression) < 0)
        return unknown_compression(enc, err);
    call->resp_compression =
        rpc_compression_negotiate(call->req_compression, hval(req, "accept-encoding"));
    if (connect_version(call, err) < 0)
        return -1;

    const char *timeout = hval(req, "connect-timeout-ms");
    if (timeout && rpc_parse_connect_timeout(timeout, &call->timeout_ms, err) < 0)
        return -1;
    if (timeout)
        call->deadline_ns = req->received_ns + (uint64_t)call->timeout_ms * 1000000u;

    if (!call->is_get) {
        if (check_limit(call, req->body_len, err) < 0)
            return -1;
        return decode_message(call, req->body, req->body_len,
                              call->req_compression != RPC_COMPRESSION_IDENTITY, err);
    }
    const http_header *m = rpc_query_get(call->query, call->n_query, "message");
    if (!m)
        return error_set(err, CHCP_INVALID_ARGUMENT, "missing message parameter");
    const http_header *b64 = rpc_query_get(call->query, call->n_query, "base64");
    if (b64 && strcmp(b64->value, "1") == 0) {
        chcp_buf raw = CHCP_BUF_INIT;
        int rc = -1;
        if (base64_decode(&raw, m->value, m->value_len) < 0)
            error_set(err, CHCP_INVALID_ARGUMENT, "read message: invalid base64 in message");
        else if (check_limit(call, raw.len, err) == 0)
            rc = decode_message(call, raw.data, raw.len,
                                call->req_compression != RPC_COMPRESSION_IDENTITY, err);
        buf_free(&raw);
        return rc;
    }
    if (check_limit(call, m->value_len, err) < 0)
        return -1;
    return decode_message(call, (const uint8_t *)m->value, m->value_len,
                          call->req_compression != RPC_COMPRESSION_IDENTITY, err);
}

/* ---- enveloped bodies (gRPC, gRPC-Web, Connect streams) ----------------------- */

static int grpc_headers(rpc_call *call, chcp_error **err)
{
    http_request *req = call->req;
    if (call->protocol == RPC_PROTOCOL_GRPC && req->http_major < 2)
        return error_set(err, CHCP_UNIMPLEMENTED,
                         "gRPC requires HTTP/2; use gRPC-Web or Connect over HTTP/1.1");
    const char *enc = hval(req, "grpc-encoding");
    if (rpc_compression_parse(enc, &call->req_compression) < 0)
        return unknown_compression(enc, err);
    call->resp_compression =
        rpc_compression_negotiate(call->req_compression, hval(req, "grpc-accept-encoding"));

    const char *timeout = hval(req, "grpc-timeout");
    if (timeout && *timeout) {
        uint64_t ns;
        if (rpc_parse_grpc_timeout(timeout, &ns, err) < 0)
            return -1;
        if (ns != UINT64_MAX && ns < UINT64_MAX - req->received_ns) {
            call->timeout_ms = (int64_t)(ns / 1000000u);
            call->deadline_ns = req->received_ns + ns;
        }
    }
    return 0;
}

/* Connect streaming headers (connect-go's NewConn for streams). */
static int connect_stream_headers(rpc_call *call, chcp_error **err)
{
    http_request *req = call->req;
    const char *enc = hval(req, "connect-content-encoding");
    if (rpc_compression_parse(enc, &call->req_compression) < 0)
        return unknown_compression(enc, err);
    call->resp_compression =
        rpc_compression_negotiate(call->req_compression, hval(req, "connect-accept-encoding"));
    if (connect_version(call, err) < 0)
        return -1;
    const char *timeout = hval(req, "connect-timeout-ms");
    if (timeout && rpc_parse_connect_timeout(timeout, &call->timeout_ms, err) < 0)
        return -1;
    if (timeout)
        call->deadline_ns = req->received_ns + (uint64_t)call->timeout_ms * 1000000u;
    return 0;
}

int rpc_request_stream_headers(rpc_call *call, chcp_error **err)
{
    if (call->protocol == RPC_PROTOCOL_CONNECT)
        return connect_stream_headers(call, err);
    return grpc_headers(call, err);
}

/* Exactly one envelope in a complete body (unary gRPC, server streams). */
static int decode_single_envelope(rpc_call *call, chcp_error **err)
{
    http_request *req = call->req;
    if (req->body_too_large || req->body_over_budget)
        return body_refused(req, err);
    size_t max = call->server->limits.max_message_bytes;
    size_t off = 0;
    rpc_envelope env;
    int rc = rpc_envelope_next(req->body, req->body_len, &off, max, &env, err);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return error_set(err, CHCP_UNIMPLEMENTED, "unary request has zero messages");
    if (rpc_envelope_check(call, env.flags, err) < 0)
        return -1;
    if (decode_message(call, env.data, env.len, env.flags & RPC_FLAG_COMPRESSED, err) < 0)
        return -1;
    /* The one message must be the whole body. */
    rpc_envelope extra;
    rc = rpc_envelope_next(req->body, req->body_len, &off, max, &extra, err);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return error_set(err, CHCP_UNIMPLEMENTED, "unary request has multiple messages");
    return 0;
}

int rpc_request_decode(rpc_call *call, chcp_error **err)
{
    int rc;
    if (call->protocol == RPC_PROTOCOL_CONNECT && call->method->stream_type == RPC_STREAM_UNARY)
        rc = connect_decode(call, err);
    else if ((rc = rpc_request_stream_headers(call, err)) == 0)
        rc = decode_single_envelope(call, err);
    /* Decoded (or refused): the body's memory and budget go back now, not
     * when the handler answers. */
    if (call->server->budgets)
        http_request_consume_body(call->req);
    return rc;
}
