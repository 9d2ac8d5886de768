# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the collection's own engine on some VMs without Ansible; used by bench/run.py.

    python engine_direct.py --collections DIR TARGETS.json [--concurrency 32] [--work info|polling]

DIR contains ansible_collections/qmp/balloon (the checkout, or a scratch copy with a patch).
This is balloon_stats_info's (or balloon_stats_polling's) event loop exactly as the module runs
it -- _qmp_executor.run_batch() with InfoOperation or PollingOperation -- minus AnsiballZ, AnsibleModule and
the JSON exit. Each VM's connection hold time (QMPSession.open() start to close() end) is
recorded by wrapping those two methods in this process. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('targets')
    parser.add_argument('--collections', required=True)
    parser.add_argument('--concurrency', type=int, default=32)
    parser.add_argument('--timeout', type=float, default=5.0)
    parser.add_argument('--work', choices=('info', 'polling'), default='info')
    parser.add_argument('--interval', type=int, default=10)
    args = parser.parse_args(argv)
    started = time.time()
    sys.path.insert(0, args.collections)
    from ansible_collections.qmp.balloon.plugins.module_utils import _operations, _qmp, _qmp_executor
    imported = time.time()

    holds = []
    commands = [0]
    open_, close_ = _qmp.QMPSession.open, _qmp.QMPSession.close

    async def open_timed(self):
        self._bench_t0 = time.perf_counter()
        return await open_(self)

    async def close_timed(self):
        try:
            return await close_(self)
        finally:
            if getattr(self, '_bench_t0', None) is not None:
                holds.append(round((time.perf_counter() - self._bench_t0) * 1000.0, 3))
                commands[0] += self.commands_sent
                self._bench_t0 = None
    _qmp.QMPSession.open, _qmp.QMPSession.close = open_timed, close_timed

    with open(args.targets, encoding='utf-8') as handle:
        targets = [_qmp_executor.Target(_qmp.Endpoint(path=entry['socket'])) for entry in json.load(handle)]
    if args.work == 'info':
        operation = _operations.InfoOperation()
    else:
        operation = _operations.PollingOperation(args.interval, _operations.REARM_NEVER)
    loop_start = time.time()
    cpu_start = time.process_time()
    results = _qmp_executor.run_batch(targets, operation, concurrency=args.concurrency, timeout=args.timeout)
    loop_cpu = time.process_time() - cpu_start
    loop_end = time.time()
    failed = [result['msg'] for result in results if result.get('failed')]
    print(json.dumps({'vms': len(results), 'failed': len(failed), 'first_failure': failed[0] if failed else None,
                      'import_s': imported - started, 'loop_s': loop_end - loop_start, 'loop_cpu_s': loop_cpu, 'holds_ms': holds,
                      'commands_per_vm': (commands[0] / float(len(holds))) if holds else None}))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
