/*
 * rpc_internal.h - what the rpc module's own files share, and what its unit
 * tests and fuzz target reach into. Not an interface for other modules: they
 * use rpc.h only.
 *
 * The module is split by responsibility:
 *   rpc_server.c    registry, routing, call lifecycle, deadlines, cancellation
 *   rpc_request.c   protocol-specific request decoding (Connect POST/GET,
 *                   gRPC and gRPC-Web envelopes) into a message or an error
 *   rpc_response.c  protocol-specific success and error responses
 *   rpc_wire.c      small wire-format helpers (content types, timeouts,
 *                   percent-encoding, envelopes, query strings, error JSON,
 *                   google.rpc.Status)
 *   rpc_stream.c    streams: incoming envelopes and their delivery, the
 *                   outgoing queue with backpressure, the end of a stream
 *   rpc_compress.c  gzip, deflate, brotli and zstd both ways, bounded
 *                   against decompression bombs
 *   rpc_limits.c    element/nesting checks before decoding, decoded size
 */
#ifndef CHCP_RPC_INTERNAL_H
#define CHCP_RPC_INTERNAL_H

#include <zlib.h>

#include "rpc/protojson.h"
#include "rpc/rpc.h"

typedef enum rpc_codec {
    RPC_CODEC_PROTO,
    RPC_CODEC_JSON,
} rpc_codec;

typedef enum rpc_compression {
    RPC_COMPRESSION_IDENTITY,
    RPC_COMPRESSION_GZIP,
    RPC_COMPRESSION_BROTLI,
    RPC_COMPRESSION_ZSTD,
    RPC_COMPRESSION_DEFLATE,
    RPC_COMPRESSION_COUNT,
} rpc_compression;

/* Encodings we can decode/encode, as listed in accept-encoding headers and
 * "unknown compression" errors (identity is implied, as in connect-go). */
#define RPC_SUPPORTED_ENCODINGS "gzip,br,zstd,deflate"

/* Receive limit when rpc_limits.max_message_bytes is 0 (the transport's
 * default body limit). */
#define RPC_DEFAULT_MAX_MESSAGE ((size_t)4 << 20)
#define RPC_DEFAULT_MAX_ELEMENTS ((size_t)16384)
/* A stream's send queue high-water mark when rpc_limits leaves it 0; the
 * writable callback runs once the queue is down to a quarter of it. */
#define RPC_DEFAULT_STREAM_HIGH_WATER ((size_t)64 << 10)

/* Envelope flags. */
#define RPC_FLAG_COMPRESSED 0x01
#define RPC_FLAG_END_STREAM 0x02 /* Connect streaming: the last envelope */
#define RPC_FLAG_TRAILERS 0x80   /* gRPC-Web: the trailer frame */

/* ---- response metadata lists ----------------------------------------- */

/* Headers we build for a response. Entries either point at static strings
 * or own one allocation holding "name\0value\0". The first RPC_HDRS_INLINE
 * entries live in the struct itself (no allocation on the common path), so
 * an rpc_hdrs must not be copied or moved once used. */
#define RPC_HDRS_INLINE 8
typedef struct rpc_hdrs {
    http_header *v;
    uint8_t *owned;
    size_t n, cap;
    http_header inl[RPC_HDRS_INLINE];
    uint8_t inl_owned[RPC_HDRS_INLINE];
} rpc_hdrs;

void rpc_hdrs_add_static(rpc_hdrs *h, const char *name, const char *value);
/* Copies name (lower-cased) and value. */
void rpc_hdrs_add_copy(rpc_hdrs *h, const char *name, size_t name_len, const char *value,
                       size_t value_len);
/* Value in binary form: stored as unpadded standard base64 (for "-bin" keys). */
void rpc_hdrs_add_bin(rpc_hdrs *h, const char *name, const uint8_t *value, size_t len);
void rpc_hdrs_free(rpc_hdrs *h);

/* ---- the server and its calls ---------------------------------------- */

typedef struct rpc_method {
    char *path; /* "/pkg.Service/Method" */
    const char *service_name;
    const char *method_name;
    const ProtobufCMessageDescriptor *input;
    const ProtobufCMessageDescriptor *output;
    rpc_handler_fn handler; /* NULL: unimplemented */
    void *service_data;
    rpc_stream_type stream_type;
    bool get_allowed; /* NO_SIDE_EFFECTS: Connect GET allowed */
} rpc_method;

