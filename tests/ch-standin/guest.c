/*
 * guest.c - what CH does inside vm.boot, and the simulated guest.
 *
 * Boot follows CH's order because it decides which error a broken config
 * gets and whether a Vm object is left behind:
 *   Vm::new:  memory manager -> VmConfig::validate() (validate.c) -> devices
 *             (disk images opened; ids written back into the config) ->
 *             initramfs opened -> [fail_boot=1]               (no Vm kept)
 *   Vm::boot: kernel/firmware loaded -> disk locks -> [fail_boot=late]
 *             (the Vm is kept in state Created; a second vm.boot gets 500
 *             "VM is already created" until vm.delete/vm.shutdown)
 * Device ids ("_disk0", "_net1": one DeviceManager counter shared by all
 * device kinds) stay in the config even if a later step fails; a disk image
 * that does not open drops the whole disk list from the config (CH's
 * make_virtio_block_devices takes the list out and returns early).
 *
 * The guest is a set of timers that stop while the VM is paused: ACPI power
 * button -> poweroff after acpi_delay_ms, poweroff/reboot/panic_after_ms,
 * and the virtio-device/activated events shortly after each boot.
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const device_lists[] = {"disks",   "net",  "fs",           "pmem",
                                           "devices", "vdpa", "user_devices", "generic_vhost_user"};

static const char *mode_of(json_t *cfg, const char *key, const char *def)
{
    const char *m = json_string_value(json_object_get(json_object_get(cfg, key), "mode"));
    return m ? m : def;
}

/* ---- device names (DeviceManager::next_device_name) ---------------------------------- */

/* Every device id in the config, as a set (json object keys). */
static json_t *used_ids(json_t *cfg)
{
    json_t *set = json_object();
    for (size_t l = 0; l < sizeof(device_lists) / sizeof(device_lists[0]); l++) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(cfg, device_lists[l]), i, d)
        {
            const char *id = json_string_value(json_object_get(d, "id"));
            if (id)
                json_object_set_new(set, id, json_true());
        }
    }
    const char *vid = json_string_value(json_object_get(json_object_get(cfg, "vsock"), "id"));
    if (vid)
        json_object_set_new(set, vid, json_true());
    return set;
}

static unsigned device_id_cnt;

static char *next_name(json_t *used, const char *prefix)
{
    for (unsigned tries = 0; tries < 1000000; tries++) {
        char *name = si_xasprintf("%s%u", prefix, device_id_cnt++);
        if (!json_object_get(used, name)) {
            json_object_set_new(used, name, json_true());
            return name;
        }
        free(name);
    }
    return si_xasprintf("%s%u", prefix, device_id_cnt++);
}

char *si_next_device_name(json_t *cfg, const char *prefix)
{
    json_t *used = used_ids(cfg);
    char *name = next_name(used, prefix);
    json_decref(used);
    return name;
}

static void assign_list_ids(json_t *cfg, json_t *used, const char *list, const char *prefix)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(cfg, list), i, d)
    {
        if (json_is_string(json_object_get(d, "id")))
            continue;
        char *name = next_name(used, prefix);
        json_object_set_new(d, "id", json_string(name));
        free(name);
    }
}

/* make_virtio_devices() order: block, net, (rng), fs, pmem, vsock, vdpa; then VFIO. */
static void assign_ids(json_t *cfg)
{
    json_t *used = used_ids(cfg);
    device_id_cnt = 0;
    assign_list_ids(cfg, used, "disks", "_disk");
    assign_list_ids(cfg, used, "net", "_net");
    assign_list_ids(cfg, used, "generic_vhost_user", "_generic_vhost_user");
    assign_list_ids(cfg, used, "fs", "_fs");
    assign_list_ids(cfg, used, "pmem", "_pmem");
    json_t *vsock = json_object_get(cfg, "vsock");
    if (vsock && !json_is_string(json_object_get(vsock, "id"))) {
        char *name = next_name(used, "_vsock");
        json_object_set_new(vsock, "id", json_string(name));
        free(name);
    }
    assign_list_ids(cfg, used, "vdpa", "_vdpa");
    assign_list_ids(cfg, used, "devices", "_vfio");
    assign_list_ids(cfg, used, "user_devices", "_vfio_user");
    json_decref(used);
}

