# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The warm in-play fleet figures (information; bench/users.py measures the role as users run it, whole
processes): the role against bare module tasks on the same fake fleet inside one ansible-playbook run,
the fleet sweep over the number of hypervisors (--fleet-sweep), and the forks sweep (--forks-sweep).

One fake server serves HOSTS x VMS endpoints; each inventory host (ansible_connection=local) gets a
directory of symlinks to its VMS sockets and the glob of that directory as balloon_stats_socket_globs.
One ansible-playbook run per repeat holds these plays, each timed from the start of its first
task named "measure ..." to its last result (bench/callback_plugins/qmp_bench_timer.py):

  bare info            one qmp.balloon.balloon_stats_info task per hypervisor, sockets: the glob
  role gather          include_role tasks_from: gather, after a prepare in the same play (not timed):
                       the role's memo says which Python to use, so no probe
  role gather, cold    the same in a new play without a prepare first: the probe runs (+1 call); only
                       with --fleet-plays all
  bare two             balloon_stats_polling then balloon_stats_info, bare
  role main            include_role (main: validate, configure, gather; report false), after a prepare
  role main, cold      the same without a prepare first: the probe runs (+1 call); only with
                       --fleet-plays all

Module processes (bench/probe/sitecustomize.py) are counted per play window and module name and
divided by the hosts: the module calls per hypervisor.

