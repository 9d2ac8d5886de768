# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The modules' documentation says what the code does, for the facts it cannot import.

(validate-modules checks the documented defaults against the argument spec; the QMP
allow-list is compared in test_allow_list.py.)
"""

from __future__ import annotations

from ansible_collections.qmp.balloon.plugins.doc_fragments._common import ModuleDocFragment
from ansible_collections.qmp.balloon.plugins.module_utils import _batch, _operations, _stats
from ansible_collections.qmp.balloon.plugins.modules import balloon_stats_info, balloon_stats_polling


def test_the_stale_factor():
    assert balloon_stats_info.RETURN.count('older than %d intervals' % _stats.STALE_FACTOR) == 2
    assert 'older than %d x O(interval)' % _stats.STALE_FACTOR in balloon_stats_polling.DOCUMENTATION


def test_the_interval_range():
    assert 'from 0 to %d' % _operations.MAX_INTERVAL in balloon_stats_polling.DOCUMENTATION


def test_the_slot_rule_of_concurrency():
    fragment = ' '.join(ModuleDocFragment.DOCUMENTATION.split())
    assert 'has not finished after %g s' % _batch.SLOW_AFTER in fragment
    assert 'At most %d VMs (or O(concurrency) if higher) are in progress at once' % _batch.MAX_OPEN in fragment
