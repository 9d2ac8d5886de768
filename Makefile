# Build and test entry points; the work is done by the scripts in scripts/.
# "make test" runs every suite and ends with "N passed, M failed".
# Single suites: make sanity-2.21, make units-py3.9, make integration-2.19, ...
# The suites and their groups are listed once, in scripts/run-tests.sh (SUITES, SUITE_GROUPS).

SHELL := /bin/bash
RUN := scripts/run-tests.sh

SUITES := $(shell $(RUN) --list)
GROUPS := $(shell $(RUN) --list-groups)

.PHONY: help venv deps test clean demo bench $(GROUPS) $(SUITES)

help:
	@echo "make deps            install missing Debian packages (root)"
	@echo "make venv            create the pinned venvs in .venv/ (scripts/setup-venvs.sh --help lists them)"
	@echo "make $(subst $() ,|,$(GROUPS))   each group's suites: GROUP-* (one per ansible-core: $(patsubst sanity-%,%,$(filter sanity-%,$(SUITES))))"
	@echo "make lint|build-check|changelog-lint   ansible-lint; build, install and ansible-doc; antsibull-changelog lint"
	@echo "make ee-check        ansible-builder: the example EE of docs/awx and the collection's EE requirements"
	@echo "make galaxy-importer the import checks of Galaxy / Automation Hub (both use .venv/ee)"
	@echo "make test            all of the suites; summary and 'N passed, M failed'"
	@echo "make demo            boot three throwaway guests, run the role, print the stats and the report path"
	@echo "make bench           the benchmark (docs/performance.md); bench-smoke: tiny sizes, part of make test"
	@echo "make clean           remove build/ and tests/output/"
	@echo "single suites:       $(SUITES)"

venv:
	scripts/setup-venvs.sh

deps:
	scripts/install-system-deps.sh

$(GROUPS) $(SUITES):
	$(RUN) $@

test:
	$(RUN) all

demo:
	scripts/demo.sh

bench:
	bench/bench.sh

clean:
	rm -rf build tests/output
