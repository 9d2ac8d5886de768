# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compliance rules, the fleet report and its CSV."""

from __future__ import annotations

import csv
import io

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.filter import compliance
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


# (vm, expected failing built-in rules)
CASES = [
    (vm('good'), []),
    (vm('wrong-interval', polling_interval=5), ['polling_interval']),
    (vm('disabled', polling_interval=0, health='polling_disabled'), ['polling_interval', 'data_fresh']),
    (vm('no-driver', last_update=0, age=None, health='never_updated', used_percent=None,
        stats={'total_memory': None, 'free_memory': None, 'available_memory': None}), ['driver_reporting', 'data_fresh']),
    (vm('stale', age=100, health='stale'), ['data_fresh']),
    (vm('low-memory', stats={'total_memory': 4 * GIB, 'free_memory': 0, 'available_memory': GIB // 20}), ['min_available_memory']),
    (vm('unknown-available', stats={'total_memory': 4 * GIB, 'free_memory': GIB}), []),     # null is unknown, not a violation
    (failed_vm('dead'), ['reachable']),
]


@pytest.mark.parametrize('entry, failing', CASES, ids=[case[0]['name'] for case in CASES])
def test_builtin_rules(entry, failing):
    records = compliance.balloon_compliance([entry], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    record = records[0]
    assert sorted(v['rule'] for v in record['compliance']['violations']) == sorted(failing)
    assert record['compliance']['compliant'] is (not failing)
    assert record['hypervisor'] == 'hv1'


def test_unreachable_vm_only_evaluates_always_rules():
    record = compliance.balloon_compliance([failed_vm('dead')], rules=BUILTIN, expected_interval=10, min_available_percent=10)[0]
    assert record['reachable'] is False
    assert record['error'].startswith('dead (unix:/run/dead.qmp)')
    assert record['compliance']['rules'] == {'reachable': False, 'polling_interval': None, 'driver_reporting': None,
                                             'data_fresh': None, 'min_available_memory': None}


def test_user_rule_flags_exactly_the_matching_vms():
    vms = [vm('a', stats={'total_memory': 8 * GIB, 'free_memory': GIB, 'available_memory': 4 * GIB}),
           vm('b', stats={'total_memory': 2 * GIB, 'free_memory': GIB, 'available_memory': GIB}),
           vm('c', stats={'total_memory': 1 * GIB, 'free_memory': GIB // 2, 'available_memory': GIB // 2})]
    rule = {'name': 'big_enough', 'query': 'stats.total_memory >= `2147483648`', 'severity': 'critical'}
    records = compliance.balloon_compliance(vms, rules=[rule])
    assert [r['name'] for r in records if not r['compliance']['compliant']] == ['c']
    expected = {'rule': 'big_enough', 'severity': 'critical', 'description': 'big_enough', 'hypervisor': None, 'vm': 'c'}
    assert records[2]['compliance']['violations'][0] == expected


@pytest.mark.parametrize('rules, message', [
    ([{'query': 'a'}], 'has no name'),
    ([{'name': 'x'}], 'has no query'),
    ([{'name': 'x', 'query': 'a'}, {'name': 'x', 'query': 'b'}], 'used twice'),
    ([{'name': 'x', 'query': 'a', 'severity': 'fatal'}], 'severity must be one of'),
    ([{'name': 'x', 'query': 'stats.[['}], 'invalid JMESPath query'),
    (['not a dict'], 'must be a dict'),
])
def test_bad_rules_are_refused(rules, message):
    with pytest.raises(AnsibleFilterError, match=message):
        compliance.balloon_compliance([vm('a')], rules=rules)


def test_report_lists_every_host_and_counts():
    hv1 = compliance.balloon_compliance([vm('a'), vm('b', polling_interval=0, health='polling_disabled')], rules=BUILTIN,
                                        hypervisor='hv1', expected_interval=10, min_available_percent=10)
    hv2 = compliance.balloon_compliance([failed_vm('c')], rules=BUILTIN, hypervisor='hv2', expected_interval=10, min_available_percent=10)
    hostvars = {'hv1': {'balloon_stats': {'vms': hv1, 'collected_at': 'T1'}},
                'hv2': {'balloon_stats': {'vms': hv2, 'collected_at': 'T2'}},
                'hv3': {}, 'hv4': {'balloon_stats': {'vms': []}}}
    report = compliance.balloon_report(hostvars, ['hv1', 'hv2', 'hv3', 'hv4', 'hv5'], ['hv1', 'hv2', 'hv4', 'hv5'])
    assert report['schema_version'] == 1
    statuses = dict((h['name'], h['status']) for h in report['hypervisors'])
    assert statuses == {'hv1': 'ok', 'hv2': 'vm_errors', 'hv3': 'unreachable', 'hv4': 'no_vms', 'hv5': 'not_gathered'}
    summary = report['summary']
    assert summary['vms'] == 3
    assert summary['vms_compliant'] == 1
    assert summary['vms_non_compliant'] == 2
    assert summary['vms_unreachable'] == 1
    assert summary['hypervisors_unreachable'] == 2
    assert summary['violations'] == 3           # b: polling_interval + data_fresh; c: reachable
    assert summary['by_severity'] == {'critical': 2, 'warning': 1, 'info': 0}
    assert summary['by_health'] == {'ok': 1, 'polling_disabled': 1, 'unreachable': 1}


def test_summary_counts_one_hosts_records_like_the_report():
    records = compliance.balloon_compliance([vm('a'), vm('b', polling_interval=0, health='polling_disabled'), failed_vm('c')], rules=BUILTIN,
                                            hypervisor='hv1', expected_interval=10, min_available_percent=10)
    assert compliance.balloon_summary(records) == {'vms': 3, 'unreachable': 1, 'compliant': 1, 'violations': 3}
    assert compliance.balloon_summary([]) == {'vms': 0, 'unreachable': 0, 'compliant': 0, 'violations': 0}
    report = compliance.balloon_report({'hv1': {'balloon_stats': {'vms': records}}}, ['hv1'])
    [hypervisor] = report['hypervisors']
    assert (hypervisor['vms'], hypervisor['failed_vms'], hypervisor['violations']) == (3, 1, 3)
    assert report['severities'] == ['critical', 'warning', 'info'] == list(compliance.SEVERITIES)
    assert list(report['summary']['by_severity']) == report['severities']


def test_csv_has_one_row_per_vm_and_escapes():
    records = compliance.balloon_compliance([vm('a'), vm('b,"quoted"'), failed_vm('c')], rules=BUILTIN,
                                            hypervisor='hv1', expected_interval=10, min_available_percent=10)
    report = compliance.balloon_report({'hv1': {'balloon_stats': {'vms': records}}}, ['hv1'])
    rows = list(csv.DictReader(io.StringIO(compliance.balloon_report_csv(report))))
    assert [row['vm'] for row in rows] == ['a', 'b,"quoted"', 'c']
    assert list(rows[0].keys()) == list(compliance.CSV_COLUMNS)
    assert rows[0]['total_memory'] == str(4 * GIB)
    assert rows[0]['compliant'] == 'True'
    assert rows[2]['reachable'] == 'False'
    assert rows[2]['violations'] == 'reachable'
    assert rows[2]['total_memory'] == ''


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
    records = compliance.balloon_compliance([vm('a')], rules=BUILTIN, hypervisor='hv1', expected_interval=10, min_available_percent=10)
    report = compliance.balloon_report({'hv1': {'balloon_stats': {'vms': records}}, 'hv2': {}}, ['hv1', 'hv2'], [])
    statuses = dict((h['name'], h['status']) for h in report['hypervisors'])
    assert statuses == {'hv1': 'failed', 'hv2': 'unreachable'}
    assert [v['name'] for v in report['vms']] == ['a']
    assert report['summary']['hypervisors_failed'] == 1
    assert report['summary']['hypervisors_unreachable'] == 1
