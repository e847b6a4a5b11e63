/*
 * cmd_create.c - `chcpctl create`: a CreateVmRequest from a file, flags, or
 * both, then CreateVm (and BootVm with --boot).
 *
 * The file is normalised first (spec.c: checked against the schema, field
 * names made canonical), flags are then written over it by canonical name,
 * and the whole is checked and decoded once more: so a file written in
 * snake_case and a flag never collide as two spellings of one field, and a
 * bad flag value gets the same precise message as a bad file value.
 */
#include "cli/cli.h"

#include <string.h>

typedef Cloudhypervisor__V1__CreateVmRequest CreateVmRequest;

/* Set root.a.b.c = value (stolen), creating mappings on the way. */
static int set_path(json_t *root, const char *dotted, json_t *value, chcp_error **err)
{
    cleanup_free char *copy = xstrdup(dotted);
    json_t *node = root;
    char *save = NULL;
    char *part = strtok_r(copy, ".", &save);
    for (char *next; (next = strtok_r(NULL, ".", &save)); part = next) {
        json_t *child = json_object_get(node, part);
        if (!child) {
            child = json_object();
            json_object_set_new(node, part, child);
        } else if (!json_is_object(child)) {
            json_decref(value);
            return error_set(err, CHCP_INVALID_ARGUMENT, "the file's %s is not a mapping", part);
        }
        node = child;
    }
    json_object_set_new(node, part, value);
    return 0;
}

/* The mapping or list at root.<name>, created when missing. */
static json_t *child_at(json_t *root, const char *name, json_type type, chcp_error **err)
{
    json_t *existing = json_object_get(root, name);
    if (existing && json_typeof(existing) != type) {
        error_set(err, CHCP_INVALID_ARGUMENT, "the file's %s is not a %s", name,
                  type == JSON_ARRAY ? "list" : "mapping");
        return NULL;
    }
    if (existing)
        return existing;
    json_t *fresh = type == JSON_ARRAY ? json_array() : json_object();
    json_object_set_new(root, name, fresh);
    return fresh;
}

/* "PATH,readonly=on,image-type=raw" -> {"path": "PATH", "readonly": "on", ...};
 * a bare word after the first means "word=true" (readonly, direct). */
