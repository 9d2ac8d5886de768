# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults: what can go wrong on purpose, in the model or in the conversation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Union

from .common import FAULTS, QMP_READ_LIMIT, SSH_BANNER
from .model import VMModel


FaultSpec = Union[None, str, Iterable[str]]


def parse_faults(spec: FaultSpec) -> frozenset:
    """Turn ``None``, ``"delay"``, ``"delay,events"`` or ``["delay", "events"]`` into a set of fault names."""
    if spec is None:
        return frozenset()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = frozenset(item.strip() for item in items if item and item.strip())
    unknown = names - FAULTS
    if unknown:
        raise ValueError("unknown fault(s) %s; known: %s" % (", ".join(sorted(unknown)), ", ".join(sorted(FAULTS))))
    return names


@dataclass
class FaultOptions:
    """Parameters of the conversation faults.

    ``fault_on`` limits the command-level faults (delay, close_mid_reply, huge_reply,
    invalid_json_reply, error_everything, wrong_id, events) to one command name; ``None`` means
    every command after negotiation, ``"*"`` every command including ``qmp_capabilities``.
    """

    delay: float = 5.0
    fault_on: Optional[str] = None
    banner: str = SSH_BANNER
    huge_size: int = QMP_READ_LIMIT + 64 * 1024
    events_per_reply: int = 1
    error_desc: str = "Injected failure (fake QMP error_everything)"


def apply_model_faults(vm: VMModel, faults: Iterable[str]) -> None:
    """Make the VM model show the model-level faults."""
    faults = set(faults)
    if "no_balloon" in faults:
        vm.balloon = "none"
    if "two_balloons" in faults:
        vm.balloon = "two"
    if "deep_tree" in faults:
        vm.deep_tree = True
    if "cyclic_links" in faults:
        vm.cyclic_links = True
