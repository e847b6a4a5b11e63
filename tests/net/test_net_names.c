/*
 * test_net_names.c - the pure parts of src/net: VM id rules, TAP names, MACs,
 * prefixes and pools (slot <-> address), the marks on TAPs and rules, the
 * settings (CHCP_NET_* and --net-*), what the seed and the kernel command line
 * say, and the nftables rules a VM gets. Nothing here touches the host.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "net/net_internal.h"

static void test_vm_ids(void **state)
{
    assert_int_equal(net_validate_vm_id("web-1", NULL), 0);
    assert_int_equal(net_validate_vm_id("0", NULL), 0);
    char long_id[70];
    memset(long_id, 'a', sizeof(long_id));
    long_id[63] = 0;
    assert_int_equal(net_validate_vm_id(long_id, NULL), 0);
    long_id[63] = 'a';
    long_id[64] = 0;
    const char *bad[] = {"", "-a", "Web", "a b", "a/b", "a_b", "a.b", long_id, NULL};
    for (const char **b = bad; *b; b++) {
        chcp_error *err = NULL;
        assert_int_equal(net_validate_vm_id(*b, &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        assert_non_null(strstr(err->message, "vm_id"));
        error_free(err);
    }
    assert_int_equal(net_validate_vm_id(NULL, NULL), -1);
}

static void test_tap_names(void **state)
{
    char a[NET_IFNAME_LEN], b[NET_IFNAME_LEN], c[NET_IFNAME_LEN], d[NET_IFNAME_LEN];
    net_tap_name("chcp", "web-1", 0, 0, a);
    net_tap_name("chcp", "web-1", 0, 0, b);
    assert_string_equal(a, b); /* stable */
    assert_int_equal(strlen(a), 15);
    assert_true(str_has_prefix(a, "chcp"));
    assert_int_equal(a[14], '0');
    for (int i = 4; i < 14; i++)
        assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567", a[i]));
    net_tap_name("chcp", "web-1", 1, 0, c);
    assert_int_equal(memcmp(a, c, 14), 0); /* one stem per VM, the NIC last */
    assert_int_equal(c[14], '1');
    net_tap_name("chcp", "web-2", 0, 0, d);
    assert_string_not_equal(a, d);
    net_tap_name("chcp", "web-1", 0, 1, d); /* after a collision */
    assert_string_not_equal(a, d);
    net_tap_name("x", "a-very-long-vm-id-that-does-not-fit-any-interface-name", 7, 0, d);
    assert_int_equal(strlen(d), 15);
    assert_int_equal(d[0], 'x');
    assert_int_equal(d[14], '7');
    net_tap_name("abcde", "web-1", 0, 0, d);
    assert_int_equal(strlen(d), 15);
}

