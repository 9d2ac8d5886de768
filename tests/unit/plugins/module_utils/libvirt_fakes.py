# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake libvirt-python for the unit tests of the libvirt transport.

It models what libvirt 9.0 was measured to do (tests/integration/targets/libvirt_transport runs
the real one): memoryStats() in KiB with libvirt's names and unset stats dropped, getAllDomainStats
records (``balloon.*``, ``state.*``), the live and inactive XML with ``<stats period/>`` only while
the period is not 0, setMemoryStatsPeriod's LIVE/CONFIG rules and errors, and a connection that
breaks when libvirtd dies. Every call is recorded, so tests can prove what was (not) called.
"""

from __future__ import annotations

import threading
import types

from ansible_collections.qmp.balloon.plugins.module_utils import _libvirt, _operations

NOW = 1795794731
UUIDS = ['4216a76a-24d1-42b2-a57e-f8fd0a04df%02d' % index for index in range(100)]

#: A guest that reported everything (libvirt units: KiB, counts).
FULL_STATS = {
    'swap_in': 0, 'swap_out': 4, 'major_fault': 2, 'minor_fault': 887, 'unused': 67696, 'available': 94920,
    'usable': 73256, 'disk_caches': 2252, 'hugetlb_pgalloc': 0, 'hugetlb_pgfail': 0,
}

ERR_INTERNAL = 1
ERR_SYSTEM = 38
ERR_OPERATION_INVALID = 55
FROM_QEMU = 10
FROM_DOMAIN = 20


class LibvirtError(Exception):
    """libvirt.libvirtError: message, code, domain."""

    def __init__(self, message, code=ERR_INTERNAL, domain=FROM_QEMU):
        super().__init__(message)
        self.message, self.code, self.domain = message, code, domain

    def get_error_message(self):
        return self.message

    def get_error_code(self):
        return self.code

    def get_error_domain(self):
        return self.domain


class Domain(object):
    """One libvirt domain. ``stats`` is memoryStats() without actual/rss/last_update; None = never reported."""

    def __init__(self, hypervisor, name, uuid, state=1, persistent=False, balloon='virtio', live_period=0,
                 config_period=None, stats=None, last_update=NOW - 2, memory_kib=131072, rss_kib=224564):
        self.hypervisor = hypervisor
        self._name = name
        self.uuid = uuid
        self.state_code = state
        self.persistent = persistent
        self.balloon = balloon
        self.live_period = live_period
        self.config_period = live_period if config_period is None else config_period
        self.stats = stats
        self.last_update = last_update if stats is not None else 0
        self.memory_kib = memory_kib
        self.rss_kib = rss_kib
        self.hang = None        # a threading.Event: memoryStats/XMLDesc wait on it
        self.busy_job = False   # getAllDomainStats with NOWAIT leaves out its guest stats
        self.period_writes = []

    @property
    def active(self):
        return self.state_code != 5

    def _record(self, method, *arguments):
        self.hypervisor.record(self._name, method, arguments)
        if self.hang is not None and method in ('memoryStats', 'XMLDesc'):
            self.hang.wait(30)

    # -- local accessors (no RPC in libvirt-python either)
    def name(self):
        self.hypervisor.record(self._name, 'name', ())
        return self._name

    def UUIDString(self):  # pylint: disable=invalid-name
        self.hypervisor.record(self._name, 'UUIDString', ())
        return self.uuid

    # -- RPCs
    def state(self):
        self._record('state')
        return [self.state_code, 1]

    def isPersistent(self):  # pylint: disable=invalid-name
        self._record('isPersistent')
        return 1 if self.persistent else 0

    def XMLDesc(self, flags=0):  # pylint: disable=invalid-name
        self._record('XMLDesc', flags)
        inactive = bool(flags & _libvirt.XML_INACTIVE) or not self.active
        period = self.config_period if inactive else self.live_period
        if self.balloon is None:
            devices = ''
        elif self.balloon == 'none':
            devices = "<memballoon model='none'/>"
        else:
            stats = "<stats period='%d'/>" % period if period else ''
            devices = "<memballoon model='%s'>%s<alias name='balloon0'/></memballoon>" % (self.balloon, stats)
        return "<domain type='qemu'><name>%s</name><uuid>%s</uuid><devices>%s</devices></domain>" % (
            self._name, self.uuid, devices)

    def memoryStats(self):  # pylint: disable=invalid-name
        self._record('memoryStats')
        if not self.active:
            raise LibvirtError('Requested operation is not valid: domain is not running', ERR_OPERATION_INVALID, FROM_DOMAIN)
        return self._memory_stats()

    def _memory_stats(self):
        if self.balloon in (None, 'none'):
            return {'rss': self.rss_kib}
        stats = {'actual': self.memory_kib}
        stats.update(self.stats or {})
        stats['last_update'] = self.last_update
        stats['rss'] = self.rss_kib
        return stats

    def setMemoryStatsPeriod(self, period, flags=0):  # pylint: disable=invalid-name
        self._record('setMemoryStatsPeriod', period, flags)
        live = bool(flags & _libvirt.AFFECT_LIVE) or (flags == 0 and self.active)
        config = bool(flags & _libvirt.AFFECT_CONFIG) or (flags == 0 and not self.active)
        if live and not self.active:
            raise LibvirtError('Requested operation is not valid: domain is not running', ERR_OPERATION_INVALID, FROM_DOMAIN)
        if config and not self.persistent:
            raise LibvirtError('Requested operation is not valid: transient domains do not have any persistent config',
                               ERR_OPERATION_INVALID, FROM_DOMAIN)
        if self.balloon in (None, 'none'):
            raise LibvirtError('internal error: No memory balloon device configured, can not set the collection period')
        self.period_writes.append((period, flags))
        if live:
            # QEMU's rule: 0 -> N arms a new timer that fires at once, and a guest that can answer does.
            if self.live_period == 0 and period > 0 and self.stats is not None:
                self.last_update = NOW
            self.live_period = period
        if config:
            self.config_period = period

    def stats_record(self, groups, nowait):
        record = {}
        if groups & _libvirt.STATS_STATE:
            record.update({'state.state': self.state_code, 'state.reason': 1})
        if groups & _libvirt.STATS_BALLOON:
            record.update({'balloon.current': self.memory_kib, 'balloon.maximum': self.memory_kib})
            if self.active and not (nowait and self.busy_job):
                for key, value in self._memory_stats().items():
                    key = {'actual': None, 'last_update': 'last-update'}.get(key, key)
                    if key:
                        record['balloon.' + key] = value
        return record

    # -- what the collection must never call
    def qemuMonitorCommand(self, *arguments):  # pylint: disable=invalid-name
        self._record('qemuMonitorCommand', *arguments)
        raise AssertionError('qemuMonitorCommand taints the domain and must never be called')


class Hypervisor(object):
    """A libvirtd with domains; also the virConnect object the fake libvirt.open() returns."""

    def __init__(self, uri='qemu:///system'):
        self.uri = uri
        self.domains = []
        self.calls = []
        self.broken = False     # libvirtd died: every call fails like a closed socket
        self.unreachable = None  # open() fails with this message
        self.open_hang = None   # open() waits on this Event
        self.break_after = None  # break the connection after this many domain RPCs
        self._lock = threading.Lock()

    def add(self, name, **kwargs):
        domain = Domain(self, name, kwargs.pop('uuid', UUIDS[len(self.domains)]), **kwargs)
        self.domains.append(domain)
        return domain

    def record(self, who, method, arguments):
        with self._lock:
            self.calls.append((who, method, arguments))
            rpcs = sum(1 for call in self.calls if call[1] not in ('name', 'UUIDString', 'open', 'openReadOnly'))
        if self.break_after is not None and rpcs > self.break_after:
            self.broken = True
        if self.broken and method not in ('name', 'UUIDString', 'close'):
            raise LibvirtError('Cannot write data: Broken pipe', ERR_SYSTEM, _libvirt.FROM_RPC)

    def methods(self, who=None):
        return [call[1] for call in self.calls if who is None or call[0] == who]

    # -- virConnect
    def lookupByName(self, name):  # pylint: disable=invalid-name
        self.record('conn', 'lookupByName', (name,))
        for domain in self.domains:
            if domain._name == name:  # pylint: disable=protected-access
                return domain
        raise LibvirtError("Domain not found: no domain with matching name '%s'" % name, _libvirt.ERR_NO_DOMAIN)

    def lookupByUUIDString(self, uuid):  # pylint: disable=invalid-name
        self.record('conn', 'lookupByUUIDString', (uuid,))
        for domain in self.domains:
            if domain.uuid == uuid.lower():
                return domain
        raise LibvirtError("Domain not found: no domain with matching uuid '%s'" % uuid, _libvirt.ERR_NO_DOMAIN)

    def getAllDomainStats(self, groups, flags=0):  # pylint: disable=invalid-name
        self.record('conn', 'getAllDomainStats', (groups, flags))
        chosen = [domain for domain in self.domains if domain.active or not flags & _libvirt.GET_STATS_ACTIVE]
        return [(domain, domain.stats_record(groups, flags & _libvirt.GET_STATS_NOWAIT)) for domain in chosen]

    def domainListGetStats(self, domains, groups, flags=0):  # pylint: disable=invalid-name
        self.record('conn', 'domainListGetStats', (len(domains), groups, flags))
        return [(domain, domain.stats_record(groups, flags & _libvirt.GET_STATS_NOWAIT)) for domain in domains]

    def close(self):
        self.record('conn', 'close', ())
        return 0


def fake_module(hypervisor):
    """A stand-in for the ``libvirt`` module whose open() connects to ``hypervisor``."""

    def connect(method):
        def opener(uri):
            hypervisor.record('libvirt', method, (uri,))
            if hypervisor.open_hang is not None:
                hypervisor.open_hang.wait(30)
            if hypervisor.unreachable:
                raise LibvirtError(hypervisor.unreachable, ERR_SYSTEM, _libvirt.FROM_RPC)
            hypervisor.uri = uri
            return hypervisor
        return opener

    return types.SimpleNamespace(
        open=connect('open'),
        openReadOnly=connect('openReadOnly'),
        registerErrorHandler=lambda handler, context: None,
        libvirtError=LibvirtError,
    )


def install(monkeypatch, hypervisor, now=NOW):
    """Make _libvirt use the fake libvirt connected to ``hypervisor``, and the operations a frozen wall clock."""
    monkeypatch.setattr(_libvirt, 'libvirt', fake_module(hypervisor))
    monkeypatch.setattr(_libvirt, 'HAS_LIBVIRT', True)
    monkeypatch.setattr(_operations, 'time', types.SimpleNamespace(time=lambda: now))
