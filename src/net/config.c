/*
 * config.c - the networking settings: CHCP_NET_* variables and their --net-*
 * flags, parsed and checked here so that the daemon's configuration (owned by
 * src/daemon/config.c) only has to hand them over.
 *
 * Like the rest of chcp's configuration: a flag beats its variable when
 * given, an empty value means the default, and the first bad value stops the
 * daemon with a message naming the flag or variable. docs/networking.md is
 * the operator's description of every setting; keep them in step.
 */
#include "net/net_internal.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct net_setting;
typedef int (*net_parse_fn)(net_config *nc, const char *src, const char *value, chcp_error **err);

typedef struct net_setting {
    const char *env;
    const char *flag;
    net_parse_fn parse;
    const char *help;
} net_setting;

const char *net_mode_name(net_mode m)
{
    switch (m) {
    case NET_MODE_BRIDGE:
        return "bridge";
    case NET_MODE_ROUTED:
        return "routed";
    default:
        return "off";
    }
}

/* ---- parsers --------------------------------------------------------------------------- */

static int parse_mode(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    static const net_mode modes[] = {NET_MODE_OFF, NET_MODE_BRIDGE, NET_MODE_ROUTED};
    for (size_t i = 0; i < ARRAY_SIZE(modes); i++)
        if (strcmp(value, net_mode_name(modes[i])) == 0) {
            nc->mode = modes[i];
            return 0;
        }
    return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not off, bridge or routed", src,
                     value);
}

static bool is_ifname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= NET_IFNAME_LEN)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

static void set_str(char **field, const char *value)
{
    free(*field);
    *field = xstrdup(value);
}

static int parse_bridge(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    if (!is_ifname(value))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s: '%s' is not an interface name (1-15 of A-Z a-z 0-9 - _ .)", src,
                         value);
    set_str(&nc->bridge, value);
    return 0;
}

static int parse_prefix_of(net_prefix *p, int family, const char *src, const char *value,
                           chcp_error **err)
{
    if (strcmp(value, "none") == 0) {
        memset(p, 0, sizeof(*p));
        return 0;
    }
    chcp_error *e = NULL;
    if (net_prefix_parse(value, p, &e) < 0) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: %s", src, e->message);
        error_free(e);
        return -1;
    }
    if (p->family != family)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not an %s prefix", src, value,
                         family == AF_INET ? "IPv4" : "IPv6");
    return 0;
}

static int parse_ipv4(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    return parse_prefix_of(&nc->ipv4, AF_INET, src, value, err);
}

static int parse_ipv6(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    return parse_prefix_of(&nc->ipv6, AF_INET6, src, value, err);
}

static int parse_mtu(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    uint64_t v;
    if (!str_to_u64(value, 65535, &v) || v < 68)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not an MTU (68-65535)", src,
                         value);
    nc->mtu = (uint32_t)v;
    return 0;
}

static int parse_flag(bool *out, const char *src, const char *value, chcp_error **err)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (str_ieq(value, yes[i])) {
            *out = true;
            return 0;
        }
        if (str_ieq(value, no[i])) {
            *out = false;
            return 0;
        }
    }
    return error_set(err, CHCP_INVALID_ARGUMENT,
                     "%s: not a boolean: '%s' (use true/false, 1/0, yes/no, on/off)", src, value);
}

static int parse_isolate(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    return parse_flag(&nc->isolate, src, value, err);
}

static int parse_nat(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    return parse_flag(&nc->nat, src, value, err);
}

static void free_dns(net_config *nc)
{
    for (size_t i = 0; i < nc->n_dns; i++)
        free(nc->dns[i]);
    nc->n_dns = 0;
}

static int parse_dns(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    free_dns(nc);
    for (const char *p = value; *p;) {
        const char *end = strchrnul(p, ',');
        char one[NET_ADDR_LEN];
        uint8_t addr[16];
        int family;
        size_t n = (size_t)(end - p);
        if (n == 0 || n >= sizeof(one))
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: empty or overlong entry", src);
        memcpy(one, p, n);
        one[n] = 0;
        if (net_addr_parse(one, 0, &family, addr) < 0)
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not an IP address", src, one);
        if (nc->n_dns == NET_MAX_DNS)
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: at most %d nameservers", src,
                             NET_MAX_DNS);
        nc->dns[nc->n_dns++] = xstrdup(one);
        p = *end ? end + 1 : end;
    }
    return 0;
}

