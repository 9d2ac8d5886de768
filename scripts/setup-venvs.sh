#!/usr/bin/env bash
# Create the controller venvs used by the Makefile and scripts/run-tests.sh (the versions of
# ansible-core, Python and pip are in scripts/pins.sh):
#   .venv/2.16  ansible-core 2.16 (the oldest supported: Automation Platform EEs)
#   .venv/2.19  ansible-core 2.19
#   .venv/2.21  ansible-core 2.21
#   .venv/lint  the Python and ansible-core of .venv/2.21 + ansible-lint
#   .venv/ee    the Python and ansible-core of .venv/2.21 + ansible-builder, galaxy-importer (only
#               tests/requirements-ee.txt: run-tests.sh ee-check and galaxy-importer)
# Each gets requirements/controller.txt and requirements/hypervisor.txt (the integration tests
# run the modules on this machine, in the venv) and the pinned test tools; the three test venvs
# also requirements/hypervisor-libvirt.txt (built from source: libvirt-dev, pkg-config).
# tests/constraints-NAME.txt, where it exists, overrides pins of tests/constraints.txt for
# venv NAME only (ansible-core 2.16 needs resolvelib < 1.1).
# Idempotent: a venv whose pins have not changed since its last install is left alone,
# so a second run takes well under a second.
#
# Usage: scripts/setup-venvs.sh [--force] [--refresh-constraints] [VENV...]
#   VENV is 2.16, 2.19, 2.21, lint or ee (default: all five).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The Pythons come from pyenv, also when its bin directory is not on PATH (cron, CI).
export PYENV_ROOT="${PYENV_ROOT:-${HOME}/.pyenv}"
if ! command -v pyenv >/dev/null 2>&1 && [ -x "${PYENV_ROOT}/bin/pyenv" ]; then
    PATH="${PYENV_ROOT}/bin:${PATH}"
fi
VENV_ROOT="${ROOT}/.venv"

PINS="${ROOT}/scripts/pins.sh"
# shellcheck source=scripts/pins.sh
. "${PINS}"

FORCE=0
REFRESH=0
WANTED=()
for arg in "$@"; do
    case "${arg}" in
        --force) FORCE=1 ;;
        --refresh-constraints) REFRESH=1 ;;
        2.16|2.19|2.21|lint|ee) WANTED+=("${arg}") ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "setup-venvs: unknown argument: ${arg}" >&2; exit 2 ;;
    esac
done
if [ "${#WANTED[@]}" -eq 0 ]; then
    WANTED=(2.16 2.19 2.21 lint ee)
fi

log() { echo "setup-venvs: $*"; }

# pip, less its warnings about this machine's optional local package mirrors
# ("Location 'file:///...' is ignored") that drown the useful output.
pip_in() {
    local python="$1" errors rc=0
    shift
    errors="$(mktemp)"
    "${python}" -m pip "$@" --quiet --disable-pip-version-check 2>"${errors}" || rc=$?
    grep -v "^WARNING: Location 'file://" "${errors}" >&2 || true
    rm -f "${errors}"
    return "${rc}"
}

# The interpreter of one pyenv version, e.g. "3.13" -> .../versions/3.13.0/bin/python3.13.
# Falls back to pythonX.Y on PATH when pyenv is not there.
find_python() {
    local minor="$1" version prefix
    if command -v pyenv >/dev/null 2>&1; then
        version="$(pyenv versions --bare 2>/dev/null | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -n 1 || true)"
        if [ -n "${version}" ]; then
            prefix="$(pyenv prefix "${version}")"
            echo "${prefix}/bin/python${minor}"
            return 0
        fi
    fi
    if command -v "python${minor}" >/dev/null 2>&1 && "python${minor}" -c '' >/dev/null 2>&1; then
        command -v "python${minor}"
        return 0
    fi
    echo "setup-venvs: Python ${minor} not found (install it with pyenv)" >&2
    return 1
}