/* Where responses go: http_respond in production, a capture in tests. */
typedef void (*rpc_respond_fn)(http_request *req, const http_response *resp);

struct rpc_server {
    uv_loop_t *loop;
    rpc_limits limits;
    rpc_observer obs;
    rpc_guard_fn guard;
    void *guard_ud;
    rpc_fallback_fn fallback;
    void *fallback_ud;
    rpc_respond_fn respond;
    /* Requests come from the transport (not a test's capture), so its
     * budget calls (http_request_charge, ...) apply to them. */
    bool budgets;
    rpc_method *methods; /* open-addressing hash table keyed by path */
    size_t n_methods, cap_methods;
    size_t active_calls;
    const char **services; /* registered service names, in order */
    size_t n_services;
    rpc_call *streams;                        /* streaming calls not yet answered */
    bool streams_closed;                      /* rpc_server_cancel_streams: no new streams */
    void *compressors[RPC_COMPRESSION_COUNT]; /* reused per algorithm (rpc_compress.c) */
    int fallback_marker;                      /* req->user of requests handed to the fallback */
};

/* A request's decoded form; the protocol-independent part of a call. */
struct rpc_call {
    rpc_server *server;
    http_request *req; /* NULL once answered (the transport frees it) */
    const rpc_method *method;
    rpc_protocol protocol;
    rpc_codec codec;
    bool is_get;
    bool answered; /* response handed to the transport */
    bool finished; /* the handler finished the call (or never will run) */
    bool canceled; /* deadline passed or client gone before the answer */
    bool timer_active;
    bool started; /* observer on_start ran */
    rpc_compression req_compression;
    rpc_compression resp_compression;
    const char *content_type; /* response content type on success */
    int64_t timeout_ms;       /* as sent, -1 without */
    uint64_t deadline_ns;     /* monotonic, 0 without */
    ProtobufCMessage *request;
    http_charge *charge; /* the request\'s memory, counted in the transport budget */
    http_header *query;  /* decoded GET query parameters */
    size_t n_query;
    rpc_hdrs headers;  /* custom response headers */
    rpc_hdrs trailers; /* custom response trailers */
    void (*cancel_fn)(rpc_call *call, void *ud);
    void *cancel_ud;
    void *user;
    void *trace; /* the observer's (telemetry's) slot */
    char *principal;
    void *grant;
    void (*grant_free)(void *grant);
    uv_timer_t timer;

    /* Streams (rpc_stream.c). */
    rpc_call *stream_next, *stream_prev; /* server->streams while unanswered */
    bool in_streams;
    bool streamed_body;  /* the body arrives through on_body (client, bidi) */
    bool resp_started;   /* response headers handed to the transport */
    bool in_end;         /* the client finished sending */
    bool recv_started;   /* rpc_call_recv was called */
    bool recv_paused;    /* rpc_call_recv_pause(true) */
    bool end_delivered;  /* on_end ran */
    bool delivering;     /* inside the delivery loop (no re-entry) */
    unsigned busy;       /* inside a handler callback: do not free */
    chcp_buf in;         /* received bytes not yet delivered */
    size_t in_off;       /* start of the first undelivered envelope */
    size_t n_received;   /* messages delivered */
    rpc_recv_hooks recv; /* on_message / on_end */
    void *recv_ud;
    void (*writable_fn)(rpc_call *call, void *ud);
    void *writable_ud;
};

/* Tests and the fuzzer answer into a capture instead of a socket (their
 * requests are not the transport's: no budget calls are made for them). */
void rpc_server_set_responder(rpc_server *s, rpc_respond_fn fn);

/* ---- what a message costs (rpc_limits.c) ------------------------------- */

/* Before decoding: more than max_elements elements is resource_exhausted;
 * nested deeper than the JSON codec allows is invalid_argument. Malformed
 * input passes (the decoder reports it). */
int rpc_check_binary(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                     size_t max_elements, chcp_error **err);
int rpc_check_json(const char *json, size_t len, size_t max_elements, chcp_error **err);
/* The heap a decoded message holds (structs, arrays, strings, unknown
 * fields), allocator overhead included: what it is charged. */
size_t rpc_message_memory(const ProtobufCMessage *msg);

/* Hand a finished response to the transport; marks the call answered. */
void rpc_call_answer(rpc_call *call, const http_response *resp, chcp_code code);
/* Mark the call answered (observer on_finish, timer stopped) and hand back
 * its request, which the caller answers right away. */
