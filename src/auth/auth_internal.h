/*
 * auth_internal.h - what the auth module's files share: the token list
 * (tokens.c), the policy (policy.c) and the snapshot of both that calls hold
 * while they run (auth.c). Not an interface: other modules use auth.h.
 */
#ifndef CHCP_AUTH_INTERNAL_H
#define CHCP_AUTH_INTERNAL_H

#include "auth/auth.h"

#define AUTH_TOKEN_NAME_MAX 64
#define AUTH_HASH_LEN 32 /* SHA-256 */
/* Presented tokens shorter than this are refused before hashing. */
#define AUTH_TOKEN_MIN_LEN 32
#define AUTH_TOKEN_MAX_LEN 4096
/* Token and policy files larger than this are refused. */
#define AUTH_FILE_MAX ((size_t)1 << 20)

/* ---- tokens.c ------------------------------------------------------------ */

typedef struct auth_token {
    char name[AUTH_TOKEN_NAME_MAX + 1];
    uint8_t hash[AUTH_HASH_LEN];
} auth_token;

typedef struct auth_tokens {
    auth_token *v;
    size_t n;
} auth_tokens;

int tokens_load(const char *path, auth_tokens *out, chcp_error **err);
void tokens_free(auth_tokens *t);
/* The entry whose hash is SHA-256(token), compared in constant time with
 * every entry; NULL when none. */
const auth_token *tokens_match(const auth_tokens *t, const char *token, size_t len);
void sha256(const void *data, size_t len, uint8_t out[AUTH_HASH_LEN]);

/* Read a whole configuration file that only its owner (root or this
 * process's user) may change: a regular file, not writable by group or
 * others, at most AUTH_FILE_MAX bytes. */
int auth_read_file(const char *path, const char *what, chcp_buf *out, chcp_error **err);

/* ---- policy.c ------------------------------------------------------------ */

typedef struct policy_selector {
    auth_label *labels; /* all must match; value "*": the key is present */
    size_t n;
} policy_selector;

typedef struct policy_rule {
    char *name;        /* "rules[2]" or the rule's own "name" */
    char **principals; /* exact, or a prefix ending in '*' */
    size_t n_principals;
    char **methods; /* NULL with all_methods */
    size_t n_methods;
    bool all_methods;
    policy_selector *selectors; /* none: every VM */
    size_t n_selectors;
} policy_rule;

typedef struct policy {
    policy_rule *rules;
    size_t n_rules;
} policy;

policy *policy_load(const char *path, const char *const *methods, size_t n_methods,
                    chcp_error **err);
void policy_free(policy *p);
bool policy_rule_names(const policy_rule *r, const char *const *principals, size_t n);
bool policy_rule_allows(const policy_rule *r, const char *method);
bool policy_selector_matches(const policy_selector *s, const auth_label *labels, size_t n);

#endif
