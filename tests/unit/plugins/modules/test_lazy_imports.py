# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a module run imports (issue 16, the fixed cost of a task): each in a fresh interpreter.

A task with no VM imports no asyncio, ssl, qemu.qmp or libvirt code; a task with QMP VMs no
libvirt code and no xml.etree; a libvirt task no asyncio, ssl, qemu.qmp or QMP engine; and a Python without qemu.qmp still fails a task with no VM
with the same sentence and traceback as before.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest

# Runs main() of one module in a fresh interpreter with ANSIBLE_MODULE_ARGS; prints the module's
# JSON and then, on stderr, the names of the heavy modules that ended up in sys.modules.
RUNNER = r'''
import json, sys
args, name, block = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == 'block-qemu'
if sys.argv[3] == 'fake-libvirt':
    # A libvirt-python with two active domains, for the imports of a libvirt task (no libvirtd needed).
    import types
    fake = types.ModuleType('libvirt')

    class libvirtError(Exception):
        pass

    class Domain(object):
        def __init__(self, name):
            self._name = name

        def name(self):
            return self._name

        def UUIDString(self):
            return '4216a76a-24d1-42b2-a57e-f8fd0a04df0' + self._name[-1]

        def XMLDesc(self, flags):
            return "<domain><devices><memballoon model='virtio'><stats period='5'/></memballoon></devices></domain>"

    class Connection(object):
        def getAllDomainStats(self, groups, flags):
            return [(Domain(name), {'state.state': 1, 'balloon.current': 65536, 'balloon.rss': 1024, 'balloon.last-update': 0})
                    for name in ('vm2', 'vm1')]

        def close(self):
            return 0

    fake.libvirtError = libvirtError
    fake.registerErrorHandler = lambda handler, context: None
    fake.open = fake.openReadOnly = lambda uri: Connection()
    sys.modules['libvirt'] = fake
if block:
    class Block(object):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == 'qemu' or fullname.startswith('qemu.'):
                raise ModuleNotFoundError("No module named 'qemu'", name='qemu')
            return None
    sys.meta_path.insert(0, Block())
import importlib, os, tempfile
# The module reads its arguments from the file named by argv[1], as under AnsiballZ (patch_module_args
# would import unittest.mock, which imports asyncio).
with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
    json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
sys.argv = [sys.argv[0], handle.name]
module = importlib.import_module('ansible_collections.qmp.balloon.plugins.modules.' + name)
HEAVY = ('asyncio', 'ssl', 'qemu.qmp', 'libvirt', 'xml.etree')  # the namespace package qemu is found, not qemu.qmp
OURS = ('_qmp', '_qmp_executor', '_qmp_discovery', '_batch', '_libvirt', '_libvirt_executor', '_libvirt_domain')

def report():
    os.unlink(handle.name)
    loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in HEAVY)
                    or m.rsplit('.', 1)[-1] in OURS)
    common = sys.modules['ansible_collections.qmp.balloon.plugins.module_utils._common']
    sys.stderr.write('\nIMPORT_ERROR ' + json.dumps(common.QEMU_QMP_IMPORT_ERROR) + '\nLOADED ' + json.dumps(loaded) + '\n')
try:
    module.main()
except SystemExit:
    report()
    raise
'''


def run_fresh(name, args, block_qemu=False, fake_libvirt=False):
    """(result, loaded heavy modules, the traceback passed to fail_json) of one module run in a new interpreter."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    mode = 'block-qemu' if block_qemu else 'fake-libvirt' if fake_libvirt else '-'
    process = subprocess.run([sys.executable, '-c', RUNNER, json.dumps(args), name, mode],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=60, check=False)
    assert 'LOADED ' in process.stderr, process.stderr[-2000:]
    loaded = json.loads(process.stderr.rsplit('LOADED ', 1)[1])
    import_error = json.loads(process.stderr.rsplit('IMPORT_ERROR ', 1)[1].split('\n', 1)[0])
    result = json.loads(process.stdout[process.stdout.index('{'):])
    return result, loaded, import_error


def heavy(loaded, *names):
    return [module for module in loaded if any(module == name or module.startswith(name + '.') or module.endswith('.' + name)
                                               for name in names)]


@pytest.mark.parametrize('name, args', [
    ('balloon_stats_info', {'targets': []}),
    ('balloon_stats_polling', {'targets': [], 'interval': 10}),
])
def test_no_vm_imports_no_engine(name, args):
    """targets: [] -> the same result as before, without asyncio, ssl, qemu.qmp, libvirt or either engine."""
    result, loaded, _error = run_fresh(name, args)
    assert result.get('failed') is not True, result
    assert result['vms'] == [] and result['changed'] is False, result
    assert loaded == [], loaded


def test_qmp_vm_imports_no_libvirt_code():
    """A QMP task (here a monitor that never greets) imports asyncio and qemu.qmp, but no libvirt code and no xml.etree."""
    directory = tempfile.mkdtemp(prefix='qbl-')
    path = os.path.join(directory, 'vm.qmp')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)
        result, loaded, _error = run_fresh('balloon_stats_info', {'socket': path, 'timeout': 0.5})
    finally:
        listener.close()
        os.unlink(path)
        os.rmdir(directory)
    assert result['failed'] is True and 'sent no QMP greeting' in result['msg'], result
    assert heavy(loaded, 'asyncio') and heavy(loaded, 'qemu.qmp') and heavy(loaded, '_qmp_executor'), loaded
    assert heavy(loaded, 'libvirt', '_libvirt', '_libvirt_executor', '_libvirt_domain', 'xml.etree') == [], loaded


@pytest.mark.parametrize('name, args', [
    ('balloon_stats_info', {'transport': 'libvirt', 'all_domains': True}),
    ('balloon_stats_polling', {'transport': 'libvirt', 'all_domains': True, 'interval': 5}),
])
def test_libvirt_task_imports_no_asyncio(name, args):
    """A libvirt task reads its domains through threads, without an event loop: no asyncio, ssl, qemu.qmp or QMP engine."""
    result, loaded, _error = run_fresh(name, args, fake_libvirt=True)
    assert result.get('failed') is not True, result
    assert [vm['name'] for vm in result['vms']] == ['vm1', 'vm2'], result
    assert all(vm['polling_interval' if name == 'balloon_stats_info' else 'interval'] == 5 for vm in result['vms']), result
    assert heavy(loaded, 'libvirt') and heavy(loaded, '_libvirt_executor') and heavy(loaded, '_batch'), loaded
    assert heavy(loaded, 'asyncio', 'ssl', 'qemu.qmp', '_qmp', '_qmp_executor', '_qmp_discovery') == [], loaded


@pytest.mark.parametrize('args', [{'targets': []}, {'socket': '/run/nothing-here.qmp'}])
def test_missing_qemu_qmp_still_fails_without_vm(args):
    """No qemu.qmp: the task fails with the same sentence and the import's traceback, with or without a VM, before the input checks."""
    result, _loaded, import_error = run_fresh('balloon_stats_info', args, block_qemu=True)
    assert result['failed'] is True
    assert ' cannot import qemu.qmp==0.0.6, which this module needs: ' in result['msg'], result
    # fail_json's exception: the traceback of the real import, as before
    assert import_error.startswith('Traceback') and "ModuleNotFoundError: No module named 'qemu'" in import_error, import_error
