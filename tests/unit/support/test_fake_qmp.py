# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the fake QMP server (tests/support/fake_qmp): it must behave like QEMU 7.2."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ansible_collections.qmp.balloon.tests.support import fake_qmp
from ansible_collections.qmp.balloon.tests.support.fake_qmp import (
    U64_UNSET, FakeFleet, FakeQMPServer, FaultOptions, VMModel, read_record,
)
from ansible_collections.qmp.balloon.tests.support.qmp_client import QMPStream

SUPPORT_DIR = Path(__file__).resolve().parents[2] / "support"
FAKE_QMP = str(SUPPORT_DIR / "run_fake_qmp.py")
BALLOON = "/machine/peripheral/balloon0"
BACKEND = BALLOON + "/virtio-backend"
INTERVAL = "guest-stats-polling-interval"
GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, '
            b'"capabilities": ["oob"]}}\r\n')


class Client(QMPStream):
    """The test tooling's plain-socket QMP client (tests/support/qmp_client.py): no library between
    the test and the fake, the bytes as they come."""

    def negotiate(self) -> "Client":
        assert "QMP" in self.greet()
        assert self.execute("qmp_capabilities", {"enable": ["oob"]}) == {"return": {}}
        return self


def error(reply: Dict[str, Any]) -> Tuple[str, str]:
    return reply["error"]["class"], reply["error"]["desc"]


