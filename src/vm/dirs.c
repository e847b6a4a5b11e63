/*
 * dirs.c - removing a VM's private directory.
 *
 * The directory only holds what chcp and its VMM put there (console logs,
 * sockets, lock files, the record file vm.json), so removal is a bounded
 * walk: it never follows symlinks (entries are unlinked, not entered) and
 * descends at most a few levels. vm.json goes last: a removal interrupted by
 * a crash leaves a directory that still says what it is (`deleting`, or
 * `creating` for a failed CreateVm), and the next start finishes it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "vm/vm_internal.h"

#define MAX_DEPTH 4

static int remove_at(int parent, const char *name, int depth, chcp_error **err)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return error_set_errno(err, CHCP_INTERNAL, errno, "removing %s", name);
    if (depth >= MAX_DEPTH)
        return error_set(err, CHCP_INTERNAL, "removing %s: too deeply nested", name);
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "opening %s", name);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return error_set_errno(err, CHCP_INTERNAL, errno, "reading %s", name);
    }
    int rc = 0;
    bool record = false;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (depth == 0 && strcmp(de->d_name, VM_RECORD_FILE) == 0) {
            record = true;
            continue;
        }
        if (remove_at(dirfd(d), de->d_name, depth + 1, err) < 0)
            rc = -1;
    }
    if (record && rc == 0 && remove_at(dirfd(d), VM_RECORD_FILE, depth + 1, err) < 0)
        rc = -1;
    closedir(d);
    if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return error_set_errno(err, CHCP_INTERNAL, errno, "removing directory %s", name);
    return rc;
}

int vm_dir_remove(const char *dir, chcp_error **err)
{
    if (!dir || dir[0] != '/')
        return error_set(err, CHCP_INTERNAL, "refusing to remove a relative path");
    int rc = remove_at(AT_FDCWD, dir, 0, err);
    if (rc < 0 && err && *err)
        error_prefix(*err, "removing VM directory %s", dir);
    return rc;
}
