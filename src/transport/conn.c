/*
 * conn.c - one client connection: accept, read, HTTP/2 preface sniffing,
 * batched output, timeouts and teardown.
 *
 * Deadlines, none of which a client can renew by sending control frames or
 * trickling bytes: a request's header block must complete within
 * header_timeout_ms of its first byte and the whole request within
 * read_timeout_ms; a response must be written within write_timeout_ms; a
 * connection with no request in progress is closed idle_timeout_ms after its
 * last request ended (PING, SETTINGS, WINDOW_UPDATE and stray line ends do
 * not count); at max_connection_age_ms it is drained (GOAWAY, or
 * "connection: close" on its next answer).
 *
 * Output from all requests of a connection is gathered in `out` during a loop
 * pass and written with a single uv_try_write/uv_write from the transport's
 * prepare/check hooks (conn_flush_all). A connection is never freed from
 * inside a protocol callback: closing is only started from loop callbacks and
 * the memory goes once libuv has closed both handles.
 */
#include "transport/internal.h"

#include <string.h>

static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- timers -------------------------------------------------------------- */

static void on_timer(uv_timer_t *h);
static void conn_retire(conn *c);

/* Make sure the timer fires no later than `due`. It may fire early: the
 * handler recomputes the real deadlines, which keeps the hot path free of
 * timer updates on every read. */
