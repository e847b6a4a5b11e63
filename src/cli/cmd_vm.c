/*
 * cmd_vm.c - the commands that are one VmService call per VM (get, boot,
 * shutdown, pause, resume, reboot, delete) and list.
 *
 * Commands over several VMs call them in order, report each failure and go
 * on; the exit status is that of the first failure (status.c). In text mode a
 * mutation prints "VM: new-state"; with -o json it prints the VmInfo the
 * daemon returned (DeleteVm: {"vmId": ...}).
 */
#include "cli/cli.h"

#include <string.h>

typedef ProtobufCMessage Message;

/* Set the string field vm_id of any request message. */
static void set_vm_id(Message *req, const char *vm_id)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(req->descriptor, "vm_id");
    *(const char **)((char *)req + f->offset) = vm_id;
}

/* The VmInfo in a response's field `vm`, if it has one. */
static VmInfo *response_vm(const Message *resp)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(resp->descriptor, "vm");
    return f ? *(VmInfo **)((char *)resp + f->offset) : NULL;
}

/* One call for one VM; prints the outcome. Returns 0 or the exit status. */
static int call_vm(cli_ctx *ctx, const char *method, Message *req,
                   const ProtobufCMessageDescriptor *resp_desc, const char *vm_id)
{
    chcp_client *c = cli_client(ctx);
    if (!c)
        return cli_failed(ctx);
    Message *resp = NULL;
    chcp_error *err = NULL;
    if (client_call(c, method, req, resp_desc, &resp, &err) < 0) {
        int rc = 0;
        if (err->code == CHCP_NOT_FOUND && cli_flag(ctx, "ignore-not-found")) {
            if (ctx->output == CLI_OUTPUT_TABLE)
                fprintf(ctx->out, "%s: not found (ignored)\n", vm_id);
        } else {
            rc = cli_report(ctx, err, vm_id, "%s %s", ctx->cmd->name, vm_id);
        }
        error_free(err);
        return rc;
    }
    VmInfo *vm = response_vm(resp);
    if (ctx->output == CLI_OUTPUT_JSON)
        render_json(ctx, vm ? &vm->base : resp);
    else if (strcmp(method, "GetVmInfo") == 0)
        render_vm_details(ctx, vm);
    else
        fprintf(ctx->out, "%s: %s\n", vm_id, vm ? units_state_name(vm->state) : "deleted");
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* The commands that are exactly one call per VM, by command name. */
static const struct {
    const char *command, *method;
    const ProtobufCMessageDescriptor *req, *resp;
} simple_calls[] = {
    {"get", "GetVmInfo", &cloudhypervisor__v1__get_vm_info_request__descriptor,
     &cloudhypervisor__v1__get_vm_info_response__descriptor},
    {"boot", "BootVm", &cloudhypervisor__v1__boot_vm_request__descriptor,
     &cloudhypervisor__v1__boot_vm_response__descriptor},
    {"pause", "PauseVm", &cloudhypervisor__v1__pause_vm_request__descriptor,
     &cloudhypervisor__v1__pause_vm_response__descriptor},
    {"resume", "ResumeVm", &cloudhypervisor__v1__resume_vm_request__descriptor,
     &cloudhypervisor__v1__resume_vm_response__descriptor},
    {"reboot", "RebootVm", &cloudhypervisor__v1__reboot_vm_request__descriptor,
     &cloudhypervisor__v1__reboot_vm_response__descriptor},
    {"delete", "DeleteVm", &cloudhypervisor__v1__delete_vm_request__descriptor,
     &cloudhypervisor__v1__delete_vm_response__descriptor},
};

int cmd_vm_call(cli_ctx *ctx)
{
    size_t k = 0;
    while (k < ARRAY_SIZE(simple_calls) && strcmp(simple_calls[k].command, ctx->cmd->name) != 0)
        k++;
    if (k == ARRAY_SIZE(simple_calls))
        abort(); /* a command table row points here without a call: a programming error */
    const ProtobufCMessageDescriptor *req_desc = simple_calls[k].req;
    bool get = strcmp(simple_calls[k].method, "GetVmInfo") == 0;
    for (size_t i = 0; i < ctx->n_args; i++) {
        cleanup_free Message *req = xcalloc(1, req_desc->sizeof_message);
        req_desc->message_init(req);
        set_vm_id(req, ctx->args[i]);
        if (ctx->output == CLI_OUTPUT_TABLE && i > 0 && get)
            fputc('\n', ctx->out);
        int rc = call_vm(ctx, simple_calls[k].method, req, simple_calls[k].resp, ctx->args[i]);
        if (rc == CLI_EXIT_INTERRUPTED || rc == CLI_EXIT_USAGE)
            break;
    }
    return ctx->exit_code;
}

int cmd_shutdown(cli_ctx *ctx)
{
    Google__Protobuf__Duration grace = GOOGLE__PROTOBUF__DURATION__INIT;
    const char *grace_text = cli_opt(ctx, "grace");
    if (grace_text) {
        uint64_t ms;
        chcp_error *err = NULL;
        if (units_parse_duration(grace_text, &ms, &err) < 0) {
            int rc = cli_usage_error(ctx, "--grace: %s", err->message);
            error_free(err);
            return rc;
        }
        if (cli_flag(ctx, "force"))
            return cli_usage_error(ctx, "--grace and --force exclude each other");
        grace.seconds = (int64_t)(ms / 1000);
        grace.nanos = (int32_t)(ms % 1000) * 1000000;
    }
    for (size_t i = 0; i < ctx->n_args; i++) {
        Cloudhypervisor__V1__ShutdownVmRequest req = CLOUDHYPERVISOR__V1__SHUTDOWN_VM_REQUEST__INIT;
        req.vm_id = ctx->args[i];
        req.force = cli_flag(ctx, "force");
        req.graceful_timeout = grace_text ? &grace : NULL;
        int rc = call_vm(ctx, "ShutdownVm", &req.base,
                         &cloudhypervisor__v1__shutdown_vm_response__descriptor, ctx->args[i]);
        if (rc == CLI_EXIT_INTERRUPTED || rc == CLI_EXIT_USAGE)
            break;
    }
    return ctx->exit_code;
}

/* ---- list ------------------------------------------------------------------------------ */

static int list_filters(cli_ctx *ctx, Cloudhypervisor__V1__ListVmsRequest *req, char ***owned)
{
    const cli_values *states = cli_opt_all(ctx, "state");
    for (size_t i = 0; states && i < states->n; i++) {
        cleanup_free char *copy = xstrdup(states->v[i]);
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            Cloudhypervisor__V1__VmState st;
            if (units_parse_state(tok, &st) < 0)
                return cli_usage_error(ctx, "--state: unknown state '%s'", tok);
            req->states = xrealloc(req->states, (req->n_states + 1) * sizeof(*req->states));
            req->states[req->n_states++] = st;
        }
    }
    const char *size = cli_opt(ctx, "page-size");
    uint64_t page_size = 1000;
    if (size && (!str_to_u64(size, 1000, &page_size) || page_size == 0))
        return cli_usage_error(ctx, "--page-size: expected 1-1000, got '%s'", size);
    req->page_size = (uint32_t)page_size;
    const cli_values *labels = cli_opt_all(ctx, "label");
    size_t n = labels ? labels->n : 0;
    *owned = xcalloc(n + 1, sizeof(char *));
    req->labels = xcalloc(n + 1, sizeof(*req->labels));
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        chcp_error *err = NULL;
        if (units_split_label(labels->v[i], &(*owned)[i], &k, &v, &err) < 0) {
            int rc = cli_usage_error(ctx, "--label: %s", err->message);
            error_free(err);
            return rc;
        }
        Cloudhypervisor__V1__ListVmsRequest__LabelsEntry *e = xmalloc(sizeof(*e));
        cloudhypervisor__v1__list_vms_request__labels_entry__init(e);
        e->key = (char *)k;
        e->value = (char *)v;
        req->labels[req->n_labels++] = e;
    }
    return 0;
}

