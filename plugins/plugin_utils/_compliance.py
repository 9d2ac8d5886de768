# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compliance and report filters of qmp.balloon (controller side).

- ``balloon_compliance``: turns balloon_stats_info's ``vms`` into VM records with
  rule results (rules are JMESPath expressions, data not code), rates since the previous
  sample and a memory pressure verdict.
- ``balloon_rates``: the per-second rates between two samples of one VM.
- ``balloon_report``: assembles the fleet report from every hypervisor's facts.
- ``balloon_summary``: the counts of one hypervisor's VM records (the role's fact), the
  same counts the report makes per hypervisor and for the fleet.
- ``balloon_report_csv``: one CSV row per VM (and one per hypervisor without VMs), for spreadsheets.
- ``balloon_report_rotation``: which timestamped reports the role keeps (the newest runs whose
  findings changed, and always the newest run).

Three states everywhere: a rule is ``pass``, ``fail`` or ``unknown`` (its inputs are missing);
a VM is ``non_compliant`` when a rule fails, else ``unknown`` when a rule is unknown, else
``compliant``; a hypervisor is ``ok``, ``unreachable``, ``failed`` (with its reason) or ``no_vms``.
"""

from __future__ import annotations

import csv
import datetime
import getpass
import hashlib
import io
import json
import os
import re
import socket
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False

#: Version of the report's JSON layout; bump on any incompatible change.
#: 2 (issue 14): rule results pass/fail/unknown, VM and hypervisor states, rates, pressure.
REPORT_SCHEMA_VERSION = 2
#: Rule severities, most severe first. The report carries this order (``severities``) for its
#: HTML template, which ranks each VM by its worst violation.
SEVERITIES = ('critical', 'warning', 'info')
#: A rule's result, a VM's state, a hypervisor's status.
RULE_RESULTS = ('pass', 'fail', 'unknown')
VM_STATES = ('compliant', 'non_compliant', 'unknown')
HYPERVISOR_STATUSES = ('ok', 'unreachable', 'failed', 'no_vms')
#: balloon_stats_interval_rule: polling on and at most the expected interval, or exactly it.
INTERVAL_RULES = ('at_most', 'exact')
#: The health the modules give a VM without a balloon device (issue 13): no stats, no interval.
NO_BALLOON = 'no_balloon_device'

#: Pressure thresholds (role variables balloon_stats_pressure_*), after KubeVirt's alert.
DEFAULT_PRESSURE = {'headroom_high': 5.0, 'headroom_moderate': 10.0, 'major_faults': 5.0, 'swap_bytes': 1048576.0}

#: Counters turned into rates (per second) and deltas (count since the previous sample).
_RATE_COUNTERS = ('swap_in', 'swap_out', 'major_faults', 'minor_faults')
_DELTA_COUNTERS = ('oom_kills', 'alloc_stalls')

#: Fields copied from a balloon_stats_info result into a VM record.
_RECORD_FIELDS = ('name', 'endpoint', 'qom_path', 'health', 'vm_status', 'polling_interval', 'age',
                  'last_update', 'last_update_iso', 'stats', 'unsupported', 'used_memory', 'used_percent',
                  # why a VM is not ok and what to do (issue 13), and what libvirt adds (uuid, actual, rss)
                  'advice', 'driver', 'qemu_version', 'uuid', 'actual', 'rss')

#: The report's used figure is the one the rules check: 100 - available_percent (MemAvailable counts
#: page cache as available), never the module's used_percent (total - free: page cache counted as used).
#: Its own name, so nobody takes one for the other.
CSV_COLUMNS = ('hypervisor', 'vm', 'reachable', 'health', 'vm_status', 'polling_interval', 'expected_interval',
               'age', 'total_memory', 'free_memory', 'available_memory', 'unavailable_percent', 'available_percent',
               'compliant', 'violations', 'error')
#: Columns added by issue 14, after the old ones (spreadsheets that pick columns by position keep working).
CSV_COLUMNS_STATES = ('state', 'unknown_rules', 'pressure', 'headroom_percent', 'major_faults_per_s',
                      'swap_bytes_per_s', 'advice')
#: How the hypervisor of the row was audited (issue 14, after the trial): its status and reason, the
#: transport and the one-sentence audit summary. A hypervisor without VM records gets one row of its own.
CSV_COLUMNS_AUDIT = ('hypervisor_status', 'hypervisor_reason', 'transport', 'audit')

#: Ansible tells roles the play's name and its hosts, not the host pattern they came from.
HOST_PATTERN_NOTE = ("Ansible does not expose the play's host pattern to roles; the play's name (an unnamed play is "
                     "named after its pattern), its resolved hosts, --limit and the tags are recorded instead")


def _now_iso():
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _check_rules(rules):
    if not HAS_JMESPATH:
        raise AnsibleFilterError('qmp.balloon compliance rules need the Python library jmespath on the controller '
                                 '(pip install jmespath)')
    compiled = []
    seen = set()
    for index, rule in enumerate(rules or []):
        if not isinstance(rule, dict):
            raise AnsibleFilterError('rule %d (counting the built-in rules first) must be a dict with name and query, got %r'
                                     % (index, rule))
        name, query = rule.get('name'), rule.get('query')
        if not name or not isinstance(name, str):
            raise AnsibleFilterError('rule %d (counting the built-in rules first) has no name: %r' % (index, rule))
        if name in seen:
            raise AnsibleFilterError('rule name %r is used twice' % name)
        seen.add(name)
        if not query or not isinstance(query, str):
            raise AnsibleFilterError('rule %r has no query (a JMESPath expression)' % name)
        severity = rule.get('severity', 'warning')
        if severity not in SEVERITIES:
            raise AnsibleFilterError('rule %r: severity must be one of %s, got %r' % (name, ', '.join(SEVERITIES), severity))
        try:
            expression = jmespath.compile(str(query))
        except jmespath.exceptions.JMESPathError as exc:
            raise AnsibleFilterError('rule %r: invalid JMESPath query %r: %s' % (name, str(query), exc))
        severity_query = rule.get('severity_query')
        severity_expression = None
        if severity_query is not None:
            try:
                severity_expression = jmespath.compile(str(severity_query))
            except jmespath.exceptions.JMESPathError as exc:
                raise AnsibleFilterError('rule %r: invalid JMESPath severity_query %r: %s' % (name, str(severity_query), exc))
        compiled.append({'name': str(name), 'severity': severity, 'query': str(query), 'expression': expression,
                         'severity_query': None if severity_query is None else str(severity_query),
                         'severity_expression': severity_expression,
                         'description': str(rule.get('description') or name), 'always': bool(rule.get('always'))})
    return compiled


def _percent(part, whole):
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 1)


# ---------------------------------------------------------------------------------------------
# Section: rates between two samples, and the pressure verdict
# ---------------------------------------------------------------------------------------------

def _counter(stats, name):
    value = (stats or {}).get(name)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rates(current, previous):
    """The rates of one VM between two samples (each with ``last_update`` and ``stats``).

    Per second over the guest's own ``last_update`` delta: ``swap_in``/``swap_out`` (bytes/s),
    ``major_faults``, ``minor_faults`` (all faults minus major; Linux's pgfault counts both);
    ``oom_kills`` and ``alloc_stalls`` as deltas. No previous sample, a sample without an update,
    or the same ``last_update`` give ``null``s; ``last_update`` or a counter going backwards
    (guest reboot, QEMU >= 10 reset, migration to a fresh QEMU) gives ``null``s and ``reset: true``:
    never a negative rate.
    """
    result = dict((name, None) for name in _RATE_COUNTERS + _DELTA_COUNTERS)
    result.update(interval=None, reset=False)
    current, previous = current or {}, previous or {}
    now, before = current.get('last_update'), previous.get('last_update')
    if not now or not before:
        return result
    if now < before:
        result['reset'] = True
        return result
    if now == before:
        return result
    interval = now - before
    deltas = {}
    for name in _RATE_COUNTERS + _DELTA_COUNTERS:
        value, old = _counter(current.get('stats'), name), _counter(previous.get('stats'), name)
        if value is None or old is None:
            deltas[name] = None
        elif value < old:
            result['reset'] = True
            return result
        else:
            deltas[name] = value - old
    result['interval'] = interval
    for name in ('swap_in', 'swap_out', 'major_faults'):
        if deltas[name] is not None:
            result[name] = round(deltas[name] / float(interval), 3)
    if deltas['minor_faults'] is not None and deltas['major_faults'] is not None:
        result['minor_faults'] = round(max(deltas['minor_faults'] - deltas['major_faults'], 0) / float(interval), 3)
    for name in _DELTA_COUNTERS:
        result[name] = deltas[name]
    return result


def pressure(headroom, vm_rates, thresholds=None):
    """``{'verdict', 'reasons', 'headroom_percent'}`` from headroom (available / total, %) and the rates.

    high: oom_kills rose, or headroom < headroom_high and (major faults > major_faults/s or swap
    in + out > swap_bytes/s); moderate: headroom < headroom_moderate, or alloc_stalls rose; none
    otherwise; unknown without headroom (and no OOM kill). Headroom below headroom_high without
    rates (the first sample) is moderate, and says that high could not be judged.
    """
    limits = dict(DEFAULT_PRESSURE)
    limits.update((key, float(value)) for key, value in (thresholds or {}).items() if value is not None)
    vm_rates = vm_rates or {}
    reasons = []
    high = moderate = False
    if (vm_rates.get('oom_kills') or 0) > 0:
        high = True
        reasons.append('%d OOM kill%s since the previous sample' % (vm_rates['oom_kills'], '' if vm_rates['oom_kills'] == 1 else 's'))
    if (vm_rates.get('alloc_stalls') or 0) > 0:
        moderate = True
        stalls = vm_rates['alloc_stalls']
        reasons.append('%d allocation stall%s since the previous sample' % (stalls, '' if stalls == 1 else 's'))
    if headroom is not None:
        major = vm_rates.get('major_faults')
        swap = None
        if vm_rates.get('swap_in') is not None or vm_rates.get('swap_out') is not None:
            swap = (vm_rates.get('swap_in') or 0) + (vm_rates.get('swap_out') or 0)
        if headroom < limits['headroom_high']:
            thrashing = []
            if major is not None and major > limits['major_faults']:
                thrashing.append('%g major faults/s > %g' % (major, limits['major_faults']))
            if swap is not None and swap > limits['swap_bytes']:
                thrashing.append('%g swap bytes/s > %g' % (swap, limits['swap_bytes']))
            if thrashing:
                high = True
                reasons.append('headroom %g%% < %g%% with %s' % (headroom, limits['headroom_high'], ' and '.join(thrashing)))
            elif major is None and swap is None:
                moderate = True
                reasons.append('headroom %g%% < %g%%; no rates yet (first sample), so high cannot be judged'
                               % (headroom, limits['headroom_high']))
            else:
                moderate = True
                reasons.append('headroom %g%% < %g%%' % (headroom, limits['headroom_moderate']))
        elif headroom < limits['headroom_moderate']:
            moderate = True
            paging = []
            if major is not None and major > limits['major_faults']:
                paging.append('%g major faults/s' % major)
            if swap is not None and swap > limits['swap_bytes']:
                paging.append('%g swap bytes/s' % swap)
            reasons.append('headroom %g%% < %g%%%s' % (
                headroom, limits['headroom_moderate'],
                ' with %s (high needs headroom < %g%% too)' % (' and '.join(paging), limits['headroom_high']) if paging else ''))
    if high:
        verdict = 'high'
    elif moderate:
        verdict = 'moderate'
    elif headroom is None:
        verdict = 'unknown'
        reasons.append('no headroom: the guest sends no available_memory or total_memory')
    else:
        verdict = 'none'
        if all(vm_rates.get(key) is None for key in ('major_faults', 'swap_in', 'swap_out')):
            reasons.append('headroom %g%%; no rates yet (first sample or a counter reset)' % headroom)
    return {'verdict': verdict, 'reasons': reasons, 'headroom_percent': headroom}


def balloon_rates(current, previous):
    """Filter: the rates between two samples of one VM (balloon_stats_info ``vms`` entries or VM records)."""
    for label, sample in (('current', current), ('previous', previous)):
        if sample is not None and not isinstance(sample, dict):
            raise AnsibleFilterError('balloon_rates expects %s to be a dict with last_update and stats, got %s'
                                     % (label, type(sample).__name__))
    return rates(_plain(current), _plain(previous))


# ---------------------------------------------------------------------------------------------
# Section: records and rules
# ---------------------------------------------------------------------------------------------

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
        available_percent=_percent(stats.get('available_memory'), stats.get('total_memory')),
        expected_interval=expected_interval,
        interval_rule=interval_rule,
        min_available_percent=min_available_percent,
    )
    # the report's used %: what the rules check (not the module's used_percent, total - free)
    record['unavailable_percent'] = None if record['available_percent'] is None else round(100.0 - record['available_percent'], 1)
    record['rates'] = rates(record if record['reachable'] else None, previous)
    if not record['reachable'] or record['health'] == NO_BALLOON:
        why = 'the VM could not be read' if not record['reachable'] else 'the VM has no balloon device'
        record['pressure'] = {'verdict': 'unknown', 'reasons': ['no stats: ' + why], 'headroom_percent': None}
    else:
        record['pressure'] = pressure(record['available_percent'], record['rates'], pressure_thresholds)
    return record


def _inputs_missing(record, rule):
    """Whether a rule cannot be judged on this VM at all: no data, not a pass nor a failure."""
    if rule['always']:
        return False
    return not record['reachable'] or record.get('health') == NO_BALLOON


def evaluate(record, rules):
    """Apply compiled rules to a record: each rule pass, fail or unknown (a null result, or no inputs).

    For an unreachable VM only rules marked ``always`` are evaluated; for a VM without a balloon
    device too (the rest have no inputs). Those not evaluated are unknown.
    """
    results = {}
    violations = []
    unknown = []
    for rule in rules:
        if _inputs_missing(record, rule):
            value = None
        else:
            try:
                value = rule['expression'].search(record)
            except jmespath.exceptions.JMESPathError as exc:
                raise AnsibleFilterError('rule %r failed on VM %r: %s' % (rule['name'], record.get('name'), exc))
        if value is None:
            results[rule['name']] = 'unknown'
            unknown.append(rule['name'])
            continue
        results[rule['name']] = 'pass' if value else 'fail'
        if not value:
            severity = rule['severity']
            if rule['severity_expression'] is not None:
                chosen = rule['severity_expression'].search(record)
                severity = chosen if chosen in SEVERITIES else severity
            violations.append({'rule': rule['name'], 'severity': severity, 'description': rule['description'],
                               'hypervisor': record.get('hypervisor'), 'vm': record.get('name')})
    state = 'non_compliant' if violations else ('unknown' if unknown else 'compliant')
    return {'state': state, 'compliant': state == 'compliant', 'rules': results, 'violations': violations, 'unknown': unknown}


def _samples_by_identity(previous):
    """The previous samples by VM identity (its endpoint: socket path, HOST:PORT or libvirt domain)."""
    samples = {}
    for vm in _plain(previous) or []:
        if isinstance(vm, dict) and vm.get('endpoint'):
            samples[vm['endpoint']] = vm
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
    compiled = _check_rules(_plain(rules))
    before = _samples_by_identity(previous)
    records = []
    for vm in vms:
        endpoint = (vm or {}).get('endpoint')
        record = vm_record(vm, hypervisor, expected_interval, min_available_percent, interval_rule,
                           before.get(endpoint), thresholds)
        record['compliance'] = evaluate(record, compiled)
        records.append(record)
    return records


def _state(vm):
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
    states = [_state(vm) for vm in records]
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


# ---------------------------------------------------------------------------------------------
# Section: the fleet report
# ---------------------------------------------------------------------------------------------

#: Why a host has no fact: Ansible tells the report which hosts dropped out of the play, not why.
UNREACHABLE_REASON = 'Ansible could not connect to it, so none of its VMs was read'
CHECK_PENDING_REASON = ('not read: check mode, and the role would first prepare %s on it (an install), '
                        'so none of its VMs was read; run without --check to read them')
FAILED_REASON = 'a task failed on it before its stats were gathered (see that task in the play output), so none of its VMs was read'


#: The role's registered module results, in the order its tasks run.
_MODULE_RESULTS = ('__balloon_stats_probe', '__balloon_stats_libvirt_found', 'balloon_stats_configure_result',
                   '__balloon_stats_info')


#: What the role's discovery leaves on a host (set_fact, no connection needed: also on a host that
#: became unreachable later), and the inventory's variables, for a host that has no fact.
_DISCOVERED = ('__balloon_stats_transport', '__balloon_stats_sockets', '__balloon_stats_targets', '__balloon_stats_all_domains')
_CONFIGURED = ('balloon_stats_transport', 'balloon_stats_socket_globs', 'balloon_stats_vms', 'balloon_stats_libvirt_uri')
#: The keys of an explicit VM the report shows (what identifies it; nothing else of the user's input).
_VM_KEYS = ('name', 'socket', 'host', 'port', 'domain')


def _host_fact(hostvars_host, fact_name):
    """A host's cacheable fact: from ``ansible_facts`` first (the fact cache, and ansible-core's
    INJECT_FACTS_AS_VARS off, the default to come), else the variable set_fact also sets."""
    facts = hostvars_host.get('ansible_facts') if 'ansible_facts' in hostvars_host else None
    if isinstance(facts, Mapping) and facts.get(fact_name):
        return facts.get(fact_name)
    return hostvars_host.get(fact_name)


def _hostvar(hostvars_host, key):
    """A host's variable as plain data, None when absent or when it cannot be templated here."""
    try:
        if key not in hostvars_host:
            return None
        return _plain(hostvars_host[key])
    except Exception:  # pylint: disable=broad-except  # an inventory value that does not template here
        return None


