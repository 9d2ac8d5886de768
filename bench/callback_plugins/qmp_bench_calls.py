# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark callback: the module calls each host makes in one ansible-playbook run, as JSON.

Not part of the collection (it lives in bench/, outside plugins/). Enabled by bench/users.py with
ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=qmp_bench_calls and
QMP_BENCH_CALLS=FILE. It counts as the role_balloon_stats integration target does
(tests/integration/targets/role_balloon_stats/callback_plugins/rbs_module_calls.py): a module call
is a task result (or a loop item) that ran a module on the host. Actions that run on the
controller only (set_fact, assert, include_role, the report action, ...) are left out, and so is a
balloon_stats_facts result with ``queried_host`` false (it ran no module). Calls of a delegated
task are counted apart (they ran on the delegate, not on the host).

The file: {"hosts": {HOST: {ACTION: N, ...}}, "delegated": {ACTION: N}, "results": {STATUS: N},
"read": {HOST: {"vms": N, "unreachable": N}}} (read: from the fact balloon_stats of a
balloon_stats_facts result, or the vms list of a balloon_stats_info result), written at the end.
"""

from __future__ import annotations

DOCUMENTATION = r'''
name: qmp_bench_calls
type: aggregate
short_description: count module calls per host for bench/users.py
description:
  - Writes one JSON document with the module calls of every host to the file named by the
    environment variable E(QMP_BENCH_CALLS).
requirements:
  - enabled with ANSIBLE_CALLBACKS_ENABLED=qmp_bench_calls
'''

import json
import os

from ansible.plugins.callback import CallbackBase

# Actions whose work is done on the controller: no module goes to the host.
CONTROLLER_ACTIONS = frozenset((
    'add_host', 'assert', 'debug', 'fail', 'group_by', 'import_role', 'import_tasks', 'include_role', 'include_tasks',
    'include_vars', 'meta', 'pause', 'set_fact', 'set_stats', 'validate_argument_spec', 'balloon_stats_report',
))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'qmp_bench_calls'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get('QMP_BENCH_CALLS')
        self._hosts = {}
        self._delegated = {}
        self._results = {}
        self._read = {}

    def _record(self, result, status):
        self._results[status] = self._results.get(status, 0) + 1
        task = result._task  # pylint: disable=protected-access
        host = result._host.get_name()  # pylint: disable=protected-access
        action = getattr(task, 'resolved_action', None) or task.action
        answer = result._result if isinstance(getattr(result, '_result', None), dict) else {}  # pylint: disable=protected-access
        self._hosts.setdefault(host, {})
        self._note_read(host, action, answer)
        if action.rsplit('.', 1)[-1] in CONTROLLER_ACTIONS:
            return
        if isinstance(answer.get('results'), list):
            calls = len([item for item in answer['results'] if isinstance(item, dict) and not item.get('skipped')])
        elif answer.get('queried_host') is False:
            calls = 0
        else:
            calls = 0 if answer.get('skipped') else 1
        if not calls:
            return
        counts = self._delegated if task.delegate_to else self._hosts[host]
        counts[action] = counts.get(action, 0) + calls

    def _note_read(self, host, action, answer):
        if not action.startswith('qmp.balloon.'):
            return
        fact = (answer.get('ansible_facts') or {}).get('balloon_stats')
        if isinstance(fact, dict) and isinstance(fact.get('summary'), dict):
            self._read[host] = {'vms': fact['summary'].get('vms'), 'unreachable': fact['summary'].get('unreachable')}
        elif isinstance(answer.get('vms'), list):
            self._read[host] = {'vms': len(answer['vms']),
                                'unreachable': sum(1 for entry in answer['vms'] if isinstance(entry, dict) and entry.get('failed'))}

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._results['unreachable'] = self._results.get('unreachable', 0) + 1

    def v2_playbook_on_stats(self, stats):
        if self._path:
            with open(self._path, 'w', encoding='utf-8') as handle:
                json.dump({'hosts': self._hosts, 'delegated': self._delegated, 'results': self._results, 'read': self._read},
                          handle, sort_keys=True)
