/*
 * pipeline.c - the telemetry pipeline: batch span processor, periodic metric
 * push, their shutdown flush, and the export thread they run on.
 *
 * The event loop only records. An ended span that must be exported goes into
 * a single-producer single-consumer ring (the loop writes, the export thread
 * reads; two atomics, no lock). The export thread runs its own libuv loop:
 * it takes up to a batch off the ring, encodes it (OTLP protobuf, gzip when
 * configured), gives the spans back to the tracer's pool and POSTs the bytes
 * with libcurl. The loop wakes it only when a full batch is waiting (one
 * uv_async_send per batch, not per span); partial batches go out on the
 * batch delay. Metrics are snapshotted and encoded on the loop once per push
 * interval (their collectors read loop state) and handed over as bytes.
 *
 * The batch processor follows the specification's defaults (queue 2048,
 * batch 512, 5 s delay, 30 s export timeout): never more than one span
 * export is in flight; a full queue drops spans and counts them (logged once
 * per episode). Nothing here ever blocks a request. Export failures are
 * logged once per outage, by the loop, which the export thread notifies.
 *
 * The queue is elastic unless its size was set explicitly
 * (OTEL_BSP_MAX_QUEUE_SIZE): 2048 spans while the collector is failing or
 * stalled (an export in flight for more than 200 ms, or none succeeded in
 * the last 200 ms), up to 16 times that while exports keep succeeding. The
 * bound is there to cap memory when spans cannot leave; when they do leave,
 * a moment without CPU for the export thread (two cores shared by the API's
 * clients, the loop, the exporter and a collector) must not cost spans.
 */
#include "telemetry/exporter.h"
#include "telemetry/otlp_internal.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define TM_DEFAULT_QUEUE 2048
#define TM_QUEUE_BURST 16
/* An export in flight this long, or no success for this long: stalled. */
#define TM_STALL_NS 200000000ull

struct tm_telemetry {
    uv_loop_t *loop; /* the daemon's */
    tm_config cfg;
    tm_export_target traces, metrics; /* deep copies of cfg's */
    char *service_name, *service_version, *instance_id;
    tm_registry *registry;
    tm_tracer *tracer;
    tm_resource resource;
    chcp_buf resource_pb, scope_pb;

    /* The span ring: written by the loop (tail), read by the worker (head).
     * Each index on its own cache line: one side's stores must not evict
     * the line the other side reads on every span. */
    tm_span **ring;
    size_t ring_mask;
    alignas(64) _Atomic size_t head;
    alignas(64) _Atomic size_t tail;
    alignas(64) atomic_bool wake_sent;

    /* Loop side. */
    uv_timer_t metric_timer;
    uv_async_t notify; /* worker -> loop: something to log, or the worker is done */
    tm_metric *spans_dropped_metric, *spans_exported_metric, *export_failures_metric;
    uint64_t dropped_full; /* ring full or shutting down (loop only) */
    bool full_logged;
    bool outage_logged;
    bool loop_shutting_down;
    void (*shutdown_done)(void *ud);
    void *shutdown_ud;
    unsigned loop_handles;

    /* Worker side. */
    uv_thread_t thread;
    bool thread_started;
    uv_loop_t wloop;
    uv_async_t wake; /* loop -> worker */
    uv_timer_t batch_timer;
    tm_exporter *exporter;
    tm_span **batch; /* max_batch pointers */
    bool span_export_in_flight, metric_export_in_flight;
    bool flushing;
    unsigned worker_handles;

    /* Shared. */
    uv_mutex_t lock; /* pending_metrics, last_error, failed_news, recovered_news */
    chcp_buf pending_metrics;
    bool has_pending_metrics;
    char last_error[256];
    bool failed_news, recovered_news;
    _Atomic uint64_t spans_exported, spans_failed, exports_failed, metric_exports;
    _Atomic uint64_t last_success_ns;   /* monotonic; 0 = never */
    _Atomic uint64_t inflight_since_ns; /* the span export in flight began; 0 = none */
    size_t queue_burst;                 /* the elastic limit (= max_queue when fixed) */
    atomic_bool healthy;
    atomic_bool shutting_down;
    atomic_bool worker_done;
    atomic_bool abandoned; /* freed without a shutdown: nobody to notify */
    uint64_t shutdown_deadline_ns;
};

