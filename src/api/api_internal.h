/*
 * api_internal.h - conversions shared by the VmService handlers and their
 * unit tests (not part of the module interface).
 */
#ifndef CHCP_API_INTERNAL_H
#define CHCP_API_INTERNAL_H

#include "api/api.h"
#include "cloudhypervisor/v1/vm.pb-c.h"

#define API_LIST_DEFAULT_PAGE 100
#define API_LIST_MAX_PAGE 1000
/* ShutdownVm's graceful_timeout may not exceed this. */
#define API_MAX_GRACE_MS (3600ull * 1000)

/* A VmInfo built from a record; free with api_vm_info_free(). */
Cloudhypervisor__V1__VmInfo *api_vm_info_new(const vm_record *r);
void api_vm_info_free(Cloudhypervisor__V1__VmInfo *info);

/* Page tokens are opaque to clients: URL-safe base64 of the last vm_id. */
char *api_page_token_encode(const char *last_id);
/* Decode into out (VM_ID_MAX + 1 bytes); invalid_argument on junk. */
int api_page_token_decode(const char *token, char *out, chcp_error **err);

/* graceful_timeout as milliseconds; invalid_argument when negative, not
 * normalised or above API_MAX_GRACE_MS. */
int api_duration_ms(const Google__Protobuf__Duration *d, const char *field, uint64_t *out,
                    chcp_error **err);

#endif
