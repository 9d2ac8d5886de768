#!/usr/bin/env python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Measure real guests on this machine: boot time, RSS, churn, ballooning, freezing.

Prints one JSON object; tests/guest/README.md records what it printed. Takes a few minutes.
    python3 tests/guest/measure.py [--dir /tmp/qmpballoon-measure] [--repeat 2] [--only boot|behaviour]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_guest  # noqa: E402  pylint: disable=wrong-import-position
import vm  # noqa: E402  pylint: disable=wrong-import-position

MIB = 1024 * 1024


def stats(directory, name):
    return vm.qmp(directory, name, 'qom-get', {'path': vm.BALLOON_PATH, 'property': 'guest-stats'})


def set_interval(directory, name, seconds):
    vm.qmp(directory, name, 'qom-set', {'path': vm.BALLOON_PATH, 'property': 'guest-stats-polling-interval', 'value': seconds})


def serial_log(directory, name):
    with open(vm.Guest(name, directory).log, errors='replace') as handle:
        return handle.read()


def status(directory, name):
    return vm.qmp(directory, name, 'query-status')['status']


def measure_boot(directory, repeat):
    """Seconds from QEMU start to first stats, and RSS, for 1 and 3 parallel guests."""
    results = []
    for mem in (128, 256):
        for count in (1, 3):
            for _attempt in range(repeat):
                load = os.getloadavg()[0]
                names = ['boot%d' % index for index in range(count)]
                try:
                    for name in names:
                        vm.start(name, directory, mem=mem)
                    ready = vm.wait_ready(directory, names)
                finally:
                    vm.stop(directory, names)
                results.append({'mem': mem, 'guests': count, 'load_before': round(load, 2),
                                'seconds': sorted(entry['seconds'] for entry in ready.values()),
                                'rss_mib': sorted(entry['rss_mib'] for entry in ready.values())})
    return results


def sample(directory, name, count, pause):
    samples = []
    for _sample_index in range(count):
        reading = stats(directory, name)
        samples.append({'at': round(time.time(), 1), 'status': status(directory, name), 'last_update': reading['last-update'],
                        'free_mib': round(reading['stats']['stat-free-memory'] / MIB, 1),
                        'total_mib': round(reading['stats']['stat-total-memory'] / MIB, 1)})
        time.sleep(pause)
    return samples


def wait_for(predicate, timeout, pause=0.25):
    """Return seconds until predicate() is true, or None after timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return round(time.monotonic() - began, 2)
        time.sleep(pause)
    return None


def measure_behaviour(directory):
    report = {}
    vm.start('churn', directory, mem=128, churn=32)
    vm.start('plain', directory, mem=128)
    vm.start('frozen', directory, mem=128, freeze_after=20)
    vm.start('frozen0', directory, mem=128, freeze_after=20)
    names = ['churn', 'plain', 'frozen', 'frozen0']
    try:
        vm.wait_ready(directory, names)
        for name in ('churn', 'plain', 'frozen'):
            set_interval(directory, name, 1)

        # churn: free memory moves between reads.
        report['churn_32mib_interval_1'] = sample(directory, 'churn', 6, 1.0)

        # balloon: total memory drops by the ballooned amount.
        before = stats(directory, 'plain')['stats']['stat-total-memory']
        vm.qmp(directory, 'plain', 'balloon', {'value': 96 * MIB})
        dropped = wait_for(lambda: stats(directory, 'plain')['stats']['stat-total-memory'] < before, 30)
        after = stats(directory, 'plain')['stats']['stat-total-memory']
        report['balloon_128_to_96'] = {'total_before_mib': round(before / MIB, 1), 'total_after_mib': round(after / MIB, 1),
                                       'seconds_until_drop': dropped,
                                       'query_balloon_mib': vm.qmp(directory, 'plain', 'query-balloon')['actual'] / MIB}

        # pause: last-update stalls while 'paused', resumes after 'cont'.
        vm.qmp(directory, 'plain', 'stop')
        time.sleep(1)
        paused = sample(directory, 'plain', 4, 1.0)
        vm.qmp(directory, 'plain', 'cont')
        time.sleep(2.5)
        report['pause'] = {'while_paused': paused, 'after_cont': sample(directory, 'plain', 2, 1.0)}

        # freeze: suspend-to-idle at freeze_after; last-update stalls while QEMU says running.
        frozen_at = wait_for(lambda: time.time() - stats(directory, 'frozen')['last-update'] > 4, 90, 1.0)
        report['freeze'] = {'seconds_until_stall_seen': frozen_at, 'stalled': sample(directory, 'frozen', 3, 1.0)}
        set_interval(directory, 'frozen', 0)
        set_interval(directory, 'frozen', 1)
        time.sleep(4)
        report['freeze']['after_interval_0_then_1'] = sample(directory, 'frozen', 2, 1.0)
        vm.qmp(directory, 'frozen', 'stop')
        vm.qmp(directory, 'frozen', 'cont')
        time.sleep(3)
        report['freeze']['after_stop_cont'] = sample(directory, 'frozen', 1, 0)
        stalled_at = stats(directory, 'frozen')['last-update']
        vm.qmp(directory, 'frozen', 'system_powerdown')
        report['freeze']['seconds_until_update_after_system_powerdown'] = wait_for(
            lambda: stats(directory, 'frozen')['last-update'] > stalled_at, 30)
        report['freeze']['after_wake'] = sample(directory, 'frozen', 3, 1.0)
        report['freeze']['thaw_marker_in_log'] = build_guest.THAW_MARKER in serial_log(directory, 'frozen')

        # the same freeze with polling off: does waking send one set of stats by itself?
        wait_for(lambda: build_guest.FREEZE_MARKER in serial_log(directory, 'frozen0'), 60, 1.0)
        time.sleep(2)
        stalled_at = stats(directory, 'frozen0')['last-update']
        vm.qmp(directory, 'frozen0', 'system_powerdown')
        report['freeze_interval_0'] = {'seconds_until_update_after_system_powerdown': wait_for(
            lambda: stats(directory, 'frozen0')['last-update'] > stalled_at, 30)}
        time.sleep(4)
        report['freeze_interval_0']['later'] = sample(directory, 'frozen0', 2, 2.0)
    finally:
        vm.stop(directory, names)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', default='/tmp/qmpballoon-measure')
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--only', choices=('boot', 'behaviour'))
    args = parser.parse_args()
    report = {'cpus': os.cpu_count(), 'load_at_start': [round(value, 2) for value in os.getloadavg()]}
    if args.only in (None, 'boot'):
        report['boot'] = measure_boot(args.dir, args.repeat)
    if args.only in (None, 'behaviour'):
        report['behaviour'] = measure_behaviour(args.dir)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
