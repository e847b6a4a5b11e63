/*
 * metrics_internal.h - the registry's data structures, shared by the
 * telemetry module's own files (metrics.c, prometheus.c, the OTLP encoder).
 * Not part of the module's interface.
 */
#ifndef CHCP_TELEMETRY_METRICS_INTERNAL_H
#define CHCP_TELEMETRY_METRICS_INTERNAL_H

#include "telemetry/telemetry.h"

#define TM_SERIES_BUCKETS 64
#define TM_MAX_LABELS 16

struct tm_series {
    struct tm_metric *metric;
    struct tm_series *hash_next; /* chain in the metric's table */
    struct tm_series *next;      /* insertion order */
    uint64_t hash;
    char **label_values;
    double value;      /* sum, gauge value, or histogram sum */
    uint64_t count;    /* histogram */
    uint64_t *buckets; /* histogram: n_bounds + 1 non-cumulative counts */
    double min, max;   /* histogram */
    uint64_t start_ns; /* when its count started; 0 = the metric's start */
};

struct tm_metric {
    struct tm_metric *next;
    tm_kind kind;
    char *name;
    char *unit;
    char *description;
    char **label_keys;
    char **prom_label_keys;
    size_t n_labels;
    double *bounds;
    size_t n_bounds;
    char *prom_name;
    uint64_t start_ns;
    tm_series *table[TM_SERIES_BUCKETS];
    tm_series *series;
    size_t n_series;
};

typedef struct tm_attr {
    char *key;
    char *value;
} tm_attr;

struct tm_registry {
    tm_metric *metrics;
    tm_attr *resource;
    size_t n_resource;
    struct {
        tm_collect_fn fn;
        void *ud;
    } * collectors;
    size_t n_collectors;
    uint64_t start_ns; /* start of every cumulative series */
};

void tm_registry_collect(tm_registry *r);
/* [a-zA-Z0-9_:] only, runs of '_' collapsed; a leading digit gets '_'. */
char *tm_prometheus_sanitize(const char *name);
char *tm_prometheus_metric_name(const tm_metric *m);

#endif
