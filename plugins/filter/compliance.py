# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compliance and report filters of qmp.balloon (controller side); documented by their sidecar
YAML files, implemented in plugins/plugin_utils/ (_records.py, _pressure.py, _report.py and
_report_files.py) and imported when called (plugins/plugin_utils/_lazy.py says why)."""

from __future__ import annotations

from ansible_collections.qmp.balloon.plugins.plugin_utils._lazy import lazy_filters

_PLUGIN_UTILS = 'ansible_collections.qmp.balloon.plugins.plugin_utils.'


class FilterModule(object):

    def filters(self):
        filters = lazy_filters(_PLUGIN_UTILS + '_records', ('balloon_compliance', 'balloon_summary'))
        filters.update(lazy_filters(_PLUGIN_UTILS + '_pressure', ('balloon_rates',)))
        filters.update(lazy_filters(_PLUGIN_UTILS + '_report', ('balloon_report',)))
        filters.update(lazy_filters(_PLUGIN_UTILS + '_report_files', ('balloon_report_csv', 'balloon_report_rotation')))
        return filters
