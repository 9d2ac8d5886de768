# -*- coding: utf-8 -*-
# Copyright: (c) 2025, qmp.balloon contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The QOM tree (shape of a real ``-M q35 -nodefaults`` QEMU 7.2, about 270 objects)."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from .model import VMModel, second_balloon_id


_DEVICE_SPEC = "parent_bus:link<bus>|realized:bool|hotplugged:bool|hotpluggable:bool"
_MEMORY_REGION_SPEC = "container:link<memory-region>|addr:uint64|size:uint64|priority:uint32"
_BUS_SPEC = "realized:bool|hotplug-handler:link<hotplug-handler>"
_MACHINE_SPEC = (
    "kernel:string|dt-compatible:string|boot:BootConfiguration|memory:MemorySizeConfiguration|initrd:string|"
    "confidential-guest-support:link<confidential-guest-support>|graphics:bool|usb:bool|firmware:string|memory-encryption:string|"
    "smp:SMPConfiguration|dump-guest-core:bool|phandle-start:int|dumpdtb:string|memory-backend:link<memory-backend>|dtb:string|"
    "mem-merge:bool|append:string|suppress-vmdesc:bool|smm:OnOffAuto|acpi:OnOffAuto|pit:OnOffAuto|pic:OnOffAuto|x-oem-table-id:string|"
    "bus-lock-ratelimit:uint64_t|sgx-epc:SgxEPC|x-oem-id:string|max-fw-size:size|default-bus-bypass-iommu:bool|"
    "device-memory-region-size:int|sata:bool|vmport:OnOffAuto|i8042:bool|hpet:bool|smbios-entry-point-type:str|max-ram-below-4g:size|"
    "smbus:bool|unattached:child<container>|fw_cfg:child<fw_cfg_io>|peripheral-anon:child<container>|nvdimm:bool|"
    "peripheral:child<container>|q35:child<q35-pcihost>|nvdimm-persistence:string|rtc_state:link<isa-device>|smram:link<memory-region>|"
    "cxl-fmw:CXLFixedMemoryWindow|rtc-time:struct tm|acpi-device:link<hotplug-handler>|hmat:bool|cxl:bool|pcspk-audiodev:str"
)
_BALLOON_PCI_SPEC = (
    "parent_bus:link<bus>|realized:bool|hotplugged:bool|hotpluggable:bool|failover_pair_id:str|romfile:str|addr:int32|romsize:uint32|"
    "x-pcie-lnksta-dllla:bool|rombar:uint32|x-pcie-extcap-init:bool|acpi-index:uint32|multifunction:bool|legacy-addr:str|"
    "migrate-extra:bool|ats:bool|x-ignore-backend-features:bool|x-pcie-pm-init:bool|aer:bool|x-pcie-flr-init:bool|"
    "x-pcie-lnkctl-init:bool|x-ats-page-aligned:bool|page-per-vq:bool|x-pcie-deverr-init:bool|"
    "virtio-pci-bus-master-bug-migration:bool|modern-pio-notify:bool|x-disable-pcie:bool|disable-legacy:OnOffAuto|"
    "disable-modern:bool|free-page-reporting:bool|indirect_desc:bool|virtio-pci-device-virtio-balloon[0]:child<memory-region>|"
    "iommu_platform:bool|deflate-on-oom:bool|use-disabled-flag:bool|event_idx:bool|bus master container[0]:child<memory-region>|"
    "page-poison:bool|guest-stats-polling-interval:int|guest-stats:guest statistics|x-disable-legacy-check:bool|any_layout:bool|"
    "iothread:link<iothread>|notify_on_empty:bool|virtio-pci-notify-virtio-balloon[0]:child<memory-region>|queue_reset:bool|"
    "qemu-4-0-config-size:bool|packed:bool|use-started:bool|free-page-hint:bool|virtio-pci[1]:child<memory-region>|"
    "virtio-pci-notify-pio-virtio-balloon[0]:child<memory-region>|virtio-pci-common-virtio-balloon[0]:child<memory-region>|"
    "virtio-pci[0]:child<memory-region>|virtio-pci-isr-virtio-balloon[0]:child<memory-region>|bus master[0]:child<memory-region>|"
    "virtio-bus:child<virtio-pci-bus>|virtio-backend:child<virtio-balloon-device>"
)
_BALLOON_DEVICE_SPEC = (
    "parent_bus:link<bus>|realized:bool|hotplugged:bool|hotpluggable:bool|queue_reset:bool|use-disabled-flag:bool|packed:bool|"
    "iommu_platform:bool|event_idx:bool|x-disable-legacy-check:bool|notify_on_empty:bool|any_layout:bool|use-started:bool|"
    "indirect_desc:bool|legacy-iothread:str|iothread:link<iothread>|deflate-on-oom:bool|free-page-hint:bool|page-poison:bool|"
    "qemu-4-0-config-size:bool|free-page-reporting:bool|guest-stats-polling-interval:int|guest-stats:guest statistics"
)
_Q35_SPEC = (
    "parent_bus:link<bus>|realized:bool|hotplugged:bool|hotpluggable:bool|bypass-iommu:bool|x-config-reg-migration-enabled:bool|"
    "pci-hole64-size:size|below-4g-mem-size:size|short_root_bus:uint32|x-pci-hole64-fix:bool|MCFG:uint64|above-4g-mem-size:size|"
    "ioapic:child<ioapic>|pcie.0:child<PCIE>|mcfg_size:uint64|pci-hole64-end:uint64|pci-mem:link<memory-region>|"
    "pci-conf-data[0]:child<memory-region>|pci-hole-start:uint32|system-mem:link<memory-region>|io-mem:link<memory-region>|"
    "mch:child<mch>|pci-hole-end:uint32|pci-conf-idx[0]:child<memory-region>|pci-hole64-start:uint64|ram-mem:link<memory-region>|"
    "pcie-mmcfg-mmio[0]:child<memory-region>"
)
_PCI_DEVICE_SPEC = (
    _DEVICE_SPEC + "|failover_pair_id:str|romfile:str|addr:int32|romsize:uint32|x-pcie-lnksta-dllla:bool|rombar:uint32|"
    "x-pcie-extcap-init:bool|acpi-index:uint32|multifunction:bool|legacy-addr:str"
)
_PC_RAM_SPEC = (
    "share:bool|size:int|dump:bool|prealloc-threads:int|x-use-canonical-path-for-ramblock-id:bool|policy:HostMemPolicy|"
    "prealloc-context:link<thread-context>|prealloc:bool|reserve:bool|host-nodes:int|merge:bool|pc.ram[0]:child<memory-region>"
)
# Properties of virtio-balloon-device that the PCI proxy shows as aliases (qdev_alias_all_properties):
# writing one through the proxy reports the backend, an anonymous device, as QEMU does.
ALIASED_BACKEND_PROPS = frozenset(
    name for name, _type in (item.split(":", 1) for item in _BALLOON_DEVICE_SPEC.split("|"))
    if name not in ("parent_bus", "realized", "hotplugged", "hotpluggable", "legacy-iothread")
)
DEFAULT_VALUES = {"realized": True, "hotpluggable": True, "hotplugged": False}
# What QEMU 7.2 (-M q35 -nodefaults, balloon in slot 1) answers to qom-get for these objects' properties.
KNOWN_VALUES: Dict[Optional[str], Dict[str, Any]] = {
    "balloon": {
        "realized": True, "hotplugged": False, "hotpluggable": False, "failover_pair_id": "", "romfile": "", "addr": 8, "romsize": 4294967295,
        "x-pcie-lnksta-dllla": True, "rombar": 1, "x-pcie-extcap-init": True, "acpi-index": 0, "multifunction": False, "legacy-addr": "01.0",
        "migrate-extra": True, "ats": False, "x-ignore-backend-features": False, "x-pcie-pm-init": True, "aer": False, "x-pcie-flr-init": True,
        "x-pcie-lnkctl-init": True, "x-ats-page-aligned": True, "page-per-vq": False, "x-pcie-deverr-init": True,
        "virtio-pci-bus-master-bug-migration": False, "modern-pio-notify": False, "x-disable-pcie": False, "disable-legacy": "off",
        "disable-modern": False, "free-page-reporting": False, "indirect_desc": True, "iommu_platform": False, "deflate-on-oom": False,
        "use-disabled-flag": True, "event_idx": True, "page-poison": True, "x-disable-legacy-check": False, "any_layout": True,
        "notify_on_empty": True, "queue_reset": True, "qemu-4-0-config-size": False, "packed": False, "use-started": True, "free-page-hint": False,
    },
    "balloon-backend": {
        "realized": True, "hotplugged": False, "hotpluggable": False, "queue_reset": True, "use-disabled-flag": True, "packed": False,
        "iommu_platform": False, "event_idx": True, "x-disable-legacy-check": False, "notify_on_empty": True, "any_layout": True,
        "use-started": True, "indirect_desc": True, "deflate-on-oom": False, "free-page-hint": False, "page-poison": True,
        "qemu-4-0-config-size": False, "free-page-reporting": False,
    },
    "machine": {
        "kernel": "", "dt-compatible": "", "boot": {"order": "cad"}, "initrd": "", "graphics": True, "usb": False, "firmware": "bios-256k.bin",
        "memory-encryption": "", "smp": {"cpus": 1, "maxcpus": 1, "threads": 1, "cores": 1, "dies": 1, "sockets": 1, "clusters": 1},
        "dump-guest-core": True, "phandle-start": 0, "dumpdtb": "", "dtb": "", "mem-merge": True, "append": "", "suppress-vmdesc": False,
        "smm": "auto", "acpi": "auto", "pit": "auto", "pic": "auto", "x-oem-table-id": "BXPC    ", "bus-lock-ratelimit": 0, "sgx-epc": [],
        "x-oem-id": "BOCHS ", "max-fw-size": 8388608, "default-bus-bypass-iommu": False, "device-memory-region-size": 0, "sata": True,
        "vmport": "on", "i8042": True, "hpet": True, "smbios-entry-point-type": "32", "max-ram-below-4g": 4294967296, "smbus": True,
        "nvdimm": False, "nvdimm-persistence": "", "cxl-fmw": [], "hmat": False, "cxl": False, "pcspk-audiodev": "",
    },
    "bus": {"realized": True},
}
UNREADABLE = {("balloon-backend", "legacy-iothread")}
SETTABLE_KINDS = {"bool": "bool", "str": "str", "string": "str", "int": "int", "int32": "int", "uint8": "int", "uint16": "int",
                  "uint32": "int", "uint64": "int", "size": "int"}


