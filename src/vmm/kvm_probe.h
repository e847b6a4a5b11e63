/*
 * kvm_probe.h - what /dev/kvm can actually run on this host, found by running
 * a few instructions in a throw-away VM (not by reading CPU flags).
 *
 * Why: a host can expose a /dev/kvm that creates VMs yet cannot run every
 * guest. The nested paravirtual KVM of our build machines (kvm_pvm) runs tiny
 * guests (a VMM plus a small PVH kernel) but crashes stock Linux kernels
 * with "KVM internal error ... emulation failure", and shows no vmx/svm flag
 * at all. So the probe climbs a ladder of stages and stops at the first that
 * fails:
 *
 *   open      /dev/kvm opens, KVM_GET_API_VERSION is 12
 *   vm        KVM_CREATE_VM, guest memory, KVM_CREATE_VCPU, the kvm_run area
 *   tiny      32-bit flat protected mode: OUT to port 0x3f8, then HLT
 *             -> KVM_PROBE_TINY: tiny guests and real-VMM smoke tests can run
 *   iret32    32-bit protected mode with a GDT and IDT in guest memory: INT
 *             0x30, the handler writes to a port and returns with IRET
 *   long64    64-bit long mode with paging: CPUID, INT 0x30, IRETQ back
 *             -> KVM_PROBE_LINUX: what a Linux kernel does from its first
 *             instructions on (mode switches through descriptor tables,
 *             interrupts and exceptions returning with IRET)
 *
 * KVM_PROBE_LINUX is necessary, not sufficient, for a Linux guest: it rules out
 * the failures seen so far (PVM cannot emulate IRET in 32-bit protected mode),
 * and hardware KVM (vmx/svm) passes it. Everything runs in a forked child with
 * a deadline, so a hanging or crashing vCPU costs the caller nothing but the
 * timeout.
 */
#ifndef CHCP_VMM_KVM_PROBE_H
#define CHCP_VMM_KVM_PROBE_H

#include <stdint.h>

typedef enum kvm_probe_level {
    KVM_PROBE_NONE = 0,  /* no usable /dev/kvm */
    KVM_PROBE_TINY = 1,  /* tiny guests run (flat 32-bit code, port I/O, HLT) */
    KVM_PROBE_LINUX = 2, /* also descriptor tables, IRET and long mode */
} kvm_probe_level;

typedef struct kvm_probe_result {
    kvm_probe_level level;
    const char *failed_stage; /* "open", "vm", "tiny", "iret32", "long64"; NULL when all passed */
    char detail[200]; /* why the failed stage failed, e.g. "KVM_EXIT_INTERNAL_ERROR suberror 1" */
    uint64_t elapsed_us; /* the whole probe, fork to verdict */
} kvm_probe_result;

#define KVM_PROBE_DEFAULT_TIMEOUT_MS 2000u

/* Probe `dev` (NULL: /dev/kvm) within timeout_ms (0: the default). Always fills
 * *out; never fails otherwise. Blocks the calling thread for at most the
 * timeout (a few milliseconds when KVM works). */
void kvm_probe_run(const char *dev, uint64_t timeout_ms, kvm_probe_result *out);

const char *kvm_probe_level_name(kvm_probe_level level); /* "none", "tiny", "linux" */

#endif
