/*
 * jailer.c - a stand-in for Firecracker's jailer (src/jailer/src/{main,env,
 * chroot,resource_limits}.rs at 81b38b9), built as $(B)/fc-standin/jailer.
 *
 * It does what the real jailer does to the host, for real, so a control
 * plane's jailer support can be tested end to end:
 *   - validates --id (1..64 alphanumerics or '-'), --exec-file (canonical,
 *     a file), --chroot-base-dir (canonical, a directory), --uid, --gid,
 *     --parent-cgroup, --cgroup-version and --resource-limit;
 *   - creates <base>/<exec file name>/<id>/root and copies the exec file
 *     into it (O_NOFOLLOW, refusing a hard link, owned by uid:gid);
 *   - joins --netns, sets the resource limits (no-file 2048 by default);
 *   - unshares a mount namespace, pivot_roots into the jail, creates /dev,
 *     /dev/net and /run (0700, owned by uid:gid), mknods /dev/net/tun
 *     (10,200), /dev/kvm (10,232), /dev/urandom (1,9) and /dev/userfaultfd
 *     (if the host has it) owned by uid:gid;
 *   - --daemonize: double fork, setsid, stdio to /dev/null; --new-pid-ns:
 *     clone(CLONE_NEWPID), the parent writes the pid and exits 0;
 *   - writes /<exec file name>.pid (create_new: a reused jail fails), then
 *     execs /<exec file name> as uid:gid with "--id <id> --start-time-us T
 *     --start-time-cpu-us T --parent-cpu-time-us T" and the arguments after
 *     "--", in a clean environment.
 * Errors print the error's Display, then Rust's "Error: <Debug>" for a main
 * that returns Err, and exit 1.
 *
 * Not modelled: --cgroup (it would write the host's cgroup tree; the
 * stand-in validates the format, then refuses). With --cgroup-version 2 and
 * no --cgroup, an existing --parent-cgroup receives the process, as in the
 * jailer. The exec file must be a static binary to run inside the jail:
 * make builds $(B)/fc-standin/static/firecracker for that.
 */
#include "../standin.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

static const char *cgroup_values[FSI_ARGS_MAX_VALUES];
static const char *limit_values[FSI_ARGS_MAX_VALUES];

static fsi_arg arg_table[] = {
    {.name = "cgroup",
     .takes_value = true,
     .multiple = true,
     .values = cgroup_values,
     .help = "Cgroup and value to be set by the jailer. It must follow this format: "
             "<cgroup_file>=<value> (e.g cpu.shares=10). This argument can be used multiple times "
             "to add multiple cgroups."},
    {.name = "cgroup-version",
     .takes_value = true,
     .help = "Select the cgroup version used by the jailer.",
     .def = "1"},
    {.name = "chroot-base-dir",
     .takes_value = true,
     .help = "The base folder where chroot jails are located.",
     .def = "/srv/jailer"},
    {.name = "daemonize",
     .help = "Daemonize the jailer before exec, by invoking setsid(), and redirecting the "
             "standard I/O file descriptors to /dev/null."},
    {.name = "exec-file", .takes_value = true, .required = true, .help = "File path to exec into."},
    {.name = "gid",
     .takes_value = true,
     .required = true,
     .help = "The group identifier the jailer switches to after exec."},
    {.name = "id", .takes_value = true, .required = true, .help = "Jail ID."},
    {.name = "netns",
     .takes_value = true,
     .help = "Path to the network namespace this microVM should join."},
    {.name = "new-pid-ns", .help = "Exec into a new PID namespace."},
    {.name = "parent-cgroup",
     .takes_value = true,
     .help = "Parent cgroup in which the cgroup of this microvm will be placed."},
    {.name = "resource-limit",
     .takes_value = true,
     .multiple = true,
     .values = limit_values,
     .help = "Resource limit values to be set by the jailer. It must follow this format: "
             "<resource>=<value> (e.g no-file=1024). This argument can be used multiple times to "
             "add multiple resource limits. Current available resource values are:\n\t\tfsize: "
             "The maximum size in bytes for files created by the process.\n\t\tno-file: "
             "Specifies a value one greater than the maximum file descriptor number that can be "
             "opened by this process."},
    {.name = "uid",
     .takes_value = true,
     .required = true,
     .help = "The user identifier the jailer switches to after exec."},
    {.name = "version", .help = "Print the binary version number."},
};
static fsi_args args = {arg_table, sizeof(arg_table) / sizeof(arg_table[0]), 0};

