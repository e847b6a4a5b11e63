/*
 * qmp.c - a non-blocking QMP client (QEMU Machine Protocol) on a libuv loop.
 *
 * QMP is one JSON object per line both ways. The server greets first
 * ({"QMP": ...}); until the client sends qmp_capabilities every other command
 * fails with CommandNotFound, so that negotiation is done here and commands
 * issued earlier wait for it. Commands carry an integer id and may be
 * pipelined; replies are matched by id because events ({"event": ...}) arrive
 * at any time, even before the reply of the command that caused them.
 *
 * Why a raw socket with uv_poll_t rather than uv_pipe_t: `getfd`/`add-fd`
 * take a descriptor by SCM_RIGHTS along with the command, which uv_write2
 * cannot send.
 *
 * Timeouts: one timer armed at the earliest deadline. A command that times
 * out is answered at once; if part of it is already on the wire it stays
 * queued, abandoned, until the rest is written (a half-written command cannot
 * be taken back). A reply that comes after its command timed out is dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "vmm/qemu/qemu.h"

#define QMP_MAX_FDS 4
#define QMP_NAME_MAX 64

typedef enum qmp_state {
    QMP_GREETING,    /* waiting for {"QMP": ...} */
    QMP_NEGOTIATING, /* qmp_capabilities sent */
    QMP_READY,
    QMP_CLOSED, /* the connection ended; only qmp_client_free is left */
} qmp_state;

typedef struct qmp_cmd {
    struct qmp_cmd *next;
    uint64_t id;
    char name[QMP_NAME_MAX + 1];
    chcp_buf msg;
    size_t sent;
    int fds[QMP_MAX_FDS];
    size_t nfds;
    uint64_t deadline_ns;
    uint64_t timeout_ms;
    bool internal;   /* qmp_capabilities, sent before READY */
    qmp_reply_fn cb; /* NULL once answered (abandoned) */
    void *ud;
} qmp_cmd;

struct qmp_client {
    uv_loop_t *loop;
    int fd;
    uv_poll_t poll;
    uv_timer_t timer;
    int poll_events;
    int handles_open;
    int refs;     /* callbacks in progress */
    bool freeing; /* qmp_client_free was called */
    qmp_state state;
    qmp_callbacks cbs;
    void *ud;
    chcp_buf in;
    qmp_cmd *head, *tail; /* in issue order: unsent, sent and awaiting replies */
    uint64_t next_id;
    uint64_t handshake_deadline_ns;
    json_t *version;
};

static void client_release(qmp_client *q)
{
    if (!q->freeing || q->refs > 0 || q->handles_open > 0)
        return;
    buf_free(&q->in);
    json_decref(q->version);
    close(q->fd);
    free(q);
}

static void handle_closed(uv_handle_t *h)
{
    qmp_client *q = h->data;
    q->handles_open--;
    client_release(q);
}

static void ref(qmp_client *q)
{
    q->refs++;
}

/* Returns true while the client may still be used. Memory is only ever
 * released by the loop entry points (on_poll, on_timer, handle_closed) as
 * their last step, never under a caller that still holds `q`. */
static bool unref(qmp_client *q)
{
    q->refs--;
    return !q->freeing;
}

static void cmd_free(qmp_cmd *c)
{
    for (size_t i = 0; i < c->nfds; i++)
        close(c->fds[i]);
    buf_free(&c->msg);
    free(c);
}

static void unlink_cmd(qmp_client *q, qmp_cmd *c)
{
    qmp_cmd **pp = &q->head, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = c->next;
    if (q->tail == c)
        q->tail = prev;
    c->next = NULL;
}

/* Answer a command (once); the command itself is not touched afterwards. */
static bool answer(qmp_client *q, qmp_cmd *c, const json_t *ret, const chcp_error *err)
{
    qmp_reply_fn cb = c->cb;
    void *ud = c->ud;
    c->cb = NULL;
    if (!cb)
        return true;
    ref(q);
    cb(q, ret, err, ud);
    return unref(q);
}

static void on_poll(uv_poll_t *h, int status, int events);

static void set_poll(qmp_client *q)
{
    if (q->freeing || q->state == QMP_CLOSED)
        return;
    int want = UV_READABLE;
    for (qmp_cmd *c = q->head; c; c = c->next)
        if (c->sent < c->msg.len && (q->state == QMP_READY || c->internal)) {
            want |= UV_WRITABLE;
            break;
        }
    if (want != q->poll_events) {
        q->poll_events = want;
        uv_poll_start(&q->poll, want, on_poll);
    }
}

