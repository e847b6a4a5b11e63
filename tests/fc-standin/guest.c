/*
 * guest.c - the simulated guest of the Firecracker stand-in (x86_64).
 *
 * What a Linux guest does that a control plane can observe, per Firecracker's
 * FAQ.md and devices/legacy/i8042.rs:
 *   - boot: the serial console shows the kernel banner and, guest_boot_ms
 *     later, "Run /sbin/init as init process" (the boot marker); that is
 *     when the i8042/atkbd driver is up. Serial output exists only if the
 *     command line has console=ttyS0 (and no 8250.nr_uarts=0, which the
 *     default command line has). With --boot-timer the boot marker also logs
 *     "Guest-boot-time = ...".
 *   - poweroff: x86 Firecracker has no ACPI PM device, so the guest halts
 *     ("reboot: Power down") and the process stays; GET / still says Running.
 *   - reboot: "reboot: Restarting system", then the CPU reset through the
 *     i8042 (reboot=k, and Linux's fallback for other methods) ends the
 *     process with exit code 0. reboot=t (triple fault) gives KVM_EXIT_SHUTDOWN,
 *     an exit Firecracker does not handle on x86: exit code 1.
 *   - panic: "Kernel panic - not syncing: standin", then panic=N decides:
 *     N > 0 reboot after N s (Firecracker's default command line has
 *     panic=1), N < 0 at once, absent or 0 hang forever.
 *   - SendCtrlAltDel: 4 bytes enter the 16-byte i8042 buffer (a fifth send
 *     without the guest reading them fails "i8042 internal buffer full.");
 *     a running guest with its driver up reads them and reboots after
 *     cad_delay_ms (the init's shutdown); keys sent before the driver is up
 *     are flushed by it; a paused guest reads them at resume; a halted or
 *     panicked guest, or one without keyboard driver (no_kbd), never does.
 * Guest timers run on guest time: pausing freezes them.
 */
#include "standin.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_KERNEL_CMDLINE                                                                     \
    "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd "             \
    "swiotlb=noforce"

static bool panicked;

static bool has_word(const char *cmdline, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = cmdline; (p = strstr(p, word)); p += n)
        if ((p == cmdline || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0' || p[n] == ','))
            return true;
    return false;
}

/* Value of "key=" in the command line, or NULL. */
static const char *param(const char *cmdline, const char *key)
{
    size_t n = strlen(key);
    const char *found = NULL;
    for (const char *p = cmdline; (p = strstr(p, key)); p += n)
        if ((p == cmdline || p[-1] == ' ') && p[n] == '=')
            found = p + n + 1; /* the last one wins, as in Linux */
    return found;
}

static bool serial_console(void)
{
    const char *c = g_vm.cmdline;
    return c && (has_word(c, "console=ttyS0") || strstr(c, "console=ttyS0,")) &&
           !has_word(c, "8250.nr_uarts=0");
}

void fsi_serial_out(const char *text)
{
    if (!serial_console())
        return;
    int fd = g_vm.serial_fd >= 0 ? g_vm.serial_fd : STDOUT_FILENO;
    ssize_t n = write(fd, text, strlen(text)); /* non-blocking: a full pipe drops output */
    (void)n;
}

static void kline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void kline(const char *fmt, ...)
{
    int64_t t = g_vm.start_ns ? fsi_now_ns() - g_vm.start_ns : 0;
    va_list ap;
    va_start(ap, fmt);
    char *msg = fsi_xvasprintf(fmt, ap);
    va_end(ap);
    char *line = fsi_xasprintf("[%5lld.%06lld] %s\r\n", (long long)(t / 1000000000),
                               (long long)(t % 1000000000 / 1000), msg);
    fsi_serial_out(line);
    free(line);
    free(msg);
}

static void arm(fsi_gtimer *t, long ms)
{
    t->left = 0;
    t->deadline = ms < 0 ? 0 : fsi_now_ns() + (int64_t)ms * 1000000 + 1;
}

static fsi_gtimer *timers[] = {&g_vm.t_boot,      &g_vm.t_poweroff,     &g_vm.t_reboot,
                               &g_vm.t_panic,     &g_vm.t_panic_reboot, &g_vm.t_cad,
                               &g_vm.t_vcpu_error};

static void stop_all(void)
{
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
        timers[i]->deadline = timers[i]->left = 0;
}

static char *build_cmdline(void)
{
    const char *args = json_string_value(json_object_get(g_vm.res.boot_source, "boot_args"));
    fsi_buf b = {0};
    fsi_buf_printf(&b, "%s", args ? args : DEFAULT_KERNEL_CMDLINE);
    if (!g_vm.res.pci)
        fsi_buf_printf(&b, " pci=off");
    json_t *root = json_array_get(g_vm.res.drives, 0);
    if (json_is_true(json_object_get(root, "is_root_device"))) {
        const char *uuid = json_string_value(json_object_get(root, "partuuid"));
        if (uuid)
            fsi_buf_printf(&b, " root=PARTUUID=%s", uuid);
        else
            fsi_buf_printf(&b, " root=/dev/vda");
        fsi_buf_printf(&b, " %s",
                       json_is_true(json_object_get(root, "is_read_only")) ? "ro" : "rw");
    }
    return b.data;
}

void fsi_guest_boot(void)
{
    free(g_vm.cmdline);
    g_vm.cmdline = build_cmdline();
    g_vm.state = FSI_RUNNING;
    g_vm.start_ns = fsi_now_ns();
    g_vm.halted = panicked = g_vm.driver_ready = g_vm.cad_pending = false;
    g_vm.kbd_bytes = 0;
    g_vm.metrics_at = fsi_now_ns() + (int64_t)FSI_METRICS_PERIOD_MS * 1000000;
    json_int_t mem = json_integer_value(json_object_get(g_vm.res.machine, "mem_size_mib"));
    kline("Linux version 6.1.155-standin (firecracker stand-in) #1 SMP PREEMPT_DYNAMIC");
    kline("Command line: %s", g_vm.cmdline);
    kline("Memory: %lldK/%lldK available", (long long)mem * 1024, (long long)mem * 1024);
    kline("smp: Brought up 1 node, %lld CPUs",
          (long long)json_integer_value(json_object_get(g_vm.res.machine, "vcpu_count")));
    stop_all();
    arm(&g_vm.t_boot, g_vm.f.guest_boot_ms);
    arm(&g_vm.t_poweroff, g_vm.f.poweroff_after_ms);
    arm(&g_vm.t_reboot, g_vm.f.reboot_after_ms);
    arm(&g_vm.t_panic, g_vm.f.panic_after_ms);
    arm(&g_vm.t_vcpu_error, g_vm.f.vcpu_error_after_ms);
    if (g_vm.f.crash_after_ms >= 0 && !g_vm.crash_at)
        g_vm.crash_at = fsi_now_ns() + (int64_t)g_vm.f.crash_after_ms * 1000000;
    LOGI(M_BUILDER, "standin: vCPUs running, guest command line: %s", g_vm.cmdline);
}

void fsi_guest_freeze(void)
{
    int64_t now = fsi_now_ns();
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        if (!timers[i]->deadline)
            continue;
        timers[i]->left = timers[i]->deadline > now ? timers[i]->deadline - now : 1;
        timers[i]->deadline = 0;
    }
    if (g_vm.metrics_at) {
        g_vm.metrics_left = g_vm.metrics_at > now ? g_vm.metrics_at - now : 1;
        g_vm.metrics_at = 0;
    }
}

