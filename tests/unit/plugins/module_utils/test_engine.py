# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The real engine (_qmp_executor.run_batch with PollingOperation and InfoOperation) against the fake QEMU.

Discovery, polling (idempotence, check mode, read-back, the re-arm decision table and what a
re-arm does to a stalled timer), info (names, unset values, health), VM names, order and
concurrency, and the independence of the VMs of one batch; over unix sockets and loopback TCP.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from qemu.qmp import ExecuteError
from qemu.qmp.protocol import StateError

from ansible_collections.qmp.balloon.plugins.module_utils import _operations, _qmp, _qmp_discovery, _qmp_executor
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import qmp_fakes
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils.qmp_fakes import (
    ANON_BALLOON, BACKEND, BALLOON, CLASSIC_STAT_NAMES, NOW, TRANSPORTS, U64_UNSET, VMModel,
)


def one(fleets, model, transport='unix', **kwargs):
    fleet = fleets.fleet_of([model], transport=transport, **kwargs)
    return fleet, qmp_fakes.targets_for(fleet)


def static_vm(interval=10, age=5, status='running', **kwargs):
    """A VM whose guest reported once, ``age`` seconds before NOW (None: never reported, its driver loaded all the same)."""
    if age is None:
        # A loaded driver that never sent stats: a Windows guest whose balloon service does not run.
        kwargs.setdefault('guest_driver', True)
        return VMModel(stats_mode='never', interval=interval, status=status, **kwargs)
    return VMModel(stats_mode='static', interval=interval, status=status, last_update=NOW - age, **kwargs)


def with_transports(cases, tcp):
    """Every case over unix; the cases named in ``tcp`` over TCP too (the transport does not change the logic)."""
    return [pytest.param(*(case.values + (transport,)), id='%s-%s' % (case.id, transport))
            for case in cases for transport in TRANSPORTS if transport == 'unix' or case.id in tcp]


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------

DISCOVERY = [
    # VM model fields, fault, qom_path given, QOM path used, or a pattern of the error
    pytest.param({}, None, None, BALLOON, None, id='peripheral-id'),
    pytest.param({'balloon_id': 'mem0'}, None, None, '/machine/peripheral/mem0', None, id='peripheral-other-id'),
    pytest.param({'balloon_type': 'virtio-balloon-pci-non-transitional'}, None, None, BALLOON, None, id='pci-non-transitional'),
    pytest.param({'balloon_type': 'virtio-balloon-ccw'}, None, None, BALLOON, None, id='ccw'),
    pytest.param({'balloon': 'anon'}, None, None, ANON_BALLOON, None, id='anonymous'),
    pytest.param({}, 'deep_tree', None, BALLOON, None, id='deep-tree-with-balloon'),
    pytest.param({'balloon': 'anon'}, 'cyclic_links', None, ANON_BALLOON, None, id='cyclic-links-anonymous'),
    pytest.param({'balloon': 'none'}, None, None, None,
                 r'^no virtio-balloon device in this VM: .*add -device virtio-balloon-pci,id=balloon0 to the VM '
                 r'\(on Proxmox VE, balloon: 0 removes it: qm set VMID --delete balloon, then stop and start the VM\)$', id='none'),
    pytest.param({'balloon': 'two'}, None, None, None,
                 r'^found 2 balloon devices \(/machine/peripheral/balloon0, /machine/peripheral/balloon1\): set qom_path to the one to use$',
                 id='two'),
    pytest.param({'balloon': 'two'}, None, '/machine/peripheral/balloon1', '/machine/peripheral/balloon1', None, id='two-qom-path-chooses'),
    pytest.param({}, None, BALLOON, BALLOON, None, id='qom-path-valid'),
    pytest.param({}, None, BACKEND, BACKEND, None, id='qom-path-backend'),
    pytest.param({}, None, 'balloon0', 'balloon0', None, id='qom-path-partial'),
    pytest.param({'balloon': 'anon'}, None, ANON_BALLOON, ANON_BALLOON, None, id='qom-path-anonymous'),
    pytest.param({}, None, '/machine/peripheral/nope', None,
                 r"^qom_path /machine/peripheral/nope does not exist in this VM \(Device '/machine/peripheral/nope' not found\)$",
                 id='qom-path-nonexistent'),
    pytest.param({}, None, '/machine/peripheral', None,
                 r'^qom_path /machine/peripheral is not a virtio-balloon device: it has no guest-stats-polling-interval property$',
                 id='qom-path-container'),
    pytest.param({}, None, '/machine/unattached/device[0]', None,
                 r'^qom_path /machine/unattached/device\[0\] is not a virtio-balloon device', id='qom-path-cpu'),
    pytest.param({'balloon': 'none'}, None, BALLOON, None, r'^qom_path /machine/peripheral/balloon0 does not exist in this VM',
                 id='qom-path-without-balloon'),
]


