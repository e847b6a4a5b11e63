"""servers.py - starting, probing and stopping the two servers under test
(chcp-api and the connect-go peer), and reading their memory use.

Both listen on 127.0.0.1 only. Every process started here is stopped here,
by its own pid; VMM processes that chcp started are removed through chcp's
DeleteVm, and any that survive are ended by the pids chcp reported for them.
"""

import os
import signal
import socket
import subprocess
import time


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout):
    """True once 127.0.0.1:port accepts; False if proc exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def proc_status(pid):
    """Selected /proc/<pid>/status fields in KiB (VmRSS, VmHWM)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def rss_kib(pid):
    return proc_status(pid).get("VmRSS", 0)


def cpu_seconds(pid):
    """User + system CPU time of pid (all threads) in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return 0.0


class Server:
    """A started server: name, process, base URL, log file."""

    def __init__(self, name, argv, env, log_path, port):
        self.name = name
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def start_peer(peer_bin, data, work):
    port = free_port()
    s = Server(
        "connect-go",
        [peer_bin, "-addr", "127.0.0.1:%d" % port, "-data", data],
        {"PATH": "/usr/bin:/bin"},
        os.path.join(work, "peer.log"),
        port,
    )
    if not wait_listening(port, s.proc, 10):
        s.stop()
        raise RuntimeError("connect-go peer did not start:\n" + s.log_tail())
    return s


def start_chcp(chcp_bin, work, standin, image_dir, tag="chcp"):
    """Start chcp-api with its own state directory and log, named after tag;
    returns (server, None) or (None, reason)."""
    port = free_port()
    state = os.path.join(work, tag + "-state")
    os.makedirs(state, exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "CHCP_ADDRESS": "127.0.0.1",
        "CHCP_PORT": str(port),
        "CHCP_STATE_DIR": state,
        "CHCP_IMAGE_DIRS": image_dir,
        # Per-request logging is not part of either server's measured path.
        "CHCP_LOG_LEVEL": "warn",
    }
    if standin:
        env["CHCP_CH_BINARY"] = standin
    s = Server("chcp", [chcp_bin], env, os.path.join(work, tag + ".log"), port)
    if not wait_listening(port, s.proc, 10):
        tail = s.log_tail()
        code = s.proc.poll()
        s.stop()
        why = "exited with %s" % code if code is not None else "not listening after 10 s"
        return None, "chcp-api %s: %s" % (why, tail.strip()[-300:] or "(no output)")
    return s, None


def kill_pids(pids, exe_hint):
    """End leftover VMM processes by pid, only if they still run exe_hint."""
    killed = 0
    for pid in pids:
        if not pid:
            continue
        try:
            exe = os.readlink("/proc/%d/exe" % pid)
        except OSError:
            continue
        if exe_hint and os.path.basename(exe) != os.path.basename(exe_hint):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except OSError:
            pass
    return killed
