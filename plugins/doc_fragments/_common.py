# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE: this doc fragment is for the modules of qmp.balloon only; other
# collections must not use it, it may change in any release.

from __future__ import annotations


class ModuleDocFragment(object):

    # Options every qmp.balloon module shares: which VMs, how to reach them.
    DOCUMENTATION = r'''
options:
  socket:
    description:
      - Absolute path of one VM's QMP unix socket, as given to QEMU with C(-qmp unix:PATH,server=on,wait=off).
      - The task must run as a user that may write to the socket (usually root).
      - Mutually exclusive with O(host), O(port) and O(targets).
    type: path
  host:
    description:
      - Host name or address of one VM's QMP TCP monitor (C(-qmp tcp:HOST:PORT,server=on,wait=off)).
      - Requires O(port). Mutually exclusive with O(socket) and O(targets).
      - A TCP monitor has no authentication; expose it only on loopback or a trusted network.
    type: str
  port:
    description:
      - TCP port of the monitor given in O(host), 1 to 65535.
    type: int
  name:
    description:
      - Name to report for the single VM given by O(socket) or O(host) (or O(domain)).
      - Defaults to QEMU's own name (C(-name)), else the socket file name without its extension,
        else C(HOST:PORT); with O(transport=libvirt), to the domain's name.
    type: str
  qom_path:
    description:
      - QOM path of the balloon device, for example V(/machine/peripheral/balloon0).
      - When omitted, the balloon is found by its type, in C(/machine/peripheral), then
        C(/machine/peripheral-anon), then by a bounded walk of the QOM tree.
      - A given path must list the C(guest-stats-polling-interval) and C(guest-stats) properties (checked with
        C(qom-list) before anything is written); a path found by its type has both in every QEMU.
    type: str
  targets:
    description:
      - Many VMs in one task, handled concurrently (see O(concurrency)).
      - Mutually exclusive with O(socket), O(host), O(port), O(name) and O(qom_path), and with O(domain) and O(all_domains).
      - Results come in C(vms) in the same order.
      - With O(transport=qmp) each entry has O(targets[].socket) or O(targets[].host); with O(transport=libvirt),
        O(targets[].domain).
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Name to report for this VM. Must be unique within O(targets).
          - Defaults as for the top-level O(name).
        type: str
      socket:
        description:
          - Absolute path of this VM's QMP unix socket. Exactly one of O(targets[].socket) and O(targets[].host).
        type: path
      host:
        description:
          - Host of this VM's QMP TCP monitor; requires O(targets[].port).
        type: str
      port:
        description:
          - TCP port of this VM's monitor.
        type: int
      qom_path:
        description:
          - QOM path of this VM's balloon device; found automatically when omitted.
        type: str
      domain:
        description:
          - With O(transport=libvirt), the name or UUID of this libvirt domain.
        type: str
  sockets:
    description:
      - Every VM whose QMP unix socket is named here, as absolute paths and shell globs (V(/var/run/qemu-server/*.qmp)),
        expanded on the managed host (not on the controller, as C(fileglob) would be). Only sockets are kept, so a
        directory may also hold C(.pid) files.
      - Each socket is handled once, told apart by device and inode, so V(/var/run/x/*.qmp) and V(/run/x/*.qmp)
        (a symlinked directory) or two overlapping globs do not list a VM twice. Matches of each entry are sorted by path.
      - A glob whose directory does not exist, or that matches no socket, fails the task with one sentence before any VM
        is touched, unless O(allow_empty=true).
      - Always a batch (results in C(vms)), even for one match. May be combined with O(targets); the VMs of O(targets) come
        first, and a socket listed there is not repeated. Mutually exclusive with O(socket), O(host), O(port), O(name)
        and O(qom_path). Transport qmp only.
      - "Ad hoc, every VM of a Proxmox VE hypervisor: C(ansible pve -b -m qmp.balloon.balloon_stats_info -a 'sockets=/var/run/qemu-server/*.qmp')."
    type: list
    elements: path
  allow_empty:
    description:
      - Accept a glob of O(sockets) that matches no socket (or whose directory does not exist), and an empty O(sockets)
        list; the task handles the VMs found, possibly none, instead of failing. Each such glob is listed in the result's
        C(empty_globs), with C(directory_exists) telling an empty directory from a missing one (a typo, another platform's path).
      - A plain path in O(sockets) (no C(*), C(?) or C([)) must still exist. Applies to O(sockets) only.
    type: bool
    default: false
  require_balloon:
    description:
      - "A VM without a virtio-balloon device is a state by default, not a failure - M(qmp.balloon.balloon_stats_info)
        reports it with RV(qmp.balloon.balloon_stats_info#module:vms[].health=no_balloon_device) and no stats,
        M(qmp.balloon.balloon_stats_polling) skips it (RV(qmp.balloon.balloon_stats_polling#module:vms[].skipped)) and
        configures the others. Proxmox VE removes the device for C(balloon: 0)."
      - When V(true), such a VM fails instead, for policies that demand a balloon.
    type: bool
    default: false
  tls_ca:
    description:
      - Path of the CA certificate (PEM) that signed the certificates of TCP monitors protected by x509 TLS
        (QEMU's C(-object tls-creds-x509,...) on the monitor's C(-chardev socket,...,tls-creds=...)).
      - When set, every TCP monitor of the task is reached with TLS and its certificate must be signed by this CA
        and match O(tls_server_name) (default the host). Unix sockets are not affected.
    type: path
  tls_cert:
    description:
      - Path of the client certificate (PEM) to present, for monitors whose credentials have C(verify-peer=on).
      - Requires O(tls_key) and O(tls_ca).
    type: path
  tls_key:
    description:
      - Path of the private key (PEM) of O(tls_cert). Keep the file readable only by the user that runs the task.
    type: path
  tls_server_name:
    description:
      - Name the monitor's certificate must carry, when it differs from the host used to connect
        (for example when connecting to V(127.0.0.1) to a certificate issued for the hypervisor's name).
      - Requires O(tls_ca).
    type: str
  timeout:
    description:
      - Seconds allowed for each VM's whole exchange with QEMU (connect, greeting, every command), more than 0 and at most 3600.
      - A VM that takes longer fails with a message saying which step did not finish; others are not affected.
      - A monitor held by another client never greets; it fails after this time as C(monitor busy).
      - With O(transport=libvirt), it bounds connecting to libvirt together with finding the domains and the
        one batch statistics call, and then each domain's own calls. libvirt calls cannot be cancelled, so a
        libvirtd that does not answer in time fails the task with one message.
    type: float
    default: 5
  concurrency:
    description:
      - How many VMs are handled at the same time, each on its own short QMP connection
        (with O(transport=libvirt), each in its own thread on one shared libvirt connection).
      - A VM that has not finished after 0.25 s (a busy, hung or slow monitor, or libvirt call) stops counting
        against this limit and the next VM starts; it keeps its own O(timeout). At most 256 VMs (or O(concurrency)
        if higher) are in progress at once. Both transports follow this rule.
      - The default suits local unix sockets, where one task reads about as fast at 4 as at 32 while each
        monitor is held for a fraction of the time (QEMU serves one client at a time). Raise it for
        monitors reached over TCP with a long round trip.
    type: int
    default: 4
  fail_on_error:
    description:
      - When V(true), the task fails if any VM could not be handled, after every other VM was handled.
      - When V(false), the task succeeds; failed VMs carry C(vms[].failed) and C(vms[].msg) and a warning.
    type: bool
    default: true
  transport:
    description:
      - How the VMs are reached.
      - V(qmp) talks to each QEMU's own QMP monitor (O(socket), or O(host) and O(port)).
      - V(libvirt) asks libvirtd through libvirt's API for the VMs it manages (O(domain), O(targets[].domain)
        or O(all_domains)), at O(libvirt_uri). libvirt holds the QMP monitor of its domains, so V(qmp)
        cannot reach them. Needs the C(libvirt-python) library on the managed host.
      - Options of the other transport are refused, naming the option, before any VM is touched.
    type: str
    choices: [qmp, libvirt]
    default: qmp
  libvirt_uri:
    description:
      - With O(transport=libvirt), the libvirt connection URI. Defaults to V(qemu:///system) (the local
        privileged libvirtd, usually as root with C(become)); V(qemu+ssh://HOST/system) and V(qemu+tls://HOST/system) work too.
      - When libvirtd cannot be reached, the task fails with one message, whatever O(fail_on_error) says.
    type: str
  domain:
    description:
      - With O(transport=libvirt), the name or UUID of the one libvirt domain to handle.
      - Mutually exclusive with O(targets) and O(all_domains).
    type: str
  all_domains:
    description:
      - With O(transport=libvirt), handle every active domain (running or paused) of O(libvirt_uri), listed
        and read in one libvirt call; results in C(vms) sorted by domain name. Shut-off domains are not included.
      - Mutually exclusive with O(domain), O(targets) and O(name).
    type: bool
    default: false
requirements:
  - qemu.qmp == 0.0.6 (Python library, on the managed host), for O(transport=qmp)
  - libvirt-python (Python library, on the managed host, of a version the host's libvirt supports), for O(transport=libvirt)
notes:
  - Debian 12 and Proxmox VE 8 refuse C(pip install) into the system Python (PEP 668) and package no C(qemu.qmp).
    There, run the C(prepare) entry point of the role C(qmp.balloon.balloon_stats) (C(tasks_from=prepare)) once, which makes
    the venv C(/opt/qmp-balloon/venv) with a hash-checked C(qemu.qmp), and run this module with
    C(ansible_python_interpreter=/opt/qmp-balloon/venv/bin/python); the role's own tasks do that by themselves.
    Without the library, the module fails naming the Python and the host that lack it.
  - QEMU serves one QMP client per monitor socket. A second client waits silently, so while another tool
    (libvirt, a socat session, another play) holds a monitor, this module cannot use it and says C(monitor busy).
    Each VM's connection is closed as soon as its work is done.
  - For VMs managed by libvirt, libvirt holds the monitor permanently; use O(transport=libvirt) for them.
  - With O(transport=libvirt) only these libvirt calls are made - C(open)/C(openReadOnly), C(lookupByName),
    C(lookupByUUIDString), C(getAllDomainStats), C(domainListGetStats), C(state), C(isPersistent),
    C(XMLDesc), C(memoryStats) and C(setMemoryStatsPeriod). Never C(qemuMonitorCommand), which taints the domain.
  - The property is C(guest-stats-polling-interval); the C(stats-polling-interval) name in an example of
    QEMU's own documentation does not exist.
  - Neither the polling interval nor the stats survive live migration; set the interval again afterwards.
  - Only these QMP commands are ever sent - C(qmp_capabilities), C(qom-list), C(qom-get), C(query-status),
    C(query-name), C(x-query-virtio-status) (read-only, to diagnose a VM whose stats are not ok),
    and C(qom-set) on C(guest-stats-polling-interval) only.
attributes:
  # Every module with these options is in the action group (module_defaults: group/qmp.balloon.qmp);
  # the fragments below add the attributes that differ between an action and an info module.
  action_group:
    description: Use C(group/qmp.balloon.qmp) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - qmp.balloon.qmp
seealso:
  - name: QEMU virtio-balloon statistics
    description: QEMU's documentation of the guest statistics of the balloon device.
    link: https://www.qemu.org/docs/master/interop/virtio-balloon-stats.html
  - name: libvirt memory balloon device
    description: The C(<memballoon>) element of a libvirt domain and its C(<stats period=.../>).
    link: https://libvirt.org/formatdomain.html#memory-balloon-device
'''

    # Standard attributes of a module that can change things.
    ACTIONS = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
'''

    # Standard attributes of an information module.
    INFO_MODULE = r'''
attributes:
  check_mode:
    description: This action does not modify state.
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    description: This action does not modify state.
    support: N/A
  idempotent:
    description: This action does not modify state.
    support: full
'''
