/*
 * protojson_encode.c - protobuf-c message -> proto3 JSON, as connect-go's
 * protojson.Marshal (default options) writes it.
 *
 * This runs for every JSON response, so it writes straight into the output
 * buffer with no intermediate DOM: fields in .proto declaration order, proto3
 * defaults omitted, set oneof members and explicit-presence fields always
 * written, 64-bit integers quoted, enums by name, bytes as padded base64, map
 * keys sorted (as Go does), well-known types in their special forms.
 */
#include "rpc/protojson_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct enc {
    chcp_buf *out;
    chcp_error **err;
    int depth;
} enc;

static int enc_message(enc *e, const ProtobufCMessage *msg, const char *type_url);
static int enc_value(enc *e, const ProtobufCFieldDescriptor *f, const void *p);

/* ---- strings ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (Go's rules: no overlongs, no
 * surrogates, <= U+10FFFF), or 0 if invalid. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
            return 0; /* overlong, surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

/* Append a JSON string. Go escapes only '"', '\\' and control characters;
 * invalid UTF-8 is an error. */
static int write_string(enc *e, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *s = (const uint8_t *)str;
    chcp_buf *out = e->out;
    buf_reserve(out, len + 2);
    out->data[out->len++] = '"';
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
            run++;
        buf_append(out, s + i, run - i);
        i = run;
        if (i >= len)
            break;
        uint8_t c = s[i];
        if (c >= 0x80) {
            size_t n = utf8_len(s + i, len - i);
            if (n == 0)
                return error_set(e->err, CHCP_INTERNAL, "string field contains invalid UTF-8");
            buf_append(out, s + i, n);
            i += n;
            continue;
        }
        char esc[6] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        buf_append(out, esc, n);
        i++;
    }
    buf_append_byte(out, '"');
    return 0;
}

static int write_cstring(enc *e, const char *s)
{
    return write_string(e, s ? s : "", s ? strlen(s) : 0);
}

/* ---- presence ------------------------------------------------------------- */

/* Go's Has(): what a default-options Marshal writes. */
static bool field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const void *p = (const char *)msg + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return PJ_MEMBER(size_t, msg, f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return PJ_MEMBER(uint32_t, msg, f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(void *const *)p != NULL;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
        if (f->type == PROTOBUF_C_TYPE_STRING)
            return *(char *const *)p != NULL && *(char *const *)p != f->default_value;
        return PJ_MEMBER(protobuf_c_boolean, msg, f->quantifier_offset);
    }
    /* proto3 implicit presence: non-zero values only (-0.0 counts, as in Go). */
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && s[0];
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_FLOAT: {
        uint32_t bits;
        memcpy(&bits, p, 4);
        return bits != 0;
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        uint64_t bits;
        memcpy(&bits, p, 8);
        return bits != 0;
    }
    default: {
        size_t n = pj_value_size(f->type);
        static const uint8_t zero[8];
        return memcmp(p, zero, n) != 0;
    }
    }
}

/* ---- values --------------------------------------------------------------- */

static int enc_enum(enc *e, const ProtobufCFieldDescriptor *f, int32_t v)
{
    if (pj_is_null_value_enum(f)) {
        buf_append(e->out, "null", 4);
        return 0;
    }
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
    if (ev)
        return write_cstring(e, ev->name);
    pj_write_i64(e->out, v);
    return 0;
}

static int enc_submessage(enc *e, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    if (m)
        return enc_message(e, m, NULL);
    /* A map value that is absent on the wire is the type's default. */
    ProtobufCMessage *def = pj_new_message(f->descriptor);
    int r = enc_message(e, def, NULL);
    free(def);
    return r;
}

