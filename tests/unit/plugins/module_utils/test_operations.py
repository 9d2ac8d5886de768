# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The operations without a transport: the change / re-arm decision (a pure function), the diff, the seam.

test_engine.py and test_libvirt.py run the same decisions through each executor; here they
are a table of plain values.
"""

from __future__ import annotations

import asyncio
import gc
import types
import warnings

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _operations, _stats
from ansible_collections.qmp.balloon.plugins.module_utils._errors import BalloonError

PLAN_TABLE = [
    # previous interval, wanted, rearm, age of the guest's data (None: never answered), running, (write, rearm)
    pytest.param(0, 10, 'never', None, None, (True, False), id='enable'),
    pytest.param(10, 2, 'never', None, None, (True, False), id='change'),
    pytest.param(10, 0, 'stale', None, None, (True, False), id='disable'),
    pytest.param(5, 10, 'always', 5, True, (True, False), id='a-change-is-never-a-rearm'),
    pytest.param(10, 10, 'never', 1000, True, (False, False), id='never-stalled'),
    pytest.param(0, 0, 'always', 5, True, (False, False), id='always-at-0'),
    pytest.param(0, 0, 'stale', 1000, True, (False, False), id='stale-at-0'),
    pytest.param(10, 10, 'always', 5, True, (True, True), id='always-fresh'),
    pytest.param(10, 10, 'always', 5, False, (True, True), id='always-paused'),
    pytest.param(10, 10, 'always', None, True, (True, True), id='always-never-answered'),
    pytest.param(10, 10, 'stale', 31, True, (True, True), id='stale-just-past-3x'),
    pytest.param(10, 10, 'stale', 1000, True, (True, True), id='stale-stalled'),
    pytest.param(10, 10, 'stale', 30, True, (False, False), id='stale-exactly-3x'),
    pytest.param(10, 10, 'stale', 5, True, (False, False), id='stale-fresh'),
    pytest.param(10, 10, 'stale', 1000, False, (False, False), id='stale-not-running'),
    pytest.param(10, 10, 'stale', None, True, (False, False), id='stale-never-answered'),
    pytest.param(1, 1, 'stale', 4, True, (True, True), id='stale-short-interval'),
]


@pytest.mark.parametrize('previous, wanted, rearm, age, running, expected', PLAN_TABLE)
def test_plan_interval(previous, wanted, rearm, age, running, expected):
    assert _operations.plan_interval(previous, wanted, rearm, age, running) == expected


@pytest.mark.parametrize('previous, wanted, rearm, expected', [
    (10, 10, 'stale', True),
    (10, 10, 'always', False),
    (10, 10, 'never', False),
    (5, 10, 'stale', False),
    (0, 0, 'stale', False),
])
def test_the_age_is_read_only_when_the_plan_needs_it(previous, wanted, rearm, expected):
    assert _operations.looks_at_age(previous, wanted, rearm) is expected


def test_the_stale_rule_is_the_one_of_health():
    """plan_interval re-arms exactly when _stats would call the running VM's data stale."""
    for age in range(0, 100):
        stale = _stats.health(10, 1, age, True) == _stats.HEALTH_STALE
        assert _operations.plan_interval(10, 10, 'stale', age, True) == (stale, stale), age


class ScriptedVM(_operations.BalloonVM):
    """A VM whose reads answer from fixed values and whose writes are recorded."""

    def __init__(self, interval, last_update=None, running=True, reads_back=None):
        self.interval = interval
        self.last_update = last_update
        self.running = running
        self.reads_back = reads_back
        self.writes = []

    async def read_interval(self):
        return self.interval

    async def read_stats(self):
        return None if self.last_update is None else {'stats': {}, 'last-update': self.last_update}

    async def read_state(self):
        return {'status': 'running' if self.running else 'paused', 'running': self.running}

    async def write_interval(self, interval, live=True, config=False):
        self.writes.append((interval, live, config))
        self.interval = interval if self.reads_back is None else self.reads_back


def _polling(vm, *args, **kwargs):
    return asyncio.run(_operations.PollingOperation(*args, **kwargs)(vm))


def test_polling_writes_0_then_the_interval_to_rearm(monkeypatch):
    monkeypatch.setattr(_operations, 'time', types.SimpleNamespace(time=lambda: 1000))
    vm = ScriptedVM(10, last_update=900)
    assert _polling(vm, 10, 'stale') == {'previous_interval': 10, 'interval': 10, 'changed': True, 'rearmed': True, 'age': 100}
    assert vm.writes == [(0, True, False), (10, True, False)]


def test_polling_in_check_mode_decides_and_writes_nothing():
    vm = ScriptedVM(0)
    assert _polling(vm, 5, check_mode=True) == {'previous_interval': 0, 'interval': 5, 'changed': True, 'rearmed': False}
    assert vm.writes == []


def test_polling_reads_back_in_the_transports_words():
    vm = ScriptedVM(0, reads_back=0)
    vm.READ_BACK = 'the VM took %s but shows %r'
    with pytest.raises(BalloonError, match='^the VM took 7 but shows 0$'):
        _polling(vm, 7)


def test_one_diff_for_every_transport():
    results = [
        {'name': 'a', 'failed': False, 'previous_interval': 0, 'interval': 5, 'rearmed': False,
         'config_previous_interval': None, 'config_interval': None},
        {'name': 'b', 'failed': True, 'msg': 'b (x): no'},
        {'name': 'c', 'failed': False, 'previous_interval': 5, 'interval': 5, 'rearmed': True},
    ]
    words = _operations.DiffWords('thing', 'live value', 'saved value')
    assert _operations.polling_diff(results, words) == [
        {'before_header': 'a thing', 'after_header': 'a thing', 'before': 'live value: 0\n', 'after': 'live value: 5\n'},
        {'before_header': 'c thing', 'after_header': 'c thing', 'before': 'live value: 5\n', 'after': 'live value: 5 (re-armed)\n'},
    ]
    assert _operations.polling_diff(results[:1], words, persistent=True)[0]['after'] == 'live value: 5\nsaved value: none\n'


def test_sequential_reads_stop_at_the_first_error_and_leave_nothing_unawaited():
    class Failing(ScriptedVM):
        async def read_stats(self):
            raise BalloonError('no stats')

    vm = Failing(10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises(BalloonError, match='no stats'):
            asyncio.run(vm.together(vm.read_interval(), vm.read_stats(), vm.read_state()))
        gc.collect()
    assert [str(warning.message) for warning in caught if issubclass(warning.category, RuntimeWarning)] == []