static bool all_of(const char *s, const char *allowed)
{
    return *s && strspn(s, allowed) == strlen(s);
}

static int parse_tap_prefix(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    if (strlen(value) > 5 || !all_of(value, "abcdefghijklmnopqrstuvwxyz0123456789"))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not 1-5 of a-z 0-9", src, value);
    set_str(&nc->tap_prefix, value);
    return 0;
}

static int parse_nft_table(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    if (strlen(value) > 32 || !(value[0] >= 'a' && value[0] <= 'z') ||
        !all_of(value, "abcdefghijklmnopqrstuvwxyz0123456789_"))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s: '%s' is not 1-32 of a-z 0-9 _ starting with a letter", src, value);
    set_str(&nc->nft_table, value);
    return 0;
}

static int parse_user(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    uint64_t id;
    if (str_to_u64(value, UINT32_MAX - 1, &id)) {
        nc->tap_uid = (uid_t)id;
        return 0;
    }
    char buf[4096];
    struct passwd pw, *res = NULL;
    int rc = getpwnam_r(value, &pw, buf, sizeof(buf), &res);
    if (rc || !res)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: no user '%s'", src, value);
    nc->tap_uid = res->pw_uid;
    return 0;
}

static int parse_group(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    uint64_t id;
    if (strcmp(value, "none") == 0) {
        nc->tap_gid = (gid_t)-1;
        return 0;
    }
    if (str_to_u64(value, UINT32_MAX - 1, &id)) {
        nc->tap_gid = (gid_t)id;
        return 0;
    }
    char buf[4096];
    struct group gr, *res = NULL;
    int rc = getgrnam_r(value, &gr, buf, sizeof(buf), &res);
    if (rc || !res)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: no group '%s'", src, value);
    nc->tap_gid = res->gr_gid;
    return 0;
}

static int parse_seed(net_config *nc, const char *src, const char *value, chcp_error **err)
{
    if (strcmp(value, "iso9660") == 0)
        nc->seed = NET_SEED_ISO9660;
    else if (strcmp(value, "off") == 0)
        nc->seed = NET_SEED_OFF;
    else
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: '%s' is not iso9660 or off", src, value);
    return 0;
}

/* ---- the table ------------------------------------------------------------------------- */

static const net_setting net_settings[] = {
    {"CHCP_NET_MODE", "--net-mode", parse_mode,
     "Networking chcp manages: off, bridge (TAPs on one bridge) or routed (a point-to-point\n"
     "      link per NIC). Default off."},
    {"CHCP_NET_BRIDGE", "--net-bridge", parse_bridge,
     "Bridge for bridge mode, created if missing. Default chcpbr0."},
    {"CHCP_NET_IPV4_CIDR", "--net-ipv4-cidr", parse_ipv4,
     "IPv4 prefix guest addresses come from (or none). Default 10.97.0.0/16."},
    {"CHCP_NET_IPV6_CIDR", "--net-ipv6-cidr", parse_ipv6,
     "IPv6 prefix guest addresses come from (or none). Default none."},
    {"CHCP_NET_MTU", "--net-mtu", parse_mtu, "MTU of TAPs and a created bridge. Default 1500."},
    {"CHCP_NET_ISOLATE", "--net-isolate", parse_isolate,
     "Guests cannot reach each other (only the host and, with NAT, beyond). Default false."},
    {"CHCP_NET_NAT", "--net-nat", parse_nat,
     "Masquerade guest traffic leaving the host; turns on IPv4 forwarding. Default false."},
    {"CHCP_NET_DNS", "--net-dns", parse_dns,
     "Comma-separated nameservers told to guests (at most 4). Default none."},
    {"CHCP_NET_TAP_PREFIX", "--net-tap-prefix", parse_tap_prefix,
     "TAP names start with this (1-5 of a-z 0-9). Default chcp."},
    {"CHCP_NET_TAP_USER", "--net-tap-user", parse_user,
     "User (name or uid) that may open the TAPs. Default: the daemon's own."},
    {"CHCP_NET_TAP_GROUP", "--net-tap-group", parse_group,
     "Group (name or gid) that may open the TAPs, or none. Default none."},
    {"CHCP_NET_NFT_TABLE", "--net-nft-table", parse_nft_table,
     "chcp's nftables table (family inet). Default chcp."},
    {"CHCP_NET_SEED", "--net-seed", parse_seed,
     "cloud-init NoCloud seed image per VM: iso9660 or off. Default iso9660."},
};

