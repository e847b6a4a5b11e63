/*
 * pipeline.c - the telemetry pipeline: batch span processor, periodic metric
 * push, and their shutdown flush.
 *
 * The batch processor follows the specification's defaults (queue 2048,
 * batch 512, 5 s delay, 30 s export timeout): ended spans go into a bounded
 * queue; a batch is exported when it is full or when the delay passes; never
 * more than one export is in flight; a full queue drops spans and counts them.
 * Nothing here ever blocks a request: the worst a dead collector can do is
 * make the queue drop. Failures are logged once per outage, not per span.
 */
#include "telemetry/exporter.h"
#include "telemetry/span_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct tm_telemetry {
    uv_loop_t *loop;
    tm_config cfg;
    tm_export_target traces, metrics; /* deep copies of cfg's */
    char *service_name, *service_version, *instance_id;
    tm_registry *registry;
    tm_tracer *tracer;
    tm_exporter *exporter;
    tm_resource resource;

    tm_span **queue;
    size_t queue_len;
    bool span_export_in_flight;
    bool metric_export_in_flight;
    uv_timer_t batch_timer;
    uv_timer_t metric_timer;
    uv_timer_t shutdown_timer;

    tm_metric *spans_dropped_metric;
    tm_metric *spans_exported_metric;
    tm_metric *export_failures_metric;
    tm_status status;
    char last_error[512];
    bool outage_logged;

    bool shutting_down;
    uint64_t shutdown_deadline_ns;
    unsigned open_handles;
    void (*shutdown_done)(void *ud);
    void *shutdown_ud;
};

static void export_batch(tm_telemetry *t);

/* ---- outcome bookkeeping -------------------------------------------------- */

static void note_failure(tm_telemetry *t, const char *what, const char *error)
{
    t->status.exports_failed++;
    t->status.healthy = false;
    snprintf(t->last_error, sizeof(t->last_error), "%s: %s", what, error ? error : "failed");
    tm_add(t->export_failures_metric, NULL, 1);
    if (!t->outage_logged) {
        log_warn("telemetry export failing (logged once until it recovers): %s", t->last_error);
        t->outage_logged = true;
    }
}

static void note_success(tm_telemetry *t)
{
    if (t->outage_logged)
        log_info("telemetry export recovered");
    t->outage_logged = false;
    t->status.healthy = true;
}

static void drop_spans(tm_telemetry *t, size_t n)
{
    t->status.spans_dropped += n;
    tm_add(t->spans_dropped_metric, NULL, (double)n);
}

/* ---- spans ---------------------------------------------------------------- */

static void on_spans_exported(bool ok, const char *error, void *ud)
{
    tm_telemetry *t = ud;
    t->span_export_in_flight = false;
    if (ok)
        note_success(t);
    else
        note_failure(t, "exporting spans", error);
    /* More than a batch waiting (or a flush in progress): go on at once. */
    if (t->queue_len >= t->cfg.max_batch || (t->shutting_down && t->queue_len))
        export_batch(t);
}

typedef struct span_batch {
    tm_telemetry *t;
    size_t n;
} span_batch;

static void on_batch_done(bool ok, const char *error, void *ud)
{
    span_batch *b = ud;
    tm_telemetry *t = b->t;
    if (ok) {
        t->status.spans_exported += b->n;
        tm_add(t->spans_exported_metric, NULL, (double)b->n);
    } else {
        drop_spans(t, b->n);
    }
    free(b);
    on_spans_exported(ok, error, t);
}

static void export_batch(tm_telemetry *t)
{
    if (t->span_export_in_flight || t->queue_len == 0 || !t->exporter)
        return;
    size_t n = t->queue_len < t->cfg.max_batch ? t->queue_len : t->cfg.max_batch;
    chcp_buf body = CHCP_BUF_INIT;
    tm_otlp_encode_spans(&t->resource, t->queue, n, &body);
    for (size_t i = 0; i < n; i++)
        tm_span_release(t->queue[i]);
    memmove(t->queue, t->queue + n, (t->queue_len - n) * sizeof(*t->queue));
    t->queue_len -= n;
    t->status.queue_len = t->queue_len;

    span_batch *b = xcalloc(1, sizeof(*b));
    b->t = t;
    b->n = n;
    t->span_export_in_flight = true;
    tm_exporter_post(t->exporter, &t->traces, &body, on_batch_done, b);
}

static void on_batch_timer(uv_timer_t *timer)
{
    export_batch(timer->data);
}

/* The tracer's sink: an ended span that must be exported. */
static void enqueue_span(tm_span *span, void *ud)
{
    tm_telemetry *t = ud;
    if (t->queue_len >= t->cfg.max_queue || t->shutting_down) {
        tm_span_release(span);
        drop_spans(t, 1);
        return;
    }
    t->queue[t->queue_len++] = span;
    t->status.queue_len = t->queue_len;
    if (t->queue_len >= t->cfg.max_batch)
        export_batch(t);
}