class QomObject:
    """One object of the fake QOM tree. Trees are shared between VMs of the same shape, so
    nothing VM-specific is stored here (that lives in :class:`VMModel`)."""

    __slots__ = ("type", "path", "props", "prop_types", "children", "links", "role", "device_id")

    def __init__(self, typename: str, path: str, spec: str = "", role: Optional[str] = None) -> None:
        self.type = typename
        self.path = path
        self.props: List[Tuple[str, str]] = [("type", "string")]
        if spec:
            self.props.extend(tuple(item.split(":", 1)) for item in spec.split("|"))  # type: ignore[misc]
        self.prop_types: Dict[str, str] = dict(self.props)
        self.children: Dict[str, QomObject] = {}
        self.links: Dict[str, str] = {}
        self.role = role
        self.device_id: Optional[str] = None

    def _declare(self, name: str, ptype: str) -> None:
        if name not in self.prop_types:
            self.props.append((name, ptype))
            self.prop_types[name] = ptype

    def child(self, name: str, typename: str, spec: str = "", role: Optional[str] = None) -> "QomObject":
        node = QomObject(typename, self.path.rstrip("/") + "/" + name, spec, role)
        self.attach(name, node)
        return node

    def attach(self, name: str, node: "QomObject") -> None:
        self._declare(name, "child<%s>" % node.type)
        self.children[name] = node

    def link(self, name: str, typename: str, target: str = "") -> None:
        self._declare(name, "link<%s>" % typename)
        self.links[name] = target

    def device(self, name: str, typename: str, spec: str = "", bus: str = "/machine/unattached/sysbus") -> "QomObject":
        node = self.child(name, typename, _DEVICE_SPEC + ("|" + spec if spec else ""), role="device")
        node.links["parent_bus"] = bus
        return node

    def regions(self, *names: str) -> None:
        for name in names:
            self.child(name, "memory-region", _MEMORY_REGION_SPEC)

    def irqs(self, *names: str) -> None:
        for name in names:
            self.child(name, "irq")


