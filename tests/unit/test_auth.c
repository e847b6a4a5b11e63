/*
 * test_auth.c - src/auth: the tokens file (format, strictness, file mode)
 * and the check of a presented token; the policy file (strict parsing) and
 * its evaluation (principal prefixes, method lists, label selectors, the
 * union of rules); authentication from a connection's identity (client
 * certificate names, Unix credentials and allow-lists, TCP requiring
 * credentials); reload keeping the old state on error and calls keeping
 * theirs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "auth/auth_internal.h"

static const char *const METHODS[] = {"CreateVm", "DeleteVm", "BootVm", "GetVmInfo", "ListVms"};

static char dir[] = "/tmp/chcp-test-auth-XXXXXX";

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *write_file(const char *name, const char *text, mode_t mode)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

static char *tokens_text(const char *const *names, const char *const *tokens, size_t n)
{
    chcp_buf b = CHCP_BUF_INIT;
    buf_append_str(&b, "# comment\n\n");
    for (size_t i = 0; i < n; i++) {
        char *h = auth_token_hash(tokens[i]);
        buf_printf(&b, "  %s\t%s  \r\n", names[i], h);
        free(h);
    }
    return buf_steal_str(&b);
}

#define TOK_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
#define TOK_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2"

static void test_token_hash_and_match(void **state)
{
    char *h = auth_token_hash("abc");
    assert_string_equal(h,
                        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(h);
    const char *names[] = {"a", "b.ops-1@x"}, *toks[] = {TOK_A, TOK_B};
    cleanup_free char *text = tokens_text(names, toks, 2);
    cleanup_free char *path = write_file("tokens", text, 0600);
    auth_tokens t;
    chcp_error *err = NULL;
    assert_int_equal(tokens_load(path, &t, &err), 0);
    assert_int_equal(t.n, 2);
    assert_string_equal(tokens_match(&t, TOK_B, strlen(TOK_B))->name, "b.ops-1@x");
    assert_string_equal(tokens_match(&t, TOK_A, strlen(TOK_A))->name, "a");
    assert_null(tokens_match(&t, TOK_A, strlen(TOK_A) - 1));
    assert_null(tokens_match(&t, "abc", 3)); /* too short to be one of ours */
    tokens_free(&t);
}

