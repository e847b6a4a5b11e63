/*
 * faults.c - fault-injection directives of the CH stand-in.
 *
 * chcp starts CH with a clean environment and a fixed set of flags, so faults
 * cannot come through the environment or argv. They come from (README.md):
 *   - `standin.<key>=<value>` words in the VM config's payload.cmdline (read at
 *     vm.create, dropped at vm.delete), and
 *   - a faults file `standin-faults` next to the --log-file (or the API
 *     socket path), read once at start, holding `key=value` lines; it also
 *     carries the start-up faults (no_kvm, exit_at_start, start_delay_ms).
 * Both use the same keys; cmdline directives override the file.
 */
#include "standin.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void si_faults_defaults(si_faults *f)
{
    memset(f, 0, sizeof(*f));
    f->poweroff_after_ms = -1;
    f->reboot_after_ms = -1;
    f->panic_after_ms = -1;
    f->vcpu_error_after_ms = -1;
    f->crash_after_ms = -1;
    f->acpi_delay_ms = 50;
    f->activate_delay_ms = 5;
    f->fail_boot_times = -1;
    f->crash_signal = SIGABRT;
    f->exit_at_start = -1;
    f->compat = SI_COMPAT_V54;
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
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "yes")) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "no")) {
        *out = false;
        return 0;
    }
    return -1;
}

static int parse_signal(const char *v, int *out)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"ABRT", SIGABRT}, {"SEGV", SIGSEGV}, {"KILL", SIGKILL},
                {"BUS", SIGBUS},   {"ILL", SIGILL},   {"SYS", SIGSYS}};
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

int si_faults_set(si_faults *f, const char *key, const char *val)
{
    if (!strncmp(key, "standin.", 8))
        key += 8;
    static const struct {
        const char *key;
        size_t off;
    } longs[] = {
        {"boot_delay_ms", offsetof(si_faults, boot_delay_ms)},
        {"api_delay_ms", offsetof(si_faults, api_delay_ms)},
        {"poweroff_after_ms", offsetof(si_faults, poweroff_after_ms)},
        {"reboot_after_ms", offsetof(si_faults, reboot_after_ms)},
        {"panic_after_ms", offsetof(si_faults, panic_after_ms)},
        {"vcpu_error_after_ms", offsetof(si_faults, vcpu_error_after_ms)},
        {"crash_after_ms", offsetof(si_faults, crash_after_ms)},
        {"acpi_delay_ms", offsetof(si_faults, acpi_delay_ms)},
        {"activate_delay_ms", offsetof(si_faults, activate_delay_ms)},
        {"event_delay_ms", offsetof(si_faults, event_delay_ms)},
        {"fail_boot_times", offsetof(si_faults, fail_boot_times)},
        {"start_delay_ms", offsetof(si_faults, start_delay_ms)},
    };
    for (size_t i = 0; i < sizeof(longs) / sizeof(longs[0]); i++)
        if (!strcmp(key, longs[i].key))
            return parse_long(val, (long *)((char *)f + longs[i].off));

    if (!strcmp(key, "fail_boot")) {
        if (!strcmp(val, "late")) {
            f->fail_boot = 2;
            return 0;
        }
        bool b;
        if (parse_bool(val, &b) < 0)
            return -1;
        f->fail_boot = b ? 1 : 0;
        return 0;
    }
    if (!strcmp(key, "ignore_power_button"))
        return parse_bool(val, &f->ignore_power_button);
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
    if (!strcmp(key, "api")) {
        if (!strcmp(val, "v54"))
            f->compat = SI_COMPAT_V54;
        else if (!strcmp(val, "v53"))
            f->compat = SI_COMPAT_V53;
        else if (!strcmp(val, "v50"))
            f->compat = SI_COMPAT_V50;
        else
            return -1;
        return 0;
    }
    return 1;
}

void si_faults_from_cmdline(si_faults *f, const char *cmdline)
{
    char *copy = si_xstrdup(cmdline);
    char *save = NULL;
    for (char *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
        if (strncmp(w, "standin.", 8))
            continue;
        char *eq = strchr(w, '=');
        if (!eq) {
            LOGW("standin: ignoring directive without value: %s", w);
            continue;
        }
        *eq = '\0';
        if (si_faults_set(f, w, eq + 1) != 0)
            LOGW("standin: ignoring bad directive %s=%s", w, eq + 1);
        else
            LOGI("standin: directive %s=%s", w, eq + 1);
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

int si_faults_from_file(si_faults *f, const char *path)
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
            LOGW("standin: %s:%d: no '='", path, lineno);
            continue;
        }
        *eq = '\0';
        char *k = trim(l), *v = trim(eq + 1);
        if (si_faults_set(f, k, v) != 0)
            LOGW("standin: %s:%d: bad directive %s=%s", path, lineno, k, v);
    }
    fclose(fp);
    return 0;
}

/* Does one list item (n bytes at p) name this action? */
static bool item_matches(const char *p, size_t n, const char *action)
{
    /* "vm.boot" may be written "boot"; vmm.* actions need the full name,
     * except "ping" for vmm.ping ("shutdown" is vm.shutdown). */
    const char *shortname = NULL;
    if (!strncmp(action, "vm.", 3))
        shortname = action + 3;
    else if (!strcmp(action, "vmm.ping"))
        shortname = "ping";
    return (strlen(action) == n && !strncmp(p, action, n)) ||
           (shortname && strlen(shortname) == n && !strncmp(p, shortname, n));
}

long si_action_delay(const char *list, const char *action)
{
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",|");
        const char *colon = memchr(p, ':', n);
        if (colon && item_matches(p, (size_t)(colon - p), action))
            return strtol(colon + 1, NULL, 10);
        if (!p[n])
            break;
        p += n + 1;
    }
    return 0;
}

/* The list is separated by ',' or '|' ("boot|pause" reads naturally in a cmdline). */
bool si_action_in(const char *list, const char *action)
{
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",|");
        if (item_matches(p, n, action))
            return true;
        if (!p[n])
            break;
        p += n + 1;
    }
    return false;
}
