#!/usr/bin/env bash
# The role's export entry point, read back by a real node_exporter and a real Prometheus.
# Three VMs in WORK/vms (stack.py vms-start): g1 a real Linux guest, n1 a QEMU without a guest
# OS (no stats at all), dead a monitor socket whose QEMU was killed. Runs:
#   1 export.yml    main with balloon_stats_export_textfile: configure, gather, export        (exit 0)
#     promtool check metrics on the file; node_exporter + Prometheus started; stack.py check
#     compares Prometheus' HTTP API with the role's fact (what balloon_stats_info read)
#   2-6 changed.yml tasks_from export over n1 and dead: changed, then not (but rewritten),
#     check mode (changed, nothing written), mode repaired, check mode again (not changed)
#   7 errors.yml    a missing directory, a name without .prom: one sentence each            (exit 0)
#   8 rewrite.yml   a gather, then 50 exports of the fact (with and without n1 in turn) while stack.py
#     scrape reads node_exporter in a loop; stack.py torn
#     first shows that the scrape check does catch a non-atomic writer
# Every QEMU, node_exporter and Prometheus started here is stopped on exit, by PID.
set -eux -o pipefail

start=${SECONDS}
timings=()
step() {
    timings+=("$1 $((SECONDS - start))s")
    start=${SECONDS}
}

python=$(command -v python3 || command -v python)

if ! command -v qemu-system-x86_64 >/dev/null || ! compgen -G '/boot/vmlinuz-*-cloud-amd64' >/dev/null; then
    echo "SKIPPED: prometheus_export: needs qemu-system-x86_64 and /boot/vmlinuz-*-cloud-amd64 to boot a real guest;" \
         "0 cases ran. Install them with: apt-get install -y qemu-system-x86 linux-image-cloud-amd64 busybox-static kmod"
    exit 0
fi
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v prometheus-node-exporter >/dev/null; then
    echo "SKIPPED: prometheus_export: needs prometheus, promtool and prometheus-node-exporter; 0 cases ran." \
         "Install them with: apt-get install -y prometheus prometheus-node-exporter"
    exit 0
fi

# Unix socket paths must stay under 108 bytes: a short private directory under /tmp.
work=$(mktemp -d /tmp/pe.XXXXXX)
mkdir -p "${work}/textfile"
cleanup() {
    status=$?
    set +e
    touch "${work}/rewrites.done"
    [ -n "${scraper:-}" ] && wait "${scraper}"
    "${python}" stack.py stop "${work}"
    "${python}" stack.py vms-stop "${work}"
    if [ "${status}" -ne 0 ]; then
        for log in "${work}"/*.log "${work}"/vms/*.log; do
            [ -f "${log}" ] && echo "--- ${log}" && tail -n 8 "${log}"
        done
    fi
    if [ -n "${PE_KEEP:-}" ]; then
        echo "prometheus_export: kept ${work}"
    else
        rm -rf "${work}"
    fi
    echo "prometheus_export: ${timings[*]:-} (total ${SECONDS}s, exit ${status})"
}
trap cleanup EXIT

export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1 ANSIBLE_PIPELINING=1
common=(-i inventory.yml -e "pe_dir=${work}" "$@")

# play LOG PLAYBOOK [ARGS...]: run a playbook (must succeed), keep its output in LOG
play() {
    local log=$1
    shift
    ansible-playbook "$@" 2>&1 | tee "${log}"
}
# changed_count LOG: the "changed=" of hv1 in the recap
changed_count() {
    sed -n 's/^hv1 .* changed=\([0-9]*\) .*/\1/p' "$1"
}

"${python}" stack.py vms-start "${work}"
# node_exporter and Prometheus start while the guest boots
"${python}" stack.py start "${work}"
"${python}" stack.py vms-wait "${work}"
step boot

# 1: main with the export; the file is valid for promtool; Prometheus shows what the role read
play "${work}/export.log" export.yml "${common[@]}"
promtool check metrics < "${work}/textfile/qmp_balloon.prom"
"${python}" stack.py check "${work}" "${work}/fact.json"
step export_and_prometheus

