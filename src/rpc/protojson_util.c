/*
 * protojson_util.c - the pieces of the proto3 JSON mapping that are about
 * values rather than structure: well-known-type detection, json_name and map
 * lookups, and exact number reading and writing.
 *
 * Numbers are where JSON codecs usually go subtly wrong, so both directions
 * work from the literal text: integers accept "1", "1.0" and "1e2" but never
 * round through a double, and floats are written with the shortest digits
 * that read back to the same value, formatted the way Go's protojson does.
 * printf/strtod are used in the C locale ('.' as the decimal point): chcp
 * never calls setlocale().
 */
#include "rpc/protojson_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- descriptors ----------------------------------------------------------- */

pj_wkt pj_wkt_of(const ProtobufCMessageDescriptor *d)
{
    static const struct {
        const char *name;
        pj_wkt wkt;
    } wkts[] = {
        {"Any", PJ_WKT_ANY},
        {"Timestamp", PJ_WKT_TIMESTAMP},
        {"Duration", PJ_WKT_DURATION},
        {"Empty", PJ_WKT_EMPTY},
        {"Struct", PJ_WKT_STRUCT},
        {"Value", PJ_WKT_VALUE},
        {"ListValue", PJ_WKT_LIST_VALUE},
        {"FieldMask", PJ_WKT_FIELD_MASK},
        {"DoubleValue", PJ_WKT_WRAPPER},
        {"FloatValue", PJ_WKT_WRAPPER},
        {"Int64Value", PJ_WKT_WRAPPER},
        {"UInt64Value", PJ_WKT_WRAPPER},
        {"Int32Value", PJ_WKT_WRAPPER},
        {"UInt32Value", PJ_WKT_WRAPPER},
        {"BoolValue", PJ_WKT_WRAPPER},
        {"StringValue", PJ_WKT_WRAPPER},
        {"BytesValue", PJ_WKT_WRAPPER},
    };
    const char *pkg = d->package_name;
    if (!pkg || pkg[0] != 'g' || strcmp(pkg, "google.protobuf") != 0)
        return PJ_WKT_NONE;
    for (size_t i = 0; i < ARRAY_SIZE(wkts); i++)
        if (strcmp(d->short_name, wkts[i].name) == 0)
            return wkts[i].wkt;
    return PJ_WKT_NONE;
}

size_t pj_value_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

const char *pj_json_name(const protometa_message *pm, const ProtobufCMessageDescriptor *d,
                         unsigned i, char *tmp, size_t tmp_len)
{
    if (pm && pm->json_names)
        return pm->json_names[i];
    /* Not in any table: protoc's default json_name (custom names are lost). */
    const char *name = d->fields[i].name;
    size_t n = 0;
    bool upper = false;
    for (; *name && n + 1 < tmp_len; name++) {
        if (*name == '_') {
            upper = true;
            continue;
        }
        tmp[n++] = upper && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
        upper = false;
    }
    tmp[n] = '\0';
    return tmp;
}

bool pj_is_map_field(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const ProtobufCMessageDescriptor *entry = f->descriptor;
    const protometa_message *pm = protometa_find_message(entry);
    if (pm)
        return pm->map_entry;
    /* Unregistered: recognise protoc's synthetic "<Field>Entry {key=1; value=2}". */
    size_t len = strlen(entry->short_name);
    return entry->n_fields == 2 && entry->fields[0].id == 1 && entry->fields[1].id == 2 &&
           strcmp(entry->fields[0].name, "key") == 0 &&
           strcmp(entry->fields[1].name, "value") == 0 && len > 5 &&
           strcmp(entry->short_name + len - 5, "Entry") == 0;
}

ProtobufCMessage *pj_new_message(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = xmalloc(d->sizeof_message);
    protobuf_c_message_init(d, m);
    return m;
}

const ProtobufCMessageDescriptor *pj_resolve_type_url(const char *url)
{
    const char *slash = strrchr(url, '/');
    return protometa_find_by_name(slash ? slash + 1 : url);
}

