# raygen: two commands to know, `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
RUNTIME := $(VENV)/.installed

.PHONY: demo test test-slow lerobot-venv lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(RUNTIME): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $(RUNTIME)

## demo: create .venv, install, run the main job on the embedded default
demo: $(RUNTIME)
	$(VENV)/bin/raygen run configs/pick_place_local.yaml

## test: create .venv, install with dev extras, run the test suite (CPU, no GPU)
test: $(STAMP)
	$(PY) -m pytest -q

## test-slow: the slower checks too (run before stopping)
test-slow: $(STAMP)
	$(PY) -m pytest -q -m "not gpu"

## lerobot-venv: a CPU-only lerobot 0.4.4 at /tmp/lerobot-venv, used by the slow compat tests
lerobot-venv:
	VENV=/tmp/lerobot-venv bash tools/lerobot_venv.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check raygen tests

bench: $(STAMP)
	$(VENV)/bin/raygen bench writer

clean:
	rm -rf out .pytest_cache
