/*
 * test_transport_h2.c - h2c (prior knowledge) over real loopback sockets,
 * with an nghttp2 client session in the test: request/response, trailers,
 * trailers-only, empty body + trailers, early response + RST_STREAM, stream
 * reset -> on_cancel, concurrency, split preface, protocol errors, timeouts.
 */
#include <nghttp2/nghttp2.h>

#include "test_transport_util.h"

typedef struct h2stream {
    int32_t id;
    int status;
    char hdrs[4096];
    char trailers[1024];
    uint8_t body[65536];
    size_t body_len;
    char frames[32]; /* received: H headers, D data, T trailers, R rst */
    int n_frames;
    bool end_stream, closed;
    uint32_t close_code, rst_code;
    /* upload */
    const uint8_t *up;
    size_t up_len, up_off;
    bool up_hold; /* never send END_STREAM */
} h2stream;

typedef struct h2client {
    int fd;
    nghttp2_session *s;
    h2stream st[128];
    int n;
    bool goaway;
    uint32_t goaway_code;
    bool eof;
    int slow_bytes; /* send the first N bytes one at a time */
} h2client;

static h2stream *find_stream(h2client *c, int32_t id)
{
    for (int i = 0; i < c->n; i++)
        if (c->st[i].id == id)
            return &c->st[i];
    return NULL;
}

static ssize_t cl_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    h2client *c = ud;
    if (c->slow_bytes > 0) {
        send_all(c->fd, data, 1);
        c->slow_bytes--;
        usleep(2000);
        return 1;
    }
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    return n < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : n;
}

static int cl_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    h2stream *st = find_stream(ud, f->hd.stream_id);
    if (!st)
        return 0;
    char *dst = st->n_frames > 0 ? st->trailers : st->hdrs;
    size_t cap = st->n_frames > 0 ? sizeof(st->trailers) : sizeof(st->hdrs);
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        st->status = atoi((const char *)value);
        return 0;
    }
    size_t len = strlen(dst);
    snprintf(dst + len, cap - len, "%.*s: %.*s\n", (int)nl, name, (int)vl, value);
    return 0;
}

static int cl_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2client *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        c->goaway_code = f->goaway.error_code;
        return 0;
    }
    h2stream *st = find_stream(c, f->hd.stream_id);
    if (!st)
        return 0;
    char kind = 0;
    if (f->hd.type == NGHTTP2_HEADERS)
        kind = st->n_frames > 0 ? 'T' : 'H';
    else if (f->hd.type == NGHTTP2_DATA)
        kind = 'D';
    else if (f->hd.type == NGHTTP2_RST_STREAM) {
        kind = 'R';
        st->rst_code = f->rst_stream.error_code;
    }
    if (kind && st->n_frames < (int)sizeof(st->frames) - 1)
        st->frames[st->n_frames++] = kind;
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM && kind != 'R')
        st->end_stream = true;
    return 0;
}

static int cl_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud)
{
    h2stream *st = find_stream(ud, id);
    if (st && st->body_len + len <= sizeof(st->body)) {
        memcpy(st->body + st->body_len, data, len);
        st->body_len += len;
    }
    return 0;
}

static int cl_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    h2stream *st = find_stream(ud, id);
    if (st) {
        st->closed = true;
        st->close_code = code;
    }
    return 0;
}

