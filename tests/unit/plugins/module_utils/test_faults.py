# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every fault of the fake QEMU, in a batch with healthy VMs, through the real engine.

The healthy VMs' results are complete and right; a faulty VM is ``failed`` with one plain
sentence ``NAME (ENDPOINT): ...``; the batch ends within the timeout; no file descriptor,
asyncio task or socket is left behind; a busy, dead or missing monitor is named as such.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
import warnings

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _batch, _operations, _qmp, _qmp_executor
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import qmp_fakes
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils.qmp_fakes import NOW, FaultOptions, VMModel, fake_qmp

TIMEOUT = 1
#: The batch must end within the timeout plus this (connect, the slowest VM's close, asyncio.run's shutdown).
SLACK = 1.5
#: Longer than TIMEOUT: a delayed reply comes too late.
DELAY = 2.0

# fault id: (fault, banner or None, pattern of the faulty VM's message after "NAME (ENDPOINT): ", or None when it still works)
FAULTS = {
    'no_greeting': ('no_greeting', None, r'sent no QMP greeting within 1 s: the monitor is busy'),
    'garbage_greeting': ('garbage_greeting', None, r'is not a QMP server: it did not send a valid QMP greeting'),
    'banner_ssh': ('banner', 'ssh', r'is not a QMP server: it did not send a valid QMP greeting'),
    'banner_http': ('banner', 'http', r'is not a QMP server: it did not send a valid QMP greeting'),
    'close_after_greeting': ('close_after_greeting', None, r'(reset|closed) the connection before the QMP session started'),
    'close_mid_reply': ('close_mid_reply', None, r'^the connection to .* broke during query-name'),
    'delay': ('delay', None, r'^QEMU did not answer query-name within the 1 s timeout$'),
    # Over 10 MB through the fake: on a loaded machine the transfer itself may outlast the 1 s budget.
    'huge_reply': ('huge_reply', None, r'^(the connection to .* broke during query-name|QEMU did not answer query-name within the 1 s timeout$)'),
    'invalid_json_reply': ('invalid_json_reply', None, r'^the connection to .* broke during query-name'),
    'error_everything': ('error_everything', None, r'^QEMU refused query-name \(GenericError\): Injected failure'),
    'wrong_id': ('wrong_id', None, r'^QEMU did not answer query-name within the 1 s timeout$'),
    'events': ('events', None, None),
    'no_balloon': ('no_balloon', None, r'^no virtio-balloon device in this VM'),
    'two_balloons': ('two_balloons', None, r'^found 2 balloon devices .*: set qom_path to the one to use$'),
    'deep_tree': ('deep_tree', None, None),
    'cyclic_links': ('cyclic_links', None, None),
}
FAILING = sorted(key for key, case in FAULTS.items() if case[2])


def test_every_fault_of_the_fake_is_covered():
    assert set(case[0] for case in FAULTS.values()) == fake_qmp.FAULTS


def healthy_vm(name):
    return VMModel(name=name, stats_mode='static', interval=10, last_update=NOW - 3)


def fault_fleet(fleets, fault_ids, transport='unix'):
    """ok0, one endpoint per fault id, ok1: each VM the same healthy model, plus its fault."""
    names = ['ok0'] + list(fault_ids) + ['ok1']
    faults = dict((key, FAULTS[key][0]) for key in fault_ids)
    fleet = fleets.fleet(len(names), transport=transport, names=names, fault=faults,
                         vm=lambda index, name: healthy_vm(name),
                         options=FaultOptions(delay=DELAY))
    for key in fault_ids:
        banner = FAULTS[key][1]
        if banner:
            fleet[key].options.banner = fake_qmp.BANNERS[banner]
    return fleet


