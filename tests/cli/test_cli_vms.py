"""chcpctl against a real chcp-api on the Cloud Hypervisor stand-in: every
VmService call through its command, over the Unix socket and over TCP, the
text and -o json outputs (parsed and checked), and the exit status of each
error class."""

import json
import re

import pytest


def vm_json(ctl, vm_id):
    r = ctl.ok("-o", "json", "get", vm_id)
    return json.loads(r.stdout)


def test_lifecycle(vmctl):
    d = vmctl.daemon
    r = vmctl.ok("create", "web-1", "--kernel", d.kernel, "--cpus", "2", "--memory", "256M",
                 "--label", "app=web")
    assert r.stdout == "web-1: created\n"
    for cmd, state in (("boot", "running"), ("pause", "paused"), ("resume", "running"),
                       ("reboot", "running"), ("shutdown", "shutdown"), ("start", "running")):
        assert vmctl.ok(cmd, "web-1").stdout == "web-1: %s\n" % state, cmd
    assert vmctl.ok("stop", "web-1", "--force").stdout == "web-1: shutdown\n"
    assert vmctl.ok("boot", "web-1").stdout == "web-1: running\n"
    assert vmctl.ok("shutdown", "web-1", "--grace", "1500ms").stdout == "web-1: shutdown\n"
    doc = vm_json(vmctl, "web-1")
    assert doc["state"] == "VM_STATE_SHUTDOWN"
    assert doc["config"]["cpus"] == {"bootVcpus": 2}
    assert doc["config"]["memory"] == {"size": str(256 << 20)}
    assert doc["labels"] == {"app": "web"}
    assert vmctl.ok("delete", "web-1").stdout == "web-1: deleted\n"
    assert vmctl.ok("list", "-q").stdout == ""


