#!/usr/bin/env bash
# The role's prepare entry point on this machine's Debian 12 /usr/bin/python3 (externally
# managed, without qemu.qmp: never install into it), as a hypervisor's Python would be. One
# ansible-playbook run of cases.yml (inventory.yml: the hosts differ by their Python); here:
# the wheel directory (pip download, as docs/hypervisor-setup.md says), a tampered copy of it,
# the loopback index files/index_spy.py (it records every request), the fake Pythons without
# venv/ensurepip, and a clean pip configuration (what a fresh hypervisor has).
set -eux -o pipefail

python=$(command -v python3 || command -v python)  # the Python that runs ansible (has pip)
pin=0.0.6

# ansible-test passes -e @integration_config.yml: its qmp_balloon_scratch_dir, when there, holds our files.
config=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[$i]}" = -e ] && [[ "${args[$((i + 1))]:-}" == @* ]]; then
        config="${args[$((i + 1))]#@}"
    fi
done
scratch=/tmp
if [ -n "${config}" ]; then
    scratch=$("${python}" -c 'import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get("qmp_balloon_scratch_dir") or "/tmp")' "${config}")
fi

if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || ! command -v qemu-system-x86_64 >/dev/null; then
    echo "SKIPPED: role_balloon_stats_prepare: needs Debian's /usr/bin/python3 with venv and ensurepip (apt-get install -y python3-venv)" \
         "and qemu-system-x86_64; 0 cases ran"
    exit 0
fi
# The point of the test: Debian's Python has no qemu.qmp. A machine where someone installed it there is not one to test on.
if /usr/bin/python3 -c 'import qemu.qmp' 2>/dev/null; then
    echo "role_balloon_stats_prepare: /usr/bin/python3 imports qemu.qmp here; remove it from Debian's Python (it must stay without)" >&2
    exit 1
fi

work=$(mktemp -d "${scratch}/prep.XXXXXX")
default_venv_before=$(test -e /opt/qmp-balloon/venv && echo present || echo absent)
spy_pid=""
cleanup() {
    status=$?
    set +e
    if [ -n "${spy_pid}" ]; then
        kill "${spy_pid}" 2>/dev/null
    fi
    # VMs of setup_qemu left by a failed play: its helper stops exactly those, by pidfile
    for dir in "${work}"/qb.*; do
        [ -d "${dir}" ] && "${python}" ../setup_qemu/files/qemu_vm.py stop "${dir}" >/dev/null
    done
    if [ -n "${PREP_KEEP:-}" ]; then
        echo "role_balloon_stats_prepare: kept ${work}"
    else
        rm -rf "${work}"
    fi
    echo "role_balloon_stats_prepare: ${SECONDS}s, exit ${status}"
}
trap cleanup EXIT

# The wheel directory, made the way docs/hypervisor-setup.md says (with this machine's pip configuration).
"${python}" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: --dest "${work}/wheels" "qemu.qmp==${pin}"
test "$(ls "${work}/wheels")" = "qemu_qmp-${pin}-py3-none-any.whl"
mkdir "${work}/empty"
# A tampered copy: the same name, a valid wheel with one more file in it.
mkdir "${work}/tampered"
cp "${work}/wheels/qemu_qmp-${pin}-py3-none-any.whl" "${work}/tampered/"
"${python}" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "a").writestr("qemu/qmp/extra.py", "print(1)\n")' \
    "${work}/tampered/qemu_qmp-${pin}-py3-none-any.whl"
# The loopback index: /good/ serves the real wheel, /bad/ the tampered one, /offline/ nothing.
mkdir -p "${work}/index/good" "${work}/index/bad" "${work}/index/offline"
cp "${work}/wheels/qemu_qmp-${pin}-py3-none-any.whl" "${work}/index/good/"
cp "${work}/tampered/qemu_qmp-${pin}-py3-none-any.whl" "${work}/index/bad/"
touch "${work}/index.log"
"${python}" files/index_spy.py "${work}/index" "${work}/index.log" "${work}/index.port" "${work}/index.pid" &
spy_pid=$!
for _ in $(seq 100); do
    [ -s "${work}/index.port" ] && break
    sleep 0.1
done
port=$(cat "${work}/index.port")

