# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plan of the role balloon_stats on one host: every decision of its story (tasks/main.yml).

PRIVATE: not part of the collection's public API.

The role's first task per host is qmp.balloon.balloon_stats_facts with ``role`` (its entry point
and variables). The action then reads no VM and changes no fact: it checks the variables
(``problems``), runs the role's probe and looks for libvirt's sockets in one command on the host
(``host_command``), and returns ``plan`` (``plan``). Every step of tasks/main.yml runs on one key of
it. Why Python: a role variable is rendered again at every reference on every host, and these
decisions were the role's largest templates; here they are one call and one unit test each.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.qmp.balloon.plugins.plugin_utils import _facts
from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain

#: The entry points (tasks_from) that run the story, and what each may do.
ENTRIES = ('main', 'prepare', 'configure', 'gather', 'export')
#: What the role passes in ``role`` (tasks/main.yml's plan task).
KEYS = ('entry', 'prepare', 'venv', 'wheel_dir', 'qmp_pin', 'probe', 'transport', 'libvirt_sockets', 'socket_globs', 'vms',
        'require_vms', 'configure', 'gather', 'report', 'export_textfile', 'export_gather', 'min_available_percent',
        'pressure_headroom_high', 'pressure_headroom_moderate', 'pressure_major_faults', 'pressure_swap_bytes',
        'report_keep', 'export_period')
PERCENTAGES = ('min_available_percent', 'pressure_headroom_high', 'pressure_headroom_moderate')
COUNTS = ('pressure_major_faults', 'pressure_swap_bytes', 'report_keep')
THRESHOLDS_INVALID = 'Invalid role variables, nothing was read or written: '
LIBVIRT_CONFLICT = ('%s uses transport libvirt: balloon_stats_vms entries need a domain (name or UUID) and '
                    'balloon_stats_socket_globs must be empty; set balloon_stats_transport: qmp to use QMP sockets')
#: The name of each check of the plan: a failure is raised again under it (tasks/main.yml's rescue).
CHECKS = {
    'thresholds': 'Check the thresholds and limits',
    'selection': 'Check the VM selection variables',
    'prepare': 'Check the prepare variables',
    'python': "Fail when this hypervisor's Python could not be run",
    'no_vm': 'Fail when no VM is given and VMs are required',
}
#: The prefix of the host command's lines that name a libvirt socket found.
FOUND = 'libvirt-socket '


def _float(value):
    """Jinja's ``float`` filter: 0.0 for what is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _text(value):
    """What Jinja's ``~`` and ``string`` make of a value (a list reads as Python's repr of it)."""
    return str(plain(value))


def _flag(value):
    """A role flag as Ansible reads it (true, "yes", "True" from -e ...); anything else is false."""
    return boolean(value, strict=False)


def _name(key):
    return 'balloon_stats_' + key


def threshold_problems(role):
    """The numeric variables of compliance, report and export: argument_specs checks their types, not
    their ranges. One sentence per problem."""
    problems = []
    for key in PERCENTAGES:
        if not 0 <= _float(role.get(key)) <= 100:
            problems.append('%s must be a percentage from 0 to 100, got %s' % (_name(key), _text(role.get(key))))
    high, moderate = role.get('pressure_headroom_high'), role.get('pressure_headroom_moderate')
    if _float(high) > _float(moderate):
        problems.append('balloon_stats_pressure_headroom_high (%s) must not be above balloon_stats_pressure_headroom_moderate '
                        '(%s): high pressure is the lower headroom' % (_text(high), _text(moderate)))
    for key in COUNTS:
        if not _float(role.get(key)) >= 0:   # also NaN
            problems.append('%s must be 0 or more, got %s' % (_name(key), _text(role.get(key))))
    period = role.get('export_period')
    if period is not None and period != '' and not (re.match(r'^[0-9]+$', _text(period)) and int(_text(period)) > 0):
        problems.append('balloon_stats_export_period must be a number of seconds above 0, or null for none, got %s'
                        % _text(period))
    return problems


def _qmp_asked(globs, vms):
    """Globs, or a VM entry without a domain (a socket or host/port), ask for QMP."""
    return len(globs) > 0 or any(not isinstance(vm, dict) or 'domain' not in vm for vm in vms)


def selection_problems(role, hostname):
    """The VM selection's problems, one sentence each."""
    globs = role.get('socket_globs') or []
    problems = []
    if any(not re.match('^/', str(pattern)) for pattern in globs):
        problems.append('balloon_stats_socket_globs must be absolute paths or absolute shell patterns '
                        '(like /var/run/qemu-server/*.qmp), got %s' % _text(globs))
    for index, vm in enumerate(role.get('vms') or []):
        socket = vm.get('socket') if isinstance(vm, dict) else None
        if socket is not None and not str(socket).startswith('/'):
            problems.append('balloon_stats_vms[%d].socket must be an absolute path, got %s' % (index, _text(socket)))
    if role.get('transport') == 'libvirt' and _qmp_asked(globs, role.get('vms') or []):
        problems.append(LIBVIRT_CONFLICT % hostname)
    return problems


