# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""balloon_stats_polling and balloon_stats_info: main() through AnsibleModule, against the fake QEMU.

Input validation (every error names the option and no VM is touched), the shape of the
result for one VM and for ``targets``, fail_on_error, diff and check mode, and a missing qemu.qmp.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _common, _libvirt
from ansible_collections.qmp.balloon.plugins.modules import balloon_stats_info, balloon_stats_polling
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import qmp_fakes
from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils.qmp_fakes import BALLOON, NOW, VMModel, run_module

MODULES = {'polling': balloon_stats_polling, 'info': balloon_stats_info}
INVALID = 'Invalid input, no VM was touched: '


@pytest.fixture
def places(fleets):
    """Two unix fakes, a TCP fake, a directory, a regular file, a missing path, a dead socket."""
    directory = tempfile.mkdtemp(prefix='qb-')
    unix = fleets.fleet(2, names=['vm1', 'vm2'])
    tcp = fleets.fleet(1, transport='tcp', names=['vm3'])
    regular = os.path.join(directory, 'file.qmp')
    with open(regular, 'w'):
        pass
    dead = os.path.join(directory, 'dead.qmp')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(dead)
    values = {
        'sock': unix[0].path, 'sock2': unix[1].path, 'port': tcp[0].port, 'dir': directory, 'file': regular,
        'missing': os.path.join(directory, 'missing.qmp'), 'dead': dead,
    }
    yield values, (unix, tcp)
    listener.close()
    shutil.rmtree(directory, ignore_errors=True)


def fill(template, values):
    """Replace '{name}' strings (whole values) in a nested args template."""
    if isinstance(template, dict):
        return dict((key, fill(value, values)) for key, value in template.items())
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    if isinstance(template, str) and template.startswith('{') and template.endswith('}') and template[1:-1] in values:
        return values[template[1:-1]]
    if isinstance(template, str) and '{' in template:
        return template.format(**values)
    return template


def touched(fleets):
    return [endpoint.name for fleet in fleets for endpoint in fleet if endpoint.connections]


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------

