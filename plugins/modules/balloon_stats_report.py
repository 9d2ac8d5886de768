#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The documentation of the action plugin plugins/action/balloon_stats_report.py, which does the work
# (as ansible.builtin.set_fact's module file documents its action).

from __future__ import annotations

DOCUMENTATION = r'''
module: balloon_stats_report
short_description: Write the fleet's balloon statistics compliance report (JSON, CSV, HTML, Markdown) on the controller
version_added: 0.2.0
description:
  - Builds the fleet report from the C(balloon_stats) fact of every host of O(hosts) (set by
    M(qmp.balloon.balloon_stats_facts)) - each hypervisor's status (C(ok), C(unreachable), C(failed) with its reason,
    C(no_vms)) and how it was audited, each VM's rule results, the rules table, the provenance, the headline and what
    changed since the previous report - and writes it into O(dir) as C(NAME-STAMP.json), C(.csv), C(.html) and C(.md)
    (STAMP is the report's C(generated_at), C(20261207T100000Z)), with the links C(NAME.json), ... to the newest.
  - Runs on the controller only; nothing runs on a host. Run it once (C(run_once=true)), in the play that gathered the
    facts - a host that is not among the play's active hosts (C(ansible_play_hosts)) counts as not audited in this run,
    and a fact it has from the fact cache is left out of the figures. A play that gathers nothing (after AWX sliced jobs,
    over the fact cache) reports the cached facts of the play's hosts.
  - This is the report step of the role C(qmp.balloon.balloon_stats), and works in any play.
  - Each file is written atomically (a temporary file beside it, then a rename), with mode C(0644); O(dir) is created
    (mode C(0755)) when missing. The links are relative, so the directory can be moved or served as it is, and each is
    replaced in one rename.
  - The previous report (the link C(NAME.json)) gives RV(since_last_run). The task is C(changed) only when the findings
    changed - each VM's state and rule results, each hypervisor's status, the set of VMs; stats values, times and ages
    are not findings, so an unchanged fleet gives C(changed=false).
  - Under C(strategy=free) several hosts may run it after the last gather; the first writes the report, the others find
    that the newest report comes from the same gathers and write nothing (RV(files) empty). They run one at a time (a
    lock on O(dir)).
  - A run with C(--limit) audited part of the fleet - its files are written but the links stay on the last run without
    C(--limit), which the next full run compares with.
  - Rotation keeps the newest O(keep) runs whose findings changed, and always the newest run; an unchanged run older than
    the newest is removed, so that a short schedule does not rotate the real changes away.
  - The report's data goes to the play's custom stats (as M(ansible.builtin.set_stats) with C(per_host=false) and
    C(aggregate=false)), under the key C(balloon_stats_report), which AWX keeps as the job's artifacts.
  - The task never fails on the findings; RV(gate) says whether a run with O(fail_on_violation) or O(fail_on_unknown)
    should, and why, for an M(ansible.builtin.fail) task after it.
author:
  - qmp.balloon maintainers (@qmp-balloon)
options:
  dir:
    description:
      - The directory of the report files on the controller. A relative path is relative to the playbook's directory.
    type: path
    required: true
  name:
    description: The base name of the files, C(NAME-STAMP.*) and the links C(NAME.*); a file name, without C(/).
    type: str
    default: balloon-stats
  keep:
    description: How many runs whose findings changed are kept, besides the newest run. V(0) keeps every run.
    type: int
    default: 10
  hosts:
    description:
      - The hypervisors the report covers, by inventory name; each must be in the inventory. Defaults to every host of
        the play (C(ansible_play_hosts_all)), so a host that dropped out of the play is reported, never left out.
    type: list
    elements: str
  fail_on_violation:
    description: Whether RV(gate) fails on a rule violation or on a hypervisor C(unreachable) or C(failed).
    type: bool
    default: false
  fail_on_unknown:
    description: Whether RV(gate) fails on an C(unknown) VM (a rule could not be judged).
    type: bool
    default: false
notes:
  - The HTML and Markdown files are rendered from the role's templates C(roles/balloon_stats/templates/report.html.j2)
    and C(report.md.j2), with Ansible's templating. The collection's README describes what the report holds.
  - Bad options fail the task with one sentence, before anything is written.
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.flow
attributes:
  check_mode:
    support: partial
    details: The report files and links are written in check mode too (the audit of a dry run); no old run is removed.
  diff_mode:
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
    details: C(changed) means the findings changed since the previous report; each run writes its own files.
  platform:
    platforms: posix
    details: The files are written on the controller.
  action:
    support: full
    details: Everything is done on the controller; no module runs on the host.
  async:
    support: none
  bypass_host_loop:
    support: none
seealso:
  - module: qmp.balloon.balloon_stats_facts
  - module: ansible.builtin.set_stats
'''

