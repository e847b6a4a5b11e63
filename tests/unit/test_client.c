/*
 * test_client.c - the client library (src/client/) against a scripted HTTP
 * peer: endpoint parsing, the request chcp sends, decoding of successes and
 * Connect errors (with and without a usable body), chunked and
 * close-delimited responses, deadlines, cancellation, connection reuse for
 * read-only calls, the retry of a read on a connection the server closed
 * while idle, and never a retry of a mutation.
 *
 * The peer is a thread serving a Unix socket in a temporary directory; each
 * request it reads is answered with the next scripted reply.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <cmocka.h>

#include "client/client.h"

/* ---- the scripted peer ------------------------------------------------------------ */

typedef struct reply {
    chcp_buf raw;     /* bytes to send (empty: send nothing) */
    bool close_after; /* then close the connection */
    bool hang;        /* never answer */
} reply;

typedef struct peer {
    char dir[40];
    char path[64];
    int listen_fd;
    int stop[2];
    pthread_t thread;
    reply replies[8];
    size_t n_replies;
    size_t requests;    /* requests read */
    size_t connections; /* connections accepted */
    chcp_buf last;      /* the last request, head and body */
} peer;

static bool wait_readable(peer *p, int fd)
{
    struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = p->stop[0], .events = POLLIN}};
    while (poll(fds, 2, -1) < 0)
        if (errno != EINTR)
            return false;
    return !(fds[1].revents & POLLIN);
}

/* Read one request (head + Content-Length body); false at EOF or stop. */
static bool read_request(peer *p, int fd)
{
    buf_reset(&p->last);
    size_t need = 0;
    for (;;) {
        char *end = p->last.len ? memmem(p->last.data, p->last.len, "\r\n\r\n", 4) : NULL;
        if (end && !need) {
            const char *cl = strcasestr((char *)p->last.data, "Content-Length: ");
            size_t head = (size_t)(end - (char *)p->last.data) + 4;
            need = head + (cl ? strtoul(cl + 16, NULL, 10) : 0);
        }
        if (need && p->last.len >= need)
            return true;
        if (!wait_readable(p, fd))
            return false;
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n <= 0)
            return false;
        buf_append(&p->last, chunk, (size_t)n);
        buf_append_byte(&p->last, 0); /* keep it a C string for strcasestr */
        p->last.len--;
    }
}

