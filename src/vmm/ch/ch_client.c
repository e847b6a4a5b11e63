/*
 * ch_client.c - a non-blocking HTTP/1.1 client for Cloud Hypervisor's REST
 * API on a Unix socket.
 *
 * Why hand-rolled on a raw socket + uv_poll_t instead of uv_pipe_t: requests
 * such as vm.add-net must carry TAP file descriptors with SCM_RIGHTS on their
 * first sendmsg, and uv_write2 can only send libuv handles.
 *
 * CH's server (micro_http) is strictly serialised, so one keep-alive
 * connection with an in-order queue per VMM is all we need: the head call is
 * sent, its answer parsed with http-parser (response mode: no reason phrase,
 * 204 without Content-Length, 1xx skipped), then the next call goes. Every
 * call has a timeout; after a timeout or any protocol trouble the connection
 * is discarded (its state is unknown) and the next call reconnects.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>

#include "vmm/ch/ch_priv.h"

/* CH reads request bodies by Content-Length up to 4 MiB. */
#define CH_MAX_REQUEST_BODY (4u << 20)

static const char *const get_endpoints[] = {"vmm.ping", "vm.info", "vm.counters"};

static bool endpoint_valid(const char *e)
{
    size_t n = strlen(e);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = e[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

void ch_call_free(ch_call *call)
{
    if (!call)
        return;
    for (size_t i = 0; i < call->nfds; i++)
        close(call->fds[i]);
    buf_free(&call->req);
    free(call->endpoint);
    free(call);
}

ch_call *ch_call_new(const char *endpoint, const char *json_body, const int *fds, size_t nfds,
                     uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err)
{
    if (!endpoint || !endpoint_valid(endpoint)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "invalid CH API endpoint name");
        return NULL;
    }
    if (!cb) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: a completion callback is required", endpoint);
        return NULL;
    }
    if (nfds > CH_MAX_FDS || (nfds && !fds)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: at most %d file descriptors", endpoint,
                  CH_MAX_FDS);
        return NULL;
    }
    size_t body_len = json_body ? strlen(json_body) : 0;
    if (body_len > CH_MAX_REQUEST_BODY) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: request body of %zu bytes exceeds %u", endpoint,
                  body_len, CH_MAX_REQUEST_BODY);
        return NULL;
    }
    ch_call *call = xcalloc(1, sizeof(*call));
    for (size_t i = 0; i < nfds; i++) {
        int d = fds[i] < 0 ? -1 : fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (d < 0) {
            error_set_errno(err, CHCP_INVALID_ARGUMENT, fds[i] < 0 ? EBADF : errno,
                            "%s: file descriptor %d", endpoint, fds[i]);
            ch_call_free(call);
            return NULL;
        }
        call->fds[call->nfds++] = d;
    }
    const char *method = "PUT";
    for (size_t i = 0; i < ARRAY_SIZE(get_endpoints); i++)
        if (strcmp(endpoint, get_endpoints[i]) == 0)
            method = "GET";
    call->endpoint = xstrdup(endpoint);
    call->is_vmm_shutdown = strcmp(endpoint, "vmm.shutdown") == 0;
    call->timeout_ms = timeout_ms ? timeout_ms : CH_DEFAULT_TIMEOUT_MS;
    call->cb = cb;
    call->ud = ud;
    buf_printf(&call->req, "%s /api/v1/%s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n", method,
               endpoint);
    if (json_body)
        buf_append_str(&call->req, "Content-Type: application/json\r\n");
    buf_printf(&call->req, "Content-Length: %zu\r\n\r\n", body_len);
    if (body_len)
        buf_append(&call->req, json_body, body_len);
    return call;
}

/* ---- connection ----------------------------------------------------------------- */

static void conn_closed(uv_handle_t *h)
{
    ch_conn *c = h->data;
    ch_vmm *vmm = c->vmm;
    close(c->fd);
    free(c);
    ch_vmm_handle_done(vmm);
}

static void conn_discard(ch_vmm *vmm)
{
    ch_conn *c = vmm->client.conn;
    if (!c)
        return;
    vmm->client.conn = NULL;
    uv_close((uv_handle_t *)&c->poll, conn_closed);
}

static void on_poll(uv_poll_t *h, int status, int events);
static void client_timer_cb(uv_timer_t *t);
static bool on_conn_lost(ch_vmm *vmm, int errno_value);
static bool conn_lost_errno(int e);

