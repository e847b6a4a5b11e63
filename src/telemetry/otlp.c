/*
 * otlp.c - OTLP/protobuf encoding of metrics (ExportMetricsServiceRequest), the
 * resource and scope, and single KeyValues; spans are encoded by
 * otlp_spans.c, which sizes everything first to write in one pass.
 *
 * OTLP only needs encoding, so instead of compiling the upstream .proto files
 * (which protobuf-c 1.4 rejects for their proto3 `optional` fields) this is a
 * small protobuf writer with the field numbers of the subset chcp sends. The
 * numbers are the wire contract of opentelemetry-proto v1; each message's
 * numbers are listed next to its encoder. Nested messages are written in place
 * and their length prefix is inserted afterwards.
 */
#include "telemetry/metrics_internal.h"
#include "telemetry/otlp_internal.h"

#include <string.h>

/* ---- protobuf writer ------------------------------------------------------ */

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

static void pb_varint(chcp_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    buf_append(b, tmp, n);
}

static void pb_tag(chcp_buf *b, unsigned field, unsigned wire)
{
    pb_varint(b, (uint64_t)field << 3 | wire);
}

static void pb_fixed64(chcp_buf *b, unsigned field, uint64_t v)
{
    pb_tag(b, field, WIRE_I64);
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    buf_append(b, le, 8);
}

static void pb_double(chcp_buf *b, unsigned field, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, 8);
    pb_fixed64(b, field, bits);
}

static void pb_uint(chcp_buf *b, unsigned field, uint64_t v)
{
    if (!v)
        return; /* proto3 default: not written */
    pb_tag(b, field, WIRE_VARINT);
    pb_varint(b, v);
}

static void pb_bytes(chcp_buf *b, unsigned field, const void *data, size_t len)
{
    pb_tag(b, field, WIRE_LEN);
    pb_varint(b, len);
    buf_append(b, data, len);
}

static void pb_string(chcp_buf *b, unsigned field, const char *s)
{
    if (s && *s)
        pb_bytes(b, field, s, strlen(s));
}

/* Start a length-delimited field; returns where its body starts. */
static size_t pb_begin(chcp_buf *b, unsigned field)
{
    pb_tag(b, field, WIRE_LEN);
    return b->len;
}

/* Finish it: insert the varint length in front of the body. */
static void pb_end(chcp_buf *b, size_t start)
{
    size_t body = b->len - start;
    uint8_t tmp[10];
    size_t n = 0;
    uint64_t v = body;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    buf_reserve(b, n);
    memmove(b->data + start + n, b->data + start, body);
    memcpy(b->data + start, tmp, n);
    b->len += n;
}

/* ---- common.proto: KeyValue{key 1, value 2}, AnyValue{string 1, bool 2,
 * int 3, double 4}, InstrumentationScope{name 1, version 2};
 * resource.proto: Resource{attributes 1} ---------------------------------- */

static void encode_kv(chcp_buf *b, unsigned field, const tm_kv *kv)
{
    size_t at = pb_begin(b, field);
    pb_string(b, 1, kv->key);
    size_t value = pb_begin(b, 2);
    switch (kv->type) {
    case TM_STR:
        pb_bytes(b, 1, kv->v.s, kv->len);
        break;
    case TM_BOOL:
        pb_tag(b, 2, WIRE_VARINT);
        pb_varint(b, kv->v.b);
        break;
    case TM_INT:
        pb_tag(b, 3, WIRE_VARINT);
        pb_varint(b, (uint64_t)kv->v.i);
        break;
    case TM_DOUBLE:
        pb_double(b, 4, kv->v.d);
        break;
    }
    pb_end(b, value);
    pb_end(b, at);
}

static void encode_str_kv(chcp_buf *b, unsigned field, const char *key, const char *value)
{
    tm_kv kv = {.key = key, .type = TM_STR, .len = (uint32_t)strlen(value), .v.s = value};
    encode_kv(b, field, &kv);
}

static void encode_resource(chcp_buf *b, unsigned field, const tm_resource *res)
{
    size_t at = pb_begin(b, field);
    const tm_registry *r = res->registry;
    for (size_t i = 0; r && i < r->n_resource; i++)
        encode_str_kv(b, 1, r->resource[i].key, r->resource[i].value);
    pb_end(b, at);
}

static void encode_scope(chcp_buf *b, unsigned field, const tm_resource *res)
{
    size_t at = pb_begin(b, field);
    pb_string(b, 1, res->scope_name);
    pb_string(b, 2, res->scope_version);
    pb_end(b, at);
}

