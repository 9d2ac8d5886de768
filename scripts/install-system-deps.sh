#!/usr/bin/env bash
# Install the Debian packages the tests need, if any is missing (Debian 12).
#
#   qemu-system-x86, qemu-utils   the VMs that integration tests start (TCG)
#   linux-image-cloud-amd64       guest kernel with virtio-balloon as a module
#   busybox-static, kmod, cpio    the guest's initramfs (tests/guest)
#   libvirt-daemon-system         libvirtd, virtlogd and the libvirt-qemu user, for the
#                                 libvirt transport's integration target (it starts a
#                                 private libvirtd itself: no service is enabled here)
#   libvirt-dev, pkg-config       to build libvirt-python (requirements/hypervisor-libvirt.txt)
#   python3-venv                  Debian's own Python as a hypervisor's (PEP 668): the role's
#                                 prepare entry point makes its venv with it
#   openssl                       TLS material for tests
#   chromium                      rendering checks of generated reports
#   rsync                         copy of the collection for ansible-test
#   ShellCheck (shellcheck)       ansible-test's shell script sanity test
#   git, make                     ansible-test, the Makefile
#   prometheus,                   promtool for the alert rules (prometheus-rules suite), and the
#   prometheus-node-exporter      real Prometheus and node_exporter of the prometheus_export
#                                 integration target (it starts both itself on 127.0.0.1; the
#                                 packages' own services are not needed)
#
# Usage: scripts/install-system-deps.sh [--check]
#   --check  only report what is missing (exit 1 if anything is)
# Must run as root to install; otherwise it prints the command to run and exits 1.
set -euo pipefail

PACKAGES=(
    qemu-system-x86
    qemu-utils
    linux-image-cloud-amd64
    busybox-static
    kmod
    cpio
    libvirt-daemon-system
    libvirt-dev
    pkg-config
    python3-venv
    openssl
    chromium
    rsync
    shellcheck
    git
    make
    prometheus
    prometheus-node-exporter
)

CHECK_ONLY=0
case "${1:-}" in
    --check) CHECK_ONLY=1 ;;
    "") ;;
    *) echo "install-system-deps: unknown argument: $1" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-system-deps: no dpkg-query here: this script knows only Debian's packages and apt-get;" \
         "install the equivalents of ${PACKAGES[*]} by hand" >&2
    exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null || true)" != installed ]; then
        missing+=("${package}")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: all present: ${PACKAGES[*]}"
    exit 0
fi

echo "install-system-deps: missing: ${missing[*]}"
if [ "${CHECK_ONLY}" -eq 1 ]; then
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: not root; install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-system-deps: apt-get update"
apt-get update -q
echo "install-system-deps: apt-get install ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-system-deps: done"
