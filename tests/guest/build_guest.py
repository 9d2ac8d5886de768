#!/usr/bin/env python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build a tiny initramfs that boots a real Linux guest with a virtio-balloon driver.

The guest is Debian's cloud kernel plus busybox-static. Its /init loads the virtio
modules, prints a ready marker on the serial console and idles, optionally churning
memory or freezing itself (suspend-to-idle) so that it stops answering stats requests.

No root and no cpio tool are needed: the newc archive is written here. The result is
cached under --out, keyed by kernel version and a hash of this file, so repeated calls
cost only a few stat() calls.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile

READY_MARKER = 'QMPBALLOON-GUEST-READY'
FREEZE_MARKER = 'QMPBALLOON-GUEST-FREEZING'
THAW_MARKER = 'QMPBALLOON-GUEST-THAWED'
ERROR_MARKER = 'QMPBALLOON-GUEST-ERROR'
NO_DRIVER_MARKER = 'QMPBALLOON-GUEST-NO-BALLOON-DRIVER'
UNLOADED_MARKER = 'QMPBALLOON-GUEST-BALLOON-DRIVER-UNLOADED'

# virtio_pci is the transport, virtio_balloon the driver; modprobe orders their dependencies.
# button (ACPI power button) arms a wakeup source, so QMP system_powerdown thaws a frozen guest.
MODULES = ('virtio_pci', 'virtio_balloon', 'button')
# swap=MIB (issue 14): a zram swap device; lzo_rle is zram's default compressor (a module here).
SWAP_MODULES = ('lzo_rle', 'zram')
BUSYBOX_CANDIDATES = ('/bin/busybox', '/usr/bin/busybox')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO_ROOT, 'tests', 'output', 'guest')

# The guest's PID 1. Options come from the kernel command line (/proc/cmdline):
#   churn=N          allocate N MiB in tmpfs, free it, repeat (free memory moves)
#   freeze_after=S   after S seconds, suspend-to-idle: the VM stays 'running' for QEMU
#                    but the balloon driver is frozen and never answers a stats request;
#                    QMP system_powerdown (ACPI power button) wakes it, nothing else does
#   no_balloon_driver  boot without loading virtio_balloon (the device is there, no driver)
#   unload_balloon_after=S  S seconds after boot, rmmod virtio_balloon (the driver sent its
#                    first stats when it loaded); prints the unload marker afterwards
INIT_SCRIPT = r'''#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
exec </dev/console >/dev/console 2>&1

churn=0
freeze_after=
no_balloon_driver=
unload_balloon_after=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        churn=*) churn="${arg#churn=}" ;;
        freeze_after=*) freeze_after="${arg#freeze_after=}" ;;
        no_balloon_driver) no_balloon_driver=1 ;;
        unload_balloon_after=*) unload_balloon_after="${arg#unload_balloon_after=}" ;;
    esac
done

for module in $(cat /etc/modules.order); do
    if [ -n "$no_balloon_driver" ] && [ "${module##*/}" = virtio_balloon.ko ]; then
        echo "@NODRIVER@ virtio_balloon not loaded (no_balloon_driver)"
        continue
    fi
    insmod "/lib/modules/$module" || echo "@ERROR@ insmod $module failed"
done

if [ -n "$unload_balloon_after" ]; then
    (
        sleep "$unload_balloon_after"
        if rmmod virtio_balloon; then
            echo "@UNLOADED@ virtio_balloon removed"
        else
            echo "@ERROR@ rmmod virtio_balloon failed"
        fi
    ) &
fi

if [ "$churn" -gt 0 ] 2>/dev/null; then
    (
        while :; do
            dd if=/dev/zero of=/dev/shm/churn bs=1M count="$churn" 2>/dev/null
            sleep 1
            rm -f /dev/shm/churn
            sleep 1
        done
    ) &
fi

if [ -n "$freeze_after" ]; then
    (
        sleep "$freeze_after"
        if ! grep -qw freeze /sys/power/state; then
            echo "@ERROR@ no suspend-to-idle: /sys/power/state has '$(cat /sys/power/state)'"
            exit 0
        fi
        echo "@FREEZE@"
        echo freeze > /sys/power/state || echo "@ERROR@ echo freeze > /sys/power/state failed"
        echo "@THAW@"
    ) &
fi

# swap=MIB (issue 14): a zram swap device of MIB MiB. pressure=MIB: a tmpfs file of MIB MiB
# rewritten for ever; more than the guest's memory, it goes to swap and comes back (swap
# traffic, headroom near 0), the memory pressure the role's verdict must call high.
swap=0
pressure=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        swap=*) swap="${arg#swap=}" ;;
        pressure=*) pressure="${arg#pressure=}" ;;
    esac
done
if [ "$swap" -gt 0 ] 2>/dev/null; then
    { echo "${swap}M" > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null && swapon /dev/zram0; } \
        || echo "@ERROR@ zram swap of $swap MiB failed"
fi
if [ "$pressure" -gt 0 ] 2>/dev/null; then
    mkdir -p /pressure
    mount -t tmpfs -o size="$((pressure + 1))m" tmpfs /pressure
    (
        while :; do
            dd if=/dev/zero of=/pressure/fill bs=1M count="$pressure" conv=notrunc 2>/dev/null
        done
    ) &
fi

echo "@READY@ modules=$(wc -l < /etc/modules.order) churn=$churn freeze_after=$freeze_after" \
    "no_balloon_driver=$no_balloon_driver unload_balloon_after=$unload_balloon_after"
while :; do
    sleep 3600
done
'''.replace('@READY@', READY_MARKER).replace('@FREEZE@', FREEZE_MARKER).replace(
    '@THAW@', THAW_MARKER).replace('@ERROR@', ERROR_MARKER).replace('@NODRIVER@', NO_DRIVER_MARKER).replace(
    '@UNLOADED@', UNLOADED_MARKER)