static void *peer_main(void *arg)
{
    peer *p = arg;
    while (wait_readable(p, p->listen_fd)) {
        int fd = accept(p->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        p->connections++;
        while (read_request(p, fd)) {
            size_t i = p->requests++;
            if (i >= p->n_replies)
                break;
            reply *r = &p->replies[i];
            if (r->hang) {
                wait_readable(p, p->stop[0]); /* until the test ends */
                break;
            }
            if (r->raw.len && write(fd, r->raw.data, r->raw.len) < 0)
                break;
            if (r->close_after)
                break;
        }
        close(fd);
    }
    return NULL;
}

static peer *peer_start(void)
{
    peer *p = xcalloc(1, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/chcp-client-test-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    snprintf(p->path, sizeof(p->path), "%s/api.sock", p->dir);
    p->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", p->path);
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(p->listen_fd, 8), 0);
    assert_int_equal(pipe(p->stop), 0);
    return p;
}

static void peer_run(peer *p)
{
    assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_stop(peer *p)
{
    assert_int_equal(write(p->stop[1], "x", 1), 1);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    close(p->stop[0]);
    close(p->stop[1]);
    unlink(p->path);
    rmdir(p->dir);
    for (size_t i = 0; i < p->n_replies; i++)
        buf_free(&p->replies[i].raw);
    buf_free(&p->last);
    free(p);
}

static reply *add_reply(peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static reply *add_reply(peer *p, const char *fmt, ...)
{
    reply *r = &p->replies[p->n_replies++];
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&r->raw, fmt, ap);
    va_end(ap);
    return r;
}

/* 200 application/proto carrying a GetVmInfoResponse for vm_id. */
static reply *add_vm_reply(peer *p, const char *vm_id, const char *extra_headers)
{
    Cloudhypervisor__V1__VmInfo vm = CLOUDHYPERVISOR__V1__VM_INFO__INIT;
    vm.vm_id = (char *)vm_id;
    vm.state = CLOUDHYPERVISOR__V1__VM_STATE__VM_STATE_RUNNING;
    Cloudhypervisor__V1__GetVmInfoResponse resp = CLOUDHYPERVISOR__V1__GET_VM_INFO_RESPONSE__INIT;
    resp.vm = &vm;
    uint8_t body[256];
    size_t n = protobuf_c_message_pack(&resp.base, body);
    reply *r = add_reply(p,
                         "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\n%s"
                         "Content-Length: %zu\r\n\r\n",
                         extra_headers, n);
    buf_append(&r->raw, body, n);
    return r;
}

/* ---- calling ------------------------------------------------------------------------ */

static chcp_client *client_for(peer *p, uint64_t timeout_ms, volatile sig_atomic_t *cancel)
{
    char endpoint[160];
    snprintf(endpoint, sizeof(endpoint), "unix://%s", p->path);
    client_options o = {.endpoint = endpoint, .call_timeout_ms = timeout_ms, .cancel = cancel};
    chcp_error *err = NULL;
    chcp_client *c = client_new(&o, &err);
    assert_null(err);
    return c;
}

/* GetVmInfo (read-only) or BootVm (a mutation) for "vm-1". */
static int call(chcp_client *c, bool mutation, char **vm_id, chcp_error **err)
{
    Cloudhypervisor__V1__GetVmInfoRequest get = CLOUDHYPERVISOR__V1__GET_VM_INFO_REQUEST__INIT;
    Cloudhypervisor__V1__BootVmRequest boot = CLOUDHYPERVISOR__V1__BOOT_VM_REQUEST__INIT;
    get.vm_id = boot.vm_id = (char *)"vm-1";
    ProtobufCMessage *resp = NULL;
    int rc = mutation
                 ? client_call(c, "BootVm", &boot.base,
                               &cloudhypervisor__v1__boot_vm_response__descriptor, &resp, err)
                 : client_call(c, "GetVmInfo", &get.base,
                               &cloudhypervisor__v1__get_vm_info_response__descriptor, &resp, err);
    if (rc == 0) {
        /* Both responses have the VmInfo as field 1. */
        Cloudhypervisor__V1__GetVmInfoResponse *r = (void *)resp;
        if (vm_id)
            *vm_id = xstrdup(r->vm ? r->vm->vm_id : "");
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return rc;
}

static void expect_error(chcp_client *c, chcp_code code, const char *message_part)
{
    chcp_error *err = NULL;
    assert_int_equal(call(c, false, NULL, &err), -1);
    assert_non_null(err);
    if (err->code != code || !strstr(err->message, message_part))
        fail_msg("got %s '%s', want %s '...%s...'", code_name(err->code), err->message,
                 code_name(code), message_part);
    error_free(err);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_endpoints(void **state)
{
    static const struct {
        const char *text;
        client_scheme scheme;
        const char *host, *port, *path, *prefix, *authority, *display;
    } ok[] = {
        {"unix:///run/chcp.sock", CLIENT_SCHEME_UNIX, NULL, NULL, "/run/chcp.sock", NULL,
         "localhost", "unix:///run/chcp.sock"},
        {"/run/chcp.sock", CLIENT_SCHEME_UNIX, NULL, NULL, "/run/chcp.sock", NULL, "localhost",
         "unix:///run/chcp.sock"},
        {"unix:rel.sock", CLIENT_SCHEME_UNIX, NULL, NULL, "rel.sock", NULL, "localhost",
         "unix:rel.sock"},
        {"./api.sock", CLIENT_SCHEME_UNIX, NULL, NULL, "./api.sock", NULL, "localhost",
         "unix:./api.sock"},
        {"http://h", CLIENT_SCHEME_HTTP, "h", "80", NULL, "", "h:80", "http://h:80"},
        {"https://h.example:8443/chcp/", CLIENT_SCHEME_HTTPS, "h.example", "8443", NULL, "/chcp",
         "h.example:8443", "https://h.example:8443/chcp"},
        {"https://h", CLIENT_SCHEME_HTTPS, "h", "443", NULL, "", "h:443", "https://h:443"},
        {"127.0.0.1:9000", CLIENT_SCHEME_HTTP, "127.0.0.1", "9000", NULL, "", "127.0.0.1:9000",
         "http://127.0.0.1:9000"},
        {"myhost", CLIENT_SCHEME_HTTP, "myhost", "8080", NULL, "", "myhost:8080",
         "http://myhost:8080"},
        {"[::1]:7", CLIENT_SCHEME_HTTP, "::1", "7", NULL, "", "[::1]:7", "http://[::1]:7"},
        {"http://[fe80::1]", CLIENT_SCHEME_HTTP, "fe80::1", "80", NULL, "", "[fe80::1]:80",
         "http://[fe80::1]:80"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        client_endpoint ep;
        chcp_error *err = NULL;
        if (client_endpoint_parse(ok[i].text, &ep, &err) < 0)
            fail_msg("%s: %s", ok[i].text, err->message);
        assert_int_equal(ep.scheme, ok[i].scheme);
        if (ok[i].host) {
            assert_string_equal(ep.host, ok[i].host);
            assert_string_equal(ep.port, ok[i].port);
            assert_string_equal(ep.prefix, ok[i].prefix);
        } else {
            assert_string_equal(ep.path, ok[i].path);
        }
        assert_string_equal(ep.authority, ok[i].authority);
        assert_string_equal(ep.display, ok[i].display);
        client_endpoint_free(&ep);
    }
    static const char *const bad[] = {
        "",
        "ftp://h",
        "http://",
        "http://h:",
        "http://h:65536",
        "http://h:x",
        "http://u@h",
        "http://h/p?q",
        "http://h/p#f",
        "unix://rel",
        "unix:",
        "http://[::1",
        "http://[::1]x",
        "http://h x",
        "::1",
        "http://h\x01",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        client_endpoint ep;
        chcp_error *err = NULL;
        if (client_endpoint_parse(bad[i], &ep, &err) == 0)
            fail_msg("accepted '%s'", bad[i]);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        error_free(err);
    }
}

static void test_http_status_codes(void **state)
{
    assert_int_equal(client_code_for_http_status(400), CHCP_INTERNAL);
    assert_int_equal(client_code_for_http_status(401), CHCP_UNAUTHENTICATED);
    assert_int_equal(client_code_for_http_status(403), CHCP_PERMISSION_DENIED);
    assert_int_equal(client_code_for_http_status(404), CHCP_UNIMPLEMENTED);
    assert_int_equal(client_code_for_http_status(429), CHCP_UNAVAILABLE);
    assert_int_equal(client_code_for_http_status(502), CHCP_UNAVAILABLE);
    assert_int_equal(client_code_for_http_status(503), CHCP_UNAVAILABLE);
    assert_int_equal(client_code_for_http_status(504), CHCP_UNAVAILABLE);
    assert_int_equal(client_code_for_http_status(500), CHCP_UNKNOWN);
    assert_int_equal(client_code_for_http_status(418), CHCP_UNKNOWN);
}

static void test_request_and_success(void **state)
{
    peer *p = peer_start();
    add_vm_reply(p, "vm-1", "");
    peer_run(p);
    chcp_client *c = client_for(p, 5000, NULL);
    char *id = NULL;
    chcp_error *err = NULL;
    assert_int_equal(call(c, false, &id, &err), 0);
    assert_string_equal(id, "vm-1");
    free(id);
    const char *req = (const char *)p->last.data;
    assert_true(str_has_prefix(req, "POST /cloudhypervisor.v1.VmService/GetVmInfo HTTP/1.1\r\n"));
    assert_non_null(strstr(req, "\r\nHost: localhost\r\n"));
    assert_non_null(strstr(req, "\r\nContent-Type: application/proto\r\n"));
    assert_non_null(strstr(req, "\r\nConnect-Protocol-Version: 1\r\n"));
    const char *t = strstr(req, "\r\nConnect-Timeout-Ms: ");
    assert_non_null(t);
    unsigned long ms = strtoul(t + 22, NULL, 10);
    assert_true(ms > 4000 && ms <= 5000);
    /* The body is the packed request: field 1 (vm_id) = "vm-1". */
    const char *body = strstr(req, "\r\n\r\n") + 4;
    assert_memory_equal(body, "\x0a\x04vm-1", 6);
    client_free(c);
    peer_stop(p);
}

static void test_no_deadline_header_without_timeout(void **state)
{
    peer *p = peer_start();
    add_vm_reply(p, "vm-1", "");
    peer_run(p);
    chcp_client *c = client_for(p, 0, NULL);
    chcp_error *err = NULL;
    assert_int_equal(call(c, false, NULL, &err), 0);
    assert_null(strstr((char *)p->last.data, "Connect-Timeout-Ms"));
    client_free(c);
    peer_stop(p);
}

static void test_chunked_and_close_delimited(void **state)
{
    peer *p = peer_start();
    /* GetVmInfoResponse{vm{vm_id:"vm-9"}} = 0a 06 0a 04 'vm-9', in two chunks. */
    add_reply(p,
              "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\n"
              "Transfer-Encoding: chunked\r\n\r\n3\r\n\x0a\x06\x0a\r\n5\r\n\x04vm-9\r\n0\r\n\r\n");
    reply *r = add_reply(p, "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\n"
                            "Connection: close\r\n\r\n\x0a\x06\x0a\x04vm-8");
    r->close_after = true;
    peer_run(p);
    chcp_client *c = client_for(p, 5000, NULL);
    char *id = NULL;
    chcp_error *err = NULL;
    assert_int_equal(call(c, false, &id, &err), 0);
    assert_string_equal(id, "vm-9");
    free(id);
    assert_int_equal(call(c, false, &id, &err), 0);
    assert_string_equal(id, "vm-8");
    free(id);
    client_free(c);
    peer_stop(p);
}

static void test_connect_errors(void **state)
{
    peer *p = peer_start();
    add_reply(p, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 45"
                 "\r\n\r\n{\"code\":\"not_found\",\"message\":\"VM x is gone\"}");
    /* A code this client does not know: inferred from the status. */
    add_reply(p, "HTTP/1.1 503 Unavailable\r\nContent-Type: application/json\r\n"
                 "Content-Length: 19\r\n\r\n{\"code\":\"sleeping\"}");
    add_reply(p, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    add_reply(p, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                 "\r\nbad");
    add_reply(p,
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    add_reply(p, "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Length: 2\r\n"
                 "\r\n\x0a\x09");
    add_reply(p, "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Encoding: gzip\r\n"
                 "Content-Length: 0\r\n\r\n");
    peer_run(p);
    chcp_client *c = client_for(p, 5000, NULL);
    expect_error(c, CHCP_NOT_FOUND, "VM x is gone");
    expect_error(c, CHCP_UNAVAILABLE, "HTTP status 503");
    expect_error(c, CHCP_UNIMPLEMENTED, "is this a chcp endpoint?");
    expect_error(c, CHCP_INTERNAL, "HTTP status 400");
    expect_error(c, CHCP_INTERNAL, "unexpected response content type 'application/json'");
    expect_error(c, CHCP_INTERNAL, "malformed cloudhypervisor.v1.GetVmInfoResponse");
    expect_error(c, CHCP_INTERNAL, "unexpected response content encoding 'gzip'");
    assert_int_equal(p->connections, 1); /* all on one kept-alive connection */
    client_free(c);
    peer_stop(p);
}

static void test_broken_responses(void **state)
{
    peer *p = peer_start();
    reply *r = add_reply(p, "%s", "");
    r->close_after = true; /* closes without a word */
    r = add_reply(p, "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Length: 10"
                     "\r\n\r\n\x0a\x06");
    r->close_after = true;
    add_reply(p, "SSH-2.0-OpenSSH_9.2\r\n");
    peer_run(p);
    chcp_client *c = client_for(p, 5000, NULL);
    expect_error(c, CHCP_UNAVAILABLE, "connection closed before a response");
    expect_error(c, CHCP_UNAVAILABLE, "connection closed in the middle of the response");
    expect_error(c, CHCP_UNAVAILABLE, "malformed HTTP response");
    client_free(c);
    peer_stop(p);
}

static void test_deadline(void **state)
{
    peer *p = peer_start();
    p->replies[p->n_replies++].hang = true;
    peer_run(p);
    chcp_client *c = client_for(p, 300, NULL);
    uint64_t t0 = time_mono_ns();
    expect_error(c, CHCP_DEADLINE_EXCEEDED, "GetVmInfo: timed out");
    uint64_t took_ms = (time_mono_ns() - t0) / 1000000;
    assert_true(took_ms >= 290 && took_ms < 60000); /* gave up, and not before the deadline */
    client_free(c);
    peer_stop(p);
}

static void test_cancel(void **state)
{
    peer *p = peer_start();
    p->replies[p->n_replies++].hang = true;
    peer_run(p);
    volatile sig_atomic_t cancel = 0;
    chcp_client *c = client_for(p, 0, &cancel);
    cancel = 1; /* as the signal handler would */
    expect_error(c, CHCP_CANCELED, "interrupted");
    client_free(c);
    peer_stop(p);
}

static void test_connection_refused_and_missing(void **state)
{
    peer *p = peer_start();
    close(p->listen_fd);
    p->listen_fd = -1;
    chcp_client *c = client_for(p, 1000, NULL);
    expect_error(c, CHCP_UNAVAILABLE, "cannot connect to unix://");
    client_free(c);
    unlink(p->path); /* bound, never listening: refused; now missing */
    c = client_for(p, 1000, NULL);
    expect_error(c, CHCP_UNAVAILABLE, "No such file or directory");
    client_free(c);
    rmdir(p->dir);
    free(p);
}

static void test_reads_reuse_and_retry(void **state)
{
    peer *p = peer_start();
    add_vm_reply(p, "vm-1", "");
    /* The server answers, then drops the idle connection without saying so. */
    reply *r = add_vm_reply(p, "vm-2", "");
    r->close_after = true;
    add_vm_reply(p, "vm-3", "");
    peer_run(p);
    chcp_client *c = client_for(p, 5000, NULL);
    char *id = NULL;
    chcp_error *err = NULL;
    assert_int_equal(call(c, false, &id, &err), 0);
    free(id);
    assert_int_equal(call(c, false, &id, &err), 0);
    assert_string_equal(id, "vm-2");
    free(id);
    assert_int_equal(p->connections, 1); /* reused */
    /* The kept connection is dead: the read is repeated on a new one. */
    assert_int_equal(call(c, false, &id, &err), 0);
    assert_null(err);
    assert_string_equal(id, "vm-3");
    free(id);
    assert_int_equal(p->connections, 2);
    assert_int_equal(p->requests, 3);
    client_free(c);
    peer_stop(p);
}

static void test_mutations_fresh_connection_no_retry(void **state)
{
    peer *p = peer_start();
    add_vm_reply(p, "vm-1", "");
    reply *r = add_reply(p, "%s", ""); /* the server drops the BootVm */
    r->close_after = true;
    peer_run(p);
    chcp_client *c = client_for(p, 5000, NULL);
    chcp_error *err = NULL;
    assert_int_equal(call(c, false, NULL, &err), 0);
    assert_int_equal(call(c, true, NULL, &err), -1);
    assert_int_equal(err->code, CHCP_UNAVAILABLE);
    error_free(err);
    assert_int_equal(p->connections, 2); /* BootVm did not ride the kept connection */
    assert_int_equal(p->requests, 2);    /* and was not sent again */
    client_free(c);
    peer_stop(p);
}

static void test_tls_options_need_https(void **state)
{
    client_options o = {.endpoint = "http://127.0.0.1:1", .tls = {.ca_file = "/dev/null"}};
    chcp_error *err = NULL;
    assert_null(client_new(&o, &err));
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
    err = NULL;
    client_options o2 = {.endpoint = "https://127.0.0.1:1", .tls = {.ca_file = "/nonexistent"}};
    assert_null(client_new(&o2, &err));
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    assert_non_null(strstr(err->message, "/nonexistent"));
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_http_status_codes),
        cmocka_unit_test(test_request_and_success),
        cmocka_unit_test(test_no_deadline_header_without_timeout),
        cmocka_unit_test(test_chunked_and_close_delimited),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_broken_responses),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_connection_refused_and_missing),
        cmocka_unit_test(test_reads_reuse_and_retry),
        cmocka_unit_test(test_mutations_fresh_connection_no_retry),
        cmocka_unit_test(test_tls_options_need_https),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
