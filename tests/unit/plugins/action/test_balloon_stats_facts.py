# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The gather action balloon_stats_facts: its options, which VMs it reads (one module call, or none),
the fact it builds and the hypervisor's outcome (plugins/plugin_utils/_facts.py)."""

from __future__ import annotations

import os
from unittest import mock

import pytest
import yaml

from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task

from ansible_collections.qmp.balloon.plugins.action.balloon_stats_facts import INFO_MODULE, ActionModule
from ansible_collections.qmp.balloon.plugins.modules import balloon_stats_facts as stub
from ansible_collections.qmp.balloon.plugins.plugin_utils import _facts
from ansible_collections.qmp.balloon.tests.unit.plugins.action.gather_helpers import GIB, fact_params, gathered_fact, info_vm, unread_vm

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..')


def no_lookup(paths):
    raise AssertionError('looked for libvirt sockets: %r' % (paths,))


# ---- the options ----------------------------------------------------------------------------

def test_the_builtin_rules_are_the_roles_default():
    with open(os.path.join(ROOT, 'roles', 'balloon_stats', 'defaults', 'main.yml')) as handle:
        assert yaml.safe_load(handle)['balloon_stats_builtin_rules'] == _facts.BUILTIN_RULES


def test_the_documented_options_are_the_spec():
    documented = yaml.safe_load(stub.DOCUMENTATION)['options']
    # allow_empty is documented as refused (it is one of the common options)
    assert set(documented) == set(_facts.ARGUMENT_SPEC) | {'allow_empty'}
    for name, spec in _facts.ARGUMENT_SPEC.items():
        doc = documented[name]
        assert doc['type'] == spec['type'], name
        assert doc.get('choices') == spec.get('choices'), name
        assert doc.get('elements') == spec.get('elements'), name
        if 'options' in spec:
            documented_suboptions = dict((key, (value['type'], value.get('default'), value.get('required', False)))
                                         for key, value in doc['suboptions'].items())
            assert documented_suboptions == dict((key, (value['type'], value.get('default'), value.get('required', False)))
                                                 for key, value in spec['options'].items()), name
        elif spec.get('default') is not None:
            assert doc['default'] == spec['default'], name


def test_the_defaults():
    values = fact_params(sockets=['/run/vms/*.qmp'])
    assert _facts.option_problems(values) == []
    assert values['pressure'] == {'headroom_high': 5.0, 'headroom_moderate': 10.0, 'major_faults': 5.0, 'swap_bytes': 1048576.0}
    assert values['transport'] == 'auto' and values['expected_interval'] == 10


@pytest.mark.parametrize('given, problem', [
    ({'min_available_percent': 150}, 'min_available_percent must be a percentage from 0 to 100, got 150.0'),
    ({'pressure': {'headroom_high': 20}},
     'pressure.headroom_high (20.0) must not be above pressure.headroom_moderate (10.0): high pressure is the lower headroom'),
    ({'pressure': {'major_faults': 'nan'}}, 'pressure.major_faults must be 0 or more, got nan'),
    ({'pressure': {'swap_bytes': -1}}, 'pressure.swap_bytes must be 0 or more, got -1.0'),
    ({'expected_interval': -5}, 'expected_interval must be 0 or more seconds, got -5'),
])
def test_out_of_range_options_are_named(given, problem):
    assert problem in _facts.option_problems(fact_params(**given))


def test_a_bad_rule_is_refused_before_anything_is_read():
    with pytest.raises(Exception, match="rule 'broken': invalid JMESPath query"):
        _facts.plan(fact_params(sockets=['/run/*.qmp'], rules=[{'name': 'broken', 'query': 'stats.total_memory >='}]),
                    {'sockets': ['/run/*.qmp']}, no_lookup)


# ---- which VMs are read ---------------------------------------------------------------------

@pytest.mark.parametrize('given, found, transport, all_domains', [
    ({'sockets': ['/run/vms/*.qmp']}, None, 'qmp', False),
    ({'targets': [{'socket': '/run/a.qmp'}]}, None, 'qmp', False),
    ({'targets': [{'domain': 'db1'}]}, None, 'libvirt', False),
    ({'all_domains': True}, None, 'libvirt', True),
    ({}, ['/var/run/libvirt/libvirt-sock'], 'libvirt', True),
    ({}, [], 'qmp', False),
    ({'transport': 'libvirt'}, None, 'libvirt', True),
    ({'transport': 'qmp', 'sockets': ['/run/vms/*.qmp']}, None, 'qmp', False),
])
def test_transport_auto(given, found, transport, all_domains):
    looked = []

    def lookup(paths):
        looked.append(paths)
        assert found is not None, 'looked up although the selection decides'
        return found
    plan = _facts.plan(fact_params(**given), dict((k, v) for k, v in given.items()), lookup)
    assert (plan['transport'], plan['all_domains']) == (transport, all_domains)
    assert plan['transport_setting'] == given.get('transport', 'auto')
    assert bool(looked) == (found is not None)


