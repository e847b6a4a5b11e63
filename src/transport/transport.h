/*
 * transport.h - listeners and HTTP connections (HTTP/1.1 and HTTP/2, clear
 * text or TLS) on one libuv loop, behind a single request abstraction.
 *
 * Under TLS (tls.c) the protocol ALPN negotiated is the connection's. Otherwise
 * a connection sniffs the HTTP/2 client preface: h2c (prior knowledge) goes to
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
 *
 * Defences (docs/security.md): request and response bytes are budgeted per
 * connection and in total (budget.c; HTTP/2 windows are the budgets); TCP and
 * Unix-socket connections are separate pools with a per-peer cap and
 * eviction of idle or stalled connections when full (peers.c); header, read,
 * write, idle and age deadlines that control frames and trickled bytes do not
 * renew (conn.c).
 *
 * Streaming (optional, transport_set_stream_hooks): the layer above sees a
 * request as soon as its header block is complete and decides there how the
 * body is delivered: gathered whole as above (unary calls), streamed in
 * pieces with backpressure (client and bidi streams), or discarded (answered
 * at once: 404, 415). It can answer in one piece (http_respond) or stream the
 * response (http_response_begin/write/end) and is told when queued output
 * has drained. Every buffer is bounded: a streamed body holds at most one
 * window of bytes not yet consumed (HTTP/2 flow control; HTTP/1.1 stops
 * reading), and a streamed response is pulled from its queue only as the
 * client reads (HTTP/2 windows, socket writability).
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

/* Who is at the other end of a connection, as the transport established it
 * (tls.c, conn.c). Shared by every request of the connection; valid as long
 * as the request. Strings are printable ASCII (names with other bytes are
 * left out). */
typedef struct http_peer_identity {
    bool tls;                /* the connection is TLS */
    const char *tls_version; /* "TLSv1.3", ... (TLS only) */
    const char *alpn;        /* "h2", "http/1.1", or NULL when none was negotiated */
    /* A client certificate was presented and its chain verified against the
     * client CA (an unverifiable one fails the handshake). */
    bool client_cert;
    const char *subject;   /* its subject, RFC 2253 ("CN=deployer,O=example") */
    const char *spiffe_id; /* its one URI SAN, when that is a spiffe:// ID */
    /* Its subject alternative names: "dns:host", "uri:...", "email:...",
     * "ip:192.0.2.1". */
    const char *const *sans;
    size_t n_sans;
    /* Unix socket: the peer's credentials (SO_PEERCRED, SO_PEERGROUPS) at
     * connect time. */
    bool unix_peer;
    bool has_cred;
    uint32_t uid, gid;
    int32_t pid;
    const uint32_t *groups; /* supplementary groups */
    size_t n_groups;
} http_peer_identity;

