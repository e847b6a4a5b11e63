/*
 * tap.c - TAP devices through /dev/net/tun: chcp creates them persistent,
 * owned, marked, and opens queues of them for VMMs that take descriptors.
 *
 * Why persistent TAPs and not ones that live only while a descriptor holds
 * them: every backend can use a persistent TAP - Firecracker only takes a
 * name (host_dev_name), Cloud Hypervisor a name or descriptors, QEMU
 * descriptors - and it survives the VMM process, so a VM that is booted again
 * (a new QEMU after a poweroff) or a restarted daemon finds the same device
 * with its bridge port, addresses and rules intact. The price is that chcp
 * must remove them itself: net_vm_release and net_reconcile do, finding them
 * by name and by their alias mark.
 *
 * The owner is always set (by default the daemon's own uid): a persistent TAP
 * without owner or group could be opened by any local user.
 */
#include "net/net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#define TAP_FLAGS (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)

static int tun_attach(const char *name, chcp_error **err)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, CHCP_FAILED_PRECONDITION, errno, "cannot open /dev/net/tun");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = TAP_FLAGS;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(err,
                               e == EBUSY   ? CHCP_FAILED_PRECONDITION
                               : e == EPERM ? CHCP_PERMISSION_DENIED
                                            : CHCP_UNAVAILABLE,
                               e, "TAP %s", name);
    }
    return fd;
}

int net_tap_create(const char *name, uid_t uid, gid_t gid, const char *alias, chcp_error **err)
{
    cleanup_close int fd = tun_attach(name, err);
    if (fd < 0)
        return -1;
    /* Until TUNSETPERSIST the device dies with this descriptor: set the
     * owner and the alias first, so a crash leaves nothing or a marked TAP. */
    if (uid != (uid_t)-1 && ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "TAP %s: setting owner %u", name,
                               (unsigned)uid);
    if (gid != (gid_t)-1 && ioctl(fd, TUNSETGROUP, (unsigned long)gid) < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "TAP %s: setting group %u", name,
                               (unsigned)gid);
    net_link_info info;
    int found = net_link_get(name, &info, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return error_set(err, CHCP_INTERNAL, "TAP %s vanished while being created", name);
    if (net_link_set(info.ifindex, 0, -1, alias, false, err) < 0)
        return -1;
    if (ioctl(fd, TUNSETPERSIST, 1UL) < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "TAP %s: making it persistent", name);
    return 0;
}

int net_tap_open(const char *tap, chcp_error **err)
{
    if (!tap || !*tap || strlen(tap) >= NET_IFNAME_LEN)
        return error_set(err, CHCP_INVALID_ARGUMENT, "'%s' is not a TAP name", tap ? tap : "");
    net_link_info info;
    int found = net_link_get(tap, &info, err);
    if (found < 0)
        return -1;
    if (found == 0 || strcmp(info.kind, "tun") != 0)
        return error_set(err, CHCP_NOT_FOUND, "TAP %s does not exist", tap);
    return tun_attach(tap, err);
}
