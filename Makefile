# Quick start: `make run` (serve on http://127.0.0.1:8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint venv clean check bench demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,lint]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/azathioprine-cds serve --dev --host 127.0.0.1 --port 8080

# The storage tests run on SQLite and on a real PostgreSQL: scripts/pg-test-cluster.sh installs
# Debian's postgresql if missing (apt-get, as root), starts a throwaway cluster on a free 127.0.0.1
# port as an unprivileged user, runs pytest with AZA_TEST_POSTGRES_URL set, and removes the
# cluster afterwards, pass or fail (with CI set, PostgreSQL tests fail instead of skipping).
# scripts/nginx-install.sh installs Debian's nginx the same way, for the scale-out test (nginx in
# front of two instances, deploy/nginx.conf); the test starts nginx itself on a loopback port.
test: $(STAMP)
	bash scripts/nginx-install.sh
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
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
