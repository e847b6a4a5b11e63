/*
 * devices.c - the pre-boot device builders of VmResources (block, net,
 * pmem, vsock, balloon, entropy, memory hotplug) and their echoes.
 *
 * Firecracker creates most device backends when the PUT arrives, not at
 * InstanceStart, so configuration errors surface on the PUT:
 *   - drives: the backing file is opened (read-only or read-write) by
 *     Block::new; exactly one of path_on_host and socket (vhost-user, which
 *     must accept a connection); one root device, and not if a pmem device
 *     is root. A PUT with a known drive_id replaces it in place.
 *   - network interfaces: the TAP is opened by name (15 characters at most;
 *     an existing interface that is not a TAP is refused like TUNSETIFF
 *     refuses it; the stand-in opens no real TAP), the MTU must be within
 *     [68, 65535], a guest MAC may not repeat. A known iface_id is replaced
 *     (swap_remove, then pushed last).
 *   - vsock: uds_path is bound now; a second PUT first removes the previous
 *     socket file (and loses the device if that fails).
 *   - pmem: only the root-device rules; the file is opened at InstanceStart.
 * The echoes are what GET /vm/config serialises: every Option kept as null,
 * rate limiters reduced to their active buckets (size and refill_time both
 * non-zero) and dropped entirely when none is active.
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static json_t *bucket_echo(json_t *b)
{
    json_int_t size = json_integer_value(json_object_get(b, "size"));
    json_int_t refill = json_integer_value(json_object_get(b, "refill_time"));
    if (!json_is_object(b) || size == 0 || refill == 0)
        return NULL;
    json_int_t burst = json_integer_value(json_object_get(b, "one_time_burst"));
    return json_pack("{sI sO sI}", "size", size, "one_time_burst",
                     burst ? json_integer(burst) : json_null(), "refill_time", refill);
}

json_t *fsi_rate_limiter_echo(json_t *rl)
{
    if (!json_is_object(rl))
        return NULL;
    json_t *bw = bucket_echo(json_object_get(rl, "bandwidth"));
    json_t *ops = bucket_echo(json_object_get(rl, "ops"));
    if (!bw && !ops)
        return NULL;
    return json_pack("{so so}", "bandwidth", bw ? bw : json_null(), "ops", ops ? ops : json_null());
}

static json_t *or_null(json_t *v)
{
    return v ? v : json_null();
}

static json_t *copy_or_null(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return v ? json_deep_copy(v) : json_null();
}

static bool is_vhost_user(json_t *cfg)
{
    json_t *p = json_object_get(cfg, "path_on_host"), *s = json_object_get(cfg, "socket");
    return (!p || json_is_null(p)) && s && !json_is_null(s);
}

json_t *fsi_drive_echo(json_t *cfg)
{
    json_t *e = json_object();
    json_object_set_new(e, "drive_id", copy_or_null(cfg, "drive_id"));
    json_object_set_new(e, "partuuid", copy_or_null(cfg, "partuuid"));
    json_object_set_new(e, "is_root_device", copy_or_null(cfg, "is_root_device"));
    const char *cache = json_string_value(json_object_get(cfg, "cache_type"));
    json_object_set_new(e, "cache_type", json_string(cache ? cache : "Unsafe"));
    if (is_vhost_user(cfg)) {
        json_object_set_new(e, "is_read_only", json_null());
        json_object_set_new(e, "path_on_host", json_null());
        json_object_set_new(e, "rate_limiter", json_null());
        json_object_set_new(e, "io_engine", json_null());
        json_object_set_new(e, "socket", copy_or_null(cfg, "socket"));
        return e;
    }
    json_object_set_new(e, "is_read_only",
                        json_boolean(json_is_true(json_object_get(cfg, "is_read_only"))));
    json_object_set_new(e, "path_on_host", copy_or_null(cfg, "path_on_host"));
    json_object_set_new(e, "rate_limiter",
                        or_null(fsi_rate_limiter_echo(json_object_get(cfg, "rate_limiter"))));
    const char *engine = json_string_value(json_object_get(cfg, "io_engine"));
    json_object_set_new(e, "io_engine", json_string(engine ? engine : "Sync"));
    json_object_set_new(e, "socket", json_null());
    return e;
}

json_t *fsi_net_echo(json_t *cfg)
{
    json_t *e = json_object();
    json_object_set_new(e, "iface_id", copy_or_null(cfg, "iface_id"));
    json_object_set_new(e, "host_dev_name", copy_or_null(cfg, "host_dev_name"));
    const char *mac = json_string_value(json_object_get(cfg, "guest_mac"));
    if (mac) {
        char low[18];
        for (int i = 0; i < 17; i++)
            low[i] = (char)((mac[i] >= 'A' && mac[i] <= 'F') ? mac[i] + 32 : mac[i]);
        low[17] = '\0';
        json_object_set_new(e, "guest_mac", json_string(low));
    } else {
        json_object_set_new(e, "guest_mac", json_null());
    }
    json_object_set_new(e, "mtu", copy_or_null(cfg, "mtu"));
    json_object_set_new(e, "rx_rate_limiter",
                        or_null(fsi_rate_limiter_echo(json_object_get(cfg, "rx_rate_limiter"))));
    json_object_set_new(e, "tx_rate_limiter",
                        or_null(fsi_rate_limiter_echo(json_object_get(cfg, "tx_rate_limiter"))));
    return e;
}

char *fsi_block_open_check(json_t *cfg)
{
    json_t *p = json_object_get(cfg, "path_on_host"), *s = json_object_get(cfg, "socket");
    bool has_p = p && !json_is_null(p), has_s = s && !json_is_null(s);
    if (has_p && !has_s) {
        const char *path = json_string_value(p);
        int fd = open(path, json_is_true(json_object_get(cfg, "is_read_only")) ? O_RDONLY : O_RDWR);
        if (fd < 0) {
            char *e = fsi_io_error(errno);
            char *m = fsi_xasprintf("Unable to create the virtio block device: Virtio backend "
                                    "error: Error manipulating the backing file: %s %s",
                                    e, path);
            free(e);
            return m;
        }
        close(fd);
        return NULL;
    }
    if (has_s && !has_p) {
        int err = fsi_unix_probe(json_string_value(s));
        if (!err)
            return NULL;
        char *e = fsi_io_error(err);
        char *m = fsi_xasprintf("Unable to create the virtio block device: Vhost user backend "
                                "error: Vhost-user error: %s",
                                e);
        free(e);
        return m;
    }
    return fsi_xstrdup("Unable to create the virtio block device: Invalid block config.");
}

static bool has_root(json_t *list, const char *key)
{
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d)
    {
        if (json_is_true(json_object_get(d, key)))
            return true;
    }
    return false;
}

static ssize_t index_of(json_t *list, const char *key, const char *id)
{
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d)
    {
        const char *v = json_string_value(json_object_get(d, key));
        if (v && !strcmp(v, id))
            return (ssize_t)i;
    }
    return -1;
}

char *fsi_res_drive(fsi_resources *r, json_t *cfg)
{
    const char *id = json_string_value(json_object_get(cfg, "drive_id"));
    ssize_t pos = index_of(r->drives, "drive_id", id);
    bool root = json_is_true(json_object_get(cfg, "is_root_device"));
    if (root && has_root(r->pmem, "root_device"))
        return fsi_xstrdup("Attempt to add block as a root device while the root device defined "
                           "as a pmem device");
    /* BlockBuilder: the root device, if any, is always first. */
    if (root && has_root(r->drives, "is_root_device") && pos != 0)
        return fsi_xstrdup("A root block device already exists!");
    char *err = fsi_block_open_check(cfg);
    if (err)
        return err;
    json_t *echo = fsi_drive_echo(cfg);
    if (pos < 0) {
        if (root)
            json_array_insert_new(r->drives, 0, echo);
        else
            json_array_append_new(r->drives, echo);
    } else {
        json_array_set_new(r->drives, (size_t)pos, echo);
        if (pos != 0 && root) {
            json_t *first = json_incref(json_array_get(r->drives, 0));
            json_array_set(r->drives, 0, json_array_get(r->drives, (size_t)pos));
            json_array_set_new(r->drives, (size_t)pos, first);
        }
    }
    return NULL;
}

