# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The real parts of the prometheus_export target: QEMU VMs, node_exporter and Prometheus, and the checks.

Standard library only; uses tests/guest/vm.py (found above this file), never the code under test.
Everything lives in WORK (a short directory under /tmp); every command prints one JSON document
and exits 1 with one line on stderr when a check fails.

    python stack.py vms-start WORK        g1 (a real Linux guest), n1 (QEMU without a guest OS), dead (a monitor
                                          socket whose QEMU was killed: connection refused)
    python stack.py vms-wait WORK         wait until g1 sent its first stats
    python stack.py vms-stop WORK         stop every VM started in WORK/vms
    python stack.py start WORK            node_exporter (textfile collector only) and Prometheus (scraping it every
                                          second, storage in WORK), both on 127.0.0.1 and free ports
    python stack.py stop WORK             stop both, by the PIDs that start recorded
    python stack.py check WORK FACT       what Prometheus' HTTP API says against the role's fact (a JSON file)
    python stack.py scrape WORK STOPFILE  scrape node_exporter in a loop until STOPFILE exists; every scrape must parse,
                                          have the families and node_textfile_scrape_error 0
    python stack.py history WORK          Prometheus' scrapes since torn ended: no textfile error, g1 and dead in each
    python stack.py torn WORK             the scrape check against a writer that is NOT atomic (proves it can fail)
