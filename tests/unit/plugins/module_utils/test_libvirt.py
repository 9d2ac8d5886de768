# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The libvirt transport (_libvirt and the modules with transport=libvirt) against a fake libvirt-python.

Name and unit mapping, the batch fast path, the polling decision table (live, config, re-arm,
check mode), transient and shut-off domains, no balloon, errors as one sentence, a libvirtd that
is unreachable, hangs or dies mid-batch, input checks that touch nothing, and the allow-list:
qemuMonitorCommand (which taints the domain) is never called.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _batch, _libvirt, _libvirt_domain, _libvirt_executor, _options, _stats
from ansible_collections.qmp.balloon.plugins.modules import balloon_stats_info, balloon_stats_polling
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import libvirt_fakes
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils.libvirt_fakes import FULL_STATS, NOW
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils.qmp_fakes import run_module, sentence_problems

URI = 'qemu:///system'
LIBVIRT = {'transport': 'libvirt'}
INVALID = 'Invalid input, no VM was touched: '


@pytest.fixture
def hypervisor(monkeypatch):
    hv = libvirt_fakes.Hypervisor()
    libvirt_fakes.install(monkeypatch, hv)
    return hv


def polling(args, **kwargs):
    return run_module(balloon_stats_polling, dict(LIBVIRT, **args), **kwargs)


def info(args, **kwargs):
    return run_module(balloon_stats_info, dict(LIBVIRT, **args), **kwargs)


def vm(result, name):
    return [entry for entry in result['vms'] if entry['name'] == name][0]


# ---------------------------------------------------------------------------------------------
# Names and units
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('libvirt_name, qemu_name, factor', [
    ('swap_in', 'swap_in', 1024), ('swap_out', 'swap_out', 1024), ('major_fault', 'major_faults', 1),
    ('minor_fault', 'minor_faults', 1), ('unused', 'free_memory', 1024), ('available', 'total_memory', 1024),
    ('usable', 'available_memory', 1024), ('disk_caches', 'disk_caches', 1024),
    ('hugetlb_pgalloc', 'htlb_pgalloc', 1), ('hugetlb_pgfail', 'htlb_pgfail', 1),
])
def test_each_libvirt_stat_becomes_the_qmp_name_in_qmp_units(libvirt_name, qemu_name, factor):
    guest_stats = _libvirt_domain.qemu_guest_stats({libvirt_name: 1000, 'last_update': NOW})
    stats, unsupported = _stats.normalise_stats(guest_stats['stats'])
    assert stats[qemu_name] == 1000 * factor
    assert qemu_name not in unsupported
    assert len(unsupported) == 9, 'the nine stats libvirt did not give are unset'
    assert guest_stats['last-update'] == NOW


def test_record_of_the_batch_call_reads_like_memory_stats():
    record = {'state.state': 1, 'balloon.current': 131072, 'balloon.maximum': 262144, 'balloon.unused': 5,
              'balloon.last-update': NOW, 'balloon.rss': 7}
    assert _libvirt_domain.memory_stats_from_record(record) == {'actual': 131072, 'unused': 5, 'last_update': NOW, 'rss': 7}
    # Without rss libvirt did not ask QEMU (NOWAIT and the domain was busy): no guest data in it.
    assert _libvirt_domain.memory_stats_from_record({'balloon.current': 1, 'balloon.maximum': 1}) is None
    assert _libvirt_domain.memory_stats_from_record(None) is None


@pytest.mark.parametrize('xml, expected', [
    ("<domain><devices><memballoon model='virtio'><stats period='10'/></memballoon></devices></domain>", ('virtio', 10)),
    ("<domain><devices><memballoon model='virtio'/></devices></domain>", ('virtio', 0)),
    ("<domain><devices><memballoon model='none'/></devices></domain>", ('none', 0)),
    ("<domain><devices/></domain>", (None, 0)),
])
def test_balloon_from_xml(xml, expected):
    assert _libvirt_domain.balloon_from_xml(xml) == expected