def _indexed(prefix: str, count: int) -> List[str]:
    return ["%s[%d]" % (prefix, index) for index in range(count)]


def _build_balloon(parent: QomObject, name: str, typename: str, device_id: Optional[str]) -> QomObject:
    proxy = QomObject(typename, parent.path.rstrip("/") + "/" + name, _BALLOON_PCI_SPEC, role="balloon")
    parent.attach(name, proxy)
    proxy.device_id = device_id
    proxy.links.update({"parent_bus": "/machine/q35/pcie.0", "iothread": ""})
    proxy.regions(
        "virtio-pci-device-virtio-balloon[0]", "bus master container[0]", "virtio-pci-notify-virtio-balloon[0]", "virtio-pci[1]",
        "virtio-pci-notify-pio-virtio-balloon[0]", "virtio-pci-common-virtio-balloon[0]", "virtio-pci[0]",
        "virtio-pci-isr-virtio-balloon[0]", "bus master[0]",
    )
    bus = proxy.child("virtio-bus", "virtio-pci-bus", "realized:bool|child[0]:link<virtio-balloon-device>|hotplug-handler:link<hotplug-handler>", role="bus")
    backend = proxy.child("virtio-backend", "virtio-balloon-device", _BALLOON_DEVICE_SPEC, role="balloon-backend")
    bus.links.update({"child[0]": backend.path, "hotplug-handler": ""})
    backend.links.update({"parent_bus": bus.path, "iothread": ""})
    return proxy


