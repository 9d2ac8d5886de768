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
HEALTH_DRIVER_NOT_LOADED = 'driver_not_loaded'
HEALTH_STATS_NOT_NEGOTIATED = 'stats_not_negotiated'
HEALTH_NO_BALLOON = 'no_balloon_device'
HEALTH_STATES = (HEALTH_OK, HEALTH_STALE, HEALTH_NEVER_UPDATED, HEALTH_POLLING_DISABLED, HEALTH_VM_NOT_RUNNING,
                 HEALTH_DRIVER_NOT_LOADED, HEALTH_STATS_NOT_NEGOTIATED, HEALTH_NO_BALLOON)

#: In x-query-virtio-status: the device status bit a loaded driver sets, and the feature of the stats queue.
DRIVER_OK = 'DRIVER_OK'
STATS_VQ_FEATURE = 'VIRTIO_BALLOON_F_STATS_VQ'


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


def health(interval, last_update, age, running, driver=None):
    """Classify one VM's stats.

    Order matters, the first that applies wins:
    ``polling_disabled`` (interval 0; the last values stay readable; right after a live
    migration the data even looks fresh: QEMU migrates neither the interval nor a running timer),
    with ``driver`` known (see :func:`driver_state`): ``driver_not_loaded`` (no DRIVER_OK in
    the device status) and ``stats_not_negotiated`` (no stats queue),
    ``never_updated`` (the guest never answered: no driver, or still booting),
    ``vm_not_running`` (data stale because the VM is paused or stopped: its
    timer runs on the virtual clock), ``stale`` (running but no fresh data:
    the guest stopped answering and the timer is stalled), else ``ok``.
    """
    if not interval:
        return HEALTH_POLLING_DISABLED
    if driver is not None and not driver.get('loaded'):
        return HEALTH_DRIVER_NOT_LOADED
    if driver is not None and not driver.get('stats_negotiated'):
        return HEALTH_STATS_NOT_NEGOTIATED
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


# ---------------------------------------------------------------------------------------------
# Section: diagnosis of a VM whose health is not ok
# ---------------------------------------------------------------------------------------------

def driver_state(virtio_status):
    """``{'loaded': bool, 'stats_negotiated': bool}`` from QEMU's ``x-query-virtio-status`` answer, or None.

    ``loaded``: the device status has DRIVER_OK (a guest driver set the device up).
    ``stats_negotiated``: the guest accepted VIRTIO_BALLOON_F_STATS_VQ. Entries are QEMU's
    ``NAME: description`` strings; an answer without ``status`` is not understood (None).
    """
    if not isinstance(virtio_status, dict) or not isinstance(virtio_status.get('status'), dict):
        return None
    statuses = virtio_status['status'].get('statuses') or []
    features = (virtio_status.get('guest-features') or {}).get('dev-features') or []
    return {
        'loaded': any(DRIVER_OK in str(entry) for entry in statuses),
        'stats_negotiated': any(str(entry).startswith(STATS_VQ_FEATURE) for entry in features),
    }


#: What to do about a VM that is not running, by QEMU's RunState (query-status): resuming is
#: right only for a pause; a VM migrated away must never be resumed (it would run twice).
_STATUS_ACTIONS = {
    'paused': 'resume it (cont)',
    'prelaunch': 'resume it (cont)',
    'debug': 'resume it (cont) when the debugger is done',
    'suspended': 'the guest is in ACPI suspend: wake it (system_wakeup)',
    'postmigrate': 'it was migrated away: read the destination VM instead, and do not resume this one (it would run twice)',
    'inmigrate': 'it waits for an incoming migration: read it once the migration completed',
    'finish-migrate': 'a migration is finishing: read the destination once it completed',
    'save-vm': 'a snapshot is being saved: read it again when that ends',
    'restore-vm': 'a snapshot is being restored: read it again when that ends',
    'io-error': 'a disk I/O error stopped it: fix the storage, then resume it (cont)',
    'guest-panicked': 'the guest kernel panicked: restart the VM',
    'internal-error': 'QEMU hit an internal error: restart the VM',
    'shutdown': 'the guest shut down (QEMU still runs): start it again',
    'watchdog': 'its watchdog fired: restart or resume the VM',
}


