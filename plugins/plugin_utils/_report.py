# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet report: the filter ``balloon_report`` assembles it from every hypervisor's facts,
with each hypervisor's status and how it was audited, the rules table, the provenance, the
headline, the findings and what changed since the last run. The action balloon_stats_report
also takes the play's provenance (``play_provenance``) and the gate's decision (``gate``) from here.

PRIVATE: not part of the collection's public API.

A hypervisor is ``ok``, ``unreachable``, ``failed`` (with its reason) or ``no_vms``.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Mapping

from ansible_collections.qmp.balloon.plugins.plugin_utils._audit import hypervisor_audit
from ansible_collections.qmp.balloon.plugins.plugin_utils._facts import run_id
from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain
from ansible_collections.qmp.balloon.plugins.plugin_utils._records import balloon_summary, vm_state
from ansible_collections.qmp.balloon.plugins.plugin_utils._rules import SEVERITIES


#: Version of the report's JSON layout; bump on any incompatible change.
#: 2 (issue 14): rule results pass/fail/unknown, VM and hypervisor states, rates, pressure.
REPORT_SCHEMA_VERSION = 2
#: A hypervisor's status.
HYPERVISOR_STATUSES = ('ok', 'unreachable', 'failed', 'no_vms')

#: Ansible tells roles the play's name and its hosts, not the host pattern they came from.
HOST_PATTERN_NOTE = ("Ansible does not expose the play's host pattern to roles; the play's name (an unnamed play is "
                     "named after its pattern), its resolved hosts, --limit and the tags are recorded instead")


def _now_iso():
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


#: Why a host has no fact of this run: Ansible tells the report which hosts dropped out of the
#: play, not why; the role records every failure of its own in the fact's outcome.
UNREACHABLE_REASON = 'Ansible could not connect to it, so none of its VMs was read'
FAILED_REASON = 'a task failed on it before its stats were gathered (see that task in the play output), so none of its VMs was read'
NOT_GATHERED_REASON = 'the role did not gather its stats in this play (the report entry point ran alone?)'
FAILED_AFTER_REASON = 'a task failed on it after its stats were gathered (see that task in the play output); its data is kept'


def _host_fact(hostvars_host, fact_name):
    """A host's cacheable fact: from ``ansible_facts`` first (the fact cache, and ansible-core's
    INJECT_FACTS_AS_VARS off, the default to come), else the variable set_fact also sets."""
    facts = hostvars_host.get('ansible_facts') if 'ansible_facts' in hostvars_host else None
    if isinstance(facts, Mapping) and facts.get(fact_name):
        return facts.get(fact_name)
    return hostvars_host.get(fact_name)


def _hypervisor_entry(host, facts, hostvars_host, in_play, run):
    """One hypervisor of the report: its status (ok, unreachable, failed, no_vms), reason and how it was audited."""
    entry, host_vms = hypervisor_status(host, facts, in_play, run)
    # a cached fact left out (stats_from None) does not describe this run's audit either
    entry['audit'] = hypervisor_audit(facts if entry['stats_from'] else None, hostvars_host, host_vms)
    return entry, host_vms


def _left_out(facts):
    """What the report says of the stats an old fact holds, which it does not count."""
    if facts and facts.get('vms'):
        return '; its last stats (collected at %s, kept in the fact cache) are left out' % (facts.get('collected_at') or 'an unknown time')
    return ''


def _entry(host, status, reason, host_vms=(), collected_at=None, stats_from=None):
    counts = balloon_summary(list(host_vms))
    return {'name': host, 'status': status, 'reason': reason, 'vms': counts['vms'], 'failed_vms': counts['unreachable'],
            'violations': counts['violations'], 'non_compliant': counts['non_compliant'], 'unknown': counts['unknown'],
            'collected_at': collected_at, 'stats_from': stats_from}


def hypervisor_status(host, facts, in_play, run):
    """One hypervisor of the report, from its public fact alone: ``(entry, VM records counted)``.

    ``in_play``: the host is still in the play (not failed, not unreachable); ``run``: this run's id
    (plugin_utils/_facts.py, run_id). The fact's ``run`` is the run that read its stats, its
    ``outcome.run`` the run that last gave the hypervisor an outcome (a failure the role recorded,
    or the read itself).
    """
    facts = facts if isinstance(facts, dict) else None
    if not facts:
        if in_play:
            return _entry(host, 'failed', NOT_GATHERED_REASON), []
        return _entry(host, 'unreachable', UNREACHABLE_REASON), []
    outcome = facts.get('outcome') if isinstance(facts.get('outcome'), dict) else {}
    outcome_now = outcome.get('run') is not None and outcome.get('run') == run
    read_now = facts.get('run') is not None and facts.get('run') == run
    failed_before_read = outcome.get('status') == 'failed' and outcome.get('run') != facts.get('run')
    if failed_before_read and (outcome_now or in_play):
        # the last outcome is a failure before its stats were read (this run's, or the cached one of a
        # report-only play): the stats the fact still holds are an earlier run's
        return _entry(host, 'failed', (outcome.get('reason') or FAILED_REASON) + _left_out(facts)), []
    if not read_now and not in_play:
        # dropped out of this run before the role recorded anything: the fact is an earlier run's
        return _entry(host, 'unreachable', UNREACHABLE_REASON + _left_out(facts)), []
    host_vms = facts.get('vms') or []
    status, reason = facts.get('status'), facts.get('reason') or None
    if status not in HYPERVISOR_STATUSES:
        status, reason = ('no_vms', 'no VM found') if not host_vms else ('ok', None)
    if outcome.get('status') == 'failed':
        # failed after its stats were read (its data counts): the sentence the role recorded, in this
        # run or (a report-only play over the fact cache) in the run that read them
        status, reason = 'failed', outcome.get('reason') or FAILED_AFTER_REASON
    elif not in_play and status != 'failed':
        status, reason = 'failed', FAILED_AFTER_REASON
    # this_run, or fact_cache: a play that did not gather (tasks_from report after sliced jobs)
    return _entry(host, status, reason, host_vms, facts.get('collected_at'), 'this_run' if read_now else 'fact_cache'), host_vms