COMMON_INVALID = [
    # args, text expected in the message, the option it names
    pytest.param({'socket': 'vm1.qmp'}, "socket must be an absolute path, got 'vm1.qmp'", 'socket', id='relative-socket'),
    pytest.param({'socket': ''}, 'socket must not be empty', 'socket', id='empty-socket'),
    pytest.param({'socket': '{dir}'}, 'socket: {dir} is a directory, not a QMP socket', 'socket', id='directory'),
    pytest.param({'socket': '{file}'}, 'socket: {file} is not a socket', 'socket', id='regular-file'),
    pytest.param({'socket': '{missing}'}, 'socket: {missing} does not exist', 'socket', id='missing-file'),
    pytest.param({'host': '127.0.0.1'}, 'parameters are required together: host, port', 'port', id='host-without-port'),
    pytest.param({'port': '{port}'}, 'parameters are required together: host, port', 'host', id='port-without-host'),
    pytest.param({'host': '', 'port': '{port}'}, 'host must not be empty', 'host', id='empty-host'),
    pytest.param({'host': '127.0.0.1', 'port': 0}, 'port must be between 1 and 65535, got 0', 'port', id='port-0'),
    pytest.param({'host': '127.0.0.1', 'port': 70000}, 'port must be between 1 and 65535, got 70000', 'port', id='port-70000'),
    pytest.param({'host': '127.0.0.1', 'port': 'ssh'}, "argument 'port' is of type", 'port', id='port-not-int'),
    pytest.param({'socket': '{sock}', 'targets': [{'socket': '{sock2}'}]}, 'parameters are mutually exclusive: targets|socket', 'targets',
                 id='socket-and-targets'),
    pytest.param({'socket': '{sock}', 'host': '127.0.0.1', 'port': '{port}'}, 'parameters are mutually exclusive: socket|host', 'socket',
                 id='socket-and-host'),
    pytest.param({'targets': [{'socket': '{sock}'}], 'qom_path': BALLOON}, 'parameters are mutually exclusive: targets|qom_path', 'qom_path',
                 id='targets-and-qom-path'),
    pytest.param({'targets': [{'socket': '{sock}'}], 'name': 'x'}, 'parameters are mutually exclusive: targets|name', 'name',
                 id='targets-and-name'),
    pytest.param({}, 'one of the following is required: socket, host, targets, sockets', 'socket', id='no-target'),
    pytest.param({'targets': [{'name': 'a', 'socket': '{sock}'}, {'name': 'a', 'socket': '{sock2}'}]},
                 "targets[1].name: duplicate name 'a' (also in targets[0])", 'name', id='duplicate-names'),
    pytest.param({'targets': [{'socket': '{sock}'}, {'socket': '{sock2}'}, {'socket': '{sock}'}]},
                 'targets[2]: unix:{sock} is listed twice (also in targets[0])', 'targets', id='same-socket-twice'),
    pytest.param({'targets': [{'host': '127.0.0.1', 'port': '{port}'}, {'host': '127.0.0.1', 'port': '{port}'}]},
                 'targets[1]: tcp:127.0.0.1:{port} is listed twice (also in targets[0])', 'targets', id='same-port-twice'),
    pytest.param({'targets': [{'socket': '{sock}'}, {'socket': 'rel.qmp'}]}, "targets[1].socket must be an absolute path", 'socket',
                 id='targets-relative-socket'),
    pytest.param({'targets': [{'socket': '{dir}'}]}, 'targets[0].socket: {dir} is a directory', 'socket', id='targets-directory'),
    pytest.param({'targets': [{'host': '127.0.0.1', 'port': 0}]}, 'targets[0].port must be between 1 and 65535, got 0', 'port',
                 id='targets-port-0'),
    pytest.param({'targets': [{'host': '127.0.0.1'}]}, 'parameters are required together: host, port found in targets', 'port',
                 id='targets-host-without-port'),
    pytest.param({'targets': [{'socket': '{sock}', 'host': '127.0.0.1', 'port': '{port}'}]},
                 'parameters are mutually exclusive: socket|host, socket|port found in targets', 'socket', id='targets-socket-and-host'),
    pytest.param({'targets': [{'name': 'x'}]}, 'one of the following is required: socket, host found in targets', 'socket',
                 id='targets-neither'),
    pytest.param({'targets': [{'socket': '{sock}', 'bogus': 1}]}, 'bogus', 'bogus', id='targets-unknown-option'),
    pytest.param({'socket': '{sock}', 'timeout': 0}, 'timeout must be greater than 0 seconds, got 0', 'timeout', id='timeout-0'),
    pytest.param({'socket': '{sock}', 'timeout': -1}, 'timeout must be greater than 0 seconds, got -1', 'timeout', id='timeout-minus-1'),
    pytest.param({'socket': '{sock}', 'concurrency': 0}, 'concurrency must be at least 1, got 0', 'concurrency', id='concurrency-0'),
    pytest.param({'socket': '{sock}', 'concurrency': -3}, 'concurrency must be at least 1, got -3', 'concurrency', id='concurrency-minus-3'),
    pytest.param({'socket': '{sock}', 'qom_path': ''}, 'qom_path must not be empty', 'qom_path', id='empty-qom-path'),
    pytest.param({'targets': [{'socket': '{sock}', 'qom_path': '  '}]}, 'targets[0].qom_path must not be empty', 'qom_path',
                 id='targets-blank-qom-path'),
    pytest.param({'socket': '{sock}', 'fail_on_error': 'maybe'}, "argument 'fail_on_error' is of type", 'fail_on_error', id='bad-bool'),
    pytest.param({'socket': '{sock}', 'bogus': 1}, 'Unsupported parameters', 'bogus', id='unknown-option'),
]

POLLING_INVALID = [
    pytest.param({'interval': -1}, 'interval must be between 0 and 4294967295 seconds, got -1', id='interval-minus-1'),
    pytest.param({'interval': 4294967296}, 'interval must be between 0 and 4294967295 seconds, got 4294967296', id='interval-too-big'),
    pytest.param({'interval': '2.5'}, "argument 'interval' is of type", id='interval-2.5'),
    pytest.param({'interval': 2.5}, "argument 'interval' is of type", id='interval-float'),
    pytest.param({'interval': True}, 'interval must be a whole number of seconds, not a boolean', id='interval-true'),
    pytest.param({'interval': 'ten'}, "argument 'interval' is of type", id='interval-word'),
    pytest.param({}, 'missing required arguments: interval', id='interval-missing'),
    pytest.param({'interval': 5, 'rearm': 'sometimes'}, 'value of rearm must be one of: never, stale, always, got: sometimes', id='rearm'),
]


