/*
 * backend_ch.c - the VM manager's backend ops implemented with the Cloud
 * Hypervisor module (src/vmm/ch/ch.h).
 *
 * Spawn mode starts one `cloud-hypervisor --no-shutdown` per VM in the VM's
 * directory (so a guest poweroff leaves the VMM up and the VM bootable);
 * attach mode talks to the single pre-started VMM at CHCP_CH_ENDPOINT and
 * never stops its process. This file only translates: CH outcomes become
 * chcp error codes the way the API promises (VMM unreachable, dead or slow:
 * unavailable; VMM said no: internal with its error chain).
 */
#include <string.h>
#include <sys/stat.h>

#include "vm/vm.h"
#include "vmm/ch/ch.h"

/* vmm.shutdown, SIGTERM, SIGKILL: each step gets this long. */
#define STOP_GRACE_MS 1500

typedef struct chb {
    uv_loop_t *loop;
    char *binary;
    char *attach_path;
} chb;

typedef struct chb_vmm {
    chb *b;
    ch_vmm *vmm;
    const vmb_callbacks *cb;
    void *cb_ud;
    vmb_done_fn start_done;
    void *start_ud;
    vmb_done_fn stop_done;
    void *stop_ud;
    bool exited;
    /* Adopted: events up to this offset of events.json happened while
     * chcp-api was down; recovery's vm.info accounts for them. */
    uint64_t replay_until;
} chb_vmm;

/* A completion that must not run inside the call that started it. */
typedef struct deferred {
    uv_timer_t timer;
    vmb_done_fn done;
    void *ud;
    chcp_error *err;
} deferred;

static void deferred_closed(uv_handle_t *h)
{
    free(h->data);
}

static void deferred_cb(uv_timer_t *t)
{
    deferred *d = t->data;
    d->done(d->ud, steal_pointer(&d->err), NULL);
    uv_close((uv_handle_t *)&d->timer, deferred_closed);
}

static void complete_later(chb *b, vmb_done_fn done, void *ud, chcp_error *err)
{
    deferred *d = xcalloc(1, sizeof(*d));
    d->done = done;
    d->ud = ud;
    d->err = err;
    uv_timer_init(b->loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, deferred_cb, 0, 0);
}

static const char *const endpoints[] = {
    [VMB_PING] = "vmm.ping",        [VMB_CREATE] = "vm.create",
    [VMB_BOOT] = "vm.boot",         [VMB_SHUTDOWN] = "vm.shutdown",
    [VMB_REBOOT] = "vm.reboot",     [VMB_PAUSE] = "vm.pause",
    [VMB_RESUME] = "vm.resume",     [VMB_POWER_BUTTON] = "vm.power-button",
    [VMB_DELETE] = "vm.delete",     [VMB_INFO] = "vm.info",
    [VMB_COUNTERS] = "vm.counters",
};

/* CH's outcome as the API's error: see the file comment. */
static chcp_error *translate(const char *endpoint, uint64_t timeout_ms, const ch_response *resp,
                             const chcp_error *err)
{
    chcp_error *out = NULL;
    if (!err)
        return NULL;
    /* ch's messages may already name the endpoint; name it once. */
    const char *msg = err->message;
    if (str_has_prefix(msg, endpoint) && str_has_prefix(msg + strlen(endpoint), ": "))
        msg += strlen(endpoint) + 2;
    if (resp && (resp->status < 200 || resp->status > 299))
        error_set(&out, CHCP_INTERNAL, "%s: VMM answered HTTP %d: %s", endpoint, resp->status, msg);
    else if (err->code == CHCP_DEADLINE_EXCEEDED)
        error_set(&out, CHCP_UNAVAILABLE, "%s: VMM not responding (no answer in %llu ms)", endpoint,
                  (unsigned long long)timeout_ms);
    else if (err->code == CHCP_UNAVAILABLE || err->code == CHCP_CANCELED)
        error_set(&out, CHCP_UNAVAILABLE, "%s: %s", endpoint, msg);
    else
        error_set(&out, err->code, "%s: %s", endpoint, msg);
    return out;
}

typedef struct call_ctx {
    vmb_done_fn done;
    void *ud;
    const char *endpoint;
    uint64_t timeout_ms;
} call_ctx;

static void call_cb(ch_vmm *vmm, const ch_response *resp, const chcp_error *err, void *ud)
{
    call_ctx *c = ud;
    chcp_error *e = translate(c->endpoint, c->timeout_ms, resp, err);
    vmb_reply r = {0};
    if (resp) {
        r.status = resp->status;
        r.body = resp->body;
        r.body_len = resp->body_len;
    }
    c->done(c->ud, e, resp ? &r : NULL);
    free(c);
}

