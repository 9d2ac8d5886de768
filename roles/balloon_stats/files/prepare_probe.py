# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Probe of the role's prepare entry point: what this hypervisor's Python can do.

tasks/prepare.yml runs it with the host's interpreter, as ``PYTHON -c SCRIPT MODE PIN VENV_PYTHON``
(ansible.builtin.command, so it costs one module call and never changes anything), and reads the
one JSON document it prints:

- ``executable``, ``version``: the interpreter that ran it (sys.executable, the real path).
- ``host_qmp``: the version of qemu.qmp this interpreter imports, or null (only with MODE auto).
- ``venv_state`` of VENV (VENV_PYTHON's directory's parent): ``missing`` (no VENV, or an empty
  directory), ``foreign`` (a non-empty VENV without pyvenv.cfg: not a venv, never touched),
  ``broken`` (VENV/pyvenv.cfg exists, but VENV_PYTHON is missing or does not run, say after the
  system Python it links to was upgraded away, or it runs a Python whose major.minor differs
  from pyvenv.cfg's ``version``: Debian's bin/python -> python3 -> /usr/bin/python3 still runs
  after an upgrade, as the newer Python) or ``runs``; ``venv_qmp``: the version of qemu.qmp
  VENV_PYTHON imports, or null. Not looked at when auto finds the pin here.
- ``can_venv``: this interpreter has the venv and ensurepip modules (Debian and Ubuntu split
  them into python3-venv), so ``PYTHON -m venv`` can make a venv with pip.
- ``apt``: apt-get is on PATH; ``venv_package``: the Debian/Ubuntu package to install when it
  cannot: python3-venv for the distribution's default python3, pythonX.Y-venv otherwise.
- What prepare does with it (``decide``): ``use_host`` (this interpreter imports the pin),
  ``install`` (the venv must get the pin), ``create_venv`` (made first: missing or broken),
  ``needs_venv_package`` (the venv module must be installed first), ``cannot_make_venv`` (nor
  can apt-get install it) and ``too_old`` (this interpreter cannot make a venv for the pin).

Standard library only, and Python 3.6+ syntax: it must at least run far enough to say that a
Python is too old.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import sys

# What a venv's Python runs: its major.minor on the first line, then the version of qemu.qmp it
# imports (nothing, and exit status 1 with the error on stderr, when it cannot).
VENV_CHECK = (
    'import sys\n'
    'print("%d.%d" % sys.version_info[:2], flush=True)\n'
    'import importlib.metadata as metadata, qemu.qmp\n'
    'print(metadata.version("qemu.qmp"))\n'
)
VENV_TIMEOUT = 60


def qmp_version_here():
    """The version of qemu.qmp this interpreter imports, or None."""
    try:
        from importlib import metadata  # pylint: disable=import-outside-toplevel
        import qemu.qmp  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        return metadata.version('qemu.qmp')
    except Exception:  # pylint: disable=broad-except
        return None


def venv_config_version(venv):
    """major.minor of the Python VENV/pyvenv.cfg says the venv was made with, or None.

    ``version_info`` (virtualenv, uv) else ``version`` (python -m venv)."""
    values = {}
    try:
        with open(os.path.join(venv, 'pyvenv.cfg'), encoding='utf-8', errors='replace') as handle:
            for line in handle:
                key, sep, value = line.partition('=')
                if sep:
                    values[key.strip().lower()] = value.strip()
    except OSError:
        return None
    version = values.get('version_info') or values.get('version') or ''
    parts = version.split('.')
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return '%s.%s' % (parts[0], parts[1])
    return None


def venv_status(venv_python):
    """(state, qemu.qmp version or None, why it failed or None) of the venv VENV_PYTHON belongs to."""
    venv = os.path.dirname(os.path.dirname(venv_python))
    if not os.path.exists(os.path.join(venv, 'pyvenv.cfg')):
        # Not a venv: missing (nothing there, or an empty directory that venv may fill), or
        # something else that must not be touched (a wrong balloon_stats_venv).
        if os.path.lexists(venv) and not (os.path.isdir(venv) and not os.listdir(venv)):
            return 'foreign', None, '%s has no pyvenv.cfg' % venv
        return 'missing', None, None
    if not os.path.exists(venv_python):
        return 'broken', None, '%s does not exist or its link is dangling' % venv_python
    try:
        proc = subprocess.Popen([venv_python, '-c', VENV_CHECK], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=VENV_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 'broken', None, str(exc)
    lines = err.decode('utf-8', 'replace').strip().splitlines()
    out_lines = out.decode('utf-8', 'replace').strip().splitlines()
    why = lines[-1] if lines else 'exit status %d' % proc.returncode
    if not out_lines:
        return 'broken', None, why  # not even sys.version_info: it does not run Python
    made_with = venv_config_version(venv)
    if made_with is not None and out_lines[0].strip() != made_with:
        return 'broken', None, 'made with Python %s, %s is Python %s' % (made_with, venv_python, out_lines[0].strip())
    if proc.returncode == 0:
        return 'runs', (out_lines[1].strip() if len(out_lines) > 1 else None) or None, None
    # It ran but could not import qemu.qmp: a venv without it (ModuleNotFoundError), still usable.
    return 'runs', None, why


def can_make_venvs():
    """Whether ``-m venv`` can make a venv with pip: the venv and ensurepip modules and its wheels."""
    try:
        import ensurepip  # pylint: disable=import-outside-toplevel
        import venv  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        return bool(ensurepip.version())
    except Exception:  # pylint: disable=broad-except
        return False


def venv_package():
    """python3-venv for the default python3 of Debian/Ubuntu, else pythonX.Y-venv."""
    here = os.path.realpath(sys.executable)
    if here == os.path.realpath('/usr/bin/python3'):
        return 'python3-venv'
    return 'python%d.%d-venv' % sys.version_info[:2]


def decide(facts, pin):
    """What prepare does on this host, from the probe's ``facts``: every decision of tasks/prepare.yml."""
    use_host = facts['host_qmp'] == pin
    install = not use_host and facts['venv_qmp'] != pin
    create_venv = install and facts['venv_state'] in ('missing', 'broken')
    return dict(
        use_host=use_host,
        install=install,
        create_venv=create_venv,
        needs_venv_package=create_venv and not facts['can_venv'],
        cannot_make_venv=create_venv and not facts['can_venv'] and not facts['apt'],
        too_old=create_venv and tuple(facts['version'][:2]) < (3, 9),
    )


def main(argv):
    mode, pin, venv_python = argv[:3]
    facts = dict(
        executable=sys.executable,
        version=list(sys.version_info[:3]),
        host_qmp=None,
        venv_state=None,
        venv_qmp=None,
        venv_error=None,
        can_venv=None,
        apt=shutil.which('apt-get') is not None,
        venv_package=venv_package(),
    )
    if mode == 'auto':
        facts['host_qmp'] = qmp_version_here()
    if facts['host_qmp'] != pin:
        facts['venv_state'], facts['venv_qmp'], facts['venv_error'] = venv_status(venv_python)
        if facts['venv_state'] in ('missing', 'broken'):
            facts['can_venv'] = can_make_venvs()
    facts.update(decide(facts, pin))
    print(json.dumps(facts, sort_keys=True))


if __name__ == '__main__':
    main(sys.argv[1:])
