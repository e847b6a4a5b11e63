/*
 * images.c - client image paths (kernel, initramfs, firmware, disks): how
 * they are opened, and how the VMM gets them without ever resolving a name
 * a client controls. The model is in docs/security.md ("Image paths").
 *
 * A client path is opened by chcp relative to a descriptor of the image
 * directory it lies in, with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS):
 * no component may leave that directory ('..', absolute symlinks, relative
 * symlinks pointing out, /proc magic links), whatever the file system looks
 * like at that instant. The opened file is then hard-linked into the VM's
 * own directory (<vm dir>/images/<role>, 0700, chcp's), and that name is
 * what the VMM's configuration holds. This runs at CreateVm and again right
 * before every BootVm and RebootVm, so each boot uses the file the client
 * path names at that moment, checked; a file swapped for a symlink to
 * something outside is refused, and a swap after the check changes nothing
 * (the link names the inode chcp opened). Guest-initiated reboots reopen the
 * same links.
 *
 * Hard links need the image directories on the same file system as the
 * state directory; otherwise staging fails with failed_precondition. (When
 * VMMs later run in their own mount namespace, a bind mount of the same
 * descriptor replaces the link.)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vm/vm_internal.h"

#define IMAGES_SUBDIR "images"

static bool under_dir(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return path[0] == '/';
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* openat2 beneath one image directory; -1 with errno. */
static int open_beneath(const char *root, const char *path)
{
    const char *rel = path + (strcmp(root, "/") == 0 ? 1 : strlen(root) + 1);
    if (path[strlen(root)] == '\0' || !rel[0]) {
        errno = EISDIR; /* the image directory itself */
        return -1;
    }
    int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return -1;
    struct open_how how = {.flags = O_PATH | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd;
    /* EAGAIN: a rename or mount raced the lookup; the kernel asks to retry. */
    for (int tries = 0; tries < 8; tries++) {
        fd = (int)syscall(SYS_openat2, rfd, rel, &how, sizeof(how));
        if (fd >= 0 || errno != EAGAIN)
            break;
    }
    int e = errno;
    close(rfd);
    errno = e;
    return fd;
}

int vm_image_open(const vm_limits *lim, const char *field, const char *path, bool allow_blockdev,
                  chcp_error **err)
{
    int fd = -1, first_errno = ENOENT;
    bool lexical = false;
    for (size_t i = 0; i < lim->n_image_dirs && fd < 0; i++) {
        if (!under_dir(path, lim->image_dirs[i]))
            continue;
        if (!lexical)
            first_errno = 0;
        lexical = true;
        fd = open_beneath(lim->image_dirs[i], path);
        if (fd < 0 && (!first_errno || errno == EXDEV || errno == ELOOP))
            first_errno = errno; /* an escape is the most telling reason */
    }
    if (!lexical)
        return error_set(err, CHCP_PERMISSION_DENIED, "%s: %s is not inside an image directory",
                         field, path);
    if (fd < 0) {
        if (first_errno == EXDEV || first_errno == ELOOP)
            return error_set(err, CHCP_PERMISSION_DENIED,
                             "%s: %s resolves outside the image directories (through a symlink "
                             "or '..')",
                             field, path);
        if (first_errno == ENOSYS)
            return error_set(err, CHCP_INTERNAL, "%s: openat2 is not available (Linux >= 5.6)",
                             field);
        return error_set_errno(err,
                               first_errno == EACCES || first_errno == EPERM
                                   ? CHCP_PERMISSION_DENIED
                                   : CHCP_INVALID_ARGUMENT,
                               first_errno, "%s: %s", field, path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(err, CHCP_INVALID_ARGUMENT, e, "%s: %s", field, path);
    }
    if (!S_ISREG(st.st_mode) && !(allow_blockdev && S_ISBLK(st.st_mode))) {
        close(fd);
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: %s is not a regular file%s", field, path,
                         allow_blockdev ? " or block device" : "");
    }
    return fd;
}

char *vm_image_staged_path(const char *vm_dir, const char *role)
{
    return xasprintf("%s/" IMAGES_SUBDIR "/%s", vm_dir, role);
}

/* Link the file behind `fd` as <images>/<name>, atomically replacing what
 * was there (a running guest keeps whatever it opened). */
static int stage_one(int images_fd, int fd, const char *name, const char *field, const char *path,
                     chcp_error **err)
{
    char tmp[64], proc[48];
    snprintf(tmp, sizeof(tmp), ".%s.new", name);
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (unlinkat(images_fd, tmp, 0) < 0 && errno != ENOENT)
        return error_set_errno(err, CHCP_INTERNAL, errno, "%s: staging %s", field, tmp);
    /* linkat through /proc/self/fd is how an O_PATH descriptor is linked
     * without CAP_DAC_READ_SEARCH (open(2), O_PATH). */
    if (linkat(AT_FDCWD, proc, images_fd, tmp, AT_SYMLINK_FOLLOW) < 0) {
        int e = errno;
        if (e == EXDEV)
            return error_set(err, CHCP_FAILED_PRECONDITION,
                             "%s: %s is on another file system than CHCP_STATE_DIR; chcp hands "
                             "the VMM a hard link to the checked file, so image directories and "
                             "the state directory must share a file system",
                             field, path);
        if (e == EPERM || e == EMLINK)
            return error_set_errno(err, CHCP_FAILED_PRECONDITION, e,
                                   "%s: %s cannot be hard-linked into the VM directory%s", field,
                                   path,
                                   e == EPERM ? " (fs.protected_hardlinks: chcp must own it or "
                                                "have CAP_FOWNER)"
                                              : "");
        return error_set_errno(err, CHCP_INTERNAL, e, "%s: linking %s into the VM directory", field,
                               path);
    }
    if (renameat(images_fd, tmp, images_fd, name) < 0) {
        int e = errno;
        unlinkat(images_fd, tmp, 0);
        return error_set_errno(err, CHCP_INTERNAL, e, "%s: staging %s", field, name);
    }
    return 0;
}

typedef struct image_ref {
    char field[64]; /* "config.disks[3].path" */
    char role[32];  /* the staged name: "kernel", "disk-3" */
    const char *path;
    bool blockdev;
} image_ref;

static void add_ref(image_ref *r, const char *field, const char *role, const char *path,
                    bool blockdev)
{
    snprintf(r->field, sizeof(r->field), "%s", field);
    snprintf(r->role, sizeof(r->role), "%s", role);
    r->path = path;
    r->blockdev = blockdev;
}

/* Every client image of `c`, in the order the configuration lists them. */
static size_t list_images(const Cloudhypervisor__V1__VmConfig *c, image_ref *out, size_t max)
{
    size_t n = 0;
    const Cloudhypervisor__V1__PayloadConfig *p = c->payload;
    if (p && p->kernel[0] && n < max)
        add_ref(&out[n++], "config.payload.kernel", "kernel", p->kernel, false);
    if (p && p->initramfs[0] && n < max)
        add_ref(&out[n++], "config.payload.initramfs", "initramfs", p->initramfs, false);
    if (p && p->firmware[0] && n < max)
        add_ref(&out[n++], "config.payload.firmware", "firmware", p->firmware, false);
    for (size_t i = 0; i < c->n_disks && n < max; i++) {
        char field[64], role[32];
        snprintf(field, sizeof(field), "config.disks[%zu].path", i);
        snprintf(role, sizeof(role), "disk-%zu", i);
        add_ref(&out[n++], field, role, c->disks[i]->path, true);
    }
    return n;
}

int vm_images_stage(const vm_limits *lim, const Cloudhypervisor__V1__VmConfig *c,
                    const char *vm_dir, chcp_error **err)
{
    if (!c)
        return error_set(err, CHCP_INTERNAL, "no configuration to stage images from");
    int dfd = open(vm_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "VM directory %s", vm_dir);
    if (mkdirat(dfd, IMAGES_SUBDIR, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        close(dfd);
        return error_set_errno(err, CHCP_INTERNAL, e, "creating %s/" IMAGES_SUBDIR, vm_dir);
    }
    int ifd = openat(dfd, IMAGES_SUBDIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(dfd);
    if (ifd < 0)
        return error_set_errno(err, CHCP_INTERNAL, e, "%s/" IMAGES_SUBDIR, vm_dir);
    image_ref refs[3 + VM_MAX_DISKS];
    size_t n = list_images(c, refs, ARRAY_SIZE(refs));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int fd = vm_image_open(lim, refs[i].field, refs[i].path, refs[i].blockdev, err);
        if (fd < 0) {
            rc = -1;
            break;
        }
        rc = stage_one(ifd, fd, refs[i].role, refs[i].field, refs[i].path, err);
        close(fd);
    }
    close(ifd);
    return rc;
}
