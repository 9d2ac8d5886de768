# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The VMs of this target's fleet: inventory.yml says which hypervisor owns which VMs (rbs_vms).

Uses tests/guest/vm.py (found above this file), never the code under test. Every VM of
hypervisor H lives in WORK/H; each command prints one JSON document.

    python fleet.py start WORK             make WORK/H for every local hypervisor, start all VMs at once
    python fleet.py wait WORK [SECONDS]    wait until every real guest sent its first stats
    python fleet.py stop WORK [HOST NAME]  stop every VM started in WORK/* (and nothing else), or one VM
    python fleet.py interval DIR NAME...   guest-stats-polling-interval of each VM, read with qom-get
    python fleet.py swapper WORK HOST NAME SECONDS
                                           start a real guest made to swap (128 MiB, zram swap, a 200 MiB
                                           tmpfs file rewritten for ever) in WORK/HOST, wait for its stats
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROPERTY = 'guest-stats-polling-interval'


def load_vm_helper():
    """Import tests/guest/vm.py from the nearest ancestor that has it."""
    directory = HERE
    while directory != os.path.dirname(directory):
        candidate = os.path.join(directory, 'tests', 'guest', 'vm.py')
        if os.path.isfile(candidate):
            sys.path.insert(0, os.path.dirname(candidate))  # vm.py imports build_guest beside it
            spec = importlib.util.spec_from_file_location('vm', candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        directory = os.path.dirname(directory)
    raise SystemExit('fleet.py: no ancestor of %s has tests/guest/vm.py' % HERE)


def hypervisors():
    """{host: [vm, ...]} for every hypervisor of inventory.yml that runs here (connection local)."""
    import yaml  # only here: stop and interval must work with any Python 3

    with open(os.path.join(HERE, 'inventory.yml')) as handle:
        inventory = yaml.safe_load(handle)
    found = {}

    def walk(group):
        for name, host in (group.get('hosts') or {}).items():
            host = host or {}
            if host.get('ansible_connection', 'local') == 'local':
                found[name] = host.get('rbs_vms') or []
        for child in (group.get('children') or {}).values():
            walk(child or {})

    walk(inventory['all']['children']['hypervisors'])
    walk(inventory['all']['children'].get('audit_hosts') or {})   # issue 14's runs 6-8
    return found


def start(vm, work):
    jobs = []
    for host, vms in hypervisors().items():
        os.makedirs(os.path.join(work, host), exist_ok=True)
        jobs.extend((host, spec) for spec in vms)
    # real guests first: they take 10-25 s to boot, the paused VMs need nothing
    jobs.sort(key=lambda job: not job[1].get('guest', False))
    cache = os.path.join(os.path.dirname(os.path.dirname(vm.__file__)), 'output', 'guest')
    if any(spec.get('guest') for _host, spec in jobs):
        vm.build_guest.build(cache)  # once, before the threads share the cached image

    def one(job):
        host, spec = job
        meta = vm.start(spec['name'], os.path.join(work, host), mem=spec.get('mem'), guest_os=spec.get('guest', False),
                        cache=cache, balloon='id' if spec.get('balloon', True) else None)
        return '%s/%s' % (host, spec['name']), {'pid': meta['pid'], 'mem': meta['mem'], 'guest_os': meta['guest_os']}

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        return dict(pool.map(one, jobs))


def wait(vm, work, timeout):
    jobs = [(host, [spec['name'] for spec in vms if spec.get('guest')]) for host, vms in hypervisors().items()]
    jobs = [job for job in jobs if job[1]]

    def one(job):
        host, names = job
        return host, vm.wait_ready(os.path.join(work, host), names, timeout)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        return dict(pool.map(one, jobs))


def stop(vm, work, only=None):
    if only:
        host, name = only
        return {host: vm.stop(os.path.join(work, host), [name])}
    result = {}
    for entry in sorted(os.listdir(work)) if os.path.isdir(work) else []:
        directory = os.path.join(work, entry)
        if os.path.isdir(directory):
            result[entry] = vm.stop(directory)
    return result


def interval(vm, directory, names):
    path = vm.BALLOON_PATH
    return dict((name, vm.qmp(directory, name, 'qom-get', {'path': path, 'property': PROPERTY})) for name in names)


def swapper(vm, work, host, name, timeout):
    directory = os.path.join(work, host)
    os.makedirs(directory, exist_ok=True)
    cache = os.path.join(os.path.dirname(os.path.dirname(vm.__file__)), 'output', 'guest')
    meta = vm.start(name, directory, mem=128, swap=256, pressure=200, cache=cache)
    return {'pid': meta['pid'], 'ready': vm.wait_ready(directory, [name], timeout)}


def main(argv):
    if len(argv) < 2 or argv[0] not in ('start', 'wait', 'stop', 'interval', 'swapper'):
        sys.stderr.write(__doc__)
        return 2
    vm = load_vm_helper()
    action, target = argv[0], argv[1]
    try:
        if action == 'start':
            result = start(vm, target)
        elif action == 'wait':
            result = wait(vm, target, float(argv[2]) if len(argv) > 2 else vm.DEFAULT_WAIT)
        elif action == 'swapper':
            result = swapper(vm, target, argv[2], argv[3], float(argv[4]))
        elif action == 'stop':
            result = stop(vm, target, argv[2:4] if len(argv) >= 4 else None)
        else:
            result = interval(vm, target, argv[2:])
    except (vm.VMError, vm.QMPError, vm.build_guest.BuildError) as exc:
        sys.stderr.write('fleet.py %s: %s\n' % (action, exc))
        return 1
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
