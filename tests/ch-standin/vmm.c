/*
 * vmm.c - the stand-in's VMM control loop (CH: Vmm::control_loop).
 *
 * The main thread becomes the VMM thread. It waits on three things: API calls
 * handed over by the HTTP thread (one at a time; the HTTP thread blocks until
 * the answer is ready, which is what makes CH's API strictly serialised),
 * signals (through a signalfd), and the simulated guest's timers.
 *
 * Signals: SIGTERM/SIGINT do what CH's signal thread does (exit_evt ->
 * vmm_shutdown -> exit 0, no clean guest shutdown). The stand-in adds guest
 * events: SIGUSR1 = guest powers off, SIGUSR2 = guest reboots, SIGRTMIN =
 * guest panics (pvpanic). A control loop stuck in a hang_on fault handles no
 * signal at all, like a wedged CH: only SIGKILL ends it.
 */
#include "standin.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

si_vm g_vm;

static pthread_mutex_t call_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t call_cv = PTHREAD_COND_INITIALIZER;
static si_call *call_pending;
static si_reply *call_reply;
static bool call_done;
static bool vmm_gone; /* the control loop has exited: nobody answers any more */
static int api_evfd = -1;
static int sig_fd = -1;
static int epfd = -1;

void si_vmm_call(si_call *call, si_reply *reply)
{
    pthread_mutex_lock(&call_mu);
    if (vmm_gone) {
        pthread_mutex_unlock(&call_mu);
        json_decref(call->body);
        for (int i = 0; i < call->nfds; i++)
            close(call->fds[i]);
        free(call->fds);
        reply->status = 500;
        reply->body = si_json_chain("Error from API", "API request send error",
                                    "sending on a closed channel", NULL);
        return;
    }
    call_pending = call;
    call_reply = reply;
    call_done = false;
    uint64_t one = 1;
    ssize_t n = write(api_evfd, &one, sizeof(one));
    (void)n;
    while (!call_done)
        pthread_cond_wait(&call_cv, &call_mu);
    call_pending = NULL;
    pthread_mutex_unlock(&call_mu);
}

int si_vmm_init(void)
{
    memset(&g_vm, 0, sizeof(g_vm));
    g_vm.f = g_start_faults;
    api_evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN);
    sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (api_evfd < 0 || epfd < 0 || sig_fd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = api_evfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, api_evfd, &ev);
    ev.data.fd = sig_fd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sig_fd, &ev);
    return 0;
}

void si_vmm_watch_fd(int fd, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
}

static void handle_api(void)
{
    uint64_t cnt;
    ssize_t n = read(api_evfd, &cnt, sizeof(cnt));
    (void)n;
    pthread_mutex_lock(&call_mu);
    si_call *call = call_pending;
    si_reply *reply = call_reply;
    pthread_mutex_unlock(&call_mu);
    if (!call || call_done)
        return;
    si_api_handle(call, reply);
    json_decref(call->body);
    free(call->fds);
    pthread_mutex_lock(&call_mu);
    call_done = true;
    pthread_cond_signal(&call_cv);
    pthread_mutex_unlock(&call_mu);
}

static void handle_signal(void)
{
    struct signalfd_siginfo si;
    while (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGTERM || sig == SIGINT) {
            LOGI("Received signal %d, shutting down the VMM", sig);
            si_vmm_shutdown(0);
        } else if (sig == SIGUSR1) {
            si_guest_poweroff("SIGUSR1");
        } else if (sig == SIGUSR2) {
            si_guest_reboot("SIGUSR2");
        } else if (sig == SIGRTMIN) {
            si_guest_panic("SIGRTMIN");
        }
    }
}

void si_vm_delete(void)
{
    if (!g_vm.config)
        return;
    if (g_vm.exists) {
        si_guest_stop();
        si_console_release(true);
        si_event("vm", "shutdown", NULL);
    }
    si_close_config_fds(g_vm.config);
    json_decref(g_vm.config);
    g_vm.config = NULL;
    g_vm.f = g_start_faults;
    g_vm.boot_attempts = 0;
    g_vm.crash_at = 0;
    si_event("vm", "deleted", NULL);
}

void si_vmm_shutdown(int code)
{
    si_vm_delete();
    si_event("vmm", "shutdown", NULL);
    g_vm.exit_requested = true;
    g_vm.exit_code = code;
}

/* crash_on / hang_on: abort mid-request, or never answer. */
void si_fault_point(const char *action)
{
    if (si_action_in(g_vm.f.crash_on, action)) {
        char *why = si_xasprintf("crash_on=%s", action);
        si_fault_crash(why);
    }
    if (si_action_in(g_vm.f.hang_on, action)) {
        LOGW("standin: hang_on=%s: the control loop stops here", action);
        for (;;)
            pause();
    }
}

void si_fault_crash(const char *why)
{
    LOGE("standin: %s: dying with signal %d", why, g_vm.f.crash_signal);
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigaction(g_vm.f.crash_signal, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, g_vm.f.crash_signal);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(g_vm.f.crash_signal);
    _exit(134); /* not reached for fatal signals */
}

/* The VMM thread is leaving: a call the HTTP thread posted meanwhile would
 * wait forever (CH: the channel's receiver is dropped and the request fails). */
static void close_calls(void)
{
    pthread_mutex_lock(&call_mu);
    vmm_gone = true;
    if (call_pending && !call_done) {
        call_reply->status = 500;
        call_reply->body = si_json_chain("Error from API", "API response receive error",
                                         "receiving on a closed channel", NULL);
        json_decref(call_pending->body);
        for (int i = 0; i < call_pending->nfds; i++)
            close(call_pending->fds[i]);
        free(call_pending->fds);
        call_done = true;
        pthread_cond_signal(&call_cv);
    }
    pthread_mutex_unlock(&call_mu);
}

int si_vmm_run(void)
{
    pthread_setname_np(pthread_self(), "vmm");
    for (;;) {
        if (g_vm.exit_requested)
            break;
        int timeout = si_guest_next_timeout();
        struct epoll_event evs[4];
        int n = epoll_wait(epfd, evs, 4, timeout);
        if (n < 0 && errno != EINTR) {
            LOGE("epoll_wait: %s", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == api_evfd)
                handle_api();
            else if (evs[i].data.fd == sig_fd)
                handle_signal();
            else if (evs[i].data.fd == si_console_listen_fd())
                si_console_accept();
            if (g_vm.exit_requested)
                break;
        }
        if (!g_vm.exit_requested)
            si_guest_fire_due();
    }
    close_calls();
    return g_vm.exit_code;
}
