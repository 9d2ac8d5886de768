# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fan-out both executors share, and the shape of a VM's result.

PRIVATE: not part of the collection's public API.

``concurrency`` means the same for every transport: at most that many VMs are being
served at once, and a VM still unfinished after :data:`SLOW_AFTER` seconds (a busy,
hung or slow monitor or libvirt call, waiting for its own timeout) gives its slot to the
next VM; at most ``max(MAX_OPEN, concurrency)`` VMs are in progress at any time.

The QMP executor serves its VMs as coroutines of one event loop (:func:`fan_out`); the
libvirt executor, whose library blocks, serves each VM in a daemon thread
(:func:`run_threads`), by the same rules without an event loop (asyncio, which brings ssl,
is imported by the QMP engine only). A VM's result is a dict built by
:func:`new_result`, :func:`record_failure` and :func:`finish`, the same for both.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.qmp.balloon.plugins.module_utils._errors import BalloonError, seconds

#: A VM not finished after this many seconds gives its concurrency slot to the next VM
#: (it keeps its connection and its own timeout).
SLOW_AFTER = 0.25
#: But no more than this many VMs are ever in progress at once (file descriptors, threads).
MAX_OPEN = 256
#: A batch's failure message stays about this short; each VM's full sentence stays in its own ``msg``.
MAX_SUMMARY = 300
#: VMs named per cause in that message.
NAMES_PER_CAUSE = 3


class Batch(list):
    """The results of a batch, one dict per VM in input order, and ``error``: a batch-wide failure or None.

    ``error`` is set when the whole batch could not be done (libvirtd unreachable, hung or gone);
    the task then fails with that one message, whatever fail_on_error says.
    """

    def __init__(self, results=(), error=None):
        super().__init__(results)
        self.error = error


# ---------------------------------------------------------------------------------------------
# Section: the fan-out
# ---------------------------------------------------------------------------------------------

async def fan_out(items, serve, concurrency, slow_after=SLOW_AFTER):
    """``await serve(item)`` for every item, at most ``concurrency`` being served at once; results in order.

    A slow item stops counting against ``concurrency`` after ``slow_after`` seconds, so a few
    hung VMs do not stall the rest of the batch; at most max(MAX_OPEN, concurrency) items
    are in progress at any time. ``serve`` must not raise: it turns failures into results.
    """
    import asyncio  # pylint: disable=import-outside-toplevel  # only the QMP engine runs an event loop

    loop = asyncio.get_running_loop()
    active = asyncio.Semaphore(concurrency)
    in_progress = asyncio.Semaphore(max(MAX_OPEN, concurrency))

    async def one(item):
        async with in_progress:
            await active.acquire()
            holding = True

            def give_back():
                nonlocal holding
                if holding:
                    holding = False
                    active.release()

            timer = loop.call_later(slow_after, give_back)
            try:
                return await serve(item)
            finally:
                timer.cancel()
                give_back()

    return await asyncio.gather(*(one(item) for item in items))


def _capture(work):
    try:
        return True, work()
    except BaseException as exc:  # pylint: disable=broad-except
        return False, exc


def _late(timeout):
    return BalloonError('did not finish within the %s s timeout' % seconds(timeout))


class _Running(object):
    """A job whose thread runs: when its timeout ends, when it gives its slot back, whether it still holds one."""

    __slots__ = ('index', 'deadline', 'slow_at', 'holding')

    def __init__(self, index, now, timeout, slow_after):
        self.index = index
        self.deadline = now + timeout
        self.slow_at = now + slow_after
        self.holding = True

    def next_check(self):
        """When the calling thread must look at this job again: its slot to give back, or its timeout."""
        return min(self.deadline, self.slow_at) if self.holding else self.deadline


