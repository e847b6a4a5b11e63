/*
 * test_ch_process.c - spawning and supervising VMM processes, without KVM.
 *
 * The "VMM" is this very test binary: when started with `--api-socket` as
 * its first argument it turns into a small fake cloud-hypervisor (serving
 * the API on the inherited fd 3, writing events to fd 4), whose behaviour is
 * picked by a `--fake=<mode>` extra argument. It can report what it was given
 * (fds, environment, session, signal state), so the tests check the spawn
 * hygiene from the child's side.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>

#include "vmm/ch/ch.h"
#include "ch_test_util.h"

/* ---- the fake VMM ------------------------------------------------------------------ */

static char fake_args[2048];

static void fake_event(const char *source, const char *event, bool split)
{
    char buf[512];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int n = snprintf(buf, sizeof(buf),
                     "{\n  \"timestamp\": {\n    \"secs\": %ld,\n    \"nanos\": %ld\n  },\n"
                     "  \"source\": \"%s\",\n  \"event\": \"%s\",\n  \"properties\": null\n}\n\n",
                     (long)ts.tv_sec, ts.tv_nsec, source, event);
    if (split) { /* a write cut in the middle, as a reader may see it */
        ssize_t w = write(4, buf, 20);
        usleep(50000);
        w = write(4, buf + 20, (size_t)n - 20);
        (void)w;
        return;
    }
    ssize_t w = write(4, buf, (size_t)n);
    (void)w;
}

static void fake_reply(int c, int status, const char *body)
{
    char buf[4096];
    int n;
    if (status == 204)
        n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 204 \r\nServer: Cloud Hypervisor API\r\n"
                     "Connection: keep-alive\r\n\r\n");
    else
        n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d \r\nServer: Cloud Hypervisor API\r\nConnection: keep-alive\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     status, strlen(body), body);
    ssize_t w = write(c, buf, (size_t)n);
    (void)w;
}

static void proc_status_field(const char *key, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    out[0] = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, strlen(key)) == 0)
            snprintf(out, cap, "%s",
                     line + strlen(key) + 1 + strspn(line + strlen(key) + 1, "\t "));
    if (f)
        fclose(f);
    out[strcspn(out, "\n")] = 0;
}

static void fake_report(int c)
{
    extern char **environ;
    char fds[256] = "", env[512] = "", in[128] = "", blk[64], ign[64];
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && atoi(de->d_name) != dirfd(d) && atoi(de->d_name) != c)
            if (strlen(fds) + strlen(de->d_name) + 2 < sizeof(fds)) {
                strcat(fds, de->d_name);
                strcat(fds, " ");
            }
    if (d)
        closedir(d);
    for (char **e = environ; *e; e++)
        snprintf(env + strlen(env), sizeof(env) - strlen(env), "%s;", *e);
    ssize_t n = readlink("/proc/self/fd/0", in, sizeof(in) - 1);
    in[n > 0 ? n : 0] = 0;
    proc_status_field("SigBlk:", blk, sizeof(blk));
    proc_status_field("SigIgn:", ign, sizeof(ign));
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:s}", "fds", fds, "env", env, "stdin",
                          in, "pid", (json_int_t)getpid(), "sid", (json_int_t)getsid(0), "pgid",
                          (json_int_t)getpgid(0), "sigblk", blk, "sigign", ign, "args", fake_args);
    char *s = json_dumps(o, JSON_COMPACT);
    fake_reply(c, 200, s);
    free(s);
    json_decref(o);
}

/* Read one request; returns the path or NULL at EOF. */
static char *fake_read(int c, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(c, buf + len, cap - 1 - len);
        if (n <= 0)
            return NULL;
        len += (size_t)n;
        buf[len] = 0;
        char *hend = strstr(buf, "\r\n\r\n");
        if (!hend)
            continue;
        const char *cl = strcasestr(buf, "content-length:");
        if (len < (size_t)(hend + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0))
            continue;
        char *path = strchr(buf, ' ');
        if (!path)
            return NULL;
        path++;
        path[strcspn(path, " ")] = 0;
        return path;
    }
}

