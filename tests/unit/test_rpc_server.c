/*
 * test_rpc_server.c - the rpc server end to end without sockets: requests go
 * into rpc_server_on_request(), responses are captured from the responder.
 * Covers routing (404/405/415), Connect POST and GET, gRPC and gRPC-Web
 * framing and trailers, compression, limits, errors with details, metadata,
 * deadlines, client cancellation and the observer hooks.
 *
 * The test service is made of well-known types (StringValue in and out), so
 * no extra generated code is needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "rpc/rpc_internal.h"

/* ---- the test service ---------------------------------------------------- */

static const ProtobufCMethodDescriptor methods[] = {
    {"Echo", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
    {"Get", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
    {"Fail", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
    {"Slow", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
    {"Missing", &google__protobuf__string_value__descriptor,
     &google__protobuf__string_value__descriptor},
};
static const unsigned method_index[] = {0, 2, 1, 4, 3};
static const ProtobufCServiceDescriptor service = {
    PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
    "test.v1.Svc",
    "Svc",
    "Test__V1__Svc",
    "test.v1",
    5,
    methods,
    method_index,
};
static const protometa_method meta_methods[] = {
    {"test.v1.Svc", "Get", PROTOMETA_NO_SIDE_EFFECTS},
};
static const protometa_table meta = {NULL, 0, meta_methods, 1};

/* What the last response looked like. */
static struct {
    int count;
    int status;
    rpc_hdrs headers, trailers;
    chcp_buf body;
} got;

static void capture(http_request *req, const http_response *resp)
{
    got.count++;
    got.status = resp->status;
    rpc_hdrs_free(&got.headers);
    rpc_hdrs_free(&got.trailers);
    buf_reset(&got.body);
    for (size_t i = 0; i < resp->n_headers; i++)
        rpc_hdrs_add_copy(&got.headers, resp->headers[i].name, resp->headers[i].name_len,
                          resp->headers[i].value, resp->headers[i].value_len);
    for (size_t i = 0; i < resp->n_trailers; i++)
        rpc_hdrs_add_copy(&got.trailers, resp->trailers[i].name, resp->trailers[i].name_len,
                          resp->trailers[i].value, resp->trailers[i].value_len);
    buf_append(&got.body, resp->body, resp->body_len);
    buf_append_byte(&got.body, 0);
    got.body.len--;
}

static const char *find(const rpc_hdrs *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->v[i].name, name) == 0)
            return h->v[i].value;
    return NULL;
}
#define HDR(name) find(&got.headers, name)
#define TRL(name) find(&got.trailers, name)

/* Handlers ------------------------------------------------------------------ */

static rpc_call *slow_call;
static int cancel_hook_runs;

static void h_echo(rpc_call *call, const ProtobufCMessage *req, void *sd)
{
    const Google__Protobuf__StringValue *in = (const void *)req;
    chcp_buf b = CHCP_BUF_INIT;
    buf_printf(&b, "%s!", in->value);
    if (strcmp(in->value, "big") == 0)
        for (int i = 0; i < 300; i++)
            buf_append_str(&b, "abcd");
    Google__Protobuf__StringValue out = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    out.value = buf_steal_str(&b);
    rpc_call_add_header(call, "x-h", "hv", 2);
    rpc_call_add_trailer(call, "x-t", "tv", 2);
    rpc_call_succeed(call, &out.base);
    free(out.value);
}

static void h_get(rpc_call *call, const ProtobufCMessage *req, void *sd)
{
    const http_header *q;
    size_t n = rpc_call_query(call, &q);
    Google__Protobuf__StringValue out = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    char text[64];
    snprintf(text, sizeof(text), "%zu:%s", n, ((const Google__Protobuf__StringValue *)req)->value);
    out.value = text;
    rpc_call_succeed(call, &out.base);
}

static void h_fail(rpc_call *call, const ProtobufCMessage *req, void *sd)
{
    Google__Protobuf__StringValue detail = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    detail.value = "why";
    uint8_t raw[] = {0x0a, 0x01, 'x'};
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/test.v1.Other";
    any.value.data = raw;
    any.value.len = sizeof(raw);
    const ProtobufCMessage *details[] = {&detail.base, &any.base};
    rpc_call_add_trailer(call, "x-t", "tv", 2);
    rpc_call_fail_details(call, CHCP_FAILED_PRECONDITION, "bad \xe2\x82\xac%", details, 2);
}

static void on_slow_cancel(rpc_call *call, void *ud)
{
    cancel_hook_runs++;
    assert_true(rpc_call_canceled(call));
    assert_null(rpc_call_http(call));
}

static void h_slow(rpc_call *call, const ProtobufCMessage *req, void *sd)
{
    slow_call = call;
    rpc_call_on_cancel(call, on_slow_cancel, NULL);
}

static const rpc_method_impl impls[] = {
    {"Echo", h_echo},
    {"Get", h_get},
    {"Fail", h_fail},
    {"Slow", h_slow},
};

/* Observer counts. */
static int starts, finishes;
static chcp_code last_code;
static void obs_start(rpc_call *call, void *ud)
{
    starts++;
}
static void obs_finish(rpc_call *call, chcp_code code, void *ud)
{
    finishes++;
    last_code = code;
    assert_non_null(rpc_call_http(call));
}

/* ---- fixture and request helpers --------------------------------------------- */

static uv_loop_t loop;
static rpc_server *srv;

static rpc_server *make_server(size_t max_msg)
{
    rpc_limits lim = {.max_message_bytes = max_msg, .compress_min_bytes = 1024};
    rpc_server *s = rpc_server_new(&loop, &lim);
    rpc_server_set_responder(s, capture);
    chcp_error *err = NULL;
    assert_int_equal(rpc_server_register(s, &service, impls, ARRAY_SIZE(impls), NULL, &err), 0);
    rpc_observer o = {obs_start, obs_finish, NULL};
    rpc_server_set_observer(s, &o);
    return s;
}

static int setup(void **state)
{
    protometa_register(&meta);
    uv_loop_init(&loop);
    srv = make_server(1000);
    memset(&got, 0, sizeof(got));
    starts = finishes = cancel_hook_runs = 0;
    slow_call = NULL;
    return 0;
}

static int teardown(void **state)
{
    assert_int_equal(rpc_server_active_calls(srv), 0);
    rpc_server_free(srv);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
    rpc_hdrs_free(&got.headers);
    rpc_hdrs_free(&got.trailers);
    buf_free(&got.body);
    return 0;
}

typedef struct treq {
    http_request req;
    http_header h[8];
    chcp_buf body;
} treq;

static void treq_init(treq *t, int major, const char *method, const char *path)
{
    memset(t, 0, sizeof(*t));
    t->req.http_major = major;
    t->req.method = method;
    t->req.path = path;
    t->req.headers = t->h;
    t->req.received_ns = time_mono_ns();
}

static void treq_hdr(treq *t, const char *name, const char *value)
{
    t->h[t->req.n_headers++] = (http_header){name, value, strlen(name), strlen(value)};
}

static void string_value(chcp_buf *out, const char *s)
{
    Google__Protobuf__StringValue m = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    m.value = (char *)s;
    size_t n = protobuf_c_message_get_packed_size(&m.base);
    buf_reserve(out, n);
    out->len += protobuf_c_message_pack(&m.base, out->data + out->len);
}

static void treq_send(treq *t)
{
    t->req.body = t->body.data;
    t->req.body_len = t->body.len;
    rpc_server_on_request(&t->req, srv);
}

static void treq_free(treq *t)
{
    buf_free(&t->body);
}

static char *unpack_value(const uint8_t *data, size_t len)
{
    Google__Protobuf__StringValue *m = (void *)protobuf_c_message_unpack(
        &google__protobuf__string_value__descriptor, NULL, len, data);
    assert_non_null(m);
    char *v = xstrdup(m->value);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    return v;
}

/* ---- routing ------------------------------------------------------------------ */

static void test_routing(void **state)
{
    treq t;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Nope");
    treq_hdr(&t, "content-type", "application/proto");
    treq_send(&t);
    assert_int_equal(got.status, 404);

    treq_init(&t, 1, "DELETE", "/test.v1.Svc/Echo");
    treq_send(&t);
    assert_int_equal(got.status, 405);
    assert_string_equal(HDR("allow"), "POST");

    treq_init(&t, 1, "GET", "/test.v1.Svc/Echo");
    treq_send(&t);
    assert_int_equal(got.status, 405);

    treq_init(&t, 1, "PUT", "/test.v1.Svc/Get");
    treq_send(&t);
    assert_int_equal(got.status, 405);
    assert_string_equal(HDR("allow"), "GET, POST");

    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "image/jpeg");
    treq_send(&t);
    assert_int_equal(got.status, 415);
    assert_non_null(strstr(HDR("accept-post"), "application/grpc-web+proto"));

    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_send(&t); /* no content-type at all */
    assert_int_equal(got.status, 415);
    assert_int_equal(starts, 0); /* routing failures are not observed calls */
}

static bool fallback_fn(http_request *req, void *ud)
{
    if (strcmp(req->path, "/health") != 0)
        return false;
    http_response r = {.status = 204};
    capture(req, &r);
    return true;
}

static void test_fallback(void **state)
{
    rpc_server_set_fallback(srv, fallback_fn, NULL);
    treq t;
    treq_init(&t, 1, "GET", "/health");
    treq_send(&t);
    assert_int_equal(got.status, 204);
    treq_init(&t, 1, "GET", "/other");
    treq_send(&t);
    assert_int_equal(got.status, 404);
}

/* ---- Connect ----------------------------------------------------------------- */

static void test_connect_success(void **state)
{
    treq t;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "connect-protocol-version", "1");
    string_value(&t.body, "hi");
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_string_equal(HDR("content-type"), "application/proto");
    assert_string_equal(HDR("accept-encoding"), "gzip");
    assert_string_equal(HDR("x-h"), "hv");
    assert_string_equal(HDR("trailer-x-t"), "tv");
    assert_null(HDR("content-encoding"));
    cleanup_free char *v = unpack_value(got.body.data, got.body.len);
    assert_string_equal(v, "hi!");
    assert_int_equal(starts, 1);
    assert_int_equal(finishes, 1);
    assert_int_equal(last_code, CHCP_OK);
    treq_free(&t);
}

