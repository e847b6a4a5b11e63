"""Stand-in tests: micro_http's wire behaviour and Firecracker's request parsing
(status lines, headers, bodies, limits, routing errors)."""

import json
import os
import socket
import time

import pytest

from fcclient import FC, Conn


def test_status_lines_and_headers(tmp_path):
    with FC(tmp_path) as fc:
        r = fc.get("/")
        assert r.raw_head == (b"HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive"
                              b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                              % len(r.body))
        assert r.json() == {"id": "vm-1", "state": "Not started", "vmm_version": "1.17.0-dev",
                            "app_name": "Firecracker"}
        assert list(r.json()) == ["id", "state", "vmm_version", "app_name"]
        r = fc.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 256})
        assert r.raw_head == b"HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"
        r = fc.get("/version")
        assert r.body == b'{"firecracker_version":"1.17.0-dev"}'
        r = fc.get("/nope")
        assert r.status == 400 and r.headers["content-type"] == "application/json"
        assert r.body == b'{"fault_message":"Invalid request method and/or path: GET nope."}'


def test_keep_alive_and_pipelining(tmp_path):
    with FC(tmp_path) as fc:
        c = fc.conn()
        req = b"GET / HTTP/1.1\r\n\r\nGET /version HTTP/1.0\r\n\r\nGET /machine-config HTTP/1.1\r\n\r\n"
        c.send_raw(req)
        assert c.read_response().json()["state"] == "Not started"
        assert c.read_response().json() == {"firecracker_version": "1.17.0-dev"}
        assert c.read_response().json()["mem_size_mib"] == 128
        for _ in range(5):
            assert c.request("GET", "/").status == 200


def test_absolute_uri_and_trailing_slashes(tmp_path):
    with FC(tmp_path) as fc:
        c = fc.conn()
        c.send_raw(b"GET http://localhost/version HTTP/1.1\r\n\r\n")
        assert c.read_response().status == 200
        assert fc.get("//version/").status == 200
        assert fc.get("/version/anything").status == 200  # only the first token routes GETs
        assert fc.get("/vm/other").fault() == "Invalid request method and/or path: GET vm."
        assert fc.get("/version?x=1").fault() == \
            "Invalid request method and/or path: GET version?x=1."


@pytest.mark.parametrize("method,path,body,fault", [
    ("GET", "/", "{}", "GET request cannot have a body."),
    ("PUT", "/boot-source", None, "Empty PUT request."),
    ("PUT", "/anything", None, "Empty PUT request."),
    ("PATCH", "/vm", None, "Empty PATCH request."),
    ("DELETE", "/drives/x", "{}", "Empty Delete request."),
    ("DELETE", "/", None, "Invalid request method and/or path: DELETE ."),
    ("PUT", "/nothing", "{}", "Invalid request method and/or path: PUT nothing."),
    ("PATCH", "/boot-source", "{}", "Invalid request method and/or path: PATCH boot-source."),
    ("PUT", "/snapshot/restore", "{}", "Invalid request method and/or path: PUT /snapshot/restore."),
    ("PUT", "/snapshot", "{}", "Missing snapshot operation type."),
    ("PUT", "/drives", "{}", "The ID cannot be empty."),
    ("PUT", "/drives/root-fs", "{}",
     "API Resource IDs can only contain alphanumeric characters and underscores."),
    ("PUT", "/mmds/other", "{}", "Unrecognized PUT request path `other`."),
    ("GET", "/balloon/other", None, "Unrecognized GET request path `other`."),
    ("GET", "/balloon/hinting", None, "Unrecognized GET request path `/hinting/`."),
    ("PATCH", "/balloon/hinting/go", None, "Unrecognized PATCH request path `/hinting/go`."),
    ("PATCH", "/machine-config", "{}", "Empty PATCH request."),
])
def test_request_errors(tmp_path, method, path, body, fault):
    with FC(tmp_path) as fc:
        r = fc.call(method, path, body)
        assert r.status == 400 and r.fault() == fault


