/*
 * protojson_decode.c - proto3 JSON -> protobuf-c message, with the rules of
 * connect-go's protojson.Unmarshal (DiscardUnknown: unknown fields and unknown
 * enum names are dropped; everything else malformed is an error).
 *
 * jansson parses the text into a DOM (rejecting duplicate keys); this file
 * walks it against the message descriptor. Messages are built exactly as
 * protobuf-c's unpack would build them (every string, array and submessage
 * malloc'd, every message initialised), so callers free the result with
 * protobuf_c_message_free_unpacked(msg, NULL), and a half-built message can
 * be freed the same way when decoding fails.
 *
 * jansson keeps numbers as long long or double, which would lose uint64
 * values above INT64_MAX and the exact digits of reals. So a pre-pass
 * (pjd_protect_numbers, protojson_scan.c) turns every number jansson cannot
 * keep exactly into a string that starts with a marker character absent from
 * the input; such a string is then read back as the original number text.
 */
#include "rpc/protojson_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors and field paths ---------------------------------------------- */

int pjd_fail(pjd *d, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (d->path.len == 0)
        return error_set(d->err, CHCP_INVALID_ARGUMENT, "invalid JSON message: %s", reason);
    return error_set(d->err, CHCP_INVALID_ARGUMENT, "invalid value for field \"%.*s\": %s",
                     (int)d->path.len, (const char *)d->path.data, reason);
}

size_t pjd_path_push(pjd *d, const char *name)
{
    size_t old = d->path.len;
    if (old)
        buf_append_byte(&d->path, '.');
    buf_append_str(&d->path, name);
    return old;
}

static size_t path_push_index(pjd *d, size_t i)
{
    size_t old = d->path.len;
    buf_append_byte(&d->path, '[');
    pj_write_u64(&d->path, i);
    buf_append_byte(&d->path, ']');
    return old;
}

static size_t path_push_key(pjd *d, const char *key)
{
    size_t old = d->path.len;
    size_t len = strlen(key);
    buf_append(&d->path, "[\"", 2);
    buf_append(&d->path, key, len > 64 ? 64 : len);
    buf_append(&d->path, "\"]", 2);
    return old;
}

/* ---- JSON values ------------------------------------------------------------ */

pjd_kind pjd_classify(pjd *d, json_t *j, pjd_val *v)
{
    v->str = NULL;
    v->len = 0;
    switch (json_typeof(j)) {
    case JSON_NULL:
        return v->kind = PJD_NULL;
    case JSON_TRUE:
    case JSON_FALSE:
        return v->kind = PJD_BOOL;
    case JSON_OBJECT:
        return v->kind = PJD_OBJECT;
    case JSON_ARRAY:
        return v->kind = PJD_ARRAY;
    case JSON_INTEGER: {
        /* Digits written backwards into tmp: no printf on the hot path. */
        json_int_t n = json_integer_value(j);
        uint64_t mag = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
        char *p = v->tmp + sizeof(v->tmp);
        do {
            *--p = (char)('0' + mag % 10);
            mag /= 10;
        } while (mag);
        if (n < 0)
            *--p = '-';
        v->str = p;
        v->len = (size_t)(v->tmp + sizeof(v->tmp) - p);
        return v->kind = PJD_NUMBER;
    }
    case JSON_REAL: /* not produced after protect_numbers, kept for safety */
        v->len = (size_t)snprintf(v->tmp, sizeof(v->tmp), "%.17g", json_real_value(j));
        v->str = v->tmp;
        return v->kind = PJD_NUMBER;
    case JSON_STRING:
        v->str = json_string_value(j);
        v->len = json_string_length(j);
        if (d->marker && v->len > 0 && v->str[0] == d->marker) {
            v->str++;
            v->len--;
            return v->kind = PJD_NUMBER;
        }
        return v->kind = PJD_STRING;
    }
    return v->kind = PJD_NULL;
}

