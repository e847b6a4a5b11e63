/*
 * internal.h - what the transport's files share and nobody else sees: the
 * transport, connection and request structures and the calls between
 * listener.c (sockets), conn.c (connection lifecycle and I/O), request.c
 * (the request object), http1.c (http-parser) and http2.c (nghttp2).
 *
 * Ownership in one paragraph: a connection owns the requests it parses (its
 * `reqs` list, in arrival order). Once a request is dispatched, the layer
 * above also holds it until http_respond(). When the connection dies first,
 * the request is detached (conn = NULL): the layer above is told through
 * on_cancel and its later http_respond() just frees the memory. Nothing is
 * freed inside protocol callbacks: the connection is only ever torn down from
 * loop callbacks (read, timer, flush, write), never from inside
 * http_parser_execute() or nghttp2_session_mem_recv().
 *
 * The fuzz targets use conn_new_fake()/conn_feed()/conn_destroy_fake() to
 * drive the same input paths without sockets.
 */
#ifndef CHCP_TRANSPORT_INTERNAL_H
#define CHCP_TRANSPORT_INTERNAL_H

#include <http_parser.h>
#include <nghttp2/nghttp2.h>

#include "transport/transport.h"

#define TRANSPORT_READ_BUF (64 * 1024)
/* HTTP/1.1 requests parsed ahead of their responses (pipelining bound). */
#define H1_MAX_PIPELINE 16
/* Stop pulling nghttp2 output while this much is already queued. */
#define CONN_OUT_HIGH (256 * 1024)
/* Output buffers larger than this are freed once empty. */
#define CONN_KEEP_BUF (16 * 1024)
/* How long a closing connection keeps draining input after FIN. */
#define CONN_LINGER_MS 2000
/* Recycled request objects kept per transport, and the largest buffer a
 * recycled request keeps (bigger ones go back to malloc). */
#define TREQ_FREELIST_MAX 64
#define TREQ_KEEP_BUF (16 * 1024)

typedef struct conn conn;
typedef struct treq treq;
typedef struct tbudget tbudget;
typedef struct peer_count peer_count;
typedef struct tls_conn tls_conn;
typedef struct tls_server tls_server;
typedef struct conn_identity conn_identity;

/* A header seen on the wire, as offsets into treq.strings (which may move
 * while it grows; pointers are made once the header block is complete). */
typedef struct hdr_ref {
    uint32_t name_off, name_len, value_off, value_len;
} hdr_ref;

struct treq {
    http_request pub; /* what the layer above sees */
    transport *t;
    conn *conn;        /* NULL once detached from a dead connection */
    treq *next, *prev; /* conn->reqs, arrival order */

    chcp_buf strings; /* NUL-terminated method/url/header text */
    hdr_ref *refs;
    size_t n_refs, cap_refs;
    http_header *headers;
    size_t cap_headers;
    chcp_buf body;
    conn_identity *ident; /* a reference to the connection's (pub.identity) */
    /* HTTP/1.1: the serialized response while it waits for its turn.
     * HTTP/2: the response body nghttp2 pulls from. */
    chcp_buf resp;
    size_t resp_off;
    /* HTTP/2 response trailers, copied at http_respond time. */
    chcp_buf tr_strings;
    nghttp2_nv *tr_nv;
    size_t n_tr, cap_tr;

    size_t rx_body; /* body bytes charged to the request budget (budget.c) */

    int32_t stream_id;
    uint32_t hdr_bytes; /* header block bytes so far (limit) */
    uint8_t h1_state;   /* http-parser: in url, header name or value */
    uint8_t http_minor;
    uint32_t url_off, url_len;
    uint32_t method_off, method_len; /* HTTP/2 :method */
    uint32_t path_off, path_len;     /* HTTP/2 :path */
    uint64_t start_ms;               /* loop time the request began (read timeout) */
    uint64_t resp_due;               /* HTTP/2: loop ms its response must be sent by */

