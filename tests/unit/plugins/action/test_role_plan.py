# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's plan (plugins/plugin_utils/_role_plan.py): the checks and their sentences, the steps of
each entry point, the transport, the interpreter of the module tasks, and the action's role mode
(one command on the host, no module call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from unittest import mock

import pytest

from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.template import Templar

from ansible_collections.qmp.balloon.plugins.action.balloon_stats_facts import ActionModule
from ansible_collections.qmp.balloon.plugins.plugin_utils import _role_plan

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..')
PROBE = os.path.join(ROOT, 'roles', 'balloon_stats', 'files', 'prepare_probe.py')


def role(**changes):
    values = {'entry': 'main', 'prepare': 'auto', 'venv': '/opt/qmp-balloon/venv', 'wheel_dir': None, 'qmp_pin': '0.0.6',
              'probe': 'print(1)', 'transport': 'auto', 'libvirt_sockets': ['/var/run/libvirt/libvirt-sock'],
              'socket_globs': ['/run/vms/*.qmp'], 'vms': [], 'require_vms': False, 'configure': True, 'gather': True,
              'report': True, 'export_textfile': False, 'export_gather': True, 'min_available_percent': 10,
              'pressure_headroom_high': 5, 'pressure_headroom_moderate': 10, 'pressure_major_faults': 5,
              'pressure_swap_bytes': 1048576, 'report_keep': 10, 'export_period': 300}
    values.update(changes)
    return values


def test_the_role_passes_every_key():
    with open(os.path.join(ROOT, 'roles', 'balloon_stats', 'tasks', 'main.yml'), encoding='utf-8') as handle:
        text = handle.read()
    for key in _role_plan.KEYS:
        assert '\n          %s: ' % key in text, key
    assert set(role()) == set(_role_plan.KEYS)


# ---- the checks ------------------------------------------------------------------------------

def test_good_values_have_no_problem():
    assert _role_plan.threshold_problems(role()) == []
    assert _role_plan.selection_problems(role(), 'hv1') == []
    assert _role_plan.prepare_problems(role(), '') == []


@pytest.mark.parametrize('changes, problem', [
    ({'min_available_percent': 150}, 'balloon_stats_min_available_percent must be a percentage from 0 to 100, got 150'),
    ({'pressure_headroom_moderate': 101.5},
     'balloon_stats_pressure_headroom_moderate must be a percentage from 0 to 100, got 101.5'),
    ({'pressure_headroom_high': 20},
     'balloon_stats_pressure_headroom_high (20) must not be above balloon_stats_pressure_headroom_moderate (10): '
     'high pressure is the lower headroom'),
    ({'report_keep': -1}, 'balloon_stats_report_keep must be 0 or more, got -1'),
    ({'pressure_swap_bytes': -0.5}, 'balloon_stats_pressure_swap_bytes must be 0 or more, got -0.5'),
    ({'export_period': 0}, 'balloon_stats_export_period must be a number of seconds above 0, or null for none, got 0'),
    ({'export_period': 'often'}, 'balloon_stats_export_period must be a number of seconds above 0, or null for none, got often'),
    ({'export_period': 2.5}, 'balloon_stats_export_period must be a number of seconds above 0, or null for none, got 2.5'),
])
def test_each_threshold_problem_has_its_sentence(changes, problem):
    assert _role_plan.threshold_problems(role(**changes)) == [problem]


@pytest.mark.parametrize('key', ['pressure_major_faults', 'pressure_swap_bytes', 'min_available_percent'])
def test_not_a_number_is_refused(key):
    [problem] = _role_plan.threshold_problems(role(**{key: float('nan')}))
    assert problem.startswith('balloon_stats_%s must be' % key) and problem.endswith('got nan')


@pytest.mark.parametrize('period', [None, '', 300, '300'])
def test_an_export_period_of_seconds_or_none_is_fine(period):
    assert _role_plan.threshold_problems(role(export_period=period)) == []


def test_selection_problems():
    assert _role_plan.selection_problems(role(socket_globs=['run/vms/*.qmp']), 'hv1') == [
        "balloon_stats_socket_globs must be absolute paths or absolute shell patterns (like /var/run/qemu-server/*.qmp), "
        "got ['run/vms/*.qmp']"]
    assert _role_plan.selection_problems(role(vms=[{'socket': 'a.qmp'}]), 'hv1') == [
        'balloon_stats_vms[0].socket must be an absolute path, got a.qmp']
    conflict = ('hv1 uses transport libvirt: balloon_stats_vms entries need a domain (name or UUID) and '
                'balloon_stats_socket_globs must be empty; set balloon_stats_transport: qmp to use QMP sockets')
    assert _role_plan.selection_problems(role(transport='libvirt'), 'hv1') == [conflict]
    assert _role_plan.selection_problems(role(transport='libvirt', socket_globs=[], vms=[{'socket': '/run/a.qmp'}]),
                                         'hv1') == [conflict]
    assert _role_plan.selection_problems(role(transport='libvirt', socket_globs=[], vms=[{'domain': 'web1'}]), 'hv1') == []


def test_prepare_problems(tmp_path):
    assert _role_plan.prepare_problems(role(prepare='maybe'), '') == ['balloon_stats_prepare must be auto, true or false, got "maybe"']
    assert _role_plan.prepare_problems(role(venv='relative/venv'), '') == [
        'balloon_stats_venv must be an absolute path, got "relative/venv"']
    empty = str(tmp_path)
    [problem] = _role_plan.prepare_problems(role(), empty)
    assert problem.startswith('balloon_stats_wheel_dir: no qemu.qmp wheel in %s on the controller (make it with: pip download' % empty)
    assert _role_plan.prepare_problems(role(prepare=False), empty) == []   # false looks at nothing
    (tmp_path / 'qemu.qmp-0.0.6-py3-none-any.whl').write_bytes(b'x')
    assert _role_plan.prepare_problems(role(), empty) == []
    assert _role_plan.wheels(empty) == [os.path.join(empty, 'qemu.qmp-0.0.6-py3-none-any.whl')]


def test_the_wheel_directory_is_beside_the_playbook():
    assert _role_plan.wheel_dir(role(wheel_dir='wheels'), '/srv/play') == '/srv/play/wheels'
    assert _role_plan.wheel_dir(role(wheel_dir='/abs/wheels'), '/srv/play') == '/abs/wheels'
    assert _role_plan.wheel_dir(role(wheel_dir=None), '/srv/play') == ''
    assert _role_plan.wheel_dir(role(wheel_dir=''), '/srv/play') == ''


# ---- the steps -------------------------------------------------------------------------------

@pytest.mark.parametrize('entry, changes, expected', [
    ('main', {}, dict(configure=True, gather=True, export=False, report=True, reads=True)),
    ('main', {'configure': False, 'export_textfile': True}, dict(configure=False, gather=True, export=True, report=True, reads=True)),
    ('main', {'configure': False, 'gather': False}, dict(configure=False, gather=False, export=False, report=True, reads=False)),
    # flags as -e gives them
    ('main', {'configure': 'False', 'report': 'no'}, dict(configure=False, gather=True, export=False, report=False, reads=True)),
    ('configure', {'gather': True}, dict(configure=True, gather=False, export=False, report=False, reads=True)),
    ('gather', {'configure': True}, dict(configure=False, gather=True, export=False, report=False, reads=True)),
    ('export', {}, dict(configure=False, gather=True, export=True, report=False, reads=True)),
    ('export', {'export_gather': False}, dict(configure=False, gather=False, export=True, report=False, reads=False)),
    ('prepare', {}, dict(configure=False, gather=False, export=False, report=False, reads=False)),
])
def test_each_entry_point_takes_its_steps(entry, changes, expected):
    assert _role_plan.steps(role(entry=entry, **changes)) == expected


def test_tags_select_the_phases():
    assert _role_plan.tag_selected(['gather'], None, None)
    assert _role_plan.tag_selected(['gather'], ['all'], [])
    assert _role_plan.tag_selected(['configure', 'gather'], ['gather', 'report'], [])
    assert not _role_plan.tag_selected(['configure', 'gather'], ['report'], [])
    assert not _role_plan.tag_selected(['gather'], ['all'], ['gather'])


def test_the_transport():
    assert _role_plan.choose_transport(role(), []) == 'qmp'                         # a glob asks for QMP
    assert _role_plan.choose_transport(role(socket_globs=[]), ['/var/run/libvirt/libvirt-sock']) == 'libvirt'
    assert _role_plan.choose_transport(role(socket_globs=[]), []) == 'qmp'
    assert _role_plan.choose_transport(role(socket_globs=[], vms=[{'domain': 'a'}]), ['/x']) == 'libvirt'
    # domain VMs are libvirt's without a look, as the gather action chooses
    assert _role_plan.choose_transport(role(socket_globs=[], vms=[{'domain': 'a'}]), []) == 'libvirt'
    assert not _role_plan.needs_lookup(role(socket_globs=[], vms=[{'domain': 'a'}]), _role_plan.steps(role()))
    assert _role_plan.choose_transport(role(socket_globs=[], vms=[{'socket': '/a'}]), ['/x']) == 'qmp'
    assert _role_plan.choose_transport(role(transport='libvirt'), []) == 'libvirt'
    taken = _role_plan.steps(role())
    assert not _role_plan.needs_lookup(role(), taken)
    assert _role_plan.needs_lookup(role(socket_globs=[]), taken)
    assert not _role_plan.needs_lookup(role(socket_globs=[], transport='qmp'), taken)
    assert not _role_plan.needs_lookup(role(socket_globs=[], libvirt_sockets=[]), taken)
    assert not _role_plan.needs_lookup(role(socket_globs=[], entry='prepare'), _role_plan.steps(role(entry='prepare')))


def test_the_python_prepare_looks_at():
    assert _role_plan.host_python('/usr/bin/python3.11', None) == '/usr/bin/python3.11'
    assert _role_plan.host_python('auto_silent', '/usr/bin/python3') == '/usr/bin/python3'
    assert _role_plan.host_python('auto', None) == 'python3'
    assert _role_plan.host_python(None, None) == 'python3'


# ---- the plan --------------------------------------------------------------------------------

HOST = {'executable': '/usr/bin/python3', 'use_host': True, 'install': False}
VENV = {'executable': '/usr/bin/python3', 'use_host': False, 'install': False}
INSTALL = {'executable': '/usr/bin/python3', 'use_host': False, 'install': True}


def plan(facts, check_mode=False, **changes):
    values = role(**changes)
    return _role_plan.plan(values, _role_plan.steps(values), _role_plan.choose_transport(values, []), facts, check_mode,
                           'auto', '')


def test_the_interpreter_of_the_module_tasks():
    assert plan(HOST)['python'] == '/usr/bin/python3'
    assert plan(VENV)['python'] == '/opt/qmp-balloon/venv/bin/python'
    assert plan(INSTALL)['python'] == '/opt/qmp-balloon/venv/bin/python'
    assert plan(None, prepare='false')['python'] == 'auto'      # the configured one, untouched
    assert plan(INSTALL)['install'] and not plan(VENV)['install']


def test_check_mode_with_an_install_pending_reads_nothing_and_says_so():
    pending = plan(INSTALL, check_mode=True)
    assert pending['check_pending'] == '/opt/qmp-balloon/venv'
    assert pending['python'] == '/usr/bin/python3'
    assert not pending['configure'] and pending['gather'] and not pending['export']
    assert _role_plan.check_pending_line(pending) == ('would prepare /opt/qmp-balloon/venv first; nothing read or changed '
                                                      'in check mode')
    assert plan(VENV, check_mode=True)['check_pending'] == '' and plan(VENV, check_mode=True)['configure']


def test_the_vms_and_the_no_vm_steps():
    assert plan(HOST)['has_vms'] and plan(HOST)['sockets'] == ['/run/vms/*.qmp']
    none = plan(HOST, socket_globs=[], require_vms=True)
    assert not none['has_vms'] and none['no_vm_given'] and not none['configure'] and not none['require_vms']
    found = plan(HOST, require_vms=True)
    assert found['require_vms'] and not found['no_vm_given']
    assert not plan(HOST, require_vms=True, entry='prepare')['no_vm_given']
    libvirt = plan(HOST, transport='libvirt', socket_globs=[])
    assert libvirt['all_domains'] and libvirt['has_vms'] and libvirt['sockets'] == []


def test_only_the_prepare_entry_says_its_python():
    assert plan(HOST, entry='prepare')['say_python'] and not plan(HOST)['say_python']
    assert not plan(INSTALL, check_mode=True, entry='prepare')['say_python']


# ---- one command on the host -----------------------------------------------------------------

def test_the_host_command_runs_the_probe_and_the_lookup(tmp_path):
    present = tmp_path / 'sock'
    present.write_text('')
    dangling = tmp_path / 'dangling'
    dangling.symlink_to(tmp_path / 'nowhere')
    with open(PROBE, encoding='utf-8') as handle:
        values = role(probe=handle.read(), venv=str(tmp_path / 'venv'),
                      libvirt_sockets=[str(present), str(tmp_path / 'missing'), str(dangling)])
    command = _role_plan.host_command(values, sys.executable, True, True)
    proc = subprocess.run(['/bin/sh', '-c', command], capture_output=True, text=True, check=False, timeout=120)
    found, facts = _role_plan.parse_host_output(proc.stdout, True)
    assert found == [str(present), str(dangling)]
    assert facts['executable'] == sys.executable and 'install' in facts


def test_a_python_that_does_not_run_is_one_sentence():
    found, facts = _role_plan.parse_host_output('', True)
    assert (found, facts) == ([], None)
    assert _role_plan.python_failure('/nope/python3', 'hv1', 127, 'sh: 1: /nope/python3: not found\n') == (
        'The Python /nope/python3 on hv1 could not be run (sh: 1: /nope/python3: not found): set ansible_python_interpreter '
        'to a Python 3.9 or later on that host')


class Recorder(object):
    def __init__(self, stdout='', rc=0):
        self.commands, self.modules = [], []
        self.stdout, self.rc = stdout, rc


def action(args, recorder, check_mode=False):
    task = Task()
    task.args = args
    task.check_mode = check_mode
    loader = DataLoader()
    plugin = ActionModule(task, mock.MagicMock(), PlayContext(), loader, Templar(loader=loader), None)

    def execute_module(module_name=None, module_args=None, task_vars=None, **kwargs):
        recorder.modules.append(module_name)
        return {}

    def low_level(cmd, **kwargs):
        recorder.commands.append(cmd)
        return {'rc': recorder.rc, 'stdout': recorder.stdout, 'stderr': 'sh: 1: python9: not found'}
    plugin._execute_module = execute_module
    plugin._low_level_execute_command = low_level
    return plugin


TASK_VARS = {'inventory_hostname': 'hv1', 'ansible_python_interpreter': '/usr/bin/python3', 'playbook_dir': '/srv'}


def test_the_action_plans_with_one_command_and_no_module():
    facts = dict(VENV, version=[3, 11, 2])
    recorder = Recorder(stdout='%slibvirt\n%s\n' % (_role_plan.FOUND, json.dumps(facts)))
    result = action({'role': role(socket_globs=[])}, recorder).run(task_vars=TASK_VARS)
    assert recorder.modules == [] and len(recorder.commands) == 1
    assert result['queried_host'] is False and result['changed'] is False
    assert result['transport'] == 'libvirt' and result['all_domains'] and result['python'] == '/opt/qmp-balloon/venv/bin/python'
    assert 'ansible_facts' not in result


def test_a_role_option_without_the_roles_keys_is_refused():
    recorder = Recorder()
    values = role()
    del values['venv']
    result = action({'role': values}, recorder).run(task_vars=TASK_VARS)
    assert result['failed'] and result['msg'].endswith('got entry main without venv')
    result = action({'role': role(entry='targets')}, recorder).run(task_vars=TASK_VARS)
    assert result['failed'] and 'got entry targets' in result['msg']
    assert recorder.commands == [] and recorder.modules == []


def test_the_action_fails_before_the_host_on_bad_input():
    recorder = Recorder()
    result = action({'role': role(min_available_percent=150)}, recorder).run(task_vars=TASK_VARS)
    assert result['failed'] and result['msg'].startswith('Invalid role variables, nothing was read or written: ')
    assert result['queried_host'] is False and result['check'] == 'Check the thresholds and limits'
    result = action({'role': role(socket_globs=['relative/*.qmp'])}, recorder).run(task_vars=TASK_VARS)
    assert result['failed'] and result['msg'].startswith('balloon_stats_socket_globs must be absolute')
    assert result['check'] == 'Check the VM selection variables'
    # configure checks no threshold (it uses none)
    result = action({'role': role(entry='configure', min_available_percent=150)}, Recorder(stdout=json.dumps(HOST)))
    assert not result.run(task_vars=TASK_VARS).get('failed')
    assert recorder.commands == []
    result = action({'role': role(entry='gather')}, Recorder()).run(task_vars=TASK_VARS)
    assert result['failed'] and result['msg'].startswith('The Python /usr/bin/python3 on hv1 could not be run (')
    assert result['check'] == "Fail when this hypervisor's Python could not be run"
    result = action({'role': role(prepare='maybe')}, Recorder()).run(task_vars=TASK_VARS)
    assert result['failed'] and result['check'] == 'Check the prepare variables'


def test_a_hypervisor_given_no_vm_fails_after_the_probe_with_require_vms():
    recorder = Recorder(stdout=json.dumps(HOST))
    result = action({'role': role(socket_globs=[], transport='qmp', require_vms=True)}, recorder).run(task_vars=TASK_VARS)
    assert len(recorder.commands) == 1
    assert result['failed'] and result['check'] == 'Fail when no VM is given and VMs are required'
    assert result['msg'] == ('No VM found on hv1: balloon_stats_vms is empty and no socket glob is given '
                             '(balloon_stats_require_vms is true)')
    result = action({'role': role(socket_globs=[], transport='qmp')}, Recorder(stdout=json.dumps(HOST))).run(task_vars=TASK_VARS)
    assert not result.get('failed') and not result['has_vms']


def test_nothing_runs_on_the_host_when_no_step_reads():
    recorder = Recorder()
    result = action({'role': role(configure=False, gather=False)}, recorder).run(task_vars=TASK_VARS)
    assert recorder.commands == [] and result['report'] and result['python'] == '/usr/bin/python3'
    result = action({'role': role()}, recorder).run(task_vars=dict(TASK_VARS, ansible_run_tags=['report']))
    assert recorder.commands == [] and not result.get('failed')


def test_the_check_pending_line_is_the_result_message():
    recorder = Recorder(stdout=json.dumps(INSTALL))
    result = action({'role': role()}, recorder, check_mode=True).run(task_vars=TASK_VARS)
    assert result['msg'] == 'would prepare /opt/qmp-balloon/venv first; nothing read or changed in check mode'
