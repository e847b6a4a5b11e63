/*
 * test_qmp.c - the QMP client (src/vmm/qemu/qmp.c) against a scripted peer on
 * a socketpair: the handshake, id matching with events and out-of-order
 * replies, error classes, timeouts and late replies, EOF, malformed and
 * oversized input, descriptors by SCM_RIGHTS, and freeing the client from
 * inside its own callbacks. The real-QEMU side is in test_qemu_*.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "vmm/qemu/qemu.h"

#define GREETING                                                                                   \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, "             \
    "\"capabilities\": [\"oob\"]}}\r\n"

typedef struct reply_log {
    int n;
    chcp_code codes[16];
    char msgs[16][256];
    json_t *rets[16];
    int order[16]; /* user data of each reply, in completion order */
} reply_log;

typedef struct fixture {
    uv_loop_t loop;
    int peer; /* the "QEMU" end, blocking */
    qmp_client *q;
    bool ready;
    chcp_error *ready_err;
    json_t *version;
    int events;
    char event_names[16][32];
    bool event_guest[16];
    bool closed;
    chcp_code closed_code;
    reply_log log;
    bool free_in_reply; /* qmp_client_free from the first reply callback */
} fixture;

static fixture *F;

static void on_ready(qmp_client *q, const json_t *version, const chcp_error *err, void *ud)
{
    fixture *f = ud;
    f->ready = true;
    if (err) {
        f->ready_err = xcalloc(1, sizeof(chcp_error));
        f->ready_err->code = err->code;
        f->ready_err->message = xstrdup(err->message);
    } else {
        f->version = json_deep_copy(version);
    }
}

static void on_event(qmp_client *q, const qmp_event *ev, void *ud)
{
    fixture *f = ud;
    if (f->events < 16) {
        snprintf(f->event_names[f->events], 32, "%s", ev->name);
        f->event_guest[f->events] = ev->guest;
    }
    f->events++;
}

static void on_closed(qmp_client *q, const chcp_error *err, void *ud)
{
    fixture *f = ud;
    f->closed = true;
    f->closed_code = err->code;
}

static void on_reply(qmp_client *q, const json_t *ret, const chcp_error *err, void *ud)
{
    reply_log *l = &F->log;
    int i = l->n++;
    assert_true(i < 16);
    l->order[i] = (int)(intptr_t)ud;
    l->codes[i] = err ? err->code : CHCP_OK;
    snprintf(l->msgs[i], sizeof(l->msgs[i]), "%s", err ? err->message : "");
    l->rets[i] = ret ? json_deep_copy(ret) : NULL;
    if (F->free_in_reply && F->q) {
        qmp_client *doomed = F->q;
        F->q = NULL;
        qmp_client_free(doomed);
    }
}

static const qmp_callbacks cbs = {
    .on_ready = on_ready, .on_event = on_event, .on_closed = on_closed};

static int setup(void **state)
{
    fixture *f = xcalloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->peer = sv[1];
    chcp_error *err = NULL;
    f->q = qmp_client_open_fd(&f->loop, sv[0], &cbs, f, &err);
    assert_non_null(f->q);
    F = f;
    *state = f;
    return 0;
}

