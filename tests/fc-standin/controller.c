/*
 * controller.c - PrebootApiController and RuntimeApiController
 * (src/vmm/src/rpc_interface.rs): which VMM action is allowed in which
 * phase, and the VmmActionError context each failure carries.
 *
 * Pre-boot, configuration calls build VmResources; anything that needs a
 * running microVM answers "The requested operation is not supported before
 * starting the microVM." After a successful InstanceStart (or snapshot
 * load) the runtime controller takes over for good: configuration calls
 * answer "... not supported after starting the microVM." (a second
 * InstanceStart included), and post-boot device PUTs are hot-plugs that need
 * --enable-pci ("PCI is not enabled").
 *
 * The stand-in's fault directives act here, on the VMM thread, before the
 * action runs: api_delay_ms / delay_on (late answers), crash_on / hang_on
 * (fsi_fault_point) and fail_on (400 with the action's context and
 * "standin: injected failure (fail_on)", nothing changed).
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char PRE_BOOT[] = "The requested operation is not supported before starting the "
                               "microVM.";

void fsi_outcome_fault(fsi_outcome *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = fsi_xvasprintf(fmt, ap);
    va_end(ap);
    o->status = 400;
    o->fault = m;
}

void fsi_outcome_data(fsi_outcome *o, json_t *data)
{
    o->status = data ? 200 : 204;
    o->data = data;
}

/* Context + inner message (inner NULL: success, 204). */
void fsi_outcome_result(fsi_outcome *o, const char *ctx, char *inner)
{
    if (inner)
        fsi_outcome_fault(o, "%s: %s", ctx, inner);
    else
        fsi_outcome_data(o, NULL);
    free(inner);
}

json_t *fsi_instance_info(void)
{
    const char *state = g_vm.state == FSI_NOT_STARTED ? "Not started"
                        : g_vm.state == FSI_PAUSED    ? "Paused"
                                                      : "Running";
    return json_pack("{ss ss ss ss}", "id", g_opts.id, "state", state, "vmm_version", FSI_VERSION,
                     "app_name", "Firecracker");
}

static void configure_metrics(json_t *m, fsi_outcome *o)
{
    char *e = fsi_metrics_init(json_string_value(json_object_get(m, "metrics_path")),
                               json_is_true(json_object_get(m, "emit_id")),
                               json_object_get(m, "properties"));
    if (e)
        fsi_outcome_fault(o,
                          "Metrics error: Cannot initialize the metrics system due to bad user "
                          "input: %s",
                          e);
    else
        fsi_outcome_data(o, NULL);
    free(e);
}

void fsi_mmds_action(json_t *body, bool patch, fsi_outcome *o)
{
    char *msg = NULL;
    int rc = fsi_res_mmds_store(&g_vm.res, body, patch, &msg);
    if (!rc) {
        fsi_outcome_data(o, NULL);
        return;
    }
    o->status = rc;
    o->fault = msg;
}

