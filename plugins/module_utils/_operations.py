# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The per-VM operations, written once for every transport.

PRIVATE: not part of the collection's public API.

An executor (``_qmp_executor``, ``_libvirt_executor``) opens each VM and hands the
operation a :class:`BalloonVM`, the seam between the two: read the interval, the stats
and the run state, write the interval. The operations decide; the executors talk.

- :class:`InfoOperation` (balloon_stats_info): three reads, then ``_stats`` describes them.
- :class:`PollingOperation` (balloon_stats_polling): read, :func:`plan_interval` (the
  change / re-arm decision, a pure function), write, read back. :func:`polling_diff`
  builds the diff of its results.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.qmp.balloon.plugins.module_utils import _stats
from ansible_collections.qmp.balloon.plugins.module_utils._errors import BalloonError, NoBalloonDevice, VMShutOff

REARM_NEVER = 'never'
REARM_STALE = 'stale'
REARM_ALWAYS = 'always'
REARM_CHOICES = (REARM_NEVER, REARM_STALE, REARM_ALWAYS)

#: The largest interval QEMU accepts (u32 seconds).
MAX_INTERVAL = 4294967295


# ---------------------------------------------------------------------------------------------
# Section: the seam
# ---------------------------------------------------------------------------------------------

class BalloonVM(object):
    """One VM's balloon, as the operations see it whatever the transport.

    An executor opens it (QMP: a session and the balloon's verified QOM path; libvirt: a
    domain and its state) and ends it after the operation. The methods are coroutines: the
    QMP VM awaits its session; the libvirt VM blocks and never suspends, so its executor runs
    the operation without an event loop. Every method raises only :class:`BalloonError`
    subclasses, whose ``str()`` is the sentence the user sees.
    """

    #: False for a shut-off libvirt domain: no live interval, stats or state. A QEMU process is always live.
    live = True
    #: The name the transport knows the VM by, for warnings (libvirt: the domain's name).
    name = None
    #: QEMU's version as the transport knows it (QMP: from the greeting, ``7.2.0``), else None.
    qemu_version = None
    #: What the transport says when a written interval does not read back: ``% (written, read)``.
    READ_BACK = '%s was written but %r reads back'
    #: The same for the persistent configuration (libvirt only).
    CONFIG_READ_BACK = READ_BACK

    async def read_interval(self):
        """The live polling interval in seconds (0: polling disabled)."""
        raise NotImplementedError

    async def read_stats(self):
        """The guest's statistics in QEMU's ``guest-stats`` shape (``stats``, ``last-update``), or None when never reported."""
        raise NotImplementedError

    async def read_state(self):
        """The run state: ``{'status': str, 'running': bool}``."""
        raise NotImplementedError

    async def write_interval(self, interval, live=True, config=False):
        """Write ``interval`` to the live VM and/or (libvirt) its persistent configuration."""
        raise NotImplementedError

    async def together(self, *reads):
        """Await several reads; their results in order, the first error in argument order raised.

        One after the other here; the QMP VM sends them at once on its session (pipelined).
        """
        results = []
        pending = list(reads)
        try:
            while pending:
                results.append(await pending.pop(0))
        finally:
            for read in pending:
                read.close()  # never started: no "coroutine was never awaited" warning
        return results

    async def has_config(self):
        """Whether the VM has a persistent configuration to write (a defined libvirt domain)."""
        return False

    async def read_driver(self):
        """What the device knows of the guest's balloon driver: ``{'loaded': bool, 'stats_negotiated': bool}``, or None.

        None means unknown (the transport cannot ask, or QEMU lacks or refused the question):
        never an error.
        """
        return None

    async def read_config_interval(self):
        """The interval in the persistent configuration; only asked when :meth:`has_config` is true."""
        raise NotImplementedError

    def info_extras(self):
        """Fields the transport adds to balloon_stats_info's result after :meth:`read_stats` (libvirt: actual, rss)."""
        return {}


