/*
 * auth.h - who may call the API, and what they may touch: client
 * authentication (TLS client certificates, bearer tokens, Unix-socket peer
 * credentials) and authorization by a policy file (methods and VM label
 * selectors per identity). docs/security.md describes the model and the file
 * formats; this module only decides, it never answers or logs requests.
 *
 * A caller is known by its principals, strings that name it:
 *
 *   spiffe://trust.domain/path   the SPIFFE ID of its X.509-SVID
 *   subject:CN=x,O=y             its certificate's subject (RFC 2253)
 *   dns:host, uri:..., email:..., ip:...   its certificate's SANs
 *   token:name                   the bearer token it presented
 *   uid:N, gid:N                 Unix socket: its uid, primary and
 *                                supplementary gids (SO_PEERCRED)
 *
 * The module is a leaf (core, the transport's identity type, OpenSSL for
 * SHA-256 and constant-time comparison, jansson for the policy): the daemon
 * glues it to the rpc server's guard and VmService's access hook.
 */
#ifndef CHCP_AUTH_H
#define CHCP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "transport/transport.h"

typedef struct auth auth;
typedef struct auth_subject auth_subject;

typedef struct auth_config {
    /* Bearer tokens: "<name> sha256:<hex>" lines; NULL: tokens not accepted. */
    const char *tokens_file;
    /* The policy (JSON); NULL: every authenticated caller may do everything. */
    const char *policy_file;
    /* TCP callers must present a verified client certificate or a valid
     * token. False: TCP callers without either are "anonymous" (loopback,
     * or an operator's explicit opt-in). */
    bool tcp_requires_auth;
    /* Unix-socket callers: allowed when their uid is listed, or one of their
     * groups; no list at all: every caller the socket's file mode admits. */
    const uint32_t *unix_uids;
    size_t n_unix_uids;
    const uint32_t *unix_gids;
    size_t n_unix_gids;
    /* Method names a policy may name (anything else is a typo). */
    const char *const *methods;
    size_t n_methods;
} auth_config;

/* Reads the files. NULL with an invalid_argument error naming the file, the
 * line or rule, and what is wrong. */
auth *auth_new(const auth_config *cfg, chcp_error **err);
void auth_free(auth *a);
/* Re-read the token and policy files (SIGHUP). All or nothing: on error the
 * previous ones stay in force. Calls in progress keep the policy they began
 * with. */
int auth_reload(auth *a, chcp_error **err);
/* What is in force, for the start-up and reload log lines. */
size_t auth_token_count(const auth *a);
size_t auth_rule_count(const auth *a);
bool auth_has_policy(const auth *a);

/*
 * Establish who is calling: `identity` from the transport, `authorization`
 * the request's Authorization header (or NULL). Returns the subject, or
 * NULL with unauthenticated (no or a bad credential) or permission_denied (a
 * Unix-socket peer not on the allow-lists). The error message is meant for
 * the client and says what is missing without revealing secrets.
 */
auth_subject *auth_authenticate(auth *a, const http_peer_identity *identity,
                                const char *authorization, chcp_error **err);
void auth_subject_free(auth_subject *s);
/* The name for logs and spans: the SPIFFE ID, else the token, else the
 * certificate subject, else the first SAN, else uid:N, else "anonymous". */
const char *auth_subject_name(const auth_subject *s);
size_t auth_subject_principals(const auth_subject *s, const char *const **out);

/*
 * May the subject call `method`? On success the subject remembers which
 * rules allowed it, for the label checks below. -1 with permission_denied
 * otherwise.
 */
int auth_authorize(auth_subject *s, const char *method, chcp_error **err);

typedef struct auth_label {
    const char *key;
    const char *value;
} auth_label;

/* After auth_authorize: may the call touch a VM with these labels (all VMs
 * when no policy applies, or a rule has no selectors)? */
bool auth_labels_allowed(const auth_subject *s, const auth_label *labels, size_t n);
/* True when every VM is within reach (no per-VM filtering needed). */
bool auth_all_vms(const auth_subject *s);
/* The selectors in force, for messages: "{team=a} or {env=dev,team=b}". */
void auth_describe_selectors(const auth_subject *s, chcp_buf *out);

/* SHA-256 of a token as the tokens file spells it ("sha256:<hex>"), for
 * tools and tests. */
char *auth_token_hash(const char *token);

#endif
