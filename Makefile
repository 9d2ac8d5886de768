# Build and test entry points; the work is done by the scripts in scripts/.
# "make test" runs every suite and ends with "N passed, M failed".
# Single suites: make sanity-2.21, make units-py3.9, make integration-2.19, ...

SHELL := /bin/bash
RUN := scripts/run-tests.sh

SUITES := sanity-2.16 sanity-2.19 sanity-2.21 units-2.16 units-2.19 units-2.21 units-py3.9 \
          integration-2.16 integration-2.19 integration-2.21 \
          ee-check galaxy-importer

.PHONY: help venv deps sanity units integration lint build-check changelog-lint test clean demo bench bench-smoke $(SUITES)

help:
	@echo "make deps            install missing Debian packages (root)"
	@echo "make venv            create the pinned venvs in .venv/ (scripts/setup-venvs.sh --help lists them)"
	@echo "make sanity|units|integration|lint|build-check|changelog-lint   (ansible-core 2.16, 2.19, 2.21)"
	@echo "make ee-check        ansible-builder: the example EE of docs/awx and the collection's EE requirements"
	@echo "make galaxy-importer the import checks of Galaxy / Automation Hub (both use .venv/ee)"
	@echo "make test            all of the above; summary and 'N passed, M failed'"
	@echo "make demo            boot three throwaway guests, run the role, print the stats and the report path"
	@echo "make bench           the benchmark (docs/performance.md); bench-smoke: tiny sizes, part of make test"
	@echo "make clean           remove build/ and tests/output/"
	@echo "single suites:       $(SUITES)"

venv:
	scripts/setup-venvs.sh

deps:
	scripts/install-system-deps.sh

sanity units integration lint build-check changelog-lint $(SUITES):
	$(RUN) $@

test:
	$(RUN) all

demo:
	scripts/demo.sh

bench:
	bench/bench.sh

bench-smoke:
	bench/bench.sh --smoke

clean:
	rm -rf build tests/output
