# Two commands on a fresh machine (Python 3.11+ only):
#   make demo   set up, then generate a synthetic ICB, ingest it and serve the API
#   make test   set up, then lint, type-check and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,mesh]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/ptl demo

lint: setup
	$(BIN)/ruff check ptl ingest api migrations tests bench
	$(BIN)/mypy ptl ingest api

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
