/*
 * rpc_wire.c - the small wire-format pieces of Connect, gRPC and gRPC-Web:
 * content types, timeout headers, grpc-message percent-encoding, envelopes,
 * GET query strings, the Connect error JSON, google.rpc.Status and the
 * gRPC-Web trailer frame. Pure functions over buffers, so they are unit
 * tested and fuzzed without sockets.
 */
#include "rpc/rpc_internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* ---- response metadata lists ----------------------------------------- */

static http_header *hdrs_slot(rpc_hdrs *h, bool owned)
{
    if (h->cap == 0) {
        h->v = h->inl;
        h->owned = h->inl_owned;
        h->cap = RPC_HDRS_INLINE;
    } else if (h->n == h->cap) {
        size_t cap = h->cap * 2;
        if (h->v == h->inl) {
            h->v = xmalloc(cap * sizeof(*h->v));
            h->owned = xmalloc(cap);
            memcpy(h->v, h->inl, sizeof(h->inl));
            memcpy(h->owned, h->inl_owned, sizeof(h->inl_owned));
        } else {
            h->v = xrealloc(h->v, cap * sizeof(*h->v));
            h->owned = xrealloc(h->owned, cap);
        }
        h->cap = cap;
    }
    h->owned[h->n] = owned;
    return &h->v[h->n++];
}

void rpc_hdrs_add_static(rpc_hdrs *h, const char *name, const char *value)
{
    http_header *e = hdrs_slot(h, false);
    *e = (http_header){name, value, strlen(name), strlen(value)};
}

void rpc_hdrs_add_copy(rpc_hdrs *h, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    char *blk = xmalloc(name_len + value_len + 2);
    for (size_t i = 0; i < name_len; i++)
        blk[i] = (char)tolower((unsigned char)name[i]);
    blk[name_len] = '\0';
    memcpy(blk + name_len + 1, value, value_len);
    blk[name_len + 1 + value_len] = '\0';
    http_header *e = hdrs_slot(h, true);
    *e = (http_header){blk, blk + name_len + 1, name_len, value_len};
}

void rpc_hdrs_add_bin(rpc_hdrs *h, const char *name, const uint8_t *value, size_t len)
{
    chcp_buf b = CHCP_BUF_INIT;
    base64_encode(&b, value, len, false, false);
    rpc_hdrs_add_copy(h, name, strlen(name), b.data ? (const char *)b.data : "", b.len);
    buf_free(&b);
}

void rpc_hdrs_free(rpc_hdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->owned[i])
            free((void *)h->v[i].name);
    if (h->v != h->inl) {
        free(h->v);
        free(h->owned);
    }
    h->v = NULL;
    h->owned = NULL;
    h->n = h->cap = 0;
}

const http_header *rpc_header(const http_request *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++)
        if (req->headers[i].name_len == len && strncasecmp(req->headers[i].name, name, len) == 0)
            return &req->headers[i];
    return NULL;
}

/* ---- content types ------------------------------------------------------ */

/* `unary`: only for unary methods; `stream`: only for streaming ones;
 * gRPC and gRPC-Web types serve both. */
static const struct {
    const char *name;
    rpc_protocol protocol;
    rpc_codec codec;
    bool unary, stream;
} content_types[] = {
    {"application/proto", RPC_PROTOCOL_CONNECT, RPC_CODEC_PROTO, true, false},
    {"application/json", RPC_PROTOCOL_CONNECT, RPC_CODEC_JSON, true, false},
    {"application/json; charset=utf-8", RPC_PROTOCOL_CONNECT, RPC_CODEC_JSON, true, false},
    {"application/connect+proto", RPC_PROTOCOL_CONNECT, RPC_CODEC_PROTO, false, true},
    {"application/connect+json", RPC_PROTOCOL_CONNECT, RPC_CODEC_JSON, false, true},
    {"application/connect+json; charset=utf-8", RPC_PROTOCOL_CONNECT, RPC_CODEC_JSON, false, true},
    {"application/grpc", RPC_PROTOCOL_GRPC, RPC_CODEC_PROTO, true, true},
    {"application/grpc+proto", RPC_PROTOCOL_GRPC, RPC_CODEC_PROTO, true, true},
    {"application/grpc+json", RPC_PROTOCOL_GRPC, RPC_CODEC_JSON, true, true},
    {"application/grpc+json; charset=utf-8", RPC_PROTOCOL_GRPC, RPC_CODEC_JSON, true, true},
    {"application/grpc-web", RPC_PROTOCOL_GRPC_WEB, RPC_CODEC_PROTO, true, true},
    {"application/grpc-web+proto", RPC_PROTOCOL_GRPC_WEB, RPC_CODEC_PROTO, true, true},
    {"application/grpc-web+json", RPC_PROTOCOL_GRPC_WEB, RPC_CODEC_JSON, true, true},
    {"application/grpc-web+json; charset=utf-8", RPC_PROTOCOL_GRPC_WEB, RPC_CODEC_JSON, true, true},
};

