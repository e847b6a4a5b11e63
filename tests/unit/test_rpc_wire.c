/*
 * test_rpc_wire.c - the rpc module's wire-format helpers: content types,
 * timeout headers, grpc-message percent-encoding, envelopes, GET query
 * strings, the Connect error JSON, google.rpc.Status, gRPC-Web trailers and
 * gzip (including a decompression bomb).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "rpc/rpc_internal.h"

static int rpc_content_type_parse_u(const char *v, rpc_protocol *p, rpc_codec *c,
                                    const char **canon)
{
    return rpc_content_type_parse(v, false, p, c, canon);
}

static char *buf_str(chcp_buf *b)
{
    buf_append_byte(b, 0);
    b->len--;
    return (char *)b->data;
}

static void test_content_types(void **state)
{
    rpc_protocol p;
    rpc_codec c;
    const char *canon;
    assert_int_equal(rpc_content_type_parse_u("application/proto", &p, &c, &canon), 0);
    assert_int_equal(p, RPC_PROTOCOL_CONNECT);
    assert_int_equal(c, RPC_CODEC_PROTO);
    assert_int_equal(
        rpc_content_type_parse_u("Application/JSON; Charset=\"UTF-8\"", &p, &c, &canon), 0);
    assert_string_equal(canon, "application/json; charset=utf-8");
    assert_int_equal(c, RPC_CODEC_JSON);
    assert_int_equal(rpc_content_type_parse_u("application/grpc", &p, &c, &canon), 0);
    assert_int_equal(p, RPC_PROTOCOL_GRPC);
    assert_int_equal(c, RPC_CODEC_PROTO);
    assert_int_equal(rpc_content_type_parse_u("application/grpc+json", &p, &c, &canon), 0);
    assert_int_equal(c, RPC_CODEC_JSON);
    assert_int_equal(rpc_content_type_parse_u("application/grpc-web+proto", &p, &c, &canon), 0);
    assert_int_equal(p, RPC_PROTOCOL_GRPC_WEB);
    assert_string_equal(canon, "application/grpc-web+proto");
    /* Unsupported: other codecs, streaming Connect, other charsets, junk. */
    assert_int_equal(rpc_content_type_parse_u("application/grpc+foo", &p, &c, &canon), -1);
    assert_int_equal(rpc_content_type_parse_u("application/connect+proto", &p, &c, &canon), -1);
    assert_int_equal(rpc_content_type_parse_u("application/json; charset=latin1", &p, &c, &canon),
                     -1);
    assert_int_equal(rpc_content_type_parse_u("application/proto; charset=utf-8", &p, &c, &canon),
                     -1);
    assert_int_equal(rpc_content_type_parse_u("image/jpeg", &p, &c, &canon), -1);
    assert_int_equal(rpc_content_type_parse_u("", &p, &c, &canon), -1);
    assert_int_equal(rpc_content_type_parse_u(";", &p, &c, &canon), -1);
    assert_int_equal(rpc_content_type_parse_u(NULL, &p, &c, &canon), -1);
}