def waiting_for(hostvars, play_hosts, fact_name='balloon_stats'):
    """The hosts still in the play that have no outcome of this run while others have: under strategy
    free the report waits for them (the last hypervisor to finish writes it). None when all or none
    have one (a report-only play over the fact cache has none)."""
    run = run_id()
    done = []
    for host in play_hosts:
        facts = _plain(_host_fact(hostvars.get(host) or {}, fact_name))
        outcome = facts.get('outcome') if isinstance(facts, dict) and isinstance(facts.get('outcome'), dict) else {}
        done.append(outcome.get('run') == run)
    if any(done) and not all(done):
        return [host for host, finished in zip(play_hosts, done) if not finished]
    return []


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
    run = run_id()
    hypervisors = []
    vms = []
    for host in hosts_all:
        hostvars_host = hostvars.get(host) or {}
        facts = _plain(_host_fact(hostvars_host, fact_name))
        entry, host_vms = _hypervisor_entry(host, facts, hostvars_host, host in hosts_ok, run)
        hypervisors.append(entry)
        vms.extend(host_vms)
    violations = [violation for vm in vms for violation in vm.get('compliance', {}).get('violations', [])]
    unknown = [{'hypervisor': vm.get('hypervisor'), 'vm': vm.get('name'), 'rules': vm['compliance'].get('unknown', [])}
               for vm in vms if vm_state(vm) == 'unknown']
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


def play_provenance(task_vars, check_mode):
    """What the play tells the report about itself: check mode, the play's name and hosts, --limit, the tags,
    the inventory sources, the playbook's directory and ansible-core's version (``balloon_report`` adds the
    user, the controller and the collection's version)."""
    version = task_vars.get('ansible_version')
    return {
        'check_mode': bool(check_mode),
        'play': task_vars.get('ansible_play_name'),
        'hosts': list(task_vars.get('ansible_play_hosts_all') or []),
        'limit': task_vars.get('ansible_limit'),
        'tags': list(task_vars.get('ansible_run_tags') or []),
        'skip_tags': list(task_vars.get('ansible_skip_tags') or []),
        'inventory': list(task_vars.get('ansible_inventory_sources') or []),
        'playbook_dir': task_vars.get('playbook_dir'),
        'ansible_version': version.get('full') if isinstance(version, Mapping) else None,
    }


#: The hypervisor statuses that mean "not audited" to the gate.
NOT_AUDITED = ('unreachable', 'failed')


def gate(report, fail_on_violation=False, fail_on_unknown=False):
    """Whether the run fails on its report, and the one sentence that says why.

    ``fail_on_violation``: every rule violation, and every hypervisor not audited (unreachable or
    failed); ``fail_on_unknown``: every VM with a rule that could not be judged. Returns
    ``{'failed': bool, 'msg': str}``, ``msg`` empty when it does not fail.
    """
    violations = list(report.get('violations') or []) if fail_on_violation else []
    not_audited = ([h for h in report.get('hypervisors') or [] if h.get('status') in NOT_AUDITED]
                   if fail_on_violation else [])
    unknown = list(report.get('unknown') or []) if fail_on_unknown else []
    parts = []
    if violations:
        parts.append('%d compliance violations: %s' % (len(violations), '; '.join(
            '%s/%s: %s (%s)' % (v.get('hypervisor'), v.get('vm'), v.get('rule'), v.get('severity')) for v in violations)))
    if not_audited:
        parts.append('%d hypervisor%s not audited: %s' % (len(not_audited), 's' if len(not_audited) > 1 else '', '; '.join(
            'hypervisor %s %s: %s' % (h.get('name'), h.get('status'), h.get('reason')) for h in not_audited)))
    parts.extend('%s/%s: unknown (%s could not be judged)' % (vm.get('hypervisor'), vm.get('vm'), ', '.join(vm.get('rules') or []))
                 for vm in unknown)
    return {'failed': bool(parts), 'msg': '; '.join(parts)}


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
    """One line for the fleet: every VM and hypervisor counted in its state, reasons for the hosts that failed,
    and the VMs that could not be read (their count is the summary's ``vms_unreachable``)."""
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
    unread = summary['vms_unreachable']
    if unread:
        # VMs counted above whose read failed (the summary's count); each one's reason is in the files
        problems.append('%d VM%s could not be read: %s' % (unread, '' if unread == 1 else 's', _names(
            '%s/%s' % (vm.get('hypervisor'), vm.get('name')) for vm in report['vms'] if not vm.get('reachable', True))))
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
                     {'state': vm_state(vm), 'rules': (vm.get('compliance') or {}).get('rules', {}),
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
