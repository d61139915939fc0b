# Two commands for users (see README): `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
CORES ?= 2
CONFIG ?= configs/default.yaml
BIN := $(abspath $(VENV))/bin
# Rules call `python -m rl ...`: put the venv first so jobs use its interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: install run test lint ui clean-ci

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install  ## the default study (configs/default.yaml) on the CPU, local sqlite MLflow
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)

test: install  ## every test, the integration and slow ones included
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/snakemake --lint --configfile configs/ci.yaml

ui: install  ## MLflow UI on the study's store (CONFIG=...)
	$(BIN)/python -m rl ui --config $(CONFIG)
