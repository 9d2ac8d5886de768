# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""QMP session layer of qmp.balloon.

PRIVATE: this module is not part of the collection's public API. Users and
other collections must not import it; it may change in any release.

One :class:`QMPSession` is one short connection to one QEMU monitor. It opens
the socket itself (so a refused, missing or busy monitor is told apart from a
silent one), negotiates with ``qemu.qmp``'s async client, sends only the
commands of :data:`ALLOWED_COMMANDS`, bounds every step by one deadline, and
closes promptly: QEMU serves a single monitor client at a time.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import traceback

try:
    from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError
    from qemu.qmp.message import Message
    from qemu.qmp.models import ErrorResponse
    from qemu.qmp.protocol import Runstate, StateError
    from qemu.qmp.qmp_client import BadReplyError
    HAS_QEMU_QMP = True
    QEMU_QMP_IMPORT_ERROR = None
except ImportError:
    HAS_QEMU_QMP = False
    QEMU_QMP_IMPORT_ERROR = traceback.format_exc()
    QMPClient = object

from ansible_collections.qmp.balloon.plugins.module_utils._errors import (
    CommandNotAllowed,
    CommandFailed,
    EndpointError,
    MonitorBusy,
    QMPTimeout,
    seconds,
)

#: ``asyncio.timeout`` (Python 3.11+) bounds an await in the running task; ``asyncio.wait_for``
#: (before 3.12) runs it in a task of its own, one more task per command.
_timeout = getattr(asyncio, 'timeout', None)

#: The only QMP commands the collection ever sends. ``qmp_capabilities`` is
#: sent by qemu.qmp during negotiation; the others by this collection.
#: README.md and docs/security.md list the same (a unit test compares them).
ALLOWED_COMMANDS = frozenset([
    'qmp_capabilities',
    'qom-list',
    'qom-get',
    'qom-set',
    'query-status',
    'query-name',
    # Read-only and unstable (x-): asked only to diagnose a VM whose stats are not ok; a QEMU
    # that lacks or refuses it gives "unknown", never a failure.
    'x-query-virtio-status',
])

#: The only QOM property ``qom-set`` may write.
POLLING_PROPERTY = 'guest-stats-polling-interval'
STATS_PROPERTY = 'guest-stats'
WRITABLE_PROPERTIES = frozenset([POLLING_PROPERTY])

#: Library pin: qemu.qmp is pre-1.0 and its API may change between releases.
QEMU_QMP_VERSION = '0.0.6'

# Errors a non-blocking connect() to a unix socket gives when the listen queue
# is full because another client holds the monitor and others wait behind it.
_BUSY_ERRNOS = frozenset([errno.EAGAIN, errno.EWOULDBLOCK, errno.EINVAL])


def check_allowed(command, arguments=None):
    """Raise CommandNotAllowed unless ``command`` may be sent.

    ``qom-set`` is allowed only on :data:`WRITABLE_PROPERTIES`.
    """
    if command not in ALLOWED_COMMANDS:
        raise CommandNotAllowed('the QMP command %r is not in the allow-list of this collection (%s)'
                                % (command, ', '.join(sorted(ALLOWED_COMMANDS))))
    if command == 'qom-set':
        prop = (arguments or {}).get('property')
        if prop not in WRITABLE_PROPERTIES:
            raise CommandNotAllowed('qom-set may only write %s, not %r'
                                    % (', '.join(sorted(WRITABLE_PROPERTIES)), prop))