static void conn_set_events(ch_conn *c, int events)
{
    if (c->events == events)
        return;
    c->events = events;
    if (events)
        uv_poll_start(&c->poll, events, on_poll);
    else
        uv_poll_stop(&c->poll);
}

static int conn_open(ch_vmm *vmm, chcp_error **err)
{
    const char *path = vmm->client.path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return error_set(err, CHCP_INVALID_ARGUMENT, "API socket path too long: %s", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        if (e == EAGAIN)
            return error_set(err, CHCP_UNAVAILABLE, "VMM API socket %s: backlog full", path);
        return error_set_errno(err, CHCP_UNAVAILABLE, e, "connecting to VMM API socket %s", path);
    }
    ch_conn *c = xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->vmm = vmm;
    if (uv_poll_init(vmm->loop, &c->poll, fd) < 0) {
        close(fd);
        free(c);
        return error_set(err, CHCP_INTERNAL, "uv_poll_init failed");
    }
    c->poll.data = c;
    vmm->handles_open++;
    vmm->client.conn = c;
    return 0;
}

/* ---- completion ------------------------------------------------------------------- */

/* Detach the head call and report its outcome. Returns false when the vmm was
 * closed by the callback (then nothing of it may be touched). */
static bool finish_head(ch_vmm *vmm, const ch_response *resp, const chcp_error *err)
{
    ch_client *cl = &vmm->client;
    ch_call *call = cl->head;
    cl->active = false;
    uv_timer_stop(&cl->timer);
    cl->head = call->next;
    if (!cl->head)
        cl->tail = NULL;
    ch_vmm_ref(vmm);
    call->cb(vmm, resp, err, call->ud);
    ch_call_free(call);
    return ch_vmm_unref(vmm);
}

static bool fail_head(ch_vmm *vmm, chcp_code code, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool fail_head(ch_vmm *vmm, chcp_code code, int errno_value, const char *fmt, ...)
{
    chcp_buf b = CHCP_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    chcp_error *err = NULL;
    if (errno_value)
        error_set_errno(&err, code, errno_value, "%.*s", (int)b.len, (char *)b.data);
    else
        error_set(&err, code, "%.*s", (int)b.len, (char *)b.data);
    buf_free(&b);
    conn_discard(vmm);
    bool alive = finish_head(vmm, NULL, err);
    error_free(err);
    return alive;
}

static void client_kick(ch_vmm *vmm);

static void finish_response(ch_vmm *vmm, bool extra_bytes)
{
    ch_client *cl = &vmm->client;
    int status = cl->parser.status_code;
    /* Reuse only a connection in a known state: the whole request went out
     * (an early error answer may come while a big body is still being sent),
     * nothing beyond the answer arrived, and the server keeps it open. */
    if (extra_bytes || !http_should_keep_alive(&cl->parser) || cl->head->sent < cl->head->req.len)
        conn_discard(vmm);
    buf_append_byte(&cl->body, 0);
    cl->body.len--;
    ch_response r = {
        .status = status, .body = (const char *)cl->body.data, .body_len = cl->body.len};
    chcp_error *err = NULL;
    if (status < 200 || status > 299) {
        char *chain = ch_error_chain(status, r.body, r.body_len);
        error_set(&err, CHCP_FAILED_PRECONDITION, "%s", chain);
        free(chain);
    }
    bool alive = finish_head(vmm, &r, err);
    error_free(err);
    if (alive) {
        buf_reset(&cl->body);
        client_kick(vmm);
    }
}

/* ---- http-parser callbacks ------------------------------------------------------------ */

static int on_body(http_parser *p, const char *at, size_t len)
{
    ch_vmm *vmm = p->data;
    if (vmm->client.body.len + len > CH_MAX_RESPONSE_BODY)
        return 1;
    buf_append(&vmm->client.body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    ch_vmm *vmm = p->data;
    if (p->status_code < 200) { /* 100 Continue & co: the real answer follows */
        buf_reset(&vmm->client.body);
        return 0;
    }
    vmm->client.complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- I/O ----------------------------------------------------------------------------- */

/* Send as much of the head call as the socket takes. Returns false if the vmm
 * went away in a callback. */
static bool conn_send(ch_vmm *vmm)
{
    ch_client *cl = &vmm->client;
    ch_call *call = cl->head;
    ch_conn *c = cl->conn;
    for (int guard = 0; call->sent < call->req.len && guard < 4096; guard++) {
        struct iovec iov = {call->req.data + call->sent, call->req.len - call->sent};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        union {
            char buf[CMSG_SPACE(sizeof(int) * CH_MAX_FDS)];
            struct cmsghdr align;
        } u;
        if (call->nfds) {
            memset(&u, 0, sizeof(u));
            mh.msg_control = u.buf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * call->nfds);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * call->nfds);
            memcpy(CMSG_DATA(cm), call->fds, sizeof(int) * call->nfds);
        }
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_set_events(c, UV_READABLE | UV_WRITABLE);
                return true;
            }
            if (conn_lost_errno(errno))
                return on_conn_lost(vmm, errno);
            return fail_head(vmm, CHCP_UNAVAILABLE, errno, "%s: sending to the VMM",
                             call->endpoint);
        }
        /* The descriptors are in flight now; the kernel holds its own refs. */
        for (size_t i = 0; i < call->nfds; i++)
            close(call->fds[i]);
        call->nfds = 0;
        call->sent += (size_t)n;
    }
    conn_set_events(c, UV_READABLE);
    return true;
}

