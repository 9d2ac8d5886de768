# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Prometheus export of qmp.balloon (controller side).

- ``balloon_openmetrics``: balloon_stats_info results, or the role's VM records, as Prometheus
  text exposition format (version 0.0.4, what node_exporter's textfile collector reads).

The names follow Prometheus' naming rules: prefix ``qmp_balloon_``, base units (bytes,
seconds), ``_total`` on counters, ratios 0-1. A stat the guest did not send has no sample
(never 0). No sample carries a timestamp: node_exporter refuses a textfile that has one.
"""

from __future__ import annotations

import calendar
import datetime
import math
import time

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain

PREFIX = 'qmp_balloon_'

#: The guest's stats by QEMU's name (underscored): (metric name without prefix, type, help).
#: Units from docs/stats.md; minor_faults is Linux's pgfault, ALL faults (major included).
GUEST_STATS = {
    'total_memory': ('guest_total_bytes', 'gauge', 'Memory the guest sees (total-memory), in bytes.'),
    'free_memory': ('guest_free_bytes', 'gauge', 'Memory the guest leaves completely unused (free-memory), in bytes.'),
    'available_memory': ('guest_available_bytes', 'gauge',
                         'Memory the guest can use without swapping, MemAvailable (available-memory), in bytes.'),
    'disk_caches': ('guest_disk_caches_bytes', 'gauge', 'Page cache the guest could drop (disk-caches), in bytes.'),
    'swap_in': ('guest_swap_in_bytes_total', 'counter', 'Memory swapped in by the guest since its boot (swap-in), in bytes.'),
    'swap_out': ('guest_swap_out_bytes_total', 'counter', 'Memory swapped out by the guest since its boot (swap-out), in bytes.'),
    'major_faults': ('guest_major_faults_total', 'counter', 'Major page faults (that read from disk) in the guest since its boot.'),
    'minor_faults': ('guest_page_faults_total', 'counter',
                     'All page faults in the guest since its boot, major ones included (QEMU minor-faults, Linux pgfault).'),
    'htlb_pgalloc': ('guest_hugetlb_allocations_total', 'counter', 'Successful huge page allocations in the guest (htlb-pgalloc).'),
    'htlb_pgfail': ('guest_hugetlb_allocation_failures_total', 'counter', 'Failed huge page allocations in the guest (htlb-pgfail).'),
    'oom_kills': ('guest_oom_kills_total', 'counter', 'Processes killed by the guest OOM killer since its boot (oom-kills).'),
    'alloc_stalls': ('guest_alloc_stalls_total', 'counter', 'Guest allocations that stalled in direct reclaim (alloc-stalls).'),
    'async_scans': ('guest_async_scan_bytes_total', 'counter', 'Memory scanned by the guest kswapd (async-scans), in bytes.'),
    'direct_scans': ('guest_direct_scan_bytes_total', 'counter', 'Memory scanned by guest direct reclaim (direct-scans), in bytes.'),
    'async_reclaims': ('guest_async_reclaim_bytes_total', 'counter', 'Memory reclaimed by the guest kswapd (async-reclaims), in bytes.'),
    'direct_reclaims': ('guest_direct_reclaim_bytes_total', 'counter',
                        'Memory reclaimed by guest direct reclaim (direct-reclaims), in bytes.'),
}

#: A stat of a newer QEMU that this table does not know yet: passed through under its own name.
OTHER_STAT = ('guest_stat', 'untyped', 'A guest statistic without a name of its own here yet, as QEMU reports it (label stat).')

#: The values of balloon_stats_info's health, in its documented order; a value not listed is added.
HEALTH_STATES = ('ok', 'polling_disabled', 'driver_not_loaded', 'stats_not_negotiated', 'never_updated', 'vm_not_running',
                 'stale', 'no_balloon_device')
COMPLIANCE_STATES = ('compliant', 'non_compliant', 'unknown')
PRESSURE_STATES = ('none', 'moderate', 'high', 'unknown')
#: The statuses of a hypervisor in the role's fact (unreachable hosts have no fact, hence no file).
HYPERVISOR_STATES = ('ok', 'failed', 'no_vms')
RULE_VALUES = {True: 'pass', False: 'fail', None: 'unknown', 'pass': 'pass', 'fail': 'fail', 'unknown': 'unknown'}

#: Every family, in output order: name without prefix -> (type, help).
FAMILIES = dict([
    ('up', ('gauge', 'Whether the VM could be read: 1 read, 0 failed (monitor unreachable, busy, refused).')),
    ('health', ('gauge', 'The health of the VM statistics as a state set: 1 for the current state, 0 for the others.')),
    ('polling_interval_seconds', ('gauge', 'The guest-stats-polling-interval of the balloon, in seconds; 0 = polling disabled.')),
    ('stats_last_update_timestamp_seconds', ('gauge', 'When the guest last sent statistics (host clock), Unix time in seconds.')),
    ('vm_info', ('gauge', 'Always 1: the QEMU version and run state of the VM, in labels.')),
    ('actual_bytes', ('gauge', 'The balloon actual size, the memory the guest has, in bytes (libvirt transport).')),
    ('qemu_rss_bytes', ('gauge', 'Resident memory of the QEMU process on the host, in bytes (libvirt transport).')),
] + [(metric, (kind, text)) for metric, kind, text in GUEST_STATS.values()] + [
    (OTHER_STAT[0], OTHER_STAT[1:]),
    ('compliance', ('gauge', 'The VM compliance with the role rules as a state set: 1 for the current state, 0 for the others.')),
    ('rule_result', ('gauge', 'The result of one compliance rule for the VM: 1 pass, 0 fail; no sample when unknown.')),
    ('pressure', ('gauge', 'The memory pressure verdict for the VM as a state set: 1 for the current verdict, 0 for the others.')),
    ('memory_headroom_ratio', ('gauge', 'Available memory divided by total memory, as the pressure verdict saw it (0-1).')),
    ('collected_timestamp_seconds', ('gauge', 'When these figures were collected, Unix time in seconds.')),
    ('hypervisor_vms', ('gauge', 'How many VMs were found on the hypervisor (read or not).')),
    ('hypervisor_status', ('gauge', 'The role status of the hypervisor as a state set (ok, failed, no_vms): failed when '
                                    'its VMs could not be looked for, such as a socket glob whose directory does not exist.')),
    ('export_period_seconds', ('gauge', 'How often the export is scheduled to run, in seconds (the export-stale alert waits 3 periods).')),
])


def _escape_label(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _escape_help(text):
    return text.replace('\\', '\\\\').replace('\n', '\\n')


def _format_value(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    if value == int(value) and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(value)


def _number(value):
    """An int or float value, or None for null, a bool or anything not numeric (never a sample)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value) if ('.' in value or 'e' in value.lower()) else int(value)
        except ValueError:
            return None
    return None