static void chb_request(void *vmm, vmb_action a, const char *body, uint64_t timeout_ms,
                        vmb_done_fn done, void *ud)
{
    chb_vmm *v = vmm;
    call_ctx *c = xcalloc(1, sizeof(*c));
    c->done = done;
    c->ud = ud;
    c->endpoint = endpoints[a];
    c->timeout_ms = timeout_ms ? timeout_ms : CH_DEFAULT_TIMEOUT_MS;
    chcp_error *err = NULL;
    int rc = a == VMB_CREATE
                 ? ch_vmm_call(v->vmm, "vm.create", body, NULL, 0, timeout_ms, call_cb, c, &err)
                 : ch_vmm_call(v->vmm, c->endpoint, NULL, NULL, 0, timeout_ms, call_cb, c, &err);
    if (rc < 0) {
        chcp_error *e = NULL;
        error_set(&e, CHCP_UNAVAILABLE, "%s: %s", c->endpoint, err ? err->message : "failed");
        error_free(err);
        free(c);
        complete_later(v->b, done, ud, e);
    }
}

/* ---- process callbacks ---------------------------------------------------------- */

static void finish_start(chb_vmm *v, const ch_response *resp, const chcp_error *err)
{
    vmb_done_fn done = v->start_done;
    if (!done)
        return;
    v->start_done = NULL;
    chcp_error *e = NULL;
    if (err)
        error_set(&e, CHCP_UNAVAILABLE, "%s", err->message);
    vmb_reply r = {0};
    if (resp) {
        r.status = resp->status;
        r.body = resp->body;
        r.body_len = resp->body_len;
    }
    done(v->start_ud, e, resp ? &r : NULL);
}

static void on_ready(ch_vmm *vmm, const ch_response *resp, const chcp_error *err, void *ud)
{
    finish_start(ud, resp, err);
}

static void on_event(ch_vmm *vmm, const ch_event *ev, void *ud)
{
    chb_vmm *v = ud;
    if (ev->end_offset <= v->replay_until)
        return; /* a replay (see replay_until) */
    if (v->cb->on_event)
        v->cb->on_event(v->cb_ud, ev->source, ev->event);
}

static void on_exit_cb(ch_vmm *vmm, const ch_exit *ex, void *ud)
{
    chb_vmm *v = ud;
    v->exited = true;
    if (v->start_done) {
        chcp_error e = {.code = CHCP_UNAVAILABLE, .message = (char *)ex->reason};
        finish_start(v, NULL, &e);
    }
    if (v->cb->on_exit)
        v->cb->on_exit(v->cb_ud, ex->status, ex->signal, NULL);
    if (v->stop_done) {
        vmb_done_fn done = v->stop_done;
        v->stop_done = NULL;
        done(v->stop_ud, NULL, NULL);
    }
}

static const ch_vmm_callbacks ch_cbs = {
    .on_ready = on_ready, .on_event = on_event, .on_exit = on_exit_cb};

static void attach_ping_cb(ch_vmm *vmm, const ch_response *resp, const chcp_error *err, void *ud)
{
    finish_start(ud, resp, err);
}

static void *chb_start(void *backend, const vmb_start_params *p, const vmb_callbacks *cb,
                       void *cb_ud, vmb_done_fn done, void *done_ud, chcp_error **err)
{
    chb *b = backend;
    chb_vmm *v = xcalloc(1, sizeof(*v));
    v->b = b;
    v->cb = cb;
    v->cb_ud = cb_ud;
    v->start_done = done;
    v->start_ud = done_ud;
    if (b->attach_path) {
        v->vmm = ch_vmm_attach(b->loop, b->attach_path, &ch_cbs, v, err);
        if (v->vmm && ch_vmm_ping(v->vmm, 2000, attach_ping_cb, v, err) < 0) {
            ch_vmm_free(v->vmm);
            v->vmm = NULL;
        }
    } else {
        ch_spawn_opts o = {.binary = b->binary,
                           .dir = p->dir,
                           .vm_id = p->vm_id,
                           .no_shutdown = true,
                           .verbosity = 1};
        v->vmm = ch_vmm_spawn(b->loop, &o, &ch_cbs, v, err);
    }
    if (!v->vmm) {
        free(v);
        return NULL;
    }
    return v;
}

