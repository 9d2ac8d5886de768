# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One endpoint: a listening socket served one client at a time."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import stat
from typing import Any, Dict, Optional, Tuple, Union

from .common import GARBAGE_GREETING, INVALID_JSON_REPLY, QMPError, UINT32_MAX, generic_error
from .faults import FaultOptions, FaultSpec, apply_model_faults, parse_faults
from .model import VMModel
from .protocol import (
    ARG_TYPE_NAMES,
    Reply,
    SCHEMAS,
    Session,
    check_arguments,
    check_input,
    check_type,
    default_value,
    encode_message,
    event_message,
    is_int64,
    next_input,
)
from .qom import ALIASED_BACKEND_PROPS, DEFAULT_VALUES, KNOWN_VALUES, QomObject, SETTABLE_KINDS, UNREADABLE, resolve_path, tree_for
from .record import Recorder


def check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError("the fake QMP server binds loopback addresses only, not %r" % host)


class Endpoint:
    """One fake QMP monitor: a unix socket ``path`` or TCP ``(host, port)`` on loopback.

    Like QEMU's ``-qmp ...,server=on,wait=off`` it accepts one client, serves it to the end and
    only then accepts the next: a second client is queued by the kernel (listen backlog 1) and
    gets no greeting until the first leaves; once the queue is full further connects fail.

    Runs on an asyncio loop: :meth:`start` and :meth:`close` are coroutines. ``vm``, ``faults``
    and ``options`` may be changed while it runs; faults are read per connection and per command.
    """

    def __init__(self, name: str, vm: Optional[VMModel] = None, recorder: Optional[Recorder] = None, path: Optional[str] = None,
                 host: Optional[str] = None, port: int = 0, fault: FaultSpec = None, options: Optional[FaultOptions] = None,
                 backlog: int = 1) -> None:
        if (path is None) == (host is None):
            raise ValueError("give an endpoint either a unix socket path or a TCP host")
        if host is not None:
            check_loopback(host)
        self.name = name
        self.vm = vm if vm is not None else VMModel(name=name)
        self.recorder = recorder if recorder is not None else Recorder()
        self.path = path
        self.host = host
        self.port = port
        self.backlog = backlog
        self.options = options or FaultOptions()
        self.faults = parse_faults(fault)
        apply_model_faults(self.vm, self.faults)
        #: Connections accepted so far, and whether one is being served now.
        self.connections = 0
        self.busy = False
        self.closed = False
        self._listener: Optional[socket.socket] = None
        self._client: Optional[socket.socket] = None
        self._task: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def set_fault(self, fault: FaultSpec) -> None:
        """Replace the faults (model faults are applied to the VM at once)."""
        self.faults = parse_faults(fault)
        apply_model_faults(self.vm, self.faults)

    @property
    def address(self) -> Union[str, Tuple[str, int]]:
        """What a client connects to: the socket path, or (host, port)."""
        if self.path is not None:
            return self.path
        return (self.host or "127.0.0.1", self.port)

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "path": self.path, "host": self.host, "port": self.port if self.host else None}

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.path is not None:
            if len(os.fsencode(self.path)) > 107:
                raise ValueError("unix socket path too long (max 107 bytes): %s" % self.path)
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)  # QEMU also replaces a stale socket file
            except FileNotFoundError:
                pass
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(self.path)
            except OSError:
                listener.close()
                raise
        else:
            family = socket.AF_INET6 if ":" in (self.host or "") else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((self.host if self.host != "localhost" else "127.0.0.1", self.port))
            except OSError:
                listener.close()
                raise
            self.port = listener.getsockname()[1]
        listener.listen(self.backlog)
        listener.setblocking(False)
        self._listener = listener
        self._task = self._loop.create_task(self._accept_loop())

    async def close(self) -> None:
        """Stop listening, drop the client, remove the socket file. Idempotent."""
        if self.closed:
            return
        self.closed = True
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # pylint: disable=broad-except
                pass
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._client, self._listener):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self._client = None
        self._listener = None
        if self.path is not None:
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)
            except FileNotFoundError:
                pass

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            conn, _address = await loop.sock_accept(self._listener)
            conn.setblocking(False)
            self._client = conn
            self.busy = True
            self.connections += 1
            quit_requested = False
            try:
                quit_requested = await self._session(conn)
            except (ConnectionError, OSError):
                pass
            finally:
                self.busy = False
                self._client = None
                try:
                    conn.close()
                except OSError:
                    pass
            if quit_requested:
                # QEMU exits on 'quit': the monitor socket goes away.
                self.closed = True
                self._close_sockets()
                return

    # -- one client ---------------------------------------------------------------------------
    async def _send(self, conn: socket.socket, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(conn, data)

    async def _drain(self, conn: socket.socket, stop_on_data: bool = False) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(conn, 65536)
            if not data or stop_on_data:
                return

    def _greeting(self) -> Dict[str, Any]:
        major, minor, micro = self.vm.qemu_version
        return {"QMP": {"version": {"qemu": {"micro": micro, "minor": minor, "major": major}, "package": self.vm.package},
                        "capabilities": ["oob"]}}

    async def _session(self, conn: socket.socket) -> bool:
        """Serve one client until it leaves. Returns True if it asked QEMU to quit."""
        faults = self.faults
        if "no_greeting" in faults:
            await self._drain(conn)
            return False
        if "garbage_greeting" in faults:
            await self._send(conn, GARBAGE_GREETING)
            await self._drain(conn)
            return False
        if "banner" in faults:
            await self._send(conn, self.options.banner.encode("utf-8", "replace"))
            await self._drain(conn, stop_on_data=True)
            return False
        await self._send(conn, encode_message(self._greeting()))
        if "close_after_greeting" in faults:
            return False
        loop = asyncio.get_running_loop()
        session = Session()
        while True:
            data = await loop.sock_recv(conn, 65536)
            if not data:
                return False
            session.buffer += session.decoder.decode(data)
            while True:
                item = next_input(session)
                if item is None:
                    break
                kind, payload = item
                if kind == "error":
                    self.recorder.add(self.name, None, None, raw=payload)
                    await self._send(conn, encode_message({"error": {"class": "GenericError", "desc": payload}}))
                    continue
                outcome = await self._on_message(conn, session, payload)
                if outcome is not None:
                    return outcome

    def _fault_applies(self, command: Optional[str], negotiated: bool) -> bool:
        fault_on = self.options.fault_on
        if fault_on is None:
            return negotiated
        return fault_on in ("*", command)

    async def _on_message(self, conn: socket.socket, session: Session, message: Any) -> Optional[bool]:
        """Answer one message. Returns None to go on, or the session's result to end it."""
        if not isinstance(message, dict):
            self.recorder.add(self.name, None, None, raw=json.dumps(message)[:200])
            await self._send(conn, encode_message({"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}))
            return None
        command = message.get("execute", message.get("exec-oob"))
        extra = {"oob": True} if "exec-oob" in message and "execute" not in message else {}
        self.recorder.add(self.name, command if isinstance(command, str) else None, message.get("arguments"), **extra)
        has_id = "id" in message
        message_id = message.get("id")
        was_negotiated = session.negotiated
        faulty = self._fault_applies(command if isinstance(command, str) else None, was_negotiated)
        faults = self.faults if faulty else frozenset()
        reply = Reply()
        if "delay" in faults:
            # A busy QEMU main loop: nothing happens until it gets to the command.
            await asyncio.sleep(self.options.delay)
        try:
            if "error_everything" in faults:
                raise generic_error(self.options.error_desc)
            value = self._execute(session, message, reply)
            response: Dict[str, Any] = {"return": value}
            if has_id:
                response["id"] = message_id
        except QMPError as error:
            response = {}
            if has_id:
                response["id"] = message_id
            response["error"] = {"class": error.error_class, "desc": error.desc}
            reply = Reply()
        if "wrong_id" in faults:
            response.pop("id", None)
            wrong = {"id": "wrong-%s" % (message_id if has_id else "id")}
            response = dict(wrong, **response) if "error" in response else dict(response, **wrong)
        out = b""
        if "events" in faults and was_negotiated:
            for _event_index in range(self.options.events_per_reply):
                out += encode_message(event_message("BALLOON_CHANGE", {"actual": self.vm.balloon_actual}))
        out += b"".join(encode_message(event) for event in reply.before)
        if "huge_reply" in faults:
            await self._send(conn, out)
            await self._send_huge(conn, response)
            return None
        if "invalid_json_reply" in faults:
            await self._send(conn, out + INVALID_JSON_REPLY)
            return None
        encoded = encode_message(response)
        if "close_mid_reply" in faults:
            await self._send(conn, out + encoded[:max(1, len(encoded) // 2)])
            return False
        out += encoded + b"".join(encode_message(event) for event in reply.after)
        await self._send(conn, out)
        if reply.quit:
            return True
        return None

    async def _send_huge(self, conn: socket.socket, response: Dict[str, Any]) -> None:
        head = {key: value for key, value in response.items() if key == "id"}
        prefix = b'{"return": {"padding": "'
        suffix = b'"}' + (b', "id": ' + json.dumps(head["id"]).encode() if head else b"") + b"}\r\n"
        await self._send(conn, prefix)
        chunk = b"x" * (1024 * 1024)
        remaining = self.options.huge_size
        while remaining > 0:
            await self._send(conn, chunk[:remaining])
            remaining -= len(chunk)
        await self._send(conn, suffix)

    # -- commands -----------------------------------------------------------------------------
    def _execute(self, session: Session, message: Dict[str, Any], reply: Reply) -> Any:
        command, is_oob, arguments = check_input(message, session.oob)
        if not session.negotiated:
            if command != "qmp_capabilities":
                raise QMPError("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
            if is_oob:
                raise generic_error("The command qmp_capabilities does not support OOB")
            arguments = check_arguments(command, arguments)
            enable = arguments.get("enable", [])
            for item in enable:
                if not isinstance(item, str):
                    raise generic_error("Invalid parameter type for 'null', expected: string")
                if item != "oob":
                    raise generic_error("Parameter 'null' does not accept value '%s'" % item)
            session.negotiated = True
            session.oob = "oob" in enable
            return {}
        if command not in SCHEMAS:
            raise QMPError("CommandNotFound", "The command %s has not been found" % command)
        if is_oob:
            raise generic_error("The command %s does not support OOB" % command)
        if command == "qmp_capabilities":
            raise QMPError("CommandNotFound", "Capabilities negotiation is already complete, command ignored")
        arguments = check_arguments(command, arguments)
        handler = getattr(self, "_cmd_" + command.replace("-", "_"))
        with self.vm.lock:
            return handler(arguments, reply)

    def _cmd_query_status(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        return {"status": self.vm.status, "singlestep": False, "running": self.vm.running}

    def _cmd_query_name(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        return {"name": self.vm.name} if self.vm.name is not None else {}

    def _cmd_query_uuid(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        return {"UUID": self.vm.uuid}

    def _cmd_query_version(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        return self._greeting()["QMP"]["version"]

    def _cmd_query_commands(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        return [{"name": name} for name in sorted(SCHEMAS)]

    def _cmd_query_balloon(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        if not self.vm.has_balloon:
            raise QMPError("DeviceNotActive", "No balloon device has been activated")
        return {"actual": self.vm.balloon_actual}

    def _cmd_balloon(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        if not self.vm.has_balloon:
            raise QMPError("DeviceNotActive", "No balloon device has been activated")
        if arguments["value"] <= 0:
            raise generic_error("Parameter 'target' expects a size")
        if self.vm.set_balloon_target(arguments["value"]):
            reply.after.append(event_message("BALLOON_CHANGE", {"actual": self.vm.balloon_actual}))
        return {}

    def _cmd_stop(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        if self.vm.running:
            self.vm.set_status("paused")
            reply.before.append(event_message("STOP"))
        return {}

    def _cmd_cont(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        if not self.vm.running:
            self.vm.set_status("running")
            reply.before.append(event_message("RESUME"))
        return {}

    def _cmd_quit(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        self.vm.set_status("shutdown")
        reply.before.append(event_message("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"}))
        reply.quit = True
        return {}

    def _lookup(self, path: str) -> QomObject:
        node = resolve_path(tree_for(self.vm), path)
        if node is None:
            raise QMPError("DeviceNotFound", "Device '%s' not found" % path)
        return node

    def _cmd_x_query_virtio_status(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        """QEMU 7.2's answer for the balloon's virtio-backend (measured; the fields the collection reads, and a few more)."""
        if self.vm.virtio_status == "missing":
            raise QMPError("CommandNotFound", "The command x-query-virtio-status has not been found")
        path = arguments["path"]
        node = resolve_path(tree_for(self.vm), path)
        if self.vm.virtio_status == "refused" or node is None or node.role != "balloon-backend":
            raise generic_error("Path %s is not a VirtIODevice" % path)
        loaded = self.vm.has_guest_driver
        statuses = ["VIRTIO_CONFIG_S_ACKNOWLEDGE: Valid virtio device found",
                    "VIRTIO_CONFIG_S_DRIVER: Guest OS compatible with device",
                    "VIRTIO_CONFIG_S_FEATURES_OK: Feature negotiation complete",
                    "VIRTIO_CONFIG_S_DRIVER_OK: Driver setup and ready"] if loaded else []
        host_features = ["VIRTIO_BALLOON_F_PAGE_POISON: Guest is able to use the page poison feature",
                         "VIRTIO_BALLOON_F_STATS_VQ: Guest memory stats VQ available"]
        guest_features = []
        if loaded:
            guest_features = [host_features[0]] + ([host_features[1]] if self.vm.stats_vq else [])
        return {
            "name": "virtio-balloon", "device-id": 5, "vhost-started": False, "device-endian": "little",
            "status": {"statuses": statuses, "unknown-statuses": 0},
            "guest-features": {"dev-features": guest_features, "transports": []},
            "host-features": {"dev-features": host_features, "transports": []},
            "backend-features": {"dev-features": [], "transports": []},
            "num-vqs": 3, "queue-sel": 0, "isr": 0, "config-vector": 0, "broken": False, "disabled": False,
            "use-guest-notifier-mask": False, "disable-legacy-check": False, "started": loaded, "start-on-kick": False,
            "vm-running": self.vm.running,
        }

    def _cmd_qom_list(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        node = self._lookup(arguments["path"])
        return [{"name": name, "type": ptype} for name, ptype in node.props]

    def _cmd_qom_get(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        node = self._lookup(arguments["path"])
        prop = arguments["property"]
        ptype = node.prop_types.get(prop)
        if ptype is None:
            raise generic_error("Property '%s.%s' not found" % (node.type, prop))
        if prop == "type":
            return node.type
        if node.role in ("balloon", "balloon-backend"):
            if prop == "guest-stats-polling-interval":
                return self.vm.interval
            if prop == "guest-stats":
                return self.vm.guest_stats()
        if ptype.startswith("child<"):
            return node.children[prop].path
        if ptype.startswith("link<"):
            return node.links.get(prop, "")
        key = (node.path, prop)
        if key in self.vm.qom_values:
            return self.vm.qom_values[key]
        if (node.role, prop) in UNREADABLE:
            raise generic_error("Property '%s.%s' is not readable" % (node.type, prop))
        if node.role == "machine" and prop == "memory":
            return {"size": self.vm.memory}
        known = KNOWN_VALUES.get(node.role)
        if known is not None and prop in known:
            return known[prop]
        if node.role in ("device", "balloon", "balloon-backend") and prop in DEFAULT_VALUES:
            return DEFAULT_VALUES[prop]
        return default_value(ptype)

    def _cmd_qom_set(self, arguments: Dict[str, Any], reply: Reply) -> Any:
        node = self._lookup(arguments["path"])
        prop = arguments["property"]
        value = arguments["value"]
        ptype = node.prop_types.get(prop)
        if ptype is None:
            raise generic_error("Property '%s.%s' not found" % (node.type, prop))
        is_balloon = node.role in ("balloon", "balloon-backend")
        if is_balloon and prop == "guest-stats-polling-interval":
            if not is_int64(value):
                raise generic_error("Invalid parameter type for 'guest-stats-polling-interval', expected: integer")
            if value < 0:
                raise generic_error("timer value must be greater than zero")
            if value > UINT32_MAX:
                raise generic_error("timer value is too big")
            self.vm.set_interval(value)
            return {}
        if is_balloon and prop == "guest-stats":
            # The proxy's property is an alias: the backend answers, with its own type name.
            raise generic_error("Property 'virtio-balloon-device.guest-stats' is not writable")
        if prop == "type" or ptype.startswith("child<") or ptype.startswith("link<"):
            raise generic_error("Property '%s.%s' is not writable" % (node.type, prop))
        if node.role in ("device", "balloon", "balloon-backend") and prop != "realized":
            if node.role == "balloon-backend" or (node.role == "balloon" and prop in ALIASED_BACKEND_PROPS):
                raise generic_error("Attempt to set property '%s' on anonymous device (type 'virtio-balloon-device') after it was realized" % prop)
            if node.device_id:
                raise generic_error("Attempt to set property '%s' on device '%s' (type '%s') after it was realized" % (prop, node.device_id, node.type))
            raise generic_error("Attempt to set property '%s' on anonymous device (type '%s') after it was realized" % (prop, node.type))
        expected = SETTABLE_KINDS.get(ptype, "any")
        if not check_type(value, expected):
            raise generic_error("Invalid parameter type for '%s', expected: %s" % (prop, ARG_TYPE_NAMES.get(expected, expected)))
        if prop != "realized":
            self.vm.qom_values[(node.path, prop)] = value
        return {}
