/*
 * test_rpc_grpc.c - the rpc server end to end without sockets, gRPC side:
 * envelopes, trailers and trailers-only errors, grpc-status-details-bin,
 * gzip, gRPC-Web trailer frames, deadlines (Connect and gRPC) and client
 * cancellation with late handler answers. Fixture: test_rpc_fixture.h.
 */
#include "test_rpc_fixture.h"

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
    assert_string_equal(HDR("grpc-accept-encoding"), "gzip,br,zstd,deflate");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grpc_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_error_details, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_web, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cancel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