    bool hdrs_done;         /* header block complete, pub.headers valid */
    bool remote_done;       /* whole request received (END_STREAM / message end) */
    bool dispatched;        /* handed to on_request */
    bool responded;         /* http_respond was called */
    bool internal;          /* an error response made by the transport itself */
    bool close;             /* HTTP/1.1: close the connection after the response */
    bool want_continue;     /* HTTP/1.1: owes "100 Continue" when it gets its turn */
    bool is_head;           /* HEAD request: no response body on the wire */
    bool serialized_in_out; /* HTTP/1.1: response already appended to out */

    /* Streaming (stream.c). */
    uint8_t body_mode;   /* http_body_mode chosen by on_headers */
    bool resp_streaming; /* http_response_begin: `resp` is a queue being written */
    bool resp_ended;     /* http_response_end: nothing more will be queued */
    bool h2_deferred;    /* HTTP/2 data provider waits for more bytes */
    bool h1_chunked;     /* HTTP/1.1 streamed response in chunked encoding */
    bool want_drain;     /* on_drain once queued bytes <= drain_low */
    size_t drain_low;
    size_t held; /* streamed body bytes delivered and not yet consumed */
    char peer[64];
};

typedef enum conn_proto { PROTO_SNIFF = 0, PROTO_H1, PROTO_H2 } conn_proto;

/* Output sink for fake (socketless) connections used by the fuzzers. */
typedef void (*conn_sink_fn)(const uint8_t *data, size_t len, void *ud);

struct conn {
    transport *t;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    conn *next, *prev; /* transport->conns */
    conn *dirty_next;  /* transport->dirty */
    bool dirty;
    bool has_io;  /* false: fake connection (fuzzing) */
    bool is_unix; /* Unix-socket pool (else TCP) */
    conn_sink_fn sink;
    void *sink_ud;

    conn_proto proto;
    uint8_t sniff[24];
    size_t sniff_len;

    treq *reqs, *reqs_tail; /* live requests owned by the connection */
    size_t n_inflight;      /* dispatched and not yet answered */

    /* HTTP/1.1 */
    http_parser parser;
    treq *cur;                /* the request being parsed */
    chcp_buf pending_in;      /* input held back while the pipeline is full */
    bool h1_paused;           /* parser paused: pipeline full or body window held */
    bool h1_body_blocked;     /* the streamed body being parsed holds its window */
    bool rd_discard;          /* drop all further input (closing) */
    int h1_error;             /* status to answer when the parser stops (431...) */
    const char *h1_feed_base; /* start of the read being parsed (obs-fold check) */
    bool h1_tail_lf;          /* the previous read ended in LF + optional SP/HTAB */

    /* HTTP/2 */
    nghttp2_session *h2;

    chcp_buf out;  /* output gathered this pass */
    chcp_buf wbuf; /* output being written */
    bool writing;
    bool reading;
    bool closing;           /* uv_close started / torn down */
    bool close_after_flush; /* close once the output is written */
    bool draining;          /* transport_stop_accepting: finish and close */
    bool retiring;          /* max_connection_age_ms reached */
    bool lingering;         /* FIN sent, discarding input until EOF/timeout */
    bool linger_wanted;     /* closing on an error: the peer may still send */
    bool peer_eof;
    int handles_open;

    /* Loop ms of the last progress: accepted, a request began, the last
     * request ended. Never renewed by PING, SETTINGS, WINDOW_UPDATE or stray
     * bytes: the idle timeout and eviction order go by it. */
    uint64_t last_progress;
    uint64_t born;      /* loop ms accepted (connection age) */
    uint64_t timer_due; /* 0 = timer not armed */
    uint64_t linger_due;
    uint64_t write_since; /* loop ms the pending uv_write started */

    /* Budgets (budget.c): request bytes held (bodies; charges of the layer
     * above, listed in `charges`), response bytes held (counted at each
     * flush, plus reservations since), HTTP/2 DATA bytes delivered but not
     * yet given back to the window. */
    size_t rx_body, rx_decoded, tx_held, h2_unconsumed;
    http_charge *charges;

