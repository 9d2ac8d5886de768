# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake QEMU 7.2 QMP monitor: a test double for the collection's QMP engine.

It speaks QMP the way QEMU 7.2 does (greeting, capabilities negotiation, stream
parsing of compact JSON without newlines, ``\\r\\n`` after every message, one client at a
time per socket, exact error classes and texts) and models one VM per endpoint: run
state, name, UUID, the balloon device in the QOM tree and its two statistics properties.
Every difference from real QEMU that a test could notice is either a documented fault or
a bug. Standard library only; Python 3.9+.

Three ways to use it:

* In-process, in a background thread with its own event loop::

      with FakeQMPServer(vm=VMModel(stats_mode="live")) as server:
          client.connect(server.path)          # or server.address, (host, port) for tcp=True
          server.vm.status = "paused"          # change the model between calls
          assert server.record.commands() == ["qmp_capabilities", "qom-get"]

      with FakeFleet(10, tmp_path, fault={"vm003": "delay"}) as fleet:
          fleet.paths, fleet.addresses, fleet.vms, fleet["vm003"].vm

* On the command line, N endpoints named vm000, vm001, ... until SIGTERM/SIGINT::

      python3 tests/support/fake_qmp.py --dir DIR --count 1000 [--tcp] [--fault delay] [--stats live]

  It prints one JSON line ``{"ready": true, "endpoints": [...]}`` once every endpoint
  listens (and writes it to ``--ready-file``), and removes its sockets when stopped.

* Imported for its pieces: :class:`VMModel`, :class:`Recorder`, :class:`Endpoint`.

Recording: every message received is appended to :class:`Recorder` (in memory) and, when a
path is given (option ``record_path``/``--record`` or env ``QMP_BALLOON_FAKE_RECORD``), to a
JSONL file, so tests can assert that only allowed commands were ever sent.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import dataclasses
import ipaddress
import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import uuid as uuid_module
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

__all__ = [
    "CLASSIC_STAT_NAMES", "EXTRA_STAT_NAMES", "FAULTS", "RECORD_ENV", "U64_UNSET",
    "Endpoint", "FakeFleet", "FakeQMPServer", "FaultOptions", "QMPError", "Recorder", "VMModel",
    "default_stats", "main", "parse_faults", "raise_nofile_limit", "read_record",
]

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


def _generic(desc: str) -> QMPError:
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


# ---------------------------------------------------------------------------------------------
# The VM model
# ---------------------------------------------------------------------------------------------

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
            return ["/machine/peripheral/" + self.balloon_id, "/machine/peripheral/" + _second_balloon_id(self.balloon_id)]
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
                raise _generic("guest hasn't updated any stats yet")
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


def _second_balloon_id(first: str) -> str:
    return "balloon1" if first != "balloon1" else "balloon2"


# ---------------------------------------------------------------------------------------------
# The QOM tree (shape of a real `-M q35 -nodefaults` QEMU 7.2, about 270 objects)
# ---------------------------------------------------------------------------------------------