void conn_timer_want(conn *c, uint64_t due)
{
    if (!c->has_io || c->closing)
        return;
    if (c->timer_due && c->timer_due <= due)
        return;
    c->timer_due = due;
    uint64_t now = uv_now(c->t->loop);
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* When a request still arriving must be complete (or its headers, first). */
static uint64_t request_deadline(const conn *c, const treq *r)
{
    const transport_limits *l = &c->t->lim;
    uint64_t due = r->start_ms + l->read_timeout_ms;
    if (!r->hdrs_done)
        due = min_u64(due, r->start_ms + l->header_timeout_ms);
    return due;
}

/* Bytes that may be the HTTP/2 preface arrived, and no request yet. */
static uint64_t sniff_deadline(const conn *c)
{
    const transport_limits *l = &c->t->lim;
    return c->last_progress + min_u64(l->header_timeout_ms, l->read_timeout_ms);
}

void conn_request_started(conn *c, treq *r)
{
    r->start_ms = uv_now(c->t->loop);
    c->last_progress = r->start_ms;
    conn_timer_want(c, request_deadline(c, r));
}

void conn_requests_done(conn *c)
{
    if (c->closing)
        return;
    c->last_progress = uv_now(c->t->loop);
    conn_timer_want(c, c->last_progress + c->t->lim.idle_timeout_ms);
}

bool conn_has_output(const conn *c)
{
    return c->out.len > 0 || tls_has_output(c);
}

bool conn_is_idle(const conn *c)
{
    return !c->reqs && !conn_has_output(c) && !c->writing && c->pending_in.len == 0;
}

/* Returns the earliest request deadline, acting on the ones already passed. */
static uint64_t check_read_timeouts(conn *c, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    if (c->proto == PROTO_H1) {
        treq *r = c->cur;
        if (r && (!r->dispatched || r->responded)) {
            /* Answered already (a streamed answer ended early): only the
             * rest of its body is awaited; without it the connection goes. */
            uint64_t due = request_deadline(c, r);
            if (now >= due && r->responded) {
                conn_close(c);
            } else if (now >= due) {
                h1_fail(c, 408);
                conn_mark_dirty(c);
            } else {
                next = due;
            }
        }
    } else if (c->proto == PROTO_H2) {
        for (treq *r = c->reqs; r; r = r->next) {
            if (r->remote_done || r->dispatched)
                continue;
            uint64_t due = request_deadline(c, r);
            if (now >= due) {
                h2_timeout_stream(c, r);
                conn_mark_dirty(c);
            } else {
                next = min_u64(next, due);
            }
        }
    } else if (c->sniff_len > 0 || tls_handshaking(c)) {
        /* Part of a preface (or of a TLS handshake) and nothing more: a
         * request that started. */
        uint64_t due = sniff_deadline(c);
        if (now >= due)
            conn_close(c);
        else
            next = due;
    }
    return next;
}

static void on_timer(uv_timer_t *h)
{
    conn *c = h->data;
    uint64_t now = uv_now(c->t->loop);
    c->timer_due = 0;
    if (c->closing)
        return;
    if (c->lingering) {
        if (now >= c->linger_due)
            conn_close(c);
        else
            conn_timer_want(c, c->linger_due);
        return;
    }
    const transport_limits *l = &c->t->lim;
    uint64_t next = check_read_timeouts(c, now);
    if (c->closing)
        return;
    /* Answers stuck behind a window the client never opens. */
    if (c->proto == PROTO_H2)
        next = min_u64(next, h2_check_send_deadlines(c, now));
    /* A peer that stops reading our output is as gone as a silent one. */
    if (c->writing) {
        uint64_t due = c->write_since + l->write_timeout_ms;
        if (now >= due) {
            conn_close(c);
            return;
        }
        next = min_u64(next, due);
    }
    if (!c->draining && !c->retiring) {
        uint64_t due = c->born + l->max_connection_age_ms;
        if (now >= due)
            conn_retire(c);
        else
            next = min_u64(next, due);
    }
    if (conn_is_idle(c)) {
        uint64_t due = c->last_progress + l->idle_timeout_ms;
        if (now >= due) {
            if (c->proto == PROTO_H2) {
                h2_goaway(c, false);
                c->close_after_flush = true;
                conn_mark_dirty(c);
            } else {
                conn_close(c);
            }
            return;
        }
        if (due < next)
            next = due;
    }
    if (next != UINT64_MAX)
        conn_timer_want(c, next);
}

/* ---- reading ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn *c = h->data;
    /* Input is consumed synchronously in on_read, so one buffer serves all. */
    buf->base = (char *)c->t->rbuf;
    buf->len = sizeof(c->t->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_update_reading(conn *c)
{
    if (!c->has_io || c->closing)
        return;
    bool want = !c->peer_eof &&
                (c->lingering || (!c->h1_paused && !(c->writing && c->out.len >= CONN_OUT_HIGH)));
    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0)
            c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
}

/* EOF means the client is gone, as Go's server reads it too: requests still
 * waiting for answers are cancelled. Output already produced still goes. */
void conn_on_eof(conn *c)
{
    c->peer_eof = true;
    conn_update_reading(c);
    if (c->lingering || c->proto != PROTO_H1) {
        conn_close(c);
        return;
    }
    c->rd_discard = true;
    buf_reset(&c->pending_in);
    while (c->reqs)
        treq_detach(c->reqs);
    c->close_after_flush = true;
    conn_mark_dirty(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (c->closing)
        return;
    if (nread > 0) {
        const uint8_t *data = (const uint8_t *)buf->base;
        if (c->tls && !c->lingering)
            tls_feed(c, data, (size_t)nread);
        else if (!c->lingering)
            conn_feed(c, data, (size_t)nread);
        if (!c->closing)
            conn_update_reading(c);
    } else if (nread == UV_EOF) {
        conn_on_eof(c);
    } else if (nread < 0) {
        conn_close(c);
    }
}

void conn_feed(conn *c, const uint8_t *data, size_t len)
{
    if (c->closing || c->rd_discard || len == 0)
        return;
    if (c->proto == PROTO_H1) {
        h1_feed(c, data, len);
        return;
    }
    if (c->proto == PROTO_H2) {
        h2_feed(c, data, len);
        return;
    }
    /* Sniffing: the preface may arrive in pieces. */
    size_t want = sizeof(H2_PREFACE) - 1 - c->sniff_len;
    size_t n = len < want ? len : want;
    if (memcmp(data, H2_PREFACE + c->sniff_len, n) == 0) {
        if (c->sniff_len + n < sizeof(H2_PREFACE) - 1) {
            memcpy(c->sniff + c->sniff_len, data, n);
            c->sniff_len += n;
            conn_timer_want(c, sniff_deadline(c));
            return;
        }
        c->proto = PROTO_H2;
        h2_start(c);
        h2_feed(c, (const uint8_t *)H2_PREFACE, sizeof(H2_PREFACE) - 1);
        if (len > n)
            h2_feed(c, data + n, len - n);
        return;
    }
    c->proto = PROTO_H1;
    h1_start(c);
    if (c->sniff_len)
        h1_feed(c, c->sniff, c->sniff_len);
    h1_feed(c, data, len);
}

/* ---- writing and flushing ------------------------------------------------ */

void conn_mark_dirty(conn *c)
{
    if (c->dirty || c->closing)
        return;
    c->dirty = true;
    c->dirty_next = c->t->dirty;
    c->t->dirty = c;
}

static void on_write(uv_write_t *req, int status)
{
    conn *c = req->data;
    c->writing = false;
    buf_reset(&c->wbuf);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_mark_dirty(c);
    conn_update_reading(c);
}

static void conn_write(conn *c)
{
    if (!c->has_io) {
        if (c->sink)
            c->sink(c->out.data, c->out.len, c->sink_ud);
        buf_reset(&c->out);
        return;
    }
    /* Under TLS what goes out is the sealed records (tls.c). */
    chcp_buf *pending = &c->out;
    if (c->tls && !(pending = tls_seal(c))) {
        conn_close(c);
        return;
    }
    if (!pending->len)
        return;
    uv_buf_t b = uv_buf_init((char *)pending->data, (unsigned)pending->len);
    int n = uv_try_write(&c->h.stream, &b, 1);
    if (n == (int)pending->len) {
        buf_reset(pending);
        if (pending->cap > CONN_KEEP_BUF)
            buf_free(pending);
        return;
    }
    if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
        conn_close(c);
        return;
    }
    if (n < 0)
        n = 0;
    /* The rest goes out asynchronously; new output gathers in `out`. */
    chcp_buf tmp = c->wbuf;
    c->wbuf = *pending;
    *pending = tmp;
    buf_reset(pending);
    b = uv_buf_init((char *)c->wbuf.data + n, (unsigned)(c->wbuf.len - (size_t)n));
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, on_write) < 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
    c->write_since = uv_now(c->t->loop);
    conn_timer_want(c, c->write_since + c->t->lim.write_timeout_ms);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn *c = req->data;
    if (status < 0 && !c->closing)
        conn_close(c);
}