/* Sorted, comma-separated, as connect-go's sortedAcceptPostValue. */
const char rpc_accept_post[] =
    "application/grpc, application/grpc+json, application/grpc+json; charset=utf-8, "
    "application/grpc+proto, application/grpc-web, application/grpc-web+json, "
    "application/grpc-web+json; charset=utf-8, application/grpc-web+proto, application/json, "
    "application/json; charset=utf-8, application/proto";
const char rpc_accept_post_stream[] =
    "application/connect+json, application/connect+json; charset=utf-8, "
    "application/connect+proto, application/grpc, application/grpc+json, "
    "application/grpc+json; charset=utf-8, application/grpc+proto, application/grpc-web, "
    "application/grpc-web+json, application/grpc-web+json; charset=utf-8, "
    "application/grpc-web+proto";

static void trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

/*
 * Canonicalise like connect-go (mime.ParseMediaType + FormatMediaType): the
 * type is case-insensitive, parameters are "; k=v" with the charset value
 * lower-cased. The only parameter any of our types takes is charset.
 */
int rpc_content_type_parse(const char *value, bool streaming, rpc_protocol *protocol,
                           rpc_codec *codec, const char **canonical)
{
    if (!value)
        return -1;
    char canon[96];
    size_t n = 0;
    const char *s = value, *end = value + strlen(value);
    const char *semi = memchr(s, ';', (size_t)(end - s));
    const char *be = semi ? semi : end;
    trim(&s, &be);
    if (be - s <= 0 || (size_t)(be - s) >= 64)
        return -1;
    for (; s < be; s++)
        canon[n++] = (char)tolower((unsigned char)*s);
    if (semi) {
        const char *p = semi + 1, *pe = end;
        trim(&p, &pe);
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        if (!eq)
            return -1;
        const char *k = p, *ke = eq, *v = eq + 1, *ve = pe;
        trim(&k, &ke);
        trim(&v, &ve);
        if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
            v++;
            ve--;
        }
        if (ke - k != 7 || strncasecmp(k, "charset", 7) != 0 || memchr(v, ';', (size_t)(ve - v)))
            return -1;
        if (ve - v != 5 || strncasecmp(v, "utf-8", 5) != 0)
            return -1;
        memcpy(canon + n, "; charset=utf-8", 15);
        n += 15;
    }
    canon[n] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(content_types); i++) {
        if (strcmp(content_types[i].name, canon) == 0 &&
            (streaming ? content_types[i].stream : content_types[i].unary)) {
            *protocol = content_types[i].protocol;
            *codec = content_types[i].codec;
            *canonical = content_types[i].name;
            return 0;
        }
    }
    return -1;
}

/* ---- timeouts ------------------------------------------------------------ */

int rpc_parse_connect_timeout(const char *value, int64_t *ms, chcp_error **err)
{
    size_t len = strlen(value);
    if (len > 10)
        return error_set(err, CHCP_INVALID_ARGUMENT, "parse timeout: \"%s\" has >10 digits", value);
    uint64_t v;
    if (!str_to_u64(value, 9999999999ull, &v))
        return error_set(err, CHCP_INVALID_ARGUMENT, "parse timeout: invalid value \"%s\"", value);
    *ms = (int64_t)v;
    return 0;
}

