/*
 * http.c - the stand-in's API server: micro_http's HttpServer and
 * HttpConnection (firecracker-microvm/micro-http 7975fe0), as Firecracker's
 * API thread ("fc_api") drives it.
 *
 * One thread, one epoll set: the listening socket, at most 10 connections
 * (the 11th gets micro_http's canned 503 "Too many open connections" and is
 * closed) and the kill switch. Each complete request is routed (routes.c),
 * which blocks on the VMM thread, so one slow call stalls every client.
 *
 * micro_http details reproduced because clients trip on them:
 *   - status line without reason phrase ("HTTP/1.1 204 \r\n"); headers
 *     Server: Firecracker API, Connection: keep-alive, then Deprecation when
 *     set, then Content-Type: application/json and Content-Length for every
 *     status but 204 and 100 (Content-Length: 0 when there is no body);
 *   - only GET, PUT, PATCH, DELETE and HTTP/1.0 or 1.1 parse; a request or
 *     header line must fit micro_http's 1 KiB buffer; bodies are read by
 *     Content-Length only (Transfer-Encoding: chunked is a flag, never
 *     decoded), up to the payload limit (51200 bytes unless
 *     --http-api-max-payload-size says otherwise); Expect: 100-continue gets
 *     a "HTTP/1.1 100 " first. A parse error answers 400
 *     { "error": "<reason>\nAll previous unanswered requests will be dropped." }
 *     and drops what was buffered; the connection stays;
 *   - SCM_RIGHTS fds are accepted and dropped (Firecracker uses none);
 *   - a hang-up or half-close (EPOLLRDHUP) drops the connection and any
 *     response not yet written.
 */
#include "standin.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINE_BUF 1024 /* micro_http's BUFFER_SIZE */

enum pstate { P_LINE, P_HEADERS, P_BODY };

typedef struct conn {
    int fd;
    fsi_buf in, out;
    enum pstate st;
    char method[8];
    char *uri;
    unsigned long content_length;
    bool expect;
} conn;

static conn *conns[FSI_MAX_CONNECTIONS];
static int listen_fd = -1, kill_fd = -1, ep = -1;
static pthread_t thread;
static bool running;

static const char server_full[] = "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: "
                                  "close\r\nContent-Length: 40\r\n\r\n{ \"error\": \"Too many "
                                  "open connections\" }";

