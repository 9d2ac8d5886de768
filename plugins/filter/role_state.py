# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role balloon_stats's input checks and VM selection (controller side); documented by
balloon_role_checks.yml and balloon_role_run.yml, implemented in
plugins/plugin_utils/_role_state.py (imported when called: see compliance.py here for why the
filter files stay small)."""

from __future__ import annotations


def _impl():
    from ansible_collections.qmp.balloon.plugins.plugin_utils import _role_state  # pylint: disable=import-outside-toplevel
    return _role_state


def balloon_role_checks(*args, **kwargs):
    return _impl().balloon_role_checks(*args, **kwargs)


def balloon_role_run(*args, **kwargs):
    return _impl().balloon_role_run(*args, **kwargs)


class FilterModule(object):
    """The role's input checks and VM selection."""

    def filters(self):
        return {
            'balloon_role_checks': balloon_role_checks,
            'balloon_role_run': balloon_role_run,
        }
