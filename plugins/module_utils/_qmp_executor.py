# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The QMP executor: runs an operation on many VMs, one short QMP session each.

PRIVATE: not part of the collection's public API.

:func:`run_batch` serves every target concurrently in one event loop (``_batch.fan_out``).
For each VM :func:`_serve` opens a :class:`QMPSession`, names the VM, finds and verifies its
balloon (``_qmp_discovery``), hands the operation a :class:`QMPVM` and closes the session
at once: QEMU serves one client per monitor. One VM's failure becomes ``failed`` + ``msg``
in its own result and never touches another's.
"""

from __future__ import annotations

import asyncio

from ansible_collections.qmp.balloon.plugins.module_utils import _stats
from ansible_collections.qmp.balloon.plugins.module_utils._batch import (
    SLOW_AFTER,
    Batch,
    fan_out,
    finish,
    new_result,
    record_failure,
)
from ansible_collections.qmp.balloon.plugins.module_utils._errors import CommandFailed, NoBalloonDevice, QMPTimeout
from ansible_collections.qmp.balloon.plugins.module_utils._operations import BalloonVM, DiffWords
from ansible_collections.qmp.balloon.plugins.module_utils._options import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT
from ansible_collections.qmp.balloon.plugins.module_utils._qmp import POLLING_PROPERTY, STATS_PROPERTY, QMPSession
from ansible_collections.qmp.balloon.plugins.module_utils._qmp_discovery import locate_balloon, verify_balloon


class Target(object):
    """One VM to handle: its endpoint, and optionally a name and balloon path."""

    def __init__(self, endpoint, name=None, qom_path=None):
        self.endpoint = endpoint
        self.name = name
        self.qom_path = qom_path


# ---------------------------------------------------------------------------------------------
# Section: the QMP commands of a balloon
# ---------------------------------------------------------------------------------------------

async def together(*awaitables):
    """Run QMP reads concurrently on one session (pipelined: QEMU answers them in order).

    Returns their results in order. Waits for all of them, then raises the
    first error in argument order, so the error reported is the one a
    sequential run would have hit first.
    """
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for item in results:
        if isinstance(item, BaseException):
            raise item
    return results


async def read_interval(session, path):
    return await session.execute('qom-get', {'path': path, 'property': POLLING_PROPERTY})


async def write_interval(session, path, interval):
    await session.execute('qom-set', {'path': path, 'property': POLLING_PROPERTY, 'value': interval})


async def read_guest_stats(session, path):
    """qom-get guest-stats; None when old QEMU says the guest never updated."""
    try:
        return await session.execute('qom-get', {'path': path, 'property': STATS_PROPERTY})
    except CommandFailed as exc:
        if _stats.NOT_UPDATED_YET in exc.desc:
            return None
        raise


async def query_status(session):
    return await session.execute('query-status')


def virtio_backend(qom_path):
    """The balloon's virtio device under its PCI or CCW proxy (QEMU names it ``virtio-backend``)."""
    return qom_path if qom_path.rstrip('/').endswith('/virtio-backend') else qom_path.rstrip('/') + '/virtio-backend'


async def read_driver(session, qom_path):
    """x-query-virtio-status of the balloon's virtio device, as ``_stats.driver_state``; None when QEMU cannot tell.

    The command is unstable (``x-``): a QEMU that lacks it (CommandNotFound), refuses it or
    does not answer in time leaves the diagnosis unknown and the VM's result intact.
    """
    try:
        answer = await session.execute('x-query-virtio-status', {'path': virtio_backend(qom_path)})
    except (CommandFailed, QMPTimeout):
        return None
    return _stats.driver_state(answer)


async def query_name(session):
    answer = await session.execute('query-name')
    return (answer or {}).get('name') or None


class QMPVM(BalloonVM):
    """A VM's balloon over its QMP session: the QOM properties of the device at ``qom_path``."""

    READ_BACK = 'QEMU accepted ' + POLLING_PROPERTY + ' = %s but reads back %r'

    def __init__(self, session, qom_path):
        self.session = session
        self.qom_path = qom_path
        self.qemu_version = session.qemu_version

    async def read_driver(self):
        return await read_driver(self.session, self.qom_path)

    async def read_interval(self):
        return await read_interval(self.session, self.qom_path)

    async def read_stats(self):
        return await read_guest_stats(self.session, self.qom_path)

    async def read_state(self):
        return await query_status(self.session)

    async def write_interval(self, interval, live=True, config=False):
        await write_interval(self.session, self.qom_path, interval)

    async def together(self, *reads):
        return await together(*reads)


# ---------------------------------------------------------------------------------------------
# Section: the executor
# ---------------------------------------------------------------------------------------------

async def _serve(target, operation, timeout):
    """One VM: open, name, locate, verify, run the operation, close; the VM's finished result.

    Round trips are few: ``query-name`` goes with the first discovery command,
    and the verification of a given ``qom_path`` (its property list) goes with
    the operation's first command. The session holds every write until that
    verification has passed. A path found by its type (``child<virtio-balloon-...>``)
    is not listed again: every such QEMU type has both balloon properties, and
    every operation reads ``guest-stats-polling-interval`` with ``qom-get``
    before it writes (docs/design.md, "Discovery"). Errors keep the sequential
    order: a failed name query wins over a failed discovery, which wins over a
    failed verification, which wins over a failed operation.
    """
    endpoint = target.endpoint
    result = new_result(target.name, str(endpoint), qom_path=target.qom_path)
    session = QMPSession(endpoint, timeout)
    pending = []

    async def name_vm():
        result['name'] = await query_name(session) or endpoint.default_name()

    try:
        await session.open()
        if not result['name']:
            pending.append(asyncio.ensure_future(name_vm()))
        try:
            try:
                path = await locate_balloon(session, target.qom_path)
            except NoBalloonDevice as exc:
                fields = operation.without_balloon(exc, session.qemu_version)
            else:
                result['qom_path'] = path
                if target.qom_path:
                    verified = asyncio.ensure_future(verify_balloon(session, path, given=True))
                    pending.append(verified)
                    session.hold_writes_until(verified)
                fields = await operation(QMPVM(session, path))
        except Exception:  # pylint: disable=broad-except
            await together(*pending)
            raise
        await together(*pending)
        result.update(fields)
    except Exception as exc:  # pylint: disable=broad-except
        record_failure(result, exc)
    finally:
        for task in pending:
            if not task.done():
                task.cancel()
        await session.close()
    if not result['name']:
        result['name'] = endpoint.default_name()
    return finish(result)


async def _run(targets, operation, concurrency, timeout, slow_after):
    return await fan_out(targets, lambda target: _serve(target, operation, timeout), concurrency, slow_after)


def run_batch(targets, operation, concurrency=DEFAULT_CONCURRENCY, timeout=DEFAULT_TIMEOUT, slow_after=SLOW_AFTER):
    """Run ``await operation(QMPVM) -> dict`` on every target; a :class:`Batch` of results in input order."""
    if not targets:
        return Batch()
    return Batch(asyncio.run(_run(targets, operation, concurrency, timeout, slow_after)))


class QMPExecutor(object):
    """Transport qmp, as BalloonModule sees it."""

    diff_words = DiffWords('interval', POLLING_PROPERTY)

    def run_batch(self, targets, operation, concurrency=DEFAULT_CONCURRENCY, timeout=DEFAULT_TIMEOUT):
        return run_batch(targets, operation, concurrency, timeout)
