/*
 * config.c - CH's VmConfig as serde sees it: type checks on the way in and
 * the defaults-filled echo that vm.info returns.
 *
 * CH deserialises request bodies with serde: wrong types and missing required
 * fields are 400 "Failed to deserialize JSON", unknown keys are silently
 * ignored (so they vanish from vm.info), absent fields take their serde
 * defaults and `None` fields are not serialised back. The tables below follow
 * vmm/src/vm_config.rs at the modelled version (field order included, since
 * serde keeps declaration order). Nested objects CH has but the stand-in does
 * not model (rate limiters, NUMA, platform, ...) are only checked to be
 * objects/arrays and echoed as given.
 */
#include "standin.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ftype {
    F_BOOL,
    F_U8,
    F_U16,
    F_U32,
    F_U64,
    F_USIZE,
    F_I32,
    F_STR,
    F_IP,
    F_MAC,
    F_ENUM,
    F_OBJ,
    F_ARR_OBJ,
    F_ARR_I32,
    F_ANY_OBJ,
    F_ANY_ARR,
    F_ANY
};

typedef struct field field;
typedef struct schema {
    const char *name; /* serde's "struct X" */
    const field *fields;
} schema;

struct field {
    const char *key;
    enum ftype type;
    bool required;
    const schema *sub;      /* F_OBJ, F_ARR_OBJ */
    const char *const *enm; /* F_ENUM, NULL-terminated */
    const char *def;        /* JSON text of the serde default, NULL = skip when absent */
    bool skip_false;        /* serialize_if = "not false" (PciDeviceCommonConfig.iommu) */
};

#define END                                                                                        \
    {                                                                                              \
        NULL, 0, false, NULL, NULL, NULL, false                                                    \
    }
/* PciDeviceCommonConfig, flattened at the start of most device configs. */
#define PCI_COMMON                                                                                 \
    {"id", F_STR, false, NULL, NULL, NULL, false},                                                 \
        {"iommu", F_BOOL, false, NULL, NULL, "false", true},                                       \
        {"pci_segment", F_U16, false, NULL, NULL, "0", false},                                     \
    {                                                                                              \
        "pci_device_id", F_U8, false, NULL, NULL, NULL, false                                      \
    }

static const char *const console_modes[] = {"Off", "Pty", "Tty", "File", "Socket", "Null", NULL};
static const char *const image_types[] = {"FixedVhd", "Qcow2", "Raw", "Vhdx", "Unknown", NULL};
static const char *const lock_gran[] = {"ByteRange", "Full", NULL};
static const char *const hotplug_methods[] = {"Acpi", "VirtioMem", NULL};
static const char *const vhost_modes[] = {"Client", "Server", NULL};
static const char *const core_sched[] = {"Vm", "Vcpu", "Off", NULL};

static const field topology_f[] = {{"threads_per_core", F_U16, true, NULL, NULL, NULL, false},
                                   {"cores_per_die", F_U16, true, NULL, NULL, NULL, false},
                                   {"dies_per_package", F_U16, true, NULL, NULL, NULL, false},
                                   {"packages", F_U16, true, NULL, NULL, NULL, false},
                                   END};
static const schema topology_s = {"CpuTopology", topology_f};
static const field features_f[] = {{"amx", F_BOOL, false, NULL, NULL, "false", false}, END};
static const schema features_s = {"CpuFeatures", features_f};

static const field cpus_f[] = {
    {"boot_vcpus", F_U32, true, NULL, NULL, NULL, false},
    {"max_vcpus", F_U32, true, NULL, NULL, NULL, false},
    {"topology", F_OBJ, false, &topology_s, NULL, NULL, false},
    {"kvm_hyperv", F_BOOL, false, NULL, NULL, "false", false},
    {"max_phys_bits", F_U8, false, NULL, NULL, "46", false},
    {"affinity", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"features", F_OBJ, false, &features_s, NULL, "{\"amx\":false}", false},
    {"nested", F_BOOL, false, NULL, NULL, "true", false},
    {"core_scheduling", F_ENUM, false, NULL, core_sched, "\"Vm\"", false},
    {"profile", F_ANY, false, NULL, NULL, "\"Host\"", false},
    END};
static const schema cpus_s = {"CpusConfig", cpus_f};

