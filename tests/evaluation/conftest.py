"""Fixtures: one tiny trained run per test session, shared (read-only) by the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.evaluation.helpers import tiny_config, train_in_process


@pytest.fixture(scope="session")
def eval_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder for the synthetic data of the evaluation tests."""
    return tmp_path_factory.mktemp("eval_cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, eval_cache: Path) -> Path:
    """The output_dir of a tiny SMES run (8 steps, checkpoints at steps 4 and 8). Tests must not write into it."""
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    train_in_process(tiny_config(out, eval_cache))
    return out