# The order in which QEMU 7.2 lists /machine/unattached (a hash table's order).
_UNATTACHED_ORDER = (
    "type|non-qdev-gpio[10]|ram-below-4g[0]|device[20]|device[4]|device[15]|non-qdev-gpio[23]|non-qdev-gpio[5]|non-qdev-gpio[18]|"
    "non-qdev-gpio[11]|device[21]|system[0]|pc.bios[0]|device[5]|device[16]|isa-bios[0]|non-qdev-gpio[24]|non-qdev-gpio[6]|"
    "non-qdev-gpio[19]|non-qdev-gpio[12]|device[22]|device[6]|device[17]|sysbus|device[10]|non-qdev-gpio[25]|non-qdev-gpio[7]|"
    "non-qdev-gpio[0]|non-qdev-gpio[13]|pc.rom[0]|device[23]|ioport80[0]|device[7]|device[0]|device[18]|non-qdev-gpio[8]|device[11]|"
    "non-qdev-gpio[26]|non-qdev-gpio[1]|ioportF0[0]|non-qdev-gpio[14]|device[24]|device[8]|device[1]|device[19]|device[12]|"
    "non-qdev-gpio[9]|non-qdev-gpio[20]|non-qdev-gpio[2]|non-qdev-gpio[15]|pci[0]|device[9]|device[2]|device[13]|non-qdev-gpio[21]|"
    "non-qdev-gpio[3]|non-qdev-gpio[16]|io[0]|device[3]|device[14]|non-qdev-gpio[22]|non-qdev-gpio[4]|non-qdev-gpio[17]"
)


