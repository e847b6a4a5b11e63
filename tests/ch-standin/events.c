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
#include <time.h>
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

/*
 * Delivery. CH hands events to a monitor thread, so a reader may see an event
 * after the HTTP reply of the call that caused it. By default the stand-in
 * writes synchronously (before the reply: deterministic tests); with
 * event_delay_ms > 0 a writer thread delivers each event that much later, in
 * order, which exposes clients that assume events precede replies.
 */
typedef struct ev_item {
    char *msg;
    int64_t due;
    struct ev_item *next;
} ev_item;

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ev_cv = PTHREAD_COND_INITIALIZER;
static ev_item *ev_head, *ev_tail;
static bool ev_thread_started, ev_stop;
static pthread_t ev_thread;

static void ev_write(const char *msg)
{
    if (ev_fd < 0)
        return;
    /* Non-blocking: a full pipe drops (part of) the event, like CH. */
    ssize_t n;
    do {
        n = write(ev_fd, msg, strlen(msg));
    } while (n < 0 && errno == EINTR);
}

static void *ev_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "event-monitor");
    pthread_mutex_lock(&ev_lock);
    for (;;) {
        while (!ev_head && !ev_stop)
            pthread_cond_wait(&ev_cv, &ev_lock);
        if (!ev_head)
            break;
        int64_t now = si_now_ns();
        if (ev_head->due > now && !ev_stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wake = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (ev_head->due - now);
            ts.tv_sec = (time_t)(wake / 1000000000);
            ts.tv_nsec = (long)(wake % 1000000000);
            pthread_cond_timedwait(&ev_cv, &ev_lock, &ts);
            continue;
        }
        ev_item *it = ev_head;
        ev_head = it->next;
        if (!ev_head)
            ev_tail = NULL;
        ev_write(it->msg);
        free(it->msg);
        free(it);
    }
    pthread_mutex_unlock(&ev_lock);
    return NULL;
}

void si_events_init(int fd)
{
    ev_fd = fd;
    ev_start = si_now_ns();
}

void si_events_flush(void)
{
    if (!ev_thread_started)
        return;
    pthread_mutex_lock(&ev_lock);
    ev_stop = true;
    pthread_cond_signal(&ev_cv);
    pthread_mutex_unlock(&ev_lock);
    pthread_join(ev_thread, NULL);
    ev_thread_started = false;
}

static void deliver(char *msg, long delay_ms)
{
    pthread_mutex_lock(&ev_lock);
    if (delay_ms <= 0 && !ev_head) {
        ev_write(msg);
        free(msg);
    } else {
        if (!ev_thread_started && !ev_stop && pthread_create(&ev_thread, NULL, ev_main, NULL) == 0)
            ev_thread_started = true;
        ev_item *it = si_xmalloc(sizeof(*it));
        *it = (ev_item){msg, si_now_ns() + (int64_t)(delay_ms > 0 ? delay_ms : 0) * 1000000, NULL};
        if (ev_tail)
            ev_tail->next = it;
        else
            ev_head = it;
        ev_tail = it;
        pthread_cond_signal(&ev_cv);
    }
    pthread_mutex_unlock(&ev_lock);
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
    if (s)
        deliver(si_xasprintf("%s\n\n", s), g_vm.f.event_delay_ms);
    free(s);
}