void tm_otlp_resource_scope(const tm_resource *res, chcp_buf *resource, chcp_buf *scope)
{
    encode_resource(resource, 1, res);
    encode_scope(scope, 1, res);
}

void tm_otlp_encode_kv(chcp_buf *b, unsigned field, const tm_kv *kv)
{
    encode_kv(b, field, kv);
}

/* ---- metrics.proto ----------------------------------------------------------
 * ExportMetricsServiceRequest{resource_metrics 1}
 * ResourceMetrics{resource 1, scope_metrics 2}   ScopeMetrics{scope 1, metrics 2}
 * Metric{name 1, description 2, unit 3, gauge 5, sum 7, histogram 9}
 * Gauge{data_points 1}   Sum{data_points 1, aggregation_temporality 2,
 * is_monotonic 3}   Histogram{data_points 1, aggregation_temporality 2}
 * NumberDataPoint{start 2, time 3 (fixed64), as_double 4, attributes 7}
 * HistogramDataPoint{start 2, time 3, count 4 (fixed64), sum 5 (double),
 *   bucket_counts 6 (packed fixed64), explicit_bounds 7 (packed double),
 *   attributes 9, min 11, max 12}
 * AggregationTemporality CUMULATIVE = 2. */

static void encode_point_attrs(chcp_buf *b, unsigned field, const tm_metric *m, const tm_series *s)
{
    for (size_t i = 0; i < m->n_labels; i++)
        if (s->label_values[i][0])
            encode_str_kv(b, field, m->label_keys[i], s->label_values[i]);
}

static void encode_number_points(chcp_buf *b, const tm_metric *m, uint64_t now)
{
    for (const tm_series *s = m->series; s; s = s->next) {
        size_t dp = pb_begin(b, 1);
        if (m->kind != TM_GAUGE)
            pb_fixed64(b, 2, s->start_ns ? s->start_ns : m->start_ns);
        pb_fixed64(b, 3, now);
        pb_double(b, 4, s->value);
        encode_point_attrs(b, 7, m, s);
        pb_end(b, dp);
    }
}

static void encode_histogram_points(chcp_buf *b, const tm_metric *m, uint64_t now)
{
    for (const tm_series *s = m->series; s; s = s->next) {
        size_t dp = pb_begin(b, 1);
        pb_fixed64(b, 2, m->start_ns);
        pb_fixed64(b, 3, now);
        pb_fixed64(b, 4, s->count);
        pb_double(b, 5, s->value);
        size_t counts = pb_begin(b, 6);
        for (size_t i = 0; i <= m->n_bounds; i++) {
            uint8_t le[8];
            for (int k = 0; k < 8; k++)
                le[k] = (uint8_t)(s->buckets[i] >> (8 * k));
            buf_append(b, le, 8);
        }
        pb_end(b, counts);
        size_t bounds = pb_begin(b, 7);
        buf_append(b, m->bounds, m->n_bounds * sizeof(double)); /* x86-64: little endian */
        pb_end(b, bounds);
        encode_point_attrs(b, 9, m, s);
        if (s->count) {
            pb_double(b, 11, s->min);
            pb_double(b, 12, s->max);
        }
        pb_end(b, dp);
    }
}

static void encode_metric(chcp_buf *b, const tm_metric *m, uint64_t now)
{
    size_t at = pb_begin(b, 2);
    pb_string(b, 1, m->name);
    pb_string(b, 2, m->description);
    pb_string(b, 3, m->unit);
    size_t data;
    switch (m->kind) {
    case TM_GAUGE:
        data = pb_begin(b, 5);
        encode_number_points(b, m, now);
        break;
    case TM_COUNTER:
    case TM_UPDOWN:
        data = pb_begin(b, 7);
        encode_number_points(b, m, now);
        pb_uint(b, 2, 2);
        pb_uint(b, 3, m->kind == TM_COUNTER);
        break;
    case TM_HISTOGRAM:
    default:
        data = pb_begin(b, 9);
        encode_histogram_points(b, m, now);
        pb_uint(b, 2, 2);
        break;
    }
    pb_end(b, data);
    pb_end(b, at);
}

void tm_otlp_encode_metrics(const tm_resource *res, tm_registry *r, chcp_buf *out)
{
    tm_registry_collect(r);
    uint64_t now = time_real_ns();
    size_t rm = pb_begin(out, 1);
    encode_resource(out, 1, res);
    size_t sm = pb_begin(out, 2);
    encode_scope(out, 1, res);
    for (const tm_metric *m = r->metrics; m; m = m->next)
        if (m->series)
            encode_metric(out, m, now);
    pb_end(out, sm);
    pb_end(out, rm);
}
