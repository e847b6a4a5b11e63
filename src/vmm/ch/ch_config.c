/*
 * ch_config.c - Cloud Hypervisor JSON: rendering VmConfig / NetConfig from
 * the plain C structs of ch.h, and reading vm.info, vmm.ping and error bodies.
 *
 * CH silently ignores unknown keys and validates most things only at vm.boot,
 * so we validate here what we can (one boot item, sane counts, required
 * strings) and emit only keys we set, leaving CH's defaults otherwise.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <string.h>

#include "vmm/ch/ch_priv.h"

#define CH_MAX_VCPUS 512
#define CH_MAX_QUEUES 256
#define CH_MAX_LIST 64

static bool str_ok(const char *s)
{
    return s && s[0] && strlen(s) < 4096;
}

static bool opt_ok(const char *s)
{
    return !s || (s[0] && strlen(s) < 4096);
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

static bool mac_ok(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    return true;
}

static bool ipv4_ok(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static json_t *net_json(const ch_net_config *n, size_t idx, chcp_error **err)
{
    if (!opt_ok(n->tap) || !opt_ok(n->id) || (n->tap && strlen(n->tap) > 15)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "net[%zu]: invalid tap name or id", idx);
        return NULL;
    }
    if (n->mac && !mac_ok(n->mac)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "net[%zu]: invalid MAC address '%s'", idx, n->mac);
        return NULL;
    }
    if ((n->ip && !ipv4_ok(n->ip)) || (n->mask && !ipv4_ok(n->mask))) {
        error_set(err, CHCP_INVALID_ARGUMENT, "net[%zu]: invalid IPv4 address or mask", idx);
        return NULL;
    }
    if (n->mtu && (n->mtu < 68 || n->mtu > 65535)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "net[%zu]: mtu %u out of range 68..65535", idx,
                  n->mtu);
        return NULL;
    }
    /* CH uses one RX and one TX queue per pair: an even count. */
    if (n->num_queues && (n->num_queues % 2 || n->num_queues > CH_MAX_QUEUES)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "net[%zu]: num_queues must be even and <= %d", idx,
                  CH_MAX_QUEUES);
        return NULL;
    }
    if (n->queue_size && (n->queue_size > 32768 || (n->queue_size & (n->queue_size - 1)))) {
        error_set(err, CHCP_INVALID_ARGUMENT, "net[%zu]: queue_size must be a power of two", idx);
        return NULL;
    }
    json_t *o = json_object();
    set_str(o, "tap", n->tap);
    set_str(o, "mac", n->mac);
    set_str(o, "ip", n->ip);
    set_str(o, "mask", n->mask);
    if (n->mtu)
        json_object_set_new(o, "mtu", json_integer(n->mtu));
    if (n->num_queues)
        json_object_set_new(o, "num_queues", json_integer(n->num_queues));
    if (n->queue_size)
        json_object_set_new(o, "queue_size", json_integer(n->queue_size));
    set_str(o, "id", n->id);
    return o;
}

static json_t *disk_json(const ch_disk_config *d, size_t idx, chcp_error **err)
{
    static const char *const types[] = {"Raw", "Qcow2", "FixedVhd", "Vhdx", "Unknown"};
    if (!str_ok(d->path) || d->path[0] != '/') {
        error_set(err, CHCP_INVALID_ARGUMENT, "disks[%zu]: an absolute path is required", idx);
        return NULL;
    }
    if (!opt_ok(d->id) || !opt_ok(d->serial) || (d->serial && strlen(d->serial) > 20)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "disks[%zu]: invalid id or serial (max 20)", idx);
        return NULL;
    }
    bool type_ok = !d->image_type;
    for (size_t i = 0; d->image_type && i < ARRAY_SIZE(types); i++)
        type_ok |= strcmp(d->image_type, types[i]) == 0;
    if (!type_ok) {
        error_set(err, CHCP_INVALID_ARGUMENT, "disks[%zu]: unknown image_type '%s'", idx,
                  d->image_type);
        return NULL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(d->path));
    if (d->readonly)
        json_object_set_new(o, "readonly", json_true());
    if (d->direct)
        json_object_set_new(o, "direct", json_true());
    set_str(o, "id", d->id);
    set_str(o, "serial", d->serial);
    set_str(o, "image_type", d->image_type);
    return o;
}

static json_t *console_json(const ch_console_config *c, const char *what, chcp_error **err)
{
    static const char *const modes[] = {NULL, "Off", "Pty", "Tty", "File", "Socket", "Null"};
    if ((unsigned)c->mode >= ARRAY_SIZE(modes)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: unknown mode", what);
        return NULL;
    }
    if (c->mode == CH_CONSOLE_FILE && !str_ok(c->file)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: mode File needs a file path", what);
        return NULL;
    }
    if (c->mode == CH_CONSOLE_SOCKET && !str_ok(c->socket)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: mode Socket needs a socket path", what);
        return NULL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "mode", json_string(modes[c->mode]));
    if (c->mode == CH_CONSOLE_FILE)
        set_str(o, "file", c->file);
    if (c->mode == CH_CONSOLE_SOCKET)
        set_str(o, "socket", c->socket);
    return o;
}

