"""chcpctl without a daemon: help, version, usage errors (exit 2), endpoint
parsing, and `create --dry-run` turning YAML, JSON and flags into the same
CreateVmRequest, with precise errors for bad specs."""

import json
import os
import re

import pytest

from conftest import REPO

COMMANDS = ["create", "get", "list", "boot", "shutdown", "pause", "resume", "reboot", "delete",
            "wait", "watch", "completion", "help", "version"]


def test_version(ctl):
    version = open(os.path.join(REPO, "VERSION")).read().strip()
    for args in (["--version"], ["version"]):
        r = ctl.ok(*args)
        assert re.fullmatch(r"chcpctl %s \(git ([0-9a-f]{4,40}|unknown)\)\n" % re.escape(version),
                            r.stdout), r.stdout
    doc = json.loads(ctl.ok("-o", "json", "version").stdout)
    assert doc["version"] == version and doc["gitRevision"]


def test_help_lists_every_command(ctl):
    out = ctl.ok("--help").stdout
    listed = re.findall(r"^  (\S+)\s{2,}", out.split("Commands:")[1].split("Global options:")[0], re.M)
    assert listed == COMMANDS
    assert ctl.ok("help").stdout == out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_per_command(ctl, cmd):
    out = ctl.ok(cmd, "--help").stdout
    assert out.startswith("Usage: chcpctl %s" % cmd), out
    assert ctl.ok("help", cmd).stdout == out
    assert ctl.ok("-h", cmd).stdout == out  # global option before the command


def test_aliases(ctl):
    for alias, name in (("ls", "list"), ("rm", "delete"), ("start", "boot"), ("stop", "shutdown"),
                        ("show", "get")):
        assert ctl.ok(alias, "--help").stdout == ctl.ok(name, "--help").stdout


@pytest.mark.parametrize("args,message", [
    ([], "Usage: chcpctl"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["list", "--frob"], "unknown option --frob"),
    (["list", "-Z"], "unknown option -Z"),
    (["get"], "get: missing VM..."),
    (["wait", "a", "b", "--for", "running"], "unexpected argument 'b'"),
    (["wait", "vm"], "--for STATE is required"),
    (["wait", "vm", "--for", "sleeping"], "--for: unknown state 'sleeping'"),
    (["wait", "vm", "--for", "running", "--timeout", "soon"], "--timeout: invalid duration"),
    (["list", "--state", "running,dancing"], "--state: unknown state 'dancing'"),
    (["list", "--label", "novalue"], "expected KEY=VALUE"),
    (["-o", "yaml", "list"], "--output: unknown format 'yaml'"),
    (["list", "-o", "json", "-o", "table"], "--output given more than once"),
    (["-o", "json", "list", "-o", "json"], "--output given more than once"),
    (["--request-timeout", "5x", "list"], "--request-timeout: invalid duration"),
    (["shutdown", "vm", "--grace", "1s", "--force"], "exclude each other"),
    (["watch", "--count", "0"], "--count: expected a positive number"),
    (["watch", "vm", "--label", "a=b"], "cannot be used with VM ids"),
    (["completion", "fish"], "unknown shell 'fish'"),
    (["list", "--endpoint"], "option --endpoint needs a value"),
])
def test_usage_errors_exit_2(ctl, args, message):
    r = ctl.fails(2, *args)
    assert message in r.stderr, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("endpoint,message", [
    ("ftp://host", "unsupported scheme"),
    ("http://host:99999", "invalid port"),
    ("http://host:0", "invalid port"),
    ("unix://relative/path", "needs an absolute path"),
    ("http://user@host", "user info is not supported"),
    ("http://host/x?y=1", "'?' and '#' are not allowed"),
    ("http://[::1", "missing ']'"),
    ("unix:///" + "x" * 200, "longer than"),
    ("", "empty"),
])
def test_bad_endpoints_exit_2(ctl, endpoint, message):
    r = ctl.fails(2, "--endpoint", endpoint, "list")
    assert message in r.stderr, r.stderr


def test_endpoint_from_environment(ctl):
    r = ctl.fails(2, "list", env={"CHCPCTL_ENDPOINT": "ftp://x"})
    assert "unsupported scheme" in r.stderr
    # The flag wins over the variable.
    r = ctl.fails(2, "--endpoint", "http://h:0", "list", env={"CHCPCTL_ENDPOINT": "ftp://x"})
    assert "invalid port" in r.stderr


