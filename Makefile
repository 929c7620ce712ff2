PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt

.PHONY: install install-core test lint demo schema docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install-core: $(BIN)/python  ## xrun itself (enough for local runs)
	$(PIP) -e .

install: $(BIN)/python  ## editable install with every extra and the dev tools
	$(PIP) -e ".[all,dev]"

test: install  ## the test suite (Docker and browser tests run when available; required with CI=true)
	$(BIN)/python -m pytest -q

lint: install  ## ruff, mypy, and the import layering of docs/architecture.md (lint-imports)
	$(BIN)/ruff check runner tests
	$(BIN)/mypy runner
	$(BIN)/lint-imports

demo: install-core  ## the quickstart sweep on a local Dask cluster
	$(BIN)/xrun specs/quickstart.yaml

schema: install-core  ## regenerate schema/spec-v1.json and docs/spec-reference.md
	$(BIN)/python -m runner.schema > schema/spec-v1.json
	$(BIN)/python -m runner._docgen > docs/spec-reference.md

bench: install  ## benchmarks against plain Dask and scikit-learn; writes bench/RESULTS.md
	$(BIN)/python bench/run.py

clean:
	rm -rf runs .pytest_cache build *.egg-info
