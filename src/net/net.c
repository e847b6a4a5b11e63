/*
 * net.c - the module's entry points: open (database, bridge, nftables table),
 * set a VM up, release it, reconcile the host with the set of live VMs.
 *
 * Order matters for crash safety. Setup makes the allocation durable first
 * and only then creates TAPs, rules and the seed: whatever exists on the host
 * is either in the database or carries chcp's marks, so release (by database
 * rows and by marks) and reconcile (by marks and live ids) always find it.
 * Release removes host objects first and database rows last, so a crash in
 * the middle leaves rows that the next release or reconcile finishes.
 */
#include "net/net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct net_ctx {
    net_config cfg; /* deep copy */
    net_db *db;
    net_nft *nft; /* NULL with mode off */
    net_pool pool4, pool6;
    bool has4, has6;
};

static void config_copy(net_config *dst, const net_config *src)
{
    *dst = *src;
    dst->bridge = xstrdup(src->bridge);
    dst->tap_prefix = xstrdup(src->tap_prefix);
    dst->nft_table = xstrdup(src->nft_table);
    for (size_t i = 0; i < src->n_dns; i++)
        dst->dns[i] = xstrdup(src->dns[i]);
}

const net_config *net_ctx_config(const net_ctx *n)
{
    return &n->cfg;
}

/* ---- the bridge ----------------------------------------------------------------------- */

/* The bridge exists (created if missing), is up and holds the gateway
 * addresses; its ifindex. */
static int ensure_bridge(net_ctx *n, chcp_error **err)
{
    const net_config *c = &n->cfg;
    net_link_info br;
    int found = net_link_get(c->bridge, &br, err);
    if (found < 0)
        return -1;
    if (found && strcmp(br.kind, "bridge") != 0)
        return error_set(err, CHCP_FAILED_PRECONDITION,
                         "CHCP_NET_BRIDGE: interface %s exists and is not a bridge (kind '%s')",
                         c->bridge, br.kind);
    if (!found) {
        if (net_link_create_bridge(c->bridge, c->mtu, err) < 0)
            return -1;
        if (net_link_get(c->bridge, &br, err) <= 0)
            return error_set(err, CHCP_INTERNAL, "bridge %s vanished after its creation",
                             c->bridge);
    }
    const net_pool *pools[] = {n->has4 ? &n->pool4 : NULL, n->has6 ? &n->pool6 : NULL};
    for (size_t i = 0; i < ARRAY_SIZE(pools); i++) {
        if (!pools[i])
            continue;
        uint8_t gw[16];
        net_pool_bridge_address(pools[i], gw);
        if (net_addr_add_link(br.ifindex, pools[i]->prefix.family, gw, pools[i]->prefix.len, err) <
            0)
            return -1;
    }
    if (!br.up && net_link_set(br.ifindex, 0, -1, NULL, true, err) < 0)
        return -1;
    return br.ifindex;
}

static int enable_ipv4_forwarding(chcp_error **err)
{
    int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "CHCP_NET_NAT: enabling forwarding");
    ssize_t w = write(fd, "1\n", 2);
    int e = errno;
    close(fd);
    if (w != 2)
        return error_set_errno(err, CHCP_UNAVAILABLE, e, "CHCP_NET_NAT: enabling forwarding");
    return 0;
}

/* ---- open / close ----------------------------------------------------------------------- */

net_ctx *net_open(const net_config *cfg, const char *state_dir, chcp_error **err)
{
    net_ctx *n = xcalloc(1, sizeof(*n));
    config_copy(&n->cfg, cfg);
    if (cfg->mode != NET_MODE_OFF) {
        if (cfg->ipv4.family && net_pool_init(&n->pool4, cfg->mode, &cfg->ipv4, err) < 0)
            goto fail;
        if (cfg->ipv6.family && net_pool_init(&n->pool6, cfg->mode, &cfg->ipv6, err) < 0)
            goto fail;
        n->has4 = cfg->ipv4.family != 0;
        n->has6 = cfg->ipv6.family != 0;
    }
    n->db = net_db_open(state_dir, err);
    if (!n->db)
        goto fail;
    if (cfg->mode == NET_MODE_OFF)
        return n;
    if (cfg->mode == NET_MODE_BRIDGE && ensure_bridge(n, err) < 0)
        goto fail;
    n->nft = net_nft_new(&n->cfg, err);
    if (!n->nft || net_nft_prepare(n->nft, err) < 0)
        goto fail;
    if (cfg->nat && enable_ipv4_forwarding(err) < 0)
        goto fail;
    return n;
fail:
    net_close(n);
    return NULL;
}