def test_tls_options_need_https(ctl, tmp_path):
    r = ctl.fails(2, "--endpoint", "http://127.0.0.1:1", "--cacert", "/dev/null", "list")
    assert "not https://" in r.stderr


# ---- create --dry-run: the request chcpctl would send ----------------------------------------

KERNEL = "/images/vmlinux"

YAML_SPEC = """\
# a VM spec as a person writes it
vmId: web-1
labels:
  app: web
  serial: 12345          # a number-looking label value stays text
config:
  payload:
    kernel: /images/vmlinux
    cmdline: console=hvc0 quiet
  cpus: {boot_vcpus: 2, maxVcpus: 4, nested: off}
  memory:
    size: 1G
    hotplug_size: 512M
    thp: false
  disks:
    - path: /images/root.img
      readonly: yes
      image_type: qcow2
    - {path: /images/data.img, serial: 0042, numQueues: 2}
  net:
    - {tap: tap0, mac: "52:54:00:12:34:56", mtu: 1500}
  console: {mode: PTY}
  serial: {mode: CONSOLE_MODE_NULL}
"""

CANONICAL = {
    "vmId": "web-1",
    "labels": {"app": "web", "serial": "12345"},
    "config": {
        "payload": {"kernel": KERNEL, "cmdline": "console=hvc0 quiet"},
        "cpus": {"bootVcpus": 2, "maxVcpus": 4, "nested": False},
        "memory": {"size": str(1 << 30), "hotplugSize": str(512 << 20), "thp": False},
        "disks": [
            {"path": "/images/root.img", "readonly": True, "imageType": "DISK_IMAGE_TYPE_QCOW2"},
            {"path": "/images/data.img", "serial": "0042", "numQueues": 2},
        ],
        "net": [{"tap": "tap0", "mac": "52:54:00:12:34:56", "mtu": 1500}],
        "console": {"mode": "CONSOLE_MODE_PTY"},
        "serial": {"mode": "CONSOLE_MODE_NULL"},
    },
}


def dry_run(ctl, *args, **kw):
    r = ctl.ok("create", "--dry-run", *args, **kw)
    assert r.stdout.count("\n") == 1, r.stdout  # one document, one line
    return json.loads(r.stdout)


