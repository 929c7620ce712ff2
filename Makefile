PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-all lint demo schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python  ## editable install with every extra and the dev tools
	$(BIN)/python -m pip install -q -e ".[all,dev]"

test: install  ## the test suite (Docker tests run when a daemon is reachable)
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check runner tests
	$(BIN)/ruff format --check runner tests || true
	$(BIN)/mypy runner

demo: install  ## the quickstart sweep on a local Dask cluster
	$(BIN)/xrun specs/quickstart.yaml

schema: install  ## regenerate schema/spec-v1.json
	$(BIN)/python -m runner.schema > schema/spec-v1.json

clean:
	rm -rf runs .pytest_cache build *.egg-info
