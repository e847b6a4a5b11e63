/*
 * auth.c - authentication and authorization decisions: a caller's
 * principals from its connection (client certificate, Unix credentials) and
 * its bearer token, then the policy rules that name it.
 *
 * Tokens and policy live in a refcounted snapshot: a reload (SIGHUP) builds
 * a new one from the files and swaps it in only when both parsed, and a call
 * keeps the snapshot it was authorized with until it ends, so a rule can
 * never change under a running call.
 */
#include "auth/auth_internal.h"

#include <string.h>
#include <strings.h>

typedef struct auth_state {
    unsigned refs;
    auth_tokens tokens;
    policy *pol; /* NULL: no policy file */
} auth_state;

struct auth {
    char *tokens_file, *policy_file;
    bool tcp_requires_auth;
    uint32_t *unix_uids, *unix_gids;
    size_t n_unix_uids, n_unix_gids;
    char **methods;
    size_t n_methods;
    auth_state *state;
};

struct auth_subject {
    auth_state *state;
    char **principals;
    size_t n_principals;
    const char *name;
    const policy_rule **granted; /* rules that allowed the method */
    size_t n_granted;
    bool all_vms;
};

static void state_unref(auth_state *st)
{
    if (!st || --st->refs > 0)
        return;
    tokens_free(&st->tokens);
    policy_free(st->pol);
    free(st);
}

static auth_state *state_load(const auth *a, chcp_error **err)
{
    auth_state *st = xcalloc(1, sizeof(*st));
    st->refs = 1;
    if (a->tokens_file && tokens_load(a->tokens_file, &st->tokens, err) < 0) {
        state_unref(st);
        return NULL;
    }
    if (a->policy_file) {
        st->pol = policy_load(a->policy_file, (const char *const *)a->methods, a->n_methods, err);
        if (!st->pol) {
            state_unref(st);
            return NULL;
        }
    }
    return st;
}

static uint32_t *copy_ids(const uint32_t *v, size_t n)
{
    if (!n)
        return NULL;
    uint32_t *c = xcalloc(n, sizeof(*c));
    memcpy(c, v, n * sizeof(*c));
    return c;
}

auth *auth_new(const auth_config *cfg, chcp_error **err)
{
    auth *a = xcalloc(1, sizeof(*a));
    a->tokens_file = cfg->tokens_file ? xstrdup(cfg->tokens_file) : NULL;
    a->policy_file = cfg->policy_file ? xstrdup(cfg->policy_file) : NULL;
    a->tcp_requires_auth = cfg->tcp_requires_auth;
    a->unix_uids = copy_ids(cfg->unix_uids, cfg->n_unix_uids);
    a->n_unix_uids = cfg->n_unix_uids;
    a->unix_gids = copy_ids(cfg->unix_gids, cfg->n_unix_gids);
    a->n_unix_gids = cfg->n_unix_gids;
    a->methods = xcalloc(cfg->n_methods + 1, sizeof(char *));
    for (size_t i = 0; i < cfg->n_methods; i++)
        a->methods[a->n_methods++] = xstrdup(cfg->methods[i]);
    a->state = state_load(a, err);
    if (!a->state) {
        auth_free(a);
        return NULL;
    }
    return a;
}

void auth_free(auth *a)
{
    if (!a)
        return;
    state_unref(a->state);
    free(a->tokens_file);
    free(a->policy_file);
    free(a->unix_uids);
    free(a->unix_gids);
    for (size_t i = 0; i < a->n_methods; i++)
        free(a->methods[i]);
    free(a->methods);
    free(a);
}

int auth_reload(auth *a, chcp_error **err)
{
    auth_state *st = state_load(a, err);
    if (!st)
        return -1;
    state_unref(a->state);
    a->state = st;
    return 0;
}

size_t auth_token_count(const auth *a)
{
    return a->state->tokens.n;
}

size_t auth_rule_count(const auth *a)
{
    return a->state->pol ? a->state->pol->n_rules : 0;
}

bool auth_has_policy(const auth *a)
{
    return a->state->pol != NULL;
}

/* ---- authentication ------------------------------------------------------------ */

static void add_principal(auth_subject *s, char *name)
{
    s->principals = xrealloc(s->principals, (s->n_principals + 1) * sizeof(char *));
    s->principals[s->n_principals++] = name;
}

static bool has_principal(const auth_subject *s, const char *name)
{
    for (size_t i = 0; i < s->n_principals; i++)
        if (strcmp(s->principals[i], name) == 0)
            return true;
    return false;
}

static void add_certificate(auth_subject *s, const http_peer_identity *id)
{
    if (!id || !id->client_cert)
        return;
    if (id->spiffe_id)
        add_principal(s, xstrdup(id->spiffe_id));
    if (id->subject)
        add_principal(s, xasprintf("subject:%s", id->subject));
    for (size_t i = 0; i < id->n_sans; i++)
        add_principal(s, xstrdup(id->sans[i]));
}

static bool id_listed(uint32_t id, const uint32_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == id)
            return true;
    return false;
}

/* Unix socket: uid:N and gid:N principals, and the allow-lists. */
static int add_unix(const auth *a, auth_subject *s, const http_peer_identity *id, chcp_error **err)
{
    bool lists = a->n_unix_uids || a->n_unix_gids;
    if (!id->has_cred) {
        if (lists)
            return error_set(err, CHCP_UNAUTHENTICATED,
                             "the Unix socket peer's credentials are unknown");
        return 0;
    }
    add_principal(s, xasprintf("uid:%u", id->uid));
    add_principal(s, xasprintf("gid:%u", id->gid));
    bool allowed = id_listed(id->uid, a->unix_uids, a->n_unix_uids) ||
                   id_listed(id->gid, a->unix_gids, a->n_unix_gids);
    for (size_t i = 0; i < id->n_groups; i++) {
        char name[24];
        snprintf(name, sizeof(name), "gid:%u", id->groups[i]);
        if (!has_principal(s, name))
            add_principal(s, xstrdup(name));
        allowed = allowed || id_listed(id->groups[i], a->unix_gids, a->n_unix_gids);
    }
    if (lists && !allowed)
        return error_set(err, CHCP_PERMISSION_DENIED,
                         "uid %u is not allowed on this Unix socket (neither it nor its groups "
                         "are in CHCP_UNIX_ALLOWED_UIDS / CHCP_UNIX_ALLOWED_GIDS)",
                         id->uid);
    return 0;
}

