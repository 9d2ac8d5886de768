# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Prometheus export filter of qmp.balloon (controller side); documented by balloon_openmetrics.yml,
implemented in plugins/plugin_utils/_openmetrics.py and imported when called
(plugins/plugin_utils/_lazy.py says why)."""

from __future__ import annotations

from ansible_collections.qmp.balloon.plugins.plugin_utils._lazy import lazy_filters


class FilterModule(object):

    def filters(self):
        return lazy_filters('ansible_collections.qmp.balloon.plugins.plugin_utils._openmetrics', ('balloon_openmetrics',))
