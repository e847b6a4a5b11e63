/*
 * config.c - chcp-api's configuration: defaults, environment variables and
 * command-line flags, validated up front.
 *
 * Every setting is one row of a table (variable, optional alias, optional
 * flag, parser, bounds, help text). config_load walks the table once: for each
 * row the value comes from its flag if given, else its variable (or alias),
 * else the default; an empty value means "default" so that deployment tools
 * can blank a variable. A bad value stops start-up with an error that names
 * exactly where it came from, so operators never have to guess which of
 * twenty variables is wrong. The help text is generated from the same table,
 * so it cannot drift from the parser.
 */
#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#define KIB ((uint64_t)1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define DAY_MS ((uint64_t)86400000)

struct setting;
typedef int (*setting_parse_fn)(chcp_config *cfg, const struct setting *s, const char *src,
                                const char *value, chcp_error **err);

typedef struct setting {
    const char *env;   /* primary variable */
    const char *alias; /* accepted when `env` is unset, or NULL */
    const char *flag;  /* "--port", or NULL for environment-only settings */
    setting_parse_fn parse;
    size_t offset; /* into chcp_config, for the generic parsers */
    size_t width;  /* size of the integer at offset */
    uint64_t min, max;
    const char *help;
} setting;

/* ---- generic parsers ---------------------------------------------------- */

static int parse_uint(chcp_config *cfg, const setting *s, const char *src, const char *value,
                      chcp_error **err)
{
    uint64_t v;
    if (!str_to_u64(value, UINT64_MAX, &v))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: not a non-negative integer: '%s'", src,
                         value);
    if (v < s->min || v > s->max)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: %s is out of range (%llu..%llu)", src,
                         value, (unsigned long long)s->min, (unsigned long long)s->max);
    void *p = (char *)cfg + s->offset;
    switch (s->width) {
    case sizeof(uint16_t):
        *(uint16_t *)p = (uint16_t)v;
        break;
    case sizeof(uint32_t):
        *(uint32_t *)p = (uint32_t)v;
        break;
    default:
        *(uint64_t *)p = v;
        break;
    }
    return 0;
}

static int parse_bool(chcp_config *cfg, const setting *s, const char *src, const char *value,
                      chcp_error **err)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    bool *p = (bool *)((char *)cfg + s->offset);
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (str_ieq(value, yes[i])) {
            *p = true;
            return 0;
        }
        if (str_ieq(value, no[i])) {
            *p = false;
            return 0;
        }
    }
    return error_set(err, CHCP_INVALID_ARGUMENT,
                     "%s: not a boolean: '%s' (use true/false, 1/0, yes/no, on/off)", src, value);
}

static char **str_field(chcp_config *cfg, const setting *s)
{
    return (char **)((char *)cfg + s->offset);
}

/* Free text (service name, endpoint host:port): any non-control bytes. */
static int parse_text(chcp_config *cfg, const setting *s, const char *src, const char *value,
                      chcp_error **err)
{
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: contains a control character", src);
    char **f = str_field(cfg, s);
    free(*f);
    *f = xstrdup(value);
    return 0;
}

static int check_abs_path(const char *src, const char *value, chcp_error **err)
{
    if (value[0] != '/')
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: not an absolute path: '%s'", src, value);
    if (strlen(value) >= 4096)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: path too long", src);
    return 0;
}

static int parse_abs_path(chcp_config *cfg, const setting *s, const char *src, const char *value,
                          chcp_error **err)
{
    if (check_abs_path(src, value, err) < 0)
        return -1;
    char **f = str_field(cfg, s);
    free(*f);
    *f = xstrdup(value);
    return 0;
}

/* ---- specific parsers --------------------------------------------------- */

