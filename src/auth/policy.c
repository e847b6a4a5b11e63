/*
 * policy.c - the authorization policy: a JSON file (read with jansson, like
 * the rest of chcp's JSON) of rules, each naming principals, the methods
 * they may call and, optionally, the VMs they may touch by label:
 *
 *   {"rules": [
 *     {"name": "deployer-a",
 *      "principals": ["spiffe://example.org/deploy/a", "token:ci-a"],
 *      "methods": ["CreateVm", "BootVm", "GetVmInfo", "ListVms", "DeleteVm"],
 *      "vms": [{"team": "a"}, {"team": "shared", "env": "*"}]},
 *     {"principals": ["uid:0"], "methods": ["*"]}
 *   ]}
 *
 * A principal ending in '*' matches by prefix. "vms" is a list of label
 * selectors, any of which may match; within one, every key must be present
 * with that value ("*": any value). Without "vms" a rule covers every VM.
 * The file is checked strictly (unknown keys, unknown methods, duplicate keys
 * and malformed entries are errors naming the place), because a typo in a
 * policy must not silently grant or deny. Evaluation is in auth.c.
 */
#include "auth/auth_internal.h"

#include <jansson.h>
#include <string.h>

#define POLICY_MAX_RULES 4096
#define POLICY_TEXT_MAX 1024

static bool text_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > POLICY_TEXT_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static void rule_free(policy_rule *r)
{
    free(r->name);
    for (size_t i = 0; i < r->n_principals; i++)
        free(r->principals[i]);
    free(r->principals);
    for (size_t i = 0; i < r->n_methods; i++)
        free(r->methods[i]);
    free(r->methods);
    for (size_t i = 0; i < r->n_selectors; i++) {
        for (size_t j = 0; j < r->selectors[i].n; j++) {
            free((char *)r->selectors[i].labels[j].key);
            free((char *)r->selectors[i].labels[j].value);
        }
        free(r->selectors[i].labels);
    }
    free(r->selectors);
}

void policy_free(policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_rules; i++)
        rule_free(&p->rules[i]);
    free(p->rules);
    free(p);
}

/* A non-empty array of printable strings, copied. */
static int strings(json_t *v, const char *where, const char *key, char ***out, size_t *n,
                   chcp_error **err)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s.%s: expected a non-empty list of strings",
                         where, key);
    *out = xcalloc(json_array_size(v), sizeof(char *));
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || !text_ok(json_string_value(e)))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s.%s[%zu]: expected printable text (1-%d characters)", where, key, i,
                             POLICY_TEXT_MAX);
        (*out)[(*n)++] = xstrdup(json_string_value(e));
    }
    return 0;
}

static int check_principals(const policy_rule *r, const char *where, chcp_error **err)
{
    for (size_t i = 0; i < r->n_principals; i++) {
        const char *p = r->principals[i], *star = strchr(p, '*');
        if (star && star[1] != '\0')
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s.principals[%zu]: '*' may only end a principal (a prefix match)",
                             where, i);
        if (strcmp(p, "*") == 0)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s.principals[%zu]: a bare '*' would name everyone, the "
                             "unauthenticated included; name them (\"anonymous\" is the caller "
                             "without credentials)",
                             where, i);
    }
    return 0;
}

static int check_methods(policy_rule *r, const char *where, const char *const *known,
                         size_t n_known, chcp_error **err)
{
    for (size_t i = 0; i < r->n_methods; i++) {
        if (strcmp(r->methods[i], "*") == 0) {
            r->all_methods = true;
            continue;
        }
        bool found = false;
        for (size_t k = 0; k < n_known && !found; k++)
            found = strcmp(known[k], r->methods[i]) == 0;
        if (!found) {
            chcp_buf list = CHCP_BUF_INIT;
            for (size_t k = 0; k < n_known; k++)
                buf_printf(&list, "%s%s", k ? ", " : "", known[k]);
            buf_append_byte(&list, 0);
            error_set(err, CHCP_INVALID_ARGUMENT,
                      "%s.methods[%zu]: unknown method '%s' (known: %s, or \"*\")", where, i,
                      r->methods[i], (const char *)list.data);
            buf_free(&list);
            return -1;
        }
    }
    return 0;
}

static int selector(json_t *v, const char *where, size_t idx, policy_selector *out,
                    chcp_error **err)
{
    if (!json_is_object(v) || json_object_size(v) == 0)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s.vms[%zu]: expected an object of label = value (\"*\": any value)",
                         where, idx);
    out->labels = xcalloc(json_object_size(v), sizeof(*out->labels));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        if (!text_ok(key) || !json_is_string(val) || !text_ok(json_string_value(val)))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s.vms[%zu].%s: expected a label with a printable string value",
                             where, idx, key);
        out->labels[out->n].key = xstrdup(key);
        out->labels[out->n].value = xstrdup(json_string_value(val));
        out->n++;
    }
    return 0;
}

