#!/usr/bin/env python
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Offline stand-in for the get-pip.py that ansible-test uses to put pip in a new venv.

ansible-test (``--venv``, ``--docker`` ...) creates each virtual environment without pip
and runs a bootstrap script it downloads from a host we cannot reach, unless a cached
copy exists. scripts/run-tests.sh copies this file to the cache names that the pinned
ansible-core versions look for (see docs/design.md, "Test tooling"):

    ~/.ansible/test/cache/get_pip_23_1_2.py (ansible-core 2.16)
    ~/.ansible/test/cache/get_pip_24_2.py   (ansible-core 2.19)
    ~/.ansible/test/cache/get_pip_25_2.py   (ansible-core 2.21)

It is run by the new venv's interpreter, with pip-style arguments such as
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``. It puts the pip
bundled with that Python in place (``ensurepip``, no network) and then lets that pip
install what was asked, from the package index.
"""

from __future__ import annotations

import subprocess
import sys

# Options of the real get-pip.py that "pip install" does not know.
GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel')


def run(command):
    """Run a command with this interpreter; show its output and exit only if it fails."""
    process = subprocess.Popen([sys.executable] + command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.communicate()[0]
    if process.returncode != 0:
        sys.stdout.write(output.decode('utf-8', 'replace'))
        sys.stderr.write('get-pip-offline: %s failed with status %d\n' % (' '.join(command), process.returncode))
        sys.exit(process.returncode)


def is_installed(distribution):
    """Tell whether pip sees the named distribution in this environment."""
    command = [sys.executable, '-m', 'pip', 'show', '--quiet', '--disable-pip-version-check', distribution]
    with open('/dev/null', 'wb') as devnull:
        return subprocess.call(command, stdout=devnull, stderr=devnull) == 0


def main(argv):
    """Bootstrap pip with ensurepip, then pip-install the requested packages."""
    install_args = [arg for arg in argv if arg not in GET_PIP_ONLY_OPTIONS]

    run(['-m', 'ensurepip', '--default-pip'])
    if install_args:
        run(['-m', 'pip', 'install', '--quiet'] + install_args)

    # Before Python 3.12 ensurepip also installs setuptools; honour --no-setuptools.
    if '--no-setuptools' in argv and is_installed('setuptools'):
        run(['-m', 'pip', 'uninstall', '--yes', '--quiet', '--disable-pip-version-check', 'setuptools'])


if __name__ == '__main__':
    main(sys.argv[1:])
