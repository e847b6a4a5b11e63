/*
 * config_otel.c - the telemetry part of chcp-api's configuration: the
 * OpenTelemetry SDK's standard environment variables (OTEL_*) next to chcp's
 * own (UNKEY_CHCP_OTEL_*), resolved into one chcp_otel_config.
 *
 * config.c parses the original UNKEY_CHCP_OTEL_* rows of its table; this file
 * runs after it (config_otel_load) and adds everything else, so the two stay
 * separate pieces of work. Precedence, documented in docs/observability.md:
 *
 *   - chcp's own variable beats the standard one that means the same thing
 *     (UNKEY_CHCP_OTEL_SERVICE_NAME > OTEL_SERVICE_NAME > service.name in
 *     OTEL_RESOURCE_ATTRIBUTES > "chcp"), as code-level configuration beats
 *     the environment in the OpenTelemetry SDKs;
 *   - a signal-specific standard variable beats every generic one, as the
 *     OTLP exporter specification says: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
 *     is used as is; otherwise /v1/traces is appended to
 *     UNKEY_CHCP_OTEL_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT, else
 *     http://localhost:4318. Headers, compression and timeout likewise.
 *
 * Invalid values stop the daemon with exit code 2 and a message naming the
 * variable, like every other setting (the specification lets SDKs ignore a
 * bad value; an operator is better served by being told).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "daemon/daemon.h"

/* Server-side codes: the ones the RPC semantic conventions mark as errors. */
#define SERVER_FAULT_CODES                                                                         \
    ((1u << CHCP_UNKNOWN) | (1u << CHCP_DEADLINE_EXCEEDED) | (1u << CHCP_UNIMPLEMENTED) |          \
     (1u << CHCP_INTERNAL) | (1u << CHCP_UNAVAILABLE) | (1u << CHCP_DATA_LOSS))
#define ALL_ERROR_CODES (((1u << (CHCP_UNAUTHENTICATED + 1)) - 1) & ~1u)

/* Durations in seconds, 50 µs to 60 s: sub-millisecond RPCs and slow boots
 * both land in a bucket that tells them apart. */
static const double default_buckets[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1,
                                         2.5,     5,      10,      30,     60};
#define MAX_BUCKETS 64

typedef struct otel_var {
    const char *name;
    const char *help;
} otel_var;

