/*
 * test_recovery.c - start-up recovery decisions (src/vm/recovery.c) with real
 * processes standing in for VMMs: a VMM is adopted only when its pid, its
 * start time AND the event file it holds all match; a live pid that fails
 * any of these is never touched; processes and directories no record owns
 * are reaped (or kept with the keep policy); graceful shutdown leaves VMMs
 * running with their records intact.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "test_vm_fake.h"
#include "vm/vm_internal.h"

/* Helpers of the shared fake this suite does not need. */
static void unused_fake_helpers(void) __attribute__((unused));
static void unused_fake_helpers(void)
{
    fake_unhang(NULL);
}

/* ---- processes that play VMMs ------------------------------------------------ */

/* A child that (optionally) holds `path` open and waits to be killed. */
static pid_t spawn_holder(const char *path)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (path && open(path, O_WRONLY | O_CREAT | O_APPEND, 0600) < 0)
            _exit(1);
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    close(p[0]);
    return pid;
}

static bool still_running(pid_t pid)
{
    int status;
    return waitpid(pid, &status, WNOHANG) == 0 && kill(pid, 0) == 0;
}

/* Was it killed by SIGKILL (waits up to 2 s)? */
static bool killed(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        usleep(10000);
    }
    return false;
}

static void finish(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static uint64_t start_time_of(pid_t pid)
{
    uint64_t st = 0;
    assert_int_equal(vm_proc_start_time(pid, &st), 0);
    return st;
}

/* ---- the decision on its own --------------------------------------------------- */

static void test_verdicts(void **state)
{
    char dir[] = "/tmp/chcp-test-recovery-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char events[256], other[256];
    snprintf(events, sizeof(events), "%s/events.json", dir);
    snprintf(other, sizeof(other), "%s/other.json", dir);

    pid_t vmm = spawn_holder(events);
    pid_t stranger = spawn_holder(other);
    uint64_t st = start_time_of(vmm);
    assert_true(st > 0);

    assert_int_equal(vm_recovery_check(vmm, st, events), VM_RECOVER_ADOPT);
    /* pid reuse: alive, but the start time differs */
    assert_int_equal(vm_recovery_check(vmm, st + 1, events), VM_RECOVER_PID_REUSED);
    /* same start time, but it does not hold the VM's event file */
    assert_int_equal(vm_recovery_check(stranger, start_time_of(stranger), events),
                     VM_RECOVER_NOT_VMM);
    assert_int_equal(vm_recovery_check(0, 0, events), VM_RECOVER_NO_PID);
    /* deciding touches nothing */
    assert_true(still_running(vmm));
    assert_true(still_running(stranger));

    /* a zombie (killed, not yet reaped) is dead, whatever its pid says */
    kill(vmm, SIGKILL);
    for (int i = 0; i < 200 && vm_recovery_check(vmm, st, events) != VM_RECOVER_DEAD; i++)
        usleep(5000);
    assert_int_equal(vm_recovery_check(vmm, st, events), VM_RECOVER_DEAD);
    finish(vmm);
    assert_int_equal(vm_recovery_check(vmm, st, events), VM_RECOVER_DEAD);
    uint64_t dummy;
    assert_int_equal(vm_proc_start_time(vmm, &dummy), -1);
    finish(stranger);
    tv_rmtree(dir);
}

/* ---- the manager's recovery with a store -------------------------------------- */

typedef struct rctx {
    uv_loop_t loop;
    char state_dir[128];
    fake_backend fb;
    vm_backend_ops ops;
    int adopts;
    int adopted_pid;
    vm_manager *m;
    bool recovered;
} rctx;

static rctx *g_ctx; /* the fake adopt needs the test context */

static void *fake_adopt(void *backend, const vmb_adopt_params *p, const vmb_callbacks *cb,
                        void *cb_ud, chcp_error **err)
{
    fake_backend *b = backend;
    g_ctx->adopts++;
    g_ctx->adopted_pid = p->pid;
    fake_vmm *v = calloc(1, sizeof(*v));
    v->b = b;
    v->cb = cb;
    v->cb_ud = cb_ud;
    v->pid = p->pid;
    strcpy(v->ch_state, "Running");
    b->live++;
    return v;
}

static uint64_t fake_event_offset(void *vmm)
{
    return 7;
}

static int rsetup(void **state)
{
    rctx *t = calloc(1, sizeof(*t));
    uv_loop_init(&t->loop);
    strcpy(t->state_dir, "/tmp/chcp-test-recovery-XXXXXX");
    assert_non_null(mkdtemp(t->state_dir));
    t->fb.loop = &t->loop;
    t->ops = fake_ops;
    t->ops.adopt = fake_adopt;
    t->ops.event_offset = fake_event_offset;
    g_ctx = t;
    *state = t;
    return 0;
}

static int rteardown(void **state)
{
    rctx *t = *state;
    if (t->m) {
        vm_manager_shutdown(t->m, NULL, NULL);
        tv_spin(&t->loop, 20);
        vm_manager_free(t->m);
    }
    tv_spin(&t->loop, 20);
    uv_loop_close(&t->loop);
    tv_rmtree(t->state_dir);
    free(t);
    return 0;
}

static void vm_dir(rctx *t, const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/vms/%s", t->state_dir, id);
    mkdir(out, 0700);
}

static void put_done(const chcp_error *err, void *ud)
{
    assert_null(err);
}

/* Write records the way an earlier daemon run would have. */
static void store_rows(rctx *t, const vm_store_row *rows, size_t n)
{
    chcp_error *err = NULL;
    vm_store *s = vm_store_open(&t->loop, t->state_dir, &err);
    assert_null(err);
    for (size_t i = 0; i < n; i++)
        vm_store_put(s, &rows[i], put_done, NULL);
    vm_store_flush(s);
    vm_store_close(s);
    tv_spin(&t->loop, 5);
}

static vm_store_row row(const char *id, vm_state st, int pid, uint64_t start_time)
{
    return (vm_store_row){.id = id,
                          .labels = (const uint8_t *)"{\"team\":\"a\"}",
                          .labels_len = 12,
                          .desired_state = st,
                          .state = st,
                          .state_reason = "",
                          .vmm_pid = pid,
                          .vmm_start_time = start_time,
                          .created_at_ns = 1000,
                          .updated_at_ns = 2000,
                          .state_changed_at_ns = 1500,
                          .generation = 9};
}

static void on_recovered(void *ud)
{
    ((rctx *)ud)->recovered = true;
}

static void recover(rctx *t, bool keep)
{
    vm_manager_config cfg = {.state_dir = t->state_dir, .durable = true, .orphan_keep = keep};
    chcp_error *err = NULL;
    t->m = vm_manager_new(&t->loop, &cfg, &t->ops, &t->fb, &err);
    assert_null(err);
    assert_int_equal(vm_manager_recover(t->m, on_recovered, t, &err), 0);
    assert_null(err);
    /* Nothing is served until recovery completes. */
    vm_op *op = vm_op_submit(t->m, VM_OP_BOOT, "live", NULL, op_result_cb, NULL, &err);
    assert_null(op);
    assert_int_equal(err->code, CHCP_UNAVAILABLE);
    error_free(err);
    assert_true(tv_run_until(&t->loop, &t->recovered, 5000));
}

static void test_recover_adopt_crash_orphans(void **state)
{
    rctx *t = *state;
    char vms[200], d[256], ev[300];
    snprintf(vms, sizeof(vms), "%s/vms", t->state_dir);
    mkdir(vms, 0700);

    vm_dir(t, "live", d, sizeof(d));
    snprintf(ev, sizeof(ev), "%s/events.json", d);
    pid_t live = spawn_holder(ev);
    vm_dir(t, "reused", d, sizeof(d));
    pid_t stranger = spawn_holder(NULL); /* an unrelated process got the pid */
    vm_dir(t, "dead", d, sizeof(d));
    snprintf(ev, sizeof(ev), "%s/api.sock", d);
    close(open(ev, O_WRONLY | O_CREAT, 0600)); /* a dead VMM's socket leftover */
    pid_t dead = spawn_holder(NULL);
    finish(dead);
    vm_dir(t, "orphan", d, sizeof(d));
    snprintf(ev, sizeof(ev), "%s/events.json", d);
    pid_t orphan = spawn_holder(ev);  /* spawned, crash before the record */
    vm_dir(t, "stale", d, sizeof(d)); /* a directory nobody owns */

    vm_store_row rows[] = {
        row("live", VM_RUNNING, live, start_time_of(live)),
        row("reused", VM_RUNNING, stranger, start_time_of(stranger) + 3),
        row("dead", VM_PAUSED, dead, 12345),
        row("gone", VM_CRASHED, 0, 0),
    };
    rows[3].state_reason = "VMM killed by signal 9 (KILL)";
    rows[3].exited_at_ns = 3000;
    store_rows(t, rows, ARRAY_SIZE(rows));
    vm_dir(t, "gone", d, sizeof(d));

    recover(t, false);
    vm_recovery_status rs;
    vm_manager_recovery_status(t->m, &rs);
    assert_true(rs.complete);
    assert_int_equal(rs.total, 4);
    assert_int_equal(rs.adopted, 1);
    assert_int_equal(rs.crashed, 2);
    assert_int_equal(rs.orphans, 1);
    assert_int_equal(rs.orphan_dirs, 2); /* orphan/ and stale/ */

    /* adopted: same pid, same state, same timestamps, generation unchanged */
    assert_int_equal(t->adopts, 1);
    assert_int_equal(t->adopted_pid, live);
    const vm_record *r = vm_manager_find(t->m, "live");
    assert_non_null(r);
    assert_int_equal(r->state, VM_RUNNING);
    assert_int_equal(r->vmm_pid, live);
    assert_int_equal(r->generation, 9);
    assert_int_equal(r->updated_at_ns, 2000);
    assert_int_equal(r->n_labels, 1);
    assert_string_equal(r->labels[0].key, "team");
    assert_true(still_running(live));

    /* pid reuse: marked, and the unrelated process is untouched */
    r = vm_manager_find(t->m, "reused");
    assert_int_equal(r->state, VM_CRASHED);
    assert_non_null(strstr(r->state_reason, "another process"));
    assert_int_equal(r->vmm_pid, 0);
    assert_true(still_running(stranger));

    /* died while we were down: marked, socket cleaned, record kept */
    r = vm_manager_find(t->m, "dead");
    assert_int_equal(r->state, VM_CRASHED);
    assert_non_null(strstr(r->state_reason, "exited while chcp-api was not running"));
    char sock[300];
    snprintf(sock, sizeof(sock), "%s/vms/dead/api.sock", t->state_dir);
    assert_int_equal(access(sock, F_OK), -1);

    /* already crashed: kept as it was */
    r = vm_manager_find(t->m, "gone");
    assert_int_equal(r->state, VM_CRASHED);
    assert_string_equal(r->state_reason, "VMM killed by signal 9 (KILL)");
    assert_int_equal(r->generation, 9);

    /* orphans: the process killed, the directories removed */
    assert_true(killed(orphan));
    snprintf(d, sizeof(d), "%s/vms/orphan", t->state_dir);
    assert_int_equal(access(d, F_OK), -1);
    snprintf(d, sizeof(d), "%s/vms/stale", t->state_dir);
    assert_int_equal(access(d, F_OK), -1);

    /* Graceful shutdown leaves the adopted VMM running and its record. */
    vm_manager_shutdown(t->m, NULL, NULL);
    tv_spin(&t->loop, 20);
    vm_manager_free(t->m);
    t->m = NULL;
    assert_true(still_running(live));
    t->recovered = false;
    t->adopts = 0;
    recover(t, false);
    r = vm_manager_find(t->m, "live");
    assert_int_equal(r->generation, 9);
    assert_int_equal(r->vmm_pid, live);
    assert_int_equal(t->adopts, 1);
    /* The crash marks written during the first recovery are durable. */
    r = vm_manager_find(t->m, "dead");
    assert_int_equal(r->state, VM_CRASHED);

    finish(live);
    finish(stranger);
}

static void test_recover_keep_policy(void **state)
{
    rctx *t = *state;
    char vms[200], d[256], ev[300];
    snprintf(vms, sizeof(vms), "%s/vms", t->state_dir);
    mkdir(vms, 0700);
    vm_dir(t, "orphan", d, sizeof(d));
    snprintf(ev, sizeof(ev), "%s/events.json", d);
    pid_t orphan = spawn_holder(ev);
    store_rows(t, NULL, 0);

    recover(t, true);
    vm_recovery_status rs;
    vm_manager_recovery_status(t->m, &rs);
    assert_int_equal(rs.orphans, 1);
    assert_int_equal(rs.orphan_dirs, 1);
    assert_true(still_running(orphan));
    assert_int_equal(access(d, F_OK), 0);
    finish(orphan);
}

/* vm.info decides: a guest that powered off while chcp-api was down makes
 * the VM SHUTDOWN (with the reason, written through); a VMM that does not
 * answer keeps the VM and its state, and says so. */
static void test_recover_reconcile(void **state)
{
    rctx *t = *state;
    char vms[200], d[256], ev[300];
    snprintf(vms, sizeof(vms), "%s/vms", t->state_dir);
    mkdir(vms, 0700);
    vm_dir(t, "off", d, sizeof(d));
    snprintf(ev, sizeof(ev), "%s/events.json", d);
    pid_t vmm = spawn_holder(ev);
    vm_store_row rows[] = {row("off", VM_RUNNING, vmm, start_time_of(vmm))};
    store_rows(t, rows, 1);

    t->fb.info_state_override = "Created";
    recover(t, false);
    const vm_record *r = vm_manager_find(t->m, "off");
    assert_int_equal(r->state, VM_SHUTDOWN);
    assert_string_equal(r->state_reason, "guest powered off while chcp-api was not running");
    assert_int_equal(r->generation, 10);
    assert_int_equal(r->vmm_pid, vmm);

    vm_manager_shutdown(t->m, NULL, NULL);
    tv_spin(&t->loop, 20);
    vm_manager_free(t->m);
    t->m = NULL;
    t->recovered = false;
    t->fb.info_state_override = NULL;
    t->fb.mode[VMB_INFO] = FAKE_UNAVAILABLE;
    recover(t, false);
    r = vm_manager_find(t->m, "off");
    assert_int_equal(r->state, VM_SHUTDOWN); /* as stored by the first run */
    assert_non_null(strstr(r->state_reason, "VMM not responding at chcp-api start"));
    assert_int_equal(r->vmm_pid, vmm);
    assert_true(still_running(vmm));
    finish(vmm);
}

static op_result create_vm(rctx *t, const char *id, const char *kernel, const char *cmdline)
{
    Cloudhypervisor__V1__VmConfig c = CLOUDHYPERVISOR__V1__VM_CONFIG__INIT;
    Cloudhypervisor__V1__PayloadConfig p = CLOUDHYPERVISOR__V1__PAYLOAD_CONFIG__INIT;
    p.kernel = (char *)kernel;
    p.cmdline = (char *)cmdline;
    c.payload = &p;
    op_result r = {0};
    chcp_error *err = NULL;
    vm_op *op = vm_op_create(t->m, id, &c, NULL, 0, NULL, op_result_cb, &r, &err);
    assert_null(err);
    assert_non_null(op);
    assert_true(tv_run_until(&t->loop, &r.done, 5000));
    return r;
}

/* A full disk: CreateVm cannot make its record durable, so it fails like any
 * other creation failure (VMM stopped, directory gone, nothing registered);
 * the client never holds an acknowledgement the store does not back. */
static void test_create_on_full_disk(void **state)
{
    rctx *t = *state;
    char img[200], kernel[256], vms[200];
    snprintf(img, sizeof(img), "%s/images", t->state_dir);
    mkdir(img, 0700);
    snprintf(kernel, sizeof(kernel), "%s/vmlinux", img);
    close(open(kernel, O_WRONLY | O_CREAT, 0600));
    snprintf(vms, sizeof(vms), "%s/vms", t->state_dir);
    mkdir(vms, 0700);
    const char *dirs[] = {img};
    vm_manager_config cfg = {.state_dir = t->state_dir,
                             .durable = true,
                             .image_dirs = dirs,
                             .n_image_dirs = 1,
                             .max_vcpus = 8,
                             .max_memory_mib = 1024};
    chcp_error *err = NULL;
    t->m = vm_manager_new(&t->loop, &cfg, &t->ops, &t->fb, &err);
    assert_null(err);
    assert_int_equal(vm_manager_recover(t->m, on_recovered, t, &err), 0);
    assert_true(tv_run_until(&t->loop, &t->recovered, 5000));

    /* Big records: each needs fresh pages. */
    static char cmdline[4001];
    memset(cmdline, 'x', 4000);
    op_result r = create_vm(t, "fits", kernel, cmdline);
    assert_int_equal(r.code, CHCP_OK);

    assert_int_equal(vm_store_limit_pages(t->m->store, 0), 0);
    int stops = t->fb.stops;
    r = create_vm(t, "nofit", kernel, cmdline);
    assert_int_equal(r.code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(r.msg, "recording the VM durably"));
    assert_non_null(strstr(r.msg, "chcp.db"));
    assert_null(vm_manager_find(t->m, "nofit"));
    assert_int_equal(t->fb.stops, stops + 1); /* its VMM was stopped */
    char d[256];
    snprintf(d, sizeof(d), "%s/nofit", vms);
    assert_int_equal(access(d, F_OK), -1);
    assert_non_null(vm_manager_find(t->m, "fits"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test_setup_teardown(test_recover_adopt_crash_orphans, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_recover_keep_policy, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_recover_reconcile, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_create_on_full_disk, rsetup, rteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