def _build_unattached(machine: QomObject) -> QomObject:
    unattached = machine.child("unattached", "container")
    cpu = unattached.device("device[0]", "qemu64-x86_64-cpu", "family:int|model:int|stepping:int|vendor:string|model-id:string|"
                                                              "apic-id:uint32|node-id:int32|start-powered-off:bool|memory:link<memory-region>")
    cpu.links["memory"] = "/machine/unattached/system[0]"
    lapic = cpu.device("lapic", "apic", "id:uint8|version:uint8|vapic:link<kvmvapic>|timer-period:int", bus="")
    lapic.regions("apic-msi[0]")
    cpu.regions("smram[0]", "memory[0]", "memory[1]")
    unattached.device("device[1]", "kvmvapic").regions("kvmvapic[0]")
    lpc = unattached.device("device[2]", "ICH9-LPC", _PCI_DEVICE_SPEC.split("|", 4)[4] + "|noreboot:bool|smm-compat:bool", bus="/machine/q35/pcie.0")
    lpc.regions(
        "lpc-rcrb-mmio[0]", "acpi-smi[0]", "sm-tco[0]", "acpi-pci-hotplug[0]", "acpi-cpu-hotplug[0]", "ich9-pm[0]", "bus master[0]",
        "bus master container[0]", "acpi-cnt[0]", "acpi-tmr[0]", "lpc-reset-control[0]", "acpi-evt[0]", "apm-io[0]", "acpi-gpe0[0]",
    )
    lpc.child("isa.0", "ISA", _BUS_SPEC, role="bus")
    for name in _indexed("gsi", 24):
        lpc.link(name, "irq")
    for index in (3, 4):
        unattached.device("device[%d]" % index, "i8257", "base:int32|page-base:int32|pageh-base:int32|dshift:int32").regions(
            "dma-chan[0]", "dma-cont[0]", "dma-page[0]", "dma-page[1]")
    for index in (5, 6):
        pic = unattached.device("device[%d]" % index, "isa-i8259", "iobase:uint32|elcr_addr:uint32|elcr_mask:uint8|master:bool")
        pic.irqs(*_indexed("unnamed-gpio-in", 8))
        pic.regions("elcr[0]", "pic[0]")
        pic.link("unnamed-gpio-out[0]", "irq")
    hpet = unattached.device("device[7]", "hpet", "timers:uint8|msi:bool|hpet-intcap:uint32|hpet-offset-saved:bool")
    hpet.irqs("unnamed-gpio-in[0]", "unnamed-gpio-in[1]")
    hpet.regions("hpet[0]")
    for name in _indexed("sysbus-irq", 32) + ["unnamed-gpio-out[0]"]:
        hpet.link(name, "irq")
    rtc = unattached.device("device[8]", "mc146818rtc", "base_year:int32|iobase:uint16|irq:uint8|lost_tick_policy:LostTickPolicy|date:struct tm")
    rtc.regions("rtc-index[0]", "rtc[0]")
    rtc.link("unnamed-gpio-out[0]", "irq")
    pit = unattached.device("device[9]", "isa-pit", "iobase:uint32")
    pit.regions("pit[0]")
    pit.irqs("unnamed-gpio-in[0]")
    pit.link("unnamed-gpio-out[0]", "irq")
    pcspk = unattached.device("device[10]", "isa-pcspk", "audiodev:str|iobase:uint32|migrate:bool")
    pcspk.regions("pcspk[0]")
    pcspk.link("pit", "pit-common", "/machine/unattached/device[9]")
    i8042 = unattached.device("device[11]", "i8042", "extended-state:bool|kbd-throttle:bool")
    i8042.device("ps2kbd", "ps2-kbd", bus="")
    i8042.device("ps2mouse", "ps2-mouse", bus="")
    i8042.regions("i8042-cmd[0]", "i8042-data[0]")
    i8042.irqs("ps2-kbd-input-irq[0]", "ps2-mouse-input-irq[0]")
    for name in ("a20[0]", "unnamed-gpio-out[0]", "unnamed-gpio-out[1]"):
        i8042.link(name, "irq")
    unattached.device("device[12]", "vmport", "vmware-vmx-version:uint32|vmware-vmx-type:uint8|x-read-set-eax:bool").regions("vmport[0]")
    unattached.device("device[13]", "vmmouse", "vmport:link<vmport>")
    port92 = unattached.device("device[14]", "port92")
    port92.regions("port92[0]")
    port92.link("a20[0]", "irq")
    ahci = unattached.device("device[15]", "ich9-ahci", _PCI_DEVICE_SPEC.split("|", 4)[4], bus="/machine/q35/pcie.0")
    for name in _indexed("ide", 6):
        ahci.child(name.replace("[", ".").rstrip("]"), "IDE", _BUS_SPEC, role="bus")
    ahci.regions("ahci[0]", "ahci-idp[0]", "bus master[0]", "bus master container[0]")
    smb = unattached.device("device[16]", "ICH9-SMB", _PCI_DEVICE_SPEC.split("|", 4)[4], bus="/machine/q35/pcie.0")
    smb.child("i2c", "i2c-bus", _BUS_SPEC, role="bus")
    smb.regions("pm-smbus[0]", "bus master[0]", "bus master container[0]")
    for index in range(17, 25):
        unattached.device("device[%d]" % index, "smbus-eeprom", "address:uint8", bus="/machine/unattached/device[16]/i2c")
    sysbus = unattached.child("sysbus", "System", "child[6]:link<ps2-mouse>|child[2]:link<q35-pcihost>|realized:bool|child[0]:link<kvmvapic>|"
                              "child[1]:link<fw_cfg_io>|child[3]:link<ioapic>|hotplug-handler:link<hotplug-handler>|child[4]:link<hpet>|"
                              "child[5]:link<ps2-kbd>", role="bus")
    targets = ("kvmvapic", "/machine/unattached/device[1]"), ("fw_cfg_io", "/machine/fw_cfg"), ("q35-pcihost", "/machine/q35"), \
        ("ioapic", "/machine/q35/ioapic"), ("hpet", "/machine/unattached/device[7]"), ("ps2-kbd", "/machine/unattached/device[11]/ps2kbd"), \
        ("ps2-mouse", "/machine/unattached/device[11]/ps2mouse")
    for index, (typename, target) in enumerate(targets):
        sysbus.link("child[%d]" % index, typename, target)
    unattached.irqs(*_indexed("non-qdev-gpio", 27))
    unattached.regions("ram-below-4g[0]", "system[0]", "pc.bios[0]", "isa-bios[0]", "pc.rom[0]", "ioport80[0]", "ioportF0[0]", "pci[0]", "io[0]")
    order = {name: index for index, name in enumerate(_UNATTACHED_ORDER.split("|"))}
    unattached.props.sort(key=lambda prop: order.get(prop[0], len(order)))
    return unattached


