/*
 * resources.c - VmResources (src/vmm/src/resources.rs): machine
 * configuration, boot source, MMDS, the full configuration GET /vm/config
 * returns, and the --config-file path (VmResources::from_json).
 *
 * The setters return the inner error text; callers add the context
 * Firecracker puts in front: the VmmActionError variant over the API
 * ("Machine config error: ...") or the ResourcesError variant for a config
 * file ("VM config error: ...").
 *
 * Rules modelled from the source:
 *   - machine-config: 1..32 vCPUs (1 or even with SMT), memory > 0 and even
 *     with huge pages, not below a configured balloon; a PUT resets smt,
 *     track_dirty_pages and huge_pages to their defaults, a PATCH changes
 *     only what it names; a PUT without cpu_template keeps the template.
 *   - boot-source: the kernel (and initrd) are opened at PUT time; the
 *     command line must fit 2048 bytes (with its NUL) and be printable ASCII.
 *   - MMDS: the address must be in 169.254.0.0/16 outside 169.254.0.x and
 *     169.254.255.x; the interface list non-empty and naming existing
 *     interfaces; the data store is limited to --mmds-size-limit (default:
 *     the HTTP payload limit) and PATCH is a JSON merge patch on an
 *     initialised store.
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

static int kernel_fd = -1, initrd_fd = -1;

void fsi_resources_init(fsi_resources *r)
{
    memset(r, 0, sizeof(*r));
    r->machine = json_pack("{si si sb sb ss}", "vcpu_count", 1, "mem_size_mib", 128, "smt", 0,
                           "track_dirty_pages", 0, "huge_pages", "None");
    r->drives = json_array();
    r->nets = json_array();
    r->pmem = json_array();
    r->vsock_fd = -1;
}

static char *cmdline_check(const char *s)
{
    if (strlen(s) + 1 > 2048)
        return fsi_xstrdup("Command line overflow");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return fsi_xstrdup("String contains an invalid character");
    return NULL;
}

char *fsi_res_boot_source(fsi_resources *r, json_t *cfg)
{
    const char *kernel = json_string_value(json_object_get(cfg, "kernel_image_path"));
    const char *initrd = json_string_value(json_object_get(cfg, "initrd_path"));
    const char *args = json_string_value(json_object_get(cfg, "boot_args"));
    int kfd = open(kernel, O_RDONLY | O_CLOEXEC);
    if (kfd < 0) {
        char *e = fsi_io_error(errno);
        char *m = fsi_xasprintf("The kernel file cannot be opened: %s", e);
        free(e);
        return m;
    }
    int ifd = -1;
    if (initrd && (ifd = open(initrd, O_RDONLY | O_CLOEXEC)) < 0) {
        char *e = fsi_io_error(errno);
        char *m = fsi_xasprintf(
            "The initrd file cannot be opened due to invalid path or invalid permissions. %s", e);
        free(e);
        close(kfd);
        return m;
    }
    char *bad = args ? cmdline_check(args) : NULL;
    if (bad) {
        char *m = fsi_xasprintf("The kernel command line is invalid: %s", bad);
        free(bad);
        close(kfd);
        if (ifd >= 0)
            close(ifd);
        return m;
    }
    if (kernel_fd >= 0)
        close(kernel_fd);
    if (initrd_fd >= 0)
        close(initrd_fd);
    kernel_fd = kfd; /* like BootConfig: the files stay open until the boot */
    initrd_fd = ifd;
    json_decref(r->boot_source);
    r->boot_source = json_pack("{ss so so}", "kernel_image_path", kernel, "initrd_path",
                               initrd ? json_string(initrd) : json_null(), "boot_args",
                               args ? json_string(args) : json_null());
    return NULL;
}

static json_t *pick(json_t *update, json_t *current, const char *key)
{
    json_t *v = json_object_get(update, key);
    return v && !json_is_null(v) ? v : json_object_get(current, key);
}