static void test_connect_errors(void **state)
{
    treq t;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "content-encoding", "br");
    treq_send(&t);
    assert_int_equal(got.status, 501);
    assert_string_equal(HDR("content-type"), "application/json");
    assert_non_null(strstr((char *)got.body.data, "\"code\":\"unimplemented\""));
    assert_non_null(strstr((char *)got.body.data, "supported encodings are gzip"));

    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "connect-timeout-ms", "12345678901");
    treq_send(&t);
    assert_int_equal(got.status, 400);
    assert_non_null(strstr((char *)got.body.data, "invalid_argument"));

    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "connect-protocol-version", "2");
    treq_send(&t);
    assert_int_equal(got.status, 400);

    /* Garbage protobuf. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    buf_append(&t.body, "\xff\xff\xff", 3);
    treq_send(&t);
    assert_int_equal(got.status, 400);
    treq_free(&t);

    /* Unimplemented method. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Missing");
    treq_hdr(&t, "content-type", "application/proto");
    treq_send(&t);
    assert_int_equal(got.status, 501);
    assert_non_null(strstr((char *)got.body.data, "test.v1.Svc/Missing is not implemented"));

    /* Transport saw a body over its limit. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    t.req.body_too_large = true;
    treq_send(&t);
    assert_int_equal(got.status, 429);
}

static void test_connect_error_details(void **state)
{
    treq t;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Fail");
    treq_hdr(&t, "content-type", "application/proto");
    treq_send(&t);
    assert_int_equal(got.status, 400);
    assert_string_equal(HDR("trailer-x-t"), "tv");
    /* StringValue{"why"} = 0a 03 'w' 'h' 'y' -> CgN3aHk (unpadded). */
    assert_string_equal((char *)got.body.data,
                        "{\"code\":\"failed_precondition\",\"message\":\"bad \xe2\x82\xac%\","
                        "\"details\":[{\"type\":\"google.protobuf.StringValue\",\"value\":"
                        "\"CgN3aHk\"},{\"type\":\"test.v1.Other\",\"value\":\"CgF4\"}]}");
    assert_int_equal(last_code, CHCP_FAILED_PRECONDITION);
}

