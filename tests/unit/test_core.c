/*
 * test_core.c - buffers, error objects, number parsing and base64 (both
 * alphabets, with and without padding) from src/core.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/core.h"

static void test_buf(void **state)
{
    (void)state;
    chcp_buf b = CHCP_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        buf_printf(&b, "%d,", i);
    assert_int_equal(b.len, 3890);
    buf_consume(&b, 4);
    assert_memory_equal(b.data, "2,3,", 4);
    char *s = buf_steal_str(&b);
    assert_int_equal(strlen(s), 3886);
    assert_null(b.data);
    free(s);
}

static void test_errors(void **state)
{
    (void)state;
    chcp_error *err = NULL;
    assert_int_equal(error_set(&err, CHCP_NOT_FOUND, "vm %s", "a"), -1);
    /* The first error wins: later ones do not overwrite the cause. */
    error_set(&err, CHCP_INTERNAL, "second");
    error_prefix(err, "deleting");
    assert_int_equal(err->code, CHCP_NOT_FOUND);
    assert_string_equal(err->message, "deleting: vm a");
    error_free(err);
    err = NULL;
    error_set_errno(&err, CHCP_INTERNAL, 2, "open x");
    assert_string_equal(err->message, "open x: No such file or directory");
    error_free(err);
    assert_string_equal(code_name(CHCP_FAILED_PRECONDITION), "failed_precondition");
    assert_int_equal(code_from_name("unauthenticated"), CHCP_UNAUTHENTICATED);
    assert_int_equal(code_from_name("nope"), -1);
}

static void test_numbers(void **state)
{
    (void)state;
    uint64_t v;
    assert_true(str_to_u64("65535", 65535, &v));
    assert_int_equal(v, 65535);
    assert_false(str_to_u64("65536", 65535, &v));
    assert_false(str_to_u64("", 10, &v));
    assert_false(str_to_u64("1x", 10, &v));
    assert_false(str_to_u64("-1", 10, &v));
    assert_true(str_to_u64("18446744073709551615", UINT64_MAX, &v));
    assert_false(str_to_u64("18446744073709551616", UINT64_MAX, &v));
    /* A digit above a small maximum (max - d must not wrap around). */
    assert_false(str_to_u64("9", 7, &v));
    assert_false(str_to_u64("19", 7, &v));
    assert_true(str_to_u64("7", 7, &v));
    assert_int_equal(v, 7);
    assert_false(str_to_u64("1", 0, &v));
    assert_true(str_to_u64("0", 0, &v));
}

static void roundtrip(const char *raw, const char *std_padded, const char *url_raw)
{
    chcp_buf b = CHCP_BUF_INIT;
    base64_encode(&b, (const uint8_t *)raw, strlen(raw), false, true);
    assert_int_equal(b.len, strlen(std_padded));
    assert_memory_equal(b.data, std_padded, b.len);
    buf_reset(&b);
    base64_encode(&b, (const uint8_t *)raw, strlen(raw), true, false);
    assert_int_equal(b.len, strlen(url_raw));
    assert_memory_equal(b.data, url_raw, b.len);
    buf_reset(&b);
    assert_int_equal(base64_decode(&b, std_padded, strlen(std_padded)), 0);
    assert_int_equal(b.len, strlen(raw));
    assert_memory_equal(b.data, raw, b.len);
    buf_reset(&b);
    assert_int_equal(base64_decode(&b, url_raw, strlen(url_raw)), 0);
    assert_int_equal(b.len, strlen(raw));
    assert_memory_equal(b.data, raw, b.len);
    buf_free(&b);
}

static void test_base64(void **state)
{
    (void)state;
    roundtrip("", "", "");
    roundtrip("f", "Zg==", "Zg");
    roundtrip("fo", "Zm8=", "Zm8");
    roundtrip("foo", "Zm9v", "Zm9v");
    roundtrip("\xfb\xff\xbf", "+/+/", "-_-_");
    chcp_buf b = CHCP_BUF_INIT;
    assert_int_equal(base64_decode(&b, "Z", 1), -1);
    assert_int_equal(base64_decode(&b, "Zm9v!", 5), -1);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