char *fsi_res_machine(fsi_resources *r, json_t *u, bool patch)
{
    json_t *m = r->machine;
    json_int_t vcpus = json_integer_value(pick(u, m, "vcpu_count"));
    json_int_t mem = json_integer_value(pick(u, m, "mem_size_mib"));
    bool smt, dirty;
    const char *pages;
    if (patch) {
        smt = json_is_true(pick(u, m, "smt"));
        dirty = json_is_true(pick(u, m, "track_dirty_pages"));
        pages = json_string_value(pick(u, m, "huge_pages"));
    } else { /* MachineConfigUpdate::from(MachineConfig): absent fields are defaults */
        smt = json_is_true(json_object_get(u, "smt"));
        dirty = json_is_true(json_object_get(u, "track_dirty_pages"));
        pages = json_string_value(json_object_get(u, "huge_pages"));
        if (!pages)
            pages = "None";
    }
    if (vcpus == 0 || vcpus > 32 || (smt && vcpus > 1 && vcpus % 2))
        return fsi_xstrdup("The number of vCPUs must be greater than 0, less than 32 and must "
                           "be 1 or an even number if SMT is enabled.");
    if (mem == 0 || (strcmp(pages, "None") && mem % 2))
        return fsi_xstrdup("The memory size (MiB) is either 0, or not a multiple of the "
                           "configured page size.");
    if (r->balloon && mem < json_integer_value(json_object_get(r->balloon, "amount_mib")))
        return fsi_xstrdup("The memory size (MiB) is smaller than the previously set balloon "
                           "device target size.");
    const char *tmpl = json_string_value(json_object_get(m, "cpu_template"));
    const char *utmpl = json_string_value(json_object_get(u, "cpu_template"));
    if (utmpl)
        tmpl = strcmp(utmpl, "None") ? utmpl : NULL;
    json_t *n = json_pack("{sI sI sb}", "vcpu_count", vcpus, "mem_size_mib", mem, "smt", smt);
    if (tmpl)
        json_object_set_new(n, "cpu_template", json_string(tmpl));
    json_object_set_new(n, "track_dirty_pages", json_boolean(dirty));
    json_object_set_new(n, "huge_pages", json_string(pages));
    json_decref(r->machine);
    r->machine = n;
    return NULL;
}

/* ---- MMDS ---------------------------------------------------------------------------- */

static json_t *mmds_store(fsi_resources *r)
{
    if (!r->mmds)
        r->mmds = json_null();
    return r->mmds;
}

char *fsi_res_mmds_config(fsi_resources *r, json_t *cfg)
{
    const char *ip = json_string_value(json_object_get(cfg, "ipv4_address"));
    struct in_addr a;
    if (ip) {
        inet_pton(AF_INET, ip, &a);
        unsigned char *o = (unsigned char *)&a.s_addr;
        if (!(o[0] == 169 && o[1] == 254 && o[2] != 0 && o[2] != 255))
            return fsi_xstrdup("The MMDS IPv4 address is not link local.");
    }
    json_t *ifaces = json_object_get(cfg, "network_interfaces");
    if (!json_array_size(ifaces))
        return fsi_xstrdup("The list of network interface IDs that allow forwarding MMDS "
                           "requests is empty.");
    size_t i, j;
    json_t *id, *net;
    json_array_foreach(ifaces, i, id)
    {
        bool found = false;
        json_array_foreach(r->nets, j, net)
        {
            found = found || json_equal(json_object_get(net, "iface_id"), id);
        }
        if (!found)
            return fsi_xstrdup("The list of network interface IDs provided contains at least one "
                               "ID that does not correspond to any existing network interface.");
    }
    json_array_foreach(r->nets, j, net)
    {
        bool listed = false;
        json_array_foreach(ifaces, i, id)
        {
            listed = listed || json_equal(json_object_get(net, "iface_id"), id);
        }
        if (listed)
            json_object_set_new(net, "__mmds", json_true());
        else
            json_object_del(net, "__mmds");
    }
    mmds_store(r);
    const char *ver = json_string_value(json_object_get(cfg, "version"));
    json_decref(r->mmds_config);
    r->mmds_config = json_pack("{ss ss sb}", "version", ver ? ver : "V1", "ipv4_address",
                               ip ? ip : "169.254.169.254", "imds_compat",
                               json_is_true(json_object_get(cfg, "imds_compat")));
    return NULL;
}

