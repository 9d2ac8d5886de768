#!/usr/bin/env bash
# The role qmp.balloon.balloon_stats over a fleet (inventory.yml): hv1-hv3 each own real
# QEMU VMs (two real Linux guests, four paused VMs without an OS), hv-empty owns none and
# hv-down is unreachable. Five ansible-playbook runs:
#   1 configure.yml          configure in check+diff mode, then twice                   (exit 0)
#   2 discover_once.yml      the plan's transport and globs, module calls counted       (exit 0)
#   3 gather.yml             main entry point over the fleet, writes the reports         (exit 4: hv-down)
#   4 verify.yml             cached facts, JSON/CSV/HTML reports, user rule, bad input   (exit 0)
#   5 fail_on_violation.yml  report with balloon_stats_fail_on_violation                  (exit 2)
#   6 audit.yml              issue 14: a misspelled glob (failed), no balloon (unknown), the gate (exit 0)
#   7 audit_again.yml        nothing changed: changed=0, "since last run" says so       (exit 0)
#   8 audit_again.yml        after s1 was stopped: "since last run" names it           (exit 0)
#   9 pressure.yml           a real guest swapping (zram): pressure high, memory_pressure (exit 0)
#  10 strategy_free.yml      strategy free: one report after every gather; hv1's cached fact left out (exit 4)
# fleet.py boots the VMs before run 1 (all at once) and stops every one of them on exit,
# whatever happens.
set -eux -o pipefail

start=${SECONDS}
timings=()
step() {  # step NAME: record the time since the previous step
    timings+=("$1 $((SECONDS - start))s")
    start=${SECONDS}
}

# The Python that runs ansible (it has PyYAML, which fleet.py needs)
python=$(command -v python3 || command -v python)

if ! command -v qemu-system-x86_64 >/dev/null || ! compgen -G '/boot/vmlinuz-*-cloud-amd64' >/dev/null; then
    echo "SKIPPED: role_balloon_stats: needs qemu-system-x86_64 and /boot/vmlinuz-*-cloud-amd64 to boot real guests;" \
         "0 cases ran. Install them with: apt-get install -y qemu-system-x86 linux-image-cloud-amd64 busybox-static kmod"
    exit 0
fi