void net_close(net_ctx *n)
{
    if (!n)
        return;
    net_nft_free(n->nft);
    net_db_close(n->db);
    net_config_free(&n->cfg);
    free(n);
}

/* ---- results ------------------------------------------------------------------------- */

void net_vm_clear(net_vm *v)
{
    free(v->cmdline);
    free(v->seed_path);
    memset(v, 0, sizeof(*v));
}

static void fill_nic(const net_ctx *n, const net_db_nic *d, net_nic *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->tap, d->tap, sizeof(out->tap));
    memcpy(out->mac, d->mac, sizeof(out->mac));
    uint8_t guest[16], host[16];
    if (d->has_v4 && n->has4) {
        net_pool_slot(&n->pool4, d->slot4, guest, host, &out->ipv4_prefix);
        net_addr_format(AF_INET, guest, out->ipv4, sizeof(out->ipv4));
        net_addr_format(AF_INET, host, out->ipv4_gateway, sizeof(out->ipv4_gateway));
        out->has_ipv4 = true;
    }
    if (d->has_v6 && n->has6) {
        net_pool_slot(&n->pool6, d->slot6, guest, host, &out->ipv6_prefix);
        net_addr_format(AF_INET6, guest, out->ipv6, sizeof(out->ipv6));
        net_addr_format(AF_INET6, host, out->ipv6_gateway, sizeof(out->ipv6_gateway));
        out->has_ipv6 = true;
    }
}

int net_vm_get(net_ctx *n, const char *vm_id, net_vm *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    if (net_validate_vm_id(vm_id, err) < 0)
        return -1;
    net_db_nic rows[NET_MAX_NICS];
    size_t count;
    if (net_db_get(n->db, vm_id, n->has4 ? &n->pool4 : NULL, n->has6 ? &n->pool6 : NULL, rows,
                   &count, err) < 0)
        return -1;
    for (size_t i = 0; i < count; i++)
        fill_nic(n, &rows[i], &out->nics[i]);
    out->n_nics = count;
    return 0;
}

/* ---- setup ---------------------------------------------------------------------------- */

static bool valid_hostname(const char *h)
{
    size_t n = strlen(h), label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-') ||
            (c == '-' && label == 0) || ++label > 63)
            return false;
    }
    return label > 0 && h[n - 1] != '-';
}

static int validate_request(const net_ctx *n, const net_vm_request *r, chcp_error **err)
{
    if (net_validate_vm_id(r->vm_id, err) < 0)
        return -1;
    if (r->hostname && !valid_hostname(r->hostname))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "hostname: '%s' is not a host name (labels of letters, digits and '-')",
                         r->hostname);
    if (r->n_nics > NET_MAX_NICS)
        return error_set(err, CHCP_INVALID_ARGUMENT, "at most %d NICs per VM", NET_MAX_NICS);
    if (r->n_nics && n->cfg.mode == NET_MODE_OFF)
        return error_set(err, CHCP_FAILED_PRECONDITION,
                         "the VM asks for %zu NIC(s) but chcp's networking is off "
                         "(CHCP_NET_MODE)",
                         r->n_nics);
    if (r->user_data && r->user_data_len > NET_MAX_USER_DATA)
        return error_set(err, CHCP_INVALID_ARGUMENT, "user_data: larger than %u bytes",
                         NET_MAX_USER_DATA);
    if (r->n_forwards > NET_MAX_FORWARDS)
        return error_set(err, CHCP_INVALID_ARGUMENT, "at most %d port forwards per VM",
                         NET_MAX_FORWARDS);
    if (r->n_forwards && (r->n_nics == 0 || (!n->has4 && !n->has6)))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "port forwards need a NIC with an address (NIC 0)");
    for (size_t i = 0; i < r->n_forwards; i++) {
        const net_port_forward *f = &r->forwards[i];
        if (!f->host_port || !f->guest_port || f->proto > NET_PROTO_UDP)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "port forward %zu: ports must be 1-65535, protocol tcp or udp", i);
        for (size_t k = 0; k < i; k++)
            if (r->forwards[k].proto == f->proto && r->forwards[k].host_port == f->host_port)
                return error_set(err, CHCP_INVALID_ARGUMENT,
                                 "port forward %zu: host port %u is forwarded twice", i,
                                 f->host_port);
    }
    return 0;
}

