/*
 * test_ch_config.c - rendering CH VmConfig/NetConfig JSON from ch.h's plain
 * structs (keys, defaults left to CH, validation errors), and parsing
 * vm.info, vmm.ping and error-array bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "vmm/ch/ch.h"

static json_t *render(const ch_vm_config *c)
{
    chcp_error *err = NULL;
    char *s = ch_vm_config_to_json(c, &err);
    if (err)
        fail_msg("unexpected error: %s", err->message);
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    free(s);
    return j;
}

static void expect_invalid(const ch_vm_config *c, const char *needle)
{
    chcp_error *err = NULL;
    char *s = ch_vm_config_to_json(c, &err);
    assert_null(s);
    assert_non_null(err);
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    if (!strstr(err->message, needle))
        fail_msg("'%s' not in '%s'", needle, err->message);
    error_free(err);
}

static void test_minimal_leaves_defaults(void **state)
{
    ch_vm_config c = {.payload.kernel = "/k/vmlinux"};
    json_t *j = render(&c);
    /* Only the payload: CH picks cpus, memory, rng, serial, console. */
    assert_int_equal(json_object_size(j), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "payload"), "kernel")),
                        "/k/vmlinux");
    json_decref(j);
}

static void test_full_config(void **state)
{
    ch_disk_config disks[] = {
        {.path = "/img/root.raw", .image_type = "Raw", .id = "root", .serial = "S1"},
        {.path = "/img/data.qcow2", .readonly = true, .direct = true, .image_type = "Qcow2"},
    };
    ch_net_config nets[] = {{.tap = "tap0",
                             .mac = "12:34:56:78:90:aB",
                             .ip = "192.168.1.1",
                             .mask = "255.255.255.0",
                             .mtu = 1500,
                             .num_queues = 4,
                             .queue_size = 256,
                             .id = "net0"}};
    ch_vm_config c = {
        .payload = {.kernel = "/k", .cmdline = "console=hvc0", .initramfs = "/i"},
        .cpus = {.boot_vcpus = 2, .max_vcpus = 4},
        .memory = {.size = 1ull << 30, .shared = true, .hugepages = true},
        .disks = disks,
        .n_disks = 2,
        .net = nets,
        .n_net = 1,
        .rng_src = "/dev/urandom",
        .serial = {.mode = CH_CONSOLE_SOCKET, .socket = "/run/vm/serial.sock"},
        .console = {.mode = CH_CONSOLE_OFF},
        .vsock = {.cid = 3, .socket = "/run/vm/vsock"},
        .platform = {.num_pci_segments = 2, .serial_number = "SN", .uuid = "u-u-i-d"},
    };
    json_t *j = render(&c);
    json_t *want = json_loads(
        "{\"payload\":{\"kernel\":\"/k\",\"cmdline\":\"console=hvc0\",\"initramfs\":\"/i\"},"
        "\"cpus\":{\"boot_vcpus\":2,\"max_vcpus\":4},"
        "\"memory\":{\"size\":1073741824,\"shared\":true,\"hugepages\":true},"
        "\"disks\":[{\"path\":\"/img/root.raw\",\"id\":\"root\",\"serial\":\"S1\","
        "\"image_type\":\"Raw\"},{\"path\":\"/img/data.qcow2\",\"readonly\":true,"
        "\"direct\":true,\"image_type\":\"Qcow2\"}],"
        "\"net\":[{\"tap\":\"tap0\",\"mac\":\"12:34:56:78:90:aB\",\"ip\":\"192.168.1.1\","
        "\"mask\":\"255.255.255.0\",\"mtu\":1500,\"num_queues\":4,\"queue_size\":256,"
        "\"id\":\"net0\"}],"
        "\"rng\":{\"src\":\"/dev/urandom\"},"
        "\"serial\":{\"mode\":\"Socket\",\"socket\":\"/run/vm/serial.sock\"},"
        "\"console\":{\"mode\":\"Off\"},"
        "\"vsock\":{\"cid\":3,\"socket\":\"/run/vm/vsock\"},"
        "\"platform\":{\"num_pci_segments\":2,\"serial_number\":\"SN\",\"uuid\":\"u-u-i-d\"}}",
        0, NULL);
    assert_non_null(want);
    if (!json_equal(j, want)) {
        char *got = json_dumps(j, JSON_SORT_KEYS);
        fail_msg("got %s", got);
    }
    json_decref(want);
    json_decref(j);

    /* max_vcpus 0 means "same as boot". */
    ch_vm_config c2 = {.payload.firmware = "/fw", .cpus.boot_vcpus = 3};
    j = render(&c2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "cpus"), "max_vcpus")),
                     3);
    json_decref(j);
}