char *fsi_net_create_check(json_t *cfg)
{
    const char *name = json_string_value(json_object_get(cfg, "host_dev_name"));
    if (strlen(name) >= IFNAMSIZ)
        return fsi_xstrdup("Could not create the network device: Open tap device failed: "
                           "Invalid interface name");
    /* TUNSETIFF refuses an existing interface that is not a TUN/TAP. */
    char *sys = fsi_xasprintf("/sys/class/net/%s", name);
    char *flags = fsi_xasprintf("/sys/class/net/%s/tun_flags", name);
    struct stat st;
    bool exists = *name && stat(sys, &st) == 0, tap = stat(flags, &st) == 0;
    free(sys);
    free(flags);
    if (exists && !tap)
        return fsi_xasprintf("Could not create the network device: Open tap device failed: Error "
                             "while creating ifreq structure: Invalid argument (os error 22). "
                             "Invalid TUN/TAP Backend provided by %s. Check our documentation on "
                             "setting up the network devices.",
                             name);
    json_t *mtu = json_object_get(cfg, "mtu");
    if (mtu && !json_is_null(mtu) && json_integer_value(mtu) < 68)
        return fsi_xasprintf("Could not create the network device: MTU %lld is out of range "
                             "[68, 65535]",
                             (long long)json_integer_value(mtu));
    return NULL;
}