/* Every variable this file reads (also the --help text). */
static const otel_var otel_vars[] = {
    {"UNKEY_CHCP_OTEL_CAPTURE_CODES",
     "RPC codes whose traces are exported whatever the sampler says: all (every code but ok),\n"
     "      server (unknown, deadline_exceeded, unimplemented, internal, unavailable, data_loss),\n"
     "      none, or a comma-separated list of codes. Default all."},
    {"UNKEY_CHCP_OTEL_DURATION_BUCKETS",
     "Duration histogram bounds in seconds, comma-separated, increasing. Default 0.00005..60."},
    {"UNKEY_CHCP_OTEL_VM_METRICS",
     "Per-VM metrics from each VMM's vm.counters (label chcp_vm_id). Default false."},
    {"UNKEY_CHCP_OTEL_VM_METRICS_MAX_VMS", "Most VMs with per-VM metrics (1..10000). Default 100."},
    {"UNKEY_CHCP_OTEL_VM_METRICS_INTERVAL_MS",
     "How often vm.counters is read (100..3600000). Default 15000."},
    {"OTEL_SERVICE_NAME", "service.name when UNKEY_CHCP_OTEL_SERVICE_NAME is unset."},
    {"OTEL_RESOURCE_ATTRIBUTES", "Extra resource attributes: key=value,... (values %-encoded)."},
    {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP/HTTP base URL when UNKEY_CHCP_OTEL_ENDPOINT is unset."},
    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "Full URL for spans (overrides the base URLs)."},
    {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "Full URL for metrics (overrides the base URLs)."},
    {"OTEL_EXPORTER_OTLP_HEADERS", "Headers on every export: key=value,... (values %-encoded)."},
    {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "Headers on span exports (replace the generic ones)."},
    {"OTEL_EXPORTER_OTLP_METRICS_HEADERS", "Headers on metric exports (replace the generic ones)."},
    {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip or none. Default none."},
    {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip or none, span exports."},
    {"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip or none, metric exports."},
    {"OTEL_EXPORTER_OTLP_TIMEOUT", "One export attempt's timeout, ms. Default 10000."},
    {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "Same, span exports."},
    {"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "Same, metric exports."},
    {"OTEL_EXPORTER_OTLP_PROTOCOL", "Only http/protobuf is supported."},
    {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "Only http/protobuf is supported."},
    {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "Only http/protobuf is supported."},
    {"OTEL_TRACES_SAMPLER",
     "parentbased_traceidratio, parentbased_always_on or parentbased_always_off (when\n"
     "      UNKEY_CHCP_OTEL_SAMPLING_RATE is unset)."},
    {"OTEL_TRACES_SAMPLER_ARG", "The ratio for parentbased_traceidratio. Default 1."},
    {"OTEL_BSP_SCHEDULE_DELAY",
     "Span batch delay, ms (CHCP_OTEL_BATCH_DELAY_MS wins). Default 5000."},
    {"OTEL_BSP_EXPORT_TIMEOUT", "All attempts of one export, ms. Default 30000."},
    {"OTEL_BSP_MAX_QUEUE_SIZE", "Spans waiting for export. Default 2048."},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "Spans per export. Default 512."},
    {"OTEL_METRIC_EXPORT_INTERVAL",
     "OTLP metric push interval, ms (CHCP_OTEL_METRIC_INTERVAL_MS wins). Default 60000."},
};

const char *config_otel_variable_name(size_t i)
{
    return i < ARRAY_SIZE(otel_vars) ? otel_vars[i].name : NULL;
}

bool config_otel_known_env(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(otel_vars); i++)
        if (strcmp(otel_vars[i].name, name) == 0)
            return true;
    return false;
}

void config_otel_usage(FILE *out)
{
    fprintf(out, "\n  Telemetry (the OTEL_* variables are read only when UNKEY_CHCP_OTEL_ENABLED "
                 "is true;\n  docs/observability.md has the precedence rules):\n");
    for (size_t i = 0; i < ARRAY_SIZE(otel_vars); i++)
        fprintf(out, "  %s\n      %s\n", otel_vars[i].name, otel_vars[i].help);
}

/* ---- small parsers ---------------------------------------------------------- */

/* The variable's value, or NULL when unset or empty (empty = default). */
static const char *env(config_getenv_fn get, void *ud, const char *name)
{
    const char *v = get(name, ud);
    return v && *v ? v : NULL;
}

static bool has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

static int parse_u64(const char *src, const char *value, uint64_t min, uint64_t max, uint64_t *out,
                     chcp_error **err)
{
    if (!str_to_u64(value, UINT64_MAX, out))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: not a non-negative integer: '%s'", src,
                         value);
    if (*out < min || *out > max)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: %s is out of range (%llu..%llu)", src,
                         value, (unsigned long long)min, (unsigned long long)max);
    return 0;
}

static int parse_bool_value(const char *src, const char *value, bool *out, chcp_error **err)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (str_ieq(value, yes[i]))
            return *out = true, 0;
        if (str_ieq(value, no[i]))
            return *out = false, 0;
    }
    return error_set(err, CHCP_INVALID_ARGUMENT,
                     "%s: not a boolean: '%s' (use true/false, 1/0, yes/no, on/off)", src, value);
}

static char *trimmed(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return xstrndup(s, n);
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decoding (W3C Baggage values); false on a malformed escape. */
static bool percent_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi = hex_digit(r[1]), lo = hi < 0 ? -1 : hex_digit(r[2]);
        if (lo < 0)
            return false;
        *w++ = (char)(hi << 4 | lo);
        r += 2;
    }
    *w = '\0';
    return true;
}

static bool is_token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c);
}

/* Headers the exporter sets itself (a second copy would make the request
 * ambiguous). User-Agent may be replaced. */
static bool reserved_header(const char *name)
{
    static const char *const reserved[] = {
        "content-type", "content-length", "content-encoding", "transfer-encoding",
        "host",         "expect",         "connection"};
    for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
        if (str_ieq(name, reserved[i]))
            return true;
    return false;
}