def test_the_module_gets_only_what_was_given_and_a_glob_may_match_nothing():
    given = {'sockets': ['/run/vms/*.qmp'], 'timeout': 2.0, 'libvirt_uri': 'qemu:///system', 'transport': 'auto'}
    plan = _facts.plan(fact_params(**given), given, no_lookup)
    assert plan['module_args'] == {'sockets': ['/run/vms/*.qmp'], 'timeout': 2.0, 'transport': 'qmp', 'allow_empty': True,
                                   'fail_on_error': False}


def test_libvirt_reads_every_domain_with_the_uri():
    given = {'transport': 'libvirt', 'libvirt_uri': 'qemu+ssh://x/system'}
    plan = _facts.plan(fact_params(**given), given, no_lookup)
    assert plan['module_args'] == {'transport': 'libvirt', 'libvirt_uri': 'qemu+ssh://x/system', 'all_domains': True,
                                   'fail_on_error': False}


def test_no_vm_given_is_no_module_call():
    plan = _facts.plan(fact_params(transport='qmp'), {'transport': 'qmp'}, no_lookup)
    assert plan['module_args'] is None


# ---- the fact and its outcome ---------------------------------------------------------------

def test_the_fact_has_the_keys_of_the_role_and_an_outcome():
    fact = gathered_fact({'vms': [info_vm('vm1'), unread_vm('down')]}, sockets=['/run/*.qmp'])
    assert set(fact) == {'hypervisor', 'collected_at', 'run', 'expected_interval', 'status', 'reason', 'outcome', 'empty_globs',
                         'audit', 'parameters', 'rules', 'vms', 'summary'}
    assert fact['outcome'] == {'status': 'ok', 'reason': '', 'stage': 'gather', 'run': _facts.run_id()}
    assert fact['run'] == _facts.run_id()
    assert fact['audit'] == {'transport': 'qmp', 'transport_setting': 'auto', 'socket_globs': ['/run/*.qmp'], 'vms': [],
                             'all_domains': False, 'libvirt_uri': None, 'vms_listed': 2, 'vms_read': 1}
    assert [vm['name'] for vm in fact['vms']] == ['vm1', 'down']
    assert fact['vms'][0]['compliance']['state'] == 'compliant'
    assert fact['vms'][1]['compliance']['violations'][0]['rule'] == 'reachable'
    assert fact['summary']['vms'] == 2 and fact['summary']['unreachable'] == 1
    assert fact['rules'] == _facts.BUILTIN_RULES
    assert _facts.verdict(fact) == ('hv1: 2 VMs: 1 compliant, 1 non-compliant, 0 unknown; 1 violation; 1 unreachable; '
                                    'pressure high on 0, moderate on 0, unknown on 1')


@pytest.mark.parametrize('rule, expected, polling, broken', [
    ('at_most', 10, 2, False),     # Proxmox's 2 s
    ('at_most', 10, 0, True),      # polling off where it should run
    ('at_most', 10, 20, True),
    ('at_most', 0, 0, False),      # polling off, as expected
    ('at_most', 0, 2, True),
    ('exact', 0, 0, False),
    ('exact', 10, 2, True),
])
def test_the_polling_interval_rule(rule, expected, polling, broken):
    fact = gathered_fact({'vms': [info_vm('vm1', polling_interval=polling)]}, sockets=['/run/*.qmp'],
                         expected_interval=expected, interval_rule=rule)
    violations = [violation['rule'] for violation in fact['vms'][0]['compliance']['violations']]
    assert ('polling_interval' in violations) is broken, violations


def test_rates_come_from_the_previous_fact():
    def sample(last_update, major_faults):
        return info_vm('vm1', last_update=last_update,
                       stats={'total_memory': 4 * GIB, 'available_memory': 2 * GIB, 'major_faults': major_faults})
    before = gathered_fact({'vms': [sample(1000, 100)]}, sockets=['/run/*.qmp'])
    after = gathered_fact({'vms': [sample(1010, 200)]}, previous=before, sockets=['/run/*.qmp'])
    assert after['vms'][0]['rates']['major_faults'] == 10.0


