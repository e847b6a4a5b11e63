/*
 * test_protojson.c - the protometa tables and the JSON codec beyond the Go
 * golden table: generated metadata, messages built in C (presence, wire-only
 * states such as duplicate map keys), encode errors, field paths in decode
 * errors, nesting limits, exact number round trips and binary round trips.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "chcptest/naming.pb-c.h"
#include "chcptest/v1/test.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "rpc/protojson.h"

extern const protometa_table chcptest_protometa;

/* ---- helpers ---------------------------------------------------------------- */

static char *encode(const void *msg)
{
    chcp_buf out = CHCP_BUF_INIT;
    chcp_error *err = NULL;
    if (protojson_encode(msg, &out, &err) < 0)
        fail_msg("encode: %s", err->message);
    return buf_steal_str(&out);
}

static char *encode_error(const void *msg)
{
    chcp_buf out = CHCP_BUF_INIT;
    chcp_error *err = NULL;
    buf_append_str(&out, "prefix");
    assert_int_equal(protojson_encode(msg, &out, &err), -1);
    assert_non_null(err);
    /* A failed encode leaves the buffer as it was. */
    assert_int_equal(out.len, 6);
    buf_free(&out);
    char *m = xstrdup(err->message);
    error_free(err);
    return m;
}

static void *decode(const ProtobufCMessageDescriptor *d, const char *json)
{
    chcp_error *err = NULL;
    ProtobufCMessage *m = protojson_decode(d, json, strlen(json), &err);
    if (!m)
        fail_msg("decode %s: %s", json, err->message);
    return m;
}

