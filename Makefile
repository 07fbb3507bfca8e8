# One-command set-up and test. Everything installs into .venv in the checkout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint format train bench clean

# CPU install: the shim satisfies torchrec's `fbgemm-gpu` requirement with fbgemm-gpu-cpu (see README).
$(VENV)/.installed: pyproject.toml tools/fbgemm-gpu-cpu-shim/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet ./tools/fbgemm-gpu-cpu-shim
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
