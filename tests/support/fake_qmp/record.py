# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Recording: every message received, in memory and optionally in a JSONL file."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Set


class Recorder:
    """The log of every message the fake received, in memory and optionally as JSONL.

    Each entry: ``{"time": float, "endpoint": name, "command": str or None, "arguments": dict or
    None}`` plus ``"oob": true`` for exec-oob and ``"raw"`` for input that was not a command.
    """

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path
        self.entries: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def add(self, endpoint: str, command: Optional[str], arguments: Any = None, **extra: Any) -> None:
        entry: Dict[str, Any] = {"time": time.time(), "endpoint": endpoint, "command": command, "arguments": arguments}
        entry.update(extra)
        with self._lock:
            self.entries.append(entry)
            if self._fd is not None:
                # One write per line on an O_APPEND descriptor: lines from several processes don't interleave.
                os.write(self._fd, (json.dumps(entry, sort_keys=True, default=repr) + "\n").encode("utf-8"))

    def commands(self, endpoint: Optional[str] = None) -> List[Optional[str]]:
        """The command names received, in order (optionally of one endpoint)."""
        with self._lock:
            return [entry["command"] for entry in self.entries if endpoint is None or entry["endpoint"] == endpoint]

    def command_set(self) -> Set[Optional[str]]:
        return set(self.commands())

    def clear(self) -> None:
        with self._lock:
            del self.entries[:]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        with self._lock:
            return iter(list(self.entries))


def read_record(path: str) -> List[Dict[str, Any]]:
    """Load a JSONL record file written by :class:`Recorder`."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
