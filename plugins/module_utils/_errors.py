# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Exceptions of qmp.balloon's engine.

PRIVATE: not part of the collection's public API.

Every failure the engine can meet for one VM is one of these, and ``str()``
of each is one plain sentence for the user: no traceback ever reaches them.
"""

from __future__ import annotations


class BalloonError(Exception):
    """Base class: one VM could not be handled; ``str()`` says why and what to do.

    ``cause`` is a few words that group failures in a batch's message (``28 monitor busy
    (vm1, vm2, ...)``); a subclass sets its own, an instance may be given a finer one.
    """

    cause = 'error'

    def __init__(self, message='', cause=None):
        super().__init__(message)
        if cause is not None:
            self.cause = cause


class EndpointError(BalloonError):
    """The monitor could not be reached or the connection broke."""

    cause = 'unreachable'


class MonitorBusy(EndpointError):
    """Another client holds the monitor (QEMU serves one at a time)."""

    cause = 'monitor busy'


class QMPTimeout(BalloonError):
    """A step did not finish within the VM's timeout."""

    cause = 'timeout'


class CommandNotAllowed(BalloonError):
    """The engine was asked to send a command outside the allow-list; nothing was sent."""

    cause = 'command not allowed'


class BalloonNotFound(BalloonError):
    """The VM has no usable virtio-balloon device (or more than one candidate)."""

    cause = 'balloon not found'


class NoBalloonDevice(BalloonNotFound):
    """The VM has no balloon device at all: a state the modules report (unless require_balloon), not a failure."""

    cause = 'no balloon device'


class LibvirtUnreachable(EndpointError):
    """libvirtd could not be reached, or the connection broke. Fails the whole batch."""

    cause = 'libvirt unreachable'


class LibvirtTimeout(BalloonError):
    """libvirt did not answer within the timeout."""

    cause = 'timeout'


class DomainNotFound(BalloonError):
    """libvirt has no domain of that name or UUID."""

    cause = 'no such domain'


class VMShutOff(BalloonError):
    """The VM is shut off (a libvirt domain that is defined but not running): it has no live balloon."""

    cause = 'shut off'

    def __init__(self, consequence):
        super().__init__('the domain is shut off: %s' % consequence)


class CommandFailed(BalloonError):
    """QEMU answered a command with an error."""

    cause = 'QEMU refused a command'

    def __init__(self, command, arguments, error_class, desc):
        self.command = command
        self.arguments = arguments or {}
        self.error_class = error_class
        self.desc = desc
        super().__init__('QEMU refused %s (%s): %s' % (_describe_call(command, self.arguments), error_class, desc))


def _describe_call(command, arguments):
    if command in ('qom-get', 'qom-set') and 'property' in arguments:
        text = '%s of %s on %s' % (command, arguments['property'], arguments.get('path'))
        if command == 'qom-set':
            text += ' = %r' % (arguments.get('value'),)
        return text
    if command == 'qom-list' and 'path' in arguments:
        return 'qom-list of %s' % arguments['path']
    return command


def seconds(value):
    """A number of seconds as it reads in a sentence: ``5``, ``0.5``, ``2.25``."""
    return '%g' % value