static void test_tokens_file_errors(void **state)
{
    static const struct {
        const char *text;
        mode_t mode;
        const char *want;
    } cases[] = {
        {"a sha256:00\n", 0600, "line 1: expected"},
        {"\n\na sha256:0000000000000000000000000000000000000000000000000000000000000000 x\n", 0600,
         "line 3: unexpected text after the hash"},
        {"a/b sha256:0000000000000000000000000000000000000000000000000000000000000000\n", 0600,
         "line 1: the name must be"},
        {"a sha256:000000000000000000000000000000000000000000000000000000000000000g\n", 0600,
         "line 1: expected"},
        {"a sha256:0000000000000000000000000000000000000000000000000000000000000000\n"
         "a sha256:1111111111111111111111111111111111111111111111111111111111111111\n",
         0600, "line 2: the name 'a' is used twice"},
        {"a sha256:0000000000000000000000000000000000000000000000000000000000000000\n", 0622,
         "writable by group or others (mode 0622)"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        cleanup_free char *path = write_file("bad-tokens", cases[i].text, cases[i].mode);
        auth_tokens t;
        chcp_error *err = NULL;
        assert_int_equal(tokens_load(path, &t, &err), -1);
        assert_non_null(strstr(err->message, cases[i].want));
        assert_non_null(strstr(err->message, path));
        error_free(err);
    }
    auth_tokens t;
    chcp_error *err = NULL;
    assert_int_equal(tokens_load("/nonexistent/tokens", &t, &err), -1);
    assert_non_null(strstr(err->message, "No such file"));
    error_free(err);
}

static policy *load_policy(const char *json, chcp_error **err)
{
    cleanup_free char *path = write_file("policy.json", json, 0600);
    return policy_load(path, METHODS, ARRAY_SIZE(METHODS), err);
}

static void test_policy_errors(void **state)
{
    static const struct {
        const char *json;
        const char *want;
    } cases[] = {
        {"[]", "expected an object"},
        {"{\"rule\": []}", "unknown key 'rule'"},
        {"{\"rules\": {}}", "rules: expected a list"},
        {"{\"rules\": [1]}", "rules[0]: expected an object"},
        {"{\"rules\": [{\"principals\": [], \"methods\": [\"*\"]}]}",
         "rules[0].principals: expected a non-empty list"},
        {"{\"rules\": [{\"principals\": [\"x\"], \"methods\": [\"Boot\"]}]}",
         "rules[0].methods[0]: unknown method 'Boot' (known: CreateVm, DeleteVm, BootVm, "
         "GetVmInfo, ListVms, or \"*\")"},
        {"{\"rules\": [{\"principals\": [\"x\\u0001\"], \"methods\": [\"*\"]}]}",
         "rules[0].principals[0]: expected printable text"},
        {"{\"rules\": [{\"principals\": [\"x\"], \"methods\": [\"*\"], \"vms\": [{}]}]}",
         "rules[0].vms[0]: expected an object"},
        {"{\"rules\": [{\"name\": 3, \"principals\": [\"x\"], \"methods\": [\"*\"]}]}",
         "rules[0].name: expected printable text"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        chcp_error *err = NULL;
        assert_null(load_policy(cases[i].json, &err));
        assert_non_null(err);
        if (!strstr(err->message, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err->message, cases[i].want);
        error_free(err);
    }
}

/* A transport identity with a client certificate. */
static http_peer_identity cert_identity(const char *spiffe, const char *subject,
                                        const char *const *sans, size_t n)
{
    return (http_peer_identity){.tls = true,
                                .client_cert = true,
                                .spiffe_id = spiffe,
                                .subject = subject,
                                .sans = sans,
                                .n_sans = n};
}

static auth *new_auth(const char *policy_json, const char *tokens, bool tcp_requires_auth,
                      const uint32_t *uids, size_t n_uids, const uint32_t *gids, size_t n_gids)
{
    cleanup_free char *ppath = policy_json ? write_file("p.json", policy_json, 0600) : NULL;
    cleanup_free char *tpath = tokens ? write_file("t", tokens, 0600) : NULL;
    auth_config c = {.tokens_file = tpath,
                     .policy_file = ppath,
                     .tcp_requires_auth = tcp_requires_auth,
                     .unix_uids = uids,
                     .n_unix_uids = n_uids,
                     .unix_gids = gids,
                     .n_unix_gids = n_gids,
                     .methods = METHODS,
                     .n_methods = ARRAY_SIZE(METHODS)};
    chcp_error *err = NULL;
    auth *a = auth_new(&c, &err);
    if (!a)
        fail_msg("%s", err->message);
    return a;
}

static const char POLICY[] =
    "{\"rules\": ["
    " {\"principals\": [\"spiffe://ex.org/team-*\"], \"methods\": [\"GetVmInfo\", \"ListVms\"],"
    "  \"vms\": [{\"team\": \"a\"}]},"
    " {\"principals\": [\"spiffe://ex.org/team-a\"], \"methods\": [\"CreateVm\"],"
    "  \"vms\": [{\"team\": \"a\", \"env\": \"*\"}]},"
    " {\"principals\": [\"dns:ops.ex.org\", \"uid:0\"], \"methods\": [\"*\"]}"
    "]}";

static void test_policy_evaluation(void **state)
{
    auth *a = new_auth(POLICY, NULL, true, NULL, 0, NULL, 0);
    assert_int_equal(auth_rule_count(a), 3);
    chcp_error *err = NULL;
    http_peer_identity team_a = cert_identity("spiffe://ex.org/team-a", "CN=a", NULL, 0);
    auth_subject *s = auth_authenticate(a, &team_a, NULL, &err);
    assert_non_null(s);
    assert_string_equal(auth_subject_name(s), "spiffe://ex.org/team-a");

    /* CreateVm: only the second rule; env must be present, any value. */
    assert_int_equal(auth_authorize(s, "CreateVm", &err), 0);
    auth_label ok[] = {{"env", "dev"}, {"team", "a"}}, no_env[] = {{"team", "a"}};
    assert_true(auth_labels_allowed(s, ok, 2));
    assert_false(auth_labels_allowed(s, no_env, 1));
    assert_false(auth_all_vms(s));
    chcp_buf b = CHCP_BUF_INIT;
    auth_describe_selectors(s, &b);
    buf_append_byte(&b, 0);
    assert_string_equal((char *)b.data, "{team=a,env=*}");
    buf_free(&b);

    /* GetVmInfo: the prefix rule; team=a alone is enough. */
    assert_int_equal(auth_authorize(s, "GetVmInfo", &err), 0);
    assert_true(auth_labels_allowed(s, no_env, 1));
    auth_label b_team[] = {{"team", "b"}};
    assert_false(auth_labels_allowed(s, b_team, 1));

    /* DeleteVm: named by rules, none allows it. */
    assert_int_equal(auth_authorize(s, "DeleteVm", &err), -1);
    assert_int_equal(err->code, CHCP_PERMISSION_DENIED);
    assert_string_equal(err->message, "spiffe://ex.org/team-a may not call DeleteVm: its policy "
                                      "rules do not allow this method");
    error_free(err);
    err = NULL;
    auth_subject_free(s);

    /* A SAN names the ops rule: everything, every VM. */
    const char *sans[] = {"dns:ops.ex.org"};
    http_peer_identity ops = cert_identity(NULL, "CN=ops", sans, 1);
    s = auth_authenticate(a, &ops, NULL, &err);
    assert_string_equal(auth_subject_name(s), "subject:CN=ops");
    assert_int_equal(auth_authorize(s, "DeleteVm", &err), 0);
    assert_true(auth_all_vms(s));
    assert_true(auth_labels_allowed(s, b_team, 1));
    auth_subject_free(s);

    /* Nobody names this one. */
    http_peer_identity other = cert_identity("spiffe://ex.org/x", NULL, NULL, 0);
    s = auth_authenticate(a, &other, NULL, &err);
    assert_int_equal(auth_authorize(s, "ListVms", &err), -1);
    assert_non_null(strstr(err->message, "no policy rule names it"));
    error_free(err);
    auth_subject_free(s);
    auth_free(a);
}

static void test_authentication(void **state)
{
    const char *names[] = {"ci"}, *toks[] = {TOK_A};
    cleanup_free char *tokens = tokens_text(names, toks, 1);
    uint32_t uids[] = {1000}, gids[] = {4242};
    auth *a = new_auth(NULL, tokens, true, uids, 1, gids, 1);
    chcp_error *err = NULL;

    /* TCP, nothing presented: unauthenticated, naming both ways in. */
    http_peer_identity tcp = {.tls = true};
    assert_null(auth_authenticate(a, &tcp, NULL, &err));
    assert_int_equal(err->code, CHCP_UNAUTHENTICATED);
    assert_non_null(strstr(err->message, "client certificate (mutual TLS) or a bearer token"));
    error_free(err);
    err = NULL;

    /* Tokens: scheme case-insensitive, surrounding spaces ignored. */
    auth_subject *s = auth_authenticate(a, &tcp, "bearer   " TOK_A " ", &err);
    assert_non_null(s);
    assert_string_equal(auth_subject_name(s), "token:ci");
    assert_int_equal(auth_authorize(s, "DeleteVm", &err), 0); /* no policy: everything */
    auth_subject_free(s);
    static const char *const bad[] = {"Bearer " TOK_B, "Basic eDp5", "Bearer", TOK_A};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_null(auth_authenticate(a, &tcp, bad[i], &err));
        assert_int_equal(err->code, CHCP_UNAUTHENTICATED);
        assert_null(strstr(err->message, TOK_A));
        error_free(err);
        err = NULL;
    }

    /* Unix socket: uid and every group are principals; the lists decide. */
    uint32_t groups[] = {10, 4242};
    http_peer_identity unx = {.unix_peer = true, .has_cred = true, .uid = 1000, .gid = 1000};
    s = auth_authenticate(a, &unx, NULL, &err);
    const char *const *p;
    assert_int_equal(auth_subject_principals(s, &p), 2);
    assert_string_equal(p[0], "uid:1000");
    assert_string_equal(p[1], "gid:1000");
    auth_subject_free(s);
    unx.uid = 33;
    assert_null(auth_authenticate(a, &unx, NULL, &err));
    assert_int_equal(err->code, CHCP_PERMISSION_DENIED);
    assert_string_equal(err->message,
                        "uid 33 is not allowed on this Unix socket (neither it nor its groups are "
                        "in CHCP_UNIX_ALLOWED_UIDS / CHCP_UNIX_ALLOWED_GIDS)");
    error_free(err);
    err = NULL;
    unx.groups = groups;
    unx.n_groups = 2;
    s = auth_authenticate(a, &unx, NULL, &err); /* via group 4242 */
    assert_non_null(s);
    assert_int_equal(auth_subject_principals(s, &p), 4);
    assert_string_equal(auth_subject_name(s), "uid:33");
    auth_subject_free(s);
    /* A Unix peer whose credentials are unknown cannot be on a list. */
    http_peer_identity nocred = {.unix_peer = true};
    assert_null(auth_authenticate(a, &nocred, NULL, &err));
    error_free(err);
    auth_free(a);

    /* Open loopback (nothing required): "anonymous". */
    a = new_auth(NULL, NULL, false, NULL, 0, NULL, 0);
    s = auth_authenticate(a, &tcp, "Bearer ignored-without-a-tokens-file", &err);
    assert_string_equal(auth_subject_name(s), "anonymous");
    auth_subject_free(s);
    assert_non_null(s = auth_authenticate(a, NULL, NULL, &err));
    auth_subject_free(s);
    auth_free(a);
}

static void test_reload(void **state)
{
    auth *a = new_auth(POLICY, NULL, true, NULL, 0, NULL, 0);
    chcp_error *err = NULL;
    http_peer_identity team_a = cert_identity("spiffe://ex.org/team-a", NULL, NULL, 0);
    auth_subject *before = auth_authenticate(a, &team_a, NULL, &err);
    /* Broken: refused, the old policy stays. */
    cleanup_free char *p1 = write_file("p.json", "{\"rules\": [", 0600);
    assert_int_equal(auth_reload(a, &err), -1);
    assert_non_null(strstr(err->message, "line 1"));
    error_free(err);
    err = NULL;
    assert_int_equal(auth_rule_count(a), 3);
    /* A policy that allows nothing to team-a. */
    cleanup_free char *p2 = write_file(
        "p.json", "{\"rules\": [{\"principals\": [\"x\"], \"methods\": [\"*\"]}]}", 0600);
    assert_int_equal(auth_reload(a, &err), 0);
    assert_int_equal(auth_rule_count(a), 1);
    auth_subject *after = auth_authenticate(a, &team_a, NULL, &err);
    assert_int_equal(auth_authorize(after, "ListVms", &err), -1);
    error_free(err);
    err = NULL;
    /* The call that began before keeps its policy. */
    assert_int_equal(auth_authorize(before, "ListVms", &err), 0);
    auth_subject_free(after);
    auth_subject_free(before);
    auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_hash_and_match), cmocka_unit_test(test_tokens_file_errors),
        cmocka_unit_test(test_policy_errors),        cmocka_unit_test(test_policy_evaluation),
        cmocka_unit_test(test_authentication),       cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