static int payload_json(json_t *root, const ch_vm_config *c, chcp_error **err)
{
    bool k = c->payload.kernel != NULL, f = c->payload.firmware != NULL;
    if (k == f)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "payload: exactly one of kernel or firmware is required");
    if (!opt_ok(c->payload.kernel) || !opt_ok(c->payload.firmware) ||
        !opt_ok(c->payload.initramfs) || (c->payload.cmdline && strlen(c->payload.cmdline) > 4095))
        return error_set(err, CHCP_INVALID_ARGUMENT, "payload: invalid path or cmdline");
    json_t *p = json_object();
    set_str(p, "kernel", c->payload.kernel);
    set_str(p, "firmware", c->payload.firmware);
    set_str(p, "cmdline", c->payload.cmdline);
    set_str(p, "initramfs", c->payload.initramfs);
    json_object_set_new(root, "payload", p);
    return 0;
}

static int cpus_memory_json(json_t *root, const ch_vm_config *c, chcp_error **err)
{
    if (c->cpus.boot_vcpus || c->cpus.max_vcpus) {
        uint32_t boot = c->cpus.boot_vcpus, max = c->cpus.max_vcpus ? c->cpus.max_vcpus : boot;
        if (boot == 0 || boot > max || max > CH_MAX_VCPUS)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "cpus: need 1 <= boot_vcpus (%u) <= max_vcpus (%u) <= %d", boot, max,
                             CH_MAX_VCPUS);
        json_object_set_new(
            root, "cpus",
            json_pack("{s:I,s:I}", "boot_vcpus", (json_int_t)boot, "max_vcpus", (json_int_t)max));
    }
    if (c->memory.size || c->memory.shared || c->memory.hugepages) {
        if (c->memory.size < (1u << 20) || c->memory.size % 4096 || c->memory.size > (1ull << 46))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "memory: size %llu must be a multiple of 4096, >= 1 MiB",
                             (unsigned long long)c->memory.size);
        json_t *m = json_pack("{s:I}", "size", (json_int_t)c->memory.size);
        if (c->memory.shared)
            json_object_set_new(m, "shared", json_true());
        if (c->memory.hugepages)
            json_object_set_new(m, "hugepages", json_true());
        json_object_set_new(root, "memory", m);
    }
    return 0;
}

static int devices_json(json_t *root, const ch_vm_config *c, chcp_error **err)
{
    if (c->n_disks > CH_MAX_LIST || c->n_net > CH_MAX_LIST || (c->n_disks && !c->disks) ||
        (c->n_net && !c->net))
        return error_set(err, CHCP_INVALID_ARGUMENT, "at most %d disks and %d nets", CH_MAX_LIST,
                         CH_MAX_LIST);
    if (c->n_disks) {
        json_t *a = json_array();
        json_object_set_new(root, "disks", a);
        for (size_t i = 0; i < c->n_disks; i++) {
            json_t *d = disk_json(&c->disks[i], i, err);
            if (!d)
                return -1;
            json_array_append_new(a, d);
        }
    }
    if (c->n_net) {
        json_t *a = json_array();
        json_object_set_new(root, "net", a);
        for (size_t i = 0; i < c->n_net; i++) {
            json_t *n = net_json(&c->net[i], i, err);
            if (!n)
                return -1;
            json_array_append_new(a, n);
        }
    }
    if (c->rng_src) {
        if (!str_ok(c->rng_src))
            return error_set(err, CHCP_INVALID_ARGUMENT, "rng: invalid src");
        json_object_set_new(root, "rng", json_pack("{s:s}", "src", c->rng_src));
    }
    const ch_console_config *cons[2] = {&c->serial, &c->console};
    const char *names[2] = {"serial", "console"};
    for (int i = 0; i < 2; i++) {
        if (cons[i]->mode == CH_CONSOLE_DEFAULT)
            continue;
        json_t *o = console_json(cons[i], names[i], err);
        if (!o)
            return -1;
        json_object_set_new(root, names[i], o);
    }
    if (c->vsock.cid || c->vsock.socket) {
        if (c->vsock.cid < 3 || c->vsock.cid == UINT32_MAX || !str_ok(c->vsock.socket))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "vsock: cid must be >= 3 and a socket path is required");
        json_object_set_new(
            root, "vsock",
            json_pack("{s:I,s:s}", "cid", (json_int_t)c->vsock.cid, "socket", c->vsock.socket));
    }
    return 0;
}

