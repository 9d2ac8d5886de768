# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Test helper: every task result of every host, per play (role_balloon_stats_prepare).

runme.sh enables it and names the file it writes in PREP_RESULTS; the file is rewritten after
every result, so a later task of the same run reads it with a file lookup (prep_results in
inventory.yml):

    {PLAY NAME: {HOST: [{"task": NAME, "action": FQCN, "module": BOOL, "changed": BOOL,
                         "skipped": BOOL, "failed": BOOL, "msg": STR}, ...]}}

``module`` is true when the task called a module on the host (the action is not one that runs
on the controller only: set_fact, assert, debug, include_*, ...). A play name seen before gets a
suffix `` #2``.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: prep_results
type: aggregate
short_description: Record every task result per play and host (role_balloon_stats_prepare test helper)
description:
  - Writes the file named by the environment variable E(PREP_RESULTS) after every task result.
requirements:
  - enabled in callbacks_enabled
"""

CONTROLLER_ACTIONS = frozenset((
    'add_host', 'assert', 'debug', 'fail', 'group_by', 'import_role', 'import_tasks',
    'include_role', 'include_tasks', 'include_vars', 'meta', 'pause', 'set_fact', 'set_stats',
    'validate_argument_spec',
))


class CallbackModule(CallbackBase):
    """Record, per play and host, each task's action, whether it called a module, and its status."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'prep_results'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = os.environ.get('PREP_RESULTS')
        self.play = None
        self.results = {}

    def v2_playbook_on_play_start(self, play):
        name = self.play = play.get_name()
        number = 2
        while self.play in self.results:
            self.play = '%s #%d' % (name, number)
            number += 1
        self.results[self.play] = {}
        self._dump()

    def _dump(self):
        if not self.path:
            return
        with open(self.path + '.tmp', 'w', encoding='utf-8') as stream:
            json.dump(self.results, stream, indent=1, sort_keys=True)
        os.replace(self.path + '.tmp', self.path)

    def _record(self, result, status):
        if not self.path or self.play is None:
            return
        task = result._task  # pylint: disable=protected-access
        action = getattr(task, 'resolved_action', None) or task.action
        answer = result._result  # pylint: disable=protected-access
        msg = answer.get('msg')
        self.results[self.play].setdefault(result._host.get_name(), []).append({  # pylint: disable=protected-access
            'task': task.name,
            'action': action,
            # balloon_stats_facts given no VM runs no module (queried_host false)
            'module': (status != 'skipped' and action.rsplit('.', 1)[-1] not in CONTROLLER_ACTIONS
                       and answer.get('queried_host') is not False),
            'changed': bool(answer.get('changed')),
            'skipped': status == 'skipped',
            'failed': status == 'failed',
            'msg': msg if isinstance(msg, str) else None,
        })
        self._dump()

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')
