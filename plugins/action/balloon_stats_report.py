# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of qmp.balloon.balloon_stats_report (documented in plugins/modules/balloon_stats_report.py).

On the controller only, nothing runs on a host: the fleet report from every hypervisor's fact
``balloon_stats`` (plugins/plugin_utils/_report.py), its files NAME-STAMP.{json,csv,html,md}
written atomically with the links NAME.* to the newest, the rotation, the data for set_stats
(``ansible_stats``) and the gate's decision (plugins/plugin_utils/_report_files.py and _report.py).
"""

from __future__ import annotations

import json
import os

from ansible import constants as C
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

try:  # ansible-core 2.19+: a template's text must be trusted to be rendered
    from ansible.template import trust_as_template
except ImportError:  # ansible-core 2.16 to 2.18
    trust_as_template = None

from ansible_collections.qmp.balloon.plugins.plugin_utils import _report, _report_files
from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain

INVALID = 'Invalid input, nothing was written: '

ARGUMENT_SPEC = dict(
    dir=dict(type='path', required=True),
    name=dict(type='str', default='balloon-stats'),
    keep=dict(type='int', default=10),
    hosts=dict(type='list', elements='str'),
    fail_on_violation=dict(type='bool', default=False),
    fail_on_unknown=dict(type='bool', default=False),
)

#: The role's templates render the HTML and Markdown files (the collection's root is three levels above this file).
TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         'roles', 'balloon_stats', 'templates')
#: Each format's file: rendered from a template, or made here.
TEMPLATE_OF = {'html': 'report.html.j2', 'md': 'report.md.j2'}


def option_problems(params, hosts, hostvars):
    """One sentence per option the spec cannot check."""
    problems = []
    if not params['dir']:
        problems.append('dir must name a directory')
    name = params['name']
    if not name or '/' in name or name in ('.', '..'):
        problems.append('name must be a file name (no /), got %r' % (name,))
    if params['keep'] < 0:
        problems.append('keep must be 0 (keep all) or more, got %d' % params['keep'])
    unknown = [host for host in hosts if host not in hostvars]
    if unknown:
        problems.append('hosts: %s %s not in the inventory' % (', '.join(unknown), 'is' if len(unknown) == 1 else 'are'))
    return problems


def report_json(report):
    """The JSON file's text, as the filter to_nice_json(indent=2) writes it, with a final newline."""
    return json.dumps(report, indent=2, sort_keys=True, separators=(',', ': ')) + '\n'


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def _render(self, template, report):
        """A template of the role rendered with the variable ``report``, as ansible.builtin.template renders it."""
        path = os.path.join(TEMPLATES, template)
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        # the template action's defaults (trim_blocks, no lstrip_blocks, \n)
        overrides = dict(trim_blocks=True, lstrip_blocks=False)
        if trust_as_template is not None:
            templar = self._templar.copy_with_new_env(searchpath=[TEMPLATES], available_variables={'report': report})
            overrides['newline_sequence'] = '\n'
            return templar.template(trust_as_template(text), escape_backslashes=False, overrides=overrides) or ''
        # ansible-core 2.16 to 2.18: unsafe, so no value of the report (a VM's name) is ever rendered as a template itself
        from ansible.template import AnsibleEnvironment
        from ansible.utils.unsafe_proxy import wrap_var
        templar = self._templar.copy_with_new_env(environment_class=AnsibleEnvironment, searchpath=[TEMPLATES],
                                                  newline_sequence='\n', available_variables={'report': wrap_var(report)})
        return templar.do_template(text, preserve_trailing_newlines=True, escape_backslashes=False, overrides=overrides)

    def run(self, tmp=None, task_vars=None):
        super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        del tmp

        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            return {'failed': True, 'msg': INVALID + '; '.join(
                ('unsupported parameters: ' if isinstance(error, UnsupportedError) else '') + error.msg
                for error in validation.errors.errors)}
        params = validation.validated_parameters
        hostvars = task_vars.get('hostvars') or {}
        hosts = list(task_vars.get('ansible_play_hosts_all') or []) if params['hosts'] is None else params['hosts']
        problems = option_problems(params, hosts, hostvars)
        if problems:
            return {'failed': True, 'msg': INVALID + '; '.join(problems)}

        # strategy free (run_once is not honoured): every hypervisor gets here on its own, and the
        # report is written by the last one to have its outcome of this run
        if self._strategy() == 'free':
            waiting = _report.waiting_for(hostvars, list(task_vars.get('ansible_play_hosts') or []))
            if waiting:
                return {'changed': False, 'skipped': True, 'waiting_for': waiting,
                        'msg': 'the report waits for %s (strategy free)' % ', '.join(waiting)}

        # relative to the playbook, as a role's files are; the role's default is absolute
        directory = os.path.join(task_vars.get('playbook_dir') or self._loader.get_basedir(), params['dir'])
        name = params['name']
        check_mode = bool(self._task.check_mode)
        latest = dict((kind, os.path.join(directory, '%s.%s' % (name, kind))) for kind in _report_files.REPORT_FORMATS)
        warnings = []
        written, links, removed = [], [], []   # none when another hypervisor wrote this report
        try:
            # written also in check mode (an audit's evidence), as before; only rotation waits for a real run
            _report_files.make_directory(directory)
            with _report_files.directory_lock(directory):
                try:
                    previous = _report_files.read_report(latest['json'])
                except ValueError as exc:   # also a file that is not JSON
                    warnings.append('The previous report is not read, "since last run" starts again: %s' % exc)
                    previous = None
                report = plain(_report.balloon_report(
                    hostvars, hosts, task_vars.get('ansible_play_hosts'),
                    provenance=_report.play_provenance(task_vars, check_mode), previous=previous))
                # strategy free: another hypervisor may have written this report from the same gathers
                if not self._already_written(report, previous, directory, name, latest['json']):
                    written, links, removed = self._write(report, directory, name, params, task_vars, check_mode)
        except OSError as exc:
            return {'failed': True, 'msg': 'qmp.balloon.balloon_stats_report could not write the report in %s: %s'
                    % (directory, exc)}

        gate = _report.gate(report, params['fail_on_violation'], params['fail_on_unknown'])
        html = latest['html']
        result = {
            'changed': bool(written) and report['since_last_run']['changed'] is True,
            'report': html, 'headline': report['headline'], 'summary': report['summary'],
            'since_last_run': report['since_last_run'], 'files': written, 'links': links, 'removed': removed, 'gate': gate,
            'msg': '%s Report: %s' % (report['headline'], html),
            # ansible-core's strategy takes ansible_stats from any result, as from set_stats (AWX keeps them)
            'ansible_stats': {'data': {'balloon_stats_report': dict(
                [(key, report[key]) for key in ('headline', 'generated_at', 'summary', 'hypervisors', 'violations', 'unknown',
                                                'since_last_run', 'provenance')] + [('report', html)])},
                'per_host': False, 'aggregate': False},
        }
        if warnings:
            result['warnings'] = warnings
        return result

    def _strategy(self):
        """The play's strategy (the task's block knows its play)."""
        play = getattr(getattr(self._task, '_parent', None), '_play', None)
        return getattr(play, 'strategy', None) or C.DEFAULT_STRATEGY

    @staticmethod
    def _already_written(report, previous, directory, name, latest_json):
        """Whether the newest run in the directory is this report, from the same gathers (strategy free)."""
        if report['gathered'] is None:
            return False
        runs = _report_files.report_runs(directory, name)
        newest = runs[max(runs)] if runs else None
        if newest is None:
            return False
        if previous is not None and os.path.realpath(newest) == os.path.realpath(latest_json):
            newest_report = previous
        else:
            # a run with --limit does not move the links: its file is the newest
            try:
                newest_report = _report_files.read_report(newest)
            except ValueError:
                return False
        return (newest_report or {}).get('gathered') == report['gathered']

    def _write(self, report, directory, name, params, task_vars, check_mode):
        """Write this run's files and links, then rotate; returns the files written, the links and the files removed."""
        stamp = _report_files.report_stamp(report['generated_at'])
        texts = {'json': report_json(report), 'csv': _report_files.balloon_report_csv(report)}
        for kind, template in TEMPLATE_OF.items():
            texts[kind] = self._render(template, report)
        written = []
        for kind in _report_files.REPORT_FORMATS:
            path = os.path.join(directory, '%s-%s.%s' % (name, stamp, kind))
            _report_files.write_atomically(path, texts[kind])
            written.append(path)
        # A run with --limit audited part of the fleet: its files are written, but the links stay on the
        # last run without --limit, which the next full run's "since last run" then compares with.
        links = []
        if not task_vars.get('ansible_limit'):
            for kind in _report_files.REPORT_FORMATS:
                path = os.path.join(directory, '%s.%s' % (name, kind))
                _report_files.link_atomically('%s-%s.%s' % (name, stamp, kind), path)
                links.append(path)
        removed = []
        # Never in check mode: a dry run deletes no audit evidence.
        if not check_mode:
            runs = _report_files.report_runs(directory, name)
            rotation = _report_files.balloon_report_rotation(sorted(runs.values()), params['keep'])
            removed = _report_files.remove_runs(directory, name, rotation['remove'])
        return written, links, removed