def _explicit_vms(vms):
    return [dict((key, vm[key]) for key in _VM_KEYS if vm.get(key) not in (None, ''))
            for vm in (vms if isinstance(vms, list) else []) if isinstance(vm, dict)]


def _vm_label(vm):
    where = vm.get('socket') or vm.get('domain') or ('%s:%s' % (vm['host'], vm.get('port')) if vm.get('host') else None)
    if vm.get('name') and where:
        return '%s (%s)' % (vm['name'], where)
    return str(vm.get('name') or where or '?')


def audit_summary(audit):
    """One sentence: how a hypervisor was (or would have been) audited."""
    parts = []
    if audit['source'] == 'none':
        return ('not audited; how it would have been is unknown: no discovery ran and the inventory sets none of '
                '%s (role defaults and play variables are not visible to the report)' % ', '.join(_CONFIGURED))
    if audit['source'] != 'gather':
        parts.append('not audited; as %s' % ('discovered before it dropped out' if audit['source'] == 'discovery'
                                             else 'the inventory configures it (role defaults and play variables not visible)'))
    transport = audit.get('transport')
    if audit['source'] == 'gather' and transport is None:
        return ('how its VMs were found was not recorded (a fact gathered by an older qmp.balloon); %d VM%s listed, %d read'
                % (audit['vms_listed'], '' if audit['vms_listed'] == 1 else 's', audit['vms_read']))
    if transport == 'libvirt':
        method = 'libvirt at %s' % (audit.get('libvirt_uri') or 'the default URI')
    elif transport == 'qmp':
        method = 'QMP sockets'
    elif transport == 'auto':
        method = 'transport auto (libvirt when its socket exists and no QMP socket is given, else QMP)'
    elif transport is None and audit['source'] == 'inventory':
        method = 'transport not set in the inventory'
    else:
        method = 'transport %s' % (transport or 'unknown')
    if audit.get('chosen_by_auto'):
        method += ' (chosen by balloon_stats_transport auto)'
    parts.append(method)
    if audit.get('all_domains'):
        parts.append('every active domain')
    if audit.get('explicit_vms'):
        parts.append('explicit VMs: %s' % ', '.join(_vm_label(vm) for vm in audit['explicit_vms']))
    if audit.get('socket_globs'):
        empty = dict((entry.get('glob'), entry) for entry in audit.get('empty_globs') or [])
        globs = []
        for pattern in audit['socket_globs']:
            entry = empty.get(pattern)
            if entry is None:
                globs.append(pattern)
            elif entry.get('directory_exists'):
                globs.append('%s (matched nothing)' % pattern)
            else:
                globs.append('%s (matched nothing: its directory %s does not exist)' % (pattern, entry.get('directory')))
        parts.append('socket globs: %s' % ', '.join(globs))
    if not audit.get('all_domains') and not audit.get('explicit_vms') and not audit.get('socket_globs'):
        parts.append('no VM given (no balloon_stats_vms, no balloon_stats_socket_globs)')
    if audit.get('vms_listed') is not None:
        parts.append('%d VM%s listed, %d read' % (audit['vms_listed'], '' if audit['vms_listed'] == 1 else 's', audit['vms_read']))
    return '; '.join(parts)


