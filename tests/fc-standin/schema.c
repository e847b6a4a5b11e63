/*
 * schema.c - what serde accepts for Firecracker's request bodies.
 *
 * Firecracker deserialises every body with serde_json into a Rust struct;
 * the structs below mirror src/vmm/src/vmm_config/ (every file) field by field:
 * which fields are required, which are Option (null or absent), which have
 * #[serde(default)] (absent is fine, null is not), the integer widths (a u8
 * refuses 300), the enums (unknown variants are named in the error) and
 * #[serde(deny_unknown_fields)] (most structs; not MetricsConfig,
 * TokenBucketConfig, NetworkOverride, VsockOverride, nor the config file's
 * top level). Keys are checked in document order and the first problem
 * wins, then required fields in declaration order, as serde does.
 *
 * Messages follow serde's wording ("missing field `x`", "unknown field `x`,
 * expected one of `a`, `b`", "invalid type: string \"x\", expected u8",
 * "unknown variant `X`, expected `A` or `B`"). serde_json appends
 * " at line L column C"; the stand-in leaves positions out (README.md).
 */
#include "standin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

typedef enum tkind {
    T_U8,
    T_U16,
    T_U32,
    T_U64,
    T_USIZE,
    T_BOOL,
    T_STRING,
    T_PATH,
    T_ENUM,
    T_STRUCT,
    T_VEC,
    T_MAP_STR,
    T_MAC,
    T_IPV4,
    T_LEVEL,
    T_ANY,
} tkind;

enum presence { REQUIRED, OPTION, DEFAULT };

struct sdef;
typedef struct ftype {
    tkind kind;
    const struct sdef *sdef;     /* T_STRUCT, or the element struct of a T_VEC */
    const char *const *variants; /* T_ENUM */
    const char *ename;           /* T_ENUM */
    tkind elem;                  /* T_VEC element kind */
} ftype;

typedef struct field {
    const char *name;
    ftype t;
    enum presence p;
} field;

typedef struct sdef {
    const char *name;
    bool deny_unknown;
    const field *fields;
} sdef;

#define END                                                                                        \
    {                                                                                              \
        NULL, {0, NULL, NULL, NULL, 0}, 0                                                          \
    }
#define SCALAR(k)                                                                                  \
    {                                                                                              \
        k, NULL, NULL, NULL, 0                                                                     \
    }
#define STRUCT(s)                                                                                  \
    {                                                                                              \
        T_STRUCT, &s, NULL, NULL, 0                                                                \
    }
#define ENUM(v, n)                                                                                 \
    {                                                                                              \
        T_ENUM, NULL, v, n, 0                                                                      \
    }
#define VEC_OF(k, s)                                                                               \
    {                                                                                              \
        T_VEC, s, NULL, NULL, k                                                                    \
    }

static const char *const cpu_templates[] = {"C3", "T2", "T2S", "None", "T2CL", "T2A", NULL};
static const char *const huge_pages[] = {"None", "Transparent", "2M", NULL};
static const char *const cache_types[] = {"Unsafe", "Writeback", NULL};
static const char *const engines[] = {"Async", "Sync", NULL};
static const char *const mmds_versions[] = {"V1", "V2", NULL};
static const char *const snapshot_types[] = {"Diff", "Full", NULL};
static const char *const backend_types[] = {"File", "Uffd", NULL};
static const char *const load_huge_pages[] = {"Snapshot", "None", "Transparent", "2M", NULL};
static const char *const vm_states[] = {"Paused", "Resumed", NULL};
static const char *const action_types[] = {"FlushMetrics", "InstanceStart", "SendCtrlAltDel", NULL};

static const sdef token_bucket = {"TokenBucketConfig", false,
                                  (const field[]){{"size", SCALAR(T_U64), REQUIRED},
                                                  {"one_time_burst", SCALAR(T_U64), OPTION},
                                                  {"refill_time", SCALAR(T_U64), REQUIRED},
                                                  END}};
static const sdef rate_limiter = {"RateLimiterConfig", true,
                                  (const field[]){{"bandwidth", STRUCT(token_bucket), OPTION},
                                                  {"ops", STRUCT(token_bucket), OPTION},
                                                  END}};