@pytest.mark.parametrize("raw,reason", [
    (b"POST / HTTP/1.1\r\n\r\n", "Invalid HTTP Method: Unsupported HTTP method."),
    (b"GET / HTTP/2.0\r\n\r\n", "Invalid HTTP Version: Unsupported HTTP version."),
    (b"GET  HTTP/1.1\r\n\r\n", "Invalid URI: Empty URI not allowed."),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
     "Invalid header. Reason: Header is incorrectly formatted. Key: no colon here"),
    (b"PUT /logger HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
     "Invalid header. Reason: Invalid value. Key:Content-Length; Value: lots"),
    (b"GET / HTTP/1.1\r\nAccept-Encoding: identity;q=0\r\n\r\n",
     "Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value:identity;q=0"),
    (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n", "Invalid request."),
])
def test_micro_http_parse_errors_keep_the_connection(tmp_path, raw, reason):
    with FC(tmp_path) as fc:
        c = fc.conn()
        c.send_raw(raw)
        r = c.read_response()
        assert r.status == 400 and r.headers["content-type"] == "application/json"
        assert r.body.decode() == ('{ "error": "%s\nAll previous unanswered requests will be '
                                   'dropped." }' % reason)
        assert c.request("GET", "/").status == 200  # still usable


def test_payload_limit(tmp_path):
    with FC(tmp_path) as fc:
        body = json.dumps({"kernel_image_path": "x" * 51300})
        r = fc.put("/boot-source", body)
        assert r.status == 400
        assert f"Request payload with size {len(body)} is larger than the limit of 51200 " \
               "allowed by server." in r.body.decode()
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b", extra=["--http-api-max-payload-size", "100"]) as fc:
        r = fc.put("/mmds", {"k": "v" * 100})
        assert r.status == 400 and "larger than the limit of 100" in r.body.decode()


def test_expect_100_continue_and_chunked_flag(tmp_path):
    with FC(tmp_path) as fc:
        c = fc.conn()
        body = b'{"vcpu_count": 1, "mem_size_mib": 64}'
        c.send_raw(b"PUT /machine-config HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: "
                   b"%d\r\n\r\n" % len(body))
        r = c.read_response()
        assert r.raw_head == b"HTTP/1.1 100 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"
        c.send_raw(body)
        assert c.read_response().status == 204
        # Transfer-Encoding: chunked is a flag only: the body is read by Content-Length.
        c.send_raw(b"PUT /machine-config HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert c.read_response().status == 204


def test_connection_limit(tmp_path):
    with FC(tmp_path) as fc:
        conns = [fc.conn() for _ in range(10)]
        for c in conns:
            assert c.request("GET", "/").status == 200
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.settimeout(5)
        extra.connect(fc.sock_path)
        data = b""
        while True:
            chunk = extra.recv(4096)
            if not chunk:
                break
            data += chunk
        extra.close()
        assert data == (b"HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\n"
                        b"Content-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }")
        conns[0].close()
        fc.conns.remove(conns[0])
        deadline = time.monotonic() + 5
        while True:  # the slot frees once the server sees the hang-up
            c = fc.conn()
            try:
                if c.request("GET", "/").status == 200:
                    break
            except (EOFError, ConnectionError, socket.timeout):
                pass
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_half_close_drops_the_response(tmp_path):
    with FC(tmp_path) as fc:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(fc.sock_path)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        s.close()
        assert data == b"" or data.startswith(b"HTTP/1.1 200")  # micro_http may lose it
        assert fc.get("/").status == 200


def test_scm_rights_fds_are_dropped(tmp_path):
    with FC(tmp_path) as fc:
        r_fd, w_fd = os.pipe()
        c = fc.conn()
        r = c.request("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128},
                      fds=[w_fd])
        assert r.status == 204
        os.close(w_fd)
        os.set_blocking(r_fd, False)
        assert os.read(r_fd, 1) == b""  # the stand-in closed its copy: EOF, not EAGAIN
        os.close(r_fd)


def test_deprecation_header(tmp_path):
    with FC(tmp_path) as fc:
        r = fc.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T2"})
        assert r.status == 204 and r.headers["deprecation"] == "true"
        assert r.raw_head.startswith(b"HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: "
                                     b"keep-alive\r\nDeprecation: true\r\n\r\n")
        assert fc.get("/machine-config").json()["cpu_template"] == "T2"
        r = fc.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})
        assert "deprecation" not in r.headers
        assert fc.get("/machine-config").json()["cpu_template"] == "T2"  # PUT without it keeps it
        r = fc.patch("/machine-config", {"cpu_template": "None"})
        assert r.headers["deprecation"] == "true" and "cpu_template" not in fc.get(
            "/machine-config").json()
        fc.configure()
        fc.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"})
        r = fc.put("/mmds/config", {"network_interfaces": ["eth0"]})
        assert r.status == 204 and r.headers["deprecation"] == "true"  # MMDS V1 is the default
        r = fc.put("/mmds/config", {"network_interfaces": ["eth0"], "version": "V2"})
        assert "deprecation" not in r.headers
        r = fc.put("/vsock", {"vsock_id": "v", "guest_cid": 3, "uds_path": str(tmp_path / "v.sock")})
        assert r.status == 204 and r.headers["deprecation"] == "true"


