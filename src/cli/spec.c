/*
 * spec.c - VM spec files (YAML or JSON) into request messages, strictly.
 *
 * The daemon's JSON decoding follows connect-go: unknown fields are silently
 * dropped. That is right for an API evolving under deployed clients, and
 * wrong for a person typing a file: `bootVcpu: 4` would create a 1-vCPU VM
 * without a word. So chcpctl first walks the document against the protobuf
 * schema and refuses unknown fields, wrong types and unknown enum names (the
 * latter listing the valid ones) with the path of the field, before anything
 * is sent. The same walk gives people
 * what proto3 JSON does not: YAML's string scalars coerced by field type,
 * enum values by short name in any case ("pty"), and size units on byte
 * sizes (uint64 fields named size or *_size: "1G"). Its output is canonical
 * proto3 JSON, which protojson_decode (src/rpc/protojson.h) then turns into
 * the message, so the CLI and the daemon share one decoder.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "rpc/protojson.h"

#define MAX_SPEC_BYTES (4u << 20)

typedef const ProtobufCFieldDescriptor Field;

static const char *json_name(const ProtobufCMessageDescriptor *d, unsigned i)
{
    const protometa_message *pm = protometa_find_message(d);
    return pm && pm->json_names ? pm->json_names[i] : d->fields[i].name;
}

static Field *find_field(const ProtobufCMessageDescriptor *d, const char *key, unsigned *index)
{
    for (unsigned i = 0; i < d->n_fields; i++)
        if (strcmp(json_name(d, i), key) == 0 || strcmp(d->fields[i].name, key) == 0) {
            *index = i;
            return &d->fields[i];
        }
    return NULL;
}

static bool is_map(Field *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const protometa_message *pm = protometa_find_message(f->descriptor);
    return pm && pm->map_entry;
}

static int fail(chcp_error **err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(chcp_error **err, const char *path, const char *fmt, ...)
{
    chcp_buf b = CHCP_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    buf_append_byte(&b, 0);
    error_set(err, CHCP_INVALID_ARGUMENT, "field \"%s\": %s", path, (char *)b.data);
    buf_free(&b);
    return -1;
}

static const char *type_of(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "text";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* ---- scalars ------------------------------------------------------------------------ */

static json_t *norm_bool(json_t *v, const char *path, chcp_error **err)
{
    if (json_is_boolean(v))
        return json_incref(v);
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    const char *s = json_string_value(v);
    for (size_t i = 0; s && i < ARRAY_SIZE(yes); i++) {
        if (str_ieq(s, yes[i]))
            return json_true();
        if (str_ieq(s, no[i]))
            return json_false();
    }
    fail(err, path, "expected true or false, got %s", s ? s : type_of(v));
    return NULL;
}

static json_t *norm_enum(json_t *v, Field *f, const char *path, chcp_error **err)
{
    const ProtobufCEnumDescriptor *d = f->descriptor;
    int value;
    if (json_is_integer(v) && protobuf_c_enum_descriptor_get_value(d, (int)json_integer_value(v)))
        return json_string(
            protobuf_c_enum_descriptor_get_value(d, (int)json_integer_value(v))->name);
    if (json_is_string(v) && units_enum_parse(d, json_string_value(v), &value) == 0)
        return json_string(protobuf_c_enum_descriptor_get_value(d, value)->name);
    chcp_buf names = CHCP_BUF_INIT;
    char shortname[64];
    for (unsigned i = 0; i < d->n_values; i++)
        if (d->values[i].value != 0)
            buf_printf(&names, "%s%s", names.len ? ", " : "",
                       units_enum_short(d, d->values[i].value, shortname, sizeof(shortname)));
    buf_append_byte(&names, 0);
    fail(err, path, "unknown value %s%s%s (one of: %s)", json_is_string(v) ? "'" : "",
         json_is_string(v) ? json_string_value(v) : type_of(v), json_is_string(v) ? "'" : "",
         (char *)names.data);
    buf_free(&names);
    return NULL;
}

static bool is_size_field(Field *f)
{
    size_t n = strlen(f->name);
    return f->type == PROTOBUF_C_TYPE_UINT64 &&
           (strcmp(f->name, "size") == 0 || (n > 5 && strcmp(f->name + n - 5, "_size") == 0));
}