static void test_connect_gzip(void **state)
{
    treq t;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "content-encoding", "gzip");
    chcp_buf plain = CHCP_BUF_INIT;
    string_value(&plain, "big");
    z_stream *zs = NULL;
    assert_int_equal(rpc_gzip_compress(&zs, plain.data, plain.len, &t.body, NULL), 0);
    rpc_gzip_cache_free(&zs);
    treq_send(&t);
    assert_int_equal(got.status, 200);
    /* The request was gzip, so is the (large) response. */
    assert_string_equal(HDR("content-encoding"), "gzip");
    chcp_buf out = CHCP_BUF_INIT;
    assert_int_equal(rpc_gzip_decompress(got.body.data, got.body.len, 0, &out, NULL), 0);
    cleanup_free char *v = unpack_value(out.data, out.len);
    assert_true(str_has_prefix(v, "big!abcd"));
    buf_free(&out);
    treq_free(&t);

    /* Small responses stay uncompressed even when accepted. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "accept-encoding", "gzip");
    string_value(&t.body, "hi");
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_null(HDR("content-encoding"));
    treq_free(&t);

    /* An empty body is never decompressed: it is the empty message. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "content-encoding", "gzip");
    treq_send(&t);
    assert_int_equal(got.status, 200);
    buf_free(&plain);
}

static void test_limits(void **state)
{
    /* 1000-byte limit: an 1100-byte message is refused on the wire... */
    treq t;
    char big[1100];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    string_value(&t.body, big);
    treq_send(&t);
    assert_int_equal(got.status, 429);
    assert_non_null(strstr((char *)got.body.data, "resource_exhausted"));
    /* ...and after decompression, although it is small compressed. */
    chcp_buf plain = CHCP_BUF_INIT;
    buf_append(&plain, t.body.data, t.body.len);
    treq_free(&t);
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "content-encoding", "gzip");
    z_stream *zs = NULL;
    assert_int_equal(rpc_gzip_compress(&zs, plain.data, plain.len, &t.body, NULL), 0);
    rpc_gzip_cache_free(&zs);
    assert_true(t.body.len < 1000);
    treq_send(&t);
    assert_int_equal(got.status, 429);
    treq_free(&t);
    buf_free(&plain);

    /* Without a configured limit the default (4 MiB) still bounds gzip. */
    rpc_server_free(srv);
    srv = rpc_server_new(&loop, NULL);
    rpc_server_set_responder(srv, capture);
    assert_int_equal(rpc_server_register(srv, &service, impls, ARRAY_SIZE(impls), NULL, NULL), 0);
    size_t huge_len = (5u << 20) + 1;
    char *huge = xmalloc(huge_len);
    memset(huge, 'x', huge_len - 1);
    huge[huge_len - 1] = 0;
    string_value(&plain, huge);
    free(huge);
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "content-encoding", "gzip");
    zs = NULL;
    assert_int_equal(rpc_gzip_compress(&zs, plain.data, plain.len, &t.body, NULL), 0);
    rpc_gzip_cache_free(&zs);
    assert_true(t.body.len < 64u << 10);
    treq_send(&t);
    assert_int_equal(got.status, 429);
    treq_free(&t);
    buf_free(&plain);
}

