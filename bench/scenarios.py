# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bench's scenarios: one set of VMs measured by (a), (b), (c), (e); (d) and (a-lv) on libvirt
domains; the fleet; the concurrency sweep; the profile. Each returns the raw numbers that
bench/report.py turns into tables (see bench/run.py's docstring for the methods).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from runner import (
    BENCH, ENGINE_DIRECT, FILTERS, FLOOR, INTERVAL, LIBVIRT_PREFIX, LIBVIRT_READ, PROFILE, LibvirtDomains, last_json,
    libvirt_python, log, median, ratio, run_quiet, timed_child,
)


# ---------------------------------------------------------------------------------------------
# one set of VMs: (a), (b), (c), (e)
# ---------------------------------------------------------------------------------------------


def modules_in(task, modules, host=None):
    """The module processes that ran inside a task's time window (optionally for one host)."""
    if task.get('end') is None:
        return []
    return [module for module in modules if task['start'] <= module['t_proc'] + 0.011 and module['t_end'] <= task['end']]


def module_summary(task, modules):
    """Module time, peak RSS and phase breakdown of the module processes of one task."""
    procs = modules_in(task, modules)
    if not procs:
        return {}
    summary = {
        'processes': len(procs),
        'module_s': sum(proc['t_end'] - proc['t_proc'] for proc in procs),
        'peak_rss_mb': max(proc['maxrss_kb'] for proc in procs) / 1024.0,
    }
    if len(procs) == 1:
        proc = procs[0]
        phases = {'ansible_before_module': proc['t_proc'] - task['start'],
                  'interpreter_start': proc['t_site'] - proc['t_proc'],
                  'ansiballz_imports_args': (proc.get('t_loop_start') or proc['t_end']) - proc['t_site'],
                  'module_total': proc['t_end'] - proc['t_proc'],
                  'ansible_after_module': task['end'] - proc['t_end']}
        if proc.get('t_loop_start') and proc.get('t_loop_end'):
            phases['event_loop'] = proc['t_loop_end'] - proc['t_loop_start']
            phases['results_to_exit'] = (proc.get('t_exit') or proc['t_end']) - proc['t_loop_end']
        if proc.get('t_exit'):
            phases['exit_json'] = proc['t_end'] - proc['t_exit']
        summary['phases'] = phases
        summary['cpu_s'] = proc.get('utime', 0) + proc.get('stime', 0)
    holds = [hold for proc in procs for hold in proc.get('holds_ms', [])]
    if holds:
        summary['hold_ms'] = hold_summary(holds)
        summary['commands_per_vm'] = sum(proc.get('commands', 0) for proc in procs) / float(len(holds))
    return summary


def hold_summary(holds):
    holds = sorted(holds)
    return {'median': statistics.median(holds), 'p95': holds[min(len(holds) - 1, int(0.95 * len(holds)))], 'max': holds[-1],
            'n': len(holds)}


def task_by_name(tasks, name):
    for task in tasks:
        if task['name'] == name:
            return task
    return None


def task_ok(task, expect_changed=None):
    """None when the task did what it should, else why not."""
    if task is None:
        return 'task did not run'
    if task.get('duration') is None:
        return 'no result'
    for host, data in task['hosts'].items():
        if data.get('status') != 'ok':
            return '%s: %s %s' % (host, data.get('status'), data.get('msg', ''))
        if data.get('vms_failed'):
            return '%s: %d VMs failed' % (host, data['vms_failed'])
        if expect_changed is not None and data.get('changed') != expect_changed:
            return '%s: changed=%s, expected %s' % (host, data.get('changed'), expect_changed)
    return None


SET_PLAYBOOK = '''---
- name: bench {name}
  hosts: bench
  gather_facts: false
  vars_files: [targets.json]
  tasks:
    # Not measured: every VM starts at interval 0, so the first (e) run of repeat 1 is 0 -> {interval}.
    - name: reset
      qmp.balloon.balloon_stats_polling:
        targets: "{{{{ bench_targets }}}}"
        interval: 0
{tasks}
'''

# (e): the first run of every repeat changes the interval (0 -> 10, then 10 -> 20, 20 -> 10, ...:
# the same read, write, read-back as 0 -> 10), the second sets the same value again (no change).
# No reset task between the repeats: it would cost one more module run over all VMs per repeat.
REP_TASKS = '''    - name: a0 {rep}
      qmp.balloon.balloon_stats_info:
        targets: []
    - name: a {rep}
      qmp.balloon.balloon_stats_info:
        targets: "{{{{ bench_targets }}}}"
    - name: b {rep}
      qmp.balloon.balloon_stats_info:
        socket: "{{{{ item.socket }}}}"
      loop: "{{{{ bench_targets[{b_start}:{b_stop}] }}}}"
    - name: e1 {rep}
      qmp.balloon.balloon_stats_polling:
        targets: "{{{{ bench_targets }}}}"
        interval: {interval}
    - name: e2 {rep}
      qmp.balloon.balloon_stats_polling:
        targets: "{{{{ bench_targets }}}}"
        interval: {interval}
'''


