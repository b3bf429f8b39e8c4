# phirm-scale developer commands.  `make test` and `make demo` install what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0

.PHONY: install test lint slurm-up slurm-down demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned first so the package's torch range never pulls a multi-GB CUDA build;
# GPU users install their own CUDA torch and then `pip install -e .`.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The tests marked `slurm` run real jobs on a single-node SLURM on this machine
# (scripts/slurm-local-up installs and starts it; they are skipped, with the reason, only
# where the packages cannot be installed).
# pytest-xdist: one test process per core (at most 4); the SLURM tests share one of them
# (tests/conftest.py). `make test PYTEST_N=0` runs them in one process.
PYTEST_N ?= auto
test: install
	-scripts/slurm-local-up
	$(BIN)/python -m pytest -q -n $(PYTEST_N) --maxprocesses 4 --dist loadgroup tests

# ruff (lint + format) and mypy, configured in pyproject.toml; the same checks as the
# pre-commit hooks (.pre-commit-config.yaml). The Python sources only: the README's examples
# are aligned by hand.
LINT_PATHS := phirm_scale tests benchmarks scripts
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

slurm-up:
	scripts/slurm-local-up

slurm-down:
	scripts/slurm-local-down

demo: install
	$(BIN)/phirm-scale demo

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
