# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Prometheus export filter of qmp.balloon (controller side); documented by balloon_openmetrics.yml,
implemented in plugins/plugin_utils/_openmetrics.py (imported when called: see compliance.py here
for why the filter files stay small)."""

from __future__ import annotations


def balloon_openmetrics(*args, **kwargs):
    from ansible_collections.qmp.balloon.plugins.plugin_utils import _openmetrics  # pylint: disable=import-outside-toplevel
    return _openmetrics.balloon_openmetrics(*args, **kwargs)


class FilterModule(object):

    def filters(self):
        return {
            'balloon_openmetrics': balloon_openmetrics,
        }
