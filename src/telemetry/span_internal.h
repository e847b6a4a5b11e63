/*
 * span_internal.h - the span record shared by the tracer (trace.c), the OTLP
 * encoder (otlp.c) and the pipeline (pipeline.c). Not part of the module's
 * interface.
 *
 * A span is one fixed-size record from the tracer's pool: attributes sit in
 * an inline array and point at strings that are either borrowed (literals,
 * descriptor names: never copied) or copied into the span's own arena (an
 * inline buffer, chained to heap chunks only when it overflows). Constant
 * attributes may come as a pre-encoded block (tm_attr_block), copied into
 * the OTLP payload verbatim. Nothing in a span points at anything that dies
 * before the span is recycled, so a span can travel to the export thread on
 * its own.
 */
#ifndef CHCP_TELEMETRY_SPAN_INTERNAL_H
#define CHCP_TELEMETRY_SPAN_INTERNAL_H

#include <stdatomic.h>

#include "telemetry/telemetry.h"

/* Span limits from the specification ("Span Limits"). */
#define TM_MAX_ATTRIBUTES 128
#define TM_MAX_EVENTS 128
#define TM_INLINE_ATTRS 14
#define TM_ARENA_INLINE 192
#define TM_MAX_BLOCKS 2

typedef enum tm_value_type { TM_STR, TM_INT, TM_DOUBLE, TM_BOOL } tm_value_type;

typedef struct tm_kv {
    const char *key; /* not owned: attribute keys are string literals */
    uint8_t type;    /* tm_value_type */
    uint32_t len;    /* TM_STR: bytes in v.s */
    union {
        const char *s; /* borrowed, or in the span's arena */
        int64_t i;
        double d;
        bool b;
    } v;
} tm_kv;

typedef struct tm_event {
    uint64_t time_ns;
    const char *name; /* arena */
    tm_kv *attrs;     /* arena */
    uint32_t n_attrs;
} tm_event;

/* Pre-encoded KeyValue fields (OTLP Span.attributes, field 9). */
struct tm_attr_block {
    uint8_t *bytes;
    size_t len;
    uint32_t count;
};

typedef struct tm_arena_chunk {
    struct tm_arena_chunk *next;
    size_t used, cap;
    char data[];
} tm_arena_chunk;

typedef struct tm_trace tm_trace;

struct tm_span {
    struct tm_span *next; /* the pool's free list, the pipeline's batch */
    tm_tracer *tracer;
    tm_trace *trace; /* the local trace's bookkeeping; loop only, NULL once ended */
    tm_span_context ctx;
    uint8_t parent_span_id[8];
    bool has_parent;
    bool parent_remote; /* the parent came from another process */
    bool ended;
    uint8_t kind;   /* tm_span_kind */
    uint8_t status; /* tm_status_code */
    const char *name;
    const char *status_message; /* arena; NULL when none */
    uint64_t start_ns, end_ns;  /* unix time */

    const tm_attr_block *blocks[TM_MAX_BLOCKS];
    uint32_t n_blocks;
    tm_kv *attrs; /* inline_attrs, or an arena array when more are needed */
    uint32_t n_attrs, cap_attrs;
    uint32_t dropped_attrs;
    tm_event *events; /* arena */
    uint32_t n_events, cap_events;
    uint32_t dropped_events;

    size_t arena_used;
    tm_arena_chunk *chunks; /* overflow of the inline arena */
    tm_kv inline_attrs[TM_INLINE_ATTRS];
    char arena[TM_ARENA_INLINE];
};

#endif
