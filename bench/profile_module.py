# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the time of one balloon_stats_info run goes: py-spy over the module and over the floor.

    python profile_module.py --out DIR --module-python PY --payload AnsiballZ_balloon_stats_info.py
                             --floor bench/floor.py --targets TARGETS.json [--rate 250]

Runs in the bench venv (py-spy). The payload is a module file kept by ANSIBLE_KEEP_REMOTE_FILES=1
(bench/run.py captures it): running it is exactly what Ansible runs on the managed host. Both
processes are sampled with --idle (waiting for the monitors counts) and --nonblocking (the
target is not paused), and every sample is put in one bucket by the rules of classify().
Writes DIR/profile.json (buckets, seconds, shares, a text table) and the folded stacks
DIR/module.folded, DIR/floor.folded (flame-graph input).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys

OURS = ('_qmp_executor.py', '_qmp_discovery.py', '_operations.py', '_batch.py', '_targets.py', '_options.py', '_qmp.py', '_stats.py',
        '_common.py', '_errors.py', 'balloon_stats_info.py', 'floor.py')


def classify(stack):
    """One bucket name for one folded stack (outermost frame first)."""
    if not stack.strip():
        return 'interpreter start-up/finalisation (no Python frame)'
    frames = stack.split(';')
    leaf = frames[-1]
    if 'run_batch (' in stack or 'read_all (' in stack or 'Runner.run (asyncio' in stack:
        if 'Message.__str__' in stack or '_cb_inbound' in stack or '_cb_outbound' in stack:
            return 'event loop: qemu.qmp str(message) for its debug log (logging off)'
        if leaf.startswith(('select (selectors.py', 'poll (', 'epoll')) or '.select (' in leaf or 'select (' in leaf:
            return 'event loop: waiting for the monitors (idle)'
        if '_serialize' in stack or '_deserialize' in stack or 'json/' in leaf or 'json' in leaf.split('(')[-1]:
            return 'event loop: JSON of QMP messages'
        if any(name in leaf for name in OURS):
            return 'event loop: our engine code'
        if 'qmp/' in leaf or 'qmp_client' in leaf or 'protocol.py' in leaf or 'message.py' in leaf:
            return 'event loop: qemu.qmp protocol code'
        if 'logging' in leaf:
            return 'event loop: logging calls'
        return 'event loop: asyncio machinery (tasks, futures, sockets)'
    if 'exit_json' in stack or 'fail_json' in stack:
        if 'remove_values' in stack or '_remove_values' in stack:
            return 'exit_json: no_log scrub of the result (remove_values)'
        if 'json' in stack:
            return 'exit_json: JSON encoding of the result'
        return 'exit_json: other'
    # Our engine is imported with the first target (_targets, issue 16): that is an import, not argument handling.
    if 'BalloonModule.__init__' in stack and '_find_and_load' not in stack:
        if '_build_targets' in stack or 'build (' in stack:
            return 'our input checks (_build_targets)'
        return 'AnsibleModule: argument spec validation'
    if '_compile_source' in stack or 'source_to_code' in stack:
        return 'import: compile .py source (the payload zip has no .pyc; a script is always compiled)'
    modules = [frame for frame in frames if frame.startswith('<module> (')]
    if len(modules) > 1 or (modules and '_ansiballz_main' not in stack and 'main (' not in stack):
        names = ' '.join(modules)
        if '_loader.py' in names or 'basic.py' in names:
            return 'import: ansible.module_utils.basic and its stdlib (Ansible)'
        if 'qmp/' in names:
            return 'import: qemu.qmp'
        if 'asyncio/' in names or 'ssl.py' in names:
            return 'import: asyncio, ssl'
        if any(name in names for name in OURS if name != 'floor.py'):
            return 'import: our module_utils and their stdlib'
        return 'import: other stdlib (argparse, json, ...)'
    if '_ansiballz_main' in stack:
        return 'AnsiballZ wrapper (unpack payload, zip)'
    if '<module> (' in leaf:
        return 'import: other'
    # py-spy --nonblocking sometimes reads a stack only part of the way to its root (deep recursion):
    if 'json/' in stack:
        return 'event loop: JSON, stack cut short (mostly str(message) for the debug log)'
    if 'qmp/' in stack or 'asyncio/' in stack or 'selectors.py' in stack:
        return 'event loop: asyncio and qemu.qmp, stack cut short'
    return 'other'