@pytest.mark.parametrize('fields, fault, qom_path, expected_path, error, transport',
                         with_transports(DISCOVERY, tcp=('peripheral-id', 'anonymous', 'none', 'two', 'qom-path-valid', 'qom-path-nonexistent')))
def test_discovery(fleets, transport, fields, fault, qom_path, expected_path, error):
    fleet = fleets.fleet_of([VMModel(**fields)], transport=transport, fault=fault)
    endpoint = fleet[0]
    # require_balloon: the discovery's sentence for a VM without a balloon (else a state: test_absent_balloon_*)
    [result] = qmp_fakes.info(qmp_fakes.targets_for(fleet, qom_paths={endpoint.name: qom_path}), require_balloon=True)
    if error is None:
        assert result['failed'] is False, result.get('msg')
        assert result['qom_path'] == expected_path
        assert result['polling_interval'] == 0
    else:
        assert result['failed'] is True
        prefix = '%s (%s): ' % (result['name'], qmp_fakes.engine_endpoint(endpoint))
        assert result['msg'].startswith(prefix)
        assert qmp_fakes.matches(error, result['msg'][len(prefix):]), result['msg']
        assert result['qom_path'] == qom_path
    listed = qmp_fakes.qom_lists(fleet.record)
    if qom_path:
        assert listed == [qom_path], 'a given qom_path is verified, not searched for'
    elif expected_path:
        # Its type (child<virtio-balloon-...>) vouches for both properties, and the reads prove them.
        assert expected_path not in listed, 'a path found by its type is not listed again'
    assert 'qom-set' not in qmp_fakes.commands(fleet.record)


@pytest.mark.parametrize('fault', ['deep_tree', 'cyclic_links'])
def test_tree_walk_terminates_within_its_bounds(fleets, fault):
    """No balloon where QEMU puts devices: the fallback walk stops at WALK_MAX_LISTS lists and WALK_MAX_DEPTH levels."""
    fleet = fleets.fleet_of([VMModel(balloon='none')], fault=fault)
    [result] = qmp_fakes.info(qmp_fakes.targets_for(fleet), timeout=30, require_balloon=True)
    assert result['failed'] is True and 'no virtio-balloon device in this VM' in result['msg'], result['msg']
    listed = qmp_fakes.qom_lists(fleet.record)
    assert listed[:2] == list(_qmp_discovery.PERIPHERAL_CONTAINERS)
    walked = listed[2:]
    assert walked[0] == '/machine'
    assert len(walked) <= _qmp_discovery.WALK_MAX_LISTS
    assert len(walked) == len(set(walked)), 'a path is listed twice'
    assert not set(walked) & set(_qmp_discovery.PERIPHERAL_CONTAINERS)
    assert max(path.count('/') for path in walked) <= _qmp_discovery.WALK_MAX_DEPTH


def test_tree_walk_depth_bound_alone_stops_a_deep_chain(fleets, monkeypatch):
    monkeypatch.setattr(_qmp_discovery, 'WALK_MAX_LISTS', 100000)
    fleet = fleets.fleet_of([VMModel(balloon='none')], fault='deep_tree')
    [result] = qmp_fakes.info(qmp_fakes.targets_for(fleet), timeout=60, require_balloon=True)
    assert result['failed'] is True and 'no virtio-balloon device' in result['msg'], result['msg']
    walked = qmp_fakes.qom_lists(fleet.record)[2:]
    assert '/machine/unattached/deep-chain/level[1]/level[2]/level[3]' in walked
    assert max(path.count('/') for path in walked) == _qmp_discovery.WALK_MAX_DEPTH
    assert not any('level[4]' in path for path in walked)


