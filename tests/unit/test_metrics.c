/*
 * test_metrics.c - the metrics registry and its Prometheus exposition:
 * OpenTelemetry-to-Prometheus naming, label escaping, histogram buckets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "telemetry/telemetry.h"

static char *render(tm_registry *r)
{
    chcp_buf b = CHCP_BUF_INIT;
    tm_prometheus_render(r, &b);
    return buf_steal_str(&b);
}

static void test_names(void **state)
{
    (void)state;
    tm_registry *r = tm_registry_new();
    const char *keys[] = {"rpc.method", NULL};
    tm_metric *c =
        tm_metric_new(r, TM_COUNTER, "rpc.server.requests", "{request}", "d", keys, NULL, 0);
    tm_metric *h =
        tm_metric_new(r, TM_HISTOGRAM, "rpc.server.request.duration", "s", "d", keys, NULL, 0);
    tm_metric *g =
        tm_metric_new(r, TM_UPDOWN, "rpc.server.active_requests", "{request}", "d", keys, NULL, 0);
    tm_metric *b = tm_metric_new(r, TM_UPDOWN, "process.memory.usage", "By", "d", NULL, NULL, 0);
    tm_metric *t = tm_metric_new(r, TM_COUNTER, "vm.exits_total", "", "d", NULL, NULL, 0);
    tm_metric *ratio = tm_metric_new(r, TM_GAUGE, "cpu.utilization", "1", "d", NULL, NULL, 0);
    assert_string_equal(tm_metric_prometheus_name(c), "rpc_server_requests_total");
    assert_string_equal(tm_metric_prometheus_name(h), "rpc_server_request_duration_seconds");
    assert_string_equal(tm_metric_prometheus_name(g), "rpc_server_active_requests");
    assert_string_equal(tm_metric_prometheus_name(b), "process_memory_usage_bytes");
    assert_string_equal(tm_metric_prometheus_name(t), "vm_exits_total");
    assert_string_equal(tm_metric_prometheus_name(ratio), "cpu_utilization_ratio");
    tm_registry_free(r);
}

static void test_counter_and_escaping(void **state)
{
    (void)state;
    tm_registry *r = tm_registry_new();
    tm_registry_set_resource(r, "service.name", "chcp");
    const char *keys[] = {"rpc.method", "reason", NULL};
    tm_metric *c =
        tm_metric_new(r, TM_COUNTER, "requests", "", "Help with \\ and\nnewline", keys, NULL, 0);
    const char *v1[] = {"Create", "say \"hi\"\nback\\slash", NULL};
    const char *v2[] = {"Boot", "", NULL};
    tm_add(c, v1, 2);
    tm_add(c, v1, 1);
    tm_add(c, v2, 1);
    tm_add(c, v2, -5); /* counters never go down */
    double v = 0;
    assert_true(tm_read(c, v1, &v));
    assert_true(v == 3);
    assert_true(tm_read(c, v2, &v));
    assert_true(v == 1);
    const char *missing[] = {"Nope", "", NULL};
    assert_false(tm_read(c, missing, &v));
    /* Short or absent value arrays mean "" for the rest, never a crash. */
    const char *short_values[] = {"Boot", NULL};
    assert_true(tm_read(c, short_values, &v));
    assert_true(v == 1);
    tm_add(c, NULL, 4);
    const char *empty[] = {"", "", NULL};
    assert_true(tm_read(c, empty, &v));
    assert_true(v == 4);

    char *text = render(r);
    assert_non_null(strstr(text, "target_info{service_name=\"chcp\"} 1\n"));
    assert_non_null(strstr(text, "# HELP requests_total Help with \\\\ and\\nnewline\n"));
    assert_non_null(strstr(text, "# TYPE requests_total counter\n"));
    assert_non_null(strstr(
        text,
        "requests_total{rpc_method=\"Create\",reason=\"say \\\"hi\\\"\\nback\\\\slash\"} 3\n"));
    /* An empty label value is left out rather than sent as "". */
    assert_non_null(strstr(text, "requests_total{rpc_method=\"Boot\"} 1\n"));
    free(text);
    tm_registry_free(r);
}

static void test_histogram(void **state)
{
    (void)state;
    tm_registry *r = tm_registry_new();
    const double bounds[] = {0.1, 1};
    tm_metric *h = tm_metric_new(r, TM_HISTOGRAM, "op.duration", "s", "Op time.", NULL, bounds, 2);
    tm_observe(h, NULL, 0.05);
    tm_observe(h, NULL, 0.1); /* upper bounds are inclusive */
    tm_observe(h, NULL, 0.5);
    tm_observe(h, NULL, 7);
    char *text = render(r);
    const char *want = "# HELP op_duration_seconds Op time.\n"
                       "# TYPE op_duration_seconds histogram\n"
                       "op_duration_seconds_bucket{le=\"0.1\"} 2\n"
                       "op_duration_seconds_bucket{le=\"1\"} 3\n"
                       "op_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                       "op_duration_seconds_sum 7.65\n"
                       "op_duration_seconds_count 4\n";
    assert_non_null(strstr(text, want));
    free(text);
    tm_registry_free(r);
}