def wheel_dir(role, playbook_dir):
    """balloon_stats_wheel_dir on the controller: relative to the playbook, ``~`` expanded; '' for none."""
    value = role.get('wheel_dir')
    if value in (None, ''):
        return ''
    value = os.path.expanduser(str(value))
    return value if value.startswith('/') else os.path.join(playbook_dir or '', value)


def wheels(directory):
    """The qemu.qmp wheels in ``directory`` on the controller, sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(directory), 'qemu[._]qmp-*'))) if directory else []


def prepare_problems(role, directory):
    """The prepare variables' problems, one sentence each (``directory``: the resolved wheel directory)."""
    mode = _text(role.get('prepare')).lower()
    problems = []
    if mode not in ('auto', 'true', 'false'):
        problems.append('balloon_stats_prepare must be auto, true or false, got %s' % json.dumps(_text(role.get('prepare'))))
    venv = role.get('venv')
    if not (isinstance(venv, str) and venv.startswith('/')):
        problems.append('balloon_stats_venv must be an absolute path, got %s' % json.dumps(_text(venv)))
    if directory and mode != 'false' and not wheels(directory):
        problems.append('balloon_stats_wheel_dir: no qemu.qmp wheel in %s on the controller (make it with: pip download '
                        '--no-deps --only-binary=:all: --dest %s qemu.qmp==%s)' % (directory, directory, role.get('qmp_pin')))
    return problems


def steps(role):
    """Which steps of the story the entry point takes (before the host is looked at): ``configure``,
    ``gather``, ``export``, ``report`` and ``reads`` (configure or gather: the VMs are read)."""
    entry = role['entry']
    configure = entry == 'configure' or (entry == 'main' and _flag(role.get('configure')))
    gather = (entry == 'gather' or (entry == 'main' and _flag(role.get('gather')))
              or (entry == 'export' and _flag(role.get('export_gather'))))
    export = entry == 'export' or (entry == 'main' and _flag(role.get('export_textfile')))
    report = entry == 'main' and _flag(role.get('report'))
    return {'configure': configure, 'gather': gather, 'export': export, 'report': report, 'reads': configure or gather}


def tag_selected(phases, run_tags, skip_tags):
    """Whether a task tagged with any of ``phases`` runs under --tags/--skip-tags."""
    run_tags, skip_tags = set(run_tags or ['all']), set(skip_tags or [])
    if skip_tags & set(phases):
        return False
    return 'all' in run_tags or bool(run_tags & set(phases))


def choose_transport(role, found):
    """The transport the gather action would choose (``_facts.choose_transport``) for the role's VMs and
    globs: qmp or libvirt as set; auto: QMP for a glob or a socket/TCP VM, libvirt for domain VMs, else
    libvirt when one of its sockets exists on the host (``found``), else QMP."""
    params = {'transport': role.get('transport'), 'sockets': role.get('socket_globs') or [],
              'targets': [vm if isinstance(vm, dict) else {} for vm in role.get('vms') or []],
              'libvirt_sockets': role.get('libvirt_sockets') or []}
    return _facts.choose_transport(params, lambda paths: found)


def needs_lookup(role, taken):
    """auto must look for libvirt's sockets: no VM and no glob is given, and the VMs are read."""
    return (taken['reads'] and role.get('transport') == 'auto' and len(role.get('libvirt_sockets') or []) > 0
            and not role.get('socket_globs') and not role.get('vms'))


def needs_probe(role, taken):
    """The probe runs where prepare decides: prepare is not false, and the entry is prepare or reads VMs."""
    return _text(role.get('prepare')).lower() != 'false' and (role['entry'] == 'prepare' or taken['reads'])


