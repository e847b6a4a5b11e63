/*
 * seed.c - how a guest learns its addresses and name: the kernel's ip=
 * argument (IPv4 of NIC 0, for guests without cloud-init) and a cloud-init
 * NoCloud seed, an ISO 9660 image labelled "cidata" holding meta-data
 * (instance-id, local-hostname), user-data and network-config (version 2,
 * NICs matched by MAC, so names inside the guest do not matter).
 *
 * The image is made by genisoimage (Debian's package of the same name) run as
 * a tool: it needs no privileges or loop devices, and an ISO is read-only by
 * nature, which is what a seed is. It is written under a temporary name and
 * renamed, so a guest (or a crash) never sees half an image.
 */
#include "net/net_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define SEED_NAME "cidata.iso"
#define SEED_TMP_DIR ".cidata.tmp"
#define SEED_TMP_IMAGE ".cidata.iso.tmp"
#define GENISOIMAGE_TIMEOUT_MS 30000

char *net_seed_meta_data(const net_seed_input *in)
{
    /* Quoted: an id like "123" or a hostname like "no" is not YAML's number or
     * boolean. Both hold only [a-z0-9.-] (checked by net_vm_setup). */
    return xasprintf("instance-id: \"%s\"\nlocal-hostname: \"%s\"\n", in->vm_id, in->hostname);
}

char *net_seed_network_config(const net_seed_input *in)
{
    if (in->n_nics == 0)
        return NULL;
    chcp_buf b = CHCP_BUF_INIT;
    buf_append_str(&b, "version: 2\nethernets:\n");
    for (size_t i = 0; i < in->n_nics; i++) {
        const net_nic *n = &in->nics[i];
        buf_printf(&b, "  nic%zu:\n    match:\n      macaddress: \"%s\"\n", i, n->mac);
        if (!n->has_ipv4 && !n->has_ipv6)
            continue;
        buf_append_str(&b, "    addresses: [");
        if (n->has_ipv4)
            buf_printf(&b, "\"%s/%u\"", n->ipv4, n->ipv4_prefix);
        if (n->has_ipv6)
            buf_printf(&b, "%s\"%s/%u\"", n->has_ipv4 ? ", " : "", n->ipv6, n->ipv6_prefix);
        buf_append_str(&b, "]\n");
        if (i > 0)
            continue; /* one default route: through NIC 0 */
        if (n->has_ipv4)
            buf_printf(&b, "    gateway4: %s\n", n->ipv4_gateway);
        if (n->has_ipv6)
            buf_printf(&b, "    gateway6: %s\n", n->ipv6_gateway);
        if (in->n_dns) {
            buf_append_str(&b, "    nameservers:\n      addresses: [");
            for (size_t k = 0; k < in->n_dns; k++)
                buf_printf(&b, "%s\"%s\"", k ? ", " : "", in->dns[k]);
            buf_append_str(&b, "]\n");
        }
    }
    buf_append_byte(&b, 0);
    return buf_steal_str(&b);
}

char *net_cmdline_ip(const net_seed_input *in)
{
    if (in->n_nics == 0 || !in->nics[0].has_ipv4)
        return NULL;
    const net_nic *n = &in->nics[0];
    char mask[16];
    net_netmask4(n->ipv4_prefix, mask, sizeof(mask));
    chcp_buf b = CHCP_BUF_INIT;
    /* ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>;
     * no device: the kernel (and tests/guest/init) take the first one. */
    buf_printf(&b, "ip=%s::%s:%s:%s::off", n->ipv4, n->ipv4_gateway, mask, in->hostname);
    size_t dns4 = 0;
    for (size_t k = 0; k < in->n_dns && dns4 < 2; k++) {
        uint8_t a[16];
        int f;
        if (net_addr_parse(in->dns[k], AF_INET, &f, a) == 0) {
            buf_printf(&b, ":%s", in->dns[k]);
            dns4++;
        }
    }
    buf_append_byte(&b, 0);
    return buf_steal_str(&b);
}

/* ---- the image -------------------------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const char *data, size_t len,
                      chcp_error **err)
{
    cleanup_free char *path = xasprintf("%s/%s", dir, name);
    cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "writing %s", path);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_set_errno(err, CHCP_UNAVAILABLE, errno, "writing %s", path);
        off += (size_t)n;
    }
    return 0;
}

/* Remove the staging directory (flat: only the seed's files). */
static void remove_tmp_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(path);
}

static int stage_files(const net_seed_input *in, const char *tmp_dir, chcp_error **err)
{
    if (mkdir(tmp_dir, 0700) < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "creating %s", tmp_dir);
    cleanup_free char *meta = net_seed_meta_data(in);
    cleanup_free char *netcfg = net_seed_network_config(in);
    static const char default_user_data[] = "#cloud-config\n";
    const char *ud = in->user_data ? in->user_data : default_user_data;
    size_t ud_len = in->user_data ? in->user_data_len : strlen(default_user_data);
    if (write_file(tmp_dir, "meta-data", meta, strlen(meta), err) < 0 ||
        write_file(tmp_dir, "user-data", ud, ud_len, err) < 0 ||
        (netcfg && write_file(tmp_dir, "network-config", netcfg, strlen(netcfg), err) < 0))
        return -1;
    return 0;
}

int net_seed_write(const net_seed_input *in, const char *dir, char **path_out, chcp_error **err)
{
    cleanup_free char *tmp_dir = xasprintf("%s/" SEED_TMP_DIR, dir);
    cleanup_free char *tmp_img = xasprintf("%s/" SEED_TMP_IMAGE, dir);
    cleanup_free char *final = xasprintf("%s/" SEED_NAME, dir);
    remove_tmp_dir(tmp_dir); /* left by a crash */
    unlink(tmp_img);
    int rc = stage_files(in, tmp_dir, err);
    if (rc == 0) {
        const char *argv[] = {"genisoimage", "-quiet", "-input-charset", "utf-8",
                              "-volid",      "cidata", "-joliet",        "-rock",
                              "-output",     tmp_img,  tmp_dir,          NULL};
        rc = net_run(argv, GENISOIMAGE_TIMEOUT_MS, err);
    }
    if (rc == 0 && chmod(tmp_img, 0600) < 0)
        rc = error_set_errno(err, CHCP_UNAVAILABLE, errno, "chmod %s", tmp_img);
    if (rc == 0 && rename(tmp_img, final) < 0)
        rc = error_set_errno(err, CHCP_UNAVAILABLE, errno, "renaming %s", tmp_img);
    remove_tmp_dir(tmp_dir);
    if (rc < 0) {
        unlink(tmp_img);
        if (err)
            error_prefix(*err, "making the NoCloud seed");
        return -1;
    }
    *path_out = steal_pointer(&final);
    return 0;
}

int net_seed_remove(const char *dir, chcp_error **err)
{
    static const char *const names[] = {SEED_NAME, SEED_TMP_IMAGE};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        cleanup_free char *p = xasprintf("%s/%s", dir, names[i]);
        if (unlink(p) < 0 && errno != ENOENT)
            return error_set_errno(err, CHCP_UNAVAILABLE, errno, "removing %s", p);
    }
    cleanup_free char *tmp_dir = xasprintf("%s/" SEED_TMP_DIR, dir);
    remove_tmp_dir(tmp_dir);
    return 0;
}