_DEVICE_SPEC = "parent_bus:link<bus>|realized:bool|hotplugged:bool|hotpluggable:bool"
_MEMORY_REGION_SPEC = "container:link<memory-region>|addr:uint64|size:uint64|priority:uint32"
_BUS_SPEC = "realized:bool|hotplug-handler:link<hotplug-handler>"
_MACHINE_SPEC = (
    "kernel:string|dt-compatible:string|boot:BootConfiguration|memory:MemorySizeConfiguration|initrd:string|"
    "confidential-guest-support:link<confidential-guest-support>|graphics:bool|usb:bool|firmware:string|memory-encryption:string|"
    "smp:SMPConfiguration|dump-guest-core:bool|phandle-start:int|dumpdtb:string|memory-backend:link<memory-backend>|dtb:string|"
    "mem-merge:bool|append:string|suppress-vmdesc:bool|smm:OnOffAuto|acpi:OnOffAuto|pit:OnOffAuto|pic:OnOffAuto|x-oem-table-id:string|"
    "bus-lock-ratelimit:uint64_t|sgx-epc:SgxEPC|x-oem-id:string|max-fw-size:size|default-bus-bypass-iommu:bool|"
    "device-memory-region-size:int|sata:bool|vmport:OnOffAuto|i8042:bool|hpet:bool|smbios-entry-point-type:str|max-ram-below-4g:size|"
    "smbus:bool|unattached:child<container>|fw_cfg:child<fw_cfg_io>|peripheral-anon:child<container>|nvdimm:bool|"
    "peripheral:child<container>|q35:child<q35-pcihost>|nvdimm-persistence:string|rtc_state:link<isa-device>|smram:link<memory-region>|"
    "cxl-fmw:CXLFixedMemoryWindow|rtc-time:struct tm|acpi-device:link<hotplug-handler>|hmat:bool|cxl:bool|pcspk-audiodev:str"
)
_BALLOON_PCI_SPEC = (
    "parent_bus:link<bus>|realized:bool|hotplugged:bool|hotpluggable:bool|failover_pair_id:str|romfile:str|addr:int32|romsize:uint32|"
    "x-pcie-lnksta-dllla:bool|rombar:uint32|x-pcie-extcap-init:bool|acpi-index:uint32|multifunction:bool|legacy-addr:str|"
    "migrate-extra:bool|ats:bool|x-ignore-backend-features:bool|x-pcie-pm-init:bool|aer:bool|x-pcie-flr-init:bool|"
    "x-pcie-lnkctl-init:bool|x-ats-page-aligned:bool|page-per-vq:bool|x-pcie-deverr-init:bool|"
    "virtio-pci-bus-master-bug-migration:bool|modern-pio-notify:bool|x-disable-pcie:bool|disable-legacy:OnOffAuto|"
    "disable-modern:bool|free-page-reporting:bool|indirect_desc:bool|virtio-pci-device-virtio-balloon[0]:child<memory-region>|"
    "iommu_platform:bool|deflate-on-oom:bool|use-disabled-flag:bool|event_idx:bool|bus master container[0]:child<memory-region>|"
    "page-poison:bool|guest-stats-polling-interval:int|guest-stats:guest statistics|x-disable-legacy-check:bool|any_layout:bool|"
    "iothread:link<iothread>|notify_on_empty:bool|virtio-pci-notify-virtio-balloon[0]:child<memory-region>|queue_reset:bool|"
    "qemu-4-0-config-size:bool|packed:bool|use-started:bool|free-page-hint:bool|virtio-pci[1]:child<memory-region>|"
    "virtio-pci-notify-pio-virtio-balloon[0]:child<memory-region>|virtio-pci-common-virtio-balloon[0]:child<memory-region>|"
    "virtio-pci[0]:child<memory-region>|virtio-pci-isr-virtio-balloon[0]:child<memory-region>|bus master[0]:child<memory-region>|"
    "virtio-bus:child<virtio-pci-bus>|virtio-backend:child<virtio-balloon-device>"
)
_BALLOON_DEVICE_SPEC = (
    "parent_bus:link<bus>|realized:bool|hotplugged:bool|hotpluggable:bool|queue_reset:bool|use-disabled-flag:bool|packed:bool|"
    "iommu_platform:bool|event_idx:bool|x-disable-legacy-check:bool|notify_on_empty:bool|any_layout:bool|use-started:bool|"
    "indirect_desc:bool|legacy-iothread:str|iothread:link<iothread>|deflate-on-oom:bool|free-page-hint:bool|page-poison:bool|"
    "qemu-4-0-config-size:bool|free-page-reporting:bool|guest-stats-polling-interval:int|guest-stats:guest statistics"
)
_Q35_SPEC = (
    "parent_bus:link<bus>|realized:bool|hotplugged:bool|hotpluggable:bool|bypass-iommu:bool|x-config-reg-migration-enabled:bool|"
    "pci-hole64-size:size|below-4g-mem-size:size|short_root_bus:uint32|x-pci-hole64-fix:bool|MCFG:uint64|above-4g-mem-size:size|"
    "ioapic:child<ioapic>|pcie.0:child<PCIE>|mcfg_size:uint64|pci-hole64-end:uint64|pci-mem:link<memory-region>|"
    "pci-conf-data[0]:child<memory-region>|pci-hole-start:uint32|system-mem:link<memory-region>|io-mem:link<memory-region>|"
    "mch:child<mch>|pci-hole-end:uint32|pci-conf-idx[0]:child<memory-region>|pci-hole64-start:uint64|ram-mem:link<memory-region>|"
    "pcie-mmcfg-mmio[0]:child<memory-region>"
)
_PCI_DEVICE_SPEC = (
    _DEVICE_SPEC + "|failover_pair_id:str|romfile:str|addr:int32|romsize:uint32|x-pcie-lnksta-dllla:bool|rombar:uint32|"
    "x-pcie-extcap-init:bool|acpi-index:uint32|multifunction:bool|legacy-addr:str"
)
_PC_RAM_SPEC = (
    "share:bool|size:int|dump:bool|prealloc-threads:int|x-use-canonical-path-for-ramblock-id:bool|policy:HostMemPolicy|"
    "prealloc-context:link<thread-context>|prealloc:bool|reserve:bool|host-nodes:int|merge:bool|pc.ram[0]:child<memory-region>"
)
# Properties of virtio-balloon-device that the PCI proxy shows as aliases (qdev_alias_all_properties):
# writing one through the proxy reports the backend, an anonymous device, as QEMU does.
_ALIASED_BACKEND_PROPS = frozenset(
    name for name, _type in (item.split(":", 1) for item in _BALLOON_DEVICE_SPEC.split("|"))
    if name not in ("parent_bus", "realized", "hotplugged", "hotpluggable", "legacy-iothread")
)
_DEFAULT_VALUES = {"realized": True, "hotpluggable": True, "hotplugged": False}
# What QEMU 7.2 (-M q35 -nodefaults, balloon in slot 1) answers to qom-get for these objects' properties.
_KNOWN_VALUES: Dict[Optional[str], Dict[str, Any]] = {
    "balloon": {
        "realized": True, "hotplugged": False, "hotpluggable": False, "failover_pair_id": "", "romfile": "", "addr": 8, "romsize": 4294967295,
        "x-pcie-lnksta-dllla": True, "rombar": 1, "x-pcie-extcap-init": True, "acpi-index": 0, "multifunction": False, "legacy-addr": "01.0",
        "migrate-extra": True, "ats": False, "x-ignore-backend-features": False, "x-pcie-pm-init": True, "aer": False, "x-pcie-flr-init": True,
        "x-pcie-lnkctl-init": True, "x-ats-page-aligned": True, "page-per-vq": False, "x-pcie-deverr-init": True,
        "virtio-pci-bus-master-bug-migration": False, "modern-pio-notify": False, "x-disable-pcie": False, "disable-legacy": "off",
        "disable-modern": False, "free-page-reporting": False, "indirect_desc": True, "iommu_platform": False, "deflate-on-oom": False,
        "use-disabled-flag": True, "event_idx": True, "page-poison": True, "x-disable-legacy-check": False, "any_layout": True,
        "notify_on_empty": True, "queue_reset": True, "qemu-4-0-config-size": False, "packed": False, "use-started": True, "free-page-hint": False,
    },
    "balloon-backend": {
        "realized": True, "hotplugged": False, "hotpluggable": False, "queue_reset": True, "use-disabled-flag": True, "packed": False,
        "iommu_platform": False, "event_idx": True, "x-disable-legacy-check": False, "notify_on_empty": True, "any_layout": True,
        "use-started": True, "indirect_desc": True, "deflate-on-oom": False, "free-page-hint": False, "page-poison": True,
        "qemu-4-0-config-size": False, "free-page-reporting": False,
    },
    "machine": {
        "kernel": "", "dt-compatible": "", "boot": {"order": "cad"}, "initrd": "", "graphics": True, "usb": False, "firmware": "bios-256k.bin",
        "memory-encryption": "", "smp": {"cpus": 1, "maxcpus": 1, "threads": 1, "cores": 1, "dies": 1, "sockets": 1, "clusters": 1},
        "dump-guest-core": True, "phandle-start": 0, "dumpdtb": "", "dtb": "", "mem-merge": True, "append": "", "suppress-vmdesc": False,
        "smm": "auto", "acpi": "auto", "pit": "auto", "pic": "auto", "x-oem-table-id": "BXPC    ", "bus-lock-ratelimit": 0, "sgx-epc": [],
        "x-oem-id": "BOCHS ", "max-fw-size": 8388608, "default-bus-bypass-iommu": False, "device-memory-region-size": 0, "sata": True,
        "vmport": "on", "i8042": True, "hpet": True, "smbios-entry-point-type": "32", "max-ram-below-4g": 4294967296, "smbus": True,
        "nvdimm": False, "nvdimm-persistence": "", "cxl-fmw": [], "hmat": False, "cxl": False, "pcspk-audiodev": "",
    },
    "bus": {"realized": True},
}
_UNREADABLE = {("balloon-backend", "legacy-iothread")}
_SETTABLE_KINDS = {"bool": "bool", "str": "str", "string": "str", "int": "int", "int32": "int", "uint8": "int", "uint16": "int",
                   "uint32": "int", "uint64": "int", "size": "int"}


class _QomObject:
    """One object of the fake QOM tree. Trees are shared between VMs of the same shape, so
    nothing VM-specific is stored here (that lives in :class:`VMModel`)."""

    __slots__ = ("type", "path", "props", "prop_types", "children", "links", "role", "device_id")

    def __init__(self, typename: str, path: str, spec: str = "", role: Optional[str] = None) -> None:
        self.type = typename
        self.path = path
        self.props: List[Tuple[str, str]] = [("type", "string")]
        if spec:
            self.props.extend(tuple(item.split(":", 1)) for item in spec.split("|"))  # type: ignore[misc]
        self.prop_types: Dict[str, str] = dict(self.props)
        self.children: Dict[str, _QomObject] = {}
        self.links: Dict[str, str] = {}
        self.role = role
        self.device_id: Optional[str] = None

    def _declare(self, name: str, ptype: str) -> None:
        if name not in self.prop_types:
            self.props.append((name, ptype))
            self.prop_types[name] = ptype

    def child(self, name: str, typename: str, spec: str = "", role: Optional[str] = None) -> "_QomObject":
        node = _QomObject(typename, self.path.rstrip("/") + "/" + name, spec, role)
        self.attach(name, node)
        return node

    def attach(self, name: str, node: "_QomObject") -> None:
        self._declare(name, "child<%s>" % node.type)
        self.children[name] = node

    def link(self, name: str, typename: str, target: str = "") -> None:
        self._declare(name, "link<%s>" % typename)
        self.links[name] = target

    def device(self, name: str, typename: str, spec: str = "", bus: str = "/machine/unattached/sysbus") -> "_QomObject":
        node = self.child(name, typename, _DEVICE_SPEC + ("|" + spec if spec else ""), role="device")
        node.links["parent_bus"] = bus
        return node

    def regions(self, *names: str) -> None:
        for name in names:
            self.child(name, "memory-region", _MEMORY_REGION_SPEC)

    def irqs(self, *names: str) -> None:
        for name in names:
            self.child(name, "irq")


