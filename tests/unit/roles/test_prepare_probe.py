# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's prepare entry point: its probe (roles/balloon_stats/files/prepare_probe.py) and its pins.

The probe is run the way tasks/prepare.yml runs it (``PYTHON -c SCRIPT MODE PIN VENV_PYTHON``),
with fake venvs, a shadowed ensurepip (what a Debian Python without python3-venv looks like)
and a PATH with or without apt-get. The integration target role_balloon_stats_prepare runs the
whole entry point on Debian's /usr/bin/python3.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _common, _qmp

ROLE = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'balloon_stats')
COLLECTION = os.path.join(ROLE, '..', '..')
PROBE = os.path.join(ROLE, 'files', 'prepare_probe.py')
PIN = _qmp.QEMU_QMP_VERSION


def read(*parts):
    with open(os.path.join(*parts), encoding='utf-8') as handle:
        return handle.read()


def probe(mode, venv_python, python=None, env=None):
    """Run the probe like tasks/prepare.yml does; return its JSON."""
    argv = [python or sys.executable, '-c', read(PROBE), mode, PIN, venv_python]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1, proc.stdout
    return json.loads(proc.stdout)


def write_script(path, text):
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.chmod(path, 0o755)
    return path


HERE = '%d.%d' % sys.version_info[:2]


def make_venv(root, name, body=None, cfg_version=None, cfg=True):
    """A fake venv ROOT/NAME: bin/python runs BODY (a shell script), or is a dangling link when BODY is None."""
    (root / name / 'bin').mkdir(parents=True)
    if cfg:
        (root / name / 'pyvenv.cfg').write_text(
            'home = /usr/bin\ninclude-system-site-packages = true\nversion = %s.2\n' % (cfg_version or HERE))
    python = str(root / name / 'bin' / 'python')
    if body is None:
        os.symlink(str(root / 'no-such-python3.9'), python)
        return python
    return write_script(python, body)


@pytest.fixture
def venvs(tmp_path):
    """Fake venvs: their Python prints its major.minor, then qemu.qmp's version (or fails to import it)."""
    without = "#!/bin/sh\necho %s\necho \"ModuleNotFoundError: No module named 'qemu'\" >&2\nexit 1\n" % HERE
    made = {
        'good': make_venv(tmp_path, 'good', '#!/bin/sh\necho %s\necho %s\n' % (HERE, PIN)),
        'old': make_venv(tmp_path, 'old', '#!/bin/sh\necho %s\necho 0.0.5\n' % HERE),
        'without': make_venv(tmp_path, 'without', without),
        # a link to a Python that was removed
        'broken': make_venv(tmp_path, 'broken'),
        # Debian's bin/python -> python3 -> /usr/bin/python3 after an upgrade: it runs, as a newer Python
        'upgraded': make_venv(tmp_path, 'upgraded', without, cfg_version='3.8'),
        # runs nothing: not even the version line
        'dead': make_venv(tmp_path, 'dead', '#!/bin/sh\necho "error while loading shared libraries" >&2\nexit 127\n'),
        # pyvenv.cfg without bin/python
        'no-python': str(tmp_path / 'no-python' / 'bin' / 'python'),
        'missing': str(tmp_path / 'missing' / 'bin' / 'python'),
        'empty': str(tmp_path / 'empty' / 'bin' / 'python'),
        # a wrong balloon_stats_venv: a directory with a dangling bin/python (or one that runs) but no pyvenv.cfg
        'foreign': make_venv(tmp_path, 'foreign', cfg=False),
        'foreign-runs': make_venv(tmp_path, 'foreign-runs', '#!/bin/sh\necho %s\n' % HERE, cfg=False),
    }
    (tmp_path / 'no-python').mkdir()
    (tmp_path / 'no-python' / 'pyvenv.cfg').write_text('version = %s.2\n' % HERE)
    (tmp_path / 'empty').mkdir()
    return made


# ---------------------------------------------------------------------------------------------
# The pins: one version of qemu.qmp everywhere
# ---------------------------------------------------------------------------------------------

