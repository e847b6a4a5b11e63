/*
 * ch_events.c - Cloud Hypervisor's --event-monitor stream: a splitter for its
 * format and a follower for the regular file chcp hands to the VMM.
 *
 * CH writes each event as a pretty-printed JSON object followed by a blank
 * line. The file is a regular file (not a pipe) so that the stream survives a
 * daemon restart: the follower starts at a saved offset and is woken by
 * inotify (uv_fs_event_t) when the VMM appends. A write may be cut anywhere,
 * so the incomplete tail is kept until the rest arrives, and the exposed
 * offset always points at the start of the first event not yet delivered.
 *
 * Reading uses pread() on the loop thread: the bytes were just written by the
 * VMM into the page cache of a local file, so the read does not wait on I/O
 * in practice, and each wake-up reads a bounded amount.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "vmm/ch/ch_priv.h"

/* An event is a few hundred bytes; a "tail" this long without a separator is
 * garbage, not an event in progress. */
#define CH_EVENT_MAX_SIZE (1u << 20)
#define CH_EVENT_READ_CHUNK 65536
#define CH_EVENT_READ_MAX_CHUNKS 256

void ch_event_parser_init(ch_event_parser *p, uint64_t start_offset)
{
    memset(p, 0, sizeof(*p));
    p->offset = start_offset;
}

void ch_event_parser_clear(ch_event_parser *p)
{
    buf_free(&p->pending);
}

static bool all_space(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t')
            return false;
    return true;
}

static bool json_u64(const json_t *o, const char *key, uint64_t max, uint64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Parse one event text; returns false when it is not a CH event. */
static bool deliver_one(const uint8_t *s, size_t n, uint64_t end_offset, ch_event_fn fn, void *ud)
{
    json_t *root = json_loadb((const char *)s, n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return false;
    }
    const json_t *src = json_object_get(root, "source");
    const json_t *evt = json_object_get(root, "event");
    const json_t *ts = json_object_get(root, "timestamp");
    const json_t *props = json_object_get(root, "properties");
    uint64_t secs = 0, nanos = 0;
    bool ok = json_is_string(src) && json_is_string(evt) && json_is_object(ts) &&
              json_u64(ts, "secs", UINT64_MAX / 2, &secs) &&
              json_u64(ts, "nanos", 999999999, &nanos) &&
              (props == NULL || json_is_null(props) || json_is_object(props));
    if (ok) {
        ch_event ev = {
            .secs = secs,
            .nanos = (uint32_t)nanos,
            .source = json_string_value(src),
            .event = json_string_value(evt),
            .properties = json_is_object(props) ? props : NULL,
            .end_offset = end_offset,
        };
        fn(&ev, ud);
    }
    json_decref(root);
    return ok;
}

size_t ch_event_parser_feed(ch_event_parser *p, const void *data, size_t len, ch_event_fn fn,
                            void *ud)
{
    if (len)
        buf_append(&p->pending, data, len);
    size_t delivered = 0, pos = 0;
    const uint8_t *d = p->pending.data;
    while (pos < p->pending.len) {
        const uint8_t *sep = memmem(d + pos, p->pending.len - pos, "\n\n", 2);
        if (!sep)
            break;
        size_t seg = (size_t)(sep - (d + pos));
        size_t next = pos + seg + 2;
        if (!all_space(d + pos, seg)) {
            if (deliver_one(d + pos, seg, p->offset + next, fn, ud))
                delivered++;
            else
                p->malformed++;
        }
        pos = next;
    }
    /* Blank-line runs between events are not events: swallow leading
     * newlines so the offset points at the next event's first byte. */
    while (pos < p->pending.len && d[pos] == '\n')
        pos++;
    if (p->pending.len - pos > CH_EVENT_MAX_SIZE) {
        p->malformed++;
        pos = p->pending.len;
    }
    buf_consume(&p->pending, pos);
    p->offset += pos;
    return delivered;
}

/* ---- the follower ------------------------------------------------------------------ */

static void follower_event(const ch_event *ev, void *ud)
{
    ch_vmm *vmm = ud;
    if (vmm->closing || !vmm->cbs.on_event)
        return;
    ch_vmm_ref(vmm);
    vmm->cbs.on_event(vmm, ev, vmm->ud);
    ch_vmm_unref(vmm);
}

bool ch_follower_drain(ch_vmm *vmm)
{
    ch_follower *f = &vmm->events;
    if (!vmm->has_events || f->fd < 0)
        return !vmm->closing;
    char *buf = xmalloc(CH_EVENT_READ_CHUNK);
    ch_vmm_ref(vmm);
    for (int i = 0; i < CH_EVENT_READ_MAX_CHUNKS && !vmm->closing; i++) {
        ssize_t n = pread(f->fd, buf, CH_EVENT_READ_CHUNK, (off_t)f->read_offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        f->read_offset += (uint64_t)n;
        ch_event_parser_feed(&f->parser, buf, (size_t)n, follower_event, vmm);
    }
    free(buf);
    return ch_vmm_unref(vmm);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    ch_vmm *vmm = h->data;
    ch_follower_drain(vmm);
}

int ch_follower_start(ch_vmm *vmm, const char *path, uint64_t offset, chcp_error **err)
{
    ch_follower *f = &vmm->events;
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f->fd < 0)
        return error_set_errno(err, CHCP_INTERNAL, errno, "opening event file %s", path);
    struct stat st;
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(f->fd);
        f->fd = -1;
        return error_set(err, CHCP_INTERNAL, "event file %s is not a regular file", path);
    }
    /* A saved offset past the end means the file was replaced: start over. */
    if (offset > (uint64_t)st.st_size)
        offset = 0;
    f->path = xstrdup(path);
    ch_event_parser_init(&f->parser, offset);
    f->read_offset = offset;
    uv_fs_event_init(vmm->loop, &f->fsev);
    f->fsev.data = vmm;
    vmm->handles_open++;
    vmm->has_events = true;
    int r = uv_fs_event_start(&f->fsev, on_fs_event, path, 0);
    if (r < 0)
        return error_set(err, CHCP_INTERNAL, "watching event file %s: %s", path, uv_strerror(r));
    f->fsev_started = true;
    return 0;
}

void ch_follower_close(ch_vmm *vmm)
{
    ch_follower *f = &vmm->events;
    if (!vmm->has_events)
        return;
    vmm->has_events = false;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    uv_close((uv_handle_t *)&f->fsev, ch_vmm_handle_closed);
}
