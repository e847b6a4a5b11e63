/*
 * net_internal.h - what the files of src/net share and nobody else uses:
 * the allocation database, netlink and TUN helpers, the nftables table, the
 * seed renderer and the tool runner. Tests include it to check the pure parts
 * (content of the seed, address arithmetic) without a host to change.
 */
#ifndef CHCP_NET_INTERNAL_H
#define CHCP_NET_INTERNAL_H

#include <pthread.h>

#include "net/net.h"

/* ---- names.c: hashing, addresses ----------------------------------------------- */

/* A stable 64-bit hash of the NUL-separated parts (FNV-1a, then a mixer so
 * every output bit depends on every input bit). */
uint64_t net_hash(const char *const *parts, size_t n);
/* The alias chcp writes on its TAPs, and its parser ("chcp vm=<id> nic=<n>"). */
void net_tap_alias(const char *vm_id, unsigned nic, char *out, size_t len);
bool net_tap_alias_parse(const char *alias, char vm_id[NET_VM_ID_MAX + 1], unsigned *nic);
/* The comment on nftables rules ("chcp vm=<id>") and its parser. */
void net_rule_comment(const char *vm_id, char *out, size_t len);
bool net_rule_comment_parse(const char *comment, char vm_id[NET_VM_ID_MAX + 1]);
/* Parse one address of `family` (0: either), text form out of `addr`. */
int net_addr_parse(const char *text, int family, int *family_out, uint8_t addr[16]);
void net_addr_format(int family, const uint8_t addr[16], char *out, size_t len);
/* addr = base + offset (in the low 64 bits; a prefix is never longer). */
void net_addr_add(int family, const uint8_t base[16], uint64_t offset, uint8_t out[16]);
/* offset of addr inside p, or -1 when outside or farther than 2^62. */
int64_t net_addr_offset(const net_prefix *p, const uint8_t addr[16]);
/* The dotted netmask of an IPv4 prefix length. */
void net_netmask4(unsigned len, char *out, size_t size);

/* ---- pools: what a configured prefix hands out ---------------------------------- */

/*
 * One pool per configured prefix and mode. Slots are numbered from 0; a slot
 * is one guest address (bridge mode: the prefix's address + slot, slots 0, 1
 * and the IPv4 broadcast reserved) or one point-to-point block of 4 (routed:
 * host = block + 1, guest = block + 2).
 */
typedef struct net_pool {
    char key[80]; /* "bridge 10.97.0.0/16": the database's pool column */
    net_prefix prefix;
    net_mode mode;
    int64_t first, last; /* usable slots, inclusive */
} net_pool;

int net_pool_init(net_pool *p, net_mode mode, const net_prefix *prefix, chcp_error **err);
/* Guest address, host-side (gateway) address and prefix length of a slot. */
void net_pool_slot(const net_pool *p, int64_t slot, uint8_t guest[16], uint8_t host[16],
                   unsigned *prefix_len);
/* The slot of a guest address, or -1 (outside the pool, reserved, a host side). */
int64_t net_pool_slot_of(const net_pool *p, const uint8_t guest[16]);
/* The gateway address on the bridge (bridge mode). */
void net_pool_bridge_address(const net_pool *p, uint8_t out[16]);

/* ---- db.c: the allocation database ------------------------------------------------ */

typedef struct net_db net_db;

net_db *net_db_open(const char *state_dir, chcp_error **err);
void net_db_close(net_db *db);

typedef struct net_db_nic {
    unsigned nic;
    char tap[NET_IFNAME_LEN];
    char mac[NET_MAC_LEN];
    bool has_v4, has_v6;
    int64_t slot4, slot6;
} net_db_nic;

typedef struct net_db_alloc_request {
    const char *vm_id;
    const char *tap_prefix;
    const net_nic_request *nics;
    size_t n_nics;
    const net_pool *pool4, *pool6; /* NULL: that family is not configured */
    const net_port_forward *forwards;
    size_t n_forwards;
} net_db_alloc_request;

/* In one transaction: keep or make the VM's NIC rows (TAP name, MAC), its
 * address slots and its forwarded host ports, honouring requests; drop NICs
 * beyond n_nics. Fills out[0..n_nics). */
int net_db_allocate(net_db *db, const net_db_alloc_request *req, net_db_nic *out, chcp_error **err);
/* The VM's rows (0 NICs when none); the pools map slots back to addresses. */
int net_db_get(net_db *db, const char *vm_id, const net_pool *pool4, const net_pool *pool6,
               net_db_nic out[NET_MAX_NICS], size_t *n_out, chcp_error **err);
/* Every TAP name the VM has in the database. */
int net_db_taps(net_db *db, const char *vm_id, char taps[NET_MAX_NICS][NET_IFNAME_LEN],
                size_t *n_out, chcp_error **err);
