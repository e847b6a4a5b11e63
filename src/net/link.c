/*
 * link.c - the rtnetlink requests chcp needs, over libmnl: look links up and
 * list them (with their alias, the mark chcp leaves on its TAPs), create a
 * bridge, set a link's MTU, master, alias and state, isolate a bridge port,
 * add an address, delete a link.
 *
 * Each request opens its own netlink socket: requests are rare (VM setup and
 * teardown), run on several threads, and a fresh socket means no shared
 * sequence numbers or stale replies. Everything acts in the calling thread's
 * network namespace.
 */
#include "net/net_internal.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define NL_BUF_SIZE 32768
#define NL_TIMEOUT_S 10

static atomic_uint nl_seq;

/* Send one request and run `cb` on every reply message until the ack or the
 * end of a dump. A netlink error becomes a chcp_error naming `what`. */
static int nl_talk(struct nlmsghdr *nlh, mnl_cb_t cb, void *data, const char *what, int *errno_out,
                   chcp_error **err)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "%s: netlink socket", what);
    int rc = -1, e = 0;
    char *buf = xmalloc(NL_BUF_SIZE);
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        e = errno;
        goto out;
    }
    unsigned portid = mnl_socket_get_portid(nl);
    unsigned seq = atomic_fetch_add(&nl_seq, 1) + (unsigned)time(NULL);
    nlh->nlmsg_seq = seq;
    /* NLM_F_DUMP's bits mean NLM_F_REPLACE|NLM_F_EXCL on a NEW request: only
     * a GET is a dump. Everything else asks for an ack to wait for. */
    bool dump =
        nlh->nlmsg_type % 4 == RTM_GETLINK % 4 && (nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
    if (!dump)
        nlh->nlmsg_flags |= NLM_F_ACK;
    /* The kernel answers at once; a bound wait keeps a lost reply from
     * hanging a thread forever. */
    struct timeval tv = {.tv_sec = NL_TIMEOUT_S};
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        e = errno;
        goto out;
    }
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, NL_BUF_SIZE);
        if (n < 0) {
            e = errno;
            break;
        }
        int r = mnl_cb_run(buf, (size_t)n, seq, portid, cb, data);
        if (r < 0) {
            e = errno;
            break;
        }
        if (r == MNL_CB_STOP) {
            rc = 0;
            break;
        }
    }
out:
    if (rc < 0) {
        if (errno_out)
            *errno_out = e;
        if (!errno_out || (e != ENODEV && e != EEXIST))
            error_set_errno(err, e == EPERM ? CHCP_PERMISSION_DENIED : CHCP_UNAVAILABLE, e, "%s",
                            what);
    }
    free(buf);
    mnl_socket_close(nl);
    return rc;
}

static struct nlmsghdr *link_msg(char *buf, uint16_t type, uint16_t flags, int family, int ifindex)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
    ifi->ifi_family = (unsigned char)family;
    ifi->ifi_index = ifindex;
    return nlh;
}

/* ---- reading links ------------------------------------------------------------------ */

typedef struct link_parse {
    net_link_info *info;
    net_link_fn fn;
    void *ud;
} link_parse;

static int linkinfo_cb(const struct nlattr *a, void *data)
{
    net_link_info *info = data;
    if (mnl_attr_get_type(a) == IFLA_INFO_KIND && mnl_attr_validate(a, MNL_TYPE_STRING) >= 0)
        snprintf(info->kind, sizeof(info->kind), "%s", mnl_attr_get_str(a));
    return MNL_CB_OK;
}

