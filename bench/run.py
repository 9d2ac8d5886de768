# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qmp.balloon benchmark: one task for many VMs against the alternatives, in one run.

    bench/run.py              full run (make bench): N = 10, 100, 1000 fake monitors, M = 20 real
                              QEMU VMs (-S, 64 MiB), M libvirt domains on a private libvirtd, fleet,
                              concurrency sweep, profile, plot
    bench/run.py --smoke      tiny run for make test (< 60 s): 3 fakes, 1 QEMU VM, 2-host fleet,
                              1 repeat, no libvirt/plot/profile; exits 1 when any measured task failed

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
import concurrent.futures
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
FAKE = os.path.join(ROOT, 'tests', 'support', 'run_fake_qmp.py')
VM_PY = os.path.join(ROOT, 'tests', 'guest', 'vm.py')
FLOOR = os.path.join(BENCH, 'floor.py')
ENGINE_DIRECT = os.path.join(BENCH, 'engine_direct.py')
LIBVIRT_READ = os.path.join(BENCH, 'libvirt_read.py')
PROFILE = os.path.join(BENCH, 'profile_module.py')
PLOT = os.path.join(BENCH, 'plot.py')
REQUIREMENTS = os.path.join(BENCH, 'requirements.txt')
REQUIREMENTS_ANSIBLE = os.path.join(BENCH, 'requirements-ansible.txt')
LIBVIRT_CTL = os.path.join(ROOT, 'tests', 'integration', 'targets', 'libvirt_transport', 'files', 'libvirt_ctl.py')
# libvirt_ctl.py only creates (and its stop only removes) domains named lvt-*.
LIBVIRT_PREFIX = 'lvt-qbb'
INTERVAL = 10
MIB = 1024.0 * 1024.0

_CLEANUP = []


def log(message):
    sys.stderr.write('[bench %s] %s\n' % (time.strftime('%H:%M:%S'), message))
    sys.stderr.flush()


def cleanup():
    while _CLEANUP:
        function = _CLEANUP.pop()
        try:
            function()
        except Exception as exc:  # pylint: disable=broad-except
            log('cleanup: %s' % exc)


def _on_signal(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# ---------------------------------------------------------------------------------------------
# environment: venvs, machine
# ---------------------------------------------------------------------------------------------

def run_quiet(command, **kwargs):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False, **kwargs)


def usable_ansible_venv(path):
    python = os.path.join(path, 'bin', 'python')
    playbook = os.path.join(path, 'bin', 'ansible-playbook')
    if not (os.path.exists(python) and os.path.exists(playbook)):
        return False
    return run_quiet([python, '-c', 'import qemu.qmp, ansible']).returncode == 0