/* "Bearer <token>" -> token:<name>. A header without tokens configured is
 * somebody else's business (a proxy's) and ignored. */
static int add_token(const auth *a, auth_subject *s, const char *authorization, chcp_error **err)
{
    if (!authorization || !a->tokens_file)
        return 0;
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return error_set(err, CHCP_UNAUTHENTICATED,
                         "the Authorization header must be \"Bearer <token>\"");
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len && tok[len - 1] == ' ')
        len--;
    const auth_token *t = tokens_match(&a->state->tokens, tok, len);
    if (!t)
        return error_set(err, CHCP_UNAUTHENTICATED, "the bearer token is not valid");
    add_principal(s, xasprintf("token:%s", t->name));
    return 0;
}

/* spiffe > token > subject > SAN > uid > anonymous. */
static const char *pick_name(const auth_subject *s)
{
    static const char *const order[] = {
        "spiffe://", "token:", "subject:", "dns:", "uri:", "email:", "ip:", "uid:"};
    for (size_t k = 0; k < ARRAY_SIZE(order); k++)
        for (size_t i = 0; i < s->n_principals; i++)
            if (strncasecmp(s->principals[i], order[k], strlen(order[k])) == 0)
                return s->principals[i];
    return s->n_principals ? s->principals[0] : "anonymous";
}

auth_subject *auth_authenticate(auth *a, const http_peer_identity *id, const char *authorization,
                                chcp_error **err)
{
    auth_subject *s = xcalloc(1, sizeof(*s));
    s->state = a->state;
    s->state->refs++;
    bool is_unix = id && id->unix_peer;
    add_certificate(s, id);
    if (add_token(a, s, authorization, err) < 0 || (is_unix && add_unix(a, s, id, err) < 0)) {
        auth_subject_free(s);
        return NULL;
    }
    if (!s->n_principals) {
        if (!is_unix && a->tcp_requires_auth) {
            error_set(err, CHCP_UNAUTHENTICATED,
                      "authentication required: present a client certificate (mutual TLS)%s",
                      a->tokens_file ? " or a bearer token (Authorization: Bearer ...)" : "");
            auth_subject_free(s);
            return NULL;
        }
        add_principal(s, xstrdup("anonymous"));
    }
    s->name = pick_name(s);
    return s;
}

void auth_subject_free(auth_subject *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_principals; i++)
        free(s->principals[i]);
    free(s->principals);
    free(s->granted);
    state_unref(s->state);
    free(s);
}

const char *auth_subject_name(const auth_subject *s)
{
    return s->name;
}

size_t auth_subject_principals(const auth_subject *s, const char *const **out)
{
    *out = (const char *const *)s->principals;
    return s->n_principals;
}

/* ---- authorization ----------------------------------------------------------- */

int auth_authorize(auth_subject *s, const char *method, chcp_error **err)
{
    const policy *p = s->state->pol;
    free(s->granted);
    s->granted = NULL;
    s->n_granted = 0;
    s->all_vms = p == NULL;
    if (!p)
        return 0;
    bool named = false;
    s->granted = xcalloc(p->n_rules + 1, sizeof(*s->granted));
    for (size_t i = 0; i < p->n_rules; i++) {
        const policy_rule *r = &p->rules[i];
        if (!policy_rule_names(r, (const char *const *)s->principals, s->n_principals))
            continue;
        named = true;
        if (!policy_rule_allows(r, method))
            continue;
        s->granted[s->n_granted++] = r;
        s->all_vms = s->all_vms || r->n_selectors == 0;
    }
    if (s->n_granted)
        return 0;
    if (!named)
        return error_set(err, CHCP_PERMISSION_DENIED, "%s may not call %s: no policy rule names it",
                         s->name, method);
    return error_set(err, CHCP_PERMISSION_DENIED,
                     "%s may not call %s: its policy rules do not allow this method", s->name,
                     method);
}

bool auth_all_vms(const auth_subject *s)
{
    return s->all_vms;
}

bool auth_labels_allowed(const auth_subject *s, const auth_label *labels, size_t n)
{
    if (s->all_vms)
        return true;
    for (size_t i = 0; i < s->n_granted; i++) {
        const policy_rule *r = s->granted[i];
        for (size_t j = 0; j < r->n_selectors; j++)
            if (policy_selector_matches(&r->selectors[j], labels, n))
                return true;
    }
    return false;
}

void auth_describe_selectors(const auth_subject *s, chcp_buf *out)
{
    size_t shown = 0;
    for (size_t i = 0; i < s->n_granted; i++) {
        const policy_rule *r = s->granted[i];
        for (size_t j = 0; j < r->n_selectors; j++) {
            const policy_selector *sel = &r->selectors[j];
            buf_append_str(out, shown++ ? " or {" : "{");
            for (size_t k = 0; k < sel->n; k++)
                buf_printf(out, "%s%s=%s", k ? "," : "", sel->labels[k].key, sel->labels[k].value);
            buf_append_byte(out, '}');
        }
    }
    if (!shown)
        buf_append_str(out, "(none)");
}
