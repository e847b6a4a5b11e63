/*
 * test_protojson_limits.c - what a request message may cost before it is
 * decoded (rpc_limits.c, protojson_count_values): element counts on binary
 * protobuf and JSON text, nesting, packed fields, unknown fields, and the
 * memory a decoded message is charged with. Uses the chcptest protos.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "chcptest/v1/test.pb-c.h"
#include "rpc/rpc_internal.h"

extern const protometa_table chcptest_protometa;

static void varint(chcp_buf *b, uint64_t v)
{
    while (v >= 0x80) {
        buf_append_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    buf_append_byte(b, (uint8_t)v);
}

static void len_field(chcp_buf *b, unsigned num, const chcp_buf *payload)
{
    varint(b, (uint64_t)num << 3 | 2);
    varint(b, payload ? payload->len : 0);
    if (payload && payload->len)
        buf_append(b, payload->data, payload->len);
}

static int check_bin(const ProtobufCMessageDescriptor *d, const chcp_buf *b, size_t max,
                     chcp_code *code)
{
    chcp_error *err = NULL;
    int rc = rpc_check_binary(d, b->data ? b->data : (const uint8_t *)"", b->len, max, &err);
    *code = err ? err->code : CHCP_OK;
    error_free(err);
    return rc;
}

static void test_binary_elements(void **state)
{
    const ProtobufCMessageDescriptor *d = &chcptest__v1__repeated__descriptor;
    chcp_code code;
    /* 100 empty nested messages, two bytes each. */
    chcp_buf b = CHCP_BUF_INIT;
    for (int i = 0; i < 100; i++)
        len_field(&b, 10, NULL);
    assert_int_equal(check_bin(d, &b, 1000, &code), 0);
    assert_int_equal(check_bin(d, &b, 99, &code), -1);
    assert_int_equal(code, CHCP_RESOURCE_EXHAUSTED);
    /* Packed varints count one each. */
    buf_reset(&b);
    chcp_buf packed = CHCP_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        varint(&packed, (uint64_t)i);
    len_field(&b, 1, &packed);
    assert_int_equal(check_bin(d, &b, 2000, &code), 0);
    assert_int_equal(check_bin(d, &b, 900, &code), -1);
    assert_int_equal(code, CHCP_RESOURCE_EXHAUSTED);
    /* Unknown fields cost as much as known ones (protobuf-c keeps them). */
    buf_reset(&b);
    for (int i = 0; i < 200; i++) {
        varint(&b, 99u << 3);
        varint(&b, 1);
    }
    assert_int_equal(check_bin(d, &b, 100, &code), -1);
    /* Malformed input is the decoder's to report. */
    buf_reset(&b);
    buf_append(&b, "\x52\x10\x01", 3); /* length beyond the end */
    assert_int_equal(check_bin(d, &b, 10, &code), 0);
    buf_free(&packed);
    buf_free(&b);
}

static void nest(chcp_buf *out, int depth)
{
    chcp_buf inner = CHCP_BUF_INIT;
    for (int i = 0; i < depth; i++) {
        chcp_buf next = CHCP_BUF_INIT;
        len_field(&next, 3, &inner); /* Nested.child */
        buf_free(&inner);
        inner = next;
    }
    buf_append(out, inner.data, inner.len);
    buf_free(&inner);
}

static void test_binary_depth(void **state)
{
    const ProtobufCMessageDescriptor *d = &chcptest__v1__nested__descriptor;
    chcp_code code;
    chcp_buf b = CHCP_BUF_INIT;
    nest(&b, 90);
    assert_int_equal(check_bin(d, &b, 100000, &code), 0);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, b.len, b.data);
    assert_non_null(m);
    protobuf_c_message_free_unpacked(m, NULL);
    buf_reset(&b);
    nest(&b, 150); /* protobuf-c would recurse as deep as the input says */
    assert_int_equal(check_bin(d, &b, 100000, &code), -1);
    assert_int_equal(code, CHCP_INVALID_ARGUMENT);
    buf_free(&b);
}

static void test_json_count(void **state)
{
    assert_int_equal(protojson_count_values("{}", 2, 100), 2);
    assert_int_equal(protojson_count_values("{\"a\":1,\"b\":[1,2,3]}", 19, 100), 6);
    /* Brackets and commas inside strings (escapes included) do not count. */
    const char *s = "{\"name\":\"[,{,\\\",}]\"}";
    assert_int_equal(protojson_count_values(s, strlen(s), 100), 2);
    /* Counting stops past the limit: a huge input costs only its prefix. */
    static char many[2000001];
    many[0] = '[';
    for (size_t i = 1; i + 3 < sizeof(many); i += 3)
        memcpy(many + i, "{},", 3);
    assert_int_equal(protojson_count_values(many, sizeof(many) - 1, 16384), 16385);
    chcp_error *err = NULL;
    assert_int_equal(rpc_check_json(many, sizeof(many) - 1, 16384, &err), -1);
    assert_int_equal(err->code, CHCP_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err->message, "more than 16384 elements"));
    error_free(err);
}

static void test_message_memory(void **state)
{
    const ProtobufCMessageDescriptor *d = &chcptest__v1__repeated__descriptor;
    const char *small = "{\"rString\":[\"a\"]}";
    ProtobufCMessage *a = protojson_decode(d, small, strlen(small), NULL);
    assert_non_null(a);
    size_t ma = rpc_message_memory(a);
    assert_true(ma >= d->sizeof_message + sizeof(char *) + 2);
    /* 100 strings of 1000 bytes and 50 nested messages: all counted. */
    chcp_buf j = CHCP_BUF_INIT;
    buf_append_str(&j, "{\"rString\":[");
    for (int i = 0; i < 100; i++) {
        buf_append_str(&j, i ? ",\"" : "\"");
        for (int k = 0; k < 1000; k++)
            buf_append_byte(&j, 'x');
        buf_append_byte(&j, '"');
    }
    buf_append_str(&j, "],\"rNested\":[");
    for (int i = 0; i < 50; i++)
        buf_append_str(&j, i ? ",{\"name\":\"n\"}" : "{\"name\":\"n\"}");
    buf_append_str(&j, "]}");
    ProtobufCMessage *b = protojson_decode(d, (const char *)j.data, j.len, NULL);
    assert_non_null(b);
    size_t mb = rpc_message_memory(b);
    assert_true(mb >= ma + 100 * 1001 + 50 * chcptest__v1__nested__descriptor.sizeof_message);
    assert_true(mb < ma + 100 * 1100 + 50 * 400);
    /* Unknown fields of a binary message are counted too. */
    chcp_buf bin = CHCP_BUF_INIT;
    chcp_buf blob = CHCP_BUF_INIT;
    for (int i = 0; i < 5000; i++)
        buf_append_byte(&blob, 'u');
    len_field(&bin, 99, &blob);
    ProtobufCMessage *c = protobuf_c_message_unpack(d, NULL, bin.len, bin.data);
    assert_non_null(c);
    assert_true(rpc_message_memory(c) >= 5000 + d->sizeof_message);
    protobuf_c_message_free_unpacked(a, NULL);
    protobuf_c_message_free_unpacked(b, NULL);
    protobuf_c_message_free_unpacked(c, NULL);
    buf_free(&j);
    buf_free(&bin);
    buf_free(&blob);
}

int main(void)
{
    protometa_register(&chcptest_protometa);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_elements),
        cmocka_unit_test(test_binary_depth),
        cmocka_unit_test(test_json_count),
        cmocka_unit_test(test_message_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
