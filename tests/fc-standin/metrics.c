/*
 * metrics.c - Firecracker's metrics system (src/vmm/src/logger/metrics.rs).
 *
 * Initialised once (--metrics-path or PUT /metrics; a second init fails with
 * "Reinitialization of metrics not allowed."), the target opened like the
 * logger's (O_RDWR|O_CREAT|O_NONBLOCK: a file or a FIFO without reader).
 * Each write is one JSON line: utc_timestamp_ms, the optional "id" (emit_id)
 * and "properties", then the per-component groups. Counters
 * (SharedIncMetric) report what happened since the previous write and
 * restart from zero; stored values (SharedStoreMetric) persist.
 *
 * The stand-in emits a subset of Firecracker's groups, with their real
 * names (api_server, deprecated_api, get/put/patch_api_requests, i8042,
 * latencies_us, logger, signals, vmm): the ones its behaviour can change.
 * Writes happen where Firecracker writes: every 60 s while the microVM runs
 * (not before InstanceStart, not while paused), on FlushMetrics, when the
 * Vmm is dropped at exit and in the fatal-signal handlers.
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int metrics_fd = -1;
static bool emit_id;
static json_t *properties; /* object or NULL */
static json_t *counters;   /* group -> {name -> count since the last write} */
static json_t *stored;     /* group -> {name -> value} */

static const char *const put_fields[] = {
    "actions_count",        "actions_fails",        "boot_source_count",
    "boot_source_fails",    "drive_count",          "drive_fails",
    "logger_count",         "logger_fails",         "machine_cfg_count",
    "machine_cfg_fails",    "cpu_cfg_count",        "cpu_cfg_fails",
    "metrics_count",        "metrics_fails",        "network_count",
    "network_fails",        "mmds_count",           "mmds_fails",
    "vsock_count",          "vsock_fails",          "pmem_count",
    "pmem_fails",           "serial_count",         "serial_fails",
    "hotplug_memory_count", "hotplug_memory_fails", NULL};
static const char *const patch_fields[] = {"drive_count",
                                           "drive_fails",
                                           "network_count",
                                           "network_fails",
                                           "machine_cfg_count",
                                           "machine_cfg_fails",
                                           "mmds_count",
                                           "mmds_fails",
                                           "hotplug_memory_count",
                                           "hotplug_memory_fails",
                                           "pmem_count",
                                           "pmem_fails",
                                           NULL};
static const char *const get_fields[] = {"instance_info_count",  "machine_cfg_count",
                                         "mmds_count",           "vmm_version_count",
                                         "hotplug_memory_count", NULL};
static const char *const api_server_fields[] = {"process_startup_time_us",
                                                "process_startup_time_cpu_us", NULL};
static const char *const deprecated_fields[] = {"deprecated_http_api_calls",
                                                "deprecated_cmd_line_api_calls", NULL};
static const char *const i8042_fields[] = {"error_count", "missed_read_count", "missed_write_count",
                                           "read_count",  "reset_count",       "write_count",
                                           NULL};
static const char *const latency_fields[] = {"full_create_snapshot",
                                             "diff_create_snapshot",
                                             "load_snapshot",
                                             "pause_vm",
                                             "resume_vm",
                                             "vmm_full_create_snapshot",
                                             "vmm_diff_create_snapshot",
                                             "vmm_load_snapshot",
                                             "vmm_pause_vm",
                                             "vmm_resume_vm",
                                             NULL};
static const char *const logger_fields[] = {"missed_metrics_count", "metrics_fails",
                                            "missed_log_count", NULL};
static const char *const signal_fields[] = {"sigbus",  "sigsegv", "sigxfsz", "sigxcpu",
                                            "sigpipe", "sighup",  "sigill",  NULL};
static const char *const vmm_fields[] = {"panic_count", NULL};

static const struct group {
    const char *name;
    const char *const *fields;
} groups[] = {
    {"api_server", api_server_fields},
    {"deprecated_api", deprecated_fields},
    {"get_api_requests", get_fields},
    {"i8042", i8042_fields},
    {"latencies_us", latency_fields},
    {"logger", logger_fields},
    {"patch_api_requests", patch_fields},
    {"put_api_requests", put_fields},
    {"vmm", vmm_fields},
    {"signals", signal_fields},
};

char *fsi_metrics_init(const char *path, bool with_id, json_t *props)
{
    int fd = open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0)
        return fsi_io_error(errno);
    pthread_mutex_lock(&mu);
    if (metrics_fd >= 0) {
        pthread_mutex_unlock(&mu);
        close(fd);
        return fsi_xstrdup("Reinitialization of metrics not allowed.");
    }
    metrics_fd = fd;
    if (with_id)
        emit_id = true;
    if (props)
        properties = json_incref(props);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static json_t *group_of(json_t **root, const char *group)
{
    if (!*root)
        *root = json_object();
    json_t *g = json_object_get(*root, group);
    if (!g) {
        g = json_object();
        json_object_set_new(*root, group, g);
    }
    return g;
}

void fsi_metric_inc(const char *group, const char *name)
{
    if (fsi_lock(&mu))
        return;
    json_t *g = group_of(&counters, group);
    json_int_t n = json_integer_value(json_object_get(g, name));
    json_object_set_new(g, name, json_integer(n + 1));
    pthread_mutex_unlock(&mu);
}

void fsi_metric_store(const char *group, const char *name, uint64_t value)
{
    if (fsi_lock(&mu))
        return;
    json_object_set_new(group_of(&stored, group), name, json_integer((json_int_t)value));
    pthread_mutex_unlock(&mu);
}

int fsi_metrics_write(void)
{
    if (fsi_lock(&mu)) {
        errno = EAGAIN;
        return -1;
    }
    if (metrics_fd < 0) {
        pthread_mutex_unlock(&mu);
        return 0;
    }
    json_t *out = json_object();
    json_object_set_new(out, "utc_timestamp_ms", json_integer(fsi_realtime_ms()));
    if (emit_id)
        json_object_set_new(out, "id", json_string(g_opts.id));
    if (properties)
        json_object_set(out, "properties", properties);
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        json_t *g = json_object();
        json_t *cg = counters ? json_object_get(counters, groups[i].name) : NULL;
        json_t *sg = stored ? json_object_get(stored, groups[i].name) : NULL;
        for (const char *const *f = groups[i].fields; *f; f++) {
            json_t *v = sg ? json_object_get(sg, *f) : NULL;
            if (!v)
                v = cg ? json_object_get(cg, *f) : NULL;
            json_object_set_new(g, *f, json_integer(v ? json_integer_value(v) : 0));
        }
        json_object_set_new(out, groups[i].name, g);
    }
    json_decref(counters); /* SharedIncMetric: the next write reports what follows */
    counters = NULL;
    char *line = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(out);
    size_t n = strlen(line);
    line[n] = '\n';
    ssize_t w = write(metrics_fd, line, n + 1);
    int saved = errno;
    pthread_mutex_unlock(&mu);
    free(line);
    if (w != (ssize_t)(n + 1)) {
        fsi_metric_inc("logger", "missed_metrics_count");
        errno = w < 0 ? saved : EAGAIN;
        return -1;
    }
    return 1;
}
