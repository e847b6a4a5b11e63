/*
 * names.c - the names and numbers chcp derives for a VM: TAP device names,
 * MAC addresses, the marks that identify what chcp created, address prefixes
 * and the arithmetic that maps a pool slot to an address.
 *
 * Everything is derived from the VM id with a stable hash, so the same VM
 * gets the same TAP name and MAC on every host and after every restart; the
 * database (db.c) only has to step in when two VMs collide.
 */
#include "net/net_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int net_validate_vm_id(const char *vm_id, chcp_error **err)
{
    size_t n = vm_id ? strlen(vm_id) : 0;
    if (n == 0 || n > NET_VM_ID_MAX)
        return error_set(err, CHCP_INVALID_ARGUMENT, "vm_id: must be 1-%d characters long",
                         NET_VM_ID_MAX);
    if (vm_id[0] == '-')
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "vm_id: must start with a lower-case letter or a digit");
    for (size_t i = 0; i < n; i++) {
        char c = vm_id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "vm_id: only lower-case letters, digits and '-' are allowed");
    }
    return 0;
}

uint64_t net_hash(const char *const *parts, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) {
            h ^= *p;
            h *= 0x100000001b3ull;
        }
        h *= 0x100000001b3ull; /* a NUL separator: x ^ 0 == x */
    }
    /* splitmix64's finaliser: FNV's low bits alone are weak. */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static uint64_t hash3(const char *kind, const char *vm_id, unsigned a, unsigned b)
{
    char sa[16], sb[16];
    snprintf(sa, sizeof(sa), "%u", a);
    snprintf(sb, sizeof(sb), "%u", b);
    const char *parts[] = {kind, vm_id, sa, sb};
    return net_hash(parts, ARRAY_SIZE(parts));
}

void net_tap_name(const char *prefix, const char *vm_id, unsigned nic, unsigned attempt,
                  char out[NET_IFNAME_LEN])
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    size_t plen = strlen(prefix);
    size_t stem = NET_IFNAME_LEN - 2 - plen; /* room for the NIC digit and the NUL */
    uint64_t h = hash3("tap", vm_id, 0, attempt);
    memcpy(out, prefix, plen);
    for (size_t i = 0; i < stem; i++, h >>= 5)
        out[plen + i] = b32[h & 31];
    out[plen + stem] = (char)('0' + nic % 10);
    out[plen + stem + 1] = 0;
}

