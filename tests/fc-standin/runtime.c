/*
 * runtime.c - RuntimeApiController (src/vmm/src/rpc_interface.rs): what the
 * API can do once the microVM runs.
 *
 *   - PATCH /vm Paused|Resumed: idempotent (pausing a paused VM is 204, as
 *     the vCPU state machine answers Paused again). While paused, the guest
 *     and the periodic metrics stand still.
 *   - SendCtrlAltDel: the i8042 path (guest.c); "I8042 error: i8042 internal
 *     buffer full." when the guest does not read the keys.
 *   - FlushMetrics: writes a metrics line (204 even when metrics were never
 *     configured, as METRICS.write() returns Ok(false)).
 *   - device PUTs are hot-plugs (PCI only), DELETEs hot-unplugs, PATCHes
 *     update a drive's backing file or the rate limiters of a drive, net or
 *     pmem device ("Device not found" when the id is unknown).
 *   - balloon: target updates, statistics only when a polling interval was
 *     configured (and never switched on or off), free page hinting only if
 *     enabled; the simulated guest inflates to the target at once.
 *   - memory hotplug: requests must be block-aligned and within the region;
 *     the guest plugs what is requested at once.
 *   - the MMDS is reachable only through a network interface that has the
 *     MMDS stack ("MMDS error: The MMDS data store is not initialized.").
 */
#include "standin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char POST_BOOT[] = "The requested operation is not supported after starting the "
                                "microVM.";
static const char NOT_FOUND[] = "Failed perform action on device: Device not found";

/* The MMDS is reachable post-boot only through a net device that has its stack. */
static bool mmds_attached(void)
{
    size_t i;
    json_t *n;
    json_array_foreach(g_vm.res.nets, i, n)
    {
        if (json_object_get(n, "__mmds"))
            return true;
    }
    return false;
}

static json_t *find_by(json_t *list, const char *key, const char *id, size_t *idx)
{
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d)
    {
        const char *v = json_string_value(json_object_get(d, key));
        if (v && id && !strcmp(v, id)) {
            if (idx)
                *idx = i;
            return d;
        }
    }
    return NULL;
}

static void hotplug(fsi_action *a, fsi_outcome *o)
{
    fsi_resources *r = &g_vm.res;
    json_t *b = a->body;
    if (!r->pci) {
        fsi_outcome_fault(o, "PCI is not enabled");
        return;
    }
    const char *key = a->kind == A_INSERT_BLOCK ? "drive_id"
                      : a->kind == A_INSERT_NET ? "iface_id"
                                                : "id";
    json_t *list = a->kind == A_INSERT_BLOCK ? r->drives
                   : a->kind == A_INSERT_NET ? r->nets
                                             : r->pmem;
    if (find_by(list, key, json_string_value(json_object_get(b, key)), NULL)) {
        fsi_outcome_fault(o, "Device ID in use");
        return;
    }
    LOGW(M_VMM, "PCI device hotplug is in development preview.");
    if (a->kind == A_INSERT_BLOCK) {
        if (json_is_true(json_object_get(b, "is_root_device"))) {
            fsi_outcome_fault(o, "Drive config error: A root block device already exists!");
            return;
        }
        char *e = fsi_block_open_check(b);
        if (!e)
            json_array_append_new(r->drives, fsi_drive_echo(b));
        fsi_outcome_result(o, "Drive config error", e);
    } else if (a->kind == A_INSERT_PMEM) {
        if (json_is_true(json_object_get(b, "root_device"))) {
            fsi_outcome_fault(o, "Pmem config error: Attempt to add pmem as a root device while "
                                 "the root device defined as a block device");
            return;
        }
        fsi_outcome_result(o, "Pmem config error", fsi_res_pmem(r, b));
    } else {
        fsi_outcome_result(o, "Network config error", fsi_res_net(r, b));
    }
}

static void unplug(fsi_action *a, fsi_outcome *o)
{
    fsi_resources *r = &g_vm.res;
    if (!r->pci) {
        fsi_outcome_fault(o, "PCI is not enabled");
        return;
    }
    bool drive = !strcmp(a->unplug_kind, "drives"), pmem = !strcmp(a->unplug_kind, "pmem");
    json_t *list = drive ? r->drives : pmem ? r->pmem : r->nets;
    size_t idx;
    json_t *d = find_by(list, drive ? "drive_id" : pmem ? "id" : "iface_id", a->unplug_id, &idx);
    if (!d) {
        fsi_outcome_fault(o, "Device not found");
        return;
    }
    if (json_is_true(json_object_get(d, drive ? "is_root_device" : "root_device"))) {
        fsi_outcome_fault(o, "Cannot unplug root device");
        return;
    }
    LOGW(M_VMM, "PCI device hot-unplug is in development preview.");
    json_array_remove(list, idx);
    fsi_outcome_data(o, NULL);
}

