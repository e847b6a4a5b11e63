/*
 * stream.c - connecting sockets and moving bytes with a deadline.
 *
 * Sockets are non-blocking and every wait goes through poll() with what is
 * left of the call's deadline, so no peer can make a call hang. While a cancel
 * flag is set up (chcpctl's SIGINT/SIGTERM handler), waits are sliced so a
 * signal that lands just before poll() is still noticed within a fraction of
 * a second.
 */
#include "client/client_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define CANCEL_SLICE_MS 200

int client_wait_fd(int fd, short events, uint64_t deadline_ns, volatile sig_atomic_t *cancel,
                   chcp_error **err)
{
    for (;;) {
        if (cancel && *cancel)
            return error_set(err, CHCP_CANCELED, "interrupted");
        int timeout_ms = -1;
        if (deadline_ns) {
            uint64_t now = time_mono_ns();
            if (now >= deadline_ns)
                return error_set(err, CHCP_DEADLINE_EXCEEDED, "timed out");
            uint64_t left_ms = (deadline_ns - now + 999999) / 1000000;
            timeout_ms = left_ms > INT32_MAX ? INT32_MAX : (int)left_ms;
        }
        if (cancel && (timeout_ms < 0 || timeout_ms > CANCEL_SLICE_MS))
            timeout_ms = CANCEL_SLICE_MS;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, timeout_ms);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return error_set_errno(err, CHCP_INTERNAL, errno, "poll");
    }
}

static int connect_addr(int family, const struct sockaddr *sa, socklen_t len, uint64_t deadline_ns,
                        volatile sig_atomic_t *cancel, int *sys_errno, chcp_error **err)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *sys_errno = errno;
        return -1;
    }
    if (connect(fd, sa, len) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            *sys_errno = errno;
            close(fd);
            return -1;
        }
        if (client_wait_fd(fd, POLLOUT, deadline_ns, cancel, err) < 0) {
            close(fd);
            return -2; /* deadline or cancel: do not try further addresses */
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        if (soerr) {
            *sys_errno = soerr;
            close(fd);
            return -1;
        }
    }
    if (family != AF_UNIX) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

static int fail_connect(const client_endpoint *ep, int sys_errno, chcp_error **err)
{
    chcp_code code =
        (sys_errno == EACCES || sys_errno == EPERM) ? CHCP_PERMISSION_DENIED : CHCP_UNAVAILABLE;
    return error_set_errno(err, code, sys_errno, "cannot connect to %s", ep->display);
}

int client_socket_connect(const client_endpoint *ep, uint64_t deadline_ns,
                          volatile sig_atomic_t *cancel, chcp_error **err)
{
    int sys_errno = 0;
    int fd;
    if (ep->scheme == CLIENT_SCHEME_UNIX) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        memcpy(sun.sun_path, ep->path, strlen(ep->path) + 1); /* length checked at parse */
        fd = connect_addr(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun), deadline_ns, cancel,
                          &sys_errno, err);
        if (fd == -1)
            return fail_connect(ep, sys_errno, err);
        return fd < 0 ? -1 : fd;
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (gai != 0)
        return error_set(err, CHCP_UNAVAILABLE, "cannot connect to %s: cannot resolve %s: %s",
                         ep->display, ep->host,
                         gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = connect_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline_ns, cancel,
                          &sys_errno, err);
        if (fd >= 0 || fd == -2)
            break;
    }
    freeaddrinfo(res);
    if (fd == -1)
        return fail_connect(ep, sys_errno ? sys_errno : ECONNREFUSED, err);
    if (fd == -2) {
        if (*err && (*err)->code == CHCP_DEADLINE_EXCEEDED)
            error_prefix(*err, "connecting to %s", ep->display);
        return -1;
    }
    return fd;
}

/* ---- clear-text stream ------------------------------------------------------ */

static ssize_t plain_read(client_stream *s, void *buf, size_t n, uint64_t deadline_ns,
                          chcp_error **err)
{
    for (;;) {
        ssize_t r = read(s->fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return error_set_errno(err, CHCP_UNAVAILABLE, errno, "reading the response");
        if (client_wait_fd(s->fd, POLLIN, deadline_ns, s->cancel, err) < 0)
            return -1;
    }
}

static int plain_write_all(client_stream *s, const void *buf, size_t n, uint64_t deadline_ns,
                           chcp_error **err)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return error_set_errno(err, CHCP_UNAVAILABLE, errno, "sending the request");
        if (client_wait_fd(s->fd, POLLOUT, deadline_ns, s->cancel, err) < 0)
            return -1;
    }
    return 0;
}

static void plain_free(client_stream *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

static const client_stream_ops plain_ops = {
    .read = plain_read,
    .write_all = plain_write_all,
    .free = plain_free,
};

client_stream *client_plain_stream(int fd, volatile sig_atomic_t *cancel)
{
    client_stream *s = xcalloc(1, sizeof(*s));
    s->ops = &plain_ops;
    s->fd = fd;
    s->cancel = cancel;
    return s;
}

void client_stream_free(client_stream *s)
{
    if (s)
        s->ops->free(s);
}