"""

from __future__ import annotations

import calendar
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_EXPORTER = ('prometheus-node-exporter', 'node_exporter')
PROMETHEUS = 'prometheus'
#: the families every scrape of the textfile must have
FAMILIES = ('qmp_balloon_up', 'qmp_balloon_health', 'qmp_balloon_collected_timestamp_seconds', 'qmp_balloon_guest_available_bytes')
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? [^ ]+( -?[0-9]+)?$')
TEXTFILE = 'qmp_balloon.prom'


class CheckFailed(Exception):
    """A check of this target failed; the message says which and what was seen."""


def load_vm_helper():
    """Import tests/guest/vm.py from the nearest ancestor that has it."""
    directory = HERE
    while directory != os.path.dirname(directory):
        candidate = os.path.join(directory, 'tests', 'guest', 'vm.py')
        if os.path.isfile(candidate):
            sys.path.insert(0, os.path.dirname(candidate))
            spec = importlib.util.spec_from_file_location('vm', candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        directory = os.path.dirname(directory)
    raise CheckFailed('no ancestor of %s has tests/guest/vm.py' % HERE)


def which(*names):
    for name in names:
        for directory in os.environ.get('PATH', '').split(os.pathsep) + ['/usr/bin', '/usr/sbin']:
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec: loopback only
        return response.read().decode('utf-8')


# ---------------------------------------------------------------------------------------------
# VMs

def vms_start(work):
    vm = load_vm_helper()
    directory = os.path.join(work, 'vms')
    cache = os.path.join(os.path.dirname(os.path.dirname(vm.__file__)), 'output', 'guest')
    vm.build_guest.build(cache)
    started = {'g1': vm.start('g1', directory, mem=128, guest_os=True, cache=cache)['pid'],
               'n1': vm.start('n1', directory, guest_os=False)['pid']}
    dead = vm.start('dead', directory, guest_os=False)
    # SIGKILL: QEMU cannot remove its socket, which stays behind with nobody listening.
    os.kill(dead['pid'], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists('/proc/%d' % dead['pid']) and time.monotonic() < deadline:
        time.sleep(0.05)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(dead['qmp'])
            raise CheckFailed('the killed VM %s still accepts connections' % dead['qmp'])
        except ConnectionRefusedError:
            pass
    started['dead'] = 'killed'
    return started


def vms_wait(work):
    vm = load_vm_helper()
    return vm.wait_ready(os.path.join(work, 'vms'), ['g1'], 120)


def vms_stop(work):
    vm = load_vm_helper()
    return vm.stop(os.path.join(work, 'vms'))


# ---------------------------------------------------------------------------------------------
# node_exporter and Prometheus

def _wait_http(url, process, what, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise CheckFailed('%s exited %s at start; see its log in the work directory' % (what, process.returncode))
        try:
            http_get(url, 2)
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise CheckFailed('%s did not answer %s within %d s' % (what, url, timeout))
            time.sleep(0.2)


def start(work):
    exporter = which(*NODE_EXPORTER)
    prometheus = which(PROMETHEUS)
    if not exporter or not prometheus:
        raise CheckFailed('needs prometheus-node-exporter and prometheus (apt-get install prometheus prometheus-node-exporter)')
    textfile_dir = os.path.join(work, 'textfile')
    os.makedirs(textfile_dir, exist_ok=True)
    exporter_port, prometheus_port = free_port(), free_port()
    config = os.path.join(work, 'prometheus.yml')
    with open(config, 'w') as handle:
        handle.write('global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n'
                     'scrape_configs:\n  - job_name: node\n    static_configs:\n'
                     '      - targets: ["127.0.0.1:%d"]\n' % exporter_port)
    state = {'exporter_port': exporter_port, 'prometheus_port': prometheus_port, 'pids': {}}
    processes = {}
    # textfile collector only (no host metrics), loopback only
    processes['node_exporter'] = subprocess.Popen(
        [exporter, '--web.listen-address=127.0.0.1:%d' % exporter_port, '--collector.disable-defaults',
         '--collector.textfile', '--collector.textfile.directory=' + textfile_dir],
        stdout=open(os.path.join(work, 'node_exporter.log'), 'w'), stderr=subprocess.STDOUT, start_new_session=True)
    state['pids']['node_exporter'] = processes['node_exporter'].pid
    processes['prometheus'] = subprocess.Popen(
        [prometheus, '--config.file=' + config, '--storage.tsdb.path=' + os.path.join(work, 'tsdb'),
         '--web.listen-address=127.0.0.1:%d' % prometheus_port, '--storage.tsdb.retention.time=1h'],
        stdout=open(os.path.join(work, 'prometheus.log'), 'w'), stderr=subprocess.STDOUT, start_new_session=True)
    state['pids']['prometheus'] = processes['prometheus'].pid
    with open(os.path.join(work, 'stack.json'), 'w') as handle:
        json.dump(state, handle)
    _wait_http('http://127.0.0.1:%d/metrics' % exporter_port, processes['node_exporter'], 'node_exporter')
    _wait_http('http://127.0.0.1:%d/-/ready' % prometheus_port, processes['prometheus'], 'Prometheus')
    return state


def _state(work):
    with open(os.path.join(work, 'stack.json')) as handle:
        return json.load(handle)


def stop(work):
    """SIGTERM, then SIGKILL, each PID that start recorded, and only while its command line names WORK."""
    path = os.path.join(work, 'stack.json')
    if not os.path.exists(path):
        return {}
    outcome = {}
    for name, pid in _state(work)['pids'].items():
        outcome[name] = 'not running'
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                    if work.encode() not in handle.read():
                        break  # not ours (any more)
                os.kill(pid, sig)
            except (FileNotFoundError, ProcessLookupError):
                break
            outcome[name] = 'stopped'
            deadline = time.monotonic() + grace
            while os.path.exists('/proc/%d' % pid) and time.monotonic() < deadline:
                try:
                    os.waitpid(pid, os.WNOHANG)  # reaped only when it is our child; harmless otherwise
                except ChildProcessError:
                    pass
                time.sleep(0.1)
            if not os.path.exists('/proc/%d' % pid):
                break
    os.unlink(path)
    return outcome


# ---------------------------------------------------------------------------------------------
# Checks

def query(work, expression):
    """The instant vector of a PromQL expression: [(labels, float value)]."""
    url = 'http://127.0.0.1:%d/api/v1/query?%s' % (_state(work)['prometheus_port'], urllib.parse.urlencode({'query': expression}))
    answer = json.loads(http_get(url))
    if answer.get('status') != 'success':
        raise CheckFailed('Prometheus refused %r: %s' % (expression, answer))
    return [(item['metric'], float(item['value'][1])) for item in answer['data']['result']]


def one(work, expression):
    result = query(work, expression)
    if len(result) != 1:
        raise CheckFailed('%s: expected one series, Prometheus has %d: %s' % (expression, len(result), result))
    return result[0][1]


def check(work, fact_path):
    with open(fact_path) as handle:
        fact = json.load(handle)
    hypervisor = fact['hypervisor']
    collected = calendar.timegm(time.strptime(fact['collected_at'], '%Y-%m-%dT%H:%M:%SZ'))
    vms = dict((vm['name'], vm) for vm in fact['vms'])
    if sorted(vms) != ['dead', 'g1', 'n1']:
        raise CheckFailed('the fact has VMs %s, expected dead, g1, n1' % sorted(vms))
    # Prometheus has scraped this export (not an older one) once it sees its collection time
    deadline = time.monotonic() + 60
    selector = 'qmp_balloon_collected_timestamp_seconds{hypervisor="%s"}' % hypervisor
    while True:
        seen = query(work, selector)
        if seen and seen[0][1] >= collected:
            break
        if time.monotonic() > deadline:
            raise CheckFailed('Prometheus did not scrape the export within 60 s: %s' % seen)
        time.sleep(0.5)
    results = {'collected_at': collected}
    for name, vm in vms.items():
        labels = 'hypervisor="%s",vm="%s"' % (hypervisor, name)
        up = one(work, 'qmp_balloon_up{%s}' % labels)
        results[name] = {'up': up}
        if vm['reachable']:
            if up != 1:
                raise CheckFailed('%s was read but qmp_balloon_up is %s' % (name, up))
            health = query(work, 'qmp_balloon_health{%s} == 1' % labels)
            if [series['state'] for series, _value in health] != [vm['health']]:
                raise CheckFailed('%s: health %s in the fact, Prometheus says %s' % (name, vm['health'], health))
            results[name]['health'] = vm['health']
        elif up != 0:
            raise CheckFailed('%s could not be read but qmp_balloon_up is %s' % (name, up))
        # every stat the guest sent is there with the value balloon_stats_info read; the others have no series
        stats = vm.get('stats') or {}
        available = query(work, 'qmp_balloon_guest_available_bytes{%s}' % labels)
        if stats.get('available_memory') is None:
            if available:
                raise CheckFailed('%s sent no available_memory, yet Prometheus has %s' % (name, available))
        elif [value for _labels, value in available] != [float(stats['available_memory'])]:
            raise CheckFailed('%s: balloon_stats_info read available_memory %s, Prometheus says %s'
                              % (name, stats['available_memory'], available))
        results[name]['available_bytes'] = stats.get('available_memory')
        sent = sorted(stat for stat, value in stats.items() if value is not None)
        guest_series = query(work, '{__name__=~"qmp_balloon_guest_.*",%s}' % labels)
        if len(guest_series) != len(sent):
            raise CheckFailed('%s: the guest sent %d stats (%s), Prometheus has %d guest series: %s'
                              % (name, len(sent), sent, len(guest_series), sorted(s['__name__'] for s, _v in guest_series)))
        results[name]['guest_series'] = len(guest_series)
    g1 = vms['g1']
    if g1['health'] != 'ok' or not (g1['stats'] or {}).get('available_memory'):
        raise CheckFailed('the real guest g1 is not ok with stats in the fact: %s' % g1)
    if one(work, 'qmp_balloon_health{vm="g1",state="ok"}') != 1:
        raise CheckFailed('qmp_balloon_health{state="ok"} of g1 is not 1')
    if query(work, '{__name__=~"qmp_balloon_guest_.*",vm="n1"}'):
        raise CheckFailed('n1 has no guest OS, yet it has guest series')
    if one(work, 'node_textfile_scrape_error') != 0:
        raise CheckFailed('node_exporter reports node_textfile_scrape_error 1')
    if one(work, 'up{job="node"}') != 1:
        raise CheckFailed('Prometheus cannot scrape node_exporter')
    return results


def _scrape_once(url):
    """Problems of one scrape of node_exporter: [] when it parses and has every family."""
    try:
        text = http_get(url, 5)
    except (urllib.error.URLError, OSError) as exc:
        return ['scrape failed: %s' % exc]
    problems = []
    for line in text.splitlines():
        if line and not line.startswith('#') and not SAMPLE.match(line):
            problems.append('unparsable line %r' % line[:120])
    names = set(line.split('{')[0].split(' ')[0] for line in text.splitlines() if line and not line.startswith('#'))
    problems.extend('no %s' % family for family in FAMILIES if family not in names)
    if 'node_textfile_scrape_error 0' not in text.splitlines():
        problems.append('node_textfile_scrape_error is not 0')
    return problems


def scrape(work, stop_file, max_seconds=900, max_scrapes=30000):
    """Scrape until stop_file exists (bounded in time and count); fail on any bad scrape."""
    url = 'http://127.0.0.1:%d/metrics' % _state(work)['exporter_port']
    started = time.monotonic()
    scrapes, bad = 0, []
    while not os.path.exists(stop_file):
        if time.monotonic() - started > max_seconds or scrapes >= max_scrapes:
            raise CheckFailed('the writer did not finish within %d s / %d scrapes' % (max_seconds, max_scrapes))
        problems = _scrape_once(url)
        scrapes += 1
        if problems:
            bad.append(problems[:3])
        time.sleep(0.03)  # ~25 scrapes a second at most, leaving the 2 cores to the writer
    result = {'scrapes': scrapes, 'bad': len(bad), 'seconds': round(time.monotonic() - started, 1)}
    with open(os.path.join(work, 'scrape.json'), 'w') as handle:
        json.dump(result, handle)
    if bad:
        raise CheckFailed('%d of %d scrapes were bad while the export was rewritten, first: %s' % (len(bad), scrapes, bad[0]))
    if scrapes < 50:
        raise CheckFailed('only %d scrapes while the export was rewritten: too few to say anything' % scrapes)
    return result


def torn(work):
    """The same scrape check while a NON-atomic writer (truncate, then write in pieces) rewrites the file: it must see
    bad scrapes, else the atomicity check proves nothing."""
    path = os.path.join(work, 'textfile', TEXTFILE)
    with open(path) as handle:
        text = handle.read()
    url = 'http://127.0.0.1:%d/metrics' % _state(work)['exporter_port']
    done = threading.Event()

    def writer():
        half = len(text) // 2
        while not done.is_set():
            with open(path, 'w') as handle:
                handle.write(text[:half])
                handle.flush()
                time.sleep(0.005)
                handle.write(text[half:])
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        bad = sum(1 for _index in range(200) if _scrape_once(url))
    finally:
        done.set()
        thread.join()
        with open(path, 'w') as handle:
            handle.write(text)
    if not bad:
        raise CheckFailed('200 scrapes during non-atomic writes were all good: the scrape check cannot see a torn file')
    with open(os.path.join(work, 'torn.json'), 'w') as handle:  # its time starts the window of history
        json.dump({'bad_of_200': bad}, handle)
    return {'bad_of_200': bad}


def history(work):
    """Prometheus' own scrapes (every second) since torn ended (+2 s): no textfile error, g1 and dead in every scrape."""
    window = '%ds' % (int(time.time() - os.path.getmtime(os.path.join(work, 'torn.json'))) - 2)
    errors = one(work, 'max_over_time(node_textfile_scrape_error[%s])' % window)
    # g1 and dead are in every export (n1 in every other one)
    fewest = one(work, 'min_over_time(count(qmp_balloon_up{vm=~"g1|dead"})[%s:1s])' % window)
    scrapes = one(work, 'count_over_time(up{job="node"}[%s])' % window)
    if errors != 0 or fewest != 2:
        raise CheckFailed('over %s of scrapes: max node_textfile_scrape_error %s, fewest of g1 and dead %s (expected 0 and 2)'
                          % (window, errors, fewest))
    return {'window': window, 'prometheus_scrapes': scrapes, 'max_scrape_error': errors, 'fewest_vms': fewest}


def main(argv):
    commands = {'history': history, 'vms-start': vms_start, 'vms-wait': vms_wait, 'vms-stop': vms_stop, 'start': start, 'stop': stop,
                'check': check, 'scrape': scrape, 'torn': torn}
    if len(argv) < 2 or argv[0] not in commands:
        sys.stderr.write(__doc__)
        return 2
    try:
        result = commands[argv[0]](os.path.abspath(argv[1]), *argv[2:])
    except (CheckFailed, OSError) as exc:
        sys.stderr.write('stack.py %s: %s\n' % (argv[0], exc))
        return 1
    except Exception as exc:  # pylint: disable=broad-except  # vm.py's own errors: one line, not a traceback
        sys.stderr.write('stack.py %s: %s: %s\n' % (argv[0], type(exc).__name__, exc))
        return 1
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