static ssize_t cl_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *ud)
{
    h2stream *st = src->ptr;
    size_t n = st->up_len - st->up_off;
    if (n > len)
        n = len;
    if (n)
        memcpy(buf, st->up + st->up_off, n);
    st->up_off += n;
    if (st->up_off == st->up_len) {
        if (st->up_hold && n == 0)
            return NGHTTP2_ERR_DEFERRED;
        if (!st->up_hold)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static h2client *h2_connect(int fd)
{
    h2client *c = calloc(1, sizeof(*c));
    c->fd = fd;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, cl_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, cl_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cl_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cl_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, cl_close);
    assert_int_equal(nghttp2_session_client_new(&c->s, cb, c), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0);
    return c;
}

static void h2_disconnect(h2client *c)
{
    nghttp2_session_del(c->s);
    close(c->fd);
    free(c);
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE                 \
    }

/* Submit a request; extra headers as name, value pairs (NULL-terminated). */
static h2stream *h2_request(h2client *c, const char *method, const char *path, const void *body,
                            size_t body_len, bool hold, ...)
{
    nghttp2_nv nv[24] = {NV(":method", method), NV(":scheme", "http"), NV(":path", path),
                         NV(":authority", "localhost")};
    size_t n = 4;
    va_list ap;
    va_start(ap, hold);
    const char *name;
    while ((name = va_arg(ap, const char *)) && n < ARRAY_SIZE(nv)) {
        const char *value = va_arg(ap, const char *);
        nv[n++] = (nghttp2_nv)NV(name, value);
    }
    va_end(ap);
    h2stream *st = &c->st[c->n++];
    memset(st, 0, sizeof(*st));
    st->up = body;
    st->up_len = body_len;
    st->up_hold = hold;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = cl_read};
    st->id = nghttp2_submit_request(c->s, NULL, nv, n, (body || hold) ? &prd : NULL, st);
    assert_true(st->id > 0);
    return st;
}

/* Drive the client until `done(c, arg)` or the timeout. */
static bool h2_run(h2client *c, bool (*done)(h2client *c, void *arg), void *arg, int ms)
{
    uint8_t buf[65536];
    for (int waited = 0; waited <= ms; waited += 5) {
        if (nghttp2_session_want_write(c->s) && nghttp2_session_send(c->s) != 0)
            return false;
        if (done(c, arg))
            return true;
        if (c->eof)
            return false;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 5) == 1) {
            ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
            if (n <= 0) {
                c->eof = true;
                return done(c, arg);
            }
            if (nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0)
                return false;
        }
    }
    return false;
}

static bool stream_closed(h2client *c, void *arg)
{
    return ((h2stream *)arg)->closed;
}

static bool all_closed(h2client *c, void *arg)
{
    for (int i = 0; i < c->n; i++)
        if (!c->st[i].closed)
            return false;
    return true;
}

static bool got_goaway_eof(h2client *c, void *arg)
{
    return c->goaway && c->eof;
}

static bool never(h2client *c, void *arg)
{
    return false;
}

static void test_h2_basic(void **state)
{
    srv *s = srv_start(NULL, true);
    h2client *c = h2_connect(client_tcp(s->port));
    h2stream *a =
        h2_request(c, "GET", "/p/q?k=v", NULL, 0, false, "x-rep", "1", "x-rep", "2", NULL);
    h2stream *b = h2_request(c, "POST", "/echo", "payload", 7, false, NULL);
    assert_true(h2_run(c, all_closed, NULL, 3000));
    assert_int_equal(a->status, 200);
    assert_non_null(strstr(a->hdrs, "x-method: GET\n"));
    assert_non_null(strstr(a->hdrs, "x-path: /p/q\n"));
    assert_non_null(strstr(a->hdrs, "x-query: k=v\n"));
    assert_non_null(strstr(a->hdrs, "x-nrep: 2\n"));
    assert_string_equal(a->frames, "H"); /* no body: one HEADERS */
    assert_true(a->end_stream);
    assert_int_equal(b->status, 200);
    assert_int_equal(b->body_len, 7);
    assert_memory_equal(b->body, "payload", 7);
    assert_non_null(strstr(b->hdrs, "content-length: 7\n"));
    assert_string_equal(b->frames, "HD");
    assert_int_equal(s->last_major, 2);
    h2_disconnect(c);

    /* Over the Unix socket too. */
    c = h2_connect(client_unix(s->unix_path));
    a = h2_request(c, "GET", "/unix", NULL, 0, false, NULL);
    assert_true(h2_run(c, all_closed, NULL, 3000));
    assert_non_null(strstr(a->hdrs, "x-path: /unix\n"));
    h2_disconnect(c);
    srv_stop(s);
}

