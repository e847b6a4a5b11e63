/*
 * kvm_probe.c - run a few instructions under /dev/kvm to learn which guests
 * this host can run (the stages and why are in kvm_probe.h).
 *
 * The vCPU work happens in a forked child: a vCPU that spins, or a KVM module
 * that misbehaves, must not hang or take down the daemon. The child uses no
 * allocator (the parent may be multi-threaded), reports one fixed-size record
 * through a pipe and exits; the parent waits for it with a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "vmm/kvm_probe.h"

#define GUEST_MEM (2u << 20)
#define GDT_ADDR 0x500u
#define IDT_ADDR 0x600u
#define CODE_ADDR 0x1000u
#define HANDLER_ADDR 0x1100u
#define PML4_ADDR 0x2000u
#define STACK_TOP 0x8000u
#define PROBE_PORT 0x3f8u
#define PROBE_VECTOR 0x30u

/* The guest code of each stage, assembled from (GNU as):
 *   tiny:   mov $0x3f8,%edx; mov $'K',%al; out %al,(%dx); hlt
 *   iret32: int $0x30; mov $0x3f8,%edx; mov $'I',%al; out; hlt
 *           handler: mov $0x3f8,%edx; mov $'H',%al; out; iret
 *   long64: xor %eax,%eax; cpuid; int $0x30; mov $0x3f8,%edx; mov $'L',%al;
 *           out; hlt;  handler: ... mov $'h',%al; out; iretq */
static const uint8_t code_tiny[] = {0xba, 0xf8, 0x03, 0x00, 0x00, 0xb0, 'K', 0xee, 0xf4};
static const uint8_t code_main32[] = {0xcd, PROBE_VECTOR, 0xba, 0xf8, 0x03, 0x00,
                                      0x00, 0xb0,         'I',  0xee, 0xf4};
static const uint8_t code_handler32[] = {0xba, 0xf8, 0x03, 0x00, 0x00, 0xb0, 'H', 0xee, 0xcf};
static const uint8_t code_main64[] = {0x31, 0xc0, 0x0f, 0xa2, 0xcd, PROBE_VECTOR, 0xba, 0xf8,
                                      0x03, 0x00, 0x00, 0xb0, 'L',  0xee,         0xf4};
static const uint8_t code_handler64[] = {0xba, 0xf8, 0x03, 0x00, 0x00, 0xb0, 'h', 0xee, 0x48, 0xcf};

/* What the child sends back. */
typedef struct probe_record {
    int level;
    int failed_stage; /* index into stage_names, -1 none */
    char detail[200];
} probe_record;

static const char *const stage_names[] = {"open", "vm", "tiny", "iret32", "long64"};
enum { STAGE_OPEN, STAGE_VM, STAGE_TINY, STAGE_IRET32, STAGE_LONG64 };

typedef struct probe_vm {
    int kvm, vm, vcpu;
    uint8_t *mem;
    struct kvm_run *run;
    size_t run_size;
} probe_vm;

static const char *exit_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_IO:
        return "KVM_EXIT_IO";
    case KVM_EXIT_HLT:
        return "KVM_EXIT_HLT";
    case KVM_EXIT_MMIO:
        return "KVM_EXIT_MMIO";
    case KVM_EXIT_SHUTDOWN:
        return "KVM_EXIT_SHUTDOWN (triple fault)";
    case KVM_EXIT_FAIL_ENTRY:
        return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR:
        return "KVM_EXIT_INTERNAL_ERROR";
    default:
        return "an unexpected exit";
    }
}

/* Run until the guest has written each byte of `expect` to the probe port, in
 * order, and then halted. Returns 0, or -1 with `detail` saying what happened. */