int rpc_parse_grpc_timeout(const char *value, uint64_t *ns, chcp_error **err)
{
    size_t len = strlen(value);
    uint64_t unit;
    switch (len ? value[len - 1] : 0) {
    case 'n':
        unit = 1;
        break;
    case 'u':
        unit = 1000;
        break;
    case 'm':
        unit = 1000000;
        break;
    case 'S':
        unit = 1000000000ull;
        break;
    case 'M':
        unit = 60ull * 1000000000ull;
        break;
    case 'H':
        unit = 3600ull * 1000000000ull;
        break;
    default:
        return error_set(err, CHCP_INVALID_ARGUMENT, "protocol error: timeout has invalid unit");
    }
    /* Leading zeros are tolerated like strconv.ParseInt does; the value must
     * stay within 8 digits. 18 digits cannot overflow during parsing. */
    char digits[20];
    if (len < 2 || len - 1 > 18)
        return error_set(err, CHCP_INVALID_ARGUMENT, "protocol error: invalid timeout");
    memcpy(digits, value, len - 1);
    digits[len - 1] = '\0';
    uint64_t v;
    if (!str_to_u64(digits, UINT64_MAX, &v))
        return error_set(err, CHCP_INVALID_ARGUMENT, "protocol error: invalid timeout");
    if (v > 99999999)
        return error_set(err, CHCP_INVALID_ARGUMENT, "protocol error: timeout is too long");
    *ns = v > UINT64_MAX / unit ? UINT64_MAX : v * unit;
    return 0;
}

/* ---- percent-encoding (grpc-message) -------------------------------------- */

void rpc_percent_encode(chcp_buf *out, const char *msg, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    buf_reserve(out, len);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)msg[i];
        if (c < 0x20 || c > 0x7e || c == '%') {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 3);
        } else {
            buf_append_byte(out, c);
        }
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void rpc_percent_decode(chcp_buf *out, const char *msg, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (msg[i] == '%' && i + 2 < len && (h = hexval(msg[i + 1])) >= 0 &&
            (l = hexval(msg[i + 2])) >= 0) {
            buf_append_byte(out, (uint8_t)(h << 4 | l));
            i += 2;
        } else {
            buf_append_byte(out, (uint8_t)msg[i]);
        }
    }
}

/* ---- envelopes ------------------------------------------------------------ */

int rpc_envelope_next(const uint8_t *body, size_t len, size_t *off, size_t max_len,
                      rpc_envelope *env, chcp_error **err)
{
    if (*off >= len)
        return 0;
    size_t left = len - *off;
    if (left < 5)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "protocol error: incomplete envelope: unexpected EOF");
    const uint8_t *p = body + *off;
    size_t size = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
    if (max_len && size > max_len)
        return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                         "message size %zu is larger than configured max %zu", size, max_len);
    if (left - 5 < size)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "protocol error: promised %zu bytes in enveloped message, got %zu bytes",
                         size, left - 5);
    env->flags = p[0];
    env->data = p + 5;
    env->len = size;
    *off += 5 + size;
    return 1;
}

void rpc_envelope_prefix(uint8_t out[5], uint8_t flags, size_t len)
{
    out[0] = flags;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

/* ---- query strings ----------------------------------------------------------- */

/* QueryUnescape: '+' is a space, %XX must be valid; false on a bad escape. */
static bool query_unescape(chcp_buf *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= len || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0)
                return false;
            buf_append_byte(out, (uint8_t)(h << 4 | l));
            i += 2;
        } else {
            buf_append_byte(out, s[i] == '+' ? ' ' : (uint8_t)s[i]);
        }
    }
    return true;
}

/* Like url.URL.Query(): pairs with bad escapes or an empty name are skipped. */
int rpc_query_parse(const char *query, http_header **params, size_t *n, chcp_error **err)
{
    *params = NULL;
    *n = 0;
    if (!query)
        return 0;
    size_t cap = 0;
    const char *p = query;
    while (*p) {
        const char *amp = strchr(p, '&');
        const char *e = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ke = eq ? eq : e;
        chcp_buf k = CHCP_BUF_INIT, v = CHCP_BUF_INIT;
        bool ok = ke > p && !memchr(p, ';', (size_t)(e - p)) &&
                  query_unescape(&k, p, (size_t)(ke - p)) &&
                  (!eq || query_unescape(&v, eq + 1, (size_t)(e - eq - 1)));
        if (ok && k.len > 0) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 8;
                *params = xrealloc(*params, cap * sizeof(**params));
            }
            size_t kl = k.len, vl = v.len;
            char *blk = xmalloc(kl + vl + 2);
            memcpy(blk, k.data, kl);
            blk[kl] = '\0';
            if (vl)
                memcpy(blk + kl + 1, v.data, vl);
            blk[kl + 1 + vl] = '\0';
            (*params)[(*n)++] = (http_header){blk, blk + kl + 1, kl, vl};
        }
        buf_free(&k);
        buf_free(&v);
        p = amp ? amp + 1 : e;
    }
    return 0;
}

