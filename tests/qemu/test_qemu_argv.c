/*
 * test_qemu_argv.c - the QEMU command line rendered from a qemu_vm_desc
 * (src/vmm/qemu/qemu_argv.c): fixed safety options, per-machine devices,
 * descriptor numbering, escaping of ',' in paths (QEMU's option syntax),
 * refusal of bad descriptions, and CHCP_QEMU_ACCEL parsing. That QEMU accepts
 * these command lines is shown by test_qemu_*.py against the real binary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "vmm/qemu/qemu.h"

/* The value following option `opt`, the n-th time it occurs. */
static const char *opt_value(const qemu_argv *a, const char *opt, int n)
{
    for (size_t i = 0; i + 1 < a->argc; i++)
        if (strcmp(a->argv[i], opt) == 0 && n-- == 0)
            return a->argv[i + 1];
    return NULL;
}

static bool has_arg(const qemu_argv *a, const char *arg)
{
    for (size_t i = 0; i < a->argc; i++)
        if (strcmp(a->argv[i], arg) == 0)
            return true;
    return false;
}

static qemu_vm_desc base(void)
{
    return (qemu_vm_desc){.machine = QEMU_MACHINE_MICROVM,
                          .accel = QEMU_ACCEL_TCG,
                          .kernel = "/img/vmlinux",
                          .initrd = "/img/initrd.img",
                          .cmdline = "quiet",
                          .vcpus = 2,
                          .memory_mib = 256,
                          .console_path = "/vms/a/console.log",
                          .tsc_khz = 2596134,
                          .pvpanic = true};
}

static void test_microvm_command_line(void **state)
{
    qemu_disk disks[] = {{.path = "/img/root,with,commas.raw"},
                         {.path = "/img/seed.iso", .readonly = true}};
    qemu_nic nics[] = {{.tap_fd = 41, .mac = "52:54:00:12:34:56"}, {.tap_fd = 42}};
    qemu_vm_desc d = base();
    d.disks = disks;
    d.ndisks = 2;
    d.nics = nics;
    d.nnics = 2;
    qemu_argv a;
    chcp_error *err = NULL;
    assert_int_equal(qemu_argv_build(&d, "/usr/bin/qemu-system-x86_64", 17, &a, &err), 0);
    assert_string_equal(a.argv[0], "/usr/bin/qemu-system-x86_64");
    assert_null(a.argv[a.argc]);
    for (const char *must = "-nodefaults\0-no-user-config\0-S\0-no-shutdown\0"; *must;
         must += strlen(must) + 1)
        assert_true(has_arg(&a, must));
    assert_string_equal(opt_value(&a, "-action", 0), "panic=pause");
    assert_non_null(strstr(opt_value(&a, "-machine", 0), "microvm,acpi=on"));
    assert_string_equal(opt_value(&a, "-accel", 0), "tcg");
    assert_string_equal(opt_value(&a, "-smp", 0), "2");
    assert_string_equal(opt_value(&a, "-m", 0), "256M");
    /* QMP first at fd 3, then the TAPs in order */
    assert_int_equal(a.nfds, 3);
    assert_int_equal(a.child_fds[0], 17);
    assert_int_equal(a.child_fds[1], 41);
    assert_int_equal(a.child_fds[2], 42);
    assert_string_equal(opt_value(&a, "-chardev", 0), "socket,id=qmp,fd=3,server=on,wait=off");
    assert_string_equal(opt_value(&a, "-mon", 0), "chardev=qmp,mode=control");
    assert_string_equal(opt_value(&a, "-chardev", 1), "file,id=console,path=/vms/a/console.log");
    assert_string_equal(opt_value(&a, "-netdev", 0), "tap,id=net0,fd=4");
    assert_string_equal(opt_value(&a, "-netdev", 1), "tap,id=net1,fd=5");
    assert_string_equal(opt_value(&a, "-device", 0), "pvpanic");
    assert_string_equal(opt_value(&a, "-device", 3),
                        "virtio-net-device,netdev=net0,id=nic0,mac=52:54:00:12:34:56");
    assert_string_equal(opt_value(&a, "-device", 4), "virtio-net-device,netdev=net1,id=nic1");
    /* a comma in a path cannot smuggle in an option */
    assert_string_equal(opt_value(&a, "-blockdev", 0),
                        "driver=file,node-name=file0,filename=/img/root,,with,,commas.raw,"
                        "read-only=off");
    assert_string_equal(opt_value(&a, "-blockdev", 3),
                        "driver=raw,node-name=disk1,file=file1,read-only=on");
    assert_string_equal(opt_value(&a, "-device", 1), "virtio-blk-device,drive=disk0,id=vd0");
    /* console and early TSC for microvm under TCG, the user's words last */
    assert_string_equal(opt_value(&a, "-append", 0),
                        "console=ttyS0 tsc_early_khz=2596134 reboot=t quiet");
    assert_string_equal(opt_value(&a, "-kernel", 0), "/img/vmlinux");
    assert_string_equal(opt_value(&a, "-initrd", 0), "/img/initrd.img");
    qemu_argv_free(&a);
}

