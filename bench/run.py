# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qmp.balloon benchmark: one task for many VMs against the alternatives, in one run.

    bench/run.py              full run (make bench): N = 10, 100, 1000 fake monitors, M = 20 real
                              QEMU VMs (-S, 64 MiB), M libvirt domains on a private libvirtd, the
                              role as users run it (whole processes, 50 x 20 fakes), the warm in-play
                              fleet (role vs bare tasks), concurrency sweep, profile, plot
    bench/run.py --smoke      tiny run for make test: 3 fakes, 1 QEMU VM, 2-host fleets, 1 repeat,
                              no libvirt/plot/profile; exits 1 when any measured task failed

Methods, for every set of VMs (docs/performance.md says more):
  (a) one balloon_stats_info task over all targets; (a0) the same task with targets: [] (Ansible's fixed cost)
  (b) the same VMs, one balloon_stats_info call per VM (loop:); for sets above --b-full VMs
      (default 10: N=100, N=1000 and M=20) a sample of --b-sample (10) VMs per repeat (a different
      slice each repeat), extrapolated linearly (said so in the output): a loop's items are
      independent module runs, so its time is linear in their number
  (c) the floor: bench/floor.py, qemu.qmp alone, concurrent, no Ansible (whole process)
  (d) libvirt, on M transient paused domains (64 MiB, virtio balloon, stats period 10 s) of a
      private libvirtd that this run starts and stops itself
      (tests/integration/targets/libvirt_transport/files/libvirt_ctl.py; --libvirt-uri URI uses an
      existing libvirtd instead): virsh dommemstat per domain and one getAllDomainStats call (whole
      processes); skipped with a note when libvirt cannot run here
  (a-lv) the collection's own libvirt transport on the same M domains: one balloon_stats_info task
      with transport: libvirt, all_domains: true, timed as (a)
  (a-virsh) what a libvirt user writes without the collection, on the same domains: one
      ansible.builtin.command task virsh domstats --balloon plus a set_fact with a bench-only filter
      (bench/filter_plugins/qbb_virsh.py)
  fixed cost: ansible.builtin.stat, balloon_stats_info and balloon_stats_polling with no VM, side by
      side in one play (--fixed-tasks rounds; the target) and N tasks per play minus an empty play
  users: bench/users.py (its docstring): the role as users run it on --users HOSTSxVMS fake VMs
      (local connection, --forks): every run a whole ansible-playbook process timed from outside,
      nothing warmed up, prepare included; role gather against one bare balloon_stats_info task, role
      main without and with the report against bare polling + info; module calls per host counted
      (bench/callback_plugins/qmp_bench_calls.py); --users-rounds rounds, the order reversed every
      other round, each ratio judged on the median of its per-round ratios
  whole: on the largest fake set, whole processes: one balloon_stats_info task over all VMs and over
      none, bench/floor.py over all and over none, one ansible.builtin.stat task (--whole-reps rounds):
      what the VMs add to the task against what they add to qemu.qmp
  fleet: bench/fleet.py (its docstring), the warm in-play figures (information): on --fleet HOSTSxVMS
      fake VMs the role's gather and main after a prepare in the same play against bare tasks, timed
      inside one ansible-playbook run; --fleet-sweep (10 and 25 hypervisors), --forks-sweep 10,20
  (e) balloon_stats_polling over all targets: first run (a change of the interval: 0 -> 10 in the
      first repeat, then 10 -> 20, 20 -> 10, ...) and idempotent second run (the same interval again)
(a), (b), (e) are the task's own duration (bench/callback_plugins/qmp_bench_timer.py: task start to
last result), and the module process's own time and peak RSS (bench/probe/sitecustomize.py).
Every point is the median of --reps repeats. Results: DIR/results.json, DIR/bench.png, DIR/table.txt
(DIR = --out, default bench/results; --smoke: build/bench-smoke).