def _status_action(status):
    """What to do about the VM's run state ('' when it runs), as a clause."""
    if (status or {}).get('running'):
        return ''
    vm_status = (status or {}).get('status') or 'not running'
    return _STATUS_ACTIONS.get(vm_status, 'start or resume it')


def advice(health_value, status, driver, last_update):
    """One sentence of what to do for a VM whose health is ``health_value`` (None for ``ok``)."""
    vm_status = (status or {}).get('status') or 'not running'
    action = _status_action(status)
    not_running = '; the VM is %s: %s' % (vm_status, action) if action else ''
    load_driver = ('load it (modprobe virtio_balloon on Linux; install the virtio-win Balloon driver on Windows)')
    if health_value == HEALTH_POLLING_DISABLED:
        shown = ("; the values shown are from the guest's last report (last_update), not refreshed while polling is off"
                 if last_update else '')
        missing = ''
        if driver is not None and not driver.get('loaded'):
            missing = ("; QEMU also reports the guest's balloon driver no longer active (the guest is suspended or the "
                       'driver was unloaded)' if last_update else
                       '; QEMU also reports no guest balloon driver loaded: %s' % load_driver)
        return ('polling is off (interval 0): set the interval with qmp.balloon.balloon_stats_polling (QEMU keeps it '
                'neither across a live migration nor a restart, so re-apply it after either)%s%s%s'
                % (shown, missing, not_running))
    if health_value == HEALTH_DRIVER_NOT_LOADED and last_update:
        # It answered before: a Linux guest that suspends (freeze) resets the device, as does
        # unloading the module (measured on QEMU 7.2 with a suspend-to-idle guest).
        return ("the guest's virtio-balloon driver is no longer active although the guest sent stats before: "
                'the guest is suspended (wake it) or the driver was unloaded (modprobe virtio_balloon on Linux; '
                'the virtio-win Balloon driver on Windows)%s' % not_running)
    if health_value == HEALTH_DRIVER_NOT_LOADED:
        return ('the guest has no virtio-balloon driver loaded: %s, or wait if the guest is still booting%s'
                % (load_driver, not_running))
    if health_value == HEALTH_STATS_NOT_NEGOTIATED:
        return ("the guest's balloon driver is loaded but did not accept the stats queue (VIRTIO_BALLOON_F_STATS_VQ): "
                'update the guest kernel or virtio-win driver')
    if health_value == HEALTH_NEVER_UPDATED:
        known = 'the guest driver is loaded but ' if driver else ''
        return ('%sthe guest never sent stats: on Windows start the Balloon service (virtio-win blnsvr); a Linux guest '
                'sends them once virtio_balloon loads, so wait if it is booting, else re-arm with '
                'qmp.balloon.balloon_stats_polling rearm: always%s' % (known, not_running))
    if health_value == HEALTH_STALE:
        return ('the VM runs but the guest stopped answering and the stats timer stalled: re-arm it with '
                'qmp.balloon.balloon_stats_polling rearm: stale')
    if health_value == HEALTH_VM_NOT_RUNNING:
        return 'the VM is %s and its stats timer runs only while it runs: %s' % (vm_status, action or 'start or resume it')
    return None


def diagnose(fields, status, driver):
    """The fields a VM whose health is not ``ok`` gets: ``health`` refined by ``driver``, ``driver``, ``advice``.

    ``fields`` are :func:`describe_stats`' of the VM; ``driver`` is :func:`driver_state`'s
    answer or None (unknown: the health stays what the stats alone say).
    """
    refined = health(fields['polling_interval'], fields['last_update'], fields['age'], bool((status or {}).get('running')), driver)
    return {'health': refined, 'driver': driver, 'advice': advice(refined, status, driver, fields['last_update'])}