static const field memory_f[] = {
    {"size", F_U64, true, NULL, NULL, NULL, false},
    {"mergeable", F_BOOL, false, NULL, NULL, "false", false},
    {"hotplug_method", F_ENUM, false, NULL, hotplug_methods, "\"Acpi\"", false},
    {"hotplug_size", F_U64, false, NULL, NULL, NULL, false},
    {"hotplugged_size", F_U64, false, NULL, NULL, NULL, false},
    {"shared", F_BOOL, false, NULL, NULL, "false", false},
    {"hugepages", F_BOOL, false, NULL, NULL, "false", false},
    {"hugepage_size", F_U64, false, NULL, NULL, NULL, false},
    {"prefault", F_BOOL, false, NULL, NULL, "false", false},
    {"reserve", F_BOOL, false, NULL, NULL, "false", false},
    {"zones", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"thp", F_BOOL, false, NULL, NULL, "true", false},
    END};
static const schema memory_s = {"MemoryConfig", memory_f};

static const field payload_f[] = {{"firmware", F_STR, false, NULL, NULL, NULL, false},
                                  {"kernel", F_STR, false, NULL, NULL, NULL, false},
                                  {"cmdline", F_STR, false, NULL, NULL, NULL, false},
                                  {"initramfs", F_STR, false, NULL, NULL, NULL, false},
                                  END}; /* igvm, host_data: not in a default build */
static const schema payload_s = {"PayloadConfig", payload_f};

static const field disk_f[] = {
    PCI_COMMON,
    {"path", F_STR, false, NULL, NULL, NULL, false},
    {"readonly", F_BOOL, false, NULL, NULL, "false", false},
    {"direct", F_BOOL, false, NULL, NULL, "false", false},
    {"num_queues", F_USIZE, false, NULL, NULL, "1", false},
    {"queue_size", F_U16, false, NULL, NULL, "128", false},
    {"vhost_user", F_BOOL, false, NULL, NULL, "false", false},
    {"vhost_socket", F_STR, false, NULL, NULL, NULL, false},
    {"rate_limit_group", F_STR, false, NULL, NULL, NULL, false},
    {"rate_limiter_config", F_ANY_OBJ, false, NULL, NULL, NULL, false},
    {"disable_io_uring", F_BOOL, false, NULL, NULL, "false", false},
    {"disable_aio", F_BOOL, false, NULL, NULL, "false", false},
    {"serial", F_STR, false, NULL, NULL, NULL, false},
    {"queue_affinity", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"backing_files", F_BOOL, false, NULL, NULL, "false", false},
    {"sparse", F_BOOL, false, NULL, NULL, "true", false},
    {"image_type", F_ENUM, false, NULL, image_types, "\"Unknown\"", false},
    {"lock_granularity", F_ENUM, false, NULL, lock_gran, "\"ByteRange\"", false},
    END};
static const schema disk_s = {"DiskConfig", disk_f};

static const field net_f[] = {PCI_COMMON,
                              {"tap", F_STR, false, NULL, NULL, NULL, false},
                              {"ip", F_IP, false, NULL, NULL, NULL, false},
                              {"mask", F_IP, false, NULL, NULL, NULL, false},
                              {"mac", F_MAC, false, NULL, NULL, NULL, false},
                              {"host_mac", F_MAC, false, NULL, NULL, NULL, false},
                              {"mtu", F_U16, false, NULL, NULL, NULL, false},
                              {"num_queues", F_USIZE, false, NULL, NULL, "2", false},
                              {"queue_size", F_U16, false, NULL, NULL, "256", false},
                              {"vhost_user", F_BOOL, false, NULL, NULL, "false", false},
                              {"vhost_socket", F_STR, false, NULL, NULL, NULL, false},
                              {"vhost_mode", F_ENUM, false, NULL, vhost_modes, "\"Client\"", false},
                              {"fds", F_ARR_I32, false, NULL, NULL, NULL, false},
                              {"rate_limiter_config", F_ANY_OBJ, false, NULL, NULL, NULL, false},
                              {"offload_tso", F_BOOL, false, NULL, NULL, "true", false},
                              {"offload_ufo", F_BOOL, false, NULL, NULL, "true", false},
                              {"offload_csum", F_BOOL, false, NULL, NULL, "true", false},
                              END};
static const schema net_s = {"NetConfig", net_f};

static const field rng_f[] = {PCI_COMMON, {"src", F_STR, true, NULL, NULL, NULL, false}, END};
static const schema rng_s = {"RngConfig", rng_f};

