/*
 * http2.c - h2c (prior knowledge) through an nghttp2 server session.
 *
 * nghttp2 does the framing, HPACK, flow control and protocol checks; this
 * file turns streams into http_requests and http_responses into frames.
 * Output is pulled with nghttp2_session_mem_send() into the connection's
 * batch buffer (h2_pump), never written from inside a callback.
 *
 * Response shapes (what gRPC needs):
 *   no body, no trailers -> one HEADERS with END_STREAM (trailers-only)
 *   no body, trailers    -> HEADERS, then trailers HEADERS with END_STREAM
 *   body                 -> HEADERS, DATA..., and either END_STREAM on the
 *                           last DATA or trailers after it
 * A response finished before the client's END_STREAM is followed by
 * RST_STREAM(NO_ERROR), so the client stops sending a body nobody reads.
 *
 * Flow control is ours (no automatic WINDOW_UPDATE): the connection window
 * is the connection's request budget, a stream's window one body of the
 * largest size (plus a frame, so an oversized body is answered
 * resource_exhausted rather than hitting a flow-control error), and DATA
 * bytes are given back only once they are no longer held and the budget has
 * room (h2_regrant). A response must be sent within write_timeout_ms of
 * being queued, or the stream is reset and its buffer freed: a client that
 * sets SETTINGS_INITIAL_WINDOW_SIZE=0 cannot pin answers.
 *
 * Streaming (stream.c): the layer above sees a stream when its HEADERS
 * arrive. DATA of a streamed body is held (and charged to the budget) until
 * the layer above consumes it; only then do its stream's window and the
 * connection's reopen, so a paused handler pauses its client. A streamed
 * response is a data provider over the request's queue that defers while
 * the queue is empty and is resumed by each write.
 */
#include "transport/internal.h"

#include <string.h>

/* Header lists we build on the stack up to this size. */
#define H2_NV_STACK 32

static treq *stream_req(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    treq *r = treq_new(c);
    r->stream_id = frame->hd.stream_id;
    r->pub.http_major = 2;
    conn_request_started(c, r);
    nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, r);
    return 0;
}

static uint32_t append_str(treq *r, const uint8_t *p, size_t len)
{
    uint32_t off = (uint32_t)r->strings.len;
    buf_reserve(&r->strings, len + 1);
    buf_append(&r->strings, p, len);
    buf_append_byte(&r->strings, 0);
    return off;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    conn *c = ud;
    treq *r = stream_req(s, frame->hd.stream_id);
    if (!r || r->hdrs_done) /* request trailers carry nothing we use */
        return 0;
    /* Same accounting as SETTINGS_MAX_HEADER_LIST_SIZE. */
    r->hdr_bytes += (uint32_t)(namelen + valuelen + 32);
    if (r->hdr_bytes > c->t->lim.max_header_bytes)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    if (namelen > 0 && name[0] == ':') {
        if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
            r->method_off = append_str(r, value, valuelen);
            r->method_len = (uint32_t)valuelen;
        } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
            r->path_off = append_str(r, value, valuelen);
            r->path_len = (uint32_t)valuelen;
        } else if (namelen == 10 && memcmp(name, ":authority", 10) == 0) {
            /* HTTP/1.1's Host, as the layer above knows it (RFC 9113 8.3.1). */
            hdr_ref *h = treq_push_ref(r);
            h->name_off = append_str(r, (const uint8_t *)"host", 4);
            h->name_len = 4;
            h->value_off = append_str(r, value, valuelen);
            h->value_len = (uint32_t)valuelen;
        }
        return 0;
    }
    hdr_ref *h = treq_push_ref(r);
    h->name_off = append_str(r, name, namelen);
    h->name_len = (uint32_t)namelen;
    h->value_off = append_str(r, value, valuelen);
    h->value_len = (uint32_t)valuelen;
    return 0;
}

