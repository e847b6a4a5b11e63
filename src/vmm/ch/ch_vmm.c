/*
 * ch_vmm.c - the `ch_vmm` object: one Cloud Hypervisor instance as seen by
 * the VM manager. It glues the process (spawned, adopted or merely attached
 * to), its API client and its event follower together, and owns the rules
 * that make callbacks safe: reference counting around every user callback,
 * readiness reported once, exit reported once (after the last events and
 * after failing pending calls), nothing reported after ch_vmm_free().
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>

#include "vmm/ch/ch_priv.h"

/* ---- lifetime ---------------------------------------------------------------------- */

static void vmm_destroy(ch_vmm *v)
{
    if (v->pidfd >= 0)
        close(v->pidfd);
    free(v->client.path);
    buf_free(&v->client.body);
    free(v->events.path);
    ch_event_parser_clear(&v->events.parser);
    free(v->vm_id);
    free(v->dir);
    free(v);
}

void ch_vmm_ref(ch_vmm *v)
{
    v->refs++;
}

bool ch_vmm_unref(ch_vmm *v)
{
    bool usable = !v->closing;
    if (--v->refs == 0 && v->handles_open == 0)
        vmm_destroy(v);
    return usable;
}

void ch_vmm_handle_done(ch_vmm *v)
{
    if (--v->handles_open == 0 && v->refs == 0)
        vmm_destroy(v);
}

void ch_vmm_handle_closed(uv_handle_t *h)
{
    ch_vmm_handle_done(h->data);
}

static ch_vmm *vmm_new(uv_loop_t *loop, ch_mode mode, const char *dir, const char *vm_id,
                       const ch_vmm_callbacks *cbs, void *ud)
{
    ch_vmm *v = xcalloc(1, sizeof(*v));
    v->loop = loop;
    v->mode = mode;
    v->refs = 1; /* the owner's, dropped by ch_vmm_free */
    v->pidfd = -1;
    v->events.fd = -1;
    v->dir = dir ? xstrdup(dir) : NULL;
    v->vm_id = vm_id ? xstrdup(vm_id) : NULL;
    if (cbs)
        v->cbs = *cbs;
    v->ud = ud;
    uv_timer_init(loop, &v->stop_timer);
    v->stop_timer.data = v;
    v->handles_open++;
    return v;
}

void ch_vmm_free(ch_vmm *v)
{
    if (!v || v->closing)
        return;
    v->closing = true;
    ch_vmm_ref(v);
    ch_client_fail_all(v, CHCP_CANCELED, "the VMM handle was released");
    ch_client_close(v);
    ch_follower_close(v);
    if (v->has_pidfd_poll)
        uv_close((uv_handle_t *)&v->pidfd_poll, ch_vmm_handle_closed);
    uv_close((uv_handle_t *)&v->stop_timer, ch_vmm_handle_closed);
    v->refs--; /* the owner's reference */
    ch_vmm_unref(v);
}

/* ---- exit ------------------------------------------------------------------------------ */

static void vmm_handle_exit(ch_vmm *v)
{
    if (!v->alive || v->closing)
        return;
    int status = -1, sig = 0;
    char reason[160];
    if (v->mode == CH_MODE_SPAWNED) {
        if (ch_process_reap(v->pidfd, &status, &sig, reason, sizeof(reason)) == 1)
            return; /* not yet */
    } else {
        ch_process_foreign_exit(v->pid, v->pidfd, v->start_time, &status, &sig, reason,
                                sizeof(reason));
    }
    v->alive = false;
    v->exit_seen = true;
    log_vm(LOG_INFO, v->vm_id, "VMM pid %d %s", (int)v->pid, reason);
    uv_poll_stop(&v->pidfd_poll);
    uv_timer_stop(&v->stop_timer);
    ch_vmm_ref(v);
    /* Events written just before the exit come first. */
    if (!ch_follower_drain(v))
        goto out;
    if (!v->ready_reported) {
        v->ready_reported = true;
        chcp_buf b = CHCP_BUF_INIT;
        buf_printf(&b, "the VMM %s before becoming ready", reason);
        ch_process_log_tails(v->dir, &b);
        chcp_error *err = NULL;
        error_set(&err, CHCP_UNAVAILABLE, "%.*s", (int)b.len, (char *)b.data);
        buf_free(&b);
        if (v->cbs.on_ready)
            v->cbs.on_ready(v, NULL, err, v->ud);
        error_free(err);
        if (v->closing)
            goto out;
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "the VMM %s", reason);
    ch_client_fail_all(v, CHCP_UNAVAILABLE, msg);
    if (v->closing)
        goto out;
    if (v->cbs.on_exit) {
        ch_exit ex = {.status = status, .signal = sig, .reason = reason};
        v->cbs.on_exit(v, &ex, v->ud);
    }
out:
    ch_vmm_unref(v);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    vmm_handle_exit(h->data);
}

