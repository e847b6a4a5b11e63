/*
 * cmd_wait.c - `chcpctl wait` and `chcpctl watch`, both over client_watch
 * (client/watch.c), which polls today and will read the daemon's
 * WatchVmEvents stream once there is one; nothing here depends on which.
 *
 * wait gives up early where waiting cannot succeed: the VM does not exist, is
 * deleted meanwhile, or sits in FAILED or CRASHED (only DeleteVm leaves those).
 */
#include "cli/cli.h"

#include <string.h>

#include "rpc/protojson.h"

#define WANT_DELETED (1u << 31)

typedef Cloudhypervisor__V1__VmState VmState;

static int parse_wanted(cli_ctx *ctx, const char *text, uint32_t *mask)
{
    cleanup_free char *copy = xstrdup(text);
    char *save = NULL;
    *mask = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        VmState st;
        if (str_ieq(tok, "deleted"))
            *mask |= WANT_DELETED;
        else if (units_parse_state(tok, &st) == 0 && st < 31)
            *mask |= 1u << st;
        else
            return cli_usage_error(ctx, "--for: unknown state '%s'", tok);
    }
    return *mask ? 0 : cli_usage_error(ctx, "--for: no state given");
}

static void print_deleted(cli_ctx *ctx, const char *vm_id)
{
    if (ctx->output == CLI_OUTPUT_JSON) {
        Cloudhypervisor__V1__DeleteVmResponse r = CLOUDHYPERVISOR__V1__DELETE_VM_RESPONSE__INIT;
        r.vm_id = (char *)vm_id;
        render_json(ctx, &r.base);
    } else {
        fprintf(ctx->out, "%s: deleted\n", vm_id);
    }
}

/* 1: done (printed), 0: keep waiting, else an exit status (reported). */
static int check_vm(cli_ctx *ctx, const VmInfo *vm, uint32_t wanted)
{
    if ((unsigned)vm->state < 31 && (wanted & (1u << vm->state))) {
        if (ctx->output == CLI_OUTPUT_JSON)
            render_json(ctx, &vm->base);
        else
            fprintf(ctx->out, "%s: %s\n", vm->vm_id, units_state_name(vm->state));
        return 1;
    }
    if (vm->state == CLOUDHYPERVISOR__V1__VM_STATE__VM_STATE_FAILED ||
        vm->state == CLOUDHYPERVISOR__V1__VM_STATE__VM_STATE_CRASHED) {
        chcp_error e = {.code = CHCP_FAILED_PRECONDITION};
        e.message = xasprintf("VM %s is %s%s%s; it will not get there", vm->vm_id,
                              units_state_name(vm->state), vm->state_reason[0] ? ": " : "",
                              vm->state_reason);
        int rc = cli_report(ctx, &e, vm->vm_id, "wait %s", vm->vm_id);
        free(e.message);
        return rc;
    }
    return 0;
}

static int not_found(cli_ctx *ctx, const char *vm_id, uint32_t wanted, bool gone_meanwhile)
{
    if (wanted & WANT_DELETED) {
        print_deleted(ctx, vm_id);
        return 1;
    }
    chcp_error e = {.code = CHCP_NOT_FOUND};
    e.message =
        xasprintf(gone_meanwhile ? "VM %s was deleted while waiting" : "VM %s not found", vm_id);
    int rc = cli_report(ctx, &e, vm_id, "wait %s", vm_id);
    free(e.message);
    return rc;
}

/* One GetVmInfo before watching: a VM that does not exist is an answer at
 * once, not a timeout. Same results as check_vm. */
