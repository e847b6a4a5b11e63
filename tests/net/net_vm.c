/*
 * net_vm.c - one real VM with chcp's networking, for the end-to-end tests:
 * src/net sets the VM up (TAPs on the bridge or routed, addresses, rules, the
 * NoCloud seed), net_tap_open opens the TAP queues, and src/vmm/qemu starts
 * QEMU with them as -netdev tap,fd= and the seed as a read-only disk, exactly
 * what a backend does. The guest is tests/guest.
 *
 *   net-vm --state DIR --vm ID --dir VMDIR --kernel K [--initrd I]
 *          [--append S] [--nics N] [--user-data FILE] [--forward tcp:H:G]...
 *          [--cmdline] [--no-seed] [--hostname H] [--qemu PATH]
 * --cmdline appends the module's ip= to the kernel command line (without it
 * the guest reads the seed). stdout, JSON lines: {"net": {...}} (what setup
 * returned), {"spawned": {"pid"}}, {"running": true} once `cont` was
 * answered, {"exit": {...}} when QEMU ends. On stdin EOF QEMU is killed;
 * networking is left for the test to release (net-tool release).
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "net/net.h"
#include "vmm/qemu/qemu.h"

static struct {
    uv_loop_t *loop;
    qemu_child child;
    const char *dir;
    qmp_client *qmp;
    uv_pipe_t in;
    uv_poll_t pidfd_poll;
    bool exited, stdin_eof;
} d;

static void emit(const char *kind, json_t *body)
{
    json_t *o = json_object();
    json_object_set_new(o, kind, body);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

static int fail(const char *what, chcp_error *e)
{
    emit("error", json_pack("{s:s, s:s, s:s}", "what", what, "code", code_name(e->code), "message",
                            e->message));
    error_free(e);
    return 1;
}

static const char *env_get(const char *name, void *ud)
{
    return getenv(name);
}

static void finish_if_done(void)
{
    if (d.exited && d.stdin_eof) {
        qmp_client_free(d.qmp);
        d.qmp = NULL;
        uv_stop(d.loop);
    }
}

static void on_cont(qmp_client *q, const json_t *ret, const chcp_error *err, void *ud)
{
    if (err)
        emit("error", json_pack("{s:s, s:s}", "what", "cont", "message", err->message));
    else
        emit("running", json_true());
}

static void on_ready(qmp_client *q, const json_t *version, const chcp_error *err, void *ud)
{
    chcp_error *e = NULL;
    if (err)
        emit("error", json_pack("{s:s, s:s}", "what", "qmp", "message", err->message));
    else if (qmp_execute(q, "cont", NULL, 0, NULL, 0, on_cont, NULL, &e) < 0)
        fail("cont", e);
}

static void on_event(qmp_client *q, const qmp_event *ev, void *ud)
{
    emit("event", json_pack("{s:s}", "name", ev->name));
}

static void on_closed(qmp_client *q, const chcp_error *err, void *ud)
{
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    int st, sig;
    char reason[128];
    if (qemu_process_reap(d.child.pidfd, &st, &sig, reason, sizeof(reason)) == 1)
        return;
    uv_poll_stop(h);
    d.exited = true;
    char *tail = qemu_process_stderr_tail(d.dir);
    emit("exit", json_pack("{s:i, s:i, s:s, s:s}", "status", st, "signal", sig, "reason", reason,
                           "stderr", tail));
    free(tail);
    finish_if_done();
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char mem[4096];
    buf->base = mem;
    buf->len = sizeof(mem);
}

static void on_stdin(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n >= 0)
        return;
    uv_read_stop(s);
    d.stdin_eof = true;
    if (!d.exited)
        qemu_process_signal(&d.child, SIGKILL);
    finish_if_done();
}

static void close_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static json_t *net_json(const net_vm *v)
{
    json_t *nics = json_array();
    for (size_t i = 0; i < v->n_nics; i++)
        json_array_append_new(nics, json_pack("{s:s, s:s, s:s?, s:s?}", "tap", v->nics[i].tap,
                                              "mac", v->nics[i].mac, "ipv4",
                                              v->nics[i].has_ipv4 ? v->nics[i].ipv4 : NULL, "ipv6",
                                              v->nics[i].has_ipv6 ? v->nics[i].ipv6 : NULL));
    return json_pack("{s:o, s:s?, s:s?}", "nics", nics, "cmdline", v->cmdline, "seed",
                     v->seed_path);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    chcp_buf b = CHCP_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    buf_append_byte(&b, 0);
    return buf_steal_str(&b);
}

typedef struct options {
    const char *state, *qemu, *append, *user_data_file;
    bool cmdline, seed;
    net_vm_request req;
    net_nic_request nics[NET_MAX_NICS];
    net_port_forward fwd[8];
    qemu_vm_desc desc;
} options;

static int parse(options *o, int argc, char **argv)
{
    o->qemu = "/usr/bin/qemu-system-x86_64";
    o->append = "quiet";
    o->seed = true;
    o->req.nics = o->nics;
    o->req.n_nics = 1;
    o->req.forwards = o->fwd;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--cmdline") == 0) {
            o->cmdline = true;
            continue;
        }
        if (strcmp(a, "--no-seed") == 0) {
            o->seed = false;
            continue;
        }
        if (!v)
            return -1;
        i++;
        unsigned hp, gp;
        if (strcmp(a, "--state") == 0)
            o->state = v;
        else if (strcmp(a, "--vm") == 0)
            o->req.vm_id = v;
        else if (strcmp(a, "--dir") == 0)
            o->req.dir = d.dir = v;
        else if (strcmp(a, "--kernel") == 0)
            o->desc.kernel = v;
        else if (strcmp(a, "--initrd") == 0)
            o->desc.initrd = v;
        else if (strcmp(a, "--append") == 0)
            o->append = v;
        else if (strcmp(a, "--nics") == 0)
            o->req.n_nics = (size_t)atoi(v);
        else if (strcmp(a, "--hostname") == 0)
            o->req.hostname = v;
        else if (strcmp(a, "--user-data") == 0)
            o->user_data_file = v;
        else if (strcmp(a, "--qemu") == 0)
            o->qemu = v;
        else if (strcmp(a, "--forward") == 0 && o->req.n_forwards < ARRAY_SIZE(o->fwd) &&
                 sscanf(v, "tcp:%u:%u", &hp, &gp) == 2)
            o->fwd[o->req.n_forwards++] =
                (net_port_forward){NET_PROTO_TCP, (uint16_t)hp, (uint16_t)gp};
        else
            return -1;
    }
    return o->state && o->req.vm_id && d.dir && o->desc.kernel && o->req.n_nics <= 4 ? 0 : -1;
}

/* TAP queues for QEMU, the seed as a read-only disk, the command line. */
static int describe(options *o, const net_vm *v, qemu_nic *nics, qemu_disk *disk, char **cmdline)
{
    chcp_error *err = NULL;
    for (size_t i = 0; i < v->n_nics; i++) {
        int fd = net_tap_open(v->nics[i].tap, &err);
        if (fd < 0)
            return fail("tap-open", err);
        nics[i] = (qemu_nic){.tap_fd = fd, .mac = v->nics[i].mac};
    }
    o->desc.nics = nics;
    o->desc.nnics = v->n_nics;
    if (o->seed && v->seed_path) {
        *disk = (qemu_disk){.path = v->seed_path, .readonly = true};
        o->desc.disks = disk;
        o->desc.ndisks = 1;
    }
    *cmdline = xasprintf("%s%s%s", o->append, o->cmdline && v->cmdline ? " " : "",
                         o->cmdline && v->cmdline ? v->cmdline : "");
    o->desc.cmdline = *cmdline;
    return 0;
}

