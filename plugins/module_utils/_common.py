# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every qmp.balloon module shares: options, input checks, results.

PRIVATE: not part of the collection's public API.

A module builds a :class:`BalloonModule`, which owns the common options
(documented once in the ``qmp.balloon._common`` doc fragment), refuses bad
input before any VM is touched, runs the engine and exits with ``vms`` in
input order (plus the single VM's fields at the top level).
"""

from __future__ import annotations

import math
import os
import platform
import stat
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qmp.balloon.plugins.module_utils import _engine, _libvirt
from ansible_collections.qmp.balloon.plugins.module_utils._qmp import (
    HAS_QEMU_QMP,
    QEMU_QMP_IMPORT_ERROR,
    QEMU_QMP_VERSION,
    Endpoint,
    TLSSettings,
)

TARGET_OPTIONS = dict(
    name=dict(type='str'),
    socket=dict(type='path'),
    host=dict(type='str'),
    port=dict(type='int'),
    qom_path=dict(type='str'),
    domain=dict(type='str'),
)

TRANSPORT_QMP = 'qmp'
TRANSPORT_LIBVIRT = 'libvirt'

#: Options that only mean something to one transport; given to the other, they are refused.
QMP_ONLY_OPTIONS = ('socket', 'host', 'port', 'qom_path', 'tls_ca', 'tls_cert', 'tls_key', 'tls_server_name')
QMP_ONLY_TARGET_OPTIONS = ('socket', 'host', 'port', 'qom_path')

COMMON_ARGUMENT_SPEC = dict(
    name=dict(type='str'),
    socket=dict(type='path'),
    host=dict(type='str'),
    port=dict(type='int'),
    qom_path=dict(type='str'),
    targets=dict(type='list', elements='dict', options=TARGET_OPTIONS,
                 mutually_exclusive=[('socket', 'host'), ('socket', 'port')],
                 required_together=[('host', 'port')]),
    tls_ca=dict(type='path'),
    tls_cert=dict(type='path'),
    # A path to the key file, not the key itself: nothing secret to hide from logs.
    tls_key=dict(type='path', no_log=False),
    tls_server_name=dict(type='str'),
    timeout=dict(type='float', default=5.0),
    concurrency=dict(type='int', default=4),
    fail_on_error=dict(type='bool', default=True),
    transport=dict(type='str', default=TRANSPORT_QMP, choices=[TRANSPORT_QMP, TRANSPORT_LIBVIRT]),
    # No default in the spec: qemu:///system applies with transport libvirt only, and a URI given
    # with transport qmp is refused.
    libvirt_uri=dict(type='str'),
    domain=dict(type='str'),
    all_domains=dict(type='bool', default=False),
)

COMMON_MUTUALLY_EXCLUSIVE = [
    ('socket', 'host'),
    ('socket', 'port'),
    ('targets', 'socket'),
    ('targets', 'host'),
    ('targets', 'port'),
    ('targets', 'qom_path'),
    ('targets', 'name'),
]
# "One of socket, host, targets" (qmp) or "domain, targets, all_domains" (libvirt) is checked in
# _build_targets, per transport; for qmp with the message AnsibleModule's required_one_of gave.
COMMON_REQUIRED_TOGETHER = [('host', 'port'), ('tls_cert', 'tls_key')]
COMMON_REQUIRED_BY = {'tls_cert': 'tls_ca', 'tls_server_name': 'tls_ca'}

#: A monitor that has not answered in an hour will not; an infinite timeout would hang the play.
MAX_TIMEOUT = 3600

#: Keys of a VM's result that are not copied to the top level of a single-VM call.
_NOT_AT_TOP = ('changed', 'failed', 'msg')

#: The venv that the role's prepare entry point makes by default (balloon_stats_venv).
PREPARE_VENV = '/opt/qmp-balloon/venv'


def _this_python():
    """'The Python PATH on HOST': the interpreter running this module and the host it runs on."""
    return 'The Python %s on %s' % (sys.executable or 'python', platform.node() or 'this host')


def missing_qemu_qmp_message():
    """One sentence: which Python on which host lacks qemu.qmp, and the two ways out."""
    return ('%s cannot import qemu.qmp==%s, which this module needs: run the role qmp.balloon.balloon_stats with '
            'tasks_from: prepare on this host (include_role in a play, or ad hoc: ansible HOST -b -m ansible.builtin.include_role '
            "-a 'name=qmp.balloon.balloon_stats tasks_from=prepare'), which makes the venv %s with it, "
            'or point ansible_python_interpreter at a Python that has it (for example '
            '-e ansible_python_interpreter=%s/bin/python)' % (_this_python(), QEMU_QMP_VERSION, PREPARE_VENV, PREPARE_VENV))


def missing_libvirt_message():
    """One sentence: which Python on which host lacks libvirt-python, and the ways out."""
    return ('%s cannot import %s, which transport libvirt needs: install the distribution\'s binding '
            '(python3-libvirt on Debian, Ubuntu and Proxmox VE) and run the modules with the host\'s Python or with a venv made '
            'with --system-site-packages, which sees it (the role\'s prepare entry point makes %s that way: '
            '-e ansible_python_interpreter=%s/bin/python)' % (_this_python(), _libvirt.LIBVIRT_LIBRARY, PREPARE_VENV, PREPARE_VENV))


def check_socket_path(path, option):
    """Return an error sentence naming ``option`` when ``path`` cannot be a QMP socket, else None."""
    if not path:
        return '%s must not be empty' % option
    if not os.path.isabs(path):
        return '%s must be an absolute path, got %r' % (option, path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return '%s: %s does not exist (is the VM running?)' % (option, path)
    except PermissionError:
        return '%s: permission denied reaching %s: run as a user that may use the socket (usually root)' % (option, path)
    if stat.S_ISDIR(mode):
        return '%s: %s is a directory, not a QMP socket' % (option, path)
    if not stat.S_ISSOCK(mode):
        return '%s: %s is not a socket (a regular file or device)' % (option, path)
    if not os.access(path, os.R_OK | os.W_OK):
        return ('%s: permission denied on %s: run as a user that may write to the socket '
                '(usually root, with become: true)' % (option, path))
    return None


def _check_name(name, prefix, label, names, errors, fallback):
    """Refuse an empty or duplicate target name; remember the others in ``names`` (name -> label)."""
    if name is None:
        return
    if not name.strip():
        errors.append('%sname must not be empty (omit it to use %s)' % (prefix, fallback))
    elif name in names:
        errors.append('%sname: duplicate name %r (also in %s)' % (prefix, name, names[name]))
    else:
        names[name] = label


def check_tcp(host, port, option):
    if not host:
        return '%s.host must not be empty' % option if option else 'host must not be empty'
    if port is None or not 1 <= port <= 65535:
        return '%s must be between 1 and 65535, got %s' % ('%s.port' % option if option else 'port', port)
    return None


class BalloonModule(object):
    """AnsibleModule plus the common options, checks and exit of qmp.balloon modules."""

    def __init__(self, argument_spec, supports_check_mode=True, libvirt_only=()):
        """``libvirt_only``: the module's own options that apply to transport libvirt only (refused with qmp when set)."""
        spec = dict(COMMON_ARGUMENT_SPEC)
        spec.update(argument_spec)
        self.module = AnsibleModule(
            argument_spec=spec,
            mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE,
            required_together=COMMON_REQUIRED_TOGETHER,
            required_by=COMMON_REQUIRED_BY,
            supports_check_mode=supports_check_mode,
        )
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.transport = self.params['transport']
        self.libvirt_only = ('domain', 'all_domains', 'libvirt_uri') + tuple(libvirt_only)
        self.libvirt_uri = self.params['libvirt_uri'] if self.params['libvirt_uri'] is not None else _libvirt.DEFAULT_URI
        self.batch_error = None
        self.batch_warnings = []
        self.all_domains = False
        if self.transport == TRANSPORT_LIBVIRT:
            if not _libvirt.load():
                self.fail(missing_libvirt_message(), exception=_libvirt.LIBVIRT_IMPORT_ERROR)
        elif not HAS_QEMU_QMP:
            self.fail(missing_qemu_qmp_message(), exception=QEMU_QMP_IMPORT_ERROR)
        # targets: [] (say, an empty inventory group) is a batch of no VMs, not a single-VM call.
        self.single = self.params['targets'] is None
        self.targets = self._build_targets()

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, **kwargs)

    def _tls_settings(self, errors):
        params = self.params
        if not params['tls_ca']:
            return None
        for option in ('tls_ca', 'tls_cert', 'tls_key'):
            path = params[option]
            if path is None:
                continue
            if not os.path.isabs(path):
                errors.append('%s must be an absolute path, got %r' % (option, path))
            elif not os.path.isfile(path):
                errors.append('%s: %s is not a readable file' % (option, path))
            elif not os.access(path, os.R_OK):
                errors.append('%s: permission denied reading %s' % (option, path))
        return TLSSettings(params['tls_ca'], params['tls_cert'], params['tls_key'], params['tls_server_name'])

    def _check_batch_options(self, errors):
        params = self.params
        if math.isnan(params['timeout']) or params['timeout'] <= 0:
            errors.append('timeout must be greater than 0 seconds, got %s' % params['timeout'])
        elif params['timeout'] > MAX_TIMEOUT:
            errors.append('timeout must be at most %d seconds, got %s' % (MAX_TIMEOUT, params['timeout']))
        if params['concurrency'] < 1:
            errors.append('concurrency must be at least 1, got %s' % params['concurrency'])

    def _refuse_libvirt_options(self):
        """With transport qmp: refuse the libvirt options by name, then require socket, host or targets."""
        params = self.params
        errors = ['%s applies to transport libvirt only: set transport: libvirt, or reach QEMU with socket or host and port'
                  % option for option in self.libvirt_only if params[option] not in (None, False)]
        for index, entry in enumerate(params['targets'] or []):
            if entry.get('domain') is not None:
                errors.append('targets[%d].domain applies to transport libvirt only: set transport: libvirt, or give '
                              'targets[%d].socket or host and port' % (index, index))
        if errors:
            self.fail('Invalid input, no VM was touched: %s' % '; '.join(errors))
        # The messages AnsibleModule's required_one_of gave before transport libvirt existed.
        if all(params[option] is None for option in ('socket', 'host', 'targets')):
            self.fail('one of the following is required: socket, host, targets')
        if any(entry.get('socket') is None and entry.get('host') is None for entry in params['targets'] or []):
            self.fail('one of the following is required: socket, host found in targets')

    def _build_targets(self):
        if self.transport == TRANSPORT_LIBVIRT:
            return self._build_libvirt_targets()
        self._refuse_libvirt_options()
        params = self.params
        errors = []
        tls = self._tls_settings(errors)
        if tls and self.single and params['socket'] is not None:
            errors.append('tls_ca, tls_cert, tls_key and tls_server_name apply to TCP monitors (host and port), not to a unix socket')
        self._check_batch_options(errors)
        if self.single:
            entries = [(None, params)]
        else:
            entries = [('targets[%d]' % index, entry) for index, entry in enumerate(params['targets'])]
        targets = []
        names = {}
        endpoints = {}
        for label, entry in entries:
            prefix = '%s.' % label if label else ''
            if entry.get('socket') is not None:
                error = check_socket_path(entry['socket'], prefix + 'socket')
                endpoint = Endpoint(path=entry['socket'])
            else:
                error = check_tcp(entry.get('host'), entry.get('port'), label)
                endpoint = Endpoint(host=entry.get('host'), port=entry.get('port'), tls=tls)
            if error:
                errors.append(error)
                continue
            name = entry.get('name')
            _check_name(name, prefix, label, names, errors, "QEMU's name")
            # /d/./vm.qmp, /d//vm.qmp and a symlink are the same monitor.
            key = 'unix:%s' % os.path.realpath(endpoint.path) if endpoint.is_unix else str(endpoint)
            if key in endpoints:
                errors.append('%s: %s is listed twice (also in %s): QEMU serves one client per monitor'
                              % (label, key, endpoints[key]))
            endpoints[key] = label
            if entry.get('qom_path') is not None and not entry['qom_path'].strip():
                errors.append('%sqom_path must not be empty' % prefix)
                continue
            # QEMU resolves partial paths such as "balloon0" itself.
            targets.append(_engine.Target(endpoint, name=name, qom_path=entry.get('qom_path')))
        if errors:
            self.fail('Invalid input, no VM was touched: %s' % '; '.join(errors))
        return targets

    def _build_libvirt_targets(self):
        """Targets of transport libvirt: ``domain``, ``targets[].domain`` or ``all_domains``; checked before libvirt is touched."""
        params = self.params
        errors = []
        for option in QMP_ONLY_OPTIONS:
            if params[option] is None:
                continue
            if option.startswith('tls_'):
                errors.append('%s applies to QMP TCP monitors (transport qmp) only: with transport libvirt, choose TLS with '
                              'libvirt_uri (qemu+tls://HOST/system)' % option)
            else:
                errors.append('%s applies to transport qmp only: with transport libvirt, name the VM with domain '
                              '(or use all_domains)' % option)
        self._check_batch_options(errors)
        if not self.libvirt_uri.strip():
            errors.append('libvirt_uri must not be empty (omit it for %s)' % _libvirt.DEFAULT_URI)
        chosen = [option for option in ('domain', 'targets', 'all_domains') if params[option] not in (None, False)]
        if not chosen:
            errors.append('with transport libvirt, one of domain, targets or all_domains is required')
        elif len(chosen) > 1:
            errors.append('%s are mutually exclusive: give one domain, a list of targets, or all_domains: true'
                          % ' and '.join(chosen))
        if params['all_domains'] and params['name'] is not None:
            errors.append('name applies to a single domain, not to all_domains (each VM is named after its domain)')
        self.single = params['domain'] is not None and len(chosen) == 1
        self.all_domains = bool(params['all_domains'])
        if params['domain'] is not None:
            entries = [(None, params)]
        else:
            entries = [('targets[%d]' % index, entry) for index, entry in enumerate(params['targets'] or [])]
        targets = []
        names = {}
        domains = {}
        for label, entry in entries:
            prefix = '%s.' % label if label else ''
            misplaced = [option for option in QMP_ONLY_TARGET_OPTIONS if label and entry.get(option) is not None]
            for option in misplaced:
                errors.append('%s%s applies to transport qmp only: with transport libvirt, give %sdomain'
                              % (prefix, option, prefix))
            domain = entry.get('domain')
            if domain is None or not domain.strip():
                if not misplaced:
                    errors.append('%sdomain %s' % (prefix, 'is required with transport libvirt (a domain name or UUID)'
                                                   if domain is None else 'must not be empty'))
                continue
            name = entry.get('name')
            _check_name(name, prefix, label, names, errors, "the domain's name")
            if domain in domains:
                errors.append('%s: domain %s is listed twice (also in %s)' % (label, domain, domains[domain]))
            domains[domain] = label
            targets.append(_libvirt.LibvirtTarget(domain, name=name))
        if errors:
            self.fail('Invalid input, no VM was touched: %s' % '; '.join(errors))
        return targets

    def run(self, work, libvirt_operation=None):
        """Run the QMP ``work`` (or, with transport libvirt, ``libvirt_operation``) on every target."""
        if self.transport == TRANSPORT_LIBVIRT:
            batch = _libvirt.run_batch(self.libvirt_uri, self.targets, libvirt_operation, all_domains=self.all_domains,
                                       concurrency=self.params['concurrency'], timeout=self.params['timeout'],
                                       read_only=getattr(libvirt_operation, 'read_only', False))
            self.batch_error = batch.error
            self.batch_warnings = batch.warnings
            return batch.results
        return _engine.run_batch(self.targets, work, concurrency=self.params['concurrency'],
                                 timeout=self.params['timeout'])

    def exit(self, results, changed=False, diff=None):
        """Exit with ``vms`` (input order); fail after all VMs when any failed, unless fail_on_error is false."""
        output = dict(changed=changed, vms=results)
        if self.single and results:
            output.update((key, value) for key, value in results[0].items() if key not in _NOT_AT_TOP)
        if diff is not None and self.module._diff:
            output['diff'] = diff
        for warning in self.batch_warnings:
            self.module.warn(warning)
        if self.batch_error:
            # libvirt unreachable, hung or gone mid-batch: one message for the host, whatever fail_on_error says.
            self.fail(self.batch_error, **output)
        failed = [result for result in results if result.get('failed')]
        if failed:
            if self.params['fail_on_error']:
                if self.single:
                    self.fail(failed[0]['msg'], **output)
                self.fail('%d of %d VMs failed: %s' % (len(failed), len(results), '; '.join(r['msg'] for r in failed)), **output)
            for result in failed:
                self.module.warn(result['msg'])
        self.module.exit_json(**output)
