# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filters' documentation: every JMESPath example parses, and no link markup a text renderer shows as ``[name]``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

jmespath = pytest.importorskip('jmespath')

FILTERS = Path(__file__).resolve().parents[4] / 'plugins' / 'filter'


def test_every_jmespath_example_parses():
    examples = yaml.safe_load((FILTERS / 'jmespath.yml').read_text(encoding='utf-8'))['EXAMPLES']
    expressions = re.findall(r"qmp\.balloon\.jmespath\('([^']*)'\)", examples)
    assert len(expressions) >= 3
    for expression in expressions:
        jmespath.compile(expression)  # raises ParseError (for example on arithmetic, which JMESPath lacks)


def test_the_csv_filter_names_the_report_filter_in_words():
    text = (FILTERS / 'balloon_report_csv.yml').read_text(encoding='utf-8')
    assert 'P(qmp.balloon.balloon_report' not in text