static int parse_address(chcp_config *cfg, const setting *s, const char *src, const char *value,
                         chcp_error **err)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (strcmp(value, "localhost") != 0 && inet_pton(AF_INET, value, addr) != 1 &&
        inet_pton(AF_INET6, value, addr) != 1)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s: not an IPv4 or IPv6 address (or 'localhost'): '%s'", src, value);
    return parse_text(cfg, s, src, value, err);
}

static int parse_unix_socket(chcp_config *cfg, const setting *s, const char *src, const char *value,
                             chcp_error **err)
{
    if (check_abs_path(src, value, err) < 0)
        return -1;
    if (strlen(value) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: socket path longer than %zu bytes", src,
                         sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    return parse_abs_path(cfg, s, src, value, err);
}

static int parse_backend(chcp_config *cfg, const setting *s, const char *src, const char *value,
                         chcp_error **err)
{
    if (strcmp(value, "cloud-hypervisor") != 0)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s: unknown backend '%s' (supported: cloud-hypervisor)", src, value);
    cfg->backend = CHCP_BACKEND_CLOUD_HYPERVISOR;
    return 0;
}

/* CHCP_ORPHAN_POLICY (durable state, docs/durability.md). */
static int parse_orphan_policy(chcp_config *cfg, const setting *s, const char *src,
                               const char *value, chcp_error **err)
{
    if (strcmp(value, "reap") == 0)
        cfg->orphan_keep = false;
    else if (strcmp(value, "keep") == 0)
        cfg->orphan_keep = true;
    else
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not reap or keep", src, value);
    return 0;
}

static int parse_ch_endpoint(chcp_config *cfg, const setting *s, const char *src, const char *value,
                             chcp_error **err)
{
    static const char scheme[] = "unix://";
    if (!str_has_prefix(value, scheme))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s: expected unix:///path/to/api.sock, got '%s'", src, value);
    const char *path = value + strlen(scheme);
    if (check_abs_path(src, path, err) < 0)
        return -1;
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: socket path too long", src);
    free(cfg->ch_endpoint);
    free(cfg->ch_endpoint_path);
    cfg->ch_endpoint = xstrdup(value);
    cfg->ch_endpoint_path = xstrdup(path);
    return 0;
}

static int parse_tls_version(chcp_config *cfg, const setting *s, const char *src, const char *value,
                             chcp_error **err)
{
    if (strcmp(value, "1.2") == 0)
        cfg->tls_min_version = 12;
    else if (strcmp(value, "1.3") == 0)
        cfg->tls_min_version = 13;
    else
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not 1.2 or 1.3", src, value);
    return 0;
}

static int parse_uid_list(chcp_config *cfg, const setting *s, const char *src, const char *value,
                          chcp_error **err)
{
    return config_parse_id_list(src, value, false, &cfg->unix_allowed_uids, err);
}

static int parse_gid_list(chcp_config *cfg, const setting *s, const char *src, const char *value,
                          chcp_error **err)
{
    return config_parse_id_list(src, value, true, &cfg->unix_allowed_gids, err);
}

static int parse_log_level(chcp_config *cfg, const setting *s, const char *src, const char *value,
                           chcp_error **err)
{
    int l = log_level_from_name(value);
    if (l < 0)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s: unknown log level '%s' (debug, info, warn, error)", src, value);
    cfg->log_level = (log_level)l;
    return 0;
}

static void free_image_dirs(chcp_config *cfg)
{
    for (size_t i = 0; i < cfg->n_image_dirs; i++)
        free(cfg->image_dirs[i]);
    free(cfg->image_dirs);
    cfg->image_dirs = NULL;
    cfg->n_image_dirs = 0;
}

static int parse_image_dirs(chcp_config *cfg, const setting *s, const char *src, const char *value,
                            chcp_error **err)
{
    free_image_dirs(cfg);
    cfg->image_dirs = xcalloc(1, sizeof(char *));
    for (const char *p = value; *p;) {
        const char *end = strchrnul(p, ':');
        if (end > p) { /* empty elements ("a::b", trailing ':') are skipped */
            cleanup_free char *dir = xstrndup(p, (size_t)(end - p));
            if (check_abs_path(src, dir, err) < 0)
                return -1;
            cfg->image_dirs = xrealloc(cfg->image_dirs, (cfg->n_image_dirs + 2) * sizeof(char *));
            cfg->image_dirs[cfg->n_image_dirs++] = steal_pointer(&dir);
            cfg->image_dirs[cfg->n_image_dirs] = NULL;
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}

static int parse_rate(chcp_config *cfg, const setting *s, const char *src, const char *value,
                      chcp_error **err)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(v) || v < 0.0 || v > 1.0)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s: not a sampling rate between 0 and 1: '%s'", src, value);
    cfg->otel.sampling_rate = v;
    return 0;
}

/* A bare name is looked up on PATH (as execvp would, but once, at start, so
 * the daemon never depends on its environment later); a name with a slash
 * must be an executable file. */
static bool is_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static char *search_path(const char *name, const char *path_var)
{
    const char *p = path_var && *path_var ? path_var : "/usr/local/bin:/usr/bin:/bin";
    while (*p) {
        const char *end = strchrnul(p, ':');
        if (end > p && *p == '/') {
            cleanup_free char *cand = xasprintf("%.*s/%s", (int)(end - p), p, name);
            if (is_executable(cand))
                return steal_pointer(&cand);
        }
        p = *end ? end + 1 : end;
    }
    return NULL;
}

static int resolve_ch_binary(chcp_config *cfg, const char *src, const char *value,
                             const char *path_var, chcp_error **err)
{
    free(cfg->ch_binary);
    cfg->ch_binary = NULL;
    if (strchr(value, '/')) {
        if (check_abs_path(src, value, err) < 0)
            return -1;
        if (!is_executable(value))
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: not an executable file: '%s'", src,
                             value);
        cfg->ch_binary = xstrdup(value);
        cfg->ch_binary_found = true;
        return 0;
    }
    cfg->ch_binary = search_path(value, path_var);
    cfg->ch_binary_found = cfg->ch_binary != NULL;
    if (cfg->ch_binary)
        return 0;
    cfg->ch_binary = xstrdup(value);
    /* Only an explicit choice that cannot be found is an error: by default
     * the daemon still starts (attach mode, or a host being provisioned)
     * and reports the missing binary when a VM is created. */
    if (src)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' not found on PATH", src, value);
    return 0;
}

