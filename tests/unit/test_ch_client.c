/*
 * test_ch_client.c - the CH API client against a scripted fake server on a
 * real Unix socket: micro_http's wire quirks (no reason phrase, 204 without
 * Content-Length, split writes, 100 Continue), error arrays, EOF handling,
 * timeouts, keep-alive reuse, in-order queueing, SCM_RIGHTS fd passing and
 * the lifetime rules (cancel on free, never a callback after free).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmm/ch/ch.h"
#include "ch_test_util.h"

#define MAX_RESULTS 8

typedef struct result {
    bool done;
    int status; /* -1 when no response */
    char body[1024];
    chcp_code code;
    char msg[1024];
} result;

typedef struct fixture {
    uv_loop_t loop;
    char *dir;
    tu_server srv;
    ch_vmm *vmm;
    result res[MAX_RESULTS];
    int order[MAX_RESULTS];
    int n_done;
    bool all_done;
    int expect;
} fixture;

static fixture *F;

static void on_resp(ch_vmm *vmm, const ch_response *resp, const chcp_error *err, void *ud)
{
    result *r = ud;
    assert_false(r->done);
    r->done = true;
    r->status = resp ? resp->status : -1;
    if (resp) {
        assert_int_equal(strlen(resp->body), resp->body_len);
        snprintf(r->body, sizeof(r->body), "%s", resp->body);
    }
    r->code = err ? err->code : CHCP_OK;
    snprintf(r->msg, sizeof(r->msg), "%s", err ? err->message : "");
    F->order[F->n_done++] = (int)(r - F->res);
    if (F->n_done >= F->expect)
        F->all_done = true;
}

static int setup(void **state)
{
    F = calloc(1, sizeof(*F));
    uv_loop_init(&F->loop);
    F->dir = tu_mkdtemp();
    *state = F;
    return 0;
}

static int teardown(void **state)
{
    ch_vmm_free(F->vmm);
    assert_int_equal(tu_drain_loop(&F->loop), 0);
    tu_server_stop(&F->srv);
    tu_rmrf(F->dir);
    free(F->dir);
    free(F);
    return 0;
}

static void start(const tu_step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        F->srv.steps[i] = steps[i];
    F->srv.n_steps = n;
    tu_server_start(&F->srv, F->dir);
    chcp_error *err = NULL;
    char uri[200];
    snprintf(uri, sizeof(uri), "unix://%s", F->srv.path);
    F->vmm = ch_vmm_attach(&F->loop, uri, NULL, NULL, &err);
    assert_null(err);
    assert_non_null(F->vmm);
    assert_string_equal(ch_vmm_socket_path(F->vmm), F->srv.path);
}

static void wait_all(int n)
{
    F->expect = n;
    assert_true(tu_run_until(&F->loop, &F->all_done, 5000));
}

#define CALL(endpoint, body, i, timeout)                                                           \
    do {                                                                                           \
        chcp_error *e_ = NULL;                                                                     \
        assert_int_equal(                                                                          \
            ch_vmm_call(F->vmm, endpoint, body, NULL, 0, timeout, on_resp, &F->res[i], &e_), 0);   \
        assert_null(e_);                                                                           \
    } while (0)

/* micro_http: "HTTP/1.1 204 \r\n", no Content-Length; then a 200 split into
 * pieces (mid status line, mid header, mid body) on the same connection. */
