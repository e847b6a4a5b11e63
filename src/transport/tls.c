/*
 * tls.c - TLS on TCP connections: OpenSSL driven through memory BIOs.
 *
 * OpenSSL never touches the socket. Ciphertext read by the connection's
 * ordinary libuv reads is written into the SSL's read BIO (tls_feed), the
 * handshake advances, and decrypted bytes go to conn_feed() exactly as clear
 * text would; the output the HTTP layers gather in c->out during a loop pass
 * is sealed into records in one go just before the connection's single write
 * (tls_seal, called by conn_write). So the non-blocking connection code, the
 * batched writes, the deadlines and the budgets are the same for both.
 *
 * Choices (docs/security.md, "TLS"):
 *  - TLS 1.2 or 1.3 (configurable floor); TLS 1.2 only with ECDHE key
 *    exchange and AEAD ciphers, which RFC 9113 requires for h2 anyway; no
 *    renegotiation; no compression.
 *  - ALPN: h2, then http/1.1. The negotiated protocol is the connection's
 *    protocol (no sniffing, no h2c upgrade); a client that offers no ALPN is
 *    served by preface sniffing, like clear text.
 *  - Client certificates (mutual TLS) when a client CA is configured: a chain
 *    that does not verify (unknown CA, expired, not yet valid...) fails the
 *    handshake; no certificate fails it too unless bearer tokens may stand in.
 *  - Reload (SIGHUP): a new SSL_CTX replaces the old one for handshakes that
 *    start afterwards; each established SSL holds a reference to the context
 *    it began with, so nothing established is dropped.
 *  - A handshake must complete within the header timeout, like the first
 *    request line of a clear-text connection (conn.c).
 */
#include "transport/internal.h"

#include <arpa/inet.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>

/* Plaintext is decrypted into this much at a time (one record at most). */
#define TLS_PLAIN_CHUNK 16384
/* Client certificate chains longer than this are refused. */
#define TLS_VERIFY_DEPTH 8

struct tls_server {
    SSL_CTX *ctx;
    uint64_t handshakes, failures;
    uint8_t plain[TLS_PLAIN_CHUNK];
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    chcp_buf wire;    /* sealed bytes waiting for the socket */
    bool established;
    bool failed;
    bool notify_sent;
};

/* h2 first: the server's preference decides (SSL_select_next_proto). */
static const unsigned char alpn_protos[] = "\x02h2\x08http/1.1";

/* The most specific reason OpenSSL queued, or `fallback`. Empties the queue. */
static const char *ssl_reason(char *buf, size_t size, const char *fallback)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()))
        last = e;
    if (!last)
        return fallback;
    const char *r = ERR_reason_error_string(last);
    if (r)
        return r;
    ERR_error_string_n(last, buf, size);
    return buf;
}

static int ssl_fail(chcp_error **err, const char *what, const char *path)
{
    char buf[256];
    return error_set(err, CHCP_INVALID_ARGUMENT, "%s %s: %s", what, path,
                     ssl_reason(buf, sizeof(buf), "unusable"));
}

/* ---- the server context ----------------------------------------------------- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *selected;
    if (SSL_select_next_proto(&selected, outlen, alpn_protos, sizeof(alpn_protos) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* go on without ALPN: sniffing decides */
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

/* An operator who reloads an expired certificate would lock every client
 * out: refuse it and keep the old one. */
static int check_validity(SSL_CTX *ctx, const char *path, chcp_error **err)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (!cert)
        return error_set(err, CHCP_INVALID_ARGUMENT, "TLS certificate %s: no certificate", path);
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "TLS certificate %s: expired", path);
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "TLS certificate %s: not valid yet", path);
    return 0;
}

static int load_client_ca(SSL_CTX *ctx, const transport_tls_config *cfg, chcp_error **err)
{
    if (SSL_CTX_load_verify_locations(ctx, cfg->client_ca_file, NULL) != 1)
        return ssl_fail(err, "TLS client CA", cfg->client_ca_file);
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_ca_file);
    if (!names)
        return ssl_fail(err, "TLS client CA", cfg->client_ca_file);
    SSL_CTX_set_client_CA_list(ctx, names);
    int mode = SSL_VERIFY_PEER | (cfg->client_cert_optional ? 0 : SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
    return 0;
}

