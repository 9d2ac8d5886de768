# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters whose implementation is imported when one of them is first called.

PRIVATE: not part of the collection's public API.

ansible-core imports every filter file of a collection in each task's worker that resolves one of
its filters, and compiles their sources on each import (docs/design.md, "What a role task costs in
its worker"): the filter files therefore only name their filters, and the code lives here in
plugin_utils.
"""

from __future__ import annotations

import importlib


def lazy_filters(module, names):
    """``{name: function}`` for a FilterModule: each function calls ``module``'s function of that
    name, importing ``module`` (a dotted name) at the first call. A filter file whose filters live in
    several modules calls it once per module and merges the dicts."""
    def wrapper(name):
        def call(*args, **kwargs):
            return getattr(importlib.import_module(module), name)(*args, **kwargs)
        call.__name__ = name
        return call
    return dict((name, wrapper(name)) for name in names)