static const sdef boot_source = {"BootSourceConfig", true,
                                 (const field[]){{"kernel_image_path", SCALAR(T_STRING), REQUIRED},
                                                 {"initrd_path", SCALAR(T_STRING), OPTION},
                                                 {"boot_args", SCALAR(T_STRING), OPTION},
                                                 END}};
static const sdef machine_config = {
    "MachineConfig", true,
    (const field[]){{"vcpu_count", SCALAR(T_U8), REQUIRED},
                    {"mem_size_mib", SCALAR(T_USIZE), REQUIRED},
                    {"smt", SCALAR(T_BOOL), DEFAULT},
                    {"cpu_template", ENUM(cpu_templates, "StaticCpuTemplate"), OPTION},
                    {"track_dirty_pages", SCALAR(T_BOOL), DEFAULT},
                    {"huge_pages", ENUM(huge_pages, "HugePageConfig"), DEFAULT},
                    END}};
static const sdef machine_update = {
    "MachineConfigUpdate", true,
    (const field[]){{"vcpu_count", SCALAR(T_U8), OPTION},
                    {"mem_size_mib", SCALAR(T_USIZE), OPTION},
                    {"smt", SCALAR(T_BOOL), OPTION},
                    {"cpu_template", ENUM(cpu_templates, "StaticCpuTemplate"), OPTION},
                    {"track_dirty_pages", SCALAR(T_BOOL), OPTION},
                    {"huge_pages", ENUM(huge_pages, "HugePageConfig"), OPTION},
                    END}};
static const sdef block_device = {
    "BlockDeviceConfig", true,
    (const field[]){{"drive_id", SCALAR(T_STRING), REQUIRED},
                    {"partuuid", SCALAR(T_STRING), OPTION},
                    {"is_root_device", SCALAR(T_BOOL), REQUIRED},
                    {"cache_type", ENUM(cache_types, "CacheType"), DEFAULT},
                    {"is_read_only", SCALAR(T_BOOL), OPTION},
                    {"path_on_host", SCALAR(T_STRING), OPTION},
                    {"rate_limiter", STRUCT(rate_limiter), OPTION},
                    {"io_engine", ENUM(engines, "FileEngineType"), OPTION},
                    {"socket", SCALAR(T_STRING), OPTION},
                    END}};
static const sdef block_update = {"BlockDeviceUpdateConfig", true,
                                  (const field[]){{"drive_id", SCALAR(T_STRING), REQUIRED},
                                                  {"path_on_host", SCALAR(T_STRING), OPTION},
                                                  {"rate_limiter", STRUCT(rate_limiter), OPTION},
                                                  END}};
static const sdef net_config = {"NetworkInterfaceConfig", true,
                                (const field[]){{"iface_id", SCALAR(T_STRING), REQUIRED},
                                                {"host_dev_name", SCALAR(T_STRING), REQUIRED},
                                                {"guest_mac", SCALAR(T_MAC), OPTION},
                                                {"mtu", SCALAR(T_U16), OPTION},
                                                {"rx_rate_limiter", STRUCT(rate_limiter), OPTION},
                                                {"tx_rate_limiter", STRUCT(rate_limiter), OPTION},
                                                END}};
static const sdef net_update = {"NetworkInterfaceUpdateConfig", true,
                                (const field[]){{"iface_id", SCALAR(T_STRING), REQUIRED},
                                                {"rx_rate_limiter", STRUCT(rate_limiter), OPTION},
                                                {"tx_rate_limiter", STRUCT(rate_limiter), OPTION},
                                                END}};
static const sdef vsock = {"VsockDeviceConfig", true,
                           (const field[]){{"vsock_id", SCALAR(T_STRING), OPTION},
                                           {"guest_cid", SCALAR(T_U32), REQUIRED},
                                           {"uds_path", SCALAR(T_STRING), REQUIRED},
                                           END}};