class BuildError(Exception):
    """The host lacks something the guest needs (kernel, modules, busybox, a decompressor)."""


def _version_key(version):
    """Sort '6.1.0-10-cloud-amd64' after '6.1.0-9-cloud-amd64'."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', version)]


def find_kernel(version=None, boot_dir='/boot'):
    """Return (version, vmlinuz path) of the newest installed cloud kernel, or of `version`.

    Raises BuildError when none is installed or its module tree is missing.
    """
    versions = []
    for entry in os.listdir(boot_dir):
        match = re.match(r'^vmlinuz-(.+-cloud-amd64)$', entry)
        if match and os.path.isdir(os.path.join('/lib/modules', match.group(1))):
            versions.append(match.group(1))
    if version is not None:
        if version not in versions:
            raise BuildError('kernel %s: no %s/vmlinuz-%s with /lib/modules/%s' % (version, boot_dir, version, version))
    elif not versions:
        raise BuildError('no cloud kernel in %s (apt-get install -y linux-image-cloud-amd64)' % boot_dir)
    else:
        version = max(versions, key=_version_key)
    return version, os.path.join(boot_dir, 'vmlinuz-' + version)


def module_order(version, modules=MODULES):
    """Return the absolute .ko paths to insmod, dependencies first, each once.

    Asks `modprobe --show-depends`; modules built into the kernel are skipped.
    """
    order = []
    for module in modules:
        try:
            result = subprocess.run(['modprobe', '--show-depends', '-S', version, module],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
        except OSError as exc:
            raise BuildError('cannot run modprobe (apt-get install -y kmod): %s' % exc) from exc
        if result.returncode != 0:
            raise BuildError('modprobe --show-depends -S %s %s: %s' % (version, module, result.stderr.strip()))
        for line in result.stdout.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == 'insmod' and words[1] not in order:
                order.append(words[1])
    if not order:
        raise BuildError('kernel %s: %s are all built in; nothing to load' % (version, ', '.join(modules)))
    return order


def read_module(path):
    """Return the module's ELF bytes, decompressing .ko.xz, .ko.gz and .ko.zst."""
    if path.endswith('.xz'):
        with lzma.open(path) as handle:
            return handle.read()
    if path.endswith('.gz'):
        with gzip.open(path) as handle:
            return handle.read()
    if path.endswith('.zst'):
        # The standard library has no zstd before Python 3.14.
        try:
            return subprocess.run(['zstd', '-dc', path], stdout=subprocess.PIPE, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise BuildError('cannot decompress %s (apt-get install -y zstd): %s' % (path, exc)) from exc
    with open(path, 'rb') as handle:
        return handle.read()


def find_busybox():
    """Return the path of a statically linked busybox (an ELF without a PT_INTERP header)."""
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path):
            if _is_static_elf(path):
                return path
            raise BuildError('%s is dynamically linked (apt-get install -y busybox-static)' % path)
    raise BuildError('no busybox (apt-get install -y busybox-static)')


