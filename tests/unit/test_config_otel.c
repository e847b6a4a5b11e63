/*
 * test_config_otel.c - the telemetry configuration (src/daemon/config_otel.c):
 * the standard OTEL_* variables, their precedence against chcp's own
 * UNKEY_CHCP_OTEL_* ones, and every invalid value refused with a message
 * naming its variable. Fed a fake environment through config_load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "daemon/daemon.h"

static const char *fake_env(const char *name, void *ud)
{
    for (const char *const *kv = ud; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

/* Load with telemetry on plus the given pairs; returns config_load's rc. */
static int load(chcp_config *cfg, const char *const *pairs, chcp_error **err)
{
    const char *env[64] = {"PATH", "/nonexistent-dir", "UNKEY_CHCP_OTEL_ENABLED", "true"};
    size_t n = 4;
    for (size_t i = 0; pairs && pairs[i]; i++) {
        assert_true(n < 62);
        env[n++] = pairs[i];
    }
    env[n] = NULL;
    char *argv[] = {"chcp-api", NULL};
    config_action action;
    return config_load(cfg, 1, argv, fake_env, env, &action, err);
}

static void expect_ok(chcp_config *cfg, const char *const *pairs)
{
    chcp_error *err = NULL;
    int rc = load(cfg, pairs, &err);
    if (rc != 0)
        fail_msg("unexpected error: %s", err ? err->message : "?");
}

/* The load fails and the message starts with `var` and contains `part`. */
static void expect_refused(const char *const *pairs, const char *var, const char *part)
{
    chcp_config cfg;
    chcp_error *err = NULL;
    assert_int_equal(load(&cfg, pairs, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    if (strncmp(err->message, var, strlen(var)) != 0 || !strstr(err->message, part))
        fail_msg("want '%s: ...%s...', got '%s'", var, part, err->message);
    error_free(err);
    config_free(&cfg);
}

static void test_defaults(void **state)
{
    chcp_config cfg;
    expect_ok(&cfg, NULL);
    chcp_otel_config *oc = &cfg.otel;
    assert_string_equal(oc->traces.url, "http://localhost:4318/v1/traces");
    assert_string_equal(oc->metrics.url, "http://localhost:4318/v1/metrics");
    assert_int_equal(oc->traces.n_headers, 0);
    assert_false(oc->traces.gzip);
    assert_int_equal(oc->traces.timeout_ms, 10000);
    assert_int_equal(oc->n_resource, 0);
    /* Every code but ok is captured. */
    assert_int_equal(oc->capture_codes & 1, 0);
    for (int c = CHCP_CANCELED; c <= CHCP_UNAUTHENTICATED; c++)
        assert_true(oc->capture_codes & (1u << c));
    assert_int_equal(oc->n_duration_buckets, 19);
    assert_true(oc->duration_buckets[0] == 0.00005);
    assert_true(oc->duration_buckets[18] == 60);
    assert_false(oc->vm_metrics);
    assert_int_equal(oc->vm_metrics_max_vms, 100);
    assert_int_equal(oc->vm_metrics_interval_ms, 15000);
    assert_string_equal(oc->service_name, "chcp");
    config_free(&cfg);
}

static void test_endpoint_precedence(void **state)
{
    chcp_config cfg;
    /* The generic standard endpoint: /v1/<signal> appended, one slash. */
    expect_ok(&cfg,
              (const char *[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel:4318/base/", NULL});
    assert_string_equal(cfg.otel.traces.url, "https://otel:4318/base/v1/traces");
    assert_string_equal(cfg.otel.metrics.url, "https://otel:4318/base/v1/metrics");
    config_free(&cfg);
    /* chcp's own beats it; a bare host:port means http. */
    expect_ok(&cfg, (const char *[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:1",
                                     "UNKEY_CHCP_OTEL_ENDPOINT", "mine:4318", NULL});
    assert_string_equal(cfg.otel.traces.url, "http://mine:4318/v1/traces");
    config_free(&cfg);
    /* A signal-specific URL beats both and is used as is. */
    expect_ok(&cfg, (const char *[]){"UNKEY_CHCP_OTEL_ENDPOINT", "http://mine:4318",
                                     "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                                     "http://[::1]:9999/custom/path", NULL});
    assert_string_equal(cfg.otel.traces.url, "http://mine:4318/v1/traces");
    assert_string_equal(cfg.otel.metrics.url, "http://[::1]:9999/custom/path");
    config_free(&cfg);
}

static void test_bad_urls(void **state)
{
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_ENDPOINT", "ftp://x:21", NULL},
                   "UNKEY_CHCP_OTEL_ENDPOINT", "only http");
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_ENDPOINT", "http://", NULL},
                   "UNKEY_CHCP_OTEL_ENDPOINT", "host");
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_ENDPOINT", "http://h:99999", NULL},
                   "UNKEY_CHCP_OTEL_ENDPOINT", "host");
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_ENDPOINT", "http://h:4318 x", NULL},
                   "UNKEY_CHCP_OTEL_ENDPOINT", "not a URL");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "unix:///run/otel.sock", NULL},
                   "OTEL_EXPORTER_OTLP_ENDPOINT", "only http");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318", NULL},
                   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not an http");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://u@h:1/", NULL},
                   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "host");
}