static const field balloon_f[] = {
    PCI_COMMON,
    {"size", F_U64, true, NULL, NULL, NULL, false},
    {"deflate_on_oom", F_BOOL, false, NULL, NULL, "false", false},
    {"free_page_reporting", F_BOOL, false, NULL, NULL, "false", false},
    END};
static const schema balloon_s = {"BalloonConfig", balloon_f};

static const field fs_f[] = {PCI_COMMON,
                             {"tag", F_STR, true, NULL, NULL, NULL, false},
                             {"socket", F_STR, true, NULL, NULL, NULL, false},
                             {"num_queues", F_USIZE, false, NULL, NULL, "1", false},
                             {"queue_size", F_U16, false, NULL, NULL, "1024", false},
                             END};
static const schema fs_s = {"FsConfig", fs_f};

static const field pmem_f[] = {PCI_COMMON,
                               {"file", F_STR, true, NULL, NULL, NULL, false},
                               {"size", F_U64, false, NULL, NULL, NULL, false},
                               {"discard_writes", F_BOOL, false, NULL, NULL, "false", false},
                               END};
static const schema pmem_s = {"PmemConfig", pmem_f};

static const field serial_f[] = {{"file", F_STR, false, NULL, NULL, NULL, false},
                                 {"mode", F_ENUM, true, NULL, console_modes, NULL, false},
                                 {"socket", F_STR, false, NULL, NULL, NULL, false},
                                 END};
static const schema serial_s = {"SerialConfig", serial_f};

static const field console_f[] = {{"file", F_STR, false, NULL, NULL, NULL, false},
                                  {"mode", F_ENUM, true, NULL, console_modes, NULL, false},
                                  {"socket", F_STR, false, NULL, NULL, NULL, false},
                                  PCI_COMMON,
                                  END};
static const schema console_s = {"ConsoleConfig", console_f};

static const field debugcon_f[] = {{"file", F_STR, false, NULL, NULL, NULL, false},
                                   {"mode", F_ENUM, true, NULL, console_modes, NULL, false},
                                   {"iobase", F_U16, false, NULL, NULL, NULL, false},
                                   END};
static const schema debugcon_s = {"DebugConsoleConfig", debugcon_f};

static const field device_f[] = {PCI_COMMON, {"path", F_STR, false, NULL, NULL, NULL, false}, END};
static const schema device_s = {"DeviceConfig", device_f};

static const field vsock_f[] = {{"cid", F_U32, true, NULL, NULL, NULL, false},
                                {"socket", F_STR, true, NULL, NULL, NULL, false},
                                PCI_COMMON,
                                END};
static const schema vsock_s = {"VsockConfig", vsock_f};

static const field vdpa_f[] = {PCI_COMMON,
                               {"path", F_STR, true, NULL, NULL, NULL, false},
                               {"num_queues", F_USIZE, false, NULL, NULL, "1", false},
                               END};
static const schema vdpa_s = {"VdpaConfig", vdpa_f};

static const field platform_f[] = {
    {"num_pci_segments", F_U16, false, NULL, NULL, "1", false},
    {"iommu_segments", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"iommu_address_width_bits", F_U8, false, NULL, NULL, "64", false},
    {"system_serial_number", F_STR, false, NULL, NULL, NULL, false},
    {"system_uuid", F_STR, false, NULL, NULL, NULL, false},
    {"oem_strings", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"system_manufacturer", F_STR, false, NULL, NULL, NULL, false},
    {"system_product_name", F_STR, false, NULL, NULL, NULL, false},
    {"system_version", F_STR, false, NULL, NULL, NULL, false},
    {"system_family", F_STR, false, NULL, NULL, NULL, false},
    {"system_sku_number", F_STR, false, NULL, NULL, NULL, false},
    {"chassis_asset_tag", F_STR, false, NULL, NULL, NULL, false},
    {"iommufd", F_BOOL, false, NULL, NULL, "false", false},
    {"vfio_p2p_dma", F_BOOL, false, NULL, NULL, "true", false},
    END};
static const schema platform_s = {"PlatformConfig", platform_f};

