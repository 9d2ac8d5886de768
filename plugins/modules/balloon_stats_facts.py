#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The documentation of the action plugin plugins/action/balloon_stats_facts.py, which does the work
# (as ansible.builtin.set_fact's module file documents its action).

from __future__ import annotations

DOCUMENTATION = r'''
module: balloon_stats_facts
short_description: Gather a hypervisor's balloon statistics as the fact balloon_stats, with compliance and a verdict
version_added: 0.2.0
description:
  - Reads every VM of the hypervisor with M(qmp.balloon.balloon_stats_info) (one module call on the host), then builds the
    cacheable fact C(balloon_stats) on the controller - one record per VM with its rule results, rates since the previous
    fact, memory pressure verdict - and the hypervisor's outcome (C(ok), C(no_vms), C(failed)) with its reason.
  - This is the gather step of the role C(qmp.balloon.balloon_stats), and works on its own, for example ad hoc
    C(ansible pve -b -m qmp.balloon.balloon_stats_facts -a 'sockets=/var/run/qemu-server/*.qmp'), which prints the
    hypervisor's verdict in RV(msg).
  - The rates and the pressure verdict compare with the previous C(balloon_stats) fact of the host (this play's, or the
    fact cache's). The first gather of a VM has no rates.
  - A glob of O(sockets) that matches nothing makes a hypervisor without VMs (RV(outcome.status=no_vms)), and a glob whose
    directory does not exist a C(failed) one (a typo, another platform's path); the VMs other globs found are still read.
  - Selection, connection and TLS options are those of M(qmp.balloon.balloon_stats_info) and are passed to it, except
    O(transport), which also takes V(auto), O(fail_on_error), false by default here, and O(allow_empty), which does not
    apply.
  - The module runs with the task's Python (C(ansible_python_interpreter)); the role sets the one its C(prepare) chose.
author:
  - qmp.balloon maintainers (@qmp-balloon)
options:
  transport:
    description:
      - V(qmp) (QMP sockets or TCP monitors), V(libvirt) (libvirt's API), or V(auto) - QMP when O(socket), O(host),
        O(sockets) or a target without C(domain) is given, libvirt when a domain or O(all_domains) is, else libvirt when one
        of O(libvirt_sockets) exists on the host (looked up with one shell command, not a module), else QMP.
      - With V(libvirt) and no domain given, every active domain is read (O(all_domains)).
    type: str
    choices: [auto, qmp, libvirt]
    default: auto
  libvirt_sockets:
    description: The paths whose existence means libvirt manages this hypervisor's VMs (O(transport=auto)).
    type: list
    elements: path
    default: [/var/run/libvirt/libvirt-sock, /var/run/libvirt/virtqemud-sock]
  hypervisor:
    description: The hypervisor's name in the fact and its records. Defaults to C(inventory_hostname).
    type: str
  expected_interval:
    description: The polling interval, in seconds, that the rule C(polling_interval) expects.
    type: int
    default: 10
  interval_rule:
    description:
      - V(at_most) - polling is on and at most O(expected_interval) (Proxmox sets 2 s at every VM start); V(exact) - equal to it.
    type: str
    choices: [at_most, exact]
    default: at_most
  min_available_percent:
    description: The rule C(min_available_memory) - available memory at least this percentage of the total (0 to 100).
    type: float
    default: 10
  pressure:
    description:
      - The thresholds of the pressure verdict (after KubeVirt's alert) - V(high) below C(headroom_high) % available with major
        faults or swap traffic above their thresholds, or an OOM kill; V(moderate) below C(headroom_moderate) %.
    type: dict
    suboptions:
      headroom_high:
        description: Percentage of available memory under which pressure can be high (at most C(headroom_moderate)).
        type: float
        default: 5
      headroom_moderate:
        description: Percentage of available memory under which pressure is at least moderate.
        type: float
        default: 10
      major_faults:
        description: Major faults per second above which low headroom is high pressure.
        type: float
        default: 5
      swap_bytes:
        description: Swap traffic (in and out), bytes per second, above which low headroom is high pressure.
        type: float
        default: 1048576
  rules:
    description:
      - Compliance rules added to the built-in ones, each a dict with C(name), C(query) (a JMESPath expression over the VM
        record, true when compliant, null when it cannot be judged), C(severity) (V(critical), V(warning), V(info)), and
        optionally C(description), C(severity_query) and C(always) (also judged when the VM could not be read).
      - The filter P(qmp.balloon.balloon_compliance#filter) documents the rule format and the record's fields.
    type: list
    elements: dict
    default: []
  fail_on_error:
    description:
      - Whether a VM that cannot be read fails the task (no fact is set then). By default it is a record with
        C(reachable=false) that the rule C(reachable) fails, and the other VMs are judged.
    type: bool
    default: false
  allow_empty:
    description:
      - Does not apply here (giving it fails the task) - a glob that matches nothing makes a hypervisor without VMs.
    type: bool
  builtin_rules:
    description:
      - Replaces the built-in rules (C(reachable), C(polling_interval), C(driver_reporting), C(data_fresh),
        C(min_available_memory), C(memory_pressure)); V([]) judges by O(rules) only.
    type: list
    elements: dict
  failure:
    description:
      - Record that this hypervisor failed in this run, without reading anything - C(reason), one sentence, and C(stage), the
        step it stopped at. The fact keeps its previous stats (the next gather's rates still have them) and gets this
        outcome, so that a report tells this run's failure from an old fact. The role records every failure of its own so.
    type: dict
    suboptions:
      reason:
        description: Why it failed.
        type: str
        required: true
      stage:
        description: Where it stopped (the role gives the failed task's name).
        type: str
        default: gather
  role:
    description:
      - For the role C(qmp.balloon.balloon_stats) only, which passes its entry point and variables here in its first task
        on each hypervisor; a playbook leaves it out.
      - Nothing is read and the fact is unchanged. The variables are checked (one sentence per problem), one command on the
        host runs the role's C(prepare) probe and, for C(transport=auto), looks for libvirt's sockets; the result is the
        role's plan for this host (which Python runs its modules, whether C(prepare) installs, which steps run).
    type: dict
notes:
  - The checks of the thresholds and rules run before anything is read; a bad one fails the task with one sentence.
  - A hypervisor-level outcome (no VM, a missing glob directory) does not fail the task; it is in RV(outcome) and in the
    fact, so that a report can say why. A VM that cannot be read is a record with C(reachable=false), unless
    O(fail_on_error=true).
extends_documentation_fragment:
  - qmp.balloon._common
  - qmp.balloon._common.info_module
  - action_common_attributes.flow
  - action_common_attributes.facts
attributes:
  facts:
    support: full
  action:
    support: full
    details: The VMs are read by M(qmp.balloon.balloon_stats_info) on the host; the fact is built on the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
seealso:
  - module: qmp.balloon.balloon_stats_info
  - module: qmp.balloon.balloon_stats_polling
'''

