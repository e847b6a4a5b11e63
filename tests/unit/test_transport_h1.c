/*
 * test_transport_h1.c - HTTP/1.1 over real loopback sockets: keep-alive,
 * pipelining order, chunked bodies, 100-continue, limits (413 path, 431,
 * 400), HTTP/1.0 and Connection: close, and a Unix socket listener.
 */
#include "test_transport_util.h"

static void test_keepalive_and_parsing(void **state)
{
    srv *s = srv_start(NULL, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));

    send_str(c->fd, "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Rep: 1\r\nx-rep: 2\r\n"
                    "X-REP: 3\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 200);
    assert_true(strncmp(r->head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_header(r, "x-method", "GET");
    assert_header(r, "x-path", "/a/b");
    assert_header(r, "x-query", "x=1&y=2");
    assert_header(r, "x-nrep", "3"); /* lower-cased, kept separate */
    assert_header(r, "content-length", "0");

    /* Same connection, second request with a body. */
    send_str(c->fd, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 200);
    assert_header(r, "x-query", "(none)");
    assert_header(r, "content-length", "5");
    assert_int_equal(r->body_len, 5);
    assert_memory_equal(r->body, "hello", 5);
    assert_null(strstr(r->head, "connection: close"));

    srv_stats st = srv_get_stats(s);
    assert_int_equal(st.n_requests, 2);
    assert_int_equal(st.conns, 1);
    assert_int_equal(st.active, 0);
    assert_true(strncmp(s->last_peer, "127.0.0.1:", 10) == 0);
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

/* HEAD: the length of the body it would have had, and no body. */
static void test_head(void **state)
{
    srv *s = srv_start(NULL, false);
    int fd = client_tcp(s->port);
    send_str(fd, "HEAD /h HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n\r\n");
    char buf[4096] = "";
    size_t len = 0;
    while (!strstr(buf, "x-path: /next") && len < sizeof(buf) - 1) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        assert_true(n > 0);
        len += (size_t)n;
    }
    char *end = strstr(buf, "\r\n\r\n");
    assert_non_null(end);
    assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    assert_non_null(strstr(buf, "content-length: 3\r\n"));
    assert_true(strncmp(end + 4, "HTTP/1.1 200", 12) == 0); /* no body in between */
    close(fd);
    srv_stop(s);
}

static void test_pipelining_in_order(void **state)
{
    srv *s = srv_start(NULL, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));

    /* The first answer is slowest, the second immediate: order must hold. */
    send_str(c->fd, "GET /1 HTTP/1.1\r\nx-delay-ms: 150\r\n\r\n"
                    "GET /2 HTTP/1.1\r\n\r\n"
                    "POST /3 HTTP/1.1\r\nx-delay-ms: 40\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /4 HTTP/1.1\r\nx-delay-ms: 1\r\n\r\n");
    const char *want[] = {"/1", "/2", "/3", "/4"};
    for (int i = 0; i < 4; i++) {
        assert_true(h1_read(c, r));
        assert_header(r, "x-path", want[i]);
    }
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

/* More pipelined requests than the in-flight bound: all answered, in order. */
static void test_pipelining_bound(void **state)
{
    srv *s = srv_start(NULL, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));
    char req[128], all[64 * 128] = "";
    for (int i = 0; i < 60; i++) {
        snprintf(req, sizeof(req), "GET /%d HTTP/1.1\r\nx-delay-ms: %d\r\n\r\n", i, (i * 7) % 13);
        strcat(all, req);
    }
    send_str(c->fd, all);
    for (int i = 0; i < 60; i++) {
        char want[16];
        snprintf(want, sizeof(want), "/%d", i);
        assert_true(h1_read(c, r));
        assert_header(r, "x-path", want);
    }
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_chunked_body(void **state)
{
    srv *s = srv_start(NULL, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));
    send_str(c->fd, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n");
    usleep(20000); /* body split across reads */
    send_str(c->fd, "6\r\n world\r\n0\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 11);
    assert_memory_equal(r->body, "hello world", 11);
    assert_header(r, "content-length", "11");
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_expect_continue(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_body_bytes = 100;
    srv *s = srv_start(&lim, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));

    send_str(c->fd, "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 100);
    assert_true(strncmp(r->head, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    send_str(c->fd, "data");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 200);
    assert_memory_equal(r->body, "data", 4);

    /* Declared over the limit: no 100, the handler sees body_too_large,
     * then the connection closes. */
    send_str(c->fd, "POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 413);
    assert_header(r, "x-too-large", "1");
    assert_header(r, "connection", "close");
    assert_true(wait_closed(c->fd, 3000));
    srv_stats st = srv_get_stats(s);
    assert_int_equal(st.n_too_large, 1);
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

/* "100 Continue" behind an unanswered request waits for its turn, so it
 * never jumps ahead of the earlier response. */
static void test_expect_continue_pipelined(void **state)
{
    srv *s = srv_start(NULL, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));
    send_str(c->fd, "GET /first HTTP/1.1\r\nx-delay-ms: 100\r\n\r\n"
                    "POST /second HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_header(r, "x-path", "/first");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 100);
    send_str(c->fd, "ok");
    assert_true(h1_read(c, r));
    assert_header(r, "x-path", "/second");
    assert_memory_equal(r->body, "ok", 2);
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_body_too_large_chunked(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_body_bytes = 1000;
    srv *s = srv_start(&lim, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));
    send_str(c->fd, "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[700];
    memset(chunk, 'a', sizeof(chunk));
    for (int i = 0; i < 2; i++) {
        send_str(c->fd, "2bc\r\n");
        send_all(c->fd, chunk, sizeof(chunk));
        send_str(c->fd, "\r\n");
    }
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 413);
    assert_header(r, "x-too-large", "1");
    assert_header(r, "x-body-len", "0");
    assert_true(wait_closed(c->fd, 3000));
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

/* The client keeps uploading a body far over the limit: the 413 still
 * reaches it and the connection closes; nothing of the body is buffered. */
static void test_body_too_large_keeps_sending(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_body_bytes = 1000;
    srv *s = srv_start(&lim, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));
    size_t len = 4u << 20;
    char *body = calloc(1, 65536);
    char head[128];
    snprintf(head, sizeof(head), "POST /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", len);
    send_str(c->fd, head);
    for (size_t sent = 0; sent < len;) {
        ssize_t n = send(c->fd, body, 65536, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 413);
    assert_true(wait_closed(c->fd, 3000));
    free(body);
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_headers_too_large(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_header_bytes = 512;
    srv *s = srv_start(&lim, false);
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    h1resp *r = calloc(1, sizeof(*r));
    char big[1024];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    send_str(c->fd, "GET / HTTP/1.1\r\nX-Big: ");
    send_str(c->fd, big);
    send_str(c->fd, "\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 431);
    assert_header(r, "connection", "close");
    assert_true(wait_closed(c->fd, 3000));
    srv_stats st = srv_get_stats(s);
    assert_int_equal(st.n_requests, 0);
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_malformed(void **state)
{
    srv *s = srv_start(NULL, false);
    const char *bad[] = {
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        /* request smuggling shapes */
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Nul: a\0b\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
    };
    h1resp *r = calloc(1, sizeof(*r));
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        h1client *c = calloc(1, sizeof(*c));
        c->fd = client_tcp(s->port);
        /* the NUL case goes on past its embedded NUL */
        send_all(c->fd, bad[i], strlen(bad[i]) + (strstr(bad[i], "X-Nul") ? 6 : 0));
        assert_true(h1_read(c, r));
        assert_int_equal(r->status, 400);
        assert_header(r, "connection", "close");
        assert_true(wait_closed(c->fd, 3000));
        close(c->fd);
        free(c);
    }
    free(r);
    srv_stop(s);
}

static void test_http10_and_close(void **state)
{
    srv *s = srv_start(NULL, false);
    h1resp *r = calloc(1, sizeof(*r));
    h1client *c = calloc(1, sizeof(*c));

    c->fd = client_tcp(s->port);
    send_str(c->fd, "GET /old HTTP/1.0\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 200);
    assert_header(r, "connection", "close");
    assert_true(wait_closed(c->fd, 3000));
    close(c->fd);

    /* HTTP/1.0 keep-alive stays open. */
    memset(c, 0, sizeof(*c));
    c->fd = client_tcp(s->port);
    send_str(c->fd, "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_header(r, "connection", "keep-alive");
    send_str(c->fd, "GET /ka2 HTTP/1.1\r\nConnection: close\r\n\r\n"
                    "GET /never HTTP/1.1\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_header(r, "x-path", "/ka2");
    assert_header(r, "connection", "close");
    assert_true(wait_closed(c->fd, 3000));
    close(c->fd);
    srv_stats st = srv_get_stats(s);
    assert_int_equal(st.n_requests, 3); /* /never was not processed */
    free(c);
    free(r);
    srv_stop(s);
}

/* EOF from the client (even a half-close) means it is gone: a request still
 * being handled is cancelled, answers already made are still written. */
static void test_client_eof(void **state)
{
    srv *s = srv_start(NULL, false);
    h1resp *r = calloc(1, sizeof(*r));
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    send_str(c->fd, "GET /now HTTP/1.1\r\n\r\nGET /hc HTTP/1.1\r\nx-delay-ms: 50\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_header(r, "x-path", "/now");
    shutdown(c->fd, SHUT_WR);
    assert_false(h1_read(c, r)); /* closed without the cancelled answer */
    WAIT_FOR(s, st->n_cancels == 1 && st->conns == 0 && st->active == 0);
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_unix_socket(void **state)
{
    srv *s = srv_start(NULL, true);
    h1resp *r = calloc(1, sizeof(*r));
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_unix(s->unix_path);
    send_str(c->fd, "GET /u HTTP/1.1\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_header(r, "x-path", "/u");
    assert_string_equal(s->last_peer, "unix");
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_unix_stale_socket(void **state)
{
    char path[108];
    snprintf(path, sizeof(path), "/tmp/chcp-tt-stale-%d.sock", getpid());
    unlink(path);
    /* A socket file nobody listens on. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);

    uv_loop_t loop;
    uv_loop_init(&loop);
    transport *t = transport_new(&loop, NULL, srv_on_request, NULL, NULL);
    chcp_error *err = NULL;
    assert_int_equal(transport_listen_unix(t, path, &err), 0);
    /* A second transport must not steal a live socket. */
    transport *t2 = transport_new(&loop, NULL, srv_on_request, NULL, NULL);
    assert_int_equal(transport_listen_unix(t2, path, &err), -1);
    assert_non_null(err);
    error_free(err);
    err = NULL;
    /* A regular file is never removed. */
    char file[128];
    snprintf(file, sizeof(file), "/tmp/chcp-tt-file-%d", getpid());
    FILE *f = fopen(file, "w");
    fclose(f);
    assert_int_equal(transport_listen_unix(t2, file, &err), -1);
    error_free(err);
    assert_int_equal(access(file, F_OK), 0);
    unlink(file);
    transport_close(t, NULL, NULL);
    transport_close(t2, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_not_equal(access(path, F_OK), 0); /* removed on close */
}

static void on_request_answer(http_request *req, void *ud)
{
    http_response resp = {.status = 204};
    http_respond(req, &resp);
}

/* IPv6 literal, "localhost", bad addresses and a port in use. Driven from
 * the test thread: the client uses non-blocking I/O while the loop runs. */
static void test_listen_addresses(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    transport *t = transport_new(&loop, NULL, on_request_answer, NULL, NULL);
    chcp_error *err = NULL;
    assert_int_equal(transport_listen_tcp(t, "::1", 0, &err), 0);
    uint16_t port = transport_tcp_port(t);
    assert_true(port > 0);

    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    a.sin6_addr = in6addr_loopback;
    connect(fd, (struct sockaddr *)&a, sizeof(a));
    for (int i = 0; i < 50; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    send_str(fd, "GET / HTTP/1.1\r\n\r\n");
    char buf[512] = "";
    ssize_t n = -1;
    for (int i = 0; i < 500 && n <= 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            usleep(1000);
    }
    assert_true(n > 0);
    assert_true(strncmp(buf, "HTTP/1.1 204 No Content\r\n", 25) == 0);
    assert_null(strstr(buf, "content-length")); /* never on a 204 */
    close(fd);

    /* The same port again: in use. */
    transport *t2 = transport_new(&loop, NULL, on_request_answer, NULL, NULL);
    assert_int_equal(transport_listen_tcp(t2, "::1", port, &err), -1);
    assert_non_null(err);
    error_free(err);
    err = NULL;
    assert_int_equal(transport_listen_tcp(t2, "not-an-address", 0, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    err = NULL;
    /* After a failure the same transport can try again right away. */
    assert_int_equal(transport_listen_tcp(t2, "127.0.0.1", 0, &err), 0);
    assert_int_equal(transport_listen_tcp(t2, "127.0.0.1", 0, &err), -1); /* only one */
    error_free(err);
    err = NULL;
    transport_close(t2, NULL, NULL);

    transport *t3 = transport_new(&loop, NULL, on_request_answer, NULL, NULL);
    assert_int_equal(transport_listen_tcp(t3, "localhost", 0, &err), 0);
    assert_true(client_can_connect(transport_tcp_port(t3)));
    transport_close(t3, NULL, NULL);
    transport_close(t, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A body beyond the daemon-wide request budget is refused (the layer above
 * answers) and the connection closes; the budget comes back. */
static void test_body_over_budget(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_body_bytes = 64 * 1024;
    lim.conn_buffer_bytes = 128 * 1024;
    lim.total_buffer_bytes = 20 * 1024; /* + 16 KiB per connection */
    srv *s = srv_start(&lim, false);
    h1client *c = calloc(1, sizeof(*c));
    h1resp *r = calloc(1, sizeof(*r));
    c->fd = client_tcp(s->port);
    static char body[40 * 1024];
    memset(body, 'b', sizeof(body));
    send_str(c->fd, "POST /big HTTP/1.1\r\nContent-Length: 40960\r\n\r\n");
    send_all(c->fd, body, sizeof(body));
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 503);
    assert_header(r, "x-budget", "server");
    assert_non_null(strstr(r->head, "connection: close"));
    assert_true(wait_closed(c->fd, 3000));
    close(c->fd);
    WAIT_FOR(s, st->request_bytes == 0 && st->response_bytes == 0 && st->conns == 0);
    assert_int_equal(srv_get_stats(s).refused_requests, 1);
    /* Smaller bodies still fit. */
    c->fd = client_tcp(s->port);
    send_str(c->fd, "POST /ok HTTP/1.1\r\nContent-Length: 30000\r\n\r\n");
    send_all(c->fd, body, 30000);
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 30000);
    close(c->fd);
    WAIT_FOR(s, st->request_bytes == 0 && st->response_bytes == 0);
    free(c);
    free(r);
    srv_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive_and_parsing),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_pipelining_in_order),
        cmocka_unit_test(test_pipelining_bound),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_expect_continue_pipelined),
        cmocka_unit_test(test_body_too_large_chunked),
        cmocka_unit_test(test_body_too_large_keeps_sending),
        cmocka_unit_test(test_headers_too_large),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_http10_and_close),
        cmocka_unit_test(test_client_eof),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_unix_stale_socket),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_body_over_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
