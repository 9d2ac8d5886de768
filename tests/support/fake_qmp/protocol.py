# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""QMP: input checks, argument schemas, commands, and the stream parser."""

from __future__ import annotations

import codecs
import json
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .common import INT64_MAX, INT64_MIN, generic_error


ARG_TYPE_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "array": "array"}
# (name, type, required) in QAPI declaration order: QEMU reports the first missing one.
SCHEMAS: Dict[str, Sequence[Tuple[str, str, bool]]] = {
    "qmp_capabilities": (("enable", "array", False),),
    "query-status": (), "query-name": (), "query-uuid": (), "query-version": (), "query-balloon": (), "query-commands": (),
    "qom-list": (("path", "str", True),),
    "qom-get": (("path", "str", True), ("property", "str", True)),
    "qom-set": (("path", "str", True), ("property", "str", True), ("value", "any", True)),
    "balloon": (("value", "int", True),),
    "stop": (), "cont": (), "quit": (),
    "x-query-virtio-status": (("path", "str", True),),
}


def is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def check_type(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return is_int64(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return True


def check_arguments(command: str, arguments: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    arguments = arguments or {}
    schema = SCHEMAS[command]
    for name, kind, required in schema:
        if name not in arguments:
            if required:
                raise generic_error("Parameter '%s' is missing" % name)
            continue
        if not check_type(arguments[name], kind):
            raise generic_error("Invalid parameter type for '%s', expected: %s" % (name, ARG_TYPE_NAMES[kind]))
    known = {entry[0] for entry in schema}
    for name in arguments:
        if name not in known:
            raise generic_error("Parameter '%s' is unexpected" % name)
    return arguments


def check_input(message: Dict[str, Any], oob_enabled: bool) -> Tuple[str, bool, Optional[Dict[str, Any]]]:
    """QEMU's qmp_dispatch_check_obj: returns (command, is_oob, arguments)."""
    for key, value in message.items():
        if key in ("execute", "exec-oob"):
            if key == "exec-oob" and not oob_enabled:
                raise generic_error("QMP input member 'exec-oob' is unexpected")
            if not isinstance(value, str):
                raise generic_error("QMP input member '%s' must be a string" % key)
        elif key == "arguments":
            if not isinstance(value, dict):
                raise generic_error("QMP input member 'arguments' must be an object")
        elif key != "id":
            raise generic_error("QMP input member '%s' is unexpected" % key)
    if "execute" in message and "exec-oob" in message:
        raise generic_error("QMP input member 'exec-oob' is unexpected")
    if "execute" in message:
        return message["execute"], False, message.get("arguments")
    if "exec-oob" in message:
        return message["exec-oob"], True, message.get("arguments")
    raise generic_error("QMP input lacks member 'execute'")


def event_message(name: str, data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    now = time.time()
    message: Dict[str, Any] = {"timestamp": {"seconds": int(now), "microseconds": int((now % 1) * 1000000)}, "event": name}
    if data is not None:
        message["data"] = data
    return message


def encode_message(message: Any) -> bytes:
    return (json.dumps(message) + "\r\n").encode("utf-8")


def default_value(ptype: str) -> Any:
    if ptype == "bool":
        return False
    if ptype in ("int", "int32", "uint8", "uint16", "uint32", "uint64", "uint64_t", "size"):
        return 0
    if ptype in ("str", "string"):
        return ""
    if ptype == "OnOffAuto":
        return "auto"
    return {}


class Reply:
    """What a command produces besides its value."""

    __slots__ = ("before", "after", "quit")

    def __init__(self) -> None:
        self.before: List[Dict[str, Any]] = []
        self.after: List[Dict[str, Any]] = []
        self.quit = False


class Session:
    __slots__ = ("negotiated", "oob", "buffer", "decoder")

    def __init__(self) -> None:
        self.negotiated = False
        self.oob = False
        self.buffer = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")


_DECODER = json.JSONDecoder()
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WHITESPACE = " \t\r\n"


def _scan_container_end(text: str, pos: int) -> int:
    """End index of the {...} or [...] starting at pos, or -1 if it is not complete yet."""
    depth = 0
    quote = ""
    index = pos
    length = len(text)
    while index < length:
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return -1


def _requote(fragment: str) -> str:
    """Rewrite QEMU's single-quoted JSON strings ('...') as standard double-quoted ones."""
    out: List[str] = []
    quote = ""
    index = 0
    while index < len(fragment):
        char = fragment[index]
        if quote:
            if char == "\\" and index + 1 < len(fragment):
                following = fragment[index + 1]
                out.append(following if (following == "'" and quote == "'") else char + following)
                index += 2
                continue
            if char == quote:
                quote = ""
                out.append('"')
            elif char == '"' and quote == "'":
                out.append('\\"')
            else:
                out.append(char)
        elif char in "\"'":
            quote = char
            out.append('"')
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _parse_error(fragment: str) -> str:
    try:
        json.loads(fragment)
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Expecting property name"):
            return "JSON parse error, key is not a string in object"
        word = _WORD.match(fragment, exc.pos)
        if word:
            return "JSON parse error, invalid keyword '%s'" % word.group(0)
    return "JSON parse error, expecting value"


def next_input(session: Session) -> Optional[Tuple[str, Any]]:
    """Take the next message off the session's buffer, QEMU-streamer style.

    Returns ("message", object), ("error", desc) for input QEMU answers with a parse error,
    or None when more bytes are needed.
    """
    text = session.buffer
    pos = 0
    length = len(text)
    while pos < length and text[pos] in _WHITESPACE:
        pos += 1
    if pos >= length:
        session.buffer = ""
        return None
    char = text[pos]
    if char in "{[":
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            end = _scan_container_end(text, pos)
            if end < 0:
                session.buffer = text[pos:]
                return None
            session.buffer = text[end:]
            fragment = text[pos:end]
            if "'" in fragment:
                try:
                    return "message", json.loads(_requote(fragment))
                except json.JSONDecodeError:
                    pass
            return "error", _parse_error(fragment)
        session.buffer = text[end:]
        return "message", value
    if char in "}]":
        session.buffer = text[pos + 1:]
        return "error", "JSON parse error, expecting value"
    word = _WORD.match(text, pos)
    if word:
        if word.end() >= length:
            session.buffer = text[pos:]
            return None  # the keyword may go on
        session.buffer = text[word.end():]
        if word.group(0) in ("true", "false", "null"):
            return "error", "QMP input must be a JSON object"
        return "error", "JSON parse error, invalid keyword '%s'" % word.group(0)
    if char == '"' or char == "-" or char.isdigit():
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            session.buffer = text[pos:]
            return None
        if end >= length and not isinstance(value, str):
            session.buffer = text[pos:]
            return None  # the number may go on
        session.buffer = text[end:]
        return "error", "QMP input must be a JSON object"
    session.buffer = text[pos + 1:]
    return "error", "JSON parse error, stray '%s'" % char
