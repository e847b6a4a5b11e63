/*
 * metrics.c - the metrics registry: instruments, their labelled series, and
 * cumulative aggregation.
 *
 * One registry feeds both exporters, so a value scraped by Prometheus and the
 * same value pushed over OTLP can never disagree. Series are found by hashing
 * the label values; the common case (a handful of label values per RPC) costs
 * one hash and one short chain walk.
 */
#include "telemetry/metrics_internal.h"

#include <math.h>
#include <string.h>

const double tm_seconds_buckets[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                     0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1,
                                     2.5,     5,      10,      30,     60};
const size_t tm_seconds_buckets_len = ARRAY_SIZE(tm_seconds_buckets);

tm_registry *tm_registry_new(void)
{
    tm_registry *r = xcalloc(1, sizeof(*r));
    r->start_ns = time_real_ns();
    return r;
}

static void series_free(tm_series *s, size_t n_labels)
{
    for (size_t i = 0; i < n_labels; i++)
        free(s->label_values[i]);
    free(s->label_values);
    free(s->buckets);
    free(s);
}

void tm_metric_clear(tm_metric *m)
{
    if (!m)
        return;
    for (size_t b = 0; b < TM_SERIES_BUCKETS; b++) {
        tm_series *s = m->table[b];
        while (s) {
            tm_series *next = s->hash_next;
            series_free(s, m->n_labels);
            s = next;
        }
        m->table[b] = NULL;
    }
    m->series = NULL;
    m->n_series = 0;
}

static void metric_free(tm_metric *m)
{
    tm_metric_clear(m);
    for (size_t i = 0; i < m->n_labels; i++) {
        free(m->label_keys[i]);
        free(m->prom_label_keys[i]);
    }
    free(m->label_keys);
    free(m->prom_label_keys);
    free(m->bounds);
    free(m->name);
    free(m->unit);
    free(m->description);
    free(m->prom_name);
    free(m);
}

void tm_registry_free(tm_registry *r)
{
    if (!r)
        return;
    tm_metric *m = r->metrics;
    while (m) {
        tm_metric *next = m->next;
        metric_free(m);
        m = next;
    }
    for (size_t i = 0; i < r->n_resource; i++) {
        free(r->resource[i].key);
        free(r->resource[i].value);
    }
    free(r->resource);
    free(r->collectors);
    free(r);
}

void tm_registry_set_resource(tm_registry *r, const char *key, const char *value)
{
    for (size_t i = 0; i < r->n_resource; i++) {
        if (strcmp(r->resource[i].key, key) == 0) {
            free(r->resource[i].value);
            r->resource[i].value = xstrdup(value);
            return;
        }
    }
    r->resource = xrealloc(r->resource, (r->n_resource + 1) * sizeof(*r->resource));
    r->resource[r->n_resource].key = xstrdup(key);
    r->resource[r->n_resource].value = xstrdup(value);
    r->n_resource++;
}

void tm_registry_on_collect(tm_registry *r, tm_collect_fn fn, void *ud)
{
    r->collectors = xrealloc(r->collectors, (r->n_collectors + 1) * sizeof(*r->collectors));
    r->collectors[r->n_collectors].fn = fn;
    r->collectors[r->n_collectors].ud = ud;
    r->n_collectors++;
}

void tm_registry_collect(tm_registry *r)
{
    for (size_t i = 0; i < r->n_collectors; i++)
        r->collectors[i].fn(r, r->collectors[i].ud);
}

tm_metric *tm_metric_new(tm_registry *r, tm_kind kind, const char *name, const char *unit,
                         const char *description, const char *const *label_keys,
                         const double *bounds, size_t n_bounds)
{
    tm_metric *m = xcalloc(1, sizeof(*m));
    m->kind = kind;
    m->name = xstrdup(name);
    m->unit = xstrdup(unit ? unit : "");
    m->description = xstrdup(description ? description : "");
    while (label_keys && label_keys[m->n_labels] && m->n_labels < TM_MAX_LABELS)
        m->n_labels++;
    m->label_keys = xcalloc(m->n_labels + 1, sizeof(char *));
    m->prom_label_keys = xcalloc(m->n_labels + 1, sizeof(char *));
    for (size_t i = 0; label_keys && i < m->n_labels; i++) {
        m->label_keys[i] = xstrdup(label_keys[i]);
        m->prom_label_keys[i] = tm_prometheus_sanitize(label_keys[i]);
    }
    if (kind == TM_HISTOGRAM) {
        if (!bounds) {
            bounds = tm_seconds_buckets;
            n_bounds = tm_seconds_buckets_len;
        }
        m->bounds = xcalloc(n_bounds, sizeof(double));
        memcpy(m->bounds, bounds, n_bounds * sizeof(double));
        m->n_bounds = n_bounds;
    }
    m->prom_name = tm_prometheus_metric_name(m);
    m->start_ns = r->start_ns;

    /* Keep registration order: exposition order is then stable and readable. */
    tm_metric **tail = &r->metrics;
    while (*tail)
        tail = &(*tail)->next;
    *tail = m;
    return m;
}