@pytest.mark.parametrize("path,body,message", [
    ("/boot-source", "{}", "missing field `kernel_image_path`"),
    ("/boot-source", '{"kernel_image_path": "/k", "bogus": 1}',
     "unknown field `bogus`, expected one of `kernel_image_path`, `initrd_path`, `boot_args`"),
    ("/boot-source", '{"kernel_image_path": 5}', "invalid type: integer `5`, expected a string"),
    ("/boot-source", "[]", "invalid type: sequence, expected struct BootSourceConfig"),
    ("/boot-source", "{", "EOF while parsing an object at line 1 column 1"),
    ("/boot-source", '{"kernel_image_path": "/k"} x', "trailing characters at line 1 column 29"),
    ("/machine-config", '{"vcpu_count": 300, "mem_size_mib": 1}',
     "invalid value: integer `300`, expected u8"),
    ("/machine-config", '{"vcpu_count": -1, "mem_size_mib": 1}',
     "invalid value: integer `-1`, expected u8"),
    ("/machine-config", '{"vcpu_count": 1.5, "mem_size_mib": 1}',
     "invalid type: floating point `1.5`, expected u8"),
    ("/machine-config", '{"vcpu_count": 1, "mem_size_mib": 1, "smt": null}',
     "invalid type: null, expected a boolean"),
    ("/machine-config", '{"vcpu_count": 1, "mem_size_mib": 1, "huge_pages": "1G"}',
     "unknown variant `1G`, expected one of `None`, `Transparent`, `2M`"),
    ("/machine-config", '{"mem_size_mib": 1}', "missing field `vcpu_count`"),
    ("/actions", '{"action_type": "Reboot"}',
     "unknown variant `Reboot`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel`"),
    ("/actions", '{"action_type": "InstanceStart", "x": 1}',
     "unknown field `x`, expected `action_type`"),
    ("/vm", '{"state": "Running"}', "unknown variant `Running`, expected `Paused` or `Resumed`"),
    ("/network-interfaces/eth0", '{"iface_id": "eth0", "host_dev_name": "t", "guest_mac": "xx"}',
     "The provided MAC address is invalid."),
    ("/logger", '{"level": "Loud"}', "Invalid LevelFilter"),
    ("/metrics", '{"metrics_path": "/m", "unknown": true}', None),  # no deny_unknown_fields
    ("/snapshot/load", '{"snapshot_path": "/s"}',
     "missing field: either `mem_backend` or `mem_file_path` is required"),
    ("/snapshot/load", '{"snapshot_path": "/s", "mem_file_path": "/m", '
     '"mem_backend": {"backend_path": "/m", "backend_type": "File"}}',
     "too many fields: either `mem_backend` or `mem_file_path` exclusively is required"),
])
def test_body_deserialisation_errors(tmp_path, path, body, message):
    with FC(tmp_path) as fc:
        r = fc.put(path, body) if path != "/vm" else fc.patch(path, body)
        if message is None:
            assert r.status != 400 or "deserializing" not in r.fault()
            return
        assert r.status == 400
        assert r.fault() == ("An error occurred when deserializing the json body of a request: "
                             f"{message}.")


def test_id_mismatch_messages(tmp_path):
    with FC(tmp_path) as fc:
        r = fc.put("/drives/a", {"drive_id": "b", "is_root_device": False})
        assert r.fault() == "The id from the path does not match the id from the body!"
        r = fc.put("/network-interfaces/a", {"iface_id": "b", "host_dev_name": "t"})
        assert r.fault() == "The id from the path [a] does not match the id from the body [b]!"


def test_api_is_serialised_behind_a_slow_call(tmp_path):
    with FC(tmp_path) as fc:
        fc.configure(boot_args="console=ttyS0 standin.boot_delay_ms=600")
        slow = fc.conn(timeout=10)
        slow.send_raw(b'PUT /actions HTTP/1.1\r\nContent-Length: 31\r\n\r\n'
                      b'{"action_type":"InstanceStart"}')
        time.sleep(0.1)
        t0 = time.monotonic()
        assert fc.state() == "Running"  # answered only after InstanceStart finished
        assert time.monotonic() - t0 >= 0.35
        assert slow.read_response().status == 204