/* The connection ended (EOF, reset, broken pipe) while the head call was
 * out. Returns false when the vmm went away in a callback. */
static bool on_conn_lost(ch_vmm *vmm, int errno_value)
{
    ch_client *cl = &vmm->client;
    ch_call *call = cl->head;
    if (!errno_value) {
        http_parser_execute(&cl->parser, &parser_settings, NULL, 0);
        if (cl->complete) {
            finish_response(vmm, false);
            return !vmm->closing;
        }
    }
    conn_discard(vmm);
    if (call->is_vmm_shutdown && call->sent == call->req.len) {
        /* CH answers 200 and exits; the answer may be lost to the exit. */
        ch_response r = {.status = 200, .body = "", .body_len = 0};
        return finish_head(vmm, &r, NULL);
    }
    if (vmm->mode != CH_MODE_ATTACHED && vmm->alive) {
        /* Most likely the VMM is exiting: give the exit a moment to be seen so
         * the error can name the reason (see client_timer_cb). */
        call->eof = true;
        uv_timer_start(&cl->timer, client_timer_cb, CH_EOF_GRACE_MS, 0);
        ch_vmm_ref(vmm);
        ch_vmm_check_exit(vmm);
        return ch_vmm_unref(vmm);
    }
    return fail_head(vmm, CHCP_UNAVAILABLE, errno_value,
                     "%s: the VMM closed the connection before answering", call->endpoint);
}

static bool conn_lost_errno(int e)
{
    return e == ECONNRESET || e == EPIPE || e == ENOTCONN;
}