/* serde_json's merge patch (mmds::json_patch, RFC 7396). */
static void merge_patch(json_t **target, json_t *patch)
{
    if (!json_is_object(patch)) {
        json_decref(*target);
        *target = json_deep_copy(patch);
        return;
    }
    if (!json_is_object(*target)) {
        json_decref(*target);
        *target = json_object();
    }
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v)
    {
        if (json_is_null(v)) {
            json_object_del(*target, k);
            continue;
        }
        json_t *cur = json_incref(json_object_get(*target, k));
        if (!cur)
            cur = json_null();
        merge_patch(&cur, v);
        json_object_set_new(*target, k, cur);
    }
}

int fsi_res_mmds_store(fsi_resources *r, json_t *value, bool patch, char **msg)
{
    json_t *next;
    if (patch) {
        if (!r->mmds || json_is_null(r->mmds)) {
            *msg = fsi_xstrdup("MMDS error: The MMDS data store is not initialized.");
            return 400;
        }
        next = json_deep_copy(r->mmds);
        merge_patch(&next, value);
    } else {
        next = json_incref(value);
    }
    char *s = json_dumps(next, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n = s ? strlen(s) : 0;
    free(s);
    if (n > r->mmds_limit) {
        json_decref(next);
        *msg = fsi_xstrdup("MMDS limit exceeded error: The MMDS patch request doesn't fit.");
        return 413;
    }
    json_decref(r->mmds);
    r->mmds = next;
    return 0;
}

/* ---- GET /vm/config ------------------------------------------------------------------ */

static json_t *nets_echo(const fsi_resources *r, json_t **mmds_ifaces)
{
    json_t *out = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(r->nets, i, n)
    {
        json_t *c = json_deep_copy(n);
        if (json_object_get(c, "__mmds"))
            json_array_append(*mmds_ifaces, json_object_get(c, "iface_id"));
        json_object_del(c, "__mmds");
        json_array_append_new(out, c);
    }
    return out;
}

json_t *fsi_res_full_config(const fsi_resources *r)
{
    json_t *c = json_object();
    json_t *ifaces = json_array();
    json_t *nets = nets_echo(r, &ifaces);
    json_object_set_new(c, "balloon", r->balloon ? json_deep_copy(r->balloon) : json_null());
    json_object_set_new(c, "drives", json_deep_copy(r->drives));
    json_object_set_new(c, "boot-source",
                        r->boot_source ? json_deep_copy(r->boot_source)
                                       : json_pack("{ss sn sn}", "kernel_image_path", "",
                                                   "initrd_path", "boot_args"));
    json_object_set_new(c, "cpu-config", json_null());
    json_object_set_new(c, "logger", json_null());
    json_object_set_new(c, "machine-config", json_deep_copy(r->machine));
    json_object_set_new(c, "metrics", json_null());
    if (r->mmds && r->mmds_config && json_array_size(ifaces)) {
        json_object_set_new(
            c, "mmds-config",
            json_pack("{sO sO sO sO}", "version", json_object_get(r->mmds_config, "version"),
                      "network_interfaces", ifaces, "ipv4_address",
                      json_object_get(r->mmds_config, "ipv4_address"), "imds_compat",
                      json_object_get(r->mmds_config, "imds_compat")));
    } else {
        json_object_set_new(c, "mmds-config", json_null());
    }
    json_decref(ifaces);
    json_object_set_new(c, "network-interfaces", nets);
    json_object_set_new(c, "vsock", r->vsock ? json_deep_copy(r->vsock) : json_null());
    json_object_set_new(c, "entropy", r->entropy ? json_deep_copy(r->entropy) : json_null());
    json_object_set_new(c, "pmem", json_deep_copy(r->pmem));
    json_object_set_new(c, "memory-hotplug", r->hotplug ? json_deep_copy(r->hotplug) : json_null());
    return c;
}

/* ---- --config-file ------------------------------------------------------------------- */

static char *wrap(const char *ctx, char *inner)
{
    if (!inner)
        return NULL;
    char *m = fsi_xasprintf("%s: %s", ctx, inner);
    free(inner);
    return m;
}

static char *apply_list(fsi_resources *r, json_t *list, char *(*set)(fsi_resources *, json_t *),
                        const char *ctx)
{
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d)
    {
        char *e = wrap(ctx, set(r, d));
        if (e)
            return e;
    }
    return NULL;
}