/* HTTP/1.1 "Upgrade: h2c": 101, then the request is answered on stream 1
 * over HTTP/2 and the connection carries on as HTTP/2. */
static void test_h2c_upgrade(void **state)
{
    srv *s = srv_start(NULL, false);
    int fd = client_tcp(s->port);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    uint8_t payload[16];
    ssize_t plen = nghttp2_pack_settings_payload(payload, sizeof(payload), iv, 1);
    assert_true(plen > 0);
    chcp_buf b64 = CHCP_BUF_INIT;
    base64_encode(&b64, payload, (size_t)plen, true, false);
    buf_append_byte(&b64, 0);
    char req[512];
    snprintf(req, sizeof(req),
             "GET /up?q=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
             "Upgrade: h2c\r\nHTTP2-Settings: %s\r\n\r\n",
             (char *)b64.data);
    buf_free(&b64);
    send_str(fd, req);
    /* Read exactly the 101 head, nothing more. */
    char head[256] = "";
    size_t len = 0;
    while (!strstr(head, "\r\n\r\n") && len < sizeof(head) - 1) {
        assert_int_equal(recv(fd, head + len, 1, 0), 1);
        len++;
    }
    assert_true(strncmp(head, "HTTP/1.1 101 ", 13) == 0);
    assert_non_null(strstr(head, "upgrade: h2c\r\n"));

    h2client *c = h2_connect(fd);
    h2stream *up = &c->st[c->n++];
    memset(up, 0, sizeof(*up));
    up->id = 1;
    assert_int_equal(nghttp2_session_upgrade2(c->s, payload, (size_t)plen, 0, up), 0);
    h2stream *next = h2_request(c, "GET", "/after", NULL, 0, false, NULL);
    assert_true(h2_run(c, all_closed, NULL, 3000));
    assert_int_equal(up->status, 200);
    assert_non_null(strstr(up->hdrs, "x-path: /up\n"));
    assert_non_null(strstr(up->hdrs, "x-query: q=1\n"));
    assert_int_equal(next->status, 200);
    assert_int_equal(s->last_major, 2);
    h2_disconnect(c);
    srv_stop(s);
}

static void test_h2_trailers(void **state)
{
    srv *s = srv_start(NULL, false);
    h2client *c = h2_connect(client_tcp(s->port));
    /* body + trailers: HEADERS, DATA, trailers(END_STREAM) */
    h2stream *a = h2_request(c, "POST", "/t", "abc", 3, false, "x-trailers", "1", NULL);
    /* trailers, empty body: HEADERS then trailers, no DATA */
    h2stream *b =
        h2_request(c, "POST", "/t2", NULL, 0, false, "x-trailers", "1", "x-empty", "1", NULL);
    /* no body, no trailers: trailers-only, a single HEADERS with END_STREAM */
    h2stream *d = h2_request(c, "POST", "/t3", NULL, 0, false, "x-status", "200", NULL);
    assert_true(h2_run(c, all_closed, NULL, 3000));
    assert_string_equal(a->frames, "HDT");
    assert_memory_equal(a->body, "abc", 3);
    assert_non_null(strstr(a->trailers, "grpc-status: 0\n"));
    assert_non_null(strstr(a->trailers, "x-t: v\n"));
    assert_null(strstr(a->hdrs, "content-length")); /* trailers: no length */
    assert_true(a->end_stream);
    assert_string_equal(b->frames, "HT");
    assert_non_null(strstr(b->trailers, "grpc-status: 0\n"));
    assert_string_equal(d->frames, "H");
    assert_true(d->end_stream);
    assert_int_equal(a->close_code, 0);
    assert_int_equal(b->close_code, 0);
    h2_disconnect(c);
    srv_stop(s);
}

