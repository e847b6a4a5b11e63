/*
 * status.c - chcpctl's exit statuses and error messages.
 *
 * The exit status tells a script what kind of failure happened without
 * parsing text: one status per class of Connect code (below; the man page and
 * docs/cli.md print this same table). With several VMs on one command line the
 * status is that of the first failure; the others are still attempted and
 * reported.
 */
#include "cli/cli.h"

#include <stdarg.h>

const cli_exit_row cli_exit_table[] = {
    {CLI_EXIT_OK, "success"},
    {CLI_EXIT_FAILURE, "internal error or any other failure (internal, unknown, data_loss)"},
    {CLI_EXIT_USAGE, "usage: bad command line, unreadable or invalid file or flag value"},
    {CLI_EXIT_NOT_FOUND, "not_found: no such VM"},
    {CLI_EXIT_STATE,
     "failed_precondition, aborted, out_of_range: the VM is in the wrong state (also: wait "
     "saw FAILED or CRASHED)"},
    {CLI_EXIT_UNAVAILABLE,
     "unavailable: cannot connect, TLS failure, the daemon or the VM's VMM is not answering"},
    {CLI_EXIT_TIMEOUT, "deadline_exceeded: --request-timeout or wait --timeout ran out"},
    {CLI_EXIT_INVALID, "invalid_argument: the daemon rejected a value"},
    {CLI_EXIT_EXISTS, "already_exists: a VM with this id and another configuration exists"},
    {CLI_EXIT_DENIED,
     "permission_denied, unauthenticated: e.g. a path outside the image directories, or no "
     "access to the socket"},
    {CLI_EXIT_EXHAUSTED, "resource_exhausted: a limit of the daemon was hit"},
    {CLI_EXIT_UNIMPLEMENTED, "unimplemented: the daemon does not have this call"},
    {CLI_EXIT_INTERRUPTED, "interrupted by SIGINT or SIGTERM (watch exits 0 instead)"},
};

const size_t cli_exit_table_len = sizeof(cli_exit_table) / sizeof(cli_exit_table[0]);

int cli_exit_for_code(chcp_code code)
{
    switch (code) {
    case CHCP_OK:
        return CLI_EXIT_OK;
    case CHCP_NOT_FOUND:
        return CLI_EXIT_NOT_FOUND;
    case CHCP_FAILED_PRECONDITION:
    case CHCP_ABORTED:
    case CHCP_OUT_OF_RANGE:
        return CLI_EXIT_STATE;
    case CHCP_UNAVAILABLE:
        return CLI_EXIT_UNAVAILABLE;
    case CHCP_DEADLINE_EXCEEDED:
        return CLI_EXIT_TIMEOUT;
    case CHCP_INVALID_ARGUMENT:
        return CLI_EXIT_INVALID;
    case CHCP_ALREADY_EXISTS:
        return CLI_EXIT_EXISTS;
    case CHCP_PERMISSION_DENIED:
    case CHCP_UNAUTHENTICATED:
        return CLI_EXIT_DENIED;
    case CHCP_RESOURCE_EXHAUSTED:
        return CLI_EXIT_EXHAUSTED;
    case CHCP_UNIMPLEMENTED:
        return CLI_EXIT_UNIMPLEMENTED;
    case CHCP_CANCELED:
        return CLI_EXIT_INTERRUPTED;
    default:
        return CLI_EXIT_FAILURE;
    }
}

/* Local input errors (status 2) are not the daemon's: no code in the text. */
static int report(cli_ctx *ctx, const chcp_error *e, const char *vm_id, int status, const char *fmt,
                  va_list ap) __attribute__((format(printf, 5, 0)));

static int report(cli_ctx *ctx, const chcp_error *e, const char *vm_id, int status, const char *fmt,
                  va_list ap)
{
    chcp_buf what = CHCP_BUF_INIT;
    buf_vprintf(&what, fmt, ap);
    buf_append_byte(&what, 0);
    if (ctx->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_object();
        json_object_set_new(doc, "code", json_string(code_name(e->code)));
        json_object_set_new(doc, "message", render_json_string(e->message ? e->message : ""));
        json_object_set_new(doc, "context", render_json_string((char *)what.data));
        if (vm_id)
            json_object_set_new(doc, "vmId", render_json_string(vm_id));
        json_dumpf(doc, stderr, JSON_COMPACT);
        fputc('\n', stderr);
        json_decref(doc);
    } else {
        /* Both may echo what a user or the server typed: no raw escapes. */
        chcp_buf safe = CHCP_BUF_INIT;
        render_safe(&safe, (char *)what.data);
        buf_append_str(&safe, ": ");
        render_safe(&safe, e->message ? e->message : "");
        buf_append_byte(&safe, 0);
        if (status == CLI_EXIT_USAGE)
            fprintf(stderr, "chcpctl: %s\n", (char *)safe.data);
        else
            fprintf(stderr, "chcpctl: %s (%s)\n", (char *)safe.data, code_name(e->code));
        buf_free(&safe);
    }
    buf_free(&what);
    if (ctx->exit_code == 0)
        ctx->exit_code = status;
    return status;
}

int cli_report(cli_ctx *ctx, const chcp_error *e, const char *vm_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = report(ctx, e, vm_id, cli_exit_for_code(e->code), fmt, ap);
    va_end(ap);
    return rc;
}

int cli_report_input(cli_ctx *ctx, const chcp_error *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = report(ctx, e, NULL, CLI_EXIT_USAGE, fmt, ap);
    va_end(ap);
    return rc;
}