static void on_timer(uv_timer_t *t);

static void arm_timer(qmp_client *q)
{
    if (q->freeing)
        return;
    uint64_t first = q->state == QMP_READY || q->state == QMP_CLOSED ? 0 : q->handshake_deadline_ns;
    for (qmp_cmd *c = q->head; c; c = c->next)
        if (c->cb && !c->internal && (!first || c->deadline_ns < first))
            first = c->deadline_ns;
    if (!first || q->state == QMP_CLOSED) {
        uv_timer_stop(&q->timer);
        return;
    }
    uint64_t now = time_mono_ns();
    uint64_t ms = first > now ? (first - now + 999999u) / 1000000u : 0;
    uv_timer_start(&q->timer, on_timer, ms, 0);
}

/* The connection is over: answer everything with `code`/`msg`, tell the user
 * once. Returns false when the client went away in a callback. */
static bool connection_ended(qmp_client *q, chcp_code code, const char *msg)
{
    if (q->state == QMP_CLOSED)
        return true;
    bool was_ready = q->state == QMP_READY;
    q->state = QMP_CLOSED;
    uv_poll_stop(&q->poll);
    uv_timer_stop(&q->timer);
    q->poll_events = 0;
    ref(q);
    for (int guard = 0; q->head && guard < 1000000; guard++) {
        qmp_cmd *c = q->head;
        unlink_cmd(q, c);
        chcp_error *err = NULL;
        error_set(&err, code, "%s: %s", c->name, msg);
        if (!c->internal)
            answer(q, c, NULL, err);
        error_free(err);
        cmd_free(c);
    }
    chcp_error *err = NULL;
    error_set(&err, code, "QMP: %s", msg);
    if (!q->freeing) {
        if (was_ready) {
            if (q->cbs.on_closed)
                q->cbs.on_closed(q, err, q->ud);
        } else if (q->cbs.on_ready) {
            q->cbs.on_ready(q, NULL, err, q->ud);
        }
    }
    error_free(err);
    return unref(q);
}

/* ---- sending ----------------------------------------------------------------------- */

static bool send_pending(qmp_client *q)
{
    for (qmp_cmd *c = q->head; c;) {
        if (c->sent == c->msg.len) {
            c = c->next;
            continue;
        }
        if (q->state != QMP_READY && !c->internal)
            break;
        struct iovec iov = {c->msg.data + c->sent, c->msg.len - c->sent};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        union {
            char buf[CMSG_SPACE(sizeof(int) * QMP_MAX_FDS)];
            struct cmsghdr align;
        } u;
        if (c->nfds) {
            memset(&u, 0, sizeof(u));
            mh.msg_control = u.buf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * c->nfds);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * c->nfds);
            memcpy(CMSG_DATA(cm), c->fds, sizeof(int) * c->nfds);
        }
        ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return connection_ended(q, CHCP_UNAVAILABLE, strerror(errno));
        }
        for (size_t i = 0; i < c->nfds; i++)
            close(c->fds[i]);
        c->nfds = 0;
        c->sent += (size_t)n;
        if (c->sent == c->msg.len && !c->cb) { /* timed out while half-sent */
            qmp_cmd *next = c->next;
            unlink_cmd(q, c);
            cmd_free(c);
            c = next;
        }
    }
    set_poll(q);
    return true;
}

static qmp_cmd *cmd_new(qmp_client *q, const char *command, const json_t *args, uint64_t timeout_ms,
                        const int *fds, size_t nfds, chcp_error **err)
{
    qmp_cmd *c = xcalloc(1, sizeof(*c));
    for (size_t i = 0; i < nfds; i++) {
        int d = fds[i] < 0 ? -1 : fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (d < 0) {
            error_set_errno(err, CHCP_INVALID_ARGUMENT, fds[i] < 0 ? EBADF : errno,
                            "%s: file descriptor %d", command, fds[i]);
            cmd_free(c);
            return NULL;
        }
        c->fds[c->nfds++] = d;
    }
    snprintf(c->name, sizeof(c->name), "%s", command);
    c->id = ++q->next_id;
    c->timeout_ms = timeout_ms ? timeout_ms : QMP_DEFAULT_TIMEOUT_MS;
    c->deadline_ns = time_mono_ns() + c->timeout_ms * 1000000u;
    json_t *m = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t)c->id);
    if (args)
        json_object_set(m, "arguments", (json_t *)args);
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (!text) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: arguments cannot be encoded", command);
        cmd_free(c);
        return NULL;
    }
    buf_append_str(&c->msg, text);
    buf_append_byte(&c->msg, '\n');
    free(text);
    return c;
}

