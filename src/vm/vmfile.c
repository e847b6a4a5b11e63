/*
 * vmfile.c - the per-VM record file, <state_dir>/vms/<id>/vm.json.
 *
 * Why it exists: chcp.db is one file; if it is deleted, truncated, emptied
 * or replaced while VMs run, the next start must not take every running VMM
 * for an orphan. Each VM directory therefore carries what is needed to
 * rebuild the VM's row: id, backend, configuration (packed VmConfig, base64),
 * labels, the VMM's identity (pid + start time), state, exit, timestamps, and
 * the phase of its life - `creating` (CreateVm never acknowledged: a VMM
 * found next to it may be reaped), `active`, or `deleting` (the removal was
 * asked for and is finished by the next start). docs/durability.md says who
 * wins when vm.json and the store disagree.
 *
 * It is written only when one of those facts changes (the render hash leaves
 * out the row's generation), atomically (vm.json.tmp, rename), by the store's
 * writer thread before the row of the same write is committed. It is not
 * fsync'ed, like the rows themselves (synchronous=NORMAL, store.c): an fsync
 * per CreateVm was measured at +12 ms median on a busy host, for the power
 * loss case only, which stops every VMM anyway.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "vm/vm_internal.h"

/* A record is a few KiB (the configuration dominates); refuse anything that
 * could not be one instead of reading it whole. */
#define VM_RECORD_MAX_BYTES (4u << 20)

static const char *const phase_names[] = {
    [VM_PHASE_CREATING] = "creating",
    [VM_PHASE_ACTIVE] = "active",
    [VM_PHASE_DELETING] = "deleting",
};

const char *vm_record_phase_name(vm_record_phase p)
{
    return (unsigned)p < ARRAY_SIZE(phase_names) ? phase_names[p] : "unknown";
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

char *vm_record_render(const vm_record_file *f, uint64_t *hash)
{
    json_t *o = json_object();
    json_object_set_new(o, "format", json_integer(VM_RECORD_FORMAT));
    json_object_set_new(o, "id", json_string(f->id));
    json_object_set_new(o, "backend",
                        json_string(f->backend ? f->backend : VM_STORE_DEFAULT_BACKEND));
    json_object_set_new(o, "phase", json_string(vm_record_phase_name(f->phase)));
    chcp_buf b64 = CHCP_BUF_INIT;
    base64_encode(&b64, f->config, f->config_len, false, true);
    json_object_set_new(o, "config", json_stringn(b64.len ? (char *)b64.data : "", b64.len));
    buf_free(&b64);
    json_t *labels =
        f->labels_len ? json_loadb((const char *)f->labels, f->labels_len, 0, NULL) : NULL;
    json_object_set_new(o, "labels", json_is_object(labels) ? labels : json_object());
    if (labels && !json_is_object(labels))
        json_decref(labels);
    json_object_set_new(o, "state", json_string(vm_state_name((vm_state)f->state)));
    if (f->vmm_pid > 0)
        json_object_set_new(o, "vmm",
                            json_pack("{s:I, s:I}", "pid", (json_int_t)f->vmm_pid, "start_time",
                                      (json_int_t)f->vmm_start_time));
    if (f->has_exit)
        json_object_set_new(o, "exit",
                            json_pack("{s:i, s:i, s:I}", "code", (int)f->exit_code, "signal",
                                      (int)f->exit_signal, "at_ns", (json_int_t)f->exited_at_ns));
    json_object_set_new(o, "created_at_ns", json_integer((json_int_t)f->created_at_ns));
    json_object_set_new(o, "state_changed_at_ns", json_integer((json_int_t)f->state_changed_at_ns));
    char *stable = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!stable)
        abort(); /* out of memory */
    size_t n = strlen(stable);
    if (hash)
        *hash = fnv1a(stable, n);
    /* The generation goes last and outside the hash: a write that changes
     * nothing above does not rewrite the file. */
    stable[n - 1] = '\0';
    char *text = xasprintf("%s,\"generation\":%llu}\n", stable, (unsigned long long)f->generation);
    free(stable);
    return text;
}

/* ---- parsing ------------------------------------------------------------------ */

static int state_from_name(const char *name)
{
    for (int s = VM_CREATING; s <= VM_CRASHED; s++)
        if (strcmp(vm_state_name((vm_state)s), name) == 0)
            return s;
    return -1;
}

static bool get_u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = 0;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

void vm_record_file_clear(vm_record_file *f)
{
    free((char *)f->id);
    free((char *)f->backend);
    free((void *)f->config);
    free((void *)f->labels);
    memset(f, 0, sizeof(*f));
}