static void test_connect_get(void **state)
{
    chcp_buf msg = CHCP_BUF_INIT, b64 = CHCP_BUF_INIT;
    string_value(&msg, "q?");
    base64_encode(&b64, msg.data, msg.len, true, false);
    char path[256];
    snprintf(path, sizeof(path), "encoding=proto&base64=1&message=%.*s&connect=v1&zz=1",
             (int)b64.len, (char *)b64.data);
    treq t;
    treq_init(&t, 1, "GET", "/test.v1.Svc/Get");
    t.req.query = path;
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_string_equal(HDR("content-type"), "application/proto");
    assert_string_equal(HDR("vary"), "Accept-Encoding");
    cleanup_free char *v = unpack_value(got.body.data, got.body.len);
    assert_string_equal(v, "5:q?");

    treq_init(&t, 1, "GET", "/test.v1.Svc/Get");
    t.req.query = "encoding=foo&message=x";
    treq_send(&t);
    assert_int_equal(got.status, 415);

    treq_init(&t, 1, "GET", "/test.v1.Svc/Get");
    t.req.query = "encoding=proto";
    treq_send(&t);
    assert_int_equal(got.status, 400);
    assert_non_null(strstr((char *)got.body.data, "missing message"));

    treq_init(&t, 1, "GET", "/test.v1.Svc/Get");
    t.req.query = "encoding=proto&message=&connect=v2";
    treq_send(&t);
    assert_int_equal(got.status, 400);

    treq_init(&t, 1, "GET", "/test.v1.Svc/Get");
    t.req.query = "encoding=proto&message=&compression=zstd";
    treq_send(&t);
    assert_int_equal(got.status, 501);

    treq_init(&t, 1, "GET", "/test.v1.Svc/Get");
    t.req.query = "encoding=proto&base64=1&message=!!!";
    treq_send(&t);
    assert_int_equal(got.status, 400);

    /* A GET must not carry a body. */
    treq_init(&t, 1, "GET", "/test.v1.Svc/Get");
    t.req.query = "encoding=proto&message=";
    buf_append(&t.body, "x", 1);
    treq_send(&t);
    assert_int_equal(got.status, 415);
    treq_free(&t);
    buf_free(&msg);
    buf_free(&b64);
}