static void list_filters_free(Cloudhypervisor__V1__ListVmsRequest *req, char **owned)
{
    for (size_t i = 0; i < req->n_labels; i++)
        free(req->labels[i]);
    free(req->labels);
    free(req->states);
    for (size_t i = 0; owned && owned[i]; i++)
        free(owned[i]);
    free(owned);
}

/* Every page, into one response message (its next_page_token left empty). */
static int list_all(cli_ctx *ctx, Cloudhypervisor__V1__ListVmsRequest *req,
                    Cloudhypervisor__V1__ListVmsResponse **all)
{
    chcp_client *c = cli_client(ctx);
    if (!c)
        return cli_failed(ctx);
    *all = NULL;
    char *token = NULL;
    do {
        req->page_token = token ? token : (char *)"";
        Message *resp = NULL;
        chcp_error *err = NULL;
        int rc = client_call(c, "ListVms", &req->base,
                             &cloudhypervisor__v1__list_vms_response__descriptor, &resp, &err);
        free(token);
        token = NULL;
        if (rc < 0) {
            rc = cli_report(ctx, err, NULL, "list");
            error_free(err);
            return rc;
        }
        Cloudhypervisor__V1__ListVmsResponse *page = (void *)resp;
        if (page->next_page_token[0])
            token = xstrdup(page->next_page_token);
        if (!*all) {
            *all = page;
            continue;
        }
        (*all)->vms = xrealloc((*all)->vms, ((*all)->n_vms + page->n_vms) * sizeof(VmInfo *));
        memcpy((*all)->vms + (*all)->n_vms, page->vms, page->n_vms * sizeof(VmInfo *));
        (*all)->n_vms += page->n_vms;
        page->n_vms = 0; /* moved */
        protobuf_c_message_free_unpacked(resp, NULL);
    } while (token);
    /* protobuf-c frees a string unless it is the field's default. */
    if ((*all)->next_page_token != protobuf_c_empty_string)
        free((*all)->next_page_token);
    (*all)->next_page_token = (char *)protobuf_c_empty_string;
    return 0;
}

int cmd_list(cli_ctx *ctx)
{
    Cloudhypervisor__V1__ListVmsRequest req = CLOUDHYPERVISOR__V1__LIST_VMS_REQUEST__INIT;
    char **owned = NULL;
    int rc = list_filters(ctx, &req, &owned);
    Cloudhypervisor__V1__ListVmsResponse *all = NULL;
    if (rc == 0)
        rc = list_all(ctx, &req, &all);
    list_filters_free(&req, owned);
    if (rc || !all)
        return rc ? rc : cli_failed(ctx);
    if (ctx->output == CLI_OUTPUT_JSON)
        render_json(ctx, &all->base);
    else if (cli_flag(ctx, "quiet"))
        for (size_t i = 0; i < all->n_vms; i++)
            fprintf(ctx->out, "%s\n", all->vms[i]->vm_id);
    else
        render_vm_table(ctx, all->vms, all->n_vms, !cli_flag(ctx, "no-headers"));
    protobuf_c_message_free_unpacked(&all->base, NULL);
    return ctx->exit_code;
}
