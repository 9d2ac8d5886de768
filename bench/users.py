# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role as users run it (issue 23): whole ansible-playbook processes on a fake fleet, nothing warmed up.

One fake server serves HOSTS x VMS endpoints; each inventory host (ansible_connection=local,
ansible_python_interpreter = the controller's Python, which has the pinned qemu.qmp) gets a
directory of symlinks to its VMS sockets as balloon_stats_socket_globs (bench/fleet.py's layout).
Each configuration is its own playbook, and each measured run a fresh ansible-playbook process
timed from outside (wall clock, process start to exit):

  bare info          one qmp.balloon.balloon_stats_info task, sockets: the host's glob
  role gather        include_role tasks_from: gather (its plan runs prepare's probe first, as for a
                     user: balloon_stats_prepare auto finds qemu.qmp in the host Python, makes no venv)
  bare two           balloon_stats_polling (interval: balloon_stats_interval) then balloon_stats_info
  role main          roles: [qmp.balloon.balloon_stats] with balloon_stats_report: false
  role main, report  the same with the report (balloon_stats_report: true, the default)

The role is driven only through its public interface (the role name, tasks_from, the variables
of defaults/main.yml), so the bench follows any reshaping of its task files.

Rounds: every configuration once per round, the order reversed every other round (a role run and
its bare pair are neighbours either way); one unmeasured run of "role main, report" on the first
hypervisor comes first (disk cache, the controller's .pyc files as after any first run). Each
ratio is judged on the median of its per-round ratios (the two processes of a round run within
a minute of each other); the medians and the best of the rounds are printed beside it.

Module calls per host: bench/callback_plugins/qmp_bench_calls.py in every run (a module call is one
that ran a module on the host; balloon_stats_facts with queried_host false is none): the
collection's modules against 1 (gather) and 2 (main), any other module (prepare's probe) against
at most 1. The timer callback (bench/callback_plugins/qmp_bench_timer.py) splits each process into
its start-up (to the first task), its tasks and its exit, for the breakdown printed on a miss.
No module probe runs here: the modules run as users run them.
"""

from __future__ import annotations

import json
import os

from fleet import host_dirs
from runner import INTERVAL, FakeFleetProcess, log, median, ratio

CONFIGS = ('bare info', 'role gather', 'bare two', 'role main', 'role main, report')
# (role configuration, bare configuration, at most this ratio, the collection's module calls per host expected)
COMPARISONS = (('role gather', 'bare info', 1.3, 1), ('role main', 'bare two', 1.3, 2), ('role main, report', 'bare two', 1.5, 2))
# prepare (balloon_stats_prepare auto, the Python already has qemu.qmp) may add this many module calls per host.
PREPARE_CALLS = 1

PLAYBOOKS = {
    'bare info': '''---
- name: bare info
  hosts: hypervisors
  gather_facts: false
  tasks:
    - name: Read the stats of every VM
      qmp.balloon.balloon_stats_info:
        sockets: "{{ balloon_stats_socket_globs }}"
''',
    'role gather': '''---
- name: role gather
  hosts: hypervisors
  gather_facts: false
  tasks:
    - name: Gather the stats of every VM
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
        tasks_from: gather
''',
    'bare two': '''---
- name: bare two
  hosts: hypervisors
  gather_facts: false
  tasks:
    - name: Set the polling interval of every VM
      qmp.balloon.balloon_stats_polling:
        sockets: "{{ balloon_stats_socket_globs }}"
        interval: "{{ balloon_stats_interval }}"
    - name: Read the stats of every VM
      qmp.balloon.balloon_stats_info:
        sockets: "{{ balloon_stats_socket_globs }}"
''',
    'role main': '''---
- name: role main
  hosts: hypervisors
  gather_facts: false
  roles:
    - role: qmp.balloon.balloon_stats
      balloon_stats_report: false
''',
    'role main, report': '''---
- name: role main, report
  hosts: hypervisors
  gather_facts: false
  roles:
    - role: qmp.balloon.balloon_stats
      balloon_stats_report: true
''',
}


def _inventory(work, sockets, hosts, per_host, python):
    lines = ['[hypervisors]']
    for index, directory in enumerate(host_dirs(work, sockets, hosts, per_host)):
        lines.append("hv%03d balloon_stats_socket_globs='[\"%s/*.qmp\"]'" % (index, directory))
    # The role's report and (never made: the Python has qemu.qmp) venv inside the work directory.
    lines += ['', '[hypervisors:vars]', 'ansible_connection=local', 'ansible_python_interpreter=%s' % python,
              'balloon_stats_interval=%d' % INTERVAL, 'balloon_stats_venv=%s' % os.path.join(work, 'users-venv'),
              'balloon_stats_report_dir=%s' % os.path.join(work, 'users-report'), '']
    return '\n'.join(lines)


# Actions that run on the controller: a task of one of these ran no module on a host.
CONTROLLER_ACTIONS = ('include_role', 'include_tasks', 'import_tasks', 'set_fact', 'assert', 'debug', 'fail', 'validate_argument_spec',
                      'balloon_stats_report', 'meta')


def _split(run):
    """The whole process in three: start-up (to the first task), tasks (to the last result), exit; with
    the tasks that ran a module on a host and the others (controller-side, skipped) summed apart."""
    tasks = [task for task in run['tasks'] if task.get('start') is not None and task['hosts']]
    ends = [task['end'] for task in tasks if task.get('end') is not None]
    if not tasks or not ends:
        return None
    first, last = min(task['start'] for task in tasks), max(ends)
    module_tasks = [task for task in tasks if task['action'].rsplit('.', 1)[-1] not in CONTROLLER_ACTIONS
                    and any(data.get('status') not in ('skipped', None) for data in task['hosts'].values())]
    return {'startup_s': first - run['started_at'], 'tasks_s': last - first, 'exit_s': run['ended_at'] - last,
            'tasks': len(tasks), 'module_tasks': len(module_tasks),
            'module_tasks_s': sum(task.get('duration') or 0 for task in module_tasks),
            'other_tasks_s': sum(task.get('duration') or 0 for task in tasks if task not in module_tasks),
            'host_results': sum(len(task['hosts']) for task in tasks),
            'task_rows': [{'name': task['name'], 'action': task['action'], 'duration': task.get('duration'),
                           'skipped': sum(1 for data in task['hosts'].values() if data.get('status') == 'skipped'),
                           'hosts': len(task['hosts'])} for task in tasks]}


def _calls(run, hosts):
    """Module calls per host from the call counter: {'qmp': {action: per host}, 'other': {action: per host}, totals}."""
    counted = run.get('calls') or {}
    per_action = {}
    for actions in (counted.get('hosts') or {}).values():
        for action, count in actions.items():
            per_action[action] = per_action.get(action, 0) + count
    qmp = {action: count / float(hosts) for action, count in per_action.items() if action.startswith('qmp.balloon.')}
    other = {action: count / float(hosts) for action, count in per_action.items() if not action.startswith('qmp.balloon.')}
    hosts_calls = [sum(actions.values()) for actions in (counted.get('hosts') or {}).values()]
    return {'qmp': qmp, 'other': other, 'qmp_per_host': sum(qmp.values()), 'other_per_host': sum(other.values()),
            'max_per_host': max(hosts_calls or [0]), 'delegated': counted.get('delegated') or {}}


def users_run(runner, python, hosts, per_host, forks, work, rounds, warmup=True):
    """The whole-process measurement; returns its result dict (bench/report.py prints it). WARMUP: the unmeasured
    first run (the smoke run leaves it out)."""
    fake = FakeFleetProcess(python, os.path.join(work, 'usersfake'), hosts * per_host, interval=INTERVAL)
    result = {'hosts': hosts, 'vms_per_host': per_host, 'forks': forks, 'rounds': rounds, 'runs': {name: [] for name in CONFIGS},
              'order': [], 'errors': []}
    try:
        inventory = _inventory(os.path.join(work, 'users'), fake.sockets, hosts, per_host, python)

        def one(name, label, limit=None):
            run = runner.run(label, PLAYBOOKS[name], inventory, forks=forks, probe=False, count_calls=True, limit=limit)
            record = {'wall': run['wall'], 'rc': run['rc'], 'dir': run['dir'], 'split': _split(run), 'calls': _calls(run, hosts)}
            read = (run.get('calls') or {}).get('read') or {}
            problems = []
            if run['rc'] != 0:
                problems.append('ansible-playbook exited %d (see %s)' % (run['rc'], run['dir']))
            if not limit:
                whole = [host for host, seen in read.items() if seen.get('vms') == per_host and not seen.get('unreachable')]
                if len(whole) != hosts:
                    problems.append('%d of %d hypervisors read all their %d VMs (see %s)' % (len(whole), hosts, per_host, run['dir']))
                reports = [task for task in run['tasks'] if task['action'].rsplit('.', 1)[-1] == 'balloon_stats_report'
                           and any(data.get('status') == 'ok' for data in task['hosts'].values())]
                if name.endswith('report') and len(reports) != 1:
                    problems.append('the report was written %d times, not once (see %s)' % (len(reports), run['dir']))
                if not name.endswith('report') and reports:
                    problems.append('a report was written (see %s)' % run['dir'])
            record['errors'] = problems
            result['errors'] += ['%s: %s' % (label, problem) for problem in problems]
            return record

        if warmup:
            log('users: %d hypervisors x %d fake VMs, forks %d: one unmeasured run on hv000 first' % (hosts, per_host, forks))
            result['warmup'] = one('role main, report', 'users-warmup', limit='hv000')
        for number in range(1, rounds + 1):
            order = list(CONFIGS) if number % 2 else list(reversed(CONFIGS))
            result['order'].append(order)
            log('users: round %d/%d: %s' % (number, rounds, ', '.join(order)))
            for name in order:
                result['runs'][name].append(one(name, 'users-%s-%d' % (name.replace(' ', '-').replace(',', ''), number)))
    finally:
        fake.stop()
    summarise_users(result)
    # The per-task rows of the first round only (results.json stays small).
    for runs in result['runs'].values():
        for run in runs[1:]:
            if run.get('split'):
                run['split'].pop('task_rows', None)
    return result


def summarise_users(result):
    med = {}
    for name, runs in result['runs'].items():
        walls = [run['wall'] for run in runs if run['rc'] == 0]
        splits = [run['split'] for run in runs if run.get('split')]
        med[name] = {'wall': median(walls), 'best': min(walls) if walls else None, 'walls': walls,
                     'split': {key: median([split[key] for split in splits]) for key in splits[0] if key != 'task_rows'} if splits else None,
                     'task_rows': splits[0]['task_rows'] if splits else [],
                     'calls': runs[0]['calls'] if runs else None}
        if runs:
            # The counts of every round, to show they do not move.
            med[name]['calls_rounds'] = [(run['calls']['qmp_per_host'], run['calls']['other_per_host']) for run in runs]
    result['median'] = med
    result['comparisons'] = []
    for role, bare, target, calls in COMPARISONS:
        pairs = [ratio(role_run['wall'], bare_run['wall']) for role_run, bare_run in zip(result['runs'][role], result['runs'][bare])
                 if role_run['rc'] == 0 and bare_run['rc'] == 0]
        result['comparisons'].append({'role': role, 'bare': bare, 'target': target, 'expected_calls': calls, 'round_ratios': pairs,
                                      'ratio': median(pairs), 'ratio_of_medians': ratio(med[role]['wall'], med[bare]['wall']),
                                      'ratio_of_best': ratio(med[role]['best'], med[bare]['best'])})
    return result


def _fmt(value, digits=2):
    return '-' if value is None else '%.*f' % (digits, value)


def _actions(calls):
    return ', '.join('%s %s' % (action.replace('qmp.balloon.', '').replace('ansible.builtin.', ''), _fmt(count, 1))
                     for action, count in sorted(calls.items())) or 'none'


def users_table(result):
    med = result['median']
    lines = ['The role as users run it: %d hypervisors x %d fake VMs (local connection, forks %d), each run a whole ansible-playbook '
             'process timed from outside, %d round(s), order reversed every other round; median and best of the rounds:'
             % (result['hosts'], result['vms_per_host'], result['forks'], result['rounds'])]
    rows = [('run', 'median s', 'best s', 'start-up s', 'tasks s', 'exit s', 'tasks', 'module calls per host: collection', 'other (prepare)')]
    for name in CONFIGS:
        row = med.get(name)
        if not row or row['wall'] is None:
            continue
        split = row['split'] or {}
        calls = row['calls'] or {'qmp': {}, 'other': {}}
        rows.append((name, _fmt(row['wall']), _fmt(row['best']), _fmt(split.get('startup_s')), _fmt(split.get('tasks_s')),
                     _fmt(split.get('exit_s')), '%d' % (split.get('tasks') or 0), _actions(calls['qmp']), _actions(calls['other'])))
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    for row in rows:
        lines.append('  '.join(cell.ljust(widths[index]) if index in (0, 7, 8) else cell.rjust(widths[index])
                               for index, cell in enumerate(row)).rstrip())
    lines.append('start-up: process start to the first task (interpreter, Ansible, inventory, playbook); tasks: first task to the '
                 'last result; exit: to the process end; tasks: tasks that ran, per play.')
    for comparison in result['comparisons']:
        lines.append('  %s / %s: per round %s; median %s, of the medians %s, of the best %s'
                     % (comparison['role'], comparison['bare'], ', '.join(_fmt(value) for value in comparison['round_ratios']),
                        _fmt(comparison['ratio']), _fmt(comparison['ratio_of_medians']), _fmt(comparison['ratio_of_best'])))
    return '\n'.join(lines)


def users_targets(result):
    """The issue's targets for the role as (name, holds?, measured)."""
    med = result['median']
    checks = []
    for comparison in result['comparisons']:
        role, bare = med[comparison['role']], med[comparison['bare']]
        value = comparison['ratio']
        holds = value is not None and value <= comparison['target']
        measured = '%s (median of %d per-round ratios; median runs %s s vs %s s)' % (
            _fmt(value), len(comparison['round_ratios']), _fmt(role['wall'], 1), _fmt(bare['wall'], 1))
        if not holds and role.get('split') and bare.get('split'):
            split, bare_split = role['split'], bare['split']
            extra = (role['wall'] or 0) - (bare['wall'] or 0)
            measured += ('; the role adds %s s: start-up %+.1f s, tasks %+.1f s (%d tasks against %d: its module tasks %s s, '
                         'the %d others %s s, summed over the tasks, each a worker round over %d hosts), exit %+.1f s'
                         % (_fmt(extra, 1), split['startup_s'] - bare_split['startup_s'], split['tasks_s'] - bare_split['tasks_s'],
                            split['tasks'], bare_split['tasks'], _fmt(split['module_tasks_s'], 1),
                            split['tasks'] - split['module_tasks'], _fmt(split['other_tasks_s'], 1), result['hosts'],
                            split['exit_s'] - bare_split['exit_s']))
            longest = sorted((row for row in role.get('task_rows') or [] if row.get('duration') is not None),
                             key=lambda row: -row['duration'])[:4]
            if longest:
                measured += '; its longest tasks (round 1): %s' % ', '.join(
                    '"%s" (%s%s) %s s' % (row['name'].split(' : ', 1)[-1][:60].rstrip(), row['action'].replace('ansible.builtin.', ''),
                                          ', skipped' if row['skipped'] == row['hosts'] else '', _fmt(row['duration'], 1))
                    for row in longest)
        checks.append(('role on %d x %d fakes, whole processes: %s <= %sx %s'
                       % (result['hosts'], result['vms_per_host'], comparison['role'], _fmt(comparison['target'], 1),
                          'one bare info task' if comparison['bare'] == 'bare info' else 'bare polling + info'), holds, measured))
    for comparison in result['comparisons']:
        calls = med[comparison['role']]['calls']
        if not calls:
            continue
        rounds = med[comparison['role']].get('calls_rounds') or []
        steady = len(set(rounds)) <= 1
        holds = (abs(calls['qmp_per_host'] - comparison['expected_calls']) < 0.01 and calls['other_per_host'] <= PREPARE_CALLS + 0.01
                 and steady)
        checks.append(('module calls per host: %s %d, +%d for prepare at most' % (comparison['role'], comparison['expected_calls'], PREPARE_CALLS),
                       holds, '%s + %s (most on one host: %d)%s' % (
                           _actions(calls['qmp']), _actions(calls['other']), calls['max_per_host'],
                           '' if steady else '; the rounds differ: %s' % json.dumps(rounds))))
    return checks