def _indexed(prefix: str, count: int) -> List[str]:
    return ["%s[%d]" % (prefix, index) for index in range(count)]


def _build_balloon(parent: _QomObject, name: str, typename: str, device_id: Optional[str]) -> _QomObject:
    proxy = _QomObject(typename, parent.path.rstrip("/") + "/" + name, _BALLOON_PCI_SPEC, role="balloon")
    parent.attach(name, proxy)
    proxy.device_id = device_id
    proxy.links.update({"parent_bus": "/machine/q35/pcie.0", "iothread": ""})
    proxy.regions(
        "virtio-pci-device-virtio-balloon[0]", "bus master container[0]", "virtio-pci-notify-virtio-balloon[0]", "virtio-pci[1]",
        "virtio-pci-notify-pio-virtio-balloon[0]", "virtio-pci-common-virtio-balloon[0]", "virtio-pci[0]",
        "virtio-pci-isr-virtio-balloon[0]", "bus master[0]",
    )
    bus = proxy.child("virtio-bus", "virtio-pci-bus", "realized:bool|child[0]:link<virtio-balloon-device>|hotplug-handler:link<hotplug-handler>", role="bus")
    backend = proxy.child("virtio-backend", "virtio-balloon-device", _BALLOON_DEVICE_SPEC, role="balloon-backend")
    bus.links.update({"child[0]": backend.path, "hotplug-handler": ""})
    backend.links.update({"parent_bus": bus.path, "iothread": ""})
    return proxy


# The order in which QEMU 7.2 lists /machine/unattached (a hash table's order).
_UNATTACHED_ORDER = (
    "type|non-qdev-gpio[10]|ram-below-4g[0]|device[20]|device[4]|device[15]|non-qdev-gpio[23]|non-qdev-gpio[5]|non-qdev-gpio[18]|"
    "non-qdev-gpio[11]|device[21]|system[0]|pc.bios[0]|device[5]|device[16]|isa-bios[0]|non-qdev-gpio[24]|non-qdev-gpio[6]|"
    "non-qdev-gpio[19]|non-qdev-gpio[12]|device[22]|device[6]|device[17]|sysbus|device[10]|non-qdev-gpio[25]|non-qdev-gpio[7]|"
    "non-qdev-gpio[0]|non-qdev-gpio[13]|pc.rom[0]|device[23]|ioport80[0]|device[7]|device[0]|device[18]|non-qdev-gpio[8]|device[11]|"
    "non-qdev-gpio[26]|non-qdev-gpio[1]|ioportF0[0]|non-qdev-gpio[14]|device[24]|device[8]|device[1]|device[19]|device[12]|"
    "non-qdev-gpio[9]|non-qdev-gpio[20]|non-qdev-gpio[2]|non-qdev-gpio[15]|pci[0]|device[9]|device[2]|device[13]|non-qdev-gpio[21]|"
    "non-qdev-gpio[3]|non-qdev-gpio[16]|io[0]|device[3]|device[14]|non-qdev-gpio[22]|non-qdev-gpio[4]|non-qdev-gpio[17]"
)


def _build_unattached(machine: _QomObject) -> _QomObject:
    unattached = machine.child("unattached", "container")
    cpu = unattached.device("device[0]", "qemu64-x86_64-cpu", "family:int|model:int|stepping:int|vendor:string|model-id:string|"
                                                              "apic-id:uint32|node-id:int32|start-powered-off:bool|memory:link<memory-region>")
    cpu.links["memory"] = "/machine/unattached/system[0]"
    lapic = cpu.device("lapic", "apic", "id:uint8|version:uint8|vapic:link<kvmvapic>|timer-period:int", bus="")
    lapic.regions("apic-msi[0]")
    cpu.regions("smram[0]", "memory[0]", "memory[1]")
    unattached.device("device[1]", "kvmvapic").regions("kvmvapic[0]")
    lpc = unattached.device("device[2]", "ICH9-LPC", _PCI_DEVICE_SPEC.split("|", 4)[4] + "|noreboot:bool|smm-compat:bool", bus="/machine/q35/pcie.0")
    lpc.regions(
        "lpc-rcrb-mmio[0]", "acpi-smi[0]", "sm-tco[0]", "acpi-pci-hotplug[0]", "acpi-cpu-hotplug[0]", "ich9-pm[0]", "bus master[0]",
        "bus master container[0]", "acpi-cnt[0]", "acpi-tmr[0]", "lpc-reset-control[0]", "acpi-evt[0]", "apm-io[0]", "acpi-gpe0[0]",
    )
    lpc.child("isa.0", "ISA", _BUS_SPEC, role="bus")
    for name in _indexed("gsi", 24):
        lpc.link(name, "irq")
    for index in (3, 4):
        unattached.device("device[%d]" % index, "i8257", "base:int32|page-base:int32|pageh-base:int32|dshift:int32").regions(
            "dma-chan[0]", "dma-cont[0]", "dma-page[0]", "dma-page[1]")
    for index in (5, 6):
        pic = unattached.device("device[%d]" % index, "isa-i8259", "iobase:uint32|elcr_addr:uint32|elcr_mask:uint8|master:bool")
        pic.irqs(*_indexed("unnamed-gpio-in", 8))
        pic.regions("elcr[0]", "pic[0]")
        pic.link("unnamed-gpio-out[0]", "irq")
    hpet = unattached.device("device[7]", "hpet", "timers:uint8|msi:bool|hpet-intcap:uint32|hpet-offset-saved:bool")
    hpet.irqs("unnamed-gpio-in[0]", "unnamed-gpio-in[1]")
    hpet.regions("hpet[0]")
    for name in _indexed("sysbus-irq", 32) + ["unnamed-gpio-out[0]"]:
        hpet.link(name, "irq")
    rtc = unattached.device("device[8]", "mc146818rtc", "base_year:int32|iobase:uint16|irq:uint8|lost_tick_policy:LostTickPolicy|date:struct tm")
    rtc.regions("rtc-index[0]", "rtc[0]")
    rtc.link("unnamed-gpio-out[0]", "irq")
    pit = unattached.device("device[9]", "isa-pit", "iobase:uint32")
    pit.regions("pit[0]")
    pit.irqs("unnamed-gpio-in[0]")
    pit.link("unnamed-gpio-out[0]", "irq")
    pcspk = unattached.device("device[10]", "isa-pcspk", "audiodev:str|iobase:uint32|migrate:bool")
    pcspk.regions("pcspk[0]")
    pcspk.link("pit", "pit-common", "/machine/unattached/device[9]")
    i8042 = unattached.device("device[11]", "i8042", "extended-state:bool|kbd-throttle:bool")
    i8042.device("ps2kbd", "ps2-kbd", bus="")
    i8042.device("ps2mouse", "ps2-mouse", bus="")
    i8042.regions("i8042-cmd[0]", "i8042-data[0]")
    i8042.irqs("ps2-kbd-input-irq[0]", "ps2-mouse-input-irq[0]")
    for name in ("a20[0]", "unnamed-gpio-out[0]", "unnamed-gpio-out[1]"):
        i8042.link(name, "irq")
    unattached.device("device[12]", "vmport", "vmware-vmx-version:uint32|vmware-vmx-type:uint8|x-read-set-eax:bool").regions("vmport[0]")
    unattached.device("device[13]", "vmmouse", "vmport:link<vmport>")
    port92 = unattached.device("device[14]", "port92")
    port92.regions("port92[0]")
    port92.link("a20[0]", "irq")
    ahci = unattached.device("device[15]", "ich9-ahci", _PCI_DEVICE_SPEC.split("|", 4)[4], bus="/machine/q35/pcie.0")
    for name in _indexed("ide", 6):
        ahci.child(name.replace("[", ".").rstrip("]"), "IDE", _BUS_SPEC, role="bus")
    ahci.regions("ahci[0]", "ahci-idp[0]", "bus master[0]", "bus master container[0]")
    smb = unattached.device("device[16]", "ICH9-SMB", _PCI_DEVICE_SPEC.split("|", 4)[4], bus="/machine/q35/pcie.0")
    smb.child("i2c", "i2c-bus", _BUS_SPEC, role="bus")
    smb.regions("pm-smbus[0]", "bus master[0]", "bus master container[0]")
    for index in range(17, 25):
        unattached.device("device[%d]" % index, "smbus-eeprom", "address:uint8", bus="/machine/unattached/device[16]/i2c")
    sysbus = unattached.child("sysbus", "System", "child[6]:link<ps2-mouse>|child[2]:link<q35-pcihost>|realized:bool|child[0]:link<kvmvapic>|"
                              "child[1]:link<fw_cfg_io>|child[3]:link<ioapic>|hotplug-handler:link<hotplug-handler>|child[4]:link<hpet>|"
                              "child[5]:link<ps2-kbd>", role="bus")
    targets = ("kvmvapic", "/machine/unattached/device[1]"), ("fw_cfg_io", "/machine/fw_cfg"), ("q35-pcihost", "/machine/q35"), \
        ("ioapic", "/machine/q35/ioapic"), ("hpet", "/machine/unattached/device[7]"), ("ps2-kbd", "/machine/unattached/device[11]/ps2kbd"), \
        ("ps2-mouse", "/machine/unattached/device[11]/ps2mouse")
    for index, (typename, target) in enumerate(targets):
        sysbus.link("child[%d]" % index, typename, target)
    unattached.irqs(*_indexed("non-qdev-gpio", 27))
    unattached.regions("ram-below-4g[0]", "system[0]", "pc.bios[0]", "isa-bios[0]", "pc.rom[0]", "ioport80[0]", "ioportF0[0]", "pci[0]", "io[0]")
    order = {name: index for index, name in enumerate(_UNATTACHED_ORDER.split("|"))}
    unattached.props.sort(key=lambda prop: order.get(prop[0], len(order)))
    return unattached


