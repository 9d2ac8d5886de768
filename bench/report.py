# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bench's report: the tables of table.txt and the check of the targets (bench/plot.py draws the
plot, in the bench venv).
"""

from __future__ import annotations

from runner import INTERVAL, ratio
from fleet import overhead_table, overhead_targets
from users import users_table, users_targets


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def fmt(value, unit='', digits=2):
    if value is None:
        return '-'
    return ('%.*f' % (digits, value)) + unit


def table(results):
    sets = results['sets']
    lines = []
    header = ('set', 'VMs', '(a) task s', '(a) module s', '(a0) s', '(c) floor s', '(a)/(c)', 'mod/(c)', '(a-a0)/(c)', '(b) s', '(b)/(a)',
              '(d) virsh s', '(d) getAll s', '(d)/(a)', '(e) 1st s', '(e) 2nd s', 'peak MB', 'hold ms mod/floor')
    rows = [header]
    for result in sets:
        med = result['median']
        b = fmt(med['b'], digits=1) + ('*' if result['b_extrapolated'] else '')
        d_over = '-'
        if med.get('d_virsh_over_a') is not None:
            d_over = '%s / %s' % (fmt(med['d_virsh_over_a'], digits=1), fmt(med['d_getall_over_a'], digits=2))
        rows.append((result['label'], str(result['n']), fmt(med['a']), fmt(med['a_module']), fmt(med.get('a0')), fmt(med['c']),
                     fmt(med['a_over_c'], digits=1), fmt(med['a_module_over_c'], digits=1), fmt(med.get('a_net_over_c'), digits=1), b,
                     fmt(med['b_over_a'], digits=0), fmt(med.get('d_virsh')),
                     fmt(med.get('d_getall')), d_over, fmt(med['e1']), fmt(med['e2']), fmt(med['a_rss_mb'], digits=0),
                     '%s / %s' % (fmt(med['a_hold_median_ms'], digits=1), fmt(med['c_hold_median_ms'], digits=1))))
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    for number, row in enumerate(rows):
        lines.append('  '.join(cell.rjust(width) for cell, width in zip(row, widths)))
        if number == 0:
            lines.append('  '.join('-' * width for width in widths))
    lines.append('(a), (b), (e): task duration from the task start to its result; module s: the module process alone; '
                 '(c), (d): whole processes. Medians of %d repeats. * = extrapolated from a sample.' % results['reps'])
    lines.append('(a0): the same module with targets: [] (no VM): what any task with this module costs (Ansible\'s fixed cost); '
                 '(a-a0)/(c): what the VMs add to the task, over the floor.')
    lines.append('(d)/(a): virsh dommemstat per domain / one getAllDomainStats, each over (a). hold: median connection '
                 'hold time per VM (connect to close) in the module / in the floor.')
    lines.append('(e) 1st: a change of the interval on every VM (0 -> %d in repeat 1, then %d -> %d, %d -> %d, ...); '
                 '(e) 2nd: the same interval again (no change).' % (INTERVAL, INTERVAL, 2 * INTERVAL, 2 * INTERVAL, INTERVAL))
    return '\n'.join(lines)


def phases_table(results):
    lines = ['Where the time of one (a) task goes (medians, seconds; CPU = user+system seconds of the module / floor process;',
             'raw floor = bench/floor.py --client raw, the same reads with plain asyncio streams instead of qemu.qmp):']
    keys = ('ansible_before_module', 'interpreter_start', 'ansiballz_imports_args', 'event_loop', 'results_to_exit', 'exit_json',
            'ansible_after_module')
    header = ('set',) + keys + ('module CPU', 'floor CPU', 'CPU ratio', 'raw floor s', 'raw floor CPU')
    rows = [header]
    for result in results['sets']:
        med = result['median']
        phases = med.get('a_phases') or {}
        rows.append((result['label'],) + tuple(fmt(phases.get(key), digits=3) for key in keys)
                    + (fmt(med.get('a_cpu'), digits=3), fmt(med.get('c_cpu'), digits=3), fmt(med.get('a_cpu_over_c_cpu'), digits=1),
                       fmt(med.get('c_raw'), digits=3), fmt(med.get('c_raw_cpu'), digits=3)))
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    for row in rows:
        lines.append('  '.join(cell.rjust(width) for cell, width in zip(row, widths)))
    return '\n'.join(lines)


def fleet_table(fleet):
    lines = ['Fleet: %d hypervisors x %d fake VMs (local connection, forks %d): %.1f s in tasks, playbook %.1f s'
             % (fleet['hosts'], fleet['vms_per_host'], fleet['forks'], fleet['tasks_total_s'], fleet['playbook_wall'])]
    rows = [('task', 'wall s', 'share', 'module runs', 'module s (sum)', 'module s (median)')]
    for task in fleet['tasks']:
        rows.append((task['name'][:70], fmt(task['duration']), fmt(100.0 * task['duration'] / fleet['tasks_total_s'], '%', 0),
                     str(task['module_processes']), fmt(task['module_s_sum']), fmt(task['module_s_median'], digits=3)))
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    for row in rows:
        lines.append('  '.join(cell.ljust(widths[0]) if index == 0 else cell.rjust(widths[index]) for index, cell in enumerate(row)))
    return '\n'.join(lines)


def sweep_table(sweep):
    lines = ['Concurrency sweep on %d fake VMs (engine without Ansible vs floor; loop time s, median hold ms; medians of %s repeats):'
             % (sweep['vms'], sweep.get('reps', '?'))]
    rows = [('concurrency', 'engine loop s', 'engine hold ms', 'floor loop s', 'floor hold ms')]
    for row in sweep['rows']:
        rows.append((str(row['concurrency']), fmt(row['engine_loop_s'], digits=3), fmt(row['engine_hold_median_ms'], digits=1),
                     fmt(row['floor_loop_s'], digits=3), fmt(row['floor_hold_median_ms'], digits=1)))
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    for row in rows:
        lines.append('  '.join(cell.rjust(width) for cell, width in zip(row, widths)))
    return '\n'.join(lines)


def libvirt_table(results):
    """(d) and (a-lv) on the libvirt domains, next to (a) on the same number of QMP VMs."""
    sets = [result for result in results['sets'] if result.get('d')]
    if not sets:
        return ''
    first = sets[0]['d'].get('libvirt', {})
    lines = ['libvirt: %s domains on %s (%s; transient, paused, 64 MiB, virtio balloon, stats period %d s):'
             % (sets[0]['d']['domains'], 'a private libvirtd started by libvirt_ctl.py' if first.get('private') else first.get('uri'),
                first.get('version', '?'), INTERVAL),
             '(d): whole processes (virsh dommemstat per domain; libvirt_read.py: one getAllDomainStats(BALLOON), or memoryStats() per domain);',
             '(a-lv): one balloon_stats_info task with transport: libvirt, %s, timed as (a); (a): the QMP set of the same size;'
             % ('all_domains: true' if sets[0]['d'].get('a_lv_select') == 'all_domains' else 'targets: [{domain: ...}]'),
             '(a-virsh): what a libvirt user writes without the collection: one ansible.builtin.command task '
             '"virsh domstats --balloon" plus a set_fact parsing its output with a filter (bench/filter_plugins), '
             'both tasks timed as (a), interleaved with (a-lv).']
    header = ('set', 'domains', '(d) virsh s', '(d) getAll s', '(d) memoryStats s', '(a-lv) task s', '(a-lv) module s', '(a-lv) peak MB',
              '(a-lv)/(d getAll)', 'mod/(d getAll)', '(a) task s', '(d getAll)/(a)', '(d virsh)/(a)', '(a-virsh) s', 'command s',
              'parse s', '(a-lv)/(a-virsh)')
    rows = [header]
    for result in sets:
        med = result['median']
        rows.append((result['label'], str(result['d']['domains']), fmt(med.get('d_virsh')), fmt(med.get('d_getall'), digits=3),
                     fmt(med.get('d_memorystats'), digits=3), fmt(med.get('a_lv')), fmt(med.get('a_lv_module')),
                     fmt(med.get('a_lv_rss_mb'), digits=0), fmt(med.get('a_lv_over_d_getall'), digits=1),
                     fmt(med.get('a_lv_module_over_d_getall'), digits=1), fmt(med.get('a')), fmt(med.get('d_getall_over_a'), digits=2),
                     fmt(med.get('d_virsh_over_a'), digits=2), fmt(med.get('a_virsh'), digits=3), fmt(med.get('a_virsh_command'), digits=3),
                     fmt(med.get('a_virsh_parse'), digits=3), fmt(med.get('a_lv_over_a_virsh'), digits=2)))
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    for row in rows:
        lines.append('  '.join(cell.rjust(width) for cell, width in zip(row, widths)))
    info = first
    lines.append('libvirtd start %s s, %s domains created in %s s (4 at a time), all removed and the daemons stopped in %s s.'
                 % (fmt(info.get('libvirtd_start_s'), digits=1), sets[0]['d']['domains'], fmt(info.get('create_s'), digits=1),
                    fmt(info.get('stop_s'), digits=1)))
    return '\n'.join(lines)


def fixed_table(fixed):
    """Target 1: one task of each module with no VM next to one ansible.builtin.stat task."""
    med = fixed['median']
    lines = ['Fixed cost per task (no VM), medians of %d repeats. Side by side: %d rounds of stat, info, polling in one play, '
             'task durations (callback) and the median of the per-round ratios to stat; per task: %d tasks of one module per play '
             'minus an empty play (%s s); module s = the module process alone (side by side); payload = the AnsiballZ file; '
             'imports = python -X importtime in the module process (self times, ms):'
             % (fixed['reps'], fixed['tasks_per_play'], fixed['tasks_per_play'], fmt(med['wall'].get('empty')))]
    groups = []
    for imports in fixed.get('imports_ms', {}).values():
        groups += [group for group in imports if group not in groups and group != 'total']
    header = ('module', 'side by side s', 'paired /stat', 'per task s', '/stat', 'module s', 'payload KB', 'imports ms') + tuple(groups)
    rows = [header]
    for kind in ('stat', 'info', 'polling'):
        imports = fixed.get('imports_ms', {}).get(kind, {})
        rows.append((kind, fmt(med.get('mixed_task_s', {}).get(kind), digits=3),
                     '-' if kind == 'stat' else fmt(med.get('%s_paired' % kind), digits=2),
                     fmt(med['per_task'].get(kind), digits=3),
                     '-' if kind == 'stat' else fmt(med.get('%s_over_stat' % kind), digits=2),
                     fmt(med.get('mixed_module_s', {}).get(kind), digits=3), fmt(fixed.get('payload_kb', {}).get(kind), digits=0),
                     fmt(imports.get('total'), digits=1)) + tuple(fmt(imports.get(group), digits=1) for group in groups))
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    for row in rows:
        lines.append('  '.join(cell.ljust(widths[0]) if index == 0 else cell.rjust(widths[index]) for index, cell in enumerate(row)))
    return '\n'.join(lines)


def fixed_breakdown(fixed, kind):
    """Where one task of KIND costs more than one stat task: the module process, the payload, the imports."""
    med = fixed['median']
    parts = []
    task, stat_task = med['mixed_task_s'].get(kind), med['mixed_task_s'].get('stat')
    module, stat_module = med['mixed_module_s'].get(kind), med['mixed_module_s'].get('stat')
    if None not in (task, stat_task, module, stat_module):
        parts.append('side by side, task %+.3f s, of which the module process %+.3f s and the controller side %+.3f s'
                     % (task - stat_task, module - stat_module, (task - module) - (stat_task - stat_module)))
    payload, stat_payload = fixed.get('payload_kb', {}).get(kind), fixed.get('payload_kb', {}).get('stat')
    if payload is not None and stat_payload is not None:
        parts.append('payload %s KB vs %s KB' % (fmt(payload, digits=0), fmt(stat_payload, digits=0)))
    imports, stat_imports = fixed.get('imports_ms', {}).get(kind, {}), fixed.get('imports_ms', {}).get('stat', {})
    if imports and stat_imports:
        extra = sorted(((imports[group] - stat_imports.get(group, 0), group) for group in imports if group != 'total'), reverse=True)
        parts.append('imports +%s ms (%s)' % (fmt(imports['total'] - stat_imports['total'], digits=0),
                                              ', '.join('%s %+.0f' % (group, value) for value, group in extra if abs(value) >= 1)))
    return '; '.join(parts)


def check_targets(results):
    """The targets of issue 23 ("Done when"), each (name, holds?, measured): the role as users run it,
    the module calls, and the restated engine targets. Everything else is information()."""
    by_label = {result['label']: result['median'] for result in results['sets']}
    checks = []
    if results.get('users'):
        checks += users_targets(results['users'])
    whole = results.get('engine_whole')
    if whole:
        med = whole['median']
        value = med.get('per_vm_ratio')
        n = whole['vms']
        measured = ('%s (median of %d rounds: the task adds %s s, the qemu.qmp process %s s; task with %d VMs %s s, with none %s s; '
                    'floor.py with %d sockets %s s, with none %s s)'
                    % (fmt(value), len(whole['per_vm_ratio']), fmt(med.get('task_added')), fmt(med.get('floor_added')), n,
                       fmt(med.get('info-%d' % n)), fmt(med.get('info-0')), n, fmt(med.get('floor-%d' % n)), fmt(med.get('floor-0'))))
        checks.append(('what %d VMs add to one balloon_stats_info task (whole ansible-playbook processes, with them minus without) '
                       '<= 1.5x what they add to a bare qemu.qmp process (bench/floor.py, %d sockets minus none)' % (n, n),
                       value is not None and value <= 1.5, measured))
    fixed = results.get('fixed')
    if fixed:
        med = fixed['median']
        for kind, module in (('info', 'balloon_stats_info'), ('polling', 'balloon_stats_polling')):
            value = med.get('%s_paired' % kind)
            holds = value is not None and value <= 1.1
            measured = ('side by side %s (task %s s vs %s s); %d tasks per play minus an empty play: %s s vs %s s per task, %s'
                        % (fmt(value, digits=2), fmt(med['mixed_task_s'].get(kind), digits=3),
                           fmt(med['mixed_task_s'].get('stat'), digits=3), fixed['tasks_per_play'], fmt(med['per_task'].get(kind), digits=3),
                           fmt(med['per_task'].get('stat'), digits=3), fmt(med.get('%s_over_stat' % kind), digits=2)))
            if not holds:
                measured += '; ' + fixed_breakdown(fixed, kind)
            checks.append(('one %s task with no VM <= 1.1x one ansible.builtin.stat task' % module, holds, measured))
    for label, med in by_label.items():
        if med.get('a_virsh') is None:
            continue
        lv_phases = med.get('a_lv_phases') or {}
        holds = med.get('a_lv') is not None and med['a_lv'] <= 1.05 * med['a_virsh']
        measured = '%s ((a-lv) %s s vs (a-virsh) %s s: command %s s + parse %s s)' % (
            fmt(med.get('a_lv_over_a_virsh'), digits=2), fmt(med.get('a_lv'), digits=3), fmt(med['a_virsh'], digits=3),
            fmt(med.get('a_virsh_command'), digits=3), fmt(med.get('a_virsh_parse'), digits=3))
        if not holds:
            measured += ('; (a-lv): before the module %s s, the module process %s s (of which up to its first '
                         'libvirt call: start-up, imports and arguments, %s s), after it %s s'
                         % (fmt(lv_phases.get('ansible_before_module'), digits=3), fmt(med.get('a_lv_module'), digits=3),
                            fmt(lv_phases.get('ansiballz_imports_args'), digits=3),
                            fmt(lv_phases.get('ansible_after_module'), digits=3)))
        checks.append(('%s libvirt domains: one balloon_stats_info task with transport: libvirt <= 1.05x a virsh domstats --balloon '
                       'task + a filter' % label.split('-')[1], holds, measured))
    return checks


def information(results):
    """What the bench prints beside the targets, each (name, earlier target met? or None, measured): the whole-process
    ratio, the warm in-play figures (each task's own duration inside one playbook) and the earlier issues' bounds."""
    by_label = {result['label']: result['median'] for result in results['sets']}
    infos = []
    whole = results.get('engine_whole')
    if whole:
        med = whole['median']
        n = whole['vms']
        infos.append(('whole processes: one balloon_stats_info task over %d VMs against bench/floor.py over them' % n, None,
                      '%s (%s s vs %s s)' % (fmt(med.get('whole_ratio')), fmt(med.get('info-%d' % n)), fmt(med.get('floor-%d' % n)))))
        infos.append(('whole processes: the same task with no VM against one ansible.builtin.stat task', None,
                      '%s (%s s vs %s s)' % (fmt(med.get('none_over_stat')), fmt(med.get('info-0')), fmt(med.get('stat')))))
    if results.get('fleet_overhead'):
        infos += [('warm in-play: ' + name.replace('fleet: ', ''), holds, measured)
                  for name, holds, measured in overhead_targets(results['fleet_overhead'])]
    big = by_label.get('fake-1000')
    if big:
        value = big.get('pair_ratio', big['a_module_over_c'])
        measured = ''
        if big.get('pair_ratio') is not None:
            measured = 'side by side %s (module %s s, floor %s s; CPU ratio %s); ' % (
                fmt(big['pair_ratio'], digits=2), fmt(big.get('pair_module')), fmt(big.get('pair_floor')),
                fmt(big.get('pair_cpu_ratio'), digits=2))
        measured += 'in the playbook: module %s s, floor %s s, ratio %s (CPU: %s s vs %s s, ratio %s)' % (
            fmt(big['a_module']), fmt(big['c']), fmt(big['a_module_over_c'], digits=2), fmt(big.get('a_cpu')), fmt(big.get('c_cpu')),
            fmt(big.get('a_cpu_over_c_cpu'), digits=2))
        if big.get('pair_phases'):
            measured += '; ' + engine_breakdown(big, 1.2)
        infos.append(('1000 VMs: the module process against the qemu.qmp floor process (c) (issue 16: <= 1.2x)',
                      value is not None and value <= 1.2, measured))
        infos.append(('1000 VMs: whole (a) task (issue 16: < 3 s)', big['a'] is not None and big['a'] < 3.0, '%s s' % fmt(big['a'])))
        infos.append(('1000 VMs: peak module memory (issue 16: < 150 MB)', big['a_rss_mb'] is not None and big['a_rss_mb'] < 150,
                      '%s MB' % fmt(big['a_rss_mb'], digits=0)))
    sweep = vm_marginal(results)
    if sweep and sweep['slopes']:
        last = sweep['slopes'][-1]
        infos.append(('VM sweep %s fake VMs: per-VM marginal cost' % '/'.join(str(row['n']) for row in sweep['points']), None,
                      'from %s to %s VMs: module process %s ms per VM, floor %s ms per VM (%s), (a) task %s ms per VM' % (
                          last.get('from', '-'), last.get('to', '-'), fmt(last.get('module_ms_per_vm'), digits=2),
                          fmt(last.get('floor_ms_per_vm'), digits=2), fmt(last.get('module_over_floor'), digits=2),
                          fmt(last.get('task_ms_per_vm'), digits=2))))
    hundred = by_label.get('fake-100')
    if hundred:
        infos.append(('100 VMs: (b)/(a), a loop of single-VM tasks against one task (issue 16: >= 30)',
                      hundred['b_over_a'] is not None and hundred['b_over_a'] >= 30, fmt(hundred['b_over_a'], digits=1)))
    for label, med in by_label.items():
        if label.startswith('qemu-'):
            infos.append(('%s real QEMU VMs: (a) task against (c) (issue 16: <= 2x)' % label.split('-')[1],
                          med['a_over_c'] is not None and med['a_over_c'] <= 2,
                          '(a) %s s, (c) %s s, ratio %s (module alone: %s); the same task with no VM (a0) %s s, (a-a0)/(c) %s'
                          % (fmt(med['a']), fmt(med['c']), fmt(med['a_over_c'], digits=2), fmt(med['a_module_over_c'], digits=2),
                             fmt(med.get('a0')), fmt(med.get('a_net_over_c'), digits=2))))
            if med.get('d_getall') is not None:
                infos.append(('%s real QEMU VMs: (a) against getAllDomainStats on as many libvirt domains (issue 16: faster)'
                              % label.split('-')[1], med['a'] is not None and med['a'] < med['d_getall'],
                              '(a) %s s, (d) getAll %s s: (d)/(a) %s; the libvirt transport (a-lv) %s s: (a-lv)/(d getAll) %s'
                              % (fmt(med['a']), fmt(med['d_getall'], digits=3), fmt(med['d_getall_over_a'], digits=2),
                                 fmt(med.get('a_lv')), fmt(med.get('a_lv_over_d_getall'), digits=1))))
    for label, med in by_label.items():
        if label.startswith('fake-'):
            infos.append(('%s: median connection hold per VM (issue 16: < 10 ms)' % label,
                          med['a_hold_median_ms'] is not None and med['a_hold_median_ms'] < 10,
                          'module %s ms, floor %s ms' % (fmt(med['a_hold_median_ms'], digits=1), fmt(med['c_hold_median_ms'], digits=1))))
    return infos


def engine_breakdown(big, target):
    """Why the module process misses TARGET x the floor at the largest set, from the side-by-side pairs (summarise_set's pair_*)."""
    phases = big['pair_phases']
    fixed = phases['start_imports_args'] + phases['results_to_exit'] + phases['exit_json']
    loop, floor_loop = phases['event_loop'], big.get('pair_floor_loop')
    budget = target * big['pair_floor'] - fixed if big.get('pair_floor') is not None else None
    commands, floor_commands = big.get('a_commands_per_vm_n'), big.get('c_commands_per_vm_n')
    text = ('in the pairs, module: start-up, imports and arguments %s s, event loop %s s (%s commands per VM after negotiation), '
            'results and exit_json %s s; floor: event loop %s s (%s commands per VM), the rest of its process %s s; '
            'event loops %s' % (fmt(phases['start_imports_args'], digits=3), fmt(loop, digits=3), fmt(commands, digits=0),
                                fmt(phases['results_to_exit'] + phases['exit_json'], digits=3), fmt(floor_loop, digits=3),
                                fmt(floor_commands, digits=0), fmt(big.get('pair_floor_rest'), digits=3), fmt(ratio(loop, floor_loop), digits=2)))
    if budget is not None and floor_loop:
        text += ('; for %sx the module\'s event loop would have to fit in %s s (%s x the floor\'s, which sends %s commands per VM to its %s)'
                 % (fmt(target, digits=1), fmt(budget, digits=3), fmt(budget / floor_loop, digits=2), fmt(floor_commands, digits=0),
                    fmt(commands, digits=0)))
    return text


def vm_marginal(results):
    """The VM sweep on the fake sets: per-VM marginal cost (slope between consecutive sizes) of the module process, the (a) task and
    the floor; None with fewer than two sizes."""
    fakes = sorted((result for result in results['sets'] if result['kind'] == 'fake'), key=lambda result: result['n'])
    if len(fakes) < 2:
        return None
    points = [{'n': result['n'], 'module_s': result['median'].get('a_module'), 'task_s': result['median'].get('a'),
               'floor_s': result['median'].get('c')} for result in fakes]

    def slope(low, high, key):
        if low[key] is None or high[key] is None:
            return None
        return 1000.0 * (high[key] - low[key]) / (high['n'] - low['n'])
    slopes = []
    for low, high in zip(points, points[1:]):
        row = {'from': low['n'], 'to': high['n'], 'module_ms_per_vm': slope(low, high, 'module_s'), 'task_ms_per_vm': slope(low, high, 'task_s'),
               'floor_ms_per_vm': slope(low, high, 'floor_s')}
        row['module_over_floor'] = ratio(row['module_ms_per_vm'], row['floor_ms_per_vm'])
        slopes.append(row)
    return {'points': points, 'slopes': slopes}


def vm_sweep_table(results):
    sweep = vm_marginal(results)
    if not sweep:
        return ''
    rows = [('VMs', 'from', '(a) task s', 'task ms/VM', 'module s', 'module ms/VM', 'floor (c) s', 'floor ms/VM', 'module/floor per VM')]
    rows.append((str(sweep['points'][0]['n']), '-', fmt(sweep['points'][0]['task_s']), '-', fmt(sweep['points'][0]['module_s']), '-',
                 fmt(sweep['points'][0]['floor_s']), '-', '-'))
    for point, row in zip(sweep['points'][1:], sweep['slopes']):
        rows.append((str(point['n']), str(row['from']), fmt(point['task_s']), fmt(row['task_ms_per_vm'], digits=3), fmt(point['module_s']),
                     fmt(row['module_ms_per_vm'], digits=3), fmt(point['floor_s']), fmt(row['floor_ms_per_vm'], digits=3),
                     fmt(row['module_over_floor'], digits=2)))
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = ['VM sweep (fake monitors, medians): the marginal cost of one more VM is the slope from the size before (ms per VM):']
    for number, row in enumerate(rows):
        lines.append('  '.join(cell.rjust(width) for cell, width in zip(row, widths)))
        if number == 0:
            lines.append('  '.join('-' * width for width in widths))
    return '\n'.join(lines)


def whole_table(whole):
    """The engine figures as whole processes (scenarios.engine_whole)."""
    med = whole['median']
    n = whole['vms']
    lines = ['Whole processes, nothing warmed up (each timed from outside; %d rounds in rotating order, medians):' % whole['reps']]
    rows = [('process', 'median s', 'per round s')]
    for kind, label in (('info-%d' % n, 'ansible-playbook: one balloon_stats_info task over %d VMs' % n),
                        ('info-0', 'ansible-playbook: the same task with no VM'),
                        ('stat', 'ansible-playbook: one ansible.builtin.stat task'),
                        ('floor-%d' % n, 'bench/floor.py (qemu.qmp) over %d VMs' % n), ('floor-0', 'bench/floor.py over none')):
        rows.append((label, fmt(med.get(kind), digits=3), ' '.join(fmt(value, digits=2) for value in whole['walls'][kind])))
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    for row in rows:
        lines.append('  '.join(cell.ljust(widths[index]) if index != 1 else cell.rjust(widths[index]) for index, cell in enumerate(row)))
    lines.append('What the VMs add: to the task %s s, to the qemu.qmp process %s s; per round %s.'
                 % (fmt(med.get('task_added'), digits=3), fmt(med.get('floor_added'), digits=3),
                    ', '.join(fmt(value) for value in whole['per_vm_ratio'])))
    return '\n'.join(lines)


def render(results, notes, failures):
    """The text report of a run: the tables, the targets, the notes, the failures and the machine."""
    text = []
    if results['sets']:
        text += [table(results), '', phases_table(results)]
        if vm_sweep_table(results):
            text += ['', vm_sweep_table(results)]
    if results.get('fixed'):
        text += ['', fixed_table(results['fixed'])]
    if libvirt_table(results):
        text += ['', libvirt_table(results)]
    if results.get('sweep'):
        text += ['', sweep_table(results['sweep'])]
    if results.get('fleet'):
        text += ['', fleet_table(results['fleet'])]
    if results.get('fleet_overhead'):
        text += ['', overhead_table(results['fleet_overhead'])]
    if results.get('engine_whole'):
        text += ['', whole_table(results['engine_whole'])]
    if results.get('users'):
        text += ['', users_table(results['users'])]
    if results.get('profile') and not results['profile'].get('error'):
        text += ['', results['profile'].get('text', '')]
    text += ['', 'Targets (issue 23):'] + ['  [%s] %s: %s' % ('PASS' if target['holds'] else 'MISS', target['target'], target['measured'])
                                           for target in results['targets']]
    if results.get('information'):
        text += ['', 'Information (not targets; an earlier issue\'s bound in brackets, "met" or "not met"):']
        text += ['  - %s: %s%s' % (info['name'], info['measured'], '' if info['met'] is None else ' [%s]' % ('met' if info['met'] else 'not met'))
                 for info in results['information']]
    if notes:
        text += ['', 'Notes:'] + ['  - ' + note for note in notes]
    if failures:
        text += ['', 'FAILURES:'] + ['  - ' + failure for failure in failures]
    text += ['', 'Machine: %s, %s CPUs, %s GiB, kernel %s; Python %s, ansible-core %s, qemu.qmp %s; %s; load %s -> %s; %.0f s'
             % (results['machine'].get('cpu'), results['machine'].get('cpus'), results['machine'].get('memory_gib'),
                results['machine'].get('kernel'), results['machine'].get('python'), results['machine'].get('ansible_core'),
                results['machine'].get('qemu_qmp'), results['machine'].get('qemu'),
                ' '.join('%.1f' % value for value in results['machine']['load_start']),
                ' '.join('%.1f' % value for value in results['machine']['load_end']), results['duration_s'])]
    return '\n'.join(text)
