#!/usr/bin/env bash
# Run the collection's test suites and print a summary.
#
# Usage: scripts/run-tests.sh SUITE_OR_GROUP...
#        scripts/run-tests.sh --list          the suites, one a line (the Makefile reads them)
#        scripts/run-tests.sh --list-groups   the groups, one a line
#
#   Suites and groups: listed by --help (below this text), from SUITES and SUITE_GROUPS in this
#   file, their one home. GROUP runs every suite named GROUP-*; all runs every suite.
#
# Every suite runs even when an earlier one failed. The run ends with a table and a
# last line "N passed, M failed" (suites counted); the exit status is 1 when any failed.
#
# ansible-test only works on a collection that sits at .../ansible_collections/NS/NAME,
# as a real directory with its .git, so the work tree is copied (rsync) to
# build/ansible_collections/qmp/balloon before the ansible-test suites; untracked
# files are copied too, so work in progress is tested as it stands.
#
# Environment:
#   ANSIBLE_TEST_ARGS   extra arguments for every ansible-test call (e.g. "-v")
#   SANITY_TESTS        space-separated sanity test names to run (default: all)
#   INTEGRATION_TARGETS space-separated integration targets (default: all)
#   SANITY_PYTHON_2_16  Python(s) for sanity on 2.16: a version or "all" (default: 3.12)
#   SANITY_PYTHON_2_19  Python(s) for sanity on 2.19: a version or "all" (default: 3.11)
#   SANITY_PYTHON_2_21  the same for 2.21 (default: all)
#   QMP_BALLOON_LOG_DIR where each suite's full output goes (default: tests/output/logs)
#   QMP_BALLOON_BUILD_DIR  where the collection copy goes (default: build); give each
#                       concurrent run in one checkout its own, outside the checkout
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The Pythons come from pyenv, also when its bin directory is not on PATH (cron, CI).
export PYENV_ROOT="${PYENV_ROOT:-${HOME}/.pyenv}"
if ! command -v pyenv >/dev/null 2>&1 && [ -x "${PYENV_ROOT}/bin/pyenv" ]; then
    PATH="${PYENV_ROOT}/bin:${PATH}"
fi
BUILD="${QMP_BALLOON_BUILD_DIR:-${ROOT}/build}"
COLLECTION="${BUILD}/ansible_collections/qmp/balloon"
PYBIN="${BUILD}/bin"
LOG_DIR="${QMP_BALLOON_LOG_DIR:-${ROOT}/tests/output/logs}"
RESULTS=""

# The suites, in the order "all" runs them: the one list (the Makefile asks --list). The part
# after "sanity-", "units-" and "integration-" is the venv's ansible-core version (scripts/pins.sh);
# units-pyX.Y runs the units of the newest ansible-core on Python X.Y. Any other suite NAME is
# the function suite_NAME below (dashes as underscores).
SUITES=(sanity-2.16 sanity-2.19 sanity-2.21 units-2.16 units-2.19 units-2.21 units-py3.9
        integration-2.16 integration-2.19 integration-2.21 lint build-check changelog-lint bench-smoke
        ee-check galaxy-importer prometheus-rules)
# Groups: GROUP runs every suite named GROUP-*.
SUITE_GROUPS=(sanity units integration)

# shellcheck source=scripts/pins.sh
. "${ROOT}/scripts/pins.sh"
# The ansible-core versions of the test venvs (2.16 2.19 2.21: the ANSIBLE_CORE_X_Y of pins.sh).
mapfile -t CORES < <(compgen -v ANSIBLE_CORE_ | sed 's/^ANSIBLE_CORE_//; s/_/./g' | sort -V)
NEWEST_CORE="${CORES[-1]}"

# Which Python sanity covers: "all" = every supported Python found (compile and import
# run once per Python, the other sanity tests once on the controller Python), or one
# version. See docs/design.md, "Test tooling".
SANITY_PYTHON_2_16="${SANITY_PYTHON_2_16:-3.12}"
SANITY_PYTHON_2_19="${SANITY_PYTHON_2_19:-3.11}"
SANITY_PYTHON_2_21="${SANITY_PYTHON_2_21:-all}"