/* Close. After an error answer (400, 408, 413-style, 431) the client may
 * still be sending: send FIN and keep reading (and dropping) for a moment, so
 * it sees our response rather than a reset caused by unread input. */
static void conn_finish(conn *c)
{
    if (!c->has_io || !c->linger_wanted || c->peer_eof || c->lingering) {
        if (!c->lingering)
            conn_close(c);
        return;
    }
    c->lingering = true;
    c->rd_discard = true;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, &c->h.stream, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    uint64_t linger = CONN_LINGER_MS;
    if (c->t->lim.read_timeout_ms < linger)
        linger = c->t->lim.read_timeout_ms;
    c->linger_due = uv_now(c->t->loop) + linger;
    conn_timer_want(c, c->linger_due);
    conn_update_reading(c);
}

static bool conn_should_close(conn *c)
{
    if (c->writing || conn_has_output(c))
        return false;
    if (c->close_after_flush)
        return true;
    if (c->proto == PROTO_H2 && h2_done(c))
        return true;
    /* Draining, or after EOF: once every complete request is answered. */
    return (c->draining || c->peer_eof) && !c->reqs && c->pending_in.len == 0;
}

/* Buffers that grew for a large answer go back once empty: a connection
 * at rest holds little, however much it once sent. */
static void trim_buffers(conn *c)
{
    if (c->out.len == 0 && c->out.cap > CONN_KEEP_BUF)
        buf_free(&c->out);
    if (!c->writing && c->wbuf.cap > CONN_KEEP_BUF)
        buf_free(&c->wbuf);
    if (c->pending_in.len == 0 && c->pending_in.cap > CONN_KEEP_BUF)
        buf_free(&c->pending_in);
}