const char *pjd_kind_name(pjd_kind k)
{
    static const char *const names[] = {"null", "boolean", "number", "string", "object", "array"};
    return names[k];
}

/* ---- scalars ---------------------------------------------------------------- */

/* Go's base64 rules: URL alphabet if '-' or '_' appear; padding required
 * exactly when the raw length is a multiple of 4; '\r' and '\n' ignored. */
static bool decode_base64(const char *raw, size_t raw_len, ProtobufCBinaryData *out)
{
    bool url = memchr(raw, '-', raw_len) || memchr(raw, '_', raw_len);
    bool padded = raw_len % 4 == 0;
    char stack[256];
    char *s = raw_len <= sizeof(stack) ? stack : xmalloc(raw_len);
    size_t len = 0;
    for (size_t i = 0; i < raw_len; i++)
        if (raw[i] != '\r' && raw[i] != '\n')
            s[len++] = raw[i];
    size_t data_len = len;
    bool ok = !padded || len % 4 == 0;
    if (ok && padded)
        while (data_len > 0 && len - data_len < 2 && s[data_len - 1] == '=')
            data_len--;
    ok = ok && data_len % 4 != 1;
    for (size_t i = 0; ok && i < data_len; i++) {
        char c = s[i];
        ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             (url ? (c == '-' || c == '_') : (c == '+' || c == '/'));
    }
    chcp_buf b = CHCP_BUF_INIT;
    ok = ok && base64_decode(&b, s, data_len) == 0;
    if (s != stack)
        free(s);
    if (!ok || !b.len) {
        buf_free(&b);
        out->len = 0;
        out->data = NULL;
        return ok;
    }
    out->len = b.len;
    out->data = b.data;
    return true;
}

static int dec_int(pjd *d, const pjd_val *v, int64_t min, int64_t max, int64_t *out)
{
    if ((v->kind == PJD_NUMBER || v->kind == PJD_STRING) &&
        pj_number_to_i64(v->str, v->len, min, max, out))
        return 0;
    if (v->kind == PJD_NUMBER || v->kind == PJD_STRING)
        return pjd_fail(d, "%s%.*s%s is not an integer in [%lld, %lld]",
                        v->kind == PJD_STRING ? "\"" : "", (int)(v->len > 64 ? 64 : v->len), v->str,
                        v->kind == PJD_STRING ? "\"" : "", (long long)min, (long long)max);
    return pjd_fail(d, "expected an integer, got %s", pjd_kind_name(v->kind));
}

static int dec_uint(pjd *d, const pjd_val *v, uint64_t max, uint64_t *out)
{
    if ((v->kind == PJD_NUMBER || v->kind == PJD_STRING) &&
        pj_number_to_u64(v->str, v->len, max, out))
        return 0;
    if (v->kind == PJD_NUMBER || v->kind == PJD_STRING)
        return pjd_fail(d, "%.*s is not an integer in [0, %llu]", (int)(v->len > 64 ? 64 : v->len),
                        v->str, (unsigned long long)max);
    return pjd_fail(d, "expected an unsigned integer, got %s", pjd_kind_name(v->kind));
}

static int dec_float(pjd *d, const pjd_val *v, bool f32, double *out)
{
    if (v->kind == PJD_STRING) {
        if (strcmp(v->str, "NaN") == 0) {
            *out = NAN;
            return 0;
        }
        if (strcmp(v->str, "Infinity") == 0) {
            *out = INFINITY;
            return 0;
        }
        if (strcmp(v->str, "-Infinity") == 0) {
            *out = -INFINITY;
            return 0;
        }
    }
    if ((v->kind == PJD_NUMBER || v->kind == PJD_STRING) &&
        pj_number_to_double(v->str, v->len, f32, out))
        return 0;
    if (v->kind == PJD_NUMBER || v->kind == PJD_STRING)
        return pjd_fail(d, "%.*s is not a valid %s", (int)(v->len > 64 ? 64 : v->len), v->str,
                        f32 ? "float" : "double");
    return pjd_fail(d, "expected a number, got %s", pjd_kind_name(v->kind));
}

