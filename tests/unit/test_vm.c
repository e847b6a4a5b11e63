/*
 * test_vm.c - the VM manager's state machine against a fake backend: every
 * operation in every state, serialisation on one VM, failures of each VMM
 * step, deletion from anywhere (also mid-operation), crashes, guest events,
 * GetVmInfo refreshes, listing and limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <malloc.h>

#include "test_vm_util.h"

/* ---- the state x operation table --------------------------------------------------- */

#define OK_ CHCP_OK
#define FP_ CHCP_FAILED_PRECONDITION
#define SAME 0

typedef struct cell {
    chcp_code code;
    vm_state after; /* SAME = unchanged */
} cell;

static const vm_state table_states[] = {VM_CREATED,  VM_RUNNING, VM_PAUSED,
                                        VM_SHUTDOWN, VM_FAILED,  VM_CRASHED};
static const vm_op_kind table_ops[] = {VM_OP_BOOT,   VM_OP_PAUSE,    VM_OP_RESUME,
                                       VM_OP_REBOOT, VM_OP_SHUTDOWN, VM_OP_INFO};
/* rows: states above; columns: ops above (DeleteVm is tested separately). */
static const cell table[6][6] = {
    /* CREATED */
    {{OK_, VM_RUNNING}, {FP_, SAME}, {FP_, SAME}, {FP_, SAME}, {OK_, SAME}, {OK_, SAME}},
    /* RUNNING */
    {{OK_, SAME},
     {OK_, VM_PAUSED},
     {OK_, SAME},
     {OK_, VM_RUNNING},
     {OK_, VM_SHUTDOWN},
     {OK_, SAME}},
    /* PAUSED */
    {{FP_, SAME},
     {OK_, SAME},
     {OK_, VM_RUNNING},
     {OK_, VM_RUNNING},
     {OK_, VM_SHUTDOWN},
     {OK_, SAME}},
    /* SHUTDOWN */
    {{OK_, VM_RUNNING}, {FP_, SAME}, {FP_, SAME}, {FP_, SAME}, {OK_, SAME}, {OK_, SAME}},
    /* FAILED */
    {{FP_, SAME}, {FP_, SAME}, {FP_, SAME}, {FP_, SAME}, {FP_, SAME}, {OK_, SAME}},
    /* CRASHED */
    {{FP_, SAME}, {FP_, SAME}, {FP_, SAME}, {FP_, SAME}, {FP_, SAME}, {OK_, SAME}},
};

static void test_state_table(void **state)
{
    tctx *t = *state;
    start_manager(t);
    for (size_t s = 0; s < ARRAY_SIZE(table_states); s++) {
        for (size_t o = 0; o < ARRAY_SIZE(table_ops); o++) {
            char id[32];
            snprintf(id, sizeof(id), "vm-%zu-%zu", s, o);
            reach(t, id, table_states[s]);
            int before[VMB_INFO + 1];
            memcpy(before, t->fb.requests, sizeof(before));
            op_result r = run_op(t, table_ops[o], id, &force);
            cell c = table[s][o];
            if (r.code != c.code)
                fail_msg("%s in %s: got %s (%s), want %s", id, vm_state_name(table_states[s]),
                         code_name(r.code), r.msg, code_name(c.code));
            vm_state want = c.after == SAME ? table_states[s] : c.after;
            assert_int_equal(state_of(t, id), want);
            assert_true(r.has_vm);
            assert_int_equal(r.state, want);
            if (c.code == FP_) {
                /* names the current state, and the VMM was not asked */
                assert_non_null(strstr(r.msg, vm_state_name(table_states[s])));
                assert_memory_equal(before, t->fb.requests, sizeof(before));
            }
            /* DeleteVm works from every state and removes everything. */
            op_result d = run_op(t, VM_OP_DELETE, id, NULL);
            assert_int_equal(d.code, CHCP_OK);
            assert_false(d.has_vm);
            assert_null(vm_manager_find(t->m, id));
            assert_false(dir_exists(t, id));
        }
    }
    assert_int_equal(t->fb.live, 0);
    assert_int_equal(run_op(t, VM_OP_BOOT, "nope", NULL).code, CHCP_NOT_FOUND);
    assert_int_equal(run_op(t, VM_OP_DELETE, "nope", NULL).code, CHCP_NOT_FOUND);
    assert_int_equal(run_op(t, VM_OP_INFO, "Bad_Id", NULL).code, CHCP_INVALID_ARGUMENT);
}

/* Transitional states: calls queue behind the running operation (GetVmInfo
 * answers at once with the transitional state), then the row of the state
 * it ends in applies; during DELETING everything but GetVmInfo is refused. */
