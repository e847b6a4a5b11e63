/*
 * listener.c - the transport object: TCP and Unix-socket listeners, accept
 * (admission: peers.c), the once-per-loop-pass flush hooks, graceful stop
 * and teardown.
 *
 * Everything runs on one libuv loop. Connections themselves live in conn.c;
 * this file only creates them and keeps the global counters.
 */
#include "transport/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

void transport_limits_default(transport_limits *l)
{
    memset(l, 0, sizeof(*l));
    l->max_body_bytes = 4u << 20;
    l->max_header_bytes = 64u << 10;
    l->idle_timeout_ms = 60000;
    l->read_timeout_ms = 30000;
    l->header_timeout_ms = 10000;
    l->write_timeout_ms = 30000;
    l->max_connection_age_ms = 3600000;
    l->max_connections = 1024;
    l->max_connections_per_peer = 256;
    l->max_unix_connections = 64;
    /* conn_buffer_bytes, total_buffer_bytes: 0 = derived in transport_new */
    l->h2_max_concurrent_streams = 100;
    l->h2_reset_rate_burst = 1000;
    l->h2_reset_rate_per_sec = 33;
    l->h2_max_continuations = 8;
}

/* Limits left 0 take their default. */
static void fill_defaults(transport_limits *l)
{
    transport_limits d;
    transport_limits_default(&d);
#define DEFAULT(f)                                                                                 \
    if (!l->f)                                                                                     \
    l->f = d.f
    DEFAULT(max_body_bytes);
    DEFAULT(max_header_bytes);
    DEFAULT(idle_timeout_ms);
    DEFAULT(read_timeout_ms);
    DEFAULT(header_timeout_ms);
    DEFAULT(write_timeout_ms);
    DEFAULT(max_connection_age_ms);
    DEFAULT(max_connections);
    DEFAULT(max_connections_per_peer);
    DEFAULT(max_unix_connections);
    DEFAULT(h2_max_concurrent_streams);
    DEFAULT(h2_reset_rate_burst);
    DEFAULT(h2_reset_rate_per_sec);
    DEFAULT(h2_max_continuations);
#undef DEFAULT
}

/* Runs before the loop blocks in poll and right after the I/O callbacks:
 * whatever handlers queued during this pass leaves in one write. */
static void on_prepare(uv_prepare_t *h)
{
    transport *t = h->data;
    conn_flush_all(t);
    budget_maybe_trim(t->budget);
}

static void on_check(uv_check_t *h)
{
    conn_flush_all(h->data);
}

transport *transport_new(uv_loop_t *loop, const transport_limits *limits,
                         http_request_fn on_request, http_cancel_fn on_cancel, void *ud)
{
    transport *t = xcalloc(1, sizeof(*t));
    t->loop = loop;
    if (limits)
        t->lim = *limits;
    else
        transport_limits_default(&t->lim);
    transport_limits *l = &t->lim;
    fill_defaults(l);
    /* Budgets that follow the body limit unless set: a connection can take
     * two bodies of the largest size, the daemon four connections' worth. */
    if (!l->conn_buffer_bytes) {
        l->conn_buffer_bytes = (size_t)16 << 20;
        if (l->conn_buffer_bytes < 2 * l->max_body_bytes)
            l->conn_buffer_bytes = 2 * l->max_body_bytes;
    }
    if (!l->total_buffer_bytes) {
        l->total_buffer_bytes = (size_t)64 << 20;
        if (l->total_buffer_bytes < 4 * l->conn_buffer_bytes)
            l->total_buffer_bytes = 4 * l->conn_buffer_bytes;
    }
    t->budget = budget_new(l);
    t->on_request = on_request;
    t->on_cancel = on_cancel;
    t->ud = ud;
    h1_init_settings(&t->h1_settings);
    if (h2_init_callbacks(t) < 0) {
        budget_unref(t->budget);
        free(t);
        return NULL;
    }
    uv_prepare_init(loop, &t->prepare);
    uv_check_init(loop, &t->check);
    t->prepare.data = t->check.data = t;
    uv_prepare_start(&t->prepare, on_prepare);
    uv_check_start(&t->check, on_check);
    uv_idle_init(loop, &t->kick);
    t->kick.data = t;
    /* The hooks alone must not keep the loop alive. */
    uv_unref((uv_handle_t *)&t->prepare);
    uv_unref((uv_handle_t *)&t->check);
    uv_unref((uv_handle_t *)&t->kick);
    t->open_handles = 3;
    return t;
}

static void on_handle_closed(uv_handle_t *h)
{
    transport_handle_closed(h->data);
}

static void on_listener_closed(uv_handle_t *h)
{
    transport *t = h->data;
    free(h);
    transport_handle_closed(t);
}

/* Every connection is accepted (so the backlog drains and the peer is
 * known), then admitted or closed at once (peers.c). */
static void on_connection(uv_stream_t *server, int status)
{
    transport *t = server->data;
    if (status < 0 || t->stopping || t->closing)
        return;
    conn *c = conn_accepted(t, server);
    if (!c)
        return;
    if (!peers_admit(t, c)) {
        t->refused_conns++;
        conn_close(c);
        return;
    }
    conn_start(c);
}

