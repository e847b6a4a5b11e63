/*
 * http1.c - HTTP/1.1 on top of http-parser: request assembly, keep-alive,
 * pipelining with in-order responses, chunked bodies, 100-continue, limits,
 * and response serialization (always with Content-Length).
 *
 * Header syntax is checked more strictly than http-parser does in its
 * default (lenient) build, because every leniency is a request-smuggling
 * vector behind a proxy that reads the bytes differently: a field name must
 * be an RFC 9110 token (http-parser accepts "Content-Length : 2" as a
 * header named "content-length " and ignores the body length), values must
 * not hold control characters, and obsolete line folding is refused. Each is
 * answered 400 and the connection closed. Chunked trailers are checked and
 * counted against the header limit, then dropped.
 *
 * Pipelining: requests are dispatched as soon as they are complete, but a
 * response only reaches the wire once every earlier one has. At most
 * H1_MAX_PIPELINE requests wait for answers; beyond that the parser is paused
 * and the unparsed input is held (reading stops) until answers come back.
 *
 * Streaming (stream.c): a request dispatched on its headers gets its body
 * through on_body; once it holds a window of unconsumed bytes the parser is
 * paused the same way. A streamed response is chunked (close-delimited for
 * HTTP/1.0) and queued on its request; the head of the pipeline moves its
 * queue to the connection's output only while that is below CONN_OUT_HIGH.
 * A request answered before its body ended is never released while the
 * parser is still inside it, and its connection closes after the answer:
 * the rest of a body nobody reads cannot be trusted to resync the stream.
 */
#include "transport/internal.h"

#include <ctype.h>
#include <string.h>

enum { H1_URL = 0, H1_FIELD, H1_VALUE };

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const char SWITCHING_101[] =
    "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n";

static conn *pconn(http_parser *p)
{
    return p->data;
}

static void h1_drain(conn *c);

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool field_name_ok(const char *at, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)at[i]))
            return false;
    return true;
}