/* ---- the export thread ------------------------------------------------------- */

static void pump(tm_telemetry *t, bool timer);
static void on_batch_timer(uv_timer_t *timer);

/* Failures and recoveries are logged by the loop (the log is its). */
static void note_outcome(tm_telemetry *t, bool ok, const char *what, const char *error)
{
    bool was_healthy = atomic_load(&t->healthy);
    if (ok) {
        atomic_store(&t->healthy, true);
        if (was_healthy)
            return;
        uv_mutex_lock(&t->lock);
        t->recovered_news = true;
        uv_mutex_unlock(&t->lock);
    } else {
        atomic_fetch_add(&t->exports_failed, 1);
        atomic_store(&t->healthy, false);
        uv_mutex_lock(&t->lock);
        snprintf(t->last_error, sizeof(t->last_error), "%s: %s", what, error ? error : "failed");
        t->failed_news = true;
        uv_mutex_unlock(&t->lock);
    }
    uv_async_send(&t->notify);
}

typedef struct span_batch {
    tm_telemetry *t;
    size_t n;
} span_batch;

static void on_batch_done(bool ok, const char *error, void *ud)
{
    span_batch *b = ud;
    tm_telemetry *t = b->t;
    atomic_store(&t->inflight_since_ns, 0);
    if (ok)
        atomic_store(&t->last_success_ns, time_mono_ns());
    atomic_fetch_add(ok ? &t->spans_exported : &t->spans_failed, b->n);
    free(b);
    t->span_export_in_flight = false;
    note_outcome(t, ok, "exporting spans", error);
    pump(t, false);
}

/* Up to a batch off the ring: encode, give the spans back, POST. */
static void export_batch(tm_telemetry *t)
{
    size_t head = atomic_load_explicit(&t->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&t->tail, memory_order_acquire);
    size_t n = tail - head < t->cfg.max_batch ? tail - head : t->cfg.max_batch;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        t->batch[i] = t->ring[(head + i) & t->ring_mask];
    chcp_buf body = CHCP_BUF_INIT;
    tm_otlp_encode_spans(&t->resource, t->batch, n, &body);
    tm_span_release_batch(t->batch, n);
    atomic_store_explicit(&t->head, head + n, memory_order_release);

    span_batch *b = xcalloc(1, sizeof(*b));
    b->t = t;
    b->n = n;
    t->span_export_in_flight = true;
    atomic_store(&t->inflight_since_ns, time_mono_ns());
    tm_exporter_post(t->exporter, &t->traces, &body, on_batch_done, b);
}

static void on_metrics_exported(bool ok, const char *error, void *ud)
{
    tm_telemetry *t = ud;
    t->metric_export_in_flight = false;
    if (ok)
        atomic_fetch_add(&t->metric_exports, 1);
    note_outcome(t, ok, "exporting metrics", error);
    pump(t, false);
}

static void push_metrics(tm_telemetry *t)
{
    uv_mutex_lock(&t->lock);
    chcp_buf body = t->pending_metrics;
    bool have = t->has_pending_metrics;
    t->pending_metrics = (chcp_buf)CHCP_BUF_INIT;
    t->has_pending_metrics = false;
    uv_mutex_unlock(&t->lock);
    if (!have)
        return;
    t->metric_export_in_flight = true;
    tm_exporter_post(t->exporter, &t->metrics, &body, on_metrics_exported, t);
}

static void worker_closed(uv_handle_t *h)
{
    tm_telemetry *t = h->data;
    t->worker_handles--;
}

static void exporter_closed(void *ud)
{
    tm_telemetry *t = ud;
    t->worker_handles--;
}

/* The flush is over (all sent, or the deadline passed): what is left is
 * lost and counted, and the thread's handles close so its loop ends. */
