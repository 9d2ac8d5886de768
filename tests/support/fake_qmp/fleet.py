# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running endpoints: in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
import shutil
import tempfile
import threading
import uuid as uuid_module
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .common import RECORD_ENV
from .endpoint import Endpoint
from .faults import FaultOptions, FaultSpec
from .model import VMModel
from .record import Recorder


def raise_nofile_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit if it is below ``needed``; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def endpoint_names(count: int, prefix: str) -> List[str]:
    width = max(3, len(str(count - 1)))
    return ["%s%0*d" % (prefix, width, index) for index in range(count)]


VMSpec = Union[None, VMModel, Callable[[int, str], VMModel]]


def _make_vm(spec: VMSpec, index: int, name: str) -> VMModel:
    if spec is None:
        return VMModel(name=name, uuid=str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, "fake-qmp:" + name)))
    if isinstance(spec, VMModel):
        if index == 0:
            return spec
        # A copy per endpoint, with its own lock and timer; name and uuid stay as given.
        kwargs = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.init and f.name not in ("lock", "stats", "qom_values")}
        return VMModel(stats=dict(spec.stats), **kwargs)
    return spec(index, name)


class FakeFleet:
    """N fake QMP endpoints served from a background thread. Use as a context manager.

    ``fault`` is a fault spec for every endpoint, or a mapping ``{name: spec}`` for some;
    ``vm`` is None (a default VM per endpoint, named after it), a :class:`VMModel` (the first
    endpoint uses it, the others get copies) or a callable ``(index, name) -> VMModel``.
    Unix sockets are ``<directory>/<name>.qmp``; with ``tcp=True`` each endpoint listens on
    ``host`` (loopback only) at ``port_base + index``, or a free port if ``port_base`` is 0.
    """

    def __init__(self, count: int, directory: Optional[str] = None, *, tcp: bool = False, host: str = "127.0.0.1", port_base: int = 0,
                 prefix: str = "vm", names: Optional[Sequence[str]] = None, vm: VMSpec = None,
                 fault: Union[FaultSpec, Mapping[str, FaultSpec]] = None, options: Optional[FaultOptions] = None,
                 record_path: Optional[str] = None, recorder: Optional[Recorder] = None, backlog: int = 1,
                 start_timeout: float = 60.0) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        if not tcp and directory is None:
            directory = tempfile.mkdtemp(prefix="fakeqmp-")
            self._own_directory = True
        else:
            self._own_directory = False
        self.directory = os.fspath(directory) if directory is not None else None
        if record_path is None:
            record_path = os.environ.get(RECORD_ENV) or None
        self.record = recorder if recorder is not None else Recorder(record_path)
        self._own_recorder = recorder is None
        self.start_timeout = start_timeout
        names = list(names) if names is not None else endpoint_names(count, prefix)
        if len(names) != count:
            raise ValueError("need exactly %d names" % count)
        self.endpoints: List[Endpoint] = []
        for index, name in enumerate(names):
            endpoint_fault = fault.get(name) if isinstance(fault, Mapping) else fault
            endpoint_vm = _make_vm(vm, index, name)
            if tcp:
                port = port_base + index if port_base else 0
                endpoint = Endpoint(name, endpoint_vm, self.record, host=host, port=port, fault=endpoint_fault,
                                    options=dataclasses.replace(options) if options else None, backlog=backlog)
            else:
                assert self.directory is not None
                endpoint = Endpoint(name, endpoint_vm, self.record, path=os.path.join(self.directory, name + ".qmp"), fault=endpoint_fault,
                                    options=dataclasses.replace(options) if options else None, backlog=backlog)
            self.endpoints.append(endpoint)
        self._by_name = {endpoint.name: endpoint for endpoint in self.endpoints}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.endpoints)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self.endpoints)

    def __getitem__(self, key: Union[int, str]) -> Endpoint:
        if isinstance(key, str):
            return self._by_name[key]
        return self.endpoints[key]

    @property
    def names(self) -> List[str]:
        return [endpoint.name for endpoint in self.endpoints]

    @property
    def paths(self) -> List[Optional[str]]:
        return [endpoint.path for endpoint in self.endpoints]

    @property
    def ports(self) -> List[int]:
        return [endpoint.port for endpoint in self.endpoints]

    @property
    def addresses(self) -> List[Union[str, Tuple[str, int]]]:
        return [endpoint.address for endpoint in self.endpoints]

    @property
    def vms(self) -> List[VMModel]:
        return [endpoint.vm for endpoint in self.endpoints]

    def describe(self) -> List[Dict[str, Any]]:
        return [endpoint.describe() for endpoint in self.endpoints]

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FakeFleet":
        raise_nofile_limit(3 * len(self.endpoints) + 256)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-qmp", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            asyncio.run_coroutine_threadsafe(self._start_all(), self._loop).result(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _start_all(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.start()

    async def _close_all(self) -> None:
        await asyncio.gather(*(endpoint.close() for endpoint in self.endpoints), return_exceptions=True)

    def call(self, function: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``function()`` on the server's loop thread (to change state atomically)."""
        assert self._loop is not None

        async def runner() -> Any:
            return function()
        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(30)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(30)
        for endpoint in self.endpoints:
            endpoint.closed = True
            endpoint._close_sockets()  # pylint: disable=protected-access
        self._thread = None
        self._loop = None
        if self._own_recorder:
            self.record.close()
        if self._own_directory and self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "FakeFleet":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class FakeQMPServer(FakeFleet):
    """One fake QMP endpoint in a background thread; a :class:`FakeFleet` of one.

    ``path`` defaults to ``<new temp dir>/qmp.sock`` (removed on exit); ``tcp=True`` listens on
    ``host:port`` instead (port 0 picks a free one: read it from ``.port`` once started).
    """

    def __init__(self, path: Optional[str] = None, *, tcp: bool = False, host: str = "127.0.0.1", port: int = 0, name: str = "vm000",
                 vm: Optional[VMModel] = None, fault: FaultSpec = None, options: Optional[FaultOptions] = None,
                 record_path: Optional[str] = None, recorder: Optional[Recorder] = None, backlog: int = 1, **option_fields: Any) -> None:
        if option_fields:
            options = dataclasses.replace(options or FaultOptions(), **option_fields)
        directory = None
        own_directory = False
        if not tcp:
            if path is None:
                directory = tempfile.mkdtemp(prefix="fakeqmp-")
                own_directory = True
                path = os.path.join(directory, "qmp.sock")
            else:
                directory = os.path.dirname(os.path.abspath(path))
        super().__init__(1, directory, tcp=tcp, host=host, port_base=port, names=[name], vm=vm,
                         fault=fault, options=options, record_path=record_path, recorder=recorder, backlog=backlog)
        if not tcp:
            self.endpoints[0].path = os.path.abspath(path) if path else None
        self._own_directory = own_directory

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoints[0]

    @property
    def vm(self) -> VMModel:
        return self.endpoints[0].vm

    @property
    def path(self) -> Optional[str]:
        return self.endpoints[0].path

    @property
    def port(self) -> int:
        return self.endpoints[0].port

    @property
    def address(self) -> Union[str, Tuple[str, int]]:
        return self.endpoints[0].address
