/*
 * test_api_convert.c - the VmService data conversions: a VM record becomes a
 * complete VmInfo (config round-trips, labels, exit status, timestamps),
 * page tokens round-trip and junk tokens are refused, durations are bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "api/api_internal.h"

static void test_vm_info(void **state)
{
    Cloudhypervisor__V1__VmConfig c = CLOUDHYPERVISOR__V1__VM_CONFIG__INIT;
    Cloudhypervisor__V1__PayloadConfig p = CLOUDHYPERVISOR__V1__PAYLOAD_CONFIG__INIT;
    p.kernel = "/img/vmlinux";
    c.payload = &p;
    uint8_t pb[256];
    size_t len = protobuf_c_message_pack(&c.base, pb);
    vm_label labels[2] = {{"a", "1"}, {"b", "2"}};
    vm_record r = {.state = VM_CRASHED,
                   .state_reason = "VMM killed by signal 9 (KILL)",
                   .config_pb = pb,
                   .config_pb_len = len,
                   .labels = labels,
                   .n_labels = 2,
                   .vmm_state = "",
                   .has_exit = true,
                   .exit_signal = 9,
                   .exit_code = -1,
                   .exited_at_ns = 1700000000123456789ull,
                   .created_at_ns = 1500000000000000001ull,
                   .updated_at_ns = 1600000000000000000ull,
                   .state_changed_at_ns = 1600000000000000000ull};
    strcpy(r.id, "web-1");
    Cloudhypervisor__V1__VmInfo *info = api_vm_info_new(&r);
    assert_string_equal(info->vm_id, "web-1");
    assert_int_equal(info->state, CLOUDHYPERVISOR__V1__VM_STATE__VM_STATE_CRASHED);
    assert_string_equal(info->config->payload->kernel, "/img/vmlinux");
    assert_int_equal(info->n_labels, 2);
    assert_string_equal(info->labels[1]->key, "b");
    assert_string_equal(info->labels[1]->value, "2");
    assert_non_null(info->vmm_exit);
    assert_int_equal(info->vmm_exit->signal, 9);
    assert_int_equal(info->vmm_exit->exit_code, 0);
    assert_int_equal(info->vmm_exit->exited_at->seconds, 1700000000);
    assert_int_equal(info->vmm_exit->exited_at->nanos, 123456789);
    assert_int_equal(info->created_at->nanos, 1);
    assert_string_equal(info->state_reason, "VMM killed by signal 9 (KILL)");
    /* it serialises (every required pointer is set) */
    size_t n = protobuf_c_message_get_packed_size(&info->base);
    assert_true(n > 0);
    api_vm_info_free(info);

    r.has_exit = false;
    r.n_labels = 0;
    info = api_vm_info_new(&r);
    assert_null(info->vmm_exit);
    assert_int_equal(info->n_labels, 0);
    /* the configuration is unpacked once and kept with the record */
    assert_ptr_equal(info->config, r.config_msg);
    api_vm_info_free(info);
    cloudhypervisor__v1__vm_config__free_unpacked(r.config_msg, NULL);
}

static void test_page_tokens(void **state)
{
    char out[VM_ID_MAX + 1];
    char *t = api_page_token_encode("vm-0042");
    assert_int_equal(api_page_token_decode(t, out, NULL), 0);
    assert_string_equal(out, "vm-0042");
    free(t);
    const char *bad[] = {"!!!", "Zm9vL2Jhcg", /* "foo/bar" */ "", "QUJD" /* "ABC" */};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        chcp_error *err = NULL;
        assert_int_equal(api_page_token_decode(bad[i], out, &err), -1);
        assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
        assert_non_null(strstr(err->message, "page_token"));
        error_free(err);
    }
    char longtok[600];
    memset(longtok, 'A', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = 0;
    assert_int_equal(api_page_token_decode(longtok, out, NULL), -1);
}

static void test_durations(void **state)
{
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    uint64_t ms = 1;
    assert_int_equal(api_duration_ms(&d, "graceful_timeout", &ms, NULL), 0);
    assert_int_equal(ms, 0);
    d.seconds = 2;
    d.nanos = 500000000;
    assert_int_equal(api_duration_ms(&d, "graceful_timeout", &ms, NULL), 0);
    assert_int_equal(ms, 2500);
    chcp_error *err = NULL;
    d.seconds = -1;
    assert_int_equal(api_duration_ms(&d, "graceful_timeout", &ms, &err), -1);
    assert_non_null(strstr(err->message, "graceful_timeout"));
    error_free(err);
    d.seconds = 999999999;
    d.nanos = 0;
    assert_int_equal(api_duration_ms(&d, "graceful_timeout", &ms, NULL), -1);
    d.seconds = 1;
    d.nanos = 1000000000;
    assert_int_equal(api_duration_ms(&d, "graceful_timeout", &ms, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vm_info),
        cmocka_unit_test(test_page_tokens),
        cmocka_unit_test(test_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
