# Entry points. `make demo` and `make test` work on a fresh machine: they create .venv, install the
# Python packages and, where missing, the PostgreSQL and MariaDB server packages.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)
	bash scripts/install-db-servers.sh

demo: setup
	$(BIN)/rotation demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