# Controller Python of the venv of one ansible-core version (scripts/pins.sh, PYTHON_X_Y).
controller_python() {
    local name="PYTHON_${1//./_}"
    echo "${!name}"
}

ANSIBLE_TEST_ARGS="${ANSIBLE_TEST_ARGS:-}"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

say() { printf '\n=== %s\n' "$*"; }

# ---------------------------------------------------------------------------------
# Preparation shared by the suites; each step runs at most once per invocation.

PREPARED_VENVS=0
prepare_venvs() {
    [ "${PREPARED_VENVS}" -eq 1 ] && return 0
    "${ROOT}/scripts/setup-venvs.sh" || return 1
    PREPARED_VENVS=1
}

# python3.X for every pyenv Python we test on, without pyenv shims: ansible-test
# looks for "python3.X" on PATH to build its --venv environments.
PREPARED_PYBIN=0
prepare_pybin() {
    [ "${PREPARED_PYBIN}" -eq 1 ] && return 0
    rm -rf "${PYBIN}"
    mkdir -p "${PYBIN}"
    local minor version prefix
    for minor in 3.9 3.10 3.11 3.12 3.13; do
        version="$(pyenv versions --bare 2>/dev/null | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -n 1 || true)"
        if [ -n "${version}" ]; then
            prefix="$(pyenv prefix "${version}")"
            ln -s "${prefix}/bin/python${minor}" "${PYBIN}/python${minor}"
        else
            echo "run-tests: warning: no pyenv Python ${minor}" >&2
        fi
    done
    PREPARED_PYBIN=1
}

# ansible-test bootstraps pip in each venv it creates with a script it downloads from
# a host we cannot reach, unless it finds a cached copy: put our offline stand-in there.
# File names come from ansible_test/_util/target/setup/requirements.py (bootstrap()):
# get_pip_<pip version with dots as underscores>.py, pip 23.1.2 for 2.16, 24.2 for 2.19,
# 25.2 for 2.21.
prepare_get_pip() {
    local cache="${HOME}/.ansible/test/cache" name
    mkdir -p "${cache}"
    for name in get_pip_23_1_2.py get_pip_24_2.py get_pip_25_2.py; do
        cp "${ROOT}/scripts/get-pip-offline.py" "${cache}/${name}"
    done
}

PREPARED_COPY=0
prepare_copy() {
    [ "${PREPARED_COPY}" -eq 1 ] && return 0
    mkdir -p "${COLLECTION}"
    # tests/output of the copy is wiped once per run: results of this run only.
    # What .gitignore ignores (venvs, build/, tests/output/, caches) stays behind, so
    # the copy, and the artifact built from it, hold what a clean clone would hold
    # plus work not yet committed.
    rsync -a --delete --delete-excluded \
        --exclude=/build/ --exclude=/.venv/ --exclude=/tests/output/ \
        --filter=':- .gitignore' \
        "${ROOT}/" "${COLLECTION}/" || return 1
    rm -rf "${COLLECTION}/tests/output"
    PREPARED_COPY=1
}

prepare_ansible_test() {
    prepare_venvs && prepare_pybin && prepare_get_pip && prepare_copy
}

# Run ansible-test of one venv in the collection copy.
ansible_test() {
    local core="$1"
    shift
    # shellcheck disable=SC2086  # ANSIBLE_TEST_ARGS is a list of words
    (cd "${COLLECTION}" \
        && PATH="${PYBIN}:${ROOT}/.venv/${core}/bin:${PATH}" \
            "${ROOT}/.venv/${core}/bin/ansible-test" "$@" --color no ${ANSIBLE_TEST_ARGS})
}

# ---------------------------------------------------------------------------------
# Suites. Each returns 0 on success.

suite_sanity() {
    local core="$1" python_var="SANITY_PYTHON_${1//./_}" python tests=() name
    prepare_ansible_test || return 1
    python="${!python_var}"
    for name in ${SANITY_TESTS:-}; do
        tests+=(--test "${name}")
    done
    if [ "${python}" != all ]; then
        tests+=(--python "${python}")
    fi
    say "ansible-test sanity (ansible-core ${core}, Python: ${python})"
    ansible_test "${core}" sanity --venv "${tests[@]}"
}

