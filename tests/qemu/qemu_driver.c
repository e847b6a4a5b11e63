/*
 * qemu_driver.c - a test program that runs one real QEMU through chcp's own
 * QEMU pieces (src/vmm/qemu: argv builder, spawn, QMP client, accelerator
 * choice) and lets a test script steer it with JSON lines.
 *
 *   qemu-driver --dir DIR --kernel K [--initrd I] [--append S]
 *       [--machine microvm|q35] [--accel auto|kvm|tcg] [--tiny] [--vcpus N]
 *       [--memory MiB] [--disk PATH[:ro]]... [--tap NAME[,MAC]]...
 *       [--no-pvpanic] [--cont] [--marker TEXT] [--qemu PATH]
 *
 * stdin, one JSON object per line:
 *   {"id": 1, "execute": "stop", "arguments": {...}, "timeout_ms": 5000}
 *   {"id": 2, "signal": 9}          signal QEMU (pidfd; 9 also its group)
 *   {"id": 3, "rss": true}          QEMU's VmRSS in KiB
 *   EOF                             SIGKILL QEMU, wait for it, exit
 * stdout, one JSON object per line, each with "t_ms" (since the spawn):
 *   {"spawned": {"pid", "qmp", "accel", "accel_why"}}
 *   {"ready": {"version"}} | {"ready": {"error"}}
 *   {"reply": {"id", "return"}} | {"reply": {"id", "error": {"code", "message"}}}
 *   {"event": {"name", "guest", "reason", "data"}}
 *   {"marker": {"text"}}            TEXT appeared in the console file (--marker)
 *   {"closed": {"code", "message"}} the QMP connection ended
 *   {"exit": {"status", "signal", "reason", "stderr"}}
 * --cont sends `cont` as soon as QMP is ready (its reply is id 0).
 * TAPs are opened here by name (TUNSETIFF) in the current network namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "vmm/qemu/qemu.h"

static struct {
    uv_loop_t *loop;
    qemu_child child;
    const char *dir;
    qmp_client *qmp;
    uv_pipe_t in;
    chcp_buf inbuf;
    uv_poll_t pidfd_poll;
    uv_timer_t marker_timer;
    const char *marker;
    const char *console;
    uint64_t t0;
    bool exited;
    bool stdin_eof;
    bool auto_cont;
} d;

static void emit(const char *kind, json_t *body)
{
    json_t *o = json_object();
    json_object_set_new(o, kind, body);
    json_object_set_new(o, "t_ms", json_real((double)(time_mono_ns() - d.t0) / 1e6));
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

static json_t *error_json(const chcp_error *err)
{
    return json_pack("{s:s, s:s}", "code", code_name(err->code), "message", err->message);
}

static void on_reply(qmp_client *q, const json_t *ret, const chcp_error *err, void *ud)
{
    json_int_t id = (json_int_t)(intptr_t)ud;
    if (err)
        emit("reply", json_pack("{s:I, s:o}", "id", id, "error", error_json(err)));
    else
        emit("reply", json_pack("{s:I, s:O}", "id", id, "return", (json_t *)ret));
}

static void on_ready(qmp_client *q, const json_t *version, const chcp_error *err, void *ud)
{
    if (err) {
        emit("ready", json_pack("{s:o}", "error", error_json(err)));
        return;
    }
    emit("ready", json_pack("{s:O}", "version", (json_t *)version));
    if (d.auto_cont) {
        chcp_error *e = NULL;
        if (qmp_execute(q, "cont", NULL, 0, NULL, 0, on_reply, (void *)(intptr_t)0, &e) < 0) {
            emit("reply", json_pack("{s:i, s:o}", "id", 0, "error", error_json(e)));
            error_free(e);
        }
    }
}

static void on_event(qmp_client *q, const qmp_event *ev, void *ud)
{
    emit("event", json_pack("{s:s, s:b, s:s?, s:O?}", "name", ev->name, "guest", ev->guest,
                            "reason", ev->reason, "data", (json_t *)ev->data));
}

static void on_closed(qmp_client *q, const chcp_error *err, void *ud)
{
    emit("closed", error_json(err));
}

static void finish_if_done(void)
{
    if (d.exited && d.stdin_eof) {
        qmp_client_free(d.qmp);
        d.qmp = NULL;
        uv_stop(d.loop);
    }
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

static void check_marker(uv_timer_t *t)
{
    FILE *f = fopen(d.console, "re");
    if (!f)
        return;
    char buf[4096];
    size_t keep = strlen(d.marker);
    chcp_buf all = CHCP_BUF_INIT;
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        buf_append(&all, buf, n);
    fclose(f);
    buf_append_byte(&all, 0);
    if (keep && memmem(all.data, all.len, d.marker, keep)) {
        emit("marker", json_pack("{s:s}", "text", d.marker));
        uv_timer_stop(t);
    }
    buf_free(&all);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static void handle_line(const char *line, size_t len)
{
    json_error_t je;
    json_t *m = json_loadb(line, len, 0, &je);
    if (!json_is_object(m)) {
        emit("reply", json_pack("{s:i, s:{s:s, s:s}}", "id", -1, "error", "code",
                                "invalid_argument", "message", "not a JSON object"));
        json_decref(m);
        return;
    }
    json_int_t id = json_integer_value(json_object_get(m, "id"));
    const char *cmd = json_string_value(json_object_get(m, "execute"));
    json_t *sigv = json_object_get(m, "signal");
    if (cmd) {
        chcp_error *err = NULL;
        json_t *args = json_object_get(m, "arguments");
        uint64_t tmo = (uint64_t)json_integer_value(json_object_get(m, "timeout_ms"));
        if (!d.qmp) {
            error_set(&err, CHCP_UNAVAILABLE, "no QMP client");
            on_reply(NULL, NULL, err, (void *)(intptr_t)id);
        } else if (qmp_execute(d.qmp, cmd, args, tmo, NULL, 0, on_reply, (void *)(intptr_t)id,
                               &err) < 0) {
            on_reply(d.qmp, NULL, err, (void *)(intptr_t)id);
        }
        error_free(err);
    } else if (json_is_integer(sigv)) {
        int r = qemu_process_signal(&d.child, (int)json_integer_value(sigv));
        emit("reply", json_pack("{s:I, s:{s:b}}", "id", id, "return", "sent", r == 0));
    } else if (json_object_get(m, "rss")) {
        emit("reply",
             json_pack("{s:I, s:{s:i}}", "id", id, "return", "rss_kib", (int)rss_kib(d.child.pid)));
    } else {
        emit("reply", json_pack("{s:I, s:{s:s, s:s}}", "id", id, "error", "code",
                                "invalid_argument", "message", "unknown request"));
    }
    json_decref(m);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char mem[65536];
    buf->base = mem;
    buf->len = sizeof(mem);
}

static void on_stdin(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n > 0) {
        buf_append(&d.inbuf, buf->base, (size_t)n);
        size_t start = 0;
        for (size_t i = 0; i < d.inbuf.len; i++)
            if (d.inbuf.data[i] == '\n') {
                handle_line((const char *)d.inbuf.data + start, i - start);
                start = i + 1;
            }
        buf_consume(&d.inbuf, start);
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        d.stdin_eof = true;
        if (!d.exited)
            qemu_process_signal(&d.child, SIGKILL);
        finish_if_done();
    }
}

static int open_tap(const char *name, chcp_error **err)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, CHCP_FAILED_PRECONDITION, errno, "/dev/net/tun");
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(err, CHCP_FAILED_PRECONDITION, e, "TUNSETIFF %s", name);
    }
    return fd;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int usage(const char *why)
{
    fprintf(stderr, "qemu-driver: %s (see the header of tests/qemu/qemu_driver.c)\n", why);
    return 64;
}

int main(int argc, char **argv)
{
    qemu_vm_desc desc = {
        .machine = QEMU_MACHINE_MICROVM, .vcpus = 1, .memory_mib = 256, .pvpanic = true};
    qemu_disk disks[QEMU_MAX_DISKS];
    qemu_nic nics[QEMU_MAX_NICS];
    char *tap_args[QEMU_MAX_NICS];
    const char *qemu = "/usr/bin/qemu-system-x86_64";
    const char *accel = "auto";
    bool tiny = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--tiny") == 0) {
            tiny = true;
            continue;
        }
        if (strcmp(a, "--no-pvpanic") == 0) {
            desc.pvpanic = false;
            continue;
        }
        if (strcmp(a, "--cont") == 0) {
            d.auto_cont = true;
            continue;
        }
        if (!v)
            return usage("missing value");
        i++;
        if (strcmp(a, "--dir") == 0)
            d.dir = v;
        else if (strcmp(a, "--kernel") == 0)
            desc.kernel = v;
        else if (strcmp(a, "--initrd") == 0)
            desc.initrd = v;
        else if (strcmp(a, "--append") == 0)
            desc.cmdline = v;
        else if (strcmp(a, "--qemu") == 0)
            qemu = v;
        else if (strcmp(a, "--accel") == 0)
            accel = v;
        else if (strcmp(a, "--marker") == 0)
            d.marker = v;
        else if (strcmp(a, "--machine") == 0)
            desc.machine = strcmp(v, "q35") == 0 ? QEMU_MACHINE_Q35 : QEMU_MACHINE_MICROVM;
        else if (strcmp(a, "--vcpus") == 0)
            desc.vcpus = (unsigned)atoi(v);
        else if (strcmp(a, "--memory") == 0)
            desc.memory_mib = (uint64_t)atoll(v);
        else if (strcmp(a, "--disk") == 0 && desc.ndisks < QEMU_MAX_DISKS) {
            char *p = xstrdup(v);
            char *ro = strrchr(p, ':');
            bool readonly = ro && strcmp(ro, ":ro") == 0;
            if (readonly)
                *ro = 0;
            disks[desc.ndisks++] = (qemu_disk){.path = p, .readonly = readonly};
        } else if (strcmp(a, "--tap") == 0 && desc.nnics < QEMU_MAX_NICS) {
            char *p = xstrdup(v);
            char *mac = strchr(p, ',');
            if (mac)
                *mac++ = 0;
            chcp_error *err = NULL;
            int fd = open_tap(p, &err);
            if (fd < 0) {
                fprintf(stderr, "qemu-driver: %s\n", err->message);
                return 1;
            }
            tap_args[desc.nnics] = p;
            nics[desc.nnics++] = (qemu_nic){.tap_fd = fd, .mac = mac};
        } else
            return usage(a);
    }
    if (!d.dir || !desc.kernel)
        return usage("--dir and --kernel are required");
    desc.disks = disks;
    desc.nics = nics;
    cleanup_free char *console = xasprintf("%s/console.log", d.dir);
    desc.console_path = console;
    d.console = console;

    qemu_accel_mode mode;
    if (qemu_accel_mode_parse(accel, &mode) < 0)
        return usage("--accel is auto, kvm or tcg");
    char why[300];
    desc.accel = qemu_accel_choose(mode, !tiny, why, sizeof(why));

    signal(SIGPIPE, SIG_IGN);
    d.loop = uv_default_loop();
    d.t0 = time_mono_ns();
    chcp_error *err = NULL;
    if (qemu_process_spawn(qemu, d.dir, &desc, &d.child, &err) < 0) {
        emit("exit", json_pack("{s:i, s:i, s:s, s:s}", "status", -1, "signal", 0, "reason",
                               err->message, "stderr", ""));
        return 1;
    }
    for (size_t i = 0; i < desc.nnics; i++)
        close(nics[i].tap_fd); /* QEMU has its own copies now */
    emit("spawned",
         json_pack("{s:i, s:s, s:s, s:s}", "pid", (int)d.child.pid, "qmp", d.child.qmp_path,
                   "accel", desc.accel == QEMU_ACCEL_KVM ? "kvm" : "tcg", "accel_why", why));
    static const qmp_callbacks cbs = {
        .on_ready = on_ready, .on_event = on_event, .on_closed = on_closed};
    d.qmp = qmp_client_connect(d.loop, d.child.qmp_path, &cbs, NULL, &err);
    if (!d.qmp) {
        emit("ready", json_pack("{s:o}", "error", error_json(err)));
        error_free(err);
        err = NULL;
    }
    uv_poll_init(d.loop, &d.pidfd_poll, d.child.pidfd);
    uv_poll_start(&d.pidfd_poll, UV_READABLE, on_pidfd);
    if (d.marker) {
        uv_timer_init(d.loop, &d.marker_timer);
        uv_timer_start(&d.marker_timer, check_marker, 5, 5);
    }
    uv_pipe_init(d.loop, &d.in, 0);
    uv_pipe_open(&d.in, 0);
    uv_read_start((uv_stream_t *)&d.in, alloc_cb, on_stdin);
    uv_run(d.loop, UV_RUN_DEFAULT);
    qmp_client_free(d.qmp);
    d.qmp = NULL;
    uv_walk(d.loop, close_handle, NULL);
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    qemu_child_clear(&d.child);
    buf_free(&d.inbuf);
    for (size_t i = 0; i < desc.ndisks; i++)
        free((char *)disks[i].path);
    for (size_t i = 0; i < desc.nnics; i++)
        free(tap_args[i]);
    return 0;
}
