/*
 * log.c - structured logs: JSON lines on stdout, or native journald entries
 * when the output is the journal.
 *
 * Operators feed JSON lines to a log pipeline, so every line must parse as
 * JSON whatever the message contains; strings are escaped here, once. Under
 * systemd, stdout/stderr are a journal stream and a JSON line would land as
 * one opaque MESSAGE at the stream's priority; so when JOURNAL_STREAM names
 * our stdout or stderr (systemd.exec(5)), records are sent with
 * sd_journal_sendv instead: PRIORITY per level and every field its own
 * journal field (VM_ID, TRACE_ID, CODE_FILE, ...), so `journalctl -p warning`
 * and `journalctl VM_ID=web-1` work.
 */
#include "core.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
/* Without this, sd_journal_sendv adds CODE_FILE/LINE/FUNC of log.c itself
 * next to the caller's that log_journal_fields puts in. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <time.h>

/* sd-journal.h brings <syslog.h>, whose LOG_DEBUG/LOG_INFO macros would
 * replace our log_level names (with syslog's numbers) from here on. */
#undef LOG_DEBUG
#undef LOG_INFO

static log_level min_level = LOG_INFO;
static log_context_fn context_fn;
static bool to_journal;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
/* syslog priorities (PRIORITY=): debug 7, info 6, warning 4, err 3. */
static const int level_priorities[] = {7, 6, 4, 3};

void log_set_level(log_level min)
{
    min_level = min;
}

bool log_enabled(log_level level)
{
    return level >= min_level;
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

/* ---- where records go ---------------------------------------------------- */

/* "dev:ino", both decimal, nothing else. */
static bool parse_dev_ino(const char *s, unsigned long long *dev, unsigned long long *ino)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    *dev = strtoull(s, &end, 10);
    if (*end != ':' || end[1] < '0' || end[1] > '9')
        return false;
    *ino = strtoull(end + 1, &end, 10);
    return *end == '\0';
}

