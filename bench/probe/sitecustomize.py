# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark probe for module processes; bench/run.py puts this directory on PYTHONPATH.

Does nothing unless QMP_BENCH_MODLOG names a file and this interpreter runs an Ansible module
(an AnsiballZ_*.py wrapper). Then, without touching the collection's code on disk, it records
for this process, as one JSON line appended to QMP_BENCH_MODLOG at exit:

- t_proc: when the process started (from /proc/self/stat, 10 ms resolution), t_site: when this
  file ran (interpreter up), t_loop_start/t_loop_end: from the start of the first asyncio.run()
  (the QMP engine's event loop) or _batch.run_threads() (the libvirt transport, which runs no event
  loop: its first call is the connect + batch stats call, the second the fan-out) to the end of the
  last, t_exit: the module's first exit_json/fail_json call, t_end: the atexit hook;
- maxrss_kb (peak RSS of this process, same as VmHWM), utime/stime;
- with QMP_BENCH_HOLD=1, the connection hold time of every VM: from the start of
  QMPSession.open() (socket connect) to the end of QMPSession.close(), and the commands sent.

The hooks wrap module attributes after their import (asyncio.run, _batch.run_threads,
AnsibleModule.exit_json, QMPSession.open/close); their cost is two clock reads per call.
"""

import os
import sys

_LOG = os.environ.get('QMP_BENCH_MODLOG')


def _install():
    import atexit
    import json
    import resource
    import time

    record = {'pid': os.getpid(), 'module': os.path.basename(sys.argv[0]).replace('AnsiballZ_', '').replace('.py', ''),
              't_site': time.time()}
    try:
        with open('/proc/self/stat') as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
        ticks = int(fields[19])
        record['t_proc'] = time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / float(os.sysconf('SC_CLK_TCK')))
    except (OSError, ValueError, IndexError, AttributeError):
        record['t_proc'] = record['t_site']
    holds = []
    commands = [0]

    def timed_loop(original):
        def run(*args, **kwargs):
            record.setdefault('t_loop_start', time.time())
            try:
                return original(*args, **kwargs)
            finally:
                record['t_loop_end'] = time.time()
        return run

    def hook_asyncio(module):
        module.run = timed_loop(module.run)

    def hook_batch(module):
        # _libvirt_executor imports run_threads from _batch after this hook ran; call_in_thread looks it up in _batch.
        module.run_threads = timed_loop(module.run_threads)

    def hook_basic(module):
        cls = module.AnsibleModule
        for name in ('exit_json', 'fail_json'):
            original = getattr(cls, name)

            def wrapper(self, *args, __original=original, **kwargs):
                record.setdefault('t_exit', time.time())
                return __original(self, *args, **kwargs)
            setattr(cls, name, wrapper)

    def hook_qmp(module):
        cls = module.QMPSession
        open_, close_ = cls.open, cls.close

        async def open_timed(self):
            self._bench_t0 = time.perf_counter()
            return await open_(self)

        async def close_timed(self):
            try:
                return await close_(self)
            finally:
                start = getattr(self, '_bench_t0', None)
                if start is not None:
                    holds.append(round((time.perf_counter() - start) * 1000.0, 3))
                    commands[0] += self.commands_sent
                    self._bench_t0 = None
        cls.open, cls.close = open_timed, close_timed

    hooks = {'asyncio': hook_asyncio, 'ansible.module_utils.basic': hook_basic,
             'ansible_collections.qmp.balloon.plugins.module_utils._batch': hook_batch}
    if os.environ.get('QMP_BENCH_HOLD') == '1':
        hooks['ansible_collections.qmp.balloon.plugins.module_utils._qmp'] = hook_qmp

    class _Loader(object):
        def __init__(self, loader, hook):
            self._loader = loader
            self._hook = hook

        def create_module(self, spec):
            return self._loader.create_module(spec)

        def exec_module(self, module):
            self._loader.exec_module(module)
            try:
                self._hook(module)
            except Exception:  # pylint: disable=broad-except  # a probe must never break the module
                pass

        def __getattr__(self, name):
            return getattr(self._loader, name)

    class _PostImportFinder(object):
        def find_spec(self, name, path=None, target=None):
            hook = hooks.get(name)
            if hook is None:
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, 'find_spec'):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            if spec.loader is None or not hasattr(spec.loader, 'exec_module'):
                return spec
            del hooks[name]
            spec.loader = _Loader(spec.loader, hook)
            return spec

    sys.meta_path.insert(0, _PostImportFinder())

    def done():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        record.update(t_end=time.time(), maxrss_kb=usage.ru_maxrss, utime=usage.ru_utime, stime=usage.ru_stime)
        if holds:
            record['holds_ms'] = holds
            record['commands'] = commands[0]
        line = (json.dumps(record) + '\n').encode()
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    atexit.register(done)


if _LOG and sys.argv and os.path.basename(sys.argv[0] or '').startswith('AnsiballZ_'):
    _install()