int net_db_release(net_db *db, const char *vm_id, chcp_error **err);
/* Delete the rows of VMs not in live_ids; *removed counts VMs. */
int net_db_reconcile(net_db *db, const char *const *live_ids, size_t n_live, size_t *removed,
                     chcp_error **err);

/* ---- link.c: netlink (libmnl) ------------------------------------------------------- */

typedef struct net_link_info {
    int ifindex;
    char name[NET_IFNAME_LEN];
    char kind[16]; /* "tun", "bridge", ... ("" when none) */
    char alias[256];
    int master; /* ifindex of the bridge, 0 */
    uint32_t mtu;
    bool up;
} net_link_info;

/* 1 found, 0 no such link, -1 error. */
int net_link_get(const char *name, net_link_info *out, chcp_error **err);
typedef void (*net_link_fn)(const net_link_info *link, void *ud);
int net_link_dump(net_link_fn fn, void *ud, chcp_error **err);
int net_link_create_bridge(const char *name, uint32_t mtu, chcp_error **err);
/* Any of mtu (0: leave), master (-1: leave, 0: none), alias (NULL: leave). */
int net_link_set(int ifindex, uint32_t mtu, int master, const char *alias, bool up,
                 chcp_error **err);
int net_link_set_isolated(int ifindex, bool isolated, chcp_error **err);
/* Add an address (present already: fine). IPv6 without duplicate address
 * detection: chcp owns the subnet. */
int net_addr_add_link(int ifindex, int family, const uint8_t addr[16], unsigned prefix_len,
                      chcp_error **err);
/* 0 deleted, 1 was not there, -1 error. */
int net_link_delete(const char *name, chcp_error **err);

/* ---- tap.c: TUN/TAP ioctls ------------------------------------------------------------ */

/* Create a persistent TAP owned by uid/gid ((uid_t)-1: none) whose alias is
 * set before it becomes persistent, so a crash leaves either nothing or a
 * marked TAP. */
int net_tap_create(const char *name, uid_t uid, gid_t gid, const char *alias, chcp_error **err);

/* ---- nft.c: the nftables table --------------------------------------------------------- */

typedef struct net_nft net_nft;

net_nft *net_nft_new(const net_config *cfg, chcp_error **err);
void net_nft_free(net_nft *t);
/* Table, chains and the configuration's own rules (isolation). */
int net_nft_prepare(net_nft *t, chcp_error **err);
/* Replace the VM's rules with `rules` (one nft rule body per line, each
 * "add rule <family> <table> <chain> ..." written by net_nft_vm_rules), atomically. */
int net_nft_vm_replace(net_nft *t, const char *vm_id, const char *rules, chcp_error **err);
/* Remove the rules of the VM (live_ids NULL) or of every VM not in live_ids;
 * *removed counts rules. */
int net_nft_remove(net_nft *t, const char *vm_id, const char *const *live_ids, size_t n_live,
                   size_t *removed, chcp_error **err);

typedef struct net_nft_vm {
    const char *vm_id;
    const net_nic *nic0; /* addresses of NIC 0 */
    bool nat;
    const net_port_forward *forwards;
    size_t n_forwards;
} net_nft_vm;

/* The VM's rules (masquerade, port forwards) as nft commands; "" when none. */
char *net_nft_vm_rules(const net_config *cfg, const net_nft_vm *vm);

/* ---- seed.c: NoCloud seed -------------------------------------------------------------- */

typedef struct net_seed_input {
    const char *vm_id;
    const char *hostname;
    const net_nic *nics;
    size_t n_nics;
    const char *const *dns;
    size_t n_dns;
    const char *user_data;
    size_t user_data_len;
} net_seed_input;

char *net_seed_meta_data(const net_seed_input *in);
char *net_seed_network_config(const net_seed_input *in); /* NULL when no NIC */
/* The kernel's ip= for NIC 0's IPv4, NULL without one. */
char *net_cmdline_ip(const net_seed_input *in);
/* Write <dir>/cidata.iso (atomically: a temporary name, then rename). */
int net_seed_write(const net_seed_input *in, const char *dir, char **path_out, chcp_error **err);
int net_seed_remove(const char *dir, chcp_error **err);

/* ---- run.c: running a tool -------------------------------------------------------------- */

/* Run argv[0] (a bare name found in the system directories, or an absolute
 * path) with a clean environment, stdin /dev/null, no descriptors but 0-2,
 * within timeout_ms; a non-zero exit becomes an error carrying the end of its
 * stderr. */
int net_run(const char *const argv[], uint64_t timeout_ms, chcp_error **err);
/* Absolute path of a tool in the system directories, or NULL. Caller frees. */
char *net_find_tool(const char *name);

#endif
