# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The libvirt executor: runs an operation on many domains over one libvirt connection.

PRIVATE: not part of the collection's public API.

:meth:`LibvirtExecutor.run_batch` connects, finds the domains and reads what one batch
call can for all of them (``getAllDomainStats`` / ``domainListGetStats``), in a thread
bounded by ``timeout``; then each domain is served in its own daemon thread through the
fan-out the QMP executor uses (``_batch``): the operation gets a ``_libvirt_domain.LibvirtVM``.
libvirt-python blocks and cannot be cancelled: a thread that outlives ``timeout`` is
abandoned and its domain fails; the connection is then left open (closing could block).
"""

from __future__ import annotations

from ansible_collections.qmp.balloon.plugins.module_utils._batch import (
    Batch,
    call_in_thread,
    finish,
    new_result,
    record_failure,
    run_threads,
)
from ansible_collections.qmp.balloon.plugins.module_utils._errors import (
    BalloonError,
    LibvirtTimeout,
    LibvirtUnreachable,
    seconds,
)
from ansible_collections.qmp.balloon.plugins.module_utils._libvirt import STATS_BALLOON, STATS_STATE, LibvirtSession
from ansible_collections.qmp.balloon.plugins.module_utils._libvirt_domain import LibvirtVM
from ansible_collections.qmp.balloon.plugins.module_utils._operations import DiffWords
from ansible_collections.qmp.balloon.plugins.module_utils._options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LIBVIRT_URI,
    DEFAULT_TIMEOUT,
)


class LibvirtTarget(object):
    """One domain to handle: its name or UUID, and optionally the name to report."""

    def __init__(self, domain, name=None):
        self.domain = domain
        self.name = name


def endpoint(uri, domain):
    return 'libvirt:%s/%s' % (uri, domain)


def _new_result(uri, target):
    return new_result(target.name or target.domain, endpoint(uri, target.domain), qom_path=None, uuid=None)


def run_to_end(coroutine):
    """The value of a coroutine that never suspends, run without an event loop.

    The operations are coroutines (the QMP executor awaits its session); a LibvirtVM's
    methods block instead of awaiting, so in a domain's thread the operation runs straight
    through to its return.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError('an operation awaited something other than its LibvirtVM')


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


def _job(session, operation, target, domain, record):
    """The work of one domain, as a function for a thread; returns the VM's finished result and never raises."""
    def work():
        result = _new_result(session.uri, target)
        try:
            if isinstance(domain, BaseException):
                raise domain
            vm = LibvirtVM(session, domain, record)
            result['uuid'] = vm.uuid
            if not target.name:
                result['name'] = vm.name
            vm.open()
            result.update(run_to_end(operation(vm)))
        except BaseException as exc:  # pylint: disable=broad-except
            record_failure(result, exc)
        return finish(result)
    return work


def _domain_late(timeout):
    return LibvirtTimeout('libvirt did not finish with this domain within the %s s timeout' % seconds(timeout))


class LibvirtExecutor(object):
    """Transport libvirt, as BalloonModule sees it: the domains of one libvirt URI, or all of its active ones."""

    diff_words = DiffWords('memballoon', 'stats period (live)', 'stats period (config)')

    def __init__(self, uri=DEFAULT_LIBVIRT_URI, all_domains=False):
        self.uri = uri
        self.all_domains = all_domains

    def run_batch(self, targets, operation, concurrency=DEFAULT_CONCURRENCY, timeout=DEFAULT_TIMEOUT):
        """Run ``operation(LibvirtVM) -> dict`` on every target over one libvirt connection.

        ``targets`` is a list of LibvirtTarget, ignored with ``all_domains`` (every active
        domain, sorted by name). The stats groups the operation needs are read for all
        domains in one call first. Returns a Batch whose ``error`` is set when libvirtd
        could not be reached, did not answer or the connection broke: that fails the task,
        whatever fail_on_error says, with one message.
        """
        uri = self.uri
        session = LibvirtSession(uri, read_only=operation.read_only)
        groups = STATS_STATE | (STATS_BALLOON if operation.reads_stats else 0)

        def hung(timeout):
            return LibvirtTimeout('libvirt at %s did not answer within the %s s timeout (connecting, finding the domains, '
                                  'reading their state): libvirtd is hung or overloaded' % (uri, seconds(timeout)))

        try:
            prepared = call_in_thread(lambda: _prepare(session, targets, self.all_domains, groups), timeout, hung)
        except BalloonError as exc:
            if not isinstance(exc, LibvirtTimeout):
                session.close()
            results = [finish(dict(_new_result(uri, target), failed=True, msg=str(exc)))
                       for target in ([] if self.all_domains else targets)]
            return Batch(results, error=str(exc))
        outcomes = run_threads([_job(session, operation, *item) for item in prepared], concurrency, timeout, _domain_late)
        results = []
        timed_out = False
        for (target, _domain, _record), (succeeded, value) in zip(prepared, outcomes):
            if succeeded:
                results.append(value)
                continue
            timed_out = True
            result = _new_result(uri, target)
            record_failure(result, value)
            results.append(finish(result))
        if not timed_out:
            # A thread still blocked in libvirt would hold the connection: leave it to the process exit.
            session.close()
        error = None
        if session.broken:
            handled = sum(1 for result in results if not result['failed'])
            error = '%s (%d of %d VMs were handled before)' % (session.broken_message(), handled, len(results))
        return Batch(results, error=error)