/* RateLimiterUpdate: a bucket given replaces (or, if inactive, disables) the old one. */
static void update_limiter(json_t *dev, const char *key, json_t *upd)
{
    if (!json_is_object(upd))
        return;
    json_t *cur = json_object_get(dev, key);
    json_t *merged = json_is_object(cur) ? json_deep_copy(cur) : json_object();
    const char *k;
    json_t *v;
    json_object_foreach(upd, k, v)
    {
        if (!json_is_null(v))
            json_object_set(merged, k, v);
    }
    json_t *echo = fsi_rate_limiter_echo(merged);
    json_decref(merged);
    json_object_set_new(dev, key, echo ? echo : json_null());
}

static void update_block(json_t *b, fsi_outcome *o)
{
    const char *id = json_string_value(json_object_get(b, "drive_id"));
    json_t *d = find_by(g_vm.res.drives, "drive_id", id, NULL);
    if (!d) {
        fsi_outcome_fault(o,
                          "Drive config error: Unable to patch the block device: %s Please "
                          "verify the request arguments.",
                          NOT_FOUND);
        return;
    }
    json_t *path = json_object_get(b, "path_on_host");
    bool vhost = json_is_string(json_object_get(d, "socket"));
    if (json_is_string(path)) {
        char *e = NULL;
        if (vhost) {
            e = fsi_xstrdup("Block: Running method expected different backend.");
        } else {
            json_t *probe = json_pack("{sO sO}", "path_on_host", path, "is_read_only",
                                      json_object_get(d, "is_read_only"));
            char *inner = fsi_block_open_check(probe);
            json_decref(probe);
            if (inner) { /* "Unable to create the virtio block device: <backend error>" */
                const char *tail = strstr(inner, "Virtio backend error");
                e = fsi_xasprintf("Block: %s", tail ? tail : inner);
                free(inner);
            }
        }
        if (e) {
            fsi_outcome_fault(o,
                              "Drive config error: Unable to patch the block device: %s Please "
                              "verify the request arguments.",
                              e);
            free(e);
            return;
        }
        json_object_set(d, "path_on_host", path);
    }
    update_limiter(d, "rate_limiter", json_object_get(b, "rate_limiter"));
    fsi_outcome_data(o, NULL);
}

static void update_net(json_t *b, fsi_outcome *o)
{
    json_t *n =
        find_by(g_vm.res.nets, "iface_id", json_string_value(json_object_get(b, "iface_id")), NULL);
    if (!n) {
        fsi_outcome_fault(o, "Network config error: Unable to update the net device: %s",
                          NOT_FOUND);
        return;
    }
    update_limiter(n, "rx_rate_limiter", json_object_get(b, "rx_rate_limiter"));
    update_limiter(n, "tx_rate_limiter", json_object_get(b, "tx_rate_limiter"));
    fsi_outcome_data(o, NULL);
}

static void update_pmem(json_t *b, fsi_outcome *o)
{
    json_t *rl = json_object_get(b, "rate_limiter");
    if (!json_is_object(rl)) { /* nothing to update: FC does not even look the device up */
        fsi_outcome_data(o, NULL);
        return;
    }
    json_t *p = find_by(g_vm.res.pmem, "id", json_string_value(json_object_get(b, "id")), NULL);
    if (!p) {
        fsi_outcome_fault(o,
                          "Pmem config error: Unable to patch the pmem device: %s Please "
                          "verify the request arguments.",
                          NOT_FOUND);
        return;
    }
    update_limiter(p, "rate_limiter", rl);
    fsi_outcome_data(o, NULL);
}

