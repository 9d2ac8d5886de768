# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Report files: the filter ``balloon_report_csv`` (one CSV row per VM, and one per hypervisor
without VMs, for spreadsheets), the filter ``balloon_report_rotation`` (which timestamped
reports to keep: the newest runs whose findings changed, and always the newest run), and the
file work of the action balloon_stats_report: the report directory and its lock, atomic writes,
the latest links and the removal of the runs rotation lets go.

PRIVATE: not part of the collection's public API.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import tempfile

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain as _plain
from ansible_collections.qmp.balloon.plugins.plugin_utils._records import vm_state


#: The report's used figure is the one the rules check: 100 - available_percent (MemAvailable counts
#: page cache as available), never the module's used_percent (total - free: page cache counted as used).
#: Its own name, so nobody takes one for the other.
CSV_COLUMNS = ('hypervisor', 'vm', 'reachable', 'health', 'vm_status', 'polling_interval', 'expected_interval',
               'age', 'total_memory', 'free_memory', 'available_memory', 'unavailable_percent', 'available_percent',
               'compliant', 'violations', 'error')
#: Columns added by issue 14, after the old ones (spreadsheets that pick columns by position keep working).
CSV_COLUMNS_STATES = ('state', 'unknown_rules', 'pressure', 'headroom_percent', 'major_faults_per_s',
                      'swap_bytes_per_s', 'advice')
#: How the hypervisor of the row was audited (issue 14, after the trial): its status and reason, the
#: transport and the one-sentence audit summary. A hypervisor without VM records gets one row of its own.
CSV_COLUMNS_AUDIT = ('hypervisor_status', 'hypervisor_reason', 'transport', 'audit')


#: A text cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
_CSV_FORMULA = ('=', '+', '-', '@', '\t', '\r')


def _csv_value(value):
    """CSV cells: booleans as true/false (not Python's True/False), null as empty; text that a
    spreadsheet would run as a formula (a VM named =HYPERLINK(...)) gets a leading quote."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str) and value.startswith(_CSV_FORMULA):
        return "'" + value
    return '' if value is None else value


def _swap_rate(vm_rates):
    if vm_rates.get('swap_in') is None and vm_rates.get('swap_out') is None:
        return None
    return (vm_rates.get('swap_in') or 0) + (vm_rates.get('swap_out') or 0)


def unavailable_percent(vm):
    """The report's used %: 100 - available %, null when available is unknown (also for older records)."""
    if 'unavailable_percent' in vm:
        return vm['unavailable_percent']
    available = vm.get('available_percent')
    return None if available is None else round(100.0 - available, 1)


def balloon_report_csv(report):
    """One CSV row per VM (RFC 4180, header first), and one per hypervisor without VM records
    (unreachable, failed, no_vms: hypervisor, status and reason, the VM columns empty)."""
    report = _plain(report)
    columns = CSV_COLUMNS + CSV_COLUMNS_STATES + CSV_COLUMNS_AUDIT
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(columns)
    by_host = {}
    for vm in report.get('vms', []):
        by_host.setdefault(vm.get('hypervisor'), []).append(vm)
    hypervisors = list(report.get('hypervisors') or [])
    known = set(h.get('name') for h in hypervisors)
    # VMs of a hypervisor the report does not list (a hand-made report): after the others, as before
    hypervisors += [{'name': host} for host in by_host if host not in known]
    for hypervisor in hypervisors:
        audit = hypervisor.get('audit') or {}
        where = (hypervisor.get('status'), hypervisor.get('reason'), audit.get('transport'), audit.get('summary'))
        host_vms = by_host.get(hypervisor.get('name'), [])
        if not host_vms:
            writer.writerow([_csv_value(value) for value in (hypervisor.get('name'),) + ('',) * (len(columns) - 1 - len(where)) + where])
            continue
        for vm in host_vms:
            stats = vm.get('stats') or {}
            compliance = vm.get('compliance') or {}
            vm_rates = vm.get('rates') or {}
            vm_pressure = vm.get('pressure') or {}
            writer.writerow([_csv_value(value) for value in (
                vm.get('hypervisor'), vm.get('name'), vm.get('reachable'), vm.get('health'), vm.get('vm_status'),
                vm.get('polling_interval'), vm.get('expected_interval'), vm.get('age'),
                stats.get('total_memory'), stats.get('free_memory'), stats.get('available_memory'),
                unavailable_percent(vm), vm.get('available_percent'), compliance.get('compliant'),
                ' '.join(v['rule'] for v in compliance.get('violations', [])), vm.get('error'),
                vm_state(vm), ' '.join(compliance.get('unknown', [])), vm_pressure.get('verdict'),
                vm_pressure.get('headroom_percent'), vm_rates.get('major_faults'), _swap_rate(vm_rates), vm.get('advice'),
            ) + where])
    return out.getvalue()


#: A timestamped report of the role: NAME-YYYYMMDDTHHMMSSZ.json
_STAMPED_JSON = re.compile(r'-(\d{8}T\d{6}Z)[.]json$')


def _report_changed(path):
    """Whether a report's findings changed since the run before it (its since_last_run.changed).

    A file that cannot be read, or says nothing (an older layout), counts as changed: kept, never
    lost by mistake.
    """
    try:
        with open(path) as handle:
            since = json.load(handle).get('since_last_run') or {}
    except (OSError, ValueError, AttributeError):
        return True
    return since.get('changed') is not False


