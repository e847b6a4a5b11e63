/*
 * validate.c - VmConfig::validate() (vmm/src/config.rs), which CH runs in
 * vm.boot (Vm::new) and on every vm.add-* against the config with the new
 * device added. Rules are checked in CH's order, because the first failing
 * one is the message a client sees. Every failure is a ConfigValidation error
 * (400 since v54) except a duplicate identifier (409 since v54).
 *
 * Not modelled: NUMA, rate-limit groups, TDX/SEV, landlock, IOMMU segments,
 * ivshmem and the other rarely used corners.
 */
#include "standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vctx {
    json_t *cfg;
    json_t *ids; /* identifiers seen so far */
    long long boot_vcpus;
    long long num_pci_segments;
    enum si_err kind;
} vctx;

/* The chain under "Failed to validate config": 1 or 2 more messages. */
static char **fail(vctx *v, enum si_err kind, char *a, char *b)
{
    char **m = calloc(4, sizeof(char *));
    if (!m)
        abort();
    m[0] = si_xstrdup("Failed to validate config");
    m[1] = a;
    m[2] = b;
    v->kind = kind;
    return m;
}

#define FAIL(...) return fail(v, SI_E_VALIDATION, si_xasprintf(__VA_ARGS__), NULL)

static long long num(json_t *o, const char *key, long long def)
{
    json_t *x = json_object_get(o, key);
    return json_is_integer(x) ? (long long)json_integer_value(x) : def;
}

static bool flag(json_t *o, const char *key, bool def)
{
    json_t *x = json_object_get(o, key);
    return json_is_boolean(x) ? json_is_true(x) : def;
}

static bool is_pow2(long long n)
{
    return n > 0 && (n & (n - 1)) == 0;
}

static const char *mode_of(json_t *cfg, const char *key, const char *def)
{
    const char *m = json_string_value(json_object_get(json_object_get(cfg, key), "mode"));
    return m ? m : def;
}

/* VmConfig::validate_identifier */
static char **check_id(vctx *v, json_t *dev)
{
    const char *id = json_string_value(json_object_get(dev, "id"));
    if (!id)
        return NULL;
    if (!strncmp(id, "__", 2))
        FAIL("Identifier %s is not valid", id);
    if (json_object_get(v->ids, id))
        return fail(v, SI_E_VALIDATION_UNIQUE, si_xasprintf("Identifier %s is not unique", id),
                    NULL);
    json_object_set_new(v->ids, id, json_true());
    return NULL;
}

/* PciDeviceCommonConfig::validate */
static char **check_pci(vctx *v, json_t *dev)
{
    long long seg = num(dev, "pci_segment", 0);
    if (seg >= v->num_pci_segments)
        FAIL("Invalid PCI segment id: %lld", seg);
    return NULL;
}

static bool shared_memory(json_t *cfg)
{
    json_t *mem = json_object_get(cfg, "memory");
    return flag(mem, "shared", false) || flag(mem, "hugepages", false);
}

static char **check_disk(vctx *v, json_t *d)
{
    char **m;
    bool vhost = flag(d, "vhost_user", false);
    if (json_object_get(d, "path") && json_object_get(d, "vhost_socket"))
        FAIL("Disk path and vhost socket both provided");
    if (vhost && !shared_memory(v->cfg))
        FAIL("Using vhost-user requires using shared memory or huge pages");
    if (vhost && !json_object_get(d, "vhost_socket"))
        FAIL("No socket provided when using vhost-user");
    if ((m = check_pci(v, d)))
        return m;
    long long q = num(d, "num_queues", 1), qs = num(d, "queue_size", 128);
    if (q > v->boot_vcpus)
        FAIL("Queue count (%lld) must not exceed boot vCPUs (%lld)", q, v->boot_vcpus);
    if (!is_pow2(qs))
        FAIL("Queue size must be a power of 2 no greater than 32768: %lld", qs);
    if (qs <= 2)
        FAIL("Block queue size must be greater than 2: %lld", qs);
    const char *serial = json_string_value(json_object_get(d, "serial"));
    if (serial && strlen(serial) > 20)
        FAIL("Block device serial length (%zu) exceeds maximum allowed length (20)",
             strlen(serial));
    return check_id(v, d);
}