static void pause_resume(bool pause, fsi_outcome *o)
{
    int64_t t0 = fsi_now_ns();
    if (pause && g_vm.state == FSI_RUNNING) {
        fsi_guest_freeze();
        g_vm.state = FSI_PAUSED;
    } else if (!pause && g_vm.state == FSI_PAUSED) {
        g_vm.state = FSI_RUNNING;
        fsi_guest_thaw();
    }
    uint64_t us = (uint64_t)(fsi_now_ns() - t0) / 1000;
    fsi_metric_store("latencies_us", pause ? "vmm_pause_vm" : "vmm_resume_vm", us);
    LOGI(M_RPC, "'%s vm' VMM action took %llu us.", pause ? "pause" : "resume",
         (unsigned long long)us);
    fsi_outcome_data(o, NULL);
}

static void balloon_action(fsi_action *a, fsi_outcome *o)
{
    json_t *b = g_vm.res.balloon;
    bool update = a->kind != A_GET_BALLOON_CONFIG && a->kind != A_GET_BALLOON_STATS;
    const char *ctx = update ? "Balloon update error" : "Internal VMM error";
    if (!b) {
        fsi_outcome_fault(o, "%s: %s", ctx, NOT_FOUND);
        return;
    }
    json_int_t interval = json_integer_value(json_object_get(b, "stats_polling_interval_s"));
    json_int_t target = json_integer_value(json_object_get(b, "amount_mib"));
    json_int_t mem = json_integer_value(json_object_get(g_vm.res.machine, "mem_size_mib"));
    switch (a->kind) {
    case A_GET_BALLOON_CONFIG:
        fsi_outcome_data(o, json_deep_copy(b));
        return;
    case A_GET_BALLOON_STATS:
        if (!interval) {
            fsi_outcome_fault(o, "Internal VMM error: Balloon: Received stats query when stats "
                                 "are disabled.");
            return;
        }
        fsi_outcome_data(o, json_pack("{sI sI sI sI sI sI sI}", "target_pages", target * 256,
                                      "actual_pages", target * 256, "target_mib", target,
                                      "actual_mib", target, "free_memory",
                                      (mem - target) * 1048576 / 2, "total_memory", mem * 1048576,
                                      "available_memory", (mem - target) * 1048576 / 2));
        return;
    case A_UPDATE_BALLOON: {
        json_int_t want = json_integer_value(json_object_get(a->body, "amount_mib"));
        if (!g_vm.driver_ready)
            fsi_outcome_fault(o, "Balloon update error: Balloon: Device not activated yet.");
        else if (want > mem)
            fsi_outcome_fault(o,
                              "Balloon update error: Balloon: Requested memory should be "
                              "less than %lldMiB",
                              (long long)want);
        else {
            json_object_set_new(b, "amount_mib", json_integer(want));
            fsi_outcome_data(o, NULL);
        }
        return;
    }
    case A_UPDATE_BALLOON_STATS: {
        json_int_t want = json_integer_value(json_object_get(a->body, "stats_polling_interval_s"));
        if (want != interval && (!want || !interval)) {
            fsi_outcome_fault(o, "Balloon update error: Balloon: Statistics cannot be "
                                 "enabled/disabled after activation.");
            return;
        }
        json_object_set_new(b, "stats_polling_interval_s", json_integer(want));
        fsi_outcome_data(o, NULL);
        return;
    }
    default: /* free page hinting */
        if (!json_is_true(json_object_get(b, "free_page_hinting"))) {
            fsi_outcome_fault(o, "Balloon update error: Balloon: Attempting to use hinting when "
                                 "not enabled");
            return;
        }
        if (a->kind == A_GET_HINTING) {
            fsi_outcome_data(o, json_pack("{sI sI}", "host_cmd",
                                          (json_int_t)(g_vm.balloon_hinting ? 2 : 0), "guest_cmd",
                                          (json_int_t)(g_vm.balloon_hinting ? 2 : 0)));
            return;
        }
        g_vm.balloon_hinting = a->kind == A_START_HINTING;
        fsi_outcome_data(o, NULL);
        return;
    }
}