bool log_journal_stream_matches(const char *journal_stream, int fd)
{
    unsigned long long dev, ino;
    struct stat st;
    return parse_dev_ino(journal_stream, &dev, &ino) && fstat(fd, &st) == 0 &&
           (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    to_journal = log_journal_stream_matches(js, STDOUT_FILENO) ||
                 log_journal_stream_matches(js, STDERR_FILENO);
}

bool log_to_journal(void)
{
    return to_journal;
}

/* ---- JSON lines ------------------------------------------------------------ */

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

void log_format_json(const log_record *r, chcp_buf *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%06ldZ", ts.tv_nsec / 1000);

    buf_printf(b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", when, level_names[r->level]);
    append_json_string(b, r->msg);
    if (r->vm_id) {
        buf_append_str(b, ",\"vm_id\":");
        append_json_string(b, r->vm_id);
    }
    if (r->trace_id && r->span_id)
        buf_printf(b, ",\"trace_id\":\"%s\",\"span_id\":\"%s\"", r->trace_id, r->span_id);
    for (const char *const *kv = r->kv; kv && kv[0] && kv[1]; kv += 2) {
        buf_append_byte(b, ',');
        append_json_string(b, kv[0]);
        buf_append_byte(b, ':');
        append_json_string(b, kv[1]);
    }
    buf_append_str(b, "}\n");
}

/* ---- journald ---------------------------------------------------------------- */

/* Fields journald or this file give a meaning to: a key that maps to one of
 * them gets a CHCP_ prefix instead of overriding it. */
static const char *const reserved_fields[] = {
    "MESSAGE",    "MESSAGE_ID", "PRIORITY",  "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY",
    "SYSLOG_PID", "CODE_FILE",  "CODE_LINE", "CODE_FUNC",         "ERRNO",
    "VM_ID",      "TRACE_ID",   "SPAN_ID",
};

/* Journal field names are upper-case letters, digits and '_', not starting
 * with '_' (reserved for trusted fields) or a digit, at most 64 bytes. */
static char *journal_field(const char *key, const char *value)
{
    char name[65] = "CHCP_";
    size_t n = 5;
    for (const char *p = key; *p && n < sizeof(name) - 1; p++) {
        char c = *p;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        name[n++] = c;
    }
    name[n] = '\0';
    const char *plain = name + 5;
    bool keep_prefix = *plain == '\0' || *plain == '_' || (*plain >= '0' && *plain <= '9');
    for (size_t i = 0; !keep_prefix && i < ARRAY_SIZE(reserved_fields); i++)
        keep_prefix = strcmp(plain, reserved_fields[i]) == 0;
    return xasprintf("%s=%s", keep_prefix ? name : plain, value);
}

size_t log_journal_fields(const log_record *r, char ***out)
{
    size_t n_kv = 0;
    for (const char *const *kv = r->kv; kv && kv[0] && kv[1]; kv += 2)
        n_kv++;
    char **f = xcalloc(10 + n_kv, sizeof(char *));
    size_t n = 0;
    f[n++] = xasprintf("MESSAGE=%s", r->msg);
    f[n++] = xasprintf("PRIORITY=%d", level_priorities[r->level]);
    f[n++] = xstrdup("SYSLOG_IDENTIFIER=chcp-api");
    if (r->file) {
        f[n++] = xasprintf("CODE_FILE=%s", r->file);
        f[n++] = xasprintf("CODE_LINE=%d", r->line);
        f[n++] = xasprintf("CODE_FUNC=%s", r->func);
    }
    if (r->vm_id)
        f[n++] = xasprintf("VM_ID=%s", r->vm_id);
    if (r->trace_id && r->span_id) {
        f[n++] = xasprintf("TRACE_ID=%s", r->trace_id);
        f[n++] = xasprintf("SPAN_ID=%s", r->span_id);
    }
    for (const char *const *kv = r->kv; kv && kv[0] && kv[1]; kv += 2)
        f[n++] = journal_field(kv[0], kv[1]);
    *out = f;
    return n;
}

void log_fields_free(char **fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(fields[i]);
    free(fields);
}

static bool send_journal(const log_record *r)
{
    char **fields;
    size_t n = log_journal_fields(r, &fields);
    struct iovec *iov = xcalloc(n, sizeof(*iov));
    for (size_t i = 0; i < n; i++)
        iov[i] = (struct iovec){.iov_base = fields[i], .iov_len = strlen(fields[i])};
    int rc = sd_journal_sendv(iov, (int)n);
    free(iov);
    log_fields_free(fields, n);
    return rc >= 0;
}

/* ---- entry points ---------------------------------------------------------------- */

static void emit(const log_record *in)
{
    log_record r = *in;
    char trace_id[33], span_id[17];
    if (r.vm_id && context_fn && context_fn(r.vm_id, trace_id, span_id)) {
        r.trace_id = trace_id;
        r.span_id = span_id;
    }
    /* journald gone (restarting): the line still reaches the stream. */
    if (to_journal && send_journal(&r))
        return;
    chcp_buf b = CHCP_BUF_INIT;
    log_format_json(&r, &b);
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    buf_free(&b);
}

/* console: also a plain line on stderr (log_console). */
static void vlog(const log_record *where, bool console, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void vlog(const log_record *where, bool console, const char *fmt, va_list ap)
{
    if (where->level < min_level)
        return;
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (console && to_journal) {
        /* Through the stream, with its priority as a <N> prefix, not as a
         * native entry: these messages usually precede exit, and journald
         * finds the unit of a native entry's sender in /proc, which is gone
         * by then - the entry would be missing from journalctl -u and
         * systemctl status. The stream was opened for the unit by systemd. */
        fprintf(stderr, "<%d>%s\n", level_priorities[where->level], msg);
        fflush(stderr);
        return;
    }
    if (console) {
        fprintf(stderr, "chcp-api: %s%s\n", where->level == LOG_WARN ? "warning: " : "", msg);
        fflush(stderr);
    }
    log_record r = *where;
    r.msg = msg;
    emit(&r);
}

void log_write_at(const char *file, int line, const char *func, log_level level, const char *vm_id,
                  const char *const *kv, const char *fmt, ...)
{
    log_record where = {
        .level = level, .file = file, .line = line, .func = func, .vm_id = vm_id, .kv = kv};
    va_list ap;
    va_start(ap, fmt);
    vlog(&where, false, fmt, ap);
    va_end(ap);
}

void log_console_at(const char *file, int line, const char *func, log_level level, const char *fmt,
                    ...)
{
    log_record where = {.level = level, .file = file, .line = line, .func = func};
    va_list ap;
    va_start(ap, fmt);
    vlog(&where, true, fmt, ap);
    va_end(ap);
}