static void put_response(conn *c, int status, const char *body, bool deprecation)
{
    fsi_buf_printf(&c->out, "HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n",
                   status);
    if (deprecation)
        fsi_buf_printf(&c->out, "Deprecation: true\r\n");
    if (status != 204 && status != 100) {
        size_t n = body ? strlen(body) : 0;
        fsi_buf_printf(&c->out, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", n);
        if (n)
            fsi_buf_append(&c->out, body, n);
    } else {
        fsi_buf_append(&c->out, "\r\n", 2);
    }
}

/* ConnectionError::ParseError: micro_http's own 400, previous requests dropped. */
static void parse_error(conn *c, const char *msg)
{
    char *body = fsi_xasprintf(
        "{ \"error\": \"%s\nAll previous unanswered requests will be dropped.\" }", msg);
    put_response(c, 400, body, false);
    free(body);
    LOGE(M_API, "API Server error on retrieving incoming request: Parsing error: %s", msg);
    c->in.len = 0;
    c->st = P_LINE;
}

static const char *abs_path(const char *uri)
{
    if (!strncmp(uri, "http://", 7)) {
        const char *slash = strchr(uri + 7, '/');
        return slash ? slash : "";
    }
    return uri[0] == '/' ? uri : "";
}

static void dispatch(conn *c, const char *body, size_t len)
{
    fsi_http_response r = {0};
    fsi_route(c->method, abs_path(c->uri), body, len, body != NULL, &r);
    if (r.status < 0) { /* the VMM thread is gone: no answer, the connection drops */
        shutdown(c->fd, SHUT_RDWR);
        free(r.body);
        return;
    }
    put_response(c, r.status, r.body, r.deprecation);
    free(r.body);
}

static int parse_request_line(conn *c, char *line)
{
    char *sp1 = strchr(line, ' ');
    char *uri = sp1 ? sp1 + 1 : (char *)"";
    char *sp2 = sp1 ? strchr(uri, ' ') : NULL;
    const char *version = sp2 ? sp2 + 1 : "";
    if (sp1)
        *sp1 = '\0';
    if (sp2)
        *sp2 = '\0';
    const char *method = sp1 ? line : "";
    if (strcmp(method, "GET") && strcmp(method, "PUT") && strcmp(method, "PATCH") &&
        strcmp(method, "DELETE"))
        return parse_error(c, "Invalid HTTP Method: Unsupported HTTP method."), -1;
    if (!*uri)
        return parse_error(c, "Invalid URI: Empty URI not allowed."), -1;
    if (strcmp(version, "HTTP/1.0") && strcmp(version, "HTTP/1.1"))
        return parse_error(c, "Invalid HTTP Version: Unsupported HTTP version."), -1;
    snprintf(c->method, sizeof(c->method), "%s", method);
    free(c->uri);
    c->uri = fsi_xstrdup(uri);
    c->content_length = 0;
    c->expect = false;
    return 0;
}

static char *trimmed(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return strndup(s, n);
}

/* Headers::parse_header_line: unknown headers are kept, unsupported values ignored. */
static int parse_header(conn *c, char *line)
{
    char *colon = strchr(line, ':');
    if (!colon) {
        char *m =
            fsi_xasprintf("Invalid header. Reason: Header is incorrectly formatted. Key: %s", line);
        parse_error(c, m);
        free(m);
        return -1;
    }
    *colon = '\0';
    char *name = trimmed(line), *val = trimmed(colon + 1);
    int rc = 0;
    if (!strcasecmp(name, "content-length")) {
        char *end;
        errno = 0;
        const char *digits = val[0] == '+' ? val + 1 : val;
        unsigned long n = strtoul(digits, &end, 10);
        if (!*digits || *end || errno || digits[0] == '-' || n > 0xffffffffUL) {
            char *m = fsi_xasprintf("Invalid header. Reason: Invalid value. Key:%s; Value:%s", line,
                                    colon + 1);
            parse_error(c, m);
            free(m);
            rc = -1;
        } else {
            c->content_length = n;
        }
    } else if (!strcasecmp(name, "expect")) {
        c->expect = !strcmp(val, "100-continue");
    } else if (!strcasecmp(name, "accept-encoding")) {
        char *copy = fsi_xstrdup(val), *save = NULL;
        for (char *e = strtok_r(copy, ",", &save); e && !rc; e = strtok_r(NULL, ",", &save)) {
            char *t = trimmed(e);
            if (!strcmp(t, "identity;q=0") || (!strcmp(t, "*;q=0") && !strstr(val, "identity"))) {
                char *m = fsi_xasprintf(
                    "Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value:%s", e);
                parse_error(c, m);
                free(m);
                rc = -1;
            }
            free(t);
        }
        free(copy);
    }
    free(name);
    free(val);
    return rc;
}

/* One line of the request head, or the body; returns false when more input is needed. */
static bool step(conn *c)
{
    if (c->st == P_BODY) {
        if (c->in.len < c->content_length)
            return false;
        size_t n = c->content_length;
        char *body = strndup(c->in.data, n);
        fsi_buf_consume(&c->in, n);
        c->st = P_LINE;
        dispatch(c, body, n);
        free(body);
        return true;
    }
    char *crlf = c->in.len ? memmem(c->in.data, c->in.len, "\r\n", 2) : NULL;
    if (!crlf || crlf - c->in.data + 2 > LINE_BUF) {
        if (!crlf && c->in.len < LINE_BUF)
            return false;
        if (c->st == P_LINE) {
            parse_error(c, "Invalid request.");
        } else {
            char *m = fsi_xasprintf("Invalid header. Reason: Invalid content length. Header: %.*s",
                                    (int)(c->in.len < LINE_BUF ? c->in.len : LINE_BUF), c->in.data);
            parse_error(c, m);
            free(m);
        }
        return true;
    }
    size_t n = (size_t)(crlf - c->in.data);
    char *line = strndup(c->in.data, n);
    fsi_buf_consume(&c->in, n + 2);
    if (c->st == P_LINE) {
        if (parse_request_line(c, line) == 0)
            c->st = P_HEADERS;
    } else if (n) {
        parse_header(c, line);
    } else if (c->content_length == 0) {
        c->st = P_LINE;
        dispatch(c, NULL, 0);
    } else if (c->content_length > g_opts.payload_limit) {
        char *m = fsi_xasprintf("Request payload with size %lu is larger than the limit of %zu "
                                "allowed by server.",
                                c->content_length, g_opts.payload_limit);
        parse_error(c, m);
        free(m);
    } else {
        if (c->expect)
            put_response(c, 100, NULL, false);
        c->st = P_BODY;
    }
    free(line);
    return true;
}

static void conn_free(conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    fsi_buf_free(&c->in);
    fsi_buf_free(&c->out);
    free(c->uri);
    free(c);
}

static int conn_read(conn *c)
{
    char data[65536];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * FSI_SCM_MAX_FD)];
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
        for (int i = 0; i < cnt; i++)
            close(((int *)CMSG_DATA(cm))[i]);
    }
    if (n == 0)
        return -1;
    fsi_buf_append(&c->in, data, (size_t)n);
    for (int guard = 0; guard < 100000 && step(c); guard++)
        ;
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
        fsi_buf_consume(&c->out, (size_t)n);
    }
    return 0;
}

