# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The report action balloon_stats_report: its options, the files it writes (atomically), the latest
links, rotation, "changed", check mode, strategy free, the data for set_stats and the gate."""

from __future__ import annotations

import json
import os
import re
import stat
from unittest import mock

import jinja2
import jinja2.nativetypes
import pytest
import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.template import Templar

from ansible_collections.qmp.balloon.plugins.action import balloon_stats_report as report_action
from ansible_collections.qmp.balloon.plugins.modules import balloon_stats_report as stub
from ansible_collections.qmp.balloon.plugins.plugin_utils import _report, _report_files
from ansible_collections.qmp.balloon.tests.unit.plugins.action.gather_helpers import COLLECTED_AT, GIB, gathered_fact, info_vm, unread_vm

FORMATS = ('json', 'csv', 'html', 'md')


def fact(hypervisor, vms, collected_at=COLLECTED_AT):
    """The fact balloon_stats_facts makes of these VMs."""
    return gathered_fact({'vms': vms}, hypervisor, collected_at=collected_at, sockets=['/run/*.qmp'])


def host(hypervisor, vms, collected_at=COLLECTED_AT):
    """A hypervisor in hostvars with the fact read in this run (the fact's run is this process's)."""
    return {'ansible_facts': {'balloon_stats': fact(hypervisor, vms, collected_at)}}


def fleet(low_memory=False, collected_at=COLLECTED_AT):
    """hv1 with a compliant VM and one that is not; hv2 unreachable (no fact, not among the play's hosts)."""
    tight = {'total_memory': 4 * GIB, 'free_memory': 0, 'available_memory': (GIB // 20) if low_memory else 2 * GIB}
    return {'hv1': host('hv1', [info_vm('web1'), info_vm('db1', polling_interval=0, health='polling_disabled', stats=tight)],
                        collected_at),
            'hv2': {}}


def task_vars(hostvars, **extra):
    values = {'hostvars': hostvars, 'ansible_play_hosts_all': sorted(hostvars), 'ansible_play_hosts': ['hv1'],
              'ansible_play_name': 'audit', 'ansible_run_tags': ['all'], 'ansible_skip_tags': [],
              'ansible_inventory_sources': ['/srv/inventory.yml'], 'playbook_dir': '/srv/playbooks',
              'ansible_version': {'full': '2.21.5'}, 'ansible_check_mode': False}
    values.update(extra)
    return values


class Clock(object):
    """balloon_report's generated_at, one second later at each report."""

    def __init__(self):
        self.second = 0

    def __call__(self):
        self.second += 1
        return '2026-12-07T10:00:%02dZ' % self.second


@pytest.fixture
def clock(monkeypatch):
    now = Clock()
    monkeypatch.setattr(_report, '_now_iso', now)
    return now


def stamp(second):
    return '20261207T1000%02dZ' % second


def action(args, check_mode=False):
    task = Task()
    task.args = args
    task.check_mode = check_mode
    loader = DataLoader()
    plugin = report_action.ActionModule(task, mock.MagicMock(), PlayContext(), loader, Templar(loader=loader), None)

    def nothing_on_a_host(*args, **kwargs):
        raise AssertionError('the report action ran something on a host')
    plugin._execute_module = nothing_on_a_host
    plugin._low_level_execute_command = nothing_on_a_host
    return plugin


def run(args, hostvars, check_mode=False, **extra):
    return action(args, check_mode).run(task_vars=task_vars(hostvars, **extra))


def listing(directory):
    return sorted(os.listdir(directory))


# ---- the options ----------------------------------------------------------------------------

def test_the_documented_options_are_the_spec():
    documented = yaml.safe_load(stub.DOCUMENTATION)['options']
    assert set(documented) == set(report_action.ARGUMENT_SPEC)
    for name, spec in report_action.ARGUMENT_SPEC.items():
        doc = documented[name]
        assert doc['type'] == spec['type'], name
        assert doc.get('elements') == spec.get('elements'), name
        assert doc.get('required', False) == spec.get('required', False), name
        assert doc.get('default') == spec.get('default'), name


def test_the_role_passes_its_variables_and_fails_on_the_gate():
    path = os.path.join(os.path.dirname(stub.__file__), '..', '..', 'roles', 'balloon_stats', 'tasks', 'report.yml')
    with open(path, encoding='utf-8') as handle:
        tasks = yaml.safe_load(handle)
    [report_task] = [task for task in tasks if 'qmp.balloon.balloon_stats_report' in task]
    assert set(report_task['qmp.balloon.balloon_stats_report']) <= set(report_action.ARGUMENT_SPEC)
    register = report_task['register']
    [gate_task] = [task for task in tasks if 'ansible.builtin.fail' in task]
    assert gate_task['ansible.builtin.fail']['msg'] == '{{ %s.gate.msg }}' % register
    # a hypervisor that waited under strategy free has a skipped result, without a gate
    assert gate_task['when'] == '%s.gate.failed | default(false)' % register


@pytest.mark.parametrize('args, message', [
    ({}, 'missing required arguments: dir'),
    ({'dir': 'out', 'keep': -1}, 'keep must be 0 (keep all) or more, got -1'),
    ({'dir': 'out', 'keep': 'many'}, "argument 'keep' is of type"),
    ({'dir': 'out', 'name': 'a/b'}, "name must be a file name (no /), got 'a/b'"),
    ({'dir': 'out', 'name': ''}, "name must be a file name (no /), got ''"),
    ({'dir': 'out', 'hosts': ['hv1', 'nowhere']}, 'hosts: nowhere is not in the inventory'),
    ({'dir': 'out', 'fail_on_violation': 'maybe'}, "argument 'fail_on_violation' is of type"),
    ({'dir': 'out', 'no_such_option': 1}, 'unsupported parameters: no_such_option'),
])
def test_bad_input_fails_in_one_sentence_and_writes_nothing(tmp_path, clock, args, message):
    result = run(args, fleet(), playbook_dir=str(tmp_path))
    assert result['failed'] is True
    assert result['msg'].startswith('Invalid input, nothing was written: ') and message in result['msg'], result['msg']
    assert '\n' not in result['msg']
    assert listing(str(tmp_path)) == []


# ---- the files --------------------------------------------------------------------------------

def test_the_first_report_writes_four_files_and_the_links(tmp_path, clock):
    directory = tmp_path / 'reports' / 'fleet'
    result = run({'dir': str(directory)}, fleet())
    base = str(directory / 'balloon-stats')
    assert result['files'] == ['%s-%s.%s' % (base, stamp(1), kind) for kind in FORMATS]
    assert result['links'] == ['%s.%s' % (base, kind) for kind in FORMATS]
    assert result['removed'] == [] and 'failed' not in result and 'warnings' not in result
    assert result['changed'] is True   # a first report: everything is new
    assert result['report'] == base + '.html'
    assert result['msg'] == result['headline'] + ' Report: ' + base + '.html'
    assert result['headline'].startswith('2 VMs on 2 hypervisors (1 unreachable: hv2 (')
    assert listing(str(directory)) == sorted(['balloon-stats.%s' % kind for kind in FORMATS]
                                             + ['balloon-stats-%s.%s' % (stamp(1), kind) for kind in FORMATS])
    # the directories made, 0755 and the files 0644 whatever the umask; relative links
    for made in (tmp_path / 'reports', directory):
        assert stat.S_IMODE(os.stat(str(made)).st_mode) == 0o755
    for kind in FORMATS:
        assert stat.S_IMODE(os.stat(base + '-%s.%s' % (stamp(1), kind)).st_mode) == 0o644
        assert os.readlink(base + '.' + kind) == 'balloon-stats-%s.%s' % (stamp(1), kind)
    report = json.loads((directory / 'balloon-stats.json').read_text(encoding='utf-8'))
    assert report['generated_at'] == '2026-12-07T10:00:01Z' and report['summary'] == result['summary']
    assert report['since_last_run'] == result['since_last_run']
    # to_nice_json(indent=2) and a newline
    assert (directory / 'balloon-stats.json').read_text(encoding='utf-8') == json.dumps(
        report, indent=2, sort_keys=True, separators=(',', ': ')) + '\n'
    assert (directory / 'balloon-stats.csv').read_text(encoding='utf-8') == _report_files.balloon_report_csv(report)
    html = (directory / 'balloon-stats.html').read_text(encoding='utf-8')
    assert html.lstrip().lower().startswith('<!doctype html>') and 'web1' in html and result['headline'] in html
    markdown = (directory / 'balloon-stats.md').read_text(encoding='utf-8')
    assert markdown.startswith('# Balloon memory statistics compliance — 2026-12-07T10:00:01Z\n')


def test_the_provenance_comes_from_the_play(tmp_path, clock):
    run({'dir': str(tmp_path)}, fleet(), check_mode=True, ansible_limit='hv1')
    [path] = [path for path in tmp_path.iterdir() if path.name.endswith('.json')]
    provenance = json.loads(path.read_text(encoding='utf-8'))['provenance']
    keys = ('check_mode', 'play', 'hosts', 'limit', 'tags', 'skip_tags', 'inventory', 'playbook_dir', 'ansible_version')
    assert dict((key, provenance[key]) for key in keys) == {
        'check_mode': True, 'play': 'audit', 'hosts': ['hv1', 'hv2'], 'limit': 'hv1', 'tags': ['all'], 'skip_tags': [],
        'inventory': ['/srv/inventory.yml'], 'playbook_dir': '/srv/playbooks', 'ansible_version': '2.21.5'}
    assert provenance['collection'] == 'qmp.balloon'


def test_a_relative_dir_is_beside_the_playbook(tmp_path, clock):
    result = run({'dir': 'balloon-stats-report', 'name': 'pve'}, fleet(), playbook_dir=str(tmp_path))
    assert result['report'] == str(tmp_path / 'balloon-stats-report' / 'pve.html')
    assert len(listing(str(tmp_path / 'balloon-stats-report'))) == 8


def test_html_and_markdown_escape_what_the_vms_are_called(tmp_path, clock):
    # non-compliant (polling off), so the Markdown lists them too
    hostvars = {'hv1': host('hv1', [info_vm('<script>alert(1)</script>', polling_interval=0),
                                    info_vm('{{ 7 * 6 }}|x', polling_interval=0)])}
    run({'dir': str(tmp_path)}, hostvars, ansible_play_hosts=['hv1'])
    html = (tmp_path / 'balloon-stats.html').read_text(encoding='utf-8')
    markdown = (tmp_path / 'balloon-stats.md').read_text(encoding='utf-8')
    assert '<script>alert(1)</script>' not in html and '&lt;script&gt;alert(1)&lt;/script&gt;' in html
    assert '{{ 7 * 6 }}' in html   # a name is data, never a template
    assert '{{ 7 * 6 }}\\|x' in markdown and '&lt;script&gt;' in markdown and '<script>' not in markdown


# ---- the VMs that could not be read -------------------------------------------------------------

def unread_fleet(count):
    """hv1 with one VM read and ``count`` VMs that could not be read (vm0, vm1, ...), hv2 with one of each."""
    busy = [unread_vm('vm%d' % index, 'vm%d (unix:/run/vm%d.qmp): monitor busy' % (index, index)) for index in range(count)]
    return {'hv1': host('hv1', [info_vm('web1')] + busy),
            'hv2': host('hv2', [info_vm('db1'), unread_vm('down', 'down (unix:/run/down.qmp): no QEMU listens')])}


@pytest.mark.parametrize('count, said', [
    (0, '1 VM could not be read: hv2/down'),
    (1, '2 VMs could not be read: hv1/vm0, hv2/down'),
    (6, '7 VMs could not be read: hv1/vm0, hv1/vm1, hv1/vm2, hv1/vm3, hv1/vm4, ...'),
])
def test_the_headline_counts_the_vms_that_could_not_be_read(tmp_path, clock, count, said):
    result = run({'dir': str(tmp_path)}, unread_fleet(count), ansible_play_hosts=['hv1', 'hv2'])
    assert result['summary']['vms_unreachable'] == count + 1
    assert result['headline'].startswith('%d VMs on 2 hypervisors (%s): ' % (count + 3, said)), result['headline']
    report = json.loads((tmp_path / 'balloon-stats.json').read_text(encoding='utf-8'))
    assert report['headline'] == result['headline'] and report['summary']['vms_unreachable'] == count + 1


def test_the_headline_says_nothing_of_unread_vms_when_every_vm_was_read(tmp_path, clock):
    result = run({'dir': str(tmp_path)}, fleet())
    assert result['summary']['vms_unreachable'] == 0
    assert 'could not be read' not in result['headline']
    # beside the other problems, after them
    both = dict(fleet(), hv3=host('hv3', [unread_vm('down', 'down (unix:/run/down.qmp): no QEMU listens')]))
    result = run({'dir': str(tmp_path / 'both')}, both, ansible_play_hosts=['hv1', 'hv3'])
    assert result['headline'].startswith('3 VMs on 3 hypervisors (1 unreachable: hv2 (%s); 1 VM could not be read: hv3/down): '
                                         % _report.UNREACHABLE_REASON), result['headline']


def markdown_findings(markdown):
    """The Findings table of the Markdown report: its header, then a list of cells per row."""
    lines = markdown.split('## Findings\n\n', 1)[1].split('\n\n', 1)[0].splitlines()
    rows = [[cell.strip() for cell in re.split(r'(?<!\\)[|]', line.strip()[1:-1])] for line in lines]
    return rows[0], rows[2:]


def test_the_markdown_says_why_a_vm_could_not_be_read(tmp_path, clock):
    hostvars = {'hv1': host('hv1', [info_vm('web1'), info_vm('db1', polling_interval=0),
                                    unread_vm('vm1', 'vm1 (unix:/run/*|vm1.qmp): <refused>')])}
    run({'dir': str(tmp_path)}, hostvars, ansible_play_hosts=['hv1'])
    markdown = (tmp_path / 'balloon-stats.md').read_text(encoding='utf-8')
    header, rows = markdown_findings(markdown)
    assert header == ['Hypervisor', 'VM', 'State', 'Violations', 'Unknown', 'Pressure', 'Why not read']
    # the reason as the JSON and the HTML have it, escaped for a table cell and outside a code span
    assert rows == [['hv1', 'db1', 'non_compliant', 'polling_interval', '', 'none', ''],
                    ['hv1', 'vm1', 'non_compliant', 'reachable', 'polling_interval, driver_reporting, data_fresh, '
                     'min_available_memory, memory_pressure', 'unknown', 'vm1 (unix:/run/\\*\\|vm1.qmp): &lt;refused&gt;']]
    [unread] = [vm for vm in json.loads((tmp_path / 'balloon-stats.json').read_text(encoding='utf-8'))['vms'] if vm['name'] == 'vm1']
    assert unread['error'] == 'vm1 (unix:/run/*|vm1.qmp): <refused>'
    assert 'vm1 (unix:/run/*|vm1.qmp): &lt;refused&gt;' in (tmp_path / 'balloon-stats.html').read_text(encoding='utf-8')


def test_the_markdown_lists_a_vm_that_could_not_be_read_whatever_its_state(tmp_path, clock):
    """Without rules an unread VM is compliant: the Findings table still says it was not read, and why."""
    fact_ = gathered_fact({'vms': [info_vm('web1'), unread_vm('vm1', 'vm1 (unix:/run/vm1.qmp): monitor busy')]}, 'hv1',
                          sockets=['/run/*.qmp'], builtin_rules=[])
    run({'dir': str(tmp_path)}, {'hv1': {'ansible_facts': {'balloon_stats': fact_}}}, ansible_play_hosts=['hv1'])
    header, rows = markdown_findings((tmp_path / 'balloon-stats.md').read_text(encoding='utf-8'))
    assert rows == [['hv1', 'vm1', 'compliant', '', '', 'unknown', 'vm1 (unix:/run/vm1.qmp): monitor busy']]
    # every VM read and compliant: the row that says so fills every column
    run({'dir': str(tmp_path / 'all')}, {'hv1': host('hv1', [info_vm('web1')])}, ansible_play_hosts=['hv1'])
    header, rows = markdown_findings((tmp_path / 'all' / 'balloon-stats.md').read_text(encoding='utf-8'))
    assert rows == [['', '', 'every VM compliant', '', '', '', '']] and len(header) == 7


def test_unchanged_findings_are_not_changed_and_a_change_is(tmp_path, clock):
    first = run({'dir': str(tmp_path)}, fleet(collected_at='2026-12-07T10:00:00Z'))
    again = run({'dir': str(tmp_path)}, fleet(collected_at='2026-12-07T10:05:00Z'))
    worse = run({'dir': str(tmp_path)}, fleet(low_memory=True, collected_at='2026-12-07T10:10:00Z'))
    assert (first['changed'], again['changed'], worse['changed']) == (True, False, True)
    assert again['files'] and again['since_last_run']['previous'] == '2026-12-07T10:00:01Z'
    assert {'vm': 'hv1/db1', 'rule': 'min_available_memory'} in worse['since_last_run']['new_violations']
    assert os.readlink(str(tmp_path / 'balloon-stats.json')) == 'balloon-stats-%s.json' % stamp(3)


def test_strategy_free_the_same_gathers_are_written_once(tmp_path, clock):
    hostvars = fleet()
    first = run({'dir': str(tmp_path)}, hostvars)
    before = dict((name, (tmp_path / name).stat().st_mtime_ns) for name in listing(str(tmp_path)))
    second = run({'dir': str(tmp_path)}, hostvars)
    assert first['files'] and first['changed'] is True
    assert (second['files'], second['links'], second['removed'], second['changed']) == ([], [], [], False)
    assert second['headline'] == first['headline'] and second['report'] == first['report']
    assert dict((name, (tmp_path / name).stat().st_mtime_ns) for name in listing(str(tmp_path))) == before


def test_strategy_free_also_after_a_limited_run(tmp_path, clock):
    """--limit does not move the links: the newest run is found by its stamp."""
    hostvars = fleet()
    run({'dir': str(tmp_path)}, fleet(collected_at='2026-12-07T09:00:00Z'))
    limited = run({'dir': str(tmp_path)}, hostvars, ansible_limit='hv1')
    again = run({'dir': str(tmp_path)}, hostvars, ansible_limit='hv1')
    assert limited['files'] and again['files'] == []


def test_a_report_from_the_fact_cache_only_is_always_written(tmp_path, clock):
    """No gather in this play (gathered is None): nothing tells two such reports apart, each is written."""
    cached = fact('hv1', [info_vm('web1')])
    cached['run'] = cached['outcome']['run'] = 'an earlier run'
    cached = {'hv1': {'ansible_facts': {'balloon_stats': cached}}}
    assert run({'dir': str(tmp_path)}, cached, ansible_play_hosts=['hv1'])['files']
    assert run({'dir': str(tmp_path)}, cached, ansible_play_hosts=['hv1'])['files']


def test_a_limited_run_writes_its_files_but_leaves_the_links(tmp_path, clock):
    run({'dir': str(tmp_path)}, fleet(collected_at='2026-12-07T09:00:00Z'))
    limited = run({'dir': str(tmp_path)}, fleet(), ansible_limit='hv1')
    assert len(limited['files']) == 4 and limited['links'] == []
    for kind in FORMATS:
        assert os.readlink(str(tmp_path / ('balloon-stats.' + kind))) == 'balloon-stats-%s.%s' % (stamp(1), kind)


def test_rotation_keeps_the_changed_runs_and_the_newest(tmp_path, clock):
    # runs 1 (changed: first), 2 (unchanged), 3 (changed), 4 (unchanged): keep 1 leaves 3 and 4
    results = [run({'dir': str(tmp_path), 'keep': 1}, fleet(low_memory=low, collected_at='2026-12-07T09:%02d:00Z' % index))
               for index, low in enumerate((False, False, True, True))]
    assert [result['changed'] for result in results] == [True, False, True, False]
    stamps = sorted(set(name.split('-', 2)[2].split('.')[0] for name in listing(str(tmp_path)) if name.count('-') == 2))
    assert stamps == [stamp(3), stamp(4)]
    removed = [path for result in results for path in result['removed']]
    assert sorted(os.path.basename(path) for path in removed) == sorted(
        'balloon-stats-%s.%s' % (stamp(second), kind) for second in (1, 2) for kind in FORMATS)
    assert not any(result['changed'] is None for result in results)


def test_rotation_leaves_other_reports_and_keep_0_keeps_all(tmp_path, clock):
    other = tmp_path / 'balloon-stats-extra-20200101T000000Z.json'
    other.write_text('{}', encoding='utf-8')
    for index in range(3):
        run({'dir': str(tmp_path), 'keep': 0}, fleet(low_memory=index % 2 == 1, collected_at='2026-12-07T09:%02d:00Z' % index))
    assert len([name for name in listing(str(tmp_path)) if name.endswith('Z.json')]) == 4
    run({'dir': str(tmp_path), 'keep': 1}, fleet(collected_at='2026-12-07T09:59:00Z'))
    assert other.exists()


def test_check_mode_writes_the_report_and_removes_nothing(tmp_path, clock):
    for index in range(3):
        result = run({'dir': str(tmp_path), 'keep': 1}, fleet(low_memory=index == 1, collected_at='2026-12-07T09:%02d:00Z' % index),
                     check_mode=True)
        assert result['files'] and result['removed'] == []
    assert len([name for name in listing(str(tmp_path)) if name.endswith('Z.json')]) == 3
    assert json.loads((tmp_path / 'balloon-stats.json').read_text(encoding='utf-8'))['provenance']['check_mode'] is True


def test_an_unreadable_previous_report_is_a_warning(tmp_path, clock):
    (tmp_path / 'balloon-stats.json').write_text('{not json', encoding='utf-8')
    result = run({'dir': str(tmp_path)}, fleet())
    assert result['files'] and result['since_last_run']['previous'] is None
    assert result['warnings'][0].startswith('The previous report is not read, "since last run" starts again: ')
    assert os.readlink(str(tmp_path / 'balloon-stats.json')) == 'balloon-stats-%s.json' % stamp(1)


def test_a_directory_that_cannot_be_written_fails_in_one_sentence(tmp_path, clock):
    (tmp_path / 'file').write_text('', encoding='utf-8')
    result = run({'dir': str(tmp_path / 'file' / 'reports')}, fleet())
    assert result['failed'] is True
    assert result['msg'].startswith('qmp.balloon.balloon_stats_report could not write the report in %s: ' % (tmp_path / 'file' / 'reports'))


def test_each_file_is_written_through_a_rename(tmp_path, monkeypatch, clock):
    renames = []
    real_replace = os.replace

    def replace(source, destination):
        renames.append((os.path.dirname(source), os.path.basename(source), destination))
        return real_replace(source, destination)
    monkeypatch.setattr(_report_files.os, 'replace', replace)
    result = run({'dir': str(tmp_path)}, fleet())
    assert [destination for unused, unused_name, destination in renames] == result['files'] + result['links']
    # each from a hidden temporary file in the same directory
    assert all(directory == str(tmp_path) and name.startswith('.') for directory, name, unused in renames)
    assert [name for name in listing(str(tmp_path)) if name.startswith('.')] == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / 'balloon-stats-x.json'
    path.write_text('old', encoding='utf-8')

    def broken(source, destination):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(_report_files.os, 'replace', broken)
    with pytest.raises(OSError):
        _report_files.write_atomically(str(path), 'new')
    assert path.read_text(encoding='utf-8') == 'old' and listing(str(tmp_path)) == ['balloon-stats-x.json']


@pytest.mark.parametrize('failure', [OSError(28, 'No space left on device'), KeyboardInterrupt()])
def test_a_failed_link_leaves_the_old_link_and_no_temporary(tmp_path, monkeypatch, failure):
    _report_files.link_atomically('r-1.json', str(tmp_path / 'r.json'))

    def broken(source, destination):
        raise failure
    monkeypatch.setattr(_report_files.os, 'replace', broken)
    with pytest.raises(type(failure)):
        _report_files.link_atomically('r-2.json', str(tmp_path / 'r.json'))
    assert os.readlink(str(tmp_path / 'r.json')) == 'r-1.json' and listing(str(tmp_path)) == ['r.json']


def test_a_link_replaces_a_file(tmp_path):
    (tmp_path / 'r.json').write_text('a plain file', encoding='utf-8')
    _report_files.link_atomically('r-1.json', str(tmp_path / 'r.json'))
    assert os.readlink(str(tmp_path / 'r.json')) == 'r-1.json' and listing(str(tmp_path)) == ['r.json']


# ---- set_stats and the gate ---------------------------------------------------------------------

def test_the_report_goes_to_the_custom_stats(tmp_path, clock):
    result = run({'dir': str(tmp_path)}, fleet())
    stats = result['ansible_stats']
    assert (stats['per_host'], stats['aggregate']) == (False, False)
    data = stats['data']['balloon_stats_report']
    assert sorted(data) == ['generated_at', 'headline', 'hypervisors', 'provenance', 'report', 'since_last_run', 'summary',
                            'unknown', 'violations']
    assert data['report'] == str(tmp_path / 'balloon-stats.html') and data['headline'] == result['headline']
    assert [violation['rule'] for violation in data['violations']] == ['polling_interval', 'data_fresh']


@pytest.mark.parametrize('fail_on_violation, fail_on_unknown, failed', [
    (False, False, False), (True, False, True), (False, True, False)])
def test_the_action_never_fails_on_the_gate(tmp_path, clock, fail_on_violation, fail_on_unknown, failed):
    result = run({'dir': str(tmp_path), 'fail_on_violation': fail_on_violation, 'fail_on_unknown': fail_on_unknown}, fleet())
    assert 'failed' not in result and result['gate']['failed'] is failed
    assert result['gate']['msg'].startswith('2 compliance violations: hv1/db1: polling_interval (critical); ') is failed


# The gate as the role's last task wrote it before this action (roles/balloon_stats/tasks/report.yml):
# the oracle the Python gate must match, word for word.
ROLE_GATE = yaml.safe_load(r'''
msg: >-
  {% if __balloon_stats_gate_violations | bool %}{{ __balloon_stats_fleet.violations | length }} compliance violations:
  {% for violation in __balloon_stats_fleet.violations %}{{ violation.hypervisor }}/{{ violation.vm }}: {{ violation.rule }}
  ({{ violation.severity }}){{ '' if loop.last else '; ' }}{% endfor %}{% endif %}
  {%- for hv in __balloon_stats_gate_hypervisors %}{{ ('; ' if __balloon_stats_gate_violations | bool else '')
  ~ (__balloon_stats_gate_hypervisors | length) ~ ' hypervisor' ~ ('s' if __balloon_stats_gate_hypervisors | length > 1 else '')
  ~ ' not audited: ' if loop.first else '; ' }}hypervisor
  {{ hv.name }} {{ hv.status }}: {{ hv.reason }}{% endfor %}
  {%- for vm in __balloon_stats_gate_unknown %}{{ '; ' if __balloon_stats_gate_violations | bool or __balloon_stats_gate_hypervisors | length > 0
      or not loop.first else '' }}{{ vm.hypervisor }}/{{ vm.vm }}: unknown ({{ vm.rules | join(', ') }} could not be judged){% endfor %}
when: __balloon_stats_gate_violations | bool or __balloon_stats_gate_hypervisors | length > 0 or __balloon_stats_gate_unknown | length > 0
vars:
  __balloon_stats_gate_violations: "{{ balloon_stats_fail_on_violation | bool and __balloon_stats_fleet.violations | length > 0 }}"
  __balloon_stats_gate_hypervisors: >-
    {{ __balloon_stats_fleet.hypervisors | selectattr('status', 'in', ['unreachable', 'failed']) | list
       if balloon_stats_fail_on_violation | bool else [] }}
  __balloon_stats_gate_unknown: "{{ __balloon_stats_fleet.unknown if balloon_stats_fail_on_unknown | bool else [] }}"
''')


def role_gate(report, fail_on_violation, fail_on_unknown):
    """The role's old gate task, rendered with Jinja as Ansible did: (failed, msg)."""
    native = jinja2.nativetypes.NativeEnvironment(trim_blocks=True)
    text = jinja2.Environment(trim_blocks=True)
    for environment in (native, text):
        environment.filters['bool'] = bool
    names = {'__balloon_stats_fleet': report, 'balloon_stats_fail_on_violation': fail_on_violation,
             'balloon_stats_fail_on_unknown': fail_on_unknown}
    for name, expression in ROLE_GATE['vars'].items():
        names[name] = native.from_string(expression).render(names)
    failed = native.from_string('{{ %s }}' % ROLE_GATE['when']).render(names)
    return failed, text.from_string(ROLE_GATE['msg']).render(names) if failed else ''


VIOLATIONS = [{'hypervisor': 'hv1', 'vm': 'g128', 'rule': 'min_total_memory', 'severity': 'info'},
              {'hypervisor': 'hv1', 'vm': 'n1', 'rule': 'driver_reporting', 'severity': 'critical'},
              {'hypervisor': 'hv3', 'vm': 'n3', 'rule': 'data_fresh', 'severity': 'warning'}]
HYPERVISORS = [{'name': 'hv1', 'status': 'ok', 'reason': None},
               {'name': 'hv-down', 'status': 'unreachable', 'reason': 'Ansible could not connect to it, so none of its VMs was read'},
               {'name': 'hv-empty', 'status': 'no_vms', 'reason': 'no VM found'},
               {'name': 'hv-typo', 'status': 'failed', 'reason': 'sockets[0]: /nope/*.qmp matches nothing'}]
UNKNOWN = [{'hypervisor': 'hv1', 'vm': 'nb', 'rules': ['polling_interval', 'driver_reporting']},
           {'hypervisor': 'hv2', 'vm': 'x', 'rules': ['min_available_memory']}]


@pytest.mark.parametrize('violations', [[], VIOLATIONS[:1], VIOLATIONS])
@pytest.mark.parametrize('hypervisors', [HYPERVISORS[:1], HYPERVISORS[:2], HYPERVISORS])
@pytest.mark.parametrize('unknown', [[], UNKNOWN[:1], UNKNOWN])
@pytest.mark.parametrize('fail_on_violation, fail_on_unknown', [(False, False), (True, False), (False, True), (True, True)])
def test_the_gate_says_what_the_roles_gate_said(violations, hypervisors, unknown, fail_on_violation, fail_on_unknown):
    report = {'violations': violations, 'hypervisors': hypervisors, 'unknown': unknown}
    failed, msg = role_gate(report, fail_on_violation, fail_on_unknown)
    assert _report.gate(report, fail_on_violation, fail_on_unknown) == {'failed': failed, 'msg': msg}


@pytest.mark.parametrize('fail_on_violation, fail_on_unknown, msg', [
    (True, False, '3 compliance violations: hv1/g128: min_total_memory (info); hv1/n1: driver_reporting (critical); '
                  'hv3/n3: data_fresh (warning); 2 hypervisors not audited: hypervisor hv-down unreachable: Ansible could '
                  'not connect to it, so none of its VMs was read; hypervisor hv-typo failed: sockets[0]: /nope/*.qmp matches '
                  'nothing'),
    (False, True, 'hv1/nb: unknown (polling_interval, driver_reporting could not be judged); '
                  'hv2/x: unknown (min_available_memory could not be judged)'),
    (False, False, ''),
])
def test_the_gate_sentences(fail_on_violation, fail_on_unknown, msg):
    report = {'violations': VIOLATIONS, 'hypervisors': HYPERVISORS, 'unknown': UNKNOWN}
    assert _report.gate(report, fail_on_violation, fail_on_unknown) == {'failed': bool(msg), 'msg': msg}
