/*
 * test_transport_batch.c - output batching and preface sniffing through the
 * transport's internal socketless entry points (conn_new_fake/conn_feed):
 * everything a connection produces during one loop pass must leave in ONE
 * write, for HTTP/1.1 pipelines and for HTTP/2 streams alike.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "transport/internal.h"

static int n_writes;
static chcp_buf written;
static http_request *held[32];
static int n_held;
static char last_method[16], last_path[64];

static void sink(const uint8_t *data, size_t len, void *ud)
{
    n_writes++;
    buf_append(&written, data, len);
}

static void answer(http_request *req)
{
    http_header tr[] = {{"grpc-status", "0", 11, 1}};
    http_response resp = {.status = 200, .body = (const uint8_t *)"ok", .body_len = 2};
    if (req->http_major == 2) {
        resp.trailers = tr;
        resp.n_trailers = 1;
    }
    http_respond(req, &resp);
}

static void on_request(http_request *req, void *ud)
{
    snprintf(last_method, sizeof(last_method), "%s", req->method);
    snprintf(last_path, sizeof(last_path), "%s", req->path);
    if (http_request_header(req, "x-hold") && n_held < 32) {
        held[n_held++] = req;
        return;
    }
    answer(req);
}

static void on_cancel(http_request *req, void *ud)
{
    for (int i = 0; i < n_held; i++)
        if (held[i] == req) {
            held[i] = held[--n_held];
            answer(req);
            return;
        }
}

typedef struct fixture {
    uv_loop_t loop;
    transport *t;
    conn *c;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    f->t = transport_new(&f->loop, NULL, on_request, on_cancel, NULL);
    f->c = conn_new_fake(f->t, sink, NULL);
    n_writes = 0;
    n_held = 0;
    buf_reset(&written);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    conn_destroy_fake(f->c);
    assert_int_equal(n_held, 0);
    transport_close(f->t, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    buf_free(&written);
    free(f);
    return 0;
}

static int count(const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= written.len; i++)
        if (memcmp(written.data + i, needle, nl) == 0)
            n++;
    return n;
}

static void feed_str(fixture *f, const char *s)
{
    conn_feed(f->c, (const uint8_t *)s, strlen(s));
}

static void test_h1_pipeline_one_write(void **state)
{
    fixture *f = *state;
    char all[2048] = "", one[64];
    for (int i = 0; i < 10; i++) {
        snprintf(one, sizeof(one), "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        strcat(all, one);
    }
    feed_str(f, all);
    assert_int_equal(n_writes, 0); /* nothing written inside the read */
    conn_flush_fake(f->c);
    assert_int_equal(n_writes, 1);
    assert_int_equal(count("HTTP/1.1 200 OK\r\n"), 10);
}

/* Answers made at different times within one pass still leave together. */
static void test_h1_held_answers_one_write(void **state)
{
    fixture *f = *state;
    feed_str(f, "GET /a HTTP/1.1\r\nx-hold: 1\r\n\r\nGET /b HTTP/1.1\r\nx-hold: 1\r\n\r\n"
                "GET /c HTTP/1.1\r\nx-hold: 1\r\n\r\n");
    conn_flush_fake(f->c);
    assert_int_equal(n_writes, 0);
    assert_int_equal(n_held, 3);
    /* Out of order: c, a, b. Only then may all three go, in order. */
    http_request *a = held[0], *b = held[1], *c = held[2];
    n_held = 0;
    answer(c);
    answer(a);
    answer(b);
    conn_flush_fake(f->c);
    assert_int_equal(n_writes, 1);
    assert_int_equal(count("HTTP/1.1 200 OK\r\n"), 3);
}

/* A first byte that looks like the preface, then not: HTTP/1.1 after all,
 * with the sniffed byte kept. */
static void test_sniff_fallback(void **state)
{
    fixture *f = *state;
    feed_str(f, "P");
    assert_int_equal(f->c->proto, PROTO_SNIFF);
    feed_str(f, "OST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(f->c->proto, PROTO_H1);
    assert_string_equal(last_method, "POST");
    assert_string_equal(last_path, "/x");
}

typedef struct h2out {
    int responses, trailers_end;
} h2out;

static int cl_frame(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
    h2out *o = ud;
    if (fr->hd.type == NGHTTP2_HEADERS && fr->headers.cat == NGHTTP2_HCAT_RESPONSE)
        o->responses++;
    if (fr->hd.type == NGHTTP2_HEADERS && fr->headers.cat == NGHTTP2_HCAT_HEADERS &&
        (fr->hd.flags & NGHTTP2_FLAG_END_STREAM))
        o->trailers_end++;
    return 0;
}

static void test_h2_streams_one_write(void **state)
{
    fixture *f = *state;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cl_frame);
    h2out out = {0};
    nghttp2_session *cl;
    nghttp2_session_client_new(&cl, cb, &out);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(cl, NGHTTP2_FLAG_NONE, NULL, 0);
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":path", (uint8_t *)"/s", 5, 2, 0},
        {(uint8_t *)":authority", (uint8_t *)"h", 10, 1, 0},
    };
    for (int i = 0; i < 5; i++)
        assert_true(nghttp2_submit_request(cl, NULL, nv, 4, NULL, NULL) > 0);
    const uint8_t *data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(cl, &data)) > 0)
        conn_feed(f->c, data, (size_t)n);
    assert_int_equal(f->c->proto, PROTO_H2);
    assert_int_equal(n_writes, 0);
    conn_flush_fake(f->c);
    /* SETTINGS, SETTINGS ACK and five full responses: one write. */
    assert_int_equal(n_writes, 1);
    assert_int_equal(nghttp2_session_mem_recv(cl, written.data, written.len), (ssize_t)written.len);
    assert_int_equal(out.responses, 5);
    assert_int_equal(out.trailers_end, 5);
    nghttp2_session_del(cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_h1_pipeline_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_held_answers_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sniff_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_streams_one_write, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