void ch_vmm_check_exit(ch_vmm *v)
{
    if (!v->alive || v->pidfd < 0)
        return;
    struct pollfd p = {.fd = v->pidfd, .events = POLLIN};
    if (poll(&p, 1, 0) > 0)
        vmm_handle_exit(v);
}

static int watch_pidfd(ch_vmm *v, chcp_error **err)
{
    if (uv_poll_init(v->loop, &v->pidfd_poll, v->pidfd) < 0)
        return error_set(err, CHCP_INTERNAL, "cannot watch the VMM pidfd");
    v->pidfd_poll.data = v;
    v->has_pidfd_poll = true;
    v->handles_open++;
    v->alive = true;
    uv_poll_start(&v->pidfd_poll, UV_READABLE, on_pidfd);
    return 0;
}

/* ---- readiness ------------------------------------------------------------------------- */

static void kill_now(ch_vmm *v)
{
    if (v->alive)
        ch_process_signal(v->pid, v->pidfd, v->start_time, SIGKILL, true);
}

static void on_ready_ping(ch_vmm *v, const ch_response *resp, const chcp_error *err, void *ud)
{
    if (v->ready_reported || v->closing || (err && err->code == CHCP_CANCELED))
        return;
    if (err) {
        /* Did it die? Then the exit path reports, with the logs. (It cannot
         * free v here: the client's pending call holds a reference.) */
        ch_vmm_check_exit(v);
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): see above
        if (v->ready_reported || v->closing)
            return;
    }
    v->ready_reported = true;
    if (!err) {
        if (v->cbs.on_ready)
            v->cbs.on_ready(v, resp, NULL, v->ud);
        return;
    }
    /* Alive but not answering: a failed start all the same. */
    chcp_buf b = CHCP_BUF_INIT;
    buf_printf(&b, "the VMM did not become ready: %s", err->message);
    ch_process_log_tails(v->dir, &b);
    chcp_error *e = NULL;
    error_set(&e, err->code, "%.*s", (int)b.len, (char *)b.data);
    buf_free(&b);
    kill_now(v);
    if (v->cbs.on_ready)
        v->cbs.on_ready(v, NULL, e, v->ud);
    error_free(e);
}

/* ---- creation ---------------------------------------------------------------------------- */

ch_vmm *ch_vmm_spawn(uv_loop_t *loop, const ch_spawn_opts *opts, const ch_vmm_callbacks *cbs,
                     void *ud, chcp_error **err)
{
    ch_child c;
    if (!loop)
        return error_set(err, CHCP_INVALID_ARGUMENT, "no loop"), NULL;
    if (ch_process_spawn(opts, &c, err) < 0)
        return NULL;
    ch_vmm *v = vmm_new(loop, CH_MODE_SPAWNED, opts->dir, opts->vm_id, cbs, ud);
    v->pid = c.pid;
    v->pidfd = c.pidfd;
    v->start_time = c.start_time;
    v->ready_timeout_ms =
        opts->ready_timeout_ms ? opts->ready_timeout_ms : CH_DEFAULT_READY_TIMEOUT_MS;
    ch_client_init(v, c.socket_path);
    int r = watch_pidfd(v, err);
    if (r == 0)
        r = ch_follower_start(v, c.events_path, c.event_offset, err);
    ch_call *ping = NULL;
    if (r == 0)
        ping =
            ch_call_new("vmm.ping", NULL, NULL, 0, v->ready_timeout_ms, on_ready_ping, NULL, err);
    if (ping)
        r = ch_client_enqueue(v, ping, err);
    free(c.socket_path);
    free(c.events_path);
    if (r < 0 || !ping) {
        /* It was never handed out: do not leave it running. */
        ch_process_signal(v->pid, v->pidfd, v->start_time, SIGKILL, true);
        waitpid(v->pid, NULL, 0);
        v->alive = false;
        ch_vmm_free(v);
        return NULL;
    }
    log_vm(LOG_INFO, v->vm_id, "VMM started: pid %d", (int)v->pid);
    return v;
}

