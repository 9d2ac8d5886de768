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
    """Base class: one VM could not be handled; ``str()`` says why and what to do."""


class EndpointError(BalloonError):
    """The monitor could not be reached or the connection broke."""


class MonitorBusy(EndpointError):
    """Another client holds the monitor (QEMU serves one at a time)."""


class QMPTimeout(BalloonError):
    """A step did not finish within the VM's timeout."""


class CommandNotAllowed(BalloonError):
    """The engine was asked to send a command outside the allow-list; nothing was sent."""


class BalloonNotFound(BalloonError):
    """The VM has no usable virtio-balloon device (or more than one candidate)."""


class LibvirtUnreachable(EndpointError):
    """libvirtd could not be reached, or the connection broke. Fails the whole batch."""


class LibvirtTimeout(BalloonError):
    """libvirt did not answer within the timeout."""


class DomainNotFound(BalloonError):
    """libvirt has no domain of that name or UUID."""


class VMShutOff(BalloonError):
    """The VM is shut off (a libvirt domain that is defined but not running): it has no live balloon."""

    def __init__(self, consequence):
        super().__init__('the domain is shut off: %s' % consequence)


class CommandFailed(BalloonError):
    """QEMU answered a command with an error."""

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