/* field-content: visible characters, SP, HTAB and obs-text; no CTLs. */
static bool field_value_ok(const char *at, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)at[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

/* http-parser joins an obs-fold continuation line onto the value with a
 * second value callback. A second callback for the same value is a fold
 * unless it is the start of a new read that continues a value the previous
 * read cut short (c->feed_base: the read being parsed; c->h1_tail_lf: that
 * read ended in LF and optional whitespace, i.e. inside a fold). */
static bool is_fold(conn *c, const char *at)
{
    return at != c->h1_feed_base || c->h1_tail_lf;
}

static int bad_syntax(conn *c)
{
    c->h1_error = 400;
    return -1;
}

static int count_header_bytes(conn *c, treq *r, size_t len)
{
    r->hdr_bytes += (uint32_t)(len > UINT32_MAX / 2 ? UINT32_MAX / 2 : len);
    if (r->hdr_bytes > c->t->lim.max_header_bytes) {
        c->h1_error = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    conn *c = pconn(p);
    treq *r = treq_new(c);
    c->cur = r;
    r->pub.http_major = 1;
    r->url_off = 0;
    conn_request_started(c, r);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    conn *c = pconn(p);
    treq *r = c->cur;
    if (!r || count_header_bytes(c, r, len) < 0)
        return -1;
    buf_append(&r->strings, at, len);
    r->url_len += (uint32_t)len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    conn *c = pconn(p);
    treq *r = c->cur;
    if (!r || count_header_bytes(c, r, len) < 0)
        return -1;
    if (!field_name_ok(at, len))
        return bad_syntax(c);
    /* Chunked trailers: checked and counted, not kept (the header list the
     * layer above sees was built when the header block ended). */
    if (r->hdrs_done)
        return 0;
    if (r->h1_state != H1_FIELD) {
        /* Terminates the URL or the previous value. */
        buf_append_byte(&r->strings, 0);
        hdr_ref *h = treq_push_ref(r);
        h->name_off = (uint32_t)r->strings.len;
        r->h1_state = H1_FIELD;
    }
    buf_reserve(&r->strings, len);
    uint8_t *dst = r->strings.data + r->strings.len;
    for (size_t i = 0; i < len; i++)
        dst[i] = (uint8_t)tolower((unsigned char)at[i]);
    r->strings.len += len;
    r->refs[r->n_refs - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    conn *c = pconn(p);
    treq *r = c->cur;
    if (!r || count_header_bytes(c, r, len) < 0)
        return -1;
    if (!field_value_ok(at, len))
        return bad_syntax(c);
    if (r->hdrs_done)
        return 0; /* a trailer */
    if (r->n_refs == 0)
        return -1;
    hdr_ref *h = &r->refs[r->n_refs - 1];
    if (r->h1_state == H1_VALUE && is_fold(c, at))
        return bad_syntax(c);
    if (r->h1_state != H1_VALUE) {
        buf_append_byte(&r->strings, 0);
        h->value_off = (uint32_t)r->strings.len;
        r->h1_state = H1_VALUE;
    }
    buf_append(&r->strings, at, len);
    h->value_len += (uint32_t)len;
    return 0;
}

/* Point path and query into the URL; absolute-form URLs keep their path. */
static void split_url(treq *r)
{
    char *url = (char *)r->strings.data + r->url_off;
    size_t len = r->url_len;
    if (len > 0 && url[0] != '/' && !(len == 1 && url[0] == '*')) {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, len, 0, &u) == 0 && (u.field_set & (1 << UF_PATH))) {
            url += u.field_data[UF_PATH].off;
            len -= u.field_data[UF_PATH].off;
        } else {
            url[len] = '\0';
            r->pub.path = "/";
            return;
        }
    }
    r->pub.path = url;
    char *q = memchr(url, '?', len);
    if (q) {
        *q = '\0';
        r->pub.query = q + 1;
    }
}

static void build_headers(treq *r)
{
    /* A last header whose value never came: empty, on its name's NUL. */
    if (r->h1_state == H1_FIELD && r->n_refs > 0) {
        hdr_ref *h = &r->refs[r->n_refs - 1];
        h->value_off = h->name_off + h->name_len;
    }
    treq_build_headers(r);
}

/* The body will not fit (too large, or over the memory budget): hand the
 * request up now and read no more. */
static void h1_refuse_body(conn *c, treq *r)
{
    r->close = true;
    budget_rx_drop_body(r);
    buf_free(&r->body);
    c->rd_discard = true;
    c->linger_wanted = true;
    c->cur = NULL;
    http_parser_pause(&c->parser, 1);
    treq_dispatch(r);
}

static void maybe_continue(conn *c, treq *r, bool expects_body)
{
    const char *expect = http_request_header(&r->pub, "expect");
    if (!expect || !str_ieq(expect, "100-continue") || r->http_minor == 0 || !expects_body)
        return;
    if (r == c->reqs) {
        buf_append(&c->out, CONTINUE_100, sizeof(CONTINUE_100) - 1);
        conn_mark_dirty(c);
    } else {
        r->want_continue = true; /* after the earlier responses */
    }
}

static int on_headers_complete(http_parser *p)
{
    conn *c = pconn(p);
    treq *r = c->cur;
    if (!r)
        return -1;
    buf_append_byte(&r->strings, 0);
    build_headers(r);
    split_url(r);
    r->hdrs_done = true;
    r->pub.received_ns = time_mono_ns();
    r->pub.method = http_method_str(p->method);
    r->http_minor = (uint8_t)p->http_minor;
    r->is_head = p->method == HTTP_HEAD;
    r->close = !http_should_keep_alive(p);
    bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    /* Without a body the request is whole now: an answer from on_headers
     * keeps the connection. (A Transfer-Encoding other than chunked is not
     * "no body": http-parser refuses it, 400, right after this callback.) */
    if (!(p->flags & F_CHUNKED) && !p->uses_transfer_encoding &&
        !(has_length && p->content_length > 0))
        r->remote_done = true;
    /* The layer above may answer right here (404, 415): r stays ours until
     * its message ends. */
    http_body_mode mode = treq_headers_done(r);
    if (mode == HTTP_BODY_BUFFER && has_length && p->content_length > c->t->lim.max_body_bytes) {
        r->pub.body_too_large = true;
        h1_refuse_body(c, r);
        return 0;
    }
    if (!r->responded)
        maybe_continue(c, r, (p->flags & F_CHUNKED) || (has_length && p->content_length > 0));
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn *c = pconn(p);
    treq *r = c->cur;
    if (!r || r->body_mode == HTTP_BODY_DISCARD)
        return 0;
    if (r->body_mode == HTTP_BODY_STREAM) {
        budget_rx_add(r, len); /* held until consumed; the window bounds it */
        treq_body(r, (const uint8_t *)at, len, false);
        /* A full window: stop here until the layer above consumes. */
        if (c->cur == r && !r->responded && r->held >= treq_window(c->t)) {
            c->h1_body_blocked = true;
            c->h1_paused = true;
            http_parser_pause(p, 1);
        }
        return 0;
    }
    if (r->dispatched)
        return 0;
    if (r->body.len + len > c->t->lim.max_body_bytes) {
        r->pub.body_too_large = true;
        h1_refuse_body(c, r);
        return 0;
    }
    budget_verdict v = budget_rx_admit(c, len);
    if (v != BUDGET_OK) {
        r->pub.body_over_budget = true;
        r->pub.budget_spent = v == BUDGET_CONN_SPENT ? "connection" : "server";
        h1_refuse_body(c, r);
        return 0;
    }
    buf_append(&r->body, at, len);
    budget_rx_add(r, len);
    return 0;
}

/* "Upgrade: h2c" (RFC 7540 3.2) is honoured for a body-less request that is
 * alone on the connection; anything else just stays HTTP/1.1. */
static bool wants_h2c(conn *c, const http_parser *p, const treq *r)
{
    /* h2c is clear-text HTTP/2 only (RFC 9113 3.1): never over TLS. */
    if (!p->upgrade || p->method == HTTP_CONNECT || c->tls || c->draining || c->retiring ||
        r != c->reqs || r->next || r->close || r->body.len > 0 || r->dispatched)
        return false;
    const char *up = http_request_header(&r->pub, "upgrade");
    return up && str_ieq(up, "h2c") && http_request_header(&r->pub, "http2-settings");
}

/* Switch to HTTP/2: "101", then the request becomes stream 1. False if the
 * settings do not decode (the request is then served as HTTP/1.1). */
static bool upgrade_h2c(conn *c, treq *r)
{
    const char *s = http_request_header(&r->pub, "http2-settings");
    chcp_buf settings = CHCP_BUF_INIT;
    if (base64_decode(&settings, s, strlen(s)) < 0 || settings.len % 6 != 0) {
        buf_free(&settings);
        return false;
    }
    buf_append(&c->out, SWITCHING_101, sizeof(SWITCHING_101) - 1);
    conn_mark_dirty(c);
    c->proto = PROTO_H2;
    c->cur = NULL;
    r->remote_done = true;
    int rc =
        h2_start_upgraded(c, r, settings.data ? settings.data : (const uint8_t *)"", settings.len);
    buf_free(&settings);
    if (rc < 0) {
        c->rd_discard = true;
        c->close_after_flush = true;
        return true;
    }
    treq_dispatch(r);
    return true;
}

static int on_message_complete(http_parser *p)
{
    conn *c = pconn(p);
    treq *r = c->cur;
    if (!r)
        return 0;
    if (r->body_mode != HTTP_BODY_BUFFER) {
        /* Dispatched on its headers: the end of its body, and its release
         * if it was answered meanwhile. */
        c->cur = NULL;
        r->remote_done = true;
        bool close = r->close;
        if (r->body_mode == HTTP_BODY_STREAM)
            treq_body(r, NULL, 0, true); /* may answer and release r */
        h1_drain(c);
        if (close || c->rd_discard) {
            c->rd_discard = true;
            http_parser_pause(p, 1);
        } else if (c->n_inflight >= H1_MAX_PIPELINE) {
            c->h1_paused = true;
            http_parser_pause(p, 1);
        }
        return 0;
    }
    if (wants_h2c(c, p, r) && upgrade_h2c(c, r))
        return 0;
    c->cur = NULL;
    r->remote_done = true;
    bool close = r->close;
    /* The handler may answer (and free r) right inside this call. */
    treq_dispatch(r);
    if (close) {
        c->rd_discard = true;
        http_parser_pause(p, 1);
    } else if (c->n_inflight >= H1_MAX_PIPELINE) {
        c->h1_paused = true;
        http_parser_pause(p, 1);
    }
    return 0;
}

void h1_init_settings(http_parser_settings *s)
{
    http_parser_settings_init(s);
    s->on_message_begin = on_message_begin;
    s->on_url = on_url;
    s->on_header_field = on_header_field;
    s->on_header_value = on_header_value;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

void h1_start(conn *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

/* Does the input parsed so far end in LF and optional SP/HTAB? `before`
 * answers for the reads before this one. */
static bool ends_in_lf(const uint8_t *data, size_t n, bool before)
{
    while (n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\t'))
        n--;
    return n == 0 ? before : data[n - 1] == '\n';
}

void h1_feed(conn *c, const uint8_t *data, size_t len)
{
    while (len > 0 && !c->rd_discard && !c->closing) {
        if (c->h1_paused) {
            buf_append(&c->pending_in, data, len);
            return;
        }
        c->h1_feed_base = (const char *)data;
        size_t n = http_parser_execute(&c->parser, &c->t->h1_settings, (const char *)data, len);
        c->h1_tail_lf = ends_in_lf(data, n, c->h1_tail_lf);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (c->rd_discard || c->closing)
            return;
        if (c->proto == PROTO_H2) {
            /* Upgraded to h2c: the rest is the HTTP/2 preface and frames. */
            if (n < len)
                h2_feed(c, data + n, len - n);
            return;
        }
        if (e == HPE_PAUSED) {
            /* Pipeline full: on_message_complete set h1_paused. */
            data += n;
            len -= n;
            continue;
        }
        if (e != HPE_OK) {
            h1_fail(c, c->h1_error ? c->h1_error : e == HPE_HEADER_OVERFLOW ? 431 : 400);
            return;
        }
        if (n >= len || n == 0)
            return;
        /* http-parser stops after an Upgrade request; one we did not honour
         * is followed by the next HTTP/1.1 request. */
        c->parser.upgrade = 0;
        data += n;
        len -= n;
    }
}

void h1_body_unblocked(conn *c)
{
    conn_mark_dirty(c); /* conn_flush resumes the parser */
}

void h1_resume(conn *c)
{
    c->h1_paused = false;
    http_parser_pause(&c->parser, 0);
    if (c->pending_in.len == 0)
        return;
    chcp_buf in = c->pending_in;
    c->pending_in = (chcp_buf)CHCP_BUF_INIT;
    h1_feed(c, in.data, in.len);
    if (!c->pending_in.data) {
        buf_reset(&in);
        c->pending_in = in;
    } else {
        buf_free(&in);
    }
    if (c->peer_eof && c->cur && !c->cur->dispatched)
        treq_release(c->cur);
}

/* ---- responses ------------------------------------------------------------ */

static bool is_managed_header(const http_header *h)
{
    switch (h->name_len) {
    case 10:
        return str_ieq(h->name, "connection");
    case 14:
        return str_ieq(h->name, "content-length");
    case 17:
        return str_ieq(h->name, "transfer-encoding");
    default:
        return false;
    }
}

static void append_uint(chcp_buf *b, size_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_append(b, tmp + i, sizeof(tmp) - i);
}

static void serialize(chcp_buf *b, treq *r, const http_response *resp, bool close)
{
    int status = resp->status >= 200 && resp->status <= 999 ? resp->status : 500;
    const char *reason = http_reason(status);
    buf_reserve(b, 64 + resp->body_len);
    buf_append(b, "HTTP/1.1 ", 9);
    append_uint(b, (size_t)status);
    buf_append_byte(b, ' ');
    buf_append_str(b, reason);
    buf_append(b, "\r\n", 2);
    for (size_t i = 0; i < resp->n_headers; i++) {
        const http_header *h = &resp->headers[i];
        if (!header_safe(h) || is_managed_header(h))
            continue;
        buf_reserve(b, h->name_len + h->value_len + 4);
        buf_append(b, h->name, h->name_len);
        buf_append(b, ": ", 2);
        buf_append(b, h->value, h->value_len);
        buf_append(b, "\r\n", 2);
    }
    /* 204 and 304 carry no body; 204 not even a length (RFC 9110 8.6). */
    bool no_body = r->is_head || status == 204 || status == 304;
    if (status != 204) {
        buf_append(b, "content-length: ", 16);
        append_uint(b, status == 304 ? 0 : resp->body_len);
        buf_append(b, "\r\n", 2);
    }
    if (close)
        buf_append_str(b, "connection: close\r\n");
    else if (r->http_minor == 0)
        buf_append_str(b, "connection: keep-alive\r\n");
    buf_append(b, "\r\n", 2);
    if (!no_body)
        buf_append(b, resp->body, resp->body_len);
}

/* Move a streamed response's queue to the output, as far as it has room. */
static void move_queued(conn *c, treq *r)
{
    size_t left = r->resp.len - r->resp_off;
    if (left == 0)
        return;
    if (c->out.len < CONN_OUT_HIGH) {
        size_t n = CONN_OUT_HIGH - c->out.len;
        if (n > left)
            n = left;
        buf_append(&c->out, r->resp.data + r->resp_off, n);
        r->resp_off += n;
        left -= n;
        if (left == 0)
            r->resp_off = r->resp.len = 0;
    }
    /* The rest after this pass's write; a write in progress calls back. */
    if (left > 0 && !c->writing)
        conn_mark_dirty(c);
}

/* Move answered requests at the head of the pipeline to the output. */
static void h1_drain(conn *c)
{
    treq *r;
    while ((r = c->reqs)) {
        if (r->resp_streaming) {
            move_queued(c, r);
            if (!r->responded || r->resp.len > r->resp_off)
                break;
        } else {
            if (!r->responded)
                break;
            if (!r->serialized_in_out)
                buf_append(&c->out, r->resp.data, r->resp.len);
            r->serialized_in_out = true;
        }
        bool close = r->close;
        /* Answered while its body is still being parsed: it goes when its
         * message ends (on_message_complete), or with the connection. */
        bool parsing = r == c->cur;
        if (!parsing)
            treq_release(r);
        if (close) {
            c->rd_discard = true;
            c->close_after_flush = true;
            return;
        }
        if (parsing)
            return;
    }
    if (r && r->want_continue && !r->remote_done) {
        r->want_continue = false;
        buf_append(&c->out, CONTINUE_100, sizeof(CONTINUE_100) - 1);
    }
}

void h1_respond(treq *r, const http_response *resp)
{
    conn *c = r->conn;
    /* Draining: the last request we will see says goodbye (it may still be
     * the one being parsed: answered on its headers). */
    if ((c->draining || c->retiring) && !r->next && (!c->cur || c->cur == r))
        r->close = true;
    /* Answered before its body ended (dispatched on its headers). */
    if (!r->remote_done)
        h1_close_early(c, r);
    bool head = r == c->reqs;
    serialize(head ? &c->out : &r->resp, r, resp, r->close);
    r->serialized_in_out = head;
    r->responded = true;
    h1_drain(c);
}

/* ---- streamed responses ------------------------------------------------------ */

void h1_discard_rest(conn *c, treq *r)
{
    r->body_mode = HTTP_BODY_DISCARD;
    r->held = 0;
    /* The rest must arrive within a read timeout from now (conn.c). */
    conn_request_started(c, r);
    if (c->h1_body_blocked && c->cur == r) {
        c->h1_body_blocked = false;
        conn_mark_dirty(c);
    }
}

void h1_close_early(conn *c, treq *r)
{
    /* The client may still be sending the body: keep reading (and dropping)
     * it for a moment after our FIN, so it reads the answer instead of a
     * reset caused by unread input. */
    r->close = true;
    c->linger_wanted = true;
}

void h1_begin(treq *r, int status, const http_header *headers, size_t n)
{
    conn *c = r->conn;
    if ((c->draining || c->retiring) && !r->next && (!c->cur || c->cur == r))
        r->close = true;
    /* HTTP/1.0 has no chunked encoding: the body ends with the connection. */
    r->h1_chunked = r->http_minor >= 1;
    if (!r->h1_chunked)
        r->close = true;
    int st = status >= 200 && status <= 999 ? status : 500;
    chcp_buf *b = &r->resp;
    buf_append(b, "HTTP/1.1 ", 9);
    append_uint(b, (size_t)st);
    buf_append_byte(b, ' ');
    buf_append_str(b, http_reason(st));
    buf_append(b, "\r\n", 2);
    for (size_t i = 0; i < n; i++) {
        const http_header *h = &headers[i];
        if (!header_safe(h) || is_managed_header(h))
            continue;
        buf_append(b, h->name, h->name_len);
        buf_append(b, ": ", 2);
        buf_append(b, h->value, h->value_len);
        buf_append(b, "\r\n", 2);
    }
    if (r->h1_chunked)
        buf_append_str(b, "transfer-encoding: chunked\r\n");
    if (r->close)
        buf_append_str(b, "connection: close\r\n");
    buf_append(b, "\r\n", 2);
}

void h1_write(treq *r, const uint8_t *data, size_t len)
{
    chcp_buf *b = &r->resp;
    if (r->h1_chunked) {
        char size[24];
        int k = snprintf(size, sizeof(size), "%zx\r\n", len);
        buf_append(b, size, (size_t)k);
    }
    buf_append(b, data, len);
    if (r->h1_chunked)
        buf_append(b, "\r\n", 2);
}

void h1_end(treq *r)
{
    if (r->h1_chunked)
        buf_append(&r->resp, "0\r\n\r\n", 5);
    h1_drain(r->conn);
}

void h1_pump(conn *c)
{
    if (c->reqs && c->reqs->resp_streaming)
        h1_drain(c);
}

void h1_fail(conn *c, int status)
{
    treq *r = c->cur;
    /* A streamed body that turned out malformed: its call is cancelled (the
     * layer above hears on_cancel) and the 400 ends the connection. */
    if (r && r->dispatched && !r->responded && r->body_mode == HTTP_BODY_STREAM) {
        c->cur = NULL;
        treq_detach(r);
        r = NULL;
    }
    if (!r || r->dispatched)
        r = treq_new(c);
    c->cur = NULL;
    c->rd_discard = true;
    c->linger_wanted = true;
    r->internal = true;
    r->dispatched = true;
    r->close = true;
    http_response resp = {.status = status};
    h1_respond(r, &resp);
    conn_mark_dirty(c);
}

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}
