/*
 * api.c - CH's RequestHandler (vmm/src/lib.rs) on the stand-in's state.
 *
 * Every call runs on the VMM thread. Error bodies are CH's error chains
 * ("Error from API", the ApiError text, then the VmError chain) and the
 * status follows the modelled version's api_error_status_code():
 *   v54 (default): 404 VmNotCreated/VmMissingConfig/NoDeviceToRemove/
 *                  UnknownDeviceId, 409 duplicate id, 400 other validation,
 *                  500 everything else (state errors included);
 *   v53:           404 VmNotCreated/VmMissingConfig, 500 everything else;
 *   v50:           500 for every API error.
 * Events are emitted at the same points as in CH, including the quirky ones
 * (vm/booting before a boot that fails for lack of config, vm/rebooting
 * before a reboot refused with 404, vm/pausing before a refused pause).
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int si_err_status(enum si_err kind, int compat)
{
    switch (kind) {
    case SI_E_NOT_CREATED:
    case SI_E_MISSING_CONFIG:
        return compat == SI_COMPAT_V50 ? 500 : 404;
    case SI_E_NO_DEVICE:
        return compat == SI_COMPAT_V54 ? 404 : 500;
    case SI_E_VALIDATION:
        return compat == SI_COMPAT_V54 ? 400 : 500;
    case SI_E_VALIDATION_UNIQUE:
        return compat == SI_COMPAT_V54 ? 409 : 500;
    default:
        return 500;
    }
}

char *si_json_chain(const char *first, ...)
{
    json_t *a = json_array();
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *))
        json_array_append_new(a, json_string(s));
    va_end(ap);
    char *out = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return out;
}

void si_reply_error(si_reply *r, enum si_err kind, const char *ctx, ...)
{
    json_t *a = json_array();
    json_array_append_new(a, json_string("Error from API"));
    json_array_append_new(a, json_string(ctx));
    va_list ap;
    va_start(ap, ctx);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        json_array_append_new(a, json_string(s));
    va_end(ap);
    free(r->body);
    r->body = json_dumps(a, JSON_COMPACT);
    r->status = si_err_status(kind, g_vm.f.compat);
    LOGI("HTTP API error response: %s", r->body);
    json_decref(a);
}

static void reply_json(si_reply *r, int status, json_t *v)
{
    r->status = status;
    r->body = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
}

static const char *state_name(void)
{
    switch (g_vm.state) {
    case SI_ST_RUNNING:
        return "Running";
    case SI_ST_PAUSED:
        return "Paused";
    default:
        return "Created";
    }
}

/* ---- VMM ------------------------------------------------------------------------- */

static void vmm_ping(si_reply *r)
{
    reply_json(r, 200,
               json_pack("{s:s,s:s,s:I,s:[s,s]}", "build_version", SI_BUILD_VERSION, "version",
                         SI_PKG_VERSION, "pid", (json_int_t)getpid(), "features", "io_uring",
                         "kvm"));
}

static void vmm_shutdown(si_reply *r)
{
    si_vmm_shutdown(0);
    r->status = 200; /* the code sends 200 with an empty body, not the spec's 204 */
}

/* ---- vm.create / vm.delete / vm.info ----------------------------------------------------- */

static void strip_body_fds(json_t *cfg)
{
    const char *lists[] = {"net", "devices"};
    for (int l = 0; l < 2; l++) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(cfg, lists[l]), i, d)
        {
            if (json_object_get(d, "fds") || json_object_get(d, "fd"))
                LOGW("FD numbers were present in HTTP request body but will be ignored");
            json_object_del(d, "fds");
            json_object_del(d, "fd");
        }
    }
}

static void vm_create(si_call *c, si_reply *r)
{
    if (g_vm.config) {
        si_reply_error(r, SI_E_OTHER, "The VM could not be created", "VM is already created", NULL);
        return;
    }
    g_vm.config = json_incref(c->body);
    strip_body_fds(g_vm.config);
    g_vm.f = g_start_faults;
    const char *cmdline =
        json_string_value(json_object_get(json_object_get(g_vm.config, "payload"), "cmdline"));
    if (cmdline)
        si_faults_from_cmdline(&g_vm.f, cmdline);
    si_fault_point("vm.create");
    if (si_console_create(r, "The VM could not be created") < 0)
        return; /* like CH, the config stays stored */
    r->status = 204;
}

