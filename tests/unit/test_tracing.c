/*
 * test_tracing.c - W3C trace context parsing, ParentBased(TraceIdRatio)
 * sampling, and the "errors are always exported" rule applied per local trace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "telemetry/telemetry.h"

typedef struct sink {
    tm_span *spans[64];
    size_t n;
} sink;

static void record(tm_span *s, void *ud)
{
    sink *k = ud;
    assert_true(k->n < 64);
    k->spans[k->n++] = s;
}

static void sink_clear(sink *k)
{
    for (size_t i = 0; i < k->n; i++)
        tm_span_release(k->spans[i]);
    k->n = 0;
}

static void test_traceparent(void **state)
{
    (void)state;
    tm_span_context c;
    const char *ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_true(tm_traceparent_parse(ok, "congo=t61rcWkgMzE", &c));
    assert_int_equal(c.flags, 1);
    assert_true(c.remote);
    assert_string_equal(c.tracestate, "congo=t61rcWkgMzE");
    char out[56];
    tm_traceparent_format(&c, out);
    assert_string_equal(out, ok);
    /* Future versions may carry more fields after a dash. */
    assert_true(tm_traceparent_parse(
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", NULL, &c));
    const char *bad[] = {
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* v00 must be exact */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero span id */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper case */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* invalid version */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(tm_traceparent_parse(bad[i], NULL, &c));
}

static void test_ratio_sampler(void **state)
{
    (void)state;
    uint8_t id[16] = {0};
    assert_false(tm_tracer_should_sample(0, id));
    assert_true(tm_tracer_should_sample(1, id));
    /* Monotone: whatever 0.25 samples, 0.5 samples too; about the right share. */
    int n25 = 0, n50 = 0;
    for (int i = 0; i < 4000; i++) {
        uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull;
        for (int k = 0; k < 8; k++)
            id[8 + k] = (uint8_t)(x >> (56 - 8 * k));
        bool a = tm_tracer_should_sample(0.25, id), b = tm_tracer_should_sample(0.5, id);
        assert_true(!a || b);
        n25 += a;
        n50 += b;
    }
    assert_in_range(n25, 800, 1200);
    assert_in_range(n50, 1800, 2200);
}

static void test_rate_zero_exports_only_errors(void **state)
{
    (void)state;
    sink k = {0};
    tm_tracer *t = tm_tracer_new(0, record, &k);

    tm_span *ok = tm_span_start(t, "ok", TM_SPAN_SERVER, NULL);
    tm_span *child = tm_span_start_child(ok, "child", TM_SPAN_CLIENT);
    tm_span_end(child);
    tm_span_end(ok);
    assert_int_equal(k.n, 0);

    /* An error anywhere in the local trace exports the whole trace. */
    tm_span *root = tm_span_start(t, "fails", TM_SPAN_SERVER, NULL);
    tm_span *c1 = tm_span_start_child(root, "vmm call", TM_SPAN_CLIENT);
    tm_span_set_status(c1, TM_STATUS_ERROR, "boom");
    tm_span_end(c1);
    tm_span *c2 = tm_span_start_child(root, "late", TM_SPAN_INTERNAL);
    tm_span_end(root);
    assert_int_equal(k.n, 2);
    tm_span_end(c2); /* a child ending after its root follows the decision */
    assert_int_equal(k.n, 3);
    for (size_t i = 0; i < k.n; i++) {
        const tm_span_context *c = tm_span_context_get(k.spans[i]);
        assert_memory_equal(c->trace_id, tm_span_context_get(k.spans[0])->trace_id, 16);
        assert_true(c->flags & 1); /* exported spans are marked sampled */
    }
    sink_clear(&k);

    /* Dropped trace: a child ending late is dropped too, unless it fails. */
    tm_span *r2 = tm_span_start(t, "r2", TM_SPAN_SERVER, NULL);
    tm_span *late_ok = tm_span_start_child(r2, "late ok", TM_SPAN_CLIENT);
    tm_span *late_err = tm_span_start_child(r2, "late err", TM_SPAN_CLIENT);
    tm_span_end(r2);
    tm_span_end(late_ok);
    assert_int_equal(k.n, 0);
    tm_span_set_status(late_err, TM_STATUS_ERROR, "x");
    tm_span_end(late_err);
    assert_int_equal(k.n, 1);
    sink_clear(&k);
    tm_tracer_free(t);
}

/* tm_span_capture: a call that did not end OK is exported although its
 * status stays UNSET (a caller's mistake), and the sampled flag it propagates
 * stays what the sampler said. Error capture can be switched off. */
static void test_capture(void **state)
{
    (void)state;
    sink k = {0};
    tm_tracer *t = tm_tracer_new(0, record, &k);
    tm_span *root = tm_span_start(t, "not found", TM_SPAN_SERVER, NULL);
    tm_span *op = tm_span_start_child(root, "op", TM_SPAN_INTERNAL);
    assert_int_equal(tm_span_context_get(root)->flags & 1, 0);
    tm_span_end(op);
    tm_span_capture(root);
    tm_span_end(root);
    assert_int_equal(k.n, 2);
    sink_clear(&k);

    /* Without error capture an ERROR span alone exports nothing ... */
    tm_tracer_set_capture_errors(t, false);
    tm_span *r2 = tm_span_start(t, "fails", TM_SPAN_SERVER, NULL);
    tm_span_set_status(r2, TM_STATUS_ERROR, "boom");
    tm_span_end(r2);
    assert_int_equal(k.n, 0);
    /* ... but an explicit capture still does. */
    tm_span *r3 = tm_span_start(t, "captured", TM_SPAN_SERVER, NULL);
    tm_span_capture(r3);
    tm_span_end(r3);
    assert_int_equal(k.n, 1);
    sink_clear(&k);
    tm_tracer_free(t);
}

static void test_parent_based(void **state)
{
    (void)state;
    sink k = {0};
    tm_tracer *t = tm_tracer_new(0, record, &k);
    tm_span_context parent;
    assert_true(tm_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                     NULL, &parent));
    /* A sampled remote parent is honoured even at rate 0. */
    tm_span *s = tm_span_start(t, "server", TM_SPAN_SERVER, &parent);
    assert_memory_equal(tm_span_context_get(s)->trace_id, parent.trace_id, 16);
    tm_span_end(s);
    assert_int_equal(k.n, 1);
    sink_clear(&k);
    tm_tracer_free(t);

    /* An unsampled remote parent is honoured at rate 1. */
    t = tm_tracer_new(1, record, &k);
    assert_true(tm_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                                     NULL, &parent));
    s = tm_span_start(t, "server", TM_SPAN_SERVER, &parent);
    tm_span_end(s);
    assert_int_equal(k.n, 0);
    s = tm_span_start(t, "root", TM_SPAN_SERVER, NULL);
    tm_span_end(s);
    assert_int_equal(k.n, 1);
    sink_clear(&k);
    tm_tracer_free(t);
}

