/*
 * vgshim.c - lets chcp-api run its real lifecycle under valgrind 3.19
 * (Debian 12), for the instruction counts of bench/callgrind_bench.py.
 *
 * Why: valgrind 3.19 does not know openat2 (image staging, before every
 * CreateVm and BootVm), pidfd_open and pidfd_send_signal (VMM supervision):
 * it answers ENOSYS, so no VM could be created under it. This preload
 * library runs exactly those system calls natively, outside the simulated
 * CPU (VALGRIND_NON_SIMD_CALL1), and passes every other call to the kernel
 * as glibc would. None of the three writes to the caller's memory, so
 * valgrind's view of memory stays right; their instructions are the
 * kernel's, which callgrind does not count anyway. Outside valgrind the
 * library changes nothing. A benchmark tool only: never linked into chcp.
 *
 *   LD_PRELOAD=build/bench/vgshim.so valgrind --tool=callgrind chcp-api
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

typedef struct native_call {
    long nr;
    long arg[6];
} native_call;

static long raw_syscall6(long nr, const long a[6])
{
    long ret;
    register long r10 __asm__("r10") = a[3];
    register long r8 __asm__("r8") = a[4];
    register long r9 __asm__("r9") = a[5];
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(nr), "D"(a[0]), "S"(a[1]), "d"(a[2]), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* Runs on the real CPU (valgrind passes its thread id first). */
static long run_native(long tid, long call)
{
    (void)tid;
    const native_call *c = (const native_call *)call;
    return raw_syscall6(c->nr, c->arg);
}

static bool unknown_to_valgrind(long nr)
{
    return nr == SYS_openat2 || nr == SYS_pidfd_open || nr == SYS_pidfd_send_signal;
}

static long finish(long ret)
{
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

static long forward(long nr, const long a[6])
{
    if (RUNNING_ON_VALGRIND && unknown_to_valgrind(nr)) {
        native_call c = {.nr = nr, .arg = {a[0], a[1], a[2], a[3], a[4], a[5]}};
        return finish(VALGRIND_NON_SIMD_CALL1(run_native, (long)&c));
    }
    return finish(raw_syscall6(nr, a));
}

long syscall(long nr, ...)
{
    long a[6];
    va_list ap;
    va_start(ap, nr);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    return forward(nr, a);
}

int pidfd_open(pid_t pid, unsigned int flags)
{
    const long a[6] = {pid, (long)flags};
    return (int)forward(SYS_pidfd_open, a);
}

int pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned int flags)
{
    const long a[6] = {pidfd, sig, (long)info, (long)flags};
    return (int)forward(SYS_pidfd_send_signal, a);
}
