/*
 * test_transport_conn.c - connection lifecycle over real sockets: idle and
 * read timeouts (slowloris), the connection cap, the pipeline bound, client
 * disconnects (on_cancel, late http_respond), graceful stop and close.
 */
#include "test_transport_util.h"

static void test_idle_timeout(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.idle_timeout_ms = 150;
    srv *s = srv_start(&lim, false);
    h1client *c = calloc(1, sizeof(*c));
    h1resp *r = calloc(1, sizeof(*r));

    /* A connection that never says anything is closed. */
    int quiet = client_tcp(s->port);
    assert_true(wait_closed(quiet, 2000));
    close(quiet);

    /* A request in flight longer than the idle timeout is not cut off... */
    c->fd = client_tcp(s->port);
    send_str(c->fd, "GET /slow HTTP/1.1\r\nx-delay-ms: 400\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_header(r, "x-path", "/slow");
    /* ...but once idle again, the connection goes. */
    uint64_t t0 = time_mono_ns();
    assert_true(wait_closed(c->fd, 2000));
    assert_true(time_mono_ns() - t0 >= 100 * 1000000ull);
    close(c->fd);
    WAIT_FOR(s, st->conns == 0);
    free(c);
    free(r);
    srv_stop(s);
}

static void test_read_timeout_slowloris(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.read_timeout_ms = 300;
    srv *s = srv_start(&lim, false);
    h1client *c = calloc(1, sizeof(*c));
    h1resp *r = calloc(1, sizeof(*r));
    c->fd = client_tcp(s->port);
    /* Trickle a header a byte at a time: activity does not extend the
     * deadline of a request that started. */
    send_str(c->fd, "GET / HTTP/1.1\r\nX-Slow: ");
    uint64_t t0 = time_mono_ns();
    for (int i = 0; i < 40; i++) {
        if (send(c->fd, "a", 1, MSG_NOSIGNAL) != 1)
            break;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 25) == 1)
            break;
    }
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 408);
    uint64_t ms = (time_mono_ns() - t0) / 1000000;
    assert_true(ms >= 250 && ms < 2000);
    assert_true(wait_closed(c->fd, 3000));
    close(c->fd);

    /* Part of an HTTP/2 preface and then nothing: cut off too. */
    int fd = client_tcp(s->port);
    send_str(fd, "PRI * HTTP/2");
    assert_true(wait_closed(fd, 3000));
    close(fd);
    free(c);
    free(r);
    srv_stop(s);
}

/* A full pool makes room by closing the connection idle longest; when
 * every connection has a request being handled, the newcomer is refused. */
static void test_max_connections(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_connections = 2;
    srv *s = srv_start(&lim, false);
    h1resp *r = calloc(1, sizeof(*r));
    h1client *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)), *x = calloc(1, sizeof(*x));
    a->fd = client_tcp(s->port);
    b->fd = client_tcp(s->port);
    send_str(a->fd, "GET /a HTTP/1.1\r\n\r\n");
    assert_true(h1_read(a, r));
    usleep(20000); /* b's last request ends later than a's */
    send_str(b->fd, "GET /b HTTP/1.1\r\n\r\n");
    assert_true(h1_read(b, r));
    WAIT_FOR(s, st->conns == 2);
    /* Third: admitted; a (idle longest) goes. Stray line ends on a did not
     * make it any younger. */
    send_str(a->fd, "\r\n\r\n");
    usleep(20000);
    x->fd = client_tcp(s->port);
    send_str(x->fd, "GET /x HTTP/1.1\r\n\r\n");
    assert_true(h1_read(x, r));
    assert_header(r, "x-path", "/x");
    assert_true(wait_closed(a->fd, 2000));
    close(a->fd);
    send_str(b->fd, "GET /b2 HTTP/1.1\r\n\r\n");
    assert_true(h1_read(b, r));
    srv_stats ss = srv_get_stats(s);
    assert_int_equal(ss.conns, 2);
    assert_int_equal(ss.evicted, 1);

    /* Both busy (held requests): a newcomer is refused, unanswered. */
    send_str(b->fd, "GET /hold HTTP/1.1\r\nx-hold: 1\r\n\r\n");
    send_str(x->fd, "GET /hold HTTP/1.1\r\nx-hold: 1\r\n\r\n");
    WAIT_FOR(s, st->n_held == 2);
    a->fd = client_tcp(s->port);
    assert_true(wait_closed(a->fd, 2000));
    close(a->fd);
    ss = srv_get_stats(s);
    assert_int_equal(ss.conns, 2);
    assert_int_equal(ss.refused_conns, 1);
    close(x->fd);
    close(b->fd);
    free(a);
    free(b);
    free(x);
    free(r);
    srv_stop(s);
}