def host_python(configured, discovered):
    """The interpreter prepare looks at: the configured one, or when that is auto*, the one discovery
    found (when a module already ran), else python3 on PATH."""
    configured = _text(configured) if configured not in (None, '') else 'auto'
    if not configured.startswith('auto'):
        return configured
    return discovered or 'python3'


def host_command(role, python, lookup, probe):
    """One shell command for the host: the libvirt sockets that exist (a dangling symlink counts), one
    ``FOUND`` line each, then the probe's JSON line."""
    parts = []
    if lookup:
        parts.append(_facts.libvirt_lookup_script(role['libvirt_sockets'], FOUND))
    if probe:
        venv_python = '%s/bin/python' % role['venv']
        parts.append(' '.join([shlex.quote(word) for word in python.split()]
                              + ['-c', shlex.quote(role['probe']), shlex.quote(_text(role['prepare']).lower()),
                                 shlex.quote(_text(role['qmp_pin'])), shlex.quote(venv_python)]))
    return '; '.join(parts)


def parse_host_output(out, probe):
    """(libvirt sockets found, the probe's facts or None)."""
    found = [line[len(FOUND):] for line in out.splitlines() if line.startswith(FOUND)]
    facts = None
    if probe:
        lines = [line for line in out.splitlines() if line.startswith('{')]
        if lines:
            try:
                facts = json.loads(lines[-1])
            except ValueError:
                facts = None
    return found, facts


def python_failure(python, hostname, rc, err):
    """The failure when the host's Python did not run the probe."""
    lines = [line for line in (err or '').splitlines() if line.strip()]
    why = lines[-1].strip() if lines else ('exit status %s' % rc if rc else 'no output')
    return ('The Python %s on %s could not be run (%s): set ansible_python_interpreter to a Python 3.9 or later on that host'
            % (python, hostname, why))


def no_vm_given_message(hostname):
    """The failure of a hypervisor given no VM while balloon_stats_require_vms is true."""
    return ('No VM found on %s: balloon_stats_vms is empty and no socket glob is given (balloon_stats_require_vms is true)'
            % hostname)


def plan(role, taken, transport, facts, check_mode, user_python, directory):
    """The plan: what each step of tasks/main.yml does on this host.

    ``taken``: ``steps(role)``; ``transport``: the one chosen; ``facts``: the probe's JSON (None when it
    did not run); ``user_python``: the interpreter the user configured (balloon_stats_prepare false
    runs the modules with it); ``directory``: the resolved wheel directory ('' = the package index).
    """
    vms = plain(role.get('vms') or [])
    globs = list(role.get('socket_globs') or [])
    sockets = [] if transport == 'libvirt' else globs
    all_domains = transport == 'libvirt' and len(vms) == 0
    has_vms = all_domains or len(vms) > 0 or len(sockets) > 0
    venv = role['venv']
    venv_python = '%s/bin/python' % venv
    install = facts is not None and bool(facts.get('install'))
    pending = install and bool(check_mode)
    if facts is None:
        python = user_python
    elif facts.get('use_host') or pending:
        python = facts['executable']
    else:
        python = venv_python
    require_vms = _flag(role.get('require_vms'))
    reads = taken['reads'] and not pending
    return {
        'entry': role['entry'],
        # prepare: the interpreter of the module tasks, the probe's facts and decisions, the install
        'python': python,
        'probe': facts,
        'install': install,
        'venv': venv,
        'venv_python': venv_python,
        'wheel_dir': directory,
        'wheels': wheels(directory),
        'wheels_on_host': '%s/qmp-balloon-wheels' % venv,
        'check_pending': venv if pending else '',
        'say_python': role['entry'] == 'prepare' and facts is not None and not pending,
        # what is read
        'transport': transport,
        'sockets': sockets,
        'all_domains': all_domains,
        'has_vms': has_vms,
        # the steps
        'no_vm_given': require_vms and taken['reads'] and not has_vms,
        'configure': taken['configure'] and has_vms and not pending,
        'gather': taken['gather'],
        'require_vms': require_vms and has_vms and reads,
        'export': taken['export'],
        'report': taken['report'],
    }


def check_pending_line(plan_):
    """The one line that says a host's VMs are skipped in check mode (the plan task's msg)."""
    return 'would prepare %s first; nothing read or changed in check mode' % plan_['check_pending']