static void pump(fixture *f, int ms)
{
    uint64_t end = time_mono_ns() + (uint64_t)ms * 1000000u;
    while (time_mono_ns() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

#define PUMP_UNTIL(f, cond)                                                                        \
    do {                                                                                           \
        uint64_t _end = time_mono_ns() + 3000000000ull;                                            \
        while (!(cond) && time_mono_ns() < _end) {                                                 \
            uv_run(&(f)->loop, UV_RUN_NOWAIT);                                                     \
            usleep(500);                                                                           \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static int teardown(void **state)
{
    fixture *f = *state;
    qmp_client_free(f->q);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    if (f->peer >= 0)
        close(f->peer);
    for (int i = 0; i < f->log.n; i++)
        json_decref(f->log.rets[i]);
    json_decref(f->version);
    error_free(f->ready_err);
    free(f);
    return 0;
}

static void peer_send(fixture *f, const char *s)
{
    assert_int_equal(write(f->peer, s, strlen(s)), (ssize_t)strlen(s));
}

/* One line from the client, the loop running meanwhile. */
static json_t *peer_recv(fixture *f)
{
    char line[65536];
    size_t n = 0;
    uint64_t end = time_mono_ns() + 3000000000ull;
    while (time_mono_ns() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = f->peer, .events = POLLIN};
        if (poll(&p, 1, 1) == 1) {
            char c;
            if (read(f->peer, &c, 1) != 1)
                break;
            if (c == '\n') {
                json_t *j = json_loadb(line, n, 0, NULL);
                assert_non_null(j);
                return j;
            }
            if (n < sizeof(line))
                line[n++] = c;
        }
    }
    fail_msg("no line from the client");
    return NULL;
}

static json_int_t expect_command(fixture *f, const char *name)
{
    json_t *j = peer_recv(f);
    assert_string_equal(json_string_value(json_object_get(j, "execute")), name);
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    return id;
}

static void handshake(fixture *f)
{
    peer_send(f, GREETING);
    json_int_t id = expect_command(f, "qmp_capabilities");
    char buf[128];
    snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
    peer_send(f, buf);
    PUMP_UNTIL(f, f->ready);
    assert_null(f->ready_err);
}

static void reply(fixture *f, json_int_t id, const char *ret_json)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "{\"return\": %s, \"id\": %lld}\r\n", ret_json, (long long)id);
    peer_send(f, buf);
}

static void exec(fixture *f, const char *cmd, int tag, uint64_t timeout_ms)
{
    chcp_error *err = NULL;
    assert_int_equal(
        qmp_execute(f->q, cmd, NULL, timeout_ms, NULL, 0, on_reply, (void *)(intptr_t)tag, &err),
        0);
}

/* Commands issued before the greeting wait for the negotiation. */
static void test_handshake_holds_early_commands(void **state)
{
    fixture *f = *state;
    exec(f, "query-status", 1, 0);
    pump(f, 20);
    assert_int_equal(f->log.n, 0);
    assert_false(qmp_client_ready(f->q));
    handshake(f);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(f->version, "qemu"), "major")), 7);
    json_int_t id = expect_command(f, "query-status");
    reply(f, id, "{\"status\": \"prelaunch\", \"running\": false}");
    PUMP_UNTIL(f, f->log.n == 1);
    assert_int_equal(f->log.codes[0], CHCP_OK);
    assert_string_equal(json_string_value(json_object_get(f->log.rets[0], "status")), "prelaunch");
}

/* Events interleave; replies come out of order; each finds its command. */
static void test_events_and_out_of_order_replies(void **state)
{
    fixture *f = *state;
    handshake(f);
    exec(f, "stop", 1, 0);
    exec(f, "query-status", 2, 0);
    json_int_t a = expect_command(f, "stop");
    json_int_t b = expect_command(f, "query-status");
    assert_true(a != b);
    peer_send(f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                 "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}, \"event\": \"SHUTDOWN\", "
                 "\"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n");
    reply(f, b, "{\"status\": \"paused\"}");
    reply(f, a, "{}");
    PUMP_UNTIL(f, f->log.n == 2);
    assert_int_equal(f->log.order[0], 2);
    assert_int_equal(f->log.order[1], 1);
    assert_int_equal(f->events, 2);
    assert_string_equal(f->event_names[0], "STOP");
    assert_string_equal(f->event_names[1], "SHUTDOWN");
    assert_true(f->event_guest[1]);
    assert_int_equal(qmp_event_kind_from_name("GUEST_PANICKED"), QMP_EVENT_GUEST_PANICKED);
    assert_int_equal(qmp_event_kind_from_name("BLOCK_JOB_READY"), QMP_EVENT_OTHER);
}