/* A running guest with its keyboard driver reads the i8042 buffer. */
static void read_keys(void)
{
    if (g_vm.state != FSI_RUNNING || !g_vm.driver_ready || g_vm.halted || panicked ||
        g_vm.f.no_kbd || !g_vm.kbd_bytes)
        return;
    g_vm.kbd_bytes = 0;
    fsi_metric_inc("i8042", "read_count");
    if (g_vm.f.ignore_cad || g_vm.cad_pending) {
        LOGI(M_STANDIN, "standin: the guest ignores Ctrl+Alt+Del");
        return;
    }
    g_vm.cad_pending = true;
    arm(&g_vm.t_cad, g_vm.f.cad_delay_ms);
}

void fsi_guest_thaw(void)
{
    int64_t now = fsi_now_ns();
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        if (!timers[i]->left)
            continue;
        timers[i]->deadline = now + timers[i]->left;
        timers[i]->left = 0;
    }
    if (g_vm.metrics_left) {
        g_vm.metrics_at = now + g_vm.metrics_left;
        g_vm.metrics_left = 0;
    }
    read_keys();
}

char *fsi_guest_ctrl_alt_del(void)
{
    if (16 - g_vm.kbd_bytes < 4)
        return fsi_xstrdup("I8042 error: i8042 internal buffer full.");
    g_vm.kbd_bytes += 4;
    read_keys();
    return NULL;
}

/* The guest asserts the CPU reset line (reboot=k): Vmm::stop(Ok). */
static void cpu_reset(void)
{
    const char *how = g_vm.cmdline ? param(g_vm.cmdline, "reboot") : NULL;
    stop_all();
    if (how && (how[0] == 't' || !strncmp(how, "triple", 6))) {
        LOGE(M_VCPU, "Unexpected exit reason on vcpu run: Shutdown");
        fsi_vmm_stop(FSI_EXIT_GENERIC);
        return;
    }
    fsi_metric_inc("i8042", "reset_count");
    fsi_vmm_stop(FSI_EXIT_OK);
}