@pytest.mark.parametrize('qom_type, expected', [
    ('child<virtio-balloon-pci>', True),
    ('child<virtio-balloon-pci-transitional>', True),
    ('child<virtio-balloon-pci-non-transitional>', True),
    ('child<virtio-balloon-ccw>', True),
    ('child<virtio-balloon-device>', True),
    ('child<virtio-balloon>', True),
    ('link<virtio-balloon-pci>', False),
    ('child<virtio-blk-pci>', False),
    ('child<container>', False),
    ('', False),
    (None, False),
])
def test_balloon_types(qom_type, expected):
    assert _qmp_discovery.is_balloon_type(qom_type) is expected


# ---------------------------------------------------------------------------------------------
# Polling
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('transport', TRANSPORTS)
@pytest.mark.parametrize('start, wanted', [(0, 10), (10, 2), (10, 0), (0, 4294967295), (7, 7)])
def test_polling_sets_reads_back_and_is_idempotent(fleets, transport, start, wanted):
    fleet, targets = one(fleets, VMModel(interval=start), transport)
    model = fleet.vms[0]
    [first] = qmp_fakes.polling(targets, wanted)
    assert first['failed'] is False, first.get('msg')
    assert first['previous_interval'] == start and first['interval'] == wanted
    assert first['changed'] is (start != wanted) and first['rearmed'] is False
    assert model.interval == wanted
    sent = qmp_fakes.commands(fleet.record)
    if start != wanted:
        assert qmp_fakes.qom_sets(fleet.record) == [wanted]
        # Read before, and verify the path (qom-list), then write, then read back.
        write = sent.index('qom-set')
        assert sent[write:] == ['qom-set', 'qom-get']
        assert 'qom-get' in sent[:write] and 'qom-list' in sent[:write]
    else:
        assert 'qom-set' not in sent
    fleet.record.clear()
    [second] = qmp_fakes.polling(targets, wanted)
    assert second['changed'] is False and second['previous_interval'] == wanted == second['interval']
    assert 'qom-set' not in qmp_fakes.commands(fleet.record)


@pytest.mark.parametrize('transport', TRANSPORTS)
@pytest.mark.parametrize('rearm', _operations.REARM_CHOICES)
def test_check_mode_writes_nothing(fleets, clock, transport, rearm):
    models = [static_vm(interval=0), static_vm(interval=10, age=1000), static_vm(interval=10, age=1)]
    fleet = fleets.fleet_of(models, transport=transport)
    results = qmp_fakes.polling(qmp_fakes.targets_for(fleet), 10, rearm=rearm, check_mode=True)
    assert [result['failed'] for result in results] == [False] * 3
    assert results[0]['changed'] is True and results[0]['interval'] == 10 and results[0]['previous_interval'] == 0
    assert results[1]['changed'] is (rearm != 'never') and results[1]['rearmed'] is (rearm != 'never')
    assert results[2]['changed'] is (rearm == 'always')
    assert [model.interval for model in models] == [0, 10, 10]
    assert 'qom-set' not in qmp_fakes.commands(fleet.record)


REARM_TABLE = [
    # rearm, run state, age of the last update (None: never), interval now, interval wanted, qom-set values, changed, rearmed
    pytest.param('never', 'running', 1000, 10, 10, [], False, False, id='never-stalled'),
    pytest.param('stale', 'running', 31, 10, 10, [0, 10], True, True, id='stale-just-past-3x'),
    pytest.param('stale', 'running', 1000, 10, 10, [0, 10], True, True, id='stale-stalled'),
    pytest.param('stale', 'running', 30, 10, 10, [], False, False, id='stale-exactly-3x'),
    pytest.param('stale', 'running', 5, 10, 10, [], False, False, id='stale-fresh'),
    pytest.param('stale', 'paused', 1000, 10, 10, [], False, False, id='stale-paused'),
    pytest.param('stale', 'prelaunch', 1000, 10, 10, [], False, False, id='stale-prelaunch'),
    pytest.param('stale', 'running', None, 10, 10, [], False, False, id='stale-never-updated'),
    pytest.param('stale', 'running', 1000, 0, 0, [], False, False, id='stale-interval-0'),
    pytest.param('stale', 'running', 1000, 5, 10, [10], True, False, id='stale-new-interval'),
    pytest.param('stale', 'running', 1000, 10, 0, [0], True, False, id='stale-disable'),
    pytest.param('always', 'running', 5, 10, 10, [0, 10], True, True, id='always-fresh'),
    pytest.param('always', 'paused', 5, 10, 10, [0, 10], True, True, id='always-paused'),
    pytest.param('always', 'running', None, 10, 10, [0, 10], True, True, id='always-never-updated'),
    pytest.param('always', 'running', 5, 0, 0, [], False, False, id='always-interval-0'),
    pytest.param('always', 'running', 5, 5, 10, [10], True, False, id='always-new-interval'),
    pytest.param('never', 'running', 5, 0, 10, [10], True, False, id='never-enable'),
]


