/*
 * call.c - Connect unary calls of cloudhypervisor.v1.VmService.
 *
 * A call is POST <prefix>/cloudhypervisor.v1.VmService/<Method> with a binary
 * protobuf body (application/proto), Connect-Protocol-Version: 1 and, when the
 * call has a deadline, Connect-Timeout-Ms, so that the server gives up when the
 * client does. Success is 200 with the bare response message; an error is any
 * other status with a JSON body {"code": ..., "message": ...}; without a usable
 * body the code is inferred from the HTTP status as Connect clients do.
 *
 * Connections: a kept-alive connection is reused only for read-only calls
 * (GetVmInfo, ListVms: what `wait` and `watch` poll), which can be retried
 * safely when the server closed it while idle. Mutations always get a fresh
 * connection and are never retried: a create without an id, or a delete,
 * must not run twice.
 */
#include "client/client_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rpc/protojson.h"

#define SERVICE "cloudhypervisor.v1.VmService"

struct chcp_client {
    client_endpoint ep;
    client_tls *tls;     /* https:// only */
    client_stream *conn; /* kept alive between read-only calls, or NULL */
    uint64_t timeout_ms;
    char *user_agent;
    volatile sig_atomic_t *cancel;
};

chcp_client *client_new(const client_options *opts, chcp_error **err)
{
    chcp_client *c = xcalloc(1, sizeof(*c));
    const char *endpoint = opts->endpoint ? opts->endpoint : CLIENT_DEFAULT_ENDPOINT;
    if (client_endpoint_parse(endpoint, &c->ep, err) < 0) {
        free(c);
        return NULL;
    }
    bool tls_opts =
        opts->tls.ca_file || opts->tls.cert_file || opts->tls.key_file || opts->tls.server_name;
    if (c->ep.scheme == CLIENT_SCHEME_HTTPS) {
        c->tls = client_tls_new(&opts->tls, err);
        if (!c->tls) {
            client_free(c);
            return NULL;
        }
    } else if (tls_opts) {
        error_set(err, CHCP_INVALID_ARGUMENT,
                  "TLS options given but the endpoint %s is not https://", c->ep.display);
        client_free(c);
        return NULL;
    }
    c->timeout_ms = opts->call_timeout_ms;
    c->user_agent =
        opts->user_agent ? xstrdup(opts->user_agent) : xasprintf("chcp-client/%s", CHCP_VERSION);
    c->cancel = opts->cancel;
    return c;
}

void client_free(chcp_client *c)
{
    if (!c)
        return;
    client_stream_free(c->conn);
    client_tls_free(c->tls);
    client_endpoint_free(&c->ep);
    free(c->user_agent);
    free(c);
}

const client_endpoint *client_get_endpoint(const chcp_client *c)
{
    return &c->ep;
}

volatile sig_atomic_t *client_cancel_flag(const chcp_client *c)
{
    return c->cancel;
}

chcp_code client_code_for_http_status(int status)
{
    switch (status) {
    case 400:
        return CHCP_INTERNAL;
    case 401:
        return CHCP_UNAUTHENTICATED;
    case 403:
        return CHCP_PERMISSION_DENIED;
    case 404:
        return CHCP_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return CHCP_UNAVAILABLE;
    default:
        return CHCP_UNKNOWN;
    }
}

static client_stream *open_stream(chcp_client *c, uint64_t deadline_ns, chcp_error **err)
{
    int fd = client_socket_connect(&c->ep, deadline_ns, c->cancel, err);
    if (fd < 0)
        return NULL;
    if (!c->tls)
        return client_plain_stream(fd, c->cancel);
    client_stream *s = client_tls_stream(c->tls, fd, c->ep.host, deadline_ns, c->cancel, err);
    if (!s)
        error_prefix(*err, "%s", c->ep.display);
    return s;
}