static const sdef logger = {"LoggerConfig", true,
                            (const field[]){{"log_path", SCALAR(T_PATH), OPTION},
                                            {"level", SCALAR(T_LEVEL), OPTION},
                                            {"show_level", SCALAR(T_BOOL), OPTION},
                                            {"show_log_origin", SCALAR(T_BOOL), OPTION},
                                            {"module", SCALAR(T_STRING), OPTION},
                                            END}};
static const sdef metrics = {"MetricsConfig", false,
                             (const field[]){{"metrics_path", SCALAR(T_PATH), REQUIRED},
                                             {"emit_id", SCALAR(T_BOOL), DEFAULT},
                                             {"properties", SCALAR(T_MAP_STR), OPTION},
                                             END}};
static const sdef serial = {"SerialConfig", true,
                            (const field[]){{"serial_out_path", SCALAR(T_PATH), OPTION},
                                            {"rate_limiter", STRUCT(token_bucket), OPTION},
                                            END}};
static const sdef entropy = {"EntropyDeviceConfig", true,
                             (const field[]){{"rate_limiter", STRUCT(rate_limiter), OPTION}, END}};
static const sdef balloon = {"BalloonDeviceConfig", true,
                             (const field[]){{"amount_mib", SCALAR(T_U32), REQUIRED},
                                             {"deflate_on_oom", SCALAR(T_BOOL), REQUIRED},
                                             {"stats_polling_interval_s", SCALAR(T_U16), DEFAULT},
                                             {"free_page_hinting", SCALAR(T_BOOL), DEFAULT},
                                             {"free_page_reporting", SCALAR(T_BOOL), DEFAULT},
                                             END}};
static const sdef balloon_update = {"BalloonUpdateConfig", true,
                                    (const field[]){{"amount_mib", SCALAR(T_U32), REQUIRED}, END}};
static const sdef balloon_stats = {
    "BalloonUpdateStatsConfig", true,
    (const field[]){{"stats_polling_interval_s", SCALAR(T_U16), REQUIRED}, END}};
static const sdef hinting_cmd = {
    "StartHintingCmd", false,
    (const field[]){{"acknowledge_on_stop", SCALAR(T_BOOL), DEFAULT}, END}};
static const sdef mmds_config = {
    "MmdsConfig", true,
    (const field[]){{"version", ENUM(mmds_versions, "MmdsVersion"), DEFAULT},
                    {"network_interfaces", VEC_OF(T_STRING, NULL), REQUIRED},
                    {"ipv4_address", SCALAR(T_IPV4), OPTION},
                    {"imds_compat", SCALAR(T_BOOL), DEFAULT},
                    END}};
static const sdef pmem = {"PmemConfig", true,
                          (const field[]){{"id", SCALAR(T_STRING), REQUIRED},
                                          {"path_on_host", SCALAR(T_STRING), REQUIRED},
                                          {"root_device", SCALAR(T_BOOL), DEFAULT},
                                          {"read_only", SCALAR(T_BOOL), DEFAULT},
                                          {"rate_limiter", STRUCT(rate_limiter), OPTION},
                                          END}};
static const sdef pmem_update = {"PmemDeviceUpdateConfig", true,
                                 (const field[]){{"id", SCALAR(T_STRING), REQUIRED},
                                                 {"rate_limiter", STRUCT(rate_limiter), OPTION},
                                                 END}};
static const sdef hotplug = {"MemoryHotplugConfig", true,
                             (const field[]){{"total_size_mib", SCALAR(T_U32), REQUIRED},
                                             {"block_size_mib", SCALAR(T_U32), DEFAULT},
                                             {"slot_size_mib", SCALAR(T_U32), DEFAULT},
                                             END}};
static const sdef hotplug_update = {
    "MemoryHotplugSizeUpdate", true,
    (const field[]){{"requested_size_mib", SCALAR(T_U32), REQUIRED}, END}};
static const sdef snapshot_create = {
    "CreateSnapshotParams", true,
    (const field[]){{"snapshot_type", ENUM(snapshot_types, "SnapshotType"), DEFAULT},
                    {"snapshot_path", SCALAR(T_PATH), REQUIRED},
                    {"mem_file_path", SCALAR(T_PATH), REQUIRED},
                    END}};