def balloon_report_rotation(paths, keep):
    """Which timestamped runs of a report to keep: the newest ``keep`` whose findings changed, and the newest.

    ``paths``: the runs' JSON files (``NAME-YYYYMMDDTHHMMSSZ.json``; other names are ignored);
    ``keep`` 0 keeps all. An unchanged run older than the newest is removed: on a short schedule
    the runs that found nothing new no longer push the real changes out. Returns ``{'keep': [stamps],
    'remove': [stamps], 'unchanged': [stamps removed because nothing changed in them]}``, oldest first;
    only the files needed are read (newest first, until ``keep`` changed runs are found).
    """
    if isinstance(paths, str) or not isinstance(paths, (list, tuple)):
        raise AnsibleFilterError('balloon_report_rotation expects a list of report paths, got %s' % type(paths).__name__)
    try:
        keep = int(keep)
    except (TypeError, ValueError):
        raise AnsibleFilterError('balloon_report_rotation: keep must be an integer, got %r' % (keep,))
    runs = {}
    for path in _plain(paths):
        match = _STAMPED_JSON.search(str(path))
        if match:
            runs[match.group(1)] = str(path)
    stamps = sorted(runs)
    if keep <= 0 or not stamps:
        return {'keep': stamps, 'remove': [], 'unchanged': []}
    kept, unchanged = [stamps[-1]], []
    changed = 1 if _report_changed(runs[stamps[-1]]) else 0
    for stamp in reversed(stamps[:-1]):
        if changed >= keep:
            break
        if _report_changed(runs[stamp]):
            kept.append(stamp)
            changed += 1
        else:
            unchanged.append(stamp)
    return {'keep': sorted(kept), 'remove': [stamp for stamp in stamps if stamp not in kept], 'unchanged': sorted(unchanged)}


# ---- the files of the action balloon_stats_report ---------------------------------------------

#: The suffixes of one run's files, and of the latest links.
REPORT_FORMATS = ('json', 'csv', 'html', 'md')


def report_stamp(generated_at):
    """The stamp of a run's files: its ``generated_at`` without - and : (2026-12-07T10:00:00Z: 20261207T100000Z)."""
    return re.sub('[-:]', '', generated_at)


def report_runs(directory, name):
    """The timestamped runs of report ``name`` in ``directory``: {stamp: path of NAME-STAMP.json}."""
    pattern = re.compile(re.escape(name) + r'-(\d{8}T\d{6}Z)[.]json$')
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return {}
    return dict((match.group(1), os.path.join(directory, entry)) for match, entry in
                ((pattern.match(entry), entry) for entry in entries) if match)


def read_report(path):
    """A report's JSON as a dict; None when there is none. :raise ValueError: not a report (not a JSON object)."""
    try:
        with open(path, encoding='utf-8') as handle:
            report = json.load(handle)
    except FileNotFoundError:
        return None
    if not isinstance(report, dict):
        raise ValueError('%s is not a report (not a JSON object)' % path)
    return report


def make_directory(path, mode=0o755):
    """Create ``path`` and its missing parents with ``mode`` (whatever the umask); True when it was created."""
    if os.path.isdir(path):
        return False
    parent = os.path.dirname(path.rstrip(os.sep))
    if parent and parent != path:
        make_directory(parent, mode)
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False   # made meanwhile by another process
    os.chmod(path, mode)
    return True


@contextlib.contextmanager
def directory_lock(path):
    """Hold an exclusive lock on the directory ``path`` (flock on the directory itself: no lock file).

    Under strategy free several hypervisors may finish their gathers at once; each reads the latest
    report, then writes: one at a time, the others then find that the report is written.
    """
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)   # releases the lock


@contextlib.contextmanager
def _removed_on_failure(temporary):
    """Remove the temporary file or link ``temporary`` when the block fails (the failure goes on)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_atomically(path, text, mode=0o644):
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in its directory and one rename:
    a reader sees the old file or the new one, never a part."""
    directory, base = os.path.split(path)
    descriptor, temporary = tempfile.mkstemp(prefix='.%s.' % base, suffix='.tmp', dir=directory)
    with _removed_on_failure(temporary):
        with os.fdopen(descriptor, 'wb') as handle:
            handle.write(text.encode('utf-8'))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)


def link_atomically(target, path):
    """Make ``path`` a symbolic link to ``target`` (relative to the link's directory), replacing what
    is there in one rename: the link always points at a whole report."""
    directory, base = os.path.split(path)
    for attempt in range(100):
        temporary = os.path.join(directory, '.%s.%d.%d.tmp' % (base, os.getpid(), attempt))
        try:
            os.symlink(target, temporary)
            break
        except FileExistsError:
            continue
    else:
        raise OSError('could not make a temporary link beside %s' % path)
    with _removed_on_failure(temporary):
        os.replace(temporary, path)


def remove_runs(directory, name, stamps):
    """Remove every file NAME-STAMP.* of the given stamps; returns the paths removed, sorted."""
    if not stamps:
        return []
    pattern = re.compile(re.escape(name) + '-(%s)[.]' % '|'.join(re.escape(stamp) for stamp in stamps))
    removed = []
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if pattern.match(entry) and os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
            removed.append(path)
    return removed