static int first_look(cli_ctx *ctx, chcp_client *c, const char *vm_id, uint32_t wanted)
{
    Cloudhypervisor__V1__GetVmInfoRequest req = CLOUDHYPERVISOR__V1__GET_VM_INFO_REQUEST__INIT;
    req.vm_id = (char *)vm_id;
    ProtobufCMessage *resp = NULL;
    chcp_error *err = NULL;
    if (client_call(c, "GetVmInfo", &req.base,
                    &cloudhypervisor__v1__get_vm_info_response__descriptor, &resp, &err) < 0) {
        int rc = err->code == CHCP_NOT_FOUND ? not_found(ctx, vm_id, wanted, false)
                                             : cli_report(ctx, err, vm_id, "wait %s", vm_id);
        error_free(err);
        return rc;
    }
    int rc = check_vm(ctx, ((Cloudhypervisor__V1__GetVmInfoResponse *)resp)->vm, wanted);
    protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

int cmd_wait(cli_ctx *ctx)
{
    const char *vm_id = ctx->args[0];
    const char *for_text = cli_opt(ctx, "for");
    if (!for_text)
        return cli_usage_error(ctx, "wait: --for STATE is required");
    uint32_t wanted;
    int rc = parse_wanted(ctx, for_text, &wanted);
    if (rc)
        return rc;
    uint64_t timeout_ms = 60000;
    chcp_error *err = NULL;
    const char *t = cli_opt(ctx, "timeout");
    if (t && units_parse_duration(t, &timeout_ms, &err) < 0) {
        rc = cli_usage_error(ctx, "--timeout: %s", err->message);
        error_free(err);
        return rc;
    }
    chcp_client *c = cli_client(ctx);
    if (!c)
        return cli_failed(ctx);
    uint64_t deadline = timeout_ms ? time_mono_ns() + timeout_ms * 1000000 : 0;
    rc = first_look(ctx, c, vm_id, wanted);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    client_watch_options wo = {.vm_ids = (const char *const *)&ctx->args[0], .n_vm_ids = 1};
    client_watch *w = client_watch_new(c, &wo);
    VmState last = CLOUDHYPERVISOR__V1__VM_STATE__VM_STATE_UNSPECIFIED;
    while (rc == 0) {
        client_event ev = {0};
        int got = client_watch_next(w, deadline, &ev, &err);
        if (got < 0) {
            rc = cli_report(ctx, err, vm_id, "wait %s", vm_id);
            error_free(err);
        } else if (got == 0) {
            chcp_error e = {.code = CHCP_DEADLINE_EXCEEDED};
            e.message = xasprintf("VM %s is still %s after %s", vm_id, units_state_name(last),
                                  t ? t : "60s");
            rc = cli_report(ctx, &e, vm_id, "wait %s --for %s", vm_id, for_text);
            free(e.message);
        } else if (ev.kind == CLIENT_EVENT_DELETED) {
            rc = not_found(ctx, vm_id, wanted, true);
        } else {
            last = ev.vm->state;
            rc = check_vm(ctx, ev.vm, wanted);
        }
        client_event_clear(&ev);
    }
    client_watch_free(w);
    return rc == 1 ? 0 : rc;
}

/* ---- watch ------------------------------------------------------------------------------ */

static const char *event_name(client_event_kind k)
{
    return k == CLIENT_EVENT_ADDED ? "ADDED" : k == CLIENT_EVENT_CHANGED ? "CHANGED" : "DELETED";
}

static void print_event(cli_ctx *ctx, const client_event *ev)
{
    if (ctx->output == CLI_OUTPUT_JSON) {
        chcp_buf b = CHCP_BUF_INIT;
        chcp_error *err = NULL;
        buf_printf(&b, "{\"type\":\"%s\",\"vm\":", event_name(ev->kind));
        if (protojson_encode(&ev->vm->base, &b, &err) < 0) {
            cli_report(ctx, err, ev->vm->vm_id, "encoding JSON");
            error_free(err);
        } else {
            buf_append_str(&b, "}\n");
            fwrite(b.data, 1, b.len, ctx->out);
        }
        buf_free(&b);
        return;
    }
    Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    now.seconds = (int64_t)(time_real_ns() / 1000000000);
    chcp_buf line = CHCP_BUF_INIT;
    units_format_time(
        &line, ev->kind == CLIENT_EVENT_DELETED || !ev->vm->updated_at ? &now : ev->vm->updated_at);
    char kind[16];
    snprintf(kind, sizeof(kind), "%s", event_name(ev->kind));
    for (char *k = kind; *k; k++)
        *k = (char)(*k + ('a' - 'A'));
    if (ev->kind == CLIENT_EVENT_DELETED)
        buf_printf(&line, "  %-8s %s", kind, ev->vm->vm_id);
    else
        buf_printf(&line, "  %-8s %-20s %s", kind, ev->vm->vm_id, units_state_name(ev->vm->state));
    if (ev->kind != CLIENT_EVENT_DELETED && ev->vm->state_reason[0])
        buf_printf(&line, " (%s)", ev->vm->state_reason);
    buf_append_byte(&line, 0);
    chcp_buf safe = CHCP_BUF_INIT;
    render_safe(&safe, (char *)line.data);
    buf_append_byte(&safe, '\n');
    fwrite(safe.data, 1, safe.len, ctx->out);
    buf_free(&line);
    buf_free(&safe);
}

int cmd_watch(cli_ctx *ctx)
{
    chcp_error *err = NULL;
    uint64_t interval_ms = 1000, count = 0;
    const char *text = cli_opt(ctx, "interval");
    if (text && (units_parse_duration(text, &interval_ms, &err) < 0 || interval_ms == 0)) {
        int rc = cli_usage_error(ctx, "--interval: %s", err ? err->message : "must be > 0");
        error_free(err);
        return rc;
    }
    text = cli_opt(ctx, "count");
    if (text && (!str_to_u64(text, UINT32_MAX, &count) || count == 0))
        return cli_usage_error(ctx, "--count: expected a positive number, got '%s'", text);
    const cli_values *labels = cli_opt_all(ctx, "label");
    if (labels && ctx->n_args)
        return cli_usage_error(ctx, "--label filters all VMs; it cannot be used with VM ids");
    size_t n_labels = labels ? labels->n : 0;
    char **owned = xcalloc(n_labels + 1, sizeof(char *));
    const char **keys = xcalloc(n_labels + 1, sizeof(char *));
    const char **values = xcalloc(n_labels + 1, sizeof(char *));
    int rc = 0;
    for (size_t i = 0; i < n_labels && rc == 0; i++)
        if (units_split_label(labels->v[i], &owned[i], &keys[i], &values[i], &err) < 0) {
            rc = cli_usage_error(ctx, "--label: %s", err->message);
            error_free(err);
        }
    chcp_client *c = rc ? NULL : cli_client(ctx);
    if (!rc && !c)
        rc = cli_failed(ctx);
    client_watch *w = NULL;
    if (c) {
        client_watch_options wo = {
            .vm_ids = (const char *const *)ctx->args,
            .n_vm_ids = ctx->n_args,
            .label_keys = keys,
            .label_values = values,
            .n_labels = n_labels,
            .min_interval_ms = interval_ms,
            .max_interval_ms = interval_ms,
        };
        w = client_watch_new(c, &wo);
    }
    for (uint64_t seen = 0; w && rc == 0 && (!count || seen < count); seen++) {
        client_event ev = {0};
        if (client_watch_next(w, 0, &ev, &err) < 0) {
            /* Interrupting is how a watch normally ends. */
            rc = err->code == CHCP_CANCELED ? 0 : cli_report(ctx, err, NULL, "watch");
            error_free(err);
            break;
        }
        print_event(ctx, &ev);
        client_event_clear(&ev);
        if (fflush(ctx->out) != 0)
            break; /* the reader went away (watch | head): done */
    }
    client_watch_free(w);
    for (size_t i = 0; i < n_labels; i++)
        free(owned[i]);
    free(owned);
    free(keys);
    free(values);
    return rc;
}