def test_json_outputs(vmctl):
    d = vmctl.daemon
    created = json.loads(vmctl.ok("-o", "json", "create", "j-1", "--kernel", d.kernel).stdout)
    assert created["vmId"] == "j-1" and created["state"] == "VM_STATE_CREATED"
    assert created["vmmPid"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", created["createdAt"])
    booted = json.loads(vmctl.ok("boot", "j-1", "-o", "json").stdout)
    assert booted["state"] == "VM_STATE_RUNNING" and booted["vmmState"] == "Running"
    listed = json.loads(vmctl.ok("-o", "json", "list").stdout)
    assert list(listed) == ["vms"]
    assert [v["vmId"] for v in listed["vms"]] == ["j-1"]
    assert listed["vms"][0]["state"] == "VM_STATE_RUNNING"
    deleted = json.loads(vmctl.ok("-o", "json", "delete", "j-1").stdout)
    assert deleted == {"vmId": "j-1"}
    assert json.loads(vmctl.ok("-o", "json", "list").stdout) == {}


def test_get_details(uctl):
    d = uctl.daemon
    uctl.ok("create", "d-1", "--kernel", d.kernel, "--cmdline", "console=hvc0", "--cpus", "2",
            "--max-cpus", "4", "--memory", "1G", "--disk", d.kernel + ",readonly,image-type=raw",
            "-l", "app=web", "-l", "tier=front", "--boot")
    out = uctl.ok("get", "d-1").stdout
    fields = dict(re.findall(r"^(\w[\w ]*):\s+(.*)$", out, re.M))
    assert fields["VM"] == "d-1"
    assert re.fullmatch(r"running \(since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, \d+s ago\)",
                        fields["State"]), fields["State"]
    assert re.fullmatch(r"pid \d+, Running", fields["VMM"])
    assert fields["Labels"] == "app=web,tier=front"
    assert fields["CPUs"] == "2 (max 4)"
    assert fields["Memory"].startswith("1 GiB")
    assert fields["Kernel"] == d.kernel
    assert fields["Cmdline"] == "console=hvc0"
    assert fields["Disks"] == d.kernel + " (read-only) raw"


def test_list_table_and_filters(uctl):
    d = uctl.daemon
    uctl.ok("create", "a-1", "--kernel", d.kernel, "-l", "app=web", "--boot")
    uctl.ok("create", "b-1", "--kernel", d.kernel, "-l", "app=db", "--memory", "2G")
    uctl.ok("create", "c-1", "--kernel", d.kernel, "-l", "app=web", "-l", "tier=front")
    lines = uctl.ok("ls").stdout.splitlines()
    assert lines[0].split() == ["VM", "STATE", "CPUS", "MEMORY", "PID", "AGE", "LABELS"]
    rows = [l.split() for l in lines[1:]]
    assert [r[0] for r in rows] == ["a-1", "b-1", "c-1"]
    assert rows[0][1] == "running" and rows[1][1] == "created"
    assert rows[1][3:5] == ["2", "GiB"]  # MEMORY "2 GiB"
    assert rows[0][2] == "1" and rows[0][3:5] == ["512", "MiB"]  # Cloud Hypervisor's defaults
    # Columns line up: every row's STATE starts where the header's does.
    col = lines[0].index("STATE")
    assert all(l[col - 1] == " " and l[col] != " " for l in lines[1:])
    assert uctl.ok("list", "-q", "--state", "running").stdout == "a-1\n"
    assert uctl.ok("list", "-q", "-s", "created,running").stdout == "a-1\nb-1\nc-1\n"
    assert uctl.ok("list", "-q", "--state", "VM_STATE_CREATED", "--state", "paused").stdout == \
        "b-1\nc-1\n"
    assert uctl.ok("list", "-q", "-l", "app=web").stdout == "a-1\nc-1\n"
    assert uctl.ok("list", "-q", "-l", "app=web", "-l", "tier=front").stdout == "c-1\n"
    assert uctl.ok("list", "--no-headers", "-l", "app=db").stdout.split()[0] == "b-1"
    assert uctl.ok("list", "-s", "crashed").stdout.split() == lines[0].split()


def test_list_fetches_every_page(uctl):
    d = uctl.daemon
    for i in range(5):
        uctl.ok("create", "p-%d" % i, "--kernel", d.kernel, "-l", "odd=%s" % (i % 2 == 1))
    want = ["p-%d" % i for i in range(5)]
    for size in ("1", "2", "1000"):
        assert uctl.ok("list", "-q", "--page-size", size).stdout.split() == want, size
        doc = json.loads(uctl.ok("-o", "json", "list", "--page-size", size).stdout)
        assert [v["vmId"] for v in doc["vms"]] == want and "nextPageToken" not in doc
    assert uctl.ok("list", "-q", "--page-size", "1", "-l", "odd=True").stdout.split() == \
        ["p-1", "p-3"]
    assert "--page-size" in uctl.fails(2, "list", "--page-size", "0").stderr


def test_server_generated_id(uctl):
    out = uctl.ok("create", "--kernel", uctl.daemon.kernel).stdout
    m = re.fullmatch(r"([a-z0-9][a-z0-9-]*): created\n", out)
    assert m, out
    assert uctl.ok("list", "-q").stdout == m.group(1) + "\n"


def test_create_from_file_and_boot(uctl, tmp_path):
    d = uctl.daemon
    spec = tmp_path / "vm.yaml"
    spec.write_text("vmId: f-1\nlabels: {team: infra}\nconfig:\n  payload: {kernel: %s}\n"
                    "  cpus: {bootVcpus: 2}\n  memory: {size: 128M}\n" % d.kernel)
    assert uctl.ok("create", "-f", spec, "--boot").stdout == "f-1: running\n"
    doc = vm_json(uctl, "f-1")
    assert doc["config"]["memory"]["size"] == str(128 << 20)
    assert doc["labels"] == {"team": "infra"}
    # Same id, same configuration: the existing VM (idempotent retry).
    assert uctl.ok("create", "-f", spec).stdout == "f-1: running\n"
    # Same id, other configuration: already_exists, exit 8.
    r = uctl.fails(8, "create", "-f", spec, "--cpus", "4")
    assert "(already_exists)" in r.stderr


# ---- exit status per error class ---------------------------------------------------------------

def test_not_found_exit_3(vmctl):
    r = vmctl.fails(3, "get", "ghost")
    assert r.stderr == "chcpctl: get ghost: VM ghost not found (not_found)\n"
    for cmd in ("boot", "shutdown", "pause", "resume", "reboot", "delete"):
        vmctl.fails(3, cmd, "ghost")
    assert vmctl.ok("delete", "--ignore-not-found", "ghost").stdout == "ghost: not found (ignored)\n"


def test_several_vms_first_failure_wins(uctl):
    d = uctl.daemon
    uctl.ok("create", "m-1", "--kernel", d.kernel)
    uctl.ok("create", "m-2", "--kernel", d.kernel)
    # Every VM is tried; the status is the first failure's (not_found = 3),
    # even though a later one fails differently.
    uctl.ok("boot", "m-2")
    r = uctl.fails(3, "pause", "ghost", "m-1", "m-2")
    assert r.stdout == "m-2: paused\n"
    assert "pause ghost" in r.stderr and "pause m-1" in r.stderr
    assert "(failed_precondition)" in r.stderr
    out = uctl.ok("get", "m-1", "m-2").stdout
    assert out.count("VM:") == 2 and "\n\nVM:" in out
    r = uctl.ok("-o", "json", "get", "m-1", "m-2")
    assert [json.loads(l)["vmId"] for l in r.stdout.splitlines()] == ["m-1", "m-2"]


def test_wrong_state_exit_4(uctl):
    uctl.ok("create", "s-1", "--kernel", uctl.daemon.kernel)
    r = uctl.fails(4, "pause", "s-1")
    assert "(failed_precondition)" in r.stderr


def test_invalid_argument_exit_7(uctl):
    r = uctl.fails(7, "create", "Not_A_Label", "--kernel", uctl.daemon.kernel)
    assert "(invalid_argument)" in r.stderr


def test_permission_denied_exit_9(uctl):
    r = uctl.fails(9, "create", "p-1", "--kernel", "/etc/passwd")
    assert "(permission_denied)" in r.stderr


def test_unavailable_exit_5(ctl, tmp_path, refused_port):
    r = ctl.fails(5, "--endpoint", "127.0.0.1:%d" % refused_port, "list")
    assert r.stderr == "chcpctl: list: cannot connect to http://127.0.0.1:%d: Connection refused " \
        "(unavailable)\n" % refused_port
    sock = tmp_path / "none.sock"
    r = ctl.fails(5, "--endpoint", str(sock), "get", "x")
    assert "cannot connect to unix://%s: No such file or directory" % sock in r.stderr


def test_unimplemented_exit_11(ctl, daemon):
    # A prefix the daemon does not route: 404, which Connect reads as unimplemented.
    r = ctl.fails(11, "--endpoint", "http://127.0.0.1:%d/not/chcp" % daemon.port, "list")
    assert "(unimplemented)" in r.stderr


def test_request_timeout_exit_6(uctl):
    d = uctl.daemon
    uctl.ok("create", "t-1", "--kernel", d.kernel, "--cmdline", "standin.delay_on=boot:3000")
    r = uctl.fails(6, "--request-timeout", "300ms", "boot", "t-1", timeout=30)
    assert "(deadline_exceeded)" in r.stderr


def test_json_error_on_stderr(uctl):
    r = uctl.fails(3, "-o", "json", "boot", "ghost")
    assert r.stdout == ""
    assert json.loads(r.stderr) == {"code": "not_found", "message": "VM ghost not found",
                                    "context": "boot ghost", "vmId": "ghost"}


def test_terminal_escapes_are_neutralised(uctl):
    # Whatever the daemon or the user typed is shown with control characters
    # as '?', so no output can drive the terminal.
    r = uctl.fails(7, "get", "x\x1b[2Jy\x07")
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert r.stderr.startswith("chcpctl: get x?[2Jy?: vm_id: ")
    # JSON keeps the exact value.
    r = uctl.fails(7, "-o", "json", "get", "x\x1b[2Jy")
    assert json.loads(r.stderr)["vmId"] == "x\x1b[2Jy"