static void finish_worker(tm_telemetry *t)
{
    size_t head = atomic_load(&t->head), tail = atomic_load(&t->tail);
    for (size_t i = head; i < tail; i++)
        tm_span_release(t->ring[i & t->ring_mask]);
    atomic_fetch_add(&t->spans_failed, tail - head);
    atomic_store(&t->head, tail);
    uv_mutex_lock(&t->lock);
    buf_free(&t->pending_metrics);
    t->has_pending_metrics = false;
    uv_mutex_unlock(&t->lock);
    t->worker_handles = 3;
    uv_close((uv_handle_t *)&t->wake, worker_closed);
    uv_close((uv_handle_t *)&t->batch_timer, worker_closed);
    tm_exporter_close(t->exporter, exporter_closed, t);
}

/* Start what can start: the pending metric push, the next span batch (a full
 * one; any when the timer fired or a flush runs), or the end of a flush. */
static void pump(tm_telemetry *t, bool timer)
{
    if (t->worker_handles)
        return; /* closing */
    atomic_store(&t->wake_sent, false);
    bool flushing = atomic_load(&t->shutting_down);
    if (flushing && !t->flushing) {
        t->flushing = true; /* from now on, a tick checks the deadline */
        uv_timer_start(&t->batch_timer, on_batch_timer, 20, 20);
    }
    if (!t->metric_export_in_flight)
        push_metrics(t);
    if (!t->span_export_in_flight) {
        size_t queued = atomic_load(&t->tail) - atomic_load(&t->head);
        if (queued >= t->cfg.max_batch || (queued && (timer || flushing)))
            export_batch(t);
    }
    if (flushing) {
        uv_mutex_lock(&t->lock);
        bool metrics_waiting = t->has_pending_metrics;
        uv_mutex_unlock(&t->lock);
        bool idle = !t->span_export_in_flight && !t->metric_export_in_flight &&
                    atomic_load(&t->tail) == atomic_load(&t->head) && !metrics_waiting;
        if (idle || time_mono_ns() >= t->shutdown_deadline_ns)
            finish_worker(t);
    }
}

static void on_wake(uv_async_t *a)
{
    pump(a->data, false);
}

static void on_batch_timer(uv_timer_t *timer)
{
    pump(timer->data, true);
}

static void worker_main(void *arg)
{
    tm_telemetry *t = arg;
    pthread_setname_np(pthread_self(), "chcp-otlp"); /* top -H, /proc/<pid>/task */
    uv_run(&t->wloop, UV_RUN_DEFAULT);
    atomic_store(&t->worker_done, true);
    if (!atomic_load(&t->abandoned))
        uv_async_send(&t->notify);
}

/* ---- the loop side ------------------------------------------------------------- */

/* Spans are leaving: an export succeeded within TM_STALL_NS and the one in
 * flight (if any) is younger than that. */
static bool exports_flowing(tm_telemetry *t)
{
    uint64_t now = time_mono_ns();
    uint64_t ok = atomic_load(&t->last_success_ns), since = atomic_load(&t->inflight_since_ns);
    return ok && now - ok < TM_STALL_NS && (!since || now - since < TM_STALL_NS);
}

/* The tracer's sink: an ended span that must be exported. */
static void enqueue_span(tm_span *span, void *ud)
{
    tm_telemetry *t = ud;
    size_t tail = atomic_load_explicit(&t->tail, memory_order_relaxed);
    size_t queued = tail - atomic_load_explicit(&t->head, memory_order_acquire);
    bool full = queued >= t->cfg.max_queue && (queued >= t->queue_burst || !exports_flowing(t));
    if (full || t->loop_shutting_down) {
        tm_span_release(span);
        t->dropped_full++;
        if (!t->full_logged && !t->loop_shutting_down) {
            log_warn("telemetry queue full (%zu spans): dropping spans (logged once until it "
                     "drains)",
                     queued);
            t->full_logged = true;
        }
        return;
    }
    if (queued < t->cfg.max_queue / 2)
        t->full_logged = false;
    t->ring[tail & t->ring_mask] = span;
    atomic_store_explicit(&t->tail, tail + 1, memory_order_release);
    if (queued + 1 >= t->cfg.max_batch &&
        !atomic_load_explicit(&t->wake_sent, memory_order_relaxed) &&
        !atomic_exchange(&t->wake_sent, true))
        uv_async_send(&t->wake);
}