static int resolve_host(const char *host, uint16_t port, struct sockaddr_storage *ss,
                        chcp_error **err)
{
    if (!host || !*host || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return error_set(err, CHCP_INVALID_ARGUMENT, "listen address '%s' is not an IP literal", host);
}

int transport_listen_tcp(transport *t, const char *host, uint16_t port, chcp_error **err)
{
    struct sockaddr_storage ss;
    if (t->tcp)
        return error_set(err, CHCP_FAILED_PRECONDITION, "already listening on TCP");
    if (resolve_host(host, port, &ss, err) < 0)
        return -1;
    uv_tcp_t *h = xmalloc(sizeof(*h));
    uv_tcp_init(t->loop, h);
    h->data = t;
    t->open_handles++;
    int rc = uv_tcp_bind(h, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)h, 511, on_connection);
    if (rc < 0) {
        error_set_errno(err, CHCP_UNAVAILABLE, -rc, "listen on %s:%u", host ? host : "", port);
        uv_close((uv_handle_t *)h, on_listener_closed);
        return -1;
    }
    t->tcp = h;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    if (uv_tcp_getsockname(h, (struct sockaddr *)&bound, &len) == 0)
        t->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                   : ((struct sockaddr_in6 *)&bound)->sin6_port);
    return 0;
}

uint16_t transport_tcp_port(const transport *t)
{
    return t->port;
}

/* An existing socket file is replaced only if nobody answers on it: a live
 * daemon's socket is never stolen. */
static int remove_stale_socket(const char *path, chcp_error **err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : error_set_errno(err, CHCP_UNAVAILABLE, errno, "stat %s", path);
    if (!S_ISSOCK(st.st_mode))
        return error_set(err, CHCP_ALREADY_EXISTS, "%s exists and is not a socket", path);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path))
        return error_set(err, CHCP_INVALID_ARGUMENT, "socket path too long: %s", path);
    strcpy(sun.sun_path, path);
    cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "socket");
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
        return error_set(err, CHCP_ALREADY_EXISTS, "%s is in use by a running server", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "unlink %s", path);
    return 0;
}

int transport_listen_unix(transport *t, const char *path, chcp_error **err)
{
    if (t->pipe)
        return error_set(err, CHCP_FAILED_PRECONDITION, "already listening on a Unix socket");
    if (remove_stale_socket(path, err) < 0)
        return -1;
    uv_pipe_t *h = xmalloc(sizeof(*h));
    uv_pipe_init(t->loop, h, 0);
    h->data = t;
    t->open_handles++;
    int rc = uv_pipe_bind(h, path);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)h, 511, on_connection);
    if (rc < 0) {
        error_set_errno(err, CHCP_UNAVAILABLE, -rc, "listen on %s", path);
        uv_close((uv_handle_t *)h, on_listener_closed);
        return -1;
    }
    t->pipe = h;
    free(t->unix_path);
    t->unix_path = xstrdup(path);
    return 0;
}

static void close_listeners(transport *t)
{
    if (t->tcp) {
        uv_close((uv_handle_t *)t->tcp, on_listener_closed);
        t->tcp = NULL;
    }
    if (t->pipe) {
        uv_close((uv_handle_t *)t->pipe, on_listener_closed);
        t->pipe = NULL;
        unlink(t->unix_path);
    }
}

void transport_stop_accepting(transport *t)
{
    if (t->stopping || t->closing)
        return;
    t->stopping = true;
    close_listeners(t);
    for (conn *c = t->conns, *next; c; c = next) {
        next = c->next;
        conn_begin_drain(c);
    }
}

size_t transport_active_requests(const transport *t)
{
    return t->active;
}

size_t transport_connection_count(const transport *t)
{
    return t->n_conns;
}

void transport_get_stats(const transport *t, transport_stats *out)
{
    *out = (transport_stats){
        .tcp_connections = t->n_tcp,
        .unix_connections = t->n_unix,
        .request_bytes = t->budget->rx_total,
        .response_bytes = t->budget->tx_total,
        .evicted = t->evicted,
        .refused_connections = t->refused_conns,
        .refused_requests = t->budget->refused_requests,
        .refused_responses = t->budget->refused_responses,
    };
    tls_stats(t, &out->tls_handshakes, &out->tls_handshake_failures);
}

static void transport_free(transport *t)
{
    treq_free_list(t);
    peers_free(t);
    budget_unref(t->budget);
    tls_server_free(t);
    nghttp2_session_callbacks_del(t->h2_callbacks);
    nghttp2_option_del(t->h2_option);
    free(t->unix_path);
    void (*done)(void *) = t->done;
    void *done_ud = t->done_ud;
    free(t);
    if (done)
        done(done_ud);
}

void transport_handle_closed(transport *t)
{
    if (--t->open_handles == 0 && t->closing)
        transport_free(t);
}

void transport_close(transport *t, void (*done)(void *ud), void *ud)
{
    if (t->closing)
        return;
    t->closing = true;
    t->stopping = true;
    t->done = done;
    t->done_ud = ud;
    close_listeners(t);
    while (t->conns)
        conn_close(t->conns);
    uv_close((uv_handle_t *)&t->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&t->check, on_handle_closed);
    uv_close((uv_handle_t *)&t->kick, on_handle_closed);
}
