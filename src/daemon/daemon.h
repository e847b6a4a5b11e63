/*
 * daemon.h - the chcp-api process shell: configuration (environment and
 * command line), and running the daemon (loop, listeners, signals, health).
 *
 * The configuration parser is pure: it reads settings through a getenv-like
 * callback and an argv, touches nothing else, and reports the first bad
 * setting as a chcp_error naming the variable or flag. That keeps it testable
 * without starting anything (tests/unit/test_config.c) and lets main() map
 * "bad configuration" to exit code 2 in one place. docs/config.md is the
 * operator-facing description of every setting below; keep them in step.
 */
#ifndef CHCP_DAEMON_H
#define CHCP_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "net/net.h"
#include "transport/transport.h"

/* Exit codes of chcp-api (documented in docs/config.md). */
enum {
    CHCP_EXIT_OK = 0,
    CHCP_EXIT_FAILURE = 1, /* could not start: listen failed, state dir unusable */
    CHCP_EXIT_CONFIG = 2,  /* invalid configuration (variable or flag named) */
    /* The durable state needs an operator before chcp-api can use it: a
     * corrupt chcp.db, one from a newer chcp-api, RLIMIT_NOFILE too low for
     * the VMs there. Nothing was changed and every VMM keeps running; the
     * message says how to recover (docs/durability.md). */
    CHCP_EXIT_STATE = 3,
    /* A second SIGINT/SIGTERM during graceful shutdown exits at once with
     * 128 + signal number: 130 (SIGINT) or 143 (SIGTERM). */
};

typedef enum chcp_backend {
    CHCP_BACKEND_CLOUD_HYPERVISOR = 0,
} chcp_backend;

/* A key and a value (OTLP headers, resource attributes). */
typedef struct chcp_otel_kv {
    char *key;
    char *value;
} chcp_otel_kv;

/* How one signal (traces, metrics) is exported (config_otel.c). */
typedef struct chcp_otel_signal {
    char *url; /* full URL, e.g. http://localhost:4318/v1/traces */
    chcp_otel_kv *headers;
    size_t n_headers;
    bool gzip;
    uint64_t timeout_ms; /* one attempt */
} chcp_otel_signal;

typedef struct chcp_otel_config {
    bool enabled;             /* UNKEY_CHCP_OTEL_ENABLED, default false */
    char *endpoint;           /* OTLP/HTTP base, default "localhost:4318" */
    double sampling_rate;     /* 0..1, default 1.0 */
    char *service_name;       /* default "chcp" */
    char *service_version;    /* default CHCP_VERSION */
    bool prometheus_enabled;  /* default: same as `enabled` */
    uint16_t prometheus_port; /* default 9464 */
    /* Test knobs (CHCP_OTEL_*): 0 = the specification's defaults. */
    uint64_t batch_delay_ms;     /* span batch delay, default 5000 */
    uint64_t metric_interval_ms; /* OTLP metric push interval, default 60000 */

    /* Resolved by config_otel_load() (config_otel.c, the OTEL_* variables). */
    chcp_otel_signal traces, metrics;
    chcp_otel_kv *resource; /* OTEL_RESOURCE_ATTRIBUTES minus service.name/version */
    size_t n_resource;
    uint64_t export_timeout_ms;  /* all attempts of one export; 0 = 30000 */
    size_t max_queue, max_batch; /* spans; 0 = the pipeline's defaults */
    uint32_t capture_codes;      /* bit per chcp_code: traces always exported */
    double *duration_buckets;    /* histogram bounds, seconds */
    size_t n_duration_buckets;
    bool vm_metrics;             /* per-VM metrics from vm.counters */
    uint32_t vm_metrics_max_vms; /* at most this many VMs get them */
    uint64_t vm_metrics_interval_ms;
} chcp_otel_config;

/* A list of uids or gids (CHCP_UNIX_ALLOWED_UIDS/GIDS). */
typedef struct chcp_id_list {
    uint32_t *ids;
    size_t n;
} chcp_id_list;