def record(py_spy, rate, output, command, cwd):
    result = subprocess.run([py_spy, 'record', '--nonblocking', '--idle', '-r', str(rate), '-f', 'raw', '-o', output, '--']
                            + command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True,
                            check=False)
    if not os.path.exists(output):
        raise RuntimeError('py-spy failed: %s' % result.stderr[-1000:])


def buckets(path, rate):
    counter = collections.Counter()
    with open(path, errors='replace') as handle:
        for line in handle:
            line = line.rstrip('\n')
            if not line:
                continue
            stack, _space, count = line.rpartition(' ')
            try:
                counter[classify(stack)] += int(count)
            except ValueError:
                continue
    total = sum(counter.values()) or 1
    return {'samples': total, 'seconds': total / float(rate),
            'buckets': [{'bucket': name, 'seconds': count / float(rate), 'share': count / float(total)}
                        for name, count in counter.most_common()]}


def text_of(profile):
    lines = ['Profile (py-spy --idle, %d Hz) of one balloon_stats_info process vs the floor, same VMs:' % profile['rate']]
    for key in ('module', 'floor'):
        part = profile[key]
        lines.append('  %s: %.2f s sampled' % (key, part['seconds']))
        for bucket in part['buckets']:
            if bucket['share'] >= 0.005:
                lines.append('    %6.3f s %5.1f%%  %s' % (bucket['seconds'], 100 * bucket['share'], bucket['bucket']))
    return '\n'.join(lines)


def rebucket(results_path, rate):
    """Re-classify the folded stacks kept beside results.json (after a change of classify())."""
    directory = os.path.dirname(os.path.abspath(results_path))
    with open(results_path) as handle:
        results = json.load(handle)
    profile = results['profile']
    old_text = profile.get('text', '')
    for key in ('module', 'floor'):
        folded = os.path.join(directory, 'profile-' + os.path.basename(profile[key + '_folded']))
        profile[key + '_folded'] = os.path.basename(folded)
        profile[key] = buckets(folded, profile.get('rate', rate))
    profile['text'] = text_of(profile)
    results['table'] = results['table'].replace(old_text, profile['text'])
    with open(results_path, 'w') as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
        handle.write('\n')
    with open(os.path.join(directory, 'table.txt'), 'w') as handle:
        handle.write(results['table'] + '\n')
    print(profile['text'])
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--out')
    parser.add_argument('--module-python')
    parser.add_argument('--payload')
    parser.add_argument('--floor')
    parser.add_argument('--targets')
    parser.add_argument('--rate', type=int, default=250)
    parser.add_argument('--rebucket', metavar='RESULTS_JSON', help='only re-classify the folded stacks saved next to a results.json')
    args = parser.parse_args(argv)
    if args.rebucket:
        return rebucket(args.rebucket, args.rate)
    py_spy = os.path.join(os.path.dirname(sys.executable), 'py-spy')
    if not os.path.exists(py_spy):
        py_spy = shutil.which('py-spy')
    module_raw = os.path.join(args.out, 'module.folded')
    floor_raw = os.path.join(args.out, 'floor.folded')
    record(py_spy, args.rate, module_raw, [args.module_python, args.payload], args.out)
    record(py_spy, args.rate, floor_raw, [args.module_python, args.floor, args.targets], args.out)
    profile = {'rate': args.rate, 'module': buckets(module_raw, args.rate), 'floor': buckets(floor_raw, args.rate),
               'module_folded': module_raw, 'floor_folded': floor_raw}
    profile['text'] = text_of(profile)
    with open(os.path.join(args.out, 'profile.json'), 'w') as handle:
        json.dump(profile, handle, indent=1)
    print(profile['text'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