static const field vm_f[] = {
    {"cpus", F_OBJ, false, &cpus_s, NULL, "{}", false},
    {"memory", F_OBJ, false, &memory_s, NULL, "{}", false},
    {"payload", F_OBJ, false, &payload_s, NULL, NULL, false},
    {"rate_limit_groups", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"disks", F_ARR_OBJ, false, &disk_s, NULL, NULL, false},
    {"net", F_ARR_OBJ, false, &net_s, NULL, NULL, false},
    {"rng", F_OBJ, false, &rng_s, NULL, "{\"src\":\"/dev/urandom\"}", false},
    {"balloon", F_OBJ, false, &balloon_s, NULL, NULL, false},
    {"generic_vhost_user", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"fs", F_ARR_OBJ, false, &fs_s, NULL, NULL, false},
    {"pmem", F_ARR_OBJ, false, &pmem_s, NULL, NULL, false},
    {"serial", F_OBJ, false, &serial_s, NULL, "{\"mode\":\"Null\"}", false},
    {"console", F_OBJ, false, &console_s, NULL, "{\"mode\":\"Tty\"}", false},
    {"debug_console", F_OBJ, false, &debugcon_s, NULL, "{\"mode\":\"Off\",\"iobase\":233}", false},
    {"devices", F_ARR_OBJ, false, &device_s, NULL, NULL, false},
    {"user_devices", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"vdpa", F_ARR_OBJ, false, &vdpa_s, NULL, NULL, false},
    {"vsock", F_OBJ, false, &vsock_s, NULL, NULL, false},
    {"pvpanic", F_BOOL, false, NULL, NULL, "false", false},
    {"iommu", F_BOOL, false, NULL, NULL, "false", false},
    {"numa", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"watchdog", F_BOOL, false, NULL, NULL, "false", false},
    {"rtc", F_ANY_OBJ, false, NULL, NULL, NULL, false},
    {"pci_segments", F_ANY_ARR, false, NULL, NULL, NULL, false},
    {"platform", F_OBJ, false, &platform_s, NULL, NULL, false},
    {"tpm", F_ANY_OBJ, false, NULL, NULL, NULL, false},
    {"landlock_enable", F_BOOL, false, NULL, NULL, "false", false},
    {"landlock_rules", F_ANY_ARR, false, NULL, NULL, NULL, false},
    END};
static const schema vm_s = {"VmConfig", vm_f};

/* Small request bodies. */
static const field resize_f[] = {{"desired_vcpus", F_U32, false, NULL, NULL, NULL, false},
                                 {"desired_ram", F_U64, false, NULL, NULL, NULL, false},
                                 {"desired_balloon", F_U64, false, NULL, NULL, NULL, false},
                                 END};
static const field remove_f[] = {{"id", F_STR, true, NULL, NULL, NULL, false}, END};
static const field resize_disk_f[] = {{"id", F_STR, true, NULL, NULL, NULL, false},
                                      {"desired_size", F_U64, true, NULL, NULL, NULL, false},
                                      END};
static const field resize_zone_f[] = {{"id", F_STR, true, NULL, NULL, NULL, false},
                                      {"desired_ram", F_U64, true, NULL, NULL, NULL, false},
                                      END};
static const field snapshot_f[] = {{"destination_url", F_STR, true, NULL, NULL, NULL, false}, END};
static const field restore_f[] = {{"source_url", F_STR, true, NULL, NULL, NULL, false},
                                  {"prefault", F_BOOL, false, NULL, NULL, NULL, false},
                                  {"resume", F_BOOL, false, NULL, NULL, NULL, false},
                                  END};
static const field send_f[] = {{"destination_url", F_STR, true, NULL, NULL, NULL, false},
                               {"local", F_BOOL, false, NULL, NULL, NULL, false},
                               END};
static const field receive_f[] = {{"receiver_url", F_STR, true, NULL, NULL, NULL, false}, END};
static const field userdev_f[] = {
    {"socket", F_STR, true, NULL, NULL, NULL, false}, PCI_COMMON, END};
static const field gvu_f[] = {PCI_COMMON,
                              {"socket", F_STR, true, NULL, NULL, NULL, false},
                              {"queue_sizes", F_ANY_ARR, true, NULL, NULL, NULL, false},
                              {"device_type", F_U32, true, NULL, NULL, NULL, false},
                              END};

static const schema all_schemas[] = {
    {"VmConfig", vm_f},
    {"DiskConfig", disk_f},
    {"NetConfig", net_f},
    {"FsConfig", fs_f},
    {"PmemConfig", pmem_f},
    {"VsockConfig", vsock_f},
    {"VdpaConfig", vdpa_f},
    {"DeviceConfig", device_f},
    {"UserDeviceConfig", userdev_f},
    {"GenericVhostUserConfig", gvu_f},
    {"VmResize", resize_f},
    {"VmRemoveDevice", remove_f},
    {"VmResizeDisk", resize_disk_f},
    {"VmResizeZone", resize_zone_f},
    {"VmSnapshotConfig", snapshot_f},
    {"RestoreConfig", restore_f},
    {"SendMigrationData", send_f},
    {"ReceiveMigrationData", receive_f},
};