static void free_kvs(chcp_otel_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

/*
 * "key=value,key2=value2" (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES):
 * whitespace around keys and values is trimmed, values are percent-decoded.
 * `header_keys`: keys must be HTTP tokens (header names).
 */
static int parse_kv_list(const char *src, const char *value, bool header_keys, chcp_otel_kv **out,
                         size_t *n_out, chcp_error **err)
{
    chcp_otel_kv *kv = NULL;
    size_t n = 0;
    for (const char *p = value; *p;) {
        const char *end = strchrnul(p, ',');
        const char *eq = memchr(p, '=', (size_t)(end - p));
        cleanup_free char *item = trimmed(p, (size_t)(end - p));
        p = *end ? end + 1 : end;
        if (!item[0])
            continue; /* "a=1,,b=2": empty members are skipped */
        if (!eq) {
            free_kvs(kv, n);
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not key=value", src, item);
        }
        char *sep = strchr(item, '=');
        cleanup_free char *key = trimmed(item, (size_t)(sep - item));
        cleanup_free char *val = trimmed(sep + 1, strlen(sep + 1));
        bool key_ok = key[0] != '\0' && !has_control(key, strlen(key));
        for (const char *k = key; header_keys && key_ok && *k; k++)
            key_ok = is_token_char(*k);
        if (header_keys && key_ok && reserved_header(key)) {
            free_kvs(kv, n);
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: %s is set by chcp itself", src, key);
        }
        if (!key_ok || !percent_decode(val) || has_control(val, strlen(val))) {
            free_kvs(kv, n);
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s: bad %s in '%s' (keys are %s, values percent-encoded text)", src,
                             key_ok ? "value" : "key", item,
                             header_keys ? "header names" : "non-empty");
        }
        kv = xrealloc(kv, (n + 1) * sizeof(*kv));
        kv[n].key = steal_pointer(&key);
        kv[n].value = steal_pointer(&val);
        n++;
    }
    *out = kv;
    *n_out = n;
    return 0;
}

/*
 * An OTLP/HTTP URL: http:// or https://, a host, an optional port, an optional
 * path. `bare_ok`: "host:port" without a scheme means http:// (what
 * UNKEY_CHCP_OTEL_ENDPOINT has always accepted). Returns the URL with scheme.
 */
static char *check_url(const char *src, const char *value, bool bare_ok, chcp_error **err)
{
    if (has_control(value, strlen(value)) || strpbrk(value, " \"<>\\^`{|}")) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: not a URL: '%s'", src, value);
        return NULL;
    }
    const char *rest = value;
    const char *scheme = strstr(value, "://");
    if (scheme) {
        size_t len = (size_t)(scheme - value);
        if (!((len == 4 && strncasecmp(value, "http", 4) == 0) ||
              (len == 5 && strncasecmp(value, "https", 5) == 0))) {
            error_set(err, CHCP_INVALID_ARGUMENT,
                      "%s: '%s': only http:// and https:// are supported (OTLP/HTTP)", src, value);
            return NULL;
        }
        rest = scheme + 3;
    } else if (!bare_ok) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not an http:// or https:// URL", src,
                  value);
        return NULL;
    }
    size_t authority = strcspn(rest, "/?#");
    const char *host_end = rest + authority;
    const char *colon = NULL;
    if (rest[0] == '[') { /* [v6]:port */
        const char *close = memchr(rest, ']', authority);
        colon = close && close + 1 < host_end && close[1] == ':' ? close + 1 : NULL;
        if (!close || (close + 1 != host_end && !colon))
            colon = rest; /* malformed: reported below */
    } else {
        colon = memchr(rest, ':', authority);
    }
    bool ok = authority > 0 && colon != rest && memchr(rest, '@', authority) == NULL;
    if (ok && colon) {
        uint64_t port = 0;
        size_t digits = (size_t)(host_end - colon - 1);
        cleanup_free char *p = xstrndup(colon + 1, digits);
        ok = digits > 0 && str_to_u64(p, 65535, &port) && port > 0;
    }
    if (!ok) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' has no valid host[:port]", src, value);
        return NULL;
    }
    return scheme ? xstrdup(value) : xasprintf("http://%s", value);
}

/* Base URL + "/v1/traces": the path is appended to whatever path the base
 * has, without doubling a trailing slash. */
static char *signal_url(const char *base, const char *path)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    return xasprintf("%.*s%s", (int)n, base, path);
}

/* ---- the settings ----------------------------------------------------------- */