static void test_headers(void **state)
{
    chcp_config cfg;
    expect_ok(&cfg, (const char *[]){"OTEL_EXPORTER_OTLP_HEADERS",
                                     " Authorization = Bearer%20abc== , x-tenant=a%2Cb,,",
                                     "OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-only=metrics", NULL});
    chcp_otel_signal *t = &cfg.otel.traces, *m = &cfg.otel.metrics;
    assert_int_equal(t->n_headers, 2);
    assert_string_equal(t->headers[0].key, "Authorization");
    assert_string_equal(t->headers[0].value, "Bearer abc==");
    assert_string_equal(t->headers[1].key, "x-tenant");
    assert_string_equal(t->headers[1].value, "a,b");
    /* The signal-specific list replaces the generic one. */
    assert_int_equal(m->n_headers, 1);
    assert_string_equal(m->headers[0].key, "x-only");
    config_free(&cfg);

    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_HEADERS", "novalue", NULL},
                   "OTEL_EXPORTER_OTLP_HEADERS", "key=value");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_HEADERS", "bad key=v", NULL},
                   "OTEL_EXPORTER_OTLP_HEADERS", "bad key");
    expect_refused(
        (const char *[]){"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x=a%0D%0Ainjected: 1", NULL},
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad value");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_HEADERS", "x=%zz", NULL},
                   "OTEL_EXPORTER_OTLP_HEADERS", "bad value");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_HEADERS", "Content-Type=text/plain", NULL},
                   "OTEL_EXPORTER_OTLP_HEADERS", "set by chcp");
}

static void test_compression_timeout_protocol(void **state)
{
    chcp_config cfg;
    expect_ok(&cfg, (const char *[]){"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip",
                                     "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none",
                                     "OTEL_EXPORTER_OTLP_TIMEOUT", "2500",
                                     "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", NULL});
    assert_true(cfg.otel.traces.gzip);
    assert_false(cfg.otel.metrics.gzip);
    assert_int_equal(cfg.otel.traces.timeout_ms, 2500);
    assert_int_equal(cfg.otel.metrics.timeout_ms, 2500);
    config_free(&cfg);
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", NULL},
                   "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip or none");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0", NULL},
                   "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "out of range");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", NULL},
                   "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    expect_refused((const char *[]){"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json", NULL},
                   "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "not supported");
}

static void test_service_and_resource(void **state)
{
    chcp_config cfg;
    const char *res = "deployment.environment=prod,service.name=from-res,"
                      "service.version=1.2.3,team=a%20b";
    expect_ok(&cfg, (const char *[]){"OTEL_RESOURCE_ATTRIBUTES", res, NULL});
    assert_string_equal(cfg.otel.service_name, "from-res");
    assert_string_equal(cfg.otel.service_version, "1.2.3");
    assert_int_equal(cfg.otel.n_resource, 2); /* service.* are lifted out */
    assert_string_equal(cfg.otel.resource[0].key, "deployment.environment");
    assert_string_equal(cfg.otel.resource[1].value, "a b");
    config_free(&cfg);
    /* OTEL_SERVICE_NAME beats the resource's; chcp's own beats both. */
    expect_ok(&cfg,
              (const char *[]){"OTEL_RESOURCE_ATTRIBUTES", res, "OTEL_SERVICE_NAME", "std", NULL});
    assert_string_equal(cfg.otel.service_name, "std");
    config_free(&cfg);
    expect_ok(&cfg, (const char *[]){"OTEL_RESOURCE_ATTRIBUTES", res, "OTEL_SERVICE_NAME", "std",
                                     "UNKEY_CHCP_OTEL_SERVICE_NAME", "mine",
                                     "UNKEY_CHCP_OTEL_SERVICE_VERSION", "9", NULL});
    assert_string_equal(cfg.otel.service_name, "mine");
    assert_string_equal(cfg.otel.service_version, "9");
    config_free(&cfg);
    expect_refused((const char *[]){"OTEL_RESOURCE_ATTRIBUTES", "=v", NULL},
                   "OTEL_RESOURCE_ATTRIBUTES", "bad key");
    expect_refused((const char *[]){"OTEL_SERVICE_NAME", "a\nb", NULL}, "OTEL_SERVICE_NAME",
                   "control");
}

