# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Normalisation of QEMU's guest-stats and the health rules.

PRIVATE: not part of the collection's public API.

Pure functions, no I/O: the one place that decides what a stat is called,
which raw values mean "no value", and how healthy a VM's data is.
"""

from __future__ import annotations

import datetime

#: How QEMU encodes a stat the guest did not set: u64 -1 (current QEMU) or -1 (very old QEMU).
UNSET_VALUES = frozenset([18446744073709551615, -1])

#: Text of the GenericError old QEMU answered before the guest's first update.
NOT_UPDATED_YET = "guest hasn't updated any stats yet"

#: Data older than STALE_FACTOR x the polling interval is stale.
STALE_FACTOR = 3

HEALTH_OK = 'ok'
HEALTH_STALE = 'stale'
HEALTH_NEVER_UPDATED = 'never_updated'
HEALTH_POLLING_DISABLED = 'polling_disabled'
HEALTH_VM_NOT_RUNNING = 'vm_not_running'
HEALTH_STATES = (HEALTH_OK, HEALTH_STALE, HEALTH_NEVER_UPDATED, HEALTH_POLLING_DISABLED, HEALTH_VM_NOT_RUNNING)


def stat_name(qemu_name):
    """``stat-free-memory`` -> ``free_memory``; names QEMU adds later pass through the same way."""
    name = qemu_name[len('stat-'):] if qemu_name.startswith('stat-') else qemu_name
    return name.replace('-', '_')


def is_unset(value):
    # bool is an int in Python; QEMU never sends one here, so treat it as garbage, not a value.
    return value is None or isinstance(value, bool) or not isinstance(value, int) or value in UNSET_VALUES


def normalise_stats(raw_stats):
    """Return ``(stats, unsupported)`` from QEMU's ``stats`` object.

    ``stats`` maps snake_case names to an int or None (unset); ``unsupported``
    is the sorted list of names that are unset.
    """
    stats = {}
    unsupported = []
    for qemu_name, value in (raw_stats or {}).items():
        name = stat_name(qemu_name)
        if is_unset(value):
            stats[name] = None
            unsupported.append(name)
        else:
            stats[name] = value
    return stats, sorted(unsupported)


def memory_use(stats):
    """``(used_memory, used_percent)`` from total and free memory, or ``(None, None)``."""
    total = stats.get('total_memory')
    free = stats.get('free_memory')
    if total is None or free is None or total <= 0:
        return None, None
    used = max(total - free, 0)
    return used, round(100.0 * used / total, 1)


def data_age(last_update, now):
    """Seconds since the guest's last update, or None when it never answered."""
    if not last_update:
        return None
    return max(int(now) - int(last_update), 0)


def iso_time(epoch_seconds):
    if not epoch_seconds:
        return None
    moment = datetime.datetime.fromtimestamp(epoch_seconds, tz=datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def is_stale(age, interval):
    """True when data of this ``age`` is older than STALE_FACTOR polling intervals."""
    return age is not None and interval is not None and interval > 0 and age > STALE_FACTOR * interval


def health(interval, last_update, age, running):
    """Classify one VM's stats.

    Order matters, the first that applies wins:
    ``polling_disabled`` (interval 0; the last values stay readable),
    ``never_updated`` (the guest never answered: no driver, or still booting),
    ``vm_not_running`` (data stale because the VM is paused or stopped: its
    timer runs on the virtual clock), ``stale`` (running but no fresh data:
    the guest stopped answering and the timer is stalled), else ``ok``.
    """
    if not interval:
        return HEALTH_POLLING_DISABLED
    if not last_update:
        return HEALTH_NEVER_UPDATED
    if is_stale(age, interval):
        return HEALTH_STALE if running else HEALTH_VM_NOT_RUNNING
    return HEALTH_OK


def describe_stats(guest_stats, interval, status, now):
    """Build the per-VM fields of balloon_stats_info from raw QMP answers.

    ``guest_stats`` is qom-get guest-stats (or None when old QEMU said the
    guest never updated), ``interval`` the polling interval, ``status`` the
    query-status answer.
    """
    guest_stats = guest_stats or {}
    stats, unsupported = normalise_stats(guest_stats.get('stats'))
    last_update = guest_stats.get('last-update') or 0
    if is_unset(last_update):
        last_update = 0
    age = data_age(last_update, now)
    running = bool(status.get('running'))
    used, used_percent = memory_use(stats)
    return {
        'stats': stats,
        'unsupported': unsupported,
        'last_update': last_update,
        'last_update_iso': iso_time(last_update),
        'age': age,
        'polling_interval': interval,
        'vm_status': status.get('status'),
        'health': health(interval, last_update, age, running),
        'used_memory': used,
        'used_percent': used_percent,
    }
