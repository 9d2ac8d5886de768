# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every qmp.balloon module shares: the AnsibleModule glue.

PRIVATE: not part of the collection's public API.

A module builds a :class:`BalloonModule`, which owns the common options (``_options``,
documented once in the ``qmp.balloon._common`` doc fragment), refuses bad input before
any VM is touched (``_targets``), runs one operation (``_operations``) through the
transport's executor and exits with ``vms`` in input order (plus the single VM's fields
at the top level).
"""

from __future__ import annotations

import importlib.util
import platform
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qmp.balloon.plugins.module_utils import _targets
from ansible_collections.qmp.balloon.plugins.module_utils._options import (
    COMMON_ARGUMENT_SPEC,
    COMMON_MUTUALLY_EXCLUSIVE,
    COMMON_REQUIRED_BY,
    COMMON_REQUIRED_TOGETHER,
    LIBVIRT_ONLY_OPTIONS,
    TRANSPORT_LIBVIRT,
    invalid_input,
    libvirt_uri,
)

# The engine of each transport is imported only when a task uses it (function-level imports
# below; AnsiballZ still puts them in the payload): a task with transport qmp imports no libvirt
# code (not even _libvirt) and no xml.etree, and one with no VM at all (targets: [], a glob
# allowed to match nothing) no asyncio, ssl or qemu.qmp either: 35-40 ms of every such task
# (docs/performance.md, "Fixed cost of a task").

#: None until checked (qemu_qmp_importable); then whether qemu.qmp could be imported.
HAS_QEMU_QMP = None
#: The traceback of the failed import, for fail_json's ``exception``.
QEMU_QMP_IMPORT_ERROR = None

#: Keys of a VM's result that are not copied to the top level of a single-VM call.
_NOT_AT_TOP = ('changed', 'failed', 'msg')

#: The venv that the role's prepare entry point makes by default (balloon_stats_venv).
PREPARE_VENV = '/opt/qmp-balloon/venv'


def _this_python():
    """'The Python PATH on this host (node name NODE)': the interpreter running this module and the host it runs on."""
    return 'The Python %s on this host (node name %s)' % (sys.executable or 'python', platform.node() or 'unknown')


def qemu_qmp_importable(load):
    """Whether this Python has qemu.qmp: imported when ``load``, else only found (not imported: it brings asyncio).

    A qemu.qmp that cannot even be found is imported anyway, for the traceback of the
    failure (QEMU_QMP_IMPORT_ERROR), so that it fails the task exactly as an import would.
    """
    global HAS_QEMU_QMP, QEMU_QMP_IMPORT_ERROR  # pylint: disable=global-statement
    if HAS_QEMU_QMP is None and (load or not _found('qemu.qmp')):
        from ansible_collections.qmp.balloon.plugins.module_utils import _qmp  # pylint: disable=import-outside-toplevel
        HAS_QEMU_QMP, QEMU_QMP_IMPORT_ERROR = _qmp.HAS_QEMU_QMP, _qmp.QEMU_QMP_IMPORT_ERROR
    return HAS_QEMU_QMP is not False


def _found(name):
    """Whether the module ``name`` can be found on sys.path (its parent packages are imported, not itself)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_qemu_qmp_message():
    """One sentence: which Python on which host lacks qemu.qmp, and the two ways out."""
    from ansible_collections.qmp.balloon.plugins.module_utils._qmp import QEMU_QMP_VERSION  # pylint: disable=import-outside-toplevel
    return ('%s cannot import qemu.qmp==%s, which this module needs: run the role qmp.balloon.balloon_stats with '
            'tasks_from: prepare on this host (include_role in a play, or ad hoc: ansible HOST -b -m ansible.builtin.include_role '
            "-a 'name=qmp.balloon.balloon_stats tasks_from=prepare'), which makes the venv %s with it, "
            'or point ansible_python_interpreter at a Python that has it (for example '
            '-e ansible_python_interpreter=%s/bin/python)' % (_this_python(), QEMU_QMP_VERSION, PREPARE_VENV, PREPARE_VENV))


def missing_libvirt_message():
    """One sentence: which Python on which host lacks libvirt-python, and the ways out."""
    from ansible_collections.qmp.balloon.plugins.module_utils import _libvirt  # pylint: disable=import-outside-toplevel
    return ('%s cannot import %s, which transport libvirt needs: install the distribution\'s binding '
            '(python3-libvirt on Debian, Ubuntu and Proxmox VE) and run the modules with the host\'s Python or with a venv made '
            'with --system-site-packages, which sees it (the role\'s prepare entry point makes %s that way: '
            '-e ansible_python_interpreter=%s/bin/python)' % (_this_python(), _libvirt.LIBVIRT_LIBRARY, PREPARE_VENV, PREPARE_VENV))