const char *tm_metric_prometheus_name(const tm_metric *m)
{
    return m->prom_name;
}

/* The label values of a call, one per label key: the caller's array ends at
 * its first NULL (or is NULL); missing values are "". */
static void normalize(const tm_metric *m, const char *const *in, const char **out)
{
    size_t i = 0;
    for (; in && i < m->n_labels && in[i]; i++)
        out[i] = in[i];
    for (; i < m->n_labels; i++)
        out[i] = "";
}

static uint64_t hash_labels(const tm_metric *m, const char *const *values)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < m->n_labels; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator: ("a","bc") != ("ab","c") */
    }
    return h;
}

static tm_series *series_find(const tm_metric *m, const char *const *values, uint64_t h)
{
    for (tm_series *s = m->table[h % TM_SERIES_BUCKETS]; s; s = s->hash_next) {
        if (s->hash != h)
            continue;
        size_t i = 0;
        while (i < m->n_labels && strcmp(s->label_values[i], values[i]) == 0)
            i++;
        if (i == m->n_labels)
            return s;
    }
    return NULL;
}

static tm_series *series_get(tm_metric *m, const char *const *label_values)
{
    const char *values[TM_MAX_LABELS + 1];
    normalize(m, label_values, values);
    uint64_t h = hash_labels(m, values);
    tm_series *s = series_find(m, values, h);
    if (s)
        return s;
    s = xcalloc(1, sizeof(*s));
    s->metric = m;
    s->hash = h;
    s->label_values = xcalloc(m->n_labels + 1, sizeof(char *));
    for (size_t i = 0; i < m->n_labels; i++)
        s->label_values[i] = xstrdup(values[i]);
    if (m->kind == TM_HISTOGRAM)
        s->buckets = xcalloc(m->n_bounds + 1, sizeof(uint64_t));
    s->min = INFINITY;
    s->max = -INFINITY;
    s->hash_next = m->table[h % TM_SERIES_BUCKETS];
    m->table[h % TM_SERIES_BUCKETS] = s;
    /* Insertion order list for exposition. */
    tm_series **tail = &m->series;
    while (*tail)
        tail = &(*tail)->next;
    *tail = s;
    m->n_series++;
    return s;
}

tm_series *tm_series_get(tm_metric *m, const char *const *label_values)
{
    return m ? series_get(m, label_values) : NULL;
}

void tm_series_add(tm_series *s, double delta)
{
    if (!s || (s->metric->kind == TM_COUNTER && !(delta >= 0)))
        return; /* a counter never goes down; NaN is refused too */
    s->value += delta;
}

void tm_add(tm_metric *m, const char *const *label_values, double delta)
{
    if (m)
        tm_series_add(series_get(m, label_values), delta);
}

void tm_set(tm_metric *m, const char *const *label_values, double value)
{
    if (!m)
        return;
    series_get(m, label_values)->value = value;
}

void tm_set_since(tm_metric *m, const char *const *label_values, double value, uint64_t start_ns)
{
    if (!m)
        return;
    tm_series *s = series_get(m, label_values);
    s->value = value;
    s->start_ns = start_ns;
}

void tm_series_observe(tm_series *s, double value)
{
    const tm_metric *m = s ? s->metric : NULL;
    if (!m || m->kind != TM_HISTOGRAM || isnan(value))
        return;
    size_t i = 0;
    while (i < m->n_bounds && value > m->bounds[i])
        i++;
    s->buckets[i]++; /* upper bounds are inclusive, as in Prometheus */
    s->count++;
    s->value += value;
    if (value < s->min)
        s->min = value;
    if (value > s->max)
        s->max = value;
}

void tm_observe(tm_metric *m, const char *const *label_values, double value)
{
    if (m && m->kind == TM_HISTOGRAM && !isnan(value))
        tm_series_observe(series_get(m, label_values), value);
}

bool tm_read(const tm_metric *m, const char *const *label_values, double *out)
{
    const char *values[TM_MAX_LABELS + 1];
    normalize(m, label_values, values);
    const tm_series *s = series_find(m, values, hash_labels(m, values));
    if (!s)
        return false;
    *out = m->kind == TM_HISTOGRAM ? (double)s->count : s->value;
    return true;
}