# Headless Chromium renders the HTML report; install it when missing and possible, else skip that part.
chromium=$(command -v chromium || true)
if [ -z "${chromium}" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium || true
    chromium=$(command -v chromium || true)
fi
if [ -z "${chromium}" ]; then
    echo "SKIPPED: role_balloon_stats: no chromium (apt-get install -y chromium): the HTML rendering checks will not run"
fi

# hv-down is an ssh host on a closed port: without an ssh client it would fail instead of being unreachable.
if ! command -v ssh >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-client || true
fi
if ! command -v ssh >/dev/null; then
    echo "role_balloon_stats: needs an ssh client for its unreachable host (apt-get install -y openssh-client)" >&2
    exit 1
fi

# Unix socket paths must stay under 108 bytes: the VMs live in a short private /tmp directory.
work=$(mktemp -d /tmp/rbs.XXXXXX)
cleanup() {
    status=$?
    set +e
    for dir in "${work}"/hv*; do
        [ -d "${dir}" ] || continue
        if [ "${status}" -ne 0 ]; then
            for log in "${dir}"/*.log; do
                [ -f "${log}" ] && echo "--- ${log}" && tail -n 5 "${log}"
            done
        fi
    done
    # every WORK/*/NAME.pid, and only a process whose command line names that pidfile
    "${python}" fleet.py stop "${work}"
    # RBS_KEEP=1 (when run by hand) keeps the reports, logs and screenshot for a look
    if [ -n "${RBS_KEEP:-}" ]; then
        echo "role_balloon_stats: kept ${work}"
    else
        rm -rf "${work}"
    fi
    echo "role_balloon_stats: ${timings[*]:-} (total ${SECONDS}s, exit ${status})"
}
trap cleanup EXIT

# The checks below grep ansible-playbook's output: no colour codes in it.
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
# Every hypervisor but hv-down is local: pipelining saves each task its temporary files.
export ANSIBLE_PIPELINING=1
export ANSIBLE_CACHE_PLUGIN=jsonfile
export ANSIBLE_CACHE_PLUGIN_CONNECTION="${work}/facts"
# callback_plugins/rbs_module_calls.py counts the module calls of each play and host into the
# file RBS_MODULE_CALLS (set per run below); ansible-test may have enabled callbacks of its own.
export ANSIBLE_CALLBACK_PLUGINS="${PWD}/callback_plugins${ANSIBLE_CALLBACK_PLUGINS:+:${ANSIBLE_CALLBACK_PLUGINS}}"
export ANSIBLE_CALLBACKS_ENABLED="rbs_module_calls${ANSIBLE_CALLBACKS_ENABLED:+,${ANSIBLE_CALLBACKS_ENABLED}}"
common=(-i inventory.yml -e "rbs_dir=${work}" "$@")

# run EXPECTED_EXIT LOG PLAYBOOK [ARGS...]: run a playbook, show and keep its output, check its exit status
# (the module calls of the run go to LOG with .calls.json for .log, the report action's results to .reports.json)
run() {
    local expected=$1 log=$2 rc
    shift 2
    set +e
    RBS_MODULE_CALLS="${log%.log}.calls.json" RBS_REPORT_RESULTS="${log%.log}.reports.json" ansible-playbook "$@" 2>&1 | tee "${log}"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "${rc}" -ne "${expected}" ]; then
        echo "role_balloon_stats: ansible-playbook $1 exited ${rc}, expected ${expected}" >&2
        return 1
    fi
}

# Boot every VM of the fleet at once; the real guests boot (10-25 s) while run 1 goes on.
"${python}" fleet.py start "${work}"
step boot

# 1: check mode + diff on the fresh VMs, configure twice
run 0 "${work}/configure.log" configure.yml "${common[@]}"
# diff mode printed each VM's before and after
grep -q -- '^-guest-stats-polling-interval: 0$' "${work}/configure.log"
grep -q -- '^+guest-stats-polling-interval: 5$' "${work}/configure.log"
for vm in g128 n1 g192 n2 n3 n4; do
    grep -q -- "^+++ after: ${vm} interval$" "${work}/configure.log"
done
step configure

# 2: the plan (transport, globs) and the counted module calls; libvirt "sockets" for
# transport auto: a file that exists and a dangling symlink (stat says both exist)
touch "${work}/libvirt-sock-present"
ln -s "${work}/no-such-target" "${work}/libvirt-sock-dangling"
run 0 "${work}/discover_once.log" discover_once.yml "${common[@]}"
step discover_once

# The real guests' first stats (read only): they boot while runs 1 and 2 go on.
"${python}" fleet.py wait "${work}" 120
step guests_ready

# 3: the whole fleet through the main entry point; hv-down is unreachable (exit 4), nothing failed
ANSIBLE_SHOW_CUSTOM_STATS=1 run 4 "${work}/gather.log" gather.yml "${common[@]}"
grep -E -q '^hv-down +: .* unreachable=1 +failed=0 ' "${work}/gather.log"
for host in hv1 hv2 hv3 hv-empty; do
    grep -E -q "^${host} +: .* unreachable=0 +failed=0 " "${work}/gather.log"
done
# the unreachable host and the hypervisor without VMs are in the headline, with every state counted
grep -q '6 VMs on 5 hypervisors (1 unreachable: hv-down (Ansible could not connect to it, so none of its VMs was read); 1 without VMs: hv-empty): 1 compliant, 5 non-compliant, 0 unknown; 9 violations (4 critical, 4 warning, 1 info), 12 rule results unknown.' "${work}/gather.log"
# set_stats: the report's data is in the play's custom stats (AWX keeps them as job artifacts)
grep -A3 '^CUSTOM STATS' "${work}/gather.log" | grep -q '"balloon_stats_report": {.*"headline": "6 VMs on 5 hypervisors'
if grep -E ' failed=[1-9]' "${work}/gather.log"; then
    exit 1