static void dispatch_too_large(treq *r)
{
    r->pub.body_too_large = true;
    budget_rx_drop_body(r);
    buf_free(&r->body);
    treq_dispatch(r);
}

static void dispatch_over_budget(treq *r, budget_verdict v)
{
    r->pub.body_over_budget = true;
    r->pub.budget_spent = v == BUDGET_CONN_SPENT ? "connection" : "server";
    budget_rx_drop_body(r);
    buf_free(&r->body);
    treq_dispatch(r);
}

/* The header block is complete: pointers can be made, and the layer above
 * decides how the body is read. */
static void finish_headers(conn *c, treq *r)
{
    r->hdrs_done = true;
    r->pub.received_ns = time_mono_ns();
    if (r->strings.len == 0)
        buf_append_byte(&r->strings, 0);
    treq_build_headers(r);
    char *base = (char *)r->strings.data;
    r->pub.method = r->method_len ? base + r->method_off : "";
    char *path = r->path_len ? base + r->path_off : base + r->strings.len - 1;
    char *q = memchr(path, '?', r->path_len);
    if (q) {
        *q = '\0';
        r->pub.query = q + 1;
    }
    r->pub.path = path;
    r->is_head = strcmp(r->pub.method, "HEAD") == 0;
    if (treq_headers_done(r) != HTTP_BODY_BUFFER)
        return;
    uint64_t declared;
    const char *cl = http_request_header(&r->pub, "content-length");
    if (cl && str_to_u64(cl, UINT64_MAX, &declared) && declared > c->t->lim.max_body_bytes)
        dispatch_too_large(r);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    treq *r = stream_req(s, frame->hd.stream_id);
    if (!r)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && !r->hdrs_done)
        finish_headers(c, r); /* may dispatch (declared body too large) */
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    r->remote_done = true;
    if (r->body_mode == HTTP_BODY_STREAM)
        treq_body(r, NULL, 0, true);
    else if (!r->dispatched)
        treq_dispatch(r);
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    conn *c = ud;
    treq *r = stream_req(s, id);
    c->h2_unconsumed += len;
    if (r && r->body_mode == HTTP_BODY_STREAM && !r->responded) {
        /* Held by the layer above until it consumes (http_request_consume);
         * the flow-control window bounds it. */
        budget_rx_add(r, len);
        treq_body(r, data, len, false);
        return 0;
    }
    budget_verdict v = BUDGET_OK;
    if (!r || r->dispatched) {
        /* not held: its window goes back at once */
    } else if (r->body.len + len > c->t->lim.max_body_bytes) {
        dispatch_too_large(r);
    } else if ((v = budget_rx_admit(c, len)) != BUDGET_OK) {
        dispatch_over_budget(r, v);
    } else {
        buf_append(&r->body, data, len);
        budget_rx_add(r, len);
        return 0;
    }
    h2_regrant(c);
    return 0;
}

void h2_regrant(conn *c)
{
    if (!c->h2)
        return;
    /* Bytes received and no longer held, less what decoded messages of
     * this connection occupy: window + held never exceeds the budget. */
    size_t spare = c->h2_unconsumed - c->rx_body;
    if (spare <= c->rx_decoded)
        return;
    size_t give = spare - c->rx_decoded;
    if (nghttp2_session_consume_connection(c->h2, give) == 0) {
        c->h2_unconsumed -= give;
        conn_mark_dirty(c);
    }
}