static void conn_flush(conn *c)
{
    if (c->proto == PROTO_H1 && c->h1_paused && !c->h1_body_blocked &&
        c->n_inflight < H1_MAX_PIPELINE && c->out.len < CONN_OUT_HIGH)
        h1_resume(c);
    if (c->closing)
        return;
    if (c->proto == PROTO_H1)
        h1_pump(c);
    if (c->proto == PROTO_H2 && c->out.len < CONN_OUT_HIGH)
        h2_pump(c);
    if (conn_has_output(c) && !c->writing) {
        conn_write(c);
        if (c->closing)
            return;
    }
    /* Streamed responses whose queues emptied may produce more (next pass). */
    conn_notify_drain(c);
    if (c->closing)
        return;
    trim_buffers(c);
    budget_tx_recount(c);
    if (conn_should_close(c)) {
        /* TLS says goodbye first (close_notify), then closes as usual. */
        if (c->tls && tls_close_notify(c)) {
            conn_write(c);
            if (c->closing || c->writing)
                return;
        }
        conn_finish(c);
        return;
    }
    conn_update_reading(c);
    if (conn_is_idle(c))
        conn_timer_want(c, c->last_progress + c->t->lim.idle_timeout_ms);
}

static void on_kick(uv_idle_t *h)
{
    conn_flush_all(h->data);
}

void conn_flush_all(transport *t)
{
    /* A flush can produce more work (resumed pipelines, streamed responses
     * refilled by on_drain): a few passes. */
    for (int pass = 0; pass < 8 && t->dirty; pass++) {
        conn *list = t->dirty;
        t->dirty = NULL;
        while (list) {
            conn *c = list;
            list = c->dirty_next;
            c->dirty_next = NULL;
            c->dirty = false;
            if (!c->closing)
                conn_flush(c);
        }
    }
    /* Work left over must not wait for unrelated I/O: an active idle handle
     * keeps the next poll from blocking. */
    if (t->closing)
        return;
    if (t->dirty)
        uv_idle_start(&t->kick, on_kick);
    else
        uv_idle_stop(&t->kick);
}

/* ---- lifecycle ------------------------------------------------------------- */

/* The peer's name for logs, and its address as the per-peer key (IPv4 as
 * ::ffff:a.b.c.d, so an IPv4 peer is one peer on a dual-stack listener). */
static void format_peer(conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) < 0) {
        strcpy(c->peer, "tcp");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        memcpy(c->peer_addr, &a->sin6_addr, 16);
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        c->peer_addr[10] = c->peer_addr[11] = 0xff;
        memcpy(c->peer_addr + 12, &a->sin_addr, 4);
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", ip, ntohs(a->sin_port));
    }
}

static void conn_link(transport *t, conn *c)
{
    c->t = t;
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    t->n_conns++;
    if (c->is_unix)
        t->n_unix++;
    else
        t->n_tcp++;
}

static void free_unaccepted(uv_handle_t *h)
{
    free(h->data); /* the conn that embeds the handle */
}