_Static_assert(ARRAY_SIZE(net_settings) == NET_CONFIG_N_SETTINGS, "NET_CONFIG_N_SETTINGS");

void net_config_defaults(net_config *nc)
{
    memset(nc, 0, sizeof(*nc));
    nc->mode = NET_MODE_OFF;
    nc->bridge = xstrdup("chcpbr0");
    net_prefix_parse("10.97.0.0/16", &nc->ipv4, NULL);
    nc->mtu = 1500;
    nc->tap_prefix = xstrdup("chcp");
    nc->nft_table = xstrdup("chcp");
    nc->tap_uid = geteuid();
    nc->tap_gid = (gid_t)-1;
    nc->seed = NET_SEED_ISO9660;
}

void net_config_free(net_config *nc)
{
    free(nc->bridge);
    free(nc->tap_prefix);
    free(nc->nft_table);
    free_dns(nc);
    memset(nc, 0, sizeof(*nc));
}

int net_config_flag_index(const char *flag, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(net_settings); i++)
        if (strlen(net_settings[i].flag) == len && memcmp(net_settings[i].flag, flag, len) == 0)
            return (int)i;
    return -1;
}

/* Settings that are fine alone but not together. */
static int check_combination(const net_config *nc, chcp_error **err)
{
    if (nc->mode == NET_MODE_OFF)
        return 0;
    const net_prefix *prefixes[] = {&nc->ipv4, &nc->ipv6};
    const char *names[] = {"CHCP_NET_IPV4_CIDR", "CHCP_NET_IPV6_CIDR"};
    for (size_t i = 0; i < 2; i++) {
        net_pool pool;
        chcp_error *e = NULL;
        if (prefixes[i]->family && net_pool_init(&pool, nc->mode, prefixes[i], &e) < 0) {
            error_set(err, CHCP_INVALID_ARGUMENT, "%s: %s in %s mode (CHCP_NET_MODE)", names[i],
                      e->message, net_mode_name(nc->mode));
            error_free(e);
            return -1;
        }
    }
    if (nc->ipv6.family && nc->mtu < 1280)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "CHCP_NET_MTU: %u is below IPv6's minimum 1280 while CHCP_NET_IPV6_CIDR "
                         "is set",
                         nc->mtu);
    return 0;
}

int net_config_load(net_config *nc, net_config_get_fn get, void *ud, const char *const *flag_values,
                    chcp_error **err)
{
    net_config_defaults(nc);
    for (size_t i = 0; i < ARRAY_SIZE(net_settings); i++) {
        const net_setting *s = &net_settings[i];
        const char *src = s->flag, *value = flag_values ? flag_values[i] : NULL;
        if (!value) {
            src = s->env;
            value = get(s->env, ud);
        }
        if (!value || !*value)
            continue;
        if (s->parse(nc, src, value, err) < 0)
            return -1;
    }
    return check_combination(nc, err);
}

const char *net_config_variable_name(size_t i)
{
    return i < ARRAY_SIZE(net_settings) ? net_settings[i].env : NULL;
}

void net_config_usage(FILE *out)
{
    fprintf(out, "\n  Networking (docs/networking.md):\n");
    for (size_t i = 0; i < ARRAY_SIZE(net_settings); i++)
        fprintf(out, "  %s, %s\n      %s\n", net_settings[i].flag, net_settings[i].env,
                net_settings[i].help);
}
