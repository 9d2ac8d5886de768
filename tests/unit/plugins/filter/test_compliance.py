# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compliance rules, the fleet report and its CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils import _facts, _pressure, _records, _report, _report_files, _rules
from ansible_collections.qmp.balloon.plugins.filter.jmespath import jmespath_query

GIB = 1024 ** 3


def _load_builtin_rules():
    import os
    here = os.path.dirname(__file__)
    path = os.path.join(here, '..', '..', '..', '..', 'roles', 'balloon_stats', 'defaults', 'main.yml')
    with open(path) as handle:
        return yaml.safe_load(handle)['balloon_stats_builtin_rules']


BUILTIN = _load_builtin_rules()


def vm(name, **fields):
    base = {'name': name, 'endpoint': 'unix:/run/%s.qmp' % name, 'qom_path': '/machine/peripheral/balloon0',
            'failed': False, 'health': 'ok', 'vm_status': 'running', 'polling_interval': 10, 'age': 3,
            'last_update': 1700000000, 'last_update_iso': '2023-11-14T22:13:20Z', 'unsupported': [],
            'stats': {'total_memory': 4 * GIB, 'free_memory': 1 * GIB, 'available_memory': 2 * GIB},
            'used_memory': 3 * GIB, 'used_percent': 75.0}
    base.update(fields)
    return base


def failed_vm(name):
    return {'name': name, 'endpoint': 'unix:/run/%s.qmp' % name, 'qom_path': None, 'failed': True,
            'msg': '%s (unix:/run/%s.qmp): nothing is listening' % (name, name)}