char *fsi_start_microvm(void)
{
    fsi_resources *r = &g_vm.res;
    if (!r->boot_source)
        return fsi_xstrdup("Cannot start microvm without kernel configuration.");
    g_vm.boot_attempts++;
    if (g_vm.f.no_kvm)
        return fsi_xstrdup("Kvm error: Error creating KVM object: No such file or directory (os "
                           "error 2) Make sure the user launching the firecracker process is "
                           "configured on the /dev/kvm file's ACL.");
    int serial_fd = -1;
    if (r->serial_out_path) {
        serial_fd = open(r->serial_out_path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
        if (serial_fd < 0) {
            char *e = fsi_io_error(errno);
            char *m = fsi_xasprintf("Failed to create device manager: Error with EventFd: %s", e);
            free(e);
            return m;
        }
    }
    size_t i;
    json_t *p;
    json_array_foreach(r->pmem, i, p)
    {
        const char *path = json_string_value(json_object_get(p, "path_on_host"));
        int fd = open(path, json_is_true(json_object_get(p, "read_only")) ? O_RDONLY : O_RDWR);
        struct stat st;
        char *m = NULL;
        if (fd < 0) {
            char *e = fsi_io_error(errno);
            m = fsi_xasprintf("Cannot create pmem device: Error accessing backing file: %s", e);
            free(e);
        } else if (fstat(fd, &st) == 0 && st.st_size == 0) {
            m = fsi_xstrdup("Cannot create pmem device: Error backing file size is 0");
        }
        if (fd >= 0)
            close(fd);
        if (m) {
            if (serial_fd >= 0)
                close(serial_fd);
            return m;
        }
    }
    if (g_vm.f.fail_boot &&
        (g_vm.f.fail_boot_times < 0 || g_vm.boot_attempts <= g_vm.f.fail_boot_times)) {
        if (serial_fd >= 0)
            close(serial_fd);
        return fsi_xstrdup("Internal error while starting microVM: standin: injected failure "
                           "(fail_boot)");
    }
    fsi_sleep_ms(g_vm.f.boot_delay_ms);
    if (serial_fd < 0) { /* set_stdout_nonblocking(): a stuck reader loses output, not the VMM */
        int fl = fcntl(STDOUT_FILENO, F_GETFL);
        if (fl >= 0)
            fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK);
    }
    g_vm.serial_fd = serial_fd;
    fsi_guest_boot();
    return NULL;
}

static void preboot(fsi_action *a, fsi_outcome *o)
{
    fsi_resources *r = &g_vm.res;
    json_t *b = a->body;
    switch (a->kind) {
    case A_CONFIGURE_BOOT_SOURCE: {
        r->boot_path = true;
        char *e = fsi_res_boot_source(r, b);
        if (!e) { /* the directives of the new boot_args replace the old ones */
            g_vm.f = g_start_faults;
            const char *args = json_string_value(json_object_get(b, "boot_args"));
            fsi_faults_from_cmdline(&g_vm.f, args ? args : "");
        }
        fsi_outcome_result(o, "Boot source error", e);
        return;
    }
    case A_CONFIGURE_LOGGER:
        fsi_outcome_result(o, "Logger error", fsi_res_logger(b));
        return;
    case A_CONFIGURE_METRICS:
        configure_metrics(b, o);
        return;
    case A_CONFIGURE_SERIAL: {
        const char *path = json_string_value(json_object_get(b, "serial_out_path"));
        free(r->serial_out_path);
        r->serial_out_path = path ? fsi_xstrdup(path) : NULL;
        fsi_outcome_data(o, NULL);
        return;
    }
    case A_GET_BALLOON_CONFIG:
        if (r->balloon)
            fsi_outcome_data(o, json_deep_copy(r->balloon));
        else
            fsi_outcome_fault(o, "Balloon config error: No balloon device found.");
        return;
    case A_GET_FULL_VM_CONFIG:
        LOGW(M_RPC, "If the VM was restored from snapshot, boot-source, machine-config.smt, and "
                    "machine-config.cpu_template will all be empty.");
        fsi_outcome_data(o, fsi_res_full_config(r));
        return;
    case A_GET_MMDS:
        if (!r->mmds)
            r->mmds = json_null();
        fsi_outcome_data(o, json_is_null(r->mmds) ? json_object() : json_deep_copy(r->mmds));
        return;
    case A_INSERT_BLOCK:
        r->boot_path = true;
        fsi_outcome_result(o, "Drive config error", fsi_res_drive(r, b));
        return;
    case A_INSERT_PMEM:
        r->boot_path = true;
        fsi_outcome_result(o, "Pmem config error", fsi_res_pmem(r, b));
        return;
    case A_INSERT_NET:
        r->boot_path = true;
        fsi_outcome_result(o, "Network config error", fsi_res_net(r, b));
        return;
    case A_LOAD_SNAPSHOT:
        if (r->boot_path) {
            LOGI(M_RPC, "Loading a microVM snapshot not allowed after configuring boot-specific "
                        "resources.");
            fsi_outcome_fault(o, "Load snapshot error: Loading a microVM snapshot not allowed "
                                 "after configuring boot-specific resources.");
            return;
        }
        fsi_outcome_result(o, "Load snapshot error", fsi_snapshot_load(b, &g_vm.fatal));
        return;
    case A_PATCH_MMDS:
    case A_PUT_MMDS:
        fsi_mmds_action(b, a->kind == A_PATCH_MMDS, o);
        return;
    case A_PUT_CPU_CONFIG:
        r->custom_cpu_template = true;
        fsi_outcome_data(o, NULL);
        return;
    case A_SET_BALLOON:
        r->boot_path = true;
        fsi_outcome_result(o, "Balloon config error", fsi_res_balloon(r, b));
        return;
    case A_SET_VSOCK:
        r->boot_path = true;
        fsi_outcome_result(o, "Vsock config error", fsi_res_vsock(r, b));
        return;
    case A_SET_MMDS_CONFIG:
        r->boot_path = true;
        fsi_outcome_result(o, "MMMDS config error", fsi_res_mmds_config(r, b)); /* sic, as in FC */
        return;
    case A_START:
        fsi_outcome_result(o, "Start microvm error", fsi_start_microvm());
        return;
    case A_UPDATE_MACHINE_CONFIG:
        r->boot_path = true;
        fsi_outcome_result(o, "Machine config error", fsi_res_machine(r, b, a->patch));
        return;
    case A_SET_ENTROPY:
        r->boot_path = true;
        fsi_outcome_result(o, "Entropy config error", fsi_res_entropy(r, b));
        return;
    case A_SET_MEMORY_HOTPLUG:
        r->boot_path = true;
        fsi_outcome_result(o, "Memory hotplug config error", fsi_res_hotplug(r, b));
        return;
    default:
        fsi_outcome_fault(o, "%s", PRE_BOOT);
        return;
    }
}