static int platform_json(json_t *root, const ch_vm_config *c, chcp_error **err)
{
    if (!c->platform.num_pci_segments && !c->platform.serial_number && !c->platform.uuid)
        return 0;
    if (c->platform.num_pci_segments > 16 || !opt_ok(c->platform.serial_number) ||
        !opt_ok(c->platform.uuid))
        return error_set(err, CHCP_INVALID_ARGUMENT, "platform: invalid settings");
    json_t *p = json_object();
    if (c->platform.num_pci_segments)
        json_object_set_new(p, "num_pci_segments", json_integer(c->platform.num_pci_segments));
    set_str(p, "serial_number", c->platform.serial_number);
    set_str(p, "uuid", c->platform.uuid);
    json_object_set_new(root, "platform", p);
    return 0;
}

char *ch_vm_config_to_json(const ch_vm_config *cfg, chcp_error **err)
{
    if (!cfg) {
        error_set(err, CHCP_INVALID_ARGUMENT, "no VM config");
        return NULL;
    }
    json_t *root = json_object();
    char *out = NULL;
    if (payload_json(root, cfg, err) == 0 && cpus_memory_json(root, cfg, err) == 0 &&
        devices_json(root, cfg, err) == 0 && platform_json(root, cfg, err) == 0)
        out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

char *ch_net_config_to_json(const ch_net_config *net, chcp_error **err)
{
    if (!net) {
        error_set(err, CHCP_INVALID_ARGUMENT, "no net config");
        return NULL;
    }
    json_t *o = net_json(net, 0, err);
    if (!o)
        return NULL;
    char *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return out;
}

/* ---- answers ------------------------------------------------------------------------- */

static const char *const state_names[] = {"Unknown", "Created", "Running", "Paused", "Shutdown"};

const char *ch_vm_state_name(ch_vm_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "Unknown";
}

int ch_parse_vm_info(const char *body, size_t len, ch_vm_info *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    json_t *root = json_loadb(body ? body : "", len, 0, NULL);
    const json_t *state = json_object_get(root, "state");
    if (!json_is_object(root) || !json_is_string(state)) {
        json_decref(root);
        return error_set(err, CHCP_INTERNAL, "vm.info: malformed answer from the VMM");
    }
    for (size_t i = 1; i < ARRAY_SIZE(state_names); i++)
        if (strcmp(json_string_value(state), state_names[i]) == 0)
            out->state = (ch_vm_state)i;
    const json_t *mem = json_object_get(root, "memory_actual_size");
    if (json_is_integer(mem) && json_integer_value(mem) >= 0) {
        out->has_memory_actual_size = true;
        out->memory_actual_size = (uint64_t)json_integer_value(mem);
    }
    json_decref(root);
    return 0;
}

static void copy_str(char *dst, size_t cap, const json_t *v)
{
    dst[0] = 0;
    if (json_is_string(v))
        snprintf(dst, cap, "%s", json_string_value(v));
}

int ch_parse_ping(const char *body, size_t len, ch_ping_info *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    out->pid = -1;
    json_t *root = json_loadb(body ? body : "", len, 0, NULL);
    if (!json_is_object(root) || !json_is_string(json_object_get(root, "version"))) {
        json_decref(root);
        return error_set(err, CHCP_INTERNAL, "vmm.ping: malformed answer from the VMM");
    }
    copy_str(out->version, sizeof(out->version), json_object_get(root, "version"));
    copy_str(out->build_version, sizeof(out->build_version),
             json_object_get(root, "build_version"));
    const json_t *pid = json_object_get(root, "pid");
    if (json_is_integer(pid))
        out->pid = json_integer_value(pid);
    json_decref(root);
    return 0;
}

#define CH_ERROR_MAX 2048

char *ch_error_chain(int status, const char *body, size_t len)
{
    chcp_buf b = CHCP_BUF_INIT;
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    if (json_is_array(root)) {
        size_t i;
        json_t *v;
        json_array_foreach(root, i, v)
        {
            if (!json_is_string(v) || !json_string_value(v)[0])
                continue;
            if (b.len)
                buf_append_str(&b, ": ");
            buf_append_str(&b, json_string_value(v));
        }
    } else if (json_is_string(root)) {
        buf_append_str(&b, json_string_value(root));
    } else if (body && len) {
        /* Not CH's format (a proxy? another VMM?): keep it readable. */
        for (size_t i = 0; i < len && b.len < CH_ERROR_MAX; i++) {
            unsigned char c = (unsigned char)body[i];
            buf_append_byte(&b, (c < 0x20 || c > 0x7e) ? ' ' : c);
        }
        while (b.len && b.data[b.len - 1] == ' ')
            b.len--;
    }
    json_decref(root);
    if (b.len > CH_ERROR_MAX) {
        b.len = CH_ERROR_MAX;
        buf_append_str(&b, "...");
    }
    if (!b.len)
        buf_printf(&b, "HTTP %d from the VMM", status);
    return buf_steal_str(&b);
}
