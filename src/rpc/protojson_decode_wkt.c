/*
 * protojson_decode_wkt.c - reading the well-known types whose JSON form is
 * not a plain object: Any, Timestamp, Duration, Empty, Struct, Value,
 * ListValue, FieldMask and the wrappers, following Go's protojson.
 *
 * Any is the one that needs the registry: "@type" names the embedded type,
 * whose fields sit next to it (or under "value" when the embedded type is
 * itself a well-known type); the embedded message is decoded and packed to
 * bytes, as the Any holds it on the wire.
 */
#include "rpc/protojson_internal.h"

#include <stdlib.h>
#include <string.h>

static ProtobufCFieldDescriptor const *field(const ProtobufCMessage *msg, unsigned id)
{
    return protobuf_c_message_descriptor_get_field(msg->descriptor, id);
}

static int expect_string(pjd *d, json_t *j, const char *what, pjd_val *v)
{
    if (pjd_classify(d, j, v) != PJD_STRING)
        return pjd_fail(d, "expected a %s string, got %s", what, pjd_kind_name(v->kind));
    return 0;
}

static int dec_time(pjd *d, json_t *j, ProtobufCMessage *msg, bool timestamp)
{
    pjd_val v;
    if (expect_string(d, j, timestamp ? "RFC 3339 timestamp" : "duration", &v) < 0)
        return -1;
    int64_t secs;
    int32_t nanos;
    bool ok = timestamp ? pj_parse_timestamp(v.str, &secs, &nanos)
                        : pj_parse_duration(v.str, &secs, &nanos);
    if (!ok)
        return pjd_fail(d, "invalid %s \"%.64s\"", msg->descriptor->name, v.str);
    PJ_MEMBER(int64_t, msg, field(msg, 1)->offset) = secs;
    PJ_MEMBER(int32_t, msg, field(msg, 2)->offset) = nanos;
    return 0;
}

static int dec_field_mask(pjd *d, json_t *j, ProtobufCMessage *msg)
{
    pjd_val v;
    if (expect_string(d, j, "field mask", &v) < 0)
        return -1;
    /* Go trims surrounding whitespace; "" is an empty mask. */
    const char *s = v.str, *end = v.str + v.len;
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        end--;
    if (s == end)
        return 0;
    const ProtobufCFieldDescriptor *f = field(msg, 1);
    size_t n = 1;
    for (const char *p = s; p < end; p++)
        n += *p == ',';
    char **paths = xcalloc(n, sizeof(char *));
    PJ_MEMBER(char **, msg, f->offset) = paths;
    size_t *count = &PJ_MEMBER(size_t, msg, f->quantifier_offset);
    while (*count < n) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        size_t len = comma ? (size_t)(comma - s) : (size_t)(end - s);
        char *path = pj_field_path_from_json(s, len);
        if (!path)
            return pjd_fail(d, "invalid field mask path \"%.*s\"", (int)(len > 64 ? 64 : len), s);
        paths[(*count)++] = path;
        s += len + 1;
    }
    return 0;
}

/* Value: null, bool, number, string, object (Struct) or array (ListValue).
 * Struct and ListValue are filled in place without counting a nesting level,
 * so JSON depth and Go's recursion limit agree. */
static int dec_known_value(pjd *d, json_t *j, ProtobufCMessage *msg)
{
    pjd_val v;
    const ProtobufCFieldDescriptor *f;
    switch (pjd_classify(d, j, &v)) {
    case PJD_NULL:
        f = field(msg, 1);
        PJ_MEMBER(int32_t, msg, f->offset) = 0;
        break;
    case PJD_NUMBER: {
        f = field(msg, 2);
        double x;
        if (!pj_number_to_double(v.str, v.len, false, &x))
            return pjd_fail(d, "number %.*s out of range", (int)(v.len > 64 ? 64 : v.len), v.str);
        PJ_MEMBER(double, msg, f->offset) = x;
        break;
    }
    case PJD_STRING:
        f = field(msg, 3);
        PJ_MEMBER(char *, msg, f->offset) = xstrndup(v.str, v.len);
        break;
    case PJD_BOOL:
        f = field(msg, 4);
        PJ_MEMBER(protobuf_c_boolean, msg, f->offset) = json_is_true(j);
        break;
    case PJD_OBJECT:
    case PJD_ARRAY: {
        f = field(msg, v.kind == PJD_OBJECT ? 5 : 6);
        ProtobufCMessage *sub = pj_new_message(f->descriptor);
        const ProtobufCFieldDescriptor *inner = &sub->descriptor->fields[0];
        int r = v.kind == PJD_OBJECT ? pjd_map(d, inner, j, sub) : pjd_list(d, inner, j, sub);
        if (r < 0) {
            protobuf_c_message_free_unpacked(sub, NULL);
            return -1;
        }
        PJ_MEMBER(ProtobufCMessage *, msg, f->offset) = sub;
        break;
    }
    default:
        return pjd_fail(d, "invalid google.protobuf.Value");
    }
    PJ_MEMBER(uint32_t, msg, f->quantifier_offset) = f->id;
    return 0;
}