suite_units() {
    local core="$1" python="$2"
    prepare_ansible_test || return 1
    if ! find "${COLLECTION}/tests/unit" -name 'test_*.py' 2>/dev/null | grep -q .; then
        echo "run-tests: no unit tests (tests/unit/**/test_*.py) found" >&2
        return 1
    fi
    ansible_test "${core}" units --venv --python "${python}"
}

# Integration runs in the controller venv itself (--local): the modules then run with
# the venv's Python, which has qemu.qmp and jmespath from requirements.txt, and
# nothing needs to be installed at test time.
suite_integration() {
    local core="$1" status=0 scratch targets=()
    prepare_ansible_test || return 1
    # Unix socket paths must stay under 108 bytes, so VMs live in a short /tmp dir.
    scratch="$(mktemp -d /tmp/qmpb-it.XXXXXX)"
    cat > "${COLLECTION}/tests/integration/integration_config.yml" <<EOF
---
# Written by scripts/run-tests.sh for this run; ansible-test passes it with -e @.
qmp_balloon_source_root: "${ROOT}"
qmp_balloon_collection_root: "${COLLECTION}"
qmp_balloon_scratch_dir: "${scratch}"
qmp_balloon_ansible_core: "${core}"
EOF
    for name in ${INTEGRATION_TARGETS:-}; do
        targets+=("${name}")
    done
    ansible_test "${core}" integration --local --continue-on-error "${targets[@]}" || status=1
    kill_leftover_vms "${scratch}"
    rm -rf "${scratch}"
    return "${status}"
}

# A target that failed half-way may leave QEMU running. End exactly those QEMU
# processes whose command line names this run's scratch directory.
kill_leftover_vms() {
    local scratch="$1" pid_dir pid cmdline
    for pid_dir in /proc/[0-9]*; do
        pid="${pid_dir#/proc/}"
        # A process may end between the glob and the read: ignore it quietly.
        cmdline="$({ tr '\0' ' ' < "${pid_dir}/cmdline"; } 2>/dev/null)" || continue
        case "${cmdline}" in
            *qemu-system*"${scratch}"*)
                echo "run-tests: ending leftover VM ${pid}: ${cmdline:0:120}"
                kill "${pid}" 2>/dev/null || true
                ;;
        esac
    done
}

suite_lint() {
    prepare_venvs && prepare_copy || return 1
    # The copy's collection root on the collections path: the syntax check of the role (a playbook
    # ansible-lint makes) resolves the collection's own modules, which main.yml imports statically.
    (cd "${COLLECTION}" && ANSIBLE_COLLECTIONS_PATH="${BUILD}" PATH="${ROOT}/.venv/lint/bin:${PATH}" ansible-lint --offline)
}

# Build the artifact, install it somewhere empty and read every module's and role's
# documentation back from the installed copy, with each tested ansible-core version.
suite_build_check() {
    prepare_venvs && prepare_copy || return 1
    local work status=0 core tarball module role found=0
    work="$(mktemp -d)"
    (cd "${COLLECTION}" && "${ROOT}/.venv/2.21/bin/ansible-galaxy" collection build --output-path "${work}/dist") || {
        rm -rf "${work}"
        return 1
    }
    tarball="$(ls "${work}"/dist/qmp-balloon-*.tar.gz)"
    echo "built ${tarball##*/} ($(du -k "${tarball}" | cut -f1) KiB, $(tar -tzf "${tarball}" | wc -l) entries)"
    if tar -tzf "${tarball}" | grep -E '^(\.venv|build|tests/output|\.cache|\.git)/'; then
        echo "run-tests: the artifact holds the local files above (see build_ignore in galaxy.yml)" >&2
        status=1
    fi
    for core in "${CORES[@]}"; do
        say "ansible-core ${core}: install and ansible-doc"
        rm -rf "${work}/collections"
        "${ROOT}/.venv/${core}/bin/ansible-galaxy" collection install --offline -p "${work}/collections" "${tarball}" || {
            status=1
            continue
        }
        for module in "${COLLECTION}"/plugins/modules/*.py; do
            [ -e "${module}" ] || continue
            module="$(basename "${module}" .py)"
            [ "${module}" = __init__ ] && continue
            found=1
            echo "--- ansible-doc qmp.balloon.${module}"
            doc_from "${work}" "${core}" "qmp.balloon.${module}" || status=1
        done
        for role in "${COLLECTION}"/roles/*/; do
            [ -d "${role}" ] || continue
            role="$(basename "${role}")"
            found=1
            echo "--- ansible-doc -t role qmp.balloon.${role}"
            doc_from "${work}" "${core}" -t role "qmp.balloon.${role}" || status=1
        done
    done
    [ "${found}" -eq 1 ] || echo "run-tests: warning: no modules and no roles to document yet"
    rm -rf "${work}"
    return "${status}"
}