/* ---- PCI placement ---------------------------------------------------------------------- */

static void add_pci(json_t *arr, json_t *idv, json_t *dev, bool virtio)
{
    if (!json_is_string(idv))
        return;
    json_array_append_new(
        arr, json_pack("{s:O,s:I,s:b}", "id", idv, "seg",
                       (json_int_t)json_integer_value(json_object_get(dev, "pci_segment")),
                       "virtio", virtio));
}

static void add_pci_list(json_t *arr, json_t *cfg, const char *list, bool virtio)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(cfg, list), i, d)
        add_pci(arr, json_object_get(d, "id"), d, virtio);
}

/* The PCI devices in the order the DeviceManager creates them; each takes a
 * slot of its segment (32 per bus, slot 0 is the host bridge). */
static json_t *pci_devices(json_t *cfg)
{
    json_t *arr = json_array();
    json_t *tmp;
    if (strcmp(mode_of(cfg, "console", "Tty"), "Off")) {
        tmp = json_string("__console");
        add_pci(arr, tmp, json_object_get(cfg, "console"), true);
        json_decref(tmp);
    }
    add_pci_list(arr, cfg, "disks", true);
    add_pci_list(arr, cfg, "net", true);
    tmp = json_string("__rng");
    add_pci(arr, tmp, json_object_get(cfg, "rng"), true);
    json_decref(tmp);
    add_pci_list(arr, cfg, "generic_vhost_user", true);
    add_pci_list(arr, cfg, "fs", true);
    add_pci_list(arr, cfg, "pmem", true);
    json_t *vs = json_object_get(cfg, "vsock");
    if (vs)
        add_pci(arr, json_object_get(vs, "id"), vs, true);
    static const char *const extra[][2] = {{"balloon", "__balloon"}, {"watchdog", "__watchdog"}};
    for (int i = 0; i < 2; i++) {
        json_t *o = json_object_get(cfg, extra[i][0]);
        if (!o || json_is_false(o) || json_is_null(o))
            continue;
        tmp = json_string(extra[i][1]);
        add_pci(arr, tmp, json_is_object(o) ? o : NULL, true);
        json_decref(tmp);
    }
    add_pci_list(arr, cfg, "vdpa", false);
    add_pci_list(arr, cfg, "devices", false);
    add_pci_list(arr, cfg, "user_devices", false);
    if (json_is_true(json_object_get(cfg, "pvpanic"))) {
        tmp = json_string("__pvpanic");
        add_pci(arr, tmp, NULL, false);
        json_decref(tmp);
    }
    /* slot numbers, per segment */
    json_t *next = json_object();
    size_t i;
    json_t *d;
    json_array_foreach(arr, i, d)
    {
        char seg[16];
        snprintf(seg, sizeof(seg), "%lld",
                 (long long)json_integer_value(json_object_get(d, "seg")));
        json_int_t slot = json_integer_value(json_object_get(next, seg)) + 1;
        json_object_set_new(next, seg, json_integer(slot));
        json_object_set_new(d, "slot", json_integer(slot));
    }
    json_decref(next);
    return arr;
}

bool si_pci_slots_ok(json_t *cfg)
{
    json_t *arr = pci_devices(cfg);
    bool ok = true;
    size_t i;
    json_t *d;
    json_array_foreach(arr, i, d) if (json_integer_value(json_object_get(d, "slot")) > 31) ok =
        false;
    json_decref(arr);
    return ok;
}