ch_vmm *ch_vmm_adopt(uv_loop_t *loop, const ch_adopt_opts *o, const ch_vmm_callbacks *cbs, void *ud,
                     chcp_error **err)
{
    if (!loop || !o || !o->dir || o->pid <= 0)
        return error_set(err, CHCP_INVALID_ARGUMENT, "adopt: pid and VM directory required"), NULL;
    cleanup_free char *sock = ch_path_join(o->dir, CH_API_SOCKET_NAME, err);
    cleanup_free char *events = ch_path_join(o->dir, CH_EVENTS_FILE_NAME, err);
    if (!sock)
        return NULL;
    uint64_t st = 0;
    if (ch_proc_start_time(o->pid, &st, err) < 0)
        return NULL;
    int pidfd = pidfd_open(o->pid, 0);
    if (pidfd < 0)
        return error_set_errno(err, CHCP_NOT_FOUND, errno, "VMM process %d", (int)o->pid), NULL;
    /* Checked again after pidfd_open: the pidfd must name the same process. */
    uint64_t st2 = 0;
    if (st != o->start_time || ch_proc_start_time(o->pid, &st2, NULL) < 0 || st2 != st) {
        close(pidfd);
        return error_set(err, CHCP_NOT_FOUND,
                         "VMM process %d is gone (the pid now belongs to another process)",
                         (int)o->pid),
               NULL;
    }
    ch_vmm *v = vmm_new(loop, CH_MODE_ADOPTED, o->dir, o->vm_id, cbs, ud);
    v->pid = o->pid;
    v->pidfd = pidfd;
    v->start_time = st;
    v->ready_reported = true;
    ch_client_init(v, sock);
    if (watch_pidfd(v, err) < 0 || ch_follower_start(v, events, o->event_offset, err) < 0) {
        ch_vmm_free(v);
        return NULL;
    }
    return v;
}

ch_vmm *ch_vmm_attach(uv_loop_t *loop, const char *uri, const ch_vmm_callbacks *cbs, void *ud,
                      chcp_error **err)
{
    if (!loop || !uri)
        return error_set(err, CHCP_INVALID_ARGUMENT, "attach: socket required"), NULL;
    const char *path = str_has_prefix(uri, "unix://") ? uri + 7 : uri;
    if (path[0] != '/' || strlen(path) >= 108)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "attach: '%s' is not unix:///absolute/path or an absolute path", uri),
               NULL;
    ch_vmm *v = vmm_new(loop, CH_MODE_ATTACHED, NULL, NULL, cbs, ud);
    v->ready_reported = true;
    ch_client_init(v, path);
    return v;
}

/* ---- stop -------------------------------------------------------------------------------- */

static void ignore_answer(ch_vmm *v, const ch_response *resp, const chcp_error *err, void *ud)
{
}

static void on_stop_timer(uv_timer_t *t)
{
    ch_vmm *v = t->data;
    if (!v->alive)
        return;
    if (v->stop_step == 1) {
        /* CH turns SIGTERM into a VMM shutdown (guest not cleanly stopped). */
        v->stop_step = 2;
        log_vm(LOG_WARN, v->vm_id, "VMM pid %d did not shut down within %llu ms: SIGTERM",
               (int)v->pid, (unsigned long long)v->stop_grace_ms);
        ch_process_signal(v->pid, v->pidfd, v->start_time, SIGTERM, false);
        uv_timer_start(&v->stop_timer, on_stop_timer, v->stop_grace_ms, 0);
    } else if (v->stop_step == 2) {
        v->stop_step = 3;
        log_vm(LOG_WARN, v->vm_id, "VMM pid %d ignored SIGTERM for %llu ms: SIGKILL", (int)v->pid,
               (unsigned long long)v->stop_grace_ms);
        ch_process_signal(v->pid, v->pidfd, v->start_time, SIGKILL, true);
    }
}