The fleet sweep runs "bare two" and "role main" on the first 10 and 25 hypervisors (one repeat
each) and takes the largest point from the repeats above; the per-hypervisor marginal cost is the
least-squares slope of play time against hypervisors. The forks sweep runs the same two plays on
all hypervisors with --forks 10 and 20 (forks 5: the repeats above).
"""

from __future__ import annotations

import os

from runner import INTERVAL, FakeFleetProcess, log, median, ratio

SWEEP_POINTS = (10, 25)
# make bench: the two pairs, warm (prepare's calls and cost are measured by bench/users.py, whole
# processes as users run the role; --fleet-plays all adds the cold plays here).
DEFAULT_PLAYS = ('bare info', 'role gather', 'bare two', 'role main')
# The smoke run (make test): the same.
SMOKE_PLAYS = DEFAULT_PLAYS
MODULE_ACTIONS = ('qmp.balloon.balloon_stats_info', 'qmp.balloon.balloon_stats_facts', 'qmp.balloon.balloon_stats_polling',
                  'ansible.builtin.command')

HEADER = '''---
'''

PLAYS = {
    'bare info': '''- name: bare info
  hosts: {group}
  gather_facts: false
  tasks:
    - name: measure bare info
      qmp.balloon.balloon_stats_info:
        sockets: "{{{{ balloon_stats_socket_globs }}}}"
        allow_empty: true
''',
    'role gather': '''- name: role gather
  hosts: {group}
  gather_facts: false
  tasks:
    - name: warm prepare (not timed)
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
        tasks_from: prepare
    - name: measure role gather
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
        tasks_from: gather
''',
    'role gather, cold': '''- name: role gather, cold
  hosts: {group}
  gather_facts: false
  tasks:
    - name: measure role gather, cold
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
        tasks_from: gather
''',
    'bare two': '''- name: bare two
  hosts: {group}
  gather_facts: false
  tasks:
    - name: measure bare polling
      qmp.balloon.balloon_stats_polling:
        sockets: "{{{{ balloon_stats_socket_globs }}}}"
        allow_empty: true
        interval: {interval}
    - name: bare info
      qmp.balloon.balloon_stats_info:
        sockets: "{{{{ balloon_stats_socket_globs }}}}"
        allow_empty: true
''',
    'role main': '''- name: role main
  hosts: {group}
  gather_facts: false
  tasks:
    - name: warm prepare (not timed)
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
        tasks_from: prepare
    - name: measure role main
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
''',
    'role main, cold': '''- name: role main, cold
  hosts: {group}
  gather_facts: false
  tasks:
    - name: measure role main, cold
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
''',
}

CHECK_PLAY = '''- name: fleet check
  hosts: {group}
  gather_facts: false
  tasks:
    - name: every VM read by the role
      ansible.builtin.assert:
        that:
          - balloon_stats.summary.vms | int == {per_host}
          - balloon_stats.summary.unreachable | int == 0
        quiet: true
'''

# The role's variables for every play (the bare plays ignore them but the glob).
GROUP_VARS = '''[all:vars]
balloon_stats_interval={interval}
balloon_stats_report=false
'''

# What the bench compares (role play, bare play), and the module calls per hypervisor expected.
PAIRS = (('role gather', 'bare info', 1), ('role main', 'bare two', 2))


def host_dirs(work, sockets, hosts, per_host):
    """One directory of symlinks to PER_HOST of SOCKETS for each of HOSTS hypervisors (WORK/fleet/hvNNN): their globs."""
    directories = []
    for index in range(hosts):
        host_dir = os.path.join(work, 'fleet', 'hv%03d' % index)
        os.makedirs(host_dir, exist_ok=True)
        for socket_path in sockets[index * per_host:(index + 1) * per_host]:
            link = os.path.join(host_dir, os.path.basename(socket_path))
            if not os.path.lexists(link):
                os.symlink(socket_path, link)
        directories.append(host_dir)
    return directories


def _inventory(work, sockets, hosts, per_host):
    lines = ['[hypervisors]']
    for index, host_dir in enumerate(host_dirs(work, sockets, hosts, per_host)):
        lines.append("hv%03d ansible_connection=local balloon_stats_socket_globs='[\"%s/*.qmp\"]'" % (index, host_dir))
    for point in SWEEP_POINTS:
        if point < hosts:
            lines += ['', '[fleet%d]' % point] + ['hv%03d' % index for index in range(point)]
    return '\n'.join(lines + ['', GROUP_VARS.format(interval=INTERVAL)])


def _playbook(names, group, per_host, cold_group=None):
    """The plays; the cold ones on COLD_GROUP when given (the calls per hypervisor do not depend
    on how many there are, and a cold play costs a prepare on each)."""
    text = HEADER
    for name in names:
        text += PLAYS[name].format(group=cold_group if cold_group and name.endswith(', cold') else group, interval=INTERVAL) + '\n'
    return text + CHECK_PLAY.format(group=group, per_host=per_host)


def play_windows(run):
    """For each play of one run: its timed window, task counts and module calls by module name."""
    plays = {}
    for task in run['tasks']:
        if task.get('play') is None:
            continue
        play = plays.setdefault(task['play'], {'tasks': [], 'measure_start': None})
        play['tasks'].append(task)
        if play['measure_start'] is None and task['name'].startswith('measure '):
            play['measure_start'] = task['start']
    out = {}
    for name, play in plays.items():
        if play['measure_start'] is None:
            continue
        timed = [task for task in play['tasks'] if task['start'] >= play['measure_start']]
        ends = [task['end'] for task in timed if task.get('end') is not None]
        if not ends:
            continue
        start, end = play['measure_start'], max(ends)
        hosts = set()
        statuses = {}
        for task in timed:
            for host, data in task['hosts'].items():
                hosts.add(host)
                statuses[data.get('status')] = statuses.get(data.get('status'), 0) + 1
        calls = {}
        for module in run['modules']:
            if start <= module['t_proc'] + 0.011 and module['t_end'] <= end + 0.011:
                calls[module['module']] = calls.get(module['module'], 0) + 1
        # The tasks that ran a module on the hosts, and the others (controller-side: include, assert,
        # set_fact, argument spec, and the module tasks every host skipped).
        module_tasks = [task for task in timed if task['action'] in MODULE_ACTIONS
                        and any(data.get('status') != 'skipped' for data in task['hosts'].values())]
        module_s = sum(task.get('duration') or 0 for task in module_tasks)
        # Tasks the role ran per host (include_role and its included tasks, skipped ones too).
        out[name] = {'wall': end - start, 'tasks': len(timed), 'hosts': len(hosts),
                     'module_tasks': len(module_tasks), 'module_tasks_s': module_s,
                     'other_tasks': len(timed) - len(module_tasks),
                     'other_tasks_s': sum(task.get('duration') or 0 for task in timed) - module_s,
                     'host_results': sum(statuses.values()), 'statuses': statuses, 'calls': calls,
                     'calls_per_host': {module: count / float(len(hosts) or 1) for module, count in calls.items()},
                     'task_rows': [{'name': task['name'], 'action': task['action'], 'duration': task.get('duration'),
                                    'skipped': sum(1 for data in task['hosts'].values() if data.get('status') == 'skipped'),
                                    'hosts': len(task['hosts'])} for task in timed]}
    return out


def _slope(points):
    """Least-squares slope of (x, y) points (s per hypervisor), or None."""
    points = [(x, y) for x, y in points if y is not None]
    if len(points) < 2:
        return None
    mean_x = sum(point[0] for point in points) / float(len(points))
    mean_y = sum(point[1] for point in points) / float(len(points))
    den = sum((point[0] - mean_x) ** 2 for point in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / den if den else None


def fleet_overhead(runner, python, hosts, per_host, forks, work, reps, sweep=True, forks_sweep=(), plays=None, cold_small=False):
    """The role against bare tasks on HOSTS x PER_HOST fake VMs; the fleet and forks sweeps. PLAYS: a
    subset of PLAYS' names (the smoke run leaves out the cold ones). COLD_SMALL: the cold plays on the
    first 10 hypervisors only (make bench: they show the calls prepare adds, not a ratio)."""
    fake = FakeFleetProcess(python, os.path.join(work, 'fleetfake'), hosts * per_host)
    result = {'hosts': hosts, 'vms_per_host': per_host, 'forks': forks, 'reps': reps, 'runs': [], 'sweep': [], 'forks_sweep': [],
              'errors': []}
    try:
        inventory = _inventory(work, fake.sockets, hosts, per_host)

        def run_plays(name, names, group, run_forks, cold_group=None):
            run = runner.run(name, _playbook(names, group, per_host, cold_group), inventory, forks=run_forks)
            if run['rc'] != 0:
                result['errors'].append('%s: ansible-playbook exited %d (see %s)' % (name, run['rc'], run['dir']))
            windows = play_windows(run)
            for play in names:
                window = windows.get(play)
                if window is None:
                    result['errors'].append('%s: play %s has no timed task' % (name, play))
                elif window['statuses'].get('failed') or window['statuses'].get('unreachable'):
                    result['errors'].append('%s: %s: %s' % (name, play, window['statuses']))
            return run, windows

        order = [name for name in PLAYS if plays is None or name in plays]
        for rep in range(1, reps + 1):
            # Alternate the order, so that neither side always runs first on a machine that warms up.
            names = order if rep % 2 else list(reversed(order))
            log('fleet: %d hypervisors x %d fake VMs, forks %d, repeat %d/%d: %s' % (hosts, per_host, forks, rep, reps, ', '.join(names)))
            run, windows = run_plays('fleet-%d' % rep, names, 'hypervisors', forks,
                                     cold_group=('fleet%d' % SWEEP_POINTS[0]) if cold_small and SWEEP_POINTS[0] < hosts else None)
            result['runs'].append({'dir': run['dir'], 'wall': run['wall'], 'plays': windows})
            if rep == 1:
                result['role_main_run'] = {'tasks': run['tasks'], 'modules': run['modules'], 'rc': run['rc'], 'wall': run['wall'],
                                           'dir': run['dir']}
        if sweep:
            for point in SWEEP_POINTS:
                if point >= hosts:
                    continue
                log('fleet sweep: %d hypervisors x %d fake VMs, forks %d (1 repeat)' % (point, per_host, forks))
                _run, windows = run_plays('fleet-sweep-%d' % point, ['bare two', 'role main'], 'fleet%d' % point, forks)
                result['sweep'].append({'hosts': point, 'plays': windows})
        for level in forks_sweep:
            if level == forks:
                continue
            log('forks sweep: %d hypervisors, forks %d (1 repeat)' % (hosts, level))
            _run, windows = run_plays('fleet-forks-%d' % level, ['bare two', 'role main'], 'hypervisors', level)
            result['forks_sweep'].append({'forks': level, 'plays': windows})
    finally:
        fake.stop()
    summarise_fleet(result)
    return result


def summarise_fleet(result):
    med = {}
    for name in PLAYS:
        windows = [run['plays'][name] for run in result['runs'] if name in run['plays']]
        if not windows:
            continue
        med[name] = {'wall': median([window['wall'] for window in windows]), 'tasks': windows[0]['tasks'], 'hosts': windows[0]['hosts'],
                     'module_tasks': windows[0]['module_tasks'], 'other_tasks': windows[0]['other_tasks'],
                     'module_tasks_s': median([window['module_tasks_s'] for window in windows]),
                     'other_tasks_s': median([window['other_tasks_s'] for window in windows]),
                     'host_results': windows[0]['host_results'],
                     'calls_per_host': windows[0]['calls_per_host'],
                     'calls_per_host_total': sum(windows[0]['calls_per_host'].values())}
    result['median'] = med
    result['pairs'] = []
    for role, bare, expected in PAIRS:
        if role in med and bare in med:
            result['pairs'].append({'role': role, 'bare': bare, 'expected_calls': expected,
                                    'ratio': ratio(med[role]['wall'], med[bare]['wall'])})
    # The sweep: this run's points plus the full fleet (median of the repeats).
    curve = {}
    for name in ('bare two', 'role main'):
        points = [(point['hosts'], point['plays'].get(name, {}).get('wall')) for point in result['sweep']]
        if name in med:
            points.append((result['hosts'], med[name]['wall']))
        curve[name] = {'points': sorted(points), 'per_host_s': _slope(points)}
    result['curve'] = curve
    forks = [{'forks': result['forks'], 'bare two': med.get('bare two', {}).get('wall'), 'role main': med.get('role main', {}).get('wall')}]
    for point in result['forks_sweep']:
        forks.append({'forks': point['forks'], 'bare two': point['plays'].get('bare two', {}).get('wall'),
                      'role main': point['plays'].get('role main', {}).get('wall')})
    result['forks_curve'] = sorted(forks, key=lambda row: row['forks'])
    return result


def fleet_compat(result):
    """The role main play of the first repeat as bench/report.py's fleet_table wants it (per task)."""
    run = result.get('role_main_run')
    if not run:
        return None
    tasks = []
    for task in run['tasks']:
        if task.get('play') != 'role main' or task.get('duration') is None:
            continue
        procs = [module for module in run['modules'] if task['start'] <= module['t_proc'] + 0.011 and module['t_end'] <= task['end']]
        statuses = {}
        for data in task['hosts'].values():
            statuses[data.get('status')] = statuses.get(data.get('status'), 0) + 1
        tasks.append({'name': task['name'], 'action': task['action'], 'duration': task['duration'], 'hosts': statuses,
                      'module_processes': len(procs),
                      'module_s_sum': sum(proc['t_end'] - proc['t_proc'] for proc in procs),
                      'module_s_median': median([proc['t_end'] - proc['t_proc'] for proc in procs]),
                      'peak_rss_mb': max([proc['maxrss_kb'] / 1024.0 for proc in procs] or [0]) or None})
    return {'hosts': result['hosts'], 'vms_per_host': result['vms_per_host'], 'forks': result['forks'], 'rc': run['rc'],
            'playbook_wall': run['wall'], 'tasks': tasks, 'errors': [], 'dir': run['dir'],
            'tasks_total_s': sum(task['duration'] for task in tasks)}


