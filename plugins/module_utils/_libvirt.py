# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""libvirt session layer of qmp.balloon: the connection and the allow-list of libvirt calls.

PRIVATE: this module is not part of the collection's public API. Users and
other collections must not import it; it may change in any release.

libvirt holds the QMP monitor of each of its domains for the domain's whole
life, so the QMP transport cannot reach them. The libvirt transport asks
libvirtd through libvirt-python, with the calls libvirt offers for the balloon:
``virDomainSetMemoryStatsPeriod`` (LIVE, CONFIG), ``virConnectGetAllDomainStats``
/ ``virDomainListGetStats`` with the balloon group (one call for many
domains), ``virDomainMemoryStats``, and the domain XML for the period
(``<memballoon><stats period=.../>``). Every libvirt call of the collection
goes through :class:`LibvirtSession` and is checked against
:data:`ALLOWED_CALLS`; ``virDomainQemuMonitorCommand`` is never used (it marks
the domain tainted).

The domain view is ``_libvirt_domain``, the executor ``_libvirt_executor``.
"""

from __future__ import annotations

import re
import traceback

# libvirt-python is imported on first use (load()): its import costs about 75 ms, which
# every run with transport: qmp would pay for nothing.
libvirt = None
#: None until load() tried; then whether libvirt-python could be imported.
HAS_LIBVIRT = None
LIBVIRT_IMPORT_ERROR = None

from ansible_collections.qmp.balloon.plugins.module_utils._errors import (
    BalloonError,
    CommandNotAllowed,
    DomainNotFound,
    LibvirtUnreachable,
)


def load():
    """Import libvirt-python once; return whether it is usable (LIBVIRT_IMPORT_ERROR says why not)."""
    global libvirt, HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR  # pylint: disable=global-statement
    if HAS_LIBVIRT is None:
        try:
            import libvirt as binding  # pylint: disable=import-outside-toplevel
            libvirt = binding
            HAS_LIBVIRT = True
        except ImportError:
            HAS_LIBVIRT = False
            LIBVIRT_IMPORT_ERROR = traceback.format_exc()
    return HAS_LIBVIRT


#: The name pip knows the binding by (in the message when it is missing).
LIBVIRT_LIBRARY = 'libvirt-python'

#: The only libvirt API calls this collection makes (connection and domain
#: methods of libvirt-python). Not in it, on purpose: qemuMonitorCommand and
#: qemuAgentCommand (libvirt_qemu), which taint the domain, and everything
#: that starts, stops or redefines a domain.
ALLOWED_CALLS = frozenset([
    'open',
    'openReadOnly',
    'lookupByName',
    'lookupByUUIDString',
    'getAllDomainStats',
    'domainListGetStats',
    'name',
    'UUIDString',
    'state',
    'isPersistent',
    'XMLDesc',
    'memoryStats',
    'setMemoryStatsPeriod',
    'close',
])

# Stable values of libvirt's public enums (libvirt never renumbers them); named here so the
# code reads without libvirt-python installed and the unit tests need no libvirt.
AFFECT_LIVE = 1
AFFECT_CONFIG = 2
XML_INACTIVE = 2
STATS_STATE = 1
STATS_BALLOON = 4
GET_STATS_ACTIVE = 1
GET_STATS_NOWAIT = 1 << 29
ERR_NO_DOMAIN = 42
FROM_REMOTE = 19
FROM_RPC = 7

_UUID = re.compile(r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$')


def is_uuid(text):
    return bool(_UUID.match(text or ''))


def _message(exc):
    text = ''
    try:
        text = exc.get_error_message() or ''
    except Exception:  # pylint: disable=broad-except
        pass
    return (text or str(exc) or type(exc).__name__).strip().rstrip('.')


def _code(exc):
    try:
        return exc.get_error_code()
    except Exception:  # pylint: disable=broad-except
        return None


def _is_connection_error(exc):
    try:
        return exc.get_error_domain() in (FROM_RPC, FROM_REMOTE)
    except Exception:  # pylint: disable=broad-except
        return False


class LibvirtSession(object):
    """One connection to libvirtd, shared by the batch's threads (libvirt connections are thread-safe).

    Every libvirt call goes through :meth:`call`, which refuses anything outside
    :data:`ALLOWED_CALLS` before it is made and turns libvirt's errors into
    :class:`BalloonError` sentences. Raises only BalloonError subclasses.
    """

    def __init__(self, uri, read_only=False):
        self.uri = uri
        self.read_only = read_only
        self.connection = None
        self.broken = None

    def call(self, target, method, *arguments):
        """``target.method(*arguments)`` for an allowed libvirt call.

        :raise CommandNotAllowed: before anything is called, for a method outside :data:`ALLOWED_CALLS`.
        :raise LibvirtUnreachable: the connection broke (the batch fails with one message).
        :raise BalloonError: libvirt refused the call (one sentence naming the call).
        """
        if method not in ALLOWED_CALLS:
            raise CommandNotAllowed('the libvirt call %r is not in the allow-list of this collection (%s)'
                                    % (method, ', '.join(sorted(ALLOWED_CALLS))))
        try:
            return getattr(target, method)(*arguments)
        except libvirt.libvirtError as exc:
            if _is_connection_error(exc):
                self.broken = self.broken or _message(exc)
                raise LibvirtUnreachable(self.broken_message())
            raise _LibvirtCallFailed(method, exc)

    def broken_message(self):
        return ('the connection to libvirt at %s broke (%s): is libvirtd still running? Restart it and run the task again'
                % (self.uri, self.broken))

    def open(self):
        """Connect; raise LibvirtUnreachable with one sentence when libvirtd cannot be reached."""
        if not load():
            raise LibvirtUnreachable('cannot use libvirt at %s: the libvirt-python library is not installed' % self.uri)
        # libvirt prints every error on stderr unless a handler is registered; ours are in the result.
        libvirt.registerErrorHandler(_ignore_error, None)
        method = 'openReadOnly' if self.read_only else 'open'
        try:
            self.connection = self.call(libvirt, method, self.uri)
        except (LibvirtUnreachable, _LibvirtCallFailed) as exc:
            reason = exc.reason if isinstance(exc, _LibvirtCallFailed) else self.broken
            self.broken = None
            raise LibvirtUnreachable('cannot connect to libvirt at %s (libvirt_uri): %s; check that libvirtd (or virtqemud) '
                                     'runs on this host and that libvirt_uri is right' % (self.uri, reason))
        if self.connection is None:
            raise LibvirtUnreachable('cannot connect to libvirt at %s (libvirt_uri)' % self.uri)

    def close(self):
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def lookup(self, domain):
        """The virDomain of a name or UUID; raises DomainNotFound."""
        try:
            if is_uuid(domain):
                try:
                    return self.call(self.connection, 'lookupByUUIDString', domain)
                except _LibvirtCallFailed as exc:
                    if exc.code != ERR_NO_DOMAIN:
                        raise
            return self.call(self.connection, 'lookupByName', domain)
        except _LibvirtCallFailed as exc:
            if exc.code == ERR_NO_DOMAIN:
                raise DomainNotFound('libvirt at %s has no domain %s %s (virsh list --all lists them)'
                                     % (self.uri, 'with UUID' if is_uuid(domain) else 'named', domain))
            raise

    def active_domain_stats(self, groups):
        """``[(virDomain, record)]`` of every active domain, in one call."""
        return self.call(self.connection, 'getAllDomainStats', groups, GET_STATS_ACTIVE | GET_STATS_NOWAIT)

    def domain_list_stats(self, domains, groups):
        return self.call(self.connection, 'domainListGetStats', domains, groups, GET_STATS_NOWAIT)


class _LibvirtCallFailed(BalloonError):
    """libvirt answered a call with an error (not a broken connection)."""

    def __init__(self, method, exc):
        self.method = method
        self.code = _code(exc)
        self.reason = _message(exc)
        super().__init__('libvirt refused %s: %s' % (method, self.reason))


def _ignore_error(context, error):  # pylint: disable=unused-argument
    return None
