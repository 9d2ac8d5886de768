#!/usr/bin/env bash
# make demo: boot three throwaway QEMU guests, run the role qmp.balloon.balloon_stats against
# them (switch on polling, gather, wait, gather again, write the report) and print what it read.
#
#   1. Debian packages qemu-system-x86 busybox-static linux-image-cloud-amd64 kmod (and a
#      Python venv module if missing): apt-get as root; otherwise prints the command, exits 1.
#   2. Controller venv .venv/demo (Python 3.11-3.13) with the ansible-core of .venv/2.19 (scripts/pins.sh),
#      requirements/controller.txt and requirements/hypervisor.txt; made once, then reused.
#   3. Boots 3 guests (128, 192, 256 MiB; the last one churns 48 MiB) in /tmp/qmpb-demo.XXXXXX
#      and waits until each has reported stats once.
#   4. ansible-playbook -i demo/inventory.yml demo/playbook.yml (localhost is the hypervisor).
#   5. Prints both gathers as tables; the report is in demo-output/ (HTML, JSON, CSV).
#   6. Stops every VM it started and removes the temp dir, also on failure, Ctrl-C or SIGTERM.
#
# Usage: scripts/demo.sh
# Environment: DEMO_PYTHON  controller interpreter for .venv/demo (Python 3.11-3.13)
#              DEMO_WAIT    seconds between the two gathers (default 5)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

# shellcheck source=scripts/pins.sh
. "${ROOT}/scripts/pins.sh"
CORE="${ANSIBLE_CORE_2_19}"
APT_PACKAGES=(qemu-system-x86 busybox-static linux-image-cloud-amd64 kmod)
OUTPUT="${ROOT}/demo-output"
COLLECTIONS="${ROOT}/.cache/collections"
# name:MiB:churn MiB
GUESTS=(vm128:128:0 vm192:192:0 vm256:256:48)
DEMO_WAIT="${DEMO_WAIT:-5}"
[[ "${DEMO_WAIT}" =~ ^[0-9]+$ ]] || { echo "demo: DEMO_WAIT must be a number of seconds" >&2; exit 2; }

VM_DIR=""
PY=""
CHILD=""
START_PIDS=()
T0="${SECONDS}"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# Cleanup: runs once, on every exit path. HUP, INT, PIPE and TERM only set the exit status.

cleanup() {
    local rc=$? pid stopped
    trap '' INT TERM HUP PIPE
    set +e       # stop every VM even when printing fails (a closed terminal or pipe)
    exec 1>&3    # the signal may have come while stdout was redirected (vm.py wait > wait.json)
    if [ -n "${CHILD}" ]; then
        kill -TERM "${CHILD}" 2>/dev/null || true
        wait "${CHILD}" 2>/dev/null || true
    fi
    for pid in "${START_PIDS[@]}"; do      # a "vm.py start" still running: let it finish
        wait "${pid}" 2>/dev/null || true
    done
    if [ -n "${VM_DIR}" ] && [ -d "${VM_DIR}" ]; then
        say "6/6 Stopping the VMs of this demo (${VM_DIR})"
        if stopped="$(python_for_guests "${ROOT}/tests/guest/vm.py" stop --dir "${VM_DIR}" 2>&1)"; then
            note "$(tr -d '\n' <<<"${stopped}" | tr -s ' ')"
        else
            printf '%s\n' "${stopped}" >&2
            [ "${rc}" -ne 0 ] || rc=1
        fi
        kill_leftover_vms "${VM_DIR}" || rc=1
        rm -rf "${VM_DIR}"
    fi
    if [ "${rc}" -eq 0 ]; then
        printf '\ndemo: done in %ss\n' "$((SECONDS - T0))"
    elif [ -n "${VM_DIR}" ]; then
        printf '\ndemo: failed or interrupted (exit %s) after %ss; every VM it started is stopped\n' \
            "${rc}" "$((SECONDS - T0))" >&2
    else
        printf 'demo: failed or interrupted (exit %s) after %ss\n' "${rc}" "$((SECONDS - T0))" >&2
    fi
    exit "${rc}"
}
exec 3>&1
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

