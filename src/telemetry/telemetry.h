/*
 * telemetry.h - chcp's own small OpenTelemetry: a metrics registry that is
 * exported two ways (Prometheus text format 0.0.4 and, later, OTLP/HTTP) and
 * process statistics.
 *
 * There is no OpenTelemetry SDK for C, so chcp carries the subset it needs.
 * Instruments are named with OpenTelemetry names and units
 * ("rpc.server.request.duration", "s"); the Prometheus exposition derives the
 * Prometheus names exactly as the OpenTelemetry Prometheus exporter does
 * (rpc_server_request_duration_seconds). All calls happen on the loop thread:
 * there is no locking.
 */
#ifndef CHCP_TELEMETRY_H
#define CHCP_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/core.h"

typedef enum tm_kind {
    TM_COUNTER,   /* monotonic cumulative sum -> Prometheus counter (_total) */
    TM_UPDOWN,    /* non-monotonic sum -> Prometheus gauge */
    TM_GAUGE,     /* last value -> Prometheus gauge */
    TM_HISTOGRAM, /* explicit-bucket cumulative histogram */
} tm_kind;

typedef struct tm_registry tm_registry;
typedef struct tm_metric tm_metric;
typedef struct tm_series tm_series;

/* Default bucket boundaries for durations in seconds: 50 µs to 60 s. */
extern const double tm_seconds_buckets[];
extern const size_t tm_seconds_buckets_len;

tm_registry *tm_registry_new(void);
void tm_registry_free(tm_registry *r);

/* Resource attributes (service.name, ...), exported as Prometheus target_info
 * and as the OTLP resource. Values are copied. */
void tm_registry_set_resource(tm_registry *r, const char *key, const char *value);

/*
 * Create an instrument. `label_keys` is NULL-terminated (OpenTelemetry
 * attribute names, e.g. "rpc.method"); `bounds` only for histograms (NULL =
 * tm_seconds_buckets). Names must be unique within the registry.
 */
tm_metric *tm_metric_new(tm_registry *r, tm_kind kind, const char *name, const char *unit,
                         const char *description, const char *const *label_keys,
                         const double *bounds, size_t n_bounds);

/* `label_values` matches label_keys in order and count (NULL when the
 * instrument has no labels). Values are copied on first use of a series. */
void tm_add(tm_metric *m, const char *const *label_values, double delta);     /* counter, updown */
void tm_set(tm_metric *m, const char *const *label_values, double value);     /* gauge, updown */
void tm_observe(tm_metric *m, const char *const *label_values, double value); /* histogram */

/*
 * The hot path: a series looked up once and kept. Updating it is a few
 * instructions, no hashing, no allocation (and, like everything here, no
 * lock: the loop is the only writer). A handle stays valid as long as its
 * metric, unless tm_metric_clear() is called on it.
 */
tm_series *tm_series_get(tm_metric *m, const char *const *label_values);
void tm_series_add(tm_series *s, double delta);     /* counter, updown */
void tm_series_observe(tm_series *s, double value); /* histogram */

/* Set a cumulative value read from elsewhere (a VMM's counters) and the time
 * its count started (unix ns; 0 = the registry's start), for OTLP. */
void tm_set_since(tm_metric *m, const char *const *label_values, double value, uint64_t start_ns);
/* Forget every series of an instrument (values that are rebuilt on each
 * collection, whose label sets come and go: per-VM metrics). */
void tm_metric_clear(tm_metric *m);

/* Read back a series (tests, health): value of a sum/gauge, or the count of
 * a histogram. Returns false if the series does not exist. */
bool tm_read(const tm_metric *m, const char *const *label_values, double *out);

/* Callbacks run before every collection (scrape or export), to refresh
 * gauges such as process memory. */
typedef void (*tm_collect_fn)(tm_registry *r, void *ud);
void tm_registry_on_collect(tm_registry *r, tm_collect_fn fn, void *ud);

/* The Prometheus name an instrument is exposed under (for docs and tests). */
const char *tm_metric_prometheus_name(const tm_metric *m);

#define TM_PROMETHEUS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Render every instrument plus target_info in text format 0.0.4. Runs the
 * collect callbacks first. */
void tm_prometheus_render(tm_registry *r, chcp_buf *out);

/* ---- process statistics ----------------------------------------------- */

typedef struct tm_process_stats {
    double cpu_user_seconds;
    double cpu_system_seconds;
    uint64_t rss_bytes;
    uint64_t virtual_bytes;
    double uptime_seconds;
    double load1, load5, load15;
    unsigned open_fds;
} tm_process_stats;

int tm_process_stats_read(tm_process_stats *s, chcp_error **err);

