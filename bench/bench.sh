#!/usr/bin/env bash
# make bench: bench/bench.sh [bench/run.py options], e.g. --smoke (see bench/run.py --help).
# Installs what it needs, then runs bench/run.py with the project's ansible-core 2.19 venv; run.py itself needs only
# the standard library and makes its own bench venv (.venv/bench) for the plot and the profiler.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# What it needs, as make test does (both idempotent; a fresh clone has neither): the Debian packages
# (QEMU, libvirt and libvirt-dev for libvirt-python, busybox for the guests; apt-get as root, else
# it prints the command and stops) and the ansible-core 2.19 venv the bench runs the modules with.
"${ROOT}/scripts/install-system-deps.sh" || { echo "bench: the Debian packages above are missing; nothing was run" >&2; exit 1; }
"${ROOT}/scripts/setup-venvs.sh" 2.19 || { echo "bench: could not make .venv/2.19; nothing was run" >&2; exit 1; }
PYTHON="${ROOT}/.venv/2.19/bin/python"
if [ ! -x "${PYTHON}" ]; then
    PYTHON="$(command -v python3)"
fi
exec "${PYTHON}" "${ROOT}/bench/run.py" "$@"