static void vm_info(si_reply *r)
{
    if (!g_vm.config) {
        si_reply_error(r, SI_E_NOT_CREATED, "The VM info is not available", "VM is not created",
                       NULL);
        return;
    }
    json_t *mem = json_object_get(g_vm.config, "memory");
    json_int_t size = mem ? json_integer_value(json_object_get(mem, "size")) : 512 << 20;
    size += json_integer_value(json_object_get(mem, "hotplugged_size"));
    json_t *info = json_pack("{s:o,s:s,s:I}", "config", si_config_echo(g_vm.config), "state",
                             state_name(), "memory_actual_size", size);
    if (g_vm.exists)
        json_object_set_new(info, "device_tree", si_device_tree());
    reply_json(r, 200, info);
}

static void vm_delete(si_reply *r)
{
    si_vm_delete();
    r->status = 204;
}

/* ---- boot / shutdown / reboot ------------------------------------------------------------- */

static void vm_boot(si_reply *r)
{
    if (g_vm.exists) {
        si_reply_error(r, SI_E_OTHER, "The VM could not boot", "VM is already created", NULL);
        return;
    }
    si_event("vm", "booting", NULL);
    if (!g_vm.config) {
        si_reply_error(r, SI_E_MISSING_CONFIG, "The VM could not boot", "VM config is missing",
                       NULL);
        return;
    }
    si_fault_point("vm.boot");
    /* console_info is dropped by vm.shutdown: re-created (files truncated) */
    if (!g_vm.console_ready && si_console_create(r, "The VM could not boot") < 0)
        return;
    if (si_guest_boot(r, "The VM could not boot") < 0)
        return;
    si_event("vm", "booted", NULL);
    r->status = 204;
}

static void vm_shutdown(si_reply *r)
{
    if (!g_vm.exists) {
        si_reply_error(r, SI_E_OTHER, "The VM could not shutdown", "VM is not running", NULL);
        return;
    }
    si_guest_stop();
    si_console_release(true);
    si_event("vm", "shutdown", NULL);
    r->status = 204;
}

static void vm_reboot(si_reply *r)
{
    si_event("vm", "rebooting", NULL);
    if (!g_vm.exists) {
        si_reply_error(r, SI_E_NOT_CREATED, "The VM could not reboot", "VM is not created", NULL);
        return;
    }
    si_guest_stop();
    si_console_release(true);
    if (si_console_create(r, "The VM could not reboot") < 0 ||
        si_guest_boot(r, "The VM could not reboot") < 0) {
        g_vm.exists = false; /* the old Vm was taken out before the new one failed */
        return;
    }
    si_event("vm", "rebooted", NULL);
    r->status = 204;
}

/* ---- pause / resume / power button / nmi / counters ---------------------------------------- */

static const char *vmstate_debug(void)
{
    return g_vm.state == SI_ST_PAUSED    ? "Paused"
           : g_vm.state == SI_ST_RUNNING ? "Running"
                                         : "Created";
}

static void vm_pause(si_reply *r)
{
    if (!g_vm.exists) {
        si_reply_error(r, SI_E_OTHER, "The VM could not be paused", "VM is not running", NULL);
        return;
    }
    si_event("vm", "pausing", NULL);
    if (g_vm.state == SI_ST_PAUSED) {
        char *t =
            si_xasprintf("Invalid transition: InvalidStateTransition(%s, Paused)", vmstate_debug());
        si_reply_error(r, SI_E_OTHER, "The VM could not be paused", "Cannot pause VM",
                       "Failed to pause migratable component", t, NULL);
        free(t);
        return;
    }
    g_vm.state = SI_ST_PAUSED;
    si_guest_freeze();
    si_event("vm", "paused", NULL);
    r->status = 204;
}

