/*
 * nft.c - chcp's nftables table (family inet, CHCP_NET_NFT_TABLE), through
 * libnftables: NAT chains for masquerading and port forwarding, a forward
 * chain for isolation, and per-VM rules that can be removed exactly.
 *
 * Nothing outside the table is ever read or changed. Per-VM rules carry the
 * comment "chcp vm=<id>"; removing them means listing the table (JSON, with
 * handles) and deleting those handles, and replacing them is the deletions
 * plus the new rules in one nft transaction, so a VM never has half of its
 * rules. The forward chain holds only rules derived from the configuration
 * (no VM's), so net_nft_prepare flushes and refills it at every start.
 *
 * Commands are built from values chcp checked itself (addresses it formats,
 * ports, interface names it derived or validated, VM ids of [a-z0-9-]), never
 * from client text.
 */
#include "net/net_internal.h"

#include <jansson.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct net_nft {
    struct nft_ctx *ctx;
    const net_config *cfg; /* the net_ctx's copy, which outlives this */
    pthread_mutex_t mu;
};

net_nft *net_nft_new(const net_config *cfg, chcp_error **err)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx)
        return error_set(err, CHCP_UNAVAILABLE, "libnftables: cannot create a context"), NULL;
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    net_nft *t = xcalloc(1, sizeof(*t));
    t->ctx = ctx;
    t->cfg = cfg;
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

void net_nft_free(net_nft *t)
{
    if (!t)
        return;
    nft_ctx_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Run commands as one transaction (locked by the caller). */
static int run_locked(net_nft *t, const char *cmds, const char *what, chcp_error **err)
{
    nft_ctx_output_set_flags(t->ctx, 0);
    int rc = nft_run_cmd_from_buffer(t->ctx, cmds);
    const char *msg = nft_ctx_get_error_buffer(t->ctx);
    nft_ctx_get_output_buffer(t->ctx); /* drop what the commands printed */
    if (rc != 0) {
        cleanup_free char *m = xstrdup(msg && *msg ? msg : "failed\n");
        size_t n = strlen(m);
        while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
            m[--n] = 0;
        for (char *p = m; *p; p++)
            if (*p == '\n')
                *p = ' ';
        return error_set(err, CHCP_UNAVAILABLE, "nftables: %s: %s", what, m);
    }
    return 0;
}

int net_nft_prepare(net_nft *t, chcp_error **err)
{
    const net_config *c = t->cfg;
    const char *tb = c->nft_table;
    chcp_buf b = CHCP_BUF_INIT;
    buf_printf(&b, "add table inet %s\n", tb);
    buf_printf(&b,
               "add chain inet %s prerouting { type nat hook prerouting priority -100; policy "
               "accept; }\n",
               tb);
    buf_printf(&b,
               "add chain inet %s output { type nat hook output priority -100; policy accept; }\n",
               tb);
    buf_printf(&b,
               "add chain inet %s postrouting { type nat hook postrouting priority 100; policy "
               "accept; }\n",
               tb);
    buf_printf(&b,
               "add chain inet %s forward { type filter hook forward priority 0; policy "
               "accept; }\n",
               tb);
    buf_printf(&b, "flush chain inet %s forward\n", tb);
    if (c->isolate && c->mode == NET_MODE_BRIDGE)
        buf_printf(&b,
                   "add rule inet %s forward iifname \"%s\" oifname \"%s\" drop comment \"chcp "
                   "isolate\"\n",
                   tb, c->bridge, c->bridge);
    else if (c->isolate)
        buf_printf(&b,
                   "add rule inet %s forward iifname \"%s*\" oifname \"%s*\" drop comment \"chcp "
                   "isolate\"\n",
                   tb, c->tap_prefix, c->tap_prefix);
    buf_append_byte(&b, 0);
    pthread_mutex_lock(&t->mu);
    int rc = run_locked(t, (const char *)b.data, "preparing the table", err);
    pthread_mutex_unlock(&t->mu);
    buf_free(&b);
    return rc;
}

/* ---- per-VM rules --------------------------------------------------------------------- */

static void forward_rule(chcp_buf *b, const char *tb, const char *chain, const char *comment,
                         const net_port_forward *f, int family, const char *addr)
{
    const char *proto = f->proto == NET_PROTO_UDP ? "udp" : "tcp";
    bool v4 = family == AF_INET;
    buf_printf(b,
               "add rule inet %s %s meta nfproto %s fib daddr type local %s dport %u dnat %s to "
               "%s%s%s:%u comment \"%s\"\n",
               tb, chain, v4 ? "ipv4" : "ipv6", proto, f->host_port, v4 ? "ip" : "ip6",
               v4 ? "" : "[", addr, v4 ? "" : "]", f->guest_port, comment);
}

char *net_nft_vm_rules(const net_config *c, const net_nft_vm *vm)
{
    char comment[96];
    net_rule_comment(vm->vm_id, comment, sizeof(comment));
    const char *tb = c->nft_table;
    chcp_buf b = CHCP_BUF_INIT;
    /* Traffic to chcp's own links stays unmasqueraded: guests see each other
     * (when not isolated) and the host with their real addresses. */
    char out_if[NET_IFNAME_LEN + 1];
    if (c->mode == NET_MODE_BRIDGE)
        snprintf(out_if, sizeof(out_if), "%s", c->bridge);
    else
        snprintf(out_if, sizeof(out_if), "%s*", c->tap_prefix);
    const net_nic *n = vm->nic0;
    if (vm->nat && n && n->has_ipv4)
        buf_printf(&b,
                   "add rule inet %s postrouting ip saddr %s oifname != \"%s\" masquerade "
                   "comment \"%s\"\n",
                   tb, n->ipv4, out_if, comment);
    if (vm->nat && n && n->has_ipv6)
        buf_printf(&b,
                   "add rule inet %s postrouting ip6 saddr %s oifname != \"%s\" masquerade "
                   "comment \"%s\"\n",
                   tb, n->ipv6, out_if, comment);
    for (size_t i = 0; n && i < vm->n_forwards; i++) {
        static const char *const chains[] = {"prerouting", "output"};
        for (size_t k = 0; k < ARRAY_SIZE(chains); k++) {
            if (n->has_ipv4)
                forward_rule(&b, tb, chains[k], comment, &vm->forwards[i], AF_INET, n->ipv4);
            if (n->has_ipv6)
                forward_rule(&b, tb, chains[k], comment, &vm->forwards[i], AF_INET6, n->ipv6);
        }
    }
    buf_append_byte(&b, 0);
    return buf_steal_str(&b);
}

static bool in_set(const char *id, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return true;
    return false;
}

/* Append "delete rule" commands for the rules that match (one VM's, or every
 * VM's not in `live`) to `out`; count them. Locked by the caller. */
static int deletions_locked(net_nft *t, const char *vm_id, const char *const *live, size_t n_live,
                            chcp_buf *out, size_t *count, chcp_error **err)
{
    const char *tb = t->cfg->nft_table;
    *count = 0;
    cleanup_free char *cmd = xasprintf("list table inet %s", tb);
    nft_ctx_output_set_flags(t->ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE);
    int rc = nft_run_cmd_from_buffer(t->ctx, cmd);
    nft_ctx_output_set_flags(t->ctx, 0);
    const char *text = nft_ctx_get_output_buffer(t->ctx);
    const char *emsg = nft_ctx_get_error_buffer(t->ctx);
    if (rc != 0) {
        /* No table: nothing of ours exists. */
        if (emsg && strstr(emsg, "No such file or directory"))
            return 0;
        return error_set(err, CHCP_UNAVAILABLE, "nftables: listing table inet %s: %s", tb,
                         emsg && *emsg ? emsg : "failed");
    }
    json_error_t je;
    json_t *root = json_loads(text ? text : "", 0, &je);
    json_t *items = json_object_get(root, "nftables");
    if (!json_is_array(items)) {
        json_decref(root);
        return error_set(err, CHCP_INTERNAL, "nftables: unexpected listing of table inet %s", tb);
    }
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        json_t *rule = json_object_get(item, "rule");
        char owner[NET_VM_ID_MAX + 1];
        const char *comment = json_string_value(json_object_get(rule, "comment"));
        const char *chain = json_string_value(json_object_get(rule, "chain"));
        json_t *handle = json_object_get(rule, "handle");
        if (!rule || !chain || !json_is_integer(handle) || !net_rule_comment_parse(comment, owner))
            continue;
        if (vm_id ? strcmp(owner, vm_id) != 0 : in_set(owner, live, n_live))
            continue;
        buf_printf(out, "delete rule inet %s %s handle %lld\n", tb, chain,
                   (long long)json_integer_value(handle));
        (*count)++;
    }
    json_decref(root);
    return 0;
}