# (vm, expected failing built-in rules, expected state, expected unknown rules)
NO_STATS = {'total_memory': None, 'free_memory': None, 'available_memory': None}
CASES = [
    (vm('good'), [], 'compliant', []),
    # at_most (the default): polling on and not slower than expected; Proxmox's 2 s passes
    (vm('faster-interval', polling_interval=2), [], 'compliant', []),
    (vm('slower-interval', polling_interval=30), ['polling_interval'], 'non_compliant', []),
    (vm('disabled', polling_interval=0, health='polling_disabled'), ['polling_interval', 'data_fresh'], 'non_compliant', []),
    (vm('no-driver', last_update=0, age=None, health='never_updated', used_percent=None, stats=dict(NO_STATS)),
     ['driver_reporting', 'data_fresh'], 'non_compliant', ['min_available_memory', 'memory_pressure']),
    (vm('stale', age=100, health='stale'), ['data_fresh'], 'non_compliant', []),
    (vm('low-memory', stats={'total_memory': 4 * GIB, 'free_memory': 0, 'available_memory': GIB // 20}),
     ['min_available_memory', 'memory_pressure'], 'non_compliant', []),
    # the VM: 2 GiB total, 10 MiB free, available_memory null: unknown, never compliant
    (vm('unknown-available', stats={'total_memory': 2 * GIB, 'free_memory': 10 * 1048576, 'available_memory': None}),
     [], 'unknown', ['min_available_memory', 'memory_pressure']),
    (failed_vm('dead'), ['reachable'], 'non_compliant',
     ['polling_interval', 'driver_reporting', 'data_fresh', 'min_available_memory', 'memory_pressure']),
    # no balloon device (issue 13's state): its rules have no inputs, the VM is unknown, not a pass nor a violation
    (vm('no-balloon', health='no_balloon_device', polling_interval=None, last_update=None, age=None, stats={},
        used_percent=None, qom_path=None), [], 'unknown',
     ['polling_interval', 'driver_reporting', 'data_fresh', 'min_available_memory', 'memory_pressure']),
]


@pytest.mark.parametrize('entry, failing, state, unknown', CASES, ids=[case[0]['name'] for case in CASES])
def test_builtin_rules(entry, failing, state, unknown):
    records = _records.balloon_compliance([entry], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    record = records[0]
    result = record['compliance']
    assert sorted(v['rule'] for v in result['violations']) == sorted(failing)
    assert result['state'] == state
    assert result['compliant'] is (state == 'compliant')
    assert sorted(result['unknown']) == sorted(unknown)
    assert set(result['rules'].values()) <= set(_rules.RULE_RESULTS)
    assert sorted(name for name, value in result['rules'].items() if value == 'fail') == sorted(failing)
    assert sorted(name for name, value in result['rules'].items() if value == 'unknown') == sorted(unknown)
    assert record['hypervisor'] == 'hv1'


# (interval rule, polling interval, expected result of the polling_interval rule)
INTERVAL_CASES = [
    ('at_most', 10, 'pass'), ('at_most', 2, 'pass'), ('at_most', 1, 'pass'), ('at_most', 11, 'fail'), ('at_most', 0, 'fail'),
    ('exact', 10, 'pass'), ('exact', 2, 'fail'), ('exact', 11, 'fail'), ('exact', 0, 'fail'),
]


@pytest.mark.parametrize('rule, interval, expected', INTERVAL_CASES)
def test_interval_rule(rule, interval, expected):
    entry = vm('v', polling_interval=interval, health='ok' if interval else 'polling_disabled')
    [record] = _records.balloon_compliance([entry], rules=BUILTIN, expected_interval=10, min_available_percent=10,
                                           interval_rule=rule)
    assert record['interval_rule'] == rule
    assert record['compliance']['rules']['polling_interval'] == expected


def test_interval_rule_is_checked():
    with pytest.raises(AnsibleFilterError, match="interval_rule must be one of at_most, exact, got 'sometimes'"):
        _records.balloon_compliance([vm('a')], rules=BUILTIN, interval_rule='sometimes')


def test_unreachable_vm_only_evaluates_always_rules():
    record = _records.balloon_compliance([failed_vm('dead')], rules=BUILTIN, expected_interval=10, min_available_percent=10)[0]
    assert record['reachable'] is False
    assert record['error'].startswith('dead (unix:/run/dead.qmp)')
    assert record['compliance']['rules'] == {'reachable': 'fail', 'polling_interval': 'unknown', 'driver_reporting': 'unknown',
                                             'data_fresh': 'unknown', 'min_available_memory': 'unknown',
                                             'memory_pressure': 'unknown'}
    assert record['pressure']['verdict'] == 'unknown'
    assert record['rates']['interval'] is None


def test_user_rule_flags_exactly_the_matching_vms():
    vms = [vm('a', stats={'total_memory': 8 * GIB, 'free_memory': GIB, 'available_memory': 4 * GIB}),
           vm('b', stats={'total_memory': 2 * GIB, 'free_memory': GIB, 'available_memory': GIB}),
           vm('c', stats={'total_memory': 1 * GIB, 'free_memory': GIB // 2, 'available_memory': GIB // 2})]
    rule = {'name': 'big_enough', 'query': 'stats.total_memory >= `2147483648`', 'severity': 'critical'}
    records = _records.balloon_compliance(vms, rules=[rule])
    assert [r['name'] for r in records if not r['compliance']['compliant']] == ['c']
    assert [r['compliance']['state'] for r in records] == ['compliant', 'compliant', 'non_compliant']
    expected = {'rule': 'big_enough', 'severity': 'critical', 'description': 'big_enough', 'hypervisor': None, 'vm': 'c'}
    assert records[2]['compliance']['violations'][0] == expected


@pytest.mark.parametrize('rules, message', [
    ([{'query': 'a'}], 'has no name'),
    ([{'name': 'x'}], 'has no query'),
    ([{'name': 'x', 'query': 'a'}, {'name': 'x', 'query': 'b'}], 'used twice'),
    ([{'name': 'x', 'query': 'a', 'severity': 'fatal'}], 'severity must be one of'),
    ([{'name': 'x', 'query': 'stats.[['}], 'invalid JMESPath query'),
    ([{'name': 'x', 'query': 'a', 'severity_query': '[['}], 'invalid JMESPath severity_query'),
    (['not a dict'], 'must be a dict'),
])
def test_bad_rules_are_refused(rules, message):
    with pytest.raises(AnsibleFilterError, match=message):
        _records.balloon_compliance([vm('a')], rules=rules)


def test_report_lists_every_host_and_counts():
    hv1 = _records.balloon_compliance([vm('a'), vm('b', polling_interval=0, health='polling_disabled')], rules=BUILTIN,
                                      hypervisor='hv1', expected_interval=10, min_available_percent=10)
    hv2 = _records.balloon_compliance([failed_vm('c'), vm('d', stats={'total_memory': GIB})], rules=BUILTIN,
                                      hypervisor='hv2', expected_interval=10, min_available_percent=10)
    hostvars = {'hv1': {'balloon_stats': {'vms': hv1, 'collected_at': 'T1', 'status': 'ok'}},
                'hv2': {'balloon_stats': {'vms': hv2, 'collected_at': 'T2', 'status': 'ok'}},
                'hv3': {},
                'hv4': {'balloon_stats': {'vms': [], 'status': 'no_vms', 'reason': 'no VM found (no socket matches /run/x/*.qmp)'}},
                'hv5': {'balloon_stats': failed_now('No VM found on hv5: ... (balloon_stats_require_vms is true)')},
                'hv6': {'balloon_stats': {'vms': [], 'status': 'failed',
                                          'reason': 'sockets[0]: /run/typo/*.qmp matches nothing: the directory /run/typo does not exist on this host'}}}
    report = _report.balloon_report(hostvars, ['hv1', 'hv2', 'hv3', 'hv4', 'hv5', 'hv6'], ['hv1', 'hv2', 'hv4', 'hv6'])
    assert report['schema_version'] == 2
    statuses = dict((h['name'], h['status']) for h in report['hypervisors'])
    assert statuses == {'hv1': 'ok', 'hv2': 'ok', 'hv3': 'unreachable', 'hv4': 'no_vms', 'hv5': 'failed', 'hv6': 'failed'}
    reasons = dict((h['name'], h['reason']) for h in report['hypervisors'])
    assert reasons['hv1'] is None
    assert reasons['hv3'] == _report.UNREACHABLE_REASON
    assert reasons['hv5'].endswith('(balloon_stats_require_vms is true)')
    assert 'does not exist' in reasons['hv6']
    summary = report['summary']
    assert (summary['vms'], summary['vms_compliant'], summary['vms_non_compliant'], summary['vms_unknown']) == (4, 1, 2, 1)
    assert summary['vms_unreachable'] == 1
    assert (summary['hypervisors_ok'], summary['hypervisors_unreachable'], summary['hypervisors_failed'],
            summary['hypervisors_no_vms']) == (2, 1, 2, 1)
    assert summary['violations'] == 3           # b: polling_interval + data_fresh; c: reachable
    assert summary['by_severity'] == {'critical': 2, 'warning': 1, 'info': 0}
    assert summary['by_health'] == {'ok': 2, 'polling_disabled': 1, 'unreachable': 1}
    assert report['unknown'] == [{'hypervisor': 'hv2', 'vm': 'd', 'rules': ['min_available_memory', 'memory_pressure']}]
    # every state is in the headline, with the reasons of the hypervisors not audited
    headline = report['headline']
    assert headline.startswith('4 VMs on 6 hypervisors (1 unreachable: hv3 (Ansible could not connect')
    assert '2 failed: hv5 (No VM found on hv5' in headline
    assert 'hv6 (sockets[0]: /run/typo/*.qmp matches nothing' in headline
    assert '1 without VMs: hv4' in headline
    assert '1 compliant, 2 non-compliant, 1 unknown; 3 violations (2 critical, 1 warning, 0 info)' in headline


def test_summary_counts_one_hosts_records_like_the_report():
    records = _records.balloon_compliance([vm('a'), vm('b', polling_interval=0, health='polling_disabled'), failed_vm('c')], rules=BUILTIN,
                                          hypervisor='hv1', expected_interval=10, min_available_percent=10)
    assert _records.balloon_summary(records) == {
        'vms': 3, 'unreachable': 1, 'compliant': 1, 'non_compliant': 2, 'unknown': 0, 'violations': 3, 'unknown_results': 5,
        'by_pressure': {'high': 0, 'moderate': 0, 'none': 2, 'unknown': 1}}
    assert _records.balloon_summary([])['vms'] == 0
    report = _report.balloon_report({'hv1': {'balloon_stats': {'vms': records}}}, ['hv1'])
    [hypervisor] = report['hypervisors']
    assert (hypervisor['vms'], hypervisor['failed_vms'], hypervisor['violations'], hypervisor['non_compliant']) == (3, 1, 3, 2)
    assert report['severities'] == ['critical', 'warning', 'info'] == list(_rules.SEVERITIES)
    assert list(report['summary']['by_severity']) == report['severities']


def test_csv_has_one_row_per_vm_and_escapes():
    records = _records.balloon_compliance([vm('a'), vm('b,"quoted"'), failed_vm('c')], rules=BUILTIN,
                                          hypervisor='hv1', expected_interval=10, min_available_percent=10)
    report = _report.balloon_report({'hv1': {'balloon_stats': {'vms': records}}}, ['hv1'])
    rows = list(csv.DictReader(io.StringIO(_report_files.balloon_report_csv(report))))
    assert [row['vm'] for row in rows] == ['a', 'b,"quoted"', 'c']
    assert list(rows[0].keys()) == list(_report_files.CSV_COLUMNS + _report_files.CSV_COLUMNS_STATES + _report_files.CSV_COLUMNS_AUDIT)
    assert rows[0]['total_memory'] == str(4 * GIB)
    # booleans as true/false, not Python's True/False
    assert rows[0]['compliant'] == 'true'
    assert rows[0]['reachable'] == 'true'
    assert rows[2]['reachable'] == 'false'
    assert rows[2]['violations'] == 'reachable'
    assert rows[2]['total_memory'] == ''
    assert (rows[0]['state'], rows[2]['state']) == ('compliant', 'non_compliant')
    assert rows[2]['unknown_rules'] == 'polling_interval driver_reporting data_fresh min_available_memory memory_pressure'
    assert (rows[0]['pressure'], rows[0]['headroom_percent']) == ('none', '50.0')


# ---- rates between two samples ----

def sample(last_update, stats):
    return {'last_update': last_update, 'stats': dict(stats)}


CLASSIC = dict(swap_in=0, swap_out=0, major_faults=100, minor_faults=10000, free_memory=GIB, total_memory=4 * GIB,
               available_memory=2 * GIB)
LATER = dict(CLASSIC, swap_in=20 * 1048576, swap_out=10 * 1048576, major_faults=200, minor_faults=12100)
NEW_92 = dict(oom_kills=1, alloc_stalls=5, async_scans=3, direct_scans=0, async_reclaims=2, direct_reclaims=0)

# (name, current, previous, expected rates: only the keys given are compared)
RATE_CASES = [
    ('first sample', sample(1010, LATER), None,
     {'swap_in': None, 'major_faults': None, 'interval': None, 'reset': False}),
    ('never updated', sample(0, LATER), sample(1000, CLASSIC), {'major_faults': None, 'interval': None, 'reset': False}),
    ('same sample', sample(1000, CLASSIC), sample(1000, CLASSIC),
     {'swap_in': None, 'swap_out': None, 'major_faults': None, 'minor_faults': None, 'interval': None, 'reset': False}),
    ('ten seconds', sample(1010, LATER), sample(1000, CLASSIC),
     {'swap_in': 2097152.0, 'swap_out': 1048576.0, 'major_faults': 10.0, 'minor_faults': 200.0, 'oom_kills': None,
      'alloc_stalls': None, 'interval': 10, 'reset': False}),
    # minor_faults counts all faults (Linux's pgfault): the rate is all minus major
    ('minor is all minus major', sample(1002, dict(CLASSIC, major_faults=110, minor_faults=10010)), sample(1000, CLASSIC),
     {'major_faults': 5.0, 'minor_faults': 0.0}),
    ('counter backwards (reboot)', sample(1010, dict(LATER, major_faults=3)), sample(1000, CLASSIC),
     {'swap_in': None, 'major_faults': None, 'minor_faults': None, 'interval': None, 'reset': True}),
    ('last_update backwards (migration to a fresh QEMU)', sample(900, LATER), sample(1000, CLASSIC),
     {'major_faults': None, 'interval': None, 'reset': True}),
    ('missing fields are null, the others computed', sample(1010, dict(total_memory=GIB, major_faults=150)),
     sample(1000, dict(total_memory=GIB, major_faults=100, swap_in=5)),
     {'major_faults': 5.0, 'swap_in': None, 'swap_out': None, 'minor_faults': None, 'reset': False, 'interval': 10}),
    ('unset stat (null) is missing', sample(1010, dict(LATER, swap_in=None)), sample(1000, CLASSIC),
     {'swap_in': None, 'swap_out': 1048576.0}),
    ('QEMU 9.2 stats: oom_kills and alloc_stalls as deltas', sample(1010, dict(LATER, **dict(NEW_92, oom_kills=3, alloc_stalls=5))),
     sample(1000, dict(CLASSIC, **NEW_92)), {'oom_kills': 2, 'alloc_stalls': 0, 'major_faults': 10.0}),
]


@pytest.mark.parametrize('name, current, previous, expected', RATE_CASES, ids=[case[0] for case in RATE_CASES])
def test_rates(name, current, previous, expected):
    result = _pressure.balloon_rates(current, previous)
    assert set(result) == {'swap_in', 'swap_out', 'major_faults', 'minor_faults', 'oom_kills', 'alloc_stalls', 'interval', 'reset'}
    assert dict((key, result[key]) for key in expected) == expected
    assert all(value is None or value >= 0 for key, value in result.items() if key != 'reset')


def test_rates_refuse_what_is_not_a_sample():
    with pytest.raises(AnsibleFilterError, match='balloon_rates expects current to be a dict'):
        _pressure.balloon_rates([1], None)


def test_role_rates_come_from_the_previous_gather_by_endpoint():
    before = _records.balloon_compliance([vm('a', last_update=1000, stats=dict(CLASSIC)),
                                          vm('b', last_update=1000, stats=dict(CLASSIC))], rules=BUILTIN, expected_interval=10)
    after = _records.balloon_compliance([vm('b', last_update=1010, stats=dict(LATER)), vm('c', last_update=1010, stats=dict(LATER))],
                                        rules=BUILTIN, expected_interval=10, previous=before)
    assert after[0]['rates']['major_faults'] == 10.0
    assert after[1]['rates']['interval'] is None      # c is new: no previous sample


# ---- pressure ----

# (name, headroom %, rates, thresholds, verdict, a word every reason list has)
PRESSURE_CASES = [
    ('idle', 60.0, {'major_faults': 0.0, 'swap_in': 0.0, 'swap_out': 0.0}, None, 'none', None),
    ('first sample, plenty', 60.0, {}, None, 'none', 'no rates yet'),
    ('low headroom, faulting', 3.0, {'major_faults': 12.0, 'swap_in': 0.0, 'swap_out': 0.0}, None, 'high', 'major faults'),
    ('low headroom, swapping', 4.0, {'major_faults': 0.0, 'swap_in': 900000.0, 'swap_out': 300000.0}, None, 'high', 'swap'),
    ('low headroom, quiet', 4.0, {'major_faults': 1.0, 'swap_in': 0.0, 'swap_out': 0.0}, None, 'moderate', 'headroom'),
    ('low headroom, no rates yet', 4.0, {}, None, 'moderate', 'cannot be judged'),
    ('under 10 %', 8.0, {'major_faults': 100.0}, None, 'moderate', 'with 100 major faults/s (high needs headroom < 5% too)'),
    ('faulting with headroom', 50.0, {'major_faults': 100.0, 'swap_in': 1e9}, None, 'none', None),
    ('OOM kill', 50.0, {'oom_kills': 1}, None, 'high', 'OOM'),
    ('allocation stall', 50.0, {'alloc_stalls': 2}, None, 'moderate', 'allocation stall'),
    ('no headroom', None, {'major_faults': 100.0}, None, 'unknown', 'no headroom'),
    ('no headroom but an OOM kill', None, {'oom_kills': 2}, None, 'high', 'OOM'),
    ('thresholds are variables', 15.0, {'major_faults': 2.0}, {'headroom_high': 20, 'headroom_moderate': 30, 'major_faults': 1},
     'high', 'major faults'),
]


@pytest.mark.parametrize('name, headroom, rates, thresholds, verdict, word', PRESSURE_CASES, ids=[case[0] for case in PRESSURE_CASES])
def test_pressure(name, headroom, rates, thresholds, verdict, word):
    result = _pressure.pressure(headroom, rates, thresholds)
    assert result['verdict'] == verdict
    assert result['headroom_percent'] == headroom
    if word:
        assert any(word in reason for reason in result['reasons']), result['reasons']
    if verdict == 'none' and word is None:
        assert result['reasons'] == []


@pytest.mark.parametrize('verdict, state, severity', [('high', 'non_compliant', 'critical'), ('moderate', 'non_compliant', 'warning'),
                                                      ('none', 'compliant', None), ('unknown', 'unknown', None)])
def test_memory_pressure_rule(verdict, state, severity):
    stats = {'none': dict(CLASSIC), 'moderate': dict(CLASSIC, available_memory=GIB // 3),
             'high': dict(CLASSIC, available_memory=GIB // 10), 'unknown': dict(CLASSIC, available_memory=None)}[verdict]
    previous = [vm('v', last_update=990, stats=dict(CLASSIC, major_faults=0))]
    thresholds = {'headroom_moderate': 10, 'headroom_high': 5}
    rules = [rule for rule in BUILTIN if rule['name'] == 'memory_pressure']
    [record] = _records.balloon_compliance([vm('v', last_update=1000, stats=stats)], rules=rules, previous=previous,
                                           pressure_thresholds=thresholds)
    assert record['pressure']['verdict'] == verdict
    assert record['compliance']['state'] == state
    assert [v['severity'] for v in record['compliance']['violations']] == ([severity] if severity else [])


def test_pressure_thresholds_are_checked():
    with pytest.raises(AnsibleFilterError, match='pressure_thresholds must be a dict with keys among'):
        _records.balloon_compliance([vm('a')], rules=BUILTIN, pressure_thresholds={'headroom': 3})


# ---- the report: rules table, provenance, since last run, findings ----

def read_now(fact):
    """A fact the gather action wrote in this run."""
    run = _facts.run_id()
    return dict(fact, run=run, outcome={'status': fact.get('status', 'ok'), 'reason': fact.get('reason') or '',
                                        'stage': 'gather', 'run': run})


def failed_now(reason):
    """The fact of a hypervisor that failed in this run before anything was read (none before)."""
    return _facts.record_failure(None, {'reason': reason, 'stage': 'check'}, 'hv')


def _fleet_report(vms, previous=None, hosts=('hv1',), hosts_ok=None):
    records = _records.balloon_compliance(vms, rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    facts = {'vms': records, 'status': 'ok', 'rules': BUILTIN,
             'parameters': {'expected_interval': 10, 'interval_rule': 'at_most', 'min_available_percent': 10.0,
                            'pressure': dict(_pressure.DEFAULT_PRESSURE)}}
    return _report.balloon_report({'hv1': {'balloon_stats': facts}}, list(hosts), hosts_ok, provenance={'check_mode': False},
                                  previous=previous)


def test_report_rules_table_and_provenance():
    report = _fleet_report([vm('a')])
    assert [rule['name'] for rule in report['rules']] == [rule['name'] for rule in BUILTIN]
    table = dict((rule['name'], rule) for rule in report['rules'])
    assert table['min_available_memory']['thresholds'] == {'min_available_percent': 10.0}
    assert table['polling_interval']['thresholds'] == {'expected_interval': 10, 'interval_rule': 'at_most'}
    assert table['memory_pressure']['thresholds']['pressure_headroom_high'] == 5.0
    assert table['memory_pressure']['severity_query']
    assert table['reachable']['always'] is True
    provenance = report['provenance']
    assert provenance['check_mode'] is False
    assert provenance['collection'] == 'qmp.balloon'
    assert provenance['collection_version']
    assert provenance['ansible_core_version']
    assert provenance['user'] and provenance['controller']


def test_since_last_run_and_findings_ignore_values():
    first = _fleet_report([vm('a'), vm('b'), vm('gone')])
    assert first['since_last_run']['previous'] is None
    assert first['since_last_run']['changed'] is True
    # same fleet, other stats values, ages and times: nothing changed
    same = _fleet_report([vm('a', age=7, stats={'total_memory': 4 * GIB, 'free_memory': GIB // 2, 'available_memory': 3 * GIB}),
                          vm('b', last_update=1700000100), vm('gone')], previous=first)
    assert same['since_last_run']['changed'] is False
    assert same['findings'] == first['findings']
    later = _fleet_report([vm('a', polling_interval=0, health='polling_disabled'), vm('b'), vm('new')], previous=same)
    since = later['since_last_run']
    assert since['changed'] is True
    assert since['previous'] == same['generated_at']
    assert since['vms_appeared'] == ['hv1/new']
    assert since['vms_disappeared'] == ['hv1/gone']
    assert since['new_violations'] == [{'vm': 'hv1/a', 'rule': 'data_fresh'}, {'vm': 'hv1/a', 'rule': 'polling_interval'}]
    assert since['state_changes'] == [{'vm': 'hv1/a', 'before': 'compliant', 'after': 'non_compliant'}]
    back = _fleet_report([vm('a'), vm('b'), vm('new')], previous=later)
    assert back['since_last_run']['resolved_violations'] == [{'vm': 'hv1/a', 'rule': 'data_fresh'},
                                                             {'vm': 'hv1/a', 'rule': 'polling_interval'}]


def test_a_hypervisor_that_drops_out_is_a_finding():
    first = _fleet_report([vm('a')], hosts=('hv1', 'hv2'))
    second = _fleet_report([vm('a')], hosts=('hv1', 'hv2'), previous=first)
    assert second['since_last_run']['changed'] is False
    third = _fleet_report([vm('a')], hosts=('hv1',), previous=second)
    assert third['since_last_run']['hypervisor_changes'] == []
    assert third['since_last_run']['changed'] is True      # hv2 left the report


def _two_hosts_report(hosts, previous=None):
    """A report over hosts hv1 (VMs a, b; b failing) and hv2 (VM c, failing), limited to ``hosts``."""
    facts = {}
    for host, vms in (('hv1', [vm('a'), vm('b', polling_interval=0, health='polling_disabled')]),
                      ('hv2', [vm('c', polling_interval=0, health='polling_disabled')])):
        records = _records.balloon_compliance(vms, rules=BUILTIN, hypervisor=host, expected_interval=10,
                                              min_available_percent=10)
        facts[host] = {'balloon_stats': {'vms': records, 'status': 'ok', 'rules': BUILTIN}}
    return _report.balloon_report(facts, list(hosts), provenance={'check_mode': False}, previous=previous)


def test_a_limited_run_compares_only_the_hypervisors_both_runs_audited():
    """--limit hv2 after a full run: hv1's VMs did not disappear; the next full run finds no "new" violation on hv1."""
    full = _two_hosts_report(('hv1', 'hv2'))
    limited = _two_hosts_report(('hv2',), previous=full)
    since = limited['since_last_run']
    assert since['vms_disappeared'] == [] and since['new_violations'] == [] and since['resolved_violations'] == []
    assert since['not_in_this_run'] == ['hv1'] and since['not_in_previous'] == []
    again = _two_hosts_report(('hv1', 'hv2'), previous=limited)['since_last_run']
    assert again['vms_appeared'] == [] and again['new_violations'] == [] and again['hypervisor_changes'] == []
    assert again['not_in_previous'] == ['hv1']


@pytest.mark.parametrize('hostvars_host, status, reason', [
    # no fact, or only an earlier run's: the role recorded nothing in this run, so it never ran there
    ({}, 'unreachable', _report.UNREACHABLE_REASON),
    ({'balloon_stats': {'vms': [], 'status': 'no_vms', 'run': 'an earlier run',
                        'outcome': {'status': 'no_vms', 'run': 'an earlier run'}}}, 'unreachable', _report.UNREACHABLE_REASON),
    # private variables of the role say nothing to the report
    ({'__balloon_stats_failure': 'No VM found on hv2', '__balloon_stats_info': {'failed': True, 'msg': 'x'}}, 'unreachable',
     _report.UNREACHABLE_REASON),
    # a failure the role recorded in this run
    ({'balloon_stats': None}, 'failed', 'No VM found on hv2'),
])
def test_a_host_without_an_outcome_of_this_run_is_unreachable(hostvars_host, status, reason):
    if 'balloon_stats' in hostvars_host and hostvars_host['balloon_stats'] is None:
        hostvars_host = {'balloon_stats': failed_now('No VM found on hv2')}
    report = _report.balloon_report({'hv2': hostvars_host}, ['hv2'], [], provenance={'check_mode': False})
    assert (report['hypervisors'][0]['status'], report['hypervisors'][0]['reason']) == (status, reason)


@pytest.mark.parametrize('data, expression, expected', [
    ([{'path': '/a'}, {'path': '/b'}], '[].{socket: path}', [{'socket': '/a'}, {'socket': '/b'}]),
    ({'vms': [{'n': 1}, {'n': 5}]}, 'vms[?n > `2`].n', [5]),
    ({}, 'missing', None),
])
def test_jmespath_filter(data, expression, expected):
    assert jmespath_query(data, expression) == expected


@pytest.mark.parametrize('expression', ['', '   ', None, '[[['])
def test_jmespath_filter_bad_expression(expression):
    with pytest.raises(AnsibleFilterError):
        jmespath_query({}, expression)


def test_report_keeps_the_data_of_a_host_that_failed_after_gathering():
    records = _records.balloon_compliance([vm('a')], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    gathered = {'balloon_stats': read_now({'vms': records, 'status': 'ok'})}
    report = _report.balloon_report({'hv1': gathered, 'hv2': {}}, ['hv1', 'hv2'], [])
    statuses = dict((h['name'], h['status']) for h in report['hypervisors'])
    assert statuses == {'hv1': 'failed', 'hv2': 'unreachable'}
    assert report['hypervisors'][0]['stats_from'] == 'this_run'
    assert 'its data is kept' in report['hypervisors'][0]['reason']
    assert [v['name'] for v in report['vms']] == ['a']
    assert report['summary']['hypervisors_failed'] == 1
    assert report['summary']['hypervisors_unreachable'] == 1
    # with the failure the role recorded after the read: its sentence, the data still counted
    recorded = {'balloon_stats': _facts.record_failure(gathered['balloon_stats'], {'reason': 'export failed', 'stage': 'export'}, 'hv1')}
    [entry] = _report.balloon_report({'hv1': recorded}, ['hv1'], [])['hypervisors']
    assert (entry['status'], entry['reason'], entry['vms'], entry['stats_from']) == ('failed', 'export failed', 1, 'this_run')


def test_records_keep_the_diagnosis_and_the_csv_its_advice():
    """What to do about a VM (issue 13) reaches the fact, the JSON and the CSV, not only the module's result."""
    sick = vm('sick', health='driver_not_loaded', driver={'loaded': False, 'stats_negotiated': False},
              advice='the guest has no virtio-balloon driver loaded: load it', qemu_version='7.2.22')
    [record] = _records.balloon_compliance([sick], rules=BUILTIN, hypervisor='hv1', expected_interval=10,
                                           min_available_percent=10)
    assert record['advice'].startswith('the guest has no virtio-balloon driver loaded')
    assert record['driver'] == {'loaded': False, 'stats_negotiated': False} and record['qemu_version'] == '7.2.22'
    report = _report.balloon_report({'hv1': {'balloon_stats': {'vms': [record]}}}, ['hv1'])
    [row] = list(csv.DictReader(io.StringIO(_report_files.balloon_report_csv(report))))
    assert row['advice'] == record['advice']


def test_an_earlier_runs_cached_fact_is_not_counted_for_a_host_this_run_did_not_reach():
    """With a fact cache, an unreachable hypervisor still has its last balloon_stats fact: it must read
    unreachable with the old data left out, not "failed after gathering" with old VMs counted as today's."""
    records = _records.balloon_compliance([vm('a'), vm('b')], rules=BUILTIN, hypervisor='hv1', expected_interval=10,
                                          min_available_percent=10)
    cached = {'balloon_stats': {'vms': records, 'status': 'ok', 'collected_at': '2026-11-29T10:00:00Z'}}
    unreachable = dict(cached, __balloon_stats_probe={'unreachable': True, 'msg': 'ssh: connect to host 127.0.0.9 port 1'})
    report = _report.balloon_report({'hv1': unreachable}, ['hv1'], [], provenance={'check_mode': False})
    [entry] = report['hypervisors']
    assert entry['status'] == 'unreachable' and entry['vms'] == 0 and entry['stats_from'] is None
    assert entry['reason'].startswith(_report.UNREACHABLE_REASON)
    assert '2026-11-29T10:00:00Z' in entry['reason'] and 'left out' in entry['reason']
    assert report['vms'] == [] and report['summary']['vms_compliant'] == 0
    assert entry['audit']['source'] != 'gather'    # the left-out fact does not describe this run either
    # the same cached fact on a host still in the play (a report-only play after sliced jobs) is used, and marked
    report = _report.balloon_report({'hv1': cached}, ['hv1'], provenance={'check_mode': False})
    [entry] = report['hypervisors']
    assert (entry['status'], entry['stats_from'], entry['collected_at']) == ('ok', 'fact_cache', '2026-11-29T10:00:00Z')
    assert report['summary']['vms_compliant'] == 2


def test_a_fact_written_without_a_vm_given_is_this_runs():
    """A hypervisor given no VM: no module ran, but the no_vms fact is this run's; the same fact of an
    earlier run (a play that did not gather) is fact_cache."""
    fact = {'vms': [], 'status': 'no_vms', 'reason': 'no VM found (no socket matches )', 'collected_at': '2026-11-30T10:00:00Z'}
    [entry] = _report.balloon_report({'hv1': {'balloon_stats': read_now(fact)}}, ['hv1'],
                                     provenance={'check_mode': False})['hypervisors']
    assert (entry['status'], entry['stats_from']) == ('no_vms', 'this_run')
    earlier = dict(fact, run='an earlier run', outcome={'status': 'no_vms', 'run': 'an earlier run'})
    [entry] = _report.balloon_report({'hv1': {'balloon_stats': earlier}}, ['hv1'], provenance={'check_mode': False})['hypervisors']
    assert (entry['status'], entry['stats_from']) == ('no_vms', 'fact_cache')


# ---- issue 14 after the trial: how each hypervisor was audited, CSV rows per hypervisor, used %, rotation ----

def test_report_says_how_each_hypervisor_was_audited():
    records = _records.balloon_compliance([vm('a'), failed_vm('b')], rules=BUILTIN, hypervisor='hv1', expected_interval=10,
                                          min_available_percent=10)
    libvirt = _records.balloon_compliance([vm('d')], rules=BUILTIN, hypervisor='hv2', expected_interval=10,
                                          min_available_percent=10)
    hostvars = {
        'hv1': {'balloon_stats': {
            'vms': records, 'status': 'failed', 'reason': 'sockets[1]: ...',
            'empty_globs': [{'glob': '/run/typo/*.qmp', 'directory': '/run/typo', 'directory_exists': False, 'msg': 'x'}],
            'audit': {'transport': 'qmp', 'transport_setting': 'qmp', 'socket_globs': ['/run/vms/*.qmp', '/run/typo/*.qmp'],
                      'vms': [{'name': 'a', 'socket': '/run/a.qmp', 'tls_key': 'secret'}], 'all_domains': False,
                      'libvirt_uri': None, 'vms_listed': 2, 'vms_read': 1}}},
        'hv2': {'balloon_stats': {
            'vms': libvirt, 'status': 'ok',
            'audit': {'transport': 'libvirt', 'transport_setting': 'auto', 'socket_globs': [], 'vms': [], 'all_domains': True,
                      'libvirt_uri': 'qemu:///system', 'vms_listed': 1, 'vms_read': 1}}},
        # unreachable: the inventory's variables; the role's private variables are never read
        'hv3': {'__balloon_stats_plan': {'transport': 'libvirt', 'sockets': ['/private/*.qmp']},
                'balloon_stats_socket_globs': ['/srv/*.qmp']},
        # unreachable before anything ran: only the inventory's variables
        'hv4': {'balloon_stats_vms': [{'domain': 'web1'}], 'balloon_stats_transport': 'libvirt',
                'balloon_stats_libvirt_uri': 'qemu+ssh://hv4/system'},
        'hv5': {},
    }
    report = _report.balloon_report(hostvars, ['hv1', 'hv2', 'hv3', 'hv4', 'hv5'], ['hv1', 'hv2'])
    audit = dict((h['name'], h['audit']) for h in report['hypervisors'])
    assert audit['hv1']['source'] == 'gather' and audit['hv1']['transport'] == 'qmp' and audit['hv1']['chosen_by_auto'] is False
    assert audit['hv1']['explicit_vms'] == [{'name': 'a', 'socket': '/run/a.qmp'}]       # nothing else of the input
    assert audit['hv1']['empty_globs'] == [{'glob': '/run/typo/*.qmp', 'directory': '/run/typo', 'directory_exists': False}]
    assert (audit['hv1']['vms_listed'], audit['hv1']['vms_read']) == (2, 1)
    assert audit['hv1']['summary'] == ('QMP sockets; explicit VMs: a (/run/a.qmp); socket globs: /run/vms/*.qmp, /run/typo/*.qmp '
                                       '(matched nothing: its directory /run/typo does not exist); 2 VMs listed, 1 read')
    assert audit['hv2']['chosen_by_auto'] is True and audit['hv2']['all_domains'] is True
    assert audit['hv2']['summary'] == ('libvirt at qemu:///system (chosen by balloon_stats_transport auto); every active domain; '
                                       '1 VM listed, 1 read')
    assert audit['hv3']['source'] == 'inventory' and audit['hv3']['socket_globs'] == ['/srv/*.qmp']
    assert audit['hv3']['summary'].startswith('not audited; as the inventory configures it (role defaults and play variables '
                                              'not visible); ')
    assert 'socket globs: /srv/*.qmp' in audit['hv3']['summary'] and 'private' not in audit['hv3']['summary']
    assert audit['hv3']['vms_listed'] is None
    assert audit['hv4']['source'] == 'inventory' and audit['hv4']['libvirt_uri'] == 'qemu+ssh://hv4/system'
    assert audit['hv4']['explicit_vms'] == [{'domain': 'web1'}]
    assert 'libvirt at qemu+ssh://hv4/system; explicit VMs: web1' in audit['hv4']['summary']
    assert audit['hv5']['source'] == 'none'
    assert audit['hv5']['summary'].startswith('not audited; how it would have been is unknown')
    # the CSV carries each row's hypervisor status, transport and audit sentence
    rows = list(csv.DictReader(io.StringIO(_report_files.balloon_report_csv(report))))
    assert [(row['hypervisor'], row['vm'], row['hypervisor_status']) for row in rows] == [
        ('hv1', 'a', 'failed'), ('hv1', 'b', 'failed'), ('hv2', 'd', 'ok'),
        ('hv3', '', 'unreachable'), ('hv4', '', 'unreachable'), ('hv5', '', 'unreachable')]
    assert rows[2]['transport'] == 'libvirt' and rows[2]['audit'] == audit['hv2']['summary']


def test_a_fact_without_the_audit_key_still_counts_its_vms():
    records = _records.balloon_compliance([vm('a')], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    [hypervisor] = _report.balloon_report({'hv1': {'balloon_stats': {'vms': records, 'status': 'ok'}}}, ['hv1'])['hypervisors']
    assert hypervisor['audit']['source'] == 'gather' and hypervisor['audit']['transport'] is None
    assert hypervisor['audit']['summary'] == ('how its VMs were found was not recorded (a fact gathered by an older qmp.balloon); '
                                              '1 VM listed, 1 read')


def test_csv_has_one_row_per_hypervisor_not_audited():
    records = _records.balloon_compliance([vm('a')], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    hostvars = {'hv1': {'balloon_stats': {'vms': records, 'status': 'ok'}},
                'hv2': {'balloon_stats': {'vms': [], 'status': 'no_vms', 'reason': 'no VM found (no socket matches /x/*.qmp)'}},
                'hv3': {'balloon_stats': failed_now('No VM found on hv3')}, 'hv4': {}}
    report = _report.balloon_report(hostvars, ['hv1', 'hv2', 'hv3', 'hv4'], ['hv1', 'hv2', 'hv3'])
    text = _report_files.balloon_report_csv(report)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(_report_files.CSV_COLUMNS + _report_files.CSV_COLUMNS_STATES + _report_files.CSV_COLUMNS_AUDIT)
    assert [(row['hypervisor'], row['vm'], row['hypervisor_status']) for row in rows] == [
        ('hv1', 'a', 'ok'), ('hv2', '', 'no_vms'), ('hv3', '', 'failed'), ('hv4', '', 'unreachable')]
    assert rows[1]['hypervisor_reason'] == 'no VM found (no socket matches /x/*.qmp)'
    assert rows[2]['hypervisor_reason'] == 'No VM found on hv3'
    assert rows[3]['hypervisor_reason'] == _report.UNREACHABLE_REASON
    # the VM columns of those rows are empty
    for row in rows[1:]:
        assert [row[column] for column in _report_files.CSV_COLUMNS[1:] + _report_files.CSV_COLUMNS_STATES] == [''] * (
            len(_report_files.CSV_COLUMNS) - 1 + len(_report_files.CSV_COLUMNS_STATES))
    assert text.count('\n') == 5


def test_the_reports_used_figure_is_the_one_the_rules_check():
    """Page cache: 4 GiB total, 1 GiB free, 3 GiB available: the module's used_percent says 75, the rules see 25."""
    [record] = _records.balloon_compliance(
        [vm('cache', stats={'total_memory': 4 * GIB, 'free_memory': GIB, 'available_memory': 3 * GIB}, used_percent=75.0)],
        rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    assert (record['used_percent'], record['available_percent'], record['unavailable_percent']) == (75.0, 75.0, 25.0)
    [unknown] = _records.balloon_compliance([vm('old-guest', stats={'total_memory': 4 * GIB, 'free_memory': GIB})],
                                            rules=BUILTIN, hypervisor='hv1')
    assert unknown['unavailable_percent'] is None and unknown['used_percent'] == 75.0
    report = _report.balloon_report({'hv1': {'balloon_stats': {'vms': [record, unknown]}}}, ['hv1'])
    rows = list(csv.DictReader(io.StringIO(_report_files.balloon_report_csv(report))))
    assert 'used_percent' not in rows[0]
    assert [row['unavailable_percent'] for row in rows] == ['25.0', '']
    # a record cached by an older collection (no unavailable_percent) gets it from available_percent
    older = dict(record)
    del older['unavailable_percent']
    assert _report_files.unavailable_percent(older) == 25.0


def _write_runs(tmp_path, changed_flags, name='balloon-stats'):
    paths = []
    for index, changed in enumerate(changed_flags):
        path = tmp_path / ('%s-20261130T1700%02dZ.json' % (name, index))
        body = {'since_last_run': {'changed': changed}} if changed is not None else {'schema_version': 1}
        path.write_text(json.dumps(body) if changed != 'broken' else '{not json', encoding='utf-8')
        paths.append(str(path))
    return paths


@pytest.mark.parametrize('flags, keep, kept', [
    # the newest run always stays; unchanged runs older than it go; the newest N changed runs stay
    ([True, False, False, True, False], 2, [0, 3, 4]),
    ([True, False, False, True, False], 1, [3, 4]),
    ([True, True, True, True], 2, [2, 3]),
    ([True, False, True, False, True], 10, [0, 2, 4]),
    # the newest is changed: it counts among the N
    ([True, True, False, True], 1, [3]),
    ([True, False], 0, [0, 1]),                  # 0 keeps all
    # unreadable or older files count as changed: kept, never lost by mistake
    ([True, 'broken', None, False, False], 3, [0, 1, 2, 4]),
    ([], 3, []),
])
def test_report_rotation_keeps_the_changed_runs_and_the_newest(tmp_path, flags, keep, kept):
    paths = _write_runs(tmp_path, flags)
    result = _report_files.balloon_report_rotation(paths + [str(tmp_path / 'balloon-stats.json'), str(tmp_path / 'other.txt')], keep)
    stamps = ['20261130T1700%02dZ' % index for index in range(len(flags))]
    assert result['keep'] == [stamps[index] for index in kept]
    assert result['remove'] == [stamp for stamp in stamps if stamp not in result['keep']]
    assert set(result['unchanged']) <= set(result['remove'])


def test_report_rotation_reads_only_what_it_needs(tmp_path):
    paths = _write_runs(tmp_path, [True, True, True])
    (tmp_path / 'balloon-stats-20261130T170000Z.json').unlink()    # beyond keep: never opened
    assert _report_files.balloon_report_rotation(paths, 2) == {
        'keep': ['20261130T170001Z', '20261130T170002Z'], 'remove': ['20261130T170000Z'], 'unchanged': []}


@pytest.mark.parametrize('paths, keep, message', [
    ('/tmp/a.json', 2, 'expects a list'),
    ([], 'many', 'keep must be an integer'),
])
def test_report_rotation_refuses_bad_input(paths, keep, message):
    with pytest.raises(AnsibleFilterError, match=message):
        _report_files.balloon_report_rotation(paths, keep)


def test_provenance_says_the_host_pattern_is_not_available():
    report = _fleet_report([vm('a')])
    assert report['provenance']['host_pattern'] is None
    assert 'does not expose the play' in report['provenance']['host_pattern_note']


def test_vms_of_a_hypervisor_that_became_unreachable_did_not_disappear():
    """Trial (session 5): hv2 unreachable in the second run; its VMs were not read, not gone."""
    full = _two_hosts_report(('hv1', 'hv2'))
    facts = {'hv1': {'balloon_stats': {'vms': [v for v in full['vms'] if v['hypervisor'] == 'hv1'], 'status': 'ok', 'rules': BUILTIN}},
             'hv2': {}}
    second = _report.balloon_report(facts, ['hv1', 'hv2'], ['hv1'], provenance={'check_mode': False}, previous=full)
    since = second['since_last_run']
    assert dict((h['name'], h['status']) for h in second['hypervisors']) == {'hv1': 'ok', 'hv2': 'unreachable'}
    assert since['vms_disappeared'] == [] and since['resolved_violations'] == []
    assert since['vms_not_compared'] == ['hv2']
    assert since['hypervisor_changes'] == [{'hypervisor': 'hv2', 'before': 'ok', 'after': 'unreachable'}]
    assert since['changed'] is True
    # back again: its VMs are not "appeared", its old violation is not "new"
    third = _two_hosts_report(('hv1', 'hv2'), previous=second)
    assert third['since_last_run']['vms_appeared'] == [] and third['since_last_run']['new_violations'] == []
    assert third['since_last_run']['vms_not_compared'] == ['hv2']


def test_gathered_id_tells_reports_of_the_same_gathers_apart():
    """strategy free: hypervisors reaching the report after the last gather must not write it twice."""
    records = _records.balloon_compliance([vm('a')], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)

    def host(collected_at, gathered=True):
        fact = {'vms': records, 'status': 'ok', 'collected_at': collected_at}
        return {'balloon_stats': read_now(fact) if gathered else fact}
    first = _report.balloon_report({'hv1': host('T1'), 'hv2': host('T2')}, ['hv1', 'hv2'], provenance={'check_mode': False})
    again = _report.balloon_report({'hv1': host('T1'), 'hv2': host('T2')}, ['hv1', 'hv2'], provenance={'check_mode': False},
                                   previous=first)
    later = _report.balloon_report({'hv1': host('T3'), 'hv2': host('T2')}, ['hv1', 'hv2'], provenance={'check_mode': False})
    cached = _report.balloon_report({'hv1': host('T1', False)}, ['hv1'], provenance={'check_mode': False})
    assert first['gathered'] and first['gathered'] == again['gathered']
    assert later['gathered'] != first['gathered']
    assert cached['gathered'] is None


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted():
    """Trial (session 5): a VM named =HYPERLINK(...) went into the CSV as a formula."""
    [record] = _records.balloon_compliance([vm('=HYPERLINK("x","y")')], rules=BUILTIN, hypervisor='hv1', expected_interval=10,
                                           min_available_percent=10)
    report = _report.balloon_report({'hv1': {'balloon_stats': {'vms': [record]}}}, ['hv1'])
    rows = list(csv.reader(io.StringIO(_report_files.balloon_report_csv(report))))
    assert rows[1][rows[0].index('vm')] == "'=HYPERLINK(\"x\",\"y\")"
    assert rows[1][rows[0].index('hypervisor')] == 'hv1'


# ---- issue 16 trial (session 6): facts under ansible_facts, check mode with an install pending ----

def test_report_reads_the_fact_from_ansible_facts_when_facts_are_not_variables():
    """INJECT_FACTS_AS_VARS off (ansible-core's coming default), or the fact cache: only ansible_facts holds it."""
    records = _records.balloon_compliance([vm('a')], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    facts = {'vms': records, 'status': 'ok', 'rules': BUILTIN, 'collected_at': 'T1'}
    hostvars = {'hv1': {'ansible_facts': {'balloon_stats': read_now(facts)}}}
    report = _report.balloon_report(hostvars, ['hv1'], ['hv1'], provenance={'check_mode': False})
    assert report['hypervisors'][0]['status'] == 'ok' and report['summary']['vms'] == 1
    assert [rule['name'] for rule in report['rules']] == [rule['name'] for rule in BUILTIN]


@pytest.mark.parametrize('cached', [False, True])
def test_a_host_not_read_in_check_mode_is_not_counted_with_a_cached_fact(cached):
    """check mode, prepare would install first: the read is skipped, so nothing of this run describes the host."""
    records = _records.balloon_compliance([vm('a')], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    previous = {'vms': records, 'status': 'ok', 'collected_at': '2026-11-29T10:00:00Z'} if cached else None
    # the role records this sentence (roles/balloon_stats/vars/main.yml) instead of reading
    pending = ('not read: check mode, and the role would first prepare /opt/qmp-balloon on it (an install), '
               'so none of its VMs was read; run without --check to read them')
    host = {'ansible_facts': {'balloon_stats': _facts.record_failure(previous, {'reason': pending, 'stage': 'prepare'}, 'hv1')}}
    report = _report.balloon_report({'hv1': host}, ['hv1'], ['hv1'], provenance={'check_mode': True})
    entry = report['hypervisors'][0]
    assert entry['status'] == 'failed' and entry['stats_from'] is None and report['summary']['vms'] == 0
    assert entry['reason'].startswith('not read: check mode') and '/opt/qmp-balloon' in entry['reason']
    assert ('2026-11-29T10:00:00Z' in entry['reason']) is cached
    assert 'a task failed' not in entry['reason']


def test_a_failed_host_whose_fact_has_no_vms_has_no_stats_left_out():
    """main writes a no_vms fact for a hypervisor without VMs, then fails it (balloon_stats_require_vms)."""
    fact = read_now({'vms': [], 'status': 'no_vms', 'collected_at': 'T9'})
    host = {'ansible_facts': {'balloon_stats': _facts.record_failure(
        fact, {'reason': 'No VM found on hv1: balloon_stats_vms is empty', 'stage': 'no_vm'}, 'hv1')}}
    entry = _report.balloon_report({'hv1': host}, ['hv1'], [], provenance={'check_mode': False})['hypervisors'][0]
    assert entry['status'] == 'failed' and entry['reason'] == 'No VM found on hv1: balloon_stats_vms is empty'


def test_a_report_only_play_keeps_a_failure_recorded_after_the_read():
    """The cached fact of a hypervisor that failed after its read (balloon_stats_require_vms): a later
    report-only play still says failed, with the recorded sentence, not the read's no_vms."""
    earlier = {'vms': [], 'status': 'no_vms', 'reason': 'no VM found (no socket matches /x/*.qmp)', 'collected_at': 'T1',
               'run': 'an earlier run'}
    fact = dict(earlier, outcome={'status': 'failed', 'reason': 'No VM found on hv1: ... (balloon_stats_require_vms is true)',
                                  'stage': 'Fail when no VM was found', 'run': 'an earlier run'})
    [entry] = _report.balloon_report({'hv1': {'balloon_stats': fact}}, ['hv1'], provenance={'check_mode': False})['hypervisors']
    assert (entry['status'], entry['stats_from']) == ('failed', 'fact_cache')
    assert entry['reason'] == 'No VM found on hv1: ... (balloon_stats_require_vms is true)'