/* ---- writing numbers -------------------------------------------------------- */

void pj_write_u64(chcp_buf *out, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_reserve(out, (size_t)n);
    while (n)
        out->data[out->len++] = (uint8_t)tmp[--n];
}

void pj_write_i64(chcp_buf *out, int64_t v)
{
    if (v < 0) {
        buf_append_byte(out, '-');
        pj_write_u64(out, (uint64_t)0 - (uint64_t)v);
    } else {
        pj_write_u64(out, (uint64_t)v);
    }
}

/* Do `p` significant digits read back as v? */
static bool round_trips(double v, bool f32, int p, char *buf, size_t len)
{
    snprintf(buf, len, "%.*e", p - 1, v);
    if (f32)
        return strtof(buf, NULL) == (float)v;
    return strtod(buf, NULL) == v;
}

void pj_write_float(chcp_buf *out, double v, bool f32)
{
    if (isnan(v)) {
        buf_append_str(out, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        buf_append_str(out, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    double a = fabs(v);
    /* Integers that are exact in the type print as themselves. */
    if (a == floor(a) && a < (f32 ? 16777216.0 : 9007199254740992.0)) {
        if (signbit(v))
            buf_append_byte(out, '-');
        pj_write_u64(out, (uint64_t)a);
        return;
    }
    /* Shortest precision that round-trips; correctly rounded printing makes
     * "p digits round-trip" monotonic in p, so binary search it. */
    char e[40];
    int lo = 1, hi = f32 ? 9 : 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (round_trips(v, f32, mid, e, sizeof(e)))
            hi = mid;
        else
            lo = mid + 1;
    }
    snprintf(e, sizeof(e), "%.*e", lo - 1, a);
    /* e = "d.ddddde[+-]xx": collect the digits without trailing zeros. */
    char digits[24] = {'0'};
    int nd = 0;
    const char *p = e;
    for (; *p && *p != 'e' && nd < (int)sizeof(digits); p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (nd == 0)
        nd = 1;
    int exp10 = *p == 'e' ? (int)strtol(p + 1, NULL, 10) : 0;

    if (signbit(v))
        buf_append_byte(out, '-');
    bool exp_form = f32 ? ((float)a < 1e-6f || (float)a >= 1e21f) : (a < 1e-6 || a >= 1e21);
    if (exp_form) {
        /* Go: strconv 'e' format, then "e-07" shortened to "e-7". */
        buf_append_byte(out, (uint8_t)digits[0]);
        if (nd > 1) {
            buf_append_byte(out, '.');
            buf_append(out, digits + 1, (size_t)nd - 1);
        }
        buf_printf(out, exp10 < 0 ? "e-%d" : "e+%02d", abs(exp10));
    } else if (exp10 >= nd - 1) {
        buf_append(out, digits, (size_t)nd);
        for (int i = 0; i < exp10 - (nd - 1); i++)
            buf_append_byte(out, '0');
    } else if (exp10 >= 0) {
        buf_append(out, digits, (size_t)exp10 + 1);
        buf_append_byte(out, '.');
        buf_append(out, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
    } else {
        buf_append(out, "0.", 2);
        for (int i = 0; i < -exp10 - 1; i++)
            buf_append_byte(out, '0');
        buf_append(out, digits, (size_t)nd);
    }
}

/* ---- reading numbers -------------------------------------------------------- */

typedef struct num_parts {
    bool neg;
    const char *int_digits;
    size_t n_int;
    const char *frac_digits;
    size_t n_frac;
    bool exp_neg;
    const char *exp_digits;
    size_t n_exp;
} num_parts;

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool split_number(const char *s, size_t len, num_parts *np)
{
    memset(np, 0, sizeof(*np));
    size_t i = 0;
    if (i < len && s[i] == '-') {
        np->neg = true;
        i++;
    }
    if (i >= len || !is_digit(s[i]))
        return false;
    np->int_digits = s + i;
    if (s[i] == '0') {
        i++;
    } else {
        while (i < len && is_digit(s[i]))
            i++;
    }
    np->n_int = (size_t)(s + i - np->int_digits);
    if (i < len && s[i] == '.') {
        i++;
        np->frac_digits = s + i;
        while (i < len && is_digit(s[i]))
            i++;
        np->n_frac = (size_t)(s + i - np->frac_digits);
        if (np->n_frac == 0)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            np->exp_neg = s[i++] == '-';
        np->exp_digits = s + i;
        while (i < len && is_digit(s[i]))
            i++;
        np->n_exp = (size_t)(s + i - np->exp_digits);
        if (np->n_exp == 0)
            return false;
    }
    return i == len;
}

bool pj_is_json_number(const char *s, size_t len)
{
    num_parts np;
    return split_number(s, len, &np);
}

/* Magnitude of an integral JSON number; false if fractional or > UINT64_MAX.
 * value = D * 10^(exponent - n_frac), D = int and fraction digits as one
 * integer; trailing zeros of D are folded into the exponent. */
static bool number_magnitude(const num_parts *np, uint64_t *out)
{
    char digits[24];
    size_t nd = 0, zeros = 0;
    for (size_t k = 0; k < np->n_int + np->n_frac; k++) {
        char c = k < np->n_int ? np->int_digits[k] : np->frac_digits[k - np->n_int];
        if (c == '0') {
            if (nd > 0)
                zeros++; /* pending: interior or trailing */
            continue;
        }
        if (nd + zeros + 1 > 20)
            return false; /* more than 20 significant digits */
        while (zeros) {
            digits[nd++] = '0';
            zeros--;
        }
        digits[nd++] = c;
    }
    if (nd == 0) {
        *out = 0;
        return true;
    }
    if (np->n_exp > 7)
        return false; /* |exponent| >= 10^7 with a non-zero mantissa */
    long e = 0;
    for (size_t k = 0; k < np->n_exp; k++)
        e = e * 10 + (np->exp_digits[k] - '0');
    long exp10 = (long)zeros - (long)np->n_frac + (np->exp_neg ? -e : e);
    if (exp10 < 0)
        return false; /* not an integer */
    if ((long)nd + exp10 > 20)
        return false;
    uint64_t v = 0;
    for (size_t k = 0; k < nd; k++) {
        uint64_t d = (uint64_t)(digits[k] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    for (long k = 0; k < exp10; k++) {
        if (v > UINT64_MAX / 10)
            return false;
        v *= 10;
    }
    *out = v;
    return true;
}

bool pj_number_to_i64(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    num_parts np;
    uint64_t mag;
    if (!split_number(s, len, &np) || !number_magnitude(&np, &mag))
        return false;
    if (np.neg) {
        if (mag > (uint64_t)0 - (uint64_t)min)
            return false;
        *out = mag == 0 ? 0 : (int64_t)((uint64_t)0 - mag);
    } else {
        if (mag > (uint64_t)max)
            return false;
        *out = (int64_t)mag;
    }
    return true;
}

bool pj_number_to_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    num_parts np;
    uint64_t mag;
    if (!split_number(s, len, &np) || !number_magnitude(&np, &mag))
        return false;
    if (np.neg && mag != 0)
        return false;
    if (mag > max)
        return false;
    *out = mag;
    return true;
}

bool pj_number_to_double(const char *s, size_t len, bool f32, double *out)
{
    if (!pj_is_json_number(s, len))
        return false;
    char tmp[128];
    char *heap = NULL, *text = tmp;
    if (len >= sizeof(tmp))
        text = heap = xmalloc(len + 1);
    memcpy(text, s, len);
    text[len] = '\0';
    errno = 0;
    double v = f32 ? (double)strtof(text, NULL) : strtod(text, NULL);
    free(heap);
    if (isinf(v))
        return false; /* Go: ParseFloat range error */
    *out = v;
    return true;
}
