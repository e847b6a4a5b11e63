/*
 * net.h - a VM's host networking and metadata, for every VMM backend: TAP
 * devices chcp creates and owns, a bridge (or per-VM routed links), MAC and
 * IPv4/IPv6 address allocation stored durably, NAT and port forwarding in an
 * nftables table of chcp's own, the guest's addressing on the kernel command
 * line and in a cloud-init NoCloud seed image, and copy-on-write root disks.
 *
 * Everything here is synchronous and may block (netlink, SQLite commits,
 * spawning genisoimage or qemu-img): callers on the event loop run it on
 * libuv's thread pool. A net_ctx may be used from several threads at once;
 * calls for the same VM must not overlap (the VM manager's per-VM queue
 * already guarantees that).
 *
 * The lifecycle, and how a backend or recovery uses it (docs/networking.md):
 *
 *   net_open          once at start: opens <state_dir>/net.db, makes sure the
 *                     bridge (created if missing, with its addresses) and the
 *                     nftables table with its chains exist.
 *   net_reconcile     at recovery, with the ids of every VM the store holds:
 *                     removes TAPs, rules and allocations no VM owns.
 *   net_vm_setup      CreateVm (and again at recovery or before a boot: it is
 *                     idempotent): allocates, creates TAPs, rules, the seed.
 *                     The result names the TAPs (Firecracker: host_dev_name;
 *                     Cloud Hypervisor: tap=), MACs, addresses, the kernel
 *                     command-line fragment and the seed image to attach.
 *   net_tap_open      at VMM spawn, for backends that take TAP descriptors
 *                     (QEMU -netdev tap,fd=; Cloud Hypervisor vm.add-net
 *                     with SCM_RIGHTS).
 *   net_vm_release    DeleteVm, a VMM crash, a failed CreateVm: removes the
 *                     VM's TAPs, rules, seed and allocations. Idempotent;
 *                     safe for a VM that never had networking.
 *
 * Everything chcp creates on the host is recognisable: TAP names start with
 * CHCP_NET_TAP_PREFIX and carry the interface alias "chcp vm=<id> nic=<n>";
 * nftables rules live only in table inet <CHCP_NET_NFT_TABLE> and carry the
 * comment "chcp vm=<id>". Nothing else on the host is ever removed.
 *
 * Errors are chcp_error objects with Connect codes; nothing here prints.
 */
#ifndef CHCP_NET_H
#define CHCP_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "core/core.h"

#define NET_VM_ID_MAX 63  /* same rule as VM ids: [a-z0-9][a-z0-9-]* */
#define NET_MAX_NICS 8    /* per VM */
#define NET_IFNAME_LEN 16 /* IFNAMSIZ, with the NUL */
#define NET_MAC_LEN 18    /* "02:ab:cd:ef:01:23" with the NUL */
#define NET_ADDR_LEN 46   /* INET6_ADDRSTRLEN */
#define NET_MAX_FORWARDS 64
#define NET_MAX_USER_DATA (1u << 20)

/* ---- configuration (CHCP_NET_* variables, --net-* flags) ---------------------- */

typedef enum net_mode {
    NET_MODE_OFF,    /* chcp manages no networking (the default) */
    NET_MODE_BRIDGE, /* TAPs on one bridge; guests share a subnet */
    NET_MODE_ROUTED, /* one routed point-to-point link (a /30, /126) per NIC */
} net_mode;

typedef enum net_seed_format {
    NET_SEED_OFF,
    NET_SEED_ISO9660, /* genisoimage, volume label cidata */
} net_seed_format;

/* An IPv4 or IPv6 prefix ("10.97.0.0/16"); host bits are zero. */
typedef struct net_prefix {
    int family; /* AF_INET, AF_INET6, or 0 when unset */
    uint8_t addr[16];
    unsigned len;
} net_prefix;

#define NET_MAX_DNS 4