http_request *rpc_call_mark_answered(rpc_call *call, chcp_code code);
/* Answer now with an error (deadline, client gone, bad incoming message),
 * then tell the handler through its cancel hook. */
void rpc_call_cancel(rpc_call *call, chcp_code code, const char *why);
/* Free the call if it is both answered and finished (and not busy). */
void rpc_call_release(rpc_call *call);

/* ---- request decoding (rpc_request.c) --------------------------------- */

/* Fill the call's protocol fields and decode its single request message.
 * On failure returns -1 with *err set to the code/message to answer. */
int rpc_request_decode(rpc_call *call, chcp_error **err);
/* Streams whose body is streamed: the per-protocol headers only
 * (compression, timeout, version). */
int rpc_request_stream_headers(rpc_call *call, chcp_error **err);
/* Decompress (per `compressed`) and unmarshal one message. */
ProtobufCMessage *rpc_message_decode(rpc_call *call, const uint8_t *data, size_t len,
                                     bool compressed, chcp_error **err);
/* Check an incoming envelope's flags for the call's protocol. */
int rpc_envelope_check(rpc_call *call, uint8_t flags, chcp_error **err);

/* ---- responses (rpc_response.c) --------------------------------------- */

typedef struct rpc_detail {
    const char *type_name; /* full message name, no type.googleapis.com/ */
    size_t type_len;
    const uint8_t *value;
    size_t value_len;
} rpc_detail;

void rpc_respond_success(rpc_call *call, const ProtobufCMessage *msg);
/* gRPC / gRPC-Web error as one response (trailers-only without custom
 * headers). */
void rpc_respond_grpc_error(rpc_call *call, chcp_code code, const char *message,
                            const rpc_detail *details, size_t n_details);
void rpc_respond_error(rpc_call *call, chcp_code code, const char *message,
                       const rpc_detail *details, size_t n_details);
/* Error details from handler messages: a google.protobuf.Any is sent as it
 * is, any other message is packed and named by its full name. store[i] keeps
 * packed bytes alive until the response is built (buf_free each). */
void rpc_details_from_messages(const ProtobufCMessage *const *msgs, size_t n, rpc_detail *out,
                               chcp_buf *store);
/* Serialise msg after `prefix` reserved bytes of out (the call's codec). */
int rpc_message_encode(rpc_call *call, const ProtobufCMessage *msg, chcp_buf *out, size_t prefix,
                       chcp_error **err);
/* Compress out[prefix..] when negotiated and at least compress_min_bytes;
 * true if it is now compressed. */
bool rpc_maybe_compress(rpc_call *call, chcp_buf *out, size_t prefix);
/* Response headers of a stream (content type, encodings, custom ones). */
void rpc_stream_headers(rpc_call *call, rpc_hdrs *h);
/* The end of a stream in its protocol: Connect end-stream envelope, gRPC
 * trailers or the gRPC-Web trailer frame (written with `write`, the trailers
 * returned in `t` for gRPC). */
void rpc_stream_end_frame(rpc_call *call, chcp_code code, const char *message,
                          const rpc_detail *details, size_t n_details, chcp_buf *body, rpc_hdrs *t);
/* Plain HTTP answers from routing: 404, 405 + Allow, 415 + Accept-Post. */
void rpc_respond_plain(rpc_server *s, http_request *req, int status, const char *hname,
                       const char *hvalue);

/* ---- streams (rpc_stream.c) -------------------------------------------- */

/* Start a client or bidi stream whose headers arrived: parse them, start
 * the handler (or answer the error). */
void rpc_stream_start(rpc_call *call);
void rpc_stream_on_body(rpc_call *call, const uint8_t *data, size_t len, bool end);
void rpc_stream_on_drain(rpc_call *call);
/* Send a message as a stream's last (client streams: only) one. */
int rpc_stream_send_last(rpc_call *call, const ProtobufCMessage *msg);
/* End a stream with `code` (OK or an error), headers first if not sent. */
void rpc_stream_finish(rpc_call *call, chcp_code code, const char *message,
                       const rpc_detail *details, size_t n_details);
void rpc_stream_free(rpc_call *call);

/* ---- wire helpers (rpc_wire.c) ---------------------------------------- */

/* Content-Type -> protocol/codec and the canonical spelling connect-go echoes,
 * for a unary (Connect: application/proto|json) or a streaming method
 * (Connect: application/connect+proto|json). Returns 0, or -1 if no protocol
 * handles it for that kind of method. */