static void test_transitional_states(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_CREATED);
    t->fb.mode[VMB_BOOT] = FAKE_HANG;
    op_result boot = {0};
    vm_op_submit(t->m, VM_OP_BOOT, "a", NULL, op_result_cb, &boot, NULL);
    tv_spin(&t->loop, 5);
    assert_int_equal(state_of(t, "a"), VM_BOOTING);
    t->fb.mode[VMB_BOOT] = FAKE_OK;
    vm_op_kind kinds[] = {VM_OP_BOOT, VM_OP_PAUSE, VM_OP_RESUME, VM_OP_REBOOT};
    vm_state want[] = {VM_RUNNING, VM_PAUSED, VM_RUNNING, VM_RUNNING};
    op_result r[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_non_null(vm_op_submit(t->m, kinds[i], "a", NULL, op_result_cb, &r[i], NULL));
    op_result info = run_op(t, VM_OP_INFO, "a", NULL);
    assert_int_equal(info.state, VM_BOOTING);
    assert_false(r[0].done);
    fake_unhang(t->fb.last);
    assert_true(tv_run_until(&t->loop, &r[3].done, 1000));
    assert_int_equal(boot.code, CHCP_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].code, CHCP_OK);
        assert_int_equal(r[i].state, want[i]);
    }
    /* SHUTTING_DOWN: the guest ignores the button; a queued boot runs after */
    op_result sd = {0}, b2 = {0};
    vm_op_params grace = {.graceful_ms = 60000, .graceful_ms_set = true};
    vm_op_submit(t->m, VM_OP_SHUTDOWN, "a", &grace, op_result_cb, &sd, NULL);
    vm_op_submit(t->m, VM_OP_BOOT, "a", NULL, op_result_cb, &b2, NULL);
    tv_spin(&t->loop, 5);
    assert_int_equal(state_of(t, "a"), VM_SHUTTING_DOWN);
    assert_int_equal(run_op(t, VM_OP_INFO, "a", NULL).state, VM_SHUTTING_DOWN);
    strcpy(t->fb.last->ch_state, "Created"); /* the guest got there */
    t->fb.last->cb->on_event(t->fb.last->cb_ud, "vm", "shutdown");
    assert_true(tv_run_until(&t->loop, &b2.done, 1000));
    assert_int_equal(sd.code, CHCP_OK);
    assert_int_equal(sd.state, VM_SHUTDOWN);
    assert_int_equal(b2.state, VM_RUNNING);
    /* DELETING */
    t->fb.mode[VMB_PAUSE] = FAKE_HANG;
    op_result p = {0}, d = {0};
    vm_op_submit(t->m, VM_OP_PAUSE, "a", NULL, op_result_cb, &p, NULL);
    tv_spin(&t->loop, 2);
    vm_op_submit(t->m, VM_OP_DELETE, "a", NULL, op_result_cb, &d, NULL);
    assert_int_equal(state_of(t, "a"), VM_DELETING);
    vm_op_kind all[] = {VM_OP_BOOT, VM_OP_PAUSE, VM_OP_RESUME, VM_OP_REBOOT, VM_OP_SHUTDOWN};
    for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
        op_result x = run_op(t, all[i], "a", NULL);
        assert_int_equal(x.code, CHCP_FAILED_PRECONDITION);
        assert_non_null(strstr(x.msg, "DELETING"));
    }
    cfgbuf b;
    cfg_init(&b, t);
    assert_int_equal(create_cfg(t, "a", &b.c, NULL, 0).code, CHCP_ABORTED);
    assert_true(tv_run_until(&t->loop, &d.done, 1000));
    assert_int_equal(d.code, CHCP_OK);
    assert_int_equal(p.code, CHCP_ABORTED);
}

/* ---- CreateVm ----------------------------------------------------------------------- */

