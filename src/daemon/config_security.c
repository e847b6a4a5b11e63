/*
 * config_security.c - the security settings checked together: TLS files that
 * only make sense in pairs, and the secure default for where the API listens.
 *
 * Whoever reaches the API can start processes on the host, so serving a
 * non-loopback address without authenticating clients is refused at start-up
 * (exit 2) unless the operator opts in with CHCP_ALLOW_UNAUTHENTICATED, which
 * is then warned about in the log. "Authenticated" means: a client CA (mutual
 * TLS), or bearer tokens over TLS. Tokens over clear text on a non-loopback
 * address count as unauthenticated, because anyone on the path can read and
 * replay them.
 */
#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>

#define MAX_IDS 1024

bool config_address_is_loopback(const char *address)
{
    if (!address || strcmp(address, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, address, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, address, &a6) != 1)
        return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

bool config_tcp_requires_auth(const chcp_config *cfg)
{
    return cfg->tls_client_ca || cfg->auth_tokens_file;
}

static int check_tls_files(const chcp_config *cfg, chcp_error **err)
{
    if (!cfg->tls_cert != !cfg->tls_key)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s is set but %s is not: TLS needs both the certificate and its key",
                         cfg->tls_cert ? "CHCP_TLS_CERT" : "CHCP_TLS_KEY",
                         cfg->tls_cert ? "CHCP_TLS_KEY" : "CHCP_TLS_CERT");
    if (cfg->tls_client_ca && !cfg->tls_cert)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "CHCP_TLS_CLIENT_CA: mutual TLS needs TLS: set CHCP_TLS_CERT and "
                         "CHCP_TLS_KEY too");
    if (cfg->tls_min_version && !cfg->tls_cert)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "CHCP_TLS_MIN_VERSION: TLS is off (set CHCP_TLS_CERT and CHCP_TLS_KEY)");
    return 0;
}

int config_check_security(const chcp_config *cfg, chcp_error **err)
{
    if (check_tls_files(cfg, err) < 0)
        return -1;
    if (config_address_is_loopback(cfg->address) || cfg->allow_unauthenticated)
        return 0;
    if (cfg->auth_tokens_file && !cfg->tls_cert && !cfg->tls_client_ca)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "CHCP_AUTH_TOKENS_FILE: on %s (not loopback) bearer tokens would cross "
                         "the network in clear text, readable and replayable by anyone on the "
                         "path; set CHCP_TLS_CERT and CHCP_TLS_KEY, or CHCP_ALLOW_UNAUTHENTICATED"
                         "=true (--allow-unauthenticated true) to accept that risk",
                         cfg->address);
    if (!config_tcp_requires_auth(cfg))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "CHCP_ADDRESS: %s is not a loopback address and no client authentication "
                         "is configured, so anyone who can reach it could create VMs on this "
                         "host; configure CHCP_TLS_CLIENT_CA (mutual TLS) or "
                         "CHCP_AUTH_TOKENS_FILE with TLS, listen on 127.0.0.1 or a Unix socket "
                         "(CHCP_UNIX_SOCKET), or set CHCP_ALLOW_UNAUTHENTICATED=true "
                         "(--allow-unauthenticated true) to accept the risk",
                         cfg->address);
    return 0;
}

/* A user or group name to its id (at start-up, before the loop runs). */
static int resolve_name(const char *src, const char *name, bool groups, uint32_t *out,
                        chcp_error **err)
{
    char buf[16384];
    int rc;
    if (groups) {
        struct group g, *res = NULL;
        rc = getgrnam_r(name, &g, buf, sizeof(buf), &res);
        if (rc == 0 && res) {
            *out = (uint32_t)res->gr_gid;
            return 0;
        }
    } else {
        struct passwd p, *res = NULL;
        rc = getpwnam_r(name, &p, buf, sizeof(buf), &res);
        if (rc == 0 && res) {
            *out = (uint32_t)res->pw_uid;
            return 0;
        }
    }
    if (rc != 0)
        return error_set_errno(err, CHCP_INVALID_ARGUMENT, rc, "%s: looking up '%s'", src, name);
    return error_set(err, CHCP_INVALID_ARGUMENT, "%s: no %s named '%s'", src,
                     groups ? "group" : "user", name);
}

int config_parse_id_list(const char *src, const char *value, bool groups, chcp_id_list *out,
                         chcp_error **err)
{
    free(out->ids);
    *out = (chcp_id_list){0};
    cleanup_free char *copy = xstrdup(value);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ')
            tok[--len] = '\0';
        if (!len)
            continue;
        if (out->n == MAX_IDS)
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: more than %d entries", src, MAX_IDS);
        uint64_t id;
        uint32_t resolved = 0;
        if (str_to_u64(tok, UINT32_MAX - 1, &id))
            resolved = (uint32_t)id;
        else if (resolve_name(src, tok, groups, &resolved, err) < 0)
            return -1;
        out->ids = xrealloc(out->ids, (out->n + 1) * sizeof(*out->ids));
        out->ids[out->n++] = resolved;
    }
    if (!out->n)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: no %s listed in '%s'", src,
                         groups ? "groups" : "users", value);
    return 0;
}