static void on_metric_timer(uv_timer_t *timer)
{
    tm_telemetry *t = timer->data;
    chcp_buf body = CHCP_BUF_INIT;
    tm_otlp_encode_metrics(&t->resource, t->registry, &body);
    uv_mutex_lock(&t->lock);
    buf_free(&t->pending_metrics); /* one not yet sent is superseded */
    t->pending_metrics = body;
    t->has_pending_metrics = true;
    uv_mutex_unlock(&t->lock);
    uv_async_send(&t->wake);
}

static void loop_closed(uv_handle_t *h)
{
    tm_telemetry *t = h->data;
    if (--t->loop_handles == 0 && t->shutdown_done)
        t->shutdown_done(t->shutdown_ud);
}

static void on_notify(uv_async_t *a)
{
    tm_telemetry *t = a->data;
    uv_mutex_lock(&t->lock);
    bool failed = t->failed_news, recovered = t->recovered_news;
    char error[sizeof(t->last_error)];
    memcpy(error, t->last_error, sizeof(error));
    t->failed_news = t->recovered_news = false;
    uv_mutex_unlock(&t->lock);
    if (failed && !t->outage_logged) {
        log_warn("telemetry export failing (logged once until it recovers): %s", error);
        t->outage_logged = true;
    }
    if (recovered && t->outage_logged && atomic_load(&t->healthy)) {
        log_info("telemetry export recovered");
        t->outage_logged = false;
    }
    if (atomic_load(&t->worker_done) && t->thread_started) {
        uv_thread_join(&t->thread);
        t->thread_started = false;
        t->loop_handles = 2;
        uv_close((uv_handle_t *)&t->notify, loop_closed);
        uv_close((uv_handle_t *)&t->metric_timer, loop_closed);
    }
}

/* The self-metrics are counted in atomics (the worker writes most of them);
 * the registry, which only the loop touches, takes them at collection. */
static void collect_self(tm_registry *r, void *ud)
{
    tm_telemetry *t = ud;
    tm_set(t->spans_dropped_metric, NULL,
           (double)(t->dropped_full + atomic_load(&t->spans_failed)));
    tm_set(t->spans_exported_metric, NULL, (double)atomic_load(&t->spans_exported));
    tm_set(t->export_failures_metric, NULL, (double)atomic_load(&t->exports_failed));
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
        c->max_queue = TM_DEFAULT_QUEUE;
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
    tm_registry_on_collect(t->registry, collect_self, t);
}

static void set_resource(tm_telemetry *t, const tm_config *cfg)
{
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
    /* The resource never changes after start: encode it once. */
    tm_otlp_resource_scope(&t->resource, &t->resource_pb, &t->scope_pb);
    t->resource.resource_pb = &t->resource_pb;
    t->resource.scope_pb = &t->scope_pb;
}

