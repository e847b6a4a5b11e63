/*
 * request.c - the request object shared by HTTP/1.1 and HTTP/2: allocation
 * (recycled through a small per-transport free list, so the hot path rarely
 * mallocs), header assembly, dispatch to the layer above, cancellation, and
 * http_respond(), which routes an answer to the right protocol.
 *
 * A request is owned by its connection until dispatched; from dispatch to
 * http_respond() the layer above holds it too. If the connection dies first
 * the request is detached (conn = NULL, t = NULL): the layer above hears
 * about it through on_cancel, and its http_respond() then only frees memory.
 */
#include "transport/internal.h"

#include <string.h>

static void treq_destroy(treq *r)
{
    conn_identity_unref(r->ident);
    budget_rx_drop_body(r);
    buf_free(&r->strings);
    buf_free(&r->body);
    buf_free(&r->resp);
    buf_free(&r->tr_strings);
    free(r->refs);
    free(r->headers);
    free(r->tr_nv);
    free(r);
}

static void trim_buf(chcp_buf *b)
{
    if (b->cap > TREQ_KEEP_BUF)
        buf_free(b);
    b->len = 0;
}

/* Reset a recycled request but keep its (small) buffers' capacity. */
static void treq_reset(treq *r)
{
    treq keep = *r;
    memset(r, 0, sizeof(*r));
    r->strings = keep.strings;
    r->body = keep.body;
    r->resp = keep.resp;
    r->tr_strings = keep.tr_strings;
    r->refs = keep.refs;
    r->cap_refs = keep.cap_refs;
    r->headers = keep.headers;
    r->cap_headers = keep.cap_headers;
    r->tr_nv = keep.tr_nv;
    r->cap_tr = keep.cap_tr;
}

/* Give large buffers back before a request is parked on the free list: a
 * parked request must not pin a 4 MiB body. */
static void treq_trim(treq *r)
{
    if (r->cap_refs > 256) {
        free(r->refs);
        free(r->headers);
        r->refs = NULL;
        r->headers = NULL;
        r->cap_refs = r->cap_headers = 0;
    }
    trim_buf(&r->strings);
    trim_buf(&r->body);
    trim_buf(&r->resp);
    trim_buf(&r->tr_strings);
}

treq *treq_new(conn *c)
{
    transport *t = c->t;
    treq *r = t->free_reqs;
    if (r) {
        t->free_reqs = r->next;
        t->n_free--;
        treq_reset(r);
    } else {
        r = xcalloc(1, sizeof(*r));
    }
    r->t = t;
    r->conn = c;
    r->prev = c->reqs_tail;
    if (c->reqs_tail)
        c->reqs_tail->next = r;
    else
        c->reqs = r;
    c->reqs_tail = r;
    memcpy(r->peer, c->peer, sizeof(r->peer));
    r->pub.peer = r->peer;
    r->ident = conn_identity_ref(c->ident);
    r->pub.identity = r->ident ? &r->ident->pub : NULL;
    return r;
}

static void treq_unlink(treq *r)
{
    conn *c = r->conn;
    if (!c)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        c->reqs_tail = r->prev;
    r->next = r->prev = NULL;
    if (c->cur == r)
        c->cur = NULL;
    r->conn = NULL;
    if (!c->reqs)
        conn_requests_done(c);
}

void treq_release(treq *r)
{
    transport *t = r->t;
    budget_rx_drop_body(r);
    treq_unlink(r);
    if (t && !t->closing && t->n_free < TREQ_FREELIST_MAX) {
        conn_identity_unref(r->ident);
        r->ident = NULL;
        treq_trim(r);
        r->next = t->free_reqs;
        t->free_reqs = r;
        t->n_free++;
        return;
    }
    treq_destroy(r);
}

void treq_free_list(transport *t)
{
    while (t->free_reqs) {
        treq *r = t->free_reqs;
        t->free_reqs = r->next;
        treq_destroy(r);
    }
    t->n_free = 0;
}

hdr_ref *treq_push_ref(treq *r)
{
    if (r->n_refs == r->cap_refs) {
        r->cap_refs = r->cap_refs ? r->cap_refs * 2 : 16;
        r->refs = xrealloc(r->refs, r->cap_refs * sizeof(*r->refs));
    }
    hdr_ref *h = &r->refs[r->n_refs++];
    memset(h, 0, sizeof(*h));
    return h;
}

