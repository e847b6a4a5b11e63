/*
 * core.h - the small toolbox every chcp module shares: growable byte buffers,
 * error objects, cleanup helpers, JSON-lines logging and monotonic time.
 *
 * Errors travel as objects (crun style): a function that can fail takes a
 * `chcp_error **err` last, returns -1 (or NULL) and fills *err; only the top
 * of a call chain decides whether to log, answer a client or exit. Nothing in
 * the lower layers prints.
 */
#ifndef CHCP_CORE_H
#define CHCP_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- cleanup helpers --------------------------------------------------- */

static inline void chcp_freep(void *p)
{
    free(*(void **)p);
}
static inline void chcp_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
#define cleanup_free __attribute__((cleanup(chcp_freep)))
#define cleanup_close __attribute__((cleanup(chcp_closep)))

/* Hand ownership out of a cleanup_* variable. */
#define steal_pointer(pp)                                                                          \
    ({                                                                                             \
        __typeof__(*(pp)) _p = *(pp);                                                              \
        *(pp) = NULL;                                                                              \
        _p;                                                                                        \
    })

/* Set by the build (generated chcp_version.c). */
extern const char chcp_version[];
extern const char chcp_git_rev[];
#define CHCP_VERSION chcp_version
#define CHCP_GIT_REV chcp_git_rev

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED __attribute__((unused))

/* Allocation that cannot fail: out of memory aborts (a daemon that cannot
 * allocate a few bytes cannot answer anyone sensibly anyway). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- byte buffers ------------------------------------------------------ */

typedef struct chcp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} chcp_buf;