typedef struct net_config {
    net_mode mode;          /* CHCP_NET_MODE: off | bridge | routed */
    char *bridge;           /* CHCP_NET_BRIDGE, default chcpbr0 */
    net_prefix ipv4;        /* CHCP_NET_IPV4_CIDR, default 10.97.0.0/16 */
    net_prefix ipv6;        /* CHCP_NET_IPV6_CIDR, default none */
    uint32_t mtu;           /* CHCP_NET_MTU, default 1500 */
    bool isolate;           /* CHCP_NET_ISOLATE: guests cannot reach each other */
    bool nat;               /* CHCP_NET_NAT: masquerade guest traffic leaving the host */
    char *dns[NET_MAX_DNS]; /* CHCP_NET_DNS: nameservers for guests */
    size_t n_dns;
    char *tap_prefix;     /* CHCP_NET_TAP_PREFIX, default "chcp" (1-5 of [a-z0-9]) */
    char *nft_table;      /* CHCP_NET_NFT_TABLE, default "chcp" */
    uid_t tap_uid;        /* CHCP_NET_TAP_USER: who may open the TAPs; default us */
    gid_t tap_gid;        /* CHCP_NET_TAP_GROUP, default none ((gid_t)-1) */
    net_seed_format seed; /* CHCP_NET_SEED: iso9660 | off */
} net_config;

/* Number of CHCP_NET_* settings (each has a --net-* flag). */
#define NET_CONFIG_N_SETTINGS 13

typedef const char *(*net_config_get_fn)(const char *name, void *ud);

void net_config_defaults(net_config *nc);
/* The index of a --net-* flag (name of `len` bytes, without "=value"), or -1. */
int net_config_flag_index(const char *flag, size_t len);
/* Defaults, then for every setting: flag_values[i] when non-NULL (a flag the
 * daemon collected with net_config_flag_index), else the variable; empty
 * means default. The first bad value fails with CHCP_INVALID_ARGUMENT naming
 * the flag or variable; settings that contradict each other name both.
 * flag_values may be NULL. */
int net_config_load(net_config *nc, net_config_get_fn get, void *ud, const char *const *flag_values,
                    chcp_error **err);
void net_config_free(net_config *nc);
void net_config_usage(FILE *out);
/* The i-th CHCP_NET_* variable name, NULL past the last (for the daemon's
 * check of misspelt variables). */
const char *net_config_variable_name(size_t i);
const char *net_mode_name(net_mode m);

/* ---- per-VM networking -------------------------------------------------------- */

typedef struct net_ctx net_ctx;

/* Open the allocation database <state_dir>/net.db (created 0600; WAL,
 * synchronous=NORMAL) and, unless the mode is off, prepare the host: the
 * bridge and its gateway addresses (bridge mode), the nftables table and its
 * chains, IPv4 forwarding when NAT is on. The config is copied. */
net_ctx *net_open(const net_config *cfg, const char *state_dir, chcp_error **err);
void net_close(net_ctx *n);
const net_config *net_ctx_config(const net_ctx *n);

/* What a VM asks for on one NIC; every field may be NULL (then chcp picks). */
typedef struct net_nic_request {
    const char *mac;  /* "52:54:00:12:34:56": unicast, not all zero */
    const char *ipv4; /* an address inside CHCP_NET_IPV4_CIDR no other VM holds */
    const char *ipv6;
} net_nic_request;

typedef enum net_proto { NET_PROTO_TCP, NET_PROTO_UDP } net_proto;

/* host_port on the host's own addresses -> guest_port on NIC 0. */
typedef struct net_port_forward {
    net_proto proto;
    uint16_t host_port;
    uint16_t guest_port;
} net_port_forward;

typedef struct net_vm_request {
    const char *vm_id;
    const char *hostname; /* NULL: the VM id */
    const net_nic_request *nics;
    size_t n_nics; /* 0..NET_MAX_NICS (0 with mode off: a seed only) */
    const net_port_forward *forwards;
    size_t n_forwards;
    const char *dir;       /* the VM's directory, where the seed is written; NULL: no seed */
    const char *user_data; /* cloud-init user-data; NULL: "#cloud-config\n" */
    size_t user_data_len;
} net_vm_request;

typedef struct net_nic {
    char tap[NET_IFNAME_LEN];
    char mac[NET_MAC_LEN];
    bool has_ipv4;
    char ipv4[NET_ADDR_LEN]; /* the guest's address */
    unsigned ipv4_prefix;
    char ipv4_gateway[NET_ADDR_LEN]; /* the host side: bridge or TAP address */
    bool has_ipv6;
    char ipv6[NET_ADDR_LEN];
    unsigned ipv6_prefix;
    char ipv6_gateway[NET_ADDR_LEN];
} net_nic;

typedef struct net_vm {
    size_t n_nics;
    net_nic nics[NET_MAX_NICS];
    char *cmdline;   /* "ip=<addr>::<gw>:<mask>:<hostname>::off[:dns]" for NIC 0, or NULL */
    char *seed_path; /* <dir>/cidata.iso, or NULL */
} net_vm;

