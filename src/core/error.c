/*
 * error.c - error objects carrying a Connect code, an errno and a message.
 */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const code_names[] = {
    "ok",
    "canceled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
};

const char *code_name(chcp_code code)
{
    if ((unsigned)code < ARRAY_SIZE(code_names))
        return code_names[code];
    return "unknown";
}

int code_from_name(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(code_names); i++)
        if (strcmp(code_names[i], name) == 0)
            return (int)i;
    return -1;
}

__attribute__((format(printf, 4, 0))) static int
error_vset(chcp_error **err, chcp_code code, int errno_value, const char *fmt, va_list ap)
{
    if (!err || *err)
        return -1;
    chcp_buf b = CHCP_BUF_INIT;
    buf_vprintf(&b, fmt, ap);
    if (errno_value)
        buf_printf(&b, ": %s", strerror(errno_value));
    chcp_error *e = xcalloc(1, sizeof(*e));
    e->code = code;
    e->errno_value = errno_value;
    e->message = buf_steal_str(&b);
    *err = e;
    return -1;
}

int error_set(chcp_error **err, chcp_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, code, 0, fmt, ap);
    va_end(ap);
    return -1;
}

int error_set_errno(chcp_error **err, chcp_code code, int errno_value, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, code, errno_value, fmt, ap);
    va_end(ap);
    return -1;
}

void error_prefix(chcp_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    chcp_buf b = CHCP_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    buf_printf(&b, ": %s", err->message);
    free(err->message);
    err->message = buf_steal_str(&b);
}

void error_free(chcp_error *err)
{
    if (!err)
        return;
    free(err->message);
    free(err);
}