# 2-6: changed only when the text changed apart from the collection time; check mode
stable="${work}/textfile/stable.prom"
play "${work}/changed1.log" changed.yml "${common[@]}"
[ "$(changed_count "${work}/changed1.log")" = 1 ]
[ "$(stat -c %a "${stable}")" = 644 ]
first_inode=$(stat -c %i "${stable}")
cp "${stable}" "${work}/stable.first"
sleep 1.1   # the collection time has a resolution of one second
play "${work}/changed2.log" changed.yml "${common[@]}"
[ "$(changed_count "${work}/changed2.log")" = 0 ]
# rewritten all the same (a new file, renamed over the old one), with a new collection time only
[ "$(stat -c %i "${stable}")" != "${first_inode}" ]
diff <(grep -v '^qmp_balloon_collected_timestamp_seconds[{ ]' "${work}/stable.first") \
     <(grep -v '^qmp_balloon_collected_timestamp_seconds[{ ]' "${stable}")
if cmp -s "${work}/stable.first" "${stable}"; then
    exit 1
fi
grep -q '^qmp_balloon_up{hypervisor="hv1",vm="dead"} 0$' "${stable}"
grep -q '^qmp_balloon_health{hypervisor="hv1",vm="n1",state="driver_not_loaded"} 1$' "${stable}"
# check mode: a wrong mode is a change to make, and nothing is written
chmod 0600 "${stable}"
cp "${stable}" "${work}/stable.before-check"
play "${work}/changed3.log" changed.yml "${common[@]}" --check
[ "$(changed_count "${work}/changed3.log")" = 1 ]
grep -q 'would write .*/stable.prom (2 VMs)' "${work}/changed3.log"
[ "$(stat -c %a "${stable}")" = 600 ]
cmp "${work}/stable.before-check" "${stable}"
play "${work}/changed4.log" changed.yml "${common[@]}"
[ "$(changed_count "${work}/changed4.log")" = 1 ]
[ "$(stat -c %a "${stable}")" = 644 ]
play "${work}/changed5.log" changed.yml "${common[@]}" --check
[ "$(changed_count "${work}/changed5.log")" = 0 ]
[ -z "$(find "${work}/textfile" -name '.*')" ]
step changed_and_check_mode

# 7: bad input
play "${work}/errors.log" errors.yml "${common[@]}"
if grep -q PE-NOT-REACHED "${work}/errors.log"; then
    exit 1
fi
step errors

# 8: atomicity. First prove that the scrape check sees a torn file, then 50 real rewrites.
# The rewrites are the same rename(2) on every ansible-core: 50 on the newest (2.20+), 10 on the
# older ones, which keeps make test (three ansible-core versions) within its time budget.
# PE_REWRITES overrides.
core=$("${python}" -c 'import ansible.release as r; print(".".join(r.__version__.split(".")[:2]))')
case "${core}" in
    2.1[0-9]) rewrites=${PE_REWRITES:-10} ;;
    *) rewrites=${PE_REWRITES:-50} ;;
esac
"${python}" stack.py torn "${work}"
"${python}" stack.py scrape "${work}" "${work}/rewrites.done" > "${work}/scrape.out" &
scraper=$!
play "${work}/rewrite.log" rewrite.yml "${common[@]}" -e "pe_rewrites=${rewrites}"
touch "${work}/rewrites.done"
wait "${scraper}"
scraper=
cat "${work}/scrape.out"
# the rewrites happened: one rename each, each changed (every other one without n1)
[ "$(grep -c 'TASK \[qmp.balloon.balloon_stats : Replace the textfile with it in one rename\]' "${work}/rewrite.log")" = "${rewrites}" ]
[ "$(changed_count "${work}/rewrite.log")" = "${rewrites}" ]
# Prometheus scraped through all of it without a textfile error
[ "$("${python}" -c 'import json, sys; print(json.load(sys.stdin)["bad"])' < "${work}/scrape.out")" = 0 ]
# and Prometheus' own scrapes over the whole run: never a textfile error, never fewer than 3 VMs
"${python}" stack.py history "${work}"
step atomicity
