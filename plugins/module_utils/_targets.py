# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Module parameters -> the VMs to handle, or one error: nothing is touched when any input is bad.

PRIVATE: not part of the collection's public API.

:func:`build` checks every input and lists every problem at once, each naming its option
(``targets[2].socket: ...``). One loop goes over the entries (the top-level options of a
single VM, or each ``targets`` entry) for both transports; what differs is asked of the
transport's reader: :class:`_QMPInput` (socket or host and port, TLS) or
:class:`_LibvirtInput` (domain, all_domains, libvirt_uri).
"""

from __future__ import annotations

import glob
import math
import os
import stat

from ansible_collections.qmp.balloon.plugins.module_utils._options import (
    LIBVIRT_ONLY_OPTIONS,
    MAX_TIMEOUT,
    QMP_ONLY_FLAGS,
    QMP_ONLY_OPTIONS,
    QMP_ONLY_TARGET_OPTIONS,
    TRANSPORT_LIBVIRT,
    DEFAULT_LIBVIRT_URI,
    invalid_input,
    libvirt_uri,
)


class InputError(Exception):
    """The module's input cannot be used; ``str()`` is the whole message the task fails with."""


class Selection(object):
    """The VMs of a task: ``targets`` in input order, ``single`` (one VM, its fields at the top level), ``all_domains``."""

    def __init__(self, targets, single, all_domains=False, empty_globs=None):
        self.targets = targets
        self.single = single
        self.all_domains = all_domains
        #: With allow_empty: the globs of ``sockets`` that matched no socket, each with why (None without ``sockets``).
        self.empty_globs = empty_globs


# ---------------------------------------------------------------------------------------------
# Section: checks of single values
# ---------------------------------------------------------------------------------------------