char *fsi_res_logger(json_t *l)
{
    json_t *lvl = json_object_get(l, "level"), *sl = json_object_get(l, "show_level"),
           *so = json_object_get(l, "show_log_origin");
    int rc = fsi_log_update(json_string_value(json_object_get(l, "log_path")),
                            json_is_string(lvl) ? fsi_level_parse(json_string_value(lvl)) : -1,
                            json_is_boolean(sl) ? json_is_true(sl) : -1,
                            json_is_boolean(so) ? json_is_true(so) : -1,
                            json_string_value(json_object_get(l, "module")));
    if (!rc)
        return NULL;
    char *e = fsi_io_error(rc);
    char *m = fsi_xasprintf("Failed to open target file: %s", e);
    free(e);
    return m;
}

char *fsi_res_from_json(fsi_resources *r, json_t *cfg)
{
    json_t *v;
    char *e = NULL;
    if ((v = json_object_get(cfg, "logger")) && !json_is_null(v) &&
        (e = wrap("Logger error", fsi_res_logger(v))))
        return e;
    if ((v = json_object_get(cfg, "metrics")) && !json_is_null(v)) {
        char *m = fsi_metrics_init(json_string_value(json_object_get(v, "metrics_path")),
                                   json_is_true(json_object_get(v, "emit_id")),
                                   json_object_get(v, "properties"));
        if (m)
            return wrap("Metrics error",
                        wrap("Cannot initialize the metrics system due to bad user input", m));
    }
    if ((v = json_object_get(cfg, "machine-config")) && !json_is_null(v) &&
        (e = wrap("VM config error", fsi_res_machine(r, v, false))))
        return e;
    if ((v = json_object_get(cfg, "cpu-config")) && !json_is_null(v))
        r->custom_cpu_template = true;
    if ((e = wrap("Boot source error",
                  fsi_res_boot_source(r, json_object_get(cfg, "boot-source")))))
        return e;
    if ((e = apply_list(r, json_object_get(cfg, "drives"), fsi_res_drive, "Block device error")))
        return e;
    if ((e = apply_list(r, json_object_get(cfg, "network-interfaces"), fsi_res_net,
                        "Network device error")))
        return e;
    if ((v = json_object_get(cfg, "vsock")) && !json_is_null(v) &&
        (e = wrap("Vsock device error", fsi_res_vsock(r, v))))
        return e;
    if ((v = json_object_get(cfg, "balloon")) && !json_is_null(v) &&
        (e = wrap("Balloon device error", fsi_res_balloon(r, v))))
        return e;
    if ((v = json_object_get(cfg, "mmds-config")) && !json_is_null(v) &&
        (e = wrap("MMDS config error", fsi_res_mmds_config(r, v))))
        return e;
    if ((v = json_object_get(cfg, "entropy")) && !json_is_null(v))
        fsi_res_entropy(r, v);
    if ((e = apply_list(r, json_object_get(cfg, "pmem"), fsi_res_pmem, "Pmem device error")))
        return e;
    if ((v = json_object_get(cfg, "memory-hotplug")) && !json_is_null(v) &&
        (e = wrap("Memory hotplug config error", fsi_res_hotplug(r, v))))
        return e;
    return NULL;
}