/* ---- the table ---------------------------------------------------------- */

#define FIELD(f) offsetof(chcp_config, f), sizeof(((chcp_config *)0)->f)
#define NOFIELD 0, 0

static const setting settings[] = {
    {"CHCP_PORT", NULL, "--port", parse_uint, FIELD(port), 0, 65535,
     "TCP port of the API (0 picks a free one). Default 8080."},
    {"CHCP_ADDRESS", NULL, "--address", parse_address, FIELD(address), 0, 0,
     "IP address to listen on. Default 127.0.0.1 (others need authentication)."},
    {"CHCP_UNIX_SOCKET", NULL, "--unix-socket", parse_unix_socket, FIELD(unix_socket), 0, 0,
     "Also serve the API on this Unix socket path. Default: none."},
    {"CHCP_TLS_CERT", NULL, "--tls-cert", parse_abs_path, FIELD(tls_cert), 0, 0,
     "Serve TLS with this certificate chain (PEM); reloaded on SIGHUP. Default: no TLS."},
    {"CHCP_TLS_KEY", NULL, "--tls-key", parse_abs_path, FIELD(tls_key), 0, 0,
     "The certificate's private key (PEM)."},
    {"CHCP_TLS_CLIENT_CA", NULL, "--tls-client-ca", parse_abs_path, FIELD(tls_client_ca), 0, 0,
     "Mutual TLS: clients need a certificate from these CAs (PEM). Default: none."},
    {"CHCP_TLS_MIN_VERSION", NULL, "--tls-min-version", parse_tls_version, NOFIELD, 0, 0,
     "Oldest TLS version accepted: 1.2 or 1.3. Default 1.2."},
    {"CHCP_AUTH_TOKENS_FILE", NULL, "--auth-tokens-file", parse_abs_path, FIELD(auth_tokens_file),
     0, 0, "Bearer tokens: lines of \"<name> sha256:<hex>\"; reloaded on SIGHUP. Default: none."},
    {"CHCP_AUTH_POLICY_FILE", NULL, "--auth-policy-file", parse_abs_path, FIELD(auth_policy_file),
     0, 0, "Authorization rules (JSON); reloaded on SIGHUP. Default: callers may do everything."},
    {"CHCP_UNIX_ALLOWED_UIDS", NULL, "--unix-allowed-uids", parse_uid_list, NOFIELD, 0, 0,
     "Unix-socket callers allowed by uid (numbers or names, comma-separated)."},
    {"CHCP_UNIX_ALLOWED_GIDS", NULL, "--unix-allowed-gids", parse_gid_list, NOFIELD, 0, 0,
     "Unix-socket callers allowed by group. Neither list: whoever the socket's mode lets in."},
    {"CHCP_ALLOW_UNAUTHENTICATED", NULL, "--allow-unauthenticated", parse_bool,
     FIELD(allow_unauthenticated), 0, 0,
     "Serve a non-loopback address without client authentication (unsafe). Default false."},
    {"CHCP_BACKEND", NULL, "--backend", parse_backend, NOFIELD, 0, 0,
     "VMM backend: cloud-hypervisor (the only one)."},
    {"CHCP_CH_ENDPOINT", NULL, "--ch-endpoint", parse_ch_endpoint, NOFIELD, 0, 0,
     "Attach to a running Cloud Hypervisor at unix:///path. Empty: spawn one per VM."},
    {"CHCP_CH_BINARY", NULL, "--ch-binary", NULL /* resolved after the loop */, NOFIELD, 0, 0,
     "cloud-hypervisor executable (name on PATH or absolute path). Default cloud-hypervisor."},
    {"CHCP_STATE_DIR", NULL, "--state-dir", parse_abs_path, FIELD(state_dir), 0, 0,
     "Directory for VM state and sockets (created 0700). Default /var/lib/chcp."},
    {"CHCP_ORPHAN_POLICY", NULL, "--orphan-policy", parse_orphan_policy, NOFIELD, 0, 0,
     "At start, VMM processes/VM dirs no record owns: reap (stop, remove) or keep. Default reap."},
    {"CHCP_IMAGE_DIRS", NULL, "--image-dirs", parse_image_dirs, NOFIELD, 0, 0,
     "Colon-separated absolute directories VM images may come from. Default: none."},
    {"CHCP_MAX_VCPUS", NULL, "--max-vcpus", parse_uint, FIELD(max_vcpus), 1, 254,
     "Most vCPUs one VM may have. Default 32."},
    {"CHCP_MAX_MEMORY_MIB", NULL, "--max-memory-mib", parse_uint, FIELD(max_memory_mib), 1,
     16 * 1024 * 1024, "Most memory one VM may have, in MiB. Default 65536."},
    {"CHCP_MAX_CONCURRENT_STARTS", NULL, "--max-concurrent-starts", parse_uint,
     FIELD(max_concurrent_starts), 1, 1024, "VMs that may be booting at once. Default 4."},
    {"CHCP_LOG_LEVEL", NULL, "--log-level", parse_log_level, NOFIELD, 0, 0,
     "debug, info, warn or error. Default info."},
    {"CHCP_MAX_BODY_BYTES", NULL, "--max-body-bytes", parse_uint, FIELD(limits.max_body_bytes), 1,
     GIB, "Largest request body. Default 4194304 (4 MiB)."},
    {"CHCP_MAX_HEADER_BYTES", NULL, "--max-header-bytes", parse_uint,
     FIELD(limits.max_header_bytes), 1024, 16 * MIB,
     "Largest request header block. Default 65536."},
    {"CHCP_MAX_MESSAGE_ELEMENTS", NULL, "--max-message-elements", parse_uint,
     FIELD(max_message_elements), 16, 100000000,
     "Most fields, list and map entries in one request message. Default 16384."},
    {"CHCP_MAX_CONN_BUFFER_BYTES", NULL, "--max-conn-buffer-bytes", parse_uint,
     FIELD(limits.conn_buffer_bytes), 64 * KIB, 16 * GIB,
     "Request bytes, and response bytes, one connection may hold. "
     "Default max(16 MiB, 2 x CHCP_MAX_BODY_BYTES)."},
    {"CHCP_MAX_BUFFER_BYTES", NULL, "--max-buffer-bytes", parse_uint,
     FIELD(limits.total_buffer_bytes), 64 * KIB, 256 * GIB,
     "The same for all connections (beyond 16 KiB each). "
     "Default max(64 MiB, 4 x CHCP_MAX_CONN_BUFFER_BYTES)."},
    {"CHCP_IDLE_TIMEOUT_MS", NULL, "--idle-timeout-ms", parse_uint, FIELD(limits.idle_timeout_ms),
     1, DAY_MS, "Close connections this long after their last request. Default 60000."},
    {"CHCP_HEADER_TIMEOUT_MS", NULL, "--header-timeout-ms", parse_uint,
     FIELD(limits.header_timeout_ms), 1, DAY_MS,
     "A request's header block must arrive within. Default 10000."},
    {"CHCP_READ_TIMEOUT_MS", NULL, "--read-timeout-ms", parse_uint, FIELD(limits.read_timeout_ms),
     1, DAY_MS, "A started request must arrive within. Default 30000."},
    {"CHCP_WRITE_TIMEOUT_MS", NULL, "--write-timeout-ms", parse_uint,
     FIELD(limits.write_timeout_ms), 1, DAY_MS,
     "A response must be delivered within. Default 30000."},
    {"CHCP_MAX_CONNECTION_AGE_MS", NULL, "--max-connection-age-ms", parse_uint,
     FIELD(limits.max_connection_age_ms), 1000, 30 * DAY_MS,
     "Connections are drained (GOAWAY, connection: close) at this age. Default 3600000."},
    {"CHCP_MAX_CONNECTIONS", NULL, "--max-connections", parse_uint, FIELD(limits.max_connections),
     1, 1000000, "Open TCP client connections. Default 1024."},
    {"CHCP_MAX_CONNECTIONS_PER_PEER", NULL, "--max-connections-per-peer", parse_uint,
     FIELD(limits.max_connections_per_peer), 1, 1000000,
     "Open TCP connections from one IP address. Default 256."},
    {"CHCP_MAX_UNIX_CONNECTIONS", NULL, "--max-unix-connections", parse_uint,
     FIELD(limits.max_unix_connections), 1, 1000000,
     "Open Unix-socket connections (a pool of their own). Default 64."},
    {"CHCP_H2_MAX_CONCURRENT_STREAMS", NULL, "--h2-max-concurrent-streams", parse_uint,
     FIELD(limits.h2_max_concurrent_streams), 1, INT32_MAX,
     "HTTP/2 streams per connection. Default 100."},
    {"CHCP_SHUTDOWN_TIMEOUT_MS", NULL, "--shutdown-timeout-ms", parse_uint,
     FIELD(shutdown_timeout_ms), 0, 3600000,
     "How long SIGTERM waits for in-flight requests. Default 10000."},
    {"CHCP_TEST_HOOKS", NULL, NULL, parse_bool, FIELD(test_hooks), 0, 0,
     "Test-only endpoints under /_test/. Never in production. Default false."},
    {"UNKEY_CHCP_OTEL_ENABLED", NULL, NULL, parse_bool, FIELD(otel.enabled), 0, 0,
     "Export traces and metrics over OTLP. Default false."},
    {"UNKEY_CHCP_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", NULL, parse_text,
     FIELD(otel.endpoint), 0, 0, "OTLP/HTTP collector. Default localhost:4318."},
    {"UNKEY_CHCP_OTEL_SAMPLING_RATE", "UNKEY_VMCP_OTEL_SAMPLING_RATE", NULL, parse_rate, NOFIELD, 0,
     0, "Trace sampling ratio, 0..1. Default 1.0."},
    {"UNKEY_CHCP_OTEL_SERVICE_NAME", NULL, NULL, parse_text, FIELD(otel.service_name), 0, 0,
     "service.name resource attribute. Default chcp."},
    {"UNKEY_CHCP_OTEL_SERVICE_VERSION", NULL, NULL, parse_text, FIELD(otel.service_version), 0, 0,
     "service.version resource attribute. Default: this build's version."},
    {"UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED", NULL, NULL, parse_bool, FIELD(otel.prometheus_enabled),
     0, 0, "Serve Prometheus metrics on their own port. Default: same as UNKEY_CHCP_OTEL_ENABLED."},
    {"UNKEY_CHCP_OTEL_PROMETHEUS_PORT", NULL, NULL, parse_uint, FIELD(otel.prometheus_port), 1,
     65535, "Prometheus metrics port. Default 9464."},
    {"CHCP_OTEL_BATCH_DELAY_MS", NULL, NULL, parse_uint, FIELD(otel.batch_delay_ms), 1, DAY_MS,
     "Span export batch delay (tests). Default 5000."},
    {"CHCP_OTEL_METRIC_INTERVAL_MS", NULL, NULL, parse_uint, FIELD(otel.metric_interval_ms), 1,
     DAY_MS, "OTLP metric push interval (tests). Default 60000."},
};