void h2_body_released(conn *c, treq *r, size_t n)
{
    if (!c->h2)
        return;
    /* Streams carrying more than one message get their window back too;
     * for a closed stream this is a no-op. */
    (void)nghttp2_session_consume_stream(c->h2, r->stream_id, n);
    h2_regrant(c);
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    treq *r = stream_req(s, id);
    if (!r)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    treq_detach(r); /* on_cancel if the answer is still owed */
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    treq *r = stream_req(s, frame->hd.stream_id);
    /* We are done but the client is still sending: tell it to stop. */
    if (r && !r->remote_done) {
        r->remote_done = true;
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

int h2_init_callbacks(transport *t)
{
    if (nghttp2_session_callbacks_new(&t->h2_callbacks) != 0)
        return -1;
    nghttp2_session_callbacks *cb = t->h2_callbacks;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    if (nghttp2_option_new(&t->h2_option) != 0) {
        nghttp2_session_callbacks_del(cb);
        return -1;
    }
    nghttp2_option_set_no_auto_window_update(t->h2_option, 1);
    nghttp2_option_set_stream_reset_rate_limit(t->h2_option, t->lim.h2_reset_rate_burst,
                                               t->lim.h2_reset_rate_per_sec);
    nghttp2_option_set_max_continuations(t->h2_option, t->lim.h2_max_continuations);
    return 0;
}

void h2_start(conn *c)
{
    const transport_limits *l = &c->t->lim;
    if (nghttp2_session_server_new2(&c->h2, c->t->h2_callbacks, c, c->t->h2_option) != 0) {
        c->h2 = NULL;
        c->rd_discard = true;
        c->close_after_flush = true;
        return;
    }
    /* Windows never promise more than the budgets allow: a stream, one
     * body of the largest size and a frame (so a streamed message of that
     * size can always arrive whole); the connection, its budget. */
    size_t conn_window = c->t->budget->conn_cap;
    size_t stream_window = treq_window(c->t);
    if (stream_window > conn_window)
        stream_window = conn_window;
    if (conn_window > (size_t)NGHTTP2_MAX_WINDOW_SIZE)
        conn_window = (size_t)NGHTTP2_MAX_WINDOW_SIZE;
    if (stream_window > (size_t)NGHTTP2_MAX_WINDOW_SIZE)
        stream_window = (size_t)NGHTTP2_MAX_WINDOW_SIZE;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->h2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)l->max_header_bytes},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)stream_window},
    };
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, ARRAY_SIZE(iv));
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_window);
    conn_mark_dirty(c);
}

int h2_start_upgraded(conn *c, treq *r, const uint8_t *settings, size_t len)
{
    h2_start(c);
    if (!c->h2 || nghttp2_session_upgrade2(c->h2, settings, len, r->is_head, r) != 0)
        return -1;
    r->stream_id = 1;
    r->pub.http_major = 2; /* answered over HTTP/2, trailers included */
    return 0;
}

void h2_feed(conn *c, const uint8_t *data, size_t len)
{
    if (!c->h2)
        return;
    ssize_t rv = nghttp2_session_mem_recv(c->h2, data, len);
    if (rv < 0) {
        /* Fatal (bad preface, flooding...): say what nghttp2 queued, then go. */
        c->rd_discard = true;
        c->close_after_flush = true;
    }
    conn_mark_dirty(c);
}

void h2_pump(conn *c)
{
    if (!c->h2)
        return;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) {
            c->close_after_flush = true;
            return;
        }
        if (n == 0)
            return;
        buf_append(&c->out, data, (size_t)n);
        if (c->out.len >= CONN_OUT_HIGH) {
            conn_mark_dirty(c); /* more next pass, after this batch */
            return;
        }
    }
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    treq *r = src->ptr;
    size_t left = r->resp.len - r->resp_off;
    size_t n = left < length ? left : length;
    memcpy(buf, r->resp.data + r->resp_off, n);
    r->resp_off += n;
    if (r->resp_off == r->resp.len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (r->n_tr) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(s, id, r->tr_nv, r->n_tr) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

/* Headers that HTTP/2 forbids or that we manage ourselves. */
static bool skip_h2_header(const http_header *h, bool add_length)
{
    if (!header_safe(h))
        return true;
    switch (h->name_len) {
    case 7:
        return str_ieq(h->name, "upgrade");
    case 10:
        return str_ieq(h->name, "connection") || str_ieq(h->name, "keep-alive");
    case 14:
        return add_length && str_ieq(h->name, "content-length");
    case 16:
        return str_ieq(h->name, "proxy-connection");
    case 17:
        return str_ieq(h->name, "transfer-encoding");
    default:
        return false;
    }
}

static size_t fill_nv(nghttp2_nv *nv, const http_header *hs, size_t n, bool add_length)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_h2_header(&hs[i], add_length))
            continue;
        nv[k++] = (nghttp2_nv){(uint8_t *)hs[i].name, (uint8_t *)hs[i].value, hs[i].name_len,
                               hs[i].value_len, NGHTTP2_NV_FLAG_NONE};
    }
    return k;
}