class Watch(object):
    """What one batch leaves behind: descriptors, asyncio tasks, asyncio log records, warnings."""

    def __init__(self, monkeypatch, caplog, *fleets):
        self.fleets = fleets
        self.tasks = qmp_fakes.TaskWatch(monkeypatch)
        self.caplog = caplog
        caplog.set_level(logging.DEBUG, logger='asyncio')
        self.fds_before = None
        self.elapsed = None
        self._warnings = None
        self.warnings = None

    def __enter__(self):
        gc.collect()
        self.fds_before = qmp_fakes.open_fds() - qmp_fakes.fake_client_fds(*self.fleets)
        self._warnings = warnings.catch_warnings(record=True)
        self.warnings = self._warnings.__enter__()
        warnings.simplefilter('always')
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc_info):
        self.elapsed = time.monotonic() - self.started
        gc.collect()
        self._warnings.__exit__(*exc_info)

    def check(self, limit):
        assert self.elapsed <= limit, 'the batch took %.2f s' % self.elapsed
        assert qmp_fakes.wait_for_fds(self.fds_before, *self.fleets) <= self.fds_before, 'file descriptors leaked'
        assert self.tasks.leftover == [], 'asyncio tasks left running'
        # "Task was destroyed but it is pending", "unhandled exception during asyncio.run() shutdown", ...
        asyncio_records = [record.getMessage() for record in self.caplog.records
                           if record.name.startswith('asyncio') and record.levelno >= logging.WARNING]
        assert asyncio_records == []
        # Unclosed sockets and transports, coroutines never awaited.
        left = [str(warning.message) for warning in self.warnings if issubclass(warning.category, (ResourceWarning, RuntimeWarning))]
        assert left == []


def check_healthy(result, name):
    assert result['failed'] is False, result.get('msg')
    assert (result['name'], result['qom_path'], result['health'], result['age'], result['polling_interval'], result['vm_status']) == \
        (name, qmp_fakes.BALLOON, 'ok', 3, 10, 'running')
    assert result['stats'] == qmp_fakes.expected_stats(qmp_fakes.default_stats(VMModel().memory))
    assert 'msg' not in result


def check_failed(result, endpoint, pattern):
    assert result['failed'] is True
    prefix = '%s (%s): ' % (result['name'], endpoint)
    assert result['msg'].startswith(prefix), result['msg']
    assert qmp_fakes.matches(pattern, result['msg'][len(prefix):]), result['msg']
    for text in ('Traceback', 'Errno', 'File "'):
        assert text not in result['msg']


@pytest.mark.parametrize('fault_id', sorted(FAULTS))
def test_fault_in_a_batch_with_healthy_vms(fleets, clock, monkeypatch, caplog, fault_id):
    fleet = fault_fleet(fleets, [fault_id])
    targets = qmp_fakes.targets_for(fleet)
    # require_balloon: a VM without a balloon is one of the failures here (else a state)
    with Watch(monkeypatch, caplog, fleet) as watch:
        results = qmp_fakes.info(targets, timeout=TIMEOUT, require_balloon=True)
    watch.check(TIMEOUT + SLACK)
    check_healthy(results[0], 'ok0')
    check_healthy(results[2], 'ok1')
    pattern = FAULTS[fault_id][2]
    if pattern is None:
        check_healthy(results[1], fault_id)
    else:
        assert results[1]['name'] == fault_id  # QEMU's -name, or the socket's: the same here
        check_failed(results[1], targets[1].endpoint, pattern)
        # qemu.qmp's text of a bad greeting (banner, garbage) runs over several lines: the engine keeps one.
        assert qmp_fakes.sentence_problems(results[1]['msg'], fault_id, targets[1].endpoint) == [], results[1]['msg']