def test_pins_agree():
    requirements = read(ROLE, 'files', 'qemu-qmp-requirements.txt')
    lines = [line for line in requirements.replace('\\\n', ' ').splitlines() if line.strip() and not line.startswith('#')]
    assert len(lines) == 1, lines
    words = lines[0].split()
    assert words[0] == 'qemu.qmp==%s' % PIN
    hashes = [word for word in words[1:] if word.startswith('--hash=sha256:')]
    assert len(hashes) == 2 and len(words) == 3, words
    assert all(re.match(r'^--hash=sha256:[0-9a-f]{64}$', word) for word in hashes), hashes
    assert re.search(r'^__balloon_stats_qmp_pin: "%s"$' % re.escape(PIN), read(ROLE, 'vars', 'main.yml'), re.M)
    for path in (('requirements', 'hypervisor.txt'), ('tests', 'unit', 'requirements.txt')):
        assert 'qemu.qmp==%s' % PIN in read(COLLECTION, *path).splitlines(), path
    assert '%s/bin/python' % _common.PREPARE_VENV in _common.missing_qemu_qmp_message()
    assert re.search(r'^balloon_stats_venv: %s$' % re.escape(_common.PREPARE_VENV), read(ROLE, 'defaults', 'main.yml'), re.M)


# ---------------------------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------------------------

def test_auto_with_the_pin_here_looks_no_further(venvs):
    """This interpreter (the test venv) has qemu.qmp at the pin: auto looks at no venv."""
    facts = probe('auto', venvs['missing'])
    assert facts['executable'] == sys.executable
    assert facts['version'] == list(sys.version_info[:3])
    assert facts['host_qmp'] == PIN
    assert (facts['venv_state'], facts['venv_qmp'], facts['can_venv']) == (None, None, None)


