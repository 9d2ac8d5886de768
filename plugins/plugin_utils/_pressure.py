# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Rates and pressure: the per-second rates between two samples of one VM (also as the filter
``balloon_rates``), and the memory pressure verdict from the headroom and those rates.

PRIVATE: not part of the collection's public API.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain


#: Pressure thresholds (role variables balloon_stats_pressure_*), after KubeVirt's alert.
DEFAULT_PRESSURE = {'headroom_high': 5.0, 'headroom_moderate': 10.0, 'major_faults': 5.0, 'swap_bytes': 1048576.0}

#: Counters turned into rates (per second) and deltas (count since the previous sample).
_RATE_COUNTERS = ('swap_in', 'swap_out', 'major_faults', 'minor_faults')
_DELTA_COUNTERS = ('oom_kills', 'alloc_stalls')


def _counter(stats, name):
    value = (stats or {}).get(name)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rates(current, previous):
    """The rates of one VM between two samples (each with ``last_update`` and ``stats``).

    Per second over the guest's own ``last_update`` delta: ``swap_in``/``swap_out`` (bytes/s),
    ``major_faults``, ``minor_faults`` (all faults minus major; Linux's pgfault counts both);
    ``oom_kills`` and ``alloc_stalls`` as deltas. No previous sample, a sample without an update,
    or the same ``last_update`` give ``null``s; ``last_update`` or a counter going backwards
    (guest reboot, QEMU >= 10 reset, migration to a fresh QEMU) gives ``null``s and ``reset: true``:
    never a negative rate.
    """
    result = dict((name, None) for name in _RATE_COUNTERS + _DELTA_COUNTERS)
    result.update(interval=None, reset=False)
    current, previous = current or {}, previous or {}
    now, before = current.get('last_update'), previous.get('last_update')
    if not now or not before:
        return result
    if now < before:
        result['reset'] = True
        return result
    if now == before:
        return result
    interval = now - before
    deltas = {}
    for name in _RATE_COUNTERS + _DELTA_COUNTERS:
        value, old = _counter(current.get('stats'), name), _counter(previous.get('stats'), name)
        if value is None or old is None:
            deltas[name] = None
        elif value < old:
            result['reset'] = True
            return result
        else:
            deltas[name] = value - old
    result['interval'] = interval
    for name in ('swap_in', 'swap_out', 'major_faults'):
        if deltas[name] is not None:
            result[name] = round(deltas[name] / float(interval), 3)
    if deltas['minor_faults'] is not None and deltas['major_faults'] is not None:
        result['minor_faults'] = round(max(deltas['minor_faults'] - deltas['major_faults'], 0) / float(interval), 3)
    for name in _DELTA_COUNTERS:
        result[name] = deltas[name]
    return result


def pressure(headroom, vm_rates, thresholds=None):
    """``{'verdict', 'reasons', 'headroom_percent'}`` from headroom (available / total, %) and the rates.

    high: oom_kills rose, or headroom < headroom_high and (major faults > major_faults/s or swap
    in + out > swap_bytes/s); moderate: headroom < headroom_moderate, or alloc_stalls rose; none
    otherwise; unknown without headroom (and no OOM kill). Headroom below headroom_high without
    rates (the first sample) is moderate, and says that high could not be judged.
    """
    limits = dict(DEFAULT_PRESSURE)
    limits.update((key, float(value)) for key, value in (thresholds or {}).items() if value is not None)
    vm_rates = vm_rates or {}
    reasons = []
    high = moderate = False
    if (vm_rates.get('oom_kills') or 0) > 0:
        high = True
        reasons.append('%d OOM kill%s since the previous sample' % (vm_rates['oom_kills'], '' if vm_rates['oom_kills'] == 1 else 's'))
    if (vm_rates.get('alloc_stalls') or 0) > 0:
        moderate = True
        stalls = vm_rates['alloc_stalls']
        reasons.append('%d allocation stall%s since the previous sample' % (stalls, '' if stalls == 1 else 's'))
    if headroom is not None:
        major = vm_rates.get('major_faults')
        swap = None
        if vm_rates.get('swap_in') is not None or vm_rates.get('swap_out') is not None:
            swap = (vm_rates.get('swap_in') or 0) + (vm_rates.get('swap_out') or 0)
        if headroom < limits['headroom_high']:
            thrashing = []
            if major is not None and major > limits['major_faults']:
                thrashing.append('%g major faults/s > %g' % (major, limits['major_faults']))
            if swap is not None and swap > limits['swap_bytes']:
                thrashing.append('%g swap bytes/s > %g' % (swap, limits['swap_bytes']))
            if thrashing:
                high = True
                reasons.append('headroom %g%% < %g%% with %s' % (headroom, limits['headroom_high'], ' and '.join(thrashing)))
            elif major is None and swap is None:
                moderate = True
                reasons.append('headroom %g%% < %g%%; no rates yet (first sample), so high cannot be judged'
                               % (headroom, limits['headroom_high']))
            else:
                moderate = True
                reasons.append('headroom %g%% < %g%%' % (headroom, limits['headroom_moderate']))
        elif headroom < limits['headroom_moderate']:
            moderate = True
            paging = []
            if major is not None and major > limits['major_faults']:
                paging.append('%g major faults/s' % major)
            if swap is not None and swap > limits['swap_bytes']:
                paging.append('%g swap bytes/s' % swap)
            reasons.append('headroom %g%% < %g%%%s' % (
                headroom, limits['headroom_moderate'],
                ' with %s (high needs headroom < %g%% too)' % (' and '.join(paging), limits['headroom_high']) if paging else ''))
    if high:
        verdict = 'high'
    elif moderate:
        verdict = 'moderate'
    elif headroom is None:
        verdict = 'unknown'
        reasons.append('no headroom: the guest sends no available_memory or total_memory')
    else:
        verdict = 'none'
        if all(vm_rates.get(key) is None for key in ('major_faults', 'swap_in', 'swap_out')):
            reasons.append('headroom %g%%; no rates yet (first sample or a counter reset)' % headroom)
    return {'verdict': verdict, 'reasons': reasons, 'headroom_percent': headroom}


def balloon_rates(current, previous):
    """Filter: the rates between two samples of one VM (balloon_stats_info ``vms`` entries or VM records)."""
    for label, sample in (('current', current), ('previous', previous)):
        if sample is not None and not isinstance(sample, dict):
            raise AnsibleFilterError('balloon_rates expects %s to be a dict with last_update and stats, got %s'
                                     % (label, type(sample).__name__))
    return rates(_plain(current), _plain(previous))