def hypervisor_audit(facts, hostvars_host, host_vms):
    """How a hypervisor was audited: from its fact's ``audit`` (the role's gather), else what the
    discovery left on the host, else the inventory's variables, else nothing known."""
    recorded = (facts or {}).get('audit') if isinstance((facts or {}).get('audit'), dict) else None
    audit = {'source': 'none', 'transport': None, 'chosen_by_auto': None, 'socket_globs': [], 'empty_globs': [],
             'explicit_vms': [], 'all_domains': None, 'libvirt_uri': None, 'vms_listed': None, 'vms_read': None}
    if facts and recorded is not None:
        setting = recorded.get('transport_setting')
        audit.update(source='gather', transport=recorded.get('transport'), chosen_by_auto=setting == 'auto',
                     socket_globs=list(recorded.get('socket_globs') or []),
                     explicit_vms=_explicit_vms(recorded.get('vms')), all_domains=bool(recorded.get('all_domains')),
                     libvirt_uri=recorded.get('libvirt_uri'),
                     vms_listed=recorded.get('vms_listed', len(host_vms)),
                     vms_read=recorded.get('vms_read', sum(1 for vm in host_vms if vm.get('reachable', True))))
    elif facts:
        # a fact from before the audit key (an older collection's cache): what the records tell
        audit.update(source='gather', vms_listed=len(host_vms), vms_read=sum(1 for vm in host_vms if vm.get('reachable', True)))
    else:
        discovered = dict((key, _hostvar(hostvars_host, key)) for key in _DISCOVERED)
        configured = dict((key, _hostvar(hostvars_host, key)) for key in _CONFIGURED)
        if discovered['__balloon_stats_transport']:
            audit.update(source='discovery', transport=discovered['__balloon_stats_transport'],
                         chosen_by_auto=configured['balloon_stats_transport'] == 'auto' if configured['balloon_stats_transport'] else None,
                         socket_globs=list(discovered['__balloon_stats_sockets'] or []),
                         explicit_vms=_explicit_vms(discovered['__balloon_stats_targets']),
                         all_domains=bool(discovered['__balloon_stats_all_domains']))
        elif any(value is not None for value in configured.values()):
            audit.update(source='inventory', transport=configured['balloon_stats_transport'],
                         socket_globs=list(configured['balloon_stats_socket_globs'] or []),
                         explicit_vms=_explicit_vms(configured['balloon_stats_vms']))
        if audit['source'] != 'none' and (audit['transport'] in ('libvirt', 'auto') or audit['all_domains']):
            audit['libvirt_uri'] = configured['balloon_stats_libvirt_uri']
    if facts:
        audit['empty_globs'] = [dict((key, entry.get(key)) for key in ('glob', 'directory', 'directory_exists'))
                                for entry in facts.get('empty_globs') or [] if isinstance(entry, dict)]
    audit['summary'] = audit_summary(audit)
    return audit