typedef struct jail {
    const char *id;
    char *exec_path; /* canonical */
    const char *exec_name;
    char *chroot_dir;
    unsigned uid, gid;
    const char *netns;
    bool daemonize, new_pid_ns;
    long long fsize; /* -1: not set */
    unsigned long long no_file;
    int uffd_minor; /* -1: the host has no /dev/userfaultfd */
    int64_t start_us, start_cpu_us;
} jail;

/* main() -> Err(e): eprintln!("{}", e), then Rust prints "Error: {:?}"; exit 1. */
/* Once inside the jail there is no /proc: the sanitizers' exit-time leak
 * check cannot run there, so the jailed process leaves with _exit. */
static bool jailed;

static void __attribute__((noreturn)) leave(int code)
{
    fflush(NULL);
    if (jailed)
        _exit(code);
    exit(code);
}

static void __attribute__((noreturn)) fail(char *display, char *debug)
{
    fprintf(stderr, "%s\nError: %s\n", display, debug);
    free(display);
    free(debug);
    leave(1);
}

/* An io::Error variant: "<text>: <io Display>" and "<Variant>(<io Debug>)". */
static void __attribute__((noreturn)) fail_io(const char *variant, const char *text, int err)
{
    char *e = fsi_io_error(err), *d = fsi_io_error_debug(err);
    char *display = fsi_xasprintf("%s: %s", text, e);
    char *debug = fsi_xasprintf("%s(%s)", variant, d);
    free(e);
    free(d);
    fail(display, debug);
}

/* A (PathBuf, io::Error) variant: "<prefix> <path>: <io Display>" (no quotes). */
static void __attribute__((noreturn))
fail_path_io(const char *variant, const char *prefix, const char *path, int err)
{
    char *e = fsi_io_error(err), *d = fsi_io_error_debug(err), *q = fsi_debug_str(path);
    char *text = fsi_xasprintf("%s %s", prefix, path);
    char *display = fsi_xasprintf("%s: %s", text, e);
    char *debug = fsi_xasprintf("%s(%s, %s)", variant, q, d);
    free(e);
    free(d);
    free(q);
    free(text);
    fail(display, debug);
}

static int64_t clock_us(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static unsigned parse_id_number(const char *s, const char *what)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-' || v > 0xffffffffUL) {
        char *q = fsi_debug_str(s);
        fail(fsi_xasprintf("Invalid %s: %s", what, s),
             fsi_xasprintf("%s(%s)", !strcmp(what, "uid") ? "Uid" : "Gid", q));
    }
    return (unsigned)v;
}

static char *canonical(const char *path)
{
    char *real = realpath(path, NULL);
    if (!real)
        fail_path_io("Canonicalize", "Failed to canonicalize path", path, errno);
    return real;
}

static bool bad_components(const char *path)
{
    if (path[0] == '/')
        return true;
    char *copy = fsi_xstrdup(path), *save = NULL;
    bool bad = false;
    for (char *c = strtok_r(copy, "/", &save); c && !bad; c = strtok_r(NULL, "/", &save))
        bad = !strcmp(c, ".") || !strcmp(c, "..");
    free(copy);
    return bad;
}

/* --cgroup-version 2 without --cgroup: move into an existing parent cgroup. */
static void move_to_parent_cgroup(const char *parent)
{
    FILE *fp = fopen("/proc/mounts", "re");
    char line[4096], mnt[4096] = "";
    while (fp && fgets(line, sizeof(line), fp)) {
        char dev[256], dir[4096], type[64];
        if (sscanf(line, "%255s %4095s %63s", dev, dir, type) == 3 && !strcmp(type, "cgroup2")) {
            snprintf(mnt, sizeof(mnt), "%s", dir);
            break;
        }
    }
    if (fp)
        fclose(fp);
    if (!mnt[0])
        fail(fsi_xstrdup("Hierarchy not found: cgroup2"),
             fsi_xstrdup("CgroupHierarchyMissing(\"cgroup2\")"));
    char *dir = fsi_xasprintf("%s/%s", mnt, parent);
    struct stat st;
    if (stat(dir, &st) == 0) {
        char *procs = fsi_xasprintf("%s/cgroup.procs", dir);
        FILE *out = fopen(procs, "we");
        bool ok = out && fprintf(out, "%d", getpid()) > 0;
        ok = out && fclose(out) == 0 && ok;
        if (!ok) {
            char *e = fsi_io_error(errno);
            fail(fsi_xasprintf("Failed to move process to cgroup (%s): %s.\nHint: If you intended "
                               "to create a child cgroup under %s, pass any --cgroup parameters.",
                               dir, e, dir),
                 fsi_xasprintf("CgroupMove(\"%s\", %s)", dir, e));
        }
        free(procs);
    }
    free(dir);
}

