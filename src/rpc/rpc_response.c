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
 * in one piece.
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

static void grpc_error(rpc_call *call, chcp_code code, const char *message,
                       const rpc_detail *details, size_t n_details)
{
    rpc_hdrs h = {0}, t = {0};
    chcp_buf body = CHCP_BUF_INIT, tmp = CHCP_BUF_INIT;
    bool web = call->protocol == RPC_PROTOCOL_GRPC_WEB;
    /* Trailers-only when the handler set no headers (connect-go does the same
     * for gRPC-Web; for gRPC it is the canonical immediate-error form). */
    bool trailers_only = call->headers.n == 0;
    rpc_hdrs *st = trailers_only ? &h : &t;

    rpc_hdrs_add_static(&h, "content-type", call->content_type);
    rpc_hdrs_add_static(&h, "grpc-accept-encoding", RPC_SUPPORTED_ENCODINGS);
    add_refs(&h, &call->headers);

    char num[12];
    int nl = snprintf(num, sizeof(num), "%d", (int)code);
    rpc_hdrs_add_copy(st, "grpc-status", 11, num, (size_t)nl);
    rpc_percent_encode(&tmp, message ? message : "", message ? strlen(message) : 0);
    rpc_hdrs_add_copy(st, "grpc-message", 12, tmp.data ? (const char *)tmp.data : "", tmp.len);
    if (n_details) {
        buf_reset(&tmp);
        rpc_status_encode(&tmp, code, message, details, n_details);
        rpc_hdrs_add_bin(st, "grpc-status-details-bin", tmp.data, tmp.len);
    }
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
    buf_free(&tmp);
}

void rpc_respond_error(rpc_call *call, chcp_code code, const char *message,
                       const rpc_detail *details, size_t n_details)
{
    if (code == CHCP_OK)
        code = CHCP_UNKNOWN; /* an error must carry an error code */
    if (call->protocol == RPC_PROTOCOL_CONNECT)
        connect_error(call, code, message, details, n_details);
    else
        grpc_error(call, code, message, details, n_details);
}

/* ---- success -------------------------------------------------------------- */

/* Serialise msg into out after `prefix` reserved bytes. */
static int encode_message(rpc_call *call, const ProtobufCMessage *msg, chcp_buf *out, size_t prefix,
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

/* Compress out[prefix..] when negotiated and worth it. Returns true if the
 * body in *out is now compressed. */
static bool maybe_compress(rpc_call *call, chcp_buf *out, size_t prefix)
{
    size_t len = out->len - prefix;
    if (call->resp_compression != RPC_COMPRESSION_GZIP ||
        len < call->server->limits.compress_min_bytes)
        return false;
    chcp_buf z = CHCP_BUF_INIT;
    cleanup_error chcp_error *err = NULL;
    buf_reserve(&z, prefix);
    z.len = prefix;
    if (rpc_gzip_compress(&call->server->deflater, out->data + prefix, len, &z, &err) < 0) {
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
    if (encode_message(call, msg, &body, prefix, &err) < 0) {
        buf_free(&body);
        error_prefix(err, "marshal message");
        rpc_respond_error(call, CHCP_INTERNAL, err ? err->message : "marshal message", NULL, 0);
        return;
    }
    bool compressed = maybe_compress(call, &body, prefix);
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
            rpc_hdrs_add_static(&h, "content-encoding", "gzip");
        add_refs(&h, &call->headers);
        add_connect_trailers(&h, &call->trailers);
        emit(call, 200, &h, &body, NULL, CHCP_OK);
    } else {
        rpc_hdrs_add_static(&h, "grpc-accept-encoding", RPC_SUPPORTED_ENCODINGS);
        if (call->resp_compression == RPC_COMPRESSION_GZIP)
            rpc_hdrs_add_static(&h, "grpc-encoding", "gzip");
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
