# Quick start: `make run` (serve on http://127.0.0.1:8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The project's bytecode, written ahead (pip writes it for installed packages; an editable install run with
# PYTHONDONTWRITEBYTECODE=1 would compile every project module from source at each start: ~0.3 s of a cold
# start, docs/performance.md "Cold start"). Up-to-date files are skipped; a stale one is recompiled in memory.
BYTECODE := $(BIN)/python -m compileall -q service rules hooks fhir_mappers outbound

.PHONY: run test lint venv clean check bench demo smart-app

# Installs say what they do (a fresh machine takes 1-3 min; pip prints each package it fetches)
$(STAMP): pyproject.toml
	@echo "== Installing the Python environment in $(VENV) (first time: 1-3 min)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[test,postgres,lint]'
	@$(BYTECODE) >/dev/null
	@touch $(STAMP)
	@echo "== Python environment ready"

venv: $(STAMP)

# The SMART app's browser libraries (fhirclient, Chart.js) and its test tools (playwright-core,
# axe-core), pinned in smart_app/package-lock.json; served from smart_app/node_modules, no bundler.
SMART_STAMP := smart_app/node_modules/.package-lock.json
$(SMART_STAMP): smart_app/package-lock.json
	@echo "== Installing the SMART app's libraries (npm ci in smart_app/, about 20 s)"
	cd smart_app && npm ci --no-audit --no-fund --loglevel=http
	@touch $(SMART_STAMP)

smart-app: $(SMART_STAMP)

# The SMART app's libraries need npm; without it the service still runs (the app says what is missing).
run: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory smart-app; \
	 else echo "== npm not found: the SMART app at /smart/ is unavailable until 'make smart-app' runs"; fi
	$(BIN)/azathioprine-cds serve --dev --host 127.0.0.1 --port 8080

# The storage tests run on SQLite and on a real PostgreSQL: scripts/pg-test-cluster.sh installs
# Debian's postgresql if missing (apt-get, as root), starts a throwaway cluster on a free 127.0.0.1
# port as an unprivileged user, runs pytest with AZA_TEST_POSTGRES_URL set, and removes the
# cluster afterwards, pass or fail (with CI set, PostgreSQL tests fail instead of skipping).
# scripts/nginx-install.sh installs Debian's nginx the same way, for the scale-out test (nginx in
# front of two instances, deploy/nginx.conf); the test starts nginx itself on a loopback port.
# The SMART app's browser test drives Debian's chromium (scripts/chromium.sh installs it as root).
test: $(STAMP) $(SMART_STAMP)
	bash scripts/nginx-install.sh
	bash scripts/chromium.sh install
	bash scripts/pg-test-cluster.sh run -- $(BIN)/python -m pytest

# ruff (pyflakes, pycodestyle, bugbear) and mypy, both configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

check: $(STAMP)
	@for f in $(filter-out examples/trust-%.json,$(wildcard examples/*.json)); do \
		echo "== $$f"; $(BIN)/azathioprine-cds check --today 2026-11-23 $$f; done

# The service (dev mode) and the FHIR test server with one synthetic patient per problem, on
# 127.0.0.1; prints a CDS Hooks sandbox link per patient. Ctrl-C stops both.
demo: $(STAMP) $(SMART_STAMP)
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# make bench BENCH_ARGS=--quick: a one-round smoke run; BENCH_ARGS=--no-write leaves benchmarks/RESULTS.md alone
bench: $(STAMP)
	@$(BYTECODE) >/dev/null
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
