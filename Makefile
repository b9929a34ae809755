# Two set-up commands on a fresh machine with python3 and make: `make demo` and `make test`.
# Installs go through uv from the committed uv.lock, so CI, developers and users get the same versions.
# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (containers, CI) every command would
# otherwise compile its imports from source each run (a cold `mediaembed search`: ~3.4 s instead of ~1.7 s).
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dg checks that the venv it runs in is the project's: say so, as an activated .venv would.
DG := VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg

.PHONY: demo test check dev lint typecheck unit lock clean browser postgres docs

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --extra dev --quiet --compile-bytecode
	touch $(STAMP)

## Install, start the emulators, generate sample media, run the pipeline, print sample searches.
demo: $(STAMP)
	$(BIN)/mediaembed demo

## Install and run every check CI runs: lint, types, definitions, every test lane.
test: $(STAMP) lint typecheck browser postgres
	$(DG) check defs
	$(BIN)/pytest -q -n 2 --dist loadfile

## The fast lane while developing: lint, types, definitions and the tests not marked slow.
check: $(STAMP) lint typecheck
	$(DG) check defs
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not slow"

## Debian's chromium for tests/browser, where the machine allows it (root with apt-get); never fails the build:
## without it those tests skip with the reason.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } \
		|| echo "chromium could not be installed: the browser tests will skip (apt-get install chromium as root)"; \
	fi

## Debian's PostgreSQL for the Postgres-backed instance tests (tests/postgres.py starts its own server from
## /usr/lib/postgresql/*/bin), where the machine allows it (root with apt-get); never fails the build:
## without it those tests skip with the reason, and fail where CI is set.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1; } \
		|| echo "postgresql could not be installed: the Postgres tests will skip, or fail where CI is set (apt-get install postgresql as root)"; \
	fi

## The local stack plus the Dagster UI on http://127.0.0.1:3000.
dev: $(STAMP)
	$(BIN)/mediaembed dev

## Regenerate the settings table of docs/configuration.md from pipelines/settings.py.
docs: $(STAMP)
	$(BIN)/python -m pipelines.settings docs/configuration.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## Re-resolve the lock file after changing dependencies in pyproject.toml.
lock: $(UV)
	$(UV) lock

clean:
	rm -rf .local test-artifacts