int ch_vmm_stop(ch_vmm *v, uint64_t grace_ms, chcp_error **err)
{
    if (!v || v->closing)
        return error_set(err, CHCP_INVALID_ARGUMENT, "no VMM to stop");
    grace_ms = grace_ms ? grace_ms : CH_DEFAULT_STOP_GRACE_MS;
    if (v->mode == CH_MODE_ATTACHED)
        return ch_vmm_vmm_shutdown(v, grace_ms, ignore_answer, NULL, err);
    if (!v->alive)
        return error_set(err, CHCP_FAILED_PRECONDITION, "the VMM process has already exited");
    if (v->stop_step)
        return 0; /* already on its way down */
    v->stop_step = 1;
    v->stop_grace_ms = grace_ms;
    chcp_error *e = NULL;
    if (ch_vmm_vmm_shutdown(v, grace_ms, ignore_answer, NULL, &e) < 0) {
        error_free(e);
        uv_timer_start(&v->stop_timer, on_stop_timer, 0, 0);
        return 0;
    }
    uv_timer_start(&v->stop_timer, on_stop_timer, grace_ms, 0);
    return 0;
}

/* ---- accessors ----------------------------------------------------------------------------- */

pid_t ch_vmm_pid(const ch_vmm *v)
{
    return v ? v->pid : 0;
}

uint64_t ch_vmm_start_time(const ch_vmm *v)
{
    return v ? v->start_time : 0;
}

uint64_t ch_vmm_event_offset(const ch_vmm *v)
{
    return v && v->has_events ? v->events.parser.offset : 0;
}

bool ch_vmm_alive(const ch_vmm *v)
{
    return v && v->alive;
}

const char *ch_vmm_socket_path(const ch_vmm *v)
{
    return v ? v->client.path : NULL;
}

void *ch_vmm_userdata(const ch_vmm *v)
{
    return v ? v->ud : NULL;
}

/* ---- calls ------------------------------------------------------------------------------- */

int ch_vmm_call(ch_vmm *v, const char *endpoint, const char *json_body, const int *fds, size_t nfds,
                uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err)
{
    if (!v)
        return error_set(err, CHCP_INVALID_ARGUMENT, "no VMM");
    ch_call *call = ch_call_new(endpoint, json_body, fds, nfds, timeout_ms, cb, ud, err);
    if (!call)
        return -1;
    return ch_client_enqueue(v, call, err);
}

#define CH_SIMPLE_CALL(fn, endpoint)                                                               \
    int fn(ch_vmm *v, uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err)          \
    {                                                                                              \
        return ch_vmm_call(v, endpoint, NULL, NULL, 0, timeout_ms, cb, ud, err);                   \
    }

CH_SIMPLE_CALL(ch_vmm_ping, "vmm.ping")
CH_SIMPLE_CALL(ch_vmm_info, "vm.info")
CH_SIMPLE_CALL(ch_vmm_boot, "vm.boot")
CH_SIMPLE_CALL(ch_vmm_shutdown, "vm.shutdown")
CH_SIMPLE_CALL(ch_vmm_reboot, "vm.reboot")
CH_SIMPLE_CALL(ch_vmm_pause, "vm.pause")
CH_SIMPLE_CALL(ch_vmm_resume, "vm.resume")
CH_SIMPLE_CALL(ch_vmm_power_button, "vm.power-button")
CH_SIMPLE_CALL(ch_vmm_delete, "vm.delete")
CH_SIMPLE_CALL(ch_vmm_vmm_shutdown, "vmm.shutdown")

int ch_vmm_create(ch_vmm *v, const ch_vm_config *cfg, uint64_t timeout_ms, ch_response_fn cb,
                  void *ud, chcp_error **err)
{
    cleanup_free char *json = ch_vm_config_to_json(cfg, err);
    if (!json)
        return -1;
    return ch_vmm_call(v, "vm.create", json, NULL, 0, timeout_ms, cb, ud, err);
}

int ch_vmm_add_net(ch_vmm *v, const ch_net_config *net, const int *tap_fds, size_t n_fds,
                   uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err)
{
    cleanup_free char *json = ch_net_config_to_json(net, err);
    if (!json)
        return -1;
    return ch_vmm_call(v, "vm.add-net", json, tap_fds, n_fds, timeout_ms, cb, ud, err);
}
