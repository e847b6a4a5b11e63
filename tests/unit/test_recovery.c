/*
 * test_recovery.c - start-up recovery decisions (src/vm/recovery.c,
 * procscan.c) with real processes standing in for VMMs: a VMM is adopted
 * only when its pid, its start time AND the event file it holds for writing
 * all match; a live pid that fails any of these is never touched. Nothing is
 * killed or removed without proof: a VMM whose vm.json says `creating` is
 * reaped (not with the keep policy), one without any record is adopted as a
 * VM of unknown configuration, a reader of an event file or a process
 * without the VMM marks is left alone. A lost store (no rows) is rebuilt
 * from vm.json; a vm.json newer than its row wins; a VMM whose directory was
 * deleted is adopted without its API; too few file descriptors refuse the
 * start touching nothing; a VMM that cannot be adopted stays (only DeleteVm
 * works, and kills it); the state directory deleted under a running manager
 * is noticed, written back, and a restart re-adopts its VMMs. Graceful
 * shutdown leaves VMMs running with their records intact.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/resource.h>
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
static pid_t spawn_holder_mode(const char *path, int flags)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (path && open(path, flags | O_CREAT, 0600) < 0)
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

static pid_t spawn_holder(const char *path)
{
    return spawn_holder_mode(path, O_WRONLY | O_APPEND);
}

/* A child with every mark of a VMM chcp spawned for `dir`: its own
 * session, `dir` as working directory, events.json for writing at fd 4. */
