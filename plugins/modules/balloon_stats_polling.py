#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: balloon_stats_polling
short_description: Set how often QEMU polls guest memory statistics through the virtio-balloon
version_added: 0.1.0
description:
  - Sets the C(guest-stats-polling-interval) property of the virtio-balloon device of one or many
    QEMU VMs over QMP, so that the guests report their memory statistics.
  - Reads the current interval first and writes only when it differs.
  - Optionally re-arms a stalled statistics timer, which QEMU does not do when it is given the value it already has.
  - Many VMs are handled concurrently in one task with O(targets).
  - With O(transport=libvirt), sets the stats period of libvirt domains through libvirt's API (C(virDomainSetMemoryStatsPeriod)),
    which libvirt shows as C(<memballoon><stats period=.../>) in the domain XML; O(persistent) also writes it into the
    domain's configuration.
author:
  - qmp.balloon maintainers (@qmp-balloon)
extends_documentation_fragment:
  - qmp.balloon._common
  - qmp.balloon._common.actions
options:
  interval:
    description:
      - Polling interval in seconds, from 0 to 4294967295.
      - V(0) disables polling; the last statistics stay readable.
    type: int
    required: true
  rearm:
    description:
      - When to re-arm the statistics timer of a VM whose interval is already right.
      - QEMU re-arms the timer only when the guest answers, so a guest that once stopped answering
        leaves the timer stalled; writing the same interval again does nothing. Re-arming writes
        V(0) and then the interval, and a new timer fires at once.
      - V(never) never re-arms.
      - V(stale) re-arms only when the VM is running and its last update is older than 3 x O(interval).
        A guest that never answered at all (no balloon driver) is not re-armed, nor one whose driver QEMU reports
        as not active (unloaded, or reset by a suspended guest; see RV(vms[].rearm_skipped)), since a new timer cannot
        bring their stats back, and re-arming them would report a change on every run.
      - V(always) re-arms every time (the task then always reports a change when O(interval) is not V(0)).
      - A VM whose interval changes gets a new timer anyway; RV(vms[].rearmed) is V(true) only for an explicit re-arm.
    type: str
    choices: [never, stale, always]
    default: never
  persistent:
    description:
      - With O(transport=libvirt), also write the period into the domain's configuration
        (C(<memballoon><stats period=.../>) in C(virsh dumpxml --inactive)), so that it survives a restart
        and a migration (libvirt applies it at every start). The task then reports a change when the live
        or the configured value differs, and RV(vms[].config_previous_interval) and RV(vms[].config_interval).
      - A shut-off domain gets only its configuration written (its live fields are V(null)); without
        O(persistent), a shut-off domain fails.
      - A transient domain has no configuration - only its live period is set, its config fields are V(null),
        and the task warns once listing such domains.
      - Re-arming is live only, as over QMP.
      - Only with O(transport=libvirt).
    type: bool
    default: false
'''

EXAMPLES = r'''
# Ad-hoc, one VM:
#   ansible hv1 -b -m qmp.balloon.balloon_stats_polling -a 'socket=/run/vm1.qmp interval=10'

- name: Poll guest memory statistics every 10 s on all VMs of a Proxmox host
  qmp.balloon.balloon_stats_polling:
    targets:
      - socket: /var/run/qemu-server/100.qmp
      - socket: /var/run/qemu-server/101.qmp
      - name: build-01
        host: 127.0.0.1
        port: 4444
    interval: 10
    rearm: stale
  become: true

- name: Disable polling on one VM, and show what would change first
  qmp.balloon.balloon_stats_polling:
    socket: /run/qemu/vm1.qmp
    interval: 0
  check_mode: true
  diff: true

- name: Poll every 10 s on every running libvirt domain, and keep it across restarts and migrations
  qmp.balloon.balloon_stats_polling:
    transport: libvirt
    all_domains: true
    interval: 10
    persistent: true
    rearm: stale
  become: true

- name: One libvirt domain, by name or UUID, on another libvirt URI
  qmp.balloon.balloon_stats_polling:
    transport: libvirt
    libvirt_uri: qemu+ssh://root@hv2.example.com/system
    domain: db-01
    interval: 5

- name: Share connection settings between the collection's modules
  module_defaults:
    group/qmp.balloon.qmp:
      timeout: 3
      concurrency: 64
  block:
    - name: Enable polling
      qmp.balloon.balloon_stats_polling:
        targets: "{{ my_vms }}"
        interval: 5
    - name: Read the statistics
      qmp.balloon.balloon_stats_info:
        targets: "{{ my_vms }}"
'''

RETURN = r'''
empty_globs:
  description:
    - The globs of O(sockets) that matched no socket (only possible with O(allow_empty=true)), each with C(glob),
      C(directory) (its literal directory part), C(directory_exists) and C(msg) (one sentence saying why).
    - A missing directory usually means a typo or another platform's path, an existing empty one a hypervisor without VMs.
  returned: when O(sockets) is given
  type: list
  elements: dict
  sample: [{"glob": "/var/run/qemu-sever/*.qmp", "directory": "/var/run/qemu-sever", "directory_exists": false,
            "msg": "sockets[0]: /var/run/qemu-sever/*.qmp matches nothing: the directory /var/run/qemu-sever does not exist on this host"}]
