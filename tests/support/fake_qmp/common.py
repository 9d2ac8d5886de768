# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Constants and small helpers every part of the fake uses: stat names, faults, banners, QMP errors."""

from __future__ import annotations

from typing import Dict


#: How current QEMU reports a statistic the guest never set (u64 -1).
U64_UNSET = 18446744073709551615
INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1
UINT32_MAX = 4294967295
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
RECORD_ENV = "QMP_BALLOON_FAKE_RECORD"
MIB = 1024 * 1024
#: qemu.qmp 0.0.6 refuses a line longer than this (its StreamReader limit).
QMP_READ_LIMIT = 10 * MIB

#: The ten classic names, in the order QEMU 7.2 puts them on the wire (its hash table's order).
CLASSIC_STAT_NAMES = (
    "stat-htlb-pgalloc", "stat-swap-out", "stat-available-memory", "stat-htlb-pgfail", "stat-free-memory",
    "stat-minor-faults", "stat-major-faults", "stat-total-memory", "stat-swap-in", "stat-disk-caches",
)
#: Added by QEMU 9.2+ for Linux 6.12+ guests.
EXTRA_STAT_NAMES = (
    "stat-oom-kills", "stat-alloc-stalls", "stat-async-scans", "stat-direct-scans", "stat-async-reclaims", "stat-direct-reclaims",
)

#: Faults that change the VM model rather than the conversation.
MODEL_FAULTS = frozenset(("no_balloon", "two_balloons", "deep_tree", "cyclic_links"))
#: Faults that change the conversation.
SESSION_FAULTS = frozenset((
    "no_greeting", "garbage_greeting", "banner", "close_after_greeting", "close_mid_reply", "delay", "huge_reply",
    "invalid_json_reply", "error_everything", "wrong_id", "events",
))
FAULTS = MODEL_FAULTS | SESSION_FAULTS

SSH_BANNER = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
HTTP_BANNER = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request"
BANNERS = {"ssh": SSH_BANNER, "http": HTTP_BANNER}
GARBAGE_GREETING = b"\x8f\x92\xa0 garbage }{ this is not a QMP greeting\r\n"
INVALID_JSON_REPLY = b'{"return": {"status": running, "singlestep": false\r\n'


class QMPError(Exception):
    """A QMP error reply: ``{"error": {"class": error_class, "desc": desc}}``."""

    def __init__(self, error_class: str, desc: str) -> None:
        super().__init__(desc)
        self.error_class = error_class
        self.desc = desc


def generic_error(desc: str) -> QMPError:
    return QMPError("GenericError", desc)


def _round_page(value: float) -> int:
    return int(value) // 4096 * 4096


def default_stats(memory: int, extra: bool = False) -> Dict[str, int]:
    """A plausible, fully set report of a Linux guest with ``memory`` bytes of RAM."""
    total = _round_page(memory - 40 * MIB if memory > 80 * MIB else memory * 0.9)
    stats = {
        "stat-swap-in": 0, "stat-swap-out": 0, "stat-major-faults": 312, "stat-minor-faults": 141206,
        "stat-free-memory": _round_page(total * 0.55), "stat-total-memory": total,
        "stat-available-memory": _round_page(total * 0.75), "stat-disk-caches": _round_page(total * 0.15),
        "stat-htlb-pgalloc": 0, "stat-htlb-pgfail": 0,
    }
    if extra:
        stats.update({name: 0 for name in EXTRA_STAT_NAMES})
    return stats
