/*
 * rpc_response.c - build the HTTP response for a call's outcome, per
 * protocol, as connect-go writes it:
 *
 *   Connect   200 + bare (maybe gzip) message, or the status from the code
 *             table + a JSON error body; trailers ride as "trailer-" headers
 *   gRPC      headers, one envelope, HTTP/2 trailers (grpc-status,
 *             grpc-message, grpc-status-details-bin); errors without custom
 *             headers are trailers-only (one HEADERS frame)
 *   gRPC-Web  the same, with trailers as a final 0x80 envelope in the body
 *
 * The whole response is assembled in one buffer and handed to the transport
 * in one piece. Streams (rpc_stream.c) use the pieces here for their headers
 * and their end: the Connect end-stream envelope {"error":..,"metadata":..},
 * gRPC trailers, the gRPC-Web trailer frame.
 */
#include "rpc/rpc_internal.h"

#include "google/protobuf/any.pb-c.h"

#include <string.h>

static const int connect_status[] = {
    200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
};

static int http_status_for(chcp_code code)
{
    return (unsigned)code < ARRAY_SIZE(connect_status) ? connect_status[code] : 500;
}

static void add_refs(rpc_hdrs *dst, const rpc_hdrs *src)
{
    for (size_t i = 0; i < src->n; i++)
        rpc_hdrs_add_static(dst, src->v[i].name, src->v[i].value);
    /* add_static measured with strlen; restore exact lengths (binary-safe). */
    for (size_t i = 0; i < src->n; i++)
        dst->v[dst->n - src->n + i].value_len = src->v[i].value_len;
}

static void add_connect_trailers(rpc_hdrs *dst, const rpc_hdrs *trailers)
{
    for (size_t i = 0; i < trailers->n; i++) {
        char name[256];
        int n = snprintf(name, sizeof(name), "trailer-%s", trailers->v[i].name);
        if (n > 0 && (size_t)n < sizeof(name))
            rpc_hdrs_add_copy(dst, name, (size_t)n, trailers->v[i].value, trailers->v[i].value_len);
    }
}

static void emit(rpc_call *call, int status, rpc_hdrs *hdrs, const chcp_buf *body,
                 const rpc_hdrs *trailers, chcp_code code)
{
    http_response resp = {
        .status = status,
        .headers = hdrs->v,
        .n_headers = hdrs->n,
        .body = body ? body->data : NULL,
        .body_len = body ? body->len : 0,
        .trailers = trailers ? trailers->v : NULL,
        .n_trailers = trailers ? trailers->n : 0,
    };
    rpc_call_answer(call, &resp, code);
}

/* ---- errors ------------------------------------------------------------- */

/* google.rpc.Status trailers: grpc-status, grpc-message, details. */
static void grpc_status_trailers(rpc_hdrs *st, chcp_code code, const char *message,
                                 const rpc_detail *details, size_t n_details)
{
    chcp_buf tmp = CHCP_BUF_INIT;
    char num[12];
    int nl = snprintf(num, sizeof(num), "%d", (int)code);
    rpc_hdrs_add_copy(st, "grpc-status", 11, num, (size_t)nl);
    if (code != CHCP_OK || (message && *message)) {
        rpc_percent_encode(&tmp, message ? message : "", message ? strlen(message) : 0);
        rpc_hdrs_add_copy(st, "grpc-message", 12, tmp.data ? (const char *)tmp.data : "", tmp.len);
    }
    if (n_details) {
        buf_reset(&tmp);
        rpc_status_encode(&tmp, code, message, details, n_details);
        rpc_hdrs_add_bin(st, "grpc-status-details-bin", tmp.data, tmp.len);
    }
    buf_free(&tmp);
}

static void connect_error(rpc_call *call, chcp_code code, const char *message,
                          const rpc_detail *details, size_t n_details)
{
    rpc_hdrs h = {0};
    chcp_buf body = CHCP_BUF_INIT;
    rpc_hdrs_add_static(&h, "content-type", "application/json");
    rpc_hdrs_add_static(&h, "accept-encoding", RPC_SUPPORTED_ENCODINGS);
    if (call->is_get)
        rpc_hdrs_add_static(&h, "vary", "Accept-Encoding");
    add_refs(&h, &call->headers);
    add_connect_trailers(&h, &call->trailers);
    rpc_error_json(&body, code, message, details, n_details);
    emit(call, http_status_for(code), &h, &body, NULL, code);
    rpc_hdrs_free(&h);
    buf_free(&body);
}

