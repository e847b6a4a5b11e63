/*
 * test_config_security.c - the security settings as config_load sees them
 * (src/daemon/config_security.c): the loopback default, which addresses are
 * loopback, the refusal of a non-loopback address without authentication
 * and its opt-in, tokens in clear text, TLS files in pairs, and uid/gid
 * lists by number and by name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "daemon/daemon.h"

static const char *fake_env(const char *name, void *ud)
{
    for (const char *const *kv = ud; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

/* config_load with these variables; the error message (or NULL) in *msg. */
static int load(const char *const *env, chcp_config *cfg, char **msg)
{
    char *argv[] = {"chcp-api", NULL};
    config_action action;
    chcp_error *err = NULL;
    int rc = config_load(cfg, 1, argv, fake_env, (void *)env, &action, &err);
    *msg = err ? xstrdup(err->message) : NULL;
    error_free(err);
    return rc;
}

static void test_loopback(void **state)
{
    static const char *const yes[] = {"127.0.0.1", "127.1.2.3",        "localhost",
                                      "::1",       "::ffff:127.0.0.1", NULL};
    static const char *const no[] = {"0.0.0.0",         "::",        "10.0.0.1",
                                     "::ffff:10.0.0.1", "128.0.0.1", "fe80::1"};
    for (size_t i = 0; yes[i]; i++)
        assert_true(config_address_is_loopback(yes[i]));
    for (size_t i = 0; i < ARRAY_SIZE(no); i++)
        assert_false(config_address_is_loopback(no[i]));
}

static void test_default_and_refusals(void **state)
{
    chcp_config cfg;
    char *msg;
    const char *plain[] = {"PATH", "/nonexistent", NULL};
    assert_int_equal(load(plain, &cfg, &msg), 0);
    assert_string_equal(cfg.address, "127.0.0.1");
    assert_false(config_tcp_requires_auth(&cfg));
    config_free(&cfg);

    const char *wild[] = {"CHCP_ADDRESS", "0.0.0.0", NULL};
    assert_int_equal(load(wild, &cfg, &msg), -1);
    assert_true(str_has_prefix(msg, "CHCP_ADDRESS: 0.0.0.0 is not a loopback address"));
    assert_non_null(strstr(msg, "CHCP_ALLOW_UNAUTHENTICATED=true"));
    free(msg);
    config_free(&cfg);

    const char *opt_in[] = {"CHCP_ADDRESS", "::", "CHCP_ALLOW_UNAUTHENTICATED", "yes", NULL};
    assert_int_equal(load(opt_in, &cfg, &msg), 0);
    assert_true(cfg.allow_unauthenticated);
    config_free(&cfg);

    const char *clear_tokens[] = {"CHCP_ADDRESS", "10.1.2.3", "CHCP_AUTH_TOKENS_FILE",
                                  "/etc/chcp/tokens", NULL};
    assert_int_equal(load(clear_tokens, &cfg, &msg), -1);
    assert_true(str_has_prefix(msg, "CHCP_AUTH_TOKENS_FILE: on 10.1.2.3 (not loopback) bearer"));
    free(msg);
    config_free(&cfg);

    const char *mtls[] = {"CHCP_ADDRESS",
                          "0.0.0.0",
                          "CHCP_TLS_CERT",
                          "/c.pem",
                          "CHCP_TLS_KEY",
                          "/k.pem",
                          "CHCP_TLS_CLIENT_CA",
                          "/ca.pem",
                          "CHCP_TLS_MIN_VERSION",
                          "1.3",
                          NULL};
    assert_int_equal(load(mtls, &cfg, &msg), 0);
    assert_true(config_tcp_requires_auth(&cfg));
    assert_int_equal(cfg.tls_min_version, 13);
    config_free(&cfg);

    const char *tls_tokens[] = {"CHCP_ADDRESS",
                                "0.0.0.0",
                                "CHCP_TLS_CERT",
                                "/c.pem",
                                "CHCP_TLS_KEY",
                                "/k.pem",
                                "CHCP_AUTH_TOKENS_FILE",
                                "/etc/chcp/tokens",
                                NULL};
    assert_int_equal(load(tls_tokens, &cfg, &msg), 0);
    config_free(&cfg);

    const char *half[] = {"CHCP_TLS_KEY", "/k.pem", NULL};
    assert_int_equal(load(half, &cfg, &msg), -1);
    assert_string_equal(msg, "CHCP_TLS_KEY is set but CHCP_TLS_CERT is not: TLS needs both the "
                             "certificate and its key");
    free(msg);
    config_free(&cfg);
}

static void test_id_lists(void **state)
{
    chcp_id_list l = {0};
    chcp_error *err = NULL;
    assert_int_equal(config_parse_id_list("X", " 0, 1000 ,root", false, &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.ids[0], 0);
    assert_int_equal(l.ids[1], 1000);
    assert_int_equal(l.ids[2], 0);
    assert_int_equal(config_parse_id_list("X", "root", true, &l, &err), 0); /* group root */
    assert_int_equal(l.n, 1);
    assert_int_equal(config_parse_id_list("X", "nobody-at-all-x", false, &l, &err), -1);
    assert_string_equal(err->message, "X: no user named 'nobody-at-all-x'");
    error_free(err);
    err = NULL;
    assert_int_equal(config_parse_id_list("X", " , ", false, &l, &err), -1);
    error_free(err);
    free(l.ids);

    chcp_config cfg;
    char *msg;
    const char *env[] = {"CHCP_UNIX_ALLOWED_UIDS", "0,1", "CHCP_UNIX_ALLOWED_GIDS", "0", NULL};
    assert_int_equal(load(env, &cfg, &msg), 0);
    assert_int_equal(cfg.unix_allowed_uids.n, 2);
    assert_int_equal(cfg.unix_allowed_gids.n, 1);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_default_and_refusals),
        cmocka_unit_test(test_id_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
