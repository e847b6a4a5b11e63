/*
 * validate.c - guard rails for client input (VM ids, labels, configurations)
 * and the mapping of a cloudhypervisor.v1.VmConfig to Cloud Hypervisor's
 * vm.create JSON.
 *
 * Everything a client sends ends up as arguments to a process running with
 * our privileges, so every field is checked here, before anything is started:
 * host paths must resolve (no symlink escapes) inside a configured image
 * directory, sizes and counts are bounded, and host paths chcp owns (console
 * log, sockets) are chosen by chcp inside the VM's private directory. Errors
 * name the offending field ("config.memory.size: ...").
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unictype.h>
#include <unistr.h>

#include "vm/vm_internal.h"

#define MAX_NETS 16
#define MAX_QUEUES 64
#define MAX_QUEUE_SIZE 32768
#define MAX_CMDLINE 4096
#define MAX_OEM_STRINGS 16
#define MAX_PCI_SEGMENTS 16
#define MAX_TEXT 255

#define PB_PREFIX CLOUDHYPERVISOR__V1__

int vm_validate_id(const char *id, chcp_error **err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > VM_ID_MAX)
        return error_set(err, CHCP_INVALID_ARGUMENT, "vm_id: must be 1-%d characters long",
                         VM_ID_MAX);
    if (!isdigit((unsigned char)id[0]) && !(id[0] >= 'a' && id[0] <= 'z'))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "vm_id: must start with a lower-case letter or a digit");
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "vm_id: only lower-case letters, digits and '-' are allowed");
    }
    return 0;
}

/*
 * Text a client gives chcp (labels, cmdline, serial numbers, paths) ends up
 * in logs, listings and other tools' terminals, so only printable characters
 * are accepted: valid UTF-8 (no overlong forms, surrogates or code points
 * past U+10FFFF) without C0/C1 controls, format characters (bidirectional
 * embeddings, overrides and isolates, zero-width spaces and joiners, the soft
 * hyphen), other default-ignorable (invisible) code points, line/paragraph
 * separators, private-use, unassigned code points and noncharacters.
 * libunistring (Unicode 14 tables) decides the categories.
 */
static const char *char_problem(ucs4_t c)
{
    if (uc_is_general_category(c, UC_CATEGORY_Cc))
        return "a control character";
    if (uc_is_property_bidi_control(c))
        return "a bidirectional formatting character";
    if (uc_is_property_default_ignorable_code_point(c))
        return "an invisible (zero-width or default-ignorable) character";
    if (uc_is_general_category(c, UC_CATEGORY_Cf))
        return "a format character";
    if (uc_is_general_category(c, UC_CATEGORY_Zl) || uc_is_general_category(c, UC_CATEGORY_Zp))
        return "a line or paragraph separator";
    if (uc_is_general_category(c, UC_CATEGORY_Co))
        return "a private-use character";
    if (uc_is_general_category(c, UC_CATEGORY_Cn))
        return "an unassigned code point or noncharacter";
    return NULL;
}

/* NULL when `s` is acceptable text of at most `max` bytes; otherwise why
 * not, in `buf` ("contains U+202E (a bidirectional formatting character) at
 * byte 3"). */
static const char *text_problem(const char *s, size_t max, char *buf, size_t n)
{
    size_t len = strlen(s);
    if (len > max) {
        snprintf(buf, n, "is %zu bytes long, at most %zu are allowed", len, max);
        return buf;
    }
    const uint8_t *u = (const uint8_t *)s;
    const uint8_t *bad = u8_check(u, len);
    if (bad) {
        snprintf(buf, n, "is not valid UTF-8 (byte %zu)", (size_t)(bad - u));
        return buf;
    }
    for (size_t i = 0; i < len;) {
        ucs4_t c;
        int k = u8_mbtouc(&c, u + i, len - i);
        const char *why = char_problem(c);
        if (why) {
            snprintf(buf, n,
                     "contains U+%04X (%s) at byte %zu; only printable characters are allowed",
                     (unsigned)c, why, i);
            return buf;
        }
        i += (size_t)(k > 0 ? k : 1);
    }
    return NULL;
}