def assert_refused(result, expected, option, fakes):
    assert result['failed'] is True, result
    assert expected in result['msg'], result['msg']
    assert option in result['msg']
    assert 'vms' not in result
    assert touched(fakes) == [], 'a VM was touched'


#: The checks are shared (_common.BalloonModule): every case through balloon_stats_info, these through both modules.
BOTH_MODULES = ('relative-socket', 'directory', 'host-without-port', 'port-0', 'socket-and-targets', 'same-socket-twice',
                'targets-relative-socket', 'timeout-0', 'concurrency-0', 'empty-qom-path', 'unknown-option')


@pytest.mark.parametrize('args, expected, option, module', [
    pytest.param(*(case.values + (module,)), id='%s-%s' % (case.id, module))
    for case in COMMON_INVALID for module in sorted(MODULES) if module == 'info' or case.id in BOTH_MODULES
])
def test_invalid_common_input_touches_no_vm(places, module, args, expected, option):
    values, fakes = places
    args = fill(args, values)
    if module == 'polling':
        args['interval'] = 5
    result = run_module(MODULES[module], args)
    assert_refused(result, fill(expected, values), option, fakes)


@pytest.mark.parametrize('args, expected', POLLING_INVALID)
@pytest.mark.parametrize('target', ['single', 'targets'])
def test_invalid_interval_touches_no_vm(places, args, expected, target):
    values, fakes = places
    args = dict(args)
    if target == 'single':
        args['socket'] = values['sock']
    else:
        args['targets'] = [{'socket': values['sock']}, {'host': '127.0.0.1', 'port': values['port']}]
    result = run_module(balloon_stats_polling, args)
    assert_refused(result, expected, 'interval' if 'rearm' not in args else 'rearm', fakes)


def test_every_error_is_listed_at_once(places):
    values, fakes = places
    result = run_module(balloon_stats_info, {'targets': [{'socket': 'rel.qmp'}, {'socket': values['dir']}, {'host': '127.0.0.1', 'port': 0}],
                                             'timeout': 0, 'concurrency': 0})
    assert result['msg'].startswith(INVALID)
    for text in ('timeout must be greater than 0', 'concurrency must be at least 1', 'targets[0].socket must be an absolute path',
                 'targets[1].socket: %s is a directory' % values['dir'], 'targets[2].port must be between 1 and 65535'):
        assert text in result['msg']
    assert touched(fakes) == []


@pytest.mark.parametrize('module', sorted(MODULES))
def test_empty_targets_list(places, module):
    values, fakes = places
    args = {'targets': []}
    if module == 'polling':
        args['interval'] = 5
    result = run_module(MODULES[module], args)
    assert (result['failed'] is False and result['vms'] == []) or 'targets' in result['msg'], result


def one_sentence_problems(msg):
    """Why ``msg`` is not one plain sentence (no traceback, one line, no full stop before its end)."""
    problems = ['contains %r' % text for text in ('Traceback', '\n', '\r', 'File "', '<') if text in msg]
    if re.search(r'[.!?]\s+[A-Z]', msg) or msg.rstrip().endswith('.'):
        problems.append('has more than one sentence')
    return problems


def test_missing_qemu_qmp(places, monkeypatch):
    """Which Python on which host lacks it, and the two ways out (the role's prepare, another interpreter)."""
    values, fakes = places
    monkeypatch.setattr(_common, 'HAS_QEMU_QMP', False)
    monkeypatch.setattr(_common, 'QEMU_QMP_IMPORT_ERROR', 'Traceback (most recent call last):\nModuleNotFoundError: qemu')
    monkeypatch.setattr(_common.sys, 'executable', '/usr/bin/python3')
    monkeypatch.setattr(_common.platform, 'node', lambda: 'pve1')
    for module, extra in ((balloon_stats_polling, {'interval': 5}), (balloon_stats_info, {})):
        result = run_module(module, dict({'socket': values['sock']}, **extra))
        msg = result['msg']
        assert result['failed'] is True
        assert msg.startswith('The Python /usr/bin/python3 on this host (node name pve1) cannot import qemu.qmp==0.0.6, which this module needs: '), msg
        # way out 1: the role's prepare entry point, which makes the venv
        assert 'qmp.balloon.balloon_stats with tasks_from: prepare' in msg
        assert "ansible HOST -b -m ansible.builtin.include_role -a 'name=qmp.balloon.balloon_stats tasks_from=prepare'" in msg
        assert 'makes the venv /opt/qmp-balloon/venv' in msg
        # way out 2: an interpreter that has it
        assert msg.endswith('or point ansible_python_interpreter at a Python that has it '
                            '(for example -e ansible_python_interpreter=/opt/qmp-balloon/venv/bin/python)'), msg
        assert one_sentence_problems(msg) == [], msg
        assert 'ModuleNotFoundError' in result.get('exception', '')
    assert touched(fakes) == []


