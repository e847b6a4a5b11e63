/*
 * convert.c - VM records to cloudhypervisor.v1.VmInfo messages, page tokens
 * and durations: the pure data conversions of the VmService handlers, kept
 * apart so they can be unit-tested without an RPC server.
 */
#include <string.h>

#include "api/api_internal.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

/*
 * A VmInfo is built for one answer and freed right after it is serialised,
 * while the record it shows cannot change: so it borrows the record's strings
 * and cached configuration, and everything it owns sits in one allocation.
 * (ListVms builds up to 1,000 of these per call.)
 */
typedef struct vm_info_view {
    Cloudhypervisor__V1__VmInfo info; /* first: the view is freed through it */
    Google__Protobuf__Timestamp created, updated, changed, exited;
    Cloudhypervisor__V1__VmmExit exit;
    Cloudhypervisor__V1__VmInfo__LabelsEntry **label_ptrs;
    Cloudhypervisor__V1__VmInfo__LabelsEntry labels[];
} vm_info_view;

static Google__Protobuf__Timestamp *timestamp_set(Google__Protobuf__Timestamp *t, uint64_t ns)
{
    google__protobuf__timestamp__init(t);
    t->seconds = (int64_t)(ns / 1000000000ull);
    t->nanos = (int32_t)(ns % 1000000000ull);
    return t;
}

Cloudhypervisor__V1__VmInfo *api_vm_info_new(const vm_record *r)
{
    size_t n = r->n_labels;
    vm_info_view *v = xmalloc(sizeof(*v) + n * (sizeof(v->labels[0]) + sizeof(v->label_ptrs[0])));
    Cloudhypervisor__V1__VmInfo *info = &v->info;
    cloudhypervisor__v1__vm_info__init(info);
    /* protobuf-c's message types are not const-correct; packing only reads. */
    info->vm_id = (char *)r->id;
    info->config = (Cloudhypervisor__V1__VmConfig *)vm_record_config(r);
    if (n) {
        v->label_ptrs = (Cloudhypervisor__V1__VmInfo__LabelsEntry **)(v->labels + n);
        for (size_t i = 0; i < n; i++) {
            cloudhypervisor__v1__vm_info__labels_entry__init(&v->labels[i]);
            v->labels[i].key = r->labels[i].key;
            v->labels[i].value = r->labels[i].value;
            v->label_ptrs[i] = &v->labels[i];
        }
        info->labels = v->label_ptrs;
        info->n_labels = n;
    }
    info->state = (Cloudhypervisor__V1__VmState)r->state;
    info->state_reason = r->state_reason;
    info->vmm_state = r->vmm_state ? r->vmm_state : "";
    info->vmm_pid = r->vmm_pid;
    if (r->has_exit) {
        cloudhypervisor__v1__vmm_exit__init(&v->exit);
        v->exit.exit_code = r->exit_signal ? 0 : r->exit_code;
        v->exit.signal = r->exit_signal;
        v->exit.exited_at = timestamp_set(&v->exited, r->exited_at_ns);
        info->vmm_exit = &v->exit;
    }
    info->memory_actual_size = r->memory_actual_size;
    info->created_at = timestamp_set(&v->created, r->created_at_ns);
    info->updated_at = timestamp_set(&v->updated, r->updated_at_ns);
    info->state_changed_at = timestamp_set(&v->changed, r->state_changed_at_ns);
    return info;
}

void api_vm_info_free(Cloudhypervisor__V1__VmInfo *info)
{
    free(info); /* the view: info is its first member */
}

char *api_page_token_encode(const char *last_id)
{
    chcp_buf b = CHCP_BUF_INIT;
    base64_encode(&b, (const uint8_t *)last_id, strlen(last_id), true, false);
    buf_append_byte(&b, 0);
    return (char *)steal_pointer(&b.data);
}

int api_page_token_decode(const char *token, char *out, chcp_error **err)
{
    chcp_buf b = CHCP_BUF_INIT;
    size_t n = strlen(token);
    int rc = n > 4 * VM_ID_MAX ? -1 : base64_decode(&b, token, n);
    if (rc == 0) {
        buf_append_byte(&b, 0);
        if (b.len - 1 != strlen((char *)b.data) || vm_validate_id((char *)b.data, NULL) < 0)
            rc = -1;
        else
            memcpy(out, b.data, b.len);
    }
    buf_free(&b);
    if (rc < 0)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "page_token: not a token from a previous ListVms response");
    return 0;
}

int api_duration_ms(const Google__Protobuf__Duration *d, const char *field, uint64_t *out,
                    chcp_error **err)
{
    if (d->seconds < 0 || d->nanos < 0 || d->nanos > 999999999)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: must be a non-negative duration", field);
    if ((uint64_t)d->seconds > API_MAX_GRACE_MS / 1000)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: at most %llu seconds", field,
                         API_MAX_GRACE_MS / 1000);
    *out = (uint64_t)d->seconds * 1000 + (uint64_t)d->nanos / 1000000;
    return 0;
}
