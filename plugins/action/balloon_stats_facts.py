# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of qmp.balloon.balloon_stats_facts (documented in plugins/modules/balloon_stats_facts.py).

One task per hypervisor: balloon_stats_info runs on the host (one module call, with the task's
interpreter), and the fact ``balloon_stats`` is built here on the controller, in Python
(plugins/plugin_utils/_facts.py): records with compliance, rates against the previous fact,
pressure, the audit and the hypervisor's outcome.

With ``role`` (the role balloon_stats's first task per host) it reads nothing: it returns the role's
plan for this host (plugins/plugin_utils/_role_plan.py).
"""

from __future__ import annotations

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

from ansible_collections.qmp.balloon.plugins.module_utils._options import COMMON_ARGUMENT_SPEC
from ansible_collections.qmp.balloon.plugins.plugin_utils import _facts, _role_plan
from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain

INFO_MODULE = 'qmp.balloon.balloon_stats_info'


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def _libvirt_sockets_found(self, paths):
        """Which of ``paths`` exist on the host (a dangling symlink counts): a shell loop, not a module."""
        result = self._low_level_execute_command(_facts.libvirt_lookup_script(paths), sudoable=True)
        if result.get('rc') != 0:
            raise AnsibleError('could not look for libvirt\'s sockets on the host (%s)'
                               % ((result.get('stderr') or '').strip() or 'exit status %s' % result.get('rc')))
        return [line for line in (result.get('stdout') or '').splitlines() if line]

    def _role_plan(self, role, task_vars):
        """The role's plan for this host: its checks, one command on the host (the probe of prepare and
        the look for libvirt's sockets, as needed), then the plan."""
        role = plain(role)
        missing = [key for key in _role_plan.KEYS if key not in role]
        if missing or role.get('entry') not in _role_plan.ENTRIES:
            return {'failed': True, 'msg': 'role: the role balloon_stats passes %s; got entry %s without %s'
                    % (', '.join(_role_plan.KEYS), role.get('entry'), ', '.join(missing) or 'nothing')}
        hostname = task_vars.get('inventory_hostname')
        directory = _role_plan.wheel_dir(role, task_vars.get('playbook_dir'))
        taken = _role_plan.steps(role)
        if role['entry'] in ('main', 'gather', 'export'):
            problems = _role_plan.threshold_problems(role)
            if problems:
                return {'failed': True, 'msg': _role_plan.THRESHOLDS_INVALID + '; '.join(problems),
                        'check': _role_plan.CHECKS['thresholds']}
        if taken['reads']:
            problems = _role_plan.selection_problems(role, hostname)
            if problems:
                return {'failed': True, 'msg': problems[0], 'check': _role_plan.CHECKS['selection']}
        problems = _role_plan.prepare_problems(role, directory)
        if problems:
            return {'failed': True, 'msg': '; '.join(problems), 'check': _role_plan.CHECKS['prepare']}

        configured = task_vars.get('ansible_python_interpreter')
        if configured is not None:
            configured = self._templar.template(configured)
        else:
            configured = C.config.get_config_value('INTERPRETER_PYTHON', variables=task_vars)
        discovered = (task_vars.get('ansible_facts') or {}).get('discovered_interpreter_python')
        python = _role_plan.host_python(configured, discovered)
        # under --tags report (say) no step reads the VMs: nothing is run on the host
        selected = _role_plan.tag_selected(('prepare', 'configure', 'gather', 'export'), task_vars.get('ansible_run_tags'),
                                           task_vars.get('ansible_skip_tags'))
        probe = _role_plan.needs_probe(role, taken) and (selected or role['entry'] == 'prepare')
        lookup = _role_plan.needs_lookup(role, taken) and selected
        found, facts = [], None
        if probe or lookup:
            result = self._low_level_execute_command(_role_plan.host_command(role, python, lookup, probe), sudoable=True)
            found, facts = _role_plan.parse_host_output(result.get('stdout') or '', probe)
            if probe and facts is None:
                why = _role_plan.python_failure(python, hostname, result.get('rc'), result.get('stderr'))
                return {'failed': True, 'msg': why, 'check': _role_plan.CHECKS['python']}
            if lookup and not probe and result.get('rc') != 0:
                raise AnsibleError('could not look for libvirt\'s sockets on the host (%s)'
                                   % ((result.get('stderr') or '').strip() or 'exit status %s' % result.get('rc')))
        plan = _role_plan.plan(role, taken, _role_plan.choose_transport(role, found), facts, self._task.check_mode,
                               configured, directory)
        if plan['no_vm_given']:
            return {'failed': True, 'msg': _role_plan.no_vm_given_message(hostname), 'check': _role_plan.CHECKS['no_vm']}
        result = dict(plan, changed=False, queried_host=False)
        if plan['check_pending']:
            result['msg'] = _role_plan.check_pending_line(plan)
        return result

    def run(self, tmp=None, task_vars=None):
        super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        del tmp

        spec = dict(COMMON_ARGUMENT_SPEC)
        spec.update(_facts.ARGUMENT_SPEC)
        validator = ArgumentSpecValidator(spec)
        validation = validator.validate(self._task.args)
        if validation.error_messages:
            return {'failed': True, 'msg': _facts.INVALID + '; '.join(
                ('unsupported parameters: ' if isinstance(error, UnsupportedError) else '') + error.msg
                for error in validation.errors.errors)}
        params = validation.validated_parameters
        if params['role'] is not None:
            result = self._role_plan(params['role'], task_vars)
            result['queried_host'] = False   # never a module call, also when it fails
            return result
        hypervisor = params['hypervisor'] or task_vars.get('inventory_hostname')
        previous = (task_vars.get('ansible_facts') or {}).get('balloon_stats')
        problems = _facts.option_problems(params, self._task.args)
        if problems:
            return {'failed': True, 'msg': _facts.INVALID + '; '.join(problems)}
        if params['failure']:
            fact = _facts.record_failure(previous, params['failure'], hypervisor)
            return {'changed': False, 'ansible_facts': {'balloon_stats': fact}, 'msg': _facts.verdict(fact),
                    'outcome': fact['outcome'], 'queried_host': False}
        # only what the task gave goes to the module (AnsibleModule counts a key given as None as given);
        # an empty list is none given (the role passes its empty selections as they are)
        given = dict((key, params[key]) for key in self._task.args
                     if key in COMMON_ARGUMENT_SPEC and params[key] not in (None, []))
        if given.get('targets'):
            # the validator fills every suboption of a target: keep those the entry gave
            given['targets'] = [dict((key, value) for key, value in target.items() if value is not None)
                                for target in given['targets']]

        try:
            plan = _facts.plan(params, given, self._libvirt_sockets_found)
        except AnsibleError as exc:
            return {'failed': True, 'msg': str(exc)}

        queried = plan['module_args'] is not None
        if not queried:
            read = {'vms': []}
        else:
            read = self._execute_module(module_name=INFO_MODULE, module_args=plan['module_args'], task_vars=task_vars)
            if read.get('failed') or read.get('unreachable'):
                return read

        try:
            fact = _facts.build_fact(read, params, plan, hypervisor, previous)
        except AnsibleError as exc:
            return {'failed': True, 'msg': str(exc)}
        return {'changed': False, 'ansible_facts': {'balloon_stats': fact}, 'msg': _facts.verdict(fact),
                'outcome': fact['outcome'], 'summary': fact['summary'], 'empty_globs': fact['empty_globs'],
                'queried_host': queried,
                'warnings': read.get('warnings') or []}