static void test_macs(void **state)
{
    char a[NET_MAC_LEN], b[NET_MAC_LEN], c[NET_MAC_LEN];
    net_mac_generate("web-1", 0, 0, a);
    net_mac_generate("web-1", 0, 0, b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 17);
    unsigned first;
    assert_int_equal(sscanf(a, "%02x:", &first), 1);
    assert_int_equal(first & 3, 2); /* locally administered, unicast */
    net_mac_generate("web-1", 1, 0, c);
    assert_string_not_equal(a, c);
    net_mac_generate("web-2", 0, 0, c);
    assert_string_not_equal(a, c);
    net_mac_generate("web-1", 0, 1, c);
    assert_string_not_equal(a, c);
    /* Every generated MAC parses back to itself. */
    char p[NET_MAC_LEN];
    assert_int_equal(net_mac_parse(a, p, NULL), 0);
    assert_string_equal(a, p);

    assert_int_equal(net_mac_parse("52:54:00:AB:cd:EF", p, NULL), 0);
    assert_string_equal(p, "52:54:00:ab:cd:ef");
    const char *bad[] = {"52:54:00:ab:cd",
                         "52-54-00-ab-cd-ef",
                         "52:54:00:ab:cd:eg",
                         "01:00:5e:00:00:01",
                         "00:00:00:00:00:00",
                         "52:54:00:ab:cd:ef:",
                         NULL};
    for (const char **m = bad; *m; m++) {
        chcp_error *err = NULL;
        assert_int_equal(net_mac_parse(*m, p, &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        assert_true(str_has_prefix(err->message, "mac: "));
        error_free(err);
    }
}

static void test_prefixes(void **state)
{
    net_prefix p;
    char text[80];
    assert_int_equal(net_prefix_parse("10.97.0.0/16", &p, NULL), 0);
    assert_int_equal(p.family, AF_INET);
    assert_int_equal(p.len, 16);
    net_prefix_format(&p, text, sizeof(text));
    assert_string_equal(text, "10.97.0.0/16");
    assert_int_equal(net_prefix_parse("fd00:97::/64", &p, NULL), 0);
    assert_int_equal(p.family, AF_INET6);
    net_prefix_format(&p, text, sizeof(text));
    assert_string_equal(text, "fd00:97::/64");
    const char *bad[] = {"10.97.0.1/16", "10.97.0.0", "10.97.0.0/33", "10.97.0.0/", "/8",
                         "fd00::1/64",   "x/8",       "10.97.0.0/1a", NULL};
    for (const char **b = bad; *b; b++) {
        chcp_error *err = NULL;
        assert_int_equal(net_prefix_parse(*b, &p, &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        error_free(err);
    }
}

static void addr(int family, const char *text, uint8_t out[16])
{
    int f;
    assert_int_equal(net_addr_parse(text, family, &f, out), 0);
}

static void slot_text(const net_pool *p, int64_t slot, char *guest, char *host, unsigned *len)
{
    uint8_t g[16], h[16];
    net_pool_slot(p, slot, g, h, len);
    net_addr_format(p->prefix.family, g, guest, NET_ADDR_LEN);
    net_addr_format(p->prefix.family, h, host, NET_ADDR_LEN);
}

static void test_bridge_pool(void **state)
{
    net_prefix pre;
    net_pool p;
    assert_int_equal(net_prefix_parse("10.97.0.0/24", &pre, NULL), 0);
    assert_int_equal(net_pool_init(&p, NET_MODE_BRIDGE, &pre, NULL), 0);
    assert_string_equal(p.key, "bridge 10.97.0.0/24");
    assert_int_equal(p.first, 2);
    assert_int_equal(p.last, 254);
    char g[NET_ADDR_LEN], h[NET_ADDR_LEN];
    unsigned len;
    slot_text(&p, 2, g, h, &len);
    assert_string_equal(g, "10.97.0.2");
    assert_string_equal(h, "10.97.0.1");
    assert_int_equal(len, 24);
    slot_text(&p, 254, g, h, &len);
    assert_string_equal(g, "10.97.0.254");
    uint8_t a[16];
    addr(AF_INET, "10.97.0.77", a);
    assert_int_equal(net_pool_slot_of(&p, a), 77);
    const char *reserved[] = {"10.97.0.0", "10.97.0.1", "10.97.0.255",
                              "10.97.1.5", "10.96.0.5", NULL};
    for (const char **r = reserved; *r; r++) {
        addr(AF_INET, *r, a);
        assert_int_equal(net_pool_slot_of(&p, a), -1);
    }
    uint8_t gw[16];
    net_pool_bridge_address(&p, gw);
    net_addr_format(AF_INET, gw, g, sizeof(g));
    assert_string_equal(g, "10.97.0.1");

    /* Carry across bytes. */
    assert_int_equal(net_prefix_parse("10.97.0.0/16", &pre, NULL), 0);
    assert_int_equal(net_pool_init(&p, NET_MODE_BRIDGE, &pre, NULL), 0);
    slot_text(&p, 300, g, h, &len);
    assert_string_equal(g, "10.97.1.44");
    assert_int_equal(p.last, 65534);

    /* Too small to hand anything out. */
    chcp_error *err = NULL;
    assert_int_equal(net_prefix_parse("10.97.0.0/31", &pre, NULL), 0);
    assert_int_equal(net_pool_init(&p, NET_MODE_BRIDGE, &pre, &err), -1);
    assert_non_null(strstr(err->message, "too small"));
    error_free(err);
}

static void test_routed_and_v6_pools(void **state)
{
    net_prefix pre;
    net_pool p;
    char g[NET_ADDR_LEN], h[NET_ADDR_LEN];
    unsigned len;
    uint8_t a[16];
    assert_int_equal(net_prefix_parse("10.98.0.0/24", &pre, NULL), 0);
    assert_int_equal(net_pool_init(&p, NET_MODE_ROUTED, &pre, NULL), 0);
    assert_int_equal(p.first, 0);
    assert_int_equal(p.last, 63);
    slot_text(&p, 1, g, h, &len);
    assert_string_equal(g, "10.98.0.6");
    assert_string_equal(h, "10.98.0.5");
    assert_int_equal(len, 30);
    addr(AF_INET, "10.98.0.6", a);
    assert_int_equal(net_pool_slot_of(&p, a), 1);
    addr(AF_INET, "10.98.0.5", a); /* a host side */
    assert_int_equal(net_pool_slot_of(&p, a), -1);
    addr(AF_INET, "10.98.0.7", a);
    assert_int_equal(net_pool_slot_of(&p, a), -1);

    assert_int_equal(net_prefix_parse("fd00:97::/64", &pre, NULL), 0);
    assert_int_equal(net_pool_init(&p, NET_MODE_BRIDGE, &pre, NULL), 0);
    assert_int_equal(p.first, 2);
    assert_true(p.last >= (1ll << 61));
    slot_text(&p, 0x1234, g, h, &len);
    assert_string_equal(g, "fd00:97::1234");
    assert_string_equal(h, "fd00:97::1");
    assert_int_equal(len, 64);
    addr(AF_INET6, "fd00:97::abcd", a);
    assert_int_equal(net_pool_slot_of(&p, a), 0xabcd);
    addr(AF_INET6, "fd00:98::abcd", a);
    assert_int_equal(net_pool_slot_of(&p, a), -1);

    assert_int_equal(net_prefix_parse("fd00:99::/120", &pre, NULL), 0);
    assert_int_equal(net_pool_init(&p, NET_MODE_ROUTED, &pre, NULL), 0);
    assert_int_equal(p.last, 63);
    slot_text(&p, 2, g, h, &len);
    assert_string_equal(g, "fd00:99::a");
    assert_string_equal(h, "fd00:99::9");
    assert_int_equal(len, 126);
}

static void test_marks(void **state)
{
    char text[128], id[NET_VM_ID_MAX + 1];
    unsigned nic;
    net_tap_alias("web-1", 3, text, sizeof(text));
    assert_string_equal(text, "chcp vm=web-1 nic=3");
    assert_true(net_tap_alias_parse(text, id, &nic));
    assert_string_equal(id, "web-1");
    assert_int_equal(nic, 3);
    const char *bad_alias[] = {"",
                               "chcp vm=web-1",
                               "chcp vm= nic=0",
                               "chcp vm=WEB nic=0",
                               "chcp vm=a nic=9",
                               "other vm=a nic=0",
                               "chcp vm=a nic=x",
                               NULL};
    for (const char **b = bad_alias; *b; b++)
        assert_false(net_tap_alias_parse(*b, id, &nic));
    net_rule_comment("db-7", text, sizeof(text));
    assert_string_equal(text, "chcp vm=db-7");
    assert_true(net_rule_comment_parse(text, id));
    assert_string_equal(id, "db-7");
    assert_false(net_rule_comment_parse("chcp isolate", id));
    assert_false(net_rule_comment_parse("chcp vm=", id));
    assert_false(net_rule_comment_parse(NULL, id));
    assert_false(net_rule_comment_parse("user rule", id));
}

/* ---- configuration ------------------------------------------------------------------- */

static const char *fake_env(const char *name, void *ud)
{
    for (const char *const *kv = ud; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static void test_config_defaults_and_values(void **state)
{
    net_config c;
    assert_int_equal(net_config_load(&c, fake_env, NULL, NULL, NULL), 0);
    assert_int_equal(c.mode, NET_MODE_OFF);
    assert_string_equal(c.bridge, "chcpbr0");
    char t[80];
    net_prefix_format(&c.ipv4, t, sizeof(t));
    assert_string_equal(t, "10.97.0.0/16");
    assert_int_equal(c.ipv6.family, 0);
    assert_int_equal(c.mtu, 1500);
    assert_false(c.isolate);
    assert_false(c.nat);
    assert_string_equal(c.tap_prefix, "chcp");
    assert_string_equal(c.nft_table, "chcp");
    assert_int_equal(c.tap_uid, geteuid());
    assert_int_equal(c.tap_gid, (gid_t)-1);
    assert_int_equal(c.seed, NET_SEED_ISO9660);
    net_config_free(&c);

    const char *env[] = {"CHCP_NET_MODE",
                         "routed",
                         "CHCP_NET_IPV4_CIDR",
                         "none",
                         "CHCP_NET_IPV6_CIDR",
                         "fd00:1::/64",
                         "CHCP_NET_MTU",
                         "9000",
                         "CHCP_NET_ISOLATE",
                         "yes",
                         "CHCP_NET_NAT",
                         "ON",
                         "CHCP_NET_DNS",
                         "192.0.2.53,2001:db8::53",
                         "CHCP_NET_TAP_PREFIX",
                         "vm",
                         "CHCP_NET_TAP_USER",
                         "1234",
                         "CHCP_NET_TAP_GROUP",
                         "root",
                         "CHCP_NET_NFT_TABLE",
                         "chcp_test",
                         "CHCP_NET_SEED",
                         "off",
                         "CHCP_NET_BRIDGE",
                         "br-vms",
                         NULL};
    assert_int_equal(net_config_load(&c, fake_env, env, NULL, NULL), 0);
    assert_int_equal(c.mode, NET_MODE_ROUTED);
    assert_int_equal(c.ipv4.family, 0);
    net_prefix_format(&c.ipv6, t, sizeof(t));
    assert_string_equal(t, "fd00:1::/64");
    assert_int_equal(c.mtu, 9000);
    assert_true(c.isolate);
    assert_true(c.nat);
    assert_int_equal(c.n_dns, 2);
    assert_string_equal(c.dns[1], "2001:db8::53");
    assert_string_equal(c.tap_prefix, "vm");
    assert_int_equal(c.tap_uid, 1234);
    assert_int_equal(c.tap_gid, 0);
    assert_string_equal(c.nft_table, "chcp_test");
    assert_int_equal(c.seed, NET_SEED_OFF);
    assert_string_equal(c.bridge, "br-vms");
    net_config_free(&c);

    /* A flag beats its variable; an empty variable means the default. */
    const char *flags[NET_CONFIG_N_SETTINGS] = {0};
    int i = net_config_flag_index("--net-mode", strlen("--net-mode"));
    assert_true(i >= 0);
    flags[i] = "bridge";
    assert_int_equal(net_config_flag_index("--net-nope", 10), -1);
    assert_int_equal(net_config_flag_index("--net-mode=x", 10), i); /* name part only */
    const char *env2[] = {"CHCP_NET_MODE", "nonsense", "CHCP_NET_MTU", "", NULL};
    assert_int_equal(net_config_load(&c, fake_env, env2, flags, NULL), 0);
    assert_int_equal(c.mode, NET_MODE_BRIDGE);
    assert_int_equal(c.mtu, 1500);
    net_config_free(&c);
}

static void expect_config_error(const char *const *env, const char *flag, const char *value,
                                const char *needle)
{
    const char *flags[NET_CONFIG_N_SETTINGS] = {0};
    if (flag)
        flags[net_config_flag_index(flag, strlen(flag))] = value;
    net_config c;
    chcp_error *err = NULL;
    assert_int_equal(net_config_load(&c, fake_env, (void *)env, flags, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    if (!strstr(err->message, needle))
        fail_msg("'%s' does not mention '%s'", err->message, needle);
    error_free(err);
    net_config_free(&c);
}

static void test_config_errors(void **state)
{
#define E(...) ((const char *const[]){__VA_ARGS__, NULL})
    expect_config_error(E("CHCP_NET_MODE", "nat"), NULL, NULL, "CHCP_NET_MODE: 'nat'");
    expect_config_error(NULL, "--net-mode", "nat", "--net-mode: 'nat'");
    expect_config_error(E("CHCP_NET_IPV4_CIDR", "10.0.0.1/8"), NULL, NULL,
                        "CHCP_NET_IPV4_CIDR: '10.0.0.1/8' has host bits set");
    expect_config_error(E("CHCP_NET_IPV4_CIDR", "fd00::/64"), NULL, NULL, "not an IPv4 prefix");
    expect_config_error(E("CHCP_NET_IPV6_CIDR", "10.0.0.0/8"), NULL, NULL, "not an IPv6 prefix");
    expect_config_error(E("CHCP_NET_MTU", "67"), NULL, NULL, "CHCP_NET_MTU");
    expect_config_error(E("CHCP_NET_MTU", "1e3"), NULL, NULL, "CHCP_NET_MTU");
    expect_config_error(E("CHCP_NET_NAT", "maybe"), NULL, NULL, "CHCP_NET_NAT: not a boolean");
    expect_config_error(E("CHCP_NET_DNS", "1.1.1.1,,8.8.8.8"), NULL, NULL, "CHCP_NET_DNS");
    expect_config_error(E("CHCP_NET_DNS", "dns.example"), NULL, NULL, "not an IP address");
    expect_config_error(E("CHCP_NET_DNS", "1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5"), NULL, NULL,
                        "at most 4");
    expect_config_error(E("CHCP_NET_TAP_PREFIX", "toolong"), NULL, NULL, "CHCP_NET_TAP_PREFIX");
    expect_config_error(E("CHCP_NET_TAP_PREFIX", "Ch"), NULL, NULL, "CHCP_NET_TAP_PREFIX");
    expect_config_error(E("CHCP_NET_TAP_USER", "no-such-user-here"), NULL, NULL,
                        "CHCP_NET_TAP_USER: no user");
    expect_config_error(E("CHCP_NET_TAP_GROUP", "no-such-group-here"), NULL, NULL,
                        "CHCP_NET_TAP_GROUP: no group");
    expect_config_error(E("CHCP_NET_NFT_TABLE", "ip filter"), NULL, NULL, "CHCP_NET_NFT_TABLE");
    expect_config_error(E("CHCP_NET_BRIDGE", "br/0"), NULL, NULL, "CHCP_NET_BRIDGE");
    expect_config_error(E("CHCP_NET_BRIDGE", "a-name-longer-than-15"), NULL, NULL,
                        "CHCP_NET_BRIDGE");
    expect_config_error(E("CHCP_NET_SEED", "vfat"), NULL, NULL, "CHCP_NET_SEED");
    /* Fine alone, not together. */
    expect_config_error(E("CHCP_NET_MODE", "routed", "CHCP_NET_IPV4_CIDR", "10.0.0.0/31"), NULL,
                        NULL, "CHCP_NET_IPV4_CIDR: 10.0.0.0/31 is too small");
    expect_config_error(
        E("CHCP_NET_MODE", "bridge", "CHCP_NET_IPV6_CIDR", "fd00::/64", "CHCP_NET_MTU", "1000"),
        NULL, NULL, "below IPv6's minimum");
#undef E
}

/* ---- what guests are told ---------------------------------------------------------------- */

static net_nic nic(const char *tap, const char *mac, const char *v4, unsigned p4, const char *gw4,
                   const char *v6, unsigned p6, const char *gw6)
{
    net_nic n = {0};
    snprintf(n.tap, sizeof(n.tap), "%s", tap);
    snprintf(n.mac, sizeof(n.mac), "%s", mac);
    if (v4) {
        n.has_ipv4 = true;
        snprintf(n.ipv4, sizeof(n.ipv4), "%s", v4);
        snprintf(n.ipv4_gateway, sizeof(n.ipv4_gateway), "%s", gw4);
        n.ipv4_prefix = p4;
    }
    if (v6) {
        n.has_ipv6 = true;
        snprintf(n.ipv6, sizeof(n.ipv6), "%s", v6);
        snprintf(n.ipv6_gateway, sizeof(n.ipv6_gateway), "%s", gw6);
        n.ipv6_prefix = p6;
    }
    return n;
}

static void test_seed_content(void **state)
{
    net_nic nics[2] = {
        nic("chcpa0", "02:00:00:00:00:01", "10.97.0.5", 24, "10.97.0.1", "fd00:97::5", 64,
            "fd00:97::1"),
        nic("chcpa1", "02:00:00:00:00:02", "10.97.0.6", 24, "10.97.0.1", NULL, 0, NULL),
    };
    const char *dns[] = {"2001:db8::53", "192.0.2.53", "192.0.2.54"};
    net_seed_input in = {
        .vm_id = "123", .hostname = "web-1", .nics = nics, .n_nics = 2, .dns = dns, .n_dns = 3};
    char *s = net_seed_meta_data(&in);
    assert_string_equal(s, "instance-id: \"123\"\nlocal-hostname: \"web-1\"\n");
    free(s);
    s = net_seed_network_config(&in);
    assert_string_equal(s, "version: 2\n"
                           "ethernets:\n"
                           "  nic0:\n"
                           "    match:\n"
                           "      macaddress: \"02:00:00:00:00:01\"\n"
                           "    addresses: [\"10.97.0.5/24\", \"fd00:97::5/64\"]\n"
                           "    gateway4: 10.97.0.1\n"
                           "    gateway6: fd00:97::1\n"
                           "    nameservers:\n"
                           "      addresses: [\"2001:db8::53\", \"192.0.2.53\", \"192.0.2.54\"]\n"
                           "  nic1:\n"
                           "    match:\n"
                           "      macaddress: \"02:00:00:00:00:02\"\n"
                           "    addresses: [\"10.97.0.6/24\"]\n");
    free(s);
    /* ip= carries NIC 0's IPv4 and at most two IPv4 nameservers. */
    s = net_cmdline_ip(&in);
    assert_string_equal(s, "ip=10.97.0.5::10.97.0.1:255.255.255.0:web-1::off:192.0.2.53:"
                           "192.0.2.54");
    free(s);
    /* Routed: a /30. */
    nics[0] = nic("chcpa0", "02:00:00:00:00:01", "10.98.0.6", 30, "10.98.0.5", NULL, 0, NULL);
    in.n_nics = 1;
    in.n_dns = 0;
    s = net_cmdline_ip(&in);
    assert_string_equal(s, "ip=10.98.0.6::10.98.0.5:255.255.255.252:web-1::off");
    free(s);
    /* A NIC without addresses is still matched (the guest may use DHCP). */
    nics[0] = nic("chcpa0", "02:00:00:00:00:01", NULL, 0, NULL, NULL, 0, NULL);
    s = net_seed_network_config(&in);
    assert_string_equal(s, "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: "
                           "\"02:00:00:00:00:01\"\n");
    free(s);
    assert_null(net_cmdline_ip(&in));
    in.n_nics = 0;
    assert_null(net_seed_network_config(&in));
    assert_null(net_cmdline_ip(&in));
}

static void test_nft_rules(void **state)
{
    net_config c;
    assert_int_equal(net_config_load(&c, fake_env, NULL, NULL, NULL), 0);
    c.mode = NET_MODE_BRIDGE;
    net_nic n0 =
        nic("t0", "02:00:00:00:00:01", "10.97.0.5", 24, "10.97.0.1", "fd00::5", 64, "fd00::1");
    net_port_forward fw[] = {{NET_PROTO_TCP, 8080, 80}, {NET_PROTO_UDP, 5353, 53}};
    net_nft_vm vm = {.vm_id = "web-1", .nic0 = &n0, .nat = true, .forwards = fw, .n_forwards = 2};
    char *r = net_nft_vm_rules(&c, &vm);
    const char *want[] = {
        "add rule inet chcp postrouting ip saddr 10.97.0.5 oifname != \"chcpbr0\" masquerade "
        "comment \"chcp vm=web-1\"\n",
        "add rule inet chcp postrouting ip6 saddr fd00::5 oifname != \"chcpbr0\" masquerade "
        "comment \"chcp vm=web-1\"\n",
        "add rule inet chcp prerouting meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat "
        "ip to 10.97.0.5:80 comment \"chcp vm=web-1\"\n",
        "add rule inet chcp output meta nfproto ipv6 fib daddr type local tcp dport 8080 dnat "
        "ip6 to [fd00::5]:80 comment \"chcp vm=web-1\"\n",
        "add rule inet chcp prerouting meta nfproto ipv4 fib daddr type local udp dport 5353 dnat "
        "ip to 10.97.0.5:53 comment \"chcp vm=web-1\"\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        if (!strstr(r, want[i]))
            fail_msg("missing rule %s in:\n%s", want[i], r);
    size_t lines = 0;
    for (const char *p = r; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + 2 * 2 * 2); /* masquerade x2, 2 forwards x 2 chains x 2 families */
    free(r);

    /* Routed: every chcp TAP is "inside"; no NAT, no forwards: nothing. */
    c.mode = NET_MODE_ROUTED;
    n0.has_ipv6 = false;
    vm.n_forwards = 0;
    r = net_nft_vm_rules(&c, &vm);
    assert_string_equal(r, "add rule inet chcp postrouting ip saddr 10.97.0.5 oifname != "
                           "\"chcp*\" masquerade comment \"chcp vm=web-1\"\n");
    free(r);
    vm.nat = false;
    r = net_nft_vm_rules(&c, &vm);
    assert_string_equal(r, "");
    free(r);
    net_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vm_ids),        cmocka_unit_test(test_tap_names),
        cmocka_unit_test(test_macs),          cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_bridge_pool),   cmocka_unit_test(test_routed_and_v6_pools),
        cmocka_unit_test(test_marks),         cmocka_unit_test(test_config_defaults_and_values),
        cmocka_unit_test(test_config_errors), cmocka_unit_test(test_seed_content),
        cmocka_unit_test(test_nft_rules),
    };
    return cmocka_run_group_tests_name("net_names", tests, NULL, NULL);
}