static void test_sampler(void **state)
{
    chcp_config cfg;
    expect_ok(&cfg, (const char *[]){"OTEL_TRACES_SAMPLER", "parentbased_traceidratio",
                                     "OTEL_TRACES_SAMPLER_ARG", "0.25", NULL});
    assert_true(cfg.otel.sampling_rate == 0.25);
    config_free(&cfg);
    expect_ok(&cfg, (const char *[]){"OTEL_TRACES_SAMPLER", "parentbased_always_off", NULL});
    assert_true(cfg.otel.sampling_rate == 0);
    config_free(&cfg);
    /* chcp's own rate wins. */
    expect_ok(&cfg, (const char *[]){"OTEL_TRACES_SAMPLER", "parentbased_always_off",
                                     "UNKEY_CHCP_OTEL_SAMPLING_RATE", "0.5", NULL});
    assert_true(cfg.otel.sampling_rate == 0.5);
    config_free(&cfg);
    expect_refused((const char *[]){"OTEL_TRACES_SAMPLER", "always_on", NULL},
                   "OTEL_TRACES_SAMPLER", "not supported");
    expect_refused((const char *[]){"OTEL_TRACES_SAMPLER", "parentbased_traceidratio",
                                    "OTEL_TRACES_SAMPLER_ARG", "2", NULL},
                   "OTEL_TRACES_SAMPLER_ARG", "between 0 and 1");
}

static void test_capture_codes(void **state)
{
    chcp_config cfg;
    expect_ok(&cfg, (const char *[]){"UNKEY_CHCP_OTEL_CAPTURE_CODES", "server", NULL});
    assert_true(cfg.otel.capture_codes & (1u << CHCP_INTERNAL));
    assert_false(cfg.otel.capture_codes & (1u << CHCP_NOT_FOUND));
    config_free(&cfg);
    expect_ok(&cfg, (const char *[]){"UNKEY_CHCP_OTEL_CAPTURE_CODES", "none", NULL});
    assert_int_equal(cfg.otel.capture_codes, 0);
    config_free(&cfg);
    expect_ok(&cfg, (const char *[]){"UNKEY_CHCP_OTEL_CAPTURE_CODES", "not_found, internal", NULL});
    assert_int_equal(cfg.otel.capture_codes, (1u << CHCP_NOT_FOUND) | (1u << CHCP_INTERNAL));
    config_free(&cfg);
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_CAPTURE_CODES", "ok", NULL},
                   "UNKEY_CHCP_OTEL_CAPTURE_CODES", "'ok'");
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_CAPTURE_CODES", "internal,,", NULL},
                   "UNKEY_CHCP_OTEL_CAPTURE_CODES", "Connect error codes");
}

static void test_buckets_and_vm_metrics(void **state)
{
    chcp_config cfg;
    expect_ok(&cfg, (const char *[]){"UNKEY_CHCP_OTEL_DURATION_BUCKETS", "0.001, 0.1,1",
                                     "UNKEY_CHCP_OTEL_VM_METRICS", "yes",
                                     "UNKEY_CHCP_OTEL_VM_METRICS_MAX_VMS", "3",
                                     "UNKEY_CHCP_OTEL_VM_METRICS_INTERVAL_MS", "250", NULL});
    assert_int_equal(cfg.otel.n_duration_buckets, 3);
    assert_true(cfg.otel.duration_buckets[1] == 0.1);
    assert_true(cfg.otel.vm_metrics);
    assert_int_equal(cfg.otel.vm_metrics_max_vms, 3);
    assert_int_equal(cfg.otel.vm_metrics_interval_ms, 250);
    config_free(&cfg);
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_DURATION_BUCKETS", "0.1,0.1", NULL},
                   "UNKEY_CHCP_OTEL_DURATION_BUCKETS", "increase");
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_DURATION_BUCKETS", "-1", NULL},
                   "UNKEY_CHCP_OTEL_DURATION_BUCKETS", "positive");
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_DURATION_BUCKETS", "1,x", NULL},
                   "UNKEY_CHCP_OTEL_DURATION_BUCKETS", "'x'");
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_VM_METRICS_MAX_VMS", "0", NULL},
                   "UNKEY_CHCP_OTEL_VM_METRICS_MAX_VMS", "out of range");
    expect_refused((const char *[]){"UNKEY_CHCP_OTEL_VM_METRICS", "maybe", NULL},
                   "UNKEY_CHCP_OTEL_VM_METRICS", "boolean");
}