static const schema *find_schema(const char *name)
{
    for (size_t i = 0; i < sizeof(all_schemas) / sizeof(all_schemas[0]); i++)
        if (!strcmp(all_schemas[i].name, name))
            return &all_schemas[i];
    return NULL;
}

/* serde's "unexpected" rendering of a JSON value. */
static char *unexpected(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return si_xasprintf("string \"%s\"", json_string_value(v));
    case JSON_INTEGER:
        return si_xasprintf("integer `%lld`", (long long)json_integer_value(v));
    case JSON_REAL:
        return si_xasprintf("floating point `%g`", json_real_value(v));
    case JSON_TRUE:
        return si_xstrdup("boolean `true`");
    case JSON_FALSE:
        return si_xstrdup("boolean `false`");
    case JSON_NULL:
        return si_xstrdup("null");
    case JSON_OBJECT:
        return si_xstrdup("map");
    default:
        return si_xstrdup("sequence");
    }
}

static char *invalid_type(json_t *v, const char *expected)
{
    char *u = unexpected(v);
    char *m = si_xasprintf("invalid type: %s, expected %s", u, expected);
    free(u);
    return m;
}

static char *check_uint(json_t *v, const char *tname, unsigned long long max)
{
    if (!json_is_integer(v))
        return invalid_type(v, tname);
    json_int_t n = json_integer_value(v);
    if (n < 0 || (unsigned long long)n > max)
        return si_xasprintf("invalid value: integer `%lld`, expected %s", (long long)n, tname);
    return NULL;
}

static bool valid_mac(const char *s)
{
    unsigned b[6];
    char tail;
    return strlen(s) == 17 && sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
                                     &b[4], &b[5], &tail) == 6;
}

static char *check_obj(const schema *s, json_t *v);

static char *check_field(const field *f, json_t *v)
{
    switch (f->type) {
    case F_BOOL:
        return json_is_boolean(v) ? NULL : invalid_type(v, "a boolean");
    case F_U8:
        return check_uint(v, "u8", 0xff);
    case F_U16:
        return check_uint(v, "u16", 0xffff);
    case F_U32:
        return check_uint(v, "u32", 0xffffffffULL);
    case F_U64:
    case F_USIZE:
        return check_uint(v, f->type == F_U64 ? "u64" : "usize", 0x7fffffffffffffffULL);
    case F_I32:
        if (!json_is_integer(v))
            return invalid_type(v, "i32");
        return NULL;
    case F_STR:
        return json_is_string(v) ? NULL : invalid_type(v, "a string");
    case F_IP: {
        if (!json_is_string(v))
            return invalid_type(v, "IP address");
        unsigned char tmp[16];
        const char *s = json_string_value(v);
        if (inet_pton(AF_INET, s, tmp) != 1 && inet_pton(AF_INET6, s, tmp) != 1)
            return si_xstrdup("invalid IP address syntax");
        return NULL;
    }
    case F_MAC:
        if (!json_is_string(v))
            return invalid_type(v, "a string");
        if (!valid_mac(json_string_value(v)))
            return si_xasprintf("invalid value: string \"%s\", expected a MAC address",
                                json_string_value(v));
        return NULL;
    case F_ENUM: {
        if (!json_is_string(v))
            return invalid_type(v, "a string");
        for (const char *const *e = f->enm; *e; e++)
            if (!strcmp(*e, json_string_value(v)))
                return NULL;
        si_buf b = {0};
        si_buf_printf(&b, "unknown variant `%s`, expected one of ", json_string_value(v));
        for (const char *const *e = f->enm; *e; e++)
            si_buf_printf(&b, "%s`%s`", e == f->enm ? "" : ", ", *e);
        return b.data;
    }
    case F_OBJ:
        return check_obj(f->sub, v);
    case F_ARR_OBJ:
    case F_ARR_I32:
    case F_ANY_ARR: {
        if (!json_is_array(v))
            return invalid_type(v, "a sequence");
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            char *m = f->type == F_ARR_OBJ   ? check_obj(f->sub, e)
                      : f->type == F_ARR_I32 ? (json_is_integer(e) ? NULL : invalid_type(e, "i32"))
                                             : NULL;
            if (m)
                return m;
        }
        return NULL;
    }
    case F_ANY_OBJ:
        return json_is_object(v) ? NULL : invalid_type(v, "a map");
    case F_ANY:
        return NULL;
    }
    return NULL;
}