@pytest.mark.parametrize('mode', ['auto', 'true'])
@pytest.mark.parametrize('venv, state, version', [
    ('good', 'runs', PIN),
    ('old', 'runs', '0.0.5'),
    ('without', 'runs', None),
    ('broken', 'broken', None),
    ('upgraded', 'broken', None),
    ('dead', 'broken', None),
    ('no-python', 'broken', None),
    ('missing', 'missing', None),
    ('empty', 'missing', None),
    ('foreign', 'foreign', None),
    ('foreign-runs', 'foreign', None),
])
def test_venv_states(venvs, tmp_path, mode, venv, state, version):
    # auto on an interpreter without qemu.qmp: an empty -I Python would do, but a shadowing
    # package is simpler: qemu.qmp fails to import here.
    shadow = tmp_path / 'shadow' / 'qemu'
    shadow.mkdir(parents=True)
    (shadow / '__init__.py').write_text('raise ImportError("no qemu.qmp here (test)")\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path / 'shadow'))
    facts = probe(mode, venvs[venv], env=env)
    assert facts['host_qmp'] is None
    assert (facts['venv_state'], facts['venv_qmp']) == (state, version)
    if venv == 'without':
        assert facts['venv_error'] == "ModuleNotFoundError: No module named 'qemu'"
    if venv == 'upgraded':
        assert facts['venv_error'] == 'made with Python 3.8, %s is Python %s' % (venvs[venv], HERE)
    # whether a venv can be made is asked only when one will be made
    assert (facts['can_venv'] is None) == (state in ('runs', 'foreign'))


def test_a_foreign_directory_is_left_alone(venvs):
    """Not a venv: nothing in it is run (its bin/python could be anything), nothing is removed."""
    before = sorted(os.listdir(os.path.dirname(os.path.dirname(venvs['foreign-runs']))))
    facts = probe('true', venvs['foreign-runs'])
    assert facts['venv_state'] == 'foreign'
    assert facts['venv_error'].endswith('has no pyvenv.cfg')
    assert sorted(os.listdir(os.path.dirname(os.path.dirname(venvs['foreign-runs'])))) == before


def test_real_venv_runs(tmp_path):
    """A real venv of this Python (python -m venv writes version = X.Y.Z) runs, not broken."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(tmp_path / 'real')], check=True, timeout=120)
    facts = probe('true', str(tmp_path / 'real' / 'bin' / 'python'))
    assert (facts['venv_state'], facts['venv_qmp']) == ('runs', None), facts


def test_true_ignores_the_pin_here(venvs):
    facts = probe('true', venvs['good'])
    assert facts['host_qmp'] is None
    assert (facts['venv_state'], facts['venv_qmp']) == ('runs', PIN)


def test_without_venv_and_ensurepip(venvs, tmp_path):
    """A Debian Python without python3-venv: ensurepip does not import. And apt-get on PATH or not."""
    shadow = tmp_path / 'shadow' / 'ensurepip'
    shadow.mkdir(parents=True)
    (shadow / '__init__.py').write_text('raise ImportError("ensurepip is not installed (test)")\n')
    bin_with_apt = tmp_path / 'with-apt'
    bin_with_apt.mkdir()
    write_script(str(bin_with_apt / 'apt-get'), '#!/bin/sh\nexit 0\n')
    bin_without = tmp_path / 'without-apt'
    bin_without.mkdir()

    plain = probe('true', venvs['missing'], env=dict(os.environ, PATH=str(bin_without)))
    assert (plain['can_venv'], plain['apt']) == (True, False)

    for path, apt in ((bin_with_apt, True), (bin_without, False)):
        env = dict(os.environ, PYTHONPATH=str(tmp_path / 'shadow'), PATH=str(path))
        facts = probe('true', venvs['missing'], env=env)
        assert (facts['venv_state'], facts['can_venv'], facts['apt']) == ('missing', False, apt)
        # not /usr/bin/python3: the versioned package
        assert facts['venv_package'] == 'python%d.%d-venv' % sys.version_info[:2]


@pytest.mark.skipif(not os.path.exists('/usr/bin/python3'), reason='no /usr/bin/python3')
def test_the_system_python_needs_python3_venv(venvs):
    facts = probe('true', venvs['missing'], python='/usr/bin/python3')
    assert facts['executable'] == '/usr/bin/python3'
    assert facts['venv_package'] == 'python3-venv'


def load_probe():
    """The probe as a module, for its pure functions."""
    spec = importlib.util.spec_from_file_location('prepare_probe', PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('host_qmp, venv_state, venv_qmp, can_venv, version, expected', [
    # without ensurepip and without apt-get there is no way to make the venv
    (None, 'missing', None, False, [3, 11, 2], dict(use_host=False, install=True, create_venv=True,
                                                    needs_venv_package=True, too_old=False, cannot_make_venv=True)),
    # auto with the pin here: the host's Python, nothing installed
    (PIN, None, None, None, [3, 11, 2], dict(use_host=True, install=False, create_venv=False, needs_venv_package=False,
                                             too_old=False)),
    # a venv that has the pin
    (None, 'runs', PIN, None, [3, 11, 2], dict(use_host=False, install=False, create_venv=False, needs_venv_package=False,
                                               too_old=False)),
    # a venv without it (or another version): installed into, not made
    (None, 'runs', '0.0.1', None, [3, 11, 2], dict(use_host=False, install=True, create_venv=False,
                                                   needs_venv_package=False, too_old=False)),
    # missing or broken: made first; without ensurepip the venv package comes first
    (None, 'missing', None, True, [3, 11, 2], dict(use_host=False, install=True, create_venv=True,
                                                   needs_venv_package=False, too_old=False)),
    (None, 'broken', None, False, [3, 11, 2], dict(use_host=False, install=True, create_venv=True,
                                                   needs_venv_package=True, too_old=False)),
    # too old to make a venv for the pin
    (None, 'missing', None, True, [3, 8, 10], dict(use_host=False, install=True, create_venv=True,
                                                   needs_venv_package=False, too_old=True)),
    # a foreign directory is never made into a venv (prepare fails on venv_state foreign)
    (None, 'foreign', None, None, [3, 8, 10], dict(use_host=False, install=True, create_venv=False,
                                                   needs_venv_package=False, too_old=False)),
])
def test_decide(host_qmp, venv_state, venv_qmp, can_venv, version, expected):
    facts = dict(host_qmp=host_qmp, venv_state=venv_state, venv_qmp=venv_qmp, can_venv=can_venv, version=version,
                 apt=not expected.get('cannot_make_venv', False))
    expected = dict(expected, cannot_make_venv=expected.get('cannot_make_venv', False))
    assert load_probe().decide(facts, PIN) == expected


def test_the_probe_prints_its_decisions(venvs):
    facts = probe('true', venvs['good'])
    assert (facts['use_host'], facts['install'], facts['create_venv']) == (False, False, False), facts
    facts = probe('true', venvs['missing'])
    assert (facts['use_host'], facts['install'], facts['create_venv']) == (False, True, True), facts
