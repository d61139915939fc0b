# Two commands for users (see README): `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
CORES ?= 2
CONFIG ?= configs/default.yaml
BIN := $(abspath $(VENV))/bin
# The venv first on PATH: its snakemake, and the interpreter the rules run `-m rl` with.
export PATH := $(BIN):$(PATH)

.PHONY: install run test test-unit test-workflow test-system lint ui tracking-server clean-ci bench bench-quick figures reference

# The training image (docs/containers.md). ENGINE: docker when installed, else podman.
ENGINE ?= $(shell command -v docker >/dev/null 2>&1 && echo docker || echo podman)
IMAGE ?= localhost/rl-pipeline:latest
TORCH_CHANNEL ?= pypi
# PIP_INDEX=none: every other wheel from containers/wheels/ too (an offline build, docs/containers.md)
PIP_INDEX ?= pypi
SIF ?= build/rl-pipeline.sif
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
SOURCE ?= $(shell git remote get-url origin 2>/dev/null || echo unknown)
# Behind a TLS-intercepting proxy pip in the build needs the host's CA bundle (a build secret).
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
comma := ,

.PHONY: image sif gpu-wheels

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[test,warp]"
	touch $@

install: $(VENV)/.installed

run: install  ## the default study (configs/default.yaml) on the CPU, local sqlite MLflow
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)

# The tests in three tiers (docs/testing.md), on TEST_WORKERS pytest-xdist processes.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS)
test: install  ## every tier: unit, workflow and system (what CI runs)
	$(PYTEST) tests

test-unit: install  ## the fast tier: in-process checks, no workflow run, service or container
	$(PYTEST) tests/unit

test-workflow: install  ## real snakemake runs of small configs, resume, kill and bad-input tests
	$(PYTEST) tests/workflow

test-system: install  ## the image (podman), SLURM, the PostgreSQL tracking server, Chromium
	$(PYTEST) tests/system

# Benchmarks (not tests): ours beside the tutorials in benchmarks/baselines (kept unchanged;
# BASELINES=... for another copy), same run, medians.
BASELINES ?= benchmarks/baselines
bench-quick: install  ## ~10 min: PPO plumbing speed vs the tutorial, the physics limit and one seed of configs/fast.yaml to 9,100, pendulum speed; latest.json
	$(BIN)/python benchmarks/ppo_bench.py quick --frames 20000 --baseline $(BASELINES)

bench: install  ## ~40 min on 2 cores: + time-to-9,100 over 5 seeds of configs/fast.yaml on 1M-frame budgets, their 20 fresh episodes at the end, figure
	$(BIN)/python benchmarks/ppo_bench.py full --seeds 5 --budget-frames 1003520 --baseline $(BASELINES)

# snakefmt at ruff's line length (pyproject.toml [tool.ruff]); tests/unit/test_workflow_lint.py too
RULES_LINE_LENGTH := $(shell sed -n 's/^line-length = //p' pyproject.toml)
lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/snakefmt --check --line-length $(RULES_LINE_LENGTH) Snakefile workflow/
	$(BIN)/snakemake --lint --configfile configs/ci.yaml

# The committed reference result the README's figures come from (tidy per-seed tables).
REFERENCE ?= reference/paper
STUDY ?= paper

figures: install  ## rebuild the statistics and figures from $(REFERENCE)'s tables (no training)
	$(BIN)/python -m rl figures --from $(REFERENCE)

reference: install  ## copy results/$(STUDY)'s tables, figures and provenance to reference/$(STUDY)
	$(BIN)/python -m rl export-reference --config results/$(STUDY)/config.yaml --to reference/$(STUDY)

# A team's MLflow: PostgreSQL + mlflow server with artifacts (docs/tracking.md); Ctrl-C stops it.
TRACKING_DIR ?= results/tracking-server
TRACKING_PORT ?= 5000
tracking-server: install  ## PostgreSQL-backed MLflow server on 127.0.0.1:$(TRACKING_PORT), data in $(TRACKING_DIR)
	$(BIN)/python -m rl tracking-server --dir $(TRACKING_DIR) --port $(TRACKING_PORT)

ui: install  ## MLflow UI on the study's store (CONFIG=...)
	$(BIN)/python -m rl ui --config $(CONFIG)

image:  ## build the training image (PyPI's CUDA torch) with $(ENGINE): IMAGE=..., TORCH_CHANNEL=..., PIP_INDEX=...
	$(ENGINE) build -f containers/Dockerfile -t $(IMAGE) \
	  --build-arg TORCH_CHANNEL=$(TORCH_CHANNEL) --build-arg PIP_INDEX=$(PIP_INDEX) \
	  --build-arg VERSION=$(VERSION) \
	  --build-arg VCS_REF=$$(git rev-parse HEAD) --build-arg SOURCE=$(SOURCE) \
	  $(if $(CA_BUNDLE),--secret id=ca_bundle$(comma)src=$(CA_BUNDLE)) .

# Wheels for a GPU machine that reaches no registry (docs/benchmarks.md, "The GPU check"):
# cp$(subst .,,$(GPU_PYTHON)) manylinux wheels of what its image lacks into $(GPU_WHEELS)/
# (git-ignored), warp-lang's cut into parts that one call to the machine can carry.
# GPU_PYTHON=3.11 GPU_WHEELS=.whl-rehearsal: the wheels of the rehearsal on this CPU.
GPU_PYTHON ?= 3.12
GPU_WHEELS ?= .whl
gpu-wheels: install  ## wheels for benchmarks/gpu_check.sh into $(GPU_WHEELS)/ (GPU_PYTHON=3.12)
	$(BIN)/python benchmarks/gpu_wheels.py download --python-version $(GPU_PYTHON) --dest $(GPU_WHEELS)

sif:  ## convert the image of `make image` to an Apptainer SIF ($(SIF)); needs apptainer
	mkdir -p $(dir $(SIF))
ifeq ($(ENGINE),docker)
	apptainer build --force --build-arg IMAGE=$(IMAGE) $(SIF) containers/rl-pipeline.def
else
	$(ENGINE) save --format docker-archive -o $(SIF).tar $(IMAGE)
	apptainer build --force $(SIF) docker-archive:$(SIF).tar
	rm -f $(SIF).tar
endif
