# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller-side data helpers of qmp.balloon's filters.

PRIVATE: not part of the collection's public API.
"""

from __future__ import annotations

from collections.abc import Mapping


def plain(data):
    """Turn Ansible's tagged or lazy containers (hostvars, templated values) into plain Python data.

    jmespath and json need real dicts, lists and strs; Ansible hands filters
    subclasses and Mapping views.
    """
    if isinstance(data, Mapping):
        return dict((str(key), plain(data[key])) for key in data)
    if isinstance(data, (list, tuple)):
        return [plain(item) for item in data]
    if isinstance(data, str):
        return str(data)
    if isinstance(data, bool) or data is None:
        return data
    if isinstance(data, int):
        return int(data)
    if isinstance(data, float):
        return float(data)
    return data