# Every file a venv is made from; tests/requirements-*.txt all of them, since one may -r another.
hash_inputs() {
    cat "$0" "${PINS}" "${ROOT}"/requirements/*.txt "${ROOT}"/tests/requirements-*.txt "${ROOT}/tests/constraints.txt" "$@" | sha256sum | cut -d' ' -f1
}

# make_venv NAME PYTHON_MINOR CORE_VERSION REQUIREMENT_FILE...
make_venv() {
    local name="$1" minor="$2" core="$3"
    shift 3
    local dir="${VENV_ROOT}/${name}" stamp python digest req_args=() req
    local constraints="${ROOT}/tests/constraints.txt" override="${ROOT}/tests/constraints-${name}.txt" hashed=("$@")
    stamp="${dir}/.qmp-balloon-stamp"
    python="$(find_python "${minor}")"
    [ -f "${override}" ] && hashed+=("${override}")
    digest="$(hash_inputs "${hashed[@]}")-${core}-$("${python}" -c 'import sys; print(sys.version.split()[0])')"

    if [ "${FORCE}" -eq 0 ] && [ -x "${dir}/bin/python" ] && [ -f "${stamp}" ] \
        && [ "$(cat "${stamp}")" = "${digest}" ]; then
        log "${name}: up to date (${dir})"
        return 0
    fi

    log "${name}: creating with ${python} and ansible-core==${core}"
    rm -rf "${dir}"
    mkdir -p "${VENV_ROOT}"
    "${python}" -m venv "${dir}"
    pip_in "${dir}/bin/python" install --upgrade "pip==${PIP}"

    if [ -f "${override}" ]; then
        # tests/constraints.txt less the packages that the override pins, plus the override.
        constraints="${dir}/.qmp-balloon-constraints.txt"
        grep -viE "^($(grep -oE '^[A-Za-z0-9._-]+==' "${override}" | sed 's/==$//; s/\./\\./g' | paste -sd'|'))==" \
            "${ROOT}/tests/constraints.txt" > "${constraints}" || true
        grep -E '^[A-Za-z0-9._-]+==' "${override}" >> "${constraints}"
    fi
    for req in "$@"; do
        req_args+=(-r "${req}")
    done
    # Passing -c replaces pip's global constraint file for this install; it caps only
    # packages that we never install (torch), so nothing is lost.
    pip_in "${dir}/bin/python" install -c "${constraints}" \
        "ansible-core==${core}" "${req_args[@]}"

    # Guard the pin: a dependency must never have moved ansible-core.
    local installed
    installed="$("${dir}/bin/python" -c 'import ansible.release as r; print(r.__version__)')"
    if [ "${installed}" != "${core}" ]; then
        echo "setup-venvs: ${name}: expected ansible-core ${core}, found ${installed}" >&2
        exit 1
    fi
    "${dir}/bin/python" -m pip check >/dev/null || {
        "${dir}/bin/python" -m pip check >&2
        exit 1
    }
    echo "${digest}" > "${stamp}"
    log "${name}: ready ($("${dir}/bin/python" --version), ansible-core ${installed})"
}

SIDES=("${ROOT}/requirements/controller.txt" "${ROOT}/requirements/hypervisor.txt")
TEST_SIDES=("${SIDES[@]}" "${ROOT}/requirements/hypervisor-libvirt.txt" "${ROOT}/tests/requirements-dev.txt")
for name in "${WANTED[@]}"; do
    case "${name}" in
        2.*)
            core_var="ANSIBLE_CORE_${name//./_}" python_var="PYTHON_${name//./_}"
            make_venv "${name}" "${!python_var}" "${!core_var}" "${TEST_SIDES[@]}" ;;
        lint) make_venv lint "${PYTHON_2_21}" "${ANSIBLE_CORE_2_21}" "${SIDES[@]}" "${ROOT}/tests/requirements-lint.txt" ;;
        ee) make_venv ee "${PYTHON_2_21}" "${ANSIBLE_CORE_2_21}" "${ROOT}/tests/requirements-ee.txt" ;;
    esac
done

if [ "${REFRESH}" -eq 1 ]; then
    # Union of what the venvs hold, less the packages pinned directly elsewhere.
    for name in 2.19 2.21 lint; do
        "${VENV_ROOT}/${name}/bin/python" -m pip freeze --disable-pip-version-check
    done | grep -viE '^(ansible-core|ansible-lint|qemu\.qmp|jmespath|pytest|pytest-xdist|antsibull-changelog)==' \
        | sort -fu
fi