python_for_guests() {
    # tests/guest needs only the standard library (Python 3.9+).
    if [ -n "${PY}" ] && [ -x "${PY}" ]; then "${PY}" "$@"; else python3 "$@"; fi
}

# Last resort after "vm.py stop": a QEMU of ours without a pidfile (interrupted mid-start).
# Only processes whose command line names this run's own temp dir are touched (no procps
# needed: /proc is read directly).
our_qemu_pids() {
    local dir="$1" proc cmdline
    for proc in /proc/[0-9]*; do
        cmdline="$(tr '\0' ' ' 2>/dev/null < "${proc}/cmdline")" || continue
        case "${cmdline}" in
            *qemu-system*"${dir}/"*) echo "${proc#/proc/}" ;;
        esac
    done
}

kill_leftover_vms() {
    local dir="$1" pids signal
    for signal in TERM KILL; do
        pids="$(our_qemu_pids "${dir}")"
        [ -n "${pids}" ] || return 0
        note "ending leftover VM(s) with SIG${signal}: ${pids//$'\n'/ }"
        # shellcheck disable=SC2086  # one word per pid
        kill "-${signal}" ${pids} 2>/dev/null
        for _ in $(seq 50); do
            [ -n "$(our_qemu_pids "${dir}")" ] || return 0
            sleep 0.1
        done
    done
    echo "demo: QEMU still running after SIGKILL: $(our_qemu_pids "${dir}")" >&2
    return 1
}

# Run a long step while VMs are up in the background and wait for it, so that a signal
# reaches the trap at once (bash runs a trap only after the foreground command ended);
# cleanup ends the step with SIGTERM. Give it a program, not a shell function.
run() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "${CHILD}" || rc=$?
    CHILD=""
    return "${rc}"
}

# ---------------------------------------------------------------------------------------
# 1. Debian packages and a controller Python

py_usable() {  # ansible-core 2.19 runs its controller on Python 3.11-3.13
    "$1" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1
}
py_has_venv() {
    "$1" -c 'import ensurepip, venv' >/dev/null 2>&1
}
py_minor() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

# Sets BASE_PYTHON (a Python 3.11-3.13 for ansible-core's controller), or leaves it empty.
# pyenv's newest 3.11-3.13 first (the test machines), then python3.13 ... python3 on PATH.
choose_python() {
    local candidate version
    BASE_PYTHON=""
    if [ -n "${DEMO_PYTHON:-}" ]; then
        py_usable "${DEMO_PYTHON}" || die "DEMO_PYTHON=${DEMO_PYTHON} is not Python 3.11-3.13"
        BASE_PYTHON="${DEMO_PYTHON}"
        return 0
    fi
    if command -v pyenv >/dev/null 2>&1; then
        version="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[1-3]\.[0-9]+$' | sort -V | tail -n 1 || true)"
        if [ -n "${version}" ]; then
            candidate="$(pyenv prefix "${version}")/bin/python${version%.*}"
            if py_usable "${candidate}"; then
                BASE_PYTHON="${candidate}"
                return 0
            fi
        fi
    fi
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "${candidate}" >/dev/null 2>&1 && py_usable "${candidate}"; then
            BASE_PYTHON="$(command -v "${candidate}")"
            return 0
        fi
    done
}

