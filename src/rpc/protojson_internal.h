/*
 * protojson_internal.h - what the proto3 JSON encoder and decoder share:
 * raw access to protobuf-c message memory, well-known-type detection, and
 * the exact text formats (numbers, Timestamp, Duration, FieldMask paths).
 * Private to src/rpc/protojson*.c.
 */
#ifndef CHCP_PROTOJSON_INTERNAL_H
#define CHCP_PROTOJSON_INTERNAL_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/core.h"
#include "rpc/protojson.h"

/* Nesting limit for messages and JSON values, as Go's protojson (100). */
#define PJ_MAX_DEPTH 100

typedef enum pj_wkt {
    PJ_WKT_NONE = 0,
    PJ_WKT_ANY,
    PJ_WKT_TIMESTAMP,
    PJ_WKT_DURATION,
    PJ_WKT_EMPTY,
    PJ_WKT_STRUCT,
    PJ_WKT_VALUE,
    PJ_WKT_LIST_VALUE,
    PJ_WKT_FIELD_MASK,
    PJ_WKT_WRAPPER, /* DoubleValue ... BytesValue: field 1 "value" */
} pj_wkt;

/* Which well-known type (with a special JSON form) `d` is, if any. */
pj_wkt pj_wkt_of(const ProtobufCMessageDescriptor *d);
static inline bool pj_is_null_value_enum(const ProtobufCFieldDescriptor *f)
{
    return f->type == PROTOBUF_C_TYPE_ENUM &&
           strcmp(((const ProtobufCEnumDescriptor *)f->descriptor)->name,
                  "google.protobuf.NullValue") == 0;
}

/* ---- message memory ------------------------------------------------------ */

#define PJ_MEMBER(type, msg, off) (*(type *)((char *)(msg) + (off)))

/* Size of one value of `type` in a protobuf-c struct or repeated array. */
size_t pj_value_size(ProtobufCType type);

/* json_name of descriptor field i: from the table, else protoc's default. */
const char *pj_json_name(const protometa_message *pm, const ProtobufCMessageDescriptor *d,
                         unsigned i, char *tmp, size_t tmp_len);
/* Is this repeated message field a map (its type a map entry message)? */
bool pj_is_map_field(const ProtobufCFieldDescriptor *f);
/* A fresh, initialised message of type d (free with protobuf_c_message_free_unpacked). */
ProtobufCMessage *pj_new_message(const ProtobufCMessageDescriptor *d);
/* Resolve "type.googleapis.com/pkg.Msg" (anything up to the last '/') to a descriptor. */
const ProtobufCMessageDescriptor *pj_resolve_type_url(const char *url);

/* ---- numbers ------------------------------------------------------------- */

/* Append a float/double as Go's protojson does: shortest round-trip digits,
 * exponent form outside [1e-6, 1e21), "NaN"/"Infinity"/"-Infinity" quoted. */
void pj_write_float(chcp_buf *out, double v, bool is_float32);
void pj_write_i64(chcp_buf *out, int64_t v);
void pj_write_u64(chcp_buf *out, uint64_t v);

/* Is s[0..len) exactly one JSON number literal (RFC 8259 grammar)? */
bool pj_is_json_number(const char *s, size_t len);
/* Exact value of a JSON number literal that must be an integer in range
 * ("1", "1.0", "1e2" are fine, "1.5" is not). */
bool pj_number_to_i64(const char *s, size_t len, int64_t min, int64_t max, int64_t *out);
bool pj_number_to_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
/* A JSON number literal as float/double; false when out of range. */
bool pj_number_to_double(const char *s, size_t len, bool is_float32, double *out);

/* ---- well-known type text forms ------------------------------------------ */

#define PJ_TIME_TEXT_MAX 48
/* Both return false when the value is outside the range protojson allows. */
bool pj_format_timestamp(char out[PJ_TIME_TEXT_MAX], int64_t secs, int32_t nanos);
bool pj_format_duration(char out[PJ_TIME_TEXT_MAX], int64_t secs, int32_t nanos);
bool pj_parse_timestamp(const char *s, int64_t *secs, int32_t *nanos);
bool pj_parse_duration(const char *s, int64_t *secs, int32_t *nanos);

/* FieldMask paths: "foo_bar.baz" <-> "fooBar.baz". Return NULL (encode:
 * irreversible or invalid path; decode: invalid path). Result is malloc'd. */
char *pj_field_path_to_json(const char *path);
char *pj_field_path_from_json(const char *json_path, size_t len);

/* ---- decoder state (protojson_decode*.c) ---------------------------------- */

typedef struct pjd {
    chcp_error **err;
    chcp_buf path; /* field path for errors: "config.disks[1].path" */
    char marker;   /* strings starting with it hold number text; 0 = none */
    int depth;
} pjd;

typedef enum pjd_kind {
    PJD_NULL,
    PJD_BOOL,
    PJD_NUMBER,
    PJD_STRING,
    PJD_OBJECT,
    PJD_ARRAY,
} pjd_kind;

/* A JSON value seen as the mapping sees it: numbers as their text. */
typedef struct pjd_val {
    pjd_kind kind;
    const char *str; /* NUMBER and STRING */
    size_t len;
    char tmp[32];
} pjd_val;

pjd_kind pjd_classify(pjd *d, json_t *j, pjd_val *v);
const char *pjd_kind_name(pjd_kind k);
/* Fail with CHCP_INVALID_ARGUMENT naming the current field path; returns -1. */
int pjd_fail(pjd *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t pjd_path_push(pjd *d, const char *name); /* returns the length to restore */

int pjd_message(pjd *d, const ProtobufCMessageDescriptor *desc, json_t *j, ProtobufCMessage **out);
int pjd_fields(pjd *d, json_t *obj, ProtobufCMessage *msg, bool skip_type_url);
int pjd_value(pjd *d, const ProtobufCFieldDescriptor *f, json_t *j, void *p);
int pjd_list(pjd *d, const ProtobufCFieldDescriptor *f, json_t *arr, ProtobufCMessage *msg);
int pjd_map(pjd *d, const ProtobufCFieldDescriptor *f, json_t *obj, ProtobufCMessage *msg);
/* Well-known types with a special JSON form, into an initialised msg. */
int pjd_wkt(pjd *d, pj_wkt wkt, json_t *j, ProtobufCMessage *msg);

/*
 * Pre-pass over the JSON text: numbers jansson would not keep exactly (reals,
 * integers outside int64, "-0") become strings "<marker><number text>".
 * Returns NULL when nothing needed rewriting, else a malloc'd copy (length in
 * *out_len) with *marker set; PJD_NO_MARKER if no marker character is free.
 */
#define PJD_NO_MARKER ((char *)-1)
char *pjd_protect_numbers(const char *json, size_t len, size_t *out_len, char *marker);

#endif
