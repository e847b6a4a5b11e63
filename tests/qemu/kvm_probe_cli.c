/*
 * kvm_probe_cli.c - `kvm-probe`: print what /dev/kvm can run as one JSON line
 * and exit 0 for "linux", 1 for "tiny", 2 for "none". Test suites use it as
 * their KVM gate (tests/qemu for KVM paths, the real-Cloud-Hypervisor e2e
 * tests) instead of looking for vmx/svm in /proc/cpuinfo.
 *
 *   kvm-probe [--device /dev/kvm] [--timeout-ms N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vmm/kvm_probe.h"

int main(int argc, char **argv)
{
    const char *dev = NULL;
    unsigned long timeout = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            dev = argv[++i];
        else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
            timeout = strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--device PATH] [--timeout-ms N]\n", argv[0]);
            return 64;
        }
    }
    kvm_probe_result r;
    kvm_probe_run(dev, timeout, &r);
    json_t *o =
        json_pack("{s:s, s:s?, s:s, s:I}", "level", kvm_probe_level_name(r.level), "failed_stage",
                  r.failed_stage, "detail", r.detail, "elapsed_us", (json_int_t)r.elapsed_us);
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return r.level == KVM_PROBE_LINUX ? 0 : r.level == KVM_PROBE_TINY ? 1 : 2;
}