@pytest.mark.parametrize('text, expected', [
    ('4216a76a-24d1-42b2-a57e-f8fd0a04df7e', True), ('4216A76A24D142B2A57EF8FD0A04DF7E', True),
    ('db-01', False), ('4216a76a-24d1-42b2-a57e', False), ('', False),
])
def test_is_uuid(text, expected):
    assert _libvirt.is_uuid(text) is expected


# ---------------------------------------------------------------------------------------------
# balloon_stats_info
# ---------------------------------------------------------------------------------------------

def test_info_has_the_qmp_shape_in_bytes_plus_actual_and_rss(hypervisor):
    hypervisor.add('web', stats=dict(FULL_STATS), live_period=5, last_update=NOW - 2)
    result = info({'domain': 'web'})
    assert result['failed'] is False, result
    assert result['stats'] == {
        'swap_in': 0, 'swap_out': 4 * 1024, 'major_faults': 2, 'minor_faults': 887, 'free_memory': 67696 * 1024,
        'total_memory': 94920 * 1024, 'available_memory': 73256 * 1024, 'disk_caches': 2252 * 1024,
        'htlb_pgalloc': 0, 'htlb_pgfail': 0}
    assert result['unsupported'] == []
    assert result['last_update'] == NOW - 2 and result['age'] == 2
    assert result['last_update_iso'] == _stats.iso_time(NOW - 2)
    assert result['polling_interval'] == 5
    assert result['vm_status'] == 'running' and result['health'] == 'ok'
    assert result['used_memory'] == (94920 - 67696) * 1024
    assert result['actual'] == 131072 * 1024 and result['rss'] == 224564 * 1024
    assert result['endpoint'] == 'libvirt:qemu:///system/web'
    assert result['qom_path'] is None and result['uuid'] == libvirt_fakes.UUIDS[0]
    assert result['vms'][0]['name'] == 'web'
    assert 'openReadOnly' in hypervisor.methods() and 'open' not in hypervisor.methods(), 'info reads on a read-only connection'


def test_stats_libvirt_dropped_are_null_and_unsupported(hypervisor):
    partial = dict((key, value) for key, value in FULL_STATS.items() if not key.startswith('hugetlb') and key != 'usable')
    hypervisor.add('old', stats=partial, live_period=5)
    result = info({'domain': 'old'})
    assert result['unsupported'] == ['available_memory', 'htlb_pgalloc', 'htlb_pgfail']
    assert result['stats']['available_memory'] is None and result['stats']['free_memory'] == 67696 * 1024


@pytest.mark.parametrize('state, period, stats, age, status, health', [
    (1, 5, FULL_STATS, 2, 'running', 'ok'),
    (1, 0, FULL_STATS, 2, 'running', 'polling_disabled'),
    (1, 5, None, None, 'running', 'never_updated'),
    (1, 5, FULL_STATS, 100, 'running', 'stale'),
    (3, 5, FULL_STATS, 100, 'paused', 'vm_not_running'),
    (3, 5, FULL_STATS, 2, 'paused', 'ok'),
    (2, 5, FULL_STATS, 100, 'blocked', 'stale'),
    (7, 5, FULL_STATS, 100, 'pmsuspended', 'vm_not_running'),
])
def test_health_follows_the_qmp_rules(hypervisor, state, period, stats, age, status, health):
    hypervisor.add('vm', state=state, live_period=period, stats=dict(stats) if stats else None,
                   last_update=NOW - (age or 0))
    result = info({'domain': 'vm'})
    assert (result['vm_status'], result['health'], result['age']) == (status, health, age)
    if stats is None:
        assert result['last_update'] == 0 and len(result['unsupported']) == 10


def test_all_domains_is_one_batch_call_sorted_by_name(hypervisor):
    for name in ('zeta', 'alpha', 'mid'):
        hypervisor.add(name, stats=dict(FULL_STATS), live_period=5)
    hypervisor.add('stopped', state=5, persistent=True)
    result = info({'all_domains': True})
    assert [entry['name'] for entry in result['vms']] == ['alpha', 'mid', 'zeta']
    assert all(not entry['failed'] for entry in result['vms'])
    methods = hypervisor.methods()
    assert methods.count('getAllDomainStats') == 1
    assert 'memoryStats' not in methods and 'lookupByName' not in methods, 'the fast path asks each domain only for its XML'
    assert methods.count('XMLDesc') == 3
    assert 'name' not in result, 'all_domains is not a single-VM call'