def _build_tree(shape: Tuple[str, str, str, bool, bool, int]) -> QomObject:
    placement, balloon_id, balloon_type, deep, cyclic, depth = shape
    root = QomObject("container", "/", "objects:child<container>|machine:child<pc-q35-7.2-machine>|chardevs:child<container>")
    objects = root.child("objects", "container")
    objects.child("pc.ram", "memory-backend-ram", _PC_RAM_SPEC).regions("pc.ram[0]")
    root.child("chardevs", "container").child("compat_monitor0", "chardev-socket", "connected:bool|addr:SocketAddress")
    machine = root.child("machine", "pc-q35-7.2-machine", _MACHINE_SPEC, role="machine")
    machine.links.update({
        "confidential-guest-support": "", "memory-backend": "/objects/pc.ram", "rtc_state": "/machine/unattached/device[8]",
        "smram": "/machine/q35/mch/smram[0]", "acpi-device": "/machine/unattached/device[2]",
    })
    unattached = _build_unattached(machine)
    fw_cfg = machine.device("fw_cfg", "fw_cfg_io", "acpi-mr-restore:bool|x-file-slots:uint16|dma_enabled:bool")
    fw_cfg.regions("\\x2from@etc\\x2facpi\\x2ftables[0]", "fwcfg.dma[0]", "fwcfg[0]", "\\x2from@etc\\x2facpi\\x2frsdp[0]",
                   "\\x2from@etc\\x2ftable-loader[0]")
    anon = machine.child("peripheral-anon", "container")
    peripheral = machine.child("peripheral", "container")
    q35 = QomObject("q35-pcihost", "/machine/q35", _Q35_SPEC, role="device")
    machine.attach("q35", q35)
    q35.links.update({"parent_bus": "/machine/unattached/sysbus", "pci-mem": "", "system-mem": "/machine/unattached/system[0]",
                      "io-mem": "/machine/unattached/io[0]", "ram-mem": ""})
    ioapic = q35.device("ioapic", "ioapic", "version:uint8|gsi_base:uint32")
    ioapic.irqs(*_indexed("unnamed-gpio-in", 24))
    ioapic.regions("ioapic[0]")
    # QEMU lists the balloon's link (child[4], and child[5] for a second one) right after child[3].
    balloon_links = {"peripheral": 1, "anon": 1, "two": 2}.get(placement, 0)
    pcie = q35.child("pcie.0", "PCIE", "child[2]:link<ich9-ahci>|realized:bool|child[3]:link<ICH9-SMB>|"
                     + "".join("child[%d]:link<%s>|" % (4 + index, balloon_type) for index in range(balloon_links))
                     + "child[0]:link<mch>|hotplug-handler:link<hotplug-handler>|child[1]:link<ICH9-LPC>", role="bus")
    pcie.links.update({"child[0]": "/machine/q35/mch", "child[1]": "/machine/unattached/device[2]", "child[2]": "/machine/unattached/device[15]",
                       "child[3]": "/machine/unattached/device[16]", "hotplug-handler": ""})
    mch = q35.device("mch", "mch", _PCI_DEVICE_SPEC.split("|", 4)[4] + "|smbase-smram:bool|extended-tseg-mbytes:uint16", bus="/machine/q35/pcie.0")
    mch.regions(*(_indexed("pam-pci", 26) + _indexed("pam-ram", 13) + _indexed("pam-rom", 13)))
    mch.regions("smram-region[0]", "smram-low[0]", "smram-high[0]", "smram-open-high[0]", "smram[0]", "tseg-blackhole[0]", "tseg-window[0]",
                "smbase-blackhole[0]", "smbase-window[0]", "bus master container[0]", "bus master[0]")
    q35.regions("pci-conf-data[0]", "pci-conf-idx[0]", "pcie-mmcfg-mmio[0]")

    balloons: List[QomObject] = []
    if placement in ("peripheral", "two"):
        balloons.append(_build_balloon(peripheral, balloon_id, balloon_type, balloon_id))
        if placement == "two":
            second = second_balloon_id(balloon_id)
            balloons.append(_build_balloon(peripheral, second, balloon_type, second))
    elif placement == "anon":
        balloons.append(_build_balloon(anon, "device[0]", balloon_type, None))
    for index, balloon in enumerate(balloons):
        pcie.link("child[%d]" % (4 + index), balloon.type, balloon.path)

    if deep:
        node = unattached.child("deep-chain", "container")
        for level in range(1, depth + 1):
            node = node.child("level[%d]" % level, "container")
    if cyclic:
        # Impossible in real QEMU (children form a tree; only links loop, as they do here between
        # pcie.0 and the devices' parent_bus): these child<> properties point back up the tree.
        anon.attach("machine-again", machine)
        unattached.attach("root-again", root)
    return root


