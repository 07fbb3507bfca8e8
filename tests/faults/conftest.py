"""Fixtures of the fault-injection suite: one tiny trained run per session, copied by the tests that damage it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.evaluation.helpers import tiny_config, train_in_process


@pytest.fixture(scope="session")
def faults_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic data cache shared by the fault tests."""
    return tmp_path_factory.mktemp("faults_cache")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, faults_cache: Path) -> Path:
    """A tiny SMES run trained in this process: 8 steps on 1 process, checkpoints at steps 4 and 8. Read-only."""
    out = tmp_path_factory.mktemp("faults_run") / "run"
    train_in_process(tiny_config(out, faults_cache))
    return out