enum { N_SETTINGS = ARRAY_SIZE(settings) };

const char *config_variable_name(size_t i)
{
    for (size_t k = 0; k < N_SETTINGS; k++) {
        if (i-- == 0)
            return settings[k].env;
        if (settings[k].alias && i-- == 0)
            return settings[k].alias;
    }
    for (size_t k = 0; config_otel_variable_name(k); k++) /* then config_otel.c's */
        if (i-- == 0)
            return config_otel_variable_name(k);
    return net_config_variable_name(i); /* then src/net's */
}

static void config_defaults(chcp_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->address = xstrdup("127.0.0.1");
    cfg->port = 8080;
    cfg->backend = CHCP_BACKEND_CLOUD_HYPERVISOR;
    cfg->state_dir = xstrdup("/var/lib/chcp");
    cfg->image_dirs = xcalloc(1, sizeof(char *));
    cfg->max_vcpus = 32;
    cfg->max_memory_mib = 65536;
    cfg->max_concurrent_starts = 4;
    cfg->log_level = LOG_INFO;
    /* Transport limits stay 0 ("the transport's default") unless set; the
     * daemon merges them over transport_limits_default(). */
    cfg->shutdown_timeout_ms = 10000;
    cfg->otel.endpoint = xstrdup("localhost:4318");
    cfg->otel.sampling_rate = 1.0;
    cfg->otel.service_name = xstrdup("chcp");
    cfg->otel.service_version = xstrdup(CHCP_VERSION);
    cfg->otel.prometheus_port = 9464;
}