static const sdef mem_backend = {
    "MemBackendConfig", true,
    (const field[]){{"backend_path", SCALAR(T_PATH), REQUIRED},
                    {"backend_type", ENUM(backend_types, "MemBackendType"), REQUIRED},
                    END}};
static const sdef net_override = {"NetworkOverride", false,
                                  (const field[]){{"iface_id", SCALAR(T_STRING), REQUIRED},
                                                  {"host_dev_name", SCALAR(T_STRING), REQUIRED},
                                                  END}};
static const sdef vsock_override = {"VsockOverride", false,
                                    (const field[]){{"uds_path", SCALAR(T_STRING), REQUIRED}, END}};
static const sdef snapshot_load = {
    "LoadSnapshotConfig", true,
    (const field[]){{"snapshot_path", SCALAR(T_PATH), REQUIRED},
                    {"mem_file_path", SCALAR(T_PATH), OPTION},
                    {"mem_backend", STRUCT(mem_backend), OPTION},
                    {"enable_diff_snapshots", SCALAR(T_BOOL), DEFAULT},
                    {"track_dirty_pages", SCALAR(T_BOOL), DEFAULT},
                    {"resume_vm", SCALAR(T_BOOL), DEFAULT},
                    {"network_overrides", VEC_OF(T_STRUCT, &net_override), DEFAULT},
                    {"vsock_override", STRUCT(vsock_override), OPTION},
                    {"clock_realtime", SCALAR(T_BOOL), DEFAULT},
                    {"huge_pages", ENUM(load_huge_pages, "SnapshotLoadHugePageConfig"), DEFAULT},
                    END}};
static const sdef vm_state = {
    "Vm", true, (const field[]){{"state", ENUM(vm_states, "VmState"), REQUIRED}, END}};
static const sdef action_body = {
    "ActionBody", true,
    (const field[]){{"action_type", ENUM(action_types, "ActionType"), REQUIRED}, END}};
static const sdef cpu_template = {
    "CustomCpuTemplate", true,
    (const field[]){{"kvm_capabilities", VEC_OF(T_STRING, NULL), DEFAULT},
                    {"cpuid_modifiers", VEC_OF(T_ANY, NULL), DEFAULT},
                    {"msr_modifiers", VEC_OF(T_ANY, NULL), DEFAULT},
                    END}};
static const sdef vmm_config = {
    "VmmConfig", false,
    (const field[]){{"balloon", STRUCT(balloon), OPTION},
                    {"drives", VEC_OF(T_STRUCT, &block_device), REQUIRED},
                    {"boot-source", STRUCT(boot_source), REQUIRED},
                    {"cpu-config", SCALAR(T_ANY), OPTION},
                    {"logger", STRUCT(logger), OPTION},
                    {"machine-config", STRUCT(machine_config), OPTION},
                    {"metrics", STRUCT(metrics), OPTION},
                    {"mmds-config", STRUCT(mmds_config), OPTION},
                    {"network-interfaces", VEC_OF(T_STRUCT, &net_config), DEFAULT},
                    {"vsock", STRUCT(vsock), OPTION},
                    {"entropy", STRUCT(entropy), OPTION},
                    {"pmem", VEC_OF(T_STRUCT, &pmem), DEFAULT},
                    {"memory-hotplug", STRUCT(hotplug), OPTION},
                    END}};

static const sdef *const all[] = {
    &boot_source, &machine_config, &machine_update, &block_device,    &block_update,  &net_config,
    &net_update,  &vsock,          &logger,         &metrics,         &serial,        &entropy,
    &balloon,     &balloon_update, &balloon_stats,  &hinting_cmd,     &mmds_config,   &pmem,
    &pmem_update, &hotplug,        &hotplug_update, &snapshot_create, &snapshot_load, &vm_state,
    &action_body, &cpu_template,   &vmm_config,     &rate_limiter,    &token_bucket,
};

