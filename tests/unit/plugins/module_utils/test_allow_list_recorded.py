# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the fake QEMU recorded is inside the allow-list: only ALLOWED_COMMANDS, qom-set only of the interval.

Self-contained: ansible-test runs every test in its own forked process, spread over workers, so
nothing is collected across tests. Each test here sets QMP_BALLOON_FAKE_RECORD to its own JSONL
file, drives the engine and both modules through a wide scenario (every fault, discovery walks,
polling with every re-arm policy, check mode, info), and reads the file back. The other tests
of the engine, the faults and the modules check their own recordings the same way on exit
(``qmp_fakes.Fleets``).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _operations, _qmp
from ansible_collections.qmp.balloon.plugins.modules import balloon_stats_info, balloon_stats_polling
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import qmp_fakes
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils.qmp_fakes import (
    BALLOON, NOW, FakeFleet, FaultOptions, VMModel, fake_qmp, read_record, record_problems, run_module,
)

ENGINE_COMMANDS = {'qmp_capabilities', 'qom-list', 'qom-get', 'qom-set', 'query-status', 'query-name'}


@pytest.fixture
def record_file(monkeypatch):
    directory = tempfile.mkdtemp(prefix='qb-record-')
    path = os.path.join(directory, 'record.jsonl')
    monkeypatch.setenv(fake_qmp.RECORD_ENV, path)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def _models(count):
    clock = qmp_fakes.Clock(NOW)
    return [
        VMModel(name='fresh', stats_mode='static', interval=5, last_update=NOW - 1),
        VMModel(name='stalled', stats_mode='static', interval=5, last_update=NOW - 1000),
        VMModel(name='paused', stats_mode='static', interval=5, last_update=NOW - 1000, status='paused'),
        VMModel(name='never', stats_mode='never', interval=5),
        VMModel(name='old', stats_mode='never', interval=5, no_stats_error=True, unset_value=-1),
        VMModel(name='live', stats_mode='live', interval=1, clock=clock),
        VMModel(name='anon', balloon='anon'),
        VMModel(name=None, balloon='two'),
    ][:count]


def _scenario(monkeypatch):
    """Everything the collection does, through the engine and the modules. Returns the fleets' names."""
    qmp_fakes.freeze_engine_time(monkeypatch, qmp_fakes.Clock(NOW))
    faults = sorted(fake_qmp.FAULTS)
    # Fakes started without a recorder record to $QMP_BALLOON_FAKE_RECORD.
    with FakeFleet(8, vm=lambda index, name: _models(8)[index]) as healthy, \
            FakeFleet(len(faults), names=faults, fault=dict((fault, fault) for fault in faults),
                      options=FaultOptions(delay=0.5)) as faulty, \
            FakeFleet(2, tcp=True, names=['deep', 'cyclic'], fault={'deep': 'deep_tree,no_balloon', 'cyclic': 'cyclic_links,no_balloon'}) as walks:
        # Whole QOM trees walked, the faulty VMs (with a short timeout: the delayed ones time out), then
        # every policy and mode on the healthy VMs.
        for targets, timeout in [(qmp_fakes.targets_for(walks), 5), (qmp_fakes.targets_for(faulty), 0.3)]:
            qmp_fakes.info(targets, timeout=timeout)
            qmp_fakes.polling(targets, 5, rearm='always', timeout=timeout)
        targets = qmp_fakes.targets_for(healthy)
        qmp_fakes.info(targets)
        for rearm in _operations.REARM_CHOICES:
            for check_mode in (True, False):
                qmp_fakes.polling(targets, 5, rearm=rearm, check_mode=check_mode)
        qmp_fakes.polling(targets, 0)
        qmp_fakes.polling(qmp_fakes.targets_for(healthy, qom_paths={'vm007': '/machine/peripheral/balloon1', 'vm000': BALLOON + '/virtio-backend'}),
                          4294967295)
        single = {'socket': healthy[0].path}
        targets = [{'socket': path} for path in healthy.paths] + [{'host': '127.0.0.1', 'port': walks.ports[0]}]
        for check_mode in (False, True):
            run_module(balloon_stats_polling, dict(single, interval=7, rearm='always'), check_mode=check_mode, diff=True)
            run_module(balloon_stats_polling, {'targets': targets, 'interval': 9, 'rearm': 'stale', 'fail_on_error': False}, check_mode=check_mode)
            run_module(balloon_stats_info, single, check_mode=check_mode)
            run_module(balloon_stats_info, {'targets': targets, 'fail_on_error': False}, check_mode=check_mode)
        return healthy.names + faulty.names + walks.names


def test_everything_recorded_is_in_the_allow_list(record_file, monkeypatch):
    names = _scenario(monkeypatch)
    entries = read_record(record_file)
    assert record_problems(entries) == []
    seen = set(entry['command'] for entry in entries)
    assert seen <= _qmp.ALLOWED_COMMANDS
    assert seen >= ENGINE_COMMANDS, 'the scenario did not exercise the engine'
    assert set(entry['endpoint'] for entry in entries) <= set(names)
    sets = [entry['arguments'] for entry in entries if entry['command'] == 'qom-set']
    assert sets and all(arguments['property'] == _qmp.POLLING_PROPERTY for arguments in sets)
    assert all(isinstance(arguments['value'], int) and not isinstance(arguments['value'], bool)
               and 0 <= arguments['value'] <= _operations.MAX_INTERVAL for arguments in sets)
    assert not any(entry.get('oob') for entry in entries)


@pytest.mark.parametrize('entry, problem', [
    ({'endpoint': 'vm', 'command': 'quit', 'arguments': None}, 'quit was sent to vm'),
    ({'endpoint': 'vm', 'command': 'balloon', 'arguments': {'value': 1}}, 'balloon was sent to vm'),
    ({'endpoint': 'vm', 'command': 'human-monitor-command', 'arguments': {'command-line': 'info'}}, 'human-monitor-command was sent'),
    ({'endpoint': 'vm', 'command': 'qom-set', 'arguments': {'path': BALLOON, 'property': 'guest-stats', 'value': {}}},
     "qom-set of 'guest-stats' was sent to vm"),
    ({'endpoint': 'vm', 'command': None, 'arguments': None, 'raw': 'JSON parse error'}, 'input that is not a command'),
    ({'endpoint': 'vm', 'command': 'query-status', 'arguments': None, 'oob': True}, 'exec-oob query-status'),
])
def test_the_check_itself_catches_what_it_must(entry, problem):
    problems = record_problems([entry])
    assert len(problems) == 1 and problem in problems[0]


def test_the_record_file_is_what_the_fake_received(record_file):
    """QMP_BALLOON_FAKE_RECORD really reaches a fake started without a recorder, one line per command."""
    with FakeFleet(1) as fleet:
        qmp_fakes.info(qmp_fakes.targets_for(fleet))
        in_memory = fleet.record.commands()
    assert [entry['command'] for entry in read_record(record_file)] == in_memory
    assert in_memory[0] == 'qmp_capabilities' and 'qom-get' in in_memory