void config_free(chcp_config *cfg)
{
    free(cfg->address);
    free(cfg->unix_socket);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->tls_client_ca);
    free(cfg->auth_tokens_file);
    free(cfg->auth_policy_file);
    free(cfg->unix_allowed_uids.ids);
    free(cfg->unix_allowed_gids.ids);
    free(cfg->ch_endpoint);
    free(cfg->ch_endpoint_path);
    free(cfg->ch_binary);
    free(cfg->state_dir);
    free_image_dirs(cfg);
    free(cfg->otel.endpoint);
    free(cfg->otel.service_name);
    free(cfg->otel.service_version);
    config_otel_free(&cfg->otel);
    net_config_free(&cfg->net);
    memset(cfg, 0, sizeof(*cfg));
}

const char *config_process_env(const char *name, void *ud)
{
    return getenv(name);
}

void config_transport_limits(const chcp_config *cfg, const transport_limits *defaults,
                             transport_limits *out)
{
    const transport_limits *l = &cfg->limits;
    *out = *defaults;
    if (l->max_body_bytes)
        out->max_body_bytes = l->max_body_bytes;
    if (l->max_header_bytes)
        out->max_header_bytes = l->max_header_bytes;
    if (l->idle_timeout_ms)
        out->idle_timeout_ms = l->idle_timeout_ms;
    if (l->read_timeout_ms)
        out->read_timeout_ms = l->read_timeout_ms;
    if (l->max_connections)
        out->max_connections = l->max_connections;
    if (l->h2_max_concurrent_streams)
        out->h2_max_concurrent_streams = l->h2_max_concurrent_streams;
    if (l->header_timeout_ms)
        out->header_timeout_ms = l->header_timeout_ms;
    if (l->write_timeout_ms)
        out->write_timeout_ms = l->write_timeout_ms;
    if (l->max_connection_age_ms)
        out->max_connection_age_ms = l->max_connection_age_ms;
    if (l->max_connections_per_peer)
        out->max_connections_per_peer = l->max_connections_per_peer;
    if (l->max_unix_connections)
        out->max_unix_connections = l->max_unix_connections;
    /* 0 = derived by the transport from the body limit. */
    out->conn_buffer_bytes = l->conn_buffer_bytes;
    out->total_buffer_bytes = l->total_buffer_bytes;
}

