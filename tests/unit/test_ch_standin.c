/*
 * test_ch_standin.c - the CH back end against the Cloud Hypervisor stand-in
 * (tests/ch-standin, built as $(B)/ch-standin/cloud-hypervisor): a whole VM
 * lifecycle through the real spawn path, CH's error chains, events from the
 * event-monitor file, SCM_RIGHTS on vm.add-net, start failures (no KVM),
 * a hung VMM (timeouts and stop escalation) and a crashing one.
 *
 * The binary is found next to this test's build directory, or at
 * $CH_STANDIN. Without it every test is skipped (tests/unit/ch_standin.mk
 * makes the unit-test build produce it first).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <sys/wait.h>

#include "vmm/ch/ch.h"
#include "ch_test_util.h"

typedef struct sx {
    uv_loop_t loop;
    char *dir;
    char bin[4096];
    ch_vmm *vmm;
    bool ready, exited, done;
    chcp_code ready_code;
    char ready_msg[4096];
    char ping[512];
    ch_exit exit;
    char reason[200];
    char events[64][64];
    int n_events;
    int status;
    chcp_code code;
    char body[8192];
    char msg[2048];
} sx;

static sx *S;

static void on_ready(ch_vmm *v, const ch_response *resp, const chcp_error *err, void *ud)
{
    S->ready = true;
    S->ready_code = err ? err->code : CHCP_OK;
    snprintf(S->ready_msg, sizeof(S->ready_msg), "%s", err ? err->message : "");
    snprintf(S->ping, sizeof(S->ping), "%s", resp ? resp->body : "");
}

static void on_event(ch_vmm *v, const ch_event *ev, void *ud)
{
    if (S->n_events < 64)
        snprintf(S->events[S->n_events++], 64, "%s/%s", ev->source, ev->event);
}

static void on_exit_cb(ch_vmm *v, const ch_exit *ex, void *ud)
{
    S->exited = true;
    S->exit = *ex;
    snprintf(S->reason, sizeof(S->reason), "%s", ex->reason);
}

static const ch_vmm_callbacks cbs = {on_ready, on_event, on_exit_cb};

static void on_resp(ch_vmm *v, const ch_response *resp, const chcp_error *err, void *ud)
{
    S->done = true;
    S->status = resp ? resp->status : -1;
    S->code = err ? err->code : CHCP_OK;
    snprintf(S->body, sizeof(S->body), "%s", resp ? resp->body : "");
    snprintf(S->msg, sizeof(S->msg), "%s", err ? err->message : "");
}

static bool find_standin(char *out, size_t cap)
{
    const char *env = getenv("CH_STANDIN");
    if (env && env[0]) {
        snprintf(out, cap, "%s", env);
        return access(out, X_OK) == 0;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return false;
    self[n] = 0;
    /* $(B)/tests/test_ch_standin -> $(B)/ch-standin/cloud-hypervisor */
    snprintf(out, cap, "%s/../ch-standin/cloud-hypervisor", dirname(self));
    return access(out, X_OK) == 0;
}

static int setup(void **state)
{
    S = calloc(1, sizeof(*S));
    if (!find_standin(S->bin, sizeof(S->bin))) {
        free(S);
        S = NULL;
        return 0;
    }
    uv_loop_init(&S->loop);
    S->dir = tu_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    if (!S)
        return 0;
    if (S->vmm && ch_vmm_alive(S->vmm))
        kill(-ch_vmm_pid(S->vmm), SIGKILL);
    if (S->vmm && ch_vmm_alive(S->vmm))
        tu_run_until(&S->loop, &S->exited, 3000);
    ch_vmm_free(S->vmm);
    assert_int_equal(tu_drain_loop(&S->loop), 0);
    tu_rmrf(S->dir);
    free(S->dir);
    free(S);
    return 0;
}