Only the Python standard library is needed here; the plot and the profiler run in the bench venv
(.venv/bench, bench/requirements.txt), created on first use in a full run.
"""


from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time

# The parts, beside this file: bench/runner.py (venvs, processes, libvirtd, Ansible), bench/scenarios.py
# (the measurements), bench/report.py (the tables).
from runner import (
    _CLEANUP, BENCH, PLOT, ROOT, AnsibleRunner, QemuVMs, FakeFleetProcess, _on_signal, base_python_of, cleanup,
    ensure_bench_venv, log, machine_info, run_quiet, usable_ansible_venv,
)
from fleet import DEFAULT_PLAYS, SMOKE_PLAYS, fleet_compat, fleet_overhead
from scenarios import bench_libvirt, bench_set, concurrency_sweep, engine_pairs, engine_whole, fixed_cost, run_profile, summarise_set
from report import check_targets, information, render
from users import users_run


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description='qmp.balloon benchmark (see docs/performance.md)')
    parser.add_argument('--smoke', action='store_true', help='tiny run for make test (< 60 s)')
    parser.add_argument('--out', help='output directory (default bench/results; with --smoke build/bench-smoke)')
    parser.add_argument('--sizes', help='fake monitor counts, comma-separated (default 10,100,1000; smoke 3)')
    parser.add_argument('--qemu', type=int, help='real QEMU VMs (default 20; smoke 1; 0 = none)')
    parser.add_argument('--reps', type=int, help='repeats of every point (default 5; smoke 1)')
    parser.add_argument('--b-sample', type=int, default=10, help='(b) loop items per repeat for sets above --b-full (default 10)')
    parser.add_argument('--skip-b', action='store_true', help='leave out (b) (for quick A/B runs of a patch)')
    parser.add_argument('--b-full', type=int, default=10,
                        help='largest set whose (b) loop covers every VM in every repeat (default 10: N=10 in full; '
                             'N=100, N=1000 and M=20 by a sample of --b-sample VMs per repeat, extrapolated)')
    parser.add_argument('--fleet', default=None, help='HOSTSxVMS for the fleet run (default 50x20; smoke 2x2; 0 = none)')
    parser.add_argument('--forks', type=int, default=5, help='forks for the fleet run (Ansible default 5)')
    parser.add_argument('--fleet-reps', type=int, default=None, help='repeats of the fleet plays (role vs bare tasks; default 1)')
    parser.add_argument('--fleet-plays', choices=('default', 'all'), default='default',
                        help="all: also time both entry points in a play without a prepare before (cold), on every hypervisor "
                             "(default: no cold play; the whole-process runs of --users include prepare)")
    parser.add_argument('--fleet-sweep', action='store_true', help='the in-play fleet sweep too (10 and 25 hypervisors)')
    parser.add_argument('--users', default=None,
                        help='HOSTSxVMS for the role as users run it, whole ansible-playbook processes (default 50x20; smoke 2x2; 0 = none)')
    parser.add_argument('--users-rounds', type=int, default=None,
                        help='rounds of the whole-process runs, each configuration once per round (default 2; smoke 1)')
    parser.add_argument('--whole-reps', type=int, default=None,
                        help='rounds of the whole-process engine figures on the largest fake set (default --reps)')
    parser.add_argument('--forks-sweep', default=None,
                        help='forks levels for the forks sweep on the whole fleet, comma-separated (default none; e.g. 10,20)')
    parser.add_argument('--fixed-tasks', type=int, default=None,
                        help='tasks per play of the fixed-cost measurement (default 10; smoke 2; 0 = none)')
    parser.add_argument('--no-sweep', action='store_true', help='skip the concurrency sweep')
    parser.add_argument('--sweep-reps', type=int, default=3, help='repeats of each concurrency level in the sweep (default 3)')
    parser.add_argument('--no-profile', action='store_true', help='skip the py-spy profile')
    parser.add_argument('--no-plot', action='store_true', help='skip the plot (and the bench venv)')
    parser.add_argument('--ansible-venv', help='venv with ansible-core and qemu.qmp (default .venv/2.19, else the bench venv)')
    parser.add_argument('--bench-venv', default=os.path.join(ROOT, '.venv', 'bench'), help='venv for matplotlib/py-spy')
    parser.add_argument('--collection-root', default=ROOT, help='the qmp.balloon tree to measure (default: this checkout)')
    parser.add_argument('--libvirt-uri', help='(d), (a-lv) on this existing libvirtd (default: start a private one with '
                                              'tests/integration/targets/libvirt_transport/files/libvirt_ctl.py)')
    parser.add_argument('--no-libvirt', action='store_true', help='leave out (d) and (a-lv) (default in the smoke run)')
    parser.add_argument('--keep-work', action='store_true', help='keep the temporary work directory')
    args = parser.parse_args(argv)
    if args.smoke:
        defaults = dict(out=os.path.join(ROOT, 'build', 'bench-smoke'), sizes='3', qemu=1, reps=1, fleet='2x2', fixed_tasks=2,
                        fleet_reps=1, users='2x2', users_rounds=1)
        args.fleet_sweep = False
        # No libvirtd in make test: only one privileged libvirt daemon can run on a host, and the
        # libvirt_transport integration target may be starting its own.
        args.no_sweep = args.no_profile = args.no_plot = args.no_libvirt = True
    else:
        defaults = dict(out=os.path.join(BENCH, 'results'), sizes='10,100,1000', qemu=20, reps=5, fleet='50x20', fixed_tasks=10,
                        fleet_reps=1, users='50x20', users_rounds=2)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.whole_reps is None:
        args.whole_reps = args.reps
    args.forks_sweep = [int(level) for level in (args.forks_sweep or '').split(',') if level.strip()]
    args.sizes = [int(size) for size in args.sizes.split(',') if size.strip() and int(size) > 0]
    return args


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    atexit.register(cleanup)
    started = time.time()
    # Short paths: a unix socket path must fit in 107 bytes.
    work = tempfile.mkdtemp(prefix='qbb-', dir='/tmp')
    if not args.keep_work:
        _CLEANUP.insert(0, lambda: shutil.rmtree(work, ignore_errors=True))
    notes = []

    ansible_venv = args.ansible_venv or os.path.join(ROOT, '.venv', '2.19')
    bench_python = None
    need_bench_venv = not (args.no_plot and args.no_profile)
    if not usable_ansible_venv(ansible_venv):
        if args.ansible_venv:
            log('%s has no ansible-playbook with qemu.qmp' % ansible_venv)
            return 2
        log('%s is missing: using the bench venv for Ansible too' % ansible_venv)
        need_bench_venv = True
        ansible_venv = None
    if need_bench_venv:
        base = base_python_of(os.path.join(ansible_venv, 'bin', 'python')) if ansible_venv else sys.executable
        bench_python = ensure_bench_venv(args.bench_venv, base, with_ansible=ansible_venv is None)
        if bench_python is None:
            notes.append('the bench venv could not be created: no plot, no profile')
        if ansible_venv is None:
            if bench_python is None:
                log('no venv with ansible-core and qemu.qmp: run make venv first')
                return 2
            ansible_venv = args.bench_venv
    python = os.path.join(ansible_venv, 'bin', 'python')

    collections = os.path.join(work, 'collections')
    os.makedirs(os.path.join(collections, 'ansible_collections', 'qmp'))
    os.symlink(os.path.abspath(args.collection_root), os.path.join(collections, 'ansible_collections', 'qmp', 'balloon'))
    ansible = AnsibleRunner(ansible_venv, collections, work)
    results = {'started': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'), 'smoke': args.smoke,
               'reps': args.reps, 'machine': machine_info(python), 'collection_root': os.path.abspath(args.collection_root),
               'commit': run_quiet(['git', '-C', os.path.abspath(args.collection_root), 'rev-parse', '--short', 'HEAD']).stdout.strip(),
               'ansible_venv': ansible_venv, 'sets': [], 'notes': notes}
    log('machine: %s' % json.dumps(results['machine']))
    failures = []
    # The concurrency sweep runs on the largest set of at most 100 fakes.
    sweep_size = max([size for size in args.sizes if size <= 100] or [min(args.sizes or [0])])
    try:
        if args.fixed_tasks:
            log('fixed cost: %d tasks per play of stat, balloon_stats_info and balloon_stats_polling (no VM), '
                'and an empty play, %d repeats' % (args.fixed_tasks, args.reps))
            results['fixed'] = fixed_cost(ansible, args.fixed_tasks, args.reps, import_runs=1 if args.smoke else 3)
            failures += results['fixed']['errors']
        for size in args.sizes:
            label = 'fake-%d' % size
            log('%s: starting %d fake monitors' % (label, size))
            fake = FakeFleetProcess(python, os.path.join(work, 'f%d' % size), size)
            try:
                b_sample = args.b_sample if size > args.b_full else None
                result = bench_set(ansible, label, 'fake', fake.sockets, args.reps, b_sample, python, notes, args.skip_b)
                if size == max(args.sizes):
                    log('%s: the module process and the floor side by side, %d pairs' % (label, 2 * args.reps))
                    result['engine_pairs'] = engine_pairs(ansible, fake.sockets, python, work, 2 * args.reps)
                    result['errors'] += result['engine_pairs']['errors']
                    log('%s: whole processes (the task with the VMs and with none, the floor with them and with none, stat), '
                        '%d rounds' % (label, args.whole_reps))
                    results['engine_whole'] = engine_whole(ansible, fake.sockets, python, work, args.whole_reps)
                    result['errors'] += results['engine_whole']['errors']
                if size == max(args.sizes) and not args.no_profile:
                    log('%s: profiling the module and the floor with py-spy' % label)
                    results['profile'] = run_profile(bench_python, ansible, fake.sockets, work)
                if size == sweep_size and not args.no_sweep:
                    log('%s: concurrency sweep' % label)
                    results['sweep'] = concurrency_sweep(python, collections, fake.sockets, work, args.sweep_reps, (1, 2, 4, 8, 16, 32))
            finally:
                fake.stop()
            summarise_set(result)
            results['sets'].append(result)
            failures += ['%s: %s' % (label, error) for error in result['errors']]
        if args.qemu:
            if not shutil.which('qemu-system-x86_64'):
                notes.append('qemu-system-x86_64 is not installed: no real QEMU VMs')
            else:
                label = 'qemu-%d' % args.qemu
                log('%s: starting %d QEMU VMs (-S, 64 MiB)' % (label, args.qemu))
                vms = QemuVMs(python, os.path.join(work, 'q'), args.qemu)
                try:
                    b_sample = args.b_sample if args.qemu > args.b_full else None
                    result = bench_set(ansible, label, 'qemu', vms.sockets, args.reps, b_sample, python, notes, args.skip_b)
                finally:
                    vms.stop()
                if args.no_libvirt:
                    notes.append('(d) and (a-lv) libvirt: left out (--no-libvirt%s)' % (', the smoke run' if args.smoke else ''))
                else:
                    log('%s: (d) libvirt and (a-lv) on %d libvirt domains (%s)'
                        % (label, args.qemu, args.libvirt_uri or 'a private libvirtd, libvirt_ctl.py'))
                    d, why_not = bench_libvirt(ansible, python, args.qemu, args.reps, args.libvirt_uri)
                    if d is None:
                        notes.append('(d) and (a-lv) libvirt skipped: %s' % why_not)
                    else:
                        result['d'] = d
                        result['errors'] += ['libvirt: %s' % error for error in d['errors']]
                summarise_set(result)
                results['sets'].append(result)
                failures += ['%s: %s' % (label, error) for error in result['errors']]
        if args.fleet and args.fleet != '0':
            hosts, per_host = (int(part) for part in args.fleet.lower().split('x'))
            overhead = fleet_overhead(ansible, python, hosts, per_host, args.forks, work, args.fleet_reps,
                                      sweep=args.fleet_sweep, forks_sweep=args.forks_sweep,
                                      plays=SMOKE_PLAYS if args.smoke else (None if args.fleet_plays == 'all' else DEFAULT_PLAYS))
            results['fleet'] = fleet_compat(overhead)
            overhead.pop('role_main_run', None)
            results['fleet_overhead'] = overhead
            failures += ['fleet: %s' % error for error in overhead['errors']]
        if args.users and args.users != '0':
            hosts, per_host = (int(part) for part in args.users.lower().split('x'))
            results['users'] = users_run(ansible, python, hosts, per_host, args.forks, work, args.users_rounds, warmup=not args.smoke)
            failures += ['users: %s' % error for error in results['users']['errors']]
    except KeyboardInterrupt:
        log('interrupted')
        cleanup()
        return 130
    finally:
        results['machine']['load_end'] = os.getloadavg()
        results['duration_s'] = time.time() - started

    results['targets'] = [{'target': name, 'holds': bool(holds), 'measured': measured} for name, holds, measured in check_targets(results)]
    results['information'] = [{'name': name, 'met': met, 'measured': measured} for name, met, measured in information(results)]
    results['failures'] = failures
    os.makedirs(args.out, exist_ok=True)
    report = render(results, notes, failures)
    results['table'] = report
    profile = results.get('profile') or {}
    for key in ('module_folded', 'floor_folded'):
        if profile.get(key) and os.path.exists(profile[key]):
            shutil.copy(profile[key], os.path.join(args.out, 'profile-' + os.path.basename(profile[key])))
            profile[key] = 'profile-' + os.path.basename(profile[key])
    with open(os.path.join(args.out, 'results.json'), 'w') as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
        handle.write('\n')
    with open(os.path.join(args.out, 'table.txt'), 'w') as handle:
        handle.write(report + '\n')
    if not args.no_plot and bench_python:
        plot = run_quiet([bench_python, PLOT, os.path.join(args.out, 'results.json'), os.path.join(args.out, 'bench.png')])
        if plot.returncode != 0:
            log('plot failed: %s' % plot.stdout[-1000:])
    print(report)
    print('results: %s' % os.path.join(args.out, 'results.json'))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
