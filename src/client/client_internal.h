/*
 * client_internal.h - the layers inside the client library, for its own .c
 * files only (the interface is client.h):
 *
 *   call.c     Connect unary calls, error decoding, connection reuse
 *   http.c     one HTTP/1.1 request and its response (http-parser)
 *   stream.c   byte streams with deadlines: sockets (TCP, Unix)
 *   tls.c      the same over OpenSSL
 *   endpoint.c endpoint strings
 *   watch.c    following VMs (polling today)
 *
 * A stream is a small vtable so that TLS slots in under HTTP without the
 * layers above knowing.
 */
#ifndef CHCP_CLIENT_INTERNAL_H
#define CHCP_CLIENT_INTERNAL_H

#include <sys/types.h>

#include "client/client.h"

/* ---- streams -------------------------------------------------------------- */

typedef struct client_stream client_stream;

typedef struct client_stream_ops {
    /* Up to n bytes; 0 at end of stream; -1 and *err on failure or deadline. */
    ssize_t (*read)(client_stream *s, void *buf, size_t n, uint64_t deadline_ns, chcp_error **err);
    int (*write_all)(client_stream *s, const void *buf, size_t n, uint64_t deadline_ns,
                     chcp_error **err);
    void (*free)(client_stream *s);
} client_stream_ops;

struct client_stream {
    const client_stream_ops *ops;
    int fd;
    volatile sig_atomic_t *cancel;
};

/* Connect a non-blocking socket to the endpoint (every address getaddrinfo
 * gives, in order) before deadline_ns. Returns the fd, or -1 and *err:
 * CHCP_UNAVAILABLE (refused, unreachable, no such socket),
 * CHCP_PERMISSION_DENIED (EACCES on a Unix socket), CHCP_DEADLINE_EXCEEDED. */
int client_socket_connect(const client_endpoint *ep, uint64_t deadline_ns,
                          volatile sig_atomic_t *cancel, chcp_error **err);

/* Wait until fd is ready for `events` (POLLIN/POLLOUT). */
int client_wait_fd(int fd, short events, uint64_t deadline_ns, volatile sig_atomic_t *cancel,
                   chcp_error **err);

/* A clear-text stream owning fd. */
client_stream *client_plain_stream(int fd, volatile sig_atomic_t *cancel);
void client_stream_free(client_stream *s);

/* ---- TLS (OpenSSL) ---------------------------------------------------------- */

typedef struct client_tls client_tls;

/* Load the trust store and the client certificate once per client. */
client_tls *client_tls_new(const client_tls_options *opts, chcp_error **err);
void client_tls_free(client_tls *t);
/* Handshake on a connected fd (taken over, also on failure), verifying the
 * peer's certificate chain and its name (opts->server_name or `host`). */
client_stream *client_tls_stream(client_tls *t, int fd, const char *host, uint64_t deadline_ns,
                                 volatile sig_atomic_t *cancel, chcp_error **err);

/* ---- HTTP/1.1 --------------------------------------------------------------- */

/* Largest response body accepted (a ListVms page of 1000 VMs is far below). */
#define CLIENT_MAX_RESPONSE_BYTES (64u << 20)

typedef struct client_http_request {
    const char *authority;
    const char *path;
    const char *const *headers; /* "Name: value" lines, NULL-terminated */
    const void *body;
    size_t body_len;
} client_http_request;

typedef struct client_http_response {
    int status;
    char *content_type;     /* NULL when absent */
    char *content_encoding; /* NULL when absent */
    chcp_buf body;
    bool keep_alive;       /* the connection may carry another request */
    size_t bytes_received; /* 0: the server sent nothing at all */
} client_http_response;

/* Send one POST and read its whole response. */
int client_http_post(client_stream *s, const client_http_request *req, uint64_t deadline_ns,
                     client_http_response *resp, chcp_error **err);
void client_http_response_clear(client_http_response *resp);

/* ---- calls (used by watch.c) ------------------------------------------------- */

volatile sig_atomic_t *client_cancel_flag(const chcp_client *c);

#endif