def _fmt(value, digits=2):
    return '-' if value is None else '%.*f' % (digits, value)


def _calls(calls):
    return ', '.join('%s %s' % (module, _fmt(count, 1)) for module, count in sorted(calls.items())) or 'none'


def overhead_table(result):
    med = result['median']
    lines = ['Role overhead: %d hypervisors x %d fake VMs (local connection, forks %d), play time from its first timed task to '
             'its last result, median of %d run(s):' % (result['hosts'], result['vms_per_host'], result['forks'], result['reps'])]
    rows = [('play', 'hosts', 'wall s', 'tasks', 'host results', 'module calls per hypervisor')]
    for name in PLAYS:
        if name in med:
            rows.append((name, str(med[name]['hosts']), _fmt(med[name]['wall']), str(med[name]['tasks']), str(med[name]['host_results']),
                         _calls(med[name]['calls_per_host'])))
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    for row in rows:
        lines.append('  '.join(cell.ljust(widths[index]) if index in (0, 5) else cell.rjust(widths[index])
                               for index, cell in enumerate(row)).rstrip())
    if result['curve'] and any(len(curve['points']) > 1 for curve in result['curve'].values()):
        lines += ['', 'Fleet sweep (x %d fake VMs, forks %d; points below %d hypervisors: 1 repeat each):'
                  % (result['vms_per_host'], result['forks'], result['hosts'])]
        for name, curve in result['curve'].items():
            lines.append('  %-10s %s; marginal cost %s s per hypervisor' % (
                name, ', '.join('%d: %s s' % (hosts, _fmt(wall, 1)) for hosts, wall in curve['points']), _fmt(curve['per_host_s'])))
    if len(result.get('forks_curve') or []) > 1:
        lines += ['', 'Forks sweep (%d hypervisors x %d fake VMs, 2 cores; forks %d: the median above, others 1 repeat):'
                  % (result['hosts'], result['vms_per_host'], result['forks'])]
        for row in result['forks_curve']:
            lines.append('  forks %2d: bare two %s s, role main %s s' % (row['forks'], _fmt(row['bare two'], 1), _fmt(row['role main'], 1)))
    return '\n'.join(lines)


