/*
 * render.c - what chcpctl prints: tables and details for people, protojson for
 * programs.
 *
 * Text for people never passes server-supplied strings (labels, reasons,
 * error messages) to the terminal raw: control characters, escape sequences
 * included, are shown as '?'. JSON output is the API's own proto3 JSON mapping
 * (src/rpc/protojson.h), one document per line, so `jq` and the API reference
 * both apply.
 *
 * Where the configuration leaves a value to Cloud Hypervisor, the details show
 * Cloud Hypervisor's default (1 vCPU, 512 MiB), which is what the guest gets.
 */
#include "cli/cli.h"

#include <stdarg.h>
#include <string.h>

#include "rpc/protojson.h"

#define CH_DEFAULT_VCPUS 1
#define CH_DEFAULT_MEMORY (512ull << 20)

void render_safe(chcp_buf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x20 || *p == 0x7f) {
            buf_append_byte(out, '?');
            p++;
        } else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) { /* C1 controls */
            buf_append_byte(out, '?');
            p += 2;
        } else {
            buf_append_byte(out, *p++);
        }
    }
}

json_t *render_json_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    cleanup_free char *copy = xstrdup(s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    return json_string(copy);
}

int render_json(cli_ctx *ctx, const ProtobufCMessage *msg)
{
    chcp_buf b = CHCP_BUF_INIT;
    chcp_error *err = NULL;
    if (protojson_encode(msg, &b, &err) < 0) {
        int rc = cli_report(ctx, err, NULL, "encoding JSON");
        error_free(err);
        buf_free(&b);
        return rc;
    }
    buf_append_byte(&b, '\n');
    fwrite(b.data, 1, b.len, ctx->out);
    buf_free(&b);
    return 0;
}

/* ---- tables ----------------------------------------------------------------------- */

/* Terminal columns of UTF-8 text (one per code point: good enough for ids
 * and labels). */
static size_t columns(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xc0) != 0x80)
            n++;
    return n;
}

typedef struct table {
    size_t n_cols;
    char **cells; /* row-major */
    size_t n_cells;
} table;

static void table_add(table *t, const char *text)
{
    chcp_buf b = CHCP_BUF_INIT;
    render_safe(&b, text);
    t->cells = xrealloc(t->cells, (t->n_cells + 1) * sizeof(char *));
    t->cells[t->n_cells++] = buf_steal_str(&b);
}

static void table_print(FILE *f, table *t)
{
    size_t widths[16] = {0};
    for (size_t i = 0; i < t->n_cells; i++) {
        size_t w = columns(t->cells[i]);
        if (w > widths[i % t->n_cols])
            widths[i % t->n_cols] = w;
    }
    for (size_t i = 0; i < t->n_cells; i++) {
        size_t col = i % t->n_cols;
        bool last = col == t->n_cols - 1;
        fputs(t->cells[i], f);
        if (last)
            fputc('\n', f);
        else
            fprintf(f, "%*s", (int)(widths[col] - columns(t->cells[i]) + 3), "");
        free(t->cells[i]);
    }
    free(t->cells);
}

static void labels_text(chcp_buf *b, const VmInfo *vm)
{
    for (size_t i = 0; i < vm->n_labels; i++)
        buf_printf(b, "%s%s=%s", i ? "," : "", vm->labels[i]->key, vm->labels[i]->value);
}

static uint32_t vm_vcpus(const VmInfo *vm)
{
    const Cloudhypervisor__V1__CpusConfig *c = vm->config ? vm->config->cpus : NULL;
    return c && c->boot_vcpus ? c->boot_vcpus : CH_DEFAULT_VCPUS;
}

static uint64_t vm_memory(const VmInfo *vm)
{
    const Cloudhypervisor__V1__MemoryConfig *m = vm->config ? vm->config->memory : NULL;
    return m && m->size ? m->size : CH_DEFAULT_MEMORY;
}

void render_vm_table(cli_ctx *ctx, VmInfo *const *vms, size_t n, bool headers)
{
    static const char *const head[] = {"VM", "STATE", "CPUS", "MEMORY", "PID", "AGE", "LABELS"};
    table t = {.n_cols = ARRAY_SIZE(head)};
    if (headers)
        for (size_t i = 0; i < ARRAY_SIZE(head); i++)
            table_add(&t, head[i]);
    for (size_t i = 0; i < n; i++) {
        const VmInfo *vm = vms[i];
        chcp_buf b = CHCP_BUF_INIT;
        table_add(&t, vm->vm_id);
        table_add(&t, units_state_name(vm->state));
        buf_printf(&b, "%u", vm_vcpus(vm));
        buf_append_byte(&b, 0);
        table_add(&t, (char *)b.data);
        buf_reset(&b);
        units_format_size(&b, vm_memory(vm));
        buf_append_byte(&b, 0);
        table_add(&t, (char *)b.data);
        buf_reset(&b);
        if (vm->vmm_pid)
            buf_printf(&b, "%d", vm->vmm_pid);
        else
            buf_append_str(&b, "-");
        buf_append_byte(&b, 0);
        table_add(&t, (char *)b.data);
        buf_reset(&b);
        units_format_age(&b, vm->created_at);
        buf_append_byte(&b, 0);
        table_add(&t, (char *)b.data);
        buf_reset(&b);
        labels_text(&b, vm);
        buf_append_byte(&b, 0);
        table_add(&t, (char *)b.data);
        buf_free(&b);
    }
    table_print(ctx->out, &t);
}

/* ---- details ------------------------------------------------------------------------ */