@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
@pytest.mark.parametrize('rearm, status, age, start, wanted, writes, changed, rearmed', REARM_TABLE)
def test_rearm_decision_table(fleets, clock, check_mode, rearm, status, age, start, wanted, writes, changed, rearmed):
    fleet, targets = one(fleets, static_vm(interval=start, age=age, status=status))
    [result] = qmp_fakes.polling(targets, wanted, rearm=rearm, check_mode=check_mode)
    assert result['failed'] is False, result.get('msg')
    assert (result['changed'], result['rearmed']) == (changed, rearmed)
    assert result['previous_interval'] == start
    assert result['interval'] == wanted
    looked_at_age = rearm == 'stale' and start == wanted and wanted > 0
    if looked_at_age:
        assert result['age'] == age
    else:
        assert 'age' not in result
    assert qmp_fakes.qom_sets(fleet.record) == ([] if check_mode else writes)
    assert fleet.vms[0].interval == (start if check_mode else wanted)


def _stalled_live_vm(clock):
    """A live guest that answered until 100 s ago, then stopped: last-update froze and the timer died."""
    clock.now = NOW - 100
    model = VMModel(stats_mode='live', interval=2, clock=clock)
    assert model.guest_stats()['last-update'] == NOW - 100
    model.stalled = True
    clock.now = NOW
    assert model.guest_stats()['last-update'] == NOW - 100
    return model


async def _write_same_value(vm):
    session, qom_path = vm.session, vm.qom_path
    await _qmp_executor.write_interval(session, qom_path, 2)
    stats = await _qmp_executor.read_guest_stats(session, qom_path)
    return {'changed': False, 'last_update_after': stats['last-update']}


@pytest.mark.parametrize('transport', TRANSPORTS)
@pytest.mark.parametrize('how, revived', [
    ('stale', True),
    ('always', True),
    ('never', False),
    ('write-same-value', False),
])
def test_rearm_revives_a_stalled_live_timer(fleets, clock, transport, how, revived):
    """QEMU's timer rule (modelled by the fake): the same value does nothing, 0 then N fires a new timer at once."""
    model = _stalled_live_vm(clock)
    fleet, targets = one(fleets, model, transport)
    if how == 'write-same-value':
        [result] = qmp_fakes.run_batch(targets, _write_same_value)
        assert result['last_update_after'] == NOW - 100
        assert qmp_fakes.qom_sets(fleet.record) == [2]
    else:
        [result] = qmp_fakes.polling(targets, 2, rearm=how)
        assert result['rearmed'] is revived and result['changed'] is revived
        assert qmp_fakes.qom_sets(fleet.record) == ([0, 2] if revived else [])
    assert result['failed'] is False, result.get('msg')
    assert model.interval == 2
    assert model.guest_stats()['last-update'] == (NOW if revived else NOW - 100)
    assert model.stalled is not revived
    # And the info module sees it.
    [after] = qmp_fakes.info(targets)
    assert after['health'] == ('ok' if revived else 'stale')


def test_read_back_mismatch_fails_the_vm(fleets, monkeypatch):
    fleet, targets = one(fleets, VMModel(interval=0))
    monkeypatch.setattr(fleet.vms[0], 'set_interval', lambda value: None)  # QEMU says yes but keeps 0
    [result] = qmp_fakes.polling(targets, 10)
    assert result['failed'] is True
    assert result['msg'].endswith(': QEMU accepted guest-stats-polling-interval = 10 but reads back 0')


@pytest.mark.parametrize('fault_on, expected', [
    ('qom-set', "QEMU refused qom-set of guest-stats-polling-interval on /machine/peripheral/balloon0 = 10 (GenericError): "
                'Injected failure (fake QMP error_everything)'),
    ('qom-get', 'QEMU refused qom-get of guest-stats-polling-interval on /machine/peripheral/balloon0 (GenericError): '
                'Injected failure (fake QMP error_everything)'),
])
def test_qemu_refusing_a_command_fails_the_vm(fleets, fault_on, expected):
    fleet = fleets.fleet_of([VMModel(interval=0)], fault='error_everything', options=qmp_fakes.FaultOptions(fault_on=fault_on))
    [result] = qmp_fakes.polling(qmp_fakes.targets_for(fleet), 10)
    assert result['failed'] is True and result['msg'].endswith('): ' + expected)
    assert fleet.vms[0].interval == 0