static void test_q35_kvm_command_line(void **state)
{
    qemu_nic nics[] = {{.tap_fd = 9}};
    qemu_vm_desc d = base();
    d.machine = QEMU_MACHINE_Q35;
    d.accel = QEMU_ACCEL_KVM;
    d.cmdline = "console=hvc0 root=/dev/vda";
    d.initrd = NULL;
    d.nics = nics;
    d.nnics = 1;
    qemu_argv a;
    chcp_error *err = NULL;
    assert_int_equal(qemu_argv_build(&d, "/usr/bin/qemu-system-x86_64", 5, &a, &err), 0);
    assert_non_null(strstr(opt_value(&a, "-machine", 0), "q35"));
    assert_string_equal(opt_value(&a, "-accel", 0), "kvm");
    assert_string_equal(opt_value(&a, "-device", 0), "pvpanic-pci");
    assert_string_equal(opt_value(&a, "-device", 1), "virtio-net-pci,netdev=net0,id=nic0");
    assert_null(opt_value(&a, "-initrd", 0));
    /* the user's console wins; no microvm-only additions */
    assert_string_equal(opt_value(&a, "-append", 0), "console=hvc0 root=/dev/vda");
    qemu_argv_free(&a);
}

static void expect_refused(qemu_vm_desc d, const char *needle)
{
    qemu_argv a;
    chcp_error *err = NULL;
    assert_int_equal(qemu_argv_build(&d, "/usr/bin/qemu-system-x86_64", 3, &a, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    if (!strstr(err->message, needle))
        fail_msg("\"%s\" does not mention \"%s\"", err->message, needle);
    assert_null(a.argv);
    error_free(err);
}

static void test_bad_descriptions_are_refused(void **state)
{
    qemu_vm_desc d = base();
    d.kernel = "relative/vmlinux";
    expect_refused(d, "kernel");
    d = base();
    d.console_path = NULL;
    expect_refused(d, "console");
    d = base();
    d.vcpus = 0;
    expect_refused(d, "vcpus");
    d = base();
    d.memory_mib = 64;
    expect_refused(d, "memory");
    d = base();
    d.cmdline = "quiet\nmalicious";
    expect_refused(d, "command line");
    d = base();
    d.initrd = "/img/initrd\x01";
    expect_refused(d, "initrd");
    qemu_nic bad_mac[] = {{.tap_fd = 4, .mac = "52:54:00:12:34"}};
    d = base();
    d.nics = bad_mac;
    d.nnics = 1;
    expect_refused(d, "MAC");
    qemu_nic no_fd[] = {{.tap_fd = -1}};
    d.nics = no_fd;
    expect_refused(d, "TAP");
    qemu_disk disks[9];
    for (int i = 0; i < 9; i++)
        disks[i] = (qemu_disk){.path = "/img/d.raw"};
    d = base();
    d.disks = disks;
    d.ndisks = 9;
    expect_refused(d, "disks");
    d.ndisks = 6;
    qemu_nic nics[3] = {{.tap_fd = 4}, {.tap_fd = 5}, {.tap_fd = 6}};
    d.nics = nics;
    d.nnics = 3;
    expect_refused(d, "microvm takes at most 8");
}

static void test_accel_modes(void **state)
{
    qemu_accel_mode m;
    assert_int_equal(qemu_accel_mode_parse("auto", &m), 0);
    assert_int_equal(m, QEMU_ACCEL_MODE_AUTO);
    assert_int_equal(qemu_accel_mode_parse(NULL, &m), 0);
    assert_int_equal(m, QEMU_ACCEL_MODE_AUTO);
    assert_int_equal(qemu_accel_mode_parse("kvm", &m), 0);
    assert_int_equal(m, QEMU_ACCEL_MODE_KVM);
    assert_int_equal(qemu_accel_mode_parse("tcg", &m), 0);
    assert_int_equal(m, QEMU_ACCEL_MODE_TCG);
    assert_int_equal(qemu_accel_mode_parse("hvf", &m), -1);
    char why[200];
    assert_int_equal(qemu_accel_choose(QEMU_ACCEL_MODE_TCG, true, why, sizeof(why)),
                     QEMU_ACCEL_TCG);
    assert_string_equal(why, "CHCP_QEMU_ACCEL=tcg");
    assert_int_equal(qemu_accel_choose(QEMU_ACCEL_MODE_KVM, true, why, sizeof(why)),
                     QEMU_ACCEL_KVM);
    /* host TSC: read from /proc/cpuinfo on x86 hosts that report it */
    uint32_t khz = qemu_host_tsc_khz();
    assert_true(khz == 0 || khz > 100000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_microvm_command_line),
        cmocka_unit_test(test_q35_kvm_command_line),
        cmocka_unit_test(test_bad_descriptions_are_refused),
        cmocka_unit_test(test_accel_modes),
    };
    return cmocka_run_group_tests_name("qemu_argv", tests, NULL, NULL);
}