static void test_disabled_is_noop(void **state)
{
    (void)state;
    tm_span *s = tm_span_start(NULL, "x", TM_SPAN_SERVER, NULL);
    assert_null(s);
    tm_span_set_str(s, "k", "v");
    tm_span_add_event(s, "e", NULL);
    assert_null(tm_span_start_child(s, "c", TM_SPAN_CLIENT));
    tm_span_end(s);
}

static void test_limits(void **state)
{
    (void)state;
    sink k = {0};
    tm_tracer *t = tm_tracer_new(1, record, &k);
    tm_span *s = tm_span_start(t, "many", TM_SPAN_INTERNAL, NULL);
    static char keys[300][16]; /* keys are not copied: they must outlive the span */
    for (int i = 0; i < 300; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        tm_span_set_int(s, keys[i], i);
        tm_span_add_event(s, "e", (const char *const[]){"a", "b", NULL});
    }
    tm_span_set_str(s, "k1", "replaced"); /* same key: replaced, not added */
    tm_span_end(s);
    assert_int_equal(k.n, 1);
    chcp_buf b = CHCP_BUF_INIT;
    tm_registry *r = tm_registry_new();
    tm_resource res = {.registry = r, .scope_name = "t", .scope_version = "1"};
    tm_otlp_encode_spans(&res, k.spans, k.n, &b);
    assert_true(b.len > 1000);
    buf_free(&b);
    tm_registry_free(r);
    sink_clear(&k);
    tm_tracer_free(t);
}

