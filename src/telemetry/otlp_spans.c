/*
 * otlp_spans.c - OTLP/protobuf encoding of spans (ExportTraceServiceRequest)
 * and of pre-encoded attribute blocks.
 *
 * This runs on the export thread for every span, so it is written for speed:
 * the size of every message is computed first, the buffer is grown once, and
 * each byte is then written in place (no length back-patching, no moves). The
 * resource and scope come pre-encoded from the pipeline; constant attribute
 * blocks are copied verbatim. Field numbers are the wire contract of
 * opentelemetry-proto v1:
 *
 * ExportTraceServiceRequest{resource_spans 1}
 * ResourceSpans{resource 1, scope_spans 2}   ScopeSpans{scope 1, spans 2}
 * Span{trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
 *      start 7 (fixed64), end 8 (fixed64), attributes 9, dropped_attributes 10,
 *      events 11, dropped_events 12, status 15, flags 16 (fixed32)}
 * Span.Event{time 1 (fixed64), name 2, attributes 3}   Status{message 2, code 3}
 * KeyValue{key 1, value 2}   AnyValue{string 1, bool 2, int 3, double 4}
 * Span.flags: bits 0-7 W3C trace flags, bit 8 HAS_IS_REMOTE, bit 9 IS_REMOTE.
 */
#include "telemetry/otlp_internal.h"