typedef struct http_request {
    int http_major;     /* 1 or 2 */
    const char *method; /* "POST", "GET", ... */
    const char *path;   /* the path only, percent-decoding NOT applied */
    const char *query;  /* text after '?', or NULL */
    const http_header *headers;
    size_t n_headers;
    /* Valid until http_request_consume_body() or the answer; gone (empty)
     * once the connection dies, so read it in on_request. */
    const uint8_t *body;
    size_t body_len;
    /* The body was larger than the configured limit: `body` holds nothing
     * useful. The layer above answers (resource_exhausted in its protocol);
     * the transport then closes the connection (HTTP/1.1) or resets the stream
     * (HTTP/2) because the rest of the body will not be read. */
    bool body_too_large;
    /* The connection's or the daemon's request memory budget ran out while
     * the body arrived (transport_limits.conn_buffer_bytes/total_buffer_bytes):
     * `body` holds nothing useful; answered and ended like body_too_large. */
    bool body_over_budget;
    const char *budget_spent;           /* with body_over_budget: "connection" or "server" */
    const char *peer;                   /* "127.0.0.1:5555", "unix", ... for logs */
    const http_peer_identity *identity; /* never NULL for requests from a socket */
    uint64_t received_ns;               /* monotonic time the request headers were complete */
    void *user;                         /* free for the layer above */
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
    size_t max_body_bytes;             /* default 4 MiB */
    size_t max_header_bytes;           /* default 64 KiB, whole header block */
    uint64_t idle_timeout_ms;          /* no request for this long: close (default 60 s) */
    uint64_t read_timeout_ms;          /* a started request must complete within (default 30 s) */
    uint64_t header_timeout_ms;        /* its header block must complete within (default 10 s) */
    uint64_t write_timeout_ms;         /* a response must be delivered within (default 30 s) */
    uint64_t max_connection_age_ms;    /* then GOAWAY / "connection: close" (default 1 h) */
    unsigned max_connections;          /* TCP connections (default 1024) */
    unsigned max_connections_per_peer; /* TCP connections from one IP address (default 256) */
    unsigned max_unix_connections; /* Unix-socket connections, a pool of their own (default 64) */
    /* Memory budgets. Request bytes (bodies being received, decoded messages
     * of requests in progress) and, separately, response bytes not yet
     * written, per connection and daemon-wide. Each connection may hold
     * TRANSPORT_CONN_ALLOWANCE of each without touching the daemon-wide
     * budget, so one client's burst never starves another's small calls. */
    size_t conn_buffer_bytes;           /* default max(16 MiB, 2 x max_body_bytes) */
    size_t total_buffer_bytes;          /* beyond the allowances; default max(64 MiB, 4 x conn) */
    uint32_t h2_max_concurrent_streams; /* default 100 */
    uint32_t h2_reset_rate_burst;       /* nghttp2 stream reset rate limit (default 1000) */
    uint32_t h2_reset_rate_per_sec;     /* default 33 */
    uint32_t h2_max_continuations;      /* default 8 */
} transport_limits;

/* Request bytes, and response bytes, every connection may hold outside the
 * daemon-wide budget (small calls keep working while it is exhausted). */
#define TRANSPORT_CONN_ALLOWANCE ((size_t)16 * 1024)

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

/* TLS on the TCP listener (tls.c): OpenSSL through memory BIOs, so the
 * connection code keeps its non-blocking reads and batched writes. ALPN
 * offers h2 and http/1.1 (a client that names neither is served by preface
 * sniffing, as in clear text); TLS 1.2 (ECDHE + AEAD suites only) or 1.3;
 * no renegotiation; an h2c upgrade is refused over TLS. Files are PEM. */
typedef struct transport_tls_config {
    const char *cert_file;      /* certificate chain, leaf first */
    const char *key_file;       /* its private key */
    const char *client_ca_file; /* ask for client certificates and verify them
                                   against these CAs; NULL: none asked for */
    /* With client_ca_file: a client without a certificate still completes
     * the handshake (it has to authenticate otherwise, e.g. with a bearer
     * token). A certificate that does not verify always fails it. */
    bool client_cert_optional;
    int min_version; /* 12 (TLS 1.2, the default when 0) or 13 */
} transport_tls_config;

/* Serve TLS on TCP connections accepted from now on. Called again (SIGHUP),
 * it replaces certificate, key and client CAs for new handshakes while
 * established connections keep theirs. The files are read now; on error
 * nothing changes and -1 says which file and why. */
int transport_set_tls(transport *t, const transport_tls_config *cfg, chcp_error **err);
bool transport_tls_enabled(const transport *t);

/* Answer a request. Everything in `resp` is copied before this returns. After
 * the call `req` is gone; a second call is a bug. */
void http_respond(http_request *req, const http_response *resp);

/* Charge `bytes` of memory the layer above holds for this request (its
 * decoded message) to the request budgets of its connection and of the
 * daemon. The holder releases the charge with http_charge_release() when it
 * frees that memory; a charge may outlive the request, its connection and
 * the transport. NULL with a resource_exhausted error saying which budget is
 * spent. */
typedef struct http_charge http_charge;
http_charge *http_request_charge(http_request *req, size_t bytes, chcp_error **err);
void http_charge_release(http_charge *charge); /* NULL: no-op */
/* The layer above no longer needs req->body: its memory and budget are
 * given back now (HTTP/2: the client may send that much more). */
void http_request_consume_body(http_request *req);
/* Before answering with a `bytes`-long body: can the connection hold it
 * until the client reads it? -1 with resource_exhausted when the response
 * budget of the connection or of the daemon is spent (answer with an error
 * instead: error answers are never refused). */
int http_response_reserve(http_request *req, size_t bytes, chcp_error **err);