class Operation(object):
    """One module's work on one VM: ``await operation(vm)`` returns the fields of the VM's result.

    A VM without a balloon device is a state, not a failure: :meth:`without_balloon` gives
    its fields (the QMP executor calls it when discovery finds no device; the operations
    when libvirt's XML has none), unless ``require_balloon``.
    """

    #: The operation only reads (libvirt opens a read-only connection).
    read_only = False
    #: The operation may read every VM's stats (libvirt then reads them for all domains in its one batch call).
    reads_stats = False
    #: A VM without a balloon device fails (require_balloon: true) instead of being reported as such.
    require_balloon = False

    async def __call__(self, vm):
        try:
            return await self.run(vm)
        except NoBalloonDevice as exc:
            return self.without_balloon(exc, vm.qemu_version)

    async def run(self, vm):
        raise NotImplementedError

    def without_balloon(self, error, qemu_version=None):
        """The fields of a VM that has no balloon device; raises ``error`` when a balloon is required."""
        if self.require_balloon:
            raise error
        return self.no_balloon_fields(error, qemu_version)

    def no_balloon_fields(self, error, qemu_version):
        raise error

    def warnings(self):
        """Warnings for the task, after the batch."""
        return []


# ---------------------------------------------------------------------------------------------
# Section: balloon_stats_info
# ---------------------------------------------------------------------------------------------

class InfoOperation(Operation):
    """The per-VM fields of balloon_stats_info. Reads only, sent together.

    A VM whose health is not ``ok`` is diagnosed: the device's view of the guest driver
    (:meth:`BalloonVM.read_driver`, one more read) refines the health, and ``advice`` says
    what to do.
    """

    read_only = True
    reads_stats = True

    def __init__(self, require_balloon=False):
        self.require_balloon = require_balloon

    async def run(self, vm):
        guest_stats, interval, status = await vm.together(vm.read_stats(), vm.read_interval(), vm.read_state())
        fields = _stats.describe_stats(guest_stats, interval, status, time.time())
        if fields['health'] != _stats.HEALTH_OK:
            fields.update(_stats.diagnose(fields, status, await vm.read_driver()))
        fields.update(vm.info_extras())
        fields['qemu_version'] = vm.qemu_version
        return fields

    def no_balloon_fields(self, error, qemu_version):
        return {'health': _stats.HEALTH_NO_BALLOON, 'advice': str(error), 'qemu_version': qemu_version}


# ---------------------------------------------------------------------------------------------
# Section: balloon_stats_polling
# ---------------------------------------------------------------------------------------------

def looks_at_age(previous, wanted, rearm):
    """Whether :func:`plan_interval` needs the age of the guest's data and the run state."""
    return previous == wanted and wanted > 0 and rearm == REARM_STALE


def plan_interval(previous, wanted, rearm, age=None, running=False):
    """``(write, rearm)`` for a VM whose live interval is ``previous`` and should be ``wanted``.

    ``write``: the interval must be written. ``rearm``: write 0 first, which makes QEMU start
    a new timer that fires at once (writing the value it already has does nothing). A change
    of value reschedules the timer by itself, so it is never a re-arm. ``rearm=stale``
    re-arms only a running VM whose guest answered once and is older than
    ``_stats.STALE_FACTOR`` intervals: a guest that never answered (no driver) would be
    re-armed on every run, and a paused VM's timer is idle, not stalled. ``age`` and
    ``running`` matter only when :func:`looks_at_age` says so.
    """
    if previous != wanted:
        return True, False
    if wanted == 0 or rearm == REARM_NEVER:
        return False, False
    if rearm == REARM_ALWAYS:
        return True, True
    stalled = _stats.is_stale(age, wanted) and bool(running)
    return stalled, stalled