class TLSSettings(object):
    """x509 TLS for a TCP monitor (QEMU's tls-creds-x509 on the monitor's chardev)."""

    def __init__(self, ca, cert=None, key=None, server_name=None):
        self.ca = ca
        self.cert = cert
        self.key = key
        self.server_name = server_name

    def context(self):
        """An ssl.SSLContext that trusts only ``ca`` and presents the client certificate if any."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context


class _Client(QMPClient):
    """QMPClient without two costs of qemu.qmp 0.0.6 (pinned) that buy us nothing.

    - Its inbound and outbound hooks call ``str(message)`` - a
      ``json.dumps(indent=2)`` of every message - to pass it to
      ``logger.debug()``, even when nothing logs at DEBUG: about a fifth of the
      event loop's CPU for 1000 VMs (docs/performance.md). The hooks only log,
      so they are skipped unless the logger is enabled for DEBUG.
    - ``execute()`` serialises each command three times (it builds the message,
      copies it, then adds the id); :meth:`run` builds it once and keeps
      ``execute()``'s checks and errors (about a tenth of the event loop's CPU).
    """

    async def run(self, command, arguments=None):
        """``execute(command, arguments)``: the same result and the same exceptions."""
        if self.runstate != Runstate.RUNNING:
            raise StateError('%s is not connected (%s).' % (type(self).__name__, self.runstate.name),
                             self.runstate, Runstate.RUNNING)
        message = {'execute': command}
        if arguments is not None:
            message['arguments'] = arguments
        msg = Message(message, eager=False)
        reply = await self._execute(msg)
        if 'error' in reply:
            try:
                error_response = ErrorResponse(reply)
            except (KeyError, TypeError) as err:
                raise BadReplyError('QMP error reply is malformed', reply, msg) from err
            raise ExecuteError(error_response, msg, reply)
        if 'return' not in reply:
            raise BadReplyError("QMP reply is missing a 'error' or 'return' member", reply, msg)
        return reply['return']

    def _cb_outbound(self, msg):
        if self.logger.isEnabledFor(logging.DEBUG):
            return super(_Client, self)._cb_outbound(msg)
        return msg

    async def _bh_send_message(self):
        """qemu.qmp's writer step, with every message already queued sent in one write.

        qemu.qmp writes each queued message on its own (one ``send()`` each); the
        commands the engine pipelines are queued together, so they go out as one
        write of the same bytes, in the same order.
        """
        batch = [await self._outgoing.get()]
        while not self._outgoing.empty():
            batch.append(self._outgoing.get_nowait())
        try:
            self._do_send_all([self._cb_outbound(msg) for msg in batch])
        finally:
            for _msg in batch:
                self._outgoing.task_done()

    def _do_send_all(self, messages):
        self._writer.write(b''.join(bytes(msg) for msg in messages))

    def _cb_inbound(self, msg):
        if self.logger.isEnabledFor(logging.DEBUG):
            return super(_Client, self)._cb_inbound(msg)
        return msg


class _TLSClient(_Client):
    """QMPClient that runs TLS over a socket we connected, with an explicit server name.

    Two overrides of qemu.qmp 0.0.6 internals (the version is pinned):
    - its connect step passes no server_hostname for a connected socket, which
      asyncio refuses for TLS: add it;
    - QEMU 7.2's TLS monitor handles a TLS record only when the next one arrives
      (measured: every reply lags one command behind), so each message is followed
      by a separate record holding a newline, which QEMU's JSON parser ignores.
    """

    server_hostname = None

    def _do_send(self, msg):
        self._writer.write(bytes(msg))
        self._writer.write(b'\n')

    def _do_send_all(self, messages):
        for msg in messages:
            self._do_send(msg)

    async def _do_connect(self, address, ssl=None):  # pylint: disable=redefined-outer-name
        self._set_state(Runstate.CONNECTING)
        await asyncio.sleep(0)
        self._reader, self._writer = await asyncio.open_connection(
            sock=address, ssl=ssl, server_hostname=self.server_hostname, limit=self.readbuflen)


class Endpoint(object):
    """Where a QEMU monitor listens: a unix socket path or a TCP host and port (optionally TLS)."""

    def __init__(self, path=None, host=None, port=None, tls=None):
        self.path = path
        self.host = host
        self.port = port
        self.tls = tls

    @property
    def is_unix(self):
        return self.path is not None

    def default_name(self):
        """The name to use when neither the user nor QEMU gives one."""
        if self.is_unix:
            base = os.path.basename(self.path)
            stem = os.path.splitext(base)[0]
            return stem or base
        return '%s:%s' % (self.host, self.port)

    def __str__(self):
        if self.is_unix:
            return 'unix:%s' % self.path
        scheme = 'tls' if self.tls else 'tcp'
        if ':' in self.host:
            return '%s:[%s]:%s' % (scheme, self.host, self.port)
        return '%s:%s:%s' % (scheme, self.host, self.port)


class QMPSession(object):
    """One bounded, allow-listed QMP connection to one VM.

    Use ``async with QMPSession(endpoint, timeout) as session`` inside a
    coroutine. ``timeout`` is the budget in seconds for everything done on
    this connection (connect, greeting, every command); each step gets what
    is left of it. Raises only :class:`BalloonError` subclasses.
    """

    def __init__(self, endpoint, timeout):
        self.endpoint = endpoint
        self.timeout = timeout
        self._deadline = None
        self._client = None
        self._sock = None
        self._write_gates = []
        self.commands_sent = 0
        #: QEMU's version from the QMP greeting (``7.2.0``), once open.
        self.qemu_version = None

    def hold_writes_until(self, future):
        """Send no ``qom-set`` before ``future`` is done and succeeded (it raises its error instead).

        The engine verifies the balloon's path concurrently with the first reads;
        this keeps every write behind that verification.
        """
        self._write_gates.append(future)

    def _remaining(self, doing):
        left = self._deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise QMPTimeout('QEMU did not finish %s within the %s s timeout' % (doing, seconds(self.timeout)))
        return left

    async def __aenter__(self):
        await self.open()
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def open(self):
        self._deadline = asyncio.get_running_loop().time() + self.timeout
        self._sock = await self._connect_socket()
        # Created inside the coroutine: qemu.qmp binds asyncio objects to the running loop.
        tls_context = None
        if self.endpoint.tls:
            try:
                tls_context = self.endpoint.tls.context()
            except (OSError, ssl.SSLError) as exc:
                raise EndpointError('cannot load the TLS files for %s: %s' % (self.endpoint, _describe(exc)))
            self._client = _TLSClient(self.endpoint.default_name())
            self._client.server_hostname = self.endpoint.tls.server_name or self.endpoint.host
        else:
            self._client = _Client(self.endpoint.default_name())
        remaining = self._remaining('the QMP greeting')
        try:
            await asyncio.wait_for(self._client.connect(self._sock, ssl=tls_context), remaining)
        except asyncio.TimeoutError:
            tls_hint = '' if self.endpoint.is_unix or self.endpoint.tls else ', or the monitor expects TLS (set tls_ca)'
            raise MonitorBusy(
                'connected to %s but QEMU sent no QMP greeting within %s s: the monitor is busy '
                '(QEMU serves one client at a time and another client, such as libvirt, a second '
                'Ansible run or an open socat, holds it) or QEMU is hung%s; close the other client and retry'
                % (self.endpoint, seconds(self.timeout), tls_hint))
        except ConnectError as exc:
            raise _map_session_error(self.endpoint, exc.exc)
        self.qemu_version = greeting_version(self._client.greeting)

    async def _connect_socket(self):
        loop = asyncio.get_running_loop()
        if self.endpoint.is_unix:
            addresses = [(socket.AF_UNIX, self.endpoint.path)]
        else:
            remaining = self._remaining('resolving the host name')
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(self.endpoint.host, self.endpoint.port, type=socket.SOCK_STREAM), remaining)
            except socket.gaierror as exc:
                raise EndpointError('cannot resolve host %r: %s' % (self.endpoint.host, exc.strerror))
            addresses = [(info[0], info[4]) for info in infos]
        last_error = None
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                if family == socket.AF_UNIX:
                    # A unix connect never is "in progress": it succeeds, or fails at once, with
                    # EAGAIN when the listen queue is full (asyncio would wait on that as if in progress).
                    sock.connect(address)
                else:
                    remaining = self._remaining('connecting')
                    await asyncio.wait_for(loop.sock_connect(sock, address), remaining)
                return sock
            except asyncio.TimeoutError:
                sock.close()
                raise QMPTimeout('connecting to %s did not complete within %s s: the host does not answer'
                                 % (self.endpoint, seconds(self.timeout)))
            except OSError as exc:
                sock.close()
                last_error = exc
            except BaseException:
                sock.close()
                raise
        raise _map_connect_error(self.endpoint, last_error)

    async def execute(self, command, arguments=None):
        """Send one allow-listed command and return its result.

        :raise CommandNotAllowed: before anything is written, for any command
            outside :data:`ALLOWED_COMMANDS`.
        :raise CommandFailed: QEMU answered with an error.
        :raise QMPTimeout: no answer before the deadline.
        :raise EndpointError: the connection broke.
        """
        check_allowed(command, arguments)
        if command == 'qom-set':
            for gate in self._write_gates:
                await gate
        if self._client is None:
            raise EndpointError('no open QMP session to %s' % self.endpoint)
        remaining = self._remaining(command)
        self.commands_sent += 1
        try:
            if _timeout is None:
                return await asyncio.wait_for(self._client.run(command, arguments), remaining)
            async with _timeout(remaining):
                return await self._client.run(command, arguments)
        except ExecuteError as exc:
            raise CommandFailed(command, arguments, exc.error_class, str(exc))
        except asyncio.TimeoutError:
            raise QMPTimeout('QEMU did not answer %s within the %s s timeout' % (command, seconds(self.timeout)))
        except (QMPError, EOFError, OSError, ValueError) as exc:
            raise EndpointError('the connection to %s broke during %s: %s'
                                % (self.endpoint, command, _describe(exc)))

    async def close(self):
        """Disconnect at once; never raises."""
        client, sock = self._client, self._sock
        self._client = self._sock = None
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), 1.0)
            except BaseException:  # noqa: B036 - closing must never fail the VM's result  # pylint: disable=broad-except
                pass
        if sock is not None:
            sock.close()


def greeting_version(greeting):
    """``MAJOR.MINOR.MICRO`` from a QMP greeting (qemu.qmp's ``Greeting``), or None when it has none."""
    try:
        qemu = greeting.QMP.version['qemu']
        return '%d.%d.%d' % (qemu['major'], qemu['minor'], qemu['micro'])
    except (AttributeError, KeyError, TypeError):
        return None


def _describe(exc):
    text = str(exc)
    return text if text else type(exc).__name__


def _busy_queue_full(endpoint):
    return MonitorBusy('the monitor at %s is busy: another client holds it and QEMU serves one client at a time, '
                       'and its queue of waiting clients is full; close the other clients (libvirt, '
                       'another Ansible run, socat) and retry' % endpoint)


def _map_connect_error(endpoint, exc):
    """Turn a failed socket connect into one plain sentence."""
    if isinstance(exc, FileNotFoundError):
        return EndpointError('the socket %s does not exist: is the VM running, and is this its QMP socket?' % endpoint.path,
                             cause='socket gone')
    if isinstance(exc, PermissionError):
        return EndpointError('permission denied on %s: run the task as a user that may write to the socket '
                             '(usually root, with become: true)' % endpoint, cause='permission denied')
    if isinstance(exc, ConnectionRefusedError):
        if endpoint.is_unix:
            return EndpointError('nothing is listening on %s: QEMU has exited and left a stale socket, '
                                 'or this file is not a QMP socket' % endpoint, cause='not listening')
        return EndpointError('nothing is listening on %s: QEMU is not running or has no QMP monitor on that port' % endpoint,
                             cause='not listening')
    if isinstance(exc, OSError) and exc.errno in _BUSY_ERRNOS:
        return _busy_queue_full(endpoint)
    if isinstance(exc, OSError) and exc.errno == errno.ENOTSOCK:
        return EndpointError('%s is not a socket' % endpoint)
    return EndpointError('cannot connect to %s: %s' % (endpoint, _describe(exc)))


def _map_session_error(endpoint, exc):
    """Turn a failure after the socket connected (greeting, negotiation) into one sentence."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return EndpointError('TLS: the certificate of %s is not trusted: %s; check tls_ca and tls_server_name'
                             % (endpoint, exc.verify_message or _describe(exc)), cause='TLS failed')
    if isinstance(exc, ssl.SSLError):
        return EndpointError('TLS handshake with %s failed (%s): check that the monitor uses TLS and that '
                             'tls_cert/tls_key are accepted by it' % (endpoint, exc.reason or _describe(exc)), cause='TLS failed')
    if isinstance(exc, EOFError) and endpoint.tls:
        return EndpointError('%s closed the TLS connection before the QMP session started: the monitor probably '
                             'requires a client certificate it accepts (tls_cert and tls_key)' % endpoint)
    if isinstance(exc, EOFError):
        return EndpointError('%s closed the connection before the QMP session started: it is not a QMP '
                             'monitor, or QEMU is shutting down' % endpoint)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return EndpointError('%s reset the connection before the QMP session started' % endpoint)
    if isinstance(exc, OSError) and exc.errno in _BUSY_ERRNOS:
        return _busy_queue_full(endpoint)
    if isinstance(exc, QMPError) or isinstance(exc, ValueError):
        # qemu.qmp's text of a bad greeting runs over several lines with the raw bytes: keep the first.
        return EndpointError('%s is not a QMP server: it did not send a valid QMP greeting (%s)'
                             % (endpoint, _describe(exc).splitlines()[0].rstrip(' :')))
    return EndpointError('cannot start a QMP session with %s: %s' % (endpoint, _describe(exc)))
