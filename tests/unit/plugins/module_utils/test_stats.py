# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tables of cases for the stats normalisation and the health rules."""

from __future__ import annotations

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _stats

U64_UNSET = 18446744073709551615


@pytest.mark.parametrize('qemu_name, expected', [
    ('stat-free-memory', 'free_memory'),
    ('stat-swap-in', 'swap_in'),
    ('stat-htlb-pgalloc', 'htlb_pgalloc'),
    ('stat-oom-kills', 'oom_kills'),            # QEMU 9.2+ names pass through
    ('stat-direct-reclaims', 'direct_reclaims'),
    ('stat-some-future-stat', 'some_future_stat'),
    ('no-prefix', 'no_prefix'),
])
def test_stat_name(qemu_name, expected):
    assert _stats.stat_name(qemu_name) == expected


@pytest.mark.parametrize('raw, stats, unsupported', [
    ({}, {}, []),
    (None, {}, []),
    ({'stat-free-memory': 1024, 'stat-total-memory': U64_UNSET},
     {'free_memory': 1024, 'total_memory': None}, ['total_memory']),
    ({'stat-swap-in': -1, 'stat-swap-out': 0}, {'swap_in': None, 'swap_out': 0}, ['swap_in']),   # very old QEMU
    ({'stat-oom-kills': 3, 'stat-alloc-stalls': U64_UNSET},
     {'oom_kills': 3, 'alloc_stalls': None}, ['alloc_stalls']),
    ({'stat-free-memory': 'garbage', 'stat-disk-caches': True},
     {'free_memory': None, 'disk_caches': None}, ['disk_caches', 'free_memory']),
    ({'stat-major-faults': U64_UNSET - 1}, {'major_faults': U64_UNSET - 1}, []),   # only the exact sentinel is unset
])
def test_normalise_stats(raw, stats, unsupported):
    assert _stats.normalise_stats(raw) == (stats, unsupported)


@pytest.mark.parametrize('stats, used, percent', [
    ({'total_memory': 1000, 'free_memory': 250}, 750, 75.0),
    ({'total_memory': 3, 'free_memory': 2}, 1, 33.3),
    ({'total_memory': 1000, 'free_memory': None}, None, None),
    ({'total_memory': None, 'free_memory': 10}, None, None),
    ({'free_memory': 10}, None, None),
    ({'total_memory': 0, 'free_memory': 0}, None, None),
    ({'total_memory': 100, 'free_memory': 150}, 0, 0.0),    # never negative
])
def test_memory_use(stats, used, percent):
    assert _stats.memory_use(stats) == (used, percent)


@pytest.mark.parametrize('interval, last_update, age, running, expected', [
    (0, 0, None, True, 'polling_disabled'),
    (0, 1700000000, 500, True, 'polling_disabled'),     # disabled keeps old values readable
    (10, 0, None, True, 'never_updated'),
    (10, 0, None, False, 'never_updated'),
    (10, 1700000000, 5, True, 'ok'),
    (10, 1700000000, 30, True, 'ok'),                   # exactly 3 x interval is still fresh
    (10, 1700000000, 31, True, 'stale'),
    (10, 1700000000, 31, False, 'vm_not_running'),
    (10, 1700000000, 5, False, 'ok'),                   # paused with fresh data
    (1, 1700000000, 4, True, 'stale'),
])
def test_health(interval, last_update, age, running, expected):
    assert _stats.health(interval, last_update, age, running) == expected


@pytest.mark.parametrize('last_update, now, expected', [
    (0, 1700000100, None),
    (1700000000, 1700000100, 100),
    (1700000000, 1699999990, 0),        # clock skew never gives a negative age
    (1700000000, 1700000000.9, 0),
])
def test_data_age(last_update, now, expected):
    assert _stats.data_age(last_update, now) == expected


def test_iso_time():
    assert _stats.iso_time(0) is None
    assert _stats.iso_time(1795794731) == '2026-11-27T15:52:11Z'


def test_describe_stats_full_record():
    guest_stats = {'stats': {'stat-total-memory': 1000, 'stat-free-memory': 400, 'stat-htlb-pgfail': U64_UNSET},
                   'last-update': 1700000000}
    record = _stats.describe_stats(guest_stats, 10, {'status': 'running', 'running': True}, 1700000004)
    assert record == {
        'stats': {'total_memory': 1000, 'free_memory': 400, 'htlb_pgfail': None},
        'unsupported': ['htlb_pgfail'],
        'last_update': 1700000000,
        'last_update_iso': '2023-11-14T22:13:20Z',
        'age': 4,
        'polling_interval': 10,
        'vm_status': 'running',
        'health': 'ok',
        'used_memory': 600,
        'used_percent': 60.0,
    }


