# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Test helper: count the module calls each host makes, per play.

runme.sh enables it (ANSIBLE_CALLBACK_PLUGINS, ANSIBLE_CALLBACKS_ENABLED) and names the file
it writes in RBS_MODULE_CALLS; without that variable it does nothing. After every task result
the file is rewritten, so a later task of the same run can read it with a file lookup:

    {PLAY NAME: {HOST: [{"task": NAME, "action": FQCN, "calls": N, "delegated": BOOL}, ...]}}

A module call is a task (or a loop item) that ran, not skipped, with an action that needs
the host: actions that run on the controller only (set_fact, assert, include_tasks, ...)
are left out, and so is a balloon_stats_facts task that ran no module (``queried_host`` false). A loop counts one call per item that ran.

The report action qmp.balloon.balloon_stats_report runs on the controller only (no module call);
each of its results goes to the file RBS_REPORT_RESULTS instead, when set, so that runme.sh can
count the runs that wrote the report (``files``) - under strategy free run_once is not honoured,
and a registered result of a run_once task is copied to every host, so no variable can tell:

    [{"play": PLAY NAME, "host": HOST, "files": [PATH, ...], "changed": BOOL}, ...]
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: rbs_module_calls
type: aggregate
short_description: Count module calls per host and play (role_balloon_stats test helper)
description:
  - Writes the file named by the environment variable E(RBS_MODULE_CALLS) after every task result.
  - Writes the results of qmp.balloon.balloon_stats_report to the file named by E(RBS_REPORT_RESULTS).
requirements:
  - enabled in callbacks_enabled
"""

# Actions whose work is done on the controller: no module goes to the host.
CONTROLLER_ACTIONS = frozenset((
    'add_host', 'assert', 'debug', 'fail', 'group_by', 'import_role', 'import_tasks',
    'include_role', 'include_tasks', 'include_vars', 'meta', 'pause', 'set_fact', 'set_stats',
    'validate_argument_spec', 'balloon_stats_report',
))


class CallbackModule(CallbackBase):
    """Record, per play and host, the tasks that called a module and how many times."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'rbs_module_calls'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = os.environ.get('RBS_MODULE_CALLS')
        self.reports_path = os.environ.get('RBS_REPORT_RESULTS')
        self.reports = []
        self.play = None
        self.calls = {}

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name()
        # a play name seen before gets a suffix: every play is counted on its own
        name, number = self.play, 2
        while self.play in self.calls:
            self.play = '%s #%d' % (name, number)
            number += 1
        self.calls[self.play] = {}
        self._dump()

    def _dump(self):
        for path, data in ((self.path, self.calls), (self.reports_path, self.reports)):
            if not path:
                continue
            with open(path + '.tmp', 'w', encoding='utf-8') as stream:
                json.dump(data, stream, indent=1, sort_keys=True)
            os.replace(path + '.tmp', path)

    def _record_report(self, result):
        """A result of the report action: which host ran it and the files it wrote."""
        answer = result._result  # pylint: disable=protected-access
        if answer.get('skipped'):
            return
        self.reports.append({'play': self.play, 'host': result._host.get_name(),  # pylint: disable=protected-access
                             'files': answer.get('files') or [], 'changed': bool(answer.get('changed'))})
        self._dump()

    def _record(self, result):
        if not self.path or self.play is None:
            return
        task = result._task  # pylint: disable=protected-access
        action = getattr(task, 'resolved_action', None) or task.action
        if action.rsplit('.', 1)[-1] == 'balloon_stats_report':
            self._record_report(result)
        if action.rsplit('.', 1)[-1] in CONTROLLER_ACTIONS:
            return
        answer = result._result  # pylint: disable=protected-access
        if isinstance(answer.get('results'), list):
            calls = len([item for item in answer['results'] if not item.get('skipped')])
        elif answer.get('queried_host') is False:
            calls = 0  # balloon_stats_facts given no VM: the action ran no module on the host
        else:
            calls = 0 if answer.get('skipped') else 1
        if calls == 0:
            return
        host = result._host.get_name()  # pylint: disable=protected-access
        self.calls[self.play].setdefault(host, []).append({
            'task': task.get_name(),
            'action': action,
            'calls': calls,
            'delegated': bool(task.delegate_to),
        })
        self._dump()

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result)