# ---------------------------------------------------------------------------------------------
# Info
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('transport', TRANSPORTS)
def test_info_normalises_names_and_passes_new_stats_through(fleets, clock, transport):
    raw = qmp_fakes.default_stats(2048 * 1024 * 1024, extra=True)
    raw['stat-some-future-counter'] = 7
    fleet, targets = one(fleets, static_vm(interval=10, age=4, stats=dict(raw), extra_stats=True), transport)
    [result] = qmp_fakes.info(targets)
    assert result['failed'] is False, result.get('msg')
    assert result['stats'] == qmp_fakes.expected_stats(raw)
    assert {'free_memory', 'total_memory', 'available_memory', 'disk_caches', 'swap_in', 'swap_out', 'major_faults', 'minor_faults',
            'htlb_pgalloc', 'htlb_pgfail', 'oom_kills', 'alloc_stalls', 'async_scans', 'direct_scans', 'async_reclaims',
            'direct_reclaims', 'some_future_counter'} == set(result['stats'])
    assert result['unsupported'] == []
    assert result['used_memory'] == raw['stat-total-memory'] - raw['stat-free-memory']
    assert result['used_percent'] == round(100.0 * result['used_memory'] / raw['stat-total-memory'], 1)
    assert (result['last_update'], result['age'], result['polling_interval'], result['vm_status'], result['health']) == \
        (NOW - 4, 4, 10, 'running', 'ok')
    assert result['last_update_iso'] == '2023-11-14T22:13:16Z'
    assert qmp_fakes.commands(fleet.record).count('qom-set') == 0


ALL_UNSET = dict((name[len('stat-'):].replace('-', '_'), None) for name in CLASSIC_STAT_NAMES)
PARTIAL = {'stat-free-memory': 100 * 1024 * 1024, 'stat-total-memory': 400 * 1024 * 1024, 'stat-swap-in': 0}
PARTIAL_NORMALISED = dict(ALL_UNSET, free_memory=100 * 1024 * 1024, total_memory=400 * 1024 * 1024, swap_in=0)


UNSET_CASES = [
    # guest_driver: the driver is loaded but never sent stats (else the health would be driver_not_loaded)
    pytest.param({'stats_mode': 'never', 'guest_driver': True}, ALL_UNSET, sorted(ALL_UNSET), 0, 'never_updated', id='never-u64'),
    pytest.param({'stats_mode': 'never', 'guest_driver': True, 'unset_value': -1}, ALL_UNSET, sorted(ALL_UNSET), 0, 'never_updated',
                 id='never-minus-one'),
    pytest.param({'stats_mode': 'never', 'guest_driver': True, 'no_stats_error': True}, {}, [], 0, 'never_updated', id='old-qemu-error'),
    pytest.param({'stats_mode': 'static', 'stats': dict(PARTIAL), 'last_update': NOW - 3}, PARTIAL_NORMALISED,
                 sorted(set(ALL_UNSET) - {'free_memory', 'total_memory', 'swap_in'}), NOW - 3, 'ok', id='partial-u64'),
    pytest.param({'stats_mode': 'static', 'stats': dict(PARTIAL), 'last_update': NOW - 3, 'unset_value': -1}, PARTIAL_NORMALISED,
                 sorted(set(ALL_UNSET) - {'free_memory', 'total_memory', 'swap_in'}), NOW - 3, 'ok', id='partial-minus-one'),
    pytest.param({'stats_mode': 'static', 'stats': dict(PARTIAL, **{'stat-disk-caches': U64_UNSET}), 'last_update': NOW - 3},
                 PARTIAL_NORMALISED, sorted(set(ALL_UNSET) - {'free_memory', 'total_memory', 'swap_in'}), NOW - 3, 'ok',
                 id='explicit-u64'),
]


@pytest.mark.parametrize('fields, stats, unsupported, last_update, health, transport',
                         with_transports(UNSET_CASES, tcp=('never-u64', 'partial-u64')))
