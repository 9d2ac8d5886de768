# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filter files stay small: ansible-core imports every filter file of the collection in each
task's worker that resolves one of its filters (their sources compiled again each time), so they
import no implementation and no third-party library until a filter is called; and each filter name
still reaches its implementation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ansible
import pytest

from ansible_collections.qmp.balloon.plugins.filter import compliance, jmespath, openmetrics
from ansible_collections.qmp.balloon.plugins.plugin_utils import (_openmetrics, _pressure, _records, _report, _report_files,
                                                                  _rules)

HEAVY = ('ansible_collections.qmp.balloon.plugins.plugin_utils._rules',
         'ansible_collections.qmp.balloon.plugins.plugin_utils._pressure',
         'ansible_collections.qmp.balloon.plugins.plugin_utils._records',
         'ansible_collections.qmp.balloon.plugins.plugin_utils._audit',
         'ansible_collections.qmp.balloon.plugins.plugin_utils._report',
         'ansible_collections.qmp.balloon.plugins.plugin_utils._report_files',
         'ansible_collections.qmp.balloon.plugins.plugin_utils._openmetrics',
         'ansible_collections.qmp.balloon.plugins.plugin_utils._role_plan',
         'ansible_collections.qmp.balloon.plugins.plugin_utils._facts',
         'jmespath', 'csv', 'hashlib', 'getpass')
FILES = ('compliance', 'jmespath', 'openmetrics')


def test_importing_every_filter_file_imports_no_implementation():
    collections = os.path.abspath(os.path.join(os.path.dirname(compliance.__file__), '..', '..', '..', '..', '..'))
    code = ('import json, sys\n'
            'before = set(sys.modules)\n'
            + ''.join('import ansible_collections.qmp.balloon.plugins.filter.%s\n' % name for name in FILES)
            + 'print(json.dumps(sorted(set(sys.modules) - before)))\n')
    # the collection and ansible-core (ansible-test puts ansible-core on the path its own way)
    path = [collections, os.path.dirname(os.path.dirname(ansible.__file__))] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    loaded = json.loads(subprocess.check_output([sys.executable, '-c', code], env=env, cwd=collections))
    assert [name for name in loaded if name in HEAVY] == []
    assert 'ansible_collections.qmp.balloon.plugins.filter.compliance' in loaded


def test_the_filter_files_hold_no_implementation():
    for module in (compliance, jmespath, openmetrics):
        with open(module.__file__, encoding='utf-8') as handle:
            assert len(handle.read()) < 4096, module.__file__


#: Each filter file's filters and the module that implements each.
IMPLEMENTATIONS = [
    (compliance, {'balloon_compliance': _records, 'balloon_summary': _records, 'balloon_rates': _pressure,
                  'balloon_report': _report, 'balloon_report_csv': _report_files, 'balloon_report_rotation': _report_files}),
    (openmetrics, {'balloon_openmetrics': _openmetrics}),
]


def test_every_implementation_module_is_checked():
    """HEAVY names every module of plugin_utils but the two the filter files import."""
    package = _rules.__name__.rsplit('.', 1)[0]
    modules = sorted('%s.%s' % (package, name[:-len('.py')]) for name in os.listdir(os.path.dirname(_rules.__file__))
                     if name.endswith('.py') and name not in ('__init__.py', '_data.py', '_lazy.py'))
    assert sorted(name for name in HEAVY if name.startswith(package + '.')) == modules


@pytest.mark.parametrize('module, implementations', IMPLEMENTATIONS)
def test_each_filter_name_reaches_its_implementation(module, implementations, monkeypatch):
    filters = module.FilterModule().filters()
    assert sorted(filters) == sorted(implementations)
    for name, function in filters.items():
        calls = []
        monkeypatch.setattr(implementations[name], name, lambda *args, **kwargs: calls.append((args, kwargs)) or 'result')
        assert function(1, key=2) == 'result'
        assert calls == [((1,), {'key': 2})], name
