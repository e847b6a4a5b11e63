/*
 * watch.c - following VMs: what `chcpctl wait` and `chcpctl watch` stand on.
 *
 * The server has no event stream yet (issue 11 adds WatchVmEvents), so a watch
 * polls: GetVmInfo for each named VM, or every page of ListVms, then reports
 * the differences from the previous poll as events. The interval backs off
 * (doubling from min to max) while nothing changes and drops back to the
 * minimum after a change. Once a first poll has succeeded, a server that is
 * briefly unreachable (a daemon restart, which leaves VMs running) is polled
 * again instead of failing the watch; the caller's deadline still bounds it.
 *
 * Changes are detected on the fields that say something happened: state,
 * reason, VMM process and state, and updated_at. memory_actual_size, which
 * moves with the guest, is deliberately not one of them.
 */
#include "client/client_internal.h"

#include <poll.h>
#include <string.h>

typedef Cloudhypervisor__V1__VmInfo VmInfo;

typedef struct snapshot {
    VmInfo **vms; /* sorted by vm_id */
    size_t n;
} snapshot;

struct client_watch {
    chcp_client *c;
    char **ids;
    size_t n_ids;
    char **label_keys;
    char **label_values;
    size_t n_labels;
    uint64_t min_ms, max_ms, interval_ms;
    uint64_t next_poll_ns; /* 0: poll at once */
    bool polled_once;
    snapshot seen;
    client_event *queue;
    size_t queue_len, queue_head;
};

