# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bench only (not shipped): the filter a libvirt user would write to read ``virsh domstats --balloon``.

``{{ result.stdout | qbb_domstats_balloon }}`` -> one dict per domain, in virsh's order:
``{'name': 'vm1', 'current': 65536, 'maximum': 65536, 'rss': ..., 'last-update': 0, ...}``
(the ``balloon.`` prefix dropped, numbers as int). bench/run.py's (a-virsh) pairs it with one
``ansible.builtin.command: virsh -c URI domstats --balloon`` task per hypervisor.
"""

from __future__ import annotations


def domstats_balloon(text):
    domains = []
    for line in (text or '').splitlines():
        line = line.strip()
        if line.startswith('Domain:'):
            domains.append({'name': line.split(':', 1)[1].strip().strip("'")})
        elif domains and '=' in line:
            key, value = line.split('=', 1)
            key = key[len('balloon.'):] if key.startswith('balloon.') else key
            try:
                domains[-1][key] = int(value)
            except ValueError:
                domains[-1][key] = value
    return domains


class FilterModule(object):
    def filters(self):
        return {'qbb_domstats_balloon': domstats_balloon}