static int enc_value(enc *e, const ProtobufCFieldDescriptor *f, const void *p)
{
    chcp_buf *out = e->out;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        pj_write_i64(out, *(const int32_t *)p);
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        pj_write_u64(out, *(const uint32_t *)p);
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        buf_append_byte(out, '"');
        pj_write_i64(out, *(const int64_t *)p);
        buf_append_byte(out, '"');
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        buf_append_byte(out, '"');
        pj_write_u64(out, *(const uint64_t *)p);
        buf_append_byte(out, '"');
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        pj_write_float(out, *(const float *)p, true);
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        pj_write_float(out, *(const double *)p, false);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (*(const protobuf_c_boolean *)p)
            buf_append(out, "true", 4);
        else
            buf_append(out, "false", 5);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return enc_enum(e, f, *(const int32_t *)p);
    case PROTOBUF_C_TYPE_STRING:
        return write_cstring(e, *(char *const *)p);
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        buf_append_byte(out, '"');
        base64_encode(out, b->data, b->len, false, true);
        buf_append_byte(out, '"');
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return enc_submessage(e, f, *(ProtobufCMessage *const *)p);
    }
    return error_set(e->err, CHCP_INTERNAL, "field %s has an unknown type", f->name);
}

static int enc_list(enc *e, const ProtobufCFieldDescriptor *f, size_t n, const void *arr)
{
    size_t size = pj_value_size(f->type);
    buf_append_byte(e->out, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_append_byte(e->out, ',');
        if (enc_value(e, f, (const char *)arr + i * size) < 0)
            return -1;
    }
    buf_append_byte(e->out, ']');
    return 0;
}

/* ---- maps ------------------------------------------------------------------ */

static int cmp_keys(const ProtobufCFieldDescriptor *kf, const ProtobufCMessage *a,
                    const ProtobufCMessage *b)
{
    const void *x = (const char *)a + kf->offset, *y = (const char *)b + kf->offset;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)x, *t = *(char *const *)y;
        return strcmp(s ? s : "", t ? t : "");
    }
    case PROTOBUF_C_TYPE_BOOL:
        return (*(const protobuf_c_boolean *)x != 0) - (*(const protobuf_c_boolean *)y != 0);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return (*(const uint32_t *)x > *(const uint32_t *)y) -
               (*(const uint32_t *)x < *(const uint32_t *)y);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return (*(const uint64_t *)x > *(const uint64_t *)y) -
               (*(const uint64_t *)x < *(const uint64_t *)y);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return (*(const int64_t *)x > *(const int64_t *)y) -
               (*(const int64_t *)x < *(const int64_t *)y);
    default:
        return (*(const int32_t *)x > *(const int32_t *)y) -
               (*(const int32_t *)x < *(const int32_t *)y);
    }
}

/* Entries in key order (Go sorts map keys too); among equal keys, possible
 * on the wire, the original order breaks the tie, so the last one stays last
 * and wins, as in Go. qsort keeps hostile maps O(n log n). */
typedef struct map_item {
    const ProtobufCMessage *entry;
    size_t index;
} map_item;

