# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filters' documentation: every JMESPath example parses, and no link markup a text renderer shows as ``[name]``."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import yaml

jmespath = pytest.importorskip('jmespath')

FILTERS = Path(__file__).resolve().parents[4] / 'plugins' / 'filter'


def test_every_jmespath_example_parses():
    examples = yaml.safe_load((FILTERS / 'jmespath.yml').read_text(encoding='utf-8'))['EXAMPLES']
    # the examples are YAML themselves: their values hold the expression in '...' or "..."
    values = [str(value) for value in yaml.safe_load(examples).values()]
    expressions = [match[1] for value in values for match in re.findall(r"qmp\.balloon\.jmespath\((['\"])(.*?)\1\)", value)]
    assert len(expressions) >= 3
    for expression in expressions:
        with warnings.catch_warnings():
            # also jmespath's deprecated `string` literal (a JSON literal that is not JSON)
            warnings.simplefilter('error')
            jmespath.compile(expression)  # raises ParseError (for example on arithmetic, which JMESPath lacks)


def test_the_csv_filter_names_the_report_filter_in_words():
    text = (FILTERS / 'balloon_report_csv.yml').read_text(encoding='utf-8')
    assert 'P(qmp.balloon.balloon_report' not in text
