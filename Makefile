# raygen: two commands to know, `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
RUNTIME := $(VENV)/.installed

.PHONY: demo test test-slow lerobot-venv robomimic-venv lint bench clean

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

## robomimic-venv: robomimic 0.3.0 on CPU torch at /tmp/robomimic-venv, for the slow HDF5 export test
## (tests/hdf5/test_robomimic.py opens raygen's export with robomimic's own SequenceDataset). robomimic's
## declared needs pull torchvision (CUDA), egl_probe (a cmake build), tensorboard and matplotlib, none of
## which robomimic.utils.dataset imports: install it without them, then what the loader does import.
ROBOMIMIC_VENV ?= /tmp/robomimic-venv
robomimic-venv:
	python3 -m venv $(ROBOMIMIC_VENV)
	$(ROBOMIMIC_VENV)/bin/pip install -q torch==2.13.0  # the local CPU wheel (pip's find-links), not CUDA
	$(ROBOMIMIC_VENV)/bin/pip install -q --no-deps robomimic==0.3.0
	$(ROBOMIMIC_VENV)/bin/pip install -q numpy h5py tqdm termcolor
	$(ROBOMIMIC_VENV)/bin/python -c "import torch, robomimic, robomimic.utils.dataset; print('robomimic', robomimic.__version__, 'torch', torch.__version__)"

lint: $(STAMP)
	$(VENV)/bin/ruff check raygen tests

bench: $(STAMP)
	$(VENV)/bin/raygen bench writer

clean:
	rm -rf out .pytest_cache