void net_mac_generate(const char *vm_id, unsigned nic, unsigned attempt, char out[NET_MAC_LEN])
{
    uint64_t h = hash3("mac", vm_id, nic, attempt);
    uint8_t b[6];
    for (int i = 0; i < 6; i++, h >>= 8)
        b[i] = (uint8_t)h;
    b[0] = (uint8_t)((b[0] & 0xfc) | 0x02); /* locally administered, unicast */
    snprintf(out, NET_MAC_LEN, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int net_mac_parse(const char *text, char out[NET_MAC_LEN], chcp_error **err)
{
    uint8_t b[6];
    if (!text || strlen(text) != 17)
        goto bad;
    for (int i = 0; i < 6; i++) {
        int hi = hexval(text[i * 3]), lo = hexval(text[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':'))
            goto bad;
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    if (b[0] & 1)
        return error_set(err, CHCP_INVALID_ARGUMENT, "mac: %s is a multicast address", text);
    if (!(b[0] | b[1] | b[2] | b[3] | b[4] | b[5]))
        return error_set(err, CHCP_INVALID_ARGUMENT, "mac: the all-zero address is not usable");
    snprintf(out, NET_MAC_LEN, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    return 0;
bad:
    return error_set(err, CHCP_INVALID_ARGUMENT, "mac: '%s' is not of the form 52:54:00:12:34:56",
                     text ? text : "");
}

/* ---- marks ------------------------------------------------------------------------ */

void net_tap_alias(const char *vm_id, unsigned nic, char *out, size_t len)
{
    snprintf(out, len, "chcp vm=%s nic=%u", vm_id, nic);
}

bool net_tap_alias_parse(const char *alias, char vm_id[NET_VM_ID_MAX + 1], unsigned *nic)
{
    if (!str_has_prefix(alias, "chcp vm="))
        return false;
    const char *id = alias + 8, *sp = strchr(id, ' ');
    if (!sp || sp == id || (size_t)(sp - id) > NET_VM_ID_MAX || !str_has_prefix(sp, " nic="))
        return false;
    uint64_t v;
    if (!str_to_u64(sp + 5, NET_MAX_NICS - 1, &v))
        return false;
    memcpy(vm_id, id, (size_t)(sp - id));
    vm_id[sp - id] = 0;
    *nic = (unsigned)v;
    return net_validate_vm_id(vm_id, NULL) == 0;
}

void net_rule_comment(const char *vm_id, char *out, size_t len)
{
    snprintf(out, len, "chcp vm=%s", vm_id);
}

bool net_rule_comment_parse(const char *comment, char vm_id[NET_VM_ID_MAX + 1])
{
    if (!comment || !str_has_prefix(comment, "chcp vm="))
        return false;
    const char *id = comment + 8;
    if (strlen(id) > NET_VM_ID_MAX)
        return false;
    strcpy(vm_id, id);
    return net_validate_vm_id(vm_id, NULL) == 0;
}

/* ---- addresses ------------------------------------------------------------------------ */

int net_addr_parse(const char *text, int family, int *family_out, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if ((family == 0 || family == AF_INET) && inet_pton(AF_INET, text, addr) == 1) {
        *family_out = AF_INET;
        return 0;
    }
    if ((family == 0 || family == AF_INET6) && inet_pton(AF_INET6, text, addr) == 1) {
        *family_out = AF_INET6;
        return 0;
    }
    return -1;
}

void net_addr_format(int family, const uint8_t addr[16], char *out, size_t len)
{
    if (!inet_ntop(family, addr, out, (socklen_t)len))
        snprintf(out, len, "?");
}

static size_t addr_bytes(int family)
{
    return family == AF_INET ? 4 : 16;
}

void net_addr_add(int family, const uint8_t base[16], uint64_t offset, uint8_t out[16])
{
    size_t n = addr_bytes(family);
    memcpy(out, base, 16);
    unsigned carry = 0;
    for (size_t i = n; i-- > 0;) {
        unsigned s = out[i] + (unsigned)(offset & 0xff) + carry;
        out[i] = (uint8_t)s;
        carry = s >> 8;
        offset >>= 8;
    }
}

int64_t net_addr_offset(const net_prefix *p, const uint8_t addr[16])
{
    size_t n = addr_bytes(p->family);
    /* The network bits must match. */
    for (unsigned bit = 0; bit < p->len; bit++) {
        unsigned byte = bit / 8, mask = 0x80u >> (bit % 8);
        if ((addr[byte] ^ p->addr[byte]) & mask)
            return -1;
    }
    /* The host part, if it fits 62 bits. */
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (off >> 54)
            return -1;
        off = off << 8 | (uint8_t)(addr[i] & ~p->addr[i]);
    }
    return off > (1ull << 62) ? -1 : (int64_t)off;
}

void net_netmask4(unsigned len, char *out, size_t size)
{
    uint32_t m = len ? ~0u << (32 - len) : 0;
    snprintf(out, size, "%u.%u.%u.%u", m >> 24, (m >> 16) & 0xff, (m >> 8) & 0xff, m & 0xff);
}

int net_prefix_parse(const char *text, net_prefix *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    const char *slash = text ? strchr(text, '/') : NULL;
    if (!slash || slash == text || (size_t)(slash - text) >= NET_ADDR_LEN)
        return error_set(err, CHCP_INVALID_ARGUMENT, "'%s' is not ADDRESS/PREFIX",
                         text ? text : "");
    char addr[NET_ADDR_LEN];
    memcpy(addr, text, (size_t)(slash - text));
    addr[slash - text] = 0;
    int family;
    if (net_addr_parse(addr, 0, &family, out->addr) < 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "'%s' is not an IPv4 or IPv6 address", addr);
    uint64_t len;
    unsigned max = family == AF_INET ? 32 : 128;
    if (!str_to_u64(slash + 1, max, &len))
        return error_set(err, CHCP_INVALID_ARGUMENT, "'%s': prefix length must be 0-%u", text, max);
    out->family = family;
    out->len = (unsigned)len;
    for (unsigned bit = out->len; bit < max; bit++)
        if (out->addr[bit / 8] & (0x80u >> (bit % 8)))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "'%s' has host bits set (did you mean the network address?)", text);
    return 0;
}

void net_prefix_format(const net_prefix *p, char *out, size_t len)
{
    char a[NET_ADDR_LEN];
    net_addr_format(p->family, p->addr, a, sizeof(a));
    snprintf(out, len, "%s/%u", a, p->len);
}

/* ---- pools ------------------------------------------------------------------------------ */

#define ROUTED_BLOCK 4
#define MAX_SLOTS (1ll << 62)

int net_pool_init(net_pool *p, net_mode mode, const net_prefix *prefix, chcp_error **err)
{
    memset(p, 0, sizeof(*p));
    p->prefix = *prefix;
    p->mode = mode;
    unsigned bits = (prefix->family == AF_INET ? 32 : 128) - prefix->len;
    int64_t size = bits >= 62 ? MAX_SLOTS : 1ll << bits;
    char text[64];
    net_prefix_format(prefix, text, sizeof(text));
    snprintf(p->key, sizeof(p->key), "%s %s", net_mode_name(mode), text);
    if (mode == NET_MODE_ROUTED) {
        p->first = 0;
        p->last = size / ROUTED_BLOCK - 1;
    } else {
        p->first = 2; /* the network (IPv6: subnet-router anycast) and the gateway */
        p->last = size - (prefix->family == AF_INET ? 2 : 1); /* the IPv4 broadcast */
        if (bits >= 62)
            p->last = size - 1;
    }
    if (p->last < p->first)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s is too small to hand out addresses", text);
    return 0;
}

void net_pool_slot(const net_pool *p, int64_t slot, uint8_t guest[16], uint8_t host[16],
                   unsigned *prefix_len)
{
    int f = p->prefix.family;
    if (p->mode == NET_MODE_ROUTED) {
        uint64_t block = (uint64_t)slot * ROUTED_BLOCK;
        net_addr_add(f, p->prefix.addr, block + 2, guest);
        net_addr_add(f, p->prefix.addr, block + 1, host);
        *prefix_len = f == AF_INET ? 30 : 126;
        return;
    }
    net_addr_add(f, p->prefix.addr, (uint64_t)slot, guest);
    net_addr_add(f, p->prefix.addr, 1, host);
    *prefix_len = p->prefix.len;
}

int64_t net_pool_slot_of(const net_pool *p, const uint8_t guest[16])
{
    int64_t off = net_addr_offset(&p->prefix, guest);
    if (off < 0)
        return -1;
    if (p->mode == NET_MODE_ROUTED) {
        if (off % ROUTED_BLOCK != 2)
            return -1;
        off /= ROUTED_BLOCK;
    }
    return off >= p->first && off <= p->last ? off : -1;
}

void net_pool_bridge_address(const net_pool *p, uint8_t out[16])
{
    net_addr_add(p->prefix.family, p->prefix.addr, 1, out);
}
