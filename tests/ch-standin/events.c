/*
 * events.c - the stand-in's log output and CH event monitor.
 *
 * Events are written exactly like CH's event_monitor crate does: a
 * pretty-printed JSON object (serde_json::to_string_pretty, two-space indent)
 * followed by "\n\n", with a timestamp that is the monotonic time elapsed
 * since the monitor was created. The fd is non-blocking, so when the reader
 * falls behind an event is silently dropped (possibly half-written), as in CH.
 * Each event is also logged at Info level ("Event: source = vm event = booted").
 */
#include "standin.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int log_fd = -1;
static int log_max = SI_WARN;
static int64_t log_start;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static int ev_fd = -1;
static int64_t ev_start;

void si_log_init(int fd, int level_max)
{
    log_fd = fd;
    log_max = level_max;
    log_start = si_now_ns();
}

static const char *level_name(enum si_level l)
{
    switch (l) {
    case SI_ERROR:
        return "ERROR";
    case SI_WARN:
        return "WARN";
    case SI_INFO:
        return "INFO";
    case SI_DEBUG:
        return "DEBUG";
    default:
        return "TRACE";
    }
}

void si_log(enum si_level lvl, const char *fmt, ...)
{
    if ((int)lvl > log_max)
        return;
    char thread[16] = "?";
    pthread_getname_np(pthread_self(), thread, sizeof(thread));
    va_list ap;
    char *msg = NULL;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    double ms = (double)(si_now_ns() - log_start) / 1e6;
    char *line = si_xasprintf("cloud-hypervisor: %.6fms: <%s> %s:standin -- %s\n", ms, thread,
                              level_name(lvl), msg ? msg : "?");
    pthread_mutex_lock(&log_lock);
    int fd = log_fd >= 0 ? log_fd : STDERR_FILENO;
    size_t off = 0, len = strlen(line);
    while (off < len) {
        ssize_t n = write(fd, line + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    pthread_mutex_unlock(&log_lock);
    free(line);
    free(msg);
}

void si_events_init(int fd)
{
    ev_fd = fd;
    ev_start = si_now_ns();
}

void si_event(const char *source, const char *event, ...)
{
    int64_t d = si_now_ns() - ev_start;
    json_t *props = NULL;
    si_buf plog = {0};
    va_list ap;
    va_start(ap, event);
    for (const char *k = va_arg(ap, const char *); k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        if (!props)
            props = json_object();
        json_object_set_new(props, k, json_string(v));
        si_buf_printf(&plog, "%s%s = %s", plog.len ? ", " : "", k, v);
    }
    va_end(ap);
    LOGI("Event: source = %s event = %s %s", source, event, plog.len ? plog.data : "");
    si_buf_free(&plog);

    json_t *o =
        json_pack("{s:{s:I,s:I},s:s,s:s,s:o}", "timestamp", "secs", (json_int_t)(d / 1000000000),
                  "nanos", (json_int_t)(d % 1000000000), "source", source, "event", event,
                  "properties", props ? props : json_null());
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (ev_fd >= 0 && s) {
        char *msg = si_xasprintf("%s\n\n", s);
        /* Non-blocking: a full pipe drops (part of) the event, like CH. */
        ssize_t n;
        do {
            n = write(ev_fd, msg, strlen(msg));
        } while (n < 0 && errno == EINTR);
        free(msg);
    }
    free(s);
}