void rpc_query_free(http_header *params, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((void *)params[i].name);
    free(params);
}

const http_header *rpc_query_get(const http_header *params, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(params[i].name, name) == 0)
            return &params[i];
    return NULL;
}

/* ---- JSON error bodies -------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const uint8_t *s, size_t left)
{
    uint8_t c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void rpc_json_string(chcp_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    buf_reserve(out, len + 2);
    buf_append_byte(out, '"');
    for (size_t i = 0; i < len;) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            buf_append(out, e, 2);
            i++;
        } else if (c < 0x20) {
            const char *esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (esc) {
                buf_append(out, esc, 2);
            } else {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_append(out, e, 6);
            }
            i++;
        } else if (c < 0x80) {
            buf_append_byte(out, c);
            i++;
        } else {
            size_t n = utf8_seq(p + i, len - i);
            if (n) {
                buf_append(out, p + i, n);
                i += n;
            } else {
                buf_append_str(out, "\\ufffd");
                i++;
            }
        }
    }
    buf_append_byte(out, '"');
}

void rpc_error_json(chcp_buf *out, chcp_code code, const char *message, const rpc_detail *details,
                    size_t n_details)
{
    buf_append_str(out, "{\"code\":\"");
    buf_append_str(out, code_name(code));
    buf_append_byte(out, '"');
    if (message && *message) {
        buf_append_str(out, ",\"message\":");
        rpc_json_string(out, message, strlen(message));
    }
    if (n_details) {
        buf_append_str(out, ",\"details\":[");
        for (size_t i = 0; i < n_details; i++) {
            buf_append_str(out, i ? ",{\"type\":" : "{\"type\":");
            rpc_json_string(out, details[i].type_name, details[i].type_len);
            buf_append_str(out, ",\"value\":\"");
            base64_encode(out, details[i].value, details[i].value_len, false, false);
            buf_append_str(out, "\"}");
        }
        buf_append_byte(out, ']');
    }
    buf_append_byte(out, '}');
}

/* ---- google.rpc.Status ------------------------------------------------------- */

static void pb_varint(chcp_buf *out, uint64_t v)
{
    while (v >= 0x80) {
        buf_append_byte(out, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    buf_append_byte(out, (uint8_t)v);
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static const char any_prefix[] = "type.googleapis.com/";

void rpc_status_encode(chcp_buf *out, chcp_code code, const char *message,
                       const rpc_detail *details, size_t n_details)
{
    if (code) {
        buf_append_byte(out, 0x08); /* field 1, varint */
        pb_varint(out, (uint64_t)code);
    }
    size_t mlen = message ? strlen(message) : 0;
    if (mlen) {
        buf_append_byte(out, 0x12); /* field 2, bytes */
        pb_varint(out, mlen);
        buf_append(out, message, mlen);
    }
    for (size_t i = 0; i < n_details; i++) {
        /* Any{string type_url = 1; bytes value = 2;} */
        size_t url_len = sizeof(any_prefix) - 1 + details[i].type_len;
        size_t any_len = 1 + varint_len(url_len) + url_len;
        if (details[i].value_len)
            any_len += 1 + varint_len(details[i].value_len) + details[i].value_len;
        buf_append_byte(out, 0x1a); /* field 3, bytes */
        pb_varint(out, any_len);
        buf_append_byte(out, 0x0a);
        pb_varint(out, url_len);
        buf_append(out, any_prefix, sizeof(any_prefix) - 1);
        buf_append(out, details[i].type_name, details[i].type_len);
        if (details[i].value_len) {
            buf_append_byte(out, 0x12);
            pb_varint(out, details[i].value_len);
            buf_append(out, details[i].value, details[i].value_len);
        }
    }
}

/* ---- gRPC-Web trailers --------------------------------------------------------- */

void rpc_grpc_web_trailer_frame(chcp_buf *out, const http_header *trailers, size_t n)
{
    size_t start = out->len;
    uint8_t prefix[5] = {0};
    buf_append(out, prefix, 5);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < trailers[i].name_len; j++)
            buf_append_byte(out, (uint8_t)tolower((unsigned char)trailers[i].name[j]));
        buf_append(out, ": ", 2);
        buf_append(out, trailers[i].value, trailers[i].value_len);
        buf_append(out, "\r\n", 2);
    }
    rpc_envelope_prefix(out->data + start, 0x80, out->len - start - 5);
}