/* Spans come from a pool: a released span comes back, with nothing of its
 * last life (attributes, events, status, parent, arena contents). */
static void test_pool_reuse_is_clean(void **state)
{
    (void)state;
    sink k = {0};
    tm_tracer *t = tm_tracer_new(1, record, &k);
    tm_span_context parent;
    assert_true(tm_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                     "k=v", &parent));
    tm_span *a = tm_span_start(t, "first", TM_SPAN_SERVER, &parent);
    char big[2000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tm_span_set_str(a, "big", big);
    tm_span_add_event(a, "ev", (const char *const[]){"x", "1", NULL});
    tm_span_set_status(a, TM_STATUS_ERROR, "bad");
    tm_span *c = tm_span_start_child(a, "child", TM_SPAN_CLIENT);
    assert_string_equal(tm_span_context_get(c)->tracestate, "k=v"); /* inherited */
    tm_span_end(c);
    tm_span_end(a);
    assert_int_equal(k.n, 2);
    const tm_span *old = k.spans[0];
    sink_clear(&k); /* back to the pool */

    tm_span *b = tm_span_start(t, "second", TM_SPAN_INTERNAL, NULL);
    tm_span_add_static_str(b, "only", "one");
    tm_span_end(b);
    assert_int_equal(k.n, 1);
    assert_true(k.spans[0] == old || k.spans[0] != NULL); /* (the pool may hand either) */
    chcp_buf out = CHCP_BUF_INIT;
    tm_registry *r = tm_registry_new();
    tm_resource res = {.registry = r, .scope_name = "t", .scope_version = "1"};
    tm_otlp_encode_spans(&res, k.spans, k.n, &out);
    /* Nothing of the first life in the bytes of the second. */
    assert_null(memmem(out.data, out.len, "yyyy", 4));
    assert_null(memmem(out.data, out.len, "bad", 3));
    assert_null(memmem(out.data, out.len, "k=v", 3));
    assert_null(memmem(out.data, out.len, "ev", 2));
    assert_non_null(memmem(out.data, out.len, "only", 4));
    buf_free(&out);
    tm_registry_free(r);
    assert_null(tm_span_context_get(k.spans[0])->tracestate);
    sink_clear(&k);
    tm_tracer_free(t);
}

/* A child of a span that already ended is not started (its trace is gone);
 * tm_span_add_* appends without looking, tm_span_set_* replaces. */
static void test_children_and_attribute_calls(void **state)
{
    (void)state;
    sink k = {0};
    tm_tracer *t = tm_tracer_new(1, record, &k);
    tm_span *p = tm_span_start(t, "p", TM_SPAN_SERVER, NULL);
    tm_span_set_int(p, "n", 1);
    tm_span_set_int(p, "n", 2); /* replaced */
    tm_span_add_int(p, "m", 3);
    tm_span_add_str(p, "s", "abcdef", 3);
    tm_span_end(p);
    assert_null(tm_span_start_child(p, "late", TM_SPAN_INTERNAL));
    chcp_buf out = CHCP_BUF_INIT;
    tm_registry *r = tm_registry_new();
    tm_resource res = {.registry = r, .scope_name = "t", .scope_version = "1"};
    tm_otlp_encode_spans(&res, k.spans, k.n, &out);
    assert_non_null(memmem(out.data, out.len, "abc", 3));
    assert_null(memmem(out.data, out.len, "abcd", 4));
    buf_free(&out);
    tm_registry_free(r);
    sink_clear(&k);
    tm_tracer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_ratio_sampler),
        cmocka_unit_test(test_rate_zero_exports_only_errors),
        cmocka_unit_test(test_capture),
        cmocka_unit_test(test_pool_reuse_is_clean),
        cmocka_unit_test(test_children_and_attribute_calls),
        cmocka_unit_test(test_parent_based),
        cmocka_unit_test(test_disabled_is_noop),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