static void test_create_basics(void **state)
{
    tctx *t = *state;
    start_manager(t);
    op_result r = create(t, "web-1");
    assert_int_equal(r.code, CHCP_OK);
    assert_int_equal(r.state, VM_CREATED);
    const vm_record *rec = vm_manager_find(t->m, "web-1");
    assert_int_equal(rec->vmm_pid, 1001);
    assert_true(dir_exists(t, "web-1"));
    struct stat st;
    assert_int_equal(stat(rec->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* the VMM JSON: the kernel's staged link in the VM dir (images.c), the
     * console file in the VM dir */
    char want[300];
    snprintf(want, sizeof(want), "\"kernel\":\"%s/images/kernel\"", rec->dir);
    assert_non_null(strstr(rec->vmm_config_json, want));
    assert_null(strstr(rec->vmm_config_json, t->kernel));
    snprintf(want, sizeof(want), "\"file\":\"%s/console.log\"", rec->dir);
    assert_non_null(strstr(rec->vmm_config_json, want));
    assert_non_null(strstr(rec->vmm_config_json, "\"boot_vcpus\":2"));

    /* same id, same config: the existing VM; different: already_exists */
    r = create(t, "web-1");
    assert_int_equal(r.code, CHCP_OK);
    assert_int_equal(t->fb.starts, 1);
    cfgbuf b;
    cfg_init(&b, t);
    b.mem.size = 128ull << 20;
    r = create_cfg(t, "web-1", &b.c, NULL, 0);
    assert_int_equal(r.code, CHCP_ALREADY_EXISTS);
    vm_label l = {"env", "prod"};
    cfg_init(&b, t);
    assert_int_equal(create_cfg(t, "web-1", &b.c, &l, 1).code, CHCP_ALREADY_EXISTS);

    /* generated ids */
    r = create(t, NULL);
    assert_int_equal(r.code, CHCP_OK);
    assert_int_equal(strlen(r.id), 15);
    assert_true(strncmp(r.id, "vm-", 3) == 0);
    assert_int_equal(vm_manager_count(t->m), 2);
}

static void test_create_failures_are_atomic(void **state)
{
    tctx *t = *state;
    start_manager(t);
    /* VMM exits before answering its ping: unavailable with its stderr */
    t->fb.start_mode = FAKE_FAIL;
    op_result r = create(t, "a");
    assert_int_equal(r.code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(r.msg, "fake stderr tail"));
    assert_false(r.has_vm);
    assert_null(vm_manager_find(t->m, "a"));
    assert_false(dir_exists(t, "a"));
    assert_int_equal(t->fb.live, 0);
    /* vm.create refused: internal with the VMM's message; nothing kept */
    t->fb.start_mode = FAKE_OK;
    t->fb.mode[VMB_CREATE] = FAKE_FAIL;
    r = create(t, "a");
    assert_int_equal(r.code, CHCP_INTERNAL);
    assert_non_null(strstr(r.msg, "fake failure"));
    assert_null(vm_manager_find(t->m, "a"));
    assert_false(dir_exists(t, "a"));
    assert_int_equal(t->fb.live, 0);
    assert_int_equal(t->fb.stops, 2);
    /* nothing could be started at all: still answered after the call */
    t->fb.mode[VMB_CREATE] = FAKE_OK;
    t->fb.start_mode = FAKE_SYNC_FAIL;
    r = create(t, "a");
    assert_int_equal(r.code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(r.msg, "fork: fake failure"));
    assert_null(vm_manager_find(t->m, "a"));
    assert_false(dir_exists(t, "a"));
    t->fb.start_mode = FAKE_OK;
    /* and the id is free again */
    t->fb.mode[VMB_CREATE] = FAKE_OK;
    assert_int_equal(create(t, "a").code, CHCP_OK);
}

static void expect_invalid(tctx *t, cfgbuf *b, chcp_code code, const char *field)
{
    op_result r = create_cfg(t, "bad", &b->c, NULL, 0);
    if (r.code != code || !strstr(r.msg, field))
        fail_msg("want %s naming %s, got %s: %s", code_name(code), field, code_name(r.code), r.msg);
    assert_null(vm_manager_find(t->m, "bad"));
    cfg_init(b, t);
}

static void test_validation(void **state)
{
    tctx *t = *state;
    start_manager(t);
    const char *bad_ids[] = {
        "-a", "A",   "a_b", "a/b",
        "..", "a.b", "",    "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
        chcp_error *err = NULL;
        if (!bad_ids[i][0])
            continue; /* empty = generated */
        assert_int_equal(vm_validate_id(bad_ids[i], &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        assert_non_null(strstr(err->message, "vm_id"));
        error_free(err);
    }
    assert_int_equal(vm_validate_id("0abc-def", NULL), 0);
    assert_int_equal(vm_validate_id("a-", NULL), 0);

    cfgbuf b;
    cfg_init(&b, t);
    assert_int_equal(create_cfg(t, "bad", NULL, NULL, 0).code, CHCP_INVALID_ARGUMENT);
    b.c.payload = NULL;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.payload");
    char fw[256];
    snprintf(fw, sizeof(fw), "%s/fw.bin", t->image_dir);
    b.p.firmware = fw;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "mutually exclusive");
    b.p.kernel = "";
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.payload");
    b.mem.size = 0;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.memory.size");
    b.mem.size = 4097;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.memory.size");
    b.mem.size = 1ull << 50;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "CHCP_MAX_MEMORY_MIB");
    b.mem.size = UINT64_MAX - 4095;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.memory");
    b.cpus.boot_vcpus = 0;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.cpus.boot_vcpus");
    b.cpus.boot_vcpus = 4;
    b.cpus.max_vcpus = 2;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.cpus.max_vcpus");
    b.cpus.boot_vcpus = 4000000000u;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "CHCP_MAX_VCPUS");
    b.p.kernel = "/etc/passwd";
    expect_invalid(t, &b, CHCP_PERMISSION_DENIED, "config.payload.kernel");
    char esc[256];
    snprintf(esc, sizeof(esc), "%s/escape", t->image_dir);
    b.p.kernel = esc;
    expect_invalid(t, &b, CHCP_PERMISSION_DENIED, "outside the image directories");
    char dots[256];
    snprintf(dots, sizeof(dots), "%s/../../etc/passwd", t->image_dir);
    b.p.kernel = dots;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.payload.kernel");
    char missing[256];
    snprintf(missing, sizeof(missing), "%s/missing", t->image_dir);
    b.p.kernel = missing;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.payload.kernel");
    b.p.kernel = "relative";
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.payload.kernel");
    b.disk.path = "/dev/sda";
    b.disks[0] = &b.disk;
    b.c.disks = b.disks;
    b.c.n_disks = 1;
    expect_invalid(t, &b, CHCP_PERMISSION_DENIED, "config.disks[0].path");
    b.console.mode = CLOUDHYPERVISOR__V1__CONSOLE_MODE__CONSOLE_MODE_FILE;
    b.console.file = "/tmp/x";
    b.c.console = &b.console;
    expect_invalid(t, &b, CHCP_INVALID_ARGUMENT, "config.console");
    vm_label l[2] = {{"k", "v"}, {"k", "w"}};
    cfg_init(&b, t);
    assert_int_equal(create_cfg(t, "bad", &b.c, l, 2).code, CHCP_INVALID_ARGUMENT);
    vm_label ctl = {"k\n", "v"};
    assert_int_equal(create_cfg(t, "bad", &b.c, &ctl, 1).code, CHCP_INVALID_ARGUMENT);
    assert_int_equal(vm_manager_count(t->m), 0);
    assert_int_equal(t->fb.starts, 0);
}

/* Labels (and other client text) hold printable characters only; the error
 * names the field, the code point, what it is and where. */
static void test_label_text(void **state)
{
    tctx *t = *state;
    start_manager(t);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"a\tb", "U+0009 (a control character) at byte 1"},
        {"x\x7f", "U+007F (a control character)"},
        {"\xc2\x85next-line", "U+0085 (a control character) at byte 0"}, /* C1 NEL */
        {"\xc2\x9b", "U+009B (a control character)"},                    /* C1 CSI */
        {"evil\xe2\x80\xaegpj.exe", "U+202E (a bidirectional formatting character)"},
        {"\xe2\x81\xa6iso", "U+2066 (a bidirectional formatting character)"},
        {"\xe2\x80\x8f", "U+200F (a bidirectional formatting character)"}, /* RLM */
        {"zero\xe2\x80\x8bwidth", "U+200B (an invisible"},
        {"join\xe2\x80\x8d", "U+200D (an invisible"},
        {"\xef\xbb\xbf"
         "bom",
         "U+FEFF (an invisible"},
        {"soft\xc2\xadhyphen", "U+00AD (an invisible"},
        {"tag\xf3\xa0\x80\x81", "U+E0001 (an invisible"},
        {"line\xe2\x80\xa8sep", "U+2028 (a line or paragraph separator)"},
        {"\xee\x80\x80", "U+E000 (a private-use character)"},
        {"\xef\xbf\xbf", "U+FFFF (an unassigned code point or noncharacter)"},
        {"\xc0\xaf", "not valid UTF-8 (byte 0)"},       /* overlong '/' */
        {"ok\xed\xa0\x80", "not valid UTF-8 (byte 2)"}, /* surrogate */
        {"\xf4\x90\x80\x80", "not valid UTF-8"},        /* > U+10FFFF */
        {"\xf5\x80\x80\x80", "not valid UTF-8"},
        {"cut\xe2\x82", "not valid UTF-8 (byte 3)"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        chcp_error *err = NULL;
        vm_label v = {"k", (char *)bad[i].text};
        assert_int_equal(vm_validate_labels(&v, 1, "labels", &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        if (!strstr(err->message, bad[i].want) ||
            !str_has_prefix(err->message, "labels[k]: the value"))
            fail_msg("label value #%zu: want \"%s\", got \"%s\"", i, bad[i].want, err->message);
        error_free(err);
        err = NULL;
        vm_label k = {(char *)bad[i].text, "v"};
        assert_int_equal(vm_validate_labels(&k, 1, "labels", &err), -1);
        if (!strstr(err->message, bad[i].want) || !str_has_prefix(err->message, "labels: a key"))
            fail_msg("label key #%zu: want \"%s\", got \"%s\"", i, bad[i].want, err->message);
        error_free(err);
    }
    /* printable text from any script is fine, spaces too */
    vm_label good[] = {{"team", "Zürich ops"},
                       {"名前", "値"},
                       {"emoji", "\xf0\x9f\x9a\x80"},
                       {"rtl", "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d"},
                       {"empty", ""}};
    assert_int_equal(vm_validate_labels(good, ARRAY_SIZE(good), "labels", NULL), 0);
    /* lengths are in bytes, and empty keys are named */
    chcp_error *err = NULL;
    char key[65];
    memset(key, 'k', 64);
    key[64] = 0;
    vm_label longk = {key, "v"};
    assert_int_equal(vm_validate_labels(&longk, 1, "labels", &err), -1);
    assert_non_null(strstr(err->message, "64 bytes long, at most 63"));
    error_free(err);
    err = NULL;
    vm_label emptyk = {"", "v"};
    assert_int_equal(vm_validate_labels(&emptyk, 1, "labels", &err), -1);
    assert_non_null(strstr(err->message, "keys must not be empty"));
    error_free(err);
    /* the same rules for the other client text */
    cfgbuf b;
    cfg_init(&b, t);
    b.p.cmdline = "console=hvc0 \xe2\x80\xae";
    op_result r = create_cfg(t, "bad", &b.c, NULL, 0);
    assert_int_equal(r.code, CHCP_INVALID_ARGUMENT);
    assert_non_null(strstr(r.msg, "config.payload.cmdline: contains U+202E"));
    assert_int_equal(vm_manager_count(t->m), 0);
    assert_int_equal(t->fb.starts, 0);
}

static void test_no_image_dirs(void **state)
{
    tctx *t = *state;
    vm_manager_config cfg = {.state_dir = t->state_dir, .max_vcpus = 2, .max_memory_mib = 512};
    chcp_error *err = NULL;
    t->m = vm_manager_new(&t->loop, &cfg, &fake_ops, &t->fb, &err);
    assert_non_null(t->m);
    op_result r = create(t, "a");
    assert_int_equal(r.code, CHCP_PERMISSION_DENIED);
    assert_non_null(strstr(r.msg, "CHCP_IMAGE_DIRS"));
}

/* ---- BootVm failures ---------------------------------------------------------------- */

static void test_boot_failure(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_CREATED);
    reach(t, "b", VM_SHUTDOWN);
    /* vm.boot refused and nothing kept: back to CREATED */
    t->fb.mode[VMB_BOOT] = FAKE_FAIL;
    op_result r = run_op(t, VM_OP_BOOT, "a", NULL);
    assert_int_equal(r.code, CHCP_INTERNAL);
    assert_non_null(strstr(r.msg, "vm.boot"));
    assert_int_equal(state_of(t, "a"), VM_CREATED);
    /* ... from SHUTDOWN back to SHUTDOWN */
    r = run_op(t, VM_OP_BOOT, "b", NULL);
    assert_int_equal(r.code, CHCP_INTERNAL);
    assert_int_equal(state_of(t, "b"), VM_SHUTDOWN);
    /* VMM unreachable for vm.info too: FAILED with the reason */
    t->fb.mode[VMB_INFO] = FAKE_UNAVAILABLE;
    r = run_op(t, VM_OP_BOOT, "a", NULL);
    assert_int_equal(state_of(t, "a"), VM_FAILED);
    assert_non_null(strstr(vm_manager_find(t->m, "a")->state_reason, "boot failed"));
}

/* ---- ShutdownVm ------------------------------------------------------------------------- */

static void test_shutdown_graceful(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    /* the guest reacts to the power button: no forced vm.shutdown */
    t->fb.emit_shutdown_on_power_button = true;
    op_result r = run_op(t, VM_OP_SHUTDOWN, "a", NULL);
    assert_int_equal(r.code, CHCP_OK);
    assert_int_equal(r.state, VM_SHUTDOWN);
    assert_int_equal(t->fb.requests[VMB_POWER_BUTTON], 1);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 0);
    /* the guest ignores it: forced after the grace period */
    t->fb.emit_shutdown_on_power_button = false;
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_OK);
    vm_op_params p = {.graceful_ms = 50, .graceful_ms_set = true};
    uint64_t t0 = uv_now(&t->loop);
    r = run_op(t, VM_OP_SHUTDOWN, "a", &p);
    assert_int_equal(r.code, CHCP_OK);
    assert_true(uv_now(&t->loop) - t0 >= 45);
    assert_int_equal(t->fb.requests[VMB_POWER_BUTTON], 2);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 1);
    /* paused: straight to vm.shutdown */
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_OK);
    assert_int_equal(run_op(t, VM_OP_PAUSE, "a", NULL).code, CHCP_OK);
    assert_int_equal(run_op(t, VM_OP_SHUTDOWN, "a", NULL).code, CHCP_OK);
    assert_int_equal(t->fb.requests[VMB_POWER_BUTTON], 2);
    assert_int_equal(t->fb.requests[VMB_SHUTDOWN], 2);
    /* the late vm/shutdown event of a forced shutdown does not stop the next boot */
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_OK);
    t->fb.last->cb->on_event(t->fb.last->cb_ud, "vm", "shutdown");
    assert_int_equal(state_of(t, "a"), VM_RUNNING);
}