def test_explicit_targets_share_one_domain_list_call(hypervisor):
    for name in ('a', 'b', 'c'):
        hypervisor.add(name, stats=dict(FULL_STATS), live_period=5)
    result = info({'targets': [{'domain': 'c'}, {'domain': libvirt_fakes.UUIDS[0], 'name': 'first'}]})
    assert [entry['name'] for entry in result['vms']] == ['c', 'first']
    assert result['vms'][1]['endpoint'] == 'libvirt:qemu:///system/' + libvirt_fakes.UUIDS[0]
    methods = hypervisor.methods()
    assert methods.count('domainListGetStats') == 1 and 'memoryStats' not in methods


def test_a_domain_busy_in_the_batch_call_is_asked_on_its_own(hypervisor):
    hypervisor.add('free', stats=dict(FULL_STATS), live_period=5)
    hypervisor.add('busy', stats=dict(FULL_STATS), live_period=5).busy_job = True
    result = info({'all_domains': True})
    assert vm(result, 'busy')['stats']['free_memory'] == 67696 * 1024
    assert hypervisor.methods('busy').count('memoryStats') == 1
    assert hypervisor.methods('free').count('memoryStats') == 0


def test_info_failures_are_one_sentence_per_vm(hypervisor):
    hypervisor.add('ok', stats=dict(FULL_STATS), live_period=5)
    hypervisor.add('noballoon', balloon='none')
    hypervisor.add('off', state=5, persistent=True)
    result = info({'targets': [{'domain': 'ok'}, {'domain': 'noballoon'}, {'domain': 'off'}, {'domain': 'ghost'}],
                   'fail_on_error': False, 'require_balloon': True})
    assert result['failed'] is False
    expected = {
        'noballoon': "has no balloon device (memballoon model='none')",
        'off': 'the domain is shut off: it has no live statistics',
        'ghost': 'libvirt at qemu:///system has no domain named ghost',
    }
    for name, text in expected.items():
        entry = vm(result, name)
        assert entry['failed'] is True and text in entry['msg'], entry
        assert sentence_problems(entry['msg'], name, 'libvirt:qemu:///system/' + name) == []
    assert vm(result, 'ok')['failed'] is False
    assert len(result['warnings']) == 3


# ---------------------------------------------------------------------------------------------
# balloon_stats_polling: the decision table
# ---------------------------------------------------------------------------------------------

L, C = _libvirt.AFFECT_LIVE, _libvirt.AFFECT_CONFIG