class _AnsibleModule(AnsibleModule):
    """AnsibleModule whose argument checks say how to write ``targets`` when given strings instead of dicts.

    Core's own message for ``targets: [/run/vm1.qmp]`` is "dictionary requested, could not
    parse JSON or key=value"; while the arguments are being checked, a fail_json gets the
    sentence of ``_targets.targets_as_strings`` instead.
    """

    def __init__(self, *args, **kwargs):
        self._given = {}
        self._checking_arguments = True
        super().__init__(*args, **kwargs)
        self._checking_arguments = False

    def _load_params(self):
        super()._load_params()
        # The checks replace a list they cannot convert: keep what was given.
        self._given = {'targets': (self.params or {}).get('targets')}

    def fail_json(self, msg, **kwargs):  # pylint: disable=arguments-differ
        if getattr(self, '_checking_arguments', False):
            msg = _targets.targets_as_strings(getattr(self, '_given', None)) or msg
        super().fail_json(msg=msg, **kwargs)


class BalloonModule(object):
    """AnsibleModule plus the common options, checks, executor and exit of qmp.balloon modules."""

    def __init__(self, argument_spec, supports_check_mode=True, libvirt_only=()):
        """``libvirt_only``: the module's own options that apply to transport libvirt only (refused with qmp when set)."""
        spec = dict(COMMON_ARGUMENT_SPEC)
        spec.update(argument_spec)
        self.module = _AnsibleModule(
            argument_spec=spec,
            mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE,
            required_together=COMMON_REQUIRED_TOGETHER,
            required_by=COMMON_REQUIRED_BY,
            supports_check_mode=supports_check_mode,
        )
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.transport = self.params['transport']
        self.batch_error = None
        self.batch_warnings = []
        if self.transport == TRANSPORT_LIBVIRT:
            from ansible_collections.qmp.balloon.plugins.module_utils import _libvirt  # pylint: disable=import-outside-toplevel
            if not _libvirt.load():
                self.fail(missing_libvirt_message(), exception=_libvirt.LIBVIRT_IMPORT_ERROR)
        elif not qemu_qmp_importable(load=False):
            self.fail(missing_qemu_qmp_message(), exception=QEMU_QMP_IMPORT_ERROR)
        try:
            selection = _targets.build(self.params, LIBVIRT_ONLY_OPTIONS + tuple(libvirt_only))
        except _targets.InputError as exc:
            self.fail(str(exc))
        else:
            self.targets = selection.targets
            self.single = selection.single
            self.empty_globs = selection.empty_globs
            if self.transport == TRANSPORT_LIBVIRT:
                from ansible_collections.qmp.balloon.plugins.module_utils._libvirt_executor import (  # pylint: disable=import-outside-toplevel
                    LibvirtExecutor,
                )
                self.executor = LibvirtExecutor(libvirt_uri(self.params), all_domains=selection.all_domains)
            elif self.targets:
                if not qemu_qmp_importable(load=True):
                    self.fail(missing_qemu_qmp_message(), exception=QEMU_QMP_IMPORT_ERROR)
                from ansible_collections.qmp.balloon.plugins.module_utils._qmp_executor import (  # pylint: disable=import-outside-toplevel
                    QMPExecutor,
                )
                self.executor = QMPExecutor()
            else:
                # No VM (targets: [], or globs allowed to match nothing): no event loop to run.
                self.executor = None

    @property
    def diff_words(self):
        """What the transport calls the polling interval in a diff (None with no VM: no diff to word)."""
        return self.executor.diff_words if self.executor is not None else None

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, **kwargs)

    def refuse(self, errors):
        """Fail before any VM is touched, listing every input error."""
        self.fail(invalid_input(errors))

    def run(self, operation):
        """Run ``operation`` (an ``_operations.Operation``) on every target; the results in input order."""
        if self.executor is None:
            batch, self.batch_error = [], None
        else:
            batch = self.executor.run_batch(self.targets, operation, self.params['concurrency'], self.params['timeout'])
            self.batch_error = batch.error
        self.batch_warnings = operation.warnings()
        return list(batch)

    def exit(self, results, changed=False, diff=None):
        """Exit with ``vms`` (input order); fail after all VMs when any failed, unless fail_on_error is false."""
        message = None
        if any(result.get('failed') for result in results):
            from ansible_collections.qmp.balloon.plugins.module_utils._batch import failure_summary  # pylint: disable=import-outside-toplevel
            message = failure_summary(results)
        for result in results:
            result.pop('_cause', None)
        output = dict(changed=changed, vms=results)
        if getattr(self, 'empty_globs', None) is not None:
            output['empty_globs'] = self.empty_globs
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
                self.fail(message, **output)
            for result in failed:
                self.module.warn(result['msg'])
        self.module.exit_json(**output)
