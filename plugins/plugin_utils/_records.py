# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""VM records: the filter ``balloon_compliance`` turns balloon_stats_info's ``vms`` into VM records
with rule results, rates since the previous sample and a memory pressure verdict;
``balloon_summary`` counts one hypervisor's VM records (the role's fact), the same counts the
report makes per hypervisor and for the fleet.

PRIVATE: not part of the collection's public API.

A VM is ``non_compliant`` when a rule fails, else ``unknown`` when a rule is unknown, else
``compliant``.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain
from ansible_collections.qmp.balloon.plugins.plugin_utils._pressure import DEFAULT_PRESSURE, pressure, rates
from ansible_collections.qmp.balloon.plugins.plugin_utils._rules import INTERVAL_RULES, NO_BALLOON, check_rules, evaluate


#: A VM's state.
VM_STATES = ('compliant', 'non_compliant', 'unknown')
#: Fields copied from a balloon_stats_info result into a VM record.
_RECORD_FIELDS = ('name', 'endpoint', 'qom_path', 'health', 'vm_status', 'polling_interval', 'age',
                  'last_update', 'last_update_iso', 'stats', 'unsupported', 'used_memory', 'used_percent',
                  # why a VM is not ok and what to do (issue 13), and what libvirt adds (uuid, actual, rss)
                  'advice', 'driver', 'qemu_version', 'uuid', 'actual', 'rss')


def percent(part, whole):
    """``part`` in % of ``whole``, one decimal; None when either is unknown (or ``whole`` 0)."""
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 1)


def vm_record(vm, hypervisor=None, expected_interval=None, min_available_percent=None, interval_rule='at_most',
              previous=None, pressure_thresholds=None):
    """A VM's record as the rules see it: the module's fields plus what the rules compare against."""
    vm = _plain(vm)
    record = dict((field, vm.get(field)) for field in _RECORD_FIELDS)
    stats = record['stats'] or {}
    record.update(
        hypervisor=hypervisor,
        reachable=not vm.get('failed', False),
        error=vm.get('msg') if vm.get('failed') else None,
        stats=stats,
        available_percent=percent(stats.get('available_memory'), stats.get('total_memory')),
        expected_interval=expected_interval,
        interval_rule=interval_rule,
        min_available_percent=min_available_percent,
    )
    # the report's used %: what the rules check (not the module's used_percent, total - free)
    record['unavailable_percent'] = None if record['available_percent'] is None else round(100.0 - record['available_percent'], 1)
    record['rates'] = rates(record if record['reachable'] else None, previous)
    if not record['reachable'] and previous and previous.get('last_update'):
        # one read that failed (a busy monitor) must not cost the next gather its rates: the last
        # sample read is kept, and samples_by_identity gives it back
        record['last_sample'] = {'last_update': previous.get('last_update'), 'stats': previous.get('stats') or {}}
    if not record['reachable'] or record['health'] == NO_BALLOON:
        why = 'the VM could not be read' if not record['reachable'] else 'the VM has no balloon device'
        record['pressure'] = {'verdict': 'unknown', 'reasons': ['no stats: ' + why], 'headroom_percent': None}
    else:
        record['pressure'] = pressure(record['available_percent'], record['rates'], pressure_thresholds)
    return record


def samples_by_identity(previous):
    """The previous samples by VM identity (its endpoint: socket path, HOST:PORT or libvirt domain);
    for a VM the previous gather could not read, the last sample read before (``last_sample``)."""
    samples = {}
    for vm in _plain(previous) or []:
        if isinstance(vm, dict) and vm.get('endpoint'):
            unread = not vm.get('reachable', True) and isinstance(vm.get('last_sample'), dict)
            samples[vm['endpoint']] = vm['last_sample'] if unread else vm
    return samples


def balloon_compliance(vms, rules=None, hypervisor=None, expected_interval=None, min_available_percent=None,
                       interval_rule='at_most', previous=None, pressure_thresholds=None):
    """Records with compliance for every VM of a balloon_stats_info result (its ``vms``).

    ``previous``: the VM records (or ``vms``) of the previous gather of this hypervisor, for the rates.
    """
    if not isinstance(vms, list):
        raise AnsibleFilterError('balloon_compliance expects the vms list of balloon_stats_info, got %s' % type(vms).__name__)
    if interval_rule not in INTERVAL_RULES:
        raise AnsibleFilterError('interval_rule must be one of %s, got %r' % (', '.join(INTERVAL_RULES), interval_rule))
    thresholds = _plain(pressure_thresholds) or {}
    if not isinstance(thresholds, dict) or set(thresholds) - set(DEFAULT_PRESSURE):
        raise AnsibleFilterError('pressure_thresholds must be a dict with keys among %s, got %r'
                                 % (', '.join(sorted(DEFAULT_PRESSURE)), thresholds))
    compiled = check_rules(_plain(rules))
    before = samples_by_identity(previous)
    records = []
    for vm in vms:
        endpoint = (vm or {}).get('endpoint')
        record = vm_record(vm, hypervisor, expected_interval, min_available_percent, interval_rule,
                           before.get(endpoint), thresholds)
        record['compliance'] = evaluate(record, compiled)
        records.append(record)
    return records


def vm_state(vm):
    """A VM record's state (VM_STATES); a record without one (an older fact) is compliant or non_compliant."""
    compliance = vm.get('compliance') or {}
    if compliance.get('state') in VM_STATES:
        return compliance['state']
    return 'compliant' if compliance.get('compliant') else 'non_compliant'


def balloon_summary(records):
    """The counts of a list of VM records (one hypervisor's, or the fleet's).

    ``vms``, ``unreachable``, ``compliant``, ``non_compliant``, ``unknown`` (VMs in each state),
    ``violations`` and ``unknown_results`` (rule results), ``by_pressure`` (VMs per verdict).
    """
    records = _plain(records)
    states = [vm_state(vm) for vm in records]
    by_pressure = dict((verdict, 0) for verdict in ('high', 'moderate', 'none', 'unknown'))
    for vm in records:
        verdict = (vm.get('pressure') or {}).get('verdict', 'unknown')
        by_pressure[verdict] = by_pressure.get(verdict, 0) + 1
    return {
        'vms': len(records),
        'unreachable': sum(1 for vm in records if not vm.get('reachable', True)),
        'compliant': states.count('compliant'),
        'non_compliant': states.count('non_compliant'),
        'unknown': states.count('unknown'),
        'violations': sum(len(vm.get('compliance', {}).get('violations', [])) for vm in records),
        'unknown_results': sum(len(vm.get('compliance', {}).get('unknown', [])) for vm in records),
        'by_pressure': by_pressure,
    }
