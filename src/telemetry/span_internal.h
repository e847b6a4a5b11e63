/*
 * span_internal.h - the span record shared by the tracer (trace.c) and the
 * OTLP encoder (otlp.c). Not part of the module's interface.
 */
#ifndef CHCP_TELEMETRY_SPAN_INTERNAL_H
#define CHCP_TELEMETRY_SPAN_INTERNAL_H

#include "telemetry/telemetry.h"

/* Span limits from the specification ("Span Limits"). */
#define TM_MAX_ATTRIBUTES 128
#define TM_MAX_EVENTS 128

typedef enum tm_value_type { TM_STR, TM_INT, TM_DOUBLE, TM_BOOL } tm_value_type;

typedef struct tm_kv {
    const char *key; /* not owned: attribute keys are string literals */
    tm_value_type type;
    bool borrowed; /* TM_STR value not owned (a literal): not freed */
    union {
        char *s;
        int64_t i;
        double d;
        bool b;
    } v;
} tm_kv;

typedef struct tm_event {
    uint64_t time_ns;
    char *name;
    tm_kv *attrs;
    size_t n_attrs;
} tm_event;

struct tm_span {
    tm_tracer *tracer;
    struct tm_span *root; /* local root of this trace (itself for a root) */
    tm_span_context ctx;
    uint8_t parent_span_id[8];
    bool has_parent;
    bool parent_remote; /* the parent came from another process */
    char *name;         /* name_buf, or malloc'ed when longer */
    char name_buf[64];
    tm_span_kind kind;
    uint64_t start_ns, end_ns; /* unix time */
    tm_kv *attrs;              /* inline_attrs until more are needed */
    size_t n_attrs, cap_attrs;
    tm_kv inline_attrs[10];
    uint32_t dropped_attrs;
    tm_event *events;
    size_t n_events, cap_events;
    uint32_t dropped_events;
    tm_status_code status;
    char *status_message;
    bool ended;

    /* Root only: how many spans of the trace are still open (itself
     * included), whether the trace is captured, the ended spans held back until
     * the export decision, and the decision once made. */
    unsigned open_spans;
    bool captured; /* exported whatever the sampler said */
    struct tm_span **held;
    size_t n_held, cap_held;
    enum { TM_UNDECIDED, TM_EXPORT, TM_DROP } decision;
    unsigned refs; /* root: the spans that point at it, plus itself */
};

#endif
