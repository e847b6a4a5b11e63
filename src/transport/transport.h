/*
 * transport.h - listeners and HTTP connections (HTTP/1.1 and h2c) on one
 * libuv loop, behind a single request abstraction.
 *
 * A connection sniffs the HTTP/2 client preface: h2c (prior knowledge) goes to
 * nghttp2, everything else to http-parser. A body-less HTTP/1.1 request with
 * "Upgrade: h2c" switches the connection to HTTP/2 (answered on stream 1). Either way the layer
 * above sees the same thing: a complete `http_request` (headers plus the whole body, bounded by the
 * body limit) and answers it, later and exactly once, with `http_respond`. The transport owns the
 * request memory until then.
 *
 * Output is batched: responses are queued on the connection and written with
 * one write per loop pass; TCP_NODELAY is set on TCP sockets.
 *
 * Wire behaviour worth knowing in the layer above:
 *  - HTTP/1.1: keep-alive and pipelining (answers go out in request order, at
 *    most 16 requests wait for answers per connection), chunked bodies,
 *    "100 Continue", HTTP/1.0. Every response but 204 gets content-length,
 *    and "connection: close" when the connection ends after it; HEAD, 204
 *    and 304 answers carry no body. Response headers named content-length,
 *    connection or transfer-encoding are ignored.
 *    Malformed requests get 400, an oversized header block 431, a request
 *    that does not finish arriving within read_timeout_ms 408; each closes.
 *    EOF from the client cancels the requests still being handled.
 *  - HTTP/2: content-length is added when there is a body and no trailers;
 *    connection-specific headers are dropped; a header block over the limit
 *    resets that stream; a response sent before the request's END_STREAM is
 *    followed by RST_STREAM(NO_ERROR).
 *  - Response headers with CR, LF or NUL in them are dropped, never sent.
 *  - A status outside 200..999 is sent as 500.
 */
#ifndef CHCP_TRANSPORT_H
#define CHCP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

typedef struct http_header {
    const char *name;  /* lower-case, NUL-terminated */
    const char *value; /* NUL-terminated (values with NULs are refused) */
    size_t name_len;
    size_t value_len;
} http_header;

typedef struct http_request {
    int http_major;     /* 1 or 2 */
    const char *method; /* "POST", "GET", ... */
    const char *path;   /* the path only, percent-decoding NOT applied */
    const char *query;  /* text after '?', or NULL */
    const http_header *headers;
    size_t n_headers;
    const uint8_t *body;
    size_t body_len;
    /* The body was larger than the configured limit: `body` holds nothing
     * useful. The layer above answers (resource_exhausted in its protocol);
     * the transport then closes the connection (HTTP/1.1) or resets the stream
     * (HTTP/2) because the rest of the body will not be read. */
    bool body_too_large;
    const char *peer;     /* "127.0.0.1:5555", "unix", ... for logs */
    uint64_t received_ns; /* monotonic time the request headers were complete */
    void *user;           /* free for the layer above */
} http_request;

typedef struct http_response {
    int status;
    const http_header *headers; /* names in lower case; transport adds
                                   content-length (h1), date is not sent */
    size_t n_headers;
    const uint8_t *body;
    size_t body_len;
    /* HTTP/2 trailers (gRPC). Must be empty for HTTP/1.1. With trailers and
     * an empty body, HTTP/2 still sends headers, no DATA, then trailers. */
    const http_header *trailers;
    size_t n_trailers;
} http_response;

/* Called when a request is complete (or as soon as its body is known to be
 * too large). The callee must eventually call http_respond(req, ...) exactly
 * once, from the loop thread; it may do so right inside this callback. */
typedef void (*http_request_fn)(http_request *req, void *ud);
/* The peer went away (connection closed, stream reset) before the response
 * was sent. The callee must still call http_respond(); its output is dropped
 * and that call frees the request. Optional (may be NULL). */
typedef void (*http_cancel_fn)(http_request *req, void *ud);

typedef struct transport_limits {
    size_t max_body_bytes;              /* default 4 MiB */
    size_t max_header_bytes;            /* default 64 KiB, whole header block */
    uint64_t idle_timeout_ms;           /* no request in flight, no bytes: close (default 60 s) */
    uint64_t read_timeout_ms;           /* a started request must complete within (default 30 s) */
    unsigned max_connections;           /* default 1024; beyond: accept then close at once */
    uint32_t h2_max_concurrent_streams; /* default 100 */
    uint32_t h2_reset_rate_burst;       /* nghttp2 stream reset rate limit (default 1000) */
    uint32_t h2_reset_rate_per_sec;     /* default 33 */
    uint32_t h2_max_continuations;      /* default 8 */
} transport_limits;

void transport_limits_default(transport_limits *l);

typedef struct transport transport;

transport *transport_new(uv_loop_t *loop, const transport_limits *limits,
                         http_request_fn on_request, http_cancel_fn on_cancel, void *ud);

/* Listen on TCP host:port (IPv4 or IPv6 literal, or "localhost", which means
 * 127.0.0.1). port 0 picks one; transport_tcp_port() tells which. One TCP and
 * one Unix listener per transport. NULL from transport_new: out of memory in
 * nghttp2 setup. */
int transport_listen_tcp(transport *t, const char *host, uint16_t port, chcp_error **err);
uint16_t transport_tcp_port(const transport *t);
/* Listen on a Unix socket path. An existing socket file nobody accepts on is
 * replaced; a live one or a non-socket file is an error. The file is removed
 * when the listener closes. */
int transport_listen_unix(transport *t, const char *path, chcp_error **err);

/* Answer a request. Everything in `resp` is copied before this returns. After
 * the call `req` is gone; a second call is a bug. */
void http_respond(http_request *req, const http_response *resp);

/* Case-insensitive header lookup (first match), NULL if absent. */
const char *http_request_header(const http_request *req, const char *name);

/* Graceful stop: close listeners, let in-flight requests finish, close idle
 * connections. Busy HTTP/1.1 connections close after their last answer
 * ("connection: close"); HTTP/2 ones get GOAWAY and close once their streams
 * are done. `transport_active_requests` (dispatched, not yet answered) and
 * `transport_connection_count` tell when it is done. */
void transport_stop_accepting(transport *t);
size_t transport_active_requests(const transport *t);
size_t transport_connection_count(const transport *t);
/* Close everything at once; outstanding requests get on_cancel (their later
 * http_respond only frees them). `done` (optional) runs once every libuv
 * handle is closed and the transport is freed, so the loop must keep running
 * until then. */
void transport_close(transport *t, void (*done)(void *ud), void *ud);

#endif