static void field(FILE *f, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void field(FILE *f, const char *name, const char *fmt, ...)
{
    chcp_buf raw = CHCP_BUF_INIT, safe = CHCP_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&raw, fmt, ap);
    va_end(ap);
    buf_append_byte(&raw, 0);
    render_safe(&safe, (char *)raw.data);
    buf_append_byte(&safe, 0);
    fprintf(f, "%-12s %s\n", name, (char *)safe.data);
    buf_free(&raw);
    buf_free(&safe);
}

static const char *enum_short(const ProtobufCEnumDescriptor *d, int v, char *buf, size_t len)
{
    return units_enum_short(d, v, buf, len);
}

static void render_payload(FILE *f, const Cloudhypervisor__V1__PayloadConfig *p)
{
    if (!p)
        return;
    if (p->kernel[0])
        field(f, "Kernel:", "%s", p->kernel);
    if (p->firmware[0])
        field(f, "Firmware:", "%s", p->firmware);
    if (p->initramfs[0])
        field(f, "Initramfs:", "%s", p->initramfs);
    if (p->cmdline[0])
        field(f, "Cmdline:", "%s", p->cmdline);
}

static void render_devices(FILE *f, const Cloudhypervisor__V1__VmConfig *c)
{
    char e[32];
    for (size_t i = 0; i < c->n_disks; i++) {
        const Cloudhypervisor__V1__DiskConfig *d = c->disks[i];
        field(f, i ? "" : "Disks:", "%s%s%s%s%s%s%s", d->path, d->readonly ? " (read-only)" : "",
              d->image_type ? " " : "",
              d->image_type ? enum_short(&cloudhypervisor__v1__disk_image_type__descriptor,
                                         (int)d->image_type, e, sizeof(e))
                            : "",
              d->id[0] ? " id=" : "", d->id, d->direct ? " direct" : "");
    }
    for (size_t i = 0; i < c->n_net; i++) {
        const Cloudhypervisor__V1__NetConfig *n = c->net[i];
        field(f, i ? "" : "Net:", "%s%s%s%s%s%s%s", n->tap[0] ? n->tap : "(tap created by VMM)",
              n->mac[0] ? " mac=" : "", n->mac, n->ip[0] ? " ip=" : "", n->ip,
              n->id[0] ? " id=" : "", n->id);
    }
    if (c->console && c->console->mode)
        field(f, "Console:", "%s",
              enum_short(&cloudhypervisor__v1__console_mode__descriptor, (int)c->console->mode, e,
                         sizeof(e)));
    if (c->serial && c->serial->mode)
        field(f, "Serial:", "%s",
              enum_short(&cloudhypervisor__v1__console_mode__descriptor, (int)c->serial->mode, e,
                         sizeof(e)));
    if (c->vsock)
        field(f, "Vsock:", "cid %llu", (unsigned long long)c->vsock->cid);
}

void render_vm_details(cli_ctx *ctx, const VmInfo *vm)
{
    FILE *f = ctx->out;
    chcp_buf t = CHCP_BUF_INIT, age = CHCP_BUF_INIT;
    field(f, "VM:", "%s", vm->vm_id);
    units_format_time(&t, vm->state_changed_at);
    units_format_age(&age, vm->state_changed_at);
    buf_append_byte(&t, 0);
    buf_append_byte(&age, 0);
    field(f, "State:", "%s (since %s, %s ago)", units_state_name(vm->state), (char *)t.data,
          (char *)age.data);
    if (vm->state_reason[0])
        field(f, "Reason:", "%s", vm->state_reason);
    if (vm->vmm_pid)
        field(f, "VMM:", "pid %d%s%s", vm->vmm_pid, vm->vmm_state[0] ? ", " : "", vm->vmm_state);
    else
        field(f, "VMM:", "not running");
    if (vm->vmm_exit) {
        buf_reset(&t);
        units_format_time(&t, vm->vmm_exit->exited_at);
        buf_append_byte(&t, 0);
        if (vm->vmm_exit->signal)
            field(f, "VMM exit:", "killed by signal %d at %s", vm->vmm_exit->signal,
                  (char *)t.data);
        else
            field(f, "VMM exit:", "exit code %d at %s", vm->vmm_exit->exit_code, (char *)t.data);
    }
    buf_reset(&t);
    units_format_time(&t, vm->created_at);
    buf_append_byte(&t, 0);
    field(f, "Created:", "%s", (char *)t.data);
    buf_reset(&t);
    units_format_time(&t, vm->updated_at);
    buf_append_byte(&t, 0);
    field(f, "Updated:", "%s", (char *)t.data);
    buf_reset(&t);
    labels_text(&t, vm);
    buf_append_byte(&t, 0);
    field(f, "Labels:", "%s", vm->n_labels ? (char *)t.data : "-");
    const Cloudhypervisor__V1__VmConfig *c = vm->config;
    uint32_t max = c && c->cpus ? c->cpus->max_vcpus : 0;
    if (max > vm_vcpus(vm))
        field(f, "CPUs:", "%u (max %u)", vm_vcpus(vm), max);
    else
        field(f, "CPUs:", "%u", vm_vcpus(vm));
    buf_reset(&t);
    units_format_size(&t, vm_memory(vm));
    if (vm->memory_actual_size) {
        buf_append_str(&t, ", in use ");
        units_format_size(&t, vm->memory_actual_size);
    }
    buf_append_byte(&t, 0);
    field(f, "Memory:", "%s", (char *)t.data);
    if (c) {
        render_payload(f, c->payload);
        render_devices(f, c);
    }
    buf_free(&t);
    buf_free(&age);
}
