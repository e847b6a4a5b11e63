/*
 * snapshot.c - PUT /snapshot/create and /snapshot/load (src/vmm/src/persist.rs).
 *
 * Create needs a paused microVM ("Operation not allowed: save/restore
 * unavailable while running" otherwise) and no vhost-user drive; it writes
 * the state file, then the memory file. Load is accepted only on a fresh
 * process (nothing but logger and metrics configured); any failure after
 * that check is fatal, as Firecracker treats a half-restored process: the
 * error is answered, then the process exits 1.
 *
 * The stand-in's state file is its own JSON document (the VM configuration,
 * the guest's command line and serial path), not Firecracker's bitcode
 * format; a file that is not one of them fails like a file with the wrong
 * magic. The memory file is a sparse file of the guest's memory size. A
 * restored microVM starts paused (or running with resume_vm), its
 * boot-source reads empty in GET /vm/config, network_overrides and
 * vsock_override apply, and its drives and vsock are reopened.
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAGIC "standin-firecracker-snapshot"

static char *io(const char *prefix, int err)
{
    char *e = fsi_io_error(err);
    char *m = fsi_xasprintf("%s%s", prefix, e);
    free(e);
    return m;
}

char *fsi_snapshot_create(json_t *params)
{
    if (g_vm.state != FSI_PAUSED)
        return fsi_xstrdup("Cannot save the microVM state: Operation not allowed: save/restore "
                           "unavailable while running");
    size_t i;
    json_t *d;
    json_array_foreach(g_vm.res.drives, i, d)
    {
        if (json_is_string(json_object_get(d, "socket")))
            return fsi_xasprintf("Cannot save the microVM state: Operation not allowed: Devices "
                                 "without snapshot support are present: vhost-user-block(id: %s)",
                                 json_string_value(json_object_get(d, "drive_id")));
    }
    const char *spath = json_string_value(json_object_get(params, "snapshot_path"));
    const char *mpath = json_string_value(json_object_get(params, "mem_file_path"));
    json_t *state = json_pack("{ss ss so ss* ss* so}", "magic", MAGIC, "version",
                              FSI_SNAPSHOT_VERSION, "config", fsi_res_full_config(&g_vm.res),
                              "cmdline", g_vm.cmdline, "serial_out_path", g_vm.res.serial_out_path,
                              "mmds", g_vm.res.mmds ? json_deep_copy(g_vm.res.mmds) : json_null());
    int fd = open(spath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        json_decref(state);
        return io("Cannot perform open on the snapshot backing file: ", errno);
    }
    int rc = json_dumpfd(state, fd, JSON_COMPACT);
    json_decref(state);
    close(fd);
    if (rc < 0)
        return io("Cannot perform write on the snapshot backing file: ", EIO);
    fd = open(mpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return io("Cannot perform open on the memory backing file: ", errno);
    json_int_t mib = json_integer_value(json_object_get(g_vm.res.machine, "mem_size_mib"));
    rc = ftruncate(fd, (off_t)mib << 20);
    int err = errno;
    close(fd);
    if (rc < 0)
        return io("Cannot perform set_len on the memory backing file: ", err);
    fsi_metric_store("latencies_us", "vmm_full_create_snapshot", 1);
    return NULL;
}

static char *fail_file(const char *inner, bool *fatal)
{
    *fatal = true;
    return fsi_xasprintf("Failed to restore from snapshot: Failed to get snapshot state from file: "
                         "%s",
                         inner);
}

static char *load_memory(json_t *params, bool *fatal)
{
    json_t *mb = json_object_get(params, "mem_backend");
    const char *type = json_string_value(json_object_get(mb, "backend_type"));
    const char *path = mb ? json_string_value(json_object_get(mb, "backend_path"))
                          : json_string_value(json_object_get(params, "mem_file_path"));
    int fd;
    if (type && !strcmp(type, "Uffd")) {
        int err = fsi_unix_probe(path);
        if (!err)
            return NULL;
        *fatal = true;
        return io("Failed to restore from snapshot: Failed to load guest memory: Error creating "
                  "guest memory from uffd: Failed to connect to UDS Unix stream: ",
                  err);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *fatal = true;
        return io("Failed to restore from snapshot: Failed to load guest memory: Error creating "
                  "guest memory from file: Failed to load guest memory: ",
                  errno);
    }
    close(fd);
    return NULL;
}

/* Rebuild VmResources from the saved configuration, with the overrides. */
static char *restore_devices(json_t *cfg, json_t *params, bool *fatal)
{
    fsi_resources *r = &g_vm.res;
    json_t *nets = json_deep_copy(json_object_get(cfg, "network-interfaces"));
    size_t i, j;
    json_t *ov, *n;
    json_array_foreach(json_object_get(params, "network_overrides"), i, ov)
    {
        bool found = false;
        json_array_foreach(nets, j, n)
        {
            if (!json_equal(json_object_get(n, "iface_id"), json_object_get(ov, "iface_id")))
                continue;
            json_object_set(n, "host_dev_name", json_object_get(ov, "host_dev_name"));
            found = true;
        }
        if (!found) {
            json_decref(nets);
            return fail_file("Unknown Network Device.", fatal);
        }
    }
    json_t *vs = json_object_get(cfg, "vsock");
    json_t *vo = json_object_get(params, "vsock_override");
    if (json_is_object(vo) && !json_is_object(vs)) {
        json_decref(nets);
        return fail_file("Unknown Vsock Device.", fatal);
    }
    char *e = fsi_res_machine(r, json_object_get(cfg, "machine-config"), false);
    json_array_foreach(json_object_get(cfg, "drives"), i, n)
    {
        if (!e)
            e = fsi_res_drive(r, n);
    }
    json_array_foreach(nets, i, n)
    {
        if (!e)
            e = fsi_res_net(r, n);
    }
    json_decref(nets);
    if (!e && json_is_object(vs)) {
        json_t *v = json_deep_copy(vs);
        if (json_is_object(vo))
            json_object_set(v, "uds_path", json_object_get(vo, "uds_path"));
        e = fsi_res_vsock(r, v);
        json_decref(v);
    }
    if (!e && json_is_object(json_object_get(cfg, "balloon")))
        e = fsi_res_balloon(r, json_object_get(cfg, "balloon"));
    if (!e && json_is_object(json_object_get(cfg, "entropy")))
        e = fsi_res_entropy(r, json_object_get(cfg, "entropy"));
    json_array_foreach(json_object_get(cfg, "pmem"), i, n)
    {
        if (!e)
            e = fsi_res_pmem(r, n);
    }
    if (!e && json_is_object(json_object_get(cfg, "memory-hotplug")))
        e = fsi_res_hotplug(r, json_object_get(cfg, "memory-hotplug"));
    if (!e && json_is_object(json_object_get(cfg, "mmds-config")))
        e = fsi_res_mmds_config(r, json_object_get(cfg, "mmds-config"));
    if (!e)
        return NULL;
    *fatal = true;
    char *m = fsi_xasprintf("Failed to restore from snapshot: Failed to build microVM from "
                            "snapshot: Failed to restore devices: %s",
                            e);
    free(e);
    return m;
}

