#!/usr/bin/env python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Start, break and stop a private libvirtd for the libvirt_transport target, and its test domains.

Standard library only; drives the daemons directly (no systemd here) and the domains with virsh.

    libvirt_ctl.py check                        {"skip": reason} when this machine cannot run the target
    libvirt_ctl.py start   --dir DIR            virtlogd (unless one runs) + libvirtd with DIR/libvirtd.conf
    libvirt_ctl.py domain  --dir DIR --name N --how create|define|define-start [--balloon virtio|none]
                           [--mem MIB] [--period S] [--no-kernel]
    libvirt_ctl.py kill    --dir DIR            SIGKILL our libvirtd (domains keep running)
    libvirt_ctl.py pause / resume --dir DIR     SIGSTOP / SIGCONT our libvirtd (a hung daemon)
    libvirt_ctl.py restart --dir DIR            start our libvirtd again; it reconnects to its domains
    libvirt_ctl.py stop    --dir DIR            destroy/undefine our domains, stop what start started

Why it works as root without touching /etc: libvirtd reads the file given with --config, whose
unix_sock_dir puts its sockets in DIR, so the test's URI is qemu:///system?socket=DIR/libvirt-sock
and a system libvirtd socket is never used. The qemu driver keeps Debian's defaults
(/etc/libvirt/qemu.conf untouched): QEMU runs as libvirt-qemu, and libvirt's DAC driver chowns
the kernel and initrd to it while the domain runs and back afterwards. So the guest files are
copies in DIR (mode 0755 directory, 0644 files), never /boot. There is no AppArmor on these
machines, so no security driver gets in the way. Only one privileged qemu driver can run per
host (it locks /run/libvirt/qemu/driver.pid): when another libvirtd or virtqemud runs, start
says so ({"skip": ...}) and starts nothing.

Every command prints one JSON object. Processes are signalled only by a pid whose
/proc/PID/cmdline names DIR: nothing this script did not start is ever touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

PREFIX = 'lvt-'
DAEMONS = ('libvirtd', 'virtqemud')
LIBVIRTD_CONF = '''# Private libvirtd of the libvirt_transport integration target.
unix_sock_dir = "{dir}"
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:{dir}/libvirtd.log"
'''
VIRTLOGD_SOCKET = '/run/libvirt/virtlogd-sock'


class CtlError(Exception):
    pass


def paths(directory):
    return {
        'conf': os.path.join(directory, 'libvirtd.conf'),
        'libvirtd_pid': os.path.join(directory, 'libvirtd.pid'),
        'virtlogd_pid': os.path.join(directory, 'virtlogd.pid'),
        'socket': os.path.join(directory, 'libvirt-sock'),
        'state': os.path.join(directory, 'state.json'),
    }


def uri(directory):
    return 'qemu:///system?socket=%s' % paths(directory)['socket']


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().decode(errors='replace').split('\0')
    except OSError:
        return None


def comm(pid):
    try:
        with open('/proc/%d/comm' % pid) as handle:
            return handle.read().strip()
    except OSError:
        return None


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except (OSError, IndexError):
        return False


def pids_named(names):
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and comm(int(entry)) in names and alive(int(entry)):
            found.append(int(entry))
    return found


def our_pid(pidfile, marker):
    """The pid in ``pidfile`` if that process is alive and its command line names ``marker``."""
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    arguments = cmdline(pid)
    if not alive(pid) or not arguments or not any(marker in argument for argument in arguments):
        return None
    return pid