    tls_conn *tls;        /* NULL: clear text (tls.c) */
    conn_identity *ident; /* who the peer is, shared with its requests */

    peer_count *peer_entry; /* TCP: this peer's connection count */
    uint8_t peer_addr[16];  /* TCP peer address (IPv4 as ::ffff:a.b.c.d) */
    char peer[64];
};

/* Bytes the layer above holds for a request (budget.c). `conn` is NULL
 * once the connection is gone: the charge then counts daemon-wide only. */
struct http_charge {
    tbudget *budget;
    conn *conn;
    size_t bytes;
    http_charge *next, *prev; /* conn->charges */
};

/* Connections per TCP peer address (peers.c). */
struct peer_count {
    uint8_t addr[16];
    unsigned count;
    peer_count *next;
};

/* The daemon-wide byte budgets. Reference-counted: a request whose
 * connection died keeps its charge (its memory is still held by the layer
 * above) and may outlive the transport. */
struct tbudget {
    unsigned refs;
    size_t conn_cap, total_cap;
    size_t rx_over, tx_over; /* connections' bytes beyond their allowance */
    size_t rx_detached;      /* charges of requests whose connection is gone */
    size_t rx_total, tx_total;
    size_t peak; /* most held since the last trim */
    uint64_t refused_requests, refused_responses;
};

struct transport {
    uv_loop_t *loop;
    transport_limits lim;
    http_request_fn on_request;
    http_cancel_fn on_cancel;
    void *ud;

    /* Listeners are allocated so a failed listen can be retried at once
     * while the failed handle is still closing. NULL when not listening. */
    uv_tcp_t *tcp;
    uv_pipe_t *pipe;
    uint16_t port;
    char *unix_path;

    uv_prepare_t prepare; /* flush before the loop blocks */
    uv_check_t check;     /* flush right after I/O callbacks */
    uv_idle_t kick;       /* runs when flushing left work for another pass */

    conn *conns;
    size_t n_conns, n_tcp, n_unix;
    conn *dirty;
    size_t active;
    tbudget *budget;
    peer_count **peers; /* hash table by address */
    size_t peer_buckets;
    uint64_t evicted, refused_conns;

    treq *free_reqs;
    size_t n_free;

    tls_server *tls;         /* NULL: TCP is clear text */
    http_stream_hooks hooks; /* all NULL: every body is buffered */

    nghttp2_session_callbacks *h2_callbacks;
    nghttp2_option *h2_option;
    http_parser_settings h1_settings;

    bool stopping;
    bool closing;
    int open_handles; /* listeners, hooks and connections not yet closed */
    void (*done)(void *ud);
    void *done_ud;

    uint8_t rbuf[TRANSPORT_READ_BUF];
};

/* ---- conn.c -------------------------------------------------------------- */

conn *conn_accepted(transport *t, uv_stream_t *server); /* accept one connection */
void conn_start(conn *c);
/* Feed received bytes through preface sniffing into HTTP/1.1 or HTTP/2. */
void conn_feed(conn *c, const uint8_t *data, size_t len);
/* Queue output; the connection is flushed once per loop pass. */
void conn_mark_dirty(conn *c);
void conn_flush_all(transport *t);
void conn_close(conn *c);
/* A request whose header block began: arm the header and read timeouts. */
void conn_request_started(conn *c, treq *r);
/* The connection's last request ended: idle from now. */
void conn_requests_done(conn *c);
/* Make sure the connection's timer fires no later than `due`. */
void conn_timer_want(conn *c, uint64_t due);
/* Close to make room for a new connection (GOAWAY first on HTTP/2). */
void conn_evict(conn *c);
bool conn_is_idle(const conn *c);
void conn_begin_drain(conn *c);

/* Socketless connections for fuzzing: output goes to `sink`. */
conn *conn_new_fake(transport *t, conn_sink_fn sink, void *ud);
void conn_flush_fake(conn *c);
void conn_destroy_fake(conn *c);

/* Output waiting for the socket: the gathered plaintext, and under TLS the
 * records already sealed. */
