# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The options every qmp.balloon module shares, and their defaults: one home for each.

PRIVATE: not part of the collection's public API.

Documented once in the ``qmp.balloon._common`` doc fragment (validate-modules checks that
the documented defaults are these). The executors take their defaults from here too, so a
default changes in one place.
"""

from __future__ import annotations

TRANSPORT_QMP = 'qmp'
TRANSPORT_LIBVIRT = 'libvirt'

#: Seconds for each VM's whole exchange (docs/design.md, "QMP sessions").
DEFAULT_TIMEOUT = 5.0
#: A monitor that has not answered in an hour will not; an infinite timeout would hang the play.
MAX_TIMEOUT = 3600
#: VMs served at once, for both transports (docs/design.md, "QMP sessions": measured, 4 is as fast as 32 on local sockets).
DEFAULT_CONCURRENCY = 4
#: libvirt's URI when libvirt_uri is not given (transport libvirt only).
DEFAULT_LIBVIRT_URI = 'qemu:///system'

#: How one VM is named and reached: top-level options for a single VM, and the suboptions of each ``targets`` entry.
_VM_OPTIONS = dict(
    name=dict(type='str'),
    socket=dict(type='path'),
    host=dict(type='str'),
    port=dict(type='int'),
    qom_path=dict(type='str'),
    domain=dict(type='str'),
)


def _vm_options():
    """A fresh copy of the per-VM options (AnsibleModule may annotate the specs it is given)."""
    return dict((option, dict(spec)) for option, spec in _VM_OPTIONS.items())


TARGET_OPTIONS = _vm_options()

COMMON_ARGUMENT_SPEC = _vm_options()
COMMON_ARGUMENT_SPEC.update(
    targets=dict(type='list', elements='dict', options=TARGET_OPTIONS,
                 mutually_exclusive=[('socket', 'host'), ('socket', 'port')],
                 required_together=[('host', 'port')]),
    # Paths and shell globs, expanded on the managed host (_targets.expand_sockets).
    sockets=dict(type='list', elements='path'),
    allow_empty=dict(type='bool', default=False),
    require_balloon=dict(type='bool', default=False),
    tls_ca=dict(type='path'),
    tls_cert=dict(type='path'),
    # A path to the key file, not the key itself: nothing secret to hide from logs.
    tls_key=dict(type='path', no_log=False),
    tls_server_name=dict(type='str'),
    timeout=dict(type='float', default=DEFAULT_TIMEOUT),
    concurrency=dict(type='int', default=DEFAULT_CONCURRENCY),
    fail_on_error=dict(type='bool', default=True),
    transport=dict(type='str', default=TRANSPORT_QMP, choices=[TRANSPORT_QMP, TRANSPORT_LIBVIRT]),
    # No default in the spec: qemu:///system applies with transport libvirt only, and a URI given
    # with transport qmp is refused.
    libvirt_uri=dict(type='str'),
    all_domains=dict(type='bool', default=False),
)

COMMON_MUTUALLY_EXCLUSIVE = [
    ('socket', 'host'),
    ('socket', 'port'),
    ('targets', 'socket'),
    ('targets', 'host'),
    ('targets', 'port'),
    ('targets', 'qom_path'),
    ('targets', 'name'),
    ('sockets', 'socket'),
    ('sockets', 'host'),
    ('sockets', 'port'),
    ('sockets', 'qom_path'),
    ('sockets', 'name'),
]
# "One of socket, host, targets, sockets" (qmp) or "domain, targets, all_domains" (libvirt) is checked in
# _targets, per transport; for qmp with the message AnsibleModule's required_one_of gave.
COMMON_REQUIRED_TOGETHER = [('host', 'port'), ('tls_cert', 'tls_key')]
COMMON_REQUIRED_BY = {'tls_cert': 'tls_ca', 'tls_server_name': 'tls_ca'}

#: Options that only mean something to one transport; given to the other, they are refused.
QMP_ONLY_OPTIONS = ('socket', 'host', 'port', 'qom_path', 'sockets', 'tls_ca', 'tls_cert', 'tls_key', 'tls_server_name')
#: QMP-only options that are booleans: refused with libvirt only when true.
QMP_ONLY_FLAGS = ('allow_empty',)
QMP_ONLY_TARGET_OPTIONS = ('socket', 'host', 'port', 'qom_path')
LIBVIRT_ONLY_OPTIONS = ('domain', 'all_domains', 'libvirt_uri')

#: How every refused input starts: nothing was sent to any VM.
INVALID_INPUT = 'Invalid input, no VM was touched: '


def invalid_input(errors):
    """The one message for all the input errors found (each names its option)."""
    return INVALID_INPUT + '; '.join(errors)


def libvirt_uri(params):
    """The libvirt URI of the task: ``libvirt_uri``, else qemu:///system."""
    return params['libvirt_uri'] if params['libvirt_uri'] is not None else DEFAULT_LIBVIRT_URI