static int dec_enum(pjd *d, const ProtobufCFieldDescriptor *f, const pjd_val *v, int32_t *out)
{
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    if (v->kind == PJD_STRING) {
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, v->str);
        if (!ev)
            return pjd_fail(d, "unknown %s name \"%.64s\"", ed->name, v->str);
        *out = ev->value;
        return 0;
    }
    if (v->kind == PJD_NUMBER) {
        /* proto3 enums are open: any int32 is a value (the API checks it). */
        int64_t n;
        if (pj_number_to_i64(v->str, v->len, INT32_MIN, INT32_MAX, &n)) {
            *out = (int32_t)n;
            return 0;
        }
        return pjd_fail(d, "%.*s is not a valid enum number", (int)(v->len > 64 ? 64 : v->len),
                        v->str);
    }
    if (v->kind == PJD_NULL && pj_is_null_value_enum(f)) {
        *out = 0;
        return 0;
    }
    return pjd_fail(d, "expected an enum name or number, got %s", pjd_kind_name(v->kind));
}

/*
 * Decode one non-repeated value of field f's type into p (the struct member
 * or array slot).
 */
int pjd_value(pjd *d, const ProtobufCFieldDescriptor *f, json_t *j, void *p)
{
    pjd_val v;
    pjd_classify(d, j, &v);
    int64_t i;
    uint64_t u;
    double x;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (dec_int(d, &v, INT32_MIN, INT32_MAX, &i) < 0)
            return -1;
        *(int32_t *)p = (int32_t)i;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (dec_int(d, &v, INT64_MIN, INT64_MAX, &i) < 0)
            return -1;
        *(int64_t *)p = i;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (dec_uint(d, &v, UINT32_MAX, &u) < 0)
            return -1;
        *(uint32_t *)p = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (dec_uint(d, &v, UINT64_MAX, &u) < 0)
            return -1;
        *(uint64_t *)p = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (dec_float(d, &v, true, &x) < 0)
            return -1;
        *(float *)p = (float)x;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (dec_float(d, &v, false, &x) < 0)
            return -1;
        *(double *)p = x;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (v.kind != PJD_BOOL)
            return pjd_fail(d, "expected true or false, got %s", pjd_kind_name(v.kind));
        *(protobuf_c_boolean *)p = json_is_true(j);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return dec_enum(d, f, &v, (int32_t *)p);
    case PROTOBUF_C_TYPE_STRING:
        if (v.kind != PJD_STRING)
            return pjd_fail(d, "expected a string, got %s", pjd_kind_name(v.kind));
        *(char **)p = xstrndup(v.str, v.len);
        return 0;
    case PROTOBUF_C_TYPE_BYTES:
        if (v.kind != PJD_STRING)
            return pjd_fail(d, "expected a base64 string, got %s", pjd_kind_name(v.kind));
        if (!decode_base64(v.str, v.len, p))
            return pjd_fail(d, "invalid base64 data");
        return 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return pjd_message(d, f->descriptor, j, (ProtobufCMessage **)p);
    }
    return pjd_fail(d, "unsupported field type");
}

/* ---- repeated fields and maps ------------------------------------------------ */

/* Elements of a repeated field may be null only where null is a value. */
static bool null_is_value(const ProtobufCFieldDescriptor *f)
{
    return pj_is_null_value_enum(f) ||
           (f->type == PROTOBUF_C_TYPE_MESSAGE && pj_wkt_of(f->descriptor) == PJ_WKT_VALUE);
}

