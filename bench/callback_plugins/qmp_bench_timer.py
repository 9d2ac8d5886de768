# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark callback: wall-clock times of every task and every host result, as JSON.

Not part of the collection (it lives in bench/, outside plugins/). Enabled by bench/run.py with
ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=qmp_bench_timer
and QMP_BENCH_TIMINGS=FILE. Times are time.time() (epoch seconds) so that they can be put on the
same axis as the module processes' own records (bench/probe/sitecustomize.py).

A task's duration is from v2_playbook_on_task_start (the strategy is about to queue it) to the
last host result: the task's own cost, without the playbook's start-up (parsing, inventory,
plugin loading) that ansible-playbook pays once.
"""

from __future__ import annotations

DOCUMENTATION = r'''
name: qmp_bench_timer
type: aggregate
short_description: record task and host result times for bench/run.py
description:
  - Writes one JSON document with the start of every task and the time of every host result to
    the file named by the environment variable E(QMP_BENCH_TIMINGS).
requirements:
  - enabled with ANSIBLE_CALLBACKS_ENABLED=qmp_bench_timer
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'qmp_bench_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get('QMP_BENCH_TIMINGS')
        self._started = time.time()
        self._tasks = []
        self._current = None
        self._play = None

    def _task_record(self, task):
        for record in reversed(self._tasks):
            if record['uuid'] == task._uuid:
                return record
        return self._current

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._current = {'uuid': task._uuid, 'name': task.get_name(), 'action': task.action, 'start': time.time(),
                         'hosts': {}, 'items': 0, 'play': self._play}
        self._tasks.append(self._current)

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_start(self, host, task):
        record = self._task_record(task)
        if record is not None:
            record['hosts'].setdefault(host.get_name(), {})['start'] = time.time()

    def _done(self, result, status):
        record = self._task_record(result._task)
        if record is None:
            return
        host = record['hosts'].setdefault(result._host.get_name(), {})
        host['end'] = time.time()
        host['status'] = status
        res = result._result if isinstance(getattr(result, '_result', None), dict) else {}
        host['changed'] = bool(res.get('changed'))
        vms = failed = 0
        for part in [res] + [item for item in res.get('results', []) if isinstance(item, dict)]:
            entries = part.get('vms')
            if isinstance(entries, list):
                vms += len(entries)
                failed += sum(1 for entry in entries if isinstance(entry, dict) and entry.get('failed'))
        if vms:
            host['vms'] = vms
            host['vms_failed'] = failed
        if status != 'ok' and res.get('msg'):
            host['msg'] = str(res.get('msg'))[:500]

    def v2_runner_on_ok(self, result):
        self._done(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._done(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._done(result, 'unreachable')

    def v2_runner_item_on_ok(self, result):
        record = self._task_record(result._task)
        if record is not None:
            record['items'] += 1
            record.setdefault('item_ends', []).append(time.time())

    def v2_runner_item_on_failed(self, result):
        self.v2_runner_item_on_ok(result)

    def v2_playbook_on_stats(self, stats):
        for record in self._tasks:
            ends = [host['end'] for host in record['hosts'].values() if 'end' in host]
            record['end'] = max(ends) if ends else None
            record['duration'] = (record['end'] - record['start']) if ends else None
            record['failed'] = sorted(name for name, host in record['hosts'].items() if host.get('status') in ('failed', 'unreachable'))
        if self._path:
            with open(self._path, 'w', encoding='utf-8') as handle:
                json.dump({'started': self._started, 'ended': time.time(), 'tasks': self._tasks}, handle)
