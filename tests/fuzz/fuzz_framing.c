/*
 * fuzz_framing.c - libFuzzer target for the rpc request path: arbitrary
 * bytes become an http_request (method, HTTP version, content type,
 * encodings, timeout, query, body) handed to rpc_server_on_request(), with
 * responses captured instead of written to a socket. Exercises routing,
 * content-type parsing, Connect GET query decoding, gRPC envelopes, gzip,
 * limits and both codecs.
 *
 * Input layout: byte 0 selects method/path/HTTP version; then up to four
 * '\n'-terminated fields (content-type, encoding, timeout, query); the rest
 * is the body. Invariant checked: every request gets exactly one answer, also
 * when the handler ("Slow") only answers after the client went away.
 */
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/wrappers.pb-c.h"
#include "rpc/rpc_internal.h"

static const ProtobufCMethodDescriptor methods[] = {
    {"Echo", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
    {"Get", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
    {"Missing", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
    {"Slow", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
};
static const unsigned method_index[] = {0, 1, 2, 3};
static const ProtobufCServiceDescriptor service = {
    PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
    "fuzz.v1.Svc",
    "Svc",
    "Fuzz__V1__Svc",
    "fuzz.v1",
    4,
    methods,
    method_index,
};
static const protometa_method meta_methods[] = {
    {"fuzz.v1.Svc", "Get", PROTOMETA_NO_SIDE_EFFECTS, false, false}};
static const protometa_table meta = {NULL, 0, meta_methods, 1, NULL, 0};

static int answers;

static void capture(http_request *req, const http_response *resp)
{
    answers++;
    if (resp->status < 200 || resp->status > 599)
        abort();
    for (size_t i = 0; i < resp->n_headers; i++)
        if (strlen(resp->headers[i].name) != resp->headers[i].name_len)
            abort();
}

static void echo(rpc_call *call, const ProtobufCMessage *req, void *sd)
{
    rpc_call_add_header(call, "x-bin", "\x00\x01", 2);
    rpc_call_add_trailer(call, "x-t", "v", 1);
    const char *v = ((const Google__Protobuf__StringValue *)req)->value;
    if (v && v[0] == 'e') {
        rpc_call_fail_details(call, CHCP_ABORTED, "err \x01\xff", &req, 1);
        return;
    }
    rpc_call_succeed(call, req);
}

/* Slow answers only after the client is gone: the late answer is dropped. */
static rpc_call *slow;
static bool slow_canceled;
static void on_slow_cancel(rpc_call *call, void *ud)
{
    slow_canceled = true;
}
static void slow_handler(rpc_call *call, const ProtobufCMessage *req, void *sd)
{
    slow = call;
    rpc_call_on_cancel(call, on_slow_cancel, NULL);
}

static const rpc_method_impl impls[] = {{"Echo", echo}, {"Get", echo}, {"Slow", slow_handler}};
static uv_loop_t loop;
static rpc_server *srv;

static void init(void)
{
    protometa_register(&meta);
    uv_loop_init(&loop);
    rpc_limits lim = {.max_message_bytes = 4096, .compress_min_bytes = 16};
    srv = rpc_server_new(&loop, &lim);
    rpc_server_set_responder(srv, capture);
    if (rpc_server_register(srv, &service, impls, ARRAY_SIZE(impls), NULL, NULL) < 0)
        abort();
}

/* Next '\n'-terminated field as a NUL-terminated copy, or NULL. */
static char *field(const uint8_t **p, size_t *left)
{
    const uint8_t *nl = memchr(*p, '\n', *left);
    if (!nl)
        return NULL;
    size_t n = (size_t)(nl - *p);
    if (memchr(*p, 0, n))
        n = strnlen((const char *)*p, n); /* transport refuses NULs in values */
    char *s = xstrndup((const char *)*p, n);
    *left -= (size_t)(nl - *p) + 1;
    *p = nl + 1;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        init();
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    char *ct = field(&p, &left);
    char *enc = field(&p, &left);
    char *timeout = field(&p, &left);
    char *query = field(&p, &left);

    static const char *const paths[] = {"/fuzz.v1.Svc/Echo", "/fuzz.v1.Svc/Get",
                                        "/fuzz.v1.Svc/Missing", "/fuzz.v1.Svc/Slow"};
    static const char *const verbs[] = {"POST", "GET", "PUT", "POST"};
    http_header h[4];
    size_t nh = 0;
    bool grpc = ct && strstr(ct, "grpc");
    if (ct)
        h[nh++] = (http_header){"content-type", ct, 12, strlen(ct)};
    if (enc) {
        const char *n = grpc ? "grpc-encoding" : "content-encoding";
        h[nh++] = (http_header){n, enc, strlen(n), strlen(enc)};
    }
    if (timeout) {
        const char *n = grpc ? "grpc-timeout" : "connect-timeout-ms";
        h[nh++] = (http_header){n, timeout, strlen(n), strlen(timeout)};
    }
    h[nh++] = (http_header){"accept-encoding", "gzip", 15, 4};
    uint8_t *body = xmalloc(left ? left : 1);
    memcpy(body, p, left);
    http_request req = {
        .http_major = (ctl & 0x10) ? 2 : 1,
        .method = verbs[(ctl >> 2) & 3],
        .path = (ctl & 0xe0) == 0x60 ? "/nope" : paths[ctl & 3],
        .query = query,
        .headers = h,
        .n_headers = nh,
        .body = body,
        .body_len = left,
        .body_too_large = (ctl & 0xe0) == 0xe0,
        .received_ns = time_mono_ns(),
    };
    answers = 0;
    slow = NULL;
    slow_canceled = false;
    rpc_server_on_request(&req, srv);
    if (slow) {
        /* Still pending: the client goes away, then the handler answers. */
        if (answers != 0)
            abort();
        rpc_server_on_cancel(&req, srv);
        if (!slow_canceled)
            abort();
        Google__Protobuf__StringValue late = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
        rpc_call_succeed(slow, &late.base);
    }
    if (answers != 1)
        abort();                  /* exactly one response per request */
    uv_run(&loop, UV_RUN_NOWAIT); /* close deadline timers */
    if (rpc_server_active_calls(srv) != 0)
        abort();
    free(body);
    free(ct);
    free(enc);
    free(timeout);
    free(query);
    return 0;
}
