"""The Debian package (make deb): its contents, its unit's sandbox, and the
package installed, started, used and removed - by hand where systemd is not
PID 1 (CI), and under a real systemd booted in its own namespaces where that
works (docs/packaging.md, "How the package is tested")."""

import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import deb_path, dpkg, exists_group, exists_user, installed, sh, standin_path
import sdboot

UNIT = "/lib/systemd/system/chcp-api.service"
CONFFILE = "/etc/default/chcp-api"
FILES = ["/usr/sbin/chcp-api", UNIT, "/usr/lib/sysusers.d/chcp.conf",
         "/usr/lib/tmpfiles.d/chcp.conf", "/usr/share/doc/chcp/config.md",
         "/usr/share/doc/chcp/packaging.md", "/usr/share/doc/chcp/copyright", CONFFILE,
         "/usr/bin/chcpctl", "/usr/share/man/man1/chcpctl.1.gz",
         "/usr/share/bash-completion/completions/chcpctl",
         "/usr/share/zsh/vendor-completions/_chcpctl"]
SOCKET = "/run/chcp/api.sock"
CAP_NET_ADMIN = 1 << 12


# ---- the package itself ----------------------------------------------------------

def control():
    out = sh("dpkg-deb", "-f", deb_path()).stdout
    fields = {}
    for line in out.splitlines():
        if line and not line[0].isspace() and ":" in line:
            k, v = line.split(":", 1)
            fields[k] = v.strip()
    return fields


def test_control_fields():
    c = control()
    assert c["Package"] == "chcp"
    assert c["Version"] == open(os.path.join(os.path.dirname(__file__), "..", "..",
                                             "VERSION")).read().strip()
    assert c["Architecture"] == sh("dpkg", "--print-architecture").stdout.strip()
    # dpkg-shlibdeps found the libraries the binary links.
    for lib in ("libc6", "libuv1", "libnghttp2-14", "libsqlite3-0", "libsystemd0",
                "libprotobuf-c1", "libjansson4", "libhttp-parser2.9",
                "libyaml-0-2", "libssl3"):  # the last two: chcpctl
        assert re.search(r"(^|, )%s( \(|,|$)" % re.escape(lib), c["Depends"]), c["Depends"]
    assert "libcurl4" in c["Recommends"]  # dlopen()ed, so not found by shlibdeps


def test_files_and_conffiles(tmp_path):
    listing = sh("dpkg-deb", "-c", deb_path()).stdout
    paths = {"/" + l.split()[-1].lstrip("./") for l in listing.splitlines() if l.split()[-1] != "./"}
    for f in FILES:
        assert f in paths, (f, sorted(paths))
    assert not [p for p in paths if p.startswith("/usr/local")]
    owners = {l.split()[1] for l in listing.splitlines()}
    assert owners == {"root/root"}, owners
    sh("dpkg-deb", "--ctrl-tarfile", deb_path())
    sh("dpkg-deb", "-e", deb_path(), str(tmp_path / "DEBIAN"))
    assert (tmp_path / "DEBIAN" / "conffiles").read_text().split() == [CONFFILE]
    for s in ("postinst", "prerm", "postrm"):
        assert os.stat(tmp_path / "DEBIAN" / s).st_mode & 0o111
        sh("sh", "-n", str(tmp_path / "DEBIAN" / s))  # parses
    sh("dpkg-deb", "-x", deb_path(), str(tmp_path / "root"))
    for b in ("usr/sbin/chcp-api", "usr/bin/chcpctl"):
        file_out = sh("file", "-b", str(tmp_path / "root" / b), check=False).stdout
        if file_out:
            assert "stripped" in file_out and "not stripped" not in file_out, (b, file_out)
    man = sh("zcat", str(tmp_path / "root/usr/share/man/man1/chcpctl.1.gz")).stdout
    assert re.search(r"^\.TH \"?CHCPCTL\"? \"?1", man, re.M | re.I), man[:300]
    unit = (tmp_path / "root" / UNIT.lstrip("/")).read_text()
    assert "ExecStart=/usr/sbin/chcp-api\n" in unit
    assert not re.search(r"@[A-Z]+@", unit)  # every placeholder filled in