def test_info_unset_values_are_null(fleets, clock, transport, fields, stats, unsupported, last_update, health):
    fleet, targets = one(fleets, VMModel(interval=10, **fields), transport)
    [result] = qmp_fakes.info(targets)
    assert result['failed'] is False, result.get('msg')
    assert result['stats'] == stats
    assert result['unsupported'] == unsupported
    assert result['last_update'] == last_update
    assert result['health'] == health
    if not last_update:
        assert result['age'] is None and result['last_update_iso'] is None
    if stats.get('total_memory') is None:
        assert result['used_memory'] is None and result['used_percent'] is None
    else:
        assert result['used_memory'] == 300 * 1024 * 1024 and result['used_percent'] == 75.0


HEALTH_TABLE = [
    # interval, age of the last update (None: never), run state, health
    pytest.param(0, 5, 'running', 'polling_disabled', id='polling-disabled'),
    pytest.param(0, None, 'running', 'polling_disabled', id='polling-disabled-never-updated'),
    pytest.param(0, 5000, 'paused', 'polling_disabled', id='polling-disabled-paused'),
    pytest.param(10, None, 'running', 'never_updated', id='never-updated'),
    pytest.param(10, None, 'paused', 'never_updated', id='never-updated-paused'),
    pytest.param(10, 0, 'running', 'ok', id='ok-just-now'),
    pytest.param(10, 30, 'running', 'ok', id='ok-exactly-3x'),
    pytest.param(10, 31, 'running', 'stale', id='stale'),
    pytest.param(1, 4, 'running', 'stale', id='stale-short-interval'),
    pytest.param(10, 31, 'paused', 'vm_not_running', id='paused'),
    pytest.param(10, 5000, 'prelaunch', 'vm_not_running', id='prelaunch'),
    pytest.param(10, 5, 'paused', 'ok', id='paused-but-fresh'),
]


@pytest.mark.parametrize('interval, age, status, health', HEALTH_TABLE)
def test_info_health(fleets, clock, interval, age, status, health):
    fleet, targets = one(fleets, static_vm(interval=interval, age=age, status=status))
    [result] = qmp_fakes.info(targets)
    assert result['failed'] is False, result.get('msg')
    assert (result['health'], result['age'], result['polling_interval'], result['vm_status']) == (health, age, interval, status)
    assert result['last_update'] == (NOW - age if age is not None else 0)


def test_info_health_follows_a_live_guest(fleets, clock):
    """The fake's live timer on the shared clock: ok while it answers, stale when stalled, vm_not_running when paused."""
    model = VMModel(stats_mode='live', interval=2, boot_report=False, clock=clock)
    fleet, targets = one(fleets, model)

    def health():
        [result] = qmp_fakes.info(targets)
        assert result['failed'] is False, result.get('msg')
        return result['health'], result['age']

    assert health() == ('ok', 0)
    clock.advance(5)
    assert health() == ('ok', 1)
    model.stalled = True
    clock.advance(30)
    assert health() == ('stale', 31)
    model.set_status('paused')
    assert health() == ('vm_not_running', 31)
    model.set_status('running')
    [rearmed] = qmp_fakes.polling(targets, 2, rearm='stale')
    assert rearmed['rearmed'] is True
    assert health() == ('ok', 0)
    [disabled] = qmp_fakes.polling(targets, 0)
    assert disabled['changed'] is True
    assert health() == ('polling_disabled', 0)
    clock.advance(100)
    assert health() == ('polling_disabled', 100)


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('transport', TRANSPORTS)
@pytest.mark.parametrize('qemu_name, given, expected, asks', [
    pytest.param('guest-a', None, 'guest-a', True, id='query-name'),
    pytest.param(None, None, None, True, id='fallback'),
    pytest.param('guest-a', 'mine', 'mine', False, id='given'),
    pytest.param('', None, None, True, id='empty-query-name'),
])
def test_names(fleets, transport, qemu_name, given, expected, asks):
    fleet = fleets.fleet_of([VMModel(name=qemu_name)], transport=transport, names=['web01'])
    endpoint = fleet[0]
    [result] = qmp_fakes.info(qmp_fakes.targets_for(fleet, names={'web01': given}))
    if expected is None:
        expected = 'web01' if transport == 'unix' else '127.0.0.1:%d' % endpoint.port
    assert result['name'] == expected and result['failed'] is False
    assert ('query-name' in qmp_fakes.commands(fleet.record)) is asks
    assert result['endpoint'] == (('unix:%s' % endpoint.path) if transport == 'unix' else 'tcp:127.0.0.1:%d' % endpoint.port)