static void vm_resume(si_reply *r)
{
    if (!g_vm.exists) {
        si_reply_error(r, SI_E_OTHER, "The VM could not resume", "VM is not running", NULL);
        return;
    }
    si_event("vm", "resuming", NULL);
    if (g_vm.state == SI_ST_RUNNING) {
        si_reply_error(r, SI_E_OTHER, "The VM could not resume", "Cannot resume VM",
                       "Failed to resume migratable component",
                       "Invalid transition: InvalidStateTransition(Running, Running)", NULL);
        return;
    }
    g_vm.state = SI_ST_RUNNING;
    si_guest_thaw();
    si_event("vm", "resumed", NULL);
    r->status = 204;
}

static void vm_power_button(si_reply *r)
{
    if (!g_vm.exists) {
        si_reply_error(r, SI_E_OTHER, "Error triggering power button", "VM is not running", NULL);
        return;
    }
    si_guest_power_button();
    r->status = 204;
}

static void vm_nmi(si_reply *r)
{
    if (!g_vm.exists) {
        si_reply_error(r, SI_E_OTHER, "Error triggering NMI", "VM is not running", NULL);
        return;
    }
    r->status = 204;
}

static void vm_counters(si_reply *r)
{
    if (!g_vm.exists) {
        si_reply_error(r, SI_E_OTHER, "The VM info is not available", "VM is not running", NULL);
        return;
    }
    /* No guest does I/O here: the counts grow by a fixed step per read, so a
     * client can tell fresh values from stale ones. */
    static json_int_t reads;
    json_int_t n = ++reads;
    json_t *o = json_object();
    const char *lists[] = {"disks", "net"};
    for (int l = 0; l < 2; l++) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(g_vm.config, lists[l]), i, d)
        {
            const char *id = json_string_value(json_object_get(d, "id"));
            if (!id)
                continue;
            json_object_set_new(
                o, id,
                l == 0 ? json_pack("{s:I,s:I,s:I,s:I}", "read_bytes", 4096 * n, "read_ops", n,
                                   "write_bytes", 512 * n, "write_ops", n)
                       : json_pack("{s:I,s:I,s:I,s:I}", "rx_bytes", 1500 * n, "rx_frames", n,
                                   "tx_bytes", 100 * n, "tx_frames", n));
        }
    }
    reply_json(r, 200, o);
}

/* ---- device add / remove, resize ---------------------------------------------------------- */

static const struct addkind {
    const char *action, *list, *prefix, *schema, *ctx;
} addkinds[] = {
    {"vm.add-disk", "disks", "_disk", "DiskConfig", "The disk could not be added to the VM"},
    {"vm.add-net", "net", "_net", "NetConfig", "The network device could not be added to the VM"},
    {"vm.add-fs", "fs", "_fs", "FsConfig", "The fs could not be added to the VM"},
    {"vm.add-pmem", "pmem", "_pmem", "PmemConfig", "The pmem device could not be added to the VM"},
    {"vm.add-vdpa", "vdpa", "_vdpa", "VdpaConfig", "The vDPA device could not be added to the VM"},
    {"vm.add-device", "devices", "_vfio", "DeviceConfig",
     "The device could not be added to the VM"},
    {"vm.add-user-device", "user_devices", "_vfio_user", "UserDeviceConfig",
     "The user device could not be added to the VM"},
    {"vm.add-generic-vhost-user", "generic_vhost_user", "_generic_vhost_user",
     "GenericVhostUserConfig", "The generic vhost-user device could not be added to the VM"},
    {"vm.add-vsock", NULL, "_vsock", "VsockConfig",
     "The vsock device could not be added to the VM"},
};

static void close_call_fds(si_call *c)
{
    for (int i = 0; i < c->nfds; i++)
        close(c->fds[i]);
    c->nfds = 0;
}