#define CHCP_BUF_INIT                                                                              \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void buf_reserve(chcp_buf *b, size_t extra);
void buf_append(chcp_buf *b, const void *data, size_t len);
void buf_append_str(chcp_buf *b, const char *s);
void buf_append_byte(chcp_buf *b, uint8_t c);
void buf_printf(chcp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(chcp_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (used by readers that consume from the front). */
void buf_consume(chcp_buf *b, size_t n);
void buf_reset(chcp_buf *b);
void buf_free(chcp_buf *b);
/* Take the bytes out as a NUL-terminated string; the buffer is left empty. */
char *buf_steal_str(chcp_buf *b);

/* ---- errors ------------------------------------------------------------ */

/*
 * Error codes are the Connect/gRPC codes, so an error raised anywhere can be
 * answered to a client without translation tables in between.
 */
typedef enum chcp_code {
    CHCP_OK = 0,
    CHCP_CANCELED = 1,
    CHCP_UNKNOWN = 2,
    CHCP_INVALID_ARGUMENT = 3,
    CHCP_DEADLINE_EXCEEDED = 4,
    CHCP_NOT_FOUND = 5,
    CHCP_ALREADY_EXISTS = 6,
    CHCP_PERMISSION_DENIED = 7,
    CHCP_RESOURCE_EXHAUSTED = 8,
    CHCP_FAILED_PRECONDITION = 9,
    CHCP_ABORTED = 10,
    CHCP_OUT_OF_RANGE = 11,
    CHCP_UNIMPLEMENTED = 12,
    CHCP_INTERNAL = 13,
    CHCP_UNAVAILABLE = 14,
    CHCP_DATA_LOSS = 15,
    CHCP_UNAUTHENTICATED = 16,
} chcp_code;

typedef struct chcp_error {
    chcp_code code;
    int errno_value; /* 0 when not from a system call */
    char *message;
} chcp_error;

/* Fill *err (if err is non-NULL and *err is still NULL); always returns -1. */
int error_set(chcp_error **err, chcp_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, appending ": strerror(errno_value)". */
int error_set_errno(chcp_error **err, chcp_code code, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefix an existing error's message with context ("loading config: ..."). */
void error_prefix(chcp_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void error_free(chcp_error *err);
static inline void chcp_error_freep(chcp_error **e)
{
    error_free(*e);
}
#define cleanup_error __attribute__((cleanup(chcp_error_freep)))

/* Lower-case names as the Connect protocol spells them ("invalid_argument"). */
const char *code_name(chcp_code code);
/* Parse a Connect code name; returns -1 if unknown. */
int code_from_name(const char *name);

/* ---- logging ----------------------------------------------------------- */

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/*
 * Records go to one of two places, chosen once by log_init(): JSON lines on
 * stdout, or (when JOURNAL_STREAM names stdout or stderr, i.e. systemd
 * connected them to the journal) native journald entries with PRIORITY per
 * level and one field per value. Call log_init() first thing in main().
 */
void log_init(void);
bool log_to_journal(void);
void log_set_level(log_level min);
bool log_enabled(log_level level);
int log_level_from_name(const char *name); /* -1 when unknown */
/* Hook for telemetry: fills the trace/span ids (hex) of the operation a VM
 * is running, so log lines about that VM join its trace. */
typedef bool (*log_context_fn)(const char *vm_id, char trace_id[33], char span_id[17]);
void log_set_context_fn(log_context_fn fn);

/*
 * One record:
 *   {"time":"...","level":"info","msg":"...","vm_id":"...","trace_id":...}
 * or MESSAGE=, PRIORITY=, VM_ID=, TRACE_ID=, SPAN_ID=, CODE_FILE=, ... in the
 * journal. Extra string fields come as NULL-terminated key/value pairs in
 * `kv` (journal field names are the keys upper-cased).
 */
void log_write_at(const char *file, int line, const char *func, log_level level, const char *vm_id,
                  const char *const *kv, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
#define log_write(level, vm_id, kv, ...)                                                           \
    log_write_at(__FILE__, __LINE__, __func__, level, vm_id, kv, __VA_ARGS__)

/*
 * For the operator at start-up (configuration errors and warnings, failure
 * to start): a plain "chcp-api: ..." line on stderr as well as the record.
 * When the output is the journal, one "<priority>message" line on the
 * journal stream instead (journald reads the priority from the prefix, and
 * a stream entry keeps its unit even when the daemon exits right after).
 */
void log_console_at(const char *file, int line, const char *func, log_level level, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));
#define log_console(level, ...) log_console_at(__FILE__, __LINE__, __func__, level, __VA_ARGS__)

#define log_debug(...) log_write(LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, NULL, NULL, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, NULL, NULL, __VA_ARGS__)
#define log_vm(level, vm_id, ...) log_write(level, vm_id, NULL, __VA_ARGS__)

/* The pieces of log_write, exposed for tests. */
typedef struct log_record {
    log_level level;
    const char *file, *func; /* where it was logged (file NULL: unknown) */
    int line;
    const char *vm_id;              /* or NULL */
    const char *trace_id, *span_id; /* hex, or NULL */
    const char *const *kv;          /* NULL-terminated pairs, or NULL */
    const char *msg;
} log_record;
/* Whether "dev:ino" (JOURNAL_STREAM) is the file open on fd. */
bool log_journal_stream_matches(const char *journal_stream, int fd);
void log_format_json(const log_record *r, chcp_buf *out);
/* The journal fields ("NAME=value") of a record; free with log_fields_free. */
size_t log_journal_fields(const log_record *r, char ***fields);
void log_fields_free(char **fields, size_t n);

/* ---- time -------------------------------------------------------------- */

uint64_t time_mono_ns(void);
uint64_t time_real_ns(void);

/* ---- strings ----------------------------------------------------------- */

bool str_ieq(const char *a, const char *b);
bool str_has_prefix(const char *s, const char *prefix);
/* Parse a whole decimal string into [min,max]; false on any junk. */
bool str_to_u64(const char *s, uint64_t max, uint64_t *out);

/* ---- base64 (standard and URL-safe; decoding accepts both, padded or not) */

void base64_encode(chcp_buf *out, const uint8_t *data, size_t len, bool url, bool pad);
/* Returns 0, or -1 on invalid input. Accepts '+/' and '-_' and optional '='. */
int base64_decode(chcp_buf *out, const char *text, size_t len);

#endif