# A wrong balloon_stats_venv: a directory that is not a venv (no pyvenv.cfg) with a dangling bin/python.
mkdir -p "${work}/foreign/bin"
ln -s /no/such/python3 "${work}/foreign/bin/python"
echo keep > "${work}/foreign/keep.txt"
# A venv whose pyvenv.cfg names another Python than its bin/python runs (Debian's links after an upgrade).
/usr/bin/python3 -m venv --without-pip --system-site-packages "${work}/v-upgraded"
sed -i 's/^version = .*/version = 3.10.9/' "${work}/v-upgraded/pyvenv.cfg"
touch "${work}/v-upgraded/marker"
# pip configuration that would offer other wheels to an offline install (all at the recording index).
mkdir -p "${work}/xdg/pip"
printf '[global]\nfind-links = http://127.0.0.1:%s/xdg-links/\n' "${port}" > "${work}/xdg/pip/pip.conf"
printf '[global]\nfind-links = http://127.0.0.1:%s/env-config-links/\n' "${port}" > "${work}/pip-env.conf"

# Debian's Python without python3-venv: ensurepip shadowed by a package that fails to import.
mkdir -p "${work}/shadow/ensurepip" "${work}/fake/novenv" "${work}/fake/apt" "${work}/fake/empty-bin"
echo 'raise ImportError("ensurepip is not installed (role_balloon_stats_prepare fake)")' > "${work}/shadow/ensurepip/__init__.py"
printf '#!/bin/sh\nPYTHONPATH=%s PATH=%s exec /usr/bin/python3 "$@"\n' "${work}/shadow" "${work}/fake/empty-bin" > "${work}/fake/novenv/python3"
printf '#!/bin/sh\nPYTHONPATH=%s exec /usr/bin/python3 "$@"\n' "${work}/shadow" > "${work}/fake/apt/python3"
chmod 755 "${work}/fake/novenv/python3" "${work}/fake/apt/python3"

# pip on the "hypervisor" sees no configuration of this machine (its local mirrors and find-links).
while IFS= read -r name; do
    unset "${name}"
done < <(env | sed -n 's/^\(PIP_[A-Z_]*\)=.*/\1/p')
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1

export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1 ANSIBLE_PIPELINING=1
# setup_qemu (aliases: needs/target/setup_qemu) is a sibling target
export ANSIBLE_ROLES_PATH="${PWD}/..${ANSIBLE_ROLES_PATH:+:${ANSIBLE_ROLES_PATH}}"
export ANSIBLE_CALLBACK_PLUGINS="${PWD}/callback_plugins${ANSIBLE_CALLBACK_PLUGINS:+:${ANSIBLE_CALLBACK_PLUGINS}}"
export ANSIBLE_CALLBACKS_ENABLED="prep_results${ANSIBLE_CALLBACKS_ENABLED:+,${ANSIBLE_CALLBACKS_ENABLED}}"
export PREP_RESULTS="${work}/results.json"

set +e
ansible-playbook -i inventory.yml cases.yml -e "prep_dir=${work}" -e "prep_index=http://127.0.0.1:${port}" "$@" 2>&1 | tee "${work}/cases.log"
rc=${PIPESTATUS[0]}
set -e
if [ "${rc}" -ne 0 ]; then
    echo "role_balloon_stats_prepare: ansible-playbook exited ${rc}" >&2
    exit 1
fi
# Every host ran to the end, none failed (rescued failures are the cases that expect them).
for host in hv hvctl hv-user hv-novenv hv-apt; do
    grep -E -q "^${host} +: .* unreachable=0 +failed=0 " "${work}/cases.log"
done
# Ad hoc in check mode (the minimal callback): prepare's "Would ..." shows as CHANGED, not SUCCESS
# (2.21 puts "changed_when_result" before "msg", hence -A4).
ansible -i inventory.yml hv --check -m ansible.builtin.include_role -a 'name=qmp.balloon.balloon_stats tasks_from=prepare' \
    -e "prep_dir=${work}" -e "balloon_stats_venv=${work}/v-adhoc" "$@" > "${work}/adhoc.log" 2>&1 || { cat "${work}/adhoc.log"; exit 1; }
grep -A4 '^hv | CHANGED => {' "${work}/adhoc.log" | grep -q '"msg": "Would make the venv '"${work}"'/v-adhoc with /usr/bin/python3 ' \
    || { cat "${work}/adhoc.log"; echo "role_balloon_stats_prepare: ad hoc check mode did not show CHANGED" >&2; exit 1; }
test ! -e "${work}/v-adhoc"
# Debian's Python still has no qemu.qmp, and nothing appeared at the default venv path.
if /usr/bin/python3 -c 'import qemu.qmp' 2>/dev/null; then
    echo "role_balloon_stats_prepare: /usr/bin/python3 imports qemu.qmp after the test" >&2
    exit 1
fi
test "$(test -e /opt/qmp-balloon/venv && echo present || echo absent)" = "${default_venv_before}"