/* The TAP exists (created if missing) and is this VM's NIC; its ifindex. */
static int ensure_tap(net_ctx *n, const char *vm_id, const net_nic *nic, unsigned index,
                      chcp_error **err)
{
    net_link_info li;
    int found = net_link_get(nic->tap, &li, err);
    if (found < 0)
        return -1;
    char alias[128];
    net_tap_alias(vm_id, index, alias, sizeof(alias));
    if (found) {
        char owner[NET_VM_ID_MAX + 1];
        unsigned owner_nic;
        if (strcmp(li.kind, "tun") != 0 || !net_tap_alias_parse(li.alias, owner, &owner_nic) ||
            strcmp(owner, vm_id) != 0 || owner_nic != index)
            return error_set(err, CHCP_FAILED_PRECONDITION,
                             "interface %s exists and is not chcp's TAP for VM %s NIC %u "
                             "(kind '%s', alias '%s')",
                             nic->tap, vm_id, index, li.kind, li.alias);
        return li.ifindex;
    }
    if (net_tap_create(nic->tap, n->cfg.tap_uid, n->cfg.tap_gid, alias, err) < 0)
        return -1;
    if (net_link_get(nic->tap, &li, err) <= 0)
        return error_set(err, CHCP_INTERNAL, "TAP %s vanished after its creation", nic->tap);
    return li.ifindex;
}

static int plumb_nic(net_ctx *n, const char *vm_id, const net_nic *nic, unsigned index, int bridge,
                     chcp_error **err)
{
    int ifindex = ensure_tap(n, vm_id, nic, index, err);
    if (ifindex < 0)
        return -1;
    if (n->cfg.mode == NET_MODE_BRIDGE) {
        if (net_link_set(ifindex, n->cfg.mtu, bridge, NULL, true, err) < 0 ||
            net_link_set_isolated(ifindex, n->cfg.isolate, err) < 0)
            return -1;
        return 0;
    }
    /* Routed: the host side of the point-to-point link lives on the TAP. */
    if (net_link_set(ifindex, n->cfg.mtu, -1, NULL, true, err) < 0)
        return -1;
    uint8_t a[16];
    int f;
    if (nic->has_ipv4 && (net_addr_parse(nic->ipv4_gateway, AF_INET, &f, a) < 0 ||
                          net_addr_add_link(ifindex, AF_INET, a, nic->ipv4_prefix, err) < 0))
        return -1;
    if (nic->has_ipv6 && (net_addr_parse(nic->ipv6_gateway, AF_INET6, &f, a) < 0 ||
                          net_addr_add_link(ifindex, AF_INET6, a, nic->ipv6_prefix, err) < 0))
        return -1;
    return 0;
}

static int setup_host(net_ctx *n, const net_vm_request *r, const net_vm *v, chcp_error **err)
{
    int bridge = -1;
    if (n->cfg.mode == NET_MODE_BRIDGE && (bridge = ensure_bridge(n, err)) < 0)
        return -1;
    for (size_t i = 0; i < v->n_nics; i++)
        if (plumb_nic(n, r->vm_id, &v->nics[i], (unsigned)i, bridge, err) < 0)
            return -1;
    net_nft_vm rule_req = {
        .vm_id = r->vm_id,
        .nic0 = v->n_nics ? &v->nics[0] : NULL,
        .nat = n->cfg.nat,
        .forwards = r->forwards,
        .n_forwards = r->n_forwards,
    };
    cleanup_free char *rules = net_nft_vm_rules(&n->cfg, &rule_req);
    return net_nft_vm_replace(n->nft, r->vm_id, rules, err);
}

static void default_hostname(const char *vm_id, char out[NET_VM_ID_MAX + 1])
{
    snprintf(out, NET_VM_ID_MAX + 1, "%s", vm_id);
    for (size_t l = strlen(out); l > 1 && out[l - 1] == '-';)
        out[--l] = 0;
}

