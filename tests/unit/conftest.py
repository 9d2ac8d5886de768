# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures shared by the unit tests: fake QEMU fleets, a shared clock, a short temporary directory."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from ansible_collections.qmp.balloon.tests.unit.plugins.module_utils import qmp_fakes


@pytest.fixture
def fleets():
    """Start fakes with ``fleets.fleet(...)``; on exit they stop and what they recorded must be allow-listed."""
    with qmp_fakes.Fleets() as factory:
        yield factory


@pytest.fixture
def clock(monkeypatch):
    """The fake's VMs and the engine share this clock: ages are exact, nothing sleeps."""
    shared = qmp_fakes.Clock()
    qmp_fakes.freeze_engine_time(monkeypatch, shared)
    return shared


@pytest.fixture
def short_dir():
    """A fresh directory with a short path (unix socket paths are limited to 108 bytes)."""
    path = tempfile.mkdtemp(prefix='qb-')
    yield path
    shutil.rmtree(path, ignore_errors=True)
