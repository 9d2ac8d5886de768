# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compliance and report filters of qmp.balloon (controller side); documented by their sidecar
YAML files, implemented in plugins/plugin_utils/_compliance.py.

This file stays small on purpose: ansible-core imports every filter file of a collection each time
a worker first resolves one of its filters (each task runs in a new worker, and a collection's
plugin sources are compiled on every import), so the implementation is imported only when one of
these filters is called.
"""

from __future__ import annotations


def _impl():
    from ansible_collections.qmp.balloon.plugins.plugin_utils import _compliance  # pylint: disable=import-outside-toplevel
    return _compliance


def balloon_compliance(*args, **kwargs):
    return _impl().balloon_compliance(*args, **kwargs)


def balloon_rates(*args, **kwargs):
    return _impl().balloon_rates(*args, **kwargs)


def balloon_report(*args, **kwargs):
    return _impl().balloon_report(*args, **kwargs)


def balloon_summary(*args, **kwargs):
    return _impl().balloon_summary(*args, **kwargs)


def balloon_report_csv(*args, **kwargs):
    return _impl().balloon_report_csv(*args, **kwargs)


def balloon_report_rotation(*args, **kwargs):
    return _impl().balloon_report_rotation(*args, **kwargs)


class FilterModule(object):

    def filters(self):
        return {
            'balloon_compliance': balloon_compliance,
            'balloon_rates': balloon_rates,
            'balloon_report': balloon_report,
            'balloon_summary': balloon_summary,
            'balloon_report_csv': balloon_report_csv,
            'balloon_report_rotation': balloon_report_rotation,
        }
