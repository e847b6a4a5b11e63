/*
 * test_net_files.c - what src/net writes to disk and the tools it runs: the
 * tool runner (exit status, stderr in the error, deadline, missing tool, a
 * clean environment), the NoCloud seed image (an ISO 9660 volume "cidata"
 * holding exactly the three files, written atomically, removed again) and
 * copy-on-write layers (raw copies that keep holes; qcow2 overlays whose
 * backing file is the base).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "net/net_internal.h"

typedef struct ctx {
    char dir[64];
} ctx;

static int setup(void **state)
{
    ctx *c = xcalloc(1, sizeof(*c));
    strcpy(c->dir, "/tmp/chcp-netf-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
    assert_int_equal(system(cmd), 0);
    free(c);
    return 0;
}

static char *path_in(const ctx *c, const char *name)
{
    return xasprintf("%s/%s", c->dir, name);
}

static void test_run(void **state)
{
    ctx *c = *state;
    const char *ok[] = {"true", NULL};
    assert_int_equal(net_run(ok, 5000, NULL), 0);

    chcp_error *err = NULL;
    const char *fails[] = {"sh", "-c", "echo first >&2; echo 'it broke' >&2; exit 3", NULL};
    assert_int_equal(net_run(fails, 5000, &err), -1);
    assert_int_equal(err->code, CHCP_INTERNAL);
    assert_string_equal(err->message, "sh failed (exit 3): first it broke");
    error_free(err);

    err = NULL;
    const char *missing[] = {"chcp-no-such-tool", NULL};
    assert_int_equal(net_run(missing, 5000, &err), -1);
    assert_int_equal(err->code, CHCP_FAILED_PRECONDITION);
    assert_string_equal(err->message, "chcp-no-such-tool is not installed");
    error_free(err);

    err = NULL;
    const char *slow[] = {"sleep", "30", NULL};
    uint64_t t0 = time_mono_ns();
    assert_int_equal(net_run(slow, 200, &err), -1);
    assert_int_equal(err->code, CHCP_DEADLINE_EXCEEDED);
    assert_true(time_mono_ns() - t0 < 20ull * 1000000000);
    error_free(err);

    /* The environment is clean and no descriptor but 0-2 is inherited. */
    cleanup_free char *out = path_in(c, "env.txt");
    cleanup_free char *script =
        xasprintf("env > %s; ls /proc/self/fd | wc -l >> %s; [ -z \"$HOME\" ]", out, out);
    int leak = open("/dev/null", O_RDONLY); /* without O_CLOEXEC on purpose */
    const char *envp[] = {"sh", "-c", script, NULL};
    assert_int_equal(net_run(envp, 5000, NULL), 0);
    close(leak);
    FILE *f = fopen(out, "r");
    char line[256];
    int lines = 0, fds = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strchr(line, '='))
            lines++;
        else
            fds = atoi(line);
    }
    fclose(f);
    assert_true(lines <= 4);  /* PATH, LC_ALL, and what sh adds itself (PWD, SHLVL) */
    assert_int_equal(fds, 4); /* 0-2 and the one ls opens to list them */
}

static void read_at(const char *path, long off, char *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    assert_int_equal(fread(buf, 1, n, f), n);
    fclose(f);
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    chcp_buf b = CHCP_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    bool found = memmem(b.data, b.len, needle, strlen(needle)) != NULL;
    buf_free(&b);
    return found;
}

static void test_seed_image(void **state)
{
    ctx *c = *state;
    net_nic nic = {.tap = "chcpx0",
                   .mac = "02:00:00:00:00:07",
                   .has_ipv4 = true,
                   .ipv4 = "10.97.0.7",
                   .ipv4_prefix = 24,
                   .ipv4_gateway = "10.97.0.1"};
    const char ud[] = "#!/bin/sh\necho user-data-was-here\n";
    net_seed_input in = {.vm_id = "seed-test",
                         .hostname = "seedy",
                         .nics = &nic,
                         .n_nics = 1,
                         .user_data = ud,
                         .user_data_len = sizeof(ud) - 1};
    char *path = NULL;
    assert_int_equal(net_seed_write(&in, c->dir, &path, NULL), 0);
    cleanup_free char *want = path_in(c, "cidata.iso");
    assert_string_equal(path, want);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* ISO 9660 primary volume descriptor at 32 KiB: "CD001", volume id. */
    char pvd[48];
    read_at(path, 0x8000, pvd, sizeof(pvd));
    assert_memory_equal(pvd + 1, "CD001", 5);
    assert_memory_equal(pvd + 40, "cidata", 6);
    assert_true(file_has(path, "local-hostname: \"seedy\""));
    assert_true(file_has(path, "user-data-was-here"));
    assert_true(file_has(path, "macaddress: \"02:00:00:00:00:07\""));
    /* Rock Ridge keeps the exact names cloud-init looks for. */
    assert_true(file_has(path, "network-config"));
    assert_true(file_has(path, "meta-data"));
    /* Nothing left over from making it. */
    cleanup_free char *tmp_dir = path_in(c, ".cidata.tmp");
    cleanup_free char *tmp_img = path_in(c, ".cidata.iso.tmp");
    assert_int_equal(access(tmp_dir, F_OK), -1);
    assert_int_equal(access(tmp_img, F_OK), -1);
    /* Writing again replaces it (a setup that runs twice). */
    free(path);
    in.hostname = "seedy-two";
    assert_int_equal(net_seed_write(&in, c->dir, &path, NULL), 0);
    assert_true(file_has(path, "seedy-two"));
    free(path);
    assert_int_equal(net_seed_remove(c->dir, NULL), 0);
    assert_int_equal(access(want, F_OK), -1);
    assert_int_equal(net_seed_remove(c->dir, NULL), 0); /* idempotent */

    /* A directory that does not exist: an error, not a crash. */
    chcp_error *err = NULL;
    assert_int_equal(net_seed_write(&in, "/nonexistent/dir", &path, &err), -1);
    assert_true(str_has_prefix(err->message, "making the NoCloud seed"));
    error_free(err);
}