def _build_tree(shape: Tuple[str, str, str, bool, bool, int]) -> _QomObject:
    placement, balloon_id, balloon_type, deep, cyclic, depth = shape
    root = _QomObject("container", "/", "objects:child<container>|machine:child<pc-q35-7.2-machine>|chardevs:child<container>")
    objects = root.child("objects", "container")
    objects.child("pc.ram", "memory-backend-ram", _PC_RAM_SPEC).regions("pc.ram[0]")
    root.child("chardevs", "container").child("compat_monitor0", "chardev-socket", "connected:bool|addr:SocketAddress")
    machine = root.child("machine", "pc-q35-7.2-machine", _MACHINE_SPEC, role="machine")
    machine.links.update({
        "confidential-guest-support": "", "memory-backend": "/objects/pc.ram", "rtc_state": "/machine/unattached/device[8]",
        "smram": "/machine/q35/mch/smram[0]", "acpi-device": "/machine/unattached/device[2]",
    })
    unattached = _build_unattached(machine)
    fw_cfg = machine.device("fw_cfg", "fw_cfg_io", "acpi-mr-restore:bool|x-file-slots:uint16|dma_enabled:bool")
    fw_cfg.regions("\\x2from@etc\\x2facpi\\x2ftables[0]", "fwcfg.dma[0]", "fwcfg[0]", "\\x2from@etc\\x2facpi\\x2frsdp[0]",
                   "\\x2from@etc\\x2ftable-loader[0]")
    anon = machine.child("peripheral-anon", "container")
    peripheral = machine.child("peripheral", "container")
    q35 = _QomObject("q35-pcihost", "/machine/q35", _Q35_SPEC, role="device")
    machine.attach("q35", q35)
    q35.links.update({"parent_bus": "/machine/unattached/sysbus", "pci-mem": "", "system-mem": "/machine/unattached/system[0]",
                      "io-mem": "/machine/unattached/io[0]", "ram-mem": ""})
    ioapic = q35.device("ioapic", "ioapic", "version:uint8|gsi_base:uint32")
    ioapic.irqs(*_indexed("unnamed-gpio-in", 24))
    ioapic.regions("ioapic[0]")
    # QEMU lists the balloon's link (child[4], and child[5] for a second one) right after child[3].
    balloon_links = {"peripheral": 1, "anon": 1, "two": 2}.get(placement, 0)
    pcie = q35.child("pcie.0", "PCIE", "child[2]:link<ich9-ahci>|realized:bool|child[3]:link<ICH9-SMB>|"
                     + "".join("child[%d]:link<%s>|" % (4 + index, balloon_type) for index in range(balloon_links))
                     + "child[0]:link<mch>|hotplug-handler:link<hotplug-handler>|child[1]:link<ICH9-LPC>", role="bus")
    pcie.links.update({"child[0]": "/machine/q35/mch", "child[1]": "/machine/unattached/device[2]", "child[2]": "/machine/unattached/device[15]",
                       "child[3]": "/machine/unattached/device[16]", "hotplug-handler": ""})
    mch = q35.device("mch", "mch", _PCI_DEVICE_SPEC.split("|", 4)[4] + "|smbase-smram:bool|extended-tseg-mbytes:uint16", bus="/machine/q35/pcie.0")
    mch.regions(*(_indexed("pam-pci", 26) + _indexed("pam-ram", 13) + _indexed("pam-rom", 13)))
    mch.regions("smram-region[0]", "smram-low[0]", "smram-high[0]", "smram-open-high[0]", "smram[0]", "tseg-blackhole[0]", "tseg-window[0]",
                "smbase-blackhole[0]", "smbase-window[0]", "bus master container[0]", "bus master[0]")
    q35.regions("pci-conf-data[0]", "pci-conf-idx[0]", "pcie-mmcfg-mmio[0]")

    balloons: List[_QomObject] = []
    if placement in ("peripheral", "two"):
        balloons.append(_build_balloon(peripheral, balloon_id, balloon_type, balloon_id))
        if placement == "two":
            second = _second_balloon_id(balloon_id)
            balloons.append(_build_balloon(peripheral, second, balloon_type, second))
    elif placement == "anon":
        balloons.append(_build_balloon(anon, "device[0]", balloon_type, None))
    for index, balloon in enumerate(balloons):
        pcie.link("child[%d]" % (4 + index), balloon.type, balloon.path)

    if deep:
        node = unattached.child("deep-chain", "container")
        for level in range(1, depth + 1):
            node = node.child("level[%d]" % level, "container")
    if cyclic:
        # Impossible in real QEMU (children form a tree; only links loop, as they do here between
        # pcie.0 and the devices' parent_bus): these child<> properties point back up the tree.
        anon.attach("machine-again", machine)
        unattached.attach("root-again", root)
    return root


_TREE_CACHE: Dict[Tuple[str, str, str, bool, bool, int], _QomObject] = {}
_TREE_LOCK = threading.Lock()


def _tree_for(vm: VMModel) -> _QomObject:
    shape = (vm.balloon, vm.balloon_id, vm.balloon_type, bool(vm.deep_tree), bool(vm.cyclic_links), int(vm.tree_depth))
    with _TREE_LOCK:
        root = _TREE_CACHE.get(shape)
        if root is None:
            root = _TREE_CACHE[shape] = _build_tree(shape)
        return root


