# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's meta/argument_specs.yml shows the defaults of defaults/main.yml (what ansible-doc -t role prints)."""

from __future__ import annotations

import os

import pytest
import yaml

ROLE = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'balloon_stats')


def load(*parts):
    with open(os.path.join(ROLE, *parts), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


SPECS = load('meta', 'argument_specs.yml')['argument_specs']
DEFAULTS = load('defaults', 'main.yml')


@pytest.mark.parametrize('entry', sorted(SPECS))
def test_spec_defaults_are_the_role_defaults(entry):
    problems = []
    for name, option in SPECS[entry]['options'].items():
        assert name in DEFAULTS, (entry, name)
        value = DEFAULTS[name]
        if 'default' in option:
            if option['default'] != value:
                problems.append('%s: spec %r, defaults/main.yml %r' % (name, option['default'], value))
        elif value is not None and not (isinstance(value, str) and '{{' in value):
            # ansible-doc would print "default: null" for a value that is set
            problems.append('%s: no default in the spec, defaults/main.yml %r' % (name, value))
    assert problems == [], problems


def test_builtin_rules_default_is_shown():
    assert SPECS['gather']['options']['balloon_stats_builtin_rules']['default'] == DEFAULTS['balloon_stats_builtin_rules']
    assert [rule['name'] for rule in DEFAULTS['balloon_stats_builtin_rules']] == [
        'reachable', 'polling_interval', 'driver_reporting', 'data_fresh', 'min_available_memory',
        'memory_pressure']