/* serde's Unexpected: how the offending value is named. */
static char *unexpected(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: {
        char *q = fsi_debug_str(json_string_value(v));
        char *s = fsi_xasprintf("string %s", q);
        free(q);
        return s;
    }
    case JSON_INTEGER:
        return fsi_xasprintf("integer `%lld`", (long long)json_integer_value(v));
    case JSON_REAL: {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 1e15)
            return fsi_xasprintf("floating point `%.1f`", d);
        return fsi_xasprintf("floating point `%.17g`", d);
    }
    case JSON_TRUE:
        return fsi_xstrdup("boolean `true`");
    case JSON_FALSE:
        return fsi_xstrdup("boolean `false`");
    case JSON_NULL:
        return fsi_xstrdup("null");
    case JSON_ARRAY:
        return fsi_xstrdup("sequence");
    default:
        return fsi_xstrdup("map");
    }
}

static char *expected(const ftype *t)
{
    switch (t->kind) {
    case T_U8:
        return fsi_xstrdup("u8");
    case T_U16:
        return fsi_xstrdup("u16");
    case T_U32:
        return fsi_xstrdup("u32");
    case T_U64:
        return fsi_xstrdup("u64");
    case T_USIZE:
        return fsi_xstrdup("usize");
    case T_BOOL:
        return fsi_xstrdup("a boolean");
    case T_PATH:
        return fsi_xstrdup("path string");
    case T_ENUM:
        return fsi_xasprintf("enum %s", t->ename);
    case T_STRUCT:
        return fsi_xasprintf("struct %s", t->sdef->name);
    case T_VEC:
        return fsi_xstrdup("a sequence");
    case T_MAP_STR:
        return fsi_xstrdup("a map");
    case T_IPV4:
        return fsi_xstrdup("IPv4 address");
    default:
        return fsi_xstrdup("a string");
    }
}

static char *invalid_type(json_t *v, const ftype *t)
{
    char *u = unexpected(v), *e = expected(t);
    char *s = fsi_xasprintf("invalid type: %s, expected %s", u, e);
    free(u);
    free(e);
    return s;
}

/* "`a`", "`a` or `b`", "one of `a`, `b`, `c`" */
static char *one_of(const char *const *names, size_t n)
{
    fsi_buf b = {0};
    if (n > 2)
        fsi_buf_append(&b, "one of ", 7);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fsi_buf_printf(&b, "%s", n == 2 ? " or " : ", ");
        fsi_buf_printf(&b, "`%s`", names[i]);
    }
    return b.data ? b.data : fsi_xstrdup("");
}

static char *check_struct(const sdef *s, json_t *v);

static char *check_uint(json_t *v, const ftype *t, unsigned long long max)
{
    if (json_is_real(v) || !json_is_integer(v))
        return invalid_type(v, t);
    json_int_t n = json_integer_value(v);
    if (n < 0 || (unsigned long long)n > max) {
        char *e = expected(t);
        char *s = fsi_xasprintf("invalid value: integer `%lld`, expected %s", (long long)n, e);
        free(e);
        return s;
    }
    return NULL;
}

static bool mac_ok(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    return true;
}

static char *check_value(const ftype *t, json_t *v)
{
    switch (t->kind) {
    case T_U8:
        return check_uint(v, t, 0xff);
    case T_U16:
        return check_uint(v, t, 0xffff);
    case T_U32:
        return check_uint(v, t, 0xffffffffULL);
    case T_U64:
    case T_USIZE:
        return check_uint(v, t, ~0ULL);
    case T_BOOL:
        return json_is_boolean(v) ? NULL : invalid_type(v, t);
    case T_STRING:
    case T_PATH:
        return json_is_string(v) ? NULL : invalid_type(v, t);
    case T_ANY:
        return NULL;
    case T_MAC:
        if (!json_is_string(v))
            return invalid_type(v, t);
        return mac_ok(json_string_value(v)) ? NULL
                                            : fsi_xstrdup("The provided MAC address is invalid.");
    case T_IPV4: {
        struct in_addr a;
        if (!json_is_string(v))
            return invalid_type(v, t);
        return inet_pton(AF_INET, json_string_value(v), &a) == 1
                   ? NULL
                   : fsi_xstrdup("invalid IPv4 address syntax");
    }
    case T_LEVEL:
        if (!json_is_string(v))
            return invalid_type(v, t);
        return fsi_level_parse(json_string_value(v)) >= 0 ? NULL
                                                          : fsi_xstrdup("Invalid LevelFilter");
    case T_ENUM: {
        if (!json_is_string(v))
            return invalid_type(v, t);
        size_t n = 0;
        for (; t->variants[n]; n++)
            if (!strcmp(t->variants[n], json_string_value(v)))
                return NULL;
        char *list = one_of(t->variants, n);
        char *s = fsi_xasprintf("unknown variant `%s`, expected %s", json_string_value(v), list);
        free(list);
        return s;
    }
    case T_STRUCT:
        if (!json_is_object(v))
            return invalid_type(v, t);
        return check_struct(t->sdef, v);
    case T_MAP_STR: {
        if (!json_is_object(v))
            return invalid_type(v, t);
        const char *k;
        json_t *e;
        static const ftype str = SCALAR(T_STRING);
        json_object_foreach(v, k, e)
        {
            if (!json_is_string(e))
                return invalid_type(e, &str);
        }
        return NULL;
    }
    case T_VEC: {
        if (!json_is_array(v))
            return invalid_type(v, t);
        ftype et = {t->elem, t->sdef, NULL, NULL, 0};
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            char *m = check_value(&et, e);
            if (m)
                return m;
        }
        return NULL;
    }
    }
    return NULL;
}