POLLING_CASES = [
    # domain, args, expected (changed, rearmed, previous, interval, config_previous, config), writes
    pytest.param({'live_period': 0}, {'interval': 10}, (True, False, 0, 10, None, None), [(10, L)], id='set-live'),
    pytest.param({'live_period': 10}, {'interval': 10}, (False, False, 10, 10, None, None), [], id='already-right'),
    pytest.param({'live_period': 10, 'persistent': True, 'config_period': 0}, {'interval': 10},
                 (False, False, 10, 10, None, None), [], id='config-ignored-without-persistent'),
    pytest.param({'live_period': 0, 'persistent': True, 'config_period': 0}, {'interval': 10, 'persistent': True},
                 (True, False, 0, 10, 0, 10), [(10, L | C)], id='set-both-in-one-call'),
    pytest.param({'live_period': 10, 'persistent': True, 'config_period': 0}, {'interval': 10, 'persistent': True},
                 (True, False, 10, 10, 0, 10), [(10, C)], id='config-only-differs'),
    pytest.param({'live_period': 0, 'persistent': True, 'config_period': 10}, {'interval': 10, 'persistent': True},
                 (True, False, 0, 10, 10, 10), [(10, L)], id='live-only-differs'),
    pytest.param({'live_period': 10, 'persistent': True, 'config_period': 10}, {'interval': 10, 'persistent': True},
                 (False, False, 10, 10, 10, 10), [], id='both-right'),
    pytest.param({'live_period': 10, 'persistent': False}, {'interval': 10, 'persistent': True},
                 (False, False, 10, 10, None, None), [], id='transient-config-ignored'),
    pytest.param({'live_period': 5, 'persistent': False}, {'interval': 10, 'persistent': True},
                 (True, False, 5, 10, None, None), [(10, L)], id='transient-live-set'),
    pytest.param({'live_period': 10}, {'interval': 10, 'rearm': 'always'}, (True, True, 10, 10, None, None),
                 [(0, L), (10, L)], id='rearm-always'),
    pytest.param({'live_period': 10, 'persistent': True, 'config_period': 0}, {'interval': 10, 'rearm': 'always', 'persistent': True},
                 (True, True, 10, 10, 0, 10), [(0, L), (10, L | C)], id='rearm-and-config'),
    pytest.param({'live_period': 0}, {'interval': 0, 'rearm': 'always'}, (False, False, 0, 0, None, None), [],
                 id='rearm-never-at-0'),
    pytest.param({'live_period': 10, 'last_update': NOW - 100}, {'interval': 10, 'rearm': 'stale'},
                 (True, True, 10, 10, None, None), [(0, L), (10, L)], id='rearm-stale-stalled'),
    pytest.param({'live_period': 10, 'last_update': NOW - 5}, {'interval': 10, 'rearm': 'stale'},
                 (False, False, 10, 10, None, None), [], id='rearm-stale-fresh'),
    pytest.param({'live_period': 10, 'stats': None}, {'interval': 10, 'rearm': 'stale'},
                 (False, False, 10, 10, None, None), [], id='rearm-stale-never-answered'),
    pytest.param({'live_period': 10, 'last_update': NOW - 100, 'state': 3}, {'interval': 10, 'rearm': 'stale'},
                 (False, False, 10, 10, None, None), [], id='rearm-stale-paused'),
    pytest.param({'state': 5, 'persistent': True, 'config_period': 0}, {'interval': 10, 'persistent': True},
                 (True, False, None, None, 0, 10), [(10, C)], id='shut-off-config-only'),
    pytest.param({'state': 5, 'persistent': True, 'config_period': 10}, {'interval': 10, 'persistent': True},
                 (False, False, None, None, 10, 10), [], id='shut-off-config-right'),
]


@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
@pytest.mark.parametrize('domain, args, expected, writes', POLLING_CASES)
def test_polling_decisions(hypervisor, domain, args, expected, writes, check_mode):
    domain = dict({'stats': dict(FULL_STATS)}, **domain)
    target = hypervisor.add('vm', **domain)
    before = (target.live_period, target.config_period)
    result = polling(dict(args, domain='vm'), check_mode=check_mode, diff=True)
    assert result['failed'] is False, result
    changed, rearmed, previous, interval, config_previous, config = expected
    got = (result['changed'], result['rearmed'], result['previous_interval'], result['interval'])
    assert got == (changed, rearmed, previous, interval)
    if args.get('persistent'):
        assert (result['config_previous_interval'], result['config_interval']) == (config_previous, config)
    else:
        assert 'config_interval' not in result
    if check_mode:
        assert target.period_writes == [] and (target.live_period, target.config_period) == before
        return
    assert target.period_writes == writes
    if changed:
        again = polling(dict(args, domain='vm'))
        assert again['changed'] is (args.get('rearm') == 'always'), 'idempotent unless rearm=always'


def test_polling_diff_shows_live_and_config(hypervisor):
    hypervisor.add('vm', live_period=0, persistent=True, config_period=5, stats=dict(FULL_STATS))
    result = polling({'domain': 'vm', 'interval': 10, 'persistent': True}, diff=True)
    assert result['diff'] == [{'before_header': 'vm memballoon', 'after_header': 'vm memballoon',
                               'before': 'stats period (live): 0\nstats period (config): 5\n',
                               'after': 'stats period (live): 10\nstats period (config): 10\n'}]