/* Budgets must leave room for what they budget: one body of the largest
 * size per connection, one connection's worth daemon-wide. */
static int check_limits(const chcp_config *cfg, chcp_error **err)
{
    const transport_limits *l = &cfg->limits;
    size_t body = l->max_body_bytes ? l->max_body_bytes : (size_t)4 << 20;
    if (l->conn_buffer_bytes && l->conn_buffer_bytes < body + 16 * KIB)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "CHCP_MAX_CONN_BUFFER_BYTES: %zu is less than CHCP_MAX_BODY_BYTES (%zu) "
                         "plus 16384: the largest body would never fit",
                         l->conn_buffer_bytes, body);
    if (l->total_buffer_bytes && l->conn_buffer_bytes &&
        l->total_buffer_bytes < l->conn_buffer_bytes)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "CHCP_MAX_BUFFER_BYTES: %zu is less than CHCP_MAX_CONN_BUFFER_BYTES (%zu)",
                         l->total_buffer_bytes, l->conn_buffer_bytes);
    return 0;
}

/* ---- command line ------------------------------------------------------- */

static const setting *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].flag && strlen(settings[i].flag) == len &&
            memcmp(settings[i].flag, name, len) == 0)
            return &settings[i];
    return NULL;
}

/* Collect flag values by setting index (--net-* ones by src/net's index).
 * Accepts --flag=value and --flag value; no positional arguments exist. */