def check_socket_path(path, option):
    """Return an error sentence naming ``option`` when ``path`` cannot be a QMP socket, else None."""
    if not path:
        return '%s must not be empty' % option
    if not os.path.isabs(path):
        return '%s must be an absolute path, got %r' % (option, path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if glob.has_magic(path):
            return ('%s: %s does not exist; %s takes one path, not a glob: give paths and globs as sockets: [%s]'
                    % (option, path, option, path))
        return '%s: %s does not exist (is the VM running?)' % (option, path)
    except PermissionError:
        return '%s: permission denied reaching %s: run as a user that may use the socket (usually root)' % (option, path)
    if stat.S_ISDIR(mode):
        return '%s: %s is a directory, not a QMP socket' % (option, path)
    if not stat.S_ISSOCK(mode):
        return '%s: %s is not a socket (a regular file or device)' % (option, path)
    if not os.access(path, os.R_OK | os.W_OK):
        return ('%s: permission denied on %s: run as a user that may write to the socket '
                '(usually root, with become: true)' % (option, path))
    return None


def check_tcp(host, port, option):
    if not host:
        return '%s.host must not be empty' % option if option else 'host must not be empty'
    if port is None or not 1 <= port <= 65535:
        return '%s must be between 1 and 65535, got %s' % ('%s.port' % option if option else 'port', port)
    return None


def _check_name(name, prefix, label, names, errors, fallback):
    """Refuse an empty or duplicate target name; remember the others in ``names`` (name -> label)."""
    if name is None:
        return
    if not name.strip():
        errors.append('%sname must not be empty (omit it to use %s)' % (prefix, fallback))
    elif name in names:
        errors.append('%sname: duplicate name %r (also in %s)' % (prefix, name, names[name]))
    else:
        names[name] = label


def targets_as_strings(params):
    """One sentence when ``targets`` holds strings instead of dicts (``targets: [/run/vm1.qmp]``), else None."""
    entries = (params or {}).get('targets')
    if isinstance(entries, str):
        # targets=/run/vm1.qmp ad hoc: core splits it at commas before asking for dicts
        entries = [entry.strip() for entry in entries.split(',')] if not entries.lstrip().startswith(('[', '{')) else []
    if not isinstance(entries, list):
        return None
    for index, entry in enumerate(entries):
        # core reads 'socket=/run/vm1.qmp' or a JSON object as a dict itself
        if isinstance(entry, str) and '=' not in entry and not entry.lstrip().startswith('{'):
            return ('targets[%d] is the string %r, but each entry of targets is a dict: write targets: [{socket: %s}] '
                    '(or host and port, or with transport libvirt domain), or give paths and globs as sockets: [%s]'
                    % (index, entry, entry, entry))
    return None


def _check_batch_options(params, errors):
    if math.isnan(params['timeout']) or params['timeout'] <= 0:
        errors.append('timeout must be greater than 0 seconds, got %s' % params['timeout'])
    elif params['timeout'] > MAX_TIMEOUT:
        errors.append('timeout must be at most %d seconds, got %s' % (MAX_TIMEOUT, params['timeout']))
    if params['concurrency'] < 1:
        errors.append('concurrency must be at least 1, got %s' % params['concurrency'])


# ---------------------------------------------------------------------------------------------
# Section: sockets, paths and globs expanded on the managed host
# ---------------------------------------------------------------------------------------------

def _socket_node(path):
    """``(device, inode)`` of a socket, or None when ``path`` is not one (or cannot be read)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISSOCK(status.st_mode) else None


def _fixed_directory(pattern):
    """The longest leading directory of ``pattern`` without wildcards."""
    directory = os.path.dirname(pattern)
    while glob.has_magic(directory):
        directory = os.path.dirname(directory)
    return directory


def _no_match(label, pattern, accept='; set allow_empty: true to accept a glob that matches nothing'):
    """One sentence for a glob that matched no socket: why, and (``accept``) the way to accept it."""
    directory = _fixed_directory(pattern)
    if not os.path.isdir(directory):
        return '%s: %s matches nothing: the directory %s does not exist on this host%s' % (label, pattern, directory, accept)
    if not os.access(directory, os.R_OK | os.X_OK):
        return ('%s: permission denied listing %s: run as a user that may read it (usually root, with become: true)'
                % (label, directory))
    others = len(glob.glob(pattern))
    if others:
        return '%s: %s matches %d file%s but no socket%s' % (label, pattern, others, '' if others == 1 else 's', accept)
    return '%s: no socket matches %s on this host%s' % (label, pattern, accept)


def expand_sockets(patterns, allow_empty, errors, empty_globs=None):
    """``[(label, path)]``: the sockets ``sockets`` names, each entry's matches sorted by path.

    A plain path is taken as given (checked like ``socket``); a shell glob keeps only the
    sockets it matches (a Proxmox directory also holds ``.pid`` files). A glob that matches no
    socket is an error unless ``allow_empty``. Each socket comes once, told apart by device and
    inode, so ``/var/run/x/*.qmp`` and ``/run/x/*.qmp`` (a symlinked directory) are one VM each.
    With ``allow_empty``, each glob that matched nothing is appended to ``empty_globs`` (when given)
    with its reason: a missing directory (a typo, another platform's path) is not an empty one.
    """
    found = []
    seen = set()
    if not patterns and not allow_empty:
        errors.append('sockets is empty: give at least one path or shell glob (like /var/run/qemu-server/*.qmp), '
                      'or set allow_empty: true when an empty list means no VM')
    for index, pattern in enumerate(patterns):
        label = 'sockets[%d]' % index
        # "sockets=/a, /b" ad hoc: core splits at the comma and keeps the space
        pattern = pattern.strip() if isinstance(pattern, str) else pattern
        if not pattern or not os.path.isabs(pattern):
            errors.append('%s must be an absolute path or shell glob (like /var/run/qemu-server/*.qmp), got %r' % (label, pattern))
            continue
        if not glob.has_magic(pattern):
            node = _socket_node(pattern)
            if node not in seen or node is None:
                found.append((label, pattern))
            seen.add(node)
            continue
        matches = [path for path in sorted(glob.glob(pattern)) if _socket_node(path) is not None]
        if not matches and not allow_empty:
            errors.append(_no_match(label, pattern))
        elif not matches and empty_globs is not None:
            directory = _fixed_directory(pattern)
            empty_globs.append({'glob': pattern, 'directory': directory, 'directory_exists': os.path.isdir(directory),
                                'msg': _no_match(label, pattern, accept='')})
        for path in matches:
            node = _socket_node(path)
            if node not in seen:
                seen.add(node)
                found.append((label, path))
    return found


# ---------------------------------------------------------------------------------------------
# Section: the transports' readers
# ---------------------------------------------------------------------------------------------

class _QMPInput(object):
    """Transport qmp: each VM is a unix socket or a TCP host and port, optionally with a qom_path."""

    #: What a VM is called when its entry gives no name.
    default_name = "QEMU's name"
    #: Why one monitor may not be listed twice.
    listed_twice = ': QEMU serves one client per monitor'

    def __init__(self, params, libvirt_only):
        self.params = params
        self.libvirt_only = libvirt_only
        self.tls = None

    def single(self):
        # targets: [] (say, an empty inventory group) is a batch of no VMs, not a single-VM call.
        return self.params['targets'] is None and self.params['sockets'] is None

    def check_options(self, errors):
        """Refuse the libvirt options by name, then require socket, host or targets (both fail at once); TLS files."""
        params = self.params
        refused = ['%s applies to transport libvirt only: set transport: libvirt, or reach QEMU with socket or host and port'
                   % option for option in self.libvirt_only if params[option] not in (None, False)]
        for index, entry in enumerate(params['targets'] or []):
            if entry.get('domain') is not None:
                refused.append('targets[%d].domain applies to transport libvirt only: set transport: libvirt, or give '
                               'targets[%d].socket or host and port' % (index, index))
        if refused:
            raise InputError(invalid_input(refused))
        # The messages AnsibleModule's required_one_of gave before transport libvirt existed.
        if all(params[option] is None for option in ('socket', 'host', 'targets', 'sockets')):
            raise InputError('one of the following is required: socket, host, targets, sockets')
        if any(entry.get('socket') is None and entry.get('host') is None for entry in params['targets'] or []):
            raise InputError('one of the following is required: socket, host found in targets')
        self.tls = self._tls_settings(errors)
        if self.tls and self.single() and params['socket'] is not None:
            errors.append('tls_ca, tls_cert, tls_key and tls_server_name apply to TCP monitors (host and port), not to a unix socket')

    def _tls_settings(self, errors):
        params = self.params
        if not params['tls_ca']:
            return None
        for option in ('tls_ca', 'tls_cert', 'tls_key'):
            path = params[option]
            if path is None:
                continue
            if not os.path.isabs(path):
                errors.append('%s must be an absolute path, got %r' % (option, path))
            elif not os.path.isfile(path):
                errors.append('%s: %s is not a readable file' % (option, path))
            elif not os.access(path, os.R_OK):
                errors.append('%s: permission denied reading %s' % (option, path))
        from ansible_collections.qmp.balloon.plugins.module_utils._qmp import TLSSettings  # pylint: disable=import-outside-toplevel
        return TLSSettings(params['tls_ca'], params['tls_cert'], params['tls_key'], params['tls_server_name'])

    def check_selection(self, errors):
        pass

    def target(self, entry, label, prefix, errors):
        """``(Target, key)`` of one entry (the key tells one monitor from another), or None when it cannot be reached."""
        # Imported here, with the first VM: a task with no VM needs no asyncio or qemu.qmp (_common).
        from ansible_collections.qmp.balloon.plugins.module_utils._qmp import Endpoint  # pylint: disable=import-outside-toplevel
        from ansible_collections.qmp.balloon.plugins.module_utils._qmp_executor import Target  # pylint: disable=import-outside-toplevel
        if entry.get('socket') is not None:
            # an entry found through sockets is named by its sockets[N]
            error = check_socket_path(entry['socket'], label if label and label.startswith('sockets[') else prefix + 'socket')
            endpoint = Endpoint(path=entry['socket'])
        else:
            error = check_tcp(entry.get('host'), entry.get('port'), label)
            endpoint = Endpoint(host=entry.get('host'), port=entry.get('port'), tls=self.tls)
        if error:
            errors.append(error)
            return None
        if entry.get('qom_path') is not None and not entry['qom_path'].strip():
            errors.append('%sqom_path must not be empty' % prefix)
        # /d/./vm.qmp, /d//vm.qmp and a symlink are the same monitor.
        key = 'unix:%s' % os.path.realpath(endpoint.path) if endpoint.is_unix else str(endpoint)
        # QEMU resolves partial paths such as "balloon0" itself.
        return Target(endpoint, name=entry.get('name'), qom_path=entry.get('qom_path')), key


class _LibvirtInput(object):
    """Transport libvirt: each VM is a domain (name or UUID), or all active domains of libvirt_uri."""

    default_name = "the domain's name"
    listed_twice = ''

    def __init__(self, params, libvirt_only):
        self.params = params

    def single(self):
        return self.params['domain'] is not None

    def check_options(self, errors):
        for option in QMP_ONLY_FLAGS:
            if self.params[option]:
                errors.append('%s applies to transport qmp only (with sockets)' % option)
        for option in QMP_ONLY_OPTIONS:
            if self.params[option] is None:
                continue
            if option.startswith('tls_'):
                errors.append('%s applies to QMP TCP monitors (transport qmp) only: with transport libvirt, choose TLS with '
                              'libvirt_uri (qemu+tls://HOST/system)' % option)
            else:
                errors.append('%s applies to transport qmp only: with transport libvirt, name the VM with domain '
                              '(or use all_domains)' % option)

    def check_selection(self, errors):
        params = self.params
        if not libvirt_uri(params).strip():
            errors.append('libvirt_uri must not be empty (omit it for %s)' % DEFAULT_LIBVIRT_URI)
        chosen = [option for option in ('domain', 'targets', 'all_domains') if params[option] not in (None, False)]
        # a QMP selection (socket, sockets, host) was refused by check_options, with the same advice
        qmp_selection = any(params.get(option) not in (None, False) for option in ('socket', 'sockets', 'host'))
        if not chosen and not qmp_selection:
            errors.append('with transport libvirt, one of domain, targets or all_domains is required')
        elif len(chosen) > 1:
            errors.append('%s are mutually exclusive: give one domain, a list of targets, or all_domains: true'
                          % ' and '.join(chosen))
        if params['all_domains'] and params['name'] is not None:
            errors.append('name applies to a single domain, not to all_domains (each VM is named after its domain)')

    def target(self, entry, label, prefix, errors):
        """``(LibvirtTarget, key)`` of one entry, or None without a domain."""
        from ansible_collections.qmp.balloon.plugins.module_utils._libvirt_executor import LibvirtTarget  # pylint: disable=import-outside-toplevel
        misplaced = [option for option in QMP_ONLY_TARGET_OPTIONS if label and entry.get(option) is not None]
        for option in misplaced:
            errors.append('%s%s applies to transport qmp only: with transport libvirt, give %sdomain' % (prefix, option, prefix))
        domain = entry.get('domain')
        if domain is None or not domain.strip():
            if not misplaced:
                errors.append('%sdomain %s' % (prefix, 'is required with transport libvirt (a domain name or UUID)'
                                               if domain is None else 'must not be empty'))
            return None
        return LibvirtTarget(domain, name=entry.get('name')), 'domain %s' % domain


# ---------------------------------------------------------------------------------------------
# Section: the one loop
# ---------------------------------------------------------------------------------------------

def _sockets_entries(params, explicit, errors, empty_globs=None):
    """The entries of the sockets ``sockets`` names, after the explicit ``targets``; a socket given in both counts once, there."""
    given = set(_socket_node(entry['socket']) for _label, entry in explicit if entry.get('socket'))
    return [(label, {'socket': path}) for label, path in expand_sockets(params['sockets'], params['allow_empty'], errors, empty_globs)
            if _socket_node(path) is None or _socket_node(path) not in given]


def build(params, libvirt_only=LIBVIRT_ONLY_OPTIONS):
    """The :class:`Selection` of the task, checked before any VM is touched.

    ``libvirt_only``: the options that apply to transport libvirt only (the common ones and
    the module's own, such as ``persistent``), refused with transport qmp when set.

    :raise InputError: with every problem found, each naming its option.
    """
    libvirt = params['transport'] == TRANSPORT_LIBVIRT
    reader = (_LibvirtInput if libvirt else _QMPInput)(params, libvirt_only)
    errors = []
    reader.check_options(errors)
    _check_batch_options(params, errors)
    reader.check_selection(errors)
    single = reader.single()
    if single:
        entries = [(None, params)]
    else:
        entries = [('targets[%d]' % index, entry) for index, entry in enumerate(params['targets'] or [])]
    empty_globs = None
    if not libvirt and params['sockets'] is not None:
        empty_globs = []
        entries.extend(_sockets_entries(params, entries, errors, empty_globs))
    targets = []
    names = {}
    keys = {}
    for label, entry in entries:
        prefix = '%s.' % label if label else ''
        found = reader.target(entry, label, prefix, errors)
        if found is None:
            continue
        target, key = found
        _check_name(entry.get('name'), prefix, label, names, errors, reader.default_name)
        if key in keys:
            # the path as this entry gives it (the key is the resolved one)
            shown = key if not getattr(target, 'endpoint', None) else str(target.endpoint)
            same = '' if shown == key else ' (the same socket as %s)' % key
            errors.append('%s: %s is listed twice (also in %s)%s%s' % (label, shown, keys[key], same, reader.listed_twice))
        keys[key] = label
        targets.append(target)
    if errors:
        raise InputError(invalid_input(errors))
    return Selection(targets, single, all_domains=libvirt and bool(params['all_domains']), empty_globs=empty_globs)
