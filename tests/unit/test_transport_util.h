/*
 * test_transport_util.h - shared fixture for the transport tests: a server
 * (transport on its own libuv loop thread) with a scriptable handler, and
 * blocking HTTP/1.1 client helpers for the test thread.
 *
 * The handler is driven by request headers so each test states what it
 * wants on the wire:
 *   x-delay-ms: N   answer after N ms (timer)         x-hold: 1  keep until released
 *   x-status: N     status code                         x-empty: 1 empty body
 *   x-trailers: 1   add trailers (HTTP/2)               x-charge: N charge N bytes, kept
 *                                                         until srv_release_charges()
 * Responses echo what the transport parsed in x-method, x-path, x-query,
 * x-nrep (how many x-rep headers), x-too-large; the body echoes the request
 * body. A body_too_large request is answered 413 at once, a body_over_budget
 * one 503 with x-budget naming the budget.
 */
#ifndef TEST_TRANSPORT_UTIL_H
#define TEST_TRANSPORT_UTIL_H

/* Each test program uses a different subset of these helpers. */
#pragma GCC diagnostic ignored "-Wunused-function"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/transport.h"

#define MAX_HELD 64

typedef struct srv {
    uv_loop_t loop;
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*call_fn)(struct srv *s, void *arg);
    void *call_arg;
    bool call_done;
    transport *t;
    transport_limits lim;
    uint16_t port;
    char unix_path[108];
    /* observed on the loop thread, read by tests via srv_call or atomics */
    int n_requests;
    int n_cancels;
    int n_too_large;
    http_request *held[MAX_HELD];
    int n_held;
    http_charge *charges[MAX_HELD];
    int n_charges;
    bool closed;
    char last_peer[64];
    int last_major;
} srv;

typedef struct delayed {
    uv_timer_t timer;
    http_request *req;
    srv *s;
} delayed;

static void srv_answer(srv *s, http_request *req)
{
    char nrep[16], status_buf[8], blen[24];
    int status = 200;
    const char *st = http_request_header(req, "x-status");
    if (st)
        status = atoi(st);
    if (req->body_too_large)
        status = 413;
    if (req->body_over_budget)
        status = 503;
    int nr = 0;
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcmp(req->headers[i].name, "x-rep") == 0)
            nr++;
    snprintf(nrep, sizeof(nrep), "%d", nr);
    snprintf(status_buf, sizeof(status_buf), "%d", status);
    snprintf(blen, sizeof(blen), "%zu", req->body_len);
    http_header hs[] = {
        {"x-method", req->method, 8, strlen(req->method)},
        {"x-path", req->path, 6, strlen(req->path)},
        {"x-query", req->query ? req->query : "(none)", 7,
         strlen(req->query ? req->query : "(none)")},
        {"x-nrep", nrep, 6, strlen(nrep)},
        {"x-too-large", req->body_too_large ? "1" : "0", 11, 1},
        {"x-body-len", blen, 10, strlen(blen)},
        {"x-budget", req->budget_spent ? req->budget_spent : "-", 8,
         strlen(req->budget_spent ? req->budget_spent : "-")},
    };
    http_header tr[] = {{"grpc-status", "0", 11, 1}, {"x-t", "v", 3, 1}};
    http_response resp = {.status = status, .headers = hs, .n_headers = ARRAY_SIZE(hs)};
    if (!http_request_header(req, "x-empty")) {
        resp.body = req->body;
        resp.body_len = req->body_len;
    }
    if (http_request_header(req, "x-trailers")) {
        resp.trailers = tr;
        resp.n_trailers = ARRAY_SIZE(tr);
    }
    http_respond(req, &resp);
}

static void delayed_closed(uv_handle_t *h)
{
    free(h->data);
}

static void delayed_fire(uv_timer_t *t)
{
    delayed *d = t->data;
    srv_answer(d->s, d->req);
    uv_close((uv_handle_t *)t, delayed_closed);
}