static void vm_add(const struct addkind *k, si_call *c, si_reply *r)
{
    if (!g_vm.config) {
        close_call_fds(c);
        si_reply_error(r, SI_E_NOT_CREATED, k->ctx, "VM is not created", NULL);
        return;
    }
    json_t *dev = json_deep_copy(c->body);
    json_object_del(dev, "fds");
    json_object_del(dev, "fd");
    if (c->nfds) { /* attach_fds_to_cfg: the config now owns the received fds */
        if (!strcmp(k->action, "vm.add-device")) {
            json_object_set_new(dev, "fd", json_integer(c->fds[0]));
        } else {
            json_t *fds = json_array();
            for (int i = 0; i < c->nfds; i++)
                json_array_append_new(fds, json_integer(c->fds[i]));
            json_object_set_new(dev, "fds", fds);
        }
        c->nfds = 0;
    }
    json_t *trial = json_deep_copy(g_vm.config);
    if (k->list) {
        if (!json_is_array(json_object_get(trial, k->list)))
            json_object_set_new(trial, k->list, json_array());
        json_array_append(json_object_get(trial, k->list), dev);
    } else if (json_object_get(trial, "vsock")) {
        si_reply_error(r, SI_E_OTHER, k->ctx, "Too many virtio-vsock devices", NULL);
        goto out;
    } else {
        json_object_set(trial, "vsock", dev);
    }
    enum si_err kind;
    char **m = si_validate(trial, &kind);
    if (m) {
        si_reply_error(r, kind, k->ctx, m[0], m[1], m[2], NULL);
        for (int i = 0; m[i]; i++)
            free(m[i]);
        free(m);
        goto out;
    }
    if (!g_vm.exists) { /* cold plug: only the config changes */
        json_decref(g_vm.config);
        g_vm.config = json_incref(trial);
        r->status = 204;
        goto out;
    }
    if (!json_is_string(json_object_get(dev, "id"))) {
        char *name = si_next_device_name(trial, k->prefix);
        json_object_set_new(dev, "id", json_string(name));
        free(name);
    }
    if (!si_pci_slots_ok(trial)) {
        si_reply_error(r, SI_E_OTHER, k->ctx, "Error from device manager",
                       "Failed to find an available PCI device ID",
                       "Could not find an available device slot on the PCI bus", NULL);
        goto out;
    }
    const char *path = json_string_value(json_object_get(dev, "path"));
    if (!strcmp(k->action, "vm.add-disk") && path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            char *os = si_os_error(errno);
            si_reply_error(r, SI_E_OTHER, k->ctx, "Error from device manager",
                           "Cannot open disk path", os, NULL);
            free(os);
            goto out;
        }
        close(fd);
    }
    json_decref(g_vm.config);
    g_vm.config = json_incref(trial);
    json_t *tree = si_device_tree();
    const char *id = json_string_value(json_object_get(dev, "id"));
    const char *parent = json_string_value(json_object_get(json_object_get(tree, id), "parent"));
    const char *bdf =
        json_string_value(json_object_get(json_object_get(tree, parent ? parent : ""), "pci_bdf"));
    reply_json(r, 200, json_pack("{s:s,s:s}", "id", id, "bdf", bdf ? bdf : "0000:00:00.0"));
    if (parent && !strncmp(parent, "_virtio-pci-", 12)) /* the guest driver picks it up */
        si_event("virtio-device", "activated", "id", id, NULL);
    json_decref(tree);
out:
    if (r->status != 200 && r->status != 204)
        si_close_device_fds(dev);
    json_decref(trial);
    json_decref(dev);
}

void si_close_device_fds(json_t *dev)
{
    size_t k;
    json_t *fd;
    json_array_foreach(json_object_get(dev, "fds"), k, fd) close((int)json_integer_value(fd));
    if (json_is_integer(json_object_get(dev, "fd")))
        close((int)json_integer_value(json_object_get(dev, "fd")));
}

void si_close_config_fds(json_t *cfg)
{
    const char *lists[] = {"net", "devices"};
    for (int l = 0; l < 2; l++) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(cfg, lists[l]), i, d) si_close_device_fds(d);
    }
}

/* Find and unlink a device by id; closes the fds the config held for it. */
static bool remove_from_config(const char *id)
{
    const char *lists[] = {"disks",   "net",  "fs",           "pmem",
                           "devices", "vdpa", "user_devices", "generic_vhost_user"};
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        json_t *arr = json_object_get(g_vm.config, lists[l]);
        size_t i;
        json_t *d;
        json_array_foreach(arr, i, d)
        {
            const char *did = json_string_value(json_object_get(d, "id"));
            if (!did || strcmp(did, id))
                continue;
            si_close_device_fds(d);
            json_array_remove(arr, i);
            return true;
        }
    }
    json_t *vs = json_object_get(g_vm.config, "vsock");
    const char *vid = json_string_value(json_object_get(vs, "id"));
    if (vid && !strcmp(vid, id)) {
        json_object_del(g_vm.config, "vsock");
        return true;
    }
    return false;
}