char *fsi_res_net(fsi_resources *r, json_t *cfg)
{
    const char *id = json_string_value(json_object_get(cfg, "iface_id"));
    json_t *echo = fsi_net_echo(cfg);
    const char *mac = json_string_value(json_object_get(echo, "guest_mac"));
    size_t i;
    json_t *d;
    json_array_foreach(r->nets, i, d)
    {
        const char *m = json_string_value(json_object_get(d, "guest_mac"));
        const char *other = json_string_value(json_object_get(d, "iface_id"));
        if (mac && m && !strcmp(mac, m) && strcmp(other, id)) {
            char *err = fsi_xasprintf("The MAC address is already in use: %s", mac);
            json_decref(echo);
            return err;
        }
    }
    ssize_t pos = index_of(r->nets, "iface_id", id);
    if (pos >= 0) {
        LOGW(M_VMM,
             "Replacing existing network device '%s'. The previous device configuration "
             "will be destroyed.",
             id);
        size_t last = json_array_size(r->nets) - 1;
        if ((size_t)pos != last)
            json_array_set(r->nets, (size_t)pos, json_array_get(r->nets, last));
        json_array_remove(r->nets, last); /* the new device has no MMDS stack */
    }
    char *err = fsi_net_create_check(cfg);
    if (err) {
        json_decref(echo);
        return err;
    }
    json_array_append_new(r->nets, echo);
    return NULL;
}

char *fsi_res_pmem(fsi_resources *r, json_t *cfg)
{
    bool root = json_is_true(json_object_get(cfg, "root_device"));
    if (root && has_root(r->drives, "is_root_device"))
        return fsi_xstrdup("Attempt to add pmem as a root device while the root device defined "
                           "as a block device");
    const char *id = json_string_value(json_object_get(cfg, "id"));
    ssize_t pos = index_of(r->pmem, "id", id);
    bool was_root = pos >= 0 && json_is_true(json_object_get(json_array_get(r->pmem, (size_t)pos),
                                                             "root_device"));
    if (root && !was_root && has_root(r->pmem, "root_device"))
        return fsi_xstrdup("A root pmem device already exist");
    json_t *e = json_pack("{sO sO sb sb so}", "id", json_object_get(cfg, "id"), "path_on_host",
                          json_object_get(cfg, "path_on_host"), "root_device", root, "read_only",
                          json_is_true(json_object_get(cfg, "read_only")), "rate_limiter",
                          or_null(fsi_rate_limiter_echo(json_object_get(cfg, "rate_limiter"))));
    if (pos >= 0)
        json_array_set_new(r->pmem, (size_t)pos, e);
    else
        json_array_append_new(r->pmem, e);
    return NULL;
}