static void write_sparse(const char *path, off_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    assert_int_equal(pwrite(fd, "head", 4, 0), 4);
    assert_int_equal(pwrite(fd, "middle", 6, size / 2), 6);
    assert_int_equal(pwrite(fd, "tail", 4, size - 4), 4);
    close(fd);
}

static void test_copy_layer(void **state)
{
    ctx *c = *state;
    cleanup_free char *base = path_in(c, "base.raw");
    cleanup_free char *layer = path_in(c, "root.raw");
    const off_t size = 64 << 20;
    write_sparse(base, size);
    assert_int_equal(net_disk_layer_create(base, layer, NET_LAYER_COPY, NULL), 0);
    struct stat st;
    assert_int_equal(stat(layer, &st), 0);
    assert_int_equal(st.st_size, size);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_blocks * 512 < size / 4); /* holes kept (or shared by a reflink) */
    char buf[8];
    read_at(layer, 0, buf, 4);
    assert_memory_equal(buf, "head", 4);
    read_at(layer, size / 2, buf, 6);
    assert_memory_equal(buf, "middle", 6);
    read_at(layer, size - 4, buf, 4);
    assert_memory_equal(buf, "tail", 4);
    /* Writing the layer leaves the base alone. */
    int fd = open(layer, O_WRONLY);
    assert_int_equal(pwrite(fd, "HEAD", 4, 0), 4);
    close(fd);
    read_at(base, 0, buf, 4);
    assert_memory_equal(buf, "head", 4);

    chcp_error *err = NULL;
    assert_int_equal(net_disk_layer_create(base, layer, NET_LAYER_COPY, &err), -1);
    assert_int_equal(err->code, CHCP_ALREADY_EXISTS);
    error_free(err);
    err = NULL;
    cleanup_free char *missing = path_in(c, "nope.raw");
    cleanup_free char *other = path_in(c, "other.raw");
    assert_int_equal(net_disk_layer_create(missing, other, NET_LAYER_COPY, &err), -1);
    assert_int_equal(err->code, CHCP_NOT_FOUND);
    error_free(err);
    err = NULL;
    assert_int_equal(net_disk_layer_create(c->dir, other, NET_LAYER_COPY, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);

    assert_int_equal(net_disk_layer_remove(layer, NULL), 0);
    assert_int_equal(access(layer, F_OK), -1);
    assert_int_equal(net_disk_layer_remove(layer, NULL), 0);
}

static void test_qcow2_layer(void **state)
{
    ctx *c = *state;
    cleanup_free char *qemu_img = net_find_tool("qemu-img");
    if (!qemu_img)
        fail_msg("qemu-img is missing: scripts/deps.sh --tools installs qemu-utils");
    cleanup_free char *base = path_in(c, "base.raw");
    cleanup_free char *layer = path_in(c, "root.qcow2");
    write_sparse(base, 16 << 20);
    assert_int_equal(net_disk_layer_create(base, layer, NET_LAYER_QCOW2, NULL), 0);
    char magic[4];
    read_at(layer, 0, magic, 4);
    assert_memory_equal(magic, "QFI\xfb", 4);
    assert_true(file_has(layer, base));  /* the backing file, as given */
    assert_true(file_has(layer, "raw")); /* its format, recorded */
    struct stat st;
    assert_int_equal(stat(layer, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_size < (1 << 20)); /* nothing copied */

    /* A layer over that layer: a qcow2 base is detected. */
    cleanup_free char *top = path_in(c, "top.qcow2");
    assert_int_equal(net_disk_layer_create(layer, top, NET_LAYER_QCOW2, NULL), 0);
    assert_true(file_has(top, "qcow2"));
    /* A raw copy of a qcow2 image would not be what the VMM expects. */
    chcp_error *err = NULL;
    cleanup_free char *copy = path_in(c, "copy.raw");
    assert_int_equal(net_disk_layer_create(layer, copy, NET_LAYER_COPY, &err), -1);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_run),
        T(test_seed_image),
        T(test_copy_layer),
        T(test_qcow2_layer),
    };
    return cmocka_run_group_tests_name("net_files", tests, NULL, NULL);
}
