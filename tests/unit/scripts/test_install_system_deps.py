# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""scripts/install-system-deps.sh on a host without dpkg-query (not Debian): one sentence, exit 1."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'scripts', 'install-system-deps.sh')
BASH = shutil.which('bash')


@pytest.mark.skipif(not os.path.exists(SCRIPT) or BASH is None, reason='no scripts/ in this copy, or no bash')
@pytest.mark.parametrize('args', [[], ['--check']])
def test_without_dpkg_query(tmp_path, args):
    """PATH holds only id (no dpkg-query, no apt-get): it says it knows only Debian/apt, lists nothing as missing."""
    os.symlink(shutil.which('id'), str(tmp_path / 'id'))
    proc = subprocess.run([BASH, SCRIPT] + args, env={'PATH': str(tmp_path)}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1, proc
    assert proc.stdout == '', proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("install-system-deps: no dpkg-query here: this script knows only Debian's packages and apt-get; "), lines
    assert 'missing' not in lines[0]