static pid_t spawn_vmm(const char *dir)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        setsid();
        if (chdir(dir) < 0)
            _exit(1);
        int fd = open("events.json", O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (fd < 0 || dup2(fd, 4) < 0)
            _exit(1);
        if (fd != 4)
            close(fd);
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
    vm_store *s = vm_store_open(&t->loop, t->state_dir, NULL, &err);
    assert_null(err);
    for (size_t i = 0; i < n; i++)
        vm_store_put(s, &rows[i], NULL, NULL, put_done, NULL);
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

/* The removal recovery started (a DeleteVm it finishes) is done. */
static bool wait_gone(rctx *t, const char *id)
{
    for (int i = 0; i < 200 && vm_manager_find(t->m, id); i++)
        tv_spin(&t->loop, 10);
    return vm_manager_find(t->m, id) == NULL;
}

/* Graceful stop (VMMs keep running), then a fresh manager recovers. */
static void stop_manager(rctx *t)
{
    vm_manager_shutdown(t->m, NULL, NULL);
    tv_spin(&t->loop, 20);
    vm_manager_free(t->m);
    t->m = NULL;
    t->recovered = false;
    t->adopts = 0;
}

/* vm.json for `id` in its directory, as an earlier daemon run would have
 * written it. */
static void write_record(rctx *t, const char *id, vm_record_phase phase, int pid,
                         uint64_t start_time, int state, uint64_t generation)
{
    char d[256];
    vm_dir(t, id, d, sizeof(d));
    vm_record_file f = {.id = id,
                        .backend = "cloud-hypervisor",
                        .phase = phase,
                        .labels = (const uint8_t *)"{\"team\":\"b\"}",
                        .labels_len = 12,
                        .state = state,
                        .vmm_pid = pid,
                        .vmm_start_time = start_time,
                        .created_at_ns = 500,
                        .state_changed_at_ns = 600,
                        .generation = generation};
    char *text = vm_record_render(&f, NULL);
    assert_int_equal(vm_record_write(d, text, NULL), 0);
    free(text);
}

static void vms_dir(rctx *t)
{
    char vms[200];
    snprintf(vms, sizeof(vms), "%s/vms", t->state_dir);
    mkdir(vms, 0700);
}

static void test_recover_adopt_crash_orphans(void **state)
{
    rctx *t = *state;
    char d[256], ev[300];
    vms_dir(t);

    vm_dir(t, "live", d, sizeof(d));
    pid_t live = spawn_vmm(d);
    vm_dir(t, "reused", d, sizeof(d));
    pid_t stranger = spawn_holder(NULL); /* an unrelated process got the pid */
    vm_dir(t, "dead", d, sizeof(d));
    snprintf(ev, sizeof(ev), "%s/api.sock", d);
    close(open(ev, O_WRONLY | O_CREAT, 0600)); /* a dead VMM's socket leftover */
    pid_t dead = spawn_holder(NULL);
    finish(dead);
    /* Spawned for a CreateVm that was never acknowledged: proof to reap. */
    write_record(t, "unacked", VM_PHASE_CREATING, 0, 0, VM_CREATING, 1);
    vm_dir(t, "unacked", d, sizeof(d));
    pid_t unacked = spawn_vmm(d);
    /* A live VMM nobody recorded (a lost store and no vm.json): kept, as a
     * VM of unknown configuration. */
    vm_dir(t, "unknown", d, sizeof(d));
    pid_t unknown = spawn_vmm(d);
    /* Processes that hold an event file but are not VMMs: an operator's
     * reader, and a writer without the VMM marks. Never touched. */
    write_record(t, "watched", VM_PHASE_CREATING, 0, 0, VM_CREATING, 1);
    vm_dir(t, "watched", d, sizeof(d));
    snprintf(ev, sizeof(ev), "%s/events.json", d);
    pid_t reader = spawn_holder_mode(ev, O_RDONLY);
    vm_dir(t, "nomarks", d, sizeof(d));
    snprintf(ev, sizeof(ev), "%s/events.json", d);
    pid_t nomarks = spawn_holder(ev);
    vm_dir(t, "stale", d, sizeof(d)); /* empty: nothing to lose */
    vm_dir(t, "logs", d, sizeof(d));  /* files but no record, no VMM */
    snprintf(ev, sizeof(ev), "%s/serial.log", d);
    close(open(ev, O_WRONLY | O_CREAT, 0600));

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
    assert_int_equal(rs.total, 6); /* 4 rows + unknown + logs */
    assert_int_equal(rs.adopted, 2);
    assert_int_equal(rs.crashed, 2);
    assert_int_equal(rs.unaccounted, 2);
    assert_int_equal(rs.orphans, 2);     /* unacked (reaped), nomarks (kept) */
    assert_int_equal(rs.orphan_dirs, 4); /* unacked, watched, stale removed; nomarks kept */
    assert_int_equal(rs.reaped, 1);
    assert_int_equal(rs.rebuilt, 0);

    /* adopted: same pid, same state, same timestamps, generation unchanged */
    assert_int_equal(t->adopts, 2);
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

    /* proof: killed and removed */
    assert_true(killed(unacked));
    snprintf(d, sizeof(d), "%s/vms/unacked", t->state_dir);
    assert_int_equal(access(d, F_OK), -1);
    assert_null(vm_manager_find(t->m, "unacked"));
    snprintf(d, sizeof(d), "%s/vms/stale", t->state_dir);
    assert_int_equal(access(d, F_OK), -1);

    /* no proof: kept, adopted, visible */
    r = vm_manager_find(t->m, "unknown");
    assert_non_null(r);
    assert_int_equal(r->vmm_pid, unknown);
    assert_int_equal(r->state, VM_RUNNING); /* as its vm.info says */
    assert_non_null(strstr(r->state_reason, "without any record"));
    assert_true(still_running(unknown));
    r = vm_manager_find(t->m, "logs");
    assert_non_null(r);
    assert_int_equal(r->state, VM_CRASHED);
    snprintf(d, sizeof(d), "%s/vms/logs/serial.log", t->state_dir);
    assert_int_equal(access(d, F_OK), 0);
    assert_true(still_running(reader));
    assert_true(still_running(nomarks));
    snprintf(d, sizeof(d), "%s/vms/watched", t->state_dir); /* never acknowledged */
    assert_int_equal(access(d, F_OK), -1);
    snprintf(d, sizeof(d), "%s/vms/nomarks", t->state_dir);
    assert_int_equal(access(d, F_OK), 0);

    /* Graceful shutdown leaves the adopted VMMs running and their records. */
    stop_manager(t);
    assert_true(still_running(live));
    assert_true(still_running(unknown));
    recover(t, false);
    r = vm_manager_find(t->m, "live");
    assert_int_equal(r->generation, 9);
    assert_int_equal(r->vmm_pid, live);
    assert_int_equal(t->adopts, 2);
    /* The crash marks and the VMs found without a record are durable now. */
    r = vm_manager_find(t->m, "dead");
    assert_int_equal(r->state, VM_CRASHED);
    vm_manager_recovery_status(t->m, &rs);
    assert_int_equal(rs.unaccounted, 0);
    r = vm_manager_find(t->m, "unknown");
    assert_int_equal(r->vmm_pid, unknown);
    assert_non_null(vm_manager_find(t->m, "logs"));

    finish(live);
    finish(stranger);
    finish(unknown);
    finish(reader);
    finish(nomarks);
}

static void test_recover_keep_policy(void **state)
{
    rctx *t = *state;
    char d[256];
    vms_dir(t);
    write_record(t, "unacked", VM_PHASE_CREATING, 0, 0, VM_CREATING, 1);
    vm_dir(t, "unacked", d, sizeof(d));
    pid_t orphan = spawn_vmm(d);
    store_rows(t, NULL, 0);

    recover(t, true);
    vm_recovery_status rs;
    vm_manager_recovery_status(t->m, &rs);
    assert_int_equal(rs.orphans, 1);
    assert_int_equal(rs.reaped, 0);
    assert_true(still_running(orphan));
    assert_int_equal(access(d, F_OK), 0);
    finish(orphan);
}

/* The store lost every row (deleted, truncated, emptied): nothing is killed,
 * every VM comes back from its vm.json - the live ones adopted with their
 * state, the dead ones CRASHED, a deletion that had begun finished - and the
 * rows are written back. */
static void test_recover_lost_store(void **state)
{
    rctx *t = *state;
    char d[256];
    vms_dir(t);
    vm_dir(t, "run", d, sizeof(d));
    pid_t run = spawn_vmm(d);
    write_record(t, "run", VM_PHASE_ACTIVE, run, start_time_of(run), VM_RUNNING, 4);
    pid_t dead = spawn_holder(NULL);
    uint64_t dead_st = start_time_of(dead);
    finish(dead);
    write_record(t, "dead", VM_PHASE_ACTIVE, dead, dead_st, VM_RUNNING, 4);
    vm_dir(t, "bye", d, sizeof(d));
    pid_t bye = spawn_vmm(d);
    write_record(t, "bye", VM_PHASE_DELETING, bye, start_time_of(bye), VM_RUNNING, 7);
    /* chcp.db does not exist at all. */

    recover(t, false);
    vm_recovery_status rs;
    vm_manager_recovery_status(t->m, &rs);
    assert_true(rs.store_created);
    assert_int_equal(rs.rebuilt, 3);
    assert_int_equal(rs.orphans, 0);
    const vm_record *r = vm_manager_find(t->m, "run");
    assert_non_null(r);
    assert_int_equal(r->vmm_pid, run);
    assert_int_equal(r->state, VM_RUNNING);
    assert_int_equal(r->created_at_ns, 500);
    assert_int_equal(r->n_labels, 1);
    assert_string_equal(r->labels[0].value, "b");
    assert_true(still_running(run));
    r = vm_manager_find(t->m, "dead");
    assert_int_equal(r->state, VM_CRASHED);
    /* The deletion asked for before the loss is finished (the DeleteVm
     * stops its VMM through the backend, here the fake). */
    assert_true(wait_gone(t, "bye"));
    snprintf(d, sizeof(d), "%s/vms/bye", t->state_dir);
    assert_int_equal(access(d, F_OK), -1);
    finish(bye); /* what the real backend's stop does */

    /* Written back: the next start has rows (nothing rebuilt). */
    stop_manager(t);
    recover(t, false);
    vm_manager_recovery_status(t->m, &rs);
    assert_false(rs.store_created);
    assert_int_equal(rs.rebuilt, 0);
    assert_int_equal(rs.adopted, 1);
    assert_int_equal(vm_manager_find(t->m, "run")->vmm_pid, run);
    assert_null(vm_manager_find(t->m, "bye"));
    finish(run);
}

/* vm.json written, its row's commit lost: the newer record wins (here: the
 * VMM identity); a record saying `deleting` finishes the deletion. A row
 * whose VMM is gone while a VMM of its directory lives adopts that one. */
static void test_recover_record_newer_than_row(void **state)
{
    rctx *t = *state;
    char d[256];
    vms_dir(t);
    vm_dir(t, "moved", d, sizeof(d));
    pid_t moved = spawn_vmm(d);
    write_record(t, "moved", VM_PHASE_ACTIVE, moved, start_time_of(moved), VM_PAUSED, 12);
    vm_dir(t, "stale", d, sizeof(d));
    pid_t stale = spawn_vmm(d); /* neither row nor record names it */
    vm_store_row rows[] = {
        row("moved", VM_RUNNING, 1, 1), /* generation 9 < 12 */
        row("stale", VM_RUNNING, 1, 1),
        row("del", VM_RUNNING, 0, 0),
    };
    store_rows(t, rows, ARRAY_SIZE(rows));
    write_record(t, "del", VM_PHASE_DELETING, 0, 0, VM_RUNNING, 10);
    t->fb.info_state_override = "Paused";

    recover(t, false);
    const vm_record *r = vm_manager_find(t->m, "moved");
    assert_int_equal(r->vmm_pid, moved);
    assert_int_equal(r->state, VM_PAUSED);
    r = vm_manager_find(t->m, "stale");
    assert_int_equal(r->vmm_pid, stale);
    assert_int_equal(r->state, VM_PAUSED); /* what its VMM says */
    assert_true(still_running(stale));
    assert_true(wait_gone(t, "del"));
    finish(moved);
    finish(stale);
}

/* A VMM whose whole directory was deleted while it ran (chcp.db kept): it is
 * still found, by its deleted paths, and adopted without an API. */
static void test_recover_deleted_dir(void **state)
{
    rctx *t = *state;
    char d[256];
    vms_dir(t);
    vm_dir(t, "lost", d, sizeof(d));
    pid_t lost = spawn_vmm(d);
    vm_store_row rows[] = {row("lost", VM_RUNNING, lost, start_time_of(lost))};
    store_rows(t, rows, 1);
    tv_rmtree(d);
    t->fb.mode[VMB_INFO] = FAKE_UNAVAILABLE; /* no socket to answer on */

    recover(t, false);
    vm_recovery_status rs;
    vm_manager_recovery_status(t->m, &rs);
    assert_int_equal(rs.adopted, 1);
    assert_int_equal(rs.crashed, 0);
    const vm_record *r = vm_manager_find(t->m, "lost");
    assert_int_equal(r->vmm_pid, lost);
    assert_int_equal(r->state, VM_RUNNING);
    assert_non_null(strstr(r->state_reason, "directory was deleted"));
    assert_int_equal(access(d, F_OK), 0); /* made again, for its record */
    assert_true(still_running(lost));
    finish(lost);
}

/* RLIMIT_NOFILE too low for the VMs found: refused before anything is
 * decided - no VMM touched, no record written. */
static void test_recover_fd_budget(void **state)
{
    rctx *t = *state;
    char d[256];
    vms_dir(t);
    vm_dir(t, "v0", d, sizeof(d));
    pid_t vmm = spawn_vmm(d);
    vm_store_row rows[40];
    char ids[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(ids[i], sizeof(ids[i]), "v%d", i);
        rows[i] = row(ids[i], VM_RUNNING, i ? 0 : vmm, i ? 0 : start_time_of(vmm));
    }
    store_rows(t, rows, 40);
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    low = old;
    low.rlim_cur = VM_FDS_RESERVE + 40 * VM_FDS_PER_VM - 1;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    vm_manager_config cfg = {.state_dir = t->state_dir, .durable = true};
    chcp_error *err = NULL;
    t->m = vm_manager_new(&t->loop, &cfg, &t->ops, &t->fb, &err);
    assert_non_null(t->m);
    assert_int_equal(vm_manager_recover(t->m, on_recovered, t, &err), -1);
    setrlimit(RLIMIT_NOFILE, &old);
    assert_int_equal(err->code, CHCP_FAILED_PRECONDITION);
    assert_non_null(strstr(err->message, "RLIMIT_NOFILE"));
    assert_non_null(strstr(err->message, "every VMM keeps running"));
    error_free(err);
    assert_int_equal(t->adopts, 0);
    assert_true(still_running(vmm));
    vm_manager_free(t->m);
    t->m = NULL;
    tv_spin(&t->loop, 10);
    /* With the limit back, the same state recovers. */
    recover(t, false);
    assert_int_equal(vm_manager_find(t->m, "v0")->vmm_pid, vmm);
    assert_int_equal(vm_manager_find(t->m, "v1")->state, VM_CRASHED);
    finish(vmm);
}

static void *failing_adopt(void *backend, const vmb_adopt_params *p, const vmb_callbacks *cb,
                           void *cb_ud, chcp_error **err)
{
    g_ctx->adopts++;
    error_set_errno(err, CHCP_INTERNAL, EMFILE, "watching the event file");
    return NULL;
}

/* Adoption fails while the VMM lives (out of descriptors, inotify watches):
 * the VM is not declared dead and keeps its pid; operations say why;
 * DeleteVm stops the VMM by signal and removes the VM. */
static void test_recover_unadoptable(void **state)
{
    rctx *t = *state;
    char d[256];
    vms_dir(t);
    vm_dir(t, "stuck", d, sizeof(d));
    pid_t vmm = spawn_vmm(d);
    vm_store_row rows[] = {row("stuck", VM_RUNNING, vmm, start_time_of(vmm))};
    store_rows(t, rows, 1);
    t->ops.adopt = failing_adopt;

    recover(t, false);
    vm_recovery_status rs;
    vm_manager_recovery_status(t->m, &rs);
    assert_int_equal(rs.unadopted, 1);
    assert_int_equal(rs.crashed, 0);
    const vm_record *r = vm_manager_find(t->m, "stuck");
    assert_int_equal(r->state, VM_RUNNING);
    assert_int_equal(r->vmm_pid, vmm);
    assert_non_null(strstr(r->state_reason, "Too many open files"));
    op_result res = {0};
    chcp_error *err = NULL;
    assert_non_null(vm_op_submit(t->m, VM_OP_PAUSE, "stuck", NULL, op_result_cb, &res, &err));
    assert_true(tv_run_until(&t->loop, &res.done, 2000));
    assert_int_equal(res.code, CHCP_UNAVAILABLE);
    assert_true(still_running(vmm));

    op_result del = {0};
    assert_non_null(vm_op_submit(t->m, VM_OP_DELETE, "stuck", NULL, op_result_cb, &del, &err));
    assert_true(tv_run_until(&t->loop, &del.done, 5000));
    assert_int_equal(del.code, CHCP_OK);
    assert_true(killed(vmm));
    assert_null(vm_manager_find(t->m, "stuck"));
    assert_int_equal(access(d, F_OK), -1);
}

/* The whole state directory deleted under a running manager: noticed within
 * a couple of checks, reported unhealthy with the reason, and written back
 * (directory, chcp.db, vm.json); a restart then re-adopts the VMM, whose own
 * directory went with the rest, instead of leaving it unowned. */
static void test_state_dir_deleted(void **state)
{
    rctx *t = *state;
    char d[256], db[256];
    vms_dir(t);
    vm_dir(t, "kept", d, sizeof(d));
    pid_t vmm = spawn_vmm(d);
    vm_store_row rows[] = {row("kept", VM_RUNNING, vmm, start_time_of(vmm))};
    store_rows(t, rows, 1);
    recover(t, false);
    vm_state_status ss;
    vm_manager_state_status(t->m, &ss);
    assert_true(ss.healthy);
    assert_int_equal(ss.detections, 0);
    /* Recovery writes the missing vm.json: let it land first. */
    for (int i = 0; i < 200 && vm_store_pending(t->m->store); i++)
        tv_spin(&t->loop, 10);

    tv_rmtree(t->state_dir);
    for (int i = 0; i < 100; i++) {
        tv_spin(&t->loop, 100);
        vm_manager_state_status(t->m, &ss);
        if (ss.detections)
            break;
    }
    assert_int_equal(ss.detections, 1);
    assert_false(ss.healthy); /* its VMM lost its API socket: until a restart */
    assert_non_null(strstr(ss.problem, "was deleted"));
    assert_non_null(strstr(ss.problem, "lost their API socket"));
    tv_spin(&t->loop, 100); /* the rewrite */
    snprintf(db, sizeof(db), "%s/chcp.db", t->state_dir);
    assert_int_equal(access(db, F_OK), 0);
    vm_record_file f;
    assert_int_equal(vm_record_read(d, &f, NULL), 0);
    assert_int_equal(f.vmm_pid, vmm);
    vm_record_file_clear(&f);

    stop_manager(t);
    recover(t, false);
    assert_int_equal(t->adopts, 1);
    const vm_record *r = vm_manager_find(t->m, "kept");
    assert_int_equal(r->vmm_pid, vmm);
    assert_int_equal(r->state, VM_RUNNING);
    vm_manager_state_status(t->m, &ss);
    assert_true(ss.healthy);
    assert_true(still_running(vmm));
    finish(vmm);
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

    stop_manager(t);
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
        cmocka_unit_test_setup_teardown(test_recover_lost_store, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_recover_record_newer_than_row, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_recover_deleted_dir, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_recover_fd_budget, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_recover_unadoptable, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_state_dir_deleted, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_recover_reconcile, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_create_on_full_disk, rsetup, rteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
