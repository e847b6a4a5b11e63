"""Garbage in, nothing breaks: seeded random bytes, mangled HTTP/1.1 and
mangled HTTP/2 frames on TCP and the Unix socket. The daemon must keep
answering /health and, at teardown, exit 0 with no sanitizer report."""

import random
import socket
import time

SVC = b"/cloudhypervisor.v1.VmService/"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ROUNDS = 150


def send_and_drain(connect, data, timeout=0.5):
    s = connect()
    s.settimeout(timeout)
    try:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not s.recv(65536):
                break
    except OSError:
        pass  # reset or timeout: both fine, as long as the daemon lives
    finally:
        s.close()


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 2:
            del data[pos:pos + rng.randint(1, 16)]
        else:
            data[pos:pos] = data[:rng.randint(0, 32)]
    return bytes(data)


def seeds():
    body = b'{"vmId":"x"}'
    return [
        b"POST " + SVC + b"GetVmInfo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body,
        b"POST " + SVC + b"ListVms HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\n\x00\x00\x00\x00\x00\r\n0\r\n\r\n",
        b"GET " + SVC + b"ListVms?encoding=json&message=%7B%7D&connect=v1 HTTP/1.1\r\nHost: x\r\n\r\n",
        # h2: preface, SETTINGS, HEADERS (literal, no indexing) for POST /health, DATA.
        PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        + b"\x00\x00\x0b\x01\x05\x00\x00\x00\x01" + b"\x83\x84\x04\x07/health",
        PREFACE + b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x01"
        + b"\x00\x00\x05\x00\x01\x00\x00\x00\x03\x00\x00\x00\x00\x00",
    ]


def alive(d):
    assert d.proc.poll() is None, "daemon died:\n" + d.output()[-4000:]
    status, _, body = d.http("GET", "/health")
    assert (status, body) == (200, b"ok")


def test_random_bytes_and_mangled_requests(start_daemon):
    d = start_daemon(env={"CHCP_READ_TIMEOUT_MS": "300", "CHCP_IDLE_TIMEOUT_MS": "300"})
    rng = random.Random(20261127)
    tcp = lambda: socket.create_connection(("127.0.0.1", d.port), timeout=2)  # noqa: E731

    def unix():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.unix_socket)
        return s
    base = seeds()
    for i in range(ROUNDS):
        kind = i % 3
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 512)))
        elif kind == 1:
            data = mutate(rng, rng.choice(base))
        else:
            data = PREFACE + bytes(rng.randrange(256) for _ in range(rng.randint(9, 256)))
        send_and_drain(tcp if i % 2 else unix, data)
        if i % 25 == 0:
            alive(d)
    alive(d)