static json_t *norm_integer(json_t *v, Field *f, const char *path, chcp_error **err)
{
    bool is_signed = f->type == PROTOBUF_C_TYPE_INT32 || f->type == PROTOBUF_C_TYPE_SINT32 ||
                     f->type == PROTOBUF_C_TYPE_SFIXED32 || f->type == PROTOBUF_C_TYPE_INT64 ||
                     f->type == PROTOBUF_C_TYPE_SINT64 || f->type == PROTOBUF_C_TYPE_SFIXED64;
    bool wide = f->type == PROTOBUF_C_TYPE_INT64 || f->type == PROTOBUF_C_TYPE_SINT64 ||
                f->type == PROTOBUF_C_TYPE_SFIXED64 || f->type == PROTOBUF_C_TYPE_UINT64 ||
                f->type == PROTOBUF_C_TYPE_FIXED64;
    bool negative = false;
    uint64_t mag;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        negative = i < 0;
        mag = negative ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        chcp_error *e = NULL;
        if (is_size_field(f)) {
            if (units_parse_size(s, &mag, &e) < 0) {
                fail(err, path, "%s", e->message);
                error_free(e);
                return NULL;
            }
        } else {
            negative = is_signed && s[0] == '-';
            if (!str_to_u64(s + negative, UINT64_MAX, &mag)) {
                fail(err, path, "expected a whole number, got '%s'", s);
                return NULL;
            }
        }
    } else {
        fail(err, path, "expected a whole number, got %s", type_of(v));
        return NULL;
    }
    uint64_t max = is_signed ? (wide ? INT64_MAX : INT32_MAX) : (wide ? UINT64_MAX : UINT32_MAX);
    if ((negative && !is_signed) || (!negative && mag > max) || (negative && mag > max + 1)) {
        fail(err, path, "%s%llu is out of range", negative ? "-" : "", (unsigned long long)mag);
        return NULL;
    }
    char text[32];
    snprintf(text, sizeof(text), "%s%llu", negative ? "-" : "", (unsigned long long)mag);
    if (wide)
        return json_string(text); /* proto3 JSON writes 64-bit integers as strings */
    return json_integer(negative ? -(json_int_t)mag : (json_int_t)mag);
}

static json_t *norm_message(json_t *in, const ProtobufCMessageDescriptor *d, chcp_buf *path,
                            chcp_error **err);

static json_t *norm_value(json_t *v, Field *f, chcp_buf *path, chcp_error **err)
{
    const char *p = (const char *)path->data;
    switch (f->type) {
    case PROTOBUF_C_TYPE_MESSAGE:
        if (str_has_prefix(((const ProtobufCMessageDescriptor *)f->descriptor)->name,
                           "google.protobuf."))
            return json_incref(v); /* Duration & co.: their own text forms */
        return norm_message(v, f->descriptor, path, err);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
        if (json_is_string(v))
            return json_incref(v);
        fail(err, p, "expected text, got %s (quote it)", type_of(v));
        return NULL;
    case PROTOBUF_C_TYPE_BOOL:
        return norm_bool(v, p, err);
    case PROTOBUF_C_TYPE_ENUM:
        return norm_enum(v, f, p, err);
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        if (json_is_number(v) || json_is_string(v))
            return json_incref(v);
        fail(err, p, "expected a number, got %s", type_of(v));
        return NULL;
    default:
        return norm_integer(v, f, p, err);
    }
}

/* ---- containers ---------------------------------------------------------------------- */

static size_t path_push(chcp_buf *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t path_push(chcp_buf *path, const char *fmt, ...)
{
    size_t mark = path->len ? path->len - 1 : 0; /* drop the NUL */
    path->len = mark;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(path, fmt, ap);
    va_end(ap);
    buf_append_byte(path, 0);
    return mark;
}

static void path_pop(chcp_buf *path, size_t mark)
{
    path->len = mark;
    buf_append_byte(path, 0);
}

static json_t *norm_list(json_t *v, Field *f, chcp_buf *path, chcp_error **err)
{
    if (!json_is_array(v)) {
        fail(err, (char *)path->data, "expected a list, got %s", type_of(v));
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        size_t mark = path_push(path, "[%zu]", i);
        json_t *n = norm_value(item, f, path, err);
        path_pop(path, mark);
        if (!n) {
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, n);
    }
    return out;
}

static json_t *norm_map(json_t *v, Field *f, chcp_buf *path, chcp_error **err)
{
    if (!json_is_object(v)) {
        fail(err, (char *)path->data, "expected a mapping of keys to values, got %s", type_of(v));
        return NULL;
    }
    const ProtobufCMessageDescriptor *entry = f->descriptor;
    Field *value_field = protobuf_c_message_descriptor_get_field(entry, 2);
    json_t *out = json_object();
    const char *key;
    json_t *item;
    json_object_foreach(v, key, item)
    {
        size_t mark = path_push(path, "[%s]", key);
        json_t *n = norm_value(item, value_field, path, err);
        path_pop(path, mark);
        if (!n) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, key, n);
    }
    return out;
}

