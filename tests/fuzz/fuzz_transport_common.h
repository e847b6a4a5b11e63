/*
 * fuzz_transport_common.h - shared harness for the transport fuzz targets:
 * one transport on a loop that never runs, and a socketless connection per
 * input (conn_new_fake) whose output goes nowhere. The handler answers some
 * requests at once and holds others until later in the input or until the
 * connection is torn down (on_cancel), so the pipelining, cancel and
 * late-answer paths are all exercised. Stream hooks route by the path's
 * length: some requests are buffered, some answered on their headers (404),
 * some streamed (bodies consumed in part, responses streamed and ended when
 * the body ends, at teardown or on cancel), so the headers-first, window and
 * streamed-response paths are fuzzed too.
 */
#ifndef FUZZ_TRANSPORT_COMMON_H
#define FUZZ_TRANSPORT_COMMON_H

#include <string.h>

#include "transport/internal.h"

#define FUZZ_MAX_HELD 64

static uv_loop_t fuzz_loop;
static transport *fuzz_t;
static http_request *fuzz_held[FUZZ_MAX_HELD];
static int fuzz_n_held;

static void fuzz_answer(http_request *req)
{
    static const http_header hs[] = {{"content-type", "application/proto", 12, 17}};
    static const http_header tr[] = {{"grpc-status", "0", 11, 1}};
    http_response resp = {.status = req->body_too_large ? 413 : 200,
                          .headers = hs,
                          .n_headers = 1,
                          .body = req->body,
                          .body_len = req->body_len};
    if (req->http_major == 2 && (req->n_headers & 1)) {
        resp.trailers = tr;
        resp.n_trailers = 1;
    }
    /* Touch everything the transport hands out: ASan checks it is valid. */
    volatile size_t sum = strlen(req->method) + strlen(req->path) + strlen(req->peer);
    if (req->query)
        sum += strlen(req->query);
    for (size_t i = 0; i < req->n_headers; i++)
        sum += strlen(req->headers[i].name) + strlen(req->headers[i].value);
    (void)sum;
    (void)http_request_header(req, "content-type");
    http_respond(req, &resp);
}

static void fuzz_on_request(http_request *req, void *ud)
{
    if (fuzz_n_held < FUZZ_MAX_HELD && (req->body_len & 1)) {
        fuzz_held[fuzz_n_held++] = req;
        return;
    }
    fuzz_answer(req);
}

static void fuzz_stream_end(int i);
static int fuzz_stream_find(http_request *req);

static void fuzz_on_cancel(http_request *req, void *ud)
{
    int si = fuzz_stream_find(req);
    if (si >= 0) {
        fuzz_stream_end(si);
        return;
    }
    for (int i = 0; i < fuzz_n_held; i++) {
        if (fuzz_held[i] == req) {
            fuzz_held[i] = fuzz_held[--fuzz_n_held];
            fuzz_answer(req);
            return;
        }
    }
}

static http_request *fuzz_streams[FUZZ_MAX_HELD];
static int fuzz_n_streams;

static void fuzz_stream_end(int i)
{
    http_request *req = fuzz_streams[i];
    fuzz_streams[i] = fuzz_streams[--fuzz_n_streams];
    http_response_begin(req, 200, NULL, 0);
    http_response_write(req, (const uint8_t *)"end", 3);
    http_response_end(req, NULL, 0);
}

static int fuzz_stream_find(http_request *req)
{
    for (int i = 0; i < fuzz_n_streams; i++)
        if (fuzz_streams[i] == req)
            return i;
    return -1;
}

static http_body_mode fuzz_on_headers(http_request *req, void *ud)
{
    static const http_header hs[] = {{"content-type", "application/connect+proto", 12, 25}};
    switch (strlen(req->path) % 4) {
    case 0:
        return HTTP_BODY_BUFFER;
    case 1: {
        http_response resp = {.status = 404};
        http_respond(req, &resp);
        return HTTP_BODY_DISCARD;
    }
    default:
        if (fuzz_n_streams == FUZZ_MAX_HELD)
            return HTTP_BODY_BUFFER;
        fuzz_streams[fuzz_n_streams++] = req;
        if (strlen(req->path) % 4 == 3) {
            http_response_begin(req, 200, hs, 1);
            http_response_want_drain(req, 0);
        }
        return HTTP_BODY_STREAM;
    }
}

static void fuzz_on_body(http_request *req, const uint8_t *data, size_t len, bool end, void *ud)
{
    int i = fuzz_stream_find(req);
    if (i < 0)
        return;
    /* Echo and consume some pieces; hold others (the window fills). */
    if (len & 1) {
        http_response_begin(req, 200, NULL, 0);
        http_response_write(req, data, len);
        http_request_consume(req, len);
    }
    if (end || http_response_queued(req) > 8192)
        fuzz_stream_end(i);
}

static void fuzz_on_drain(http_request *req, void *ud)
{
    (void)http_response_queued(req);
}

static void fuzz_release_held(void)
{
    while (fuzz_n_held > 0)
        fuzz_answer(fuzz_held[--fuzz_n_held]);
    while (fuzz_n_streams > 0)
        fuzz_stream_end(fuzz_n_streams - 1);
}

static void fuzz_sink(const uint8_t *data, size_t len, void *ud)
{
    (void)data;
    (void)len;
}

static void fuzz_init(void)
{
    if (fuzz_t)
        return;
    uv_loop_init(&fuzz_loop);
    transport_limits lim;
    transport_limits_default(&lim);
    lim.max_body_bytes = 4096;
    lim.max_header_bytes = 2048;
    lim.h2_max_concurrent_streams = 16;
    fuzz_t = transport_new(&fuzz_loop, &lim, fuzz_on_request, fuzz_on_cancel, NULL);
    http_stream_hooks hooks = {fuzz_on_headers, fuzz_on_body, fuzz_on_drain, NULL};
    transport_set_stream_hooks(fuzz_t, &hooks);
}

/* Feed `data` in pieces whose sizes come from the input itself, answering
 * held requests halfway; then tear the connection down. */
static void fuzz_run(const uint8_t *prefix, size_t prefix_len, const uint8_t *data, size_t size)
{
    fuzz_init();
    conn *c = conn_new_fake(fuzz_t, fuzz_sink, NULL);
    if (prefix_len)
        conn_feed(c, prefix, prefix_len);
    size_t step = size > 0 ? (size_t)(data[0] % 64) + 1 : 1;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        conn_feed(c, data + off, n);
        off += n;
        conn_flush_fake(c);
        if (off >= size / 2)
            fuzz_release_held();
    }
    conn_flush_fake(c);
    conn_destroy_fake(c);
    fuzz_release_held();
}

#endif
