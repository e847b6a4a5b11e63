/*
 * prometheus.c - Prometheus text exposition format 0.0.4 of the registry.
 *
 * Names follow the OpenTelemetry-to-Prometheus translation that Go's exporter
 * and Prometheus' own OTLP receiver use (otlptranslator, default strategy
 * "UnderscoreEscapingWithSuffixes"): characters outside [a-zA-Z0-9_:] become
 * '_', the unit is appended as a word (s -> seconds, By -> bytes, {x} dropped),
 * monotonic sums get _total, and the resource becomes one target_info series.
 * Dashboards built against a Go service then work against chcp unchanged.
 */
#include "telemetry/metrics_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *tm_prometheus_sanitize(const char *name)
{
    chcp_buf b = CHCP_BUF_INIT;
    if (name[0] >= '0' && name[0] <= '9')
        buf_append_byte(&b, '_');
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == ':';
        if (!ok)
            c = '_';
        if (c == '_' && b.len > 0 && b.data[b.len - 1] == '_')
            continue;
        buf_append_byte(&b, (uint8_t)c);
    }
    return buf_steal_str(&b);
}

static const struct {
    const char *unit;
    const char *word;
} unit_words[] = {
    {"s", "seconds"},   {"ms", "milliseconds"}, {"us", "microseconds"}, {"ns", "nanoseconds"},
    {"By", "bytes"},    {"KiBy", "kibibytes"},  {"MiBy", "mebibytes"},  {"%", "percent"},
    {"min", "minutes"}, {"h", "hours"},         {"d", "days"},
};

/* The unit's word, "" when the unit adds nothing ("1", "{request}"). */
static char *unit_word(const tm_metric *m)
{
    const char *u = m->unit;
    if (u[0] == '\0' || u[0] == '{')
        return xstrdup("");
    if (strcmp(u, "1") == 0)
        return xstrdup(m->kind == TM_GAUGE ? "ratio" : "");
    for (size_t i = 0; i < ARRAY_SIZE(unit_words); i++)
        if (strcmp(u, unit_words[i].unit) == 0)
            return xstrdup(unit_words[i].word);
    return tm_prometheus_sanitize(u);
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

char *tm_prometheus_metric_name(const tm_metric *m)
{
    cleanup_free char *base = tm_prometheus_sanitize(m->name);
    cleanup_free char *word = unit_word(m);
    chcp_buf b = CHCP_BUF_INIT;
    buf_append_str(&b, base);
    if (m->kind == TM_COUNTER && has_suffix(base, "_total"))
        b.len -= strlen("_total");
    buf_reserve(&b, 0);
    b.data[b.len] = '\0';
    if (word[0] && !strstr((char *)b.data, word))
        buf_printf(&b, "_%s", word);
    if (m->kind == TM_COUNTER)
        buf_append_str(&b, "_total");
    return buf_steal_str(&b);
}

/*
 * Shortest text that parses back to the same double, laid out exactly as Go's
 * strconv.FormatFloat(v, 'g', -1, 64) does (what Prometheus' own clients
 * print): exponent form only below 1e-4 or from 1e6 up. `le` labels are
 * strings to PromQL, so le="10" must be spelt "10", never "1e+01".
 */
static void append_double(chcp_buf *b, double v)
{
    if (isnan(v)) {
        buf_append_str(b, "NaN");
        return;
    }
    if (isinf(v)) {
        buf_append_str(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[40];
    int digits = 1;
    for (; digits <= 17; digits++) {
        snprintf(tmp, sizeof(tmp), "%.*e", digits - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    long exp = strtol(strchr(tmp, 'e') + 1, NULL, 10);
    if (exp >= -4 && exp < 6) {
        int decimals = digits - 1 - (int)exp;
        snprintf(tmp, sizeof(tmp), "%.*f", decimals > 0 ? decimals : 0, v);
    }
    buf_append_str(b, tmp);
}

static void append_escaped(chcp_buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_append_str(b, "\\\\");
        else if (*s == '\n')
            buf_append_str(b, "\\n");
        else if (quote && *s == '"')
            buf_append_str(b, "\\\"");
        else
            buf_append_byte(b, (uint8_t)*s);
    }
}

/* {k="v",...,extra} — empty values are left out: Prometheus treats l="" as
 * an absent label anyway, and two series must not collapse into one. */
static void append_labels(chcp_buf *b, const tm_metric *m, const tm_series *s, const char *le)
{
    bool any = false;
    for (size_t i = 0; i < m->n_labels; i++) {
        if (s->label_values[i][0] == '\0')
            continue;
        buf_append_str(b, any ? "," : "{");
        buf_printf(b, "%s=\"", m->prom_label_keys[i]);
        append_escaped(b, s->label_values[i], true);
        buf_append_byte(b, '"');
        any = true;
    }
    if (le) {
        buf_append_str(b, any ? "," : "{");
        buf_printf(b, "le=\"%s\"", le);
        any = true;
    }
    if (any)
        buf_append_byte(b, '}');
}

static void render_histogram(chcp_buf *b, const tm_metric *m, const tm_series *s)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= m->n_bounds; i++) {
        cumulative += s->buckets[i];
        chcp_buf le = CHCP_BUF_INIT;
        if (i == m->n_bounds)
            buf_append_str(&le, "+Inf");
        else
            append_double(&le, m->bounds[i]);
        cleanup_free char *le_text = buf_steal_str(&le);
        buf_printf(b, "%s_bucket", m->prom_name);
        append_labels(b, m, s, le_text);
        buf_printf(b, " %llu\n", (unsigned long long)cumulative);
    }
    buf_printf(b, "%s_sum", m->prom_name);
    append_labels(b, m, s, NULL);
    buf_append_byte(b, ' ');
    append_double(b, s->value);
    buf_printf(b, "\n%s_count", m->prom_name);
    append_labels(b, m, s, NULL);
    buf_printf(b, " %llu\n", (unsigned long long)s->count);
}

static void render_metric(chcp_buf *b, const tm_metric *m)
{
    /* Histograms keep their base name; _bucket/_sum/_count come per sample. */
    const char *type = m->kind == TM_COUNTER     ? "counter"
                       : m->kind == TM_HISTOGRAM ? "histogram"
                                                 : "gauge";
    buf_printf(b, "# HELP %s ", m->prom_name);
    append_escaped(b, m->description, false);
    buf_printf(b, "\n# TYPE %s %s\n", m->prom_name, type);
    for (const tm_series *s = m->series; s; s = s->next) {
        if (m->kind == TM_HISTOGRAM) {
            render_histogram(b, m, s);
            continue;
        }
        buf_append_str(b, m->prom_name);
        append_labels(b, m, s, NULL);
        buf_append_byte(b, ' ');
        append_double(b, s->value);
        buf_append_byte(b, '\n');
    }
}

static void render_target_info(chcp_buf *b, const tm_registry *r)
{
    buf_append_str(b, "# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info");
    bool any = false;
    for (size_t i = 0; i < r->n_resource; i++) {
        if (r->resource[i].value[0] == '\0')
            continue;
        cleanup_free char *key = tm_prometheus_sanitize(r->resource[i].key);
        buf_printf(b, "%s%s=\"", any ? "," : "{", key);
        append_escaped(b, r->resource[i].value, true);
        buf_append_byte(b, '"');
        any = true;
    }
    buf_append_str(b, any ? "} 1\n" : " 1\n");
}

void tm_prometheus_render(tm_registry *r, chcp_buf *out)
{
    tm_registry_collect(r);
    render_target_info(out, r);
    for (const tm_metric *m = r->metrics; m; m = m->next)
        render_metric(out, m);
}