static void conn_readable(ch_vmm *vmm)
{
    ch_client *cl = &vmm->client;
    char buf[16384];
    for (int i = 0; i < 256 && cl->conn; i++) {
        ssize_t n = recv(cl->conn->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (!cl->active || !cl->head || cl->head->eof) {
            /* EOF or stray bytes on an idle connection: it is of no use. */
            conn_discard(vmm);
            return;
        }
        if (n == 0 || (n < 0 && conn_lost_errno(errno))) {
            on_conn_lost(vmm, n < 0 ? errno : 0);
            return;
        }
        if (n < 0) {
            fail_head(vmm, CHCP_UNAVAILABLE, errno, "%s: receiving from the VMM",
                      cl->head->endpoint);
            return;
        }
        size_t used = http_parser_execute(&cl->parser, &parser_settings, buf, (size_t)n);
        if (cl->complete) {
            finish_response(vmm, used < (size_t)n);
            return;
        }
        enum http_errno he = HTTP_PARSER_ERRNO(&cl->parser);
        if (he != HPE_OK) {
            fail_head(vmm, CHCP_UNAVAILABLE, 0, "%s: malformed answer from the VMM: %s",
                      cl->head->endpoint, http_errno_description(he));
            return;
        }
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    ch_conn *c = h->data;
    ch_vmm *vmm = c->vmm;
    if (vmm->client.conn != c)
        return;
    ch_vmm_ref(vmm);
    if (status < 0)
        events |= UV_READABLE; /* let recv() report the error */
    if ((events & UV_WRITABLE) && vmm->client.active &&
        vmm->client.head->sent < vmm->client.head->req.len)
        conn_send(vmm);
    if ((events & UV_READABLE) && vmm->client.conn == c && !vmm->closing)
        conn_readable(vmm);
    /* Whatever finished above, start the next call. */
    if (!vmm->closing)
        client_kick(vmm);
    ch_vmm_unref(vmm);
}

static void client_timer_cb(uv_timer_t *t)
{
    ch_vmm *vmm = t->data;
    ch_client *cl = &vmm->client;
    if (!cl->active || !cl->head) {
        client_kick(vmm);
        return;
    }
    ch_call *call = cl->head;
    bool alive;
    if (call->eof)
        alive = fail_head(vmm, CHCP_UNAVAILABLE, 0,
                          "%s: the VMM closed the connection before answering", call->endpoint);
    else
        alive =
            fail_head(vmm, CHCP_DEADLINE_EXCEEDED, 0, "%s: no answer from the VMM within %llu ms",
                      call->endpoint, (unsigned long long)call->timeout_ms);
    if (alive)
        client_kick(vmm);
}

/* Start the head call if none is in flight. Never called from inside
 * ch_vmm_call (see ch_client_enqueue), so callbacks run from the loop only. */
static void client_kick(ch_vmm *vmm)
{
    ch_client *cl = &vmm->client;
    for (int guard = 0; guard < 10000 && !cl->active && cl->head && !vmm->closing; guard++) {
        ch_call *call = cl->head;
        chcp_error *err = NULL;
        if (!cl->conn && conn_open(vmm, &err) < 0) {
            error_prefix(err, "%s", call->endpoint);
            bool alive = finish_head(vmm, NULL, err);
            error_free(err);
            if (!alive)
                return;
            continue;
        }
        cl->active = true;
        cl->complete = false;
        buf_reset(&cl->body);
        http_parser_init(&cl->parser, HTTP_RESPONSE);
        cl->parser.data = vmm;
        uv_timer_start(&cl->timer, client_timer_cb, call->timeout_ms, 0);
        if (!conn_send(vmm))
            return;
    }
}

/* ---- public-ish entry points ------------------------------------------------------ */

void ch_client_init(ch_vmm *vmm, const char *path)
{
    ch_client *cl = &vmm->client;
    cl->path = xstrdup(path);
    uv_timer_init(vmm->loop, &cl->timer);
    cl->timer.data = vmm;
    vmm->handles_open++;
}

int ch_client_enqueue(ch_vmm *vmm, ch_call *call, chcp_error **err)
{
    ch_client *cl = &vmm->client;
    if (vmm->closing) {
        ch_call_free(call);
        return error_set(err, CHCP_CANCELED, "the VMM handle is being released");
    }
    if (vmm->mode != CH_MODE_ATTACHED && vmm->exit_seen) {
        char *ep = xstrdup(call->endpoint);
        ch_call_free(call);
        error_set(err, CHCP_UNAVAILABLE, "%s: the VMM process has exited", ep);
        free(ep);
        return -1;
    }
    if (cl->tail)
        cl->tail->next = call;
    else
        cl->head = call;
    cl->tail = call;
    /* Start on the next loop pass, never synchronously. */
    if (!cl->active)
        uv_timer_start(&cl->timer, client_timer_cb, 0, 0);
    return 0;
}

void ch_client_fail_all(ch_vmm *vmm, chcp_code code, const char *msg)
{
    ch_client *cl = &vmm->client;
    conn_discard(vmm);
    if (!uv_is_closing((uv_handle_t *)&cl->timer))
        uv_timer_stop(&cl->timer);
    cl->active = false;
    ch_vmm_ref(vmm);
    for (int guard = 0; cl->head && guard < 1000000; guard++) {
        ch_call *call = cl->head;
        cl->head = call->next;
        if (!cl->head)
            cl->tail = NULL;
        chcp_error *err = NULL;
        error_set(&err, code, "%s: %s", call->endpoint, msg);
        call->cb(vmm, NULL, err, call->ud);
        error_free(err);
        ch_call_free(call);
    }
    ch_vmm_unref(vmm);
}

void ch_client_close(ch_vmm *vmm)
{
    conn_discard(vmm);
    if (!uv_is_closing((uv_handle_t *)&vmm->client.timer))
        uv_close((uv_handle_t *)&vmm->client.timer, ch_vmm_handle_closed);
}