static void test_h2_cancel(void **state)
{
    srv *s = srv_start(NULL, false);
    h2client *c = h2_connect(client_tcp(s->port));
    h2stream *a = h2_request(c, "GET", "/hold", NULL, 0, false, "x-hold", "1", NULL);
    h2stream *b = h2_request(c, "GET", "/other", NULL, 0, false, "x-delay-ms", "100", NULL);
    h2_run(c, never, NULL, 50);
    WAIT_FOR(s, st->n_held == 1);
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, a->id, NGHTTP2_CANCEL);
    assert_true(h2_run(c, stream_closed, b, 3000));
    WAIT_FOR(s, st->n_cancels == 1 && st->n_held == 0 && st->active == 0);
    assert_int_equal(b->status, 200); /* the other stream is unaffected */
    h2_disconnect(c);
    srv_stop(s);
}

/* A request whose body is too large is answered early; the stream is then
 * reset with NO_ERROR because the client never finished sending. */
static void test_h2_body_too_large(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_body_bytes = 1000;
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    static uint8_t big[1500];
    h2stream *a = h2_request(c, "POST", "/big", big, sizeof(big), true, NULL);
    h2stream *b = h2_request(c, "POST", "/declared", NULL, 0, true, "content-length", "5000", NULL);
    h2stream *ok = h2_request(c, "POST", "/ok", big, 100, false, NULL);
    assert_true(h2_run(c, all_closed, NULL, 3000));
    assert_int_equal(a->status, 413);
    assert_non_null(strstr(a->hdrs, "x-too-large: 1\n"));
    assert_string_equal(a->frames, "HR");
    assert_int_equal(a->rst_code, NGHTTP2_NO_ERROR);
    assert_int_equal(b->status, 413);
    assert_string_equal(b->frames, "HR");
    assert_int_equal(ok->status, 200);
    assert_int_equal(ok->body_len, 100);
    srv_stats st = srv_get_stats(s);
    assert_int_equal(st.n_too_large, 2);
    h2_disconnect(c);
    srv_stop(s);
}

/* A header block over the limit resets that stream only. */
static void test_h2_headers_too_large(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_header_bytes = 1024;
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    static char big[2000];
    memset(big, 'v', sizeof(big) - 1);
    h2stream *a = h2_request(c, "GET", "/big", NULL, 0, false, "x-big", big, NULL);
    h2stream *b = h2_request(c, "GET", "/small", NULL, 0, false, NULL);
    assert_true(h2_run(c, all_closed, NULL, 3000));
    assert_int_equal(a->status, 0);
    assert_int_not_equal(a->close_code, NGHTTP2_NO_ERROR);
    assert_int_equal(b->status, 200);
    assert_false(c->goaway);
    assert_int_equal(srv_get_stats(s).n_requests, 1);
    h2_disconnect(c);
    srv_stop(s);
}

/* SETTINGS_MAX_CONCURRENT_STREAMS from the limits is enforced. */
static void test_h2_max_streams(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.h2_max_concurrent_streams = 2;
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    /* The client learns the setting from our SETTINGS frame. */
    h2_run(c, never, NULL, 50);
    assert_int_equal(
        nghttp2_session_get_remote_settings(c->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 2);
    for (int i = 0; i < 5; i++)
        h2_request(c, "GET", "/h", NULL, 0, false, "x-hold", "1", NULL);
    /* The client keeps to the limit: at most two are ever open at once. */
    for (int round = 0, want[] = {2, 2, 1}; round < 3; round++) {
        h2_run(c, never, NULL, 100);
        WAIT_FOR(s, st->n_held == want[round]);
        srv_release_held(s);
    }
    assert_true(h2_run(c, all_closed, NULL, 3000));
    assert_int_equal(srv_get_stats(s).n_requests, 5);
    h2_disconnect(c);
    srv_stop(s);
}

/* The stream reset rate limit (rapid reset, CVE-2023-44487) is wired in. */
static void test_h2_rapid_reset(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.h2_reset_rate_burst = 5;
    lim.h2_reset_rate_per_sec = 1;
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    for (int i = 0; i < 40; i++)
        h2_request(c, "GET", "/r", NULL, 0, false, "x-hold", "1", NULL);
    h2_run(c, never, NULL, 50);
    WAIT_FOR(s, st->n_held == 40);
    for (int i = 0; i < 40; i++)
        nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, c->st[i].id, NGHTTP2_CANCEL);
    assert_true(h2_run(c, got_goaway_eof, NULL, 3000));
    WAIT_FOR(s, st->conns == 0 && st->n_held == 0);
    h2_disconnect(c);
    srv_stop(s);
}

