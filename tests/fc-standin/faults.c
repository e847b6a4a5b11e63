/*
 * faults.c - fault-injection directives of the Firecracker stand-in.
 *
 * A control plane starts Firecracker with a clean environment and fixed
 * flags, so faults cannot come through the environment or argv. They come
 * from (README.md):
 *   - `standin.<key>=<value>` words in the boot source's boot_args (read at
 *     PUT /boot-source or from --config-file; every PUT replaces them), and
 *   - a faults file `standin-faults` next to the --api-sock path (else the
 *     --log-path, else the --config-file), read once at start: `key=value`
 *     lines, `#` comments. It also carries the start-up faults
 *     (exit_at_start, start_delay_ms, no_kvm).
 * Both use the same keys; boot_args directives override the file. The keys
 * deliberately match the Cloud Hypervisor stand-in's where the meaning is
 * the same (boot_delay_ms, fail_boot, crash_on, hang_on, poweroff_after_ms,
 * ignore_power_button ...), so one fault table can drive both back ends.
 */
#include "standin.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fsi_faults_defaults(fsi_faults *f)
{
    memset(f, 0, sizeof(*f));
    f->guest_boot_ms = 20;
    f->poweroff_after_ms = -1;
    f->reboot_after_ms = -1;
    f->panic_after_ms = -1;
    f->vcpu_error_after_ms = -1;
    f->crash_after_ms = -1;
    f->cad_delay_ms = 50;
    f->fail_boot_times = -1;
    f->crash_signal = SIGABRT;
    f->exit_at_start = -1;
}

static int parse_long(const char *v, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0)
        return -1;
    *out = n;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "true", "on", "yes"};
    static const char *const no[] = {"0", "false", "off", "no"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcmp(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcmp(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int parse_signal(const char *v, int *out)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"ABRT", SIGABRT}, {"SEGV", SIGSEGV}, {"KILL", SIGKILL}, {"BUS", SIGBUS},
                {"ILL", SIGILL},   {"SYS", SIGSYS},   {"HUP", SIGHUP},   {"XFSZ", SIGXFSZ},
                {"XCPU", SIGXCPU}, {"TERM", SIGTERM}};
    if (!strncmp(v, "SIG", 3))
        v += 3;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (!strcmp(v, sigs[i].name)) {
            *out = sigs[i].sig;
            return 0;
        }
    long n;
    if (parse_long(v, &n) == 0 && n > 0 && n < 65) {
        *out = (int)n;
        return 0;
    }
    return -1;
}

static int set_str(char *dst, size_t cap, const char *v)
{
    if (strlen(v) >= cap)
        return -1;
    strcpy(dst, v);
    return 0;
}

