"""chcpctl's generated documentation and shell completion: the committed man
page and completion scripts are exactly what the binary generates from its
command table; the man page renders without warnings and documents every
command and option; docs/cli.md carries the same exit status table; the
bash and zsh completions work (driven for real, VM ids from a live daemon)."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, chcpctl_bin

MAN = os.path.join(REPO, "docs", "man", "chcpctl.1")
BASH = os.path.join(REPO, "contrib", "completion", "chcpctl.bash")
ZSH = os.path.join(REPO, "contrib", "completion", "_chcpctl")
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("path,args", [(MAN, ["__man"]), (BASH, ["completion", "bash"]),
                                       (ZSH, ["completion", "zsh"])])
def test_committed_copies_are_current(ctl, path, args):
    generated = ctl.ok(*args).stdout
    with open(path) as f:
        committed = f.read()
    assert committed == generated, (
        "%s is stale: regenerate it with `chcpctl %s > %s`" % (
            os.path.relpath(path, REPO), " ".join(args), os.path.relpath(path, REPO)))


def test_man_page_renders_without_warnings():
    r = subprocess.run(["groff", "-man", "-ww", "-z", MAN], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", MAN], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    sections = re.findall(r"^([A-Z][A-Z ]+)$", rendered_man(), re.M)
    assert sections == ["NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "COMMANDS",
                        "DURATIONS AND SIZES", "EXIT STATUS", "ENVIRONMENT", "EXAMPLES",
                        "SEE ALSO"], sections


def rendered_man():
    """The man page as plain text (no overstriking)."""
    r = subprocess.run(["groff", "-man", "-Tascii", "-P", "-cbou", MAN], capture_output=True,
                       text=True, env={"PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    return r.stdout


def man_section(man, name):
    """Text of a section (NAME) or a command's subsection (   create)."""
    m = re.search(r"^%s\n(.*?)(?=^\S|^   \S)" % re.escape(name), man, re.M | re.S)
    assert m, "no %r in the man page" % name
    return m.group(1)


def test_man_page_documents_every_command_and_option(ctl):
    man = rendered_man()
    commands = re.findall(r"^  (\S+)\s{2,}", ctl.ok("--help").stdout.split("Commands:")[1]
                          .split("Global options:")[0], re.M)
    assert len(commands) >= 14
    globals_text = man_section(man, "GLOBAL OPTIONS")
    for opt in re.findall(r"^  (?:-\w, )?\s*(--[\w-]+)", ctl.ok("--help").stdout, re.M):
        assert re.search(r"^       (-\w, )?%s\b" % opt, globals_text, re.M), opt
    for cmd in commands:
        section = man_section(man, "   " + cmd)
        for opt in re.findall(r"^  (?:-\w, )?\s*(--[\w-]+)", ctl.ok(cmd, "--help").stdout, re.M):
            assert re.search(r"^       (-\w, )?%s\b" % opt, section, re.M), (cmd, opt)


def man_exit_statuses():
    return [int(s) for s in re.findall(r"^       (\d+)(?: |$)", man_section(rendered_man(), "EXIT STATUS"),
                                       re.M)]


def test_man_page_exit_statuses():
    assert man_exit_statuses() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 130]


def test_docs_cli_md_has_the_exit_status_table():
    with open(os.path.join(REPO, "docs", "cli.md")) as f:
        doc = f.read()
    documented = [int(s) for s in re.findall(r"^\| (\d+) \|", doc, re.M)]
    assert documented == man_exit_statuses()


def test_completion_scripts_parse():
    assert subprocess.run(["bash", "-n", BASH]).returncode == 0
    zsh = shutil.which("zsh")
    assert zsh, "zsh is missing: scripts/deps.sh --tools installs it"
    assert subprocess.run([zsh, "-n", ZSH]).returncode == 0


# ---- bash completion, for real -------------------------------------------------------------

def bash_complete(*words, endpoint=None):
    """COMPREPLY for a command line whose last word is being completed."""
    script = r'''
source "$1"; shift
COMP_WORDS=(chcpctl "$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_chcpctl
printf '%s\n' "${COMPREPLY[@]}"
'''
    env = {"PATH": os.path.dirname(chcpctl_bin()) + ":" + os.environ["PATH"]}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    r = subprocess.run(["bash", "-c", script, "bash", BASH] + list(words), capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [l for l in r.stdout.splitlines() if l]


def test_bash_completion_commands_options_values():
    assert bash_complete("")[:3] == ["create", "get", "list"]
    assert bash_complete("sh") == ["shutdown"]
    assert bash_complete("--ou") == ["--output"]
    assert bash_complete("-o", "") == ["table", "json"]
    assert bash_complete("list", "--st") == ["--state"]
    assert "--endpoint" in bash_complete("list", "--")  # globals after the command too
    assert bash_complete("list", "--state", "sh") == ["shutting-down", "shutdown"]
    assert bash_complete("wait", "vm", "--for", "running,pa") == ["running,paused"]
    assert bash_complete("completion", "") == ["bash", "zsh"]
    assert sorted(bash_complete("help", "re")) == ["reboot", "resume"]
    assert bash_complete("-e", "unix:///nowhere", "create", "--dry") == ["--dry-run"]


def test_bash_completion_asks_the_daemon_for_vm_ids(uctl):
    d = uctl.daemon
    uctl.ok("create", "web-1", "--kernel", d.kernel)
    uctl.ok("create", "web-2", "--kernel", d.kernel)
    uctl.ok("create", "db-1", "--kernel", d.kernel)
    assert bash_complete("--endpoint", uctl.endpoint, "boot", "we") == ["web-1", "web-2"]
    assert bash_complete("-e", uctl.endpoint, "delete", "") == ["db-1", "web-1", "web-2"]
    # Without a reachable daemon: nothing, quickly, and no noise.
    assert bash_complete("-e", "unix:///nowhere.sock", "boot", "") == []


# ---- zsh completion, for real (an interactive zsh in a pty) --------------------------------

def zsh_complete(line, expected):
    """The screen after typing `line` and TAB TAB, once `expected` is on it."""
    zsh = shutil.which("zsh")
    assert zsh, "zsh is missing: scripts/deps.sh --tools installs it"
    r = subprocess.run([zsh, "-f", os.path.join(HERE, "zsh_complete.zsh"), os.path.dirname(ZSH),
                        os.path.dirname(chcpctl_bin()), line, expected], capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, "%r never showed %r:\n%s%s" % (line, expected, r.stdout, r.stderr)
    return r.stdout


def test_zsh_completion(uctl):
    out = zsh_complete("chcpctl ", "watch ")
    for cmd in ("create", "delete", "list", "wait", "watch"):
        assert re.search(r"^%s\s+-- " % cmd, out, re.M), out
    assert re.search(r"^bash\s+zsh", zsh_complete("chcpctl completion ", "zsh"), re.M)
    out = zsh_complete("chcpctl list --state=", "shutting-down")
    assert "crashed" in out, out
    uctl.ok("create", "zz-top", "--kernel", uctl.daemon.kernel)
    zsh_complete("chcpctl --endpoint %s boot zz" % uctl.endpoint, "boot zz-top")