#include <string.h>

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* A length-delimited field (tag < 16: one byte) with a body of `body` bytes. */
static size_t len_field(size_t body)
{
    return 1 + varint_size(body) + body;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_tag(uint8_t *p, unsigned field, unsigned wire)
{
    return put_varint(p, (uint64_t)field << 3 | wire);
}

static uint8_t *put_len(uint8_t *p, unsigned field, size_t len)
{
    return put_varint(put_tag(p, field, WIRE_LEN), len);
}

static uint8_t *put_bytes(uint8_t *p, unsigned field, const void *data, size_t len)
{
    p = put_len(p, field, len);
    memcpy(p, data, len);
    return p + len;
}

static uint8_t *put_fixed64(uint8_t *p, unsigned field, uint64_t v)
{
    p = put_tag(p, field, WIRE_I64);
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* ---- KeyValue ------------------------------------------------------------------ */

static size_t any_size(const tm_kv *kv)
{
    switch (kv->type) {
    case TM_STR:
        return len_field(kv->len);
    case TM_BOOL:
        return 2;
    case TM_INT:
        return 1 + varint_size((uint64_t)kv->v.i);
    default: /* TM_DOUBLE */
        return 9;
    }
}

/* ---- attribute blocks ------------------------------------------------------------ */

tm_attr_block *tm_attr_block_new(const char *const *kv)
{
    tm_attr_block *b = xcalloc(1, sizeof(*b));
    chcp_buf out = CHCP_BUF_INIT;
    for (; kv && kv[0] && kv[1]; kv += 2) {
        tm_kv one = {.key = kv[0], .type = TM_STR, .len = (uint32_t)strlen(kv[1]), .v.s = kv[1]};
        tm_otlp_encode_kv(&out, 9, &one); /* Span.attributes */
        b->count++;
    }
    b->len = out.len;
    b->bytes = out.data;
    return b;
}

void tm_attr_block_free(tm_attr_block *b)
{
    if (!b)
        return;
    free(b->bytes);
    free(b);
}

/* ---- Span -------------------------------------------------------------------------- */

/* One attribute's sizes, computed once per span and used to write it. */
typedef struct kv_size {
    uint32_t key_len, any, body;
} kv_size;

static size_t kvs_measure(const tm_kv *kv, size_t n, kv_size *out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        out[i].key_len = (uint32_t)strlen(kv[i].key);
        out[i].any = (uint32_t)any_size(&kv[i]);
        out[i].body = (uint32_t)(len_field(out[i].key_len) + len_field(out[i].any));
        total += len_field(out[i].body);
    }
    return total;
}

static uint8_t *put_kv_sized(uint8_t *p, unsigned field, const tm_kv *kv, const kv_size *z)
{
    p = put_len(p, field, z->body);
    p = put_bytes(p, 1, kv->key, z->key_len);
    p = put_len(p, 2, z->any);
    switch (kv->type) {
    case TM_STR:
        return put_bytes(p, 1, kv->v.s, kv->len);
    case TM_BOOL:
        p = put_tag(p, 2, WIRE_VARINT);
        *p++ = kv->v.b ? 1 : 0;
        return p;
    case TM_INT:
        return put_varint(put_tag(p, 3, WIRE_VARINT), (uint64_t)kv->v.i);
    default: {
        uint64_t bits;
        memcpy(&bits, &kv->v.d, 8);
        return put_fixed64(p, 4, bits);
    }
    }
}

static size_t event_size(const tm_event *e)
{
    kv_size z[TM_MAX_ATTRIBUTES];
    return 9 + len_field(strlen(e->name)) + kvs_measure(e->attrs, e->n_attrs, z);
}

static uint8_t *put_event(uint8_t *p, const tm_event *e)
{
    kv_size z[TM_MAX_ATTRIBUTES];
    size_t name_len = strlen(e->name);
    size_t size = 9 + len_field(name_len) + kvs_measure(e->attrs, e->n_attrs, z);
    p = put_len(p, 11, size);
    p = put_fixed64(p, 1, e->time_ns);
    p = put_bytes(p, 2, e->name, name_len);
    for (uint32_t k = 0; k < e->n_attrs; k++)
        p = put_kv_sized(p, 3, &e->attrs[k], &z[k]);
    return p;
}

static size_t status_size(const tm_span *s, size_t message_len)
{
    size_t n = 1 + varint_size(s->status);
    return s->status_message ? n + len_field(message_len) : n;
}

/* Append one Span (ScopeSpans.spans, field 2): measured, then written. */
static void put_span(chcp_buf *out, const tm_span *s)
{
    kv_size z[TM_MAX_ATTRIBUTES];
    size_t name_len = strlen(s->name);
    size_t state_len = s->ctx.tracestate ? strlen(s->ctx.tracestate) : 0;
    size_t message_len = s->status_message ? strlen(s->status_message) : 0;
    size_t n = 18 + 10 + 9 + 9 + 6; /* ids, start, end, flags (tag 16: two bytes) */
    if (state_len)
        n += len_field(state_len);
    if (s->has_parent)
        n += 10;
    if (name_len)
        n += len_field(name_len);
    if (s->kind)
        n += 2;
    for (uint32_t i = 0; i < s->n_blocks; i++)
        n += s->blocks[i]->len;
    n += kvs_measure(s->attrs, s->n_attrs, z);
    if (s->dropped_attrs)
        n += 1 + varint_size(s->dropped_attrs);
    for (uint32_t i = 0; i < s->n_events; i++)
        n += len_field(event_size(&s->events[i]));
    if (s->dropped_events)
        n += 1 + varint_size(s->dropped_events);
    if (s->status != TM_STATUS_UNSET)
        n += len_field(status_size(s, message_len));

    buf_reserve(out, len_field(n));
    uint8_t *start = out->data + out->len, *p = start;
    p = put_len(p, 2, n);
    p = put_bytes(p, 1, s->ctx.trace_id, 16);
    p = put_bytes(p, 2, s->ctx.span_id, 8);
    if (state_len)
        p = put_bytes(p, 3, s->ctx.tracestate, state_len);
    if (s->has_parent)
        p = put_bytes(p, 4, s->parent_span_id, 8);
    if (name_len)
        p = put_bytes(p, 5, s->name, name_len);
    if (s->kind) {
        p = put_tag(p, 6, WIRE_VARINT);
        *p++ = s->kind;
    }
    p = put_fixed64(p, 7, s->start_ns);
    p = put_fixed64(p, 8, s->end_ns);
    for (uint32_t i = 0; i < s->n_blocks; i++) {
        memcpy(p, s->blocks[i]->bytes, s->blocks[i]->len);
        p += s->blocks[i]->len;
    }
    for (uint32_t i = 0; i < s->n_attrs; i++)
        p = put_kv_sized(p, 9, &s->attrs[i], &z[i]);
    if (s->dropped_attrs)
        p = put_varint(put_tag(p, 10, WIRE_VARINT), s->dropped_attrs);
    for (uint32_t i = 0; i < s->n_events; i++)
        p = put_event(p, &s->events[i]);
    if (s->dropped_events)
        p = put_varint(put_tag(p, 12, WIRE_VARINT), s->dropped_events);
    if (s->status != TM_STATUS_UNSET) {
        p = put_len(p, 15, status_size(s, message_len));
        if (s->status_message)
            p = put_bytes(p, 2, s->status_message, message_len);
        p = put_varint(put_tag(p, 3, WIRE_VARINT), s->status);
    }
    uint32_t flags = s->ctx.flags | 0x100u; /* HAS_IS_REMOTE */
    if (s->parent_remote)
        flags |= 0x200u;
    p = put_tag(p, 16, WIRE_I32);
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(flags >> (8 * i));
    out->len += (size_t)(p - start);
}

/*
 * The spans are written first, after room for the largest possible header;
 * once their total is known the real header goes in front of them, and the
 * spans move down once (a single memmove per batch).
 */
void tm_otlp_encode_spans(const tm_resource *res, tm_span *const *spans, size_t n, chcp_buf *out)
{
    chcp_buf resource = CHCP_BUF_INIT, scope = CHCP_BUF_INIT;
    const chcp_buf *rp = res->resource_pb, *sp = res->scope_pb;
    if (!rp || !sp) {
        tm_otlp_resource_scope(res, &resource, &scope);
        rp = &resource;
        sp = &scope;
    }
    size_t base = out->len, room = 2 * 11 + rp->len + sp->len;
    buf_reserve(out, room + n * 320);
    out->len += room;
    for (size_t i = 0; i < n; i++)
        put_span(out, spans[i]);
    size_t spans_total = out->len - base - room;
    size_t scope_spans = sp->len + spans_total;
    size_t resource_spans = rp->len + len_field(scope_spans);
    uint8_t *p = out->data + base;
    p = put_len(p, 1, resource_spans);
    memcpy(p, rp->data, rp->len);
    p += rp->len;
    p = put_len(p, 2, scope_spans);
    memcpy(p, sp->data, sp->len);
    p += sp->len;
    memmove(p, out->data + base + room, spans_total);
    out->len = (size_t)(p - out->data) + spans_total;
    buf_free(&resource);
    buf_free(&scope);
}