static int rule(json_t *v, size_t idx, const char *const *methods, size_t n_methods, policy_rule *r,
                chcp_error **err)
{
    char where[64];
    snprintf(where, sizeof(where), "rules[%zu]", idx);
    if (!json_is_object(v))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: expected an object", where);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        bool known = strcmp(key, "name") == 0 || strcmp(key, "principals") == 0 ||
                     strcmp(key, "methods") == 0 || strcmp(key, "vms") == 0;
        if (!known)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "%s: unknown key '%s' (expected name, principals, methods, vms)",
                             where, key);
    }
    json_t *name = json_object_get(v, "name");
    if (name && (!json_is_string(name) || !text_ok(json_string_value(name))))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s.name: expected printable text", where);
    r->name = name ? xasprintf("%s (%s)", json_string_value(name), where) : xstrdup(where);
    if (strings(json_object_get(v, "principals"), where, "principals", &r->principals,
                &r->n_principals, err) < 0 ||
        check_principals(r, where, err) < 0 ||
        strings(json_object_get(v, "methods"), where, "methods", &r->methods, &r->n_methods, err) <
            0 ||
        check_methods(r, where, methods, n_methods, err) < 0)
        return -1;
    json_t *vms = json_object_get(v, "vms");
    if (!vms)
        return 0;
    if (!json_is_array(vms) || json_array_size(vms) == 0)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s.vms: expected a non-empty list of label selectors (leave it out "
                         "for every VM)",
                         where);
    r->selectors = xcalloc(json_array_size(vms), sizeof(*r->selectors));
    size_t i;
    json_t *e;
    json_array_foreach(vms, i, e)
    {
        if (selector(e, where, i, &r->selectors[r->n_selectors++], err) < 0)
            return -1;
    }
    return 0;
}

static int parse(json_t *root, const char *const *methods, size_t n_methods, policy *p,
                 chcp_error **err)
{
    if (!json_is_object(root))
        return error_set(err, CHCP_INVALID_ARGUMENT, "expected an object {\"rules\": [...]}");
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "rules") != 0)
            return error_set(err, CHCP_INVALID_ARGUMENT, "unknown key '%s' (expected rules)", key);
    }
    json_t *rules = json_object_get(root, "rules");
    if (!json_is_array(rules))
        return error_set(err, CHCP_INVALID_ARGUMENT, "rules: expected a list");
    if (json_array_size(rules) > POLICY_MAX_RULES)
        return error_set(err, CHCP_INVALID_ARGUMENT, "rules: more than %d", POLICY_MAX_RULES);
    p->rules = xcalloc(json_array_size(rules) + 1, sizeof(*p->rules));
    size_t i;
    json_t *e;
    json_array_foreach(rules, i, e)
    {
        if (rule(e, i, methods, n_methods, &p->rules[p->n_rules++], err) < 0)
            return -1;
    }
    return 0;
}

policy *policy_load(const char *path, const char *const *methods, size_t n_methods,
                    chcp_error **err)
{
    chcp_buf text = CHCP_BUF_INIT;
    if (auth_read_file(path, "policy file", &text, err) < 0) {
        buf_free(&text);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)text.data, text.len, JSON_REJECT_DUPLICATES, &jerr);
    buf_free(&text);
    if (!root) {
        error_set(err, CHCP_INVALID_ARGUMENT, "policy file %s, line %d: %s", path, jerr.line,
                  jerr.text);
        return NULL;
    }
    policy *p = xcalloc(1, sizeof(*p));
    int rc = parse(root, methods, n_methods, p, err);
    json_decref(root);
    if (rc < 0) {
        error_prefix(*err, "policy file %s", path);
        policy_free(p);
        return NULL;
    }
    return p;
}

static bool principal_matches(const char *pattern, const char *name)
{
    size_t len = strlen(pattern);
    if (len && pattern[len - 1] == '*')
        return strncmp(pattern, name, len - 1) == 0;
    return strcmp(pattern, name) == 0;
}

bool policy_rule_names(const policy_rule *r, const char *const *principals, size_t n)
{
    for (size_t i = 0; i < r->n_principals; i++)
        for (size_t j = 0; j < n; j++)
            if (principal_matches(r->principals[i], principals[j]))
                return true;
    return false;
}

bool policy_rule_allows(const policy_rule *r, const char *method)
{
    if (r->all_methods)
        return true;
    for (size_t i = 0; i < r->n_methods; i++)
        if (strcmp(r->methods[i], method) == 0)
            return true;
    return false;
}

bool policy_selector_matches(const policy_selector *s, const auth_label *labels, size_t n)
{
    for (size_t i = 0; i < s->n; i++) {
        const auth_label *want = &s->labels[i];
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            found = strcmp(labels[j].key, want->key) == 0 &&
                    (strcmp(want->value, "*") == 0 || strcmp(labels[j].value, want->value) == 0);
        if (!found)
            return false;
    }
    return true;
}
