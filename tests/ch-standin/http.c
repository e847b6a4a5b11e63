/*
 * http.c - the stand-in's API server: micro_http's wire behaviour plus CH's
 * routing layer (vmm/src/api/http/{mod,http_endpoint}.rs).
 *
 * One thread serves every connection (at most 10; the 11th gets micro_http's
 * 503 "Too many open connections" and is closed) and blocks on the VMM thread
 * for each API call, so one slow call stalls every client, as in CH.
 *
 * micro_http details reproduced because clients trip on them:
 *   - status line without reason phrase ("HTTP/1.1 204 \r\n");
 *   - 204 and 100 carry neither Content-Type nor Content-Length, everything
 *     else carries both;
 *   - only GET/PUT/PATCH/DELETE parse; other methods, bad versions, malformed
 *     headers get micro_http's own 400 `{ "error": "..." }` (text/plain,
 *     "Server: Firecracker API");
 *   - bodies are read by Content-Length only (max 4 MiB); Expect:
 *     100-continue is answered with a 100; SCM_RIGHTS fds received while a
 *     request is read are attached to it;
 *   - a hang-up (including a half-close, EPOLLRDHUP) drops the connection and
 *     any response not yet written.
 */
#include "standin.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum route_kind {
    R_PING,
    R_VMM_SHUTDOWN,
    R_INFO,
    R_CREATE,
    R_GET_ACTION, /* vm_action_get_handler! */
    R_PUT_NOBODY, /* vm_action_put_handler! */
    R_PUT_BODY,   /* vm_action_put_handler_body! and the custom put handlers */
};

static const struct route {
    const char *path;
    const char *action;
    enum route_kind kind;
    const char *schema; /* serde type of the body, for R_PUT_BODY */
} routes[] = {
    {"/api/v1/vmm.ping", "vmm.ping", R_PING, NULL},
    {"/api/v1/vmm.shutdown", "vmm.shutdown", R_VMM_SHUTDOWN, NULL},
    {"/api/v1/vm.info", "vm.info", R_INFO, NULL},
    {"/api/v1/vm.create", "vm.create", R_CREATE, "VmConfig"},
    {"/api/v1/vm.counters", "vm.counters", R_GET_ACTION, NULL},
    {"/api/v1/vm.boot", "vm.boot", R_PUT_NOBODY, NULL},
    {"/api/v1/vm.delete", "vm.delete", R_PUT_NOBODY, NULL},
    {"/api/v1/vm.shutdown", "vm.shutdown", R_PUT_NOBODY, NULL},
    {"/api/v1/vm.reboot", "vm.reboot", R_PUT_NOBODY, NULL},
    {"/api/v1/vm.pause", "vm.pause", R_PUT_NOBODY, NULL},
    {"/api/v1/vm.resume", "vm.resume", R_PUT_NOBODY, NULL},
    {"/api/v1/vm.power-button", "vm.power-button", R_PUT_NOBODY, NULL},
    {"/api/v1/vm.nmi", "vm.nmi", R_PUT_NOBODY, NULL},
    {"/api/v1/vm.add-device", "vm.add-device", R_PUT_BODY, "DeviceConfig"},
    {"/api/v1/vm.add-user-device", "vm.add-user-device", R_PUT_BODY, "UserDeviceConfig"},
    {"/api/v1/vm.add-disk", "vm.add-disk", R_PUT_BODY, "DiskConfig"},
    {"/api/v1/vm.add-fs", "vm.add-fs", R_PUT_BODY, "FsConfig"},
    {"/api/v1/vm.add-generic-vhost-user", "vm.add-generic-vhost-user", R_PUT_BODY,
     "GenericVhostUserConfig"},
    {"/api/v1/vm.add-net", "vm.add-net", R_PUT_BODY, "NetConfig"},
    {"/api/v1/vm.add-pmem", "vm.add-pmem", R_PUT_BODY, "PmemConfig"},
    {"/api/v1/vm.add-vdpa", "vm.add-vdpa", R_PUT_BODY, "VdpaConfig"},
    {"/api/v1/vm.add-vsock", "vm.add-vsock", R_PUT_BODY, "VsockConfig"},
    {"/api/v1/vm.remove-device", "vm.remove-device", R_PUT_BODY, "VmRemoveDevice"},
    {"/api/v1/vm.resize", "vm.resize", R_PUT_BODY, "VmResize"},
    {"/api/v1/vm.resize-disk", "vm.resize-disk", R_PUT_BODY, "VmResizeDisk"},
    {"/api/v1/vm.resize-zone", "vm.resize-zone", R_PUT_BODY, "VmResizeZone"},
    {"/api/v1/vm.snapshot", "vm.snapshot", R_PUT_BODY, "VmSnapshotConfig"},
    {"/api/v1/vm.restore", "vm.restore", R_PUT_BODY, "RestoreConfig"},
    {"/api/v1/vm.send-migration", "vm.send-migration", R_PUT_BODY, "SendMigrationData"},
    {"/api/v1/vm.receive-migration", "vm.receive-migration", R_PUT_BODY, "ReceiveMigrationData"},
};

