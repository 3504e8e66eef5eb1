# Two commands on a fresh machine: `make run` (the study) and `make test` (the suite).
# Every target first makes sure the venv, the pinned requirements and the data exist; each of those
# steps is skipped quickly when already done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_STAMP := data/.prepared
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup data run smoke test bench

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# MNIST is required. Fashion-MNIST comes from Debian's dataset-fashion-mnist, installed here when running
# as root; otherwise the message says how to get it and the setup carries on without it.
$(DATA_STAMP): $(STAMP) gtn_core/data.py
	$(PY) -m gtn_core.data prepare --dataset mnist
	-$(PY) -m gtn_core.data prepare --dataset fashion_mnist
	touch $(DATA_STAMP)

setup: $(DATA_STAMP)

data: setup

run: setup
	$(PY) experiments/run_tasks.py $(RUN_ARGS)

smoke: setup
	$(PY) experiments/run_tasks.py --profile smoke $(RUN_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/outer_step.py