static void test_h2_concurrency(void **state)
{
    srv *s = srv_start(NULL, false);
    h2client *c = h2_connect(client_tcp(s->port));
    char paths[60][16], delays[60][8];
    for (int i = 0; i < 60; i++) {
        snprintf(paths[i], sizeof(paths[i]), "/s%d", i);
        snprintf(delays[i], sizeof(delays[i]), "%d", (i * 7) % 20);
        h2_request(c, "POST", paths[i], paths[i], strlen(paths[i]), false, "x-delay-ms", delays[i],
                   NULL);
    }
    assert_true(h2_run(c, all_closed, NULL, 5000));
    for (int i = 0; i < 60; i++) {
        assert_int_equal(c->st[i].status, 200);
        assert_memory_equal(c->st[i].body, paths[i], strlen(paths[i]));
    }
    h2_disconnect(c);
    srv_stop(s);
}

/* The preface arrives a byte at a time and is still recognised. */
static void test_h2_split_preface(void **state)
{
    srv *s = srv_start(NULL, false);
    h2client *c = h2_connect(client_tcp(s->port));
    c->slow_bytes = 30;
    h2stream *a = h2_request(c, "GET", "/split", NULL, 0, false, NULL);
    assert_true(h2_run(c, all_closed, NULL, 3000));
    assert_int_equal(a->status, 200);
    h2_disconnect(c);
    srv_stop(s);
}

static void test_h2_protocol_error(void **state)
{
    srv *s = srv_start(NULL, false);
    h2client *good = h2_connect(client_tcp(s->port));
    h2stream *held = h2_request(good, "GET", "/held", NULL, 0, false, "x-delay-ms", "200", NULL);
    h2_run(good, never, NULL, 30);

    int fd = client_tcp(s->port);
    send_str(fd, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    static const uint8_t frames[] = {0, 0, 0, 4, 0, 0, 0, 0, 0,       /* SETTINGS */
                                     0, 0, 1, 0, 0, 0, 0, 0, 0, 'x'}; /* DATA on stream 0 */
    send_all(fd, frames, sizeof(frames));
    /* Expect a GOAWAY with PROTOCOL_ERROR, then EOF. */
    uint8_t buf[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) && (n = recv(fd, buf + len, sizeof(buf) - len, 0)) > 0)
        len += (size_t)n;
    bool goaway = false;
    for (size_t off = 0; off + 9 <= len;) {
        size_t flen = (size_t)buf[off] << 16 | (size_t)buf[off + 1] << 8 | buf[off + 2];
        if (buf[off + 3] == NGHTTP2_GOAWAY && off + 17 <= len)
            goaway = buf[off + 16] == NGHTTP2_PROTOCOL_ERROR;
        off += 9 + flen;
    }
    assert_true(goaway);
    close(fd);

    assert_true(h2_run(good, stream_closed, held, 3000));
    assert_int_equal(held->status, 200);
    h2_disconnect(good);
    srv_stop(s);
}