static int link_attr_cb(const struct nlattr *a, void *data)
{
    net_link_info *info = data;
    switch (mnl_attr_get_type(a)) {
    case IFLA_IFNAME:
        if (mnl_attr_validate(a, MNL_TYPE_STRING) >= 0)
            snprintf(info->name, sizeof(info->name), "%s", mnl_attr_get_str(a));
        break;
    case IFLA_IFALIAS:
        if (mnl_attr_validate(a, MNL_TYPE_STRING) >= 0)
            snprintf(info->alias, sizeof(info->alias), "%s", mnl_attr_get_str(a));
        break;
    case IFLA_MTU:
        if (mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
            info->mtu = mnl_attr_get_u32(a);
        break;
    case IFLA_MASTER:
        if (mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
            info->master = (int)mnl_attr_get_u32(a);
        break;
    case IFLA_LINKINFO:
        if (mnl_attr_validate(a, MNL_TYPE_NESTED) >= 0)
            mnl_attr_parse_nested(a, linkinfo_cb, info);
        break;
    default:
        break;
    }
    return MNL_CB_OK;
}

static int link_msg_cb(const struct nlmsghdr *nlh, void *data)
{
    link_parse *lp = data;
    if (nlh->nlmsg_type != RTM_NEWLINK)
        return MNL_CB_OK;
    const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
    net_link_info info = {.ifindex = ifi->ifi_index, .up = (ifi->ifi_flags & IFF_UP) != 0};
    mnl_attr_parse(nlh, sizeof(*ifi), link_attr_cb, &info);
    if (lp->info)
        *lp->info = info;
    if (lp->fn)
        lp->fn(&info, lp->ud);
    return MNL_CB_OK;
}

int net_link_get(const char *name, net_link_info *out, chcp_error **err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_GETLINK, 0, AF_UNSPEC, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    memset(out, 0, sizeof(*out));
    link_parse lp = {.info = out};
    int e = 0;
    cleanup_free char *what = xasprintf("looking up link %s", name);
    if (nl_talk(nlh, link_msg_cb, &lp, what, &e, err) < 0)
        return e == ENODEV ? 0 : -1;
    return out->ifindex > 0 ? 1 : 0;
}

int net_link_dump(net_link_fn fn, void *ud, chcp_error **err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_GETLINK, NLM_F_DUMP, AF_UNSPEC, 0);
    link_parse lp = {.fn = fn, .ud = ud};
    return nl_talk(nlh, link_msg_cb, &lp, "listing links", NULL, err);
}

/* ---- changing links ---------------------------------------------------------------- */

int net_link_create_bridge(const char *name, uint32_t mtu, chcp_error **err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, AF_UNSPEC, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    if (mtu)
        mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
    /* A bridge without an address of its own takes the lowest of its ports'
     * and changes it as TAPs come and go, which leaves guests with a stale
     * gateway in their ARP caches. A fixed, locally administered one from the
     * name instead. */
    const char *parts[] = {"bridge-mac", name};
    uint64_t h = net_hash(parts, ARRAY_SIZE(parts));
    uint8_t mac[6];
    for (int i = 0; i < 6; i++, h >>= 8)
        mac[i] = (uint8_t)h;
    mac[0] = (uint8_t)((mac[0] & 0xfc) | 0x02);
    mnl_attr_put(nlh, IFLA_ADDRESS, sizeof(mac), mac);
    struct nlattr *li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
    mnl_attr_nest_end(nlh, li);
    int e = 0;
    cleanup_free char *what = xasprintf("creating bridge %s", name);
    if (nl_talk(nlh, NULL, NULL, what, &e, err) < 0)
        return e == EEXIST ? 0 : -1;
    return 0;
}

int net_link_set(int ifindex, uint32_t mtu, int master, const char *alias, bool up,
                 chcp_error **err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_SETLINK, 0, AF_UNSPEC, ifindex);
    struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
    ifi->ifi_change = IFF_UP;
    ifi->ifi_flags = up ? IFF_UP : 0;
    if (mtu)
        mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
    if (master >= 0)
        mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
    if (alias)
        mnl_attr_put_strz(nlh, IFLA_IFALIAS, alias);
    cleanup_free char *what = xasprintf("configuring link %d", ifindex);
    return nl_talk(nlh, NULL, NULL, what, NULL, err);
}

int net_link_set_isolated(int ifindex, bool isolated, chcp_error **err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_SETLINK, 0, AF_BRIDGE, ifindex);
    struct nlattr *pi = mnl_attr_nest_start(nlh, IFLA_PROTINFO);
    pi->nla_type |= NLA_F_NESTED; /* the bridge insists on the flag */
    mnl_attr_put_u8(nlh, IFLA_BRPORT_ISOLATED, isolated ? 1 : 0);
    mnl_attr_nest_end(nlh, pi);
    cleanup_free char *what = xasprintf("isolating bridge port %d", ifindex);
    return nl_talk(nlh, NULL, NULL, what, NULL, err);
}

int net_addr_add_link(int ifindex, int family, const uint8_t addr[16], unsigned prefix_len,
                      chcp_error **err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWADDR;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = (unsigned char)family;
    ifa->ifa_prefixlen = (unsigned char)prefix_len;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = (unsigned)ifindex;
    size_t n = family == AF_INET ? 4 : 16;
    if (family == AF_INET) {
        mnl_attr_put(nlh, IFA_LOCAL, n, addr);
        uint8_t bcast[4];
        uint32_t host = prefix_len < 32 ? ~0u >> prefix_len : 0;
        for (int i = 0; i < 4; i++)
            bcast[i] = (uint8_t)(addr[i] | (host >> (24 - 8 * i)));
        if (prefix_len < 31)
            mnl_attr_put(nlh, IFA_BROADCAST, sizeof(bcast), bcast);
    } else {
        ifa->ifa_flags = IFA_F_NODAD;
        mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
    }
    mnl_attr_put(nlh, IFA_ADDRESS, n, addr);
    char text[NET_ADDR_LEN];
    net_addr_format(family, addr, text, sizeof(text));
    cleanup_free char *what = xasprintf("adding %s/%u to link %d", text, prefix_len, ifindex);
    return nl_talk(nlh, NULL, NULL, what, NULL, err);
}

int net_link_delete(const char *name, chcp_error **err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_DELLINK, 0, AF_UNSPEC, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    int e = 0;
    cleanup_free char *what = xasprintf("deleting link %s", name);
    if (nl_talk(nlh, NULL, NULL, what, &e, err) < 0)
        return e == ENODEV ? 1 : -1;
    return 0;
}
