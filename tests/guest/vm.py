#!/usr/bin/env python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot, wait for, talk to and stop QEMU test guests that have a virtio-balloon device.

Library and CLI, standard library only. Every guest NAME lives in one directory DIR:
DIR/NAME.qmp (QMP socket), DIR/NAME.pid, DIR/NAME.log (serial console), DIR/NAME.json
(how it was started). QEMU serves one QMP client at a time, so every call here opens the
socket, does its work and closes it again within a few milliseconds.

    vm.py start --name g1 --dir /tmp/vms --mem 128 [--churn 16] [--freeze-after 30]
          [--no-balloon-driver | --unload-balloon-driver-after 3]
    vm.py wait --dir /tmp/vms g1 g2
    vm.py qmp --dir /tmp/vms g1 balloon '{"value": 67108864}'
    vm.py stop --dir /tmp/vms [g1 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

# Run as a script or imported from elsewhere (tests/integration/targets/role_balloon_stats/fleet.py):
# build_guest beside this file, the test tooling's QMP client in tests/support.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _directory in (_HERE, os.path.join(os.path.dirname(_HERE), 'support')):
    if _directory not in sys.path:
        sys.path.insert(0, _directory)
import build_guest  # noqa: E402  pylint: disable=wrong-import-position
from qmp_client import (  # noqa: E402  pylint: disable=wrong-import-position,import-error
    DEFAULT_TIMEOUT as QMP_TIMEOUT, CommandFailed, MonitorUnreachable, QMPError, QMPSession as QMPConnection,
)

QEMU = 'qemu-system-x86_64'
BALLOON_ID = 'balloon0'
BALLOON_PATH = '/machine/peripheral/' + BALLOON_ID
# With -nodefaults the balloon is the only -device without id=, so it is the first anonymous one.
ANON_BALLOON_PATH = '/machine/peripheral-anon/device[0]'
DEFAULT_MEM = 128
NO_GUEST_MEM = 64
DEFAULT_WAIT = 90.0
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes including the terminating NUL
NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
FAILURE_MARKERS = ('Kernel panic', build_guest.ERROR_MARKER)


class VMError(Exception):
    """A guest could not be started, waited for or stopped."""


class WaitFailed(VMError):
    """Some guests died, failed or timed out; `failed` maps each to why, `ready` has the rest."""

    def __init__(self, ready, failed):
        super().__init__('; '.join('%s: %s' % item for item in sorted(failed.items())))
        self.ready = ready
        self.failed = failed


class Guest:
    """The files of guest `name` in `directory` and what DIR/NAME.json says about it."""

    def __init__(self, name, directory):
        if not NAME_PATTERN.match(name):
            raise VMError('bad guest name %r: use letters, digits, ".", "_" and "-"' % name)
        self.name = name
        self.directory = os.path.abspath(directory)
        base = os.path.join(self.directory, name)
        self.qmp_socket = base + '.qmp'
        self.pidfile = base + '.pid'
        self.log = base + '.log'
        self.metadata_file = base + '.json'

    def metadata(self):
        """Return what start() recorded, or raise VMError if this guest was never started."""
        try:
            with open(self.metadata_file) as handle:
                return json.load(handle)
        except (OSError, ValueError) as exc:
            raise VMError('%s: not started by vm.py in %s (%s)' % (self.name, self.directory, exc)) from exc

    def pid(self):
        """Return the PID of this guest's live QEMU, or None.

        A PID counts only while /proc/PID/cmdline names this guest's pidfile: a recycled PID
        or a stale pidfile never leads to killing someone else's process.
        """
        try:
            with open(self.pidfile) as handle:
                pid = int(handle.read().strip())
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                arguments = handle.read().split(b'\0')
            with open('/proc/%d/stat' % pid) as handle:
                state = handle.read().rsplit(')', 1)[1].split()[0]
        except (OSError, ValueError):
            return None
        if state in ('Z', 'X') or self.pidfile.encode() not in arguments:
            return None
        return pid

    def rss_mib(self):
        """Return the QEMU process's resident set size in MiB, or None when not running."""
        pid = self.pid()
        if pid is None:
            return None
        try:
            with open('/proc/%d/status' % pid) as handle:
                for line in handle:
                    if line.startswith('VmRSS:'):
                        return round(int(line.split()[1]) / 1024.0, 1)
        except OSError:
            pass
        return None

    def log_tail(self, lines=5):
        try:
            with open(self.log, errors='replace') as handle:
                return ' | '.join(handle.read().strip().splitlines()[-lines:]) or '(empty serial log)'
        except OSError:
            return '(no serial log)'

    def log_has(self, marker):
        """Whether a serial-console line contains `marker`."""
        try:
            with open(self.log, errors='replace') as handle:
                return any(marker in line for line in handle)
        except OSError:
            return False

    def log_failure(self):
        """Return the first serial-console line saying the guest failed, or None."""
        try:
            with open(self.log, errors='replace') as handle:
                for line in handle:
                    if any(marker in line for marker in FAILURE_MARKERS):
                        return line.strip()
        except OSError:
            pass
        return None


def qemu_command(guest, mem, kernel=None, initrd=None, append='', tcp_port=None, balloon='id', paused=False,
                 incoming=None):
    """Return the argv that starts `guest` daemonized (kernel None: no guest OS at all).

    incoming: a unix socket path; the guest waits there for a live migration (``-incoming unix:PATH``).
    """
    command = [QEMU, '-M', 'q35', '-accel', 'tcg', '-smp', '1', '-m', str(mem), '-nodefaults', '-display', 'none',
               '-name', guest.name]
    if kernel:
        command += ['-kernel', kernel, '-initrd', initrd, '-append', ('console=ttyS0 ' + append).strip()]
    command += ['-serial', 'file:' + guest.log]
    if balloon == 'id':
        command += ['-device', 'virtio-balloon-pci,id=' + BALLOON_ID]
    elif balloon == 'anon':
        command += ['-device', 'virtio-balloon-pci']
    command += ['-qmp', 'unix:%s,server=on,wait=off' % guest.qmp_socket]
    if tcp_port is not None:
        command += ['-qmp', 'tcp:127.0.0.1:%d,server=on,wait=off' % tcp_port]
    if incoming:
        command += ['-incoming', 'unix:' + incoming]
    if paused or not kernel:
        command.append('-S')
    command += ['-daemonize', '-pidfile', guest.pidfile]
    return command


def start(name, directory, mem=None, churn=0, freeze_after=None, guest_os=True, tcp_port=None, balloon='id', paused=False,
          cache=build_guest.DEFAULT_OUT, incoming=None, no_balloon_driver=False, unload_balloon_driver_after=None,
          swap=0, pressure=0):
    """Start guest `name` daemonized and return its metadata dict; does not wait for the boot.

    balloon: 'id' (/machine/peripheral/balloon0), 'anon' (no id=) or None (no balloon).
    guest_os False: no kernel, paused (-S), 64 MiB unless `mem` says otherwise.
    incoming: a unix socket path where the guest waits for a live migration instead of booting; start it with the
    source's options (same mem, churn, freeze_after, balloon).
    no_balloon_driver: the guest boots without loading virtio_balloon (the device is there, no driver);
    unload_balloon_driver_after: S seconds after boot the guest removes virtio_balloon (rmmod).
    Raises VMError (already running, socket path too long, QEMU refused) or build_guest.BuildError.
    """
    guest = Guest(name, directory)
    if balloon not in ('id', 'anon', None):
        raise VMError('balloon must be "id", "anon" or None, not %r' % (balloon,))
    running = guest.pid()
    if running is not None:
        raise VMError('%s is already running (pid %d)' % (name, running))
    if len(guest.qmp_socket.encode()) > UNIX_PATH_MAX:
        raise VMError('%s: socket path longer than %d bytes; use a shorter --dir' % (guest.qmp_socket, UNIX_PATH_MAX))
    os.makedirs(guest.directory, exist_ok=True)
    for stale in (guest.qmp_socket, guest.pidfile, guest.log, guest.metadata_file):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    kernel = initrd = None
    append = []
    if guest_os:
        image = build_guest.build(cache)
        kernel, initrd = image['kernel'], image['initrd']
        if churn:
            append.append('churn=%d' % churn)
        if freeze_after is not None:
            append.append('freeze_after=%d' % freeze_after)
        if no_balloon_driver:
            append.append('no_balloon_driver')
        if unload_balloon_driver_after is not None:
            append.append('unload_balloon_after=%d' % unload_balloon_driver_after)
        if swap:
            append.append('swap=%d' % swap)          # issue 14: a zram swap device of MIB MiB
        if pressure:
            append.append('pressure=%d' % pressure)  # issue 14: a tmpfs file of MIB MiB rewritten for ever
    if mem is None:
        mem = DEFAULT_MEM if guest_os else NO_GUEST_MEM
    command = qemu_command(guest, mem, kernel, initrd, ' '.join(append), tcp_port, balloon, paused, incoming)
    started = time.time()
    # -daemonize returns once QEMU is initialised: the sockets and pidfile exist afterwards.
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if result.returncode != 0:
        # QEMU may have created the socket before failing, and leaves it behind.
        for leftover in (guest.qmp_socket, guest.pidfile):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise VMError('%s: QEMU exited %d: %s' % (name, result.returncode, (result.stderr or result.stdout).strip()))
    metadata = {
        'name': name, 'dir': guest.directory, 'pid': guest.pid(), 'mem': mem, 'guest_os': guest_os, 'churn': churn,
        'freeze_after': freeze_after, 'paused': paused or not guest_os, 'tcp_port': tcp_port,
        'no_balloon_driver': bool(no_balloon_driver), 'unload_balloon_driver_after': unload_balloon_driver_after,
        'balloon_path': {'id': BALLOON_PATH, 'anon': ANON_BALLOON_PATH, None: None}[balloon],
        'incoming': incoming, 'qmp': guest.qmp_socket, 'log': guest.log, 'pidfile': guest.pidfile, 'started': started,
        'command': command,
    }
    with open(guest.metadata_file, 'w') as handle:
        json.dump(metadata, handle, indent=2)
    return metadata


def qmp_reply(directory, name, command, arguments=None, timeout=QMP_TIMEOUT):
    """Run one QMP command on guest `name`; return the raw reply ({'return': …} or {'error': …})."""
    with QMPConnection(Guest(name, directory).qmp_socket, timeout) as connection:
        return connection.reply(command, arguments)


def qmp(directory, name, command, arguments=None, timeout=QMP_TIMEOUT):
    """Run one QMP command on guest `name`; return its result or raise CommandFailed/MonitorUnreachable."""
    with QMPConnection(Guest(name, directory).qmp_socket, timeout) as connection:
        return connection.execute(command, arguments)


def _poll_stats(guest, balloon_path):
    """Return (last_update, status) from one short QMP session."""
    with QMPConnection(guest.qmp_socket) as connection:
        status = connection.execute('query-status')['status']
        try:
            stats = connection.execute('qom-get', {'path': balloon_path, 'property': 'guest-stats'})
        except CommandFailed as exc:
            if "hasn't updated any stats" in (exc.desc or ''):  # old QEMU before the guest's first answer
                return 0, status
            raise
    return stats.get('last-update', 0), status


def wait_ready(directory, names, timeout=DEFAULT_WAIT, poll_interval=0.5):
    """Wait until each guest has reported stats once (non-zero last-update); all in parallel.

    Reads only: the polling interval is not touched (a Linux guest sends one set of stats
    when its driver loads). A guest started with no_balloon_driver never reports: it is ready
    once its /init printed the ready marker on the serial console. Returns {name: {'seconds', 'last_update', 'rss_mib'}} where
    seconds counts from QEMU's start. Raises WaitFailed naming every guest that died, failed
    or was not ready within `timeout` seconds of this call; the others are in its `ready`.
    """
    guests = {name: Guest(name, directory) for name in names}
    metadata = {name: guest.metadata() for name, guest in guests.items()}
    deadline = time.monotonic() + timeout
    ready, failed, last_seen = {}, {}, {}
    for name, meta in metadata.items():
        if not meta['balloon_path']:
            failed[name] = 'started without a balloon device: it never reports stats'
        elif not meta['guest_os']:
            failed[name] = 'started with --no-guest: it never reports stats'
    while True:
        for name, guest in guests.items():
            if name in ready or name in failed:
                continue
            if guest.pid() is None:
                failed[name] = 'QEMU is not running; serial log: %s' % guest.log_tail()
                continue
            failure = guest.log_failure()
            if failure:
                failed[name] = 'guest failed: %s' % failure
                continue
            if metadata[name].get('no_balloon_driver'):
                if guest.log_has(build_guest.READY_MARKER):
                    ready[name] = {'seconds': round(time.time() - metadata[name]['started'], 1), 'last_update': 0,
                                   'rss_mib': guest.rss_mib()}
                else:
                    last_seen[name] = 'booting, no ready marker on the console yet'
                continue
            try:
                last_update, status = _poll_stats(guest, metadata[name]['balloon_path'])
            except QMPError as exc:
                last_seen[name] = str(exc)
                continue
            last_seen[name] = 'status %s, last-update %s' % (status, last_update)
            if last_update:
                ready[name] = {'seconds': round(time.time() - metadata[name]['started'], 1), 'last_update': last_update,
                               'rss_mib': guest.rss_mib()}
        pending = [name for name in guests if name not in ready and name not in failed]
        if not pending:
            break
        if time.monotonic() >= deadline:
            for name in pending:
                failed[name] = 'no stats within %.0f s (%s); serial log: %s' % (
                    timeout, last_seen.get(name, 'never polled'), guests[name].log_tail(2))
            break
        time.sleep(poll_interval)
    if failed:
        raise WaitFailed(ready, failed)
    return ready


def stop(directory, names=None, timeout=10.0):
    """Stop the named guests (default: every DIR/*.pid) and wait for QEMU to exit.

    Only a process whose command line names the guest's own pidfile is signalled: SIGTERM,
    then SIGKILL after `timeout` seconds. Returns {name: 'stopped' | 'not running'};
    raises VMError if a process survives SIGKILL.
    """
    directory = os.path.abspath(directory)
    if names is None:
        names = sorted(entry[:-4] for entry in os.listdir(directory) if entry.endswith('.pid')) if os.path.isdir(directory) else []
    outcome = {}
    for name in names:
        guest = Guest(name, directory)
        pid = guest.pid()
        if pid is None:
            outcome[name] = 'not running'
        else:
            _terminate(guest, pid, timeout)
            outcome[name] = 'stopped'
        for leftover in (guest.pidfile, guest.qmp_socket):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    return outcome


def _terminate(guest, pid, timeout):
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if guest.pid() != pid:
                return
            time.sleep(0.05)
    raise VMError('%s: pid %d survived SIGKILL' % (guest.name, pid))


@contextlib.contextmanager
def running_guests(directory, names, mem=None, timeout=DEFAULT_WAIT, **options):
    """Start guests, wait until each reported stats, yield their metadata; always stop them.

    `names` is a list of names or a count (guest1 … guestN). `options` go to start(). Guests
    started paused or without a guest OS are not waited for.
    """
    if isinstance(names, int):
        names = ['guest%d' % index for index in range(1, names + 1)]
    started = []
    try:
        for name in names:
            started.append(start(name, directory, mem=mem, **options))
        booting = [meta['name'] for meta in started if not meta['paused'] and meta['balloon_path']]
        if booting:
            wait_ready(directory, booting, timeout)
        yield started
    finally:
        stop(directory, [meta['name'] for meta in started])


def _print_json(value):
    print(json.dumps(value, indent=2, sort_keys=True))


def _command_start(args):
    balloon = None if args.no_balloon else ('anon' if args.anon_balloon else 'id')
    _print_json(start(args.name, args.dir, args.mem, args.churn, args.freeze_after, not args.no_guest, args.tcp, balloon, args.S,
                      args.cache, args.incoming, args.no_balloon_driver, args.unload_balloon_driver_after,
                      swap=args.swap, pressure=args.pressure))
    return 0


def _command_wait(args):
    try:
        _print_json(wait_ready(args.dir, args.names, args.timeout))
    except WaitFailed as exc:
        _print_json({'ready': exc.ready, 'failed': exc.failed})
        raise
    return 0


def _command_stop(args):
    _print_json(stop(args.dir, args.names or None, args.timeout))
    return 0


def _command_qmp(args):
    try:
        arguments = json.loads(args.arguments) if args.arguments else None
    except ValueError as exc:
        raise VMError('JSON-ARGS is not JSON: %s' % exc) from exc
    try:
        answer = qmp_reply(args.dir, args.name, args.command, arguments, args.timeout)
    except MonitorUnreachable as exc:
        print('vm.py: %s' % exc, file=sys.stderr)
        return 3
    _print_json(answer)
    return 1 if 'error' in answer else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog='Exit codes: 0 ok, 1 failed, 2 usage, '
                                     '3 (qmp) monitor unreachable or busy.')
    commands = parser.add_subparsers(dest='action', metavar='ACTION')
    commands.required = True

    sub = commands.add_parser('start', help='start one guest (daemonized); prints its metadata as JSON')
    sub.add_argument('--name', required=True)
    sub.add_argument('--dir', required=True)
    sub.add_argument('--mem', type=int, help='MiB (default %d, %d with --no-guest; the guest needs 80)' % (DEFAULT_MEM, NO_GUEST_MEM))
    sub.add_argument('--churn', type=int, default=0, metavar='MIB', help='guest allocates and frees MIB MiB every 2 s')
    sub.add_argument('--freeze-after', type=int, metavar='S', help='guest suspends to idle after S s: stops answering stats '
                     'requests while QEMU says running; "qmp NAME system_powerdown" wakes it')
    sub.add_argument('--no-guest', action='store_true', help='no kernel at all, paused (-S)')
    driver = sub.add_mutually_exclusive_group()
    driver.add_argument('--no-balloon-driver', action='store_true',
                        help='the guest does not load virtio_balloon (wait: ready when the guest has booted)')
    driver.add_argument('--unload-balloon-driver-after', type=int, metavar='S',
                        help='S s after boot the guest removes virtio_balloon (rmmod), after its first stats')
    sub.add_argument('--tcp', type=int, metavar='PORT', help='a second QMP monitor on tcp:127.0.0.1:PORT')
    sub.add_argument('--incoming', metavar='SOCKET', help='wait for a live migration on unix:SOCKET (-incoming); give '
                     'the source\'s options; migrate with "qmp SOURCE migrate \'{"uri": "unix:SOCKET"}\'"')
    group = sub.add_mutually_exclusive_group()
    group.add_argument('--no-balloon', action='store_true', help='no balloon device')
    group.add_argument('--anon-balloon', action='store_true', help='balloon without id= (%s)' % ANON_BALLOON_PATH)
    sub.add_argument('-S', action='store_true', help='start paused (status prelaunch) until "qmp NAME cont"')
    sub.add_argument('--cache', default=build_guest.DEFAULT_OUT, help='initramfs cache (default: %(default)s)')
    sub.add_argument('--swap', type=int, default=0, metavar='MIB', help='a zram swap device of MIB MiB in the guest')
    sub.add_argument('--pressure', type=int, default=0, metavar='MIB',
                     help='guest rewrites a MIB MiB tmpfs file for ever (with --swap and MIB above its memory: swapping)')
    sub.set_defaults(run=_command_start)

    sub = commands.add_parser('wait', help='wait until each guest reported stats; prints JSON')
    sub.add_argument('--dir', required=True)
    sub.add_argument('--timeout', type=float, default=DEFAULT_WAIT, help='seconds (default %(default)s)')
    sub.add_argument('names', nargs='+', metavar='NAME')
    sub.set_defaults(run=_command_wait)

    sub = commands.add_parser('stop', help='stop guests (default: all in DIR) and wait for exit; prints JSON')
    sub.add_argument('--dir', required=True)
    sub.add_argument('--timeout', type=float, default=10.0, help='seconds before SIGKILL (default %(default)s)')
    sub.add_argument('names', nargs='*', metavar='NAME')
    sub.set_defaults(run=_command_stop)

    sub = commands.add_parser('qmp', help='run one QMP command; prints the reply as JSON (exit 1 if it is an error)')
    sub.add_argument('--dir', required=True)
    sub.add_argument('--timeout', type=float, default=QMP_TIMEOUT, help='seconds (default %(default)s)')
    sub.add_argument('name', metavar='NAME')
    sub.add_argument('command', metavar='CMD')
    sub.add_argument('arguments', nargs='?', metavar='JSON-ARGS')
    sub.set_defaults(run=_command_qmp)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (VMError, build_guest.BuildError) as exc:
        print('vm.py: %s' % exc, file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