conn *conn_accepted(transport *t, uv_stream_t *server)
{
    bool tcp = server->type == UV_TCP;
    conn *c = xcalloc(1, sizeof(*c));
    if (tcp)
        uv_tcp_init(t->loop, &c->h.tcp);
    else
        uv_pipe_init(t->loop, &c->h.pipe, 0);
    c->h.handle.data = c;
    if (uv_accept(server, &c->h.stream) < 0) {
        uv_close(&c->h.handle, free_unaccepted);
        return NULL;
    }
    c->has_io = true;
    c->is_unix = !tcp;
    c->ident = conn_identity_new();
    if (tcp) {
        uv_tcp_nodelay(&c->h.tcp, 1);
        format_peer(c);
    } else {
        strcpy(c->peer, "unix");
        uv_os_fd_t fd;
        if (uv_fileno(&c->h.handle, &fd) == 0)
            conn_identity_read_cred(c->ident, fd);
    }
    c->born = c->last_progress = uv_now(t->loop);
    uv_timer_init(t->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    t->open_handles++;
    conn_link(t, c);
    if (tcp && t->tls)
        tls_conn_start(c);
    return c;
}

void conn_start(conn *c)
{
    const transport_limits *l = &c->t->lim;
    conn_update_reading(c);
    conn_timer_want(
        c, min_u64(c->last_progress + l->idle_timeout_ms, c->born + l->max_connection_age_ms));
    if (c->tls)
        conn_timer_want(c, sniff_deadline(c));
}

static void conn_free_buffers(conn *c)
{
    buf_free(&c->out);
    buf_free(&c->wbuf);
    buf_free(&c->pending_in);
    tls_conn_free(c);
    conn_identity_unref(c->ident);
    c->ident = NULL;
}

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    transport *t = c->t;
    conn_free_buffers(c);
    free(c);
    transport_handle_closed(t);
}

static void conn_unlink_dirty(conn *c)
{
    if (!c->dirty)
        return;
    for (conn **p = &c->t->dirty; *p; p = &(*p)->dirty_next) {
        if (*p == c) {
            *p = c->dirty_next;
            break;
        }
    }
    c->dirty = false;
    c->dirty_next = NULL;
}

void conn_close(conn *c)
{
    transport *t = c->t;
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else if (t->conns == c)
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    t->n_conns--;
    if (c->is_unix)
        t->n_unix--;
    else
        t->n_tcp--;
    peers_forget(t, c);
    conn_unlink_dirty(c);
    /* Tell the layer above about every request it still holds. */
    while (c->reqs)
        treq_detach(c->reqs);
    c->cur = NULL;
    budget_conn_closed(c);
    h2_free(c);
    if (!c->has_io)
        return;
    if (c->reading)
        uv_read_stop(&c->h.stream);
    uv_close(&c->h.handle, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

void conn_evict(conn *c)
{
    /* Say goodbye on HTTP/2 if the socket takes it at once; never wait. */
    if (c->proto == PROTO_H2 && c->h2) {
        h2_goaway(c, false);
        h2_pump(c);
        chcp_buf *pending = c->tls ? tls_seal(c) : &c->out;
        if (c->has_io && pending && pending->len && !c->writing) {
            uv_buf_t b = uv_buf_init((char *)pending->data, (unsigned)pending->len);
            (void)uv_try_write(&c->h.stream, &b, 1);
        }
    }
    conn_close(c);
}

/* Old enough: HTTP/2 gets a graceful GOAWAY (streams in progress finish);
 * HTTP/1.1 says "connection: close" on its next answer (closing an idle one
 * now would race with a request already on its way). */
static void conn_retire(conn *c)
{
    c->retiring = true;
    if (c->proto == PROTO_H2) {
        c->draining = true;
        h2_goaway(c, true);
        conn_mark_dirty(c);
    }
}

void conn_begin_drain(conn *c)
{
    c->draining = true;
    if (c->proto == PROTO_H2) {
        h2_goaway(c, true);
        conn_mark_dirty(c);
        return;
    }
    if (conn_is_idle(c)) {
        conn_close(c);
        return;
    }
    /* Busy: the last response says "connection: close". */
    conn_mark_dirty(c);
}

/* ---- fake connections (fuzzing) ------------------------------------------- */

conn *conn_new_fake(transport *t, conn_sink_fn sink, void *ud)
{
    conn *c = xcalloc(1, sizeof(*c));
    c->sink = sink;
    c->sink_ud = ud;
    strcpy(c->peer, "fuzz");
    c->ident = conn_identity_new();
    conn_link(t, c);
    c->born = c->last_progress = uv_now(t->loop);
    return c;
}

void conn_flush_fake(conn *c)
{
    conn_flush_all(c->t);
}

void conn_destroy_fake(conn *c)
{
    conn_close(c);
    conn_free_buffers(c);
    free(c);
}