def test_transient_domains_with_persistent_warn_once(hypervisor):
    hypervisor.add('t1', live_period=10, stats=dict(FULL_STATS))
    hypervisor.add('t2', live_period=10, stats=dict(FULL_STATS))
    hypervisor.add('p', live_period=10, persistent=True, config_period=10, stats=dict(FULL_STATS))
    result = polling({'all_domains': True, 'interval': 10, 'persistent': True})
    assert result['failed'] is False and result['changed'] is False
    assert result['warnings'] == ['persistent: true: t1, t2 are transient (no configuration to write): '
                                  'only the live stats period was set']


def test_polling_failures(hypervisor):
    hypervisor.add('noballoon', balloon='none')
    hypervisor.add('off', state=5, persistent=True)
    hypervisor.add('cfgnone', persistent=True, balloon='virtio')
    result = polling({'targets': [{'domain': 'noballoon'}, {'domain': 'off'}], 'interval': 5, 'fail_on_error': False,
                      'require_balloon': True})
    assert "has no balloon device (memballoon model='none')" in vm(result, 'noballoon')['msg']
    assert 'shut off' in vm(result, 'off')['msg'] and 'persistent: true' in vm(result, 'off')['msg']
    assert 'setMemoryStatsPeriod' not in hypervisor.methods()
    failed = polling({'targets': [{'domain': 'noballoon'}, {'domain': 'cfgnone'}], 'interval': 5, 'require_balloon': True})
    assert failed['failed'] is True and failed['msg'].startswith('1 of 2 VMs failed: noballoon (libvirt:qemu:///system/noballoon): ')


# ---------------------------------------------------------------------------------------------
# libvirtd unreachable, hung, gone
# ---------------------------------------------------------------------------------------------

def test_wrong_uri_fails_the_task_with_one_message(hypervisor):
    hypervisor.unreachable = "Failed to connect socket to '/nope/libvirt-sock': No such file or directory"
    hypervisor.add('a')
    for fail_on_error in (True, False):
        result = info({'libvirt_uri': 'qemu:///system?socket=/nope/libvirt-sock', 'targets': [{'domain': 'a'}, {'domain': 'b'}],
                       'fail_on_error': fail_on_error})
        assert result['failed'] is True
        assert result['msg'] == ("cannot connect to libvirt at qemu:///system?socket=/nope/libvirt-sock (libvirt_uri): Failed to "
                                 "connect socket to '/nope/libvirt-sock': No such file or directory; check that libvirtd "
                                 "(or virtqemud) runs on this host and that libvirt_uri is right")
        assert [entry['failed'] for entry in result['vms']] == [True, True]
    assert info({'all_domains': True})['vms'] == []


def test_libvirtd_gone_mid_batch_fails_with_one_message(hypervisor):
    for name in ('a', 'b', 'c', 'd'):
        hypervisor.add(name, live_period=0, stats=dict(FULL_STATS))
    hypervisor.break_after = 4  # the batch call and a few domain calls, then libvirtd dies
    result = polling({'all_domains': True, 'interval': 5, 'fail_on_error': False, 'concurrency': 1})
    assert result['failed'] is True
    assert result['msg'].startswith('the connection to libvirt at qemu:///system broke (Cannot write data: Broken pipe): '
                                    'is libvirtd still running?')
    assert 'VMs were handled before' in result['msg'] and '\n' not in result['msg']
    assert any(entry['failed'] for entry in result['vms'])


def test_hung_libvirtd_fails_within_the_timeout(hypervisor):
    hypervisor.add('a')
    hypervisor.open_hang = threading.Event()
    started = time.monotonic()
    try:
        result = info({'domain': 'a', 'timeout': 0.5})
    finally:
        hypervisor.open_hang.set()
    assert time.monotonic() - started < 3
    assert result['failed'] is True
    assert result['msg'].startswith('libvirt at qemu:///system did not answer within the 0.5 s timeout')