/* serde(alias = ...): the old names are accepted and echoed under the new one. */
static json_t *get_field(json_t *v, const char *key)
{
    static const char *const aliases[][2] = {{"system_serial_number", "serial_number"},
                                             {"system_uuid", "uuid"}};
    json_t *x = json_object_get(v, key);
    for (size_t i = 0; !x && i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (!strcmp(key, aliases[i][0]))
            x = json_object_get(v, aliases[i][1]);
    return x;
}

static char *check_obj(const schema *s, json_t *v)
{
    if (!json_is_object(v)) {
        char *exp = si_xasprintf("struct %s", s->name);
        char *m = invalid_type(v, exp);
        free(exp);
        return m;
    }
    for (const field *f = s->fields; f->key; f++) {
        json_t *fv = get_field(v, f->key);
        /* null is None for Option fields (no serde default here); a field
         * with a default is not an Option, so null is a type error there. */
        if (!fv || (json_is_null(fv) && !f->required && !f->def)) {
            if (f->required)
                return si_xasprintf("missing field `%s`", f->key);
            continue;
        }
        char *m = check_field(f, fv);
        if (m)
            return m;
    }
    return NULL;
}

char *si_config_check(const char *kind, json_t *v)
{
    const schema *s = find_schema(kind);
    return s ? check_obj(s, v) : NULL;
}

/* ---- echo ---------------------------------------------------------------------- */

static json_t *echo_obj(const schema *s, json_t *v);

static json_t *echo_value(const field *f, json_t *v)
{
    if (f->type == F_OBJ)
        return echo_obj(f->sub, v);
    if (f->type == F_ARR_OBJ) {
        json_t *a = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) json_array_append_new(a, echo_obj(f->sub, e));
        return a;
    }
    return json_deep_copy(v);
}

static json_t *echo_obj(const schema *s, json_t *v)
{
    json_t *o = json_object();
    for (const field *f = s->fields; f->key; f++) {
        json_t *fv = v ? get_field(v, f->key) : NULL;
        json_t *out = NULL;
        if (fv && !json_is_null(fv)) {
            out = echo_value(f, fv);
        } else if (f->def) {
            json_t *d = json_loads(f->def, JSON_DECODE_ANY, NULL);
            out = (f->type == F_OBJ) ? echo_obj(f->sub, d) : json_incref(d);
            json_decref(d);
        }
        if (!out)
            continue;
        if (f->skip_false && json_is_false(out)) {
            json_decref(out);
            continue;
        }
        json_object_set_new(o, f->key, out);
    }
    return o;
}

json_t *si_config_echo(json_t *cfg)
{
    json_t *o = echo_obj(&vm_s, cfg);
    /* CpusConfig/MemoryConfig defaults are whole structs, not per-field. */
    if (!json_object_get(cfg, "cpus") || json_is_null(json_object_get(cfg, "cpus"))) {
        json_object_set_new(json_object_get(o, "cpus"), "boot_vcpus", json_integer(1));
        json_object_set_new(json_object_get(o, "cpus"), "max_vcpus", json_integer(1));
    }
    if (!json_object_get(cfg, "memory") || json_is_null(json_object_get(cfg, "memory")))
        json_object_set_new(json_object_get(o, "memory"), "size", json_integer(512 << 20));
    /* Keep serde's field order: re-insert the two required fields first. */
    const char *firsts[][3] = {{"cpus", "boot_vcpus", "max_vcpus"}, {"memory", "size", NULL}};
    for (int i = 0; i < 2; i++) {
        json_t *sub = json_object_get(o, firsts[i][0]);
        json_t *re = json_object();
        for (int k = 1; k < 3 && firsts[i][k]; k++)
            json_object_set(re, firsts[i][k], json_object_get(sub, firsts[i][k]));
        json_object_update_missing(re, sub);
        json_object_set_new(o, firsts[i][0], re);
    }
    return o;
}

json_t *si_device_echo(const char *kind, json_t *dev)
{
    const schema *s = find_schema(kind);
    return s ? echo_obj(s, dev) : json_deep_copy(dev);
}
