# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fact ``balloon_stats`` of one hypervisor, built from a balloon_stats_info result.

PRIVATE: not part of the collection's public API.

Used by the action plugin balloon_stats_facts (plugins/action/balloon_stats_facts.py): its
options beyond the modules' common ones, which VMs to read (``plan``), and the fact with its
outcome (``build_fact``). Every decision here is a plain function with a unit test.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import os
import shlex
import socket

from ansible import constants as C
from ansible.errors import AnsibleError

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain
from ansible_collections.qmp.balloon.plugins.plugin_utils._pressure import DEFAULT_PRESSURE
from ansible_collections.qmp.balloon.plugins.plugin_utils._records import balloon_compliance, balloon_summary
from ansible_collections.qmp.balloon.plugins.plugin_utils._rules import INTERVAL_RULES, check_rules

INVALID = 'Invalid input, nothing was read: '

#: The rules every fact is judged by unless ``builtin_rules`` replaces them; the role's default
#: balloon_stats_builtin_rules is the same list (a unit test keeps them equal).
BUILTIN_RULES = [
    {'name': 'reachable', 'description': 'The VM could be read (its QMP monitor, or libvirt)', 'query': 'reachable',
     'severity': 'critical', 'always': True},
    {'name': 'polling_interval',
     'description': ('Polling runs: at most the expected interval (balloon_stats_interval_rule at_most, so Proxmox\'s 2 s '
                     'passes), or exactly it (exact); an expected interval of 0 means polling off'),
     'query': ("(interval_rule == 'exact' && polling_interval == expected_interval) "
               "|| (interval_rule == 'at_most' && expected_interval == `0` && polling_interval == `0`) "
               "|| (interval_rule == 'at_most' && polling_interval > `0` && polling_interval <= expected_interval)"),
     'severity': 'critical'},
    {'name': 'driver_reporting', 'description': "The guest's balloon driver has reported statistics at least once",
     'query': 'last_update > `0`', 'severity': 'critical'},
    {'name': 'data_fresh', 'description': 'The statistics are fresh (not older than 3 polling intervals)',
     'query': "health == 'ok'", 'severity': 'warning'},
    {'name': 'min_available_memory',
     'description': 'Available memory is at least balloon_stats_min_available_percent of the total',
     'query': 'available_percent >= min_available_percent', 'severity': 'warning'},
    {'name': 'memory_pressure',
     'description': ('The guest is not under memory pressure (critical when high: headroom below '
                     'balloon_stats_pressure_headroom_high with major faults or swap traffic above their thresholds, or an '
                     'OOM kill; warning when moderate)'),
     'query': "(pressure.verdict != 'unknown' || `null`) && pressure.verdict == 'none'",
     'severity': 'critical', 'severity_query': "pressure.verdict == 'high' && 'critical' || 'warning'"},
]

#: The options of balloon_stats_facts beyond the modules' common ones (module_utils/_options.py).
ARGUMENT_SPEC = dict(
    transport=dict(type='str', default='auto', choices=['auto', 'qmp', 'libvirt']),
    libvirt_sockets=dict(type='list', elements='path',
                         default=['/var/run/libvirt/libvirt-sock', '/var/run/libvirt/virtqemud-sock']),
    hypervisor=dict(type='str'),
    expected_interval=dict(type='int', default=10),
    interval_rule=dict(type='str', default='at_most', choices=list(INTERVAL_RULES)),
    min_available_percent=dict(type='float', default=10.0),
    pressure=dict(type='dict', apply_defaults=True, options=dict(
        (name, dict(type='float', default=value)) for name, value in DEFAULT_PRESSURE.items())),
    rules=dict(type='list', elements='dict', default=[]),
    builtin_rules=dict(type='list', elements='dict'),
    # a VM that cannot be read is a record (reachable false, rule reachable fails), not the task's failure
    fail_on_error=dict(type='bool', default=False),
    failure=dict(type='dict', options=dict(reason=dict(type='str', required=True), stage=dict(type='str', default='gather'))),
    # the role balloon_stats's plan instead of a read (plugins/plugin_utils/_role_plan.py)
    role=dict(type='dict'),
)

#: Options that ask for QMP sockets, and for libvirt domains.
_QMP_SELECTION = ('socket', 'host', 'sockets')
_LIBVIRT_SELECTION = ('domain', 'all_domains')