def _resolve_abs(root: _QomObject, node: _QomObject, parts: Sequence[str], hops: int = 0) -> Optional[_QomObject]:
    for part in parts:
        if not part:
            continue  # QEMU skips empty components: "//machine" and "/machine/" work
        child = node.children.get(part)
        if child is not None:
            node = child
            continue
        target = node.links.get(part)
        if not target or hops > 16:
            return None
        resolved = _resolve_abs(root, root, target.split("/"), hops + 1)
        if resolved is None:
            return None
        node = resolved
    return node


class _PartialIndex:
    """Every object reachable through child<> properties (each once, cycles included), and for each
    property name the objects that have it: partial paths are resolved without a full walk."""

    def __init__(self, root: _QomObject) -> None:
        self.objects: List[_QomObject] = []
        self.by_name: Dict[str, List[_QomObject]] = {}
        seen: Set[int] = set()
        todo = [root]
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            self.objects.append(node)
            for name in list(node.children) + list(node.links):
                self.by_name.setdefault(name, []).append(node)
            todo.extend(node.children.values())


_INDEX_CACHE: Dict[int, _PartialIndex] = {}


def resolve_path(root: _QomObject, path: str) -> Optional[_QomObject]:
    """Resolve a QOM path like QEMU: absolute if it starts with '/', else a partial path.

    QEMU's object_resolve_partial_path tries the path below every object of the tree and answers
    only if exactly one object matched (so "balloon0" works and an ambiguous "device[0]" does not).
    """
    if path.startswith("/"):
        return _resolve_abs(root, root, path.split("/"))
    parts = path.split("/") if path else []
    with _TREE_LOCK:
        index = _INDEX_CACHE.get(id(root))
        if index is None:
            index = _INDEX_CACHE[id(root)] = _PartialIndex(root)
    first = next((part for part in parts if part), None)
    candidates = index.objects if first is None else index.by_name.get(first, [])
    found: Optional[_QomObject] = None
    for node in candidates:
        match = _resolve_abs(root, node, parts)
        if match is not None:
            if found is not None:
                return None  # ambiguous
            found = match
    return found


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

FaultSpec = Union[None, str, Iterable[str]]


def parse_faults(spec: FaultSpec) -> frozenset:
    """Turn ``None``, ``"delay"``, ``"delay,events"`` or ``["delay", "events"]`` into a set of fault names."""
    if spec is None:
        return frozenset()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = frozenset(item.strip() for item in items if item and item.strip())
    unknown = names - FAULTS
    if unknown:
        raise ValueError("unknown fault(s) %s; known: %s" % (", ".join(sorted(unknown)), ", ".join(sorted(FAULTS))))
    return names


@dataclass
class FaultOptions:
    """Parameters of the conversation faults.

    ``fault_on`` limits the command-level faults (delay, close_mid_reply, huge_reply,
    invalid_json_reply, error_everything, wrong_id, events) to one command name; ``None`` means
    every command after negotiation, ``"*"`` every command including ``qmp_capabilities``.
    """

    delay: float = 5.0
    fault_on: Optional[str] = None
    banner: str = SSH_BANNER
    huge_size: int = QMP_READ_LIMIT + 64 * 1024
    events_per_reply: int = 1
    error_desc: str = "Injected failure (fake QMP error_everything)"


def apply_model_faults(vm: VMModel, faults: Iterable[str]) -> None:
    """Make the VM model show the model-level faults."""
    faults = set(faults)
    if "no_balloon" in faults:
        vm.balloon = "none"
    if "two_balloons" in faults:
        vm.balloon = "two"
    if "deep_tree" in faults:
        vm.deep_tree = True
    if "cyclic_links" in faults:
        vm.cyclic_links = True


# ---------------------------------------------------------------------------------------------
# QMP: input checks, argument schemas, commands
# ---------------------------------------------------------------------------------------------

_ARG_TYPE_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "array": "array"}
# (name, type, required) in QAPI declaration order: QEMU reports the first missing one.
_SCHEMAS: Dict[str, Sequence[Tuple[str, str, bool]]] = {
    "qmp_capabilities": (("enable", "array", False),),
    "query-status": (), "query-name": (), "query-uuid": (), "query-version": (), "query-balloon": (), "query-commands": (),
    "qom-list": (("path", "str", True),),
    "qom-get": (("path", "str", True), ("property", "str", True)),
    "qom-set": (("path", "str", True), ("property", "str", True), ("value", "any", True)),
    "balloon": (("value", "int", True),),
    "stop": (), "cont": (), "quit": (),
}