class FakeClock:
    def __init__(self, start: float = 1700000000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server():
    with FakeQMPServer(vm=VMModel(name="guest1")) as srv:
        yield srv


@pytest.fixture
def client(server):
    with Client(server.path) as conn:
        conn.negotiate()
        yield conn


# ---------------------------------------------------------------------------------------------
# Protocol
# ---------------------------------------------------------------------------------------------

def test_greeting_is_exact(server):
    with Client(server.path) as conn:
        assert conn.read_line() == GREETING


def test_commands_before_negotiation_are_refused_like_qemu(server):
    with Client(server.path) as conn:
        conn.greet()
        conn.send({"execute": "query-status", "id": 1})
        assert conn.read_line() == (b'{"id": 1, "error": {"class": "CommandNotFound", '
                                    b'"desc": "Expecting capabilities negotiation with \'qmp_capabilities\'"}}\r\n')
        assert error(conn.execute("no-such-command")) == ("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
        conn.send({"execute": "qmp_capabilities", "id": "a"})
        assert conn.read_line() == b'{"return": {}, "id": "a"}\r\n'
        assert conn.execute("qmp_capabilities", id=9) == {
            "id": 9, "error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}


def test_negotiation_argument_checks(server):
    with Client(server.path) as conn:
        conn.greet()
        assert error(conn.execute("qmp_capabilities", {"enable": ["foo"]})) == ("GenericError", "Parameter 'null' does not accept value 'foo'")
        assert error(conn.execute("qmp_capabilities", {"enable": "oob"})) == ("GenericError", "Invalid parameter type for 'enable', expected: array")
        assert error(conn.execute("qmp_capabilities", {"x": 1})) == ("GenericError", "Parameter 'x' is unexpected")
        assert conn.execute("qmp_capabilities") == {"return": {}}


def test_stream_without_newlines_split_and_batched(client):
    # Two commands in one write, and one command split over three writes.
    client.send(b'{"execute":"query-name","id":1}{"execute":"query-uuid","id":2}')
    assert client.read() == {"return": {"name": "guest1"}, "id": 1}
    assert client.read()["id"] == 2
    for part in (b'{"execute":"query-st', b'atus","i', b'd":3}'):
        client.send(part)
        time.sleep(0.02)
    assert client.read_line() == b'{"return": {"status": "running", "singlestep": false, "running": true}, "id": 3}\r\n'


def test_input_errors_match_qemu(client):
    cases = [
        (b"[1,2]", "QMP input must be a JSON object"),
        (b'{"foo":1}', "QMP input member 'foo' is unexpected"),
        (b'{"execute":5}', "QMP input member 'execute' must be a string"),
        (b'{"execute":"query-status","arguments":[]}', "QMP input member 'arguments' must be an object"),
        (b"{}", "QMP input lacks member 'execute'"),
        (b"]", "JSON parse error, expecting value"),
        (b"@", "JSON parse error, stray '@'"),
        (b"{1: 2}", "JSON parse error, key is not a string in object"),
        (b"garbage ", "JSON parse error, invalid keyword 'garbage'"),
        (b'{"exec-oob":"query-status"}', "The command query-status does not support OOB"),
    ]
    for raw, desc in cases:
        client.send(raw)
        assert client.read() == {"error": {"class": "GenericError", "desc": desc}}, raw
    client.send(b"{'execute': 'query-name', 'id': 'single'}")  # QEMU's JSON accepts single quotes
    assert client.read() == {"return": {"name": "guest1"}, "id": "single"}


def test_ids_of_any_type_are_echoed(client):
    for message_id in (None, [1], 1.5, {"a": [1]}, "x"):
        assert client.execute("query-uuid", id=message_id)["id"] == message_id
    assert client.execute("query-status", id=1, extra=2) == {
        "id": 1, "error": {"class": "GenericError", "desc": "QMP input member 'extra' is unexpected"}}


def test_unknown_command(client):
    assert client.execute("nope", id=3) == {"id": 3, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}


def test_queries():
    vm = VMModel(name="web1", uuid="12345678-1234-1234-1234-123456789abc", status="paused", memory=64 * 1024 * 1024)
    with FakeQMPServer(vm=vm) as srv, Client(srv.path) as conn:
        conn.negotiate()
        assert conn.execute("query-status") == {"return": {"status": "paused", "singlestep": False, "running": False}}
        assert conn.execute("query-name") == {"return": {"name": "web1"}}
        assert conn.execute("query-uuid") == {"return": {"UUID": "12345678-1234-1234-1234-123456789abc"}}
        assert conn.execute("query-balloon") == {"return": {"actual": 67108864}}
        assert conn.execute("query-version") == {"return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}}
        srv.vm.name = None
        assert conn.execute("query-name") == {"return": {}}


def test_stop_cont_send_events_before_the_reply(client, server):
    client.send({"execute": "stop"})
    assert client.read()["event"] == "STOP"
    assert client.read() == {"return": {}}
    assert server.vm.status == "paused"
    client.send({"execute": "cont"})
    event = client.read()
    assert event["event"] == "RESUME" and set(event["timestamp"]) == {"seconds", "microseconds"}
    assert client.read() == {"return": {}}


def test_quit_closes_and_removes_the_socket(server):
    with Client(server.path) as conn:
        conn.negotiate()
        conn.send({"execute": "quit"})
        assert conn.read()["event"] == "SHUTDOWN"
        assert conn.read() == {"return": {}}
        assert conn.read_line() == b""
    for _attempt in range(50):
        if not os.path.exists(server.path):
            break
        time.sleep(0.02)
    assert not os.path.exists(server.path)


def test_balloon_command(client, server):
    assert error(client.execute("balloon", {"value": 0})) == ("GenericError", "Parameter 'target' expects a size")
    assert error(client.execute("balloon", {"value": "x"})) == ("GenericError", "Invalid parameter type for 'value', expected: integer")
    assert error(client.execute("balloon")) == ("GenericError", "Parameter 'value' is missing")
    assert client.execute("balloon", {"value": 512 * 1024 * 1024}) == {"return": {}}
    # No guest driver in the default "never" mode: nothing moves, like a VM started with -S.
    assert client.execute("query-balloon") == {"return": {"actual": 1024 * 1024 * 1024}}
    server.vm.guest_driver = True
    client.send({"execute": "balloon", "arguments": {"value": 512 * 1024 * 1024}})
    assert client.read() == {"return": {}}
    assert client.read()["event"] == "BALLOON_CHANGE"
    assert client.execute("query-balloon") == {"return": {"actual": 512 * 1024 * 1024}}


# ---------------------------------------------------------------------------------------------
# QOM
# ---------------------------------------------------------------------------------------------

def test_qom_list_peripheral_and_balloon(client):
    assert client.execute("qom-list", {"path": "/machine/peripheral"}) == {"return": [
        {"name": "type", "type": "string"}, {"name": "balloon0", "type": "child<virtio-balloon-pci>"}]}
    props = {entry["name"]: entry["type"] for entry in client.execute("qom-list", {"path": BALLOON})["return"]}
    assert props[INTERVAL] == "int"
    assert props["guest-stats"] == "guest statistics"  # what QEMU 7.2 says (not "any")
    assert props["virtio-backend"] == "child<virtio-balloon-device>"
    assert len(props) == 59
    backend = {entry["name"]: entry["type"] for entry in client.execute("qom-list", {"path": BACKEND})["return"]}
    assert backend[INTERVAL] == "int" and backend["guest-stats"] == "guest statistics" and len(backend) == 24
    assert client.execute("qom-list", {"path": "/"})["return"] == [
        {"name": "type", "type": "string"}, {"name": "objects", "type": "child<container>"},
        {"name": "machine", "type": "child<pc-q35-7.2-machine>"}, {"name": "chardevs", "type": "child<container>"}]
    assert client.execute("qom-list", {"path": "/machine/peripheral-anon"}) == {"return": [{"name": "type", "type": "string"}]}


def test_qom_paths_resolve_like_qemu(client):
    for path in ("balloon0", "peripheral/balloon0", "//machine/peripheral/balloon0", BALLOON + "/", BALLOON + "/parent_bus/child[4]"):
        assert client.execute("qom-get", {"path": path, "property": "type"}) == {"return": "virtio-balloon-pci"}, path
    assert client.execute("qom-get", {"path": "virtio-backend", "property": "type"}) == {"return": "virtio-balloon-device"}
    for path in ("", "/nope", BALLOON + "/guest-stats", "child[0]"):
        assert error(client.execute("qom-list", {"path": path})) == ("DeviceNotFound", "Device '%s' not found" % path)
    assert client.execute("qom-get", {"path": BALLOON, "property": "virtio-backend"}) == {"return": BACKEND}
    assert client.execute("qom-get", {"path": BALLOON, "property": "parent_bus"}) == {"return": "/machine/q35/pcie.0"}


def test_walk_from_root_finds_the_balloon(client):
    """A libvirt-style walk (child<> properties from /) reaches the balloon; the tree is QEMU-sized."""
    seen, todo, balloons = 0, ["/"], []
    while todo:
        path = todo.pop()
        seen += 1
        for entry in client.execute("qom-list", {"path": path})["return"]:
            if entry["type"].startswith("child<"):
                child = path.rstrip("/") + "/" + entry["name"]
                if entry["type"] == "child<virtio-balloon-pci>":
                    balloons.append(child)
                todo.append(child)
    assert balloons == [BALLOON]
    assert seen == 264  # the object count of a real `-M q35 -nodefaults -device virtio-balloon-pci` QEMU 7.2


@pytest.mark.parametrize("value, desc", [
    (-1, "timer value must be greater than zero"),
    (4294967296, "timer value is too big"),
    ("2", "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"),
    (2.5, "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"),
    (2.0, "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"),
    (True, "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"),
    (None, "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"),
    ([1], "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"),
    (9223372036854775808, "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"),
    (18446744073709551615, "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"),
])
@pytest.mark.parametrize("path", [BALLOON, BACKEND])
def test_interval_validation(client, path, value, desc):
    assert error(client.execute("qom-set", {"path": path, "property": INTERVAL, "value": value})) == ("GenericError", desc)
    assert client.execute("qom-get", {"path": path, "property": INTERVAL}) == {"return": 0}


def test_interval_set_and_read_back_through_both_paths(client):
    assert client.execute("qom-set", {"path": BALLOON, "property": INTERVAL, "value": 4294967295}) == {"return": {}}
    assert client.execute("qom-get", {"path": BACKEND, "property": INTERVAL}) == {"return": 4294967295}
    assert client.execute("qom-set", {"path": BACKEND, "property": INTERVAL, "value": 7}) == {"return": {}}
    assert client.execute("qom-get", {"path": "balloon0", "property": INTERVAL}) == {"return": 7}


def test_qom_errors(client):
    assert error(client.execute("qom-get", {"path": BALLOON, "property": "stats-polling-interval"})) == (
        "GenericError", "Property 'virtio-balloon-pci.stats-polling-interval' not found")
    assert error(client.execute("qom-get", {"path": BACKEND, "property": "nope"})) == (
        "GenericError", "Property 'virtio-balloon-device.nope' not found")
    assert error(client.execute("qom-get", {"path": "/machine/peripheral/nope", "property": "guest-stats"})) == (
        "DeviceNotFound", "Device '/machine/peripheral/nope' not found")
    for path in (BALLOON, BACKEND):
        assert error(client.execute("qom-set", {"path": path, "property": "guest-stats", "value": {}})) == (
            "GenericError", "Property 'virtio-balloon-device.guest-stats' is not writable")
    assert error(client.execute("qom-set", {"path": BALLOON, "property": "type", "value": "x"})) == (
        "GenericError", "Property 'virtio-balloon-pci.type' is not writable")
    assert error(client.execute("qom-set", {"path": BALLOON, "property": "deflate-on-oom", "value": True})) == (
        "GenericError", "Attempt to set property 'deflate-on-oom' on anonymous device (type 'virtio-balloon-device') after it was realized")
    assert error(client.execute("qom-set", {"path": BALLOON, "property": "addr", "value": 1})) == (
        "GenericError", "Attempt to set property 'addr' on device 'balloon0' (type 'virtio-balloon-pci') after it was realized")
    assert error(client.execute("qom-get", {"path": BALLOON})) == ("GenericError", "Parameter 'property' is missing")
    assert error(client.execute("qom-get", {"property": "x"})) == ("GenericError", "Parameter 'path' is missing")
    assert error(client.execute("qom-get", {"path": BALLOON, "property": 5})) == ("GenericError", "Invalid parameter type for 'property', expected: string")
    assert error(client.execute("qom-get", {"path": BALLOON, "property": "type", "value": 1})) == ("GenericError", "Parameter 'value' is unexpected")
    assert error(client.execute("qom-set", {"path": BALLOON, "property": INTERVAL})) == ("GenericError", "Parameter 'value' is missing")


def test_anonymous_balloon():
    with FakeQMPServer(vm=VMModel(balloon="anon")) as srv, Client(srv.path) as conn:
        conn.negotiate()
        assert conn.execute("qom-list", {"path": "/machine/peripheral"}) == {"return": [{"name": "type", "type": "string"}]}
        assert conn.execute("qom-list", {"path": "/machine/peripheral-anon"})["return"][1] == {
            "name": "device[0]", "type": "child<virtio-balloon-pci>"}
        anon = "/machine/peripheral-anon/device[0]"
        assert conn.execute("qom-get", {"path": anon, "property": INTERVAL}) == {"return": 0}
        # "device[0]" also names the CPU under /machine/unattached: ambiguous, so QEMU finds nothing.
        assert error(conn.execute("qom-get", {"path": "device[0]", "property": "type"}))[0] == "DeviceNotFound"
        assert error(conn.execute("qom-set", {"path": anon, "property": "addr", "value": 1})) == (
            "GenericError", "Attempt to set property 'addr' on anonymous device (type 'virtio-balloon-pci') after it was realized")


# ---------------------------------------------------------------------------------------------
# Guest statistics
# ---------------------------------------------------------------------------------------------

def test_never_updated_stats_are_all_unset(client):
    reply = client.execute("qom-get", {"path": BALLOON, "property": "guest-stats"})["return"]
    assert reply["last-update"] == 0
    assert list(reply["stats"]) == list(fake_qmp.CLASSIC_STAT_NAMES)
    assert set(reply["stats"].values()) == {U64_UNSET}
    assert client.execute("qom-get", {"path": BACKEND, "property": "guest-stats"})["return"] == reply


def test_never_updated_stats_wire_bytes_match_qemu(client):
    client.send({"execute": "qom-get", "arguments": {"path": BALLOON, "property": "guest-stats"}})
    unset = "18446744073709551615"
    assert client.read_line().decode() == (
        '{"return": {"stats": {"stat-htlb-pgalloc": %s, "stat-swap-out": %s, "stat-available-memory": %s, "stat-htlb-pgfail": %s, '
        '"stat-free-memory": %s, "stat-minor-faults": %s, "stat-major-faults": %s, "stat-total-memory": %s, "stat-swap-in": %s, '
        '"stat-disk-caches": %s}, "last-update": 0}}\r\n' % ((unset,) * 10))


def test_static_partial_extra_and_old_qemu_stats():
    vm = VMModel(stats_mode="static", stats={"stat-free-memory": 1000, "stat-total-memory": 2000}, last_update=1700000000)
    with FakeQMPServer(vm=vm) as srv, Client(srv.path) as conn:
        conn.negotiate()
        reply = conn.execute("qom-get", {"path": BALLOON, "property": "guest-stats"})["return"]
        assert reply["last-update"] == 1700000000
        assert reply["stats"]["stat-free-memory"] == 1000 and reply["stats"]["stat-swap-in"] == U64_UNSET
        srv.vm.extra_stats = True
        srv.vm.stats["stat-oom-kills"] = 3
        srv.vm.stats["stat-from-the-future"] = 7
        stats = conn.execute("qom-get", {"path": BALLOON, "property": "guest-stats"})["return"]["stats"]
        assert list(stats)[10:] == list(fake_qmp.EXTRA_STAT_NAMES) + ["stat-from-the-future"]
        assert stats["stat-oom-kills"] == 3 and stats["stat-alloc-stalls"] == U64_UNSET
        srv.vm.unset_value = -1
        assert conn.execute("qom-get", {"path": BALLOON, "property": "guest-stats"})["return"]["stats"]["stat-swap-in"] == -1
        srv.vm.last_update = 0
        srv.vm.no_stats_error = True
        assert error(conn.execute("qom-get", {"path": BALLOON, "property": "guest-stats"})) == (
            "GenericError", "guest hasn't updated any stats yet")


def test_static_default_report_is_fully_set():
    with FakeQMPServer(vm=VMModel(stats_mode="static")) as srv, Client(srv.path) as conn:
        conn.negotiate()
        reply = conn.execute("qom-get", {"path": BALLOON, "property": "guest-stats"})["return"]
        assert U64_UNSET not in reply["stats"].values() and reply["last-update"] > 0
        assert reply["stats"]["stat-free-memory"] < reply["stats"]["stat-total-memory"] < 1024 ** 3


def _stats(conn: Client) -> Dict[str, Any]:
    return conn.execute("qom-get", {"path": BALLOON, "property": "guest-stats"})["return"]


def _set_interval(conn: Client, value: int) -> None:
    assert conn.execute("qom-set", {"path": BALLOON, "property": INTERVAL, "value": value}) == {"return": {}}


def test_live_timer_follows_qemu_rules():
    clock = FakeClock()
    start = int(clock.now)
    vm = VMModel(stats_mode="live", boot_report=False, clock=clock)
    with FakeQMPServer(vm=vm) as srv, Client(srv.path) as conn:
        conn.negotiate()
        assert _stats(conn)["last-update"] == 0
        _set_interval(conn, 2)  # 0 -> N: a new timer fires at once
        first = _stats(conn)
        assert first["last-update"] == start and first["stats"]["stat-total-memory"] != U64_UNSET
        clock.advance(5)
        assert _stats(conn)["last-update"] == start + 4
        _set_interval(conn, 2)  # same value: no-op
        assert _stats(conn)["last-update"] == start + 4
        srv.vm.stalled = True  # the guest stops answering
        clock.advance(10)
        assert _stats(conn)["last-update"] == start + 4
        _set_interval(conn, 2)  # same value does not re-arm a stalled timer
        clock.advance(10)
        assert _stats(conn)["last-update"] == start + 4
        _set_interval(conn, 0)  # 0 keeps the last stats readable
        assert _stats(conn)["last-update"] == start + 4
        _set_interval(conn, 2)  # 0 -> N re-arms, firing at once
        assert _stats(conn)["last-update"] == start + 25 and not srv.vm.stalled
        conn.execute("stop")  # the timer runs on the virtual clock: a paused VM does not poll
        clock.advance(10)
        assert _stats(conn)["last-update"] == start + 25
        conn.execute("cont")
        clock.advance(3)  # 2 s of running time after the last poll: the next one was due 1 s ago
        assert _stats(conn)["last-update"] == start + 37
        _set_interval(conn, 10)  # N -> M: timer_mod, M seconds ahead
        clock.advance(9)
        assert _stats(conn)["last-update"] == start + 37
        clock.advance(1)
        assert _stats(conn)["last-update"] == start + 48


def test_live_boot_report_and_wall_clock():
    with FakeQMPServer(vm=VMModel(stats_mode="live")) as srv, Client(srv.path) as conn:
        conn.negotiate()
        boot = _stats(conn)
        assert boot["last-update"] > 0  # the report a Linux guest sends when its driver loads
        _set_interval(conn, 1)
        armed = _stats(conn)
        time.sleep(1.2)
        later = _stats(conn)
        assert later["last-update"] >= armed["last-update"] + 1
        assert later["stats"]["stat-minor-faults"] > armed["stats"]["stat-minor-faults"]


# ---------------------------------------------------------------------------------------------
# One client at a time
# ---------------------------------------------------------------------------------------------

def test_second_client_waits_silently_until_the_first_leaves(server):
    first = Client(server.path)
    assert first.read_line() == GREETING
    second = Client(server.path)
    with pytest.raises(socket.timeout):
        second.read_line(timeout=0.3)
    first.close()
    assert second.read_line(timeout=5) == GREETING
    second.close()


def test_full_listen_queue_refuses_at_once(server):
    first = Client(server.path)
    first.read_line()
    queued = [Client(server.path) for _index in range(2)]  # backlog 1: the kernel queues two
    extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    extra.setblocking(False)
    assert extra.connect_ex(server.path) == errno.EAGAIN
    extra.close()
    for conn in [first] + queued:
        conn.close()


def test_abandoned_queued_clients_are_skipped(server):
    first = Client(server.path)
    first.read_line()
    abandoned = Client(server.path)
    abandoned.close()
    first.close()
    with Client(server.path) as later:
        assert later.read_line(timeout=5) == GREETING
    assert server.endpoint.connections == 3


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------

def test_recording_in_memory_and_jsonl(tmp_path):
    record = tmp_path / "record.jsonl"
    with FakeQMPServer(record_path=str(record)) as srv, Client(srv.path) as conn:
        conn.negotiate()
        conn.execute("qom-get", {"path": BALLOON, "property": INTERVAL})
        conn.send(b"@")
        conn.read()
        assert srv.record.commands() == ["qmp_capabilities", "qom-get", None]
        assert srv.record.entries[1]["arguments"] == {"path": BALLOON, "property": INTERVAL}
        assert srv.record.entries[1]["endpoint"] == "vm000"
    lines = read_record(str(record))
    assert [line["command"] for line in lines] == ["qmp_capabilities", "qom-get", None]
    assert lines[0]["arguments"] == {"enable": ["oob"]}


def test_recording_path_from_environment(tmp_path, monkeypatch):
    record = tmp_path / "env.jsonl"
    monkeypatch.setenv(fake_qmp.RECORD_ENV, str(record))
    with FakeFleet(2, str(tmp_path)) as fleet:
        for path in fleet.paths:
            with Client(path) as conn:
                conn.negotiate()
                conn.execute("query-status")
    allowed = {"qmp_capabilities", "query-status"}
    entries = read_record(str(record))
    assert {entry["command"] for entry in entries} <= allowed
    assert sorted({entry["endpoint"] for entry in entries}) == ["vm000", "vm001"]


def test_commands_are_recorded_even_when_a_fault_eats_the_reply():
    with FakeQMPServer(fault="close_mid_reply") as srv, Client(srv.path) as conn:
        conn.negotiate()
        conn.send({"execute": "qom-set", "arguments": {"path": BALLOON, "property": INTERVAL, "value": 5}})
        conn.read_line()
        assert srv.record.commands()[-1] == "qom-set"


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

def test_fault_no_greeting():
    with FakeQMPServer(fault="no_greeting") as srv, Client(srv.path) as conn:
        with pytest.raises(socket.timeout):
            conn.read_line(timeout=0.3)


def test_fault_garbage_greeting():
    with FakeQMPServer(fault="garbage_greeting") as srv, Client(srv.path) as conn:
        line = conn.read_line()
        assert line.endswith(b"\r\n")
        with pytest.raises(ValueError):
            json.loads(line)


@pytest.mark.parametrize("banner, expected", [("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"), ("http", b"HTTP/1.1 400 Bad Request\r\n")])
def test_fault_banner(banner, expected):
    with FakeQMPServer(fault="banner", banner=fake_qmp.BANNERS[banner]) as srv, Client(srv.path) as conn:
        assert conn.read_line() == expected
        conn.send(b'{"execute":"qmp_capabilities"}')
        while conn.read_line():
            pass  # the speaker hangs up after our bytes


def test_fault_close_after_greeting():
    with FakeQMPServer(fault="close_after_greeting") as srv, Client(srv.path) as conn:
        assert conn.read_line() == GREETING
        assert conn.read_line() == b""


def test_fault_close_mid_reply():
    with FakeQMPServer(fault="close_mid_reply") as srv, Client(srv.path) as conn:
        conn.negotiate()
        conn.send({"execute": "query-status"})
        partial = conn.read_line()
        assert partial and not partial.endswith(b"\n") and partial.startswith(b'{"return"')
        assert conn.read_line() == b""


def test_fault_delay():
    with FakeQMPServer(fault="delay", delay=0.5) as srv, Client(srv.path) as conn:
        started = time.monotonic()
        conn.negotiate()  # negotiation is not delayed by default
        assert time.monotonic() - started < 0.4
        started = time.monotonic()
        assert conn.execute("query-status")["return"]["running"] is True
        assert time.monotonic() - started >= 0.5


def test_fault_huge_reply():
    with FakeQMPServer(fault="huge_reply") as srv, Client(srv.path) as conn:
        conn.negotiate()
        conn.send({"execute": "query-status", "id": 1})
        line = conn.read_line()
        assert len(line) > fake_qmp.QMP_READ_LIMIT and line.endswith(b"\r\n")
        assert json.loads(line)["id"] == 1


def test_fault_invalid_json_reply():
    with FakeQMPServer(fault="invalid_json_reply") as srv, Client(srv.path) as conn:
        conn.negotiate()
        conn.send({"execute": "query-status"})
        with pytest.raises(ValueError):
            json.loads(conn.read_line())


def test_fault_error_everything():
    with FakeQMPServer(fault="error_everything") as srv, Client(srv.path) as conn:
        conn.negotiate()
        for command in ("query-status", "qom-list"):
            assert conn.execute(command, id=4) == {"id": 4, "error": {"class": "GenericError", "desc": FaultOptions().error_desc}}
        conn.execute("qom-set", {"path": BALLOON, "property": INTERVAL, "value": 2})
        assert srv.vm.interval == 0  # nothing was executed


def test_fault_wrong_id():
    with FakeQMPServer(fault="wrong_id") as srv, Client(srv.path) as conn:
        conn.negotiate()
        reply = conn.execute("query-status", id="abc")
        assert reply["id"] != "abc" and "return" in reply


def test_fault_events():
    with FakeQMPServer(fault="events", events_per_reply=2) as srv, Client(srv.path) as conn:
        conn.greet()
        conn.send({"execute": "qmp_capabilities"})
        assert conn.read() == {"return": {}}  # never an event before negotiation completes
        assert conn.execute("query-uuid")["return"]["UUID"]
        assert [event["event"] for event in conn.events] == ["BALLOON_CHANGE", "BALLOON_CHANGE"]
        assert conn.events[0]["data"] == {"actual": 1024 ** 3} and set(conn.events[0]["timestamp"]) == {"seconds", "microseconds"}


def test_fault_on_limits_command_faults_to_one_command():
    with FakeQMPServer(fault="error_everything", fault_on="qom-set") as srv, Client(srv.path) as conn:
        conn.negotiate()
        assert "return" in conn.execute("qom-get", {"path": BALLOON, "property": INTERVAL})
        assert "error" in conn.execute("qom-set", {"path": BALLOON, "property": INTERVAL, "value": 2})
    with FakeQMPServer(fault="error_everything", fault_on="qmp_capabilities") as srv, Client(srv.path) as conn:
        conn.greet()
        assert error(conn.execute("qmp_capabilities"))[0] == "GenericError"


def test_fault_no_balloon():
    with FakeQMPServer(fault="no_balloon") as srv, Client(srv.path) as conn:
        conn.negotiate()
        assert conn.execute("query-balloon") == {"error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}}
        assert conn.execute("qom-list", {"path": "/machine/peripheral"}) == {"return": [{"name": "type", "type": "string"}]}
        assert error(conn.execute("qom-get", {"path": BALLOON, "property": INTERVAL}))[0] == "DeviceNotFound"


def test_fault_two_balloons():
    with FakeQMPServer(fault="two_balloons") as srv, Client(srv.path) as conn:
        conn.negotiate()
        names = [entry["name"] for entry in conn.execute("qom-list", {"path": "/machine/peripheral"})["return"]]
        assert names == ["type", "balloon0", "balloon1"]
        assert error(conn.execute("qom-get", {"path": "virtio-backend", "property": "type"}))[0] == "DeviceNotFound"  # ambiguous
        _set_interval(conn, 3)
        assert conn.execute("qom-get", {"path": "/machine/peripheral/balloon1", "property": INTERVAL}) == {"return": 3}


def test_fault_deep_tree():
    with FakeQMPServer(fault="deep_tree") as srv, Client(srv.path) as conn:
        conn.negotiate()
        path, depth = "/machine/unattached/deep-chain", 0
        while True:
            children = [entry["name"] for entry in conn.execute("qom-list", {"path": path})["return"] if entry["type"].startswith("child<")]
            if not children:
                break
            path += "/" + children[0]
            depth += 1
        assert depth == srv.vm.tree_depth == 64


def test_fault_cyclic_links():
    with FakeQMPServer(fault="cyclic_links") as srv, Client(srv.path) as conn:
        conn.negotiate()
        entries = conn.execute("qom-list", {"path": "/machine/peripheral-anon"})["return"]
        assert {"name": "machine-again", "type": "child<pc-q35-7.2-machine>"} in entries
        looped = "/machine/peripheral-anon/machine-again/peripheral-anon/machine-again/peripheral/balloon0"
        assert conn.execute("qom-get", {"path": looped, "property": INTERVAL}) == {"return": 0}
        assert conn.execute("qom-get", {"path": "/machine/peripheral-anon", "property": "machine-again"}) == {"return": "/machine"}
        assert conn.execute("qom-get", {"path": "balloon0", "property": "type"}) == {"return": "virtio-balloon-pci"}


def test_unknown_fault_is_rejected():
    with pytest.raises(ValueError, match="unknown fault"):
        fake_qmp.parse_faults("delay,nonsense")


# ---------------------------------------------------------------------------------------------
# Endpoints and lifecycle
# ---------------------------------------------------------------------------------------------

def test_tcp_endpoint_on_loopback_with_picked_port():
    with FakeQMPServer(tcp=True) as srv:
        assert srv.port > 0 and srv.address == ("127.0.0.1", srv.port) and srv.path is None
        with Client(srv.address) as conn:
            assert conn.read_line() == GREETING


def test_only_loopback_may_be_bound():
    with pytest.raises(ValueError, match="loopback"):
        FakeQMPServer(tcp=True, host="0.0.0.0")


def test_fleet_paths_models_and_cleanup(tmp_path):
    with FakeFleet(3, str(tmp_path), fault={"vm001": "no_balloon"}) as fleet:
        assert fleet.names == ["vm000", "vm001", "vm002"]
        assert all(os.path.exists(path) for path in fleet.paths)
        with Client(fleet["vm002"].path) as conn:
            conn.negotiate()
            assert conn.execute("query-name") == {"return": {"name": "vm002"}}
            fleet["vm002"].vm.status = "paused"  # the model may change between calls
            assert conn.execute("query-status")["return"]["status"] == "paused"
        assert fleet["vm001"].vm.balloon == "none" and fleet.vms[0].balloon == "peripheral"
    assert not any(os.path.exists(path) for path in fleet.paths)


def test_fleet_copies_a_template_model(tmp_path):
    template = VMModel(stats_mode="static", interval=5)
    with FakeFleet(2, str(tmp_path), vm=template) as fleet:
        assert fleet.vms[0] is template and fleet.vms[1] is not template
        assert fleet.vms[1].interval == 5 and fleet.vms[1].stats == template.stats and fleet.vms[1].stats is not template.stats


def test_own_temporary_directory_is_removed():
    with FakeQMPServer() as srv:
        directory = os.path.dirname(srv.path)
        assert os.path.isdir(directory)
    assert not os.path.exists(directory)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _start_cli(*args: str) -> Tuple[subprocess.Popen, Dict[str, Any]]:
    process = subprocess.Popen(  # pylint: disable=consider-using-with  # stopped by _stop_cli
        [sys.executable, FAKE_QMP] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise AssertionError("fake_qmp exited: %s" % process.stderr.read())
    return process, json.loads(line)


def _stop_cli(process: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    process.send_signal(signum)
    try:
        _stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_unix(tmp_path, signum):
    ready_file = tmp_path / "ready.json"
    record = tmp_path / "record.jsonl"
    process, ready = _start_cli("--dir", str(tmp_path / "socks"), "--count", "3", "--stats", "live", "--fault-at", "vm002=no_balloon",
                                "--ready-file", str(ready_file), "--record", str(record))
    try:
        assert json.loads(ready_file.read_text()) == ready
        assert [endpoint["name"] for endpoint in ready["endpoints"]] == ["vm000", "vm001", "vm002"]
        with Client(ready["endpoints"][1]["path"]) as conn:
            conn.negotiate()
            assert conn.execute("query-name") == {"return": {"name": "vm001"}}
            assert _stats(conn)["last-update"] > 0
        with Client(ready["endpoints"][2]["path"]) as conn:
            conn.negotiate()
            assert error(conn.execute("query-balloon"))[0] == "DeviceNotActive"
    finally:
        _stop_cli(process, signum)
    assert not any(os.path.exists(endpoint["path"]) for endpoint in ready["endpoints"])
    assert not ready_file.exists()
    expected = ["qmp_capabilities", "query-name", "qom-get", "qmp_capabilities", "query-balloon"]
    assert [entry["command"] for entry in read_record(str(record))] == expected


def test_cli_tcp_with_fault():
    process, ready = _start_cli("--tcp", "--count", "2", "--fault", "error_everything")
    try:
        ports = [endpoint["port"] for endpoint in ready["endpoints"]]
        assert len(set(ports)) == 2 and all(endpoint["host"] == "127.0.0.1" for endpoint in ready["endpoints"])
        with Client(("127.0.0.1", ports[0])) as conn:
            conn.negotiate()
            assert error(conn.execute("query-status"))[0] == "GenericError"
    finally:
        _stop_cli(process)


def test_cli_rejects_bad_input(tmp_path):
    result = subprocess.run([sys.executable, FAKE_QMP, "--dir", str(tmp_path), "--fault", "bogus"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "unknown fault" in result.stderr
    result = subprocess.run([sys.executable, FAKE_QMP, "--tcp", "--host", "192.0.2.1"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "loopback" in result.stderr


def test_cli_thousand_endpoints(tmp_path):
    process, ready = _start_cli("--dir", str(tmp_path), "--count", "1000")
    try:
        endpoints = ready["endpoints"]
        assert len(endpoints) == 1000 and endpoints[-1]["name"] == "vm999"
        for endpoint in endpoints:
            with Client(endpoint["path"]) as conn:
                assert conn.read_line() == GREETING
                conn.send({"execute": "qmp_capabilities"})
                assert conn.read() == {"return": {}}
    finally:
        _stop_cli(process)
    assert not any(tmp_path.glob("*.qmp"))


# ---------------------------------------------------------------------------------------------
# With the client library the collection uses
# ---------------------------------------------------------------------------------------------

def _qmp():
    return pytest.importorskip("qemu.qmp")


async def _connected(address: Any, timeout: float = 2.0) -> Any:
    qmp = _qmp()
    client = qmp.QMPClient("test")
    await asyncio.wait_for(client.connect(address), timeout)
    return client


async def _disconnect(client: Any) -> None:
    try:
        await client.disconnect()
    except Exception:  # pylint: disable=broad-except
        pass  # disconnect re-raises what broke the connection


def test_qemu_qmp_client_round_trip():
    qmp = _qmp()

    async def scenario(address: Any) -> None:
        client = await _connected(address)
        try:
            assert await client.execute("qom-set", {"path": BALLOON, "property": INTERVAL, "value": 2}) == {}
            assert await client.execute("qom-get", {"path": BALLOON, "property": INTERVAL}) == 2
            stats = await client.execute("qom-get", {"path": BALLOON, "property": "guest-stats"})
            assert stats["last-update"] > 0
            with pytest.raises(qmp.ExecuteError) as raised:
                await client.execute("qom-set", {"path": BALLOON, "property": INTERVAL, "value": -1})
            assert raised.value.error_class == "GenericError" and str(raised.value) == "timer value must be greater than zero"
        finally:
            await _disconnect(client)

    with FakeQMPServer(vm=VMModel(stats_mode="live")) as srv:
        asyncio.run(scenario(srv.path))
        assert srv.record.commands() == ["qmp_capabilities", "qom-set", "qom-get", "qom-get", "qom-set"]
    with FakeQMPServer(tcp=True, vm=VMModel(stats_mode="live")) as srv:
        asyncio.run(scenario(srv.address))


@pytest.mark.parametrize("fault", ["no_greeting", "garbage_greeting", "banner", "close_after_greeting"])
def test_qemu_qmp_connect_faults(fault):
    qmp = _qmp()

    async def scenario(path: str) -> None:
        client = qmp.QMPClient("test")
        with pytest.raises((asyncio.TimeoutError, qmp.ConnectError)):
            await asyncio.wait_for(client.connect(path), 0.5)
        await _disconnect(client)

    with FakeQMPServer(fault=fault) as srv:
        asyncio.run(scenario(srv.path))


@pytest.mark.parametrize("fault", ["close_mid_reply", "huge_reply", "invalid_json_reply", "wrong_id", "delay"])
def test_qemu_qmp_execute_faults_fail_within_a_timeout(fault):
    _qmp()

    async def scenario(path: str) -> None:
        client = await _connected(path)
        with pytest.raises(Exception):  # each fault must surface as an error, never as a result or a hang
            await asyncio.wait_for(client.execute("query-status"), 1.0)
        await _disconnect(client)

    with FakeQMPServer(fault=fault, delay=3.0) as srv:
        asyncio.run(scenario(srv.path))


def test_qemu_qmp_with_events_and_errors():
    qmp = _qmp()

    async def scenario(path: str, expect_error: bool) -> None:
        client = await _connected(path)
        try:
            if expect_error:
                with pytest.raises(qmp.ExecuteError):
                    await asyncio.wait_for(client.execute("query-status"), 1.0)
            else:
                assert (await asyncio.wait_for(client.execute("query-status"), 1.0))["running"] is True
        finally:
            await _disconnect(client)

    with FakeQMPServer(fault="events") as srv:
        asyncio.run(scenario(srv.path, False))
    with FakeQMPServer(fault="error_everything") as srv:
        asyncio.run(scenario(srv.path, True))


# ---------------------------------------------------------------------------------------------
# Against real QEMU, when it is installed
# ---------------------------------------------------------------------------------------------

DIFFERENTIAL_SCRIPT: List[Dict[str, Any]] = [
    {"execute": "query-status", "id": 1},
    {"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": "neg"},
    {"execute": "qmp_capabilities", "id": 2},
    {"execute": "query-status"}, {"execute": "query-name"}, {"execute": "query-uuid"}, {"execute": "query-balloon"},
    {"execute": "query-version"}, {"execute": "nope", "id": 3},
    {"execute": "qom-list", "arguments": {"path": "/"}},
    {"execute": "qom-list", "arguments": {"path": "/machine"}},
    {"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}},
    {"execute": "qom-list", "arguments": {"path": "/machine/peripheral-anon"}},
    {"execute": "qom-list", "arguments": {"path": BALLOON}},
    {"execute": "qom-list", "arguments": {"path": BACKEND}},
    {"execute": "qom-list", "arguments": {"path": "/machine/q35/pcie.0"}},
    {"execute": "qom-list", "arguments": {"path": "/nope"}},
    {"execute": "qom-get", "arguments": {"path": BALLOON, "property": "guest-stats"}},
    {"execute": "qom-get", "arguments": {"path": BACKEND, "property": "guest-stats"}},
    {"execute": "qom-get", "arguments": {"path": BALLOON, "property": "stats-polling-interval"}},
    {"execute": "qom-get", "arguments": {"path": BACKEND, "property": "stats-polling-interval"}},
    {"execute": "qom-get", "arguments": {"path": "balloon0", "property": INTERVAL}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": INTERVAL, "value": -1}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": INTERVAL, "value": 4294967296}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": INTERVAL, "value": "2"}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": INTERVAL, "value": 2.5}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": INTERVAL, "value": True}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": INTERVAL, "value": 9223372036854775808}},
    {"execute": "qom-set", "arguments": {"path": BACKEND, "property": INTERVAL, "value": 4294967295}},
    {"execute": "qom-get", "arguments": {"path": BALLOON, "property": INTERVAL}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": "guest-stats", "value": {}}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": "nope", "value": 1}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": "deflate-on-oom", "value": True}},
    {"execute": "qom-set", "arguments": {"path": BALLOON, "property": "addr", "value": 1}},
    {"execute": "qom-get", "arguments": {"path": BALLOON}},
    {"execute": "qom-get", "arguments": {"path": BALLOON, "property": "guest-stats", "extra": 1}},
    {"execute": "balloon", "arguments": {"value": 0}},
    {"execute": "query-status", "arguments": {"x": 1}, "id": 4},
    {"exec-oob": "query-status", "id": 5},
]


def _run_script(address: str) -> List[bytes]:
    with Client(address) as conn:
        replies = [conn.read_line()]
        for message in DIFFERENTIAL_SCRIPT:
            conn.send(message)
            replies.append(conn.read_line())
        return replies


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 is not installed")
def test_replies_are_byte_identical_to_real_qemu():
    directory = tempfile.mkdtemp(prefix="fq-real-")
    path = os.path.join(directory, "qmp.sock")
    command = ["qemu-system-x86_64", "-M", "q35", "-accel", "tcg", "-nodefaults", "-display", "none", "-S", "-m", "64",
               "-device", "virtio-balloon-pci,id=balloon0", "-qmp", "unix:%s,server=on,wait=off" % path]
    qemu = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # pylint: disable=consider-using-with
    try:
        for _attempt in range(200):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        real = _run_script(path)
    finally:
        qemu.kill()
        qemu.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
    version = json.loads(real[0])["QMP"]["version"]
    qemu_version = (version["qemu"]["major"], version["qemu"]["minor"], version["qemu"]["micro"])
    vm = VMModel(status="prelaunch", memory=64 * 1024 * 1024, qemu_version=qemu_version, package=version["package"])
    with FakeQMPServer(vm=vm) as srv:
        fake = _run_script(srv.path)
    assert len(fake) == len(real)
    for message, real_reply, fake_reply in zip([{"greeting": True}] + DIFFERENTIAL_SCRIPT, real, fake):
        assert fake_reply == real_reply, message
