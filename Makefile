# pmops: `make run` starts the service, `make test` runs the suite. Both set everything up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-deps run test check lint format typecheck bench clean

setup: $(STAMP)

# graphviz draws the process map; poppler-utils (pdftotext, pdfinfo, pdftoppm) lets the tests read
# and render the PDFs; chromium and chromium-driver let a test look at the results page in a real
# browser. Installed from Debian's packages when we are root and they are missing.
SYSTEM_PACKAGES = graphviz poppler-utils chromium chromium-driver
system-deps:
	@{ command -v dot && command -v pdftotext && command -v pdftoppm && command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
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
	$(BIN)/pytest -n 2 --dist loadgroup

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy analysis api pmops

check: lint typecheck test

# Every bench script RUNS times, then BENCHMARKS.md regenerated (bench/run_all.py, bench/README.md);
# `make bench RUNS=1 ONLY=webhooks,list` reruns a subset and keeps the other sections.
RUNS ?= 3
ONLY ?=
bench: setup
	$(BIN)/python bench/run_all.py --runs $(RUNS) $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
