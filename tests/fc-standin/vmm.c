/*
 * vmm.c - the stand-in's VMM thread: Firecracker's pre-boot request loop
 * (PrebootApiController::build_microvm_from_requests) and run loop
 * (ApiServerAdapter::run_microvm).
 *
 * The main thread becomes the VMM thread. The API thread hands it one
 * action at a time and blocks until the answer is ready, which is what
 * makes Firecracker's API strictly serialised. While the microVM runs, the
 * loop also serves the guest's timers, the periodic metrics and the
 * stand-in's guest signals (SIGUSR1 poweroff, SIGUSR2 reboot, SIGRTMIN
 * panic). While it is paused it serves API requests only, as
 * ApiServerAdapter::handle_request does after a Pause: guest, metrics and
 * signals wait for the Resume.
 *
 * A call that reaches the VMM thread after it left its loop is never
 * answered: the API thread drops that connection (real Firecracker can hang
 * in that race; the stand-in does not model the hang).
 */
#include "standin.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

fsi_vm g_vm;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static fsi_action *pending;
static fsi_outcome *pending_out;
static bool answered, gone;
static int api_evfd = -1, sig_fd = -1;

void fsi_vmm_call(fsi_action *a, fsi_outcome *o)
{
    pthread_mutex_lock(&mu);
    if (gone) {
        pthread_mutex_unlock(&mu);
        o->status = -1;
        return;
    }
    pending = a;
    pending_out = o;
    answered = false;
    uint64_t one = 1;
    ssize_t n = write(api_evfd, &one, sizeof(one));
    (void)n;
    while (!answered)
        pthread_cond_wait(&cv, &mu);
    pending = NULL;
    pthread_mutex_unlock(&mu);
}

int fsi_vmm_init(void)
{
    g_vm.serial_fd = -1;
    g_vm.f = g_start_faults;
    fsi_resources_init(&g_vm.res);
    api_evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN);
    sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return api_evfd < 0 || sig_fd < 0 ? -1 : 0;
}

void fsi_vmm_stop(int code)
{
    LOGI(M_VMM, "Vmm is stopping.");
    g_vm.exit_requested = true;
    g_vm.exit_code = code;
}

static void handle_api(void)
{
    uint64_t cnt;
    ssize_t n = read(api_evfd, &cnt, sizeof(cnt));
    (void)n;
    pthread_mutex_lock(&mu);
    fsi_action *a = pending;
    fsi_outcome *o = pending_out;
    bool todo = a && !answered;
    pthread_mutex_unlock(&mu);
    if (!todo)
        return;
    fsi_handle_action(a, o);
    pthread_mutex_lock(&mu);
    answered = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void handle_signals(void)
{
    struct signalfd_siginfo si;
    while (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGUSR1)
            fsi_guest_poweroff("SIGUSR1");
        else if (sig == SIGUSR2)
            fsi_guest_reboot("SIGUSR2");
        else if (sig == SIGRTMIN)
            fsi_guest_panic("SIGRTMIN");
    }
}

void fsi_fault_point(const fsi_faults *f, const char *const *names)
{
    if (fsi_list_has(f->crash_on, names)) {
        char *why = fsi_xasprintf("crash_on=%s", names[0]);
        fsi_fault_crash(f->crash_signal, why);
    }
    if (fsi_list_has(f->hang_on, names)) {
        LOGW(M_STANDIN, "standin: hang_on=%s: the VMM thread stops here", names[0]);
        for (;;)
            pause();
    }
}

/* Die by this signal. Firecracker's own handlers (SIGSEGV, SIGBUS, SIGILL,
 * SIGSYS, SIGHUP, SIGXFSZ, SIGXCPU) turn it into their exit codes; other
 * signals (SIGABRT: a Rust panic, SIGKILL) end the process. */
void fsi_fault_crash(int sig, const char *why)
{
    LOGE(M_STANDIN, "standin: %s: dying with signal %d", why, sig);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig); /* not reached for fatal signals */
}

/* The VMM thread is leaving: a call posted meanwhile is not answered. */
static void close_calls(void)
{
    pthread_mutex_lock(&mu);
    gone = true;
    if (pending && !answered) {
        pending_out->status = -1;
        answered = true;
        pthread_cond_signal(&cv);
    }
    pthread_mutex_unlock(&mu);
}

int fsi_vmm_run(void)
{
    for (;;) {
        if (g_vm.exit_requested || g_vm.fatal)
            break;
        bool paused = g_vm.state == FSI_PAUSED;
        bool guest = g_vm.state != FSI_NOT_STARTED && !paused;
        struct pollfd p[2] = {{api_evfd, POLLIN, 0}, {sig_fd, POLLIN, 0}};
        /* Pre-boot there is no guest: its signals only log (handled when they arrive). */
        int nfds = paused ? 1 : 2;
        int timeout = guest ? fsi_guest_next_timeout() : -1;
        if (!guest && g_vm.crash_at) /* crash_after_ms counts host time, paused or not */
            timeout = (int)((g_vm.crash_at - fsi_now_ns()) / 1000000 + 1);
        if (timeout < -1)
            timeout = 0;
        int n = poll(p, (nfds_t)nfds, timeout);
        if (n < 0 && errno != EINTR) {
            LOGE(M_VMM, "poll: %s", strerror(errno));
            return FSI_EXIT_GENERIC;
        }
        if (n > 0 && (p[0].revents & POLLIN))
            handle_api();
        if (n > 0 && nfds > 1 && (p[1].revents & POLLIN))
            handle_signals();
        if (g_vm.state == FSI_RUNNING && !g_vm.exit_requested)
            fsi_guest_fire_due();
        else if (g_vm.crash_at && g_vm.crash_at <= fsi_now_ns())
            fsi_fault_crash(g_vm.f.crash_signal, "crash_after_ms");
    }
    close_calls();
    return g_vm.fatal ? FSI_EXIT_GENERIC : g_vm.exit_code;
}
