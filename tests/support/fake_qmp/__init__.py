# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake QEMU 7.2 QMP monitor: a test double for the collection's QMP engine.

It speaks QMP the way QEMU 7.2 does (greeting, capabilities negotiation, stream
parsing of compact JSON without newlines, ``\\r\\n`` after every message, one client at a
time per socket, exact error classes and texts) and models one VM per endpoint: run
state, name, UUID, the balloon device in the QOM tree and its two statistics properties.
Every difference from real QEMU that a test could notice is either a documented fault or
a bug. Standard library only; Python 3.9+.

The package, one module per part (each imports only the ones before it):

- ``common``: stat names, faults, banners, QMP errors, ``default_stats``
- ``model``: :class:`VMModel`, the VM behind an endpoint
- ``qom``: the QOM tree of a ``-M q35 -nodefaults`` QEMU 7.2 and path resolution
- ``record``: :class:`Recorder` and :func:`read_record`
- ``faults``: :class:`FaultOptions` and the faults' parsing
- ``protocol``: input checks, argument schemas and the stream parser
- ``endpoint``: :class:`Endpoint`, one listening socket served one client at a time
- ``fleet``: :class:`FakeFleet` and :class:`FakeQMPServer`, endpoints in a background thread
- ``cli``: the command line

Three ways to use it:

* In-process, in a background thread with its own event loop (the unit tests import it as
  ``ansible_collections.qmp.balloon.tests.support.fake_qmp``)::

      with FakeQMPServer(vm=VMModel(stats_mode="live")) as server:
          client.connect(server.path)          # or server.address, (host, port) for tcp=True
          server.vm.status = "paused"          # change the model between calls
          assert server.record.commands() == ["qmp_capabilities", "qom-get"]

      with FakeFleet(10, tmp_path, fault={"vm003": "delay"}) as fleet:
          fleet.paths, fleet.addresses, fleet.vms, fleet["vm003"].vm

* On the command line, N endpoints named vm000, vm001, ... until SIGTERM/SIGINT::

      python3 tests/support/run_fake_qmp.py --dir DIR --count 1000 [--tcp] [--fault delay] [--stats live]

  (or ``python3 -m fake_qmp ...`` with tests/support on the path). It prints one JSON line
  ``{"ready": true, "endpoints": [...]}`` once every endpoint listens (and writes it to
  ``--ready-file``), and removes its sockets when stopped.

* Imported for its pieces: :class:`VMModel`, :class:`Recorder`, :class:`Endpoint`.

Recording: every message received is appended to :class:`Recorder` (in memory) and, when a
path is given (option ``record_path``/``--record`` or env ``QMP_BALLOON_FAKE_RECORD``), to a
JSONL file, so tests can assert that only allowed commands were ever sent.
"""

from __future__ import annotations

from .cli import main
from .common import (
    BANNERS,
    CLASSIC_STAT_NAMES,
    EXTRA_STAT_NAMES,
    FAULTS,
    QMP_READ_LIMIT,
    RECORD_ENV,
    U64_UNSET,
    QMPError,
    default_stats,
)
from .endpoint import Endpoint
from .faults import FaultOptions, parse_faults
from .fleet import FakeFleet, FakeQMPServer, raise_nofile_limit
from .model import VMModel
from .record import Recorder, read_record

__all__ = [
    "BANNERS", "CLASSIC_STAT_NAMES", "EXTRA_STAT_NAMES", "FAULTS", "QMP_READ_LIMIT", "RECORD_ENV", "U64_UNSET",
    "Endpoint", "FakeFleet", "FakeQMPServer", "FaultOptions", "QMPError", "Recorder", "VMModel",
    "default_stats", "main", "parse_faults", "raise_nofile_limit", "read_record",
]