static char **check_net(vctx *v, json_t *n)
{
    char **m;
    bool vhost = flag(n, "vhost_user", false);
    if (vhost && !shared_memory(v->cfg))
        FAIL("Using vhost-user requires using shared memory or huge pages");
    if (vhost && !json_object_get(n, "vhost_socket"))
        FAIL("No socket provided when using vhost-user");
    if ((m = check_pci(v, n)))
        return m;
    long long q = num(n, "num_queues", 2), qs = num(n, "queue_size", 256);
    if (q < 2)
        FAIL("Number of queues (%lld) to virtio_net should be higher than 2", q);
    json_t *fds = json_object_get(n, "fds");
    if (json_is_array(fds) && (long long)json_array_size(fds) * 2 != q)
        FAIL("Number of queues (%lld) to virtio_net does not match the number of FDs (%lld)", q,
             (long long)json_array_size(fds) * 2);
    if (q / 2 > v->boot_vcpus)
        FAIL("Queue count (%lld) must not exceed boot vCPUs (%lld)", q, v->boot_vcpus);
    if (!is_pow2(qs))
        FAIL("Queue size must be a power of 2 no greater than 32768: %lld", qs);
    long long mtu = num(n, "mtu", -1);
    if (mtu >= 0 && mtu < 1280)
        FAIL("Provided MTU %lld is lower than 1280 (expected by VIRTIO specification)", mtu);
    if (!flag(n, "offload_csum", true) &&
        (flag(n, "offload_tso", true) || flag(n, "offload_ufo", true)))
        FAIL("\"offload_tso\" and \"offload_ufo\" depend on \"offload_csum\"");
    bool ip = json_object_get(n, "ip") != NULL, mask = json_object_get(n, "mask") != NULL;
    if (mask && !ip)
        FAIL("Mask provided without an IP");
    if (ip && !mask)
        FAIL("IP provided without a mask");
    return check_id(v, n);
}

static char **check_payload(vctx *v)
{
    json_t *payload = json_object_get(v->cfg, "payload");
    bool kernel = json_is_string(json_object_get(payload, "kernel"));
    bool fw = json_is_string(json_object_get(payload, "firmware"));
    /* igvm exists only with the igvm feature, which default builds lack */
    if (!json_is_object(payload) || (!kernel && !fw))
        return fail(v, SI_E_VALIDATION, si_xstrdup("Payload configuration is not bootable"),
                    si_xstrdup("No bootitem provided: neither firmware nor kernel"));
    if (fw && kernel)
        return fail(v, SI_E_VALIDATION, si_xstrdup("Payload configuration is not bootable"),
                    si_xstrdup("Specifying a kernel is not supported when a firmware is provided"));
    return NULL;
}

static char **check_top(vctx *v)
{
    char **m;
    if ((m = check_payload(v)))
        return m;
    const char *cons[] = {"console", "serial"};
    for (int i = 0; i < 2; i++)
        if (!strcmp(mode_of(v->cfg, cons[i], i ? "Null" : "Tty"), "File") &&
            !json_is_string(json_object_get(json_object_get(v->cfg, cons[i]), "file")))
            FAIL("Path missing when using file console mode");
    json_t *cpus = json_object_get(v->cfg, "cpus");
    long long max = num(cpus, "max_vcpus", 1);
    if (max < v->boot_vcpus)
        FAIL("Max CPUs (%lld) lower than boot CPUs (%lld)", max, v->boot_vcpus);
    if (max > 8192)
        FAIL("Too many CPUs: specified %lld but 8192 is the limit", max);
    return NULL;
}

static char **check_devices(vctx *v)
{
    char **m;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(v->cfg, "disks"), i, d) if ((m = check_disk(v, d))) return m;
    json_array_foreach(json_object_get(v->cfg, "net"), i, d) if ((m = check_net(v, d))) return m;
    json_t *fs = json_object_get(v->cfg, "fs");
    if (json_array_size(fs) && !shared_memory(v->cfg))
        FAIL("Using vhost-user requires using shared memory or huge pages");
    static const char *const rest[] = {"fs",   "pmem",         "devices",
                                       "vdpa", "user_devices", "generic_vhost_user"};
    for (size_t l = 0; l < sizeof(rest) / sizeof(rest[0]); l++)
        json_array_foreach(json_object_get(v->cfg, rest[l]), i, d)
        {
            if ((m = check_pci(v, d)) || (m = check_id(v, d)))
                return m;
        }
    json_t *vsock = json_object_get(v->cfg, "vsock");
    if (vsock) {
        long long cid = num(vsock, "cid", 0);
        if (cid <= 2 || cid == 0xffffffffLL)
            FAIL("%lld is a special VSOCK CID", cid);
        if ((m = check_pci(v, vsock)) || (m = check_id(v, vsock)))
            return m;
    }
    return NULL;
}

char **si_validate(json_t *cfg, enum si_err *kind)
{
    vctx v = {.cfg = cfg, .ids = json_object(), .kind = SI_E_VALIDATION};
    v.boot_vcpus = num(json_object_get(cfg, "cpus"), "boot_vcpus", 1);
    v.num_pci_segments = num(json_object_get(cfg, "platform"), "num_pci_segments", 1);
    char **m = check_top(&v);
    if (!m)
        m = check_devices(&v);
    json_decref(v.ids);
    *kind = v.kind;
    return m;
}