static void vm_remove_device(si_call *c, si_reply *r)
{
    const char *ctx = "The device could not be removed from the VM";
    const char *id = json_string_value(json_object_get(c->body, "id"));
    if (!g_vm.config) {
        si_reply_error(r, SI_E_NOT_CREATED, ctx, "VM is not created", NULL);
        return;
    }
    if (!remove_from_config(id)) {
        char *m = g_vm.exists ? si_xasprintf("Failed to find device corresponding to the given "
                                             "identifier: %s",
                                             id)
                              : si_xasprintf("No device with id \"%s\" to remove", id);
        if (g_vm.exists)
            si_reply_error(r, SI_E_NO_DEVICE, ctx, "Error from device manager", m, NULL);
        else
            si_reply_error(r, SI_E_NO_DEVICE, ctx, m, NULL);
        free(m);
        return;
    }
    if (g_vm.exists)
        si_event("vm", "device-removed", "id", id, NULL);
    r->status = 204;
}

static void vm_resize(si_call *c, si_reply *r)
{
    const char *ctx = "The VM could not be resized";
    if (!g_vm.config) {
        si_reply_error(r, SI_E_NOT_CREATED, ctx, "VM is not created", NULL);
        return;
    }
    json_t *vcpus = json_object_get(c->body, "desired_vcpus");
    json_t *ram = json_object_get(c->body, "desired_ram");
    json_t *cpus = json_object_get(g_vm.config, "cpus");
    if (!cpus) {
        cpus = json_pack("{s:i,s:i}", "boot_vcpus", 1, "max_vcpus", 1);
        json_object_set_new(g_vm.config, "cpus", cpus);
    }
    json_t *mem = json_object_get(g_vm.config, "memory");
    if (!mem) {
        mem = json_pack("{s:I}", "size", (json_int_t)512 << 20);
        json_object_set_new(g_vm.config, "memory", mem);
    }
    if (g_vm.exists) {
        si_event("vm", "resizing", NULL);
        if (json_is_integer(vcpus) &&
            json_integer_value(vcpus) > json_integer_value(json_object_get(cpus, "max_vcpus"))) {
            si_reply_error(r, SI_E_OTHER, ctx, "Error from CPU manager",
                           "Failed to resize: desired vCPUs exceed max_vcpus", NULL);
            return;
        }
        if (json_is_integer(ram) && !json_object_get(mem, "hotplug_size")) {
            si_reply_error(r, SI_E_OTHER, ctx, "Memory manager error",
                           "Memory resizing without hotplug_size is not possible", NULL);
            return;
        }
    }
    if (json_is_integer(vcpus))
        json_object_set(cpus, "boot_vcpus", vcpus);
    if (json_is_integer(ram))
        json_object_set(mem, "size", ram);
    if (g_vm.exists)
        si_event("vm", "resized", NULL);
    r->status = 204;
}

/* Endpoints the stand-in only answers the way CH answers them when they fail. */
static void vm_unsupported(si_call *c, si_reply *r)
{
    const char *a = c->action;
    if (!strcmp(a, "vm.restore")) {
        if (g_vm.config)
            si_reply_error(r, SI_E_OTHER, "The VM could not be restored", "VM is already created",
                           NULL);
        else
            si_reply_error(r, SI_E_OTHER, "The VM could not be restored", "Cannot restore VM",
                           "standin: restore is not supported", NULL);
    } else if (!strcmp(a, "vm.snapshot")) {
        if (!g_vm.exists)
            si_reply_error(r, SI_E_OTHER, "The VM could not be snapshotted", "VM is not running",
                           NULL);
        else
            si_reply_error(r, SI_E_OTHER, "The VM could not be snapshotted", "Cannot snapshot VM",
                           "standin: snapshot is not supported", NULL);
    } else if (!strcmp(a, "vm.resize-disk") || !strcmp(a, "vm.resize-zone")) {
        bool disk = !strcmp(a, "vm.resize-disk");
        const char *ctx =
            disk ? "The disk could not be resized" : "The memory zone could not be resized";
        if (!g_vm.config)
            si_reply_error(r, SI_E_NOT_CREATED, ctx, "VM is not created", NULL);
        else
            si_reply_error(r, SI_E_OTHER, ctx,
                           disk ? "Failed resizing a disk image" : "Failed resizing a memory zone",
                           NULL);
    } else if (!strcmp(a, "vm.send-migration")) {
        si_reply_error(r, SI_E_OTHER, "Error dispatching the migration worker",
                       "standin: migration is not supported", NULL);
    } else {
        si_reply_error(r, SI_E_OTHER, "Error receiving migration",
                       "standin: migration is not supported", NULL);
    }
    close_call_fds(c);
}

