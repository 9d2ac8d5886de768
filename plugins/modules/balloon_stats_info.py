#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: balloon_stats_info
short_description: Read guest memory statistics of QEMU VMs through the virtio-balloon
version_added: 0.1.0
description:
  - Reads the C(guest-stats) of the virtio-balloon device of one or many QEMU VMs over QMP and
    returns them clean, with the age and health of the data.
  - Stat names lose their C(stat-) prefix and use underscores (C(stat-free-memory) becomes C(free_memory)).
    Names that newer QEMU versions add (C(oom_kills), C(alloc_stalls), ...) pass through the same way.
  - A stat the guest did not set (QEMU sends 18446744073709551615, very old QEMU -1) is V(null) and listed in
    RV(vms[].unsupported).
  - Memory, swap, scan and reclaim figures are bytes; faults, C(htlb_*), C(oom_kills) and C(alloc_stalls) are
    counts. C(minor_faults) counts all page faults (Linux C(pgfault)), major ones included.
  - Every stat, its unit, meaning, first QEMU version and guest kernel, and how Windows guests differ, are listed in
    the collection's docs/stats.md (U(https://github.com/qmp-balloon/qmp.balloon/blob/main/docs/stats.md)).
  - Statistics exist only after polling was enabled (see M(qmp.balloon.balloon_stats_polling)) and the guest's
    balloon driver answered. This module never changes anything.
  - With O(transport=libvirt), reads libvirt domains through libvirt's API (one C(virConnectGetAllDomainStats) or
    C(virDomainListGetStats) call for many domains, on a read-only connection) and returns the same fields, in
    bytes and QEMU's names, plus RV(vms[].actual) and RV(vms[].rss). libvirt drops the stats the guest did not set;
    they are V(null) and in RV(vms[].unsupported) as well.
author:
  - qmp.balloon maintainers (@qmp-balloon)
extends_documentation_fragment:
  - qmp.balloon._common
  - qmp.balloon._common.info_module
'''

EXAMPLES = r'''
# Ad-hoc, one VM:
#   ansible hv1 -b -m qmp.balloon.balloon_stats_info -a socket=/run/vm1.qmp

- name: Read the memory statistics of every VM of a hypervisor in one task
  qmp.balloon.balloon_stats_info:
    targets:
      - socket: /var/run/qemu-server/100.qmp
      - socket: /var/run/qemu-server/101.qmp
    fail_on_error: false
  become: true
  register: balloon

- name: Show the VMs whose data is not fresh
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.health }}"
  loop: "{{ balloon.vms | rejectattr('failed') | rejectattr('health', 'eq', 'ok') }}"
  loop_control:
    label: "{{ item.name }}"

- name: Available memory of one VM, in MiB
  qmp.balloon.balloon_stats_info:
    socket: /run/qemu/vm1.qmp
  register: vm1
- name: Print it
  ansible.builtin.debug:
    msg: "{{ (vm1.stats.available_memory / 1048576) | round(1) }} MiB available, {{ vm1.used_percent }} % used"

- name: Memory statistics of every running libvirt domain of the hypervisor, in one task
  qmp.balloon.balloon_stats_info:
    transport: libvirt
    all_domains: true
  become: true
  register: domains