@pytest.mark.parametrize('file_name, expected', [
    ('vm7.qmp', 'vm7'),
    ('web.example.com.qmp', 'web.example.com'),
    ('monitor', 'monitor'),
    ('101.qmp', '101'),
    ('.qmp', '.qmp'),
])
def test_socket_names(fleets, short_dir, file_name, expected):
    server = fleets.server(path=os.path.join(short_dir, file_name), vm=VMModel())
    [result] = qmp_fakes.info([_qmp_executor.Target(_qmp.Endpoint(path=server.path))])
    assert result['name'] == expected and result['failed'] is False


def test_name_of_a_vm_that_failed_before_query_name(fleets, short_dir):
    path = os.path.join(short_dir, 'gone.qmp')
    [result] = qmp_fakes.info([_qmp_executor.Target(_qmp.Endpoint(path=path)), ])
    assert result['name'] == 'gone' and result['msg'].startswith('gone (unix:%s): the socket %s does not exist' % (path, path))
    [named] = qmp_fakes.info([_qmp_executor.Target(_qmp.Endpoint(path=path), name='db1')])
    assert named['name'] == 'db1' and named['msg'].startswith('db1 (unix:%s): ' % path)
    [tcp] = qmp_fakes.info([_qmp_executor.Target(_qmp.Endpoint(host='::1', port=1))])
    assert tcp['name'] == '::1:1' and tcp['msg'].startswith('::1:1 (tcp:[::1]:1): nothing is listening')


# ---------------------------------------------------------------------------------------------
# Order, concurrency, independence
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('transport', TRANSPORTS)
@pytest.mark.parametrize('concurrency', [1, 3, 32])
def test_results_in_input_order_whatever_the_concurrency(fleets, monkeypatch, transport, concurrency):
    """The first VMs answer slowest, so completion order is not input order; at most ``concurrency`` sessions at once."""
    names = ['slow0', 'slow1', 'vm2', 'vm3', 'vm4', 'vm5', 'vm6']
    fleet = fleets.fleet(len(names), transport=transport, names=names, fault={'slow0': 'delay', 'slow1': 'delay'},
                         options=qmp_fakes.FaultOptions(delay=0.15, fault_on='query-status'))
    counter = qmp_fakes.SessionCounter()
    monkeypatch.setattr(_qmp_executor, 'QMPSession', counter.session_class())
    # slow_after=30: the bound is exact only while no session gives its slot back, and on a loaded
    # machine a 0.15 s VM can pass SLOW_AFTER (0.25 s); the give-back has its own tests (test_faults).
    results = qmp_fakes.info(qmp_fakes.targets_for(fleet), concurrency=concurrency, timeout=5, slow_after=30)
    assert [result['name'] for result in results] == names
    assert [result['failed'] for result in results] == [False] * len(names)
    assert [result['endpoint'] for result in results] == [str(qmp_fakes.engine_endpoint(endpoint)) for endpoint in fleet]
    assert counter.opened == len(names) and counter.current == 0
    assert counter.peak == min(concurrency, len(names))
    if concurrency == 1:
        sessions = [entry['endpoint'] for entry in fleet.record if entry['command'] == 'qmp_capabilities']
        assert sessions == names, 'concurrency 1 handles the VMs one after the other, in order'
        first_of_next = [entry['endpoint'] for entry in fleet.record]
        assert first_of_next == sorted(first_of_next, key=names.index), 'sessions did not overlap'


def test_empty_batch():
    assert _qmp_executor.run_batch([], _operations.InfoOperation()) == []


def _healthy_models():
    return [static_vm(interval=10, age=3, name='a'), static_vm(interval=0, age=None, name='b'), static_vm(interval=5, age=99, name='c')]


def _without_volatile(result):
    return dict((key, value) for key, value in result.items() if key not in ('endpoint',))