int main(int argc, char **argv)
{
    static options o;
    if (parse(&o, argc, argv) < 0) {
        fprintf(stderr, "net-vm: bad arguments (see tests/net/net_vm.c)\n");
        return 64;
    }
    cleanup_free char *user_data = NULL;
    if (o.user_data_file) {
        user_data = slurp(o.user_data_file, &o.req.user_data_len);
        o.req.user_data = user_data;
    }
    net_config cfg;
    chcp_error *err = NULL;
    if (net_config_load(&cfg, env_get, NULL, NULL, &err) < 0)
        return fail("config", err);
    net_ctx *n = net_open(&cfg, o.state, &err);
    net_config_free(&cfg);
    if (!n)
        return fail("open", err);
    net_vm v;
    if (net_vm_setup(n, &o.req, &v, &err) < 0) {
        net_close(n);
        return fail("setup", err);
    }
    net_close(n);
    emit("net", net_json(&v));

    qemu_nic nics[QEMU_MAX_NICS];
    qemu_disk disk;
    cleanup_free char *cmdline = NULL;
    cleanup_free char *console = xasprintf("%s/console.log", d.dir);
    o.desc.machine = QEMU_MACHINE_MICROVM;
    o.desc.vcpus = 1;
    o.desc.memory_mib = 256;
    o.desc.pvpanic = true;
    o.desc.console_path = console;
    char why[300];
    o.desc.accel = qemu_accel_choose(QEMU_ACCEL_MODE_TCG, true, why, sizeof(why));
    if (describe(&o, &v, nics, &disk, &cmdline) != 0)
        return 1;

    signal(SIGPIPE, SIG_IGN);
    d.loop = uv_default_loop();
    int rc = qemu_process_spawn(o.qemu, d.dir, &o.desc, &d.child, &err);
    for (size_t i = 0; i < o.desc.nnics; i++)
        close(nics[i].tap_fd); /* QEMU holds its own copies */
    net_vm_clear(&v);
    if (rc < 0)
        return fail("spawn", err);
    emit("spawned", json_pack("{s:i}", "pid", (int)d.child.pid));
    static const qmp_callbacks cbs = {
        .on_ready = on_ready, .on_event = on_event, .on_closed = on_closed};
    d.qmp = qmp_client_connect(d.loop, d.child.qmp_path, &cbs, NULL, &err);
    if (!d.qmp)
        fail("qmp", err);
    uv_poll_init(d.loop, &d.pidfd_poll, d.child.pidfd);
    uv_poll_start(&d.pidfd_poll, UV_READABLE, on_pidfd);
    uv_pipe_init(d.loop, &d.in, 0);
    uv_pipe_open(&d.in, 0);
    uv_read_start((uv_stream_t *)&d.in, alloc_cb, on_stdin);
    uv_run(d.loop, UV_RUN_DEFAULT);
    qmp_client_free(d.qmp);
    uv_walk(d.loop, close_handle, NULL);
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    qemu_child_clear(&d.child);
    return 0;
}