static int run_expect(probe_vm *p, const char *expect, char *detail, size_t dlen)
{
    size_t got = 0, want = strlen(expect);
    for (int exits = 0; exits < 32; exits++) {
        if (ioctl(p->vcpu, KVM_RUN, 0) < 0) {
            snprintf(detail, dlen, "KVM_RUN: %s",
                     strerrorname_np(errno) ? strerrorname_np(errno) : "?");
            return -1;
        }
        struct kvm_run *r = p->run;
        if (r->exit_reason == KVM_EXIT_IO && r->io.direction == KVM_EXIT_IO_OUT &&
            r->io.port == PROBE_PORT && r->io.size == 1 && r->io.count == 1) {
            char c = (char)((uint8_t *)r)[r->io.data_offset];
            if (got >= want || c != expect[got]) {
                snprintf(detail, dlen, "unexpected output '%c' after %zu of \"%s\"", c, got,
                         expect);
                return -1;
            }
            got++;
            continue;
        }
        if (r->exit_reason == KVM_EXIT_HLT && got == want)
            return 0;
        if (r->exit_reason == KVM_EXIT_INTERNAL_ERROR)
            snprintf(detail, dlen, "KVM_EXIT_INTERNAL_ERROR suberror %u after %zu of \"%s\"",
                     r->internal.suberror, got, expect);
        else
            snprintf(detail, dlen, "%s (%u) after %zu of \"%s\"", exit_name(r->exit_reason),
                     r->exit_reason, got, expect);
        return -1;
    }
    snprintf(detail, dlen, "too many exits");
    return -1;
}

