# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plot bench/run.py's results.json: time against the number of VMs for each method, peak memory, and the role as users
run it (or, without it, the in-play fleet sweep).

    python plot.py results.json bench.png          (bench venv: matplotlib)
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
from report import fmt, vm_marginal  # noqa: E402  pylint: disable=wrong-import-position

SERIES = (
    ('b', '(b) one task per VM (loop)', 'tab:red', 'o'),
    ('a', '(a) one balloon_stats_info task', 'tab:blue', 'o'),
    ('e1', '(e) balloon_stats_polling, first run', 'tab:purple', 'v'),
    ('e2', '(e) balloon_stats_polling, second run', 'tab:pink', '^'),
    ('a_module', '(a) its module process alone', 'tab:cyan', 's'),
    ('a0', '(a0) the same task with no VM (Ansible fixed cost)', 'tab:gray', 'X'),
    ('c', '(c) floor: qemu.qmp script, no Ansible', 'tab:green', 'D'),
    ('c_raw', '(c) raw: same reads, plain asyncio, no qemu.qmp', 'tab:olive', 'P'),
)


def annotate_marginal(axis, results):
    """The VM sweep's per-VM marginal cost (bench/report.py vm_marginal) in the corner of the time plot."""
    sweep = vm_marginal(results)
    if not sweep:
        return
    lines = ['one more VM costs (ms, slope between sizes):']
    for row in sweep['slopes']:
        lines.append('%d -> %d: module %s, floor %s, task %s' % (row['from'], row['to'], fmt(row['module_ms_per_vm'], digits=2),
                                                                 fmt(row['floor_ms_per_vm'], digits=2), fmt(row['task_ms_per_vm'], digits=2)))
    axis.text(0.99, 0.02, '\n'.join(lines), transform=axis.transAxes, ha='right', va='bottom', fontsize=7.5,
              bbox={'boxstyle': 'round', 'facecolor': 'white', 'alpha': 0.8, 'edgecolor': 'grey'})


def plot_fleet(axes, overhead):
    """The fleet sweep: play time against hypervisors, the role against bare module tasks."""
    for name, label, colour in (('role main', 'role main (configure + gather)', 'tab:blue'),
                                ('bare two', 'bare polling + info tasks', 'tab:green')):
        line = overhead['curve'].get(name) or {}
        points = [point for point in line.get('points', []) if point[1] is not None]
        if not points:
            continue
        slope = line.get('per_host_s')
        axes.plot([point[0] for point in points], [point[1] for point in points], marker='o', color=colour,
                  label='%s: %s s per hypervisor' % (label, '%.2f' % slope if slope is not None else '-'))
    axes.set_xlabel('hypervisors (x %d fake VMs, forks %d)' % (overhead['vms_per_host'], overhead['forks']))
    axes.set_ylabel('play time, s')
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    axes.set_title('Fleet sweep')
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc='upper left')