enum pstate { P_LINE, P_HEADERS, P_BODY };

typedef struct conn {
    int fd;
    si_buf in, out;
    enum pstate st;
    char method[8];
    char *uri;
    unsigned long content_length;
    bool expect;
    int fds[SI_MAX_FDS];
    int nfds;
} conn;

static conn *conns[SI_MAX_CONNECTIONS];
static int listen_fd = -1;
static int kill_fd = -1;
static pthread_t http_thread;
static bool http_running;

static const char server_full[] = "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: "
                                  "close\r\nContent-Length: 40\r\n\r\n{ \"error\": \"Too many "
                                  "open connections\" }";

/* ---- responses ------------------------------------------------------------ */

static void put_response(conn *c, int status, const char *server, const char *ctype,
                         const char *body)
{
    si_buf_printf(&c->out, "HTTP/1.1 %d \r\nServer: %s\r\nConnection: keep-alive\r\n", status,
                  server);
    if (status != 204 && status != 100) {
        size_t n = body ? strlen(body) : 0;
        si_buf_printf(&c->out, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, n);
        si_buf_append(&c->out, "\r\n", 2);
        if (n)
            si_buf_append(&c->out, body, n);
    } else {
        si_buf_append(&c->out, "\r\n", 2);
    }
}

static void ch_response(conn *c, int status, const char *body)
{
    put_response(c, status, "Cloud Hypervisor API", "application/json", body);
}

static void bad_request(conn *c) /* error_response(HttpError::BadRequest) */
{
    ch_response(c, 400, "[\"Bad Request\"]");
}

/* micro_http's own parse-error answer (not CH's): the connection stays open. */
static void parse_error(conn *c, const char *msg)
{
    char *body = si_xasprintf("{ \"error\": \"%s\nAll previous unanswered requests will be "
                              "dropped.\" }",
                              msg);
    put_response(c, 400, "Firecracker API", "text/plain", body);
    free(body);
    LOGI("HTTP parse error: %s", msg);
    c->in.len = 0;
    c->st = P_LINE;
    for (int i = 0; i < c->nfds; i++)
        close(c->fds[i]);
    c->nfds = 0;
}

/* ---- dispatch ------------------------------------------------------------------ */