def option_problems(params, given=()):
    """One sentence per option out of its range (the spec checks the types); ``given``: the options the
    task gave."""
    problems = []
    if 'allow_empty' in given:
        problems.append('allow_empty does not apply to balloon_stats_facts: a glob that matches nothing makes a hypervisor '
                        'without VMs (outcome no_vms), or a failed one when its directory does not exist')
    pressure = params['pressure'] or {}
    for label, value in (('min_available_percent', params['min_available_percent']),
                         ('pressure.headroom_high', pressure['headroom_high']),
                         ('pressure.headroom_moderate', pressure['headroom_moderate'])):
        if not 0 <= value <= 100:   # also NaN
            problems.append('%s must be a percentage from 0 to 100, got %s' % (label, value))
    if pressure['headroom_high'] > pressure['headroom_moderate']:
        problems.append('pressure.headroom_high (%s) must not be above pressure.headroom_moderate (%s): high pressure is '
                        'the lower headroom' % (pressure['headroom_high'], pressure['headroom_moderate']))
    for name in ('major_faults', 'swap_bytes'):
        if not pressure[name] >= 0 or math.isinf(pressure[name]):
            problems.append('pressure.%s must be 0 or more, got %s' % (name, pressure[name]))
    if params['expected_interval'] < 0:
        problems.append('expected_interval must be 0 or more seconds, got %s' % params['expected_interval'])
    return problems


def rules_of(params):
    """The rules the fact is judged by: the built-in ones (or ``builtin_rules``), then ``rules``."""
    builtin = BUILTIN_RULES if params['builtin_rules'] is None else params['builtin_rules']
    return plain(builtin) + plain(params['rules'] or [])


def libvirt_lookup_script(paths, prefix=''):
    """A shell loop printing, one line each after ``prefix``, the ``paths`` that exist on the host (a
    dangling symlink counts, as with stat)."""
    return ('for path in %s; do if [ -e "$path" ] || [ -L "$path" ]; then printf "%s%%s\\n" "$path"; fi; done'
            % (' '.join(shlex.quote(str(path)) for path in paths), prefix))


def choose_transport(params, lookup):
    """The transport: qmp or libvirt as given; ``auto``: QMP when a socket, a TCP monitor or a glob is
    given, libvirt when a domain is, else libvirt when one of ``libvirt_sockets`` exists on the host
    (``lookup(paths)`` returns those that do), else QMP (and then no VM is given)."""
    if params['transport'] != 'auto':
        return params['transport']
    targets = params['targets'] or []
    if any(params.get(key) for key in _QMP_SELECTION) or any(not target.get('domain') for target in targets):
        return 'qmp'
    if any(params.get(key) for key in _LIBVIRT_SELECTION) or targets:
        return 'libvirt'
    return 'libvirt' if params['libvirt_sockets'] and lookup(params['libvirt_sockets']) else 'qmp'


def plan(params, given, lookup):
    """What to read: ``transport``, ``socket_globs``, ``all_domains`` and ``module_args`` (the
    balloon_stats_info arguments; None when no VM is given, so no module call is made).

    ``given``: the common options the task gave (only those go to the module). A glob that matches
    nothing is a hypervisor without VMs here (``allow_empty``); the outcome says why.
    """
    try:
        check_rules(rules_of(params))
    except AnsibleError as exc:
        raise AnsibleError(INVALID + str(exc))
    looked = []

    def looking(paths):
        looked.extend(paths)
        return lookup(paths)
    transport = choose_transport(params, looking)
    args = dict((key, value) for key, value in given.items()
                if key not in ('transport', 'allow_empty', 'all_domains', 'libvirt_uri'))
    args['transport'] = transport
    args['fail_on_error'] = params['fail_on_error']
    single = any(params.get(key) for key in ('socket', 'host', 'domain'))
    socket_globs = list(params['sockets'] or []) if transport == 'qmp' else []
    all_domains = transport == 'libvirt' and (params['all_domains'] or (not single and not params['targets']))
    # libvirt_uri is the libvirt case's URI: with QMP it is not used (the role always passes its own)
    if transport == 'libvirt':
        args['libvirt_uri'] = params['libvirt_uri'] or 'qemu:///system'
        if all_domains:
            args['all_domains'] = True
    if socket_globs:
        args['allow_empty'] = True
    has_vms = single or bool(params['targets']) or bool(socket_globs) or all_domains
    return {'transport': transport, 'transport_setting': params['transport'], 'socket_globs': socket_globs,
            'all_domains': all_domains, 'libvirt_uri': args.get('libvirt_uri'), 'libvirt_sockets_looked_for': looked,
            'module_args': args if has_vms else None}


def _no_vm_where(plan_, empty_globs):
    """Why a hypervisor has no VM, after ``no VM found``."""
    if plan_['all_domains']:
        return 'libvirt at %s has no active domain' % plan_['libvirt_uri']
    missing = [entry for entry in empty_globs if not entry.get('directory_exists')]
    if missing:
        return '; '.join('%s matches nothing: the directory %s does not exist on this host' % (entry['glob'], entry['directory'])
                         for entry in missing)
    if not plan_['socket_globs'] and plan_.get('libvirt_sockets_looked_for'):
        return 'no socket glob is given, and libvirt is not there (none of %s exists)' % ', '.join(plan_['libvirt_sockets_looked_for'])
    if not plan_['socket_globs']:
        return 'no socket glob is given'
    return 'no socket matches %s' % ', '.join(plan_['socket_globs'])