json_t *si_device_tree(void)
{
    json_t *tree = json_object();
    json_t *arr = pci_devices(g_vm.config);
    size_t i;
    json_t *d;
    json_array_foreach(arr, i, d)
    {
        const char *s = json_string_value(json_object_get(d, "id"));
        char *pci = si_xasprintf(
            "%s%s", json_is_true(json_object_get(d, "virtio")) ? "_virtio-pci-" : "_pci-", s);
        char *bdf = si_xasprintf("%04llx:00:%02llx.0",
                                 (long long)json_integer_value(json_object_get(d, "seg")),
                                 (long long)json_integer_value(json_object_get(d, "slot")));
        json_object_set_new(
            tree, s,
            json_pack("{s:s,s:[],s:s,s:[]}", "id", s, "resources", "parent", pci, "children"));
        json_object_set_new(tree, pci,
                            json_pack("{s:s,s:[],s:[s],s:s}", "id", pci, "resources", "children", s,
                                      "pci_bdf", bdf));
        free(pci);
        free(bdf);
    }
    json_decref(arr);
    return tree;
}

/* Devices the guest activates: the virtio ones, in PCI order. */
static json_t *virtio_ids(void)
{
    json_t *ids = json_array();
    json_t *arr = pci_devices(g_vm.config);
    size_t i;
    json_t *d;
    json_array_foreach(arr, i, d) if (json_is_true(json_object_get(d, "virtio")))
        json_array_append(ids, json_object_get(d, "id"));
    json_decref(arr);
    return ids;
}

/* ---- guest console output ------------------------------------------------------------- */

static void console_boot_banner(void)
{
    const char *cmd =
        json_string_value(json_object_get(json_object_get(g_vm.config, "payload"), "cmdline"));
    char *t = si_xasprintf("[    0.000000] Linux version 6.16.9-standin (cloud-hypervisor "
                           "stand-in)\n[    0.000000] Command line: %s\n[    0.100000] Run "
                           "/init as init process\n",
                           cmd ? cmd : "");
    si_console_out(t);
    free(t);
}

/* ---- boot ------------------------------------------------------------------------- */

static void set_chain(si_reply *r, enum si_err kind, const char *ctx, char **m)
{
    si_reply_error(r, kind, ctx, m[0], m[1], m[2], NULL);
    for (int i = 0; m[i]; i++)
        free(m[i]);
    free(m);
}

static int open_error(si_reply *r, const char *ctx, const char *what, const char *what2)
{
    char *os = si_os_error(errno);
    si_reply_error(r, SI_E_OTHER, ctx, what, what2 ? what2 : os, what2 ? os : NULL, NULL);
    free(os);
    return -1;
}

static bool boot_fault_due(void)
{
    long n = ++g_vm.boot_attempts;
    return g_vm.f.fail_boot && (g_vm.f.fail_boot_times < 0 || n <= g_vm.f.fail_boot_times);
}

static void release_locks(void)
{
    for (int i = 0; i < g_vm.nlock_fds; i++)
        close(g_vm.lock_fds[i]);
    free(g_vm.lock_fds);
    g_vm.lock_fds = NULL;
    g_vm.nlock_fds = 0;
}

/* Vm::boot's try_lock_disks: OFD locks, shared for read-only images. */
static int lock_disks(si_reply *r, const char *ctx)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(g_vm.config, "disks"), i, d)
    {
        const char *path = json_string_value(json_object_get(d, "path"));
        if (!path)
            continue;
        bool ro = json_is_true(json_object_get(d, "readonly"));
        int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        struct flock fl = {.l_type = ro ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET};
        if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) < 0) {
            if (fd >= 0)
                close(fd);
            release_locks();
            si_reply_error(r, SI_E_OTHER, ctx,
                           "Error locking disk images: Another instance likely holds a lock",
                           "Error from device manager",
                           "The disk image is already locked by another instance", NULL);
            return -1;
        }
        g_vm.lock_fds = si_xrealloc(g_vm.lock_fds, sizeof(int) * (size_t)(g_vm.nlock_fds + 1));
        g_vm.lock_fds[g_vm.nlock_fds++] = fd;
    }
    return 0;
}

