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

#include "core/core.h"

typedef enum tm_kind {
    TM_COUNTER,   /* monotonic cumulative sum -> Prometheus counter (_total) */
    TM_UPDOWN,    /* non-monotonic sum -> Prometheus gauge */
    TM_GAUGE,     /* last value -> Prometheus gauge */
    TM_HISTOGRAM, /* explicit-bucket cumulative histogram */
} tm_kind;

typedef struct tm_registry tm_registry;
typedef struct tm_metric tm_metric;

/* Semantic-convention bucket boundaries for durations in seconds. */
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
 * process.uptime and process.unix.file_descriptor.count, refreshed on collect. */
void tm_register_process_metrics(tm_registry *r);

#endif