static SSL_CTX *ctx_new(const transport_tls_config *cfg, chcp_error **err)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        char buf[256];
        error_set(err, CHCP_INTERNAL, "TLS: %s", ssl_reason(buf, sizeof(buf), "no context"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, cfg->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* Idle connections give their 34 KiB of record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"chcp", 4);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    int rc = -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1)
        ssl_fail(err, "TLS certificate", cfg->cert_file);
    else if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1 &&
             ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
        ssl_fail(err, "TLS key", cfg->key_file);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        error_set(err, CHCP_INVALID_ARGUMENT, "TLS key %s does not match the certificate %s",
                  cfg->key_file, cfg->cert_file);
    else if (check_validity(ctx, cfg->cert_file, err) == 0)
        rc = cfg->client_ca_file ? load_client_ca(ctx, cfg, err) : 0;
    ERR_clear_error();
    if (rc < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int transport_set_tls(transport *t, const transport_tls_config *cfg, chcp_error **err)
{
    if (!cfg->cert_file || !cfg->key_file)
        return error_set(err, CHCP_INVALID_ARGUMENT, "TLS needs a certificate and a key");
    if (cfg->min_version && cfg->min_version != 12 && cfg->min_version != 13)
        return error_set(err, CHCP_INVALID_ARGUMENT, "TLS minimum version must be 1.2 or 1.3");
    SSL_CTX *ctx = ctx_new(cfg, err);
    if (!ctx)
        return -1;
    if (!t->tls)
        t->tls = xcalloc(1, sizeof(*t->tls));
    SSL_CTX_free(t->tls->ctx); /* established connections hold their own reference */
    t->tls->ctx = ctx;
    return 0;
}

bool transport_tls_enabled(const transport *t)
{
    return t->tls != NULL;
}

void tls_server_free(transport *t)
{
    if (!t->tls)
        return;
    SSL_CTX_free(t->tls->ctx);
    free(t->tls);
    t->tls = NULL;
}

void tls_stats(const transport *t, uint64_t *ok, uint64_t *failed)
{
    *ok = t->tls ? t->tls->handshakes : 0;
    *failed = t->tls ? t->tls->failures : 0;
}

/* ---- one connection -------------------------------------------------------- */

void tls_conn_start(conn *c)
{
    tls_conn *tc = xcalloc(1, sizeof(*tc));
    tc->ssl = SSL_new(c->t->tls->ctx);
    tc->rbio = BIO_new(BIO_s_mem());
    tc->wbio = BIO_new(BIO_s_mem());
    if (!tc->ssl || !tc->rbio || !tc->wbio) {
        log_error("TLS: out of memory for a connection from %s", c->peer);
        SSL_free(tc->ssl);
        BIO_free(tc->rbio);
        BIO_free(tc->wbio);
        tc->ssl = NULL;
        tc->failed = true;
        c->rd_discard = true;
        c->close_after_flush = true;
        c->tls = tc;
        conn_mark_dirty(c);
        return;
    }
    /* An empty read BIO means "more to come", not end of file. */
    BIO_set_mem_eof_return(tc->rbio, -1);
    SSL_set_bio(tc->ssl, tc->rbio, tc->wbio);
    SSL_set_accept_state(tc->ssl);
    c->tls = tc;
    c->ident->pub.tls = true;
}

void tls_conn_free(conn *c)
{
    tls_conn *tc = c->tls;
    if (!tc)
        return;
    /* Given up before the handshake finished: a timeout, an eviction, a
     * client that went away. */
    if (!tc->established && !tc->failed && c->t->tls)
        c->t->tls->failures++;
    SSL_free(tc->ssl);
    buf_free(&tc->wire);
    free(tc);
    c->tls = NULL;
}

bool tls_handshaking(const conn *c)
{
    return c->tls && !c->tls->established && !c->tls->failed;
}

bool tls_has_output(const conn *c)
{
    return c->tls && (c->tls->wire.len || (c->tls->ssl && BIO_pending(c->tls->wbio) > 0));
}

/* Move what OpenSSL wrote into the wire buffer. */
static void collect(conn *c)
{
    tls_conn *tc = c->tls;
    if (!tc->ssl)
        return;
    size_t pending = BIO_pending(tc->wbio);
    if (!pending)
        return;
    buf_reserve(&tc->wire, pending);
    int n = BIO_read(tc->wbio, tc->wire.data + tc->wire.len, (int)pending);
    if (n > 0)
        tc->wire.len += (size_t)n;
    conn_mark_dirty(c);
}

/* Names from the verified client certificate. */
static void read_certificate(conn *c, X509 *cert)
{
    conn_identity *id = c->ident;
    id->pub.client_cert = true;
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem && X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        char *data;
        long len = BIO_get_mem_data(mem, &data);
        if (len > 0 && identity_text_ok(data, (size_t)len))
            id->pub.subject = conn_identity_keep(id, xstrndup(data, (size_t)len));
    }
    BIO_free(mem);
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    const char *uri = NULL;
    int n_uris = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        const ASN1_STRING *s = NULL;
        const char *prefix = NULL;
        if (g->type == GEN_DNS)
            s = g->d.dNSName, prefix = "dns:";
        else if (g->type == GEN_URI)
            s = g->d.uniformResourceIdentifier, prefix = "uri:";
        else if (g->type == GEN_EMAIL)
            s = g->d.rfc822Name, prefix = "email:";
        if (s) {
            size_t before = id->pub.n_sans;
            conn_identity_add_san(id, prefix, (const char *)ASN1_STRING_get0_data(s),
                                  (size_t)ASN1_STRING_length(s));
            if (g->type == GEN_URI && id->pub.n_sans > before) {
                n_uris++;
                uri = id->pub.sans[before] + 4;
            }
        } else if (g->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN] = "";
            int len = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
            if (len == 4)
                uv_inet_ntop(AF_INET, a, ip, sizeof(ip));
            else if (len == 16)
                uv_inet_ntop(AF_INET6, a, ip, sizeof(ip));
            if (*ip)
                conn_identity_add_san(id, "ip:", ip, strlen(ip));
        }
    }
    GENERAL_NAMES_free(names);
    /* An X.509-SVID has exactly one URI SAN, its SPIFFE ID. */
    if (n_uris == 1 && strncasecmp(uri, "spiffe://", 9) == 0)
        id->pub.spiffe_id = uri;
}

