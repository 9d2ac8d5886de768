# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role balloon_stats's input checks and VM selection, in Python (controller side).

- ``balloon_role_checks``: the thresholds' and the VM selection's problems, one sentence each.
- ``balloon_role_run``: the transport, the globs the modules expand, every active domain, whether
  any VM is given, and the discovery memo's key and freshness.

Why Python and not the role's vars/main.yml: ansible-core renders a role variable again at every
reference, in every host's worker, and compiles its Jinja source each time (``from_string`` has no
cache). These were the role's largest templates (2 KB for the thresholds alone), referenced by the
setup gate and by every module task's arguments on every host: ~40 ms of a host's gate and ~25 ms
of its module task on the bench's machine. A filter call over the raw variables compiles in ~2 ms.
The role's variables keep their names (``__balloon_stats_threshold_problems`` ...), now thin
references to these results.
"""

from __future__ import annotations

import json
import re

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain

PERCENTAGES = ('balloon_stats_min_available_percent', 'balloon_stats_pressure_headroom_high',
               'balloon_stats_pressure_headroom_moderate')
COUNTS = ('balloon_stats_pressure_major_faults', 'balloon_stats_pressure_swap_bytes', 'balloon_stats_report_keep')
LIBVIRT_CONFLICT = ('%s uses transport libvirt: balloon_stats_vms entries need a domain (name or UUID) and '
                    'balloon_stats_socket_globs must be empty; set balloon_stats_transport: qmp to use QMP sockets')


def _float(value):
    """Jinja's ``float`` filter: 0.0 for what is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _text(value):
    """What Jinja's ``~`` and ``string`` make of a value (a list reads as Python's repr of it)."""
    return str(_plain(value))


def threshold_problems(values):
    """The numeric variables of compliance, report and export: argument_specs checks their types,
    not their ranges. ``values`` maps each variable's name to its value."""
    problems = []
    for name in PERCENTAGES:
        if not 0 <= _float(values.get(name)) <= 100:
            problems.append('%s must be a percentage from 0 to 100, got %s' % (name, _text(values.get(name))))
    high, moderate = values.get('balloon_stats_pressure_headroom_high'), values.get('balloon_stats_pressure_headroom_moderate')
    if _float(high) > _float(moderate):
        problems.append('balloon_stats_pressure_headroom_high (%s) must not be above balloon_stats_pressure_headroom_moderate '
                        '(%s): high pressure is the lower headroom' % (_text(high), _text(moderate)))
    for name in COUNTS:
        if not _float(values.get(name)) >= 0:   # also NaN
            problems.append('%s must be 0 or more, got %s' % (name, _text(values.get(name))))
    period = values.get('balloon_stats_export_period')
    if period is not None and period != '' and not (re.match(r'^[0-9]+$', _text(period)) and int(_text(period)) > 0):
        problems.append('balloon_stats_export_period must be a number of seconds above 0, or null for none, got %s'
                        % _text(period))
    return problems


def _qmp_asked(globs, vms):
    """Globs, or a VM entry without a domain (a socket or host/port), ask for QMP."""
    return len(globs) > 0 or any(not isinstance(vm, dict) or 'domain' not in vm for vm in vms)


def balloon_role_checks(values):
    """``{'thresholds': [...], 'selection': [...]}``: the problems of the role's variables.

    ``values``: the threshold variables by name (``balloon_stats_min_available_percent`` ...,
    ``balloon_stats_export_period``), ``validated`` (the caller checked the thresholds already: none
    then), ``transport``, ``socket_globs``, ``vms`` and ``hostname``.
    """
    values = _plain(values)
    thresholds = [] if values.get('validated') else threshold_problems(values)
    globs = values.get('socket_globs') or []
    selection = []
    if any(not re.match('^/', str(pattern)) for pattern in globs):
        selection.append('balloon_stats_socket_globs must be absolute paths or absolute shell patterns '
                         '(like /var/run/qemu-server/*.qmp), got %s' % _text(globs))
    for index, vm in enumerate(values.get('vms') or []):
        socket = vm.get('socket') if isinstance(vm, dict) else None
        if socket is not None and not str(socket).startswith('/'):
            selection.append('balloon_stats_vms[%d].socket must be an absolute path, got %s' % (index, _text(socket)))
    if values.get('transport') == 'libvirt' and _qmp_asked(globs, values.get('vms') or []):
        selection.append(LIBVIRT_CONFLICT % values.get('hostname'))
    return {'thresholds': thresholds, 'selection': selection}


def balloon_role_run(values):
    """What the role's module tasks use, and discovery's memo.

    ``values``: ``transport`` (qmp, libvirt, auto), ``socket_globs``, ``vms``, ``libvirt_sockets``,
    ``play`` (the play's name) and ``discovered`` (discover.yml's memo, ``{}`` when none).

    Returns ``transport`` (auto resolved: libvirt only when discovery found libvirt's socket with
    these inputs in this play and nothing asks for QMP, else qmp), ``sockets`` (the globs the modules
    expand; none with libvirt), ``all_domains``, ``has_vms``, ``needs_lookup`` (auto must look for
    libvirt's sockets on the host), ``discovery_key`` (a string) and ``discovery_fresh`` (the memo
    holds that key).
    """
    values = _plain(values)
    transport = values.get('transport')
    globs = list(values.get('socket_globs') or [])
    vms = list(values.get('vms') or [])
    libvirt_sockets = list(values.get('libvirt_sockets') or [])
    discovered = values.get('discovered') or {}
    # A string that does not read as a list: ansible-core 2.16 turns a templated '[...]' back into one.
    key = 'discovery ' + json.dumps([values.get('play'), transport, vms, globs, libvirt_sockets if transport == 'auto' else []],
                                    sort_keys=True, default=str)
    fresh = isinstance(discovered, dict) and discovered.get('key') == key
    needs_lookup = transport == 'auto' and not _qmp_asked(globs, vms) and len(libvirt_sockets) > 0
    if transport != 'auto':
        chosen = transport
    elif needs_lookup and fresh:
        chosen = discovered.get('transport') or 'qmp'
    else:
        chosen = 'qmp'
    sockets = [] if chosen == 'libvirt' else globs
    all_domains = chosen == 'libvirt' and len(vms) == 0
    return {'transport': chosen, 'sockets': sockets, 'all_domains': all_domains,
            'has_vms': all_domains or len(vms) > 0 or len(sockets) > 0,
            'needs_lookup': needs_lookup, 'discovery_key': key, 'discovery_fresh': fresh}