def test_describe_stats_old_qemu_never_updated():
    # Old QEMU answered an error before the first update; the engine passes None.
    record = _stats.describe_stats(None, 5, {'status': 'paused', 'running': False}, 1700000000)
    assert record['stats'] == {}
    assert record['last_update'] == 0
    assert record['age'] is None
    assert record['health'] == 'never_updated'
    assert record['vm_status'] == 'paused'


#: A guest-stats reply of QEMU 9.2 with a Linux 6.12+ guest: the ten classic stats and the six new ones,
#: in QEMU's tag order (balloon_stat_names), with values of the units documented in docs/stats.md.
QEMU_9_2_REPLY = {
    'stats': {
        'stat-swap-in': 4096, 'stat-swap-out': 8192, 'stat-major-faults': 1201, 'stat-minor-faults': 2451021,
        'stat-free-memory': 84869120, 'stat-total-memory': 231706624, 'stat-available-memory': 160653312,
        'stat-disk-caches': 70000640, 'stat-htlb-pgalloc': 0, 'stat-htlb-pgfail': 0,
        'stat-oom-kills': 2, 'stat-alloc-stalls': 17, 'stat-async-scans': 123456, 'stat-direct-scans': 2345,
        'stat-async-reclaims': 100000, 'stat-direct-reclaims': 2000,
    },
    'last-update': 1700000000,
}


def test_a_qemu_9_2_reply_with_all_sixteen_stats_passes_through():
    fields = _stats.describe_stats(QEMU_9_2_REPLY, 10, {'status': 'running', 'running': True}, 1700000002)
    assert len(fields['stats']) == 16 and fields['unsupported'] == []
    assert fields['stats']['oom_kills'] == 2 and fields['stats']['alloc_stalls'] == 17
    assert fields['stats']['async_scans'] == 123456 and fields['stats']['direct_reclaims'] == 2000
    assert fields['health'] == 'ok' and fields['used_memory'] == 231706624 - 84869120


def test_a_qemu_9_2_reply_from_an_older_guest_lists_the_new_stats_unsupported():
    raw = dict(QEMU_9_2_REPLY['stats'])
    for name in ('stat-oom-kills', 'stat-alloc-stalls', 'stat-async-scans', 'stat-direct-scans', 'stat-async-reclaims',
                 'stat-direct-reclaims'):
        raw[name] = U64_UNSET
    stats, unsupported = _stats.normalise_stats(raw)
    assert unsupported == ['alloc_stalls', 'async_reclaims', 'async_scans', 'direct_reclaims', 'direct_scans', 'oom_kills']
    assert stats['free_memory'] == 84869120


#: x-query-virtio-status of QEMU 7.2 (measured): no guest driver, and a Linux guest with virtio_balloon loaded.
NO_DRIVER = {'status': {'statuses': []}, 'guest-features': {'dev-features': []},
             'host-features': {'dev-features': ['VIRTIO_BALLOON_F_PAGE_POISON: Guest is able to use the page poison feature',
                                                'VIRTIO_BALLOON_F_STATS_VQ: Guest memory stats VQ available']}}
LOADED = {'status': {'statuses': ['VIRTIO_CONFIG_S_ACKNOWLEDGE: Valid virtio device found',
                                  'VIRTIO_CONFIG_S_DRIVER: Guest OS compatible with device',
                                  'VIRTIO_CONFIG_S_FEATURES_OK: Feature negotiation complete',
                                  'VIRTIO_CONFIG_S_DRIVER_OK: Driver setup and ready']},
          'guest-features': {'dev-features': ['VIRTIO_BALLOON_F_STATS_VQ: Guest memory stats VQ available']}}


@pytest.mark.parametrize('answer, expected', [
    (NO_DRIVER, {'loaded': False, 'stats_negotiated': False}),
    (LOADED, {'loaded': True, 'stats_negotiated': True}),
    (dict(LOADED, **{'guest-features': {'dev-features': []}}), {'loaded': True, 'stats_negotiated': False}),
    ({}, None),
    (None, None),
    ({'status': 'weird'}, None),
])
def test_driver_state(answer, expected):
    assert _stats.driver_state(answer) == expected


