/*
 * log.c - structured logs: one JSON object per line on stdout.
 *
 * Operators feed these lines to a log pipeline, so every line must parse as
 * JSON whatever the message contains; strings are escaped here, once.
 */
#include "core.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static log_level min_level = LOG_INFO;
static log_context_fn context_fn;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level min)
{
    min_level = min;
}

int log_level_from_name(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
        if (str_ieq(level_names[i], name))
            return (int)i;
    return -1;
}

void log_set_context_fn(log_context_fn fn)
{
    context_fn = fn;
}

static void append_json_string(chcp_buf *b, const char *s)
{
    buf_append_byte(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            buf_append_str(b, "\\\"");
            break;
        case '\\':
            buf_append_str(b, "\\\\");
            break;
        case '\n':
            buf_append_str(b, "\\n");
            break;
        case '\r':
            buf_append_str(b, "\\r");
            break;
        case '\t':
            buf_append_str(b, "\\t");
            break;
        default:
            if (*p < 0x20)
                buf_printf(b, "\\u%04x", *p);
            else
                buf_append_byte(b, *p);
        }
    }
    buf_append_byte(b, '"');
}

void log_write(log_level level, const char *vm_id, const char *const *kv, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%06ldZ", ts.tv_nsec / 1000);

    chcp_buf b = CHCP_BUF_INIT;
    buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", when, level_names[level]);
    append_json_string(&b, msg);
    if (vm_id) {
        buf_append_str(&b, ",\"vm_id\":");
        append_json_string(&b, vm_id);
    }
    char trace_id[33], span_id[17];
    if (vm_id && context_fn && context_fn(vm_id, trace_id, span_id))
        buf_printf(&b, ",\"trace_id\":\"%s\",\"span_id\":\"%s\"", trace_id, span_id);
    for (; kv && kv[0] && kv[1]; kv += 2) {
        buf_append_byte(&b, ',');
        append_json_string(&b, kv[0]);
        buf_append_byte(&b, ':');
        append_json_string(&b, kv[1]);
    }
    buf_append_str(&b, "}\n");
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    buf_free(&b);
}
