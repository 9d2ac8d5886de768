# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's input checks and VM selection (plugins/plugin_utils/_role_state.py), the sentences the role
fails with and the transport its module tasks use."""

from __future__ import annotations

import pytest

from ansible_collections.qmp.balloon.plugins.plugin_utils._role_state import balloon_role_checks, balloon_role_run

GOOD = {'balloon_stats_min_available_percent': 10, 'balloon_stats_pressure_headroom_high': 5,
        'balloon_stats_pressure_headroom_moderate': 10, 'balloon_stats_pressure_major_faults': 5,
        'balloon_stats_pressure_swap_bytes': 1048576, 'balloon_stats_report_keep': 10,
        'balloon_stats_export_period': 300, 'transport': 'auto', 'socket_globs': ['/run/vms/*.qmp'], 'vms': [],
        'hostname': 'hv1'}


def checks(**changes):
    values = dict(GOOD)
    values.update(changes)
    return balloon_role_checks(values)


def test_good_values_have_no_problem():
    assert checks() == {'thresholds': [], 'selection': []}


@pytest.mark.parametrize('changes, problem', [
    ({'balloon_stats_min_available_percent': 150},
     'balloon_stats_min_available_percent must be a percentage from 0 to 100, got 150'),
    ({'balloon_stats_pressure_headroom_moderate': 101.5},
     'balloon_stats_pressure_headroom_moderate must be a percentage from 0 to 100, got 101.5'),
    ({'balloon_stats_pressure_headroom_high': 20},
     'balloon_stats_pressure_headroom_high (20) must not be above balloon_stats_pressure_headroom_moderate (10): '
     'high pressure is the lower headroom'),
    ({'balloon_stats_report_keep': -1}, 'balloon_stats_report_keep must be 0 or more, got -1'),
    ({'balloon_stats_pressure_swap_bytes': -0.5}, 'balloon_stats_pressure_swap_bytes must be 0 or more, got -0.5'),
    ({'balloon_stats_export_period': 0},
     'balloon_stats_export_period must be a number of seconds above 0, or null for none, got 0'),
    ({'balloon_stats_export_period': 'often'},
     'balloon_stats_export_period must be a number of seconds above 0, or null for none, got often'),
    ({'balloon_stats_export_period': 2.5},
     'balloon_stats_export_period must be a number of seconds above 0, or null for none, got 2.5'),
])
def test_each_threshold_problem_has_its_sentence(changes, problem):
    assert checks(**changes)['thresholds'] == [problem]


@pytest.mark.parametrize('name', ['balloon_stats_pressure_major_faults', 'balloon_stats_pressure_swap_bytes',
                                  'balloon_stats_min_available_percent'])
def test_not_a_number_is_refused(name):
    [problem] = checks(**{name: float('nan')})['thresholds']
    assert problem.startswith(name + ' must be') and problem.endswith('got nan')


@pytest.mark.parametrize('period', [None, '', 300, '300'])
def test_an_export_period_of_seconds_or_none_is_fine(period):
    assert checks(balloon_stats_export_period=period)['thresholds'] == []


def test_every_threshold_problem_is_listed_and_none_once_validated():
    problems = checks(balloon_stats_min_available_percent=150, balloon_stats_pressure_headroom_high=20,
                      balloon_stats_report_keep=-1)['thresholds']
    assert len(problems) == 3
    assert checks(balloon_stats_min_available_percent=150, validated=True)['thresholds'] == []


def test_selection_problems():
    assert checks(socket_globs=['run/vms/*.qmp'])['selection'] == [
        "balloon_stats_socket_globs must be absolute paths or absolute shell patterns (like /var/run/qemu-server/*.qmp), "
        "got ['run/vms/*.qmp']"]
    conflict = ('hv1 uses transport libvirt: balloon_stats_vms entries need a domain (name or UUID) and '
                'balloon_stats_socket_globs must be empty; set balloon_stats_transport: qmp to use QMP sockets')
    assert checks(transport='libvirt')['selection'] == [conflict]
    assert checks(transport='libvirt', socket_globs=[], vms=[{'socket': '/run/a.qmp'}])['selection'] == [conflict]
    assert checks(transport='libvirt', socket_globs=[], vms=[{'domain': 'web1'}])['selection'] == []
    # auto never conflicts: it is qmp when anything asks for QMP
    assert checks(transport='auto', vms=[{'socket': '/run/a.qmp'}])['selection'] == []
    # a relative socket is refused before prepare runs (the module would refuse it after)
    assert checks(vms=[{'socket': '/run/a.qmp'}, {'socket': 'vms/b.qmp', 'name': 'b'}])['selection'] == [
        'balloon_stats_vms[1].socket must be an absolute path, got vms/b.qmp']
    assert checks(vms=[{'host': '127.0.0.1', 'port': 4444}, {'domain': 'web1'}])['selection'] == []


def run(**changes):
    values = {'transport': 'auto', 'socket_globs': [], 'vms': [], 'libvirt_sockets': ['/run/libvirt/libvirt-sock'],
              'play': 'p', 'discovered': {}}
    values.update(changes)
    return balloon_role_run(values)


def test_auto_with_globs_is_qmp_without_a_lookup():
    result = run(socket_globs=['/run/vms/*.qmp'])
    assert (result['transport'], result['sockets'], result['all_domains'], result['has_vms'], result['needs_lookup']) == (
        'qmp', ['/run/vms/*.qmp'], False, True, False)


def test_auto_needs_the_lookup_then_takes_the_memo_of_the_same_inputs():
    first = run()
    assert first['needs_lookup'] and not first['discovery_fresh']
    assert (first['transport'], first['has_vms']) == ('qmp', False)     # until discovery looked
    memo = {'key': first['discovery_key'], 'transport': 'libvirt'}
    second = run(discovered=memo)
    assert second['discovery_fresh']
    assert (second['transport'], second['sockets'], second['all_domains'], second['has_vms']) == ('libvirt', [], True, True)
    # another play, or other inputs: the memo is stale
    assert not run(discovered=memo, play='other')['discovery_fresh']
    assert not run(discovered=memo, libvirt_sockets=['/run/libvirt/virtqemud-sock'])['discovery_fresh']
    # the key never reads as a list (ansible-core 2.16 would turn a templated '[...]' into one)
    assert not first['discovery_key'].startswith('[')


def test_explicit_transports():
    result = run(transport='libvirt', vms=[{'domain': 'web1'}])
    assert (result['transport'], result['all_domains'], result['has_vms'], result['needs_lookup']) == ('libvirt', False, True, False)
    result = run(transport='qmp')
    assert (result['transport'], result['sockets'], result['has_vms']) == ('qmp', [], False)
    result = run(transport='qmp', vms=[{'socket': '/run/a.qmp'}])
    assert result['has_vms'] and not result['all_domains']
