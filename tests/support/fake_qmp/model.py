# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The VM model: run state, name, UUID, the balloon device and its two statistics properties."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import CLASSIC_STAT_NAMES, EXTRA_STAT_NAMES, MIB, U64_UNSET, UINT32_MAX, ZERO_UUID, default_stats, generic_error


BALLOON_PLACEMENTS = ("peripheral", "anon", "none", "two")
STATS_MODES = ("never", "static", "live")


@dataclass
class VMModel:
    """What one fake QEMU knows about its VM. Tests may change any field between calls.

    ``stats_mode``:
      * ``never``: the guest never reported (all stats unset, last-update 0), e.g. no driver.
      * ``static``: one fixed report (``stats``, ``last_update``) that never changes.
      * ``live``: a guest that answers the stats timer. Setting the interval 0 -> N fires at once and
        then every N seconds of *running* time (QEMU's timer is on the virtual clock: a paused VM
        does not poll). Setting the value it already has is a no-op (no re-arm); N -> M re-arms
        the timer M seconds ahead (QEMU's ``timer_mod``). ``stalled=True`` models a guest that
        stopped answering: last-update freezes and the timer dies, until someone re-arms it
        (0 -> N, or N -> M). ``boot_report`` models the one report a Linux guest sends when its
        driver loads, even with polling off.

    Old QEMU: ``unset_value=-1`` (very old QEMU sent -1 for unset stats) and ``no_stats_error``
    (GenericError "guest hasn't updated any stats yet" while last-update is 0).

    ``balloon``: ``peripheral`` (``/machine/peripheral/<balloon_id>``), ``anon``
    (``/machine/peripheral-anon/device[0]``, a device without ``id=``), ``none``, or ``two`` (two
    balloons, which real QEMU refuses: "Only one balloon device is supported"; it is here to test
    how a tree walker copes with ambiguity).

    ``clock`` (default ``time.time``) is the host wall clock used for last-update; tests can
    pass their own to drive the live timer without sleeping.
    """

    name: Optional[str] = None
    uuid: str = ZERO_UUID
    status: str = "running"
    memory: int = 1024 * MIB
    balloon: str = "peripheral"
    balloon_id: str = "balloon0"
    balloon_type: str = "virtio-balloon-pci"
    balloon_actual: Optional[int] = None
    guest_driver: Optional[bool] = None
    #: The guest driver accepted VIRTIO_BALLOON_F_STATS_VQ (QEMU 7.2 with a Linux guest always shows
    #: it accepted; False models a driver without the stats queue, which no guest here can show).
    stats_vq: bool = True
    #: How x-query-virtio-status answers: ``ok`` (QEMU >= 7.1), ``missing`` (CommandNotFound, older
    #: QEMU) or ``refused`` (a GenericError, as for a path that is not a virtio device).
    virtio_status: str = "ok"
    stats_mode: str = "never"
    stats: Dict[str, int] = field(default_factory=dict)
    last_update: int = 0
    interval: int = 0
    stalled: bool = False
    boot_report: bool = True
    extra_stats: bool = False
    unset_value: int = U64_UNSET
    no_stats_error: bool = False
    deep_tree: bool = False
    cyclic_links: bool = False
    tree_depth: int = 64
    qemu_version: Tuple[int, int, int] = (7, 2, 0)
    package: str = "Debian 1:7.2+dfsg-7"
    clock: Optional[Callable[[], float]] = field(default=None, repr=False, compare=False)
    lock: Any = field(default_factory=threading.RLock, repr=False, compare=False)
    #: Values written with qom-set to properties the model has no rule for, by (path, property).
    qom_values: Dict[Tuple[str, str], Any] = field(default_factory=dict, repr=False)
    #: Number of live-mode reports the guest has made since the model was created.
    reports: int = field(default=0, init=False)
    _vclock: float = field(default=0.0, init=False, repr=False, compare=False)
    _last_wall: float = field(default=0.0, init=False, repr=False, compare=False)
    _was_running: bool = field(default=False, init=False, repr=False, compare=False)
    _armed: bool = field(default=False, init=False, repr=False, compare=False)
    _next_tick: float = field(default=0.0, init=False, repr=False, compare=False)
    _free_base: Optional[int] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.balloon not in BALLOON_PLACEMENTS:
            raise ValueError("balloon must be one of %s, not %r" % (", ".join(BALLOON_PLACEMENTS), self.balloon))
        if self.stats_mode not in STATS_MODES:
            raise ValueError("stats_mode must be one of %s, not %r" % (", ".join(STATS_MODES), self.stats_mode))
        if not 0 <= self.interval <= UINT32_MAX:
            raise ValueError("interval must be in 0..%d" % UINT32_MAX)
        if self.balloon_actual is None:
            self.balloon_actual = self.memory
        now = self.now()
        self._last_wall = now
        self._was_running = self.running
        reported = self.stats_mode == "static" or (self.stats_mode == "live" and self.boot_report)
        if reported:
            if not self.stats:
                self.stats = default_stats(self.memory, self.extra_stats)
            if not self.last_update:
                self.last_update = int(now)
        if self.stats_mode == "live" and self.interval > 0:
            self._arm(0.0)

    # -- small helpers ------------------------------------------------------------------------
    def now(self) -> float:
        """The host wall clock, in seconds."""
        return (self.clock or time.time)()

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def has_balloon(self) -> bool:
        return self.balloon != "none"

    @property
    def has_guest_driver(self) -> bool:
        return self.guest_driver if self.guest_driver is not None else self.stats_mode != "never"

    def balloon_paths(self) -> List[str]:
        """The canonical QOM paths of the balloon device(s)."""
        if self.balloon == "peripheral":
            return ["/machine/peripheral/" + self.balloon_id]
        if self.balloon == "anon":
            return ["/machine/peripheral-anon/device[0]"]
        if self.balloon == "two":
            return ["/machine/peripheral/" + self.balloon_id, "/machine/peripheral/" + second_balloon_id(self.balloon_id)]
        return []

    # -- the live stats timer -----------------------------------------------------------------
    def _arm(self, at_vclock: float) -> None:
        self._armed = True
        self._next_tick = at_vclock
        self.stalled = False

    def sync(self, now: Optional[float] = None) -> None:
        """Bring the live-mode timer up to ``now`` (called before every read; cheap)."""
        with self.lock:
            if now is None:
                now = self.now()
            elapsed = max(0.0, now - self._last_wall)
            self._last_wall = now
            if self._was_running:
                self._vclock += elapsed
            self._was_running = self.running
            if self.stats_mode != "live" or not self._armed or self.interval <= 0 or not self.running:
                return
            if self._next_tick > self._vclock:
                return
            if self.stalled:
                # The guest did not answer this poll, so nothing re-arms the timer.
                self._armed = False
                return
            count = int((self._vclock - self._next_tick) // self.interval) + 1
            last_tick = self._next_tick + (count - 1) * self.interval
            self._next_tick = last_tick + self.interval
            self._report(count, int(now - (self._vclock - last_tick)))

    def _report(self, count: int, when: int) -> None:
        if not self.stats:
            self.stats = default_stats(self.memory, self.extra_stats)
        if self._free_base is None:
            self._free_base = self.stats.get("stat-free-memory")
        self.reports += count
        for name, step in (("stat-minor-faults", 1500), ("stat-major-faults", 1)):
            if isinstance(self.stats.get(name), int):
                self.stats[name] += step * count
        if isinstance(self._free_base, int):
            self.stats["stat-free-memory"] = max(0, self._free_base - (self.reports % 8) * 2 * MIB)
        self.last_update = when

    def set_status(self, status: str) -> None:
        """Change the run state at a precise moment (the live timer only runs while running)."""
        with self.lock:
            self.sync()
            self.status = status
            self._was_running = self.running

    def set_interval(self, value: int) -> None:
        """QEMU's setter for guest-stats-polling-interval, after validation."""
        with self.lock:
            self.sync()
            if value == self.interval:
                return  # no-op: does not re-arm a stalled timer
            if value == 0:
                self.interval = 0
                self._armed = False
                return
            if self.interval > 0:
                self.interval = value
                self._arm(self._vclock + value)
                return
            self.interval = value
            self._arm(self._vclock)

    def guest_stats(self) -> Dict[str, Any]:
        """The value of qom-get guest-stats, or raise :class:`QMPError` like (old) QEMU."""
        with self.lock:
            self.sync()
            if self.no_stats_error and self.last_update == 0:
                raise generic_error("guest hasn't updated any stats yet")
            names = list(CLASSIC_STAT_NAMES)
            if self.extra_stats:
                names.extend(EXTRA_STAT_NAMES)
            names.extend(name for name in self.stats if name not in names)
            return {"stats": {name: self.stats.get(name, self.unset_value) for name in names}, "last-update": self.last_update}

    def set_balloon_target(self, target: int) -> bool:
        """The guest follows a balloon request at once (if it has a driver); True if actual changed."""
        with self.lock:
            if not self.has_guest_driver:
                return False
            actual = min(target, self.memory)
            changed = actual != self.balloon_actual
            self.balloon_actual = actual
            return changed


def second_balloon_id(first: str) -> str:
    return "balloon1" if first != "balloon1" else "balloon2"