static void srv_on_request(http_request *req, void *ud)
{
    srv *s = ud;
    s->n_requests++;
    s->last_major = req->http_major;
    snprintf(s->last_peer, sizeof(s->last_peer), "%s", req->peer);
    if (req->body_too_large || req->body_over_budget) {
        s->n_too_large++;
        srv_answer(s, req);
        return;
    }
    const char *charge = http_request_header(req, "x-charge");
    if (charge && s->n_charges < MAX_HELD) {
        http_charge *ch = http_request_charge(req, (size_t)atoi(charge), NULL);
        if (!ch) {
            http_response busy = {.status = 507};
            http_respond(req, &busy);
            return;
        }
        s->charges[s->n_charges++] = ch;
    }
    const char *delay = http_request_header(req, "x-delay-ms");
    if (http_request_header(req, "x-hold") && s->n_held < MAX_HELD) {
        s->held[s->n_held++] = req;
        return;
    }
    if (delay) {
        delayed *d = calloc(1, sizeof(*d));
        d->req = req;
        d->s = s;
        uv_timer_init(&s->loop, &d->timer);
        d->timer.data = d;
        uv_timer_start(&d->timer, delayed_fire, (uint64_t)atoi(delay), 0);
        return;
    }
    srv_answer(s, req);
}

static void srv_on_cancel(http_request *req, void *ud)
{
    srv *s = ud;
    s->n_cancels++;
    for (int i = 0; i < s->n_held; i++) {
        if (s->held[i] == req) {
            s->held[i] = s->held[--s->n_held];
            srv_answer(s, req); /* must be safe: output is dropped */
            return;
        }
    }
}

