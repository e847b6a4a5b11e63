/*
 * disk.c - copy-on-write root disks: a VM boots from a shared base image
 * through a writable layer of its own, so creating a VM copies nothing (or
 * only what the file system can share) and deleting it removes one file.
 *
 * Two kinds, for the two kinds of VMM:
 *   qcow2  an overlay whose backing file is the base (qemu-img create -b), for
 *          VMMs that read qcow2 (QEMU; Cloud Hypervisor with backing files
 *          enabled). Only written blocks take space.
 *   copy   a raw copy for VMMs that take only raw images (Firecracker): a
 *          reflink clone (FICLONE: btrfs, XFS) when the file system can, else
 *          a sparse copy that skips the base's holes.
 * The layer is made under a temporary name and renamed into place without
 * replacing anything, so a crash never leaves a half-made layer under the
 * final name.
 */
#include "net/net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#define QEMU_IMG_TIMEOUT_MS 60000

static bool is_qcow2(int fd)
{
    uint8_t magic[4];
    return pread(fd, magic, sizeof(magic), 0) == 4 && memcmp(magic, "QFI\xfb", 4) == 0;
}

/* Copy [off, off+len) with copy_file_range, falling back to read/write. */
static int copy_range(int in, int out, off_t off, off_t len)
{
    while (len > 0) {
        off_t a = off, b = off;
        ssize_t n = copy_file_range(in, &a, out, &b, (size_t)len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 &&
            (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
            char buf[65536];
            ssize_t r = pread(in, buf, len < (off_t)sizeof(buf) ? (size_t)len : sizeof(buf), off);
            if (r <= 0 || pwrite(out, buf, (size_t)r, off) != r)
                return -1;
            n = r;
        } else if (n <= 0) {
            return -1;
        }
        off += n;
        len -= n;
    }
    return 0;
}

static int sparse_copy(int in, int out, off_t size)
{
    if (ftruncate(out, size) < 0)
        return -1;
    off_t off = 0;
    while (off < size) {
        off_t data = lseek(in, off, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -1; /* only a hole is left */
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return -1;
        if (copy_range(in, out, data, hole - data) < 0)
            return -1;
        off = hole;
    }
    return 0;
}

static int make_copy(int base_fd, const char *tmp, off_t size, chcp_error **err)
{
    cleanup_close int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "creating %s", tmp);
    if (ioctl(out, FICLONE, base_fd) == 0)
        return 0;
    if (sparse_copy(base_fd, out, size) < 0 || fsync(out) < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "copying into %s", tmp);
    return 0;
}

static int make_qcow2(const char *base, bool base_qcow2, const char *tmp, chcp_error **err)
{
    const char *argv[] = {
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", base_qcow2 ? "qcow2" : "raw",
        "-b",       base,     tmp,  NULL};
    if (net_run(argv, QEMU_IMG_TIMEOUT_MS, err) < 0)
        return -1;
    if (chmod(tmp, 0600) < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "chmod %s", tmp);
    return 0;
}

int net_disk_layer_create(const char *base, const char *layer, net_layer_kind kind,
                          chcp_error **err)
{
    if (!base || !*base || !layer || !*layer)
        return error_set(err, CHCP_INVALID_ARGUMENT, "a base image and a layer path are needed");
    cleanup_close int fd = open(base, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return error_set_errno(err, CHCP_NOT_FOUND, errno, "base image %s", base);
    if (!S_ISREG(st.st_mode))
        return error_set(err, CHCP_INVALID_ARGUMENT, "base image %s is not a regular file", base);
    bool qcow2 = is_qcow2(fd);
    if (kind == NET_LAYER_COPY && qcow2)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "base image %s is qcow2: a raw copy layer needs a raw base", base);
    if (access(layer, F_OK) == 0)
        return error_set(err, CHCP_ALREADY_EXISTS, "layer %s exists already", layer);
    cleanup_free char *tmp = xasprintf("%s.tmp", layer);
    unlink(tmp); /* left by a crash */
    int rc = kind == NET_LAYER_QCOW2 ? make_qcow2(base, qcow2, tmp, err)
                                     : make_copy(fd, tmp, st.st_size, err);
    if (rc == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, layer, RENAME_NOREPLACE) < 0)
        rc = error_set_errno(err, errno == EEXIST ? CHCP_ALREADY_EXISTS : CHCP_UNAVAILABLE, errno,
                             "renaming %s", tmp);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int net_disk_layer_remove(const char *layer, chcp_error **err)
{
    if (unlink(layer) < 0 && errno != ENOENT)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "removing %s", layer);
    cleanup_free char *tmp = xasprintf("%s.tmp", layer);
    unlink(tmp);
    return 0;
}