def outcome(records, empty_globs, plan_):
    """The hypervisor's status (ok, no_vms, failed) and reason: a glob whose directory does not exist
    (a typo, another platform's path) fails it, never a silent no_vms; VMs other globs found are still read."""
    missing = [entry for entry in empty_globs if not entry.get('directory_exists')]
    if missing:
        return {'status': 'failed', 'reason': '; '.join(entry.get('msg') or '' for entry in missing), 'stage': 'gather'}
    if records:
        return {'status': 'ok', 'reason': '', 'stage': 'gather'}
    return {'status': 'no_vms', 'reason': 'no VM found (%s)' % _no_vm_where(plan_, empty_globs), 'stage': 'gather'}


def run_id():
    """This ansible-playbook run, as the same string in each of its workers: the controller and the
    run's private temporary directory (ansible-core makes one per process, named after its PID, and
    its workers inherit it)."""
    return hashlib.sha1(('%s %s' % (socket.gethostname(), os.path.basename(C.DEFAULT_LOCAL_TMP))).encode()).hexdigest()[:16]


def _now():
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def build_fact(read, params, plan_, hypervisor, previous=None, collected_at=None):
    """The fact ``balloon_stats``: ``read`` is balloon_stats_info's result, ``previous`` the fact
    of the previous gather (its VM samples give the rates)."""
    read = plain(read) or {}
    vms = read.get('vms') or []
    rules = rules_of(params)
    pressure = dict((name, float(value)) for name, value in params['pressure'].items())
    previous = plain(previous)
    previous_vms = previous.get('vms') if isinstance(previous, dict) else None
    records = balloon_compliance(vms, rules=rules, hypervisor=hypervisor, expected_interval=params['expected_interval'],
                                 min_available_percent=float(params['min_available_percent']),
                                 interval_rule=params['interval_rule'], previous=previous_vms or [],
                                 pressure_thresholds=pressure)
    empty_globs = read.get('empty_globs') or []
    result = outcome(records, empty_globs, plan_)
    run = run_id()
    result['run'] = run
    return {
        'hypervisor': hypervisor,
        'collected_at': collected_at or _now(),
        'run': run,
        'expected_interval': params['expected_interval'],
        'status': result['status'],
        'reason': result['reason'],
        'outcome': result,
        'empty_globs': empty_globs,
        'audit': {'transport': plan_['transport'], 'transport_setting': plan_['transport_setting'],
                  'socket_globs': plan_['socket_globs'], 'vms': plain(params['targets'] or []),
                  'all_domains': plan_['all_domains'],
                  'libvirt_uri': plan_['libvirt_uri'] if plan_['transport'] == 'libvirt' else None,
                  'vms_listed': len(vms), 'vms_read': sum(1 for vm in vms if not vm.get('failed'))},
        'parameters': {'expected_interval': params['expected_interval'], 'interval_rule': params['interval_rule'],
                       'min_available_percent': float(params['min_available_percent']),
                       'require_balloon': bool(params['require_balloon']), 'pressure': pressure},
        'rules': rules,
        'vms': records,
        'summary': balloon_summary(records),
    }


def record_failure(previous, failure, hypervisor):
    """The fact of a hypervisor that failed in this run (``failure``: ``reason`` and ``stage``, the
    step it stopped at): the previous fact with this outcome, so that its samples still give the next
    gather its rates and the report tells this run's failure from an old fact; a minimal fact when
    there is none."""
    previous = plain(previous)
    previous = previous if isinstance(previous, dict) else None
    result = {'status': 'failed', 'reason': failure['reason'], 'stage': failure['stage'], 'run': run_id()}
    if previous:
        fact = dict(previous)
        fact['outcome'] = result
        return fact
    return {'hypervisor': hypervisor, 'collected_at': None, 'run': None, 'status': 'failed', 'reason': failure['reason'],
            'outcome': result, 'empty_globs': [], 'vms': [], 'summary': balloon_summary([])}


def verdict(fact):
    """One sentence for the task's ``msg``: the hypervisor's verdict, as ad hoc prints it."""
    result = fact['outcome']
    if result['status'] != 'ok':
        return '%s: %s (%s)' % (fact['hypervisor'], result['status'], result['reason'])
    summary = fact['summary']
    pressure = summary.get('by_pressure') or {}
    return ('%s: %d VM%s: %d compliant, %d non-compliant, %d unknown; %d violation%s; %d unreachable; pressure high on %d, '
            'moderate on %d, unknown on %d' % (fact['hypervisor'], summary['vms'], '' if summary['vms'] == 1 else 's',
                                               summary['compliant'], summary['non_compliant'], summary['unknown'],
                                               summary['violations'], '' if summary['violations'] == 1 else 's',
                                               summary['unreachable'], pressure.get('high', 0), pressure.get('moderate', 0),
                                               pressure.get('unknown', 0)))