/* Register process.cpu.time, process.memory.usage, process.memory.virtual,
 * process.uptime and process.open_fds, refreshed on collect. */
void tm_register_process_metrics(tm_registry *r);

/* ---- tracing ------------------------------------------------------------ */

typedef enum tm_span_kind {
    TM_SPAN_INTERNAL = 1,
    TM_SPAN_SERVER = 2,
    TM_SPAN_CLIENT = 3,
} tm_span_kind;

typedef enum tm_status_code {
    TM_STATUS_UNSET = 0,
    TM_STATUS_OK = 1,
    TM_STATUS_ERROR = 2,
} tm_status_code;

#define TM_TRACESTATE_MAX 512

/* W3C trace context of a span (ours or a remote parent's). */
typedef struct tm_span_context {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; /* bit 0: sampled */
    bool remote;
    const char *tracestate; /* NULL when none */
} tm_span_context;

/* Parse a `traceparent` (and optional `tracestate`) header. Returns false for
 * anything malformed (the caller then starts a new root trace, as the spec
 * requires). out->tracestate borrows `tracestate` (tm_span_start copies it);
 * one of TM_TRACESTATE_MAX bytes or more is dropped. */
bool tm_traceparent_parse(const char *traceparent, const char *tracestate, tm_span_context *out);
/* "00-<32 hex>-<16 hex>-<2 hex>" plus NUL. */
void tm_traceparent_format(const tm_span_context *ctx, char out[56]);
void tm_hex(const uint8_t *bytes, size_t n, char *out); /* 2n chars + NUL */

typedef struct tm_span tm_span;
typedef struct tm_tracer tm_tracer;
/* Constant attributes encoded once (OTLP KeyValues), shared by many spans. */
typedef struct tm_attr_block tm_attr_block;

/* Where ended spans that must be exported go (the batch processor). Takes
 * ownership of the span: it must call tm_span_release() when done. */
typedef void (*tm_span_sink_fn)(tm_span *span, void *ud);

/*
 * A tracer samples with ParentBased(TraceIdRatioBased(ratio)). Every span is
 * recorded; at the end of a local root, its spans are exported when the trace
 * was sampled OR any of its spans ended with status ERROR (errors are always
 * captured - a documented deviation from the spec's "exporters SHOULD NOT
 * receive unsampled spans"). A NULL tracer (telemetry off) makes every call
 * below a cheap no-op returning NULL.
 */
tm_tracer *tm_tracer_new(double sampling_ratio, tm_span_sink_fn sink, void *sink_ud);
/* Whether a span ending with status ERROR makes its trace exported (default
 * true; false = head sampling and tm_span_capture() only). */
void tm_tracer_set_capture_errors(tm_tracer *t, bool on);
void tm_tracer_free(tm_tracer *t);
bool tm_tracer_should_sample(double ratio, const uint8_t trace_id[16]);

/*
 * parent: remote context (from traceparent) or NULL for a new trace. The
 * name is not copied: it must outlive the span until it is exported (a
 * literal, or a string the caller keeps as long as the telemetry runs).
 * tm_span_start_child returns NULL when the parent already ended.
 */
tm_span *tm_span_start(tm_tracer *t, const char *name, tm_span_kind kind,
                       const tm_span_context *parent);
tm_span *tm_span_start_child(tm_span *parent, const char *name, tm_span_kind kind);
/* The same with the start time given (unix ns), and tm_span_end_at: for a
 * caller that has the time already (tm_unix_ns_from_mono of a reading it
 * took anyway), one clock read fewer each. */
tm_span *tm_span_start_at(tm_tracer *t, const char *name, tm_span_kind kind,
                          const tm_span_context *parent, uint64_t start_unix_ns);
void tm_span_end_at(tm_span *s, uint64_t end_unix_ns);
uint64_t tm_unix_ns_from_mono(uint64_t mono_ns);
/* Attribute and event keys must be string literals (or otherwise outlive the
 * span): they are not copied. Values are copied (into the span's arena). */
void tm_span_set_str(tm_span *s, const char *key, const char *value);
/* A value that outlives the span (a literal, a descriptor's name): not copied. */
void tm_span_set_static_str(tm_span *s, const char *key, const char *value);
void tm_span_set_int(tm_span *s, const char *key, int64_t value);
void tm_span_set_double(tm_span *s, const char *key, double value);
void tm_span_set_bool(tm_span *s, const char *key, bool value);
/* The same for a key the span does not have yet (not looked for: cheaper on
 * the hot path). The string is `len` bytes, copied. */