/* Durable mode: a VMM spawned by an earlier run (ch_vmm_adopt re-checks the
 * pid against its start time and follows events.json from the offset). */
static void *chb_adopt(void *backend, const vmb_adopt_params *p, const vmb_callbacks *cb,
                       void *cb_ud, chcp_error **err)
{
    chb *b = backend;
    if (b->attach_path) {
        error_set(err, CHCP_FAILED_PRECONDITION, "attach mode adopts nothing");
        return NULL;
    }
    chb_vmm *v = xcalloc(1, sizeof(*v));
    v->b = b;
    v->cb = cb;
    v->cb_ud = cb_ud;
    ch_adopt_opts o = {.dir = p->dir,
                       .vm_id = p->vm_id,
                       .pid = p->pid,
                       .start_time = p->start_time,
                       .event_offset = p->event_offset};
    /* Before adopting (and so before recovery's vm.info): whatever is in
     * the file now is history that vm.info reflects. */
    cleanup_free char *events = xasprintf("%s/%s", p->dir, CH_EVENTS_FILE_NAME);
    struct stat st;
    if (stat(events, &st) == 0)
        v->replay_until = (uint64_t)st.st_size;
    v->vmm = ch_vmm_adopt(b->loop, &o, &ch_cbs, v, err);
    if (!v->vmm) {
        free(v);
        return NULL;
    }
    return v;
}

static uint64_t chb_event_offset(void *vmm)
{
    return ch_vmm_event_offset(((chb_vmm *)vmm)->vmm);
}

static void chb_stop(void *vmm, vmb_done_fn done, void *ud)
{
    chb_vmm *v = vmm;
    if (v->exited || !ch_vmm_alive(v->vmm) || !ch_vmm_pid(v->vmm)) {
        complete_later(v->b, done, ud, NULL);
        return;
    }
    v->stop_done = done;
    v->stop_ud = ud;
    chcp_error *err = NULL;
    if (ch_vmm_stop(v->vmm, STOP_GRACE_MS, &err) < 0) {
        /* Nothing left to stop. */
        v->stop_done = NULL;
        error_free(err);
        complete_later(v->b, done, ud, NULL);
    }
}

/* Pending start/stop completions are owed an answer like pending calls
 * (ops contract): cancelled, inside release. */
static void cancel_pending(vmb_done_fn *fn, void **ud, const char *what)
{
    vmb_done_fn done = steal_pointer(fn);
    if (!done)
        return;
    chcp_error *err = NULL;
    error_set(&err, CHCP_UNAVAILABLE, "%s: cancelled (the VMM handle was released)", what);
    done(*ud, err, NULL);
}

static void chb_release(void *vmm)
{
    chb_vmm *v = vmm;
    if (!v)
        return;
    cancel_pending(&v->start_done, &v->start_ud, "starting the VMM");
    cancel_pending(&v->stop_done, &v->stop_ud, "stopping the VMM");
    ch_vmm_free(v->vmm);
    free(v);
}

static int chb_pid(void *vmm)
{
    return (int)ch_vmm_pid(((chb_vmm *)vmm)->vmm);
}

static uint64_t chb_start_time(void *vmm)
{
    return ch_vmm_start_time(((chb_vmm *)vmm)->vmm);
}

static void chb_free(void *backend)
{
    chb *b = backend;
    free(b->binary);
    free(b->attach_path);
    free(b);
}

static const vm_backend_ops chb_ops = {
    .name = "cloud-hypervisor",
    .start = chb_start,
    .request = chb_request,
    .stop = chb_stop,
    .release = chb_release,
    .pid = chb_pid,
    .start_time = chb_start_time,
    .free = chb_free,
    .adopt = chb_adopt,
    .event_offset = chb_event_offset,
};

int vm_backend_ch_new(uv_loop_t *loop, const vm_backend_ch_config *cfg, const vm_backend_ops **ops,
                      void **backend, chcp_error **err)
{
    if (!cfg->attach_path && (!cfg->ch_binary || !cfg->ch_binary[0]))
        return error_set(err, CHCP_INVALID_ARGUMENT, "CHCP_CH_BINARY: not set");
    chb *b = xcalloc(1, sizeof(*b));
    b->loop = loop;
    b->binary = cfg->ch_binary ? xstrdup(cfg->ch_binary) : NULL;
    b->attach_path = cfg->attach_path ? xstrdup(cfg->attach_path) : NULL;
    *ops = &chb_ops;
    *backend = b;
    return 0;
}