void rpc_respond_grpc_error(rpc_call *call, chcp_code code, const char *message,
                            const rpc_detail *details, size_t n_details)
{
    rpc_hdrs h = {0}, t = {0};
    chcp_buf body = CHCP_BUF_INIT;
    bool web = call->protocol == RPC_PROTOCOL_GRPC_WEB;
    /* Trailers-only when the handler set no headers (connect-go does the same
     * for gRPC-Web; for gRPC it is the canonical immediate-error form). */
    bool trailers_only = call->headers.n == 0;
    rpc_hdrs *st = trailers_only ? &h : &t;

    rpc_hdrs_add_static(&h, "content-type", call->content_type);
    rpc_hdrs_add_static(&h, "grpc-accept-encoding", RPC_SUPPORTED_ENCODINGS);
    add_refs(&h, &call->headers);

    grpc_status_trailers(st, code, message, details, n_details);
    add_refs(st, &call->trailers);

    if (trailers_only) {
        emit(call, 200, &h, NULL, NULL, code);
    } else if (web) {
        rpc_grpc_web_trailer_frame(&body, t.v, t.n);
        emit(call, 200, &h, &body, NULL, code);
    } else {
        emit(call, 200, &h, NULL, &t, code);
    }
    rpc_hdrs_free(&h);
    rpc_hdrs_free(&t);
    buf_free(&body);
}

void rpc_respond_error(rpc_call *call, chcp_code code, const char *message,
                       const rpc_detail *details, size_t n_details)
{
    if (code == CHCP_OK)
        code = CHCP_UNKNOWN; /* an error must carry an error code */
    if (call->method->stream_type != RPC_STREAM_UNARY) {
        rpc_stream_finish(call, code, message, details, n_details);
        return;
    }
    if (call->protocol == RPC_PROTOCOL_CONNECT)
        connect_error(call, code, message, details, n_details);
    else
        rpc_respond_grpc_error(call, code, message, details, n_details);
}

/* ---- success -------------------------------------------------------------- */

int rpc_message_encode(rpc_call *call, const ProtobufCMessage *msg, chcp_buf *out, size_t prefix,
                       chcp_error **err)
{
    buf_reserve(out, prefix);
    out->len = prefix;
    if (call->codec == RPC_CODEC_JSON)
        return protojson_encode(msg, out, err);
    size_t n = protobuf_c_message_get_packed_size(msg);
    buf_reserve(out, n);
    out->len += protobuf_c_message_pack(msg, out->data + prefix);
    return 0;
}

bool rpc_maybe_compress(rpc_call *call, chcp_buf *out, size_t prefix)
{
    size_t len = out->len - prefix;
    if (call->resp_compression == RPC_COMPRESSION_IDENTITY ||
        len < call->server->limits.compress_min_bytes)
        return false;
    chcp_buf z = CHCP_BUF_INIT;
    cleanup_error chcp_error *err = NULL;
    buf_reserve(&z, prefix);
    if (prefix)
        memcpy(z.data, out->data, prefix);
    z.len = prefix;
    if (rpc_compress(call->server, call->resp_compression, out->data + prefix, len, &z, &err) < 0) {
        buf_free(&z);
        return false; /* sending it uncompressed is always allowed */
    }
    buf_free(out);
    *out = z;
    return true;
}

void rpc_respond_success(rpc_call *call, const ProtobufCMessage *msg)
{
    bool connect = call->protocol == RPC_PROTOCOL_CONNECT;
    size_t prefix = connect ? 0 : 5;
    chcp_buf body = CHCP_BUF_INIT;
    cleanup_error chcp_error *err = NULL;
    if (rpc_message_encode(call, msg, &body, prefix, &err) < 0) {
        buf_free(&body);
        error_prefix(err, "marshal message");
        rpc_respond_error(call, CHCP_INTERNAL, err ? err->message : "marshal message", NULL, 0);
        return;
    }
    bool compressed = rpc_maybe_compress(call, &body, prefix);
    const char *enc = rpc_compression_name(call->resp_compression);
    /* A reader that does not read cannot make the daemon hold answers
     * beyond its budget: it gets a (small) error instead. */
    if (call->server->budgets && http_response_reserve(call->req, body.len, &err) < 0) {
        buf_free(&body);
        rpc_respond_error(call, err->code, err->message, NULL, 0);
        return;
    }
    rpc_hdrs h = {0}, t = {0};
    rpc_hdrs_add_static(&h, "content-type", call->content_type);
    if (connect) {
        rpc_hdrs_add_static(&h, "accept-encoding", RPC_SUPPORTED_ENCODINGS);
        if (call->is_get)
            rpc_hdrs_add_static(&h, "vary", "Accept-Encoding");
        if (compressed)
            rpc_hdrs_add_static(&h, "content-encoding", enc);
        add_refs(&h, &call->headers);
        add_connect_trailers(&h, &call->trailers);
        emit(call, 200, &h, &body, NULL, CHCP_OK);
    } else {
        rpc_hdrs_add_static(&h, "grpc-accept-encoding", RPC_SUPPORTED_ENCODINGS);
        if (call->resp_compression != RPC_COMPRESSION_IDENTITY)
            rpc_hdrs_add_static(&h, "grpc-encoding", enc);
        add_refs(&h, &call->headers);
        rpc_envelope_prefix(body.data, compressed ? 1 : 0, body.len - 5);
        rpc_hdrs_add_static(&t, "grpc-status", "0");
        add_refs(&t, &call->trailers);
        if (call->protocol == RPC_PROTOCOL_GRPC_WEB) {
            rpc_grpc_web_trailer_frame(&body, t.v, t.n);
            emit(call, 200, &h, &body, NULL, CHCP_OK);
        } else {
            emit(call, 200, &h, &body, &t, CHCP_OK);
        }
    }
    rpc_hdrs_free(&h);
    rpc_hdrs_free(&t);
    buf_free(&body);
}

