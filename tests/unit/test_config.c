/*
 * test_config.c - chcp-api's configuration parser: defaults, environment,
 * flags overriding the environment, aliases, and that every invalid value is
 * refused with a message naming its variable or flag.
 *
 * The parser reads the environment through a callback, so these tests feed
 * it a fake environment and never touch the process's own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/daemon.h"

/* A fake environment: NULL-terminated name/value pairs. */
static const char *fake_env(const char *name, void *ud)
{
    for (const char *const *kv = ud; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

/* Load with env pairs and argv (argv[0] added here). */
static int load(chcp_config *cfg, const char *const *env, int argc, const char *const *args,
                config_action *action, chcp_error **err)
{
    char *argv[32] = {"chcp-api"};
    assert_true(argc < 31);
    for (int i = 0; i < argc; i++)
        argv[i + 1] = (char *)args[i];
    return config_load(cfg, argc + 1, argv, fake_env, (void *)env, action, err);
}

static void test_defaults(void **state)
{
    const char *env[] = {"PATH", "/nonexistent-dir", NULL};
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;
    assert_int_equal(load(&cfg, env, 0, NULL, &action, &err), 0);
    assert_null(err);
    assert_int_equal(action, CONFIG_RUN);
    assert_int_equal(cfg.port, 8080);
    assert_string_equal(cfg.address, "127.0.0.1");
    assert_null(cfg.unix_socket);
    assert_int_equal(cfg.backend, CHCP_BACKEND_CLOUD_HYPERVISOR);
    assert_null(cfg.ch_endpoint);
    assert_null(cfg.ch_endpoint_path);
    /* Not on PATH: kept as a name, reported later, not a start-up error. */
    assert_string_equal(cfg.ch_binary, "cloud-hypervisor");
    assert_false(cfg.ch_binary_found);
    assert_string_equal(cfg.state_dir, "/var/lib/chcp");
    assert_int_equal(cfg.n_image_dirs, 0);
    assert_non_null(cfg.image_dirs);
    assert_null(cfg.image_dirs[0]);
    assert_int_equal(cfg.max_vcpus, 32);
    assert_int_equal(cfg.max_memory_mib, 65536);
    assert_int_equal(cfg.max_concurrent_starts, 4);
    assert_int_equal(cfg.log_level, LOG_INFO);
    assert_int_equal(cfg.shutdown_timeout_ms, 10000);
    assert_false(cfg.test_hooks);
    assert_false(cfg.otel.enabled);
    assert_string_equal(cfg.otel.endpoint, "localhost:4318");
    assert_true(cfg.otel.sampling_rate == 1.0);
    assert_string_equal(cfg.otel.service_name, "chcp");
    assert_string_equal(cfg.otel.service_version, CHCP_VERSION);
    assert_false(cfg.otel.prometheus_enabled);
    assert_int_equal(cfg.otel.prometheus_port, 9464);
    assert_int_equal(cfg.otel.batch_delay_ms, 0); /* 0 = the exporter's default */
    assert_int_equal(cfg.otel.metric_interval_ms, 0);
    assert_false(cfg.orphan_keep);

    /* Unset transport limits take the transport's defaults... */
    transport_limits d = {.max_body_bytes = 11,
                          .max_header_bytes = 12,
                          .idle_timeout_ms = 13,
                          .read_timeout_ms = 14,
                          .max_connections = 15,
                          .h2_max_concurrent_streams = 16,
                          .h2_reset_rate_burst = 17};
    transport_limits l;
    config_transport_limits(&cfg, &d, &l);
    assert_memory_equal(&l, &d, sizeof(l));
    config_free(&cfg);
}

static void test_environment(void **state)
{
    // clang-format off
    const char *env[] = {
        "CHCP_PORT", "9000",
        "CHCP_ADDRESS", "::1",
        "CHCP_UNIX_SOCKET", "/run/chcp/api.sock",
        "CHCP_BACKEND", "cloud-hypervisor",
        "CHCP_CH_ENDPOINT", "unix:///tmp/ch.sock",
        "CHCP_CH_BINARY", "/bin/sh",
        "CHCP_STATE_DIR", "/srv/chcp",
        "CHCP_IMAGE_DIRS", "/images::/more/images:",
        "CHCP_MAX_VCPUS", "8",
        "CHCP_MAX_MEMORY_MIB", "2048",
        "CHCP_MAX_CONCURRENT_STARTS", "2",
        "CHCP_LOG_LEVEL", "DEBUG",
        "CHCP_MAX_BODY_BYTES", "1024",
        "CHCP_MAX_HEADER_BYTES", "2048",
        "CHCP_IDLE_TIMEOUT_MS", "500",
        "CHCP_READ_TIMEOUT_MS", "600",
        "CHCP_MAX_CONNECTIONS", "7",
        "CHCP_H2_MAX_CONCURRENT_STREAMS", "3",
        "CHCP_SHUTDOWN_TIMEOUT_MS", "0",
        "CHCP_TEST_HOOKS", "yes",
        "UNKEY_CHCP_OTEL_ENABLED", "TRUE",
        "UNKEY_CHCP_OTEL_ENDPOINT", "collector:4318",
        "UNKEY_CHCP_OTEL_SAMPLING_RATE", "0.25",
        "UNKEY_CHCP_OTEL_SERVICE_NAME", "chcp-test",
        "UNKEY_CHCP_OTEL_SERVICE_VERSION", "9.9.9",
        "UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED", "on",
        "UNKEY_CHCP_OTEL_PROMETHEUS_PORT", "9999",
        "CHCP_OTEL_BATCH_DELAY_MS", "100",
        "CHCP_OTEL_METRIC_INTERVAL_MS", "500",
        "CHCP_ORPHAN_POLICY", "keep",
        NULL,
    };
    // clang-format on
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;
    assert_int_equal(load(&cfg, env, 0, NULL, &action, &err), 0);
    assert_int_equal(cfg.port, 9000);
    assert_string_equal(cfg.address, "::1");
    assert_string_equal(cfg.unix_socket, "/run/chcp/api.sock");
    assert_string_equal(cfg.ch_endpoint, "unix:///tmp/ch.sock");
    assert_string_equal(cfg.ch_endpoint_path, "/tmp/ch.sock");
    assert_string_equal(cfg.ch_binary, "/bin/sh");
    assert_true(cfg.ch_binary_found);
    assert_string_equal(cfg.state_dir, "/srv/chcp");
    assert_int_equal(cfg.n_image_dirs, 2);
    assert_string_equal(cfg.image_dirs[0], "/images");
    assert_string_equal(cfg.image_dirs[1], "/more/images");
    assert_null(cfg.image_dirs[2]);
    assert_int_equal(cfg.max_vcpus, 8);
    assert_int_equal(cfg.max_memory_mib, 2048);
    assert_int_equal(cfg.max_concurrent_starts, 2);
    assert_int_equal(cfg.log_level, LOG_DEBUG);
    assert_int_equal(cfg.shutdown_timeout_ms, 0);
    assert_true(cfg.test_hooks);
    assert_true(cfg.otel.enabled);
    assert_string_equal(cfg.otel.endpoint, "collector:4318");
    assert_true(cfg.otel.sampling_rate == 0.25);
    assert_string_equal(cfg.otel.service_name, "chcp-test");
    assert_string_equal(cfg.otel.service_version, "9.9.9");
    assert_true(cfg.otel.prometheus_enabled);
    assert_int_equal(cfg.otel.prometheus_port, 9999);
    assert_int_equal(cfg.otel.batch_delay_ms, 100);
    assert_int_equal(cfg.otel.metric_interval_ms, 500);
    assert_true(cfg.orphan_keep);

    transport_limits d = {.max_body_bytes = 11,
                          .max_header_bytes = 12,
                          .idle_timeout_ms = 13,
                          .read_timeout_ms = 14,
                          .max_connections = 15,
                          .h2_max_concurrent_streams = 16,
                          .h2_reset_rate_burst = 17};
    transport_limits l;
    config_transport_limits(&cfg, &d, &l);
    assert_int_equal(l.max_body_bytes, 1024);
    assert_int_equal(l.max_header_bytes, 2048);
    assert_int_equal(l.idle_timeout_ms, 500);
    assert_int_equal(l.read_timeout_ms, 600);
    assert_int_equal(l.max_connections, 7);
    assert_int_equal(l.h2_max_concurrent_streams, 3);
    assert_int_equal(l.h2_reset_rate_burst, 17); /* not configurable: transport default */
    config_free(&cfg);
}

/* A flag wins over its variable; a variable without a flag still applies;
 * both --flag=value and --flag value work. */
static void test_flags_override(void **state)
{
    const char *env[] = {"CHCP_PORT",    "9000",           "CHCP_STATE_DIR",
                         "/from/env",    "CHCP_LOG_LEVEL", "warn",
                         "CHCP_ADDRESS", "127.0.0.1",      NULL};
    const char *args[] = {"--port=9100",   "--state-dir",
                          "/from/flag",    "--unix-socket=/tmp/x.sock",
                          "--ch-endpoint", "unix:///run/ch.sock"};
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;
    assert_int_equal(load(&cfg, env, 6, args, &action, &err), 0);
    assert_int_equal(action, CONFIG_RUN);
    assert_int_equal(cfg.port, 9100);
    assert_string_equal(cfg.state_dir, "/from/flag");
    assert_string_equal(cfg.unix_socket, "/tmp/x.sock");
    assert_string_equal(cfg.ch_endpoint_path, "/run/ch.sock");
    assert_int_equal(cfg.log_level, LOG_WARN);
    assert_string_equal(cfg.address, "127.0.0.1");
    config_free(&cfg);

    /* An invalid variable is fine when its flag overrides it. */
    const char *bad_env[] = {"CHCP_PORT", "not-a-port", NULL};
    const char *args2[] = {"--port", "0"};
    assert_int_equal(load(&cfg, bad_env, 2, args2, &action, &err), 0);
    assert_int_equal(cfg.port, 0);
    config_free(&cfg);

    /* An empty flag value means the default, overriding the variable. */
    const char *env3[] = {"CHCP_CH_ENDPOINT", "unix:///tmp/ch.sock", NULL};
    const char *args3[] = {"--ch-endpoint="};
    assert_int_equal(load(&cfg, env3, 1, args3, &action, &err), 0);
    assert_null(cfg.ch_endpoint);
    config_free(&cfg);
}

static void test_aliases_and_empty(void **state)
{
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;
    const char *env[] = {"UNKEY_VMCP_OTEL_SAMPLING_RATE",
                         "0.5",
                         "OTEL_EXPORTER_OTLP_ENDPOINT",
                         "http://otel:4318",
                         "CHCP_PORT",
                         "",
                         NULL};
    assert_int_equal(load(&cfg, env, 0, NULL, &action, &err), 0);
    assert_true(cfg.otel.sampling_rate == 0.5);
    assert_string_equal(cfg.otel.endpoint, "http://otel:4318");
    assert_int_equal(cfg.port, 8080); /* empty = default */
    config_free(&cfg);

    /* The primary name wins over the alias. */
    const char *env2[] = {"UNKEY_VMCP_OTEL_SAMPLING_RATE",
                          "0.5",
                          "UNKEY_CHCP_OTEL_SAMPLING_RATE",
                          "0",
                          "OTEL_EXPORTER_OTLP_ENDPOINT",
                          "http://otel:4318",
                          "UNKEY_CHCP_OTEL_ENDPOINT",
                          "mine:4318",
                          NULL};
    assert_int_equal(load(&cfg, env2, 0, NULL, &action, &err), 0);
    assert_true(cfg.otel.sampling_rate == 0.0);
    assert_string_equal(cfg.otel.endpoint, "mine:4318");
    config_free(&cfg);

    /* An invalid alias is named as the alias. */
    const char *env3[] = {"UNKEY_VMCP_OTEL_SAMPLING_RATE", "2", NULL};
    assert_int_equal(load(&cfg, env3, 0, NULL, &action, &err), -1);
    assert_non_null(err);
    assert_true(str_has_prefix(err->message, "UNKEY_VMCP_OTEL_SAMPLING_RATE: "));
    error_free(err);
    config_free(&cfg);
}

/* Every bad value fails, with the variable's name first in the message. */
static void test_bad_environment(void **state)
{
    static const char *const cases[][2] = {
        {"CHCP_PORT", "abc"},
        {"CHCP_PORT", "65536"},
        {"CHCP_PORT", "-1"},
        {"CHCP_PORT", "80 "},
        {"CHCP_PORT", "99999999999999999999999"},
        {"CHCP_ADDRESS", "example.com"},
        {"CHCP_ADDRESS", "300.1.1.1"},
        {"CHCP_UNIX_SOCKET", "relative.sock"},
        {"CHCP_UNIX_SOCKET",
         "/tmp/"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaa.sock"},
        {"CHCP_BACKEND", "firecracker"},
        {"CHCP_CH_ENDPOINT", "/tmp/ch.sock"},
        {"CHCP_CH_ENDPOINT", "tcp://127.0.0.1:80"},
        {"CHCP_CH_ENDPOINT", "unix://relative.sock"},
        {"CHCP_CH_BINARY", "/nonexistent/cloud-hypervisor"},
        {"CHCP_CH_BINARY", "/etc"},
        {"CHCP_CH_BINARY", "no-such-binary-anywhere"},
        {"CHCP_STATE_DIR", "var/lib/chcp"},
        {"CHCP_IMAGE_DIRS", "/images:relative"},
        {"CHCP_MAX_VCPUS", "0"},
        {"CHCP_MAX_VCPUS", "255"},
        {"CHCP_MAX_MEMORY_MIB", "0"},
        {"CHCP_MAX_MEMORY_MIB", "1.5"},
        {"CHCP_MAX_CONCURRENT_STARTS", "0"},
        {"CHCP_LOG_LEVEL", "verbose"},
        {"CHCP_MAX_BODY_BYTES", "0"},
        {"CHCP_MAX_BODY_BYTES", "4MiB"},
        {"CHCP_MAX_HEADER_BYTES", "100"},
        {"CHCP_IDLE_TIMEOUT_MS", "0"},
        {"CHCP_READ_TIMEOUT_MS", "x"},
        {"CHCP_MAX_CONNECTIONS", "0"},
        {"CHCP_H2_MAX_CONCURRENT_STREAMS", "0"},
        {"CHCP_H2_MAX_CONCURRENT_STREAMS", "4294967296"},
        {"CHCP_SHUTDOWN_TIMEOUT_MS", "soon"},
        {"CHCP_TEST_HOOKS", "maybe"},
        {"UNKEY_CHCP_OTEL_ENABLED", "enabled"},
        {"UNKEY_CHCP_OTEL_ENDPOINT", "host:4318\n"},
        {"UNKEY_CHCP_OTEL_SAMPLING_RATE", "1.01"},
        {"UNKEY_CHCP_OTEL_SAMPLING_RATE", "-0.1"},
        {"UNKEY_CHCP_OTEL_SAMPLING_RATE", "nan"},
        {"UNKEY_CHCP_OTEL_SAMPLING_RATE", "half"},
        {"UNKEY_CHCP_OTEL_SAMPLING_RATE", "0.5x"},
        {"UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED", "2"},
        {"UNKEY_CHCP_OTEL_PROMETHEUS_PORT", "0"},
        {"UNKEY_CHCP_OTEL_PROMETHEUS_PORT", "70000"},
        {"CHCP_OTEL_BATCH_DELAY_MS", "0"},
        {"CHCP_OTEL_METRIC_INTERVAL_MS", "soon"},
        {"CHCP_ORPHAN_POLICY", "adopt"},
        {"CHCP_ORPHAN_POLICY", "Reap"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const char *env[] = {cases[i][0], cases[i][1], "PATH", "/usr/bin:/bin", NULL};
        chcp_config cfg;
        config_action action;
        chcp_error *err = NULL;
        int rc = load(&cfg, env, 0, NULL, &action, &err);
        if (rc != -1 || !err)
            fail_msg("%s=%s was accepted", cases[i][0], cases[i][1]);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        cleanup_free char *prefix = xasprintf("%s: ", cases[i][0]);
        if (!str_has_prefix(err->message, prefix))
            fail_msg("%s=%s: message does not name it: %s", cases[i][0], cases[i][1], err->message);
        error_free(err);
        config_free(&cfg);
    }
}

static void test_bad_flags(void **state)
{
    static const struct {
        int argc;
        const char *args[3];
        const char *prefix;
    } cases[] = {
        {1, {"--port=http"}, "--port: "},
        {2, {"--port", "70000"}, "--port: "},
        {1, {"--port"}, "--port: missing value"},
        {1, {"--log-level=loud"}, "--log-level: "},
        {1, {"--backend=qemu"}, "--backend: "},
        {1, {"--no-such-flag=1"}, "unknown flag '--no-such-flag'"},
        {1, {"--portx=1"}, "unknown flag '--portx'"},
        {1, {"serve"}, "unexpected argument 'serve'"},
        {1, {"-p"}, "unexpected argument '-p'"},
        {2, {"--address", "localhost:80"}, "--address: "},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        chcp_config cfg;
        config_action action;
        chcp_error *err = NULL;
        int rc = load(&cfg, NULL, cases[i].argc, cases[i].args, &action, &err);
        if (rc != -1 || !err)
            fail_msg("case %zu (%s) was accepted", i, cases[i].args[0]);
        if (!str_has_prefix(err->message, cases[i].prefix))
            fail_msg("case %zu: '%s' does not start with '%s'", i, err->message, cases[i].prefix);
        error_free(err);
        config_free(&cfg);
    }
}

static void test_help_version(void **state)
{
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;
    const char *bad_env[] = {"CHCP_PORT", "bad", NULL};
    const char *h[] = {"--help"};
    /* --help works even with a broken environment. */
    assert_int_equal(load(&cfg, bad_env, 1, h, &action, &err), 0);
    assert_int_equal(action, CONFIG_HELP);
    config_free(&cfg);
    const char *v[] = {"--version"};
    assert_int_equal(load(&cfg, NULL, 1, v, &action, &err), 0);
    assert_int_equal(action, CONFIG_VERSION);
    config_free(&cfg);
    const char *both[] = {"-V", "-h"};
    assert_int_equal(load(&cfg, NULL, 2, both, &action, &err), 0);
    assert_int_equal(action, CONFIG_HELP);
    config_free(&cfg);

    /* The help text lists every variable that docs/config.md documents. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_usage(f, "chcp-api");
    fclose(f);
    static const char *const names[] = {"CHCP_PORT",
                                        "CHCP_ADDRESS",
                                        "CHCP_UNIX_SOCKET",
                                        "CHCP_BACKEND",
                                        "CHCP_CH_ENDPOINT",
                                        "CHCP_CH_BINARY",
                                        "CHCP_STATE_DIR",
                                        "CHCP_IMAGE_DIRS",
                                        "CHCP_MAX_VCPUS",
                                        "CHCP_MAX_MEMORY_MIB",
                                        "CHCP_MAX_CONCURRENT_STARTS",
                                        "CHCP_LOG_LEVEL",
                                        "CHCP_MAX_BODY_BYTES",
                                        "CHCP_MAX_HEADER_BYTES",
                                        "CHCP_IDLE_TIMEOUT_MS",
                                        "CHCP_READ_TIMEOUT_MS",
                                        "CHCP_MAX_CONNECTIONS",
                                        "CHCP_H2_MAX_CONCURRENT_STREAMS",
                                        "CHCP_SHUTDOWN_TIMEOUT_MS",
                                        "UNKEY_CHCP_OTEL_ENABLED",
                                        "UNKEY_CHCP_OTEL_ENDPOINT",
                                        "OTEL_EXPORTER_OTLP_ENDPOINT",
                                        "UNKEY_CHCP_OTEL_SAMPLING_RATE",
                                        "UNKEY_VMCP_OTEL_SAMPLING_RATE",
                                        "UNKEY_CHCP_OTEL_SERVICE_NAME",
                                        "UNKEY_CHCP_OTEL_SERVICE_VERSION",
                                        "UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED",
                                        "UNKEY_CHCP_OTEL_PROMETHEUS_PORT",
                                        "CHCP_ORPHAN_POLICY",
                                        "--orphan-policy",
                                        "--port",
                                        "--unix-socket",
                                        "--ch-binary",
                                        "--help",
                                        "--version"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (!strstr(text, names[i]))
            fail_msg("help text lacks %s", names[i]);
    free(text);
}

/* The CHCP_NET_* settings and --net-* flags are src/net's, handed over here. */
static void report_unknown(const char *name, const char *suggestion, void *ud)
{
    char *out = ud;
    snprintf(out, 128, "%s->%s", name, suggestion ? suggestion : "?");
}

static void test_networking_settings(void **state)
{
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;
    const char *env[] = {"CHCP_NET_MODE", "bridge", "CHCP_NET_MTU", "1400", NULL};
    const char *args[] = {"--net-mtu=9000", "--net-nat", "true"};
    assert_int_equal(load(&cfg, env, 3, args, &action, &err), 0);
    assert_int_equal(cfg.net.mode, NET_MODE_BRIDGE);
    assert_int_equal(cfg.net.mtu, 9000);
    assert_true(cfg.net.nat);
    assert_string_equal(cfg.net.bridge, "chcpbr0");
    config_free(&cfg);

    static const struct {
        const char *env[3];
        int argc;
        const char *args[2];
        const char *prefix;
    } bad[] = {
        {{NULL}, 1, {"--net-mode=sideways"}, "--net-mode: 'sideways'"},
        {{NULL}, 1, {"--net-mtu"}, "--net-mtu: missing value"},
        {{"CHCP_NET_IPV4_CIDR", "10.0.0.1/8", NULL}, 0, {NULL}, "CHCP_NET_IPV4_CIDR: "},
        {{NULL}, 1, {"--net-nonsense=1"}, "unknown flag '--net-nonsense'"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        err = NULL;
        assert_int_equal(load(&cfg, bad[i].env, bad[i].argc, bad[i].args, &action, &err), -1);
        if (!str_has_prefix(err->message, bad[i].prefix))
            fail_msg("case %zu: '%s' does not start with '%s'", i, err->message, bad[i].prefix);
        error_free(err);
        config_free(&cfg);
    }

    /* Known to the misspelt-variable check, and listed by --help. */
    char reported[128] = "";
    char *envp[] = {"CHCP_NET_MODE=bridge", "CHCP_NET_TAP_USR=kvm", NULL};
    assert_int_equal(config_unknown_variables(envp, report_unknown, reported), 1);
    assert_string_equal(reported, "CHCP_NET_TAP_USR->CHCP_NET_TAP_USER");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_usage(f, "chcp-api");
    fclose(f);
    assert_non_null(strstr(text, "--net-mode, CHCP_NET_MODE"));
    assert_non_null(strstr(text, "--net-seed, CHCP_NET_SEED"));
    free(text);
}

/* Prometheus is on with telemetry unless set explicitly (either way). */
static void test_prometheus_follows_telemetry(void **state)
{
    static const struct {
        const char *enabled, *prometheus;
        bool want;
    } cases[] = {
        {NULL, NULL, false},      {"true", NULL, true},    {"true", "", true},
        {"true", "false", false}, {"false", "true", true}, {"false", NULL, false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const char *env[5] = {NULL};
        size_t n = 0;
        if (cases[i].enabled) {
            env[n++] = "UNKEY_CHCP_OTEL_ENABLED";
            env[n++] = cases[i].enabled;
        }
        if (cases[i].prometheus) {
            env[n++] = "UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED";
            env[n++] = cases[i].prometheus;
        }
        chcp_config cfg;
        config_action action;
        chcp_error *err = NULL;
        assert_int_equal(load(&cfg, env, 0, NULL, &action, &err), 0);
        if (cfg.otel.prometheus_enabled != cases[i].want)
            fail_msg("case %zu: prometheus_enabled is %d", i, cfg.otel.prometheus_enabled);
        config_free(&cfg);
    }
}

/* A bare CHCP_CH_BINARY name is resolved on PATH to an absolute path. */
static void test_ch_binary_on_path(void **state)
{
    char dir[] = "/tmp/chcp-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    cleanup_free char *exe = xasprintf("%s/cloud-hypervisor", dir);
    int fd = open(exe, O_CREAT | O_WRONLY, 0755);
    assert_true(fd >= 0);
    close(fd);
    cleanup_free char *path = xasprintf("/nonexistent:%s", dir);
    const char *env[] = {"PATH", path, NULL};
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;
    assert_int_equal(load(&cfg, env, 0, NULL, &action, &err), 0);
    assert_string_equal(cfg.ch_binary, exe);
    assert_true(cfg.ch_binary_found);
    config_free(&cfg);

    /* Not executable: skipped, so not found. */
    assert_int_equal(chmod(exe, 0644), 0);
    assert_int_equal(load(&cfg, env, 0, NULL, &action, &err), 0);
    assert_false(cfg.ch_binary_found);
    config_free(&cfg);
    unlink(exe);
    rmdir(dir);
}

/* Connection fairness and memory budgets (docs/security.md): each knob
 * reaches the transport limits; budgets too small for the largest body are
 * refused at start with a message naming both settings. */
static void test_budget_and_fairness_knobs(void **state)
{
    // clang-format off
    const char *env[] = {
        "CHCP_MAX_BODY_BYTES", "1048576",
        "CHCP_MAX_CONN_BUFFER_BYTES", "2097152",
        "CHCP_MAX_BUFFER_BYTES", "8388608",
        "CHCP_MAX_MESSAGE_ELEMENTS", "100",
        "CHCP_HEADER_TIMEOUT_MS", "700",
        "CHCP_WRITE_TIMEOUT_MS", "800",
        "CHCP_MAX_CONNECTION_AGE_MS", "90000",
        "CHCP_MAX_CONNECTIONS_PER_PEER", "9",
        "CHCP_MAX_UNIX_CONNECTIONS", "5",
        "PATH", "/usr/bin:/bin",
        NULL,
    };
    // clang-format on
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;
    assert_int_equal(load(&cfg, env, 0, NULL, &action, &err), 0);
    assert_int_equal(cfg.max_message_elements, 100);
    transport_limits d, l;
    transport_limits_default(&d);
    config_transport_limits(&cfg, &d, &l);
    assert_int_equal(l.conn_buffer_bytes, 2097152);
    assert_int_equal(l.total_buffer_bytes, 8388608);
    assert_int_equal(l.header_timeout_ms, 700);
    assert_int_equal(l.write_timeout_ms, 800);
    assert_int_equal(l.max_connection_age_ms, 90000);
    assert_int_equal(l.max_connections_per_peer, 9);
    assert_int_equal(l.max_unix_connections, 5);
    config_free(&cfg);
    /* Unset budgets stay 0: the transport derives them from the body limit. */
    const char *none[] = {"PATH", "/usr/bin:/bin", NULL};
    assert_int_equal(load(&cfg, none, 0, NULL, &action, &err), 0);
    config_transport_limits(&cfg, &d, &l);
    assert_int_equal(l.conn_buffer_bytes, 0);
    assert_int_equal(l.total_buffer_bytes, 0);
    assert_int_equal(l.header_timeout_ms, 10000);
    config_free(&cfg);

    static const char *const bad[][4] = {
        {"CHCP_MAX_CONN_BUFFER_BYTES", "1048576", NULL, NULL}, /* < 4 MiB body + 16 KiB */
        {"CHCP_MAX_BODY_BYTES", "1048576", "CHCP_MAX_CONN_BUFFER_BYTES", "1048576"},
        {"CHCP_MAX_CONN_BUFFER_BYTES", "8388608", "CHCP_MAX_BUFFER_BYTES", "4194304"},
        {"CHCP_MAX_CONN_BUFFER_BYTES", "1000", NULL, NULL},
        {"CHCP_MAX_MESSAGE_ELEMENTS", "0", NULL, NULL},
        {"CHCP_HEADER_TIMEOUT_MS", "0", NULL, NULL},
        {"CHCP_WRITE_TIMEOUT_MS", "-5", NULL, NULL},
        {"CHCP_MAX_CONNECTION_AGE_MS", "10", NULL, NULL},
        {"CHCP_MAX_CONNECTIONS_PER_PEER", "0", NULL, NULL},
        {"CHCP_MAX_UNIX_CONNECTIONS", "none", NULL, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        const char *e[] = {bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL, NULL};
        if (!e[2]) {
            e[2] = "PATH";
            e[3] = "/usr/bin:/bin";
        }
        int rc = load(&cfg, e, 0, NULL, &action, &err);
        if (rc != -1 || !err)
            fail_msg("%s=%s was accepted", bad[i][0], bad[i][1]);
        if (!strstr(err->message, bad[i][0]))
            fail_msg("%s=%s: message does not name it: %s", bad[i][0], bad[i][1], err->message);
        error_free(err);
        err = NULL;
        config_free(&cfg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_flags_override),
        cmocka_unit_test(test_aliases_and_empty),
        cmocka_unit_test(test_bad_environment),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_help_version),
        cmocka_unit_test(test_ch_binary_on_path),
        cmocka_unit_test(test_prometheus_follows_telemetry),
        cmocka_unit_test(test_budget_and_fairness_knobs),
        cmocka_unit_test(test_networking_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