class PollingOperation(Operation):
    """Set the polling interval when it differs; re-arm a stalled timer when asked.

    With ``persistent`` (libvirt only), the interval in the domain's configuration too: a
    shut-off domain gets only its configuration, a transient one only its live interval
    (listed in one warning). Idempotence and check mode look at both values.
    """

    def __init__(self, interval, rearm=REARM_NEVER, persistent=False, check_mode=False, require_balloon=False):
        self.interval = interval
        self.require_balloon = require_balloon
        self.rearm = rearm
        self.persistent = persistent
        self.check_mode = check_mode
        # The guests' last updates are needed only to tell stale ones.
        self.reads_stats = rearm == REARM_STALE
        self.transient = []
        self._lock = threading.Lock()  # the libvirt executor runs VMs in threads

    def warnings(self):
        """A transient domain has no configuration: persistent is ignored for it, and said so once."""
        if not self.transient:
            return []
        return ['persistent: true: %s %s transient (no configuration to write): only the live stats period was set'
                % (', '.join(sorted(self.transient)), 'is' if len(self.transient) == 1 else 'are')]

    def no_balloon_fields(self, error, qemu_version):
        return {'skipped': True, 'skip_reason': str(error), 'changed': False, 'rearmed': False,
                'previous_interval': None, 'interval': None}

    async def run(self, vm):
        wanted = self.interval
        with_config = self.persistent and await vm.has_config()
        if not vm.live and not with_config:
            # (A shut-off domain is always defined: a transient one vanishes when it stops.)
            raise VMShutOff('its live stats period can only be set while it runs; '
                            'set persistent: true to write only its configuration')
        result = {'previous_interval': None, 'interval': None, 'changed': False, 'rearmed': False}
        write = rearm = write_config = False
        if vm.live:
            previous = await vm.read_interval()
            result.update(previous_interval=previous, interval=previous)
            age = running = None
            if looks_at_age(previous, wanted, self.rearm):
                guest_stats, status = await vm.together(vm.read_stats(), vm.read_state())
                age = _stats.data_age((guest_stats or {}).get('last-update') or 0, time.time())
                result['age'] = age
                running = status.get('running')
            write, rearm = plan_interval(previous, wanted, self.rearm, age, running)
            if rearm and self.rearm == REARM_STALE:
                # A new timer cannot bring back stats from a guest without an active driver (never
                # loaded, unloaded, or reset by a suspend): re-arming it would report changed on
                # every run for nothing. Unknown (None) keeps the re-arm.
                driver = await vm.read_driver()
                if driver is not None and not driver.get('loaded'):
                    write = rearm = False
                    result['rearm_skipped'] = ("the guest's balloon driver is not active (QEMU reports no DRIVER_OK): "
                                               'a new timer cannot bring its stats back')
        if self.persistent:
            result.update(config_previous_interval=None, config_interval=None)
            if with_config:
                config_previous = await vm.read_config_interval()
                result.update(config_previous_interval=config_previous, config_interval=config_previous)
                write_config = config_previous != wanted
            else:
                with self._lock:
                    self.transient.append(vm.name)
        if not (write or write_config):
            return result
        result.update(changed=True, rearmed=rearm)
        if write:
            result['interval'] = wanted
        if write_config:
            result['config_interval'] = wanted
        if self.check_mode:
            return result
        if rearm:
            await vm.write_interval(0)
        await vm.write_interval(wanted, live=write, config=write_config)
        if write:
            await self._read_back(vm.read_interval(), vm.READ_BACK)
        if write_config:
            await self._read_back(vm.read_config_interval(), vm.CONFIG_READ_BACK)
        return result

    async def _read_back(self, read, sentence):
        now = await read
        if now != self.interval:
            raise BalloonError(sentence % (self.interval, now))


def polling_diff(results, words, persistent=False):
    """The diff of balloon_stats_polling: for each VM handled, its live (and with ``persistent``, configured) interval.

    ``words`` are the executor's (:class:`DiffWords`): what the transport calls the interval.
    """
    diff = []
    for result in results:
        if result.get('failed') or result.get('skipped'):
            continue
        before = ['%s: %s' % (words.live, _or_none(result['previous_interval']))]
        after = ['%s: %s%s' % (words.live, _or_none(result['interval']), ' (re-armed)' if result['rearmed'] else '')]
        if persistent:
            before.append('%s: %s' % (words.config, _or_none(result.get('config_previous_interval'))))
            after.append('%s: %s' % (words.config, _or_none(result.get('config_interval'))))
        header = '%s %s' % (result['name'], words.header)
        diff.append(dict(before_header=header, after_header=header, before='\n'.join(before) + '\n', after='\n'.join(after) + '\n'))
    return diff


class DiffWords(object):
    """What a transport calls the polling interval in a diff: the header after the VM's name, the live and config lines."""

    def __init__(self, header, live, config=None):
        self.header = header
        self.live = live
        self.config = config


def _or_none(value):
    return 'none' if value is None else value