/* The ApiError text CH puts first in the chain of each call. */
static const char *api_context(const char *a)
{
    static const char *const map[][2] = {
        {"vm.boot", "The VM could not boot"},
        {"vm.create", "The VM could not be created"},
        {"vm.delete", "The VM could not be deleted"},
        {"vm.info", "The VM info is not available"},
        {"vm.counters", "The VM info is not available"},
        {"vm.pause", "The VM could not be paused"},
        {"vm.resume", "The VM could not resume"},
        {"vm.shutdown", "The VM could not shutdown"},
        {"vm.reboot", "The VM could not reboot"},
        {"vm.power-button", "Error triggering power button"},
        {"vm.nmi", "Error triggering NMI"},
        {"vm.resize", "The VM could not be resized"},
        {"vm.remove-device", "The device could not be removed from the VM"},
        {"vmm.shutdown", "The VMM could not shutdown"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(map[i][0], a))
            return map[i][1];
    for (size_t i = 0; i < sizeof(addkinds) / sizeof(addkinds[0]); i++)
        if (!strcmp(addkinds[i].action, a))
            return addkinds[i].ctx;
    return "The VMM could not handle the request";
}

void si_api_handle(si_call *c, si_reply *r)
{
    const char *a = c->action;
    si_sleep_ms(g_vm.f.api_delay_ms);
    si_sleep_ms(si_action_delay(g_vm.f.delay_on, a));
    if (strcmp(a, "vm.boot") && strcmp(a, "vm.create"))
        si_fault_point(a);
    if (si_action_in(g_vm.f.fail_on, a)) {
        close_call_fds(c);
        si_reply_error(r, SI_E_OTHER, api_context(a), "standin: injected failure (fail_on)", NULL);
        return;
    }
    if (!strcmp(a, "vmm.ping"))
        vmm_ping(r);
    else if (!strcmp(a, "vmm.shutdown"))
        vmm_shutdown(r);
    else if (!strcmp(a, "vm.create"))
        vm_create(c, r);
    else if (!strcmp(a, "vm.info"))
        vm_info(r);
    else if (!strcmp(a, "vm.delete"))
        vm_delete(r);
    else if (!strcmp(a, "vm.boot"))
        vm_boot(r);
    else if (!strcmp(a, "vm.shutdown"))
        vm_shutdown(r);
    else if (!strcmp(a, "vm.reboot"))
        vm_reboot(r);
    else if (!strcmp(a, "vm.pause"))
        vm_pause(r);
    else if (!strcmp(a, "vm.resume"))
        vm_resume(r);
    else if (!strcmp(a, "vm.power-button"))
        vm_power_button(r);
    else if (!strcmp(a, "vm.nmi"))
        vm_nmi(r);
    else if (!strcmp(a, "vm.counters"))
        vm_counters(r);
    else if (!strcmp(a, "vm.remove-device"))
        vm_remove_device(c, r);
    else if (!strcmp(a, "vm.resize"))
        vm_resize(c, r);
    else {
        for (size_t i = 0; i < sizeof(addkinds) / sizeof(addkinds[0]); i++)
            if (!strcmp(a, addkinds[i].action)) {
                vm_add(&addkinds[i], c, r);
                return;
            }
        vm_unsupported(c, r);
    }
}
