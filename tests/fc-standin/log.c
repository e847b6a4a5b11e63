/*
 * log.c - Firecracker's logger (src/vmm/src/logger/logging.rs).
 *
 * One line per record, written with a single write():
 *   2026-08-21T12:08:08.123456789 [anonymous-instance:main] message
 * with ":LEVEL" and ":file:line" appended inside the brackets when
 * show_level / show_log_origin are on. The default target is stdout; a
 * log_path (from --log-path or PUT /logger) is opened the way
 * open_file_nonblock() does: O_RDWR|O_CREAT|O_NONBLOCK, no O_TRUNC and no
 * O_APPEND, so an existing file is overwritten from its start and a FIFO
 * needs no reader (a full FIFO drops lines: logger.missed_log_count).
 * The level filter defaults to Info, and every update without a level
 * resets it to Info, as LOGGER.update() does. The module filter keeps
 * records whose module path starts with it.
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1; /* -1: stdout */
static int log_level = FSI_INFO;
static bool show_level;
static bool show_origin;
static char *module_filter;
static char *instance_id;

static __thread const char *thread_name = "main";
volatile int fsi_in_signal;

int fsi_lock(void *mu)
{
    return fsi_in_signal ? pthread_mutex_trylock(mu) : pthread_mutex_lock(mu);
}

void fsi_log_set_thread(const char *name)
{
    thread_name = name;
}

void fsi_log_init(const char *id)
{
    free(instance_id);
    instance_id = fsi_xstrdup(id);
}

int fsi_level_parse(const char *s)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {{"off", FSI_OFF},      {"error", FSI_ERROR}, {"warn", FSI_WARN},
                 {"warning", FSI_WARN}, {"info", FSI_INFO},   {"debug", FSI_DEBUG},
                 {"trace", FSI_TRACE}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(s, names[i].name))
            return names[i].level;
    return -1;
}

int fsi_log_update(const char *path, int level, int show_lvl, int show_orig, const char *module)
{
    int fd = -1;
    if (path) {
        fd = open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
        if (fd < 0)
            return errno;
    }
    pthread_mutex_lock(&log_mu);
    log_level = level < 0 ? FSI_INFO : level;
    if (fd >= 0) {
        if (log_fd >= 0)
            close(log_fd);
        log_fd = fd;
    }
    if (show_lvl >= 0)
        show_level = show_lvl;
    if (show_orig >= 0)
        show_origin = show_orig;
    if (module) {
        free(module_filter);
        module_filter = fsi_xstrdup(module);
    }
    pthread_mutex_unlock(&log_mu);
    return 0;
}

static const char *level_name(enum fsi_level l)
{
    static const char *const names[] = {"OFF", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    return names[l];
}

void fsi_log_at(enum fsi_level lvl, const char *module, const char *file, int line, const char *fmt,
                ...)
{
    if (fsi_lock(&log_mu))
        return;
    bool enabled = lvl != FSI_OFF && (int)lvl <= log_level &&
                   (!module_filter || !strncmp(module, module_filter, strlen(module_filter)));
    if (!enabled) {
        pthread_mutex_unlock(&log_mu);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    fsi_buf b = {0};
    fsi_buf_printf(&b, "%d-%02d-%02dT%02d:%02d:%02d.%09ld [%s:%s", tm.tm_year + 1900, tm.tm_mon + 1,
                   tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec,
                   instance_id ? instance_id : FSI_DEFAULT_ID, thread_name);
    if (show_level)
        fsi_buf_printf(&b, ":%s", level_name(lvl));
    if (show_origin)
        fsi_buf_printf(&b, ":%s:%d", file, line);
    fsi_buf_append(&b, "] ", 2);
    va_list ap;
    va_start(ap, fmt);
    char *msg = fsi_xvasprintf(fmt, ap);
    va_end(ap);
    fsi_buf_printf(&b, "%s\n", msg);
    free(msg);
    int fd = log_fd >= 0 ? log_fd : STDOUT_FILENO;
    ssize_t n = write(fd, b.data, b.len);
    pthread_mutex_unlock(&log_mu);
    if (n != (ssize_t)b.len)
        fsi_metric_inc("logger", "missed_log_count");
    fsi_buf_free(&b);
}