/* Trailers are submitted later, from the data provider: keep a copy. */
void h2_set_trailers(treq *r, const http_header *trailers, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += trailers[i].name_len + trailers[i].value_len + 2;
    if (r->cap_tr < n) {
        r->cap_tr = n;
        r->tr_nv = xrealloc(r->tr_nv, r->cap_tr * sizeof(*r->tr_nv));
    }
    buf_reset(&r->tr_strings);
    buf_reserve(&r->tr_strings, total); /* no reallocation below: pointers stay */
    r->n_tr = 0;
    for (size_t i = 0; i < n; i++) {
        const http_header *h = &trailers[i];
        if (skip_h2_header(h, false))
            continue;
        uint8_t *name = r->tr_strings.data + r->tr_strings.len;
        buf_append(&r->tr_strings, h->name, h->name_len);
        buf_append_byte(&r->tr_strings, 0);
        uint8_t *value = r->tr_strings.data + r->tr_strings.len;
        buf_append(&r->tr_strings, h->value, h->value_len);
        buf_append_byte(&r->tr_strings, 0);
        r->tr_nv[r->n_tr++] =
            (nghttp2_nv){name, value, h->name_len, h->value_len, NGHTTP2_NV_FLAG_NONE};
    }
}

static int submit(conn *c, treq *r, const http_response *resp, nghttp2_nv *nv, size_t n)
{
    int32_t id = r->stream_id;
    size_t body_len = r->is_head ? 0 : resp->body_len;
    if (body_len == 0 && resp->n_trailers == 0)
        return nghttp2_submit_response(c->h2, id, nv, n, NULL);
    if (body_len == 0) {
        nghttp2_nv stack[H2_NV_STACK];
        nghttp2_nv *tv =
            resp->n_trailers <= H2_NV_STACK ? stack : xmalloc(resp->n_trailers * sizeof(*tv));
        size_t nt = fill_nv(tv, resp->trailers, resp->n_trailers, false);
        int rv = nghttp2_submit_headers(c->h2, NGHTTP2_FLAG_NONE, id, NULL, nv, n, NULL);
        if (rv >= 0)
            rv = nghttp2_submit_trailer(c->h2, id, tv, nt);
        if (tv != stack)
            free(tv);
        return rv < 0 ? rv : 0;
    }
    buf_reset(&r->resp);
    buf_append(&r->resp, resp->body, body_len);
    r->resp_off = 0;
    h2_set_trailers(r, resp->trailers, resp->n_trailers);
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = read_body};
    return nghttp2_submit_response(c->h2, id, nv, n, &prd);
}

/* ":status" and the headers; room for one more entry is left. */
static size_t status_nv(nghttp2_nv *nv, char status[4], int code, const http_header *hs, size_t n,
                        bool add_length)
{
    int st = code >= 200 && code <= 999 ? code : 500;
    status[0] = (char)('0' + st / 100);
    status[1] = (char)('0' + st / 10 % 10);
    status[2] = (char)('0' + st % 10);
    status[3] = '\0';
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    return 1 + fill_nv(nv + 1, hs, n, add_length);
}