def _hypervisor_entry(host, facts, hostvars_host, in_play):
    """One hypervisor of the report: its status (ok, unreachable, failed, no_vms), reason and how it was audited."""
    entry, host_vms = _hypervisor_status(host, facts, hostvars_host, in_play)
    # a cached fact left out (stats_from None) does not describe this run's audit either
    entry['audit'] = hypervisor_audit(facts if entry['stats_from'] else None, hostvars_host, host_vms)
    return entry, host_vms


# The condition on which the role's read task (tasks/gather_read.yml) is skipped for a hypervisor
# given no VM; ansible-core names the false condition in the skipped result.
NO_VM_GIVEN_CONDITION = '__balloon_stats_run.has_vms'


def _hypervisor_status(host, facts, hostvars_host, in_play):
    """One hypervisor of the report: its status (ok, unreachable, failed, no_vms) and reason."""
    pending = _hostvar(hostvars_host, '__balloon_stats_check_pending')
    if pending and in_play:
        # check mode, prepare would install first: the role read nothing (its read task was
        # skipped), so a fact from the cache is an earlier run's and is not counted as the fleet's
        reason = CHECK_PENDING_REASON % pending
        if facts:
            reason += '; its last stats (collected at %s, kept in the fact cache) are left out' % (facts.get('collected_at') or 'an unknown time')
        return {'name': host, 'status': 'failed', 'reason': reason, 'vms': 0, 'failed_vms': 0, 'violations': 0,
                'non_compliant': 0, 'unknown': 0, 'collected_at': None, 'stats_from': None}, []
    if not facts:
        # Only a module's result proves that Ansible reached the host (set_fact runs without
        # connecting): unreachable when one says so or none ran, failed when one ran or the
        # role recorded why.
        results = [hostvars_host.get(key) for key in _MODULE_RESULTS if isinstance(hostvars_host.get(key), dict)]
        unreachable = any(result.get('unreachable') for result in results)
        reached = not unreachable and ('__balloon_stats_failure' in hostvars_host
                                       or any(not result.get('skipped') for result in results))
        if in_play and not reached:
            status, reason = 'failed', 'the role did not gather its stats in this play (the report entry point ran alone?)'
        elif reached or in_play:
            status, reason = 'failed', hostvars_host.get('__balloon_stats_failure') or FAILED_REASON
        else:
            status, reason = 'unreachable', UNREACHABLE_REASON
        return {'name': host, 'status': status, 'reason': reason, 'vms': 0, 'failed_vms': 0, 'violations': 0,
                'non_compliant': 0, 'unknown': 0, 'collected_at': None, 'stats_from': None}, []
    info = hostvars_host.get('__balloon_stats_info')
    # A read skipped because no VM was given (gather_read.yml's condition) still means the fact was
    # written in this play (gather_fact.yml runs without a VM); a read skipped for another reason
    # (balloon_stats_gather false, say) leaves the fact of an earlier run.
    gathered_now = isinstance(info, dict) and (
        not info.get('skipped') or NO_VM_GIVEN_CONDITION in str(info.get('false_condition') or ''))
    if not in_play and not gathered_now:
        # The fact is an earlier run's, from the fact cache: this run never read the host, so its
        # old figures are not counted as today's (a report-only play over sliced jobs is in_play).
        entry, none = _hypervisor_status(host, None, hostvars_host, in_play)
        if facts.get('vms'):
            # (a fact without VMs has no stats to leave out: main writes a no_vms fact, then fails the host)
            entry['reason'] += ('; its last stats (collected at %s, kept in the fact cache) are left out'
                                % (facts.get('collected_at') or 'an unknown time'))
        return entry, none
    host_vms = facts.get('vms') or []
    counts = balloon_summary(host_vms)
    status, reason = facts.get('status'), facts.get('reason') or None
    if status not in HYPERVISOR_STATUSES:
        status, reason = ('no_vms', 'no VM found') if not host_vms else ('ok', None)
    if not in_play and status != 'failed':
        status, reason = 'failed', hostvars_host.get('__balloon_stats_failure') or (
            'a task failed on it after its stats were gathered (see that task in the play output); its data is kept')
    return {'name': host, 'status': status, 'reason': reason, 'vms': counts['vms'], 'failed_vms': counts['unreachable'],
            'violations': counts['violations'], 'non_compliant': counts['non_compliant'], 'unknown': counts['unknown'],
            'collected_at': facts.get('collected_at'),
            # this_run, or fact_cache: a play that did not gather (tasks_from report after sliced jobs)
            'stats_from': 'this_run' if gathered_now else 'fact_cache'}, host_vms