static int parse_capture_codes(const char *src, const char *value, uint32_t *out, chcp_error **err)
{
    if (str_ieq(value, "all"))
        return *out = ALL_ERROR_CODES, 0;
    if (str_ieq(value, "none"))
        return *out = 0, 0;
    if (str_ieq(value, "server"))
        return *out = SERVER_FAULT_CODES, 0;
    uint32_t set = 0;
    for (const char *p = value; *p;) {
        const char *end = strchrnul(p, ',');
        cleanup_free char *name = trimmed(p, (size_t)(end - p));
        p = *end ? end + 1 : end;
        int code = name[0] ? code_from_name(name) : -1;
        if (code <= CHCP_OK || code > CHCP_UNAUTHENTICATED)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s: '%s' is not all, server, none or a list of Connect error codes "
                             "(not_found, internal, ...)",
                             src, name);
        set |= 1u << code;
    }
    *out = set;
    return 0;
}

static int parse_buckets(const char *src, const char *value, chcp_otel_config *oc, chcp_error **err)
{
    double b[MAX_BUCKETS];
    size_t n = 0;
    for (const char *p = value; *p;) {
        const char *end = strchrnul(p, ',');
        cleanup_free char *text = trimmed(p, (size_t)(end - p));
        p = *end ? end + 1 : end;
        char *stop;
        errno = 0;
        double v = strtod(text, &stop);
        if (!text[0] || *stop || errno || !isfinite(v) || v <= 0)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s: '%s' is not a positive number of seconds", src, text);
        if (n == MAX_BUCKETS)
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: more than %d bounds", src,
                             MAX_BUCKETS);
        if (n && v <= b[n - 1])
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: bounds must increase (%s after %g)",
                             src, text, b[n - 1]);
        b[n++] = v;
    }
    if (!n)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: no bounds", src);
    free(oc->duration_buckets);
    oc->duration_buckets = xmalloc(n * sizeof(double));
    memcpy(oc->duration_buckets, b, n * sizeof(double));
    oc->n_duration_buckets = n;
    return 0;
}

/* OTEL_TRACES_SAMPLER(_ARG): the ParentBased samplers chcp implements. */
static int parse_sampler(config_getenv_fn get, void *ud, chcp_otel_config *oc, chcp_error **err)
{
    const char *sampler = env(get, ud, "OTEL_TRACES_SAMPLER");
    const char *arg = env(get, ud, "OTEL_TRACES_SAMPLER_ARG");
    if (!sampler)
        return 0;
    if (strcmp(sampler, "parentbased_always_on") == 0) {
        oc->sampling_rate = 1;
    } else if (strcmp(sampler, "parentbased_always_off") == 0) {
        oc->sampling_rate = 0;
    } else if (strcmp(sampler, "parentbased_traceidratio") == 0) {
        char *end;
        errno = 0;
        double v = arg ? strtod(arg, &end) : 1.0;
        if (arg && (errno || end == arg || *end || !isfinite(v) || v < 0 || v > 1))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "OTEL_TRACES_SAMPLER_ARG: not a sampling rate between 0 and 1: '%s'",
                             arg);
        oc->sampling_rate = v;
    } else {
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "OTEL_TRACES_SAMPLER: '%s' is not supported (chcp samples with "
                         "parentbased_traceidratio, parentbased_always_on or "
                         "parentbased_always_off)",
                         sampler);
    }
    return 0;
}