static void hotplug_memory_action(fsi_action *a, fsi_outcome *o)
{
    json_t *h = g_vm.res.hotplug;
    if (!h) {
        fsi_outcome_fault(o, "%s: %s",
                          a->kind == A_GET_MEMORY_HOTPLUG ? "Internal VMM error"
                                                          : "Memory hotplug update error",
                          NOT_FOUND);
        return;
    }
    json_int_t total = json_integer_value(json_object_get(h, "total_size_mib"));
    json_int_t block = json_integer_value(json_object_get(h, "block_size_mib"));
    if (a->kind == A_GET_MEMORY_HOTPLUG) {
        fsi_outcome_data(o, json_pack("{sI sI sI sI sI}", "total_size_mib", total, "slot_size_mib",
                                      json_integer_value(json_object_get(h, "slot_size_mib")),
                                      "block_size_mib", block, "plugged_size_mib",
                                      (json_int_t)g_vm.hotplug_plugged_mib, "requested_size_mib",
                                      (json_int_t)g_vm.hotplug_requested_mib));
        return;
    }
    json_int_t want = json_integer_value(json_object_get(a->body, "requested_size_mib"));
    if (!g_vm.driver_ready) {
        fsi_outcome_fault(o, "Memory hotplug update error: Failed to create memory hotplug "
                             "device: Device is not active");
        return;
    }
    if (want % block || want > total) {
        fsi_outcome_fault(o,
                          "Memory hotplug update error: Failed to create memory hotplug "
                          "device: Size %llu is invalid: it must be a multiple of block size "
                          "and less than the total size",
                          (unsigned long long)want << 20);
        return;
    }
    g_vm.hotplug_requested_mib = g_vm.hotplug_plugged_mib = (uint32_t)want;
    fsi_outcome_data(o, NULL);
}

static void device_action(fsi_action *a, fsi_outcome *o)
{
    switch (a->kind) {
    case A_PAUSE:
    case A_RESUME:
        pause_resume(a->kind == A_PAUSE, o);
        return;
    case A_CTRL_ALT_DEL: {
        char *e = fsi_guest_ctrl_alt_del();
        fsi_outcome_result(o, "Internal VMM error", e);
        return;
    }
    case A_GET_MEMORY_HOTPLUG:
    case A_UPDATE_MEMORY_HOTPLUG:
        hotplug_memory_action(a, o);
        return;
    default:
        balloon_action(a, o);
        return;
    }
}

void fsi_runtime_action(fsi_action *a, fsi_outcome *o)
{
    fsi_resources *r = &g_vm.res;
    switch (a->kind) {
    case A_CREATE_SNAPSHOT:
        fsi_outcome_result(o, "Create snapshot error", fsi_snapshot_create(a->body));
        return;
    case A_FLUSH_METRICS:
        if (fsi_metrics_write() < 0) {
            char *e = fsi_io_error(errno);
            fsi_outcome_fault(o, "Internal VMM error: Metrics error: Failed to write metrics: %s",
                              e);
            free(e);
        } else {
            fsi_outcome_data(o, NULL);
        }
        return;
    case A_GET_FULL_VM_CONFIG:
        fsi_outcome_data(o, fsi_res_full_config(r));
        return;
    case A_GET_MMDS:
        if (!mmds_attached() || !r->mmds)
            fsi_outcome_fault(o, "MMDS error: The MMDS data store is not initialized.");
        else
            fsi_outcome_data(o, json_is_null(r->mmds) ? json_object() : json_deep_copy(r->mmds));
        return;
    case A_PUT_MMDS:
    case A_PATCH_MMDS:
        if (!mmds_attached() || !r->mmds)
            fsi_outcome_fault(o, "MMDS error: The MMDS data store is not initialized.");
        else
            fsi_mmds_action(a->body, a->kind == A_PATCH_MMDS, o);
        return;
    case A_INSERT_BLOCK:
    case A_INSERT_PMEM:
    case A_INSERT_NET:
        hotplug(a, o);
        return;
    case A_HOT_UNPLUG:
        unplug(a, o);
        return;
    case A_UPDATE_BLOCK:
        update_block(a->body, o);
        return;
    case A_UPDATE_NET:
        update_net(a->body, o);
        return;
    case A_UPDATE_PMEM:
        update_pmem(a->body, o);
        return;
    case A_PAUSE:
    case A_RESUME:
    case A_CTRL_ALT_DEL:
    case A_GET_BALLOON_CONFIG:
    case A_GET_BALLOON_STATS:
    case A_UPDATE_BALLOON:
    case A_UPDATE_BALLOON_STATS:
    case A_START_HINTING:
    case A_STOP_HINTING:
    case A_GET_HINTING:
    case A_GET_MEMORY_HOTPLUG:
    case A_UPDATE_MEMORY_HOTPLUG:
        device_action(a, o);
        return;
    default:
        fsi_outcome_fault(o, "%s", POST_BOOT);
        return;
    }
}
