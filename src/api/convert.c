/*
 * convert.c - VM records to cloudhypervisor.v1.VmInfo messages, page tokens
 * and durations: the pure data conversions of the VmService handlers, kept
 * apart so they can be unit-tested without an RPC server.
 */
#include <string.h>

#include "api/api_internal.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

static Google__Protobuf__Timestamp *timestamp_new(uint64_t ns)
{
    Google__Protobuf__Timestamp *t = xmalloc(sizeof(*t));
    google__protobuf__timestamp__init(t);
    t->seconds = (int64_t)(ns / 1000000000ull);
    t->nanos = (int32_t)(ns % 1000000000ull);
    return t;
}

Cloudhypervisor__V1__VmInfo *api_vm_info_new(const vm_record *r)
{
    Cloudhypervisor__V1__VmInfo *info = xmalloc(sizeof(*info));
    cloudhypervisor__v1__vm_info__init(info);
    info->vm_id = xstrdup(r->id);
    /* The stored bytes were packed from a validated message, so unpacking
     * cannot fail short of memory exhaustion. */
    info->config = cloudhypervisor__v1__vm_config__unpack(NULL, r->config_pb_len, r->config_pb);
    if (r->n_labels) {
        info->labels = xcalloc(r->n_labels, sizeof(*info->labels));
        for (size_t i = 0; i < r->n_labels; i++) {
            Cloudhypervisor__V1__VmInfo__LabelsEntry *e = xmalloc(sizeof(*e));
            cloudhypervisor__v1__vm_info__labels_entry__init(e);
            e->key = xstrdup(r->labels[i].key);
            e->value = xstrdup(r->labels[i].value);
            info->labels[i] = e;
        }
        info->n_labels = r->n_labels;
    }
    info->state = (Cloudhypervisor__V1__VmState)r->state;
    info->state_reason = xstrdup(r->state_reason);
    info->vmm_state = xstrdup(r->vmm_state ? r->vmm_state : "");
    info->vmm_pid = r->vmm_pid;
    if (r->has_exit) {
        Cloudhypervisor__V1__VmmExit *x = xmalloc(sizeof(*x));
        cloudhypervisor__v1__vmm_exit__init(x);
        x->exit_code = r->exit_signal ? 0 : r->exit_code;
        x->signal = r->exit_signal;
        x->exited_at = timestamp_new(r->exited_at_ns);
        info->vmm_exit = x;
    }
    info->memory_actual_size = r->memory_actual_size;
    info->created_at = timestamp_new(r->created_at_ns);
    info->updated_at = timestamp_new(r->updated_at_ns);
    info->state_changed_at = timestamp_new(r->state_changed_at_ns);
    return info;
}

void api_vm_info_free(Cloudhypervisor__V1__VmInfo *info)
{
    if (!info)
        return;
    free(info->vm_id);
    if (info->config)
        cloudhypervisor__v1__vm_config__free_unpacked(info->config, NULL);
    for (size_t i = 0; i < info->n_labels; i++) {
        free(info->labels[i]->key);
        free(info->labels[i]->value);
        free(info->labels[i]);
    }
    free(info->labels);
    free(info->state_reason);
    free(info->vmm_state);
    if (info->vmm_exit) {
        free(info->vmm_exit->exited_at);
        free(info->vmm_exit);
    }
    free(info->created_at);
    free(info->updated_at);
    free(info->state_changed_at);
    free(info);
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