def test_a_hung_domain_fails_alone(hypervisor):
    hypervisor.add('fine', live_period=5, stats=dict(FULL_STATS))
    stuck = hypervisor.add('stuck', live_period=5, stats=dict(FULL_STATS))
    stuck.hang = threading.Event()
    try:
        result = info({'targets': [{'domain': 'fine'}, {'domain': 'stuck'}], 'timeout': 0.5, 'fail_on_error': False})
    finally:
        stuck.hang.set()
    assert vm(result, 'fine')['failed'] is False
    assert vm(result, 'stuck')['msg'] == ('stuck (libvirt:qemu:///system/stuck): libvirt did not finish with this domain '
                                          'within the 0.5 s timeout')


def test_hung_domains_give_their_concurrency_slot_to_the_next(hypervisor):
    """concurrency means what it means over QMP: three hung domains at concurrency 1 cost one timeout, not three."""
    hang = threading.Event()
    stuck = ['stuck0', 'stuck1', 'stuck2']
    for name in stuck:
        hypervisor.add(name, live_period=5, stats=dict(FULL_STATS)).hang = hang
    hypervisor.add('fine', live_period=5, stats=dict(FULL_STATS))
    started = time.monotonic()
    try:
        result = info({'targets': [{'domain': name} for name in stuck + ['fine']], 'timeout': 1, 'concurrency': 1,
                       'fail_on_error': False})
    finally:
        hang.set()
    assert time.monotonic() - started < 3
    assert vm(result, 'fine')['failed'] is False
    for name in stuck:
        assert vm(result, name)['msg'].endswith('libvirt did not finish with this domain within the 1 s timeout')


def test_fan_out_bounds_concurrency():
    running, peak, lock = [0], [0], threading.Lock()

    def job():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return 'done'

    # slow_after=30: no slot given back (a loaded machine can stretch 0.02 s past SLOW_AFTER)
    outcomes = _batch.run_threads([job] * 12, 3, 5, slow_after=30)
    assert outcomes == [(True, 'done')] * 12 and peak[0] <= 3


def test_run_threads_reuses_threads_in_input_order():
    """Jobs start in input order; a thread whose job ended takes the next one: about ``concurrency`` threads per batch."""
    order, threads, lock = [], set(), threading.Lock()

    def job(index):
        def work():
            with lock:
                order.append(index)
                threads.add(threading.current_thread().ident)
            time.sleep(0.005)
            return index
        return work

    outcomes = _batch.run_threads([job(index) for index in range(20)], 2, 5, slow_after=30)
    assert outcomes == [(True, index) for index in range(20)]
    assert order[:2] == [0, 1] and sorted(order) == list(range(20))
    assert len(threads) <= 2, threads


def test_run_threads_slow_job_gives_its_slot_and_a_late_thread_takes_no_other_job():
    """concurrency 1: a hung job gives its slot after slow_after, fails at its timeout, and its thread does nothing more."""
    release = threading.Event()
    ran = []

    def hung():
        release.wait(10)
        ran.append(('hung', threading.current_thread().ident))
        return 'late'

    def quick(name):
        def work():
            ran.append((name, threading.current_thread().ident))
            return name
        return work

    started = time.monotonic()
    try:
        outcomes = _batch.run_threads([hung, quick('a'), quick('b')], 1, 0.6, slow_after=0.1)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert outcomes[1:] == [(True, 'a'), (True, 'b')]
    assert outcomes[0][0] is False and str(outcomes[0][1]) == 'did not finish within the 0.6 s timeout'
    assert 0.55 <= elapsed < 2, elapsed
    time.sleep(0.2)
    hung_thread = [ident for name, ident in ran if name == 'hung']
    assert hung_thread and not [name for name, ident in ran if ident == hung_thread[0] and name != 'hung'], ran


# ---------------------------------------------------------------------------------------------
# The allow-list: no qemuMonitorCommand, ever
# ---------------------------------------------------------------------------------------------

