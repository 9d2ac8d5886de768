# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Print the demo's gathers as tables: python3 demo/show.py demo-output/gathers.json

The file is {"gathers": [FACT, ...]}, where each FACT is a copy of the balloon_stats fact that
the role qmp.balloon.balloon_stats sets (hypervisor, collected_at, expected_interval, vms,
summary), as demo/playbook.yml saves them. Standard library only.
"""

from __future__ import annotations

import datetime
import json
import sys

MIB = 1024 * 1024
COLUMNS = (
    # heading, alignment, value
    ('VM', '<', lambda vm: vm.get('name') or '?'),
    ('health', '<', lambda vm: vm.get('health') or ('unreachable' if not vm.get('reachable', True) else '-')),
    ('total (MiB)', '>', lambda vm: _mib((vm.get('stats') or {}).get('total_memory'))),
    ('available (MiB)', '>', lambda vm: _mib((vm.get('stats') or {}).get('available_memory'))),
    ('used %', '>', lambda vm: '-' if vm.get('used_percent') is None else '%.1f' % vm['used_percent']),
    ('age (s)', '>', lambda vm: '-' if vm.get('age') is None else str(vm['age'])),
    ('updated', '>', lambda vm: _clock(vm.get('last_update'))),
    ('minor faults', '>', lambda vm: _count((vm.get('stats') or {}).get('minor_faults'))),
)


def _mib(value):
    return '-' if value is None else '%.1f' % (value / MIB)


def _count(value):
    return '-' if value is None else str(value)


def _clock(epoch):
    """HH:MM:SS UTC of an epoch time; '-' when the guest never answered (0 or null)."""
    if not epoch:
        return '-'
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime('%H:%M:%S')


def _parse_time(text):
    try:
        return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ')
    except (TypeError, ValueError):
        return None


def table(title, fact, since=None):
    """Return the lines of one table: a title line, the header, a rule and one row per VM.

    `since` is the collected_at of an earlier gather: the title then says how much later this one is.
    """
    vms = sorted(fact.get('vms') or [], key=lambda vm: str(vm.get('name')))
    rows = [[str(value(vm)) for _heading, _align, value in COLUMNS] for vm in vms]
    widths = [max([len(heading)] + [len(row[index]) for row in rows]) for index, (heading, _a, _v) in enumerate(COLUMNS)]

    def line(cells):
        return '  '.join('%-*s' % (width, cell) if align == '<' else '%*s' % (width, cell)
                         for cell, width, (_h, align, _v) in zip(cells, widths, COLUMNS)).rstrip()

    collected = fact.get('collected_at', '?')
    later = ''
    if since is not None and _parse_time(since) and _parse_time(collected):
        later = ', %d s after the first' % (_parse_time(collected) - _parse_time(since)).total_seconds()
    lines = ['%s: hypervisor %s, collected %s%s; polling interval %s s, times in UTC' % (
        title, fact.get('hypervisor', '?'), collected, later, fact.get('expected_interval', '?'))]
    lines.append('  ' + line([heading for heading, _align, _value in COLUMNS]))
    lines.append('  ' + line(['-' * width for width in widths]))
    for vm, row in zip(vms, rows):
        lines.append('  ' + line(row))
        if not vm.get('reachable', True):
            lines.append('    ! %s' % vm.get('error'))
    if not vms:
        lines.append('  (no VMs)')
    return lines


TITLES = ('First gather', 'Second gather', 'Third gather')


def main(argv):
    if len(argv) != 1:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    with open(argv[0], encoding='utf-8') as handle:
        gathers = json.load(handle)['gathers']
    first = None
    for index, fact in enumerate(gathers):
        if index:
            print()
        title = TITLES[index] if index < len(TITLES) else 'Gather %d' % (index + 1)
        print('\n'.join(table(title, fact, since=first)))
        if first is None:
            first = fact.get('collected_at')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