def test_unit_sandbox_exposure(tmp_path):
    """systemd's own rating of the sandbox: every option counts, so dropping
    one (or adding a capability) raises the figure above the bar."""
    sh("dpkg-deb", "-x", deb_path(), str(tmp_path))
    r = sh("systemd-analyze", "security", "--offline=yes", "--no-pager",
           str(tmp_path / UNIT.lstrip("/")))
    m = re.search(r"Overall exposure level for chcp-api.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) <= 2.5, r.stdout


def test_make_install_honours_destdir_and_prefix(tmp_path):
    """make install: everything under DESTDIR+PREFIX, the unit pointing at the
    installed binary, an operator's /etc/default/chcp-api kept; uninstall
    removes what install put there."""
    repo = os.path.join(os.path.dirname(__file__), "..", "..")
    dest = tmp_path / "dest"

    def make(*targets):
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "B", "SAN")}
        return sh("make", "--no-print-directory", "-C", repo, "B=build/deb", "SAN=0", *targets,
                  "DESTDIR=%s" % dest, "PREFIX=/opt/chcp", env=env)

    make("install")
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert "opt/chcp/sbin/chcp-api" in files
    assert "opt/chcp/lib/systemd/system/chcp-api.service" in files
    assert "opt/chcp/lib/sysusers.d/chcp.conf" in files
    assert "opt/chcp/lib/tmpfiles.d/chcp.conf" in files
    assert "opt/chcp/bin/chcpctl" in files and "opt/chcp/share/man/man1/chcpctl.1" in files
    assert "opt/chcp/share/bash-completion/completions/chcpctl" in files
    assert "opt/chcp/share/zsh/site-functions/_chcpctl" in files
    assert "etc/default/chcp-api" in files
    assert all(f.startswith("opt/chcp/") or f == "etc/default/chcp-api" for f in files), files
    assert os.access(dest / "opt/chcp/sbin/chcp-api", os.X_OK)
    unit = (dest / "opt/chcp/lib/systemd/system/chcp-api.service").read_text()
    assert "\nExecStart=/opt/chcp/sbin/chcp-api\n" in unit
    assert "file:/opt/chcp/share/doc/chcp/config.md" in unit
    (dest / "etc/default/chcp-api").write_text("CHCP_PORT=9000\n")
    make("install")
    assert (dest / "etc/default/chcp-api").read_text() == "CHCP_PORT=9000\n"
    make("uninstall")
    left = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert left == ["etc/default/chcp-api"], left


# ---- the unit, read the way systemd reads it (for starting it by hand) -------------

def unit_settings(path=UNIT):
    """[Service] settings: {key: [values]}."""
    settings, section = {}, None
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            k, v = line.split("=", 1)
            settings.setdefault(k, []).append(v)
    return settings


def unit_environment(settings):
    env = {}
    for v in settings.get("Environment", []):
        for assignment in shlex.split(v):
            k, val = assignment.split("=", 1)
            env[k] = val
    for f in settings.get("EnvironmentFile", []):
        optional = f.startswith("-")
        f = f.lstrip("-")
        if not os.path.exists(f):
            assert optional, f
            continue
        for line in open(f):
            line = line.strip()
            if line and not line.startswith("#"):
                k, val = line.split("=", 1)
                env[k] = val
    return env