static char *decode_error(const ProtobufCMessageDescriptor *d, const char *json, size_t len)
{
    chcp_error *err = NULL;
    ProtobufCMessage *m = protojson_decode(d, json, len, &err);
    if (m)
        fail_msg("accepted: %.200s", json);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    char *msg = xstrdup(err->message);
    error_free(err);
    return msg;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* ---- protometa ---------------------------------------------------------------- */

static void test_protometa_lookup(void **state)
{
    const protometa_message *pm = protometa_find_message(&chcptest__v1__scalars__descriptor);
    assert_non_null(pm);
    assert_false(pm->map_entry);
    assert_string_equal(pm->json_names[0], "sInt32");
    /* s_string (field 14) is declared first. */
    assert_non_null(pm->decl_order);
    assert_string_equal(chcptest__v1__scalars__descriptor.fields[pm->decl_order[0]].name,
                        "s_string");

    pm = protometa_find_message(&chcptest__v1__maps__string_string_entry__descriptor);
    assert_non_null(pm);
    assert_true(pm->map_entry);

    /* Well-known types are known without registering anything. */
    assert_ptr_equal(protometa_find_by_name("google.protobuf.Duration"),
                     &google__protobuf__duration__descriptor);
    assert_ptr_equal(protometa_find_by_name("chcptest.v1.Nested.Inner"),
                     &chcptest__v1__nested__inner__descriptor);
    assert_null(protometa_find_by_name("chcptest.v1.Nope"));
    assert_null(protometa_find_by_name(".chcptest.v1.Nested"));

    assert_int_equal(protometa_method_idempotency("chcptest.v1.TestService", "Get"),
                     PROTOMETA_NO_SIDE_EFFECTS);
    assert_int_equal(protometa_method_idempotency("chcptest.v1.TestService", "Put"),
                     PROTOMETA_IDEMPOTENT);
    assert_int_equal(protometa_method_idempotency("chcptest.v1.TestService", "Post"),
                     PROTOMETA_IDEMPOTENCY_UNKNOWN);
    assert_int_equal(protometa_method_idempotency("chcptest.v1.TestService", "Nope"),
                     PROTOMETA_IDEMPOTENCY_UNKNOWN);
    /* Registering again is harmless. */
    protometa_register(&chcptest_protometa);
    assert_ptr_equal(protometa_find_message(&chcptest__v1__nested__descriptor)->descriptor,
                     &chcptest__v1__nested__descriptor);
}

/* protoc-c's names for odd identifiers (this links only if the generator
 * derived them right) and json names as protoc computes them. */
static void test_generator_naming(void **state)
{
    const protometa_message *pm = protometa_find_message(&httpserver_v2__descriptor);
    assert_non_null(pm);
    assert_ptr_equal(protometa_find_by_name("HTTPServer_v2.URLPath2Thing"),
                     &httpserver_v2__urlpath2_thing__descriptor);
    assert_true(protometa_find_message(&httpserver_v2__by_id_entry__descriptor)->map_entry);
    assert_null(protometa_find_by_name("google.protobuf.FieldOptions"));
    const char *json = "{\"p\":{\"aBC\":1,\"x2y\":\"z\"},\"k\":\"KIND_ONE\","
                       "\"byId\":{\"-1\":{}},\"Leading\":\"l\"}";
    HTTPServerV2 *m = decode(&httpserver_v2__descriptor, json);
    assert_int_equal(m->p->a_b_c, 1);
    assert_string_equal(m->_leading, "l");
    char *s = encode(m);
    assert_string_equal(s, json);
    free(s);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* A message type no table knows still encodes and decodes, with protoc's
 * default json names derived from the field names. */
static void test_unregistered_descriptor(void **state)
{
    static ProtobufCMessageDescriptor copy;
    copy = chcptest__v1__scalars__descriptor;
    copy.name = "chcptest.v1.Unregistered";
    assert_null(protometa_find_message(&copy));
    Chcptest__V1__Scalars sc = CHCPTEST__V1__SCALARS__INIT;
    sc.base.descriptor = &copy;
    sc.s_sint64 = -3;
    sc.s_string = "z";
    sc.custom = "lost";
    char *s = encode(&sc);
    /* Number order and the default name: custom json_name is unknowable. */
    assert_string_equal(s, "{\"sSint64\":\"-3\",\"sString\":\"z\",\"custom\":\"lost\"}");
    Chcptest__V1__Scalars *back = decode(&copy, s);
    assert_true(back->s_sint64 == -3);
    assert_string_equal(back->custom, "lost");
    protobuf_c_message_free_unpacked(&back->base, NULL);
    free(s);
}

/* Every generated json_name must belong to the protobuf-c field at the same
 * index (the generator must follow protobuf-c's field order). */
static void test_protometa_field_order(void **state)
{
    for (size_t i = 0; i < chcptest_protometa.n_messages; i++) {
        const protometa_message *pm = &chcptest_protometa.messages[i];
        const ProtobufCMessageDescriptor *d = pm->descriptor;
        for (unsigned f = 0; f < d->n_fields; f++) {
            char want[128];
            size_t n = 0;
            bool up = false;
            for (const char *p = d->fields[f].name; *p; p++) {
                if (*p == '_') {
                    up = true;
                    continue;
                }
                want[n++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p;
                up = false;
            }
            want[n] = '\0';
            if (strcmp(d->fields[f].name, "custom") == 0)
                strcpy(want, "myCustomName");
            if (strcmp(pm->json_names[f], want) != 0)
                fail_msg("%s field %s: json_name %s", d->name, d->fields[f].name,
                         pm->json_names[f]);
        }
        if (pm->decl_order) {
            unsigned seen = 0;
            for (unsigned f = 0; f < d->n_fields; f++)
                seen += pm->decl_order[f] < d->n_fields;
            assert_int_equal(seen, d->n_fields);
        }
    }
}

/* ---- encoding messages built in C --------------------------------------------- */

static void test_encode_presence(void **state)
{
    Chcptest__V1__Oneofs o = CHCPTEST__V1__ONEOFS__INIT;
    char *s = encode(&o);
    assert_string_equal(s, "{}");
    free(s);
    /* Set one-field oneofs are written even with default values. */
    o.optional_count_case = CHCPTEST__V1__ONEOFS__OPTIONAL_COUNT_COUNT;
    o.count = 0;
    o.optional_label_case = CHCPTEST__V1__ONEOFS__OPTIONAL_LABEL_LABEL;
    o.label = "";
    o.kind_case = CHCPTEST__V1__ONEOFS__KIND_O_COLOR;
    o.o_color = CHCPTEST__V1__COLOR__COLOR_UNSPECIFIED;
    s = encode(&o);
    assert_string_equal(s, "{\"oColor\":\"COLOR_UNSPECIFIED\",\"count\":0,\"label\":\"\"}");
    free(s);

    Chcptest__V1__Scalars sc = CHCPTEST__V1__SCALARS__INIT;
    sc.s_double = -0.0;
    sc.s_int64 = INT64_MIN;
    sc.s_uint64 = UINT64_MAX;
    sc.s_color = 99; /* unknown numbers are written as numbers */
    s = encode(&sc);
    assert_string_equal(s, "{\"sInt64\":\"-9223372036854775808\",\"sUint64\":"
                           "\"18446744073709551615\",\"sDouble\":-0,\"sColor\":99}");
    free(s);
}

static void test_encode_map_wire_duplicates(void **state)
{
    /* On the wire a map may repeat a key: the last entry wins. */
    Chcptest__V1__Maps__Int32StringEntry e1 = CHCPTEST__V1__MAPS__INT32_STRING_ENTRY__INIT,
                                         e2 = CHCPTEST__V1__MAPS__INT32_STRING_ENTRY__INIT,
                                         e3 = CHCPTEST__V1__MAPS__INT32_STRING_ENTRY__INIT;
    e1.key = 5;
    e1.value = "first";
    e2.key = -7;
    e2.value = "neg";
    e3.key = 5;
    e3.value = "last";
    Chcptest__V1__Maps__Int32StringEntry *entries[] = {&e1, &e2, &e3};
    Chcptest__V1__Maps m = CHCPTEST__V1__MAPS__INIT;
    m.n_int32_string = 3;
    m.int32_string = entries;
    char *s = encode(&m);
    assert_string_equal(s, "{\"int32String\":{\"-7\":\"neg\",\"5\":\"last\"}}");
    free(s);

    /* A big map (as a binary request could carry) sorts fast and right. */
    enum { BIG = 60000 };
    Chcptest__V1__Maps__Int32StringEntry *big = xcalloc(BIG, sizeof(*big));
    Chcptest__V1__Maps__Int32StringEntry **big_ptrs = xcalloc(BIG, sizeof(*big_ptrs));
    for (int i = 0; i < BIG; i++) {
        chcptest__v1__maps__int32_string_entry__init(&big[i]);
        big[i].key = (BIG - i) / 2; /* descending; 1..29999 twice, even i last */
        big[i].value = i % 2 ? "odd" : "even";
        big_ptrs[i] = &big[i];
    }
    m.n_int32_string = BIG;
    m.int32_string = big_ptrs;
    s = encode(&m);
    const char *head = "{\"int32String\":{\"0\":\"odd\",\"1\":\"even\",\"2\":\"even\",";
    assert_true(strncmp(s, head, strlen(head)) == 0);
    assert_non_null(strstr(s, ",\"30000\":\"even\"}}"));
    free(s);
    free(big);
    free(big_ptrs);

    /* An entry without a value encodes the value type's default. */
    Chcptest__V1__Maps__StringNestedEntry ne = CHCPTEST__V1__MAPS__STRING_NESTED_ENTRY__INIT;
    ne.key = "k";
    Chcptest__V1__Maps__StringNestedEntry *nentries[] = {&ne};
    Chcptest__V1__Maps m2 = CHCPTEST__V1__MAPS__INIT;
    m2.n_string_nested = 1;
    m2.string_nested = nentries;
    s = encode(&m2);
    assert_string_equal(s, "{\"stringNested\":{\"k\":{}}}");
    free(s);
}

static void test_encode_errors(void **state)
{
    Chcptest__V1__Scalars sc = CHCPTEST__V1__SCALARS__INIT;
    sc.s_string = "bad \xc3\x28 utf8";
    char *e = encode_error(&sc);
    assert_contains(e, "UTF-8");
    free(e);
    sc.s_string = "surrogate \xed\xa0\x80";
    free(encode_error(&sc));
    sc.s_string = "overlong \xc0\xaf";
    free(encode_error(&sc));

    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = 253402300800; /* 10000-01-01 */
    Chcptest__V1__WellKnown w = CHCPTEST__V1__WELL_KNOWN__INIT;
    w.ts = &ts;
    e = encode_error(&w);
    assert_contains(e, "Timestamp");
    free(e);
    ts.seconds = 0;
    ts.nanos = -1;
    free(encode_error(&w));
    w.ts = NULL;

    Google__Protobuf__Duration dur = GOOGLE__PROTOBUF__DURATION__INIT;
    dur.seconds = 1;
    dur.nanos = -1; /* signs differ */
    w.dur = &dur;
    free(encode_error(&w));
    w.dur = NULL;

    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    uint8_t bytes[] = {0x08, 0x01};
    any.value.data = bytes;
    any.value.len = sizeof(bytes);
    w.any = &any;
    e = encode_error(&w); /* value without type_url */
    assert_contains(e, "type_url");
    free(e);
    any.type_url = "type.googleapis.com/chcptest.v1.Missing";
    e = encode_error(&w);
    assert_contains(e, "chcptest.v1.Missing");
    free(e);
    any.type_url = "type.googleapis.com/chcptest.v1.Nested";
    uint8_t garbage[] = {0xff, 0xff, 0xff};
    any.value.data = garbage;
    any.value.len = sizeof(garbage);
    free(encode_error(&w));
    any.value.data = bytes;
    any.value.len = sizeof(bytes);
    e = encode(&w);
    assert_string_equal(e, "{\"any\":{\"@type\":\"type.googleapis.com/chcptest.v1.Nested\","
                           "\"id\":1}}");
    free(e);
    w.any = NULL;

    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    w.val = &v;
    free(encode_error(&w)); /* no kind set */
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v.number_value = INFINITY;
    free(encode_error(&w));
    w.val = NULL;

    Google__Protobuf__FieldMask fm = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    char *paths[] = {"foo_bar", "fooBar"}; /* the second has no reversible form */
    fm.paths = paths;
    fm.n_paths = 1;
    w.mask = &fm;
    e = encode(&w);
    assert_string_equal(e, "{\"mask\":\"fooBar\"}");
    free(e);
    fm.n_paths = 2;
    free(encode_error(&w));
}

/* ---- decoding -------------------------------------------------------------------- */

static void test_error_paths(void **state)
{
    const ProtobufCMessageDescriptor *d = &chcptest__v1__everything__descriptor;
    const char *in = "{\"nested\":{\"child\":{\"child\":{\"id\":\"x\"}}}}";
    char *e = decode_error(d, in, strlen(in));
    assert_contains(e, "invalid value for field \"nested.child.child.id\"");
    free(e);
    in = "{\"repeated\":{\"rNested\":[{},{\"name\":5}]}}";
    e = decode_error(d, in, strlen(in));
    assert_contains(e, "\"repeated.r_nested[1].name\"");
    free(e);
    in = "{\"maps\":{\"stringNested\":{\"a\":{\"id\":true}}}}";
    e = decode_error(d, in, strlen(in));
    assert_contains(e, "\"maps.string_nested[\"a\"].id\"");
    free(e);
    in = "{\"wkt\":{\"ts\":\"yesterday\"}}";
    e = decode_error(d, in, strlen(in));
    assert_contains(e, "\"wkt.ts\"");
    assert_contains(e, "yesterday");
    free(e);
    in = "{\"scalars\":{\"sInt32\":1},}";
    e = decode_error(d, in, strlen(in));
    assert_contains(e, "invalid JSON");
    free(e);
    /* Unknown enum names are errors wherever they appear (a dropped one
     * would silently change the request), named with field and enum. */
    in = "{\"repeated\":{\"rColor\":[\"COLOR_RED\",\"color_red\"]}}";
    e = decode_error(d, in, strlen(in));
    assert_contains(e, "\"repeated.r_color[1]\": unknown chcptest.v1.Color name \"color_red\"");
    free(e);
    in = "{\"maps\":{\"uint64Color\":{\"1\":\"PURPLE\"}}}";
    e = decode_error(d, in, strlen(in));
    assert_contains(e, "\"maps.uint64_color[\"1\"]\": unknown chcptest.v1.Color name \"PURPLE\"");
    free(e);
    in = "{\"scalars\":{\"sColor\":\"1\"}}";
    e = decode_error(d, in, strlen(in));
    assert_contains(e, "\"scalars.s_color\": unknown chcptest.v1.Color name \"1\"");
    free(e);
    e = decode_error(d, "", 0);
    assert_contains(e, "invalid JSON");
    free(e);
    /* Numbers are never keys, even those the number pre-pass rewrites. */
    static const char *const numeric_keys[] = {
        "{1.5:2}",
        "{\"maps\":{\"stringString\":{1e3 :\"x\"}}}",
        "{\"maps\":{\"int32String\":{18446744073709551616\n:\"x\"}}}",
        "{-0:1}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(numeric_keys); i++) {
        e = decode_error(d, numeric_keys[i], strlen(numeric_keys[i]));
        assert_contains(e, "invalid JSON");
        free(e);
    }
    /* Embedded NUL: not JSON text. */
    e = decode_error(d, "{}\0{}", 5);
    free(e);
}

static char *nested_json(const char *open, const char *middle, const char *close, int depth)
{
    chcp_buf b = CHCP_BUF_INIT;
    for (int i = 0; i < depth; i++)
        buf_append_str(&b, open);
    buf_append_str(&b, middle);
    for (int i = 0; i < depth; i++)
        buf_append_str(&b, close);
    return buf_steal_str(&b);
}

static void test_depth_limits(void **state)
{
    const ProtobufCMessageDescriptor *d = &chcptest__v1__nested__descriptor;
    char *ok = nested_json("{\"child\":", "{}", "}", 90);
    Chcptest__V1__Nested *m = decode(d, ok);
    char *again = encode(m);
    assert_string_equal(again, ok);
    free(again);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    free(ok);

    char *deep = nested_json("{\"child\":", "{}", "}", 150);
    char *e = decode_error(d, deep, strlen(deep));
    assert_contains(e, "deeper");
    free(e);
    free(deep);

    /* Deep Values (arrays inside arrays), and deeper than jansson allows. */
    d = &chcptest__v1__well_known__descriptor;
    char *vals = nested_json("[", "1", "]", 99);
    char *doc = xasprintf("{\"val\":%s}", vals);
    free(decode_error(d, doc, strlen(doc)));
    free(doc);
    free(vals);
    vals = nested_json("[", "1", "]", 60);
    doc = xasprintf("{\"val\":%s}", vals);
    Chcptest__V1__WellKnown *w = decode(d, doc);
    protobuf_c_message_free_unpacked(&w->base, NULL);
    free(doc);
    free(vals);
    vals = nested_json("[", "", "]", 100000);
    doc = xasprintf("{\"unknown\":%s}", vals);
    free(decode_error(d, doc, strlen(doc)));
    free(doc);
    free(vals);
}

static void test_number_marker_choice(void **state)
{
    /* Reals are protected with a control character absent from the input:
     * strings using many control characters must still decode exactly. */
    chcp_buf b = CHCP_BUF_INIT;
    buf_append_str(&b, "{\"sString\":\"");
    for (int c = 1; c < 32; c++)
        if (c != 3)
            buf_printf(&b, "\\u%04X", c);
    buf_append_str(&b, "\",\"sDouble\":0.5,\"sUint64\":18446744073709551615}");
    char *json = buf_steal_str(&b);
    Chcptest__V1__Scalars *m = decode(&chcptest__v1__scalars__descriptor, json);
    assert_int_equal(strlen(m->s_string), 30);
    assert_int_equal(m->s_string[0], 1);
    assert_true(m->s_double == 0.5);
    assert_true(m->s_uint64 == UINT64_MAX);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    free(json);

    /* A string that looks like protected number text stays a string. */
    m = decode(&chcptest__v1__scalars__descriptor, "{\"sString\":\"\\u00011.5\",\"sFloat\":2.5}");
    assert_string_equal(m->s_string, "\0011.5");
    assert_true(m->s_float == 2.5f);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* Doubles and floats must survive encode -> decode bit for bit. */
static void test_float_round_trip(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double dv;
        float fv;
        uint32_t x32 = (uint32_t)(x >> 32);
        memcpy(&dv, &x, sizeof(dv));
        memcpy(&fv, &x32, sizeof(fv));
        if (i % 4 == 1)
            dv = (double)(int64_t)x / 1e6; /* decimal-looking values too */
        if (!isfinite(dv) || !isfinite(fv))
            continue;
        Chcptest__V1__Scalars in = CHCPTEST__V1__SCALARS__INIT;
        in.s_double = dv;
        in.s_float = fv;
        char *json = encode(&in);
        Chcptest__V1__Scalars *out = decode(&chcptest__v1__scalars__descriptor, json);
        if (memcmp(&out->s_double, &in.s_double, 8) != 0 ||
            memcmp(&out->s_float, &in.s_float, 4) != 0)
            fail_msg("%s did not round-trip (%.17g, %.9g)", json, dv, (double)fv);
        protobuf_c_message_free_unpacked(&out->base, NULL);
        free(json);
    }
}

/* Timestamps across years 1..9999 agree with the C library's calendar and
 * read back to the same value. */
static void test_timestamp_sweep(void **state)
{
    const int64_t min = -62135596800LL, max = 253402300799LL;
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        ts.seconds = min + (int64_t)(x % (uint64_t)(max - min + 1));
        static const int32_t nanos[] = {0, 5000000, 123000, 999999999};
        ts.nanos = nanos[i % 4];
        time_t t = (time_t)ts.seconds;
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        char want[64];
        int n = snprintf(want, sizeof(want), "\"%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        static const char *const frac[] = {"", ".005", ".000123", ".999999999"};
        snprintf(want + n, sizeof(want) - (size_t)n, "%sZ\"", frac[i % 4]);
        char *got = encode(&ts);
        assert_string_equal(got, want);
        Google__Protobuf__Timestamp *back = decode(&google__protobuf__timestamp__descriptor, got);
        assert_true(back->seconds == ts.seconds && back->nanos == ts.nanos);
        protobuf_c_message_free_unpacked(&back->base, NULL);
        free(got);
    }
}

/* JSON -> message -> protobuf binary -> message -> JSON gives the same JSON. */
static void test_binary_round_trip(void **state)
{
    static const char *json =
        "{\"scalars\":{\"sString\":\"s\",\"sInt32\":-1,\"sUint64\":\"18446744073709551615\","
        "\"sFloat\":0.25,\"sBytes\":\"AAEC\",\"sColor\":\"COLOR_BLUE\",\"myCustomName\":\"c\"},"
        "\"repeated\":{\"rInt64\":[\"1\",\"-2\"],\"rString\":[\"a\",\"b\"],"
        "\"rNested\":[{\"id\":1},{}]},"
        "\"maps\":{\"stringString\":{\"a\":\"b\"},\"uint64Color\":{\"3\":\"COLOR_RED\"},"
        "\"boolBytes\":{\"false\":\"AQ==\"}},"
        "\"oneofs\":{\"oNested\":{\"name\":\"n\"},\"count\":0},"
        "\"wkt\":{\"ts\":\"2021-03-04T05:06:07.008Z\",\"dur\":\"-0.500s\",\"empty\":{},"
        "\"mask\":\"a.bC,d\",\"st\":{\"k\":[1,\"x\",null,true,{}]},\"val\":\"v\","
        "\"wUint64\":\"5\",\"wBytes\":\"\",\"any\":{\"@type\":\"type.googleapis.com/"
        "google.protobuf.Duration\",\"value\":\"1s\"},\"anys\":[{\"@type\":\"type.googleapis.com/"
        "chcptest.v1.Nested\",\"id\":3}]},"
        "\"nested\":{\"inner\":{\"big\":\"1\"}}}";
    ProtobufCMessage *m = decode(&chcptest__v1__everything__descriptor, json);
    char *first = encode(m);
    assert_string_equal(first, json);
    size_t size = protobuf_c_message_get_packed_size(m);
    uint8_t *wire = xmalloc(size);
    assert_int_equal(protobuf_c_message_pack(m, wire), size);
    ProtobufCMessage *back =
        protobuf_c_message_unpack(&chcptest__v1__everything__descriptor, NULL, size, wire);
    assert_non_null(back);
    char *second = encode(back);
    assert_string_equal(second, json);
    free(second);
    free(first);
    free(wire);
    protobuf_c_message_free_unpacked(back, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* Encoding appends to what the buffer already holds. */
static void test_encode_appends(void **state)
{
    Chcptest__V1__Nested n = CHCPTEST__V1__NESTED__INIT;
    n.id = 7;
    chcp_buf out = CHCP_BUF_INIT;
    chcp_error *err = NULL;
    buf_append_str(&out, "x=");
    assert_int_equal(protojson_encode(&n.base, &out, &err), 0);
    assert_int_equal(out.len, 10);
    assert_memory_equal(out.data, "x={\"id\":7}", 10);
    buf_free(&out);
}

int main(void)
{
    protometa_register(&chcptest_protometa);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protometa_lookup),
        cmocka_unit_test(test_protometa_field_order),
        cmocka_unit_test(test_unregistered_descriptor),
        cmocka_unit_test(test_generator_naming),
        cmocka_unit_test(test_encode_presence),
        cmocka_unit_test(test_encode_map_wire_duplicates),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_error_paths),
        cmocka_unit_test(test_depth_limits),
        cmocka_unit_test(test_number_marker_choice),
        cmocka_unit_test(test_float_round_trip),
        cmocka_unit_test(test_timestamp_sweep),
        cmocka_unit_test(test_binary_round_trip),
        cmocka_unit_test(test_encode_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