static int vm_new(si_reply *r, const char *ctx)
{
    json_t *cfg = g_vm.config;
    json_t *mem = json_object_get(cfg, "memory");
    json_int_t size = mem ? json_integer_value(json_object_get(mem, "size")) : 512 << 20;
    if (mem && size == 0 && !json_is_array(json_object_get(mem, "zones"))) {
        si_reply_error(r, SI_E_OTHER, ctx, "Memory manager error", "No memory zones found", NULL);
        return -1;
    }
    if (size % 4096) {
        si_reply_error(r, SI_E_OTHER, ctx, "Memory manager error",
                       "Memory configuration is not valid", NULL);
        return -1;
    }
    enum si_err kind;
    char **m = si_validate(cfg, &kind);
    if (m) {
        set_chain(r, kind, ctx, m);
        return -1;
    }
    json_t *payload = json_object_get(cfg, "payload");
    if (json_object_get(payload, "firmware")) { /* PayloadConfig::validate drops them */
        json_object_del(payload, "cmdline");
        json_object_del(payload, "initramfs");
    }
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(cfg, "disks"), i, d)
    {
        const char *path = json_string_value(json_object_get(d, "path"));
        if (!path)
            continue;
        bool ro = json_is_true(json_object_get(d, "readonly"));
        int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd < 0) {
            /* make_virtio_block_devices() took the list out of the config
             * and returns early: CH's stored config loses every disk. */
            int e = errno;
            json_object_del(cfg, "disks");
            errno = e;
            return open_error(r, ctx, "Error from device manager", "Cannot open disk path");
        }
        close(fd);
    }
    assign_ids(cfg); /* DeviceManager::create_devices, before the initramfs is opened */
    if (!si_pci_slots_ok(cfg)) {
        si_reply_error(r, SI_E_OTHER, ctx, "Error from device manager",
                       "Failed to find an available PCI device ID",
                       "Could not find an available device slot on the PCI bus", NULL);
        return -1;
    }
    const char *initramfs = json_string_value(json_object_get(payload, "initramfs"));
    if (initramfs) {
        int fd = open(initramfs, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return open_error(r, ctx, "Cannot open initramfs file", NULL);
        close(fd);
    }
    if (boot_fault_due() && g_vm.f.fail_boot == 1) {
        si_reply_error(r, SI_E_OTHER, ctx, "Error from device manager",
                       "standin: injected boot failure (fail_boot=1)", NULL);
        return -1;
    }
    g_vm.exists = true;
    g_vm.state = SI_ST_CREATED;
    return 0;
}

static void arm(si_gtimer *t, long ms)
{
    t->frozen = 0;
    t->deadline = ms >= 0 ? si_now_ns() + (int64_t)ms * 1000000 : 0;
}