def seconds(value):
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def http_unix(path, method, target, body=None, timeout=10):
    """One HTTP/1.1 request over a Unix socket: (status, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        data = body.encode() if body else b""
        head = "%s %s HTTP/1.1\r\nHost: chcp\r\nConnection: close\r\n" % (method, target)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
        s.sendall(head.encode() + b"\r\n" + data)
        resp = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    status = int(resp.split(b" ", 2)[1])
    return status, resp.split(b"\r\n\r\n", 1)[1]


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def live():
    try:
        return http_unix(SOCKET, "GET", "/livez", timeout=2) == (200, b"ok")
    except OSError:
        return False


def vmm_on_path(path):
    return any(os.access(os.path.join(d, "cloud-hypervisor"), os.X_OK) for d in path.split(":"))


def assert_installed_files(present):
    for f in FILES:
        assert os.path.exists(f) == present, f


# ---- installed on a machine without systemd as PID 1 ----------------------------------

def test_install_run_by_hand_remove(machine, tmp_path):
    """dpkg -i where systemd does not run: the user, group and directories are
    made, nothing is started; the installed binary, started the way the unit
    starts it, serves and talks sd_notify; dpkg -r and --purge clean up."""
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here: the systemd test below covers installation")
    dpkg("-i", deb_path())
    assert installed()
    assert_installed_files(True)
    chcp = pwd.getpwnam("chcp")
    groups = sh("id", "-nG", "chcp").stdout.split()
    assert "chcp" in groups and "kvm" in groups, groups
    assert chcp.pw_dir == "/var/lib/chcp"
    for d, mode in (("/var/lib/chcp", 0o700), ("/var/lib/chcp/images", 0o700),
                    ("/run/chcp", 0o750)):
        st = os.stat(d)
        assert (st.st_uid, st.st_mode & 0o777) == (chcp.pw_uid, mode), d
    # Enabled for the next boot, not started.
    assert os.path.islink("/etc/systemd/system/multi-user.target.wants/chcp-api.service")

    r = sh("systemd-analyze", "verify", UNIT, check=False)
    assert r.returncode == 0, r.stdout + r.stderr

    # Started by hand as the unit would: its user, groups, capability,
    # environment and command, in a network namespace of its own (the
    # packaged port, 8080, is fixed); clients use the Unix socket.
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["KillMode"] == ["process"]
    env = unit_environment(s)
    assert env["CHCP_UNIX_SOCKET"] == SOCKET and env["CHCP_ADDRESS"] == "127.0.0.1"
    # The notify socket where user chcp can reach it (not in pytest's 0700 tree).
    notify_dir = tempfile.TemporaryDirectory(prefix="chcp-notify-", dir="/run")
    os.chmod(notify_dir.name, 0o755)
    notify = os.path.join(notify_dir.name, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify)
    ns.settimeout(20)
    os.chmod(notify, 0o777)
    env.update(PATH="/usr/sbin:/usr/bin:/sbin:/bin", NOTIFY_SOCKET=notify,
               WATCHDOG_USEC=str(seconds(s["WatchdogSec"][0]) * 1000000))
    caps = s["AmbientCapabilities"][0].lower().replace("cap_", "")
    exec_start = shlex.split(s["ExecStart"][0])
    setpriv = ["setpriv", "--reuid", s["User"][0], "--regid", s["Group"][0], "--init-groups",
               "--inh-caps=+" + caps, "--ambient-caps=+" + caps,
               "--bounding-set=-all,+" + caps]
    log = open(tmp_path / "daemon.log", "w")
    p = subprocess.Popen(["unshare", "--net", "--", "sh", "-c",
                          'ip link set lo up && exec "$@"', "sh"] + setpriv + exec_start,
                         env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         cwd="/")
    try:
        try:
            msgs = [ns.recv(4096), ns.recv(4096)]
        except socket.timeout:
            raise AssertionError("no READY=1/WATCHDOG=1 from the daemon:\n"
                                 + (tmp_path / "daemon.log").read_text())
        assert any(m.startswith(b"READY=1") for m in msgs), msgs
        assert b"WATCHDOG=1" in msgs, msgs
        assert wait_for(live, 10)
        # Live, and ready only once a VMM binary is there (none on build machines).
        status, body = http_unix(SOCKET, "GET", "/readyz")
        if not vmm_on_path(env["PATH"]):
            assert status == 503 and b"cloud-hypervisor" in body, (status, body)
        status, body = http_unix(SOCKET, "POST", "/cloudhypervisor.v1.VmService/ListVms", "{}")
        assert status == 200, body
        # The packaged CLI, on the packaged socket.
        r = sh("chcpctl", "--endpoint", "unix://" + SOCKET, "list")
        assert r.stdout.split()[:2] == ["VM", "STATE"], r.stdout
        st = os.stat("/proc/%d" % p.pid)
        assert st.st_uid == chcp.pw_uid
        capeff = int(re.search(r"CapEff:\s+([0-9a-f]+)",
                               open("/proc/%d/status" % p.pid).read()).group(1), 16)
        assert capeff == CAP_NET_ADMIN
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ns.close()
        notify_dir.cleanup()
        log.close()
    out = (tmp_path / "daemon.log").read_text()
    lines = [json.loads(l) for l in out.splitlines()]
    assert any(l["msg"].endswith(" listening") and l["port"] == "8080" for l in lines), out
    assert not os.path.exists(SOCKET)

    # Remove: files gone, the operator's configuration kept; purge: gone too.
    # The state and the user stay (VMs may still run): documented.
    with open(CONFFILE, "a") as f:
        f.write("CHCP_LOG_LEVEL=debug\n")
    dpkg("-r", "chcp")
    assert not installed()
    for f in FILES:
        assert os.path.exists(f) == (f == CONFFILE), f
    assert "CHCP_LOG_LEVEL=debug" in open(CONFFILE).read()
    dpkg("--purge", "chcp")
    assert not os.path.exists(CONFFILE)
    assert not os.path.lexists("/etc/systemd/system/multi-user.target.wants/chcp-api.service")
    assert not os.path.lexists("/etc/systemd/system/chcp-api.service")  # no mask left
    assert os.path.isdir("/var/lib/chcp") and exists_user("chcp")


# ---- installed under a real systemd ------------------------------------------------------

@pytest.fixture
def systemd():
    try:
        with sdboot.NamespacedSystemd() as sd:
            yield sd
    except sdboot.Unavailable as e:
        pytest.skip("cannot boot systemd in a namespace here: %s" % e)


def journal(sd, *match):
    r = sd.run("journalctl", "--no-pager", "-o", "json", "-u", "chcp-api", *match)
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def call(sd, method, body="{}"):
    r = sd.run("curl", "-sS", "--unix-socket", SOCKET, "-H", "content-type: application/json",
               "-d", body, "http://chcp/cloudhypervisor.v1.VmService/" + method, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_install_under_systemd(machine, systemd):
    sd = systemd
    if not os.access(standin_path(), os.X_OK):
        pytest.fail("CH stand-in missing at %s (make packaging-test builds it)" % standin_path())
    # postinst sees systemd running: enables and starts the unit.
    dpkg("-i", deb_path(), runner=sd.run)
    p = sd.show("chcp-api", "ActiveState", "SubState", "Type", "StatusText", "MainPID", "User",
                "UnitFileState", "WatchdogUSec", "KillMode")
    assert p["ActiveState"] == "active" and p["SubState"] == "running", p
    assert p["Type"] == "notify" and p["KillMode"] == "process"
    assert p["StatusText"].startswith("serving on 127.0.0.1 port 8080 and " + SOCKET), p
    assert p["UnitFileState"] == "enabled"
    assert p["WatchdogUSec"] == "30s"
    sd.run("curl", "-fsS", "--unix-socket", SOCKET, "http://chcp/livez")

    # Logs are journal entries with their fields, not JSON lines.
    entries = journal(sd)
    start = [e for e in entries if e.get("MESSAGE", "").endswith(" listening")]
    assert len(start) == 1, entries
    e = start[0]
    assert e["PRIORITY"] == "6" and e["SYSLOG_IDENTIFIER"] == "chcp-api"
    assert e["CODE_FILE"] == "src/daemon/daemon.c" and e["CODE_FUNC"] == "log_startup"
    assert e["PORT"] == "8080" and e["STATE_DIR"] == "/var/lib/chcp"
    assert not any(x.get("MESSAGE", "").startswith("{") for x in entries), entries

    # A VM, with the stand-in as VMM, under the full sandbox.
    sd.run("install", "-D", "-m", "0755", standin_path(), "/run/chcp-test/cloud-hypervisor")
    sd.run("sh", "-c", "printf 'kernel' > /var/lib/chcp/images/vmlinux && "
                       "chown chcp:chcp /var/lib/chcp/images/vmlinux")
    sd.write("/run/systemd/system/chcp-api.service.d/test.conf",
             "[Service]\nEnvironment=CHCP_CH_BINARY=/run/chcp-test/cloud-hypervisor\n"
             "WatchdogSec=1s\n")
    sd.run("systemctl", "daemon-reload")
    sd.run("systemctl", "restart", "chcp-api")
    assert sd.run("curl", "-fsS", "--unix-socket", SOCKET, "http://chcp/readyz").stdout == "ok"
    # An image chcp does not own cannot be staged (fs.protected_hardlinks):
    # refused with the reason, as docs/packaging.md tells operators.
    if open("/proc/sys/fs/protected_hardlinks").read().strip() == "1":
        sd.run("sh", "-c", "printf 'kernel' > /var/lib/chcp/images/root-owned && "
                           "chmod 0644 /var/lib/chcp/images/root-owned")
        refused = call(sd, "CreateVm", json.dumps({
            "vmId": "web-0", "config": {"payload": {"kernel": "/var/lib/chcp/images/root-owned"},
                                        "cpus": {"bootVcpus": 1},
                                        "memory": {"size": "268435456"}}}))
        assert refused["code"] == "failed_precondition", refused
        assert "protected_hardlinks" in refused["message"], refused
        sd.run("rm", "/var/lib/chcp/images/root-owned")
    created = call(sd, "CreateVm", json.dumps({
        "vmId": "web-1", "config": {"payload": {"kernel": "/var/lib/chcp/images/vmlinux"},
                                    "cpus": {"bootVcpus": 1}, "memory": {"size": "268435456"}}}))
    assert created["vm"]["state"] == "VM_STATE_CREATED", created
    booted = call(sd, "BootVm", '{"vmId":"web-1"}')
    assert booted["vm"]["state"] == "VM_STATE_RUNNING", booted
    vmm = sd.run("pgrep", "-u", "chcp", "-f", "/run/chcp-test/cloud-hypervisor").stdout.split()
    assert len(vmm) == 1, vmm
    status = sd.run("cat", "/proc/%s/status" % vmm[0]).stdout
    assert int(re.search(r"CapEff:\s+([0-9a-f]+)", status).group(1), 16) == CAP_NET_ADMIN
    assert re.search(r"NoNewPrivs:\s+1", status) and re.search(r"Seccomp:\s+2", status), status
    assert any(x.get("VM_ID") == "web-1" for x in journal(sd)), "no VM_ID field"
    # The packaged CLI with its defaults reaches the packaged daemon (TCP
    # 127.0.0.1:8080), and over the socket.
    assert sd.run("chcpctl", "get", "web-1").stdout.startswith("VM:          web-1\n")
    r = sd.run("chcpctl", "-e", "unix://" + SOCKET, "-o", "json", "get", "web-1")
    assert json.loads(r.stdout)["state"] == "VM_STATE_RUNNING"

    # The watchdog is fed (1 s here): pings keep coming, nothing restarts.
    first = int(sd.show("chcp-api", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
    assert wait_for(lambda: int(sd.show("chcp-api", "WatchdogTimestampMonotonic")[
        "WatchdogTimestampMonotonic"]) > first, 5)
    time.sleep(2.5)
    assert sd.show("chcp-api", "ActiveState", "NRestarts") == {"ActiveState": "active",
                                                               "NRestarts": "0"}

    # Restart: the VMM is not killed (KillMode=process) and is re-adopted.
    sd.run("systemctl", "restart", "chcp-api")
    assert sd.run("pgrep", "-u", "chcp", "-f", "/run/chcp-test/cloud-hypervisor").stdout.split() \
        == vmm
    info = call(sd, "GetVmInfo", '{"vmId":"web-1"}')
    assert info["vm"]["state"] == "VM_STATE_RUNNING", info

    # An invalid configuration: status 2, an error entry, no restart loop.
    sd.write("/run/systemd/system/chcp-api.service.d/bad.conf",
             "[Service]\nEnvironment=CHCP_PORT=http\n")
    sd.run("systemctl", "daemon-reload")
    assert sd.run("systemctl", "restart", "chcp-api", check=False).returncode != 0
    time.sleep(3)  # RestartSec=2s: a restart would have happened by now
    p = sd.show("chcp-api", "ActiveState", "ExecMainStatus", "NRestarts")
    assert p == {"ActiveState": "failed", "ExecMainStatus": "2", "NRestarts": "0"}, p
    bad = [x for x in journal(sd, "-p", "err") if "invalid configuration" in x["MESSAGE"]]
    assert bad and bad[-1]["MESSAGE"].startswith("invalid configuration: CHCP_PORT: "), bad
    assert bad[-1]["PRIORITY"] == "3"
    # ...where an operator looks first.
    status = sd.run("systemctl", "status", "--no-pager", "-n", "20", "chcp-api", check=False)
    assert "invalid configuration: CHCP_PORT: " in status.stdout, status.stdout
    sd.run("rm", "/run/systemd/system/chcp-api.service.d/bad.conf")
    sd.run("systemctl", "daemon-reload")
    sd.run("systemctl", "reset-failed", "chcp-api")
    sd.run("systemctl", "start", "chcp-api")
    assert call(sd, "DeleteVm", '{"vmId":"web-1"}') == {"vmId": "web-1"}
    assert wait_for(lambda: sd.run("pgrep", "-u", "chcp", "-f", "/run/chcp-test/cloud-hypervisor",
                                   check=False).stdout == "", 10)

    # dpkg -r stops the service and removes its files.
    dpkg("-r", "chcp", runner=sd.run)
    assert sd.show("chcp-api", "ActiveState")["ActiveState"] == "inactive"
    assert not os.path.exists("/usr/sbin/chcp-api") and not os.path.exists(UNIT)
    dpkg("--purge", "chcp", runner=sd.run)
    assert not installed()