/* ---- serialisation, deadlines, cancel -------------------------------------------------- */

static void test_serialised(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    reach(t, "b", VM_RUNNING);
    op_result r[4] = {0};
    vm_op_kind seq[4] = {VM_OP_PAUSE, VM_OP_RESUME, VM_OP_PAUSE, VM_OP_RESUME};
    for (int i = 0; i < 4; i++)
        assert_non_null(vm_op_submit(t->m, seq[i], "a", NULL, op_result_cb, &r[i], NULL));
    assert_true(tv_run_until(&t->loop, &r[3].done, 2000));
    for (int i = 0; i < 4; i++) {
        assert_true(r[i].done);
        assert_int_equal(r[i].code, CHCP_OK);
        assert_int_equal(r[i].state, i % 2 ? VM_RUNNING : VM_PAUSED);
    }
    assert_int_equal(t->fb.requests[VMB_PAUSE], 2);
    /* a hung pause holds the queue; a waiting op times out at its deadline,
     * another is cancelled, and VM b is not affected */
    t->fb.mode[VMB_PAUSE] = FAKE_HANG;
    op_result hung = {0}, late = {0}, canceled = {0};
    vm_op_submit(t->m, VM_OP_PAUSE, "a", NULL, op_result_cb, &hung, NULL);
    vm_op_params dl = {.deadline_ns = time_mono_ns() + 50 * 1000000ull};
    vm_op_submit(t->m, VM_OP_RESUME, "a", &dl, op_result_cb, &late, NULL);
    vm_op *c = vm_op_submit(t->m, VM_OP_REBOOT, "a", NULL, op_result_cb, &canceled, NULL);
    vm_op_cancel(c);
    assert_false(canceled.done);
    assert_true(tv_run_until(&t->loop, &late.done, 1000));
    assert_int_equal(late.code, CHCP_DEADLINE_EXCEEDED);
    assert_true(canceled.done);
    assert_int_equal(canceled.code, CHCP_CANCELED);
    assert_false(hung.done);
    assert_int_equal(run_op(t, VM_OP_REBOOT, "b", NULL).code, CHCP_OK);
    /* deleting finishes the hung op (aborted) */
    op_result d = run_op(t, VM_OP_DELETE, "a", NULL);
    assert_int_equal(d.code, CHCP_OK);
    assert_true(hung.done);
    assert_int_equal(hung.code, CHCP_ABORTED);
}