/* invalid_argument "<field>: <why>" unless `s` is acceptable text. */
static int check_text(const char *field, const char *s, size_t max, chcp_error **err)
{
    char why[160];
    if (!text_problem(s, max, why, sizeof(why)))
        return 0;
    return error_set(err, CHCP_INVALID_ARGUMENT, "%s: %s", field, why);
}

int vm_validate_labels(const vm_label *labels, size_t n, const char *field, chcp_error **err)
{
    char why[160];
    if (n > VM_MAX_LABELS)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s: at most %d labels", field, VM_MAX_LABELS);
    for (size_t i = 0; i < n; i++) {
        const char *k = labels[i].key;
        if (!k[0])
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: keys must not be empty", field);
        /* A bad key is not echoed (it is what cannot be shown). */
        if (text_problem(k, VM_LABEL_KEY_MAX, why, sizeof(why)))
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s: a key %s", field, why);
        if (text_problem(labels[i].value, VM_LABEL_VALUE_MAX, why, sizeof(why)))
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s[%s]: the value %s", field, k, why);
    }
    return 0;
}

/* ---- host paths ------------------------------------------------------------- */

/*
 * Check a client path and return the name the VMM is given for it: the
 * file's staged hard link in the VM directory (images.c; docs/security.md).
 * The lexical checks come first, so paths outside the image directories are
 * refused without telling the client whether they exist.
 */
static char *image_path(const vm_limits *lim, const char *field, const char *path,
                        bool allow_blockdev, const char *vm_dir, const char *role, chcp_error **err)
{
    if (lim->n_image_dirs == 0) {
        error_set(err, CHCP_PERMISSION_DENIED,
                  "%s: no image directories are configured (CHCP_IMAGE_DIRS), so no client "
                  "paths are allowed",
                  field);
        return NULL;
    }
    if (check_text(field, path, PATH_MAX - 1, err) < 0)
        return NULL;
    if (path[0] != '/') {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: must be an absolute path", field);
        return NULL;
    }
    if (strstr(path, "/../") ||
        (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0)) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: '..' is not allowed", field);
        return NULL;
    }
    int fd = vm_image_open(lim, field, path, allow_blockdev, err);
    if (fd < 0)
        return NULL;
    close(fd);
    return vm_image_staged_path(vm_dir, role);
}

/* ---- small field checks --------------------------------------------------- */

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* Device ids and TAP names: letters, digits, '_', '-', '.'. */
static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_-.", s[i]))
            return false;
    return true;
}