/* serde_json-like message for a syntax error. */
static char *json_syntax_msg(const json_error_t *e, const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\t' || body[i] == '\r'))
        i++;
    if (i == len)
        return si_xasprintf("EOF while parsing a value at line %d column %zu",
                            e->line > 0 ? e->line : 1, len);
    if (strstr(e->text, "end of file expected"))
        return si_xasprintf("trailing characters at line %d column %d", e->line, e->column);
    if (strstr(e->text, "premature end of input") || strstr(e->text, "unexpected newline"))
        return si_xasprintf("EOF while parsing an object at line %d column %d", e->line, e->column);
    return si_xasprintf("expected value at line %d column %d", e->line, e->column);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static void call_vmm(conn *c, const struct route *r, json_t *body, bool pass_fds)
{
    si_call call = {.action = r->action, .body = body};
    if (pass_fds) {
        call.fds = si_xmalloc(sizeof(int) * (size_t)(c->nfds ? c->nfds : 1));
        memcpy(call.fds, c->fds, sizeof(int) * (size_t)c->nfds);
        call.nfds = c->nfds;
    } else {
        close_fds(c->fds, c->nfds);
    }
    c->nfds = 0;
    si_reply reply = {0};
    si_vmm_call(&call, &reply);
    ch_response(c, reply.status, reply.body);
    free(reply.body);
}

/* Parse a body the way serde would: syntax first, then the schema. Answers
 * the client and returns NULL on failure. */
static json_t *deserialize(conn *c, const char *schema, const char *body, size_t len)
{
    json_error_t e;
    json_t *v = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    char *msg = v ? si_config_check(schema, v) : json_syntax_msg(&e, body, len);
    if (!msg)
        return v;
    char *chain = si_json_chain("Failed to deserialize JSON", msg, NULL);
    ch_response(c, 400, chain);
    free(chain);
    free(msg);
    json_decref(v);
    close_fds(c->fds, c->nfds);
    c->nfds = 0;
    return NULL;
}

static const char *abs_path(const char *uri)
{
    if (!strncmp(uri, "http://", 7)) {
        const char *slash = strchr(uri + 7, '/');
        return slash ? slash : "";
    }
    return uri[0] == '/' ? uri : "";
}

static void dispatch(conn *c, const char *body, size_t blen)
{
    const char *path = abs_path(c->uri);
    const struct route *r = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (!strcmp(routes[i].path, path))
            r = &routes[i];
    bool get = !strcmp(c->method, "GET"), put = !strcmp(c->method, "PUT");
    LOGD("HTTP request %s %s (%zu bytes, %d fds)", c->method, c->uri, blen, c->nfds);
    if (!r) {
        ch_response(c, 404, "[\"Not Found\"]");
        close_fds(c->fds, c->nfds);
        c->nfds = 0;
        return;
    }
    json_t *v = NULL;
    switch (r->kind) {
    case R_PING:
    case R_INFO:
        if (!get)
            goto bad;
        call_vmm(c, r, NULL, false);
        return;
    case R_VMM_SHUTDOWN:
        if (!put)
            goto bad;
        call_vmm(c, r, NULL, false);
        return;
    case R_CREATE:
        if (!put)
            goto bad;
        if (!body) { /* Response::new(BadRequest): no body at all */
            ch_response(c, 400, NULL);
            goto drop;
        }
        if (!(v = deserialize(c, r->schema, body, blen)))
            return;
        call_vmm(c, r, v, false); /* vm.create takes no fds */
        return;
    case R_GET_ACTION:
    case R_PUT_NOBODY:
    case R_PUT_BODY:
        if (!get && !put) { /* EndpointHandler::handle_request: bare 400 */
            ch_response(c, 400, NULL);
            goto drop;
        }
        if ((r->kind == R_GET_ACTION) != get)
            goto bad;
        if (r->kind == R_GET_ACTION) {
            call_vmm(c, r, NULL, false);
            return;
        }
        if (r->kind == R_PUT_NOBODY) {
            if (body)
                goto bad;
            call_vmm(c, r, NULL, false);
            return;
        }
        if (!body)
            goto bad;
        if (!strcmp(r->action, "vm.add-device") && c->nfds > 1)
            goto bad;
        if (!(v = deserialize(c, r->schema, body, blen)))
            return;
        call_vmm(c, r, v,
                 !strcmp(r->action, "vm.add-net") || !strcmp(r->action, "vm.add-device") ||
                     !strcmp(r->action, "vm.restore") ||
                     !strcmp(r->action, "vm.receive-migration"));
        return;
    }
bad:
    bad_request(c);
drop:
    close_fds(c->fds, c->nfds);
    c->nfds = 0;
}

/* ---- request parsing (micro_http connection.rs) ------------------------------------ */

static char *find_crlf(si_buf *b)
{
    return b->len ? memmem(b->data, b->len, "\r\n", 2) : NULL;
}

static int parse_request_line(conn *c, char *line)
{
    if (strlen(line) < 14) /* "GET" SP "HTTP/1.0" CRLF */
        return parse_error(c, "Invalid request."), -1;
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp2)
        return parse_error(c, "Invalid request."), -1;
    *sp1 = *sp2 = '\0';
    if (strcmp(line, "GET") && strcmp(line, "PUT") && strcmp(line, "PATCH") &&
        strcmp(line, "DELETE"))
        return parse_error(c, "Invalid HTTP Method: Unsupported HTTP method."), -1;
    if (!sp1[1])
        return parse_error(c, "Invalid URI: Empty URI not allowed."), -1;
    if (strcmp(sp2 + 1, "HTTP/1.0") && strcmp(sp2 + 1, "HTTP/1.1"))
        return parse_error(c, "Invalid HTTP Version: Unsupported HTTP version."), -1;
    snprintf(c->method, sizeof(c->method), "%s", line);
    free(c->uri);
    c->uri = si_xstrdup(sp1 + 1);
    c->content_length = 0;
    c->expect = false;
    return 0;
}

