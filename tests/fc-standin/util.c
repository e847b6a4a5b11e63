/*
 * util.c - allocation, time, buffer and Rust-formatting helpers of the
 * Firecracker stand-in.
 *
 * Firecracker's messages embed Rust's Display and Debug forms of io::Error
 * and strings ("No such file or directory (os error 2)", `Os { code: 2,
 * kind: NotFound, ... }`, "\"path\""); the helpers here produce them so the
 * stand-in's texts read like the real ones.
 */
#include "standin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

void *fsi_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

void *fsi_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

char *fsi_xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

char *fsi_xvasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    return s;
}

char *fsi_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = fsi_xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

int64_t fsi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t fsi_realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fsi_sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

char *fsi_io_error(int errnum)
{
    return fsi_xasprintf("%s (os error %d)", strerror(errnum), errnum);
}

/* std::io::ErrorKind as std::sys::decode_error_kind maps errno. */
static const char *error_kind(int errnum)
{
    switch (errnum) {
    case ENOENT:
        return "NotFound";
    case EPERM:
    case EACCES:
        return "PermissionDenied";
    case ECONNREFUSED:
        return "ConnectionRefused";
    case ECONNRESET:
        return "ConnectionReset";
    case EADDRINUSE:
        return "AddrInUse";
    case EADDRNOTAVAIL:
        return "AddrNotAvailable";
    case EEXIST:
        return "AlreadyExists";
    case EAGAIN:
        return "WouldBlock";
    case ENOTDIR:
        return "NotADirectory";
    case EISDIR:
        return "IsADirectory";
    case EINVAL:
        return "InvalidInput";
    case ENAMETOOLONG:
        return "InvalidFilename";
    case EROFS:
        return "ReadOnlyFilesystem";
    case ELOOP:
        return "FilesystemLoop";
    case ENOSPC:
        return "StorageFull";
    case EPIPE:
        return "BrokenPipe";
    case ETIMEDOUT:
        return "TimedOut";
    case EINTR:
        return "Interrupted";
    default:
        return "Uncategorized";
    }
}

char *fsi_io_error_debug(int errnum)
{
    char *msg = fsi_debug_str(strerror(errnum));
    char *s =
        fsi_xasprintf("Os { code: %d, kind: %s, message: %s }", errnum, error_kind(errnum), msg);
    free(msg);
    return s;
}

char *fsi_debug_str(const char *s)
{
    fsi_buf b = {0};
    fsi_buf_append(&b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fsi_buf_append(&b, "\\\"", 2);
            break;
        case '\\':
            fsi_buf_append(&b, "\\\\", 2);
            break;
        case '\n':
            fsi_buf_append(&b, "\\n", 2);
            break;
        case '\t':
            fsi_buf_append(&b, "\\t", 2);
            break;
        case '\r':
            fsi_buf_append(&b, "\\r", 2);
            break;
        default:
            if (*p < 0x20)
                fsi_buf_printf(&b, "\\u{%x}", *p);
            else
                fsi_buf_append(&b, p, 1);
        }
    }
    fsi_buf_append(&b, "\"", 1);
    return b.data;
}

void fsi_buf_append(fsi_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            abort();
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void fsi_buf_printf(fsi_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = fsi_xvasprintf(fmt, ap);
    va_end(ap);
    fsi_buf_append(b, s, strlen(s));
    free(s);
}

void fsi_buf_consume(fsi_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void fsi_buf_free(fsi_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int fsi_unix_probe(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int err = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
    close(fd);
    return err;
}