static bool mac_ok(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool ipv4_ok(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static bool uuid_ok(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

#define FAIL(...) (error_set(err, CHCP_INVALID_ARGUMENT, __VA_ARGS__), -1)

/* ---- sections ---------------------------------------------------------------- */

static int build_payload(const vm_limits *lim, const Cloudhypervisor__V1__PayloadConfig *p,
                         const char *vm_dir, json_t *root, chcp_error **err)
{
    if (!p)
        return FAIL("config.payload: required (a kernel or a firmware)");
    bool kernel = p->kernel[0], firmware = p->firmware[0];
    if (kernel && firmware)
        return FAIL("config.payload: kernel and firmware are mutually exclusive");
    if (!kernel && !firmware)
        return FAIL("config.payload: a kernel or a firmware is required");
    if (firmware && (p->cmdline[0] || p->initramfs[0]))
        return FAIL("config.payload: cmdline and initramfs need a kernel, not a firmware");
    if (check_text("config.payload.cmdline", p->cmdline, MAX_CMDLINE, err) < 0)
        return -1;
    json_t *o = json_object();
    json_object_set_new(root, "payload", o);
    const char *fields[][2] = {
        {"kernel", p->kernel}, {"firmware", p->firmware}, {"initramfs", p->initramfs}};
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        if (!fields[i][1][0])
            continue;
        cleanup_free char *name = xasprintf("config.payload.%s", fields[i][0]);
        cleanup_free char *staged =
            image_path(lim, name, fields[i][1], false, vm_dir, fields[i][0], err);
        if (!staged)
            return -1;
        json_object_set_new(o, fields[i][0], json_string(staged));
    }
    if (p->cmdline[0])
        json_object_set_new(o, "cmdline", json_string(p->cmdline));
    return 0;
}

static int build_cpus(const vm_limits *lim, const Cloudhypervisor__V1__CpusConfig *c, json_t *root,
                      uint32_t *max_out, chcp_error **err)
{
    uint32_t boot = c ? c->boot_vcpus : 1, max = c ? c->max_vcpus : 1;
    if (c && boot == 0)
        return FAIL("config.cpus.boot_vcpus: must be at least 1");
    if (max == 0)
        max = boot;
    if (max < boot)
        return FAIL("config.cpus.max_vcpus: %u is less than boot_vcpus %u", max, boot);
    if (max > lim->max_vcpus)
        return FAIL("config.cpus: %u vCPUs exceed this host's limit of %u (CHCP_MAX_VCPUS)", max,
                    lim->max_vcpus);
    *max_out = max;
    json_t *o =
        json_pack("{s:I,s:I}", "boot_vcpus", (json_int_t)boot, "max_vcpus", (json_int_t)max);
    json_object_set_new(root, "cpus", o);
    if (!c)
        return 0;
    if (c->topology) {
        const Cloudhypervisor__V1__CpuTopology *t = c->topology;
        uint64_t prod =
            (uint64_t)t->threads_per_core * t->cores_per_die * t->dies_per_package * t->packages;
        if (!t->threads_per_core || !t->cores_per_die || !t->dies_per_package || !t->packages ||
            t->threads_per_core > 255 || t->cores_per_die > 255 || t->dies_per_package > 255 ||
            t->packages > 255)
            return FAIL("config.cpus.topology: every field must be 1-255");
        if (prod != max)
            return FAIL("config.cpus.topology: %llu vCPUs in the topology, max_vcpus is %u",
                        (unsigned long long)prod, max);
        json_object_set_new(
            o, "topology",
            json_pack("{s:I,s:I,s:I,s:I}", "threads_per_core", (json_int_t)t->threads_per_core,
                      "cores_per_die", (json_int_t)t->cores_per_die, "dies_per_package",
                      (json_int_t)t->dies_per_package, "packages", (json_int_t)t->packages));
    }
    if (c->kvm_hyperv)
        json_object_set_new(o, "kvm_hyperv", json_true());
    if (c->max_phys_bits) {
        if (c->max_phys_bits < 32 || c->max_phys_bits > 64)
            return FAIL("config.cpus.max_phys_bits: must be 32-64 (or 0 for the default)");
        json_object_set_new(o, "max_phys_bits", json_integer(c->max_phys_bits));
    }
    if (c->nested_opt_case == CLOUDHYPERVISOR__V1__CPUS_CONFIG__NESTED_OPT_NESTED)
        json_object_set_new(o, "nested", json_boolean(c->nested));
    return 0;
}

static int build_memory(const vm_limits *lim, const Cloudhypervisor__V1__MemoryConfig *m,
                        json_t *root, chcp_error **err)
{
    uint64_t size = m ? m->size : 512ull << 20;
    uint64_t max = lim->max_memory_mib << 20;
    if (size == 0)
        return FAIL("config.memory.size: must be greater than zero");
    if (size % 4096)
        return FAIL("config.memory.size: must be a multiple of 4 KiB");
    uint64_t hot = m ? m->hotplug_size : 0;
    if (hot % 4096)
        return FAIL("config.memory.hotplug_size: must be a multiple of 4 KiB");
    if (size > max || hot > max || size + hot > max)
        return FAIL("config.memory: %llu MiB exceed this host's limit of %llu MiB "
                    "(CHCP_MAX_MEMORY_MIB)",
                    (unsigned long long)((size >> 20) + (hot >> 20)),
                    (unsigned long long)lim->max_memory_mib);
    json_t *o = json_pack("{s:I}", "size", (json_int_t)size);
    json_object_set_new(root, "memory", o);
    if (!m)
        return 0;
    if (hot)
        json_object_set_new(o, "hotplug_size", json_integer((json_int_t)hot));
    if (m->hugepage_size) {
        if (!m->hugepages)
            return FAIL("config.memory.hugepage_size: needs hugepages");
        if (!is_pow2(m->hugepage_size) || m->hugepage_size < (2u << 20) ||
            m->hugepage_size > (1ull << 30))
            return FAIL("config.memory.hugepage_size: must be a power of two, 2 MiB-1 GiB");
        json_object_set_new(o, "hugepage_size", json_integer((json_int_t)m->hugepage_size));
    }
    json_object_set_new(o, "mergeable", json_boolean(m->mergeable));
    json_object_set_new(o, "shared", json_boolean(m->shared));
    json_object_set_new(o, "hugepages", json_boolean(m->hugepages));
    json_object_set_new(o, "prefault", json_boolean(m->prefault));
    if (m->thp_opt_case == CLOUDHYPERVISOR__V1__MEMORY_CONFIG__THP_OPT_THP)
        json_object_set_new(o, "thp", json_boolean(m->thp));
    return 0;
}

static int check_queues(const char *field, uint32_t nq, uint32_t qs, chcp_error **err)
{
    if (nq > MAX_QUEUES)
        return FAIL("%s.num_queues: at most %d", field, MAX_QUEUES);
    if (qs && (!is_pow2(qs) || qs > MAX_QUEUE_SIZE))
        return FAIL("%s.queue_size: must be a power of two up to %d", field, MAX_QUEUE_SIZE);
    return 0;
}

static int build_disks(const vm_limits *lim, const Cloudhypervisor__V1__VmConfig *c,
                       const char *vm_dir, json_t *root, chcp_error **err)
{
    static const char *const types[] = {NULL, "Raw", "Qcow2", "FixedVhd", "Vhdx"};
    if (c->n_disks == 0)
        return 0;
    if (c->n_disks > VM_MAX_DISKS)
        return FAIL("config.disks: at most %d disks", VM_MAX_DISKS);
    json_t *arr = json_array();
    json_object_set_new(root, "disks", arr);
    for (size_t i = 0; i < c->n_disks; i++) {
        const Cloudhypervisor__V1__DiskConfig *d = c->disks[i];
        cleanup_free char *f = xasprintf("config.disks[%zu]", i);
        if (!d->path[0])
            return FAIL("%s.path: required", f);
        cleanup_free char *pf = xasprintf("%s.path", f);
        cleanup_free char *role = xasprintf("disk-%zu", i);
        cleanup_free char *staged = image_path(lim, pf, d->path, true, vm_dir, role, err);
        if (!staged)
            return -1;
        if (check_queues(f, d->num_queues, d->queue_size, err) < 0)
            return -1;
        if (!name_ok(d->id, 63))
            return FAIL("%s.id: up to 63 letters, digits, '_', '-', '.'", f);
        cleanup_free char *sf = xasprintf("%s.serial", f);
        if (check_text(sf, d->serial, 20, err) < 0)
            return -1;
        if ((unsigned)d->image_type >= ARRAY_SIZE(types))
            return FAIL("%s.image_type: unknown value %d", f, (int)d->image_type);
        json_t *o = json_pack("{s:s,s:b,s:b}", "path", staged, "readonly", d->readonly, "direct",
                              d->direct);
        if (d->num_queues)
            json_object_set_new(o, "num_queues", json_integer(d->num_queues));
        if (d->queue_size)
            json_object_set_new(o, "queue_size", json_integer(d->queue_size));
        if (d->id[0])
            json_object_set_new(o, "id", json_string(d->id));
        if (d->serial[0])
            json_object_set_new(o, "serial", json_string(d->serial));
        if (d->image_type)
            json_object_set_new(o, "image_type", json_string(types[d->image_type]));
        json_array_append_new(arr, o);
    }
    return 0;
}

static int build_net(const Cloudhypervisor__V1__VmConfig *c, json_t *root, chcp_error **err)
{
    if (c->n_net == 0)
        return 0;
    if (c->n_net > MAX_NETS)
        return FAIL("config.net: at most %d devices", MAX_NETS);
    json_t *arr = json_array();
    json_object_set_new(root, "net", arr);
    for (size_t i = 0; i < c->n_net; i++) {
        const Cloudhypervisor__V1__NetConfig *n = c->net[i];
        cleanup_free char *f = xasprintf("config.net[%zu]", i);
        if (!name_ok(n->tap, 15))
            return FAIL("%s.tap: an interface name of up to 15 letters, digits, '_', '-', '.'", f);
        if ((n->ip[0] && !ipv4_ok(n->ip)) || (n->mask[0] && !ipv4_ok(n->mask)))
            return FAIL("%s: ip and mask must be IPv4 addresses", f);
        if ((n->mac[0] && !mac_ok(n->mac)) || (n->host_mac[0] && !mac_ok(n->host_mac)))
            return FAIL("%s: mac and host_mac must look like 12:34:56:78:9a:bc", f);
        if (n->mtu && (n->mtu < 68 || n->mtu > 65535))
            return FAIL("%s.mtu: must be 68-65535", f);
        if (n->num_queues % 2)
            return FAIL("%s.num_queues: must be even (one RX and one TX queue per pair)", f);
        if (check_queues(f, n->num_queues, n->queue_size, err) < 0)
            return -1;
        if (!name_ok(n->id, 63))
            return FAIL("%s.id: up to 63 letters, digits, '_', '-', '.'", f);
        json_t *o = json_object();
        const char *strs[][2] = {{"tap", n->tap},           {"ip", n->ip},
                                 {"mask", n->mask},         {"mac", n->mac},
                                 {"host_mac", n->host_mac}, {"id", n->id}};
        for (size_t k = 0; k < ARRAY_SIZE(strs); k++)
            if (strs[k][1][0])
                json_object_set_new(o, strs[k][0], json_string(strs[k][1]));
        if (n->mtu)
            json_object_set_new(o, "mtu", json_integer(n->mtu));
        if (n->num_queues)
            json_object_set_new(o, "num_queues", json_integer(n->num_queues));
        if (n->queue_size)
            json_object_set_new(o, "queue_size", json_integer(n->queue_size));
        json_array_append_new(arr, o);
    }
    return 0;
}

static bool sun_path_fits(const char *path)
{
    return strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path);
}

/*
 * Serial port and virtio console: the mode is the client's, the host path is
 * chcp's (<dir>/<name>.log or <dir>/<name>.sock); a client-chosen host path is
 * refused. An unset console becomes a file so guest output is kept.
 */
static int build_console(const Cloudhypervisor__V1__ConsoleConfig *cc, const char *name,
                         const char *vm_dir, json_t *root, chcp_error **err)
{
    static const char *const modes[] = {NULL, "Off", "Pty", "Tty", "File", "Socket", "Null"};
    int mode = cc ? (int)cc->mode : 0;
    if (mode < 0 || (size_t)mode >= ARRAY_SIZE(modes))
        return FAIL("config.%s.mode: unknown value %d", name, mode);
    if (cc && (cc->file[0] || cc->socket[0]))
        return FAIL("config.%s: file and socket paths are chosen by chcp (inside the VM's "
                    "directory); leave them empty",
                    name);
    if (mode == 0)
        mode = strcmp(name, "console") == 0 ? 4 /* File */ : 6 /* Null */;
    json_t *o = json_pack("{s:s}", "mode", modes[mode]);
    json_object_set_new(root, name, o);
    if (mode == 4) {
        cleanup_free char *p = xasprintf("%s/%s.log", vm_dir, name);
        json_object_set_new(o, "file", json_string(p));
    } else if (mode == 5) {
        cleanup_free char *p = xasprintf("%s/%s.sock", vm_dir, name);
        if (!sun_path_fits(p))
            return error_set(err, CHCP_FAILED_PRECONDITION,
                             "config.%s: socket path %s is too long (shorten CHCP_STATE_DIR)", name,
                             p);
        json_object_set_new(o, "socket", json_string(p));
    }
    return 0;
}

static int build_misc(const Cloudhypervisor__V1__VmConfig *c, const char *vm_dir, json_t *root,
                      chcp_error **err)
{
    const char *src = c->rng && c->rng->src[0] ? c->rng->src : "/dev/urandom";
    if (strcmp(src, "/dev/urandom") != 0 && strcmp(src, "/dev/random") != 0)
        return FAIL("config.rng.src: only /dev/urandom and /dev/random are allowed");
    json_object_set_new(root, "rng", json_pack("{s:s}", "src", src));
    /* pvpanic lets the VMM report guest kernel panics as events. */
    json_object_set_new(root, "pvpanic", json_true());
    if (c->vsock) {
        const Cloudhypervisor__V1__VsockConfig *v = c->vsock;
        if (v->cid < 3 || v->cid >= 0xffffffffu)
            return FAIL("config.vsock.cid: must be 3-4294967294");
        if (v->socket[0])
            return FAIL("config.vsock.socket: chosen by chcp (inside the VM's directory); "
                        "leave it empty");
        if (!name_ok(v->id, 63))
            return FAIL("config.vsock.id: up to 63 letters, digits, '_', '-', '.'");
        cleanup_free char *p = xasprintf("%s/vsock.sock", vm_dir);
        if (!sun_path_fits(p))
            return error_set(err, CHCP_FAILED_PRECONDITION,
                             "config.vsock: socket path %s is too long (shorten CHCP_STATE_DIR)",
                             p);
        json_t *o = json_pack("{s:I,s:s}", "cid", (json_int_t)v->cid, "socket", p);
        if (v->id[0])
            json_object_set_new(o, "id", json_string(v->id));
        json_object_set_new(root, "vsock", o);
    }
    if (c->platform) {
        const Cloudhypervisor__V1__PlatformConfig *p = c->platform;
        if (p->num_pci_segments > MAX_PCI_SEGMENTS)
            return FAIL("config.platform.num_pci_segments: at most %d", MAX_PCI_SEGMENTS);
        if (check_text("config.platform.serial_number", p->serial_number, MAX_TEXT, err) < 0)
            return -1;
        if (p->uuid[0] && !uuid_ok(p->uuid))
            return FAIL("config.platform.uuid: not a UUID");
        if (p->n_oem_strings > MAX_OEM_STRINGS)
            return FAIL("config.platform.oem_strings: at most %d", MAX_OEM_STRINGS);
        json_t *o = json_object();
        if (p->num_pci_segments)
            json_object_set_new(o, "num_pci_segments", json_integer(p->num_pci_segments));
        if (p->serial_number[0])
            json_object_set_new(o, "serial_number", json_string(p->serial_number));
        if (p->uuid[0])
            json_object_set_new(o, "uuid", json_string(p->uuid));
        if (p->n_oem_strings) {
            json_t *a = json_array();
            for (size_t i = 0; i < p->n_oem_strings; i++) {
                cleanup_free char *of = xasprintf("config.platform.oem_strings[%zu]", i);
                if (check_text(of, p->oem_strings[i], MAX_TEXT, err) < 0) {
                    json_decref(a);
                    json_decref(o);
                    return -1;
                }
                json_array_append_new(a, json_string(p->oem_strings[i]));
            }
            json_object_set_new(o, "oem_strings", a);
        }
        json_object_set_new(root, "platform", o);
    }
    return 0;
}

char *vm_config_build(const vm_limits *lim, const Cloudhypervisor__V1__VmConfig *c,
                      const char *vm_dir, chcp_error **err)
{
    if (!c) {
        error_set(err, CHCP_INVALID_ARGUMENT, "config: required");
        return NULL;
    }
    json_t *root = json_object();
    uint32_t max_vcpus = 1;
    int rc = build_payload(lim, c->payload, vm_dir, root, err);
    if (rc == 0)
        rc = build_cpus(lim, c->cpus, root, &max_vcpus, err);
    if (rc == 0)
        rc = build_memory(lim, c->memory, root, err);
    if (rc == 0)
        rc = build_disks(lim, c, vm_dir, root, err);
    if (rc == 0)
        rc = build_net(c, root, err);
    if (rc == 0)
        rc = build_console(c->serial, "serial", vm_dir, root, err);
    if (rc == 0)
        rc = build_console(c->console, "console", vm_dir, root, err);
    if (rc == 0)
        rc = build_misc(c, vm_dir, root, err);
    char *out = rc == 0 ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (rc == 0 && !out)
        error_set(err, CHCP_INTERNAL, "config: JSON encoding failed");
    return out;
}