static int parse_vmm(json_t *root, vm_record_file *f)
{
    json_t *vmm = json_object_get(root, "vmm");
    uint64_t pid = 0;
    if (vmm && (!json_is_object(vmm) || !get_u64(vmm, "pid", &pid) || pid == 0 || pid > INT32_MAX ||
                !get_u64(vmm, "start_time", &f->vmm_start_time)))
        return -1;
    f->vmm_pid = (int64_t)pid;
    json_t *ex = json_object_get(root, "exit");
    if (ex) {
        json_t *code = json_object_get(ex, "code"), *sig = json_object_get(ex, "signal");
        if (!json_is_object(ex) || !json_is_integer(code) || !json_is_integer(sig) ||
            !get_u64(ex, "at_ns", &f->exited_at_ns))
            return -1;
        f->has_exit = true;
        f->exit_code = (int32_t)json_integer_value(code);
        f->exit_signal = (int32_t)json_integer_value(sig);
    }
    return 0;
}

static int parse_phase(const char *name)
{
    for (size_t p = 0; name && p < ARRAY_SIZE(phase_names); p++)
        if (strcmp(name, phase_names[p]) == 0)
            return (int)p;
    return -1;
}

int vm_record_parse(const char *text, size_t len, vm_record_file *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return error_set(err, CHCP_DATA_LOSS, "not a JSON object (%s)", je.text);
    }
    const char *what = NULL;
    json_t *format = json_object_get(root, "format");
    const char *id = json_string_value(json_object_get(root, "id"));
    const char *backend = json_string_value(json_object_get(root, "backend"));
    int phase = parse_phase(json_string_value(json_object_get(root, "phase")));
    const char *config = json_string_value(json_object_get(root, "config"));
    json_t *labels = json_object_get(root, "labels");
    const char *state = json_string_value(json_object_get(root, "state"));
    chcp_buf cfg = CHCP_BUF_INIT;
    if (!json_is_integer(format) || json_integer_value(format) != VM_RECORD_FORMAT)
        what = "format";
    else if (!id || vm_validate_id(id, NULL) < 0)
        what = "id";
    else if (!backend || !backend[0])
        what = "backend";
    else if (phase < 0)
        what = "phase";
    else if (!config || base64_decode(&cfg, config, strlen(config)) < 0)
        what = "config";
    else if (labels && !json_is_object(labels))
        what = "labels";
    else if (!state || state_from_name(state) < 0)
        what = "state";
    else if (parse_vmm(root, out) < 0)
        what = "vmm or exit";
    else if (!get_u64(root, "created_at_ns", &out->created_at_ns) ||
             !get_u64(root, "state_changed_at_ns", &out->state_changed_at_ns) ||
             !get_u64(root, "generation", &out->generation))
        what = "timestamps";
    if (what) {
        buf_free(&cfg);
        json_decref(root);
        memset(out, 0, sizeof(*out));
        return error_set(err, CHCP_DATA_LOSS, "bad field %s", what);
    }
    out->id = xstrdup(id);
    out->backend = xstrdup(backend);
    out->phase = (vm_record_phase)phase;
    out->config_len = cfg.len;
    out->config = cfg.len ? cfg.data : NULL;
    if (!cfg.len)
        buf_free(&cfg);
    char *l = labels ? json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("{}");
    out->labels = (uint8_t *)l;
    out->labels_len = l ? strlen(l) : 0;
    out->state = state_from_name(state);
    json_decref(root);
    return 0;
}

int vm_record_read(const char *dir, vm_record_file *out, chcp_error **err)
{
    memset(out, 0, sizeof(*out));
    cleanup_free char *path = xasprintf("%s/%s", dir, VM_RECORD_FILE);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return error_set_errno(err, errno == ENOENT ? CHCP_NOT_FOUND : CHCP_DATA_LOSS, errno, "%s",
                               path);
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > VM_RECORD_MAX_BYTES) {
        close(fd);
        return error_set(err, CHCP_DATA_LOSS, "%s: not a regular file of at most %u bytes", path,
                         VM_RECORD_MAX_BYTES);
    }
    char *text = xmalloc((size_t)sb.st_size + 1);
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, text + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    int rc = vm_record_parse(text, got, out, err);
    free(text);
    if (rc < 0 && err && *err)
        error_prefix(*err, "%s", path);
    return rc;
}

int vm_record_write(const char *dir, const char *text, chcp_error **err)
{
    cleanup_free char *tmp = xasprintf("%s/%s.tmp", dir, VM_RECORD_FILE);
    cleanup_free char *path = xasprintf("%s/%s", dir, VM_RECORD_FILE);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_set_errno(err, CHCP_UNAVAILABLE, errno, "%s", tmp);
    size_t len = strlen(text), done = 0;
    int e = 0;
    while (done < len && !e) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno != EINTR)
            e = errno;
        else if (n > 0)
            done += (size_t)n;
    }
    if (close(fd) < 0 && !e)
        e = errno;
    if (!e && rename(tmp, path) < 0)
        e = errno;
    if (e) {
        unlink(tmp);
        return error_set_errno(err, CHCP_UNAVAILABLE, e, "writing %s", path);
    }
    return 0;
}