void h2_respond(treq *r, const http_response *resp)
{
    conn *c = r->conn;
    if (!c->h2)
        return;
    r->resp_due = uv_now(c->t->loop) + c->t->lim.write_timeout_ms;
    conn_timer_want(c, r->resp_due);
    bool add_length = resp->n_trailers == 0 && resp->body_len > 0;
    size_t max = resp->n_headers + 2;
    nghttp2_nv stack[H2_NV_STACK];
    nghttp2_nv *nv = max <= H2_NV_STACK ? stack : xmalloc(max * sizeof(*nv));
    char status[4], length[24];
    size_t n = status_nv(nv, status, resp->status, resp->headers, resp->n_headers, add_length);
    if (add_length) {
        size_t i = sizeof(length), v = resp->body_len;
        do {
            length[--i] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)length + i, 14,
                               sizeof(length) - i, NGHTTP2_NV_FLAG_NONE};
    }
    if (submit(c, r, resp, nv, n) != 0)
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_INTERNAL_ERROR);
    if (nv != stack)
        free(nv);
}

/* ---- streamed responses ---------------------------------------------------- */

/* Pull from the queue; defer while it is empty and not ended. The queue
 * restarts at offset 0 each time it empties, so it does not grow. */
static ssize_t read_stream(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    treq *r = src->ptr;
    size_t left = r->resp.len - r->resp_off;
    if (left == 0 && !r->resp_ended) {
        r->h2_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = left < length ? left : length;
    if (n)
        memcpy(buf, r->resp.data + r->resp_off, n);
    r->resp_off += n;
    if (r->resp_off == r->resp.len) {
        r->resp_off = 0;
        r->resp.len = 0;
        if (r->resp_ended) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            if (r->n_tr) {
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                if (nghttp2_submit_trailer(s, id, r->tr_nv, r->n_tr) != 0)
                    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
        }
    }
    return (ssize_t)n;
}

void h2_begin(treq *r, int status, const http_header *headers, size_t n_headers)
{
    conn *c = r->conn;
    if (!c->h2)
        return;
    size_t max = n_headers + 1;
    nghttp2_nv stack[H2_NV_STACK];
    nghttp2_nv *nv = max <= H2_NV_STACK ? stack : xmalloc(max * sizeof(*nv));
    char st[4];
    size_t n = status_nv(nv, st, status, headers, n_headers, false);
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = read_stream};
    if (nghttp2_submit_response(c->h2, r->stream_id, nv, n, &prd) != 0)
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_INTERNAL_ERROR);
    if (nv != stack)
        free(nv);
}

void h2_resume(treq *r)
{
    conn *c = r->conn;
    if (!c->h2 || !r->h2_deferred)
        return;
    r->h2_deferred = false;
    nghttp2_session_resume_data(c->h2, r->stream_id);
}

void h2_timeout_stream(conn *c, treq *r)
{
    r->remote_done = true; /* not waiting for it any more */
    nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
}

uint64_t h2_check_send_deadlines(conn *c, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (treq *r = c->reqs; r; r = r->next) {
        if (!r->responded || !r->resp_due)
            continue;
        if (now >= r->resp_due) {
            /* Its stream closes (and the answer is freed) once the reset
             * is sent. */
            r->resp_due = 0;
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
            conn_mark_dirty(c);
        } else if (r->resp_due < next) {
            next = r->resp_due;
        }
    }
    return next;
}

void h2_goaway(conn *c, bool graceful)
{
    if (!c->h2)
        return;
    if (graceful)
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              NULL, 0);
    else
        nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
}

bool h2_done(conn *c)
{
    if (!c->h2)
        return true;
    if (nghttp2_session_want_write(c->h2))
        return false;
    return !nghttp2_session_want_read(c->h2) || (c->draining && !c->reqs);
}

void h2_free(conn *c)
{
    if (c->h2) {
        nghttp2_session_del(c->h2);
        c->h2 = NULL;
    }
}