static void test_error_classes(void **state)
{
    fixture *f = *state;
    handshake(f);
    exec(f, "no-such-command", 1, 0);
    exec(f, "cont", 2, 0);
    json_int_t a = expect_command(f, "no-such-command");
    json_int_t b = expect_command(f, "cont");
    char buf[256];
    snprintf(buf, sizeof(buf),
             "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
             "no-such-command has not been found\"}, \"id\": %lld}\r\n",
             (long long)a);
    peer_send(f, buf);
    snprintf(buf, sizeof(buf),
             "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Resetting the Virtual Machine "
             "is required\"}, \"id\": %lld}\r\n",
             (long long)b);
    peer_send(f, buf);
    PUMP_UNTIL(f, f->log.n == 2);
    assert_int_equal(f->log.codes[0], CHCP_UNIMPLEMENTED);
    assert_non_null(strstr(f->log.msgs[0], "CommandNotFound"));
    assert_int_equal(f->log.codes[1], CHCP_FAILED_PRECONDITION);
    assert_non_null(strstr(f->log.msgs[1], "cont: GenericError: Resetting the Virtual Machine"));
}

static void test_timeout_then_late_reply_is_dropped(void **state)
{
    fixture *f = *state;
    handshake(f);
    exec(f, "query-status", 1, 50);
    json_int_t a = expect_command(f, "query-status");
    PUMP_UNTIL(f, f->log.n == 1);
    assert_int_equal(f->log.codes[0], CHCP_DEADLINE_EXCEEDED);
    reply(f, a, "{\"status\": \"running\"}"); /* too late: dropped */
    exec(f, "query-status", 2, 0);
    json_int_t b = expect_command(f, "query-status");
    reply(f, b, "{\"status\": \"paused\"}");
    PUMP_UNTIL(f, f->log.n == 2);
    assert_int_equal(f->log.order[1], 2);
    assert_string_equal(json_string_value(json_object_get(f->log.rets[1], "status")), "paused");
    assert_false(f->closed);
}

static void test_eof_fails_pending_and_later_calls(void **state)
{
    fixture *f = *state;
    handshake(f);
    exec(f, "system_powerdown", 1, 0);
    expect_command(f, "system_powerdown");
    close(f->peer);
    f->peer = -1;
    PUMP_UNTIL(f, f->closed);
    assert_int_equal(f->closed_code, CHCP_UNAVAILABLE);
    assert_int_equal(f->log.n, 1);
    assert_int_equal(f->log.codes[0], CHCP_UNAVAILABLE);
    chcp_error *err = NULL;
    assert_int_equal(qmp_execute(f->q, "cont", NULL, 0, NULL, 0, on_reply, NULL, &err), -1);
    assert_int_equal(err->code, CHCP_UNAVAILABLE);
    error_free(err);
}

static void test_eof_before_greeting_reports_on_ready(void **state)
{
    fixture *f = *state;
    close(f->peer);
    f->peer = -1;
    PUMP_UNTIL(f, f->ready);
    assert_non_null(f->ready_err);
    assert_int_equal(f->ready_err->code, CHCP_UNAVAILABLE);
    assert_false(f->closed); /* on_ready carried it */
}

static void test_capabilities_refused(void **state)
{
    fixture *f = *state;
    peer_send(f, GREETING);
    json_int_t id = expect_command(f, "qmp_capabilities");
    char buf[200];
    snprintf(buf, sizeof(buf),
             "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": %lld}\r\n",
             (long long)id);
    peer_send(f, buf);
    PUMP_UNTIL(f, f->ready);
    assert_non_null(f->ready_err);
    assert_non_null(strstr(f->ready_err->message, "qmp_capabilities refused"));
}

static void test_not_qmp_and_malformed_input(void **state)
{
    fixture *f = *state;
    peer_send(f, "HTTP/1.1 200 OK\r\n");
    PUMP_UNTIL(f, f->ready);
    assert_non_null(f->ready_err);
    assert_non_null(strstr(f->ready_err->message, "malformed"));
}

