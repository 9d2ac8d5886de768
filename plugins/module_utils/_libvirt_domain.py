# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A libvirt domain's balloon, as the operations see it: libvirt's answers in QEMU's words.

PRIVATE: not part of the collection's public API.

:class:`LibvirtVM` is the libvirt side of the seam (``_operations.BalloonVM``). libvirt
renames QEMU's stats and gives memory in KiB; :func:`qemu_guest_stats` converts its answer
back to QEMU's ``guest-stats`` shape, so ``_stats`` decides names, unset values and health
for both transports. The period comes from the domain XML (``<memballoon><stats period>``,
absent = 0), the only place libvirt exposes it.
"""

from __future__ import annotations

from xml.etree import ElementTree

from ansible_collections.qmp.balloon.plugins.module_utils._errors import NoBalloonDevice, VMShutOff
from ansible_collections.qmp.balloon.plugins.module_utils._libvirt import AFFECT_CONFIG, AFFECT_LIVE, XML_INACTIVE
from ansible_collections.qmp.balloon.plugins.module_utils._operations import BalloonVM

#: libvirt's name of a balloon stat -> (QEMU's guest-stats name, factor to QEMU's unit).
#: libvirt renames QEMU's stats and divides bytes by 1024 (KiB); counts stay counts.
STAT_NAMES = (
    ('swap_in', 'stat-swap-in', 1024),
    ('swap_out', 'stat-swap-out', 1024),
    ('major_fault', 'stat-major-faults', 1),
    ('minor_fault', 'stat-minor-faults', 1),
    ('unused', 'stat-free-memory', 1024),
    ('available', 'stat-total-memory', 1024),
    ('usable', 'stat-available-memory', 1024),
    ('disk_caches', 'stat-disk-caches', 1024),
    ('hugetlb_pgalloc', 'stat-htlb-pgalloc', 1),
    ('hugetlb_pgfail', 'stat-htlb-pgfail', 1),
)

#: virDomainState -> vm_status. libvirt's own words (virsh says "shut off", "in shutdown").
STATE_NAMES = {
    0: 'nostate',
    1: 'running',
    2: 'blocked',
    3: 'paused',
    4: 'shutdown',
    5: 'shutoff',
    6: 'crashed',
    7: 'pmsuspended',
}
_STATE_RUNNING = (1, 2)
_STATE_SHUTOFF = 5


def balloon_from_xml(xml_text):
    """``(model, period)`` of the domain's ``<memballoon>``; model None when the XML has none.

    libvirt writes ``<stats period='N'/>`` only while the period is not 0.
    """
    root = ElementTree.fromstring(xml_text)
    balloon = root.find('./devices/memballoon')
    if balloon is None:
        return None, 0
    stats = balloon.find('stats')
    period = stats.get('period') if stats is not None else None
    return balloon.get('model'), int(period) if period else 0


def has_balloon(model):
    return model is not None and model != 'none'


def memory_stats_from_record(record):
    """A getAllDomainStats record (``balloon.*``) in memoryStats()' names, or None when it holds no guest data.

    libvirt puts ``balloon.rss`` (and the guest's stats) in the record only when it could
    ask QEMU; with NOWAIT a domain busy with another job has only current/maximum.
    """
    if not record or 'balloon.rss' not in record:
        return None
    stats = {}
    for key, value in record.items():
        if not key.startswith('balloon.'):
            continue
        name = key[len('balloon.'):]
        if name == 'current':
            name = 'actual'
        elif name == 'last-update':
            name = 'last_update'
        elif name == 'maximum':
            continue
        stats[name] = value
    return stats


def qemu_guest_stats(memory_stats):
    """memoryStats() (KiB, libvirt names) -> QEMU's guest-stats shape (bytes, ``stat-*``).

    libvirt drops the stats the guest did not set; they come back as None (unset),
    so _stats normalises both transports the same way.
    """
    stats = {}
    for libvirt_name, qemu_name, factor in STAT_NAMES:
        value = memory_stats.get(libvirt_name)
        stats[qemu_name] = None if value is None else value * factor
    return {'stats': stats, 'last-update': memory_stats.get('last_update') or 0}


def _kib_to_bytes(value):
    return None if value is None else value * 1024


def _no_balloon(where='this domain'):
    return NoBalloonDevice("%s has no balloon device (memballoon model='none'): libvirt reads guest memory "
                           "statistics only through one; give the domain a memballoon of model='virtio' and restart it"
                           % where)


class LibvirtVM(BalloonVM):
    """One domain of the batch: its virDomain, what the batch call already read, and the session.

    The methods block (libvirt-python cannot do otherwise); the libvirt executor runs each
    domain in its own thread. ``uuid`` and ``name`` are local accessors of libvirt-python
    (no call to libvirtd); :meth:`open` reads the state, from the batch call when it had it.
    """

    READ_BACK = 'libvirt accepted the stats period %s but the live domain reads back %r'
    CONFIG_READ_BACK = 'libvirt accepted the stats period %s but the configuration reads back %r'

    def __init__(self, session, domain, record=None):
        self.session = session
        self.domain = domain
        self.record = record
        self.uuid = self._call('UUIDString')
        self.name = self._call('name')
        self.state = None
        self._memory = {}

    def _call(self, method, *arguments):
        return self.session.call(self.domain, method, *arguments)

    def open(self):
        if self.record and 'state.state' in self.record:
            self.state = self.record['state.state']
        else:
            self.state = self._call('state')[0]
        self.live = self.state != _STATE_SHUTOFF

    def _require_live(self):
        if not self.live:
            raise VMShutOff('it has no live statistics; start it (virsh start)')

    async def read_interval(self):
        """The live period, from the live XML; raises NoBalloonDevice without a balloon."""
        self._require_live()
        model, period = balloon_from_xml(self._call('XMLDesc', 0))
        if not has_balloon(model):
            raise _no_balloon()
        return period

    async def read_stats(self):
        """memoryStats() (from the batch call when it had them), in QEMU's shape."""
        self._require_live()
        memory = memory_stats_from_record(self.record)
        if memory is None:
            memory = self._call('memoryStats')
        self._memory = memory
        return qemu_guest_stats(memory)

    async def read_state(self):
        return {'status': STATE_NAMES.get(self.state, 'unknown'), 'running': self.state in _STATE_RUNNING}

    async def write_interval(self, interval, live=True, config=False):
        self._call('setMemoryStatsPeriod', interval, (AFFECT_LIVE if live else 0) | (AFFECT_CONFIG if config else 0))

    async def has_config(self):
        return self._call('isPersistent') == 1

    async def read_config_interval(self):
        model, period = balloon_from_xml(self._call('XMLDesc', XML_INACTIVE))
        if not has_balloon(model):
            raise _no_balloon('its configuration')
        return period

    def info_extras(self):
        """The balloon's size and the QEMU process's RSS, which libvirt adds to the guest's stats (bytes)."""
        return {'actual': _kib_to_bytes(self._memory.get('actual')), 'rss': _kib_to_bytes(self._memory.get('rss'))}
