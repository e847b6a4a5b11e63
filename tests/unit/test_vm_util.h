/*
 * test_vm_util.h - the test context and helpers the VM manager's unit tests
 * (test_vm*.c) share: a manager on the fake backend (test_vm_fake.h) over a
 * temporary state directory with an image directory, configurations, and
 * running operations to completion.
 */
#ifndef TEST_VM_UTIL_H
#define TEST_VM_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_vm_fake.h"

typedef struct tctx {
    uv_loop_t loop;
    char state_dir[128];
    char image_dir[160];
    char kernel[200];
    fake_backend fb;
    vm_manager *m;
    bool attach;
    bool durable; /* records in <state_dir>/chcp.db, VMMs let go at shutdown */
    uint32_t max_starts;
} tctx;

static inline void write_file(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

static inline void start_manager(tctx *t)
{
    const char *dirs[] = {t->image_dir};
    vm_manager_config cfg = {.state_dir = t->state_dir,
                             .image_dirs = dirs,
                             .n_image_dirs = 1,
                             .max_vcpus = 8,
                             .max_memory_mib = 1024,
                             .max_concurrent_starts = t->max_starts,
                             .attach_mode = t->attach,
                             .durable = t->durable};
    chcp_error *err = NULL;
    t->m = vm_manager_new(&t->loop, &cfg, &fake_ops, &t->fb, &err);
    assert_null(err);
    assert_non_null(t->m);
}

static inline int setup(void **state)
{
    tctx *t = calloc(1, sizeof(*t));
    uv_loop_init(&t->loop);
    strcpy(t->state_dir, "/tmp/chcp-test-vm-XXXXXX");
    assert_non_null(mkdtemp(t->state_dir));
    snprintf(t->image_dir, sizeof(t->image_dir), "%s/images", t->state_dir);
    mkdir(t->image_dir, 0755);
    snprintf(t->kernel, sizeof(t->kernel), "%s/vmlinux", t->image_dir);
    write_file(t->kernel);
    char p[256];
    snprintf(p, sizeof(p), "%s/disk.img", t->image_dir);
    write_file(p);
    snprintf(p, sizeof(p), "%s/fw.bin", t->image_dir);
    write_file(p);
    snprintf(p, sizeof(p), "%s/escape", t->image_dir);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    t->fb.loop = &t->loop;
    *state = t;
    return 0;
}

static inline int teardown(void **state)
{
    tctx *t = *state;
    if (t->m) {
        bool done = false;
        vm_manager_shutdown(t->m, (void (*)(void *))(void *)NULL, NULL);
        tv_run_until(&t->loop, &done, 200);
        if (!t->durable) /* durable mode keeps its records */
            assert_int_equal(vm_manager_count(t->m), 0);
        vm_manager_free(t->m);
    }
    assert_int_equal(t->fb.live, 0); /* every VMM released */
    tv_spin(&t->loop, 5);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    tv_rmtree(t->state_dir);
    free(t);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

static Cloudhypervisor__V1__PayloadConfig payload_init = CLOUDHYPERVISOR__V1__PAYLOAD_CONFIG__INIT;

typedef struct cfgbuf {
    Cloudhypervisor__V1__VmConfig c;
    Cloudhypervisor__V1__PayloadConfig p;
    Cloudhypervisor__V1__CpusConfig cpus;
    Cloudhypervisor__V1__MemoryConfig mem;
    Cloudhypervisor__V1__DiskConfig disk;
    Cloudhypervisor__V1__DiskConfig *disks[1];
    Cloudhypervisor__V1__ConsoleConfig console;
} cfgbuf;

static inline void cfg_init(cfgbuf *b, tctx *t)
{
    Cloudhypervisor__V1__VmConfig c = CLOUDHYPERVISOR__V1__VM_CONFIG__INIT;
    Cloudhypervisor__V1__CpusConfig cpus = CLOUDHYPERVISOR__V1__CPUS_CONFIG__INIT;
    Cloudhypervisor__V1__MemoryConfig mem = CLOUDHYPERVISOR__V1__MEMORY_CONFIG__INIT;
    Cloudhypervisor__V1__DiskConfig disk = CLOUDHYPERVISOR__V1__DISK_CONFIG__INIT;
    Cloudhypervisor__V1__ConsoleConfig con = CLOUDHYPERVISOR__V1__CONSOLE_CONFIG__INIT;
    b->c = c;
    b->p = payload_init;
    b->cpus = cpus;
    b->mem = mem;
    b->disk = disk;
    b->console = con;
    b->p.kernel = t->kernel;
    b->p.cmdline = "console=hvc0";
    b->cpus.boot_vcpus = 2;
    b->mem.size = 256ull << 20;
    b->c.payload = &b->p;
    b->c.cpus = &b->cpus;
    b->c.memory = &b->mem;
}

static inline op_result create_cfg(tctx *t, const char *id, const Cloudhypervisor__V1__VmConfig *c,
                                   const vm_label *labels, size_t n)
{
    op_result r = {0};
    chcp_error *err = NULL;
    vm_op *op = vm_op_create(t->m, id, c, labels, n, NULL, op_result_cb, &r, &err);
    if (!op) {
        r.done = true;
        r.code = err->code;
        snprintf(r.msg, sizeof(r.msg), "%s", err->message);
        error_free(err);
        return r;
    }
    assert_false(r.done); /* never completes inside the call */
    assert_true(tv_run_until(&t->loop, &r.done, 2000));
    return r;
}

static inline op_result create(tctx *t, const char *id)
{
    cfgbuf b;
    cfg_init(&b, t);
    return create_cfg(t, id, &b.c, NULL, 0);
}

static inline op_result run_op(tctx *t, vm_op_kind k, const char *id, const vm_op_params *p)
{
    op_result r = {0};
    chcp_error *err = NULL;
    vm_op *op = vm_op_submit(t->m, k, id, p, op_result_cb, &r, &err);
    if (!op) {
        r.done = true;
        r.code = err->code;
        snprintf(r.msg, sizeof(r.msg), "%s", err->message);
        error_free(err);
        return r;
    }
    assert_false(r.done);
    assert_true(tv_run_until(&t->loop, &r.done, 2000));
    return r;
}

static inline vm_state state_of(tctx *t, const char *id)
{
    const vm_record *r = vm_manager_find(t->m, id);
    assert_non_null(r);
    return r->state;
}

static inline bool dir_exists(tctx *t, const char *id)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/vms/%s", t->state_dir, id);
    struct stat st;
    return stat(p, &st) == 0;
}

static const vm_op_params force = {.force = true};

/* Bring VM `id` into state s (fresh VM). */
static inline void reach(tctx *t, const char *id, vm_state s)
{
    assert_int_equal(create(t, id).code, CHCP_OK);
    switch (s) {
    case VM_CREATED:
        break;
    case VM_RUNNING:
        assert_int_equal(run_op(t, VM_OP_BOOT, id, NULL).code, CHCP_OK);
        break;
    case VM_PAUSED:
        assert_int_equal(run_op(t, VM_OP_BOOT, id, NULL).code, CHCP_OK);
        assert_int_equal(run_op(t, VM_OP_PAUSE, id, NULL).code, CHCP_OK);
        break;
    case VM_SHUTDOWN:
        assert_int_equal(run_op(t, VM_OP_BOOT, id, NULL).code, CHCP_OK);
        assert_int_equal(run_op(t, VM_OP_SHUTDOWN, id, &force).code, CHCP_OK);
        break;
    case VM_FAILED:
        /* vm.boot fails and vm.info cannot tell what was kept */
        t->fb.mode[VMB_BOOT] = FAKE_FAIL;
        t->fb.mode[VMB_INFO] = FAKE_FAIL;
        assert_int_equal(run_op(t, VM_OP_BOOT, id, NULL).code, CHCP_INTERNAL);
        t->fb.mode[VMB_BOOT] = FAKE_OK;
        t->fb.mode[VMB_INFO] = FAKE_OK;
        break;
    case VM_CRASHED:
        assert_int_equal(run_op(t, VM_OP_BOOT, id, NULL).code, CHCP_OK);
        fake_exit(t->fb.last, -1, 9);
        break;
    default:
        fail();
    }
    assert_int_equal(state_of(t, id), s);
}

#endif