/* At most 16 pipelined requests wait for answers; the rest wait unparsed. */
static void test_pipeline_bound_held(void **state)
{
    srv *s = srv_start(NULL, false);
    h1client *c = calloc(1, sizeof(*c));
    h1resp *r = calloc(1, sizeof(*r));
    c->fd = client_tcp(s->port);
    char all[20 * 64] = "", one[64];
    for (int i = 0; i < 20; i++) {
        snprintf(one, sizeof(one), "GET /%d HTTP/1.1\r\nx-hold: 1\r\n\r\n", i);
        strcat(all, one);
    }
    send_str(c->fd, all);
    WAIT_FOR(s, st->n_held == 16);
    usleep(100000);
    assert_int_equal(srv_get_stats(s).n_held, 16);
    assert_int_equal(srv_get_stats(s).active, 16);
    srv_release_held(s);
    WAIT_FOR(s, st->n_held == 4);
    srv_release_held(s);
    for (int i = 0; i < 20; i++) {
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

static void test_client_disconnect_cancels(void **state)
{
    srv *s = srv_start(NULL, false);
    /* A held request: on_cancel answers it, which must be harmless. */
    int fd = client_tcp(s->port);
    send_str(fd, "GET /held HTTP/1.1\r\nx-hold: 1\r\n\r\n");
    WAIT_FOR(s, st->n_held == 1);
    close(fd);
    WAIT_FOR(s, st->n_cancels == 1 && st->n_held == 0 && st->active == 0 && st->conns == 0);

    /* A timer answers after the peer is gone: the late http_respond only
     * frees the request. */
    fd = client_tcp(s->port);
    send_str(fd, "GET /late HTTP/1.1\r\nx-delay-ms: 150\r\n\r\n");
    WAIT_FOR(s, st->active == 1);
    close(fd);
    WAIT_FOR(s, st->n_cancels == 2 && st->active == 0);
    usleep(300000); /* the timer fires on the detached request */
    srv_stats st = srv_get_stats(s);
    assert_int_equal(st.n_requests, 2);
    assert_int_equal(st.conns, 0);
    srv_stop(s);
}

static void test_stop_accepting_drains(void **state)
{
    srv *s = srv_start(NULL, true);
    h1resp *r = calloc(1, sizeof(*r));
    h1client *idle = calloc(1, sizeof(*idle)), *busy = calloc(1, sizeof(*busy));
    idle->fd = client_tcp(s->port);
    send_str(idle->fd, "GET /i HTTP/1.1\r\n\r\n");
    assert_true(h1_read(idle, r));
    busy->fd = client_tcp(s->port);
    send_str(busy->fd, "GET /b HTTP/1.1\r\nx-hold: 1\r\n\r\n");
    WAIT_FOR(s, st->n_held == 1);

    srv_stop_accepting(s);
    assert_true(wait_closed(idle->fd, 2000)); /* idle: closed at once */
    assert_false(client_can_connect(s->port));
    assert_int_not_equal(access(s->unix_path, F_OK), 0); /* socket file gone */
    srv_stats st0 = srv_get_stats(s);
    assert_int_equal(st0.conns, 1);
    assert_int_equal(st0.active, 1);

    uint64_t t0 = time_mono_ns();
    srv_release_held(s);
    assert_true(h1_read(busy, r));
    assert_header(r, "x-path", "/b");
    assert_header(r, "connection", "close");
    assert_true(wait_closed(busy->fd, 2000));
    /* Drained promptly, even though the client has not closed its end. */
    WAIT_FOR(s, st->conns == 0 && st->active == 0);
    assert_true(time_mono_ns() - t0 < 1000 * 1000000ull);
    close(idle->fd);
    close(busy->fd);
    free(idle);
    free(busy);
    free(r);
    s->unix_path[0] = '\0';
    assert_int_equal(srv_stop(s), 0);
}

/* transport_close with outstanding requests: each gets on_cancel. */
static void test_close_cancels_outstanding(void **state)
{
    srv *s = srv_start(NULL, false);
    int a = client_tcp(s->port), b = client_tcp(s->port);
    send_str(a, "GET /1 HTTP/1.1\r\nx-hold: 1\r\n\r\nGET /2 HTTP/1.1\r\nx-hold: 1\r\n\r\n");
    send_str(b, "POST /3 HTTP/1.1\r\nx-hold: 1\r\nContent-Length: 2\r\n\r\nok");
    WAIT_FOR(s, st->n_held == 3);
    /* srv_stop closes the transport; on_cancel answers the held ones. */
    assert_int_equal(srv_stop(s), 3);
    assert_true(wait_closed(a, 2000));
    assert_true(wait_closed(b, 2000));
    close(a);
    close(b);
}

/* A client that never reads its (large) response is dropped after the write
 * timeout instead of pinning the connection and its buffers forever. */
static void test_write_stall(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.write_timeout_ms = 300;
    lim.max_body_bytes = 32u << 20;
    srv *s = srv_start(&lim, false);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    size_t len = 16u << 20; /* more than the kernel buffers between us */
    char *body = calloc(1, len);
    char head[128];
    snprintf(head, sizeof(head), "POST /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", len);
    send_str(fd, head);
    send_all(fd, body, len);
    WAIT_FOR(s, st->conns == 0); /* closed while we were not reading */
    size_t got = 0;
    ssize_t n;
    while ((n = recv(fd, body, len, MSG_DONTWAIT)) > 0)
        got += (size_t)n;
    assert_true(got < len);
    free(body);
    close(fd);
    srv_stop(s);
}

/* The Unix socket is a pool of its own: a full TCP pool does not lock out
 * the operator. */
static void test_unix_pool(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.max_connections = 1;
    lim.max_unix_connections = 1;
    srv *s = srv_start(&lim, true);
    h1resp *r = calloc(1, sizeof(*r));
    h1client *t = calloc(1, sizeof(*t)), *u = calloc(1, sizeof(*u));
    t->fd = client_tcp(s->port);
    send_str(t->fd, "GET /busy HTTP/1.1\r\nx-hold: 1\r\n\r\n");
    WAIT_FOR(s, st->n_held == 1);
    int x = client_tcp(s->port);
    assert_true(wait_closed(x, 2000)); /* the TCP pool is full and busy */
    close(x);
    u->fd = client_unix(s->unix_path);
    send_str(u->fd, "GET /op HTTP/1.1\r\n\r\n");
    assert_true(h1_read(u, r));
    assert_header(r, "x-path", "/op");
    srv_release_held(s);
    assert_true(h1_read(t, r));
    close(t->fd);
    close(u->fd);
    free(t);
    free(u);
    free(r);
    s->unix_path[0] = '\0';
    srv_stop(s);
}

/* What the layer above charges stays counted until it lets go - after the
 * answer, and after the connection died - and is refused over the budget. */
static void test_charges_outlive_connections(void **state)
{
    transport_limits lim;
    srv_init_limits(&lim);
    lim.conn_buffer_bytes = 100 * 1024;
    lim.total_buffer_bytes = 100 * 1024;
    srv *s = srv_start(&lim, false);
    h1resp *r = calloc(1, sizeof(*r));
    h1client *c = calloc(1, sizeof(*c));
    c->fd = client_tcp(s->port);
    send_str(c->fd, "GET /a HTTP/1.1\r\nx-charge: 60000\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 200);
    WAIT_FOR(s, st->request_bytes == 60000);
    /* The connection's budget has 40 KiB left: a bigger charge is refused. */
    send_str(c->fd, "GET /b HTTP/1.1\r\nx-charge: 50000\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 507);
    close(c->fd);
    WAIT_FOR(s, st->conns == 0);
    assert_int_equal(srv_get_stats(s).request_bytes, 60000); /* still held */
    /* Counted daemon-wide now: another connection gets the rest only. */
    c->fd = client_tcp(s->port);
    send_str(c->fd, "GET /c HTTP/1.1\r\nx-charge: 70000\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 507);
    srv_release_charges(s);
    WAIT_FOR(s, st->request_bytes == 0);
    send_str(c->fd, "GET /d HTTP/1.1\r\nx-charge: 70000\r\n\r\n");
    assert_true(h1_read(c, r));
    assert_int_equal(r->status, 200);
    close(c->fd);
    free(c);
    free(r);
    srv_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_read_timeout_slowloris),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_pipeline_bound_held),
        cmocka_unit_test(test_client_disconnect_cancels),
        cmocka_unit_test(test_stop_accepting_drains),
        cmocka_unit_test(test_close_cancels_outstanding),
        cmocka_unit_test(test_write_stall),
        cmocka_unit_test(test_unix_pool),
        cmocka_unit_test(test_charges_outlive_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