int fsi_faults_set(fsi_faults *f, const char *key, const char *val)
{
    if (!strncmp(key, "standin.", 8))
        key += 8;
    static const struct {
        const char *key;
        size_t off;
    } longs[] = {
        {"boot_delay_ms", offsetof(fsi_faults, boot_delay_ms)},
        {"api_delay_ms", offsetof(fsi_faults, api_delay_ms)},
        {"guest_boot_ms", offsetof(fsi_faults, guest_boot_ms)},
        {"poweroff_after_ms", offsetof(fsi_faults, poweroff_after_ms)},
        {"reboot_after_ms", offsetof(fsi_faults, reboot_after_ms)},
        {"panic_after_ms", offsetof(fsi_faults, panic_after_ms)},
        {"vcpu_error_after_ms", offsetof(fsi_faults, vcpu_error_after_ms)},
        {"crash_after_ms", offsetof(fsi_faults, crash_after_ms)},
        {"cad_delay_ms", offsetof(fsi_faults, cad_delay_ms)},
        {"acpi_delay_ms", offsetof(fsi_faults, cad_delay_ms)}, /* CH stand-in's name */
        {"fail_boot_times", offsetof(fsi_faults, fail_boot_times)},
        {"start_delay_ms", offsetof(fsi_faults, start_delay_ms)},
    };
    for (size_t i = 0; i < sizeof(longs) / sizeof(longs[0]); i++)
        if (!strcmp(key, longs[i].key))
            return parse_long(val, (long *)((char *)f + longs[i].off));
    if (!strcmp(key, "fail_boot")) {
        bool b;
        if (parse_bool(val, &b) < 0)
            return -1;
        f->fail_boot = b;
        return 0;
    }
    if (!strcmp(key, "ignore_cad") || !strcmp(key, "ignore_power_button"))
        return parse_bool(val, &f->ignore_cad);
    if (!strcmp(key, "no_kbd"))
        return parse_bool(val, &f->no_kbd);
    if (!strcmp(key, "no_kvm"))
        return parse_bool(val, &f->no_kvm);
    if (!strcmp(key, "crash_signal"))
        return parse_signal(val, &f->crash_signal);
    if (!strcmp(key, "crash_on"))
        return set_str(f->crash_on, sizeof(f->crash_on), val);
    if (!strcmp(key, "hang_on"))
        return set_str(f->hang_on, sizeof(f->hang_on), val);
    if (!strcmp(key, "fail_on"))
        return set_str(f->fail_on, sizeof(f->fail_on), val);
    if (!strcmp(key, "delay_on"))
        return set_str(f->delay_on, sizeof(f->delay_on), val);
    if (!strcmp(key, "exit_message"))
        return set_str(f->exit_message, sizeof(f->exit_message), val);
    if (!strcmp(key, "exit_at_start")) {
        long n;
        if (parse_long(val, &n) < 0 || n > 255)
            return -1;
        f->exit_at_start = (int)n;
        return 0;
    }
    return 1;
}

void fsi_faults_from_cmdline(fsi_faults *f, const char *cmdline)
{
    char *copy = fsi_xstrdup(cmdline);
    char *save = NULL;
    for (char *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
        if (strncmp(w, "standin.", 8))
            continue;
        char *eq = strchr(w, '=');
        if (!eq) {
            LOGW(M_STANDIN, "standin: ignoring directive without value: %s", w);
            continue;
        }
        *eq = '\0';
        if (fsi_faults_set(f, w, eq + 1) != 0)
            LOGW(M_STANDIN, "standin: ignoring bad directive %s=%s", w, eq + 1);
        else
            LOGI(M_STANDIN, "standin: directive %s=%s", w, eq + 1);
    }
    free(copy);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int fsi_faults_from_file(fsi_faults *f, const char *path)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return -1;
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof(line), fp) && lineno < 1000) {
        lineno++;
        char *l = trim(line);
        if (!*l || *l == '#')
            continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            LOGW(M_STANDIN, "standin: %s:%d: no '='", path, lineno);
            continue;
        }
        *eq = '\0';
        char *k = trim(l), *v = trim(eq + 1);
        if (fsi_faults_set(f, k, v) != 0)
            LOGW(M_STANDIN, "standin: %s:%d: bad directive %s=%s", path, lineno, k, v);
    }
    fclose(fp);
    return 0;
}

static bool item_matches(const char *p, size_t n, const char *const *names)
{
    for (; *names; names++)
        if (strlen(*names) == n && !strncmp(p, *names, n))
            return true;
    return false;
}

/* Items are separated by ',' or '|' ("boot|pause" reads well in a cmdline). */
bool fsi_list_has(const char *list, const char *const *names)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",|");
        if (item_matches(p, n, names))
            return true;
        if (!p[n])
            break;
        p += n + 1;
    }
    return false;
}

long fsi_list_delay(const char *list, const char *const *names)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",|");
        const char *colon = memchr(p, ':', n);
        if (colon && item_matches(p, (size_t)(colon - p), names))
            return strtol(colon + 1, NULL, 10);
        if (!p[n])
            break;
        p += n + 1;
    }
    return 0;
}