static void test_validation(void **state)
{
    ch_vm_config c = {0};
    expect_invalid(&c, "exactly one of kernel or firmware");
    c.payload.kernel = "/k";
    c.payload.firmware = "/f";
    expect_invalid(&c, "exactly one of kernel or firmware");
    c.payload.firmware = NULL;
    c.cpus.boot_vcpus = 4;
    c.cpus.max_vcpus = 2;
    expect_invalid(&c, "cpus");
    c.cpus.boot_vcpus = c.cpus.max_vcpus = 0;
    c.memory.size = 1000;
    expect_invalid(&c, "memory");
    c.memory.size = 0;
    ch_disk_config d = {.path = "relative.raw"};
    c.disks = &d;
    c.n_disks = 1;
    expect_invalid(&c, "disks[0]");
    d.path = "/ok";
    d.image_type = "Vmdk";
    expect_invalid(&c, "image_type");
    d.image_type = NULL;
    ch_net_config n = {.mac = "12:34:56:78:90"};
    c.net = &n;
    c.n_net = 1;
    expect_invalid(&c, "MAC");
    n.mac = NULL;
    n.ip = "300.1.1.1";
    expect_invalid(&c, "IPv4");
    n.ip = NULL;
    n.num_queues = 3;
    expect_invalid(&c, "num_queues");
    n.num_queues = 0;
    n.queue_size = 100;
    expect_invalid(&c, "queue_size");
    n.queue_size = 0;
    n.tap = "a-very-long-tap-name";
    expect_invalid(&c, "tap");
    n.tap = NULL;
    c.console.mode = CH_CONSOLE_FILE;
    expect_invalid(&c, "console");
    c.console.mode = CH_CONSOLE_DEFAULT;
    c.vsock.cid = 2;
    c.vsock.socket = "/s";
    expect_invalid(&c, "vsock");
    c.vsock.cid = 0;
    c.vsock.socket = NULL;
    c.n_disks = 1000;
    expect_invalid(&c, "at most");
    c.n_disks = 1;
    /* Now valid again. */
    chcp_error *err = NULL;
    char *s = ch_vm_config_to_json(&c, &err);
    assert_non_null(s);
    free(s);
    s = ch_net_config_to_json(&n, &err);
    assert_string_equal(s, "{}");
    free(s);
}

static void test_parse_info_and_ping(void **state)
{
    ch_vm_info info;
    const char *b = "{\"config\":{},\"state\":\"Paused\",\"memory_actual_size\":536870912,"
                    "\"device_tree\":{}}";
    assert_int_equal(ch_parse_vm_info(b, strlen(b), &info, NULL), 0);
    assert_int_equal(info.state, CH_VM_STATE_PAUSED);
    assert_true(info.has_memory_actual_size);
    assert_int_equal(info.memory_actual_size, 536870912);
    assert_string_equal(ch_vm_state_name(info.state), "Paused");
    const char *states[] = {"Created", "Running", "Shutdown", "Weird"};
    ch_vm_state want[] = {CH_VM_STATE_CREATED, CH_VM_STATE_RUNNING, CH_VM_STATE_SHUTDOWN,
                          CH_VM_STATE_UNKNOWN};
    for (int i = 0; i < 4; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "{\"state\":\"%s\"}", states[i]);
        assert_int_equal(ch_parse_vm_info(buf, strlen(buf), &info, NULL), 0);
        assert_int_equal(info.state, want[i]);
        assert_false(info.has_memory_actual_size);
    }
    chcp_error *err = NULL;
    assert_int_equal(ch_parse_vm_info("{\"state\":1}", 11, &info, &err), -1);
    error_free(err), err = NULL;
    assert_int_equal(ch_parse_vm_info("", 0, &info, &err), -1);
    error_free(err), err = NULL;

    ch_ping_info p;
    const char *pb = "{\"build_version\":\"v53.0-dirty\",\"version\":\"53.0\",\"pid\":4242,"
                     "\"features\":[\"kvm\"]}";
    assert_int_equal(ch_parse_ping(pb, strlen(pb), &p, NULL), 0);
    assert_string_equal(p.version, "53.0");
    assert_string_equal(p.build_version, "v53.0-dirty");
    assert_int_equal(p.pid, 4242);
    assert_int_equal(ch_parse_ping("{\"version\":\"1\"}", 15, &p, NULL), 0);
    assert_int_equal(p.pid, -1);
    assert_int_equal(ch_parse_ping("[]", 2, &p, &err), -1);
    error_free(err);
}

static void test_error_chain(void **state)
{
    struct {
        const char *body;
        const char *want;
    } cases[] = {
        {"[\"Error from API\",\"The VM info is not available\",\"VM is not created\"]",
         "Error from API: The VM info is not available: VM is not created"},
        {"[\"Not Found\"]", "Not Found"},
        {"[]", "HTTP 500 from the VMM"},
        {"", "HTTP 500 from the VMM"},
        {"[\"a\",1,\"\",\"b\"]", "a: b"},
        {"{\"fault_message\":\"x\"}", "{\"fault_message\":\"x\"}"},
        {"plain\ntext\x01  ", "plain text"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *m = ch_error_chain(500, cases[i].body, strlen(cases[i].body));
        assert_string_equal(m, cases[i].want);
        free(m);
    }
    char big[10000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    char *m = ch_error_chain(500, big, strlen(big));
    assert_true(strlen(m) <= 2100);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_leaves_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_parse_info_and_ping),
        cmocka_unit_test(test_error_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