- name: Same connection settings for both modules
  module_defaults:
    group/qmp.balloon.qmp:
      timeout: 2
  qmp.balloon.balloon_stats_info:
    host: 127.0.0.1
    port: 4444
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
    stats:
      description:
        - The guest's statistics by name, an integer or V(null) when the guest did not set it.
        - Classic names are C(swap_in), C(swap_out), C(major_faults), C(minor_faults), C(free_memory),
          C(total_memory), C(available_memory), C(disk_caches), C(htlb_pgalloc), C(htlb_pgfail); newer QEMU adds more.
      type: dict
      returned: success
      sample: {"free_memory": 84869120, "total_memory": 231706624, "available_memory": 160653312, "swap_in": 0}
    unsupported:
      description: Names of the stats the guest did not set.
      type: list
      elements: str
      returned: success
      sample: ["htlb_pgalloc", "htlb_pgfail"]
    last_update:
      description: Host wall-clock time (epoch seconds) of the guest's last update; V(0) when it never answered.
      type: int
      returned: success
      sample: 1795794731
    last_update_iso:
      description: RV(vms[].last_update) as ISO 8601 UTC, V(null) when it never answered.
      type: str
      returned: success
      sample: "2026-11-27T15:52:11Z"
    age:
      description: Seconds since the last update, measured on the host running the module; V(null) when it never answered.
      type: int
      returned: success
      sample: 4
    polling_interval:
      description:
        - The current C(guest-stats-polling-interval) in seconds, V(0) when polling is disabled.
        - With O(transport=libvirt), the live C(<memballoon><stats period=.../>) of the domain.
      type: int
      returned: success
      sample: 10
    vm_status:
      description:
        - The VM's run state from C(query-status), such as V(running), V(paused), V(prelaunch).
        - With O(transport=libvirt), the libvirt domain state - V(running), V(blocked), V(paused), V(shutdown),
          V(shutoff), V(crashed), V(pmsuspended) or V(nostate); V(running) and V(blocked) count as running for RV(vms[].health).
      type: str
      returned: success
      sample: running
    health:
      description:
        - V(polling_disabled) - the interval is 0 (the last values, if any, stay readable).
        - V(never_updated) - polling is on but the guest never answered (no balloon driver, or still booting).
        - V(vm_not_running) - the data is older than 3 intervals because the VM is not running (its timer is paused).
        - V(stale) - the VM runs but the data is older than 3 intervals; the timer is stalled, re-arm it with
          M(qmp.balloon.balloon_stats_polling) O(qmp.balloon.balloon_stats_polling#module:rearm=stale).
        - "V(driver_not_loaded) - QEMU says no guest driver set the balloon up (no C(DRIVER_OK) in the device status): no
          C(virtio_balloon) module in a Linux guest, no virtio-win Balloon driver in Windows, a guest still booting, or a VM
          without an OS. From RV(vms[].driver); takes precedence over V(never_updated), V(stale) and V(vm_not_running)."
        - V(stats_not_negotiated) - the driver is loaded but did not accept the stats queue (C(VIRTIO_BALLOON_F_STATS_VQ)).
        - "V(no_balloon_device) - the VM has no virtio-balloon device (Proxmox VE C(balloon: 0)); no RV(vms[].stats).
          With O(require_balloon=true) the VM fails instead."
        - V(ok) - fresh data.
        - Right after a live migration the destination has polling off (QEMU migrates neither the interval nor a running
          timer) while RV(vms[].last_update) is the migration time - V(polling_disabled), with the advice to re-apply it.
      type: str
      returned: success
      sample: ok
    driver:
      description:
        - For a VM whose RV(vms[].health) is not V(ok), what QEMU's C(x-query-virtio-status) of the balloon says of the guest
          driver - C(loaded) (C(DRIVER_OK) in the device status) and C(stats_negotiated) (C(VIRTIO_BALLOON_F_STATS_VQ)
          accepted).
        - V(null) when unknown - a QEMU without the command (it is unstable, C(x-); QEMU 7.2 has it) or one that refuses it,
          and always with O(transport=libvirt) (libvirt offers no such call without C(qemu-monitor-command), which taints the
          domain). Never fails the VM.
      type: dict
      returned: success, health not ok
      sample: {"loaded": false, "stats_negotiated": false}
    advice:
      description: For a VM whose RV(vms[].health) is not V(ok), one sentence of what to do.
      type: str
      returned: success, health not ok
      sample: "the guest has no virtio-balloon driver loaded: load it (modprobe virtio_balloon on Linux; ...)"
    qemu_version:
      description: QEMU's version from the QMP greeting (C(MAJOR.MINOR.MICRO)); V(null) with O(transport=libvirt).
      type: str
      returned: success
      sample: 7.2.0
    used_memory:
      description: C(total_memory) minus C(free_memory) of RV(vms[].stats), in bytes; V(null) unless both are known.
      type: int
      returned: success
    used_percent:
      description: RV(vms[].used_memory) as a percentage of the total, one decimal; V(null) unless both are known.
      type: float
      returned: success
      sample: 63.4
    actual:
      description: The balloon's current size (the memory the guest has), in bytes, as libvirt reports it.
      type: int
      returned: O(transport=libvirt), success
      sample: 134217728
    rss:
      description: Resident set size of the QEMU process on the host, in bytes, as libvirt reports it.
      type: int
      returned: O(transport=libvirt), success
      sample: 230215680
    uuid:
      description: The libvirt domain's UUID (V(null) when the domain was not found).
      type: str
      returned: O(transport=libvirt)
      sample: 4216a76a-24d1-42b2-a57e-f8fd0a04df7e
stats:
  description: For a single VM (O(socket) or O(host)), the same as RV(vms[].stats); likewise every other field of RV(vms).
  returned: single VM, success
  type: dict
health:
  description: For a single VM, the same as RV(vms[].health).
  returned: single VM, success
  type: str
age:
  description: For a single VM, the same as RV(vms[].age).
  returned: single VM, success
  type: int
last_update:
  description: For a single VM, the same as RV(vms[].last_update).
  returned: single VM, success
  type: int
polling_interval:
  description: For a single VM, the same as RV(vms[].polling_interval).
  returned: single VM, success
  type: int
'''

from ansible_collections.qmp.balloon.plugins.module_utils._common import BalloonModule
from ansible_collections.qmp.balloon.plugins.module_utils._operations import InfoOperation


def main():
    client = BalloonModule({})
    results = client.run(InfoOperation(require_balloon=client.params['require_balloon']))
    client.exit(results, changed=False)


if __name__ == '__main__':
    main()