int pjd_list(pjd *d, const ProtobufCFieldDescriptor *f, json_t *arr, ProtobufCMessage *msg)
{
    if (!json_is_array(arr)) {
        pjd_val v;
        return pjd_fail(d, "expected an array, got %s", pjd_kind_name(pjd_classify(d, arr, &v)));
    }
    size_t n = json_array_size(arr), size = pj_value_size(f->type);
    size_t *count = &PJ_MEMBER(size_t, msg, f->quantifier_offset);
    void **slot = &PJ_MEMBER(void *, msg, f->offset);
    if (n == 0)
        return 0;
    /* Zeroed up front and counted as filled, so a failure leaves a message
     * free_unpacked can release. */
    *slot = xcalloc(n, size);
    for (size_t i = 0; i < n; i++) {
        json_t *el = json_array_get(arr, i);
        size_t old = path_push_index(d, i);
        int r = 0;
        if (json_is_null(el) && !null_is_value(f))
            r = pjd_fail(d, "null is not allowed in a list");
        else
            r = pjd_value(d, f, el, (char *)*slot + *count * size);
        d->path.len = old;
        if (r < 0)
            return -1;
        (*count)++;
    }
    return 0;
}

static int parse_map_key(pjd *d, const ProtobufCFieldDescriptor *kf, const char *key, void *p)
{
    size_t len = strlen(key);
    bool ok = false;
    char *end;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING:
        *(char **)p = xstrdup(key);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        ok = strcmp(key, "true") == 0 || strcmp(key, "false") == 0;
        *(protobuf_c_boolean *)p = key[0] == 't';
        break;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        /* strconv.ParseInt(key, 10, bits): optional sign, decimal digits. */
        bool is32 = pj_value_size(kf->type) == 4;
        const char *digits = key + (key[0] == '+' || key[0] == '-');
        errno = 0;
        long long v = strtoll(key, &end, 10);
        ok = len > 0 && *digits >= '0' && *digits <= '9' && *end == '\0' && errno == 0 &&
             (!is32 || (v >= INT32_MIN && v <= INT32_MAX));
        if (is32)
            *(int32_t *)p = (int32_t)v;
        else
            *(int64_t *)p = v;
        break;
    }
    default: { /* uint32, fixed32, uint64, fixed64 */
        bool is32 = pj_value_size(kf->type) == 4;
        const char *digits = key + (key[0] == '+');
        errno = 0;
        unsigned long long v = strtoull(key, &end, 10);
        ok = len > 0 && *digits >= '0' && *digits <= '9' && *end == '\0' && errno == 0 &&
             (!is32 || v <= UINT32_MAX);
        if (is32)
            *(uint32_t *)p = (uint32_t)v;
        else
            *(uint64_t *)p = v;
        break;
    }
    }
    if (!ok)
        return pjd_fail(d, "invalid map key \"%.64s\"", key);
    return 0;
}

static int cmp_int_keys(const void *a, const void *b, void *kf_arg)
{
    const ProtobufCFieldDescriptor *kf = kf_arg;
    const char *x = *(const char *const *)a + kf->offset, *y = *(const char *const *)b + kf->offset;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return (*(const uint64_t *)x > *(const uint64_t *)y) -
               (*(const uint64_t *)x < *(const uint64_t *)y);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return (*(const int64_t *)x > *(const int64_t *)y) -
               (*(const int64_t *)x < *(const int64_t *)y);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return (*(const uint32_t *)x > *(const uint32_t *)y) -
               (*(const uint32_t *)x < *(const uint32_t *)y);
    default: /* int32 kinds; bools compare as int too */
        return (*(const int32_t *)x > *(const int32_t *)y) -
               (*(const int32_t *)x < *(const int32_t *)y);
    }
}

/* "1" and "01" are the same int key: Go rejects that as a duplicate. String
 * keys are already unique (jansson rejects duplicate object keys). */