def _is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _check_type(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return _is_int64(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return True


def _check_arguments(command: str, arguments: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    arguments = arguments or {}
    schema = _SCHEMAS[command]
    for name, kind, required in schema:
        if name not in arguments:
            if required:
                raise _generic("Parameter '%s' is missing" % name)
            continue
        if not _check_type(arguments[name], kind):
            raise _generic("Invalid parameter type for '%s', expected: %s" % (name, _ARG_TYPE_NAMES[kind]))
    known = {entry[0] for entry in schema}
    for name in arguments:
        if name not in known:
            raise _generic("Parameter '%s' is unexpected" % name)
    return arguments


def _check_input(message: Dict[str, Any], oob_enabled: bool) -> Tuple[str, bool, Optional[Dict[str, Any]]]:
    """QEMU's qmp_dispatch_check_obj: returns (command, is_oob, arguments)."""
    for key, value in message.items():
        if key in ("execute", "exec-oob"):
            if key == "exec-oob" and not oob_enabled:
                raise _generic("QMP input member 'exec-oob' is unexpected")
            if not isinstance(value, str):
                raise _generic("QMP input member '%s' must be a string" % key)
        elif key == "arguments":
            if not isinstance(value, dict):
                raise _generic("QMP input member 'arguments' must be an object")
        elif key != "id":
            raise _generic("QMP input member '%s' is unexpected" % key)
    if "execute" in message and "exec-oob" in message:
        raise _generic("QMP input member 'exec-oob' is unexpected")
    if "execute" in message:
        return message["execute"], False, message.get("arguments")
    if "exec-oob" in message:
        return message["exec-oob"], True, message.get("arguments")
    raise _generic("QMP input lacks member 'execute'")


def _event(name: str, data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    now = time.time()
    message: Dict[str, Any] = {"timestamp": {"seconds": int(now), "microseconds": int((now % 1) * 1000000)}, "event": name}
    if data is not None:
        message["data"] = data
    return message


def _encode(message: Any) -> bytes:
    return (json.dumps(message) + "\r\n").encode("utf-8")


def _default_value(ptype: str) -> Any:
    if ptype == "bool":
        return False
    if ptype in ("int", "int32", "uint8", "uint16", "uint32", "uint64", "uint64_t", "size"):
        return 0
    if ptype in ("str", "string"):
        return ""
    if ptype == "OnOffAuto":
        return "auto"
    return {}


class _Reply:
    """What a command produces besides its value."""

    __slots__ = ("before", "after", "quit")

    def __init__(self) -> None:
        self.before: List[Dict[str, Any]] = []
        self.after: List[Dict[str, Any]] = []
        self.quit = False


class _Session:
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


def _next_input(session: _Session) -> Optional[Tuple[str, Any]]:
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


# ---------------------------------------------------------------------------------------------
# One endpoint: a listening socket served one client at a time
# ---------------------------------------------------------------------------------------------

def _check_loopback(host: str) -> None:
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
            _check_loopback(host)
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
        await self._send(conn, _encode(self._greeting()))
        if "close_after_greeting" in faults:
            return False
        loop = asyncio.get_running_loop()
        session = _Session()
        while True:
            data = await loop.sock_recv(conn, 65536)
            if not data:
                return False
            session.buffer += session.decoder.decode(data)
            while True:
                item = _next_input(session)
                if item is None:
                    break
                kind, payload = item
                if kind == "error":
                    self.recorder.add(self.name, None, None, raw=payload)
                    await self._send(conn, _encode({"error": {"class": "GenericError", "desc": payload}}))
                    continue
                outcome = await self._on_message(conn, session, payload)
                if outcome is not None:
                    return outcome

    def _fault_applies(self, command: Optional[str], negotiated: bool) -> bool:
        fault_on = self.options.fault_on
        if fault_on is None:
            return negotiated
        return fault_on in ("*", command)

    async def _on_message(self, conn: socket.socket, session: _Session, message: Any) -> Optional[bool]:
        """Answer one message. Returns None to go on, or the session's result to end it."""
        if not isinstance(message, dict):
            self.recorder.add(self.name, None, None, raw=json.dumps(message)[:200])
            await self._send(conn, _encode({"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}))
            return None
        command = message.get("execute", message.get("exec-oob"))
        extra = {"oob": True} if "exec-oob" in message and "execute" not in message else {}
        self.recorder.add(self.name, command if isinstance(command, str) else None, message.get("arguments"), **extra)
        has_id = "id" in message
        message_id = message.get("id")
        was_negotiated = session.negotiated
        faulty = self._fault_applies(command if isinstance(command, str) else None, was_negotiated)
        faults = self.faults if faulty else frozenset()
        reply = _Reply()
        if "delay" in faults:
            # A busy QEMU main loop: nothing happens until it gets to the command.
            await asyncio.sleep(self.options.delay)
        try:
            if "error_everything" in faults:
                raise _generic(self.options.error_desc)
            value = self._execute(session, message, reply)
            response: Dict[str, Any] = {"return": value}
            if has_id:
                response["id"] = message_id
        except QMPError as error:
            response = {}
            if has_id:
                response["id"] = message_id
            response["error"] = {"class": error.error_class, "desc": error.desc}
            reply = _Reply()
        if "wrong_id" in faults:
            response.pop("id", None)
            wrong = {"id": "wrong-%s" % (message_id if has_id else "id")}
            response = dict(wrong, **response) if "error" in response else dict(response, **wrong)
        out = b""
        if "events" in faults and was_negotiated:
            for _event_index in range(self.options.events_per_reply):
                out += _encode(_event("BALLOON_CHANGE", {"actual": self.vm.balloon_actual}))
        out += b"".join(_encode(event) for event in reply.before)
        if "huge_reply" in faults:
            await self._send(conn, out)
            await self._send_huge(conn, response)
            return None
        if "invalid_json_reply" in faults:
            await self._send(conn, out + INVALID_JSON_REPLY)
            return None
        encoded = _encode(response)
        if "close_mid_reply" in faults:
            await self._send(conn, out + encoded[:max(1, len(encoded) // 2)])
            return False
        out += encoded + b"".join(_encode(event) for event in reply.after)
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
    def _execute(self, session: _Session, message: Dict[str, Any], reply: _Reply) -> Any:
        command, is_oob, arguments = _check_input(message, session.oob)
        if not session.negotiated:
            if command != "qmp_capabilities":
                raise QMPError("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
            if is_oob:
                raise _generic("The command qmp_capabilities does not support OOB")
            arguments = _check_arguments(command, arguments)
            enable = arguments.get("enable", [])
            for item in enable:
                if not isinstance(item, str):
                    raise _generic("Invalid parameter type for 'null', expected: string")
                if item != "oob":
                    raise _generic("Parameter 'null' does not accept value '%s'" % item)
            session.negotiated = True
            session.oob = "oob" in enable
            return {}
        if command not in _SCHEMAS:
            raise QMPError("CommandNotFound", "The command %s has not been found" % command)
        if is_oob:
            raise _generic("The command %s does not support OOB" % command)
        if command == "qmp_capabilities":
            raise QMPError("CommandNotFound", "Capabilities negotiation is already complete, command ignored")
        arguments = _check_arguments(command, arguments)
        handler = getattr(self, "_cmd_" + command.replace("-", "_"))
        with self.vm.lock:
            return handler(arguments, reply)

    def _cmd_query_status(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        return {"status": self.vm.status, "singlestep": False, "running": self.vm.running}

    def _cmd_query_name(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        return {"name": self.vm.name} if self.vm.name is not None else {}

    def _cmd_query_uuid(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        return {"UUID": self.vm.uuid}

    def _cmd_query_version(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        return self._greeting()["QMP"]["version"]

    def _cmd_query_commands(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        return [{"name": name} for name in sorted(_SCHEMAS)]

    def _cmd_query_balloon(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        if not self.vm.has_balloon:
            raise QMPError("DeviceNotActive", "No balloon device has been activated")
        return {"actual": self.vm.balloon_actual}

    def _cmd_balloon(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        if not self.vm.has_balloon:
            raise QMPError("DeviceNotActive", "No balloon device has been activated")
        if arguments["value"] <= 0:
            raise _generic("Parameter 'target' expects a size")
        if self.vm.set_balloon_target(arguments["value"]):
            reply.after.append(_event("BALLOON_CHANGE", {"actual": self.vm.balloon_actual}))
        return {}

    def _cmd_stop(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        if self.vm.running:
            self.vm.set_status("paused")
            reply.before.append(_event("STOP"))
        return {}

    def _cmd_cont(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        if not self.vm.running:
            self.vm.set_status("running")
            reply.before.append(_event("RESUME"))
        return {}

    def _cmd_quit(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        self.vm.set_status("shutdown")
        reply.before.append(_event("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"}))
        reply.quit = True
        return {}

    def _lookup(self, path: str) -> _QomObject:
        node = resolve_path(_tree_for(self.vm), path)
        if node is None:
            raise QMPError("DeviceNotFound", "Device '%s' not found" % path)
        return node

    def _cmd_qom_list(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        node = self._lookup(arguments["path"])
        return [{"name": name, "type": ptype} for name, ptype in node.props]

    def _cmd_qom_get(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        node = self._lookup(arguments["path"])
        prop = arguments["property"]
        ptype = node.prop_types.get(prop)
        if ptype is None:
            raise _generic("Property '%s.%s' not found" % (node.type, prop))
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
        if (node.role, prop) in _UNREADABLE:
            raise _generic("Property '%s.%s' is not readable" % (node.type, prop))
        if node.role == "machine" and prop == "memory":
            return {"size": self.vm.memory}
        known = _KNOWN_VALUES.get(node.role)
        if known is not None and prop in known:
            return known[prop]
        if node.role in ("device", "balloon", "balloon-backend") and prop in _DEFAULT_VALUES:
            return _DEFAULT_VALUES[prop]
        return _default_value(ptype)

    def _cmd_qom_set(self, arguments: Dict[str, Any], reply: _Reply) -> Any:
        node = self._lookup(arguments["path"])
        prop = arguments["property"]
        value = arguments["value"]
        ptype = node.prop_types.get(prop)
        if ptype is None:
            raise _generic("Property '%s.%s' not found" % (node.type, prop))
        is_balloon = node.role in ("balloon", "balloon-backend")
        if is_balloon and prop == "guest-stats-polling-interval":
            if not _is_int64(value):
                raise _generic("Invalid parameter type for 'guest-stats-polling-interval', expected: integer")
            if value < 0:
                raise _generic("timer value must be greater than zero")
            if value > UINT32_MAX:
                raise _generic("timer value is too big")
            self.vm.set_interval(value)
            return {}
        if is_balloon and prop == "guest-stats":
            # The proxy's property is an alias: the backend answers, with its own type name.
            raise _generic("Property 'virtio-balloon-device.guest-stats' is not writable")
        if prop == "type" or ptype.startswith("child<") or ptype.startswith("link<"):
            raise _generic("Property '%s.%s' is not writable" % (node.type, prop))
        if node.role in ("device", "balloon", "balloon-backend") and prop != "realized":
            if node.role == "balloon-backend" or (node.role == "balloon" and prop in _ALIASED_BACKEND_PROPS):
                raise _generic("Attempt to set property '%s' on anonymous device (type 'virtio-balloon-device') after it was realized" % prop)
            if node.device_id:
                raise _generic("Attempt to set property '%s' on device '%s' (type '%s') after it was realized" % (prop, node.device_id, node.type))
            raise _generic("Attempt to set property '%s' on anonymous device (type '%s') after it was realized" % (prop, node.type))
        expected = _SETTABLE_KINDS.get(ptype, "any")
        if not _check_type(value, expected):
            raise _generic("Invalid parameter type for '%s', expected: %s" % (prop, _ARG_TYPE_NAMES.get(expected, expected)))
        if prop != "realized":
            self.vm.qom_values[(node.path, prop)] = value
        return {}


# ---------------------------------------------------------------------------------------------
# Running endpoints: in a background thread (tests) or in the foreground (CLI)
# ---------------------------------------------------------------------------------------------

def raise_nofile_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit if it is below ``needed``; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def _endpoint_names(count: int, prefix: str) -> List[str]:
    width = max(3, len(str(count - 1)))
    return ["%s%0*d" % (prefix, width, index) for index in range(count)]


VMSpec = Union[None, VMModel, Callable[[int, str], VMModel]]


def _make_vm(spec: VMSpec, index: int, name: str) -> VMModel:
    if spec is None:
        return VMModel(name=name, uuid=str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, "fake-qmp:" + name)))
    if isinstance(spec, VMModel):
        if index == 0:
            return spec
        # A copy per endpoint, with its own lock and timer; name and uuid stay as given.
        kwargs = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.init and f.name not in ("lock", "stats", "qom_values")}
        return VMModel(stats=dict(spec.stats), **kwargs)
    return spec(index, name)


class FakeFleet:
    """N fake QMP endpoints served from a background thread. Use as a context manager.

    ``fault`` is a fault spec for every endpoint, or a mapping ``{name: spec}`` for some;
    ``vm`` is None (a default VM per endpoint, named after it), a :class:`VMModel` (the first
    endpoint uses it, the others get copies) or a callable ``(index, name) -> VMModel``.
    Unix sockets are ``<directory>/<name>.qmp``; with ``tcp=True`` each endpoint listens on
    ``host`` (loopback only) at ``port_base + index``, or a free port if ``port_base`` is 0.
    """

    def __init__(self, count: int, directory: Optional[str] = None, *, tcp: bool = False, host: str = "127.0.0.1", port_base: int = 0,
                 prefix: str = "vm", names: Optional[Sequence[str]] = None, vm: VMSpec = None,
                 fault: Union[FaultSpec, Mapping[str, FaultSpec]] = None, options: Optional[FaultOptions] = None,
                 record_path: Optional[str] = None, recorder: Optional[Recorder] = None, backlog: int = 1,
                 start_timeout: float = 60.0) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        if not tcp and directory is None:
            directory = tempfile.mkdtemp(prefix="fakeqmp-")
            self._own_directory = True
        else:
            self._own_directory = False
        self.directory = os.fspath(directory) if directory is not None else None
        if record_path is None:
            record_path = os.environ.get(RECORD_ENV) or None
        self.record = recorder if recorder is not None else Recorder(record_path)
        self._own_recorder = recorder is None
        self.start_timeout = start_timeout
        names = list(names) if names is not None else _endpoint_names(count, prefix)
        if len(names) != count:
            raise ValueError("need exactly %d names" % count)
        self.endpoints: List[Endpoint] = []
        for index, name in enumerate(names):
            endpoint_fault = fault.get(name) if isinstance(fault, Mapping) else fault
            endpoint_vm = _make_vm(vm, index, name)
            if tcp:
                port = port_base + index if port_base else 0
                endpoint = Endpoint(name, endpoint_vm, self.record, host=host, port=port, fault=endpoint_fault,
                                    options=dataclasses.replace(options) if options else None, backlog=backlog)
            else:
                assert self.directory is not None
                endpoint = Endpoint(name, endpoint_vm, self.record, path=os.path.join(self.directory, name + ".qmp"), fault=endpoint_fault,
                                    options=dataclasses.replace(options) if options else None, backlog=backlog)
            self.endpoints.append(endpoint)
        self._by_name = {endpoint.name: endpoint for endpoint in self.endpoints}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.endpoints)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self.endpoints)

    def __getitem__(self, key: Union[int, str]) -> Endpoint:
        if isinstance(key, str):
            return self._by_name[key]
        return self.endpoints[key]

    @property
    def names(self) -> List[str]:
        return [endpoint.name for endpoint in self.endpoints]

    @property
    def paths(self) -> List[Optional[str]]:
        return [endpoint.path for endpoint in self.endpoints]

    @property
    def ports(self) -> List[int]:
        return [endpoint.port for endpoint in self.endpoints]

    @property
    def addresses(self) -> List[Union[str, Tuple[str, int]]]:
        return [endpoint.address for endpoint in self.endpoints]

    @property
    def vms(self) -> List[VMModel]:
        return [endpoint.vm for endpoint in self.endpoints]

    def describe(self) -> List[Dict[str, Any]]:
        return [endpoint.describe() for endpoint in self.endpoints]

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FakeFleet":
        raise_nofile_limit(3 * len(self.endpoints) + 256)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-qmp", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            asyncio.run_coroutine_threadsafe(self._start_all(), self._loop).result(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _start_all(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.start()

    async def _close_all(self) -> None:
        await asyncio.gather(*(endpoint.close() for endpoint in self.endpoints), return_exceptions=True)

    def call(self, function: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``function()`` on the server's loop thread (to change state atomically)."""
        assert self._loop is not None

        async def runner() -> Any:
            return function()
        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(30)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(30)
        for endpoint in self.endpoints:
            endpoint.closed = True
            endpoint._close_sockets()  # pylint: disable=protected-access
        self._thread = None
        self._loop = None
        if self._own_recorder:
            self.record.close()
        if self._own_directory and self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "FakeFleet":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class FakeQMPServer(FakeFleet):
    """One fake QMP endpoint in a background thread; a :class:`FakeFleet` of one.

    ``path`` defaults to ``<new temp dir>/qmp.sock`` (removed on exit); ``tcp=True`` listens on
    ``host:port`` instead (port 0 picks a free one: read it from ``.port`` once started).
    """

    def __init__(self, path: Optional[str] = None, *, tcp: bool = False, host: str = "127.0.0.1", port: int = 0, name: str = "vm000",
                 vm: Optional[VMModel] = None, fault: FaultSpec = None, options: Optional[FaultOptions] = None,
                 record_path: Optional[str] = None, recorder: Optional[Recorder] = None, backlog: int = 1, **option_fields: Any) -> None:
        if option_fields:
            options = dataclasses.replace(options or FaultOptions(), **option_fields)
        directory = None
        own_directory = False
        if not tcp:
            if path is None:
                directory = tempfile.mkdtemp(prefix="fakeqmp-")
                own_directory = True
                path = os.path.join(directory, "qmp.sock")
            else:
                directory = os.path.dirname(os.path.abspath(path))
        super().__init__(1, directory, tcp=tcp, host=host, port_base=port, names=[name], vm=vm,
                         fault=fault, options=options, record_path=record_path, recorder=recorder, backlog=backlog)
        if not tcp:
            self.endpoints[0].path = os.path.abspath(path) if path else None
        self._own_directory = own_directory

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoints[0]

    @property
    def vm(self) -> VMModel:
        return self.endpoints[0].vm

    @property
    def path(self) -> Optional[str]:
        return self.endpoints[0].path

    @property
    def port(self) -> int:
        return self.endpoints[0].port

    @property
    def address(self) -> Union[str, Tuple[str, int]]:
        return self.endpoints[0].address


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve fake QEMU 7.2 QMP monitors (one VM each) until SIGTERM or SIGINT.")
    parser.add_argument("--dir", help="directory for the unix sockets <name>.qmp (default: a new temporary directory)")
    parser.add_argument("--count", type=int, default=1, help="number of endpoints (default 1)")
    parser.add_argument("--prefix", default="vm", help="endpoint name prefix (default vm: vm000, vm001, ...)")
    parser.add_argument("--tcp", action="store_true", help="listen on TCP (loopback) instead of unix sockets")
    parser.add_argument("--host", default="127.0.0.1", help="TCP host, loopback only (default 127.0.0.1)")
    parser.add_argument("--port-base", type=int, default=0, help="TCP port of the first endpoint, the next ones follow (0: free ports)")
    parser.add_argument("--backlog", type=int, default=1, help="listen backlog (QEMU uses 1)")
    parser.add_argument("--fault", action="append", default=[], help="fault for every endpoint (repeatable or comma-separated): "
                        + ", ".join(sorted(FAULTS)))
    parser.add_argument("--fault-at", action="append", default=[], metavar="NAME=FAULT[,FAULT]", help="fault for one endpoint (repeatable)")
    parser.add_argument("--fault-on", help="limit command faults to this command ('*' includes qmp_capabilities)")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds for the delay fault (default 5)")
    parser.add_argument("--banner", default="ssh", help="banner fault text: ssh, http or literal text")
    parser.add_argument("--huge-size", type=int, default=QMP_READ_LIMIT + 64 * 1024, help="bytes of padding for huge_reply")
    parser.add_argument("--events-per-reply", type=int, default=1, help="events sent before each reply with the events fault")
    parser.add_argument("--stats", choices=STATS_MODES, default="never", help="stats mode (default never)")
    parser.add_argument("--interval", type=int, default=0, help="initial guest-stats-polling-interval")
    parser.add_argument("--stalled", action="store_true", help="live mode: the guest stopped answering")
    parser.add_argument("--no-boot-report", action="store_true", help="live mode: no report at driver load")
    parser.add_argument("--extra-stats", action="store_true", help="add the QEMU 9.2 names (stat-oom-kills, ...)")
    parser.add_argument("--unset", choices=("u64", "minus-one"), default="u64", help="how unset stats are sent (minus-one: very old QEMU)")
    parser.add_argument("--no-stats-error", action="store_true", help="old QEMU: GenericError while last-update is 0")
    parser.add_argument("--status", default="running", help="run state: running, paused, prelaunch, ...")
    parser.add_argument("--balloon", choices=BALLOON_PLACEMENTS, default="peripheral", help="balloon placement in the QOM tree")
    parser.add_argument("--balloon-id", default="balloon0")
    parser.add_argument("--balloon-type", default="virtio-balloon-pci")
    parser.add_argument("--memory", type=int, default=1024 * MIB, help="guest RAM in bytes")
    parser.add_argument("--tree-depth", type=int, default=64, help="levels of the deep_tree fault")
    parser.add_argument("--record", help="append received commands as JSONL here (default: $%s)" % RECORD_ENV)
    parser.add_argument("--ready-file", help="also write the ready JSON here (atomically)")
    parser.add_argument("--duration", type=float, default=0, help="stop by itself after this many seconds (0: never)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.count < 1:
        print("--count must be at least 1", file=sys.stderr)
        return 2
    try:
        default_fault = parse_faults(",".join(args.fault))
        per_endpoint: Dict[str, frozenset] = {}
        for item in args.fault_at:
            name, _sep, spec = item.partition("=")
            per_endpoint[name] = parse_faults(spec) | default_fault
        if not args.tcp and args.host != "127.0.0.1":
            raise ValueError("--host only applies with --tcp")
        _check_loopback(args.host)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    options = FaultOptions(delay=args.delay, fault_on=args.fault_on, banner=BANNERS.get(args.banner, args.banner),
                           huge_size=args.huge_size, events_per_reply=args.events_per_reply)

    def make_vm(index: int, name: str) -> VMModel:
        return VMModel(name=name, uuid=str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, "fake-qmp:" + name)), status=args.status,
                       memory=args.memory, balloon=args.balloon, balloon_id=args.balloon_id, balloon_type=args.balloon_type,
                       stats_mode=args.stats, interval=args.interval, stalled=args.stalled, boot_report=not args.no_boot_report,
                       extra_stats=args.extra_stats, unset_value=-1 if args.unset == "minus-one" else U64_UNSET,
                       no_stats_error=args.no_stats_error, tree_depth=args.tree_depth)

    return asyncio.run(_serve_cli(args, options, default_fault, per_endpoint, make_vm))


async def _serve_cli(args: argparse.Namespace, options: FaultOptions, default_fault: frozenset, per_endpoint: Dict[str, frozenset],
                     make_vm: Callable[[int, str], VMModel]) -> int:
    loop = asyncio.get_running_loop()
    own_directory = False
    directory = args.dir
    if not args.tcp:
        if directory is None:
            directory = tempfile.mkdtemp(prefix="fakeqmp-")
            own_directory = True
        os.makedirs(directory, exist_ok=True)
    raise_nofile_limit(2 * args.count + 256)
    recorder = Recorder(args.record or os.environ.get(RECORD_ENV) or None)
    endpoints: List[Endpoint] = []
    for index, name in enumerate(_endpoint_names(args.count, args.prefix)):
        fault = per_endpoint.get(name, default_fault)
        opts = dataclasses.replace(options)
        if args.tcp:
            endpoints.append(Endpoint(name, make_vm(index, name), recorder, host=args.host, port=args.port_base + index if args.port_base else 0,
                                      fault=fault, options=opts, backlog=args.backlog))
        else:
            endpoints.append(Endpoint(name, make_vm(index, name), recorder, path=os.path.join(directory, name + ".qmp"), fault=fault,
                                      options=opts, backlog=args.backlog))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    status = 0
    try:
        for endpoint in endpoints:
            await endpoint.start()
        ready = {"ready": True, "pid": os.getpid(), "dir": directory, "tcp": bool(args.tcp), "record": recorder.path,
                 "endpoints": [endpoint.describe() for endpoint in endpoints]}
        line = json.dumps(ready)
        if args.ready_file:
            temporary = args.ready_file + ".tmp"
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(line + "\n")
            os.replace(temporary, args.ready_file)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if args.duration > 0:
            try:
                await asyncio.wait_for(stop.wait(), args.duration)
            except asyncio.TimeoutError:
                pass
        else:
            await stop.wait()
    except OSError as exc:
        print("fake_qmp: %s" % exc, file=sys.stderr)
        status = 1
    finally:
        await asyncio.gather(*(endpoint.close() for endpoint in endpoints), return_exceptions=True)
        for endpoint in endpoints:
            endpoint._close_sockets()  # pylint: disable=protected-access
        recorder.close()
        if args.ready_file:
            try:
                os.unlink(args.ready_file)
            except FileNotFoundError:
                pass
        if own_directory:
            shutil.rmtree(directory, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
