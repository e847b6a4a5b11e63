/*
 * test_vm_fake.h - a scripted fake VMM backend for the VM manager's unit
 * tests (test_vm*.c), plus helpers to run operations to completion.
 *
 * The fake models Cloud Hypervisor's state ("Created", "Running", "Paused")
 * and answers every request on the next loop turn, unless a test scripts a
 * failure or a hang for an action. Tests can inject events and process exits.
 */
#ifndef TEST_VM_FAKE_H
#define TEST_VM_FAKE_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "vm/vm.h"

enum fake_mode { FAKE_OK = 0, FAKE_FAIL, FAKE_HANG, FAKE_UNAVAILABLE, FAKE_SYNC_FAIL };

typedef struct fake_backend fake_backend;

typedef struct fake_req {
    struct fake_vmm *v;
    vmb_action action;
    vmb_done_fn done;
    void *ud;
    uv_timer_t timer;
    bool hung;
    struct fake_req *next;
} fake_req;

typedef struct fake_vmm {
    fake_backend *b;
    const vmb_callbacks *cb;
    void *cb_ud;
    char ch_state[16]; /* "" = no config */
    bool exited;
    int exit_code, exit_signal;
    fake_req *hung;   /* hung requests, failed on stop */
    fake_req *queued; /* requests answered on the next loop turn */
    struct fake_start *starting;
    struct fake_stop *stopping;
    int pid;
} fake_vmm;

struct fake_backend {
    uv_loop_t *loop;
    enum fake_mode start_mode;
    enum fake_mode mode[VMB_COUNTERS + 1];
    const char *info_state_override; /* answer vm.info with this state */
    int requests[VMB_COUNTERS + 1];  /* counts per action */
    int starts, stops, releases, live;
    int cancelled; /* pending requests cancelled by release */
    fake_vmm *last;
    bool emit_shutdown_on_power_button; /* guest reacts to ACPI */
    bool stop_hangs;                    /* stop never ends (until release) */
};

static void fake_req_closed(uv_handle_t *h)
{
    free(h->data);
}

static const char *const fake_endpoints[] = {
    "vmm.ping",  "vm.create",       "vm.boot",   "vm.shutdown", "vm.reboot",   "vm.pause",
    "vm.resume", "vm.power-button", "vm.delete", "vm.info",     "vm.counters",
};

static void fake_answer(fake_req *r, enum fake_mode mode)
{
    fake_vmm *v = r->v;
    chcp_error *err = NULL;
    char body[128] = "";
    vmb_reply reply = {.status = 204};
    if (mode == FAKE_FAIL) {
        error_set(&err, CHCP_INTERNAL, "%s: VMM answered HTTP 500: fake failure",
                  fake_endpoints[r->action]);
        reply.status = 500;
    } else if (v->exited) {
        error_set(&err, CHCP_UNAVAILABLE, "VMM process exited with code %d (signal %d)",
                  v->exit_code, v->exit_signal);
        reply.status = 0;
    } else if (mode == FAKE_UNAVAILABLE) {
        error_set(&err, CHCP_UNAVAILABLE, "VMM not answering");
        reply.status = 0;
    } else {
        switch (r->action) {
        case VMB_CREATE:
            strcpy(v->ch_state, "Created");
            break;
        case VMB_BOOT:
        case VMB_RESUME:
        case VMB_REBOOT:
            strcpy(v->ch_state, "Running");
            break;
        case VMB_PAUSE:
            strcpy(v->ch_state, "Paused");
            break;
        case VMB_SHUTDOWN:
            strcpy(v->ch_state, "Created");
            break;
        case VMB_DELETE:
            v->ch_state[0] = 0;
            break;
        case VMB_INFO:
            reply.status = 200;
            snprintf(body, sizeof(body), "{\"state\":\"%s\",\"memory_actual_size\":4096}",
                     v->b->info_state_override ? v->b->info_state_override : v->ch_state);
            break;
        case VMB_COUNTERS:
            reply.status = 200;
            snprintf(body, sizeof(body), "{\"disk0\":{\"read_bytes\":%d}}",
                     v->b->requests[VMB_COUNTERS] * 512);
            break;
        default:
            break;
        }
    }
    reply.body = body;
    reply.body_len = strlen(body);
    r->done(r->ud, err, &reply);
    if (mode == FAKE_OK && r->action == VMB_POWER_BUTTON && v->b->emit_shutdown_on_power_button &&
        !v->exited) {
        strcpy(v->ch_state, "Created");
        v->cb->on_event(v->cb_ud, "vm", "shutdown");
    }
}