@pytest.mark.parametrize('transport, work', [('unix', 'info'), ('tcp', 'polling')])
def test_all_faults_at_once(fleets, clock, monkeypatch, caplog, transport, work):
    keys = sorted(FAULTS)
    fleet = fault_fleet(fleets, keys, transport)
    targets = qmp_fakes.targets_for(fleet)
    with Watch(monkeypatch, caplog, fleet) as watch:
        if work == 'info':
            results = qmp_fakes.info(targets, timeout=TIMEOUT, require_balloon=True)
        else:
            results = qmp_fakes.polling(targets, 7, timeout=TIMEOUT, require_balloon=True)
    watch.check(TIMEOUT + SLACK)
    by_name = dict(zip(fleet.names, results))
    for key, result in by_name.items():
        # QEMU's -name once the session is up, else the socket's name or HOST:PORT.
        assert result['name'] in (key, qmp_fakes.engine_endpoint(fleet[key]).default_name())
    for key in ['ok0', 'ok1'] + [key for key in keys if FAULTS[key][2] is None]:
        if work == 'info':
            check_healthy(by_name[key], key)
        else:
            result = by_name[key]
            assert result['failed'] is False and (result['changed'], result['previous_interval'], result['interval']) == (True, 10, 7)
            assert fleet[key].vm.interval == 7
    for key in FAILING:
        pattern = FAULTS[key][2]
        if key == 'no_balloon':
            # Its fallback walk lists about 66 QOM objects; sharing a loaded CPU with a 10 MiB reply it
            # may run out of budget first. Either way it fails alone and plainly.
            pattern = r'(%s|^QEMU did not (finish|answer) qom-list within the 1 s timeout$)' % pattern
        check_failed(by_name[key], qmp_fakes.engine_endpoint(fleet[key]), pattern)
        assert fleet[key].vm.interval == 10


# ---------------------------------------------------------------------------------------------
# Busy, dead and missing monitors
# ---------------------------------------------------------------------------------------------

def _holder(path):
    """A plain client that holds the monitor (like libvirt or an open socat)."""
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.settimeout(5)
    holder.connect(path)
    assert holder.recv(4096).startswith(b'{"QMP"')
    return holder


