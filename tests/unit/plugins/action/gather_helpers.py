# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the unit tests of the two actions gather: balloon_stats_info's ``vms[]`` entries, the
options of balloon_stats_facts and the fact it builds of them (plugins/plugin_utils/_facts.py).

Not a test module (no ``test_`` prefix): test_balloon_stats_facts.py and test_balloon_stats_report.py
import it as ``ansible_collections.qmp.balloon.tests.unit.plugins.action.gather_helpers``.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.qmp.balloon.plugins.module_utils._options import COMMON_ARGUMENT_SPEC
from ansible_collections.qmp.balloon.plugins.plugin_utils import _facts

GIB = 1024 ** 3
#: When the helpers' facts were collected, unless a test says otherwise.
COLLECTED_AT = '2026-12-07T10:00:00Z'


def info_vm(name, **fields):
    """One ``vms[]`` entry of balloon_stats_info: a running VM read a moment ago, 2 of its 4 GiB available."""
    base = {'name': name, 'endpoint': 'unix:/run/%s.qmp' % name, 'failed': False, 'health': 'ok', 'vm_status': 'running',
            'polling_interval': 10, 'age': 3, 'last_update': 1700000000, 'unsupported': [],
            'stats': {'total_memory': 4 * GIB, 'free_memory': 1 * GIB, 'available_memory': 2 * GIB}}
    base.update(fields)
    return base


def unread_vm(name, msg='x'):
    """One ``vms[]`` entry of balloon_stats_info for a VM that could not be read, with its reason ``msg``."""
    return {'name': name, 'endpoint': 'unix:/run/%s.qmp' % name, 'failed': True, 'msg': msg}


def fact_params(**given):
    """balloon_stats_facts' parameters (the common options and its own) for the options ``given``, which must be valid."""
    spec = dict(COMMON_ARGUMENT_SPEC)
    spec.update(_facts.ARGUMENT_SPEC)
    result = ArgumentSpecValidator(spec).validate(given)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def gathered_fact(read, hypervisor='hv1', previous=None, collected_at=COLLECTED_AT, **given):
    """The fact balloon_stats_facts builds of the module's result ``read`` in this run (no libvirt socket on the host)."""
    values = fact_params(**given)
    plan = _facts.plan(values, given, lambda paths: [])
    return _facts.build_fact(read, values, plan, hypervisor, previous, collected_at=collected_at)
