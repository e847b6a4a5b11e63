/*
 * test_config_env.c - start-up checks: variables that look like chcp's but
 * are not (reported, with the known name they are a likely typo of), the
 * OTLP endpoint URLs, and the host paths the daemon needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/daemon.h"

/* ---- unknown variables ------------------------------------------------------ */

typedef struct report {
    char names[16][64];
    char suggestions[16][64];
    size_t n;
} report;

static void collect(const char *name, const char *suggestion, void *ud)
{
    report *r = ud;
    assert_true(r->n < 16);
    snprintf(r->names[r->n], 64, "%s", name);
    snprintf(r->suggestions[r->n], 64, "%s", suggestion ? suggestion : "-");
    r->n++;
}

static void test_unknown_variables(void **state)
{
    char *envp[] = {
        "PATH=/usr/bin",
        "CHCP_PORT=8080",                       /* known */
        "UNKEY_CHCP_OTEL_ENABLED=true",         /* known */
        "UNKEY_VMCP_OTEL_SAMPLING_RATE=0.5",    /* known alias */
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://x", /* not our family */
        "CHCPX_PORT=1",                         /* not our family */
        "CHCP_PROT=9000",                       /* transposition */
        "CHCP_STATEDIR=/x",                     /* missing _ */
        "CHCP_OTEL_ENABLED=true",               /* missing UNKEY_ */
        "UNKEY_CHCP_PORT=1",                    /* extra UNKEY_ */
        "chcp_log_level=debug",                 /* wrong case */
        "UNKEY_CHCP_OTEL_ENDPIONT=http://x",    /* transposition */
        "CHCP_SOMETHING_ELSE_ENTIRELY=1",       /* nothing close */
        "CHCP_=1",
        "=weird",
        "CHCP_NOVALUE",
        NULL,
    };
    report r = {0};
    size_t n = config_unknown_variables(envp, collect, &r);
    static const char *const want[][2] = {
        {"CHCP_PROT", "CHCP_PORT"},
        {"CHCP_STATEDIR", "CHCP_STATE_DIR"},
        {"CHCP_OTEL_ENABLED", "UNKEY_CHCP_OTEL_ENABLED"},
        {"UNKEY_CHCP_PORT", "CHCP_PORT"},
        {"chcp_log_level", "CHCP_LOG_LEVEL"},
        {"UNKEY_CHCP_OTEL_ENDPIONT", "UNKEY_CHCP_OTEL_ENDPOINT"},
        {"CHCP_SOMETHING_ELSE_ENTIRELY", "-"},
        {"CHCP_", "-"},
    };
    assert_int_equal(n, ARRAY_SIZE(want));
    assert_int_equal(r.n, ARRAY_SIZE(want));
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        assert_string_equal(r.names[i], want[i][0]);
        assert_string_equal(r.suggestions[i], want[i][1]);
    }
    /* A clean environment reports nothing. */
    char *clean[] = {"HOME=/root", "CHCP_STATE_DIR=/var/lib/chcp", NULL};
    r.n = 0;
    assert_int_equal(config_unknown_variables(clean, collect, &r), 0);
    assert_int_equal(config_unknown_variables(NULL, collect, &r), 0);
}

static void test_every_known_variable_is_known(void **state)
{
    /* Each name the parser reads suggests itself (distance 0) and is not
     * reported as unknown. */
    size_t i = 0;
    for (const char *name; (name = config_variable_name(i)); i++) {
        char *envp[] = {xasprintf("%s=1", name), NULL};
        report r = {0};
        assert_int_equal(config_unknown_variables(envp, collect, &r), 0);
        free(envp[0]);
        if (!str_has_prefix(name, "OTEL_")) /* the standard ones are no typo targets */
            assert_string_equal(config_suggest_variable(name), name);
    }
    assert_true(i > 50); /* config.c's table and config_otel.c's */
    /* Long names that share little get no suggestion. */
    assert_null(config_suggest_variable("CHCP_COMPLETELY_DIFFERENT_NAME"));
    assert_null(config_suggest_variable("CHCP_X"));
}

/* ---- URLs --------------------------------------------------------------------- */

