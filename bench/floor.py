# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark floor (c): the least a script needs to read the same VMs with qemu.qmp, no Ansible.

    python floor.py TARGETS.json [--concurrency 32] [--timeout 5] [--path /machine/peripheral/balloon0]
                    [--commands full|stats] [--client qemu.qmp|raw]

TARGETS.json is a list of {"socket": PATH}. For every VM, concurrently (at most --concurrency at
once, like the modules' default of 32): connect, negotiate, then with --commands full (default)
the three reads balloon_stats_info needs for its answer -- qom-get guest-stats, qom-get
guest-stats-polling-interval, query-status -- on a known balloon path (no discovery, no
query-name, no input validation, no result shaping); with --commands stats only qom-get
guest-stats. Then disconnect. --client raw does the same with plain asyncio streams and json
(greeting, qmp_capabilities, the reads pipelined): what the library itself costs. Prints one JSON line: VMs read, failures, per-VM connection hold
times (connect start to disconnect end, ms) and the time inside the event loop. bench/run.py
times the whole process (interpreter start-up and the qemu.qmp import included) from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from qemu.qmp import QMPClient

INTERVAL = 'guest-stats-polling-interval'


async def read_one(path, balloon, commands, timeout):
    client = QMPClient('floor')
    start = time.perf_counter()
    try:
        await asyncio.wait_for(client.connect(path), timeout)
        if commands == 'stats':
            await asyncio.wait_for(client.execute('qom-get', {'path': balloon, 'property': 'guest-stats'}), timeout)
        else:
            await asyncio.wait_for(client.execute('qom-get', {'path': balloon, 'property': 'guest-stats'}), timeout)
            await asyncio.wait_for(client.execute('qom-get', {'path': balloon, 'property': INTERVAL}), timeout)
            await asyncio.wait_for(client.execute('query-status'), timeout)
        ok = True
    except Exception:  # pylint: disable=broad-except
        ok = False
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 1.0)
        except Exception:  # pylint: disable=broad-except
            pass
    return ok, (time.perf_counter() - start) * 1000.0


async def read_one_raw(path, balloon, commands, timeout):
    """The same reads without qemu.qmp: QMP is one JSON object a line from QEMU."""
    start = time.perf_counter()
    writer = None
    try:
        async def session():
            nonlocal writer
            reader, writer = await asyncio.open_unix_connection(path)
            await reader.readline()
            writer.write(b'{"execute": "qmp_capabilities"}')
            answer = json.loads(await reader.readline())
            if 'return' not in answer:
                return False
            wanted = [{'execute': 'qom-get', 'arguments': {'path': balloon, 'property': 'guest-stats'}, 'id': 1}]
            if commands != 'stats':
                wanted += [{'execute': 'qom-get', 'arguments': {'path': balloon, 'property': INTERVAL}, 'id': 2},
                           {'execute': 'query-status', 'id': 3}]
            writer.write(''.join(json.dumps(command) for command in wanted).encode())
            replies = 0
            while replies < len(wanted):
                message = json.loads(await reader.readline())
                if 'event' in message:
                    continue
                if 'return' not in message:
                    return False
                replies += 1
            return True
        ok = await asyncio.wait_for(session(), timeout)
    except Exception:  # pylint: disable=broad-except
        ok = False
    finally:
        if writer is not None:
            writer.close()
    return ok, (time.perf_counter() - start) * 1000.0


async def read_all(paths, balloon, commands, concurrency, timeout, client='qemu.qmp'):
    gate = asyncio.Semaphore(concurrency)
    reader = read_one_raw if client == 'raw' else read_one

    async def one(path):
        async with gate:
            return await reader(path, balloon, commands, timeout)
    return await asyncio.gather(*(one(path) for path in paths))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('targets')
    parser.add_argument('--concurrency', type=int, default=32)
    parser.add_argument('--timeout', type=float, default=5.0)
    parser.add_argument('--path', default='/machine/peripheral/balloon0')
    parser.add_argument('--commands', choices=('full', 'stats'), default='full')
    parser.add_argument('--client', choices=('qemu.qmp', 'raw'), default='qemu.qmp')
    args = parser.parse_args(argv)
    with open(args.targets, encoding='utf-8') as handle:
        paths = [entry['socket'] for entry in json.load(handle)]
    started = time.time()
    cpu = time.process_time()
    results = asyncio.run(read_all(paths, args.path, args.commands, args.concurrency, args.timeout, args.client))
    cpu = time.process_time() - cpu
    ended = time.time()
    holds = [round(hold, 3) for ok, hold in results]
    print(json.dumps({'vms': len(results), 'failed': sum(1 for ok, hold in results if not ok), 'loop_s': ended - started, 'loop_cpu_s': cpu,
                      'holds_ms': holds, 'commands_per_vm': 1 if args.commands == 'stats' else 3}))
    return 0 if all(ok for ok, hold in results) else 1


if __name__ == '__main__':
    sys.exit(main())