/* Garbage instead of a preface that starts like one. */
static void test_h2_bad_preface(void **state)
{
    srv *s = srv_start(NULL, false);
    int fd = client_tcp(s->port);
    send_str(fd, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
    h1client *c = calloc(1, sizeof(*c));
    c->fd = fd;
    h1resp *r = calloc(1, sizeof(*r));
    /* Not HTTP/2: the HTTP/1.1 parser refuses it. */
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 400);
    assert_true(wait_closed(fd, 3000));
    close(fd);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_h2_idle_timeout(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.idle_timeout_ms = 150;
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    h2stream *a = h2_request(c, "GET", "/x", NULL, 0, false, "x-delay-ms", "300", NULL);
    /* A request in flight longer than the idle timeout is not cut off. */
    assert_true(h2_run(c, stream_closed, a, 3000));
    assert_int_equal(a->status, 200);
    assert_false(c->goaway);
    /* Then idle: GOAWAY(NO_ERROR) and close. */
    assert_true(h2_run(c, got_goaway_eof, NULL, 3000));
    assert_int_equal(c->goaway_code, NGHTTP2_NO_ERROR);
    h2_disconnect(c);
    WAIT_FOR(s, st->conns == 0);
    srv_stop(s);
}

static void test_h2_read_timeout(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.read_timeout_ms = 150;
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    /* Headers, then a body that never ends: the stream is reset. */
    h2stream *a = h2_request(c, "POST", "/slow", "ab", 2, true, NULL);
    assert_true(h2_run(c, stream_closed, a, 3000));
    assert_string_equal(a->frames, "R");
    assert_int_equal(a->rst_code, NGHTTP2_CANCEL);
    srv_stats st = srv_get_stats(s);
    assert_int_equal(st.n_requests, 0);
    h2_disconnect(c);
    srv_stop(s);
}

static bool got_goaway(h2client *c, void *arg)
{
    return c->goaway;
}

static void test_h2_graceful_stop(void **state)
{
    srv *s = srv_start(NULL, false);
    h2client *c = h2_connect(client_tcp(s->port));
    h2stream *a = h2_request(c, "GET", "/h", NULL, 0, false, "x-hold", "1", NULL);
    h2_run(c, never, NULL, 30);
    WAIT_FOR(s, st->n_held == 1);
    srv_stop_accepting(s);
    assert_true(h2_run(c, got_goaway, NULL, 3000));
    assert_int_equal(c->goaway_code, NGHTTP2_NO_ERROR);
    assert_false(a->closed);
    assert_false(client_can_connect(s->port));
    assert_int_equal(srv_get_stats(s).active, 1);
    srv_release_held(s);
    assert_true(h2_run(c, stream_closed, a, 3000));
    assert_int_equal(a->status, 200);
    /* Drained: the server closes the connection. */
    c->eof = false;
    assert_true(h2_run(c, got_goaway_eof, NULL, 3000));
    WAIT_FOR(s, st->conns == 0 && st->active == 0);
    h2_disconnect(c);
    srv_stop(s);
}

static bool got_status(h2client *c, void *arg)
{
    return ((h2stream *)arg)->status != 0;
}

/* Windows are the budgets: the stream window one largest body plus a frame,
 * the connection window the connection's budget (a client that respects it
 * never exceeds it). Bodies beyond the daemon-wide budget are refused;
 * released bytes come back (accounting returns to zero). */
static void test_h2_budgets(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_body_bytes = 32 * 1024;
    lim.conn_buffer_bytes = 80 * 1024;
    lim.total_buffer_bytes = 40 * 1024; /* beyond each connection's 16 KiB */
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    static uint8_t body[30 * 1024];
    h2stream *a = h2_request(c, "POST", "/a", body, sizeof(body), true, NULL);
    h2_run(c, never, NULL, 100);
    assert_int_equal(
        nghttp2_session_get_remote_settings(c->s, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
        32 * 1024 + 16384);
    assert_true(nghttp2_session_get_remote_window_size(c->s) <= 80 * 1024);
    WAIT_FOR(s, st->request_bytes == sizeof(body));
    /* 60 KiB would be 44 KiB beyond the allowance: refused, naming it. */
    h2stream *b = h2_request(c, "POST", "/b", body, sizeof(body), true, NULL);
    assert_true(h2_run(c, got_status, b, 3000));
    assert_int_equal(b->status, 503);
    assert_non_null(strstr(b->hdrs, "x-budget: server\n"));
    assert_int_equal(srv_get_stats(s).refused_requests, 1);
    /* Give up the held one: the budget empties, the window comes back. */
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, a->id, NGHTTP2_CANCEL);
    h2_run(c, never, NULL, 100);
    WAIT_FOR(s, st->request_bytes == 0 && st->response_bytes == 0);
    h2_run(c, never, NULL, 100);
    assert_true(nghttp2_session_get_remote_window_size(c->s) >= 40 * 1024);
    /* And it is usable: complete uploads, more than a window in all. */
    for (int i = 0; i < 4; i++) {
        h2stream *ok = h2_request(c, "POST", "/ok", body, sizeof(body), false, NULL);
        assert_true(h2_run(c, stream_closed, ok, 3000));
        assert_int_equal(ok->status, 200);
        assert_int_equal(ok->body_len, sizeof(body));
    }
    WAIT_FOR(s, st->request_bytes == 0 && st->response_bytes == 0);
    h2_disconnect(c);
    srv_stop(s);
}

/* A client that never opens its window (SETTINGS_INITIAL_WINDOW_SIZE=0)
 * cannot pin an answer: it is reset at the write timeout and freed. */
static void test_h2_zero_window_deadline(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.write_timeout_ms = 200;
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    nghttp2_settings_entry zero = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0};
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, &zero, 1);
    static uint8_t body[4000];
    h2stream *a = h2_request(c, "POST", "/echo", body, sizeof(body), false, NULL);
    assert_true(h2_run(c, got_status, a, 3000));
    WAIT_FOR(s, st->response_bytes >= sizeof(body));
    assert_true(h2_run(c, stream_closed, a, 3000));
    assert_string_equal(a->frames, "HR");
    assert_int_equal(a->rst_code, NGHTTP2_CANCEL);
    WAIT_FOR(s, st->response_bytes == 0 && st->request_bytes == 0);
    h2_disconnect(c);
    srv_stop(s);
}

