# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The compliance rules: their checks and compilation (rules are JMESPath expressions, data not
code), and their evaluation on a VM record.

PRIVATE: not part of the collection's public API.

A rule is ``pass``, ``fail`` or ``unknown`` (its inputs are missing).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False


#: Rule severities, most severe first. The report carries this order (``severities``) for its
#: HTML template, which ranks each VM by its worst violation.
SEVERITIES = ('critical', 'warning', 'info')
#: A rule's result.
RULE_RESULTS = ('pass', 'fail', 'unknown')
#: balloon_stats_interval_rule: polling on and at most the expected interval, or exactly it.
INTERVAL_RULES = ('at_most', 'exact')
#: The health the modules give a VM without a balloon device (issue 13): no stats, no interval.
NO_BALLOON = 'no_balloon_device'


#: The keys a rule may have: a misspelt one (``sevrity``) would silently change nothing.
RULE_KEYS = ('name', 'query', 'severity', 'severity_query', 'description', 'always')


def check_rules(rules):
    """The rules (dicts with name, query and optionally severity, severity_query, description, always)
    checked and compiled, in order; a bad rule is refused with an AnsibleFilterError naming it."""
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
        unknown = sorted(str(key) for key in rule if key not in RULE_KEYS)
        if unknown:
            raise AnsibleFilterError('rule %r: unknown key%s %s (a rule has %s)'
                                     % (name, '' if len(unknown) == 1 else 's', ', '.join(unknown), ', '.join(RULE_KEYS)))
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


def inputs_missing(record, rule):
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
        if inputs_missing(record, rule):
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