static void parse_cgroups(const jail *j, const char *parent)
{
    fsi_arg *cg = fsi_args_get(&args, "cgroup");
    unsigned long ver;
    const char *vs = fsi_args_value(&args, "cgroup-version");
    char *end;
    errno = 0;
    ver = strtoul(vs, &end, 10);
    if (!*vs || *end || errno || ver > 255) {
        char *q = fsi_debug_str(vs);
        fail(fsi_xasprintf("%s is an invalid cgroup version specifier", vs),
             fsi_xasprintf("CgroupInvalidVersion(%s)", q));
    }
    if (!cg->nvalues && ver == 2)
        move_to_parent_cgroup(parent);
    for (size_t i = 0; i < cg->nvalues; i++) {
        const char *v = cg->values[i], *eq = strchr(v, '=');
        char *q = fsi_debug_str(v);
        if (!eq || !eq[1] || strchr(eq + 1, '='))
            fail(fsi_xasprintf("Invalid format for cgroups: %s", v),
                 fsi_xasprintf("CgroupFormat(%s)", q));
        char *file = strndup(v, (size_t)(eq - v));
        if (bad_components(file))
            fail(fsi_xasprintf("Cgroup invalid file: %s", v),
                 fsi_xasprintf("CgroupInvalidFile(%s)", q));
        free(file);
        free(q);
    }
    if (cg->nvalues)
        fail(fsi_xasprintf("standin: --cgroup is not supported (the jailer stand-in does not "
                           "write the host's cgroup tree for jail %s)",
                           j->id),
             fsi_xstrdup("standin: --cgroup is not supported"));
}

static void parse_limits(jail *j)
{
    fsi_arg *rl = fsi_args_get(&args, "resource-limit");
    for (size_t i = 0; i < rl->nvalues; i++) {
        const char *v = rl->values[i], *eq = strchr(v, '=');
        char *q = fsi_debug_str(v);
        if (!eq)
            fail(fsi_xasprintf("Invalid format for resources limits: %s", v),
                 fsi_xasprintf("ResLimitFormat(%s)", q));
        char *end;
        errno = 0;
        unsigned long long n = strtoull(eq + 1, &end, 10);
        if (!eq[1] || *end || errno || eq[1] == '-') {
            char *qv = fsi_debug_str(eq + 1);
            const char *why =
                eq[1] ? "invalid digit found in string" : "cannot parse integer from empty string";
            fail(fsi_xasprintf("Invalid limit value for resource: %s: %s", eq + 1, why),
                 fsi_xasprintf("ResLimitValue(%s, \"%s\")", qv, why));
        }
        if (!strncmp(v, "fsize=", 6))
            j->fsize = (long long)n;
        else if (!strncmp(v, "no-file=", 8))
            j->no_file = n;
        else {
            char *name = strndup(v, (size_t)(eq - v)), *qn = fsi_debug_str(name);
            fail(fsi_xasprintf("Invalid resource argument: %s", name),
                 fsi_xasprintf("ResLimitArgument(%s)", qn));
        }
        free(q);
    }
}

static int userfaultfd_minor(void)
{
    FILE *fp = fopen("/proc/misc", "re");
    char line[256];
    int minor = -1;
    while (fp && fgets(line, sizeof(line), fp)) {
        int m;
        char name[64];
        if (sscanf(line, "%d %63s", &m, name) == 2 && !strcmp(name, "userfaultfd"))
            minor = m;
    }
    if (fp)
        fclose(fp);
    return minor;
}