static void fake_unlink(fake_req **list, fake_req *r)
{
    for (fake_req **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

static void fake_req_cb(uv_timer_t *t)
{
    fake_req *r = t->data;
    fake_unlink(&r->v->queued, r);
    fake_answer(r, r->v->b->mode[r->action]);
    uv_close((uv_handle_t *)&r->timer, fake_req_closed);
}

static void fake_request(void *vmm, vmb_action a, const char *body, uint64_t timeout_ms,
                         vmb_done_fn done, void *ud)
{
    fake_vmm *v = vmm;
    v->b->requests[a]++;
    fake_req *r = calloc(1, sizeof(*r));
    r->v = v;
    r->action = a;
    r->done = done;
    r->ud = ud;
    uv_timer_init(v->b->loop, &r->timer);
    r->timer.data = r;
    if (v->b->mode[a] == FAKE_HANG && !v->exited) {
        r->hung = true;
        r->next = v->hung;
        v->hung = r;
        return;
    }
    r->next = v->queued;
    v->queued = r;
    uv_timer_start(&r->timer, fake_req_cb, 0, 0);
}

/* The process dies: hung requests fail, on_exit fires. */
static inline void fake_exit(fake_vmm *v, int code, int sig)
{
    if (v->exited)
        return;
    v->exited = true;
    v->exit_code = code;
    v->exit_signal = sig;
    fake_req *r = v->hung;
    v->hung = NULL;
    while (r) {
        fake_req *next = r->next;
        fake_answer(r, FAKE_UNAVAILABLE);
        uv_close((uv_handle_t *)&r->timer, fake_req_closed);
        r = next;
    }
    v->cb->on_exit(v->cb_ud, code, sig, NULL);
}

/* Let hung requests finish normally now. */
static inline void fake_unhang(fake_vmm *v)
{
    fake_req *r = v->hung;
    v->hung = NULL;
    while (r) {
        fake_req *next = r->next;
        fake_answer(r, FAKE_OK);
        uv_close((uv_handle_t *)&r->timer, fake_req_closed);
        r = next;
    }
}

typedef struct fake_start {
    uv_timer_t timer;
    fake_vmm *v;
    vmb_done_fn done;
    void *ud;
    bool fail;
} fake_start;

static void fake_start_cb(uv_timer_t *t)
{
    fake_start *s = t->data;
    s->v->starting = NULL;
    chcp_error *err = NULL;
    if (s->fail || s->v->exited)
        error_set(&err, CHCP_UNAVAILABLE, "VMM exited before answering: fake stderr tail");
    s->done(s->ud, err, NULL);
    uv_close((uv_handle_t *)&s->timer, fake_req_closed);
}

static void *fake_start_vmm(void *backend, const vmb_start_params *p, const vmb_callbacks *cb,
                            void *cb_ud, vmb_done_fn done, void *done_ud, chcp_error **err)
{
    fake_backend *b = backend;
    b->starts++;
    if (b->start_mode == FAKE_SYNC_FAIL) {
        error_set(err, CHCP_UNAVAILABLE, "fork: fake failure");
        return NULL;
    }
    fake_vmm *v = calloc(1, sizeof(*v));
    v->b = b;
    v->cb = cb;
    v->cb_ud = cb_ud;
    v->pid = 1000 + b->starts;
    b->last = v;
    b->live++;
    fake_start *s = calloc(1, sizeof(*s));
    s->v = v;
    s->done = done;
    s->ud = done_ud;
    s->fail = b->start_mode != FAKE_OK;
    if (b->start_mode == FAKE_HANG) {
        /* Never ready: model it as a hung ping that fails when stopped. */
        fake_req *r = calloc(1, sizeof(*r));
        r->v = v;
        r->action = VMB_PING;
        r->done = done;
        r->ud = done_ud;
        uv_timer_init(b->loop, &r->timer);
        r->timer.data = r;
        r->next = v->hung;
        v->hung = r;
        free(s);
        return v;
    }
    uv_timer_init(b->loop, &s->timer);
    s->timer.data = s;
    v->starting = s;
    uv_timer_start(&s->timer, fake_start_cb, 0, 0);
    return v;
}

typedef struct fake_stop {
    uv_timer_t timer;
    fake_vmm *v;
    vmb_done_fn done;
    void *ud;
} fake_stop;

static void fake_stop_cb(uv_timer_t *t)
{
    fake_stop *s = t->data;
    s->v->stopping = NULL;
    fake_exit(s->v, 0, 0);
    s->done(s->ud, NULL, NULL);
    uv_close((uv_handle_t *)&s->timer, fake_req_closed);
}

static void fake_stop_vmm(void *vmm, vmb_done_fn done, void *ud)
{
    fake_vmm *v = vmm;
    v->b->stops++;
    fake_stop *s = calloc(1, sizeof(*s));
    s->v = v;
    s->done = done;
    s->ud = ud;
    uv_timer_init(v->b->loop, &s->timer);
    s->timer.data = s;
    v->stopping = s;
    if (!v->b->stop_hangs)
        uv_timer_start(&s->timer, fake_stop_cb, 1, 0);
}

/* Release with a start or stop still pending: it completes (cancelled). */
static void fake_cancel_start_stop(fake_vmm *v)
{
    fake_start *st = steal_pointer(&v->starting);
    fake_stop *sp = steal_pointer(&v->stopping);
    chcp_error *err = NULL;
    if (st) {
        uv_timer_stop(&st->timer);
        error_set(&err, CHCP_UNAVAILABLE, "start: cancelled");
        st->done(st->ud, steal_pointer(&err), NULL);
        uv_close((uv_handle_t *)&st->timer, fake_req_closed);
    }
    if (sp) {
        uv_timer_stop(&sp->timer);
        error_set(&err, CHCP_UNAVAILABLE, "stop: cancelled");
        sp->done(sp->ud, steal_pointer(&err), NULL);
        uv_close((uv_handle_t *)&sp->timer, fake_req_closed);
    }
}

static void fake_release(void *vmm)
{
    fake_vmm *v = vmm;
    v->b->releases++;
    v->b->live--;
    if (v->b->last == v)
        v->b->last = NULL;
    /* Requests still pending complete (cancelled) inside release, as the
     * backend contract says; none may be answered afterwards. */
    for (int list = 0; list < 2; list++) {
        fake_req *r = list ? steal_pointer(&v->queued) : steal_pointer(&v->hung);
        while (r) {
            fake_req *next = r->next;
            chcp_error *err = NULL;
            error_set(&err, CHCP_UNAVAILABLE, "%s: cancelled", fake_endpoints[r->action]);
            v->b->cancelled++;
            uv_timer_stop(&r->timer);
            r->done(r->ud, err, NULL);
            uv_close((uv_handle_t *)&r->timer, fake_req_closed);
            r = next;
        }
    }
    fake_cancel_start_stop(v);
    free(v);
}

static int fake_pid(void *vmm)
{
    return ((fake_vmm *)vmm)->pid;
}

static uint64_t fake_start_time(void *vmm)
{
    return 42;
}

static void fake_free(void *backend)
{
}

static const vm_backend_ops fake_ops = {
    .start = fake_start_vmm,
    .request = fake_request,
    .stop = fake_stop_vmm,
    .release = fake_release,
    .pid = fake_pid,
    .start_time = fake_start_time,
    .free = fake_free,
};

/* ---- running operations ------------------------------------------------------- */

typedef struct op_result {
    bool done;
    chcp_code code;
    char msg[512];
    bool has_vm;
    vm_state state;
    char id[VM_ID_MAX + 1];
    char reason[256];
} op_result;

static inline void op_result_cb(void *ud, const chcp_error *err, const vm_record *vm)
{
    op_result *r = ud;
    r->done = true;
    r->code = err ? err->code : CHCP_OK;
    snprintf(r->msg, sizeof(r->msg), "%s", err ? err->message : "");
    r->has_vm = vm != NULL;
    if (vm) {
        r->state = vm->state;
        snprintf(r->id, sizeof(r->id), "%s", vm->id);
        snprintf(r->reason, sizeof(r->reason), "%s", vm->state_reason);
    }
}

static void tv_wake(uv_timer_t *t)
{
}

/* Run the loop until *flag or ms pass. */
static inline bool tv_run_until(uv_loop_t *loop, volatile bool *flag, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, tv_wake, 5, 5);
    uint64_t end = uv_now(loop) + ms;
    while (!*flag && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

static inline void tv_spin(uv_loop_t *loop, uint64_t ms)
{
    bool never = false;
    tv_run_until(loop, &never, ms);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static inline void tv_rmtree(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
