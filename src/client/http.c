/*
 * http.c - one HTTP/1.1 POST and its response, over any client_stream.
 *
 * The request goes out in one write (head and body together); the response
 * is parsed with http-parser, which handles Content-Length, chunked bodies and
 * bodies delimited by the end of the connection. Interim 1xx answers are
 * skipped. Only the headers the Connect client needs are kept.
 */
#include "client/client_internal.h"

#include <http_parser.h>
#include <string.h>

typedef struct reader {
    client_http_response *resp;
    chcp_buf field; /* the header name being read, lower-cased */
    chcp_buf value;
    bool in_value;
    bool complete;
    bool too_big;
} reader;

static void commit_header(reader *r)
{
    if (!r->in_value)
        return;
    buf_append_byte(&r->value, 0);
    buf_append_byte(&r->field, 0);
    char **slot = NULL;
    if (strcmp((char *)r->field.data, "content-type") == 0)
        slot = &r->resp->content_type;
    else if (strcmp((char *)r->field.data, "content-encoding") == 0)
        slot = &r->resp->content_encoding;
    if (slot) {
        free(*slot);
        *slot = xstrdup((char *)r->value.data);
    }
    buf_reset(&r->field);
    buf_reset(&r->value);
    r->in_value = false;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    reader *r = p->data;
    commit_header(r);
    for (size_t i = 0; i < len; i++)
        buf_append_byte(&r->field, (uint8_t)((at[i] >= 'A' && at[i] <= 'Z') ? at[i] + 32 : at[i]));
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    reader *r = p->data;
    r->in_value = true;
    buf_append(&r->value, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    commit_header(p->data);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    reader *r = p->data;
    if (r->resp->body.len + len > CLIENT_MAX_RESPONSE_BYTES) {
        r->too_big = true;
        return 1;
    }
    buf_append(&r->resp->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    reader *r = p->data;
    if (p->status_code < 200) { /* 100 Continue & co.: the real answer follows */
        buf_reset(&r->resp->body);
        free(r->resp->content_type);
        free(r->resp->content_encoding);
        r->resp->content_type = r->resp->content_encoding = NULL;
        return 0;
    }
    r->resp->status = (int)p->status_code;
    r->resp->keep_alive = http_should_keep_alive(p);
    r->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void build_request(chcp_buf *out, const client_http_request *req)
{
    buf_printf(out, "POST %s HTTP/1.1\r\nHost: %s\r\n", req->path, req->authority);
    for (const char *const *h = req->headers; h && *h; h++)
        buf_printf(out, "%s\r\n", *h);
    buf_printf(out, "Content-Length: %zu\r\n\r\n", req->body_len);
    buf_append(out, req->body, req->body_len);
}

/* Feed bytes (len 0: end of stream) to the parser; errors name what broke. */
static int feed(http_parser *p, reader *r, const char *data, size_t len, chcp_error **err)
{
    size_t used = http_parser_execute(p, &settings, data, len);
    if (r->too_big)
        return error_set(err, CHCP_RESOURCE_EXHAUSTED, "response larger than %u bytes",
                         CLIENT_MAX_RESPONSE_BYTES);
    if (r->complete) {
        /* Bytes after a complete response: the connection is not reusable. */
        if (used < len)
            r->resp->keep_alive = false;
        return 0;
    }
    if (len == 0) /* the end of the stream, and the response is not complete */
        return error_set(err, CHCP_UNAVAILABLE,
                         r->resp->bytes_received ? "connection closed in the middle of the response"
                                                 : "connection closed before a response");
    if (HTTP_PARSER_ERRNO(p) != HPE_OK)
        return error_set(err, CHCP_UNAVAILABLE, "malformed HTTP response: %s",
                         http_errno_description(HTTP_PARSER_ERRNO(p)));
    return 0;
}

int client_http_post(client_stream *s, const client_http_request *req, uint64_t deadline_ns,
                     client_http_response *resp, chcp_error **err)
{
    memset(resp, 0, sizeof(*resp));
    chcp_buf out = CHCP_BUF_INIT;
    build_request(&out, req);
    int rc = s->ops->write_all(s, out.data, out.len, deadline_ns, err);
    buf_free(&out);
    if (rc < 0)
        return -1;

    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    reader r = {.resp = resp};
    p.data = &r;
    char chunk[16384];
    rc = 0;
    while (!r.complete && rc == 0) {
        ssize_t n = s->ops->read(s, chunk, sizeof(chunk), deadline_ns, err);
        if (n < 0) {
            rc = -1;
            break;
        }
        resp->bytes_received += (size_t)n;
        rc = feed(&p, &r, chunk, (size_t)n, err);
    }
    buf_free(&r.field);
    buf_free(&r.value);
    if (rc < 0)
        client_http_response_clear(resp);
    return rc;
}

void client_http_response_clear(client_http_response *resp)
{
    free(resp->content_type);
    free(resp->content_encoding);
    buf_free(&resp->body);
    size_t seen = resp->bytes_received;
    memset(resp, 0, sizeof(*resp));
    resp->bytes_received = seen; /* callers decide on retries with it */
}