static int fake_vmm_main(int argc, char **argv)
{
    const char *mode = "serve";
    for (int i = 1; i < argc; i++) {
        snprintf(fake_args + strlen(fake_args), sizeof(fake_args) - strlen(fake_args), "%s%s",
                 i > 1 ? " " : "", argv[i]);
        if (strncmp(argv[i], "--fake=", 7) == 0)
            mode = argv[i] + 7;
    }
    fprintf(stderr, "fake vmm: mode %s\n", mode);
    if (strcmp(mode, "fail") == 0) {
        fprintf(stderr, "Error: Cloud Hypervisor exited with the following chain of errors:\n"
                        "  Failed to open hypervisor interface: no supported hypervisor\n");
        _exit(1);
    }
    fake_event("vmm", "starting", false);
    if (strcmp(mode, "slow-ready") == 0)
        sleep(30);
    if (strcmp(mode, "ignore-term") == 0)
        signal(SIGTERM, SIG_IGN);
    char buf[8192];
    for (;;) {
        int c = accept(3, NULL, NULL);
        if (c < 0)
            _exit(2);
        const char *p;
        while ((p = fake_read(c, buf, sizeof(buf)))) {
            if (strcmp(p, "/api/v1/vmm.ping") == 0) {
                char b[128];
                snprintf(b, sizeof(b),
                         "{\"version\":\"fake-1.0\",\"build_version\":\"t\",\"pid\":%d}",
                         (int)getpid());
                fake_reply(c, 200, b);
            } else if (strcmp(p, "/api/v1/fake.report") == 0) {
                fake_report(c);
            } else if (strcmp(p, "/api/v1/vm.boot") == 0) {
                fake_event("vm", "booting", false);
                fake_event("vm", "booted", true);
                fake_reply(c, 204, "");
            } else if (strcmp(p, "/api/v1/fake.exit7") == 0) {
                _exit(7);
            } else if (strcmp(p, "/api/v1/fake.hang") == 0 ||
                       (strcmp(p, "/api/v1/vmm.shutdown") == 0 && strcmp(mode, "serve") != 0)) {
                for (;;)
                    pause();
            } else if (strcmp(p, "/api/v1/vmm.shutdown") == 0) {
                fake_event("vmm", "shutdown", false);
                fake_reply(c, 200, "");
                _exit(0);
            } else {
                fake_reply(c, 404, "[\"Not Found\"]");
            }
        }
        close(c);
    }
}

/* ---- test side ---------------------------------------------------------------------- */

typedef struct fx {
    uv_loop_t loop;
    char *dir;
    char self[4096];
    ch_vmm *vmm;
    bool ready, exited, resp_done;
    chcp_code ready_code;
    char ready_msg[4096];
    char ping_body[512];
    ch_exit exit;
    char exit_reason[200];
    char events[32][64];
    int n_events;
    int events_at_exit;
    int status;
    chcp_code code;
    char body[4096];
    char msg[1024];
} fx;

static fx *X;

static void on_ready(ch_vmm *v, const ch_response *resp, const chcp_error *err, void *ud)
{
    assert_ptr_equal(ud, X);
    assert_false(X->ready);
    X->ready = true;
    X->ready_code = err ? err->code : CHCP_OK;
    snprintf(X->ready_msg, sizeof(X->ready_msg), "%s", err ? err->message : "");
    if (resp)
        snprintf(X->ping_body, sizeof(X->ping_body), "%s", resp->body);
}

static void on_event(ch_vmm *v, const ch_event *ev, void *ud)
{
    if (X->n_events < 32)
        snprintf(X->events[X->n_events++], 64, "%s/%s", ev->source, ev->event);
    assert_null(ev->properties);
    assert_true(ev->end_offset > 0);
}

static void on_exit_cb(ch_vmm *v, const ch_exit *ex, void *ud)
{
    assert_false(X->exited);
    X->exited = true;
    X->exit = *ex;
    snprintf(X->exit_reason, sizeof(X->exit_reason), "%s", ex->reason);
    X->exit.reason = X->exit_reason;
    X->events_at_exit = X->n_events;
    assert_false(ch_vmm_alive(v));
}

static const ch_vmm_callbacks cbs = {on_ready, on_event, on_exit_cb};