static int bind_unix(const char *path, int *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        *err = EINVAL;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        *err = errno;
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

char *fsi_res_vsock(fsi_resources *r, json_t *cfg)
{
    int err = 0;
    if (r->vsock) { /* VsockBuilder::insert: take() the old one, then remove its socket */
        const char *old = json_string_value(json_object_get(r->vsock, "uds_path"));
        int rc = unlink(old);
        err = errno;
        json_decref(r->vsock);
        r->vsock = NULL;
        close(r->vsock_fd);
        r->vsock_fd = -1;
        if (rc < 0)
            goto fail;
    }
    const char *path = json_string_value(json_object_get(cfg, "uds_path"));
    r->vsock_fd = bind_unix(path, &err);
    if (r->vsock_fd < 0)
        goto fail;
    r->vsock = json_pack("{sO sO}", "guest_cid", json_object_get(cfg, "guest_cid"), "uds_path",
                         json_object_get(cfg, "uds_path"));
    return NULL;
fail : {
    char *e = fsi_io_error(err);
    char *m = fsi_xasprintf("Cannot create backend for vsock device: Error binding to the "
                            "host-side Unix socket: %s",
                            e);
    free(e);
    return m;
}
}

char *fsi_res_balloon(fsi_resources *r, json_t *cfg)
{
    json_int_t amount = json_integer_value(json_object_get(cfg, "amount_mib"));
    if (amount > json_integer_value(json_object_get(r->machine, "mem_size_mib")))
        return fsi_xstrdup("Amount of pages requested is too large.");
    json_t *b =
        json_pack("{sI sb sI sb sb}", "amount_mib", amount, "deflate_on_oom",
                  json_is_true(json_object_get(cfg, "deflate_on_oom")), "stats_polling_interval_s",
                  json_integer_value(json_object_get(cfg, "stats_polling_interval_s")),
                  "free_page_hinting", json_is_true(json_object_get(cfg, "free_page_hinting")),
                  "free_page_reporting", json_is_true(json_object_get(cfg, "free_page_reporting")));
    json_decref(r->balloon);
    r->balloon = b;
    return NULL;
}

char *fsi_res_entropy(fsi_resources *r, json_t *cfg)
{
    json_decref(r->entropy);
    r->entropy = json_pack("{so}", "rate_limiter",
                           or_null(fsi_rate_limiter_echo(json_object_get(cfg, "rate_limiter"))));
    return NULL;
}

static uint32_t u32_or(json_t *o, const char *k, uint32_t def)
{
    json_t *v = json_object_get(o, k);
    return v ? (uint32_t)json_integer_value(v) : def;
}

char *fsi_res_hotplug(fsi_resources *r, json_t *cfg)
{
    uint32_t total = u32_or(cfg, "total_size_mib", 0), block = u32_or(cfg, "block_size_mib", 2),
             slot = u32_or(cfg, "slot_size_mib", 128);
    if (block < 2)
        return fsi_xstrdup("Block size must not be lower than 2 MiB");
    if (block & (block - 1))
        return fsi_xstrdup("Block size must be a power of 2");
    if (slot < 128)
        return fsi_xstrdup("Slot size must not be lower than 128 MiB");
    if (slot % block)
        return fsi_xasprintf("Slot size must be a multiple of block size (%u MiB)", block);
    if (total < slot)
        return fsi_xasprintf("Total size must not be lower than slot size (%u MiB)", slot);
    if (total % slot)
        return fsi_xasprintf("Total size must be a multiple of slot size (%u MiB)", slot);
    json_decref(r->hotplug);
    r->hotplug = json_pack("{sI sI sI}", "total_size_mib", (json_int_t)total, "block_size_mib",
                           (json_int_t)block, "slot_size_mib", (json_int_t)slot);
    return NULL;
}