int net_nft_vm_replace(net_nft *t, const char *vm_id, const char *rules, chcp_error **err)
{
    chcp_buf b = CHCP_BUF_INIT;
    size_t n_old = 0;
    pthread_mutex_lock(&t->mu);
    int rc = deletions_locked(t, vm_id, NULL, 0, &b, &n_old, err);
    if (rc == 0) {
        buf_append_str(&b, rules);
        buf_append_byte(&b, 0);
        cleanup_free char *what = xasprintf("rules of VM %s", vm_id);
        if (b.len > 1)
            rc = run_locked(t, (const char *)b.data, what, err);
    }
    pthread_mutex_unlock(&t->mu);
    buf_free(&b);
    return rc;
}

int net_nft_remove(net_nft *t, const char *vm_id, const char *const *live_ids, size_t n_live,
                   size_t *removed, chcp_error **err)
{
    chcp_buf b = CHCP_BUF_INIT;
    size_t n = 0;
    pthread_mutex_lock(&t->mu);
    int rc = deletions_locked(t, vm_id, live_ids, n_live, &b, &n, err);
    if (rc == 0 && n > 0) {
        buf_append_byte(&b, 0);
        rc = run_locked(t, (const char *)b.data, "removing rules", err);
    }
    pthread_mutex_unlock(&t->mu);
    buf_free(&b);
    if (removed)
        *removed = rc == 0 ? n : 0;
    return rc;
}