static void on_resp(ch_vmm *v, const ch_response *resp, const chcp_error *err, void *ud)
{
    X->resp_done = true;
    X->status = resp ? resp->status : -1;
    X->code = err ? err->code : CHCP_OK;
    snprintf(X->body, sizeof(X->body), "%s", resp ? resp->body : "");
    snprintf(X->msg, sizeof(X->msg), "%s", err ? err->message : "");
}

static int setup(void **state)
{
    X = calloc(1, sizeof(*X));
    uv_loop_init(&X->loop);
    X->dir = tu_mkdtemp();
    ssize_t n = readlink("/proc/self/exe", X->self, sizeof(X->self) - 1);
    assert_true(n > 0);
    return 0;
}

static int teardown(void **state)
{
    pid_t pid = ch_vmm_pid(X->vmm);
    if (X->vmm && ch_vmm_alive(X->vmm))
        kill(-pid, SIGKILL);
    ch_vmm_free(X->vmm);
    assert_int_equal(tu_drain_loop(&X->loop), 0);
    while (waitpid(-1, NULL, WNOHANG) > 0) /* detached children of adopt tests */
        ;
    tu_rmrf(X->dir);
    free(X->dir);
    free(X);
    return 0;
}

static ch_vmm *spawn_mode(const char *mode, uint64_t ready_ms, chcp_error **err)
{
    static char arg[64];
    snprintf(arg, sizeof(arg), "--fake=%s", mode);
    const char *extra[] = {arg, NULL};
    ch_spawn_opts o = {.binary = X->self,
                       .dir = X->dir,
                       .vm_id = "vm-1",
                       .extra_args = extra,
                       .ready_timeout_ms = ready_ms};
    return ch_vmm_spawn(&X->loop, &o, &cbs, X, err);
}

static void spawn_ready(const char *mode)
{
    chcp_error *err = NULL;
    X->vmm = spawn_mode(mode, 0, &err);
    assert_null(err);
    assert_non_null(X->vmm);
    assert_true(tu_run_until(&X->loop, &X->ready, 5000));
    assert_int_equal(X->ready_code, CHCP_OK);
}

static void call(const char *endpoint, uint64_t timeout)
{
    chcp_error *err = NULL;
    X->resp_done = false;
    assert_int_equal(ch_vmm_call(X->vmm, endpoint, NULL, NULL, 0, timeout, on_resp, X, &err), 0);
    assert_true(tu_run_until(&X->loop, &X->resp_done, 5000));
}

static const char *report_str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    assert_non_null(s);
    return s;
}

/* The whole happy path: spawn hygiene seen from the child, readiness via
 * ping, events (one written in two pieces), stop through vmm.shutdown. */