def test_missing_libvirt_python(monkeypatch):
    """transport libvirt: which Python on which host lacks libvirt-python; the distribution's binding as the way out."""
    monkeypatch.setattr(_libvirt, 'HAS_LIBVIRT', False)
    monkeypatch.setattr(_libvirt, 'LIBVIRT_IMPORT_ERROR', 'Traceback (most recent call last):\nModuleNotFoundError: libvirt')
    monkeypatch.setattr(_common.sys, 'executable', '/opt/qmp-balloon/venv/bin/python')
    monkeypatch.setattr(_common.platform, 'node', lambda: 'pve2')
    for module, extra in ((balloon_stats_polling, {'interval': 5}), (balloon_stats_info, {})):
        result = run_module(module, dict({'transport': 'libvirt', 'all_domains': True}, **extra))
        msg = result['msg']
        assert result['failed'] is True
        assert msg.startswith('The Python /opt/qmp-balloon/venv/bin/python on this host (node name pve2) cannot import libvirt-python, '
                              'which transport libvirt needs: '), msg
        assert 'python3-libvirt on Debian' in msg
        assert "run the modules with the host's Python or with a venv made with --system-site-packages" in msg
        assert '-e ansible_python_interpreter=/opt/qmp-balloon/venv/bin/python' in msg
        assert one_sentence_problems(msg) == [], msg
        assert 'ModuleNotFoundError' in result.get('exception', '')
    # qemu.qmp missing does not matter to transport libvirt, libvirt-python missing not to qmp
    monkeypatch.setattr(_common, 'HAS_QEMU_QMP', False)
    assert 'libvirt-python' in run_module(balloon_stats_info, {'transport': 'libvirt', 'domain': 'a'})['msg']


def test_missing_library_messages_name_the_real_interpreter():
    """Without monkeypatching: the running interpreter and this host's name."""
    assert _common.missing_qemu_qmp_message().startswith('The Python %s on this host (node name %s) cannot import' % (sys.executable, platform.node()))
    assert _common.missing_libvirt_message().startswith('The Python %s on this host (node name %s) cannot import' % (sys.executable, platform.node()))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

def static_vm(name=None, interval=0, age=3):
    return VMModel(name=name, stats_mode='static', interval=interval, last_update=NOW - age)


POLLING_TOP = ('name', 'endpoint', 'qom_path', 'previous_interval', 'interval', 'rearmed')
INFO_TOP = ('name', 'endpoint', 'qom_path', 'stats', 'unsupported', 'last_update', 'last_update_iso', 'age', 'polling_interval',
            'vm_status', 'health', 'used_memory', 'used_percent')


@pytest.mark.parametrize('transport', qmp_fakes.TRANSPORTS)
def test_single_vm_fields_at_top_level(fleets, clock, transport):
    fleet = fleets.fleet_of([static_vm('guest', interval=0)], transport=transport)
    endpoint = fleet[0]
    where = {'socket': endpoint.path} if transport == 'unix' else {'host': '127.0.0.1', 'port': endpoint.port}

    polled = run_module(balloon_stats_polling, dict(where, interval=10))
    assert polled['failed'] is False and polled['changed'] is True and 'msg' not in polled
    assert len(polled['vms']) == 1
    vm = polled['vms'][0]
    assert (vm['changed'], vm['failed']) == (True, False)
    for key in POLLING_TOP:
        assert polled[key] == vm[key], key
    assert (polled['name'], polled['qom_path'], polled['previous_interval'], polled['interval'], polled['rearmed']) == \
        ('guest', BALLOON, 0, 10, False)
    assert polled['endpoint'] == str(qmp_fakes.engine_endpoint(endpoint))
    assert 'diff' not in polled and polled['warnings'] == []

    again = run_module(balloon_stats_polling, dict(where, interval=10))
    assert again['changed'] is False and again['previous_interval'] == 10

    info = run_module(balloon_stats_info, where)
    assert info['failed'] is False and info['changed'] is False and 'ansible_facts' not in info
    for key in INFO_TOP:
        assert info[key] == info['vms'][0][key], key
    assert (info['health'], info['age'], info['polling_interval']) == ('ok', 3, 10)
    assert info['stats']['total_memory'] == fleet.vms[0].stats['stat-total-memory']