static int setup_vm(probe_vm *p, const char *dev, char *detail, size_t dlen, int *stage)
{
    *stage = STAGE_OPEN;
    p->kvm = open(dev, O_RDWR | O_CLOEXEC);
    if (p->kvm < 0) {
        snprintf(detail, dlen, "open %s: %s", dev, strerror(errno));
        return -1;
    }
    int api = ioctl(p->kvm, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        snprintf(detail, dlen, "KVM_GET_API_VERSION is %d, not %d", api, KVM_API_VERSION);
        return -1;
    }
    *stage = STAGE_VM;
    p->vm = ioctl(p->kvm, KVM_CREATE_VM, 0);
    if (p->vm < 0) {
        snprintf(detail, dlen, "KVM_CREATE_VM: %s", strerror(errno));
        return -1;
    }
    p->mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p->mem == MAP_FAILED) {
        p->mem = NULL;
        snprintf(detail, dlen, "mmap guest memory: %s", strerror(errno));
        return -1;
    }
    struct kvm_userspace_memory_region region = {.slot = 0,
                                                 .guest_phys_addr = 0,
                                                 .memory_size = GUEST_MEM,
                                                 .userspace_addr = (uintptr_t)p->mem};
    if (ioctl(p->vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        snprintf(detail, dlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
        return -1;
    }
    p->vcpu = ioctl(p->vm, KVM_CREATE_VCPU, 0);
    if (p->vcpu < 0) {
        snprintf(detail, dlen, "KVM_CREATE_VCPU: %s", strerror(errno));
        return -1;
    }
    int size = ioctl(p->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size < (int)sizeof(struct kvm_run)) {
        snprintf(detail, dlen, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        return -1;
    }
    p->run_size = (size_t)size;
    p->run = mmap(NULL, p->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->vcpu, 0);
    if (p->run == MAP_FAILED) {
        p->run = NULL;
        snprintf(detail, dlen, "mmap kvm_run: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void flat_segments(struct kvm_sregs *s, bool long_mode)
{
    struct kvm_segment code = {.base = 0,
                               .limit = 0xffffffff,
                               .selector = 0x08,
                               .type = 11, /* execute/read, accessed */
                               .present = 1,
                               .s = 1,
                               .db = long_mode ? 0 : 1,
                               .l = long_mode ? 1 : 0,
                               .g = 1};
    struct kvm_segment data = code;
    data.selector = 0x10;
    data.type = 3; /* read/write, accessed */
    data.db = 1;
    data.l = 0;
    s->cs = code;
    s->ds = s->es = s->fs = s->gs = s->ss = data;
}

static int set_state(probe_vm *p, bool long_mode, bool tables, char *detail, size_t dlen)
{
    struct kvm_sregs s;
    if (ioctl(p->vcpu, KVM_GET_SREGS, &s) < 0) {
        snprintf(detail, dlen, "KVM_GET_SREGS: %s", strerror(errno));
        return -1;
    }
    flat_segments(&s, long_mode);
    s.cr0 = 0x11; /* PE, ET */
    if (tables) {
        s.gdt.base = GDT_ADDR;
        s.gdt.limit = 3 * 8 - 1;
        s.idt.base = IDT_ADDR;
        s.idt.limit = (uint16_t)((PROBE_VECTOR + 1) * (long_mode ? 16 : 8) - 1);
    }
    if (long_mode) {
        s.cr3 = PML4_ADDR;
        s.cr4 = 0x20;         /* PAE */
        s.efer = 0x500;       /* LME | LMA */
        s.cr0 |= 0x80000000u; /* PG */
    }
    if (ioctl(p->vcpu, KVM_SET_SREGS, &s) < 0) {
        snprintf(detail, dlen, "KVM_SET_SREGS: %s", strerror(errno));
        return -1;
    }
    struct kvm_regs r = {.rip = CODE_ADDR, .rsp = STACK_TOP, .rflags = 2};
    if (ioctl(p->vcpu, KVM_SET_REGS, &r) < 0) {
        snprintf(detail, dlen, "KVM_SET_REGS: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void put64(uint8_t *at, uint64_t v)
{
    memcpy(at, &v, sizeof(v));
}

/* GDT: null, 0x08 code (32- or 64-bit), 0x10 data; an interrupt gate for
 * PROBE_VECTOR to HANDLER_ADDR; for long mode, identity-mapped 2 MiB. */
static void write_tables(uint8_t *mem, bool long_mode)
{
    memset(mem + GDT_ADDR, 0, 0x1000 - GDT_ADDR);
    put64(mem + GDT_ADDR + 8, long_mode ? 0x00209a0000000000ull : 0x00cf9a000000ffffull);
    put64(mem + GDT_ADDR + 16, 0x00cf92000000ffffull);
    uint32_t h = HANDLER_ADDR;
    if (long_mode) {
        uint8_t *g = mem + IDT_ADDR + PROBE_VECTOR * 16;
        uint64_t lo =
            (h & 0xffffull) | (0x08ull << 16) | (0x8eull << 40) | ((uint64_t)(h >> 16) << 48);
        put64(g, lo);
        put64(g + 8, 0); /* offset bits 63:32 */
        memset(mem + PML4_ADDR, 0, 3 * 0x1000);
        put64(mem + PML4_ADDR, (PML4_ADDR + 0x1000) | 3);          /* -> PDPT */
        put64(mem + PML4_ADDR + 0x1000, (PML4_ADDR + 0x2000) | 3); /* -> PD */
        put64(mem + PML4_ADDR + 0x2000, 0x83);                     /* 2 MiB page at 0 */
    } else {
        uint8_t *g = mem + IDT_ADDR + PROBE_VECTOR * 8;
        uint64_t gate =
            (h & 0xffffull) | (0x08ull << 16) | (0x8eull << 40) | ((uint64_t)(h >> 16) << 48);
        put64(g, gate);
    }
}

static int stage(probe_vm *p, int which, char *detail, size_t dlen)
{
    bool long_mode = which == STAGE_LONG64;
    bool tables = which != STAGE_TINY;
    memset(p->mem + CODE_ADDR, 0xf4, 0x200); /* hlt everywhere else */
    if (which == STAGE_TINY) {
        memcpy(p->mem + CODE_ADDR, code_tiny, sizeof(code_tiny));
    } else {
        write_tables(p->mem, long_mode);
        memcpy(p->mem + CODE_ADDR, long_mode ? code_main64 : code_main32,
               long_mode ? sizeof(code_main64) : sizeof(code_main32));
        memcpy(p->mem + HANDLER_ADDR, long_mode ? code_handler64 : code_handler32,
               long_mode ? sizeof(code_handler64) : sizeof(code_handler32));
    }
    if (set_state(p, long_mode, tables, detail, dlen) < 0)
        return -1;
    static const char *const expect[] = {
        [STAGE_TINY] = "K", [STAGE_IRET32] = "HI", [STAGE_LONG64] = "hL"};
    return run_expect(p, expect[which], detail, dlen);
}

static void child_probe(const char *dev, probe_record *rec)
{
    probe_vm p = {.kvm = -1, .vm = -1, .vcpu = -1};
    int st = STAGE_OPEN;
    rec->level = KVM_PROBE_NONE;
    rec->failed_stage = -1;
    if (setup_vm(&p, dev, rec->detail, sizeof(rec->detail), &st) < 0) {
        rec->failed_stage = st;
        return;
    }
    /* Each stage gets the same fresh vCPU state; a failing stage leaves the
     * vCPU unusable, so it is the last one run. */
    static const int ladder[] = {STAGE_TINY, STAGE_IRET32, STAGE_LONG64};
    for (size_t i = 0; i < ARRAY_SIZE(ladder); i++) {
        if (stage(&p, ladder[i], rec->detail, sizeof(rec->detail)) < 0) {
            rec->failed_stage = ladder[i];
            return;
        }
        rec->level = ladder[i] == STAGE_TINY ? KVM_PROBE_TINY : rec->level;
    }
    rec->level = KVM_PROBE_LINUX;
}

void kvm_probe_run(const char *dev, uint64_t timeout_ms, kvm_probe_result *out)
{
    memset(out, 0, sizeof(*out));
    out->level = KVM_PROBE_NONE;
    if (!dev)
        dev = "/dev/kvm";
    if (!timeout_ms)
        timeout_ms = KVM_PROBE_DEFAULT_TIMEOUT_MS;
    uint64_t t0 = time_mono_ns();
    /* Cheap answers first: no device, no fork. */
    if (access(dev, R_OK | W_OK) < 0) {
        out->failed_stage = stage_names[STAGE_OPEN];
        snprintf(out->detail, sizeof(out->detail), "%s: %s", dev, strerror(errno));
        return;
    }
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        out->failed_stage = stage_names[STAGE_OPEN];
        snprintf(out->detail, sizeof(out->detail), "pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        out->failed_stage = stage_names[STAGE_OPEN];
        snprintf(out->detail, sizeof(out->detail), "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        close(pfd[0]);
        probe_record rec;
        memset(&rec, 0, sizeof(rec));
        child_probe(dev, &rec);
        ssize_t UNUSED w = write(pfd[1], &rec, sizeof(rec));
        _exit(0);
    }
    close(pfd[1]);
    probe_record rec;
    memset(&rec, 0, sizeof(rec));
    size_t got = 0;
    int64_t left = (int64_t)timeout_ms;
    while (got < sizeof(rec) && left > 0) {
        struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
        uint64_t before = time_mono_ns();
        int r = poll(&pf, 1, (int)left);
        left -= (int64_t)((time_mono_ns() - before) / 1000000u);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t n = read(pfd[0], (char *)&rec + got, sizeof(rec) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(pfd[0]);
    if (got < sizeof(rec))
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    out->elapsed_us = (time_mono_ns() - t0) / 1000u;
    if (got < sizeof(rec)) {
        out->failed_stage = stage_names[STAGE_VM];
        if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
            snprintf(out->detail, sizeof(out->detail), "the probe process died of signal %d",
                     WTERMSIG(status));
        else
            snprintf(out->detail, sizeof(out->detail), "no verdict within %llu ms",
                     (unsigned long long)timeout_ms);
        return;
    }
    rec.detail[sizeof(rec.detail) - 1] = 0;
    out->level = rec.level >= KVM_PROBE_NONE && rec.level <= KVM_PROBE_LINUX
                     ? (kvm_probe_level)rec.level
                     : KVM_PROBE_NONE;
    out->failed_stage = rec.failed_stage >= 0 && rec.failed_stage < (int)ARRAY_SIZE(stage_names)
                            ? stage_names[rec.failed_stage]
                            : NULL;
    memcpy(out->detail, rec.detail, sizeof(out->detail));
}

const char *kvm_probe_level_name(kvm_probe_level level)
{
    switch (level) {
    case KVM_PROBE_TINY:
        return "tiny";
    case KVM_PROBE_LINUX:
        return "linux";
    default:
        return "none";
    }
}