static int cmp_items(const void *a, const void *b, void *kf)
{
    const map_item *x = a, *y = b;
    int c = cmp_keys(kf, x->entry, y->entry);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static void sort_entries(const ProtobufCFieldDescriptor *kf, map_item *v, size_t n)
{
    if (n > 1)
        qsort_r(v, n, sizeof(*v), cmp_items, (void *)kf);
}

static void write_map_key(enc *e, const ProtobufCFieldDescriptor *kf, const void *p)
{
    chcp_buf *out = e->out;
    buf_append_byte(out, '"');
    switch (kf->type) {
    case PROTOBUF_C_TYPE_BOOL:
        buf_append_str(out, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        pj_write_u64(out, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        pj_write_u64(out, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        pj_write_i64(out, *(const int64_t *)p);
        break;
    default:
        pj_write_i64(out, *(const int32_t *)p);
        break;
    }
    buf_append_byte(out, '"');
}

static int enc_map(enc *e, const ProtobufCFieldDescriptor *f, size_t n,
                   ProtobufCMessage *const *entries)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = protobuf_c_message_descriptor_get_field(ed, 1);
    const ProtobufCFieldDescriptor *vf = protobuf_c_message_descriptor_get_field(ed, 2);
    if (!kf || !vf)
        return error_set(e->err, CHCP_INTERNAL, "map entry %s lacks key or value", ed->name);
    map_item stack[32];
    map_item *sorted = n <= ARRAY_SIZE(stack) ? stack : xmalloc(n * sizeof(*sorted));
    for (size_t i = 0; i < n; i++)
        sorted[i] = (map_item){entries[i], i};
    sort_entries(kf, sorted, n);

    int r = 0;
    bool first = true;
    buf_append_byte(e->out, '{');
    for (size_t i = 0; i < n && r == 0; i++) {
        if (i + 1 < n && cmp_keys(kf, sorted[i].entry, sorted[i + 1].entry) == 0)
            continue; /* a later duplicate replaces this one */
        if (!first)
            buf_append_byte(e->out, ',');
        first = false;
        const char *entry = (const char *)sorted[i].entry;
        if (kf->type == PROTOBUF_C_TYPE_STRING)
            r = write_cstring(e, *(char *const *)(entry + kf->offset));
        else
            write_map_key(e, kf, entry + kf->offset);
        if (r == 0) {
            buf_append_byte(e->out, ':');
            r = enc_value(e, vf, entry + vf->offset);
        }
    }
    buf_append_byte(e->out, '}');
    if (sorted != stack)
        free(sorted);
    return r;
}

/* ---- messages -------------------------------------------------------------- */

static int enc_field(enc *e, const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const void *p = (const char *)msg + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = PJ_MEMBER(size_t, msg, f->quantifier_offset);
        const void *arr = *(void *const *)p;
        if (pj_is_map_field(f))
            return enc_map(e, f, n, arr);
        return enc_list(e, f, n, arr);
    }
    return enc_value(e, f, p);
}

static int enc_fields(enc *e, const ProtobufCMessage *msg, bool first)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const protometa_message *pm = protometa_find_message(d);
    char tmp[256];
    for (unsigned k = 0; k < d->n_fields; k++) {
        unsigned i = pm && pm->decl_order ? pm->decl_order[k] : k;
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!field_present(msg, f))
            continue;
        if (!first)
            buf_append_byte(e->out, ',');
        first = false;
        buf_append_byte(e->out, '"');
        buf_append_str(e->out, pj_json_name(pm, d, i, tmp, sizeof(tmp)));
        buf_append(e->out, "\":", 2);
        if (enc_field(e, msg, f) < 0) {
            error_prefix(*e->err, "field \"%s\"", f->name);
            return -1;
        }
    }
    return 0;
}

/* ---- well-known types ------------------------------------------------------ */

static const void *field_ptr(const ProtobufCMessage *m, unsigned id,
                             const ProtobufCFieldDescriptor **f)
{
    *f = protobuf_c_message_descriptor_get_field(m->descriptor, id);
    return *f ? (const char *)m + (*f)->offset : NULL;
}

static int enc_time(enc *e, const ProtobufCMessage *m, bool timestamp)
{
    const ProtobufCFieldDescriptor *fs, *fn;
    const int64_t *secs = field_ptr(m, 1, &fs);
    const int32_t *nanos = field_ptr(m, 2, &fn);
    char text[PJ_TIME_TEXT_MAX];
    if (!secs || !nanos)
        return error_set(e->err, CHCP_INTERNAL, "malformed %s descriptor", m->descriptor->name);
    bool ok = timestamp ? pj_format_timestamp(text, *secs, *nanos)
                        : pj_format_duration(text, *secs, *nanos);
    if (!ok)
        return error_set(e->err, CHCP_INTERNAL, "%s out of range (seconds %lld, nanos %d)",
                         m->descriptor->name, (long long)*secs, *nanos);
    buf_append_byte(e->out, '"');
    buf_append_str(e->out, text);
    buf_append_byte(e->out, '"');
    return 0;
}

static int enc_field_mask(enc *e, const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f;
    char *const *paths = *(char **const *)field_ptr(m, 1, &f);
    size_t n = PJ_MEMBER(size_t, m, f->quantifier_offset);
    chcp_buf joined = CHCP_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        char *json = pj_field_path_to_json(paths[i] ? paths[i] : "");
        if (!json) {
            buf_free(&joined);
            return error_set(e->err, CHCP_INTERNAL, "FieldMask path \"%s\" has no JSON form",
                             paths[i] ? paths[i] : "");
        }
        if (i)
            buf_append_byte(&joined, ',');
        buf_append_str(&joined, json);
        free(json);
    }
    int r = write_string(e, (const char *)joined.data, joined.len);
    buf_free(&joined);
    return r;
}