def plot_users(axes, users):
    """The role as users run it: whole ansible-playbook processes, median seconds, the role beside its bare pair."""
    names = [name for name in ('bare info', 'role gather', 'bare two', 'role main', 'role main, report')
             if (users['median'].get(name) or {}).get('wall') is not None]
    colours = ['tab:green' if name.startswith('bare') else 'tab:blue' for name in names]
    walls = [users['median'][name]['wall'] for name in names]
    axes.barh(range(len(names)), walls, color=colours)
    axes.set_yticks(range(len(names)))
    axes.set_yticklabels(names, fontsize=8)
    axes.invert_yaxis()
    for comparison in users['comparisons']:
        if comparison['role'] in names and comparison['ratio'] is not None:
            index = names.index(comparison['role'])
            axes.annotate('%.2fx %s (target %.1fx)' % (comparison['ratio'], comparison['bare'], comparison['target']),
                          (walls[index], index), textcoords='offset points', xytext=(4, -3), fontsize=7.5)
    axes.set_xlim(0, max(walls or [1]) * 1.8)
    axes.set_xlabel('whole ansible-playbook process, s (median of %d)' % users['rounds'])
    axes.set_title('Role as users run it: %d x %d fakes, forks %d' % (users['hosts'], users['vms_per_host'], users['forks']))
    axes.grid(True, axis='x', alpha=0.3)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as handle:
        results = json.load(handle)
    fakes = sorted((result for result in results['sets'] if result['kind'] == 'fake'), key=lambda result: result['n'])
    real = [result for result in results['sets'] if result['kind'] == 'qemu']
    curve = (results.get('fleet_overhead') or {}).get('curve') or {}
    has_fleet = any(len(line.get('points', [])) > 1 for line in curve.values())
    users = results.get('users')
    if users and users.get('median'):
        figure, (left, right, users_axes) = plt.subplots(1, 3, figsize=(18, 5.5), gridspec_kw={'width_ratios': [2, 1, 1.2]})
        plot_users(users_axes, users)
    elif has_fleet:
        figure, (left, right, fleet_axes) = plt.subplots(1, 3, figsize=(18, 5.5), gridspec_kw={'width_ratios': [2, 1, 1]})
        plot_fleet(fleet_axes, results['fleet_overhead'])
    else:
        figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={'width_ratios': [2, 1]})
    for key, label, colour, marker in SERIES:
        points = [(result['n'], result['median'].get(key)) for result in fakes if result['median'].get(key)]
        if points:
            left.plot([point[0] for point in points], [point[1] for point in points], marker=marker, color=colour, label=label + ' (fake)')
            extrapolated = [result for result in fakes if key == 'b' and result['b_extrapolated'] and result['median'].get('b')]
            for result in extrapolated:
                left.annotate('extrapolated', (result['n'], result['median']['b']), textcoords='offset points', xytext=(-75, -12),
                              fontsize=8, color=colour)
        for result in real:
            value = result['median'].get(key)
            if value:
                left.scatter([result['n']], [value], marker=marker, facecolors='none', edgecolors=colour, s=90, linewidths=1.6)
    for result in real:
        for key, label, colour in (('d_virsh', '(d) virsh dommemstat per domain', 'tab:olive'),
                                   ('d_getall', '(d) one getAllDomainStats call', 'tab:brown'),
                                   ('a_lv', '(a-lv) one balloon_stats_info task, transport: libvirt', 'black')):
            value = result['median'].get(key)
            if value:
                left.scatter([result['n']], [value], marker='*', color=colour, s=120, label=label + ' (libvirt)')
    if real:
        left.scatter([], [], marker='o', facecolors='none', edgecolors='grey', s=90,
                     label='hollow: %d real QEMU VMs (-S, 64 MiB)' % real[0]['n'])
    annotate_marginal(left, results)
    left.set_xscale('log')
    left.set_yscale('log')
    left.set_xlabel('VMs')
    left.set_ylabel('seconds (median of %d)' % results['reps'])
    left.set_title('Time to read guest memory stats')
    left.grid(True, which='both', alpha=0.3)
    left.legend(fontsize=8, loc='upper left')

    for key, label, colour in (('a_rss_mb', '(a) module process', 'tab:blue'), ('c_rss_mb', '(c) floor process', 'tab:green')):
        points = [(result['n'], result['median'].get(key)) for result in fakes if result['median'].get(key)]
        if points:
            right.plot([point[0] for point in points], [point[1] for point in points], marker='o', color=colour, label=label)
    right.axhline(150, color='tab:red', linestyle='--', linewidth=1, label='target 150 MB')
    right.set_xscale('log')
    right.set_xlabel('VMs (fake)')
    right.set_ylabel('peak RSS, MB')
    right.set_ylim(bottom=0)
    right.set_title('Peak memory')
    right.grid(True, which='both', alpha=0.3)
    right.legend(fontsize=8)
    machine = results['machine']
    figure.suptitle('qmp.balloon %s: %s, %s CPUs, Python %s, ansible-core %s, qemu.qmp %s' % (
        results.get('commit', ''), machine.get('cpu', '?'), machine.get('cpus', '?'), machine.get('python', '?'),
        machine.get('ansible_core', '?'), machine.get('qemu_qmp', '?')), fontsize=9)
    figure.tight_layout()
    figure.savefig(argv[1], dpi=110)
    return 0


if __name__ == '__main__':
    sys.exit(main())
