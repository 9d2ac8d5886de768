# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The balloon engine: discovery, the per-VM operations and the fan-out.

PRIVATE: not part of the collection's public API.

``run_batch`` handles many VMs concurrently in one event loop, one short QMP
session per VM, at most ``concurrency`` at once. Each VM's result is a dict;
one VM's failure becomes ``failed`` + ``msg`` in its own result and never
touches another's.
"""

from __future__ import annotations

import asyncio
import re
import time

from ansible_collections.qmp.balloon.plugins.module_utils._errors import (
    BalloonError,
    BalloonNotFound,
    CommandFailed,
)
from ansible_collections.qmp.balloon.plugins.module_utils._qmp import (
    POLLING_PROPERTY,
    STATS_PROPERTY,
    QMPSession,
)
from ansible_collections.qmp.balloon.plugins.module_utils import _stats

#: Where QEMU puts devices created with -device id=... and without id=.
PERIPHERAL_CONTAINERS = ('/machine/peripheral', '/machine/peripheral-anon')
#: Bounds of the fallback walk of the QOM tree (qom-list calls, depth).
WALK_MAX_LISTS = 64
WALK_MAX_DEPTH = 6

REARM_NEVER = 'never'
REARM_STALE = 'stale'
REARM_ALWAYS = 'always'
REARM_CHOICES = (REARM_NEVER, REARM_STALE, REARM_ALWAYS)

MAX_INTERVAL = 4294967295

_BALLOON_TYPE = re.compile(r'^child<virtio-balloon(-[a-z0-9-]+)?>$')
_CHILD_TYPE = re.compile(r'^child<.+>$')


class Target(object):
    """One VM to handle: its endpoint, and optionally a name and balloon path."""

    def __init__(self, endpoint, name=None, qom_path=None):
        self.endpoint = endpoint
        self.name = name
        self.qom_path = qom_path


def is_balloon_type(qom_type):
    return bool(_BALLOON_TYPE.match(qom_type or ''))


def _join(parent, child):
    return parent.rstrip('/') + '/' + child


async def _qom_list(session, path):
    return await session.execute('qom-list', {'path': path})


async def verify_balloon(session, path, given):
    """Check that ``path`` exists and lists the polling property."""
    try:
        properties = await _qom_list(session, path)
    except CommandFailed as exc:
        if given and exc.error_class == 'DeviceNotFound':
            raise BalloonNotFound('qom_path %s does not exist in this VM (%s)' % (path, exc.desc))
        raise
    names = set(entry.get('name') for entry in properties if isinstance(entry, dict))
    if POLLING_PROPERTY not in names or STATS_PROPERTY not in names:
        raise BalloonNotFound('qom_path %s is not a virtio-balloon device: it has no %s property'
                              % (path, POLLING_PROPERTY))
    return path


async def _walk_for_balloons(session, skip):
    """Bounded breadth-first walk over child<> properties from /machine."""
    found = []
    queue = [('/machine', 0)]
    seen = set(skip)
    lists = 0
    while queue and lists < WALK_MAX_LISTS:
        path, depth = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        lists += 1
        try:
            children = await _qom_list(session, path)
        except CommandFailed:
            continue
        for entry in children:
            qom_type = entry.get('type', '') if isinstance(entry, dict) else ''
            child = _join(path, entry.get('name', '')) if isinstance(entry, dict) else None
            if not child:
                continue
            if is_balloon_type(qom_type):
                found.append(child)
            elif _CHILD_TYPE.match(qom_type) and depth + 1 < WALK_MAX_DEPTH:
                queue.append((child, depth + 1))
    return found


async def locate_balloon(session, qom_path=None):
    """Return the QOM path of the VM's balloon device, not yet verified.

    With ``qom_path`` given, return it as is (no command). Otherwise look in
    /machine/peripheral (devices with id=), /machine/peripheral-anon, then a
    bounded walk of the tree. Raises BalloonNotFound when there is none or
    more than one candidate. The caller verifies the path with
    :func:`verify_balloon` (the engine sends that check together with the
    first reads, and before any write).
    """
    if qom_path:
        return qom_path
    candidates = []
    for container in PERIPHERAL_CONTAINERS:
        try:
            children = await _qom_list(session, container)
        except CommandFailed:
            continue
        candidates = [_join(container, entry['name']) for entry in children
                      if isinstance(entry, dict) and 'name' in entry and is_balloon_type(entry.get('type'))]
        if candidates:
            break
    if not candidates:
        candidates = await _walk_for_balloons(session, PERIPHERAL_CONTAINERS)
    if not candidates:
        raise BalloonNotFound('no virtio-balloon device in this VM: QEMU serves guest memory statistics only '
                              'through one; add -device virtio-balloon-pci,id=balloon0 to the VM')
    if len(candidates) > 1:
        raise BalloonNotFound('found %d balloon devices (%s): set qom_path to the one to use'
                              % (len(candidates), ', '.join(candidates)))
    return candidates[0]


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


async def query_name(session):
    answer = await session.execute('query-name')
    return (answer or {}).get('name') or None


async def gather_info(session, path):
    """The per-VM fields of balloon_stats_info. Reads only, sent together."""
    guest_stats, interval, status = await together(
        read_guest_stats(session, path), read_interval(session, path), query_status(session))
    return _stats.describe_stats(guest_stats, interval, status, time.time())


async def configure_polling(session, path, interval, rearm, check_mode):
    """Set the polling interval when it differs; re-arm a stalled timer when asked.

    QEMU ignores a write of the value it already has, so re-arming is a write
    of 0 then the interval (a new timer fires at once). A change of value
    re-arms by itself.
    """
    previous = await read_interval(session, path)
    result = {'previous_interval': previous, 'interval': previous, 'changed': False, 'rearmed': False}
    must_set = previous != interval
    must_rearm = False
    if not must_set and interval > 0 and rearm != REARM_NEVER:
        if rearm == REARM_ALWAYS:
            must_rearm = True
        else:
            guest_stats, status = await together(read_guest_stats(session, path), query_status(session))
            last_update = (guest_stats or {}).get('last-update') or 0
            age = _stats.data_age(last_update, time.time())
            result['age'] = age
            # A guest that never answered (no driver) is not stalled: re-arming would not help
            # and would report a change on every run. A paused VM's timer is idle, not stalled.
            if _stats.is_stale(age, interval):
                must_rearm = bool(status.get('running'))
    if not (must_set or must_rearm):
        return result
    result.update(changed=True, interval=interval, rearmed=must_rearm)
    if check_mode:
        return result
    if must_rearm:
        await write_interval(session, path, 0)
    await write_interval(session, path, interval)
    now = await read_interval(session, path)
    if now != interval:
        raise BalloonError('QEMU accepted %s = %s but reads back %r' % (POLLING_PROPERTY, interval, now))
    return result


async def _handle_one(target, work, timeout):
    """One VM: open, name, locate, verify, work, close.

    Round trips are few: ``query-name`` goes with the first discovery command,
    and the verification of the balloon's path (its property list) goes with
    the first command of ``work``. The session holds every write until that
    verification has passed. Errors keep the sequential order: a failed name
    query wins over a failed discovery, which wins over a failed verification,
    which wins over a failed ``work``.
    """
    endpoint = target.endpoint
    result = {'name': target.name, 'endpoint': str(endpoint), 'qom_path': target.qom_path, 'failed': False}
    session = QMPSession(endpoint, timeout)
    pending = []

    async def name_vm():
        result['name'] = await query_name(session) or endpoint.default_name()

    try:
        await session.open()
        if not result['name']:
            pending.append(asyncio.ensure_future(name_vm()))
        try:
            path = await locate_balloon(session, target.qom_path)
            result['qom_path'] = path
            verified = asyncio.ensure_future(verify_balloon(session, path, given=bool(target.qom_path)))
            pending.append(verified)
            session.hold_writes_until(verified)
            fields = await work(session, path)
        except Exception:  # pylint: disable=broad-except
            await together(*pending)
            raise
        await together(*pending)
        result.update(fields)
    except BalloonError as exc:
        result['failed'] = True
        result['msg'] = str(exc)
    except Exception as exc:  # pylint: disable=broad-except
        # A bug or an answer no QEMU sends: still one sentence, never a traceback.
        result['failed'] = True
        result['msg'] = 'unexpected %s: %s' % (type(exc).__name__, exc)
    finally:
        for task in pending:
            if not task.done():
                task.cancel()
        await session.close()
    if not result['name']:
        result['name'] = endpoint.default_name()
    if result['failed']:
        result['msg'] = '%s (%s): %s' % (result['name'], endpoint, result['msg'])
    return result


#: A VM whose session has not finished after this many seconds gives its
#: concurrency slot to the next VM (it keeps its connection and its own timeout).
SLOW_AFTER = 0.25
#: But no more than this many sessions are ever open at once (file descriptors).
MAX_OPEN = 256


async def _run(targets, work, concurrency, timeout, slow_after):
    """Fan out with at most ``concurrency`` sessions being served at once.

    A slow VM (a busy or hung monitor, waiting for its timeout) stops counting
    against ``concurrency`` after ``slow_after`` seconds, so a few such VMs do not
    stall the rest of the batch; at most max(MAX_OPEN, concurrency) sessions are
    open at any time.
    """
    loop = asyncio.get_running_loop()
    active = asyncio.Semaphore(concurrency)
    opened = asyncio.Semaphore(max(MAX_OPEN, concurrency))

    async def one(target):
        async with opened:
            await active.acquire()
            holding = True

            def give_back():
                nonlocal holding
                if holding:
                    holding = False
                    active.release()

            timer = loop.call_later(slow_after, give_back)
            try:
                return await _handle_one(target, work, timeout)
            finally:
                timer.cancel()
                give_back()

    return await asyncio.gather(*(one(target) for target in targets))


def run_batch(targets, work, concurrency=4, timeout=5.0, slow_after=SLOW_AFTER):
    """Run ``work(session, qom_path) -> dict`` on every target; results in input order."""
    if not targets:
        return []
    return list(asyncio.run(_run(targets, work, concurrency, timeout, slow_after)))