static void test_json_codec(void **state)
{
    treq t;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/json; charset=UTF-8");
    buf_append_str(&t.body, "\"hi\"");
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_string_equal(HDR("content-type"), "application/json; charset=utf-8");
    assert_string_equal((char *)got.body.data, "\"hi!\"");
    treq_free(&t);

    /* Invalid JSON is invalid_argument naming the problem. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/json");
    buf_append_str(&t.body, "{nope");
    treq_send(&t);
    assert_int_equal(got.status, 400);
    assert_non_null(strstr((char *)got.body.data, "unmarshal message"));
    treq_free(&t);

    /* An empty JSON body is not a message. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/json");
    treq_send(&t);
    assert_int_equal(got.status, 400);

    /* GET with percent-encoded JSON, no base64. */
    treq_init(&t, 1, "GET", "/test.v1.Svc/Get");
    t.req.query = "message=%22x%22&encoding=json";
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_string_equal(HDR("content-type"), "application/json");
    assert_string_equal((char *)got.body.data, "\"2:x\"");

    /* gRPC-Web with the JSON codec. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc-web+json");
    uint8_t p[5];
    rpc_envelope_prefix(p, 0, 4);
    buf_append(&t.body, p, 5);
    buf_append_str(&t.body, "\"js\"");
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_string_equal(HDR("content-type"), "application/grpc-web+json");
    assert_int_equal(got.body.data[4], 5);
    assert_memory_equal(got.body.data + 5, "\"js!\"", 5);
    treq_free(&t);
}

/* ---- gRPC and gRPC-Web ---------------------------------------------------------- */

static void frame(chcp_buf *body, uint8_t flags, const char *value)
{
    chcp_buf m = CHCP_BUF_INIT;
    string_value(&m, value);
    uint8_t p[5];
    rpc_envelope_prefix(p, flags, m.len);
    buf_append(body, p, 5);
    buf_append(body, m.data, m.len);
    buf_free(&m);
}

static void test_grpc_success(void **state)
{
    treq t;
    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc");
    treq_hdr(&t, "te", "trailers");
    treq_hdr(&t, "grpc-timeout", "5S");
    frame(&t.body, 0, "yo");
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_string_equal(HDR("content-type"), "application/grpc");
    assert_string_equal(HDR("grpc-accept-encoding"), "gzip");
    assert_string_equal(HDR("x-h"), "hv");
    assert_string_equal(TRL("grpc-status"), "0");
    assert_string_equal(TRL("x-t"), "tv");
    assert_int_equal(got.body.data[0], 0);
    size_t len = (size_t)got.body.data[3] << 8 | got.body.data[4];
    assert_int_equal(len + 5, got.body.len);
    cleanup_free char *v = unpack_value(got.body.data + 5, len);
    assert_string_equal(v, "yo!");
    treq_free(&t);
}

static void test_grpc_gzip(void **state)
{
    treq t;
    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc+proto");
    treq_hdr(&t, "grpc-encoding", "gzip");
    chcp_buf m = CHCP_BUF_INIT, z = CHCP_BUF_INIT;
    string_value(&m, "big");
    z_stream *zs = NULL;
    assert_int_equal(rpc_gzip_compress(&zs, m.data, m.len, &z, NULL), 0);
    rpc_gzip_cache_free(&zs);
    uint8_t p[5];
    rpc_envelope_prefix(p, 1, z.len);
    buf_append(&t.body, p, 5);
    buf_append(&t.body, z.data, z.len);
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_string_equal(TRL("grpc-status"), "0");
    assert_string_equal(HDR("grpc-encoding"), "gzip");
    assert_int_equal(got.body.data[0], 1); /* compressed response */
    chcp_buf out = CHCP_BUF_INIT;
    assert_int_equal(rpc_gzip_decompress(got.body.data + 5, got.body.len - 5, 0, &out, NULL), 0);
    cleanup_free char *v = unpack_value(out.data, out.len);
    assert_true(str_has_prefix(v, "big!"));
    buf_free(&out);
    buf_free(&m);
    buf_free(&z);
    treq_free(&t);
}

/* Send a gRPC request and expect a trailers-only error with `code`. */
static void expect_grpc_error(treq *t, int code)
{
    treq_send(t);
    assert_int_equal(got.status, 200);
    char want[8];
    snprintf(want, sizeof(want), "%d", code);
    assert_non_null(HDR("grpc-status"));
    assert_string_equal(HDR("grpc-status"), want);
    assert_int_equal(got.trailers.n, 0);
    assert_int_equal(got.body.len, 0);
    treq_free(t);
}

static void test_grpc_errors(void **state)
{
    treq t;
    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc");
    expect_grpc_error(&t, CHCP_UNIMPLEMENTED); /* zero messages */

    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc");
    frame(&t.body, 0, "a");
    frame(&t.body, 0, "b");
    expect_grpc_error(&t, CHCP_UNIMPLEMENTED); /* two messages */

    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc");
    treq_hdr(&t, "grpc-encoding", "identity");
    frame(&t.body, 1, "a");
    expect_grpc_error(&t, CHCP_INTERNAL); /* compressed flag without encoding */

    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc");
    treq_hdr(&t, "grpc-encoding", "foo");
    frame(&t.body, 0, "a");
    expect_grpc_error(&t, CHCP_UNIMPLEMENTED);

    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc");
    treq_hdr(&t, "grpc-timeout", "123456789S");
    frame(&t.body, 0, "a");
    expect_grpc_error(&t, CHCP_INVALID_ARGUMENT);

    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc");
    buf_append(&t.body, "\0\0\0", 3);
    expect_grpc_error(&t, CHCP_INVALID_ARGUMENT); /* truncated prefix */

    treq_init(&t, 2, "POST", "/test.v1.Svc/Missing");
    treq_hdr(&t, "content-type", "application/grpc");
    frame(&t.body, 0, "a");
    expect_grpc_error(&t, CHCP_UNIMPLEMENTED);

    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo"); /* gRPC needs HTTP/2 */
    treq_hdr(&t, "content-type", "application/grpc");
    frame(&t.body, 0, "a");
    expect_grpc_error(&t, CHCP_UNIMPLEMENTED);

    char big[1100];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    treq_init(&t, 2, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc");
    frame(&t.body, 0, big);
    expect_grpc_error(&t, CHCP_RESOURCE_EXHAUSTED);
}

static void test_grpc_error_details(void **state)
{
    treq t;
    treq_init(&t, 2, "POST", "/test.v1.Svc/Fail");
    treq_hdr(&t, "content-type", "application/grpc");
    frame(&t.body, 0, "a");
    treq_send(&t);
    /* No custom headers: trailers-only, all in the header block. */
    assert_int_equal(got.trailers.n, 0);
    assert_string_equal(HDR("grpc-status"), "9");
    assert_string_equal(HDR("grpc-message"), "bad %E2%82%AC%25");
    assert_string_equal(HDR("x-t"), "tv");
    const char *bin = HDR("grpc-status-details-bin");
    assert_non_null(bin);
    chcp_buf raw = CHCP_BUF_INIT, want = CHCP_BUF_INIT, sv = CHCP_BUF_INIT;
    assert_int_equal(base64_decode(&raw, bin, strlen(bin)), 0);
    string_value(&sv, "why");
    uint8_t other[] = {0x0a, 0x01, 'x'};
    rpc_detail d[] = {{"google.protobuf.StringValue", 27, sv.data, sv.len},
                      {"test.v1.Other", 13, other, 3}};
    rpc_status_encode(&want, CHCP_FAILED_PRECONDITION, "bad \xe2\x82\xac%", d, 2);
    assert_int_equal(raw.len, want.len);
    assert_memory_equal(raw.data, want.data, want.len);
    buf_free(&raw);
    buf_free(&want);
    buf_free(&sv);
    treq_free(&t);
}

static void test_grpc_web(void **state)
{
    treq t;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc-web+proto");
    frame(&t.body, 0, "w");
    treq_send(&t);
    assert_int_equal(got.status, 200);
    assert_int_equal(got.trailers.n, 0);
    size_t off = 0;
    rpc_envelope env;
    assert_int_equal(rpc_envelope_next(got.body.data, got.body.len, &off, 0, &env, NULL), 1);
    assert_int_equal(env.flags, 0);
    cleanup_free char *v = unpack_value(env.data, env.len);
    assert_string_equal(v, "w!");
    assert_int_equal(rpc_envelope_next(got.body.data, got.body.len, &off, 0, &env, NULL), 1);
    assert_int_equal(env.flags, 0x80);
    assert_memory_equal(env.data, "grpc-status: 0\r\nx-t: tv\r\n", env.len);
    treq_free(&t);

    /* An error without custom headers is trailers-only. */
    treq_init(&t, 1, "POST", "/test.v1.Svc/Echo");
    treq_hdr(&t, "content-type", "application/grpc-web");
    treq_send(&t);
    assert_string_equal(HDR("grpc-status"), "12");
    assert_int_equal(got.body.len, 0);
}

/* ---- deadlines and cancellation ---------------------------------------------------- */

static void finish_slow_late(void)
{
    assert_non_null(slow_call);
    int before = got.count;
    Google__Protobuf__StringValue out = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    out.value = "late";
    rpc_call_succeed(slow_call, &out.base); /* dropped, frees the call */
    assert_int_equal(got.count, before);
}

static void test_deadline(void **state)
{
    treq t;
    treq_init(&t, 1, "POST", "/test.v1.Svc/Slow");
    treq_hdr(&t, "content-type", "application/proto");
    treq_hdr(&t, "connect-timeout-ms", "30");
    treq_send(&t);
    assert_int_equal(got.count, 0);
    assert_int_equal(rpc_call_timeout_ms(slow_call), 30);
    assert_true(rpc_call_deadline_ns(slow_call) > 0);
    uint64_t t0 = time_mono_ns();
    while (got.count == 0 && time_mono_ns() - t0 < 2000000000ull)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(got.count, 1);
    assert_int_equal(got.status, 504);
    assert_non_null(strstr((char *)got.body.data, "deadline_exceeded"));
    assert_int_equal(cancel_hook_runs, 1);
    assert_int_equal(rpc_server_active_calls(srv), 1); /* handler still owns it */
    /* A hook set after the cancellation runs at once. */
    rpc_call_on_cancel(slow_call, on_slow_cancel, NULL);
    assert_int_equal(cancel_hook_runs, 2);
    finish_slow_late();

    /* gRPC: deadline_exceeded as grpc-status 4. */
    got.count = 0;
    treq_init(&t, 2, "POST", "/test.v1.Svc/Slow");
    treq_hdr(&t, "content-type", "application/grpc");
    treq_hdr(&t, "grpc-timeout", "20m");
    frame(&t.body, 0, "a");
    treq_send(&t);
    t0 = time_mono_ns();
    while (got.count == 0 && time_mono_ns() - t0 < 2000000000ull)
        uv_run(&loop, UV_RUN_ONCE);
    assert_string_equal(HDR("grpc-status"), "4");
    finish_slow_late();
    treq_free(&t);
}

static void test_client_cancel(void **state)
{
    treq t;
    treq_init(&t, 2, "POST", "/test.v1.Svc/Slow");
    treq_hdr(&t, "content-type", "application/grpc");
    frame(&t.body, 0, "a");
    treq_send(&t);
    assert_int_equal(got.count, 0);
    rpc_server_on_cancel(&t.req, srv);
    assert_int_equal(got.count, 1); /* the transport gets its answer (dropped) */
    assert_int_equal(cancel_hook_runs, 1);
    assert_int_equal(last_code, CHCP_CANCELED);
    finish_slow_late();
    treq_free(&t);
}

static void test_register_errors(void **state)
{
    chcp_error *err = NULL;
    assert_int_equal(rpc_server_register(srv, &service, NULL, 0, NULL, &err), -1);
    assert_int_equal(err->code, CHCP_ALREADY_EXISTS);
    error_free(err);
    err = NULL;
    rpc_server *s2 = rpc_server_new(&loop, NULL);
    rpc_method_impl bad[] = {{"Typo", h_echo}};
    assert_int_equal(rpc_server_register(s2, &service, bad, 1, NULL, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    rpc_server_free(s2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_error_details, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_codec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_error_details, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_web, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