static void test_delete_mid_operation(void **state)
{
    tctx *t = *state;
    start_manager(t);
    /* mid-boot, with a second DeleteVm and a queued op waiting */
    reach(t, "a", VM_CREATED);
    t->fb.mode[VMB_BOOT] = FAKE_HANG;
    op_result boot = {0}, queued = {0}, d1 = {0}, d2 = {0};
    vm_op_submit(t->m, VM_OP_BOOT, "a", NULL, op_result_cb, &boot, NULL);
    vm_op_submit(t->m, VM_OP_PAUSE, "a", NULL, op_result_cb, &queued, NULL);
    tv_spin(&t->loop, 5);
    assert_int_equal(state_of(t, "a"), VM_BOOTING);
    vm_op_submit(t->m, VM_OP_DELETE, "a", NULL, op_result_cb, &d1, NULL);
    assert_int_equal(state_of(t, "a"), VM_DELETING);
    vm_op_submit(t->m, VM_OP_DELETE, "a", NULL, op_result_cb, &d2, NULL);
    assert_true(tv_run_until(&t->loop, &d2.done, 2000));
    assert_true(d1.done && boot.done && queued.done);
    assert_int_equal(d1.code, CHCP_OK);
    assert_int_equal(d2.code, CHCP_OK);
    assert_int_equal(boot.code, CHCP_ABORTED);
    assert_int_equal(queued.code, CHCP_ABORTED);
    assert_null(vm_manager_find(t->m, "a"));
    assert_false(dir_exists(t, "a"));
    /* mid-create (VMM never becomes ready) */
    t->fb.start_mode = FAKE_HANG;
    op_result cr = {0}, d3 = {0};
    cfgbuf b;
    cfg_init(&b, t);
    vm_op_create(t->m, "c", &b.c, NULL, 0, NULL, op_result_cb, &cr, NULL);
    tv_spin(&t->loop, 5);
    assert_int_equal(state_of(t, "c"), VM_CREATING);
    vm_op_submit(t->m, VM_OP_DELETE, "c", NULL, op_result_cb, &d3, NULL);
    assert_true(tv_run_until(&t->loop, &d3.done, 2000));
    assert_int_equal(d3.code, CHCP_OK);
    assert_true(cr.done);
    assert_int_not_equal(cr.code, CHCP_OK);
    assert_false(dir_exists(t, "c"));
    /* mid graceful shutdown */
    t->fb.start_mode = FAKE_OK;
    t->fb.mode[VMB_BOOT] = FAKE_OK;
    reach(t, "d", VM_RUNNING);
    op_result sd = {0}, d4 = {0};
    vm_op_submit(t->m, VM_OP_SHUTDOWN, "d", NULL, op_result_cb, &sd, NULL);
    tv_spin(&t->loop, 5);
    assert_int_equal(state_of(t, "d"), VM_SHUTTING_DOWN);
    vm_op_submit(t->m, VM_OP_DELETE, "d", NULL, op_result_cb, &d4, NULL);
    assert_true(tv_run_until(&t->loop, &d4.done, 2000));
    assert_int_equal(sd.code, CHCP_ABORTED);
    assert_int_equal(t->fb.live, 0);
}