static char *check_struct(const sdef *s, json_t *v)
{
    size_t nfields = 0;
    const char *names[32];
    for (const field *f = s->fields; f->name; f++)
        names[nfields++] = f->name;
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e)
    {
        const field *f = s->fields;
        while (f->name && strcmp(f->name, k))
            f++;
        if (!f->name) {
            if (!s->deny_unknown)
                continue;
            if (!nfields)
                return fsi_xasprintf("unknown field `%s`, there are no fields", k);
            char *list = one_of(names, nfields);
            char *m = fsi_xasprintf("unknown field `%s`, expected %s", k, list);
            free(list);
            return m;
        }
        if (json_is_null(e) && f->p == OPTION)
            continue;
        char *m = check_value(&f->t, e);
        if (m)
            return m;
    }
    for (const field *f = s->fields; f->name; f++)
        if (f->p == REQUIRED && !json_object_get(v, f->name))
            return fsi_xasprintf("missing field `%s`", f->name);
    return NULL;
}

char *fsi_schema_check(const char *type, json_t *v)
{
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(all[i]->name, type))
            continue;
        if (!json_is_object(v)) {
            ftype t = {T_STRUCT, all[i], NULL, NULL, 0};
            return invalid_type(v, &t);
        }
        return check_struct(all[i], v);
    }
    return fsi_xasprintf("standin: no schema for %s", type);
}

char *fsi_json_syntax_msg(const json_error_t *e, const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\t' || body[i] == '\r'))
        i++;
    int line = e->line > 0 ? e->line : 1, col = e->column > 0 ? e->column : 1;
    if (i == len)
        return fsi_xasprintf("EOF while parsing a value at line %d column %zu", line, len);
    size_t end = len;
    while (end > i && (body[end - 1] == ' ' || body[end - 1] == '\n' || body[end - 1] == '\t' ||
                       body[end - 1] == '\r'))
        end--;
    if ((size_t)e->position >= end && !strstr(e->text, "end of file expected")) {
        const char *what = body[i] == '{' ? "an object" : body[i] == '[' ? "a list" : "a value";
        return fsi_xasprintf("EOF while parsing %s at line %d column %d", what, line, col);
    }
    if (strstr(e->text, "end of file expected"))
        return fsi_xasprintf("trailing characters at line %d column %d", line, col);
    if (strstr(e->text, "duplicate object key")) {
        const char *q = strchr(e->text, '\'');
        return fsi_xasprintf("duplicate field %s", q ? q : "");
    }
    if (strstr(e->text, "premature end of input") || strstr(e->text, "unexpected newline"))
        return fsi_xasprintf("EOF while parsing an object at line %d column %d", line, col);
    if (strstr(e->text, "string or '}' expected"))
        return fsi_xasprintf("key must be a string at line %d column %d", line, col);
    return fsi_xasprintf("expected value at line %d column %d", line, col);
}