static void test_connect_timeout(void **state)
{
    int64_t ms = 0;
    chcp_error *err = NULL;
    assert_int_equal(rpc_parse_connect_timeout("1500", &ms, &err), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(rpc_parse_connect_timeout("9999999999", &ms, &err), 0);
    assert_int_equal(ms, 9999999999ll);
    assert_int_equal(rpc_parse_connect_timeout("12345678901", &ms, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    err = NULL;
    assert_int_equal(rpc_parse_connect_timeout("12a", &ms, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    err = NULL;
    assert_int_equal(rpc_parse_connect_timeout("", &ms, &err), -1);
    error_free(err);
}

static void test_grpc_timeout(void **state)
{
    uint64_t ns;
    chcp_error *err = NULL;
    assert_int_equal(rpc_parse_grpc_timeout("200m", &ns, &err), 0);
    assert_int_equal(ns, 200000000ull);
    assert_int_equal(rpc_parse_grpc_timeout("3S", &ns, &err), 0);
    assert_int_equal(ns, 3000000000ull);
    assert_int_equal(rpc_parse_grpc_timeout("2M", &ns, &err), 0);
    assert_int_equal(ns, 120000000000ull);
    assert_int_equal(rpc_parse_grpc_timeout("1H", &ns, &err), 0);
    assert_int_equal(ns, 3600000000000ull);
    assert_int_equal(rpc_parse_grpc_timeout("7u", &ns, &err), 0);
    assert_int_equal(ns, 7000);
    assert_int_equal(rpc_parse_grpc_timeout("99999999n", &ns, &err), 0);
    assert_int_equal(ns, 99999999);
    /* Huge hours do not fit: no deadline. */
    assert_int_equal(rpc_parse_grpc_timeout("99999999H", &ns, &err), 0);
    assert_true(ns == UINT64_MAX);
    const char *bad[] = {"100000000S", "5", "S", "5x", "-5S", "1.5S", ""};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        err = NULL;
        assert_int_equal(rpc_parse_grpc_timeout(bad[i], &ns, &err), -1);
        assert_non_null(err);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        error_free(err);
    }
}

static void test_percent_encoding(void **state)
{
    chcp_buf b = CHCP_BUF_INIT;
    const char msg[] = "hi 100% \xe2\x82\xac\n~";
    rpc_percent_encode(&b, msg, strlen(msg));
    assert_string_equal(buf_str(&b), "hi 100%25 %E2%82%AC%0A~");
    chcp_buf d = CHCP_BUF_INIT;
    rpc_percent_decode(&d, (const char *)b.data, b.len);
    assert_int_equal(d.len, strlen(msg));
    assert_memory_equal(d.data, msg, d.len);
    /* Broken escapes are kept, not read past the end. */
    buf_reset(&d);
    rpc_percent_decode(&d, "a%4", 3);
    assert_string_equal(buf_str(&d), "a%4");
    buf_free(&b);
    buf_free(&d);
}

static void test_envelopes(void **state)
{
    uint8_t body[32];
    rpc_envelope_prefix(body, 0, 3);
    memcpy(body + 5, "abc", 3);
    rpc_envelope_prefix(body + 8, 1, 0);
    size_t off = 0;
    rpc_envelope env;
    chcp_error *err = NULL;
    assert_int_equal(rpc_envelope_next(body, 13, &off, 0, &env, &err), 1);
    assert_int_equal(env.flags, 0);
    assert_int_equal(env.len, 3);
    assert_memory_equal(env.data, "abc", 3);
    assert_int_equal(rpc_envelope_next(body, 13, &off, 0, &env, &err), 1);
    assert_int_equal(env.flags, 1);
    assert_int_equal(env.len, 0);
    assert_int_equal(rpc_envelope_next(body, 13, &off, 0, &env, &err), 0);

    /* Truncated prefix and truncated message. */
    off = 0;
    assert_int_equal(rpc_envelope_next(body, 4, &off, 0, &env, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    err = NULL;
    off = 0;
    assert_int_equal(rpc_envelope_next(body, 7, &off, 0, &env, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    err = NULL;
    /* Over the limit: resource_exhausted before reading the message. */
    off = 0;
    assert_int_equal(rpc_envelope_next(body, 13, &off, 2, &env, &err), -1);
    assert_int_equal(err->code, CHCP_RESOURCE_EXHAUSTED);
    error_free(err);
    err = NULL;
    /* A 4 GiB length in a tiny body. */
    uint8_t big[5] = {0, 0xff, 0xff, 0xff, 0xff};
    off = 0;
    assert_int_equal(rpc_envelope_next(big, 5, &off, 0, &env, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
}

static void test_query(void **state)
{
    http_header *q;
    size_t n;
    assert_int_equal(
        rpc_query_parse("encoding=json&message=%7B%22a%22%3A1%7D&x=a+b&bad=%zz&=v&flag", &q, &n,
                        NULL),
        0);
    assert_int_equal(n, 4);
    assert_string_equal(rpc_query_get(q, n, "encoding")->value, "json");
    assert_string_equal(rpc_query_get(q, n, "message")->value, "{\"a\":1}");
    assert_string_equal(rpc_query_get(q, n, "x")->value, "a b");
    assert_null(rpc_query_get(q, n, "bad"));
    assert_string_equal(rpc_query_get(q, n, "flag")->value, "");
    rpc_query_free(q, n);
    /* Repeated names keep order; the first wins for lookups. */
    assert_int_equal(rpc_query_parse("a=1&a=2", &q, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rpc_query_get(q, n, "a")->value, "1");
    assert_string_equal(q[1].value, "2");
    rpc_query_free(q, n);
    /* Encoded NUL survives with its length. */
    assert_int_equal(rpc_query_parse("m=a%00b", &q, &n, NULL), 0);
    assert_int_equal(q[0].value_len, 3);
    rpc_query_free(q, n);
    assert_int_equal(rpc_query_parse(NULL, &q, &n, NULL), 0);
    assert_int_equal(n, 0);
}

static void test_error_json(void **state)
{
    chcp_buf b = CHCP_BUF_INIT;
    rpc_error_json(&b, CHCP_UNAVAILABLE, NULL, NULL, 0);
    assert_string_equal(buf_str(&b), "{\"code\":\"unavailable\"}");
    buf_reset(&b);
    uint8_t v[] = {0x08, 0x3c};
    rpc_detail d = {"google.rpc.RetryInfo", 20, v, sizeof(v)};
    rpc_error_json(&b, CHCP_UNAVAILABLE, "over \"loaded\"\n\xff\xe2\x82\xac", &d, 1);
    assert_string_equal(buf_str(&b), "{\"code\":\"unavailable\",\"message\":\"over "
                                     "\\\"loaded\\\"\\n\\ufffd\xe2\x82\xac\",\"details\":[{"
                                     "\"type\":\"google.rpc.RetryInfo\",\"value\":\"CDw\"}]}");
    buf_free(&b);
}

static void test_status_proto(void **state)
{
    chcp_buf b = CHCP_BUF_INIT;
    uint8_t v[] = {1, 2};
    rpc_detail d = {"a.B", 3, v, 2};
    rpc_status_encode(&b, CHCP_NOT_FOUND, "no", &d, 1);
    /* code=5, message="no", details[0]=Any{type_url, value}. */
    const uint8_t want[] = {0x08, 0x05, 0x12, 0x02, 'n', 'o', 0x1a, 0x1d, 0x0a, 0x17, 't', 'y', 'p',
                            'e',  '.',  'g',  'o',  'o', 'g', 'l',  'e',  'a',  'p',  'i', 's', '.',
                            'c',  'o',  'm',  '/',  'a', '.', 'B',  0x12, 0x02, 0x01, 0x02};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    buf_free(&b);
}

static void test_web_trailers(void **state)
{
    chcp_buf b = CHCP_BUF_INIT;
    http_header t[] = {{"grpc-status", "0", 11, 1}, {"X-Custom", "v", 8, 1}};
    rpc_grpc_web_trailer_frame(&b, t, 2);
    const char text[] = "grpc-status: 0\r\nx-custom: v\r\n";
    assert_int_equal(b.len, 5 + strlen(text));
    assert_int_equal(b.data[0], 0x80);
    assert_int_equal(b.data[4], strlen(text));
    assert_memory_equal(b.data + 5, text, strlen(text));
    buf_free(&b);
}

static void test_gzip_roundtrip(void **state)
{
    z_stream *cache = NULL;
    chcp_buf z = CHCP_BUF_INIT, out = CHCP_BUF_INIT;
    chcp_error *err = NULL;
    char msg[5000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)('a' + i % 7);
    for (int round = 0; round < 2; round++) { /* second round reuses the stream */
        buf_reset(&z);
        buf_reset(&out);
        assert_int_equal(rpc_gzip_compress(&cache, (uint8_t *)msg, sizeof(msg), &z, &err), 0);
        assert_true(z.len < sizeof(msg));
        assert_int_equal(z.data[0], 0x1f); /* gzip magic */
        assert_int_equal(z.data[1], 0x8b);
        assert_int_equal(rpc_gzip_decompress(z.data, z.len, sizeof(msg), &out, &err), 0);
        assert_int_equal(out.len, sizeof(msg));
        assert_memory_equal(out.data, msg, sizeof(msg));
    }
    /* One byte over the limit is refused. */
    buf_reset(&out);
    assert_int_equal(rpc_gzip_decompress(z.data, z.len, sizeof(msg) - 1, &out, &err), -1);
    assert_int_equal(err->code, CHCP_RESOURCE_EXHAUSTED);
    error_free(err);
    err = NULL;
    /* Truncated and corrupt input. */
    assert_int_equal(rpc_gzip_decompress(z.data, z.len / 2, 0, &out, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    err = NULL;
    uint8_t junk[] = "not gzip at all";
    assert_int_equal(rpc_gzip_decompress(junk, sizeof(junk), 0, &out, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    rpc_gzip_cache_free(&cache);
    buf_free(&z);
    buf_free(&out);
}

/* Every algorithm: round trip (twice, so the cached compressor is reused),
 * the limit, truncated and corrupt input, and a bomb stopped at the limit. */
/* Connect's streaming types serve only streaming methods, its unary types
 * only unary ones; gRPC and gRPC-Web types serve both. */
static void test_stream_content_types(void **state)
{
    rpc_protocol p;
    rpc_codec c;
    const char *canon;
    assert_int_equal(rpc_content_type_parse("application/connect+proto", true, &p, &c, &canon), 0);
    assert_int_equal(p, RPC_PROTOCOL_CONNECT);
    assert_int_equal(c, RPC_CODEC_PROTO);
    assert_int_equal(
        rpc_content_type_parse("Application/Connect+JSON; charset=utf-8", true, &p, &c, &canon), 0);
    assert_string_equal(canon, "application/connect+json; charset=utf-8");
    assert_int_equal(c, RPC_CODEC_JSON);
    assert_int_equal(rpc_content_type_parse("application/proto", true, &p, &c, &canon), -1);
    assert_int_equal(rpc_content_type_parse("application/connect+proto", false, &p, &c, &canon),
                     -1);
    assert_int_equal(rpc_content_type_parse("application/grpc-web+json", true, &p, &c, &canon), 0);
    assert_int_equal(p, RPC_PROTOCOL_GRPC_WEB);
    assert_int_equal(rpc_content_type_parse("application/grpc", true, &p, &c, &canon), 0);
    assert_int_equal(rpc_content_type_parse("application/connect+foo", true, &p, &c, &canon), -1);
    assert_non_null(strstr(rpc_accept_post_stream, "application/connect+proto"));
    assert_null(strstr(rpc_accept_post, "connect+"));
}

static void test_all_compressions(void **state)
{
    rpc_server *s = rpc_server_new(uv_default_loop(), NULL);
    static const rpc_compression algos[] = {RPC_COMPRESSION_GZIP, RPC_COMPRESSION_DEFLATE,
                                            RPC_COMPRESSION_BROTLI, RPC_COMPRESSION_ZSTD};
    char msg[5000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)('a' + i % 7);
    size_t big = 16u << 20;
    uint8_t *zeros = xcalloc(big, 1);
    for (size_t a = 0; a < ARRAY_SIZE(algos); a++) {
        rpc_compression c = algos[a];
        chcp_buf z = CHCP_BUF_INIT, out = CHCP_BUF_INIT;
        chcp_error *err = NULL;
        for (int round = 0; round < 2; round++) {
            buf_reset(&z);
            buf_reset(&out);
            assert_int_equal(rpc_compress(s, c, (uint8_t *)msg, sizeof(msg), &z, &err), 0);
            assert_true(z.len < sizeof(msg) / 4);
            assert_int_equal(rpc_decompress(c, z.data, z.len, sizeof(msg), &out, &err), 0);
            assert_int_equal(out.len, sizeof(msg));
            assert_memory_equal(out.data, msg, sizeof(msg));
        }
        buf_reset(&out);
        assert_int_equal(rpc_decompress(c, z.data, z.len, sizeof(msg) - 1, &out, &err), -1);
        assert_int_equal(err->code, CHCP_RESOURCE_EXHAUSTED);
        assert_int_equal(out.len, 0);
        error_free(err);
        err = NULL;
        assert_int_equal(rpc_decompress(c, z.data, z.len / 2, 0, &out, &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        error_free(err);
        err = NULL;
        uint8_t junk[] = "\xff\xfe not compressed at all, not even close";
        assert_int_equal(rpc_decompress(c, junk, sizeof(junk), 0, &out, &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        error_free(err);
        err = NULL;
        /* 16 MiB of zeros against a 1 MiB limit. */
        buf_reset(&z);
        assert_int_equal(rpc_compress(s, c, zeros, big, &z, &err), 0);
        assert_true(z.len < 1u << 20);
        buf_free(&out);
        assert_int_equal(rpc_decompress(c, z.data, z.len, 1u << 20, &out, &err), -1);
        assert_int_equal(err->code, CHCP_RESOURCE_EXHAUSTED);
        assert_true(out.cap <= 2u << 20);
        error_free(err);
        buf_free(&z);
        buf_free(&out);
    }
    free(zeros);
    rpc_server_free(s);
}

static void test_gzip_bomb(void **state)
{
    /* 64 MiB of zeros compress to ~64 KiB; with a 1 MiB limit decompression
     * must stop early with resource_exhausted. */
    size_t big = 64u << 20;
    uint8_t *zeros = xcalloc(big, 1);
    z_stream *cache = NULL;
    chcp_buf z = CHCP_BUF_INIT, out = CHCP_BUF_INIT;
    chcp_error *err = NULL;
    assert_int_equal(rpc_gzip_compress(&cache, zeros, big, &z, &err), 0);
    free(zeros);
    assert_true(z.len < 256u << 10);
    assert_int_equal(rpc_gzip_decompress(z.data, z.len, 1u << 20, &out, &err), -1);
    assert_int_equal(err->code, CHCP_RESOURCE_EXHAUSTED);
    assert_true(out.cap <= 2u << 20); /* never grew far past the limit */
    error_free(err);
    rpc_gzip_cache_free(&cache);
    buf_free(&z);
    buf_free(&out);
}

static void test_negotiation(void **state)
{
    rpc_compression c;
    assert_int_equal(rpc_compression_parse(NULL, &c), 0);
    assert_int_equal(c, RPC_COMPRESSION_IDENTITY);
    assert_int_equal(rpc_compression_parse("identity", &c), 0);
    assert_int_equal(rpc_compression_parse("gzip", &c), 0);
    assert_int_equal(c, RPC_COMPRESSION_GZIP);
    assert_int_equal(rpc_compression_parse("br", &c), 0);
    assert_int_equal(c, RPC_COMPRESSION_BROTLI);
    assert_int_equal(rpc_compression_parse("zstd", &c), 0);
    assert_int_equal(c, RPC_COMPRESSION_ZSTD);
    assert_int_equal(rpc_compression_parse("deflate", &c), 0);
    assert_int_equal(c, RPC_COMPRESSION_DEFLATE);
    assert_int_equal(rpc_compression_parse("snappy", &c), -1);
    assert_int_equal(rpc_compression_parse("Gzip", &c), -1);
    /* The client's order decides; unknown names are skipped. */
    assert_int_equal(rpc_compression_negotiate(RPC_COMPRESSION_IDENTITY, "snappy, br, gzip"),
                     RPC_COMPRESSION_BROTLI);
    assert_int_equal(rpc_compression_negotiate(RPC_COMPRESSION_IDENTITY, "zstd,gzip"),
                     RPC_COMPRESSION_ZSTD);
    assert_int_equal(rpc_compression_negotiate(RPC_COMPRESSION_IDENTITY, "snappy,identity"),
                     RPC_COMPRESSION_IDENTITY);
    assert_int_equal(rpc_compression_negotiate(RPC_COMPRESSION_IDENTITY, "gzipx"),
                     RPC_COMPRESSION_IDENTITY);
    assert_int_equal(rpc_compression_negotiate(RPC_COMPRESSION_GZIP, NULL), RPC_COMPRESSION_GZIP);
}

static void test_hdrs(void **state)
{
    rpc_hdrs h = {0};
    rpc_hdrs_add_static(&h, "a", "b");
    rpc_hdrs_add_copy(&h, "X-Up", 4, "v\0w", 3);
    uint8_t bin[] = {0xff, 0x00, 0x01};
    rpc_hdrs_add_bin(&h, "x-data-bin", bin, 3);
    assert_int_equal(h.n, 3);
    assert_string_equal(h.v[1].name, "x-up");
    assert_int_equal(h.v[1].value_len, 3);
    assert_string_equal(h.v[2].value, "/wAB");
    for (int i = 0; i < 20; i++)
        rpc_hdrs_add_copy(&h, "k", 1, "v", 1);
    assert_int_equal(h.n, 23);
    rpc_hdrs_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_types), cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_grpc_timeout),  cmocka_unit_test(test_percent_encoding),
        cmocka_unit_test(test_envelopes),     cmocka_unit_test(test_query),
        cmocka_unit_test(test_error_json),    cmocka_unit_test(test_status_proto),
        cmocka_unit_test(test_web_trailers),  cmocka_unit_test(test_gzip_roundtrip),
        cmocka_unit_test(test_gzip_bomb),     cmocka_unit_test(test_all_compressions),
        cmocka_unit_test(test_negotiation),   cmocka_unit_test(test_stream_content_types),
        cmocka_unit_test(test_hdrs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