/* One attempt on c->conn (opened when missing). */
static int exchange(chcp_client *c, const char *path, const chcp_buf *body, uint64_t deadline_ns,
                    client_http_response *resp, chcp_error **err)
{
    if (!c->conn) {
        c->conn = open_stream(c, deadline_ns, err);
        if (!c->conn)
            return -1;
    }
    char ua[256], timeout[64];
    snprintf(ua, sizeof(ua), "User-Agent: %s", c->user_agent);
    const char *headers[] = {ua, "Content-Type: application/proto", "Connect-Protocol-Version: 1",
                             timeout, NULL};
    if (deadline_ns) {
        uint64_t now = time_mono_ns();
        uint64_t left_ms = now < deadline_ns ? (deadline_ns - now) / 1000000 : 0;
        if (left_ms == 0)
            return error_set(err, CHCP_DEADLINE_EXCEEDED, "timed out");
        snprintf(timeout, sizeof(timeout), "Connect-Timeout-Ms: %llu",
                 (unsigned long long)(left_ms > 9999999999ull ? 9999999999ull : left_ms));
    } else {
        headers[3] = NULL;
    }
    client_http_request req = {
        .authority = c->ep.authority,
        .path = path,
        .headers = headers,
        .body = body->data,
        .body_len = body->len,
    };
    int rc = client_http_post(c->conn, &req, deadline_ns, resp, err);
    if (rc < 0 || !resp->keep_alive) {
        client_stream_free(c->conn);
        c->conn = NULL;
    }
    return rc;
}

static bool has_media_type(const char *content_type, const char *want)
{
    if (!content_type)
        return false;
    size_t n = strlen(want);
    return strncasecmp(content_type, want, n) == 0 &&
           (content_type[n] == '\0' || content_type[n] == ';' || content_type[n] == ' ');
}

/* A Connect error response into *err. */
static int decode_error(const client_http_response *resp, chcp_error **err)
{
    chcp_code code = client_code_for_http_status(resp->status);
    if (has_media_type(resp->content_type, "application/json") && !resp->content_encoding) {
        json_t *doc = json_loadb((const char *)resp->body.data, resp->body.len, 0, NULL);
        const char *name = json_string_value(json_object_get(doc, "code"));
        int parsed = name ? code_from_name(name) : -1;
        if (parsed > 0) {
            const char *msg = json_string_value(json_object_get(doc, "message"));
            error_set(err, (chcp_code)parsed, "%s", msg ? msg : "");
            json_decref(doc);
            return -1;
        }
        json_decref(doc);
    }
    return error_set(err, code, "HTTP status %d from the server%s", resp->status,
                     resp->status == 404 ? " (is this a chcp endpoint?)" : "");
}

static int decode_success(const client_http_response *resp,
                          const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **out,
                          chcp_error **err)
{
    if (!has_media_type(resp->content_type, "application/proto"))
        return error_set(err, CHCP_INTERNAL, "unexpected response content type '%s'",
                         resp->content_type ? resp->content_type : "(none)");
    if (resp->content_encoding && strcasecmp(resp->content_encoding, "identity") != 0)
        return error_set(err, CHCP_INTERNAL, "unexpected response content encoding '%s'",
                         resp->content_encoding);
    *out = protobuf_c_message_unpack(resp_desc, NULL, resp->body.len, resp->body.data);
    if (!*out)
        return error_set(err, CHCP_INTERNAL, "malformed %s in the response", resp_desc->name);
    return 0;
}

int client_call(chcp_client *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                chcp_error **err)
{
    *resp = NULL;
    uint64_t deadline_ns = c->timeout_ms ? time_mono_ns() + c->timeout_ms * 1000000 : 0;
    bool read_only = protometa_method_idempotency(SERVICE, method) == PROTOMETA_NO_SIDE_EFFECTS;
    cleanup_free char *path =
        xasprintf("%s/" SERVICE "/%s", c->ep.prefix ? c->ep.prefix : "", method);
    chcp_buf body = CHCP_BUF_INIT;
    buf_reserve(&body, protobuf_c_message_get_packed_size(req) + 1);
    body.len = protobuf_c_message_pack(req, body.data);

    if (c->conn && !read_only) {
        client_stream_free(c->conn);
        c->conn = NULL;
    }
    client_http_response hr = {0};
    bool reused = c->conn != NULL;
    int rc = exchange(c, path, &body, deadline_ns, &hr, err);
    if (rc < 0 && reused && hr.bytes_received == 0 && (*err)->code == CHCP_UNAVAILABLE) {
        /* The server closed the idle connection; a read is safe to repeat. */
        error_free(*err);
        *err = NULL;
        rc = exchange(c, path, &body, deadline_ns, &hr, err);
    }
    buf_free(&body);
    if (rc < 0) {
        if ((*err)->code == CHCP_DEADLINE_EXCEEDED)
            error_prefix(*err, "%s", method);
        return -1;
    }
    rc = hr.status == 200 ? decode_success(&hr, resp_desc, resp, err) : decode_error(&hr, err);
    client_http_response_clear(&hr);
    return rc;
}