void fsi_guest_poweroff(const char *why)
{
    if (g_vm.state == FSI_NOT_STARTED || g_vm.halted || panicked) {
        LOGI(M_STANDIN, "standin: %s: no running guest to power off", why);
        return;
    }
    LOGI(M_STANDIN, "standin: %s: the guest powers off (x86: it halts, Firecracker stays)", why);
    kline("reboot: Power down");
    stop_all();
    g_vm.halted = true;
}

void fsi_guest_reboot(const char *why)
{
    if (g_vm.state == FSI_NOT_STARTED || g_vm.halted) {
        LOGI(M_STANDIN, "standin: %s: no running guest to reboot", why);
        return;
    }
    LOGI(M_STANDIN, "standin: %s: the guest reboots", why);
    if (!panicked)
        kline("reboot: Restarting system");
    cpu_reset();
}

void fsi_guest_panic(const char *why)
{
    if (g_vm.state == FSI_NOT_STARTED || g_vm.halted || panicked) {
        LOGI(M_STANDIN, "standin: %s: no running guest to panic", why);
        return;
    }
    LOGI(M_STANDIN, "standin: %s: the guest panics", why);
    kline("Kernel panic - not syncing: standin");
    stop_all();
    panicked = true;
    const char *p = param(g_vm.cmdline, "panic");
    long secs = p ? strtol(p, NULL, 10) : 0;
    if (secs > 0) {
        kline("Rebooting in %ld seconds..", secs);
        arm(&g_vm.t_panic_reboot, secs * 1000);
    } else if (secs < 0) {
        cpu_reset();
    } else {
        kline("---[ end Kernel panic - not syncing: standin ]---");
    }
}

static void boot_done(void)
{
    g_vm.driver_ready = true;
    g_vm.kbd_bytes = 0; /* i8042_flush() at driver init: earlier keys are lost */
    kline("Run /sbin/init as init process");
    if (g_vm.res.boot_timer) {
        int64_t us = (fsi_now_ns() - g_vm.start_ns) / 1000;
        LOGI(M_BOOT_TIMER, "Guest-boot-time = %6lld us %lld ms, %6lld CPU us %lld CPU ms",
             (long long)us, (long long)us / 1000, (long long)us / 4, (long long)us / 4000);
    }
}

int fsi_guest_next_timeout(void)
{
    int64_t next = 0, now = fsi_now_ns();
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
        if (timers[i]->deadline && (!next || timers[i]->deadline < next))
            next = timers[i]->deadline;
    if (g_vm.metrics_at && (!next || g_vm.metrics_at < next))
        next = g_vm.metrics_at;
    if (g_vm.crash_at && (!next || g_vm.crash_at < next))
        next = g_vm.crash_at;
    if (!next)
        return -1;
    return next <= now ? 0 : (int)((next - now + 999999) / 1000000);
}

static bool due(fsi_gtimer *t, int64_t now)
{
    if (!t->deadline || t->deadline > now)
        return false;
    t->deadline = 0;
    return true;
}

void fsi_guest_fire_due(void)
{
    int64_t now = fsi_now_ns();
    if (g_vm.crash_at && g_vm.crash_at <= now)
        fsi_fault_crash(g_vm.f.crash_signal, "crash_after_ms");
    if (g_vm.metrics_at && g_vm.metrics_at <= now) {
        g_vm.metrics_at = now + (int64_t)FSI_METRICS_PERIOD_MS * 1000000;
        if (fsi_metrics_write() < 0)
            fsi_metric_inc("logger", "metrics_fails");
    }
    if (due(&g_vm.t_boot, now))
        boot_done();
    if (due(&g_vm.t_vcpu_error, now)) {
        LOGE(M_VCPU, "Received KVM_EXIT_INTERNAL_ERROR signal");
        stop_all();
        fsi_vmm_stop(FSI_EXIT_GENERIC);
        return;
    }
    if (due(&g_vm.t_poweroff, now))
        fsi_guest_poweroff("poweroff_after_ms");
    if (due(&g_vm.t_reboot, now))
        fsi_guest_reboot("reboot_after_ms");
    if (due(&g_vm.t_panic, now))
        fsi_guest_panic("panic_after_ms");
    if (due(&g_vm.t_panic_reboot, now))
        cpu_reset();
    if (due(&g_vm.t_cad, now))
        fsi_guest_reboot("Ctrl+Alt+Del");
}

void fsi_guest_restored(bool resume)
{
    free(g_vm.cmdline);
    g_vm.cmdline = NULL; /* the restored kernel's command line is not known */
    g_vm.restored = true;
    g_vm.start_ns = fsi_now_ns();
    g_vm.halted = panicked = g_vm.cad_pending = false;
    g_vm.driver_ready = true; /* the guest was running when it was snapshotted */
    g_vm.kbd_bytes = 0;
    stop_all();
    g_vm.state = FSI_PAUSED;
    g_vm.metrics_left = (int64_t)FSI_METRICS_PERIOD_MS * 1000000;
    if (resume) {
        g_vm.state = FSI_RUNNING;
        fsi_guest_thaw();
    }
}