/* ---- streams ----------------------------------------------------------------- */

void rpc_stream_headers(rpc_call *call, rpc_hdrs *h)
{
    bool connect = call->protocol == RPC_PROTOCOL_CONNECT;
    rpc_hdrs_add_static(h, "content-type", call->content_type);
    rpc_hdrs_add_static(h, connect ? "connect-accept-encoding" : "grpc-accept-encoding",
                        RPC_SUPPORTED_ENCODINGS);
    /* Each message says whether it is compressed; the header names how. */
    if (call->resp_compression != RPC_COMPRESSION_IDENTITY)
        rpc_hdrs_add_static(h, connect ? "connect-content-encoding" : "grpc-encoding",
                            rpc_compression_name(call->resp_compression));
    add_refs(h, &call->headers);
}

/* {"error":{...},"metadata":{"name":["v",...],...}} as an end-stream envelope. */
static void connect_end_stream(rpc_call *call, chcp_code code, const char *message,
                               const rpc_detail *details, size_t n_details, chcp_buf *body)
{
    chcp_buf json = CHCP_BUF_INIT;
    buf_append(&json, "\0\0\0\0\0{", 6);
    bool first = true;
    if (code != CHCP_OK) {
        buf_append_str(&json, "\"error\":");
        rpc_error_json(&json, code, message, details, n_details);
        first = false;
    }
    const rpc_hdrs *t = &call->trailers;
    if (t->n) {
        buf_append_str(&json, first ? "\"metadata\":{" : ",\"metadata\":{");
        for (size_t i = 0; i < t->n; i++) {
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen = strcmp(t->v[j].name, t->v[i].name) == 0;
            if (seen)
                continue; /* grouped with its first occurrence */
            if (json.data[json.len - 1] != '{')
                buf_append_byte(&json, ',');
            rpc_json_string(&json, t->v[i].name, t->v[i].name_len);
            buf_append_str(&json, ":[");
            for (size_t j = i, k = 0; j < t->n; j++) {
                if (strcmp(t->v[j].name, t->v[i].name) != 0)
                    continue;
                if (k++)
                    buf_append_byte(&json, ',');
                rpc_json_string(&json, t->v[j].value, t->v[j].value_len);
            }
            buf_append_byte(&json, ']');
        }
        buf_append_byte(&json, '}');
    }
    buf_append_byte(&json, '}');
    bool compressed = rpc_maybe_compress(call, &json, 5);
    rpc_envelope_prefix(json.data, RPC_FLAG_END_STREAM | (compressed ? RPC_FLAG_COMPRESSED : 0),
                        json.len - 5);
    buf_append(body, json.data, json.len);
    buf_free(&json);
}

void rpc_stream_end_frame(rpc_call *call, chcp_code code, const char *message,
                          const rpc_detail *details, size_t n_details, chcp_buf *body, rpc_hdrs *t)
{
    if (call->protocol == RPC_PROTOCOL_CONNECT) {
        connect_end_stream(call, code, message, details, n_details, body);
        return;
    }
    grpc_status_trailers(t, code, message, details, n_details);
    add_refs(t, &call->trailers);
    if (call->protocol == RPC_PROTOCOL_GRPC_WEB) {
        rpc_grpc_web_trailer_frame(body, t->v, t->n);
        rpc_hdrs_free(t);
    }
}

/* ---- routing answers ------------------------------------------------------- */

void rpc_respond_plain(rpc_server *s, http_request *req, int status, const char *hname,
                       const char *hvalue)
{
    http_header h[1];
    size_t n = 0;
    if (hname)
        h[n++] = (http_header){hname, hvalue, strlen(hname), strlen(hvalue)};
    http_response resp = {.status = status, .headers = h, .n_headers = n};
    s->respond(req, &resp);
}

/* ---- details from messages ------------------------------------------------- */

void rpc_details_from_messages(const ProtobufCMessage *const *msgs, size_t n, rpc_detail *out,
                               chcp_buf *store)
{
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessage *m = msgs[i];
        if (m->descriptor == &google__protobuf__any__descriptor) {
            const Google__Protobuf__Any *any = (const Google__Protobuf__Any *)m;
            const char *url = any->type_url ? any->type_url : "";
            const char *slash = strrchr(url, '/');
            const char *name = slash ? slash + 1 : url;
            out[i] = (rpc_detail){name, strlen(name), any->value.data, any->value.len};
            continue;
        }
        size_t len = protobuf_c_message_get_packed_size(m);
        buf_reserve(&store[i], len);
        store[i].len = protobuf_c_message_pack(m, store[i].data);
        out[i] = (rpc_detail){m->descriptor->name, strlen(m->descriptor->name), store[i].data,
                              store[i].len};
    }
}