EXAMPLES = r'''
- name: Gather every hypervisor's balloon stats
  qmp.balloon.balloon_stats_facts:
    sockets: [/var/run/qemu-server/*.qmp]
  become: true

- name: Write the fleet report beside the playbook
  qmp.balloon.balloon_stats_report:
    dir: balloon-stats-report
    keep: 30
    fail_on_violation: true
  run_once: true
  register: report

- name: Show the headline and where the report is
  ansible.builtin.debug:
    msg: "{{ report.msg }}"
  run_once: true

- name: Fail on rule violations and hypervisors not audited, after the report is written
  ansible.builtin.fail:
    msg: "{{ report.gate.msg }}"
  run_once: true
  when: report.gate.failed
'''

RETURN = r'''
msg:
  description: The headline and the path of the HTML report.
  returned: success
  type: str
  sample: "6 VMs on 2 hypervisors: 1 compliant, 5 non-compliant, 0 unknown; 9 violations (4 critical, 4 warning, 1 info),
    12 rule results unknown. Report: /srv/audit/balloon-stats-report/balloon-stats.html"
headline:
  description: The fleet in one line - every VM and hypervisor counted in its state, with the reasons of the hypervisors
    not audited, and how many VMs could not be read (the summary's C(vms_unreachable)) with their names (five at most;
    each one's reason is in the files, the Markdown's findings included).
  returned: success
  type: str
report:
  description: The path of the latest HTML report, the link C(NAME.html) (the other formats are beside it).
  returned: success
  type: str
  sample: /srv/audit/balloon-stats-report/balloon-stats.html
summary:
  description:
    - The report's counts - C(hypervisors), C(hypervisors_ok), C(hypervisors_unreachable), C(hypervisors_failed),
      C(hypervisors_no_vms), C(vms), C(vms_unreachable), C(vms_compliant), C(vms_non_compliant), C(vms_unknown),
      C(violations), C(unknown_results), C(by_severity), C(by_health), C(by_pressure).
  returned: success
  type: dict
since_last_run:
  description:
    - What changed since the previous report - C(previous) (its C(generated_at), null for the first), C(changed),
      C(new_violations), C(resolved_violations), C(vms_appeared), C(vms_disappeared), C(state_changes),
      C(hypervisor_changes), C(not_in_previous), C(not_in_this_run), C(vms_not_compared).
  returned: success
  type: dict
files:
  description: The report files written, C(NAME-STAMP.json), C(.csv), C(.html), C(.md); empty when another host wrote
    this report (strategy free).
  returned: success
  type: list
  elements: str
links:
  description: The links C(NAME.*) pointed at this run's files; empty with C(--limit) or when nothing was written.
  returned: success
  type: list
  elements: str
removed:
  description: The files of older runs removed by the rotation (never in check mode).
  returned: success
  type: list
  elements: str
gate:
  description: Whether the run should fail, by O(fail_on_violation) and O(fail_on_unknown), and why.
  returned: success
  type: dict
  contains:
    failed:
      description: Whether the run should fail.
      type: bool
      returned: success
    msg:
      description:
        - One sentence listing the violations, the hypervisors not audited and the unknown VMs it fails on; empty when
          it does not fail.
      type: str
      returned: success
      sample: "2 compliance violations: hv1/web1: min_available_memory (warning); hv1/db1: reachable (critical);
        1 hypervisor not audited: hypervisor hv2 unreachable: Ansible could not connect to it, so none of its VMs was read"
ansible_stats:
  description:
    - The custom stats of the play, as M(ansible.builtin.set_stats) gives them; ansible-core records them from this
      result. C(data.balloon_stats_report) holds C(headline), C(generated_at), C(summary), C(hypervisors),
      C(violations), C(unknown), C(since_last_run), C(provenance) and C(report) (the HTML report's path).
  returned: success
  type: dict
'''
