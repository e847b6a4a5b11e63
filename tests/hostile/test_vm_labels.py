"""Labels hold printable characters only (issue 8): C0/C1 controls,
bidirectional overrides and isolates, zero-width and other invisible
characters are refused with a precise `invalid_argument`, over JSON and the
binary protobuf encoding alike; nothing is created."""

import json

import pytest

from vmlib import SERVICE, call, expect_error, vm_daemon_factory  # noqa: F401

BAD = [
    ("\u0085", "U+0085 (a control character)"),
    ("a\u009bb", "U+009B (a control character) at byte 1"),
    ("invoice\u202egpj.exe", "U+202E (a bidirectional formatting character)"),
    ("\u2067rtl\u2069", "U+2067 (a bidirectional formatting character)"),
    ("\u200f", "U+200F (a bidirectional formatting character)"),
    ("zero\u200bwidth", "U+200B (an invisible"),
    ("\u2060", "U+2060 (an invisible"),
    ("\ufeff", "U+FEFF (an invisible"),
    ("a\u2029b", "U+2029 (a line or paragraph separator)"),
]


@pytest.mark.parametrize("text,want", BAD)
def test_bad_label_refused(vm_daemon_factory, text, want):
    d = vm_daemon_factory()
    cfg = {"payload": {"kernel": d.kernel}}
    msg = expect_error(d, "CreateVm", {"vmId": "v", "config": cfg, "labels": {"k": text}},
                       "invalid_argument")
    assert msg.startswith("labels[k]: the value") and want in msg, msg
    msg = expect_error(d, "CreateVm", {"vmId": "v", "config": cfg, "labels": {text: "v"}},
                       "invalid_argument")
    assert msg.startswith("labels: a key") and want in msg, msg
    assert call(d, "ListVms", {}).get("vms", []) == []


def test_invalid_utf8_in_binary_protobuf(vm_daemon_factory):
    """proto3 strings must be UTF-8; a raw C1 byte or an overlong form in the
    binary encoding never reaches a label."""
    d = vm_daemon_factory()
    kernel = d.kernel.encode()

    def field(num, payload):  # length-delimited field
        return bytes([num << 3 | 2, len(payload)]) + payload

    config = field(1, field(1, kernel))  # VmConfig{payload{kernel}}
    for raw, want in ((b"\xc0\xaf", "not valid UTF-8 (byte 0)"), (b"\x9b", "not valid UTF-8 (byte 0)"),
                      (b"ok\xed\xa0\x80", "not valid UTF-8 (byte 2)"),
                      (b"ok\xe2\x80\xae", "U+202E (a bidirectional formatting character) at byte 2")):
        label = field(1, b"k") + field(2, raw)
        body = field(1, b"v") + field(2, config) + field(3, label)
        status, _, resp = d.http("POST", SERVICE + "CreateVm", body=body,
                                 headers={"Content-Type": "application/proto"})
        err = json.loads(resp)
        assert status == 400 and err["code"] == "invalid_argument", resp
        assert err["message"].startswith("labels[k]: the value") and want in err["message"], err
    assert call(d, "ListVms", {}).get("vms", []) == []


def test_printable_labels_accepted(vm_daemon_factory):
    d = vm_daemon_factory()
    labels = {"team": "Zürich ops", "名前": "値", "rtl": "שלום", "emoji": "\U0001f680"}
    v = call(d, "CreateVm", {"vmId": "ok", "config": {"payload": {"kernel": d.kernel}},
                             "labels": labels})["vm"]
    assert v["labels"] == labels
    call(d, "DeleteVm", {"vmId": "ok"})
