# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the fake QMP server from the command line (bench/run.py, its own tests)::

    python3 tests/support/run_fake_qmp.py --dir DIR --count 1000 [--tcp] [--fault delay] [--stats live]

Python puts this file's directory first on the path, so the package fake_qmp next to it
imports as is. See fake_qmp/__init__.py and ``--help``.
"""

from __future__ import annotations

import sys

from fake_qmp.cli import main  # pylint: disable=import-error  # tests/support, the script's own directory

if __name__ == "__main__":
    sys.exit(main())