@pytest.mark.parametrize('given, empty_globs, outcome', [
    ({'sockets': ['/run/vms/*.qmp']}, [{'glob': '/run/vms/*.qmp', 'directory': '/run/vms', 'directory_exists': True}],
     {'status': 'no_vms', 'reason': 'no VM found (no socket matches /run/vms/*.qmp)', 'stage': 'gather'}),
    ({'transport': 'qmp'}, [], {'status': 'no_vms', 'reason': 'no VM found (no socket glob is given)', 'stage': 'gather'}),
    ({'transport': 'libvirt'}, [],
     {'status': 'no_vms', 'reason': 'no VM found (libvirt at qemu:///system has no active domain)', 'stage': 'gather'}),
    ({}, [], {'status': 'no_vms', 'reason': 'no VM found (no socket glob is given, and libvirt is not there (none of '
                                            '/var/run/libvirt/libvirt-sock, /var/run/libvirt/virtqemud-sock exists))',
              'stage': 'gather'}),
    ({'sockets': ['/nope/*.qmp']},
     [{'glob': '/nope/*.qmp', 'directory': '/nope', 'directory_exists': False,
       'msg': 'sockets[0]: /nope/*.qmp matches nothing: the directory /nope does not exist on this host'}],
     {'status': 'failed', 'reason': 'sockets[0]: /nope/*.qmp matches nothing: the directory /nope does not exist on this host',
      'stage': 'gather'}),
])
def test_the_outcome_of_a_hypervisor_without_vms(given, empty_globs, outcome):
    fact = gathered_fact({'vms': [], 'empty_globs': empty_globs}, **given)
    assert fact['outcome'] == dict(outcome, run=_facts.run_id())
    assert (fact['status'], fact['reason']) == (outcome['status'], outcome['reason'])
    assert _facts.verdict(fact) == 'hv1: %s (%s)' % (outcome['status'], outcome['reason'])


# ---- the action itself ----------------------------------------------------------------------

class Recorder(object):
    def __init__(self, read=None, found=''):
        self.read = read if read is not None else {'vms': [info_vm('vm1')]}
        self.found = found
        self.modules = []
        self.commands = []


def action(args, recorder):
    task = Task()
    task.args = args
    plugin = ActionModule(task, mock.MagicMock(), PlayContext(), None, None, None)

    def execute_module(module_name=None, module_args=None, task_vars=None, **kwargs):
        recorder.modules.append((module_name, module_args))
        return recorder.read

    def low_level(cmd, **kwargs):
        recorder.commands.append(cmd)
        return {'rc': 0, 'stdout': recorder.found, 'stderr': ''}
    plugin._execute_module = execute_module
    plugin._low_level_execute_command = low_level
    return plugin


def test_one_module_call_and_the_fact():
    recorder = Recorder()
    result = action({'sockets': ['/run/vms/*.qmp'], 'timeout': 2}, recorder).run(task_vars={'inventory_hostname': 'hv1'})
    assert recorder.modules == [(INFO_MODULE, {'sockets': ['/run/vms/*.qmp'], 'timeout': 2.0, 'transport': 'qmp',
                                               'allow_empty': True, 'fail_on_error': False})]
    assert recorder.commands == []
    assert result['changed'] is False and result['queried_host'] is True
    assert result['ansible_facts']['balloon_stats']['hypervisor'] == 'hv1'
    assert result['outcome']['status'] == 'ok'


def test_the_previous_fact_is_read_from_ansible_facts():
    recorder = Recorder({'vms': [info_vm('vm1', last_update=1010, stats={'major_faults': 200})]})
    previous = {'vms': [info_vm('vm1', last_update=1000, stats={'major_faults': 100})]}
    result = action({'sockets': ['/run/*.qmp']}, recorder).run(
        task_vars={'inventory_hostname': 'hv1', 'ansible_facts': {'balloon_stats': previous}})
    assert result['ansible_facts']['balloon_stats']['vms'][0]['rates']['major_faults'] == 10.0


def test_auto_looks_for_libvirt_with_a_shell_command_not_a_module():
    recorder = Recorder(read={'vms': []}, found='/var/run/libvirt/libvirt-sock\n')
    result = action({}, recorder).run(task_vars={'inventory_hostname': 'hv1'})
    assert len(recorder.commands) == 1 and ' /var/run/libvirt/libvirt-sock ' in recorder.commands[0]
    assert recorder.modules == [(INFO_MODULE, {'transport': 'libvirt', 'libvirt_uri': 'qemu:///system', 'all_domains': True,
                                               'fail_on_error': False})]
    assert result['outcome']['reason'] == 'no VM found (libvirt at qemu:///system has no active domain)'


def test_no_vm_given_runs_nothing_on_the_host():
    recorder = Recorder()
    result = action({'transport': 'qmp', 'sockets': [], 'targets': []}, recorder).run(task_vars={'inventory_hostname': 'hv1'})
    assert recorder.modules == [] and recorder.commands == []
    assert result['queried_host'] is False
    assert result['ansible_facts']['balloon_stats']['status'] == 'no_vms'


def test_a_failed_read_is_the_tasks_failure_without_a_fact():
    recorder = Recorder({'failed': True, 'msg': 'Invalid input, no VM was touched: sockets[0] must be absolute'})
    result = action({'sockets': ['/run/*.qmp']}, recorder).run(task_vars={'inventory_hostname': 'hv1'})
    assert result == recorder.read


