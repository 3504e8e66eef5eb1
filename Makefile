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
BOARD_ARGS ?=
OMNIBOARD_STAMP := tools/omniboard/node_modules/.installed
DEBIAN_TOOLS := chromium docker-compose
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup data run smoke test bench board stack-tools debian-tools

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

# The tracking tests' tools. Omniboard at the versions of its lock file (~530 MB from npm), also for `make board`;
# from Debian, headless Chromium (the browser check) and docker-compose (validates sacred/docker-compose.yml with
# no Docker engine), installed here when running as root (as in CI), otherwise the message says how.
# Without Omniboard or Chromium those tests skip, and fail when CI is set.
$(OMNIBOARD_STAMP): tools/omniboard/package.json tools/omniboard/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tools/omniboard --no-audit --no-fund && touch $@; \
	else echo "npm is missing (apt-get install nodejs npm): Omniboard is not installed"; fi

debian-tools:
	-@missing=$$(for tool in $(DEBIAN_TOOLS); do command -v $$tool >/dev/null || echo $$tool; done); \
	if [ -z "$$missing" ]; then :; elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "missing:" $$missing "(sudo apt-get install" $$missing"): the tests that need them skip"; fi

stack-tools: $(OMNIBOARD_STAMP) debian-tools

# Ray is optional for users (run_tasks.py --ray says how to get it) but installed for the suite's Ray test.
$(TEST_STAMP): requirements-test.txt $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -r requirements-test.txt
	touch $(TEST_STAMP)

test: setup stack-tools $(TEST_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Docker-free tracking stack: SecantusDB + Omniboard on 127.0.0.1 (BOARD_ARGS="--port 9001" etc.); Ctrl-C stops it.
board: setup $(OMNIBOARD_STAMP)
	$(PY) experiments/board.py $(BOARD_ARGS)

bench: setup
	$(PY) bench/outer_step.py

# The analysis report: runs analysis/curriculum_results.ipynb headless on the study's store and exports HTML
# (figures in analysis/figures/, page in analysis/report.html). REPORT_ARGS="--runs-dir DIR" or "--mongo URL".
REPORT_ARGS ?=
.PHONY: report
report: setup
	$(PY) analysis/make_report.py $(REPORT_ARGS)

# The README's headline figures (docs/figures/) from the study stores that exist, in this order (the first store
# that makes a figure gives it): those kept in git (bench/stores/: records, metrics and pictures, no .pt files),
# then those of this machine (bench/out/).
FIGURE_STORES ?= $(wildcard bench/stores/goodai bench/out/goodai bench/out/paper_studies bench/out/willis bench/out/nas_gan bench/stores/strength bench/out/strength)
.PHONY: figures
figures: setup
	@if [ -z "$(FIGURE_STORES)" ]; then echo "no study store under bench/stores/ or bench/out/ (goodai, paper_studies, willis, nas_gan, strength): run the studies or set FIGURE_STORES"; exit 1; fi
	$(PY) analysis/publish_figures.py $(FIGURE_STORES)
	$(PY) analysis/publish_figures.py --dataset fashion_mnist $(FIGURE_STORES)