/* The ring, the export thread's loop and handles, and the thread itself. */
static void start_export(tm_telemetry *t, const tm_config *cfg)
{
    /* Elastic only when the size is the default (see the top of the file). */
    t->queue_burst = cfg->max_queue ? t->cfg.max_queue : TM_QUEUE_BURST * t->cfg.max_queue;
    size_t cap = 1;
    while (cap < t->queue_burst)
        cap <<= 1;
    t->ring = xcalloc(cap, sizeof(*t->ring));
    t->ring_mask = cap - 1;
    t->batch = xcalloc(t->cfg.max_batch, sizeof(*t->batch));
    target_copy(&t->traces, &cfg->traces, "http://localhost:4318/v1/traces");
    target_copy(&t->metrics, &cfg->metrics, "http://localhost:4318/v1/metrics");
    t->tracer = tm_tracer_new(cfg->sampling_rate, enqueue_span, t);
    tm_tracer_set_capture_errors(t->tracer, cfg->capture_errors);

    uv_loop_init(&t->wloop);
    tm_exporter_config ec = {.export_timeout_ms = t->cfg.export_timeout_ms};
    t->exporter = tm_exporter_new(&t->wloop, &ec);
    uv_async_init(&t->wloop, &t->wake, on_wake);
    t->wake.data = t;
    uv_timer_init(&t->wloop, &t->batch_timer);
    t->batch_timer.data = t;
    uv_timer_start(&t->batch_timer, on_batch_timer, t->cfg.batch_delay_ms, t->cfg.batch_delay_ms);

    uv_async_init(t->loop, &t->notify, on_notify);
    t->notify.data = t;
    uv_unref((uv_handle_t *)&t->notify);
    uv_timer_init(t->loop, &t->metric_timer);
    t->metric_timer.data = t;
    uv_timer_start(&t->metric_timer, on_metric_timer, t->cfg.metric_interval_ms,
                   t->cfg.metric_interval_ms);
    uv_unref((uv_handle_t *)&t->metric_timer);
    if (uv_thread_create(&t->thread, worker_main, t) != 0)
        abort(); /* only fails without memory or threads */
    t->thread_started = true;
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
    set_resource(t, cfg);
    uv_mutex_init(&t->lock);
    atomic_init(&t->head, 0);
    atomic_init(&t->tail, 0);
    atomic_init(&t->healthy, true);
    register_own_metrics(t);
    if (cfg->enabled)
        start_export(t, cfg);
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
    tm_telemetry *mt = (tm_telemetry *)t; /* the lock is not part of the value */
    memset(out, 0, sizeof(*out));
    out->enabled = t->tracer != NULL;
    out->healthy = atomic_load(&mt->healthy);
    out->spans_exported = atomic_load(&mt->spans_exported);
    out->spans_dropped = t->dropped_full + atomic_load(&mt->spans_failed);
    out->exports_failed = atomic_load(&mt->exports_failed);
    out->metric_exports = atomic_load(&mt->metric_exports);
    out->queue_len = atomic_load(&mt->tail) - atomic_load(&mt->head);
    uv_mutex_lock(&mt->lock);
    memcpy(out->last_error, t->last_error, sizeof(out->last_error));
    uv_mutex_unlock(&mt->lock);
}

/* ---- shutdown ------------------------------------------------------------- */

void tm_telemetry_shutdown(tm_telemetry *t, uint64_t deadline_ms, void (*done)(void *ud), void *ud)
{
    if (t->loop_shutting_down)
        return;
    t->loop_shutting_down = true;
    t->shutdown_done = done;
    t->shutdown_ud = ud;
    if (!t->thread_started) {
        if (done)
            done(ud);
        return;
    }
    uv_timer_stop(&t->metric_timer);
    /* One last metric push, then the worker flushes what is queued. */
    on_metric_timer(&t->metric_timer);
    t->shutdown_deadline_ns = time_mono_ns() + deadline_ms * 1000000ull;
    atomic_store(&t->shutting_down, true);
    uv_ref((uv_handle_t *)&t->notify); /* the loop waits for the worker */
    uv_async_send(&t->wake);
}

void tm_telemetry_free(tm_telemetry *t)
{
    if (!t)
        return;
    if (t->thread_started) { /* never shut down: stop the worker the hard way */
        atomic_store(&t->abandoned, true);
        atomic_store(&t->shutting_down, true);
        t->shutdown_deadline_ns = 0;
        uv_async_send(&t->wake);
        uv_thread_join(&t->thread);
    }
    if (t->ring) {
        uv_loop_close(&t->wloop);
        tm_exporter_free(t->exporter);
        target_free(&t->traces);
        target_free(&t->metrics);
    }
    free(t->ring);
    free(t->batch);
    tm_tracer_free(t->tracer);
    tm_registry_free(t->registry);
    buf_free(&t->resource_pb);
    buf_free(&t->scope_pb);
    buf_free(&t->pending_metrics);
    uv_mutex_destroy(&t->lock);
    free(t->service_name);
    free(t->service_version);
    free(t->instance_id);
    free(t);
}