@pytest.mark.parametrize('work', ['info', 'polling'])
def test_one_failing_vm_never_affects_the_others(fleets, clock, short_dir, work):
    run = (lambda targets: qmp_fakes.info(targets, timeout=20)) if work == 'info' else \
        (lambda targets: qmp_fakes.polling(targets, 10, rearm='stale', timeout=20))
    alone = fleets.fleet_of(_healthy_models())
    expected = [_without_volatile(result) for result in run(qmp_fakes.targets_for(alone))]
    assert [result['failed'] for result in expected] == [False] * 3

    healthy = fleets.fleet_of(_healthy_models())
    broken = fleets.fleet_of([VMModel(name='nob', balloon='none'), VMModel(name='err'), VMModel(name='two', balloon='two')],
                             fault={'vm001': 'error_everything'})
    dead = os.path.join(short_dir, 'dead.qmp')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(dead)
    try:
        mixed = [
            _qmp_executor.Target(_qmp.Endpoint(path=os.path.join(short_dir, 'missing.qmp'))),
            qmp_fakes.targets_for(healthy)[0],
            qmp_fakes.targets_for(broken)[0],
            _qmp_executor.Target(_qmp.Endpoint(path=dead)),
            qmp_fakes.targets_for(healthy)[1],
            qmp_fakes.targets_for(broken)[1],
            _qmp_executor.Target(_qmp.Endpoint(host='127.0.0.1', port=1)),
            qmp_fakes.targets_for(healthy)[2],
            qmp_fakes.targets_for(broken)[2],
        ]
        results = run(mixed)
    finally:
        listener.close()
    # broken[0] (nob) has no balloon: a state, not a failure (skipped by polling)
    assert [result['failed'] for result in results] == [True, False, False, True, False, True, True, False, True]
    assert results[2]['health' if work == 'info' else 'skipped'] == ('no_balloon_device' if work == 'info' else True)
    assert [_without_volatile(results[index]) for index in (1, 4, 7)] == expected
    for result, target in zip(results, mixed):
        if result['failed']:
            assert not qmp_fakes.sentence_problems(result['msg'], result['name'], target.endpoint), result['msg']
    if work == 'polling':
        assert [model.interval for model in healthy.vms] == [10, 10, 10]
        assert [model.interval for model in broken.vms] == [0, 0, 0]


# ---------------------------------------------------------------------------------------------
# The client: _Client.run() is qemu.qmp's execute() with one serialisation
# ---------------------------------------------------------------------------------------------

def test_client_run_answers_and_fails_like_execute(fleets):
    fleet, targets = one(fleets, VMModel(name='vm0', stats_mode='static', interval=10, last_update=NOW - 3))
    path = targets[0].endpoint.path

    async def scenario():
        client = _qmp._Client('unit')
        await client.connect(path)
        try:
            for command, arguments in (('query-name', None), ('query-status', None),
                                       ('qom-get', {'path': qmp_fakes.BALLOON, 'property': 'guest-stats'}),
                                       ('qom-list', {'path': '/machine/peripheral'})):
                assert await client.run(command, arguments) == await client.execute(command, arguments)
            arguments = {'path': '/machine/nowhere', 'property': 'guest-stats'}
            with pytest.raises(ExecuteError) as by_run:
                await client.run('qom-get', arguments)
            with pytest.raises(ExecuteError) as by_execute:
                await client.execute('qom-get', arguments)
            assert (by_run.value.error_class, str(by_run.value)) == (by_execute.value.error_class, str(by_execute.value))
            assert by_run.value.error_class == 'DeviceNotFound'
        finally:
            await client.disconnect()
        with pytest.raises(StateError):
            await client.run('query-name')

    asyncio.run(scenario())
    # Each command went out once, as one message with its own id.
    assert qmp_fakes.commands(fleet.record).count('query-name') == 2


def test_client_sends_queued_commands_in_one_write(fleets, monkeypatch):
    """The commands the engine pipelines go out in one write each time: discovery with query-name, then the three reads."""
    fleet, targets = one(fleets, static_vm())
    writes = []
    send_all = _qmp._Client._do_send_all

    def recording(client, messages):
        writes.append([msg['execute'] for msg in messages])
        return send_all(client, messages)
    monkeypatch.setattr(_qmp._Client, '_do_send_all', recording)
    [result] = qmp_fakes.info(targets)
    assert result['failed'] is False, result.get('msg')
    # (then, for a VM whose health is not ok, x-query-virtio-status on its own)
    assert [sorted(write) for write in writes[:2]] == [['qom-list', 'query-name'], ['qom-get', 'qom-get', 'query-status']]
    # The same commands reached the server, in the same order (qemu.qmp negotiates before its writer runs).
    assert qmp_fakes.commands(fleet.record) == ['qmp_capabilities'] + [command for write in writes for command in write]