def test_create_from_yaml(ctl, tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text(YAML_SPEC)
    assert dry_run(ctl, "-f", f) == CANONICAL


def test_create_from_json(ctl, tmp_path):
    # The API's own JSON (what -o json prints), and a file named .json.
    f = tmp_path / "web.json"
    f.write_text(json.dumps(CANONICAL, indent=2))
    assert dry_run(ctl, "-f", f) == CANONICAL
    # snake_case names and numbers for 64-bit fields are accepted too.
    alt = json.loads(json.dumps(CANONICAL))
    alt["config"]["memory"] = {"size": 1 << 30, "hotplug_size": str(512 << 20), "thp": False}
    f2 = tmp_path / "spec"  # no extension: sniffed from the leading '{'
    f2.write_text(json.dumps(alt))
    assert dry_run(ctl, "-f", f2) == CANONICAL


def test_create_from_stdin(ctl):
    assert dry_run(ctl, "-f", "-", input=YAML_SPEC) == CANONICAL


def test_create_from_flags(ctl):
    doc = dry_run(ctl, "web-1", "--kernel", KERNEL, "--cmdline", "console=hvc0 quiet",
                  "--cpus", "2", "--max-cpus", "4", "--memory", "1G",
                  "--disk", "/images/root.img,readonly,image-type=qcow2",
                  "--disk", "/images/data.img,serial=0042,num-queues=2",
                  "--net", "tap0,mac=52:54:00:12:34:56,mtu=1500",
                  "--label", "app=web", "-l", "serial=12345",
                  "--console", "pty", "--serial", "null")
    want = json.loads(json.dumps(CANONICAL))
    del want["config"]["cpus"]["nested"]
    del want["config"]["memory"]["hotplugSize"]
    del want["config"]["memory"]["thp"]
    assert doc == want


def test_flags_override_and_extend_the_file(ctl, tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text(YAML_SPEC)
    doc = dry_run(ctl, "-f", f, "web-2", "--cpus", "8", "--memory", "2048M",
                  "--disk", "/images/extra.img", "--label", "app=api", "--label", "tier=back")
    assert doc["vmId"] == "web-2"
    assert doc["config"]["cpus"] == {"bootVcpus": 8, "maxVcpus": 4, "nested": False}
    assert doc["config"]["memory"]["size"] == str(2 << 30)
    assert [d["path"] for d in doc["config"]["disks"]] == [
        "/images/root.img", "/images/data.img", "/images/extra.img"]
    assert doc["labels"] == {"app": "api", "serial": "12345", "tier": "back"}


def test_labels_with_dots_and_equals(ctl):
    doc = dry_run(ctl, "--kernel", KERNEL, "-l", "app.kubernetes.io/name=web", "-l", "expr=a=b")
    assert doc["labels"] == {"app.kubernetes.io/name": "web", "expr": "a=b"}


@pytest.mark.parametrize("spec,message", [
    ("config:\n  cpus: {bootVcpu: 2}\n",
     'field "config.cpus.bootVcpu": unknown field (CpusConfig has: bootVcpus, maxVcpus'),
    ("config:\n  console: {mode: ptyy}\n",
     'field "config.console.mode": unknown value \'ptyy\' (one of: off, pty, tty, file, socket, null)'),
    ("config:\n  memory: {size: 1GB}\n", "write G or GiB (powers of 1024), not GB"),
    ("config:\n  memory: {size: lots}\n", "invalid size 'lots'"),
    ("config:\n  cpus: {bootVcpus: two}\n", 'field "config.cpus.bootVcpus": expected a whole number'),
    ("config:\n  cpus: {bootVcpus: 4294967296}\n", "4294967296 is out of range"),
    ("config:\n  disks: {path: /x}\n", 'field "config.disks": expected a list'),
    ("config:\n  disks:\n    - {path: /x, readonly: maybe}\n",
     'field "config.disks[0].readonly": expected true or false, got maybe'),
    ("config:\n  disks:\n    - {path: [a]}\n", 'field "config.disks[0].path": expected text'),
    ("labels: [a, b]\n", 'field "labels": expected a mapping'),
    ("vmId: a\nvm_id: b\n", "given twice"),
    ("vmId: a\nvmId: b\n", "duplicate key 'vmId'"),
    ("vmId: a\n---\nvmId: b\n", "more than one YAML document"),
    ("config: {cpus: [}\n", "web.yaml:1:"),
    ("- a\n- b\n", "expected a mapping (vmId, config, labels)"),
    ("", "empty document"),
])
def test_bad_specs_exit_2(ctl, tmp_path, spec, message):
    f = tmp_path / "web.yaml"
    f.write_text(spec)
    r = ctl.fails(2, "create", "-f", f, "--dry-run")
    assert message in r.stderr, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args,message", [
    (["--memory", "0.3K"], "not a whole number of bytes"),
    (["--cpus", "-1"], "expected a whole number"),
    (["--disk", "/x,readonly,readonly"], "repeated key"),
    (["--disk", "/x,bogus=1"], 'field "config.disks[0].bogus": unknown field'),
    (["--console", "sideways"], "unknown value 'sideways'"),
    (["-f", "/nonexistent/web.yaml"], "cannot open /nonexistent/web.yaml"),
])
def test_bad_create_flags_exit_2(ctl, args, message):
    r = ctl.fails(2, "create", "--kernel", KERNEL, "--dry-run", *args)
    assert message in r.stderr, r.stderr


def test_bad_json_spec(ctl, tmp_path):
    f = tmp_path / "web.json"
    f.write_text('{"vmId": "a", "vmId": "b"}')
    assert "duplicate object key" in ctl.fails(2, "create", "-f", f, "--dry-run").stderr
    f.write_text('{"vmId": ')
    assert "web.json:1:" in ctl.fails(2, "create", "-f", f, "--dry-run").stderr


def test_yaml_alias_bomb_is_refused(ctl, tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append("a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)))
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    r = ctl.fails(2, "create", "-f", f, "--dry-run", timeout=20)
    assert "too large" in r.stderr, r.stderr


def test_json_errors_on_stderr(ctl, tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text("config: {cpus: {bootVcpu: 2}}\n")
    r = ctl.fails(2, "-o", "json", "create", "-f", f, "--dry-run")
    err = json.loads(r.stderr)
    assert err["code"] == "invalid_argument"
    assert 'config.cpus.bootVcpu' in err["message"]