static void test_spawn_lifecycle(void **state)
{
    /* Signal state the child must not inherit. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, &old);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_ign;
    sigaction(SIGUSR2, &ign, &old_ign);
    setenv("CHCP_SECRET_TEST", "leak", 1);
    spawn_ready("serve");
    sigprocmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGUSR2, &old_ign, NULL);
    unsetenv("CHCP_SECRET_TEST");

    pid_t pid = ch_vmm_pid(X->vmm);
    assert_true(pid > 0);
    uint64_t st = 0;
    assert_int_equal(ch_proc_start_time(pid, &st, NULL), 0);
    assert_int_equal(st, ch_vmm_start_time(X->vmm));
    ch_ping_info ping;
    assert_int_equal(ch_parse_ping(X->ping_body, strlen(X->ping_body), &ping, NULL), 0);
    assert_string_equal(ping.version, "fake-1.0");
    assert_int_equal(ping.pid, pid);

    call("fake.report", 0);
    assert_int_equal(X->status, 200);
    json_t *r = json_loads(X->body, 0, NULL);
    assert_non_null(r);
    assert_string_equal(report_str(r, "fds"), "0 1 2 3 4 ");
    assert_string_equal(report_str(r, "env"), "PATH=/usr/sbin:/usr/bin:/sbin:/bin;");
    assert_string_equal(report_str(r, "stdin"), "/dev/null");
    assert_string_equal(report_str(r, "sigblk"), "0000000000000000");
    assert_string_equal(report_str(r, "sigign"), "0000000000000000");
    assert_int_equal(json_integer_value(json_object_get(r, "sid")), pid);
    assert_int_equal(json_integer_value(json_object_get(r, "pgid")), pid);
    char want[8192];
    snprintf(want, sizeof(want),
             "--api-socket fd=3 --event-monitor fd=4 --log-file %s/vmm.log -v --fake=serve",
             X->dir);
    assert_string_equal(report_str(r, "args"), want);
    json_decref(r);

    /* Unknown endpoint: 404 with CH's body, as an error. */
    call("vm.nonsense", 0);
    assert_int_equal(X->status, 404);
    assert_int_equal(X->code, CHCP_FAILED_PRECONDITION);
    assert_string_equal(X->msg, "Not Found");

    call("vm.boot", 0);
    assert_int_equal(X->status, 204);
    for (int i = 0; i < 100 && X->n_events < 3; i++)
        uv_run(&X->loop, UV_RUN_NOWAIT), usleep(5000);
    assert_int_equal(X->n_events, 3);
    assert_string_equal(X->events[0], "vmm/starting");
    assert_string_equal(X->events[1], "vm/booting");
    assert_string_equal(X->events[2], "vm/booted");

    chcp_error *err = NULL;
    assert_int_equal(ch_vmm_stop(X->vmm, 2000, &err), 0);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_int_equal(X->exit.status, 0);
    assert_int_equal(X->exit.signal, 0);
    assert_string_equal(X->exit.reason, "exited with status 0");
    /* The last event arrives before the exit report. */
    assert_int_equal(X->events_at_exit, 4);
    assert_string_equal(X->events[3], "vmm/shutdown");
    struct stat sb;
    char path[4200];
    snprintf(path, sizeof(path), "%s/events.json", X->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(ch_vmm_event_offset(X->vmm), (uint64_t)sb.st_size);
    /* Nothing to call any more. */
    assert_int_equal(ch_vmm_ping(X->vmm, 0, on_resp, X, &err), -1);
    assert_int_equal(err->code, CHCP_UNAVAILABLE);
    error_free(err);
}

static void test_start_failure_has_stderr(void **state)
{
    chcp_error *err = NULL;
    X->vmm = spawn_mode("fail", 0, &err);
    assert_non_null(X->vmm);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_true(X->ready);
    assert_int_equal(X->ready_code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(X->ready_msg, "exited with status 1 before becoming ready"));
    assert_non_null(strstr(X->ready_msg, "no supported hypervisor"));
    assert_int_equal(X->exit.status, 1);
}

static void test_exec_failure(void **state)
{
    char bin[4200];
    snprintf(bin, sizeof(bin), "%s/notexec", X->dir);
    FILE *f = fopen(bin, "w");
    fputs("not an executable\n", f);
    fclose(f);
    chmod(bin, 0700);
    ch_spawn_opts o = {.binary = bin, .dir = X->dir};
    chcp_error *err = NULL;
    X->vmm = ch_vmm_spawn(&X->loop, &o, &cbs, X, &err);
    assert_non_null(X->vmm);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_int_equal(X->ready_code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(X->ready_msg, "cannot execute the VMM binary: ENOEXEC"));
    assert_int_equal(X->exit.status, 127);
}

static void test_bad_spawn_options(void **state)
{
    chcp_error *err = NULL;
    ch_spawn_opts o = {.binary = "cloud-hypervisor", .dir = X->dir};
    assert_null(ch_vmm_spawn(&X->loop, &o, &cbs, X, &err));
    assert_int_equal(err->code, CHCP_INVALID_ARGUMENT);
    error_free(err), err = NULL;
    o.binary = "/nonexistent/cloud-hypervisor";
    assert_null(ch_vmm_spawn(&X->loop, &o, &cbs, X, &err));
    assert_int_equal(err->code, CHCP_FAILED_PRECONDITION);
    error_free(err), err = NULL;
    o.binary = X->self;
    o.dir = "/nonexistent/dir";
    assert_null(ch_vmm_spawn(&X->loop, &o, &cbs, X, &err));
    assert_int_equal(err->code, CHCP_FAILED_PRECONDITION);
    error_free(err), err = NULL;
    char longdir[200];
    memset(longdir, 'a', sizeof(longdir));
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = 0;
    o.dir = longdir;
    assert_null(ch_vmm_spawn(&X->loop, &o, &cbs, X, &err));
    error_free(err), err = NULL;
}

/* A VMM killed while a call is in flight: the call fails with the exit
 * reason, then on_exit reports the signal. */
static void test_killed_mid_call(void **state)
{
    spawn_ready("serve");
    chcp_error *err = NULL;
    assert_int_equal(ch_vmm_call(X->vmm, "fake.hang", NULL, NULL, 0, 10000, on_resp, X, &err), 0);
    for (int i = 0; i < 20; i++)
        uv_run(&X->loop, UV_RUN_NOWAIT), usleep(2000);
    kill(ch_vmm_pid(X->vmm), SIGKILL);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_true(X->resp_done);
    assert_int_equal(X->code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(X->msg, "killed by signal 9"));
    assert_int_equal(X->exit.status, -1);
    assert_int_equal(X->exit.signal, SIGKILL);
}

static void test_exit_status_mid_call(void **state)
{
    spawn_ready("serve");
    call("fake.exit7", 5000);
    assert_int_equal(X->code, CHCP_UNAVAILABLE);
    assert_non_null(strstr(X->msg, "exited with status 7"));
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_int_equal(X->exit.status, 7);
}

/* vmm.shutdown hangs and SIGTERM is ignored: SIGKILL ends it. */
static void test_stop_escalates_to_sigkill(void **state)
{
    spawn_ready("ignore-term");
    chcp_error *err = NULL;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(ch_vmm_stop(X->vmm, 150, &err), 0);
    assert_int_equal(ch_vmm_stop(X->vmm, 150, &err), 0); /* idempotent */
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_int_equal(X->exit.signal, SIGKILL);
    assert_true(uv_hrtime() - t0 >= 290 * 1000000ull);
}

/* vmm.shutdown hangs, SIGTERM works. */
static void test_stop_sigterm(void **state)
{
    spawn_ready("hang-shutdown");
    chcp_error *err = NULL;
    assert_int_equal(ch_vmm_stop(X->vmm, 150, &err), 0);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_int_equal(X->exit.signal, SIGTERM);
}

static void test_ready_timeout_kills(void **state)
{
    chcp_error *err = NULL;
    X->vmm = spawn_mode("slow-ready", 200, &err);
    assert_non_null(X->vmm);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_int_equal(X->ready_code, CHCP_DEADLINE_EXCEEDED);
    assert_non_null(strstr(X->ready_msg, "did not become ready"));
    assert_non_null(strstr(X->ready_msg, "fake vmm: mode slow-ready")); /* stderr tail */
    assert_int_equal(X->exit.signal, SIGKILL);
}

/* A daemon restart: detach (free without stopping), then adopt by pid +
 * start time + event offset; events continue where they stopped. */
static void test_detach_and_adopt(void **state)
{
    spawn_ready("serve");
    for (int i = 0; i < 100 && X->n_events < 1; i++)
        uv_run(&X->loop, UV_RUN_NOWAIT), usleep(5000);
    assert_int_equal(X->n_events, 1);
    ch_adopt_opts ao = {.dir = X->dir,
                        .pid = ch_vmm_pid(X->vmm),
                        .start_time = ch_vmm_start_time(X->vmm),
                        .event_offset = ch_vmm_event_offset(X->vmm)};
    assert_true(ao.event_offset > 0);
    ch_vmm_free(X->vmm);
    X->vmm = NULL;
    assert_int_equal(kill(ao.pid, 0), 0); /* still running */

    chcp_error *err = NULL;
    ch_adopt_opts wrong = ao;
    wrong.start_time++;
    assert_null(ch_vmm_adopt(&X->loop, &wrong, &cbs, X, &err));
    assert_int_equal(err->code, CHCP_NOT_FOUND);
    error_free(err), err = NULL;

    X->vmm = ch_vmm_adopt(&X->loop, &ao, &cbs, X, &err);
    assert_null(err);
    assert_non_null(X->vmm);
    assert_true(ch_vmm_alive(X->vmm));
    call("vmm.ping", 0);
    assert_int_equal(X->status, 200);
    call("vm.boot", 0);
    for (int i = 0; i < 100 && X->n_events < 3; i++)
        uv_run(&X->loop, UV_RUN_NOWAIT), usleep(5000);
    assert_int_equal(X->n_events, 3);
    assert_string_equal(X->events[1], "vm/booting");
    assert_string_equal(X->events[2], "vm/booted");
    /* Killed while adopted: the signal is known (the process is a zombie
     * here: this test is its parent and has not reaped it). */
    kill(ao.pid, SIGKILL);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_int_equal(X->exit.status, -1);
    assert_int_equal(X->exit.signal, SIGKILL);
    assert_non_null(strstr(X->exit.reason, "killed by signal 9 (KILL) (adopted process)"));
    waitpid(ao.pid, NULL, 0);
    /* Gone for good: adopting again fails. */
    assert_null(ch_vmm_adopt(&X->loop, &ao, &cbs, X, &err));
    assert_int_equal(err->code, CHCP_NOT_FOUND);
    error_free(err);
}

/* Spawn, let go (a daemon restart), adopt: the process is no longer
 * supervised as our child. */
static pid_t spawn_and_adopt(void)
{
    spawn_ready("serve");
    ch_adopt_opts ao = {.dir = X->dir,
                        .pid = ch_vmm_pid(X->vmm),
                        .start_time = ch_vmm_start_time(X->vmm),
                        .event_offset = ch_vmm_event_offset(X->vmm)};
    ch_vmm_free(X->vmm);
    chcp_error *err = NULL;
    X->vmm = ch_vmm_adopt(&X->loop, &ao, &cbs, X, &err);
    assert_null(err);
    return ao.pid;
}

/* The exit of an adopted VMM that its parent reaps at once (init does, on a
 * real host): the pidfd keeps the status (Linux >= 6.15). */
static void test_adopted_exit_reaped(void **state)
{
    pid_t pid = spawn_and_adopt();
    kill(pid, SIGKILL); /* not SIGSEGV: the fake runs under ASan, which catches it */
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED), 0); /* reaped before we look */
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    if (X->exit.signal == 0 && strstr(X->exit.reason, "status unknown")) {
        print_message("kernel without PIDFD_INFO_EXIT (Linux < 6.15): %s\n", X->exit.reason);
        skip();
    }
    assert_int_equal(X->exit.signal, SIGKILL);
    assert_int_equal(X->exit.status, -1);
}