def _greeting_delay(path):
    """Seconds until a fresh client gets the greeting (fails after 2 s)."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fresh:
        fresh.settimeout(2)
        fresh.connect(path)
        assert fresh.recv(4096).startswith(b'{"QMP"')
    return time.monotonic() - started


def test_busy_monitor_fails_within_the_timeout_and_the_engine_leaves_the_queue(fleets, clock, monkeypatch, caplog):
    server = fleets.server(vm=healthy_vm('busy-vm'), name='busy')
    healthy = fleets.fleet_of([healthy_vm('ok0')])
    holder = _holder(server.path)
    targets = [_qmp_executor.Target(_qmp.Endpoint(path=server.path))] + qmp_fakes.targets_for(healthy)
    try:
        with Watch(monkeypatch, caplog, server, healthy) as watch:
            results = qmp_fakes.info(targets, timeout=TIMEOUT)
        watch.check(TIMEOUT + SLACK)
        assert watch.elapsed >= TIMEOUT - 0.1
        check_failed(results[0], targets[0].endpoint, r'busy')
        assert results[0]['name'] == 'qmp'  # the socket's name: QEMU was never asked
        assert qmp_fakes.sentence_problems(results[0]['msg'], 'qmp', targets[0].endpoint) == []
        check_healthy(results[1], 'ok0')
        assert server.endpoint.connections == 1
    finally:
        holder.close()
    # The engine closed its socket: the fake drops it at once and a fresh client is greeted.
    assert _greeting_delay(server.path) < 1.0  # a socket left open would block it until the 2 s socket timeout
    assert server.endpoint.connections == 3
    assert qmp_fakes.commands(server.record, 'busy') == []


def test_busy_monitors_give_their_concurrency_slot_to_the_next_vm(fleets, clock, monkeypatch, caplog):
    """Three held monitors at concurrency 1 cost one timeout, not three: a slow VM stops holding its slot."""
    servers = [fleets.server(vm=healthy_vm('busy%d' % index), name='busy%d' % index) for index in range(3)]
    healthy = fleets.fleet_of([healthy_vm('ok%d' % index) for index in range(4)])
    holders = [_holder(server.path) for server in servers]
    targets = [_qmp_executor.Target(_qmp.Endpoint(path=server.path)) for server in servers] + qmp_fakes.targets_for(healthy)
    try:
        with Watch(monkeypatch, caplog, healthy, *servers) as watch:
            results = qmp_fakes.info(targets, timeout=TIMEOUT, concurrency=1)
        # One slot, given back by each busy VM after SLOW_AFTER: about TIMEOUT + 3 x SLOW_AFTER, where
        # slots held to the end would take 3 x TIMEOUT.
        watch.check(TIMEOUT + 3 * _batch.SLOW_AFTER + SLACK)
        assert watch.elapsed < 3 * TIMEOUT
        for result, target in zip(results[:3], targets):
            check_failed(result, target.endpoint, r'busy')
        for index, result in enumerate(results[3:]):
            check_healthy(result, 'ok%d' % index)
    finally:
        for holder in holders:
            holder.close()


def test_concurrency_bounds_the_sessions_served_at_once(fleets):
    """Healthy VMs never have more than ``concurrency`` sessions open at once."""
    fleet = fleets.fleet_of([healthy_vm('vm%d' % index) for index in range(12)])
    opened, peak = [0], [0]
    real_open, real_close = _qmp.QMPSession.open, _qmp.QMPSession.close

    async def counting_open(self):
        opened[0] += 1
        peak[0] = max(peak[0], opened[0])
        return await real_open(self)

    async def counting_close(self):
        try:
            return await real_close(self)
        finally:
            opened[0] -= 1

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_qmp.QMPSession, 'open', counting_open)
        patch.setattr(_qmp.QMPSession, 'close', counting_close)
        results = qmp_fakes.info(qmp_fakes.targets_for(fleet), concurrency=3, slow_after=30)
    assert [result['failed'] for result in results] == [False] * 12
    assert peak[0] == 3


def test_full_listen_queue_is_reported_busy(fleets):
    server = fleets.server(vm=healthy_vm('vm'))
    holder = _holder(server.path)
    queued = []
    try:
        while True:  # fill the kernel's queue behind the holder (backlog 1 as in QEMU)
            waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            waiting.setblocking(False)
            queued.append(waiting)
            if waiting.connect_ex(server.path) != 0:
                break
        started = time.monotonic()
        [result] = qmp_fakes.info([_qmp_executor.Target(_qmp.Endpoint(path=server.path))], timeout=TIMEOUT)
        elapsed = time.monotonic() - started
    finally:
        for sock in queued + [holder]:
            sock.close()
    assert elapsed < TIMEOUT, 'a full queue refuses at once: no need to wait for the timeout'
    endpoint = _qmp.Endpoint(path=server.path)
    check_failed(result, endpoint, r'^the monitor at unix:.* is busy: .*its queue of waiting clients is full; close the other clients')
    assert qmp_fakes.sentence_problems(result['msg'], 'qmp', endpoint) == []


def test_dead_and_missing_sockets(fleets, short_dir, monkeypatch, caplog):
    healthy = fleets.fleet_of([healthy_vm('ok0')])
    dead = os.path.join(short_dir, 'dead.qmp')
    regular = os.path.join(short_dir, 'file.qmp')
    missing = os.path.join(short_dir, 'missing.qmp')
    with open(regular, 'w'):
        pass
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(dead)  # a stale socket: bound, nobody listening (QEMU was killed)
    closed_port = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed_port.bind(('127.0.0.1', 0))  # reserved but not listening
    port = closed_port.getsockname()[1]
    targets = [
        _qmp_executor.Target(_qmp.Endpoint(path=dead)),
        _qmp_executor.Target(_qmp.Endpoint(path=missing)),
        qmp_fakes.targets_for(healthy)[0],
        _qmp_executor.Target(_qmp.Endpoint(path=regular)),
        _qmp_executor.Target(_qmp.Endpoint(host='127.0.0.1', port=port)),
    ]
    try:
        with Watch(monkeypatch, caplog, healthy) as watch:
            results = qmp_fakes.info(targets, timeout=TIMEOUT)
        watch.check(TIMEOUT + SLACK)
    finally:
        bound.close()
        closed_port.close()
    check_failed(results[0], targets[0].endpoint, r'^nothing is listening on unix:%s: QEMU has exited and left a stale socket' % dead)
    check_failed(results[1], targets[1].endpoint, r'^the socket %s does not exist: is the VM running' % missing)
    assert results[2]['failed'] is False
    check_failed(results[3], targets[3].endpoint, r'^nothing is listening on unix:%s' % regular)
    check_failed(results[4], targets[4].endpoint, r'^nothing is listening on tcp:127\.0\.0\.1:%d: QEMU is not running' % port)
    for result, target in zip(results, targets):
        if result['failed']:
            assert qmp_fakes.sentence_problems(result['msg'], result['name'], target.endpoint) == []


# ---------------------------------------------------------------------------------------------
# A budget spent between two commands
# ---------------------------------------------------------------------------------------------

async def _late_command(vm):
    """Work that spends the rest of the budget before its command (a slow walk of a big QOM tree does the same)."""
    session, qom_path = vm.session, vm.qom_path
    await asyncio.sleep(session._deadline - asyncio.get_running_loop().time() + 0.05)  # pylint: disable=protected-access
    return {'interval': await _qmp_executor.read_interval(session, qom_path)}


def _spend_the_budget(fleets):
    fleet = fleets.fleet_of([healthy_vm('vm')])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        [result] = _qmp_executor.run_batch(qmp_fakes.targets_for(fleet), _late_command, timeout=TIMEOUT)
        gc.collect()
    return fleet, result, [str(warning.message) for warning in caught]


def test_budget_spent_between_commands_fails_the_vm_alone(fleets):
    fleet, result, caught = _spend_the_budget(fleets)
    assert result['failed'] is True
    assert result['msg'] == 'vm (unix:%s): QEMU did not finish qom-get within the 1 s timeout' % fleet[0].path
    assert 'qom-get' not in qmp_fakes.commands(fleet.record), 'nothing is sent once the budget is spent'
    assert [text for text in caught if 'never awaited' in text] == []


async def _connect_then_stall(original, session):
    """The socket connects, then the rest of the budget goes by before the greeting (a TCP connect that is slow to complete)."""
    sock = await original(session)
    await asyncio.sleep(session._deadline - asyncio.get_running_loop().time() + 0.05)  # pylint: disable=protected-access
    return sock


def _spend_the_budget_connecting(fleets, monkeypatch):
    original = _qmp.QMPSession._connect_socket  # pylint: disable=protected-access
    monkeypatch.setattr(_qmp.QMPSession, '_connect_socket', lambda session: _connect_then_stall(original, session))
    fleet = fleets.fleet_of([healthy_vm('vm')], transport='tcp')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        [result] = _qmp_executor.run_batch(qmp_fakes.targets_for(fleet), _operations.InfoOperation(), timeout=TIMEOUT)
        gc.collect()
    return fleet, result, [str(warning.message) for warning in caught]


def test_budget_spent_before_the_greeting_fails_the_vm_alone(fleets, monkeypatch):
    fleet, result, caught = _spend_the_budget_connecting(fleets, monkeypatch)
    assert result['failed'] is True
    name = '127.0.0.1:%d' % fleet[0].port
    assert result['msg'] == '%s (tcp:%s): QEMU did not finish the QMP greeting within the 1 s timeout' % (name, name)
    assert qmp_fakes.commands(fleet.record) == []
    assert [text for text in caught if 'never awaited' in text] == []