/* ---- metrics -------------------------------------------------------------- */

static void on_metrics_exported(bool ok, const char *error, void *ud)
{
    tm_telemetry *t = ud;
    t->metric_export_in_flight = false;
    if (ok) {
        t->status.metric_exports++;
        note_success(t);
    } else {
        note_failure(t, "exporting metrics", error);
    }
}

static void push_metrics(tm_telemetry *t)
{
    if (t->metric_export_in_flight || !t->exporter)
        return;
    chcp_buf body = CHCP_BUF_INIT;
    tm_otlp_encode_metrics(&t->resource, t->registry, &body);
    t->metric_export_in_flight = true;
    tm_exporter_post(t->exporter, &t->metrics, &body, on_metrics_exported, t);
}

static void on_metric_timer(uv_timer_t *timer)
{
    push_metrics(timer->data);
}

/* ---- setup ---------------------------------------------------------------- */

static char *random_uuid(void)
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        memset(b, 0x42, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    return xasprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                     b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                     b[13], b[14], b[15]);
}

static char **strv_copy(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **out = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static void target_copy(tm_export_target *dst, const tm_export_target *src, const char *fallback)
{
    *dst = *src;
    dst->url = xstrdup(src->url && *src->url ? src->url : fallback);
    dst->headers = (const char *const *)strv_copy(src->headers);
}

static void target_free(tm_export_target *t)
{
    free((char *)t->url);
    strv_free((char **)t->headers);
}

static void set_defaults(tm_config *c)
{
    if (!c->metric_interval_ms)
        c->metric_interval_ms = 60000;
    if (!c->max_queue)
        c->max_queue = 2048;
    if (!c->max_batch || c->max_batch > c->max_queue)
        c->max_batch = c->max_queue < 512 ? c->max_queue : 512;
    if (!c->batch_delay_ms)
        c->batch_delay_ms = 5000;
    if (!c->export_timeout_ms)
        c->export_timeout_ms = 30000;
}

static void register_own_metrics(tm_telemetry *t)
{
    t->spans_dropped_metric = tm_metric_new(
        t->registry, TM_COUNTER, "chcp.telemetry.spans.dropped", "{span}",
        "Spans dropped because the export queue was full or the export failed.", NULL, NULL, 0);
    t->spans_exported_metric =
        tm_metric_new(t->registry, TM_COUNTER, "chcp.telemetry.spans.exported", "{span}",
                      "Spans exported over OTLP.", NULL, NULL, 0);
    t->export_failures_metric =
        tm_metric_new(t->registry, TM_COUNTER, "chcp.telemetry.export.failures", "{export}",
                      "OTLP exports that failed for good (after retries).", NULL, NULL, 0);
    /* Series at zero from the start, so rate() works and alerts see them. */
    tm_add(t->spans_dropped_metric, NULL, 0);
    tm_add(t->spans_exported_metric, NULL, 0);
    tm_add(t->export_failures_metric, NULL, 0);
}

tm_telemetry *tm_telemetry_new(uv_loop_t *loop, const tm_config *cfg)
{
    tm_telemetry *t = xcalloc(1, sizeof(*t));
    t->loop = loop;
    t->cfg = *cfg;
    set_defaults(&t->cfg);
    /* Strings are copied below; cfg's pointers are not kept. */
    t->cfg.service_name = t->cfg.service_version = t->cfg.instance_id = NULL;
    t->cfg.resource = NULL;
    memset(&t->cfg.traces, 0, sizeof(t->cfg.traces));
    memset(&t->cfg.metrics, 0, sizeof(t->cfg.metrics));
    t->service_name = xstrdup(cfg->service_name && *cfg->service_name ? cfg->service_name : "chcp");
    t->service_version = xstrdup(
        cfg->service_version && *cfg->service_version ? cfg->service_version : CHCP_VERSION);
    t->instance_id =
        cfg->instance_id && *cfg->instance_id ? xstrdup(cfg->instance_id) : random_uuid();
    t->registry = tm_registry_new();
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    tm_registry_set_resource(t->registry, "service.name", t->service_name);
    tm_registry_set_resource(t->registry, "service.version", t->service_version);
    tm_registry_set_resource(t->registry, "service.instance.id", t->instance_id);
    tm_registry_set_resource(t->registry, "host.name", host);
    for (const char *const *kv = cfg->resource; kv && kv[0] && kv[1]; kv += 2) {
        bool reserved = strcmp(kv[0], "service.name") == 0 ||
                        strcmp(kv[0], "service.version") == 0 ||
                        strncmp(kv[0], "telemetry.sdk.", 14) == 0;
        if (!reserved)
            tm_registry_set_resource(t->registry, kv[0], kv[1]);
    }
    tm_registry_set_resource(t->registry, "telemetry.sdk.name", "chcp");
    tm_registry_set_resource(t->registry, "telemetry.sdk.language", "c");
    tm_registry_set_resource(t->registry, "telemetry.sdk.version", CHCP_VERSION);
    t->resource.registry = t->registry;
    t->resource.scope_name = "chcp";
    t->resource.scope_version = CHCP_VERSION;
    register_own_metrics(t);
    t->status.enabled = cfg->enabled;
    t->status.healthy = true;
    t->status.last_error = t->last_error;
    if (!cfg->enabled)
        return t;

    target_copy(&t->traces, &cfg->traces, "http://localhost:4318/v1/traces");
    target_copy(&t->metrics, &cfg->metrics, "http://localhost:4318/v1/metrics");
    tm_exporter_config ec = {.export_timeout_ms = t->cfg.export_timeout_ms};
    t->exporter = tm_exporter_new(loop, &ec);
    t->tracer = tm_tracer_new(cfg->sampling_rate, enqueue_span, t);
    tm_tracer_set_capture_errors(t->tracer, cfg->capture_errors);
    t->queue = xcalloc(t->cfg.max_queue, sizeof(*t->queue));

    uv_timer_init(loop, &t->batch_timer);
    t->batch_timer.data = t;
    uv_timer_start(&t->batch_timer, on_batch_timer, t->cfg.batch_delay_ms, t->cfg.batch_delay_ms);
    uv_timer_init(loop, &t->metric_timer);
    t->metric_timer.data = t;
    uv_timer_start(&t->metric_timer, on_metric_timer, t->cfg.metric_interval_ms,
                   t->cfg.metric_interval_ms);
    uv_unref((uv_handle_t *)&t->batch_timer);
    uv_unref((uv_handle_t *)&t->metric_timer);
    return t;
}

tm_registry *tm_telemetry_registry(tm_telemetry *t)
{
    return t->registry;
}

tm_tracer *tm_telemetry_tracer(tm_telemetry *t)
{
    return t ? t->tracer : NULL;
}

void tm_telemetry_status(const tm_telemetry *t, tm_status *out)
{
    *out = t->status;
    out->last_error = t->last_error;
}

/* ---- shutdown ------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
    tm_telemetry *t = h->data;
    if (--t->open_handles == 0 && t->shutdown_done)
        t->shutdown_done(t->shutdown_ud);
}

static void exporter_closed(void *ud)
{
    tm_telemetry *t = ud;
    if (--t->open_handles == 0 && t->shutdown_done)
        t->shutdown_done(t->shutdown_ud);
}

static void finish_shutdown(tm_telemetry *t)
{
    uv_timer_stop(&t->shutdown_timer);
    /* Spans still queued after the deadline are lost: count them. */
    for (size_t i = 0; i < t->queue_len; i++)
        tm_span_release(t->queue[i]);
    drop_spans(t, t->queue_len);
    t->queue_len = 0;
    t->open_handles = 5; /* 3 timers, the exporter, and this call's own guard */
    uv_close((uv_handle_t *)&t->batch_timer, handle_closed);
    uv_close((uv_handle_t *)&t->metric_timer, handle_closed);
    uv_close((uv_handle_t *)&t->shutdown_timer, handle_closed);
    tm_exporter_close(t->exporter, exporter_closed, t);
    exporter_closed(t);
}