@pytest.mark.parametrize('args, message', [
    ({'min_available_percent': 101}, 'Invalid input, nothing was read: min_available_percent must be a percentage'),
    ({'interval_rule': 'sometimes'}, 'Invalid input, nothing was read: value of interval_rule must be one of: at_most, exact'),
    ({'no_such_option': 1}, 'Invalid input, nothing was read: unsupported parameters: no_such_option. Supported parameters include'),
    ({'rules': [{'name': 'x'}]}, "Invalid input, nothing was read: rule 'x' has no query"),
    ({'rules': [{'name': 'x', 'query': 'a', 'sevrity_query': 'b'}]}, "rule 'x': unknown key sevrity_query (a rule has name,"),
    ({'allow_empty': True}, 'Invalid input, nothing was read: allow_empty does not apply to balloon_stats_facts'),
    ({'failure': {'reason': 'x'}, 'min_available_percent': 150}, 'min_available_percent must be a percentage'),
])
def test_bad_input_fails_before_anything_runs(args, message):
    recorder = Recorder()
    result = action(dict(args, sockets=['/run/*.qmp']), recorder).run(task_vars={'inventory_hostname': 'hv1'})
    assert result['failed'] is True and message in result['msg']
    assert recorder.modules == [] and recorder.commands == []


def test_targets_go_to_the_module_as_given():
    recorder = Recorder()
    action({'targets': [{'socket': '/run/a.qmp', 'name': 'a'}, {'host': '127.0.0.1', 'port': 4444}]}, recorder).run(
        task_vars={'inventory_hostname': 'hv1'})
    assert recorder.modules[0][1]['targets'] == [{'socket': '/run/a.qmp', 'name': 'a'}, {'host': '127.0.0.1', 'port': 4444}]


def test_the_run_is_the_same_in_every_worker_of_one_run_and_differs_between_runs(monkeypatch):
    first = _facts.run_id()
    assert _facts.run_id() == first
    monkeypatch.setattr(_facts.C, 'DEFAULT_LOCAL_TMP', '/root/.ansible/tmp/ansible-local-4242abcdefgh')
    assert _facts.run_id() != first


def test_a_failure_is_recorded_without_reading_and_keeps_the_previous_samples():
    recorder = Recorder()
    previous = gathered_fact({'vms': [info_vm('vm1')]}, sockets=['/run/*.qmp'])
    previous['run'] = previous['outcome']['run'] = 'an earlier run'
    result = action({'failure': {'reason': 'No VM found on hv1', 'stage': 'Fail when no VM was found'}}, recorder).run(
        task_vars={'inventory_hostname': 'hv1', 'ansible_facts': {'balloon_stats': previous}})
    assert recorder.modules == [] and recorder.commands == [] and result['queried_host'] is False
    fact = result['ansible_facts']['balloon_stats']
    assert fact['outcome'] == {'status': 'failed', 'reason': 'No VM found on hv1', 'stage': 'Fail when no VM was found',
                               'run': _facts.run_id()}
    assert fact['vms'] == previous['vms'] and fact['run'] == 'an earlier run'
    assert result['msg'] == 'hv1: failed (No VM found on hv1)'
    # no previous fact: a fact with no VM
    fact = action({'failure': {'reason': 'x'}}, recorder).run(task_vars={'inventory_hostname': 'hv2'})['ansible_facts']['balloon_stats']
    assert (fact['hypervisor'], fact['status'], fact['vms'], fact['run']) == ('hv2', 'failed', [], None)


def test_a_vm_that_could_not_be_read_keeps_its_last_sample_for_the_next_rates():
    """One busy monitor must not cost the next gather its rates (nor hide the OOM kills in between)."""
    def sample(last_update, oom_kills, major_faults):
        return info_vm('vm1', last_update=last_update, stats={'total_memory': 4 * GIB, 'available_memory': 2 * GIB,
                                                              'oom_kills': oom_kills, 'major_faults': major_faults})
    first = gathered_fact({'vms': [sample(1000, 1, 100)]}, sockets=['/run/*.qmp'])
    busy = gathered_fact({'vms': [unread_vm('vm1', 'monitor busy')]}, previous=first, sockets=['/run/*.qmp'])
    assert busy['vms'][0]['last_sample'] == {'last_update': 1000, 'stats': first['vms'][0]['stats']}
    again = gathered_fact({'vms': [sample(1020, 4, 300)]}, previous=busy, sockets=['/run/*.qmp'])
    assert again['vms'][0]['rates']['major_faults'] == 10.0 and again['vms'][0]['rates']['oom_kills'] == 3
    assert again['vms'][0]['pressure']['verdict'] == 'high'
    assert 'last_sample' not in again['vms'][0]
