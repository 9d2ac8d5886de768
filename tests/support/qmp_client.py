# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one QMP client of the test tooling: a plain socket, standard library only, Python 3.7+.

The tests talk to QEMU (and to the fake QEMU) through this module, never through the code
under test or qemu.qmp. Its users, and how each finds it:

- tests/guest/vm.py (a script and a library: the guests of make demo, the guest_stats and
  role_balloon_stats targets, the benchmark) puts this directory on sys.path;
- tests/integration/targets/setup_qemu/files/qemu_vm.py (the integration targets' VMs, run in
  place on this machine) finds it in the nearest ancestor that has tests/support/qmp_client.py;
- tests/unit/support/test_fake_qmp.py imports it as
  ``ansible_collections.qmp.balloon.tests.support.qmp_client``.

Two levels:

- :class:`QMPStream`: one connection, message by message, nothing hidden (the greeting, the
  raw bytes of a line, events kept in ``events``); it sends compact JSON without a newline,
  as qemu.qmp does. The fake's tests check the wire with it.
- :class:`QMPSession`: one short session for tools (connect, greeting, ``qmp_capabilities``,
  commands, close), with every socket operation bounded by ``timeout``. A monitor held by
  another client accepts the connection but never greets: that surfaces as
  :class:`MonitorUnreachable` instead of a hang.

An address is a unix socket path (str) or a ``(host, port)`` pair; :func:`parse_endpoint`
turns ``unix:PATH`` / ``tcp:HOST:PORT`` into one.
"""

from __future__ import annotations

import json
import socket

DEFAULT_TIMEOUT = 5.0


class QMPError(Exception):
    """Talking to a QMP monitor failed."""


class MonitorUnreachable(QMPError):
    """No socket, connection refused, or no greeting in time (another client holds the monitor)."""


class CommandFailed(QMPError):
    """QEMU answered a command with an error; `error_class` and `desc` are QEMU's."""

    def __init__(self, command, error_class, desc):
        super().__init__('%s: %s: %s' % (command, error_class, desc))
        self.command = command
        self.error_class = error_class
        self.desc = desc


def parse_endpoint(endpoint):
    """``unix:PATH`` -> PATH, ``tcp:HOST:PORT`` -> (HOST, PORT).

    :raise ValueError: for anything else.
    """
    kind, _sep, rest = endpoint.partition(':')
    if kind == 'unix' and rest:
        return rest
    if kind == 'tcp':
        host, _sep, port = rest.rpartition(':')
        if host and port.isdigit():
            return host, int(port)
    raise ValueError('endpoint must be unix:PATH or tcp:HOST:PORT, not %r' % endpoint)


def connect(address, timeout=DEFAULT_TIMEOUT):
    """A socket connected to `address` (a unix path or a (host, port) pair), with `timeout` set.

    :raise OSError: when the connection fails (socket.timeout included).
    """
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


class QMPStream:
    """One QMP connection read line by line: what the monitor sends, as it sends it. Use it with `with`."""

    def __init__(self, address, timeout=DEFAULT_TIMEOUT):
        self.sock = connect(address, timeout)
        self.buffer = b''
        self.events = []

    def read_line(self, timeout=None):
        """One line including its newline; what is left (maybe b'') once the monitor closes.

        :raise OSError: socket.timeout when nothing comes within the socket's timeout.
        """
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b'\n' not in self.buffer:
            data = self.sock.recv(1 << 20)
            if not data:
                rest, self.buffer = self.buffer, b''
                return rest
            self.buffer += data
        line, _sep, self.buffer = self.buffer.partition(b'\n')
        return line + b'\n'

    def read(self):
        """The next message (greeting, reply or event).

        :raise EOFError: when the monitor closed the connection.
        """
        line = self.read_line()
        if not line:
            raise EOFError('monitor closed the connection')
        return json.loads(line)

    greet = read

    def send(self, message):
        """Send bytes as they are, or a dict as compact JSON without a newline (as qemu.qmp does)."""
        data = message if isinstance(message, bytes) else json.dumps(message, separators=(',', ':')).encode()
        self.sock.sendall(data)

    def execute(self, command, arguments=None, **extra):
        """Send one command (`extra`: more members such as ``id``); return the next reply, keeping events in `events`."""
        message = {'execute': command}
        if arguments is not None:
            message['arguments'] = arguments
        message.update(extra)
        self.send(message)
        while True:
            reply = self.read()
            if 'event' not in reply:
                return reply
            self.events.append(reply)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class QMPSession:
    """One short QMP session: connect, greeting, negotiation, commands, close. Use it with `with`."""

    def __init__(self, address, timeout=DEFAULT_TIMEOUT):
        self.address = address
        self.timeout = timeout
        self._stream = None

    def __enter__(self):
        try:
            self._stream = QMPStream(self.address, self.timeout)
            greeting = self._stream.greet()
        except socket.timeout as exc:
            self.close()
            raise MonitorUnreachable('%s: no QMP greeting within %.1f s (monitor busy with another client?)'
                                     % (self.address, self.timeout)) from exc
        except (OSError, EOFError) as exc:
            self.close()
            raise MonitorUnreachable('%s: %s' % (self.address, exc)) from exc
        if 'QMP' not in greeting:
            self.close()
            raise MonitorUnreachable('%s: not a QMP greeting: %r' % (self.address, greeting))
        try:
            self.execute('qmp_capabilities')
        except QMPError:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self._stream is not None:
            self._stream.close()
        self._stream = None

    def reply(self, command, arguments=None):
        """Run one command; return QEMU's reply object ({'return': …} or {'error': …}), skipping events.

        :raise MonitorUnreachable: no reply within the timeout, or the connection broke.
        """
        try:
            return self._stream.execute(command, arguments)
        except socket.timeout as exc:
            raise MonitorUnreachable('%s: no reply to %s within %.1f s' % (self.address, command, self.timeout)) from exc
        except (OSError, EOFError) as exc:
            raise MonitorUnreachable('%s: %s: %s' % (self.address, command, exc)) from exc

    def execute(self, command, arguments=None):
        """Run one command; return its 'return' value.

        :raise CommandFailed: QEMU answered with an error.
        :raise MonitorUnreachable: as :meth:`reply`.
        """
        answer = self.reply(command, arguments)
        if 'error' in answer:
            raise CommandFailed(command, answer['error'].get('class'), answer['error'].get('desc'))
        return answer['return']