def test_every_call_is_allow_listed_and_none_taints(hypervisor):
    hypervisor.add('web', stats=dict(FULL_STATS), live_period=0, persistent=True, config_period=0)
    hypervisor.add('db', stats=dict(FULL_STATS), live_period=10, last_update=NOW - 100)
    hypervisor.add('off', state=5, persistent=True)
    hypervisor.add('nb', balloon='none')
    runs = [
        (balloon_stats_polling, {'all_domains': True, 'interval': 10, 'rearm': 'stale', 'persistent': True, 'fail_on_error': False}),
        (balloon_stats_polling, {'targets': [{'domain': 'web'}, {'domain': 'off'}, {'domain': 'nb'}], 'interval': 3,
                                 'rearm': 'always', 'persistent': True, 'fail_on_error': False}),
        (balloon_stats_polling, {'domain': 'db', 'interval': 0}),
        (balloon_stats_info, {'all_domains': True, 'fail_on_error': False}),
        (balloon_stats_info, {'targets': [{'domain': 'web'}, {'domain': 'off'}], 'fail_on_error': False}),
        (balloon_stats_info, {'domain': libvirt_fakes.UUIDS[1]}),
    ]
    for module, args in runs:
        run_module(module, dict(LIBVIRT, **args))
    methods = set(hypervisor.methods())
    assert 'qemuMonitorCommand' not in methods
    assert methods <= _libvirt.ALLOWED_CALLS, methods - _libvirt.ALLOWED_CALLS
    assert 'setMemoryStatsPeriod' in methods and 'getAllDomainStats' in methods
    assert 'libvirt_qemu' not in sys.modules or not any(
        'qemuMonitorCommand' in method for method in methods), 'libvirt_qemu is never used'


def test_a_call_outside_the_allow_list_is_refused_before_it_is_made(hypervisor):
    domain = hypervisor.add('web')
    session = _libvirt.LibvirtSession(URI)
    with pytest.raises(_libvirt.CommandNotAllowed, match='qemuMonitorCommand'):
        session.call(domain, 'qemuMonitorCommand', '{"execute": "qom-list"}', 0)
    assert hypervisor.methods() == []


@pytest.mark.parametrize('module', [_libvirt, _libvirt_domain, _libvirt_executor])
def test_the_source_never_names_the_qemu_monitor_passthrough(module):
    with open(module.__file__) as handle:
        code = [line for line in handle if not line.lstrip().startswith('#')]
    source = ''.join(code)
    assert 'import libvirt_qemu' not in source and '.qemuMonitorCommand(' not in source
    assert 'qemuMonitorCommand' not in _libvirt.ALLOWED_CALLS


# ---------------------------------------------------------------------------------------------
# Input checks: every bad combination names the option, nothing is touched
# ---------------------------------------------------------------------------------------------