char *fsi_snapshot_load(json_t *params, bool *fatal)
{
    const char *spath = json_string_value(json_object_get(params, "snapshot_path"));
    json_error_t jerr;
    int fd = open(spath, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        char *e = fsi_io_error(errno);
        char *m = fsi_xasprintf("Failed to open snapshot file: %s", e);
        free(e);
        char *r = fail_file(m, fatal);
        free(m);
        return r;
    }
    json_t *state = json_loadfd(fd, 0, &jerr);
    unsigned char head[8] = {0};
    ssize_t got = pread(fd, head, sizeof(head), 0);
    close(fd);
    const char *magic = json_string_value(json_object_get(state, "magic"));
    if (!magic || strcmp(magic, MAGIC)) {
        unsigned long long v = 0;
        for (ssize_t i = got > 0 ? got - 1 : -1; i >= 0; i--)
            v = v << 8 | head[i];
        json_decref(state);
        char *m = fsi_xasprintf("Failed to load snapshot state from file: Magic value does not "
                                "match arch: %llu",
                                v);
        char *r = fail_file(m, fatal);
        free(m);
        return r;
    }
    char *e = load_memory(params, fatal);
    if (!e)
        e = restore_devices(json_object_get(state, "config"), params, fatal);
    if (!e) {
        const char *serial = json_string_value(json_object_get(state, "serial_out_path"));
        if (serial) {
            free(g_vm.res.serial_out_path);
            g_vm.res.serial_out_path = fsi_xstrdup(serial);
            g_vm.serial_fd = open(serial, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
        }
        json_t *mmds = json_object_get(state, "mmds");
        if (mmds && !json_is_null(mmds)) {
            json_decref(g_vm.res.mmds);
            g_vm.res.mmds = json_deep_copy(mmds);
        }
        fsi_guest_restored(json_is_true(json_object_get(params, "resume_vm")));
        const char *cmdline = json_string_value(json_object_get(state, "cmdline"));
        g_vm.cmdline = cmdline ? fsi_xstrdup(cmdline) : NULL;
        fsi_metric_store("latencies_us", "vmm_load_snapshot", 1);
    }
    json_decref(state);
    return e;
}
