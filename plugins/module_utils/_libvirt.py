# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""libvirt transport of qmp.balloon.

PRIVATE: this module is not part of the collection's public API. Users and
other collections must not import it; it may change in any release.

libvirt holds the QMP monitor of each of its domains for the domain's whole
life, so the QMP transport cannot reach them. This one asks libvirtd through
libvirt-python, with the calls libvirt offers for the balloon:
``virDomainSetMemoryStatsPeriod`` (LIVE, CONFIG), ``virConnectGetAllDomainStats``
/ ``virDomainListGetStats`` with the balloon group (one call for many
domains), ``virDomainMemoryStats``, and the domain XML for the period
(``<memballoon><stats period=.../>``). Every libvirt call of the collection
goes through :class:`LibvirtSession` and is checked against
:data:`ALLOWED_CALLS`; ``virDomainQemuMonitorCommand`` is never used (it marks
the domain tainted).

libvirt-python blocks, so each VM's work runs in its own daemon thread on the
batch's one connection, at most ``concurrency`` at a time, and is abandoned
(the VM fails) when it does not finish within ``timeout``.
"""

from __future__ import annotations

import queue
import re
import threading
import time
import traceback
from xml.etree import ElementTree

# libvirt-python is imported on first use (load()): its import costs about 75 ms, which
# every run with transport: qmp would pay for nothing.
libvirt = None
#: None until load() tried; then whether libvirt-python could be imported.
HAS_LIBVIRT = None
LIBVIRT_IMPORT_ERROR = None

from ansible_collections.qmp.balloon.plugins.module_utils._errors import (
    BalloonError,
    BalloonNotFound,
    CommandNotAllowed,
    EndpointError,
)
from ansible_collections.qmp.balloon.plugins.module_utils._engine import REARM_ALWAYS, REARM_NEVER, REARM_STALE
from ansible_collections.qmp.balloon.plugins.module_utils import _stats


def load():
    """Import libvirt-python once; return whether it is usable (LIBVIRT_IMPORT_ERROR says why not)."""
    global libvirt, HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR  # pylint: disable=global-statement
    if HAS_LIBVIRT is None:
        try:
            import libvirt as binding  # pylint: disable=import-outside-toplevel
            libvirt = binding
            HAS_LIBVIRT = True
        except ImportError:
            HAS_LIBVIRT = False
            LIBVIRT_IMPORT_ERROR = traceback.format_exc()
    return HAS_LIBVIRT


#: The name pip knows the binding by (in the message when it is missing).
LIBVIRT_LIBRARY = 'libvirt-python'
DEFAULT_URI = 'qemu:///system'

#: The only libvirt API calls this collection makes (connection and domain
#: methods of libvirt-python). Not in it, on purpose: qemuMonitorCommand and
#: qemuAgentCommand (libvirt_qemu), which taint the domain, and everything
#: that starts, stops or redefines a domain.
ALLOWED_CALLS = frozenset([
    'open',
    'openReadOnly',
    'lookupByName',
    'lookupByUUIDString',
    'getAllDomainStats',
    'domainListGetStats',
    'name',
    'UUIDString',
    'state',
    'isPersistent',
    'XMLDesc',
    'memoryStats',
    'setMemoryStatsPeriod',
    'close',
])

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

# Stable values of libvirt's public enums (libvirt never renumbers them); named here so the
# code reads without libvirt-python installed and the unit tests need no libvirt.
AFFECT_LIVE = 1
AFFECT_CONFIG = 2
XML_INACTIVE = 2
STATS_STATE = 1
STATS_BALLOON = 4
GET_STATS_ACTIVE = 1
GET_STATS_NOWAIT = 1 << 29
ERR_NO_DOMAIN = 42
FROM_REMOTE = 19
FROM_RPC = 7

_UUID = re.compile(r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$')


class DomainNotFound(BalloonError):
    """libvirt has no domain of that name or UUID."""


class DomainNotRunning(BalloonError):
    """The domain is shut off: it has no live balloon to read or set."""


class LibvirtUnreachable(EndpointError):
    """libvirtd could not be reached, or the connection broke. Fails the whole batch."""


class LibvirtTimeout(BalloonError):
    """libvirt did not answer within the timeout."""


class LibvirtTarget(object):
    """One domain to handle: its name or UUID, and optionally the name to report."""

    def __init__(self, domain, name=None):
        self.domain = domain
        self.name = name


class Batch(object):
    """What a libvirt batch gives back: per-VM results, a batch-wide error, warnings."""

    def __init__(self, results, error=None, warnings=None):
        self.results = results
        self.error = error
        self.warnings = warnings or []


def endpoint(uri, domain):
    return 'libvirt:%s/%s' % (uri, domain)


def is_uuid(text):
    return bool(_UUID.match(text or ''))


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


def _message(exc):
    text = ''
    try:
        text = exc.get_error_message() or ''
    except Exception:  # pylint: disable=broad-except
        pass
    return (text or str(exc) or type(exc).__name__).strip().rstrip('.')


def _code(exc):
    try:
        return exc.get_error_code()
    except Exception:  # pylint: disable=broad-except
        return None


def _is_connection_error(exc):
    try:
        return exc.get_error_domain() in (FROM_RPC, FROM_REMOTE)
    except Exception:  # pylint: disable=broad-except
        return False


def _fmt(seconds):
    return '%g' % seconds


class LibvirtSession(object):
    """One connection to libvirtd, shared by the batch's threads (libvirt connections are thread-safe).

    Every libvirt call goes through :meth:`call`, which refuses anything outside
    :data:`ALLOWED_CALLS` before it is made and turns libvirt's errors into
    :class:`BalloonError` sentences. Raises only BalloonError subclasses.
    """

    def __init__(self, uri, read_only=False):
        self.uri = uri
        self.read_only = read_only
        self.connection = None
        self.broken = None

    def call(self, target, method, *arguments):
        """``target.method(*arguments)`` for an allowed libvirt call; raises BalloonError."""
        if method not in ALLOWED_CALLS:
            raise CommandNotAllowed('the libvirt call %r is not in the allow-list of this collection (%s)'
                                    % (method, ', '.join(sorted(ALLOWED_CALLS))))
        try:
            return getattr(target, method)(*arguments)
        except libvirt.libvirtError as exc:
            if _is_connection_error(exc):
                self.broken = self.broken or _message(exc)
                raise LibvirtUnreachable(self.broken_message())
            raise _LibvirtCallFailed(method, exc)

    def broken_message(self):
        return ('the connection to libvirt at %s broke (%s): is libvirtd still running? Restart it and run the task again'
                % (self.uri, self.broken))

    def open(self):
        """Connect; raise LibvirtUnreachable with one sentence when libvirtd cannot be reached."""
        if not load():
            raise LibvirtUnreachable('cannot use libvirt at %s: the libvirt-python library is not installed' % self.uri)
        # libvirt prints every error on stderr unless a handler is registered; ours are in the result.
        libvirt.registerErrorHandler(_ignore_error, None)
        method = 'openReadOnly' if self.read_only else 'open'
        try:
            self.connection = self.call(libvirt, method, self.uri)
        except (LibvirtUnreachable, _LibvirtCallFailed) as exc:
            reason = exc.reason if isinstance(exc, _LibvirtCallFailed) else self.broken
            self.broken = None
            raise LibvirtUnreachable('cannot connect to libvirt at %s (libvirt_uri): %s; check that libvirtd (or virtqemud) '
                                     'runs on this host and that libvirt_uri is right' % (self.uri, reason))
        if self.connection is None:
            raise LibvirtUnreachable('cannot connect to libvirt at %s (libvirt_uri)' % self.uri)

    def close(self):
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def lookup(self, domain):
        """The virDomain of a name or UUID; raises DomainNotFound."""
        try:
            if is_uuid(domain):
                try:
                    return self.call(self.connection, 'lookupByUUIDString', domain)
                except _LibvirtCallFailed as exc:
                    if exc.code != ERR_NO_DOMAIN:
                        raise
            return self.call(self.connection, 'lookupByName', domain)
        except _LibvirtCallFailed as exc:
            if exc.code == ERR_NO_DOMAIN:
                raise DomainNotFound('libvirt at %s has no domain %s %s (virsh list --all lists them)'
                                     % (self.uri, 'with UUID' if is_uuid(domain) else 'named', domain))
            raise

    def active_domain_stats(self, groups):
        """``[(virDomain, record)]`` of every active domain, in one call."""
        return self.call(self.connection, 'getAllDomainStats', groups, GET_STATS_ACTIVE | GET_STATS_NOWAIT)

    def domain_list_stats(self, domains, groups):
        return self.call(self.connection, 'domainListGetStats', domains, groups, GET_STATS_NOWAIT)


class _LibvirtCallFailed(BalloonError):
    """libvirt answered a call with an error (not a broken connection)."""

    def __init__(self, method, exc):
        self.method = method
        self.code = _code(exc)
        self.reason = _message(exc)
        super().__init__('libvirt refused %s: %s' % (method, self.reason))


def _ignore_error(context, error):  # pylint: disable=unused-argument
    return None


class DomainHandle(object):
    """One domain of the batch: its virDomain, what the batch call already read, and the session."""

    def __init__(self, session, target, domain=None, record=None):
        self.session = session
        self.target = target
        self.domain = domain
        self.record = record

    def call(self, method, *arguments):
        return self.session.call(self.domain, method, *arguments)

    def state(self):
        if self.record and 'state.state' in self.record:
            return self.record['state.state']
        return self.call('state')[0]

    def live_balloon(self):
        """``(model, period)`` from the live XML; raises BalloonNotFound without a balloon."""
        model, period = balloon_from_xml(self.call('XMLDesc', 0))
        if not has_balloon(model):
            raise _no_balloon()
        return model, period

    def config_period(self):
        model, period = balloon_from_xml(self.call('XMLDesc', XML_INACTIVE))
        if not has_balloon(model):
            raise _no_balloon('its configuration')
        return period

    def memory_stats(self):
        """memoryStats() names and units (KiB); from the batch call when it had them."""
        stats = memory_stats_from_record(self.record)
        if stats is None:
            stats = self.call('memoryStats')
        return stats

    def set_period(self, period, flags):
        self.call('setMemoryStatsPeriod', period, flags)


def _no_balloon(where='this domain'):
    return BalloonNotFound("%s has no balloon device (memballoon model='none'): libvirt reads guest memory "
                           "statistics only through one; give the domain a memballoon of model='virtio' and restart it"
                           % where)


def _shut_off(consequence):
    return DomainNotRunning('the domain is shut off: %s' % consequence)


# ---------------------------------------------------------------------------------------------
# The per-VM operations
# ---------------------------------------------------------------------------------------------

class InfoOperation(object):
    """balloon_stats_info over libvirt: the same fields as over QMP, plus actual and rss. Reads only."""

    #: State and balloon stats of all domains come from one batch call (the fast path).
    batch_groups = STATS_STATE | STATS_BALLOON
    #: Reading needs no write access: a read-only connection (libvirt-sock-ro) is enough.
    read_only = True

    def warnings(self):
        return []

    def __call__(self, handle):
        return gather_info(handle)


def gather_info(handle):
    """The per-VM fields of balloon_stats_info, the same as over QMP plus actual and rss. Reads only."""
    state = handle.state()
    if state == _STATE_SHUTOFF:
        raise _shut_off('it has no live statistics; start it (virsh start)')
    model, period = handle.live_balloon()  # pylint: disable=unused-variable
    memory = handle.memory_stats()
    status = {'status': STATE_NAMES.get(state, 'unknown'), 'running': state in _STATE_RUNNING}
    fields = _stats.describe_stats(qemu_guest_stats(memory), period, status, time.time())
    fields.update(actual=_kib_to_bytes(memory.get('actual')), rss=_kib_to_bytes(memory.get('rss')))
    return fields


class PollingOperation(object):
    """balloon_stats_polling over libvirt: the live period (LIVE) and, with ``persistent``, the config (CONFIG).

    Idempotence and check mode look at both values; a re-arm is 0 then the interval,
    live only, as over QMP.
    """

    def __init__(self, interval, rearm, persistent, check_mode):
        self.interval = interval
        self.rearm = rearm
        self.persistent = persistent
        self.check_mode = check_mode
        # The batch call reads every domain's state; the guest's last update only for rearm=stale
        # (the balloon group makes libvirt ask each QEMU).
        self.batch_groups = STATS_STATE | (STATS_BALLOON if rearm == REARM_STALE else 0)
        self.read_only = False
        self.transient = []
        self._lock = threading.Lock()

    def warnings(self):
        """A transient domain has no configuration: persistent is ignored for it, and said so once."""
        if not self.transient:
            return []
        return ['persistent: true: %s %s transient (no configuration to write): only the live stats period was set'
                % (', '.join(sorted(self.transient)), 'is' if len(self.transient) == 1 else 'are')]

    def __call__(self, handle):
        interval = self.interval
        state = handle.state()
        active = state != _STATE_SHUTOFF
        persistent_domain = self.persistent and handle.call('isPersistent') == 1
        if not active and not persistent_domain:
            # (A shut-off domain is always persistent: a transient one vanishes when it stops.)
            raise _shut_off('its live stats period can only be set while it runs; '
                            'set persistent: true to write only its configuration')
        result = {'previous_interval': None, 'interval': None, 'changed': False, 'rearmed': False}
        must_set = must_rearm = False
        if active:
            previous = handle.live_balloon()[1]
            result.update(previous_interval=previous, interval=previous)
            must_set = previous != interval
            if not must_set and interval > 0 and self.rearm != REARM_NEVER:
                must_rearm = self._must_rearm(handle, state, result)
        config_set = False
        if self.persistent:
            result.update(config_previous_interval=None, config_interval=None)
            if not persistent_domain:
                with self._lock:
                    self.transient.append(handle.call('name'))
            else:
                config_previous = handle.config_period()
                result.update(config_previous_interval=config_previous, config_interval=config_previous)
                config_set = config_previous != interval
        if not (must_set or must_rearm or config_set):
            return result
        result['changed'] = True
        result['rearmed'] = must_rearm
        if active:
            result['interval'] = interval
        if config_set:
            result['config_interval'] = interval
        if self.check_mode:
            return result
        if must_rearm:
            handle.set_period(0, AFFECT_LIVE)
        flags = (AFFECT_LIVE if (must_set or must_rearm) else 0) | (AFFECT_CONFIG if config_set else 0)
        handle.set_period(interval, flags)
        if must_set or must_rearm:
            now = handle.live_balloon()[1]
            if now != interval:
                raise BalloonError('libvirt accepted the stats period %s but the live domain reads back %r' % (interval, now))
        if config_set:
            now = handle.config_period()
            if now != interval:
                raise BalloonError('libvirt accepted the stats period %s but the configuration reads back %r' % (interval, now))
        return result

    def _must_rearm(self, handle, state, result):
        if self.rearm == REARM_ALWAYS:
            return True
        # rearm=stale, with the same rules as over QMP: only a running VM whose guest answered once.
        memory = handle.memory_stats()
        age = _stats.data_age(memory.get('last_update') or 0, time.time())
        result['age'] = age
        return _stats.is_stale(age, self.interval) and state in _STATE_RUNNING


def polling_diff(results, persistent):
    """diff entries of balloon_stats_polling for libvirt results (live and, with persistent, config)."""
    diff = []
    for result in results:
        if result.get('failed'):
            continue
        before = ['stats period (live): %s' % _or_none(result['previous_interval'])]
        after = ['stats period (live): %s%s' % (_or_none(result['interval']), ' (re-armed)' if result['rearmed'] else '')]
        if persistent:
            before.append('stats period (config): %s' % _or_none(result.get('config_previous_interval')))
            after.append('stats period (config): %s' % _or_none(result.get('config_interval')))
        diff.append(dict(before_header='%s memballoon' % result['name'], after_header='%s memballoon' % result['name'],
                         before='\n'.join(before) + '\n', after='\n'.join(after) + '\n'))
    return diff


def _or_none(value):
    return 'none' if value is None else value


# ---------------------------------------------------------------------------------------------
# The fan-out
# ---------------------------------------------------------------------------------------------

def _capture(work):
    try:
        return True, work()
    except BaseException as exc:  # pylint: disable=broad-except
        return False, exc


def _in_thread(work, timeout, timeout_message):
    """``work()`` in a daemon thread, bounded by ``timeout``; a hung libvirt call is abandoned, not waited for."""
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_capture(work)), name='qmp.balloon libvirt')
    thread.daemon = True
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise LibvirtTimeout(timeout_message)
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


def _fan_out(jobs, concurrency, timeout):
    """Run each job in its own daemon thread, at most ``concurrency`` at once, each bounded by ``timeout``.

    Returns ``[(succeeded, value_or_exception)]`` in input order. A job that does not
    finish in time gets a LibvirtTimeout; its thread is left behind (it is blocked in libvirt).
    """
    outcomes = [None] * len(jobs)
    finished = queue.Queue()
    waiting = list(enumerate(jobs))
    running = {}
    while waiting or running:
        while waiting and len(running) < concurrency:
            index, job = waiting.pop(0)
            running[index] = time.monotonic() + timeout
            thread = threading.Thread(target=lambda i=index, j=job: finished.put((i, _capture(j))), name='qmp.balloon VM')
            thread.daemon = True
            thread.start()
        try:
            index, outcome = finished.get(timeout=max(min(running.values()) - time.monotonic(), 0))
        except queue.Empty:
            now = time.monotonic()
            for index in [i for i, deadline in running.items() if deadline <= now]:
                del running[index]
                outcomes[index] = (False, LibvirtTimeout('libvirt did not finish with this domain within the %s s timeout'
                                                         % _fmt(timeout)))
            continue
        if index in running:  # an answer after the deadline is dropped
            del running[index]
            outcomes[index] = outcome
    return outcomes


def _vm_result(name, where, uuid=None):
    return {'name': name, 'endpoint': where, 'qom_path': None, 'uuid': uuid, 'failed': False}


def _fail(result, exc):
    result['failed'] = True
    if isinstance(exc, BalloonError):
        result['msg'] = str(exc)
    else:
        # A bug or an answer no libvirt sends: still one sentence, never a traceback.
        result['msg'] = 'unexpected %s: %s' % (type(exc).__name__, exc)


def _finish(result):
    if result['failed']:
        result['msg'] = '%s (%s): %s' % (result['name'], result['endpoint'], result['msg'])
    return result


def _prepare(session, targets, all_domains, groups):
    """Connect, then find the domains and read what one batch call can: ``[(target, virDomain|exception, record)]``."""
    session.open()
    if all_domains:
        found = session.active_domain_stats(groups)
        found = sorted(found, key=lambda item: session.call(item[0], 'name'))
        return [(LibvirtTarget(session.call(domain, 'name')), domain, record) for domain, record in found]
    prepared = []
    for target in targets:
        try:
            prepared.append([target, session.lookup(target.domain), None])
        except LibvirtUnreachable:
            raise
        except BalloonError as exc:
            prepared.append([target, exc, None])
    domains = [item[1] for item in prepared if not isinstance(item[1], BaseException)]
    if len(domains) > 1:
        try:
            records = session.domain_list_stats(domains, groups)
        except LibvirtUnreachable:
            raise
        except BalloonError:
            records = []  # a domain vanished meanwhile: each VM then asks for itself
        by_uuid = dict((session.call(domain, 'UUIDString'), record) for domain, record in records)
        for item in prepared:
            if not isinstance(item[1], BaseException):
                item[2] = by_uuid.get(session.call(item[1], 'UUIDString'))
    return [tuple(item) for item in prepared]


def run_batch(uri, targets, operation, all_domains=False, concurrency=32, timeout=5.0, read_only=False):
    """Run ``operation(DomainHandle) -> dict`` on every target over one libvirt connection.

    ``targets`` is a list of LibvirtTarget, ignored with ``all_domains`` (every active
    domain, sorted by name). The stats groups in ``operation.batch_groups`` are read for
    all domains in one call first (getAllDomainStats / domainListGetStats). Returns a
    Batch whose ``error`` is set when libvirtd could not be reached, did not answer or the
    connection broke: that fails the task, whatever fail_on_error says, with one message.
    """
    session = LibvirtSession(uri, read_only=read_only)
    try:
        prepared = _in_thread(lambda: _prepare(session, targets, all_domains, operation.batch_groups), timeout,
                              'libvirt at %s did not answer within the %s s timeout (connecting, finding the domains, '
                              'reading their state): libvirtd is hung or overloaded' % (uri, _fmt(timeout)))
    except BalloonError as exc:
        if not isinstance(exc, LibvirtTimeout):
            session.close()
        results = [_finish(dict(_vm_result(target.name or target.domain, endpoint(uri, target.domain)), failed=True, msg=str(exc)))
                   for target in ([] if all_domains else targets)]
        return Batch(results, error=str(exc))
    outcomes = _fan_out([_job(session, operation, *item) for item in prepared], concurrency, timeout)
    results = []
    timed_out = False
    for (target, _domain, _record), (succeeded, value) in zip(prepared, outcomes):
        if succeeded:
            results.append(value)
            continue
        timed_out = True
        result = _vm_result(target.name or target.domain, endpoint(uri, target.domain))
        _fail(result, value)
        results.append(_finish(result))
    if not timed_out:
        # A thread still blocked in libvirt would hold the connection: leave it to the process exit.
        session.close()
    error = None
    if session.broken:
        handled = sum(1 for result in results if not result['failed'])
        error = '%s (%d of %d VMs were handled before)' % (session.broken_message(), handled, len(results))
    return Batch(results, error=error, warnings=operation.warnings())


def _job(session, operation, target, domain, record):
    """The work of one VM, as a function for a thread; returns the VM's finished result and never raises."""
    def work():
        result = _vm_result(target.name or target.domain, endpoint(session.uri, target.domain))
        try:
            if isinstance(domain, BaseException):
                raise domain
            handle = DomainHandle(session, target, domain, record)
            result['uuid'] = handle.call('UUIDString')
            if not target.name:
                result['name'] = handle.call('name')
            result.update(operation(handle))
        except BaseException as exc:  # pylint: disable=broad-except
            _fail(result, exc)
        return _finish(result)
    return work