bool conn_has_output(const conn *c);
/* The peer closed its side (EOF or TLS close_notify). */
void conn_on_eof(conn *c);

/* ---- tls.c ------------------------------------------------------------- */

/* A refcounted identity: the connection holds one reference, each of its
 * requests another (a request may outlive its connection). */
struct conn_identity {
    unsigned refs;
    http_peer_identity pub;
    char **strings; /* every string pub points at, freed with it */
    size_t n_strings;
    const char **sans; /* pub.sans */
    uint32_t *groups;  /* pub.groups */
};
conn_identity *conn_identity_new(void);
conn_identity *conn_identity_ref(conn_identity *id);
void conn_identity_unref(conn_identity *id); /* NULL: no-op */
/* Keep `s` (allocated) for as long as the identity; returns it. */
const char *conn_identity_keep(conn_identity *id, char *s);
/* Add a subject alternative name ("dns:x", ...), copied. */
void conn_identity_add_san(conn_identity *id, const char *prefix, const char *value, size_t len);
/* Unix socket: SO_PEERCRED and SO_PEERGROUPS of `fd`. */
void conn_identity_read_cred(conn_identity *id, int fd);
/* Printable ASCII only (what may go into logs, headers and policies). */
bool identity_text_ok(const char *s, size_t len);

/* Start TLS on an accepted TCP connection (when the transport has TLS). */
void tls_conn_start(conn *c);
void tls_conn_free(conn *c);
/* Ciphertext from the socket: handshake, then plaintext into conn_feed(). */
void tls_feed(conn *c, const uint8_t *data, size_t len);
/* Seal c->out into records; returns the ciphertext buffer to write. NULL
 * on a fatal error (the caller closes). */
chcp_buf *tls_seal(conn *c);
/* Handshake not finished yet (its deadline is the header timeout). */
bool tls_handshaking(const conn *c);
/* Sealed bytes wait to be written (handshake messages, alerts, records). */
bool tls_has_output(const conn *c);
/* Queue close_notify once; true when it was queued now (flush again). */
bool tls_close_notify(conn *c);
void tls_server_free(transport *t);
void tls_stats(const transport *t, uint64_t *ok, uint64_t *failed);

/* ---- budget.c ----------------------------------------------------------- */

typedef enum budget_verdict {
    BUDGET_OK = 0,
    BUDGET_CONN_SPENT,  /* the connection's budget */
    BUDGET_TOTAL_SPENT, /* the daemon-wide budget */
} budget_verdict;

tbudget *budget_new(const transport_limits *l);
void budget_unref(tbudget *b);
/* May connection c hold `n` more request bytes? (Refusals are counted.) */
budget_verdict budget_rx_admit(conn *c, size_t n);
/* Charge n body bytes to r (and its connection). */
void budget_rx_add(treq *r, size_t n);
/* The body's bytes are no longer held (freed or handed back). */
void budget_rx_drop_body(treq *r);
/* n of a streamed body's bytes were consumed by the layer above (HTTP/2:
 * their windows reopen). */
void budget_rx_release(treq *r, size_t n);
/* A charge of n bytes on connection c (admitted by the caller). */
http_charge *budget_charge_new(conn *c, size_t n);
budget_verdict budget_tx_admit(conn *c, size_t n);
void budget_tx_add(conn *c, size_t n);
/* Recount what the connection holds for responses (after a flush). */
void budget_tx_recount(conn *c);
void budget_conn_closed(conn *c);
/* After a burst has drained, give free heap pages back (loop hook). */
void budget_maybe_trim(tbudget *b);

/* ---- peers.c --------------------------------------------------------------- */

/* Admit a new connection against the pool, per-peer and eviction rules;
 * false: refused (the caller closes it). */
bool peers_admit(transport *t, conn *c);
void peers_forget(transport *t, conn *c);
void peers_free(transport *t);

/* ---- request.c ---------------------------------------------------------- */