static void enqueue(qmp_client *q, qmp_cmd *c, bool front)
{
    if (front) {
        c->next = q->head;
        q->head = c;
        if (!q->tail)
            q->tail = c;
    } else {
        if (q->tail)
            q->tail->next = c;
        else
            q->head = c;
        q->tail = c;
    }
    set_poll(q);
    arm_timer(q);
}

static bool command_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QMP_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

int qmp_execute(qmp_client *q, const char *command, const json_t *args, uint64_t timeout_ms,
                const int *fds, size_t nfds, qmp_reply_fn cb, void *ud, chcp_error **err)
{
    if (!command || !command_name_valid(command))
        return error_set(err, CHCP_INVALID_ARGUMENT, "invalid QMP command name");
    if (!cb)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: a reply callback is required", command);
    if (args && !json_is_object(args))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: arguments must be a JSON object",
                         command);
    if (nfds > QMP_MAX_FDS || (nfds && !fds))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: at most %d file descriptors", command,
                         QMP_MAX_FDS);
    if (q->freeing)
        return error_set(err, CHCP_CANCELED, "%s: the QMP client is being released", command);
    if (q->state == QMP_CLOSED)
        return error_set(err, CHCP_UNAVAILABLE, "%s: the QMP connection is closed", command);
    qmp_cmd *c = cmd_new(q, command, args, timeout_ms, fds, nfds, err);
    if (!c)
        return -1;
    c->cb = cb;
    c->ud = ud;
    enqueue(q, c, false);
    return 0;
}

/* ---- receiving --------------------------------------------------------------------- */

static void capabilities_done(qmp_client *q, const json_t *ret, const chcp_error *err, void *ud)
{
    (void)ret;
    (void)ud;
    if (err) {
        chcp_buf b = CHCP_BUF_INIT;
        buf_printf(&b, "qmp_capabilities refused: %s", err->message);
        char *msg = buf_steal_str(&b);
        connection_ended(
            q, err->code == CHCP_DEADLINE_EXCEEDED ? CHCP_DEADLINE_EXCEEDED : CHCP_UNAVAILABLE,
            msg);
        free(msg);
        return;
    }
    q->state = QMP_READY;
    set_poll(q);
    arm_timer(q);
    if (q->cbs.on_ready)
        q->cbs.on_ready(q, q->version, NULL, q->ud);
}

static bool on_greeting(qmp_client *q, json_t *msg)
{
    json_t *qmp = json_object_get(msg, "QMP");
    if (!json_is_object(qmp))
        return connection_ended(q, CHCP_UNAVAILABLE, "the peer did not greet with QMP");
    q->version = json_incref(json_object_get(qmp, "version"));
    q->state = QMP_NEGOTIATING;
    qmp_cmd *c = cmd_new(q, "qmp_capabilities", NULL, 0, NULL, 0, NULL);
    c->internal = true;
    c->cb = capabilities_done;
    enqueue(q, c, true);
    return true;
}

static chcp_code error_code(const char *cls)
{
    if (strcmp(cls, "CommandNotFound") == 0)
        return CHCP_UNIMPLEMENTED;
    if (strcmp(cls, "DeviceNotFound") == 0)
        return CHCP_NOT_FOUND;
    return CHCP_FAILED_PRECONDITION;
}

static bool on_reply(qmp_client *q, json_t *msg)
{
    json_t *idv = json_object_get(msg, "id");
    if (!json_is_integer(idv))
        return true; /* not one of ours (QEMU answers unparsable input without id) */
    uint64_t id = (uint64_t)json_integer_value(idv);
    qmp_cmd *c = q->head;
    while (c && c->id != id)
        c = c->next;
    if (!c || c->sent < c->msg.len)
        return true; /* timed out earlier, or not ours */
    unlink_cmd(q, c);
    json_t *e = json_object_get(msg, "error");
    bool alive;
    if (e) {
        const char *cls = json_string_value(json_object_get(e, "class"));
        const char *desc = json_string_value(json_object_get(e, "desc"));
        chcp_error *err = NULL;
        error_set(&err, error_code(cls ? cls : ""), "%s: %s: %s", c->name, cls ? cls : "Error",
                  desc ? desc : "(no description)");
        alive = answer(q, c, NULL, err);
        error_free(err);
    } else {
        json_t *ret = json_object_get(msg, "return");
        alive = answer(q, c, ret ? ret : json_null(), NULL);
    }
    cmd_free(c);
    if (alive)
        arm_timer(q);
    return alive;
}