void fsi_handle_action(fsi_action *a, fsi_outcome *o)
{
    const char *const *names = fsi_action_names(a->kind);
    fsi_sleep_ms(g_vm.f.api_delay_ms + fsi_list_delay(g_vm.f.delay_on, names));
    fsi_fault_point(&g_vm.f, names);
    if (fsi_list_has(g_vm.f.fail_on, names)) {
        fsi_outcome_fault(o, "%s: standin: injected failure (fail_on)",
                          fsi_action_context(a->kind));
        return;
    }
    /* What both controllers answer alike. */
    if (a->kind == A_GET_MACHINE_CONFIG)
        fsi_outcome_data(o, json_deep_copy(g_vm.res.machine));
    else if (a->kind == A_GET_INSTANCE_INFO)
        fsi_outcome_data(o, fsi_instance_info());
    else if (a->kind == A_GET_VERSION)
        fsi_outcome_data(o, json_pack("{ss}", "firecracker_version", FSI_VERSION));
    else if (g_vm.state == FSI_NOT_STARTED)
        preboot(a, o);
    else
        fsi_runtime_action(a, o);
}

/* ---- names for the fault directives, and Firecracker's error context ------------------ */

#define N(...) ((const char *const[]){__VA_ARGS__, NULL})

static const struct {
    const char *const *names; /* first: the resource or action_type; then aliases */
    const char *context;      /* the VmmActionError variant's prefix */
} acts[A_COUNT] = {
    [A_CONFIGURE_BOOT_SOURCE] = {N("boot-source", "putGuestBootSource"), "Boot source error"},
    [A_CONFIGURE_LOGGER] = {N("logger", "putLogger"), "Logger error"},
    [A_CONFIGURE_METRICS] = {N("metrics", "putMetrics"), "Metrics error"},
    [A_CONFIGURE_SERIAL] = {N("serial", "putSerialDevice"), "Internal VMM error"},
    [A_CREATE_SNAPSHOT] = {N("snapshot-create", "createSnapshot"), "Create snapshot error"},
    [A_GET_BALLOON_CONFIG] = {N("get-balloon", "describeBalloonConfig"), "Balloon config error"},
    [A_GET_BALLOON_STATS] = {N("balloon-statistics", "describeBalloonStats"), "Internal VMM error"},
    [A_GET_FULL_VM_CONFIG] = {N("vm-config", "getExportVmConfig"), "Internal VMM error"},
    [A_GET_MMDS] = {N("get-mmds", "getMmds"), "MMDS error"},
    [A_GET_MACHINE_CONFIG] = {N("get-machine-config", "getMachineConfiguration"),
                              "Internal VMM error"},
    [A_GET_INSTANCE_INFO] = {N("info", "vm.info", "describeInstance"), "Internal VMM error"},
    [A_GET_VERSION] = {N("version", "ping", "vmm.ping", "getFirecrackerVersion"),
                       "Internal VMM error"},
    [A_FLUSH_METRICS] = {N("FlushMetrics"), "Internal VMM error"},
    [A_INSERT_BLOCK] = {N("drives", "putGuestDriveByID"), "Drive config error"},
    [A_INSERT_PMEM] = {N("pmem", "putGuestPmemByID"), "Pmem config error"},
    [A_UPDATE_PMEM] = {N("patch-pmem", "patchGuestPmemByID"), "Pmem config error"},
    [A_INSERT_NET] = {N("network-interfaces", "putGuestNetworkInterfaceByID"),
                      "Network config error"},
    [A_LOAD_SNAPSHOT] = {N("snapshot-load", "loadSnapshot"), "Load snapshot error"},
    [A_PATCH_MMDS] = {N("patch-mmds", "patchMmds"), "MMDS error"},
    [A_PAUSE] = {N("pause", "vm.pause"), "Internal VMM error"},
    [A_PUT_MMDS] = {N("mmds", "putMmds"), "MMDS error"},
    [A_PUT_CPU_CONFIG] = {N("cpu-config", "putCpuConfiguration"), "Configure CPU error"},
    [A_RESUME] = {N("resume", "vm.resume"), "Internal VMM error"},
    [A_SET_BALLOON] = {N("balloon", "putBalloon"), "Balloon config error"},
    [A_SET_MMDS_CONFIG] = {N("mmds-config", "putMmdsConfig"), "MMMDS config error"},
    [A_SET_VSOCK] = {N("vsock", "putGuestVsock"), "Vsock config error"},
    [A_SET_ENTROPY] = {N("entropy", "putEntropyDevice"), "Entropy config error"},
    [A_GET_MEMORY_HOTPLUG] = {N("get-hotplug-memory", "getMemoryHotplug"), "Internal VMM error"},
    [A_SET_MEMORY_HOTPLUG] = {N("hotplug-memory", "putMemoryHotplug"),
                              "Memory hotplug config error"},
    [A_UPDATE_MEMORY_HOTPLUG] = {N("patch-hotplug-memory", "patchMemoryHotplug"),
                                 "Memory hotplug update error"},
    [A_START] = {N("InstanceStart", "boot", "vm.boot"), "Start microvm error"},
    [A_CTRL_ALT_DEL] = {N("SendCtrlAltDel", "power-button", "vm.power-button"),
                        "Internal VMM error"},
    [A_UPDATE_BALLOON] = {N("patch-balloon", "patchBalloon"), "Balloon update error"},
    [A_UPDATE_BALLOON_STATS] = {N("patch-balloon-statistics", "patchBalloonStatsInterval"),
                                "Balloon update error"},
    [A_START_HINTING] = {N("hinting-start", "startBalloonHinting"), "Balloon update error"},
    [A_GET_HINTING] = {N("hinting-status", "describeBalloonHinting"), "Balloon update error"},
    [A_STOP_HINTING] = {N("hinting-stop", "stopBalloonHinting"), "Balloon update error"},
    [A_UPDATE_BLOCK] = {N("patch-drives", "patchGuestDriveByID"), "Drive config error"},
    [A_UPDATE_NET] = {N("patch-network-interfaces", "patchGuestNetworkInterfaceByID"),
                      "Network config error"},
    [A_UPDATE_MACHINE_CONFIG] = {N("machine-config", "putMachineConfiguration",
                                   "patchMachineConfiguration"),
                                 "Machine config error"},
    [A_HOT_UNPLUG] = {N("unplug"), "Internal VMM error"},
};

const char *const *fsi_action_names(fsi_act kind)
{
    return acts[kind].names;
}

const char *fsi_action_context(fsi_act kind)
{
    return acts[kind].context;
}