treq *treq_new(conn *c);
void treq_release(treq *r);       /* unlink from the connection and free/recycle */
void treq_free_detached(treq *r); /* the last call on a detached request */
void treq_free_list(transport *t);
hdr_ref *treq_push_ref(treq *r);
/* Make pub.headers from the offsets once `strings` stops growing. */
void treq_build_headers(treq *r);
void treq_dispatch(treq *r);
/* The connection lost a request it still owned: tell the layer above. */
void treq_detach(treq *r);
/* Response header values/names must not smuggle CR, LF or NUL. */
bool header_safe(const http_header *h);

/* ---- stream.c ------------------------------------------------------------ */

/* The header block of r is complete: ask the layer above how to read the
 * body (HTTP_BODY_BUFFER when it has no stream hooks). For STREAM and
 * DISCARD the request is dispatched; it may be answered (and, on HTTP/1.1,
 * released) before this returns. */
http_body_mode treq_headers_done(treq *r);
/* Body bytes of a STREAM request; `end` once complete. */
void treq_body(treq *r, const uint8_t *data, size_t len, bool end);
/* Most unconsumed bytes a streamed body may hold (one largest body plus a
 * frame of slack). */
size_t treq_window(const transport *t);
/* Streamed responses of c whose queue drained: call on_drain. */
void conn_notify_drain(conn *c);

/* ---- listener.c ---------------------------------------------------------- */

void transport_handle_closed(transport *t);

/* ---- http1.c ------------------------------------------------------------- */

void h1_init_settings(http_parser_settings *s);
void h1_start(conn *c);
void h1_feed(conn *c, const uint8_t *data, size_t len);
/* Resume parsing held-back input once the pipeline has room. */
void h1_resume(conn *c);
void h1_respond(treq *r, const http_response *resp);
/* The read timeout hit a request still arriving: 408 and close. */
void h1_fail(conn *c, int status);
/* Streamed responses (stream.c): start, append, end; h1_pump moves queued
 * bytes of the head response to the connection's output. */
void h1_begin(treq *r, int status, const http_header *headers, size_t n);
void h1_write(treq *r, const uint8_t *data, size_t len);
void h1_end(treq *r);
void h1_pump(conn *c);
/* Answered before the request's body ended: close after the answer. */
void h1_close_early(conn *c, treq *r);
/* A streamed answer ended before the request's body: read and drop the
 * rest (within a read timeout), keeping the connection. */
void h1_discard_rest(conn *c, treq *r);
/* The streamed body's window has room again: parse what was held back. */
void h1_body_unblocked(conn *c);
const char *http_reason(int status);

/* ---- http2.c ------------------------------------------------------------- */

int h2_init_callbacks(transport *t);
void h2_start(conn *c);
/* HTTP/1.1 "Upgrade: h2c": start a session whose stream 1 is `r`. */
int h2_start_upgraded(conn *c, treq *r, const uint8_t *settings, size_t len);
void h2_feed(conn *c, const uint8_t *data, size_t len);
/* Pull nghttp2's pending frames into c->out. */
void h2_pump(conn *c);
void h2_respond(treq *r, const http_response *resp);
/* Streamed responses (stream.c). */
void h2_begin(treq *r, int status, const http_header *headers, size_t n);
void h2_resume(treq *r); /* more queued bytes, or the end */
void h2_set_trailers(treq *r, const http_header *trailers, size_t n);

void h2_free(conn *c);
/* Reset a stream whose request did not arrive in time. */
void h2_timeout_stream(conn *c, treq *r);
void h2_goaway(conn *c, bool graceful);
/* Give DATA bytes that are no longer held back to the connection window,
 * as far as the connection's request budget allows. */
void h2_regrant(conn *c);
/* A stream's body (n bytes) is no longer held. */
void h2_body_released(conn *c, treq *r, size_t n);
/* Reset streams whose response was not delivered by its deadline; returns
 * the earliest deadline still pending (UINT64_MAX: none). */
uint64_t h2_check_send_deadlines(conn *c, uint64_t now);
/* No streams open and nothing left to say (after GOAWAY)? */
bool h2_done(conn *c);

#endif
