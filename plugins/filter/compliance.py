# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compliance and report filters of qmp.balloon (controller side).

- ``balloon_compliance``: turns balloon_stats_info's ``vms`` into VM records with
  rule results (rules are JMESPath expressions, data not code).
- ``balloon_report``: assembles the fleet report from every hypervisor's facts.
- ``balloon_summary``: the counts of one hypervisor's VM records (the role's fact), the
  same counts the report makes per hypervisor and for the fleet.
- ``balloon_report_csv``: one CSV row per VM, for spreadsheets.
"""

from __future__ import annotations

import csv
import datetime
import io

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False

#: Version of the report's JSON layout; bump on any incompatible change.
REPORT_SCHEMA_VERSION = 1
#: Rule severities, most severe first. The report carries this order (``severities``) for its
#: HTML template, which ranks each VM by its worst violation.
SEVERITIES = ('critical', 'warning', 'info')

#: Fields copied from a balloon_stats_info result into a VM record.
_RECORD_FIELDS = ('name', 'endpoint', 'qom_path', 'health', 'vm_status', 'polling_interval', 'age',
                  'last_update', 'last_update_iso', 'stats', 'unsupported', 'used_memory', 'used_percent')

CSV_COLUMNS = ('hypervisor', 'vm', 'reachable', 'health', 'vm_status', 'polling_interval', 'expected_interval',
               'age', 'total_memory', 'free_memory', 'available_memory', 'used_percent', 'available_percent',
               'compliant', 'violations', 'error')


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
            raise AnsibleFilterError('rule %d must be a dict with name and query, got %r' % (index, rule))
        name, query = rule.get('name'), rule.get('query')
        if not name or not isinstance(name, str):
            raise AnsibleFilterError('rule %d has no name' % index)
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
        compiled.append({'name': str(name), 'severity': severity, 'query': str(query), 'expression': expression,
                         'description': str(rule.get('description') or name), 'always': bool(rule.get('always'))})
    return compiled


def _percent(part, whole):
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 1)


def vm_record(vm, hypervisor=None, expected_interval=None, min_available_percent=None):
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
        min_available_percent=min_available_percent,
    )
    return record


def evaluate(record, rules):
    """Apply compiled rules to a record. A rule passes when its query is true; null means unknown.

    For an unreachable VM only rules marked ``always`` are evaluated; the others are unknown.
    """
    results = {}
    violations = []
    for rule in rules:
        if not record['reachable'] and not rule['always']:
            results[rule['name']] = None
            continue
        try:
            value = rule['expression'].search(record)
        except jmespath.exceptions.JMESPathError as exc:
            raise AnsibleFilterError('rule %r failed on VM %r: %s' % (rule['name'], record.get('name'), exc))
        outcome = None if value is None else bool(value)
        results[rule['name']] = outcome
        if outcome is False:
            violations.append({'rule': rule['name'], 'severity': rule['severity'], 'description': rule['description'],
                               'hypervisor': record.get('hypervisor'), 'vm': record.get('name')})
    return {'compliant': not violations, 'rules': results, 'violations': violations}


def balloon_compliance(vms, rules=None, hypervisor=None, expected_interval=None, min_available_percent=None):
    """Records with compliance for every VM of a balloon_stats_info result (its ``vms``)."""
    if not isinstance(vms, list):
        raise AnsibleFilterError('balloon_compliance expects the vms list of balloon_stats_info, got %s' % type(vms).__name__)
    compiled = _check_rules(_plain(rules))
    records = []
    for vm in vms:
        record = vm_record(vm, hypervisor, expected_interval, min_available_percent)
        record['compliance'] = evaluate(record, compiled)
        records.append(record)
    return records


def balloon_summary(records):
    """The counts of a list of VM records (one hypervisor's, or the fleet's): vms, unreachable, compliant, violations."""
    records = _plain(records)
    return {
        'vms': len(records),
        'unreachable': sum(1 for vm in records if not vm.get('reachable', True)),
        'compliant': sum(1 for vm in records if vm.get('compliance', {}).get('compliant')),
        'violations': sum(len(vm.get('compliance', {}).get('violations', [])) for vm in records),
    }


def balloon_report(hostvars, hosts_all, hosts_ok=None, fact_name='balloon_stats'):
    """The fleet report from each hypervisor's ``balloon_stats`` fact.

    ``hosts_all`` are all hosts of the play; a host not in ``hosts_ok`` or without the
    fact is listed as unreachable or failed, never dropped.
    """
    hosts_ok = set(hosts_all if hosts_ok is None else hosts_ok)
    hypervisors = []
    vms = []
    for host in hosts_all:
        facts = _plain((hostvars.get(host) or {}).get(fact_name))
        if not facts:
            # Ansible tells templates which hosts dropped out, not why: without the fact the host
            # was unreachable or failed before its stats were gathered.
            hypervisors.append({'name': host, 'status': 'unreachable' if host not in hosts_ok else 'not_gathered',
                                'vms': 0, 'failed_vms': 0, 'violations': 0, 'collected_at': None})
            continue
        host_vms = facts.get('vms') or []
        counts = balloon_summary(host_vms)
        if host not in hosts_ok:
            status = 'failed'   # gathered, then failed later in the play: keep its data
        else:
            status = 'no_vms' if not host_vms else ('vm_errors' if counts['unreachable'] else 'ok')
        hypervisors.append({'name': host, 'status': status, 'vms': counts['vms'], 'failed_vms': counts['unreachable'],
                            'violations': counts['violations'], 'collected_at': facts.get('collected_at')})
        vms.extend(host_vms)
    violations = [violation for vm in vms for violation in vm.get('compliance', {}).get('violations', [])]
    fleet = balloon_summary(vms)
    summary = {
        'hypervisors': len(hypervisors),
        'hypervisors_unreachable': sum(1 for h in hypervisors if h['status'] in ('unreachable', 'not_gathered')),
        'hypervisors_failed': sum(1 for h in hypervisors if h['status'] == 'failed'),
        'vms': fleet['vms'],
        'vms_unreachable': fleet['unreachable'],
        'vms_compliant': fleet['compliant'],
        'violations': fleet['violations'],
        'by_severity': dict((severity, sum(1 for v in violations if v['severity'] == severity)) for severity in SEVERITIES),
        'by_health': {},
    }
    for vm in vms:
        key = vm.get('health') or ('unreachable' if not vm.get('reachable', True) else 'unknown')
        summary['by_health'][key] = summary['by_health'].get(key, 0) + 1
    summary['vms_non_compliant'] = summary['vms'] - summary['vms_compliant']
    return {'schema_version': REPORT_SCHEMA_VERSION, 'generated_at': _now_iso(), 'summary': summary,
            'severities': list(SEVERITIES), 'hypervisors': hypervisors, 'vms': vms, 'violations': violations}


def balloon_report_csv(report):
    """One CSV row per VM (RFC 4180, header first)."""
    report = _plain(report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(CSV_COLUMNS)
    for vm in report.get('vms', []):
        stats = vm.get('stats') or {}
        compliance = vm.get('compliance') or {}
        writer.writerow([
            vm.get('hypervisor'), vm.get('name'), vm.get('reachable'), vm.get('health'), vm.get('vm_status'),
            vm.get('polling_interval'), vm.get('expected_interval'), vm.get('age'),
            stats.get('total_memory'), stats.get('free_memory'), stats.get('available_memory'),
            vm.get('used_percent'), vm.get('available_percent'), compliance.get('compliant'),
            ' '.join(v['rule'] for v in compliance.get('violations', [])), vm.get('error'),
        ])
    return out.getvalue()


class FilterModule(object):

    def filters(self):
        return {
            'balloon_compliance': balloon_compliance,
            'balloon_report': balloon_report,
            'balloon_summary': balloon_summary,
            'balloon_report_csv': balloon_report_csv,
        }