INVALID_CASES = [
    pytest.param({'transport': 'qmp', 'domain': 'a'}, 'domain applies to transport libvirt only', id='domain-with-qmp'),
    pytest.param({'transport': 'qmp', 'all_domains': True}, 'all_domains applies to transport libvirt only', id='all-with-qmp'),
    pytest.param({'transport': 'qmp', 'socket': '/x.qmp', 'libvirt_uri': 'qemu:///system'},
                 'libvirt_uri applies to transport libvirt only', id='uri-with-qmp'),
    pytest.param({'transport': 'qmp', 'targets': [{'domain': 'a'}]}, 'targets[0].domain applies to transport libvirt only',
                 id='target-domain-with-qmp'),
    pytest.param({'socket': '/x.qmp'}, 'socket applies to transport qmp only', id='socket-with-libvirt'),
    pytest.param({'host': 'h', 'port': 1, 'domain': 'a'}, 'host applies to transport qmp only', id='host-with-libvirt'),
    pytest.param({'domain': 'a', 'qom_path': 'balloon0'}, 'qom_path applies to transport qmp only', id='qom-path-with-libvirt'),
    pytest.param({'domain': 'a', 'tls_ca': '/ca.pem'}, 'tls_ca applies to QMP TCP monitors (transport qmp) only', id='tls-with-libvirt'),
    pytest.param({'targets': [{'socket': '/x.qmp'}]}, 'targets[0].socket applies to transport qmp only', id='target-socket-with-libvirt'),
    pytest.param({'targets': [{'name': 'x'}]}, 'targets[0].domain is required with transport libvirt', id='target-without-domain'),
    pytest.param({'targets': [{'domain': ' '}]}, 'targets[0].domain must not be empty', id='target-empty-domain'),
    pytest.param({}, 'with transport libvirt, one of domain, targets or all_domains is required', id='nothing'),
    pytest.param({'domain': 'a', 'all_domains': True}, 'domain and all_domains are mutually exclusive', id='domain-and-all'),
    pytest.param({'targets': [{'domain': 'a'}], 'all_domains': True}, 'targets and all_domains are mutually exclusive',
                 id='targets-and-all'),
    pytest.param({'all_domains': True, 'name': 'x'}, 'name applies to a single domain, not to all_domains', id='name-and-all'),
    pytest.param({'domain': ''}, 'domain must not be empty', id='empty-domain'),
    pytest.param({'domain': 'a', 'libvirt_uri': ' '}, 'libvirt_uri must not be empty', id='empty-uri'),
    pytest.param({'targets': [{'domain': 'a'}, {'domain': 'a'}]}, 'targets[1]: domain a is listed twice (also in targets[0])',
                 id='same-domain-twice'),
    pytest.param({'targets': [{'domain': 'a', 'name': 'n'}, {'domain': 'b', 'name': 'n'}]},
                 "targets[1].name: duplicate name 'n' (also in targets[0])", id='duplicate-name'),
    pytest.param({'domain': 'a', 'timeout': 0}, 'timeout must be greater than 0 seconds', id='timeout-0'),
    pytest.param({'domain': 'a', 'concurrency': 0}, 'concurrency must be at least 1', id='concurrency-0'),
    pytest.param({'domain': 'a', 'transport': 'ssh'}, 'value of transport must be one of: qmp, libvirt', id='bad-transport'),
]


@pytest.mark.parametrize('module', ['polling', 'info'])
@pytest.mark.parametrize('args, expected', INVALID_CASES)
def test_bad_combinations_touch_nothing(hypervisor, module, args, expected):
    hypervisor.add('a')
    args = dict(LIBVIRT, **args)
    if module == 'polling':
        args['interval'] = 5
    result = run_module(balloon_stats_polling if module == 'polling' else balloon_stats_info, args)
    assert result['failed'] is True
    assert expected in result['msg'], result['msg']
    assert 'vms' not in result
    assert hypervisor.calls == [], 'libvirt was touched'


def test_persistent_with_qmp_is_refused(hypervisor):
    result = run_module(balloon_stats_polling, {'socket': '/x.qmp', 'interval': 5, 'persistent': True})
    assert result['failed'] is True
    assert result['msg'].startswith(INVALID + 'persistent applies to transport libvirt only')


def test_missing_libvirt_python_only_matters_for_transport_libvirt(monkeypatch):
    monkeypatch.setattr(_libvirt, 'HAS_LIBVIRT', False)
    monkeypatch.setattr(_libvirt, 'LIBVIRT_IMPORT_ERROR', 'Traceback (most recent call last):\nModuleNotFoundError: libvirt')
    result = info({'domain': 'a'})
    assert result['failed'] is True
    assert 'cannot import libvirt-python, which transport libvirt needs' in result['msg']
    assert 'ModuleNotFoundError' in result.get('exception', '')
    qmp = run_module(balloon_stats_info, {'socket': '/nonexistent/x.qmp'})
    assert 'libvirt' not in qmp['msg'] and 'does not exist' in qmp['msg']


def test_qmp_required_one_of_messages_are_unchanged():
    assert run_module(balloon_stats_info, {})['msg'] == 'one of the following is required: socket, host, targets, sockets'
    assert (run_module(balloon_stats_info, {'targets': [{'name': 'x'}]})['msg']
            == 'one of the following is required: socket, host found in targets')
    assert _options.TRANSPORT_QMP == 'qmp'
