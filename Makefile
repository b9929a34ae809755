# Two set-up commands on a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test dev lint typecheck unit clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Install, start the emulators, generate sample media, run the pipeline, print sample searches.
demo: $(STAMP)
	$(BIN)/mediaembed demo

## Install and run every check CI runs: lint, types, definitions, tests.
test: $(STAMP) lint typecheck
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/pytest -q

## The local stack plus the Dagster UI on http://127.0.0.1:3000.
dev: $(STAMP)
	$(BIN)/mediaembed dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf .local