static void test_quirks_and_keepalive(void **state)
{
    tu_step steps[] = {
        {.chunks =
             {"HTTP/1.1 204 \r\nServer: Cloud Hypervisor API\r\nConnection: keep-alive\r\n\r\n"}},
        {.chunks = {"HTTP/1.1 2", "00 \r\nContent-Type: application/json\r\nContent-Le",
                    "ngth: 45\r\nConnection: keep-alive\r\n\r\n{\"state\":\"Running\",",
                    "\"memory_actual_size\":1024}"}},
    };
    start(steps, 2);
    CALL("vm.boot", NULL, 0, 0);
    CALL("vm.info", NULL, 1, 0);
    wait_all(2);
    assert_int_equal(F->res[0].status, 204);
    assert_int_equal(F->res[0].code, CHCP_OK);
    assert_string_equal(F->res[0].body, "");
    assert_int_equal(F->res[1].status, 200);
    assert_int_equal(F->res[1].code, CHCP_OK);
    ch_vm_info info;
    assert_int_equal(ch_parse_vm_info(F->res[1].body, strlen(F->res[1].body), &info, NULL), 0);
    assert_int_equal(info.state, CH_VM_STATE_RUNNING);
    assert_true(info.has_memory_actual_size);
    assert_int_equal(info.memory_actual_size, 1024);
    /* Exact request bytes: PUT, Host, Accept, Content-Length even when empty. */
    assert_string_equal(F->srv.reqs[0], "PUT /api/v1/vm.boot HTTP/1.1\r\nHost: localhost\r\n"
                                        "Accept: */*\r\nContent-Length: 0\r\n\r\n");
    assert_non_null(strstr(F->srv.reqs[1], "GET /api/v1/vm.info HTTP/1.1\r\n"));
    assert_int_equal(F->srv.connections, 1);
}

static void test_error_chain(void **state)
{
    const char *body =
        "[\"Error from API\",\"The VM info is not available\",\"VM is not created\"]";
    char resp[512];
    snprintf(resp, sizeof(resp), "HTTP/1.1 404 \r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
             body);
    tu_step steps[] = {{.chunks = {resp}},
                       {.chunks = {"HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n"}}};
    start(steps, 2);
    CALL("vm.info", NULL, 0, 0);
    CALL("vm.pause", NULL, 1, 0);
    wait_all(2);
    assert_int_equal(F->res[0].status, 404);
    assert_int_equal(F->res[0].code, CHCP_FAILED_PRECONDITION);
    assert_string_equal(F->res[0].msg,
                        "Error from API: The VM info is not available: VM is not created");
    assert_int_equal(F->res[1].status, 500);
    assert_int_equal(F->res[1].code, CHCP_FAILED_PRECONDITION);
    assert_string_equal(F->res[1].msg, "HTTP 500 from the VMM");
}

/* A hung VMM: the call times out, the connection is dropped, and the next
 * call works on a fresh connection. */
static void test_timeout_then_reconnect(void **state)
{
    tu_step steps[] = {{.no_answer = true},
                       {.chunks = {"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n{}"}}};
    start(steps, 2);
    uint64_t t0 = uv_hrtime();
    CALL("vm.boot", NULL, 0, 150);
    CALL("vmm.ping", NULL, 1, 0);
    wait_all(2);
    assert_int_equal(F->res[0].code, CHCP_DEADLINE_EXCEEDED);
    assert_int_equal(F->res[0].status, -1);
    assert_non_null(strstr(F->res[0].msg, "vm.boot: no answer from the VMM within 150 ms"));
    assert_true(uv_hrtime() - t0 >= 140 * 1000000ull);
    assert_int_equal(F->res[1].code, CHCP_OK);
    assert_int_equal(F->res[1].status, 200);
    assert_int_equal(F->srv.connections, 2);
    assert_int_equal(F->order[0], 0);
    assert_int_equal(F->order[1], 1);
}

static void test_eof_mid_response(void **state)
{
    tu_step steps[] = {{.chunks = {"HTTP/1.1 200 \r\nContent-Length: 100\r\n\r\n{\"state\":"},
                        .close_after = true}};
    start(steps, 1);
    CALL("vm.info", NULL, 0, 0);
    wait_all(1);
    assert_int_equal(F->res[0].code, CHCP_UNAVAILABLE);
    assert_int_equal(F->res[0].status, -1);
    assert_non_null(strstr(F->res[0].msg, "closed the connection"));
}

/* vmm.shutdown: CH may exit before its 200 gets out; EOF then means success.
 * Any other call is a failure on the same EOF. */