qmp_event_kind qmp_event_kind_from_name(const char *name)
{
    static const struct {
        const char *name;
        qmp_event_kind kind;
    } kinds[] = {
        {"SHUTDOWN", QMP_EVENT_SHUTDOWN},   {"RESET", QMP_EVENT_RESET},
        {"STOP", QMP_EVENT_STOP},           {"RESUME", QMP_EVENT_RESUME},
        {"POWERDOWN", QMP_EVENT_POWERDOWN}, {"GUEST_PANICKED", QMP_EVENT_GUEST_PANICKED},
    };
    for (size_t i = 0; name && i < ARRAY_SIZE(kinds); i++)
        if (strcmp(name, kinds[i].name) == 0)
            return kinds[i].kind;
    return QMP_EVENT_OTHER;
}

static bool on_event(qmp_client *q, json_t *msg)
{
    const char *name = json_string_value(json_object_get(msg, "event"));
    if (!name || !q->cbs.on_event || q->state != QMP_READY)
        return true;
    json_t *data = json_object_get(msg, "data");
    json_t *ts = json_object_get(msg, "timestamp");
    json_int_t secs = json_integer_value(json_object_get(ts, "seconds"));
    json_int_t usecs = json_integer_value(json_object_get(ts, "microseconds"));
    qmp_event ev = {
        .kind = qmp_event_kind_from_name(name),
        .name = name,
        .data = json_is_object(data) ? data : NULL,
        .guest = json_is_true(json_object_get(data, "guest")),
        .reason = json_string_value(json_object_get(data, "reason")),
        .timestamp_us = secs > 0 && usecs >= 0 ? (uint64_t)secs * 1000000u + (uint64_t)usecs : 0,
    };
    ref(q);
    q->cbs.on_event(q, &ev, q->ud);
    return unref(q);
}

/* One complete line. Returns false when the client went away. */
static bool on_line(qmp_client *q, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (!len)
        return true;
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, 0, &jerr);
    if (!json_is_object(msg)) {
        json_decref(msg);
        return connection_ended(q, CHCP_UNAVAILABLE, "malformed QMP message");
    }
    bool alive;
    if (q->state == QMP_GREETING)
        alive = on_greeting(q, msg);
    else if (json_object_get(msg, "event"))
        alive = on_event(q, msg);
    else if (json_object_get(msg, "return") || json_object_get(msg, "error"))
        alive = on_reply(q, msg);
    else
        alive = true; /* something newer than we know: ignore */
    json_decref(msg);
    return alive;
}

static bool read_input(qmp_client *q)
{
    char buf[16384];
    for (int round = 0; round < 64; round++) {
        ssize_t n = recv(q->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n == 0)
            return connection_ended(q, CHCP_UNAVAILABLE, "QEMU closed the connection");
        if (n < 0)
            return connection_ended(q, CHCP_UNAVAILABLE, strerror(errno));
        buf_append(&q->in, buf, (size_t)n);
        size_t start = 0;
        for (size_t i = 0; i < q->in.len; i++) {
            if (q->in.data[i] != '\n')
                continue;
            bool alive = on_line(q, (const char *)q->in.data + start, i - start);
            if (!alive || q->state == QMP_CLOSED)
                return alive;
            start = i + 1;
        }
        buf_consume(&q->in, start);
        if (q->in.len > QMP_MAX_LINE)
            return connection_ended(q, CHCP_UNAVAILABLE, "QMP message too long");
    }
    return true;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    qmp_client *q = h->data;
    if (q->freeing || q->state == QMP_CLOSED)
        return;
    ref(q);
    if (status < 0)
        events |= UV_READABLE; /* recv() reports the error */
    bool alive = true;
    if (events & UV_WRITABLE)
        alive = send_pending(q);
    if (alive && !q->freeing && q->state != QMP_CLOSED && (events & UV_READABLE))
        alive = read_input(q);
    if (alive && !q->freeing && q->state != QMP_CLOSED)
        send_pending(q); /* READY may be new: held commands can go */
    q->refs--;
    client_release(q);
}