vms:
  description: One entry per VM, in the order of O(targets) (one entry for a single VM).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description:
        - The given name, else QEMU's C(-name), else the socket file name without extension, else C(HOST:PORT).
        - With O(transport=libvirt), the given name, else the domain's name.
      type: str
      sample: vm1
    endpoint:
      description: Where the monitor was reached; with O(transport=libvirt) C(libvirt:URI/DOMAIN).
      type: str
      sample: unix:/run/qemu/vm1.qmp
    qom_path:
      description: QOM path of the balloon device used; V(null) with O(transport=libvirt) (libvirt finds its balloon itself).
      type: str
      sample: /machine/peripheral/balloon0
    failed:
      description: Whether this VM could not be handled.
      type: bool
      sample: false
    msg:
      description: One sentence naming the VM, what went wrong and what to do.
      type: str
      returned: when RV(vms[].failed) is true
      sample: "vm3 (unix:/run/vm3.qmp): nothing is listening on unix:/run/vm3.qmp: QEMU has exited and left a stale socket"
    previous_interval:
      description: Interval before the task, in seconds.
      type: int
      returned: success
      sample: 0
    interval:
      description: Interval after the task (in check mode, the interval it would have).
      type: int
      returned: success
      sample: 10
    changed:
      description: Whether this VM's interval was (or in check mode would be) written.
      type: bool
      returned: success
    rearmed:
      description: Whether a stalled timer was (or would be) re-armed by writing 0 then the interval.
      type: bool
      returned: success
    rearm_skipped:
      description:
        - Why a VM that O(rearm=stale) found stalled was not re-armed; the QMP transport asks QEMU
          (C(x-query-virtio-status)) before re-arming, libvirt cannot tell and re-arms.
      type: str
      returned: when O(rearm=stale) found a stalled VM whose guest balloon driver is not active
      sample: "the guest's balloon driver is not active (QEMU reports no DRIVER_OK): a new timer cannot bring its stats back"
    skipped:
      description:
        - V(true) for a VM without a virtio-balloon device (nothing to configure); the others are configured.
        - With O(require_balloon=true) such a VM fails instead. For a single VM, the task shows as skipped.
      type: bool
      returned: when the VM has no balloon device
      sample: true
    skip_reason:
      description: Why the VM was skipped, and how to give it a balloon.
      type: str
      returned: when the VM has no balloon device
    age:
      description: Seconds since the guest's last update, when O(rearm=stale) had to look at it; null when it never answered.
      type: int
      returned: when O(rearm=stale) and the interval was already right
    uuid:
      description: The libvirt domain's UUID (V(null) when the domain was not found).
      type: str
      returned: O(transport=libvirt)
      sample: 4216a76a-24d1-42b2-a57e-f8fd0a04df7e
    config_previous_interval:
      description:
        - The stats period in the domain's configuration before the task (V(0) when none is set);
          V(null) for a transient domain, which has no configuration.
        - RV(vms[].previous_interval) and RV(vms[].interval) are the live values; V(null) for a shut-off domain.
      type: int
      returned: O(transport=libvirt) and O(persistent=true), success
      sample: 0
    config_interval:
      description: The stats period in the domain's configuration after the task (in check mode, the one it would have).
      type: int
      returned: O(transport=libvirt) and O(persistent=true), success
      sample: 10
previous_interval:
  description: For a single VM (O(socket) or O(host)), the same as RV(vms[].previous_interval).
  returned: single VM, success
  type: int
interval:
  description: For a single VM, the same as RV(vms[].interval).
  returned: single VM, success
  type: int
rearmed:
  description: For a single VM, the same as RV(vms[].rearmed).
  returned: single VM, success
  type: bool
name:
  description: For a single VM, the same as RV(vms[].name).
  returned: single VM
  type: str
endpoint:
  description: For a single VM, the same as RV(vms[].endpoint).
  returned: single VM
  type: str
qom_path:
  description: For a single VM, the same as RV(vms[].qom_path).
  returned: single VM
  type: str
'''

from ansible_collections.qmp.balloon.plugins.module_utils._common import BalloonModule
from ansible_collections.qmp.balloon.plugins.module_utils._operations import (
    MAX_INTERVAL,
    REARM_CHOICES,
    REARM_NEVER,
    PollingOperation,
    polling_diff,
)


def check_interval(value):
    """Error sentence for a bad interval, else None. bool passes Ansible's int check, so refuse it here."""
    if isinstance(value, bool):
        return 'interval must be a whole number of seconds, not a boolean (%s)' % value
    if not 0 <= value <= MAX_INTERVAL:
        return 'interval must be between 0 and %d seconds, got %d' % (MAX_INTERVAL, value)
    return None


def main():
    client = BalloonModule(dict(
        interval=dict(type='int', required=True),
        rearm=dict(type='str', default=REARM_NEVER, choices=list(REARM_CHOICES)),
        persistent=dict(type='bool', default=False),
    ), libvirt_only=('persistent',))
    params = client.params
    error = check_interval(params['interval'])
    if error:
        client.refuse([error])
    operation = PollingOperation(params['interval'], params['rearm'], params['persistent'], client.check_mode,
                                 require_balloon=params['require_balloon'])
    results = client.run(operation)
    changed = any(result.get('changed') for result in results)
    client.exit(results, changed=changed, diff=polling_diff(results, client.diff_words, params['persistent']))


if __name__ == '__main__':
    main()