static void test_many_series(void **state)
{
    (void)state;
    tm_registry *r = tm_registry_new();
    const char *keys[] = {"vm", NULL};
    tm_metric *g = tm_metric_new(r, TM_GAUGE, "vm.memory", "By", "d", keys, NULL, 0);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "vm-%d", i);
        const char *v[] = {name, NULL};
        tm_set(g, v, i);
    }
    for (int i = 0; i < 1000; i += 111) {
        snprintf(name, sizeof(name), "vm-%d", i);
        const char *v[] = {name, NULL};
        double out = -1;
        assert_true(tm_read(g, v, &out));
        assert_true(out == i);
    }
    tm_registry_free(r);
}

/* The default duration buckets resolve 50 µs to 60 s: a 70 µs RPC and a
 * 45 s boot each land in a bucket of their own. */
static void test_default_buckets(void **state)
{
    (void)state;
    tm_registry *r = tm_registry_new();
    tm_metric *h = tm_metric_new(r, TM_HISTOGRAM, "rpc.duration", "s", "d", NULL, NULL, 0);
    tm_observe(h, NULL, 0.00007);
    tm_observe(h, NULL, 45);
    char *text = render(r);
    assert_non_null(strstr(text, "rpc_duration_seconds_bucket{le=\"5e-05\"} 0\n"
                                 "rpc_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
    assert_non_null(strstr(text, "rpc_duration_seconds_bucket{le=\"30\"} 1\n"
                                 "rpc_duration_seconds_bucket{le=\"60\"} 2\n"));
    free(text);
    tm_registry_free(r);
}

/* Values rebuilt on every collection: clear drops every series. */
static void test_clear_and_set_since(void **state)
{
    (void)state;
    tm_registry *r = tm_registry_new();
    const char *keys[] = {"vm", NULL};
    tm_metric *c = tm_metric_new(r, TM_COUNTER, "vm.disk.io", "By", "d", keys, NULL, 0);
    const char *a[] = {"a", NULL}, *b[] = {"b", NULL};
    tm_set_since(c, a, 512, 1000);
    tm_set_since(c, b, 7, 0);
    char *text = render(r);
    assert_non_null(strstr(text, "vm_disk_io_bytes_total{vm=\"a\"} 512\n"));
    free(text);
    tm_metric_clear(c);
    double v;
    assert_false(tm_read(c, a, &v));
    tm_set_since(c, b, 8, 0);
    text = render(r);
    assert_null(strstr(text, "vm=\"a\""));
    assert_non_null(strstr(text, "vm_disk_io_bytes_total{vm=\"b\"} 8\n"));
    free(text);
    tm_registry_free(r);
}

/* Handles: looked up once, updated without hashing; the same series as the
 * label-value calls see. */
static void test_series_handles(void **state)
{
    (void)state;
    tm_registry *r = tm_registry_new();
    const char *keys[] = {"m", NULL};
    tm_metric *c = tm_metric_new(r, TM_COUNTER, "calls", "", "d", keys, NULL, 0);
    const double bounds[] = {1, 2};
    tm_metric *h = tm_metric_new(r, TM_HISTOGRAM, "lat", "s", "d", keys, bounds, 2);
    const char *x[] = {"x", NULL};
    tm_series *cs = tm_series_get(c, x), *hs = tm_series_get(h, x);
    assert_ptr_equal(cs, tm_series_get(c, x));
    for (int i = 0; i < 5; i++)
        tm_series_add(cs, 1);
    tm_series_add(cs, -1); /* a counter never goes down */
    tm_add(c, x, 2);       /* the same series */
    tm_series_observe(hs, 1.5);
    tm_series_observe(hs, 0.5);
    double v = 0;
    assert_true(tm_read(c, x, &v));
    assert_true(v == 7);
    assert_true(tm_read(h, x, &v));
    assert_true(v == 2);
    char *text = render(r);
    assert_non_null(strstr(text, "lat_seconds_bucket{m=\"x\",le=\"1\"} 1\n"));
    free(text);
    tm_series_add(NULL, 1); /* telemetry off: no-ops */
    tm_series_observe(NULL, 1);
    assert_null(tm_series_get(NULL, x));
    tm_registry_free(r);
}

static void test_process_metrics(void **state)
{
    (void)state;
    tm_process_stats s;
    chcp_error *err = NULL;
    assert_int_equal(tm_process_stats_read(&s, &err), 0);
    assert_true(s.rss_bytes > 0);
    assert_true(s.open_fds >= 3);
    tm_registry *r = tm_registry_new();
    tm_register_process_metrics(r);
    char *text = render(r);
    assert_non_null(strstr(text, "process_cpu_time_seconds_total{cpu_mode=\"user\"} "));
    assert_non_null(strstr(text, "process_memory_usage_bytes "));
    assert_non_null(strstr(text, "process_uptime_seconds "));
    free(text);
    tm_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_counter_and_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_many_series),
        cmocka_unit_test(test_process_metrics),
        cmocka_unit_test(test_default_buckets),
        cmocka_unit_test(test_clear_and_set_since),
        cmocka_unit_test(test_series_handles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