static void test_batch_processor(void **state)
{
    chcp_config cfg;
    expect_ok(&cfg,
              (const char *[]){"OTEL_BSP_SCHEDULE_DELAY", "250", "OTEL_BSP_MAX_QUEUE_SIZE", "8192",
                               "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1024", "OTEL_BSP_EXPORT_TIMEOUT",
                               "4000", "OTEL_METRIC_EXPORT_INTERVAL", "700", NULL});
    assert_int_equal(cfg.otel.batch_delay_ms, 250);
    assert_int_equal(cfg.otel.max_queue, 8192);
    assert_int_equal(cfg.otel.max_batch, 1024);
    assert_int_equal(cfg.otel.export_timeout_ms, 4000);
    assert_int_equal(cfg.otel.metric_interval_ms, 700);
    config_free(&cfg);
    /* The test knobs win. */
    expect_ok(&cfg, (const char *[]){"OTEL_BSP_SCHEDULE_DELAY", "250", "CHCP_OTEL_BATCH_DELAY_MS",
                                     "100", NULL});
    assert_int_equal(cfg.otel.batch_delay_ms, 100);
    config_free(&cfg);
    expect_refused((const char *[]){"OTEL_BSP_MAX_QUEUE_SIZE", "10",
                                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20", NULL},
                   "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "larger than the queue");
}

/* Telemetry off: the standard variables are not read (they may be set
 * host-wide for other programs); chcp's own endpoint is still checked. */
static void test_standard_variables_ignored_when_off(void **state)
{
    const char *env[] = {"PATH",
                         "/nonexistent-dir",
                         "OTEL_EXPORTER_OTLP_PROTOCOL",
                         "grpc",
                         "OTEL_EXPORTER_OTLP_HEADERS",
                         "broken",
                         "OTEL_TRACES_SAMPLER",
                         "x",
                         NULL};
    char *argv[] = {"chcp-api", NULL};
    config_action action;
    chcp_config cfg;
    chcp_error *err = NULL;
    assert_int_equal(config_load(&cfg, 1, argv, fake_env, (void *)env, &action, &err), 0);
    assert_false(cfg.otel.enabled);
    config_free(&cfg);
    const char *env2[] = {"PATH", "/nonexistent-dir", "UNKEY_CHCP_OTEL_ENDPOINT", "gopher://x",
                          NULL};
    assert_int_equal(config_load(&cfg, 1, argv, fake_env, (void *)env2, &action, &err), -1);
    assert_non_null(strstr(err->message, "UNKEY_CHCP_OTEL_ENDPOINT"));
    error_free(err);
    config_free(&cfg);
}

static void test_known_and_usage(void **state)
{
    assert_true(config_otel_known_env("OTEL_EXPORTER_OTLP_HEADERS"));
    assert_true(config_otel_known_env("UNKEY_CHCP_OTEL_VM_METRICS"));
    assert_false(config_otel_known_env("OTEL_EXPORTER_OTLP_HEADER"));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_otel_usage(f);
    fclose(f);
    assert_non_null(strstr(text, "OTEL_RESOURCE_ATTRIBUTES"));
    assert_non_null(strstr(text, "UNKEY_CHCP_OTEL_CAPTURE_CODES"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_endpoint_precedence),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_compression_timeout_protocol),
        cmocka_unit_test(test_service_and_resource),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_capture_codes),
        cmocka_unit_test(test_buckets_and_vm_metrics),
        cmocka_unit_test(test_batch_processor),
        cmocka_unit_test(test_standard_variables_ignored_when_off),
        cmocka_unit_test(test_known_and_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