static int vm_boot(si_reply *r, const char *ctx)
{
    json_t *payload = json_object_get(g_vm.config, "payload");
    const char *kernel = json_string_value(json_object_get(payload, "kernel"));
    const char *fw = json_string_value(json_object_get(payload, "firmware"));
    int fd = open(kernel ? kernel : fw ? fw : "/", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return open_error(
            r, ctx, kernel ? "Cannot open kernel file" : "Error manipulating firmware file", NULL);
    close(fd);
    if (lock_disks(r, ctx) < 0)
        return -1;
    if (g_vm.f.fail_boot == 2 && g_vm.f.fail_boot_times != 0 &&
        (g_vm.f.fail_boot_times < 0 || g_vm.boot_attempts <= g_vm.f.fail_boot_times)) {
        release_locks();
        si_reply_error(r, SI_E_OTHER, ctx, "Cannot load the kernel into memory",
                       "standin: injected boot failure (fail_boot=late)", NULL);
        return -1;
    }
    si_sleep_ms(g_vm.f.boot_delay_ms);
    console_boot_banner();
    g_vm.state = SI_ST_RUNNING;
    g_vm.acpi_pending = false;
    arm(&g_vm.t_poweroff, g_vm.f.poweroff_after_ms);
    arm(&g_vm.t_reboot, g_vm.f.reboot_after_ms);
    arm(&g_vm.t_panic, g_vm.f.panic_after_ms);
    arm(&g_vm.t_acpi, -1);
    arm(&g_vm.t_activate, g_vm.f.activate_delay_ms);
    arm(&g_vm.t_vcpu_error, g_vm.f.vcpu_error_after_ms);
    if (g_vm.f.crash_after_ms >= 0 && !g_vm.crash_at)
        g_vm.crash_at = si_now_ns() + (int64_t)g_vm.f.crash_after_ms * 1000000;
    return 0;
}

int si_guest_boot(si_reply *r, const char *ctx)
{
    if (vm_new(r, ctx) < 0)
        return -1;
    return vm_boot(r, ctx);
}

void si_guest_stop(void)
{
    release_locks();
    g_vm.exists = false;
    g_vm.state = SI_ST_CREATED;
    g_vm.acpi_pending = false;
    si_gtimer *ts[] = {&g_vm.t_poweroff, &g_vm.t_reboot,   &g_vm.t_panic,
                       &g_vm.t_acpi,     &g_vm.t_activate, &g_vm.t_vcpu_error};
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        *ts[i] = (si_gtimer){0, 0};
}

/* ---- the guest's clock stops while paused ----------------------------------------- */

static si_gtimer *all_timers[] = {&g_vm.t_poweroff, &g_vm.t_reboot,   &g_vm.t_panic,
                                  &g_vm.t_acpi,     &g_vm.t_activate, &g_vm.t_vcpu_error};
#define NTIMERS (sizeof(all_timers) / sizeof(all_timers[0]))

void si_guest_freeze(void)
{
    int64_t now = si_now_ns();
    for (size_t i = 0; i < NTIMERS; i++) {
        si_gtimer *t = all_timers[i];
        if (t->deadline) {
            t->frozen = t->deadline > now ? t->deadline - now : 1;
            t->deadline = 0;
        }
    }
}

void si_guest_thaw(void)
{
    int64_t now = si_now_ns();
    for (size_t i = 0; i < NTIMERS; i++) {
        si_gtimer *t = all_timers[i];
        if (t->frozen) {
            t->deadline = now + t->frozen;
            t->frozen = 0;
        }
    }
    if (g_vm.acpi_pending) {
        g_vm.acpi_pending = false;
        si_guest_power_button();
    }
}

void si_guest_power_button(void)
{
    if (!g_vm.exists || g_vm.state == SI_ST_CREATED)
        return; /* no guest OS to react */
    if (g_vm.state == SI_ST_PAUSED) {
        g_vm.acpi_pending = true;
        return;
    }
    if (g_vm.f.ignore_power_button) {
        LOGI("standin: guest ignores the ACPI power button");
        return;
    }
    arm(&g_vm.t_acpi, g_vm.f.acpi_delay_ms);
}

int si_guest_next_timeout(void)
{
    int64_t best = 0;
    for (size_t i = 0; i < NTIMERS; i++)
        if (all_timers[i]->deadline && (!best || all_timers[i]->deadline < best))
            best = all_timers[i]->deadline;
    if (g_vm.crash_at && (!best || g_vm.crash_at < best))
        best = g_vm.crash_at;
    if (!best)
        return -1;
    int64_t d = best - si_now_ns();
    return d <= 0 ? 0 : (int)((d + 999999) / 1000000);
}

static bool due(si_gtimer *t, int64_t now)
{
    if (!t->deadline || t->deadline > now)
        return false;
    t->deadline = 0;
    return true;
}

void si_guest_fire_due(void)
{
    int64_t now = si_now_ns();
    if (g_vm.crash_at && g_vm.crash_at <= now)
        si_fault_crash("crash_after_ms");
    if (due(&g_vm.t_vcpu_error, now)) {
        /* vCPU run error: exit_evt -> vmm_shutdown(), whatever --no-shutdown says */
        LOGE("standin: injected vCPU run error");
        si_vmm_shutdown(0);
        return;
    }
    if (due(&g_vm.t_activate, now)) {
        json_t *ids = virtio_ids();
        size_t i;
        json_t *id;
        json_array_foreach(ids, i, id) if (json_is_string(id))
            si_event("virtio-device", "activated", "id", json_string_value(id), NULL);
        json_decref(ids);
    }
    if (due(&g_vm.t_panic, now))
        si_guest_panic("panic_after_ms");
    if (due(&g_vm.t_acpi, now))
        si_guest_poweroff("ACPI power button");
    else if (due(&g_vm.t_poweroff, now))
        si_guest_poweroff("poweroff_after_ms");
    else if (due(&g_vm.t_reboot, now))
        si_guest_reboot("reboot_after_ms");
}

/* ---- guest-initiated transitions ---------------------------------------------------- */

void si_guest_poweroff(const char *why)
{
    if (!g_vm.exists || g_vm.state != SI_ST_RUNNING) {
        LOGI("standin: guest poweroff (%s) ignored: no running guest", why);
        return;
    }
    LOGI("VM guest exit event (%s)", why);
    si_console_out("reboot: Power down\n");
    if (g_opts.no_shutdown) {
        si_guest_stop();
        si_console_release(true);
        si_event("vm", "shutdown", NULL);
    } else {
        si_vmm_shutdown(0);
    }
}

void si_guest_reboot(const char *why)
{
    if (!g_vm.exists || g_vm.state != SI_ST_RUNNING) {
        LOGI("standin: guest reboot (%s) ignored: no running guest", why);
        return;
    }
    LOGI("VM reset event (%s)", why);
    si_console_out("reboot: Restarting system\n");
    si_event("vm", "rebooting", NULL);
    si_guest_stop();
    si_console_release(true);
    si_reply r = {0};
    if (si_console_create(&r, "The VM could not reboot") < 0 ||
        si_guest_boot(&r, "The VM could not reboot") < 0) {
        /* control_loop: vm_reboot()? fails -> the VMM thread returns the
         * error and main() prints the chain: exit 1, socket left in place. */
        fprintf(stderr, "Error: Cloud Hypervisor exited with the following chain of errors:\n"
                        "  0: VMM thread exited with error\n  1: Error rebooting VM\n");
        json_t *chain = json_loads(r.body ? r.body : "[]", 0, NULL);
        for (size_t i = 2; i < json_array_size(chain); i++) /* skip the HTTP wrapping */
            fprintf(stderr, "  %zu: %s\n", i, json_string_value(json_array_get(chain, i)));
        json_decref(chain);
        LOGE("Guest reboot failed: %s", r.body ? r.body : "?");
        free(r.body);
        g_vm.exists = false;
        g_vm.exit_requested = true;
        g_vm.exit_code = 1;
        return;
    }
    si_event("vm", "rebooted", NULL);
}

void si_guest_panic(const char *why)
{
    if (!g_vm.exists || g_vm.state != SI_ST_RUNNING) {
        LOGI("standin: guest panic (%s) ignored: no running guest", why);
        return;
    }
    si_console_out("Kernel panic - not syncing: standin\n");
    if (!json_is_true(json_object_get(g_vm.config, "pvpanic"))) {
        LOGI("standin: guest panicked (%s) but no pvpanic device: no event", why);
        return;
    }
    si_event("guest", "panic", NULL);
}