def test_qmp_transport_does_not_import_libvirt(fleets, clock, monkeypatch):
    """libvirt-python costs ~75 ms to import: a transport: qmp run never loads it."""
    monkeypatch.setattr(_libvirt, 'libvirt', None)
    monkeypatch.setattr(_libvirt, 'HAS_LIBVIRT', None)
    fleet = fleets.fleet_of([static_vm('guest', interval=10)])
    for module, args in ((balloon_stats_polling, {'interval': 10}), (balloon_stats_info, {})):
        result = run_module(module, dict(args, socket=fleet[0].path))
        assert result['failed'] is False, result.get('msg')
    assert (_libvirt.HAS_LIBVIRT, _libvirt.libvirt) == (None, None)
    # Importing the modules does not import it either (checked in a fresh interpreter).
    code = ('import sys; from ansible_collections.qmp.balloon.plugins.modules import balloon_stats_info, balloon_stats_polling; '
            'print(sorted(name for name in sys.modules if name == "libvirt" or name.startswith("libvirt.")))')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    fresh = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == '[]', fresh.stdout + fresh.stderr


@pytest.mark.parametrize('module', sorted(MODULES))
def test_targets_give_vms_in_order(fleets, clock, module):
    unix = fleets.fleet_of([static_vm('a'), static_vm(None), static_vm('c')], names=['s0', 's1', 's2'])
    tcp = fleets.fleet_of([static_vm(None)], transport='tcp')
    targets = [{'socket': unix[2].path}, {'host': '127.0.0.1', 'port': tcp[0].port}, {'socket': unix[1].path, 'name': 'given'},
               {'socket': unix[0].path, 'qom_path': BALLOON + '/virtio-backend'}]
    args = {'targets': targets, 'concurrency': 2}
    if module == 'polling':
        args['interval'] = 4
    result = run_module(MODULES[module], args)
    assert result['failed'] is False, result.get('msg')
    assert [vm['name'] for vm in result['vms']] == ['c', '127.0.0.1:%d' % tcp[0].port, 'given', 'a']
    assert [vm['qom_path'] for vm in result['vms']] == [BALLOON, BALLOON, BALLOON, BALLOON + '/virtio-backend']
    for key in ('name', 'stats', 'interval', 'health', 'previous_interval'):
        assert key not in result, 'a targets call has no top-level %s' % key
    if module == 'polling':
        assert result['changed'] is True and [model.interval for model in unix.vms + tcp.vms] == [4, 4, 4, 4]
    else:
        assert result['changed'] is False and 'ansible_facts' not in result
        assert [vm['health'] for vm in result['vms']] == ['polling_disabled'] * 4


@pytest.mark.parametrize('module', sorted(MODULES))
@pytest.mark.parametrize('fail_on_error', [True, False])
def test_fail_on_error(fleets, places, module, fail_on_error):
    values = places[0]
    healthy = fleets.fleet_of([static_vm('ok1'), static_vm('ok2')])
    nob = fleets.fleet_of([VMModel(name='nob', balloon='none')])
    targets = [{'socket': healthy[0].path}, {'socket': values['dead']}, {'socket': nob[0].path}, {'socket': healthy[1].path}]
    # require_balloon: nob fails (without it, a VM without a balloon is a state: test_absent_balloon_is_a_state)
    args = {'targets': targets, 'fail_on_error': fail_on_error, 'timeout': 20, 'require_balloon': True}
    if module == 'polling':
        args['interval'] = 6
    result = run_module(MODULES[module], args)
    assert [vm['failed'] for vm in result['vms']] == [False, True, True, False]
    dead_msg = 'dead (unix:%s): nothing is listening on unix:%s' % (values['dead'], values['dead'])
    nob_msg = 'nob (unix:%s): no virtio-balloon device in this VM' % nob[0].path
    assert result['vms'][1]['msg'].startswith(dead_msg) and result['vms'][2]['msg'].startswith(nob_msg)
    if module == 'polling':
        assert [model.interval for model in healthy.vms] == [6, 6], 'the other VMs are done before failing'
        assert result['changed'] is True
    if fail_on_error:
        assert result['failed'] is True
        # grouped by cause; the full sentences stay in vms
        assert result['msg'] == '2 of 4 VMs failed: 1 not listening (dead), 1 no balloon device (nob)'
        assert all('_cause' not in vm for vm in result['vms'])
        assert result['warnings'] == []
    else:
        assert result['failed'] is False and 'msg' not in result
        assert result['warnings'] == [result['vms'][1]['msg'], result['vms'][2]['msg']]


