# Quick start: `make run` (serve on http://127.0.0.1:8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test venv clean check bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/azathioprine-cds serve --dev --host 127.0.0.1 --port 8080

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	@for f in examples/*.json; do echo "== $$f"; $(BIN)/azathioprine-cds check --today 2026-11-23 $$f; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

.PHONY: bench
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