static int check_duplicate_keys(pjd *d, const ProtobufCFieldDescriptor *kf,
                                ProtobufCMessage **entries, size_t n)
{
    if (kf->type == PROTOBUF_C_TYPE_STRING || n < 2)
        return 0;
    /* An array of message pointers (sizeof(void *) each). */
    ProtobufCMessage **sorted = xmalloc(n * sizeof(void *));
    memcpy(sorted, entries, n * sizeof(void *));
    qsort_r(sorted, n, sizeof(void *), cmp_int_keys, (void *)kf);
    int r = 0;
    for (size_t i = 1; i < n && r == 0; i++)
        if (cmp_int_keys(&sorted[i - 1], &sorted[i], (void *)kf) == 0)
            r = pjd_fail(d, "duplicate map key");
    free(sorted);
    return r;
}

int pjd_map(pjd *d, const ProtobufCFieldDescriptor *f, json_t *obj, ProtobufCMessage *msg)
{
    if (!json_is_object(obj)) {
        pjd_val v;
        return pjd_fail(d, "expected an object, got %s", pjd_kind_name(pjd_classify(d, obj, &v)));
    }
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = protobuf_c_message_descriptor_get_field(ed, 1);
    const ProtobufCFieldDescriptor *vf = protobuf_c_message_descriptor_get_field(ed, 2);
    if (!kf || !vf)
        return pjd_fail(d, "map entry %s lacks key or value", ed->name);
    size_t n = json_object_size(obj);
    size_t *count = &PJ_MEMBER(size_t, msg, f->quantifier_offset);
    ProtobufCMessage ***slot = &PJ_MEMBER(ProtobufCMessage **, msg, f->offset);
    if (n == 0)
        return 0;
    *slot = xcalloc(n, sizeof(ProtobufCMessage *));
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        size_t old = path_push_key(d, key);
        ProtobufCMessage *entry = pj_new_message(ed);
        (*slot)[(*count)++] = entry;
        int r = parse_map_key(d, kf, key, (char *)entry + kf->offset);
        if (r == 0 && json_is_null(val) && !null_is_value(vf))
            r = pjd_fail(d, "null is not allowed as a map value");
        else if (r == 0)
            r = pjd_value(d, vf, val, (char *)entry + vf->offset);
        d->path.len = old;
        if (r < 0)
            return -1;
    }
    return check_duplicate_keys(d, kf, *slot, *count);
}

/* ---- messages ------------------------------------------------------------- */

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *desc,
                                                  const protometa_message *pm, const char *key,
                                                  unsigned *index)
{
    char tmp[256];
    for (unsigned i = 0; i < desc->n_fields; i++) {
        if (strcmp(pj_json_name(pm, desc, i, tmp, sizeof(tmp)), key) == 0) {
            *index = i;
            return &desc->fields[i];
        }
    }
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, key);
    if (f)
        *index = (unsigned)(f - desc->fields);
    return f;
}

/* Store a decoded singular value: oneof case or proto2 has_ flag. */
static void mark_set(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        PJ_MEMBER(uint32_t, msg, f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
             f->type != PROTOBUF_C_TYPE_STRING)
        PJ_MEMBER(protobuf_c_boolean, msg, f->quantifier_offset) = 1;
}

static int dec_field(pjd *d, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, json_t *val)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return pj_is_map_field(f) ? pjd_map(d, f, val, msg) : pjd_list(d, f, val, msg);
    /* Decode into a scratch slot first so a failed value leaves the field
     * and its oneof case untouched. */
    union {
        uint64_t u;
        double x;
        void *p;
        ProtobufCBinaryData b;
    } scratch;
    memset(&scratch, 0, sizeof(scratch));
    if (pjd_value(d, f, val, &scratch) < 0) {
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && scratch.p)
            protobuf_c_message_free_unpacked(scratch.p, NULL);
        return -1;
    }
    memcpy((char *)msg + f->offset, &scratch, pj_value_size(f->type));
    mark_set(msg, f);
    return 0;
}

static int check_oneof(pjd *d, const ProtobufCFieldDescriptor *f, unsigned *oneofs, unsigned *n)
{
    if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return 0;
    for (unsigned i = 0; i < *n; i++)
        if (oneofs[i] == f->quantifier_offset)
            return pjd_fail(d, "another member of the same oneof is already set");
    oneofs[(*n)++] = f->quantifier_offset;
    return 0;
}