static char **dup_strings(const char *const *v, size_t n)
{
    char **out = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

client_watch *client_watch_new(chcp_client *c, const client_watch_options *opts)
{
    client_watch *w = xcalloc(1, sizeof(*w));
    w->c = c;
    w->ids = dup_strings(opts->vm_ids, opts->n_vm_ids);
    w->n_ids = opts->n_vm_ids;
    w->label_keys = dup_strings(opts->label_keys, opts->n_labels);
    w->label_values = dup_strings(opts->label_values, opts->n_labels);
    w->n_labels = opts->n_labels;
    w->min_ms = opts->min_interval_ms ? opts->min_interval_ms : 50;
    w->max_ms = opts->max_interval_ms ? opts->max_interval_ms : 1000;
    if (w->max_ms < w->min_ms)
        w->max_ms = w->min_ms;
    w->interval_ms = w->min_ms;
    return w;
}

static void snapshot_free(snapshot *s)
{
    for (size_t i = 0; i < s->n; i++)
        protobuf_c_message_free_unpacked(&s->vms[i]->base, NULL);
    free(s->vms);
    s->vms = NULL;
    s->n = 0;
}

void client_event_clear(client_event *ev)
{
    if (ev->vm)
        protobuf_c_message_free_unpacked(&ev->vm->base, NULL);
    memset(ev, 0, sizeof(*ev));
}

void client_watch_free(client_watch *w)
{
    if (!w)
        return;
    for (size_t i = w->queue_head; i < w->queue_len; i++)
        client_event_clear(&w->queue[i]);
    free(w->queue);
    snapshot_free(&w->seen);
    free_strings(w->ids, w->n_ids);
    free_strings(w->label_keys, w->n_labels);
    free_strings(w->label_values, w->n_labels);
    free(w);
}

/* ---- one poll ----------------------------------------------------------------- */

static void snapshot_add(snapshot *s, VmInfo *vm)
{
    s->vms = xrealloc(s->vms, (s->n + 1) * sizeof(*s->vms));
    s->vms[s->n++] = vm;
}

static int fetch_named(client_watch *w, snapshot *out, chcp_error **err)
{
    for (size_t i = 0; i < w->n_ids; i++) {
        Cloudhypervisor__V1__GetVmInfoRequest req = CLOUDHYPERVISOR__V1__GET_VM_INFO_REQUEST__INIT;
        req.vm_id = w->ids[i];
        ProtobufCMessage *resp = NULL;
        chcp_error *e = NULL;
        if (client_call(w->c, "GetVmInfo", &req.base,
                        &cloudhypervisor__v1__get_vm_info_response__descriptor, &resp, &e) < 0) {
            if (e->code == CHCP_NOT_FOUND) {
                error_free(e);
                continue;
            }
            *err = e;
            return -1;
        }
        Cloudhypervisor__V1__GetVmInfoResponse *r = (void *)resp;
        if (r->vm)
            snapshot_add(out, r->vm);
        r->vm = NULL;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return 0;
}

static int fetch_all(client_watch *w, snapshot *out, chcp_error **err)
{
    cleanup_free Cloudhypervisor__V1__ListVmsRequest__LabelsEntry *entries =
        xcalloc(w->n_labels + 1, sizeof(*entries));
    cleanup_free Cloudhypervisor__V1__ListVmsRequest__LabelsEntry **entry_ptrs =
        xcalloc(w->n_labels + 1, sizeof(*entry_ptrs));
    for (size_t i = 0; i < w->n_labels; i++) {
        cloudhypervisor__v1__list_vms_request__labels_entry__init(&entries[i]);
        entries[i].key = w->label_keys[i];
        entries[i].value = w->label_values[i];
        entry_ptrs[i] = &entries[i];
    }
    char *token = NULL;
    do {
        Cloudhypervisor__V1__ListVmsRequest req = CLOUDHYPERVISOR__V1__LIST_VMS_REQUEST__INIT;
        req.page_size = 1000;
        req.page_token = token ? token : (char *)"";
        req.n_labels = w->n_labels;
        req.labels = entry_ptrs;
        ProtobufCMessage *resp = NULL;
        int rc = client_call(w->c, "ListVms", &req.base,
                             &cloudhypervisor__v1__list_vms_response__descriptor, &resp, err);
        free(token);
        token = NULL;
        if (rc < 0)
            return -1;
        Cloudhypervisor__V1__ListVmsResponse *r = (void *)resp;
        for (size_t i = 0; i < r->n_vms; i++)
            snapshot_add(out, r->vms[i]);
        r->n_vms = 0; /* the VMs now belong to the snapshot */
        if (r->next_page_token && *r->next_page_token)
            token = xstrdup(r->next_page_token);
        protobuf_c_message_free_unpacked(resp, NULL);
    } while (token);
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp((*(VmInfo *const *)a)->vm_id, (*(VmInfo *const *)b)->vm_id);
}

static bool same_time(const Google__Protobuf__Timestamp *a, const Google__Protobuf__Timestamp *b)
{
    if (!a || !b)
        return a == b;
    return a->seconds == b->seconds && a->nanos == b->nanos;
}

static bool vm_changed(const VmInfo *a, const VmInfo *b)
{
    return a->state != b->state || strcmp(a->state_reason, b->state_reason) != 0 ||
           strcmp(a->vmm_state, b->vmm_state) != 0 || a->vmm_pid != b->vmm_pid ||
           !same_time(a->updated_at, b->updated_at);
}

static VmInfo *vm_copy(const VmInfo *vm)
{
    size_t n = protobuf_c_message_get_packed_size(&vm->base);
    uint8_t *buf = xmalloc(n ? n : 1);
    protobuf_c_message_pack(&vm->base, buf);
    VmInfo *copy = (VmInfo *)protobuf_c_message_unpack(&cloudhypervisor__v1__vm_info__descriptor,
                                                       NULL, n, buf);
    free(buf);
    if (!copy)
        abort(); /* we packed it ourselves: only out of memory gets here */
    return copy;
}

static void enqueue(client_watch *w, client_event_kind kind, VmInfo *vm)
{
    w->queue = xrealloc(w->queue, (w->queue_len + 1) * sizeof(*w->queue));
    w->queue[w->queue_len++] = (client_event){.kind = kind, .vm = vm};
}

/* Merge the sorted old and new snapshots into events; `fresh` replaces `seen`. */
static size_t diff(client_watch *w, snapshot *fresh)
{
    snapshot *old = &w->seen;
    size_t i = 0, j = 0, events = 0;
    while (i < old->n || j < fresh->n) {
        int cmp = i == old->n     ? 1
                  : j == fresh->n ? -1
                                  : strcmp(old->vms[i]->vm_id, fresh->vms[j]->vm_id);
        if (cmp < 0) {
            enqueue(w, CLIENT_EVENT_DELETED, old->vms[i]);
            old->vms[i++] = NULL;
            events++;
        } else if (cmp > 0) {
            enqueue(w, CLIENT_EVENT_ADDED, vm_copy(fresh->vms[j++]));
            events++;
        } else {
            if (vm_changed(old->vms[i], fresh->vms[j])) {
                enqueue(w, CLIENT_EVENT_CHANGED, vm_copy(fresh->vms[j]));
                events++;
            }
            i++;
            j++;
        }
    }
    for (size_t k = 0; k < old->n; k++)
        if (old->vms[k])
            protobuf_c_message_free_unpacked(&old->vms[k]->base, NULL);
    free(old->vms);
    *old = *fresh;
    return events;
}

static int poll_once(client_watch *w, chcp_error **err)
{
    snapshot fresh = {0};
    int rc = w->n_ids ? fetch_named(w, &fresh, err) : fetch_all(w, &fresh, err);
    if (rc < 0) {
        snapshot_free(&fresh);
        return -1;
    }
    if (fresh.n > 1)
        qsort(fresh.vms, fresh.n, sizeof(*fresh.vms), by_id);
    return (int)diff(w, &fresh);
}

/* ---- the event loop of a poller ----------------------------------------------------- */

static int sleep_until(uint64_t until_ns, volatile sig_atomic_t *cancel, chcp_error **err)
{
    for (;;) {
        if (cancel && *cancel)
            return error_set(err, CHCP_CANCELED, "interrupted");
        uint64_t now = time_mono_ns();
        if (now >= until_ns)
            return 0;
        uint64_t ms = (until_ns - now + 999999) / 1000000;
        if (cancel && ms > 200)
            ms = 200;
        (void)poll(NULL, 0, (int)ms);
    }
}

static bool transient(const chcp_error *e)
{
    return e->code == CHCP_UNAVAILABLE || e->code == CHCP_DEADLINE_EXCEEDED;
}

int client_watch_next(client_watch *w, uint64_t deadline_ns, client_event *ev, chcp_error **err)
{
    volatile sig_atomic_t *cancel = client_cancel_flag(w->c);
    for (;;) {
        if (w->queue_head < w->queue_len) {
            *ev = w->queue[w->queue_head++];
            if (w->queue_head == w->queue_len)
                w->queue_head = w->queue_len = 0;
            return 1;
        }
        if (cancel && *cancel)
            return error_set(err, CHCP_CANCELED, "interrupted");
        uint64_t now = time_mono_ns();
        if (w->next_poll_ns > now) {
            if (deadline_ns && deadline_ns <= now)
                return 0;
            uint64_t until =
                deadline_ns && deadline_ns < w->next_poll_ns ? deadline_ns : w->next_poll_ns;
            if (sleep_until(until, cancel, err) < 0)
                return -1;
            continue;
        }
        chcp_error *e = NULL;
        int events = poll_once(w, &e);
        if (events < 0) {
            if (!w->polled_once || !transient(e)) {
                *err = e;
                return -1;
            }
            error_free(e); /* the server is away for a moment: poll again */
            events = 0;
        } else {
            w->polled_once = true;
        }
        w->interval_ms = events > 0
                             ? w->min_ms
                             : (w->interval_ms * 2 > w->max_ms ? w->max_ms : w->interval_ms * 2);
        w->next_poll_ns = time_mono_ns() + w->interval_ms * 1000000;
    }
}