install_packages() {
    local missing=() package minor
    if command -v dpkg-query >/dev/null 2>&1; then
        for package in "${APT_PACKAGES[@]}"; do
            if [ "$(dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null || true)" != installed ]; then
                missing+=("${package}")
            fi
        done
    else
        command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        missing+=(python3 python3-venv)
    elif [ -n "${BASE_PYTHON}" ] && ! py_has_venv "${BASE_PYTHON}"; then
        minor="$(py_minor "${BASE_PYTHON}")"
        missing+=("python${minor}-venv")
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        note "present: ${APT_PACKAGES[*]}"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing: ${missing[*]} (this demo knows only apt-get: install the equivalents by hand)"
    fi
    if [ "$(id -u)" -ne 0 ]; then
        printf 'demo: missing Debian packages: %s\n' "${missing[*]}" >&2
        printf 'demo: not root; install them with:\n' >&2
        printf '    sudo apt-get update && sudo apt-get install -y --no-install-recommends %s\n' "${missing[*]}" >&2
        printf 'demo: then run "make demo" again\n' >&2
        if [[ " ${missing[*]} " == *" linux-image-cloud-amd64 "* ]] && ! grep -qs '^ID=debian$' /etc/os-release; then
            printf 'demo: note: linux-image-cloud-amd64 is a Debian package; the guests need that kernel\n' >&2
        fi
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    note "installing ${missing[*]} (apt-get)"
    apt-get update -q
    if [[ " ${missing[*]} " == *" linux-image-cloud-amd64 "* ]] && ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
        die "no package linux-image-cloud-amd64 here: the guests need Debian's cloud kernel" \
            "(tests/guest/build_guest.py uses /boot/vmlinuz-*-cloud-amd64); run the demo on Debian"
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

say "1/6 System packages"
choose_python
install_packages
if [ -z "${BASE_PYTHON}" ]; then
    choose_python    # a python3 apt-get just installed may do
fi
if [ -z "${BASE_PYTHON}" ]; then
    die "ansible-core ${CORE} needs Python 3.11-3.13 for its controller, and none was found" \
        "(python3 is $(python3 --version 2>&1 || echo missing)); install one (Debian 12: apt-get install python3 python3-venv;" \
        "elsewhere e.g. pyenv) and run again, or point DEMO_PYTHON at it"
fi

# ---------------------------------------------------------------------------------------
# 2. Controller venv

say "2/6 Python virtual environment (ansible-core ${CORE})"
# Its own venv, with only what the demo needs: ansible-core, the controller's and the
# hypervisor's requirements for transport qmp (no libvirt-python, so no libvirt-dev).
VENV="${ROOT}/.venv/demo"
stamp="${VENV}/.qmp-balloon-demo-stamp"
REQUIREMENTS=("${ROOT}/requirements/controller.txt" "${ROOT}/requirements/hypervisor.txt")
digest="$(cat "${REQUIREMENTS[@]}" "${ROOT}/tests/constraints.txt" | sha256sum | cut -d' ' -f1)-${CORE}-$("${BASE_PYTHON}" -c 'import sys; print(sys.version.split()[0])')"
if [ -x "${VENV}/bin/python" ] && [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${digest}" ]; then
    note "up to date (${VENV})"
else
    note "creating ${VENV} with ${BASE_PYTHON}"
    rm -rf "${VENV}"
    "${BASE_PYTHON}" -m venv "${VENV}"
    # (less pip's warnings about this machine's optional local mirrors, as setup-venvs.sh does)
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "${ROOT}/tests/constraints.txt" "ansible-core==${CORE}" -r "${REQUIREMENTS[0]}" -r "${REQUIREMENTS[1]}" \
        2> >(grep -v "^WARNING: Location 'file://" >&2)
    echo "${digest}" > "${stamp}"
fi
PY="${VENV}/bin/python"
"${PY}" -c 'import ansible.release, qemu.qmp, jmespath' 2>/dev/null \
    || die "${VENV} lacks ansible-core, qemu.qmp or jmespath; delete it and run again"
note "$("${PY}" --version), ansible-core $("${PY}" -c 'import ansible.release as r; print(r.__version__)') in ${VENV#"${ROOT}"/}"

# The role is found as qmp.balloon through a symlink to this work tree.
link="${COLLECTIONS}/ansible_collections/qmp/balloon"
mkdir -p "${link%/*}"
if [ -L "${link}" ] || [ ! -e "${link}" ]; then
    ln -sfn ../../../.. "${link}"
fi
[ "$(cd "${link}" && pwd -P)" = "$(pwd -P)" ] || die "${link} is not a link to ${ROOT}"

# ---------------------------------------------------------------------------------------
# 3. Guests

say "3/6 Booting ${#GUESTS[@]} guests (TCG, in parallel)"
python_for_guests "${ROOT}/tests/guest/build_guest.py" >/dev/null    # build the initramfs once, before the parallel starts
VM_DIR="$(mktemp -d /tmp/qmpb-demo.XXXXXX)"
names=()
for spec in "${GUESTS[@]}"; do
    IFS=: read -r name mem churn <<<"${spec}"
    names+=("${name}")
    options=(--name "${name}" --dir "${VM_DIR}" --mem "${mem}")
    [ "${churn}" -gt 0 ] && options+=(--churn "${churn}")
    python_for_guests "${ROOT}/tests/guest/vm.py" start "${options[@]}" > "${VM_DIR}/${name}.start" 2>&1 &
    START_PIDS+=($!)
    note "${name}: ${mem} MiB$([ "${churn}" -gt 0 ] && echo ", allocates and frees ${churn} MiB every 2 s")"
done
failed=0
for index in "${!START_PIDS[@]}"; do
    if ! wait "${START_PIDS[${index}]}"; then
        cat "${VM_DIR}/${names[${index}]}.start" >&2
        failed=1
    fi
done
START_PIDS=()
[ "${failed}" -eq 0 ] || die "a guest did not start"
boot_start="${SECONDS}"
note "QEMU started in ${VM_DIR}; waiting for each guest's first stats (up to 90 s) ..."
if ! run "${PY}" "${ROOT}/tests/guest/vm.py" wait --dir "${VM_DIR}" --timeout 90 "${names[@]}" \
        > "${VM_DIR}/wait.json"; then
    cat "${VM_DIR}/wait.json" >&2
    die "the guests did not boot"
fi
"${PY}" - "${VM_DIR}/wait.json" <<'EOF'
import json, sys
for name, info in sorted(json.load(open(sys.argv[1])).items()):
    print('    %s: first stats %.1f s after QEMU started (QEMU RSS %s MiB)' % (name, info['seconds'], info['rss_mib']))
EOF
note "all booted in $((SECONDS - boot_start)) s"

# ---------------------------------------------------------------------------------------
# 4. The playbook

say "4/6 ansible-playbook demo/playbook.yml (role qmp.balloon.balloon_stats)"
mkdir -p "${OUTPUT}"
rm -f "${OUTPUT}/gathers.json" "${OUTPUT}"/balloon-stats.*
"${PY}" -c 'import json, sys; print(json.dumps({"demo_vm_dir": sys.argv[1], "demo_output_dir": sys.argv[2],
                                                "demo_wait_seconds": int(sys.argv[3])}))' \
    "${VM_DIR}" "${OUTPUT}" "${DEMO_WAIT}" > "${VM_DIR}/extra-vars.json"
export ANSIBLE_COLLECTIONS_PATH="${COLLECTIONS}"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
export ANSIBLE_RETRY_FILES_ENABLED=false
export ANSIBLE_PIPELINING=true
run "${VENV}/bin/ansible-playbook" -i "${ROOT}/demo/inventory.yml" "${ROOT}/demo/playbook.yml" \
    -e "@${VM_DIR}/extra-vars.json"

# ---------------------------------------------------------------------------------------
# 5. What it read

say "5/6 What the role read"
"${PY}" "${ROOT}/demo/show.py" "${OUTPUT}/gathers.json"
printf '\nHTML report: %s\n' "${OUTPUT}/balloon-stats.html"
printf '       also: %s, %s\n' "${OUTPUT}/balloon-stats.json" "${OUTPUT}/balloon-stats.csv"

# 6. The EXIT trap stops the VMs and removes the temp dir.