static int parse_argv(int argc, char *const *argv, const char *flag_values[N_SETTINGS],
                      const char *net_flags[NET_CONFIG_N_SETTINGS], config_action *action,
                      chcp_error **err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *action = CONFIG_HELP;
            continue;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            if (*action != CONFIG_HELP)
                *action = CONFIG_VERSION;
            continue;
        }
        if (!str_has_prefix(a, "--"))
            return error_set(err, CHCP_INVALID_ARGUMENT, "unexpected argument '%s' (see --help)",
                             a);
        const char *eq = strchr(a, '=');
        size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
        const setting *s = find_flag(a, name_len);
        int net = s ? -1 : net_config_flag_index(a, name_len);
        if (!s && net < 0)
            return error_set(err, CHCP_INVALID_ARGUMENT, "unknown flag '%.*s' (see --help)",
                             (int)name_len, a);
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc)
                return error_set(err, CHCP_INVALID_ARGUMENT, "%.*s: missing value", (int)name_len,
                                 a);
            value = argv[++i];
        }
        if (s)
            flag_values[s - settings] = value;
        else
            net_flags[net] = value;
    }
    return 0;
}

int config_load(chcp_config *cfg, int argc, char *const *argv, config_getenv_fn get, void *ud,
                config_action *action, chcp_error **err)
{
    const char *flag_values[N_SETTINGS] = {0};
    const char *net_flags[NET_CONFIG_N_SETTINGS] = {0};
    config_defaults(cfg);
    *action = CONFIG_RUN;
    if (parse_argv(argc, argv, flag_values, net_flags, action, err) < 0)
        return -1;
    if (*action != CONFIG_RUN)
        return 0;

    const char *ch_binary_src = NULL, *ch_binary_value = "cloud-hypervisor";
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        const char *src = s->flag, *value = flag_values[i];
        if (!value) {
            src = s->env;
            value = get(s->env, ud);
            if ((!value || !*value) && s->alias) {
                src = s->alias;
                value = get(s->alias, ud);
            }
        }
        if (!value || !*value)
            continue; /* unset or empty: keep the default */
        if (!s->parse) {
            ch_binary_src = src;
            ch_binary_value = value;
            continue;
        }
        if (s->parse(cfg, s, src, value, err) < 0)
            return -1;
    }
    if (check_limits(cfg, err) < 0 || config_check_security(cfg, err) < 0)
        return -1;
    /* Prometheus follows telemetry unless set explicitly. */
    const char *prom = get("UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED", ud);
    if (!prom || !*prom)
        cfg->otel.prometheus_enabled = cfg->otel.enabled;
    if (config_otel_load(&cfg->otel, get, ud, err) < 0 ||
        net_config_load(&cfg->net, get, ud, net_flags, err) < 0)
        return -1;
    return resolve_ch_binary(cfg, ch_binary_src, ch_binary_value, get("PATH", ud), err);
}