/* ---- crashes and guest events ------------------------------------------------------------- */

static void test_crash(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    fake_exit(t->fb.last, -1, 9);
    const vm_record *rec = vm_manager_find(t->m, "a");
    assert_int_equal(rec->state, VM_CRASHED);
    assert_true(rec->has_exit);
    assert_int_equal(rec->exit_signal, 9);
    assert_int_equal(rec->vmm_pid, 0);
    assert_non_null(strstr(rec->state_reason, "signal 9"));
    /* a pending call fails with unavailable and the exit reason */
    reach(t, "b", VM_RUNNING);
    t->fb.mode[VMB_PAUSE] = FAKE_HANG;
    op_result p = {0};
    vm_op_submit(t->m, VM_OP_PAUSE, "b", NULL, op_result_cb, &p, NULL);
    tv_spin(&t->loop, 5);
    fake_exit(t->fb.last, 3, 0);
    assert_true(tv_run_until(&t->loop, &p.done, 1000));
    assert_int_equal(p.code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(p.msg, "exited with code 3"));
    assert_int_equal(state_of(t, "b"), VM_CRASHED);
    /* a graceful shutdown waiting for the guest */
    t->fb.mode[VMB_PAUSE] = FAKE_OK;
    reach(t, "c", VM_RUNNING);
    op_result sd = {0};
    vm_op_submit(t->m, VM_OP_SHUTDOWN, "c", NULL, op_result_cb, &sd, NULL);
    tv_spin(&t->loop, 5);
    fake_exit(t->fb.last, 1, 0);
    assert_true(tv_run_until(&t->loop, &sd.done, 1000));
    assert_int_equal(sd.code, CHCP_UNAVAILABLE);
    assert_int_equal(state_of(t, "c"), VM_CRASHED);
}

static void test_guest_events(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    fake_vmm *v = t->fb.last;
    v->cb->on_event(v->cb_ud, "vm", "rebooting");
    v->cb->on_event(v->cb_ud, "vm", "rebooted");
    assert_int_equal(state_of(t, "a"), VM_RUNNING);
    assert_string_equal(vm_manager_find(t->m, "a")->state_reason, "guest rebooted");
    /* our own reboot is not reported as the guest's */
    assert_int_equal(run_op(t, VM_OP_REBOOT, "a", NULL).code, CHCP_OK);
    v->cb->on_event(v->cb_ud, "vm", "rebooted");
    assert_string_equal(vm_manager_find(t->m, "a")->state_reason, "");
    v->cb->on_event(v->cb_ud, "guest", "panic");
    assert_int_equal(state_of(t, "a"), VM_RUNNING);
    assert_string_equal(vm_manager_find(t->m, "a")->state_reason, "guest panicked");
    strcpy(v->ch_state, "Created");
    v->cb->on_event(v->cb_ud, "vm", "shutdown");
    assert_int_equal(state_of(t, "a"), VM_RUNNING); /* a hint until vm.info confirms it */
    tv_spin(&t->loop, 5);
    assert_int_equal(state_of(t, "a"), VM_SHUTDOWN);
    assert_string_equal(vm_manager_find(t->m, "a")->state_reason, "guest powered off");
    /* bootable again */
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_OK);
    /* a lost event is caught by GetVmInfo's vm.info refresh */
    strcpy(v->ch_state, "Created");
    op_result r = run_op(t, VM_OP_INFO, "a", NULL);
    assert_int_equal(r.state, VM_SHUTDOWN);
    assert_string_equal(vm_manager_find(t->m, "a")->vmm_state, "Created");
}

static void test_info_unresponsive(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    t->fb.mode[VMB_INFO] = FAKE_UNAVAILABLE;
    op_result r = run_op(t, VM_OP_INFO, "a", NULL);
    assert_int_equal(r.code, CHCP_OK);
    assert_int_equal(r.state, VM_RUNNING);
    assert_non_null(strstr(r.reason, "VMM not responding"));
    t->fb.mode[VMB_INFO] = FAKE_OK;
    r = run_op(t, VM_OP_INFO, "a", NULL);
    assert_string_equal(r.reason, "");
    assert_int_equal(vm_manager_find(t->m, "a")->memory_actual_size, 4096);
    /* concurrent reads share one vm.info */
    int before = t->fb.requests[VMB_INFO];
    op_result a = {0}, b = {0};
    vm_op_submit(t->m, VM_OP_INFO, "a", NULL, op_result_cb, &a, NULL);
    vm_op_submit(t->m, VM_OP_INFO, "a", NULL, op_result_cb, &b, NULL);
    assert_true(tv_run_until(&t->loop, &b.done, 1000));
    assert_true(a.done);
    assert_int_equal(t->fb.requests[VMB_INFO], before + 1);
    /* DeleteVm while a GetVmInfo waits on a stuck VMM: both finish, the read
     * without a record (the VM is gone) */
    t->fb.mode[VMB_INFO] = FAKE_HANG;
    op_result i1 = {0}, d = {0};
    vm_op_submit(t->m, VM_OP_INFO, "a", NULL, op_result_cb, &i1, NULL);
    tv_spin(&t->loop, 2);
    vm_op_submit(t->m, VM_OP_DELETE, "a", NULL, op_result_cb, &d, NULL);
    assert_true(tv_run_until(&t->loop, &d.done, 1000));
    assert_true(tv_run_until(&t->loop, &i1.done, 1000));
    assert_int_equal(d.code, CHCP_OK);
    assert_false(i1.has_vm);
}