_TREE_CACHE: Dict[Tuple[str, str, str, bool, bool, int], QomObject] = {}
_TREE_LOCK = threading.Lock()


def tree_for(vm: VMModel) -> QomObject:
    shape = (vm.balloon, vm.balloon_id, vm.balloon_type, bool(vm.deep_tree), bool(vm.cyclic_links), int(vm.tree_depth))
    with _TREE_LOCK:
        root = _TREE_CACHE.get(shape)
        if root is None:
            root = _TREE_CACHE[shape] = _build_tree(shape)
        return root


def _resolve_abs(root: QomObject, node: QomObject, parts: Sequence[str], hops: int = 0) -> Optional[QomObject]:
    for part in parts:
        if not part:
            continue  # QEMU skips empty components: "//machine" and "/machine/" work
        child = node.children.get(part)
        if child is not None:
            node = child
            continue
        target = node.links.get(part)
        if not target or hops > 16:
            return None
        resolved = _resolve_abs(root, root, target.split("/"), hops + 1)
        if resolved is None:
            return None
        node = resolved
    return node


class _PartialIndex:
    """Every object reachable through child<> properties (each once, cycles included), and for each
    property name the objects that have it: partial paths are resolved without a full walk."""

    def __init__(self, root: QomObject) -> None:
        self.objects: List[QomObject] = []
        self.by_name: Dict[str, List[QomObject]] = {}
        seen: Set[int] = set()
        todo = [root]
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            self.objects.append(node)
            for name in list(node.children) + list(node.links):
                self.by_name.setdefault(name, []).append(node)
            todo.extend(node.children.values())


_INDEX_CACHE: Dict[int, _PartialIndex] = {}


def resolve_path(root: QomObject, path: str) -> Optional[QomObject]:
    """Resolve a QOM path like QEMU: absolute if it starts with '/', else a partial path.

    QEMU's object_resolve_partial_path tries the path below every object of the tree and answers
    only if exactly one object matched (so "balloon0" works and an ambiguous "device[0]" does not).
    """
    if path.startswith("/"):
        return _resolve_abs(root, root, path.split("/"))
    parts = path.split("/") if path else []
    with _TREE_LOCK:
        index = _INDEX_CACHE.get(id(root))
        if index is None:
            index = _INDEX_CACHE[id(root)] = _PartialIndex(root)
    first = next((part for part in parts if part), None)
    candidates = index.objects if first is None else index.by_name.get(first, [])
    found: Optional[QomObject] = None
    for node in candidates:
        match = _resolve_abs(root, node, parts)
        if match is not None:
            if found is not None:
                return None  # ambiguous
            found = match
    return found