/* Env::new() */
static void setup(jail *j)
{
    j->id = fsi_args_value(&args, "id");
    char *display = NULL, *debug = fsi_validate_id(j->id, &display);
    if (debug) {
        char *d = fsi_xasprintf("InvalidInstanceId(%s)", debug);
        char *m = fsi_xasprintf("Invalid instance ID: %s", display);
        free(debug);
        free(display);
        fail(m, d);
    }
    j->exec_path = canonical(fsi_args_value(&args, "exec-file"));
    struct stat st;
    if (stat(j->exec_path, &st) < 0 || !S_ISREG(st.st_mode)) {
        char *q = fsi_debug_str(j->exec_path);
        fail(fsi_xasprintf("%s is not a file", j->exec_path), fsi_xasprintf("NotAFile(%s)", q));
    }
    j->exec_name = strrchr(j->exec_path, '/') + 1;
    char *base = canonical(fsi_args_value(&args, "chroot-base-dir"));
    if (stat(base, &st) < 0 || !S_ISDIR(st.st_mode)) {
        char *q = fsi_debug_str(base);
        fail(fsi_xasprintf("%s is not a directory", base), fsi_xasprintf("NotADirectory(%s)", q));
    }
    j->chroot_dir =
        fsi_xasprintf("%s/%s/%s/root", strcmp(base, "/") ? base : "", j->exec_name, j->id);
    free(base);
    j->uid = parse_id_number(fsi_args_value(&args, "uid"), "uid");
    j->gid = parse_id_number(fsi_args_value(&args, "gid"), "gid");
    j->netns = fsi_args_value(&args, "netns");
    j->daemonize = fsi_args_flag(&args, "daemonize");
    j->new_pid_ns = fsi_args_flag(&args, "new-pid-ns");
    const char *parent = fsi_args_value(&args, "parent-cgroup");
    if (!parent)
        parent = j->exec_name;
    if (bad_components(parent))
        fail(fsi_xstrdup("Parent cgroup path is invalid. Path should not be absolute or contain "
                         "'..' or '.'"),
             fsi_xstrdup("CgroupInvalidParentPath"));
    parse_cgroups(j, parent);
    j->fsize = -1;
    j->no_file = 2048;
    parse_limits(j);
    j->uffd_minor = userfaultfd_minor();
}

static void mkdir_p(const char *path)
{
    char *p = fsi_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            fail_path_io("CreateDir", "Failed to create directory", p, errno);
        *s = '/';
    }
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
        fail_path_io("CreateDir", "Failed to create directory", p, errno);
    free(p);
}