#define NEED_STANDIN()                                                                             \
    do {                                                                                           \
        if (!S) {                                                                                  \
            print_message("stand-in binary not built: skipped\n");                                 \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void write_file(const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", S->dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void spawn(bool expect_ready)
{
    ch_spawn_opts o = {.binary = S->bin, .dir = S->dir, .vm_id = "vm-s", .no_shutdown = true};
    chcp_error *err = NULL;
    S->vmm = ch_vmm_spawn(&S->loop, &o, &cbs, S, &err);
    assert_null(err);
    assert_non_null(S->vmm);
    assert_true(tu_run_until(&S->loop, &S->ready, 5000));
    if (expect_ready)
        assert_int_equal(S->ready_code, CHCP_OK);
}

static void call_json(const char *endpoint, const char *body, const int *fds, size_t nfds,
                      uint64_t timeout)
{
    chcp_error *err = NULL;
    S->done = false;
    assert_int_equal(ch_vmm_call(S->vmm, endpoint, body, fds, nfds, timeout, on_resp, S, &err), 0);
    assert_true(tu_run_until(&S->loop, &S->done, 10000));
}

static void call(const char *endpoint)
{
    call_json(endpoint, NULL, NULL, 0, 0);
}

static ch_vm_state info_state(void)
{
    call("vm.info");
    assert_int_equal(S->code, CHCP_OK);
    ch_vm_info info;
    assert_int_equal(ch_parse_vm_info(S->body, strlen(S->body), &info, NULL), 0);
    return info.state;
}

static bool saw_event(const char *name)
{
    for (int i = 0; i < S->n_events; i++)
        if (strcmp(S->events[i], name) == 0)
            return true;
    return false;
}

static void wait_event(const char *name)
{
    for (int i = 0; i < 400 && !saw_event(name); i++)
        uv_run(&S->loop, UV_RUN_NOWAIT), usleep(5000);
    if (!saw_event(name))
        fail_msg("event %s never came", name);
}

static void create_vm(const char *cmdline)
{
    write_file("vmlinux", "not really a kernel\n");
    write_file("disk.raw", "disk\n");
    char kernel[4200], disk[4200];
    snprintf(kernel, sizeof(kernel), "%s/vmlinux", S->dir);
    snprintf(disk, sizeof(disk), "%s/disk.raw", S->dir);
    ch_disk_config d = {.path = disk, .image_type = "Raw"};
    ch_vm_config c = {.payload = {.kernel = kernel, .cmdline = cmdline},
                      .cpus = {.boot_vcpus = 2, .max_vcpus = 2},
                      .memory = {.size = 256ull << 20},
                      .disks = &d,
                      .n_disks = 1,
                      .serial = {.mode = CH_CONSOLE_NULL},
                      .console = {.mode = CH_CONSOLE_OFF}};
    chcp_error *err = NULL;
    S->done = false;
    assert_int_equal(ch_vmm_create(S->vmm, &c, 0, on_resp, S, &err), 0);
    assert_true(tu_run_until(&S->loop, &S->done, 5000));
    if (S->code != CHCP_OK)
        fail_msg("vm.create: %s", S->msg);
}

static void test_lifecycle(void **state)
{
    NEED_STANDIN();
    spawn(true);
    ch_ping_info ping;
    assert_int_equal(ch_parse_ping(S->ping, strlen(S->ping), &ping, NULL), 0);
    assert_int_equal(ping.pid, ch_vmm_pid(S->vmm));
    assert_true(ping.version[0] != 0);

    call("vm.info");
    assert_int_equal(S->code, CHCP_FAILED_PRECONDITION);
    assert_string_equal(S->msg, "Error from API: The VM info is not available: VM is not created");

    create_vm("console=hvc0");
    assert_int_equal(info_state(), CH_VM_STATE_CREATED);
    call("vm.boot");
    assert_int_equal(S->status, 204);
    wait_event("vm/booted");
    assert_int_equal(info_state(), CH_VM_STATE_RUNNING);

    call("vm.pause");
    assert_int_equal(S->code, CHCP_OK);
    assert_int_equal(info_state(), CH_VM_STATE_PAUSED);
    call("vm.pause"); /* pausing twice fails, whatever the status code */
    assert_int_equal(S->code, CHCP_FAILED_PRECONDITION);
    assert_true(strncmp(S->msg, "Error from API", 14) == 0);
    call("vm.resume");
    assert_int_equal(S->code, CHCP_OK);
    assert_int_equal(info_state(), CH_VM_STATE_RUNNING);

    call("vm.reboot");
    assert_int_equal(S->code, CHCP_OK);
    wait_event("vm/rebooted");

    /* ACPI power button: the guest powers off; with --no-shutdown the VMM
     * stays and the VM can boot again. */
    call("vm.power-button");
    assert_int_equal(S->code, CHCP_OK);
    wait_event("vm/shutdown");
    assert_true(ch_vmm_alive(S->vmm));
    ch_vm_state st = info_state();
    assert_true(st == CH_VM_STATE_CREATED || st == CH_VM_STATE_SHUTDOWN);
    call("vm.boot");
    assert_int_equal(S->code, CHCP_OK);
    call("vm.shutdown");
    assert_int_equal(S->code, CHCP_OK);
    call("vm.delete");
    assert_int_equal(S->status, 204);
    call("vm.info");
    assert_int_equal(S->code, CHCP_FAILED_PRECONDITION);

    chcp_error *err = NULL;
    assert_int_equal(ch_vmm_stop(S->vmm, 2000, &err), 0);
    assert_true(tu_run_until(&S->loop, &S->exited, 5000));
    assert_int_equal(S->exit.status, 0);
    assert_true(saw_event("vmm/shutdown"));
    assert_string_equal(S->events[0], "vmm/starting");
}

/* TAP fds for vm.add-net travel by SCM_RIGHTS; the VMM records them. */
static void test_add_net_with_fds(void **state)
{
    NEED_STANDIN();
    spawn(true);
    create_vm(NULL);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    ch_net_config net = {.mac = "52:54:00:12:34:56", .id = "net7"};
    chcp_error *err = NULL;
    S->done = false;
    assert_int_equal(ch_vmm_add_net(S->vmm, &net, &p[0], 1, 0, on_resp, S, &err), 0);
    close(p[0]);
    close(p[1]);
    assert_true(tu_run_until(&S->loop, &S->done, 5000));
    if (S->code != CHCP_OK)
        fail_msg("vm.add-net: %s", S->msg);
    call("vm.info");
    json_t *info = json_loads(S->body, 0, NULL);
    json_t *n0 = json_array_get(json_object_get(json_object_get(info, "config"), "net"), 0);
    assert_string_equal(json_string_value(json_object_get(n0, "id")), "net7");
    assert_int_equal(json_array_size(json_object_get(n0, "fds")), 1);
    json_decref(info);
}

static void test_no_kvm_start_failure(void **state)
{
    NEED_STANDIN();
    write_file("standin-faults", "no_kvm=1\n");
    spawn(false);
    assert_int_equal(S->ready_code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(S->ready_msg, "exited with status 1 before becoming ready"));
    assert_non_null(strstr(S->ready_msg, "no supported hypervisor"));
    assert_true(tu_run_until(&S->loop, &S->exited, 5000));
    assert_int_equal(S->exit.status, 1);
}

/* A VMM stuck in vm.boot: the call times out, and since CH's API is
 * serialised so does everything behind it; stop escalates to signals. */
static void test_hung_vmm(void **state)
{
    NEED_STANDIN();
    spawn(true);
    create_vm("standin.hang_on=boot");
    call_json("vm.boot", NULL, NULL, 0, 300);
    assert_int_equal(S->code, CHCP_DEADLINE_EXCEEDED);
    call_json("vmm.ping", NULL, NULL, 0, 300);
    assert_int_equal(S->code, CHCP_DEADLINE_EXCEEDED);
    chcp_error *err = NULL;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(ch_vmm_stop(S->vmm, 200, &err), 0);
    assert_true(tu_run_until(&S->loop, &S->exited, 5000));
    /* Like CH, its SIGTERM handling goes through the stuck control loop:
     * only SIGKILL (after vmm.shutdown and SIGTERM had their grace) ends it. */
    assert_int_equal(S->exit.signal, SIGKILL);
    assert_true(uv_hrtime() - t0 >= 390 * 1000000ull);
}

static void test_crash_mid_call(void **state)
{
    NEED_STANDIN();
    spawn(true);
    create_vm("standin.crash_on=boot");
    call("vm.boot");
    assert_int_equal(S->code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(S->msg, "killed by signal 6"));
    assert_true(tu_run_until(&S->loop, &S->exited, 5000));
    assert_int_equal(S->exit.signal, SIGABRT);
}

int main(void)
{
    log_set_level(LOG_ERROR); /* lifecycle log lines would clutter the report */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_net_with_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_kvm_start_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hung_vmm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_mid_call, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
