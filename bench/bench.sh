#!/usr/bin/env bash
# make bench: bench/bench.sh [bench/run.py options], e.g. --smoke (see bench/run.py --help).
# Runs bench/run.py with the project's Python 3.11 venv when there is one; run.py itself needs only
# the standard library and makes its own bench venv (.venv/bench) for the plot and the profiler.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${ROOT}/.venv/2.19/bin/python"
if [ ! -x "${PYTHON}" ]; then
    PYTHON="$(command -v python3)"
fi
exec "${PYTHON}" "${ROOT}/bench/run.py" "$@"
