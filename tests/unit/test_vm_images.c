/*
 * test_vm_images.c - client image paths (src/vm/images.c, docs/security.md
 * "Image paths"): checked at CreateVm and again right before every boot and
 * reboot, opened beneath their image directory without following anything
 * out of it, and handed to the VMM as a hard link inside the VM directory,
 * so a swap of the client's file for a symlink never reaches the VMM.
 */
#include <sys/mount.h>

#include "test_vm_util.h"

static void inode_of(const char *path, struct stat *st)
{
    assert_int_equal(stat(path, st), 0);
}

static bool same_file(const char *a, const char *b)
{
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_ino == y.st_ino && x.st_dev == y.st_dev;
}

static void staged(tctx *t, const char *id, const char *role, char *out, size_t n)
{
    snprintf(out, n, "%s/vms/%s/images/%s", t->state_dir, id, role);
}

/* Replace `path` by a symlink to `target` (what a hostile client with write
 * access to its image directory would do between CreateVm and BootVm). */
static void swap_for_symlink(const char *path, const char *target)
{
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.swap", path);
    unlink(tmp);
    assert_int_equal(symlink(target, tmp), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void swap_for_file(const char *path, const char *content)
{
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.swap", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

static op_result create_with_disk(tctx *t, const char *id, const char *disk)
{
    cfgbuf b;
    cfg_init(&b, t);
    b.disk.path = (char *)disk;
    b.disks[0] = &b.disk;
    b.c.disks = b.disks;
    b.c.n_disks = 1;
    return create_cfg(t, id, &b.c, NULL, 0);
}

static void test_images_are_staged(void **state)
{
    tctx *t = *state;
    start_manager(t);
    char disk[256], k[300], d0[300];
    snprintf(disk, sizeof(disk), "%s/disk.img", t->image_dir);
    assert_int_equal(create_with_disk(t, "a", disk).code, CHCP_OK);
    staged(t, "a", "kernel", k, sizeof(k));
    staged(t, "a", "disk-0", d0, sizeof(d0));
    assert_true(same_file(k, t->kernel));
    assert_true(same_file(d0, disk));
    struct stat st;
    inode_of(t->kernel, &st);
    assert_int_equal(st.st_nlink, 2);
    /* the VMM is told the staged names, never the client's */
    const vm_record *r = vm_manager_find(t->m, "a");
    assert_non_null(strstr(r->vmm_config_json, d0));
    assert_null(strstr(r->vmm_config_json, disk));
    /* the client's paths are what GetVmInfo shows */
    assert_string_equal(vm_record_config(r)->disks[0]->path, disk);
    /* DeleteVm takes the links away with the directory */
    assert_int_equal(run_op(t, VM_OP_DELETE, "a", NULL).code, CHCP_OK);
    inode_of(t->kernel, &st);
    assert_int_equal(st.st_nlink, 1);
}

/* The reproduction: the disk is swapped for a symlink out of the
 * image directories between CreateVm and BootVm. */
static void test_swap_before_boot(void **state)
{
    tctx *t = *state;
    start_manager(t);
    char disk[256], outside[256], d0[300];
    snprintf(disk, sizeof(disk), "%s/disk.img", t->image_dir);
    snprintf(outside, sizeof(outside), "%s/secret", t->state_dir);
    write_file(outside);
    assert_int_equal(create_with_disk(t, "a", disk).code, CHCP_OK);
    staged(t, "a", "disk-0", d0, sizeof(d0));
    struct stat before;
    inode_of(d0, &before);

    swap_for_symlink(disk, outside);
    op_result r = run_op(t, VM_OP_BOOT, "a", NULL);
    assert_int_equal(r.code, CHCP_PERMISSION_DENIED);
    assert_non_null(strstr(r.msg, "config.disks[0].path"));
    assert_non_null(strstr(r.msg, "outside the image directories"));
    assert_int_equal(state_of(t, "a"), VM_CREATED);
    assert_int_equal(t->fb.requests[VMB_BOOT], 0); /* the VMM was not asked */
    assert_false(same_file(d0, outside));
    struct stat now;
    inode_of(d0, &now);
    assert_int_equal(now.st_ino, before.st_ino);

    /* a relative symlink that climbs out is refused the same way */
    swap_for_symlink(disk, "../secret");
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_PERMISSION_DENIED);

    /* the client replaces its image by another file: that one boots */
    swap_for_file(disk, "new image");
    r = run_op(t, VM_OP_BOOT, "a", NULL);
    assert_int_equal(r.code, CHCP_OK);
    assert_true(same_file(d0, disk));
    inode_of(d0, &now);
    assert_int_not_equal(now.st_ino, before.st_ino);

    /* a swap after the check changes nothing the VMM sees */
    swap_for_symlink(disk, outside);
    assert_false(same_file(d0, outside));
}

/* RebootVm checks again; a refused reboot leaves the guest running. */
static void test_reboot_rechecks(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    char outside[256];
    snprintf(outside, sizeof(outside), "%s/secret", t->state_dir);
    write_file(outside);
    swap_for_symlink(t->kernel, outside);
    int reboots = t->fb.requests[VMB_REBOOT];
    op_result r = run_op(t, VM_OP_REBOOT, "a", NULL);
    assert_int_equal(r.code, CHCP_PERMISSION_DENIED);
    assert_non_null(strstr(r.msg, "config.payload.kernel"));
    assert_int_equal(state_of(t, "a"), VM_RUNNING);
    assert_int_equal(t->fb.requests[VMB_REBOOT], reboots);
    /* gone altogether: invalid_argument, naming the field */
    unlink(t->kernel);
    r = run_op(t, VM_OP_REBOOT, "a", NULL);
    assert_int_equal(r.code, CHCP_INVALID_ARGUMENT);
    assert_non_null(strstr(r.msg, "config.payload.kernel"));
    assert_non_null(strstr(r.msg, "No such file"));
    write_file(t->kernel);
    assert_int_equal(run_op(t, VM_OP_REBOOT, "a", NULL).code, CHCP_OK);
}

/* What may and may not be in the way: a relative symlink that stays beneath
 * the image directory is fine; absolute symlinks (even pointing inside),
 * directory symlinks out, /proc magic links and non-files are not. */
static void test_paths_beneath(void **state)
{
    tctx *t = *state;
    start_manager(t);
    char p[300], sub[256];
    cfgbuf b;
    snprintf(p, sizeof(p), "%s/current", t->image_dir);
    assert_int_equal(symlink("vmlinux", p), 0);
    cfg_init(&b, t);
    b.p.kernel = p;
    assert_int_equal(create_cfg(t, "rel", &b.c, NULL, 0).code, CHCP_OK);

    snprintf(p, sizeof(p), "%s/absolute", t->image_dir);
    assert_int_equal(symlink(t->kernel, p), 0);
    cfg_init(&b, t);
    b.p.kernel = p;
    op_result r = create_cfg(t, "abs", &b.c, NULL, 0);
    assert_int_equal(r.code, CHCP_PERMISSION_DENIED);

    snprintf(sub, sizeof(sub), "%s/etc", t->image_dir);
    assert_int_equal(symlink("/etc", sub), 0);
    snprintf(p, sizeof(p), "%s/etc/passwd", t->image_dir);
    cfg_init(&b, t);
    b.p.kernel = p;
    r = create_cfg(t, "dir", &b.c, NULL, 0);
    assert_int_equal(r.code, CHCP_PERMISSION_DENIED);
    assert_non_null(strstr(r.msg, "outside the image directories"));

    snprintf(p, sizeof(p), "%s/fd", t->image_dir);
    assert_int_equal(symlink("/proc/self/fd/0", p), 0);
    cfg_init(&b, t);
    b.p.kernel = p;
    assert_int_equal(create_cfg(t, "magic", &b.c, NULL, 0).code, CHCP_PERMISSION_DENIED);

    snprintf(p, sizeof(p), "%s/adir", t->image_dir);
    assert_int_equal(mkdir(p, 0700), 0);
    cfg_init(&b, t);
    b.p.kernel = p;
    r = create_cfg(t, "notfile", &b.c, NULL, 0);
    assert_int_equal(r.code, CHCP_INVALID_ARGUMENT);
    assert_non_null(strstr(r.msg, "not a regular file"));
    cfg_init(&b, t);
    b.p.kernel = t->image_dir;
    assert_int_equal(create_cfg(t, "root", &b.c, NULL, 0).code, CHCP_INVALID_ARGUMENT);
    assert_int_equal(vm_manager_count(t->m), 1);
}

/* Hard links cannot cross file systems: an image directory elsewhere is
 * refused with failed_precondition saying why (needs root for a tmpfs). */
static void test_other_file_system(void **state)
{
    tctx *t = *state;
    char other[200], kernel[256];
    snprintf(other, sizeof(other), "%s/other", t->state_dir);
    assert_int_equal(mkdir(other, 0700), 0);
    if (mount("tmpfs", other, "tmpfs", 0, "size=1m") < 0) {
        print_message("cannot mount a tmpfs (%s): not root?\n", strerror(errno));
        skip();
    }
    snprintf(kernel, sizeof(kernel), "%s/vmlinux", other);
    write_file(kernel);
    const char *dirs[] = {t->image_dir, other};
    vm_manager_config cfg = {.state_dir = t->state_dir,
                             .image_dirs = dirs,
                             .n_image_dirs = 2,
                             .max_vcpus = 8,
                             .max_memory_mib = 1024};
    chcp_error *err = NULL;
    t->m = vm_manager_new(&t->loop, &cfg, &fake_ops, &t->fb, &err);
    assert_non_null(t->m);
    cfgbuf b;
    cfg_init(&b, t);
    b.p.kernel = kernel;
    op_result r = create_cfg(t, "x", &b.c, NULL, 0);
    umount2(other, MNT_DETACH);
    assert_int_equal(r.code, CHCP_FAILED_PRECONDITION);
    assert_non_null(strstr(r.msg, "config.payload.kernel"));
    assert_non_null(strstr(r.msg, "another file system"));
    assert_null(vm_manager_find(t->m, "x")); /* atomic: nothing left */
    assert_int_equal(t->fb.live, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_images_are_staged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_before_boot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reboot_rechecks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths_beneath, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_file_system, setup, teardown),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