EXAMPLES = r'''
# Ad hoc, the verdict of every VM of a Proxmox VE hypervisor:
#   ansible pve -b -m qmp.balloon.balloon_stats_facts -a 'sockets=/var/run/qemu-server/*.qmp' \
#       -e ansible_python_interpreter=/opt/qmp-balloon/venv/bin/python

- name: Gather the balloon stats of every VM of the hypervisor as the fact balloon_stats
  qmp.balloon.balloon_stats_facts:
    sockets: [/var/run/qemu-server/*.qmp]
    expected_interval: 10
    min_available_percent: 15
    rules:
      - name: min_total_memory
        query: "stats.total_memory >= `1073741824`"
        severity: info
  become: true

- name: The VMs that break a rule
  ansible.builtin.debug:
    msg: "{{ ansible_facts.balloon_stats.vms | rejectattr('compliance.compliant') | map(attribute='name') }}"

- name: Every active libvirt domain (transport auto finds libvirt's socket)
  qmp.balloon.balloon_stats_facts:
  become: true
'''

RETURN = r'''
msg:
  description: The hypervisor's verdict in one sentence.
  returned: success
  type: str
  sample: "hv1: 6 VMs: 1 compliant, 5 non-compliant, 0 unknown; 9 violations; 0 unreachable; pressure high on 1, moderate on 0"
outcome:
  description:
    - The hypervisor's outcome - C(status) (V(ok), V(no_vms), V(failed)), C(reason) (empty when ok), C(stage) (V(gather), or
      where a recorded O(failure) stopped) and C(run) (this C(ansible-playbook) run). Also in the fact.
  returned: success
  type: dict
  contains:
    status:
      description: V(ok), V(no_vms) or V(failed).
      type: str
    reason:
      description: Why, in one sentence; empty when V(ok).
      type: str
    stage:
      description: V(gather), or where a recorded O(failure) stopped.
      type: str
    run:
      description: The C(ansible-playbook) run that gave this outcome.
      type: str
  sample: {"status": "no_vms", "reason": "no VM found (no socket matches /var/run/qemu-server/*.qmp)", "stage": "gather",
           "run": "5f0c1e2d3a4b5c6d"}
summary:
  description: The counts of the fact's records - C(vms), C(unreachable), C(compliant), C(non_compliant), C(unknown),
    C(violations), C(unknown_results), C(by_pressure).
  returned: success
  type: dict
empty_globs:
  description: The globs of O(sockets) that matched no socket, as M(qmp.balloon.balloon_stats_info) returns them.
  returned: success
  type: list
  elements: dict
queried_host:
  description: Whether M(qmp.balloon.balloon_stats_info) ran on the host; V(false) when no VM is given (nothing to read).
  returned: success
  type: bool
ansible_facts:
  description: The facts set.
  returned: success
  type: dict
  contains:
    balloon_stats:
      description:
        - The hypervisor's stats and compliance - C(hypervisor), C(collected_at) (UTC), C(run) (the run that read the stats),
          C(expected_interval), C(status) and C(reason) (what the read found), C(outcome) (as RV(outcome), the last word of
          the last run), C(empty_globs), C(audit) (how its VMs were found - C(transport),
          C(transport_setting), C(socket_globs), C(vms), C(all_domains), C(libvirt_uri), C(vms_listed), C(vms_read)),
          C(parameters) (the thresholds used), C(rules), C(vms) (one record per VM - the fields of
          M(qmp.balloon.balloon_stats_info)'s RV(qmp.balloon.balloon_stats_info#module:vms) plus C(hypervisor), C(reachable),
          C(error), C(available_percent), C(unavailable_percent), C(rates), C(pressure), C(compliance)) and C(summary).
      type: dict
      returned: success
'''