static int enc_known_value(enc *e, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    uint32_t which = PJ_MEMBER(uint32_t, m, d->fields[0].quantifier_offset);
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, which);
    if (!f)
        return error_set(e->err, CHCP_INTERNAL, "google.protobuf.Value has no kind set");
    const void *p = (const char *)m + f->offset;
    if (f->type == PROTOBUF_C_TYPE_DOUBLE && !isfinite(*(const double *)p))
        return error_set(e->err, CHCP_INTERNAL, "google.protobuf.Value cannot hold NaN/Infinity");
    return enc_value(e, f, p);
}

static int enc_any(enc *e, const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *ft, *fv;
    const char *url = *(char *const *)field_ptr(m, 1, &ft);
    const ProtobufCBinaryData *value = field_ptr(m, 2, &fv);
    if (!url || !url[0]) {
        if (value->len == 0) {
            buf_append(e->out, "{}", 2);
            return 0;
        }
        return error_set(e->err, CHCP_INTERNAL, "google.protobuf.Any has a value but no type_url");
    }
    const ProtobufCMessageDescriptor *d = pj_resolve_type_url(url);
    if (!d)
        return error_set(e->err, CHCP_INTERNAL, "google.protobuf.Any: unknown type \"%s\"", url);
    ProtobufCMessage *inner = protobuf_c_message_unpack(d, NULL, value->len, value->data);
    if (!inner)
        return error_set(e->err, CHCP_INTERNAL, "google.protobuf.Any: invalid %s bytes", d->name);
    int r = enc_message(e, inner, url);
    protobuf_c_message_free_unpacked(inner, NULL);
    return r;
}

static int enc_wkt(enc *e, const ProtobufCMessage *msg, pj_wkt wkt)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    switch (wkt) {
    case PJ_WKT_ANY:
        return enc_any(e, msg);
    case PJ_WKT_TIMESTAMP:
        return enc_time(e, msg, true);
    case PJ_WKT_DURATION:
        return enc_time(e, msg, false);
    case PJ_WKT_EMPTY:
        buf_append(e->out, "{}", 2);
        return 0;
    case PJ_WKT_FIELD_MASK:
        return enc_field_mask(e, msg);
    case PJ_WKT_VALUE:
        return enc_known_value(e, msg);
    case PJ_WKT_STRUCT:
        return enc_map(e, &d->fields[0], PJ_MEMBER(size_t, msg, d->fields[0].quantifier_offset),
                       PJ_MEMBER(ProtobufCMessage **, msg, d->fields[0].offset));
    case PJ_WKT_LIST_VALUE:
    case PJ_WKT_WRAPPER:
        return enc_field(e, msg, &d->fields[0]);
    case PJ_WKT_NONE:
        break;
    }
    return error_set(e->err, CHCP_INTERNAL, "not a well-known type: %s", d->name);
}

/* `type_url` set: the message is inside an Any and "@type" goes first. */
static int enc_message(enc *e, const ProtobufCMessage *msg, const char *type_url)
{
    if (++e->depth > PJ_MAX_DEPTH) {
        e->depth--;
        return error_set(e->err, CHCP_INTERNAL, "message nesting deeper than %d", PJ_MAX_DEPTH);
    }
    int r;
    pj_wkt wkt = pj_wkt_of(msg->descriptor);
    if (type_url) {
        buf_append(e->out, "{\"@type\":", 9);
        r = write_cstring(e, type_url);
        if (r == 0 && wkt != PJ_WKT_NONE) {
            buf_append(e->out, ",\"value\":", 9);
            r = enc_wkt(e, msg, wkt);
        } else if (r == 0) {
            r = enc_fields(e, msg, false);
        }
        buf_append_byte(e->out, '}');
    } else if (wkt != PJ_WKT_NONE) {
        r = enc_wkt(e, msg, wkt);
    } else {
        buf_append_byte(e->out, '{');
        r = enc_fields(e, msg, true);
        buf_append_byte(e->out, '}');
    }
    e->depth--;
    return r;
}

int protojson_encode(const ProtobufCMessage *msg, chcp_buf *out, chcp_error **err)
{
    size_t start = out->len;
    enc e = {.out = out, .err = err};
    if (enc_message(&e, msg, NULL) < 0) {
        out->len = start;
        return -1;
    }
    return 0;
}