void tm_span_add_str(tm_span *s, const char *key, const char *value, size_t len);
void tm_span_add_static_str(tm_span *s, const char *key, const char *value);
void tm_span_add_int(tm_span *s, const char *key, int64_t value);
/* kv: NULL-terminated key/value string pairs (may be NULL). */
void tm_span_add_event(tm_span *s, const char *name, const char *const *kv);
/* kv: NULL-terminated key/value string pairs, encoded once. A block must
 * outlive every span it is added to until the span is exported; a span takes
 * at most two, and its other attributes must not repeat their keys. */
tm_attr_block *tm_attr_block_new(const char *const *kv);
void tm_attr_block_free(tm_attr_block *b);
void tm_span_add_block(tm_span *s, const tm_attr_block *b);
void tm_span_set_status(tm_span *s, tm_status_code code, const char *message);
/* Export this span's whole local trace whatever the sampler decided (a call
 * that did not end OK). Does not change the sampled flag propagated on. */
void tm_span_capture(tm_span *s);
/* End the span. After this the caller must not touch it. */
void tm_span_end(tm_span *s);
const tm_span_context *tm_span_context_get(const tm_span *s);
/* Sinks release exported spans with this (from any thread); a batch of spans
 * of one tracer in one go (one atomic operation). */
void tm_span_release(tm_span *s);
void tm_span_release_batch(tm_span *const *spans, size_t n);

/* ---- OTLP encoding (protobuf, ExportTraceServiceRequest/ExportMetrics...) */

typedef struct tm_resource {
    const tm_registry *registry; /* its resource attributes are used */
    const char *scope_name;
    const char *scope_version;
    /* Optional: the Resource and the scope, encoded once with their tags
     * (NULL: encoded on every call). */
    const chcp_buf *resource_pb, *scope_pb;
} tm_resource;

void tm_otlp_encode_spans(const tm_resource *res, tm_span *const *spans, size_t n, chcp_buf *out);
/* Cumulative snapshot of every instrument; runs collect callbacks. */
void tm_otlp_encode_metrics(const tm_resource *res, tm_registry *r, chcp_buf *out);

/* ---- the telemetry pipeline ------------------------------------------- */

/* Where and how one signal is exported over OTLP/HTTP. */
typedef struct tm_export_target {
    const char *url;            /* full URL: http://host:4318/v1/traces */
    const char *const *headers; /* NULL-terminated name/value pairs, or NULL */
    bool gzip;                  /* Content-Encoding: gzip */
    uint64_t timeout_ms;        /* one attempt; 0 = 10000 */
} tm_export_target;

typedef struct tm_config {
    bool enabled; /* false: nothing is exported, tracer is NULL */
    tm_export_target traces, metrics;
    double sampling_rate; /* root sampling ratio, 0..1 */
    bool capture_errors;  /* spans ending in ERROR make their trace exported */
    const char *service_name;
    const char *service_version;
    const char *instance_id; /* default: a random UUID */
    /* More resource attributes (NULL-terminated key/value pairs, or NULL);
     * they may replace host.name and service.instance.id, never
     * service.name/version (above) nor telemetry.sdk.*. */
    const char *const *resource;
    uint64_t metric_interval_ms; /* OTLP metric push (default 60000; 0 = default) */
    size_t max_queue;            /* spans; 0 = 2048, elastic up to 16x while exports succeed */
    size_t max_batch;            /* spans per export (default 512) */
    uint64_t batch_delay_ms;     /* default 5000 */
    uint64_t export_timeout_ms;  /* default 30000 */
} tm_config;

typedef struct tm_telemetry tm_telemetry;

typedef struct tm_status {
    bool enabled;
    bool healthy; /* last export succeeded (or nothing exported yet) */
    uint64_t spans_exported;
    uint64_t spans_dropped; /* queue full, or export failed for good */
    uint64_t exports_failed;
    uint64_t metric_exports;
    size_t queue_len;
    char last_error[256]; /* "" when none */
} tm_status;

/* Always returns a pipeline: with enabled=false it only holds the registry
 * (metrics are still served by Prometheus scrape and health). */
tm_telemetry *tm_telemetry_new(uv_loop_t *loop, const tm_config *cfg);
tm_registry *tm_telemetry_registry(tm_telemetry *t);
tm_tracer *tm_telemetry_tracer(tm_telemetry *t); /* NULL when disabled */
void tm_telemetry_status(const tm_telemetry *t, tm_status *out);
/* Export what is queued (spans, and one last metric push), wait for it up to
 * `deadline_ms`, then close every handle; `done` runs afterwards. */
void tm_telemetry_shutdown(tm_telemetry *t, uint64_t deadline_ms, void (*done)(void *ud), void *ud);
void tm_telemetry_free(tm_telemetry *t);

#endif