def e_interval(rep):
    """The interval (e) sets in repeat REP (1-based): INTERVAL, 2 x INTERVAL, INTERVAL, ..."""
    return INTERVAL if rep % 2 else 2 * INTERVAL


def bench_set(runner, label, kind, sockets, reps, b_sample, floor_python, notes, skip_b=False):
    """Measure (a), (b), (c), (e) on one set of VMs; return its result dict."""
    n = len(sockets)
    work = os.path.join(runner.work, 'set-' + label)
    os.makedirs(work, exist_ok=True)
    targets = [{'socket': path} for path in sockets]
    targets_file = os.path.join(work, 'targets.json')
    with open(targets_file, 'w') as handle:
        json.dump(targets, handle)

    b_count = n if not b_sample or b_sample >= n else b_sample
    result = {'label': label, 'kind': kind, 'n': n, 'reps': reps, 'b_items': b_count, 'b_extrapolated': b_count < n,
              'a': [], 'a0': [], 'a0_module': [], 'a_module': [], 'a_rss_mb': [], 'a_phases': [], 'a_hold': [], 'b': [], 'b_items_s': [],
              'b_rss_mb': [], 'b_module_s': [], 'e1': [], 'e2': [], 'e1_module': [], 'e2_module': [], 'e_rss_mb': [],
              'c': [], 'c_cpu': [], 'c_loop': [], 'a_cpu': [], 'c_raw': [], 'c_raw_cpu': [], 'c_rss_mb': [], 'c_hold': [],
              'c_commands_per_vm': None, 'a_commands_per_vm': None, 'errors': []}
    if b_count < n:
        notes.append('%s: (b) is measured on a loop over %d of the %d VMs (a different slice each repeat) and '
                     'extrapolated linearly (x%g)' % (label, b_count, n, n / float(b_count)))

    def floor_once():
        wall, rss_kb, code, output, errors, cpu = timed_child([floor_python, FLOOR, targets_file])
        if code != 0:
            result['errors'].append('floor exited %d: %s %s' % (code, output[-300:], errors[-300:]))
            return
        data = json.loads(output)
        result['c'].append(wall)
        result['c_cpu'].append(cpu)
        result['c_loop'].append(data['loop_s'])
        result['c_rss_mb'].append(rss_kb / 1024.0)
        result['c_hold'].append(hold_summary(data['holds_ms']))
        result['c_commands_per_vm'] = data['commands_per_vm']
        # The same floor without qemu.qmp (plain asyncio streams): what the library costs.
        wall, rss_kb, code, output, errors, cpu = timed_child([floor_python, FLOOR, targets_file, '--client', 'raw'])
        if code == 0:
            result['c_raw'].append(wall)
            result['c_raw_cpu'].append(cpu)

    # Floors bracket the playbook: half before, half after (the machine is shared and noisy).
    for _repeat in range((reps + 1) // 2):
        floor_once()

    tasks_text = ''
    for rep in range(1, reps + 1):
        start = min(((rep - 1) * b_count) % n, n - b_count) if b_count < n else 0
        stop = start + b_count
        text = REP_TASKS.format(rep=rep, b_start=start, b_stop=stop, interval=e_interval(rep))
        if skip_b:
            text = text.replace('    - name: b %d\n' % rep, '    - name: b %d\n      when: false\n' % rep)
        tasks_text += text
    playbook = SET_PLAYBOOK.format(name=label, tasks=tasks_text, interval=INTERVAL)
    inventory = '[bench]\nlocalhost ansible_connection=local\n'
    log('%s: playbook with %d repeats of (a), (b) over %d items, (e) first and second run' % (label, reps, b_count))
    run = runner.run(label, playbook, inventory, extra_files={'targets.json': json.dumps({'bench_targets': targets})})
    result['playbook_wall'] = run['wall']
    result['playbook_dir'] = run['dir']
    problem = task_ok(task_by_name(run['tasks'], 'reset'))
    if problem:
        result['errors'].append('reset: %s' % problem)
    for rep in range(1, reps + 1):
        for key, expect in (('a0', False), ('a', False), ('b', False), ('e1', True), ('e2', False)):
            if key == 'b' and skip_b:
                continue
            task = task_by_name(run['tasks'], '%s %d' % (key, rep))
            problem = task_ok(task, expect_changed=expect if key in ('e1', 'e2') else None)
            if problem:
                result['errors'].append('%s %d: %s' % (key, rep, problem))
                continue
            summary = module_summary(task, run['modules'])
            if key == 'a0':
                # The same module over no VM: Ansible's fixed cost of one task with this module.
                result['a0'].append(task['duration'])
                result['a0_module'].append(summary.get('module_s'))
            elif key == 'a':
                result['a'].append(task['duration'])
                result['a_module'].append(summary.get('module_s'))
                result['a_cpu'].append(summary.get('cpu_s'))
                result['a_rss_mb'].append(summary.get('peak_rss_mb'))
                result['a_phases'].append(summary.get('phases'))
                result['a_hold'].append(summary.get('hold_ms'))
                result['a_commands_per_vm'] = summary.get('commands_per_vm')
            elif key == 'b':
                scale = n / float(b_count)
                result['b'].append(task['duration'] * scale)
                result['b_items_s'].append(task['duration'] / float(b_count))
                result['b_rss_mb'].append(summary.get('peak_rss_mb'))
                result['b_module_s'].append((summary.get('module_s') or 0) * scale)
            else:
                result[key].append(task['duration'])
                result[key + '_module'].append(summary.get('module_s'))
                result['e_rss_mb'].append(summary.get('peak_rss_mb'))

    for _repeat in range(reps // 2):
        floor_once()
    return result


def summarise_set(result):
    keys = ('a', 'a0', 'a0_module', 'a_module', 'a_cpu', 'c_cpu', 'c_loop', 'c_raw', 'c_raw_cpu', 'b', 'c', 'e1', 'e2', 'e1_module', 'e2_module', 'b_items_s',
            'b_module_s')
    med = {key: median(result.get(key, [])) for key in keys}
    med['a_rss_mb'] = max([value for value in result['a_rss_mb'] if value is not None] or [None]) if any(result['a_rss_mb']) else None
    med['b_rss_mb'] = max([value for value in result['b_rss_mb'] if value is not None] or [0]) or None
    med['e_rss_mb'] = max([value for value in result['e_rss_mb'] if value is not None] or [0]) or None
    med['c_rss_mb'] = median(result['c_rss_mb'])
    med['a_hold_median_ms'] = median([hold['median'] for hold in result['a_hold'] if hold])
    med['a_hold_p95_ms'] = median([hold['p95'] for hold in result['a_hold'] if hold])
    med['c_hold_median_ms'] = median([hold['median'] for hold in result['c_hold'] if hold])
    med['c_hold_p95_ms'] = median([hold['p95'] for hold in result['c_hold'] if hold])
    phases = [phase for phase in result['a_phases'] if phase]
    if phases:
        med['a_phases'] = {key: median([phase.get(key) for phase in phases]) for key in phases[0]}
    pairs = result.get('engine_pairs')
    if pairs:
        med['pair_ratio'] = median(pairs['ratios'])
        med['pair_module'] = median(pairs['module'])
        med['pair_floor'] = median(pairs['floor'])
        med['pair_cpu_ratio'] = ratio(median(pairs['module_cpu']), median(pairs['floor_cpu']))
        med.update(pair_breakdown(pairs))
    med['a_commands_per_vm_n'] = result.get('a_commands_per_vm')
    med['c_commands_per_vm_n'] = result.get('c_commands_per_vm')
    med['a_over_c'] = ratio(med['a'], med['c'])
    # What the VMs add to the task, over the task with no VM (Ansible's fixed cost), against the floor.
    med['a_net'] = (med['a'] - med['a0']) if med['a'] is not None and med['a0'] is not None else None
    med['a_net_over_c'] = ratio(med['a_net'], med['c'])
    med['a_module_over_c'] = ratio(med['a_module'], med['c'])
    med['a_cpu_over_c_cpu'] = ratio(med['a_cpu'], med['c_cpu'])
    med['b_over_a'] = ratio(med['b'], med['a'])
    if result.get('d'):
        d = result['d']
        med['d_virsh'] = median(d.get('virsh', []))
        med['d_getall'] = median(d.get('getall', []))
        med['d_memorystats'] = median(d.get('memorystats', []))
        med['d_rss_mb'] = median(d.get('rss_mb', []))
        med['d_virsh_over_a'] = ratio(med['d_virsh'], med['a'])
        med['d_getall_over_a'] = ratio(med['d_getall'], med['a'])
        # The collection's libvirt transport on the same domains, timed as (a).
        for key in ('a_lv', 'a_lv_module', 'a_lv_cpu', 'a_virsh', 'a_virsh_command', 'a_virsh_parse'):
            med[key] = median(d.get(key, []))
        med['a_lv_rss_mb'] = max([value for value in d.get('a_lv_rss_mb', []) if value is not None] or [0]) or None
        lv_phases = [phase for phase in d.get('a_lv_phases', []) if phase]
        if lv_phases:
            med['a_lv_phases'] = {key: median([phase.get(key) for phase in lv_phases]) for key in lv_phases[0]}
        med['a_lv_over_d_getall'] = ratio(med['a_lv'], med['d_getall'])
        med['a_lv_module_over_d_getall'] = ratio(med['a_lv_module'], med['d_getall'])
        med['a_lv_over_a'] = ratio(med['a_lv'], med['a'])
        med['a_lv_over_a_virsh'] = ratio(med['a_lv'], med['a_virsh'])
    result['median'] = med
    return med


# ---------------------------------------------------------------------------------------------
# (d) libvirt
# ---------------------------------------------------------------------------------------------


LIBVIRT_PLAYBOOK = '''---
- name: bench libvirt
  hosts: bench
  gather_facts: false
  tasks:
{tasks}
'''

LIBVIRT_TASK = '''    - name: alv {rep}
      qmp.balloon.balloon_stats_info:
        transport: libvirt
        libvirt_uri: "{uri}"
{select}
'''

# (a-virsh): what a libvirt user would write without the collection: one virsh domstats --balloon per
# hypervisor, parsed by a filter (bench/filter_plugins/qbb_virsh.py, not shipped). Its time is both tasks'.
VIRSH_TASKS = '''    - name: virsh {rep}
      ansible.builtin.command:
        argv: {argv}
      register: qbb_virsh
      changed_when: false
    - name: virsh parse {rep}
      ansible.builtin.set_fact:
        qbb_virsh_stats: "{{{{ qbb_virsh.stdout | qbb_domstats_balloon }}}}"
    - name: virsh check {rep}
      ansible.builtin.assert:
        that: qbb_virsh_stats | length == {count} and qbb_virsh_stats | map(attribute='current') | select('integer') | list | length == {count}
        quiet: true
'''


def bench_libvirt(runner, python, count, reps, uri=None):
    """(d) and (a-lv) on COUNT libvirt domains; (None, why not) when libvirt is not usable here."""
    lv_python = libvirt_python([python, '/usr/bin/python3', sys.executable])
    if lv_python is None:
        return None, 'libvirt-python is not installed in %s (pip install -r requirements/hypervisor-libvirt.txt)' % python
    domains = LibvirtDomains(python, count, uri)
    out = None
    try:
        try:
            why_not = domains.start()
        except subprocess.TimeoutExpired as exc:
            why_not = 'timed out: %s' % exc
        if why_not:
            return None, why_not
        uri = domains.uri
        out = {'virsh': [], 'getall': [], 'memorystats': [], 'rss_mb': [], 'domains': count, 'a_lv': [], 'a_lv_module': [],
               'a_lv_cpu': [], 'a_lv_rss_mb': [], 'a_lv_phases': [], 'errors': [], 'python': lv_python,
               'a_virsh': [], 'a_virsh_command': [], 'a_virsh_parse': [],
               'a_lv_select': 'targets' if domains.external else 'all_domains'}

        def d_once():
            start = time.perf_counter()
            for name in domains.names:
                result = run_quiet([domains.virsh, '-c', uri, 'dommemstat', name])
                if result.returncode != 0 or 'actual' not in result.stdout:
                    out['errors'].append('virsh dommemstat %s: %s' % (name, result.stdout.strip()[-300:]))
                    return
            out['virsh'].append(time.perf_counter() - start)
            for mode, key in (('getall', 'getall'), ('memorystats', 'memorystats')):
                wall, rss_kb, code, output, errors, _cpu = timed_child(
                    [lv_python, LIBVIRT_READ, '--uri', uri, '--prefix', LIBVIRT_PREFIX, '--mode', mode])
                data = last_json(output) if code == 0 else None
                if not data or data.get('domains') != count:
                    out['errors'].append('libvirt_read.py --mode %s: %s %s' % (mode, output[-300:], errors[-300:]))
                    return
                out[key].append(wall)
                if mode == 'getall':
                    out['rss_mb'].append(rss_kb / 1024.0)

        # (d) brackets the (a-lv) playbook, half before and half after, like the floors in bench_set.
        for _repeat in range((reps + 1) // 2):
            d_once()
        if domains.external:
            select = '        targets: %s' % json.dumps([{'domain': name} for name in domains.names])
        else:
            select = '        all_domains: true'
        argv = [domains.virsh, '-c', uri, 'domstats', '--balloon'] + (domains.names if domains.external else [])
        tasks = ''
        # Repeat 0 is not measured: it pays the playbook's first-task start-up and each module's first use.
        for rep in range(0, reps + 1):
            pair = [LIBVIRT_TASK.format(rep=rep, uri=uri, select=select), VIRSH_TASKS.format(rep=rep, argv=json.dumps(argv), count=count)]
            # Alternating which goes first (the same place in every other repeat).
            tasks += ''.join(pair if rep % 2 else pair[::-1])
        log('libvirt: playbook with %d repeats of (a-lv) and (a-virsh) over %d domains' % (reps, count))
        run = runner.run('libvirt', LIBVIRT_PLAYBOOK.format(tasks=tasks), '[bench]\nlocalhost ansible_connection=local\n',
                         extra_env={'ANSIBLE_FILTER_PLUGINS': FILTERS})
        out['playbook_wall'] = run['wall']
        out['playbook_dir'] = run['dir']
        for rep in range(1, reps + 1):
            task = task_by_name(run['tasks'], 'alv %d' % rep)
            problem = task_ok(task)
            if not problem and any(data.get('vms') != count for data in task['hosts'].values()):
                problem = 'read %s domains, expected %d' % ([data.get('vms') for data in task['hosts'].values()], count)
            if problem:
                out['errors'].append('alv %d: %s' % (rep, problem))
                continue
            summary = module_summary(task, run['modules'])
            out['a_lv'].append(task['duration'])
            out['a_lv_module'].append(summary.get('module_s'))
            out['a_lv_cpu'].append(summary.get('cpu_s'))
            out['a_lv_rss_mb'].append(summary.get('peak_rss_mb'))
            out['a_lv_phases'].append(summary.get('phases'))
            # (a-virsh): the command and the parsing; the assert only checks that every domain was read.
            command, parse = task_by_name(run['tasks'], 'virsh %d' % rep), task_by_name(run['tasks'], 'virsh parse %d' % rep)
            problem = task_ok(command) or task_ok(parse) or task_ok(task_by_name(run['tasks'], 'virsh check %d' % rep))
            if problem:
                out['errors'].append('virsh %d: %s' % (rep, problem))
                continue
            out['a_virsh'].append(command['duration'] + parse['duration'])
            out['a_virsh_command'].append(command['duration'])
            out['a_virsh_parse'].append(parse['duration'])
        for _repeat in range(reps // 2):
            d_once()
        return out, None
    finally:
        domains.stop()
        if out is not None:
            out['libvirt'] = domains.info


# ---------------------------------------------------------------------------------------------
# fleet
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# concurrency sweep and profile
# ---------------------------------------------------------------------------------------------


def concurrency_sweep(python, collections, sockets, work, reps, levels):
    targets_file = os.path.join(work, 'sweep-targets.json')
    with open(targets_file, 'w') as handle:
        json.dump([{'socket': path} for path in sockets], handle)
    rows = []
    for level in levels:
        row = {'concurrency': level, 'engine_loop_s': [], 'engine_hold_median_ms': [], 'floor_loop_s': [],
               'floor_hold_median_ms': []}
        for _repeat in range(reps):
            wall, rss, code, output, errors, _cpu = timed_child(
                [python, ENGINE_DIRECT, '--collections', collections, targets_file, '--concurrency', str(level)])
            if code == 0:
                data = json.loads(output)
                row['engine_loop_s'].append(data['loop_s'])
                row['engine_hold_median_ms'].append(hold_summary(data['holds_ms'])['median'])
            wall, rss, code, output, errors, _cpu = timed_child([python, FLOOR, targets_file, '--concurrency', str(level)])
            if code == 0:
                data = json.loads(output)
                row['floor_loop_s'].append(data['loop_s'])
                row['floor_hold_median_ms'].append(hold_summary(data['holds_ms'])['median'])
        for key in list(row):
            if isinstance(row[key], list):
                row[key] = median(row[key])
        rows.append(row)
    return {'vms': len(sockets), 'rows': rows, 'reps': reps}


def capture_payload(ansible, sockets, directory, name):
    """(AnsiballZ payload of one balloon_stats_info task over SOCKETS, targets file) kept by ANSIBLE_KEEP_REMOTE_FILES, or (None, why)."""
    os.makedirs(directory, exist_ok=True)
    targets = [{'socket': path} for path in sockets]
    targets_file = os.path.join(directory, 'targets.json')
    with open(targets_file, 'w') as handle:
        json.dump(targets, handle)
    keep = os.path.join(directory, 'remote')
    playbook = ('---\n- hosts: bench\n  gather_facts: false\n  vars_files: [targets.json]\n  tasks:\n'
                '    - name: capture\n      qmp.balloon.balloon_stats_info:\n        targets: "{{ bench_targets }}"\n')
    run = ansible.run(name, playbook, '[bench]\nlocalhost ansible_connection=local\n',
                      extra_files={'targets.json': json.dumps({'bench_targets': targets})},
                      extra_env={'ANSIBLE_KEEP_REMOTE_FILES': '1', 'ANSIBLE_REMOTE_TMP': keep})
    payloads = []
    for base, _dirs, files in os.walk(keep):
        payloads += [os.path.join(base, filename) for filename in files if filename.startswith('AnsiballZ_')]
    if run['rc'] != 0 or not payloads:
        return None, 'could not capture the AnsiballZ payload (rc %s)' % run['rc']
    return payloads[0], targets_file


def engine_pairs(ansible, sockets, floor_python, work, pairs):
    """Target 2 side by side: the module process (its kept payload, run as Ansible runs it) and the floor, in alternating order.

    Each pair is two whole processes on the same VMs seconds apart; the median of the per-pair
    module/floor ratios is what the target is judged on (the playbook's module runs and the floors
    that bracket it are minutes apart, and the load here moves them by a factor 2).
    """
    directory = os.path.join(work, 'engine-pairs')
    payload, targets_file = capture_payload(ansible, sockets, directory, 'engine-pairs')
    out = {'module': [], 'floor': [], 'ratios': [], 'module_cpu': [], 'floor_cpu': [], 'module_phases': [], 'floor_loop': [], 'errors': []}
    if payload is None:
        out['errors'].append(targets_file)
        return out
    modlog = os.path.join(directory, 'modules.jsonl')
    for number in range(pairs):
        walls = {}
        for kind in (('module', 'floor') if number % 2 == 0 else ('floor', 'module')):
            command = [ansible.python, payload] if kind == 'module' else [floor_python, FLOOR, targets_file]
            wall, _rss, code, output, errors, cpu = timed_child(command, env=probe_env(modlog) if kind == 'module' else None)
            if code != 0 or (kind == 'module' and '"failed": true' in output):
                out['errors'].append('engine pair %d, %s exited %d: %s %s' % (number, kind, code, output[-300:], errors[-300:]))
                break
            walls[kind] = wall
            out[kind].append(wall)
            out[kind + '_cpu'].append(cpu)
            if kind == 'module':
                out['module_phases'].append(probe_phases(modlog))
            else:
                out['floor_loop'].append(last_json(output).get('loop_s'))
        if len(walls) == 2:
            out['ratios'].append(walls['module'] / walls['floor'])
    return out


def pair_breakdown(pairs):
    """Medians of the module's phases and of the floor's loop in the side-by-side pairs (keys pair_*)."""
    phases = [phase for phase in pairs.get('module_phases', []) if phase]
    med = {}
    if phases:
        med['pair_phases'] = {key: median([phase[key] for phase in phases]) for key in phases[0]}
    loops = [loop for loop in pairs.get('floor_loop', []) if loop is not None]
    if loops:
        med['pair_floor_loop'] = median(loops)
        med['pair_floor_rest'] = median([wall - loop for wall, loop in zip(pairs['floor'], pairs['floor_loop']) if loop is not None])
    return med


def probe_env(modlog):
    """The environment of a kept payload run with bench/probe (phases only: no per-VM hooks), the records appended to MODLOG."""
    env = dict(os.environ)
    env.update({'QMP_BENCH_MODLOG': modlog, 'QMP_BENCH_HOLD': '0',
                'PYTHONPATH': os.path.join(BENCH, 'probe') + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')})
    return env


def probe_phases(modlog):
    """The phases of the last module process recorded in MODLOG (bench/probe/sitecustomize.py), seconds; {} without a record."""
    try:
        with open(modlog) as handle:
            record = json.loads([line for line in handle if line.strip()][-1])
    except (OSError, ValueError, IndexError):
        return {}
    if not (record.get('t_loop_start') and record.get('t_loop_end') and record.get('t_exit')):
        return {}
    return {'start_imports_args': record['t_loop_start'] - record['t_proc'], 'event_loop': record['t_loop_end'] - record['t_loop_start'],
            'results_to_exit': record['t_exit'] - record['t_loop_end'], 'exit_json': record['t_end'] - record['t_exit']}


def run_profile(bench_python, ansible, sockets, work):
    """Capture the AnsiballZ payload of one (a) task and profile it under py-spy (module) plus the floor."""
    if not bench_python:
        return None
    directory = os.path.join(work, 'profile')
    payload, targets_file = capture_payload(ansible, sockets, directory, 'profile-capture')
    if payload is None:
        return {'error': targets_file}
    command = [bench_python, PROFILE, '--out', directory, '--module-python', ansible.python, '--payload', payload,
               '--floor', FLOOR, '--targets', targets_file]
    result = run_quiet(command)
    if result.returncode != 0:
        return {'error': 'profile_module.py failed: %s' % result.stdout[-1000:]}
    with open(os.path.join(directory, 'profile.json')) as handle:
        return json.load(handle)


# ---------------------------------------------------------------------------------------------
# fixed cost: one task of each module with no VM against one ansible.builtin.stat task
# ---------------------------------------------------------------------------------------------

#: kind -> the task's module and arguments (None: the empty play). info and polling get no VM.
FIXED_TASKS = (
    ('empty', None),
    ('stat', 'ansible.builtin.stat:\n        path: /'),
    ('info', 'qmp.balloon.balloon_stats_info:\n        targets: []'),
    ('polling', 'qmp.balloon.balloon_stats_polling:\n        targets: []\n        interval: %d' % INTERVAL),
)

FIXED_PLAYBOOK = '''---
- name: fixed cost {kind}
  hosts: bench
  gather_facts: false
  tasks:
{tasks}
'''

#: Import groups of the breakdown (python -X importtime in the module process), first match wins.
IMPORT_GROUPS = (
    ('our module_utils', ('ansible_collections',)),
    ('qemu.qmp', ('qemu',)),
    ('asyncio', ('asyncio', '_asyncio', 'concurrent', 'selectors', 'heapq')),
    ('ssl', ('ssl', '_ssl')),
    ('libvirt', ('libvirt', 'libvirtmod')),
    ('xml.etree', ('xml', '_elementtree', 'pyexpat')),
    ('ansible.module_utils (core)', ('ansible',)),
)


def import_breakdown(python, payload, runs=3):
    """``{group: ms}``: what each group of imports costs in a run of a kept AnsiballZ payload (self times, median of RUNS)."""
    each = [_import_groups(run_quiet([python, '-X', 'importtime', payload]).stdout) for _run in range(runs)]
    return {group: median([groups.get(group, 0.0) for groups in each]) for group in each[0]}


def _import_groups(text):
    groups = {}
    total = 0
    for line in text.splitlines():
        if not line.startswith('import time:') or 'self [us]' in line:
            continue
        try:
            self_us, _cumulative, name = line[len('import time:'):].split('|', 2)
            self_us = int(self_us)
        except ValueError:
            continue
        name = name.strip()
        total += self_us
        group = 'other stdlib'
        for label, prefixes in IMPORT_GROUPS:
            if any(name == prefix.rstrip('.') or name.startswith(prefix.rstrip('.') + '.') for prefix in prefixes):
                group = label
                break
        groups[group] = groups.get(group, 0) + self_us / 1000.0
    groups['total'] = total / 1000.0
    return groups


def fixed_cost(runner, tasks_per_play, reps, import_runs=3):
    """Per-task cost of each module with no VM next to ansible.builtin.stat, all in this run.

    Per kind, a play of ``tasks_per_play`` identical tasks; per-task time = (playbook wall - the
    empty play's wall) / tasks_per_play, per repeat (the kinds' order rotates between repeats);
    medians. Then, per repeat, one play of ``tasks_per_play`` rounds of stat, info and polling
    side by side: the median of each round's info/stat (polling/stat) task-duration ratio is
    what the target is judged on. Also the module process's own time (probe) and, from one kept
    payload of each kind, its size and its imports (python -X importtime).
    """
    kinds = [kind for kind, _task in FIXED_TASKS]
    out = {'tasks_per_play': tasks_per_play, 'reps': reps, 'errors': [],
           'wall': {kind: [] for kind in kinds}, 'per_task': {kind: [] for kind in kinds if kind != 'empty'},
           'task_s': {kind: [] for kind in kinds if kind != 'empty'}, 'module_s': {kind: [] for kind in kinds if kind != 'empty'},
           'paired': {'info': [], 'polling': []}, 'mixed_task_s': {kind: [] for kind in kinds if kind != 'empty'},
           'mixed_module_s': {kind: [] for kind in kinds if kind != 'empty'}}
    inventory = '[bench]\nlocalhost ansible_connection=local\n'
    for rep in range(reps):
        order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
        walls = {}
        for kind in order:
            task = dict(FIXED_TASKS)[kind]
            if task is None:
                tasks = '    []'
            else:
                tasks = ''.join('    - name: %s %d\n      %s\n' % (kind, number, task) for number in range(tasks_per_play))
            run = runner.run('fixed-%s-%d' % (kind, rep), FIXED_PLAYBOOK.format(kind=kind, tasks=tasks), inventory)
            if run['rc'] != 0:
                out['errors'].append('fixed cost %s: ansible-playbook exited %d (see %s)' % (kind, run['rc'], run['dir']))
                continue
            walls[kind] = run['wall']
            out['wall'][kind].append(run['wall'])
            if task is not None:
                durations = [entry['duration'] for entry in run['tasks'] if entry.get('duration') is not None]
                out['task_s'][kind].append(median(durations))
                out['module_s'][kind].append(median([module['t_end'] - module['t_proc'] for module in run['modules']]))
        for kind in out['per_task']:
            if kind in walls and 'empty' in walls:
                out['per_task'][kind].append((walls[kind] - walls['empty']) / float(tasks_per_play))
        # The same three side by side in one play: TASKS_PER_PLAY rounds of stat, info, polling (the order rotating
        # between rounds); each round's info/stat and polling/stat task durations are a pair measured seconds apart,
        # which the load of a shared machine (a factor 2 between minutes here) moves much less than it moves plays.
        measured = [kind for kind in kinds if kind != 'empty']
        tasks = ''
        # Round 0 is not measured: its first task pays the play's start-up.
        for number in range(tasks_per_play + 1):
            turn = measured[number % len(measured):] + measured[:number % len(measured)]
            tasks += ''.join('    - name: %s %d\n      %s\n' % (kind, number, dict(FIXED_TASKS)[kind]) for kind in turn)
        run = runner.run('fixed-mixed-%d' % rep, FIXED_PLAYBOOK.format(kind='side by side', tasks=tasks), inventory)
        if run['rc'] != 0:
            out['errors'].append('fixed cost side by side: ansible-playbook exited %d (see %s)' % (run['rc'], run['dir']))
            continue
        for number in range(1, tasks_per_play + 1):
            round_tasks = {kind: task_by_name(run['tasks'], '%s %d' % (kind, number)) for kind in measured}
            if any(task is None or task.get('duration') is None for task in round_tasks.values()):
                continue
            for kind in ('info', 'polling'):
                out['paired'][kind].append(round_tasks[kind]['duration'] / round_tasks['stat']['duration'])
            for kind, task in round_tasks.items():
                out['mixed_task_s'][kind].append(task['duration'])
                procs = modules_in(task, run['modules'])
                if len(procs) == 1:
                    out['mixed_module_s'][kind].append(procs[0]['t_end'] - procs[0]['t_proc'])
    # One kept payload of each module: its size and its imports.
    keep = os.path.join(runner.work, 'fixed-keep')
    tasks = ''.join('    - name: %s\n      %s\n' % (kind, task) for kind, task in FIXED_TASKS if task)
    playbook = FIXED_PLAYBOOK.format(kind='payloads', tasks=tasks)
    run = runner.run('fixed-payloads', playbook, inventory, extra_env={'ANSIBLE_KEEP_REMOTE_FILES': '1', 'ANSIBLE_REMOTE_TMP': keep})
    out['payload_kb'] = {}
    out['imports_ms'] = {}
    names = {'stat': 'stat', 'info': 'balloon_stats_info', 'polling': 'balloon_stats_polling'}
    for base, _dirs, files in os.walk(keep):
        for name in files:
            for kind, module in names.items():
                if name == 'AnsiballZ_%s.py' % module:
                    path = os.path.join(base, name)
                    out['payload_kb'][kind] = os.path.getsize(path) / 1024.0
                    out['imports_ms'][kind] = import_breakdown(runner.python, path, import_runs)
    med = {'per_task': {kind: median(values) for kind, values in out['per_task'].items()},
           'task_s': {kind: median(values) for kind, values in out['task_s'].items()},
           'module_s': {kind: median(values) for kind, values in out['module_s'].items()},
           'wall': {kind: median(values) for kind, values in out['wall'].items()}}
    med['mixed_task_s'] = {kind: median(values) for kind, values in out['mixed_task_s'].items()}
    med['mixed_module_s'] = {kind: median(values) for kind, values in out['mixed_module_s'].items()}
    for kind in ('info', 'polling'):
        med['%s_paired' % kind] = median(out['paired'][kind])
        med['%s_over_stat' % kind] = ratio(med['per_task'].get(kind), med['per_task'].get('stat'))
        med['%s_task_over_stat' % kind] = ratio(med['task_s'].get(kind), med['task_s'].get('stat'))
    out['median'] = med
    return out


# ---------------------------------------------------------------------------------------------
# engine targets as whole processes: what the VMs add to a task against what they add to qemu.qmp
# ---------------------------------------------------------------------------------------------

WHOLE_PLAYBOOK = '''---
- name: whole {kind}
  hosts: bench
  gather_facts: false
  vars_files: [targets.json]
  tasks:
    - name: {kind}
      {task}
'''

#: kind -> the one task of its playbook (info: the same task over all the VMs or over none).
WHOLE_TASKS = (
    ('stat', 'ansible.builtin.stat:\n        path: /'),
    ('info', 'qmp.balloon.balloon_stats_info:\n        targets: "{{ bench_targets }}"'),
)


def engine_whole(runner, sockets, floor_python, work, reps):
    """The engine targets of issue 23 as whole processes, none warmed up, each timed from outside.

    Per round, in rotating order: ansible-playbook with one balloon_stats_info task over all SOCKETS
    (``info-N``) and the same playbook with an empty target list (``info-0``), bench/floor.py over
    all SOCKETS and over none, and ansible-playbook with one ansible.builtin.stat task. Per round:
    (info-N - info-0) / (floor-N - floor-0), what the VMs add to a task against what they add to a
    bare qemu.qmp process; info-N / floor-N (whole processes, information); info-0 / stat. Medians
    of the per-round ratios. No callback and no module probe run in these processes.
    """
    directory = os.path.join(work, 'engine-whole')
    os.makedirs(directory, exist_ok=True)
    targets = {'all': [{'socket': path} for path in sockets], 'none': []}
    files = {}
    for name, entries in targets.items():
        files[name] = os.path.join(directory, 'targets-%s.json' % name)
        with open(files[name], 'w') as handle:
            json.dump(entries, handle)
    n = len(sockets)
    kinds = ('info-%d' % n, 'info-0', 'floor-%d' % n, 'floor-0', 'stat')
    out = {'vms': n, 'reps': reps, 'walls': {kind: [] for kind in kinds}, 'per_vm_ratio': [], 'whole_ratio': [], 'none_over_stat': [],
           'task_added': [], 'floor_added': [], 'errors': []}
    inventory = '[bench]\nlocalhost ansible_connection=local\n'
    for rep in range(reps):
        order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
        walls = {}
        for kind in order:
            if kind.startswith('floor-'):
                wall, _rss, code, output, errors, _cpu = timed_child([floor_python, FLOOR, files['all' if kind != 'floor-0' else 'none']])
                if code != 0:
                    out['errors'].append('%s exited %d: %s %s' % (kind, code, output[-300:], errors[-300:]))
                    continue
            else:
                task = dict(WHOLE_TASKS)['stat' if kind == 'stat' else 'info']
                entries = targets['none' if kind in ('info-0', 'stat') else 'all']
                run = runner.run('whole-%s-%d' % (kind, rep), WHOLE_PLAYBOOK.format(kind=kind, task=task), inventory,
                                 extra_files={'targets.json': json.dumps({'bench_targets': entries})}, probe=False, timer=False)
                if run['rc'] != 0:
                    out['errors'].append('%s: ansible-playbook exited %d (see %s)' % (kind, run['rc'], run['dir']))
                    continue
                wall = run['wall']
            walls[kind] = wall
            out['walls'][kind].append(wall)
        if all(kind in walls for kind in kinds):
            task_added = walls['info-%d' % n] - walls['info-0']
            floor_added = walls['floor-%d' % n] - walls['floor-0']
            out['task_added'].append(task_added)
            out['floor_added'].append(floor_added)
            out['per_vm_ratio'].append(ratio(task_added, floor_added))
            out['whole_ratio'].append(ratio(walls['info-%d' % n], walls['floor-%d' % n]))
            out['none_over_stat'].append(ratio(walls['info-0'], walls['stat']))
    out['median'] = {kind: median(values) for kind, values in out['walls'].items()}
    for key in ('per_vm_ratio', 'whole_ratio', 'none_over_stat', 'task_added', 'floor_added'):
        out['median'][key] = median(out[key])
    return out
