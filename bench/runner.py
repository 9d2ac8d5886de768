# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bench's machinery: paths, venvs, the processes it starts (fake monitors, QEMU VMs, a private
libvirtd with its domains), timed child processes and the Ansible runner. Used by bench/run.py
(see its docstring); standard library only.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import platform
import re
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
FILTERS = os.path.join(BENCH, 'filter_plugins')
REQUIREMENTS = os.path.join(BENCH, 'requirements.txt')
REQUIREMENTS_ANSIBLE = os.path.join(BENCH, 'requirements-ansible.txt')
# What bench/requirements-ansible.txt reads with -r and -c: a change there rebuilds the bench venv too.
REQUIREMENTS_ANSIBLE_INPUTS = [os.path.join(ROOT, 'requirements', name) for name in
                               ('controller.txt', 'hypervisor.txt', 'hypervisor-libvirt.txt')] + [os.path.join(ROOT, 'tests', 'constraints.txt')]
PINS = os.path.join(ROOT, 'scripts', 'pins.sh')
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


def pin(name):
    """One version from scripts/pins.sh (its NAME=VALUE lines), e.g. pin('ANSIBLE_CORE_2_19')."""
    with open(PINS) as handle:
        match = re.search(r'^%s=(\S+)\s*$' % re.escape(name), handle.read(), re.MULTILINE)
    if not match:
        raise RuntimeError('%s has no %s=' % (PINS, name))
    return match.group(1)


def ensure_bench_venv(path, base_python, with_ansible=False):
    """Create or refresh the bench venv from bench/requirements.txt (plot, profiler), plus
    bench/requirements-ansible.txt and the ansible-core of .venv/2.19 when Ansible must run from it
    too; return its python or None."""
    python = os.path.join(path, 'bin', 'python')
    files = [REQUIREMENTS] + ([REQUIREMENTS_ANSIBLE] if with_ansible else [])
    packages = ['ansible-core==%s' % pin('ANSIBLE_CORE_2_19')] if with_ansible else []
    digest = hashlib.sha256()
    for name in files + (REQUIREMENTS_ANSIBLE_INPUTS if with_ansible else []):
        with open(name, 'rb') as handle:
            digest.update(handle.read())
    for package in packages:
        digest.update(package.encode())
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
    command = [python, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check'] + packages
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

    def env(self, timings, modlog, hold=True, probe=True, calls=None, timer=True):
        """The environment of one ansible-playbook run: the timer callback when TIMER; the module probe
        (bench/probe on the modules' PYTHONPATH) when PROBE; the call counter when CALLS names its file."""
        env = dict(os.environ)
        env.update({
            'ANSIBLE_CONFIG': self.config,
            'ANSIBLE_COLLECTIONS_PATH': self.collections,
            'ANSIBLE_CALLBACK_PLUGINS': os.path.join(BENCH, 'callback_plugins'),
            'ANSIBLE_CALLBACKS_ENABLED': ','.join(name for name, wanted in (('qmp_bench_timer', timer), ('qmp_bench_calls', calls))
                                                  if wanted),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_LOCAL_TEMP': os.path.join(self.work, 'ansible-local'),
            'ANSIBLE_REMOTE_TMP': os.path.join(self.work, 'ansible-remote'),
            'ANSIBLE_HOME': os.path.join(self.work, 'ansible-home'),
            'QMP_BENCH_TIMINGS': timings,
        })
        if calls:
            env['QMP_BENCH_CALLS'] = calls
        if not env['ANSIBLE_CALLBACKS_ENABLED']:
            # none: an empty list is a plugin with no name to ansible-core
            del env['ANSIBLE_CALLBACKS_ENABLED']
        if probe:
            env.update({
                'QMP_BENCH_MODLOG': modlog,
                'QMP_BENCH_HOLD': '1' if hold else '0',
                'PYTHONPATH': os.path.join(BENCH, 'probe') + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else ''),
            })
        return env

    def run(self, name, playbook_text, inventory_text, extra_files=None, forks=None, extra_env=None, probe=True, count_calls=False,
            limit=None, timer=True):
        """Run one playbook; return its callback timings, module process records (PROBE), module calls per host
        (COUNT_CALLS: bench/callback_plugins/qmp_bench_calls.py), exit code and wall time (the whole process, from outside)."""
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
        calls = os.path.join(directory, 'calls.json')
        for stale in (timings, modlog, calls):
            if os.path.exists(stale):
                os.remove(stale)
        env = self.env(timings, modlog, probe=probe, calls=calls if count_calls else None, timer=timer)
        env.update(extra_env or {})
        command = [self.playbook, '-i', 'inventory.ini', 'playbook.yml']
        if forks:
            command += ['--forks', str(forks)]
        if limit:
            command += ['--limit', limit]
        with open(os.path.join(directory, 'ansible.log'), 'w') as output:
            started_at = time.time()
            start = time.perf_counter()
            code = subprocess.run(command, cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT, check=False).returncode
            wall = time.perf_counter() - start
            ended_at = time.time()
        tasks = []
        if os.path.exists(timings):
            with open(timings) as handle:
                tasks = json.load(handle)['tasks']
        modules = []
        if os.path.exists(modlog):
            with open(modlog) as handle:
                modules = [json.loads(line) for line in handle if line.strip()]
        counted = None
        if os.path.exists(calls):
            with open(calls) as handle:
                counted = json.load(handle)
        if code != 0:
            log('ansible-playbook %s exited %d; see %s' % (name, code, os.path.join(directory, 'ansible.log')))
        return {'tasks': tasks, 'modules': modules, 'calls': counted, 'rc': code, 'wall': wall, 'dir': directory, 'started_at': started_at,
                'ended_at': ended_at}


# ---------------------------------------------------------------------------------------------
# libvirt domains (for (d) and (a-lv))
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
