# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``python3 -m fake_qmp ...`` (with tests/support on the path): the command line of fake_qmp.cli."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