@pytest.mark.parametrize('interval, last_update, age, running, driver, expected', [
    (0, 5, 1, True, {'loaded': True, 'stats_negotiated': True}, 'polling_disabled'),   # after a live migration
    (0, 0, None, True, {'loaded': False, 'stats_negotiated': False}, 'polling_disabled'),
    (10, 0, None, True, {'loaded': False, 'stats_negotiated': False}, 'driver_not_loaded'),
    (10, 100, 900, True, {'loaded': False, 'stats_negotiated': False}, 'driver_not_loaded'),  # unloaded after boot
    (10, 0, None, True, {'loaded': True, 'stats_negotiated': False}, 'stats_not_negotiated'),
    (10, 0, None, True, {'loaded': True, 'stats_negotiated': True}, 'never_updated'),
    (10, 100, 900, True, {'loaded': True, 'stats_negotiated': True}, 'stale'),
    (10, 100, 900, False, {'loaded': True, 'stats_negotiated': True}, 'vm_not_running'),
    (10, 0, None, True, None, 'never_updated'),
])
def test_health_with_the_driver(interval, last_update, age, running, driver, expected):
    assert _stats.health(interval, last_update, age, running, driver) == expected


@pytest.mark.parametrize('health', [value for value in _stats.HEALTH_STATES if value not in ('ok', 'no_balloon_device')])
def test_every_health_but_ok_has_advice(health):
    text = _stats.advice(health, {'status': 'running', 'running': True}, None, 0)
    assert text and '\n' not in text
    assert _stats.advice('ok', {}, None, 0) is None


def test_a_driver_gone_after_stats_is_told_apart_from_one_never_loaded():
    """A guest that sent stats and then suspended (or unloaded the module) resets the device: say so."""
    running = {'status': 'running', 'running': True}
    never = _stats.advice(_stats.HEALTH_DRIVER_NOT_LOADED, running, {'loaded': False, 'stats_negotiated': False}, 0)
    gone = _stats.advice(_stats.HEALTH_DRIVER_NOT_LOADED, running, {'loaded': False, 'stats_negotiated': False}, 1796043280)
    assert 'still booting' in never and 'suspended' not in never
    assert 'suspended' in gone and 'sent stats before' in gone and 'booting' not in gone


NO_DRIVER = {'loaded': False, 'stats_negotiated': False}
DRIVER = {'loaded': True, 'stats_negotiated': True}


@pytest.mark.parametrize('health, vm_status, driver, last_update, present, absent', [
    # a VM migrated away must never be told to resume: it would run twice
    ('vm_not_running', 'postmigrate', DRIVER, 1796043280, ['migrated away', 'do not resume'], ['resume it (cont)']),
    ('driver_not_loaded', 'inmigrate', NO_DRIVER, 0, ['incoming migration'], ['resume it (cont)']),
    ('vm_not_running', 'paused', DRIVER, 1796043280, ['resume it (cont)'], ['migrat']),
    ('vm_not_running', 'suspended', DRIVER, 1796043280, ['system_wakeup'], ['resume it (cont)']),
    ('vm_not_running', 'guest-panicked', DRIVER, 1796043280, ['panicked', 'restart'], ['resume it (cont)']),
    ('vm_not_running', 'shutdown', DRIVER, 1796043280, ['shut down'], ['resume it (cont)']),
    # polling off on a paused VM: both things to do
    ('polling_disabled', 'paused', DRIVER, 1796043280, ['set the interval', 'resume it (cont)'], []),
    # polling off and QEMU knows no driver ever loaded: say both now, not one after the other
    ('polling_disabled', 'running', NO_DRIVER, 0, ['set the interval', 'no guest balloon driver loaded', 'modprobe'],
     ['not refreshed']),
    ('polling_disabled', 'running', NO_DRIVER, 1796043280, ['set the interval', 'no longer active', 'not refreshed'], []),
    # a freshly booted guest whose interval was never set: no claim about old values
    ('polling_disabled', 'running', DRIVER, 0, ['set the interval'], ['not refreshed', 'driver']),
    ('polling_disabled', 'running', DRIVER, 1796043280, ['re-apply it after either', 'not refreshed'], ['resume']),
])
def test_advice_fits_the_run_state_and_what_qemu_knows(health, vm_status, driver, last_update, present, absent):
    status = {'status': vm_status, 'running': vm_status == 'running'}
    text = _stats.advice(health, status, driver, last_update)
    for words in present:
        assert words in text, (words, text)
    for words in absent:
        assert words not in text, (words, text)