# ansible-doc against the installed copy only; fails on an error or an empty answer.
doc_from() {
    local work="$1" core="$2" out
    shift 2
    out="$(cd "${work}" && ANSIBLE_COLLECTIONS_PATH="${work}/collections" ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
        "${ROOT}/.venv/${core}/bin/ansible-doc" "$@" 2>&1)"
    local rc=$?
    # ansible-core 2.21's ansible-doc warns about its own internal _protomatter
    # collection on every call; any other warning or error fails the check.
    if [ "${rc}" -ne 0 ] || [ -z "${out}" ] \
        || grep -E '^\[?(ERROR|WARNING)' <<<"${out}" | grep -qv '/ansible_collections/ansible/_protomatter'; then
        echo "${out}"
        echo "run-tests: ansible-doc $* failed (rc=${rc})" >&2
        return 1
    fi
    head -n 3 <<<"${out}"
}

suite_changelog_lint() {
    prepare_venvs || return 1
    (cd "${ROOT}" \
        && "${ROOT}/.venv/2.21/bin/antsibull-changelog" lint \
        && "${ROOT}/.venv/2.21/bin/antsibull-changelog" lint-changelog-yaml changelogs/changelog.yaml)
}

# The benchmark with tiny sizes (3 fakes, 1 QEMU VM, a 2x2 fleet): proves "make bench" works.
suite_bench_smoke() {
    prepare_venvs || return 1
    "${ROOT}/bench/bench.sh" --smoke
}

# The artifact for ee-check and galaxy-importer, built once per invocation from the copy
# (build-check builds and checks its own).
ARTIFACT=""
prepare_artifact() {
    [ -n "${ARTIFACT}" ] && return 0
    prepare_venvs && prepare_copy || return 1
    rm -rf "${BUILD}/dist"
    (cd "${COLLECTION}" && "${ROOT}/.venv/ee/bin/ansible-galaxy" collection build --output-path "${BUILD}/dist") || return 1
    ARTIFACT="$(ls "${BUILD}"/dist/qmp-balloon-*.tar.gz)" || return 1
}

# The collection as an execution environment (AWX / Automation Platform) sees it:
# ansible-builder create on the example EE of docs/awx, then the build's introspection on the
# tarball installed into an empty directory; scripts/ee-check.py lists the checks. No image
# is built (no container runtime here) and nothing is downloaded.
suite_ee_check() {
    prepare_artifact || return 1
    local work status=0
    work="$(mktemp -d)"
    "${ROOT}/.venv/ee/bin/python" "${ROOT}/scripts/ee-check.py" ee \
        --source "${COLLECTION}" --artifact "${ARTIFACT}" --work "${work}" || status=1
    rm -rf "${work}"
    return "${status}"
}

# galaxy-importer, the import checks of Galaxy and Automation Hub, on the tarball, without
# its ansible-test container step (tests/galaxy-importer.cfg). Errors and warnings fail it.
suite_galaxy_importer() {
    prepare_artifact || return 1
    local work status=0
    work="$(mktemp -d)"
    "${ROOT}/.venv/ee/bin/python" "${ROOT}/scripts/ee-check.py" importer --config "${ROOT}/tests/galaxy-importer.cfg" \
        --source "${COLLECTION}" --artifact "${ARTIFACT}" --work "${work}" || status=1
    rm -rf "${work}"
    return "${status}"
}