/* ---- VMM calls seen by the observer; vm.counters ----------------------------------------------
 */

typedef struct call_log {
    char calls[16][32];
    size_t n;
    int last_status;
} call_log;

static void *log_call_start(void *ud, void *op_token, const char *vm_id, const char *what)
{
    call_log *l = ud;
    if (l->n < 16)
        snprintf(l->calls[l->n++], sizeof(l->calls[0]), "%s%s", op_token ? "" : "-", what);
    return l;
}

static void log_call_end(void *ud, void *token, const char *what, double seconds, int status,
                         const chcp_error *err)
{
    ((call_log *)ud)->last_status = status;
}

static void *log_op_start(void *ud, void *trace_ctx, const char *vm_id, vm_op_kind kind)
{
    return ud; /* a token, so VMM calls under it have one */
}

typedef struct counters_result {
    bool done;
    chcp_code code;
    char body[128];
} counters_result;

static void counters_cb(void *ud, chcp_error *err, const vmb_reply *reply)
{
    counters_result *r = ud;
    r->done = true;
    r->code = err ? err->code : CHCP_OK;
    if (reply && reply->body)
        snprintf(r->body, sizeof(r->body), "%.*s", (int)reply->body_len, reply->body);
    error_free(err);
}

static void test_vmm_counters_and_watched_calls(void **state)
{
    tctx *t = *state;
    start_manager(t);
    call_log log = {0};
    vm_observer obs = {.op_start = log_op_start,
                       .call_start = log_call_start,
                       .call_end = log_call_end,
                       .ud = &log};
    vm_manager_set_observer(t->m, &obs);
    reach(t, "a", VM_RUNNING);
    /* GetVmInfo's vm.info is a watched call under its operation. */
    log.n = 0;
    assert_int_equal(run_op(t, VM_OP_INFO, "a", NULL).code, CHCP_OK);
    assert_int_equal(log.n, 1);
    assert_string_equal(log.calls[0], "vm.info");
    assert_int_equal(log.last_status, 200);

    /* vm.counters: watched, under no operation, the VMM's answer handed back. */
    counters_result r = {0};
    chcp_error *err = NULL;
    assert_int_equal(vm_manager_vmm_counters(t->m, "a", counters_cb, &r, &err), 0);
    assert_false(r.done); /* never inside the call */
    assert_true(tv_run_until(&t->loop, &r.done, 1000));
    assert_int_equal(r.code, CHCP_OK);
    assert_non_null(strstr(r.body, "\"read_bytes\":512"));
    assert_string_equal(log.calls[1], "-vm.counters");

    /* Only running or paused VMs, and only known ones. */
    assert_int_equal(vm_manager_vmm_counters(t->m, "nope", counters_cb, &r, &err), -1);
    assert_int_equal(err->code, CHCP_NOT_FOUND);
    error_free(err);
    err = NULL;
    assert_int_equal(run_op(t, VM_OP_SHUTDOWN, "a", &(vm_op_params){.force = true}).code, CHCP_OK);
    assert_int_equal(vm_manager_vmm_counters(t->m, "a", counters_cb, &r, &err), -1);
    assert_int_equal(err->code, CHCP_FAILED_PRECONDITION);
    error_free(err);
    /* A VMM that fails the read: the error reaches the caller. */
    assert_int_equal(run_op(t, VM_OP_BOOT, "a", NULL).code, CHCP_OK);
    t->fb.mode[VMB_COUNTERS] = FAKE_FAIL;
    r = (counters_result){0};
    err = NULL;
    assert_int_equal(vm_manager_vmm_counters(t->m, "a", counters_cb, &r, &err), 0);
    assert_true(tv_run_until(&t->loop, &r.done, 1000));
    assert_int_equal(r.code, CHCP_INTERNAL);
    vm_manager_set_observer(t->m, NULL);
}

/* ---- listing and limits --------------------------------------------------------------------- */

static void test_list(void **state)
{
    tctx *t = *state;
    start_manager(t);
    cfgbuf b;
    for (int i = 9; i >= 0; i--) {
        char id[16];
        snprintf(id, sizeof(id), "vm-%d", i);
        vm_label l = {"tier", i % 2 ? "odd" : "even"};
        cfg_init(&b, t);
        assert_int_equal(create_cfg(t, id, &b.c, &l, 1).code, CHCP_OK);
    }
    assert_int_equal(run_op(t, VM_OP_BOOT, "vm-3", NULL).code, CHCP_OK);
    const vm_record *out[10];
    bool more;
    size_t n = vm_manager_list(t->m, NULL, NULL, 4, out, &more);
    assert_int_equal(n, 4);
    assert_true(more);
    assert_string_equal(out[0]->id, "vm-0");
    assert_string_equal(out[3]->id, "vm-3");
    n = vm_manager_list(t->m, NULL, "vm-3", 10, out, &more);
    assert_int_equal(n, 6);
    assert_false(more);
    assert_string_equal(out[0]->id, "vm-4");
    vm_label odd = {"tier", "odd"};
    vm_list_filter f = {.labels = &odd, .n_labels = 1};
    n = vm_manager_list(t->m, &f, NULL, 10, out, &more);
    assert_int_equal(n, 5);
    vm_state running = VM_RUNNING;
    f.states = &running;
    f.n_states = 1;
    n = vm_manager_list(t->m, &f, NULL, 10, out, &more);
    assert_int_equal(n, 1);
    assert_string_equal(out[0]->id, "vm-3");
    vm_label even = {"tier", "even"};
    f.labels = &even;
    assert_int_equal(vm_manager_list(t->m, &f, NULL, 10, out, &more), 0);
}