typedef struct chcp_config {
    /* API listeners */
    char *address;     /* CHCP_ADDRESS, default "127.0.0.1" */
    uint16_t port;     /* CHCP_PORT, default 8080; 0 picks a free port */
    char *unix_socket; /* CHCP_UNIX_SOCKET, NULL when not listening on one */

    /* TLS and client authentication (docs/security.md); NULL = off */
    char *tls_cert;                 /* CHCP_TLS_CERT, PEM chain */
    char *tls_key;                  /* CHCP_TLS_KEY */
    char *tls_client_ca;            /* CHCP_TLS_CLIENT_CA: mutual TLS */
    uint32_t tls_min_version;       /* CHCP_TLS_MIN_VERSION: 12 or 13 (default 12) */
    char *auth_tokens_file;         /* CHCP_AUTH_TOKENS_FILE: hashed bearer tokens */
    char *auth_policy_file;         /* CHCP_AUTH_POLICY_FILE: authorization rules */
    chcp_id_list unix_allowed_uids; /* CHCP_UNIX_ALLOWED_UIDS */
    chcp_id_list unix_allowed_gids; /* CHCP_UNIX_ALLOWED_GIDS */
    bool allow_unauthenticated;     /* CHCP_ALLOW_UNAUTHENTICATED: non-loopback without auth */

    /* VMM backend */
    chcp_backend backend;   /* CHCP_BACKEND */
    char *ch_endpoint;      /* CHCP_CH_ENDPOINT as given ("unix:///x"), NULL = spawn mode */
    char *ch_endpoint_path; /* the socket path inside ch_endpoint, NULL = spawn mode */
    char *ch_binary;        /* CHCP_CH_BINARY; absolute when found (see ch_binary_found) */
    bool ch_binary_found;   /* false: default name not found on PATH (spawn will fail) */
    char *state_dir;        /* CHCP_STATE_DIR, absolute, default /var/lib/chcp */
    bool orphan_keep;       /* CHCP_ORPHAN_POLICY=keep (default reap) */
    char **image_dirs;      /* CHCP_IMAGE_DIRS, absolute paths, NULL-terminated */
    size_t n_image_dirs;

    /* Resource limits for VMs */
    uint32_t max_vcpus;             /* CHCP_MAX_VCPUS, per VM */
    uint64_t max_memory_mib;        /* CHCP_MAX_MEMORY_MIB, per VM */
    uint32_t max_concurrent_starts; /* CHCP_MAX_CONCURRENT_STARTS */

    log_level log_level; /* CHCP_LOG_LEVEL, default info */
    /* CHCP_MAX_BODY_BYTES, ...: fields left 0 mean the transport's default
     * (transport_limits_default); config_transport_limits() merges them. */
    transport_limits limits;
    size_t max_message_elements;  /* CHCP_MAX_MESSAGE_ELEMENTS, 0 = rpc default */
    uint64_t shutdown_timeout_ms; /* CHCP_SHUTDOWN_TIMEOUT_MS, default 10000 */
    bool test_hooks;              /* CHCP_TEST_HOOKS: test-only endpoints */

    chcp_otel_config otel;
    net_config net; /* CHCP_NET_* / --net-* (src/net/config.c, docs/networking.md) */
} chcp_config;

typedef enum config_action {
    CONFIG_RUN,     /* start the daemon */
    CONFIG_HELP,    /* --help: print config_usage() and exit 0 */
    CONFIG_VERSION, /* --version: print config_version() and exit 0 */
} config_action;

/* getenv() or a test's fake; returns NULL when the variable is unset. */
typedef const char *(*config_getenv_fn)(const char *name, void *ud);

/*
 * Fill *cfg from defaults, then the environment, then command-line flags
 * (a flag overrides its variable only when given). On an invalid value,
 * an unknown flag or a stray argument returns -1 with a CHCP_INVALID_ARGUMENT
 * error whose message starts with the variable or flag name. *cfg is always
 * safe to config_free() afterwards. argv is not modified.
 */