# The alert rules the role ships (roles/balloon_stats/files/prometheus/): promtool check rules, then
# the unit tests of tests/prometheus (input series -> expected alerts, a counter reset included).
suite_prometheus_rules() {
    local rules="${ROOT}/roles/balloon_stats/files/prometheus/qmp_balloon.rules.yml"
    if ! command -v promtool >/dev/null 2>&1; then
        echo "run-tests: no promtool: install Debian's prometheus package (scripts/install-system-deps.sh)" >&2
        return 1
    fi
    promtool check rules "${rules}" && promtool test rules "${ROOT}"/tests/prometheus/*.test.yml
}

run_suite() {
    local suite="$1" start status log
    log="${LOG_DIR}/${suite}.log"
    mkdir -p "${LOG_DIR}"
    say "SUITE ${suite} (log: ${log#"${ROOT}"/})"
    start="${SECONDS}"
    case "${suite}" in
        sanity-*) suite_sanity "${suite#sanity-}" ;;
        units-py*) suite_units "${NEWEST_CORE}" "${suite#units-py}" ;;
        units-*) suite_units "${suite#units-}" "$(controller_python "${suite#units-}")" ;;
        integration-*) suite_integration "${suite#integration-}" ;;
        *) "suite_${suite//-/_}" ;;
    esac > >(tee "${log}") 2>&1
    status=$?
    wait  # for tee
    local result=passed
    [ "${status}" -eq 0 ] || result=failed
    printf '%s %s %s\n' "${suite}" "${result}" "$((SECONDS - start))" >> "${RESULTS}"
    say "SUITE ${suite}: ${result} in $((SECONDS - start)) s"
}

summary() {
    local passed failed
    passed="$(grep -c ' passed ' "${RESULTS}")"
    failed="$(grep -c ' failed ' "${RESULTS}")"
    printf '\n%-18s %-7s %8s\n' SUITE RESULT SECONDS
    printf '%-18s %-7s %8s\n' ------------------ ------- --------
    while read -r suite result seconds; do
        printf '%-18s %-7s %8s\n' "${suite}" "${result}" "${seconds}"
    done < "${RESULTS}"
    printf '%-18s %-7s %8s\n\n' total '' "${SECONDS}"
    echo "${passed} passed, ${failed} failed"
    rm -f "${RESULTS}"
    [ "${failed}" -eq 0 ]
}

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"
    echo "#"
    echo "#   Suites:  ${SUITES[*]}"
    echo "#   Groups:  ${SUITE_GROUPS[*]} all"
}

# The suites of a group (every suite named GROUP-*), or nothing.
group_suites() {
    local group="$1" suite
    for suite in "${SUITES[@]}"; do
        [[ "${suite}" == "${group}"-* ]] && echo "${suite}"
    done
    return 0
}

main() {
    local suites=() arg
    [ "$#" -gt 0 ] || set -- all
    for arg in "$@"; do
        if [ "${arg}" = all ]; then
            suites+=("${SUITES[@]}")
        elif [[ " ${SUITES[*]} " == *" ${arg} "* ]]; then
            suites+=("${arg}")
        elif [[ " ${SUITE_GROUPS[*]} " == *" ${arg} "* ]]; then
            mapfile -t -O "${#suites[@]}" suites < <(group_suites "${arg}")
        else
            case "${arg}" in
                --list) printf '%s\n' "${SUITES[@]}"; exit 0 ;;
                --list-groups) printf '%s\n' "${SUITE_GROUPS[@]}"; exit 0 ;;
                -h|--help) usage; exit 0 ;;
                *) echo "run-tests: unknown suite: ${arg}" >&2; exit 2 ;;
            esac
        fi
    done
    RESULTS="$(mktemp)"
    SECONDS=0
    # The Debian packages first (apt-get as root; not root: it prints the command and stops),
    # so that "make test" on a fresh machine needs nothing typed before it.
    "${ROOT}/scripts/install-system-deps.sh" || {
        echo "run-tests: the Debian packages above are missing; nothing was run" >&2
        exit 1
    }
    for arg in "${suites[@]}"; do
        run_suite "${arg}"
    done
    summary
}

main "$@"
