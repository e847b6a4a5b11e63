/*
 * otlp_sample.c - writes chcp's OTLP encoding of known spans and metrics to
 * files, so test_otlp_encoding.py can decode them with the OpenTelemetry
 * project's own generated protobuf classes (an independent decoder).
 *
 *   otlp_sample <spans.bin> <metrics.bin>
 */
#include <stdio.h>
#include <string.h>

#include "telemetry/telemetry.h"

typedef struct sink {
    tm_span *spans[8];
    size_t n;
} sink;

static void record(tm_span *s, void *ud)
{
    sink *k = ud;
    if (k->n < 8)
        k->spans[k->n++] = s;
    else
        tm_span_release(s);
}

static int write_file(const char *path, const chcp_buf *b)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len) {
        perror(path);
        return -1;
    }
    return fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: otlp_sample spans.bin metrics.bin\n");
        return 2;
    }
    tm_registry *r = tm_registry_new();
    tm_registry_set_resource(r, "service.name", "chcp-test");
    tm_registry_set_resource(r, "service.version", "9.9.9");
    tm_resource res = {.registry = r, .scope_name = "chcp", .scope_version = "1.2.3"};

    sink k = {0};
    tm_tracer *t = tm_tracer_new(1, record, &k);
    tm_span_context parent;
    tm_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=b", &parent);
    tm_span *root =
        tm_span_start(t, "cloudhypervisor.v1.VmService/CreateVm", TM_SPAN_SERVER, &parent);
    tm_span_set_str(root, "rpc.system", "connect_rpc");
    tm_span_set_int(root, "rpc.grpc.status_code", 5);
    tm_span_set_double(root, "ratio", 0.25);
    tm_span_set_bool(root, "retry", true);
    tm_span_add_event(root, "vm.state", (const char *const[]){"state", "RUNNING", NULL});
    tm_span *child = tm_span_start_child(root, "vmm PUT vm.boot", TM_SPAN_CLIENT);
    tm_span_set_status(child, TM_STATUS_ERROR, "boot failed");
    tm_span_end(child);
    tm_span_end(root);
    /* Spans go back to the pool and come out again: nothing of the first
     * life may show in the second. */
    for (size_t i = 0; i < k.n; i++)
        tm_span_release(k.spans[i]);
    k.n = 0;
    root = tm_span_start(t, "cloudhypervisor.v1.VmService/CreateVm", TM_SPAN_SERVER, &parent);
    tm_attr_block *block = tm_attr_block_new((const char *const[]){
        "rpc.service", "cloudhypervisor.v1.VmService", "rpc.method", "CreateVm", NULL});
    tm_span_add_block(root, block);
    tm_span_set_str(root, "rpc.system", "connect_rpc");
    tm_span_set_int(root, "rpc.grpc.status_code", 5);
    tm_span_set_double(root, "ratio", 0.25);
    tm_span_set_bool(root, "retry", true);
    tm_span_add_str(root, "network.peer.address", "127.0.0.1:9", 9); /* the first 9 bytes */
    tm_span_add_int(root, "network.peer.port", 41000);
    char big[3000]; /* larger than the span's inline arena: overflow chunks */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tm_span_set_str(root, "big", big);
    static char many[20][16]; /* more than the inline attribute slots */
    for (int i = 0; i < 20; i++) {
        snprintf(many[i], sizeof(many[i]), "n%d", i);
        tm_span_set_int(root, many[i], i);
    }
    tm_span_add_event(root, "vm.state", (const char *const[]){"state", "RUNNING", NULL});
    child = tm_span_start_child(root, "vmm PUT vm.boot", TM_SPAN_CLIENT);
    tm_span_set_status(child, TM_STATUS_ERROR, "boot failed");
    tm_span_end(child);
    tm_span_end(root);

    chcp_buf spans = CHCP_BUF_INIT;
    tm_otlp_encode_spans(&res, k.spans, k.n, &spans);
    tm_attr_block_free(block);

    const char *keys[] = {"rpc.method", NULL};
    const char *create[] = {"CreateVm", NULL};
    tm_metric *c = tm_metric_new(r, TM_COUNTER, "rpc.server.requests", "{request}", "Requests.",
                                 keys, NULL, 0);
    tm_metric *u = tm_metric_new(r, TM_UPDOWN, "rpc.server.active_requests", "{request}", "Active.",
                                 keys, NULL, 0);
    tm_metric *g = tm_metric_new(r, TM_GAUGE, "process.uptime", "s", "Uptime.", NULL, NULL, 0);
    const double bounds[] = {0.1, 1};
    tm_metric *h = tm_metric_new(r, TM_HISTOGRAM, "rpc.server.request.duration", "s", "Duration.",
                                 keys, bounds, 2);
    tm_add(c, create, 3);
    tm_add(u, create, 2);
    tm_add(u, create, -1);
    tm_set(g, NULL, 12.5);
    tm_observe(h, create, 0.05);
    tm_observe(h, create, 0.5);
    tm_observe(h, create, 5);
    chcp_buf metrics = CHCP_BUF_INIT;
    tm_otlp_encode_metrics(&res, r, &metrics);

    int rc = write_file(argv[1], &spans) || write_file(argv[2], &metrics);
    for (size_t i = 0; i < k.n; i++)
        tm_span_release(k.spans[i]);
    buf_free(&spans);
    buf_free(&metrics);
    tm_tracer_free(t);
    tm_registry_free(r);
    return rc ? 1 : 0;
}
