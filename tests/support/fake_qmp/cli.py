# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Command line: ``python3 tests/support/run_fake_qmp.py --dir DIR --count N ...``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid as uuid_module
from typing import Callable, Dict, List, Optional, Sequence

from .common import BANNERS, FAULTS, MIB, QMP_READ_LIMIT, RECORD_ENV, U64_UNSET
from .endpoint import Endpoint, check_loopback
from .faults import FaultOptions, parse_faults
from .fleet import endpoint_names, raise_nofile_limit
from .model import BALLOON_PLACEMENTS, STATS_MODES, VMModel
from .record import Recorder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve fake QEMU 7.2 QMP monitors (one VM each) until SIGTERM or SIGINT.")
    parser.add_argument("--dir", help="directory for the unix sockets <name>.qmp (default: a new temporary directory)")
    parser.add_argument("--count", type=int, default=1, help="number of endpoints (default 1)")
    parser.add_argument("--prefix", default="vm", help="endpoint name prefix (default vm: vm000, vm001, ...)")
    parser.add_argument("--tcp", action="store_true", help="listen on TCP (loopback) instead of unix sockets")
    parser.add_argument("--host", default="127.0.0.1", help="TCP host, loopback only (default 127.0.0.1)")
    parser.add_argument("--port-base", type=int, default=0, help="TCP port of the first endpoint, the next ones follow (0: free ports)")
    parser.add_argument("--backlog", type=int, default=1, help="listen backlog (QEMU uses 1)")
    parser.add_argument("--fault", action="append", default=[], help="fault for every endpoint (repeatable or comma-separated): "
                        + ", ".join(sorted(FAULTS)))
    parser.add_argument("--fault-at", action="append", default=[], metavar="NAME=FAULT[,FAULT]", help="fault for one endpoint (repeatable)")
    parser.add_argument("--fault-on", help="limit command faults to this command ('*' includes qmp_capabilities)")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds for the delay fault (default 5)")
    parser.add_argument("--banner", default="ssh", help="banner fault text: ssh, http or literal text")
    parser.add_argument("--huge-size", type=int, default=QMP_READ_LIMIT + 64 * 1024, help="bytes of padding for huge_reply")
    parser.add_argument("--events-per-reply", type=int, default=1, help="events sent before each reply with the events fault")
    parser.add_argument("--stats", choices=STATS_MODES, default="never", help="stats mode (default never)")
    parser.add_argument("--interval", type=int, default=0, help="initial guest-stats-polling-interval")
    parser.add_argument("--stalled", action="store_true", help="live mode: the guest stopped answering")
    parser.add_argument("--no-boot-report", action="store_true", help="live mode: no report at driver load")
    parser.add_argument("--extra-stats", action="store_true", help="add the QEMU 9.2 names (stat-oom-kills, ...)")
    parser.add_argument("--unset", choices=("u64", "minus-one"), default="u64", help="how unset stats are sent (minus-one: very old QEMU)")
    parser.add_argument("--no-stats-error", action="store_true", help="old QEMU: GenericError while last-update is 0")
    parser.add_argument("--status", default="running", help="run state: running, paused, prelaunch, ...")
    parser.add_argument("--balloon", choices=BALLOON_PLACEMENTS, default="peripheral", help="balloon placement in the QOM tree")
    parser.add_argument("--balloon-id", default="balloon0")
    parser.add_argument("--balloon-type", default="virtio-balloon-pci")
    parser.add_argument("--memory", type=int, default=1024 * MIB, help="guest RAM in bytes")
    parser.add_argument("--tree-depth", type=int, default=64, help="levels of the deep_tree fault")
    parser.add_argument("--record", help="append received commands as JSONL here (default: $%s)" % RECORD_ENV)
    parser.add_argument("--ready-file", help="also write the ready JSON here (atomically)")
    parser.add_argument("--duration", type=float, default=0, help="stop by itself after this many seconds (0: never)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.count < 1:
        print("--count must be at least 1", file=sys.stderr)
        return 2
    try:
        default_fault = parse_faults(",".join(args.fault))
        per_endpoint: Dict[str, frozenset] = {}
        for item in args.fault_at:
            name, _sep, spec = item.partition("=")
            per_endpoint[name] = parse_faults(spec) | default_fault
        if not args.tcp and args.host != "127.0.0.1":
            raise ValueError("--host only applies with --tcp")
        check_loopback(args.host)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    options = FaultOptions(delay=args.delay, fault_on=args.fault_on, banner=BANNERS.get(args.banner, args.banner),
                           huge_size=args.huge_size, events_per_reply=args.events_per_reply)

    def make_vm(index: int, name: str) -> VMModel:
        return VMModel(name=name, uuid=str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, "fake-qmp:" + name)), status=args.status,
                       memory=args.memory, balloon=args.balloon, balloon_id=args.balloon_id, balloon_type=args.balloon_type,
                       stats_mode=args.stats, interval=args.interval, stalled=args.stalled, boot_report=not args.no_boot_report,
                       extra_stats=args.extra_stats, unset_value=-1 if args.unset == "minus-one" else U64_UNSET,
                       no_stats_error=args.no_stats_error, tree_depth=args.tree_depth)

    return asyncio.run(_serve_cli(args, options, default_fault, per_endpoint, make_vm))


