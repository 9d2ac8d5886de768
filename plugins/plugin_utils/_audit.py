# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How each hypervisor of the fleet report was (or would have been) audited: from its fact's
``audit`` (the gather), else the inventory's variables; and that in one sentence.

PRIVATE: not part of the collection's public API.
"""

from __future__ import annotations

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain


#: The inventory's variables, for a host that has no fact.
_CONFIGURED = ('balloon_stats_transport', 'balloon_stats_socket_globs', 'balloon_stats_vms', 'balloon_stats_libvirt_uri')
#: The keys of an explicit VM the report shows (what identifies it; nothing else of the user's input).
_VM_KEYS = ('name', 'socket', 'host', 'port', 'domain')


def hostvar(hostvars_host, key):
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


def _listed_and_read(audit):
    return '%d VM%s listed, %d read' % (audit['vms_listed'], '' if audit['vms_listed'] == 1 else 's', audit['vms_read'])


def audit_summary(audit):
    """One sentence: how a hypervisor was (or would have been) audited."""
    parts = []
    if audit['source'] == 'none':
        return ('not audited; how it would have been is unknown: the inventory sets none of '
                '%s (role defaults and play variables are not visible to the report)' % ', '.join(_CONFIGURED))
    if audit['source'] != 'gather':
        parts.append('not audited; as the inventory configures it (role defaults and play variables not visible)')
    transport = audit.get('transport')
    if audit['source'] == 'gather' and transport is None:
        return 'how its VMs were found was not recorded (a fact gathered by an older qmp.balloon); ' + _listed_and_read(audit)
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
        parts.append(_listed_and_read(audit))
    return '; '.join(parts)


def hypervisor_audit(facts, hostvars_host, host_vms):
    """How a hypervisor was audited: from its fact's ``audit`` (the gather), else the inventory's
    variables, else nothing known."""
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
        configured = dict((key, hostvar(hostvars_host, key)) for key in _CONFIGURED)
        if any(value is not None for value in configured.values()):
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