int rpc_content_type_parse(const char *value, bool streaming, rpc_protocol *protocol,
                           rpc_codec *codec, const char **canonical);
/* What 415 answers list in Accept-Post (unary and streaming methods). */
extern const char rpc_accept_post[];
extern const char rpc_accept_post_stream[];

/* Connect-Timeout-Ms: at most 10 digits. 0 ok, -1 invalid (err set). */
int rpc_parse_connect_timeout(const char *value, int64_t *ms, chcp_error **err);
/* grpc-timeout: at most 8 digits and a unit H M S m u n. *ns is UINT64_MAX
 * when it does not fit (effectively no timeout). */
int rpc_parse_grpc_timeout(const char *value, uint64_t *ns, chcp_error **err);

/* grpc-message encoding: bytes outside 0x20..0x7E and '%' become %XX. */
void rpc_percent_encode(chcp_buf *out, const char *msg, size_t len);
/* Inverse of the above (lenient: invalid escapes are kept as-is). */
void rpc_percent_decode(chcp_buf *out, const char *msg, size_t len);

/* One length-prefixed message of a gRPC body. */
typedef struct rpc_envelope {
    uint8_t flags;
    const uint8_t *data;
    size_t len;
} rpc_envelope;

/* Read the envelope at *off. Returns 1 with *env filled, 0 at the clean end
 * of the body, -1 on error (incomplete prefix or body: invalid_argument;
 * larger than max_len: resource_exhausted). */
int rpc_envelope_next(const uint8_t *body, size_t len, size_t *off, size_t max_len,
                      rpc_envelope *env, chcp_error **err);
void rpc_envelope_prefix(uint8_t out[5], uint8_t flags, size_t len);

/* Parse a query string ("a=1&b=%20") like Go's url.ParseQuery: '+' is a
 * space, %XX decoded. Malformed escapes: -1 (invalid_argument). */
int rpc_query_parse(const char *query, http_header **params, size_t *n, chcp_error **err);
void rpc_query_free(http_header *params, size_t n);
/* First value of `name`, or NULL. */
const http_header *rpc_query_get(const http_header *params, size_t n, const char *name);

/* Connect error body {"code":..,"message":..,"details":[{"type","value"}]}. */
void rpc_error_json(chcp_buf *out, chcp_code code, const char *message, const rpc_detail *details,
                    size_t n_details);
/* JSON string literal with escaping; invalid UTF-8 becomes U+FFFD. */
void rpc_json_string(chcp_buf *out, const char *s, size_t len);
/* google.rpc.Status{code, message, details: Any{type_url, value}} in binary. */
void rpc_status_encode(chcp_buf *out, chcp_code code, const char *message,
                       const rpc_detail *details, size_t n_details);
/* gRPC-Web trailer frame: 0x80, length, "name: value\r\n"... (lower case). */
void rpc_grpc_web_trailer_frame(chcp_buf *out, const http_header *trailers, size_t n);

/* Case-insensitive header lookup over a request (first match). */
const http_header *rpc_header(const http_request *req, const char *name);

/* ---- compression (rpc_compress.c) ------------------------------------- */

/* Name -> compression; -1 if unsupported. "" and "identity" are identity. */
int rpc_compression_parse(const char *name, rpc_compression *out);
const char *rpc_compression_name(rpc_compression c);
/* Pick the response encoding like connect-go: the request's, else the first
 * supported name in accept (comma/space separated). */
rpc_compression rpc_compression_negotiate(rpc_compression req, const char *accept);

/* Decompress; output beyond max_out bytes stops the work at once with
 * resource_exhausted (a decompression bomb costs max_out, not more). */
int rpc_decompress(rpc_compression c, const uint8_t *in, size_t len, size_t max_out, chcp_buf *out,
                   chcp_error **err);
/* Compress, appending to out, reusing the server's compressor state. */
int rpc_compress(rpc_server *s, rpc_compression c, const uint8_t *in, size_t len, chcp_buf *out,
                 chcp_error **err);
void rpc_compressors_free(rpc_server *s);
/* The gzip pair, kept for the unit tests and fuzzers. */
int rpc_gzip_decompress(const uint8_t *in, size_t len, size_t max_out, chcp_buf *out,
                        chcp_error **err);
int rpc_gzip_compress(z_stream **cache, const uint8_t *in, size_t len, chcp_buf *out,
                      chcp_error **err);
void rpc_gzip_cache_free(z_stream **cache);

#endif