/* copy_exec_to_chroot(): a copy, never a hard link, owned by uid:gid. */
static void copy_exec(const jail *j)
{
    char *dst = fsi_xasprintf("%s/%s", j->chroot_dir, j->exec_name);
    int in = open(j->exec_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        fail_path_io("Open", "Failed to open", j->exec_path, errno);
    struct stat st;
    fstat(in, &st);
    int out = open(dst, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 07777);
    if (out < 0)
        fail_path_io("Open", "Failed to open", dst, errno);
    struct stat dst_st;
    fstat(out, &dst_st);
    if (dst_st.st_nlink > 1) {
        char *q = fsi_debug_str(dst);
        fail(fsi_xasprintf("Detected hard link at: %s", dst), fsi_xasprintf("HardLink(%s)", q));
    }
    if (fchown(out, j->uid, j->gid) < 0)
        fail_path_io("ChangeFileOwner", "Failed to change owner for", dst, errno);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            fail_path_io("Copy", "Failed to copy to", dst, errno);
    close(in);
    close(out);
    free(dst);
}

static void set_limits(const jail *j)
{
    struct rlimit nofile = {j->no_file, j->no_file};
    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
        fail(fsi_xasprintf("Failed to set limit for resource: number of file descriptors"),
             fsi_xstrdup("Setrlimit(\"number of file descriptors\")"));
    if (j->fsize >= 0) {
        struct rlimit fsize = {(rlim_t)j->fsize, (rlim_t)j->fsize};
        if (setrlimit(RLIMIT_FSIZE, &fsize) < 0)
            fail(fsi_xstrdup("Failed to set limit for resource: size of file"),
                 fsi_xstrdup("Setrlimit(\"size of file\")"));
    }
}

/* chroot.rs: a private mount namespace, pivot_root into the jail. */
static void pivot_into(const char *dir)
{
    if (unshare(CLONE_NEWNS) < 0)
        fail_io("UnshareNewNs", "Failed to unshare into new mount namespace", errno);
    if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        fail_io("MountPropagationSlave", "Failed to change the propagation type to slave", errno);
    if (mount(dir, dir, NULL, MS_BIND | MS_REC, NULL) < 0)
        fail_io("MountBind", "Failed to bind mount the jail root directory", errno);
    if (chdir(dir) < 0)
        fail_io("SetCurrentDir", "Failed to change current directory", errno);
    if (mkdir("old_root", 0600) < 0)
        fail_io("MkdirOldRoot", "Failed to create the jail root directory before pivoting root",
                errno);
    if (syscall(SYS_pivot_root, ".", "old_root") < 0)
        fail_io("PivotRoot", "Failed to pivot root", errno);
    if (chdir("/") < 0)
        fail_io("ChdirNewRoot", "Failed to chdir into chroot directory", errno);
    if (umount2("old_root", MNT_DETACH) < 0)
        fail_io("UmountOldRoot", "Failed to unmount the old jail root", errno);
    jailed = true;
    if (rmdir("old_root") < 0)
        fail_io("RmOldRootDir", "Failed to remove old jail root directory", errno);
}

static void jailed_folder(const jail *j, const char *dir)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        fail_path_io("CreateDir", "Failed to create directory", dir, errno);
    if (chmod(dir, 0700) < 0)
        fail_path_io("Chmod", "Failed to change permissions on", dir, errno);
    if (chown(dir, j->uid, j->gid) < 0)
        fail_path_io("ChangeFileOwner", "Failed to change owner for", dir, errno);
}

static int make_dev(const jail *j, const char *path, unsigned major, unsigned minor)
{
    if (mknod(path, S_IFCHR | S_IRUSR | S_IWUSR, makedev(major, minor)) < 0)
        return errno;
    if (chown(path, j->uid, j->gid) < 0)
        fail_path_io("ChangeFileOwner", "Failed to change owner for", path, errno);
    return 0;
}

static void mknod_or_fail(const jail *j, const char *path, unsigned major, unsigned minor)
{
    int err = make_dev(j, path, major, minor);
    if (!err)
        return;
    char *e = fsi_io_error(err), *d = fsi_io_error_debug(err);
    fail(fsi_xasprintf("Failed to create %s via mknod inside the jail: %s", path, e),
         fsi_xasprintf("MknodDev(%s, \"%s\")", d, path));
}