def _epoch(value, what):
    """Unix seconds from an epoch number or an ISO 8601 UTC string such as 2026-11-30T14:00:00Z."""
    if isinstance(value, bool):
        raise AnsibleFilterError('balloon_openmetrics: %s must be Unix seconds or an ISO 8601 time, got %r' % (what, value))
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return calendar.timegm(value.utctimetuple())
    text = str(value).strip()
    for pattern in ('%Y-%m-%dT%H:%M:%SZ', '%Y-%m-%dT%H:%M:%S.%fZ', '%Y-%m-%dT%H:%M:%S+00:00', '%Y-%m-%d %H:%M:%S'):
        try:
            return calendar.timegm(time.strptime(text, pattern))
        except ValueError:
            continue
    raise AnsibleFilterError('balloon_openmetrics: %s must be Unix seconds or an ISO 8601 UTC time '
                             '(2026-11-30T14:00:00Z), got %r' % (what, value))


class _Exposition(object):
    """Samples grouped by family, written with one HELP and TYPE per family; duplicate series refused."""

    def __init__(self):
        self.samples = dict((name, []) for name in FAMILIES)
        self.seen = set()

    def add(self, family, labels, value):
        key = (family, tuple(labels))
        if key in self.seen:
            described = ', '.join('%s=%s' % pair for pair in labels)
            raise AnsibleFilterError('balloon_openmetrics: two VMs give the same series %s{%s}: give each VM of a '
                                     'hypervisor its own name (the modules\' targets[].name)' % (PREFIX + family, described))
        self.seen.add(key)
        self.samples[family].append((labels, value))

    def text(self):
        lines = []
        for family, samples in self.samples.items():
            if not samples:
                continue
            kind, text = FAMILIES[family]
            name = PREFIX + family
            lines.append('# HELP %s %s' % (name, _escape_help(text)))
            lines.append('# TYPE %s %s' % (name, kind))
            for labels, value in samples:
                rendered = ','.join('%s="%s"' % (label, _escape_label(item)) for label, item in labels)
                lines.append('%s{%s} %s' % (name, rendered, _format_value(value)) if rendered
                             else '%s %s' % (name, _format_value(value)))
        return '\n'.join(lines) + '\n' if lines else ''


def _state_set(out, family, labels, current, states):
    states = list(states)
    if current not in states:
        states.append(current)
    for state in states:
        out.add(family, labels + [('state', state)], 1 if state == current else 0)


def _compliance_state(compliance):
    state = compliance.get('state')
    if state is None and 'compliant' in compliance:
        # the record shape before issue 14: compliant true/false
        state = {True: 'compliant', False: 'non_compliant'}.get(compliance.get('compliant'), 'unknown')
    return state