int pjd_fields(pjd *d, json_t *obj, ProtobufCMessage *msg, bool skip_type_url)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    if (!json_is_object(obj)) {
        pjd_val v;
        return pjd_fail(d, "expected an object for %s, got %s", desc->name,
                        pjd_kind_name(pjd_classify(d, obj, &v)));
    }
    const protometa_message *pm = protometa_find_message(desc);
    uint8_t seen_stack[64] = {0};
    uint8_t *seen =
        desc->n_fields <= 8 * sizeof(seen_stack) ? seen_stack : xcalloc(desc->n_fields / 8 + 1, 1);
    /* Oneofs already given a (non-null) member, by their case-field offset:
     * a second member is an error. */
    unsigned oneofs_stack[16], *oneofs = oneofs_stack, n_oneofs = 0;
    if (desc->n_fields > ARRAY_SIZE(oneofs_stack))
        oneofs = xmalloc(desc->n_fields * sizeof(*oneofs));
    int r = 0;
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (skip_type_url && strcmp(key, "@type") == 0)
            continue;
        unsigned i;
        const ProtobufCFieldDescriptor *f = find_field(desc, pm, key, &i);
        if (!f)
            continue; /* DiscardUnknown */
        size_t old = pjd_path_push(d, f->name);
        if (seen[i / 8] & (1u << (i % 8))) {
            r = pjd_fail(d, "field given twice (as \"%s\" and by its other name)", key);
        } else {
            seen[i / 8] |= (uint8_t)(1u << (i % 8));
            /* null means "default", except where null is itself a value. */
            bool is_default =
                json_is_null(val) && !(f->label != PROTOBUF_C_LABEL_REPEATED && null_is_value(f));
            if (!is_default) {
                r = check_oneof(d, f, oneofs, &n_oneofs);
                if (r == 0)
                    r = dec_field(d, msg, f, val);
            }
        }
        if (r < 0)
            break;
        d->path.len = old;
    }
    if (seen != seen_stack)
        free(seen);
    if (oneofs != oneofs_stack)
        free(oneofs);
    return r;
}

int pjd_message(pjd *d, const ProtobufCMessageDescriptor *desc, json_t *j, ProtobufCMessage **out)
{
    if (++d->depth > PJ_MAX_DEPTH) {
        d->depth--;
        return pjd_fail(d, "messages nested deeper than %d", PJ_MAX_DEPTH);
    }
    ProtobufCMessage *msg = pj_new_message(desc);
    pj_wkt wkt = pj_wkt_of(desc);
    int r = wkt != PJ_WKT_NONE ? pjd_wkt(d, wkt, j, msg) : pjd_fields(d, j, msg, false);
    d->depth--;
    if (r < 0) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return -1;
    }
    *out = msg;
    return 0;
}

/* ---- entry point ------------------------------------------------------------ */

ProtobufCMessage *protojson_decode(const ProtobufCMessageDescriptor *desc, const char *json,
                                   size_t len, chcp_error **err)
{
    pjd d = {.err = err};
    size_t text_len = len;
    char *copy = pjd_protect_numbers(json, len, &text_len, &d.marker);
    if (copy == PJD_NO_MARKER) {
        error_set(err, CHCP_INVALID_ARGUMENT,
                  "invalid JSON message: cannot represent its numbers exactly");
        return NULL;
    }
    json_error_t jerr;
    json_t *root =
        json_loadb(copy ? copy : json, text_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    free(copy);
    if (!root) {
        error_set(err, CHCP_INVALID_ARGUMENT, "invalid JSON message: %s (line %d, column %d)",
                  jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    ProtobufCMessage *msg = NULL;
    if (pjd_message(&d, desc, root, &msg) < 0)
        msg = NULL;
    json_decref(root);
    buf_free(&d.path);
    return msg;
}