fi
step gather

# 4: a later, separate run reads the cached facts and checks the reports
run 0 "${work}/verify.log" verify.yml "${common[@]}" -e "rbs_chromium=${chromium}"
step verify

# 5: balloon_stats_fail_on_violation fails the play, listing every violation, after writing the report
run 2 "${work}/fail.log" fail_on_violation.yml "${common[@]}"
grep -q '9 compliance violations: hv1/g128: min_total_memory (info); hv1/n1: driver_reporting (critical);' "${work}/fail.log"
grep -q 'hv3/n4: data_fresh (warning); hv3/n3: driver_reporting (critical); hv3/n3: data_fresh (warning)"' "${work}/fail.log"
if grep -q RBS-NOT-REACHED "${work}/fail.log"; then
    exit 1
fi
for kind in json csv html; do
    test -s "${work}/report-fail/balloon-stats.${kind}"
done
step fail_on_violation

# 6: issue 14's three states on real QEMU, the first audit run (report-audit), require_balloon, the gate
run 0 "${work}/audit.log" audit.yml "${common[@]}"
step audit

# 7: the same fleet again: the report's findings did not change, so nothing is changed
# (--tags: the role's phases are tags; configure and prepare are not run, gather runs its own prepare)
run 0 "${work}/audit_same.log" audit_again.yml "${common[@]}" -e rbs_expect=same --tags gather,report
grep -q 'TASK \[qmp.balloon.balloon_stats : Gather the stats of every VM of this hypervisor as the fact balloon_stats\]' "${work}/audit_same.log"
if grep -q 'TASK \[qmp.balloon.balloon_stats : Set the polling interval' "${work}/audit_same.log"; then
    exit 1
fi
grep -E -q '^hv-audit +: ok=[0-9]+ +changed=0 ' "${work}/audit_same.log"
grep -E -q '^hv-typo +: ok=[0-9]+ +changed=0 ' "${work}/audit_same.log"

# 8: s1 stopped between the runs: "since last run" names it; the HTML rendered (unknown VM not green)
"${python}" fleet.py stop "${work}" hv-audit s1
run 0 "${work}/audit_gone.log" audit_again.yml "${common[@]}" -e rbs_expect=gone -e "rbs_chromium=${chromium}"
grep -E -q '^hv-audit +: ok=[0-9]+ +changed=[1-9]' "${work}/audit_gone.log"
step audit_again

# 9: a real guest made to swap (tests/guest: a zram swap device, a tmpfs file larger than its
# memory rewritten for ever); started only now, since it keeps a core busy
"${python}" fleet.py swapper "${work}" hv-pressure sw 120
run 0 "${work}/pressure.log" pressure.yml "${common[@]}"
"${python}" fleet.py stop "${work}" hv-pressure sw
step pressure

# 10: strategy free: one report, by the last hypervisor to gather; an unreachable host's cached fact left out
run 4 "${work}/free.log" strategy_free.yml "${common[@]}"
grep -E -q '^hv1 +: .* unreachable=1 +failed=0 ' "${work}/free.log"
# exit 4 (unreachable hosts) hides a failed check: none failed
if grep -E ' failed=[1-9]' "${work}/free.log"; then
    exit 1
fi
# the report was written exactly once: of the report tasks that ran (one per hypervisor that reached
# the report), one wrote its files (rbs_module_calls records each result's files; the others found
# the report written)
grep -q 'TASK \[qmp.balloon.balloon_stats : Write the report files\]' "${work}/free.log"
test "$("${python}" -c 'import json, sys; print(len([r for r in json.load(open(sys.argv[1])) if r["files"]]))' \
      "${work}/free.reports.json")" -eq 1
step strategy_free
