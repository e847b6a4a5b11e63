/*
 * stream.c - headers-first dispatch, streamed request bodies and streamed
 * responses, the parts HTTP/1.1 and HTTP/2 share (transport.h, "Streaming").
 *
 * Why headers first: a request whose route or content type is wrong must be
 * answered at once, not after its body (or a 30 s read timeout), and a
 * client or bidi stream must reach its handler before the client finishes
 * sending. Why bounded: every byte a slow or hostile peer can make us hold
 * is limited. A streamed body holds at most one window of unconsumed bytes
 * (HTTP/2: the stream's flow-control window is reopened only as the layer
 * above consumes; HTTP/1.1: the parser pauses and reading stops; held bytes
 * count against the connection's request budget, budget.c). A streamed
 * response is a queue (treq.resp) that the protocol pulls from only as the
 * client reads: HTTP/2 DATA within the peer's windows and while the
 * connection's output is below CONN_OUT_HIGH, HTTP/1.1 chunks likewise. The
 * layer above watches http_response_queued() and asks for on_drain.
 */
#include "transport/internal.h"

#include <string.h>

void transport_set_stream_hooks(transport *t, const http_stream_hooks *hooks)
{
    t->hooks = hooks ? *hooks : (http_stream_hooks){0};
}

size_t treq_window(const transport *t)
{
    return t->lim.max_body_bytes + 16384;
}

http_body_mode treq_headers_done(treq *r)
{
    transport *t = r->t;
    conn *c = r->conn;
    if (!t->hooks.on_headers)
        return HTTP_BODY_BUFFER;
    /* Counted as dispatched while the layer above looks: it may answer (or
     * keep the request) right here. Neither protocol frees r before this
     * returns (HTTP/1.1 keeps the request being parsed). */
    r->dispatched = true;
    c->n_inflight++;
    t->active++;
    r->pub.body = (const uint8_t *)"";
    r->pub.body_len = 0;
    http_body_mode mode = t->hooks.on_headers(&r->pub, t->hooks.ud);
    if (r->responded || !r->conn)
        mode = HTTP_BODY_DISCARD;
    if (mode == HTTP_BODY_BUFFER) {
        r->dispatched = false;
        c->n_inflight--;
        t->active--;
    }
    r->body_mode = (uint8_t)mode;
    return mode;
}

void treq_body(treq *r, const uint8_t *data, size_t len, bool end)
{
    transport *t = r->t;
    /* Answered or cancelled: the rest of the body has no reader. */
    if (r->responded || !r->conn || !t->hooks.on_body)
        return;
    r->held += len;
    if (len || end)
        t->hooks.on_body(&r->pub, data, len, end, t->hooks.ud);
}

void http_request_consume(http_request *req, size_t n)
{
    treq *r = (treq *)req;
    conn *c = r->conn;
    if (!c || n == 0 || r->held == 0)
        return;
    if (n > r->held)
        n = r->held;
    r->held -= n;
    budget_rx_release(r, n); /* HTTP/2: the windows reopen */
    if (c->proto == PROTO_H2) {
        conn_mark_dirty(c);
    } else if (c->h1_body_blocked && r->held < treq_window(c->t)) {
        c->h1_body_blocked = false;
        h1_body_unblocked(c);
    }
}

size_t http_request_window(const http_request *req)
{
    const treq *r = (const treq *)req;
    /* A detached request still answers with the configured size. */
    return r->t ? treq_window(r->t) : 0;
}

bool http_request_complete(const http_request *req)
{
    return ((const treq *)req)->remote_done;
}

/* ---- streamed responses ---------------------------------------------------- */

void http_response_begin(http_request *req, int status, const http_header *headers, size_t n)
{
    treq *r = (treq *)req;
    if (r->resp_streaming || r->responded)
        return;
    r->resp_streaming = true;
    conn *c = r->conn;
    if (!c)
        return;
    buf_reset(&r->resp);
    r->resp_off = 0;
    if (c->proto == PROTO_H2)
        h2_begin(r, status, headers, n);
    else
        h1_begin(r, status, headers, n);
    conn_mark_dirty(c);
}

void http_response_write(http_request *req, const uint8_t *data, size_t len)
{
    treq *r = (treq *)req;
    conn *c = r->conn;
    if (!c || !r->resp_streaming || r->resp_ended || len == 0)
        return;
    if (c->proto == PROTO_H2) {
        /* The queue restarts at 0 whenever it empties (see read_stream);
         * compact when most of it has been sent. */
        if (r->resp_off > 0 && r->resp_off >= r->resp.len / 2) {
            memmove(r->resp.data, r->resp.data + r->resp_off, r->resp.len - r->resp_off);
            r->resp.len -= r->resp_off;
            r->resp_off = 0;
        }
        buf_append(&r->resp, data, len);
        h2_resume(r);
    } else {
        h1_write(r, data, len);
    }
    conn_mark_dirty(c);
}

void http_response_end(http_request *req, const http_header *trailers, size_t n_trailers)
{
    treq *r = (treq *)req;
    if (r->responded)
        return;
    conn *c = r->conn;
    if (!c) {
        treq_free_detached(r);
        return;
    }
    if (!r->resp_streaming)
        http_response_begin(req, 200, NULL, 0);
    r->resp_ended = true;
    r->responded = true;
    r->want_drain = false;
    c->n_inflight--;
    r->t->active--;
    /* An answer before the whole request arrived: HTTP/2 resets the
     * stream after it; HTTP/1.1 reads the rest of the body and drops it (its
     * headers went out without "connection: close", so the client may reuse
     * the connection). */
    if (c->proto == PROTO_H2) {
        h2_set_trailers(r, trailers, n_trailers);
        h2_resume(r);
    } else {
        if (!r->remote_done)
            h1_discard_rest(c, r);
        h1_end(r);
    }
    conn_mark_dirty(c);
}

size_t http_response_queued(const http_request *req)
{
    const treq *r = (const treq *)req;
    if (!r->conn || !r->resp_streaming)
        return 0;
    return r->resp.len - r->resp_off;
}

void http_response_want_drain(http_request *req, size_t low_water)
{
    treq *r = (treq *)req;
    if (!r->conn || r->responded)
        return;
    r->want_drain = true;
    r->drain_low = low_water;
    conn_mark_dirty(r->conn);
}

void conn_notify_drain(conn *c)
{
    transport *t = c->t;
    if (!t->hooks.on_drain)
        return;
    /* The callee may write, end or answer, which changes the list: look
     * again from the start after every call. A callee that asks again
     * without writing would be called forever: at most a bounded number of
     * calls per pass, the rest on the next one. */
    for (unsigned calls = 0;; calls++) {
        treq *hit = NULL;
        for (treq *r = c->reqs; r && !hit; r = r->next)
            if (r->want_drain && !r->responded && r->resp.len - r->resp_off <= r->drain_low)
                hit = r;
        if (!hit || c->closing)
            return;
        if (calls == 256) {
            conn_mark_dirty(c);
            return;
        }
        hit->want_drain = false;
        t->hooks.on_drain(&hit->pub, t->hooks.ud);
    }
}
