/*
 * qemu_argv.c - the qemu-system-x86_64 command line for one VM, from the
 * neutral qemu_vm_desc, and the choice of accelerator.
 *
 * Fixed choices, and why:
 *   -nodefaults -no-user-config   nothing the description did not ask for
 *   -S                            nothing runs before the backend says `cont`
 *   -no-shutdown                  a guest poweroff leaves QEMU up ("shutdown")
 *   -action panic=pause           a guest panic stays visible (guest-panicked)
 *   -chardev socket,fd=3,server=on,wait=off + -mon mode=control
 *                                 QMP on a socket chcp bound before the spawn
 *   -chardev file                 the serial console into the VM directory
 *   -netdev tap,fd=N              TAPs are opened by chcp and lent by fd
 * QEMU splits option values at ',' (",," is a literal comma), so every path
 * is escaped; strings with control characters are refused.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm/kvm_probe.h"
#include "vmm/qemu/qemu.h"

#define QEMU_MAX_ARGS 96

typedef struct argv_builder {
    char **v;
    size_t n;
} argv_builder;

static void add(argv_builder *b, char *owned)
{
    if (b->n + 1 < QEMU_MAX_ARGS)
        b->v[b->n++] = owned;
    else
        free(owned);
    b->v[b->n] = NULL;
}

static void add2(argv_builder *b, const char *opt, char *owned_value)
{
    add(b, xstrdup(opt));
    add(b, owned_value);
}

/* A value for QEMU's option parser: ',' doubled. */
static char *opt_escape(const char *s)
{
    chcp_buf b = CHCP_BUF_INIT;
    for (; *s; s++) {
        if (*s == ',')
            buf_append_byte(&b, ',');
        buf_append_byte(&b, (uint8_t)*s);
    }
    buf_append_byte(&b, 0);
    return (char *)b.data;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int check_path(const char *what, const char *p, chcp_error **err)
{
    if (!p || p[0] != '/')
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s must be an absolute path", what);
    if (!printable(p) || strlen(p) > 4096)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: invalid path", what);
    return 0;
}

static bool mac_valid(const char *m)
{
    if (strlen(m) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = m[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    return true;
}

static int check_desc(const qemu_vm_desc *d, const char *binary, int qmp_fd, chcp_error **err)
{
    if (!d)
        return error_set(err, CHCP_INVALID_ARGUMENT, "no VM description");
    if (check_path("QEMU binary", binary, err) < 0 || check_path("kernel", d->kernel, err) < 0 ||
        (d->initrd && check_path("initrd", d->initrd, err) < 0) ||
        check_path("console path", d->console_path, err) < 0)
        return -1;
    if (d->machine != QEMU_MACHINE_MICROVM && d->machine != QEMU_MACHINE_Q35)
        return error_set(err, CHCP_INVALID_ARGUMENT, "unknown machine type %d", (int)d->machine);
    if (d->accel != QEMU_ACCEL_TCG && d->accel != QEMU_ACCEL_KVM)
        return error_set(err, CHCP_INVALID_ARGUMENT, "unknown accelerator %d", (int)d->accel);
    if (d->vcpus < 1 || d->vcpus > 255)
        return error_set(err, CHCP_INVALID_ARGUMENT, "vcpus must be 1..255, not %u", d->vcpus);
    if (d->memory_mib < 128 || d->memory_mib > (1u << 22))
        return error_set(err, CHCP_INVALID_ARGUMENT, "memory must be 128 MiB..4 TiB, not %llu MiB",
                         (unsigned long long)d->memory_mib);
    if (d->cmdline && (!printable(d->cmdline) || strlen(d->cmdline) > 4000))
        return error_set(err, CHCP_INVALID_ARGUMENT, "invalid kernel command line");
    if (d->ndisks > QEMU_MAX_DISKS || (d->ndisks && !d->disks))
        return error_set(err, CHCP_INVALID_ARGUMENT, "at most %d disks", QEMU_MAX_DISKS);
    if (d->nnics > QEMU_MAX_NICS || (d->nnics && !d->nics))
        return error_set(err, CHCP_INVALID_ARGUMENT, "at most %d network interfaces",
                         QEMU_MAX_NICS);
    /* microvm has 8 virtio-mmio transports in all. */
    if (d->machine == QEMU_MACHINE_MICROVM && d->ndisks + d->nnics > 8)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "microvm takes at most 8 virtio devices (disks + NICs)");
    for (size_t i = 0; i < d->ndisks; i++)
        if (check_path("disk", d->disks[i].path, err) < 0)
            return -1;
    for (size_t i = 0; i < d->nnics; i++) {
        if (d->nics[i].tap_fd < 0)
            return error_set(err, CHCP_INVALID_ARGUMENT, "network interface %zu has no TAP fd", i);
        if (d->nics[i].mac && !mac_valid(d->nics[i].mac))
            return error_set(err, CHCP_INVALID_ARGUMENT, "network interface %zu: bad MAC %s", i,
                             d->nics[i].mac);
    }
    if (qmp_fd < 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "no QMP socket");
    return 0;
}

static char *kernel_cmdline(const qemu_vm_desc *d)
{
    chcp_buf b = CHCP_BUF_INIT;
    const char *user = d->cmdline ? d->cmdline : "";
    if (!strstr(user, "console="))
        buf_append_str(&b, "console=ttyS0 ");
    if (d->machine == QEMU_MACHINE_MICROVM && d->accel == QEMU_ACCEL_TCG &&
        !strstr(user, "tsc_early_khz=")) {
        uint32_t khz = d->tsc_khz ? d->tsc_khz : qemu_host_tsc_khz();
        /* Early boot under TCG on microvm hangs calibrating the TSC. */
        if (khz)
            buf_printf(&b, "tsc_early_khz=%u ", khz);
    }
    /* microvm has no reset register a Linux guest would use: a triple fault
     * is its reboot, which QEMU turns into a reset (RESET guest=true). */
    if (d->machine == QEMU_MACHINE_MICROVM && !strstr(user, "reboot="))
        buf_append_str(&b, "reboot=t ");
    buf_append_str(&b, user);
    while (b.len && b.data[b.len - 1] == ' ')
        b.len--;
    buf_append_byte(&b, 0);
    return (char *)b.data;
}

int qemu_argv_build(const qemu_vm_desc *d, const char *binary, int qmp_listen_fd, qemu_argv *out,
                    chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    if (check_desc(d, binary, qmp_listen_fd, err) < 0)
        return -1;
    argv_builder b = {.v = xcalloc(QEMU_MAX_ARGS + 1, sizeof(char *))};
    bool microvm = d->machine == QEMU_MACHINE_MICROVM;
    int next_fd = QEMU_CHILD_FD_FIRST;

    add(&b, xstrdup(binary));
    add(&b, xstrdup("-nodefaults"));
    add(&b, xstrdup("-no-user-config"));
    add2(&b, "-display", xstrdup("none"));
    add(&b, xstrdup("-S"));
    add(&b, xstrdup("-no-shutdown"));
    add2(&b, "-action", xstrdup("panic=pause"));
    /* microvm: ACPI for the power button (GED), no legacy PIC/PIT/RTC. */
    add2(&b, "-machine",
         xstrdup(microvm ? "microvm,acpi=on,pic=off,pit=off,isa-serial=on"
                         : "q35,i8042=off,sata=off,smbus=off"));
    add2(&b, "-accel", xstrdup(d->accel == QEMU_ACCEL_KVM ? "kvm" : "tcg"));
    /* No -cpu: QEMU's default model. "host" is faster but trips over what
     * nested/paravirtual KVM refuses (kvm_pvm: setting MSR 0x10a aborts
     * QEMU); a CPU model belongs to the VM spec once it has one. */
    add2(&b, "-smp", xasprintf("%u", d->vcpus));
    add2(&b, "-m", xasprintf("%lluM", (unsigned long long)d->memory_mib));

    out->child_fds[out->nfds++] = qmp_listen_fd;
    add2(&b, "-chardev", xasprintf("socket,id=qmp,fd=%d,server=on,wait=off", next_fd++));
    add2(&b, "-mon", xstrdup("chardev=qmp,mode=control"));
    cleanup_free char *console = opt_escape(d->console_path);
    add2(&b, "-chardev", xasprintf("file,id=console,path=%s", console));
    add2(&b, "-serial", xstrdup("chardev:console"));
    if (d->pvpanic)
        add2(&b, "-device", xstrdup(microvm ? "pvpanic" : "pvpanic-pci"));

    cleanup_free char *kernel = opt_escape(d->kernel);
    add2(&b, "-kernel", steal_pointer(&kernel));
    if (d->initrd) {
        cleanup_free char *initrd = opt_escape(d->initrd);
        add2(&b, "-initrd", steal_pointer(&initrd));
    }
    /* -append is a single value, not an option list: no escaping. */
    add2(&b, "-append", kernel_cmdline(d));

    const char *bus = microvm ? "device" : "pci";
    for (size_t i = 0; i < d->ndisks; i++) {
        cleanup_free char *path = opt_escape(d->disks[i].path);
        add2(&b, "-blockdev",
             xasprintf("driver=file,node-name=file%zu,filename=%s,read-only=%s", i, path,
                       d->disks[i].readonly ? "on" : "off"));
        add2(&b, "-blockdev",
             xasprintf("driver=%s,node-name=disk%zu,file=file%zu,read-only=%s",
                       d->disks[i].qcow2 ? "qcow2" : "raw", i, i,
                       d->disks[i].readonly ? "on" : "off"));
        add2(&b, "-device", xasprintf("virtio-blk-%s,drive=disk%zu,id=vd%zu", bus, i, i));
    }
    for (size_t i = 0; i < d->nnics; i++) {
        out->child_fds[out->nfds++] = d->nics[i].tap_fd;
        add2(&b, "-netdev", xasprintf("tap,id=net%zu,fd=%d", i, next_fd++));
        if (d->nics[i].mac)
            add2(&b, "-device",
                 xasprintf("virtio-net-%s,netdev=net%zu,id=nic%zu,mac=%s", bus, i, i,
                           d->nics[i].mac));
        else
            add2(&b, "-device", xasprintf("virtio-net-%s,netdev=net%zu,id=nic%zu", bus, i, i));
    }
    out->argv = b.v;
    out->argc = b.n;
    return 0;
}

void qemu_argv_free(qemu_argv *a)
{
    if (!a || !a->argv)
        return;
    for (size_t i = 0; a->argv[i]; i++)
        free(a->argv[i]);
    free(a->argv);
    a->argv = NULL;
    a->argc = 0;
}

uint32_t qemu_host_tsc_khz(void)
{
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return 0;
    char line[256];
    uint32_t khz = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!str_has_prefix(line, "cpu MHz"))
            continue;
        /* "cpu MHz\t\t: 2596.134" -> 2596134 kHz */
        const char *colon = strchr(line, ':');
        char *end = NULL;
        unsigned long mhz = colon ? strtoul(colon + 1, &end, 10) : 0;
        unsigned long frac = 0;
        if (end && *end == '.') {
            const char *d = end + 1;
            for (int i = 0; i < 3; i++) { /* three decimals, missing ones are 0 */
                unsigned long digit = 0;
                if (*d >= '0' && *d <= '9')
                    digit = (unsigned long)(*d++ - '0');
                frac = frac * 10 + digit;
            }
        }
        if (mhz > 0 && mhz < 100000)
            khz = (uint32_t)(mhz * 1000u + frac);
        break;
    }
    fclose(f);
    return khz;
}