/* Endpoint, headers, compression, timeout and protocol of one signal. */
static int load_signal(config_getenv_fn get, void *ud, const char *sig, const char *path,
                       const char *base, chcp_otel_signal *s, chcp_error **err)
{
    char name[64];
    const char *v;

    snprintf(name, sizeof(name), "OTEL_EXPORTER_OTLP_%s_PROTOCOL", sig);
    const char *names[] = {name, "OTEL_EXPORTER_OTLP_PROTOCOL"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if ((v = env(get, ud, names[i])) && strcmp(v, "http/protobuf") != 0)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s: '%s' is not supported (chcp exports http/protobuf)", names[i], v);
        if (v)
            break;
    }

    snprintf(name, sizeof(name), "OTEL_EXPORTER_OTLP_%s_ENDPOINT", sig);
    free(s->url);
    s->url = NULL;
    if ((v = env(get, ud, name))) {
        s->url = check_url(name, v, false, err);
        if (!s->url)
            return -1;
    } else {
        s->url = signal_url(base, path);
    }

    snprintf(name, sizeof(name), "OTEL_EXPORTER_OTLP_%s_HEADERS", sig);
    const char *src = name;
    if (!(v = env(get, ud, name)))
        v = env(get, ud, src = "OTEL_EXPORTER_OTLP_HEADERS");
    if (v && parse_kv_list(src, v, true, &s->headers, &s->n_headers, err) < 0)
        return -1;

    snprintf(name, sizeof(name), "OTEL_EXPORTER_OTLP_%s_COMPRESSION", sig);
    src = name;
    if (!(v = env(get, ud, name)))
        v = env(get, ud, src = "OTEL_EXPORTER_OTLP_COMPRESSION");
    if (v && strcmp(v, "gzip") != 0 && strcmp(v, "none") != 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not gzip or none", src, v);
    s->gzip = v && strcmp(v, "gzip") == 0;

    snprintf(name, sizeof(name), "OTEL_EXPORTER_OTLP_%s_TIMEOUT", sig);
    src = name;
    if (!(v = env(get, ud, name)))
        v = env(get, ud, src = "OTEL_EXPORTER_OTLP_TIMEOUT");
    s->timeout_ms = 10000;
    if (v && parse_u64(src, v, 1, 3600000, &s->timeout_ms, err) < 0)
        return -1;
    return 0;
}

/* service.name and service.version: chcp's variable, then the standard
 * ones, then the default. The resource list keeps everything else. */
static int resolve_resource(config_getenv_fn get, void *ud, chcp_otel_config *oc, chcp_error **err)
{
    const char *v = env(get, ud, "OTEL_RESOURCE_ATTRIBUTES");
    if (v && parse_kv_list("OTEL_RESOURCE_ATTRIBUTES", v, false, &oc->resource, &oc->n_resource,
                           err) < 0)
        return -1;
    cleanup_free char *res_name = NULL, *res_version = NULL;
    size_t kept = 0;
    for (size_t i = 0; i < oc->n_resource; i++) {
        chcp_otel_kv kv = oc->resource[i];
        char **lifted = strcmp(kv.key, "service.name") == 0      ? &res_name
                        : strcmp(kv.key, "service.version") == 0 ? &res_version
                                                                 : NULL;
        if (!lifted) {
            oc->resource[kept++] = kv;
            continue;
        }
        free(*lifted); /* the last one wins */
        *lifted = kv.value;
        free(kv.key);
    }
    oc->n_resource = kept;
    const char *service_name = env(get, ud, "OTEL_SERVICE_NAME");
    if (service_name && has_control(service_name, strlen(service_name)))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "OTEL_SERVICE_NAME: contains a control character");
    if (!env(get, ud, "UNKEY_CHCP_OTEL_SERVICE_NAME") && (service_name || res_name)) {
        free(oc->service_name);
        oc->service_name = xstrdup(service_name ? service_name : res_name);
    }
    if (!env(get, ud, "UNKEY_CHCP_OTEL_SERVICE_VERSION") && res_version) {
        free(oc->service_version);
        oc->service_version = xstrdup(res_version);
    }
    return 0;
}

static int load_u64(config_getenv_fn get, void *ud, const char *name, uint64_t min, uint64_t max,
                    uint64_t *out, chcp_error **err)
{
    const char *v = env(get, ud, name);
    return v ? parse_u64(name, v, min, max, out, err) : 0;
}

/* Batch processor and metric reader: the test knobs (CHCP_OTEL_*, parsed by
 * config.c) win over the standard variables. */
static int load_pipeline(config_getenv_fn get, void *ud, chcp_otel_config *oc, chcp_error **err)
{
    uint64_t v = 0;
    if (!oc->batch_delay_ms &&
        load_u64(get, ud, "OTEL_BSP_SCHEDULE_DELAY", 1, 86400000, &oc->batch_delay_ms, err) < 0)
        return -1;
    if (!oc->metric_interval_ms && load_u64(get, ud, "OTEL_METRIC_EXPORT_INTERVAL", 1, 86400000,
                                            &oc->metric_interval_ms, err) < 0)
        return -1;
    if (load_u64(get, ud, "OTEL_BSP_EXPORT_TIMEOUT", 1, 3600000, &oc->export_timeout_ms, err) < 0)
        return -1;
    if (load_u64(get, ud, "OTEL_BSP_MAX_QUEUE_SIZE", 1, 1 << 24, &v, err) < 0)
        return -1;
    oc->max_queue = (size_t)v;
    v = 0;
    if (load_u64(get, ud, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, 1 << 24, &v, err) < 0)
        return -1;
    oc->max_batch = (size_t)v;
    if (oc->max_queue && oc->max_batch > oc->max_queue)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: %zu is larger than the queue (%zu)",
                         oc->max_batch, oc->max_queue);
    return 0;
}