static void srv_async(uv_async_t *a)
{
    srv *s = a->data;
    pthread_mutex_lock(&s->mu);
    if (s->call_fn && !s->call_done) {
        s->call_fn(s, s->call_arg);
        s->call_done = true;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *srv_thread(void *arg)
{
    srv *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Run fn on the loop thread and wait for it. */
static void srv_call(srv *s, void (*fn)(srv *s, void *arg), void *arg)
{
    pthread_mutex_lock(&s->mu);
    s->call_fn = fn;
    s->call_arg = arg;
    s->call_done = false;
    uv_async_send(&s->async);
    while (!s->call_done)
        pthread_cond_wait(&s->cv, &s->mu);
    s->call_fn = NULL;
    pthread_mutex_unlock(&s->mu);
}

static void srv_init_limits(transport_limits *l)
{
    transport_limits_default(l);
    l->idle_timeout_ms = 5000;
    l->read_timeout_ms = 5000;
}

/* Start a server; `lim` NULL = defaults with short timeouts. */
static srv *srv_start(const transport_limits *lim, bool with_unix)
{
    srv *s = calloc(1, sizeof(*s));
    if (lim)
        s->lim = *lim;
    else
        srv_init_limits(&s->lim);
    assert_int_equal(uv_loop_init(&s->loop), 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    uv_async_init(&s->loop, &s->async, srv_async);
    s->async.data = s;
    s->t = transport_new(&s->loop, &s->lim, srv_on_request, srv_on_cancel, s);
    assert_non_null(s->t);
    chcp_error *err = NULL;
    assert_int_equal(transport_listen_tcp(s->t, "127.0.0.1", 0, &err), 0);
    s->port = transport_tcp_port(s->t);
    assert_true(s->port > 0);
    if (with_unix) {
        snprintf(s->unix_path, sizeof(s->unix_path), "/tmp/chcp-tt-%d-%p.sock", getpid(),
                 (void *)s);
        assert_int_equal(transport_listen_unix(s->t, s->unix_path, &err), 0);
    }
    assert_null(err);
    assert_int_equal(pthread_create(&s->thread, NULL, srv_thread, s), 0);
    return s;
}

static void srv_closed_cb(void *ud)
{
    ((srv *)ud)->closed = true;
}

static void do_close(srv *s, void *arg)
{
    transport_close(s->t, srv_closed_cb, s);
    uv_close((uv_handle_t *)&s->async, NULL);
}

static void do_release_charges(srv *s, void *arg)
{
    while (s->n_charges > 0)
        http_charge_release(s->charges[--s->n_charges]);
}

static void srv_release_charges(srv *s)
{
    srv_call(s, do_release_charges, NULL);
}

/* Close the transport (cancelling what is outstanding) and free the server;
 * returns how many on_cancel calls were seen in total. */
static int srv_stop(srv *s)
{
    srv_release_charges(s);
    srv_call(s, do_close, NULL);
    pthread_join(s->thread, NULL);
    assert_true(s->closed);
    assert_int_equal(s->n_held, 0);
    assert_int_equal(uv_loop_close(&s->loop), 0);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    if (s->unix_path[0])
        unlink(s->unix_path);
    int cancels = s->n_cancels;
    free(s);
    return cancels;
}

typedef struct srv_stats {
    int n_requests, n_cancels, n_too_large, n_held;
    size_t conns, active;
    size_t request_bytes, response_bytes;
    uint64_t evicted, refused_conns, refused_requests, refused_responses;
} srv_stats;

static void do_stats(srv *s, void *arg)
{
    srv_stats *st = arg;
    st->n_requests = s->n_requests;
    st->n_cancels = s->n_cancels;
    st->n_too_large = s->n_too_large;
    st->n_held = s->n_held;
    st->conns = transport_connection_count(s->t);
    st->active = transport_active_requests(s->t);
    transport_stats ts;
    transport_get_stats(s->t, &ts);
    st->request_bytes = ts.request_bytes;
    st->response_bytes = ts.response_bytes;
    st->evicted = ts.evicted;
    st->refused_conns = ts.refused_connections;
    st->refused_requests = ts.refused_requests;
    st->refused_responses = ts.refused_responses;
}

static srv_stats srv_get_stats(srv *s)
{
    srv_stats st;
    srv_call(s, do_stats, &st);
    return st;
}

/* Wait (bounded) until pred holds on the loop thread's view. */
#define WAIT_FOR(s, cond_expr)                                                                     \
    do {                                                                                           \
        srv_stats st_;                                                                             \
        int i_;                                                                                    \
        for (i_ = 0; i_ < 300; i_++) {                                                             \
            st_ = srv_get_stats(s);                                                                \
            srv_stats *st = &st_;                                                                  \
            (void)st;                                                                              \
            if (cond_expr)                                                                         \
                break;                                                                             \
            usleep(10000);                                                                         \
        }                                                                                          \
        assert_true(i_ < 300);                                                                     \
    } while (0)

static void do_release_held(srv *s, void *arg)
{
    while (s->n_held > 0)
        srv_answer(s, s->held[--s->n_held]);
}

static void srv_release_held(srv *s)
{
    srv_call(s, do_release_held, NULL);
}

static void do_stop_accepting(srv *s, void *arg)
{
    transport_stop_accepting(s->t);
}

static void srv_stop_accepting(srv *s)
{
    srv_call(s, do_stop_accepting, NULL);
}

/* ---- blocking client helpers ----------------------------------------------- */

static int client_tcp(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static bool client_can_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static int client_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* True if the peer closed (EOF or reset) within `ms`. */
static bool wait_closed(int fd, int ms)
{
    char b[4096];
    for (int waited = 0; waited < ms; waited += 10) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) == 1) {
            ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                return true;
        }
    }
    return false;
}

typedef struct h1resp {
    int status;
    char head[8192]; /* status line and headers, lower-cased names as sent */
    char body[65536];
    size_t body_len;
} h1resp;

typedef struct h1client {
    int fd;
    char buf[262144];
    size_t len;
} h1client;

static bool h1_fill(h1client *c)
{
    if (c->len == sizeof(c->buf))
        return false;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n <= 0)
        return false;
    c->len += (size_t)n;
    return true;
}

/* Read one response; false on EOF/timeout before a complete one. */
static bool h1_read(h1client *c, h1resp *r)
{
    memset(r, 0, sizeof(*r));
    char *end;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (!h1_fill(c))
            return false;
    size_t hlen = (size_t)(end - c->buf) + 4;
    assert_true(hlen < sizeof(r->head));
    memcpy(r->head, c->buf, hlen);
    r->status = atoi(r->head + 9);
    const char *cl = strstr(r->head, "content-length: ");
    size_t blen = cl ? strtoul(cl + 16, NULL, 10) : 0;
    if (r->status == 100)
        blen = 0;
    while (c->len < hlen + blen)
        if (!h1_fill(c))
            return false;
    assert_true(blen <= sizeof(r->body));
    memcpy(r->body, c->buf + hlen, blen);
    r->body_len = blen;
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    return true;
}

/* Value of a response header (first match), copied into `out`. */
static const char *h1_header(const h1resp *r, const char *name, char *out, size_t outlen)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\r\n%s: ", name);
    const char *p = strstr(r->head, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, "\r");
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static void assert_header(const h1resp *r, const char *name, const char *want)
{
    char v[256];
    const char *got = h1_header(r, name, v, sizeof(v));
    if (!got)
        fail_msg("header %s missing in:\n%s", name, r->head);
    assert_string_equal(got, want);
}

#endif
