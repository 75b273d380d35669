# pmops: `make run` starts the service, `make test` runs the suite. Both set everything up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-deps run test check lint format typecheck bench reliability clean

# system-deps on every setup (a cheap check): a package added to SYSTEM_PACKAGES reaches machines
# whose venv is already installed
setup: system-deps $(STAMP)

# graphviz draws the process map; poppler-utils (pdftotext, pdfinfo, pdftoppm) lets the tests read
# and render the PDFs; chromium and chromium-driver let a test look at the results page in a real
# browser; fonts-ipaexfont-gothic is the TrueType Japanese (CJK) font the PDF embeds and the charts
# and map draw with (analysis/fonts.py); librsvg2-bin (rsvg-convert) turns an earlier analysis's
# map SVG into the picture of a ReportGeneration. Installed from Debian's packages when we are root
# and they are missing.
SYSTEM_PACKAGES = graphviz poppler-utils chromium chromium-driver fonts-ipaexfont-gothic librsvg2-bin
CJK_FONT_FILE = /usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf
system-deps:
	@{ command -v dot && command -v pdftotext && command -v pdftoppm && command -v chromium && command -v chromedriver && command -v rsvg-convert && test -f $(CJK_FONT_FILE); } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null)); \
	  else echo "missing: install $(SYSTEM_PACKAGES) (e.g. apt-get install $(SYSTEM_PACKAGES))"; exit 1; fi; }

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/pmops up

test: setup
	$(BIN)/pytest -n 2 --dist loadgroup --durations=25

# ruff, then the layer contract of pyproject.toml's [tool.importlinter] (docs/architecture.md)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# mypy --strict on every package (pyproject.toml's [tool.mypy]: strict = true, files = all packages)
typecheck: setup
	$(BIN)/mypy

check: lint typecheck

# Every bench script RUNS times, then BENCHMARKS.md regenerated (bench/run_all.py, bench/README.md);
# `make bench RUNS=1 ONLY=webhooks,list` reruns a subset, SKIP=load leaves one out; the sections
# not rerun are kept with their own dates.
RUNS ?= 3
ONLY ?=
SKIP ?=
bench: setup
	$(BIN)/python bench/run_all.py --runs $(RUNS) $(if $(ONLY),--only $(ONLY)) $(if $(SKIP),--skip $(SKIP))

# The fault and security suites RELIABILITY_RUNS times, then RELIABILITY.md from what happened
# (failures included: the document is written either way; the target fails if a test did).
RELIABILITY_RUNS ?= 1
RELIABILITY_LOG := .reliability/results.jsonl
# fuzzed files per loader strategy (tests/analysis/test_fuzz_loader.py: 5 strategies, so 10,000+
# inputs; a tenth of it uploaded through the app); `make test` runs 25 of each
FUZZ_EXAMPLES ?= 2000
# the abuse drills of issue #16 at full size (tests/stack/test_abuse.py, tests/service/
# test_cancel_race.py); `make test` runs them small
CANCEL_RACES ?= 50
CANCEL_RACES_IN_PROCESS ?= 1000
FLOOD_OPERATIONS ?= 2000
# POST starts per client (10 clients) in the API-killed-mid-burst test (make test: 6)
BURST_PER_CLIENT ?= 20

reliability: setup
	@rm -f $(RELIABILITY_LOG); status=0; \
	for run in $$(seq 1 $(RELIABILITY_RUNS)); do \
	  PMOPS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) PMOPS_CANCEL_RACES=$(CANCEL_RACES) \
	  PMOPS_CANCEL_RACES_IN_PROCESS=$(CANCEL_RACES_IN_PROCESS) PMOPS_FLOOD_OPERATIONS=$(FLOOD_OPERATIONS) \
	  PMOPS_BURST_PER_CLIENT=$(BURST_PER_CLIENT) \
	  $(BIN)/python -m pytest -n 2 --dist loadgroup -m "fault or security" -p tests.reliability \
	    --reliability-log $(RELIABILITY_LOG) --reliability-run $$run || status=1; \
	done; \
	$(BIN)/python -m tests.reliability $(RELIABILITY_LOG) RELIABILITY.md \
	  --command "make reliability RELIABILITY_RUNS=$(RELIABILITY_RUNS)" || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