static int load_chcp_extras(config_getenv_fn get, void *ud, chcp_otel_config *oc, chcp_error **err)
{
    const char *v;
    oc->capture_codes = ALL_ERROR_CODES;
    if ((v = env(get, ud, "UNKEY_CHCP_OTEL_CAPTURE_CODES")) &&
        parse_capture_codes("UNKEY_CHCP_OTEL_CAPTURE_CODES", v, &oc->capture_codes, err) < 0)
        return -1;
    if ((v = env(get, ud, "UNKEY_CHCP_OTEL_DURATION_BUCKETS"))) {
        if (parse_buckets("UNKEY_CHCP_OTEL_DURATION_BUCKETS", v, oc, err) < 0)
            return -1;
    } else {
        oc->duration_buckets = xmalloc(sizeof(default_buckets));
        memcpy(oc->duration_buckets, default_buckets, sizeof(default_buckets));
        oc->n_duration_buckets = ARRAY_SIZE(default_buckets);
    }
    if ((v = env(get, ud, "UNKEY_CHCP_OTEL_VM_METRICS")) &&
        parse_bool_value("UNKEY_CHCP_OTEL_VM_METRICS", v, &oc->vm_metrics, err) < 0)
        return -1;
    uint64_t max_vms = 100, interval = 15000;
    if (load_u64(get, ud, "UNKEY_CHCP_OTEL_VM_METRICS_MAX_VMS", 1, 10000, &max_vms, err) < 0 ||
        load_u64(get, ud, "UNKEY_CHCP_OTEL_VM_METRICS_INTERVAL_MS", 100, 3600000, &interval, err) <
            0)
        return -1;
    oc->vm_metrics_max_vms = (uint32_t)max_vms;
    oc->vm_metrics_interval_ms = interval;
    return 0;
}

int config_otel_load(chcp_otel_config *oc, config_getenv_fn get, void *ud, chcp_error **err)
{
    if (load_chcp_extras(get, ud, oc, err) < 0)
        return -1;
    /* With telemetry off the standard variables are not read at all: they
     * are often set host-wide for other programs, and must not stop a daemon
     * that does not export. chcp's own endpoint is still checked. */
    if (!oc->enabled) {
        if (!env(get, ud, "UNKEY_CHCP_OTEL_ENDPOINT"))
            return 0;
        cleanup_free char *url = check_url("UNKEY_CHCP_OTEL_ENDPOINT", oc->endpoint, true, err);
        return url ? 0 : -1;
    }
    /* The sampler variables only count when chcp's own rate is unset. */
    if (!env(get, ud, "UNKEY_CHCP_OTEL_SAMPLING_RATE") &&
        !env(get, ud, "UNKEY_VMCP_OTEL_SAMPLING_RATE") && parse_sampler(get, ud, oc, err) < 0)
        return -1;
    /* config.c already chose UNKEY_CHCP_OTEL_ENDPOINT over
     * OTEL_EXPORTER_OTLP_ENDPOINT (its alias) into oc->endpoint. */
    const char *src = env(get, ud, "UNKEY_CHCP_OTEL_ENDPOINT")      ? "UNKEY_CHCP_OTEL_ENDPOINT"
                      : env(get, ud, "OTEL_EXPORTER_OTLP_ENDPOINT") ? "OTEL_EXPORTER_OTLP_ENDPOINT"
                                                                    : "the default endpoint";
    cleanup_free char *base = check_url(src, oc->endpoint, true, err);
    if (!base)
        return -1;
    if (load_signal(get, ud, "TRACES", "/v1/traces", base, &oc->traces, err) < 0 ||
        load_signal(get, ud, "METRICS", "/v1/metrics", base, &oc->metrics, err) < 0)
        return -1;
    if (resolve_resource(get, ud, oc, err) < 0)
        return -1;
    return load_pipeline(get, ud, oc, err);
}

static void free_signal(chcp_otel_signal *s)
{
    free(s->url);
    free_kvs(s->headers, s->n_headers);
    memset(s, 0, sizeof(*s));
}

void config_otel_free(chcp_otel_config *oc)
{
    free_signal(&oc->traces);
    free_signal(&oc->metrics);
    free_kvs(oc->resource, oc->n_resource);
    oc->resource = NULL;
    oc->n_resource = 0;
    free(oc->duration_buckets);
    oc->duration_buckets = NULL;
    oc->n_duration_buckets = 0;
}