@pytest.mark.parametrize('fail_on_error', [True, False])
def test_single_vm_failure(places, fail_on_error):
    values = places[0]
    result = run_module(balloon_stats_info, {'socket': values['dead'], 'fail_on_error': fail_on_error})
    msg = 'dead (unix:%s): nothing is listening on unix:%s' % (values['dead'], values['dead'])
    assert result['vms'][0]['msg'].startswith(msg)
    assert (result['name'], result['endpoint']) == ('dead', 'unix:%s' % values['dead'])
    if fail_on_error:
        assert result['failed'] is True and result['msg'] == result['vms'][0]['msg']
    else:
        assert result['failed'] is False and result['warnings'] == [result['vms'][0]['msg']]


@pytest.mark.parametrize('check_mode', [False, True])
@pytest.mark.parametrize('diff', [False, True])
def test_diff_and_check_mode(fleets, clock, check_mode, diff):
    models = [static_vm('a', interval=0), static_vm('b', interval=5), static_vm('c', interval=5, age=1000)]
    fleet = fleets.fleet_of(models)
    result = run_module(balloon_stats_polling, {'targets': [{'socket': path} for path in fleet.paths], 'interval': 5, 'rearm': 'stale'},
                        check_mode=check_mode, diff=diff)
    assert result['failed'] is False and result['changed'] is True
    assert [(vm['changed'], vm['rearmed'], vm['previous_interval'], vm['interval']) for vm in result['vms']] == \
        [(True, False, 0, 5), (False, False, 5, 5), (True, True, 5, 5)]
    writes = [qmp_fakes.qom_sets(fleet.record, name) for name in fleet.names]
    if check_mode:
        assert [model.interval for model in models] == [0, 5, 5]
        assert writes == [[], [], []]
    else:
        assert [model.interval for model in models] == [5, 5, 5]
        assert writes == [[5], [], [0, 5]]
    if diff:
        assert result['diff'] == [
            {'before_header': 'a interval', 'after_header': 'a interval',
             'before': 'guest-stats-polling-interval: 0\n', 'after': 'guest-stats-polling-interval: 5\n'},
            {'before_header': 'b interval', 'after_header': 'b interval',
             'before': 'guest-stats-polling-interval: 5\n', 'after': 'guest-stats-polling-interval: 5\n'},
            {'before_header': 'c interval', 'after_header': 'c interval',
             'before': 'guest-stats-polling-interval: 5\n', 'after': 'guest-stats-polling-interval: 5 (re-armed)\n'},
        ]
    else:
        assert 'diff' not in result


def test_diff_leaves_out_failed_vms(fleets, places):
    values = places[0]
    fleet = fleets.fleet_of([static_vm('a')])
    result = run_module(balloon_stats_polling, {'targets': [{'socket': values['dead']}, {'socket': fleet[0].path}], 'interval': 3,
                                                'fail_on_error': False}, diff=True)
    assert [entry['before_header'] for entry in result['diff']] == ['a interval']


@pytest.mark.parametrize('check_mode', [False, True])
def test_info_never_changes_anything(fleets, clock, check_mode):
    fleet = fleets.fleet_of([static_vm('a', interval=10, age=100), VMModel(name='b')])
    result = run_module(balloon_stats_info, {'targets': [{'socket': path} for path in fleet.paths]}, check_mode=check_mode, diff=True)
    assert result['failed'] is False and result['changed'] is False
    assert 'ansible_facts' not in result and 'diff' not in result
    assert [vm['health'] for vm in result['vms']] == ['stale', 'polling_disabled']
    assert 'qom-set' not in qmp_fakes.commands(fleet.record)