def overhead_targets(result):
    """Issue 16 target 3 as (name, met?, measured): information since issue 23 (bench/users.py has the targets)."""
    med = result['median']
    checks = []
    for pair in result['pairs']:
        role, bare = med[pair['role']], med[pair['bare']]
        holds = pair['ratio'] is not None and pair['ratio'] <= 1.3
        measured = '%s s vs %s s: %s' % (_fmt(role['wall'], 1), _fmt(bare['wall'], 1), _fmt(pair['ratio']))
        if not holds:
            # The breakdown: the module tasks cost what the bare ones cost; the rest is the role's
            # other tasks, each a worker round over every host even when skipped.
            per_task = ratio(role['other_tasks_s'], role['other_tasks'])
            measured += ('; the role: %d module task(s) %s s (bare: %d, %s s) + %d other tasks per host (include, argument spec, '
                         'assert, set_fact, skipped ones) %s s, %s s each over %d hosts; a 1.3x budget allows %s s of them, '
                         'i.e. %s such tasks'
                         % (role['module_tasks'], _fmt(role['module_tasks_s'], 1), bare['module_tasks'], _fmt(bare['module_tasks_s'], 1),
                            role['other_tasks'], _fmt(role['other_tasks_s'], 1), _fmt(per_task), result['hosts'],
                            _fmt(0.3 * bare['wall'], 1),
                            _fmt(0.3 * bare['wall'] / per_task if per_task else None, 1)))
        checks.append(('fleet: %s after a prepare in the play against %s (issue 16: <= 1.3x)' % (pair['role'], pair['bare']), holds, measured))
        calls = role['calls_per_host_total']
        checks.append(('fleet: %s module calls per hypervisor (expected %d)' % (pair['role'], pair['expected_calls']),
                       abs(calls - pair['expected_calls']) < 0.01, _calls(role['calls_per_host'])))
        cold = med.get(pair['role'] + ', cold')
        if cold:
            extra = cold['calls_per_host_total'] - calls
            checks.append(('fleet: prepare (balloon_stats_prepare auto) adds at most 1 call per hypervisor to %s' % pair['role'],
                           extra <= 1.0 + 0.01, '%s in a play without a prepare before: %s (%d hypervisors, %s s)'
                           % (_fmt(extra, 1), _calls(cold['calls_per_host']), cold['hosts'], _fmt(cold['wall'], 1))))
    return checks