/* Pack the embedded message into Any.value and set Any.type_url. */
static void fill_any(ProtobufCMessage *any, const char *url, const ProtobufCMessage *inner)
{
    size_t size = protobuf_c_message_get_packed_size(inner);
    ProtobufCBinaryData *value = &PJ_MEMBER(ProtobufCBinaryData, any, field(any, 2)->offset);
    value->data = size ? xmalloc(size) : NULL;
    value->len = size ? protobuf_c_message_pack(inner, value->data) : 0;
    PJ_MEMBER(char *, any, field(any, 1)->offset) = xstrdup(url);
}

/* The "value" member of an Any holding a well-known type; Empty may omit it. */
static int dec_any_wkt_value(pjd *d, json_t *obj, const ProtobufCMessageDescriptor *inner_desc,
                             ProtobufCMessage **inner)
{
    json_t *value = json_object_get(obj, "value");
    if (!value) {
        if (pj_wkt_of(inner_desc) != PJ_WKT_EMPTY)
            return pjd_fail(d, "google.protobuf.Any of %s lacks \"value\"", inner_desc->name);
        *inner = pj_new_message(inner_desc);
        return 0;
    }
    size_t old = pjd_path_push(d, "value");
    int r = pjd_message(d, inner_desc, value, inner);
    d->path.len = old;
    return r;
}

static int dec_any(pjd *d, json_t *j, ProtobufCMessage *any)
{
    pjd_val v;
    if (pjd_classify(d, j, &v) != PJD_OBJECT)
        return pjd_fail(d, "expected an object for google.protobuf.Any, got %s",
                        pjd_kind_name(v.kind));
    json_t *type = json_object_get(j, "@type");
    if (!type)
        return 0; /* {} is an empty Any; with DiscardUnknown so is {"x":1} */
    if (pjd_classify(d, type, &v) != PJD_STRING)
        return pjd_fail(d, "\"@type\" must be a string, got %s", pjd_kind_name(v.kind));
    if (v.len == 0)
        return pjd_fail(d, "\"@type\" is empty");
    const ProtobufCMessageDescriptor *inner_desc = pj_resolve_type_url(v.str);
    if (!inner_desc)
        return pjd_fail(d, "google.protobuf.Any: unknown type \"%.128s\"", v.str);

    ProtobufCMessage *inner = NULL;
    int r;
    if (pj_wkt_of(inner_desc) != PJ_WKT_NONE) {
        r = dec_any_wkt_value(d, j, inner_desc, &inner);
    } else if (++d->depth > PJ_MAX_DEPTH) {
        r = pjd_fail(d, "messages nested deeper than %d", PJ_MAX_DEPTH);
    } else {
        inner = pj_new_message(inner_desc);
        r = pjd_fields(d, j, inner, true);
    }
    if (pj_wkt_of(inner_desc) == PJ_WKT_NONE)
        d->depth--;
    if (r == 0)
        fill_any(any, v.str, inner);
    if (inner)
        protobuf_c_message_free_unpacked(inner, NULL);
    return r;
}

static int dec_empty(pjd *d, json_t *j)
{
    pjd_val v;
    if (pjd_classify(d, j, &v) != PJD_OBJECT)
        return pjd_fail(d, "expected {} for google.protobuf.Empty, got %s", pjd_kind_name(v.kind));
    return 0; /* any members are unknown fields, discarded */
}

int pjd_wkt(pjd *d, pj_wkt wkt, json_t *j, ProtobufCMessage *msg)
{
    /* Struct, ListValue and the wrappers keep their one field at index 0. */
    const ProtobufCFieldDescriptor *f0 = msg->descriptor->n_fields ? msg->descriptor->fields : NULL;
    switch (wkt) {
    case PJ_WKT_ANY:
        return dec_any(d, j, msg);
    case PJ_WKT_TIMESTAMP:
        return dec_time(d, j, msg, true);
    case PJ_WKT_DURATION:
        return dec_time(d, j, msg, false);
    case PJ_WKT_EMPTY:
        return dec_empty(d, j);
    case PJ_WKT_FIELD_MASK:
        return dec_field_mask(d, j, msg);
    case PJ_WKT_VALUE:
        return dec_known_value(d, j, msg);
    case PJ_WKT_STRUCT:
        return f0 ? pjd_map(d, f0, j, msg) : pjd_fail(d, "malformed Struct descriptor");
    case PJ_WKT_LIST_VALUE:
        return f0 ? pjd_list(d, f0, j, msg) : pjd_fail(d, "malformed ListValue descriptor");
    case PJ_WKT_WRAPPER:
        if (!f0)
            break;
        if (json_is_null(j))
            return pjd_fail(d, "null is not a valid %s", msg->descriptor->name);
        return pjd_value(d, f0, j, (char *)msg + f0->offset);
    case PJ_WKT_NONE:
        break;
    }
    return pjd_fail(d, "not a well-known type");
}
