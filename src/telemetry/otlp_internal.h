/*
 * otlp_internal.h - what the OTLP encoders share (otlp.c: metrics, resource,
 * single KeyValues; otlp_spans.c: spans). Not part of the module's interface.
 */
#ifndef CHCP_TELEMETRY_OTLP_INTERNAL_H
#define CHCP_TELEMETRY_OTLP_INTERNAL_H

#include "telemetry/span_internal.h"

/* The Resource and InstrumentationScope messages, each with its tag (field 1
 * of ResourceSpans / ScopeSpans and of their metric twins). */
void tm_otlp_resource_scope(const tm_resource *res, chcp_buf *resource, chcp_buf *scope);
/* One KeyValue as field `field` of the enclosing message. */
void tm_otlp_encode_kv(chcp_buf *b, unsigned field, const tm_kv *kv);

#endif
