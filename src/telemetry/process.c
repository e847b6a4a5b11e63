/*
 * process.c - the daemon's own CPU, memory, uptime and file descriptors, read
 * from /proc, for /metrics and the health endpoint.
 */
#include "telemetry/telemetry.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static uint64_t process_start_ns;

/* Fields 14 (utime), 15 (stime), 22 (starttime), 23 (vsize), 24 (rss). */
static int read_proc_stat(uint64_t *starttime_ticks, uint64_t *vsize, uint64_t *rss_pages,
                          chcp_error **err)
{
    FILE *f = fopen("/proc/self/stat", "re");
    if (!f)
        return error_set_errno(err, CHCP_INTERNAL, errno, "opening /proc/self/stat");
    char line[1024];
    bool ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    /* The command name may contain spaces and ')': skip past the last ')'. */
    char *p = ok ? strrchr(line, ')') : NULL;
    if (!p)
        return error_set(err, CHCP_INTERNAL, "unparsable /proc/self/stat");
    p += 2; /* ") " -> field 3 */
    unsigned long long v[25] = {0};
    int field = 3;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok && field <= 24;
         tok = strtok_r(NULL, " ", &save), field++)
        v[field] = strtoull(tok, NULL, 10);
    if (field <= 24)
        return error_set(err, CHCP_INTERNAL, "short /proc/self/stat");
    *starttime_ticks = v[22];
    *vsize = v[23];
    *rss_pages = v[24];
    return 0;
}

static unsigned count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the directory's own fd */
}

int tm_process_stats_read(tm_process_stats *s, chcp_error **err)
{
    memset(s, 0, sizeof(*s));
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "getrusage");
    s->cpu_user_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    s->cpu_system_seconds = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

    uint64_t start_ticks = 0, vsize = 0, rss_pages = 0;
    if (read_proc_stat(&start_ticks, &vsize, &rss_pages, err) < 0)
        return -1;
    s->virtual_bytes = vsize;
    s->rss_bytes = rss_pages * (uint64_t)sysconf(_SC_PAGESIZE);

    if (!process_start_ns)
        process_start_ns = time_mono_ns();
    s->uptime_seconds = (double)(time_mono_ns() - process_start_ns) / 1e9;

    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) == 3) {
        s->load1 = load[0];
        s->load5 = load[1];
        s->load15 = load[2];
    }
    s->open_fds = count_fds();
    return 0;
}

typedef struct process_metrics {
    tm_metric *cpu_time, *memory_usage, *memory_virtual, *uptime, *fds;
} process_metrics;

static void collect_process(tm_registry *r, void *ud)
{
    process_metrics *pm = ud;
    tm_process_stats s;
    chcp_error *err = NULL;
    if (tm_process_stats_read(&s, &err) < 0) {
        error_free(err);
        return;
    }
    const char *user[] = {"user", NULL}, *system[] = {"system", NULL};
    tm_set(pm->cpu_time, user, s.cpu_user_seconds);
    tm_set(pm->cpu_time, system, s.cpu_system_seconds);
    tm_set(pm->memory_usage, NULL, (double)s.rss_bytes);
    tm_set(pm->memory_virtual, NULL, (double)s.virtual_bytes);
    tm_set(pm->uptime, NULL, s.uptime_seconds);
    tm_set(pm->fds, NULL, s.open_fds);
}

void tm_register_process_metrics(tm_registry *r)
{
    /* One per registry; freed with the process (registries live as long). */
    static process_metrics pm;
    const char *cpu_mode[] = {"cpu.mode", NULL};
    if (!process_start_ns)
        process_start_ns = time_mono_ns();
    pm.cpu_time = tm_metric_new(r, TM_COUNTER, "process.cpu.time", "s",
                                "Total CPU seconds broken down by mode.", cpu_mode, NULL, 0);
    pm.memory_usage = tm_metric_new(r, TM_UPDOWN, "process.memory.usage", "By",
                                    "The amount of physical memory in use.", NULL, NULL, 0);
    pm.memory_virtual = tm_metric_new(r, TM_UPDOWN, "process.memory.virtual", "By",
                                      "The amount of committed virtual memory.", NULL, NULL, 0);
    pm.uptime = tm_metric_new(r, TM_GAUGE, "process.uptime", "s",
                              "The time the process has been running.", NULL, NULL, 0);
    /* Not semconv's process.unix.file_descriptor.count: its Prometheus name
     * ends in _count, which promtool rejects for a gauge. This is the name
     * Prometheus' own client libraries use (process_open_fds). */
    pm.fds = tm_metric_new(r, TM_UPDOWN, "process.open_fds", "{file_descriptor}",
                           "Number of unix file descriptors in use by the process.", NULL, NULL, 0);
    tm_registry_on_collect(r, collect_process, &pm);
}