int qemu_accel_mode_parse(const char *s, qemu_accel_mode *out)
{
    if (!s || !*s || strcmp(s, "auto") == 0)
        *out = QEMU_ACCEL_MODE_AUTO;
    else if (strcmp(s, "kvm") == 0)
        *out = QEMU_ACCEL_MODE_KVM;
    else if (strcmp(s, "tcg") == 0)
        *out = QEMU_ACCEL_MODE_TCG;
    else
        return -1;
    return 0;
}

qemu_accel qemu_accel_choose(qemu_accel_mode mode, bool linux_guest, char *why, size_t why_len)
{
    if (mode == QEMU_ACCEL_MODE_KVM || mode == QEMU_ACCEL_MODE_TCG) {
        snprintf(why, why_len, "CHCP_QEMU_ACCEL=%s", mode == QEMU_ACCEL_MODE_KVM ? "kvm" : "tcg");
        return mode == QEMU_ACCEL_MODE_KVM ? QEMU_ACCEL_KVM : QEMU_ACCEL_TCG;
    }
    /* The host does not change under a running daemon: probe once. */
    static kvm_probe_result probe;
    static bool probed;
    if (!probed) {
        kvm_probe_run(NULL, 0, &probe);
        probed = true;
    }
    kvm_probe_level need = linux_guest ? KVM_PROBE_LINUX : KVM_PROBE_TINY;
    if (probe.level >= need) {
        snprintf(why, why_len, "KVM probe: %s", kvm_probe_level_name(probe.level));
        return QEMU_ACCEL_KVM;
    }
    snprintf(why, why_len, "KVM probe: %s (stage %s failed: %s)", kvm_probe_level_name(probe.level),
             probe.failed_stage ? probe.failed_stage : "?", probe.detail);
    return QEMU_ACCEL_TCG;
}