/* ---- streaming ------------------------------------------------------------ */

typedef enum http_body_mode {
    HTTP_BODY_BUFFER = 0, /* gather the whole body, then on_request (the default) */
    HTTP_BODY_STREAM,     /* dispatched now; the body arrives through on_body */
    HTTP_BODY_DISCARD,    /* dispatched now (often answered already); the body is dropped */
} http_body_mode;

typedef struct http_stream_hooks {
    /* The header block is complete, nothing of the body was read. The callee
     * may answer right here (then say HTTP_BODY_DISCARD). With STREAM or
     * DISCARD the request counts as dispatched: it must be answered, and
     * on_cancel reports a peer that goes away. */
    http_body_mode (*on_headers)(http_request *req, void *ud);
    /* HTTP_BODY_STREAM: the next `len` body bytes (copy them: `data` is only
     * valid during the call), then once `end` (data NULL) when the body is
     * complete. Bytes count as held until http_request_consume(); once a
     * window of bytes (http_request_window) is held the peer is paused. */
    void (*on_body)(http_request *req, const uint8_t *data, size_t len, bool end, void *ud);
    /* The request's queued response bytes fell to the level given to
     * http_response_want_drain() (once per call of it). */
    void (*on_drain)(http_request *req, void *ud);
    void *ud;
} http_stream_hooks;

void transport_set_stream_hooks(transport *t, const http_stream_hooks *hooks);

/* Streamed bodies: `n` held bytes are processed; the peer may send as much
 * more (HTTP/2 WINDOW_UPDATE; HTTP/1.1 reading resumes). No-op once the
 * connection is gone. */
void http_request_consume(http_request *req, size_t n);
/* Most body bytes a streamed request may hold unconsumed (one message of
 * the largest size and its framing must fit). */
size_t http_request_window(const http_request *req);
/* The whole request (END_STREAM / the end of the body) has arrived. */
bool http_request_complete(const http_request *req);

/* Stream a response: headers now, body pieces as they are written, then
 * the end (HTTP/2 trailers, or nothing). HTTP/1.1 uses chunked encoding
 * (close-delimited for an HTTP/1.0 client). Everything is copied. Writing to
 * a request whose connection is gone is a no-op; http_response_end() is
 * still required and frees it, like http_respond(). */
void http_response_begin(http_request *req, int status, const http_header *headers, size_t n);
void http_response_write(http_request *req, const uint8_t *data, size_t len);
void http_response_end(http_request *req, const http_header *trailers, size_t n_trailers);
/* Response bytes written and not yet handed to the socket. */
size_t http_response_queued(const http_request *req);
/* Call on_drain once the queued bytes are at most `low_water`. */
void http_response_want_drain(http_request *req, size_t low_water);

/* Case-insensitive header lookup (first match), NULL if absent. */
const char *http_request_header(const http_request *req, const char *name);

/* Graceful stop: close listeners, let in-flight requests finish, close idle
 * connections. Busy HTTP/1.1 connections close after their last answer
 * ("connection: close"); HTTP/2 ones get GOAWAY and close once their streams
 * are done. `transport_active_requests` (dispatched, not yet answered) and
 * `transport_connection_count` tell when it is done. */
void transport_stop_accepting(transport *t);

typedef struct transport_stats {
    size_t tcp_connections, unix_connections;
    size_t request_bytes;  /* request bodies and decoded messages held */
    size_t response_bytes; /* response bytes not yet written */
    uint64_t evicted;      /* idle or stalled connections closed to admit a new one */
    uint64_t refused_connections;
    uint64_t refused_requests;       /* request budget spent */
    uint64_t refused_responses;      /* response budget spent */
    uint64_t tls_handshakes;         /* completed */
    uint64_t tls_handshake_failures; /* refused certificates, protocol errors, timeouts */
} transport_stats;
void transport_get_stats(const transport *t, transport_stats *out);
size_t transport_active_requests(const transport *t);
size_t transport_connection_count(const transport *t);
/* Close everything at once; outstanding requests get on_cancel (their later
 * http_respond only frees them). `done` (optional) runs once every libuv
 * handle is closed and the transport is freed, so the loop must keep running
 * until then. */
void transport_close(transport *t, void (*done)(void *ud), void *ud);

#endif