/* ... and one that exits with a code while a zombie. */
static void test_adopted_exit_code(void **state)
{
    pid_t pid = spawn_and_adopt();
    call("fake.exit7", 5000);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_int_equal(X->exit.status, 7);
    assert_int_equal(X->exit.signal, 0);
    assert_non_null(strstr(X->exit.reason, "exited with status 7 (adopted process)"));
    waitpid(pid, NULL, 0);
}

static void free_on_exit(ch_vmm *v, const ch_exit *ex, void *ud)
{
    on_exit_cb(v, ex, ud);
    ch_vmm_free(v);
    X->vmm = NULL;
}

static void test_free_inside_on_exit(void **state)
{
    static const ch_vmm_callbacks c2 = {on_ready, on_event, free_on_exit};
    const char *extra[] = {"--fake=serve", NULL};
    ch_spawn_opts o = {.binary = X->self, .dir = X->dir, .extra_args = extra};
    chcp_error *err = NULL;
    X->vmm = ch_vmm_spawn(&X->loop, &o, &c2, X, &err);
    assert_true(tu_run_until(&X->loop, &X->ready, 5000));
    assert_int_equal(ch_vmm_stop(X->vmm, 1000, &err), 0);
    assert_true(tu_run_until(&X->loop, &X->exited, 5000));
    assert_null(X->vmm);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--api-socket") == 0)
        return fake_vmm_main(argc, argv);
    log_set_level(LOG_ERROR); /* lifecycle log lines would clutter the report */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spawn_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_failure_has_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_spawn_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_mid_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_status_mid_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_escalates_to_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_timeout_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_and_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopted_exit_reaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopted_exit_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_on_exit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
