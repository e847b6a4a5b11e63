/*
 * test_rpc_server.c - the rpc server end to end without sockets, Connect
 * side: requests go into rpc_server_on_request(), responses are captured from
 * the responder (test_rpc_fixture.h). Covers routing (404/405/415, fallback),
 * Connect POST and GET, JSON and proto codecs, compression, limits, errors
 * with details and metadata, and registration errors. gRPC, gRPC-Web,
 * deadlines and cancellation are in test_rpc_grpc.c.
 */
#include "test_rpc_fixture.h"

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
    assert_string_equal(HDR("accept-encoding"), "gzip,br,zstd,deflate");
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
    treq_hdr(&t, "content-encoding", "snappy");
    treq_send(&t);
    assert_int_equal(got.status, 501);
    assert_string_equal(HDR("content-type"), "application/json");
    assert_non_null(strstr((char *)got.body.data, "\"code\":\"unimplemented\""));
    assert_non_null(strstr((char *)got.body.data, "supported encodings are gzip,br,zstd,deflate"));

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
    t.req.query = "encoding=proto&message=&compression=snappy";
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
        cmocka_unit_test_setup_teardown(test_register_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