void net_vm_clear(net_vm *v);

/*
 * Give a VM its networking. Idempotent: a second call with the same request
 * returns the same TAPs, MACs and addresses and repairs whatever is missing
 * on the host (a deleted TAP, a flushed rule). Allocations are durable before
 * anything is created on the host. On failure the VM may be half set up:
 * call net_vm_release when giving up on it.
 *   invalid_argument    bad id, MAC, address, port, too many NICs, huge user-data
 *   already_exists      a requested MAC, address or host port belongs to another VM
 *   resource_exhausted  no free address left in a pool
 *   failed_precondition networking is off but NICs were asked for; an interface
 *                       with the TAP's name exists and is not chcp's
 *   unavailable/internal the host refused (netlink, nftables, genisoimage)
 */
int net_vm_setup(net_ctx *n, const net_vm_request *req, net_vm *out, chcp_error **err);

/* What is allocated to a VM (TAPs, MACs, addresses), from the database only:
 * the host is not touched. n_nics 0 when the VM has nothing. */
int net_vm_get(net_ctx *n, const char *vm_id, net_vm *out, chcp_error **err);

/* Remove everything of a VM: its TAPs (found by name and by alias), its
 * nftables rules, <dir>/cidata.iso (dir may be NULL), then its allocations.
 * Idempotent. Keeps going after a failure and reports the first one. */
int net_vm_release(net_ctx *n, const char *vm_id, const char *dir, chcp_error **err);

typedef struct net_reconcile_result {
    size_t taps;        /* TAP devices removed */
    size_t rules;       /* nftables rules removed */
    size_t allocations; /* VMs whose database rows were removed */
} net_reconcile_result;

/* Remove what belongs to no VM in `live_ids` (every VM the daemon knows,
 * whatever its state): TAPs with chcp's prefix and alias marker, rules with
 * chcp's comment in chcp's table, allocation rows. Anything without chcp's
 * marks is left alone. */
int net_reconcile(net_ctx *n, const char *const *live_ids, size_t n_live, net_reconcile_result *out,
                  chcp_error **err);

/* Open a queue of an existing TAP (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, one
 * queue) for a VMM that takes descriptors. Returns the fd (O_CLOEXEC) or -1.
 * Only one descriptor can be attached at a time (busy: failed_precondition). */
int net_tap_open(const char *tap, chcp_error **err);

/* ---- names (also used by the tests) -------------------------------------------- */

/* 0, or -1 with invalid_argument: 1-63 of [a-z0-9-], not starting with '-'. */
int net_validate_vm_id(const char *vm_id, chcp_error **err);
/* The TAP name of a VM's NIC: prefix + base32 of a hash of (vm_id, nic,
 * attempt), 15 characters. `attempt` > 0 only after a name collision. */
void net_tap_name(const char *prefix, const char *vm_id, unsigned nic, unsigned attempt,
                  char out[NET_IFNAME_LEN]);
/* A locally administered unicast MAC from (vm_id, nic, attempt). */
void net_mac_generate(const char *vm_id, unsigned nic, unsigned attempt, char out[NET_MAC_LEN]);
/* Parse and normalise (lower case) a MAC; rejects multicast and all-zero. */
int net_mac_parse(const char *text, char out[NET_MAC_LEN], chcp_error **err);
/* "10.97.0.0/16", "fd00:97::/64": host bits must be zero. */
int net_prefix_parse(const char *text, net_prefix *out, chcp_error **err);
void net_prefix_format(const net_prefix *p, char *out, size_t len);

/* ---- copy-on-write root disks ------------------------------------------------------ */

typedef enum net_layer_kind {
    NET_LAYER_QCOW2, /* qcow2 overlay with `base` as backing file (QEMU, Cloud Hypervisor) */
    NET_LAYER_COPY,  /* a reflink clone, else a sparse copy (raw-only VMMs: Firecracker) */
} net_layer_kind;

/* Make `layer` (must not exist; created 0600) a writable layer over `base`
 * (raw or qcow2, detected). For qcow2 the backing file is recorded as `base`
 * exactly as given: pass the image link in the VM's directory. */
int net_disk_layer_create(const char *base, const char *layer, net_layer_kind kind,
                          chcp_error **err);
/* Remove a layer; a missing file is fine. */
int net_disk_layer_remove(const char *layer, chcp_error **err);

#endif
