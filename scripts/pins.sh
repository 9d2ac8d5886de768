# shellcheck shell=bash
# shellcheck disable=SC2034  # every name here is read by the scripts that source this file
# The one home of the tool versions that the scripts install. Plain NAME=VALUE lines, nothing
# else (no quotes, no expansions): the shell scripts source this file (scripts/setup-venvs.sh,
# scripts/run-tests.sh, scripts/demo.sh), scripts/ee-check.py and bench/run.py read the lines.
# Package pins of the collection itself are in requirements/*.txt, those of the test tools in
# tests/requirements-*.txt, every indirect dependency in tests/constraints*.txt.
# A venv is rebuilt when this file changes (setup-venvs.sh and demo.sh hash it; bench/run.py
# hashes the ansible-core version it installs).

# ansible-core of the test venvs .venv/2.16, .venv/2.19 and .venv/2.21 (.venv/lint and .venv/ee
# use the 2.21 one; make demo and the bench venv the 2.19 one).
ANSIBLE_CORE_2_16=2.16.19
ANSIBLE_CORE_2_19=2.19.14
ANSIBLE_CORE_2_21=2.21.5
# The controller Python (pyenv minor version) of each of those venvs.
PYTHON_2_16=3.12
PYTHON_2_19=3.11
PYTHON_2_21=3.13
# pip in every venv that setup-venvs.sh makes.
PIP=25.2