static void test_start_cap(void **state)
{
    tctx *t = *state;
    t->max_starts = 2;
    start_manager(t);
    t->fb.start_mode = FAKE_HANG;
    cfgbuf b;
    cfg_init(&b, t);
    op_result r1 = {0}, r2 = {0};
    assert_non_null(vm_op_create(t->m, "a", &b.c, NULL, 0, NULL, op_result_cb, &r1, NULL));
    assert_non_null(vm_op_create(t->m, "b", &b.c, NULL, 0, NULL, op_result_cb, &r2, NULL));
    op_result r3 = create(t, "c");
    assert_int_equal(r3.code, CHCP_RESOURCE_EXHAUSTED);
    assert_null(vm_manager_find(t->m, "c"));
    op_result d = run_op(t, VM_OP_DELETE, "a", NULL);
    assert_int_equal(d.code, CHCP_OK);
    assert_true(r1.done);
    t->fb.start_mode = FAKE_OK;
    assert_int_equal(create(t, "c").code, CHCP_OK);
    /* "b" still hangs in its start: end it here, so its completion cannot
     * outlive r2 (a stack variable of this test). */
    assert_int_equal(run_op(t, VM_OP_DELETE, "b", NULL).code, CHCP_OK);
    assert_true(r2.done);
}

static void test_attach_mode(void **state)
{
    tctx *t = *state;
    t->attach = true;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    assert_int_equal(create(t, "b").code, CHCP_RESOURCE_EXHAUSTED);
    assert_int_equal(run_op(t, VM_OP_DELETE, "a", NULL).code, CHCP_OK);
    /* vm.delete, not a process stop */
    assert_int_equal(t->fb.requests[VMB_DELETE], 1);
    assert_int_equal(t->fb.stops, 0);
    assert_int_equal(create(t, "b").code, CHCP_OK);
    assert_int_equal(run_op(t, VM_OP_DELETE, "b", NULL).code, CHCP_OK);
    /* a refused vm.create leaves whatever the VMM holds alone */
    t->fb.mode[VMB_CREATE] = FAKE_FAIL;
    assert_int_equal(create(t, "c").code, CHCP_INTERNAL);
    assert_int_equal(t->fb.requests[VMB_DELETE], 2);
    assert_int_equal(t->fb.stops, 0);
}

static void test_manager_shutdown(void **state)
{
    tctx *t = *state;
    start_manager(t);
    reach(t, "a", VM_RUNNING);
    reach(t, "b", VM_PAUSED);
    bool done = false;
    vm_manager_shutdown(t->m, (void (*)(void *))(void *)NULL, NULL);
    tv_run_until(&t->loop, &done, 200);
    assert_int_equal(vm_manager_count(t->m), 0);
    assert_int_equal(t->fb.live, 0);
    assert_false(dir_exists(t, "a"));
    assert_int_equal(create(t, "c").code, CHCP_UNAVAILABLE);
}

/* Random protobuf bytes as configurations: every one is either refused with
 * an error or accepted; nothing crashes (run under ASan/UBSan). Valid
 * messages are made likely by mutating a real, packed configuration. */
static void test_random_configs(void **state)
{
    tctx *t = *state;
    start_manager(t);
    cfgbuf b;
    cfg_init(&b, t);
    uint8_t base[1024];
    size_t n = protobuf_c_message_pack(&b.c.base, base);
    unsigned seed = 12345;
    int unpacked = 0;
    for (int i = 0; i < 3000; i++) {
        uint8_t buf[1024];
        memcpy(buf, base, n);
        int flips = 1 + rand_r(&seed) % 4;
        for (int k = 0; k < flips; k++)
            buf[rand_r(&seed) % n] = (uint8_t)rand_r(&seed);
        Cloudhypervisor__V1__VmConfig *c = cloudhypervisor__v1__vm_config__unpack(NULL, n, buf);
        if (!c)
            continue;
        unpacked++;
        chcp_error *err = NULL;
        op_result r = {0};
        vm_op *op = vm_op_create(t->m, "rnd", c, NULL, 0, NULL, op_result_cb, &r, &err);
        if (op) {
            assert_true(tv_run_until(&t->loop, &r.done, 2000));
            if (r.code == CHCP_OK)
                assert_int_equal(run_op(t, VM_OP_DELETE, "rnd", NULL).code, CHCP_OK);
        } else {
            assert_non_null(err);
            assert_true(err->code == CHCP_INVALID_ARGUMENT || err->code == CHCP_PERMISSION_DENIED ||
                        err->code == CHCP_FAILED_PRECONDITION);
            error_free(err);
        }
        cloudhypervisor__v1__vm_config__free_unpacked(c, NULL);
    }
    assert_true(unpacked > 100);
    assert_int_equal(vm_manager_count(t->m), 0);
}

/* 1,000 defined VMs must cost well under 64 KiB each (records, configs,
 * labels, backend handles; the fake's handles are tiny like ch's). */
static void test_memory_per_vm(void **state)
{
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan's allocator does not report through mallinfo2 */
#else
    tctx *t = *state;
    start_manager(t);
    cfgbuf b;
    cfg_init(&b, t);
    vm_label l[4] = {{"env", "prod"}, {"team", "compute"}, {"tier", "web"}, {"zone", "a"}};
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 1000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "mem-%04d", i);
        assert_int_equal(create_cfg(t, id, &b.c, l, 4).code, CHCP_OK);
    }
    size_t per_vm = (mallinfo2().uordblks - before) / 1000;
    print_message("memory per VM: %zu bytes\n", per_vm);
    assert_true(per_vm < 64 * 1024);
    assert_true(per_vm > 256); /* the measurement sees the records at all */
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_state_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transitional_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_basics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_failures_are_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_image_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_boot_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_graceful, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serialised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_mid_operation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_unresponsive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vmm_counters_and_watched_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_configs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_per_vm, setup, teardown),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