void treq_build_headers(treq *r)
{
    if (r->cap_headers < r->n_refs) {
        r->cap_headers = r->n_refs;
        r->headers = xrealloc(r->headers, r->cap_headers * sizeof(*r->headers));
    }
    const char *base = (const char *)r->strings.data;
    for (size_t i = 0; i < r->n_refs; i++) {
        const hdr_ref *h = &r->refs[i];
        r->headers[i] =
            (http_header){base + h->name_off, base + h->value_off, h->name_len, h->value_len};
    }
    r->pub.headers = r->headers;
    r->pub.n_headers = r->n_refs;
}

void treq_dispatch(treq *r)
{
    conn *c = r->conn;
    transport *t = r->t;
    r->dispatched = true;
    c->n_inflight++;
    t->active++;
    r->pub.body = r->body.data;
    r->pub.body_len = r->pub.body_too_large ? 0 : r->body.len;
    if (!r->pub.body)
        r->pub.body = (const uint8_t *)"";
    t->on_request(&r->pub, t->ud);
}

void treq_detach(treq *r)
{
    conn *c = r->conn;
    transport *t = r->t;
    if (r->dispatched && !r->responded) {
        /* The layer above keeps the request (its charges stay counted), not
         * the body it has read. */
        budget_rx_drop_body(r);
        buf_free(&r->body);
        r->pub.body = (const uint8_t *)"";
        r->pub.body_len = 0;
        treq_unlink(r);
        c->n_inflight--;
        t->active--;
        /* From here on the request belongs to the layer above alone. */
        r->t = NULL;
        if (t->on_cancel)
            t->on_cancel(&r->pub, t->ud);
        return;
    }
    treq_release(r);
}

void treq_free_detached(treq *r)
{
    treq_destroy(r);
}

void http_respond(http_request *req, const http_response *resp)
{
    treq *r = (treq *)req; /* pub is the first member */
    if (r->responded)
        return;
    conn *c = r->conn;
    if (!c) {
        treq_destroy(r);
        return;
    }
    if (r->resp_streaming) {
        /* Already streaming: an answer now can only end it. */
        http_response_end(req, resp->trailers, resp->n_trailers);
        return;
    }
    r->responded = true;
    c->n_inflight--;
    r->t->active--;
    if (c->proto == PROTO_H2)
        h2_respond(r, resp);
    else
        h1_respond(r, resp);
    conn_mark_dirty(c);
}

static int spent(chcp_error **err, budget_verdict v, const char *what, size_t held, size_t cap,
                 size_t total)
{
    if (v == BUDGET_CONN_SPENT)
        return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                         "%s: this connection already holds %zu bytes (its limit is %zu)", what,
                         held, cap);
    return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                     "%s: the server holds its limit of %zu bytes for all clients; retry later",
                     what, total);
}

http_charge *http_request_charge(http_request *req, size_t bytes, chcp_error **err)
{
    treq *r = (treq *)req;
    conn *c = r->conn;
    if (!c) {
        error_set(err, CHCP_CANCELED, "the connection is gone");
        return NULL;
    }
    budget_verdict v = budget_rx_admit(c, bytes);
    if (v != BUDGET_OK) {
        spent(err, v, "request refused: no memory budget left for it", c->rx_body + c->rx_decoded,
              c->t->budget->conn_cap, c->t->budget->total_cap);
        return NULL;
    }
    return budget_charge_new(c, bytes);
}

void http_request_consume_body(http_request *req)
{
    treq *r = (treq *)req;
    budget_rx_drop_body(r);
    trim_buf(&r->body); /* a small buffer stays for the request's reuse */
    r->pub.body = (const uint8_t *)"";
    r->pub.body_len = 0;
}

int http_response_reserve(http_request *req, size_t bytes, chcp_error **err)
{
    treq *r = (treq *)req;
    conn *c = r->conn;
    if (!c)
        return 0; /* the answer goes nowhere */
    budget_verdict v = budget_tx_admit(c, bytes);
    if (v != BUDGET_OK) {
        char what[96];
        snprintf(what, sizeof(what), "response of %zu bytes not sent", bytes);
        return spent(err, v, what, c->tx_held, c->t->budget->conn_cap, c->t->budget->total_cap);
    }
    budget_tx_add(c, bytes);
    return 0;
}

const char *http_request_header(const http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (str_ieq(req->headers[i].name, name))
            return req->headers[i].value;
    return NULL;
}

bool header_safe(const http_header *h)
{
    if (!h->name || !h->value || h->name_len == 0)
        return false;
    for (size_t i = 0; i < h->name_len; i++) {
        unsigned char ch = (unsigned char)h->name[i];
        if (ch <= ' ' || ch == ':' || ch >= 0x7f)
            return false;
    }
    for (size_t i = 0; i < h->value_len; i++) {
        char ch = h->value[i];
        if (ch == '\r' || ch == '\n' || ch == '\0')
            return false;
    }
    return true;
}
