# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 13 through main(): ``sockets`` (paths and globs), an absent balloon as a state,
failures grouped by cause, ``targets`` given as strings, and the diagnosis of a VM whose
health is not ok (``driver``, ``advice``, ``qemu_version``), against the fake QEMU.

Health values that QEMU 7.2 with the guests here cannot show (``stats_not_negotiated``, a
QEMU without ``x-query-virtio-status``) come from the fake and say so in the test's name.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _batch
from ansible_collections.qmp.balloon.plugins.modules import balloon_stats_info, balloon_stats_polling
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import qmp_fakes
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils.qmp_fakes import NOW, VMModel, run_module

INVALID = 'Invalid input, no VM was touched: '


def static(name, age=5, interval=10, **kwargs):
    return VMModel(name=name, stats_mode='static', interval=interval, last_update=NOW - age, **kwargs)


@pytest.fixture
def vm_dir(fleets):
    """A directory holding three fake VMs' sockets, a .pid file, and a symlink to itself (like /var/run -> /run)."""
    fleet = fleets.fleet_of([static('a'), static('b'), static('c')], names=['100', '101', '102'])
    directory = os.path.dirname(fleet[0].path)
    with open(os.path.join(directory, '100.pid'), 'w') as handle:
        handle.write('1\n')
    link = tempfile.mkdtemp(prefix='qb-') + '/run'
    os.symlink(directory, link)
    yield directory, link, fleet
    shutil.rmtree(os.path.dirname(link), ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# sockets
# ---------------------------------------------------------------------------------------------

def test_a_glob_reads_every_socket_of_a_directory_once(vm_dir):
    directory, link, _fleet = vm_dir
    result = run_module(balloon_stats_info, {'sockets': [link + '/*', directory + '/*.qmp']})
    assert result['failed'] is False, result.get('msg')
    # the .pid file is not a socket; the symlinked directory names the same sockets (device + inode)
    assert [vm['name'] for vm in result['vms']] == ['a', 'b', 'c']
    assert [vm['endpoint'] for vm in result['vms']] == ['unix:%s/%s.qmp' % (link, name) for name in ('100', '101', '102')]
    assert 'stats' not in result, 'sockets is a batch, even of one VM'


def test_sockets_follow_explicit_targets_and_skip_them(vm_dir):
    directory, _link, _fleet = vm_dir
    result = run_module(balloon_stats_polling, {'targets': [{'name': 'first', 'socket': directory + '/101.qmp'}],
                                                'sockets': [directory + '/1*.qmp', directory + '/100.qmp'], 'interval': 10})
    assert result['failed'] is False, result.get('msg')
    assert [vm['name'] for vm in result['vms']] == ['first', 'a', 'c']


@pytest.mark.parametrize('pattern, expected', [
    ('/nonexistent-qb/*.qmp', r"sockets\[0\]: /nonexistent-qb/\*.qmp matches nothing: the directory /nonexistent-qb does not exist "
                              r"on this host; set allow_empty: true to accept a glob that matches nothing$"),
    ('{dir}/*.none', r'sockets\[0\]: no socket matches .*/\*.none on this host; set allow_empty: true'),
    ('{dir}/*.pid', r'sockets\[0\]: .*/\*.pid matches 1 file but no socket; set allow_empty: true'),
    ('relative/*.qmp', r"sockets\[0\] must be an absolute path or shell glob \(like /var/run/qemu-server/\*.qmp\), got 'relative/\*.qmp'"),
    ('{dir}/missing.qmp', r'sockets\[0\]: .*/missing.qmp does not exist \(is the VM running\?\)'),
])
def test_a_glob_that_matches_nothing_fails_with_one_sentence(vm_dir, pattern, expected):
    directory = vm_dir[0]
    result = run_module(balloon_stats_info, {'sockets': [pattern.replace('{dir}', directory)]})
    assert result['failed'] is True
    assert result['msg'].startswith(INVALID) and qmp_fakes.matches(expected, result['msg'][len(INVALID):]), result['msg']
    assert 'vms' not in result


def test_allow_empty_accepts_a_glob_that_matches_nothing(vm_dir):
    result = run_module(balloon_stats_info, {'sockets': ['/nonexistent-qb/*.qmp'], 'allow_empty': True})
    assert result['failed'] is False and result['vms'] == []


@pytest.mark.parametrize('module', [balloon_stats_info, balloon_stats_polling])
def test_allow_empty_tells_a_missing_directory_from_an_empty_one(vm_dir, module):
    """Issue 14: the role makes a hypervisor whose glob directory is missing (a typo) failed, not no_vms."""
    directory = vm_dir[0]
    args = {'sockets': ['/nonexistent-qb/*.qmp', directory + '/*.none', directory + '/*.qmp'], 'allow_empty': True}
    if module is balloon_stats_polling:
        args['interval'] = 10
    result = run_module(module, args)
    assert result['failed'] is False, result.get('msg')
    assert [vm['name'] for vm in result['vms']] == ['a', 'b', 'c']
    assert result['empty_globs'] == [
        {'glob': '/nonexistent-qb/*.qmp', 'directory': '/nonexistent-qb', 'directory_exists': False,
         'msg': 'sockets[0]: /nonexistent-qb/*.qmp matches nothing: the directory /nonexistent-qb does not exist on this host'},
        {'glob': directory + '/*.none', 'directory': directory, 'directory_exists': True,
         'msg': 'sockets[1]: no socket matches %s/*.none on this host' % directory},
    ]


def test_empty_globs_only_with_sockets(vm_dir):
    result = run_module(balloon_stats_info, {'targets': [{'socket': vm_dir[0] + '/100.qmp'}]})
    assert result['failed'] is False and 'empty_globs' not in result
    result = run_module(balloon_stats_info, {'sockets': [vm_dir[0] + '/*.qmp']})
    assert result['empty_globs'] == []


@pytest.mark.parametrize('args, expected', [
    ({'sockets': ['/run/*.qmp'], 'socket': '/run/x.qmp'}, 'parameters are mutually exclusive: sockets|socket'),
    ({'sockets': ['/run/*.qmp'], 'transport': 'libvirt'}, 'sockets applies to transport qmp only'),
    ({'domain': 'x', 'allow_empty': True, 'transport': 'libvirt'}, 'allow_empty applies to transport qmp only'),
])
def test_sockets_refused_where_it_means_nothing(monkeypatch, args, expected):
    from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import libvirt_fakes
    libvirt_fakes.install(monkeypatch, libvirt_fakes.Hypervisor())
    result = run_module(balloon_stats_info, args)
    assert result['failed'] is True and expected in result['msg'], result['msg']


def test_targets_given_as_strings_get_the_right_form():
    result = run_module(balloon_stats_info, {'targets': ['/run/vm1.qmp']})
    assert result['failed'] is True
    assert result['msg'] == ("targets[0] is the string '/run/vm1.qmp', but each entry of targets is a dict: write "
                             'targets: [{socket: /run/vm1.qmp}] (or host and port, or with transport libvirt domain), '
                             'or give paths and globs as sockets: [/run/vm1.qmp]')


def test_targets_given_as_one_string_ad_hoc_get_the_right_form():
    """ansible -m ... -a 'targets=/run/vm1.qmp': the string itself, not a list of strings."""
    result = run_module(balloon_stats_info, {'targets': '/run/vm1.qmp'})
    assert result['failed'] is True
    assert result['msg'].startswith("targets[0] is the string '/run/vm1.qmp', but each entry of targets is a dict"), result['msg']


@pytest.mark.parametrize('args', [{'socket': '{dir}/*.qmp'}, {'targets': [{'socket': '{dir}/*.qmp'}]}])
def test_a_glob_given_as_one_socket_points_to_sockets(vm_dir, args):
    directory = vm_dir[0]
    args = dict((key, value.replace('{dir}', directory) if isinstance(value, str)
                 else [{'socket': value[0]['socket'].replace('{dir}', directory)}]) for key, value in args.items())
    result = run_module(balloon_stats_info, args)
    option = 'socket' if 'socket' in args else 'targets[0].socket'
    assert result['failed'] is True
    assert result['msg'] == '%s%s: %s/*.qmp does not exist; %s takes one path, not a glob: give paths and globs as sockets: [%s/*.qmp]' % (
        INVALID, option, directory, option, directory)


def test_an_empty_sockets_list_is_refused_unless_allow_empty():
    result = run_module(balloon_stats_info, {'sockets': []})
    assert result['failed'] is True and 'sockets is empty' in result['msg'] and 'allow_empty: true' in result['msg']
    assert run_module(balloon_stats_info, {'sockets': [], 'allow_empty': True}) == dict(
        run_module(balloon_stats_info, {'sockets': [], 'allow_empty': True}), failed=False, vms=[])


def test_sockets_are_trimmed_and_a_duplicate_names_the_path_given(vm_dir):
    directory, link, _fleet = vm_dir
    result = run_module(balloon_stats_info, {'sockets': [directory + '/100.qmp', ' ' + directory + '/101.qmp']})
    assert result['failed'] is False and [vm['name'] for vm in result['vms']] == ['a', 'b'], result.get('msg')
    twice = run_module(balloon_stats_info, {'targets': [{'socket': directory + '/100.qmp'}, {'socket': link + '/100.qmp'}]})
    assert twice['failed'] is True
    assert 'targets[1]: unix:%s/100.qmp is listed twice (also in targets[0]) (the same socket as unix:' % link in twice['msg'], twice['msg']


def test_libvirt_with_sockets_says_it_once(monkeypatch):
    from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import libvirt_fakes
    libvirt_fakes.install(monkeypatch, libvirt_fakes.Hypervisor())
    result = run_module(balloon_stats_info, {'sockets': ['/run/*.qmp'], 'transport': 'libvirt'})
    assert result['failed'] is True and result['msg'].count('with transport libvirt') == 1, result['msg']


# ---------------------------------------------------------------------------------------------
# An absent balloon is a state
# ---------------------------------------------------------------------------------------------

def test_absent_balloon_is_a_state(fleets):
    fleet = fleets.fleet_of([static('ok'), VMModel(name='nob', balloon='none')])
    targets = [{'socket': endpoint.path} for endpoint in fleet]
    info = run_module(balloon_stats_info, {'targets': targets})
    assert info['failed'] is False, info.get('msg')
    nob = info['vms'][1]
    assert (nob['failed'], nob['health']) == (False, 'no_balloon_device') and 'stats' not in nob
    assert nob['advice'].startswith('no virtio-balloon device in this VM')
    polling = run_module(balloon_stats_polling, {'targets': targets, 'interval': 7})
    assert polling['failed'] is False and polling['changed'] is True
    assert polling['vms'][1]['skipped'] is True and polling['vms'][1]['skip_reason'].startswith('no virtio-balloon device')
    assert fleet.vms[0].interval == 7
    single = run_module(balloon_stats_polling, {'socket': fleet[1].path, 'interval': 7})
    assert single['failed'] is False and single['skipped'] is True and single['changed'] is False
    for module, args in ((balloon_stats_info, {}), (balloon_stats_polling, {'interval': 7})):
        strict = run_module(module, dict(args, targets=targets, require_balloon=True))
        assert strict['failed'] is True and strict['msg'].startswith('1 of 2 VMs failed: nob (unix:'), strict['msg']


def test_absent_balloon_is_a_state_with_libvirt(monkeypatch):
    from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import libvirt_fakes
    hypervisor = libvirt_fakes.Hypervisor()
    libvirt_fakes.install(monkeypatch, hypervisor)
    hypervisor.add('nob', balloon='none')
    args = {'transport': 'libvirt', 'domain': 'nob'}
    info = run_module(balloon_stats_info, args)
    assert info['failed'] is False and info['health'] == 'no_balloon_device' and 'stats' not in info
    assert "memballoon model='none'" in info['advice']
    polling = run_module(balloon_stats_polling, dict(args, interval=5))
    assert polling['failed'] is False and polling['skipped'] is True
    assert 'setMemoryStatsPeriod' not in hypervisor.methods()
    assert run_module(balloon_stats_info, dict(args, require_balloon=True))['failed'] is True


# ---------------------------------------------------------------------------------------------
# Errors that scale
# ---------------------------------------------------------------------------------------------

def _failed(name, cause):
    return {'name': name, 'failed': True, 'msg': '%s (unix:/run/%s.qmp): a long sentence %s' % (name, name, 'x' * 100), '_cause': cause}


def test_thirty_failures_read_in_one_short_line():
    results = [_failed('vm%d' % index, 'monitor busy') for index in range(1, 29)]
    results += [_failed('db1', 'permission denied'), _failed('db2', 'permission denied')]
    results += [{'name': 'fine%d' % index, 'failed': False} for index in range(2)]
    message = _batch.failure_summary(results)
    assert message == '30 of 32 VMs failed: 28 monitor busy (vm1, vm2, vm3, …), 2 permission denied (db1, db2)'


def test_many_causes_stay_under_the_limit():
    results = [_failed('vm-with-a-rather-long-name-%d' % index, 'cause number %d' % index) for index in range(40)]
    message = _batch.failure_summary(results)
    assert len(message) <= _batch.MAX_SUMMARY + 40, message
    assert message.startswith('40 of 40 VMs failed: 1 cause number 0 (vm-with-a-rather-long-name-0), ')
    assert message.endswith('other causes')


def test_one_failure_keeps_its_whole_sentence():
    results = [_failed('vm1', 'monitor busy'), {'name': 'ok', 'failed': False}]
    assert _batch.failure_summary(results) == '1 of 2 VMs failed: ' + results[0]['msg']


def test_a_busy_fleet_fails_with_the_grouped_message(fleets, short_dir):
    fleet = fleets.fleet_of([static('ok')])
    dead = []
    for index in range(5):
        path = os.path.join(short_dir, 'dead%d.qmp' % index)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        dead.append((path, listener))
    try:
        result = run_module(balloon_stats_info, {'sockets': [fleet[0].path, short_dir + '/dead*.qmp']})
    finally:
        for _path, listener in dead:
            listener.close()
    assert result['failed'] is True
    assert result['msg'] == '5 of 6 VMs failed: 5 not listening (dead0, dead1, dead2, …)'
    assert all(vm['msg'].startswith(vm['name'] + ' (unix:') for vm in result['vms'] if vm['failed'])


# ---------------------------------------------------------------------------------------------
# Diagnosis from QEMU
# ---------------------------------------------------------------------------------------------

def _info(fleets, model, clock=None):
    fleet = fleets.fleet_of([model])
    result = run_module(balloon_stats_info, {'socket': fleet[0].path})
    assert result['failed'] is False, result.get('msg')
    return result, fleet


def test_ok_is_not_diagnosed(fleets, clock):
    result, fleet = _info(fleets, static('ok'))
    assert result['health'] == 'ok' and 'driver' not in result and 'advice' not in result
    assert result['qemu_version'] == '7.2.0'
    assert 'x-query-virtio-status' not in qmp_fakes.commands(fleet.record)


def test_no_guest_driver_is_driver_not_loaded(fleets, clock):
    result, fleet = _info(fleets, VMModel(name='bare', interval=10, status='prelaunch'))
    assert result['health'] == 'driver_not_loaded'
    assert result['driver'] == {'loaded': False, 'stats_negotiated': False}
    assert 'modprobe virtio_balloon' in result['advice'] and 'the VM is prelaunch: resume it' in result['advice']
    sent = [entry for entry in fleet.record if entry['command'] == 'x-query-virtio-status']
    assert [entry['arguments'] for entry in sent] == [{'path': '/machine/peripheral/balloon0/virtio-backend'}]


def test_fake_only_stats_not_negotiated(fleets, clock):
    """QEMU 7.2 with a Linux guest always negotiates the stats queue: only the fake shows this state."""
    result, _fleet = _info(fleets, VMModel(name='old', interval=10, guest_driver=True, stats_vq=False))
    assert result['health'] == 'stats_not_negotiated'
    assert result['driver'] == {'loaded': True, 'stats_negotiated': False}
    assert 'VIRTIO_BALLOON_F_STATS_VQ' in result['advice']


def test_driver_loaded_but_silent_stays_never_updated(fleets, clock):
    result, _fleet = _info(fleets, VMModel(name='win', interval=10, guest_driver=True))
    assert result['health'] == 'never_updated' and result['driver'] == {'loaded': True, 'stats_negotiated': True}
    assert 'Windows start the Balloon service' in result['advice']


@pytest.mark.parametrize('virtio_status', ['missing', 'refused'])
def test_fake_only_qemu_without_the_diagnosis_gives_driver_null(fleets, clock, virtio_status):
    """An older QEMU (CommandNotFound) or one that refuses: the fake; QEMU 7.2 answers."""
    result, _fleet = _info(fleets, VMModel(name='old', interval=10, virtio_status=virtio_status, qemu_version=(6, 2, 0)))
    assert result['health'] == 'never_updated' and result['driver'] is None
    assert result['qemu_version'] == '6.2.0'
    assert result['advice']


def test_after_a_live_migration_fresh_looking_data_is_not_ok(fleets, clock):
    """The destination of a migration: interval 0, last-update the migration time, the old values (measured on QEMU 7.2)."""
    result, _fleet = _info(fleets, static('dest', age=1, interval=0, guest_driver=True))
    assert result['health'] == 'polling_disabled' and result['age'] == 1
    assert 're-apply it after either' in result['advice'] and 'not refreshed' in result['advice']
    assert result['driver'] == {'loaded': True, 'stats_negotiated': True}


def test_stale_and_paused_get_their_advice(fleets, clock):
    stale, _fleet = _info(fleets, static('stale', age=100, guest_driver=True))
    assert stale['health'] == 'stale' and 'rearm: stale' in stale['advice']
    paused, _fleet = _info(fleets, static('paused', age=100, status='paused', guest_driver=True))
    assert paused['health'] == 'vm_not_running' and 'resume it (cont)' in paused['advice']


def test_libvirt_cannot_tell_the_driver(monkeypatch):
    from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import libvirt_fakes
    hypervisor = libvirt_fakes.Hypervisor()
    libvirt_fakes.install(monkeypatch, hypervisor)
    hypervisor.add('quiet', live_period=5)
    result = run_module(balloon_stats_info, {'transport': 'libvirt', 'domain': 'quiet'})
    assert result['failed'] is False and result['health'] == 'never_updated'
    assert result['driver'] is None and result['qemu_version'] is None and result['advice']
    assert 'qemuMonitorCommand' not in hypervisor.methods()


@pytest.mark.parametrize('guest_driver, rearmed', [(True, True), (False, False)])
def test_rearm_stale_leaves_a_guest_without_an_active_driver_alone(fleets, clock, guest_driver, rearmed):
    """A stalled VM is re-armed only while its driver is active: no DRIVER_OK means a new timer brings nothing back,
    and re-arming would report changed on every run (the real case, a driver unloaded after stats, is in guest_diagnosis)."""
    fleet = fleets.fleet_of([static('stalled', age=100, guest_driver=guest_driver)])
    result = run_module(balloon_stats_polling, {'socket': fleet[0].path, 'interval': 10, 'rearm': 'stale'})
    assert result['failed'] is False, result.get('msg')
    assert result['changed'] is rearmed and result['rearmed'] is rearmed
    assert ('rearm_skipped' in result) is not rearmed
    sent = qmp_fakes.commands(fleet.record)
    assert 'x-query-virtio-status' in sent
    assert sent.count('qom-set') == (2 if rearmed else 0)