static void save_pid(const jail *j, pid_t pid)
{
    char *path = fsi_xasprintf("/%s.pid", j->exec_name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        fail_path_io("FileOpen", "Failed to open file", path, errno);
    dprintf(fd, "%d", pid);
    close(fd);
    free(path);
}

static void __attribute__((noreturn)) exec_firecracker(const jail *j, int argc, char **argv)
{
    char *exec = fsi_xasprintf("/%s", j->exec_name);
    char t0[32], t1[32], t2[32];
    snprintf(t0, sizeof(t0), "%lld", (long long)j->start_us);
    snprintf(t1, sizeof(t1), "%lld", (long long)clock_us(CLOCK_PROCESS_CPUTIME_ID));
    snprintf(t2, sizeof(t2), "%lld",
             (long long)(clock_us(CLOCK_PROCESS_CPUTIME_ID) - j->start_cpu_us));
    char **av = fsi_xcalloc((size_t)(argc - args.extra) + 10, sizeof(char *));
    size_t n = 0;
    av[n++] = exec;
    av[n++] = "--id";
    av[n++] = (char *)j->id;
    av[n++] = "--start-time-us";
    av[n++] = t0;
    av[n++] = "--start-time-cpu-us";
    av[n++] = t1;
    av[n++] = "--parent-cpu-time-us";
    av[n++] = t2;
    for (int i = args.extra; i < argc; i++)
        av[n++] = argv[i];
    char *envp[] = {NULL};
    /* std::process::Command with .gid()/.uid(): setgid, drop supplementary groups, setuid. */
    if (setgid(j->gid) < 0 || setgroups(0, NULL) < 0 || setuid(j->uid) < 0)
        fail_io("Exec", "Failed to exec into Firecracker", errno);
    execve(exec, av, envp);
    fail_io("Exec", "Failed to exec into Firecracker", errno);
}

static void daemonize(int dev_null)
{
    pid_t pid = fork();
    if (pid < 0)
        fail_io("Daemonize", "Failed to daemonize", errno);
    if (pid)
        leave(0);
    if (setsid() < 0)
        fail_io("SetSid", "Failed to daemonize: setsid", errno);
    pid = fork();
    if (pid < 0)
        fail_io("Daemonize", "Failed to daemonize", errno);
    if (pid)
        leave(0);
    dup2(dev_null, STDIN_FILENO);
    dup2(dev_null, STDOUT_FILENO);
    dup2(dev_null, STDERR_FILENO);
}

static void run(jail *j, int argc, char **argv)
{
    copy_exec(j);
    if (j->netns) {
        int fd = open(j->netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            fail_path_io("FileOpen", "Failed to open file", j->netns, errno);
        if (setns(fd, CLONE_NEWNET) < 0)
            fail_io("SetNetNs", "Failed to join network namespace: netns", errno);
        close(fd);
    }
    set_limits(j);
    int dev_null = -1;
    if (j->daemonize && (dev_null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
        fail_path_io("Open", "Failed to open", "/dev/null", errno);
    pivot_into(j->chroot_dir);
    static const char *const folders[] = {"/", "/dev", "/dev/net", "/run"};
    for (size_t i = 0; i < 4; i++)
        jailed_folder(j, folders[i]);
    mknod_or_fail(j, "/dev/net/tun", 10, 200);
    mknod_or_fail(j, "/dev/kvm", 10, 232);
    int err = make_dev(j, "/dev/urandom", 1, 9);
    if (err) {
        char *e = fsi_io_error(err);
        printf("Warning! Could not create /dev/urandom device inside jailer: Failed to create "
               "/dev/urandom via mknod inside the jail: %s.\nMMDS version 2 will not be "
               "available to use.\n",
               e);
        free(e);
    }
    if (j->uffd_minor >= 0)
        mknod_or_fail(j, "/dev/userfaultfd", 10, (unsigned)j->uffd_minor);
    if (j->daemonize)
        daemonize(dev_null);
    if (!j->new_pid_ns) {
        save_pid(j, getpid());
        exec_firecracker(j, argc, argv);
    }
    /* An init in a new PID namespace gets from its ancestors only the signals
     * it handles: a session leader first gives the child its own session. */
    bool leader = !j->daemonize && getsid(0) == getpid();
    long pid = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid < 0)
        fail_io("Clone", "Failed cloning into a new child process", errno);
    if (pid == 0) {
        if (leader && setsid() < 0)
            fail_io("SetSid", "Failed to daemonize: setsid", errno);
        exec_firecracker(j, argc, argv);
    }
    save_pid(j, (pid_t)pid);
    leave(0);
}

int main(int argc, char **argv)
{
    syscall(SYS_close_range, 3U, ~0U, 0U); /* sanitize_process() */
    jail j = {.start_us = clock_us(CLOCK_MONOTONIC),
              .start_cpu_us = clock_us(CLOCK_PROCESS_CPUTIME_ID)};
    char *debug = NULL, *display = NULL;
    int rc = fsi_args_parse(&args, argc, argv, &debug, &display);
    if (rc == FSI_ARGS_HELP) {
        printf("Jailer v%s\n\n", FSI_VERSION);
        fsi_args_help(&args);
        printf("\n\nAny arguments after the -- separator will be supplied to the jailed "
               "binary.\n\n");
        return 0;
    }
    if (rc == FSI_ARGS_VERSION) {
        printf("Jailer v%s\n\n", FSI_VERSION);
        return 0;
    }
    if (rc < 0) {
        char *m = fsi_xasprintf("Failed to parse arguments: %s", display);
        char *d = fsi_xasprintf("ArgumentParsing(%s)", debug);
        free(debug);
        free(display);
        fail(m, d);
    }
    setup(&j);
    mkdir_p(j.chroot_dir);
    run(&j, argc, argv);
    return 0;
}