def _is_static_elf(path):
    with open(path, 'rb') as handle:
        header = handle.read(64)
        if header[:4] != b'\x7fELF' or header[4] != 2:  # 64-bit ELF only
            return False
        order = 'little' if header[5] == 1 else 'big'
        phoff = int.from_bytes(header[32:40], order)
        phentsize = int.from_bytes(header[54:56], order)
        phnum = int.from_bytes(header[56:58], order)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    for index in range(phnum):
        if int.from_bytes(table[index * phentsize:index * phentsize + 4], order) == 3:  # PT_INTERP
            return False
    return True


class NewcWriter:
    """Write a cpio archive in the 'newc' format the kernel unpacks, owned by root."""

    def __init__(self, stream):
        self._stream = stream
        self._inode = 0

    def _entry(self, name, mode, data=b'', rdev=(0, 0)):
        self._inode += 1
        encoded = name.encode() + b'\0'
        fields = (self._inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b'070701' + b''.join(b'%08X' % field for field in fields)
        self._stream.write(header + encoded + b'\0' * (-(len(header) + len(encoded)) % 4))
        self._stream.write(data + b'\0' * (-len(data) % 4))

    def directory(self, name):
        self._entry(name, 0o040755)

    def file(self, name, data, mode=0o644):
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name, target):
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name, major, minor):
        self._entry(name, 0o020600, rdev=(major, minor))

    def close(self):
        self._entry('TRAILER!!!', 0)


def initramfs_bytes(modules, busybox):
    """Return the gzip-compressed initramfs holding `modules` (.ko paths, in load order)."""
    raw = io.BytesIO()
    archive = NewcWriter(raw)
    for directory in ('bin', 'dev', 'etc', 'lib', 'lib/modules', 'proc', 'sys', 'tmp'):
        archive.directory(directory)
    # The kernel opens /dev/console before /init runs, so it must exist in the archive.
    archive.char_device('dev/console', 5, 1)
    with open(busybox, 'rb') as handle:
        archive.file('bin/busybox', handle.read(), 0o755)
    listing = subprocess.run([busybox, '--list'], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    for applet in sorted(set(listing.split())):
        if applet != 'busybox':
            archive.symlink('bin/' + applet, 'busybox')
    names = []
    for path in modules:
        name = re.sub(r'\.(xz|gz|zst)$', '', os.path.basename(path))
        archive.file('lib/modules/' + name, read_module(path))
        names.append(name)
    archive.file('etc/modules.order', ''.join(name + '\n' for name in names).encode())
    archive.file('init', INIT_SCRIPT.encode(), 0o755)
    archive.close()
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode='wb', mtime=0) as handle:
        handle.write(raw.getvalue())
    return compressed.getvalue()


def script_hash():
    with open(os.path.abspath(__file__), 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:12]


def build(out=DEFAULT_OUT, version=None):
    """Return {'kernel', 'initrd', 'kernel_version', 'modules', 'cached'}; build if missing.

    Raises BuildError with an install hint when the host lacks a piece.
    """
    version, kernel = find_kernel(version)
    target_dir = os.path.join(os.path.abspath(out), '%s-%s' % (version, script_hash()))
    initrd = os.path.join(target_dir, 'initrd.gz')
    manifest = os.path.join(target_dir, 'manifest.json')
    if os.path.isfile(initrd) and os.path.isfile(manifest):
        with open(manifest) as handle:
            result = json.load(handle)
        result['cached'] = True
        return result
    modules = module_order(version, MODULES + SWAP_MODULES)
    data = initramfs_bytes(modules, find_busybox())
    result = {'kernel': kernel, 'initrd': initrd, 'kernel_version': version, 'modules': [os.path.basename(path) for path in modules]}
    os.makedirs(target_dir, exist_ok=True)
    # Write-then-rename so that parallel builders never see half a file.
    for path, content in ((initrd, data), (manifest, json.dumps(result, indent=2).encode() + b'\n')):
        handle, temporary = tempfile.mkstemp(dir=target_dir)
        with os.fdopen(handle, 'wb') as stream:
            stream.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    result['cached'] = False
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=DEFAULT_OUT, help='cache directory (default: %(default)s)')
    parser.add_argument('--kernel-version', help='a /boot/vmlinuz-<version> to use (default: newest cloud kernel)')
    parser.add_argument('--json', action='store_true', help='print a JSON object instead of two paths')
    parser.add_argument('--clean', action='store_true', help='remove the cache directory first')
    args = parser.parse_args(argv)
    if args.clean and os.path.isdir(args.out):
        shutil.rmtree(args.out)
    try:
        result = build(args.out, args.kernel_version)
    except BuildError as exc:
        print('build_guest: %s' % exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(result['kernel'])
        print(result['initrd'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