static void field_names(chcp_buf *b, const ProtobufCMessageDescriptor *d)
{
    for (unsigned i = 0; i < d->n_fields; i++)
        buf_printf(b, "%s%s", i ? ", " : "", json_name(d, i));
    buf_append_byte(b, 0);
}

static json_t *norm_message(json_t *in, const ProtobufCMessageDescriptor *d, chcp_buf *path,
                            chcp_error **err)
{
    if (!json_is_object(in)) {
        fail(err, path->len > 1 ? (char *)path->data : "(top)", "expected a mapping, got %s",
             type_of(in));
        return NULL;
    }
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v)
    {
        unsigned idx;
        Field *f = find_field(d, key, &idx);
        size_t mark = path_push(path, "%s%s", path->len > 1 ? "." : "", key);
        json_t *n = NULL;
        if (!f) {
            chcp_buf names = CHCP_BUF_INIT;
            field_names(&names, d);
            fail(err, (char *)path->data, "unknown field (%s has: %s)", d->short_name,
                 (char *)names.data);
            buf_free(&names);
        } else if (json_object_get(out, json_name(d, idx))) {
            fail(err, (char *)path->data, "given twice (as %s and %s)", f->name, json_name(d, idx));
        } else if (json_is_null(v)) {
            path_pop(path, mark);
            continue; /* proto3: null is the default */
        } else if (is_map(f)) {
            n = norm_map(v, f, path, err);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = norm_list(v, f, path, err);
        } else {
            n = norm_value(v, f, path, err);
        }
        path_pop(path, mark);
        if (!n) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, json_name(d, idx), n);
    }
    return out;
}

json_t *spec_normalize(json_t *doc, const ProtobufCMessageDescriptor *desc, chcp_error **err)
{
    chcp_buf path = CHCP_BUF_INIT;
    buf_append_byte(&path, 0);
    json_t *out = norm_message(doc, desc, &path, err);
    buf_free(&path);
    return out;
}

ProtobufCMessage *spec_decode(json_t *doc, const ProtobufCMessageDescriptor *desc, chcp_error **err)
{
    json_t *norm = spec_normalize(doc, desc, err);
    if (!norm)
        return NULL;
    char *text = json_dumps(norm, JSON_COMPACT);
    json_decref(norm);
    ProtobufCMessage *msg = protojson_decode(desc, text, strlen(text), err);
    free(text);
    return msg;
}

/* ---- files ---------------------------------------------------------------------------- */

static int read_all(FILE *f, const char *name, chcp_buf *out, chcp_error **err)
{
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > MAX_SPEC_BYTES)
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: larger than %u bytes", name,
                             MAX_SPEC_BYTES);
        buf_append(out, chunk, n);
    }
    if (ferror(f))
        return error_set_errno(err, CHCP_INVALID_ARGUMENT, errno, "%s: read error", name);
    return 0;
}

static bool looks_like_json(const char *name, const chcp_buf *b)
{
    size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, ".json") == 0)
        return true;
    for (size_t i = 0; i < b->len; i++)
        if (!isspace(b->data[i]))
            return b->data[i] == '{';
    return false;
}

json_t *spec_load_file(const char *path, chcp_error **err)
{
    bool is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "(stdin)" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "re");
    if (!f) {
        error_set_errno(err, CHCP_INVALID_ARGUMENT, errno, "cannot open %s", path);
        return NULL;
    }
    chcp_buf b = CHCP_BUF_INIT;
    int rc = read_all(f, name, &b, err);
    if (!is_stdin)
        fclose(f);
    json_t *doc = NULL;
    if (rc == 0 && looks_like_json(name, &b)) {
        json_error_t je;
        doc = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &je);
        if (!doc)
            error_set(err, CHCP_INVALID_ARGUMENT, "%s:%d:%d: %s", name, je.line, je.column,
                      je.text);
    } else if (rc == 0) {
        doc = yaml_to_json((const char *)b.data, b.len, name, err);
    }
    buf_free(&b);
    if (doc && !json_is_object(doc)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: expected a mapping (vmId, config, labels)",
                  name);
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}
