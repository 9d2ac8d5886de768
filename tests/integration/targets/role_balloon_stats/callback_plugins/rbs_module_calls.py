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
requirements:
  - enabled in callbacks_enabled
"""

# Actions whose work is done on the controller: no module goes to the host.
CONTROLLER_ACTIONS = frozenset((
    'add_host', 'assert', 'debug', 'fail', 'group_by', 'import_role', 'import_tasks',
    'include_role', 'include_tasks', 'include_vars', 'meta', 'pause', 'set_fact', 'set_stats',
    'validate_argument_spec',
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
        if not self.path:
            return
        with open(self.path + '.tmp', 'w', encoding='utf-8') as stream:
            json.dump(self.calls, stream, indent=1, sort_keys=True)
        os.replace(self.path + '.tmp', self.path)

    def _record(self, result):
        if not self.path or self.play is None:
            return
        task = result._task  # pylint: disable=protected-access
        action = getattr(task, 'resolved_action', None) or task.action
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