int net_vm_setup(net_ctx *n, const net_vm_request *r, net_vm *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    if (validate_request(n, r, err) < 0)
        return -1;
    net_db_nic rows[NET_MAX_NICS];
    net_db_alloc_request ar = {
        .vm_id = r->vm_id,
        .tap_prefix = n->cfg.tap_prefix,
        .nics = r->nics,
        .n_nics = r->n_nics,
        .pool4 = n->has4 ? &n->pool4 : NULL,
        .pool6 = n->has6 ? &n->pool6 : NULL,
        .forwards = r->forwards,
        .n_forwards = r->n_forwards,
    };
    if (net_db_allocate(n->db, &ar, rows, err) < 0)
        return -1;
    for (size_t i = 0; i < r->n_nics; i++)
        fill_nic(n, &rows[i], &out->nics[i]);
    out->n_nics = r->n_nics;
    if (n->cfg.mode != NET_MODE_OFF && setup_host(n, r, out, err) < 0)
        goto fail;

    char host[NET_VM_ID_MAX + 1];
    default_hostname(r->vm_id, host);
    const char *dns[NET_MAX_DNS];
    for (size_t i = 0; i < n->cfg.n_dns; i++)
        dns[i] = n->cfg.dns[i];
    net_seed_input si = {
        .vm_id = r->vm_id,
        .hostname = r->hostname ? r->hostname : host,
        .nics = out->nics,
        .n_nics = out->n_nics,
        .dns = dns,
        .n_dns = n->cfg.n_dns,
        .user_data = r->user_data,
        .user_data_len = r->user_data_len,
    };
    out->cmdline = net_cmdline_ip(&si);
    if (r->dir && n->cfg.seed == NET_SEED_ISO9660 &&
        net_seed_write(&si, r->dir, &out->seed_path, err) < 0)
        goto fail;
    return 0;
fail:
    net_vm_clear(out);
    return -1;
}

/* ---- release and reconcile -------------------------------------------------------------- */

typedef struct tap_scan {
    const char *prefix;
    const char *vm_id;       /* this VM's TAPs, or */
    const char *const *live; /* TAPs of VMs not in live */
    size_t n_live;
    char (*names)[NET_IFNAME_LEN];
    size_t n, cap;
} tap_scan;

static bool id_in(const char *id, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return true;
    return false;
}

static void tap_scan_fn(const net_link_info *l, void *ud)
{
    tap_scan *s = ud;
    char owner[NET_VM_ID_MAX + 1];
    unsigned nic;
    if (strcmp(l->kind, "tun") != 0 || !net_tap_alias_parse(l->alias, owner, &nic))
        return;
    /* One VM's: its mark is enough (its TAPs may predate a prefix change).
     * Everyone else's: chcp's prefix too, since absence from `live` is all
     * that condemns them. */
    if (s->vm_id ? strcmp(owner, s->vm_id) != 0
                 : !str_has_prefix(l->name, s->prefix) || id_in(owner, s->live, s->n_live))
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->names = xrealloc(s->names, s->cap * sizeof(*s->names));
    }
    memcpy(s->names[s->n++], l->name, NET_IFNAME_LEN);
}

/* List the TAPs a scan selects and delete them; count those deleted. */
static int scan_and_delete(tap_scan *s, size_t *deleted, chcp_error **err)
{
    int rc = net_link_dump(tap_scan_fn, s, err);
    for (size_t i = 0; i < s->n; i++) {
        int r = net_link_delete(s->names[i], err);
        if (r < 0)
            rc = -1;
        else if (r == 0 && deleted)
            (*deleted)++;
    }
    free(s->names);
    s->names = NULL;
    return rc;
}

int net_vm_release(net_ctx *n, const char *vm_id, const char *dir, chcp_error **err)
{
    if (net_validate_vm_id(vm_id, err) < 0)
        return -1;
    int rc = 0;
    char taps[NET_MAX_NICS][NET_IFNAME_LEN];
    size_t n_taps = 0;
    if (net_db_taps(n->db, vm_id, taps, &n_taps, err) < 0)
        rc = -1;
    /* With networking off, only a VM that had TAPs before it was turned off
     * still has some to remove. */
    if (n->cfg.mode != NET_MODE_OFF || n_taps > 0) {
        tap_scan scan = {.prefix = n->cfg.tap_prefix, .vm_id = vm_id};
        if (scan_and_delete(&scan, NULL, err) < 0)
            rc = -1;
    }
    if (n->nft && net_nft_remove(n->nft, vm_id, NULL, 0, NULL, err) < 0)
        rc = -1;
    if (dir && net_seed_remove(dir, err) < 0)
        rc = -1;
    /* Rows last: while anything above failed, they keep pointing at it. */
    if (rc == 0 && net_db_release(n->db, vm_id, err) < 0)
        rc = -1;
    return rc;
}

int net_reconcile(net_ctx *n, const char *const *live_ids, size_t n_live, net_reconcile_result *out,
                  chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    int rc = 0;
    if (n->cfg.mode != NET_MODE_OFF) {
        tap_scan scan = {.prefix = n->cfg.tap_prefix, .live = live_ids, .n_live = n_live};
        if (scan_and_delete(&scan, &out->taps, err) < 0)
            rc = -1;
        if (net_nft_remove(n->nft, NULL, live_ids, n_live, &out->rules, err) < 0)
            rc = -1;
    }
    if (net_db_reconcile(n->db, live_ids, n_live, &out->allocations, err) < 0)
        rc = -1;
    return rc;
}
