/*
 * exporter.h - OTLP/HTTP transport used by the span batcher and the metric
 * pusher (internal to the telemetry module).
 */
#ifndef CHCP_TELEMETRY_EXPORTER_H
#define CHCP_TELEMETRY_EXPORTER_H

#include "telemetry/telemetry.h"

typedef struct tm_exporter tm_exporter;

typedef struct tm_exporter_config {
    uint64_t export_timeout_ms;  /* all attempts of one payload (default 30 s) */
    uint64_t initial_backoff_ms; /* default 1 s, doubled per attempt, with jitter */
    uint64_t max_backoff_ms;     /* default 5 s */
} tm_exporter_config;

typedef void (*tm_export_done_fn)(bool ok, const char *error, void *ud);

tm_exporter *tm_exporter_new(uv_loop_t *loop, const tm_exporter_config *cfg);
/* POST `body` (taken over) as application/x-protobuf to `to` (its URL,
 * headers, gzip and attempt timeout; copied); `done` is called once. */
void tm_exporter_post(tm_exporter *ex, const tm_export_target *to, chcp_buf *body,
                      tm_export_done_fn done, void *ud);
size_t tm_exporter_in_flight(const tm_exporter *ex);
/* Abort everything in flight (their done callbacks report failure) and close
 * the libuv handles; `closed` runs when it is safe to tm_exporter_free(). */
void tm_exporter_close(tm_exporter *ex, void (*closed)(void *ud), void *ud);
void tm_exporter_free(tm_exporter *ex);

#endif
