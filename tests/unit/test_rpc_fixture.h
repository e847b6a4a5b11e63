/*
 * test_rpc_fixture.h - shared by the rpc server tests: a test service made of
 * well-known types (StringValue in and out, so no extra generated code), its
 * handlers, a responder that captures what would go to the transport, and
 * helpers to build http_requests. Each test program includes it once.
 */
#ifndef TEST_RPC_FIXTURE_H
#define TEST_RPC_FIXTURE_H

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
    {"test.v1.Svc", "Get", PROTOMETA_NO_SIDE_EFFECTS, false, false},
};
static const protometa_table meta = {NULL, 0, meta_methods, 1, NULL, 0};

/* What the last response looked like. */
static struct {
    int count;
    int status;
    rpc_hdrs headers, trailers;
    chcp_buf body;
} got;

UNUSED static void capture(http_request *req, const http_response *resp)
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

UNUSED static const char *find(const rpc_hdrs *h, const char *name)
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
UNUSED static int cancel_hook_runs;

UNUSED static void h_echo(rpc_call *call, const ProtobufCMessage *req, void *sd)
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

UNUSED static void h_get(rpc_call *call, const ProtobufCMessage *req, void *sd)
{
    const http_header *q;
    size_t n = rpc_call_query(call, &q);
    Google__Protobuf__StringValue out = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    char text[64];
    snprintf(text, sizeof(text), "%zu:%s", n, ((const Google__Protobuf__StringValue *)req)->value);
    out.value = text;
    rpc_call_succeed(call, &out.base);
}

UNUSED static void h_fail(rpc_call *call, const ProtobufCMessage *req, void *sd)
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

UNUSED static void on_slow_cancel(rpc_call *call, void *ud)
{
    cancel_hook_runs++;
    assert_true(rpc_call_canceled(call));
    assert_null(rpc_call_http(call));
}

UNUSED static void h_slow(rpc_call *call, const ProtobufCMessage *req, void *sd)
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
UNUSED static int starts, finishes;
static chcp_code last_code;
UNUSED static void obs_start(rpc_call *call, void *ud)
{
    starts++;
}
UNUSED static void obs_finish(rpc_call *call, chcp_code code, void *ud)
{
    finishes++;
    last_code = code;
    assert_non_null(rpc_call_http(call));
}

/* ---- fixture and request helpers --------------------------------------------- */

static uv_loop_t loop;
static rpc_server *srv;

UNUSED static rpc_server *make_server(size_t max_msg)
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

UNUSED static int setup(void **state)
{
    protometa_register(&meta);
    uv_loop_init(&loop);
    srv = make_server(1000);
    memset(&got, 0, sizeof(got));
    starts = finishes = cancel_hook_runs = 0;
    slow_call = NULL;
    return 0;
}

UNUSED static int teardown(void **state)
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

UNUSED static void treq_init(treq *t, int major, const char *method, const char *path)
{
    memset(t, 0, sizeof(*t));
    t->req.http_major = major;
    t->req.method = method;
    t->req.path = path;
    t->req.headers = t->h;
    t->req.received_ns = time_mono_ns();
}

UNUSED static void treq_hdr(treq *t, const char *name, const char *value)
{
    t->h[t->req.n_headers++] = (http_header){name, value, strlen(name), strlen(value)};
}

UNUSED static void string_value(chcp_buf *out, const char *s)
{
    Google__Protobuf__StringValue m = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    m.value = (char *)s;
    size_t n = protobuf_c_message_get_packed_size(&m.base);
    buf_reserve(out, n);
    out->len += protobuf_c_message_pack(&m.base, out->data + out->len);
}

UNUSED static void treq_send(treq *t)
{
    t->req.body = t->body.data;
    t->req.body_len = t->body.len;
    rpc_server_on_request(&t->req, srv);
}

UNUSED static void treq_free(treq *t)
{
    buf_free(&t->body);
}

UNUSED static char *unpack_value(const uint8_t *data, size_t len)
{
    Google__Protobuf__StringValue *m = (void *)protobuf_c_message_unpack(
        &google__protobuf__string_value__descriptor, NULL, len, data);
    assert_non_null(m);
    char *v = xstrdup(m->value);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    return v;
}

#endif