async def _serve_cli(args: argparse.Namespace, options: FaultOptions, default_fault: frozenset, per_endpoint: Dict[str, frozenset],
                     make_vm: Callable[[int, str], VMModel]) -> int:
    loop = asyncio.get_running_loop()
    own_directory = False
    directory = args.dir
    if not args.tcp:
        if directory is None:
            directory = tempfile.mkdtemp(prefix="fakeqmp-")
            own_directory = True
        os.makedirs(directory, exist_ok=True)
    raise_nofile_limit(2 * args.count + 256)
    recorder = Recorder(args.record or os.environ.get(RECORD_ENV) or None)
    endpoints: List[Endpoint] = []
    for index, name in enumerate(endpoint_names(args.count, args.prefix)):
        fault = per_endpoint.get(name, default_fault)
        opts = dataclasses.replace(options)
        if args.tcp:
            endpoints.append(Endpoint(name, make_vm(index, name), recorder, host=args.host, port=args.port_base + index if args.port_base else 0,
                                      fault=fault, options=opts, backlog=args.backlog))
        else:
            endpoints.append(Endpoint(name, make_vm(index, name), recorder, path=os.path.join(directory, name + ".qmp"), fault=fault,
                                      options=opts, backlog=args.backlog))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    status = 0
    try:
        for endpoint in endpoints:
            await endpoint.start()
        ready = {"ready": True, "pid": os.getpid(), "dir": directory, "tcp": bool(args.tcp), "record": recorder.path,
                 "endpoints": [endpoint.describe() for endpoint in endpoints]}
        line = json.dumps(ready)
        if args.ready_file:
            temporary = args.ready_file + ".tmp"
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(line + "\n")
            os.replace(temporary, args.ready_file)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if args.duration > 0:
            try:
                await asyncio.wait_for(stop.wait(), args.duration)
            except asyncio.TimeoutError:
                pass
        else:
            await stop.wait()
    except OSError as exc:
        print("fake_qmp: %s" % exc, file=sys.stderr)
        status = 1
    finally:
        await asyncio.gather(*(endpoint.close() for endpoint in endpoints), return_exceptions=True)
        for endpoint in endpoints:
            endpoint._close_sockets()  # pylint: disable=protected-access
        recorder.close()
        if args.ready_file:
            try:
                os.unlink(args.ready_file)
            except FileNotFoundError:
                pass
        if own_directory:
            shutil.rmtree(directory, ignore_errors=True)
    return status