/* The handshake is done: the protocol ALPN chose, and who the client is. */
static void established(conn *c)
{
    tls_conn *tc = c->tls;
    tc->established = true;
    c->t->tls->handshakes++;
    conn_identity *id = c->ident;
    id->pub.tls_version = SSL_get_version(tc->ssl); /* a static string */
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(tc->ssl, &alpn, &alpn_len);
    if (alpn_len == 2 && memcmp(alpn, "h2", 2) == 0) {
        id->pub.alpn = "h2";
        c->proto = PROTO_H2;
        h2_start(c);
    } else if (alpn_len == 8 && memcmp(alpn, "http/1.1", 8) == 0) {
        id->pub.alpn = "http/1.1";
        c->proto = PROTO_H1;
        h1_start(c);
    }
    X509 *cert = SSL_get0_peer_certificate(tc->ssl);
    if (cert && SSL_get_verify_result(tc->ssl) == X509_V_OK)
        read_certificate(c, cert);
    log_debug("TLS: %s %s from %s%s%s", id->pub.tls_version,
              id->pub.alpn ? id->pub.alpn : "(no ALPN)", c->peer,
              id->pub.subject ? ", client " : "", id->pub.subject ? id->pub.subject : "");
}

/* Say why (the alert is queued), then close once it is written. */
static void handshake_failed(conn *c)
{
    tls_conn *tc = c->tls;
    char buf[256];
    const char *why = ssl_reason(buf, sizeof(buf), "connection closed");
    long verify = SSL_get_verify_result(tc->ssl);
    const char *cert = verify != X509_V_OK ? X509_verify_cert_error_string(verify) : NULL;
    log_info("TLS handshake with %s failed: %s%s%s%s", c->peer, why, cert ? " (" : "",
             cert ? cert : "", cert ? ")" : "");
    tc->failed = true;
    c->t->tls->failures++;
    collect(c);
    c->rd_discard = true;
    c->close_after_flush = true;
    conn_mark_dirty(c);
}

static void fatal(conn *c, const char *what)
{
    char buf[256];
    log_debug("TLS connection from %s: %s: %s", c->peer, what,
              ssl_reason(buf, sizeof(buf), "error"));
    c->tls->failed = true;
    collect(c);
    c->rd_discard = true;
    c->close_after_flush = true;
    conn_mark_dirty(c);
}

void tls_feed(conn *c, const uint8_t *data, size_t len)
{
    tls_conn *tc = c->tls;
    if (tc->failed || c->closing || len == 0)
        return;
    if (len > INT_MAX || BIO_write(tc->rbio, data, (int)len) != (int)len) {
        fatal(c, "buffering input");
        return;
    }
    ERR_clear_error();
    if (!tc->established) {
        int rc = SSL_do_handshake(tc->ssl);
        if (rc != 1) {
            int e = SSL_get_error(tc->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                collect(c);
            else
                handshake_failed(c);
            return;
        }
        established(c);
    }
    uint8_t *plain = c->t->tls->plain;
    for (;;) {
        size_t n = 0;
        int rc = SSL_read_ex(tc->ssl, plain, TLS_PLAIN_CHUNK, &n);
        if (rc == 1) {
            conn_feed(c, plain, n);
            if (c->closing || c->rd_discard)
                break;
            continue;
        }
        int e = SSL_get_error(tc->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the client is done */
            collect(c);
            conn_on_eof(c);
            return;
        }
        fatal(c, "reading");
        return;
    }
    /* Key updates and session tickets go out with the next write. */
    collect(c);
}

chcp_buf *tls_seal(conn *c)
{
    tls_conn *tc = c->tls;
    if (tc->failed || !tc->established) {
        buf_reset(&c->out); /* nothing the HTTP layers said can go out */
        return &tc->wire;
    }
    ERR_clear_error();
    for (size_t off = 0; off < c->out.len;) {
        size_t chunk = c->out.len - off, written = 0;
        if (chunk > (size_t)1 << 30)
            chunk = (size_t)1 << 30;
        if (SSL_write_ex(tc->ssl, c->out.data + off, chunk, &written) != 1) {
            char buf[256];
            log_debug("TLS connection from %s: sealing: %s", c->peer,
                      ssl_reason(buf, sizeof(buf), "error"));
            return NULL;
        }
        off += written;
    }
    buf_reset(&c->out);
    collect(c);
    return &tc->wire;
}

bool tls_close_notify(conn *c)
{
    tls_conn *tc = c->tls;
    if (!tc->established || tc->failed || tc->notify_sent || c->peer_eof)
        return false;
    tc->notify_sent = true;
    ERR_clear_error();
    SSL_shutdown(tc->ssl);
    ERR_clear_error();
    collect(c);
    return tc->wire.len > 0;
}