static void watch(conn *c)
{
    struct epoll_event ev = {.events = EPOLLRDHUP | (c->out.len ? EPOLLOUT : EPOLLIN),
                             .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void accept_conn(void)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    for (int i = 0; i < FSI_MAX_CONNECTIONS; i++) {
        if (conns[i])
            continue;
        conn *c = fsi_xcalloc(1, sizeof(*c));
        c->fd = fd;
        conns[i] = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        return;
    }
    ssize_t n = send(fd, server_full, sizeof(server_full) - 1, MSG_NOSIGNAL);
    (void)n;
    close(fd);
    LOGE(M_API, "API Server error on retrieving incoming request: Server is full.");
}

static void drop(conn *c)
{
    for (int i = 0; i < FSI_MAX_CONNECTIONS; i++)
        if (conns[i] == c)
            conns[i] = NULL;
    conn_free(c);
}

/* ServerError::ShutdownEvent: flush_outgoing_writes(), then the thread ends. */
static void flush_all(void)
{
    int64_t deadline = fsi_now_ns() + 1000000000;
    for (int i = 0; i < FSI_MAX_CONNECTIONS; i++) {
        conn *c = conns[i];
        while (c && c->out.len && fsi_now_ns() < deadline && conn_write(c) == 0)
            if (c->out.len)
                fsi_sleep_ms(5);
        if (c)
            drop(c);
    }
}

static void *api_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "fc_api");
    fsi_log_set_thread("fc_api");
    LOGI(M_API, "API server started.");
    for (;;) {
        struct epoll_event evs[FSI_MAX_CONNECTIONS + 2];
        int n = epoll_wait(ep, evs, FSI_MAX_CONNECTIONS + 2, -1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &kill_fd) {
                flush_all();
                return NULL;
            }
            if (evs[i].data.ptr == &listen_fd) {
                accept_conn();
                continue;
            }
            conn *c = evs[i].data.ptr;
            uint32_t re = evs[i].events;
            int bad = 0;
            if (re & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))
                bad = 1; /* micro_http: clear the write buffer, close */
            else if (re & EPOLLIN)
                bad = conn_read(c) < 0;
            if (!bad && c->out.len)
                bad = conn_write(c) < 0;
            if (bad)
                drop(c);
            else
                watch(c);
        }
    }
    return NULL;
}

int fsi_http_start(int fd)
{
    listen_fd = fd;
    kill_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (kill_fd < 0 || ep < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev);
    ev.data.ptr = &kill_fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, kill_fd, &ev);
    if (pthread_create(&thread, NULL, api_main, NULL) != 0)
        return -1;
    running = true;
    return 0;
}

void fsi_http_stop(void)
{
    if (!running)
        return;
    uint64_t one = 1;
    ssize_t n = write(kill_fd, &one, sizeof(one));
    (void)n;
    pthread_join(thread, NULL);
    running = false;
    close(kill_fd);
    close(ep);
    close(listen_fd);
}