/* ---- help and version --------------------------------------------------- */

void config_usage(FILE *out, const char *argv0)
{
    fprintf(out,
            "Usage: %s [flags]\n"
            "\n"
            "chcp-api: the Cloud Hypervisor control plane daemon. Serves\n"
            "cloudhypervisor.v1.VmService over Connect, gRPC and gRPC-Web (HTTP/1.1 and h2c)\n"
            "and GET /health. Configured by environment variables; a flag, when given,\n"
            "overrides its variable. Empty variables mean the default.\n"
            "\n"
            "  -h, --help      this text\n"
            "  -V, --version   version and git revision\n"
            "\n",
            argv0);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        char names[96];
        snprintf(names, sizeof(names), "%s%s%s%s%s", s->flag ? s->flag : "", s->flag ? ", " : "",
                 s->env, s->alias ? " (or " : "", s->alias ? s->alias : "");
        fprintf(out, "  %s%s\n      %s\n", names, s->alias ? ")" : "", s->help);
    }
    config_otel_usage(out);
    net_config_usage(out);
    fprintf(out, "\nExit codes: 0 clean shutdown, 1 start-up failure, 2 invalid configuration,\n"
                 "130/143 second SIGINT/SIGTERM during shutdown. See docs/config.md.\n");
}

void config_version(FILE *out)
{
    fprintf(out, "chcp-api %s (git %s)\n", CHCP_VERSION, CHCP_GIT_REV);
}
