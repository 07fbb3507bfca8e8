# One-command set-up and test. Everything installs into .venv in the checkout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint format train clean

# CPU install: the shim satisfies torchrec's `fbgemm-gpu` requirement with fbgemm-gpu-cpu (see README).
$(VENV)/.installed: pyproject.toml tools/fbgemm-gpu-cpu-shim/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet ./tools/fbgemm-gpu-cpu-shim
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# mypy checks smes_rec/ ([tool.mypy] in pyproject.toml: strict for modules/ and metrics/).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest

# The main job: SMES on the built-in synthetic data, 2 CPU processes; prints validation AUC/GAUC per task.
RUN_DIR ?= runs/smes_synthetic/$(shell date +%Y%m%d-%H%M%S)
train: setup
	OMP_NUM_THREADS=1 $(BIN)/torchrun --nproc_per_node 2 apps/train.py --config configs/smes_synthetic.yaml \
		--set output_dir=$(RUN_DIR)

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