static void on_timer(uv_timer_t *t)
{
    qmp_client *q = t->data;
    if (q->freeing || q->state == QMP_CLOSED)
        return;
    uint64_t now = time_mono_ns();
    ref(q);
    if (q->state != QMP_READY && q->handshake_deadline_ns && now >= q->handshake_deadline_ns)
        connection_ended(q, CHCP_DEADLINE_EXCEEDED, "no QMP greeting/negotiation in time");
    for (qmp_cmd *c = q->head; c && !q->freeing && q->state != QMP_CLOSED;) {
        qmp_cmd *next = c->next;
        if (c->cb && c->deadline_ns <= now && !c->internal) {
            /* Half-written commands stay until written (see the header). */
            bool partial = c->sent > 0 && c->sent < c->msg.len;
            if (!partial)
                unlink_cmd(q, c);
            chcp_error *err = NULL;
            error_set(&err, CHCP_DEADLINE_EXCEEDED, "%s: no answer from QEMU within %llu ms",
                      c->name, (unsigned long long)c->timeout_ms);
            answer(q, c, NULL, err);
            error_free(err);
            if (!partial)
                cmd_free(c);
        }
        c = next;
    }
    q->refs--;
    if (!q->freeing)
        arm_timer(q);
    client_release(q);
}

/* ---- life cycle ------------------------------------------------------------------- */

qmp_client *qmp_client_open_fd(uv_loop_t *loop, int fd, const qmp_callbacks *cbs, void *ud,
                               chcp_error **err)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        error_set_errno(err, CHCP_INVALID_ARGUMENT, errno, "QMP socket");
        close(fd);
        return NULL;
    }
    qmp_client *q = xcalloc(1, sizeof(*q));
    q->loop = loop;
    q->fd = fd;
    if (cbs)
        q->cbs = *cbs;
    q->ud = ud;
    q->state = QMP_GREETING;
    q->handshake_deadline_ns = time_mono_ns() + QMP_DEFAULT_TIMEOUT_MS * 1000000ull;
    if (uv_poll_init(loop, &q->poll, fd) < 0) {
        error_set(err, CHCP_INTERNAL, "uv_poll_init failed on the QMP socket");
        close(fd);
        free(q);
        return NULL;
    }
    q->poll.data = q;
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
    q->handles_open = 2;
    q->poll_events = UV_READABLE;
    uv_poll_start(&q->poll, UV_READABLE, on_poll);
    arm_timer(q);
    return q;
}

qmp_client *qmp_client_connect(uv_loop_t *loop, const char *path, const qmp_callbacks *cbs,
                               void *ud, chcp_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!path || strlen(path) >= sizeof(sa.sun_path)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "QMP socket path missing or too long");
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_set_errno(err, CHCP_UNAVAILABLE, errno, "socket");
        return NULL;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        if (e == EAGAIN)
            error_set(err, CHCP_UNAVAILABLE, "QMP socket %s: backlog full (another client?)", path);
        else
            error_set_errno(err, CHCP_UNAVAILABLE, e, "connecting to QMP socket %s", path);
        return NULL;
    }
    return qmp_client_open_fd(loop, fd, cbs, ud, err);
}

void qmp_client_free(qmp_client *q)
{
    if (!q || q->freeing)
        return;
    ref(q);
    q->freeing = true; /* from here on qmp_execute refuses */
    /* Answer what is pending while the user still knows the client. */
    for (int guard = 0; q->head && guard < 1000000; guard++) {
        qmp_cmd *c = q->head;
        unlink_cmd(q, c);
        chcp_error *err = NULL;
        error_set(&err, CHCP_CANCELED, "%s: the QMP client was released", c->name);
        if (!c->internal)
            answer(q, c, NULL, err);
        error_free(err);
        cmd_free(c);
    }
    uv_close((uv_handle_t *)&q->poll, handle_closed);
    uv_close((uv_handle_t *)&q->timer, handle_closed);
    q->refs--; /* memory goes in handle_closed (or a loop entry point) */
}

bool qmp_client_ready(const qmp_client *q)
{
    return q && q->state == QMP_READY && !q->freeing;
}

void *qmp_client_userdata(const qmp_client *q)
{
    return q ? q->ud : NULL;
}
