# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Prometheus text exposition of balloon_openmetrics: names, units, HELP/TYPE, labels, absent stats, record shapes."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils._openmetrics import GUEST_STATS, balloon_openmetrics

MIB = 1024 ** 2
# one sample line: name, optional {labels}, value; no timestamp after the value
SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>.*)\})? (?P<value>[^ ]+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def info_vm(name='vm1', **fields):
    """One vms[] entry of balloon_stats_info, as QEMU 7.2 with a Linux guest gives it."""
    base = {'name': name, 'endpoint': 'unix:/run/%s.qmp' % name, 'qom_path': '/machine/peripheral/balloon0',
            'failed': False, 'health': 'ok', 'vm_status': 'running', 'polling_interval': 10, 'age': 3,
            'last_update': 1795794731, 'last_update_iso': '2026-11-27T15:52:11Z', 'qemu_version': '7.2.0',
            'stats': {'total_memory': 231706624, 'free_memory': 84869120, 'available_memory': 160653312,
                      'disk_caches': 50331648, 'swap_in': 0, 'swap_out': 4096, 'major_faults': 12, 'minor_faults': 3400,
                      'htlb_pgalloc': None, 'htlb_pgfail': None},
            'unsupported': ['htlb_pgalloc', 'htlb_pgfail'], 'used_memory': 146837504, 'used_percent': 63.4}
    base.update(fields)
    return base


def parse(text):
    """{name: {'help': str, 'type': str, 'samples': [(labels dict, value str)]}}; fails on any malformed line."""
    families = {}
    assert text.endswith('\n')
    for line in text.splitlines():
        if line.startswith('# HELP ') or line.startswith('# TYPE '):
            kind, name, rest = line[2:6], line.split(' ')[2], line.split(' ', 3)[3]
            family = families.setdefault(name, {'samples': []})
            assert kind.lower() not in family, 'second %s for %s' % (kind, name)
            assert not family['samples'], '%s after the samples of %s' % (kind, name)
            family[kind.lower()] = rest
            continue
        match = SAMPLE.match(line)
        assert match, 'not a sample line (or one with a timestamp): %r' % line
        name = match.group('name')
        assert name in families and 'type' in families[name], 'sample before HELP/TYPE: %r' % line
        labels = dict(LABEL.findall(match.group('labels') or ''))
        families[name]['samples'].append((labels, match.group('value')))
    return families


def value(families, name, **labels):
    found = [v for sample_labels, v in families[name]['samples'] if all(sample_labels.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, families.get(name))
    return found[0]


def test_names_units_and_types_of_a_module_result():
    families = parse(balloon_openmetrics({'vms': [info_vm()], 'changed': False}, hypervisor='hv1', collected_at=1795794735))
    assert value(families, 'qmp_balloon_guest_available_bytes', vm='vm1', hypervisor='hv1') == '160653312'
    assert value(families, 'qmp_balloon_guest_total_bytes', vm='vm1') == '231706624'
    assert value(families, 'qmp_balloon_guest_free_bytes', vm='vm1') == '84869120'
    assert value(families, 'qmp_balloon_guest_disk_caches_bytes', vm='vm1') == '50331648'
    assert value(families, 'qmp_balloon_guest_swap_out_bytes_total', vm='vm1') == '4096'
    assert value(families, 'qmp_balloon_guest_major_faults_total', vm='vm1') == '12'
    assert value(families, 'qmp_balloon_guest_page_faults_total', vm='vm1') == '3400'
    assert value(families, 'qmp_balloon_stats_last_update_timestamp_seconds', vm='vm1') == '1795794731'
    assert value(families, 'qmp_balloon_polling_interval_seconds', vm='vm1') == '10'
    assert value(families, 'qmp_balloon_up', vm='vm1') == '1'
    assert value(families, 'qmp_balloon_collected_timestamp_seconds', hypervisor='hv1') == '1795794735'
    assert value(families, 'qmp_balloon_vm_info', vm='vm1', qemu_version='7.2.0', vm_status='running') == '1'
    for name, family in families.items():
        assert name.startswith('qmp_balloon_')
        assert family['type'] == ('counter' if name.endswith('_total') else 'gauge'), name
        assert family['help'] and family['samples']
    # the qom_path and endpoint are not labels; no uuid with QMP
    assert all(set(labels) <= {'hypervisor', 'vm', 'state', 'qemu_version', 'vm_status'}
               for family in families.values() for labels, _v in family['samples'])


def test_every_stat_has_a_base_unit_name():
    for stat, (name, kind, text) in GUEST_STATS.items():
        assert name.startswith('guest_'), stat
        assert (kind == 'counter') == name.endswith('_total'), stat
        if 'bytes' in text:
            assert '_bytes' in name, stat


def test_an_absent_stat_has_no_series_never_zero():
    families = parse(balloon_openmetrics([info_vm()]))
    assert 'qmp_balloon_guest_hugetlb_allocations_total' not in families
    assert 'qmp_balloon_guest_hugetlb_allocation_failures_total' not in families
    # a VM whose guest sent nothing: only up, health, interval
    silent = info_vm('silent', health='driver_not_loaded', last_update=0, stats=dict.fromkeys(GUEST_STATS))
    families = parse(balloon_openmetrics([silent]))
    assert not [name for name in families if name.startswith('qmp_balloon_guest_')]
    assert 'qmp_balloon_stats_last_update_timestamp_seconds' not in families  # never answered: not 1970
    assert value(families, 'qmp_balloon_health', vm='silent', state='driver_not_loaded') == '1'
    assert value(families, 'qmp_balloon_health', vm='silent', state='ok') == '0'


def test_qemu_92_stats_and_unknown_ones_pass_through():
    stats = {'oom_kills': 1, 'alloc_stalls': 2, 'async_scans': 4096, 'direct_scans': 0, 'async_reclaims': 8192,
             'direct_reclaims': 0, 'some_future_stat': 7}
    families = parse(balloon_openmetrics([info_vm(stats=stats)]))
    assert value(families, 'qmp_balloon_guest_oom_kills_total', vm='vm1') == '1'
    assert value(families, 'qmp_balloon_guest_alloc_stalls_total', vm='vm1') == '2'
    assert value(families, 'qmp_balloon_guest_async_scan_bytes_total', vm='vm1') == '4096'
    assert value(families, 'qmp_balloon_guest_async_reclaim_bytes_total', vm='vm1') == '8192'
    assert value(families, 'qmp_balloon_guest_stat', vm='vm1', stat='some_future_stat') == '7'
    assert families['qmp_balloon_guest_stat']['type'] == 'untyped'


def test_help_and_type_once_per_family_over_many_vms():
    text = balloon_openmetrics([info_vm('vm%d' % index) for index in range(5)] + [{'name': 'down', 'failed': True, 'msg': 'x'}],
                               hypervisor='hv1')
    helps = [line.split(' ')[2] for line in text.splitlines() if line.startswith('# HELP ')]
    types = [line.split(' ')[2] for line in text.splitlines() if line.startswith('# TYPE ')]
    assert len(helps) == len(set(helps)) == len(types) == len(set(types))
    families = parse(text)
    assert len(families['qmp_balloon_guest_available_bytes']['samples']) == 5
    # samples of one family are contiguous (parse() refuses HELP after samples; this checks interleaving)
    names = [SAMPLE.match(line).group('name') for line in text.splitlines() if not line.startswith('#')]
    assert names == sorted(names, key=names.index)


def test_health_state_set_and_a_failed_vm():
    families = parse(balloon_openmetrics([info_vm(), {'name': 'down', 'failed': True, 'msg': 'vm down: monitor busy'}]))
    states = dict((labels['state'], v) for labels, v in families['qmp_balloon_health']['samples'] if labels['vm'] == 'vm1')
    assert states['ok'] == '1' and set(states.values()) == {'0', '1'} and list(states.values()).count('1') == 1
    assert {'ok', 'stale', 'polling_disabled', 'never_updated', 'vm_not_running', 'driver_not_loaded', 'stats_not_negotiated',
            'no_balloon_device'} <= set(states)
    assert value(families, 'qmp_balloon_up', vm='down') == '0'
    # nothing else is said of a VM that could not be read
    assert [name for name, family in families.items() for labels, _v in family['samples'] if labels.get('vm') == 'down'] \
        == ['qmp_balloon_up']


def test_a_health_value_of_a_newer_module_is_a_state_too():
    families = parse(balloon_openmetrics([info_vm(health='something_new')]))
    assert value(families, 'qmp_balloon_health', state='something_new') == '1'
    assert value(families, 'qmp_balloon_health', state='ok') == '0'


@pytest.mark.parametrize('name, rendered', [
    ('a"b', 'a\\"b'),
    ('back\\slash', 'back\\\\slash'),
    ('two\nlines', 'two\\nlines'),
    ('ünïcode vm', 'ünïcode vm'),
])
def test_label_values_are_escaped(name, rendered):
    text = balloon_openmetrics([info_vm(name)], hypervisor='h"v')
    assert 'qmp_balloon_up{hypervisor="h\\"v",vm="%s"} 1\n' % rendered in text
    assert value(parse(text), 'qmp_balloon_up') == '1'


def test_no_timestamps_and_plain_numbers():
    text = balloon_openmetrics([info_vm(used_percent=12.5)], collected_at='2026-11-30T14:00:00Z')
    for line in text.splitlines():
        if not line.startswith('#'):
            after_name = line.rsplit('}', 1)[-1] if '{' in line else line.split(' ', 1)[1]
            assert len(after_name.split()) == 1, line  # the value, no timestamp after it
    assert 'qmp_balloon_collected_timestamp_seconds 1796047200\n' in text  # ISO UTC -> epoch; no hypervisor: no label


def test_the_role_record_shape_before_issue_14():
    """compliant: bool, rules: {name: true|false|null}, reachable instead of failed; no pressure."""
    record = info_vm()
    del record['failed']
    record.update(hypervisor='hv2', reachable=True, available_percent=69.3,
                  compliance={'compliant': False, 'rules': {'reachable': True, 'data_fresh': False, 'min_total_memory': None},
                              'violations': [{'rule': 'data_fresh'}]})
    down = {'name': 'down', 'hypervisor': 'hv2', 'reachable': False, 'error': 'x', 'stats': {},
            'compliance': {'compliant': False, 'rules': {'reachable': False, 'data_fresh': None}}}
    fact = {'hypervisor': 'hv2', 'collected_at': '2026-11-30T14:00:00Z', 'vms': [record, down]}
    families = parse(balloon_openmetrics(fact))
    assert value(families, 'qmp_balloon_rule_result', vm='vm1', rule='reachable', hypervisor='hv2') == '1'
    assert value(families, 'qmp_balloon_rule_result', vm='vm1', rule='data_fresh') == '0'
    assert value(families, 'qmp_balloon_rule_result', vm='down', rule='reachable') == '0'
    rules = [(labels['vm'], labels['rule']) for labels, _v in families['qmp_balloon_rule_result']['samples']]
    assert ('vm1', 'min_total_memory') not in rules and ('down', 'data_fresh') not in rules  # unknown: absent
    assert value(families, 'qmp_balloon_compliance', vm='vm1', state='non_compliant') == '1'
    assert value(families, 'qmp_balloon_compliance', vm='vm1', state='compliant') == '0'
    assert value(families, 'qmp_balloon_up', vm='down') == '0'
    assert value(families, 'qmp_balloon_up', vm='vm1') == '1'
    assert value(families, 'qmp_balloon_collected_timestamp_seconds', hypervisor='hv2') == '1796047200'
    assert 'qmp_balloon_pressure' not in families and 'qmp_balloon_memory_headroom_ratio' not in families


def test_the_role_record_shape_of_issue_14():
    """compliance.state and rules pass/fail/unknown; pressure with verdict and headroom."""
    record = info_vm(uuid='4216a76a-24d1-42b2-a57e-f8fd0a04df7e', actual=256 * MIB, rss=230215680)
    del record['failed']
    record.update(hypervisor='hv3', reachable=True,
                  compliance={'state': 'unknown', 'rules': {'enough': 'pass', 'fresh': 'fail', 'pressure': 'unknown'}},
                  pressure={'verdict': 'high', 'reasons': ['headroom 3 %'], 'headroom_percent': 3.2})
    unknown = info_vm('vm2', pressure={'verdict': 'unknown', 'reasons': [], 'headroom_percent': None})
    families = parse(balloon_openmetrics({'hypervisor': 'hv3', 'collected_at': 1796047200, 'vms': [record, unknown]}))
    labels = {'vm': 'vm1', 'uuid': '4216a76a-24d1-42b2-a57e-f8fd0a04df7e', 'hypervisor': 'hv3'}
    assert value(families, 'qmp_balloon_rule_result', rule='enough', **labels) == '1'
    assert value(families, 'qmp_balloon_rule_result', rule='fresh', **labels) == '0'
    assert len(families['qmp_balloon_rule_result']['samples']) == 2
    assert value(families, 'qmp_balloon_compliance', state='unknown', **labels) == '1'
    assert value(families, 'qmp_balloon_pressure', state='high', **labels) == '1'
    assert value(families, 'qmp_balloon_pressure', state='none', **labels) == '0'
    assert value(families, 'qmp_balloon_memory_headroom_ratio', **labels) == '0.032'
    assert value(families, 'qmp_balloon_actual_bytes', **labels) == str(256 * MIB)
    assert value(families, 'qmp_balloon_qemu_rss_bytes', **labels) == '230215680'
    assert value(families, 'qmp_balloon_pressure', vm='vm2', state='unknown') == '1'
    assert len(families['qmp_balloon_memory_headroom_ratio']['samples']) == 1  # vm2: headroom unknown, no sample


def test_a_fleet_in_one_file():
    facts = [{'hypervisor': 'hv%d' % index, 'collected_at': 1796047200 + index, 'vms': [info_vm('vm1')]} for index in (1, 2)]
    families = parse(balloon_openmetrics(facts))
    assert value(families, 'qmp_balloon_up', hypervisor='hv1', vm='vm1') == '1'
    assert value(families, 'qmp_balloon_up', hypervisor='hv2', vm='vm1') == '1'
    assert value(families, 'qmp_balloon_collected_timestamp_seconds', hypervisor='hv2') == '1796047202'


def test_the_export_period_is_published_beside_the_collection_time():
    families = parse(balloon_openmetrics({'hypervisor': 'hv1', 'collected_at': 5, 'vms': []}, period=300))
    assert value(families, 'qmp_balloon_export_period_seconds', hypervisor='hv1') == '300'
    assert value(families, 'qmp_balloon_collected_timestamp_seconds', hypervisor='hv1') == '5'
    assert 'qmp_balloon_export_period_seconds' not in parse(balloon_openmetrics({'vms': [info_vm()]}))


def test_empty_input_says_when_and_how_many():
    assert balloon_openmetrics({'vms': []}, collected_at=5) == ('# HELP qmp_balloon_collected_timestamp_seconds When these figures '
                                                                'were collected, Unix time in seconds.\n'
                                                                '# TYPE qmp_balloon_collected_timestamp_seconds gauge\n'
                                                                'qmp_balloon_collected_timestamp_seconds 5\n'
                                                                '# HELP qmp_balloon_hypervisor_vms How many VMs were found on '
                                                                'the hypervisor (read or not).\n'
                                                                '# TYPE qmp_balloon_hypervisor_vms gauge\n'
                                                                'qmp_balloon_hypervisor_vms 0\n')


def test_a_failed_hypervisor_does_not_look_like_a_quiet_one():
    """The role's fact of a hypervisor whose glob directory is missing: no VM, status failed (issue 14)."""
    families = parse(balloon_openmetrics({'hypervisor': 'hv3', 'collected_at': 5, 'vms': [], 'status': 'failed',
                                          'reason': 'sockets[0]: /run/typo/*.qmp matches nothing'}))
    assert value(families, 'qmp_balloon_hypervisor_status', hypervisor='hv3', state='failed') == '1'
    assert value(families, 'qmp_balloon_hypervisor_status', hypervisor='hv3', state='ok') == '0'
    assert value(families, 'qmp_balloon_hypervisor_vms', hypervisor='hv3') == '0'
    ok = parse(balloon_openmetrics({'hypervisor': 'hv1', 'collected_at': 5, 'vms': [info_vm()], 'status': 'ok'}))
    assert value(ok, 'qmp_balloon_hypervisor_status', hypervisor='hv1', state='ok') == '1'
    assert value(ok, 'qmp_balloon_hypervisor_vms', hypervisor='hv1') == '1'


@pytest.mark.parametrize('data, kwargs, message', [
    ('text', {}, 'got str'),
    ({'changed': False}, {}, 'has no vms list'),
    ([{'name': 'a', 'failed': False}, {'name': 'a', 'failed': True}], {}, 'two VMs give the same series qmp_balloon_up'),
    (['vm1'], {}, 'each VM must be a dict'),
    ([{'failed': False}], {}, 'a VM has no name'),
    ({'vms': []}, {'collected_at': 'yesterday'}, 'collected_at must be Unix seconds or an ISO 8601 UTC time'),
    ({'vms': []}, {'hypervisor': 3}, 'hypervisor must be a string'),
    ({'vms': []}, {'period': 0}, 'period must be a number of seconds above 0'),
    ({'vms': []}, {'period': 'hourly'}, 'period must be a number of seconds above 0'),
])
def test_bad_input_is_one_sentence(data, kwargs, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        balloon_openmetrics(data, **kwargs)


@pytest.mark.skipif(shutil.which('promtool') is None, reason='no promtool (Debian package prometheus)')
def test_promtool_check_metrics_accepts_it(tmp_path):
    record = info_vm('a "quoted" vm', uuid='u-1', actual=1, compliance={'state': 'compliant', 'rules': {'r': 'pass'}},
                     pressure={'verdict': 'none', 'headroom_percent': 50.0})
    text = balloon_openmetrics([record, info_vm('vm2', stats={'oom_kills': 0, 'x_new': 1}), {'name': 'd', 'failed': True}],
                               hypervisor='hv1')
    proc = subprocess.run(['promtool', 'check', 'metrics'], input=text, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