/* PINGs are not requests: they do not keep an idle connection open. */
static void test_h2_pings_do_not_renew_idle(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.idle_timeout_ms = 200;
    srv *s = srv_start(&lim, false);
    h2client *c = h2_connect(client_tcp(s->port));
    for (int i = 0; i < 40 && !c->goaway; i++) {
        nghttp2_submit_ping(c->s, NGHTTP2_FLAG_NONE, NULL);
        h2_run(c, got_goaway, NULL, 50);
    }
    assert_true(c->goaway);
    assert_int_equal(c->goaway_code, NGHTTP2_NO_ERROR);
    h2_disconnect(c);
    srv_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2_basic),
        cmocka_unit_test(test_h2_trailers),
        cmocka_unit_test(test_h2c_upgrade),
        cmocka_unit_test(test_h2_cancel),
        cmocka_unit_test(test_h2_body_too_large),
        cmocka_unit_test(test_h2_headers_too_large),
        cmocka_unit_test(test_h2_concurrency),
        cmocka_unit_test(test_h2_max_streams),
        cmocka_unit_test(test_h2_rapid_reset),
        cmocka_unit_test(test_h2_split_preface),
        cmocka_unit_test(test_h2_protocol_error),
        cmocka_unit_test(test_h2_bad_preface),
        cmocka_unit_test(test_h2_idle_timeout),
        cmocka_unit_test(test_h2_read_timeout),
        cmocka_unit_test(test_h2_graceful_stop),
        cmocka_unit_test(test_h2_budgets),
        cmocka_unit_test(test_h2_zero_window_deadline),
        cmocka_unit_test(test_h2_pings_do_not_renew_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