static int parse_header(conn *c, char *line)
{
    char *colon = strchr(line, ':');
    if (!colon) {
        char *m =
            si_xasprintf("Invalid header. Reason: Header is incorrectly formatted. Key: %s", line);
        parse_error(c, m);
        free(m);
        return -1;
    }
    *colon = '\0';
    char *name = line, *val = colon + 1;
    while (*name == ' ')
        name++;
    size_t nl = strlen(name);
    while (nl && name[nl - 1] == ' ')
        name[--nl] = '\0';
    char *tv = val;
    while (*tv == ' ' || *tv == '\t')
        tv++;
    size_t vl = strlen(tv);
    while (vl && (tv[vl - 1] == ' ' || tv[vl - 1] == '\t'))
        vl--;
    if (!strcasecmp(name, "content-length")) {
        char buf[32];
        char *end;
        if (vl == 0 || vl >= sizeof(buf))
            goto badlen;
        memcpy(buf, tv, vl);
        buf[vl] = '\0';
        errno = 0;
        unsigned long n = strtoul(buf, &end, 10);
        if (errno || *end || buf[0] == '-' || buf[0] == '+' || n > 0xffffffffUL)
            goto badlen;
        c->content_length = n;
    } else if (!strcasecmp(name, "expect")) {
        if (vl == 12 && !strncmp(tv, "100-continue", 12))
            c->expect = true;
    } else if (!strcasecmp(name, "accept-encoding")) {
        if (strstr(tv, "identity;q=0") || (strstr(tv, "*;q=0") && !strstr(tv, "identity"))) {
            char *m = si_xasprintf("Invalid header. Reason: Invalid value. Key:Accept-Encoding; "
                                   "Value:%.*s",
                                   (int)vl, tv);
            parse_error(c, m);
            free(m);
            return -1;
        }
    }
    return 0;
badlen : {
    char *m = si_xasprintf("Invalid header. Reason: Invalid value. Key:%s; Value:%s", name, val);
    parse_error(c, m);
    free(m);
    return -1;
}
}

/* Consume as many complete requests as the buffer holds. */
static void process_input(conn *c)
{
    for (int guard = 0; guard < 10000; guard++) {
        if (c->st == P_LINE || c->st == P_HEADERS) {
            char *crlf = find_crlf(&c->in);
            if (!crlf) {
                if (c->in.len >= 1024) {
                    parse_error(c, c->st == P_LINE
                                       ? "Invalid request."
                                       : "Invalid header. Reason: Invalid content length. "
                                         "Header: (line too long)");
                    continue;
                }
                return;
            }
            size_t n = (size_t)(crlf - c->in.data);
            if (n + 2 > 1024) { /* micro_http parses lines in a 1 KiB buffer */
                parse_error(c, c->st == P_LINE ? "Invalid request."
                                               : "Invalid header. Reason: Invalid content "
                                                 "length. Header: (line too long)");
                continue;
            }
            char *line = si_xasprintf("%.*s", (int)n, c->in.data);
            si_buf_consume(&c->in, n + 2);
            int rc = 0;
            if (c->st == P_LINE) {
                if ((rc = parse_request_line(c, line)) == 0)
                    c->st = P_HEADERS;
            } else if (n) {
                rc = parse_header(c, line);
            } else if (c->content_length == 0) {
                free(line);
                c->st = P_LINE;
                dispatch(c, NULL, 0);
                continue;
            } else if (c->content_length > SI_PAYLOAD_MAX) {
                char *m = si_xasprintf("Request payload with size %lu is larger than the limit "
                                       "of %u allowed by server.",
                                       c->content_length, SI_PAYLOAD_MAX);
                parse_error(c, m);
                free(m);
            } else {
                if (c->expect)
                    put_response(c, 100, "Firecracker API", "text/plain", NULL);
                c->st = P_BODY;
            }
            free(line);
            (void)rc;
            continue;
        }
        /* P_BODY */
        if (c->in.len < c->content_length)
            return;
        size_t n = c->content_length;
        char *body = si_xmalloc(n + 1);
        memcpy(body, c->in.data, n);
        body[n] = '\0';
        si_buf_consume(&c->in, n);
        c->st = P_LINE;
        dispatch(c, body, n);
        free(body);
    }
}

/* ---- connections ------------------------------------------------------------------- */

