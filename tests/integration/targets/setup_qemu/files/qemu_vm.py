#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Start, stop and poke real QEMU VMs for the integration targets of qmp.balloon.

Standard library only, so it runs with any Python 3.7+ and never uses the code under test
(qemu.qmp, the collection's module_utils). It talks QMP through the test tooling's client,
tests/support/qmp_client.py, found in the nearest ancestor directory that has it: so it runs
in place, in the collection's tree, on this machine (the managed host of every integration
target: ansible-test --local). The roles run it with ansible.builtin.command and
``setup_qemu_python``.

Every process it starts writes a pidfile into the VM directory and carries that
pidfile's path on its command line; ``stop`` kills exactly those processes.

Usage (each prints one JSON document on stdout):
  qemu_vm.py start DIR SPECS_JSON [QEMU [MEMORY_MIB]]
  qemu_vm.py stop DIR
  qemu_vm.py kill DIR NAME          SIGKILL one process started from DIR (a VM: its socket file
                                    stays, a stale socket; or a monitor holder, NAME hold-VM)
  qemu_vm.py hold ENDPOINT PIDFILE [SECONDS]
                                    a background client that takes the monitor and keeps it
  qemu_vm.py dead-socket PATH       a bound unix socket with no listener
  qemu_vm.py qmp ENDPOINT COMMAND [ARGUMENTS_JSON]
                                    one raw QMP command; prints QEMU's answer
  qemu_vm.py intervals DIR [NAME...]
                                    guest-stats-polling-interval of the VMs started in DIR
                                    (all with a balloon by default), read with raw QMP
ENDPOINT is unix:PATH or tcp:HOST:PORT.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time


def _find_support():
    """Put the nearest ancestor's tests/support (the test tooling's QMP client) on sys.path."""
    directory = os.path.dirname(os.path.abspath(__file__))
    while True:
        candidate = os.path.join(directory, 'tests', 'support')
        if os.path.isfile(os.path.join(candidate, 'qmp_client.py')):
            if candidate not in sys.path:
                sys.path.insert(0, candidate)
            return
        parent = os.path.dirname(directory)
        if parent == directory:
            sys.exit('qemu_vm.py: no ancestor of %s has tests/support/qmp_client.py' % __file__)
        directory = parent


_find_support()
from qmp_client import QMPError, QMPSession, QMPStream, parse_endpoint  # noqa: E402  pylint: disable=wrong-import-position,import-error

START_TIMEOUT = 30
STOP_TIMEOUT = 10
TCP_ATTEMPTS = 10
QMP_TIMEOUT = 10
STATE_FILE = 'vms.json'


def fail(message):
    sys.stderr.write('qemu_vm.py: %s\n' % message)
    sys.exit(1)


def free_port():
    """A loopback port nobody listens on right now (QEMU may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def vm_argv(qemu, memory, spec, pidfile):
    argv = [qemu, '-M', 'q35', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-S', '-m', str(memory)]
    qemu_name = spec.get('qemu_name', spec['name'])
    if qemu_name:
        argv += ['-name', qemu_name]
    balloon = spec.get('balloon', 'id')
    if balloon == 'id':
        argv += ['-device', 'virtio-balloon-pci,id=%s' % spec.get('balloon_id', 'balloon0')]
    elif balloon == 'anon':
        argv += ['-device', 'virtio-balloon-pci']
    elif balloon != 'none':
        fail('%s: balloon must be id, anon or none, not %r' % (spec['name'], balloon))
    return argv, qemu_name


def launch(argv, pidfile):
    """Run QEMU with -daemonize: it returns once the monitor listens."""
    argv = argv + ['-daemonize', '-pidfile', pidfile]
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=START_TIMEOUT, check=False)
    return proc.returncode, proc.stderr.decode('utf-8', 'replace').strip()


def start_vm(directory, spec, qemu, memory):
    name = spec['name']
    pidfile = os.path.join(directory, '%s.pid' % name)
    argv, qemu_name = vm_argv(qemu, memory, spec, pidfile)
    record = dict(name=name, qemu_name=qemu_name or None, balloon=spec.get('balloon', 'id'), pidfile=pidfile,
                  socket=None, host=None, port=None)
    transport = spec.get('qmp', 'unix')
    if transport == 'unix':
        path = os.path.join(directory, '%s.qmp' % name)
        if len(path) >= 100:
            fail('%s: socket path %s is too long for a unix socket' % (name, path))
        code, error = launch(argv + ['-qmp', 'unix:%s,server=on,wait=off' % path], pidfile)
        if code:
            fail('%s: QEMU failed (%s): %s' % (name, code, error))
        record.update(socket=path, endpoint='unix:%s' % path, target=dict(socket=path),
                      default_name=os.path.splitext(os.path.basename(path))[0])
    elif transport == 'tcp':
        for attempt in range(TCP_ATTEMPTS):
            port = free_port()
            code, error = launch(argv + ['-qmp', 'tcp:127.0.0.1:%d,server=on,wait=off' % port], pidfile)
            if not code:
                break
            if 'in use' not in error or attempt == TCP_ATTEMPTS - 1:
                fail('%s: QEMU failed (%s): %s' % (name, code, error))
        record.update(host='127.0.0.1', port=port, endpoint='tcp:127.0.0.1:%d' % port,
                      target=dict(host='127.0.0.1', port=port), default_name='127.0.0.1:%d' % port)
    else:
        fail('%s: qmp must be unix or tcp, not %r' % (name, transport))
    with open(pidfile) as handle:
        record['pid'] = int(handle.read().strip())
    # What the modules should report when no name is given.
    record['expected_name'] = qemu_name or record['default_name']
    record['expected_qom_path'] = {
        'id': '/machine/peripheral/%s' % spec.get('balloon_id', 'balloon0'),
        'anon': '/machine/peripheral-anon/device[0]',
    }.get(record['balloon'])
    return record


def cmd_start(directory, specs_json, qemu='qemu-system-x86_64', memory='64'):
    specs = json.loads(specs_json)
    names = [spec['name'] for spec in specs]
    if len(set(names)) != len(names):
        fail('VM names must be unique: %s' % names)
    records = []
    try:
        for spec in specs:
            records.append(start_vm(directory, spec, qemu, int(memory)))
    except BaseException:
        cmd_stop(directory, quiet=True)
        raise
    state = load_state(directory)
    state.update((record['name'], record) for record in records)
    with open(os.path.join(directory, STATE_FILE), 'w') as handle:
        json.dump(state, handle)
    return dict(vms=records, by_name=state)


def load_state(directory):
    try:
        with open(os.path.join(directory, STATE_FILE)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def is_gone(pid):
    """True once the process is dead or a zombie (no init reaps orphans in some containers)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            state = handle.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ('Z', 'X')