def ensure_bench_venv(path, base_python, with_ansible=False):
    """Create or refresh the bench venv from bench/requirements.txt (plot, profiler), plus
    bench/requirements-ansible.txt when Ansible must run from it too; return its python or None."""
    python = os.path.join(path, 'bin', 'python')
    files = [REQUIREMENTS] + ([REQUIREMENTS_ANSIBLE] if with_ansible else [])
    digest = hashlib.sha256()
    for name in files:
        with open(name, 'rb') as handle:
            digest.update(handle.read())
    wanted = digest.hexdigest()
    stamp = os.path.join(path, '.bench-requirements.sha256')
    if os.path.exists(python) and os.path.exists(stamp):
        with open(stamp) as handle:
            # A venv made with the Ansible part also serves a run that needs only the plot part.
            if wanted in handle.read().split():
                return python
    log('creating the bench venv %s (%s)' % (path, ', '.join(os.path.relpath(name, ROOT) for name in files)))
    if not os.path.exists(python):
        result = run_quiet([base_python, '-m', 'venv', path])
        if result.returncode != 0:
            log('cannot create %s: %s' % (path, result.stdout.strip()[-500:]))
            return None
    command = [python, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check']
    for name in files:
        command += ['-r', name]
    result = run_quiet(command)
    if result.returncode != 0:
        log('pip install of the bench requirements failed: %s' % result.stdout.strip()[-1000:])
        return None
    stamps = [wanted]
    if with_ansible:
        # The same venv satisfies the plot-only requirements as well.
        with open(REQUIREMENTS, 'rb') as handle:
            stamps.append(hashlib.sha256(handle.read()).hexdigest())
    with open(stamp, 'w') as handle:
        handle.write('\n'.join(stamps) + '\n')
    return python


def base_python_of(venv_python):
    """The interpreter a venv was made from (so the bench venv has the same Python)."""
    result = run_quiet([venv_python, '-c', 'import sys; print(sys._base_executable)'])
    candidate = result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else ''
    return candidate if candidate and os.path.exists(candidate) else sys.executable


def machine_info(python):
    info = {'hostname': platform.node(), 'kernel': platform.release(), 'cpus': os.cpu_count()}
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    info['cpu'] = line.split(':', 1)[1].strip()
                    break
    with contextlib.suppress(OSError, ValueError):
        with open('/proc/meminfo') as handle:
            info['memory_gib'] = round(int(handle.readline().split()[1]) / 1024.0 / 1024.0, 1)
    versions = run_quiet([python, '-c', 'import sys, ansible.release, importlib.metadata as m; '
                                        'print(sys.version.split()[0], ansible.release.__version__, m.version("qemu.qmp"))'])
    if versions.returncode == 0:
        info['python'], info['ansible_core'], info['qemu_qmp'] = versions.stdout.split()[:3]
    qemu = shutil.which('qemu-system-x86_64')
    if qemu:
        info['qemu'] = run_quiet([qemu, '--version']).stdout.splitlines()[0].strip()
    info['load_start'] = os.getloadavg()
    return info


# ---------------------------------------------------------------------------------------------
# processes we start
# ---------------------------------------------------------------------------------------------

def timed_child(command, env=None, cwd=None, timeout=600):
    """Run one command and wait4() it: (wall s, peak RSS KiB, returncode, stdout, stderr, CPU s)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.0005)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, 'waitstatus_to_exitcode') else (status >> 8)
    out.seek(0)
    err.seek(0)
    return (wall, usage.ru_maxrss, process.returncode, out.read().decode(errors='replace'), err.read().decode(errors='replace'),
            usage.ru_utime + usage.ru_stime)


class FakeFleetProcess(object):
    """tests/support/run_fake_qmp.py serving COUNT endpoints in its own process."""

    def __init__(self, python, directory, count, interval=0):
        self.directory = directory
        self.ready_file = directory + '.ready'
        os.makedirs(directory, exist_ok=True)
        self.log = open(directory + '.log', 'w')
        self.process = subprocess.Popen(
            [python, FAKE, '--dir', directory, '--count', str(count), '--stats', 'live', '--interval', str(interval),
             '--ready-file', self.ready_file], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        _CLEANUP.append(self.stop)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.ready_file):
            if self.process.poll() is not None:
                raise RuntimeError('fake_qmp.py exited %s; see %s.log' % (self.process.returncode, directory))
            if time.monotonic() > deadline:
                raise RuntimeError('fake_qmp.py not ready after 120 s')
            time.sleep(0.05)
        with open(self.ready_file) as handle:
            ready = json.loads(handle.read())
        self.sockets = [endpoint['path'] for endpoint in ready['endpoints']]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class QemuVMs(object):
    """M real QEMU VMs started with tests/guest/vm.py start --no-guest (-S, 64 MiB)."""

    def __init__(self, python, directory, count):
        self.python = python
        self.directory = directory
        self.names = []
        _CLEANUP.append(self.stop)
        for index in range(count):
            name = 'b%02d' % index
            result = run_quiet([python, VM_PY, 'start', '--name', name, '--dir', directory, '--no-guest'])
            if result.returncode != 0:
                raise RuntimeError('vm.py start %s failed: %s' % (name, result.stdout.strip()[-500:]))
            self.names.append(name)
        self.sockets = [os.path.join(directory, name + '.qmp') for name in self.names]

    def stop(self):
        if self.names:
            run_quiet([self.python, VM_PY, 'stop', '--dir', self.directory] + self.names)
            self.names = []


# ---------------------------------------------------------------------------------------------
# Ansible runs
# ---------------------------------------------------------------------------------------------

class AnsibleRunner(object):
    def __init__(self, venv, collections, work):
        self.venv = venv
        self.python = os.path.join(venv, 'bin', 'python')
        self.playbook = os.path.join(venv, 'bin', 'ansible-playbook')
        self.collections = collections
        self.work = work
        self.config = os.path.join(work, 'ansible.cfg')
        with open(self.config, 'w') as handle:
            handle.write('[defaults]\nretry_files_enabled = False\nhost_key_checking = False\n'
                         'deprecation_warnings = False\ninterpreter_python = %s\n' % self.python)

    def env(self, timings, modlog, hold=True):
        env = dict(os.environ)
        env.update({
            'ANSIBLE_CONFIG': self.config,
            'ANSIBLE_COLLECTIONS_PATH': self.collections,
            'ANSIBLE_CALLBACK_PLUGINS': os.path.join(BENCH, 'callback_plugins'),
            'ANSIBLE_CALLBACKS_ENABLED': 'qmp_bench_timer',
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_LOCAL_TEMP': os.path.join(self.work, 'ansible-local'),
            'ANSIBLE_REMOTE_TMP': os.path.join(self.work, 'ansible-remote'),
            'ANSIBLE_HOME': os.path.join(self.work, 'ansible-home'),
            'QMP_BENCH_TIMINGS': timings,
            'QMP_BENCH_MODLOG': modlog,
            'QMP_BENCH_HOLD': '1' if hold else '0',
            'PYTHONPATH': os.path.join(BENCH, 'probe') + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else ''),
        })
        return env

    def run(self, name, playbook_text, inventory_text, extra_files=None, forks=None, extra_env=None):
        """Run one playbook; return (callback timings, module process records, exit code)."""
        directory = os.path.join(self.work, 'play-' + name)
        os.makedirs(directory, exist_ok=True)
        for filename, text in (extra_files or {}).items():
            with open(os.path.join(directory, filename), 'w') as handle:
                handle.write(text)
        with open(os.path.join(directory, 'playbook.yml'), 'w') as handle:
            handle.write(playbook_text)
        with open(os.path.join(directory, 'inventory.ini'), 'w') as handle:
            handle.write(inventory_text)
        timings = os.path.join(directory, 'timings.json')
        modlog = os.path.join(directory, 'modules.jsonl')
        env = self.env(timings, modlog)
        env.update(extra_env or {})
        command = [self.playbook, '-i', 'inventory.ini', 'playbook.yml']
        if forks:
            command += ['--forks', str(forks)]
        with open(os.path.join(directory, 'ansible.log'), 'w') as output:
            start = time.time()
            code = subprocess.run(command, cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT, check=False).returncode
            wall = time.time() - start
        tasks = []
        if os.path.exists(timings):
            with open(timings) as handle:
                tasks = json.load(handle)['tasks']
        modules = []
        if os.path.exists(modlog):
            with open(modlog) as handle:
                modules = [json.loads(line) for line in handle if line.strip()]
        if code != 0:
            log('ansible-playbook %s exited %d; see %s' % (name, code, os.path.join(directory, 'ansible.log')))
        return {'tasks': tasks, 'modules': modules, 'rc': code, 'wall': wall, 'dir': directory}


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
              'c': [], 'c_cpu': [], 'a_cpu': [], 'c_raw': [], 'c_raw_cpu': [], 'c_rss_mb': [], 'c_hold': [],
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
    keys = ('a', 'a0', 'a0_module', 'a_module', 'a_cpu', 'c_cpu', 'c_raw', 'c_raw_cpu', 'b', 'c', 'e1', 'e2', 'e1_module', 'e2_module', 'b_items_s',
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
        for key in ('a_lv', 'a_lv_module', 'a_lv_cpu'):
            med[key] = median(d.get(key, []))
        med['a_lv_rss_mb'] = max([value for value in d.get('a_lv_rss_mb', []) if value is not None] or [0]) or None
        lv_phases = [phase for phase in d.get('a_lv_phases', []) if phase]
        if lv_phases:
            med['a_lv_phases'] = {key: median([phase.get(key) for phase in lv_phases]) for key in lv_phases[0]}
        med['a_lv_over_d_getall'] = ratio(med['a_lv'], med['d_getall'])
        med['a_lv_module_over_d_getall'] = ratio(med['a_lv_module'], med['d_getall'])
        med['a_lv_over_a'] = ratio(med['a_lv'], med['a'])
    result['median'] = med
    return med


# ---------------------------------------------------------------------------------------------
# (d) libvirt
# ---------------------------------------------------------------------------------------------

# Only for --libvirt-uri (an existing libvirtd); the private libvirtd gets its domains from libvirt_ctl.py.
DOMAIN_XML = '''<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>{qemu}</emulator>
    <memballoon model='virtio'><stats period='{interval}'/></memballoon>
  </devices>
</domain>
'''

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


def last_json(text):
    """The JSON object on the last line that has one (libvirt_ctl.py prints one per command)."""
    for line in reversed((text or '').strip().splitlines()):
        line = line.strip()
        if line.startswith('{'):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


def libvirt_python(candidates):
    """The first interpreter that imports libvirt-python, or None."""
    for python in candidates:
        if python and os.path.exists(python) and run_quiet([python, '-c', 'import libvirt']).returncode == 0:
            return python
    return None


class LibvirtDomains(object):
    """COUNT transient paused libvirt domains lvt-qbbNN (64 MiB, virtio balloon, stats period INTERVAL s).

    Without a URI, on a private libvirtd that tests/integration/targets/libvirt_transport/files/libvirt_ctl.py
    starts (check, start, domain --no-kernel, stop: as the libvirt_transport target uses it; no guest
    boots, and each domain is suspended at once, as the QMP VMs run -S); with a URI, on that libvirtd
    (virsh create --paused). stop() removes everything and is registered for errors and Ctrl-C too.
    """

    def __init__(self, python, count, uri=None):
        self.python = python
        self.count = count
        self.external = bool(uri)
        self.uri = uri
        self.virsh = shutil.which('virsh')
        self.directory = None
        self.names = []
        self.created = []
        self.info = {'private': not self.external}
        self.stopped = False

    def start(self):
        """None when the domains are there, else why not (one sentence)."""
        _CLEANUP.append(self.stop)
        if not self.virsh:
            return 'virsh is not installed (no libvirt on this machine)'
        if self.external:
            check = run_quiet([self.virsh, '-c', self.uri, 'version'])
            if check.returncode != 0:
                return 'libvirtd does not answer on %s: %s' % (self.uri, check.stdout.strip()[-200:])
            self.directory = tempfile.mkdtemp(prefix='qbl-', dir='/tmp')
        else:
            check = run_quiet([self.python, LIBVIRT_CTL, 'check'], timeout=60)
            data = last_json(check.stdout)
            if check.returncode != 0 or data is None:
                return 'libvirt_ctl.py check failed: %s' % check.stdout.strip()[-300:]
            if data.get('skip'):
                return data['skip']
            # Its own directory under /tmp (libvirt_ctl.py makes it 0755): short socket paths.
            self.directory = tempfile.mkdtemp(prefix='qbl-', dir='/tmp')
            started = time.perf_counter()
            result = run_quiet([self.python, LIBVIRT_CTL, 'start', '--dir', self.directory], timeout=180)
            data = last_json(result.stdout)
            if result.returncode != 0 or data is None:
                return 'libvirt_ctl.py start failed: %s' % result.stdout.strip()[-300:]
            if data.get('skip'):
                return data['skip']
            self.uri = data['uri']
            self.info['libvirtd_start_s'] = time.perf_counter() - started
        self.info['uri'] = self.uri
        version = run_quiet([self.virsh, '-c', self.uri, 'version'])
        self.info['version'] = ' / '.join(line.strip() for line in version.stdout.splitlines() if line.strip())
        names = ['%s%02d' % (LIBVIRT_PREFIX, index) for index in range(self.count)]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            errors = [error for error in pool.map(self._create, names) if error]
        self.info['create_s'] = time.perf_counter() - started
        if errors:
            return errors[0]
        self.names = names
        return None

    def _create(self, name):
        if self.external:
            path = os.path.join(self.directory, name + '.xml')
            with open(path, 'w') as handle:
                handle.write(DOMAIN_XML.format(name=name, qemu=shutil.which('qemu-system-x86_64') or '/usr/bin/qemu-system-x86_64',
                                               interval=INTERVAL))
            result = run_quiet([self.virsh, '-c', self.uri, 'create', path, '--paused'], timeout=120)
            if result.returncode != 0:
                return 'virsh create %s failed: %s' % (name, result.stdout.strip()[-300:])
            self.created.append(name)
            return None
        result = run_quiet([self.python, LIBVIRT_CTL, 'domain', '--dir', self.directory, '--name', name, '--how', 'create',
                            '--mem', '64', '--period', str(INTERVAL), '--no-kernel'], timeout=120)
        if result.returncode != 0:
            return 'libvirt_ctl.py domain %s failed: %s' % (name, result.stdout.strip()[-300:])
        result = run_quiet([self.virsh, '-c', self.uri, 'suspend', name], timeout=60)
        if result.returncode != 0:
            return 'virsh suspend %s failed: %s' % (name, result.stdout.strip()[-300:])
        return None

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        if self.external:
            for name in self.created:
                run_quiet([self.virsh, '-c', self.uri, 'destroy', name], timeout=60)
        elif self.directory:
            started = time.perf_counter()
            if self.names and self.uri:
                # 4 at a time here (libvirt_ctl.py stop ends them one by one); stop then ends the daemons
                # and whatever is left.
                with concurrent.futures.ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda name: run_quiet([self.virsh, '-c', self.uri, 'destroy', name], timeout=60), self.names))
            result = run_quiet([self.python, LIBVIRT_CTL, 'stop', '--dir', self.directory], timeout=180)
            self.info['stop'] = last_json(result.stdout) or result.stdout.strip()[-300:]
            self.info['stop_s'] = time.perf_counter() - started
            if result.returncode != 0:
                log('libvirt_ctl.py stop: %s' % result.stdout.strip()[-300:])
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def bench_libvirt(runner, python, count, reps, uri=None):
    """(d) and (a-lv) on COUNT libvirt domains; (None, why not) when libvirt is not usable here."""
    lv_python = libvirt_python([python, '/usr/bin/python3', sys.executable])
    if lv_python is None:
        return None, 'libvirt-python is not installed in %s (pip install libvirt-python==9.0.0)' % python
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
        tasks = ''.join(LIBVIRT_TASK.format(rep=rep, uri=uri, select=select) for rep in range(1, reps + 1))
        log('libvirt: playbook with %d repeats of (a-lv) over %d domains' % (reps, count))
        run = runner.run('libvirt', LIBVIRT_PLAYBOOK.format(tasks=tasks), '[bench]\nlocalhost ansible_connection=local\n')
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

FLEET_PLAYBOOK = '''---
- name: fleet
  hosts: hypervisors
  gather_facts: false
  vars:
    balloon_stats_interval: {interval}
    balloon_stats_report: false
  tasks:
    - name: role configure
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
        tasks_from: configure
    - name: role gather
      ansible.builtin.include_role:
        name: qmp.balloon.balloon_stats
        tasks_from: gather
    - name: fleet check
      ansible.builtin.assert:
        that:
          - balloon_stats.summary.vms | int == {per_host}
          - balloon_stats.summary.unreachable | int == 0
        quiet: true
'''


def bench_fleet(runner, python, hosts, per_host, forks, work):
    total = hosts * per_host
    fake = FakeFleetProcess(python, os.path.join(work, 'fleetfake'), total)
    try:
        inventory = ['[hypervisors]']
        for index in range(hosts):
            host_dir = os.path.join(work, 'fleet', 'hv%02d' % index)
            os.makedirs(host_dir, exist_ok=True)
            for socket_path in fake.sockets[index * per_host:(index + 1) * per_host]:
                os.symlink(socket_path, os.path.join(host_dir, os.path.basename(socket_path)))
            inventory.append("hv%02d ansible_connection=local balloon_stats_socket_globs='[\"%s/*.qmp\"]'" % (index, host_dir))
        log('fleet: %d hypervisors x %d fake VMs, forks %d' % (hosts, per_host, forks))
        run = runner.run('fleet', FLEET_PLAYBOOK.format(interval=INTERVAL, per_host=per_host), '\n'.join(inventory) + '\n', forks=forks)
    finally:
        fake.stop()
    tasks = []
    errors = []
    for task in run['tasks']:
        if task.get('duration') is None:
            continue
        procs = modules_in(task, run['modules'])
        statuses = {}
        for data in task['hosts'].values():
            statuses[data.get('status')] = statuses.get(data.get('status'), 0) + 1
        if statuses.get('failed') or statuses.get('unreachable'):
            errors.append('%s: %s' % (task['name'], statuses))
        tasks.append({'name': task['name'], 'action': task['action'], 'duration': task['duration'], 'hosts': statuses,
                      'module_processes': len(procs),
                      'module_s_sum': sum(proc['t_end'] - proc['t_proc'] for proc in procs),
                      'module_s_median': median([proc['t_end'] - proc['t_proc'] for proc in procs]),
                      'peak_rss_mb': max([proc['maxrss_kb'] / 1024.0 for proc in procs] or [0]) or None})
    return {'hosts': hosts, 'vms_per_host': per_host, 'forks': forks, 'rc': run['rc'], 'playbook_wall': run['wall'],
            'tasks': tasks, 'errors': errors, 'dir': run['dir'],
            'tasks_total_s': sum(task['duration'] for task in tasks)}


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


def run_profile(bench_python, ansible, sockets, work):
    """Capture the AnsiballZ payload of one (a) task and profile it under py-spy (module) plus the floor."""
    if not bench_python:
        return None
    directory = os.path.join(work, 'profile')
    os.makedirs(directory, exist_ok=True)
    targets = [{'socket': path} for path in sockets]
    targets_file = os.path.join(directory, 'targets.json')
    with open(targets_file, 'w') as handle:
        json.dump(targets, handle)
    keep = os.path.join(directory, 'remote')
    playbook = ('---\n- hosts: bench\n  gather_facts: false\n  vars_files: [targets.json]\n  tasks:\n'
                '    - name: capture\n      qmp.balloon.balloon_stats_info:\n        targets: "{{ bench_targets }}"\n')
    run = ansible.run('profile-capture', playbook, '[bench]\nlocalhost ansible_connection=local\n',
                      extra_files={'targets.json': json.dumps({'bench_targets': targets})},
                      extra_env={'ANSIBLE_KEEP_REMOTE_FILES': '1', 'ANSIBLE_REMOTE_TMP': keep})
    payloads = []
    for base, _dirs, files in os.walk(keep):
        payloads += [os.path.join(base, name) for name in files if name.startswith('AnsiballZ_')]
    if run['rc'] != 0 or not payloads:
        return {'error': 'could not capture the AnsiballZ payload (rc %s)' % run['rc']}
    command = [bench_python, PROFILE, '--out', directory, '--module-python', ansible.python, '--payload', payloads[0],
               '--floor', FLOOR, '--targets', targets_file]
    result = run_quiet(command)
    if result.returncode != 0:
        return {'error': 'profile_module.py failed: %s' % result.stdout[-1000:]}
    with open(os.path.join(directory, 'profile.json')) as handle:
        return json.load(handle)


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
             '(a-lv): one balloon_stats_info task with transport: libvirt, %s, timed as (a); (a): the QMP set of the same size.'
             % ('all_domains: true' if sets[0]['d'].get('a_lv_select') == 'all_domains' else 'targets: [{domain: ...}]')]
    header = ('set', 'domains', '(d) virsh s', '(d) getAll s', '(d) memoryStats s', '(a-lv) task s', '(a-lv) module s', '(a-lv) peak MB',
              '(a-lv)/(d getAll)', 'mod/(d getAll)', '(a) task s', '(d getAll)/(a)', '(d virsh)/(a)')
    rows = [header]
    for result in sets:
        med = result['median']
        rows.append((result['label'], str(result['d']['domains']), fmt(med.get('d_virsh')), fmt(med.get('d_getall'), digits=3),
                     fmt(med.get('d_memorystats'), digits=3), fmt(med.get('a_lv')), fmt(med.get('a_lv_module')),
                     fmt(med.get('a_lv_rss_mb'), digits=0), fmt(med.get('a_lv_over_d_getall'), digits=1),
                     fmt(med.get('a_lv_module_over_d_getall'), digits=1), fmt(med.get('a')), fmt(med.get('d_getall_over_a'), digits=2),
                     fmt(med.get('d_virsh_over_a'), digits=2)))
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    for row in rows:
        lines.append('  '.join(cell.rjust(width) for cell, width in zip(row, widths)))
    info = first
    lines.append('libvirtd start %s s, %s domains created in %s s (4 at a time), all removed and the daemons stopped in %s s.'
                 % (fmt(info.get('libvirtd_start_s'), digits=1), sets[0]['d']['domains'], fmt(info.get('create_s'), digits=1),
                    fmt(info.get('stop_s'), digits=1)))
    return '\n'.join(lines)


def check_targets(results):
    """The issue's targets, each (name, holds?, measured)."""
    by_label = {result['label']: result['median'] for result in results['sets']}
    checks = []
    big = by_label.get('fake-1000')
    if big:
        checks.append(('1000 VMs: module time <= 2x floor (c)', ratio(big['a_module'], big['c']) is not None and big['a_module'] <= 2 * big['c'],
                       'module %s s, floor %s s, ratio %s (CPU: %s s vs %s s, ratio %s)'
                       % (fmt(big['a_module']), fmt(big['c']), fmt(big['a_module_over_c'], digits=2), fmt(big.get('a_cpu')),
                          fmt(big.get('c_cpu')), fmt(big.get('a_cpu_over_c_cpu'), digits=2))))
        checks.append(('1000 VMs: whole (a) task < 3 s', big['a'] is not None and big['a'] < 3.0, '%s s' % fmt(big['a'])))
        checks.append(('1000 VMs: peak module memory < 150 MB', big['a_rss_mb'] is not None and big['a_rss_mb'] < 150,
                       '%s MB' % fmt(big['a_rss_mb'], digits=0)))
    hundred = by_label.get('fake-100')
    if hundred:
        checks.append(('100 VMs: (b)/(a) >= 30', hundred['b_over_a'] is not None and hundred['b_over_a'] >= 30,
                       '%s' % fmt(hundred['b_over_a'], digits=1)))
    for label, med in by_label.items():
        if label.startswith('qemu-'):
            checks.append(('%s real QEMU VMs: (a) task <= 2x (c)' % label.split('-')[1], med['a_over_c'] is not None and med['a_over_c'] <= 2,
                           '(a) %s s, (c) %s s, ratio %s (module alone: %s); the same task with no VM (a0) %s s, '
                           '(a-a0)/(c) %s'
                           % (fmt(med['a']), fmt(med['c']), fmt(med['a_over_c'], digits=2), fmt(med['a_module_over_c'], digits=2),
                              fmt(med.get('a0')), fmt(med.get('a_net_over_c'), digits=2))))
            if med.get('d_getall') is not None:
                checks.append(('%s real QEMU VMs: (a) faster than getAllDomainStats on as many libvirt domains' % label.split('-')[1],
                               med['a'] is not None and med['a'] < med['d_getall'],
                               '(a) %s s, (d) getAll %s s: (d)/(a) %s; the libvirt transport (a-lv) %s s: (a-lv)/(d getAll) %s'
                               % (fmt(med['a']), fmt(med['d_getall'], digits=3), fmt(med['d_getall_over_a'], digits=2),
                                  fmt(med.get('a_lv')), fmt(med.get('a_lv_over_d_getall'), digits=1))))
    fakes = [(label, med) for label, med in by_label.items() if label.startswith('fake-')]
    for label, med in fakes:
        checks.append(('%s: median hold per VM < 10 ms (module)' % label, med['a_hold_median_ms'] is not None and med['a_hold_median_ms'] < 10,
                       'module %s ms, floor %s ms' % (fmt(med['a_hold_median_ms'], digits=1), fmt(med['c_hold_median_ms'], digits=1))))
    return checks


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
        defaults = dict(out=os.path.join(ROOT, 'build', 'bench-smoke'), sizes='3', qemu=1, reps=1, fleet='2x2')
        # No libvirtd in make test: only one privileged libvirt daemon can run on a host, and the
        # libvirt_transport integration target may be starting its own.
        args.no_sweep = args.no_profile = args.no_plot = args.no_libvirt = True
    else:
        defaults = dict(out=os.path.join(BENCH, 'results'), sizes='10,100,1000', qemu=20, reps=5, fleet='50x20')
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
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
        for size in args.sizes:
            label = 'fake-%d' % size
            log('%s: starting %d fake monitors' % (label, size))
            fake = FakeFleetProcess(python, os.path.join(work, 'f%d' % size), size)
            try:
                b_sample = args.b_sample if size > args.b_full else None
                result = bench_set(ansible, label, 'fake', fake.sockets, args.reps, b_sample, python, notes, args.skip_b)
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
            results['fleet'] = bench_fleet(ansible, python, hosts, per_host, args.forks, work)
            failures += ['fleet: %s' % error for error in results['fleet']['errors']]
            if results['fleet']['rc'] != 0:
                failures.append('fleet: ansible-playbook exited %d (see %s)' % (results['fleet']['rc'], results['fleet']['dir']))
    except KeyboardInterrupt:
        log('interrupted')
        cleanup()
        return 130
    finally:
        results['machine']['load_end'] = os.getloadavg()
        results['duration_s'] = time.time() - started

    results['targets'] = [{'target': name, 'holds': bool(holds), 'measured': measured} for name, holds, measured in check_targets(results)]
    results['failures'] = failures
    os.makedirs(args.out, exist_ok=True)
    text = [table(results), '', phases_table(results)]
    if libvirt_table(results):
        text += ['', libvirt_table(results)]
    if results.get('sweep'):
        text += ['', sweep_table(results['sweep'])]
    if results.get('fleet'):
        text += ['', fleet_table(results['fleet'])]
    if results.get('profile') and not results['profile'].get('error'):
        text += ['', results['profile'].get('text', '')]
    text += ['', 'Targets:'] + ['  [%s] %s: %s' % ('ok' if target['holds'] else 'MISS', target['target'], target['measured'])
                                for target in results['targets']]
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
    report = '\n'.join(text)
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