static void conn_free(conn *c)
{
    close(c->fd);
    close_fds(c->fds, c->nfds);
    si_buf_free(&c->in);
    si_buf_free(&c->out);
    free(c->uri);
    free(c);
}

/* Returns -1 when the peer is gone. */
static int conn_read(conn *c)
{
    char data[65536];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * SI_MAX_FDS)];
    } cbuf;
    struct iovec iov = {data, sizeof(data)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = cbuf.buf,
                         .msg_controllen = sizeof(cbuf.buf)};
    ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        int cnt = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *fds = (int *)CMSG_DATA(cm);
        for (int i = 0; i < cnt; i++) {
            if (c->nfds < SI_MAX_FDS)
                c->fds[c->nfds++] = fds[i];
            else
                close(fds[i]);
        }
    }
    if (n == 0)
        return -1;
    si_buf_append(&c->in, data, (size_t)n);
    process_input(c);
    return 0;
}

static int conn_write(conn *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0)
            return -1;
        si_buf_consume(&c->out, (size_t)n);
    }
    return 0;
}

static void accept_conn(void)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    for (int i = 0; i < SI_MAX_CONNECTIONS; i++) {
        if (!conns[i]) {
            conn *c = calloc(1, sizeof(*c));
            if (!c)
                abort();
            c->fd = fd;
            conns[i] = c;
            return;
        }
    }
    /* ServerFull: micro_http writes its canned 503 and drops the stream. */
    ssize_t n = send(fd, server_full, sizeof(server_full) - 1, MSG_NOSIGNAL);
    (void)n;
    close(fd);
    LOGW("HTTP server full: rejected a connection");
}

static void flush_and_close_all(void)
{
    int64_t deadline = si_now_ns() + 1000000000;
    for (int i = 0; i < SI_MAX_CONNECTIONS; i++) {
        conn *c = conns[i];
        if (!c)
            continue;
        while (c->out.len && si_now_ns() < deadline) {
            if (conn_write(c) < 0)
                break;
            if (c->out.len) {
                struct pollfd p = {c->fd, POLLOUT, 0};
                poll(&p, 1, 50);
            }
        }
        conn_free(c);
        conns[i] = NULL;
    }
}

static void *http_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "http-server");
    for (;;) {
        struct pollfd pfds[SI_MAX_CONNECTIONS + 2];
        int idx[SI_MAX_CONNECTIONS + 2];
        int n = 0;
        pfds[n++] = (struct pollfd){kill_fd, POLLIN, 0};
        pfds[n++] = (struct pollfd){listen_fd, POLLIN, 0};
        for (int i = 0; i < SI_MAX_CONNECTIONS; i++) {
            if (!conns[i])
                continue;
            short ev = POLLIN | POLLRDHUP;
            if (conns[i]->out.len)
                ev = POLLOUT | POLLRDHUP;
            idx[n] = i;
            pfds[n++] = (struct pollfd){conns[i]->fd, ev, 0};
        }
        if (poll(pfds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            LOGE("HTTP poll failed: %s", strerror(errno));
            break;
        }
        if (pfds[0].revents)
            break; /* kill switch: graceful shutdown */
        if (pfds[1].revents & POLLIN)
            accept_conn();
        for (int k = 2; k < n; k++) {
            conn *c = conns[idx[k]];
            short re = pfds[k].revents;
            int drop = 0;
            if (re & (POLLERR | POLLHUP | POLLRDHUP))
                drop = 1; /* micro_http clears the write buffer and closes */
            else if (re & POLLIN)
                drop = conn_read(c) < 0;
            if (!drop && c->out.len && (re & (POLLIN | POLLOUT)))
                drop = conn_write(c) < 0;
            if (drop) {
                conn_free(c);
                conns[idx[k]] = NULL;
            }
        }
    }
    flush_and_close_all();
    return NULL;
}

int si_http_start(int fd)
{
    listen_fd = fd;
    kill_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (kill_fd < 0)
        return -1;
    if (pthread_create(&http_thread, NULL, http_main, NULL) != 0)
        return -1;
    http_running = true;
    return 0;
}

void si_http_stop(void)
{
    if (!http_running)
        return;
    uint64_t one = 1;
    ssize_t n = write(kill_fd, &one, sizeof(one));
    (void)n;
    pthread_join(http_thread, NULL);
    http_running = false;
    close(kill_fd);
    if (listen_fd >= 0)
        close(listen_fd);
}