def run_threads(jobs, concurrency, timeout, late=_late, slow_after=SLOW_AFTER):
    """Run each blocking ``job()`` in a daemon thread, each bounded by ``timeout``, by :func:`fan_out`'s rules.

    Returns ``[(succeeded, value_or_exception)]`` in input order. Jobs start in input order;
    at most ``concurrency`` hold a slot, a job still running after ``slow_after`` seconds
    gives its slot to the next one, and at most max(MAX_OPEN, concurrency) run at once. A job
    that does not finish in time gets ``(False, late(timeout))``; its thread is left behind
    (a daemon thread does not keep the process alive), its late answer is dropped and it
    takes no other job.

    The same fan-out as :func:`fan_out`, with threads and a condition variable instead of an
    event loop (the libvirt transport imports no asyncio, nor the ssl it brings); a thread
    whose job ended in time takes the next job when a slot is free, so a batch starts about
    ``concurrency`` threads, not one per job.
    """
    if not jobs:
        return []
    limit = max(MAX_OPEN, concurrency)
    outcomes = [None] * len(jobs)
    running = {}
    # wake: when the calling thread means to look again (a deadline, or a slot to give back)
    state = {'following': 0, 'holding': 0, 'wake': None}
    changed = threading.Condition()

    def give_back(job):
        if job.holding:
            job.holding = False
            state['holding'] -= 1

    def take():
        """The next job when a slot is free (called with ``changed`` held), else None."""
        index = state['following']
        if index >= len(jobs) or state['holding'] >= concurrency or len(running) >= limit:
            return None
        job = running[index] = _Running(index, time.monotonic(), timeout, slow_after)
        state['following'] += 1
        state['holding'] += 1
        return job

    def work(job):
        while job is not None:
            outcome = _capture(jobs[job.index])
            with changed:
                if outcomes[job.index] is not None:
                    return  # it timed out: the late answer is dropped and this thread ends
                outcomes[job.index] = outcome
                give_back(job)
                del running[job.index]
                job = take()
                if job is None or state['wake'] is None or job.next_check() < state['wake']:
                    changed.notify()

    with changed:
        while state['following'] < len(jobs) or running:
            now = time.monotonic()
            for job in list(running.values()):
                if now >= job.deadline:
                    outcomes[job.index] = (False, late(timeout))
                    give_back(job)
                    del running[job.index]
                elif job.holding and now >= job.slow_at:
                    give_back(job)
            job = take()
            if job is not None:
                thread = threading.Thread(target=work, args=(job,), name='qmp.balloon VM')
                thread.daemon = True
                thread.start()
                continue
            if running:
                state['wake'] = min(job.next_check() for job in running.values())
                changed.wait(max(0.0, state['wake'] - now))
                state['wake'] = None
    return outcomes


def call_in_thread(work, timeout, late):
    """``work()`` in a daemon thread, bounded by ``timeout``: its value, or its exception raised, or ``late(timeout)`` raised."""
    [(succeeded, value)] = run_threads([work], 1, timeout, late)
    if not succeeded:
        raise value
    return value


# ---------------------------------------------------------------------------------------------
# Section: one VM's result
# ---------------------------------------------------------------------------------------------

def new_result(name, endpoint, **fields):
    """A VM's result before its work: ``name`` (None until known), ``endpoint``, the transport's ``fields``, not failed."""
    result = {'name': name, 'endpoint': endpoint}
    result.update(fields)
    result['failed'] = False
    return result


def record_failure(result, exc):
    """Mark the result failed with one sentence: the error's own, or ``unexpected TYPE: ...`` for a bug."""
    result['failed'] = True
    # Few words that group failures in the batch's message (failure_summary); BalloonModule.exit drops the key.
    result['_cause'] = getattr(exc, 'cause', None) or 'unexpected error'
    if isinstance(exc, BalloonError):
        result['msg'] = str(exc)
    else:
        # A bug or an answer no QEMU or libvirt sends: still one sentence, never a traceback.
        result['msg'] = 'unexpected %s: %s' % (type(exc).__name__, exc)


def finish(result):
    """Prefix a failure's sentence with ``NAME (ENDPOINT): `` so that it names the VM; return the result."""
    if result['failed']:
        result['msg'] = '%s (%s): %s' % (result['name'], result['endpoint'], result['msg'])
    return result


def failure_summary(results):
    """The message of a batch with failures: one VM's full sentence, or the failures grouped by cause.

    ``30 of 32 VMs failed: 28 monitor busy (vm1, vm2, vm3, …), 2 permission denied (db1, db2)``:
    the most frequent cause first, at most :data:`NAMES_PER_CAUSE` names each, about
    :data:`MAX_SUMMARY` characters at most (causes that do not fit are counted at the end).
    """
    failed = [result for result in results if result.get('failed')]
    head = '%d of %d VMs failed' % (len(failed), len(results))
    if len(failed) == 1:
        return '%s: %s' % (head, failed[0]['msg'])
    groups = {}
    for result in failed:
        groups.setdefault(result.get('_cause') or 'error', []).append(str(result.get('name')))
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))  # stable: first seen first among equals
    parts = []
    for index, (cause, names) in enumerate(ordered):
        shown = ', '.join(names[:NAMES_PER_CAUSE]) + (', …' if len(names) > NAMES_PER_CAUSE else '')
        part = '%d %s (%s)' % (len(names), cause, shown)
        rest = ordered[index + 1:]
        tail = ', %d more of %d other causes' % (sum(len(item[1]) for item in rest), len(rest)) if rest else ''
        if parts and len(head) + 2 + len(', '.join(parts + [part])) + len(tail) > MAX_SUMMARY:
            left = ordered[index:]
            plural = '' if len(left) == 1 else 's'
            parts.append('%d more of %d other cause%s' % (sum(len(item[1]) for item in left), len(left), plural))
            break
        parts.append(part)
    return '%s: %s' % (head, ', '.join(parts))