int config_load(chcp_config *cfg, int argc, char *const *argv, config_getenv_fn get, void *ud,
                config_action *action, chcp_error **err);
void config_free(chcp_config *cfg);

/* The telemetry settings beyond config.c's table (config_otel.c): the
 * standard OTEL_* variables and chcp's newer UNKEY_CHCP_OTEL_* ones, run at
 * the end of config_load. */
int config_otel_load(chcp_otel_config *oc, config_getenv_fn get, void *ud, chcp_error **err);
void config_otel_free(chcp_otel_config *oc);
void config_otel_usage(FILE *out);
bool config_otel_known_env(const char *name);
/* The variables config_otel_load reads, for i = 0, 1, ... until NULL. */
const char *config_otel_variable_name(size_t i);

/* The security settings together (config_security.c), run at the end of
 * config_load: TLS files come in pairs, and a non-loopback address needs
 * client authentication (a client CA, or tokens over TLS) unless
 * allow_unauthenticated says the operator accepts the risk. */
int config_check_security(const chcp_config *cfg, chcp_error **err);
/* CHCP_ADDRESS is loopback (127.0.0.0/8, ::1, localhost). */
bool config_address_is_loopback(const char *address);
/* TCP clients must authenticate (mutual TLS, or tokens). */
bool config_tcp_requires_auth(const chcp_config *cfg);
/* "1000,users,0": numbers or names (resolved now) into *out. */
int config_parse_id_list(const char *src, const char *value, bool groups, chcp_id_list *out,
                         chcp_error **err);

/* getenv() adapter for config_load. */
const char *config_process_env(const char *name, void *ud);

/* The effective transport limits: `defaults` (transport_limits_default())
 * overridden by what the configuration set. */
void config_transport_limits(const chcp_config *cfg, const transport_limits *defaults,
                             transport_limits *out);

/* The variables config_load reads (each setting's name and alias, then
 * config_otel.c's), for i = 0, 1, ... until NULL. */
const char *config_variable_name(size_t i);

/*
 * Start-up checks beyond each value's syntax (config_env.c).
 *
 * config_unknown_variables calls `report` for every variable in `envp` that
 * looks like chcp's (CHCP_*, UNKEY_CHCP_*, UNKEY_VMCP_*, any case) but is not
 * one it reads, with the closest known name when one is near enough (a
 * likely typo) or NULL; returns how many it reported.
 */
typedef void (*config_unknown_fn)(const char *name, const char *suggestion, void *ud);
size_t config_unknown_variables(char *const *envp, config_unknown_fn report, void *ud);
/* The known variable closest to `name` when it is near enough to be a typo
 * of it (exposed for tests), else NULL. */
const char *config_suggest_variable(const char *name);

/*
 * The directories the daemon needs must be usable before it serves: the
 * state directory (when it exists already) a writable directory, every image
 * directory an existing, searchable directory, the Unix socket's directory an
 * existing one. Returns -1 with an error naming the setting (start-up
 * failure, exit code 1).
 */
int config_check_paths(const chcp_config *cfg, chcp_error **err);

void config_usage(FILE *out, const char *argv0);
void config_version(FILE *out);

/*
 * Run the daemon until SIGINT/SIGTERM: listen, serve, drain, exit. Returns
 * the process exit code (0 after a clean shutdown, 1 when startup fails,
 * with *err describing why).
 */
int daemon_run(const chcp_config *cfg, chcp_error **err);

/* RLIMIT_NOFILE: daemon_run() raises the soft limit to the hard limit
 * (each VM costs a few descriptors, docs/durability.md). `at_start` is the
 * soft limit found at start (0 before daemon_run). */
typedef struct daemon_fd_limits {
    uint64_t at_start;
    uint64_t soft;
    uint64_t hard;
} daemon_fd_limits;
void daemon_fd_limits_get(daemon_fd_limits *out);

#endif