def wait_until(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def socket_answers(path):
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def virsh(directory, *arguments, **kwargs):
    check = kwargs.pop('check', True)
    result = subprocess.run(['virsh', '-q', '-c', uri(directory)] + list(arguments), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=kwargs.pop('timeout', 60), check=False)
    if check and result.returncode != 0:
        raise CtlError('virsh %s: %s' % (' '.join(arguments), (result.stderr or result.stdout).strip()))
    return result


def load_state(directory):
    try:
        with open(paths(directory)['state']) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def save_state(directory, state):
    with open(paths(directory)['state'], 'w') as handle:
        json.dump(state, handle)


def start_libvirtd(directory, wait=60.0):
    """Start our libvirtd (if not running) and wait until virsh gets an answer; return its pid and the seconds."""
    files = paths(directory)
    pid = our_pid(files['libvirtd_pid'], files['conf'])
    started = time.monotonic()
    if pid is None:
        for stale in (files['socket'], files['libvirtd_pid']):
            if os.path.exists(stale):
                os.unlink(stale)
        result = subprocess.run(['libvirtd', '-d', '--config', files['conf'], '--pid-file', files['libvirtd_pid']],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
        if result.returncode != 0:
            raise CtlError('libvirtd exited %d: %s' % (result.returncode, (result.stderr or result.stdout).strip()))
    deadline = time.monotonic() + wait
    while True:
        # The first start probes QEMU's capabilities (~8 s here); virsh answers after that.
        if socket_answers(files['socket']) and virsh(directory, 'uri', check=False, timeout=wait).returncode == 0:
            break
        if time.monotonic() > deadline:
            raise CtlError('libvirtd did not answer on %s within %g s; see %s/libvirtd.log' % (files['socket'], wait, directory))
        time.sleep(0.2)
    return our_pid(files['libvirtd_pid'], files['conf']), round(time.monotonic() - started, 1)


def why_skip(directory=None):
    """Why this machine cannot run the target (a sentence), or None."""
    for tool in ('libvirtd', 'virtlogd', 'virsh'):
        if shutil.which(tool) is None:
            return '%s is not installed (apt-get install -y libvirt-daemon-system)' % tool
    others = [pid for pid in pids_named(DAEMONS)
              if not directory or not any(directory in argument for argument in cmdline(pid) or [])]
    if others:
        return ('another libvirt daemon runs here (pid %s): only one privileged QEMU driver can run on a host'
                % ', '.join(str(pid) for pid in others))
    return None


def command_check(args):  # pylint: disable=unused-argument
    reason = why_skip()
    return {'skip': reason} if reason else {}


def command_start(args):
    directory = os.path.abspath(args.dir)
    files = paths(directory)
    reason = why_skip(directory)
    if reason:
        return {'skip': reason}
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    with open(files['conf'], 'w') as handle:
        handle.write(LIBVIRTD_CONF.format(dir=directory))
    state = load_state(directory)
    if not socket_answers(VIRTLOGD_SOCKET):
        result = subprocess.run(['virtlogd', '-d', '-p', files['virtlogd_pid']], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, check=False)
        if result.returncode != 0:
            raise CtlError('virtlogd exited %d: %s' % (result.returncode, (result.stderr or result.stdout).strip()))
        state['virtlogd_started'] = True
        wait_until(lambda: socket_answers(VIRTLOGD_SOCKET), 5)
    save_state(directory, state)
    pid, seconds = start_libvirtd(directory)
    return {'uri': uri(directory), 'socket': files['socket'], 'libvirtd_pid': pid, 'seconds': seconds,
            'virtlogd_started': bool(state.get('virtlogd_started'))}


def domain_xml(name, directory, mem, balloon, period, kernel):
    os_part = "<type arch='x86_64' machine='q35'>hvm</type>"
    if kernel:
        os_part += ("<kernel>{d}/vmlinuz</kernel><initrd>{d}/initrd.gz</initrd><cmdline>console=ttyS0</cmdline>"
                    .format(d=directory))
    if balloon == 'none':
        memballoon = "<memballoon model='none'/>"
    elif period:
        memballoon = "<memballoon model='virtio'><stats period='%d'/></memballoon>" % period
    else:
        memballoon = "<memballoon model='virtio'/>"
    return ("<domain type='qemu'><name>{name}</name><memory unit='MiB'>{mem}</memory><vcpu>1</vcpu>"
            "<os>{os}</os><on_poweroff>destroy</on_poweroff><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
            "<serial type='file'><source path='{d}/{name}.log'/><target port='0'/></serial>{balloon}</devices></domain>"
            ).format(name=name, mem=mem, os=os_part, d=directory, balloon=memballoon)


def command_domain(args):
    directory = os.path.abspath(args.dir)
    if not args.name.startswith(PREFIX):
        raise CtlError('test domains are named %s*, not %r' % (PREFIX, args.name))
    path = os.path.join(directory, args.name + '.xml')
    with open(path, 'w') as handle:
        handle.write(domain_xml(args.name, directory, args.mem, args.balloon, args.period, not args.no_kernel))
    if args.how == 'create':
        virsh(directory, 'create', path)
    else:
        virsh(directory, 'define', path)
        if args.how == 'define-start':
            virsh(directory, 'start', args.name)
    uuid = virsh(directory, 'domuuid', args.name).stdout.strip()
    return {'name': args.name, 'uuid': uuid, 'how': args.how, 'xml': path}


def signal_libvirtd(directory, signum):
    files = paths(directory)
    pid = our_pid(files['libvirtd_pid'], files['conf'])
    if pid is None:
        raise CtlError('our libvirtd is not running')
    os.kill(pid, signum)
    return pid


def command_kill(args):
    directory = os.path.abspath(args.dir)
    pid = signal_libvirtd(directory, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 5)
    return {'killed': pid, 'alive': alive(pid)}


def command_pause(args):
    return {'stopped': signal_libvirtd(os.path.abspath(args.dir), signal.SIGSTOP)}


def command_resume(args):
    return {'continued': signal_libvirtd(os.path.abspath(args.dir), signal.SIGCONT)}


def command_restart(args):
    pid, seconds = start_libvirtd(os.path.abspath(args.dir))
    return {'libvirtd_pid': pid, 'seconds': seconds}


def terminate(pid, timeout=10.0):
    for signum in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return 'gone'
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        return 'killed'
    return 'stopped'


def command_stop(args):
    directory = os.path.abspath(args.dir)
    files = paths(directory)
    report = {'domains': {}, 'errors': []}
    if not os.path.isfile(files['conf']):
        return dict(report, libvirtd='never started')
    try:
        # The domains are ended through libvirt, so it gives the guest files back their owner.
        start_libvirtd(directory, wait=30)
        names = virsh(directory, 'list', '--all', '--name').stdout.split()
        for name in names:
            if not name.startswith(PREFIX):
                continue
            virsh(directory, 'destroy', name, check=False)
            virsh(directory, 'undefine', name, check=False)
            report['domains'][name] = 'removed'
    except (CtlError, OSError, subprocess.SubprocessError) as exc:
        report['errors'].append(str(exc))
    pid = our_pid(files['libvirtd_pid'], files['conf'])
    report['libvirtd'] = terminate(pid) if pid else 'not running'
    state = load_state(directory)
    if state.get('virtlogd_started'):
        pid = our_pid(files['virtlogd_pid'], files['virtlogd_pid'])
        report['virtlogd'] = terminate(pid) if pid else 'not running'
    # Last resort: a QEMU of ours that libvirt could not end (its command line names DIR).
    for pid in pids_named(('qemu-system-x86',)):
        if any(directory in argument for argument in cmdline(pid) or []):
            report.setdefault('qemu', {})[pid] = terminate(pid)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command')
    commands.required = True
    commands.add_parser('check').set_defaults(run=command_check)
    for name, run in (('start', command_start), ('kill', command_kill), ('pause', command_pause),
                      ('resume', command_resume), ('restart', command_restart), ('stop', command_stop)):
        sub = commands.add_parser(name)
        sub.add_argument('--dir', required=True)
        sub.set_defaults(run=run)
    sub = commands.add_parser('domain')
    sub.add_argument('--dir', required=True)
    sub.add_argument('--name', required=True)
    sub.add_argument('--how', choices=('create', 'define', 'define-start'), default='create')
    sub.add_argument('--balloon', choices=('virtio', 'none'), default='virtio')
    sub.add_argument('--mem', type=int, default=128)
    sub.add_argument('--period', type=int, default=0)
    sub.add_argument('--no-kernel', action='store_true')
    sub.set_defaults(run=command_domain)
    args = parser.parse_args(argv)
    try:
        print(json.dumps(args.run(args), sort_keys=True))
    except (CtlError, OSError, subprocess.SubprocessError) as exc:
        print('libvirt_ctl: %s' % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
