/*
 * endpoint.c - where a client connects, from one string:
 *
 *   unix:///run/chcp/api.sock   unix:relative.sock   /run/chcp/api.sock   ./api.sock
 *   http://host[:port][/prefix]      (port 80 by default)
 *   https://host[:port][/prefix]     (port 443 by default)
 *   host[:port]  [v6addr][:port]     (http, port 8080: the daemon's default)
 *
 * The optional prefix is prepended to every RPC path, for a daemon behind a
 * reverse proxy that routes on one. Anything else (user info, a query, a
 * fragment, control characters, a port outside 1..65535) is refused here, so
 * a typo never becomes a confusing connection error later.
 */
#include "client/client_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/un.h>

static bool has_bad_chars(const char *s, const char *extra)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || (extra && strchr(extra, *p)))
            return true;
    return false;
}

static int parse_unix(const char *path, client_endpoint *ep, chcp_error **err)
{
    if (!*path)
        return error_set(err, CHCP_INVALID_ARGUMENT, "endpoint: empty Unix socket path");
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof(sun.sun_path))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "endpoint: Unix socket path longer than %zu bytes: %s",
                         sizeof(sun.sun_path) - 1, path);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "endpoint: control character in Unix socket path");
    ep->scheme = CLIENT_SCHEME_UNIX;
    ep->path = xstrdup(path);
    ep->authority = xstrdup("localhost");
    ep->display = path[0] == '/' ? xasprintf("unix://%s", path) : xasprintf("unix:%s", path);
    return 0;
}

static int parse_port(const char *text, size_t len, const char *whole, char **out, chcp_error **err)
{
    char buf[8];
    uint64_t port;
    if (len == 0 || len >= sizeof(buf))
        return error_set(err, CHCP_INVALID_ARGUMENT, "endpoint %s: invalid port", whole);
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (!str_to_u64(buf, 65535, &port) || port == 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "endpoint %s: invalid port '%s'", whole, buf);
    *out = xasprintf("%u", (unsigned)port);
    return 0;
}

/* "host", "host:port", "[v6]", "[v6]:port" */
static int parse_authority(const char *auth, size_t len, const char *default_port,
                           const char *whole, client_endpoint *ep, chcp_error **err)
{
    const char *host = auth;
    size_t host_len;
    const char *rest;
    if (len > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', len);
        if (!close)
            return error_set(err, CHCP_INVALID_ARGUMENT, "endpoint %s: missing ']'", whole);
        host = auth + 1;
        host_len = (size_t)(close - host);
        rest = close + 1;
    } else {
        const char *colon = memchr(auth, ':', len);
        host_len = colon ? (size_t)(colon - auth) : len;
        rest = auth + host_len;
    }
    size_t rest_len = len - (size_t)(rest - auth);
    if (host_len == 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "endpoint %s: missing host", whole);
    if (rest_len > 0 && rest[0] != ':')
        return error_set(err, CHCP_INVALID_ARGUMENT, "endpoint %s: unexpected text after host",
                         whole);
    if (rest_len > 0) {
        if (parse_port(rest + 1, rest_len - 1, whole, &ep->port, err) < 0)
            return -1;
    } else {
        ep->port = xstrdup(default_port);
    }
    ep->host = xstrndup(host, host_len);
    if (has_bad_chars(ep->host, "@/?#[]"))
        return error_set(err, CHCP_INVALID_ARGUMENT, "endpoint %s: invalid host", whole);
    bool v6 = strchr(ep->host, ':') != NULL;
    ep->authority = xasprintf(v6 ? "[%s]:%s" : "%s:%s", ep->host, ep->port);
    return 0;
}

static int parse_url(const char *text, client_endpoint *ep, chcp_error **err)
{
    const char *after;
    const char *default_port;
    if (str_has_prefix(text, "http://")) {
        ep->scheme = CLIENT_SCHEME_HTTP;
        after = text + 7;
        default_port = "80";
    } else if (str_has_prefix(text, "https://")) {
        ep->scheme = CLIENT_SCHEME_HTTPS;
        after = text + 8;
        default_port = "443";
    } else {
        ep->scheme = CLIENT_SCHEME_HTTP;
        after = text;
        default_port = "8080";
    }
    if (has_bad_chars(after, "?#"))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "endpoint %s: spaces, control characters, '?' and '#' are not allowed",
                         text);
    const char *slash = strchr(after, '/');
    size_t auth_len = slash ? (size_t)(slash - after) : strlen(after);
    if (memchr(after, '@', auth_len))
        return error_set(err, CHCP_INVALID_ARGUMENT, "endpoint %s: user info is not supported",
                         text);
    if (parse_authority(after, auth_len, default_port, text, ep, err) < 0)
        return -1;
    size_t prefix_len = slash ? strlen(slash) : 0;
    while (prefix_len > 0 && slash[prefix_len - 1] == '/')
        prefix_len--;
    ep->prefix = prefix_len ? xstrndup(slash, prefix_len) : xstrdup("");
    ep->display = xasprintf("%s://%s%s", ep->scheme == CLIENT_SCHEME_HTTPS ? "https" : "http",
                            ep->authority, ep->prefix);
    return 0;
}

int client_endpoint_parse(const char *text, client_endpoint *ep, chcp_error **err)
{
    memset(ep, 0, sizeof(*ep));
    int rc;
    if (!text || !*text)
        rc = error_set(err, CHCP_INVALID_ARGUMENT, "endpoint: empty");
    else if (str_has_prefix(text, "unix://"))
        rc = text[7] == '/' ? parse_unix(text + 7, ep, err)
                            : error_set(err, CHCP_INVALID_ARGUMENT,
                                        "endpoint %s: unix:// needs an absolute path "
                                        "(unix:///run/chcp.sock) or use unix:relative/path",
                                        text);
    else if (str_has_prefix(text, "unix:"))
        rc = parse_unix(text + 5, ep, err);
    else if (text[0] == '/' || str_has_prefix(text, "./") || str_has_prefix(text, "../"))
        rc = parse_unix(text, ep, err);
    else if (strstr(text, "://") && !str_has_prefix(text, "http://") &&
             !str_has_prefix(text, "https://"))
        rc = error_set(err, CHCP_INVALID_ARGUMENT,
                       "endpoint %s: unsupported scheme (use http://, https:// or unix://)", text);
    else
        rc = parse_url(text, ep, err);
    if (rc < 0)
        client_endpoint_free(ep);
    return rc;
}

void client_endpoint_free(client_endpoint *ep)
{
    free(ep->path);
    free(ep->host);
    free(ep->port);
    free(ep->prefix);
    free(ep->authority);
    free(ep->display);
    memset(ep, 0, sizeof(*ep));
}
