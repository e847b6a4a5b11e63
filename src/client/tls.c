/*
 * tls.c - TLS streams over OpenSSL for https:// endpoints.
 *
 * Secure by default, with no switch to turn verification off: the peer's
 * chain must verify against the system store (or --cacert) and its
 * certificate must name the host we dialled (or the --tls-server-name given);
 * TLS 1.2 is the floor. A client certificate and key can be presented for
 * mutual TLS. The socket stays non-blocking: WANT_READ/WANT_WRITE become polls
 * bounded by the call's deadline, exactly like clear-text streams.
 */
#include "client/client_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <string.h>

struct client_tls {
    SSL_CTX *ctx;
    char *server_name;
};

typedef struct tls_stream {
    client_stream base;
    SSL *ssl;
} tls_stream;

/* The most specific OpenSSL reason, or a fallback. */
static void tls_error(chcp_error **err, chcp_code code, const char *what)
{
    unsigned long e = ERR_get_error();
    unsigned long last = e;
    while (e) {
        last = e;
        e = ERR_get_error();
    }
    const char *reason = last ? ERR_reason_error_string(last) : NULL;
    char fallback[256] = "";
    if (last && !reason) {
        ERR_error_string_n(last, fallback, sizeof(fallback));
        reason = fallback;
    }
    error_set(err, code, "%s%s%s", what, reason ? ": " : "", reason ? reason : "");
}

client_tls *client_tls_new(const client_tls_options *opts, chcp_error **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_error(err, CHCP_INTERNAL, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = opts->ca_file ? SSL_CTX_load_verify_locations(ctx, opts->ca_file, NULL)
                           : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        tls_error(err, CHCP_INVALID_ARGUMENT,
                  opts->ca_file ? "cannot load the CA file" : "cannot load the system CA store");
        if (opts->ca_file)
            error_prefix(*err, "%s", opts->ca_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (opts->cert_file) {
        const char *key = opts->key_file ? opts->key_file : opts->cert_file;
        if (SSL_CTX_use_certificate_chain_file(ctx, opts->cert_file) != 1) {
            tls_error(err, CHCP_INVALID_ARGUMENT, "cannot load the client certificate");
            error_prefix(*err, "%s", opts->cert_file);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            tls_error(err, CHCP_INVALID_ARGUMENT, "cannot load the client key");
            error_prefix(*err, "%s", key);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (opts->key_file) {
        SSL_CTX_free(ctx);
        error_set(err, CHCP_INVALID_ARGUMENT, "a client key needs a client certificate");
        return NULL;
    }
    /* Only HTTP/1.1 is spoken; say so, so an h2-preferring proxy agrees. */
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn));

    client_tls *t = xcalloc(1, sizeof(*t));
    t->ctx = ctx;
    t->server_name = opts->server_name ? xstrdup(opts->server_name) : NULL;
    return t;
}

void client_tls_free(client_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->server_name);
    free(t);
}

/* Turn SSL_ERROR_WANT_* into a poll; anything else into an error. */
static int tls_wait(tls_stream *s, int rc, uint64_t deadline_ns, const char *what, chcp_error **err)
{
    int e = SSL_get_error(s->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return client_wait_fd(s->base.fd, POLLIN, deadline_ns, s->base.cancel, err);
    if (e == SSL_ERROR_WANT_WRITE)
        return client_wait_fd(s->base.fd, POLLOUT, deadline_ns, s->base.cancel, err);
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        return error_set(err, CHCP_UNAVAILABLE, "%s: %s", what,
                         errno ? strerror(errno) : "connection closed by the server");
    if (e == SSL_ERROR_SSL && SSL_get_verify_result(s->ssl) != X509_V_OK) {
        ERR_clear_error();
        return error_set(err, CHCP_UNAVAILABLE, "%s: certificate verification failed: %s", what,
                         X509_verify_cert_error_string(SSL_get_verify_result(s->ssl)));
    }
    tls_error(err, CHCP_UNAVAILABLE, what);
    return -1;
}

static ssize_t tls_read(client_stream *base, void *buf, size_t n, uint64_t deadline_ns,
                        chcp_error **err)
{
    tls_stream *s = (tls_stream *)base;
    for (;;) {
        size_t got = 0;
        int rc = SSL_read_ex(s->ssl, buf, n, &got);
        if (rc == 1)
            return (ssize_t)got;
        int e = SSL_get_error(s->ssl, rc);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        /* A peer that closes without close_notify: end of stream for HTTP,
         * whose own framing tells complete responses from truncated ones. */
        if (e == SSL_ERROR_SYSCALL ||
            (e == SSL_ERROR_SSL &&
             ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            ERR_clear_error();
            return 0;
        }
        if (tls_wait(s, rc, deadline_ns, "TLS read", err) < 0)
            return -1;
    }
}

static int tls_write_all(client_stream *base, const void *buf, size_t n, uint64_t deadline_ns,
                         chcp_error **err)
{
    tls_stream *s = (tls_stream *)base;
    const char *p = buf;
    while (n > 0) {
        size_t put = 0;
        int rc = SSL_write_ex(s->ssl, p, n, &put);
        if (rc == 1) {
            p += put;
            n -= put;
            continue;
        }
        if (tls_wait(s, rc, deadline_ns, "TLS write", err) < 0)
            return -1;
    }
    return 0;
}

static void tls_free(client_stream *base)
{
    tls_stream *s = (tls_stream *)base;
    SSL_free(s->ssl); /* no close_notify: the connection is simply dropped */
    if (s->base.fd >= 0)
        close(s->base.fd);
    free(s);
}

static const client_stream_ops tls_ops = {
    .read = tls_read,
    .write_all = tls_write_all,
    .free = tls_free,
};

static bool is_ip_literal(const char *host)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

client_stream *client_tls_stream(client_tls *t, int fd, const char *host, uint64_t deadline_ns,
                                 volatile sig_atomic_t *cancel, chcp_error **err)
{
    tls_stream *s = xcalloc(1, sizeof(*s));
    s->base.ops = &tls_ops;
    s->base.fd = fd;
    s->base.cancel = cancel;
    s->ssl = SSL_new(t->ctx);
    const char *name = t->server_name ? t->server_name : host;
    if (!s->ssl || SSL_set_fd(s->ssl, fd) != 1) {
        tls_error(err, CHCP_INTERNAL, "cannot set up TLS");
        tls_free(&s->base);
        return NULL;
    }
    /* Verify the name: an IP literal against IP SANs, a name against DNS SANs
     * (and send it as SNI; SNI never carries addresses). */
    X509_VERIFY_PARAM *param = SSL_get0_param(s->ssl);
    int ok = is_ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(param, name)
                                 : (SSL_set_tlsext_host_name(s->ssl, name) == 1 &&
                                    SSL_set1_host(s->ssl, name) == 1);
    if (ok != 1) {
        tls_error(err, CHCP_INVALID_ARGUMENT, "invalid TLS server name");
        tls_free(&s->base);
        return NULL;
    }
    for (;;) {
        int rc = SSL_connect(s->ssl);
        if (rc == 1)
            return &s->base;
        if (tls_wait(s, rc, deadline_ns, "TLS handshake", err) < 0) {
            if ((*err)->code == CHCP_DEADLINE_EXCEEDED)
                error_prefix(*err, "TLS handshake");
            tls_free(&s->base);
            return NULL;
        }
    }
}