def _add_vm(out, vm, hypervisor):
    if not isinstance(vm, dict):
        raise AnsibleFilterError('balloon_openmetrics: each VM must be a dict (balloon_stats_info vms[] or a role record), '
                                 'got %s' % type(vm).__name__)
    name = vm.get('name')
    if not name:
        raise AnsibleFilterError('balloon_openmetrics: a VM has no name: %r' % (vm.get('endpoint') or vm,))
    labels = []
    hypervisor = vm.get('hypervisor') or hypervisor
    if hypervisor:
        labels.append(('hypervisor', hypervisor))
    labels.append(('vm', name))
    if vm.get('uuid'):
        labels.append(('uuid', vm['uuid']))
    # a module result says failed; a role record says reachable
    up = not vm['failed'] if 'failed' in vm else bool(vm.get('reachable', True))
    out.add('up', labels, 1 if up else 0)
    if up:
        if vm.get('health'):
            _state_set(out, 'health', labels, vm['health'], HEALTH_STATES)
        for field, family in (('polling_interval', 'polling_interval_seconds'), ('actual', 'actual_bytes'),
                              ('rss', 'qemu_rss_bytes')):
            value = _number(vm.get(field))
            if value is not None:
                out.add(family, labels, value)
        last_update = _number(vm.get('last_update'))
        if last_update:  # 0: the guest never answered; no timestamp rather than 1970
            out.add('stats_last_update_timestamp_seconds', labels, last_update)
        info = [(field, vm[field]) for field in ('qemu_version', 'vm_status') if vm.get(field)]
        if info:
            out.add('vm_info', labels + info, 1)
        for stat, raw in sorted((vm.get('stats') or {}).items()):
            value = _number(raw)
            if value is None:
                continue  # not sent by the guest: no series, never 0
            if stat in GUEST_STATS:
                out.add(GUEST_STATS[stat][0], labels, value)
            else:
                out.add(OTHER_STAT[0], labels + [('stat', stat)], value)
    compliance = vm.get('compliance')
    if isinstance(compliance, dict):
        state = _compliance_state(compliance)
        if state:
            _state_set(out, 'compliance', labels, state, COMPLIANCE_STATES)
        for rule, result in sorted((compliance.get('rules') or {}).items()):
            result = RULE_VALUES.get(result, 'unknown')
            if result != 'unknown':
                out.add('rule_result', labels + [('rule', rule)], 1 if result == 'pass' else 0)
    pressure = vm.get('pressure')
    if isinstance(pressure, dict) and pressure.get('verdict'):
        _state_set(out, 'pressure', labels, pressure['verdict'], PRESSURE_STATES)
        headroom = _number(pressure.get('headroom_percent'))
        if headroom is not None:
            out.add('memory_headroom_ratio', labels, round(headroom / 100.0, 6))


def _hypervisors(data, hypervisor, collected_at):
    """[(hypervisor, collected_at, vms, status)] from any of the accepted input shapes (status: the role's, or None)."""
    if isinstance(data, dict):
        if not isinstance(data.get('vms'), list):
            raise AnsibleFilterError('balloon_openmetrics expects a balloon_stats_info result, the role\'s balloon_stats fact '
                                     'or a list of VMs; this dict has no vms list')
        return [(hypervisor or data.get('hypervisor'), collected_at if collected_at is not None else data.get('collected_at'),
                 data['vms'], data.get('status'))]
    if isinstance(data, list):
        if data and all(isinstance(item, dict) and isinstance(item.get('vms'), list) and 'name' not in item for item in data):
            # several hypervisors' facts (the fleet in one file)
            return [(item.get('hypervisor'), collected_at if collected_at is not None else item.get('collected_at'), item['vms'],
                     item.get('status')) for item in data]
        return [(hypervisor, collected_at, data, None)]
    raise AnsibleFilterError('balloon_openmetrics expects a balloon_stats_info result, the role\'s balloon_stats fact or a '
                             'list of VMs, got %s' % type(data).__name__)


def balloon_openmetrics(data, hypervisor=None, collected_at=None, period=None):
    """Prometheus text exposition of VMs: balloon_stats_info's result or vms, or the role's balloon_stats fact(s)."""
    data = _plain(data)
    if hypervisor is not None and not isinstance(hypervisor, str):
        raise AnsibleFilterError('balloon_openmetrics: hypervisor must be a string, got %r' % (hypervisor,))
    if period is not None and (_number(period) is None or _number(period) <= 0):
        raise AnsibleFilterError('balloon_openmetrics: period must be a number of seconds above 0, got %r' % (period,))
    out = _Exposition()
    for host, collected, vms, status in _hypervisors(data, hypervisor, collected_at):
        for vm in vms:
            _add_vm(out, vm, host)
        labels = [('hypervisor', host)] if host else []
        when = int(time.time()) if collected is None else _epoch(collected, 'collected_at')
        out.add('collected_timestamp_seconds', labels, when)
        out.add('hypervisor_vms', labels, len(vms))
        if status:
            # a failed hypervisor (a glob directory missing) must not look like a quiet one
            _state_set(out, 'hypervisor_status', labels, status, HYPERVISOR_STATES)
        if period is not None:
            out.add('export_period_seconds', [('hypervisor', host)] if host else [], _number(period))
    return out.text()