def owned_pid(pidfile):
    """The pid in ``pidfile`` when that process still runs and names this pidfile, else None."""
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
    except (OSError, ValueError):
        return None
    if os.fsencode(pidfile) not in argv or is_gone(pid):
        return None
    return pid


def signal_and_wait(pids, first_signal, timeout):
    for pid in pids:
        try:
            os.kill(pid, first_signal)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(is_gone(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if not is_gone(pid)]


def cmd_stop(directory, quiet=False):
    owned = {}
    for pidfile in sorted(glob.glob(os.path.join(glob.escape(directory), '*.pid'))):
        pid = owned_pid(pidfile)
        if pid is not None:
            owned[pid] = pidfile
    left = signal_and_wait(list(owned), signal.SIGTERM, STOP_TIMEOUT)
    if left:
        left = signal_and_wait(left, signal.SIGKILL, STOP_TIMEOUT)
    for pidfile in owned.values():
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass
    result = dict(stopped=sorted(os.path.basename(p)[:-len('.pid')] for p in owned.values()), left=left)
    if left and not quiet:
        fail('could not stop %s' % left)
    return result


def cmd_kill(directory, name):
    pidfile = os.path.join(directory, '%s.pid' % name)
    pid = owned_pid(pidfile)
    if pid is None:
        fail('%s is not running' % name)
    if signal_and_wait([pid], signal.SIGKILL, STOP_TIMEOUT):
        fail('%s (pid %d) survived SIGKILL' % (name, pid))
    os.unlink(pidfile)
    return dict(killed=name, pid=pid)


def address_of(endpoint):
    try:
        return parse_endpoint(endpoint)
    except ValueError as exc:
        fail(str(exc))


def cmd_qmp(endpoint, command, arguments_json=None):
    try:
        with QMPSession(address_of(endpoint), QMP_TIMEOUT) as session:
            return session.reply(command, json.loads(arguments_json) if arguments_json else None)
    except QMPError as exc:
        fail(str(exc))


def cmd_intervals(directory, *names):
    """Each VM's polling interval, or the error QEMU gave; None for a VM that no longer runs."""
    state = load_state(directory)
    names = names or sorted(name for name, record in state.items() if record['expected_qom_path'])
    intervals = {}
    for name in names:
        record = state[name]
        if owned_pid(record['pidfile']) is None:
            intervals[name] = None
            continue
        answer = cmd_qmp(record['endpoint'], 'qom-get', json.dumps(
            {'path': record['expected_qom_path'], 'property': 'guest-stats-polling-interval'}))
        intervals[name] = answer.get('return', answer.get('error'))
    return intervals


def cmd_hold(endpoint, pidfile, seconds='60'):
    """Fork a client that reads the greeting and then sits on the monitor."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_read)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        try:
            stream = QMPStream(address_of(endpoint), QMP_TIMEOUT)  # kept open: the monitor stays taken
            greeting = stream.greet()
            os.write(ready_write, b'1' if 'QMP' in greeting else b'0')
            os.close(ready_write)
            time.sleep(float(seconds))
        finally:
            os._exit(0)
    os.close(ready_write)
    readable = select.select([ready_read], [], [], QMP_TIMEOUT + 2)[0]
    status = os.read(ready_read, 1) if readable else b''
    if status != b'1':
        os.kill(pid, signal.SIGKILL)
        fail('the holder got no QMP greeting from %s' % endpoint)
    with open(pidfile, 'w') as handle:
        handle.write('%d\n' % pid)
    return dict(holder=pid, endpoint=endpoint, pidfile=pidfile)


def cmd_dead_socket(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(path)
    except OSError as exc:
        if exc.errno != errno.ECONNREFUSED:
            raise
    else:
        fail('%s unexpectedly accepted a connection' % path)
    finally:
        probe.close()
    return dict(socket=path)


COMMANDS = {
    'start': cmd_start,
    'stop': cmd_stop,
    'kill': cmd_kill,
    'hold': cmd_hold,
    'dead-socket': cmd_dead_socket,
    'qmp': cmd_qmp,
    'intervals': cmd_intervals,
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        fail(__doc__)
    print(json.dumps(COMMANDS[argv[1]](*argv[2:])))


if __name__ == '__main__':
    main(sys.argv)