static void test_vmm_shutdown_eof_is_success(void **state)
{
    tu_step steps[] = {{.chunks = {NULL}, .close_after = true},
                       {.chunks = {NULL}, .close_after = true}};
    start(steps, 2);
    CALL("vmm.shutdown", NULL, 0, 0);
    CALL("vm.shutdown", NULL, 1, 0);
    wait_all(2);
    assert_int_equal(F->res[0].code, CHCP_OK);
    assert_int_equal(F->res[0].status, 200);
    assert_int_equal(F->res[1].code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(F->srv.reqs[0], "PUT /api/v1/vmm.shutdown HTTP/1.1\r\n"));
}

static void test_continue_and_connection_close(void **state)
{
    tu_step steps[] = {
        {.chunks = {"HTTP/1.1 100 \r\n\r\n", "HTTP/1.1 204 \r\nConnection: close\r\n\r\n"},
         .close_after = true},
        {.chunks = {"HTTP/1.1 200 \r\nContent-Length: 4\r\n\r\n[1,2"}},
    };
    start(steps, 2);
    CALL("vm.resume", NULL, 0, 0);
    CALL("vm.counters", NULL, 1, 0);
    wait_all(2);
    assert_int_equal(F->res[0].status, 204);
    assert_int_equal(F->res[0].code, CHCP_OK);
    assert_int_equal(F->res[1].status, 200);
    assert_string_equal(F->res[1].body, "[1,2");
    assert_non_null(strstr(F->srv.reqs[1], "GET /api/v1/vm.counters "));
    /* "Connection: close" makes the client reconnect. */
    assert_int_equal(F->srv.connections, 2);
}

static void test_garbage_answer(void **state)
{
    tu_step steps[] = {{.chunks = {"SSH-2.0-OpenSSH\r\n\r\n"}}};
    start(steps, 1);
    CALL("vmm.ping", NULL, 0, 0);
    wait_all(1);
    assert_int_equal(F->res[0].code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(F->res[0].msg, "malformed answer"));
}