def _collection_version():
    """This collection's version, from the installed MANIFEST.json, else the source tree's galaxy.yml."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        with open(os.path.join(root, 'MANIFEST.json')) as handle:
            return json.load(handle)['collection_info']['version']
    except (OSError, ValueError, KeyError):
        pass
    try:
        with open(os.path.join(root, 'galaxy.yml')) as handle:
            for line in handle:
                if line.startswith('version:'):
                    return line.split(':', 1)[1].strip().strip('"\'')
    except OSError:
        pass
    return None


def controller_provenance():
    """Who ran the report, where, with which collection and ansible-core (the controller's own view)."""
    try:
        from ansible.release import __version__ as ansible_core_version
    except ImportError:  # pragma: no cover - ansible-core always has it
        ansible_core_version = None
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = os.environ.get('USER')
    return {'user': user, 'controller': socket.gethostname(), 'collection': 'qmp.balloon',
            'collection_version': _collection_version(), 'ansible_core_version': ansible_core_version}


def _rules_table(hostvars, hosts, fact_name):
    """The rules as the facts recorded them (the first host that has them), for the report's rules table.

    Each rule gets ``thresholds``: the parameters its query compares against, with their values
    (``pressure`` brings the pressure thresholds).
    """
    for host in hosts:
        facts = _plain(_host_fact(hostvars.get(host) or {}, fact_name)) or {}
        if facts.get('rules'):
            parameters = facts.get('parameters') or {}
            table = []
            for rule in facts['rules']:
                query = str(rule.get('query', ''))
                thresholds = dict((name, value) for name, value in parameters.items()
                                  if name != 'pressure' and name in query)
                if 'pressure' in query:
                    thresholds.update(('pressure_' + name, value) for name, value in (parameters.get('pressure') or {}).items())
                entry = {'name': rule.get('name'), 'description': rule.get('description') or rule.get('name'),
                         'query': query, 'severity': rule.get('severity', 'warning'),
                         'severity_query': rule.get('severity_query'), 'always': bool(rule.get('always')),
                         'thresholds': thresholds}
                table.append(entry)
            return table, parameters
    return [], {}


def balloon_report(hostvars, hosts_all, hosts_ok=None, fact_name='balloon_stats', provenance=None, previous=None):
    """The fleet report from each hypervisor's ``balloon_stats`` fact.

    ``hosts_all`` are all hosts of the play; a host not in ``hosts_ok`` or without the
    fact is listed as unreachable or failed, with its reason, never dropped.
    ``provenance``: who ran it, where, with what (copied into the report).
    ``previous``: the previous report (its JSON), for the ``since_last_run`` section.
    """
    hosts_ok = set(hosts_all if hosts_ok is None else hosts_ok)
    hypervisors = []
    vms = []
    for host in hosts_all:
        hostvars_host = hostvars.get(host) or {}
        facts = _plain(_host_fact(hostvars_host, fact_name))
        entry, host_vms = _hypervisor_entry(host, facts, hostvars_host, host in hosts_ok)
        hypervisors.append(entry)
        vms.extend(host_vms)
    violations = [violation for vm in vms for violation in vm.get('compliance', {}).get('violations', [])]
    unknown = [{'hypervisor': vm.get('hypervisor'), 'vm': vm.get('name'), 'rules': vm['compliance'].get('unknown', [])}
               for vm in vms if _state(vm) == 'unknown']
    fleet = balloon_summary(vms)
    by_status = dict((status, [h['name'] for h in hypervisors if h['status'] == status]) for status in HYPERVISOR_STATUSES)
    summary = {
        'hypervisors': len(hypervisors),
        'hypervisors_ok': len(by_status['ok']),
        'hypervisors_unreachable': len(by_status['unreachable']),
        'hypervisors_failed': len(by_status['failed']),
        'hypervisors_no_vms': len(by_status['no_vms']),
        'vms': fleet['vms'],
        'vms_unreachable': fleet['unreachable'],
        'vms_compliant': fleet['compliant'],
        'vms_non_compliant': fleet['non_compliant'],
        'vms_unknown': fleet['unknown'],
        'violations': fleet['violations'],
        'unknown_results': fleet['unknown_results'],
        'by_severity': dict((severity, sum(1 for v in violations if v['severity'] == severity)) for severity in SEVERITIES),
        'by_health': {},
        'by_pressure': fleet['by_pressure'],
    }
    for vm in vms:
        key = vm.get('health') or ('unreachable' if not vm.get('reachable', True) else 'unknown')
        summary['by_health'][key] = summary['by_health'].get(key, 0) + 1
    rules, parameters = _rules_table(hostvars, hosts_all, fact_name)
    origin = controller_provenance()
    origin.update(host_pattern=None, host_pattern_note=HOST_PATTERN_NOTE)
    origin.update(_plain(provenance) or {})
    report = {'schema_version': REPORT_SCHEMA_VERSION, 'generated_at': _now_iso(), 'summary': summary,
              'headline': '', 'severities': list(SEVERITIES), 'rules': rules, 'parameters': parameters,
              'provenance': origin, 'hypervisors': hypervisors, 'vms': vms, 'violations': violations,
              'unknown': unknown}
    report['findings'] = findings(report)
    report['gathered'] = gathered_id(report)
    report['since_last_run'] = since_last_run(report, _plain(previous))
    report['headline'] = headline(report)
    return report


def gathered_id(report):
    """What this report's data was gathered from, as one id: each hypervisor gathered in this run
    with its collection time. Two reports with the same id come from the same run's gathers
    (under strategy free several hypervisors may reach the report step after the last gather);
    None when nothing was gathered in this run (a report from the fact cache)."""
    gathered = sorted((h['name'], h.get('collected_at')) for h in report['hypervisors'] if h.get('stats_from') == 'this_run')
    if not gathered:
        return None
    return hashlib.sha256(json.dumps(gathered).encode('utf-8')).hexdigest()[:16]


def _names(names, limit=5):
    names = list(names)
    shown = ', '.join(names[:limit])
    return shown + (', ...' if len(names) > limit else '')


def headline(report):
    """One line for the fleet: every VM and hypervisor counted in its state, reasons for the hosts that failed."""
    summary = report['summary']
    hypervisors = report['hypervisors']
    parts = ['%d VM%s on %d hypervisor%s' % (summary['vms'], '' if summary['vms'] == 1 else 's',
                                             summary['hypervisors'], '' if summary['hypervisors'] == 1 else 's')]
    problems = []
    for status in ('unreachable', 'failed'):
        hosts = [h for h in hypervisors if h['status'] == status]
        if hosts:
            problems.append('%d %s: %s' % (len(hosts), status, '; '.join('%s (%s)' % (h['name'], h['reason']) for h in hosts)))
    no_vms = [h['name'] for h in hypervisors if h['status'] == 'no_vms']
    if no_vms:
        problems.append('%d without VMs: %s' % (len(no_vms), _names(no_vms)))
    if problems:
        parts[0] += ' (%s)' % '; '.join(problems)
    by_severity = ', '.join('%d %s' % (summary['by_severity'][severity], severity) for severity in report['severities'])
    parts.append('%d compliant, %d non-compliant, %d unknown; %d violations (%s), %d rule results unknown'
                 % (summary['vms_compliant'], summary['vms_non_compliant'], summary['vms_unknown'], summary['violations'],
                    by_severity, summary['unknown_results']))
    return ': '.join(parts) + '.'


def findings(report):
    """What an audit found, without the values that change every run (stats, times, ages).

    Each VM's state and rule results, each hypervisor's status: two runs with equal findings
    mean "the fleet's compliance did not change".
    """
    return {
        'hypervisors': dict((h['name'], h['status']) for h in report['hypervisors']),
        'vms': dict(('%s/%s' % (vm.get('hypervisor'), vm.get('name')),
                     {'state': _state(vm), 'rules': (vm.get('compliance') or {}).get('rules', {}),
                      'pressure': (vm.get('pressure') or {}).get('verdict')})
                    for vm in report['vms']),
    }


def since_last_run(report, previous):
    """New and resolved violations, VMs appeared and disappeared, hypervisors whose status changed.

    Only the hypervisors both runs audited are compared: a run with ``--limit`` (or a play over
    other hosts) neither makes the VMs of the hosts it left out "disappeared" nor, in the next
    full run, their old violations "new". Those hosts are named in ``not_in_previous`` and
    ``not_in_this_run`` instead.
    """
    if not previous or not isinstance(previous, dict) or not previous.get('findings'):
        return {'previous': None, 'changed': True, 'new_violations': [], 'resolved_violations': [],
                'vms_appeared': [], 'vms_disappeared': [], 'state_changes': [], 'hypervisor_changes': [],
                'not_in_previous': [], 'not_in_this_run': [], 'vms_not_compared': []}
    now, before = report['findings'], previous['findings']
    hosts_now, hosts_before = set(now.get('hypervisors', {})), set(before.get('hypervisors', {}))
    # VMs are compared only on hypervisors whose VMs both runs read: the VMs of one that became
    # unreachable (or failed) were not checked, they did not disappear (its status change says it)
    unread = set(host for findings_ in (now, before) for host, status in findings_.get('hypervisors', {}).items()
                 if status in ('unreachable', 'failed'))
    scope = (hosts_now & hosts_before) - unread

    def in_scope(vms):
        return dict((vm, entry) for vm, entry in vms.items() if vm.split('/', 1)[0] in scope)

    vms_now, vms_before = in_scope(now['vms']), in_scope(before.get('vms', {}))

    def failing(vms):
        return set((vm, rule) for vm, entry in vms.items() for rule, result in entry.get('rules', {}).items() if result == 'fail')

    new, old = failing(vms_now), failing(vms_before)
    common = set(vms_now) & set(vms_before)
    both = hosts_now & hosts_before
    hypervisors_now = dict((host, status) for host, status in now['hypervisors'].items() if host in both)
    hypervisors_before = dict((host, status) for host, status in before.get('hypervisors', {}).items() if host in both)
    return {
        'previous': previous.get('generated_at'),
        # the fleet's compliance changed: in the common scope, or the scope itself
        'changed': vms_now != vms_before or hypervisors_now != hypervisors_before or hosts_now != hosts_before,
        'new_violations': [{'vm': vm, 'rule': rule} for vm, rule in sorted(new - old)],
        # a VM that disappeared took its violations along: they are not resolved
        'resolved_violations': [{'vm': vm, 'rule': rule} for vm, rule in sorted(old - new) if vm in common],
        'vms_appeared': sorted(set(vms_now) - set(vms_before)),
        'vms_disappeared': sorted(set(vms_before) - set(vms_now)),
        'state_changes': [{'vm': vm, 'before': vms_before[vm].get('state'), 'after': vms_now[vm]['state']}
                          for vm in sorted(common) if vms_before[vm].get('state') != vms_now[vm]['state']],
        'hypervisor_changes': [{'hypervisor': host, 'before': hypervisors_before.get(host), 'after': status}
                               for host, status in sorted(hypervisors_now.items())
                               if hypervisors_before.get(host) != status],
        'not_in_previous': sorted(hosts_now - hosts_before),
        'not_in_this_run': sorted(hosts_before - hosts_now),
        # in both runs, but unreachable or failed in one: their VMs were not compared
        'vms_not_compared': sorted(both - scope),
    }


#: A text cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
_CSV_FORMULA = ('=', '+', '-', '@', '\t', '\r')


def _csv_value(value):
    """CSV cells: booleans as true/false (not Python's True/False), null as empty; text that a
    spreadsheet would run as a formula (a VM named =HYPERLINK(...)) gets a leading quote."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str) and value.startswith(_CSV_FORMULA):
        return "'" + value
    return '' if value is None else value


def _swap_rate(vm_rates):
    if vm_rates.get('swap_in') is None and vm_rates.get('swap_out') is None:
        return None
    return (vm_rates.get('swap_in') or 0) + (vm_rates.get('swap_out') or 0)


def unavailable_percent(vm):
    """The report's used %: 100 - available %, null when available is unknown (also for older records)."""
    if 'unavailable_percent' in vm:
        return vm['unavailable_percent']
    available = vm.get('available_percent')
    return None if available is None else round(100.0 - available, 1)


def balloon_report_csv(report):
    """One CSV row per VM (RFC 4180, header first), and one per hypervisor without VM records
    (unreachable, failed, no_vms: hypervisor, status and reason, the VM columns empty)."""
    report = _plain(report)
    columns = CSV_COLUMNS + CSV_COLUMNS_STATES + CSV_COLUMNS_AUDIT
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(columns)
    by_host = {}
    for vm in report.get('vms', []):
        by_host.setdefault(vm.get('hypervisor'), []).append(vm)
    hypervisors = list(report.get('hypervisors') or [])
    known = set(h.get('name') for h in hypervisors)
    # VMs of a hypervisor the report does not list (a hand-made report): after the others, as before
    hypervisors += [{'name': host} for host in by_host if host not in known]
    for hypervisor in hypervisors:
        audit = hypervisor.get('audit') or {}
        where = (hypervisor.get('status'), hypervisor.get('reason'), audit.get('transport'), audit.get('summary'))
        host_vms = by_host.get(hypervisor.get('name'), [])
        if not host_vms:
            writer.writerow([_csv_value(value) for value in (hypervisor.get('name'),) + ('',) * (len(columns) - 1 - len(where)) + where])
            continue
        for vm in host_vms:
            stats = vm.get('stats') or {}
            compliance = vm.get('compliance') or {}
            vm_rates = vm.get('rates') or {}
            vm_pressure = vm.get('pressure') or {}
            writer.writerow([_csv_value(value) for value in (
                vm.get('hypervisor'), vm.get('name'), vm.get('reachable'), vm.get('health'), vm.get('vm_status'),
                vm.get('polling_interval'), vm.get('expected_interval'), vm.get('age'),
                stats.get('total_memory'), stats.get('free_memory'), stats.get('available_memory'),
                unavailable_percent(vm), vm.get('available_percent'), compliance.get('compliant'),
                ' '.join(v['rule'] for v in compliance.get('violations', [])), vm.get('error'),
                _state(vm), ' '.join(compliance.get('unknown', [])), vm_pressure.get('verdict'),
                vm_pressure.get('headroom_percent'), vm_rates.get('major_faults'), _swap_rate(vm_rates), vm.get('advice'),
            ) + where])
    return out.getvalue()


#: A timestamped report of the role: NAME-YYYYMMDDTHHMMSSZ.json
_STAMPED_JSON = re.compile(r'-(\d{8}T\d{6}Z)[.]json$')


def _report_changed(path):
    """Whether a report's findings changed since the run before it (its since_last_run.changed).

    A file that cannot be read, or says nothing (an older layout), counts as changed: kept, never
    lost by mistake.
    """
    try:
        with open(path) as handle:
            since = json.load(handle).get('since_last_run') or {}
    except (OSError, ValueError, AttributeError):
        return True
    return since.get('changed') is not False


def balloon_report_rotation(paths, keep):
    """Which timestamped runs of a report to keep: the newest ``keep`` whose findings changed, and the newest.

    ``paths``: the runs' JSON files (``NAME-YYYYMMDDTHHMMSSZ.json``; other names are ignored);
    ``keep`` 0 keeps all. An unchanged run older than the newest is removed: on a short schedule
    the runs that found nothing new no longer push the real changes out. Returns ``{'keep': [stamps],
    'remove': [stamps], 'unchanged': [stamps removed because nothing changed in them]}``, oldest first;
    only the files needed are read (newest first, until ``keep`` changed runs are found).
    """
    if isinstance(paths, str) or not isinstance(paths, (list, tuple)):
        raise AnsibleFilterError('balloon_report_rotation expects a list of report paths, got %s' % type(paths).__name__)
    try:
        keep = int(keep)
    except (TypeError, ValueError):
        raise AnsibleFilterError('balloon_report_rotation: keep must be an integer, got %r' % (keep,))
    runs = {}
    for path in _plain(paths):
        match = _STAMPED_JSON.search(str(path))
        if match:
            runs[match.group(1)] = str(path)
    stamps = sorted(runs)
    if keep <= 0 or not stamps:
        return {'keep': stamps, 'remove': [], 'unchanged': []}
    kept, unchanged = [stamps[-1]], []
    changed = 1 if _report_changed(runs[stamps[-1]]) else 0
    for stamp in reversed(stamps[:-1]):
        if changed >= keep:
            break
        if _report_changed(runs[stamp]):
            kept.append(stamp)
            changed += 1
        else:
            unchanged.append(stamp)
    return {'keep': sorted(kept), 'remove': [stamp for stamp in stamps if stamp not in kept], 'unchanged': sorted(unchanged)}