static void on_shutdown_tick(uv_timer_t *timer)
{
    tm_telemetry *t = timer->data;
    bool idle = !t->span_export_in_flight && !t->metric_export_in_flight && t->queue_len == 0;
    if (idle || time_mono_ns() >= t->shutdown_deadline_ns)
        finish_shutdown(t);
}

void tm_telemetry_shutdown(tm_telemetry *t, uint64_t deadline_ms, void (*done)(void *ud), void *ud)
{
    t->shutdown_done = done;
    t->shutdown_ud = ud;
    if (!t->exporter || t->shutting_down) {
        if (!t->shutting_down && done)
            done(ud);
        t->shutting_down = true;
        return;
    }
    t->shutting_down = true;
    t->shutdown_deadline_ns = time_mono_ns() + deadline_ms * 1000000ull;
    uv_timer_stop(&t->batch_timer);
    uv_timer_stop(&t->metric_timer);
    export_batch(t);
    push_metrics(t);
    uv_timer_init(t->loop, &t->shutdown_timer);
    t->shutdown_timer.data = t;
    t->batch_timer.data = t;
    t->metric_timer.data = t;
    uv_timer_start(&t->shutdown_timer, on_shutdown_tick, 0, 20);
}

void tm_telemetry_free(tm_telemetry *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->queue_len; i++)
        tm_span_release(t->queue[i]);
    free(t->queue);
    tm_exporter_free(t->exporter);
    tm_tracer_free(t->tracer);
    tm_registry_free(t->registry);
    if (t->traces.url) {
        target_free(&t->traces);
        target_free(&t->metrics);
    }
    free(t->service_name);
    free(t->service_version);
    free(t->instance_id);
    free(t);
}