static const char *fake_env(const char *name, void *ud)
{
    for (const char *const *kv = ud; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static int load_endpoint(const char *var, const char *url, chcp_config *cfg, chcp_error **err)
{
    /* The standard OTEL_* variables are read only with telemetry on. */
    const char *env[] = {var, url, "UNKEY_CHCP_OTEL_ENABLED", "true", "PATH", "/usr/bin:/bin",
                         NULL};
    char *argv[] = {"chcp-api", NULL};
    config_action action;
    return config_load(cfg, 1, argv, fake_env, (void *)env, &action, err);
}

/* The endpoint URLs are checked at start (config_otel.c), under either name. */
static void test_otlp_endpoint_urls(void **state)
{
    static const char *const good[] = {
        "localhost:4318",       "collector:4318",           "http://localhost:4318",
        "https://otel.example", "http://[::1]:4318/",       "HTTPS://c.example:443/otlp/",
        "http://10.0.0.1:4318", "https://c.example/prefix",
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        chcp_config cfg;
        chcp_error *err = NULL;
        if (load_endpoint("UNKEY_CHCP_OTEL_ENDPOINT", good[i], &cfg, &err) < 0)
            fail_msg("%s refused: %s", good[i], err->message);
        assert_string_equal(cfg.otel.endpoint, good[i]);
        config_free(&cfg);
    }
    static const char *const bad[] = {
        "ftp://collector:21",
        "http://",
        "http://:4318",
        "http://c:99999",
        "http://c:0",
        "http://c:port",
        "c:4318 extra",
        "unix:///run/otel.sock",
        "http://user:pw@c:4318",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        for (int alias = 0; alias < 2; alias++) {
            const char *var = alias ? "OTEL_EXPORTER_OTLP_ENDPOINT" : "UNKEY_CHCP_OTEL_ENDPOINT";
            chcp_config cfg;
            chcp_error *err = NULL;
            if (load_endpoint(var, bad[i], &cfg, &err) == 0)
                fail_msg("%s=%s accepted", var, bad[i]);
            cleanup_free char *prefix = xasprintf("%s: ", var);
            if (!str_has_prefix(err->message, prefix))
                fail_msg("%s: message does not name %s: %s", bad[i], var, err->message);
            assert_non_null(strstr(err->message, bad[i]));
            error_free(err);
            config_free(&cfg);
        }
    }
}

/* ---- host paths ---------------------------------------------------------------- */

static void check_fails(chcp_config *cfg, const char *needle)
{
    chcp_error *err = NULL;
    assert_int_equal(config_check_paths(cfg, &err), -1);
    assert_non_null(err);
    if (!strstr(err->message, needle))
        fail_msg("'%s' does not mention '%s'", err->message, needle);
    error_free(err);
}

static void test_check_paths(void **state)
{
    char tmpl[] = "/tmp/chcp-cfgenv-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    cleanup_free char *state_dir = xasprintf("%s/state", root);
    cleanup_free char *images = xasprintf("%s/images", root);
    cleanup_free char *file = xasprintf("%s/file", root);
    cleanup_free char *sock = xasprintf("%s/api.sock", root);
    cleanup_free char *sock_in_missing = xasprintf("%s/missing/api.sock", root);
    assert_int_equal(mkdir(images, 0755), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);

    char *dirs[] = {images, NULL};
    chcp_config cfg = {.state_dir = state_dir, .image_dirs = dirs, .n_image_dirs = 1};
    chcp_error *err = NULL;
    /* A state directory that does not exist yet is created at start. */
    assert_int_equal(config_check_paths(&cfg, &err), 0);
    cfg.unix_socket = sock;
    assert_int_equal(config_check_paths(&cfg, &err), 0);

    cfg.state_dir = file;
    check_fails(&cfg, "CHCP_STATE_DIR");
    cfg.state_dir = state_dir;

    cleanup_free char *missing = xasprintf("%s/nope", root);
    dirs[0] = missing;
    check_fails(&cfg, "CHCP_IMAGE_DIRS");
    dirs[0] = file;
    check_fails(&cfg, "not a directory");
    dirs[0] = images;

    cfg.unix_socket = sock_in_missing;
    check_fails(&cfg, "CHCP_UNIX_SOCKET");
    cfg.unix_socket = NULL;

    unlink(file);
    rmdir(images);
    rmdir(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_variables),
        cmocka_unit_test(test_every_known_variable_is_known),
        cmocka_unit_test(test_otlp_endpoint_urls),
        cmocka_unit_test(test_check_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
