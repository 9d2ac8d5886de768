# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared helpers of the unit tests that drive the real engine against the fake QMP server.

Not a test module (no ``test_`` prefix): the engine, fault, allow-list and module tests
import it as ``ansible_collections.qmp.balloon.tests.unit.plugins.module_utils.qmp_fakes``.

Every fake started through :class:`Fleets` records into one :class:`fake_qmp.Recorder`, and
leaving the ``with`` block fails the test when anything recorded is outside the engine's
allow-list: the allow-list is checked on every command of every test, with no state shared
between tests (ansible-test runs each test in its own forked process, spread over workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import time
import types
import warnings
from unittest import mock

from ansible.module_utils import basic

from ansible_collections.qmp.balloon.plugins.module_utils import _operations, _qmp, _qmp_executor
from ansible_collections.qmp.balloon.tests.support import fake_qmp
from ansible_collections.qmp.balloon.tests.support.fake_qmp import (  # noqa: F401  pylint: disable=unused-import
    CLASSIC_STAT_NAMES, EXTRA_STAT_NAMES, U64_UNSET, FakeFleet, FakeQMPServer, FaultOptions, Recorder, VMModel, default_stats, read_record,
)

try:
    from ansible.module_utils.testing import patch_module_args  # ansible-core 2.19+
except ImportError:
    patch_module_args = None

BALLOON = '/machine/peripheral/balloon0'
BACKEND = BALLOON + '/virtio-backend'
ANON_BALLOON = '/machine/peripheral-anon/device[0]'
TRANSPORTS = ('unix', 'tcp')
#: A fixed "now" for the engine and the fake (epoch seconds): ages and health are exact.
NOW = 1700000000


class Clock(object):
    """A settable wall clock, shared by the fake's VM model and the engine under test."""

    def __init__(self, now=NOW):
        self.now = float(now)

    def __call__(self):
        return self.now

    def time(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def freeze_engine_time(monkeypatch, clock):
    """Make the operations read ``clock`` instead of ``time.time()`` (ages become exact)."""
    monkeypatch.setattr(_operations, 'time', types.SimpleNamespace(time=clock))


# ---------------------------------------------------------------------------------------------
# Fakes and what they recorded
# ---------------------------------------------------------------------------------------------

#: The allow-list as documented (README, docs/design.md), written here independently of the code under test.
DOCUMENTED_COMMANDS = frozenset(['qmp_capabilities', 'qom-list', 'qom-get', 'qom-set', 'query-status', 'query-name',
                                 'x-query-virtio-status'])
DOCUMENTED_WRITABLE = 'guest-stats-polling-interval'


def record_problems(entries):
    """Everything recorded that the collection must never send: one line per problem.

    A command must be in ``_qmp.ALLOWED_COMMANDS`` and in the documented list (a command added to
    the first by mistake is caught too); ``qom-set`` may only write the polling interval.
    """
    problems = []
    for entry in entries:
        command = entry.get('command')
        arguments = entry.get('arguments') or {}
        if command is None:
            problems.append('input that is not a command reached %s: %r' % (entry.get('endpoint'), entry.get('raw')))
        elif command not in _qmp.ALLOWED_COMMANDS or command not in DOCUMENTED_COMMANDS:
            problems.append('%s was sent to %s: not in the allow-list' % (command, entry.get('endpoint')))
        elif command == 'qom-set' and (arguments.get('property') != _qmp.POLLING_PROPERTY or arguments.get('property') != DOCUMENTED_WRITABLE):
            problems.append('qom-set of %r was sent to %s' % (arguments.get('property'), entry.get('endpoint')))
        if entry.get('oob'):
            problems.append('exec-oob %s was sent to %s' % (command, entry.get('endpoint')))
    return problems


class Fleets(object):
    """Start fakes for one test; on exit stop them and check what they recorded.

    Use as ``with Fleets() as fleets: fleet = fleets.fleet(3, transport='tcp', ...)``.
    """

    def __init__(self):
        self.recorder = fake_qmp.Recorder()
        self._stack = contextlib.ExitStack()

    def fleet(self, count=1, transport='unix', **kwargs):
        """A started :class:`FakeFleet` (unix sockets in a new short temporary directory, or loopback TCP)."""
        kwargs.setdefault('recorder', self.recorder)
        return self._stack.enter_context(FakeFleet(count, tcp=(transport == 'tcp'), **kwargs))

    def fleet_of(self, models, transport='unix', names=None, **kwargs):
        """A fleet with one endpoint per VMModel of ``models``, in order."""
        models = list(models)
        return self.fleet(len(models), transport=transport, names=names, vm=lambda index, name: models[index], **kwargs)

    def server(self, transport='unix', **kwargs):
        """A started :class:`FakeQMPServer`."""
        kwargs.setdefault('recorder', self.recorder)
        return self._stack.enter_context(FakeQMPServer(tcp=(transport == 'tcp'), **kwargs))

    def close(self):
        self._stack.close()

    def check(self):
        problems = record_problems(self.recorder)
        assert not problems, 'the engine sent what it must not:\n' + '\n'.join(problems)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        if exc_type is None:
            self.check()


def commands(recorder, endpoint=None):
    """Command names received, in order (optionally by one endpoint name)."""
    return recorder.commands(endpoint)


def qom_sets(recorder, endpoint=None):
    """Values written with qom-set, in order."""
    return [entry['arguments']['value'] for entry in recorder
            if entry['command'] == 'qom-set' and (endpoint is None or entry['endpoint'] == endpoint)]


def qom_lists(recorder, endpoint=None):
    """Paths listed with qom-list, in order."""
    return [entry['arguments']['path'] for entry in recorder
            if entry['command'] == 'qom-list' and (endpoint is None or entry['endpoint'] == endpoint)]


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------

def engine_endpoint(fake_endpoint):
    """The engine's Endpoint for one fake endpoint."""
    if fake_endpoint.path is not None:
        return _qmp.Endpoint(path=fake_endpoint.path)
    return _qmp.Endpoint(host=fake_endpoint.host, port=fake_endpoint.port)


def targets_for(fleet, names=None, qom_paths=None):
    """One engine Target per fake endpoint; ``names``/``qom_paths`` map a fake name to a given value."""
    names = names or {}
    qom_paths = qom_paths or {}
    return [_qmp_executor.Target(engine_endpoint(endpoint), name=names.get(endpoint.name), qom_path=qom_paths.get(endpoint.name))
            for endpoint in fleet]


@contextlib.contextmanager
def plain_warnings():
    """Re-issue the warnings raised inside as plain text.

    ansible-test runs each test in a fork and pickles the warnings it caught back to the parent;
    a RuntimeWarning "coroutine ... was never awaited" carries the coroutine, which cannot be
    pickled, and the whole pytest worker dies (INTERNALERROR). The engine emits that warning when
    a session's budget runs out between two commands (see test_faults.py); here it stays visible
    but harmless.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            yield
        finally:
            gc.collect()
    for warning in caught:
        warnings.warn_explicit(str(warning.message), warning.category, warning.filename, warning.lineno)


def run_batch(targets, operation, **kwargs):
    """``_qmp_executor.run_batch`` with its warnings made picklable (and a timeout for a loaded machine)."""
    kwargs.setdefault('timeout', 20)
    with plain_warnings():
        return _qmp_executor.run_batch(targets, operation, **kwargs)


def info(targets, require_balloon=False, **kwargs):
    return run_batch(targets, _operations.InfoOperation(require_balloon=require_balloon), **kwargs)


def polling(targets, interval, rearm=_operations.REARM_NEVER, check_mode=False, require_balloon=False, **kwargs):
    return run_batch(targets, _operations.PollingOperation(interval, rearm, check_mode=check_mode, require_balloon=require_balloon),
                     **kwargs)


def expected_stats(raw):
    """QEMU's ``stats`` object normalised the way the documentation says, written independently of _stats."""
    return dict((name[len('stat-'):].replace('-', '_'), None if value in (U64_UNSET, -1) else value)
                for name, value in raw.items())


class SessionCounter(object):
    """Counts QMP sessions open at once (patch it over ``_qmp_executor.QMPSession``)."""

    def __init__(self):
        self.current = 0
        self.peak = 0
        self.opened = 0

    def session_class(self):
        counter = self

        class CountingSession(_qmp.QMPSession):
            async def open(self):
                counter.current += 1
                counter.opened += 1
                counter.peak = max(counter.peak, counter.current)
                await super().open()

            async def close(self):
                try:
                    await super().close()
                finally:
                    counter.current -= 1

        return CountingSession


class TaskWatch(object):
    """Wraps ``_qmp_executor._run`` to record the asyncio tasks still alive when the batch is done."""

    def __init__(self, monkeypatch):
        self.leftover = []
        original = _qmp_executor._run

        async def watched(*args, **kwargs):
            results = await original(*args, **kwargs)
            await asyncio.sleep(0)
            self.leftover.extend(task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done())
            return results

        monkeypatch.setattr(_qmp_executor, '_run', watched)


# ---------------------------------------------------------------------------------------------
# Modules: main() through AnsibleModule
# ---------------------------------------------------------------------------------------------

class ModuleExit(Exception):
    """Raised instead of exit_json/fail_json; ``result`` has ``failed`` and the module's ``warnings``."""

    def __init__(self, result):
        super().__init__(result.get('msg'))
        self.result = result


@contextlib.contextmanager
def module_args(args):
    """The ansible-core idiom: ``patch_module_args`` (2.19+), else ``basic._ANSIBLE_ARGS``."""
    if patch_module_args is not None:
        with patch_module_args(args):
            yield
        return
    serialized = json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode('utf-8')
    with mock.patch.object(basic, '_ANSIBLE_ARGS', serialized):
        yield


def run_module(module, args, check_mode=False, diff=False):
    """Run ``module.main()`` with ``args``; return its result (``failed`` set, ``warnings`` listed)."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    warned = []

    def exit_json(self, **kwargs):
        raise ModuleExit(dict(kwargs, failed=False, warnings=list(warned)))

    def fail_json(self, msg, **kwargs):
        raise ModuleExit(dict(kwargs, msg=msg, failed=True, warnings=list(warned)))

    def warn(self, warning):
        warned.append(warning)

    with plain_warnings(), module_args(args), mock.patch.multiple(basic.AnsibleModule, exit_json=exit_json, fail_json=fail_json, warn=warn):
        try:
            module.main()
        except ModuleExit as exc:
            return exc.result
    raise AssertionError('%s.main() returned without exit_json or fail_json' % module.__name__)


# ---------------------------------------------------------------------------------------------
# Messages and resources
# ---------------------------------------------------------------------------------------------

_NOT_IN_A_SENTENCE = ('Traceback', 'Errno', '\n', '\r', 'File "', 'raise ', '<', 'object at 0x')


def sentence_problems(msg, name, endpoint):
    """Why ``msg`` is not one plain sentence ``NAME (ENDPOINT): ...``; empty when it is."""
    problems = []
    prefix = '%s (%s): ' % (name, endpoint)
    if not msg.startswith(prefix):
        problems.append('does not start with %r' % prefix)
    for text in _NOT_IN_A_SENTENCE:
        if text in msg:
            problems.append('contains %r' % text)
    if len(msg) > 600:
        problems.append('is %d characters long' % len(msg))
    return problems


def open_fds():
    return len(os.listdir('/proc/self/fd'))


def fake_client_fds(*fleets):
    """Connections the fakes themselves still hold (a delayed reply keeps its socket a while)."""
    return sum(1 for fleet in fleets for endpoint in fleet if getattr(endpoint, '_client', None) is not None)


def wait_for_fds(limit, *fleets, deadline=3.0):
    """Open descriptors not owned by the fakes, once they are at most ``limit`` (or the deadline passed)."""
    end = time.monotonic() + deadline
    while True:
        count = open_fds() - fake_client_fds(*fleets)
        if count <= limit or time.monotonic() > end:
            return count
        time.sleep(0.02)


def matches(pattern, text):
    return re.search(pattern, text) is not None