static void test_queue_order_and_body(void **state)
{
    tu_step steps[] = {
        {.chunks = {"HTTP/1.1 204 \r\n\r\n"}},
        {.chunks = {"HTTP/1.1 400 \r\nContent-Length: 44\r\n\r\n[\"Failed to deserialize "
                    "JSON\",\"bad value\"]  "}},
        {.chunks = {"HTTP/1.1 204 \r\n\r\n"}},
    };
    start(steps, 3);
    CALL("vm.create", "{\"cpus\":{\"boot_vcpus\":1,\"max_vcpus\":1}}", 0, 0);
    CALL("vm.create", "{}", 1, 0);
    CALL("vm.boot", NULL, 2, 0);
    wait_all(3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(F->order[i], i);
    assert_int_equal(F->res[0].status, 204);
    assert_int_equal(F->res[1].status, 400);
    assert_string_equal(F->res[1].msg, "Failed to deserialize JSON: bad value");
    assert_int_equal(F->res[2].code, CHCP_OK);
    const char *r0 = F->srv.reqs[0];
    assert_non_null(strstr(r0, "PUT /api/v1/vm.create HTTP/1.1\r\n"));
    assert_non_null(strstr(r0, "Content-Length: 39\r\n"));
    assert_non_null(strstr(r0, "\r\n\r\n{\"cpus\":{\"boot_vcpus\":1,\"max_vcpus\":1}}"));
    assert_int_equal(F->srv.connections, 1);
}

/* An error answer that comes while a big body is still being sent: the
 * connection is in an unknown state and must not be reused. */
static void test_early_answer_discards_connection(void **state)
{
    tu_step steps[] = {
        {.chunks = {"HTTP/1.1 400 \r\nContent-Length: 11\r\n\r\n[\"too big\"]"},
         .early_answer = true},
        {.chunks = {"HTTP/1.1 204 \r\n\r\n"}},
    };
    start(steps, 2);
    size_t n = 3u << 20;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = 0;
    CALL("vm.create", big, 0, 0);
    free(big);
    CALL("vm.boot", NULL, 1, 0);
    wait_all(2);
    assert_int_equal(F->res[0].status, 400);
    assert_string_equal(F->res[0].msg, "too big");
    assert_int_equal(F->res[1].status, 204);
    assert_int_equal(F->srv.connections, 2);
}

/* TAP fds for vm.add-net travel with SCM_RIGHTS; verify on the server side
 * that the received descriptor is the same pipe. */
static void test_fd_passing(void **state)
{
    tu_step steps[] = {{.chunks = {"HTTP/1.1 200 \r\nContent-Length: 35\r\n\r\n"
                                   "{\"id\":\"_net2\",\"bdf\":\"0000:00:05.0\"}"}}};
    start(steps, 1);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    ch_net_config net = {.mac = "12:34:56:78:90:ab", .num_queues = 2};
    chcp_error *err = NULL;
    assert_int_equal(ch_vmm_add_net(F->vmm, &net, &p[1], 1, 0, on_resp, &F->res[0], &err), 0);
    /* Our copy can go at once: the call holds its own duplicate. */
    close(p[1]);
    wait_all(1);
    assert_int_equal(F->res[0].status, 200);
    assert_int_equal(F->srv.n_fds[0], 1);
    assert_non_null(strstr(F->srv.reqs[0], "PUT /api/v1/vm.add-net HTTP/1.1\r\n"));
    assert_non_null(strstr(F->srv.reqs[0], "\"mac\":\"12:34:56:78:90:ab\""));
    assert_int_equal(write(F->srv.fds[0][0], "tap!", 4), 4);
    char b[8] = {0};
    assert_int_equal(read(p[0], b, sizeof(b)), 4);
    assert_string_equal(b, "tap!");
    close(F->srv.fds[0][0]);
    F->srv.n_fds[0] = 0;
    /* Every other writer is gone now: the client kept no duplicate. */
    assert_int_equal(read(p[0], b, sizeof(b)), 0);
    close(p[0]);
}

/* Whatever bytes come back (truncated, corrupted or random answers), every
 * call ends exactly once, without crashing or hanging. */
static void test_garbage_never_crashes(void **state)
{
    static const char *const seeds[] = {
        "HTTP/1.1 200 \r\nContent-Length: 5\r\n\r\n[\"a\"]",
        "HTTP/1.1 500 \r\nContent-Length: 30\r\n\r\n[\"Error from API\",\"x\"]",
        "HTTP/1.1 204 \r\n\r\n",
        "HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    };
    static char bufs[TU_MAX_STEPS][256];
    tu_step steps[TU_MAX_STEPS];
    memset(steps, 0, sizeof(steps));
    unsigned seed = getenv("CH_TEST_SEED") ? (unsigned)atoi(getenv("CH_TEST_SEED")) : 12345;
    for (int i = 0; i < MAX_RESULTS; i++) {
        const char *src = seeds[i % 4];
        size_t n = strlen(src);
        memcpy(bufs[i], src, n + 1);
        for (int k = 0; k < 4; k++) { /* flip a few bytes, maybe truncate */
            seed = seed * 1103515245 + 12345;
            bufs[i][(seed >> 8) % n] = (char)(seed >> 16);
        }
        seed = seed * 1103515245 + 12345;
        if (seed & 1)
            bufs[i][(seed >> 4) % n] = 0;
        steps[i].chunks[0] = bufs[i][0] ? bufs[i] : "x";
        steps[i].close_after = true;
    }
    start(steps, MAX_RESULTS);
    for (int i = 0; i < MAX_RESULTS; i++)
        CALL("vm.info", NULL, i, 500);
    wait_all(MAX_RESULTS);
    for (int i = 0; i < MAX_RESULTS; i++) {
        assert_true(F->res[i].done);
        /* Success only ever comes with a 2xx status. */
        if (F->res[i].code == CHCP_OK)
            assert_true(F->res[i].status >= 200 && F->res[i].status <= 299);
    }
}

static void test_free_cancels_pending(void **state)
{
    tu_step steps[] = {{.no_answer = true}};
    start(steps, 1);
    CALL("vm.boot", NULL, 0, 0);
    CALL("vm.info", NULL, 1, 0);
    /* Let the first one reach the server. */
    for (int i = 0; i < 50 && F->srv.n_reqs == 0; i++)
        uv_run(&F->loop, UV_RUN_NOWAIT), usleep(2000);
    assert_int_equal(F->srv.n_reqs, 1);
    F->expect = 2;
    ch_vmm_free(F->vmm);
    F->vmm = NULL;
    assert_true(F->res[0].done && F->res[1].done);
    assert_int_equal(F->res[0].code, CHCP_CANCELED);
    assert_int_equal(F->res[1].code, CHCP_CANCELED);
}

static void free_in_callback(ch_vmm *vmm, const ch_response *resp, const chcp_error *err, void *ud)
{
    on_resp(vmm, resp, err, ud);
    if (ud == &F->res[0]) {
        ch_vmm_free(vmm);
        F->vmm = NULL;
    }
}

static void test_free_inside_callback(void **state)
{
    tu_step steps[] = {{.chunks = {"HTTP/1.1 204 \r\n\r\n"}}};
    start(steps, 1);
    chcp_error *err = NULL;
    assert_int_equal(
        ch_vmm_call(F->vmm, "vm.boot", NULL, NULL, 0, 0, free_in_callback, &F->res[0], &err), 0);
    assert_int_equal(
        ch_vmm_call(F->vmm, "vm.info", NULL, NULL, 0, 0, free_in_callback, &F->res[1], &err), 0);
    wait_all(2);
    assert_int_equal(F->res[0].code, CHCP_OK);
    assert_int_equal(F->res[1].code, CHCP_CANCELED);
    assert_int_equal(F->order[0], 0);
}

static void test_bad_arguments_and_no_server(void **state)
{
    tu_step steps[] = {{.no_answer = true}};
    start(steps, 0); /* nothing scripted: server thread ends at once */
    chcp_error *err = NULL;
    assert_int_equal(ch_vmm_call(F->vmm, "../etc", NULL, NULL, 0, 0, on_resp, &F->res[0], &err),
                     -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err), err = NULL;
    assert_int_equal(
        ch_vmm_call(F->vmm, "vm.info\r\nX: y", NULL, NULL, 0, 0, on_resp, &F->res[0], &err), -1);
    error_free(err), err = NULL;
    int fds[17] = {0};
    assert_int_equal(ch_vmm_call(F->vmm, "vm.add-net", "{}", fds, 17, 0, on_resp, &F->res[0], &err),
                     -1);
    error_free(err), err = NULL;
    int bad = 999;
    assert_int_equal(ch_vmm_call(F->vmm, "vm.add-net", "{}", &bad, 1, 0, on_resp, &F->res[0], &err),
                     -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err), err = NULL;
    assert_false(F->res[0].done);
    assert_null(ch_vmm_attach(&F->loop, "tcp://1.2.3.4:5", NULL, NULL, &err));
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err), err = NULL;
    /* Nothing listens on this path: the call fails asynchronously. */
    ch_vmm *other = ch_vmm_attach(&F->loop, "/nonexistent/ch.sock", NULL, NULL, &err);
    assert_non_null(other);
    assert_int_equal(ch_vmm_ping(other, 0, on_resp, &F->res[1], &err), 0);
    assert_false(F->res[1].done); /* never from inside the call */
    F->expect = 1;
    assert_true(tu_run_until(&F->loop, &F->all_done, 2000));
    assert_int_equal(F->res[1].code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(F->res[1].msg, "/nonexistent/ch.sock"));
    ch_vmm_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quirks_and_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_then_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_mid_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vmm_shutdown_eof_is_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continue_and_connection_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_order_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_answer_discards_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_passing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_never_crashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_cancels_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments_and_no_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