static json_t *parse_device(const char *flag, const char *text, const char *first_key,
                            chcp_error **err)
{
    json_t *obj = json_object();
    cleanup_free char *copy = xstrdup(text);
    char *save = NULL;
    int i = 0;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save), i++) {
        char *eq = strchr(item, '=');
        const char *value = eq ? eq + 1 : "true";
        if (eq)
            *eq = '\0';
        else if (i == 0) {
            value = item;
            item = (char *)first_key;
        }
        cleanup_free char *key = xstrdup(item);
        for (char *k = key; *k; k++)
            if (*k == '-')
                *k = '_';
        if (!*key || json_object_get(obj, key)) {
            error_set(err, CHCP_INVALID_ARGUMENT, "--%s %s: %s '%s'", flag, text,
                      *key ? "repeated key" : "empty key", item);
            json_decref(obj);
            return NULL;
        }
        json_object_set_new(obj, key, json_string(value));
    }
    if (json_object_size(obj) == 0) {
        error_set(err, CHCP_INVALID_ARGUMENT, "--%s: empty value", flag);
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static int add_devices(const cli_ctx *ctx, json_t *root, const char *flag, const char *list_name,
                       const char *first_key, chcp_error **err)
{
    const cli_values *v = cli_opt_all(ctx, flag);
    if (!v)
        return 0;
    json_t *config = child_at(root, "config", JSON_OBJECT, err);
    json_t *list = config ? child_at(config, list_name, JSON_ARRAY, err) : NULL;
    if (!list)
        return -1;
    for (size_t i = 0; i < v->n; i++) {
        json_t *dev = parse_device(flag, v->v[i], first_key, err);
        if (!dev)
            return -1;
        json_array_append_new(list, dev);
    }
    return 0;
}

/* Flags over the (normalised) document. */
static int apply_flags(const cli_ctx *ctx, json_t *root, chcp_error **err)
{
    static const struct {
        const char *flag, *path;
    } scalars[] = {
        {"kernel", "config.payload.kernel"},   {"initramfs", "config.payload.initramfs"},
        {"cmdline", "config.payload.cmdline"}, {"firmware", "config.payload.firmware"},
        {"cpus", "config.cpus.bootVcpus"},     {"max-cpus", "config.cpus.maxVcpus"},
        {"memory", "config.memory.size"},      {"console", "config.console.mode"},
        {"serial", "config.serial.mode"},
    };
    if (ctx->n_args && set_path(root, "vmId", json_string(ctx->args[0]), err) < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(scalars); i++) {
        const char *v = cli_opt(ctx, scalars[i].flag);
        if (v && set_path(root, scalars[i].path, render_json_string(v), err) < 0)
            return -1;
    }
    if (add_devices(ctx, root, "disk", "disks", "path", err) < 0 ||
        add_devices(ctx, root, "net", "net", "tap", err) < 0)
        return -1;
    const cli_values *labels = cli_opt_all(ctx, "label");
    json_t *map = labels ? child_at(root, "labels", JSON_OBJECT, err) : NULL;
    if (labels && !map)
        return -1;
    for (size_t i = 0; labels && i < labels->n; i++) {
        char *owned = NULL;
        const char *k, *v;
        if (units_split_label(labels->v[i], &owned, &k, &v, err) < 0)
            return -1;
        json_object_set_new(map, k, render_json_string(v));
        free(owned);
    }
    return 0;
}

static CreateVmRequest *build_request(cli_ctx *ctx, chcp_error **err)
{
    const char *file = cli_opt(ctx, "file");
    json_t *doc = file ? spec_load_file(file, err) : json_object();
    if (!doc)
        return NULL;
    json_t *norm = spec_normalize(doc, &cloudhypervisor__v1__create_vm_request__descriptor, err);
    json_decref(doc);
    if (!norm)
        return NULL;
    ProtobufCMessage *req = NULL;
    if (apply_flags(ctx, norm, err) == 0)
        req = spec_decode(norm, &cloudhypervisor__v1__create_vm_request__descriptor, err);
    json_decref(norm);
    return (CreateVmRequest *)req;
}

static void print_vm(cli_ctx *ctx, const VmInfo *vm)
{
    if (ctx->output == CLI_OUTPUT_JSON)
        render_json(ctx, &vm->base);
    else
        fprintf(ctx->out, "%s: %s\n", vm->vm_id, units_state_name(vm->state));
}

static int boot_created(cli_ctx *ctx, chcp_client *c, const char *vm_id)
{
    Cloudhypervisor__V1__BootVmRequest req = CLOUDHYPERVISOR__V1__BOOT_VM_REQUEST__INIT;
    req.vm_id = (char *)vm_id;
    ProtobufCMessage *resp = NULL;
    chcp_error *err = NULL;
    if (client_call(c, "BootVm", &req.base, &cloudhypervisor__v1__boot_vm_response__descriptor,
                    &resp, &err) < 0) {
        int rc = cli_report(ctx, err, vm_id, "create: %s was created; boot", vm_id);
        error_free(err);
        return rc;
    }
    print_vm(ctx, ((Cloudhypervisor__V1__BootVmResponse *)resp)->vm);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

int cmd_create(cli_ctx *ctx)
{
    chcp_error *err = NULL;
    CreateVmRequest *req = build_request(ctx, &err);
    if (!req) {
        int rc = cli_report_input(ctx, err, "create");
        error_free(err);
        return rc;
    }
    int rc = 0;
    if (cli_flag(ctx, "dry-run")) {
        rc = render_json(ctx, &req->base);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        return rc;
    }
    chcp_client *c = cli_client(ctx);
    ProtobufCMessage *resp = NULL;
    if (!c) {
        rc = cli_failed(ctx);
    } else if (client_call(c, "CreateVm", &req->base,
                           &cloudhypervisor__v1__create_vm_response__descriptor, &resp, &err) < 0) {
        rc = cli_report(ctx, err, req->vm_id[0] ? req->vm_id : NULL, "create%s%s",
                        req->vm_id[0] ? " " : "", req->vm_id);
        error_free(err);
    } else {
        const VmInfo *vm = ((Cloudhypervisor__V1__CreateVmResponse *)resp)->vm;
        if (cli_flag(ctx, "boot"))
            rc = boot_created(ctx, c, vm->vm_id);
        else
            print_vm(ctx, vm);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return rc;
}