static void test_oversized_line_drops_the_connection(void **state)
{
    fixture *f = *state;
    handshake(f);
    exec(f, "query-status", 1, 0);
    expect_command(f, "query-status");
    int fl = fcntl(f->peer, F_GETFL);
    fcntl(f->peer, F_SETFL, fl | O_NONBLOCK);
    char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    chunk[0] = '"';
    size_t sent = 0;
    while (sent < QMP_MAX_LINE + sizeof(chunk) && !f->closed) {
        ssize_t n = write(f->peer, chunk, sizeof(chunk));
        if (n > 0)
            sent += (size_t)n;
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    PUMP_UNTIL(f, f->closed);
    assert_int_equal(f->log.n, 1);
    assert_int_equal(f->log.codes[0], CHCP_UNAVAILABLE);
    assert_non_null(strstr(f->log.msgs[0], "too long"));
}

static void test_fds_travel_with_the_command(void **state)
{
    fixture *f = *state;
    handshake(f);
    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    json_t *args = json_pack("{s:s}", "fdname", "tap0");
    chcp_error *err = NULL;
    assert_int_equal(qmp_execute(f->q, "getfd", args, 0, &pipefd[1], 1, on_reply, NULL, &err), 0);
    json_decref(args);
    close(pipefd[1]); /* the client holds its own duplicate */
    /* read the command with recvmsg to collect the descriptor */
    int got = -1;
    char data[4096];
    size_t n = 0;
    uint64_t end = time_mono_ns() + 3000000000ull;
    while (time_mono_ns() < end && !memchr(data, '\n', n)) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = f->peer, .events = POLLIN};
        if (poll(&p, 1, 1) != 1)
            continue;
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } u;
        struct iovec iov = {data + n, sizeof(data) - n};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = u.buf,
                            .msg_controllen = sizeof(u.buf)};
        ssize_t r = recvmsg(f->peer, &mh, MSG_CMSG_CLOEXEC);
        assert_true(r > 0);
        n += (size_t)r;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        if (cm && cm->cmsg_type == SCM_RIGHTS)
            memcpy(&got, CMSG_DATA(cm), sizeof(int));
    }
    assert_true(got >= 0);
    assert_non_null(strstr(data, "\"fdname\":\"tap0\""));
    /* it is the pipe's write end: what we write comes out of pipefd[0] */
    assert_int_equal(write(got, "k", 1), 1);
    char c = 0;
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    assert_int_equal(c, 'k');
    close(got);
    close(pipefd[0]);
}

static void test_free_inside_reply_cancels_the_rest(void **state)
{
    fixture *f = *state;
    handshake(f);
    exec(f, "stop", 1, 0);
    exec(f, "cont", 2, 0);
    json_int_t a = expect_command(f, "stop");
    expect_command(f, "cont");
    f->free_in_reply = true;
    reply(f, a, "{}");
    PUMP_UNTIL(f, f->log.n == 2);
    assert_null(f->q);
    assert_int_equal(f->log.codes[0], CHCP_OK);
    assert_int_equal(f->log.codes[1], CHCP_CANCELED);
}

static void test_invalid_calls(void **state)
{
    fixture *f = *state;
    chcp_error *err = NULL;
    assert_int_equal(qmp_execute(f->q, "bad name", NULL, 0, NULL, 0, on_reply, NULL, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    err = NULL;
    json_t *arr = json_array();
    assert_int_equal(qmp_execute(f->q, "stop", arr, 0, NULL, 0, on_reply, NULL, &err), -1);
    json_decref(arr);
    error_free(err);
    err = NULL;
    assert_int_equal(qmp_execute(f->q, "stop", NULL, 0, NULL, 0, NULL, NULL, &err), -1);
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_holds_early_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_and_out_of_order_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_then_late_reply_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_fails_pending_and_later_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_before_greeting_reports_on_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capabilities_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_qmp_and_malformed_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_line_drops_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fds_travel_with_the_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_reply_cancels_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_calls, setup, teardown),
    };
    return cmocka_run_group_tests_name("qmp", tests, NULL, NULL);
}
