# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Finding a VM's balloon device in its QOM tree, over QMP.

PRIVATE: not part of the collection's public API.

:func:`locate_balloon` finds the path (or takes the given ``qom_path``);
:func:`verify_balloon` checks that a given ``qom_path`` lists the balloon's two
properties. The QMP executor sends the verification together with the operation's first
reads and holds every write until it has passed. A path found by its type is not listed
again: QEMU gives every ``virtio-balloon-*`` type both properties, and the operation's
``qom-get`` of them comes before any write (docs/design.md, "Discovery").
"""

from __future__ import annotations

import re

from ansible_collections.qmp.balloon.plugins.module_utils._errors import BalloonNotFound, CommandFailed, NoBalloonDevice
from ansible_collections.qmp.balloon.plugins.module_utils._qmp import POLLING_PROPERTY, STATS_PROPERTY

#: Where QEMU puts devices created with -device id=... and without id=.
PERIPHERAL_CONTAINERS = ('/machine/peripheral', '/machine/peripheral-anon')
#: Bounds of the fallback walk of the QOM tree (qom-list calls, depth).
WALK_MAX_LISTS = 64
WALK_MAX_DEPTH = 6

_BALLOON_TYPE = re.compile(r'^child<virtio-balloon(-[a-z0-9-]+)?>$')
_CHILD_TYPE = re.compile(r'^child<.+>$')


def is_balloon_type(qom_type):
    return bool(_BALLOON_TYPE.match(qom_type or ''))


def _join(parent, child):
    return parent.rstrip('/') + '/' + child


async def _qom_list(session, path):
    return await session.execute('qom-list', {'path': path})


async def verify_balloon(session, path, given):
    """Check that ``path`` exists and lists the polling property.

    :raise BalloonNotFound: the path does not exist (when ``given`` by the user) or is not a balloon.
    :raise CommandFailed: QEMU refused the qom-list for another reason.
    """
    try:
        properties = await _qom_list(session, path)
    except CommandFailed as exc:
        if given and exc.error_class == 'DeviceNotFound':
            raise BalloonNotFound('qom_path %s does not exist in this VM (%s)' % (path, exc.desc))
        raise
    names = set(entry.get('name') for entry in properties if isinstance(entry, dict))
    if POLLING_PROPERTY not in names or STATS_PROPERTY not in names:
        raise BalloonNotFound('qom_path %s is not a virtio-balloon device: it has no %s property'
                              % (path, POLLING_PROPERTY))
    return path


async def _walk_for_balloons(session, skip):
    """Bounded breadth-first walk over child<> properties from /machine."""
    found = []
    queue = [('/machine', 0)]
    seen = set(skip)
    lists = 0
    while queue and lists < WALK_MAX_LISTS:
        path, depth = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        lists += 1
        try:
            children = await _qom_list(session, path)
        except CommandFailed:
            continue
        for entry in children:
            qom_type = entry.get('type', '') if isinstance(entry, dict) else ''
            child = _join(path, entry.get('name', '')) if isinstance(entry, dict) else None
            if not child:
                continue
            if is_balloon_type(qom_type):
                found.append(child)
            elif _CHILD_TYPE.match(qom_type) and depth + 1 < WALK_MAX_DEPTH:
                queue.append((child, depth + 1))
    return found


async def locate_balloon(session, qom_path=None):
    """Return the QOM path of the VM's balloon device, not yet verified.

    With ``qom_path`` given, return it as is (no command). Otherwise look in
    /machine/peripheral (devices with id=), /machine/peripheral-anon, then a
    bounded walk of the tree. The caller verifies the path with :func:`verify_balloon`.

    :raise NoBalloonDevice: there is no balloon.
    :raise BalloonNotFound: more than one candidate.
    """
    if qom_path:
        return qom_path
    candidates = []
    for container in PERIPHERAL_CONTAINERS:
        try:
            children = await _qom_list(session, container)
        except CommandFailed:
            continue
        candidates = [_join(container, entry['name']) for entry in children
                      if isinstance(entry, dict) and 'name' in entry and is_balloon_type(entry.get('type'))]
        if candidates:
            break
    if not candidates:
        candidates = await _walk_for_balloons(session, PERIPHERAL_CONTAINERS)
    if not candidates:
        raise NoBalloonDevice('no virtio-balloon device in this VM: QEMU serves guest memory statistics only '
                              'through one; add -device virtio-balloon-pci,id=balloon0 to the VM (on Proxmox VE, '
                              'balloon: 0 removes it: qm set VMID --delete balloon, then stop and start the VM)')
    if len(candidates) > 1:
        raise BalloonNotFound('found %d balloon devices (%s): set qom_path to the one to use'
                              % (len(candidates), ', '.join(candidates)))
    return candidates[0]
